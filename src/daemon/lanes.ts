// The lane pool: one data-path worker per tun queue, each with its own
// sockets (lane 0 also reads the IPIP socket: raw sockets see every packet).
// Starts and stops them, broadcasts tables (resolving once every lane
// applied them), and sums their statistics into the metrics. Lane 0 also
// reads routers' fragmentation-needed about our outer packets (a raw ICMP
// socket; assembly/pipeline/pmtu.ts) and reports lowered path MTUs.
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import { u32ToIp } from "../config/net.js";
import type { Config } from "../config/schema.js";
import type { Metrics } from "../control/metrics.js";
import { testHooksEnabled } from "../control/admin.js";
import type { ConntrackStats, PmtuUpdate } from "../dataplane/dataplane.js";
import type { DataplaneTables } from "../dataplane/tables.js";
import { closeQuiet } from "../io/libc.js";
import { createDataplaneMemory } from "../dataplane/wasm.js";
import { openIcmp6RecvSocket, openIcmpRecvSocket, openIp6TunnelSocket, openIpipRecvSocket, openRawSendSocket, openRawSendSocket6, openVxlanSocket, openVxlanSocket6 } from "../io/sockets.js";
import { attachSteering } from "../io/steer.js";
import { enableUdpGro, openUdpSendSockets } from "../io/udpgso.js";
import type { TunDevice } from "../io/tun.js";
import type { FromWorker, IoStats, ToWorker, WorkerConfig } from "./worker.js";

/** UDP sockets VXLAN leaves from with offloads on: the outer source ports a flow hashes onto. */
const GSO_SOCKETS = 8;

export interface Lane {
  worker: Worker;
  port: MessagePort;
  counters: Record<string, bigint>;
  io?: IoStats;
  ct?: ConntrackStats;
  /** Loop turns of the worker (it bumps element 0): the admin surface's health and watchdog. */
  heartbeat: Int32Array;
}

export interface TablesApplied {
  errors: string[];
  routesAdded: number;
  routesRemoved: number;
}

export interface LaneDevices {
  tuns: TunDevice[];
  gsoTaps: TunDevice[];
  gsoTapMac: string;
  ioUring: boolean;
  /** The tuns were opened with TUN_F_TSO6 (GRO may write them GSO_TCPV6 frames). */
  tso6?: boolean;
}

export class LanePool {
  lanes: Lane[] = [];
  counters: Record<string, bigint> = {};
  ioStats: IoStats = { sendErrors: 0, writeErrors: 0, polls: 0, superframes: 0, refused: 0, groFrames: 0 };
  private fds: number[] = [];
  private seq = 0;
  /** Table broadcasts waiting for every lane's "applied". */
  private pending = new Map<number, { left: number; errors: Set<string>; added: number; removed: number; done: () => void }>();

  private gsoFallbackLogged = false;

  constructor(private readonly deps: {
    log: Logger;
    metrics: Metrics;
    /** Keys every worker's conntrack hash (random per start). */
    natHashSeed: Uint8Array;
    onFatal: (reason: string) => void;
    /** A lane learnt lower path MTUs from the underlay (the others must be told). */
    onPathMtu: (updates: PmtuUpdate[], from: Lane) => void;
  }) {}

  /** Start one lane per tun queue with `tables`. Throws when a worker fails to come up (the caller stops the pool). */
  async start(c: Config, underlayAddr: number, dev: LaneDevices, tables: () => DataplaneTables): Promise<void> {
    // Several lanes: one shared memory, lane 0's connection table everyone's
    // (a flow's two directions may reach different lanes once translated).
    const shared = dev.tuns.length > 1 ? { memory: createDataplaneMemory(), ctHeader: 0 } : undefined;
    for (let q = 0; q < dev.tuns.length; q++) {
      const ctHeader = await this.startLane(q, c, underlayAddr, dev, tables, shared && { memory: shared.memory, attach: q > 0 ? shared.ctHeader : undefined });
      if (shared && q === 0) shared.ctHeader = ctHeader;
    }
  }

  /** Start lane `q`; resolves with its connection table's header (0: none). */
  private async startLane(q: number, c: Config, underlayAddr: number, dev: LaneDevices, tables: () => DataplaneTables,
    lanesShare?: { memory: WebAssembly.Memory; attach?: number }): Promise<number> {
    const lanes = dev.tuns.length;
    const shared = lanes > 1;
    const underlay = u32ToIp(underlayAddr);
    // Large socket buffers absorb bursts while the worker is busy with a batch;
    // the 212 KiB default overflowed (UdpRcvbufErrors) at a few hundred Mbit/s.
    // Several lanes share the VXLAN port with SO_REUSEPORT; the socket of
    // lane q is the group's q-th, and a BPF program picks it by the inner
    // flow, the same for both directions (src/io/steer.ts), so a flow stays
    // on one lane and is never reordered. The program belongs to the group:
    // attached once, with the first socket, it decides for those bound later.
    const vx = openVxlanSocket({ bindAddr: underlay, port: c.tunnel.port, rcvBuf: 16 << 20, reusePort: shared });
    this.fds.push(vx);
    if (shared && q === 0) attachSteering(vx, lanes);
    let ipip = -1, icmp = -1, sit = -1;
    if (q === 0) {
      ipip = openIpipRecvSocket({ rcvBuf: 16 << 20 });
      this.fds.push(ipip);
      if (c.node.ipv6) {
        // IPv6 from dual-stack IPIP peers comes as protocol 41.
        sit = openIpipRecvSocket({ rcvBuf: 16 << 20, proto: 41 });
        this.fds.push(sit);
      }
      // Routers' fragmentation-needed about our outer packets (assembly/pipeline/pmtu.ts).
      icmp = openIcmpRecvSocket({ rcvBuf: 1 << 20 });
      this.fds.push(icmp);
    }
    // The IPv6 underlay (peers[].underlay6), ready whenever the node has an
    // IPv6 underlay address, so a reload may move peers onto it: VXLAN in
    // UDP/IPv6 on every lane (its own SO_REUSEPORT group, steered by the
    // inner flow as IPv4's: the program reads past the UDP header), IPv4/IPv6
    // in IPv6 and packets too big on lane 0.
    const underlay6 = c.node.ipv6?.underlayAddress;
    let vxlan6 = -1, icmp6 = -1;
    const ip6tnl: number[] = [];
    if (underlay6 !== undefined) {
      vxlan6 = openVxlanSocket6({ port: c.tunnel.port, rcvBuf: 16 << 20, reusePort: shared });
      this.fds.push(vxlan6);
      if (shared && q === 0) attachSteering(vxlan6, lanes);
    }
    if (underlay6 !== undefined && q === 0) {
      // Routers' packet too big about our outer IPv6 packets (src/daemon/worker/pmtu6.ts).
      icmp6 = openIcmp6RecvSocket({ rcvBuf: 1 << 20 });
      this.fds.push(icmp6);
      for (const proto of [4, 41] as const) {
        const fd = openIp6TunnelSocket({ proto, rcvBuf: 8 << 20 });
        this.fds.push(fd);
        ip6tnl.push(fd);
      }
    }
    const send = openRawSendSocket({ sndBuf: 8 << 20 });
    this.fds.push(send);
    // NAT66 masquerades IPv6 out through the node's stack; tunnel packets to
    // peers reached over IPv6 leave the same way (header included).
    const send6 = c.node.ipv6 && (c.nat.enabled || underlay6 !== undefined) ? openRawSendSocket6({ sndBuf: 8 << 20 }) : -1;
    if (send6 >= 0) this.fds.push(send6);
    // Offloads: VXLAN trains leave with UDP GSO from a few UDP sockets (their
    // ports are the outer source ports) and arrive coalesced (UDP GRO).
    let gsoFds: number[] | undefined;
    let gsoDfFds: number[] | undefined;
    let gso6Fds: number[] | undefined;
    if (c.tunnel.udpOffloads) {
      const socks = openUdpSendSockets(underlay, GSO_SOCKETS, { ttl: c.tunnel.outerTtl, sndBuf: 8 << 20 });
      this.fds.push(...socks.fds);
      gsoFds = socks.fds;
      // Outer DF follows the inner packet's, as without offloads: DF is a socket option.
      const dfSocks = openUdpSendSockets(underlay, GSO_SOCKETS, { ttl: c.tunnel.outerTtl, sndBuf: 8 << 20, df: true });
      this.fds.push(...dfSocks.fds);
      gsoDfFds = dfSocks.fds;
      if (underlay6 !== undefined) {
        // Over IPv6 nothing is fragmented at the source: one set.
        gso6Fds = openUdpSendSockets(underlay6, GSO_SOCKETS, { ttl: c.tunnel.outerTtl, sndBuf: 8 << 20 }).fds;
        this.fds.push(...gso6Fds);
      }
      enableUdpGro(vx);
      if (vxlan6 >= 0) enableUdpGro(vxlan6);
    }
    const { port1, port2 } = new MessageChannel();
    const config: WorkerConfig = {
      tunFd: dev.tuns[q].fd,
      vxlanFd: vx,
      ipipFd: ipip,
      sitFd: sit,
      icmpFd: icmp,
      sendFd: send,
      send6Fd: send6,
      vxlan6Fd: vxlan6,
      ip6tnlFds: ip6tnl,
      icmp6Fd: icmp6,
      batch: 256,
      slotSize: 2048,
      tbl8Groups: 4096,
      tables: tables(),
      statsIntervalMs: 1000,
      offloads: c.node.device.offloads,
      tunTso6: dev.tso6 === true,
      ioUring: dev.ioUring,
      // Carved once: enabling NAT by a reload needs no restart; resizing does.
      natMaxFlows: c.nat.conntrack.maxFlows,
      natNames6: c.node.ipv6 ? c.nat.conntrack.maxFlows : 0,
      natHashSeed: this.deps.natHashSeed,
      memory: lanesShare?.memory,
      natAttach: lanesShare?.attach || undefined,
      natShared: lanesShare !== undefined && q === 0,
      gsoFds,
      gsoDfFds,
      gso6Fds,
      gsoTap: dev.gsoTaps[q] ? { fd: dev.gsoTaps[q].fd, mac: dev.gsoTapMac } : undefined,
      heartbeat: new SharedArrayBuffer(4),
      testHooks: testHooksEnabled(),
    };
    const workerFile = fileURLToPath(new URL("./worker.js", import.meta.url));
    const worker = new Worker(workerFile, { workerData: { port: port2, config }, transferList: [port2] });
    const lane: Lane = { worker, port: port1, counters: {}, heartbeat: new Int32Array(config.heartbeat!) };
    // In the list before it is ready: a reload that happens meanwhile (etcd
    // peers arriving at start) must reach it; the worker reads its messages
    // once its loop runs, after the tables it started with.
    this.lanes.push(lane);
    worker.on("error", (e) => this.deps.log.error({ err: e, queue: q }, "data-path worker crashed"));
    const ctHeader = await new Promise<number>((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if (m.type === "ready") resolve(m.ctHeader);
        else if (m.type === "fatal") reject(new Error("data-path worker failed: " + m.message));
      };
      port1.on("message", onMsg);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`data-path worker exited with ${code}`)));
    });
    port1.on("message", (m: FromWorker) => this.onWorker(m, lane));
    worker.on("exit", (code) => {
      if (this.lanes.includes(lane)) this.deps.onFatal(`data-path worker ${q} exited (code ${code})`);
    });
    return ctHeader;
  }

  private onWorker(m: FromWorker, lane: Lane): void {
    if (m.type === "stats") {
      lane.counters = m.counters;
      lane.io = m.io;
      lane.ct = m.ct;
      this.aggregateStats();
    } else if (m.type === "applied") {
      if (m.errors.length) this.deps.log.warn({ errors: m.errors }, "some table entries were not applied");
      const p = this.pending.get(m.id);
      if (p) {
        for (const e of m.errors) p.errors.add(e);
        p.added = Math.max(p.added, m.routesAdded);
        p.removed = Math.max(p.removed, m.routesRemoved);
        if (--p.left === 0) {
          this.pending.delete(m.id);
          p.done();
        }
      }
    } else if (m.type === "flushed") {
      if (m.deleted) this.deps.log.info({ deleted: m.deleted }, "deleted the UDP flows of backends removed from their services");
    } else if (m.type === "pmtu") {
      this.deps.onPathMtu(m.updates, lane);
    } else if (m.type === "fatal") {
      this.deps.onFatal("data-path worker failed: " + m.message);
    }
  }

  /** Counters, I/O and conntrack statistics summed over the lanes. */
  private aggregateStats(): void {
    const counters: Record<string, bigint> = {};
    for (const l of this.lanes) for (const [k, v] of Object.entries(l.counters)) counters[k] = (counters[k] ?? 0n) + v;
    this.counters = counters;
    const io = { ...this.ioStats };
    for (const k of Object.keys(io)) if (k !== "errors") (io as unknown as Record<string, number>)[k] = 0;
    const errors: Record<string, number> = {};
    for (const l of this.lanes) {
      for (const [k, v] of Object.entries(l.io ?? {})) {
        if (k === "errors") for (const [e, n] of Object.entries(v as Record<string, number>)) errors[e] = (errors[e] ?? 0) + n;
        else (io as unknown as Record<string, number>)[k] = ((io as unknown as Record<string, number>)[k] ?? 0) + (v as number);
      }
    }
    io.errors = errors;
    if ((io.gsoFallbacks ?? 0) > 0 && !this.gsoFallbackLogged) {
      this.gsoFallbackLogged = true;
      this.deps.log.warn({ sockets: io.gsoFallbacks }, "UDP GSO sends failed with EIO (the route or NIC cannot segment): those sockets send single datagrams now");
    }
    this.ioStats = io;
    const { metrics } = this.deps;
    metrics.updateFromCounters(this.lanes.map((l) => l.counters));
    metrics.setIo(io as unknown as Record<string, number | undefined>);
    metrics.setIoErrors(errors);
    const cts = this.lanes.map((l) => l.ct).filter((x): x is ConntrackStats => x !== undefined);
    if (cts.length) {
      const sum = { ...cts[0] };
      for (const c of cts.slice(1)) for (const k of Object.keys(sum) as (keyof ConntrackStats)[]) sum[k] += c[k];
      metrics.setConntrack(sum);
    }
  }

  /** Post `msg` to every lane. */
  broadcast(msg: ToWorker): void {
    for (const l of this.lanes) l.port.postMessage(msg);
  }

  /** Send new tables to every lane; resolves once each applied them. */
  applyTables(tables: DataplaneTables): Promise<TablesApplied> {
    const res: TablesApplied = { errors: [], routesAdded: 0, routesRemoved: 0 };
    if (!this.lanes.length) return Promise.resolve(res);
    const id = ++this.seq;
    return new Promise<TablesApplied>((done) => {
      const p = { left: this.lanes.length, errors: new Set<string>(), added: 0, removed: 0, done: () => done({ errors: [...p.errors], routesAdded: p.added, routesRemoved: p.removed }) };
      this.pending.set(id, p);
      this.broadcast({ type: "tables", tables, id });
    });
  }

  /** Stop every worker (2 s grace, then terminate; a worker hung inside a
   *  system call does not even die from that: given up on after 5 s, so the
   *  node is still cleaned up) and close the lanes' sockets. Idempotent. */
  async stop(): Promise<void> {
    const lanes = this.lanes;
    this.lanes = [];
    await Promise.all(lanes.map(async (l) => {
      const exited = new Promise<void>((r) => l.worker.once("exit", () => r()));
      l.port.postMessage({ type: "stop" } satisfies ToWorker);
      const timer = setTimeout(() => void l.worker.terminate(), 2000);
      let giveUp: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => (giveUp = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      clearTimeout(giveUp);
      l.port.close();
    }));
    for (const p of this.pending.values()) p.done(); // nobody will answer now
    this.pending.clear();
    for (const fd of this.fds.splice(0)) closeQuiet(fd);
  }
}
