// Connection tracking and NAT throughput with 1,000,000 tracked flows (the
// bench build: the release build plus the batch loops; one core, no I/O):
//   lookup     ctBenchLookup over 32,768 tuples of random established flows,
//              half original, half reply direction: Mlookups/s.
//   translate  natBenchTranslate over 4,096 64-byte UDP packets of random
//              masqueraded flows: lookup (reaping check) + refresh + SNAT or
//              de-SNAT rewrite with incremental checksums: Mpps. Each packet
//              is turned around after translation, so replays alternate
//              between the two directions.
//   setup      new masqueraded flows: port allocation (natAllocPort) +
//              ctCreate, in batches of 8,192 against the full-size table,
//              each batch deleted again (ctBenchDelete) so the table stays at
//              ~1M: creates/s counts a create and its delete. The initial
//              fill from empty to 1M (creates only) is timed too.
// Random tuples over an 88 MB table measure cache-missing lookups, the
// realistic case for a big table.
// The batch loops (ctBench*, natBenchTranslate) are exported only by the
// bench build, build/overlay.bench.wasm (assembly/bench.ts).
// Run: npm run build && npm run asbuild:bench && node dist/bench/nat.js
import { measure, type Measured } from "./measure.js";
import { resolve } from "node:path";
import { instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";

const FLOWS = 1_000_000;
const LOOKUPS = 32_768;
const PACKETS = 4_096;
const PKT_LEN = 64;
const STRIDE = 64;
const CHURN = 8_192;
const FILL_CHUNK = 65_536;
const NODE = 0xc0a80a0a; // 192.168.10.10
const NOW = 1_000_000;

export interface NatBenchResult {
  flows: number;
  bytesPerFlow: number;
  mlookupsPerSec: number;
  lookupRme: number;
  translateMpps: number;
  translateRme: number;
  /** Create + delete pairs per second against the full table. */
  createsPerSec: number;
  createRme: number;
  /** Creates per second while filling the table from empty to FLOWS. */
  fillCreatesPerSec: number;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s ^ (s >>> 15)) >>> 0;
  };
}

interface Tuple { proto: number; src: number; dst: number; sport: number; dport: number }

/** Flow k's original tuple: a pod (10.244.0.0/16) to an outside address. */
function podTuple(k: number, salt: number): Tuple {
  return {
    proto: k % 5 === 0 ? 6 : 17,
    src: (0x0af40000 | (k & 0xffff)) >>> 0,
    dst: (0x5d000000 + ((k >>> 16) * 2654435761 + salt) % 0xffffff) >>> 0,
    sport: 1024 + ((k * 7919) % 60000),
    dport: [443, 80, 53][k % 3],
  };
}

export function writeTuple(dv: DataView, at: number, t: Tuple): void {
  dv.setUint32(at, t.src, true);
  dv.setUint32(at + 4, t.dst, true);
  dv.setUint16(at + 8, t.sport, true);
  dv.setUint16(at + 10, t.dport, true);
  dv.setUint8(at + 12, t.proto);
}

function checksum(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (b[off + i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** A 64-byte IPv4/UDP packet with both checksums. */
export function udpPacket(mem: Uint8Array, at: number, src: number, dst: number, sport: number, dport: number): void {
  const b = mem.subarray(at, at + PKT_LEN);
  b.fill(0);
  const dv = new DataView(b.buffer, b.byteOffset, PKT_LEN);
  b[0] = 0x45;
  dv.setUint16(2, PKT_LEN);
  dv.setUint16(6, 0x4000);
  b[8] = 64;
  b[9] = 17;
  dv.setUint32(12, src);
  dv.setUint32(16, dst);
  dv.setUint16(10, checksum(b, 0, 20));
  dv.setUint16(20, sport);
  dv.setUint16(22, dport);
  dv.setUint16(24, PKT_LEN - 20);
  const ps = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + (PKT_LEN - 20);
  let c = checksum(b, 20, PKT_LEN - 20, ps);
  if (c === 0) c = 0xffff;
  dv.setUint16(26, c);
}

function bench(name: string, fn: () => void): Promise<Measured> {
  return Promise.resolve(measure(name, fn, { seconds: 6, minSamples: 30 }));
}

/** Fill a bench-build conntrack with FLOWS masqueraded flows and measure
 *  lookups, established-flow translation and new-flow setup (one core). */
export async function runNatBench(): Promise<NatBenchResult> {
  const raw: RawExports = instantiateDataplane("bench");
  if (raw.ctSetup(FLOWS) !== 0) throw new Error("ctSetup failed");
  raw.natSetPortRange(1024, 65535);
  const tuples: number = raw.scratchAlloc(16 * FILL_CHUNK);
  const pkts: number = raw.scratchAlloc(STRIDE * PACKETS);
  const churn: number = raw.scratchAlloc(16 * CHURN);
  if (!tuples || !pkts || !churn) throw new Error("scratchAlloc failed");
  const dv = () => new DataView(raw.memory.buffer);

  // Fill: FLOWS - CHURN masqueraded flows, timed.
  const base = FLOWS - CHURN;
  let made = 0;
  const t0 = process.hrtime.bigint();
  for (let s = 0; s < base; s += FILL_CHUNK) {
    const n = Math.min(FILL_CHUNK, base - s);
    const v = dv();
    for (let i = 0; i < n; i++) writeTuple(v, tuples + i * 16, podTuple(s + i, 0));
    made += raw.ctBenchCreate(tuples, n, NODE, NOW) as number;
  }
  const fillSec = Number(process.hrtime.bigint() - t0) / 1e9;
  if (made !== base) throw new Error(`filled ${made} of ${base} flows`);

  // Lookup set: random flows, either direction (the reply tuple from the record).
  const r = rng(0x9e3779b9);
  const look: number = raw.scratchAlloc(16 * LOOKUPS);
  {
    const v = dv();
    for (let i = 0; i < LOOKUPS; i++) {
      const t = podTuple(r() % base, 0);
      const ref: number = raw.ctLookup(t.proto, t.src, t.dst, t.sport, t.dport);
      if (ref < 0) throw new Error("flow missing");
      if (i & 1) {
        const p: number = raw.ctFlowPtr(ref >> 1);
        writeTuple(v, look + i * 16, { proto: t.proto, src: v.getUint32(p + 12, true), dst: v.getUint32(p + 16, true), sport: v.getUint16(p + 20, true), dport: v.getUint16(p + 22, true) });
      } else writeTuple(v, look + i * 16, t);
    }
  }
  // Packets of random UDP flows, original direction.
  {
    const mem = new Uint8Array(raw.memory.buffer);
    for (let i = 0; i < PACKETS; i++) {
      let t: Tuple;
      do t = podTuple(r() % base, 0);
      while (t.proto !== 17);
      udpPacket(mem, pkts + i * STRIDE, t.src, t.dst, t.sport, t.dport);
    }
  }
  // Churn set: tuples no other flow uses.
  {
    const v = dv();
    for (let i = 0; i < CHURN; i++) writeTuple(v, churn + i * 16, podTuple(i, 0x5bd1e995));
  }

  const lookupFn = raw.ctBenchLookup as (p: number, n: number) => number;
  const translateFn = raw.natBenchTranslate as (p: number, s: number, l: number, n: number, now: number) => number;
  const createFn = raw.ctBenchCreate as (p: number, n: number, node: number, now: number) => number;
  const deleteFn = raw.ctBenchDelete as (p: number, n: number) => number;

  if (lookupFn(look, LOOKUPS) !== LOOKUPS) throw new Error("lookups missed");
  if (translateFn(pkts, STRIDE, PKT_LEN, PACKETS, NOW) !== PACKETS) throw new Error("translation missed");
  if (createFn(churn, CHURN, NODE, NOW) !== CHURN || deleteFn(churn, CHURN) !== CHURN) throw new Error("churn failed");

  const bl = await bench("ctBenchLookup", () => lookupFn(look, LOOKUPS));
  const bt = await bench("natBenchTranslate", () => translateFn(pkts, STRIDE, PKT_LEN, PACKETS, NOW));
  const bc = await bench("ctBenchCreate+Delete", () => {
    createFn(churn, CHURN, NODE, NOW);
    deleteFn(churn, CHURN);
  });
  return {
    flows: FLOWS,
    bytesPerFlow: Number(raw.ctMemoryBytes()) / FLOWS,
    mlookupsPerSec: (bl.hz * LOOKUPS) / 1e6,
    lookupRme: bl.rme,
    translateMpps: (bt.hz * PACKETS) / 1e6,
    translateRme: bt.rme,
    createsPerSec: bc.hz * CHURN,
    createRme: bc.rme,
    fillCreatesPerSec: base / fillSec,
  };
}

const entry = process.argv[1] ? resolve(process.argv[1]) : "";
if (entry.endsWith("bench/nat.js") || entry.endsWith("bench/nat.ts")) {
  const r = await runNatBench();
  console.log(`conntrack: ${r.flows} flows, ${r.bytesPerFlow} bytes/flow, one core`);
  console.log(`  lookup (established, both directions): ${r.mlookupsPerSec.toFixed(1)} Mlookups/s ±${r.lookupRme.toFixed(1)}%`);
  console.log(`  translate (64 B UDP, lookup+refresh+SNAT rewrite): ${r.translateMpps.toFixed(1)} Mpps ±${r.translateRme.toFixed(1)}%`);
  console.log(`  new-flow setup at ~1M flows (port alloc + create, then delete): ${(r.createsPerSec / 1e6).toFixed(2)} M creates/s ±${r.createRme.toFixed(1)}%`);
  console.log(`  fill 0 -> ${r.flows - CHURN} (port alloc + create): ${(r.fillCreatesPerSec / 1e6).toFixed(2)} M creates/s`);
}
