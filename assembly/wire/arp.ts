// ARP for IPv4 over Ethernet (RFC 826).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |       Hardware type (1)       |     Protocol type (0x0800)    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  HLEN (6)     |  PLEN (4)     |          Operation            |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |              Sender hardware address (6)                      |
//  +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                               |  Sender protocol address (4)  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  (SPA cont.)                  |  Target hardware address (6)  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//  |                                                               |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                  Target protocol address (4)                  |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { ld16, ld32, ld8, ldMac, st16, st32, st8, stMac } from "./bytes";
import { R_ARP_IGNORED, R_NONE, R_TRUNCATED } from "../abi";

export const ARP_HTYPE: usize = 0;
export const ARP_PTYPE: usize = 2;
export const ARP_HLEN: usize = 4;
export const ARP_PLEN: usize = 5;
export const ARP_OPER: usize = 6;
export const ARP_SHA: usize = 8;
export const ARP_SPA: usize = 14;
export const ARP_THA: usize = 18;
export const ARP_TPA: usize = 24;
export const ARP_LEN: u32 = 28;

export const ARP_REQUEST: u32 = 1;
export const ARP_REPLY: u32 = 2;

@inline export function arpOper(p: usize): u32 { return ld16(p + ARP_OPER); }
@inline export function arpSha(p: usize): u64 { return ldMac(p + ARP_SHA); }
@inline export function arpSpa(p: usize): u32 { return ld32(p + ARP_SPA); }
@inline export function arpTha(p: usize): u64 { return ldMac(p + ARP_THA); }
@inline export function arpTpa(p: usize): u32 { return ld32(p + ARP_TPA); }

/** Returns R_NONE iff the 28 bytes are present and describe Ethernet/IPv4
 *  (htype 1, ptype 0x0800, hlen 6, plen 4); then all accessors are valid. */
export function checkArp(p: usize, len: u32): u16 {
  if (len < ARP_LEN) return R_TRUNCATED;
  if (ld16(p + ARP_HTYPE) != 1 || ld16(p + ARP_PTYPE) != 0x0800) return R_ARP_IGNORED;
  if (ld8(p + ARP_HLEN) != 6 || ld8(p + ARP_PLEN) != 4) return R_ARP_IGNORED;
  return R_NONE;
}

/** Write every field of an Ethernet/IPv4 ARP packet. */
export function emitArp(p: usize, oper: u32, sha: u64, spa: u32, tha: u64, tpa: u32): void {
  st16(p + ARP_HTYPE, 1);
  st16(p + ARP_PTYPE, 0x0800);
  st8(p + ARP_HLEN, 6);
  st8(p + ARP_PLEN, 4);
  st16(p + ARP_OPER, oper);
  stMac(p + ARP_SHA, sha);
  st32(p + ARP_SPA, spa);
  stMac(p + ARP_THA, tha);
  st32(p + ARP_TPA, tpa);
}
