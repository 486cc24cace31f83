// Reloads: what may change live and what needs a restart (RESTART_ONLY),
// and the transaction itself, validate -> plan -> apply, one at a time
// (Reloads). The daemon (daemon.ts) is the ReloadHost: it owns the running
// config and tables and commits what a reload applied.
import type { Logger } from "pino";
import { removedBackends, removedBackends6 } from "../config/backends.js";
import { toDataplaneTables, type DerivedTables } from "../config/derive.js";
import type { LoadResult } from "../config/load.js";
import type { Config } from "../config/schema.js";
import type { Metrics } from "../control/metrics.js";
import { ip } from "../io/tun.js";
import type { LanePool } from "./lanes.js";
import { MtuError, type MtuPlan, type NodeMtu } from "./mtu.js";
import { validateNatPlan, type NatPlan } from "./natsetup.js";
import type { NodeSetup } from "./nodesetup.js";

export interface RestartOnly {
  /** Dotted path into the config; "x.*" means the whole subtree. */
  field: string;
  /** Only restart-only while this holds for the running config (e.g. outerTtl only with GSO sockets). */
  when?: (running: Config) => boolean;
}

/**
 * Fields baked into the device, the sockets or the carved memory at start.
 * A reload that changes one is refused by name; nothing is silently ignored.
 */
export const RESTART_ONLY: readonly RestartOnly[] = [
  { field: "node.name" },
  { field: "node.podCIDR" },
  { field: "node.overlayAddress" },
  // The device's IPv6 (on or off, its address) is set at start.
  { field: "node.ipv6" },
  { field: "node.device.*" },
  { field: "node.underlay.*" },
  { field: "node.stateDir" },
  { field: "tunnel.port" },
  { field: "tunnel.udpOffloads" },
  { field: "tunnel.kernelGso" },
  // The UDP GSO sockets are opened with their TTL (src/io/udpgso.ts).
  { field: "tunnel.outerTtl", when: (c) => c.tunnel.udpOffloads },
  { field: "nat.conntrack.maxFlows" },
  { field: "admin.*" },
  // The table followed (src/routing/); its encapsulation and announce apply live.
  { field: "routing.source" },
  { field: "routing.table" },
  { field: "routing.resyncSeconds" },
] as const;

function at(c: unknown, path: string): unknown {
  let v = c;
  for (const k of path.replace(/\.\*$/, "").split(".")) v = v === undefined || v === null ? undefined : (v as Record<string, unknown>)[k];
  return v;
}

/** Deep-equal for config values (plain JSON data). */
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The first changed subfield under a "x.*" entry, for the message (node.device.mtu rather than node.device). */
function changedLeaf(a: unknown, b: unknown, path: string): string {
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b as object)])) {
      const x = (a as Record<string, unknown>)[k];
      const y = (b as Record<string, unknown>)[k];
      if (!same(x, y)) return changedLeaf(x, y, `${path}.${k}`);
    }
  }
  return path;
}

/**
 * Why `next` cannot be applied to a daemon running `running` without a
 * restart: one message per changed restart-only field,
 * "node.podCIDR changed: restart overlayd to apply it". Empty: reloadable.
 */
export function refusedChanges(running: Config, next: Config, fields: readonly RestartOnly[] = RESTART_ONLY): string[] {
  const out: string[] = [];
  for (const f of fields) {
    if (f.when && !f.when(running)) continue;
    const path = f.field.replace(/\.\*$/, "");
    const a = at(running, path);
    const b = at(next, path);
    if (!same(a, b)) out.push(`${changedLeaf(a, b, path)} changed: restart overlayd to apply it`);
  }
  return out;
}

export interface ReloadResult {
  ok: boolean;
  errors: string[];
}

export interface LastReload {
  at: number;
  ok: boolean;
  reason: string;
  errors: string[];
}

/** What a reload reads from, and commits to, the daemon. */
export interface ReloadHost {
  readonly log: Logger;
  readonly metrics: Metrics;
  /** Reloads run only between start() and stop(). */
  readonly running: boolean;
  readonly config: Config;
  readonly derived: DerivedTables;
  readonly mtu: NodeMtu;
  readonly pool: LanePool;
  readonly setup: NodeSetup;
  /** The config file, merged with etcd and the routing table when they are on. */
  loadConfig(): LoadResult;
  /** Make `next` the running config (the tables and kernel already carry it); returns errors to report. */
  commit(next: Config, derived: DerivedTables, plan: MtuPlan): string[];
}

/**
 * Load the config again and apply it without restarting: validate (the
 * file, then RESTART_ONLY fields, refused by name), plan (resolve kernel
 * routes and the NAT plan; nothing is touched yet), apply (the workers'
 * tables, and beside them kernel routes then NAT plumbing, each rolled back
 * to the running state when it fails, the tables then restored). A failure
 * anywhere keeps the running config and tables, is logged and shows in
 * `last`. Reloads run one at a
 * time; requests that arrive while one runs are coalesced into a single
 * next run, which reads the latest config. run() never rejects.
 */
export class Reloads {
  last?: LastReload;
  /** The reload running or last run (reloads are serialised on it), and the one queued behind it. */
  private chain: Promise<unknown> = Promise.resolve();
  private queued?: { reasons: string[]; result: Promise<ReloadResult> };
  private holding = false;

  constructor(private readonly host: ReloadHost) {}

  /** Settles when the reload running now (and any queued behind it) has
   *  finished; never rejects. While start-up holds them none runs yet, and
   *  those queued find overlayd stopped: nothing to wait for. */
  settled(): Promise<void> {
    if (this.holding) return Promise.resolve();
    return this.chain.then(
      () => undefined,
      () => undefined,
    );
  }

  /** Reloads asked for until `done` settles wait for it (start-up). */
  holdUntil(done: Promise<unknown>): void {
    this.holding = true;
    const end = () => {
      this.holding = false;
    };
    done.then(end, end);
    this.chain = done;
  }

  run(reason: string): Promise<ReloadResult> {
    if (this.queued) {
      this.queued.reasons.push(reason);
      return this.queued.result;
    }
    const reasons = [reason];
    const result: Promise<ReloadResult> = this.chain.then(() => {
      if (this.queued?.result === result) this.queued = undefined;
      return this.runNow([...new Set(reasons)].join(", "));
    });
    this.queued = { reasons, result };
    this.chain = result;
    return result;
  }

  private async runNow(reason: string): Promise<ReloadResult> {
    const fail = (errors: string[]): ReloadResult => {
      this.last = { at: Date.now(), ok: false, reason, errors };
      this.host.metrics.configReloads.inc({ result: "error" });
      this.host.log.error({ reason, errors }, "reload failed; the running config and tables stay in force");
      return { ok: false, errors };
    };
    if (!this.host.running) return { ok: false, errors: ["overlayd is not running"] };
    try {
      return await this.transaction(reason, fail);
    } catch (e) {
      return fail([`unexpected: ${(e as Error).message}`]);
    }
  }

  private async transaction(reason: string, fail: (errors: string[]) => ReloadResult): Promise<ReloadResult> {
    const { host } = this;
    const { setup, pool, mtu } = host;
    // Milliseconds per phase, in the log line: where a slow reload spends its time.
    const t0 = performance.now();
    const ms: Record<string, number> = {};
    const lap = (phase: string, since: number) => (ms[phase] = Math.round(performance.now() - since));
    // 1. validate
    const loaded = host.loadConfig();
    if (!loaded.ok) return fail(loaded.errors);
    const next = loaded.config;
    const refused = refusedChanges(host.config, next);
    if (refused.length) return fail(refused);
    // Strict when the config's MTUs changed; a moved link is taken as it is.
    const mtuFields = (x: Config) => `${x.tunnel.underlayMtu} ${x.node.device.mtu}`;
    let derived: DerivedTables, plan: MtuPlan;
    try {
      ({ derived, plan } = mtu.derive(next, mtuFields(next) !== mtuFields(host.config)));
    } catch (e) {
      if (e instanceof MtuError) return fail([e.message]);
      throw e;
    }
    lap("validate", t0);
    // 2. plan: everything that can fail without touching the node
    const t1 = performance.now();
    let routes;
    let nat: NatPlan | undefined;
    try {
      routes = setup.kernelRouteList(derived, next);
      nat = derived.nat.enabled ? setup.natPlan(derived, next) : undefined;
      if (nat) validateNatPlan(nat);
    } catch (e) {
      return fail([`plan: ${(e as Error).message}`]);
    }
    lap("plan", t1);
    // 3. apply: the workers' tables and the kernel's part side by side (the
    // workers apply on their threads while `ip -batch` runs). A kernel part
    // that fails is undone by applyReload, and the workers get the running
    // tables back.
    const t2 = performance.now();
    const tablesApplied = pool.applyTables(toDataplaneTables(derived));
    const kernelErrors = setup.applyReload(routes, nat);
    lap("kernel", t2);
    const res = await tablesApplied;
    lap("tables", t2);
    if (kernelErrors.length) {
      const back = await pool.applyTables(toDataplaneTables(host.derived));
      return fail([...kernelErrors, ...back.errors.map((e) => `restoring the running tables: ${e}`)]);
    }
    // After the new tables (the same port, in order): UDP flows to removed backends go.
    const gone = removedBackends(host.derived.services, derived.services, "udp");
    const gone6 = removedBackends6(host.derived.services6, derived.services6, "udp");
    if (gone.length || gone6.length) pool.broadcast({ type: "flushBackends", id: 0, proto: 17, keys: gone, keys6: gone6 });
    const errors = [...res.errors];
    if (setup.tun && plan.deviceMtu !== mtu.plan?.deviceMtu) {
      try {
        ip("link", "set", "dev", setup.tun.name, "mtu", String(plan.deviceMtu));
        host.log.info({ device: setup.tun.name, mtu: plan.deviceMtu, tunnelMtu: plan.tunnelMtu }, "device MTU changed");
      } catch (e) {
        errors.push(`device MTU ${plan.deviceMtu}: ${(e as Error).message}`);
      }
    }
    // 4. commit
    errors.push(...host.commit(next, derived, plan));
    this.last = { at: Date.now(), ok: errors.length === 0, reason, errors };
    host.metrics.configReloads.inc({ result: errors.length ? "error" : "ok" });
    lap("total", t0);
    host.log.info({ reason, routesAdded: res.routesAdded, routesRemoved: res.routesRemoved, peers: derived.peers.length, ms, errors }, "config reloaded");
    return { ok: errors.length === 0, errors };
  }
}
