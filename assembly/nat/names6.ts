// IPv6 address handles: how connection tracking holds IPv6 flows (NAT66)
// in the same table as IPv4 ones.
//
// A conntrack key is (proto, src, dst, sport, dport) with 32-bit addresses
// (conntrack.ts). An IPv6 flow is keyed the same way, its protocol byte
// marked with CT_PROTO_V6 (0x80) and each of its addresses replaced by a
// 32-bit handle from this table: one entry per IPv6 address that some flow
// (or the control plane) refers to, with a reference count. Every piece of
// the IPv4 machinery then serves IPv6 unchanged: the keyed hash and its
// bounded probes, the TCP state machine and timeouts, early drop, expiry,
// port allocation, sharing between workers and the lock, dumps.
// Translation reads the address back (n6Addr) to write it into the packet.
//
// References: ctCreate takes one per address it stores in a flow record
// (four: both tuples' ends) and release gives them back; the control
// plane pins the addresses it configures (the node's, the service-SNAT
// address, ClusterIPs, backends) with one reference each. An entry whose
// count drops to zero is removed at once. A packet's addresses are looked
// up with n6Find (no entry: no flow can hold it) or, for a new flow,
// n6Get, which adds an entry with no references; the caller then trims
// (n6Trim) each address it got that way whether or not the flow was
// created, so nothing is left behind by a refused flow.
//
// Entries, N6_ENTRY = 24 bytes, index = handle, 0 .. capacity-1:
//   0                16      20      24
//   +----------------+-------+-------+
//   | address        | refs  | next  |   next: N6_NONE while live, else the free list
//   +----------------+-------+-------+
// Slots, 8 bytes, 2 per entry (load <= 1/2): hash32 | handle + 1 (0 =
// empty). Open addressing, linear probing, backward-shift deletion, the
// home slot from a keyed hash of the address (the conntrack table's seed:
// a client choosing its addresses cannot aim at one probe chain).
// Memory: 24 + 2 x 8 = 40 bytes per entry.
//
// Concurrency: as conntrack's. The header lives in memory (shared between
// workers, its address kept in conntrack's header) and every call is made
// under ctLock.
import { carve } from "../layout";
import { mix64 } from "../tables/hash";

export const N6_NONE: u32 = 0xffffffff;
/** The free list's end: a free entry's next is never N6_NONE, which marks
 *  a live entry. */
const N6_FREE_END: u32 = 0xfffffffe;
export const N6_ENTRY: usize = 24;
const N6_SLOT: usize = 8;

// Header words.
const NH_LIVE: usize = 0;
const NH_HIGH: usize = 4;
const NH_FREE: usize = 8;
const NH_CAP: usize = 12;
const NH_NSLOTS: usize = 16;
const NH_ENTRIES: usize = 20;
const NH_SLOTS: usize = 24;
export const N6_HEADER: usize = 32;

let hdr: usize = 0;
let entries: usize = 0;
let slots: usize = 0;
let nSlots: u32 = 0;
let cap: u32 = 0;
let s0: u64 = 0;
let s1: u64 = 0;

/** Carve a table of `n` entries; returns its header address, or 0 when
 *  out of memory. Init-time, once (conntrack's setup calls it). */
export function n6Carve(n: u32, seedA: u64, seedB: u64): usize {
  const h = carve(N6_HEADER);
  const e = carve(<usize>n * N6_ENTRY);
  const s = carve(<usize>n * 2 * N6_SLOT);
  if (h == 0 || e == 0 || s == 0) return 0;
  store<u32>(h + NH_FREE, N6_FREE_END);
  store<u32>(h + NH_CAP, n);
  store<u32>(h + NH_NSLOTS, n * 2);
  store<u32>(h + NH_ENTRIES, <u32>e);
  store<u32>(h + NH_SLOTS, <u32>s);
  n6AttachTo(h, seedA, seedB);
  return h;
}

/** Use the table whose header is at `h` (0: none). */
export function n6AttachTo(h: usize, seedA: u64, seedB: u64): void {
  hdr = h;
  s0 = seedA;
  s1 = seedB;
  if (h == 0) {
    entries = 0;
    slots = 0;
    nSlots = 0;
    cap = 0;
    return;
  }
  entries = <usize>load<u32>(h + NH_ENTRIES);
  slots = <usize>load<u32>(h + NH_SLOTS);
  nSlots = load<u32>(h + NH_NSLOTS);
  cap = load<u32>(h + NH_CAP);
}

/** The table's seed changed (ctSetHashSeed; only while it is empty). */
export function n6Reseed(seedA: u64, seedB: u64): void {
  s0 = seedA;
  s1 = seedB;
}

@inline export function n6Enabled(): bool { return cap != 0; }
export function n6Capacity(): u32 { return cap; }
export function n6Count(): u32 { return hdr == 0 ? 0 : load<u32>(hdr + NH_LIVE); }
export function n6MemoryBytes(): usize { return <usize>cap * (N6_ENTRY + 2 * N6_SLOT); }

@inline function entryPtr(h: u32): usize { return entries + <usize>h * N6_ENTRY; }
@inline function slotPtr(i: u32): usize { return slots + (<usize>i << 3); }

/** Is `h` a live handle (an entry in the table, referenced or just got)? */
export function n6Live(h: u32): bool {
  return hdr != 0 && h < load<u32>(hdr + NH_HIGH) && load<u32>(entryPtr(h), 20) == N6_NONE;
}

/** The 16 bytes of handle `h`'s address (valid while it has references). */
@inline export function n6Addr(h: u32): usize { return entryPtr(h); }
export function n6Refs(h: u32): u32 { return h < cap ? load<u32>(entryPtr(h), 16) : 0; }

@inline function hashOf(a: usize): u32 {
  return <u32>(mix64(mix64(load<u64>(a) ^ s0) ^ load<u64>(a, 8) ^ s1) >> 32);
}

@inline function homeOf(hash: u32): u32 {
  return <u32>((<u64>hash * <u64>nSlots) >> 32);
}

/** Slot index holding address `a`, or -1. */
function findSlot(a: usize, hash: u32): i32 {
  if (nSlots == 0) return -1;
  const a0 = load<u64>(a);
  const a1 = load<u64>(a, 8);
  let i = homeOf(hash);
  while (true) {
    const v = load<u64>(slotPtr(i));
    const ref = <u32>(v >> 32);
    if (ref == 0) return -1;
    if (<u32>v == hash) {
      const e = entryPtr(ref - 1);
      if (load<u64>(e) == a0 && load<u64>(e, 8) == a1) return <i32>i;
    }
    i++;
    if (i == nSlots) i = 0;
  }
  return -1;
}

/** The handle of address `a` (16 bytes), or N6_NONE. */
export function n6Find(a: usize): u32 {
  const s = findSlot(a, hashOf(a));
  if (s < 0) return N6_NONE;
  return <u32>(load<u64>(slotPtr(<u32>s)) >> 32) - 1;
}

/** The handle of address `a`, adding an entry with no references when
 *  there is none; N6_NONE when the table is full (or absent). Trim it
 *  (n6Trim) unless something took a reference. */
export function n6Get(a: usize): u32 {
  if (cap == 0) return N6_NONE;
  const hash = hashOf(a);
  const s = findSlot(a, hash);
  if (s >= 0) return <u32>(load<u64>(slotPtr(<u32>s)) >> 32) - 1;
  let h = load<u32>(hdr + NH_FREE);
  if (h != N6_FREE_END) {
    store<u32>(hdr + NH_FREE, load<u32>(entryPtr(h), 20));
  } else {
    h = load<u32>(hdr + NH_HIGH);
    if (h >= cap) return N6_NONE;
    store<u32>(hdr + NH_HIGH, h + 1);
  }
  const e = entryPtr(h);
  memory.copy(e, a, 16);
  store<u32>(e, 0, 16);
  store<u32>(e, N6_NONE, 20);
  let i = homeOf(hash);
  while ((load<u64>(slotPtr(i)) >> 32) != 0) {
    i++;
    if (i == nSlots) i = 0;
  }
  store<u64>(slotPtr(i), (<u64>(h + 1) << 32) | <u64>hash);
  store<u32>(hdr + NH_LIVE, load<u32>(hdr + NH_LIVE) + 1);
  return h;
}

@inline export function n6Ref(h: u32): void {
  if (!n6Live(h)) return;
  const e = entryPtr(h);
  store<u32>(e, load<u32>(e, 16) + 1, 16);
}

/** Give back one reference; the entry goes with its last. */
export function n6Unref(h: u32): void {
  if (!n6Live(h)) return;
  const e = entryPtr(h);
  const r = load<u32>(e, 16);
  if (r > 1) {
    store<u32>(e, r - 1, 16);
    return;
  }
  store<u32>(e, 0, 16);
  n6Trim(h);
}

/** Remove handle `h`'s entry if nothing refers to it (after n6Get). */
export function n6Trim(h: u32): void {
  if (!n6Live(h)) return;
  const e = entryPtr(h);
  if (load<u32>(e, 16) != 0) return;
  // A free entry (trimmed twice) has no slot of its own: the slot found
  // for its zeroed address, if any, belongs to another handle.
  const s = findSlot(e, hashOf(e));
  if (s < 0 || <u32>(load<u64>(slotPtr(<u32>s)) >> 32) != h + 1) return;
  removeSlot(<u32>s);
  store<u64>(e, 0);
  store<u64>(e, 0, 8);
  store<u32>(e, load<u32>(hdr + NH_FREE), 20);
  store<u32>(hdr + NH_FREE, h);
  store<u32>(hdr + NH_LIVE, load<u32>(hdr + NH_LIVE) - 1);
}

/** Backward-shift deletion of slot `found`. */
function removeSlot(found: u32): void {
  const n = nSlots;
  let hole = found;
  let j = found;
  while (true) {
    j++;
    if (j == n) j = 0;
    const v = load<u64>(slotPtr(j));
    if ((v >> 32) == 0) break;
    const home = homeOf(<u32>v);
    const homeAfterHole = hole <= j ? home > hole && home <= j : home > hole || home <= j;
    if (!homeAfterHole) {
      store<u64>(slotPtr(hole), v);
      hole = j;
    }
  }
  store<u64>(slotPtr(hole), 0);
}
