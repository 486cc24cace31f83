// overlayd as a consumer of the routes a routing daemon installs (config
// `routing:`): follows the kernel table (table.ts), and on every change asks
// the daemon for a reload, whose config load adds the learned peers
// (peers.ts) to the file's (and etcd's). The reload then reconciles kernel
// routes and data-path tables as for any config change; a withdrawn route
// (BIRD's session down, hold timer) disappears from the table, so from the
// next reload's peers, so from the kernel and the LPM.
import type { Logger } from "pino";
import type { LoadResult } from "../config/load.js";
import type { RoutingConfig } from "../config/schema.js";
import type { RouteMetrics } from "../control/metrics.js";
import type { Kernel } from "../daemon/kernel.js";
import { BGP_PEER_PREFIX, withLearnedPeers, type Dropped } from "./peers.js";
import { diffRoutes, KernelTable, type LearnedRoute } from "./table.js";

export interface RoutingOptions {
  settings: RoutingConfig;
  kernel: Kernel;
  log: Logger;
  metrics: RouteMetrics;
  /** The table changed: reload (coalesced by the caller). */
  onChange: (why: string) => void;
}

export class Routing {
  private readonly table: KernelTable;
  private learned: readonly LearnedRoute[] = [];
  private lastPeers = new Set<string>();
  private lastDropped: Dropped[] = [];
  private droppedLogged = "";
  private changedAt = Date.now();

  constructor(private readonly opts: RoutingOptions) {
    this.table = new KernelTable({
      table: opts.settings.table, kernel: opts.kernel, log: opts.log, resyncMs: opts.settings.resyncSeconds * 1000,
      onEvent: (event) => opts.metrics.events.inc({ source: "bgp", event }),
      onRoutes: (routes, why, readMs) => {
        const d = diffRoutes(this.learned, routes);
        this.learned = routes;
        this.changedAt = Date.now();
        opts.metrics.events.inc({ source: "bgp", event: "learned" }, d.added);
        opts.metrics.events.inc({ source: "bgp", event: "withdrawn" }, d.deleted);
        opts.log.info({ table: opts.settings.table, routes: routes.length, added: d.added, withdrawn: d.deleted, why, readMs }, "routing table changed");
        opts.onChange(`routing table ${opts.settings.table} changed`);
      },
    });
  }

  /** Read the table (throws when it cannot be read) and follow it. */
  start(): void {
    this.table.start();
  }

  stop(): void {
    this.table.stop();
  }

  /** The loaded config with the learned peers added (the file's and etcd's win). */
  merge(loaded: LoadResult): LoadResult {
    if (!loaded.ok || !loaded.config.routing) return loaded;
    const { config, peers, dropped } = withLearnedPeers(loaded.config, this.learned);
    this.lastPeers = new Set(peers.map((p) => p.name));
    this.lastDropped = dropped;
    const key = JSON.stringify(dropped);
    if (key !== this.droppedLogged) {
      this.droppedLogged = key;
      this.opts.metrics.events.inc({ source: "bgp", event: "dropped" }, dropped.length);
      for (const d of dropped.slice(0, 20)) this.opts.log.warn(d, "learned route left out of the tables");
      if (dropped.length > 20) this.opts.log.warn({ more: dropped.length - 20 }, "more learned routes left out");
    }
    return { ok: true, config };
  }

  /** Whether the peer called `name` came from the routing table. */
  owns(name: string): boolean {
    return name.startsWith(BGP_PEER_PREFIX) && this.lastPeers.has(name);
  }

  status() {
    return {
      source: this.opts.settings.source,
      table: this.opts.settings.table,
      encapsulation: this.opts.settings.encapsulation,
      learnedRoutes: this.learned.length,
      peers: this.lastPeers.size,
      lastChangeSecondsAgo: Math.round((Date.now() - this.changedAt) / 1000),
      dropped: this.lastDropped.slice(0, 100),
      droppedCount: this.lastDropped.length,
    };
  }
}
