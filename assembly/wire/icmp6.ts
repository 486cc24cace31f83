// ICMPv6 (RFC 4443) and the two Neighbor Discovery messages a tap answers
// (RFC 4861 4.3/4.4).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |     Type      |     Code      |          Checksum             |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  errors: unused / MTU (packet too big) / pointer (param problem)|
//  |  echo: Identifier / Sequence;  NS/NA: reserved / R S O flags    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  errors: as much of the invoking packet as fits in 1280 bytes   |
//  |  NS/NA: target address (16), then options (type, length in 8s)  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The checksum covers a pseudo header (RFC 8200 8.1): source, destination,
// the upper-layer length as 32 bits and the next header 58.
import { ld8, ldMac, st16, st32, st8, stMac } from "./bytes";
import { csumFinish, csumPartial } from "./checksum";
import { a6copy, a6IsMulticast, a6IsUnspecified, csumPseudo6, IP6_HDR_LEN, IP6_SRC, PROTO_ICMPV6 } from "./ipv6";

export const ICMP6_HDR_LEN: u32 = 8;
export const ICMP6_DEST_UNREACH: u32 = 1;
export const ICMP6_PACKET_TOO_BIG: u32 = 2;
export const ICMP6_TIME_EXCEEDED: u32 = 3;
export const ICMP6_PARAM_PROBLEM: u32 = 4;
export const ICMP6_ECHO_REQUEST: u32 = 128;
export const ICMP6_ECHO_REPLY: u32 = 129;
export const ND_NEIGHBOR_SOLICIT: u32 = 135;
export const ND_NEIGHBOR_ADVERT: u32 = 136;

export const UNREACH6_NO_ROUTE: u32 = 0;
export const UNREACH6_ADMIN: u32 = 1;
export const UNREACH6_ADDRESS: u32 = 3;
export const UNREACH6_PORT: u32 = 4;

/** NS/NA: ICMPv6 header (8) + target (16). */
export const ND_MIN_LEN: u32 = 24;
export const ND_OPT_SOURCE_LLADDR: u32 = 1;
export const ND_OPT_TARGET_LLADDR: u32 = 2;
export const NA_FLAG_ROUTER: u32 = 0x80000000;
export const NA_FLAG_SOLICITED: u32 = 0x40000000;
export const NA_FLAG_OVERRIDE: u32 = 0x20000000;
/** An NA with its target link-layer address option. */
export const NA_LEN: u32 = ND_MIN_LEN + 8;

/** Error messages are the types below 128 (RFC 4443 2.1); none is sent
 *  about one (2.4 e.1). */
@inline export function icmp6IsError(type: u32): bool { return type < 128; }

/** The checksum field value for the `len`-byte ICMPv6 message at `ip + 40`
 *  (field zeroed first by the caller), or 0 when verifying a correct one. */
@inline export function icmp6Checksum(ip: usize, len: u32): u32 {
  return csumFinish(csumPartial(ip + IP6_HDR_LEN, len, csumPseudo6(ip, PROTO_ICMPV6, len)));
}

/** A Neighbor Solicitation we may answer (RFC 4861 7.1.1): `ip` is a
 *  checked IPv6 header with next header 58, hop limit 255, `len` ICMPv6
 *  bytes at `ip + 40`. Returns the source link-layer address it carries
 *  (the MAC to answer), 0 when it carries none, or -1 when the message is
 *  not a valid NS: code not 0, shorter than 24, bad checksum, a multicast
 *  target, an option of length 0 or past the end, a source link-layer
 *  option from the unspecified address. */
export function ndSolicitSender(ip: usize, len: u32): i64 {
  const q = ip + IP6_HDR_LEN;
  if (len < ND_MIN_LEN || ld8(q) != ND_NEIGHBOR_SOLICIT || ld8(q + 1) != 0) return -1;
  if (ld8(ip + 7) != 255) return -1;
  if (icmp6Checksum(ip, len) != 0) return -1;
  if (a6IsMulticast(q + 8)) return -1;
  let mac: i64 = 0;
  let o: u32 = ND_MIN_LEN;
  while (o + 2 <= len) {
    const olen = ld8(q + o + 1) << 3;
    if (olen == 0 || o + olen > len) return -1;
    if (ld8(q + o) == ND_OPT_SOURCE_LLADDR && olen >= 8) mac = <i64>ldMac(q + o + 2);
    o += olen;
  }
  if (o != len) return -1;
  if (mac != 0 && a6IsUnspecified(ip + IP6_SRC)) return -1;
  return mac;
}

/** Write a Neighbor Advertisement for `target` (16 bytes, copied first: it
 *  may lie inside the NS being overwritten) with our `mac` as its target
 *  link-layer address and `flags`: ICMPv6 part at `q` (NA_LEN bytes),
 *  checksum over the IPv6 header at `ip` (written before, with its
 *  addresses) included. */
export function emitNeighborAdvert(ip: usize, q: usize, target: usize, mac: u64, flags: u32): void {
  a6copy(q + 8, target);
  st8(q, ND_NEIGHBOR_ADVERT);
  st8(q + 1, 0);
  st16(q + 2, 0);
  st32(q + 4, flags);
  st8(q + ND_MIN_LEN, ND_OPT_TARGET_LLADDR);
  st8(q + ND_MIN_LEN + 1, 1);
  stMac(q + ND_MIN_LEN + 2, mac);
  st16(q + 2, icmp6Checksum(ip, NA_LEN));
}

/** IPv6 multicast MAC of address `a` (RFC 2464 7): 33:33 + its last 32 bits. */
@inline export function multicastMac6(a: usize): u64 {
  return (<u64>0x3333 << 32) | <u64>bswap<u32>(load<u32>(a, 12));
}
