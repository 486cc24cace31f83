// Encapsulation by template (VPP vxlan style): copy the peer's precomputed
// outer headers in front of the packet, then patch TOS, lengths, id, DF,
// checksum and UDP source port.
//
// Outer TOS follows RFC 6040 "normal mode": the whole inner TOS byte is
// copied, DSCP and ECN alike (CE included), the same as the kernel's
// `tos inherit`. Outer DF is copied from the inner header (RFC 2003 3.1), so
// path-MTU discovery keeps working through the tunnel.
import { ld8, ld16, st16, st8 } from "../wire/bytes";
import { emitEthernet, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet";
import { IP_FLAG_DF, IP_FRAG, IP_PROTO, IP_TOS, PROTO_IPIP } from "../wire/ipv4";
import { ip6Tclass, PROTO_IPV6 } from "../wire/ipv6";
import { IPIP_OVERHEAD } from "../wire/ipip";
import { VXLAN_OVERHEAD } from "../wire/vxlan";
import { C_TX_IPIP_BYTES, C_TX_IPIP_PKTS, C_TX_VXLAN_BYTES, C_TX_VXLAN_PKTS, META_PEER, R_NONE, VERDICT_TX_UNDERLAY } from "../abi";
import { cfgSportMin, cfgSportSpan, cfgVtepMac, count, nextOuterId } from "./state";
import { PEER_IPIP_SUM, PEER_IPIP_TPL, PEER_UNDERLAY, PEER_VXLAN_SUM, PEER_VXLAN_TPL, VXLAN_TPL_LEN, peerPtr } from "./peers";
import { pickSourcePort } from "./flow";
import { emit } from "./verdict";

/** Finish an outer IPv4 header copied from a template: the template's
 *  partial word sum plus the four patched words gives the checksum. */
@inline function patchOuter(o: usize, partial: u32, tos: u32, total: u32, frag: u32): void {
  const id = nextOuterId();
  st8(o + IP_TOS, tos);
  st16(o + 2, total);
  st16(o + 4, id);
  st16(o + IP_FRAG, frag);
  let s = partial + tos + total + id + frag;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  st16(o + 10, ~s & 0xffff);
}

/** Prepend outer IPv4/UDP/VXLAN/Ethernet to the inner IPv4 packet at `p`
 *  (`len` bytes, slot offset `off` >= 50) for `peer`, inner destination MAC
 *  `dstMac`. Emits TX_UNDERLAY towards the peer's underlay address. */
export function encapVxlan(m: usize, off: u32, p: usize, len: u32, peer: u32, dstMac: u64, hash: u32): void {
  encapVxlanAs(m, off, p, len, peer, dstMac, hash, ETHERTYPE_IPV4, ld8(p + IP_TOS), ld16(p + IP_FRAG) & IP_FLAG_DF);
}

/** The same for the inner IPv6 packet at `p`: the traffic class is the
 *  outer TOS, and the outer header has DF set, as the kernel's vxlan with
 *  `df inherit` does for IPv6: IPv6 is never fragmented on the way, so a
 *  path MTU the underlay reports (pmtu.ts) is the only answer to a packet
 *  too big, as it is for IPv4 packets with DF. */
export function encapVxlan6(m: usize, off: u32, p: usize, len: u32, peer: u32, dstMac: u64, hash: u32): void {
  encapVxlanAs(m, off, p, len, peer, dstMac, hash, ETHERTYPE_IPV6, ip6Tclass(p), IP_FLAG_DF);
}

@inline function encapVxlanAs(m: usize, off: u32, p: usize, len: u32, peer: u32, dstMac: u64, hash: u32, etype: u32, tos: u32, frag: u32): void {
  const pp = peerPtr(peer);
  const o = p - VXLAN_OVERHEAD;
  memory.copy(o, pp + PEER_VXLAN_TPL, VXLAN_TPL_LEN);
  emitEthernet(o + VXLAN_TPL_LEN, dstMac, cfgVtepMac, etype);
  const total = len + VXLAN_OVERHEAD;
  patchOuter(o, load<u32>(pp, PEER_VXLAN_SUM), tos, total, frag);
  st16(o + 20, pickSourcePort(hash, cfgSportMin, cfgSportSpan));
  st16(o + 24, total - 20);
  store<u16>(m, <u16>peer, META_PEER);
  emit(m, VERDICT_TX_UNDERLAY, R_NONE, off - VXLAN_OVERHEAD, total, load<u32>(pp, PEER_UNDERLAY));
  count(C_TX_VXLAN_PKTS);
  count(C_TX_VXLAN_BYTES, total);
}

/** Prepend an outer IPv4 header (protocol 4) to the inner packet at `p`
 *  for `peer` (RFC 2003). Emits TX_UNDERLAY. */
export function encapIpip(m: usize, off: u32, p: usize, len: u32, peer: u32): void {
  encapIpipAs(m, off, p, len, peer, PROTO_IPIP, ld8(p + IP_TOS), ld16(p + IP_FRAG) & IP_FLAG_DF);
}

/** Prepend an outer IPv4 header (protocol 41, the kernel's `sit`, RFC 4213
 *  3.5) to the inner IPv6 packet at `p`: traffic class as TOS, DF set (as
 *  sit does with its default `pmtudisc`, RFC 4213 3.2). */
export function encapSit(m: usize, off: u32, p: usize, len: u32, peer: u32): void {
  encapIpipAs(m, off, p, len, peer, PROTO_IPV6, ip6Tclass(p), IP_FLAG_DF);
}

@inline function encapIpipAs(m: usize, off: u32, p: usize, len: u32, peer: u32, proto: u32, tos: u32, frag: u32): void {
  const pp = peerPtr(peer);
  const o = p - IPIP_OVERHEAD;
  memory.copy(o, pp + PEER_IPIP_TPL, 20);
  // The template says protocol 4; its partial sum grows by the difference
  // (the protocol is the low byte of the word at offset 8).
  st8(o + IP_PROTO, proto);
  const total = len + IPIP_OVERHEAD;
  patchOuter(o, load<u32>(pp, PEER_IPIP_SUM) + proto - PROTO_IPIP, tos, total, frag);
  store<u16>(m, <u16>peer, META_PEER);
  emit(m, VERDICT_TX_UNDERLAY, R_NONE, off - IPIP_OVERHEAD, total, load<u32>(pp, PEER_UNDERLAY));
  count(C_TX_IPIP_PKTS);
  count(C_TX_IPIP_BYTES, total);
}
