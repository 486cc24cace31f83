// overlay_route_events_total{source,event=added|removed}: what each reload (and
// the start) changed in the data path's routes, by where the route came from.
import type { DerivedTables } from "../config/derive.js";
import type { RouteMetrics } from "../control/metrics.js";

export type RouteSource = "config" | "etcd" | "bgp";

function routesBySource(d: DerivedTables, sourceOf: (peer: string) => RouteSource): Map<string, RouteSource> {
  const out = new Map<string, RouteSource>();
  for (const r of d.routes) {
    const nh = d.nexthops[r.nh];
    const peer = nh && nh.peer !== 0xffff ? d.peers[nh.peer] : undefined;
    out.set(`${r.prefix}/${r.len}>${nh?.kind}:${peer?.name ?? ""}`, peer ? sourceOf(peer.name) : "config");
  }
  return out;
}

/** Counts the routes each table set adds and removes against the one before,
 *  a removed route by the source it had when it went in. */
export class RouteEventCounter {
  private last = new Map<string, RouteSource>();

  constructor(private readonly m: RouteMetrics) {}

  update(tables: DerivedTables, sourceOf: (peer: string) => RouteSource): void {
    const next = routesBySource(tables, sourceOf);
    const tally = new Map<string, number>();
    const add = (source: RouteSource, event: "added" | "removed") => tally.set(`${source}|${event}`, (tally.get(`${source}|${event}`) ?? 0) + 1);
    for (const [k, s] of next) if (!this.last.has(k)) add(s, "added");
    for (const [k, s] of this.last) if (!next.has(k)) add(s, "removed");
    for (const [k, n] of tally) {
      const [source, event] = k.split("|");
      this.m.events.inc({ source, event }, n);
    }
    this.last = next;
  }
}
