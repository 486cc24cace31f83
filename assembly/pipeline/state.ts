// Node configuration and region pointers shared by the pipeline stages.
// Written only by control-plane calls between batches (see ../index.ts).

import { MODE_TUN, VERDICT_COUNT } from "../abi";

// --- node / tunnel configuration -------------------------------------------
export let cfgMode: u32 = MODE_TUN;
export let cfgUnderlay: u32 = 0; // this node's underlay address (outer source)
export let cfgOverlay: u32 = 0; // this node's overlay address (VTEP IP, ICMP error source)
export let cfgVtepMac: u64 = 0; // our MAC on the overlay (inner Ethernet source)
export let cfgDevMac: u64 = 0; // tap mode: the kernel side's MAC (frames we deliver go to it)
export let cfgVni: u32 = 1;
export let cfgPort: u32 = 4789;
export let cfgSportMin: u32 = 32768;
export let cfgSportSpan: u32 = 28232; // max - min + 1
export let cfgOuterTtl: u32 = 64;
export let cfgUnderlayMtu: u32 = 1500;

export function setConfig(mode: u32, underlay: u32, overlay: u32, vtepMac: u64, devMac: u64, vni: u32,
  port: u32, sportMin: u32, sportMax: u32, outerTtl: u32, underlayMtu: u32): void {
  cfgMode = mode;
  cfgUnderlay = underlay;
  cfgOverlay = overlay;
  cfgVtepMac = vtepMac;
  cfgDevMac = devMac;
  cfgVni = vni;
  cfgPort = port;
  cfgSportMin = sportMin;
  cfgSportSpan = sportMax - sportMin + 1;
  cfgOuterTtl = outerTtl;
  cfgUnderlayMtu = underlayMtu;
}

/** This node's IPv6 overlay address (source of ICMPv6 errors), 16 bytes in
 *  network order, carved by init; all zero: none configured (IPv6 errors
 *  are then not sent, a counted R_ICMP_SUPPRESSED). */
export let cfgOverlay6: usize = 0;

export function setOverlay6Cell(p: usize): void {
  cfgOverlay6 = p;
}

/** This node's IPv6 underlay address (the outer source towards peers
 *  reached over IPv6; setup.ts configureUnderlay6), 16 bytes in network
 *  order, carved by init; cfgHasUnderlay6 false while it is all zero (a
 *  packet for such a peer is then a counted drop, forward.ts). */
export let cfgUnderlay6: usize = 0;
export let cfgHasUnderlay6: bool = false;

export function setUnderlay6Cell(p: usize): void {
  cfgUnderlay6 = p;
}

export function setUnderlay6(hi: u64, lo: u64): void {
  store<u64>(cfgUnderlay6, bswap<u64>(hi));
  store<u64>(cfgUnderlay6, bswap<u64>(lo), 8);
  cfgHasUnderlay6 = (hi | lo) != 0;
}

// --- regions ------------------------------------------------------------------
export let slotBase: usize = 0;
export let slotSize: u32 = 0;
export let metaBase: usize = 0;
export let batchMax: u32 = 0;
export let countersBase: usize = 0;

export function setRegions(slots: usize, size: u32, meta: usize, batch: u32, counters: usize): void {
  slotBase = slots;
  slotSize = size;
  metaBase = meta;
  batchMax = batch;
  countersBase = counters;
}

/** Outer IPv4 identification, incremented per encapsulated packet. */
export let outerId: u32 = 0;
@inline export function nextOuterId(): u32 {
  outerId = (outerId + 1) & 0xffff;
  return outerId;
}

@inline export function count(idx: u32, by: u64 = 1): void {
  const p = countersBase + (<usize>idx << 3);
  store<u64>(p, load<u64>(p) + by);
}

export const VERDICTS: u32 = <u32>VERDICT_COUNT;

// --- hash tables (generic open addressing, ../tables/hash) -------------------
export let neighTable: usize = 0; // overlay IPv4 -> MAC (ip neigh)
export let fdbTable: usize = 0; // inner MAC -> peer index (bridge fdb)
export let peerAddrTable: usize = 0; // underlay IPv4 -> peer index

export function setHashTables(neigh: usize, fdb: usize, peerAddr: usize): void {
  neighTable = neigh;
  fdbTable = fdb;
  peerAddrTable = peerAddr;
}

// --- time and ICMP error rate limiting ----------------------------------------
// The data path has no clock of its own: the worker stamps each batch with
// setClock(ms), a wrapping u32 of milliseconds. ICMP errors draw from a token
// bucket (RFC 1812 4.3.2.8; Linux: icmp_msgs_per_sec 1000, burst 50), in
// thousandths of a token so that `rate` per second refills `rate` units per ms.
export let nowMs: u32 = 0;
export let icmpRate: u32 = 0; // errors per second; 0 = unlimited
export let icmpBurst: u32 = 0;
let icmpUnits: u64 = 0;
let icmpLastMs: u32 = 0;

export function setClock(ms: u32): void {
  nowMs = ms;
}

export function setIcmpRateLimit(perSecond: u32, burst: u32): void {
  icmpRate = perSecond;
  icmpBurst = burst;
  icmpUnits = <u64>burst * 1000;
  icmpLastMs = nowMs;
}

/** Take one token for an ICMP error; false when the bucket is empty. */
export function icmpTake(): bool {
  if (icmpRate == 0) return true;
  const elapsed = nowMs - icmpLastMs; // wraps correctly
  icmpLastMs = nowMs;
  const cap = <u64>icmpBurst * 1000;
  icmpUnits += <u64>elapsed * <u64>icmpRate;
  if (icmpUnits > cap) icmpUnits = cap;
  if (icmpUnits < 1000) return false;
  icmpUnits -= 1000;
  return true;
}
