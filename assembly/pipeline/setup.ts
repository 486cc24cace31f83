// Setting the data path up: carving every region (init), the node's
// parameters (configure), and where things are for the control plane.
// Control-plane calls, made between batches on the thread that runs them.
import { carve, regionsEnd } from "../layout";
import { E_NO_MEMORY, E_NOT_INIT, E_RANGE, HEADROOM, META_SIZE, OK, COUNTER_COUNT, REASON_COUNT, VERDICT_COUNT } from "../abi";
import { lpmSetup } from "../tables/lpm";
import { htCreate } from "../tables/hash";
import { setupNexthops, rebuildAllTemplates, nhMax, peerMax } from "./peers";
import { ingestCarve } from "./ingest";
import { egressCarve } from "./egress";
import { wholeFrameCarve } from "./wholeframe";
import { groCarve } from "../offload/gro";
import * as st from "./state";

let initialised = false;

/** Carve every region once: `batch` packet slots of `slotSize` bytes (>=
 *  HEADROOM + 1600), their metadata, counters, the LPM with `tbl8Groups`
 *  groups, `maxNexthops` next hops, `maxPeers` peers, the three hash
 *  tables and the stages' scratch (offload ingest, GRO, whole frames).
 *  Returns OK, E_RANGE for bad sizes, E_NO_MEMORY, or E_RANGE when called
 *  twice (an instance is initialised once; make a new one instead). */
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
  if (!ingestCarve() || !egressCarve() || !wholeFrameCarve() || !groCarve()) return E_NO_MEMORY;
  const overlay6 = carve(16);
  const underlay6 = carve(16);
  if (overlay6 == 0 || underlay6 == 0) return E_NO_MEMORY;
  st.setOverlay6Cell(overlay6);
  st.setUnderlay6Cell(underlay6);
  initialised = true;
  return OK;
}

/** Set the node and tunnel parameters (see state.ts) and rebuild every
 *  peer's header templates. Addresses are host-order u32, MACs the low 48
 *  bits of a u64. */
export function configure(mode: u32, underlay: u32, overlay: u32, vtepMac: u64, devMac: u64, vni: u32, port: u32,
  sportMin: u32, sportMax: u32, outerTtl: u32, underlayMtu: u32): i32 {
  if (!initialised) return E_NOT_INIT;
  if (mode > 1 || vni > 0xffffff || port == 0 || port > 0xffff || sportMin == 0 || sportMin > sportMax ||
    sportMax > 0xffff || outerTtl == 0 || outerTtl > 255 || underlayMtu < 576 || underlayMtu > 65535) return E_RANGE;
  st.setConfig(mode, underlay, overlay, vtepMac, devMac, vni, port, sportMin, sportMax, outerTtl, underlayMtu);
  rebuildAllTemplates();
  return OK;
}

/** This node's IPv6 overlay address (the source of ICMPv6 errors), as its
 *  high and low 64 bits; 0, 0: none. */
export function configure6(overlayHi: u64, overlayLo: u64): i32 {
  if (!initialised) return E_NOT_INIT;
  store<u64>(st.cfgOverlay6, bswap<u64>(overlayHi));
  store<u64>(st.cfgOverlay6, bswap<u64>(overlayLo), 8);
  return OK;
}

/** This node's IPv6 underlay address, as its high and low 64 bits (hi: the
 *  first 8 bytes, big-endian value): the outer source of the packets for
 *  peers reached over IPv6 (setPeer6). 0, 0: none, and packets for such
 *  peers are counted drops. Every peer's IPv6 pseudo-header sum depends on
 *  it, so they are rebuilt, as configure rebuilds the IPv4 templates. */
export function configureUnderlay6(hi: u64, lo: u64): i32 {
  if (!initialised) return E_NOT_INIT;
  st.setUnderlay6(hi, lo);
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

/** Scratch memory for the I/O layer (index lists, native structs), carved
 *  at start-up, after init, never in a batch. It may grow the memory (the
 *  TypeScript side renews its views when the buffer changes). Returns 0
 *  when memory is exhausted. */
export function allocScratch(bytes: u32): usize {
  return carve(<usize>bytes, 64);
}
