// The tables a data-path instance runs with, and applying a new set on top
// of the current one so that a reload touches only what changed: routes are
// diffed by RouteRules, neighbour/FDB keys that vanished are deleted, the
// rest is written in place. Called between batches on the worker's thread,
// so a packet sees either the old or the new entry, never a torn one.
import type { Dataplane, NatParams, NexthopKind, NodeParams, ServiceFrontend, ServiceFrontend6 } from "./dataplane.js";
import { RouteRules } from "./routes.js";
import { RouteRules6 } from "./routes6.js";
import { bigintToIpv6 } from "../config/net6.js";

export interface DataplaneTables {
  node: NodeParams;
  /** underlay6: reached over the IPv6 underlay at this address (peers[].underlay6). */
  peers: Array<{ underlay: number; vtepMac: bigint; underlay6?: bigint }>;
  nexthops: Array<{ kind: NexthopKind; peer: number; gateway: number }>;
  routes: Array<{ prefix: number; len: number; nh: number }>;
  /** IPv6 routes (128-bit bigint prefixes); left out: none. */
  routes6?: Array<{ prefix: bigint; len: number; nh: number }>;
  neigh: Array<{ ip: number; mac: bigint }>;
  fdb: Array<{ mac: bigint; peer: number }>;
  /** NAT stage parameters (needs Dataplane.natSetup first when enabled). */
  nat?: NatParams;
  /** Service frontends; rewritten as a whole when they change. */
  services?: ServiceFrontend[];
  /** IPv6 service frontends (NAT66), rewritten with `services`. */
  services6?: ServiceFrontend6[];
}

export interface ApplyResult {
  routesAdded: number;
  routesRemoved: number;
  peers: number;
  errors: string[];
}

export class TableState {
  readonly rules: RouteRules;
  readonly rules6: RouteRules6;
  private current?: DataplaneTables;
  /** Called after every apply with the tables now in force (the worker keeps what its sockets need in step). */
  onApplied?: (t: DataplaneTables) => void;

  constructor(private readonly dp: Dataplane) {
    this.rules = new RouteRules(dp.lpmBackend);
    this.rules6 = new RouteRules6(dp.lpm6Backend);
  }

  get tables(): DataplaneTables | undefined {
    return this.current;
  }

  /** Bring the instance from the current tables to `next`. Errors (a full
   *  table, an out-of-range index) are collected, not thrown, so one bad
   *  entry does not stop the rest from applying. */
  apply(next: DataplaneTables): ApplyResult {
    const errors: string[] = [];
    const prev = this.current;
    const attempt = (what: string, fn: () => void) => {
      try {
        fn();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    attempt("node", () => this.dp.configure(next.node));
    next.peers.forEach((p, i) =>
      attempt(`peer ${i}`, () => {
        this.dp.setPeer(i, p.underlay, p.vtepMac);
        if (p.underlay6) this.dp.setPeer6(i, p.underlay6);
      }),
    );
    for (let i = next.peers.length; i < (prev?.peers.length ?? 0); i++) attempt(`peer ${i}`, () => this.dp.clearPeer(i));
    next.nexthops.forEach((n, i) => attempt(`next hop ${i}`, () => this.dp.setNexthop(i, n.kind, n.peer, n.gateway)));
    const keepNeigh = new Set(next.neigh.map((n) => n.ip >>> 0));
    for (const n of prev?.neigh ?? []) if (!keepNeigh.has(n.ip >>> 0)) this.dp.neighDelete(n.ip);
    for (const n of next.neigh) attempt(`neighbour ${n.ip >>> 0}`, () => this.dp.neighSet(n.ip, n.mac));
    const keepFdb = new Set(next.fdb.map((f) => f.mac));
    for (const f of prev?.fdb ?? []) if (!keepFdb.has(f.mac)) this.dp.fdbDelete(f.mac);
    for (const f of next.fdb) attempt(`fdb ${f.mac.toString(16)}`, () => this.dp.fdbSet(f.mac, f.peer));
    const diff = this.rules.replaceAll(next.routes.map((r) => ({ prefix: r.prefix, len: r.len, nh: r.nh })));
    for (const f of diff.failed) errors.push(`route ${f.route.prefix >>> 24}.${(f.route.prefix >>> 16) & 255}.${(f.route.prefix >>> 8) & 255}.${f.route.prefix & 255}/${f.route.len}: status ${f.status}`);
    const diff6 = this.rules6.replaceAll((next.routes6 ?? []).map((r) => ({ prefix: r.prefix, len: r.len, nh: r.nh })));
    for (const f of diff6.failed) errors.push(`route ${bigintToIpv6(f.route.prefix)}/${f.route.len}: status ${f.status}`);
    if (next.services && JSON.stringify([next.services, next.services6]) !== JSON.stringify([prev?.services, prev?.services6])) {
      attempt("services", () => this.dp.setServices(next.services!, next.services6));
    }
    if (next.nat) attempt("nat", () => this.dp.natConfigure(next.nat!));
    this.current = next;
    this.onApplied?.(next);
    return { routesAdded: diff.added + diff.changed + diff6.added + diff6.changed, routesRemoved: diff.removed + diff6.removed, peers: next.peers.length, errors };
  }
}
