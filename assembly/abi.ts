// The contract between the WASM data path and the TypeScript control plane.
// src/dataplane/abi.ts mirrors every constant here; test/abi.test.ts checks
// that the two agree by reading the values the module exports.

// ---------------------------------------------------------------------------
// Per-packet metadata record (one per slot, META_SIZE bytes, little endian).
//
//   0        4        8    10   12       16       20  21  22  24       28   32
//   +--------+--------+----+----+--------+--------+---+---+---+--------+----+
//   |  off   |  len   |verd|rsn |  addr  | addr2  |tos|flg|peer| hash   |rsv |
//   +--------+--------+----+----+--------+--------+---+---+---+--------+----+
//
// off/len: where the packet's bytes start inside its slot, and how many.
//   Input is written at HEADROOM; encapsulation moves off backwards (prepend
//   in place), decapsulation moves it forwards.
// verdict/reason: filled by the pipeline for every packet of a batch.
// addr: output: outer destination (TX_UNDERLAY; for a peer over IPv6 its
//       IPv4 identity, the IPv6 destination is in the packet) or next hop
//       (TX_DIRECT). input of decap: outer source address (over IPv6: the
//       sending peer's IPv4 identity).
// addr2: input of decap: outer destination address.
// tos: input of VXLAN and IPv6 tunnel decap: the outer IPv4 TOS byte (from
//      IP_RECVTOS) or IPv6 traffic class.
// peer: output: index of the peer the packet goes to or came from (0xFFFF: none).
// hash: output: flow hash of the inner packet (queue selection, source port).
// ---------------------------------------------------------------------------
export const META_SIZE: u32 = 32;
export const META_OFF: u32 = 0;
export const META_LEN: u32 = 4;
export const META_VERDICT: u32 = 8;
export const META_REASON: u32 = 10;
export const META_ADDR: u32 = 12;
export const META_ADDR2: u32 = 16;
export const META_TOS: u32 = 20;
export const META_FLAGS: u32 = 21;
export const META_PEER: u32 = 22;
export const META_HASH: u32 = 24;

export const PEER_NONE: u16 = 0xffff;

// Bytes in front of the input in each slot: room for outer IPv4 (20) + UDP (8)
// + VXLAN (8) + inner Ethernet (14) = 50 (70 with an outer IPv6 header), and
// ICMP error wrapping (IPv4 20 + ICMP 8 + Ethernet 14), rounded up to keep the
// input 64-byte aligned.
export const HEADROOM: u32 = 128;

// Verdicts: what the I/O layer does with a packet after a batch.
export const VERDICT_DROP: u16 = 0;
export const VERDICT_TX_UNDERLAY: u16 = 1; // bytes are a whole outer IPv4 or IPv6 packet (version nibble); addr: the peer's IPv4 underlay
export const VERDICT_TX_DIRECT: u16 = 2; // bytes are the inner IPv4 packet, unencapsulated; next hop addr
export const VERDICT_TO_DEVICE: u16 = 3; // write bytes to the tun/tap device (delivered to this node)
export const VERDICT_REPLY: u16 = 4; // bytes are a reply (ICMP error, ARP reply); write to the device it came from
export const VERDICT_COUNT: u16 = 5;

// Drop reasons. Every VERDICT_DROP carries one; REPLY verdicts that answer an
// error (TTL exceeded, no route, too big) carry the reason of the error too.
export const R_NONE: u16 = 0;
export const R_TRUNCATED: u16 = 1; // shorter than the headers it claims
export const R_BAD_IP_HEADER: u16 = 2; // version/IHL/total length inconsistent
export const R_BAD_IP_CHECKSUM: u16 = 3;
export const R_TTL_EXCEEDED: u16 = 4;
export const R_NO_ROUTE: u16 = 5;
export const R_BLACKHOLE: u16 = 6;
export const R_NO_NEIGH: u16 = 7;
export const R_NO_FDB: u16 = 8;
export const R_TOO_BIG: u16 = 9; // DF set and larger than the tunnel MTU
export const R_FRAG_NEEDED_NO_DF: u16 = 10; // larger than the tunnel MTU without DF (no userspace fragmentation)
export const R_VXLAN_BAD_FLAGS: u16 = 11;
export const R_VXLAN_BAD_VNI: u16 = 12;
export const R_UNKNOWN_PEER: u16 = 13; // outer source is not a configured peer
export const R_SPOOFED_SOURCE: u16 = 14; // inner source is outside the sending peer's pod CIDRs
export const R_BAD_ETHERTYPE: u16 = 15;
export const R_DST_MAC_MISMATCH: u16 = 16;
export const R_ECN_CE_NOT_ECT: u16 = 17; // RFC 6040: outer CE on a Not-ECT inner packet
export const R_MARTIAN: u16 = 18; // multicast/broadcast/zero addresses where none may be
export const R_ARP_IGNORED: u16 = 19; // ARP not for us or not a request we answer
export const R_IPIP_BAD_PROTO: u16 = 20; // outer protocol is not 4
export const R_NOT_LOCAL_UNDERLAY: u16 = 21; // outer destination is not this node
export const R_BAD_OFFSET: u16 = 22; // metadata off/len outside the slot
export const R_ICMP_SUPPRESSED: u16 = 23; // an error about an ICMP error or a fragment: no ICMP sent (RFC 1812 4.3.2.7)
export const R_ICMP_RATE_LIMITED: u16 = 24; // an ICMP error was due but the token bucket was empty
export const R_CT_FULL: u16 = 25; // a new flow needed tracking, the conntrack table is full and no flow near it could be evicted
export const R_NAT_NO_PORT: u16 = 26; // no free NAT port (or the translated tuple is taken)
export const R_CT_INVALID: u16 = 27; // a TCP packet that cannot open a flow (SYN-ACK, FIN, RST first)
export const R_NAT_FRAGMENT: u16 = 28; // a later fragment of NAT traffic (no userspace reassembly)
export const R_NAT_NO_FLOW: u16 = 29; // steered to the node's NAT address/ports but matches no flow
export const R_SVC_NO_BACKEND: u16 = 30; // a service without backends (answered with ICMP port unreachable)
export const R_NDP_IGNORED: u16 = 31; // neighbour discovery (tap) that is not a solicitation we answer
export const REASON_COUNT: u16 = 32;

// Counter block: u64 values, indexed as below. Each *_BYTES counter directly
// follows its *_PKTS counter (verdict.ts admit() relies on it).
export const C_RX_POD_PKTS: u32 = 0;
export const C_RX_POD_BYTES: u32 = 1;
export const C_RX_VXLAN_PKTS: u32 = 2;
export const C_RX_VXLAN_BYTES: u32 = 3;
export const C_RX_IPIP_PKTS: u32 = 4;
export const C_RX_IPIP_BYTES: u32 = 5;
export const C_TX_VXLAN_PKTS: u32 = 6;
export const C_TX_VXLAN_BYTES: u32 = 7;
export const C_TX_IPIP_PKTS: u32 = 8;
export const C_TX_IPIP_BYTES: u32 = 9;
export const C_TX_DIRECT_PKTS: u32 = 10;
export const C_TX_DIRECT_BYTES: u32 = 11;
export const C_TO_DEVICE_PKTS: u32 = 12;
export const C_TO_DEVICE_BYTES: u32 = 13;
export const C_REPLY_PKTS: u32 = 14;
export const C_BATCHES: u32 = 15;
export const C_VERDICT_BASE: u32 = 16; // VERDICT_COUNT counters
export const C_DROP_BASE: u32 = 32; // REASON_COUNT counters, one per reason
export const C_NAT_SNAT_NEW: u32 = 64; // flows masqueraded
export const C_NAT_DNAT_NEW: u32 = 65; // service flows (DNAT, or DNAT + SNAT for hairpin/NodePort)
export const C_NAT_TRANSLATED: u32 = 66; // packets rewritten by a flow
export const C_NAT_ICMP_TRANSLATED: u32 = 67; // ICMP errors translated back, embedded header included
export const C_NAT_REPLY_TRANSLATED: u32 = 68; // of C_NAT_TRANSLATED: packets of a flow's reply direction
export const C_PMTU_LOWERED: u32 = 78; // a peer's path MTU lowered by an ICMP fragmentation-needed from the underlay
export const C_PMTU_IGNORED: u32 = 79; // fragmentation-needed about our address that did not match (forged, stray, not lower)
export const COUNTER_COUNT: u32 = 80;

// Next-hop kinds (route table values point at a next-hop record).
export const NH_VXLAN: u8 = 1;
export const NH_IPIP: u8 = 2;
export const NH_DIRECT: u8 = 3;
export const NH_LOCAL: u8 = 4;
export const NH_BLACKHOLE: u8 = 5;

// Device modes.
export const MODE_TUN: u32 = 0; // L3: the device carries IPv4 packets
export const MODE_TAP: u32 = 1; // L2: the device carries Ethernet frames

// groCoalesce / groDeviceBatch flags: what the tun may be written.
export const GRO_TCPV6: u32 = 1; // IPv6/TCP coalesces too (GSO_TCPV6 frames): the tun was opened with TUN_F_TSO6

// Status codes of control-plane calls (never thrown).
export const OK: i32 = 0;
export const E_FULL: i32 = -1; // table full
export const E_RANGE: i32 = -2; // index or argument out of range
export const E_NOT_FOUND: i32 = -3;
export const E_NOT_INIT: i32 = -4;
export const E_NO_MEMORY: i32 = -5;
