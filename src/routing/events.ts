// overlay_route_events_total{source,event=added|removed}: what each reload (and
// the start) changed in the data path's routes, by where the route came from.
import type { DerivedTables } from "../config/derive.js";
import type { RouteMetrics } from "../control/metrics.js";

type Source = "config" | "etcd" | "bgp";

function routesBySource(d: DerivedTables, sourceOf: (peer: string) => Source): Map<string, Source> {
  const out = new Map<string, Source>();
  for (const r of d.routes) {
    const nh = d.nexthops[r.nh];
    const peer = nh && nh.peer !== 0xffff ? d.peers[nh.peer] : undefined;
    out.set(`${r.prefix}/${r.len}>${nh?.kind}:${peer?.name ?? ""}`, peer ? sourceOf(peer.name) : "config");
  }
  return out;
}

/** Count the routes `after` adds to and removes from `before` (undefined: none before). */
export function countRouteEvents(m: RouteMetrics, before: DerivedTables | undefined, after: DerivedTables, sourceOf: (peer: string) => Source): void {
  const a = before ? routesBySource(before, sourceOf) : new Map<string, Source>();
  const b = routesBySource(after, sourceOf);
  const tally = new Map<string, number>();
  const add = (source: Source, event: "added" | "removed") => tally.set(`${source}|${event}`, (tally.get(`${source}|${event}`) ?? 0) + 1);
  for (const [k, s] of b) if (!a.has(k)) add(s, "added");
  for (const [k, s] of a) if (!b.has(k)) add(s, "removed");
  for (const [k, n] of tally) {
    const [source, event] = k.split("|");
    m.events.inc({ source, event }, n);
  }
}
