// Table operations exported to the control plane (owned by the tables work).
// Signatures use only u32/i32/u64/usize so the JS side sees plain numbers
// (and bigints for u64).
import { carve } from "../layout";
import { lpmLookup, LPM_MISS, LPM_MAX_NH } from "./lpm";
import { lpm6Lookup } from "./lpm6";

export {
  lpmSetup, lpmClear, lpmLookup, lpmInsert, lpmDelete, lpmTbl8InUse, lpmTbl8Capacity, lpmTbl24Base, lpmTbl8Base,
} from "./lpm";
export { lpm6Setup, lpm6Clear, lpm6Lookup, lpm6Insert, lpm6Delete, lpm6GroupsInUse, lpm6GroupCapacity } from "./lpm6";
export { lpm6Tbl16Base, lpm6GroupBase } from "./lpm6";
export { htCreate, htClear, htFind, htValueAt, htPut, htDelete, htCount, htCapacity, htUsedAt, htKeyAt, htHomeOf } from "./hash";

/** LPM_MISS (0xFFFFFFFF): what lpmLookup returns when no route matches. */
export function lpmMiss(): u32 {
  return LPM_MISS;
}

/** The largest next-hop index a route can carry (0xFFFFFE). */
export function lpmMaxNexthop(): u32 {
  return LPM_MAX_NH;
}

/** Look up `n` host-order addresses stored as u32 at `addrsPtr` and write
 *  each result (next hop or LPM_MISS) as u32 at `outPtr`; the two may be
 *  the same buffer. One boundary crossing for a whole batch, for benchmarks
 *  and bulk checks. The caller owns both buffers (see scratchAlloc). */
export function lpmLookupBatch(addrsPtr: usize, outPtr: usize, n: u32): void {
  for (let i: u32 = 0; i < n; i++) {
    const off = <usize>i << 2;
    store<u32>(outPtr + off, lpmLookup(load<u32>(addrsPtr + off)));
  }
}

/** Look up `n` IPv6 addresses, 16 network-order bytes each, stored back to
 *  back at `addrsPtr`, and write each result (next hop or LPM_MISS) as u32
 *  at `outPtr`; the two may be the same buffer (result i lands on bytes of
 *  an address already read). One boundary crossing for a whole batch, as
 *  lpmLookupBatch. */
export function lpm6LookupBatch(addrsPtr: usize, outPtr: usize, n: u32): void {
  for (let i: u32 = 0; i < n; i++) {
    store<u32>(outPtr + (<usize>i << 2), lpm6Lookup(addrsPtr + (<usize>i << 4)));
  }
}

/** Reserve `bytes` of zeroed, 64-byte aligned linear memory for the caller
 *  (benchmark and test buffers) for the life of the instance. Returns 0
 *  when memory cannot grow. Init-time only: it is never freed. */
export function scratchAlloc(bytes: u32): usize {
  return carve(<usize>bytes, 64);
}
