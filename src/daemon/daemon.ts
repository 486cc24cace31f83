// overlayd's control plane: config -> tables -> worker; the node's device,
// sockets and kernel routes; hot reload; shutdown. The admin API and the
// metrics listener are src/control/admin.ts (the daemon is its AdminTarget).
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, watch, type FSWatcher } from "node:fs";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import { loadConfigFile, type LoadResult } from "../config/load.js";
import { Membership } from "../membership/membership.js";
import { deriveTables, queueCount, type DerivedTables } from "../config/derive.js";
import { removedBackends } from "../config/backends.js";
import type { Config } from "../config/schema.js";
import { formatMac, u32ToIp } from "../config/net.js";
import { AdminServer, testHooksEnabled, type AdminLane, type AdminTarget } from "../control/admin.js";
import { createEtcdMetrics, createMetrics, type Metrics } from "../control/metrics.js";
import type { DataplaneTables } from "../dataplane/tables.js";
import { closeTun, configureLink, ip, openTun, setTunOffload, setVnetHdrSize, type TunDevice } from "../io/tun.js";
import { openIcmpRecvSocket, openIpipRecvSocket, openRawSendSocket, openVxlanSocket } from "../io/sockets.js";
import { attachSteering } from "../io/steer.js";
import { TunRing } from "../io/uring.js";
import { enableUdpGro, openUdpSendSockets } from "../io/udpgso.js";

/** UDP sockets VXLAN leaves from with offloads on: the outer source ports a flow hashes onto. */
const GSO_SOCKETS = 8;
import { closeQuiet, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO_ECN, TUN_F_UDP_TUNNEL_GSO, TUN_F_UDP_TUNNEL_GSO_CSUM } from "../io/libc.js";
import type { FromWorker, IoStats, ToWorker, WorkerConfig } from "./worker.js";
import type { ConntrackStats, PmtuUpdate } from "../dataplane/dataplane.js";
import { checkPrivileges, KernelRoutes, setSysctl } from "./system.js";
import { NodeNat, type NatPlan } from "./natsetup.js";
import { podStatus, removeNodeState, writeNodeState } from "./nodestate.js";
import { LinkMtuWatcher, MtuError, pathMtuList, planMtu, PMTU_TTL_MS, readLinkMtu, underlayDeviceOf, type MtuPlan, type PathMtu } from "./mtu.js";

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
}

function toDataplaneTables(d: DerivedTables): DataplaneTables {
  return {
    node: d.node,
    nat: { enabled: d.nat.enabled, masquerade: d.nat.masquerade, nodeIp: d.nat.nodeIp, snatAddress: d.nat.snatAddress, portRange: d.nat.portRange, timeouts: d.nat.timeouts },
    services: d.services.map((f) => ({ protocol: f.protocol, addr: f.addr, port: f.port, nodePort: f.nodePort, backends: f.backends })),
    peers: d.peers.map((p) => ({ underlay: p.underlay, vtepMac: p.vtepMac })),
    nexthops: d.nexthops.map((n) => ({ kind: n.kind, peer: n.peer ?? 0xffff, gateway: n.gateway ?? 0 })),
    routes: d.routes,
    neigh: d.neigh,
    fdb: d.fdb,
  };
}

interface Lane {
  worker: Worker;
  port: MessagePort;
  counters: Record<string, bigint>;
  io?: IoStats;
  ct?: ConntrackStats;
  /** Loop turns of the worker (it bumps element 0): the admin surface's health and watchdog. */
  heartbeat: Int32Array;
}

export class Daemon implements AdminTarget {
  private config!: Config;
  private derived!: DerivedTables;
  /** The tables the workers were last sent: a lane started while a reload
   *  is in flight (etcd peers arriving at start) begins with these, since
   *  `derived` changes only once every running lane has applied them. */
  private sentTables?: DataplaneTables;
  /** node.device.ioUring, once a ring could be set up here. */
  private ioUring = false;
  private tun?: TunDevice;
  private fds: number[] = [];
  /** One data-path worker per tun queue (IFF_MULTI_QUEUE), each with its own
   *  sockets; lane 0 also reads the IPIP socket (raw sockets see every packet). */
  private lanes: Lane[] = [];
  /** The tun's further queues (lane i > 0 reads queue i). */
  private queueTuns: TunDevice[] = [];
  /** tunnel.kernelGso: the tap's queues (one per lane) and its MAC, or none. */
  private gsoTaps: TunDevice[] = [];
  private gsoTapMac = "";
  private admin?: AdminServer;
  private watcher?: FSWatcher;
  private kernelRoutes = new KernelRoutes();
  /** Policy routing, tc steering and reserved ports for NAT (natsetup.ts). */
  private nodeNat = new NodeNat();
  private counters: Record<string, bigint> = {};
  private ioStats: IoStats = { sendErrors: 0, writeErrors: 0, polls: 0, superframes: 0, refused: 0, groFrames: 0 };
  private reloadSeq = 0;
  private reloadTimer?: NodeJS.Timeout;
  private readonly startedAt = Date.now();
  /** Keys the workers' conntrack hashes, new at every start (show status has a digest of it). */
  private readonly ctHashSeed = randomBytes(16);
  private lastReload: { at: number; ok: boolean; errors: string[] } | undefined;
  /** Pod CIDR lease and peers from etcd, when configured (src/membership/). */
  private membership?: Membership;
  readonly metrics: Metrics;

  constructor(private readonly opts: DaemonOptions) {
    this.metrics = createMetrics();
  }

  get log(): Logger {
    return this.opts.log;
  }

  /** Validate the config, set up the node and start the data path. Throws
   *  (with a message naming the cause) when the node cannot be set up;
   *  whatever was set up by then is torn down first. */
  async start(): Promise<void> {
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
    if (!loaded.ok) await this.membership?.stop();
    if (!loaded.ok) throw new Error(`invalid config ${this.opts.configPath}:\n  ${loaded.errors.join("\n  ")}`);
    checkPrivileges();
    this.config = loaded.config;
    try {
      ({ derived: this.derived, plan: this.mtu } = this.deriveWithMtu(this.config, true));
      this.setupNode();
      this.watchLinkMtu();
      await this.startWorker();
      writeNodeState(this.config.node.stateDir, this.config, this.mtu!.deviceMtu); // the CNI plugin's node facts
      this.admin = new AdminServer(this, this.config.admin);
      await this.admin.start();
    } catch (e) {
      await this.stop();
      throw e;
    }
    if (this.opts.watchConfig !== false) this.watchConfigFile();
    this.updateTableGauges(this.derived);
    const d = this.derived;
    this.log.info({
      node: this.config.node.name, device: this.tun?.name, mode: d.node.mode, underlay: u32ToIp(d.node.underlay),
      peers: d.peers.map((p) => `${p.name}=${p.encapsulation}`), routes: d.routes.length,
    }, "overlayd started");
  }

  /** The MTUs from the underlay link (src/daemon/mtu.ts) and what follows its changes. */
  private mtu?: MtuPlan;
  private linkMtuWatcher?: LinkMtuWatcher;

  /** deriveTables, with the tunnel MTU the underlay link allows. `strict`:
   *  refuse (MtuError) configured MTUs above the link's. */
  private deriveWithMtu(c: Config, strict: boolean): { derived: DerivedTables; plan: MtuPlan } {
    const derived = deriveTables(c);
    const device = underlayDeviceOf(c);
    const plan = planMtu(c, derived, { device, mtu: readLinkMtu(device) }, strict);
    for (const w of plan.warnings) this.log.warn(w);
    derived.node.underlayMtu = plan.tunnelMtu;
    return { derived, plan };
  }

  private watchLinkMtu(): void {
    const p = this.mtu!;
    if (!p.device) return;
    this.linkMtuWatcher = new LinkMtuWatcher(p.device, p.linkMtu, (mtu, before) => {
      this.log.info({ device: p.device, mtu, before }, "the underlay link's MTU changed; applying it");
      this.scheduleReload("underlay MTU changed", 0);
    });
  }

  /** Whether an io_uring can be set up (the kernel may lack it or forbid it). */
  private probeIoUring(): boolean {
    try {
      new TunRing(2).close();
      return true;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "io_uring is not available: the tun gets one read()/write() per packet");
      return false;
    }
  }

  private setupNode(): void {
    const c = this.config;
    const d = this.derived;
    const offloads = c.node.device.offloads;
    if (offloads && d.node.mode !== "tun") throw new Error("node.device.offloads needs mode: tun (TSO super-frames are IPv4)");
    const queues = queueCount(this.config).queues;
    const multiQueue = queues > 1;
    this.ioUring = c.node.device.ioUring && this.probeIoUring();
    this.tun = openTun({ name: c.node.device.name, mode: d.node.mode, vnetHdr: offloads, multiQueue });
    // Promise the kernel we complete checksums and segment TCPv4 (with ECN).
    if (offloads) setTunOffload(this.tun, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN);
    for (let q = 1; q < queues; q++) {
      const t = openTun({ name: this.tun.name, mode: d.node.mode, vnetHdr: offloads, multiQueue });
      if (offloads) setTunOffload(t, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN);
      this.queueTuns.push(t);
    }
    // The overlay is IPv4; without this the kernel sends IPv6 router and
    // neighbour solicitations into the device, which the data path drops.
    // Before the link goes up, or the first of them is already queued.
    setSysctl(`net.ipv6.conf.${this.tun.name}.disable_ipv6`, "1");
    this.log.info({ ...this.mtu, warnings: undefined }, "MTUs");
    configureLink(this.tun.name, {
      mtu: this.mtu!.deviceMtu,
      mac: d.node.mode === "tap" ? formatMac(d.node.devMac) : undefined,
      addresses: [`${u32ToIp(d.node.overlay)}/32`],
      up: true,
    });
    // The kernel queues packets for us here while a batch is in flight.
    ip("link", "set", "dev", this.tun.name, "txqueuelen", "4096");
    // We route between the tunnel and local pods, and our ICMP errors come
    // from the node's own overlay address: let the kernel accept those.
    setSysctl("net.ipv4.ip_forward", "1");
    setSysctl(`net.ipv4.conf.${this.tun.name}.accept_local`, "1");
    setSysctl(`net.ipv4.conf.${this.tun.name}.rp_filter`, "0");
    if (c.tunnel.kernelGso) this.setupGsoTap(queues);
    const errs = this.kernelRoutes.sync(this.kernelRouteList(d));
    if (errs.length) throw new Error(`installing routes: ${errs.join("; ")}`);
    if (d.nat.enabled) this.nodeNat.apply(this.natPlan(d));
  }

  /** tunnel.kernelGso: a tap whose writes carry UDP tunnel GSO; the kernel
   *  routes what we write to it (our own VXLAN packets, from the node's
   *  address) out to the underlay. Falls back to UDP GSO with a warning. */
  private setupGsoTap(queues: number): void {
    const name = `${this.tun!.name}-gso`.slice(0, 15);
    const flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
    const taps: TunDevice[] = [];
    try {
      for (let q = 0; q < queues; q++) {
        const t = openTun({ name, mode: "tap", vnetHdr: true, multiQueue: queues > 1 });
        taps.push(t);
        // struct virtio_net_hdr_v1_hash_tunnel: 12 + hash 8 + two offsets.
        if (setVnetHdrSize(t, 24) !== 24) throw new Error("the tap refused a 24-byte virtio_net_hdr");
        setTunOffload(t, flags);
      }
    } catch (e) {
      for (const t of taps) closeTun(t);
      this.log.warn({ err: (e as Error).message }, "tunnel.kernelGso: the kernel has no UDP tunnel GSO on taps (Linux 6.17+); VXLAN leaves with UDP GSO");
      return;
    }
    setSysctl(`net.ipv6.conf.${name}.disable_ipv6`, "1");
    // Our frames come from the node's own address: accept that on this
    // link. The strict reverse-path check fails them (the address is not
    // routed through the tap); the kernel applies the larger of this link's
    // and conf.all's rp_filter, so loose (2) here is enough whatever conf.all
    // says, once the link has an address (a link without one fails any
    // reverse-path check): the node's overlay address, as on the tun.
    setSysctl(`net.ipv4.conf.${name}.accept_local`, "1");
    setSysctl(`net.ipv4.conf.${name}.rp_filter`, "2");
    configureLink(name, { addresses: [`${u32ToIp(this.derived.node.overlay)}/32`], up: true });
    this.gsoTaps = taps;
    this.gsoTapMac = readFileSync(`/sys/class/net/${name}/address`, "utf8").trim();
    this.log.info({ device: name }, "tunnel.kernelGso: VXLAN super-frames leave through the kernel's UDP tunnel GSO");
  }

  /** What the node needs so NAT traffic reaches the data path. */
  private natPlan(d: DerivedTables): NatPlan {
    const c = this.config;
    const underlay = u32ToIp(d.nat.nodeIp);
    const underlayDevice = c.node.underlay.device ?? deviceWithAddress(underlay);
    if (!underlayDevice) throw new Error(`no interface holds the underlay address ${underlay}; set node.underlay.device`);
    return {
      device: this.tun!.name, underlayDevice, underlayAddress: underlay, podCIDR: c.node.podCIDR,
      snatAddress: u32ToIp(d.nat.snatAddress), portMin: d.nat.portRange[0], portMax: d.nat.portRange[1],
      masquerade: d.nat.masquerade, nodePorts: d.nat.nodePorts, clusterIPs: d.nat.clusterIPs,
      table: d.nat.routeTable, rulePref: d.nat.rulePriority,
    };
  }

  private kernelRouteList(d: DerivedTables) {
    return d.kernelRoutes.map((r) => ({
      dst: r.dst,
      via: r.via,
      dev: r.dev === "tunnel" ? this.tun!.name : (this.config.node.underlay.device ?? this.underlayDevice(r.via)),
    }));
  }

  /** The interface that reaches `via` (for direct routes when the config names no underlay device). */
  private underlayDevice(via?: string): string {
    if (!via) throw new Error("a direct route needs a gateway");
    const out = execIpRouteGet(via);
    if (!out) throw new Error(`no interface reaches ${via}; set node.underlay.device`);
    return out;
  }

  private async startWorker(): Promise<void> {
    const tuns = [this.tun!, ...this.queueTuns];
    for (let q = 0; q < tuns.length; q++) await this.startLane(q, tuns[q].fd, tuns.length);
  }

  private async startLane(q: number, tunFd: number, lanes: number): Promise<void> {
    const shared = lanes > 1;
    const c = this.config;
    const underlay = u32ToIp(this.derived.node.underlay);
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
    let ipip = -1, icmp = -1;
    if (q === 0) {
      ipip = openIpipRecvSocket({ rcvBuf: 16 << 20 });
      this.fds.push(ipip);
      // Routers' fragmentation-needed about our outer packets (assembly/pipeline/pmtu.ts).
      icmp = openIcmpRecvSocket({ rcvBuf: 1 << 20 });
      this.fds.push(icmp);
    }
    const send = openRawSendSocket({ sndBuf: 8 << 20 });
    this.fds.push(send);
    // Offloads: VXLAN trains leave with UDP GSO from a few UDP sockets (their
    // ports are the outer source ports) and arrive coalesced (UDP GRO).
    let gsoFds: number[] | undefined;
    let gsoDfFds: number[] | undefined;
    if (c.tunnel.udpOffloads) {
      const socks = openUdpSendSockets(underlay, GSO_SOCKETS, { ttl: c.tunnel.outerTtl, sndBuf: 8 << 20 });
      this.fds.push(...socks.fds);
      gsoFds = socks.fds;
      // Outer DF follows the inner packet's, as without offloads: DF is a socket option.
      const dfSocks = openUdpSendSockets(underlay, GSO_SOCKETS, { ttl: c.tunnel.outerTtl, sndBuf: 8 << 20, df: true });
      this.fds.push(...dfSocks.fds);
      gsoDfFds = dfSocks.fds;
      enableUdpGro(vx);
    }
    const { port1, port2 } = new MessageChannel();
    const config: WorkerConfig = {
      tunFd,
      vxlanFd: vx,
      ipipFd: ipip,
      icmpFd: icmp,
      sendFd: send,
      batch: 256,
      slotSize: 2048,
      tbl8Groups: 4096,
      tables: this.sentTables ?? toDataplaneTables(this.derived),
      statsIntervalMs: 1000,
      offloads: c.node.device.offloads,
      ioUring: this.ioUring,
      // Carved once: enabling NAT by a reload needs no restart; resizing does.
      natMaxFlows: c.nat.conntrack.maxFlows,
      natHashSeed: this.ctHashSeed,
      gsoFds,
      gsoDfFds,
      gsoTap: this.gsoTaps[q] ? { fd: this.gsoTaps[q].fd, mac: this.gsoTapMac } : undefined,
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
    worker.on("error", (e) => this.log.error({ err: e, queue: q }, "data-path worker crashed"));
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if (m.type === "ready") resolve();
        else if (m.type === "fatal") reject(new Error("data-path worker failed: " + m.message));
      };
      port1.on("message", onMsg);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`data-path worker exited with ${code}`)));
    });
    port1.on("message", (m: FromWorker) => this.onWorker(m, lane));
    worker.on("exit", (code) => {
      if (this.lanes.includes(lane)) this.fatal(`data-path worker ${q} exited (code ${code})`);
    });
  }

  /** The node cannot go on: onFatal (overlayd run: clean up, exit non-zero). */
  fatal(reason: string): void {
    this.log.fatal({ reason }, "data path lost");
    this.opts.onFatal?.(reason);
  }

  /** Reloads waiting for every lane's "applied". */
  private pending = new Map<number, { left: number; errors: Set<string>; added: number; removed: number; done: () => void }>();

  private updateTableGauges(d: DerivedTables): void {
    this.metrics.setTableSizes({ routes: d.routes.length, peers: d.peers.length, fdb: d.fdb.length, neigh: d.neigh.length });
  }

  private onWorker(m: FromWorker, lane: Lane): void {
    if (m.type === "stats") {
      lane.counters = m.counters;
      lane.io = m.io;
      lane.ct = m.ct;
      this.aggregateStats();
    } else if (m.type === "applied") {
      if (m.errors.length) this.log.warn({ errors: m.errors }, "some table entries were not applied");
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
      if (m.deleted) this.log.info({ deleted: m.deleted }, "deleted the UDP flows of backends removed from their services");
    } else if (m.type === "pmtu") {
      this.onPathMtu(m.updates, lane);
    } else if (m.type === "fatal") {
      this.fatal("data-path worker failed: " + m.message);
    }
  }

  private gsoFallbackLogged = false;
  /** Path MTUs learnt from the underlay, by peer underlay address (for status). */
  private readonly pathMtus = new Map<number, PathMtu>();

  /** A lane learnt lower path MTUs: log them, keep them, tell the other lanes. */
  private onPathMtu(updates: PmtuUpdate[], from: Lane): void {
    for (const u of updates) {
      const peer = this.derived.peers.find((p) => p.underlay === u.peer);
      this.log.info({ peer: peer?.name, underlay: u32ToIp(u.peer), pathMtu: u.mtu, router: u32ToIp(u.from) }, "path MTU lowered by ICMP fragmentation-needed from the underlay");
      this.pathMtus.set(u.peer, { mtu: u.mtu, from: u.from, until: Date.now() + PMTU_TTL_MS });
    }
    const msg: ToWorker = { type: "pmtu", updates: updates.map((u) => ({ peer: u.peer, mtu: u.mtu })), ttlMs: PMTU_TTL_MS };
    for (const l of this.lanes) if (l !== from) l.port.postMessage(msg);
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
      this.log.warn({ sockets: io.gsoFallbacks }, "UDP GSO sends failed with EIO (the route or NIC cannot segment): those sockets send single datagrams now");
    }
    this.ioStats = io;
    this.metrics.updateFromCounters(this.lanes.map((l) => l.counters));
    this.metrics.setIo(io as unknown as Record<string, number | undefined>);
    this.metrics.setIoErrors(errors);
    const cts = this.lanes.map((l) => l.ct).filter((x): x is ConntrackStats => x !== undefined);
    if (cts.length) {
      const sum = { ...cts[0] };
      for (const c of cts.slice(1)) for (const k of Object.keys(sum) as (keyof ConntrackStats)[]) sum[k] += c[k];
      this.metrics.setConntrack(sum);
    }
  }

  private send(msg: ToWorker): void {
    for (const l of this.lanes) l.port.postMessage(msg);
  }

  /** Load the config again and swap the tables in without restarting the
   *  worker. An invalid config is rejected and the old one stays in force.
   *  Changing node identity (device, underlay address, mode) needs a restart. */
  async reload(reason: string): Promise<{ ok: boolean; errors: string[] }> {
    const reject = (errors: string[]) => {
      this.lastReload = { at: Date.now(), ok: false, errors };
      this.metrics.configReloads.inc({ result: "error" });
      this.log.error({ reason, errors }, "config rejected; keeping the running one");
      return { ok: false, errors };
    };
    const loaded = this.loadConfig();
    if (!loaded.ok) return reject(loaded.errors);
    const next = loaded.config;
    const fixed = ["name", "device", "underlay"] as const;
    const changed = fixed.filter((k) => JSON.stringify(next.node[k]) !== JSON.stringify(this.config.node[k]));
    const ctResized = next.nat.conntrack.maxFlows !== this.config.nat.conntrack.maxFlows;
    if (changed.length || next.tunnel.port !== this.config.tunnel.port || ctResized) {
      const what = changed.length ? `node.${changed[0]}` : ctResized ? "nat.conntrack.maxFlows" : "tunnel.port";
      return reject([`${what} changed: restart overlayd to apply it`]);
    }
    // Strict when the config's MTUs changed; a moved link is taken as it is.
    const mtuFields = (x: Config) => `${x.tunnel.underlayMtu} ${x.node.device.mtu}`;
    let derived: DerivedTables, plan: MtuPlan;
    try {
      ({ derived, plan } = this.deriveWithMtu(next, mtuFields(next) !== mtuFields(this.config)));
    } catch (e) {
      if (e instanceof MtuError) return reject([e.message]);
      throw e;
    }
    const queues = 1 + this.queueTuns.length;
    if (derived.nat.enabled && queues > 1) {
      return reject([`NAT needs one tun queue and this overlayd runs ${queues}: set node.device.queues: 1 and restart overlayd`]);
    }
    const id = ++this.reloadSeq;
    const res = { errors: [] as string[], routesAdded: 0, routesRemoved: 0 };
    this.sentTables = toDataplaneTables(derived);
    if (this.lanes.length) {
      await new Promise<void>((done) => {
        const p = { left: this.lanes.length, errors: new Set<string>(), added: 0, removed: 0, done: () => {
          Object.assign(res, { errors: [...p.errors], routesAdded: p.added, routesRemoved: p.removed });
          done();
        } };
        this.pending.set(id, p);
        this.send({ type: "tables", tables: this.sentTables!, id });
      });
    }
    // After the new tables (the same port, in order): UDP flows to removed backends go.
    const gone = removedBackends(this.derived.services, derived.services, "udp");
    if (gone.length) this.send({ type: "flushBackends", id, proto: 17, keys: gone });
    const routeErrors = this.kernelRoutes.sync(this.kernelRouteList(derived));
    if (this.tun && plan.deviceMtu !== this.mtu?.deviceMtu) {
      try {
        ip("link", "set", "dev", this.tun.name, "mtu", String(plan.deviceMtu));
        this.log.info({ device: this.tun.name, mtu: plan.deviceMtu, tunnelMtu: plan.tunnelMtu }, "device MTU changed");
      } catch (e) {
        routeErrors.push(`device MTU ${plan.deviceMtu}: ${(e as Error).message}`);
      }
    }
    this.mtu = plan;
    this.config = next;
    try {
      if (derived.nat.enabled) this.nodeNat.apply(this.natPlan(derived));
      else this.nodeNat.teardown();
    } catch (e) {
      routeErrors.push(`NAT plumbing: ${(e as Error).message}`);
    }
    this.derived = derived;
    this.updateTableGauges(derived);
    try { writeNodeState(next.node.stateDir, next, plan.deviceMtu); } catch (e) { routeErrors.push(`node facts for CNI: ${(e as Error).message}`); }
    const errors = [...res.errors, ...routeErrors];
    this.lastReload = { at: Date.now(), ok: errors.length === 0, errors };
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

  // --- what the admin API shows (src/control/admin.ts) -------------------------

  adminLanes(): AdminLane[] {
    return this.lanes.map((l) => ({ port: l.port, heartbeat: l.heartbeat }));
  }

  showStats() {
    // Per queue (one worker each): what each one moved.
    const queues = this.lanes.map((l, q) => ({
      queue: q, rx_pod_packets: l.counters.rx_pod_packets ?? 0n, rx_vxlan_packets: l.counters.rx_vxlan_packets ?? 0n,
      rx_ipip_packets: l.counters.rx_ipip_packets ?? 0n, to_device_packets: l.counters.to_device_packets ?? 0n,
    }));
    return { counters: this.counters, io: this.ioStats, queues };
  }

  showPeers() {
    return this.derived.peers.map((p, i) => ({ index: i, name: p.name, underlay: u32ToIp(p.underlay), vtepMac: formatMac(p.vtepMac), vtepAddress: u32ToIp(p.vtepAddress), podCIDRs: p.podCIDRs, encapsulation: p.encapsulation, reason: p.reason, ...(this.membership?.origin(p.name) ?? { source: "config" }) }));
  }

  showFdb() {
    return this.derived.fdb.map((f) => ({ mac: formatMac(f.mac), peer: this.derived.peers[f.peer]?.name, dst: u32ToIp(this.derived.peers[f.peer]?.underlay ?? 0) }));
  }

  showNeigh() {
    return this.derived.neigh.map((n) => ({ ip: u32ToIp(n.ip), mac: formatMac(n.mac) }));
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
      kernelRoutes: this.kernelRoutes.list(),
      lastReload: this.lastReload,
      conntrack: { hashSeedId: createHash("sha256").update(this.ctHashSeed).digest("hex").slice(0, 16) },
      mtu: this.mtu && {
        device: this.mtu.device, linkMtu: this.mtu.linkMtu, tunnelMtu: this.mtu.tunnelMtu, deviceMtu: this.mtu.deviceMtu, source: this.mtu.source,
        paths: pathMtuList(this.pathMtus, this.derived.peers),
      },
      etcd: this.membership?.status(),
      pods: podStatus(this.config.node.stateDir),
    };
  }

  showRoutes() {
    const d = this.derived;
    return d.routes.map((r) => {
      const nh = d.nexthops[r.nh];
      const peer = nh && nh.peer !== undefined && nh.peer !== 0xffff ? d.peers[nh.peer] : undefined;
      return { prefix: `${u32ToIp(r.prefix)}/${r.len}`, kind: nh?.kind, peer: peer?.name, via: nh?.gateway ? u32ToIp(nh.gateway) : undefined, underlay: peer ? u32ToIp(peer.underlay) : undefined };
    });
  }

  /** Stop the worker, remove routes, the device and the sockets. Idempotent. */
  async stop(): Promise<void> {
    await this.membership?.stop();
    if (this.config) removeNodeState(this.config.node.stateDir);
    clearTimeout(this.reloadTimer);
    this.linkMtuWatcher?.stop();
    this.watcher?.close();
    this.watcher = undefined;
    const lanes = this.lanes;
    this.lanes = [];
    await Promise.all(lanes.map(async (l) => {
      const exited = new Promise<void>((r) => l.worker.once("exit", () => r()));
      l.port.postMessage({ type: "stop" } satisfies ToWorker);
      const timer = setTimeout(() => void l.worker.terminate(), 2000);
      // A worker hung inside a system call does not even die from
      // terminate(): clean up the node anyway (the watchdog's exit path).
      let giveUp: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => (giveUp = setTimeout(r, 5000)))]);
      clearTimeout(timer);
      clearTimeout(giveUp);
      l.port.close();
    }));
    await this.admin?.stop();
    this.admin = undefined;
    try {
      this.nodeNat.teardown();
    } catch (e) {
      this.log.warn({ err: e }, "removing NAT plumbing");
    }
    try {
      this.kernelRoutes.removeAll();
    } catch {
      // device gone already
    }
    for (const t of this.queueTuns.splice(0)) closeTun(t);
    for (const t of this.gsoTaps.splice(0)) closeTun(t);
    if (this.tun) closeTun(this.tun);
    this.tun = undefined;
    for (const fd of this.fds.splice(0)) closeQuiet(fd);
    this.log.info("overlayd stopped");
  }
}

import { execFileSync } from "node:child_process";

/** The interface holding `addr` (ip -o addr show to addr/32). */
function deviceWithAddress(addr: string): string | undefined {
  try {
    const out = execFileSync("ip", ["-o", "-4", "addr", "show", "to", `${addr}/32`], { encoding: "utf8" });
    return /^\d+:\s+([^\s@:]+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

function execIpRouteGet(addr: string): string | undefined {
  try {
    const out = execFileSync("ip", ["-o", "route", "get", addr], { encoding: "utf8" });
    return /\bdev (\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}
