// Underlay -> pod side: VXLAN datagrams from the UDP sockets (IPv4 and IPv6
// underlay alike: the control plane maps an IPv6 source to the peer's IPv4
// identity), IPIP packets from the raw socket, and IPv4/IPv6 in IPv6 from
// the AF_INET6 raw sockets (processIp6TunnelBatch). Validates the encapsulation, checks that the sender
// is a configured peer and that the inner source belongs to that peer
// (anti-spoofing, like a strict reverse-path check), applies the RFC 6040
// ECN decapsulation rules and delivers the inner packet to the device.
import { ld16, ld8, st16 } from "../wire/bytes";
import { csumFinish, csumPartial, csumPseudo } from "../wire/checksum";
import { ethDst, ethType, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HDR_LEN } from "../wire/ethernet";
import { checkIpv6Forwardable, csumPseudo6, ip6HopLimit, ip6Next, ip6PayloadLen, ip6SetHopLimit, ip6SetTclass, ip6Tclass, IP6_DST, IP6_HDR_LEN, IP6_SRC, PROTO_IPV6 } from "../wire/ipv6";
import { lpm6Lookup } from "../tables/lpm6";
import {
  checkIpv4, checkIpv4Forwardable, ipDecTtl, ipDst, ipHeaderLen, ipIsFragment, ipProto, ipSetTos, PROTO_TCP, PROTO_UDP, ipTtl, ipSrc, ipTos, ipTotalLen, ECN_CE, ECN_ECT0, ECN_ECT1,
  ECN_NOT_ECT, IP_TOS,
} from "../wire/ipv4";
import { checkIpip } from "../wire/ipip";
import { checkVxlan, vxlanVni, VXLAN_HDR_LEN } from "../wire/vxlan";
import {
  C_BATCHES, C_RX_IPIP_PKTS, C_RX_VXLAN_PKTS, META_ADDR, META_LEN,
  META_OFF, META_PEER, META_TOS, NH_DIRECT, NH_IPIP, NH_VXLAN, R_BAD_ETHERTYPE, R_DST_MAC_MISMATCH,
  R_BAD_IP_HEADER, R_ECN_CE_NOT_ECT, R_NONE, R_NOT_LOCAL_UNDERLAY, R_TRUNCATED, R_TTL_EXCEEDED, R_SPOOFED_SOURCE, R_UNKNOWN_PEER, R_VXLAN_BAD_VNI,
} from "../abi";
import { lpmLookup, LPM_MISS } from "../tables/lpm";
import { htFind, htValueAt } from "../tables/hash";
import { batchMax, cfgUnderlay, cfgVni, cfgVtepMac, count, metaBase, peerAddrTable, slotBase, slotSize } from "./state";
import { nhKind, nhPeer, peerValid } from "./peers";
import { deliverIpv4, deliverIpv6 } from "./forward";
import { admit, drop, emitDirect, metaPtr } from "./verdict";
import { natNodeIp, natUnderlaySide, NAT_DONE, NAT_TRANSLATED } from "./nat";
import { natUnderlaySide6 } from "./nat6";

/** RFC 6040 section 4.2 (Figure 4): the inner ECN field after
 *  decapsulation, or -1 when the packet must be dropped (outer CE on a
 *  Not-ECT inner packet). */
@inline export function ecnDecap(inner: u32, outer: u32): i32 {
  if (inner == ECN_NOT_ECT) return outer == ECN_CE ? -1 : <i32>ECN_NOT_ECT;
  if (outer == ECN_CE) return <i32>ECN_CE;
  if (outer == ECN_ECT1 && inner == ECN_ECT0) return <i32>ECN_ECT1;
  return <i32>inner;
}

/** A kernel VTEP on a virtual link (veth, no NIC in the path) sends inner
 *  TCP and UDP checksums unfinished: the skb stays CHECKSUM_PARTIAL from the
 *  pod's socket to ours, and the field holds only the folded pseudo-header
 *  sum (what a virtio_net_hdr with NEEDS_CSUM describes). The kernel's own
 *  vxlan knows from the skb; a UDP socket hands us the bytes alone. A field
 *  equal to that partial sum is recomputed from scratch: for a packet whose
 *  checksum was already complete that gives the same value back, so only
 *  partial ones change. Unfragmented IPv4 at `p`, `len` bytes (checked). */
export function finishPartialL4(p: usize, len: u32): void {
  if (ipIsFragment(p)) return;
  const ihl = ipHeaderLen(p);
  if (len < ihl) return;
  const l4len = len - ihl;
  const proto = ipProto(p);
  finishPartial(p + ihl, l4len, proto, csumPseudo(ipSrc(p), ipDst(p), proto, l4len));
}

/** finishPartialL4 for IPv6: TCP or UDP right behind the fixed header (a
 *  kernel VTEP on a veth sends them with the pseudo-header sum only). */
export function finishPartialL4v6(p: usize, len: u32): void {
  const proto = ip6Next(p);
  const l4len = len - IP6_HDR_LEN;
  finishPartial(p + IP6_HDR_LEN, l4len, proto, csumPseudo6(p, proto, l4len));
}

/** Both families: the TCP or UDP segment at `l4` (`l4len` bytes) whose
 *  pseudo header sums to `pseudo` (csumPseudo/csumPseudo6): a checksum
 *  field equal to the folded pseudo-header sum alone is completed; a UDP
 *  checksum of 0 (none) stays. */
function finishPartial(l4: usize, l4len: u32, proto: u32, pseudo: u64): void {
  let field: u32;
  if (proto == PROTO_TCP) field = 16;
  else if (proto == PROTO_UDP) field = 6;
  else return;
  if (l4len < field + 2) return;
  const c = ld16(l4 + field);
  if (proto == PROTO_UDP && c == 0) return; // no checksum
  if (c != (~csumFinish(pseudo) & 0xffff)) return;
  st16(l4 + field, 0);
  let full = csumFinish(csumPartial(l4, l4len, pseudo));
  if (proto == PROTO_UDP && full == 0) full = 0xffff;
  st16(l4 + field, full);
}

/** Anti-spoofing (a strict reverse-path check): next hop `nh` of an inner
 *  source (LPM_MISS when none) leads back to `peer` through a tunnel or
 *  a direct route. */
@inline function routesBackTo(nh: u32, peer: u32): bool {
  if (nh == LPM_MISS) return false;
  const kind = nhKind(nh);
  return (kind == NH_VXLAN || kind == NH_IPIP || kind == NH_DIRECT) && nhPeer(nh) == peer;
}

/** Resolve the sending peer from the outer source address. */
@inline function peerOf(outerSrc: u32): i32 {
  const s = htFind(peerAddrTable, <u64>outerSrc);
  if (s < 0) return -1;
  const peer = <u32>htValueAt(peerAddrTable, s);
  return peerValid(peer) ? <i32>peer : -1;
}

/** Common tail: inner IPv4 at `p` (slot offset `off`, `avail` bytes up to the
 *  end of the datagram), sent by `peer` with outer TOS `outerTos`. */
function deliverInner(m: usize, off: u32, p: usize, avail: u32, peer: u32, outerTos: u32): void {
  // As on the pod side: never hand the kernel a header whose checksum
  // disowns the fields the checks below trust (a bug the fuzzer found).
  const r = checkIpv4Forwardable(p, avail);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  const len = ipTotalLen(p);
  const src = ipSrc(p);
  // Anti-spoofing: the inner source must route back through the same peer.
  if (!routesBackTo(lpmLookup(src), peer)) {
    drop(m, R_SPOOFED_SOURCE);
    return;
  }
  const tos = ipTos(p);
  const ecn = ecnDecap(tos & 3, outerTos & 3);
  if (ecn < 0) {
    drop(m, R_ECN_CE_NOT_ECT);
    return;
  }
  if (<u32>ecn != (tos & 3)) ipSetTos(p, (tos & 0xfc) | <u32>ecn);
  finishPartialL4(p, len);
  store<u16>(m, <u16>peer, META_PEER);
  // Answers of flows this node translated (services whose backend is on
  // another node, hairpin and NodePort flows) are translated back here.
  const nat = natUnderlaySide(m, p, len);
  if (nat & NAT_DONE) return;
  if ((nat & NAT_TRANSLATED) != 0 && ipSrc(p) == natNodeIp() && lpmLookup(ipDst(p)) == LPM_MISS) {
    // A NodePort answer for a client outside the cluster: leaves as the
    // node's own packet, through the node's stack (local output: the kernel
    // takes nothing off), so this node's hop is ours (forward.ts, "TTL").
    if (ipTtl(p) <= 1) {
      drop(m, R_TTL_EXCEEDED);
      return;
    }
    ipDecTtl(p);
    emitDirect(m, off, len, ipDst(p));
    return;
  }
  deliverIpv4(m, off, p, len);
}

/** Process `n` VXLAN UDP payloads (bytes at [off, off+len) of each slot;
 *  metadata addr = outer source, addr2 = outer destination, tos = outer
 *  TOS). Returns the number processed. */
export function processVxlanBatch(n: u32): u32 {
  if (n > batchMax) n = batchMax;
  count(C_BATCHES);
  for (let i: u32 = 0; i < n; i++) {
    const m = metaPtr(metaBase, i);
    const slot = slotBase + <usize>i * slotSize;
    const off = load<u32>(m, META_OFF);
    const len = load<u32>(m, META_LEN);
    const outerSrc = load<u32>(m, META_ADDR);
    const outerTos = <u32>load<u8>(m, META_TOS);
    if (!admit(m, off, len, C_RX_VXLAN_PKTS)) continue;
    const p = slot + off;
    const r = checkVxlan(p, len);
    if (r != R_NONE) {
      drop(m, r);
      continue;
    }
    if (vxlanVni(p) != cfgVni) {
      drop(m, R_VXLAN_BAD_VNI);
      continue;
    }
    const peer = peerOf(outerSrc);
    if (peer < 0) {
      drop(m, R_UNKNOWN_PEER);
      continue;
    }
    const e = p + VXLAN_HDR_LEN;
    const et = ethType(e);
    if (et != ETHERTYPE_IPV4 && et != ETHERTYPE_IPV6) {
      drop(m, R_BAD_ETHERTYPE);
      continue;
    }
    if (ethDst(e) != cfgVtepMac) {
      drop(m, R_DST_MAC_MISMATCH);
      continue;
    }
    const hdrs = VXLAN_HDR_LEN + ETH_HDR_LEN;
    if (et == ETHERTYPE_IPV6) deliverInner6(m, off + hdrs, p + hdrs, len - hdrs, <u32>peer, outerTos);
    else deliverInner(m, off + hdrs, p + hdrs, len - hdrs, <u32>peer, outerTos);
  }
  return n;
}

/** Process `n` whole outer IPv4 packets from the raw IPIP socket. Returns
 *  the number processed. */
export function processIpipBatch(n: u32): u32 {
  if (n > batchMax) n = batchMax;
  count(C_BATCHES);
  for (let i: u32 = 0; i < n; i++) {
    const m = metaPtr(metaBase, i);
    const slot = slotBase + <usize>i * slotSize;
    const off = load<u32>(m, META_OFF);
    const len = load<u32>(m, META_LEN);
    if (!admit(m, off, len, C_RX_IPIP_PKTS)) continue;
    const p = slot + off;
    // Protocol 41 (IPv6 in IPv4, the kernel's sit): the outer header as for
    // IPIP; deliverInner6 checks the inner one.
    const six = checkIpv4(p, len) == R_NONE && ipProto(p) == PROTO_IPV6;
    const r = six ? R_NONE : checkIpip(p, len);
    if (r != R_NONE) {
      drop(m, r);
      continue;
    }
    if (ipDst(p) != cfgUnderlay) {
      drop(m, R_NOT_LOCAL_UNDERLAY);
      continue;
    }
    const peer = peerOf(ipSrc(p));
    if (peer < 0) {
      drop(m, R_UNKNOWN_PEER);
      continue;
    }
    const hl = ipHeaderLen(p);
    if (six) deliverInner6(m, off + hl, p + hl, ipTotalLen(p) - hl, <u32>peer, ld8(p + IP_TOS));
    else deliverInner(m, off + hl, p + hl, ipTotalLen(p) - hl, <u32>peer, ld8(p + IP_TOS));
  }
  return n;
}

/** Process `n` IPv4-in-IPv6 / IPv6-in-IPv6 packets (RFC 2473; next header
 *  4 or 41) from an AF_INET6 raw socket, which hands over the payload only:
 *  [off, off+len) is the inner packet, IPv4 or IPv6 by its version nibble
 *  (anything else a counted R_BAD_IP_HEADER, nothing at all R_TRUNCATED);
 *  metadata addr = the sending peer's IPv4 identity, which the control
 *  plane mapped from the outer IPv6 source (0 or unknown: R_UNKNOWN_PEER,
 *  as processIpipBatch), tos = the outer traffic class (RFC 6040). The
 *  rest is deliverInner/deliverInner6's: anti-spoofing, ECN, NAT. Counted
 *  as IPIP received. Returns the number processed. */
export function processIp6TunnelBatch(n: u32): u32 {
  if (n > batchMax) n = batchMax;
  count(C_BATCHES);
  for (let i: u32 = 0; i < n; i++) {
    const m = metaPtr(metaBase, i);
    const slot = slotBase + <usize>i * slotSize;
    const off = load<u32>(m, META_OFF);
    const len = load<u32>(m, META_LEN);
    const identity = load<u32>(m, META_ADDR);
    const outerTos = <u32>load<u8>(m, META_TOS);
    if (!admit(m, off, len, C_RX_IPIP_PKTS)) continue;
    const peer = identity != 0 ? peerOf(identity) : -1;
    if (peer < 0) {
      drop(m, R_UNKNOWN_PEER);
      continue;
    }
    if (len == 0) {
      drop(m, R_TRUNCATED);
      continue;
    }
    const p = slot + off;
    const v = ld8(p) >> 4;
    if (v == 4) deliverInner(m, off, p, len, <u32>peer, outerTos);
    else if (v == 6) deliverInner6(m, off, p, len, <u32>peer, outerTos);
    else drop(m, R_BAD_IP_HEADER);
  }
  return n;
}

/** The IPv6 counterpart of deliverInner: inner IPv6 at `p` (`avail` bytes
 *  up to the end of the datagram) from `peer`. The same anti-spoofing (the
 *  source must route back through that peer, in the IPv6 LPM) and RFC 6040
 *  rules on the traffic class; no NAT66 yet. */
function deliverInner6(m: usize, off: u32, p: usize, avail: u32, peer: u32, outerTos: u32): void {
  const r = checkIpv6Forwardable(p, avail);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  const len = IP6_HDR_LEN + ip6PayloadLen(p);
  if (!routesBackTo(lpm6Lookup(p + IP6_SRC), peer)) {
    drop(m, R_SPOOFED_SOURCE);
    return;
  }
  const tc = ip6Tclass(p);
  const ecn = ecnDecap(tc & 3, outerTos & 3);
  if (ecn < 0) {
    drop(m, R_ECN_CE_NOT_ECT);
    return;
  }
  if (<u32>ecn != (tc & 3)) ip6SetTclass(p, (tc & 0xfc) | <u32>ecn);
  finishPartialL4v6(p, len);
  store<u16>(m, <u16>peer, META_PEER);
  // Answers of IPv6 service flows whose backend is on another node.
  const nat = natUnderlaySide6(m, p, len);
  if (nat & NAT_DONE) return;
  if ((nat & NAT_TRANSLATED) != 0 && lpm6Lookup(p + IP6_DST) == LPM_MISS) {
    // A NodePort answer for a client outside the cluster: leaves through
    // the node's stack, our hop (as for IPv4 above).
    if (ip6HopLimit(p) <= 1) {
      drop(m, R_TTL_EXCEEDED);
      return;
    }
    ip6SetHopLimit(p, ip6HopLimit(p) - 1);
    emitDirect(m, off, len, 0);
    return;
  }
  deliverIpv6(m, off, p, len);
}
