// NAT66 rewrites, in place, on an IPv6 packet at `p` of `len` bytes: the
// IPv6 twin of translate.ts, with the same statuses and incremental
// checksum updates (RFC 1624), so a rewrite costs the same at any size.
//
// What each rewrite touches (IPv6 has no header checksum; TCP, UDP and
// ICMPv6 all sum the pseudo header, RFC 8200 8.1):
//   address   TCP/UDP/ICMPv6 checksum (eight 16-bit words)
//   port      TCP/UDP checksum
//   echo id   ICMPv6 checksum
// UDP: a zero checksum is invalid over IPv6 (RFC 8200 8.1) but it is not
// ours to repair: it stays zero, as in translate.ts; an updated checksum
// that comes out 0 is sent as 0xFFFF.
//
// ICMPv6 needs no icmpCsumFix (translate.ts): that fix exists because an
// all-zero ICMPv4 message sums to +0, which no incremental update can
// reach. Here the pseudo header's next header (58) is always in the sum, so
// a full computation folds to 1..0xFFFF, never +0; an RFC 1624 update of
// nonzero terms never yields +0 either, so both land on the same value
// (a checksum field of 0 is then right, and is what a full computation
// writes too).
//
// Extension headers are not walked: only TCP, UDP or ICMPv6 directly after
// the fixed header (of the packet, or of the packet an error embeds) is
// translated; anything else is NAT_E_UNSUPPORTED. The L4 length is the
// payload length field: link padding past it is never read or written.
//
// Every function checks all it relies on before writing and returns a NAT_*
// status; on any status but NAT_OK the packet is unchanged. Addresses passed
// by pointer are read into locals first, so they may point anywhere, even
// into the packet.
import { ld16, ld8, st16 } from "../wire/bytes";
import { csumUpdate128, csumUpdate16 } from "../wire/checksum";
import { checkIpv6, ip6Next, ip6PayloadLen, ip6Version, IP6_DST, IP6_HDR_LEN, IP6_SRC, PROTO_ICMPV6 } from "../wire/ipv6";
import { PROTO_TCP, PROTO_UDP } from "../wire/ipv4";
import { TCP_CSUM, TCP_HDR_LEN } from "../wire/tcp";
import { UDP_CSUM, UDP_HDR_LEN } from "../wire/udp";
import { ICMP6_DEST_UNREACH, ICMP6_ECHO_REPLY, ICMP6_ECHO_REQUEST, ICMP6_HDR_LEN, ICMP6_PARAM_PROBLEM } from "../wire/icmp6";
import { R_NONE, R_TRUNCATED } from "../abi";
import { NAT_E_BAD_HEADER, NAT_E_TRUNCATED, NAT_E_UNSUPPORTED, NAT_OK, NAT_SIDE_DST, NAT_SIDE_SRC } from "./translate";

const ICMP6_CSUM: usize = 2;
const ICMP6_ID: usize = 4;

@inline function isEcho6(type: u32): bool {
  return type == ICMP6_ECHO_REQUEST || type == ICMP6_ECHO_REPLY;
}

/** NAT_OK when the upper layer `next` is one we translate and its `l4len`
 *  bytes hold its header; the status to return otherwise. */
@inline function checkL4(next: u32, l4len: u32): i32 {
  if (next == PROTO_TCP) return l4len < TCP_HDR_LEN ? NAT_E_TRUNCATED : NAT_OK;
  if (next == PROTO_UDP) return l4len < UDP_HDR_LEN ? NAT_E_TRUNCATED : NAT_OK;
  if (next == PROTO_ICMPV6) return l4len < ICMP6_HDR_LEN ? NAT_E_TRUNCATED : NAT_OK;
  return NAT_E_UNSUPPORTED;
}

/** NAT_OK when `len` bytes at `p` are a checked IPv6 packet (checkIpv6). */
@inline function checkOuter6(p: usize, len: u32): i32 {
  const r = checkIpv6(p, len);
  if (r == R_TRUNCATED) return NAT_E_TRUNCATED;
  if (r != R_NONE) return NAT_E_BAD_HEADER;
  return NAT_OK;
}

/** The new value of an L4 checksum `old` (TCP, UDP or ICMPv6 `next`) after
 *  the address (oh:ol -> nh:nl) and a 16-bit port or id (oldP -> newP)
 *  changed. UDP: 0 stays 0, a result of 0 becomes 0xFFFF. */
@inline function l4CsumFix(next: u32, old: u32, oh: u64, ol: u64, nh: u64, nl: u64, oldP: u32, newP: u32): u32 {
  if (next == PROTO_UDP && old == 0) return 0;
  const s = csumUpdate16(csumUpdate128(old, oh, ol, nh, nl), oldP, newP);
  return next == PROTO_UDP && s == 0 ? 0xffff : s;
}

/** Shared body of nat6RewriteSrc/Dst. */
function rewrite6(p: usize, len: u32, side: u32, addr: usize, port: u32): i32 {
  const st = checkOuter6(p, len);
  if (st != NAT_OK) return st;
  const next = ip6Next(p);
  const l4len = ip6PayloadLen(p);
  const l4st = checkL4(next, l4len);
  if (l4st != NAT_OK) return l4st;
  const l4 = p + IP6_HDR_LEN;
  port &= 0xffff;
  const nh = load<u64>(addr);
  const nl = load<u64>(addr, 8);
  const a = p + (side == NAT_SIDE_DST ? IP6_DST : IP6_SRC);
  const oh = load<u64>(a);
  const ol = load<u64>(a, 8);
  store<u64>(a, nh);
  store<u64>(a, nl, 8);
  if (next == PROTO_TCP || next == PROTO_UDP) {
    const pOff: usize = side == NAT_SIDE_DST ? 2 : 0;
    const oldP = ld16(l4 + pOff);
    st16(l4 + pOff, port);
    const c = l4 + (next == PROTO_TCP ? TCP_CSUM : UDP_CSUM);
    st16(c, l4CsumFix(next, ld16(c), oh, ol, nh, nl, oldP, port));
  } else {
    // ICMPv6: the identifier of an echo, whichever side; the address alone otherwise.
    let s = csumUpdate128(ld16(l4 + ICMP6_CSUM), oh, ol, nh, nl);
    if (isEcho6(ld8(l4))) {
      const oldId = ld16(l4 + ICMP6_ID);
      st16(l4 + ICMP6_ID, port);
      s = csumUpdate16(s, oldId, port);
    }
    st16(l4 + ICMP6_CSUM, s);
  }
  return NAT_OK;
}

/** Set the source address to the 16 bytes at `addr` and, for TCP/UDP, the
 *  source port to `port` (ICMPv6 echo request/reply: the identifier; other
 *  ICMPv6 types: the address only), fixing the L4 checksum incrementally,
 *  pseudo header included. NAT_E_UNSUPPORTED when the next header is not
 *  TCP, UDP or ICMPv6 (extension headers are not walked). Returns NAT_OK or
 *  a NAT_E_* status (packet unchanged). */
export function nat6RewriteSrc(p: usize, len: u32, addr: usize, port: u32): i32 {
  return rewrite6(p, len, NAT_SIDE_SRC, addr, port);
}

/** nat6RewriteSrc for the destination address and port. */
export function nat6RewriteDst(p: usize, len: u32, addr: usize, port: u32): i32 {
  return rewrite6(p, len, NAT_SIDE_DST, addr, port);
}

/** Translate an ICMPv6 error (types 1..4: destination unreachable, packet
 *  too big, time exceeded, parameter problem) about a translated flow back
 *  to the addresses its receiver knows. The error embeds the offending
 *  packet's IPv6 header and at least 8 bytes of its TCP, UDP or ICMPv6.
 *
 *  side NAT_SIDE_SRC (error about a packet we SNATed): the embedded source
 *  becomes addr:port and the outer destination `outerAddr`.
 *  side NAT_SIDE_DST (error about a packet we DNATed): the embedded
 *  destination becomes addr:port and the outer source `outerAddr`.
 *  `port` is the identifier when the embedded packet is an ICMPv6 echo.
 *
 *  Updated: the embedded address, the embedded port or echo identifier, the
 *  embedded L4 checksum when the quote holds it (UDP and ICMPv6: always,
 *  within the 8 bytes; UDP zero stays zero; TCP: when >= 18 bytes are
 *  quoted, with 17 the half field is left as it is) for the address (its
 *  pseudo header) and port, the outer ICMPv6 checksum for all of these and
 *  for the outer address in its pseudo header, and the outer address. The
 *  embedded checksums end up as the untranslated, untruncated packet
 *  carried them. Returns NAT_OK or a NAT_E_* status (packet unchanged). */
export function nat6TranslateIcmpError(p: usize, len: u32, side: u32, addr: usize, port: u32, outerAddr: usize): i32 {
  const st = checkOuter6(p, len);
  if (st != NAT_OK) return st;
  if (side > NAT_SIDE_DST) return NAT_E_UNSUPPORTED;
  if (ip6Next(p) != PROTO_ICMPV6) return NAT_E_UNSUPPORTED;
  const icmpLen = ip6PayloadLen(p);
  if (icmpLen < ICMP6_HDR_LEN) return NAT_E_TRUNCATED;
  const icmp = p + IP6_HDR_LEN;
  const type = ld8(icmp);
  if (type < ICMP6_DEST_UNREACH || type > ICMP6_PARAM_PROBLEM) return NAT_E_UNSUPPORTED;
  // The embedded packet: a whole fixed header, then 8 bytes of TCP, UDP or ICMPv6.
  const e = icmp + ICMP6_HDR_LEN;
  const avail = icmpLen - ICMP6_HDR_LEN;
  if (avail < IP6_HDR_LEN) return NAT_E_TRUNCATED;
  if (ip6Version(e) != 6) return NAT_E_BAD_HEADER;
  const enext = ip6Next(e);
  if (enext != PROTO_TCP && enext != PROTO_UDP && enext != PROTO_ICMPV6) return NAT_E_UNSUPPORTED;
  if (avail < IP6_HDR_LEN + 8) return NAT_E_TRUNCATED;
  const el4 = e + IP6_HDR_LEN;
  const el4avail = avail - IP6_HDR_LEN;
  port &= 0xffff;
  // Both new addresses before anything is written.
  const nh = load<u64>(addr);
  const nl = load<u64>(addr, 8);
  const onh = load<u64>(outerAddr);
  const onl = load<u64>(outerAddr, 8);

  let icsum = ld16(icmp + ICMP6_CSUM);
  // Embedded address.
  const ea = e + (side == NAT_SIDE_SRC ? IP6_SRC : IP6_DST);
  const oh = load<u64>(ea);
  const ol = load<u64>(ea, 8);
  store<u64>(ea, nh);
  store<u64>(ea, nl, 8);
  icsum = csumUpdate128(icsum, oh, ol, nh, nl);
  // Embedded port / identifier and L4 checksum.
  if (enext == PROTO_TCP || enext == PROTO_UDP) {
    const pOff: usize = side == NAT_SIDE_SRC ? 0 : 2;
    const oldP = ld16(el4 + pOff);
    st16(el4 + pOff, port);
    icsum = csumUpdate16(icsum, oldP, port);
    const cOff: usize = enext == PROTO_TCP ? TCP_CSUM : UDP_CSUM;
    if (el4avail >= <u32>cOff + 2) {
      const oldC = ld16(el4 + cOff);
      const newC = l4CsumFix(enext, oldC, oh, ol, nh, nl, oldP, port);
      st16(el4 + cOff, newC);
      icsum = csumUpdate16(icsum, oldC, newC);
    }
  } else {
    const oldC = ld16(el4 + ICMP6_CSUM);
    let newC = csumUpdate128(oldC, oh, ol, nh, nl);
    if (isEcho6(ld8(el4))) {
      const oldId = ld16(el4 + ICMP6_ID);
      st16(el4 + ICMP6_ID, port);
      icsum = csumUpdate16(icsum, oldId, port);
      newC = csumUpdate16(newC, oldId, port);
    }
    st16(el4 + ICMP6_CSUM, newC);
    icsum = csumUpdate16(icsum, oldC, newC);
  }
  // Outer address, which the outer checksum sums in its pseudo header.
  const oa = p + (side == NAT_SIDE_SRC ? IP6_DST : IP6_SRC);
  const ooh = load<u64>(oa);
  const ool = load<u64>(oa, 8);
  store<u64>(oa, onh);
  store<u64>(oa, onl, 8);
  icsum = csumUpdate128(icsum, ooh, ool, onh, onl);
  st16(icmp + ICMP6_CSUM, icsum);
  return NAT_OK;
}
