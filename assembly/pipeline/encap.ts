// Encapsulation by template (VPP vxlan style): copy the peer's precomputed
// outer headers in front of the packet, then patch TOS, lengths, id, DF,
// checksum and UDP source port.
//
// Outer TOS follows RFC 6040 "normal mode": the whole inner TOS byte is
// copied, DSCP and ECN alike (CE included), the same as the kernel's
// `tos inherit`. Outer DF is copied from the inner header (RFC 2003 3.1), so
// path-MTU discovery keeps working through the tunnel.
//
// A peer may be reached over the IPv6 underlay (peers.ts setPeer6): then the
// outer header is IPv6 (RFC 8200), 20 bytes more than IPv4's, built per
// packet (the addresses come from the node's cell and the peer record):
//   VXLAN over IPv6 (RFC 7348 5): IPv6 (40) + UDP (8) + VXLAN (8) + inner
//     Ethernet (14) = 70 bytes; the UDP checksum is computed, never zero
//     (RFC 6935/6936 allow a zero one only for tunnels that opt in; a
//     kernel vxlan without udp6zerocsumrx drops such packets).
//   IPv4/IPv6 in IPv6 (RFC 2473, the kernel's ip6tnl): IPv6 (40), next
//     header 4 or 41, no tunnel encapsulation limit option (as `encaplimit
//     none`).
// The traffic class is the byte an IPv4 outer header would get as TOS (RFC
// 6040 normal mode), the flow label comes from the inner flow hash (RFC
// 6438, as the kernel's vxlan and ip6tnl derive it; see flowLabel), the hop
// limit is the outer TTL. The TX_UNDERLAY verdict's addr stays the peer's
// IPv4 identity: the I/O layer tells the families apart by the version
// nibble and sends IPv6 ones to their header's destination.
import { ld8, ld16, st16, st8 } from "../wire/bytes";
import { csumFinish, csumPartial } from "../wire/checksum";
import { emitEthernet, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet";
import { IP_FLAG_DF, IP_FRAG, IP_PROTO, IP_TOS, PROTO_IPIP, PROTO_UDP } from "../wire/ipv4";
import { emitIpv6, ip6Tclass, IP6_HDR_LEN, PROTO_IPV6 } from "../wire/ipv6";
import { UDP_CSUM, UDP_LEN } from "../wire/udp";
import { IPIP_OVERHEAD } from "../wire/ipip";
import { VXLAN_OVERHEAD } from "../wire/vxlan";
import { C_TX_IPIP_BYTES, C_TX_IPIP_PKTS, C_TX_VXLAN_BYTES, C_TX_VXLAN_PKTS, META_HASH, META_PEER, R_NONE, VERDICT_TX_UNDERLAY } from "../abi";
import { cfgOuterTtl, cfgSportMin, cfgSportSpan, cfgUnderlay6, cfgVtepMac, count, nextOuterId } from "./state";
import {
  PEER_IPIP_SUM, PEER_IPIP_TPL, PEER_PSEUDO6_SUM, PEER_UNDERLAY, PEER_UNDERLAY6, PEER_VXLAN_SUM, PEER_VXLAN_TPL, VXLAN_TPL_LEN, peerOver6, peerPtr,
} from "./peers";
import { OUTER6_EXTRA } from "./pmtu";
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

/** VXLAN over IPv6: outer IPv6 + UDP + VXLAN + inner Ethernet. */
export const VXLAN6_OVERHEAD: u32 = VXLAN_OVERHEAD + OUTER6_EXTRA;

/** The outer flow label of a packet with inner flow hash `hash`: its low 20
 *  bits (the source port takes the high ones: pickSourcePort), so a flow
 *  keeps one label and flows spread over ECMP paths (RFC 6438 2, RFC 6437
 *  3). A hash whose low bits are all zero gives label 1: 0 would mark the
 *  packet unlabelled (RFC 6437 2) and no flow would be hashed by it. */
@inline export function flowLabel(hash: u32): u32 {
  const fl = hash & 0xfffff;
  return fl != 0 ? fl : 1;
}

/** Prepend outer IPv4/UDP/VXLAN/Ethernet to the inner IPv4 packet at `p`
 *  (`len` bytes, slot offset `off` >= 50; >= 70 for a peer over IPv6) for
 *  `peer`, inner destination MAC `dstMac`. Emits TX_UNDERLAY towards the
 *  peer's underlay address. A peer over IPv6 needs the node's IPv6 underlay
 *  address (forward.ts checks it first). */
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
  if (peerOver6(peer)) {
    encapVxlanOver6(m, off, p, len, peer, dstMac, hash, etype, tos);
    return;
  }
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

/** VXLAN for a peer over IPv6 (the top of this file). The UDP and VXLAN
 *  headers come from the peer's IPv4 template (ports, VNI; length and
 *  checksum zero there); the checksum covers the pseudo header (the peer's
 *  precomputed address sum, the UDP length, next header 17) and the whole
 *  datagram, and a computed 0 is sent as 0xFFFF (RFC 768, RFC 8200 8.1). */
function encapVxlanOver6(m: usize, off: u32, p: usize, len: u32, peer: u32, dstMac: u64, hash: u32, etype: u32, tos: u32): void {
  const pp = peerPtr(peer);
  const o = p - VXLAN6_OVERHEAD;
  const u = o + IP6_HDR_LEN;
  const total = len + VXLAN6_OVERHEAD;
  const udpLen = total - IP6_HDR_LEN;
  emitIpv6(o, tos, flowLabel(hash), udpLen, PROTO_UDP, cfgOuterTtl, cfgUnderlay6, pp + PEER_UNDERLAY6);
  memory.copy(u, pp + PEER_VXLAN_TPL + 20, VXLAN_TPL_LEN - 20);
  emitEthernet(u + VXLAN_TPL_LEN - 20, dstMac, cfgVtepMac, etype);
  st16(u, pickSourcePort(hash, cfgSportMin, cfgSportSpan));
  st16(u + UDP_LEN, udpLen);
  const pseudo = <u64>load<u32>(pp, PEER_PSEUDO6_SUM) + <u64>bswap<u16>(<u16>udpLen) + <u64>bswap<u16>(<u16>PROTO_UDP);
  const c = csumFinish(csumPartial(u, udpLen, pseudo));
  st16(u + UDP_CSUM, c != 0 ? c : 0xffff);
  store<u16>(m, <u16>peer, META_PEER);
  emit(m, VERDICT_TX_UNDERLAY, R_NONE, off - VXLAN6_OVERHEAD, total, load<u32>(pp, PEER_UNDERLAY));
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
  if (peerOver6(peer)) {
    encapIpipOver6(m, off, p, len, peer, proto, tos);
    return;
  }
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

/** IPv4 or IPv6 in IPv6 (RFC 2473) for a peer over IPv6: next header 4 or
 *  41 (`proto`), the flow label from the flow hash processPodBatch left in
 *  the metadata. No checksum: IPv6 has none. */
function encapIpipOver6(m: usize, off: u32, p: usize, len: u32, peer: u32, proto: u32, tos: u32): void {
  const pp = peerPtr(peer);
  const o = p - IP6_HDR_LEN;
  emitIpv6(o, tos, flowLabel(load<u32>(m, META_HASH)), len, proto, cfgOuterTtl, cfgUnderlay6, pp + PEER_UNDERLAY6);
  const total = len + IP6_HDR_LEN;
  store<u16>(m, <u16>peer, META_PEER);
  emit(m, VERDICT_TX_UNDERLAY, R_NONE, off - IP6_HDR_LEN, total, load<u32>(pp, PEER_UNDERLAY));
  count(C_TX_IPIP_PKTS);
  count(C_TX_IPIP_BYTES, total);
}
