// Network namespaces for tests: each test file builds its own small network
// (namespaces = hosts, veth pairs = wires) under a unique name prefix, and
// tears all of it down in afterAll, even after a failure half-way through.
//
// Rules enforced here (see /work/shared/TESTING.md): addresses and routes only
// inside 198.18.0.0/15; namespaces named `wo-<tag>-<random4>-<name>` so
// parallel runs never collide; cleanup kills only processes this topology
// started (tracked PIDs, plus whatever still runs inside its own namespaces)
// and deletes only namespaces it created.
import { execFileSync, spawn as spawnProcess, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";

/** null when this process can build namespaces; otherwise why not (for it.skipIf / describe.skipIf). */
export function skipUnlessRoot(): string | null {
  if (process.platform !== "linux") return "network tests need Linux";
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return "network tests need root (namespaces, veth, tun, raw sockets)";
  if (!existsSync("/dev/net/tun")) return "network tests need /dev/net/tun";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "network tests need iproute2 (`ip`)";
  }
  return null;
}

/** Same as skipUnlessRoot, under the name other helpers use. */
export const requireRoot = skipUnlessRoot;

/** A fresh Topology under `wo-<tag>-<random>-`; call cleanup() in afterAll. */
export function createTopology(tag: string): Topology {
  return new Topology(tag);
}

/** Throws unless every address in `cidrOrAddr` lies in 198.18.0.0/15. */
export function assertTestAddress(cidrOrAddr: string): void {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidrOrAddr);
  if (!m) throw new Error(`not an IPv4 address or prefix: ${cidrOrAddr}`);
  const len = m[5] === undefined ? 32 : Number(m[5]);
  if (m[1] !== "198" || (m[2] !== "18" && m[2] !== "19") || len < 15) {
    throw new Error(`${cidrOrAddr} is outside 198.18.0.0/15, the only range tests may use`);
  }
}

function run(argv: string[], timeoutMs = 10_000): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${argv.join(" ")} failed: ${(err.stderr ?? "").trim() || err.message}`);
  }
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Everything the child wrote so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line for which `match` is true (rejects on exit or timeout). */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the child exits. */
  exited: Promise<number | string>;
}

export class Namespace {
  constructor(readonly name: string, private readonly topo: Topology) {}

  /** Run argv inside the namespace; returns stdout, throws with stderr on failure. */
  exec(argv: string[], timeoutMs?: number): string {
    return run(["ip", "netns", "exec", this.name, ...argv], timeoutMs);
  }

  /** Start argv inside the namespace; the PID is tracked and killed by cleanup(). */
  spawn(argv: string[], opts: SpawnOptions = {}): Child {
    return this.topo.track(spawnProcess("ip", ["netns", "exec", this.name, ...argv], { stdio: ["pipe", "pipe", "pipe"], ...opts }));
  }

  /** `ip addr add CIDR dev DEV` (198.18.0.0/15 only). */
  addr(dev: string, cidr: string): void {
    assertTestAddress(cidr);
    this.exec(["ip", "addr", "add", cidr, "dev", dev]);
  }

  up(dev: string): void {
    this.exec(["ip", "link", "set", "dev", dev, "up"]);
  }

  /** A route inside this namespace: `to` and `via` both in 198.18.0.0/15. */
  route(to: string, opts: { dev?: string; via?: string }): void {
    assertTestAddress(to);
    const argv = ["ip", "route", "replace", to];
    if (opts.via) {
      assertTestAddress(opts.via);
      argv.push("via", opts.via);
    }
    if (opts.dev) argv.push("dev", opts.dev);
    this.exec(argv);
  }

  sysctl(key: string, value: string | number): void {
    this.exec(["sysctl", "-qw", `${key}=${value}`]);
  }
}

/**
 * A set of namespaces and the processes running in them, all named under one
 * prefix. Create one per test file (beforeAll), call cleanup() in afterAll.
 */
export class Topology {
  readonly prefix: string;
  private readonly namespaces: Namespace[] = [];
  private readonly children = new Set<Child>();
  private readonly onExit = () => this.cleanupSync();

  /** `tag`: a few letters naming the test file, e.g. "io". */
  constructor(tag: string) {
    if (!/^[a-z0-9]{1,8}$/.test(tag)) throw new Error(`tag "${tag}" must be 1-8 lowercase letters/digits`);
    this.prefix = `wo-${tag}-${randomBytes(2).toString("hex")}-`;
    process.once("exit", this.onExit);
  }

  /** Create namespace prefix+name with loopback up. */
  ns(name: string): Namespace {
    const full = this.prefix + name;
    run(["ip", "netns", "add", full]);
    const ns = new Namespace(full, this);
    this.namespaces.push(ns);
    ns.exec(["ip", "link", "set", "dev", "lo", "up"]);
    return ns;
  }

  /**
   * A veth pair: `aIf` in namespace a, `bIf` in namespace b (created directly
   * there, so the names never touch the root namespace), both up, with
   * optional addresses.
   */
  veth(a: Namespace, aIf: string, b: Namespace, bIf: string, opts: { aAddr?: string; bAddr?: string; mtu?: number } = {}): void {
    const argv = ["ip", "link", "add", "name", aIf, "netns", a.name];
    if (opts.mtu) argv.push("mtu", String(opts.mtu));
    argv.push("type", "veth", "peer", "name", bIf, "netns", b.name);
    if (opts.mtu) argv.push("mtu", String(opts.mtu));
    run(argv);
    if (opts.aAddr) a.addr(aIf, opts.aAddr);
    if (opts.bAddr) b.addr(bIf, opts.bAddr);
    a.up(aIf);
    b.up(bIf);
  }

  /** @internal Namespace.spawn registers its children here. */
  track(proc: ChildProcess): Child {
    let out = "", err = "";
    const waiters = new Set<() => void>();
    proc.stdout?.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      for (const w of waiters) w();
    });
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const exited = new Promise<number | string>((resolve) => {
      proc.once("exit", (code, signal) => {
        for (const w of waiters) w();
        resolve(code ?? signal ?? "unknown");
      });
      proc.once("error", (e) => resolve(`spawn error: ${e.message}`));
    });
    const child: Child = {
      proc,
      pid: proc.pid ?? -1,
      stdout: () => out,
      stderr: () => err,
      exited,
      waitForLine: (match, timeoutMs = 10_000) =>
        new Promise<string>((resolve, reject) => {
          const check = () => {
            const line = out.split("\n").slice(0, -1).find((l) => match(l)); // complete lines only
            if (line !== undefined) return done(() => resolve(line));
            if (proc.exitCode !== null || proc.signalCode !== null) {
              done(() => reject(new Error(`child ${child.pid} exited before the line came; stdout: ${out} stderr: ${err}`)));
            }
          };
          const timer = setTimeout(() => done(() => reject(new Error(`timeout waiting for a line; stdout: ${out} stderr: ${err}`))), timeoutMs);
          const done = (f: () => void) => {
            clearTimeout(timer);
            waiters.delete(check);
            f();
          };
          waiters.add(check);
          check();
        }),
    };
    this.children.add(child);
    exited.then(() => this.children.delete(child));
    return child;
  }

  /**
   * Kill every process this topology started, and any left inside its
   * namespaces (they can only be ours), then delete its namespaces. Safe to
   * call twice and after a half-built topology.
   */
  async cleanup(): Promise<void> {
    for (const c of this.children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill("SIGTERM");
    await Promise.race([Promise.all([...this.children].map((c) => c.exited)), new Promise((r) => setTimeout(r, 1000))]);
    this.cleanupSync();
  }

  private cleanupSync(): void {
    for (const c of this.children) {
      try {
        if (c.pid > 0 && c.proc.exitCode === null && c.proc.signalCode === null) process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const ns of this.namespaces.splice(0)) {
      try {
        const pids = execFileSync("ip", ["netns", "pids", ns.name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
        for (const p of pids.split(/\s+/).filter(Boolean)) {
          try {
            process.kill(Number(p), "SIGKILL");
          } catch {
            // already gone
          }
        }
      } catch {
        // namespace already gone
      }
      try {
        execFileSync("ip", ["netns", "del", ns.name], { stdio: "ignore" });
      } catch {
        // already gone
      }
    }
    process.removeListener("exit", this.onExit);
  }
}
