// overlayd's control plane: config -> tables -> workers. Start-up runs the
// named steps of START_STEPS (lock, reclaim, node set-up with undo, lanes,
// admin); a reload is a transaction (validate -> plan -> apply), one at a
// time; stop undoes whatever got done. The node set-up is nodesetup.ts, the
// workers lanes.ts, what a reload may change reload.ts, crash leftovers
// reclaim.ts; the admin API and metrics are below.
import { rmSync, watch, type FSWatcher } from "node:fs";
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import { loadConfigFile, type LoadResult } from "../config/load.js";
import { Membership } from "../membership/membership.js";
import { deriveTables, type DerivedTables } from "../config/derive.js";
import type { Config } from "../config/schema.js";
import { formatMac, parseListen, u32ToIp } from "../config/net.js";
import { createEtcdMetrics, createMetrics, type Metrics } from "../control/metrics.js";
import type { DataplaneTables } from "../dataplane/tables.js";
import type { FromWorker, ToWorker } from "./worker.js";
import type { ConntrackStats } from "../dataplane/dataplane.js";
import { checkPrivileges } from "./system.js";
import { validateNatPlan, type NatPlan } from "./natsetup.js";
import type { FlowInfo } from "../control/conntrack.js";
import type { FlowRecord } from "../dataplane/dataplane.js";
import { LanePool, type Lane } from "./lanes.js";
import { NodeSetup, pausePoint, StartCancelled } from "./nodesetup.js";
import { refusedChanges } from "./reload.js";
import { reclaim, reclaimTarget } from "./reclaim.js";
import { acquireLock, readRecord, releaseLock, removeRecord } from "./state.js";

export interface DaemonOptions {
  configPath: string;
  log: Logger;
  /** Watch the config file and reload on change (SIGHUP always reloads). */
  watchConfig?: boolean;
  /** Called when the data path dies under us (the worker threw or exited):
   *  a node without a data path should exit so its supervisor restarts it. */
  onFatal?: (reason: string) => void;
  /** `--etcd-endpoints` / `--etcd-prefix`: cluster membership from etcd, on top of the file's etcd section. */
  etcd?: { endpoints?: string[]; prefix?: string };
  /** The log level was given on the command line: the config's log.level does not override it. */
  logLevelFixed?: boolean;
}

export interface ReloadResult {
  ok: boolean;
  errors: string[];
}

function toDataplaneTables(d: DerivedTables): DataplaneTables {
  return {
    node: d.node,
    nat: { enabled: d.nat.enabled, masquerade: d.nat.masquerade, nodeIp: d.nat.nodeIp, snatAddress: d.nat.snatAddress, portRange: d.nat.portRange },
    services: d.services.map((f) => ({ protocol: f.protocol, addr: f.addr, port: f.port, nodePort: f.nodePort, backends: f.backends })),
    peers: d.peers.map((p) => ({ underlay: p.underlay, vtepMac: p.vtepMac })),
    nexthops: d.nexthops.map((n) => ({ kind: n.kind, peer: n.peer ?? 0xffff, gateway: n.gateway ?? 0 })),
    routes: d.routes,
    neigh: d.neigh,
    fdb: d.fdb,
  };
}

export class Daemon {
  private config!: Config;
  private derived!: DerivedTables;
  /** The node's device, sysctls, routes and NAT plumbing, each step with its undo. */
  private setup?: NodeSetup;
  private readonly pool: LanePool;
  private server?: Server;
  private watcher?: FSWatcher;
  private reloadTimer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  private lastReload: { at: number; ok: boolean; reason: string; errors: string[] } | undefined;
  /** Pod CIDR lease and peers from etcd, when configured (src/membership/). */
  private membership?: Membership;
  /** Set once start() finished: reloads run only after it. */
  private running = false;
  private locked?: string;
  private stopping?: Promise<void>;
  /** The reload running or last run (reloads are serialised on it), and the one queued behind it. */
  private reloadChain: Promise<unknown> = Promise.resolve();
  private queuedReload?: { reasons: string[]; result: Promise<ReloadResult> };
  readonly metrics: Metrics;

  constructor(private readonly opts: DaemonOptions) {
    this.metrics = createMetrics();
    this.pool = new LanePool({ log: opts.log, metrics: this.metrics, onFatal: (why) => this.fatal(why) });
  }

  get log(): Logger {
    return this.opts.log;
  }

  /** The data-path workers, one per tun queue. */
  get lanes(): Lane[] {
    return this.pool.lanes;
  }

  private get counters() {
    return this.pool.counters;
  }

  private get ioStats() {
    return this.pool.ioStats;
  }

  private get tun() {
    return this.setup?.tun;
  }

  /** Validate the config, set up the node and start the data path. Throws
   *  (with a message naming the cause) when the node cannot be set up;
   *  whatever was set up by then is torn down first. Reloads asked for
   *  meanwhile run once it finished. */
  async start(): Promise<void> {
    let started!: () => void;
    this.reloadChain = new Promise<void>((r) => (started = r));
    try {
      await this.startSteps();
    } catch (e) {
      await this.stop();
      throw e;
    } finally {
      started();
    }
  }

  private async startSteps(): Promise<void> {
    if (Membership.enabled(this.opts.configPath, this.opts.etcd)) {
      checkPrivileges(); // before joining the cluster, not after
      this.membership = await Membership.start({
        configPath: this.opts.configPath, cli: this.opts.etcd, log: this.log, metrics: createEtcdMetrics(this.metrics.registry),
        onChange: (why) => this.scheduleReload(why, 50), // coalesces a burst of watch events
        onFatal: (why) => {
          this.log.fatal({ reason: why }, "this node's pod CIDR lease is gone");
          this.opts.onFatal?.(why);
        },
      });
    }
    const loaded = this.loadConfig();
    if (!loaded.ok) throw new Error(`invalid config ${this.opts.configPath}:\n  ${loaded.errors.join("\n  ")}`);
    checkPrivileges();
    this.config = loaded.config;
    this.derived = deriveTables(this.config);
    this.applyLogLevel(this.config);
    const stateDir = this.config.node.stateDir;
    const cancelled = () => {
      if (this.stopping) throw new StartCancelled("start-up stopped");
    };
    await pausePoint("lock", this.log);
    cancelled();
    const { stale } = acquireLock(stateDir);
    this.locked = stateDir;
    if (stale) this.log.warn({ stateDir }, "took over the lock of an overlayd that is gone");
    await pausePoint("reclaim", this.log);
    cancelled();
    // What a dead instance left (routes of our protocol, NAT rules and tc
    // filters at our prefs, reserved ports and sysctls from its record) goes
    // before we set up; a device of our name nobody recorded is refused.
    // A dead instance without a record (lost, torn): every proto 79 route here is its.
    const removed = reclaim(reclaimTarget(this.config), undefined, { sweepAll: stale && readRecord(stateDir) === undefined });
    if (removed.length) this.log.warn({ removed }, "removed what a previous overlayd left on the node");
    const setup = new NodeSetup(this.config, this.derived, this.log);
    this.setup = setup;
    await setup.setupNode();
    await setup.step("lanes", () => undefined);
    await this.pool.start(this.config, this.derived.node.underlay, { tuns: [setup.tun!, ...setup.queueTuns], gsoTaps: setup.gsoTaps, gsoTapMac: setup.gsoTapMac, ioUring: setup.ioUring }, () => toDataplaneTables(this.derived));
    await setup.step("admin", () => undefined);
    await this.startAdmin();
    cancelled();
    this.running = true;
    if (this.opts.watchConfig !== false) this.watchConfigFile();
    this.updateTableGauges(this.derived);
    const d = this.derived;
    this.log.info({
      node: this.config.node.name, device: this.tun?.name, mode: d.node.mode, underlay: u32ToIp(d.node.underlay),
      peers: d.peers.map((p) => `${p.name}=${p.encapsulation}`), routes: d.routes.length,
    }, "overlayd started");
  }

  private applyLogLevel(c: Config): void {
    if (!this.opts.logLevelFixed && this.log.level !== c.log.level) this.log.level = c.log.level;
  }

  private fatal(reason: string): void {
    this.log.fatal({ reason }, "data path lost");
    this.opts.onFatal?.(reason);
  }

  private updateTableGauges(d: DerivedTables): void {
    this.metrics.setTableSizes({ routes: d.routes.length, peers: d.peers.length, fdb: d.fdb.length, neigh: d.neigh.length });
  }

  /**
   * Load the config again and apply it without restarting: validate (the
   * file, then RESTART_ONLY fields, refused by name), plan (resolve kernel
   * routes and the NAT plan; nothing is touched yet), apply (kernel routes,
   * then NAT plumbing, each rolled back to the running state when it fails,
   * then the workers' tables last). A failure anywhere keeps the running
   * config and tables, is logged and shows in status().lastReload. Reloads
   * run one at a time; requests that arrive while one runs are coalesced
   * into a single next run, which reads the latest config. Never rejects.
   */
  reload(reason: string): Promise<ReloadResult> {
    if (this.queuedReload) {
      this.queuedReload.reasons.push(reason);
      return this.queuedReload.result;
    }
    const reasons = [reason];
    const result: Promise<ReloadResult> = this.reloadChain.then(() => {
      if (this.queuedReload?.result === result) this.queuedReload = undefined;
      return this.reloadNow([...new Set(reasons)].join(", "));
    });
    this.queuedReload = { reasons, result };
    this.reloadChain = result;
    return result;
  }

  private async reloadNow(reason: string): Promise<ReloadResult> {
    const fail = (errors: string[]): ReloadResult => {
      this.lastReload = { at: Date.now(), ok: false, reason, errors };
      this.metrics.configReloads.inc({ result: "error" });
      this.log.error({ reason, errors }, "reload failed; the running config and tables stay in force");
      return { ok: false, errors };
    };
    if (!this.running || this.stopping) return { ok: false, errors: ["overlayd is not running"] };
    try {
      return await this.reloadTransaction(reason, fail);
    } catch (e) {
      return fail([`unexpected: ${(e as Error).message}`]);
    }
  }

  private async reloadTransaction(reason: string, fail: (errors: string[]) => ReloadResult): Promise<ReloadResult> {
    const setup = this.setup!;
    // 1. validate
    const loaded = this.loadConfig();
    if (!loaded.ok) return fail(loaded.errors);
    const next = loaded.config;
    const refused = refusedChanges(this.config, next);
    if (refused.length) return fail(refused);
    const derived = deriveTables(next);
    const queues = this.lanes.length;
    if (derived.nat.enabled && queues > 1) {
      return fail([`NAT needs one tun queue and this overlayd runs ${queues}: set node.device.queues: 1 and restart overlayd`]);
    }
    // 2. plan: everything that can fail without touching the node
    let routes;
    let nat: NatPlan | undefined;
    try {
      routes = setup.kernelRouteList(derived, next);
      nat = derived.nat.enabled ? setup.natPlan(derived, next) : undefined;
      if (nat) validateNatPlan(nat);
    } catch (e) {
      return fail([`plan: ${(e as Error).message}`]);
    }
    // 3. apply: the kernel's part first (undone on failure), the tables last
    const oldRoutes = setup.kernelRoutes.list();
    const routeErrors = setup.kernelRoutes.sync(routes);
    if (routeErrors.length) {
      const back = setup.kernelRoutes.sync(oldRoutes);
      setup.saveRecord();
      return fail([...routeErrors.map((e) => `routes: ${e}`), ...back.map((e) => `rolling back routes: ${e}`)]);
    }
    try {
      if (nat) setup.nodeNat.apply(nat);
      else setup.nodeNat.teardown();
    } catch (e) {
      const errors = [`NAT plumbing: ${(e as Error).message}`];
      try {
        if (setup.natApplied) setup.nodeNat.apply(setup.natApplied);
        else setup.nodeNat.teardown();
      } catch (e2) {
        errors.push(`rolling back NAT plumbing: ${(e2 as Error).message}`);
      }
      errors.push(...setup.kernelRoutes.sync(oldRoutes).map((x) => `rolling back routes: ${x}`));
      setup.saveRecord();
      return fail(errors);
    }
    setup.natApplied = nat;
    setup.saveRecord();
    const res = await this.pool.applyTables(toDataplaneTables(derived));
    // commit
    this.config = next;
    this.derived = derived;
    setup.adopt(next, derived);
    this.applyLogLevel(next);
    this.updateTableGauges(derived);
    const errors = res.errors;
    this.lastReload = { at: Date.now(), ok: errors.length === 0, reason, errors };
    this.metrics.configReloads.inc({ result: errors.length ? "error" : "ok" });
    this.log.info({ reason, routesAdded: res.routesAdded, routesRemoved: res.routesRemoved, peers: derived.peers.length, errors }, "config reloaded");
    return { ok: errors.length === 0, errors };
  }

  /** The config file, merged with the etcd lease and peers when membership is on. */
  private loadConfig(): LoadResult {
    return this.membership ? this.membership.loadConfig() : loadConfigFile(this.opts.configPath);
  }

  scheduleReload(reason: string, delayMs = 200): void {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload(reason), delayMs);
  }

  private watchConfigFile(): void {
    try {
      this.watcher = watch(this.opts.configPath, () => this.scheduleReload("file changed"));
    } catch (e) {
      this.log.warn({ err: e }, "cannot watch the config file; reload with SIGHUP");
    }
  }

  // --- admin API -------------------------------------------------------------
  private metricsServer?: Server;

  private async startAdmin(): Promise<void> {
    const { listen, metrics } = this.config.admin;
    this.server = await listenHttp(listen, (url, res) => void this.handle(url, res), "admin API");
    // /metrics on a server of its own when the config asks for one.
    if (metrics.listen !== listen) {
      this.metricsServer = await listenHttp(metrics.listen, (url, res) => void this.handle(url === metrics.path ? "/metrics" : url, res), "metrics");
    }
  }

  private async handle(url: string, res: import("node:http").ServerResponse): Promise<void> {
    const path = url.split("?")[0];
    const json = (v: unknown) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x), 2));
    };
    try {
      if (path === "/metrics" || path === this.config.admin.metrics.path) {
        await this.refreshStats();
        res.writeHead(200, { "content-type": this.metrics.registry.contentType });
        res.end(await this.metrics.registry.metrics());
      } else if (path === "/stats") {
        await this.refreshStats();
        // Per queue (one worker each): what each one moved.
        const queues = this.lanes.map((l, q) => ({
          queue: q, rx_pod_packets: l.counters.rx_pod_packets ?? 0n, rx_vxlan_packets: l.counters.rx_vxlan_packets ?? 0n,
          rx_ipip_packets: l.counters.rx_ipip_packets ?? 0n, to_device_packets: l.counters.to_device_packets ?? 0n,
        }));
        json({ counters: this.counters, io: this.ioStats, queues });
      } else if (path === "/status" || path === "/") json(this.status());
      else if (path === "/routes") json(this.showRoutes());
      else if (path === "/peers") json(this.derived.peers.map((p, i) => ({ index: i, name: p.name, underlay: u32ToIp(p.underlay), vtepMac: formatMac(p.vtepMac), vtepAddress: u32ToIp(p.vtepAddress), podCIDRs: p.podCIDRs, encapsulation: p.encapsulation, reason: p.reason, ...(this.membership?.origin(p.name) ?? { source: "config" }) })));
      else if (path === "/fdb") json(this.derived.fdb.map((f) => ({ mac: formatMac(f.mac), peer: this.derived.peers[f.peer]?.name, dst: u32ToIp(this.derived.peers[f.peer]?.underlay ?? 0) })));
      else if (path === "/neigh") json(this.derived.neigh.map((n) => ({ ip: u32ToIp(n.ip), mac: formatMac(n.mac) })));
      else if (path === "/reload" ) json(await this.reload("admin API"));
      else if (path === "/conntrack") json(await this.conntrack(Number(new URLSearchParams(url.split("?")[1] ?? "").get("limit") ?? 10_000)));
      else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("unknown path; try /status /routes /peers /fdb /neigh /stats /conntrack /metrics\n");
      }
    } catch (e) {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String((e as Error).message) + "\n");
    }
  }

  private ctSeq = 0;

  /** Flows of the data path's conntrack tables, as FlowInfo records. */
  private conntrack(limit: number): Promise<{ stats: unknown; flows: FlowInfo[] }> {
    const max = Number.isFinite(limit) && limit > 0 ? limit : 10_000;
    if (!this.lanes.length) return Promise.reject(new Error("no data path"));
    const id = ++this.ctSeq;
    const asks = this.lanes.map((l) => new Promise<Extract<FromWorker, { type: "conntrack" }>>((resolve, reject) => {
      const timer = setTimeout(() => {
        l.port.off("message", onMsg);
        reject(new Error("data path did not answer"));
      }, 5000);
      const onMsg = (m: FromWorker) => {
        if (m.type !== "conntrack" || m.id !== id) return;
        clearTimeout(timer);
        l.port.off("message", onMsg);
        resolve(m);
      };
      l.port.on("message", onMsg);
      l.port.postMessage({ type: "conntrack", id, limit: max } satisfies ToWorker);
    }));
    return Promise.all(asks).then((all) => {
      const stats = all.map((a) => a.stats).filter((x): x is ConntrackStats => x !== undefined);
      const sum = stats.length ? stats.reduce((a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k as keyof ConntrackStats] + b[k as keyof ConntrackStats]])) as unknown as ConntrackStats) : undefined;
      return { stats: sum, flows: all.flatMap((a) => a.flows).slice(0, max).map(toFlowInfo) };
    });
  }

  /** Ask every lane for fresh statistics; resolves when all answered (or after 500 ms). */
  private refreshStats(): Promise<void> {
    const asks = this.lanes.map((l) => new Promise<void>((resolve) => {
      const onMsg = (m: FromWorker) => {
        if (m.type === "stats") {
          l.port.off("message", onMsg);
          resolve();
        }
      };
      l.port.on("message", onMsg);
      l.port.postMessage({ type: "stats" } satisfies ToWorker);
      setTimeout(() => {
        l.port.off("message", onMsg);
        resolve();
      }, 500);
    }));
    return Promise.all(asks).then(() => undefined);
  }

  status() {
    return {
      node: this.config.node.name,
      device: this.tun?.name,
      queues: this.lanes.length,
      mode: this.derived.node.mode,
      underlay: u32ToIp(this.derived.node.underlay),
      overlay: u32ToIp(this.derived.node.overlay),
      vni: this.derived.node.vni,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      peers: this.derived.peers.length,
      routes: this.derived.routes.length,
      kernelRoutes: this.setup?.kernelRoutes.list() ?? [],
      logLevel: this.log.level,
      lastReload: this.lastReload,
      etcd: this.membership?.status(),
    };
  }

  private showRoutes() {
    const d = this.derived;
    return d.routes.map((r) => {
      const nh = d.nexthops[r.nh];
      const peer = nh && nh.peer !== undefined && nh.peer !== 0xffff ? d.peers[nh.peer] : undefined;
      return { prefix: `${u32ToIp(r.prefix)}/${r.len}`, kind: nh?.kind, peer: peer?.name, via: nh?.gateway ? u32ToIp(nh.gateway) : undefined, underlay: peer ? u32ToIp(peer.underlay) : undefined };
    });
  }

  /** Stop the workers, close the admin server, undo the node set-up (routes,
   *  NAT, sysctls, the device), release the lock. Idempotent; safe while
   *  start() is still running (it then stops at its next step). */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    this.running = false;
    this.setup?.cancel();
    await this.membership?.stop();
    clearTimeout(this.reloadTimer);
    this.watcher?.close();
    this.watcher = undefined;
    await this.pool.stop();
    for (const srv of [this.server, this.metricsServer]) if (srv) await new Promise<void>((r) => srv.close(() => r()));
    this.server = this.metricsServer = undefined;
    const left = this.setup?.undoAll() ?? [];
    if (this.locked) {
      if (left.length) this.log.warn({ left }, "some of the node set-up could not be undone; the install record keeps it for the next start or `overlayd cleanup`");
      else removeRecord(this.locked);
      releaseLock(this.locked);
      this.locked = undefined;
    }
    this.log.info("overlayd stopped");
  }
}

/** An HTTP server on "host:port" or a unix socket path (a stale socket file is replaced). */
async function listenHttp(where: string, onRequest: (url: string, res: import("node:http").ServerResponse) => void, what: string): Promise<Server> {
  const addr = parseListen(where);
  const server = createServer((req, res) => onRequest(req.url ?? "/", res));
  if (addr.kind === "unix") rmSync(addr.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`${what} cannot listen on ${where}: ${e.message}`)));
    if (addr.kind === "unix") server.listen(addr.path, () => resolve());
    else server.listen(addr.port, addr.host, () => resolve());
  });
  return server;
}

const TCP_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"];

function toFlowInfo(f: FlowRecord): FlowInfo {
  const t = (x: FlowRecord["orig"]) => ({ src: u32ToIp(x.src), dst: u32ToIp(x.dst), sport: x.sport, dport: x.dport });
  return {
    proto: f.proto, state: f.proto === 6 ? (TCP_STATES[f.state] ?? String(f.state)) : "", expiresIn: Math.max(0, f.expiresIn),
    orig: t(f.orig), reply: t(f.reply), nat: f.nat, assured: (f.flags & 4) !== 0, seenReply: (f.flags & 2) !== 0,
  };
}
