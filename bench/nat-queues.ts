// NAT on every queue (issue 18): 8 masqueraded TCP flows from pod1 to the
// outside host (iperf3 -P 8) through worker1's overlayd with one tun queue,
// then with two (the workers sharing one connection table), in the same run
// on the same namespaces. Prints each run's aggregate Gbit/s, the ratio of
// two queues to one, the connections lost (iperf3 streams that moved
// nothing or an iperf3 error) and the conntrack entries against the flows.
// Run as root: node dist/bench/nat-queues.js [--seconds 5]
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Cluster, OUTSIDE } from "../src/demo/cluster.js";
import { repoRoot } from "../src/dataplane/wasm.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const STREAMS = 8;

interface QueueRun {
  queues: number;
  gbps: number;
  retransmits: number;
  /** Streams that moved no byte, plus 1 when iperf3 itself failed. */
  lost: number;
  /** Tracked TCP flows to the outside host's iperf3 port after the run (the 8 streams and iperf3's control connection). */
  conntrackFlows: number;
  /** Packets translated by each worker, and of them the replies. */
  perQueue: { translated: number; replies: number }[];
}

interface IperfStreams {
  end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number }; streams: { receiver: { bytes: number } }[] };
  error?: string;
}

async function runQueues(c: Cluster, queues: number, seconds: number): Promise<QueueRun> {
  const text = c.config(1, () => "vxlan", { nat: { masquerade: true } }).replace("mode: tun", `mode: tun\n    queues: ${queues}`);
  const d = await c.startDaemon(1, c.writeConfig(1, text), CLI);
  const server = c.spawnIn("outside", ["iperf3", "-s", "-1", "-B", OUTSIDE.address]);
  try {
    await new Promise((r) => setTimeout(r, 500));
    let j: IperfStreams;
    let failed = 0;
    try {
      j = JSON.parse(c.exec("pod1", ["iperf3", "-c", OUTSIDE.address, "-P", String(STREAMS), "-t", String(seconds), "-J"]));
    } catch (e) {
      const out = (e as { stdout?: string }).stdout ?? "";
      j = out ? JSON.parse(out) : { end: { sum_received: { bits_per_second: 0 }, sum_sent: {}, streams: [] } };
      failed = 1;
    }
    const show = (what: string) => JSON.parse(c.exec("w1", [process.execPath, CLI, "show", what, "--json"]));
    const flows = (show("conntrack").flows as { proto: number; reply: { src: string; sport: number } }[])
      .filter((f) => f.proto === 6 && f.reply.src === OUTSIDE.address && f.reply.sport === 5201).length;
    const rows = show("stats").queues as { nat_translated_packets: string | number; nat_reply_packets: string | number }[];
    return {
      queues,
      gbps: j.end.sum_received.bits_per_second / 1e9,
      retransmits: j.end.sum_sent.retransmits ?? 0,
      lost: failed + (j.end.streams ?? []).filter((s) => s.receiver.bytes === 0).length + Math.max(0, STREAMS - (j.end.streams ?? []).length),
      conntrackFlows: flows,
      perQueue: rows.map((q) => ({ translated: Number(q.nat_translated_packets), replies: Number(q.nat_reply_packets) })),
    };
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
    await c.stopDaemon(d);
  }
}

export async function runNatQueuesBench(seconds = 5) {
  if (process.getuid?.() !== 0) throw new Error("the NAT queues bench builds namespaces: run as root");
  const c = new Cluster(undefined, { pods: "manual" });
  try {
    c.build();
    c.addOutside();
    const one = await runQueues(c, 1, seconds);
    const two = await runQueues(c, 2, seconds);
    return { date: new Date().toISOString(), seconds, streams: STREAMS, one, two, ratio: two.gbps / one.gbps };
  } finally {
    await c.destroy();
  }
}

const isMain = process.argv[1] && resolve(process.argv[1]).endsWith("bench/nat-queues.js");
if (isMain) {
  const i = process.argv.indexOf("--seconds");
  const r = await runNatQueuesBench(i > 0 ? Number(process.argv[i + 1]) : 5);
  console.log(`${r.streams} masqueraded TCP flows pod1 -> outside (iperf3 -P ${r.streams}, ${r.seconds} s), worker1 with NAT, same run`);
  for (const x of [r.one, r.two]) {
    console.log(`  ${x.queues} queue${x.queues > 1 ? "s" : ""}: ${x.gbps.toFixed(2)} Gbit/s, ${x.retransmits} retransmits, ${x.lost} connections lost, ${x.conntrackFlows} tracked flows to the server (${r.streams} streams + iperf3's control connection), per worker translated/replies: ${x.perQueue.map((q) => `${q.translated}/${q.replies}`).join(", ")}`);
  }
  console.log(`  2 queues / 1 queue: ${r.ratio.toFixed(3)}x (target >= 1: ${r.ratio >= 1 ? "met" : "NOT met"})`);
  const dir = resolve(repoRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = resolve(dir, `nat-queues-${r.date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, JSON.stringify(r, null, 2));
  console.log("wrote", file);
}
