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
/** Neighbour and FDB hash table sizes (7/8 of each can be filled). */
export const NEIGH_CAPACITY = 4096;
export const FDB_CAPACITY = 4096;
/** Service frontends and backend slots (summed over frontends). */
export const MAX_FRONTENDS = 4096;
export const MAX_BACKENDS = 65536;
