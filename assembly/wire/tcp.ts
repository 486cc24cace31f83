// TCP header (RFC 9293).
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |          Source Port          |       Destination Port        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                        Sequence Number                        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |                    Acknowledgment Number                      |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |  Data |       |C|E|U|A|P|R|S|F|                               |
//  | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |           Checksum            |         Urgent Pointer        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { ld16, ld32, ld8, st16, st32, st8 } from "./bytes";
import { R_BAD_IP_HEADER, R_NONE, R_TRUNCATED } from "../abi";

export const TCP_SPORT: usize = 0;
export const TCP_DPORT: usize = 2;
export const TCP_SEQ: usize = 4;
export const TCP_ACK: usize = 8;
export const TCP_DOFF: usize = 12;
export const TCP_FLAGS: usize = 13;
export const TCP_WINDOW: usize = 14;
export const TCP_CSUM: usize = 16;
export const TCP_URG: usize = 18;
export const TCP_HDR_LEN: u32 = 20;

export const TCP_FIN: u32 = 0x01;
export const TCP_SYN: u32 = 0x02;
export const TCP_RST: u32 = 0x04;
export const TCP_PSH: u32 = 0x08;
export const TCP_ACKF: u32 = 0x10;

@inline export function tcpSrcPort(p: usize): u32 { return ld16(p + TCP_SPORT); }
@inline export function tcpDstPort(p: usize): u32 { return ld16(p + TCP_DPORT); }
@inline export function tcpSeq(p: usize): u32 { return ld32(p + TCP_SEQ); }
@inline export function tcpAck(p: usize): u32 { return ld32(p + TCP_ACK); }
@inline export function tcpHeaderLen(p: usize): u32 { return (ld8(p + TCP_DOFF) >> 4) << 2; }
@inline export function tcpFlags(p: usize): u32 { return ld8(p + TCP_FLAGS); }
@inline export function tcpWindow(p: usize): u32 { return ld16(p + TCP_WINDOW); }
@inline export function tcpChecksum(p: usize): u32 { return ld16(p + TCP_CSUM); }

/** Returns R_NONE iff the fixed header is present and the data offset
 *  (20..60 bytes) fits in `len`; then options are [p+20, p+tcpHeaderLen). */
export function checkTcp(p: usize, len: u32): u16 {
  if (len < TCP_HDR_LEN) return R_TRUNCATED;
  const hl = (ld8(p + TCP_DOFF) >> 4) << 2;
  if (hl < TCP_HDR_LEN) return R_BAD_IP_HEADER;
  if (hl > len) return R_TRUNCATED;
  return R_NONE;
}

/** Write the fixed 20-byte header (data offset 5, no options). */
export function emitTcp(p: usize, sport: u32, dport: u32, seq: u32, ack: u32, flags: u32, window: u32, csum: u32, urg: u32): void {
  st16(p + TCP_SPORT, sport);
  st16(p + TCP_DPORT, dport);
  st32(p + TCP_SEQ, seq);
  st32(p + TCP_ACK, ack);
  st8(p + TCP_DOFF, 5 << 4);
  st8(p + TCP_FLAGS, flags);
  st16(p + TCP_WINDOW, window);
  st16(p + TCP_CSUM, csum);
  st16(p + TCP_URG, urg);
}
