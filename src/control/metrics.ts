// Prometheus metrics for overlayd (prom-client). The data path keeps its own
// u64 counters in WASM memory (abi.ts C_*); the control plane polls them and
// `updateFromCounters` turns each poll into increments of the exported
// counters, so /metrics is monotonic even across a worker restart.
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import { REASON_NAMES, VERDICT_NAMES } from "../dataplane/abi.js";

/** Packet directions, each backed by `<direction>_packets` / `<direction>_bytes` in a counter snapshot. */
export const DIRECTIONS = ["rx_pod", "rx_vxlan", "rx_ipip", "tx_vxlan", "tx_ipip", "tx_direct", "to_device"] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** Drop reasons as exported (REASON_NAMES without "none"). */
export const DROP_REASONS = REASON_NAMES.filter((r) => r !== "none");

export interface MetricsOptions {
  /** Metric name prefix (default "overlay_"). */
  prefix?: string;
  /** Also export Node process metrics (CPU, memory, event loop; default false). */
  defaultMetrics?: boolean;
}

/** A data-path counter snapshot: counter name → cumulative value. */
export type CounterSnapshot = Readonly<Record<string, bigint | number>>;

function toBig(v: bigint | number): bigint | undefined {
  if (typeof v === "bigint") return v;
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
}

export interface TableSizes {
  routes: number;
  /** IPv6 routes (node.ipv6); left out: 0. */
  routes6?: number;
  peers: number;
  fdb: number;
  neigh: number;
}

export interface Metrics {
  registry: Registry;
  packets: Counter<"direction">;
  bytes: Counter<"direction">;
  drops: Counter<"reason">;
  verdicts: Counter<"verdict">;
  batches: Counter;
  routes: Gauge;
  routes6: Gauge;
  peers: Gauge;
  fdbEntries: Gauge;
  neighEntries: Gauge;
  configReloads: Counter<"result">;
  /**
   * Apply a counter snapshot (Dataplane.counters() shape: rx_pod_packets,
   * verdict_drop, drop_no_route, …), or several (one per worker, summed).
   * Snapshots are cumulative; the difference from the previous call is
   * added. A value that went down (a worker restarted from zero) counts as
   * a reset: its whole value is added. Unknown keys, and values that are not
   * non-negative integers, are ignored.
   */
  updateFromCounters(snapshot: CounterSnapshot | ReadonlyArray<CounterSnapshot>): void;
  /** Set the table-size gauges (e.g. from the derived tables after a load or reload). */
  setTableSizes(sizes: TableSizes): void;
  /** Conntrack: entries and capacity as gauges; inserts, deletes, expiries,
   *  failed inserts (table full), clashes and invalid TCP packets as counters. */
  setConntrack(stats: ConntrackSnapshot): void;
  /** Packet I/O (the workers' IoStats, summed): cumulative values; the
   *  difference from the previous call is added, a value that went down
   *  counts as a reset. Keys not in IO_EVENTS are ignored. */
  setIo(stats: Readonly<Record<string, number | undefined>>): void;
  /** Packet I/O failures (IoStats.errors, summed over the workers): "op/ERRNO"
   *  -> cumulative count, exported as overlay_io_errors_total{op, errno};
   *  deltas as in setIo. Malformed keys are ignored. */
  setIoErrors(errors: Readonly<Record<string, number>>): void;
}

/** Series of overlay_io_errors_total that exist from the start (at 0). */
export const IO_ERRORS_PRECREATED = [
  ["send", "EMSGSIZE"], ["send", "ENOBUFS"], ["send", "EAGAIN"], ["send", "EIO"],
  ["write", "EAGAIN"], ["write", "EIO"], ["recv", "MSG_TRUNC"],
] as const;

/** The workers' I/O statistics as exported: event label -> IoStats key (src/daemon/worker.ts). */
export const IO_EVENTS = {
  send_errors: "sendErrors",
  write_errors: "writeErrors",
  polls: "polls",
  superframes: "superframes",
  superframes_refused: "refused",
  gro_frames: "groFrames",
  gso_sends: "gsoSends",
  gso_segments: "gsoSegments",
  gso_fallbacks: "gsoFallbacks",
  gso_resent: "gsoResent",
  gro_trains: "groTrains",
  gro_datagrams: "groDatagrams",
  encap_superframes: "encapSuperframes",
  encap_superframes_whole: "encapWhole",
  tunnel_gso_frames: "tnlGsoFrames",
} as const;

export interface ConntrackSnapshot {
  entries: number;
  capacity: number;
  inserts: number;
  deletes: number;
  expired: number;
  insertFailed: number;
  /** IPv6 address names (NAT66) in use and their capacity; absent: 0. */
  names6?: number;
  names6Capacity?: number;
  /** Flows evicted (not assured) so that a new one fits a full table; absent: 0. */
  earlyDrop?: number;
  clash: number;
  invalid: number;
}

/** A fresh registry with overlayd's metrics; every label value is pre-created at 0 so series exist from the start. */
export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const p = opts.prefix ?? "overlay_";
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const packets = new Counter({ name: `${p}packets_total`, help: "Packets handled by the data path, by direction", labelNames: ["direction"] as const, registers });
  const bytes = new Counter({ name: `${p}bytes_total`, help: "Bytes handled by the data path, by direction (inner bytes for rx_pod/to_device/tx_direct, outer for tunnel directions)", labelNames: ["direction"] as const, registers });
  const drops = new Counter({ name: `${p}drops_total`, help: "Packets dropped by the data path, by reason", labelNames: ["reason"] as const, registers });
  const verdicts = new Counter({ name: `${p}verdicts_total`, help: "Data-path verdicts (what happened to each packet)", labelNames: ["verdict"] as const, registers });
  const batches = new Counter({ name: `${p}batches_total`, help: "Batches processed by the data path", registers });
  const routes = new Gauge({ name: `${p}routes`, help: "Routes in the data path's table", registers });
  const routes6 = new Gauge({ name: `${p}routes6`, help: "IPv6 routes in the data path's table (node.ipv6)", registers });
  const peers = new Gauge({ name: `${p}peers`, help: "Configured peers", registers });
  const fdbEntries = new Gauge({ name: `${p}fdb_entries`, help: "VXLAN forwarding database entries (VTEP MAC -> peer)", registers });
  const neighEntries = new Gauge({ name: `${p}neigh_entries`, help: "Neighbour entries (VTEP address -> MAC)", registers });
  const configReloads = new Counter({ name: `${p}config_reloads_total`, help: "Config reloads, by result", labelNames: ["result"] as const, registers });

  for (const d of DIRECTIONS) {
    packets.inc({ direction: d }, 0);
    bytes.inc({ direction: d }, 0);
  }
  for (const r of DROP_REASONS) drops.inc({ reason: r }, 0);
  for (const v of VERDICT_NAMES) verdicts.inc({ verdict: v }, 0);
  for (const r of ["ok", "error"]) configReloads.inc({ result: r }, 0);

  // Which exported series each snapshot key feeds.
  const sinks = new Map<string, (n: number) => void>();
  for (const d of DIRECTIONS) {
    sinks.set(`${d}_packets`, (n) => packets.inc({ direction: d }, n));
    sinks.set(`${d}_bytes`, (n) => bytes.inc({ direction: d }, n));
  }
  for (const r of DROP_REASONS) sinks.set(`drop_${r}`, (n) => drops.inc({ reason: r }, n));
  for (const v of VERDICT_NAMES) sinks.set(`verdict_${v}`, (n) => verdicts.inc({ verdict: v }, n));
  sinks.set("batches", (n) => batches.inc(n));
  const pmtuEvents = new Counter({ name: `${p}pmtu_events_total`, help: "ICMP fragmentation-needed from the underlay about our outer packets: lowered (a peer's path MTU went down), ignored (did not match a peer, port, checksum, or not lower)", labelNames: ["event"] as const, registers });
  for (const e of ["lowered", "ignored"]) {
    pmtuEvents.inc({ event: e }, 0);
    sinks.set(`pmtu_${e}`, (n) => pmtuEvents.inc({ event: e }, n));
  }

  const last = new Map<string, bigint>();

  const ctEntries = new Gauge({ name: `${p}conntrack_entries`, help: "Flows in the conntrack table", registers });
  const ctCapacity = new Gauge({ name: `${p}conntrack_capacity`, help: "Flows the conntrack table holds at most", registers });
  const ctNames6 = new Gauge({ name: `${p}conntrack_ipv6_names`, help: "IPv6 addresses the conntrack table holds for NAT66 flows and configuration (a full table drops new IPv6 flows as ct_full)", registers });
  const ctNames6Cap = new Gauge({ name: `${p}conntrack_ipv6_names_capacity`, help: "IPv6 addresses the conntrack table can hold", registers });
  const ctEvents = new Counter({ name: `${p}conntrack_events_total`, help: "Conntrack events: insert, delete, expire, insert_failed (table full, no flow to evict), clash, invalid (TCP), early_drop (a flow not assured evicted to admit a new one)", labelNames: ["event"] as const, registers });
  const CT_EVENTS = { insert: "inserts", delete: "deletes", expire: "expired", insert_failed: "insertFailed", clash: "clash", invalid: "invalid", early_drop: "earlyDrop" } as const;
  for (const e of Object.keys(CT_EVENTS)) ctEvents.inc({ event: e }, 0);
  const ctLast = new Map<string, number>();
  const ioEvents = new Counter({
    name: `${p}io_events_total`,
    help: "Packet I/O: send/write errors, polls, tun super-frames (read, refused, written after GRO), UDP GSO sends and segments, sockets that fell back from UDP GSO after EIO and the datagrams resent, UDP GRO trains and datagrams, VXLAN datagrams holding a whole super-frame (and those written whole), tunnel GSO frames (tunnel.kernelGso)",
    labelNames: ["event"] as const,
    registers,
  });
  for (const e of Object.keys(IO_EVENTS)) ioEvents.inc({ event: e }, 0);
  const ioLast = new Map<string, number>();
  const ioErrors = new Counter({
    name: `${p}io_errors_total`,
    help: "Packet I/O failures by operation (send: underlay sockets, write: tun/tap, recv: underlay sockets, read: tun/tap) and errno (MSG_TRUNC: a datagram longer than its buffer; bad_slot: a packet outside its slot, never sent)",
    labelNames: ["op", "errno"] as const,
    registers,
  });
  for (const [op, errno] of IO_ERRORS_PRECREATED) ioErrors.inc({ op, errno }, 0);
  const ioErrLast = new Map<string, number>();

  /** Add what a cumulative value grew by since the last call (all of it after a reset). */
  const grow = (lastMap: Map<string, number>, key: string, now: number, add: (n: number) => void) => {
    const before = lastMap.get(key) ?? 0;
    const delta = now >= before ? now - before : now;
    lastMap.set(key, now);
    if (delta > 0) add(delta);
  };

  return {
    registry, packets, bytes, drops, verdicts, batches, routes, routes6, peers, fdbEntries, neighEntries, configReloads,
    updateFromCounters(snapshot) {
      const total = new Map<string, bigint>();
      const snaps: ReadonlyArray<CounterSnapshot> = Array.isArray(snapshot) ? snapshot : [snapshot as CounterSnapshot];
      for (const snap of snaps) {
        for (const [k, v] of Object.entries(snap)) {
          const b = toBig(v);
          if (b !== undefined) total.set(k, (total.get(k) ?? 0n) + b);
        }
      }
      for (const [key, now] of total) {
        const sink = sinks.get(key);
        if (!sink) continue;
        const before = last.get(key) ?? 0n;
        const delta = now >= before ? now - before : now;
        last.set(key, now);
        if (delta > 0n) sink(Number(delta));
      }
    },
    setConntrack(st) {
      ctEntries.set(st.entries);
      ctCapacity.set(st.capacity);
      ctNames6.set(st.names6 ?? 0);
      ctNames6Cap.set(st.names6Capacity ?? 0);
      for (const [event, key] of Object.entries(CT_EVENTS)) grow(ctLast, event, st[key] ?? 0, (n) => ctEvents.inc({ event }, n));
    },
    setIo(st) {
      for (const [event, key] of Object.entries(IO_EVENTS)) {
        const now = st[key];
        if (typeof now === "number" && Number.isSafeInteger(now) && now >= 0) grow(ioLast, event, now, (n) => ioEvents.inc({ event }, n));
      }
    },
    setIoErrors(errs) {
      for (const [key, now] of Object.entries(errs)) {
        const m = /^(send|write|recv|read)\/([A-Za-z0-9_]+)$/.exec(key);
        if (!m || typeof now !== "number" || !Number.isSafeInteger(now) || now < 0) continue;
        grow(ioErrLast, key, now, (n) => ioErrors.inc({ op: m[1], errno: m[2] }, n));
      }
    },
    setTableSizes(s) {
      routes.set(s.routes);
      routes6.set(s.routes6 ?? 0);
      peers.set(s.peers);
      fdbEntries.set(s.fdb);
      neighEntries.set(s.neigh);
    },
  };
}

/** Cluster membership from etcd (src/membership/): connection state, peers, lease and watch events. */
export interface EtcdMetrics {
  /** 1 while the last etcd call, keepalive or watch (re)connect succeeded, 0 after a failure. */
  connected: Gauge;
  /** Peers from etcd in the running tables. */
  peers: Gauge;
  /** This node's lease TTL in seconds (0 until it holds one). */
  leaseTtl: Gauge;
  /** put, delete (watch), resync, invalid_record, dropped_peer, keepalive_failed, lease_lost, lease_reacquired. */
  events: Counter<"event">;
}

export const ETCD_EVENTS = ["put", "delete", "resync", "invalid_record", "dropped_peer", "keepalive_failed", "lease_lost", "lease_reacquired"] as const;

/** The etcd series, registered on `registry` (the daemon's). */
export function createEtcdMetrics(registry: Registry, prefix = "overlay_"): EtcdMetrics {
  const registers = [registry];
  const connected = new Gauge({ name: `${prefix}etcd_connected`, help: "1 while etcd answers (last call, keepalive or watch reconnect succeeded)", registers });
  const peers = new Gauge({ name: `${prefix}etcd_peers`, help: "Peers learnt from etcd in the running tables", registers });
  const leaseTtl = new Gauge({ name: `${prefix}etcd_lease_ttl_seconds`, help: "TTL of this node's etcd lease", registers });
  const events = new Counter({ name: `${prefix}etcd_events_total`, help: "Membership events: watch puts/deletes, resyncs, invalid records, dropped peers, keepalive failures, lost and re-acquired leases", labelNames: ["event"] as const, registers });
  for (const e of ETCD_EVENTS) events.inc({ event: e }, 0);
  return { connected, peers, leaseTtl, events };
}

/** Route events by where the route came from (config, etcd, bgp): the data
 *  path's routes added and removed by each reload, and for the routing table
 *  (src/routing/) its own: learned, withdrawn, resync, monitor_restart,
 *  read_error, dropped (left out: a clash with the config or etcd). */
export interface RouteMetrics {
  events: Counter<"source" | "event">;
}

export const ROUTE_SOURCES = ["config", "etcd", "bgp"] as const;

export function createRouteMetrics(registry: Registry, prefix = "overlay_"): RouteMetrics {
  const events = new Counter({ name: `${prefix}route_events_total`, help: "Route events by source (config, etcd, bgp): routes added/removed in the data path's tables; for bgp also the routing table's learned/withdrawn routes, resyncs, monitor restarts, read errors, dropped routes", labelNames: ["source", "event"] as const, registers: [registry] });
  for (const source of ROUTE_SOURCES) for (const event of ["added", "removed"]) events.inc({ source, event }, 0);
  return { events };
}
