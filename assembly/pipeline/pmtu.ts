// Path MTU per peer, learnt from the underlay (issue 13 §4), as the kernel's
// vxlan and ipip learn theirs: an ICMP fragmentation-needed (type 3 code 4)
// that a router on the path sends about one of OUR outer packets lowers that
// peer's path MTU; forward.ts then answers inner packets too big for it with
// fragmentation-needed carrying the inner size (path MTU - overhead), and
// the inner sender's PMTU discovery does the rest. The learnt value ages out
// after PMTU_EXPIRES_MS (the kernel's net.ipv4.route.mtu_expires, 600 s),
// checked lazily when a packet looks it up.
//
// The worker's lane 0 reads every ICMP destination-unreachable the node
// receives (a raw ICMP socket filtered to type 3) into the slots and calls
// pmtuIcmpBatch. An error counts only if it quotes one of our own outer
// packets, strictly: ICMP checksum valid, sent to our underlay address,
// quoting an IPv4 header from our underlay address to a known peer's, UDP to
// tunnel.port (VXLAN) or protocol 4 with an IPv4 header inside (IPIP), to a
// peer reached over IPv4 (peers.ts setPeer6), and a lower MTU than the one in
// force. Anything else of type 3 code 4 that
// names our address is counted as ignored (a forged or stray error cannot
// lower a path that is not ours). Other ICMP is not counted.
import { ld8, ld16 } from "../wire/bytes";
import { checkIpv4, ipDst, ipHeaderLen, ipProto, ipSrc, PROTO_ICMP, PROTO_IPIP, PROTO_UDP } from "../wire/ipv4";
import { ICMP_DEST_UNREACH, icmpCode, icmpMtu, icmpType, UNREACH_FRAG_NEEDED } from "../wire/icmp";
import { checksumOk } from "../wire/checksum";
import { C_PMTU_IGNORED, C_PMTU_LOWERED, META_LEN, META_OFF } from "../abi";
import { htFind, htValueAt } from "../tables/hash";
import { batchMax, cfgPort, cfgUnderlay, cfgUnderlayMtu, count, metaBase, nowMs, peerAddrTable, slotBase, slotSize } from "./state";
import { peerOver6, peerPtr, peerValid, PEER_PMTU, PEER_PMTU_UNTIL } from "./peers";

/** How long a learnt path MTU holds (ms). */
export const PMTU_EXPIRES_MS: u32 = 600_000;
/** The lowest path MTU taken (the kernel's net.ipv4.route.min_pmtu). */
export const PMTU_MIN: u32 = 552;
/** Bytes of each record pmtuIcmpBatch writes: peer underlay, MTU, reporting router (u32 each). */
export const PMTU_RECORD: u32 = 12;

/** The path MTU towards `peer` (a valid index): the tunnel MTU, or the
 *  learnt one while it is lower and fresh. An expired one is forgotten. */
@inline export function peerPathMtu(peer: u32): u32 {
  const pp = peerPtr(peer);
  const pm = load<u32>(pp, PEER_PMTU);
  if (pm == 0) return cfgUnderlayMtu;
  if (<i32>(load<u32>(pp, PEER_PMTU_UNTIL) - nowMs) <= 0) {
    store<u32>(pp, 0, PEER_PMTU);
    return cfgUnderlayMtu;
  }
  return pm < cfgUnderlayMtu ? pm : cfgUnderlayMtu;
}

/** Bytes an outer IPv6 header adds over the outer IPv4 header every
 *  tunnel overhead constant (VXLAN_OVERHEAD, IPIP_OVERHEAD) counts. */
export const OUTER6_EXTRA: u32 = 20;

/** Whether an inner packet towards `peer` is bound by the path MTU, and
 *  answered (ICMP fragmentation needed / packet too big) rather than
 *  dropped when it does not fit: when its sender forbids fragmentation
 *  (`df`: IPv4 with DF, and every IPv6 packet), or when the outer packet is
 *  IPv6, which no router fragments (RFC 8200 5) and we do not fragment at
 *  the source either (RFC 2473 7: the entry point answers instead, as the
 *  kernel's ip6tnl sends fragmentation-needed for IPv4 with or without DF).
 *  Otherwise an IPv4 underlay may fragment it (the kernel's vxlan and ipip
 *  leave DF clear): only the tunnel MTU binds. */
@inline export function peerPathBinds(peer: u32, df: bool): bool {
  return df || peerOver6(peer);
}

/** The largest inner packet (IP header on) that may go to `peer` through a
 *  tunnel whose IPv4-outer overhead is `overhead`: the path MTU when the
 *  packet is bound by it (peerPathBinds), else the tunnel MTU, less the
 *  outer headers (20 bytes more over IPv6). The one size rule of every
 *  tunnel path (forward.ts). */
@inline export function peerInnerMtu(peer: u32, overhead: u32, df: bool): u32 {
  const limit = peerPathBinds(peer, df) ? peerPathMtu(peer) : cfgUnderlayMtu;
  return limit - overhead - (peerOver6(peer) ? OUTER6_EXTRA : 0);
}

/** Set peer `i`'s path MTU to `mtu` for `ttlMs` from now (0 forgets it). */
function setPathMtu(i: u32, mtu: u32, ttlMs: u32): void {
  const pp = peerPtr(i);
  store<u32>(pp, mtu, PEER_PMTU);
  store<u32>(pp, nowMs + ttlMs, PEER_PMTU_UNTIL);
}

/** The peer whose underlay address is `addr`, or -1. */
function peerByAddr(addr: u32): i32 {
  const s = htFind(peerAddrTable, <u64>addr);
  if (s < 0) return -1;
  const i = <u32>htValueAt(peerAddrTable, s);
  return peerValid(i) ? <i32>i : -1;
}

/**
 * Read `n` ICMP packets from the slots (whole IPv4 packets at [off, off+len),
 * as the raw ICMP socket delivers them) and lower the path MTU of every peer
 * a valid fragmentation-needed names. For each lowered peer a record
 * (underlay address, new path MTU, the ICMP's source) goes to `out`
 * (PMTU_RECORD bytes each, at most n). Returns the number of records. Slots
 * and their metadata are only read.
 */
export function pmtuIcmpBatch(n: u32, out: usize): u32 {
  if (n > batchMax) n = batchMax;
  let k: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaBase + (<usize>i << 5);
    const off = load<u32>(m, META_OFF);
    const len = load<u32>(m, META_LEN);
    if (off >= slotSize || len > slotSize - off) continue;
    const p = slotBase + <usize>i * slotSize + off;
    if (checkIpv4(p, len) != 0 || ipProto(p) != PROTO_ICMP) continue;
    const hl = ipHeaderLen(p);
    const icmpLen = <u32>ld16(p + 2) - hl;
    const c = p + hl;
    if (icmpLen < 8 || icmpType(c) != ICMP_DEST_UNREACH || icmpCode(c) != UNREACH_FRAG_NEEDED) continue;
    // From here on it is a fragmentation-needed: taken or counted as ignored.
    const q = c + 8; // the quoted header
    const qlen = icmpLen - 8;
    // Not about a packet from this node's underlay address: not ours to judge.
    if (ipDst(p) != cfgUnderlay || qlen < 20 || ipSrc(q) != cfgUnderlay) continue;
    const qhl = ipHeaderLen(q);
    if (ld8(q) >> 4 != 4 || qhl < 20 || qlen < qhl + 8 || !checksumOk(c, icmpLen)) {
      count(C_PMTU_IGNORED);
      continue;
    }
    const peer = peerByAddr(ipDst(q));
    const proto = ipProto(q);
    const l4 = q + qhl;
    // A peer reached over IPv6 gets no IPv4 packets from us: an IPv4 error
    // quoting one is not about its path (its path MTU comes from ICMPv6,
    // which the control plane hands to setPeerPmtu).
    const ours = peer >= 0 && !peerOver6(<u32>peer) && ((proto == PROTO_UDP && <u32>ld16(l4 + 2) == cfgPort) || (proto == PROTO_IPIP && ld8(l4) >> 4 == 4));
    if (!ours) {
      count(C_PMTU_IGNORED);
      continue;
    }
    let mtu = icmpMtu(c);
    // A quoted packet no larger than the MTU it reports cannot have been too big for it.
    if (mtu != 0 && <u32>ld16(q + 2) <= mtu) {
      count(C_PMTU_IGNORED);
      continue;
    }
    if (mtu < PMTU_MIN) mtu = PMTU_MIN; // RFC 1191's zero from old routers too
    const now = peerPathMtu(<u32>peer);
    if (mtu > now) {
      count(C_PMTU_IGNORED); // never raised by an ICMP (it ages out instead)
      continue;
    }
    // The same value again refreshes it, as the kernel does; a lower one is news.
    setPathMtu(<u32>peer, mtu, PMTU_EXPIRES_MS);
    if (mtu < now) {
      count(C_PMTU_LOWERED);
      const r = out + <usize>k * PMTU_RECORD;
      store<u32>(r, ipDst(q));
      store<u32>(r, mtu, 4);
      store<u32>(r, ipSrc(p), 8);
      k++;
    }
  }
  return k;
}

/** Set the path MTU towards the peer at underlay address `addr` (what
 *  another lane learnt) for `ttlMs`; `mtu` 0 forgets it. E_NOT_FOUND when
 *  no peer has that address, E_RANGE for an MTU outside [PMTU_MIN, 65535]. */
export function setPeerPmtu(addr: u32, mtu: u32, ttlMs: u32): i32 {
  const i = peerByAddr(addr);
  if (i < 0) return -3;
  if (mtu != 0 && (mtu < PMTU_MIN || mtu > 65535)) return -2;
  setPathMtu(<u32>i, mtu, ttlMs);
  return 0;
}

/** The path MTU in force towards peer `i` (the tunnel MTU when none was learnt); 0 for no such peer. */
export function peerPmtu(i: u32): u32 {
  return peerValid(i) ? peerPathMtu(i) : 0;
}
