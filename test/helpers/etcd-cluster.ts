// A four-worker namespace cluster whose nodes get their pod CIDRs and peers
// from a real etcd (Debian etcd-server) running in the leaf namespace:
//
//   leaf: brA 198.18.0.1/24 (w1 .11, w2 .12), brB 198.18.1.1/24 (w3 .13, w4 .14),
//         etcd listening on 198.18.0.1:2379 (reached from B through the leaf)
//   worker N: eth0 on the underlay, overlayd, and a pod namespace whose
//         address (<leased subnet>.10, gateway .1 on the worker) is set once
//         the node's lease is known, as a CNI plugin reads flannel's subnet.env
//
// Only 198.18.0.0/15; namespaces under a run-specific prefix; destroy() ends
// only the processes started here (by PID) and deletes only its namespaces.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { Namespaces } from "../../src/demo/netns.js";

export const ETCD_URL = "http://198.18.0.1:2379";
export const WORKERS = [
  { n: 1, underlay: "198.18.0.11", subnet: "A" },
  { n: 2, underlay: "198.18.0.12", subnet: "A" },
  { n: 3, underlay: "198.18.1.13", subnet: "B" },
  { n: 4, underlay: "198.18.1.14", subnet: "B" },
] as const;

/** Worker n's IPv6 underlay address (addUnderlay6). */
export const underlay6 = (n: number) => (WORKERS.find((w) => w.n === n)!.subnet === "A" ? `2001:2:ff::1${n}` : `2001:2:ff:1::1${n}`);

export function haveEtcd(): boolean {
  try {
    execFileSync("etcd", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitUntil<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, ms: number, what: string, every = 100): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(every);
  }
}

/** Log lines of a daemon (pino JSON), parsed. */
export type LogLine = { time: number; msg: string; [k: string]: unknown };

const TCP_SERVER = `
import socket, hashlib, json, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("listening", flush=True)
s.settimeout(60); c, _ = s.accept(); c.settimeout(60)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(json.dumps({"received": n, "sha": h.hexdigest()}), flush=True)
`;

const TCP_CLIENT = `
import socket, hashlib, json, sys, time, random
host, port, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rnd = random.Random(7); h = hashlib.sha256(); sent = 0
s = socket.create_connection((host, port), timeout=60)
t0 = time.time()
while sent < total:
    chunk = rnd.randbytes(min(65536, total - sent))
    s.sendall(chunk); h.update(chunk); sent += len(chunk)
    ahead = sent / (rate * 1e6) - (time.time() - t0)
    if ahead > 0: time.sleep(ahead)
s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(json.dumps({"sent": sent, "sha": h.hexdigest()}), flush=True)
`;

export class EtcdCluster {
  readonly prefix = `woe${Math.random().toString(36).slice(2, 6)}`;
  private readonly nets = new Namespaces(this.prefix, 20_000);
  readonly dir = mkdtempSync(join(tmpdir(), "wo-etcd-"));
  private procs: ChildProcess[] = [];
  private etcd?: ChildProcess;
  readonly logs = new Map<number, string[]>();
  readonly daemons = new Map<number, ChildProcess>();
  /** Each worker's leased pod CIDR once its pod was set up. */
  readonly subnets = new Map<number, string>();

  constructor(private readonly cli: string) {}

  ns(name: string): string {
    return this.nets.ns(name);
  }

  /** Run a command in a namespace; in a worker's, OVERLAYD_ADMIN names its daemon's admin socket (for `overlayd show`). */
  exec(ns: string, args: string[]): string {
    const w = /^w(\d+)$/.exec(ns);
    if (w) args = ["env", `OVERLAYD_ADMIN=${this.adminSocket(Number(w[1]))}`, ...args];
    return this.nets.exec(ns, args);
  }

  /** Worker n's admin API socket (the default one, in its node.stateDir). */
  adminSocket(n: number): string {
    return join(this.dir, `state-w${n}`, "admin.sock");
  }

  build(): void {
    this.nets.add("leaf");
    this.exec("leaf", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (const [br, addr] of [["brA", "198.18.0.1/24"], ["brB", "198.18.1.1/24"]]) {
      this.exec("leaf", ["ip", "link", "add", br, "type", "bridge"]);
      this.exec("leaf", ["ip", "link", "set", br, "up"]);
      this.exec("leaf", ["ip", "addr", "add", addr, "dev", br]);
    }
    for (const w of WORKERS) {
      const wn = `w${w.n}`;
      this.nets.add(wn);
      this.nets.veth(wn, "eth0", "leaf", `p${w.n}`);
      this.exec("leaf", ["ip", "link", "set", `p${w.n}`, "master", w.subnet === "A" ? "brA" : "brB"]);
      this.exec(wn, ["ip", "addr", "add", `${w.underlay}/24`, "dev", "eth0"]);
      const [other, gw] = w.subnet === "A" ? ["198.18.1.0/24", "198.18.0.1"] : ["198.18.0.0/24", "198.18.1.1"];
      this.exec(wn, ["ip", "route", "add", other, "via", gw]);
      this.exec(wn, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      this.nets.add(`pod${w.n}`);
      this.nets.veth(`pod${w.n}`, "eth0", wn, "veth-pod");
    }
  }

  /** IPv6 on the underlay too: brA 2001:2:ff::1/64 and brB 2001:2:ff:1::1/64 on the leaf
   *  (forwarding between them), worker N underlay6(N) with a route to the other /64. */
  addUnderlay6(): void {
    this.exec("leaf", ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    this.exec("leaf", ["ip", "addr", "add", "2001:2:ff::1/64", "dev", "brA", "nodad"]);
    this.exec("leaf", ["ip", "addr", "add", "2001:2:ff:1::1/64", "dev", "brB", "nodad"]);
    for (const w of WORKERS) {
      const [other, gw] = w.subnet === "A" ? ["2001:2:ff:1::/64", "2001:2:ff::1"] : ["2001:2:ff::/64", "2001:2:ff:1::1"];
      this.exec(`w${w.n}`, ["ip", "addr", "add", `${underlay6(w.n)}/64`, "dev", "eth0", "nodad"]);
      this.exec(`w${w.n}`, ["ip", "-6", "route", "add", other, "via", gw]);
    }
  }

  // --- etcd ----------------------------------------------------------------------------

  /** Start (or restart, on the same data) etcd in the leaf; resolves once it answers. */
  async startEtcd(): Promise<void> {
    const data = join(this.dir, "etcd");
    const child = spawn("ip", [
      "netns", "exec", this.ns("leaf"), "etcd", "--name", "leaf", "--data-dir", data,
      "--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL,
      "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
      "--initial-cluster", "leaf=http://127.0.0.1:2380", "--log-level", "warn",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    this.procs.push(child);
    this.etcd = child;
    let err = "";
    child.stderr!.on("data", (d) => (err += String(d)));
    await waitUntil(() => {
      if (child.exitCode !== null) throw new Error(`etcd exited ${child.exitCode}: ${err}`);
      try {
        this.exec("leaf", ["bash", "-c", "exec 3<>/dev/tcp/198.18.0.1/2379"]);
        return true;
      } catch {
        return false;
      }
    }, 15_000, "etcd to listen", 100);
  }

  /** Kill etcd (SIGKILL: an outage, not a clean shutdown). */
  async killEtcd(): Promise<void> {
    const e = this.etcd;
    if (!e || e.exitCode !== null || e.signalCode !== null) return;
    const done = new Promise((r) => e.once("exit", r));
    e.kill("SIGKILL");
    await done;
  }

  /** Run a small etcd3 script in the leaf (the test process cannot reach 198.18.0.1). */
  etcdScript(body: string): string {
    const lib = new URL("../../node_modules/etcd3/lib/index.js", import.meta.url).pathname;
    const code = `const { Etcd3 } = require(${JSON.stringify(lib)}); const c = new Etcd3({ hosts: ${JSON.stringify(ETCD_URL)} });
      (async () => { ${body} })().then((v) => { if (v !== undefined) process.stdout.write(JSON.stringify(v)); c.close(); process.exit(0); }, (e) => { console.error(e); process.exit(1); });`;
    return this.exec("leaf", [process.execPath, "-e", code]);
  }

  // --- daemons ----------------------------------------------------------------------------

  /** A node config without podCIDR or peers; `etcd` becomes its etcd section (omit to pass it on the command line).
   *  `underlayAddress6`: node.ipv6.underlayAddress (its pod prefix then comes from etcd.ipv6Network). */
  config(n: number, etcd?: Record<string, unknown>, underlayAddress6?: string): string {
    const w = WORKERS.find((x) => x.n === n)!;
    const cfg: Record<string, unknown> = {
      node: {
        name: `worker${n}`, underlay: { address: w.underlay, prefixLength: 24, device: "eth0" }, device: { name: "wo0", mode: "tun" }, stateDir: join(this.dir, `state-w${n}`),
        ...(underlayAddress6 ? { ipv6: { underlayAddress: underlayAddress6 } } : {}),
      },
      tunnel: { vni: 100 },
    };
    if (etcd) cfg.etcd = etcd;
    const file = join(this.dir, `worker${n}.yaml`);
    writeFileSync(file, stringify(cfg));
    return file;
  }

  async startDaemon(n: number, configFile: string, extraArgs: string[] = []): Promise<ChildProcess> {
    const child = spawn("ip", ["netns", "exec", this.ns(`w${n}`), process.execPath, this.cli, "run", "--config", configFile, ...extraArgs], { stdio: ["ignore", "pipe", "pipe"] });
    this.procs.push(child);
    this.daemons.set(n, child);
    const log: string[] = [];
    this.logs.set(n, log);
    child.stdout!.on("data", (d) => log.push(String(d)));
    child.stderr!.on("data", (d) => log.push(String(d)));
    await waitUntil(() => {
      if (child.exitCode !== null) throw new Error(`overlayd on worker${n} exited ${child.exitCode}: ${log.join("")}`);
      return this.admin(n, "/status") !== undefined;
    }, 30_000, `overlayd on worker${n} to come up: ${log.join("")}`, 200);
    return child;
  }

  async stopDaemon(n: number): Promise<void> {
    const child = this.daemons.get(n);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(t);
  }

  /** GET an admin path of worker n's daemon; undefined when it does not answer. */
  admin<T = unknown>(n: number, path: string): T | undefined {
    const body = this.adminText(n, path);
    return body === undefined ? undefined : (JSON.parse(body) as T);
  }

  /** The body of an admin path, by curl on the admin socket (polling with a node process each time is slow on a busy machine). */
  adminText(n: number, path: string): string | undefined {
    try {
      return this.exec(`w${n}`, ["curl", "-sf", "--max-time", "5", "--unix-socket", this.adminSocket(n), `http://overlayd${path}`]);
    } catch {
      return undefined;
    }
  }

  /** The daemon's log lines (pino JSON) so far. */
  logLines(n: number): LogLine[] {
    return (this.logs.get(n) ?? []).join("").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as LogLine);
  }

  /** Pod n's IPv6 from its node's IPv6 lease: <subnet>::10/128 on its eth0, the worker's side <subnet>::1 as on-link gateway. */
  setupPod6(n: number, cidr6: string): string {
    const base = cidr6.split("/")[0];
    const gw = `${base}1`;
    const ip = `${base}10`;
    this.exec(`w${n}`, ["ip", "addr", "add", `${gw}/64`, "dev", "veth-pod", "nodad"]);
    this.exec(`pod${n}`, ["ip", "addr", "add", `${ip}/128`, "dev", "eth0", "nodad"]);
    this.exec(`pod${n}`, ["ip", "-6", "route", "add", gw, "dev", "eth0"]);
    this.exec(`pod${n}`, ["ip", "-6", "route", "add", "default", "via", gw, "dev", "eth0"]);
    return ip;
  }

  /** Address pod n from its node's lease: <subnet>.10, gateway <subnet>.1 on the worker. */
  setupPod(n: number, podCIDR: string): string {
    const base = podCIDR.split("/")[0].split(".").map(Number);
    const len = Number(podCIDR.split("/")[1]);
    const at = (k: number) => [base[0], base[1], base[2], base[3] + k].join(".");
    this.exec(`w${n}`, ["ip", "addr", "replace", `${at(1)}/${len}`, "dev", "veth-pod"]);
    this.exec(`pod${n}`, ["ip", "addr", "flush", "dev", "eth0"]);
    this.exec(`pod${n}`, ["ip", "addr", "add", `${at(10)}/${len}`, "dev", "eth0"]);
    this.exec(`pod${n}`, ["ip", "route", "replace", "default", "via", at(1)]);
    this.subnets.set(n, podCIDR);
    return at(10);
  }

  podIp(n: number): string {
    const c = this.subnets.get(n);
    if (!c) throw new Error(`pod${n} has no address yet`);
    const b = c.split("/")[0].split(".").map(Number);
    return [b[0], b[1], b[2], b[3] + 10].join(".");
  }

  ping(from: number, to: string, count = 2): { ok: boolean; out: string } {
    try {
      return { ok: true, out: this.exec(`pod${from}`, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "2", to]) };
    } catch (e) {
      return { ok: false, out: String((e as { stdout?: string }).stdout ?? e) };
    }
  }

  /** Start a rate-limited TCP transfer pod `from` → pod `to`; await the result later. */
  async startTransfer(from: number, to: number, bytes: number, rateMBps: number, port = 5001): Promise<Promise<{ sent: number; received: number; sentSha: string; receivedSha: string }>> {
    const spawnIn = (ns: string, args: string[]) => {
      const c = spawn("ip", ["netns", "exec", this.ns(ns), ...args], { stdio: ["ignore", "pipe", "pipe"] });
      this.procs.push(c);
      return c;
    };
    const server = spawnIn(`pod${to}`, ["python3", "-c", TCP_SERVER, this.podIp(to), String(port)]);
    let out = "";
    server.stdout!.on("data", (d) => (out += String(d)));
    await waitUntil(() => out.includes("listening"), 5000, "tcp server to listen", 50);
    const client = spawnIn(`pod${from}`, ["python3", "-c", TCP_CLIENT, this.podIp(to), String(port), String(bytes), String(rateMBps)]);
    let cout = "";
    let cerr = "";
    client.stdout!.on("data", (d) => (cout += String(d)));
    client.stderr!.on("data", (d) => (cerr += String(d)));
    return (async () => {
      const code = await new Promise<number | null>((r) => client.once("exit", (c) => r(c)));
      await waitUntil(() => server.exitCode !== null || undefined, 10_000, "tcp server to finish").catch(() => server.kill("SIGKILL"));
      if (code !== 0) throw new Error(`tcp client failed (${code}): ${cerr}`);
      const c = JSON.parse(cout.trim().split("\n").pop()!);
      const s = JSON.parse(out.trim().split("\n").pop()!);
      return { sent: c.sent, sentSha: c.sha, received: s.received, receivedSha: s.sha };
    })();
  }

  /** Kernel routes in worker n's namespace (`ip route show`). */
  routes(n: number): string {
    return this.exec(`w${n}`, ["ip", "route", "show"]);
  }

  async destroy(): Promise<void> {
    for (const p of this.procs) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const done = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 5000);
      await done;
      clearTimeout(t);
    }
    this.procs = [];
    this.nets.deleteAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
