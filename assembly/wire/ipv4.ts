// IPv4 header (RFC 791), with the fragment fields and options.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |         Identification        |Flags|      Fragment Offset    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  Time to Live |    Protocol   |         Header Checksum       |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                       Source Address                          |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                    Destination Address                        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                    Options (IHL > 5)                          |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Flags: bit 0 reserved (must be zero), DF (0x4000), MF (0x2000).

import { ld16, ld32, ld8, st16, st32, st8 } from "./bytes";
import { checksum, csumUpdate16 } from "./checksum";
import { R_BAD_IP_CHECKSUM, R_BAD_IP_HEADER, R_MARTIAN, R_NONE, R_TRUNCATED } from "../abi";

export const IP_VER_IHL: usize = 0;
export const IP_TOS: usize = 1;
export const IP_TOTLEN: usize = 2;
export const IP_ID: usize = 4;
export const IP_FRAG: usize = 6;
export const IP_TTL: usize = 8;
export const IP_PROTO: usize = 9;
export const IP_CSUM: usize = 10;
export const IP_SRC: usize = 12;
export const IP_DST: usize = 16;
export const IP_HDR_LEN: u32 = 20;

export const IP_FLAG_DF: u32 = 0x4000;
export const IP_FLAG_MF: u32 = 0x2000;
export const IP_FRAG_OFFSET_MASK: u32 = 0x1fff;

export const PROTO_ICMP: u32 = 1;
export const PROTO_IPIP: u32 = 4;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;

export const ECN_NOT_ECT: u32 = 0;
export const ECN_ECT1: u32 = 1;
export const ECN_ECT0: u32 = 2;
export const ECN_CE: u32 = 3;

@inline export function ipVersion(p: usize): u32 { return ld8(p) >> 4; }
@inline export function ipHeaderLen(p: usize): u32 { return (ld8(p) & 0xf) << 2; }
@inline export function ipTos(p: usize): u32 { return ld8(p + IP_TOS); }
@inline export function ipTotalLen(p: usize): u32 { return ld16(p + IP_TOTLEN); }
@inline export function ipId(p: usize): u32 { return ld16(p + IP_ID); }
@inline export function ipFragField(p: usize): u32 { return ld16(p + IP_FRAG); }
@inline export function ipDontFragment(p: usize): bool { return (ld16(p + IP_FRAG) & IP_FLAG_DF) != 0; }
/** True for any fragment but the first or only one: L4 headers are absent. */
@inline export function ipIsLaterFragment(p: usize): bool { return (ld16(p + IP_FRAG) & IP_FRAG_OFFSET_MASK) != 0; }
/** True for any piece of a fragmented datagram (MF set or offset non-zero). */
@inline export function ipIsFragment(p: usize): bool { return (ld16(p + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK)) != 0; }
@inline export function ipTtl(p: usize): u32 { return ld8(p + IP_TTL); }
@inline export function ipProto(p: usize): u32 { return ld8(p + IP_PROTO); }
@inline export function ipChecksum(p: usize): u32 { return ld16(p + IP_CSUM); }
@inline export function ipSrc(p: usize): u32 { return ld32(p + IP_SRC); }
@inline export function ipDst(p: usize): u32 { return ld32(p + IP_DST); }

@inline export function setIpSrc(p: usize, a: u32): void { st32(p + IP_SRC, a); }
@inline export function setIpDst(p: usize, a: u32): void { st32(p + IP_DST, a); }
@inline export function setIpChecksum(p: usize, c: u32): void { st16(p + IP_CSUM, c); }

/** Returns R_NONE iff `len` bytes hold a whole IPv4 header and the datagram
 *  it announces: version 4, 20 <= IHL*4 <= total length <= len. Afterwards
 *  accessors and the options area are in bounds; trailing bytes past the
 *  total length (Ethernet padding) are ignored by callers. */
export function checkIpv4(p: usize, len: u32): u16 {
  if (len < IP_HDR_LEN) return R_TRUNCATED;
  const vi = ld8(p);
  if (vi >> 4 != 4) return R_BAD_IP_HEADER;
  const hl = (vi & 0xf) << 2;
  if (hl < IP_HDR_LEN) return R_BAD_IP_HEADER;
  const tl = ld16(p + IP_TOTLEN);
  if (tl < hl) return R_BAD_IP_HEADER;
  if (tl > len) return R_TRUNCATED;
  return R_NONE;
}

/** Header checksum over IHL*4 bytes is valid. */
@inline export function ipChecksumOk(p: usize): bool {
  return checksum(p, ipHeaderLen(p)) == 0;
}

/** Recompute and store the header checksum. */
@inline export function ipFillChecksum(p: usize): void {
  st16(p + IP_CSUM, 0);
  st16(p + IP_CSUM, checksum(p, ipHeaderLen(p)));
}

/** Decrement TTL by one, updating the checksum incrementally (RFC 1624).
 *  Caller has checked TTL > 1. */
@inline export function ipDecTtl(p: usize): void {
  const oldWord = ld16(p + IP_TTL);
  const newWord = oldWord - 0x100;
  st8(p + IP_TTL, newWord >> 8);
  st16(p + IP_CSUM, csumUpdate16(ld16(p + IP_CSUM), oldWord, newWord));
}

/** Increment TTL by one, updating the checksum incrementally (RFC 1624):
 *  gives back a hop the node's kernel is about to count a second time.
 *  Caller has checked TTL < 255. */
@inline export function ipIncTtl(p: usize): void {
  const oldWord = ld16(p + IP_TTL);
  const newWord = oldWord + 0x100;
  st8(p + IP_TTL, newWord >> 8);
  st16(p + IP_CSUM, csumUpdate16(ld16(p + IP_CSUM), oldWord, newWord));
}

/** Change the TOS byte, updating the checksum incrementally. */
@inline export function ipSetTos(p: usize, tos: u32): void {
  const oldWord = ld16(p);
  const newWord = (oldWord & 0xff00) | (tos & 0xff);
  st8(p + IP_TOS, tos);
  st16(p + IP_CSUM, csumUpdate16(ld16(p + IP_CSUM), oldWord, newWord));
}

/** Write a 20-byte header (no options) with every field, checksum included. */
export function emitIpv4(p: usize, tos: u32, totalLen: u32, id: u32, frag: u32, ttl: u32, proto: u32, src: u32, dst: u32): void {
  st8(p + IP_VER_IHL, 0x45);
  st8(p + IP_TOS, tos);
  st16(p + IP_TOTLEN, totalLen);
  st16(p + IP_ID, id);
  st16(p + IP_FRAG, frag);
  st8(p + IP_TTL, ttl);
  st8(p + IP_PROTO, proto);
  st16(p + IP_CSUM, 0);
  st32(p + IP_SRC, src);
  st32(p + IP_DST, dst);
  st16(p + IP_CSUM, checksum(p, IP_HDR_LEN));
}

/** Addresses no packet may carry as a unicast source or destination:
 *  0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 (multicast), 240.0.0.0/4 incl. broadcast. */
@inline export function ipIsMartian(a: u32): bool {
  const top = a >>> 24;
  return top == 0 || top == 127 || top >= 224;
}

/** Returns R_NONE iff the datagram passes checkIpv4, its header checksum is
 *  valid, and neither address is martian: what a router checks before it
 *  forwards (RFC 1812 5.2.2, 5.3.7), from the pod side or out of a tunnel. */
export function checkIpv4Forwardable(p: usize, len: u32): u16 {
  const r = checkIpv4(p, len);
  if (r != R_NONE) return r;
  if (!ipChecksumOk(p)) return R_BAD_IP_CHECKSUM;
  if (ipIsMartian(ipSrc(p)) || ipIsMartian(ipDst(p))) return R_MARTIAN;
  return R_NONE;
}
