// Ethernet II (IEEE 802.3 / DIX) header.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                    Destination MAC (6)                        |
//  +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                               |      Source MAC (6)           |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//  |                                                               |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |          EtherType            |  payload ...
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { ld16, ldMac, st16, stMac } from "./bytes";
import { R_NONE, R_TRUNCATED } from "../abi";

export const ETH_DST: usize = 0;
export const ETH_SRC: usize = 6;
export const ETH_TYPE: usize = 12;
export const ETH_HDR_LEN: u32 = 14;

export const ETHERTYPE_IPV4: u32 = 0x0800;
export const ETHERTYPE_ARP: u32 = 0x0806;
export const ETHERTYPE_VLAN: u32 = 0x8100;
export const ETHERTYPE_IPV6: u32 = 0x86dd;

export const MAC_BROADCAST: u64 = 0xffffffffffff;

@inline export function ethDst(p: usize): u64 { return ldMac(p + ETH_DST); }
@inline export function ethSrc(p: usize): u64 { return ldMac(p + ETH_SRC); }
@inline export function ethType(p: usize): u32 { return ld16(p + ETH_TYPE); }
@inline export function setEthDst(p: usize, m: u64): void { stMac(p + ETH_DST, m); }
@inline export function setEthSrc(p: usize, m: u64): void { stMac(p + ETH_SRC, m); }
@inline export function setEthType(p: usize, t: u32): void { st16(p + ETH_TYPE, t); }

/** Multicast (and broadcast) MACs have the group bit, the low bit of the first octet. */
@inline export function macIsMulticast(m: u64): bool { return ((m >> 40) & 1) != 0; }

/** Returns R_NONE iff `len` covers the 14-byte header, after which every
 *  accessor above reads inside the buffer. */
export function checkEthernet(p: usize, len: u32): u16 {
  return len < ETH_HDR_LEN ? R_TRUNCATED : R_NONE;
}

/** Write a whole Ethernet header. */
@inline export function emitEthernet(p: usize, dst: u64, src: u64, type: u32): void {
  stMac(p + ETH_DST, dst);
  stMac(p + ETH_SRC, src);
  st16(p + ETH_TYPE, type);
}
