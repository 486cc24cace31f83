// NAT rewrites, in place, on an IPv4 packet at `p` of `len` bytes, with
// incremental checksum updates (RFC 1624) instead of recomputation: a
// rewrite costs the same for a 64-byte and a 9000-byte packet.
//
// What each rewrite touches:
//   address   IPv4 header checksum; TCP/UDP checksum (pseudo header)
//   port      TCP/UDP checksum
//   echo id   ICMP checksum (no pseudo header in ICMPv4)
// UDP: a zero checksum means "none" (RFC 768) and stays zero; an updated
// checksum that comes out 0 is sent as 0xFFFF, its one's-complement twin.
//
// Every function first checks the lengths it relies on and returns a
// NAT_* status; on any status but NAT_OK the packet is unchanged. Later
// fragments (no L4 header) are refused: the pipeline drops them with a
// reason, as userspace NAT does not reassemble. A first fragment is fine:
// its L4 checksum covers the whole datagram and an incremental update stays
// right for it.
import { ld16, ld32, st16, st32 } from "../wire/bytes";
import { csumUpdate16, csumUpdate32 } from "../wire/checksum";
import {
  checkIpv4, ipHeaderLen, ipIsLaterFragment, ipProto, ipTotalLen, IP_CSUM, IP_DST, IP_HDR_LEN, IP_PROTO, IP_SRC,
  PROTO_ICMP, PROTO_TCP, PROTO_UDP,
} from "../wire/ipv4";
import { TCP_CSUM, TCP_HDR_LEN } from "../wire/tcp";
import { UDP_CSUM, UDP_HDR_LEN } from "../wire/udp";
import { ICMP_CSUM, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_HDR_LEN, ICMP_ID, icmpIsError } from "../wire/icmp";
import { R_NONE, R_TRUNCATED } from "../abi";
import {
  ctFlowPtr, ctLookupLive, CT_DIR_ORIG, CT_NAT_BOTH, CT_NAT_DNAT, CT_NAT_SNAT, F_NAT, F_ODPORT, F_ODST, F_OSPORT, F_OSRC, F_RDST,
  F_RDPORT, F_RSPORT, F_RSRC, F_PROTO,
} from "./conntrack";

export const NAT_OK: i32 = 0;
export const NAT_E_TRUNCATED: i32 = 1; // shorter than a header the rewrite needs
export const NAT_E_BAD_HEADER: i32 = 2; // not a well-formed IPv4 packet (outer or embedded)
export const NAT_E_FRAGMENT: i32 = 3; // a later fragment: no L4 header to translate
export const NAT_E_UNSUPPORTED: i32 = 4; // not what the call translates (echo id on a non-echo, error on a non-error)

export const NAT_SIDE_SRC: u32 = 0;
export const NAT_SIDE_DST: u32 = 1;

@inline export function isEcho(type: u32): bool {
  return type == ICMP_ECHO_REQUEST || type == ICMP_ECHO_REPLY;
}

/** Update a UDP checksum field at `c` for a change of 32-bit `oldA`->`newA`
 *  and 16-bit `oldP`->`newP` (either may be a no-op), keeping zero as zero. */
@inline function udpCsumFix(c: usize, oldA: u32, newA: u32, oldP: u32, newP: u32): void {
  const old = ld16(c);
  if (old == 0) return;
  let s = csumUpdate16(csumUpdate32(old, oldA, newA), oldP, newP);
  if (s == 0) s = 0xffff;
  st16(c, s);
}

/** An ICMP checksum `c` just updated incrementally, for the message at `l4`
 *  of `n` bytes whose other bytes are already written. 0 is right unless
 *  the whole message is zero (an echo reply with identifier, sequence and
 *  payload 0): its sum is +0 and its checksum 0xFFFF, but the incremental
 *  sum comes out -0, i.e. checksum 0, which receivers reject (a bug the
 *  fuzzer found). Only a 0 result is looked at, so the scan is rare. */
function icmpCsumFix(l4: usize, n: u32, c: u32): u32 {
  if (c != 0) return c;
  for (let i: u32 = 0; i < n; i++) {
    if (i != <u32>ICMP_CSUM && i != <u32>ICMP_CSUM + 1 && load<u8>(l4 + i) != 0) return 0;
  }
  return 0xffff;
}

/** Returns NAT_OK and the L4 length when the outer packet is a checked
 *  IPv4 packet that is not a later fragment. */
@inline function checkOuter(p: usize, len: u32): i32 {
  const r = checkIpv4(p, len);
  if (r == R_TRUNCATED) return NAT_E_TRUNCATED;
  if (r != R_NONE) return NAT_E_BAD_HEADER;
  if (ipIsLaterFragment(p)) return NAT_E_FRAGMENT;
  return NAT_OK;
}

/** Shared body of natRewriteSrc/Dst. */
function rewrite(p: usize, len: u32, side: u32, addr: u32, port: u32): i32 {
  const st = checkOuter(p, len);
  if (st != NAT_OK) return st;
  const hl = ipHeaderLen(p);
  const l4 = p + hl;
  const l4len = ipTotalLen(p) - hl;
  const proto = ipProto(p);
  port &= 0xffff;
  // Check before writing anything.
  if (proto == PROTO_TCP && l4len < TCP_HDR_LEN) return NAT_E_TRUNCATED;
  if (proto == PROTO_UDP && l4len < UDP_HDR_LEN) return NAT_E_TRUNCATED;
  if (proto == PROTO_ICMP && l4len < ICMP_HDR_LEN) return NAT_E_TRUNCATED;
  const aOff = side == NAT_SIDE_DST ? IP_DST : IP_SRC;
  const oldA = ld32(p + aOff);
  st32(p + aOff, addr);
  st16(p + IP_CSUM, csumUpdate32(ld16(p + IP_CSUM), oldA, addr));
  const pOff: usize = side == NAT_SIDE_DST ? 2 : 0;
  if (proto == PROTO_TCP) {
    const oldP = ld16(l4 + pOff);
    st16(l4 + pOff, port);
    st16(l4 + TCP_CSUM, csumUpdate16(csumUpdate32(ld16(l4 + TCP_CSUM), oldA, addr), oldP, port));
  } else if (proto == PROTO_UDP) {
    const oldP = ld16(l4 + pOff);
    st16(l4 + pOff, port);
    udpCsumFix(l4 + UDP_CSUM, oldA, addr, oldP, port);
  } else if (proto == PROTO_ICMP && isEcho(<u32>load<u8>(l4))) {
    const oldId = ld16(l4 + ICMP_ID);
    st16(l4 + ICMP_ID, port);
    st16(l4 + ICMP_CSUM, icmpCsumFix(l4, l4len, csumUpdate16(ld16(l4 + ICMP_CSUM), oldId, port)));
  }
  return NAT_OK;
}

/** Set the source address to `addr` and, for TCP/UDP, the source port to
 *  `port` (ICMP echo request/reply: the identifier; other protocols and
 *  ICMP types: the address only), fixing the IP and L4 checksums
 *  incrementally. Returns NAT_OK or a NAT_E_* status (packet unchanged). */
export function natRewriteSrc(p: usize, len: u32, addr: u32, port: u32): i32 {
  return rewrite(p, len, NAT_SIDE_SRC, addr, port);
}

/** natRewriteSrc for the destination address and port. */
export function natRewriteDst(p: usize, len: u32, addr: u32, port: u32): i32 {
  return rewrite(p, len, NAT_SIDE_DST, addr, port);
}

/** Set the identifier of an ICMP echo request/reply to `id`, fixing the
 *  ICMP checksum. NAT_E_UNSUPPORTED for other ICMP types or protocols. */
export function natRewriteIcmpId(p: usize, len: u32, id: u32): i32 {
  const st = checkOuter(p, len);
  if (st != NAT_OK) return st;
  if (ipProto(p) != PROTO_ICMP) return NAT_E_UNSUPPORTED;
  const hl = ipHeaderLen(p);
  if (ipTotalLen(p) - hl < ICMP_HDR_LEN) return NAT_E_TRUNCATED;
  const l4 = p + hl;
  if (!isEcho(<u32>load<u8>(l4))) return NAT_E_UNSUPPORTED;
  id &= 0xffff;
  const oldId = ld16(l4 + ICMP_ID);
  st16(l4 + ICMP_ID, id);
  st16(l4 + ICMP_CSUM, icmpCsumFix(l4, ipTotalLen(p) - hl, csumUpdate16(ld16(l4 + ICMP_CSUM), oldId, id)));
  return NAT_OK;
}

/** Translate an ICMP error (destination unreachable, time exceeded, ...)
 *  about a translated flow back to the addresses its receiver knows. The
 *  error embeds the offending packet's IPv4 header + at least 8 bytes.
 *
 *  side NAT_SIDE_SRC (error about a packet we SNATed; it is addressed to
 *  the translated source): the embedded source becomes addr:port and the
 *  outer destination `outerAddr`.
 *  side NAT_SIDE_DST (error about a packet we DNATed, coming from the
 *  translated destination's side): the embedded destination becomes
 *  addr:port and the outer source `outerAddr`.
 *
 *  Updated: the embedded address, the embedded IP checksum, the embedded
 *  port (TCP/UDP) or echo identifier (ICMP echo), the embedded L4 checksum
 *  when the error carries it (UDP: always within the 8 bytes, zero stays
 *  zero; TCP: when >= 18 bytes are embedded; with 17, the half checksum
 *  field cannot be updated and is left as it is), the outer ICMP checksum over
 *  all of these, and the outer address with the outer IP checksum. The
 *  embedded packet is truncated, so its checksums cannot be verified; they
 *  are updated so that they match what the untranslated packet carried.
 *  Returns NAT_OK or a NAT_E_* status (packet unchanged). */
export function natTranslateIcmpError(p: usize, len: u32, side: u32, addr: u32, port: u32, outerAddr: u32): i32 {
  const st = checkOuter(p, len);
  if (st != NAT_OK) return st;
  if (side > NAT_SIDE_DST) return NAT_E_UNSUPPORTED;
  if (ipProto(p) != PROTO_ICMP) return NAT_E_UNSUPPORTED;
  const hl = ipHeaderLen(p);
  const icmpLen = ipTotalLen(p) - hl;
  if (icmpLen < ICMP_HDR_LEN) return NAT_E_TRUNCATED;
  const icmp = p + hl;
  if (!icmpIsError(<u32>load<u8>(icmp))) return NAT_E_UNSUPPORTED;
  // The embedded datagram: a whole IPv4 header and 8 bytes of its payload.
  const e = icmp + ICMP_HDR_LEN;
  const avail = icmpLen - ICMP_HDR_LEN;
  if (avail < IP_HDR_LEN) return NAT_E_TRUNCATED;
  const evi = <u32>load<u8>(e);
  if (evi >> 4 != 4) return NAT_E_BAD_HEADER;
  const ehl = (evi & 0xf) << 2;
  if (ehl < IP_HDR_LEN) return NAT_E_BAD_HEADER;
  if (avail < ehl + 8) return NAT_E_TRUNCATED;
  if (ipIsLaterFragment(e)) return NAT_E_FRAGMENT;
  const el4 = e + ehl;
  const el4avail = avail - ehl;
  const eproto = <u32>load<u8>(e + IP_PROTO);
  port &= 0xffff;

  let icsum = ld16(icmp + ICMP_CSUM);
  // Embedded address and IP header checksum.
  const eaOff = side == NAT_SIDE_SRC ? IP_SRC : IP_DST;
  const oldA = ld32(e + eaOff);
  st32(e + eaOff, addr);
  icsum = csumUpdate32(icsum, oldA, addr);
  const oldEc = ld16(e + IP_CSUM);
  const newEc = csumUpdate32(oldEc, oldA, addr);
  st16(e + IP_CSUM, newEc);
  icsum = csumUpdate16(icsum, oldEc, newEc);
  // Embedded port / identifier and L4 checksum.
  const pOff: usize = side == NAT_SIDE_SRC ? 0 : 2;
  if (eproto == PROTO_TCP || eproto == PROTO_UDP) {
    const oldP = ld16(el4 + pOff);
    st16(el4 + pOff, port);
    icsum = csumUpdate16(icsum, oldP, port);
    const cOff: usize = eproto == PROTO_TCP ? TCP_CSUM : UDP_CSUM;
    if (el4avail >= <u32>cOff + 2) {
      const oldC = ld16(el4 + cOff);
      if (eproto == PROTO_UDP) udpCsumFix(el4 + cOff, oldA, addr, oldP, port);
      else st16(el4 + cOff, csumUpdate16(csumUpdate32(oldC, oldA, addr), oldP, port));
      icsum = csumUpdate16(icsum, oldC, ld16(el4 + cOff));
    }
  } else if (eproto == PROTO_ICMP && isEcho(<u32>load<u8>(el4))) {
    const oldId = ld16(el4 + ICMP_ID);
    st16(el4 + ICMP_ID, port);
    icsum = csumUpdate16(icsum, oldId, port);
    const oldC = ld16(el4 + ICMP_CSUM);
    const newC = csumUpdate16(oldC, oldId, port);
    st16(el4 + ICMP_CSUM, newC);
    icsum = csumUpdate16(icsum, oldC, newC);
  }
  st16(icmp + ICMP_CSUM, icsum);
  // Outer address (the ICMP checksum has no pseudo header).
  const oOff = side == NAT_SIDE_SRC ? IP_DST : IP_SRC;
  const oldO = ld32(p + oOff);
  st32(p + oOff, outerAddr);
  st16(p + IP_CSUM, csumUpdate32(ld16(p + IP_CSUM), oldO, outerAddr));
  return NAT_OK;
}

/** Apply flow `ref`'s translation (a ctLookup result, (flow << 1) | dir) to
 *  the packet: SNAT, original direction: source := the reply tuple's
 *  destination; reply direction: destination := the original source. DNAT,
 *  original: destination := the reply tuple's source; reply: source := the
 *  original destination. BOTH (hairpin): source and destination, so the
 *  packet becomes the other tuple reversed. ICMP echo: the identifier becomes the other
 *  tuple's (it sits in the "source port" of both). A flow without NAT is
 *  left alone. Returns NAT_OK, NAT_E_* from the rewrite, or
 *  NAT_E_UNSUPPORTED for a ref that names no flow. Does not refresh the
 *  flow (ctTouch/ctUpdateTcp do). */
export function natApplyFlow(p: usize, len: u32, ref: i32): i32 {
  if (ref < 0) return NAT_E_UNSUPPORTED;
  const r = ctFlowPtr(<u32>ref >> 1);
  if (r == 0) return NAT_E_UNSUPPORTED;
  const dir = <u32>ref & 1;
  const nat = <u32>load<u8>(r, F_NAT);
  const icmp = <u32>load<u8>(r, F_PROTO) == PROTO_ICMP;
  if (nat == CT_NAT_SNAT) {
    if (dir == CT_DIR_ORIG) {
      return rewrite(p, len, NAT_SIDE_SRC, load<u32>(r, F_RDST), <u32>load<u16>(r + (icmp ? F_RSPORT : F_RDPORT)));
    }
    return rewrite(p, len, NAT_SIDE_DST, load<u32>(r, F_OSRC), <u32>load<u16>(r, F_OSPORT));
  }
  if (nat == CT_NAT_DNAT) {
    if (dir == CT_DIR_ORIG) return rewrite(p, len, NAT_SIDE_DST, load<u32>(r, F_RSRC), <u32>load<u16>(r, F_RSPORT));
    return rewrite(p, len, NAT_SIDE_SRC, load<u32>(r, F_ODST), <u32>load<u16>(r + (icmp ? F_OSPORT : F_ODPORT)));
  }
  if (nat == CT_NAT_BOTH) {
    // The packet becomes the other tuple reversed. Both calls pass the same
    // checks on the same packet, so the second cannot fail after the first.
    const o = dir == CT_DIR_ORIG;
    const st = rewrite(p, len, NAT_SIDE_SRC, load<u32>(r + (o ? F_RDST : F_ODST)),
      <u32>load<u16>(r + (o ? (icmp ? F_RSPORT : F_RDPORT) : (icmp ? F_OSPORT : F_ODPORT))));
    if (st != NAT_OK) return st;
    return rewrite(p, len, NAT_SIDE_DST, load<u32>(r + (o ? F_RSRC : F_OSRC)), <u32>load<u16>(r + (o ? F_RSPORT : F_OSPORT)));
  }
  return NAT_OK;
}

/** The flow of an IPv4 packet by its tuple (TCP/UDP ports; ICMP echo
 *  request/reply: identifier and 0; other protocols: ports 0), through
 *  ctLookupLive at `now`: (flow << 1) | dir, or -1 when untracked,
 *  malformed, a later fragment or an ICMP that is neither echo nor error
 *  (errors are matched by their embedded header, not here). */
export function natLookupPacket(p: usize, len: u32, now: u32): i32 {
  if (checkOuter(p, len) != NAT_OK) return -1;
  const hl = ipHeaderLen(p);
  const l4 = p + hl;
  const l4len = ipTotalLen(p) - hl;
  const proto = ipProto(p);
  let sport: u32 = 0;
  let dport: u32 = 0;
  if (proto == PROTO_TCP || proto == PROTO_UDP) {
    if (l4len < 4) return -1;
    sport = ld16(l4);
    dport = ld16(l4 + 2);
  } else if (proto == PROTO_ICMP) {
    if (l4len < ICMP_HDR_LEN || !isEcho(<u32>load<u8>(l4))) return -1;
    sport = ld16(l4 + ICMP_ID);
  }
  return ctLookupLive(proto, ld32(p + IP_SRC), ld32(p + IP_DST), sport, dport, now);
}
