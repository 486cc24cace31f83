// Filling the input slots from what the I/O layer read, when one read holds
// more than one packet: a TSO super-frame from an offloading tun, a UDP GRO
// train of VXLAN datagrams, a VXLAN datagram holding a whole super-frame.
// Each writes the slots' packets at HEADROOM and their metadata as a plain
// read would, for processPodBatch or processVxlanBatch.
import { carve } from "../layout";
import { E_NO_MEMORY, E_RANGE, HEADROOM, OK } from "../abi";
import { tsoSegment, tsoSegmentCount, tsoSegmentMaxLen } from "../offload/tso";
import { VNET_HDR_LEN } from "../offload/vnet";
import { encapAsVnet, ENCAP_OUTER } from "./wholeframe";
import { batchMax, metaBase, slotBase, slotSize } from "./state";
import { setInput } from "./verdict";

/** Per-segment lengths (one u32 per slot), carved by init. */
let ingestLens: usize = 0;
/** ingestEncapSuperframe keeps the 22 bytes it overwrites here. */
let ingestSaved: usize = 0;

/** Carve this stage's scratch; init calls it once, after the regions. */
export function ingestCarve(): bool {
  ingestLens = carve(<usize>batchMax * 4);
  ingestSaved = carve(32);
  return ingestLens != 0 && ingestSaved != 0;
}

/** Kept for the ABI: init carves the offload scratch now. Returns OK once
 *  init has succeeded, else E_NO_MEMORY. */
export function offloadSetup(): i32 {
  return ingestLens == 0 || ingestSaved == 0 ? E_NO_MEMORY : OK;
}

/** Segment one virtio_net_hdr + packet read from an offloading tun (at
 *  `src`, `srcLen` bytes) into pod-side input slots first.. (at HEADROOM),
 *  filling their metadata as readTun would. Returns the number of slots
 *  used; 0 when the frame needs more slots than remain from `first` (the
 *  caller processes the batch and calls again with first = 0); a negative
 *  status when the frame is refused (counted by the caller as a drop). */
export function ingestSuperframe(src: usize, srcLen: u32, first: u32): i32 {
  const need = tsoSegmentCount(src, srcLen);
  if (need < 0) return need;
  const maxLen = tsoSegmentMaxLen(src, srcLen);
  if (maxLen < 0 || <u32>maxLen > slotSize - HEADROOM) return E_RANGE;
  if (first >= batchMax || <u32>need > batchMax - first) return 0;
  const lens = ingestLens;
  const got = tsoSegment(src, srcLen, slotBase + <usize>first * slotSize + HEADROOM, slotSize, batchMax - first, lens);
  if (got <= 0) return got < 0 ? got : E_RANGE;
  for (let k: u32 = 0; k < <u32>got; k++) {
    setInput(metaBase + (<usize>(first + k) << 5), HEADROOM, load<u32>(lens + (<usize>k << 2)), 0, 0, 0);
  }
  return got;
}

/** UDP GRO on the underlay: one received buffer at `src` of `len` bytes
 *  holds consecutive VXLAN datagrams of `seg` bytes each (the last may be
 *  shorter; seg 0 = one datagram). Copy as many whole datagrams as fit into
 *  input slots first.. (at HEADROOM) with their metadata (outer source
 *  `addr`, destination `addr2`, TOS `tos`), for processVxlanBatch. Returns
 *  the number of datagrams taken (the caller advances by that many x seg and
 *  calls again after processing when slots ran out), or E_RANGE when a
 *  datagram cannot fit a slot at all. */
export function ingestDatagrams(src: usize, len: u32, seg: u32, first: u32, addr: u32, addr2: u32, tos: u32): i32 {
  if (seg == 0 || seg > len) seg = len;
  if (seg == 0) return 0;
  if (seg > slotSize - HEADROOM) return E_RANGE;
  let k: u32 = 0;
  let at: u32 = 0;
  while (at < len && first + k < batchMax) {
    const n = len - at < seg ? len - at : seg;
    const i = first + k;
    memory.copy(slotBase + <usize>i * slotSize + HEADROOM, src + at, n);
    setInput(metaBase + (<usize>i << 5), HEADROOM, n, addr, addr2, tos);
    at += n;
    k++;
  }
  return <i32>k;
}

/** A VXLAN datagram that holds a whole TCP super-frame: a kernel VTEP's
 *  GSO packet (SKB_GSO_UDP_TUNNEL) that crossed only virtual links (veth,
 *  routing between namespaces), which never segment it, reaches a UDP socket
 *  with UDP_GRO in one piece: VXLAN + Ethernet + an IPv4/TCP packet of up to
 *  64 KiB, its TCP checksum possibly only the pseudo-header part. Segment it
 *  into input slots first.. as the datagrams the wire would have carried
 *  (inner packets of the tunnel MTU, checksums computed from scratch), each
 *  with the outer metadata, for processVxlanBatch. Returns the number of
 *  slots used, 0 when they do not fit from `first` (process the batch and
 *  call again with 0), or E_RANGE for anything else (counted by the caller).
 *  The datagram's bytes are left as they were. */
export function ingestEncapSuperframe(src: usize, len: u32, first: u32, addr: u32, addr2: u32, tos: u32): i32 {
  const outer = ENCAP_OUTER;
  if (ingestSaved == 0) return E_NO_MEMORY;
  const plen = len - outer;
  const v = encapAsVnet(src, len, ingestSaved);
  if (v == 0) return E_RANGE;
  const need = tsoSegmentCount(v, plen + VNET_HDR_LEN);
  let got: i32 = 0;
  if (need < 0) got = need;
  else if (first >= batchMax || <u32>need > batchMax - first) got = 0;
  else got = tsoSegment(v, plen + VNET_HDR_LEN, slotBase + <usize>first * slotSize + HEADROOM + outer, slotSize, batchMax - first, ingestLens);
  memory.copy(src, ingestSaved, outer);
  for (let k: u32 = 0; k < <u32>max(got, 0); k++) {
    const i = first + k;
    memory.copy(slotBase + <usize>i * slotSize + HEADROOM, ingestSaved, outer);
    setInput(metaBase + (<usize>i << 5), HEADROOM, load<u32>(ingestLens + (<usize>k << 2)) + outer, addr, addr2, tos);
  }
  return got;
}

/** Re-arm the first `n` metadata records as fresh input (benchmarks and
 *  fuzzing replay one batch many times): off, len, outer source, outer TOS. */
export function rearmBatch(n: u32, off: u32, len: u32, addr: u32, tos: u32): void {
  if (n > batchMax) n = batchMax;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaBase + (<usize>i << 5);
    store<u32>(m, off, 0);
    store<u32>(m, len, 4);
    store<u32>(m, addr, 12);
    store<u8>(m, <u8>tos, 20);
  }
}
