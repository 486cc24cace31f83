// Micro benchmarks of the WASM stages alone (no I/O): Mpps per stage for
// 64-byte and 1400-byte packets at a fixed batch size, timed with tinybench
// (bench/measure.ts; 5 s a stage, as benchmark.js's default maxTime was).
// Run: npm run bench   (JSON lands in bench/results/micro-<date>.json)
// A quick check that it runs (numbers meaningless): BENCH_TIME_SCALE=0.01
import { barChartSvg } from "./chart.js";
import { Measurements, type Measured } from "./measure.js";
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { RouteRules } from "../src/dataplane/routes.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import { ipv6ToBigint, ipv6ToBytes } from "../src/config/net6.js";
import { repoRoot } from "../src/dataplane/wasm.js";
import { HEADROOM, VERDICT_TO_DEVICE, VERDICT_TX_DIRECT, VERDICT_TX_UNDERLAY } from "../src/dataplane/abi.js";

const BATCH = 256;

const ipn = (s: string) => s.split(".").reduce((a, x) => (a << 8) | Number(x), 0) >>> 0;

function checksum(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | b[off + i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** An IPv4/UDP packet of `size` bytes in total (size >= 28). */
function packet(size: number, src: string, dst: string, sport: number): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  b[0] = 0x45;
  dv.setUint16(2, size);
  dv.setUint16(6, 0x4000);
  b[8] = 255;
  b[9] = 17;
  dv.setUint32(12, ipn(src));
  dv.setUint32(16, ipn(dst));
  dv.setUint16(10, checksum(b, 0, 20));
  dv.setUint16(20, sport);
  dv.setUint16(22, 8080);
  dv.setUint16(24, size - 20);
  return b;
}

/** An IPv6/UDP packet of `size` bytes in total (size >= 48). */
function packet6(size: number, src: string, dst: string, sport: number): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x60000000);
  dv.setUint16(4, size - 40);
  b[6] = 17;
  b[7] = 64;
  ipv6ToBytes(ipv6ToBigint(src), b, 8);
  ipv6ToBytes(ipv6ToBigint(dst), b, 24);
  dv.setUint16(40, sport);
  dv.setUint16(42, 8080);
  dv.setUint16(44, size - 40);
  dv.setUint16(46, 0xffff); // a UDP checksum the data path does not verify (it forwards; the pod's stack checks)
  return b;
}

interface Node { dp: Dataplane; routes: RouteRules; routes6: RouteRules6 }

/** worker2-like node with `extraRoutes` random /24../32 routes on top of the peers'. */
function node(underlay: string, overlay: string, peerUnderlay: string, peerVtep: string, peerPod: string, ownPod: string, extraRoutes: number): Node {
  const dp = new Dataplane({ batch: BATCH, tbl8Groups: 1 << 16, lpm6Groups: 1 << 12 });
  const mac = BigInt("0x0e00" + ipn(underlay).toString(16).padStart(8, "0"));
  const peerMac = BigInt("0x0e00" + ipn(peerUnderlay).toString(16).padStart(8, "0"));
  dp.configure({ mode: "tun", underlay: ipn(underlay), overlay: ipn(overlay), vtepMac: mac, vni: 100, underlayMtu: 9000 });
  dp.setPeer(0, ipn(peerUnderlay), peerMac);
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "vxlan", 0, ipn(peerVtep));
  dp.setNexthop(2, "ipip", 0, 0);
  dp.neighSet(ipn(peerVtep), peerMac);
  dp.fdbSet(peerMac, 0);
  const routes = new RouteRules(dp.lpmBackend);
  // Random background routes first, so lookups run against a realistic table.
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let k = 0; k < extraRoutes; k++) {
    const len = 16 + (rnd() % 17);
    const a = ((10 << 24) | (rnd() & 0x00ffffff)) >>> 0; // 10/8: never our test addresses
    routes.add(a, len, 2);
  }
  routes.add(ipn(ownPod), 24, 0);
  routes.add(ipn(peerPod), 24, 1);
  // IPv6 (issue 16): the same shape, pods 2001:2:0:N::/64, with as many
  // background routes as a big cluster's: node /64s under four /48s of
  // 2001:db8::/32 (never our addresses; bench/lpm6.ts measures other mixes).
  dp.configure({ mode: "tun", underlay: ipn(underlay), overlay: ipn(overlay), vtepMac: mac, vni: 100, underlayMtu: 9000, overlay6: pod6(ownPod), underlay6: ipv6ToBigint("2001:2:ff::12") });
  const routes6 = new RouteRules6(dp.lpm6Backend);
  const add6 = (a: bigint, len: number, nh: number) => {
    const st = routes6.add(a, len, nh);
    if (st !== 0) throw new Error(`bench setup: IPv6 route load failed with status ${st}`);
  };
  add6(pod6(ownPod), 64, 0);
  add6(pod6(peerPod), 64, 1);
  while (routes6.size < extraRoutes + 2) {
    const a = (0x20010db8n << 96n) | (BigInt(rnd() >>> 30) << 80n) | (BigInt(rnd() >>> 16) << 64n); // high bits: an LCG's low bits cycle fast
    if (routes6.get(a, 64) === undefined) add6(a, 64, 2);
  }
  return { dp, routes, routes6 };
}

/** Worker N's IPv6 pod prefix 2001:2:0:N::/64 for its IPv4 pod prefix 198.19.N.0. */
const pod6 = (pod: string) => ipv6ToBigint(`2001:2:0:${pod.split(".")[2]}::`);

interface StageResult { stage: string; size: number; mpps: number; rme: number }

function runSuite(): Promise<StageResult[]> {
  const results: StageResult[] = [];
  const w2 = node("198.18.0.12", "198.19.2.0", "198.18.1.13", "198.19.3.0", "198.19.3.0", "198.19.2.0", 100_000);
  const w3 = node("198.18.1.13", "198.19.3.0", "198.18.0.12", "198.19.2.0", "198.19.2.0", "198.19.3.0", 0);
  const suite = new Measurements({ seconds: 5 });

  for (const size of [64, 1400]) {
    const pkts = Array.from({ length: BATCH }, (_, i) => packet(size, "198.19.2.5", `198.19.3.${(i % 250) + 1}`, 1024 + i));
    const load = (dp: Dataplane) => pkts.forEach((p, i) => dp.writePacket(i, p));

    // encap + lookup: the inner TTL (255) drops by one per pass; reload every 200 passes.
    for (const [stage, nh] of [["vxlan encap + lpm", 1], ["ipip encap + lpm", 2]] as const) {
      let passes = 0;
      suite.add(`${stage} ${size}B`, () => {
        if (passes++ % 200 === 0) {
          w2.routes.add(ipn("198.19.3.0"), 24, nh);
          load(w2.dp);
        }
        w2.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
        w2.dp.raw.processPodBatch(BATCH);
      }, { before: () => { passes = 0; }, after: (run) => { expectVerdict(w2.dp, VERDICT_TX_UNDERLAY, stage); if (run) record(stage, size); } });
    }

    // The IPv6 underlay (peers[].underlay6): the same VXLAN encap with a
    // 70-byte outer header and the UDP checksum over the whole datagram
    // (RFC 6935). Decap over IPv6 is the IPv4 row's work: the kernel strips
    // the outer header, the receiver names the peer.
    {
      const stage = "vxlan encap over IPv6 + lpm";
      let passes = 0;
      suite.add(`${stage} ${size}B`, () => {
        if (passes++ % 200 === 0) {
          w2.routes.add(ipn("198.19.3.0"), 24, 1);
          load(w2.dp);
        }
        w2.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
        w2.dp.raw.processPodBatch(BATCH);
      }, {
        before: () => {
          passes = 0;
          w2.dp.setPeer6(0, ipv6ToBigint("2001:2:ff:1::13"));
        },
        after: (run) => {
          const r = w2.dp.result(0);
          if (w2.dp.readPacket(0)[0] >> 4 !== 6) throw new Error(`${stage}: not an IPv6 outer header (verdict ${r.verdict} reason ${r.reason})`);
          expectVerdict(w2.dp, VERDICT_TX_UNDERLAY, stage);
          w2.dp.setPeer6(0, 0n);
          if (run) record(stage, size);
        },
      });
    }

    // decap: produce real wire packets once, then replay them.
    w2.routes.add(ipn("198.19.3.0"), 24, 1);
    load(w2.dp);
    w2.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
    w2.dp.raw.processPodBatch(BATCH);
    if (w2.dp.result(0).verdict !== VERDICT_TX_UNDERLAY) throw new Error("bench setup: vxlan encap failed: " + JSON.stringify(w2.dp.result(0)));
    const vx = pkts.map((_, i) => w2.dp.readPacket(i).subarray(28));
    suite.add(`vxlan decap ${size}B`, () => {
      w3.dp.raw.rearmBatch(BATCH, HEADROOM, size + 22, ipn("198.18.0.12"), 0);
      w3.dp.raw.processVxlanBatch(BATCH);
    }, {
      before: () => vx.forEach((p, i) => w3.dp.writePacket(i, p, { addr: ipn("198.18.0.12") })),
      after: (run) => { expectVerdict(w3.dp, VERDICT_TO_DEVICE, "vxlan decap"); if (run) record("vxlan decap", size); },
    });

    // IPv6 (issue 16): encap with the IPv6 LPM (100k background routes), and decap of what it made.
    const pkts6 = Array.from({ length: BATCH }, (_, i) => packet6(Math.max(size, 48), "2001:2:0:2::5", `2001:2:0:3::${((i % 250) + 1).toString(16)}`, 1024 + i));
    suite.add(`vxlan encap + lpm6 ${size}B`, () => {
      w2.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
      w2.dp.raw.processPodBatch(BATCH);
    }, {
      before: () => pkts6.forEach((p, i) => w2.dp.writePacket(i, p)),
      after: (run) => { expectVerdict(w2.dp, VERDICT_TX_UNDERLAY, "vxlan encap + lpm6"); if (run) record("vxlan encap + lpm6", size); },
    });
    pkts6.forEach((p, i) => w2.dp.writePacket(i, p));
    w2.dp.raw.processPodBatch(BATCH);
    const vx6 = pkts6.map((_, i) => w2.dp.readPacket(i).subarray(28));
    suite.add(`vxlan decap6 ${size}B`, () => {
      w3.dp.raw.rearmBatch(BATCH, HEADROOM, size + 22, ipn("198.18.0.12"), 0);
      w3.dp.raw.processVxlanBatch(BATCH);
    }, {
      before: () => vx6.forEach((p, i) => w3.dp.writePacket(i, p, { addr: ipn("198.18.0.12") })),
      after: (run) => { expectVerdict(w3.dp, VERDICT_TO_DEVICE, "vxlan decap6"); if (run) record("vxlan decap6", size); },
    });

    w2.routes.add(ipn("198.19.3.0"), 24, 2);
    load(w2.dp);
    w2.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
    w2.dp.raw.processPodBatch(BATCH);
    const ii = pkts.map((_, i) => w2.dp.readPacket(i));
    // worker3 must route worker2's pods over ipip for the anti-spoofing check.
    suite.add(`ipip decap ${size}B`, () => {
      w3.dp.raw.rearmBatch(BATCH, HEADROOM, size + 20, 0, 0);
      w3.dp.raw.processIpipBatch(BATCH);
    }, {
      before: () => {
        w3.routes.add(ipn("198.19.2.0"), 24, 2);
        ii.forEach((p, i) => w3.dp.writePacket(i, p));
      },
      after: (run) => {
        expectVerdict(w3.dp, VERDICT_TO_DEVICE, "ipip decap");
        if (run) record("ipip decap", size);
        w3.routes.add(ipn("198.19.2.0"), 24, 1);
      },
    });
  }

  // NAT switched on (masquerade + a service, 1,000,000 tracked flows) for
  // ordinary pod-to-pod traffic: the conntrack miss and service lookup each
  // packet pays before its route.
  {
    const wn = node("198.18.0.12", "198.19.2.0", "198.18.1.13", "198.19.3.0", "198.19.3.0", "198.19.2.0", 100_000);
    wn.dp.natSetup({ maxFlows: 1_000_000 });
    wn.dp.natConfigure({ enabled: true, masquerade: true, nodeIp: ipn("198.18.0.12"), snatAddress: ipn("198.19.2.254"), seed: 7 });
    wn.dp.setServices([{ protocol: "tcp", addr: ipn("198.18.250.10"), port: 80, backends: [{ addr: ipn("198.19.3.9"), port: 8080 }] }]);
    const CHUNK = 65536;
    const tuples = Number(wn.dp.raw.allocScratch(CHUNK * 16));
    let made = 0;
    for (let base = 0; made < 1_000_000; base += CHUNK) {
      for (let k = 0; k < CHUNK; k++) {
        const t = tuples + k * 16, f = base + k;
        wn.dp.dv.setUint32(t, (0xc6130200 | (f & 0xff)) >>> 0, true); // 198.19.2.x
        wn.dp.dv.setUint32(t + 4, (0x08000000 + (f >>> 8)) >>> 0, true); // outside
        wn.dp.dv.setUint16(t + 8, 1024 + (f % 60000), true);
        wn.dp.dv.setUint16(t + 10, 443, true);
        wn.dp.dv.setUint8(t + 12, 6);
      }
      made += wn.dp.ctCreateTuples(tuples, Math.min(CHUNK, 1_000_000 - made), ipn("198.18.0.12"), 100);
    }
    if (wn.dp.conntrackStats().entries < 999_000) throw new Error("bench setup: conntrack fill");
    for (const size of [64, 1400]) {
      const pkts = Array.from({ length: BATCH }, (_, i) => packet(size, "198.19.2.5", `198.19.3.${(i % 250) + 1}`, 1024 + i));
      let passes = 0;
      suite.add(`vxlan encap + lpm, NAT on ${size}B`, () => {
        if (passes++ % 200 === 0) pkts.forEach((p, i) => wn.dp.writePacket(i, p));
        wn.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
        wn.dp.raw.processPodBatch(BATCH);
      }, { before: () => { passes = 0; }, after: (run) => { expectVerdict(wn.dp, VERDICT_TX_UNDERLAY, "nat on"); if (run) record("vxlan encap + lpm, NAT on", size); } });
    }
  }

  // Masquerade of established flows on the pod side, both families in one
  // run: what NAT66 (handles for the addresses, 16-byte rewrites) costs
  // against NAT44. 256 flows from pods to an outside host; every pass first
  // puts the pods' packets back (translation rewrote them), the same copy
  // for both families.
  {
    const wm = node("198.18.0.12", "198.19.2.0", "198.18.1.13", "198.19.3.0", "198.19.3.0", "198.19.2.0", 0);
    wm.dp.natSetup({ maxFlows: 65_536, names6: 65_536 });
    wm.dp.natConfigure({ enabled: true, masquerade: true, nodeIp: ipn("198.18.0.12"), snatAddress: ipn("198.19.2.254"), seed: 7, ipv6: { masquerade: true, nodeAddress: "2001:2:ff::12" } });
    const size = 64;
    const families: Array<[string, Uint8Array[]]> = [
      ["NAT44", Array.from({ length: BATCH }, (_, i) => packet(size, `198.19.2.${(i % 200) + 5}`, "198.18.2.100", 1024 + i))],
      ["NAT66", Array.from({ length: BATCH }, (_, i) => packet6(size, `2001:2:0:2::${((i % 200) + 5).toString(16)}`, "2001:2:ff:2::100", 1024 + i))],
    ];
    for (const [fam, pkts] of families) {
      const restore = () => pkts.forEach((p, i) => wm.dp.u8.set(p, wm.dp.slotBase + i * wm.dp.slotSize + HEADROOM));
      suite.add(`masquerade ${fam} (established) ${size}B`, () => {
        restore();
        wm.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
        wm.dp.raw.processPodBatch(BATCH);
      }, {
        before: () => {
          restore();
          wm.dp.raw.rearmBatch(BATCH, HEADROOM, size, 0, 0);
          wm.dp.raw.processPodBatch(BATCH); // the flows' first packets
        },
        after: (run) => { expectVerdict(wm.dp, VERDICT_TX_DIRECT, `masquerade ${fam}`); if (run) record(`masquerade ${fam} (established)`, size); },
      });
    }
  }

  // What we timed must be the forwarding path, not a drop path: every packet
  // of the last batch has the verdict the stage exists for.
  function expectVerdict(dp: Dataplane, verdict: number, stage: string) {
    for (let i = 0; i < BATCH; i++) {
      const r = dp.result(i);
      if (r.verdict !== verdict) throw new Error(`${stage}: packet ${i} got verdict ${r.verdict} reason ${r.reason}, not ${verdict}`);
    }
  }

  // A stage's measured run is over (its task is named "<stage> <size>B").
  const done: { stage: string; size: number }[] = [];
  function record(stage: string, size: number) {
    done.push({ stage, size });
  }

  const measured: Measured[] = suite.run();
  for (const d of done) {
    const m = measured.find((x) => x.name === `${d.stage} ${d.size}B`);
    if (!m) throw new Error(`no measurement for ${d.stage} ${d.size}B`);
    results.push({ ...d, mpps: (m.hz * BATCH) / 1e6, rme: m.rme });
  }
  return Promise.resolve(results);
}

export async function runMicroBench(): Promise<StageResult[]> {
  const results = await runSuite();
  return results;
}

const isMain = process.argv[1] && resolve(process.argv[1]).endsWith("bench/micro.js");
if (isMain) {
  const results = await runMicroBench();
  console.log(`wasm-overlay micro benchmarks (batch ${BATCH}, one core, WASM stage only)`);
  for (const r of results) console.log(`${(r.stage + " " + r.size + "B").padEnd(28)} ${r.mpps.toFixed(2).padStart(8)} Mpps  ±${r.rme.toFixed(1)}%`);
  let extra: unknown = undefined;
  try {
    const lpm = (await import(new URL("./lpm.js", import.meta.url).href)) as { runLpmBench?: () => Promise<unknown> };
    if (typeof lpm.runLpmBench === "function") {
      extra = await lpm.runLpmBench();
      console.log("lpm lookup (100k routes):", JSON.stringify(extra));
    }
  } catch (e) {
    console.log("lpm bench not available:", (e as Error).message);
  }
  // Right after the IPv4 row, so the two rates compare like for like (issue 16: IPv6 >= 0.5x IPv4).
  let lpm6: unknown = undefined;
  try {
    const mod = (await import(new URL("./lpm6.js", import.meta.url).href)) as { runLpm6Bench?: () => Promise<{ mlookupsPerSec: number }> };
    if (typeof mod.runLpm6Bench === "function") {
      const r = await mod.runLpm6Bench();
      const v4 = (extra as { mlookupsPerSec?: number } | undefined)?.mlookupsPerSec;
      lpm6 = { ...r, ratioToIpv4: v4 ? r.mlookupsPerSec / v4 : undefined };
      console.log("lpm6 lookup (100k IPv6 routes):", JSON.stringify(lpm6));
      if (v4) console.log(`lpm6/lpm lookup rate: ${(r.mlookupsPerSec / v4).toFixed(2)} (target >= 0.5)`);
    }
  } catch (e) {
    console.log("lpm6 bench not available:", (e as Error).message);
  }
  let nat: unknown = undefined;
  try {
    const mod = (await import(new URL("./nat.js", import.meta.url).href)) as { runNatBench?: () => Promise<unknown> };
    if (typeof mod.runNatBench === "function") {
      nat = await mod.runNatBench();
      console.log("nat/conntrack (1M flows):", JSON.stringify(nat));
    }
  } catch (e) {
    console.log("nat bench not available:", (e as Error).message);
  }
  let natShared: unknown = undefined;
  try {
    const mod = (await import(new URL("./nat-shared.js", import.meta.url).href)) as { runNatSharedBench?: (ms?: number) => Promise<unknown> };
    if (typeof mod.runNatSharedBench === "function") {
      natShared = await mod.runNatSharedBench();
      console.log("nat/conntrack shared by 2 workers (M lookups/s, Mpps; 1 worker without/with the lock, 2 workers):", JSON.stringify(natShared));
    }
  } catch (e) {
    console.log("shared-table bench not available:", (e as Error).message);
  }
  let offload: unknown = undefined;
  try {
    const mod = (await import(new URL("./offload.js", import.meta.url).href)) as { runOffloadBench?: () => Promise<unknown> };
    if (typeof mod.runOffloadBench === "function") {
      offload = await mod.runOffloadBench();
      console.log("offload path (64 KiB super-frames, MSS 1398):", JSON.stringify(offload));
    }
  } catch (e) {
    console.log("offload bench not available:", (e as Error).message);
  }
  const dir = resolve(repoRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const date = new Date().toISOString();
  const stem = resolve(dir, `micro-${date.replace(/[:.]/g, "-")}`);
  writeFileSync(`${stem}.json`, JSON.stringify({ batch: BATCH, node: process.version, results, lpm: extra, lpm6, nat, natShared, offload }, null, 2));
  const svg = barChartSvg(`npm run bench: the WASM stages alone, batch ${BATCH}, one core`, `${date}, node ${process.version}`,
    [64, 1400].map((size) => ({ title: `${size}-byte packets`, unit: "Mpps", bars: results.filter((r) => r.size === size).map((r) => ({ label: r.stage, value: r.mpps, ours: true })) })));
  writeFileSync(`${stem}.svg`, svg);
  writeFileSync(resolve(dir, "micro-latest.svg"), svg);
  console.log("wrote", `${stem}.json`, `${stem}.svg`, "and bench/results/micro-latest.svg");
}
