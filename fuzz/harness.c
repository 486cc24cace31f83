// libFuzzer harness over the very data-path module the daemon runs
// (build/overlay.wasm translated to C by wasm2c). One binary per target,
// chosen at compile time with -DFUZZ_TARGET=<n> (see fuzz/run.mjs).
//
// Input format (the same in test/fuzz-replay.test.ts, which replays every
// corpus and regression file through the TypeScript wrapper):
//
//   byte 0      control: bits 0-1 placement of every packet in its slot
//               (0, 3: at HEADROOM; 1: flush with the slot's end; 2: at
//               MIN_OFF = 72, the least headroom a stage accepts)
//   bytes 1..   up to 4 segments separated by the 4 bytes "\xffPK\xff";
//               each segment is one packet of the batch, in the target's
//               segment format:
//     vxlan-decap  outer source u32 BE, outer TOS u8, UDP payload
//     vxlan-inner  outer TOS u8, inner IPv4 packet (the harness wraps it in
//                  a valid VXLAN + Ethernet header from worker3)
//     ipip-decap   whole outer IPv4 packet
//     pod-tun      IPv4 packet (device in tun mode)
//     pod-tap      Ethernet frame (device in tap mode)
//     roundtrip    (one segment) a recipe for a valid inner IPv4 or IPv6 packet;
//                  see build_roundtrip()
//     nat          (up to 6 segments, one batch each, in order) a step of a
//                  NAT sequence on a NAT-enabled worker2; see nat_run()
//     nat66        (the same, with IPv6 packets) a step of a NAT66 sequence
//                  on a NAT66-enabled worker2; see nat66_run()
//     vxlan-super  (the whole input after byte 0) outer TOS u8, an inner
//                  IPv4 or IPv6 packet (by its version nibble) the harness
//                  wraps in VXLAN + Ethernet (0x0800 / 0x86DD) from worker3
//                  as one datagram: a TCP super-frame that arrived
//                  unsegmented, or anything claiming to be; see super_run()
//     vxlan-inner6 outer TOS u8, inner IPv6 packet (the harness wraps it in
//                  a valid VXLAN + Ethernet 0x86DD header from worker3)
//     sit-inner    outer TOS u8, inner IPv6 packet (the harness wraps it in
//                  a valid outer IPv4 header, protocol 41, from worker1)
//     ip6tnl       outer traffic class u8, inner IPv4 or IPv6 packet, as an
//                  AF_INET6 raw socket hands over IPv4/IPv6 in IPv6; the
//                  sender (META_ADDR) by byte 0's bits 2-3: the peer over
//                  the IPv6 underlay, an IPv4 peer, 0, an unknown address
//
// Every node has IPv6 too (issue 16): an IPv6 LPM, an IPv6 overlay address
// and routes mirroring the IPv4 ones (see W2_ROUTES6), so the pod targets'
// IPv6 packets are routed, encapsulated, delivered and answered, and the
// invariants below cover every IPv6 verdict.
//
// IPv6 underlay (issue 16): worker2 also has peer 3 (W6) reached over IPv6
// (setPeer6; the node's own IPv6 underlay by configureUnderlay6), with a
// VXLAN and an IPIP next hop, IPv4 and IPv6 routes to both (W2_ROUTES and
// W2_ROUTES6 past their first 10: not on the nat/nat66 nodes), so the pod
// targets reach VXLAN in UDP/IPv6 and IPv4/IPv6 in IPv6, checked by
// check_tx_over6(), and ip6tnl reaches processIp6TunnelBatch.
//
// Packet k of a batch sits in slot 2k; the odd slots are guards: their
// metadata says off 0 (dropped with R_BAD_OFFSET before any byte is read)
// and AddressSanitizer poisons their bytes, so a write past the end of a
// packet's slot is caught even when no invariant looks there.
//
// Every input must satisfy the invariants in check_packet()/check_counters();
// a violation calls abort(), which libFuzzer records as a crash.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "overlay.h"
#include "wasm-rt-impl.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#endif
#endif
#ifndef POISON
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

// Preprocessor constants (an enum would read as 0 inside #if).
#define T_VXLAN_DECAP 1
#define T_VXLAN_INNER 2
#define T_IPIP_DECAP 3
#define T_POD_TUN 4
#define T_POD_TAP 5
#define T_ROUNDTRIP 6
#define T_NAT 7
#define T_VXLAN_SUPER 8
#define T_VXLAN_INNER6 9
#define T_SIT_INNER 10
#define T_NAT66 11
#define T_IP6TNL 12
#ifndef FUZZ_TARGET
#error "compile with -DFUZZ_TARGET=<n>"
#elif FUZZ_TARGET < T_VXLAN_DECAP || FUZZ_TARGET > T_IP6TNL
#error "FUZZ_TARGET out of range"
#endif

// --- ABI (assembly/abi.ts; scripts/check-abi.mjs checks these at build) ---
#define META_SIZE 32
#define HEADROOM 128
#define MIN_OFF 72
#define VERDICT_DROP 0
#define VERDICT_TX_UNDERLAY 1
#define VERDICT_TX_DIRECT 2
#define VERDICT_TO_DEVICE 3
#define VERDICT_REPLY 4
#define VERDICT_COUNT 5
#define REASON_COUNT 32
#define R_NO_ROUTE 5
#define R_TOO_BIG 9
#define R_FRAG_NEEDED_NO_DF 10
#define R_UNKNOWN_PEER 13
#define R_BAD_OFFSET 22
#define R_CT_INVALID 27
#define R_SVC_NO_BACKEND 30
#define C_RX_POD_PKTS 0
#define C_RX_VXLAN_PKTS 2
#define C_RX_IPIP_PKTS 4
#define C_BATCHES 15
#define C_VERDICT_BASE 16
#define C_DROP_BASE 32
#define COUNTER_COUNT 80
#define NH_VXLAN 1
#define NH_IPIP 2
#define NH_DIRECT 3
#define NH_LOCAL 4
#define NH_BLACKHOLE 5

#define BATCH 8 // 4 packets + 4 guards
#define MAX_PKTS 4
#define SLOT_SIZE 2048

// --- the fixed topology: test/helpers/topology.ts worker2, plus extras ------
#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))
#define W1_UNDERLAY IP4(198, 18, 0, 11)
#define W2_UNDERLAY IP4(198, 18, 0, 12)
#define W3_UNDERLAY IP4(198, 18, 1, 13)
#define W4_UNDERLAY IP4(198, 18, 0, 14)
#define W6_UNDERLAY IP4(198, 18, 0, 16) // peer 3's identity; reached over IPv6
#define UNKNOWN_UNDERLAY IP4(198, 18, 0, 99)
#define W1_MAC 0x0e0000000100ull
#define W2_MAC 0x0e0000000200ull
#define W3_MAC 0x0e0000000300ull
#define W4_MAC 0x0e0000000400ull
#define W6_MAC 0x0e0000000600ull
#define W8_MAC 0x0e0000000800ull
#define OUTER_TTL 64
#define DEV_MAC 0x02000000aa01ull
#define VNI 100
#define SPORT_MIN 32768
#define SPORT_MAX 60999
#define MTU 1500

static const char SEP[4] = {(char)0xff, 'P', 'K', (char)0xff};

/** A next hop as setNexthop takes it (kind, peer, IPv4 gateway). */
typedef struct {
  uint32_t kind, peer, gw;
} nh_t;
/** A peer as setPeer takes it; with a non-zero `u6` (8 hextets) reached
 *  over the IPv6 underlay at that address (setPeer6). */
typedef struct {
  uint32_t underlay;
  uint64_t mac;
  uint16_t u6[8];
} peer_t;
/** An IPv4 route as lpmInsert takes it. */
typedef struct {
  uint32_t ip, depth, nh;
} route4_t;
/** An IPv6 route: the prefix as 8 hextets, its length, the next hop. */
typedef struct {
  uint16_t h[8];
  uint32_t depth, nh;
} route6_t;

typedef struct {
  Z_overlay_instance_t w;
  uint8_t* mem;
  uint32_t slots, meta, counters;
  uint32_t underlay, mode;
  uint64_t vtep_mac;
  // What the node was told, for the invariants (never read back from the module).
  const nh_t* nh;
  uint32_t nnh;
  const peer_t* peers;
  uint32_t npeers;
  const route6_t* r6;
  uint32_t nr6;
  uint8_t r6_bytes[16][16]; // r6's prefixes as bytes
  uint8_t overlay6[16];
  const route4_t* r4; // NULL: the IPv4 routes are not mirrored (worker3/worker1)
  uint32_t nr4;
  uint8_t underlay6[16];   // configureUnderlay6 (zero: none)
  uint8_t peer6[8][16];    // each peer's setPeer6 address (zero: over IPv4)
} node_t;

static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "INVARIANT VIOLATED: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  abort();
}
#define CHECK(cond, ...) \
  do {                   \
    if (!(cond)) fail(__VA_ARGS__); \
  } while (0)

static void must(int32_t status, const char* what) {
  if (status != 0) {
    fprintf(stderr, "harness set-up: %s returned %d\n", what, status);
    abort();
  }
}

// --- byte helpers over linear memory and host buffers ------------------------
static inline uint32_t be16(const uint8_t* p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline uint64_t be48(const uint8_t* p) { return (uint64_t)be16(p) << 32 | be32(p + 2); }
static inline uint32_t le32(const uint8_t* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static inline uint16_t le16(const uint8_t* p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void put_le32(uint8_t* p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline void put_be16(uint8_t* p, uint32_t v) { p[0] = v >> 8; p[1] = v; }
static inline void put_be32(uint8_t* p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline void put_be48(uint8_t* p, uint64_t v) { put_be16(p, (uint32_t)(v >> 32)); put_be32(p + 2, (uint32_t)v); }

/** RFC 1071, written here independently of the module's checksum code. */
static uint64_t csum_add(uint64_t s, const uint8_t* p, uint32_t len) {
  for (uint32_t i = 0; i + 1 < len; i += 2) s += be16(p + i);
  if (len & 1) s += (uint32_t)p[len - 1] << 8;
  return s;
}
static uint32_t csum_fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}
static uint32_t inet_csum(const uint8_t* p, uint32_t len) { return csum_fold(csum_add(0, p, len)); }

// --- instances ----------------------------------------------------------------
static void node_new(node_t* n, uint32_t mode, uint32_t underlay, uint32_t overlay, uint64_t vtep_mac) {
  Z_overlay_instantiate(&n->w);
  Z_overlayZ__initialize(&n->w);
  must(Z_overlayZ_init(&n->w, BATCH, SLOT_SIZE, 256, 64, 16, 64, 64), "init");
  must(Z_overlayZ_configure(&n->w, mode, underlay, overlay, vtep_mac, DEV_MAC, VNI, 4789, SPORT_MIN, SPORT_MAX, 64, MTU),
       "configure");
  n->mode = mode;
  n->underlay = underlay;
  n->vtep_mac = vtep_mac;
}

/** Call after the tables are loaded (memory never grows afterwards). */
static void node_ready(node_t* n) {
  n->mem = Z_overlayZ_memory(&n->w)->data;
  n->slots = Z_overlayZ_slotBase(&n->w);
  n->meta = Z_overlayZ_metaBase(&n->w);
  n->counters = Z_overlayZ_countersBase(&n->w);
  if (Z_overlayZ_slotSize(&n->w) != SLOT_SIZE || Z_overlayZ_batchMax(&n->w) != BATCH) must(-99, "region sizes");
  // Alignment padding between the metadata and the first slot: nothing may touch it.
  uint32_t meta_end = n->meta + BATCH * META_SIZE;
  if (n->slots > meta_end) POISON(n->mem + meta_end, n->slots - meta_end);
}

static void route(node_t* n, const char* what, uint32_t ip, uint32_t depth, uint32_t nh) {
  must(Z_overlayZ_lpmInsert(&n->w, ip, depth, nh), what);
}

static void a6_bytes(const uint16_t h[8], uint8_t a[16]);
static inline int a6_zero(const uint8_t* a);

static void peers_and_nexthops(node_t* n, const peer_t* peers, uint32_t npeers, const nh_t* nh, uint32_t nnh) {
  char what[32];
  if (npeers > 8) must(-96, "more than 8 peers");
  for (uint32_t i = 0; i < npeers; i++) {
    snprintf(what, sizeof what, "peer %u", i);
    must(Z_overlayZ_setPeer(&n->w, i, peers[i].underlay, peers[i].mac), what);
    a6_bytes(peers[i].u6, n->peer6[i]);
    if (a6_zero(n->peer6[i])) continue;
    uint64_t hi = 0, lo = 0;
    for (int b = 0; b < 8; b++) hi = hi << 8 | n->peer6[i][b], lo = lo << 8 | n->peer6[i][8 + b];
    snprintf(what, sizeof what, "setPeer6 %u", i);
    must(Z_overlayZ_setPeer6(&n->w, i, hi, lo), what);
  }
  for (uint32_t i = 0; i < nnh; i++) {
    snprintf(what, sizeof what, "nh %u", i);
    must(Z_overlayZ_setNexthop(&n->w, i, nh[i].kind, nh[i].peer, nh[i].gw), what);
  }
  n->peers = peers;
  n->npeers = npeers;
  n->nh = nh;
  n->nnh = nnh;
}

// --- IPv6 (issue 16): every node gets the IPv6 LPM, an overlay address
// 2001:2:0:N:: (worker N) and routes mirroring its IPv4 ones.
#define LPM6_GROUPS 64
#define A6_NODE(n) {0x2001, 2, 0, (n), 0, 0, 0, 0}

static void a6_bytes(const uint16_t h[8], uint8_t a[16]) {
  for (int i = 0; i < 8; i++) put_be16(a + 2 * i, h[i]);
}

static void ipv6_setup(node_t* n, uint32_t worker, const route6_t* r, uint32_t nr) {
  Z_overlay_instance_t* w = &n->w;
  must(Z_overlayZ_lpm6Setup(w, LPM6_GROUPS), "lpm6Setup");
  uint32_t at = Z_overlayZ_allocScratch(w, 16);
  if (at == 0) must(-98, "IPv6 address scratch");
  char what[48];
  if (nr > 16) must(-97, "more than 16 IPv6 routes");
  for (uint32_t i = 0; i < nr; i++) {
    a6_bytes(r[i].h, n->r6_bytes[i]);
    a6_bytes(r[i].h, Z_overlayZ_memory(w)->data + at);
    snprintf(what, sizeof what, "IPv6 route %u (/%u -> nh %u)", i, r[i].depth, r[i].nh);
    must(Z_overlayZ_lpm6Insert(w, at, r[i].depth, r[i].nh), what);
  }
  const uint16_t self[8] = A6_NODE(worker);
  a6_bytes(self, n->overlay6);
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) hi = hi << 8 | n->overlay6[i], lo = lo << 8 | n->overlay6[8 + i];
  must(Z_overlayZ_configure6(w, hi, lo), "configure6");
  n->r6 = r;
  n->nr6 = nr;
}

/** worker2 exactly as test/helpers/topology.ts builds it, plus next hops and
 *  routes that reach the remaining branches (tbl8 prefixes, a vxlan next hop
 *  without a neighbour, one whose neighbour has no FDB entry), and peer 3
 *  (W6) over the IPv6 underlay 2001:2:0:fe::6 with a VXLAN (7) and an IPIP
 *  (8) next hop (issue 16). Mirrored in test/fuzz-replay.test.ts
 *  (fuzzWorker2). */
#define W2_UNDERLAY6 {0x2001, 2, 0, 0xfe, 0, 0, 0, 2}
static const peer_t W2_PEERS[] = {
  {W3_UNDERLAY, W3_MAC}, {W1_UNDERLAY, W1_MAC}, {W4_UNDERLAY, W4_MAC}, {W6_UNDERLAY, W6_MAC, {0x2001, 2, 0, 0xfe, 0, 0, 0, 6}},
};
static const nh_t W2_NH[] = {
  {NH_LOCAL, 0xffff, 0},
  {NH_VXLAN, 0, IP4(198, 19, 3, 0)},
  {NH_IPIP, 1, 0},
  {NH_DIRECT, 2, W4_UNDERLAY},
  {NH_BLACKHOLE, 0xffff, 0},
  {NH_VXLAN, 0, IP4(198, 19, 7, 0)}, // no neighbour (IPv4); IPv6 needs none
  {NH_VXLAN, 0, IP4(198, 19, 8, 0)}, // neighbour without an FDB entry
  {NH_VXLAN, 3, IP4(198, 19, 9, 0)}, // peer 3 over IPv6: VXLAN in UDP/IPv6
  {NH_IPIP, 3, 0},                   // peer 3 over IPv6: next header 4 / 41
};
/** The IPv4 routes, in insertion order; the last W2_UNDER6_ROUTES go to
 *  peer 3 (IPv6 underlay) and only the nodes with `under6` get them. */
#define W2_UNDER6_ROUTES 2
static const route4_t W2_ROUTES[] = {
  {IP4(198, 19, 2, 0), 24, 0},   // local
  {IP4(198, 19, 3, 0), 24, 1},   // worker3, VXLAN
  {IP4(198, 19, 1, 0), 24, 2},   // worker1, IPIP
  {IP4(198, 19, 4, 0), 24, 3},   // worker4, direct
  {IP4(198, 18, 96, 0), 24, 4},  // blackhole
  {IP4(198, 19, 5, 0), 25, 3},   // tbl8: direct
  {IP4(198, 19, 5, 128), 26, 1}, // tbl8: VXLAN
  {IP4(198, 19, 5, 200), 32, 4}, // host blackhole
  {IP4(198, 19, 7, 0), 24, 5},   // VXLAN without a neighbour
  {IP4(198, 19, 8, 0), 24, 6},   // VXLAN whose neighbour has no FDB entry
  {IP4(198, 19, 9, 0), 24, 7},   // peer 3 over IPv6, VXLAN
  {IP4(198, 19, 10, 0), 24, 8},  // peer 3 over IPv6, IPIP
};
/** The IPv4 routes' IPv6 twins: own /64 local, worker3's over VXLAN,
 *  worker1's over IPIP (protocol 41), worker4's direct, a blackhole /112;
 *  under 2001:2:0:5::/64 (direct) a /80 over VXLAN and a /128 blackhole
 *  (groups several levels deep, as the /25, /26 and /32 reach tbl8); the
 *  next hops without neighbour or FDB entry. */
static const route6_t W2_ROUTES6[] = {
  {A6_NODE(2), 64, 0},
  {A6_NODE(3), 64, 1},
  {A6_NODE(1), 64, 2},
  {A6_NODE(4), 64, 3},
  {{0x2001, 2, 0, 0x96, 0, 0, 0, 0}, 112, 4},
  {A6_NODE(5), 64, 3},
  {{0x2001, 2, 0, 5, 0x8000, 0, 0, 0}, 80, 1},
  {{0x2001, 2, 0, 5, 0, 0, 0, 0xc8}, 128, 4},
  {A6_NODE(7), 64, 5},
  {A6_NODE(8), 64, 6},
  {A6_NODE(9), 64, 7},   // peer 3 over IPv6, VXLAN (under6 only)
  {A6_NODE(0xa), 64, 8}, // peer 3 over IPv6, next header 41 (under6 only)
};
#define COUNT(a) (uint32_t)(sizeof(a) / sizeof((a)[0]))

/** `ipv6`: the IPv6 LPM and W2_ROUTES6; `under6`: the routes to peer 3
 *  (IPv6 underlay), both families (the nat and nat66 nodes have none: their
 *  checks read IPv4 outer headers only). Peer 3, its next hops and the
 *  node's IPv6 underlay address are set either way. */
static void worker2(node_t* n, uint32_t mode, int ipv6, int under6) {
  node_new(n, mode, W2_UNDERLAY, IP4(198, 19, 2, 0), W2_MAC);
  Z_overlay_instance_t* w = &n->w;
  const uint16_t u6[8] = W2_UNDERLAY6;
  a6_bytes(u6, n->underlay6);
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) hi = hi << 8 | n->underlay6[i], lo = lo << 8 | n->underlay6[8 + i];
  must(Z_overlayZ_configureUnderlay6(w, hi, lo), "configureUnderlay6");
  peers_and_nexthops(n, W2_PEERS, COUNT(W2_PEERS), W2_NH, COUNT(W2_NH));
  must(Z_overlayZ_htPut(w, Z_overlayZ_neighTable(w), IP4(198, 19, 3, 0), W3_MAC), "neigh");
  must(Z_overlayZ_htPut(w, Z_overlayZ_neighTable(w), IP4(198, 19, 8, 0), W8_MAC), "neigh 8");
  must(Z_overlayZ_htPut(w, Z_overlayZ_neighTable(w), IP4(198, 19, 9, 0), W6_MAC), "neigh 9");
  must(Z_overlayZ_htPut(w, Z_overlayZ_fdbTable(w), W3_MAC, 0), "fdb");
  must(Z_overlayZ_htPut(w, Z_overlayZ_fdbTable(w), W6_MAC, 3), "fdb w6");
  n->r4 = W2_ROUTES;
  n->nr4 = COUNT(W2_ROUTES) - (under6 ? 0 : W2_UNDER6_ROUTES);
  char what[48];
  for (uint32_t i = 0; i < n->nr4; i++) {
    snprintf(what, sizeof what, "IPv4 route %u (/%u -> nh %u)", i, W2_ROUTES[i].depth, W2_ROUTES[i].nh);
    route(n, what, W2_ROUTES[i].ip, W2_ROUTES[i].depth, W2_ROUTES[i].nh);
  }
  if (ipv6) ipv6_setup(n, 2, W2_ROUTES6, COUNT(W2_ROUTES6) - (under6 ? 0 : W2_UNDER6_ROUTES));
  node_ready(n);
}

/** worker3 as test/helpers/topology.ts builds it (tun), with IPv6. */
static const peer_t W3_PEERS[] = {{W2_UNDERLAY, W2_MAC}, {W1_UNDERLAY, W1_MAC}};
static const nh_t W3_NH[] = {{NH_LOCAL, 0xffff, 0}, {NH_VXLAN, 0, IP4(198, 19, 2, 0)}, {NH_IPIP, 1, 0}};
static const route6_t W3_ROUTES6[] = {{A6_NODE(3), 64, 0}, {A6_NODE(2), 64, 1}, {A6_NODE(1), 64, 2}};

static void worker3(node_t* n) {
  node_new(n, 0, W3_UNDERLAY, IP4(198, 19, 3, 0), W3_MAC);
  Z_overlay_instance_t* w = &n->w;
  peers_and_nexthops(n, W3_PEERS, COUNT(W3_PEERS), W3_NH, COUNT(W3_NH));
  must(Z_overlayZ_htPut(w, Z_overlayZ_neighTable(w), IP4(198, 19, 2, 0), W2_MAC), "neigh");
  must(Z_overlayZ_htPut(w, Z_overlayZ_fdbTable(w), W2_MAC, 0), "fdb");
  route(n, "route local", IP4(198, 19, 3, 0), 24, 0);
  route(n, "route w2", IP4(198, 19, 2, 0), 24, 1);
  route(n, "route w1", IP4(198, 19, 1, 0), 24, 2);
  ipv6_setup(n, 3, W3_ROUTES6, COUNT(W3_ROUTES6));
  node_ready(n);
}

/** worker1 (tun): peer 0 worker2 over IPIP (IPv6: protocol 41). */
static const peer_t W1_PEERS[] = {{W2_UNDERLAY, W2_MAC}};
static const nh_t W1_NH[] = {{NH_LOCAL, 0xffff, 0}, {NH_IPIP, 0, 0}};
static const route6_t W1_ROUTES6[] = {{A6_NODE(1), 64, 0}, {A6_NODE(2), 64, 1}};

static void worker1(node_t* n) {
  node_new(n, 0, W1_UNDERLAY, IP4(198, 19, 1, 0), W1_MAC);
  peers_and_nexthops(n, W1_PEERS, COUNT(W1_PEERS), W1_NH, COUNT(W1_NH));
  route(n, "route local", IP4(198, 19, 1, 0), 24, 0);
  route(n, "route w2", IP4(198, 19, 2, 0), 24, 1);
  ipv6_setup(n, 1, W1_ROUTES6, COUNT(W1_ROUTES6));
  node_ready(n);
}

// --- IPv6 helpers for the invariants, written here from RFC 8200/4291/4443/4861
// independently of the module's wire code, and a naive IPv6 route lookup
// (a linear scan of the routes the node was given: the slow twin of lpm6).
static inline int a6_multicast(const uint8_t* a) { return a[0] == 0xff; }
static inline int a6_zero(const uint8_t* a) {
  for (int i = 0; i < 16; i++) if (a[i]) return 0;
  return 1;
}
static inline int a6_loopback(const uint8_t* a) {
  for (int i = 0; i < 15; i++) if (a[i]) return 0;
  return a[15] == 1;
}
static inline int a6_link_local(const uint8_t* a) { return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; }
static inline uint32_t ip6_tclass(const uint8_t* p) { return (be16(p) >> 4) & 0xff; }

/** The bytes a valid IPv6 header at `p` says its packet has (40 + payload
 *  length), or 0 when `avail` bytes hold no such header (short, not version
 *  6, payload past the end, a jumbogram's zero payload length). */
static uint32_t ip6_len(const uint8_t* p, uint32_t avail) {
  if (avail < 40 || p[0] >> 4 != 6) return 0;
  uint32_t plen = be16(p + 4);
  if (40 + plen > avail || (plen == 0 && p[6] != 59)) return 0;
  return 40 + plen;
}

/** The checksum over the IPv6 pseudo header of the packet at `ip` and `n`
 *  upper-layer bytes at `l4` of protocol `next`: 0 when they hold a right one. */
static uint32_t l4_sum6(const uint8_t* ip, uint32_t next, const uint8_t* l4, uint32_t n) {
  uint64_t s = csum_add(0, ip + 8, 32) + (n >> 16) + (n & 0xffff) + next;
  return csum_fold(csum_add(s, l4, n));
}
/** The folded pseudo-header sum alone: a CHECKSUM_PARTIAL field's value. */
static uint32_t partial_sum6(const uint8_t* ip, uint32_t next, uint32_t n) {
  uint64_t s = csum_add(0, ip + 8, 32) + (n >> 16) + (n & 0xffff) + next;
  return ~csum_fold(s) & 0xffff;
}

/** Longest match of `a` among the node's IPv6 routes: the next hop, or -1. */
static int route6_lookup(const node_t* n, const uint8_t* a) {
  int best = -1;
  uint32_t best_depth = 0;
  for (uint32_t i = 0; i < n->nr6; i++) {
    const uint8_t* pfx = n->r6_bytes[i];
    const uint32_t d = n->r6[i].depth, full = d / 8, bits = d % 8;
    const int match = memcmp(a, pfx, full) == 0 && (bits == 0 || ((a[full] ^ pfx[full]) & (0xff00u >> bits) & 0xff) == 0);
    if (match && (best < 0 || d >= best_depth)) best = (int)n->r6[i].nh, best_depth = d;
  }
  return best;
}

/** The first byte in [from, to) where `a` and `b` differ, or -1 (one
 *  memcmp when they agree: the harness's own loops are instrumented too). */
static int first_diff(const uint8_t* a, const uint8_t* b, uint32_t from, uint32_t to) {
  if (to <= from || memcmp(a + from, b + from, to - from) == 0) return -1;
  for (uint32_t i = from; i < to; i++)
    if (a[i] != b[i]) return (int)i;
  return -1;
}
static uint32_t nh_kind(const node_t* n, int nh) { return nh >= 0 && (uint32_t)nh < n->nnh ? n->nh[nh].kind : 0; }
static int peer_of(const node_t* n, uint32_t underlay) {
  for (uint32_t i = 0; i < n->npeers; i++) if (n->peers[i].underlay == underlay) return (int)i;
  return -1;
}
/** Peer `i` is reached over the IPv6 underlay (setPeer6). */
static int peer_over6(const node_t* n, uint32_t i) { return i < n->npeers && !a6_zero(n->peer6[i]); }

/** Longest match of `a` among the node's IPv4 routes: the next hop, or -1
 *  (the slow twin of the LPM, as route6_lookup). */
static int route4_lookup(const node_t* n, uint32_t a) {
  int best = -1;
  uint32_t best_depth = 0;
  for (uint32_t i = 0; n->r4 && i < n->nr4; i++) {
    const uint32_t d = n->r4[i].depth, mask = d == 0 ? 0 : ~0u << (32 - d);
    if ((a & mask) == (n->r4[i].ip & mask) && (best < 0 || d >= best_depth)) best = (int)n->r4[i].nh, best_depth = d;
  }
  return best;
}

/** The largest inner packet the tunnel of next hop `nh` takes (the one MTU
 *  rule, forward.ts tunnelAdmits, pmtu.ts peerInnerMtu, no path MTU learnt
 *  in these targets): the underlay MTU less the IPv4-outer overhead, 20
 *  bytes more for a peer over IPv6; a direct next hop: the underlay MTU;
 *  0 for anything else. */
static uint32_t inner_mtu(const node_t* n, int nh) {
  const uint32_t k = nh_kind(n, nh);
  if (k == NH_DIRECT) return MTU;
  if (k != NH_VXLAN && k != NH_IPIP) return 0;
  return MTU - (k == NH_VXLAN ? 50 : 20) - (peer_over6(n, n->nh[nh].peer) ? 20 : 0);
}

/** RFC 6040 section 4.2: the inner ECN field after decapsulation, or -1:
 *  drop (CE outside, Not-ECT inside). */
static int ecn_decap(uint32_t inner, uint32_t outer) {
  if (inner == 0) return outer == 3 ? -1 : 0;
  if (outer == 3) return 3;
  if (outer == 1 && inner == 2) return 1;
  return (int)inner;
}

// --- batches -------------------------------------------------------------------
typedef struct {
  uint8_t bytes[SLOT_SIZE];
  uint32_t len, off, addr, tos;
} pkt_t;

static pkt_t g_in[MAX_PKTS];
static uint64_t g_before[COUNTER_COUNT];

static inline uint8_t* slot_ptr(node_t* n, uint32_t i) { return n->mem + n->slots + i * SLOT_SIZE; }
static inline uint8_t* meta_ptr(node_t* n, uint32_t i) { return n->mem + n->meta + i * META_SIZE; }
static inline uint64_t counter(node_t* n, uint32_t i) {
  uint64_t v;
  memcpy(&v, n->mem + n->counters + i * 8, 8);
  return v;
}

/** Write packets into slots 0, 2, 4, ... with guard records in between, and
 *  poison the guards. Returns the batch length to process. */
static uint32_t load_batch(node_t* n, const pkt_t* pk, uint32_t npk) {
  UNPOISON(slot_ptr(n, 0), BATCH * SLOT_SIZE);
  for (uint32_t i = 0; i < BATCH; i++) memset(meta_ptr(n, i), 0, META_SIZE);
  for (uint32_t k = 0; k < npk; k++) {
    memcpy(slot_ptr(n, 2 * k) + pk[k].off, pk[k].bytes, pk[k].len);
    uint8_t* m = meta_ptr(n, 2 * k);
    put_le32(m + 0, pk[k].off);
    put_le32(m + 4, pk[k].len);
    put_le32(m + 12, pk[k].addr);
    m[20] = (uint8_t)pk[k].tos;
  }
  for (uint32_t i = 1; i < BATCH; i += 2) POISON(slot_ptr(n, i), SLOT_SIZE);
  for (uint32_t i = 0; i < COUNTER_COUNT; i++) g_before[i] = counter(n, i);
  return 2 * npk;
}

static uint32_t place(uint8_t ctrl, uint32_t len) {
  switch (ctrl & 3) {
    case 1: return SLOT_SIZE - len;
    case 2: return MIN_OFF;
    default: return HEADROOM;
  }
}

// --- invariants -----------------------------------------------------------------
/** An IPv4 datagram of exactly `len` bytes with a valid header checksum,
 *  checked both by the module's own checkIpv4 and independently here. */
static void check_ipv4(node_t* n, const uint8_t* p, uint32_t len, const char* what) {
  uint32_t addr = (uint32_t)(p - n->mem);
  CHECK(Z_overlayZ_checkIpv4(&n->w, addr, len) == 0, "%s: checkIpv4 rejects the output (len %u)", what, len);
  CHECK(len >= 20 && p[0] >> 4 == 4, "%s: not IPv4", what);
  uint32_t hl = (p[0] & 15) * 4;
  CHECK(hl >= 20 && hl <= len, "%s: header length %u of %u", what, hl, len);
  CHECK(be16(p + 2) == len, "%s: total length %u != output length %u", what, be16(p + 2), len);
  CHECK(inet_csum(p, hl) == 0, "%s: bad IPv4 header checksum", what);
}

/** `out` is `orig` forwarded without NAT: identical, TTL included (the
 *  node's kernel takes its hop, before or after us: forward.ts, "TTL"). */
static void check_forwarded(const uint8_t* out, uint32_t olen, const uint8_t* orig, uint32_t ilen, const char* what) {
  CHECK(olen == ilen, "%s: forwarded %u bytes of %u", what, olen, ilen);
  CHECK(out[8] == orig[8], "%s: TTL %u -> %u", what, orig[8], out[8]);
  for (uint32_t i = 0; i < olen; i++) {
    if (i == 8 || i == 10 || i == 11) continue;
    CHECK(out[i] == orig[i], "%s: byte %u changed (%02x -> %02x)", what, i, orig[i], out[i]);
  }
}

/** A whole IPv6 packet of exactly `len` bytes: version 6, payload length
 *  len - 40 (a zero one only with no next header). */
static void check_ipv6(const uint8_t* p, uint32_t len, const char* what) {
  CHECK(len >= 40 && p[0] >> 4 == 6, "%s: not IPv6 (%u bytes)", what, len);
  CHECK(40 + be16(p + 4) == len, "%s: payload length %u, %u bytes", what, be16(p + 4), len);
  CHECK(be16(p + 4) != 0 || p[6] == 59, "%s: a jumbogram", what);
}

/** Where a stage's input packet came from (check_packet). */
#define STAGE_POD 0
#define STAGE_VXLAN 1
#define STAGE_IPIP 2
#define STAGE_IP6TNL 3 // processIp6TunnelBatch: the input is the inner packet, addr the sender

/** An encapsulated IPv6 packet (VXLAN 0x86DD or protocol 41; outer checked
 *  by the caller): outer DF always, traffic class as TOS, to the peer the
 *  destination routes to, within the underlay MTU; from a pod, the input's
 *  IPv6 packet byte for byte, hop limit included. */
static void check_tx_underlay6(node_t* n, const uint8_t* p, uint32_t len, uint32_t addr, uint16_t peer, const uint8_t* inner,
                               uint32_t ilen, int vxlan, const pkt_t* in, int pod_ip_off) {
  check_ipv6(inner, ilen, "TX_UNDERLAY inner IPv6");
  CHECK(be16(p + 6) == 0x4000, "TX_UNDERLAY (IPv6 inside): outer flags %04x, DF must be set", be16(p + 6));
  CHECK(p[1] == ip6_tclass(inner), "TX_UNDERLAY: outer TOS %02x != traffic class %02x", p[1], ip6_tclass(inner));
  CHECK(len <= MTU, "TX_UNDERLAY (IPv6 inside): %u bytes over the underlay MTU", len);
  const int nh = route6_lookup(n, inner + 24);
  CHECK(nh_kind(n, nh) == (vxlan ? NH_VXLAN : NH_IPIP) && n->nh[nh].peer == peer,
        "TX_UNDERLAY (IPv6 inside, %s): the destination routes to next hop %d (kind %u), not to peer %u", vxlan ? "vxlan" : "protocol 41", nh,
        nh_kind(n, nh), peer);
  CHECK(addr == n->peers[peer].underlay, "TX_UNDERLAY: to %08x, peer %u is %08x", addr, peer, n->peers[peer].underlay);
  if (pod_ip_off >= 0) {
    const uint8_t* in6 = in->bytes + pod_ip_off;
    CHECK(ip6_len(in6, in->len - pod_ip_off) == ilen, "TX_UNDERLAY: %u inner IPv6 bytes for an input of %u", ilen,
          ip6_len(in6, in->len - pod_ip_off));
    const int i = first_diff(inner, in6, 0, ilen);
    CHECK(i < 0, "TX_UNDERLAY inner IPv6: byte %d changed (%02x -> %02x)", i, in6[i], inner[i]);
  }
}

/** A TX_UNDERLAY packet to a peer reached over the IPv6 underlay (issue
 *  16): outer IPv6 (RFC 8200) from the node's IPv6 underlay address to the
 *  peer's, hop limit the outer TTL, traffic class the inner TOS / traffic
 *  class (as the IPv4 outer TOS), flow label the flow hash's low 20 bits
 *  (1 for 0), payload length len - 40; next header 17: UDP to 4789 from the
 *  source-port range, length len - 40, a checksum over the pseudo header
 *  verified here from scratch and never 0 (RFC 6935), VXLAN flags and VNI,
 *  inner Ethernet from our VTEP MAC to the peer's with the inner packet's
 *  type; next header 4 / 41: the inner packet's version; the inner
 *  packet's destination routes to a next hop of that kind for this peer;
 *  meta addr the peer's IPv4 identity; within the underlay MTU (inner +
 *  IPv4-outer overhead + 20); from a pod, the input's packet byte for byte. */
static void check_tx_over6(node_t* n, const uint8_t* p, uint32_t len, uint32_t addr, uint16_t peer, uint32_t hash, const pkt_t* in,
                           int pod_ip_off) {
  check_ipv6(p, len, "TX_UNDERLAY over IPv6: outer");
  CHECK(peer_over6(n, peer), "TX_UNDERLAY: an IPv6 outer header to peer %u, not a peer over IPv6", peer);
  CHECK(addr == n->peers[peer].underlay, "TX_UNDERLAY over IPv6: meta addr %08x, peer %u's identity is %08x", addr, peer, n->peers[peer].underlay);
  CHECK(memcmp(p + 8, n->underlay6, 16) == 0, "TX_UNDERLAY over IPv6: source is not the node's IPv6 underlay address");
  CHECK(memcmp(p + 24, n->peer6[peer], 16) == 0, "TX_UNDERLAY over IPv6: destination is not peer %u's IPv6 address", peer);
  CHECK(p[7] == OUTER_TTL, "TX_UNDERLAY over IPv6: hop limit %u", p[7]);
  const uint32_t fl = be32(p) & 0xfffff, want_fl = (hash & 0xfffff) ? (hash & 0xfffff) : 1;
  CHECK(fl == want_fl, "TX_UNDERLAY over IPv6: flow label %05x, hash %08x gives %05x", fl, hash, want_fl);
  CHECK(len <= MTU, "TX_UNDERLAY over IPv6: %u bytes over the underlay MTU %u (the +20 rule)", len, MTU);
  const int vxlan = p[6] == 17;
  const uint8_t* inner;
  uint32_t ilen;
  int six;
  if (vxlan) {
    CHECK(len >= 40 + 8 + 8 + 14 + 20, "TX_UNDERLAY vxlan over IPv6: %u bytes", len);
    const uint8_t* u = p + 40;
    CHECK(be16(u + 4) == len - 40, "TX_UNDERLAY vxlan over IPv6: UDP length %u of %u", be16(u + 4), len - 40);
    CHECK(be16(u + 2) == 4789, "TX_UNDERLAY vxlan over IPv6: destination port %u", be16(u + 2));
    CHECK(be16(u) >= SPORT_MIN && be16(u) <= SPORT_MAX, "TX_UNDERLAY vxlan over IPv6: source port %u", be16(u));
    CHECK(be16(u + 6) != 0, "TX_UNDERLAY vxlan over IPv6: UDP checksum 0 (mandatory over IPv6)");
    CHECK(l4_sum6(p, 17, u, len - 40) == 0, "TX_UNDERLAY vxlan over IPv6: bad UDP checksum %04x", be16(u + 6));
    CHECK(be32(u + 8) == 0x08000000, "TX_UNDERLAY vxlan over IPv6: flags %08x", be32(u + 8));
    CHECK(be32(u + 12) >> 8 == VNI && u[15] == 0, "TX_UNDERLAY vxlan over IPv6: VNI %u", be32(u + 12) >> 8);
    const uint8_t* e = u + 16;
    CHECK(be48(e + 6) == n->vtep_mac, "TX_UNDERLAY vxlan over IPv6: inner source MAC");
    // IPv6: the peer's VTEP MAC; IPv4: the gateway's neighbour entry, the same MAC here.
    CHECK(be48(e) == n->peers[peer].mac, "TX_UNDERLAY vxlan over IPv6: inner destination MAC %012llx, peer %u's is %012llx",
          (unsigned long long)be48(e), peer, (unsigned long long)n->peers[peer].mac);
    CHECK(be16(e + 12) == 0x0800 || be16(e + 12) == 0x86dd, "TX_UNDERLAY vxlan over IPv6: inner ethertype %04x", be16(e + 12));
    six = be16(e + 12) == 0x86dd;
    inner = e + 14;
    ilen = len - 70;
  } else {
    CHECK(p[6] == 4 || p[6] == 41, "TX_UNDERLAY over IPv6: next header %u", p[6]);
    six = p[6] == 41;
    inner = p + 40;
    ilen = len - 40;
  }
  CHECK(ilen >= 20 && inner[0] >> 4 == (six ? 6 : 4), "TX_UNDERLAY over IPv6: inner version %u, %u bytes, for %s", ilen ? inner[0] >> 4 : 0,
        ilen, six ? "IPv6" : "IPv4");
  CHECK(ip6_tclass(p) == (six ? ip6_tclass(inner) : inner[1]), "TX_UNDERLAY over IPv6: traffic class %02x, inner %02x", ip6_tclass(p),
        six ? ip6_tclass(inner) : inner[1]);
  int nh;
  if (six) {
    check_ipv6(inner, ilen, "TX_UNDERLAY over IPv6: inner IPv6");
    nh = route6_lookup(n, inner + 24);
  } else {
    check_ipv4(n, inner, ilen, "TX_UNDERLAY over IPv6: inner IPv4");
    nh = route4_lookup(n, be32(inner + 16));
  }
  CHECK(nh_kind(n, nh) == (vxlan ? NH_VXLAN : NH_IPIP) && n->nh[nh].peer == peer,
        "TX_UNDERLAY over IPv6 (%s): the destination routes to next hop %d (kind %u), not to peer %u", vxlan ? "vxlan" : "ip6tnl", nh,
        nh_kind(n, nh), peer);
  CHECK(ilen <= inner_mtu(n, nh), "TX_UNDERLAY over IPv6: %u inner bytes over the tunnel's %u", ilen, inner_mtu(n, nh));
  if (pod_ip_off < 0) return;
  const uint8_t* q = in->bytes + pod_ip_off;
  if (six) {
    CHECK(ip6_len(q, in->len - pod_ip_off) == ilen, "TX_UNDERLAY over IPv6: %u inner IPv6 bytes for an input of %u", ilen,
          ip6_len(q, in->len - pod_ip_off));
    const int i = first_diff(inner, q, 0, ilen);
    CHECK(i < 0, "TX_UNDERLAY over IPv6, inner IPv6: byte %d changed (%02x -> %02x)", i, q[i], inner[i]);
  } else {
    check_forwarded(inner, ilen, q, be16(q + 2), "TX_UNDERLAY over IPv6, inner");
  }
}

static void check_tx_underlay(node_t* n, const uint8_t* p, uint32_t len, uint32_t addr, uint16_t peer, uint32_t hash, const pkt_t* in,
                              int pod_ip_off) {
  CHECK(peer < n->npeers, "TX_UNDERLAY: peer %u", peer);
  if (len >= 1 && p[0] >> 4 == 6) {
    check_tx_over6(n, p, len, addr, peer, hash, in, pod_ip_off);
    return;
  }
  check_ipv4(n, p, len, "TX_UNDERLAY outer");
  CHECK(!peer_over6(n, peer), "TX_UNDERLAY: an IPv4 outer header to peer %u, which is reached over IPv6", peer);
  CHECK((p[0] & 15) == 5, "TX_UNDERLAY: outer header has options");
  CHECK(be32(p + 12) == n->underlay, "TX_UNDERLAY: outer source %08x", be32(p + 12));
  CHECK(be32(p + 16) == addr, "TX_UNDERLAY: outer destination %08x != meta addr %08x", be32(p + 16), addr);
  const uint8_t* inner;
  uint32_t ilen;
  if (p[9] == 17) {
    CHECK(len >= 20 + 8 + 8 + 14 + 20, "TX_UNDERLAY vxlan: %u bytes", len);
    const uint8_t* u = p + 20;
    CHECK(be16(u + 4) == len - 20, "TX_UNDERLAY vxlan: UDP length %u of %u", be16(u + 4), len - 20);
    CHECK(be16(u + 2) == 4789, "TX_UNDERLAY vxlan: destination port %u", be16(u + 2));
    CHECK(be16(u) >= SPORT_MIN && be16(u) <= SPORT_MAX, "TX_UNDERLAY vxlan: source port %u", be16(u));
    CHECK(be16(u + 6) == 0, "TX_UNDERLAY vxlan: UDP checksum not zero");
    CHECK(u[8] == 0x08 && be32(u + 8) == 0x08000000, "TX_UNDERLAY vxlan: flags %08x", be32(u + 8));
    CHECK(be32(u + 12) >> 8 == VNI && u[15] == 0, "TX_UNDERLAY vxlan: VNI %u", be32(u + 12) >> 8);
    const uint8_t* e = u + 16;
    CHECK(be48(e + 6) == n->vtep_mac, "TX_UNDERLAY vxlan: inner source MAC");
    CHECK(be16(e + 12) == 0x0800 || be16(e + 12) == 0x86dd, "TX_UNDERLAY vxlan: inner ethertype %04x", be16(e + 12));
    inner = e + 14;
    ilen = len - 50;
    if (be16(e + 12) == 0x86dd) {
      CHECK(be48(e) == n->peers[peer].mac, "TX_UNDERLAY vxlan (IPv6): inner destination MAC %012llx is not peer %u's VTEP MAC",
            (unsigned long long)be48(e), peer);
      check_tx_underlay6(n, p, len, addr, peer, inner, ilen, 1, in, pod_ip_off);
      return;
    }
  } else {
    CHECK(p[9] == 4 || p[9] == 41, "TX_UNDERLAY: outer protocol %u", p[9]);
    inner = p + 20;
    ilen = len - 20;
    if (p[9] == 41) {
      check_tx_underlay6(n, p, len, addr, peer, inner, ilen, 0, in, pod_ip_off);
      return;
    }
  }
  check_ipv4(n, inner, ilen, "TX_UNDERLAY inner");
  CHECK(p[1] == inner[1], "TX_UNDERLAY: outer TOS %02x != inner %02x", p[1], inner[1]);
  CHECK((be16(p + 6) & 0xbfff) == 0 && (be16(p + 6) & 0x4000) == (be16(inner + 6) & 0x4000), "TX_UNDERLAY: outer flags %04x", be16(p + 6));
  if (pod_ip_off >= 0) check_forwarded(inner, ilen, in->bytes + pod_ip_off, be16(in->bytes + pod_ip_off + 2), "TX_UNDERLAY inner");
}

static void check_icmp_error(node_t* n, const uint8_t* p, uint32_t len, const char* what) {
  check_ipv4(n, p, len, what);
  CHECK(len <= 576, "%s: ICMP error of %u bytes", what, len);
  CHECK(p[9] == 1, "%s: protocol %u", what, p[9]);
  uint32_t hl = (p[0] & 15) * 4;
  CHECK(len >= hl + 8 + 20, "%s: %u bytes", what, len);
  CHECK(inet_csum(p + hl, len - hl) == 0, "%s: bad ICMP checksum", what);
  CHECK(p[hl] == 3 || p[hl] == 11, "%s: ICMP type %u", what, p[hl]);
}

/** An ICMPv6 error (RFC 4443) the pod side sent about the IPv6 packet at
 *  `inp` (`avail` bytes): from our IPv6 overlay address to the packet's
 *  source, at most 1280 bytes, a valid checksum, quoting the packet's first
 *  bytes; never about an ICMPv6 error or a packet from a multicast,
 *  unspecified or loopback source; no route: type 1 code 0 for a
 *  destination without a route; packet too big: type 2 with the tunnel MTU
 *  of the peer the destination routes to, for a packet over it. */
static void check_icmp6_error(node_t* n, const uint8_t* p, uint32_t len, const uint8_t* inp, uint32_t avail, uint16_t reason, const char* what) {
  check_ipv6(p, len, what);
  CHECK(len <= 1280, "%s: ICMPv6 error of %u bytes", what, len);
  CHECK(len >= 48 && p[6] == 58, "%s: next header %u, %u bytes", what, p[6], len);
  CHECK(memcmp(p + 8, n->overlay6, 16) == 0, "%s: source is not the node's IPv6 overlay address", what);
  const uint32_t il = ip6_len(inp, avail);
  CHECK(il != 0, "%s: about an input that holds no valid IPv6 header", what);
  CHECK(memcmp(p + 24, inp + 8, 16) == 0, "%s: not sent to the packet's source", what);
  CHECK(l4_sum6(p, 58, p + 40, len - 40) == 0, "%s: bad ICMPv6 checksum", what);
  const uint32_t type = p[40], code = p[41];
  CHECK(type >= 1 && type <= 4, "%s: ICMPv6 type %u", what, type);
  const uint32_t q = len - 48, want = il < 1280 - 48 ? il : 1280 - 48;
  CHECK(q == want, "%s: quotes %u bytes of a %u-byte packet (want %u)", what, q, il, want);
  CHECK(memcmp(p + 48, inp, q) == 0, "%s: the quote is not the packet", what);
  CHECK(!(inp[6] == 58 && il > 40 && inp[40] < 128), "%s: an ICMPv6 error about an ICMPv6 error (type %u)", what, inp[40]);
  CHECK(!a6_multicast(inp + 8) && !a6_zero(inp + 8) && !a6_loopback(inp + 8), "%s: about a packet from a multicast/unspecified/loopback source", what);
  CHECK(!a6_multicast(inp + 24), "%s: about a packet to a multicast destination", what);
  const int nh = route6_lookup(n, inp + 24);
  if (type == 1) {
    CHECK(code == 0 && reason == R_NO_ROUTE && nh < 0, "%s: destination unreachable code %u reason %u for a destination routed to %d", what, code, reason, nh);
  } else if (type == 2) {
    // The tunnel's inner MTU: 20 bytes less to a peer over IPv6 (inner_mtu).
    const uint32_t k = nh_kind(n, nh), mtu = inner_mtu(n, nh);
    CHECK(code == 0 && reason == R_TOO_BIG && (k == NH_VXLAN || k == NH_IPIP), "%s: packet too big code %u reason %u, next hop kind %u", what, code, reason, k);
    CHECK(be32(p + 44) == mtu, "%s: packet too big says MTU %u, the tunnel's is %u", what, be32(p + 44), mtu);
    CHECK(il > mtu, "%s: packet too big for %u bytes that fit (MTU %u)", what, il, mtu);
  }
}

/** A Neighbor Advertisement answering the tap frame `in` (proxy NDP): the
 *  input must be a valid Neighbor Solicitation (RFC 4861 7.1.1, judged
 *  here: hop limit 255, code 0, checksum, options, a unicast target) from a
 *  unicast source for a target we route to a peer; the answer goes to the
 *  solicitor's MAC (its source link-layer option, else the frame's source)
 *  from our VTEP MAC, from the target to the solicitor, hop limit 255,
 *  Solicited and not Override, with our VTEP MAC as the target's. */
static void check_neighbor_advert(node_t* n, const uint8_t* p, uint32_t len, const pkt_t* in) {
  CHECK(len == 14 + 40 + 32, "NA of %u bytes", len);
  const uint8_t* f = in->bytes;
  CHECK(in->len >= 14 + 40 + 24 && be16(f + 12) == 0x86dd, "NA for a %u-byte frame of type %04x", in->len, in->len >= 14 ? be16(f + 12) : 0);
  const uint8_t* ip = f + 14;
  const uint32_t il = ip6_len(ip, in->len - 14);
  CHECK(il >= 40 + 24, "NA for an input without a whole IPv6 NS (%u bytes)", il);
  const uint8_t* q = ip + 40;
  const uint32_t ql = il - 40;
  CHECK(ip[6] == 58 && ip[7] == 255 && q[0] == 135 && q[1] == 0, "NA for no NS: next %u hop limit %u type %u code %u", ip[6], ip[7], q[0], q[1]);
  CHECK(l4_sum6(ip, 58, q, ql) == 0, "NA for an NS with a bad checksum");
  CHECK(!a6_multicast(q + 8), "NA for a multicast target");
  CHECK(!a6_zero(ip + 8), "NA answering duplicate address detection (unspecified source)");
  CHECK(!a6_multicast(ip + 8) && !a6_loopback(ip + 8), "NA to a multicast or loopback source (RFC 4291 2.7: never a source)");
  CHECK(memcmp(q + 8, ip + 8, 16) != 0, "NA for an NS whose target is its own source");
  uint64_t sll = 0;
  uint32_t o = 24;
  while (o + 2 <= ql) {
    const uint32_t ol = q[o + 1] * 8u;
    CHECK(ol != 0 && o + ol <= ql, "NA for an NS with a malformed option at %u", o);
    if (q[o] == 1 && ol >= 8) sll = be48(q + o + 2);
    o += ol;
  }
  CHECK(o == ql, "NA for an NS whose options do not fill it (%u of %u)", o, ql);
  const int nh = route6_lookup(n, q + 8);
  const uint32_t k = nh_kind(n, nh);
  CHECK(k == NH_VXLAN || k == NH_IPIP || k == NH_DIRECT, "NA for a target routed to next hop %d (kind %u)", nh, k);
  const uint64_t to = sll ? sll : be48(f + 6);
  CHECK(be48(p) == to, "NA sent to %012llx, not the solicitor %012llx", (unsigned long long)be48(p), (unsigned long long)to);
  CHECK(be48(p + 6) == n->vtep_mac && be16(p + 12) == 0x86dd, "NA: Ethernet header");
  const uint8_t* a = p + 14;
  check_ipv6(a, 72, "NA");
  CHECK(a[6] == 58 && a[7] == 255, "NA: next header %u hop limit %u", a[6], a[7]);
  CHECK(memcmp(a + 8, q + 8, 16) == 0, "NA: source is not the target");
  CHECK(memcmp(a + 24, ip + 8, 16) == 0, "NA: not sent to the solicitor");
  const uint8_t* na = a + 40;
  CHECK(na[0] == 136 && na[1] == 0, "NA: type %u code %u", na[0], na[1]);
  CHECK(l4_sum6(a, 58, na, 32) == 0, "NA: bad ICMPv6 checksum");
  CHECK((na[4] & 0x60) == 0x40, "NA: flags %02x (must be Solicited, not Override)", na[4]);
  CHECK(memcmp(na + 8, q + 8, 16) == 0, "NA: target is not the NS's");
  CHECK(na[24] == 2 && na[25] == 1 && be48(na + 26) == n->vtep_mac, "NA: target link-layer option");
}

/** An IPv6 packet handed to the device. From a pod: its destination routes
 *  locally and it is the input byte for byte. Decapsulated: the inner packet
 *  of the input (VXLAN 0x86DD or protocol 41 to this node), from a source
 *  that routes back to the sending peer (anti-spoofing), the same bytes but
 *  for the traffic class's ECN bits, set by RFC 6040, and a TCP/UDP
 *  checksum field that held a partial (pseudo-header) sum and now holds
 *  the complete checksum. */
static void check_to_device6(node_t* n, const uint8_t* ipp, uint32_t ilen, const pkt_t* in, int stage, int ip_off, uint16_t mpeer) {
  check_ipv6(ipp, ilen, "TO_DEVICE IPv6");
  if (stage == STAGE_POD) {
    const uint8_t* in6 = in->bytes + ip_off;
    CHECK(ip6_len(in6, in->len - ip_off) == ilen, "TO_DEVICE IPv6: %u bytes for an input of %u", ilen, ip6_len(in6, in->len - ip_off));
    CHECK(nh_kind(n, route6_lookup(n, in6 + 24)) == NH_LOCAL, "TO_DEVICE IPv6: a pod's packet to a destination that is not local");
    const int i = first_diff(ipp, in6, 0, ilen);
    CHECK(i < 0, "TO_DEVICE IPv6 (local): byte %d changed (%02x -> %02x)", i, in6[i], ipp[i]);
    return;
  }
  const uint8_t* q;
  uint32_t qavail, sender, otos;
  if (stage == STAGE_IP6TNL) {
    // The raw socket's payload: the inner packet itself.
    q = in->bytes;
    qavail = in->len;
    sender = in->addr;
    otos = in->tos;
  } else if (stage == STAGE_VXLAN) {
    CHECK(in->len >= 22 && be16(in->bytes + 20) == 0x86dd, "TO_DEVICE IPv6 from a VXLAN frame of type %04x", in->len >= 22 ? be16(in->bytes + 20) : 0);
    q = in->bytes + 22;
    qavail = in->len - 22;
    sender = in->addr;
    otos = in->tos;
  } else {
    const uint32_t ohl = in->len >= 20 ? (in->bytes[0] & 15) * 4u : 0;
    CHECK(ohl >= 20 && in->bytes[9] == 41 && be16(in->bytes + 2) >= ohl && be16(in->bytes + 2) <= in->len,
          "TO_DEVICE IPv6 from an outer packet that is not protocol 41 (%u)", in->len >= 20 ? in->bytes[9] : 0);
    CHECK(be32(in->bytes + 16) == n->underlay, "TO_DEVICE IPv6 from protocol 41 to %08x, not this node", be32(in->bytes + 16));
    q = in->bytes + ohl;
    qavail = be16(in->bytes + 2) - ohl;
    sender = be32(in->bytes + 12);
    otos = in->bytes[1];
  }
  CHECK(ip6_len(q, qavail) == ilen, "TO_DEVICE IPv6: %u bytes for an inner packet of %u", ilen, ip6_len(q, qavail));
  const int sp = peer_of(n, sender);
  CHECK(sp >= 0 && mpeer == sp, "TO_DEVICE IPv6: sent by %08x (peer %d), metadata says peer %u", sender, sp, mpeer);
  const int nh = route6_lookup(n, q + 8);
  const uint32_t k = nh_kind(n, nh);
  CHECK((k == NH_VXLAN || k == NH_IPIP || k == NH_DIRECT) && n->nh[nh].peer == (uint32_t)sp,
        "TO_DEVICE IPv6: spoofed source (routes to next hop %d, kind %u), sent by peer %d", nh, k, sp);
  CHECK(!a6_multicast(q + 8) && !a6_zero(q + 8) && !a6_loopback(q + 8) && !a6_link_local(q + 8), "TO_DEVICE IPv6: martian source");
  CHECK(!a6_multicast(q + 24) && !a6_zero(q + 24) && !a6_loopback(q + 24) && !a6_link_local(q + 24), "TO_DEVICE IPv6: martian destination");
  const int ecn = ecn_decap(ip6_tclass(q) & 3, otos & 3);
  CHECK(ecn >= 0, "TO_DEVICE IPv6: outer CE on a Not-ECT packet delivered");
  CHECK((ip6_tclass(ipp) & 3) == (uint32_t)ecn, "TO_DEVICE IPv6: ECN %u, RFC 6040 says %d (inner %u, outer %u)", ip6_tclass(ipp) & 3, ecn,
        ip6_tclass(q) & 3, otos & 3);
  const uint32_t cf = q[6] == 6 ? 40 + 16 : q[6] == 17 ? 40 + 6 : 0;
  const int has_cf = cf != 0 && cf + 2 <= ilen;
  CHECK(ipp[0] == q[0] && (ipp[1] & 0xcf) == (q[1] & 0xcf), "TO_DEVICE IPv6 (decapsulated): traffic class changed beyond ECN (%02x%02x -> %02x%02x)",
        q[0], q[1], ipp[0], ipp[1]);
  int i = first_diff(ipp, q, 2, has_cf ? cf : ilen);
  if (i < 0 && has_cf) i = first_diff(ipp, q, cf + 2, ilen);
  CHECK(i < 0, "TO_DEVICE IPv6 (decapsulated): byte %d changed (%02x -> %02x)", i, q[i], ipp[i]);
  if (has_cf && be16(ipp + cf) != be16(q + cf)) {
    CHECK(be16(q + cf) == partial_sum6(q, q[6], ilen - 40), "TO_DEVICE IPv6: checksum %04x -> %04x, but it was not a partial sum",
          be16(q + cf), be16(ipp + cf));
    CHECK(l4_sum6(ipp, ipp[6], ipp + 40, ilen - 40) == 0, "TO_DEVICE IPv6: the finished checksum %04x is wrong", be16(ipp + cf));
  }
}

/** An IPv4 packet processIp6TunnelBatch handed to the device: the input
 *  (the inner packet itself) from a known peer, the metadata's, whose
 *  source routes back to it (anti-spoofing), the same bytes but for the
 *  ECN bits RFC 6040 sets, the header checksum, and a TCP/UDP checksum
 *  field that held a partial (pseudo-header) sum and now holds the
 *  complete checksum. */
static void check_to_device4_ip6tnl(node_t* n, const uint8_t* ipp, uint32_t ilen, const pkt_t* in, uint16_t mpeer) {
  const uint8_t* q = in->bytes;
  CHECK(in->len >= 20 && q[0] >> 4 == 4 && be16(q + 2) == ilen && ilen <= in->len, "TO_DEVICE IPv4 (ip6tnl): %u bytes for an input of %u", ilen,
        in->len >= 4 ? be16(q + 2) : 0);
  const int sp = peer_of(n, in->addr);
  CHECK(sp >= 0 && mpeer == sp, "TO_DEVICE IPv4 (ip6tnl): sent by %08x (peer %d), metadata says peer %u", in->addr, sp, mpeer);
  const int nh = route4_lookup(n, be32(q + 12));
  const uint32_t k = nh_kind(n, nh);
  CHECK((k == NH_VXLAN || k == NH_IPIP || k == NH_DIRECT) && n->nh[nh].peer == (uint32_t)sp,
        "TO_DEVICE IPv4 (ip6tnl): spoofed source %08x (routes to next hop %d, kind %u), sent by peer %d", be32(q + 12), nh, k, sp);
  const int ecn = ecn_decap(q[1] & 3, in->tos & 3);
  CHECK(ecn >= 0, "TO_DEVICE IPv4 (ip6tnl): outer CE on a Not-ECT packet delivered");
  CHECK((ipp[1] & 0xfc) == (q[1] & 0xfc) && (ipp[1] & 3) == (uint32_t)ecn, "TO_DEVICE IPv4 (ip6tnl): TOS %02x -> %02x, RFC 6040 says ECN %d",
        q[1], ipp[1], ecn);
  const uint32_t hl = (q[0] & 15) * 4u;
  const int whole = (be16(q + 6) & 0x1fff) == 0 && (be16(q + 6) & 0x2000) == 0;
  const uint32_t cf = !whole ? 0 : q[9] == 6 ? hl + 16 : q[9] == 17 ? hl + 6 : 0;
  const int has_cf = cf != 0 && cf + 2 <= ilen;
  int i = first_diff(ipp, q, 2, 10);
  if (i < 0) i = first_diff(ipp, q, 12, has_cf ? cf : ilen);
  if (i < 0 && has_cf) i = first_diff(ipp, q, cf + 2, ilen);
  CHECK(i < 0, "TO_DEVICE IPv4 (ip6tnl): byte %d changed (%02x -> %02x)", i, q[i], ipp[i]);
  if (has_cf && be16(ipp + cf) != be16(q + cf)) {
    const uint32_t l4n = ilen - hl;
    const uint64_t ps = csum_add(0, q + 12, 8) + q[9] + l4n;
    CHECK(be16(q + cf) == (~csum_fold(ps) & 0xffff), "TO_DEVICE IPv4 (ip6tnl): checksum %04x -> %04x, but it was not a partial sum",
          be16(q + cf), be16(ipp + cf));
    CHECK(csum_fold(csum_add(ps, ipp + hl, l4n)) == 0, "TO_DEVICE IPv4 (ip6tnl): the finished checksum %04x is wrong", be16(ipp + cf));
  }
}

static void check_packet(node_t* n, uint32_t slot, const pkt_t* in, int stage) {
  const uint8_t* m = meta_ptr(n, slot);
  uint32_t off = le32(m), len = le32(m + 4), addr = le32(m + 12);
  uint16_t verdict = le16(m + 8), reason = le16(m + 10), peer = le16(m + 22);
  CHECK(verdict < VERDICT_COUNT, "verdict %u out of range", verdict);
  CHECK(reason < REASON_COUNT, "reason %u out of range", reason);
  int tap = n->mode == 1;
  const int pod = stage == STAGE_POD;
  // Where the pod's IP packet started in the input (pod targets only).
  int ip_off = pod ? (tap ? 14 : 0) : -1;
  // processIp6TunnelBatch: a sender that is no peer is refused first.
  CHECK(stage != STAGE_IP6TNL || peer_of(n, in->addr) >= 0 || (verdict == VERDICT_DROP && reason == R_UNKNOWN_PEER),
        "ip6tnl: sender %08x is no peer, verdict %u reason %u", in->addr, verdict, reason);
  if (verdict == VERDICT_DROP) {
    CHECK(reason != 0, "a drop without a reason");
    // Too big without DF is dropped only towards an IPv4 underlay: over
    // IPv6 nothing fragments, so the sender is told (ICMP).
    if (pod && reason == R_FRAG_NEEDED_NO_DF && in->len >= (uint32_t)ip_off + 20) {
      const int nh = route4_lookup(n, be32(in->bytes + ip_off + 16));
      CHECK(!((nh_kind(n, nh) == NH_VXLAN || nh_kind(n, nh) == NH_IPIP) && peer_over6(n, n->nh[nh].peer)),
            "frag_needed_no_df drop towards peer %u, reached over IPv6 (must answer ICMP)", n->nh[nh].peer);
    }
    return;
  }
  CHECK((uint64_t)off + len <= SLOT_SIZE, "verdict %u: off %u + len %u beyond the %u-byte slot", verdict, off, len, SLOT_SIZE);
  CHECK(len > 0, "verdict %u with an empty packet", verdict);
  const uint8_t* p = slot_ptr(n, slot) + off;
  switch (verdict) {
    case VERDICT_TX_UNDERLAY:
      CHECK(reason == 0, "TX_UNDERLAY with reason %u", reason);
      check_tx_underlay(n, p, len, addr, peer, le32(m + 24), in, ip_off);
      break;
    case VERDICT_TX_DIRECT:
      CHECK(reason == 0, "TX_DIRECT with reason %u", reason);
      check_ipv4(n, p, len, "TX_DIRECT");
      CHECK(addr == W4_UNDERLAY && peer == 2, "TX_DIRECT: next hop %08x peer %u", addr, peer);
      if (ip_off >= 0) check_forwarded(p, len, in->bytes + ip_off, len, "TX_DIRECT");
      break;
    case VERDICT_TO_DEVICE: {
      CHECK(reason == 0, "TO_DEVICE with reason %u", reason);
      const uint8_t* ipp = p;
      uint32_t ilen = len;
      int six = len >= 1 && p[0] >> 4 == 6;
      if (tap) {
        CHECK(len >= 14 && be48(p) == DEV_MAC && be48(p + 6) == n->vtep_mac && (be16(p + 12) == 0x0800 || be16(p + 12) == 0x86dd),
              "TO_DEVICE tap: Ethernet header");
        six = be16(p + 12) == 0x86dd;
        CHECK(len >= 14 + (six ? 40 : 20), "TO_DEVICE tap: %u bytes", len);
        ipp += 14;
        ilen -= 14;
      }
      if (six) {
        check_to_device6(n, ipp, ilen, in, stage, ip_off, peer);
        break;
      }
      check_ipv4(n, ipp, ilen, "TO_DEVICE");
      if (ip_off >= 0) check_forwarded(ipp, ilen, in->bytes + ip_off, ilen, "TO_DEVICE (local)");
      if (stage == STAGE_IP6TNL) check_to_device4_ip6tnl(n, ipp, ilen, in, peer);
      break;
    }
    case VERDICT_REPLY: {
      CHECK(pod, "REPLY from a decap path");
      if (tap && len >= 14 && be16(p + 12) == 0x0806) {
        CHECK(reason == 0, "ARP reply with reason %u", reason);
        // Padded to the 60-byte Ethernet minimum when the slot has room.
        CHECK(len == 60 || (len == 42 && off + 60 > SLOT_SIZE), "ARP reply of %u bytes at offset %u", len, off);
        CHECK(be16(p + 14) == 1 && be16(p + 16) == 0x0800 && p[18] == 6 && p[19] == 4 && be16(p + 20) == 2, "ARP reply header");
        CHECK(be48(p) == be48(in->bytes + 22) && be48(p + 32) == be48(in->bytes + 22), "ARP reply not sent to the asker");
        CHECK(be32(p + 28) == be32(in->bytes + 38), "ARP reply: wrong sender address");
        break;
      }
      const int six = tap ? len >= 14 && be16(p + 12) == 0x86dd : p[0] >> 4 == 6;
      if (six && reason == 0) {
        CHECK(tap, "a REPLY without a reason in tun mode");
        check_neighbor_advert(n, p, len, in);
        break;
      }
      CHECK(reason != 0, "ICMP error without a reason");
      if (six) {
        if (tap) {
          CHECK(len >= 14 && len <= 1280 + 14, "ICMPv6 error frame of %u bytes", len);
          CHECK(be48(p + 6) == n->vtep_mac, "ICMPv6 error: Ethernet source");
          CHECK(in->len >= 14 && be48(p) == be48(in->bytes + 6), "ICMPv6 error not sent back to the sender's MAC");
          check_icmp6_error(n, p + 14, len - 14, in->bytes + 14, in->len - 14, reason, "REPLY ICMPv6 (tap)");
        } else {
          check_icmp6_error(n, p, len, in->bytes, in->len, reason, "REPLY ICMPv6");
        }
        break;
      }
      const uint8_t* ip = p;
      if (tap) {
        CHECK(len >= 14 && len <= 576 + 14, "ICMP error frame of %u bytes", len);
        CHECK(be16(p + 12) == 0x0800 && be48(p + 6) == n->vtep_mac, "ICMP error: Ethernet header");
        CHECK(be48(p) == be48(in->bytes + 6), "ICMP error not sent back to the sender's MAC");
        check_icmp_error(n, p + 14, len - 14, "REPLY (tap)");
        ip = p + 14;
      } else {
        check_icmp_error(n, p, len, "REPLY");
      }
      if (reason == R_TOO_BIG) {
        // Fragmentation needed quoting the MTU of the tunnel (or link) the
        // destination routes to: the one rule, 20 bytes less over IPv6.
        const uint8_t* c = ip + (ip[0] & 15) * 4u;
        const uint8_t* q = in->bytes + ip_off;
        CHECK(c[0] == 3 && c[1] == 4, "REPLY too_big: ICMP type %u code %u", c[0], c[1]);
        CHECK(in->len >= (uint32_t)ip_off + 20, "REPLY too_big about a %u-byte input", in->len);
        const int nh = route4_lookup(n, be32(q + 16));
        const uint32_t mtu = inner_mtu(n, nh);
        CHECK(mtu != 0 && be16(c + 6) == mtu, "REPLY too_big says MTU %u, next hop %d (kind %u) takes %u", be16(c + 6), nh, nh_kind(n, nh), mtu);
        CHECK(be16(q + 2) > mtu, "REPLY too_big for %u bytes that fit (MTU %u)", be16(q + 2), mtu);
      }
      break;
    }
  }
}

/** Each packet is counted under exactly one verdict, and every reason a
 *  packet carries under exactly one drop counter. */
static void check_counters(node_t* n, uint32_t nslots, uint32_t rx_counter) {
  uint64_t want_v[VERDICT_COUNT] = {0}, want_r[REASON_COUNT] = {0}, rx = 0;
  for (uint32_t i = 0; i < nslots; i++) {
    const uint8_t* m = meta_ptr(n, i);
    uint16_t v = le16(m + 8), r = le16(m + 10);
    want_v[v]++;
    if (v == VERDICT_DROP || r != 0) want_r[r]++;
    if (!(v == VERDICT_DROP && r == R_BAD_OFFSET)) rx++;
  }
  uint64_t sum_v = 0;
  for (uint32_t v = 0; v < VERDICT_COUNT; v++) {
    uint64_t d = counter(n, C_VERDICT_BASE + v) - g_before[C_VERDICT_BASE + v];
    CHECK(d == want_v[v], "verdict counter %u moved by %llu, %llu packets got it", v, (unsigned long long)d, (unsigned long long)want_v[v]);
    sum_v += d;
  }
  CHECK(sum_v == nslots, "verdict counters add up to %llu for %u packets", (unsigned long long)sum_v, nslots);
  for (uint32_t r = 0; r < REASON_COUNT; r++) {
    uint64_t d = counter(n, C_DROP_BASE + r) - g_before[C_DROP_BASE + r];
    CHECK(d == want_r[r], "drop counter %u moved by %llu, expected %llu", r, (unsigned long long)d, (unsigned long long)want_r[r]);
  }
  CHECK(counter(n, C_BATCHES) - g_before[C_BATCHES] == 1, "batch counter");
  uint64_t drx = counter(n, rx_counter) - g_before[rx_counter];
  CHECK(drx == rx, "rx counter moved by %llu for %llu packets", (unsigned long long)drx, (unsigned long long)rx);
}

static int g_verbose;

static void check_batch(node_t* n, uint32_t nslots, uint32_t rx_counter, int stage) {
  for (uint32_t i = 0; g_verbose && i < nslots; i += 2) {
    const uint8_t* m = meta_ptr(n, i);
    fprintf(stderr, "packet %u: verdict %u reason %u off %u len %u addr %08x peer %u\n", i / 2, le16(m + 8), le16(m + 10),
            le32(m), le32(m + 4), le32(m + 12), le16(m + 22));
  }
  for (uint32_t i = 0; i < nslots; i++) {
    if (i & 1) {
      const uint8_t* m = meta_ptr(n, i);
      CHECK(le16(m + 8) == VERDICT_DROP && le16(m + 10) == R_BAD_OFFSET, "guard record %u not dropped as R_BAD_OFFSET", i);
    } else {
      check_packet(n, i, &g_in[i / 2], stage);
    }
  }
  check_counters(n, nslots, rx_counter);
}

// --- input parsing --------------------------------------------------------------
/** Split data[1..] on SEP into at most `max` segments. */
static uint32_t split(const uint8_t* data, size_t size, const uint8_t** seg, size_t* seglen, uint32_t max) {
  uint32_t k = 0;
  size_t start = 1, i = 1;
  while (i + 4 <= size && k < max - 1) {
    if (memcmp(data + i, SEP, 4) == 0) {
      seg[k] = data + start;
      seglen[k++] = i - start;
      i += 4;
      start = i;
    } else {
      i++;
    }
  }
  seg[k] = data + start;
  seglen[k++] = size - start;
  return k;
}

/** Store a packet for slot k; false when it does not fit. */
static int stage(uint32_t k, uint8_t ctrl, const uint8_t* hdr, size_t hlen, const uint8_t* b, size_t len, uint32_t addr, uint32_t tos) {
  if (hlen + len > SLOT_SIZE - MIN_OFF) return 0;
  pkt_t* p = &g_in[k];
  if (hlen) memcpy(p->bytes, hdr, hlen);
  memcpy(p->bytes + hlen, b, len);
  p->len = (uint32_t)(hlen + len);
  p->off = place(ctrl, p->len);
  p->addr = addr;
  p->tos = tos;
  return 1;
}

// --- nat: a sequence of batches through a NAT-enabled worker2 ---------------------
// worker2 (tun) with NAT on, as test/nat-pipeline.test.ts sets it up, but with
// a 16-flow conntrack table and a 12-port SNAT range so that "table full" and
// "no free port" are reachable within one input. Mirrored in
// test/fuzz-replay.test.ts (natWorker2).
//
// Each input starts from an empty table and the same clock and random seed
// (nat_reset), so a crash replays. Each segment is one step, one batch:
//   s[0] op: bits 0-1 kind: 0 an IPv4 packet from a pod (pod side);
//            1 an inner IPv4 packet from worker3 (the harness wraps it in
//            VXLAN, processVxlanBatch); 2 the answer to an earlier step's
//            output (addresses, ports, echo type swapped, TTL 64, TCP flags
//            from body[0], checksums recomputed); 3 an ICMP error about an
//            earlier step's output (body[0] & 7 picks type/code, body[1]
//            quotes that many bytes more than header + 8, body[2..] is XORed
//            over the quoted bytes), from its destination to its source.
//            Answers and errors come back the way the output left: through
//            VXLAN from worker3, IPIP from worker1, or the pod side.
//            bits 2-4: which earlier step (mod the steps so far).
//   s[1] clock: bits 0-2 seconds to advance (NAT_ADVANCE), bit 3 ctExpire
//            over the whole table afterwards, bits 4-5 copies - 1: the packet
//            is sent 1..4 times in the batch (kinds 0/1: copy j with its
//            source port or echo identifier + j, L4 checksum fixed).
//   s[2..] body.
#define NAT_FLOWS 16
#define NAT_PORT_MIN 61000
#define NAT_PORT_MAX 61011
#define NAT_SEED 7
#define NAT_T0 1000
#define MAX_STEPS 6
#define W2_OVERLAY IP4(198, 19, 2, 0)
#define SNAT_IP IP4(198, 19, 2, 1)
#define CLUSTER_IP IP4(198, 18, 250, 10)
#define EMPTY_IP IP4(198, 18, 250, 11)
#define LOCAL_BE IP4(198, 19, 2, 7)
#define REMOTE_BE IP4(198, 19, 3, 7)
#define REMOTE_BE2 IP4(198, 19, 3, 8)
#define DIRECT_BE IP4(198, 19, 4, 7)
#define C_NAT_TRANSLATED 66
#define C_NAT_ICMP_TRANSLATED 67
#define CT_STAT_INSERTS 0
#define CT_STAT_DELETES 1
#define CT_STAT_EXPIRED 2
#define CT_STAT_EARLY_DROP 6
#define SIDE_POD STAGE_POD
#define SIDE_VXLAN STAGE_VXLAN
#define SIDE_IPIP STAGE_IPIP

static const uint32_t NAT_ADVANCE[8] = {0, 1, 11, 31, 61, 121, 601, 432001};
static const uint8_t NAT_ERRS[8][2] = {{3, 0}, {3, 1}, {3, 3}, {3, 4}, {11, 0}, {12, 0}, {3, 13}, {4, 0}};

static void nat_configure(node_t* n) {
  must(Z_overlayZ_natConfigure(&n->w, 1, 1, W2_UNDERLAY, SNAT_IP, NAT_PORT_MIN, NAT_PORT_MAX, NAT_SEED), "natConfigure");
  Z_overlayZ_natSetNow(&n->w, NAT_T0);
}

static void nat_worker2(node_t* n) {
  worker2(n, 0, 0, 0); // IPv4 only: IPv6 has no route here (nat66 is the NAT66 target)
  Z_overlay_instance_t* w = &n->w;
  must(Z_overlayZ_ctSetup(w, NAT_FLOWS), "ctSetup");
  must(Z_overlayZ_svcSetup(w, 16, 16), "svcSetup");
  // ClusterIP TCP 80 and NodePort 30080: a remote and a local backend; UDP
  // 53: a remote one and one reached by plain routing; one without backends.
  must(Z_overlayZ_svcSetBackend(w, 0, REMOTE_BE, 8080), "backend 0");
  must(Z_overlayZ_svcSetBackend(w, 1, LOCAL_BE, 8080), "backend 1");
  must(Z_overlayZ_svcSetBackend(w, 2, REMOTE_BE2, 5353), "backend 2");
  must(Z_overlayZ_svcSetBackend(w, 3, DIRECT_BE, 5353), "backend 3");
  must(Z_overlayZ_svcAdd(w, 6, CLUSTER_IP, 80, 0, 0, 2), "svc clusterip");
  must(Z_overlayZ_svcAdd(w, 6, W2_UNDERLAY, 30080, 1, 0, 2), "svc nodeport");
  must(Z_overlayZ_svcAdd(w, 17, CLUSTER_IP, 53, 0, 2, 2), "svc udp");
  must(Z_overlayZ_svcAdd(w, 6, EMPTY_IP, 80, 0, 0, 0), "svc empty");
  nat_configure(n);
  node_ready(n);
}

/** Back to the state after nat_worker2: no flows (deleted from the top, so
 *  the free list hands out records 0, 1, 2, ... as a fresh table does), the
 *  clock hand at 0, the clock and the random seed reset. */
static void nat_reset(node_t* n) {
  Z_overlay_instance_t* w = &n->w;
  uint32_t high = Z_overlayZ_ctHighWater(w);
  for (uint32_t f = high; f-- > 0;)
    if (Z_overlayZ_ctFlowPtr(w, f) != 0) Z_overlayZ_ctDelete(w, f);
  uint32_t hand = Z_overlayZ_ctHand(w);
  if (hand != 0) Z_overlayZ_ctExpire(w, 0, high - hand);
  CHECK(Z_overlayZ_ctCount(w) == 0 && Z_overlayZ_ctHand(w) == 0, "conntrack reset");
  nat_configure(n);
}

static uint64_t ct_gone(node_t* n) {
  return Z_overlayZ_ctStat(&n->w, CT_STAT_DELETES) + Z_overlayZ_ctStat(&n->w, CT_STAT_EXPIRED) +
    Z_overlayZ_ctStat(&n->w, CT_STAT_EARLY_DROP);
}

/** The length a checked IPv4 packet claims (else `len`). */
static uint32_t ip_len(const uint8_t* p, uint32_t len) {
  if (len >= 20 && be16(p + 2) >= 20 && be16(p + 2) <= len) return be16(p + 2);
  return len;
}
static uint32_t ip_hl(const uint8_t* p) { return (p[0] & 15) * 4u; }
static int ip_first(const uint8_t* p) { return (be16(p + 6) & 0x1fff) == 0; }
static int ip_whole(const uint8_t* p) { return (be16(p + 6) & 0x3fff) == 0; }
static int icmp_is_error(uint32_t t) { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12; }

typedef struct {
  uint32_t src, dst, sport, dport, proto;
  int ok; // TCP/UDP with ports or ICMP echo (sport = identifier), first fragment
} tuple_t;

static tuple_t tuple_of(const uint8_t* p, uint32_t len) {
  tuple_t t = {0, 0, 0, 0, 0, 0};
  if (len < 20) return t;
  uint32_t hl = ip_hl(p);
  if (hl < 20 || hl > len) return t;
  t.src = be32(p + 12);
  t.dst = be32(p + 16);
  t.proto = p[9];
  if (!ip_first(p)) return t;
  const uint8_t* l4 = p + hl;
  uint32_t n = len - hl;
  if ((t.proto == 6 || t.proto == 17) && n >= 4) {
    t.sport = be16(l4);
    t.dport = be16(l4 + 2);
    t.ok = 1;
  } else if (t.proto == 1 && n >= 8 && (l4[0] == 0 || l4[0] == 8)) {
    t.sport = be16(l4 + 4);
    t.ok = 1;
  }
  return t;
}

/** TCP/UDP checksum over the pseudo header and `n` bytes of segment. */
static uint32_t l4_sum(const uint8_t* ip, const uint8_t* l4, uint32_t n) {
  uint64_t s = csum_add(0, ip + 12, 8) + ip[9] + n;
  return csum_fold(csum_add(s, l4, n));
}

/** 1 valid, 0 invalid, -1 cannot tell (fragment, too short, UDP without
 *  checksum, UDP length inconsistent, another protocol). */
static int l4_csum_state(const uint8_t* p, uint32_t len) {
  uint32_t hl = ip_hl(p);
  if (len < 20 || hl < 20 || hl > len || !ip_whole(p)) return -1;
  const uint8_t* l4 = p + hl;
  uint32_t n = len - hl;
  if (p[9] == 1) return n >= 8 ? inet_csum(l4, n) == 0 : -1;
  if (p[9] == 6) return n >= 20 ? l4_sum(p, l4, n) == 0 : -1;
  if (p[9] == 17) {
    if (n < 8 || be16(l4 + 6) == 0) return -1;
    uint32_t ul = be16(l4 + 4);
    if (ul < 8 || ul > n) return -1;
    return l4_sum(p, l4, ul) == 0;
  }
  return -1;
}

/** Recompute the IPv4 header checksum and, where it can be, the L4 one. */
static void fix_checksums(uint8_t* p, uint32_t len) {
  uint32_t hl = ip_hl(p);
  if (ip_whole(p)) {
    uint8_t* l4 = p + hl;
    uint32_t n = len - hl;
    if (p[9] == 1 && n >= 8) {
      put_be16(l4 + 2, 0);
      put_be16(l4 + 2, inet_csum(l4, n));
    } else if (p[9] == 6 && n >= 20) {
      put_be16(l4 + 16, 0);
      put_be16(l4 + 16, l4_sum(p, l4, n));
    } else if (p[9] == 17 && n >= 8 && be16(l4 + 6) != 0 && be16(l4 + 4) >= 8 && be16(l4 + 4) <= n) {
      put_be16(l4 + 6, 0);
      uint32_t c = l4_sum(p, l4, be16(l4 + 4));
      put_be16(l4 + 6, c ? c : 0xffff);
    }
  }
  put_be16(p + 10, 0);
  put_be16(p + 10, inet_csum(p, hl));
}

/** Base packets for answers and errors are whole IPv4 packets. */
static int base_ok(const uint8_t* b, uint32_t len) {
  return len >= 20 && be16(b + 2) == len && ip_hl(b) >= 20 && ip_hl(b) <= len;
}

static uint32_t build_answer(const uint8_t* b, uint32_t len, const uint8_t* body, size_t blen, uint8_t* o) {
  if (!base_ok(b, len)) return 0;
  memcpy(o, b, len);
  put_be32(o + 12, be32(b + 16));
  put_be32(o + 16, be32(b + 12));
  o[8] = 64;
  uint32_t hl = ip_hl(o), n = len - hl;
  uint8_t* l4 = o + hl;
  if (ip_first(o)) {
    if ((o[9] == 6 || o[9] == 17) && n >= 4) {
      memcpy(l4, b + hl + 2, 2);
      memcpy(l4 + 2, b + hl, 2);
    }
    if (o[9] == 6 && n >= 14 && blen >= 1) l4[13] = body[0];
    if (o[9] == 1 && n >= 8 && (l4[0] == 0 || l4[0] == 8)) l4[0] ^= 8;
  }
  fix_checksums(o, len);
  return len;
}

static uint32_t build_error(const uint8_t* b, uint32_t len, const uint8_t* body, size_t blen, uint8_t* o, int* patched) {
  if (!base_ok(b, len)) return 0;
  const uint8_t* tc = NAT_ERRS[blen >= 1 ? body[0] & 7 : 0];
  uint32_t q = ip_hl(b) + 8 + (blen >= 2 ? body[1] : 0);
  if (q > len) q = len;
  uint32_t total = 28 + q;
  memset(o, 0, 28);
  o[0] = 0x45;
  put_be16(o + 2, total);
  o[8] = 64;
  o[9] = 1;
  put_be32(o + 12, be32(b + 16));
  put_be32(o + 16, be32(b + 12));
  o[20] = tc[0];
  o[21] = tc[1];
  if (tc[0] == 3 && tc[1] == 4) put_be16(o + 26, 1400);
  memcpy(o + 28, b, q);
  *patched = 0;
  for (size_t i = 2; i < blen && i - 2 < q; i++) {
    if (body[i]) {
      o[28 + i - 2] ^= body[i];
      *patched = 1;
    }
  }
  fix_checksums(o, total);
  return total;
}

/** Copy j of a kinds 0/1 packet: source port (echo: identifier) + j, with
 *  the L4 checksum updated incrementally when the packet carries one. */
static void vary_copy(uint8_t* p, uint32_t len, uint32_t j) {
  if (j == 0 || len < 20) return;
  uint32_t hl = ip_hl(p);
  if (hl < 20 || hl > len || !ip_first(p)) return;
  uint8_t* l4 = p + hl;
  uint32_t n = len - hl, at, c;
  if ((p[9] == 6 || p[9] == 17) && n >= 4) {
    at = 0;
    c = p[9] == 6 ? (n >= 18 ? 16 : 0) : (n >= 8 && be16(l4 + 6) != 0 ? 6 : 0);
  } else if (p[9] == 1 && n >= 8 && (l4[0] == 0 || l4[0] == 8)) {
    at = 4;
    c = 2;
  } else {
    return;
  }
  uint32_t old = be16(l4 + at), nw = (old + j) & 0xffff;
  put_be16(l4 + at, nw);
  if (c) { // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')
    uint64_t s = (~be16(l4 + c) & 0xffff) + (~old & 0xffff) + nw;
    uint32_t v = csum_fold(s);
    if (p[9] == 17 && v == 0) v = 0xffff;
    put_be16(l4 + c, v);
  }
}

// Addresses and ports a translation may produce: the node's, the services'
// and the backends', the SNAT range, and whatever the inputs so far carried
// (a translation restores what it has seen, nothing else).
static uint32_t g_seen_addr[256], g_seen_port[256], g_nseen_addr, g_nseen_port;
static void seen_addr(uint32_t a) { if (g_nseen_addr < 256) g_seen_addr[g_nseen_addr++] = a; }
static void seen_port(uint32_t p) { if (g_nseen_port < 256) g_seen_port[g_nseen_port++] = p; }
static void seen_packet(const uint8_t* p, uint32_t len, int deep) {
  tuple_t t = tuple_of(p, len);
  if (len < 20) return;
  seen_addr(t.src);
  seen_addr(t.dst);
  if (t.ok) {
    seen_port(t.sport);
    seen_port(t.dport);
  }
  uint32_t hl = ip_hl(p);
  if (deep && t.proto == 1 && hl >= 20 && len >= hl + 8 + 20 && icmp_is_error(p[hl]) && ip_first(p))
    seen_packet(p + hl + 8, len - hl - 8, 0);
}
static int addr_ok(uint32_t a) {
  static const uint32_t fixed[] = {W2_UNDERLAY, W2_OVERLAY, SNAT_IP, CLUSTER_IP, EMPTY_IP, LOCAL_BE, REMOTE_BE, REMOTE_BE2, DIRECT_BE};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) if (a == fixed[i]) return 1;
  for (uint32_t i = 0; i < g_nseen_addr; i++) if (a == g_seen_addr[i]) return 1;
  return 0;
}
static int port_ok(uint32_t p) {
  if ((p >= NAT_PORT_MIN && p <= NAT_PORT_MAX) || p == 8080 || p == 5353) return 1;
  for (uint32_t i = 0; i < g_nseen_port; i++) if (p == g_seen_port[i]) return 1;
  return 0;
}

/** Tuple fields that changed from `a` to `b` are ones a translation may produce. */
static void check_translated_tuple(const uint8_t* a, uint32_t alen, const uint8_t* b, uint32_t blen, const char* what) {
  tuple_t x = tuple_of(a, alen), y = tuple_of(b, blen);
  CHECK(y.src == x.src || addr_ok(y.src), "%s: source %08x -> %08x, an address nothing told us", what, x.src, y.src);
  CHECK(y.dst == x.dst || addr_ok(y.dst), "%s: destination %08x -> %08x, an address nothing told us", what, x.dst, y.dst);
  if (x.ok && y.ok) {
    CHECK(y.sport == x.sport || port_ok(y.sport), "%s: source port/id %u -> %u", what, x.sport, y.sport);
    CHECK(y.dport == x.dport || port_ok(y.dport), "%s: destination port %u -> %u", what, x.dport, y.dport);
  }
}

/** Byte positions a NAT may change in a forwarded packet (besides TTL). */
static int nat_field(const uint8_t* in, uint32_t len, uint32_t i) {
  if (i == 10 || i == 11 || (i >= 12 && i < 20)) return 1;
  uint32_t hl = ip_hl(in);
  if (i < hl || !ip_first(in)) return 0;
  uint32_t k = i - hl, n = len - hl;
  const uint8_t* l4 = in + hl;
  if (in[9] == 6) return n >= 20 && (k < 4 || k == 16 || k == 17);
  if (in[9] == 17) return n >= 8 && (k < 4 || k == 6 || k == 7);
  if (in[9] != 1 || n < 8) return 0;
  if (l4[0] == 0 || l4[0] == 8) return k >= 2 && k < 6;
  if (!icmp_is_error(l4[0])) return 0;
  if (k == 2 || k == 3) return 1;
  // The quoted packet: its header checksum and addresses, ports, L4 checksum.
  if (k < 8 + 20) return k >= 8 + 10 && k < 8 + 20;
  uint32_t ehl = (l4[8] & 15) * 4u;
  if (k < 8 + ehl) return 0;
  uint32_t e = k - 8 - ehl;
  return e < 8 || e == 16 || e == 17;
}

/** What the data path takes off the TTL of a packet NAT's node forwards
 *  (forward.ts, "TTL: one hop per node"): one where the node's hop is its
 *  own, a pod-side packet to the node's underlay address (steered by tc)
 *  leaving by a tunnel or the node's stack, or a NodePort answer leaving the
 *  decap side through the node's stack; minus one (one given back) for a
 *  hairpin, a pod-side packet the kernel forwarded in that NAT translated
 *  back to the device; else none. */
static int nat_ttl_drop(int pod, uint16_t verdict, const uint8_t* in0, uint32_t ilen0, const uint8_t* out, uint32_t olen) {
  if (!pod) return verdict == VERDICT_TX_DIRECT ? 1 : 0;
  if (be32(in0 + 16) == W2_UNDERLAY) return verdict == VERDICT_TO_DEVICE ? 0 : 1;
  if (verdict != VERDICT_TO_DEVICE || in0[8] == 255) return 0;
  uint32_t ilen = ip_len(in0, ilen0);
  for (uint32_t i = 0; i < olen && i < ilen; i++)
    if (i != 8 && i != 10 && i != 11 && out[i] != in0[i]) return -1;
  return 0;
}

/** A packet the node forwarded with NAT: the input with TTL as the path sets
 *  it, at most the NAT fields changed, to addresses and ports it may
 *  produce, and checksums that were right still right. */
static void check_nat_forwarded(const uint8_t* out, uint32_t olen, const uint8_t* in0, uint32_t ilen0, int ttl_drop, const char* what) {
  uint32_t ilen = ip_len(in0, ilen0);
  CHECK(olen == ilen, "%s: %u bytes out of %u", what, olen, ilen);
  CHECK(out[8] + ttl_drop == in0[8], "%s: TTL %u -> %u", what, in0[8], out[8]);
  for (uint32_t i = 0; i < olen; i++) {
    if (i == 8 || out[i] == in0[i]) continue;
    CHECK(nat_field(in0, ilen, i), "%s: byte %u changed (%02x -> %02x), not a NAT field", what, i, in0[i], out[i]);
  }
  check_translated_tuple(in0, ilen, out, olen, what);
  CHECK(l4_csum_state(in0, ilen) != 1 || l4_csum_state(out, olen) == 1, "%s: L4 checksum was right and is wrong now", what);
  uint32_t hl = ip_hl(in0);
  if (in0[9] == 17 && ip_first(in0) && ilen >= hl + 8 && be16(in0 + hl + 6) == 0)
    CHECK(be16(out + hl + 6) == 0, "%s: a zero UDP checksum became %04x", what, be16(out + hl + 6));
  if (in0[9] == 1 && ip_first(in0) && ilen >= hl + 8 + 20 && icmp_is_error(in0[hl])) {
    const uint8_t *qi = in0 + hl + 8, *qo = out + hl + 8;
    uint32_t ehl = (qi[0] & 15) * 4u;
    if (ehl >= 20 && hl + 8 + ehl <= ilen && inet_csum(qi, ehl) == 0)
      CHECK(inet_csum(qo, ehl) == 0, "%s: the quoted header's checksum was right and is wrong now", what);
    check_translated_tuple(qi, ilen - hl - 8, qo, olen - hl - 8, "quoted packet");
  }
}

/** An ICMP error the node built about input `in` (maybe translated back):
 *  it goes to the sender and quotes the packet as the sender sent it. */
static void check_own_error(const uint8_t* p, uint32_t len, const uint8_t* in0, uint32_t ilen0) {
  uint32_t ilen = ip_len(in0, ilen0);
  CHECK(be32(p + 16) == be32(in0 + 12), "own ICMP error to %08x, not to the sender %08x", be32(p + 16), be32(in0 + 12));
  CHECK(be32(p + 12) == W2_OVERLAY || be32(p + 12) == be32(in0 + 16), "own ICMP error from %08x", be32(p + 12));
  uint32_t hl = ip_hl(p);
  const uint8_t* q = p + hl + 8;
  uint32_t qlen = len - hl - 8;
  uint32_t ehl = ip_hl(in0);
  CHECK(qlen >= ehl && inet_csum(q, ehl) == 0, "own ICMP error: the quoted header's checksum is wrong");
  tuple_t x = tuple_of(in0, ilen), y = tuple_of(q, qlen);
  CHECK(x.src == y.src && x.dst == y.dst && x.proto == y.proto, "own ICMP error quotes %08x -> %08x, the sender sent %08x -> %08x",
        y.src, y.dst, x.src, x.dst);
  if (x.ok && qlen >= ehl + 8) CHECK(y.ok && x.sport == y.sport && x.dport == y.dport, "own ICMP error quotes ports %u/%u, the sender sent %u/%u",
                                    y.sport, y.dport, x.sport, x.dport);
}

typedef struct {
  uint8_t in[SLOT_SIZE], out[SLOT_SIZE];
  uint32_t inlen, outlen; // copy 0's input IPv4 packet; its output's (0: none)
  uint16_t verdict, reason;
  int side;      // where answers to the output come from
  uint64_t gone; // ct deletes + expiries after the step
  int tracked;   // copy 0's flow was still in the table after the step (a later copy of
                 // its batch may have early-dropped it to make room)
} nat_step_t;

static nat_step_t g_steps[MAX_STEPS];
static uint8_t g_cin[MAX_PKTS][SLOT_SIZE]; // each copy's input IPv4 packet
static uint32_t g_cinlen[MAX_PKTS];

/** Where the IPv4 packet of a non-drop output sits, and which way answers to it come. */
static const uint8_t* output_ip(node_t* n, uint32_t slot, uint32_t* olen, int* side) {
  const uint8_t* m = meta_ptr(n, slot);
  const uint8_t* p = slot_ptr(n, slot) + le32(m);
  uint32_t len = le32(m + 4);
  *side = SIDE_POD;
  if (le16(m + 8) == VERDICT_TX_UNDERLAY) {
    uint32_t o = p[9] == 17 ? 50 : 20;
    *side = p[9] == 17 ? SIDE_VXLAN : SIDE_IPIP;
    p += o;
    len -= o;
  }
  *olen = len;
  return p;
}

static void check_nat_packet(node_t* n, uint32_t slot, uint32_t j, int side) {
  const uint8_t* m = meta_ptr(n, slot);
  uint32_t off = le32(m), len = le32(m + 4), addr = le32(m + 12);
  uint16_t verdict = le16(m + 8), reason = le16(m + 10), peer = le16(m + 22);
  CHECK(verdict < VERDICT_COUNT, "verdict %u out of range", verdict);
  CHECK(reason < REASON_COUNT, "reason %u out of range", reason);
  const uint8_t* in = g_cin[j];
  uint32_t ilen = g_cinlen[j];
  int pod = side == SIDE_POD;
  // NAT reads ports and flags: a TCP/UDP header cut short is never
  // translated. It is dropped, or (routed traffic, which the NAT stage leaves
  // to the router as with NAT off) forwarded with its addresses unchanged,
  // never to the node or the SNAT address.
  uint32_t tl = ip_len(in, ilen);
  if (pod && tl >= 20 && ip_hl(in) >= 20 && ip_hl(in) <= tl && ip_first(in) && (in[9] == 6 || in[9] == 17) &&
      tl - ip_hl(in) < (in[9] == 6 ? 20u : 8u)) {
    CHECK(reason != R_CT_INVALID, "a truncated %s header got reason ct_invalid", in[9] == 6 ? "TCP" : "UDP");
    if (verdict == VERDICT_TX_UNDERLAY || verdict == VERDICT_TX_DIRECT || verdict == VERDICT_TO_DEVICE) {
      uint32_t ol;
      int os;
      const uint8_t* o = output_ip(n, slot, &ol, &os);
      CHECK(ol >= 20 && be32(o + 12) == be32(in + 12) && be32(o + 16) == be32(in + 16) && be32(in + 16) != SNAT_IP &&
                be32(in + 16) != W2_UNDERLAY,
            "a truncated %s header was forwarded translated or to a NAT address", in[9] == 6 ? "TCP" : "UDP");
    }
  }
  if (verdict == VERDICT_DROP) {
    CHECK(reason != 0, "a drop without a reason");
    return;
  }
  CHECK((uint64_t)off + len <= SLOT_SIZE, "verdict %u: off %u + len %u beyond the %u-byte slot", verdict, off, len, SLOT_SIZE);
  CHECK(len > 0, "verdict %u with an empty packet", verdict);
  const uint8_t* p = slot_ptr(n, slot) + off;
  switch (verdict) {
    case VERDICT_TX_UNDERLAY:
      CHECK(pod, "TX_UNDERLAY from a decap path");
      CHECK(reason == 0, "TX_UNDERLAY with reason %u", reason);
      check_tx_underlay(n, p, len, addr, peer, le32(m + 24), NULL, -1);
      {
        uint32_t o = p[9] == 17 ? 50 : 20;
        check_nat_forwarded(p + o, len - o, in, ilen, nat_ttl_drop(pod, verdict, in, ilen, p + o, len - o), "TX_UNDERLAY inner");
      }
      break;
    case VERDICT_TX_DIRECT:
      check_ipv4(n, p, len, "TX_DIRECT");
      if (reason != 0) { // our ICMP error for a host outside, through the node's stack
        CHECK(pod, "an ICMP error from a decap path");
        check_icmp_error(n, p, len, "TX_DIRECT (ICMP error)");
        CHECK(addr == be32(p + 16), "TX_DIRECT ICMP error: next hop %08x, destination %08x", addr, be32(p + 16));
        check_own_error(p, len, in, ilen);
        break;
      }
      CHECK((addr == W4_UNDERLAY && peer == 2) || (addr == be32(p + 16) && be32(p + 12) == W2_UNDERLAY),
            "TX_DIRECT: next hop %08x peer %u for %08x -> %08x", addr, peer, be32(p + 12), be32(p + 16));
      check_nat_forwarded(p, len, in, ilen, nat_ttl_drop(pod, verdict, in, ilen, p, len), "TX_DIRECT");
      break;
    case VERDICT_TO_DEVICE:
      CHECK(reason == 0, "TO_DEVICE with reason %u", reason);
      check_ipv4(n, p, len, "TO_DEVICE");
      check_nat_forwarded(p, len, in, ilen, nat_ttl_drop(pod, verdict, in, ilen, p, len), "TO_DEVICE");
      break;
    case VERDICT_REPLY:
      CHECK(pod, "REPLY from a decap path");
      CHECK(reason != 0, "ICMP error without a reason");
      check_icmp_error(n, p, len, "REPLY");
      check_own_error(p, len, in, ilen);
      break;
  }
}

static node_t A, B, C;

static void nat_run(const uint8_t* data, size_t size) {
  node_t* n = &A;
  Z_overlay_instance_t* w = &n->w;
  nat_reset(n);
  g_nseen_addr = g_nseen_port = 0;
  const uint8_t* seg[MAX_STEPS];
  size_t seglen[MAX_STEPS];
  uint32_t nseg = split(data, size, seg, seglen, MAX_STEPS), nsteps = 0, now = NAT_T0;
  static uint8_t ip[SLOT_SIZE];
  for (uint32_t k = 0; k < nseg; k++) {
    const uint8_t* s = seg[k];
    if (seglen[k] < 2) continue;
    uint32_t kind = s[0] & 3, copies = 1 + ((s[1] >> 4) & 3);
    const uint8_t* body = s + 2;
    size_t blen = seglen[k] - 2;
    now += NAT_ADVANCE[s[1] & 7];
    Z_overlayZ_natSetNow(w, now);
    if (s[1] & 8) Z_overlayZ_ctExpire(w, now, NAT_FLOWS);
    uint32_t iplen;
    int side, patched = 0;
    const nat_step_t* r = NULL;
    if (kind <= 1) {
      if (blen > SLOT_SIZE) continue;
      memcpy(ip, body, blen);
      iplen = (uint32_t)blen;
      side = kind == 0 ? SIDE_POD : SIDE_VXLAN;
    } else {
      if (nsteps == 0) continue;
      r = &g_steps[((s[0] >> 2) & 7) % nsteps];
      const uint8_t* b = r->outlen ? r->out : r->in;
      uint32_t bl = r->outlen ? r->outlen : r->inlen;
      side = r->outlen ? r->side : SIDE_POD;
      iplen = kind == 2 ? build_answer(b, bl, body, blen, ip) : build_error(b, bl, body, blen, ip, &patched);
      if (iplen == 0) continue;
    }
    // Wrap per side and place the copies in slots 0, 2, 4, 6.
    uint8_t hdr[22];
    size_t hlen = 0;
    uint32_t addr = 0;
    if (side == SIDE_VXLAN) {
      uint8_t v[22] = {0x08, 0, 0, 0, 0, 0, VNI, 0};
      put_be48(v + 8, W2_MAC);
      put_be48(v + 14, W3_MAC);
      v[20] = 0x08;
      memcpy(hdr, v, 22);
      hlen = 22;
      addr = W3_UNDERLAY;
    } else if (side == SIDE_IPIP) {
      memset(hdr, 0, 20);
      hdr[0] = 0x45;
      put_be16(hdr + 2, 20 + iplen);
      hdr[8] = 64;
      hdr[9] = 4;
      put_be32(hdr + 12, W1_UNDERLAY);
      put_be32(hdr + 16, W2_UNDERLAY);
      put_be16(hdr + 10, inet_csum(hdr, 20));
      hlen = 20;
    }
    uint32_t npk = 0;
    for (uint32_t j = 0; j < copies; j++) {
      memcpy(g_cin[j], ip, iplen);
      g_cinlen[j] = iplen;
      if (kind <= 1) vary_copy(g_cin[j], iplen, j);
      if (!stage(j, data[0], hdr, hlen, g_cin[j], iplen, addr, 0)) break;
      seen_packet(g_cin[j], ip_len(g_cin[j], iplen), 1);
      npk++;
    }
    if (npk < copies) continue;
    uint64_t tr0 = counter(n, C_NAT_TRANSLATED), icmp0 = counter(n, C_NAT_ICMP_TRANSLATED);
    uint32_t ns = load_batch(n, g_in, npk), rxc = C_RX_POD_PKTS;
    if (side == SIDE_POD) Z_overlayZ_processPodBatch(w, ns);
    else if (side == SIDE_VXLAN) Z_overlayZ_processVxlanBatch(w, ns), rxc = C_RX_VXLAN_PKTS;
    else Z_overlayZ_processIpipBatch(w, ns), rxc = C_RX_IPIP_PKTS;
    for (uint32_t i = 0; g_verbose && i < ns; i += 2) {
      const uint8_t* m = meta_ptr(n, i);
      fprintf(stderr, "step %u kind %u side %d copy %u: verdict %u reason %u off %u len %u addr %08x ct %u\n", nsteps, kind, side, i / 2,
              le16(m + 8), le16(m + 10), le32(m), le32(m + 4), le32(m + 12), Z_overlayZ_ctCount(w));
      if (g_verbose > 1) { // FUZZ_VERBOSE=2: the packets too
        fprintf(stderr, "  in  ");
        for (uint32_t b = 0; b < ip_len(g_cin[i / 2], g_cinlen[i / 2]); b++) fprintf(stderr, "%02x", g_cin[i / 2][b]);
        fprintf(stderr, "\n  out ");
        for (uint32_t b = 0; le16(m + 8) != VERDICT_DROP && b < le32(m + 4); b++) fprintf(stderr, "%02x", slot_ptr(n, i)[le32(m) + b]);
        fprintf(stderr, "\n");
      }
    }
    for (uint32_t i = 0; i < ns; i++) {
      if (i & 1) {
        const uint8_t* m = meta_ptr(n, i);
        CHECK(le16(m + 8) == VERDICT_DROP && le16(m + 10) == R_BAD_OFFSET, "guard record %u not dropped as R_BAD_OFFSET", i);
      } else {
        check_nat_packet(n, i, i / 2, side);
      }
    }
    check_counters(n, ns, rxc);
    uint32_t live = Z_overlayZ_ctCount(w);
    CHECK(live <= NAT_FLOWS && Z_overlayZ_ctCapacity(w) == NAT_FLOWS, "conntrack holds %u flows, capacity %u", live, NAT_FLOWS);
    CHECK(live == Z_overlayZ_ctStat(w, CT_STAT_INSERTS) - ct_gone(n), "conntrack count %u != inserts - deletes - expired - early drops", live);
    uint64_t dtr = counter(n, C_NAT_TRANSLATED) - tr0, dicmp = counter(n, C_NAT_ICMP_TRANSLATED) - icmp0;
    CHECK(dtr <= npk && dicmp <= npk, "NAT counters moved by %llu/%llu for %u packets", (unsigned long long)dtr, (unsigned long long)dicmp, npk);
    // Answers and errors about a translated output whose flow is still there
    // (nothing deleted or expired since) must be translated back exactly.
    if (r && !patched && r->outlen && r->reason == 0 && r->tracked && ct_gone(n) == r->gone) {
      tuple_t ti = tuple_of(r->in, r->inlen), to = tuple_of(r->out, r->outlen);
      int translated = ti.ok && to.ok && ti.proto == to.proto &&
                       (ti.src != to.src || ti.dst != to.dst || ti.sport != to.sport || ti.dport != to.dport);
      for (uint32_t j = 0; translated && j < npk; j++) {
        const uint8_t* m = meta_ptr(n, 2 * j);
        uint32_t ol;
        int os;
        if (le16(m + 8) == VERDICT_DROP || le16(m + 10) != 0) continue;
        const uint8_t* o = output_ip(n, 2 * j, &ol, &os);
        if (kind == 2) {
          tuple_t t = tuple_of(o, ol);
          uint32_t es = ti.proto == 1 ? ti.sport : ti.dport, ed = ti.proto == 1 ? ti.dport : ti.sport;
          CHECK(t.ok && t.src == ti.dst && t.dst == ti.src && t.sport == es && t.dport == ed,
                "answer to step %u not translated back: %08x:%u -> %08x:%u, expected %08x:%u -> %08x:%u", (unsigned)(r - g_steps),
                t.src, t.sport, t.dst, t.dport, ti.dst, es, ti.src, ed);
        } else {
          uint32_t hl = ip_hl(o);
          CHECK(o[9] == 1 && ol >= hl + 8 + 20, "ICMP error about step %u came out as something else", (unsigned)(r - g_steps));
          const uint8_t* q = o + hl + 8;
          tuple_t t = tuple_of(q, ol - hl - 8);
          CHECK(t.ok && t.src == ti.src && t.dst == ti.dst && t.sport == ti.sport && t.dport == ti.dport,
                "ICMP error about step %u quotes %08x:%u -> %08x:%u, the sender sent %08x:%u -> %08x:%u", (unsigned)(r - g_steps),
                t.src, t.sport, t.dst, t.dport, ti.src, ti.sport, ti.dst, ti.dport);
          CHECK(be32(o + 12) == t.dst && be32(o + 16) == t.src, "ICMP error %08x -> %08x about %08x -> %08x", be32(o + 12), be32(o + 16), t.src, t.dst);
        }
      }
      if (translated) {
        if (kind == 2) CHECK(dtr == npk, "answers to step %u: %llu of %u translated", (unsigned)(r - g_steps), (unsigned long long)dtr, npk);
        else CHECK(dicmp == npk, "ICMP errors about step %u: %llu of %u translated", (unsigned)(r - g_steps), (unsigned long long)dicmp, npk);
      }
    }
    // Remember the step for later answers and errors.
    nat_step_t* st = &g_steps[nsteps++];
    memcpy(st->in, g_cin[0], g_cinlen[0]);
    st->inlen = ip_len(g_cin[0], g_cinlen[0]);
    const uint8_t* m = meta_ptr(n, 0);
    st->verdict = le16(m + 8);
    st->reason = le16(m + 10);
    st->outlen = 0;
    st->side = SIDE_POD;
    if (st->verdict != VERDICT_DROP) {
      uint32_t ol;
      const uint8_t* o = output_ip(n, 0, &ol, &st->side);
      memcpy(st->out, o, ol);
      st->outlen = ol;
    }
    st->gone = ct_gone(n);
    tuple_t t0 = tuple_of(st->in, st->inlen);
    st->tracked = t0.ok && (int32_t)Z_overlayZ_ctLookup(w, t0.proto, t0.src, t0.dst, t0.sport, t0.proto == 1 ? 0 : t0.dport) >= 0;
  }
}

// --- the round trip: pod -> encap on worker2 -> decap on the peer ----------------
/** The IPv6 recipe (r[0] bit 6): r[0] bit 0 ipip (protocol 41), bits 2-5
 *  the flow label's top 4 bits; r[1] traffic class; r[2] hop limit
 *  (2..255); r[3] next header (>= 0x80: as is, else UDP with its
 *  checksum; 59, no next header, when nothing follows); r[4]/r[5] the last byte of the source in 2001:2:0:2::/64 and
 *  of the destination in 2001:2:0:3::/64 (vxlan) or 2001:2:0:1::/64;
 *  r[6..7] the flow label's low 16 bits; r[8..11] ports; then the payload
 *  (cut to fit the tunnel MTU). */
static uint32_t build_roundtrip6(const uint8_t h[12], const uint8_t* rest, size_t rlen, uint8_t* out, int ipip) {
  const uint32_t next = h[3] >= 0x80 ? h[3] : 17;
  const uint32_t max = MTU - (ipip ? 20 : 50);
  const uint32_t l4 = next == 17 ? 8 : 0;
  if (40 + l4 + rlen > max) rlen = max - 40 - l4;
  const uint32_t plen = l4 + (uint32_t)rlen;
  const uint32_t flow = ((h[0] >> 2) & 15u) << 16 | (uint32_t)h[6] << 8 | h[7];
  put_be32(out, 6u << 28 | (uint32_t)h[1] << 20 | flow);
  put_be16(out + 4, plen);
  out[6] = plen ? next : 59; // a zero payload length with a next header would be a jumbogram
  out[7] = 2 + h[2] % 254;
  const uint16_t src[8] = {0x2001, 2, 0, 2, 0, 0, 0, h[4]}, dst[8] = {0x2001, 2, 0, ipip ? 1 : 3, 0, 0, 0, h[5]};
  a6_bytes(src, out + 8);
  a6_bytes(dst, out + 24);
  if (l4) {
    memcpy(out + 40, h + 8, 4);
    put_be16(out + 44, plen);
    put_be16(out + 46, 0);
  }
  memcpy(out + 40 + l4, rest, rlen);
  if (l4) {
    const uint32_t c = l4_sum6(out, 17, out + 40, plen);
    put_be16(out + 46, c ? c : 0xffff);
  }
  return 40 + plen;
}

/** Build a valid inner IPv4 packet from worker2's pods to worker3's (vxlan)
 *  or worker1's (ipip) from the recipe; returns its length.
 *    r[0] bit 0: ipip; bit 1: DF; bits 2-5: option words (0..10);
 *         bit 6: an IPv6 packet instead (build_roundtrip6)
 *    r[1] TOS; r[2] TTL (2..255); r[3] protocol (>= 0x80: as is, else UDP)
 *    r[4] source host; r[5] destination host; r[6..7] id; r[8..11] ports
 *    then the options, then the payload (cut to fit the tunnel MTU). */
static uint32_t build_roundtrip(const uint8_t* r, size_t n, uint8_t* out, int* ipip) {
  uint8_t h[12] = {0};
  memcpy(h, r, n < 12 ? n : 12);
  const uint8_t* rest = r + (n < 12 ? n : 12);
  size_t rlen = n < 12 ? 0 : n - 12;
  *ipip = h[0] & 1;
  if (h[0] & 0x40) return build_roundtrip6(h, rest, rlen, out, *ipip);
  uint32_t words = (h[0] >> 2) & 15;
  if (words > 10) words = 10;
  uint32_t hl = 20 + 4 * words;
  uint32_t proto = h[3] >= 0x80 ? h[3] : 17;
  memset(out, 0, hl);
  for (uint32_t i = 0; i < 4 * words; i++) out[20 + i] = i < rlen ? rest[i] : 1; // NOP padding
  size_t used = 4 * words < rlen ? 4 * words : rlen;
  rest += used;
  rlen -= used;
  uint32_t max = MTU - (*ipip ? 20 : 50);
  uint32_t l4 = proto == 17 ? 8 : 0;
  if (hl + l4 + rlen > max) rlen = max - hl - l4;
  uint32_t total = hl + l4 + (uint32_t)rlen;
  out[0] = 0x40 | (hl / 4);
  out[1] = h[1];
  put_be16(out + 2, total);
  out[4] = h[6];
  out[5] = h[7];
  put_be16(out + 6, (h[0] & 2) ? 0x4000 : 0);
  out[8] = 2 + h[2] % 254;
  out[9] = proto;
  put_be32(out + 12, IP4(198, 19, 2, h[4]));
  put_be32(out + 16, *ipip ? IP4(198, 19, 1, h[5]) : IP4(198, 19, 3, h[5]));
  put_be16(out + 10, inet_csum(out, hl));
  if (proto == 17) {
    memcpy(out + hl, h + 8, 4);
    put_be16(out + hl + 4, 8 + (uint32_t)rlen);
    put_be16(out + hl + 6, 0);
  }
  memcpy(out + hl + l4, rest, rlen);
  return total;
}

static void roundtrip(const uint8_t* data, size_t size) {
  int ipip;
  pkt_t* in = &g_in[0];
  in->len = build_roundtrip(data + 1, size - 1, in->bytes, &ipip);
  in->off = place(data[0], in->len);
  in->addr = 0;
  in->tos = 0;
  uint32_t ns = load_batch(&A, in, 1);
  Z_overlayZ_processPodBatch(&A.w, ns);
  check_batch(&A, ns, C_RX_POD_PKTS, STAGE_POD);
  const uint8_t* m = meta_ptr(&A, 0);
  CHECK(le16(m + 8) == VERDICT_TX_UNDERLAY, "round trip: worker2 gave verdict %u reason %u for a valid packet", le16(m + 8), le16(m + 10));
  uint32_t off = le32(m), len = le32(m + 4);
  const uint8_t* o = slot_ptr(&A, 0) + off;
  // The peer receives what the kernel's sockets would hand it.
  node_t* peer = ipip ? &C : &B;
  pkt_t* rx = &g_in[0];
  static pkt_t sent;
  sent = *in;
  if (ipip) {
    memcpy(rx->bytes, o, len);
    rx->len = len;
  } else {
    memcpy(rx->bytes, o + 28, len - 28);
    rx->len = len - 28;
    rx->addr = be32(o + 12);
    rx->tos = o[1];
  }
  rx->off = HEADROOM;
  ns = load_batch(peer, rx, 1);
  if (ipip) Z_overlayZ_processIpipBatch(&peer->w, ns);
  else Z_overlayZ_processVxlanBatch(&peer->w, ns);
  check_batch(peer, ns, ipip ? C_RX_IPIP_PKTS : C_RX_VXLAN_PKTS, ipip ? STAGE_IPIP : STAGE_VXLAN);
  m = meta_ptr(peer, 0);
  CHECK(le16(m + 8) == VERDICT_TO_DEVICE, "round trip: peer gave verdict %u reason %u", le16(m + 8), le16(m + 10));
  if (sent.bytes[0] >> 4 == 6)
    CHECK(le32(m + 4) == sent.len && memcmp(slot_ptr(peer, 0) + le32(m), sent.bytes, sent.len) == 0, "decap(encap(x)) != x (IPv6, %u bytes of %u)",
          le32(m + 4), sent.len);
  else
    check_forwarded(slot_ptr(peer, 0) + le32(m), le32(m + 4), sent.bytes, sent.len, "decap(encap(x))");
}

// --- vxlan-super: one VXLAN datagram holding a whole TCP super-frame ------------
// What a GSO packet that crossed only virtual links looks like to our UDP
// socket (assembly/pipeline/wholeframe.ts). Both ways the worker handles it run on
// every input, on worker2 (tun) receiving from worker3:
//   1. encapRepresentative + processVxlanBatch + encapBuild: the frame's first
//      segment decides; a delivered one turns the datagram into one TSO write
//      for the tun (virtio_net_hdr TCPV4, checksum partial) in place;
//   2. ingestEncapSuperframe + processVxlanBatch: MTU segments, each checked.
// The inner packet is IPv4 or, when its version nibble says 6, IPv6 (inner
// Ethernet type 0x86DD): a kernel VTEP's TCP over IPv6.
// Invariants: the module accepts only an unfragmented IPv4/TCP packet with
// a valid header checksum, or an IPv6 packet with TCP right behind the fixed
// header, that fills the datagram (checked independently here) and leaves
// the datagram's bytes as they were; an IPv6 frame is never written to the
// tun whole (it is not offered TSO6); both ways agree on the segment count;
// the tun write is the input with a header in front: same addresses, ports,
// sequence, flags and payload, a valid IPv4 header and the partial TCP
// checksum; every delivered segment is a valid IPv4/IPv6 packet with the
// input's addresses and a valid TCP checksum (over the IPv6 pseudo header
// for IPv6), at most the tunnel MTU, its TCP header the input's but for the
// sequence (in order) and flags (FIN/PSH on the last only, CWR on the first
// only), its payload the right slice of the input's; counters move by the
// segments.
#if FUZZ_TARGET == T_VXLAN_SUPER
#define SUPER_MAX 65536
#define C_TO_DEVICE_PKTS 12
static uint32_t g_super, g_super2;
static uint8_t g_dgram[SUPER_MAX];

static void super_setup(node_t* n) {
  must(Z_overlayZ_offloadSetup(&n->w), "offloadSetup");
  uint32_t rx = Z_overlayZ_allocScratch(&n->w, 64);
  g_super = Z_overlayZ_allocScratch(&n->w, SUPER_MAX + 64);
  g_super2 = Z_overlayZ_allocScratch(&n->w, SUPER_MAX + 64);
  if (!rx || !g_super || !g_super2) must(-98, "scratch");
  Z_overlayZ_encapRxSetup(&n->w, rx);
  node_ready(n);
}

static uint32_t tcp_pseudo_sum(const uint8_t* ip, uint32_t l4len) {
  uint64_t s = (uint64_t)be16(ip + 12) + be16(ip + 14) + be16(ip + 16) + be16(ip + 18) + 6 + l4len;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint32_t)s;
}

static void super_run(const uint8_t* data, size_t size) {
  node_t* n = &A;
  if (size < 2 || size - 2 + 22 > SUPER_MAX) return;
  const uint8_t tos = data[1];
  const uint8_t* inner = data + 2;
  const uint32_t ilen = (uint32_t)(size - 2), len = ilen + 22;
  const int six = ilen >= 1 && inner[0] >> 4 == 6;
  uint8_t* d = g_dgram;
  memset(d, 0, 22);
  d[0] = 0x08;
  d[6] = VNI;
  put_be48(d + 8, W2_MAC);
  put_be48(d + 14, W3_MAC);
  put_be16(d + 20, six ? 0x86dd : 0x0800);
  memcpy(d + 22, inner, ilen);
  // What the module may accept, judged here. ihl: the IP header (IPv6: the
  // fixed one, TCP right behind it); hdr: IP + TCP headers.
  uint32_t ihl = 0, hdr = 0;
  int valid;
  if (six) {
    ihl = 40;
    valid = ilen >= 60 && 40 + be16(inner + 4) == ilen && inner[6] == 6;
  } else {
    ihl = ilen >= 20 ? (inner[0] & 15) * 4u : 0;
    valid = ilen >= 40 && inner[0] >> 4 == 4 && ihl >= 20 && ihl + 20 <= ilen && be16(inner + 2) == ilen && inner[9] == 6 &&
            (be16(inner + 6) & 0x3fff) == 0 && inet_csum(inner, ihl) == 0;
  }
  if (valid) {
    hdr = ihl + (inner[ihl + 12] >> 4) * 4u;
    valid = hdr >= ihl + 20 && hdr <= ilen;
  }
  const uint32_t mss = valid ? MTU - 50 - hdr : 0;
  // A frame without payload (a bare ACK, FIN, ...) is one segment: itself.
  const uint32_t payload = valid ? ilen - hdr : 0;
  const uint32_t segs = valid && mss > 0 ? (payload == 0 ? 1 : (payload + mss - 1) / mss) : 0;

  // 1. The representative, and the whole frame to the tun.
  uint8_t* buf = n->mem + g_super;
  memcpy(buf, d, len);
  UNPOISON(slot_ptr(n, 0), BATCH * SLOT_SIZE);
  for (uint32_t i = 0; i < BATCH; i++) memset(meta_ptr(n, i), 0, META_SIZE);
  int32_t r = Z_overlayZ_encapRepresentative(&n->w, g_super, len, 0, W3_UNDERLAY, W2_UNDERLAY, tos);
  CHECK(memcmp(buf, d, len) == 0, "encapRepresentative changed the datagram");
  CHECK(!six || r == 0, "encapRepresentative took an IPv6 frame (%d segments): the tun is not offered TSO6", r);
  if (r != 0) {
    CHECK(valid, "encapRepresentative took a datagram that holds no IPv4/TCP super-frame");
    CHECK(r >= 2 && (uint32_t)r == segs, "encapRepresentative: %d segments, expected %u", r, segs);
    const uint8_t* m = meta_ptr(n, 0);
    CHECK(le32(m) == HEADROOM && le32(m + 4) <= SLOT_SIZE - HEADROOM && le32(m + 4) > 22, "representative off %u len %u", le32(m), le32(m + 4));
    for (uint32_t i = 0; i < COUNTER_COUNT; i++) g_before[i] = counter(n, i);
    Z_overlayZ_processVxlanBatch(&n->w, 1);
    const uint32_t v = le16(m + 8);
    const uint32_t w = Z_overlayZ_encapBuild(&n->w, 0, g_super, len, (uint32_t)r);
    if (v == VERDICT_TO_DEVICE) {
      CHECK(w == ilen + 10, "tun write of %u bytes for %u", w, ilen);
      const uint8_t* f = buf + 12;
      CHECK(f[0] == 1 && (f[1] & 0x7f) == 1, "virtio_net_hdr flags %u gso_type %u", f[0], f[1]);
      CHECK(le16(f + 2) == hdr && le16(f + 4) == mss && le16(f + 6) == ihl && le16(f + 8) == 16, "virtio_net_hdr fields");
      const uint8_t* q = f + 10;
      check_ipv4(n, q, ilen, "super-frame to the tun");
      CHECK(memcmp(q + 12, inner + 12, 8) == 0 && q[9] == 6, "addresses changed");
      CHECK(memcmp(q + ihl, inner + ihl, 16) == 0, "ports, sequence, ack or flags changed");
      CHECK(memcmp(q + hdr, inner + hdr, ilen - hdr) == 0, "payload changed");
      CHECK(be16(q + ihl + 16) == tcp_pseudo_sum(q, ilen - ihl), "TCP checksum is not the partial sum");
      CHECK(le16(m + 8) == VERDICT_DROP && le16(m + 10) == 0, "representative not marked as handled");
      CHECK(counter(n, C_TO_DEVICE_PKTS) - g_before[C_TO_DEVICE_PKTS] == segs, "to-device counter moved by %llu for %u segments",
            (unsigned long long)(counter(n, C_TO_DEVICE_PKTS) - g_before[C_TO_DEVICE_PKTS]), segs);
    } else {
      CHECK(w == 0, "a tun write for verdict %u", v);
    }
  }

  // 2. Segmented.
  uint8_t* buf2 = n->mem + g_super2;
  memcpy(buf2, d, len);
  for (uint32_t i = 0; i < BATCH; i++) memset(meta_ptr(n, i), 0, META_SIZE);
  int32_t k = Z_overlayZ_ingestEncapSuperframe(&n->w, g_super2, len, 0, W3_UNDERLAY, W2_UNDERLAY, tos);
  CHECK(memcmp(buf2, d, len) == 0, "ingestEncapSuperframe changed the datagram");
  CHECK(k == -2 || (k >= 0 && k <= BATCH), "ingestEncapSuperframe returned %d", k);
  if (k != -2) CHECK(valid, "ingestEncapSuperframe took a datagram that holds no %s/TCP super-frame", six ? "IPv6" : "IPv4");
  if (r > 0) CHECK(k == r || (k == 0 && (uint32_t)r > BATCH), "representative: %d segments, ingest: %d", r, k);
  if (k == 0) CHECK(segs > BATCH, "ingest: no room for %u segments in %u slots", segs, BATCH);
  if (k <= 0) return;
  CHECK((uint32_t)k == segs, "ingest: %d segments, expected %u", k, segs);
  for (uint32_t i = 0; i < COUNTER_COUNT; i++) g_before[i] = counter(n, i);
  Z_overlayZ_processVxlanBatch(&n->w, (uint32_t)k);
  CHECK(counter(n, C_RX_VXLAN_PKTS) - g_before[C_RX_VXLAN_PKTS] == (uint64_t)k, "rx counter");
  uint32_t at = hdr, seq = be32(inner + ihl + 4), first = le16(meta_ptr(n, 0) + 8);
  const uint8_t flags0 = inner[ihl + 13];
  const int ecn = six ? ecn_decap(ip6_tclass(inner) & 3, tos & 3) : 0;
  for (uint32_t i = 0; i < (uint32_t)k; i++) {
    const uint8_t* m = meta_ptr(n, i);
    const uint32_t v = le16(m + 8);
    CHECK(v == first, "segment %u: verdict %u, the first got %u", i, v, first);
    if (v != VERDICT_TO_DEVICE) continue;
    const uint8_t* p = slot_ptr(n, i) + le32(m);
    const uint32_t l = le32(m + 4);
    CHECK(l >= hdr && l - hdr <= mss && (l > hdr || payload == 0), "segment %u: %u bytes", i, l);
    if (six) {
      check_ipv6(p, l, "segment");
      CHECK(memcmp(p + 6, inner + 6, 34) == 0, "segment %u: next header, hop limit or addresses changed", i);
      CHECK((be32(p) & ~0x00300000u) == (be32(inner) & ~0x00300000u), "segment %u: traffic class or flow label changed", i);
      CHECK(ecn >= 0 && (ip6_tclass(p) & 3) == (uint32_t)ecn, "segment %u: ECN %u, RFC 6040 says %d", i, ip6_tclass(p) & 3, ecn);
      CHECK(l4_sum6(p, 6, p + 40, l - 40) == 0, "segment %u: bad TCP checksum (IPv6 pseudo header)", i);
    } else {
      check_ipv4(n, p, l, "segment");
      CHECK(csum_fold(csum_add(tcp_pseudo_sum(p, l - ihl), p + ihl, l - ihl)) == 0, "segment %u: bad TCP checksum", i);
    }
    CHECK(be32(p + ihl + 4) == seq, "segment %u: sequence %u, expected %u", i, be32(p + ihl + 4), seq);
    uint8_t want = flags0;
    if (i != (uint32_t)k - 1) want &= (uint8_t)~0x09; // FIN, PSH
    if (i != 0) want &= (uint8_t)~0x80;               // CWR
    CHECK(p[ihl + 13] == want, "segment %u of %d: TCP flags %02x, expected %02x", i, k, p[ihl + 13], want);
    CHECK(memcmp(p + ihl, inner + ihl, 4) == 0 && memcmp(p + ihl + 8, inner + ihl + 8, 5) == 0 && memcmp(p + ihl + 14, inner + ihl + 14, 2) == 0 &&
              memcmp(p + ihl + 18, inner + ihl + 18, hdr - ihl - 18) == 0,
          "segment %u: TCP header fields (ports, ack, offset, window, urgent, options) changed", i);
    CHECK(memcmp(p + hdr, inner + at, l - hdr) == 0, "segment %u: payload is not the input's", i);
    at += l - hdr;
    seq += l - hdr;
  }
  if (first == VERDICT_TO_DEVICE) CHECK(at == ilen, "segments carried %u of %u bytes", at - hdr, ilen - hdr);
}
#endif

// --- nat66: a sequence of IPv6 batches through a NAT66 node ---------------------
// worker2 (tun, the IPv6 routes W2_ROUTES6) with NAT66 on, as
// test/nat66.test.ts's nat66() sets it up, in a 16-flow table with 16 IPv6
// address names (NAT66_NAMES: 8 pinned, 8 for flows), so that "table full"
// for flows (ct_full), for names (ct_full too) and "no free port" are all
// reachable within one input. Mirrored in test/fuzz-replay.test.ts
// (nat66Worker2). The node's IPv6 address NODE6 (masquerade source, NodePort
// frontend) and the service-SNAT address SNAT6 are pinned; the services:
//   TCP CLUSTER6:80       -> REMOTE_BE6:8080 (worker3, VXLAN: DNAT)
//   UDP CLUSTER6:53       -> LOCAL_BE6:5353 (this node: hairpin, DNAT + SNAT6)
//   TCP NODE6:30080 (NodePort) -> REMOTE_BE6:8080 or LOCAL_BE6:8080 (random)
//   TCP CLUSTER6:443      -> SIT_BE6:8443 (worker1, protocol 41: DNAT)
//   UDP NODE6:30053 (NodePort) -> EXT_BE6:53 (no route: the node's stack)
//   TCP EMPTY6:80         -> no backend (ICMPv6 port unreachable)
// The IPv4 NAT is on as well (NAT66 runs only with it), with nat's
// addresses and port range 61000-61011, which IPv6 flows share.
//
// The input format is nat's (nat_run), with IPv6 packets: byte 0 places the
// packets; up to 6 steps, each op, clock, body:
//   op bits 0-1 kind: 0 an IPv6 packet from a pod (processPodBatch); 1 an
//            inner IPv6 packet from worker3 in VXLAN + Ethernet 0x86DD
//            (processVxlanBatch), or with op bit 5 from worker1 in protocol
//            41 (processIpipBatch); kinds 0/1 whose body is not IPv6 (version
//            nibble) are skipped, `nat` covers IPv4; 2 the answer to an
//            earlier step's output (addresses and ports swapped, echo
//            request <-> reply, hop limit 64, TCP flags from body[0], L4
//            checksum recomputed); 3 an ICMPv6 error about an earlier step's
//            output (body[0] & 7 picks type/code from NAT66_ERRS, body[1]
//            quotes that many bytes beyond 40 + 8, body[2..] is XORed over
//            the quote) from its destination to its source. Answers and
//            errors come back the way the output left (VXLAN from worker3,
//            protocol 41 from worker1, else the pod side).
//            bits 2-4: which earlier step (mod the steps so far).
//   clock    as nat's (NAT_ADVANCE, ctExpire, copies; copy j's source port
//            or echo identifier + j).
// Every input starts from an empty table, the same clock and random seed,
// and the names in a canonical state (nat66_reset), so a crash replays.
#if FUZZ_TARGET == T_NAT66
#define NAT66_NAMES 16
#define N6_NONE 0xffffffffu
#define CT_PROTO_V6 0x80
#define SIDE_SIT SIDE_IPIP

static const uint16_t NODE6_H[8] = {0x2001, 2, 0xff, 0, 0, 0, 0, 2};
static const uint16_t SNAT6_H[8] = {0x2001, 2, 0, 2, 0, 0, 0, 0xfffe};
static const uint16_t CLUSTER6_H[8] = {0x2001, 2, 0, 0x250, 0, 0, 0, 0x10};
static const uint16_t EMPTY6_H[8] = {0x2001, 2, 0, 0x250, 0, 0, 0, 0x11};
static const uint16_t LOCAL_BE6_H[8] = {0x2001, 2, 0, 2, 0, 0, 0, 7};
static const uint16_t REMOTE_BE6_H[8] = {0x2001, 2, 0, 3, 0, 0, 0, 7};
static const uint16_t SIT_BE6_H[8] = {0x2001, 2, 0, 1, 0, 0, 0, 7};
static const uint16_t EXT_BE6_H[8] = {0x2001, 2, 0xff, 0, 0, 0, 0, 0x53};
static uint8_t NODE6[16], SNAT6[16], CLUSTER6[16], EMPTY6[16], LOCAL_BE6[16], REMOTE_BE6[16], SIT_BE6[16], EXT_BE6[16];
/** Two 16-byte addresses equal: two 64-bit compares, not a memcmp call
 *  (libFuzzer intercepts every memcmp, and these run in loops). */
static inline int a6eq(const uint8_t* a, const uint8_t* b) {
  uint64_t x[2], y[2];
  memcpy(x, a, 16);
  memcpy(y, b, 16);
  return x[0] == y[0] && x[1] == y[1];
}
/** ICMPv6 errors a step may send (RFC 4443 types 1-4): no route, admin
 *  prohibited, address and port unreachable, policy, packet too big, hop
 *  limit exceeded, parameter problem. */
static const uint8_t NAT66_ERRS[8][2] = {{1, 0}, {1, 1}, {1, 3}, {1, 4}, {1, 5}, {2, 0}, {3, 0}, {4, 0}};

/** Each ct6Pin the set-up made (a handle per pin, as the control plane pins
 *  an address once per use), and the distinct addresses among them. */
static uint32_t g_pins[32], g_npins, g_pinned;

static uint32_t pin6(node_t* n, const uint8_t a[16]) {
  uint64_t hi = 0, lo = 0;
  for (int i = 0; i < 8; i++) hi = hi << 8 | a[i], lo = lo << 8 | a[8 + i];
  const uint32_t h = Z_overlayZ_ct6Pin(&n->w, hi, lo);
  if (h == N6_NONE) must(-96, "ct6Pin");
  int fresh = 1;
  for (uint32_t i = 0; i < g_npins; i++) if (g_pins[i] == h) fresh = 0;
  g_pinned += fresh;
  g_pins[g_npins++] = h;
  return h;
}

static void nat66_worker2(node_t* n) {
  worker2(n, 0, 1, 0);
  Z_overlay_instance_t* w = &n->w;
  a6_bytes(NODE6_H, NODE6);
  a6_bytes(SNAT6_H, SNAT6);
  a6_bytes(CLUSTER6_H, CLUSTER6);
  a6_bytes(EMPTY6_H, EMPTY6);
  a6_bytes(LOCAL_BE6_H, LOCAL_BE6);
  a6_bytes(REMOTE_BE6_H, REMOTE_BE6);
  a6_bytes(SIT_BE6_H, SIT_BE6);
  a6_bytes(EXT_BE6_H, EXT_BE6);
  must(Z_overlayZ_ctSetup(w, NAT_FLOWS), "ctSetup");
  must(Z_overlayZ_ctSetup6(w, NAT66_NAMES), "ctSetup6");
  must(Z_overlayZ_svcSetup(w, 16, 16), "svcSetup");
  nat_configure(n);
  // The order Dataplane.natConfigure and setServices pin in (the replay
  // does the same), so the handles agree.
  const uint32_t hn = pin6(n, NODE6), hs = pin6(n, SNAT6);
  must(Z_overlayZ_natConfigure6(w, 1, 1, hn, hs), "natConfigure6");
  const uint32_t TCP6 = 6 | CT_PROTO_V6, UDP6 = 17 | CT_PROTO_V6;
  must(Z_overlayZ_svcSetBackend(w, 0, pin6(n, REMOTE_BE6), 8080), "backend 0");
  must(Z_overlayZ_svcAdd(w, TCP6, pin6(n, CLUSTER6), 80, 0, 0, 1), "svc6 clusterip tcp");
  must(Z_overlayZ_svcSetBackend(w, 1, pin6(n, LOCAL_BE6), 5353), "backend 1");
  must(Z_overlayZ_svcAdd(w, UDP6, pin6(n, CLUSTER6), 53, 0, 1, 1), "svc6 clusterip udp");
  must(Z_overlayZ_svcSetBackend(w, 2, pin6(n, REMOTE_BE6), 8080), "backend 2");
  must(Z_overlayZ_svcSetBackend(w, 3, pin6(n, LOCAL_BE6), 8080), "backend 3");
  must(Z_overlayZ_svcAdd(w, TCP6, pin6(n, NODE6), 30080, 1, 2, 2), "svc6 nodeport");
  must(Z_overlayZ_svcSetBackend(w, 4, pin6(n, SIT_BE6), 8443), "backend 4");
  must(Z_overlayZ_svcAdd(w, TCP6, pin6(n, CLUSTER6), 443, 0, 4, 1), "svc6 clusterip sit");
  must(Z_overlayZ_svcSetBackend(w, 5, pin6(n, EXT_BE6), 53), "backend 5");
  must(Z_overlayZ_svcAdd(w, UDP6, pin6(n, NODE6), 30053, 1, 5, 1), "svc6 nodeport outside");
  must(Z_overlayZ_svcAdd(w, TCP6, pin6(n, EMPTY6), 80, 0, 6, 0), "svc6 empty");
  node_ready(n);
}

/** The names table (assembly/nat/names6.ts: an entry is the address, 16
 *  bytes, then its reference count, u32) against what refers to it: every
 *  handle a pin or a live IPv6 flow record holds (conntrack.ts's record:
 *  o.src 0, o.dst 4, r.src 12, r.dst 16, proto 24) has exactly that many
 *  references and a non-zero address, no two the same, and the table holds
 *  exactly those entries: a leaked reference, one given back twice or an
 *  entry freed under a flow shows here, at the step that did it. */
static void check_names6(node_t* n, const char* when) {
  Z_overlay_instance_t* w = &n->w;
  const uint32_t cap = Z_overlayZ_ct6NameCapacity(w), live = Z_overlayZ_ct6NameCount(w);
  CHECK(cap == NAT66_NAMES && live <= cap, "%s: %u IPv6 names of capacity %u", when, live, cap);
  uint32_t want[NAT66_NAMES] = {0};
  for (uint32_t i = 0; i < g_npins; i++) want[g_pins[i]]++;
  const uint32_t high = Z_overlayZ_ctHighWater(w);
  for (uint32_t f = 0; f < high; f++) {
    const uint32_t fp = Z_overlayZ_ctFlowPtr(w, f);
    if (fp == 0 || !(n->mem[fp + 24] & CT_PROTO_V6)) continue;
    static const uint32_t at[4] = {0, 4, 12, 16};
    for (int k = 0; k < 4; k++) {
      const uint32_t h = le32(n->mem + fp + at[k]);
      CHECK(h < cap, "%s: flow %u holds IPv6 name handle %u of %u", when, f, h, cap);
      want[h]++;
    }
  }
  uint32_t held = 0;
  for (uint32_t h = 0; h < cap; h++) {
    const uint8_t* e = n->mem + Z_overlayZ_ct6Addr(w, h);
    const uint32_t refs = le32(e + 16);
    CHECK(refs == want[h], "%s: IPv6 name %u has %u references, the pins and flows hold %u", when, h, refs, want[h]);
    if (want[h] == 0) continue;
    held++;
    CHECK(!a6_zero(e), "%s: IPv6 name %u is held but its entry is free (address ::)", when, h);
    for (uint32_t g = 0; g < h; g++)
      if (want[g]) CHECK(!a6eq(e, n->mem + Z_overlayZ_ct6Addr(w, g)), "%s: IPv6 names %u and %u hold the same address", when, g, h);
  }
  CHECK(held == live, "%s: %u IPv6 names in the table, %u held by pins and flows", when, live, held);
}

/** nat_reset, then: only the pinned names remain (exactly their
 *  references), and the free names are put in the order a fresh table hands
 *  them out (fill the table with scratch pins, give them back from the
 *  highest handle down), so the handles an input's addresses get, and with
 *  them the flows' hash slots, do not depend on earlier inputs. */
static void nat66_reset(node_t* n) {
  Z_overlay_instance_t* w = &n->w;
  nat_reset(n);
  CHECK(Z_overlayZ_ct6NameCount(w) == g_pinned, "after every flow was deleted %u IPv6 names remain, %u are pinned", Z_overlayZ_ct6NameCount(w), g_pinned);
  check_names6(n, "reset");
  uint32_t scratch[NAT66_NAMES], ns = 0;
  for (uint64_t i = 1; i <= NAT66_NAMES; i++) {
    const uint32_t h = Z_overlayZ_ct6Pin(w, 0xfd00000000000000ull, i);
    if (h == N6_NONE) break;
    scratch[ns++] = h;
  }
  CHECK(ns == NAT66_NAMES - g_pinned, "the IPv6 names took %u more addresses, %u are free", ns, NAT66_NAMES - g_pinned);
  for (uint32_t i = 0; i < ns; i++) // highest handle first
    for (uint32_t j = i + 1; j < ns; j++)
      if (scratch[j] > scratch[i]) { uint32_t t = scratch[i]; scratch[i] = scratch[j]; scratch[j] = t; }
  for (uint32_t i = 0; i < ns; i++) Z_overlayZ_ct6Unpin(w, scratch[i]);
  CHECK(Z_overlayZ_ct6NameCount(w) == g_pinned, "scratch names not given back");
}

// Helpers over IPv6 packets (written here from RFC 8200/4443).
typedef struct {
  uint8_t src[16], dst[16];
  uint32_t sport, dport, proto;
  int ok; // TCP/UDP with ports or an ICMPv6 echo (sport = identifier)
} tuple6_t;

static tuple6_t tuple6_of(const uint8_t* p, uint32_t avail) {
  tuple6_t t;
  memset(&t, 0, sizeof t);
  if (avail < 40 || p[0] >> 4 != 6) return t;
  memcpy(t.src, p + 8, 16);
  memcpy(t.dst, p + 24, 16);
  t.proto = p[6];
  uint32_t n = avail - 40;
  if (be16(p + 4) < n) n = be16(p + 4);
  const uint8_t* l4 = p + 40;
  if ((t.proto == 6 || t.proto == 17) && n >= 4) {
    t.sport = be16(l4);
    t.dport = be16(l4 + 2);
    t.ok = 1;
  } else if (t.proto == 58 && n >= 8 && (l4[0] == 128 || l4[0] == 129)) {
    t.sport = be16(l4 + 4);
    t.ok = 1;
  }
  return t;
}

static inline int icmp6_error_type(uint32_t t) { return t >= 1 && t <= 4; }

/** 1 valid, 0 invalid, -1 cannot tell (UDP without checksum or with a
 *  length that is not the payload's, too short, another next header), for
 *  a whole IPv6 packet of `len` bytes. */
static int l4_state6(const uint8_t* p, uint32_t len) {
  if (len < 40 || 40 + be16(p + 4) != len) return -1;
  const uint8_t* l4 = p + 40;
  const uint32_t n = len - 40;
  if (p[6] == 6) return n >= 20 ? l4_sum6(p, 6, l4, n) == 0 : -1;
  if (p[6] == 17) return n >= 8 && be16(l4 + 6) != 0 && be16(l4 + 4) == n ? l4_sum6(p, 17, l4, n) == 0 : -1;
  if (p[6] == 58) return n >= 8 ? l4_sum6(p, 58, l4, n) == 0 : -1;
  return -1;
}

static void fix_l4_sum6(uint8_t* p, uint32_t len) {
  uint8_t* l4 = p + 40;
  const uint32_t n = len - 40;
  if (p[6] == 6 && n >= 20) {
    put_be16(l4 + 16, 0);
    put_be16(l4 + 16, l4_sum6(p, 6, l4, n));
  } else if (p[6] == 17 && n >= 8 && be16(l4 + 6) != 0) {
    put_be16(l4 + 6, 0);
    const uint32_t c = l4_sum6(p, 17, l4, n);
    put_be16(l4 + 6, c ? c : 0xffff);
  } else if (p[6] == 58 && n >= 4) {
    put_be16(l4 + 2, 0);
    put_be16(l4 + 2, l4_sum6(p, 58, l4, n));
  }
}

/** Answers and errors are built about whole IPv6 packets only. */
static int base6_ok(const uint8_t* b, uint32_t len) { return ip6_len(b, len) == len; }

static uint32_t build_answer6(const uint8_t* b, uint32_t len, const uint8_t* body, size_t blen, uint8_t* o) {
  if (!base6_ok(b, len)) return 0;
  memcpy(o, b, len);
  memcpy(o + 8, b + 24, 16);
  memcpy(o + 24, b + 8, 16);
  o[7] = 64;
  uint8_t* l4 = o + 40;
  const uint32_t n = len - 40;
  if ((o[6] == 6 || o[6] == 17) && n >= 4) {
    memcpy(l4, b + 42, 2);
    memcpy(l4 + 2, b + 40, 2);
  }
  if (o[6] == 6 && n >= 14 && blen >= 1) l4[13] = body[0];
  if (o[6] == 58 && n >= 8 && (l4[0] == 128 || l4[0] == 129)) l4[0] ^= 1;
  fix_l4_sum6(o, len);
  return len;
}

static uint32_t build_error6(const uint8_t* b, uint32_t len, const uint8_t* body, size_t blen, uint8_t* o, int* patched) {
  if (!base6_ok(b, len)) return 0;
  const uint8_t* tc = NAT66_ERRS[blen >= 1 ? body[0] & 7 : 0];
  uint32_t q = 40 + 8 + (blen >= 2 ? body[1] : 0);
  if (q > len) q = len;
  if (q > 1280 - 48) q = 1280 - 48;
  memset(o, 0, 48);
  o[0] = 0x60;
  put_be16(o + 4, 8 + q);
  o[6] = 58;
  o[7] = 64;
  memcpy(o + 8, b + 24, 16);
  memcpy(o + 24, b + 8, 16);
  o[40] = tc[0];
  o[41] = tc[1];
  if (tc[0] == 2) put_be32(o + 44, 1280);
  memcpy(o + 48, b, q);
  *patched = 0;
  for (size_t i = 2; i < blen && i - 2 < q; i++) {
    if (body[i]) {
      o[48 + i - 2] ^= body[i];
      *patched = 1;
    }
  }
  fix_l4_sum6(o, 48 + q);
  return 48 + q;
}

/** Copy j of a kinds 0/1 packet: source port (echo: identifier) + j, the
 *  L4 checksum updated incrementally (RFC 1624 eqn. 3) when it has one. */
static void vary_copy6(uint8_t* p, uint32_t len, uint32_t j) {
  if (j == 0 || len < 40 || p[0] >> 4 != 6) return;
  uint8_t* l4 = p + 40;
  const uint32_t n = len - 40;
  uint32_t at, c;
  if ((p[6] == 6 || p[6] == 17) && n >= 4) {
    at = 0;
    c = p[6] == 6 ? (n >= 18 ? 16 : 0) : (n >= 8 && be16(l4 + 6) != 0 ? 6 : 0);
  } else if (p[6] == 58 && n >= 8 && (l4[0] == 128 || l4[0] == 129)) {
    at = 4;
    c = 2;
  } else {
    return;
  }
  const uint32_t old = be16(l4 + at), nw = (old + j) & 0xffff;
  put_be16(l4 + at, nw);
  if (c) {
    uint32_t v = csum_fold((uint64_t)(~be16(l4 + c) & 0xffff) + (~old & 0xffff) + nw);
    if (p[6] == 17 && v == 0) v = 0xffff;
    put_be16(l4 + c, v);
  }
}

// Addresses and ports a translation may produce: the pinned addresses and
// the backends' ports, the NAT port range, and whatever the inputs so far
// carried.
static uint8_t g_seen6[256][16];
static uint32_t g_nseen6;
static void seen6_addr(const uint8_t* a) {
  if (g_nseen6 < 256) memcpy(g_seen6[g_nseen6++], a, 16);
}
static void seen6_packet(const uint8_t* p, uint32_t len, int deep) {
  const tuple6_t t = tuple6_of(p, len);
  if (len < 40 || p[0] >> 4 != 6) return;
  seen6_addr(t.src);
  seen6_addr(t.dst);
  if (t.ok) {
    seen_port(t.sport);
    seen_port(t.dport);
  }
  if (deep && p[6] == 58 && len >= 48 + 40 && icmp6_error_type(p[40])) seen6_packet(p + 48, len - 48, 0);
}
static int addr6_ok(const uint8_t* a) {
  const uint8_t* fixed[] = {NODE6, SNAT6, CLUSTER6, EMPTY6, LOCAL_BE6, REMOTE_BE6, SIT_BE6, EXT_BE6};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) if (a6eq(a, fixed[i])) return 1;
  for (uint32_t i = 0; i < g_nseen6; i++) if (a6eq(a, g_seen6[i])) return 1;
  return 0;
}
static int port6_ok(uint32_t p) {
  if ((p >= NAT_PORT_MIN && p <= NAT_PORT_MAX) || p == 8080 || p == 5353 || p == 8443 || p == 53) return 1;
  for (uint32_t i = 0; i < g_nseen_port; i++) if (p == g_seen_port[i]) return 1;
  return 0;
}
static inline int nat_port(uint32_t p) { return p >= NAT_PORT_MIN && p <= NAT_PORT_MAX; }

static void check_translated_tuple6(const uint8_t* a, uint32_t alen, const uint8_t* b, uint32_t blen, const char* what) {
  const tuple6_t x = tuple6_of(a, alen), y = tuple6_of(b, blen);
  CHECK(a6eq(y.src, x.src) || addr6_ok(y.src), "%s: IPv6 source changed to an address nothing told us", what);
  CHECK(a6eq(y.dst, x.dst) || addr6_ok(y.dst), "%s: IPv6 destination changed to an address nothing told us", what);
  if (x.ok && y.ok) {
    CHECK(y.sport == x.sport || port6_ok(y.sport), "%s: source port/id %u -> %u", what, x.sport, y.sport);
    CHECK(y.dport == x.dport || port6_ok(y.dport), "%s: destination port %u -> %u", what, x.dport, y.dport);
  }
}

/** Byte positions NAT66 may change in an IPv6 packet of `len` bytes
 *  (besides the hop limit): the addresses; TCP/UDP ports and checksum; an
 *  echo's checksum and identifier; an error's (types 1-4) checksum and its
 *  quoted packet's addresses, ports or identifier and L4 checksum. */
static int nat_field6(const uint8_t* in, uint32_t len, uint32_t i) {
  if (i >= 8 && i < 40) return 1;
  if (i < 40) return 0;
  const uint32_t k = i - 40, n = len - 40;
  const uint8_t* l4 = in + 40;
  if (in[6] == 6) return n >= 20 && (k < 4 || k == 16 || k == 17);
  if (in[6] == 17) return n >= 8 && (k < 4 || k == 6 || k == 7);
  if (in[6] != 58 || n < 8) return 0;
  if (l4[0] == 128 || l4[0] == 129) return k >= 2 && k < 6;
  if (!icmp6_error_type(l4[0])) return 0;
  if (k == 2 || k == 3) return 1;
  if (k < 8) return 0;
  const uint32_t e = k - 8;
  if (e < 40) return e >= 8;
  const uint32_t q = e - 40;
  switch (l4[8 + 6]) {
    case 6: return q < 4 || q == 16 || q == 17;
    case 17: return q < 4 || q == 6 || q == 7;
    case 58: return q >= 2 && q < 6;
  }
  return 0;
}

/** What the data path takes off the hop limit of a packet NAT66's node
 *  forwards, as nat_ttl_drop for IPv4 (forward.ts, "TTL"): one where the
 *  node's hop is its own (a pod-side packet to NODE6, steered by tc, that
 *  leaves by a tunnel or the node's stack; a decapsulated answer leaving
 *  through the node's stack); minus one (one given back) for a hairpin, a
 *  pod-side packet the kernel forwarded in that NAT translated back to the
 *  device, unless 255; else none. */
static int nat66_hop_drop(int pod, uint16_t verdict, const uint8_t* in, uint32_t ilen, const uint8_t* out, uint32_t olen) {
  if (!pod) return verdict == VERDICT_TX_DIRECT ? 1 : 0;
  if (a6eq(in + 24, NODE6)) return verdict == VERDICT_TO_DEVICE ? 0 : 1;
  if (verdict != VERDICT_TO_DEVICE || in[7] == 255) return 0;
  for (uint32_t i = 0; i < olen && i < ilen; i++)
    if (i != 7 && out[i] != in[i]) return -1;
  return 0;
}

/** A packet the node forwarded with NAT66: the input with the hop limit as
 *  the path sets it, at most the NAT fields changed, to addresses and ports
 *  it may produce; an L4 checksum that was right still right (a quoted
 *  packet's too), a UDP checksum zero (none) if and only if it was; a
 *  source rewritten to SNAT6, or to NODE6 with the destination kept
 *  (masquerade), with a port (echo: identifier) from the NAT range. */
static void check_nat66_forwarded(const uint8_t* out, uint32_t olen, const uint8_t* in, uint32_t ilen0, int hop_drop, const char* what) {
  const uint32_t ilen = ip6_len(in, ilen0);
  CHECK(ilen != 0, "%s: forwarded an input that holds no whole IPv6 packet", what);
  CHECK(olen == ilen, "%s: %u bytes out of %u", what, olen, ilen);
  check_ipv6(out, olen, what);
  CHECK((int)out[7] + hop_drop == (int)in[7], "%s: hop limit %u -> %u", what, in[7], out[7]);
  const uint32_t head = olen < 128 ? olen : 128; // every NAT field lies in the first 108 bytes
  for (uint32_t i = 0; i < head; i++) {
    if (i == 7 || out[i] == in[i]) continue;
    CHECK(nat_field6(in, ilen, i), "%s: byte %u changed (%02x -> %02x), not a NAT66 field", what, i, in[i], out[i]);
  }
  const int d = first_diff(out, in, head, olen);
  CHECK(d < 0, "%s: byte %d changed (%02x -> %02x), not a NAT66 field", what, d, in[d], out[d]);
  check_translated_tuple6(in, ilen, out, olen, what);
  CHECK(l4_state6(in, ilen) != 1 || l4_state6(out, olen) == 1, "%s: L4 checksum (IPv6 pseudo header) was right and is wrong now", what);
  if (in[6] == 17 && ilen >= 48) // zero: none, which IPv6 forbids (RFC 8200 8.1) but NAT66 does not repair
    CHECK((be16(in + 46) == 0) == (be16(out + 46) == 0), "%s: UDP checksum %04x became %04x", what, be16(in + 46), be16(out + 46));
  if (in[6] == 58 && ilen >= 48 + 40 && icmp6_error_type(in[40])) {
    const uint32_t ql = ip6_len(in + 48, ilen - 48);
    if (ql != 0 && l4_state6(in + 48, ql) == 1)
      CHECK(l4_state6(out + 48, ql) == 1, "%s: the quoted packet's L4 checksum was right and is wrong now", what);
    check_translated_tuple6(in + 48, ilen - 48, out + 48, olen - 48, "quoted packet");
  }
  const tuple6_t x = tuple6_of(in, ilen), y = tuple6_of(out, olen);
  if (x.ok && y.ok && !a6eq(x.src, y.src)) {
    if (a6eq(y.src, SNAT6)) CHECK(nat_port(y.sport), "%s: source rewritten to the SNAT address with port %u, not from the NAT range", what, y.sport);
    if (a6eq(y.src, NODE6) && a6eq(x.dst, y.dst) && !a6eq(x.dst, SNAT6))
      CHECK(nat_port(y.sport), "%s: masqueraded with source port/id %u, not from the NAT range", what, y.sport);
  }
}

/** An ICMPv6 error the node built about input `in` (translated back when
 *  NAT66 had translated the packet): a valid error of at most 1280 bytes to
 *  the sender, from our overlay address or the address the sender used,
 *  quoting exactly what the sender sent (its first min(len, 1232) bytes;
 *  the L4 checksum field as sent whenever it was right); its type what its
 *  reason says. */
static void check_own_error6(node_t* n, const uint8_t* p, uint32_t len, const uint8_t* in, uint32_t ilen0, uint16_t reason, const char* what) {
  check_ipv6(p, len, what);
  CHECK(len >= 48 && len <= 1280 && p[6] == 58, "%s: next header %u, %u bytes", what, p[6], len);
  CHECK(l4_sum6(p, 58, p + 40, len - 40) == 0, "%s: bad ICMPv6 checksum", what);
  const uint32_t il = ip6_len(in, ilen0);
  CHECK(il != 0, "%s: about an input that holds no whole IPv6 packet", what);
  CHECK(a6eq(p + 24, in + 8), "%s: not sent to the sender", what);
  CHECK(a6eq(p + 8, n->overlay6) || a6eq(p + 8, in + 24), "%s: from neither our overlay address nor the address the sender used", what);
  const uint32_t q = len - 48, want = il < 1232 ? il : 1232;
  CHECK(q == want, "%s: quotes %u bytes of a %u-byte packet (want %u)", what, q, il, want);
  const uint8_t* qp = p + 48;
  const uint32_t cf = in[6] == 6 ? 40 + 16 : in[6] == 17 ? 40 + 6 : in[6] == 58 ? 40 + 2 : 0;
  const int has_cf = cf != 0 && cf + 2 <= q;
  int d = first_diff(qp, in, 0, has_cf ? cf : q);
  if (d < 0 && has_cf) d = first_diff(qp, in, cf + 2, q);
  CHECK(d < 0, "%s: quoted byte %d is %02x, the sender sent %02x", what, d, qp[d], in[d]);
  if (has_cf && l4_state6(in, il) == 1)
    CHECK(be16(qp + cf) == be16(in + cf), "%s: quoted L4 checksum %04x, the sender sent %04x", what, be16(qp + cf), be16(in + cf));
  const uint32_t type = p[40], code = p[41];
  if (reason == R_NO_ROUTE) {
    CHECK(type == 1 && code == 0 && route6_lookup(n, in + 24) < 0, "%s: no route, but type %u code %u, or the destination routes", what, type, code);
  } else if (reason == R_TOO_BIG) {
    const uint32_t mtu = be32(p + 44);
    CHECK(type == 2 && code == 0 && (mtu == MTU || mtu == MTU - 50 || mtu == MTU - 20) && il > mtu, "%s: packet too big type %u code %u MTU %u for %u bytes",
          what, type, code, mtu, il);
  } else if (reason == R_SVC_NO_BACKEND) {
    CHECK(type == 1 && code == 4 && a6eq(in + 24, EMPTY6), "%s: a service without backends, type %u code %u", what, type, code);
  } else {
    fail("%s: an ICMPv6 error with reason %u", what, reason);
  }
}

/** Where the IPv6 packet of a non-drop output sits, and which way answers to it come. */
static const uint8_t* output_ip6(node_t* n, uint32_t slot, uint32_t* olen, int* side) {
  const uint8_t* m = meta_ptr(n, slot);
  const uint8_t* p = slot_ptr(n, slot) + le32(m);
  uint32_t len = le32(m + 4);
  *side = SIDE_POD;
  if (le16(m + 8) == VERDICT_TX_UNDERLAY) {
    const uint32_t o = p[9] == 17 ? 50 : 20;
    *side = p[9] == 17 ? SIDE_VXLAN : SIDE_SIT;
    p += o;
    len -= o;
  }
  *olen = len;
  return p;
}

static void check_nat66_packet(node_t* n, uint32_t slot, uint32_t j, int side) {
  const uint8_t* m = meta_ptr(n, slot);
  const uint32_t off = le32(m), len = le32(m + 4), addr = le32(m + 12);
  const uint16_t verdict = le16(m + 8), reason = le16(m + 10), peer = le16(m + 22);
  CHECK(verdict < VERDICT_COUNT, "verdict %u out of range", verdict);
  CHECK(reason < REASON_COUNT, "reason %u out of range", reason);
  const uint8_t* in = g_cin[j];
  const uint32_t ilen = g_cinlen[j], il = ip6_len(in, ilen);
  const int pod = side == SIDE_POD;
  // A TCP/UDP header cut short is never translated: dropped, or (routed
  // traffic) forwarded with its addresses unchanged, never to a NAT address.
  if (pod && il != 0 && (in[6] == 6 || in[6] == 17) && il - 40 < (in[6] == 6 ? 20u : 8u)) {
    CHECK(reason != R_CT_INVALID, "a truncated %s header got reason ct_invalid", in[6] == 6 ? "TCP" : "UDP");
    if (verdict == VERDICT_TX_UNDERLAY || verdict == VERDICT_TX_DIRECT || verdict == VERDICT_TO_DEVICE) {
      uint32_t ol;
      int os;
      const uint8_t* o = output_ip6(n, slot, &ol, &os);
      CHECK(ol >= 40 && memcmp(o + 8, in + 8, 32) == 0 && !a6eq(in + 24, NODE6) && !a6eq(in + 24, SNAT6),
            "a truncated %s header was forwarded translated or to a NAT address", in[6] == 6 ? "TCP" : "UDP");
    }
  }
  if (verdict == VERDICT_DROP) {
    CHECK(reason != 0, "a drop without a reason");
    return;
  }
  CHECK((uint64_t)off + len <= SLOT_SIZE, "verdict %u: off %u + len %u beyond the %u-byte slot", verdict, off, len, SLOT_SIZE);
  CHECK(len > 0, "verdict %u with an empty packet", verdict);
  const uint8_t* p = slot_ptr(n, slot) + off;
  switch (verdict) {
    case VERDICT_TX_UNDERLAY: {
      CHECK(pod, "TX_UNDERLAY from a decap path");
      CHECK(reason == 0, "TX_UNDERLAY with reason %u", reason);
      check_tx_underlay(n, p, len, addr, peer, le32(m + 24), NULL, -1);
      const uint32_t o = p[9] == 17 ? 50 : 20;
      check_nat66_forwarded(p + o, len - o, in, ilen, nat66_hop_drop(pod, verdict, in, il, p + o, len - o), "TX_UNDERLAY inner");
      break;
    }
    case VERDICT_TX_DIRECT:
      check_ipv6(p, len, "TX_DIRECT");
      CHECK(addr == 0, "TX_DIRECT IPv6 with next hop %08x (the node's stack routes it)", addr);
      CHECK(route6_lookup(n, p + 24) < 0, "TX_DIRECT to an IPv6 destination we route (next hop %d)", route6_lookup(n, p + 24));
      if (reason != 0) { // our ICMPv6 error for a client outside, through the node's stack
        CHECK(pod, "an ICMPv6 error from a decap path");
        check_own_error6(n, p, len, in, ilen, reason, "TX_DIRECT (ICMPv6 error)");
        break;
      }
      CHECK(a6eq(p + 8, NODE6) || a6eq(p + 8, SNAT6) || a6eq(p + 8, CLUSTER6) || a6eq(p + 8, EMPTY6),
            "TX_DIRECT: a packet leaves the cluster from an address that is none of the node's NAT addresses");
      check_nat66_forwarded(p, len, in, ilen, nat66_hop_drop(pod, verdict, in, il, p, len), "TX_DIRECT");
      break;
    case VERDICT_TO_DEVICE:
      CHECK(reason == 0, "TO_DEVICE with reason %u", reason);
      check_ipv6(p, len, "TO_DEVICE");
      if (pod) CHECK(nh_kind(n, route6_lookup(n, p + 24)) == NH_LOCAL, "TO_DEVICE: a pod-side packet to a destination that is not local");
      check_nat66_forwarded(p, len, in, ilen, nat66_hop_drop(pod, verdict, in, il, p, len), "TO_DEVICE");
      break;
    case VERDICT_REPLY:
      CHECK(pod, "REPLY from a decap path");
      CHECK(reason != 0, "ICMPv6 error without a reason");
      check_own_error6(n, p, len, in, ilen, reason, "REPLY");
      break;
  }
}

/** Some live IPv6 flow (expired ones not yet reaped included, as
 *  ctLookup) has `t` as its original or reply tuple. */
static int tracked6(node_t* n, const tuple6_t* t) {
  Z_overlay_instance_t* w = &n->w;
  if (!t->ok) return 0;
  const uint32_t dport = t->proto == 58 ? 0 : t->dport, high = Z_overlayZ_ctHighWater(w);
  for (uint32_t f = 0; f < high; f++) {
    const uint32_t fp = Z_overlayZ_ctFlowPtr(w, f);
    if (fp == 0) continue;
    const uint8_t* r = n->mem + fp;
    if (r[24] != (t->proto | CT_PROTO_V6)) continue;
    for (int d = 0; d < 2; d++) {
      const uint8_t* a = r + 12 * d;
      if (le16(a + 8) == t->sport && le16(a + 10) == dport && a6eq(n->mem + Z_overlayZ_ct6Addr(w, le32(a)), t->src) &&
          a6eq(n->mem + Z_overlayZ_ct6Addr(w, le32(a + 4)), t->dst))
        return 1;
    }
  }
  return 0;
}

static void nat66_run(const uint8_t* data, size_t size) {
  node_t* n = &A;
  Z_overlay_instance_t* w = &n->w;
  nat66_reset(n);
  g_nseen6 = g_nseen_port = 0;
  const uint8_t* seg[MAX_STEPS];
  size_t seglen[MAX_STEPS];
  uint32_t nseg = split(data, size, seg, seglen, MAX_STEPS), nsteps = 0, now = NAT_T0;
  static uint8_t ip[SLOT_SIZE];
  for (uint32_t k = 0; k < nseg; k++) {
    const uint8_t* s = seg[k];
    if (seglen[k] < 2) continue;
    const uint32_t kind = s[0] & 3, copies = 1 + ((s[1] >> 4) & 3);
    const uint8_t* body = s + 2;
    const size_t blen = seglen[k] - 2;
    now += NAT_ADVANCE[s[1] & 7];
    Z_overlayZ_natSetNow(w, now);
    if (s[1] & 8) Z_overlayZ_ctExpire(w, now, NAT_FLOWS);
    uint32_t iplen;
    int side, patched = 0;
    const nat_step_t* r = NULL;
    if (kind <= 1) {
      if (blen < 1 || body[0] >> 4 != 6 || blen > SLOT_SIZE) continue;
      memcpy(ip, body, blen);
      iplen = (uint32_t)blen;
      side = kind == 0 ? SIDE_POD : (s[0] & 0x20) ? SIDE_SIT : SIDE_VXLAN;
    } else {
      if (nsteps == 0) continue;
      r = &g_steps[((s[0] >> 2) & 7) % nsteps];
      const uint8_t* b = r->outlen ? r->out : r->in;
      const uint32_t bl = r->outlen ? r->outlen : r->inlen;
      side = r->outlen ? r->side : SIDE_POD;
      iplen = kind == 2 ? build_answer6(b, bl, body, blen, ip) : build_error6(b, bl, body, blen, ip, &patched);
      if (iplen == 0) continue;
    }
    // Wrap per side and place the copies in slots 0, 2, 4, 6.
    uint8_t hdr[22];
    size_t hlen = 0;
    uint32_t addr = 0;
    if (side == SIDE_VXLAN) {
      const uint8_t v[22] = {0x08, 0, 0, 0, 0, 0, VNI, 0};
      memcpy(hdr, v, 22);
      put_be48(hdr + 8, W2_MAC);
      put_be48(hdr + 14, W3_MAC);
      put_be16(hdr + 20, 0x86dd);
      hlen = 22;
      addr = W3_UNDERLAY;
    } else if (side == SIDE_SIT) { // worker1's sit packet, as sit-inner sends it
      memset(hdr, 0, 20);
      hdr[0] = 0x45;
      put_be16(hdr + 2, 20 + iplen);
      hdr[6] = 0x40;
      hdr[8] = 64;
      hdr[9] = 41;
      put_be32(hdr + 12, W1_UNDERLAY);
      put_be32(hdr + 16, W2_UNDERLAY);
      put_be16(hdr + 10, inet_csum(hdr, 20));
      hlen = 20;
    }
    uint32_t npk = 0;
    for (uint32_t j = 0; j < copies; j++) {
      memcpy(g_cin[j], ip, iplen);
      g_cinlen[j] = iplen;
      if (kind <= 1) vary_copy6(g_cin[j], iplen, j);
      if (!stage(j, data[0], hdr, hlen, g_cin[j], iplen, addr, 0)) break;
      const uint32_t l6 = ip6_len(g_cin[j], iplen);
      seen6_packet(g_cin[j], l6 ? l6 : iplen, 1);
      npk++;
    }
    if (npk < copies) continue;
    const uint64_t tr0 = counter(n, C_NAT_TRANSLATED), icmp0 = counter(n, C_NAT_ICMP_TRANSLATED);
    const uint32_t ns = load_batch(n, g_in, npk);
    uint32_t rxc = C_RX_POD_PKTS;
    if (side == SIDE_POD) Z_overlayZ_processPodBatch(w, ns);
    else if (side == SIDE_VXLAN) Z_overlayZ_processVxlanBatch(w, ns), rxc = C_RX_VXLAN_PKTS;
    else Z_overlayZ_processIpipBatch(w, ns), rxc = C_RX_IPIP_PKTS;
    for (uint32_t i = 0; g_verbose && i < ns; i += 2) {
      const uint8_t* m = meta_ptr(n, i);
      fprintf(stderr, "step %u kind %u side %d copy %u: verdict %u reason %u off %u len %u addr %08x ct %u names %u\n", nsteps, kind, side, i / 2,
              le16(m + 8), le16(m + 10), le32(m), le32(m + 4), le32(m + 12), Z_overlayZ_ctCount(w), Z_overlayZ_ct6NameCount(w));
      if (g_verbose > 1) { // FUZZ_VERBOSE=2: the packets too
        fprintf(stderr, "  in  ");
        for (uint32_t b = 0; b < g_cinlen[i / 2]; b++) fprintf(stderr, "%02x", g_cin[i / 2][b]);
        fprintf(stderr, "\n  out ");
        for (uint32_t b = 0; le16(m + 8) != VERDICT_DROP && b < le32(m + 4); b++) fprintf(stderr, "%02x", slot_ptr(n, i)[le32(m) + b]);
        fprintf(stderr, "\n");
      }
    }
    for (uint32_t i = 0; i < ns; i++) {
      if (i & 1) {
        const uint8_t* m = meta_ptr(n, i);
        CHECK(le16(m + 8) == VERDICT_DROP && le16(m + 10) == R_BAD_OFFSET, "guard record %u not dropped as R_BAD_OFFSET", i);
      } else {
        check_nat66_packet(n, i, i / 2, side);
      }
    }
    check_counters(n, ns, rxc);
    const uint32_t live = Z_overlayZ_ctCount(w);
    CHECK(live <= NAT_FLOWS && Z_overlayZ_ctCapacity(w) == NAT_FLOWS, "conntrack holds %u flows, capacity %u", live, NAT_FLOWS);
    CHECK(live == Z_overlayZ_ctStat(w, CT_STAT_INSERTS) - ct_gone(n), "conntrack count %u != inserts - deletes - expired - early drops", live);
    check_names6(n, "after a batch");
    const uint64_t dtr = counter(n, C_NAT_TRANSLATED) - tr0, dicmp = counter(n, C_NAT_ICMP_TRANSLATED) - icmp0;
    CHECK(dtr <= npk && dicmp <= npk, "NAT counters moved by %llu/%llu for %u packets", (unsigned long long)dtr, (unsigned long long)dicmp, npk);
    // Answers and errors about a translated output whose flow is still there
    // (nothing deleted or expired since) must be translated back exactly.
    if (r && !patched && r->outlen && r->reason == 0 && r->tracked && ct_gone(n) == r->gone) {
      const tuple6_t ti = tuple6_of(r->in, r->inlen), to = tuple6_of(r->out, r->outlen);
      const int translated = ti.ok && to.ok && ti.proto == to.proto &&
                             (!a6eq(ti.src, to.src) || !a6eq(ti.dst, to.dst) || ti.sport != to.sport || ti.dport != to.dport);
      for (uint32_t j = 0; translated && j < npk; j++) {
        const uint8_t* m = meta_ptr(n, 2 * j);
        uint32_t ol;
        int os;
        if (le16(m + 8) == VERDICT_DROP || le16(m + 10) != 0) continue;
        const uint8_t* o = output_ip6(n, 2 * j, &ol, &os);
        if (kind == 2) {
          const tuple6_t t = tuple6_of(o, ol);
          const uint32_t es = ti.proto == 58 ? ti.sport : ti.dport, ed = ti.proto == 58 ? ti.dport : ti.sport;
          CHECK(t.ok && a6eq(t.src, ti.dst) && a6eq(t.dst, ti.src) && t.sport == es && t.dport == ed,
                "answer to step %u not translated back: ports %u -> %u, expected %u -> %u (or the addresses differ)", (unsigned)(r - g_steps), t.sport,
                t.dport, es, ed);
        } else {
          CHECK(ol >= 48 + 40 && o[6] == 58 && icmp6_error_type(o[40]), "ICMPv6 error about step %u came out as something else", (unsigned)(r - g_steps));
          const tuple6_t t = tuple6_of(o + 48, ol - 48);
          CHECK(t.ok && a6eq(t.src, ti.src) && a6eq(t.dst, ti.dst) && t.sport == ti.sport && t.dport == ti.dport,
                "ICMPv6 error about step %u quotes ports %u -> %u, the sender sent %u -> %u (or the addresses differ)", (unsigned)(r - g_steps), t.sport,
                t.dport, ti.sport, ti.dport);
          CHECK(a6eq(o + 8, t.dst) && a6eq(o + 24, t.src), "ICMPv6 error about step %u: its addresses are not the quoted ones swapped",
                (unsigned)(r - g_steps));
        }
      }
      if (translated) {
        if (kind == 2) CHECK(dtr == npk, "answers to step %u: %llu of %u translated", (unsigned)(r - g_steps), (unsigned long long)dtr, npk);
        else CHECK(dicmp == npk, "ICMPv6 errors about step %u: %llu of %u translated", (unsigned)(r - g_steps), (unsigned long long)dicmp, npk);
      }
    }
    // Remember the step for later answers and errors.
    nat_step_t* st = &g_steps[nsteps++];
    const uint32_t l0 = ip6_len(g_cin[0], g_cinlen[0]);
    st->inlen = l0 ? l0 : g_cinlen[0];
    memcpy(st->in, g_cin[0], st->inlen);
    const uint8_t* m = meta_ptr(n, 0);
    st->verdict = le16(m + 8);
    st->reason = le16(m + 10);
    st->outlen = 0;
    st->side = SIDE_POD;
    if (st->verdict != VERDICT_DROP) {
      uint32_t ol;
      const uint8_t* o = output_ip6(n, 0, &ol, &st->side);
      memcpy(st->out, o, ol);
      st->outlen = ol;
    }
    st->gone = ct_gone(n);
    const tuple6_t t0 = tuple6_of(st->in, st->inlen);
    st->tracked = tracked6(n, &t0);
  }
}
#endif

// --- libFuzzer entry points -------------------------------------------------------
int LLVMFuzzerInitialize(int* argc, char*** argv) {
  (void)argc;
  (void)argv;
  g_verbose = getenv("FUZZ_VERBOSE") ? atoi(getenv("FUZZ_VERBOSE")) : 0; // per-packet verdicts on stderr (nat, 2: bytes)
  wasm_rt_init();
  Z_overlay_init_module();
  if (wasm_rt_impl_try() != 0) {
    fprintf(stderr, "wasm trap during set-up\n");
    abort();
  }
#if FUZZ_TARGET == T_POD_TAP
  worker2(&A, 1, 1, 1);
#elif FUZZ_TARGET == T_NAT
  nat_worker2(&A);
#elif FUZZ_TARGET == T_NAT66
  nat66_worker2(&A);
#else
  worker2(&A, 0, 1, 1);
#endif
#if FUZZ_TARGET == T_VXLAN_SUPER
  super_setup(&A);
#endif
#if FUZZ_TARGET == T_ROUNDTRIP
  worker3(&B);
  worker1(&C);
#endif
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int trap = wasm_rt_impl_try();
  if (trap != 0) {
    fprintf(stderr, "wasm trap: %s\n", wasm_rt_strerror((wasm_rt_trap_t)trap));
    abort();
  }
  if (size < 1) return 0;
#if FUZZ_TARGET == T_ROUNDTRIP
  roundtrip(data, size);
#elif FUZZ_TARGET == T_NAT
  nat_run(data, size);
#elif FUZZ_TARGET == T_NAT66
  nat66_run(data, size);
#elif FUZZ_TARGET == T_VXLAN_SUPER
  super_run(data, size);
#else
  const uint8_t* seg[MAX_PKTS];
  size_t seglen[MAX_PKTS];
  uint32_t nseg = split(data, size, seg, seglen, MAX_PKTS), npk = 0;
  uint8_t ctrl = data[0];
  for (uint32_t k = 0; k < nseg; k++) {
    const uint8_t* s = seg[k];
    size_t l = seglen[k];
#if FUZZ_TARGET == T_VXLAN_DECAP
    if (l < 5) continue;
    if (stage(npk, ctrl, NULL, 0, s + 5, l - 5, be32(s), s[4])) npk++;
#elif FUZZ_TARGET == T_VXLAN_INNER
    if (l < 1) continue;
    uint8_t hdr[22] = {0x08, 0, 0, 0, 0, 0, VNI, 0};
    put_be48(hdr + 8, W2_MAC);
    put_be48(hdr + 14, W3_MAC);
    hdr[20] = 0x08;
    if (stage(npk, ctrl, hdr, sizeof hdr, s + 1, l - 1, W3_UNDERLAY, s[0])) npk++;
#elif FUZZ_TARGET == T_VXLAN_INNER6
    if (l < 1) continue;
    uint8_t hdr[22] = {0x08, 0, 0, 0, 0, 0, VNI, 0};
    put_be48(hdr + 8, W2_MAC);
    put_be48(hdr + 14, W3_MAC);
    put_be16(hdr + 20, 0x86dd);
    if (stage(npk, ctrl, hdr, sizeof hdr, s + 1, l - 1, W3_UNDERLAY, s[0])) npk++;
#elif FUZZ_TARGET == T_SIT_INNER
    // What the kernel's raw socket hands over: worker1's sit packet (DF, as
    // sit sends), the fuzzer's byte as its TOS.
    if (l < 1 || l - 1 + 20 > 0xffff) continue;
    uint8_t hdr[20] = {0x45, s[0]};
    put_be16(hdr + 2, (uint32_t)(20 + l - 1));
    hdr[6] = 0x40;
    hdr[8] = 64;
    hdr[9] = 41;
    put_be32(hdr + 12, W1_UNDERLAY);
    put_be32(hdr + 16, W2_UNDERLAY);
    put_be16(hdr + 10, inet_csum(hdr, 20));
    if (stage(npk, ctrl, hdr, sizeof hdr, s + 1, l - 1, 0, 0)) npk++;
#elif FUZZ_TARGET == T_IP6TNL
    // What the AF_INET6 raw socket hands over (the inner packet), the
    // sender mapped to its IPv4 identity by the control plane.
    static const uint32_t SENDER[4] = {W6_UNDERLAY, W3_UNDERLAY, 0, UNKNOWN_UNDERLAY};
    if (l < 1) continue;
    if (stage(npk, ctrl, NULL, 0, s + 1, l - 1, SENDER[(ctrl >> 2) & 3], s[0])) npk++;
#else
    if (stage(npk, ctrl, NULL, 0, s, l, 0, 0)) npk++;
#endif
  }
  if (npk == 0) return 0;
  uint32_t ns = load_batch(&A, g_in, npk);
#if FUZZ_TARGET == T_VXLAN_DECAP || FUZZ_TARGET == T_VXLAN_INNER || FUZZ_TARGET == T_VXLAN_INNER6
  Z_overlayZ_processVxlanBatch(&A.w, ns);
  check_batch(&A, ns, C_RX_VXLAN_PKTS, STAGE_VXLAN);
#elif FUZZ_TARGET == T_IPIP_DECAP || FUZZ_TARGET == T_SIT_INNER
  Z_overlayZ_processIpipBatch(&A.w, ns);
  check_batch(&A, ns, C_RX_IPIP_PKTS, STAGE_IPIP);
#elif FUZZ_TARGET == T_IP6TNL
  Z_overlayZ_processIp6TunnelBatch(&A.w, ns);
  check_batch(&A, ns, C_RX_IPIP_PKTS, STAGE_IP6TNL);
#else
  Z_overlayZ_processPodBatch(&A.w, ns);
  check_batch(&A, ns, C_RX_POD_PKTS, STAGE_POD);
#endif
#endif
  return 0;
}
