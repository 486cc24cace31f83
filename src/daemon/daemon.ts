// overlayd's control plane: config -> tables -> workers. Start-up runs the
// named steps of START_STEPS (lock, reclaim, node set-up with undo, lanes,
// admin); a reload is a transaction (validate -> plan -> apply), one at a
// time; stop undoes whatever got done. The node set-up is nodesetup.ts, the
// workers lanes.ts, the reload transaction reload.ts, crash leftovers
// reclaim.ts, the MTUs mtu.ts; the admin API and the metrics listener are
// src/control/admin.ts (the daemon is its AdminTarget).
import { createHash, randomBytes } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import type { Logger } from "pino";
import { loadConfigFile, type LoadResult } from "../config/load.js";
import { Membership } from "../membership/membership.js";
import { toDataplaneTables, type DerivedTables } from "../config/derive.js";
import type { Config } from "../config/schema.js";
import { u32ToIp } from "../config/net.js";
import { AdminServer, type AdminLane, type AdminTarget } from "../control/admin.js";
import { createEtcdMetrics, createMetrics, createRouteMetrics, type Metrics, type RouteMetrics } from "../control/metrics.js";
import { Routing } from "../routing/routing.js";
import { RouteEventCounter } from "../routing/events.js";
import type { ToWorker } from "./worker.js";
import { checkPrivileges } from "./system.js";
import { podStatus, removeNodeState, writeNodeState } from "./nodestate.js";
import { hostKernel } from "./kernel.js";
import { NodeMtu, PMTU_TTL_MS, type MtuPlan } from "./mtu.js";
import { LanePool, type Lane } from "./lanes.js";
import { fdbRows, neighRows, peerRows, queueRows, routeRows, type PeerSource } from "./show.js";
import { NodeSetup, pausePoint, StartCancelled } from "./nodesetup.js";
import { Reloads, type ReloadResult } from "./reload.js";
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

export class Daemon implements AdminTarget {
  private config!: Config;
  private derived!: DerivedTables;
  /** The node's device, sysctls, routes and NAT plumbing, each step with its undo. */
  private setup?: NodeSetup;
  private readonly pool: LanePool;
  private admin?: AdminServer;
  private watcher?: FSWatcher;
  private reloadTimer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  /** Keys the workers' conntrack hashes, new at every start (show status has a digest of it). */
  private readonly ctHashSeed = randomBytes(16);
  /** The MTUs from the underlay link, what follows its changes, the learnt path MTUs (mtu.ts). */
  private readonly mtu: NodeMtu;
  /** Pod CIDR lease and peers from etcd, when configured (src/membership/). */
  private membership?: Membership;
  /** Peers from the routes a routing daemon installs (config routing:, src/routing/). */
  private routing?: Routing;
  private readonly routeMetrics: RouteMetrics;
  private readonly routeEvents: RouteEventCounter;
  /** Set once start() finished: reloads run only after it. */
  private running = false;
  private locked?: string;
  private stopping?: Promise<void>;
  private readonly reloads: Reloads;
  readonly metrics: Metrics;

  constructor(private readonly opts: DaemonOptions) {
    this.metrics = createMetrics();
    this.mtu = new NodeMtu(opts.log);
    this.routeMetrics = createRouteMetrics(this.metrics.registry);
    this.routeEvents = new RouteEventCounter(this.routeMetrics);
    this.pool = new LanePool({
      log: opts.log, metrics: this.metrics, natHashSeed: this.ctHashSeed,
      onFatal: (why) => this.fatal(why),
      // Path MTUs one lane learnt from the underlay: kept, and told to the others.
      onPathMtu: (updates, from) => {
        const msg: ToWorker = { type: "pmtu", updates: this.mtu.learn(updates, this.derived.peers), ttlMs: PMTU_TTL_MS };
        for (const l of this.lanes) if (l !== from) l.port.postMessage(msg);
      },
    });
    const daemon = this; // the getters below read the daemon's state as it is at each reload
    this.reloads = new Reloads({
      log: opts.log, metrics: this.metrics, pool: this.pool, mtu: this.mtu,
      get running() { return daemon.running && !daemon.stopping; },
      get config() { return daemon.config; },
      get derived() { return daemon.derived; },
      get setup() { return daemon.setup!; },
      loadConfig: () => this.loadConfig(),
      commit: (next, derived, plan) => this.commit(next, derived, plan),
    });
  }

  get log(): Logger {
    return this.opts.log;
  }

  /** The data-path workers, one per tun queue. */
  get lanes(): Lane[] {
    return this.pool.lanes;
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
    this.reloads.holdUntil(new Promise<void>((r) => (started = r)));
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
    let loaded = this.loadConfig();
    if (!loaded.ok) throw new Error(`invalid config ${this.opts.configPath}:\n  ${loaded.errors.join("\n  ")}`);
    checkPrivileges();
    if (loaded.config.routing) {
      this.routing = new Routing({
        settings: loaded.config.routing, kernel: hostKernel, log: this.log, metrics: this.routeMetrics,
        onChange: (why) => this.scheduleReload(why, 20),
      });
      this.routing.start();
      loaded = this.routing.merge(loaded);
      if (!loaded.ok) throw new Error(`invalid config ${this.opts.configPath}:\n  ${loaded.errors.join("\n  ")}`);
    }
    this.config = loaded.config;
    ({ derived: this.derived, plan: this.mtu.plan } = this.mtu.derive(this.config, true));
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
    const deviceMtu = this.mtu.plan!.deviceMtu;
    const setup = new NodeSetup(this.config, this.derived, deviceMtu, this.log);
    this.setup = setup;
    this.log.info({ ...this.mtu.plan, warnings: undefined }, "MTUs");
    await setup.setupNode();
    this.mtu.watch(() => this.scheduleReload("underlay MTU changed", 0));
    await setup.step("lanes", () => undefined);
    await this.pool.start(this.config, this.derived.node.underlay, { tuns: [setup.tun!, ...setup.queueTuns], gsoTaps: setup.gsoTaps, gsoTapMac: setup.gsoTapMac, ioUring: setup.ioUring, tso6: setup.tunTso6 }, () => toDataplaneTables(this.derived));
    writeNodeState(stateDir, this.config, deviceMtu); // the CNI plugin's node facts, before the admin API answers
    await setup.step("admin", () => undefined);
    this.admin = new AdminServer(this, this.config.admin);
    await this.admin.start();
    cancelled();
    this.running = true;
    if (this.opts.watchConfig !== false) this.watchConfigFile();
    this.updateTableGauges(this.derived);
    this.routeEvents.update(this.derived, (name) => this.peerSource(name));
    const d = this.derived;
    this.log.info({
      node: this.config.node.name, device: this.tun?.name, mode: d.node.mode, underlay: u32ToIp(d.node.underlay),
      peers: d.peers.map((p) => `${p.name}=${p.encapsulation}`), routes: d.routes.length, routes6: d.routes6.length,
    }, "overlayd started");
  }

  private applyLogLevel(c: Config): void {
    if (!this.opts.logLevelFixed && this.log.level !== c.log.level) this.log.level = c.log.level;
  }

  /** The node cannot go on: onFatal (overlayd run: clean up, exit non-zero). */
  fatal(reason: string): void {
    this.log.fatal({ reason }, "data path lost");
    this.opts.onFatal?.(reason);
  }

  private updateTableGauges(d: DerivedTables): void {
    this.metrics.setTableSizes({ routes: d.routes.length, routes6: d.routes6.length, peers: d.peers.length, fdb: d.fdb.length, neigh: d.neigh.length });
  }

  /** Load the config again and apply it without restarting (reload.ts: validate -> plan -> apply, one at a time). Never rejects. */
  reload(reason: string): Promise<ReloadResult> {
    return this.reloads.run(reason);
  }

  /** A reload applied: the tables and the kernel carry `next`; make it the running config. */
  private commit(next: Config, derived: DerivedTables, plan: MtuPlan): string[] {
    this.routeEvents.update(derived, (name) => this.peerSource(name));
    this.config = next;
    this.derived = derived;
    this.mtu.plan = plan;
    this.setup!.adopt(next, derived, plan.deviceMtu);
    this.applyLogLevel(next);
    this.updateTableGauges(derived);
    if (!this.running) return []; // stopping: node.json goes (stopNow), never comes back
    try {
      writeNodeState(next.node.stateDir, next, plan.deviceMtu);
      return [];
    } catch (e) {
      return [`node facts for CNI: ${(e as Error).message}`];
    }
  }

  /** The config file, merged with the etcd lease and peers when membership is on. */
  private loadConfig(): LoadResult {
    const loaded = this.membership ? this.membership.loadConfig() : loadConfigFile(this.opts.configPath);
    return this.routing ? this.routing.merge(loaded) : loaded;
  }

  /** Where the peer called `name` came from: config, etcd or bgp (the routing table). */
  private peerSource(name: string): PeerSource {
    if (this.routing?.owns(name)) return "bgp";
    return this.membership?.origin(name).source === "etcd" ? "etcd" : "config";
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

  // --- what the admin API shows (src/control/admin.ts) -------------------------

  adminLanes(): AdminLane[] {
    return this.lanes.map((l) => ({ port: l.port, heartbeat: l.heartbeat }));
  }

  showStats() {
    return { counters: this.pool.counters, io: this.pool.ioStats, queues: queueRows(this.lanes) };
  }

  showPeers() {
    return peerRows(this.derived, (name) => (this.routing?.owns(name) ? { source: "bgp" } : this.membership?.origin(name) ?? { source: "config" }));
  }

  showFdb() {
    return fdbRows(this.derived);
  }

  showNeigh() {
    return neighRows(this.derived);
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
      lastReload: this.reloads.last,
      conntrack: { hashSeedId: createHash("sha256").update(this.ctHashSeed).digest("hex").slice(0, 16) },
      mtu: this.mtu.status(this.derived.peers),
      etcd: this.membership?.status(),
      routing: this.routing?.status(),
      pods: podStatus(this.config.node.stateDir),
    };
  }

  showRoutes() {
    return routeRows(this.derived, (name) => this.peerSource(name), this.config.routing?.table);
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
    this.routing?.stop();
    // A reload in flight commits (and rewrites node.json) when its tables are
    // applied: let it finish first, so node.json is surely gone after stop.
    await this.reloads.settled();
    if (this.config && this.locked) removeNodeState(this.config.node.stateDir);
    clearTimeout(this.reloadTimer);
    this.mtu.stop();
    this.watcher?.close();
    this.watcher = undefined;
    await this.pool.stop();
    await this.admin?.stop();
    this.admin = undefined;
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
