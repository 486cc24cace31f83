// IPv6 fixed header (RFC 8200 section 3).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Version| Traffic Class |           Flow Label                  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |         Payload Length        |  Next Header  |   Hop Limit   |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                 Source Address (16)                           |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |              Destination Address (16)                         |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Addresses stay in network order in the packet; they are compared and
// copied as two u64 loads and handed to the IPv6 LPM as a pointer. The
// traffic class carries DSCP and ECN as the IPv4 TOS byte does (RFC 2474,
// RFC 3168), so the RFC 6040 rules apply to it unchanged.
import { ld16, ld8, st16, st8 } from "./bytes";
import { csumPartial } from "./checksum";
import { R_BAD_IP_HEADER, R_MARTIAN, R_NONE, R_TRUNCATED } from "../abi";

export const IP6_VTC: usize = 0; // version (4 bits) | traffic class (8) | flow label (20)
export const IP6_PLEN: usize = 4;
export const IP6_NEXT: usize = 6;
export const IP6_HLIM: usize = 7;
export const IP6_SRC: usize = 8;
export const IP6_DST: usize = 24;
export const IP6_HDR_LEN: u32 = 40;
/** The IPv6 minimum link MTU (RFC 8200 section 5): ICMPv6 errors stay within it. */
export const IP6_MIN_MTU: u32 = 1280;

export const PROTO_ICMPV6: u32 = 58;
export const PROTO_IPV6: u32 = 41; // IPv6-in-IP (the kernel's sit, RFC 4213)
export const PROTO_NONE6: u32 = 59;

@inline export function ip6Version(p: usize): u32 { return ld8(p) >> 4; }
@inline export function ip6PayloadLen(p: usize): u32 { return ld16(p + IP6_PLEN); }
@inline export function ip6Next(p: usize): u32 { return ld8(p + IP6_NEXT); }
@inline export function ip6HopLimit(p: usize): u32 { return ld8(p + IP6_HLIM); }
/** The traffic class byte: DSCP << 2 | ECN, like the IPv4 TOS. */
@inline export function ip6Tclass(p: usize): u32 { return (ld16(p) >> 4) & 0xff; }
@inline export function ip6SetTclass(p: usize, tc: u32): void {
  st16(p, (ld16(p) & 0xf00f) | ((tc & 0xff) << 4));
}
@inline export function ip6SetHopLimit(p: usize, h: u32): void { st8(p + IP6_HLIM, h); }

/** The first/second 64 bits of an address at `a`, in host order (for
 *  comparisons and prefix tests). */
@inline export function a6hi(a: usize): u64 { return bswap<u64>(load<u64>(a)); }
@inline export function a6lo(a: usize): u64 { return bswap<u64>(load<u64>(a, 8)); }
@inline export function a6eq(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}
@inline export function a6copy(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u64>(dst, load<u64>(src, 8), 8);
}
/** ff00::/8 */
@inline export function a6IsMulticast(a: usize): bool { return load<u8>(a) == 0xff; }
/** :: */
@inline export function a6IsUnspecified(a: usize): bool { return (load<u64>(a) | load<u64>(a, 8)) == 0; }
/** ::1 */
@inline export function a6IsLoopback(a: usize): bool { return load<u64>(a) == 0 && a6lo(a) == 1; }
/** fe80::/10 */
@inline export function a6IsLinkLocal(a: usize): bool { return (ld16(a) & 0xffc0) == 0xfe80; }

/** A source no router forwards (RFC 4291 2.5.2/2.5.3/2.7: unspecified,
 *  loopback, multicast) and no ICMPv6 error may be sent to (RFC 4443 2.4 e). */
@inline export function a6IsMartianSource(a: usize): bool {
  return a6IsMulticast(a) || a6IsUnspecified(a) || a6IsLoopback(a);
}

/** Returns R_NONE iff `len` bytes at `p` hold a whole IPv6 header with
 *  version 6 and a payload length that fits in them (link padding past it
 *  is allowed); then every accessor above and [p, p+40+payload) read
 *  inside the buffer. A payload length of 0 with bytes following would be a
 *  jumbogram (RFC 2675): refused, as no link we serve carries them. */
export function checkIpv6(p: usize, len: u32): u16 {
  if (len < IP6_HDR_LEN) return R_TRUNCATED;
  if (ip6Version(p) != 6) return R_BAD_IP_HEADER;
  const plen = ip6PayloadLen(p);
  if (IP6_HDR_LEN + plen > len) return R_TRUNCATED;
  if (plen == 0 && ip6Next(p) != PROTO_NONE6) return R_BAD_IP_HEADER;
  return R_NONE;
}

/** A header that may be routed: checkIpv6, a source that is not a martian
 *  and is not link-local, a destination that is neither multicast, loopback,
 *  unspecified nor link-local (RFC 4291 2.5.6: never forwarded). */
export function checkIpv6Forwardable(p: usize, len: u32): u16 {
  const r = checkIpv6(p, len);
  if (r != R_NONE) return r;
  const s = p + IP6_SRC;
  const d = p + IP6_DST;
  if (a6IsMartianSource(s) || a6IsLinkLocal(s)) return R_MARTIAN;
  if (a6IsMulticast(d) || a6IsUnspecified(d) || a6IsLoopback(d) || a6IsLinkLocal(d)) return R_MARTIAN;
  return R_NONE;
}

/** Write a whole fixed header; addresses are copied from `src`/`dst`. */
export function emitIpv6(p: usize, tclass: u32, flow: u32, plen: u32, next: u32, hlim: u32, src: usize, dst: usize): void {
  store<u32>(p, bswap<u32>((6 << 28) | ((tclass & 0xff) << 20) | (flow & 0xfffff)));
  st16(p + IP6_PLEN, plen);
  st8(p + IP6_NEXT, next);
  st8(p + IP6_HLIM, hlim);
  a6copy(p + IP6_SRC, src);
  a6copy(p + IP6_DST, dst);
}

/** Accumulator of the IPv6 pseudo header of the packet whose fixed header
 *  is at `ip` (its source and destination), for `len` upper-layer bytes of
 *  protocol `next`, in csumPartial's word order. */
@inline export function csumPseudo6(ip: usize, next: u32, len: u32): u64 {
  const acc = csumPartial(ip + IP6_SRC, 32, 0);
  return acc + <u64>bswap<u16>(<u16>(len >>> 16)) + <u64>bswap<u16>(<u16>len) + <u64>bswap<u16>(<u16>next);
}
