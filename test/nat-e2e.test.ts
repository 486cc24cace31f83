// NAT end to end across namespaces, seed 001's Hand CNI-3/4/5 done by the
// userspace data path: pods masqueraded to an "outside" host that has no
// route to any pod, a ClusterIP backed by pods on two other nodes (one
// reached by plain routing, one through VXLAN), NodePorts reached from
// outside, hairpin. The kernel's NAT tables stay empty throughout. Needs
// root; CI runs it as root.
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, OUTSIDE, podIp, waitFor } from "../src/demo/cluster.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
const CLUSTER_IP = "198.18.250.10";
const NODE1 = "198.18.0.11";
const NODE2 = "198.18.0.12";
const snatOf = (n: number) => `198.19.${n}.254`;

// A server that takes any number of connections, one after another: reads
// until EOF, answers with what it got and from whom, closes.
const SERVER = `
import socket, hashlib, json, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16); print("listening", flush=True)
while True:
    c, peer = s.accept(); c.settimeout(20)
    h = hashlib.sha256(); n = 0
    try:
        while True:
            b = c.recv(1 << 16)
            if not b: break
            h.update(b); n += len(b)
        r = json.dumps({"n": n, "sha": h.hexdigest(), "peer": peer[0], "port": peer[1], "me": sys.argv[2]})
        c.sendall(r.encode() + b"\\n")
        print(r, flush=True)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
    c.close()
`;

const CLIENT = `
import socket, hashlib, json, sys, random
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(int(sys.argv[4])); h = hashlib.sha256(); sent = 0
s = socket.create_connection((host, port), timeout=20)
while sent < total:
    chunk = rnd.randbytes(min(65536, total - sent)); s.sendall(chunk); h.update(chunk); sent += len(chunk)
s.shutdown(socket.SHUT_WR)
buf = b""
while not buf.endswith(b"\\n"):
    b = s.recv(4096)
    if not b: break
    buf += b
print(json.dumps({"sent": sent, "sha": h.hexdigest(), "reply": json.loads(buf.decode())}))
`;

interface Reply { n: number; sha: string; peer: string; port: number; me: string }

describe.skipIf(!isRoot)("NAT across namespaces (Hand CNI-3/4/5)", () => {
  // Pods attached by the CNI plugin (routed, gateway the node's overlay address), as the demo's.
  const cluster = new Cluster(undefined, { pods: "cni" });
  const daemons = new Map<number, ChildProcess>();
  const servers: ChildProcess[] = [];

  // Every node knows the same service, as kube-proxy does: ClusterIP:80 ->
  // pod2:8080 (worker2, plain routing from worker1) and pod3:8080 (worker3,
  // VXLAN), NodePort 30080.
  const extra = {
    nat: { masquerade: true },
    services: [{ name: "web", clusterIP: CLUSTER_IP, ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], backends: [podIp(2), podIp(3)] }],
  };

  async function serve(ns: string, port: number, name: string): Promise<void> {
    const p = cluster.spawnIn(ns, ["python3", "-c", SERVER, String(port), name]);
    servers.push(p);
    let out = "";
    p.stdout!.on("data", (d) => (out += String(d)));
    await waitFor(() => out.includes("listening"), 5000, `server in ${ns} did not start`);
  }

  function connect(fromNs: string, addr: string, port: number, bytes: number, seed: number): { sent: number; sha: string; reply: Reply } {
    const out = cluster.exec(fromNs, ["python3", "-c", CLIENT, addr, String(port), String(bytes), String(seed)]);
    return JSON.parse(out.trim().split("\n").pop()!);
  }

  function show(n: number, what: string, json = true): string {
    return cluster.exec(`w${n}`, [process.execPath, CLI, "show", what, ...(json ? ["--json"] : [])]);
  }

  function kernelNatRules(ns: string): string {
    return cluster.exec(ns, ["nft", "list", "ruleset"]).trim();
  }

  beforeAll(async () => {
    cluster.build();
    cluster.addOutside();
    for (const n of [1, 2, 3]) {
      const file = cluster.writeConfig(n, cluster.config(n, () => "auto", extra));
      daemons.set(n, await cluster.startDaemon(n, file, CLI));
    }
    await serve("pod2", 8080, "pod2");
    await serve("pod3", 8080, "pod3");
    await serve("outside", 5001, "outside");
  }, 90_000);

  afterAll(async () => {
    await cluster.destroy();
  });

  it("the outside host has no route to pods, and the kernel's NAT tables are empty", () => {
    const routes = cluster.exec("outside", ["ip", "-4", "route", "show"]);
    expect(routes).not.toContain("198.19.");
    for (const ns of ["w1", "w2", "w3", "outside"]) expect(kernelNatRules(ns), ns).toBe("");
  });

  it("Hand CNI-3: a pod's TCP transfer to the outside arrives byte for byte, from the node's address", () => {
    const r = connect("pod1", OUTSIDE.address, 5001, 4 << 20, 1);
    expect(r.reply.n).toBe(4 << 20);
    expect(r.reply.sha).toBe(r.sha);
    expect(r.reply.peer).toBe(NODE1);
    expect(r.reply.port).toBeGreaterThanOrEqual(61000);
    expect(r.reply.port).toBeLessThanOrEqual(65535);
    // ICMP echo is masqueraded too.
    const ping = cluster.exec("pod1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", OUTSIDE.address]);
    expect(ping).toContain("2 received");
  });

  it("NAT on every queue: two workers per node share one table; a flow's directions translated by different workers arrive intact", () => {
    type Row = { nat_translated_packets: string | number; nat_reply_packets: string | number };
    const queues = () => (JSON.parse(show(1, "stats")) as { queues: Row[] }).queues
      .map((q) => ({ reply: BigInt(q.nat_reply_packets), orig: BigInt(q.nat_translated_packets) - BigInt(q.nat_reply_packets) }));
    expect(queues()).toHaveLength(2);
    for (const n of [1, 2, 3]) expect(JSON.parse(show(n, "status")).queues, `worker${n}`).toBe(2);
    // Flows one at a time, each counted per worker by direction, until one
    // had its original direction translated by one worker and its replies
    // by the other (with a table per worker, its answers would find no flow).
    let split = -1;
    for (let i = 0; i < 16 && split < 0; i++) {
      const before = queues();
      const r = connect("pod1", OUTSIDE.address, 5001, 256 << 10, 400 + i);
      expect(r.reply.n).toBe(256 << 10);
      expect(r.reply.sha).toBe(r.sha);
      const d = queues().map((a, q) => ({ orig: a.orig - before[q].orig, reply: a.reply - before[q].reply }));
      if (d.some((x, q) => x.orig > 0n && d.some((y, p) => p !== q && y.reply > 0n))) split = i;
    }
    expect(split, "no flow of 16 had its two directions on different workers").toBeGreaterThanOrEqual(0);
    console.log(`NAT on every queue: flow ${split + 1} of up to 16 had its directions translated by different workers`);
  });

  it("show conntrack lists the masqueraded flow like conntrack -L", () => {
    connect("pod1", OUTSIDE.address, 5001, 1000, 2);
    const text = cluster.exec("w1", [process.execPath, CLI, "show", "conntrack"]);
    const line = text.split("\n").find((l) => l.includes(`src=${podIp(1)} dst=${OUTSIDE.address}`) && l.startsWith("tcp"));
    expect(line, text).toBeDefined();
    expect(line).toContain(`dst=${NODE1}`);
    expect(line).toContain("nat=snat");
    const j = JSON.parse(show(1, "conntrack"));
    expect(j.stats.entries).toBeGreaterThan(0);
    expect(j.flows.some((f: { nat: string }) => f.nat === "snat")).toBe(true);
  });

  it("Hand CNI-4: a client pod reaches the ClusterIP; both backends (plain-routed and VXLAN) get flows, bytes intact", () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 14; i++) {
      const r = connect("pod1", CLUSTER_IP, 80, 256 << 10, 100 + i);
      expect(r.reply.n).toBe(256 << 10);
      expect(r.reply.sha).toBe(r.sha);
      seen.set(r.reply.me, (seen.get(r.reply.me) ?? 0) + 1);
      // The VXLAN backend sees the client pod itself; the plain-routed one the
      // node's service-SNAT address (its answer must come back through us).
      expect(r.reply.peer).toBe(r.reply.me === "pod3" ? podIp(1) : snatOf(1));
    }
    expect(seen.get("pod2") ?? 0, JSON.stringify([...seen])).toBeGreaterThan(0);
    expect(seen.get("pod3") ?? 0, JSON.stringify([...seen])).toBeGreaterThan(0);
  });

  it("hairpin: a backend reaching its own service works whichever backend it gets", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const r = connect("pod2", CLUSTER_IP, 80, 64 << 10, 200 + i);
      expect(r.reply.sha).toBe(r.sha);
      seen.add(r.reply.me);
      if (r.reply.me === "pod2") expect(r.reply.peer).toBe(snatOf(2));
    }
    expect(seen.size).toBeGreaterThan(0);
  });

  it("Hand CNI-5: the outside host reaches the NodePort on two nodes; bytes intact", () => {
    for (const [node, addr] of [[1, NODE1], [2, NODE2]] as const) {
      const seen = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const r = connect("outside", addr, 30080, 1 << 20, 300 + i);
        expect(r.reply.n).toBe(1 << 20);
        expect(r.reply.sha).toBe(r.sha);
        // NodePort flows are source-translated to the node's SNAT address.
        expect(r.reply.peer).toBe(snatOf(node));
        seen.add(r.reply.me);
      }
      expect(seen.size, `node ${node}`).toBeGreaterThan(0);
    }
    for (const ns of ["w1", "w2", "w3"]) expect(kernelNatRules(ns), ns).toBe("");
  });

  it("NAT counters and conntrack metrics are exported", () => {
    const m = cluster.exec("w1", [process.execPath, "-e", "fetch('http://127.0.0.1:9469/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))"]);
    expect(m).toMatch(/overlay_conntrack_entries \d+/);
    expect(m).toMatch(/overlay_conntrack_events_total\{event="insert"\} [1-9]/);
    const stats = JSON.parse(show(1, "stats"));
    expect(BigInt(stats.counters.nat_snat_flows)).toBeGreaterThan(0n);
    expect(BigInt(stats.counters.nat_dnat_flows)).toBeGreaterThan(0n);
  });

  it("stopping overlayd removes its policy rules, tc steering and service routes", async () => {
    const before = cluster.exec("w1", ["ip", "rule", "show"]);
    expect(before).toContain("lookup 4789");
    expect(await cluster.stopDaemon(daemons.get(1)!)).toBe(0);
    expect(cluster.exec("w1", ["ip", "rule", "show"])).not.toContain("4789");
    expect(cluster.exec("w1", ["tc", "filter", "show", "dev", "eth0", "ingress"]).trim()).toBe("");
    expect(cluster.exec("w1", ["ip", "route", "show"])).not.toContain(CLUSTER_IP);
  });
});

