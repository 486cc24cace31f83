// Capacities the control plane sizes each data-path instance with (init,
// natSetup), in one place so that config load can refuse a config that would
// not fit with a clear error instead of a table write failing at run time.
//
// Derived table use (src/config/derive.ts): next hops = 1 (local) + peers
// (+ 1 blackhole), so MAX_PEERS binds first; VXLAN peers take one neighbour
// and one FDB entry each (the hash tables hold 7/8 of their capacity);
// every service frontend (ClusterIP:port, NodePort) holds its own copy of
// its backends.

/** Peers (the WASM accepts up to 0xfffe; each is a 128-byte record). */
export const MAX_PEERS = 1024;
/** Next-hop records. */
export const MAX_NEXTHOPS = 4096;
/** LPM tbl8 groups: one for each /24 holding a prefix longer than /24. */
export const TBL8_GROUPS = 4096;
/** IPv6 LPM groups (assembly/tables/lpm6.ts), 1 KiB + 4 B each, beside a
 *  256 KiB tbl16: 8 MiB + 32 KiB + 256 KiB, about 8.3 MiB per worker. A
 *  /64 costs at most 6 groups, its own path from a fresh /16: 1024 node
 *  /64s take about 260 under one shared /48, 6144 in the worst layout (each
 *  in its own /16). Host routes cost one group per /120 they fall in (a
 *  lone /128 under a live /64: 8). bench/lpm6.ts's 100k-prefix mix (60k
 *  /64s, 30k /80s, 10k service /112../128s) uses about 8,000. */
export const LPM6_GROUPS = 8192;
/** Neighbour and FDB hash table sizes (7/8 of each can be filled). */
export const NEIGH_CAPACITY = 4096;
export const FDB_CAPACITY = 4096;
/** Service frontends and backend slots (summed over frontends). */
export const MAX_FRONTENDS = 4096;
export const MAX_BACKENDS = 65536;
