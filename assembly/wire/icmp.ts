// ICMPv4 (RFC 792; router behaviour RFC 1812 4.3; PMTU RFC 1191).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |     Type      |     Code      |          Checksum             |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  echo: Identifier / Sequence; frag-needed: unused / Next-hop MTU |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  errors: the offending IP header + at least 8 bytes of data     |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { ld16, ld8, st16, st8 } from "./bytes";
import { R_NONE, R_TRUNCATED } from "../abi";

export const ICMP_TYPE: usize = 0;
export const ICMP_CODE: usize = 1;
export const ICMP_CSUM: usize = 2;
export const ICMP_ID: usize = 4;
export const ICMP_SEQ: usize = 6;
export const ICMP_MTU: usize = 6;
export const ICMP_HDR_LEN: u32 = 8;

export const ICMP_ECHO_REPLY: u32 = 0;
export const ICMP_DEST_UNREACH: u32 = 3;
export const ICMP_SOURCE_QUENCH: u32 = 4;
export const ICMP_REDIRECT: u32 = 5;
export const ICMP_ECHO_REQUEST: u32 = 8;
export const ICMP_TIME_EXCEEDED: u32 = 11;
export const ICMP_PARAM_PROBLEM: u32 = 12;

export const UNREACH_NET: u32 = 0;
export const UNREACH_HOST: u32 = 1;
export const UNREACH_PORT: u32 = 3;
export const UNREACH_FRAG_NEEDED: u32 = 4;
export const UNREACH_NET_PROHIBITED: u32 = 9;
export const UNREACH_ADMIN_PROHIBITED: u32 = 13;

@inline export function icmpType(p: usize): u32 { return ld8(p + ICMP_TYPE); }
@inline export function icmpCode(p: usize): u32 { return ld8(p + ICMP_CODE); }
@inline export function icmpChecksum(p: usize): u32 { return ld16(p + ICMP_CSUM); }
@inline export function icmpId(p: usize): u32 { return ld16(p + ICMP_ID); }
@inline export function icmpSeq(p: usize): u32 { return ld16(p + ICMP_SEQ); }
@inline export function icmpMtu(p: usize): u32 { return ld16(p + ICMP_MTU); }

/** The types that carry an offending datagram (RFC 1812 4.3.2.7 forbids
 *  answering these with another error). */
@inline export function icmpIsError(type: u32): bool {
  return type == ICMP_DEST_UNREACH || type == ICMP_SOURCE_QUENCH || type == ICMP_REDIRECT ||
    type == ICMP_TIME_EXCEEDED || type == ICMP_PARAM_PROBLEM;
}

/** Returns R_NONE iff the 8-byte header is present. */
export function checkIcmp(p: usize, len: u32): u16 {
  return len < ICMP_HDR_LEN ? R_TRUNCATED : R_NONE;
}

/** Write type, code, a zero checksum and the 32-bit rest-of-header word as
 *  two 16-bit halves (identifier/sequence, or unused/next-hop MTU). */
@inline export function emitIcmpHeader(p: usize, type: u32, code: u32, hi: u32, lo: u32): void {
  st8(p + ICMP_TYPE, type);
  st8(p + ICMP_CODE, code);
  st16(p + ICMP_CSUM, 0);
  st16(p + ICMP_ID, hi);
  st16(p + ICMP_SEQ, lo);
}
