// The admin surface of overlayd: the admin API (show, reload, conntrack,
// /metrics, /healthz) on a unix socket by default, or on TCP with a bearer
// token; the metrics listener (/metrics and /healthz only, for Prometheus);
// the health of the data-path workers and the watchdog that ends a daemon
// whose worker hung. It reaches the daemon only through AdminTarget.
//
// Who may do what: the unix socket is mode 0600 in a 0700 directory (root
// only); TCP needs `Authorization: Bearer <token>` from admin.tokenFile;
// mutating calls are POST only. The metrics listener can be exposed to a
// scraper: it mutates nothing and reveals no tables.
import { createHash, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { dirname } from "node:path";
import type { MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import { parseListen, u32ToIp } from "../config/net.js";
import type { Config } from "../config/schema.js";
import type { ConntrackStats, FlowRecord } from "../dataplane/dataplane.js";
import { CT_PAGE_MAX, type FromWorker, type ToWorker } from "../daemon/worker.js";
import type { FlowInfo } from "./conntrack.js";
import type { Metrics } from "./metrics.js";

/** One data-path worker as the admin surface sees it. */
export interface AdminLane {
  /** The worker's control port (stats, conntrack pages, test hooks). */
  port: MessagePort;
  /** Element 0 counts the worker's loop turns (worker.ts bumps it each turn). */
  heartbeat: Int32Array;
}

/** What the admin surface needs from the daemon. */
export interface AdminTarget {
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The running workers, in queue order. */
  adminLanes(): AdminLane[];
  status(): unknown;
  showRoutes(): unknown;
  showPeers(): unknown;
  showFdb(): unknown;
  showNeigh(): unknown;
  /** Counters and I/O statistics summed over the workers, and per queue (as of their last report). */
  showStats(): unknown;
  reload(reason: string): Promise<{ ok: boolean; errors: string[] }>;
  /** The node cannot go on (a hung worker): log, clean up, exit non-zero. */
  fatal(reason: string): void;
}

/** /healthz calls a worker stale after this long without a loop turn (or the watchdog limit, if shorter). */
export const HEALTH_STALE_MS = 5000;
/** How often worker heartbeats are sampled. */
const HEALTH_SAMPLE_MS = 250;
/** A conntrack cursor is lane * CURSOR_LANE + flow index (flow indexes stay below 2^23). */
const CURSOR_LANE = 2 ** 24;

/** OVERLAYD_TEST_HOOKS=1 enables POST /debug/hang and /debug/ct-fill (tests and bench/ only). */
export function testHooksEnabled(): boolean {
  return process.env.OVERLAYD_TEST_HOOKS === "1";
}

type Reply = { status: number; body: string; type?: string; headers?: Record<string, string> };

const json = (v: unknown, status = 200, indent = 2): Reply => ({
  status, type: "application/json", body: JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), indent),
});
const text = (status: number, body: string, headers?: Record<string, string>): Reply => ({ status, type: "text/plain", body: body + "\n", headers });

const GET_PATHS = ["/", "/status", "/routes", "/peers", "/fdb", "/neigh", "/stats", "/conntrack", "/metrics", "/healthz"];

export class AdminServer {
  private api?: Server;
  private metricsServer?: Server;
  private token?: Buffer;
  private timer?: NodeJS.Timeout;
  /** Per heartbeat: the count last seen and when it last moved. */
  private seen = new WeakMap<Int32Array, { count: number; at: number }>();
  private fired = false;
  private ctSeq = 0;
  /** Conntrack dump pacing (GCRA): the time (ms) by which the flows read so
   *  far are paid for at admin.conntrackDumpRate; a page waits until at most
   *  one full page of credit is outstanding. */
  private ctPaidUntil = 0;
  private readonly testHooks = testHooksEnabled();

  constructor(private readonly target: AdminTarget, private readonly cfg: Config["admin"]) {}

  /** Where the admin API listens (the resolved admin.listen). */
  get listen(): string {
    return this.cfg.listen;
  }

  /** Read the token, listen on the admin address and the metrics one, start
   *  the health sampler. Throws with a message naming the cause. */
  async start(): Promise<void> {
    const addr = parseListen(this.cfg.listen);
    if (addr.kind === "tcp") this.token = readToken(this.cfg.tokenFile);
    this.api = await listenHttp(this.cfg.listen, (req, res) => void this.serve(req, res, "api"), "admin API");
    if (this.cfg.metrics) this.metricsServer = await listenHttp(this.cfg.metrics, (req, res) => void this.serve(req, res, "metrics"), "metrics");
    this.timer = setInterval(() => this.sample(), HEALTH_SAMPLE_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const srv of [this.api, this.metricsServer]) {
      if (!srv) continue;
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    }
    const addr = parseListen(this.cfg.listen);
    if (this.api && addr.kind === "unix") rmSync(addr.path, { force: true });
    this.api = this.metricsServer = undefined;
  }

  // --- health ------------------------------------------------------------------

  /** Note which workers turned their loop since the last sample; fire the watchdog on one silent too long. */
  private sample(): void {
    const now = Date.now();
    const lanes = this.target.adminLanes();
    lanes.forEach((l, q) => {
      const count = Atomics.load(l.heartbeat, 0);
      const s = this.seen.get(l.heartbeat);
      if (!s || s.count !== count) this.seen.set(l.heartbeat, { count, at: now });
      else if (!this.fired && now - s.at > this.cfg.watchdogSeconds * 1000) {
        this.fired = true;
        const reason = `data-path worker ${q} hung: no loop turn for ${Math.round((now - s.at) / 1000)} s (admin.watchdogSeconds ${this.cfg.watchdogSeconds})`;
        this.target.log.fatal({ queue: q }, reason);
        this.target.fatal(reason);
      }
    });
  }

  /** Each worker's silence (ms since its loop last turned, as sampled). */
  health(): { ok: boolean; workers: { queue: number; silentMs: number; stale: boolean }[] } {
    const now = Date.now();
    const staleMs = Math.min(HEALTH_STALE_MS, this.cfg.watchdogSeconds * 1000);
    const lanes = this.target.adminLanes();
    const workers = lanes.map((l, q) => {
      const s = this.seen.get(l.heartbeat);
      if (s && s.count !== Atomics.load(l.heartbeat, 0)) return { queue: q, silentMs: 0, stale: false };
      const silentMs = s ? now - s.at : 0;
      return { queue: q, silentMs, stale: silentMs > staleMs };
    });
    return { ok: lanes.length > 0 && workers.every((w) => !w.stale), workers };
  }

  // --- requests ------------------------------------------------------------------

  private async serve(req: IncomingMessage, res: ServerResponse, on: "api" | "metrics"): Promise<void> {
    req.resume(); // no call reads a body
    let r: Reply;
    try {
      r = on === "metrics" ? await this.routeMetrics(req) : this.authorized(req) ? await this.routeApi(req) : text(401, "unauthorized: send Authorization: Bearer <the token in admin.tokenFile>", { "www-authenticate": 'Bearer realm="overlayd"' });
    } catch (e) {
      r = text(500, (e as Error).message);
    }
    res.writeHead(r.status, { "content-type": r.type ?? "text/plain", ...r.headers });
    res.end(req.method === "HEAD" ? undefined : r.body);
  }

  /** Unix socket: the file mode decides. TCP: the bearer token, compared in constant time. */
  private authorized(req: IncomingMessage): boolean {
    if (!this.token) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
    if (!m) return false;
    // Equal-length digests: the comparison takes the same time whatever was sent.
    const digest = (b: Buffer | string) => createHash("sha256").update(b).digest();
    return timingSafeEqual(digest(m[1]), digest(this.token));
  }

  private async routeMetrics(req: IncomingMessage): Promise<Reply> {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics" && path !== "/healthz") return text(404, "the metrics listener serves /metrics and /healthz only");
    if (req.method !== "GET" && req.method !== "HEAD") return text(405, "GET only", { allow: "GET, HEAD" });
    return path === "/metrics" ? this.metricsReply() : this.healthReply();
  }

  private async routeApi(req: IncomingMessage): Promise<Reply> {
    const url = new URL(req.url ?? "/", "http://overlayd");
    const path = url.pathname;
    const method = req.method ?? "GET";
    if (path === "/reload" || (this.testHooks && path.startsWith("/debug/"))) {
      if (method !== "POST") return text(405, `${path} changes things: POST only`, { allow: "POST" });
      if (path === "/reload") return json(await this.target.reload("admin API"));
      return this.debug(path, url.searchParams);
    }
    if (!GET_PATHS.includes(path)) return text(404, `unknown path; try ${GET_PATHS.join(" ")}, POST /reload`);
    if (method !== "GET" && method !== "HEAD") return text(405, "GET only", { allow: "GET, HEAD" });
    const t = this.target;
    switch (path) {
      case "/metrics": return this.metricsReply();
      case "/healthz": return this.healthReply();
      case "/stats":
        await this.refreshStats();
        return json(t.showStats());
      case "/routes": return json(t.showRoutes());
      case "/peers": return json(t.showPeers());
      case "/fdb": return json(t.showFdb());
      case "/neigh": return json(t.showNeigh());
      case "/conntrack": return this.conntrackReply(url.searchParams);
      default: return json(t.status());
    }
  }

  private async metricsReply(): Promise<Reply> {
    await this.refreshStats();
    const reg = this.target.metrics.registry;
    return { status: 200, type: reg.contentType, body: await reg.metrics() };
  }

  private healthReply(): Reply {
    const h = this.health();
    if (h.ok) return json({ ok: true, workers: h.workers.map((w) => ({ queue: w.queue, silentMs: w.silentMs })) });
    const stale = h.workers.filter((w) => w.stale).map((w) => ({ queue: w.queue, silentSeconds: Math.round(w.silentMs / 100) / 10 }));
    return json({ ok: false, error: h.workers.length ? `data-path worker ${stale.map((s) => s.queue).join(", ")} stale` : "no data path", stale }, 503);
  }

  private async conntrackReply(q: URLSearchParams): Promise<Reply> {
    const num = (name: string, dflt: number): number | undefined => {
      const v = q.get(name);
      if (v === null || v === "") return dflt;
      return /^\d{1,15}$/.test(v) ? Number(v) : undefined;
    };
    const limit = num("limit", CT_PAGE_MAX);
    const cursor = num("cursor", 0);
    if (limit === undefined || limit < 1) return text(400, `limit: a whole number 1..${CT_PAGE_MAX} (larger ones are cut to ${CT_PAGE_MAX})`);
    if (cursor === undefined) return text(400, "cursor: the `next` of the previous page");
    // Compact: a page may hold 10,000 flows.
    return json(await this.conntrackPage(cursor, Math.min(limit, CT_PAGE_MAX)), 200, 0);
  }

  /** One page of the flow tables: up to `limit` flows from `cursor` on, and
   *  the cursor of the next page (null at the end). Each page comes from one
   *  worker, which reads it a bounded number of flows per loop turn. */
  async conntrackPage(cursor: number, limit: number): Promise<{ stats?: ConntrackStats; flows: FlowInfo[]; next: number | null; turns: number }> {
    const lanes = this.target.adminLanes();
    if (!lanes.length) throw new Error("no data path");
    const lane = Math.floor(cursor / CURSOR_LANE);
    if (lane >= lanes.length) return { flows: [], next: null, turns: 0 };
    // Pace: this page's flows are paid for in advance; what it did not use is given back.
    const msPerFlow = 1000 / this.cfg.conntrackDumpRate;
    const now = Date.now();
    this.ctPaidUntil = Math.max(this.ctPaidUntil, now) + limit * msPerFlow;
    const wait = this.ctPaidUntil - Math.min(CT_PAGE_MAX, this.cfg.conntrackDumpRate) * msPerFlow - now; // at most 1 s of credit
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const id = ++this.ctSeq;
    const m = await ask(lanes[lane].port, { type: "conntrack", id, cursor: cursor % CURSOR_LANE, limit }, (r) => r.type === "conntrack" && r.id === id, 10_000);
    const page = m as Extract<FromWorker, { type: "conntrack" }>;
    this.ctPaidUntil -= (limit - page.flows.length) * msPerFlow;
    const next = page.next >= 0 ? lane * CURSOR_LANE + page.next : lane + 1 < lanes.length ? (lane + 1) * CURSOR_LANE : null;
    return { stats: page.stats, flows: page.flows.map(toFlowInfo), next, turns: page.turns };
  }

  /** Test hooks (OVERLAYD_TEST_HOOKS=1 only). */
  private async debug(path: string, q: URLSearchParams): Promise<Reply> {
    const lanes = this.target.adminLanes();
    const queue = Number(q.get("queue") ?? 0);
    const l = lanes[queue];
    if (!l) return text(400, `no queue ${queue}`);
    if (path === "/debug/hang") {
      l.port.postMessage({ type: "hang" } satisfies ToWorker);
      this.target.log.warn({ queue }, "test hook: data-path worker told to hang");
      return json({ ok: true });
    }
    if (path === "/debug/ct-fill") {
      const n = Math.min(Number(q.get("n") ?? 0) || 0, 10_000_000);
      const id = ++this.ctSeq;
      const m = await ask(l.port, { type: "ctFill", id, n }, (r) => r.type === "ctFilled" && r.id === id, 60_000);
      return json({ made: (m as Extract<FromWorker, { type: "ctFilled" }>).made });
    }
    return text(404, "unknown test hook");
  }

  /** Ask every worker for fresh statistics; resolves when all answered (or after 500 ms). */
  private refreshStats(): Promise<void> {
    return Promise.all(this.target.adminLanes().map((l) => ask(l.port, { type: "stats" }, (m) => m.type === "stats", 500).catch(() => undefined))).then(() => undefined);
  }
}

/** Post `msg` to a worker and wait for the first answer `match` accepts. */
function ask(port: MessagePort, msg: ToWorker, match: (m: FromWorker) => boolean, timeoutMs: number): Promise<FromWorker> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      port.off("message", onMsg);
      reject(new Error("data path did not answer"));
    }, timeoutMs);
    const onMsg = (m: FromWorker) => {
      if (!match(m)) return;
      clearTimeout(timer);
      port.off("message", onMsg);
      resolve(m);
    };
    port.on("message", onMsg);
    port.postMessage(msg);
  });
}

/** The token in admin.tokenFile (surrounding white space dropped); throws naming the problem. */
function readToken(file: string | undefined): Buffer {
  if (!file) throw new Error("admin.listen is TCP: admin.tokenFile is needed");
  let t: string;
  try {
    t = readFileSync(file, "utf8").trim();
  } catch (e) {
    throw new Error(`admin.tokenFile ${file}: ${(e as Error).message}`);
  }
  if (t.length < 16 || /\s/.test(t)) throw new Error(`admin.tokenFile ${file}: the token must be one word of at least 16 characters`);
  return Buffer.from(t);
}

/** An HTTP server on "host:port" or a unix socket path. A socket gets mode
 *  0600, in a directory created 0700 when missing; a stale socket file is replaced. */
async function listenHttp(where: string, onRequest: (req: IncomingMessage, res: ServerResponse) => void, what: string): Promise<Server> {
  const addr = parseListen(where);
  const server = createServer(onRequest);
  if (addr.kind === "unix") {
    mkdirSync(dirname(addr.path), { recursive: true, mode: 0o700 });
    if (existsSync(addr.path) && (await answers(addr.path))) throw new Error(`${what} cannot listen on ${where}: another overlayd answers there`);
    rmSync(addr.path, { force: true }); // left by a dead instance
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`${what} cannot listen on ${where}: ${e.message}`)));
    if (addr.kind === "unix") {
      // The socket is bound inside listen(): no moment with a wider mode.
      const old = process.umask(0o177);
      try {
        server.listen(addr.path, () => resolve());
      } finally {
        process.umask(old);
      }
    } else server.listen(addr.port, addr.host, () => resolve());
  });
  if (addr.kind === "unix") chmodSync(addr.path, 0o600);
  return server;
}

/** Whether something accepts connections on the unix socket `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    const done = (v: boolean) => {
      c.destroy();
      resolve(v);
    };
    c.once("connect", () => done(true));
    c.once("error", () => done(false));
    c.setTimeout(1000, () => done(false));
  });
}

const TCP_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"];

function toFlowInfo(f: FlowRecord): FlowInfo {
  const a = f.addrs6;
  const t = (x: FlowRecord["orig"], k: number) => ({ src: a ? a[k] : u32ToIp(x.src), dst: a ? a[k + 1] : u32ToIp(x.dst), sport: x.sport, dport: x.dport });
  return {
    proto: f.proto, state: f.proto === 6 ? (TCP_STATES[f.state] ?? String(f.state)) : "", expiresIn: Math.max(0, f.expiresIn),
    orig: t(f.orig, 0), reply: t(f.reply, 2), nat: f.nat, assured: (f.flags & 4) !== 0, seenReply: (f.flags & 2) !== 0,
  };
}
