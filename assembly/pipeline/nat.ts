// The NAT stage of the data path: where a packet meets connection tracking
// before its route is looked up (pod side) or before it is delivered (after
// decapsulation). What it does, in the order it is tried:
//
//   1. ICMP error: the embedded header is matched against the flows (the
//      quoted packet went out translated, so its reversed tuple is a tracked
//      key) and the error is translated back, embedded header included.
//   2. A tracked flow: follow TCP state / refresh the timer, translate.
//   3. Pod side only, a new flow:
//      - to a service frontend (ClusterIP:port, NodePort on the node's
//        address): DNAT to a backend drawn at random per flow; also SNAT to
//        the node's service-SNAT address when the backend is on this node
//        (hairpin) or reached by plain routing (its answers would bypass
//        us), or the frontend is a NodePort (the answer must come back
//        through this node);
//      - from a local pod to a destination no route covers (outside the
//        cluster): masquerade to the node's address with a random free port
//        (like --random-fully), so pod-to-pod traffic is never translated;
//      - addressed to the node or the SNAT address but matching no flow:
//        a counted drop (only steered NAT traffic gets here).
//
// Tables: ../nat/conntrack.ts (flows), ../nat/service.ts (frontends and
// backends); rewrites: ../nat/translate.ts. This file composes them into a
// stage of the pipeline (forward.ts and decap.ts call it).
// Everything is bounded work per packet; nothing allocates or throws.
import { ld16, ld32 } from "../wire/bytes";
import {
  ipDst, ipHeaderLen, ipIsLaterFragment, ipProto, ipSrc, IP_PROTO, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
} from "../wire/ipv4";
import { ICMP_DEST_UNREACH, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_ID, icmpIsError } from "../wire/icmp";
import {
  C_NAT_DNAT_NEW, C_NAT_ICMP_TRANSLATED, C_NAT_REPLY_TRANSLATED, C_NAT_SNAT_NEW, C_NAT_TRANSLATED, E_FULL, E_RANGE, NH_DIRECT, NH_LOCAL, OK,
  R_CT_FULL, R_CT_INVALID, R_NAT_FRAGMENT, R_NAT_NO_FLOW, R_NAT_NO_PORT, R_SVC_NO_BACKEND, R_TRUNCATED,
} from "../abi";
import { lpmLookup, LPM_MISS } from "../tables/lpm";
import { count } from "./state";
import { nhKind } from "./peers";
import { drop } from "./verdict";
import { replyIcmpError } from "./icmperr";
import {
  ctCount, ctCountHint, ctCreate, ctDelete, ctLock, ctUnlock, ctFlowPtr, ctLookupLive, ctTouch, ctUpdateTcp, natAllocPort, natSetPortRange,
  CT_DIR_ORIG, CT_DIR_REPLY, CT_NAT_BOTH, CT_NAT_DNAT, CT_NAT_SNAT, CT_TCP_INVALID, F_ODPORT, F_ODST, F_OSPORT, F_OSRC,
  F_RDPORT, F_RDST, F_RSPORT, F_RSRC,
} from "../nat/conntrack";
import { isEcho, natApplyFlow, natTranslateIcmpError, NAT_OK, NAT_SIDE_DST, NAT_SIDE_SRC } from "../nat/translate";
import { backendAddr, backendPort, svcBackend, svcBackendCount, svcFlags, svcLookup, SVC_F_NODEPORT } from "../nat/service";
import { natApplyFlow6 } from "./nat6";
import { nat6TranslateIcmpError } from "../nat/translate6";
import { n6Addr } from "../nat/names6";

/** natPodSide/natUnderlaySide results (bits). */
export const NAT_PASS: u32 = 0; // untouched: route as usual
export const NAT_DONE: u32 = 1; // the metadata holds the verdict (a drop or a reply)
export const NAT_TRANSLATED: u32 = 2; // rewritten: route by the new header

let natOn: bool = false;
let masq: bool = false;
let nodeIp: u32 = 0;
let snatAddr: u32 = 0;
let nowSec: u32 = 0;
let rng: u32 = 0x9e3779b9;

@inline export function natEnabled(): bool { return natOn; }
@inline export function natNodeIp(): u32 { return nodeIp; }

/** Turn the NAT stage on or off. `nodeIp`: the address masqueraded flows
 *  leave with and NodePorts listen on (the underlay address); `snat`: the
 *  service-SNAT address hairpin and NodePort flows are given (routed into
 *  our device by the node, assigned to no interface; 0 = none, such flows
 *  are refused); ports for both from [portMin, portMax]; `seed` starts the
 *  random backend and port choices. Returns OK or E_RANGE. */
export function natConfigure(enabled: u32, masquerade: u32, node: u32, snat: u32, portMin: u32, portMax: u32, seed: u32): i32 {
  if (enabled > 1 || masquerade > 1) return E_RANGE;
  if (natSetPortRange(portMin, portMax) != OK) return E_RANGE;
  natOn = enabled == 1;
  masq = masquerade == 1;
  nodeIp = node;
  snatAddr = snat;
  rng = seed != 0 ? seed : 0x9e3779b9;
  return OK;
}

/** The data path's clock for conntrack, in seconds (the worker sets it per batch). */
export function natSetNow(sec: u32): void { nowSec = sec; }
export function natNow(): u32 { return nowSec; }

/** The stage's random draw (also nat6.ts's). */
export function natRandom(): u32 { return nextRandom(); }

@inline function nextRandom(): u32 {
  // xorshift32: per-flow choices, not security.
  let x = rng;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  rng = x;
  return x;
}

/** Pod side (packets the node routed into our device, including the NAT
 *  traffic steered to it): the checked IPv4 packet at `p` of total length
 *  `len`, slot offset `off`, metadata `m`, `nh` the route of its
 *  destination (lpmLookup, looked up once by the caller). Returns NAT_* bits. */
export function natPodSide(m: usize, slot: usize, off: u32, p: usize, len: u32, nh: u32): u32 {
  if (!natOn) return NAT_PASS;
  const dst = ipDst(p);
  const steered = dst == nodeIp || (dst == snatAddr && snatAddr != 0);
  // Traffic to a routed destination (pod to pod, the bulk) has nothing to
  // do here unless it is addressed to a service frontend: every packet of
  // a translated flow that enters on this side goes to an unrouted address
  // (outside, a ClusterIP), the node or the SNAT address. Skipping the
  // conntrack probe keeps NAT's cost off the pod-to-pod path.
  if (!steered && nh != LPM_MISS && !isFrontend(p, len, dst)) return NAT_PASS;
  // The connection table may be shared with the other workers: one packet's
  // lookup, create and rewrite at a time (nat/conntrack.ts).
  ctLock();
  const r = podSideTracked(m, slot, off, p, len, nh, dst, steered);
  ctUnlock();
  return r;
}

/** natPodSide past its fast path, with the table's lock held. */
function podSideTracked(m: usize, slot: usize, off: u32, p: usize, len: u32, nh: u32, dst: u32, steered: bool): u32 {
  const r = trackExisting(m, p, len);
  if (r != NAT_PASS) return r;
  const proto = ipProto(p);
  if (ipIsLaterFragment(p)) {
    if (steered) {
      drop(m, R_NAT_FRAGMENT);
      return NAT_DONE;
    }
    return NAT_PASS;
  }
  const hl = ipHeaderLen(p);
  const l4 = p + hl;
  const l4len = len - hl;
  const src = ipSrc(p);
  if (proto == PROTO_TCP || proto == PROTO_UDP) {
    // trackExisting checks the L4 header length only while flows exist;
    // with an empty table the ports and flags below would be read past the
    // packet (a bug the fuzzer found).
    if (l4len < (proto == PROTO_TCP ? 20 : 8)) {
      drop(m, R_TRUNCATED);
      return NAT_DONE;
    }
    const sport = ld16(l4);
    const dport = ld16(l4 + 2);
    const flags: u32 = proto == PROTO_TCP ? <u32>load<u8>(l4, 13) : 0;
    const svc = svcLookup(proto, dst, dport);
    if (svc != 0) return newServiceFlow(m, slot, off, p, len, svc, proto, src, dst, sport, dport, flags);
    if (steered) {
      drop(m, R_NAT_NO_FLOW);
      return NAT_DONE;
    }
    if (masq && isOutbound(src, nh)) return newMasqFlow(m, p, len, proto, src, dst, sport, dport, flags);
    return NAT_PASS;
  }
  if (steered) {
    drop(m, R_NAT_NO_FLOW);
    return NAT_DONE;
  }
  if (proto == PROTO_ICMP && masq && l4len >= 8 && <u32>load<u8>(l4) == ICMP_ECHO_REQUEST && isOutbound(src, nh)) {
    return newMasqFlow(m, p, len, proto, src, dst, ld16(l4 + ICMP_ID), 0, 0);
  }
  return NAT_PASS;
}

/** Underlay side, after decapsulation: only flows this node created (the
 *  answers of DNAT'd flows whose backends are elsewhere, and of hairpin or
 *  NodePort flows), and ICMP errors about them. Returns NAT_* bits. */
export function natUnderlaySide(m: usize, p: usize, len: u32): u32 {
  if (!natOn || ctCountHint() == 0) return NAT_PASS;
  ctLock();
  const r = trackExisting(m, p, len);
  ctUnlock();
  return r;
}

/** A TCP/UDP packet (not a later fragment, ports present) to a service frontend. */
@inline function isFrontend(p: usize, len: u32, dst: u32): bool {
  const proto = ipProto(p);
  if (proto != PROTO_TCP && proto != PROTO_UDP) return false;
  if (ipIsLaterFragment(p)) return false;
  const hl = ipHeaderLen(p);
  if (len < hl + 4) return false;
  return svcLookup(proto, dst, ld16(p + hl + 2)) != 0;
}

/** A source that is one of this node's pods, and a destination no route
 *  covers (`dstNh`, its lookup, is a miss): traffic leaving the cluster. */
@inline function isOutbound(src: u32, dstNh: u32): bool {
  if (dstNh != LPM_MISS) return false;
  const nh = lpmLookup(src);
  return nh != LPM_MISS && nhKind(nh) == NH_LOCAL;
}

/** ICMP errors and packets of tracked flows. */
function trackExisting(m: usize, p: usize, len: u32): u32 {
  if (ctCount() == 0) return NAT_PASS;
  if (ipIsLaterFragment(p)) return NAT_PASS;
  const proto = ipProto(p);
  const hl = ipHeaderLen(p);
  const l4 = p + hl;
  const l4len = len - hl;
  let sport: u32 = 0;
  let dport: u32 = 0;
  let flags: u32 = 0;
  if (proto == PROTO_TCP) {
    if (l4len < 20) {
      drop(m, R_TRUNCATED);
      return NAT_DONE;
    }
    sport = ld16(l4);
    dport = ld16(l4 + 2);
    flags = <u32>load<u8>(l4, 13);
  } else if (proto == PROTO_UDP) {
    if (l4len < 8) {
      drop(m, R_TRUNCATED);
      return NAT_DONE;
    }
    sport = ld16(l4);
    dport = ld16(l4 + 2);
  } else if (proto == PROTO_ICMP) {
    if (l4len < 8) return NAT_PASS;
    const type = <u32>load<u8>(l4);
    if (icmpIsError(type)) return icmpErrorBack(p, len) ? NAT_TRANSLATED : NAT_PASS;
    if (!isEcho(type)) return NAT_PASS;
    sport = ld16(l4 + ICMP_ID);
  } else {
    return NAT_PASS;
  }
  const ref = ctLookupLive(proto, ipSrc(p), ipDst(p), sport, dport, nowSec);
  if (ref < 0) return NAT_PASS;
  const f = <u32>ref >> 1;
  const dir = <u32>ref & 1;
  if (proto == PROTO_TCP) ctUpdateTcp(f, dir, flags, nowSec); // invalid ones are counted there, and still pass
  else ctTouch(f, dir, nowSec);
  if (natApplyFlow(p, len, ref) != NAT_OK) {
    drop(m, R_TRUNCATED);
    return NAT_DONE;
  }
  count(C_NAT_TRANSLATED);
  if (dir == CT_DIR_REPLY) count(C_NAT_REPLY_TRANSLATED);
  return NAT_TRANSLATED;
}

/** Common end of a new flow: track it, follow its first TCP packet,
 *  translate. `f` is ctCreate's result; `v6`: an IPv6 flow (nat6.ts). */
export function startFlow(m: usize, p: usize, len: u32, f: i32, proto: u32, flags: u32, counter: u32, v6: bool = false): u32 {
  if (f < 0) {
    drop(m, f == E_FULL ? R_CT_FULL : R_NAT_NO_PORT);
    return NAT_DONE;
  }
  if (proto == PROTO_TCP) {
    const st = ctUpdateTcp(<u32>f, CT_DIR_ORIG, flags, nowSec);
    if (st >= 0 && (<u32>st >> 8) == CT_TCP_INVALID) {
      // A SYN-ACK, FIN or RST cannot open a flow.
      ctDelete(<u32>f);
      drop(m, R_CT_INVALID);
      return NAT_DONE;
    }
  }
  const ref = <i32>(<u32>f << 1);
  if ((v6 ? natApplyFlow6(p, len, ref) : natApplyFlow(p, len, ref)) != NAT_OK) {
    ctDelete(<u32>f);
    drop(m, R_TRUNCATED);
    return NAT_DONE;
  }
  count(counter);
  count(C_NAT_TRANSLATED);
  return NAT_TRANSLATED;
}

function newServiceFlow(m: usize, slot: usize, off: u32, p: usize, len: u32, svc: usize, proto: u32,
  src: u32, dst: u32, sport: u32, dport: u32, flags: u32): u32 {
  const n = svcBackendCount(svc);
  if (n == 0) {
    // kube-proxy REJECTs: ICMP port unreachable (3/3) from the frontend.
    replyIcmpError(m, slot, off, p, len, ICMP_DEST_UNREACH, 3, 0, R_SVC_NO_BACKEND);
    return NAT_DONE;
  }
  const b = svcBackend(svc, n == 1 ? 0 : nextRandom() % n);
  const bAddr = backendAddr(b);
  const bPort = backendPort(b);
  // Answers must come back through this node's data path. They do by
  // themselves from a tunnelled backend (decapsulated here); not from a
  // NodePort client outside, a backend on this node (the kernel would
  // hand its answer straight to the client) or one reached by plain
  // routing (its answer arrives at the underlay device and the kernel
  // forwards it): those flows get the service-SNAT source as well.
  let snat = (svcFlags(svc) & SVC_F_NODEPORT) != 0;
  if (!snat) {
    const nh = lpmLookup(bAddr);
    snat = nh != LPM_MISS && (nhKind(nh) == NH_LOCAL || nhKind(nh) == NH_DIRECT);
  }
  let f: i32;
  if (snat) {
    if (snatAddr == 0) {
      drop(m, R_NAT_NO_PORT);
      return NAT_DONE;
    }
    const port = natAllocPort(proto, snatAddr, bAddr, bPort, nextRandom());
    if (port == 0) {
      drop(m, R_NAT_NO_PORT);
      return NAT_DONE;
    }
    f = ctCreate(proto, src, dst, sport, dport, bAddr, snatAddr, bPort, port, CT_NAT_BOTH, nowSec);
  } else {
    f = ctCreate(proto, src, dst, sport, dport, bAddr, src, bPort, sport, CT_NAT_DNAT, nowSec);
  }
  return startFlow(m, p, len, f, proto, flags, C_NAT_DNAT_NEW);
}

function newMasqFlow(m: usize, p: usize, len: u32, proto: u32, src: u32, dst: u32, sport: u32, dport: u32, flags: u32): u32 {
  const port = natAllocPort(proto, nodeIp, dst, dport, nextRandom());
  if (port == 0) {
    drop(m, R_NAT_NO_PORT);
    return NAT_DONE;
  }
  let f: i32;
  if (proto == PROTO_ICMP) f = ctCreate(proto, src, dst, sport, 0, dst, nodeIp, port, 0, CT_NAT_SNAT, nowSec);
  else f = ctCreate(proto, src, dst, sport, dport, dst, nodeIp, dport, port, CT_NAT_SNAT, nowSec);
  return startFlow(m, p, len, f, proto, flags, C_NAT_SNAT_NEW);
}

/** Translate an ICMP error (checked IPv4 at `p`, total length `len`) about a
 *  tracked flow back: the quoted packet went out translated in one
 *  direction, so its reversed tuple is a key of the flow and the error
 *  travels the other way. The quoted header becomes exactly the tuple the
 *  other end knows (addresses, ports or echo identifier, checksums), and the
 *  outer addresses follow the same way (the error goes to the quoted
 *  packet's restored source; a translated quoted destination also replaces
 *  the outer source, as nf_nat does). Returns false when the error is about
 *  no tracked flow or cannot be translated (it is left unchanged). */
export function translateIcmpError(p: usize, len: u32): bool {
  ctLock();
  const r = icmpErrorBack(p, len);
  ctUnlock();
  return r;
}

/** translateIcmpError with the table's lock held. */
function icmpErrorBack(p: usize, len: u32): bool {
  const hl = ipHeaderLen(p);
  if (len < hl + 8 + 20 + 8) return false;
  const e = p + hl + 8;
  const evi = <u32>load<u8>(e);
  if (evi >> 4 != 4) return false;
  const ehl = (evi & 0xf) << 2;
  if (ehl < 20 || len < hl + 8 + ehl + 8) return false;
  if (ipIsLaterFragment(e)) return false;
  const eproto = <u32>load<u8>(e + IP_PROTO);
  const esrc = ld32(e + 12);
  const edst = ld32(e + 16);
  const el4 = e + ehl;
  let esport: u32 = 0;
  let edport: u32 = 0;
  let ref: i32;
  const icmp = eproto == PROTO_ICMP;
  if (eproto == PROTO_TCP || eproto == PROTO_UDP) {
    esport = ld16(el4);
    edport = ld16(el4 + 2);
    ref = ctLookupLive(eproto, edst, esrc, edport, esport, nowSec);
  } else if (icmp && isEcho(<u32>load<u8>(el4))) {
    esport = ld16(el4 + ICMP_ID);
    ref = ctLookupLive(eproto, edst, esrc, esport, 0, nowSec);
  } else {
    return false;
  }
  return errorBack(p, len, ref, esrc, edst, esport, edport, icmp, false);
}

/** The end of translating an ICMP or ICMPv6 (`v6`) error back, both
 *  families: `ref` is the flow the quote's reversed tuple found (-1:
 *  none), the e* values the quote's (IPv6: address handles). */
export function errorBack(p: usize, len: u32, ref: i32, esrc: u32, edst: u32, esport: u32, edport: u32, icmp: bool, v6: bool): bool {
  if (ref < 0) return false;
  const r = ctFlowPtr(<u32>ref >> 1);
  // The quoted packet went the other way than the error: restore it to that
  // direction's tuple as tracked.
  const orig = (<u32>ref & 1) == CT_DIR_REPLY;
  const tSrc = load<u32>(r + (orig ? F_OSRC : F_RSRC));
  const tDst = load<u32>(r + (orig ? F_ODST : F_RDST));
  const tSport = <u32>load<u16>(r + (orig ? F_OSPORT : F_RSPORT));
  const tDport = <u32>load<u16>(r + (orig ? F_ODPORT : F_RDPORT));
  const srcDiff = tSrc != esrc || tSport != esport;
  const dstDiff = tDst != edst || (!icmp && tDport != edport);
  if (!srcDiff && !dstDiff) return false;
  if (srcDiff && rewriteError(p, len, NAT_SIDE_SRC, tSrc, tSport, v6) != NAT_OK) return false;
  if (dstDiff && rewriteError(p, len, NAT_SIDE_DST, tDst, icmp ? tSport : tDport, v6) != NAT_OK) return false;
  count(C_NAT_ICMP_TRANSLATED);
  return true;
}

@inline function rewriteError(p: usize, len: u32, side: u32, addr: u32, port: u32, v6: bool): i32 {
  return v6 ? nat6TranslateIcmpError(p, len, side, n6Addr(addr), port, n6Addr(addr)) : natTranslateIcmpError(p, len, side, addr, port, addr);
}
