// ICMP errors generated where a router would (RFC 1812 4.3.2): time exceeded,
// destination unreachable (no route), fragmentation needed (RFC 1191).
//
// Built in place: the error's IPv4 + ICMP headers (28 bytes, plus 14 of
// Ethernet in tap mode) are written into the headroom in front of the
// offending datagram, which becomes the quoted payload, truncated so the
// error is at most 576 bytes (RFC 1812 4.3.2.3).
import { ldMac, st16 } from "../wire/bytes";
import { checksum } from "../wire/checksum";
import { emitEthernet, ETHERTYPE_IPV4, ETH_SRC } from "../wire/ethernet";
import { emitIcmpHeader, icmpIsError } from "../wire/icmp";
import { emitIpv4, ipHeaderLen, ipIsLaterFragment, ipIsMartian, ipProto, ipSrc, ipDst, PROTO_ICMP } from "../wire/ipv4";
import { MODE_TAP, R_ICMP_RATE_LIMITED, R_ICMP_SUPPRESSED, VERDICT_REPLY } from "../abi";
import { cfgMode, cfgOverlay, cfgUnderlay, cfgVtepMac, icmpTake, nextOuterId } from "./state";
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
  let start = off - ERR_HDRS;
  let total = ERR_HDRS + quote;
  if (tap) {
    emitEthernet(o - 14, peerMac, cfgVtepMac, ETHERTYPE_IPV4);
    start -= 14;
    total += 14;
  }
  emit(m, VERDICT_REPLY, reason, start, total, src);
}
