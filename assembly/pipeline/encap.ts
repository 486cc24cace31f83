// Encapsulation by template (VPP vxlan style): copy the peer's precomputed
// outer headers in front of the packet, then patch TOS, lengths, id, DF,
// checksum and UDP source port.
//
// Outer TOS follows RFC 6040 "normal mode": the whole inner TOS byte is
// copied, DSCP and ECN alike (CE included), the same as the kernel's
// `tos inherit`. Outer DF is copied from the inner header (RFC 2003 3.1), so
// path-MTU discovery keeps working through the tunnel.
import { ld8, ld16, st16, st8 } from "../wire/bytes";
import { emitEthernet, ETHERTYPE_IPV4 } from "../wire/ethernet";
import { IP_FLAG_DF, IP_FRAG, IP_TOS } from "../wire/ipv4";
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
  const pp = peerPtr(peer);
  const o = p - VXLAN_OVERHEAD;
  const tos = ld8(p + IP_TOS);
  const frag = ld16(p + IP_FRAG) & IP_FLAG_DF;
  memory.copy(o, pp + PEER_VXLAN_TPL, VXLAN_TPL_LEN);
  emitEthernet(o + VXLAN_TPL_LEN, dstMac, cfgVtepMac, ETHERTYPE_IPV4);
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
  const pp = peerPtr(peer);
  const o = p - IPIP_OVERHEAD;
  const tos = ld8(p + IP_TOS);
  const frag = ld16(p + IP_FRAG) & IP_FLAG_DF;
  memory.copy(o, pp + PEER_IPIP_TPL, 20);
  const total = len + IPIP_OVERHEAD;
  patchOuter(o, load<u32>(pp, PEER_IPIP_SUM), tos, total, frag);
  store<u16>(m, <u16>peer, META_PEER);
  emit(m, VERDICT_TX_UNDERLAY, R_NONE, off - IPIP_OVERHEAD, total, load<u32>(pp, PEER_UNDERLAY));
  count(C_TX_IPIP_PKTS);
  count(C_TX_IPIP_BYTES, total);
}
