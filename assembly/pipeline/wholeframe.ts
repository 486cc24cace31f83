// Whole TCP super-frames inside one VXLAN packet, both directions.
//
// Sending, VXLAN segmentation by the kernel (tunnel.kernelGso): a TCP super-frame
// read from the pod tun leaves as ONE encapsulated packet written to a tap
// with a virtio_net_hdr carrying UDP tunnel GSO (Linux 6.17+:
// VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4 with TUN_F_UDP_TUNNEL_GSO). The kernel
// forwards it to the underlay like its own vxlan's packets: the NIC (or the
// kernel's GSO, or nothing at all on a veth) cuts it into MTU datagrams,
// with the inner TCP headers and checksums of each. Instead of segmenting
// 64 KiB in WASM and sending ~45 datagrams, we build ~90 bytes of headers.
//
// The pipeline still decides everything: the super-frame's first segment,
// with all of the frame's TCP flags, goes through processPodBatch as its
// representative; when it leaves as VXLAN, its processed headers (VXLAN
// template, source port) are put in front of the whole payload.
//
// The frame written to the tap, for an inner packet at q:
//   q-88  virtio_net_hdr_v1_hash_tunnel (24): flags NEEDS_CSUM, gso_type
//         TCPV4 | UDP_TUNNEL_IPV4 (| ECN), hdr_len, gso_size, csum_start
//         (inner TCP), csum_offset 16, num_buffers, hash (8) zero,
//         outer_th_offset (outer UDP), inner_nh_offset (inner IP); offsets
//         count from the start of the Ethernet header.
//   q-64  Ethernet: to the tap's own MAC, so the kernel takes it in and routes it
//   q-50  outer IPv4 + UDP + VXLAN + inner Ethernet, from the representative
//   q     inner IPv4 + TCP (the representative's), payload as read
import { MODE_TUN, E_RANGE, HEADROOM, C_RX_VXLAN_PKTS, C_TO_DEVICE_PKTS, VERDICT_TO_DEVICE, META_LEN, META_OFF, META_VERDICT, META_REASON, NH_VXLAN, R_NONE, VERDICT_DROP, VERDICT_TX_UNDERLAY,
  C_RX_POD_PKTS, C_TX_VXLAN_PKTS, C_VERDICT_BASE } from "../abi";
import { st16, st32, st8 } from "../wire/bytes";
import { csumPartialField } from "../wire/checksum";
import { checkIpv4, ipChecksumOk, ipDst, ipFillChecksum, ipHeaderLen, ipIsFragment, ipProto, ipSrc, ipTotalLen, IP_TOTLEN, IP_TTL, PROTO_TCP, PROTO_UDP } from "../wire/ipv4";
import { checkTcp, TCP_CSUM, TCP_FLAGS, tcpHeaderLen } from "../wire/tcp";
import { vxlanFlags, VXLAN_FLAG_I, VXLAN_HDR_LEN, VXLAN_OVERHEAD } from "../wire/vxlan";
import { ld16 } from "../wire/bytes";
import { ETH_HDR_LEN, ETH_TYPE, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../wire/ethernet";
import { checkIpv6, ip6Next, ip6PayloadLen, IP6_HDR_LEN } from "../wire/ipv6";
import { lpmLookup, LPM_MISS } from "../tables/lpm";
import { nhGateway, nhKind, peerOver6, peerValid } from "./peers";
import { htFind, htValueAt } from "../tables/hash";
import { setInput } from "./verdict";
import { natEnabled } from "./nat";
import { batchMax, cfgMode, cfgUnderlayMtu, count, fdbTable, metaBase, neighTable, slotBase, slotSize } from "./state";
import { carve } from "../layout";
import { tsoFirstSegment, tsoSegmentCount } from "../offload/tso";
import { emitVnet, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_HDR_LEN, vnetGsoSize, vnetGsoType } from "../offload/vnet";

export const TNL_VNET_LEN: u32 = 24;
/** Bytes in front of the inner IPv4 header: tunnel vnet header, Ethernet, outer headers. */
export const TNL_PREFIX: u32 = TNL_VNET_LEN + ETH_HDR_LEN + VXLAN_OVERHEAD;
const GSO_TCPV4_TUNNEL_IPV4: u32 = 0x01 | 0x20;

let tapMacHi: u32 = 0; // first 2 bytes of the tap's MAC
let tapMacLo: u32 = 0; // last 4
// Scratch, carved by init (wholeFrameCarve): the representative's segment
// length (sending), and the 22 bytes encapAsVnet overwrites plus the
// representative's length (receiving).
let repLens: usize = 0;
let rxSaved: usize = 0;
let rxLens: usize = 0;
let gsoOn: bool = false;
let rxOn: bool = false;

/** Carve this stage's scratch; init calls it once. False when out of memory. */
export function wholeFrameCarve(): bool {
  const s = carve(64);
  if (s == 0) return false;
  repLens = s;
  rxSaved = s + 16;
  rxLens = s + 48;
  return true;
}

/** Turn the sending side on: the tap's MAC (frames must be addressed to
 *  it); at start. `scratch` is ignored (init carves this stage's scratch;
 *  the parameter stays for the ABI's sake). */
export function gsoSetup(macHi: u32, macLo: u32, scratch: usize): void {
  tapMacHi = macHi;
  tapMacLo = macLo;
  gsoOn = repLens != 0;
}

/** The representative's processed IPv4/TCP header, copied to `q`, now heads
 *  the whole frame (`innerLen` bytes): its total length, a fresh header
 *  checksum, and the TCP checksum left partial for the kernel to finish per
 *  segment. */
function headWholeFrame(q: usize, ihl: u32, innerLen: u32): void {
  st16(q + IP_TOTLEN, innerLen);
  ipFillChecksum(q);
  st16(q + ihl + TCP_CSUM, csumPartialField(ipSrc(q), ipDst(q), PROTO_TCP, innerLen - ihl));
}

/** A representative's frame went out whole: count its other segments as
 *  if each had gone through the pipeline (packets on the input counter
 *  `rxC`, bytes beyond the representative's on rxC + 1; the same on `outC`;
 *  the verdict's counter), and mark the slot as handled, a silent drop the
 *  I/O layer skips. */
function settle(m: usize, segs: u32, rxC: u32, rxBytes: u64, outC: u32, outBytes: u64, verdict: u16): void {
  const more = <u64>(segs - 1);
  count(rxC, more);
  count(rxC + 1, rxBytes);
  count(outC, more);
  count(outC + 1, outBytes);
  count(C_VERDICT_BASE + verdict, more);
  store<u16>(m, VERDICT_DROP, META_VERDICT);
  store<u16>(m, R_NONE, META_REASON);
}

/** The segment count of the super-frame at `src` (vnet header + IPv4/TCP,
 *  `srcLen` bytes) when it can leave as one tunnel GSO packet: a TCPV4 frame
 *  of two segments or more whose destination routes to a VXLAN peer over
 *  IPv4, small enough for one outer IPv4 packet; else 0.
 *  Reads only. */
export function gsoSegments(src: usize, srcLen: u32): i32 {
  // The outer IPv4 total length must hold the whole frame (a 64 KiB inner
  // packet plus 50 bytes does not: such a frame is segmented here instead).
  if (!gsoOn || srcLen <= VNET_HDR_LEN + 40 || srcLen - VNET_HDR_LEN + VXLAN_OVERHEAD > 0xffff) return 0;
  if ((vnetGsoType(src) & ~VNET_GSO_ECN) != VNET_GSO_TCPV4) return 0;
  const nh = lpmLookup(ipDst(src + VNET_HDR_LEN));
  if (nh == LPM_MISS || nhKind(nh) != NH_VXLAN || vxlanOver6(nh)) return 0;
  const n = tsoSegmentCount(src, srcLen);
  return n < 2 ? 0 : n;
}

/** The VXLAN next hop `nh` leads to a peer reached over IPv6 (resolved as
 *  forward.ts does: the gateway's neighbour MAC, its FDB entry). Such a
 *  frame cannot leave whole (the tap takes IPv4 UDP tunnel GSO only), and
 *  it must be refused before its representative is taken: gsoBuild
 *  refusing afterwards would flush the representative alone and lose the
 *  rest of the frame. Unresolved: false (the representative is dropped
 *  like any packet of the frame would be). */
function vxlanOver6(nh: u32): bool {
  const ns = htFind(neighTable, <u64>nhGateway(nh));
  if (ns < 0) return false;
  const fs = htFind(fdbTable, htValueAt(neighTable, ns));
  if (fs < 0) return false;
  const peer = <u32>htValueAt(fdbTable, fs);
  return peerValid(peer) && peerOver6(peer);
}

/** Put the representative of the super-frame at `src` (vnet header + IPv4/TCP,
 *  `srcLen` bytes) in pod-side input slot `i`. Returns the frame's segment
 *  count when the frame can leave as one tunnel GSO packet (gsoSegments: a
 *  TCPV4 frame of two segments or more whose destination routes to a VXLAN
 *  peer over IPv4); 0 when
 *  it cannot (the caller segments it as usual); nothing is written then. */
export function gsoRepresentative(src: usize, srcLen: u32, i: u32): i32 {
  if (i >= batchMax || gsoSegments(src, srcLen) == 0) return 0;
  const slot = slotBase + <usize>i * slotSize;
  const n = tsoFirstSegment(src, srcLen, slot + HEADROOM, slotSize - HEADROOM, repLens);
  if (n < 2) return 0;
  setInput(metaBase + (<usize>i << 5), HEADROOM, load<u32>(repLens), 0, 0, 0);
  return n;
}

/** After processPodBatch: when representative `i` of the super-frame at
 *  `src` (`srcLen` bytes, TNL_PREFIX - VNET_HDR_LEN bytes free before it)
 *  became a VXLAN packet, build the tunnel GSO frame in front of the
 *  payload, mark the slot as handled (its verdict becomes a silent drop) and
 *  count the frame's other segments as the pipeline would have. Returns the
 *  frame's length (it starts at src + VNET_HDR_LEN - TNL_PREFIX), or 0 when
 *  the representative went elsewhere (the caller handles it as any packet). */
export function gsoBuild(i: u32, src: usize, srcLen: u32, segs: u32): u32 {
  const m = metaBase + (<usize>i << 5);
  if (load<u16>(m, META_VERDICT) != VERDICT_TX_UNDERLAY) return 0;
  const o = slotBase + <usize>i * slotSize + load<u32>(m, META_OFF);
  const repLen = load<u32>(m, META_LEN);
  // IPv4 outer only (gsoSegments refuses IPv6 peers; a version check
  // anyway, as an IPv6 header's byte 9 is an address byte).
  if (load<u8>(o) >> 4 != 4 || ipProto(o) != PROTO_UDP || ipHeaderLen(o) != 20 || repLen < VXLAN_OVERHEAD + 40) return 0;
  const q = src + VNET_HDR_LEN;
  const ihl = ipHeaderLen(q);
  const hdr = ihl + tcpHeaderLen(q + ihl);
  const ri = o + VXLAN_OVERHEAD; // the representative's inner IPv4
  if (ipHeaderLen(ri) != ihl || tcpHeaderLen(ri + ihl) != hdr - ihl) return 0;
  const innerLen = srcLen - VNET_HDR_LEN;
  // The outer headers land on the tun's vnet header: read it first.
  const gsoSize = vnetGsoSize(src);
  const ecn = vnetGsoType(src) & VNET_GSO_ECN;
  // Outer headers and the processed inner headers over the frame's own.
  memory.copy(q - VXLAN_OVERHEAD, o, VXLAN_OVERHEAD + hdr);
  headWholeFrame(q, ihl, innerLen);
  const outer = q - VXLAN_OVERHEAD;
  st16(outer + IP_TOTLEN, innerLen + VXLAN_OVERHEAD);
  // Forwarding from the tap takes one off; it leaves with the configured TTL.
  const ttl = load<u8>(outer + IP_TTL);
  if (ttl < 255) st8(outer + IP_TTL, ttl + 1);
  ipFillChecksum(outer);
  st16(outer + 20 + 4, innerLen + VXLAN_OVERHEAD - 20); // UDP length; checksum stays 0
  const eth = outer - ETH_HDR_LEN;
  st16(eth, tapMacHi);
  st32(eth + 2, tapMacLo);
  st16(eth + 6, tapMacHi);
  st32(eth + 8, tapMacLo ^ 1);
  st16(eth + 12, 0x0800);
  const v = eth - TNL_VNET_LEN;
  const l2: u32 = ETH_HDR_LEN + VXLAN_OVERHEAD;
  store<u8>(v, 1, 0); // NEEDS_CSUM
  store<u8>(v, <u8>(GSO_TCPV4_TUNNEL_IPV4 | ecn), 1);
  store<u16>(v, <u16>(l2 + hdr), 2);
  store<u16>(v, <u16>gsoSize, 4);
  store<u16>(v, <u16>(l2 + ihl), 6);
  store<u16>(v, <u16>TCP_CSUM, 8);
  store<u16>(v, 0, 10);
  store<u64>(v, 0, 12);
  store<u16>(v, <u16>(ETH_HDR_LEN + 20), 20);
  store<u16>(v, <u16>l2, 22);
  const allInner = <u64>(innerLen - hdr) + <u64>segs * hdr;
  settle(m, segs, C_RX_POD_PKTS, allInner - (repLen - VXLAN_OVERHEAD), C_TX_VXLAN_PKTS, allInner + <u64>segs * VXLAN_OVERHEAD - repLen,
    VERDICT_TX_UNDERLAY);
  return TNL_PREFIX + innerLen;
}

// Receiving: a VXLAN datagram that holds a whole TCP super-frame (a GSO
// packet, ours or a kernel VTEP's, that crossed only virtual links, which
// never segment it). The fast way: its first segment, with all of the
// frame's flags, goes through processVxlanBatch as its representative; when
// that is delivered to the tun, the frame is written to the tun whole, as a
// TSO super-frame with a virtio_net_hdr, the processed headers in front.
// Otherwise (or with NAT, tap mode) ingestEncapSuperframe segments it.

export const ENCAP_OUTER: u32 = VXLAN_HDR_LEN + ETH_HDR_LEN; // 22: VXLAN + inner Ethernet
/** Where encapBuild's tun write starts in its datagram: its virtio_net_hdr
 *  takes the last 10 of the 22 bytes before the inner IPv4 header. */
export const ENCAP_WRITE_AT: u32 = ENCAP_OUTER - VNET_HDR_LEN;

/** Header bytes (IPv4 + TCP) of the super-frame in the VXLAN datagram at
 *  `src` (`len` bytes), or 0 when it is not one: VXLAN with the I flag,
 *  IPv4 with a valid header checksum, an unfragmented TCP packet whose
 *  total length fills the datagram,
 *  and a segment size (tunnel MTU - headers) that fits a slot. */
function encapPlan(src: usize, len: u32): u32 {
  if (len < ENCAP_OUTER + 40 || (vxlanFlags(src) & VXLAN_FLAG_I) == 0) return 0;
  const p = src + ENCAP_OUTER;
  const plen = len - ENCAP_OUTER;
  if (ld16(src + VXLAN_HDR_LEN + ETH_TYPE) == ETHERTYPE_IPV6) return encapPlan6(p, plen);
  if (ld16(src + VXLAN_HDR_LEN + ETH_TYPE) != ETHERTYPE_IPV4) return 0;
  // The header checksum too: each segment gets a fresh one, which must not
  // vouch for a header that arrived damaged (a bug the fuzzer found).
  if (checkIpv4(p, plen) != R_NONE || !ipChecksumOk(p) || ipProto(p) != PROTO_TCP || ipIsFragment(p) || ipTotalLen(p) != plen) return 0;
  const ihl = ipHeaderLen(p);
  if (checkTcp(p + ihl, plen - ihl) != R_NONE) return 0;
  const hdr = ihl + tcpHeaderLen(p + ihl);
  const innerMtu = cfgUnderlayMtu - VXLAN_OVERHEAD;
  if (innerMtu <= hdr + 8 || HEADROOM + ENCAP_OUTER + innerMtu > slotSize) return 0;
  return hdr;
}

/** encapPlan for an IPv6 super-frame (a kernel VTEP's TCP over IPv6):
 *  TCP right behind the fixed header, the payload length filling the
 *  datagram. Only segmented here (tsoSegment's TCPV6), never written whole
 *  (that would be a follow-up now that the tun takes TSO6 with node.ipv6);
 *  the segments reach the tun coalesced again by GRO (offload/gro.ts). */
function encapPlan6(p: usize, plen: u32): u32 {
  if (checkIpv6(p, plen) != R_NONE || ip6Next(p) != PROTO_TCP || IP6_HDR_LEN + ip6PayloadLen(p) != plen) return 0;
  if (checkTcp(p + IP6_HDR_LEN, plen - IP6_HDR_LEN) != R_NONE) return 0;
  const hdr = IP6_HDR_LEN + tcpHeaderLen(p + IP6_HDR_LEN);
  const innerMtu = cfgUnderlayMtu - VXLAN_OVERHEAD;
  if (innerMtu <= hdr + 8 || HEADROOM + ENCAP_OUTER + innerMtu > slotSize) return 0;
  return hdr;
}

/** For the segmenter: save the 22 bytes of VXLAN + Ethernet at `save` and
 *  write a TCPV4 virtio_net_hdr (gso_size = tunnel MTU - headers) over the 10
 *  before the inner IPv4 header. Returns the header's address, or 0 when
 *  the datagram holds no super-frame (nothing written). The caller puts the
 *  22 bytes back. */
export function encapAsVnet(src: usize, len: u32, save: usize): usize {
  const hdr = encapPlan(src, len);
  if (hdr == 0) return 0;
  const p = src + ENCAP_OUTER;
  memory.copy(save, src, ENCAP_OUTER);
  const v = p - VNET_HDR_LEN;
  const six = ld16(src + VXLAN_HDR_LEN + ETH_TYPE) == ETHERTYPE_IPV6;
  emitVnet(v, VNET_F_NEEDS_CSUM, six ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4, hdr, cfgUnderlayMtu - VXLAN_OVERHEAD - hdr, six ? IP6_HDR_LEN : ipHeaderLen(p), <u32>TCP_CSUM);
  return v;
}

/** Turn the receiving side's whole-frame writes on; at start. `scratch` is
 *  ignored (init carves it; the parameter stays for the ABI's sake). */
export function encapRxSetup(scratch: usize): void {
  rxOn = rxSaved != 0;
}

/** Put the representative of the super-frame in the VXLAN datagram at `src`
 *  (`len` bytes) in underlay-side slot `i`, with the outer metadata. Returns
 *  the frame's segment count when it can be written to the tun whole (tun
 *  mode, two segments or more, NAT off: its connection state follows every
 *  packet); 0 when not (nothing written). */
export function encapRepresentative(src: usize, len: u32, i: u32, addr: u32, addr2: u32, tos: u32): i32 {
  if (!rxOn || cfgMode != MODE_TUN || i >= batchMax || natEnabled()) return 0;
  const v = encapAsVnet(src, len, rxSaved);
  if (v == 0) return 0;
  const slot = slotBase + <usize>i * slotSize;
  const n = tsoFirstSegment(v, len - ENCAP_OUTER + VNET_HDR_LEN, slot + HEADROOM + ENCAP_OUTER, slotSize - HEADROOM - ENCAP_OUTER, rxLens);
  memory.copy(src, rxSaved, ENCAP_OUTER);
  if (n < 2) return 0;
  memory.copy(slot + HEADROOM, rxSaved, ENCAP_OUTER);
  setInput(metaBase + (<usize>i << 5), HEADROOM, load<u32>(rxLens) + ENCAP_OUTER, addr, addr2, tos);
  return n;
}

/** After processVxlanBatch: when representative `i` of the datagram at `src`
 *  (`len` bytes) is to be delivered to the tun, turn the datagram into a tun
 *  write in place (virtio_net_hdr TCPV4, checksum partial, the processed
 *  headers), mark the slot as handled and count the other segments. Returns
 *  the write's length (it starts at src + ENCAP_WRITE_AT), or 0 when the representative
 *  went elsewhere (the caller handles it as any packet). */
export function encapBuild(i: u32, src: usize, len: u32, segs: u32): u32 {
  const m = metaBase + (<usize>i << 5);
  if (load<u16>(m, META_VERDICT) != VERDICT_TO_DEVICE || cfgMode != MODE_TUN) return 0;
  const o = slotBase + <usize>i * slotSize + load<u32>(m, META_OFF);
  const repLen = load<u32>(m, META_LEN);
  const q = src + ENCAP_OUTER;
  const ihl = ipHeaderLen(q);
  const hdr = ihl + tcpHeaderLen(q + ihl);
  if (repLen < hdr || ipHeaderLen(o) != ihl || tcpHeaderLen(o + ihl) != hdr - ihl) return 0;
  const innerLen = len - ENCAP_OUTER;
  memory.copy(q, o, hdr);
  headWholeFrame(q, ihl, innerLen);
  const cwr = (load<u8>(q + ihl + TCP_FLAGS) & 0x80) != 0;
  const mss = cfgUnderlayMtu - VXLAN_OVERHEAD - hdr;
  emitVnet(q - VNET_HDR_LEN, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4 | (cwr ? VNET_GSO_ECN : 0), hdr, mss, ihl, <u32>TCP_CSUM);
  const payload = <u64>(innerLen - hdr);
  settle(m, segs, C_RX_VXLAN_PKTS, payload + <u64>segs * (hdr + ENCAP_OUTER) - (repLen + ENCAP_OUTER), C_TO_DEVICE_PKTS,
    payload + <u64>segs * hdr - repLen, VERDICT_TO_DEVICE);
  return innerLen + VNET_HDR_LEN;
}
