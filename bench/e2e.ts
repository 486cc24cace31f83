// End-to-end throughput: iperf3 TCP pod2 -> pod3 through two overlayd
// (VXLAN) versus the Linux kernel's vxlan on the same namespaces, in the same
// run, so the ratio is meaningful on a shared, noisy machine.
// Run as root: npm run bench:e2e [-- --seconds 5]
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Cluster, podIp, podIp6, vtepMac } from "../src/demo/cluster.js";
import { repoRoot } from "../src/dataplane/wasm.js";
import { barChartSvg, type Bar } from "./chart.js";
import { copyFloor, measureMemcpyGBps, measureSyscallUs } from "./floor.js";
import { findBinary, PEERS, stopPeer, waitPath, type PeerUp } from "./peers.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

interface Run {
  gbps: number;
  retransmits: number;
  /** Bytes over the whole run, the omitted first second included (iperfBytesMoved). */
  bytesMoved: number;
  /** The two daemons' (or a peer's processes') CPU time over the whole run. */
  cpuSeconds?: number;
  /** The whole machine's busy CPU time over the run (both pods' TCP, the kernel's work, the VTEPs). */
  machineCpuSeconds?: number;
  udp64Kpps?: number;
  udp64LossPct?: number;
  udp64DeliveredKpps?: number;
}

/** The parts of iperf3's -J output the accounting reads. */
export interface IperfJson {
  intervals?: { sum: { bytes: number; omitted?: boolean } }[];
  end: { sum_received: { bytes: number } };
}

/** Bytes an iperf3 TCP run moved from its start to its end: what the
 *  receiver counted (sum_received, which leaves out the -O seconds) plus the
 *  omitted intervals (the sender's count; they appear only there). The
 *  daemons' CPU time is measured over the whole run, so it is divided by
 *  these bytes, not by the rate of the counted seconds times their number
 *  (which, with -O 1 -t 5, is 6 s of work over 5 s of traffic: ~20% high). */
export function iperfBytesMoved(j: IperfJson): number {
  const omitted = (j.intervals ?? []).filter((i) => i.sum.omitted === true).reduce((a, i) => a + i.sum.bytes, 0);
  return j.end.sum_received.bytes + omitted;
}

/** CPU seconds per Gbit (10^9 bits) moved. */
export function cpuSecondsPerGbit(cpuSeconds: number, bytesMoved: number): number {
  return bytesMoved > 0 ? cpuSeconds / ((bytesMoved * 8) / 1e9) : NaN;
}

/** iperf3 TCP pod2 -> pod3 (over IPv6 with `six`); `cc`: its congestion control (-C), else the system's. */
function iperf(c: Cluster, seconds: number, cc?: string, six = false): Run {
  const to = six ? podIp6(3) : podIp(3);
  const server = c.spawnIn("pod3", ["iperf3", "-s", "-1", "-B", to]);
  execFileSync("sleep", ["0.5"]);
  try {
    const out = c.exec("pod2", ["iperf3", "-c", to, "-t", String(seconds), "-J", "-O", "1", ...(cc ? ["-C", cc] : [])]);
    const j = JSON.parse(out);
    return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? 0, bytesMoved: iperfBytesMoved(j) };
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
  }
}

/** UDP datagrams that reached pod3's UDP layer so far (taken by a socket or
 *  dropped there because the receiving application's buffer was full). */
function podUdpArrivals(c: Cluster): number {
  const out = c.exec("pod3", ["nstat", "-asz", "UdpInDatagrams", "UdpInErrors"]);
  return [...out.matchAll(/Udp(?:InDatagrams|InErrors)\s+(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}

/** 64-byte UDP, unlimited rate: packets per second iperf3 received, its loss,
 *  and packets per second the path delivered to pod3 (the receiving iperf3
 *  cannot keep up with what arrives when the tunnel costs it CPU: the rest
 *  is dropped at its socket, UdpRcvbufErrors, not by the tunnel). */
function iperfUdp64(c: Cluster, seconds: number): { kpps: number; lossPct: number; deliveredKpps: number } {
  const server = c.spawnIn("pod3", ["iperf3", "-s", "-1", "-B", podIp(3), "-p", "5202"]);
  execFileSync("sleep", ["0.5"]);
  try {
    const before = podUdpArrivals(c);
    const out = c.exec("pod2", ["iperf3", "-c", podIp(3), "-p", "5202", "-u", "-b", "0", "-l", "64", "-t", String(seconds), "-J"]);
    const delivered = podUdpArrivals(c) - before;
    const j = JSON.parse(out);
    const sum = j.end.sum_received ?? j.end.sum;
    const received = (sum.packets ?? 0) - (sum.lost_packets ?? 0);
    return { kpps: received / seconds / 1e3, lossPct: sum.lost_percent ?? 0, deliveredKpps: delivered / seconds / 1e3 };
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
  }
}

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return Number(rest[11]) + Number(rest[12]); // utime + stime
}

const HZ = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** Busy jiffies of the whole machine (/proc/stat: all but idle and iowait). */
function machineTicks(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return f.reduce((a, x) => a + x, 0) - f[3] - f[4];
}

/** TCP pod2 -> pod3 on the path set up now (IPv6 with `six`); CPU: `pids`' and the machine's over the run. */
function measureTcp(c: Cluster, seconds: number, cc: string | undefined, pids: number[], six = false): Run {
  const ticks = () => pids.reduce((a, p) => a + cpuTicks(p), 0);
  const t0 = ticks();
  const m0 = machineTicks();
  const r = iperf(c, seconds, cc, six);
  r.cpuSeconds = (ticks() - t0) / HZ;
  r.machineCpuSeconds = (machineTicks() - m0) / HZ;
  return r;
}

/** TCP then 64-byte UDP pod2 -> pod3 on the path set up now; CPU: `pids`' over the TCP run. */
function measurePath(c: Cluster, seconds: number, cc: string | undefined, pids: number[]): Run {
  const r = measureTcp(c, seconds, cc, pids);
  const u = iperfUdp64(c, Math.min(seconds, 3));
  r.udp64Kpps = u.kpps;
  r.udp64LossPct = u.lossPct;
  r.udp64DeliveredKpps = u.deliveredKpps;
  return r;
}

/** A userspace peer's row (bench/peers.ts): measured, skipped (not installed) or failed. */
export interface PeerRow {
  name: string;
  note: string;
  run?: Run;
  ratio?: number;
  cpuSecondsPerGbit?: number;
  skipped?: string;
  error?: string;
}

/** Every peer in turn on worker2 and worker3, after the kernel and overlayd rows. */
async function runPeers(c: Cluster, seconds: number, cc: string | undefined, kernel: Run): Promise<PeerRow[]> {
  const rows: PeerRow[] = [];
  for (const p of PEERS) {
    const row: PeerRow = { name: p.name, note: p.note };
    rows.push(row);
    const missing = p.needs.filter((b) => !findBinary(b));
    if (missing.length) {
      row.skipped = `not installed: ${missing.join(", ")}`;
      continue;
    }
    const dir = mkdtempSync(join(tmpdir(), "wo-peer-"));
    let up: PeerUp | undefined;
    try {
      up = await p.up(c, dir);
      if (!(await waitPath(c))) throw new Error("pod2 does not reach pod3 through it");
      row.run = measurePath(c, seconds, cc, up.procs.map((x) => x.pid!));
      row.ratio = row.run.gbps / kernel.gbps;
      row.cpuSecondsPerGbit = cpuSecondsPerGbit(row.run.cpuSeconds!, row.run.bytesMoved);
    } catch (e) {
      row.error = (e as Error).message.split("\n")[0];
    } finally {
      if (up) await stopPeer(up.procs);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows;
}

function kernelVxlan(c: Cluster, me: number, peer: number, meUnderlay: string, peerUnderlay: string): void {
  const x = (args: string[]) => c.exec(`w${me}`, args);
  x(["ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "dstport", "4789", "local", meUnderlay, "dev", "eth0", "nolearning"]);
  x(["ip", "addr", "add", `198.19.${me}.0/32`, "dev", "vxlan100"]);
  x(["ip", "link", "set", "dev", "vxlan100", "address", vtepMac(me)]);
  x(["ip", "link", "set", "dev", "vxlan100", "up"]);
  x(["ip", "route", "add", `198.19.${peer}.0/24`, "via", `198.19.${peer}.0`, "dev", "vxlan100", "onlink"]);
  x(["ip", "neigh", "add", `198.19.${peer}.0`, "dev", "vxlan100", "lladdr", vtepMac(peer)]);
  x(["bridge", "fdb", "add", vtepMac(peer), "dev", "vxlan100", "dst", peerUnderlay]);
  // The same device carries the IPv6 pods (issue 16's reference row), through the same neighbour MAC.
  x(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  x(["ip", "addr", "add", `2001:2:0:${me}::/128`, "dev", "vxlan100", "nodad"]);
  x(["ip", "-6", "route", "add", `2001:2:0:${peer}::/64`, "via", `2001:2:0:${peer}::`, "dev", "vxlan100", "onlink"]);
  x(["ip", "-6", "neigh", "add", `2001:2:0:${peer}::`, "dev", "vxlan100", "lladdr", vtepMac(peer)]);
}

export async function runE2eBench(seconds = 5, cc?: string, opts: { peers?: boolean } = {}) {
  if (process.getuid?.() !== 0) throw new Error("bench:e2e builds namespaces: run as root");
  // Dual-stack pods: the IPv4 rows are as before, IPv6 rows beside them.
  const c = new Cluster(undefined, { ipv6: true });
  try {
    c.build();
    // 1. The kernel's vxlan on worker2 and worker3 (Hand CNI-7 on both ends).
    kernelVxlan(c, 2, 3, "198.18.0.12", "198.18.1.13");
    kernelVxlan(c, 3, 2, "198.18.1.13", "198.18.0.12");
    if (!c.ping(2, podIp(3), 2).ok) throw new Error("kernel vxlan path does not work");
    const kernel = measurePath(c, seconds, cc, []);
    if (!c.ping(2, podIp6(3), 2).ok) throw new Error("kernel vxlan path does not carry IPv6");
    const kernel6 = measureTcp(c, seconds, cc, [], true);
    c.exec("w2", ["ip", "link", "del", "vxlan100"]);
    c.exec("w3", ["ip", "link", "del", "vxlan100"]);
    for (const n of [2, 3]) c.exec(`pod${n}`, ["ip", "route", "flush", "cache"]);
    // 2. overlayd on the same two workers, VXLAN between them, without and
    //    with tun offloads (TSO super-frames segmented in WASM, GRO to the tun).
    // `udp`: UDP GSO/GRO on the underlay (tunnel.udpOffloads; on by default with tun offloads).
    // `kernelGso`: super-frames leave whole through the tap (tunnel.kernelGso).
    let offl6: Run | undefined;
    // `tcpOnly`: the TCP row alone (the IPv6 underlay's rows).
    const runOurs = async (offloads: boolean, udp = offloads, ioUring = true, kernelGso = false, six = false, tcpOnly = false): Promise<Run> => {
      const cfg = (n: number) => {
        let text = c.config(n, () => "vxlan");
        text = text.replace("mode: tun", `mode: tun\n    offloads: ${offloads}\n    ioUring: ${ioUring}`);
        return text.replace("vni: 100", `vni: 100\n  udpOffloads: ${udp}\n  kernelGso: ${kernelGso}`);
      };
      const d2 = await c.startDaemon(2, c.writeConfig(2, cfg(2)), CLI);
      const d3 = await c.startDaemon(3, c.writeConfig(3, cfg(3)), CLI);
      try {
        for (const n of [2, 3]) c.exec(`pod${n}`, ["ip", "route", "flush", "cache"]);
        if (!c.ping(2, podIp(3), 2).ok) throw new Error("overlayd path does not work");
        if (tcpOnly) return measureTcp(c, seconds, cc, [d2.pid!, d3.pid!], false);
        const r = measurePath(c, seconds, cc, [d2.pid!, d3.pid!]);
        if (six) {
          if (!c.ping(2, podIp6(3), 2).ok) throw new Error("overlayd path does not carry IPv6");
          offl6 = measureTcp(c, seconds, cc, [d2.pid!, d3.pid!], true);
        }
        return r;
      } finally {
        await c.stopDaemon(d2);
        await c.stopDaemon(d3);
      }
    };
    const plainSyscalls = await runOurs(false, false, false);
    const plain = await runOurs(false);
    const udpOnly = await runOurs(false, true);
    const offl = await runOurs(true, true, true, false, true);
    const kgso = await runOurs(true, true, true, true);
    const peers = opts.peers ? await runPeers(c, seconds, cc, kernel) : undefined;
    // 3. The IPv6 underlay (peers[].underlay6), IPv4 pods: the kernel's vxlan
    //    with IPv6 local/dst on both ends, then overlayd's default path over it.
    //    Last, as it adds the IPv6 underlay to the namespaces.
    c.addOutside();
    c.addOutside6();
    const u6: Record<number, string> = { 2: "2001:2:ff::12", 3: "2001:2:ff:1::13" };
    kernelVxlan(c, 2, 3, u6[2], u6[3]);
    kernelVxlan(c, 3, 2, u6[3], u6[2]);
    if (!c.ping(2, podIp(3), 2).ok) throw new Error("kernel vxlan over IPv6 does not work");
    const kernelU6 = measureTcp(c, seconds, cc, [], false);
    c.exec("w2", ["ip", "link", "del", "vxlan100"]);
    c.exec("w3", ["ip", "link", "del", "vxlan100"]);
    c.peersOverIpv6 = true;
    const oursU6 = await runOurs(true, true, true, false, false, true);
    const best = Math.max(plain.gbps, offl.gbps, kgso.gbps, udpOnly.gbps);
    const floor = copyFloor(measureMemcpyGBps(), measureSyscallUs(), cpuSecondsPerGbit(kernel.machineCpuSeconds!, kernel.bytesMoved));
    return {
      date: new Date().toISOString(),
      seconds,
      congestionControl: cc ?? readFileSync("/proc/sys/net/ipv4/tcp_congestion_control", "utf8").trim(),
      kernelVxlan: kernel,
      overlayd: plain,
      /** Plain, and one read()/write() system call per packet on the tun (node.device.ioUring: false). */
      overlaydNoIoUring: plainSyscalls,
      ratioNoIoUring: plainSyscalls.gbps / kernel.gbps,
      overlaydOffloads: offl,
      /** Plain tun, UDP GSO/GRO on the underlay only. */
      overlaydUdpOffloads: udpOnly,
      ratioUdpOffloads: udpOnly.gbps / kernel.gbps,
      ratio: plain.gbps / kernel.gbps,
      ratioOffloads: offl.gbps / kernel.gbps,
      /** IPv6 TCP (issue 16): the kernel's vxlan carrying IPv6 pods, and overlayd's default path (offloads) on the same daemons as overlaydOffloads. */
      kernelVxlan6: kernel6,
      overlaydOffloads6: offl6!,
      ratioOffloads6: offl6!.gbps / kernel6.gbps,
      overlaydOffloads6CpuSecondsPerGbit: cpuSecondsPerGbit(offl6!.cpuSeconds!, offl6!.bytesMoved),
      /** The IPv6 underlay (issue 16), IPv4 pods: the kernel's vxlan over IPv6, and overlayd's default path with peers[].underlay6. */
      kernelVxlanUnderlay6: kernelU6,
      overlaydUnderlay6: oursU6,
      ratioUnderlay6: oursU6.gbps / kernelU6.gbps,
      overlaydUnderlay6CpuSecondsPerGbit: cpuSecondsPerGbit(oursU6.cpuSeconds!, oursU6.bytesMoved),
      /** Offloads, and super-frames segmented by the kernel (tunnel.kernelGso). */
      overlaydKernelGso: kgso,
      ratioKernelGso: kgso.gbps / kernel.gbps,
      // CPU over the whole iperf3 run (omitted second included) per Gbit moved in it.
      overlaydKernelGsoCpuSecondsPerGbit: cpuSecondsPerGbit(kgso.cpuSeconds!, kgso.bytesMoved),
      overlaydCpuSecondsPerGbit: cpuSecondsPerGbit(plain.cpuSeconds!, plain.bytesMoved),
      overlaydOffloadsCpuSecondsPerGbit: cpuSecondsPerGbit(offl.cpuSeconds!, offl.bytesMoved),
      /** --peers: the userspace VTEPs users compare with, on the same namespaces after the rows above. */
      peers,
      /** The best ratio any tun+socket VTEP could reach here (bench/floor.ts), and overlayd's best row against it. */
      copyFloor: { ...floor, overlaydBestRatio: best / kernel.gbps, ofFloor: best / kernel.gbps / floor.bestRatio },
    };
  } finally {
    await c.destroy();
  }
}

type E2eResult = Awaited<ReturnType<typeof runE2eBench>>;

/** The run as a chart: Gbit/s and CPU-s per Gbit per path (the kernel's own CPU is not a process's: machine-wide there). */
export function e2eChart(r: E2eResult): string {
  const rows: { label: string; run?: Run; ours?: boolean; note?: string }[] = [
    { label: "kernel vxlan", run: r.kernelVxlan },
    { label: "overlayd, no offloads, read/write", run: r.overlaydNoIoUring, ours: true },
    { label: "overlayd, no offloads", run: r.overlayd, ours: true },
    { label: "overlayd + UDP GSO/GRO", run: r.overlaydUdpOffloads, ours: true },
    { label: "overlayd + offloads (default)", run: r.overlaydOffloads, ours: true },
    { label: "overlayd + offloads + kernelGso", run: r.overlaydKernelGso, ours: true },
    { label: "kernel vxlan, IPv6 pods", run: r.kernelVxlan6 },
    { label: "overlayd + offloads, IPv6 pods", run: r.overlaydOffloads6, ours: true },
    { label: "kernel vxlan over IPv6", run: r.kernelVxlanUnderlay6 },
    { label: "overlayd + offloads over IPv6", run: r.overlaydUnderlay6, ours: true },
    ...(r.peers ?? []).map((p) => ({ label: p.name, run: p.run, note: p.skipped ? `skipped: ${p.skipped}` : p.error ? `failed: ${p.error}` : undefined })),
  ];
  const bar = (x: (typeof rows)[number], v: (run: Run) => number | undefined): Bar => ({ label: x.label, ours: x.ours, value: x.run ? v(x.run) : undefined, note: x.run ? undefined : x.note });
  const perGbit = (run: Run, cpu?: number) => (cpu === undefined ? undefined : cpuSecondsPerGbit(cpu, run.bytesMoved));
  return barChartSvg(
    `bench:e2e, iperf3 TCP pod2 -> pod3, ${r.seconds} s a row, ${r.congestionControl}`,
    `${r.date}; same namespaces, same run; copy floor for any tun+socket VTEP ${r.copyFloor.bestRatio.toFixed(2)}x of the kernel`,
    [
      { title: "Throughput", unit: "Gbit/s", bars: rows.map((x) => bar(x, (run) => run.gbps)) },
      { title: "The VTEP's own processes' CPU per Gbit", unit: "CPU-s/Gbit", bars: rows.filter((x) => !x.label.startsWith("kernel vxlan")).map((x) => bar(x, (run) => perGbit(run, run.cpuSeconds))) },
      { title: "The whole machine's CPU per Gbit", unit: "CPU-s/Gbit", digits: 3, bars: rows.map((x) => bar(x, (run) => perGbit(run, run.machineCpuSeconds))) },
      { title: "64-byte UDP received", unit: "kpps", digits: 0, bars: rows.filter((x) => !x.label.includes("IPv6")).map((x) => bar(x, (run) => run.udp64Kpps)) },
    ],
  );
}

const isMain = process.argv[1] && resolve(process.argv[1]).endsWith("bench/e2e.js");
if (isMain) {
  const i = process.argv.indexOf("--seconds");
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 5;
  const ci = process.argv.indexOf("--cc");
  const r = await runE2eBench(seconds, ci > 0 ? process.argv[ci + 1] : undefined, { peers: process.argv.includes("--peers") });
  console.log(`iperf3 TCP pod2 -> pod3, ${seconds} s each, ${r.congestionControl}, same namespaces, same run`);
  console.log(`  kernel vxlan        ${r.kernelVxlan.gbps.toFixed(2).padStart(7)} Gbit/s  (retransmits ${r.kernelVxlan.retransmits})`);
  console.log(`  overlayd, no offloads, tun read/write per packet ${r.overlaydNoIoUring.gbps.toFixed(2).padStart(7)} Gbit/s  (${r.ratioNoIoUring.toFixed(3)}x; retransmits ${r.overlaydNoIoUring.retransmits}, ${r.overlaydNoIoUring.cpuSeconds?.toFixed(2)} CPU-s in the two daemons)`);
  console.log(`  overlayd (vxlan), no offloads ${r.overlayd.gbps.toFixed(2).padStart(7)} Gbit/s  (retransmits ${r.overlayd.retransmits}, ${r.overlayd.cpuSeconds?.toFixed(2)} CPU-s in the two daemons)`);
  console.log(`  overlayd + UDP GSO/GRO only ${r.overlaydUdpOffloads.gbps.toFixed(2).padStart(7)} Gbit/s  (${r.ratioUdpOffloads.toFixed(3)}x; retransmits ${r.overlaydUdpOffloads.retransmits}, ${r.overlaydUdpOffloads.cpuSeconds?.toFixed(2)} CPU-s in the two daemons)`);
  console.log(`  overlayd + offloads ${r.overlaydOffloads.gbps.toFixed(2).padStart(7)} Gbit/s  (retransmits ${r.overlaydOffloads.retransmits}, ${r.overlaydOffloads.cpuSeconds?.toFixed(2)} CPU-s in the two daemons)`);
  console.log(`  overlayd + offloads + tunnel.kernelGso ${r.overlaydKernelGso.gbps.toFixed(2).padStart(7)} Gbit/s  (${r.ratioKernelGso.toFixed(3)}x; retransmits ${r.overlaydKernelGso.retransmits}, ${r.overlaydKernelGso.cpuSeconds?.toFixed(2)} CPU-s in the two daemons)`);
  console.log(`  IPv6 pods: kernel vxlan ${r.kernelVxlan6.gbps.toFixed(2)} Gbit/s, overlayd + offloads ${r.overlaydOffloads6.gbps.toFixed(2)} Gbit/s (${r.ratioOffloads6.toFixed(3)}x; retransmits ${r.overlaydOffloads6.retransmits}, ${r.overlaydOffloads6CpuSecondsPerGbit.toFixed(2)} CPU-s/Gbit in the two daemons)`);
  console.log(`  IPv6 underlay, IPv4 pods: kernel vxlan over IPv6 ${r.kernelVxlanUnderlay6.gbps.toFixed(2)} Gbit/s, overlayd + offloads over IPv6 ${r.overlaydUnderlay6.gbps.toFixed(2)} Gbit/s (${r.ratioUnderlay6.toFixed(3)}x; retransmits ${r.overlaydUnderlay6.retransmits}, ${r.overlaydUnderlay6CpuSecondsPerGbit.toFixed(2)} CPU-s/Gbit in the two daemons)`);
  console.log(`  ratio to the kernel: ${r.ratio.toFixed(3)}x without offloads, ${r.ratioOffloads.toFixed(3)}x with (tun TSO/GRO + UDP GSO/GRO)`);
  const pps = (x: Run) => `${x.udp64Kpps?.toFixed(0)} kpps (loss ${x.udp64LossPct?.toFixed(1)}%; ${x.udp64DeliveredKpps?.toFixed(0)} kpps delivered to pod3)`;
  console.log(`  64-byte UDP received: kernel ${pps(r.kernelVxlan)}, overlayd ${pps(r.overlayd)}, with offloads ${pps(r.overlaydOffloads)}, with kernelGso ${pps(r.overlaydKernelGso)}`);
  console.log(`  overlayd CPU per Gbit: ${r.overlaydCpuSecondsPerGbit.toFixed(2)} CPU-s/Gbit without offloads, ${r.overlaydOffloadsCpuSecondsPerGbit.toFixed(2)} with, ${r.overlaydKernelGsoCpuSecondsPerGbit.toFixed(2)} with kernelGso`);
  for (const p of r.peers ?? []) {
    if (p.skipped) console.log(`  ${p.name}: skipped (${p.skipped})`);
    else if (p.error) console.log(`  ${p.name}: failed (${p.error})`);
    else console.log(`  ${p.name} ${p.run!.gbps.toFixed(2).padStart(7)} Gbit/s  (${p.ratio!.toFixed(3)}x; retransmits ${p.run!.retransmits}, ${p.cpuSecondsPerGbit!.toFixed(2)} CPU-s/Gbit in its processes, 64-byte UDP ${pps(p.run!)}; ${p.note})`);
  }
  const f = r.copyFloor;
  console.log(`  copy floor: memcpy ${f.memcpyGBps.toFixed(1)} GB/s (64 KiB, in cache), a system call ${f.syscallUs.toFixed(2)} µs, the kernel row ${f.kernelCpuSecondsPerGbit.toFixed(3)} machine CPU-s/Gbit;`
    + ` 4 copies and 4 calls per 64 KiB add ${f.extraCpuSecondsPerGbit.toFixed(3)} CPU-s/Gbit, so a tun+socket VTEP reaches at most ${f.bestRatio.toFixed(3)}x of the kernel here;`
    + ` overlayd's best row ${f.overlaydBestRatio.toFixed(3)}x is ${(100 * f.ofFloor).toFixed(0)}% of that`);
  const dir = resolve(repoRoot(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const stem = resolve(dir, `e2e-${r.date.replace(/[:.]/g, "-")}`);
  writeFileSync(`${stem}.json`, JSON.stringify(r, null, 2));
  const svg = e2eChart(r);
  writeFileSync(`${stem}.svg`, svg);
  writeFileSync(resolve(dir, "e2e-latest.svg"), svg);
  console.log("wrote", `${stem}.json`, `${stem}.svg`, "and bench/results/e2e-latest.svg");
}
