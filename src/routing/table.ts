// Following the kernel routing table a routing daemon (BIRD's `protocol
// kernel`, `kernel table N`) exports its learned routes into.
//
// How changes are seen: `ip monitor route` runs as a child process and is
// used only as a doorbell. Any line naming our table schedules a re-read of
// the whole table with `ip -json route show table N`, parsed by the one
// parser below (parseTableRoutes). The table is also re-read at start, each
// time the monitor (re)starts, and every `resyncSeconds`, so an event the
// monitor missed (a full pipe, a restart in between) is healed by the next
// read. Chosen over an rtnetlink socket through koffi because the monitor is
// a few lines and the parsing stays in iproute2's JSON (no netlink attribute
// decoder of our own to get wrong), and a burst of thousands of route changes
// costs a few table reads rather than one callback each; the price is one
// `ip` process per read, milliseconds for thousands of routes.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Logger } from "pino";
import { formatCidr, tryIpToU32, tryParseCidr } from "../config/net.js";
import type { Kernel } from "../daemon/kernel.js";

/** `ip monitor route`, under util-linux's setpriv where there is one so that it
 *  gets SIGTERM when overlayd dies (kill -9 included) instead of outliving it. */
const MONITOR = [...(existsSync("/usr/bin/setpriv") ? ["/usr/bin/setpriv", "--pdeathsig", "TERM"] : []), "ip", "-4", "monitor", "route"];

/** One learned route: a prefix and the next hop it goes through. */
export interface LearnedRoute {
  prefix: string;
  via: string;
}

interface JsonTableRoute {
  dst?: string;
  type?: string;
  gateway?: string;
  nexthops?: { gateway?: string }[];
}

/**
 * The unicast routes with a gateway in `ip -json route show table N` output
 * (parsed JSON), one per prefix (a multipath route takes its first next hop),
 * sorted by prefix. Device routes (no gateway), blackholes, `default` and
 * anything malformed are left out and counted in `ignored`.
 */
export function parseTableRoutes(entries: unknown): { routes: LearnedRoute[]; ignored: number } {
  const routes = new Map<string, string>();
  let ignored = 0;
  for (const e of Array.isArray(entries) ? (entries as JsonTableRoute[]) : []) {
    if (e === null || typeof e !== "object") {
      ignored++;
      continue;
    }
    const type = e.type ?? "unicast";
    const gw = e.gateway ?? e.nexthops?.find((n) => typeof n?.gateway === "string")?.gateway;
    const dst = typeof e.dst === "string" ? (e.dst.includes("/") ? e.dst : `${e.dst}/32`) : undefined;
    const cidr = type === "unicast" && dst && gw && tryIpToU32(gw).ok ? tryParseCidr(dst) : undefined;
    if (!cidr?.ok) {
      ignored++;
      continue;
    }
    const prefix = formatCidr(cidr.value);
    if (!routes.has(prefix)) routes.set(prefix, gw!);
  }
  const sorted = [...routes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([prefix, via]) => ({ prefix, via }));
  return { routes: sorted, ignored };
}

/** What changed between two route sets (by prefix; a moved next hop is a delete and an add). */
export function diffRoutes(before: readonly LearnedRoute[], after: readonly LearnedRoute[]): { added: number; deleted: number } {
  const b = new Map(before.map((r) => [r.prefix, r.via]));
  const a = new Map(after.map((r) => [r.prefix, r.via]));
  let added = 0;
  let deleted = 0;
  for (const [p, v] of a) if (b.get(p) !== v) added++;
  for (const [p, v] of b) if (a.get(p) !== v) deleted++;
  return { added, deleted };
}

export interface KernelTableOptions {
  table: number;
  kernel: Kernel;
  log: Logger;
  resyncMs: number;
  /** Called with the whole table after a read that changed it (and after the first read); `readMs`: how long the read took. */
  onRoutes: (routes: LearnedRoute[], why: string, readMs: number) => void;
  /** Counted events: resync, monitor_restart, read_error. */
  onEvent?: (event: "resync" | "monitor_restart" | "read_error") => void;
  /** The table is read once no monitor line came for this long (ms)... */
  quietMs?: number;
  /** ...or once lines have kept coming this long since the first one (ms). */
  maxWaitMs?: number;
}

/** A burst of route changes (BIRD filling the table after a session came up)
 *  is read once it pauses for QUIET_MS, or every MAX_WAIT_MS while it goes
 *  on: reading and reloading while BIRD still writes takes the CPU BIRD needs
 *  to finish, and every intermediate reload is work thrown away. One change
 *  alone (a node down) is read QUIET_MS after it. */
export const QUIET_MS = 40;
export const MAX_WAIT_MS = 1000;

/** The live view of one kernel routing table (see the file comment). */
export class KernelTable {
  private routes: LearnedRoute[] = [];
  private monitor?: ChildProcess;
  private timer?: NodeJS.Timeout;
  private pending?: NodeJS.Timeout;
  private stopped = false;
  private restartDelay = 100;
  /** The burst being collected: when its first and its latest line came. */
  private burstStart = 0;
  private lastLine = 0;

  constructor(private readonly opts: KernelTableOptions) {}

  get current(): readonly LearnedRoute[] {
    return this.routes;
  }

  /** Read the table once (throws when it cannot be read), then follow it. */
  start(): void {
    this.startMonitor(); // first, so nothing that changes during the first read is missed
    this.read("start", true);
    this.timer = setInterval(() => this.read("periodic resync"), this.opts.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.pending);
    const m = this.monitor;
    this.monitor = undefined;
    if (m && m.exitCode === null && m.signalCode === null) m.kill("SIGTERM");
  }

  /** Re-read the table now; `onRoutes` when it changed (or `always`). */
  read(why: string, always = false): void {
    let parsed;
    const t0 = Date.now();
    try {
      parsed = parseTableRoutes(this.readTable());
    } catch (e) {
      this.opts.onEvent?.("read_error");
      if (always) throw e;
      this.opts.log.warn({ table: this.opts.table, err: (e as Error).message }, "cannot read the routing table; keeping the last routes");
      return;
    }
    const readMs = Date.now() - t0;
    this.opts.onEvent?.("resync");
    const changed = diffRoutes(this.routes, parsed.routes);
    this.routes = parsed.routes;
    if (always || changed.added || changed.deleted) this.opts.onRoutes(parsed.routes, why, readMs);
  }

  /** The table's routes; a table the kernel has not created yet (nothing was ever put in it) is empty. */
  private readTable(): unknown {
    try {
      return this.opts.kernel.ipJson("-4", "route", "show", "table", String(this.opts.table));
    } catch (e) {
      if (/FIB table does not exist/.test((e as Error).message)) return [];
      throw e;
    }
  }

  /** A monitor line named our table: read once the burst pauses (or has gone on MAX_WAIT_MS). */
  private schedule(why: string): void {
    if (this.stopped) return;
    const now = Date.now();
    this.lastLine = now;
    if (this.pending) return;
    this.burstStart = now;
    const quiet = this.opts.quietMs ?? QUIET_MS;
    const maxWait = this.opts.maxWaitMs ?? MAX_WAIT_MS;
    const check = () => {
      const t = Date.now();
      const wait = Math.min(this.lastLine + quiet, this.burstStart + maxWait) - t;
      if (wait > 0 && !this.stopped) {
        this.pending = setTimeout(check, wait);
        return;
      }
      this.pending = undefined;
      if (!this.stopped) this.read(why);
    };
    this.pending = setTimeout(check, quiet);
  }

  private startMonitor(): void {
    if (this.stopped) return;
    const child = spawn(MONITOR[0], MONITOR.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    this.monitor = child;
    const mine = new RegExp(`\\btable ${this.opts.table}\\b`);
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (l) => {
      if (mine.test(l)) this.schedule("route change");
    });
    child.stderr!.on("data", (d) => this.opts.log.debug({ stderr: String(d).trim() }, "ip monitor"));
    child.on("error", (e) => this.opts.log.warn({ err: e.message }, "ip monitor route failed to start"));
    child.on("exit", (code, signal) => {
      lines.close();
      if (this.stopped || this.monitor !== child) return;
      this.opts.onEvent?.("monitor_restart");
      this.opts.log.warn({ code, signal, retryMs: this.restartDelay }, "ip monitor route ended; restarting it and re-reading the table");
      setTimeout(() => {
        if (this.stopped) return;
        this.startMonitor();
        this.read("monitor restarted");
      }, this.restartDelay).unref();
      this.restartDelay = Math.min(this.restartDelay * 2, 5000);
    });
    // A monitor that stays up a while resets the back-off.
    setTimeout(() => {
      if (this.monitor === child) this.restartDelay = 100;
    }, 10_000).unref();
  }
}
