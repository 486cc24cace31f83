// overlayd left running on a node (issue 13 §2-3): reloads that fail keep
// the running tables and the daemon; SIGTERM at any start-up step, kill -9
// then a restart, and `overlayd cleanup` leave nothing of overlayd on the
// node; a second instance is refused. Worker1 of the seed cluster runs with
// NAT on (rules, table route, tc filters, reserved ports) and no
// node.underlay.device (direct routes look up their device), from a
// baseline of ip_forward=0 and one port reserved by someone else. Needs
// root; CI runs it as root.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, podIp, waitFor } from "../src/demo/cluster.js";
import { START_STEPS } from "../src/daemon/nodesetup.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
if (!isRoot && process.env.CI === "true") throw new Error("robust-node.test.ts needs root in CI");

describe.skipIf(!isRoot)("overlayd on a node: reload transactions, signals, crash leftovers", () => {
  const cluster = new Cluster();
  const mine: ChildProcess[] = [];
  let cfg1 = "";
  let stateDir = "";
  let baseline = "";
  /** worker1's daemon from the second-instance test on, which the reload tests use. */
  let d1: ChildProcess;

  type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const doc = (): Doc => {
    const d = parse(cluster.config(1, () => "auto", { nat: { masquerade: true }, log: { level: "info" } })) as Doc;
    delete d.node.underlay.device; // direct routes find their device with `ip route get`
    return d;
  };
  const write = (d: Doc) => writeFileSync(cfg1, stringify(d));
  const w1 = (argv: string[]) => cluster.exec("w1", argv);

  /** Everything of overlayd's that could outlive it on worker1, as text. */
  function footprint(): string {
    const json = (argv: string[]) => {
      try {
        return JSON.parse(w1(argv) || "[]") as Record<string, unknown>[];
      } catch {
        return [];
      }
    };
    const links = json(["ip", "-json", "link", "show"]).map((l) => l.ifname).filter((n) => String(n).startsWith("wo0"));
    const routes = json(["ip", "-json", "route", "show", "table", "all"]).filter((r) => r.protocol === "79" || r.table === "4789" || r.dev === "wo0").map((r) => `${r.dst} ${r.gateway ?? ""} ${r.dev} ${r.table ?? ""}`);
    const rules = json(["ip", "-json", "rule", "show"]).filter((r) => r.priority === 4789 || r.priority === 4790).map((r) => JSON.stringify(r));
    const tc = json(["tc", "-json", "filter", "show", "dev", "eth0", "ingress"]).map((f) => `pref ${f.pref}`);
    const qdisc = json(["tc", "-json", "qdisc", "show", "dev", "eth0"]).map((q) => q.kind).filter((k) => k === "clsact");
    const sysctl = (k: string) => w1(["sysctl", "-n", k]).trim();
    return JSON.stringify({
      links, routes, rules, tc, qdisc,
      reservedPorts: sysctl("net.ipv4.ip_local_reserved_ports"), ipForward: sysctl("net.ipv4.ip_forward"),
      lock: existsSync(join(stateDir, "overlayd.lock")), record: existsSync(join(stateDir, "installed.json")),
    }, null, 1);
  }

  function status(): Doc {
    return JSON.parse(w1(["curl", "-sf", "--unix-socket", cluster.adminSocket(1), "http://overlayd/status"])) as Doc;
  }

  /** SIGHUP the daemon and wait for its next lastReload. */
  async function reloadBySighup(d: ChildProcess): Promise<Doc> {
    const before = status().lastReload?.at ?? 0;
    d.kill("SIGHUP");
    let last: Doc | undefined;
    await waitFor(() => {
      last = status().lastReload;
      return (last?.at ?? 0) > before;
    }, 10_000, "no reload happened");
    return last!;
  }

  function spawnOverlayd(env: Record<string, string> = {}): { child: ChildProcess; out: () => string; exit: Promise<number | null> } {
    const child = spawn("ip", ["netns", "exec", cluster.ns("w1"), process.execPath, CLI, "run", "--config", cfg1], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    mine.push(child);
    let out = "";
    child.stdout!.on("data", (b) => (out += String(b)));
    child.stderr!.on("data", (b) => (out += String(b)));
    const exit = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    return { child, out: () => out, exit };
  }

  const cli = (args: string[]) => {
    try {
      return { code: 0, out: w1([process.execPath, CLI, ...args]) };
    } catch (e) {
      return { code: 1, out: (e as Error).message };
    }
  };
  const ping = (to: string) => cluster.ping(1, to, 2).ok;

  beforeAll(() => {
    cluster.build();
    cfg1 = cluster.writeConfig(1, "");
    write(doc());
    stateDir = doc().node.stateDir as string;
    w1(["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    w1(["sysctl", "-qw", "net.ipv4.ip_local_reserved_ports=5555"]);
    baseline = footprint();
  }, 60_000);

  afterAll(async () => {
    for (const c of mine) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await cluster.destroy();
  });

  it("SIGTERM at every start-up step (and after) leaves no device, route, rule, tc filter, reserved port or sysctl behind", async () => {
    for (const step of [...START_STEPS, "running"]) {
      const o = spawnOverlayd(step === "running" ? {} : { OVERLAYD_TEST_PAUSE_AT: step });
      const marker = step === "running" ? "overlayd started" : "paused at start-up step";
      await waitFor(() => o.out().includes(marker) || o.child.exitCode !== null, 20_000, `overlayd did not reach step ${step}: ${o.out()}`);
      expect(o.child.exitCode, o.out()).toBeNull();
      if (step === "running") expect(footprint()).not.toBe(baseline); // it did set things up
      o.child.kill("SIGTERM");
      expect(await o.exit, `${step}: ${o.out()}`).toBe(0);
      expect(footprint(), `after SIGTERM at ${step}`).toBe(baseline);
    }
  }, 240_000);

  it("an unexpected error (uncaught exception, unhandled rejection) is logged, cleaned up and exits 1", async () => {
    for (const kind of ["uncaught", "rejection"]) {
      const o = spawnOverlayd({ OVERLAYD_TEST_THROW: kind });
      expect(await o.exit, o.out()).toBe(1);
      expect(o.out()).toMatch(/injected by OVERLAYD_TEST_THROW.*"msg":"unexpected error/);
      expect(o.out()).toContain("overlayd stopped");
      expect(footprint(), `after an injected ${kind}`).toBe(baseline);
    }
  }, 90_000);

  it("kill -9, then a start removes what the dead instance left (a peer gone meanwhile leaves no route); a clean stop restores the baseline", async () => {
    const a = await cluster.startDaemon(1, cfg1, CLI);
    const d2 = await cluster.startDaemon(2, cluster.writeConfig(2, cluster.config(2)), CLI);
    await waitFor(() => ping(podIp(2)), 10_000, "pod1 cannot reach pod2");
    a.kill("SIGKILL");
    await new Promise((r) => a.once("exit", r));
    const left = JSON.parse(footprint());
    expect(left.routes.some((r: string) => r.startsWith("198.19.2.0/24 198.18.0.12 eth0"))).toBe(true); // proto 79 direct route of the dead one
    expect(left.rules).toHaveLength(2);
    expect(left.reservedPorts).toBe("5555,61000-65535");
    expect(left.ipForward).toBe("1");
    expect(left.lock).toBe(true);
    // worker2 is no longer a peer: its route must not survive the restart.
    const d = doc();
    d.peers = d.peers.filter((p: Doc) => p.name !== "worker2");
    write(d);
    const b = await cluster.startDaemon(1, cfg1, CLI);
    const now = JSON.parse(footprint());
    expect(now.routes.filter((r: string) => r.startsWith("198.19.2.0/24"))).toEqual([]);
    expect(now.rules).toHaveLength(2);
    expect(cluster.logs.get("w1")!.join("")).toContain("removed what a previous overlayd left");
    expect(await cluster.stopDaemon(b)).toBe(0);
    expect(footprint()).toBe(baseline);
    write(doc());
    await cluster.stopDaemon(d2);
  }, 90_000);

  it("overlayd cleanup removes everything a killed instance left, and refuses while one runs", async () => {
    const a = await cluster.startDaemon(1, cfg1, CLI);
    const refused = cli(["cleanup", "--config", cfg1]);
    expect(refused.code).toBe(1);
    expect(refused.out).toMatch(/overlayd \(pid \d+\) is running/);
    a.kill("SIGKILL");
    await new Promise((r) => a.once("exit", r));
    expect(footprint()).not.toBe(baseline);
    const r = cli(["cleanup", "--config", cfg1]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/removed route 198\.19\.2\.0\/24 via 198\.18\.0\.12 dev eth0 proto 79/);
    expect(r.out).toMatch(/removed sysctl net\.ipv4\.ip_forward=0/);
    // the lock of the dead instance is stale: leave it, the next start takes it over
    expect(JSON.parse(footprint())).toEqual({ ...JSON.parse(baseline), lock: true });
    expect(cli(["cleanup", "--config", cfg1]).out).toContain("nothing to remove");
  }, 60_000);

  it("a second instance (same stateDir, or same device in the same namespace) is refused and leaves the first one's set-up alone", async () => {
    const a = await cluster.startDaemon(1, cfg1, CLI);
    d1 = a;
    await cluster.startDaemon(2, cluster.writeConfig(2, cluster.config(2)), CLI);
    await waitFor(() => ping(podIp(2)), 10_000, "pod1 cannot reach pod2");
    const running = footprint();
    const b = spawnOverlayd();
    expect(await b.exit).toBe(1);
    expect(b.out()).toMatch(/another overlayd \(pid \d+\) runs with node\.stateDir/);
    const d = doc();
    d.node.stateDir = `${stateDir}-other`;
    const other = join(cluster.dir, "other.yaml");
    writeFileSync(other, stringify(d));
    const c = spawn("ip", ["netns", "exec", cluster.ns("w1"), process.execPath, CLI, "run", "--config", other], { stdio: ["ignore", "pipe", "pipe"] });
    mine.push(c);
    let out = "";
    c.stdout!.on("data", (x) => (out += String(x)));
    expect(await new Promise((r) => c.once("exit", r))).toBe(1);
    expect(out).toMatch(/device wo0 already exists/);
    expect(footprint()).toBe(running);
    expect(ping(podIp(2))).toBe(true);
    expect(a.exitCode).toBeNull();
  }, 60_000);

  it("reload: restart-only fields refused by name, log.level applied live, concurrent triggers coalesced", async () => {
    const child = d1;
    const cases: [(d: Doc) => void, string][] = [
      [(d) => (d.node.podCIDR = "198.19.11.0/24"), "node.podCIDR changed: restart overlayd to apply it"],
      [(d) => (d.tunnel.udpOffloads = false), "tunnel.udpOffloads changed: restart overlayd to apply it"],
      [(d) => (d.node.device.mtu = 1300), "node.device.mtu changed: restart overlayd to apply it"],
      [(d) => (d.admin = { watchdogSeconds: 20 }), "admin.watchdogSeconds changed: restart overlayd to apply it"],
      [(d) => (d.nat.conntrack = { maxFlows: 1000 }), "nat.conntrack.maxFlows changed: restart overlayd to apply it"],
    ];
    for (const [edit, msg] of cases) {
      const d = doc();
      edit(d);
      write(d);
      const r = await reloadBySighup(child!);
      expect(r.ok).toBe(false);
      expect(r.errors).toContain(msg);
    }
    const bad = doc();
    bad.log.level = "loud";
    write(bad);
    const r1 = await reloadBySighup(child!);
    expect(r1.ok).toBe(false);
    expect(r1.errors.join(" ")).toMatch(/log\.level/);
    expect(status().logLevel).toBe("info");
    const dbg = doc();
    dbg.log.level = "debug";
    write(dbg);
    const r2 = await reloadBySighup(child!);
    expect(r2).toMatchObject({ ok: true, errors: [] });
    expect(status().logLevel).toBe("debug");
    // Ten SIGHUPs at once: one runs, the others coalesce behind it.
    const count = () => {
      const m = w1([process.execPath, "-e", "fetch('http://127.0.0.1:9469/metrics').then(r=>r.text()).then(t=>console.log(t))"]);
      return [...m.matchAll(/config_reloads_total\{result="\w+"\} (\d+)/g)].reduce((a, x) => a + Number(x[1]), 0);
    };
    const before = count();
    for (let i = 0; i < 10; i++) child!.kill("SIGHUP");
    await new Promise((r) => setTimeout(r, 3000));
    const ran = count() - before;
    expect(ran).toBeGreaterThanOrEqual(1);
    expect(ran).toBeLessThanOrEqual(3);
    expect(status().lastReload.ok).toBe(true);
    write(doc());
  }, 120_000);

  it("a reload whose plan or apply fails keeps the old tables forwarding and the daemon alive", async () => {
    const child = d1;
    await waitFor(() => ping(podIp(2)), 10_000, "pod1 cannot reach pod2");
    const routes = () => JSON.parse(w1(["curl", "-sf", "--unix-socket", cluster.adminSocket(1), "http://overlayd/routes"])) as { prefix: string }[];
    const kernel = () => w1(["ip", "route", "show", "proto", "79"]);
    const routesBefore = routes();
    const kernelBefore = kernel();
    // plan: a direct peer whose underlay no route reaches (`ip route get` fails)
    const d = doc();
    d.peers.push({ name: "worker9", underlay: "198.18.7.7", podCIDRs: ["198.19.9.0/24"], vtepMac: "0e:00:00:00:09:00", encapsulation: "direct" });
    write(d);
    const r1 = await reloadBySighup(child);
    expect(r1.ok).toBe(false);
    expect(r1.errors.join(" ")).toMatch(/no interface reaches 198\.18\.7\.7/);
    // apply: a new VXLAN peer (its kernel route goes in first), then NAT
    // plumbing that fails (the service-SNAT address is the pod gateway's):
    // the route comes out again and the workers never see the new tables.
    const e = doc();
    e.peers.push({ name: "worker9", underlay: "198.18.0.99", podCIDRs: ["198.19.9.0/24"], vtepMac: "0e:00:00:00:09:00", encapsulation: "vxlan" });
    e.nat.snatAddress = "198.19.1.1";
    write(e);
    const r2 = await reloadBySighup(child);
    expect(r2.ok).toBe(false);
    expect(r2.errors.join(" ")).toMatch(/NAT plumbing: .*snatAddress: 198\.19\.1\.1 is assigned to veth-pod/);
    expect(child.exitCode).toBeNull();
    expect(routes()).toEqual(routesBefore);
    expect(routes().some((x) => x.prefix === "198.19.9.0/24")).toBe(false);
    expect(kernel()).toBe(kernelBefore);
    expect(ping(podIp(2))).toBe(true);
    // SIGHUP, or the file watch that saw the same write (whichever ran last)
    expect(status().lastReload).toMatchObject({ ok: false, reason: expect.stringMatching(/SIGHUP|file changed/) });
    write(doc());
    const r3 = await reloadBySighup(child);
    expect(r3.ok).toBe(true);
  }, 90_000);
});
