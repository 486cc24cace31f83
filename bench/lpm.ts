// LPM lookup throughput: 100,000 random prefixes (55% /18../24, 45% /25../32,
// so about a third of the /24s touched need a tbl8 group), then
// lpmLookupBatch over 32,768 addresses in linear memory, half inside routed
// prefixes and half anywhere. Random addresses over a 64 MiB tbl24 measure
// cache-missing lookups, the realistic case for a big table.
// Run: npm run build && node dist/bench/lpm.js   (or: npx tsx bench/lpm.ts)
import { measure } from "./measure.js";
import { resolve } from "node:path";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { RouteRules } from "../src/dataplane/routes.js";

const ROUTES = 100_000;
const LOOKUPS = 32_768;

export interface LpmBenchResult {
  mlookupsPerSec: number;
  routes: number;
  /** Relative margin of error of the measurement, percent. */
  rme: number;
  tbl8InUse: number;
}

/** Load ROUTES random prefixes into a release-build Dataplane and measure
 *  lpmLookupBatch in millions of lookups per second (one core). */
export function runLpmBench(): Promise<LpmBenchResult> {
  // Addresses and results live in the packet slot area, which nothing else
  // uses here: 256 slots x 2 KiB = 512 KiB, room for both 128 KiB arrays.
  const dp = new Dataplane({ kind: "release", tbl8Groups: 65536, batch: 256, slotSize: 2048 });
  const routes = new RouteRules(dp.lpmBackend);
  let seed = 0x2545f491;
  const rnd = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed ^ (seed >>> 15)) >>> 0;
  };
  while (routes.size < ROUTES) {
    const r = rnd();
    const len = r % 100 < 55 ? 18 + (rnd() % 7) : 25 + (rnd() % 8);
    const base = (r & 0x100 ? 0x0a000000 | (rnd() & 0xffffff) : 0xac100000 | (rnd() & 0xfffff)) >>> 0;
    const st = routes.add(base, len, rnd() % 4096);
    if (st !== 0) throw new Error(`route load failed with status ${st}`);
  }
  const rules = routes.entries();
  const addrs = dp.slotBase;
  const out = dp.slotBase + LOOKUPS * 4;
  const view = new Uint32Array(dp.memory.buffer, addrs, LOOKUPS);
  for (let i = 0; i < LOOKUPS; i++) view[i] = i & 1 ? rules[rnd() % rules.length].prefix + (rnd() & 0xff) : rnd();
  const lookupBatch = dp.raw.lpmLookupBatch as (a: number, o: number, n: number) => void;

  const m = measure("lpmLookupBatch", () => lookupBatch(addrs, out, LOOKUPS), { seconds: 8, minSamples: 40 });
  return Promise.resolve({
    mlookupsPerSec: (m.hz * LOOKUPS) / 1e6,
    routes: routes.size,
    rme: m.rme,
    tbl8InUse: dp.raw.lpmTbl8InUse() as number,
  });
}

const entry = process.argv[1] ? resolve(process.argv[1]) : "";
if (entry.endsWith("bench/lpm.js") || entry.endsWith("bench/lpm.ts")) {
  const r = await runLpmBench();
  console.log(
    `lpm lookup: ${r.mlookupsPerSec.toFixed(1)} Mlookups/s ±${r.rme.toFixed(1)}% ` +
      `(${r.routes} routes, ${r.tbl8InUse} tbl8 groups, batches of ${LOOKUPS}, one core)`,
  );
}
