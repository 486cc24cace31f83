// VXLAN header (RFC 7348 section 5), carried in UDP, destination port 4789.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |R|R|R|R|I|R|R|R|            Reserved                           |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                VXLAN Network Identifier (VNI) |   Reserved    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  inner Ethernet frame ...
//
// "The I flag MUST be set to 1 for a valid VNI. The other 7 bits (designated
// "R") are reserved fields and MUST be set to zero on transmission and ignored
// on receipt." Reserved fields likewise.
//
// Whole VXLAN-over-IPv4 packet as sent: outer IPv4 (20) + UDP (8) + VXLAN (8)
// + inner Ethernet (14) = 50 bytes of overhead in front of the inner IP packet.

import { ld32, ld8, st32 } from "./bytes";
import { ETH_HDR_LEN } from "./ethernet";
import { R_NONE, R_TRUNCATED, R_VXLAN_BAD_FLAGS } from "../abi";

export const VXLAN_FLAGS: usize = 0;
export const VXLAN_VNI: usize = 4;
export const VXLAN_HDR_LEN: u32 = 8;
export const VXLAN_FLAG_I: u32 = 0x08;
export const VXLAN_PORT: u32 = 4789;
/** Outer IPv4 + UDP + VXLAN + inner Ethernet. */
export const VXLAN_OVERHEAD: u32 = 50;

@inline export function vxlanFlags(p: usize): u32 { return ld8(p + VXLAN_FLAGS); }
@inline export function vxlanVni(p: usize): u32 { return ld32(p + VXLAN_VNI) >>> 8; }

/** Returns R_NONE iff the 8-byte VXLAN header and a whole inner Ethernet
 *  header are present and the I flag is set; reserved bits are ignored. */
export function checkVxlan(p: usize, len: u32): u16 {
  if (len < VXLAN_HDR_LEN + ETH_HDR_LEN) return R_TRUNCATED;
  if ((ld8(p + VXLAN_FLAGS) & VXLAN_FLAG_I) == 0) return R_VXLAN_BAD_FLAGS;
  return R_NONE;
}

/** Write both words: flags with only I set, reserved zero, VNI, reserved zero. */
@inline export function emitVxlan(p: usize, vni: u32): void {
  st32(p + VXLAN_FLAGS, VXLAN_FLAG_I << 24);
  st32(p + VXLAN_VNI, (vni & 0xffffff) << 8);
}
