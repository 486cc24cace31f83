// Pod side -> underlay: packets the node's kernel routed into our tun (IPv4)
// or tap (Ethernet) device. This is where a packet's route is looked up.
//
// Per packet: validate, answer ARP (tap), look the destination up (LPM),
// enforce the tunnel MTU or the peer's path MTU (ICMP errors like a router;
// one rule for every tunnel path: tunnelAdmits),
// settle the TTL (below)
// and hand the packet to the encapsulation its next hop names.
//
// TTL: one hop per node. A node running overlayd is one router hop, as with
// the kernel's vxlan and ipip (RFC 2003 section 3.1: the encapsulator
// decrements the inner TTL only as part of forwarding it; RFC 7348 says
// nothing more): whoever forwards a packet through this node takes one off
// the TTL and answers ICMP time exceeded for a packet it would forward with
// TTL <= 1; the data path does it only where nobody else on the node does.
//   - Pod -> tun/tap -> tunnel (VXLAN, IPIP) or direct: the kernel forwarded
//     the packet into our device and took the hop (and answered TTL 1 itself;
//     a tap carries frames the kernel routed to it, so the same holds there).
//     We do not decrement and do not check: a packet with TTL 1 left the
//     kernel legitimately and is the next node's to answer. Packets the node
//     sends itself into the device were never forwarded; nothing is taken
//     off them either, as the kernel's vxlan does not.
//   - Tunnel -> tun/tap (decap): nothing here. The receiving node's kernel
//     forwards the inner packet from the device to the pod: its hop, its
//     TTL check, its ICMP (the kernel's vxlan does not decrement on decap).
//   - NAT, pod side (src/daemon/natsetup.ts steers traffic for the node's
//     own underlay address to the device with tc, not by forwarding: NodePort
//     requests, answers to masqueraded flows, ICMP errors about them): for
//     those the node's forwarding is ours. Leaving by a tunnel, directly or
//     through the node's stack (the raw socket: local output, the kernel
//     takes nothing), we check TTL (time exceeded, translated back to the
//     sender) and decrement; going back to the device, the kernel forwards it
//     to the pod and takes the hop. Masqueraded packets and NodePort answers
//     leaving through the raw socket came in by kernel forwarding: as is.
//   - Hairpin (a packet the kernel forwarded into the device that NAT sends
//     back to a pod of this node: a service with a local backend, and its
//     answers): the kernel forwards it twice, into the device and out of it.
//     We give one back (kube-proxy's hairpin is one hop). Only for packets
//     NAT translated on this pass: a translated packet that comes round
//     again is not translated again, so a routing loop still ends.
//   - NAT, tunnel side: an answer of a NodePort flow for a client outside
//     leaves through the node's stack (raw socket): our hop; a TTL <= 1 is a
//     counted drop (ttl_exceeded; decap.ts), else one off.
import { ld16 } from "../wire/bytes";
import { checkEthernet, emitEthernet, ethDst, ethSrc, ethType, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_HDR_LEN, macIsMulticast } from "../wire/ethernet";
import {
  a6copy, a6eq, a6IsMartianSource, checkIpv6, checkIpv6Forwardable, emitIpv6, ip6HopLimit, ip6Next, ip6SetHopLimit, ip6PayloadLen, ip6Version, IP6_DST, IP6_HDR_LEN, IP6_SRC, PROTO_ICMPV6,
} from "../wire/ipv6";
import {
  emitNeighborAdvert, ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, NA_FLAG_ROUTER, NA_FLAG_SOLICITED, NA_LEN, ndSolicitSender, ND_NEIGHBOR_SOLICIT, UNREACH6_NO_ROUTE,
} from "../wire/icmp6";
import { lpm6Lookup } from "../tables/lpm6";
import { ARP_REPLY, ARP_REQUEST, arpOper, arpSha, arpSpa, arpTpa, checkArp, emitArp } from "../wire/arp";
import {
  checkIpv4Forwardable, ipDecTtl, ipDst, ipIncTtl, ipSrc, ipTotalLen, ipTtl, IP_FLAG_DF, IP_FRAG,
} from "../wire/ipv4";
import { ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, UNREACH_FRAG_NEEDED, UNREACH_NET } from "../wire/icmp";
import { VXLAN_OVERHEAD } from "../wire/vxlan";
import { IPIP_OVERHEAD } from "../wire/ipip";
import {
  C_BATCHES, C_RX_POD_PKTS, C_TO_DEVICE_BYTES, C_TO_DEVICE_PKTS,
  META_HASH, META_LEN, META_OFF, META_PEER, META_VERDICT, MODE_TAP, NH_BLACKHOLE, NH_DIRECT, NH_IPIP, NH_LOCAL, NH_VXLAN,
  R_ARP_IGNORED, R_BAD_ETHERTYPE, R_BLACKHOLE, R_FRAG_NEEDED_NO_DF, R_MARTIAN, R_NONE,
  R_NDP_IGNORED, R_NO_FDB, R_NO_NEIGH, R_NO_ROUTE, R_TOO_BIG, R_TTL_EXCEEDED, R_UNKNOWN_PEER, VERDICT_REPLY, VERDICT_TO_DEVICE,
} from "../abi";
import { lpmLookup, LPM_MISS } from "../tables/lpm";
import { htFind, htValueAt } from "../tables/hash";
import {
  batchMax, cfgDevMac, cfgHasUnderlay6, cfgMode, cfgUnderlayMtu, cfgVtepMac, count, fdbTable, metaBase, neighTable, slotBase, slotSize,
} from "./state";
import { nhGateway, nhKind, nhPeer, peerOver6, peerPtr, peerValid, PEER_VTEP_MAC } from "./peers";
import { encapIpip, encapSit, encapVxlan, encapVxlan6 } from "./encap";
import { peerInnerMtu, peerPathBinds } from "./pmtu";
import { flowHash, flowHash6 } from "./flow";
import { replyIcmp6Error, replyIcmpError } from "./icmperr";
import { admit, drop, emit, emitDirect, metaPtr, replyToDirect } from "./verdict";
import { natEnabled, natNodeIp, natPodSide, NAT_DONE, NAT_TRANSLATED, translateIcmpError } from "./nat";
import { isNode6, natPodSide6, translateIcmp6Error } from "./nat6";

/** Process `n` packets read from the pod-side device (slot i, metadata i,
 *  bytes at [off, off+len) of the slot). Every record gets a verdict.
 *  Returns the number processed (n clipped to the batch size). */
export function processPodBatch(n: u32): u32 {
  if (n > batchMax) n = batchMax;
  count(C_BATCHES);
  const tap = cfgMode == MODE_TAP;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaPtr(metaBase, i);
    const slot = slotBase + <usize>i * slotSize;
    let off = load<u32>(m, META_OFF);
    let len = load<u32>(m, META_LEN);
    if (!admit(m, off, len, C_RX_POD_PKTS)) continue;
    let p = slot + off;
    if (tap) {
      if (checkEthernet(p, len) != R_NONE) {
        drop(m, checkEthernet(p, len));
        continue;
      }
      const et = ethType(p);
      if (et == ETHERTYPE_ARP) {
        answerArp(m, off, p, len);
        continue;
      }
      if (et == ETHERTYPE_IPV6 && isSolicitation(p + ETH_HDR_LEN, len - ETH_HDR_LEN)) {
        answerNdp(m, off, p, len);
        continue;
      }
      if (et != ETHERTYPE_IPV4 && et != ETHERTYPE_IPV6) {
        drop(m, R_BAD_ETHERTYPE);
        continue;
      }
      if (macIsMulticast(ethDst(p))) {
        drop(m, R_MARTIAN);
        continue;
      }
      p += ETH_HDR_LEN;
      off += ETH_HDR_LEN;
      len -= ETH_HDR_LEN;
      if (et == ETHERTYPE_IPV6) {
        routeIpv6(m, slot, off, p, len);
        continue;
      }
    } else if (len != 0 && ip6Version(p) == 6) {
      routeIpv6(m, slot, off, p, len);
      continue;
    }
    routeIpv4(m, slot, off, p, len);
  }
  return n;
}

/** Route one IPv6 packet from the pod side. As for IPv4 (the top of this
 *  file) the kernel forwarded it into the device and took the hop: the hop
 *  limit is left alone, except that a hairpin gets one back. NAT66
 *  (nat6.ts) comes before the route, as NAT does for IPv4.
 *  Errors are ICMPv6 (RFC 4443): no route, and packet too big where IPv4
 *  would say fragmentation needed; IPv6 has no DF, so every packet over
 *  the limit gets one (never fragmented: RFC 8200 5). */
function routeIpv6(m: usize, slot: usize, off: u32, p: usize, len: u32): void {
  const r = checkIpv6Forwardable(p, len);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  len = IP6_HDR_LEN + ip6PayloadLen(p); // ignore link-layer padding
  // Addressed to the node's IPv6 underlay address (a NodePort client, an
  // answer from outside): steered here by tc, so this node's hop is ours.
  const ours = isNode6(p + IP6_DST);
  let nh = lpm6Lookup(p + IP6_DST);
  const nat = natPodSide6(m, off, p, len, nh);
  if (nat & NAT_DONE) return;
  const translated = (nat & NAT_TRANSLATED) != 0;
  if (translated) nh = lpm6Lookup(p + IP6_DST);
  if (nh == LPM_MISS) {
    if (translated) {
      // Masqueraded: leaves as the node's own packet, through the node's
      // stack (the kernel forwarded it into the device and took the hop).
      if (len > cfgUnderlayMtu) {
        replyIcmp6Error(m, off, p, len, ICMP6_PACKET_TOO_BIG, 0, cfgUnderlayMtu, R_TOO_BIG);
        untranslateOwnError(m, slot, true);
        return;
      }
      // A NodePort request (steered, not forwarded) whose backend is
      // reached through the node's stack: our hop, as toHost takes it for
      // IPv4 and the tunnel branch below for IPv6 (the fuzzer found it).
      if (ours) {
        if (ip6HopLimit(p) <= 1) {
          drop(m, R_TTL_EXCEEDED);
          return;
        }
        ip6SetHopLimit(p, ip6HopLimit(p) - 1);
      }
      emitDirect(m, off, len, 0);
      return;
    }
    replyIcmp6Error(m, off, p, len, ICMP6_DEST_UNREACH, UNREACH6_NO_ROUTE, 0, R_NO_ROUTE);
    return;
  }
  const kind = nhKind(nh);
  if (kind == NH_BLACKHOLE) {
    drop(m, R_BLACKHOLE);
    return;
  }
  store<u32>(m, flowHash6(p, len), META_HASH);
  if (kind == NH_LOCAL) {
    // A hairpin (forwarded into the device, translated back to a pod of
    // this node): one hop back, as for IPv4.
    if (translated && !ours && ip6HopLimit(p) < 255) ip6SetHopLimit(p, ip6HopLimit(p) + 1);
    deliverIpv6(m, off, p, len);
    return;
  }
  const peer = nhPeer(nh);
  if ((kind != NH_VXLAN && kind != NH_IPIP) || !peerValid(peer)) {
    // Direct IPv6 routes are the kernel's (src/config/derive.ts): nothing
    // sends such packets into the device.
    drop(m, kind == NH_DIRECT ? R_NO_ROUTE : R_UNKNOWN_PEER);
    return;
  }
  if (!tunnelAdmits(m, slot, off, p, len, peer, kind == NH_VXLAN ? VXLAN_OVERHEAD : IPIP_OVERHEAD, true, translated)) return;
  if (ours) {
    // Our hop: a NodePort request on its way to a backend on another node.
    if (ip6HopLimit(p) <= 1) {
      drop(m, R_TTL_EXCEEDED);
      return;
    }
    ip6SetHopLimit(p, ip6HopLimit(p) - 1);
  }
  // The inner destination MAC of a VXLAN frame is the peer's VTEP MAC: its
  // neighbour entry, as derive.ts gives the IPv4 path through neigh/fdb.
  if (kind == NH_VXLAN) encapVxlan6(m, off, p, len, peer, load<u64>(peerPtr(peer), PEER_VTEP_MAC), load<u32>(m, META_HASH));
  else encapSit(m, off, p, len, peer);
}

/** Hand an IPv6 packet to the node's device, as deliverIpv4 does. */
export function deliverIpv6(m: usize, off: u32, p: usize, len: u32): void {
  deliver(m, off, p, len, ETHERTYPE_IPV6);
}

/** An ICMPv6 Neighbor Solicitation right behind the fixed header (where
 *  they always are: RFC 4861 sends them without extension headers). */
@inline function isSolicitation(ip: usize, len: u32): bool {
  return len >= IP6_HDR_LEN + 1 && ip6Next(ip) == PROTO_ICMPV6 && load<u8>(ip + IP6_HDR_LEN) == <u8>ND_NEIGHBOR_SOLICIT;
}

/** Tap mode, IPv6: the kernel resolves next hops with Neighbor Discovery.
 *  A valid solicitation (wire/icmp6.ts) for an address we route to a peer
 *  is answered with our VTEP MAC (proxy NDP, as proxy ARP for IPv4), from
 *  the target address, flags Router and Solicited. Duplicate address
 *  detection (unspecified source), targets we do not route, deliver
 *  locally or blackhole, and anything malformed: counted R_NDP_IGNORED. */
function answerNdp(m: usize, off: u32, p: usize, len: u32): void {
  const ip = p + ETH_HDR_LEN;
  const r = checkIpv6(ip, len - ETH_HDR_LEN);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  const sender = ndSolicitSender(ip, ip6PayloadLen(ip));
  const target = ip + IP6_HDR_LEN + 8;
  // The advertisement (86 bytes) may be longer than the solicitation (78
  // without options): it must fit the slot. It goes back to a unicast
  // host only (a multicast or loopback source is no asker; RFC 4861 7.1.1).
  if (sender < 0 || a6IsMartianSource(ip + IP6_SRC) || a6eq(target, ip + IP6_SRC) || off + ETH_HDR_LEN + IP6_HDR_LEN + NA_LEN > slotSize) {
    drop(m, R_NDP_IGNORED);
    return;
  }
  const nh = lpm6Lookup(target);
  if (nh == LPM_MISS || nhKind(nh) == NH_LOCAL || nhKind(nh) == NH_BLACKHOLE) {
    drop(m, R_NDP_IGNORED);
    return;
  }
  const to: u64 = sender != 0 ? <u64>sender : ethSrc(p);
  // The headroom in front of the frame keeps the two addresses while the
  // advertisement is written over the solicitation.
  const save = p - 32;
  a6copy(save, ip + IP6_SRC);
  a6copy(save + 16, target);
  emitEthernet(p, to, cfgVtepMac, ETHERTYPE_IPV6);
  emitIpv6(ip, 0, 0, NA_LEN, PROTO_ICMPV6, 255, save + 16, save);
  emitNeighborAdvert(ip, ip + IP6_HDR_LEN, save + 16, cfgVtepMac, NA_FLAG_ROUTER | NA_FLAG_SOLICITED);
  emit(m, VERDICT_REPLY, R_NONE, off, ETH_HDR_LEN + IP6_HDR_LEN + NA_LEN, 0);
}

/** Route one IPv4 packet from the pod side. */
function routeIpv4(m: usize, slot: usize, off: u32, p: usize, len: u32): void {
  const r = checkIpv4Forwardable(p, len);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  len = ipTotalLen(p); // ignore link-layer padding
  // Addressed to the node's own underlay address: steered here by tc, not
  // forwarded by the kernel, so this node's hop is ours (see the top).
  const ours = natEnabled() && ipDst(p) == natNodeIp();
  // Connection tracking and NAT come before the route: a service address
  // becomes a backend's, a masqueraded answer a pod's (nat.ts).
  let nh = lpmLookup(ipDst(p));
  const nat = natPodSide(m, slot, off, p, len, nh);
  if (nat & NAT_DONE) return;
  const translated = (nat & NAT_TRANSLATED) != 0;
  if (translated) nh = lpmLookup(ipDst(p));
  if (nh == LPM_MISS) {
    if (translated && ipSrc(p) == natNodeIp()) {
      // Masqueraded (or a NodePort answer): leaves as the node's own packet.
      toHost(m, slot, off, p, len, translated, ours);
      return;
    }
    replyIcmpError(m, slot, off, p, len, ICMP_DEST_UNREACH, UNREACH_NET, 0, R_NO_ROUTE);
    if (translated) untranslateOwnError(m, slot);
    return;
  }
  const kind = nhKind(nh);
  if (kind == NH_BLACKHOLE) {
    drop(m, R_BLACKHOLE);
    return;
  }
  const hash = flowHash(p, len);
  store<u32>(m, hash, META_HASH);
  if (kind == NH_LOCAL) {
    // Back to the device: the kernel forwards it to the pod (its hop).
    // Forwarded into the device by the kernel too (a hairpin): one back.
    if (translated && !ours && ipTtl(p) < 255) ipIncTtl(p);
    deliverIpv4(m, off, p, len);
    return;
  }
  if (ours && ipTtl(p) <= 1) {
    replyIcmpError(m, slot, off, p, len, ICMP_TIME_EXCEEDED, 0, 0, R_TTL_EXCEEDED);
    if (translated) untranslateOwnError(m, slot);
    return;
  }
  if (kind == NH_VXLAN) {
    const ns = htFind(neighTable, <u64>nhGateway(nh));
    if (ns < 0) {
      drop(m, R_NO_NEIGH);
      return;
    }
    const mac = htValueAt(neighTable, ns);
    const fs = htFind(fdbTable, mac);
    if (fs < 0) {
      drop(m, R_NO_FDB);
      return;
    }
    const peer = <u32>htValueAt(fdbTable, fs);
    if (!peerValid(peer)) {
      drop(m, R_NO_FDB);
      return;
    }
    if (!tunnelAdmits(m, slot, off, p, len, peer, VXLAN_OVERHEAD, false, translated)) return;
    if (ours) ipDecTtl(p);
    encapVxlan(m, off, p, len, peer, mac, hash);
  } else if (kind == NH_IPIP) {
    const peer = nhPeer(nh);
    if (!peerValid(peer)) {
      drop(m, R_UNKNOWN_PEER);
      return;
    }
    if (!tunnelAdmits(m, slot, off, p, len, peer, IPIP_OVERHEAD, false, translated)) return;
    if (ours) ipDecTtl(p);
    encapIpip(m, off, p, len, peer);
  } else if (kind == NH_DIRECT) {
    if (len > cfgUnderlayMtu) {
      tooBig(m, slot, off, p, len, cfgUnderlayMtu);
      if (translated) untranslateOwnError(m, slot);
      return;
    }
    if (ours) ipDecTtl(p);
    store<u16>(m, <u16>nhPeer(nh), META_PEER);
    emitDirect(m, off, len, nhGateway(nh));
  } else {
    drop(m, R_NO_ROUTE);
  }
}

/** A translated packet whose destination no route covers and whose source
 *  is the node's address: hand it to the node's stack (raw socket, local
 *  output, routed by the kernel) with the MTU checked; when the node's hop
 *  is `ours` (see the top), TTL checked and decremented as a router does. */
function toHost(m: usize, slot: usize, off: u32, p: usize, len: u32, translated: bool, ours: bool): void {
  if (ours && ipTtl(p) <= 1) {
    replyIcmpError(m, slot, off, p, len, ICMP_TIME_EXCEEDED, 0, 0, R_TTL_EXCEEDED);
    if (translated) untranslateOwnError(m, slot);
    return;
  }
  if (len > cfgUnderlayMtu) {
    tooBig(m, slot, off, p, len, cfgUnderlayMtu);
    if (translated) untranslateOwnError(m, slot);
    return;
  }
  if (ours) ipDecTtl(p);
  emitDirect(m, off, len, ipDst(p));
}

/** An ICMP error we just built about a packet NAT had already translated
 *  quotes the translated header; turn it into the error the sender can
 *  match (its own addresses and ports), as the kernel's conntrack does for
 *  locally generated errors. `v6`: an ICMPv6 error (nat6.ts). */
function untranslateOwnError(m: usize, slot: usize, v6: bool = false): void {
  if (load<u16>(m, META_VERDICT) != VERDICT_REPLY) return;
  let off = load<u32>(m, META_OFF);
  let n = load<u32>(m, META_LEN);
  if (cfgMode == MODE_TAP) {
    off += ETH_HDR_LEN;
    n -= ETH_HDR_LEN;
  }
  const q = slot + <usize>off;
  if (!(v6 ? translateIcmp6Error(q, n) : translateIcmpError(q, n))) return;
  // An error for a NodePort client outside the cluster leaves like the
  // flow's answers do: through the node's stack, not back into the device
  // (IPv6: the raw socket takes the header's destination).
  if (v6) {
    if (lpm6Lookup(q + IP6_DST) == LPM_MISS) replyToDirect(m, off, n, 0);
    return;
  }
  const to = ipDst(q);
  if (lpmLookup(to) == LPM_MISS) replyToDirect(m, off, n, to);
}

/** Whether the packet at `p` (`len` bytes, IPv6 when `six`) may be
 *  encapsulated for `peer` (valid) by a tunnel of IPv4-outer overhead
 *  `overhead`; when not, it has been answered or dropped:
 *   - a peer over IPv6 while this node has no IPv6 underlay address
 *     (configureUnderlay6): no route to it, a counted R_NO_ROUTE drop;
 *   - larger than pmtu.ts's peerInnerMtu (tunnel MTU, path MTU, IPv6 outer
 *     header): ICMPv6 packet too big, or ICMP fragmentation needed, with
 *     the inner size that fits, when the path binds it (peerPathBinds: DF,
 *     IPv6, an IPv6 underlay); else a counted R_FRAG_NEEDED_NO_DF drop (no
 *     userspace fragmentation). `translated`: NAT rewrote it (the error is
 *     turned back to the sender's view). */
function tunnelAdmits(m: usize, slot: usize, off: u32, p: usize, len: u32, peer: u32, overhead: u32, six: bool, translated: bool): bool {
  if (peerOver6(peer) && !cfgHasUnderlay6) {
    drop(m, R_NO_ROUTE);
    return false;
  }
  const df = six || (ld16(p + IP_FRAG) & IP_FLAG_DF) != 0;
  const mtu = peerInnerMtu(peer, overhead, df);
  if (len <= mtu) return true;
  if (six) replyIcmp6Error(m, off, p, len, ICMP6_PACKET_TOO_BIG, 0, mtu, R_TOO_BIG);
  else if (peerPathBinds(peer, df)) replyIcmpError(m, slot, off, p, len, ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED, mtu, R_TOO_BIG);
  else drop(m, R_FRAG_NEEDED_NO_DF);
  if (translated) untranslateOwnError(m, slot, six);
  return false;
}

/** DF set: ICMP fragmentation needed with the tunnel MTU; otherwise a
 *  counted drop (no userspace fragmentation: set the device MTU to the
 *  tunnel MTU so the kernel fragments before us). */
function tooBig(m: usize, slot: usize, off: u32, p: usize, len: u32, mtu: u32): void {
  if ((ld16(p + IP_FRAG) & IP_FLAG_DF) != 0) {
    replyIcmpError(m, slot, off, p, len, ICMP_DEST_UNREACH, UNREACH_FRAG_NEEDED, mtu, R_TOO_BIG);
  } else {
    drop(m, R_FRAG_NEEDED_NO_DF);
  }
}

/** Hand an IPv4 packet at `p` (slot offset `off`) to the node's device: as is
 *  in tun mode, behind an Ethernet header addressed to the kernel's side in
 *  tap mode. Requires off >= 14. */
export function deliverIpv4(m: usize, off: u32, p: usize, len: u32): void {
  deliver(m, off, p, len, ETHERTYPE_IPV4);
}

@inline function deliver(m: usize, off: u32, p: usize, len: u32, etype: u32): void {
  if (cfgMode == MODE_TAP) {
    emitEthernet(p - ETH_HDR_LEN, cfgDevMac, cfgVtepMac, etype);
    off -= ETH_HDR_LEN;
    len += ETH_HDR_LEN;
  }
  emit(m, VERDICT_TO_DEVICE, R_NONE, off, len, 0);
  count(C_TO_DEVICE_PKTS);
  count(C_TO_DEVICE_BYTES, len);
}

/** Tap mode: the kernel resolves its next hops with ARP. Requests for an
 *  address in the neighbour table are answered with that MAC (the static
 *  `ip neigh` entries of Hand CNI-7); requests for any other address we
 *  route are answered with our own MAC (proxy ARP, as Calico's 169.254.1.1
 *  gateway). Everything else is ignored. The reply is built in place. */
function answerArp(m: usize, off: u32, p: usize, len: u32): void {
  const a = p + ETH_HDR_LEN;
  const r = checkArp(a, len - ETH_HDR_LEN);
  if (r != R_NONE) {
    drop(m, r);
    return;
  }
  if (arpOper(a) != ARP_REQUEST) {
    drop(m, R_ARP_IGNORED);
    return;
  }
  const target = arpTpa(a);
  const sender = arpSpa(a);
  const senderMac = arpSha(a);
  let mac: u64 = 0;
  const ns = htFind(neighTable, <u64>target);
  if (ns >= 0) {
    mac = htValueAt(neighTable, ns);
  } else {
    const nh = lpmLookup(target);
    if (nh == LPM_MISS || nhKind(nh) == NH_LOCAL || nhKind(nh) == NH_BLACKHOLE || target == sender) {
      drop(m, R_ARP_IGNORED);
      return;
    }
    mac = cfgVtepMac;
  }
  emitEthernet(p, senderMac, mac, ETHERTYPE_ARP);
  emitArp(a, ARP_REPLY, mac, target, senderMac, sender);
  // Ethernet minimum frame (without FCS) is 60 bytes; pad with zeros, but
  // only inside the slot (a request flush with the slot's end stays 42).
  const outLen: u32 = off + 60 <= slotSize ? 60 : ETH_HDR_LEN + 28;
  memory.fill(a + 28, 0, outLen - ETH_HDR_LEN - 28);
  emit(m, VERDICT_REPLY, R_NONE, off, outLen, 0);
}
