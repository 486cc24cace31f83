// The connection table shared by the workers (issue 18), measured in WASM
// without I/O: 1,000,000 masqueraded flows carved by one instance on a
// shared memory, then established-flow lookups and 64-byte translations
// (lookup + refresh + rewrite) by one worker thread and by two at once,
// each attached to that table and taking its lock per lookup or packet as
// the data path does. Beside them the single-worker loops without the lock
// (what one worker with a table of its own did before). Same run, same table.
// Run: npm run build && npm run asbuild:bench && node dist/bench/nat-shared.js [--ms 3000]
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { resolve } from "node:path";
import { createDataplaneMemory, instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";
import { rng, udpPacket, writeTuple } from "./nat.js";

const FLOWS = 1_000_000; // asked for; the table holds ~970,000 distinct ones
const LOOKUPS = 32_768;
const PACKETS = 4_096;
const STRIDE = 64;
const PKT_LEN = 64;
const NODE = 0xc0a80a0a;
const NOW = 1_000_000;

type Kind = "lookup" | "lookupLocked" | "translate" | "translateLocked";

interface Job {
  memory: WebAssembly.Memory;
  header: number;
  kind: Kind;
  /** This worker's tuples (lookups) or packets (translations), carved by the owner. */
  at: number;
  ms: number;
  barrier: SharedArrayBuffer;
}

const podTuple = (k: number) => ({
  proto: 17,
  src: (0x0af40000 | (k & 0xffff)) >>> 0,
  dst: (0x5d000000 + ((k >>> 16) * 2654435761) % 0xffffff) >>> 0,
  sport: 1024 + ((k * 7919) % 60000),
  dport: 53,
});

/** In a worker: attach to the table, wait for the start, loop for `ms`; returns operations per second. */
function runJob(j: Job): number {
  const raw = instantiateDataplane("bench", undefined, j.memory);
  if (raw.ctAttach(j.header) !== 0) throw new Error("ctAttach failed");
  const go = new Int32Array(j.barrier);
  Atomics.add(go, 1, 1);
  while (Atomics.load(go, 0) === 0) Atomics.wait(go, 0, 0, 50);
  const fn = {
    lookup: () => raw.ctBenchLookup(j.at, LOOKUPS) as number,
    lookupLocked: () => raw.ctBenchLookupLocked(j.at, LOOKUPS) as number,
    translate: () => raw.natBenchTranslate(j.at, STRIDE, PKT_LEN, PACKETS, NOW) as number,
    translateLocked: () => raw.natBenchTranslateLocked(j.at, STRIDE, PKT_LEN, PACKETS, NOW) as number,
  }[j.kind];
  let ops = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < j.ms) ops += fn();
  return ops / ((performance.now() - t0) / 1e3);
}

if (!isMainThread && parentPort && (workerData as { natShared?: Job }).natShared) {
  parentPort.postMessage(runJob((workerData as { natShared: Job }).natShared));
}

export interface NatSharedResult {
  flows: number;
  ms: number;
  /** Millions per second: one worker without the lock, one with it, two at once with it (their sum). */
  lookup: { unlocked1: number; locked1: number; locked2: number };
  translate: { unlocked1: number; locked1: number; locked2: number };
}

export async function runNatSharedBench(ms = 3000): Promise<NatSharedResult> {
  const memory = createDataplaneMemory();
  const owner: RawExports = instantiateDataplane("bench", undefined, memory);
  if (owner.ctSetup(FLOWS) !== 0 || owner.ctShare() !== 0) throw new Error("ctSetup failed");
  owner.natSetPortRange(1024, 65535);
  const fill: number = owner.scratchAlloc(16 * 65_536);
  let made = 0;
  for (let s = 0; s < FLOWS - 8192; s += 65_536) {
    const n = Math.min(65_536, FLOWS - 8192 - s);
    const dv = new DataView(memory.buffer);
    for (let i = 0; i < n; i++) writeTuple(dv, fill + i * 16, podTuple(s + i));
    made += owner.ctBenchCreate(fill, n, NODE, NOW) as number;
  }
  if (made < 0.9 * (FLOWS - 8192)) throw new Error(`filled ${made} flows`); // a few tuples repeat: their creates clash
  // Two workers' sets of random flows: lookup tuples (half reply direction) and packets.
  const r = rng(0x9e3779b9);
  const sets = [0, 1].map(() => {
    const look: number = owner.scratchAlloc(16 * LOOKUPS);
    const pkts: number = owner.scratchAlloc(STRIDE * PACKETS);
    const dv = new DataView(memory.buffer);
    const mem = new Uint8Array(memory.buffer);
    for (let i = 0; i < LOOKUPS; i++) {
      let t = podTuple(r() % (FLOWS - 8192));
      let ref: number = owner.ctLookup(17, t.src, t.dst, t.sport, t.dport);
      while (ref < 0 || (ref & 1) === 1) {
        // A tuple that clashed at fill time (its create was refused, or it is another flow's reply): draw again.
        t = podTuple(r() % (FLOWS - 8192));
        ref = owner.ctLookup(17, t.src, t.dst, t.sport, t.dport);
      }
      const p: number = owner.ctFlowPtr(ref >> 1);
      const reply = { proto: 17, src: dv.getUint32(p + 12, true), dst: dv.getUint32(p + 16, true), sport: dv.getUint16(p + 20, true), dport: dv.getUint16(p + 22, true) };
      writeTuple(dv, look + i * 16, i & 1 ? reply : t);
      if (i < PACKETS) udpPacket(mem, pkts + i * STRIDE, t.src, t.dst, t.sport, t.dport);
    }
    return { look, pkts };
  });
  const header = Number(owner.ctHeader());
  const run = async (kind: Kind, workers: number): Promise<number> => {
    const barrier = new SharedArrayBuffer(8);
    const go = new Int32Array(barrier);
    const file = new URL(import.meta.url);
    const rates = Array.from({ length: workers }, (_, i) => new Promise<number>((res, rej) => {
      const at = kind.startsWith("lookup") ? sets[i].look : sets[i].pkts;
      const w = new Worker(file, { workerData: { natShared: { memory, header, kind, at, ms, barrier } satisfies Job } });
      w.once("message", (v: number) => res(v));
      w.once("error", rej);
    }));
    while (Atomics.load(go, 1) < workers) await new Promise((r) => setTimeout(r, 20));
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);
    return (await Promise.all(rates)).reduce((a, b) => a + b, 0) / 1e6;
  };
  return {
    flows: made,
    ms,
    lookup: { unlocked1: await run("lookup", 1), locked1: await run("lookupLocked", 1), locked2: await run("lookupLocked", 2) },
    translate: { unlocked1: await run("translate", 1), locked1: await run("translateLocked", 1), locked2: await run("translateLocked", 2) },
  };
}

const entry = process.argv[1] ? resolve(process.argv[1]) : "";
if (isMainThread && entry.endsWith("bench/nat-shared.js")) {
  const i = process.argv.indexOf("--ms");
  const r = await runNatSharedBench(i > 0 ? Number(process.argv[i + 1]) : 3000);
  console.log(`shared connection table: ${r.flows} flows, ${r.ms} ms a row, worker threads on one shared memory`);
  for (const [name, x, unit] of [["lookups (established, both directions)", r.lookup, "M/s"], ["64 B translations (lookup + refresh + rewrite)", r.translate, "Mpps"]] as const) {
    console.log(`  ${name}: 1 worker ${x.unlocked1.toFixed(2)} ${unit} without the lock, ${x.locked1.toFixed(2)} with it (${(x.locked1 / x.unlocked1).toFixed(3)}x); 2 workers ${x.locked2.toFixed(2)} (${(x.locked2 / x.locked1).toFixed(2)}x one)`);
  }
}
