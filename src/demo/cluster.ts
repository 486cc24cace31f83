// The seed's three-worker cluster (Hand CNI-6/7) built from network
// namespaces on this machine, in 198.18.0.0/15 only:
//
//   underlay A 198.18.0.0/24: worker1 .11, worker2 .12, leaf .1   (one bridge in "leaf")
//   underlay B 198.18.1.0/24: worker3 .13, leaf .1
//   pods: worker N has pod 198.19.N.10: with `pods: "cni"` attached by the
//   CNI plugin (src/cni/, routed mode: a /32, gateway the node's overlay
//   address 198.19.N.0) once the worker's overlayd is up; by default built by
//   hand (a /32, gateway 198.19.N.1 on the worker's veth); `pods: "none"`: no pods
//   optional (addOutside): "outside" 198.18.2.100 behind the leaf (198.18.2.1),
//   routes only to the underlay subnets, never to the pod CIDRs (Hand CNI-3)
//
// Used by `overlayd demo` and by the end-to-end tests. Every namespace gets
// a run-specific prefix; destroy() removes all of them and ends only the
// processes started here, by PID.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { stringify } from "yaml";
import { Namespaces } from "./netns.js";

export type Encap = "vxlan" | "ipip" | "direct" | "auto";

export interface WorkerSpec {
  n: number;
  underlay: string;
  subnet: "A" | "B";
}

export const WORKERS: WorkerSpec[] = [
  { n: 1, underlay: "198.18.0.11", subnet: "A" },
  { n: 2, underlay: "198.18.0.12", subnet: "A" },
  { n: 3, underlay: "198.18.1.13", subnet: "B" },
];

export const podIp = (n: number) => `198.19.${n}.10`;
/** Dual-stack clusters: worker N's IPv6 pods are 2001:2:0:N::/64 (inside
 *  2001:2::/48, RFC 5180's IPv6 benchmarking range, as 198.18.0.0/15 is for
 *  IPv4), its pod 2001:2:0:N::10, the worker's side of the pod link ::1. */
export const podCidr6 = (n: number) => `2001:2:0:${n}::/64`;
export const podIp6 = (n: number) => `2001:2:0:${n}::10`;

/** The "outside" host of Hand CNI-3: a server that knows the underlay but not the pods. */
export const OUTSIDE = { address: "198.18.2.100", gateway: "198.18.2.1", subnet: "198.18.2.0/24" } as const;

/** The IPv6 "outside" host (addOutside6): behind the leaf, routes to the IPv6 underlay only. */
export const OUTSIDE6 = { address: "2001:2:ff:2::100", gateway: "2001:2:ff:2::1" } as const;
/** Worker n's IPv6 underlay address (addOutside6): subnet A 2001:2:ff::/64, B 2001:2:ff:1::/64. */
export const underlay6 = (w: WorkerSpec) => (w.subnet === "A" ? `2001:2:ff::1${w.n}` : `2001:2:ff:1::1${w.n}`);
const leafGateway6 = (w: WorkerSpec) => (w.subnet === "A" ? "2001:2:ff::1" : "2001:2:ff:1::1");

/** The leaf's address on a worker's underlay subnet (its gateway to everything else). */
export const leafGateway = (w: WorkerSpec) => (w.subnet === "A" ? "198.18.0.1" : "198.18.1.1");
export const vtepMac = (n: number) => `0e:00:00:00:0${n}:00`;

// A one-connection TCP sink: hashes what it receives and reports it with the
// peer it saw (the address the client appeared as: a node's address when the
// client was masqueraded).
const TCP_SERVER_PEER = `
import socket, hashlib, json, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("listening", flush=True)
s.settimeout(30); c, peer = s.accept(); c.settimeout(30)
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(json.dumps({"received": n, "sha": h.hexdigest(), "peer": [peer[0], peer[1]], "local": list(c.getsockname())}), flush=True)
`;

// Sends `total` pseudo-random bytes (at `rate` MB/s, 0 = unlimited), hashes
// them, and reports them with its own address (before any NAT).
const TCP_CLIENT_LOCAL = `
import socket, hashlib, json, sys, time, random
host, port, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rnd = random.Random(42); h = hashlib.sha256(); sent = 0
s = socket.create_connection((host, port), timeout=30)
local = list(s.getsockname())
t0 = time.time()
while sent < total:
    chunk = rnd.randbytes(min(65536, total - sent))
    s.sendall(chunk); h.update(chunk); sent += len(chunk)
    if rate > 0:
        ahead = sent / (rate * 1e6) - (time.time() - t0)
        if ahead > 0: time.sleep(ahead)
s.shutdown(socket.SHUT_WR)
s.recv(1)
s.close()
print(json.dumps({"sent": sent, "sha": h.hexdigest(), "local": local}), flush=True)
`;

// UDP echo: one JSON line per datagram with the sender it saw, then echoes it back.
const UDP_ECHO = `
import socket, json, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2]))); print("listening", flush=True)
while True:
    d, a = s.recvfrom(65535)
    print(json.dumps({"from": a[0], "port": a[1], "len": len(d)}), flush=True)
    s.sendto(d, a)
`;

// One UDP request on a connected socket: only a reply from exactly host:port counts.
const UDP_REQUEST = `
import socket, json, sys
host, port, payload, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
s.connect((host, port)); s.send(payload.encode())
try:
    d = s.recv(65535); print(json.dumps({"ok": True, "reply": d.decode(errors="replace"), "local": list(s.getsockname())}))
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__, "local": list(s.getsockname())}))
`;

/** What tcpTransferNs counted at each end, and who each end saw. */
export interface TcpTransferResult {
  sent: number;
  received: number;
  sentSha: string;
  receivedSha: string;
  seconds: number;
  /** The client's own address and port (before any NAT). */
  client: { address: string; port: number };
  /** The peer the server accepted: the client as it appeared after NAT. */
  serverSawPeer: { address: string; port: number };
  /** The address and port the server's socket was reached on (after any DNAT). */
  serverLocal: { address: string; port: number };
}

/** A UDP echo server started by udpEchoServer. */
export interface UdpEcho {
  /** Every datagram's sender as the server saw it, so far. */
  seen(): { from: string; port: number; len: number }[];
  stop(): void;
}

export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** How the cluster's pods are attached: by the CNI plugin, by hand-built veths, or not at all. */
export type PodAttachment = "cni" | "manual" | "none";

export class Cluster {
  readonly prefix: string;
  readonly dir: string;
  readonly pods: PodAttachment;
  /** Dual-stack: IPv6 pods (podIp6) and node.ipv6 in every config. */
  readonly ipv6: boolean;
  protected readonly nets: Namespaces;
  private procs: ChildProcess[] = [];
  private attached = new Set<number>();
  /** addOutside6 ran: configs carry node.ipv6.underlayAddress. */
  private underlayIpv6 = false;
  /** Configs written afterwards reach every peer over the IPv6 underlay
   *  (peers[].underlay6 = its underlay6 address). Needs addOutside6. */
  peersOverIpv6 = false;
  readonly logs = new Map<string, string[]>();

  constructor(prefix = `wo${Math.random().toString(36).slice(2, 6)}`, opts: { pods?: PodAttachment; ipv6?: boolean } = {}) {
    this.prefix = prefix;
    this.pods = opts.pods ?? "manual";
    this.ipv6 = opts.ipv6 ?? false;
    this.nets = new Namespaces(prefix);
    this.dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  }

  /** Worker n's node.stateDir (overlayd writes node.json for the CNI plugin there). */
  stateDir(n: number): string {
    return join(this.dir, `state-w${n}`);
  }

  /** The network config worker n's runtime would give the plugin (one of the conflist's plugins). */
  cniConfig(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      cniVersion: "1.0.0",
      name: "wasm-overlay",
      type: "wasm-overlay",
      nodeState: join(this.stateDir(n), "node.json"),
      ipam: { dataDir: join(this.dir, `cni-w${n}`) },
      ...extra,
    };
  }

  /**
   * Attach pod n (namespace pod<n>) as a runtime would: run the CNI plugin
   * `cniMain` (dist/src/cni/main.js) with CNI_COMMAND=ADD in worker n's
   * namespace, asking for podIp(n) through the `ips` capability. Needs
   * worker n's overlayd up (the plugin reads its node.json). Returns the result.
   */
  attachPod(n: number, cniMain: string): Record<string, unknown> {
    const out = this.runCni(n, cniMain, "ADD", `pod${n}`, this.cniConfig(n, { runtimeConfig: { ips: [podIp(n)] } }));
    this.attached.add(n);
    return JSON.parse(out);
  }

  /** Run the plugin for `verb` on the sandbox namespace `podNs` (short name), as container `pod<n>`. */
  runCni(n: number, cniMain: string, verb: string, podNs: string, conf: Record<string, unknown>): string {
    try {
      return execFileSync("ip", ["netns", "exec", this.ns(`w${n}`), process.execPath, cniMain], {
        encoding: "utf8",
        input: JSON.stringify(conf),
        env: { ...process.env, CNI_COMMAND: verb, CNI_CONTAINERID: `${this.prefix}-${podNs}`, CNI_NETNS: `/run/netns/${this.ns(podNs)}`, CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni" },
      });
    } catch (e) {
      const x = e as { stdout?: string; message: string };
      throw new Error(`CNI ${verb} of ${podNs} on worker${n}: ${x.stdout?.trim() || x.message}`);
    }
  }

  ns(name: string): string {
    return this.nets.ns(name);
  }

  /** Run a command in a namespace. In a worker's, OVERLAYD_ADMIN names its
   *  daemon's admin socket, so `overlayd show ...` there reaches that daemon. */
  exec(ns: string, args: string[], input?: string): string {
    const w = /^w(\d+)$/.exec(ns);
    if (w) args = ["env", `OVERLAYD_ADMIN=${this.adminSocket(Number(w[1]))}`, ...args];
    return this.nets.exec(ns, args, input);
  }

  /** Build namespaces, links, addresses and underlay routes. `underlayMtu`:
   *  the MTU of every underlay link (the workers' eth0 and the leaf's ports;
   *  default the veths' 1500). */
  build(opts: { underlayMtu?: number } = {}): void {
    this.nets.add("leaf");
    this.exec("leaf", ["ip", "link", "add", "brA", "type", "bridge"]);
    this.exec("leaf", ["ip", "link", "set", "brA", "up"]);
    this.exec("leaf", ["ip", "addr", "add", "198.18.0.1/24", "dev", "brA"]);
    this.exec("leaf", ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (const w of WORKERS) {
      const wn = `w${w.n}`;
      this.nets.add(wn);
      if (w.subnet === "A") {
        this.nets.veth(wn, "eth0", "leaf", `p${w.n}`);
        this.exec("leaf", ["ip", "link", "set", `p${w.n}`, "master", "brA"]);
        this.exec(wn, ["ip", "addr", "add", `${w.underlay}/24`, "dev", "eth0"]);
        this.exec(wn, ["ip", "route", "add", "198.18.1.0/24", "via", "198.18.0.1"]);
      } else {
        this.nets.veth(wn, "eth0", "leaf", "pB");
        this.exec("leaf", ["ip", "addr", "add", "198.18.1.1/24", "dev", "pB"]);
        this.exec(wn, ["ip", "addr", "add", `${w.underlay}/24`, "dev", "eth0"]);
        this.exec(wn, ["ip", "route", "add", "198.18.0.0/24", "via", "198.18.1.1"]);
      }
      if (opts.underlayMtu) {
        const port = w.subnet === "A" ? `p${w.n}` : "pB";
        this.exec(wn, ["ip", "link", "set", "eth0", "mtu", String(opts.underlayMtu)]);
        this.exec("leaf", ["ip", "link", "set", port, "mtu", String(opts.underlayMtu)]);
      }
      this.exec(wn, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      // Strict reverse-path filtering, as on many hardened nodes: the overlay
      // must work without turning it off globally.
      this.exec(wn, ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1"]);
      if (this.pods === "none") continue;
      const pod = `pod${w.n}`;
      this.nets.add(pod);
      // With the plugin, startDaemon() attaches the pod once overlayd is up.
      if (this.pods === "cni") continue;
      // By hand: routed (Hand CNI-2 option 1), gateway on the worker side.
      this.nets.veth(pod, "eth0", wn, "veth-pod");
      // A /32 with an on-link gateway, as routed CNIs (Calico) give pods:
      // every other address, this node's pod CIDR included, is reached
      // through the node (so the node's service-SNAT address works for
      // hairpin flows instead of being ARPed for on the pod's link).
      this.exec(pod, ["ip", "addr", "add", `${podIp(w.n)}/32`, "dev", "eth0"]);
      this.exec(pod, ["ip", "route", "add", `198.19.${w.n}.1`, "dev", "eth0", "scope", "link"]);
      this.exec(pod, ["ip", "route", "add", "default", "via", `198.19.${w.n}.1`, "dev", "eth0"]);
      this.exec(wn, ["ip", "addr", "add", `198.19.${w.n}.1/24`, "dev", "veth-pod"]);
      if (this.ipv6) this.addPod6(w.n);
    }
  }

  /** Pod n's IPv6: podIp6(n)/128 with the worker's ::1 as on-link gateway
   *  (as for IPv4); no duplicate address detection, so it is usable at once. */
  private addPod6(n: number): void {
    const pod = `pod${n}`;
    const gw = `2001:2:0:${n}::1`;
    this.exec(pod, ["ip", "addr", "add", `${podIp6(n)}/128`, "dev", "eth0", "nodad"]);
    this.exec(pod, ["ip", "-6", "route", "add", gw, "dev", "eth0"]);
    this.exec(pod, ["ip", "-6", "route", "add", "default", "via", gw, "dev", "eth0"]);
    this.exec(`w${n}`, ["ip", "addr", "add", `${gw}/64`, "dev", "veth-pod", "nodad"]);
  }

  /** A config for worker `n`; `encap(peer)` picks each peer's encapsulation. */
  config(n: number, encap: (peer: number) => Encap = () => "auto", extra: Record<string, unknown> = {}): string {
    const me = WORKERS.find((w) => w.n === n)!;
    const cfg = {
      node: {
        name: `worker${n}`,
        underlay: { address: me.underlay, prefixLength: 24, device: "eth0" },
        podCIDR: `198.19.${n}.0/24`,
        device: { name: "wo0", mode: "tun" },
        stateDir: this.stateDir(n),
      },
      tunnel: { vni: 100 },
      peers: WORKERS.filter((w) => w.n !== n).map((w) => ({
        name: `worker${w.n}`,
        underlay: w.underlay,
        podCIDRs: [`198.19.${w.n}.0/24`],
        vtepMac: vtepMac(w.n),
        encapsulation: encap(w.n),
        ...(this.ipv6 ? { ipv6: { podCIDRs: [podCidr6(w.n)] } } : {}),
        ...(this.peersOverIpv6 ? { underlay6: underlay6(w) } : {}),
      })),
      // The admin API on its socket in stateDir (adminSocket()); metrics on 127.0.0.1:9469.
      ...extra,
    };
    (cfg.node.device as Record<string, unknown>).vtepMac = vtepMac(n);
    if (this.ipv6) (cfg.node as Record<string, unknown>).ipv6 = { podCIDR: podCidr6(n), ...(this.underlayIpv6 ? { underlayAddress: underlay6(me) } : {}) };
    return stringify(cfg);
  }

  writeConfig(n: number, text: string): string {
    const file = join(this.dir, `worker${n}.yaml`);
    writeFileSync(file, text);
    return file;
  }

  /** Start overlayd in worker n's namespace; resolves when its admin API answers. */
  async startDaemon(n: number, configFile: string, cli: string): Promise<ChildProcess> {
    const child = spawn("ip", ["netns", "exec", this.ns(`w${n}`), process.execPath, cli, "run", "--config", configFile], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.procs.push(child);
    const log: string[] = [];
    this.logs.set(`w${n}`, log);
    child.stdout!.on("data", (d) => log.push(String(d)));
    child.stderr!.on("data", (d) => log.push(String(d)));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`overlayd on worker${n} exited ${child.exitCode}: ${log.join("")}`);
      try {
        const out = this.exec(`w${n}`, ["ip", "-o", "link", "show", "wo0"]);
        if (out.includes("UP") && this.adminOk(n)) {
          if (this.pods === "cni" && !this.attached.has(n)) this.attachPod(n, join(dirname(cli), "..", "cni", "main.js"));
          return child;
        }
      } catch {
        // not yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`overlayd on worker${n} did not come up: ${log.join("")}`);
  }

  /** Worker n's admin API socket (the default, in its node.stateDir). */
  adminSocket(n: number): string {
    return join(this.dir, `state-w${n}`, "admin.sock");
  }

  private adminOk(n: number): boolean {
    try {
      // The admin socket; a daemon configured with a TCP admin API answers on the metrics listener.
      const sock = ["curl", "-sf", "-o", "/dev/null", "--max-time", "2", "--unix-socket", this.adminSocket(n), "http://overlayd/status"];
      const metrics = ["curl", "-sf", "-o", "/dev/null", "--max-time", "2", "http://127.0.0.1:9469/healthz"];
      this.exec(`w${n}`, ["sh", "-c", `${sock.join(" ")} || ${metrics.join(" ")}`]);
      return true;
    } catch {
      return false;
    }
  }

  /** Stop a daemon we started (SIGTERM, then SIGKILL after 5 s). */
  async stopDaemon(child: ChildProcess): Promise<number | null> {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const done = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    const code = await done;
    clearTimeout(t);
    return code;
  }

  ping(fromPod: number, to: string, count = 3): { ok: boolean; out: string } {
    try {
      const out = this.exec(`pod${fromPod}`, ["ping", "-c", String(count), "-i", "0.2", "-W", "2", to]);
      return { ok: true, out };
    } catch (e) {
      return { ok: false, out: String((e as { stdout?: string }).stdout ?? e) };
    }
  }

  /** Every ordered pair of pods that a ping does not cross, as "IPv4 1 -> 2"
   *  (IPv6 too on a dual-stack cluster): [] when all of them answer. */
  unreachablePairs(): string[] {
    const failed: string[] = [];
    for (const a of WORKERS) {
      for (const b of WORKERS) {
        if (a === b) continue;
        if (!this.ping(a.n, podIp(b.n), 2).ok) failed.push(`IPv4 ${a.n} -> ${b.n}`);
        if (this.ipv6 && !this.ping(a.n, podIp6(b.n), 2).ok) failed.push(`IPv6 ${a.n} -> ${b.n}`);
      }
    }
    return failed;
  }

  /** Start a background process in a namespace, tracked for cleanup. */
  spawnIn(ns: string, args: string[]): ChildProcess {
    const child = spawn("ip", ["netns", "exec", this.ns(ns), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    this.procs.push(child);
    return child;
  }

  /** `streams` parallel TCP flows (iperf3) from pod `from` to pod `to` for
   *  `seconds`: bytes received, the sender's retransmits, and the segments
   *  its stack saw DSACKed (a flow moved between workers mid-stream arrives
   *  reordered, and then thousands are). */
  async parallelFlows(from: number, to: number, streams = 8, seconds = 2): Promise<{ bytes: number; retransmits: number; dsacks: number }> {
    const srv = this.spawnIn(`pod${to}`, ["iperf3", "-s", "-1"]);
    await new Promise((r) => setTimeout(r, 500));
    const j = JSON.parse(this.exec(`pod${from}`, ["iperf3", "-c", podIp(to), "-t", String(seconds), "-P", String(streams), "-J"]));
    const dsacks = Number(/TcpExtTCPDSACKRecvSegs\s+(\d+)/.exec(this.exec(`pod${from}`, ["nstat", "-asz", "TcpExtTCPDSACKRecvSegs"]))![1]);
    if (srv.exitCode === null) await new Promise((r) => srv.once("exit", r));
    return { bytes: j.end.sum_received.bytes, retransmits: j.end.sum_sent.retransmits, dsacks };
  }

  /** TCP transfer of `bytes` pseudo-random bytes from pod `from` to pod `to`
   *  (port 5001), `rateMBps` limiting the sender (0 = unlimited). Resolves
   *  with what each end counted and hashed. */
  async tcpTransfer(from: number, to: number, bytes: number, rateMBps = 0, port = 5001): Promise<{ sent: number; received: number; sentSha: string; receivedSha: string; seconds: number }> {
    const r = await this.tcpTransferNs(`pod${from}`, `pod${to}`, podIp(to), podIp(to), port, bytes, rateMBps);
    return { sent: r.sent, sentSha: r.sentSha, received: r.received, receivedSha: r.receivedSha, seconds: r.seconds };
  }

  /**
   * Add the "outside" host (Hand CNI-3) after build(): namespace `outside`
   * (198.18.2.100/24) on a new leaf port (198.18.2.1/24). It gets routes to the
   * underlay subnets 198.18.0.0/24 and 198.18.1.0/24 only, never to the pod
   * CIDRs, so a pod reaches it only when masqueraded to its node's address.
   *
   * Each worker reaches it through its leaf gateway. `workerRoute: "default"`
   * (the default) installs that as the worker's default route, as a real node
   * reaches the internet; `"subnet"` installs only 198.18.2.0/24. The
   * difference matters for masquerade by policy routing (src/daemon/natsetup.ts):
   * its `suppress_prefixlength 0` rule only diverts pod traffic whose main-table
   * match is the default route, so with `"subnet"` pod -> outside is forwarded by
   * the kernel untranslated (and the outside cannot answer).
   */
  addOutside(opts: { workerRoute?: "default" | "subnet" } = {}): void {
    this.nets.add("outside");
    this.nets.veth("outside", "eth0", "leaf", "pO");
    this.exec("leaf", ["ip", "addr", "add", `${OUTSIDE.gateway}/24`, "dev", "pO"]);
    this.exec("outside", ["ip", "addr", "add", `${OUTSIDE.address}/24`, "dev", "eth0"]);
    for (const net of ["198.18.0.0/24", "198.18.1.0/24"]) this.exec("outside", ["ip", "route", "add", net, "via", OUTSIDE.gateway]);
    for (const w of WORKERS) {
      const to = (opts.workerRoute ?? "default") === "default" ? "default" : OUTSIDE.subnet;
      this.exec(`w${w.n}`, ["ip", "route", "add", to, "via", leafGateway(w), "dev", "eth0"]);
    }
  }

  /**
   * IPv6 on the underlay too (for NAT66): each worker's eth0 gets underlay6(n)
   * and a default route through the leaf, and the IPv6 "outside" host
   * (OUTSIDE6) sits behind the leaf with routes to the underlay subnets only,
   * never to pods. Configs written afterwards carry node.ipv6.underlayAddress.
   * After build() and addOutside().
   */
  addOutside6(): void {
    this.exec("leaf", ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    this.exec("leaf", ["ip", "addr", "add", "2001:2:ff::1/64", "dev", "brA", "nodad"]);
    this.exec("leaf", ["ip", "addr", "add", "2001:2:ff:1::1/64", "dev", "pB", "nodad"]);
    this.exec("leaf", ["ip", "addr", "add", `${OUTSIDE6.gateway}/64`, "dev", "pO", "nodad"]);
    this.exec("outside", ["ip", "addr", "add", `${OUTSIDE6.address}/64`, "dev", "eth0", "nodad"]);
    for (const net of ["2001:2:ff::/64", "2001:2:ff:1::/64"]) this.exec("outside", ["ip", "-6", "route", "add", net, "via", OUTSIDE6.gateway]);
    for (const w of WORKERS) {
      this.exec(`w${w.n}`, ["ip", "addr", "add", `${underlay6(w)}/64`, "dev", "eth0", "nodad"]);
      this.exec(`w${w.n}`, ["ip", "-6", "route", "add", "default", "via", leafGateway6(w), "dev", "eth0"]);
    }
    this.underlayIpv6 = true;
  }

  /**
   * TCP transfer of `bytes` pseudo-random bytes between any two namespaces of
   * the cluster (short names: "pod1", "w2", "outside"): a server in `serverNs`
   * bound to `bindAddr` ("0.0.0.0" for any), a client in `fromNs` connecting to
   * `connectAddr` (a ClusterIP, a NodePort address, a pod, the outside host).
   * `rateMBps` limits the sender (0 = unlimited). Resolves with what each end
   * counted and hashed, the client's own address and the peer the server saw.
   */
  async tcpTransferNs(fromNs: string, serverNs: string, bindAddr: string, connectAddr: string, port: number, bytes: number, rateMBps = 0, connectPort = port): Promise<TcpTransferResult> {
    const server = this.spawnIn(serverNs, ["python3", "-c", TCP_SERVER_PEER, bindAddr, String(port)]);
    let out = "";
    let serr = "";
    server.stdout!.on("data", (d) => (out += String(d)));
    server.stderr!.on("data", (d) => (serr += String(d)));
    const serverDone = new Promise<void>((r) => server.once("exit", () => r()));
    await waitFor(() => out.includes("listening") || server.exitCode !== null, 5000, `tcp server in ${serverNs} did not start`);
    if (!out.includes("listening")) throw new Error(`tcp server in ${serverNs} failed: ${serr}`);
    const t0 = Date.now();
    const client = this.spawnIn(fromNs, ["python3", "-c", TCP_CLIENT_LOCAL, connectAddr, String(connectPort), String(bytes), String(rateMBps)]);
    let cout = "";
    let cerr = "";
    client.stdout!.on("data", (d) => (cout += String(d)));
    client.stderr!.on("data", (d) => (cerr += String(d)));
    const code = await new Promise<number | null>((r) => client.once("exit", (c) => r(c)));
    await Promise.race([serverDone, new Promise((r) => setTimeout(r, 10_000))]);
    if (server.exitCode === null) server.kill("SIGKILL");
    if (code !== 0) throw new Error(`tcp client in ${fromNs} -> ${connectAddr}:${port} failed (${code}): ${cerr}`);
    const c = JSON.parse(cout.trim().split("\n").pop()!);
    const sline = out.trim().split("\n").pop()!;
    const s = sline.startsWith("{") ? JSON.parse(sline) : { received: -1, sha: "", peer: ["", 0], local: ["", 0] };
    return {
      sent: c.sent,
      sentSha: c.sha,
      received: s.received,
      receivedSha: s.sha,
      seconds: (Date.now() - t0) / 1000,
      client: { address: c.local[0], port: c.local[1] },
      serverSawPeer: { address: s.peer[0], port: s.peer[1] },
      serverLocal: { address: s.local[0], port: s.local[1] },
    };
  }

  /** A UDP echo server in `ns` on bindAddr:port that records each sender it sees; stop() ends it. */
  async udpEchoServer(ns: string, bindAddr: string, port: number): Promise<UdpEcho> {
    const child = this.spawnIn(ns, ["python3", "-u", "-c", UDP_ECHO, bindAddr, String(port)]);
    let out = "";
    let err = "";
    child.stdout!.on("data", (d) => (out += String(d)));
    child.stderr!.on("data", (d) => (err += String(d)));
    await waitFor(() => out.includes("listening") || child.exitCode !== null, 5000, `udp echo in ${ns} did not start`);
    if (!out.includes("listening")) throw new Error(`udp echo in ${ns} failed: ${err}`);
    return {
      seen: () => out.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)),
      stop: () => {
        if (child.exitCode === null) child.kill("SIGKILL");
      },
    };
  }

  /** One UDP request from `fromNs` to addr:port on a connected socket; ok only if the reply came from exactly addr:port. */
  udpRequest(fromNs: string, addr: string, port: number, payload = "ping", timeoutS = 2): { ok: boolean; reply?: string; error?: string; local: [string, number] } {
    const out = this.exec(fromNs, ["python3", "-c", UDP_REQUEST, addr, String(port), payload, String(timeoutS)]);
    return JSON.parse(out.trim().split("\n").pop()!);
  }

  /** ping from any namespace of the cluster (ping() is from a pod). */
  pingFrom(ns: string, to: string, count = 3): { ok: boolean; out: string } {
    try {
      return { ok: true, out: this.exec(ns, ["ping", "-n", "-c", String(count), "-i", "0.2", "-W", "2", to]) };
    } catch (e) {
      return { ok: false, out: String((e as { stdout?: string }).stdout ?? e) };
    }
  }

  /** Capture on `dev` in namespace `ns` while `during` runs; returns the pcap path. */
  async capture(ns: string, dev: string, filter: string, during: () => Promise<void> | void): Promise<string> {
    const file = join(this.dir, `${ns}-${dev}-${Date.now()}.pcap`);
    const td = this.spawnIn(ns, ["tcpdump", "--immediate-mode", "-Z", "root", "-U", "-n", "-i", dev, "-w", file, ...filter.split(" ").filter(Boolean)]);
    let err = "";
    td.stderr!.on("data", (d) => (err += String(d)));
    await waitFor(() => err.includes("listening on"), 5000, "tcpdump did not start");
    try {
      await during();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      const done = new Promise((r) => td.once("exit", r));
      td.kill("SIGINT");
      await done;
    }
    return file;
  }

  async destroy(): Promise<void> {
    for (const p of this.procs) await this.stopDaemon(p).catch(() => undefined);
    this.procs = [];
    this.nets.deleteAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
