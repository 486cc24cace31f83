// TCP segmentation offload in software (the transmit side of a tun device
// opened with IFF_VNET_HDR and TUN_F_TSO4): one IPv4/TCP super-frame of up to
// 64 KiB, as the kernel hands it over, becomes MTU-sized segments with every
// header field a wire packet needs. The same work the kernel's
// tcp_gso_segment/inet_gso_segment do, and wireguard-go's gsoSplit.
//
// Per segment k of n (payload [k*mss, min((k+1)*mss, len))):
//   IPv4  headers (options included) copied; total length; id = id0 + k
//         (mod 2^16, as the kernel does without FIXEDID); checksum recomputed.
//   TCP   sequence = seq0 + k*mss; FIN and PSH only on the last segment, CWR
//         only on the first; every other field (ack, window, URG and its
//         pointer, options) copied; full checksum over pseudo header, TCP
//         header and payload. The partial sum in the super-frame's checksum
//         field is ignored: each segment's checksum is computed from scratch.
import { E_RANGE } from "../abi";
import { ld16, ld32, ld8, st16, st32, st8 } from "../wire/bytes";
import { csumCopy, csumFinish, csumPartial, csumPseudo } from "../wire/checksum";
import { checkIpv4, IP_ID, IP_TOTLEN, ipFillChecksum, ipHeaderLen, ipIsFragment, ipProto, ipSrc, ipDst, ipTotalLen, PROTO_TCP } from "../wire/ipv4";
import { checkTcp, TCP_CSUM, TCP_FIN, TCP_FLAGS, TCP_PSH, TCP_SEQ, tcpHeaderLen } from "../wire/tcp";
import { R_NONE } from "../abi";
import { checkIpv6, csumPseudo6, ip6Next, ip6PayloadLen, IP6_HDR_LEN, IP6_PLEN } from "../wire/ipv6";
import {
  checkVnet, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_HDR_LEN, vnetCsumOffset, vnetCsumStart, vnetFlags, vnetGsoSize, vnetGsoType,
} from "./vnet";

export const TCP_CWR: u32 = 0x80;

// The plan of the last tsoPlan call (module globals: nothing is allocated).
let planHdr: u32 = 0; // IPv4 + TCP header bytes copied into every segment
let planPayload: u32 = 0; // payload bytes of the super-frame
let planMss: u32 = 0; // payload bytes per segment
let planLen: u32 = 0; // the packet's length for gso_type NONE
let planV6: bool = false; // TCPV6: an IPv6 header (40 bytes, TCP right behind it)

/** Validate a vnet header + packet and compute how it splits. Returns the
 *  number of segments (1 for gso_type NONE) or E_RANGE for anything we do not
 *  handle: a bad virtio header, a GSO type other than NONE/TCPV4, for TCPV4 a
 *  packet that is not a whole unfragmented IPv4/TCP datagram whose checksum
 *  location (csum_start, csum_offset) is the TCP checksum field. */
function tsoPlan(src: usize, srcLen: u32): i32 {
  if (!checkVnet(src, srcLen)) return E_RANGE;
  const p = src + VNET_HDR_LEN;
  const len = srcLen - VNET_HDR_LEN;
  if ((vnetGsoType(src) & ~VNET_GSO_ECN) == VNET_GSO_NONE) {
    planLen = len;
    return 1;
  }
  planV6 = (vnetGsoType(src) & ~VNET_GSO_ECN) == VNET_GSO_TCPV6;
  if (planV6) return tsoPlan6(src, p, len);
  if (checkIpv4(p, len) != R_NONE || ipProto(p) != PROTO_TCP || ipIsFragment(p)) return E_RANGE;
  return planTcp(src, p, ipHeaderLen(p), ipTotalLen(p));
}

/** The common part: TCP at `p + ihl` in a packet of `total` bytes, the
 *  checksum location its checksum field; sets the plan, returns the count. */
function planTcp(src: usize, p: usize, ihl: u32, total: u32): i32 {
  if (vnetCsumStart(src) != ihl || vnetCsumOffset(src) != <u32>TCP_CSUM) return E_RANGE;
  const t = p + ihl;
  if (checkTcp(t, total - ihl) != R_NONE) return E_RANGE;
  const hdr = ihl + tcpHeaderLen(t);
  const payload = total - hdr;
  const mss = vnetGsoSize(src);
  planHdr = hdr;
  planPayload = payload;
  planMss = mss;
  return payload == 0 ? 1 : <i32>((payload + mss - 1) / mss);
}

/** tsoPlan for TCPV6: a whole IPv6 packet, TCP right behind the fixed
 *  header (no extension headers), whose checksum location is the TCP
 *  checksum field. */
function tsoPlan6(src: usize, p: usize, len: u32): i32 {
  if (checkIpv6(p, len) != R_NONE || ip6Next(p) != PROTO_TCP) return E_RANGE;
  return planTcp(src, p, IP6_HDR_LEN, IP6_HDR_LEN + ip6PayloadLen(p));
}

/** How many output slots tsoSegment needs for this input (1 for gso_type
 *  NONE), or E_RANGE when it would refuse the input. Writes nothing. */
export function tsoSegmentCount(src: usize, srcLen: u32): i32 {
  return tsoPlan(src, srcLen);
}

/** Bytes of the largest segment tsoSegment would write for this input (what
 *  each output slot must hold), or E_RANGE. Writes nothing. */
export function tsoSegmentMaxLen(src: usize, srcLen: u32): i32 {
  const n = tsoPlan(src, srcLen);
  if (n < 0) return n;
  if ((vnetGsoType(src) & ~VNET_GSO_ECN) == VNET_GSO_NONE) return <i32>planLen;
  return <i32>(planHdr + min(planMss, planPayload));
}

/** Finish a partial L4 checksum (NEEDS_CSUM) in place: the field already
 *  holds the pseudo-header sum, so the sum over [start, end) completes it.
 *  A result of 0 is stored as 0xFFFF (CSUM_MANGLED_0, as the kernel's
 *  skb_checksum_help does: UDP reserves 0 for "no checksum"). */
export function vnetFinishChecksum(p: usize, len: u32, start: u32, offset: u32): void {
  let c = csumFinish(csumPartial(p + start, len - start, 0));
  if (c == 0) c = 0xffff;
  st16(p + start + offset, c);
}

/** Segment the virtio_net_hdr + packet at `src` (`srcLen` bytes, header
 *  included) into output slots: segment k is written at the start of
 *  dst + k*dstStride and its length as u32 at outLens + 4k.
 *  gso_type TCPV4 (ECN bit allowed): MTU-sized IPv4/TCP segments of gso_size
 *  payload bytes each, headers and checksums complete (see the file comment).
 *  gso_type NONE: one segment, a copy of the packet, whose checksum is first
 *  finished in place in `src` when NEEDS_CSUM is set; any protocol.
 *  Returns the number of segments, or E_RANGE when the input is refused (see
 *  tsoSegmentCount), needs more than `maxOut` slots, or a segment is longer
 *  than `dstStride`; then nothing at all is written. Never writes outside
 *  [dst, dst + maxOut*dstStride) and outLens[0..maxOut); src and the output
 *  must not overlap. No allocation, no throw. */
export function tsoSegment(src: usize, srcLen: u32, dst: usize, dstStride: u32, maxOut: u32, outLens: usize): i32 {
  const n = tsoPlan(src, srcLen);
  if (n < 0) return n;
  if (<u32>n > maxOut) return E_RANGE;
  const p = src + VNET_HDR_LEN;
  if ((vnetGsoType(src) & ~VNET_GSO_ECN) == VNET_GSO_NONE) {
    const len = planLen;
    if (len > dstStride) return E_RANGE;
    if ((vnetFlags(src) & VNET_F_NEEDS_CSUM) != 0) vnetFinishChecksum(p, len, vnetCsumStart(src), vnetCsumOffset(src));
    memory.copy(dst, p, len);
    store<u32>(outLens, len);
    return 1;
  }
  const hdr = planHdr;
  const payload = planPayload;
  const mss = planMss;
  if (hdr + min(mss, payload) > dstStride) return E_RANGE;
  if (planV6) return tsoSegment6(p, n, dst, dstStride, outLens);
  const ihl = ipHeaderLen(p);
  const id0 = ld16(p + IP_ID);
  const seq0 = ld32(p + ihl + TCP_SEQ);
  const flags0 = ld8(p + ihl + TCP_FLAGS);
  const srcAddr = ipSrc(p);
  const dstAddr = ipDst(p);
  const last = <u32>n - 1;
  let off: u32 = 0;
  for (let k: u32 = 0; k < <u32>n; k++) {
    const seg = min(mss, payload - off);
    const o = dst + <usize>k * dstStride;
    const t = o + ihl;
    memory.copy(o, p, hdr);
    st16(o + IP_TOTLEN, hdr + seg);
    st16(o + IP_ID, (id0 + k) & 0xffff);
    ipFillChecksum(o);
    st32(t + TCP_SEQ, seq0 + off);
    let f = flags0;
    if (k != last) f &= ~(TCP_FIN | TCP_PSH);
    if (k != 0) f &= ~TCP_CWR;
    st8(t + TCP_FLAGS, f);
    st16(t + TCP_CSUM, 0);
    // Headers, then the payload copied and summed in one pass (the TCP
    // header is a multiple of 4 bytes, so the payload sum joins at an even offset).
    const tl = hdr - ihl + seg;
    const acc = csumPartial(t, hdr - ihl, csumPseudo(srcAddr, dstAddr, PROTO_TCP, tl));
    st16(t + TCP_CSUM, csumFinish(csumCopy(o + hdr, p + hdr + off, seg, acc)));
    store<u32>(outLens + (<usize>k << 2), hdr + seg);
    off += seg;
  }
  return n;
}

/** The IPv6 loop of tsoSegment: per segment the payload length, sequence,
 *  flags (as for IPv4) and a full TCP checksum over the IPv6 pseudo header;
 *  IPv6 has no identification or header checksum. */
function tsoSegment6(p: usize, n: i32, dst: usize, dstStride: u32, outLens: usize): i32 {
  const hdr = planHdr;
  const payload = planPayload;
  const mss = planMss;
  const seq0 = ld32(p + IP6_HDR_LEN + TCP_SEQ);
  const flags0 = ld8(p + IP6_HDR_LEN + TCP_FLAGS);
  const last = <u32>n - 1;
  let off: u32 = 0;
  for (let k: u32 = 0; k < <u32>n; k++) {
    const seg = min(mss, payload - off);
    const o = dst + <usize>k * dstStride;
    const t = o + IP6_HDR_LEN;
    memory.copy(o, p, hdr);
    const tl = hdr - IP6_HDR_LEN + seg;
    st16(o + IP6_PLEN, tl);
    st32(t + TCP_SEQ, seq0 + off);
    let f = flags0;
    if (k != last) f &= ~(TCP_FIN | TCP_PSH);
    if (k != 0) f &= ~TCP_CWR;
    st8(t + TCP_FLAGS, f);
    st16(t + TCP_CSUM, 0);
    const acc = csumPartial(t, hdr - IP6_HDR_LEN, csumPseudo6(o, PROTO_TCP, tl));
    st16(t + TCP_CSUM, csumFinish(csumCopy(o + hdr, p + hdr + off, seg, acc)));
    store<u32>(outLens + (<usize>k << 2), hdr + seg);
    off += seg;
  }
  return n;
}

/** The first segment of a TCPV4 super-frame (as tsoSegment writes it) at
 *  `dst`, except that it keeps every TCP flag of the super-frame (FIN and PSH
 *  too): it stands for the whole frame in the pipeline (see ../pipeline/wholeframe.ts).
 *  Returns the frame's segment count (its length as u32 at outLen), or
 *  E_RANGE when tsoSegment would refuse the frame, the frame is not TCPV4,
 *  or the segment is longer than `room`. */
export function tsoFirstSegment(src: usize, srcLen: u32, dst: usize, room: u32, outLen: usize): i32 {
  const n = tsoPlan(src, srcLen);
  if (n < 0) return n;
  if ((vnetGsoType(src) & ~VNET_GSO_ECN) != VNET_GSO_TCPV4 || planPayload == 0) return E_RANGE;
  const p = src + VNET_HDR_LEN;
  const hdr = planHdr;
  const seg = min(planMss, planPayload);
  if (hdr + seg > room) return E_RANGE;
  const ihl = ipHeaderLen(p);
  const t = dst + ihl;
  memory.copy(dst, p, hdr);
  st16(dst + IP_TOTLEN, hdr + seg);
  ipFillChecksum(dst);
  st16(t + TCP_CSUM, 0);
  const tl = hdr - ihl + seg;
  const acc = csumPartial(t, hdr - ihl, csumPseudo(ipSrc(p), ipDst(p), PROTO_TCP, tl));
  st16(t + TCP_CSUM, csumFinish(csumCopy(dst + hdr, p + hdr, seg, acc)));
  store<u32>(outLen, hdr + seg);
  return n;
}
