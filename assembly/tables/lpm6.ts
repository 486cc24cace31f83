// IPv6 longest-prefix match: a multibit trie with a 16-bit first level and
// 8-bit strides below it (DPDK rte_lpm6's shape, with tbl16 instead of its
// tbl24 so a worker does not pay a second 64 MiB first level).
//
// The control plane (src/dataplane/routes6.ts) owns the rule list; this file
// owns only the table derived from it. Addresses are 16 bytes in network
// order, read straight from the caller's pointer (the packet).
//
//   address bytes:  [ 0  1 ][ 2 ][ 3 ][ 4 ] ... [15 ]
//   table level:      tbl16   g1   g2   g3  ...  g14
//
// A lookup loads the tbl16 entry indexed by bytes 0-1; while the entry is an
// ext entry it loads entry byte[k+1] of the level-k group it names. A /64
// is 7 loads, a /128 15; the upper groups are shared by every prefix under
// them, so in a real table they stay in cache.
//
// Entry layout (tbl16 and groups alike, one u32, host order):
//
//    31           24 23                                           0
//   +---------------+----------------------------------------------+
//   |      tag      |                    value                     |
//   +---------------+----------------------------------------------+
//
//   tag 0         invalid: no rule covers the entry; the whole entry is 0.
//   tag 1..129    a route: depth = tag - 1 (0..128), value = next hop
//                 (0..LPM_MAX_NH).
//   tag 0xff      ext: value is the index of the group one level down.
//
// The depth needs 8 bits (0..128), so valid/ext flags as in lpm.ts would not
// leave 24 bits for the next hop; they are folded into the tag. Ordered tags
// keep the checks to one compare: a lookup descends while e >= 0xff000000,
// and a rule of depth d may overwrite an entry iff tag <= d + 1 (which is
// never true of an ext entry). carve()'s zero fill is an empty table.
//
// Levels: the level-k group (k = 1..14) is indexed by address byte k+1 and
// holds prefixes of depth 8k+9 .. 8k+16; prefixes /0../16 live in tbl16.
// Entries with a depth <= 8k+8 in a level-k group are inherited copies of
// the rule above. Level-14 groups never hold ext entries.
//
// Invariant: a level-k group is in use exactly while some rule of depth
// > 8k+8 lies under it. An insert creates the missing groups of its path; a
// delete folds every group of its path left uniform with no deeper entry
// back into its parent entry, bottom-up. So a lone prefix costs one group
// per level between the deepest shared group and its own level: a /64 under
// a fresh /16 costs 6 groups, a /128 under a live /64 costs 8.
//
// Memory: tbl16 is 2^16 x 4 B = 256 KiB; each group is 256 x 4 B = 1 KiB,
// plus 4 B on the free stack. A k8s table (node /64s under a /48, services
// under a /108) needs about one group per distinct /56 of its /64s, per
// distinct /72 of its /80s and per distinct /120 of its /128s, plus the
// path above them: bench/lpm6.ts's 100k mix (60k /64s, 30k /80s, 10k
// service /112../128s) uses ~8,000 groups, 8.1 MiB with tbl16. Scattered
// host routes are the expensive case: ~1 KiB per /128 alone in its /120.
//
// Why not a tree bitmap: it is a few times smaller but each level costs a
// popcount and two dependent loads; with k8s prefixes sharing long paths the
// plain 1 KiB groups stay few and hot, and updates stay simple range writes.
//
// Write order (as lpm.ts; every store is one aligned u32, so a concurrent
// reader sees the old entry or the new one, never a mix):
//   - New groups (a chain of them down to the prefix's level): allocate them
//     all first (E_FULL before any write), fill each with the entry they
//     replace, link them top-down, write the prefix's range in the deepest,
//     and only then publish the ext entry in the live parent.
//   - Changes in live entries: one store per entry; an address flips from
//     the old answer to the new one. Range writes descend into the ext
//     entries they cover and update the inherited entries there.
//   - Recycling: overwrite the parent's ext entry with the group's uniform
//     entry, then free the group with its contents as they were (a reader
//     that loaded the old ext entry still reads a correct answer). A
//     concurrent design would wait a grace period before reuse.
import { carve } from "../layout";
import { E_FULL, E_NO_MEMORY, E_NOT_FOUND, E_NOT_INIT, E_RANGE, OK } from "../abi";
import { LPM_MAX_NH, LPM_MISS } from "./lpm";

/** Largest group count: a group index must fit the 24-bit value field. */
export const LPM6_GROUPS_MAX: u32 = 1 << 24;
export const LPM6_MAX_DEPTH: u32 = 128;

export const LPM6_TAG_SHIFT: u32 = 24;
export const LPM6_VALUE_MASK: u32 = 0x00ffffff;
/** Entries at or above this are ext entries (tag 0xff). */
export const LPM6_EXT: u32 = 0xff000000;
/** Entries below this are invalid (tag 0). */
const VALID_MIN: u32 = 0x01000000;

const TBL16_ENTRIES: usize = 1 << 16;
const GROUP_ENTRIES: u32 = 256;
const GROUP_BYTES: usize = 256 * 4;

let tbl16: usize = 0; // 2^16 entries
let groups: usize = 0; // groupCap groups of 256 entries
let freeStack: usize = 0; // u32 group indices; [0, freeTop) are free
let freeTop: u32 = 0;
let groupCap: u32 = 0;

@inline function routeEntry(depth: u32, nh: u32): u32 {
  return ((depth + 1) << LPM6_TAG_SHIFT) | nh;
}

@inline function tagOf(e: u32): u32 {
  return e >>> LPM6_TAG_SHIFT;
}

@inline function groupPtr(g: u32, index: u32): usize {
  return groups + ((<usize>g << 10) | (<usize>index << 2));
}

@inline function top16(addr: usize): u32 {
  return (<u32>load<u8>(addr) << 8) | <u32>load<u8>(addr, 1);
}

/** The group level holding prefixes of `depth` (17..128 -> 1..14). */
@inline function levelOf(depth: u32): u32 {
  return (depth - 9) >>> 3;
}

/** Carve tbl16 (256 KiB), `groupCount` groups of 1 KiB and their free
 *  list. Call once per instance, after init, before other lpm6 calls.
 *  Returns OK; E_RANGE for 0 groups, more than 2^24, or a second call;
 *  E_NO_MEMORY when linear memory cannot grow that far. */
export function lpm6Setup(groupCount: u32): i32 {
  if (tbl16 != 0) return E_RANGE;
  if (groupCount == 0 || groupCount > LPM6_GROUPS_MAX) return E_RANGE;
  // In 64 bits: groups * 1 KiB overflows a 32-bit usize.
  const total = <u64>TBL16_ENTRIES * 4 + <u64>groupCount * (GROUP_BYTES + 4);
  if (total > 0xc0000000) return E_NO_MEMORY;
  const t16 = carve(TBL16_ENTRIES * 4, 4096);
  if (t16 == 0) return E_NO_MEMORY;
  const g = carve(<usize>groupCount * GROUP_BYTES, 4096);
  if (g == 0) return E_NO_MEMORY;
  const fs = carve(<usize>groupCount * 4, 64);
  if (fs == 0) return E_NO_MEMORY;
  tbl16 = t16;
  groups = g;
  freeStack = fs;
  groupCap = groupCount;
  resetFreeList();
  return OK;
}

function resetFreeList(): void {
  // Reversed, so groups are handed out 0, 1, 2... (compact, readable dumps).
  for (let i: u32 = 0; i < groupCap; i++) store<u32>(freeStack + (<usize>i << 2), groupCap - 1 - i);
  freeTop = groupCap;
}

/** Remove every route: tbl16 all invalid, every group free. No-op before
 *  lpm6Setup. Not safe against a concurrent reader; call between batches. */
export function lpm6Clear(): void {
  if (tbl16 == 0) return;
  memory.fill(tbl16, 0, TBL16_ENTRIES * 4);
  resetFreeList();
}

/** The next hop of the longest prefix covering the 16 network-order bytes
 *  at `addr`, or LPM_MISS (also before lpm6Setup). 1 to 15 dependent
 *  loads, no allocation, nothing that can trap. */
@inline export function lpm6Lookup(addr: usize): u32 {
  if (tbl16 == 0) return LPM_MISS;
  let e = load<u32>(tbl16 + (<usize>top16(addr) << 2));
  let p = addr + 2;
  while (e >= LPM6_EXT) {
    e = load<u32>(groups + ((<usize>(e & LPM6_VALUE_MASK) << 10) | (<usize>load<u8>(p) << 2)));
    p++;
  }
  return e >= VALID_MIN ? e & LPM6_VALUE_MASK : LPM_MISS;
}

/** Write `ne` (a rule of `depth`) over the `count` entries from `p` that it
 *  wins: invalid ones and those of a depth <= `depth`; ext entries are
 *  descended into, since their groups inherit the rule too. */
function writeRange(p: usize, count: u32, ne: u32, depth: u32): void {
  for (let i: u32 = 0; i < count; i++) {
    const q = p + (<usize>i << 2);
    const e = load<u32>(q);
    if (e >= LPM6_EXT) writeRange(groupPtr(e & LPM6_VALUE_MASK, 0), GROUP_ENTRIES, ne, depth);
    else if (tagOf(e) <= depth + 1) store<u32>(q, ne);
  }
}

/** Replace with `se` the `count` entries from `p` written by the rule of
 *  `depth` (only one rule of a depth covers an address, so an equal depth
 *  is that rule), descending into ext entries. */
function clearRange(p: usize, count: u32, se: u32, depth: u32): void {
  for (let i: u32 = 0; i < count; i++) {
    const q = p + (<usize>i << 2);
    const e = load<u32>(q);
    if (e >= LPM6_EXT) clearRange(groupPtr(e & LPM6_VALUE_MASK, 0), GROUP_ENTRIES, se, depth);
    else if (tagOf(e) == depth + 1) store<u32>(q, se);
  }
}

/** Insert (or replace) the route of the 16 network-order bytes at `addr`,
 *  `depth` bits long, -> `nh`. Host bits beyond `depth` are ignored; depth
 *  0 is the default route. Returns OK; E_RANGE for depth > 128 or nh >
 *  LPM_MAX_NH; E_FULL when the prefix needs more free groups than there
 *  are (the table is unchanged); E_NOT_INIT before lpm6Setup. The caller
 *  keeps the rule list: this writes the entries the prefix wins. */
export function lpm6Insert(addr: usize, depth: u32, nh: u32): i32 {
  if (tbl16 == 0) return E_NOT_INIT;
  if (depth > LPM6_MAX_DEPTH || nh > LPM_MAX_NH) return E_RANGE;
  const ne = routeEntry(depth, nh);
  if (depth <= 16) {
    const shift = 16 - depth;
    writeRange(tbl16 + (<usize>((top16(addr) >>> shift) << shift) << 2), <u32>1 << shift, ne, depth);
    return OK;
  }
  const level = levelOf(depth);
  // Follow the path while it exists: p ends on the level-k entry that leads
  // to the prefix's group, or on the first one that is not ext yet.
  let p = tbl16 + (<usize>top16(addr) << 2);
  let e = load<u32>(p);
  let k: u32 = 0;
  while (e >= LPM6_EXT && k + 1 < level) {
    k++;
    p = groupPtr(e & LPM6_VALUE_MASK, <u32>load<u8>(addr + k + 1));
    e = load<u32>(p);
  }
  if (e >= LPM6_EXT) {
    writeLevelRange(e & LPM6_VALUE_MASK, addr, depth, ne);
    return OK;
  }
  if (freeTop < level - k) return E_FULL;
  const top = buildChain(addr, k + 1, level, e);
  writeLevelRange(chainEnd(top, addr, k + 1, level), addr, depth, ne);
  // Publish only now: every new group is complete (see the write order).
  store<u32>(p, LPM6_EXT | top);
  return OK;
}

/** Allocate and link fresh groups for levels `from`..`level` along `addr`'s
 *  path, each filled with `inherit` (the entry they replace). Returns the
 *  top one; nothing reachable is written. The caller checked freeTop. */
function buildChain(addr: usize, from: u32, level: u32, inherit: u32): u32 {
  const top = popGroup(inherit);
  let g = top;
  for (let k = from; k < level; k++) {
    const child = popGroup(inherit);
    store<u32>(groupPtr(g, <u32>load<u8>(addr + k + 1)), LPM6_EXT | child);
    g = child;
  }
  return top;
}

/** The level-`level` group reached from the level-`from` group `g` along
 *  `addr`'s path (every entry on it is ext). */
function chainEnd(g: u32, addr: usize, from: u32, level: u32): u32 {
  for (let k = from; k < level; k++) g = load<u32>(groupPtr(g, <u32>load<u8>(addr + k + 1))) & LPM6_VALUE_MASK;
  return g;
}

function popGroup(fill: u32): u32 {
  freeTop--;
  const g = load<u32>(freeStack + (<usize>freeTop << 2));
  for (let j: u32 = 0; j < GROUP_ENTRIES; j++) store<u32>(groupPtr(g, j), fill);
  return g;
}

/** Write the prefix's own range in group `g` of its level. */
function writeLevelRange(g: u32, addr: usize, depth: u32, ne: u32): void {
  const level = levelOf(depth);
  const shift = 8 * level + 16 - depth; // 0..7 host bits in this byte
  const first = (<u32>load<u8>(addr + level + 1) >>> shift) << shift;
  writeRange(groupPtr(g, first), <u32>1 << shift, ne, depth);
}

/** Delete the route of the 16 bytes at `addr`/`depth`. The caller passes
 *  the rule that takes over its addresses: the longest rule shorter than
 *  `depth` that contains the prefix, as `subNh`/`subDepth`, or subNh =
 *  LPM_MISS when none (those addresses then miss). Entries owned by longer
 *  prefixes are untouched. Groups of the prefix's path left uniform with no
 *  deeper entry are folded into their parents and freed. Returns OK;
 *  E_RANGE for depth > 128, or a covering rule with subDepth >= depth or
 *  subNh > LPM_MAX_NH; E_NOT_FOUND when a prefix longer than /16 has no
 *  group path (it was never inserted); E_NOT_INIT before lpm6Setup. */
export function lpm6Delete(addr: usize, depth: u32, subNh: u32, subDepth: u32): i32 {
  if (tbl16 == 0) return E_NOT_INIT;
  if (depth > LPM6_MAX_DEPTH) return E_RANGE;
  if (subNh != LPM_MISS && (subNh > LPM_MAX_NH || subDepth >= depth)) return E_RANGE;
  const se: u32 = subNh == LPM_MISS ? 0 : routeEntry(subDepth, subNh);
  if (depth <= 16) {
    // Groups keep their deeper prefixes, so none becomes recyclable here.
    const shift = 16 - depth;
    clearRange(tbl16 + (<usize>((top16(addr) >>> shift) << shift) << 2), <u32>1 << shift, se, depth);
    return OK;
  }
  return deleteBelow(tbl16 + (<usize>top16(addr) << 2), 1, addr, depth, se);
}

/** Delete inside the level-`level` group named by the entry at `parent`,
 *  recursing down `addr`'s path to the prefix's level, then fold the group
 *  into `parent` if it has become uniform (bottom-up, as the recursion
 *  unwinds). E_NOT_FOUND, before any write, when the path ends early. */
function deleteBelow(parent: usize, level: u32, addr: usize, depth: u32, se: u32): i32 {
  const e = load<u32>(parent);
  if (e < LPM6_EXT) return E_NOT_FOUND;
  const g = e & LPM6_VALUE_MASK;
  const byte = <u32>load<u8>(addr + level + 1);
  if (level == levelOf(depth)) {
    const shift = 8 * level + 16 - depth;
    clearRange(groupPtr(g, (byte >>> shift) << shift), <u32>1 << shift, se, depth);
  } else {
    const r = deleteBelow(groupPtr(g, byte), level + 1, addr, depth, se);
    if (r != OK) return r;
  }
  foldIfUniform(parent, g, level);
  return OK;
}

/** Fold the level-`level` group `g` back into its parent entry at `p` when
 *  all its entries are one entry inherited from above (depth <= 8*level+8)
 *  or invalid: the group then says nothing the parent entry can't. */
function foldIfUniform(p: usize, g: u32, level: u32): void {
  const e0 = load<u32>(groupPtr(g, 0));
  if (e0 >= LPM6_EXT || tagOf(e0) > 8 * level + 9) return;
  for (let j: u32 = 1; j < GROUP_ENTRIES; j++) {
    if (load<u32>(groupPtr(g, j)) != e0) return;
  }
  store<u32>(p, e0); // unpublish first (see the write order above)
  store<u32>(freeStack + (<usize>freeTop << 2), g);
  freeTop++;
}

/** Groups currently in use (holding or leading to prefixes longer than /16). */
export function lpm6GroupsInUse(): u32 {
  return groupCap - freeTop;
}

/** Groups carved at setup. */
export function lpm6GroupCapacity(): u32 {
  return groupCap;
}

/** Address of tbl16 (2^16 u32 entries), for layout tests and dumps. */
export function lpm6Tbl16Base(): usize {
  return tbl16;
}

/** Address of group 0 (groups are 1 KiB apart), for layout tests. */
export function lpm6GroupBase(): usize {
  return groups;
}
