// Cluster membership from a real etcd (Debian etcd-server) across network
// namespaces: nodes lease pod CIDRs, learn each other, a fourth joins during a
// transfer, a stopped node's routes go when its lease runs out, etcd restarts
// and a partitioned node's lease expires while traffic keeps flowing.
// Needs root; CI runs it as root.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readNodeState } from "../src/daemon/nodestate.js";
import { EtcdCluster, ETCD_URL, haveEtcd, sleep, underlay6, waitUntil, type LogLine } from "./helpers/etcd-cluster.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
const TTL = 3;
const NETWORK = "198.19.0.0/16";

type Status = { etcd?: { podCIDR: string; connected: boolean; livePeers: number }; kernelRoutes: unknown };
type Peer = { name: string; underlay: string; podCIDRs: string[]; encapsulation: string; source: string; leaseAgeSeconds?: number };

describe.skipIf(!isRoot || !haveEtcd())("cluster membership from etcd", () => {
  const c = new EtcdCluster(CLI);
  const peersOf = (n: number) => c.admin<Peer[]>(n, "/peers") ?? [];
  const peerNames = (n: number) => peersOf(n).map((p) => p.name).sort();
  const subnetOf = (n: number) => c.admin<Status>(n, "/status")?.etcd?.podCIDR;
  /** Time of the first log line at or after `since` matching `pred`. */
  const logTime = (n: number, since: number, pred: (l: LogLine) => boolean) => c.logLines(n).find((l) => l.time >= since && pred(l))?.time;

  beforeAll(async () => {
    c.build();
    await c.startEtcd();
    // The cluster network, where flannel keeps it: worker3 reads it from here.
    c.etcdScript(`await c.put("/wasm-overlay/config").value(JSON.stringify({ network: "${NETWORK}", subnetLength: 24 }));`);
    const etcd = { endpoints: [ETCD_URL], network: NETWORK, subnetLength: 24, leaseTTL: TTL };
    // worker1 and worker2 (one underlay subnet) with an etcd section; worker3
    // (the other subnet) with only --etcd-endpoints on the command line.
    await Promise.all([
      c.startDaemon(1, c.config(1, etcd)),
      c.startDaemon(2, c.config(2, { ...etcd, encapsulation: "vxlan" })),
      c.startDaemon(3, c.config(3), ["--etcd-endpoints", ETCD_URL]),
    ]);
    for (const n of [1, 2, 3]) c.setupPod(n, subnetOf(n)!);
  }, 60_000);

  afterAll(async () => {
    await c.destroy();
  }, 30_000);

  it("three nodes lease distinct subnets of the cluster network and learn each other", async () => {
    const subnets = [1, 2, 3].map((n) => c.subnets.get(n)!);
    expect(new Set(subnets).size).toBe(3);
    for (const s of subnets) expect(s).toMatch(/^198\.19\.\d+\.0\/24$/);
    // Every node sees the other two, from etcd, with their leases' ages.
    for (const n of [1, 2, 3]) {
      await waitUntil(() => peerNames(n).length === 2 || undefined, 5000, `worker${n} to see two peers: ${JSON.stringify(peersOf(n))}`);
      for (const p of peersOf(n)) {
        expect(p.source).toBe("etcd");
        expect(p.leaseAgeSeconds).toBeGreaterThanOrEqual(0);
        expect(p.podCIDRs).toEqual([c.subnets.get(Number(p.name.slice(-1)))]);
      }
    }
    // Published encapsulation preference: worker2 asked to be reached over VXLAN
    // even from its own subnet; worker1 -> worker3 is auto (other subnet: VXLAN).
    const from1 = Object.fromEntries(peersOf(1).map((p) => [p.name, p.encapsulation]));
    expect(from1).toEqual({ worker2: "vxlan", worker3: "vxlan" });
    const from2 = Object.fromEntries(peersOf(2).map((p) => [p.name, p.encapsulation]));
    expect(from2.worker1).toBe("direct");
    // The operator's view: `show peers` columns, and the etcd metrics.
    const table = c.exec("w1", [process.execPath, CLI, "show", "peers"]);
    expect(table.split("\n")[0]).toMatch(/source\s+leaseAgeSeconds/);
    expect(table).toMatch(/worker3 .* etcd\s+\d+/);
    const metrics = c.adminText(1, "/metrics")!;
    expect(metrics).toMatch(/^overlay_etcd_connected 1$/m);
    expect(metrics).toMatch(/^overlay_etcd_peers 2$/m);
    expect(metrics).toMatch(/^overlay_etcd_lease_ttl_seconds 3$/m);
    // The CNI plugin's node facts carry the leased subnet (src/daemon/nodestate.ts).
    for (const n of [1, 2, 3]) expect(readNodeState(join(c.dir, `state-w${n}`, "node.json")).podCIDR).toBe(c.subnets.get(n));
    // Kernel routes for the leased subnets.
    expect(c.routes(1)).toContain(`${c.subnets.get(3)} dev wo0`);
    expect(c.routes(2)).toContain(`${c.subnets.get(1)!} via 198.18.0.11 dev eth0`);
  });

  it("two nodes racing for one subnet: the transaction lets one have it, the other takes the next", () => {
    // A Membership run in the leaf (it needs etcd, not a data path) that loses
    // the race on purpose: right after it listed, another node claims its first choice.
    const dist = new URL("../dist/src/", import.meta.url).pathname;
    const etcd3 = new URL("../node_modules/etcd3/lib/index.js", import.meta.url).pathname;
    const cfg = join(c.dir, "racer.yaml");
    writeFileSync(cfg, `node: { name: racer, underlay: { address: 198.18.0.99, prefixLength: 24 } }\netcd: { endpoints: ["${ETCD_URL}"], prefix: /race, network: 198.19.0.0/16, leaseTTL: 2 }\n`);
    const script = join(c.dir, "race.mjs");
    writeFileSync(script, `
      const { Membership } = await import(${JSON.stringify(dist + "membership/membership.js")});
      const { createMetrics, createEtcdMetrics } = await import(${JSON.stringify(dist + "control/metrics.js")});
      const { createLogger } = await import(${JSON.stringify(dist + "control/log.js")});
      const { Etcd3 } = (await import(${JSON.stringify(etcd3)})).default;
      const other = new Etcd3({ hosts: ${JSON.stringify(ETCD_URL)} });
      let stolen;
      const m = await Membership.start({
        configPath: ${JSON.stringify(cfg)}, log: createLogger(), metrics: createEtcdMetrics(createMetrics().registry), onChange() {}, onFatal(r) { console.log("FATAL " + r); },
        async beforeClaim(candidates) {
          stolen = candidates[0];
          const record = { node: "sneaky", underlay: "198.18.0.98", podCIDR: stolen, vtepMac: "0e:00:00:00:00:98", encapsulation: "auto", leasedAt: new Date().toISOString() };
          await other.put("/race/subnets/" + stolen.replace("/", "-")).value(JSON.stringify(record));
        },
      });
      console.log(JSON.stringify({ stolen, got: m.subnet }));
      await m.stop();
      other.close();
      process.exit(0);
    `);
    const out = c.exec("leaf", [process.execPath, script]);
    // The racer's own log lines (pino, on stdout) may come before or after its result.
    const result = JSON.parse(out.trim().split("\n").find((l) => l.startsWith('{"stolen"'))!) as { stolen: string; got: string };
    expect(result.stolen).toBe("198.19.0.0/24");
    expect(result.got).toBe("198.19.1.0/24");
    expect(out).toContain("subnet taken by another node in the meantime");
  });

  it("pods on all three nodes reach each other", () => {
    for (const [a, b] of [[1, 2], [2, 1], [1, 3], [3, 1], [2, 3], [3, 2]]) {
      const r = c.ping(a, c.podIp(b));
      expect(r.ok, `pod${a} -> pod${b}: ${r.out}`).toBe(true);
    }
  });

  it("a fourth node joins during a TCP transfer and becomes reachable within a second", async () => {
    const bytes = 12 << 20;
    const transfer = await c.startTransfer(1, 3, bytes, 3);
    await sleep(500);
    const t0 = Date.now();
    await c.startDaemon(4, c.config(4, { endpoints: [ETCD_URL], leaseTTL: TTL }));
    const joined = await waitUntil(() => logTime(4, t0, (l) => l.msg === "joined the cluster through etcd"), 5000, "worker4 to join");
    // Each running node re-derived and applied its tables with worker4 in them.
    const applied: number[] = [];
    const seen: number[] = [];
    for (const n of [1, 2, 3]) {
      const at = await waitUntil(() => logTime(n, t0, (l) => l.msg === "config reloaded" && String(l.reason).includes("worker4")), 5000, `worker${n} to apply worker4`);
      applied.push(at - joined);
      seen.push(logTime(n, t0, (l) => l.msg === "etcd peer joined" && l.node === "worker4")! - joined);
    }
    console.log(`worker4 seen by workers 1-3 ${seen.join(", ")} ms and in their tables ${applied.join(", ")} ms after it joined`);
    for (const ms of applied) expect(ms).toBeLessThan(1000);
    c.setupPod(4, subnetOf(4)!);
    for (const n of [1, 2, 3]) {
      expect(peerNames(n)).toContain("worker4");
      expect(c.ping(n, c.podIp(4)).ok, `pod${n} -> pod4`).toBe(true);
      expect(c.ping(4, c.podIp(n)).ok, `pod4 -> pod${n}`).toBe(true);
    }
    const r = await transfer;
    expect(r.received).toBe(bytes);
    expect(r.receivedSha).toBe(r.sentSha);
  }, 40_000);

  it("a stopped node's routes disappear once its lease expires", async () => {
    const gone = c.subnets.get(2)!;
    expect(c.routes(1)).toContain(gone);
    const t0 = Date.now();
    await c.stopDaemon(2);
    // Not at once: the lease is not revoked, so a quick restart keeps its subnet.
    expect(c.routes(3)).toContain(gone);
    for (const n of [1, 3, 4]) {
      await waitUntil(() => !c.routes(n).includes(gone) && !peerNames(n).includes("worker2"), (TTL + 4) * 1000, `worker${n} to drop worker2's routes`);
    }
    const ms = Date.now() - t0;
    console.log(`worker2's routes gone from workers 1, 3, 4 ${ms} ms after it stopped (lease TTL ${TTL} s)`);
    expect(ms).toBeGreaterThanOrEqual((TTL - 1) * 1000);
    expect(c.ping(1, c.podIp(3)).ok).toBe(true);
  }, 20_000);

  it("a second machine with a live node's name is refused, and the live node keeps its subnet", async () => {
    const file = c.config(2, { endpoints: [ETCD_URL], leaseTTL: TTL });
    writeFileSync(file, readFileSync(file, "utf8").replace("name: worker2", "name: worker1"));
    await expect(c.startDaemon(2, file)).rejects.toThrow(/node name worker1 is live in etcd from underlay 198\.18\.0\.11/);
    expect(subnetOf(1)).toBe(c.subnets.get(1));
    expect(c.ping(3, c.podIp(1)).ok).toBe(true);
  }, 20_000);

  it("etcd stopped and restarted: traffic keeps flowing, nodes reconnect and keep their peers", async () => {
    const bytes = 24 << 20;
    const transfer = await c.startTransfer(4, 1, bytes, 3);
    await sleep(500);
    await c.killEtcd();
    const down = Date.now();
    await sleep(1000);
    // Forwarding goes on with the last known tables.
    for (const n of [1, 3, 4]) expect(peerNames(n).length).toBe(2);
    expect(c.ping(3, c.podIp(1)).ok).toBe(true);
    await waitUntil(() => c.admin<Status>(1, "/status")?.etcd?.connected === false || undefined, 5000, "worker1 to notice etcd is down");
    await sleep(1500);
    await c.startEtcd();
    const up = Date.now();
    for (const n of [1, 3, 4]) {
      await waitUntil(() => c.admin<Status>(n, "/status")?.etcd?.connected === true || undefined, 10_000, `worker${n} to reconnect`);
    }
    console.log(`etcd down ${up - down} ms; all nodes reconnected ${Date.now() - up} ms after it came back`);
    // Still (or again) every live peer, and each node's record is back in etcd.
    const keys = JSON.parse(c.etcdScript(`return (await c.getAll().prefix("/wasm-overlay/subnets/").keys()).sort();`)) as string[];
    expect(keys).toEqual([1, 3, 4].map((n) => `/wasm-overlay/subnets/${c.subnets.get(n)!.replace("/", "-")}`).sort());
    for (const n of [1, 3, 4]) expect(peerNames(n)).toEqual(["worker1", "worker3", "worker4"].filter((x) => x !== `worker${n}`));
    const r = await transfer;
    expect(r.received).toBe(bytes);
    expect(r.receivedSha).toBe(r.sentSha);
  }, 40_000);

  it("a node partitioned from etcd past its TTL re-claims its subnet when it is back", async () => {
    const mine = c.subnets.get(4)!;
    // Cut worker4 off from etcd (only TCP 2379; the overlay keeps working).
    c.exec("w4", ["nft", "add table inet wo_part"]);
    c.exec("w4", ["nft", "add chain inet wo_part out { type filter hook output priority 0 ; }"]);
    c.exec("w4", ["nft", "add rule inet wo_part out tcp dport 2379 drop"]);
    // Its record expires at etcd: the others drop it.
    await waitUntil(() => !peerNames(1).includes("worker4") || undefined, (TTL + 5) * 1000, "worker1 to drop worker4");
    c.exec("w4", ["nft", "delete table inet wo_part"]);
    const t0 = Date.now();
    await waitUntil(() => peerNames(1).includes("worker4") || undefined, 20_000, "worker4 to re-join");
    console.log(`worker4 back in worker1's tables ${Date.now() - t0} ms after the partition healed`);
    expect(subnetOf(4)).toBe(mine);
    expect(c.logLines(4).some((l) => l.msg === "subnet re-claimed under a new etcd lease")).toBe(true);
    expect(c.ping(1, c.podIp(4)).ok).toBe(true);
  }, 40_000);

  it("a restarted node keeps its subnet (its previous record is taken over, not a new lease)", async () => {
    const mine = c.subnets.get(3)!;
    await c.stopDaemon(3);
    await c.startDaemon(3, c.config(3), ["--etcd-endpoints", ETCD_URL]);
    expect(subnetOf(3)).toBe(mine);
    await waitUntil(() => peerNames(3).length === 2 || undefined, 5000, "worker3 to see its peers again");
    expect(c.ping(3, c.podIp(1)).ok).toBe(true);
    expect(c.ping(4, c.podIp(3)).ok).toBe(true);
  }, 30_000);
});

describe.skipIf(!isRoot || !haveEtcd())("dual-stack membership from etcd (etcd.ipv6Network)", () => {
  const c = new EtcdCluster(CLI);
  const NET6 = "2001:2::/48";
  type Status6 = { etcd?: { podCIDR: string; ipv6PodCIDR?: string } };
  type Peer6 = { name: string; podCIDRs6?: string[] };
  const status = (n: number) => c.admin<Status6>(n, "/status")?.etcd;

  beforeAll(async () => {
    c.build();
    await c.startEtcd();
    // The IPv6 network where flannel keeps it too: worker3 reads it from <prefix>/config.
    c.etcdScript(`await c.put("/wasm-overlay/config").value(JSON.stringify({ network: "${NETWORK}", subnetLength: 24, ipv6Network: "${NET6}" }));`);
    await Promise.all([
      c.startDaemon(1, c.config(1, { endpoints: [ETCD_URL], network: NETWORK, leaseTTL: TTL, ipv6Network: NET6, ipv6SubnetLength: 64 })),
      c.startDaemon(3, c.config(3), ["--etcd-endpoints", ETCD_URL]),
    ]);
  }, 60_000);
  afterAll(async () => {
    await c.destroy();
  }, 30_000);

  it("each node's IPv6 subnet is its IPv4 subnet's index in the IPv6 network; peers learn it; pods ping over both families", async () => {
    const six = new Map<number, string>();
    for (const n of [1, 3]) {
      const s = status(n)!;
      const index = Number(s.podCIDR.split(".")[2]);
      expect(s.ipv6PodCIDR).toBe(`2001:2:0:${index.toString(16)}::/64`.replace("2001:2:0:0::", "2001:2::"));
      six.set(n, s.ipv6PodCIDR!);
      c.setupPod(n, s.podCIDR);
    }
    for (const [n, other] of [[1, 3], [3, 1]]) {
      await waitUntil(() => c.admin<Peer6[]>(n, "/peers")?.find((p) => p.name === `worker${other}`)?.podCIDRs6?.[0] === six.get(other) || undefined, 5000, `worker${n} to learn worker${other}'s IPv6 subnet`);
      expect(c.exec(`w${n}`, ["ip", "-6", "route", "show"])).toContain(`${six.get(other)} dev wo0`);
    }
    const ip1 = c.setupPod6(1, six.get(1)!);
    const ip3 = c.setupPod6(3, six.get(3)!);
    expect(c.ping(1, c.podIp(3)).ok).toBe(true);
    expect(c.ping(1, ip3).ok, "pod1 -> pod3 over IPv6").toBe(true);
    expect(c.ping(3, ip1).ok, "pod3 -> pod1 over IPv6").toBe(true);
  }, 30_000);
});

describe.skipIf(!isRoot || !haveEtcd())("etcd.underlay6: a node publishes its IPv6 underlay address, its peers tunnel to it over IPv6", () => {
  const c = new EtcdCluster(CLI);
  const NET6 = "2001:2::/48";
  type Status6 = { etcd?: { podCIDR: string; ipv6PodCIDR?: string } };
  type PeerU6 = { name: string; underlay: string; underlay6?: string; encapsulation: string; source: string };
  const udpOut = (n: number) => {
    const t = c.exec(`w${n}`, ["nstat", "-asz", "UdpOutDatagrams", "Udp6OutDatagrams"]);
    const get = (k: string) => Number(new RegExp(`${k}\\s+(\\d+)`).exec(t)?.[1] ?? 0);
    return { v4: get("UdpOutDatagrams"), v6: get("Udp6OutDatagrams") };
  };

  beforeAll(async () => {
    c.build();
    c.addUnderlay6();
    await c.startEtcd();
    const etcd = { endpoints: [ETCD_URL], network: NETWORK, leaseTTL: TTL, ipv6Network: NET6, underlay6: true };
    // worker1 and worker3 sit on the two underlay subnets, the leaf routing both families between them.
    await Promise.all([1, 3].map((n) => c.startDaemon(n, c.config(n, etcd, underlay6(n)))));
  }, 60_000);
  afterAll(async () => {
    await c.destroy();
  }, 30_000);

  it("the records carry the IPv6 underlay addresses; VXLAN between the nodes is UDP/IPv6 only; pods ping in both families and TCP crosses", async () => {
    const pods = new Map<number, { v4: string; v6: string }>();
    for (const n of [1, 3]) {
      const s = c.admin<Status6>(n, "/status")!.etcd!;
      c.setupPod(n, s.podCIDR);
      pods.set(n, { v4: c.podIp(n), v6: c.setupPod6(n, s.ipv6PodCIDR!) });
    }
    for (const [n, other] of [[1, 3], [3, 1]]) {
      const peer = await waitUntil(() => c.admin<PeerU6[]>(n, "/peers")?.find((p) => p.name === `worker${other}` && p.underlay6), 5000, `worker${n} to learn worker${other}'s IPv6 underlay`);
      expect(peer).toMatchObject({ underlay6: underlay6(other), encapsulation: "vxlan", source: "etcd" });
    }
    const before = udpOut(1);
    for (const [a, b] of [[1, 3], [3, 1]]) {
      expect(c.ping(a, pods.get(b)!.v4).ok, `pod${a} -> pod${b} IPv4`).toBe(true);
      expect(c.ping(a, pods.get(b)!.v6).ok, `pod${a} -> pod${b} IPv6`).toBe(true);
    }
    const after = udpOut(1);
    // worker1 sent VXLAN (its 4 echo requests and 4 replies) over UDP/IPv6, none over IPv4.
    expect(after.v6 - before.v6).toBeGreaterThanOrEqual(8);
    expect(after.v4 - before.v4).toBe(0);
    const t = await c.startTransfer(1, 3, 2 << 20, 20);
    expect(t.receivedSha).toBe(t.sentSha);
  }, 60_000);
});

