// IP in IP encapsulation (RFC 2003): an outer IPv4 header with protocol 4 in
// front of the unchanged inner datagram.
//
//                                       +---------------------------+
//                                       |      Outer IP Header      |
//   +---------------------------+       +---------------------------+
//   |         IP Header         |       |         IP Header         |
//   +---------------------------+ ====> +---------------------------+
//   |        IP Payload         |       |        IP Payload         |
//   +---------------------------+       +---------------------------+
//
// Outer fields (RFC 2003 3.1): TOS copied from the inner header (here refined
// by RFC 6040 for ECN), DF copied from the inner header (so PMTU discovery
// works end to end), TTL chosen by the encapsulator, protocol 4, checksum over
// the outer header only. The inner TTL is decremented once by the
// encapsulator acting as a router, and never again by the tunnel.

import { ld8 } from "./bytes";
import { IP_PROTO, PROTO_IPIP, checkIpv4, ipHeaderLen } from "./ipv4";
import { R_IPIP_BAD_PROTO, R_NONE } from "../abi";

export const IPIP_OVERHEAD: u32 = 20;

/** Returns R_NONE iff `len` bytes are an outer IPv4 datagram (checkIpv4)
 *  whose protocol is 4 and whose payload holds at least an inner IPv4 header
 *  that itself passes checkIpv4 within the outer total length. */
export function checkIpip(p: usize, len: u32): u16 {
  let r = checkIpv4(p, len);
  if (r != R_NONE) return r;
  if (ld8(p + IP_PROTO) != PROTO_IPIP) return R_IPIP_BAD_PROTO;
  const hl = ipHeaderLen(p);
  const tl = <u32>load<u8>(p + 2) << 8 | <u32>load<u8>(p + 3);
  return checkIpv4(p + hl, tl - hl);
}

/** Outer header length to skip for decapsulation (after checkIpip). */
@inline export function ipipInnerOffset(p: usize): u32 {
  return ipHeaderLen(p);
}

