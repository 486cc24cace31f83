// Mirror of assembly/abi.ts for the control plane. `npm run build` first runs
// scripts/check-abi.mjs, which fails when a constant here (or a name in
// REASON_NAMES) disagrees with assembly/abi.ts; test/abi.test.ts checks the
// values against the module's own exports.

export const META_SIZE = 32;
export const META_OFF = 0;
export const META_LEN = 4;
export const META_VERDICT = 8;
export const META_REASON = 10;
export const META_ADDR = 12;
export const META_ADDR2 = 16;
export const META_TOS = 20;
export const META_FLAGS = 21;
export const META_PEER = 22;
export const META_HASH = 24;
export const PEER_NONE = 0xffff;
export const HEADROOM = 128;
export const VERDICT_DROP = 0;
export const VERDICT_TX_UNDERLAY = 1; // bytes are a whole outer IPv4 (or IPv6: a peer over the IPv6 underlay, sent to its header destination) packet; send to addr
export const VERDICT_TX_DIRECT = 2; // bytes are the inner IPv4 packet, unencapsulated; next hop addr
export const VERDICT_TO_DEVICE = 3; // write bytes to the tun/tap device (delivered to this node)
export const VERDICT_REPLY = 4; // bytes are a reply (ICMP error, ARP reply); write to the device it came from
export const VERDICT_COUNT = 5;
export const R_NONE = 0;
export const R_TRUNCATED = 1; // shorter than the headers it claims
export const R_BAD_IP_HEADER = 2; // version/IHL/total length inconsistent
export const R_BAD_IP_CHECKSUM = 3;
export const R_TTL_EXCEEDED = 4;
export const R_NO_ROUTE = 5;
export const R_BLACKHOLE = 6;
export const R_NO_NEIGH = 7;
export const R_NO_FDB = 8;
export const R_TOO_BIG = 9; // DF set and larger than the tunnel MTU
export const R_FRAG_NEEDED_NO_DF = 10; // larger than the tunnel MTU without DF (no userspace fragmentation)
export const R_VXLAN_BAD_FLAGS = 11;
export const R_VXLAN_BAD_VNI = 12;
export const R_UNKNOWN_PEER = 13; // outer source is not a configured peer
export const R_SPOOFED_SOURCE = 14; // inner source is outside the sending peer's pod CIDRs
export const R_BAD_ETHERTYPE = 15;
export const R_DST_MAC_MISMATCH = 16;
export const R_ECN_CE_NOT_ECT = 17; // RFC 6040: outer CE on a Not-ECT inner packet
export const R_MARTIAN = 18; // multicast/broadcast/zero addresses where none may be
export const R_ARP_IGNORED = 19; // ARP not for us or not a request we answer
export const R_IPIP_BAD_PROTO = 20; // outer protocol is not 4
export const R_NOT_LOCAL_UNDERLAY = 21; // outer destination is not this node
export const R_BAD_OFFSET = 22; // metadata off/len outside the slot
export const R_ICMP_SUPPRESSED = 23; // an error about an ICMP error or a fragment: no ICMP sent (RFC 1812 4.3.2.7)
export const R_ICMP_RATE_LIMITED = 24; // an ICMP error was due but the token bucket was empty
export const R_CT_FULL = 25; // a new flow needed tracking, the conntrack table is full and no flow near it could be evicted
export const R_NAT_NO_PORT = 26; // no free NAT port (or the translated tuple is taken)
export const R_CT_INVALID = 27; // a TCP packet that cannot open a flow (SYN-ACK, FIN, RST first)
export const R_NAT_FRAGMENT = 28; // a later fragment of NAT traffic (no userspace reassembly)
export const R_NAT_NO_FLOW = 29; // steered to the node's NAT address/ports but matches no flow
export const R_SVC_NO_BACKEND = 30; // a service without backends (answered with ICMP port unreachable)
export const R_NDP_IGNORED = 31; // neighbour discovery (tap) that is not a solicitation we answer
export const REASON_COUNT = 32;
export const C_RX_POD_PKTS = 0;
export const C_RX_POD_BYTES = 1;
export const C_RX_VXLAN_PKTS = 2;
export const C_RX_VXLAN_BYTES = 3;
export const C_RX_IPIP_PKTS = 4;
export const C_RX_IPIP_BYTES = 5;
export const C_TX_VXLAN_PKTS = 6;
export const C_TX_VXLAN_BYTES = 7;
export const C_TX_IPIP_PKTS = 8;
export const C_TX_IPIP_BYTES = 9;
export const C_TX_DIRECT_PKTS = 10;
export const C_TX_DIRECT_BYTES = 11;
export const C_TO_DEVICE_PKTS = 12;
export const C_TO_DEVICE_BYTES = 13;
export const C_REPLY_PKTS = 14;
export const C_BATCHES = 15;
export const C_VERDICT_BASE = 16; // VERDICT_COUNT counters
export const C_DROP_BASE = 32; // REASON_COUNT counters, one per reason
export const C_NAT_SNAT_NEW = 64; // flows masqueraded
export const C_NAT_DNAT_NEW = 65; // service flows (DNAT, or DNAT + SNAT for hairpin/NodePort)
export const C_NAT_TRANSLATED = 66; // packets rewritten by a flow
export const C_NAT_ICMP_TRANSLATED = 67; // ICMP errors translated back, embedded header included
export const C_NAT_REPLY_TRANSLATED = 68; // of C_NAT_TRANSLATED: packets of a flow's reply direction
export const C_PMTU_LOWERED = 78; // a peer's path MTU lowered by an ICMP fragmentation-needed from the underlay
export const C_PMTU_IGNORED = 79; // fragmentation-needed about our address that did not match (forged, stray, not lower)
export const COUNTER_COUNT = 80;
export const NH_VXLAN = 1;
export const NH_IPIP = 2;
export const NH_DIRECT = 3;
export const NH_LOCAL = 4;
export const NH_BLACKHOLE = 5;
export const MODE_TUN = 0; // L3: the device carries IPv4 packets
export const MODE_TAP = 1; // L2: the device carries Ethernet frames
export const GRO_TCPV6 = 1; // groDeviceBatch flag: IPv6/TCP coalesces too (the tun was opened with TUN_F_TSO6)
export const OK = 0;
export const E_FULL = -1; // table full
export const E_RANGE = -2; // index or argument out of range
export const E_NOT_FOUND = -3;
export const E_NOT_INIT = -4;
export const E_NO_MEMORY = -5;

/** Verdict names, indexed by verdict code. */
export const VERDICT_NAMES = ["drop", "tx_underlay", "tx_direct", "to_device", "reply"] as const;

/** Drop reason names (snake_case, for metrics and `show stats`), indexed by code. */
export const REASON_NAMES = [
  "none", "truncated", "bad_ip_header", "bad_ip_checksum", "ttl_exceeded", "no_route", "blackhole", "no_neigh",
  "no_fdb", "too_big", "frag_needed_no_df", "vxlan_bad_flags", "vxlan_bad_vni", "unknown_peer", "spoofed_source",
  "bad_ethertype", "dst_mac_mismatch", "ecn_ce_not_ect", "martian", "arp_ignored", "ipip_bad_proto",
  "not_local_underlay", "bad_offset", "icmp_suppressed", "icmp_rate_limited", "ct_full", "nat_no_port",
  "ct_invalid", "nat_fragment", "nat_no_flow", "svc_no_backend", "ndp_ignored",
] as const;

/** Named counters of the counter block (the rest are per verdict / per reason). */
export const COUNTER_NAMES: Record<string, number> = {
  rx_pod_packets: C_RX_POD_PKTS, rx_pod_bytes: C_RX_POD_BYTES,
  rx_vxlan_packets: C_RX_VXLAN_PKTS, rx_vxlan_bytes: C_RX_VXLAN_BYTES,
  rx_ipip_packets: C_RX_IPIP_PKTS, rx_ipip_bytes: C_RX_IPIP_BYTES,
  tx_vxlan_packets: C_TX_VXLAN_PKTS, tx_vxlan_bytes: C_TX_VXLAN_BYTES,
  tx_ipip_packets: C_TX_IPIP_PKTS, tx_ipip_bytes: C_TX_IPIP_BYTES,
  tx_direct_packets: C_TX_DIRECT_PKTS, tx_direct_bytes: C_TX_DIRECT_BYTES,
  to_device_packets: C_TO_DEVICE_PKTS, to_device_bytes: C_TO_DEVICE_BYTES,
  reply_packets: C_REPLY_PKTS, batches: C_BATCHES,
  nat_snat_flows: C_NAT_SNAT_NEW, nat_dnat_flows: C_NAT_DNAT_NEW,
  nat_translated_packets: C_NAT_TRANSLATED, nat_icmp_translated: C_NAT_ICMP_TRANSLATED,
  nat_reply_packets: C_NAT_REPLY_TRANSLATED,
  pmtu_lowered: C_PMTU_LOWERED, pmtu_ignored: C_PMTU_IGNORED,
};
