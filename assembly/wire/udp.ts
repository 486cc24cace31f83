// UDP header (RFC 768).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |          Source Port          |       Destination Port        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |            Length             |           Checksum            |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { ld16, st16 } from "./bytes";
import { R_NONE, R_TRUNCATED, R_BAD_IP_HEADER } from "../abi";

export const UDP_SPORT: usize = 0;
export const UDP_DPORT: usize = 2;
export const UDP_LEN: usize = 4;
export const UDP_CSUM: usize = 6;
export const UDP_HDR_LEN: u32 = 8;

@inline export function udpSrcPort(p: usize): u32 { return ld16(p + UDP_SPORT); }
@inline export function udpDstPort(p: usize): u32 { return ld16(p + UDP_DPORT); }
@inline export function udpLength(p: usize): u32 { return ld16(p + UDP_LEN); }
@inline export function udpChecksum(p: usize): u32 { return ld16(p + UDP_CSUM); }

/** Returns R_NONE iff the 8-byte header is present and its length field
 *  covers the header and fits in `len`; then the payload is
 *  [p+8, p+udpLength(p)). */
export function checkUdp(p: usize, len: u32): u16 {
  if (len < UDP_HDR_LEN) return R_TRUNCATED;
  const l = ld16(p + UDP_LEN);
  if (l < UDP_HDR_LEN) return R_BAD_IP_HEADER;
  if (l > len) return R_TRUNCATED;
  return R_NONE;
}

/** Write every field. A zero checksum means "none" (RFC 768), which is what
 *  VXLAN over IPv4 sends (RFC 7348 section 5). */
@inline export function emitUdp(p: usize, sport: u32, dport: u32, length: u32, csum: u32): void {
  st16(p + UDP_SPORT, sport);
  st16(p + UDP_DPORT, dport);
  st16(p + UDP_LEN, length);
  st16(p + UDP_CSUM, csum);
}
