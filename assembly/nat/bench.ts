// Batch loops over the conntrack and NAT primitives for the benchmarks
// (bench/nat.ts, bench/micro.ts): each loops inside WASM, so a benchmark
// crosses the boundary once per batch, as the data path does. Exported only
// by the bench build (assembly/bench.ts -> build/overlay.bench.wasm), not by
// the module the daemon runs; tests and the daemon's test hook drive the
// same primitives from TypeScript (src/dataplane/ctfill.ts).
import { ld16, ld32, st16, st32 } from "../wire/bytes";
import { ipHeaderLen, IP_DST, IP_SRC } from "../wire/ipv4";
import { ctCreate, ctDelete, ctLock, ctLookup, ctTouch, ctUnlock, natAllocPort, CT_NAT_NONE, CT_NAT_SNAT } from "./conntrack";
import { natApplyFlow, natLookupPacket, NAT_OK } from "./translate";
import { OK } from "../abi";

// A tuple record is 16 bytes: src u32, dst u32, sport u16, dport u16, proto u8,
// 3 bytes unused (host order, little endian).

/** ctLookup for `n` tuple records at `ptr`; returns how many were found. */
export function ctBenchLookup(ptr: usize, n: u32): u32 {
  let hits: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const t = ptr + (<usize>i << 4);
    const r = ctLookup(<u32>load<u8>(t, 12), load<u32>(t), load<u32>(t, 4), <u32>load<u16>(t, 8), <u32>load<u16>(t, 10));
    hits += <u32>(r >= 0);
  }
  return hits;
}

/** ctBenchLookup taking the table's lock around each lookup, as the data
 *  path does per packet on a table the workers share (bench/nat-shared.ts). */
export function ctBenchLookupLocked(ptr: usize, n: u32): u32 {
  let hits: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const t = ptr + (<usize>i << 4);
    ctLock();
    const r = ctLookup(<u32>load<u8>(t, 12), load<u32>(t), load<u32>(t, 4), <u32>load<u16>(t, 8), <u32>load<u16>(t, 10));
    ctUnlock();
    hits += <u32>(r >= 0);
  }
  return hits;
}

/** ctCreate for `n` tuple records at `ptr` as new flows at `now`. With
 *  `nodeIp` 0 the reply tuple is the original reversed (no NAT); otherwise
 *  each flow is masqueraded to nodeIp with a port from natAllocPort (the
 *  whole new-flow setup of SNAT). Returns how many were created. */
export function ctBenchCreate(ptr: usize, n: u32, nodeIp: u32, now: u32): u32 {
  let made: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const t = ptr + (<usize>i << 4);
    const proto = <u32>load<u8>(t, 12);
    const src = load<u32>(t);
    const dst = load<u32>(t, 4);
    const sport = <u32>load<u16>(t, 8);
    const dport = <u32>load<u16>(t, 10);
    let r: i32;
    if (nodeIp == 0) {
      r = ctCreate(proto, src, dst, sport, dport, dst, src, dport, sport, CT_NAT_NONE, now);
    } else {
      const port = natAllocPort(proto, nodeIp, dst, dport, i ^ now);
      if (port == 0) continue;
      r = ctCreate(proto, src, dst, sport, dport, dst, nodeIp, dport, port, CT_NAT_SNAT, now);
    }
    made += <u32>(r >= 0);
  }
  return made;
}

/** Established-flow translation over `n` IPv4 packets at `ptr`, `stride`
 *  bytes apart, each `len` bytes: look the flow up (natLookupPacket), refresh
 *  it (ctTouch), rewrite (natApplyFlow). Then the packet's addresses and
 *  ports are swapped (checksum-neutral), so it comes back as the answer on
 *  the next call and the batch can be replayed forever, alternating between
 *  the two directions. Returns how many were translated. */
export function natBenchTranslate(ptr: usize, stride: u32, len: u32, n: u32, now: u32): u32 {
  return translateLoop(ptr, stride, len, n, now, false);
}

/** natBenchTranslate taking the table's lock around each packet's lookup,
 *  refresh and rewrite, as the data path does (pipeline/nat.ts). */
export function natBenchTranslateLocked(ptr: usize, stride: u32, len: u32, n: u32, now: u32): u32 {
  return translateLoop(ptr, stride, len, n, now, true);
}

@inline function translateLoop(ptr: usize, stride: u32, len: u32, n: u32, now: u32, locked: bool): u32 {
  let done: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const p = ptr + <usize>i * stride;
    if (locked) ctLock();
    const ref = natLookupPacket(p, len, now);
    if (ref >= 0) ctTouch(<u32>ref >> 1, <u32>ref & 1, now);
    const ok = ref >= 0 && natApplyFlow(p, len, ref) == NAT_OK;
    if (locked) ctUnlock();
    if (!ok) continue;
    done++;
    const a = ld32(p + IP_SRC);
    st32(p + IP_SRC, ld32(p + IP_DST));
    st32(p + IP_DST, a);
    const l4 = p + ipHeaderLen(p);
    const sp = ld16(l4);
    st16(l4, ld16(l4 + 2));
    st16(l4 + 2, sp);
  }
  return done;
}

/** ctDelete for the flows of `n` tuple records at `ptr` (either direction);
 *  returns how many were deleted. */
export function ctBenchDelete(ptr: usize, n: u32): u32 {
  let gone: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const t = ptr + (<usize>i << 4);
    const r = ctLookup(<u32>load<u8>(t, 12), load<u32>(t), load<u32>(t, 4), <u32>load<u16>(t, 8), <u32>load<u16>(t, 10));
    if (r >= 0 && ctDelete(<u32>r >> 1) == OK) gone++;
  }
  return gone;
}
