// wasm-overlay data path: the module's exported ABI.
//
// Where a packet goes, by file:
//   pipeline/forward.ts  pod side (tun/tap) -> route lookup -> encap / direct / ICMP error
//   pipeline/encap.ts    VXLAN and IPIP headers prepended in place from per-peer templates
//   pipeline/decap.ts    underlay (UDP 4789 / IP proto 4) -> validation -> pod side
//   tables/              LPM routes, hash tables (neighbours, FDB, peers by address)
//   wire/                one file per header
//
// Control-plane calls (init, configure, table writes) happen between batches,
// on the thread that runs the batches; batch calls never allocate or throw.
export * from "./tables/exports";
export * from "./wire/exports";
export * from "./nat/exports";
export * from "./offload/exports";
export { processPodBatch } from "./pipeline/forward";
export { processVxlanBatch, processIpipBatch } from "./pipeline/decap";
export { setNexthop, setPeer, clearPeer } from "./pipeline/peers";
export { setClock, setIcmpRateLimit } from "./pipeline/state";
export { pmtuIcmpBatch, setPeerPmtu, peerPmtu } from "./pipeline/pmtu";
export { natConfigure, natSetNow, natNow, translateIcmpError } from "./nat/stage";
export { svcSetup, svcClear, svcSetBackend, svcAdd, svcCount } from "./nat/service";

import { carve, regionsEnd } from "./layout";
import {
  E_NO_MEMORY, E_NOT_INIT, E_RANGE, HEADROOM, META_SIZE, OK, COUNTER_COUNT, REASON_COUNT, VERDICT_COUNT, VERDICT_REPLY,
  VERDICT_TO_DEVICE, VERDICT_TX_DIRECT, VERDICT_TX_UNDERLAY,
} from "./abi";
import { lpmSetup } from "./tables/lpm";
import { htCreate } from "./tables/hash";
import { setupNexthops, rebuildAllTemplates, nhMax, peerMax } from "./pipeline/peers";
import { tsoSegment, tsoSegmentCount, tsoSegmentMaxLen } from "./offload/tso";
import { groCoalesce } from "./offload/gro";
import { VNET_HDR_LEN } from "./offload/vnet";
import { encapAsVnet, ENCAP_OUTER } from "./offload/tnlgso";
import * as st from "./pipeline/state";
import { setInput } from "./pipeline/verdict";

let initialised = false;

/** Carve every region once: `batch` packet slots of `slotSize` bytes (>=
 *  HEADROOM + 1600), their metadata, counters, the LPM with `tbl8Groups`
 *  groups, `maxNexthops` next hops, `maxPeers` peers and the three hash
 *  tables. Returns OK, E_RANGE for bad sizes, E_NO_MEMORY, or E_RANGE when
 *  called twice (an instance is initialised once; make a new one instead). */
export function init(batch: u32, slotSize: u32, tbl8Groups: u32, maxNexthops: u32, maxPeers: u32, neighCap: u32, fdbCap: u32): i32 {
  if (initialised) return E_RANGE;
  if (batch == 0 || batch > 4096 || slotSize < HEADROOM + 1600 || (slotSize & 63) != 0) return E_RANGE;
  if (maxNexthops == 0 || maxNexthops > 0xfffffe || maxPeers == 0 || maxPeers > 0xfffe) return E_RANGE;
  const counters = carve(<usize>COUNTER_COUNT * 8);
  const meta = carve(<usize>batch * META_SIZE);
  const slots = carve(<usize>batch * slotSize, 4096);
  if (counters == 0 || meta == 0 || slots == 0) return E_NO_MEMORY;
  st.setRegions(slots, slotSize, meta, batch, counters);
  let r = lpmSetup(tbl8Groups);
  if (r != OK) return r;
  r = setupNexthops(maxNexthops, maxPeers);
  if (r != OK) return r;
  const neigh = htCreate(neighCap);
  const fdb = htCreate(fdbCap);
  const byAddr = htCreate(maxPeers * 2);
  if (neigh == 0 || fdb == 0 || byAddr == 0) return E_NO_MEMORY;
  st.setHashTables(neigh, fdb, byAddr);
  initialised = true;
  return OK;
}

/** Set the node and tunnel parameters (see pipeline/state.ts) and rebuild
 *  every peer's header templates. Addresses are host-order u32, MACs the low
 *  48 bits of a u64. */
export function configure(mode: u32, underlay: u32, overlay: u32, vtepMac: u64, devMac: u64, vni: u32, port: u32,
  sportMin: u32, sportMax: u32, outerTtl: u32, underlayMtu: u32): i32 {
  if (!initialised) return E_NOT_INIT;
  if (mode > 1 || vni > 0xffffff || port == 0 || port > 0xffff || sportMin == 0 || sportMin > sportMax ||
    sportMax > 0xffff || outerTtl == 0 || outerTtl > 255 || underlayMtu < 576 || underlayMtu > 65535) return E_RANGE;
  st.setConfig(mode, underlay, overlay, vtepMac, devMac, vni, port, sportMin, sportMax, outerTtl, underlayMtu);
  rebuildAllTemplates();
  return OK;
}

// --- where things are (the control plane keeps views over these) -----------
export function slotBase(): usize { return st.slotBase; }
export function slotSize(): u32 { return st.slotSize; }
export function metaBase(): usize { return st.metaBase; }
export function batchMax(): u32 { return st.batchMax; }
export function countersBase(): usize { return st.countersBase; }
export function neighTable(): usize { return st.neighTable; }
export function fdbTable(): usize { return st.fdbTable; }
export function peerAddrTable(): usize { return st.peerAddrTable; }
export function nexthopCapacity(): u32 { return nhMax; }
export function peerCapacity(): u32 { return peerMax; }

/** Bytes of linear memory handed out to regions so far. */
export function memoryInUse(): usize { return regionsEnd(); }

// --- ABI constants, so the TypeScript mirror can be checked against them ----
export function abiMetaSize(): u32 { return META_SIZE; }
export function abiHeadroom(): u32 { return HEADROOM; }
export function abiCounterCount(): u32 { return COUNTER_COUNT; }
export function abiReasonCount(): u32 { return <u32>REASON_COUNT; }
export function abiVerdictCount(): u32 { return <u32>VERDICT_COUNT; }


/** Re-arm the first `n` metadata records as fresh input (benchmarks and
 *  fuzzing replay one batch many times): off, len, outer source, outer TOS. */
export function rearmBatch(n: u32, off: u32, len: u32, addr: u32, tos: u32): void {
  if (n > st.batchMax) n = st.batchMax;
  for (let i: u32 = 0; i < n; i++) {
    const m = st.metaBase + (<usize>i << 5);
    store<u32>(m, off, 0);
    store<u32>(m, len, 4);
    store<u32>(m, addr, 12);
    store<u8>(m, <u8>tos, 20);
  }
}

/** Split the first `n` verdicts of a processed batch into two u16 index
 *  lists for the I/O layer: packets for the underlay (TX_UNDERLAY and
 *  TX_DIRECT) at `toUnderlay`, packets for the device (TO_DEVICE, REPLY) at
 *  `toDevice`. Returns (#underlay) | (#device << 16). */
export function collectVerdicts(n: u32, toUnderlay: usize, toDevice: usize): u32 {
  if (n > st.batchMax) n = st.batchMax;
  let u: u32 = 0;
  let d: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const v = load<u16>(st.metaBase + (<usize>i << 5), 8);
    if (v == VERDICT_TX_UNDERLAY || v == VERDICT_TX_DIRECT) {
      store<u16>(toUnderlay + (<usize>u << 1), <u16>i);
      u++;
    } else if (v == VERDICT_TO_DEVICE || v == VERDICT_REPLY) {
      store<u16>(toDevice + (<usize>d << 1), <u16>i);
      d++;
    }
  }
  return u | (d << 16);
}

/** collectVerdicts for UDP GSO: VXLAN packets for the underlay (TX_UNDERLAY
 *  with outer protocol UDP) at `toVxlan`, the other underlay packets (IPIP,
 *  direct) at `toRaw`, device-bound ones at `toDevice`; the three counts as
 *  u32 at `counts`. */
export function collectVerdictsGso(n: u32, toVxlan: usize, toRaw: usize, toDevice: usize, counts: usize): void {
  if (n > st.batchMax) n = st.batchMax;
  let x: u32 = 0;
  let r: u32 = 0;
  let d: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const m = st.metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v == VERDICT_TX_UNDERLAY || v == VERDICT_TX_DIRECT) {
      const p = st.slotBase + <usize>i * st.slotSize + load<u32>(m, 0);
      if (v == VERDICT_TX_UNDERLAY && load<u8>(p, 9) == 17) {
        store<u16>(toVxlan + (<usize>x << 1), <u16>i);
        x++;
      } else {
        store<u16>(toRaw + (<usize>r << 1), <u16>i);
        r++;
      }
    } else if (v == VERDICT_TO_DEVICE || v == VERDICT_REPLY) {
      store<u16>(toDevice + (<usize>d << 1), <u16>i);
      d++;
    }
  }
  store<u32>(counts, x);
  store<u32>(counts, r, 4);
  store<u32>(counts, d, 8);
}

/** Scratch memory for the I/O layer (index lists, native structs), carved
 *  once at start-up. Returns 0 when memory is exhausted. */
export function allocScratch(bytes: u32): usize {
  return carve(<usize>bytes, 64);
}

// --- tun offloads (IFF_VNET_HDR) ---------------------------------------------

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
  if (maxLen < 0 || <u32>maxLen > st.slotSize - HEADROOM) return E_RANGE;
  if (first >= st.batchMax || <u32>need > st.batchMax - first) return 0;
  const lens = ingestLens;
  const got = tsoSegment(src, srcLen, st.slotBase + <usize>first * st.slotSize + HEADROOM, st.slotSize, st.batchMax - first, lens);
  if (got <= 0) return got < 0 ? got : E_RANGE;
  for (let k: u32 = 0; k < <u32>got; k++) {
    setInput(st.metaBase + (<usize>(first + k) << 5), HEADROOM, load<u32>(lens + (<usize>k << 2)), 0, 0, 0);
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
  if (seg > st.slotSize - HEADROOM) return E_RANGE;
  let k: u32 = 0;
  let at: u32 = 0;
  while (at < len && first + k < st.batchMax) {
    const n = len - at < seg ? len - at : seg;
    const i = first + k;
    memory.copy(st.slotBase + <usize>i * st.slotSize + HEADROOM, src + at, n);
    setInput(st.metaBase + (<usize>i << 5), HEADROOM, n, addr, addr2, tos);
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
  else if (first >= st.batchMax || <u32>need > st.batchMax - first) got = 0;
  else got = tsoSegment(v, plen + VNET_HDR_LEN, st.slotBase + <usize>first * st.slotSize + HEADROOM + outer, st.slotSize, st.batchMax - first, ingestLens);
  memory.copy(src, ingestSaved, outer);
  for (let k: u32 = 0; k < <u32>max(got, 0); k++) {
    const i = first + k;
    memory.copy(st.slotBase + <usize>i * st.slotSize + HEADROOM, ingestSaved, outer);
    setInput(st.metaBase + (<usize>i << 5), HEADROOM, load<u32>(ingestLens + (<usize>k << 2)) + outer, addr, addr2, tos);
  }
  return got;
}

/** Per-segment lengths scratch for ingestSuperframe (carved on first use:
 *  init time, since the worker calls this once before traffic). */
let ingestLens: usize = 0;
/** ingestEncapSuperframe keeps the 22 bytes it overwrites here. */
let ingestSaved: usize = 0;
export function offloadSetup(): i32 {
  if (ingestLens == 0) ingestLens = carve(<usize>st.batchMax * 4);
  if (ingestSaved == 0) ingestSaved = carve(32);
  return ingestLens == 0 || ingestSaved == 0 ? E_NO_MEMORY : OK;
}

/** On an offloading tun every write starts with a virtio_net_hdr: give the
 *  first `n` packets whose verdict sends them to the device a zeroed one
 *  (gso_type NONE, no checksum request) in their headroom. */
export function prependVnetNone(n: u32): void {
  if (n > st.batchMax) n = st.batchMax;
  for (let i: u32 = 0; i < n; i++) {
    const m = st.metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v != VERDICT_TO_DEVICE && v != VERDICT_REPLY) continue;
    const off = load<u32>(m, 0) - VNET_HDR_LEN;
    memory.fill(st.slotBase + <usize>i * st.slotSize + off, 0, VNET_HDR_LEN);
    store<u32>(m, off, 0);
    store<u32>(m, load<u32>(m, 4) + VNET_HDR_LEN, 4);
  }
}

/** GRO on the way to an offloading tun: coalesce the device-bound packets
 *  (TO_DEVICE, REPLY) of the first `n` into virtio_net_hdr frames at `out`
 *  (capacity `outCap`), frame k's offset and length as two u32 at frames+8k.
 *  Returns the number of frames, or a negative status. The packets' own
 *  verdicts are left alone; the caller writes the frames instead of them. */
export function groDeviceBatch(n: u32, out: usize, outCap: u32, frames: usize): i32 {
  if (groPtrs == 0) {
    groPtrs = carve(<usize>st.batchMax * 4);
    groLens = carve(<usize>st.batchMax * 4);
    if (groPtrs == 0 || groLens == 0) return E_NO_MEMORY;
  }
  if (n > st.batchMax) n = st.batchMax;
  let k: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const m = st.metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v != VERDICT_TO_DEVICE && v != VERDICT_REPLY) continue;
    store<u32>(groPtrs + (<usize>k << 2), <u32>(st.slotBase + <usize>i * st.slotSize + load<u32>(m, 0)));
    store<u32>(groLens + (<usize>k << 2), load<u32>(m, 4));
    k++;
  }
  if (k == 0) return 0;
  return groCoalesce(groPtrs, groLens, k, out, outCap, frames, st.batchMax);
}
let groPtrs: usize = 0;
let groLens: usize = 0;
