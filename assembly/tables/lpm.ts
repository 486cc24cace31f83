// IPv4 longest-prefix match: DPDK rte_lpm's DIR-24-8 table.
//
// The control plane (src/dataplane/routes.ts) owns the rule list; this file
// owns only the table derived from it. A lookup is one load from tbl24
// (indexed by the top 24 bits of the address) and, for /24s that hold a
// longer prefix, a second load from a 256-entry tbl8 group (indexed by the
// low 8 bits).
//
// Entry layout (tbl24 and tbl8 alike, one u32, host order):
//
//    31  30  29            24 23                                           0
//   +---+---+----------------+----------------------------------------------+
//   | V | X |     depth      |                    value                     |
//   +---+---+----------------+----------------------------------------------+
//
//   V      valid: some rule covers this entry. 0 => the whole entry is 0.
//   X      ext (tbl24 only): value is a tbl8 group index, depth is 0; the
//          group's 256 entries carry the real next hops and depths.
//   depth  prefix length of the rule that wrote the entry (0..32).
//   value  next-hop index (0..LPM_MAX_NH), or tbl8 group index when X.
//
// tbl8 entries never have X set. An invalid entry is all zeroes, so carve()'s
// zero fill is an empty table.
//
// Invariant: a tbl8 group is in use exactly while at least one of its entries
// has depth > 24. Inserts of depth <= 24 never create groups; deleting the
// last deeper prefix of a group folds it back into its tbl24 entry.
//
// Write order (safe for a reader running concurrently with one writer; today
// updates run between batches on the batch thread, so this is insurance for
// a future shared-memory reader). Every store is one aligned u32, so a reader
// sees either the old or the new entry, never a mix.
//   - New group: fill all 256 tbl8 entries first, then publish the tbl24 ext
//     entry. A reader that saw the old tbl24 entry gets the old answer; one
//     that saw the ext entry finds a fully written group.
//   - Changes inside a live group, or to non-ext tbl24 entries: one store per
//     entry; each address flips from the old answer to the new one.
//   - Recycling a group: first overwrite the tbl24 ext entry with the group's
//     uniform entry, then return the group to the free list. The group's
//     contents are left as they were, so a reader that loaded the old ext
//     entry still reads a correct answer. A concurrent design would wait a
//     grace period (RCU) before the group is reused; single-threaded we don't.
import { carve } from "../layout";
import { E_FULL, E_NO_MEMORY, E_NOT_FOUND, E_NOT_INIT, E_RANGE, OK } from "../abi";

/** Returned by lpmLookup when no rule covers the address. */
export const LPM_MISS: u32 = 0xffffffff;
/** Largest next-hop index an entry can hold (0xFFFFFF is kept unused). */
export const LPM_MAX_NH: u32 = 0xfffffe;
/** Largest tbl8 group count: a group index must fit the 24-bit value field. */
export const LPM_TBL8_MAX: u32 = 1 << 24;

export const LPM_VALID: u32 = 0x80000000;
export const LPM_EXT: u32 = 0x40000000;
export const LPM_DEPTH_SHIFT: u32 = 24;
export const LPM_DEPTH_MASK: u32 = 0x3f;
export const LPM_VALUE_MASK: u32 = 0x00ffffff;

const TBL24_ENTRIES: usize = 1 << 24;
const TBL8_GROUP_ENTRIES: u32 = 256;
const TBL8_GROUP_BYTES: usize = 256 * 4;

let tbl24: usize = 0; // 2^24 entries
let tbl8: usize = 0; // tbl8Cap groups of 256 entries
let freeStack: usize = 0; // u32 group indices; [0, freeTop) are free
let freeTop: u32 = 0;
let tbl8Cap: u32 = 0;

@inline function entryDepth(e: u32): u32 {
  return (e >>> LPM_DEPTH_SHIFT) & LPM_DEPTH_MASK;
}

@inline function makeEntry(depth: u32, nh: u32): u32 {
  return LPM_VALID | (depth << LPM_DEPTH_SHIFT) | nh;
}

@inline function prefixMask(depth: u32): u32 {
  // A shift by 32 is a shift by 0 in WASM, so /0 needs its own case.
  return depth == 0 ? 0 : <u32>0xffffffff << (32 - depth);
}

@inline function tbl8Ptr(group: u32, index: u32): usize {
  return tbl8 + ((<usize>group << 10) | (<usize>index << 2));
}

/** Carve the tables: 64 MiB of tbl24, `tbl8Groups` groups of 1 KiB, and the
 *  free list. Call once per instance (from init) before any other lpm call.
 *  Returns OK; E_RANGE for 0 groups, more than 2^24, or a second call;
 *  E_NO_MEMORY when linear memory cannot grow that far (wasm32 tops out at
 *  4 GiB, so more than ~2^21 groups never fits). */
export function lpmSetup(tbl8Groups: u32): i32 {
  if (tbl24 != 0) return E_RANGE;
  if (tbl8Groups == 0 || tbl8Groups > LPM_TBL8_MAX) return E_RANGE;
  // Check the size in 64 bits: groups * 1 KiB overflows a 32-bit usize.
  const total = <u64>TBL24_ENTRIES * 4 + <u64>tbl8Groups * (TBL8_GROUP_BYTES + 4);
  if (total > 0xc0000000) return E_NO_MEMORY;
  const t24 = carve(TBL24_ENTRIES * 4, 4096);
  if (t24 == 0) return E_NO_MEMORY;
  const t8 = carve(<usize>tbl8Groups * TBL8_GROUP_BYTES, 4096);
  if (t8 == 0) return E_NO_MEMORY;
  const fs = carve(<usize>tbl8Groups * 4, 64);
  if (fs == 0) return E_NO_MEMORY;
  tbl24 = t24;
  tbl8 = t8;
  freeStack = fs;
  tbl8Cap = tbl8Groups;
  resetFreeList();
  return OK;
}

function resetFreeList(): void {
  // Stacked in reverse so groups are handed out 0, 1, 2...: easier to read
  // in a memory dump, and the touched part of tbl8 stays compact.
  for (let i: u32 = 0; i < tbl8Cap; i++) store<u32>(freeStack + (<usize>i << 2), tbl8Cap - 1 - i);
  freeTop = tbl8Cap;
}

/** Remove every route: all tbl24 entries invalid, every tbl8 group free.
 *  No-op before lpmSetup. Not safe against a concurrent reader (it wipes
 *  64 MiB); the control plane calls it between batches. */
export function lpmClear(): void {
  if (tbl24 == 0) return;
  memory.fill(tbl24, 0, TBL24_ENTRIES * 4);
  resetFreeList();
}

/** The next hop of the longest prefix covering `ip` (host order), or
 *  LPM_MISS. At most two loads, no branches that can trap, no allocation.
 *  Precondition: lpmSetup returned OK (init succeeded). */
@inline export function lpmLookup(ip: u32): u32 {
  let e = load<u32>(tbl24 + (<usize>(ip >>> 8) << 2));
  if (e & LPM_EXT) e = load<u32>(tbl8 + ((<usize>(e & LPM_VALUE_MASK) << 10) | (<usize>(ip & 0xff) << 2)));
  return e & LPM_VALID ? e & LPM_VALUE_MASK : LPM_MISS;
}

/** Insert (or replace) the route `ip`/`depth` -> `nh`. Host bits beyond
 *  `depth` are ignored; depth 0 is the default route. Returns OK; E_RANGE
 *  for depth > 32 or nh > LPM_MAX_NH; E_FULL when the prefix is longer than
 *  /24 and needs a tbl8 group while none is free (the table is unchanged);
 *  E_NOT_INIT before lpmSetup. The caller keeps the rule list: this writes
 *  the entries the prefix wins (those not owned by a longer prefix). */
export function lpmInsert(ip: u32, depth: u32, nh: u32): i32 {
  if (tbl24 == 0) return E_NOT_INIT;
  if (depth > 32 || nh > LPM_MAX_NH) return E_RANGE;
  ip &= prefixMask(depth);
  const ne = makeEntry(depth, nh);
  if (depth <= 24) {
    const first = <usize>(ip >>> 8);
    const count = <usize>1 << (24 - depth);
    for (let i = first, end = first + count; i < end; i++) {
      const p = tbl24 + (i << 2);
      const e = load<u32>(p);
      if (e & LPM_EXT) {
        // The /24 holds longer prefixes: update only the entries this rule
        // wins inside the group; the tbl24 ext entry stays.
        const g = e & LPM_VALUE_MASK;
        for (let j: u32 = 0; j < TBL8_GROUP_ENTRIES; j++) {
          const q = tbl8Ptr(g, j);
          const f = load<u32>(q);
          if (!(f & LPM_VALID) || entryDepth(f) <= depth) store<u32>(q, ne);
        }
      } else if (!(e & LPM_VALID) || entryDepth(e) <= depth) {
        store<u32>(p, ne);
      }
    }
    return OK;
  }
  const p = tbl24 + (<usize>(ip >>> 8) << 2);
  const e = load<u32>(p);
  let g: u32;
  let fresh = false;
  if (e & LPM_EXT) {
    g = e & LPM_VALUE_MASK;
  } else {
    // Allocate before writing anything, so E_FULL leaves the table as it was.
    if (freeTop == 0) return E_FULL;
    freeTop--;
    g = load<u32>(freeStack + (<usize>freeTop << 2));
    // The group inherits the /24's current answer (valid or not) everywhere.
    for (let j: u32 = 0; j < TBL8_GROUP_ENTRIES; j++) store<u32>(tbl8Ptr(g, j), e);
    fresh = true;
  }
  const first = ip & 0xff;
  const end = first + (<u32>1 << (32 - depth));
  for (let j = first; j < end; j++) {
    const q = tbl8Ptr(g, j);
    const f = load<u32>(q);
    if (!(f & LPM_VALID) || entryDepth(f) <= depth) store<u32>(q, ne);
  }
  // Publish only after the group is complete (see the write order above).
  if (fresh) store<u32>(p, LPM_VALID | LPM_EXT | g);
  return OK;
}

/** Delete the route `ip`/`depth`. The caller passes the rule that takes over
 *  its addresses: the longest rule shorter than `depth` that contains the
 *  prefix, as `subNh`/`subDepth`, or subNh = LPM_MISS when none (those
 *  addresses then miss). Entries owned by longer prefixes are untouched. A
 *  tbl8 group left uniform with no prefix longer than /24 is folded back
 *  into tbl24 and freed. Returns OK; E_RANGE for depth > 32, or a covering
 *  rule with subDepth >= depth or subNh > LPM_MAX_NH; E_NOT_FOUND when a
 *  prefix longer than /24 has no tbl8 group (it was never inserted);
 *  E_NOT_INIT before lpmSetup. */
export function lpmDelete(ip: u32, depth: u32, subNh: u32, subDepth: u32): i32 {
  if (tbl24 == 0) return E_NOT_INIT;
  if (depth > 32) return E_RANGE;
  if (subNh != LPM_MISS && (subNh > LPM_MAX_NH || subDepth >= depth)) return E_RANGE;
  ip &= prefixMask(depth);
  const se: u32 = subNh == LPM_MISS ? 0 : makeEntry(subDepth, subNh);
  if (depth <= 24) {
    const first = <usize>(ip >>> 8);
    const count = <usize>1 << (24 - depth);
    for (let i = first, end = first + count; i < end; i++) {
      const p = tbl24 + (i << 2);
      const e = load<u32>(p);
      if (e & LPM_EXT) {
        // Groups keep their deeper prefixes, so none becomes recyclable here.
        const g = e & LPM_VALUE_MASK;
        for (let j: u32 = 0; j < TBL8_GROUP_ENTRIES; j++) {
          const q = tbl8Ptr(g, j);
          const f = load<u32>(q);
          // Only one rule of a given depth covers an address: equal depth
          // means the entry was written by the rule being deleted.
          if ((f & LPM_VALID) && entryDepth(f) == depth) store<u32>(q, se);
        }
      } else if ((e & LPM_VALID) && entryDepth(e) == depth) {
        store<u32>(p, se);
      }
    }
    return OK;
  }
  const p = tbl24 + (<usize>(ip >>> 8) << 2);
  const e = load<u32>(p);
  if (!(e & LPM_EXT)) return E_NOT_FOUND;
  const g = e & LPM_VALUE_MASK;
  const first = ip & 0xff;
  const end = first + (<u32>1 << (32 - depth));
  for (let j = first; j < end; j++) {
    const q = tbl8Ptr(g, j);
    const f = load<u32>(q);
    if ((f & LPM_VALID) && entryDepth(f) == depth) store<u32>(q, se);
  }
  recycleIfUniform(p, g);
  return OK;
}

/** Fold group `g` back into its tbl24 entry at `p` when every entry is the
 *  same and came from a prefix of /24 or shorter (or all are invalid): the
 *  group then adds nothing a single tbl24 entry can't say. */
function recycleIfUniform(p: usize, g: u32): void {
  const e0 = load<u32>(tbl8Ptr(g, 0));
  if ((e0 & LPM_VALID) && entryDepth(e0) > 24) return;
  for (let j: u32 = 1; j < TBL8_GROUP_ENTRIES; j++) {
    if (load<u32>(tbl8Ptr(g, j)) != e0) return;
  }
  store<u32>(p, e0); // unpublish first (see the write order above)
  store<u32>(freeStack + (<usize>freeTop << 2), g);
  freeTop++;
}

/** tbl8 groups currently holding prefixes longer than /24. */
export function lpmTbl8InUse(): u32 {
  return tbl8Cap - freeTop;
}

/** tbl8 groups carved at setup. */
export function lpmTbl8Capacity(): u32 {
  return tbl8Cap;
}

/** Address of tbl24 (2^24 u32 entries), for layout tests and dumps. */
export function lpmTbl24Base(): usize {
  return tbl24;
}

/** Address of tbl8 group 0 (groups are 1 KiB apart), for layout tests. */
export function lpmTbl8Base(): usize {
  return tbl8;
}
