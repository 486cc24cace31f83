// Open-addressing hash tables in linear memory (neighbours, FDB, peers by
// underlay address). Many instances; a table is the address of its header.
//
// Layout (little endian, carved 64-byte aligned):
//
//   header, 64 bytes (one cache line, so slot 0 starts on a line boundary)
//     0        4        8        12       16                             64
//     +--------+--------+--------+--------+------------------------------+
//     |capacity|  mask  | count  | limit  |          (unused)            |
//     +--------+--------+--------+--------+------------------------------+
//   slots, capacity x 24 bytes
//     0                 8                 16       20       24
//     +-----------------+-----------------+--------+--------+
//     |     key u64     |    value u64    |used u32|  pad   |
//     +-----------------+-----------------+--------+--------+
//
// Why 24-byte slots with an inline flag: the key space is all of u64, so no
// key value can stand for "empty"; a separate flag array would put every
// probe on two cache lines instead of one. 24 keeps key and value 8-aligned.
//
// Linear probing. Deletion shifts later members of the probe cluster back
// into the hole (Knuth 6.4, Algorithm R), so there are no tombstones and a
// lookup stops at the first empty slot. Load is capped at 7/8 (`limit`),
// which also guarantees every probe loop meets an empty slot and ends.
import { carve, regionsEnd } from "../layout";
import { E_FULL, E_NOT_FOUND, OK } from "../abi";

const H_CAP: usize = 0;
const H_MASK: usize = 4;
const H_COUNT: usize = 8;
const H_LIMIT: usize = 12;
const HDR: usize = 64;
const SLOT: usize = 24;
const S_KEY: usize = 0;
const S_VAL: usize = 8;
const S_USED: usize = 16;
// 2^26 x 24 bytes = 1.5 GiB: the most that can fit beside anything else in
// a 4 GiB wasm32 memory, and small enough that the size never wraps.
const MAX_CAP: u32 = 1 << 26;

/** MurmurHash3's fmix64: every key bit reaches every hash bit, so keys that
 *  differ only in high bits (MACs, addresses in one subnet) spread out. */
@inline export function mix64(k: u64): u64 {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccd;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53;
  k ^= k >> 33;
  return k;
}

@inline function slotPtr(t: usize, i: u32): usize {
  return t + HDR + <usize>i * SLOT;
}

@inline function homeOf(key: u64, mask: u32): u32 {
  return <u32>mix64(key) & mask;
}

/** Carve an empty table of at least `capacity` slots (rounded up to a power
 *  of two, at least 8) that holds up to 7/8 of that many keys. Returns its
 *  address, or 0 when memory is exhausted or capacity exceeds 2^26.
 *  Init-time only: the memory is never given back. */
export function htCreate(capacity: u32): usize {
  if (capacity > MAX_CAP) return 0;
  let cap: u32 = 8;
  while (cap < capacity) cap <<= 1;
  const bytes = HDR + <usize>cap * SLOT;
  // carve() does not guard its own arithmetic; keep start + bytes below 4 GiB.
  if (<u64>bytes + 128 > <u64>(<usize>0xffffffff - regionsEnd())) return 0;
  const t = carve(bytes);
  if (t == 0) return 0;
  store<u32>(t, cap, H_CAP);
  store<u32>(t, cap - 1, H_MASK);
  store<u32>(t, 0, H_COUNT);
  store<u32>(t, cap - (cap >> 3), H_LIMIT);
  return t;
}

/** Remove every entry of table `t`; capacity is unchanged. */
export function htClear(t: usize): void {
  memory.fill(t + HDR, 0, <usize>load<u32>(t, H_CAP) * SLOT);
  store<u32>(t, 0, H_COUNT);
}

/** Slot index holding `key` in table `t`, or -1. Hot path: never throws,
 *  allocates nothing; ends at the first empty slot, which the 7/8 load cap
 *  guarantees exists. */
@inline export function htFind(t: usize, key: u64): i32 {
  const mask = load<u32>(t, H_MASK);
  let i = homeOf(key, mask);
  while (true) {
    const s = slotPtr(t, i);
    if (load<u32>(s, S_USED) == 0) return -1;
    if (load<u64>(s, S_KEY) == key) return <i32>i;
    i = (i + 1) & mask;
  }
  return -1;
}

/** Value in `slot` of table `t`; `slot` must be a result of htFind that is
 *  >= 0, with no htPut/htDelete in between (a delete may move entries). */
@inline export function htValueAt(t: usize, slot: i32): u64 {
  return load<u64>(slotPtr(t, <u32>slot), S_VAL);
}

/** Map `key` to `value` in table `t`. Updating a key already present always
 *  succeeds; a new key is refused with E_FULL, changing nothing, once the
 *  table holds 7/8 of its capacity. Returns OK or E_FULL. */
export function htPut(t: usize, key: u64, value: u64): i32 {
  const mask = load<u32>(t, H_MASK);
  let i = homeOf(key, mask);
  while (true) {
    const s = slotPtr(t, i);
    if (load<u32>(s, S_USED) == 0) {
      const n = load<u32>(t, H_COUNT);
      if (n >= load<u32>(t, H_LIMIT)) return E_FULL;
      store<u64>(s, key, S_KEY);
      store<u64>(s, value, S_VAL);
      store<u32>(s, 1, S_USED);
      store<u32>(t, n + 1, H_COUNT);
      return OK;
    }
    if (load<u64>(s, S_KEY) == key) {
      store<u64>(s, value, S_VAL);
      return OK;
    }
    i = (i + 1) & mask;
  }
  return E_FULL;
}

/** Remove `key` from table `t`. Returns OK, or E_NOT_FOUND (nothing
 *  changes). Entries later in the same probe cluster may move to earlier
 *  slots, so slot indices from htFind are stale afterwards. */
export function htDelete(t: usize, key: u64): i32 {
  const found = htFind(t, key);
  if (found < 0) return E_NOT_FOUND;
  const mask = load<u32>(t, H_MASK);
  let hole = <u32>found;
  let j = hole;
  while (true) {
    j = (j + 1) & mask;
    const s = slotPtr(t, j);
    if (load<u32>(s, S_USED) == 0) break;
    const home = homeOf(load<u64>(s, S_KEY), mask);
    // The entry at j may fill the hole unless its home lies cyclically in
    // (hole, j]: then the hole is before its home and a lookup starting at
    // home would never pass the hole.
    const homeAfterHole = hole <= j ? home > hole && home <= j : home > hole || home <= j;
    if (!homeAfterHole) {
      memory.copy(slotPtr(t, hole), s, SLOT);
      hole = j;
    }
  }
  memory.fill(slotPtr(t, hole), 0, SLOT);
  store<u32>(t, load<u32>(t, H_COUNT) - 1, H_COUNT);
  return OK;
}

/** Keys in table `t`. */
export function htCount(t: usize): u32 {
  return load<u32>(t, H_COUNT);
}

/** Slots in table `t` (a power of two; 7/8 of it can be filled). */
export function htCapacity(t: usize): u32 {
  return load<u32>(t, H_CAP);
}

/** For enumeration (`show` commands, tests): 1 when `slot` < capacity holds
 *  a key, else 0. */
export function htUsedAt(t: usize, slot: u32): i32 {
  return <i32>(slot < load<u32>(t, H_CAP) && load<u32>(slotPtr(t, slot), S_USED) != 0);
}

/** Key in `slot` of table `t`; meaningful only where htUsedAt is 1. */
export function htKeyAt(t: usize, slot: u32): u64 {
  if (slot >= load<u32>(t, H_CAP)) return 0;
  return load<u64>(slotPtr(t, slot), S_KEY);
}

/** Home slot of `key` in table `t`, for tests that build colliding keys. */
export function htHomeOf(t: usize, key: u64): u32 {
  return homeOf(key, load<u32>(t, H_MASK));
}
