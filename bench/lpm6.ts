// IPv6 LPM lookup throughput (assembly/tables/lpm6.ts): 100,000 prefixes in a
// Kubernetes-like mix, then lpm6LookupBatch over 32,768 addresses in linear
// memory (16 bytes each), half inside routed prefixes and half anywhere.
//
// The mix (distinct prefixes, drawn with a fixed seed):
//   - 4 cluster /48s (fd10:0:N::/48), 60,000 node /64s under them (random
//     16-bit node index, so about 15,000 per /48 spread over all 256 /56s);
//   - 2 cluster /64s (fd20:0:0:N::/64), 30,000 node /80s under them;
//   - 4 service /108s (fd30::N:0:0/108), 6,000 /128 ClusterIPs under them
//     and 3,989 /112../127 blocks under them;
//   - a default route ::/0, so no lookup misses (a random address ends in
//     tbl16, one load).
// The IPv4 row (bench/lpm.ts) is the yardstick: run on its own, this file
// runs both back to back and prints the ratio (issue 16: IPv6 >= 0.5x IPv4).
// Run: npm run build && node dist/bench/lpm6.js   (or: npx tsx bench/lpm6.ts)
import { measure } from "./measure.js";
import { resolve } from "node:path";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import { runLpmBench } from "./lpm.js";

const ROUTES = 100_000;
const LOOKUPS = 32_768;
const GROUPS = 16_384; // the mix uses about 8,000

export interface Lpm6BenchResult {
  mlookupsPerSec: number;
  routes: number;
  /** Relative margin of error of the measurement, percent. */
  rme: number;
  groupsInUse: number;
  /** Bytes the table uses: 256 KiB tbl16 + 1 KiB per group in use. */
  tableBytes: number;
}

type Rnd = () => number;

function lcg(seed: number): Rnd {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed ^ (seed >>> 15)) >>> 0;
  };
}

/** The mix (see the file comment): how many of each, and how to draw one. */
const MIX: { count: number; draw: (rnd: Rnd) => { prefix: bigint; len: number } }[] = [
  { count: 60_000, draw: (rnd) => ({ prefix: (0xfd10n << 112n) | (BigInt(rnd() & 3) << 80n) | (BigInt(rnd() & 0xffff) << 64n), len: 64 }) },
  { count: 30_000, draw: (rnd) => ({ prefix: (0xfd20n << 112n) | (BigInt(rnd() & 1) << 64n) | (BigInt(rnd() & 0xffff) << 48n), len: 80 }) },
  { count: 6_000, draw: (rnd) => ({ prefix: serviceBase(rnd) | hostBits20(rnd), len: 128 }) },
  {
    count: 3_989,
    draw: (rnd) => {
      const len = 112 + (rnd() % 16);
      return { prefix: serviceBase(rnd) | (hostBits20(rnd) & ~((1n << BigInt(128 - len)) - 1n)), len };
    },
  },
];

function serviceBase(rnd: Rnd): bigint {
  return (0xfd30n << 112n) | (BigInt(rnd() & 3) << 32n);
}

/** The 20 host bits of a service /108. */
function hostBits20(rnd: Rnd): bigint {
  return BigInt(rnd() & 0xfffff);
}

/** The 100k-prefix table of the mix, loaded through RouteRules6 (11 cluster,
 *  service and default prefixes, then each part of MIX to its count). */
export function loadMix(dp: Dataplane): RouteRules6 {
  const routes = new RouteRules6(dp.lpm6Backend);
  const rnd = lcg(0x2545f491);
  const add = (prefix: bigint, len: number) => {
    const st = routes.add(prefix, len, rnd() % 4096);
    if (st !== 0) throw new Error(`route load failed with status ${st}`);
  };
  add(0n, 0);
  for (let n = 0n; n < 4n; n++) add((0xfd10n << 112n) | (n << 80n), 48);
  for (let n = 0n; n < 2n; n++) add((0xfd20n << 112n) | (n << 64n), 64);
  for (let n = 0n; n < 4n; n++) add((0xfd30n << 112n) | (n << 32n), 108);
  for (const part of MIX) {
    const goal = routes.size + part.count;
    while (routes.size < goal) {
      const p = part.draw(rnd);
      if (routes.get(p.prefix, p.len) === undefined) add(p.prefix, p.len);
    }
  }
  if (routes.size !== ROUTES) throw new Error(`bench setup: ${routes.size} routes, not ${ROUTES}`);
  return routes;
}

/** A random 128-bit address. */
function anyAddr(rnd: Rnd): bigint {
  let v = 0n;
  for (let k = 0; k < 4; k++) v = (v << 32n) | BigInt(rnd());
  return v;
}

/** Load the mix into a release-build Dataplane and measure lpm6LookupBatch
 *  in millions of lookups per second (one core). */
export function runLpm6Bench(): Promise<Lpm6BenchResult> {
  const dp = new Dataplane({ kind: "release", lpm6Groups: GROUPS, batch: 256, slotSize: 2048 });
  const routes = loadMix(dp);
  const rules = routes.entries();
  const rnd = lcg(0x9e3779b9);
  const addrs = Number(dp.raw.allocScratch(LOOKUPS * 16));
  const out = Number(dp.raw.allocScratch(LOOKUPS * 4));
  if (addrs === 0 || out === 0) throw new Error("bench setup: no memory for the address buffers");
  const dv = dp.dv;
  for (let i = 0; i < LOOKUPS; i++) {
    let a = anyAddr(rnd);
    if (i & 1) {
      const r = rules[rnd() % rules.length];
      a = r.prefix | (a & ~(((1n << 128n) - 1n) << BigInt(128 - r.len)) & ((1n << 128n) - 1n));
    }
    dv.setBigUint64(addrs + i * 16, a >> 64n);
    dv.setBigUint64(addrs + i * 16 + 8, BigInt.asUintN(64, a));
  }
  const lookupBatch = dp.raw.lpm6LookupBatch as (a: number, o: number, n: number) => void;
  const m = measure("lpm6LookupBatch", () => lookupBatch(addrs, out, LOOKUPS), { seconds: 8, minSamples: 40 });
  const groupsInUse = dp.raw.lpm6GroupsInUse() as number;
  return Promise.resolve({
    mlookupsPerSec: (m.hz * LOOKUPS) / 1e6,
    routes: routes.size,
    rme: m.rme,
    groupsInUse,
    tableBytes: 256 * 1024 + groupsInUse * 1024,
  });
}

const entry = process.argv[1] ? resolve(process.argv[1]) : "";
if (entry.endsWith("bench/lpm6.js") || entry.endsWith("bench/lpm6.ts")) {
  const v4 = await runLpmBench();
  const v6 = await runLpm6Bench();
  console.log(`lpm  (IPv4) lookup: ${v4.mlookupsPerSec.toFixed(1)} Mlookups/s ±${v4.rme.toFixed(1)}% (${v4.routes} routes, ${v4.tbl8InUse} tbl8 groups)`);
  console.log(
    `lpm6 (IPv6) lookup: ${v6.mlookupsPerSec.toFixed(1)} Mlookups/s ±${v6.rme.toFixed(1)}% ` +
      `(${v6.routes} routes, ${v6.groupsInUse} groups, table ${(v6.tableBytes / 2 ** 20).toFixed(1)} MiB, batches of ${LOOKUPS}, one core)`,
  );
  console.log(`IPv6/IPv4 lookup rate: ${(v6.mlookupsPerSec / v4.mlookupsPerSec).toFixed(2)} (target >= 0.5)`);
}
