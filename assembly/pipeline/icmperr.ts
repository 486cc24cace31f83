// ICMP errors generated where a router would (RFC 1812 4.3.2): time exceeded,
// destination unreachable (no route), fragmentation needed (RFC 1191); and
// for IPv6 (RFC 4443) destination unreachable and packet too big.
//
// Built in place: the error's IPv4 + ICMP headers (28 bytes, plus 14 of
// Ethernet in tap mode) are written into the headroom in front of the
// offending datagram, which becomes the quoted payload, truncated so the
// error is at most 576 bytes (RFC 1812 4.3.2.3).
import { ldMac, st16 } from "../wire/bytes";
import { checksum } from "../wire/checksum";
import { emitEthernet, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_SRC } from "../wire/ethernet";
import { emitIcmpHeader, icmpIsError } from "../wire/icmp";
import { emitIpv4, ipHeaderLen, ipIsLaterFragment, ipIsMartian, ipProto, ipSrc, ipDst, PROTO_ICMP } from "../wire/ipv4";
import { a6IsMartianSource, a6IsMulticast, a6IsUnspecified, emitIpv6, ip6Next, IP6_DST, IP6_HDR_LEN, IP6_MIN_MTU, IP6_SRC, PROTO_ICMPV6 } from "../wire/ipv6";
import { icmp6Checksum, icmp6IsError } from "../wire/icmp6";
import { MODE_TAP, R_ICMP_RATE_LIMITED, R_ICMP_SUPPRESSED, VERDICT_REPLY } from "../abi";
import { cfgMode, cfgOverlay, cfgOverlay6, cfgUnderlay, cfgVtepMac, icmpTake, nextOuterId } from "./state";
import { drop, emit } from "./verdict";

const ICMP_ERR_MAX: u32 = 576;
const ERR_HDRS: u32 = 28;

/** Answer the datagram at slot offset `off` (IPv4 header at `p`, `len` =
 *  its total length) with an ICMP error of `type`/`code` and, for
 *  fragmentation needed, the next-hop `mtu`. The metadata records a REPLY
 *  carrying `reason`, or a drop with R_ICMP_SUPPRESSED when RFC 1812 forbids
 *  an error (about an ICMP error, a non-first fragment, or a source that is
 *  not a unicast host), or a drop with R_ICMP_RATE_LIMITED when the token
 *  bucket (state.ts) is empty. Requires off >= 42 (HEADROOM guarantees it). */
export function replyIcmpError(m: usize, slot: usize, off: u32, p: usize, len: u32, type: u32, code: u32, mtu: u32, reason: u16): void {
  const src = ipSrc(p);
  if (ipIsLaterFragment(p) || ipIsMartian(src) || (ipDst(p) >>> 28) >= 0xe) {
    drop(m, R_ICMP_SUPPRESSED);
    return;
  }
  const hl = ipHeaderLen(p);
  if (ipProto(p) == PROTO_ICMP && hl + 1 <= len && icmpIsError(<u32>load<u8>(p + hl))) {
    drop(m, R_ICMP_SUPPRESSED);
    return;
  }
  if (!icmpTake()) {
    drop(m, R_ICMP_RATE_LIMITED);
    return;
  }
  const tap = cfgMode == MODE_TAP;
  // In tap mode the frame's source MAC, just in front of the IP header, is
  // where the error goes; read it before the new headers cover it.
  const peerMac: u64 = tap ? ldMac(p - 14 + ETH_SRC) : 0;
  const quote = len < ICMP_ERR_MAX - ERR_HDRS ? len : ICMP_ERR_MAX - ERR_HDRS;
  const o = p - ERR_HDRS;
  const from = cfgOverlay != 0 ? cfgOverlay : cfgUnderlay;
  // ICMP header + checksum first: emitIpv4 below overwrites nothing of it.
  emitIcmpHeader(o + 20, type, code, 0, mtu);
  st16(o + 22, checksum(o + 20, 8 + quote));
  emitIpv4(o, 0xc0, ERR_HDRS + quote, nextOuterId(), 0, 64, PROTO_ICMP, from, src);
  emitError(m, off - ERR_HDRS, o, ERR_HDRS + quote, ETHERTYPE_IPV4, peerMac, reason, src);
}

/** Emit the error built at `o` (`bytes` long, at slot offset `start`) as a
 *  REPLY carrying `reason`: in tap mode behind an Ethernet header of
 *  `etype` to `peerMac`, the offending frame's sender (read by the caller
 *  before the error's headers covered it). */
@inline function emitError(m: usize, start: u32, o: usize, bytes: u32, etype: u32, peerMac: u64, reason: u16, addr: u32): void {
  if (cfgMode == MODE_TAP) {
    emitEthernet(o - 14, peerMac, cfgVtepMac, etype);
    start -= 14;
    bytes += 14;
  }
  emit(m, VERDICT_REPLY, reason, start, bytes, addr);
}

const ICMP6_ERR_HDRS: u32 = 48; // IPv6 (40) + ICMPv6 (8)

/** The ICMPv6 counterpart (RFC 4443 3.1-3.3): answer the IPv6 packet at
 *  `p` (`len` = 40 + its payload length) with an error of `type`/`code`
 *  whose 32-bit field is `param` (the MTU of a packet too big), quoting as
 *  much of the packet as keeps the error within 1280 bytes (2.4 c), from
 *  this node's IPv6 overlay address, hop limit 64. Suppressed (2.4 e) for
 *  an error about an ICMPv6 error, a multicast destination, a source that
 *  is not a unicast host, or when no IPv6 overlay address is configured;
 *  rate limited (2.4 f) by the same token bucket as ICMPv4. Requires off >=
 *  62 (HEADROOM guarantees it). */
export function replyIcmp6Error(m: usize, off: u32, p: usize, len: u32, type: u32, code: u32, param: u32, reason: u16): void {
  const from = cfgOverlay6;
  if (a6IsMartianSource(p + IP6_SRC) || a6IsMulticast(p + IP6_DST) || a6IsUnspecified(from)) {
    drop(m, R_ICMP_SUPPRESSED);
    return;
  }
  if (ip6Next(p) == PROTO_ICMPV6 && len > IP6_HDR_LEN && icmp6IsError(<u32>load<u8>(p + IP6_HDR_LEN))) {
    drop(m, R_ICMP_SUPPRESSED);
    return;
  }
  if (!icmpTake()) {
    drop(m, R_ICMP_RATE_LIMITED);
    return;
  }
  const tap = cfgMode == MODE_TAP;
  const peerMac: u64 = tap ? ldMac(p - 14 + ETH_SRC) : 0;
  const quote = min(len, IP6_MIN_MTU - ICMP6_ERR_HDRS);
  const o = p - ICMP6_ERR_HDRS;
  // [o, o+48) lies in front of the packet: its addresses are still intact.
  emitIpv6(o, 0, 0, 8 + quote, PROTO_ICMPV6, 64, from, p + IP6_SRC);
  emitIcmpHeader(o + 40, type, code, param >>> 16, param & 0xffff);
  st16(o + 42, icmp6Checksum(o, 8 + quote));
  emitError(m, off - ICMP6_ERR_HDRS, o, ICMP6_ERR_HDRS + quote, ETHERTYPE_IPV6, peerMac, reason, 0);
}
