// The NAT stage for IPv6 (NAT66): what nat.ts does for IPv4, on IPv6
// packets, in the same connection table.
//
// IPv6 flows live in conntrack.ts's table with CT_PROTO_V6 in their
// protocol byte and 32-bit handles for their addresses (nat/names6.ts), so
// state tracking, timeouts, early drop, expiry, port allocation and sharing
// between workers are the IPv4 ones. What differs is here: the packet's
// addresses are turned into handles (n6Find for a lookup: an address with
// no handle is in no flow; n6Get for a new flow, trimmed afterwards), and
// translation writes the handle's address back (nat/translate6.ts).
//
// Kubernetes dual-stack does NAT66 exactly where it does NAT44:
//   - pod -> ClusterIP (IPv6): DNAT to an IPv6 backend drawn at random; also
//     SNAT to the node's IPv6 service-SNAT address when the backend is on
//     this node (hairpin: its answer would otherwise go straight back);
//   - pod -> outside (no IPv6 route covers it): masquerade to the node's IPv6
//     underlay address with a random free port (ICMPv6 echo: identifier);
//   - answers, and ICMPv6 errors about translated flows (the quoted header
//     translated back, RFC 4443's quote of the offending packet).
// Extension headers are not walked: a packet whose next header is not TCP,
// UDP or ICMPv6 is not translated (routed as it is, or, addressed to the
// node or the SNAT address, a counted drop).
//   - NodePorts on the node's IPv6 underlay address: DNAT + SNAT, as for IPv4.
import { ld16 } from "../wire/bytes";
import { a6eq, a6IsMulticast, ip6Next, ip6PayloadLen, IP6_DST, IP6_HDR_LEN, IP6_SRC, PROTO_ICMPV6 } from "../wire/ipv6";
import { ICMP6_DEST_UNREACH, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, icmp6IsError, UNREACH6_PORT } from "../wire/icmp6";
import { PROTO_TCP, PROTO_UDP } from "../wire/ipv4";
import {
  C_NAT_DNAT_NEW, C_NAT_ICMP_TRANSLATED, C_NAT_REPLY_TRANSLATED, C_NAT_SNAT_NEW, C_NAT_TRANSLATED, E_RANGE, NH_LOCAL, OK,
  R_CT_FULL, R_NAT_NO_FLOW, R_NAT_NO_PORT, R_SVC_NO_BACKEND, R_TRUNCATED,
} from "../abi";
import { lpm6Lookup } from "../tables/lpm6";
import { LPM_MISS } from "../tables/lpm";
import { count } from "./state";
import { nhKind } from "./peers";
import { drop } from "./verdict";
import { replyIcmp6Error } from "./icmperr";
import { errorBack, natEnabled, natNow, natRandom, startFlow } from "./nat";
import {
  ctCount, ctCountHint, ctCreate, ctFlowPtr, ctLock, ctLookupLive, ctTouch, ctUnlock, ctUpdateTcp, natAllocPort,
  CT_DIR_ORIG, CT_DIR_REPLY, CT_NAT_BOTH, CT_NAT_DNAT, CT_NAT_SNAT, CT_PROTO_V6,
  F_NAT, F_ODPORT, F_ODST, F_OSPORT, F_OSRC, F_PROTO, F_RDPORT, F_RDST, F_RSPORT, F_RSRC,
} from "../nat/conntrack";
import { n6Addr, n6Enabled, n6Find, n6Get, n6Ref, n6Trim, n6Unref, N6_NONE } from "../nat/names6";
import { nat6RewriteDst, nat6RewriteSrc, nat6TranslateIcmpError } from "../nat/translate6";
import { NAT_OK, NAT_SIDE_DST, NAT_SIDE_SRC } from "../nat/translate";
import { backendAddr, backendPort, svcBackend, svcBackendCount, svcFlags, svcLookup, svcMaybe6, SVC_F_NODEPORT } from "../nat/service";
import { NAT_DONE, NAT_PASS, NAT_TRANSLATED } from "./nat";

const ICMP6_KEY: u32 = CT_PROTO_V6 | PROTO_ICMPV6;

let on6: bool = false;
let masq6: bool = false;
/** Handles (pinned by the control plane), N6_NONE when unset. */
let node6: u32 = N6_NONE;
let snat6: u32 = N6_NONE;

/** Set IPv6 NAT: `node` the handle of the node's IPv6 underlay address
 *  (masquerade source; N6_NONE: no masquerade), `snat` the handle of the
 *  IPv6 service-SNAT address (N6_NONE: hairpin flows are refused),
 *  `masquerade` 0/1. The IPv4 NAT must be on (natConfigure) for any of it
 *  to run, and the connection table must hold IPv6 names (ctSetup6).
 *  Handles come from ct6Pin. Returns OK or E_RANGE. */
export function natConfigure6(enabled: u32, masquerade: u32, node: u32, snat: u32): i32 {
  if (enabled > 1 || masquerade > 1) return E_RANGE;
  if (enabled == 1 && !n6Enabled()) return E_RANGE;
  if (masquerade == 1 && node == N6_NONE) return E_RANGE;
  on6 = enabled == 1;
  masq6 = masquerade == 1;
  node6 = node;
  snat6 = snat;
  return OK;
}

/** Is the IPv6 NAT stage on (natConfigure6 and the IPv4 switch)? */
@inline export function nat6Enabled(): bool { return on6 && natEnabled(); }

// --- pinned addresses (control plane) -------------------------------------------

const pinBuf = memory.data(16);

/** Pin an IPv6 address (hi/lo: its two big-endian halves) for the data
 *  path's configuration (node, SNAT, ClusterIP or backend address): its
 *  handle, held until ct6Unpin; N6_NONE when the names are full or absent. */
export function ct6Pin(hi: u64, lo: u64): u32 {
  store<u64>(pinBuf, bswap<u64>(hi));
  store<u64>(pinBuf, bswap<u64>(lo), 8);
  ctLock();
  const h = n6Get(pinBuf);
  if (h != N6_NONE) n6Ref(h);
  ctUnlock();
  return h;
}

/** Give back a ct6Pin reference. */
export function ct6Unpin(h: u32): void {
  ctLock();
  n6Unref(h);
  ctUnlock();
}

/** The address of handle `h` (16 bytes, valid while referenced): dumps. */
export function ct6Addr(h: u32): usize { return n6Addr(h); }

// --- the stage --------------------------------------------------------------------

/** The L4 protocol of an IPv6 packet we translate (TCP, UDP, ICMPv6 right
 *  after the fixed header), or 0. */
@inline function l4Of(p: usize): u32 {
  const nx = ip6Next(p);
  return nx == PROTO_TCP || nx == PROTO_UDP || nx == PROTO_ICMPV6 ? nx : 0;
}

@inline function isEcho6(type: u32): bool { return type == ICMP6_ECHO_REQUEST || type == ICMP6_ECHO_REPLY; }

/** Addressed to the node's IPv6 underlay address: steered into the device
 *  by tc (src/daemon/natsetup.ts), not forwarded by the kernel, so this
 *  node's hop is ours (forward.ts, "TTL"). */
export function isNode6(dst: usize): bool {
  return nat6Enabled() && node6 != N6_NONE && a6eq(dst, n6Addr(node6));
}

/** Addressed to the node's IPv6 address or the IPv6 service-SNAT address
 *  (pinned: their handles' addresses stay put). */
@inline function steered6(dst: usize): bool {
  return (node6 != N6_NONE && a6eq(dst, n6Addr(node6))) || (snat6 != N6_NONE && a6eq(dst, n6Addr(snat6)));
}

/** Pod side (IPv6 the node routed into our device), `nh` the route of its
 *  destination. Returns NAT_* bits, as natPodSide. */
export function natPodSide6(m: usize, off: u32, p: usize, len: u32, nh: u32): u32 {
  if (!nat6Enabled()) return NAT_PASS;
  // Pod to pod (the bulk) has nothing to do here unless it is addressed to
  // an IPv6 service frontend (a per-instance filter says "surely not"
  // without the lock) or to the node's or the SNAT address; every packet of
  // a translated flow entering on this side goes to one of those or to an
  // unrouted address.
  if (nh != LPM_MISS && !svcMaybe6(p + IP6_DST) && !steered6(p + IP6_DST)) return NAT_PASS;
  ctLock();
  const r = podSide6(m, off, p, len, nh);
  ctUnlock();
  return r;
}

function podSide6(m: usize, off: u32, p: usize, len: u32, nh: u32): u32 {
  const steered = steered6(p + IP6_DST);
  const r = track6(m, p, len);
  if (r != NAT_PASS) return r;
  const proto = l4Of(p);
  const l4 = p + IP6_HDR_LEN;
  const l4len = ip6PayloadLen(p);
  if (proto == PROTO_TCP || proto == PROTO_UDP) {
    if (l4len < (proto == PROTO_TCP ? 20 : 8)) {
      drop(m, R_TRUNCATED);
      return NAT_DONE;
    }
    const sport = ld16(l4);
    const dport = ld16(l4 + 2);
    const flags: u32 = proto == PROTO_TCP ? <u32>load<u8>(l4, 13) : 0;
    const hd = n6Find(p + IP6_DST);
    const svc: usize = hd == N6_NONE ? 0 : svcLookup(proto | CT_PROTO_V6, hd, dport);
    if (svc != 0) return newServiceFlow6(m, off, p, len, svc, proto, hd, sport, dport, flags);
    if (steered) {
      drop(m, R_NAT_NO_FLOW);
      return NAT_DONE;
    }
    if (masq6 && isOutbound6(p, nh)) return newMasqFlow6(m, p, len, proto, sport, dport, flags);
    return NAT_PASS;
  }
  if (steered) {
    drop(m, R_NAT_NO_FLOW);
    return NAT_DONE;
  }
  if (proto == PROTO_ICMPV6 && masq6 && l4len >= 8 && <u32>load<u8>(l4) == ICMP6_ECHO_REQUEST && isOutbound6(p, nh)) {
    return newMasqFlow6(m, p, len, proto, ld16(l4 + 4), 0, 0);
  }
  return NAT_PASS;
}

/** Underlay side, after decapsulation: answers of flows this node
 *  translated, and ICMPv6 errors about them. */
export function natUnderlaySide6(m: usize, p: usize, len: u32): u32 {
  if (!nat6Enabled() || ctCountHint() == 0) return NAT_PASS;
  ctLock();
  const r = track6(m, p, len);
  ctUnlock();
  return r;
}

/** From one of this node's pods to a destination no route covers. */
@inline function isOutbound6(p: usize, dstNh: u32): bool {
  if (dstNh != LPM_MISS) return false;
  const nh = lpm6Lookup(p + IP6_SRC);
  return nh != LPM_MISS && nhKind(nh) == NH_LOCAL;
}

/** ICMPv6 errors and packets of tracked flows. */
function track6(m: usize, p: usize, len: u32): u32 {
  if (ctCount() == 0) return NAT_PASS;
  const proto = l4Of(p);
  if (proto == 0) return NAT_PASS;
  const l4 = p + IP6_HDR_LEN;
  const l4len = ip6PayloadLen(p);
  let sport: u32 = 0;
  let dport: u32 = 0;
  let flags: u32 = 0;
  if (proto == PROTO_TCP || proto == PROTO_UDP) {
    if (l4len < (proto == PROTO_TCP ? 20 : 8)) {
      drop(m, R_TRUNCATED);
      return NAT_DONE;
    }
    sport = ld16(l4);
    dport = ld16(l4 + 2);
    if (proto == PROTO_TCP) flags = <u32>load<u8>(l4, 13);
  } else {
    if (l4len < 8) return NAT_PASS;
    const type = <u32>load<u8>(l4);
    if (icmp6IsError(type)) return icmp6ErrorBack(p, len) ? NAT_TRANSLATED : NAT_PASS;
    if (!isEcho6(type)) return NAT_PASS;
    sport = ld16(l4 + 4);
  }
  const hs = n6Find(p + IP6_SRC);
  if (hs == N6_NONE) return NAT_PASS;
  const hd = n6Find(p + IP6_DST);
  if (hd == N6_NONE) return NAT_PASS;
  const ref = ctLookupLive(proto | CT_PROTO_V6, hs, hd, sport, dport, natNow());
  if (ref < 0) return NAT_PASS;
  const f = <u32>ref >> 1;
  const dir = <u32>ref & 1;
  if (proto == PROTO_TCP) ctUpdateTcp(f, dir, flags, natNow());
  else ctTouch(f, dir, natNow());
  if (natApplyFlow6(p, len, ref) != NAT_OK) {
    drop(m, R_TRUNCATED);
    return NAT_DONE;
  }
  count(C_NAT_TRANSLATED);
  if (dir == CT_DIR_REPLY) count(C_NAT_REPLY_TRANSLATED);
  return NAT_TRANSLATED;
}

/** natApplyFlow for an IPv6 flow (nat/translate.ts says what each kind
 *  rewrites); the addresses are the handles' (names6.ts). */
export function natApplyFlow6(p: usize, len: u32, ref: i32): i32 {
  const r = ctFlowPtr(<u32>ref >> 1);
  if (r == 0) return NAT_OK;
  const o = (<u32>ref & 1) == CT_DIR_ORIG;
  const nat = <u32>load<u8>(r, F_NAT);
  const icmp = <u32>load<u8>(r, F_PROTO) == ICMP6_KEY;
  if (nat == CT_NAT_SNAT) {
    if (o) return nat6RewriteSrc(p, len, n6Addr(load<u32>(r, F_RDST)), <u32>load<u16>(r + (icmp ? F_RSPORT : F_RDPORT)));
    return nat6RewriteDst(p, len, n6Addr(load<u32>(r, F_OSRC)), <u32>load<u16>(r, F_OSPORT));
  }
  if (nat == CT_NAT_DNAT) {
    if (o) return nat6RewriteDst(p, len, n6Addr(load<u32>(r, F_RSRC)), <u32>load<u16>(r, F_RSPORT));
    return nat6RewriteSrc(p, len, n6Addr(load<u32>(r, F_ODST)), <u32>load<u16>(r + (icmp ? F_OSPORT : F_ODPORT)));
  }
  if (nat == CT_NAT_BOTH) {
    // The packet becomes the other tuple reversed; both calls pass the same
    // checks on the same packet, so the second cannot fail after the first.
    const st = nat6RewriteSrc(p, len, n6Addr(load<u32>(r + (o ? F_RDST : F_ODST))),
      <u32>load<u16>(r + (o ? (icmp ? F_RSPORT : F_RDPORT) : (icmp ? F_OSPORT : F_ODPORT))));
    if (st != NAT_OK) return st;
    return nat6RewriteDst(p, len, n6Addr(load<u32>(r + (o ? F_RSRC : F_OSRC))), <u32>load<u16>(r + (o ? F_RSPORT : F_OSPORT)));
  }
  return NAT_OK;
}

/** nat.ts's startFlow for an IPv6 flow, and the handles the caller got
 *  with n6Get trimmed whatever happened (a refused flow leaves no name). */
function startFlow6(m: usize, p: usize, len: u32, f: i32, proto: u32, flags: u32, counter: u32, hs: u32, hd: u32): u32 {
  n6Trim(hs);
  n6Trim(hd);
  return startFlow(m, p, len, f, proto, flags, counter, true);
}

function newServiceFlow6(m: usize, off: u32, p: usize, len: u32, svc: usize, proto: u32, hd: u32, sport: u32, dport: u32, flags: u32): u32 {
  const n = svcBackendCount(svc);
  if (n == 0) {
    // kube-proxy REJECTs: port unreachable.
    replyIcmp6Error(m, off, p, len, ICMP6_DEST_UNREACH, UNREACH6_PORT, 0, R_SVC_NO_BACKEND);
    return NAT_DONE;
  }
  const hs = n6Get(p + IP6_SRC);
  if (hs == N6_NONE) {
    drop(m, R_CT_FULL);
    return NAT_DONE;
  }
  const b = svcBackend(svc, n == 1 ? 0 : natRandom() % n);
  const bAddr = backendAddr(b);
  const bPort = backendPort(b);
  const key = proto | CT_PROTO_V6;
  // A backend on this node would answer the client directly, and a
  // NodePort client's answers must come back through this node: those
  // flows get the IPv6 service-SNAT source too (tunnelled backends' answers
  // to pods come back through us by themselves).
  const bnh = lpm6Lookup(n6Addr(bAddr));
  let f: i32;
  if ((svcFlags(svc) & SVC_F_NODEPORT) != 0 || (bnh != LPM_MISS && nhKind(bnh) == NH_LOCAL)) {
    if (snat6 == N6_NONE) {
      n6Trim(hs);
      drop(m, R_NAT_NO_PORT);
      return NAT_DONE;
    }
    const port = natAllocPort(key, snat6, bAddr, bPort, natRandom());
    f = port == 0 ? E_RANGE : ctCreate(key, hs, hd, sport, dport, bAddr, snat6, bPort, port, CT_NAT_BOTH, natNow());
  } else {
    f = ctCreate(key, hs, hd, sport, dport, bAddr, hs, bPort, sport, CT_NAT_DNAT, natNow());
  }
  return startFlow6(m, p, len, f, proto, flags, C_NAT_DNAT_NEW, hs, hd);
}

function newMasqFlow6(m: usize, p: usize, len: u32, proto: u32, sport: u32, dport: u32, flags: u32): u32 {
  if (a6IsMulticast(p + IP6_DST)) return NAT_PASS;
  const hs = n6Get(p + IP6_SRC);
  const hd = n6Get(p + IP6_DST);
  if (hs == N6_NONE || hd == N6_NONE) {
    n6Trim(hs);
    n6Trim(hd);
    drop(m, R_CT_FULL);
    return NAT_DONE;
  }
  const key = proto | CT_PROTO_V6;
  const port = natAllocPort(key, node6, hd, dport, natRandom());
  let f: i32 = E_RANGE;
  if (port != 0) {
    if (proto == PROTO_ICMPV6) f = ctCreate(key, hs, hd, sport, 0, hd, node6, port, 0, CT_NAT_SNAT, natNow());
    else f = ctCreate(key, hs, hd, sport, dport, hd, node6, dport, port, CT_NAT_SNAT, natNow());
  }
  return startFlow6(m, p, len, f, proto, flags, C_NAT_SNAT_NEW, hs, hd);
}

/** Translate an ICMPv6 error (checked IPv6 at `p`, `len` bytes) about a
 *  tracked flow back, as translateIcmpError does for IPv4: false when it is
 *  about no tracked flow or cannot be translated (left unchanged). */
export function translateIcmp6Error(p: usize, len: u32): bool {
  if (!nat6Enabled()) return false;
  ctLock();
  const r = icmp6ErrorBack(p, len);
  ctUnlock();
  return r;
}

/** translateIcmp6Error with the table's lock held. */
function icmp6ErrorBack(p: usize, len: u32): bool {
  const avail = IP6_HDR_LEN + ip6PayloadLen(p);
  if (avail > len || avail < IP6_HDR_LEN + 8 + IP6_HDR_LEN + 8) return false;
  const e = p + IP6_HDR_LEN + 8;
  if (<u32>load<u8>(e) >> 4 != 6) return false;
  const eproto = l4Of(e);
  const el4 = e + IP6_HDR_LEN;
  let esport: u32 = 0;
  let edport: u32 = 0;
  const icmp = eproto == PROTO_ICMPV6;
  if (eproto == PROTO_TCP || eproto == PROTO_UDP) {
    esport = ld16(el4);
    edport = ld16(el4 + 2);
  } else if (icmp && isEcho6(<u32>load<u8>(el4))) {
    esport = ld16(el4 + 4);
  } else {
    return false;
  }
  const hs = n6Find(e + IP6_SRC);
  if (hs == N6_NONE) return false;
  const hd = n6Find(e + IP6_DST);
  if (hd == N6_NONE) return false;
  const ref = icmp
    ? ctLookupLive(eproto | CT_PROTO_V6, hd, hs, esport, 0, natNow())
    : ctLookupLive(eproto | CT_PROTO_V6, hd, hs, edport, esport, natNow());
  return errorBack(p, len, ref, hs, hd, esport, edport, icmp, true);
}
