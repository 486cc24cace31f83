// The data-path worker thread: one WASM instance, one queue of the tun/tap
// device and the tunnel sockets. It loops poll -> read a batch -> one WASM
// call -> flush the batch, and takes control messages between batches. The
// main thread is the control plane; it talks to us only by messages.
//
// The pod side is a PodDevice, the underlay side an UnderlayBind, chosen
// once at start from the config (./worker/open.ts); the loop here does not
// know which it has. ./worker/io.ts describes the two interfaces.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { Dataplane, type BackendFlowKey, type BackendFlowKey6, type ConntrackStats, type FlowRecord, type PmtuUpdate } from "../dataplane/dataplane.js";
import { TableState, type DataplaneTables } from "../dataplane/tables.js";
import { BatchIO } from "../io/batch.js";
import { TunRing } from "../io/uring.js";
import { IoErrors } from "../io/errors.js";
import { Underlay6Peers } from "../io/underlay6.js";
import { Control, nowSec } from "./worker/control.js";
import { Outbox, type IoContext, type PodDevice, type Receiver, type Stage, type UnderlayBind } from "./worker/io.js";
import { openBind, openDevice } from "./worker/open.js";
import { parsePacketTooBig } from "./worker/pmtu6.js";
import { PMTU_TTL_MS } from "./mtu.js";
import { ipv6ToBytes } from "../config/net6.js";
import * as abi from "../dataplane/abi.js";

export interface WorkerConfig {
  tunFd: number;
  vxlanFd: number; // -1: none
  ipipFd: number; // -1: none
  /** Raw socket of protocol 41 (IPv6 in IPv4) for dual-stack IPIP peers (lane 0; -1 or absent: none). */
  sitFd?: number;
  /** AF_INET6 IPPROTO_RAW: NAT66's masqueraded packets (node.ipv6 with NAT on), tunnel packets over the IPv6 underlay. */
  send6Fd?: number;
  /** The IPv6 underlay (-1 or absent: none): VXLAN over UDP/IPv6 (every lane, steered as IPv4's), and raw IPv6 sockets of next header 4 and 41 (lane 0). */
  vxlan6Fd?: number;
  ip6tnlFds?: number[];
  /** Raw ICMPv6 (packet too big only) for path MTUs over the IPv6 underlay (lane 0; -1 or absent: none). */
  icmp6Fd?: number;
  /** IPv6 address names in the connection table (NAT66; 0 or absent: none). */
  natNames6?: number;
  /** Raw ICMP socket (destination unreachables only): frag-needed from the underlay (lane 0; -1 or absent: none). */
  icmpFd?: number;
  sendFd: number;
  batch: number;
  slotSize: number;
  tbl8Groups: number;
  tables: DataplaneTables;
  statsIntervalMs: number;
  /** The tun was opened with IFF_VNET_HDR + TSO: reads are super-frames, writes need a header. */
  offloads: boolean;
  /** With offloads: the tun was also opened with TUN_F_TSO6, so GRO coalesces IPv6/TCP into GSO_TCPV6 frames for it. */
  tunTso6?: boolean;
  /** Tun reads and writes through io_uring, a batch per system call (the daemon checked it works). */
  ioUring: boolean;
  /** Conntrack capacity; carved at start (NAT parameters come with the tables). */
  natMaxFlows?: number;
  /** 16 random bytes keying the conntrack hash (drawn by the daemon at start). */
  natHashSeed?: Uint8Array;
  /** The memory every lane's WASM instance shares (several lanes): each
   *  carves its own tables in it, and lane 0's connection table is everyone's. */
  memory?: WebAssembly.Memory;
  /** Lanes after the first: lane 0's connection table (its ctHeader) to attach to. */
  natAttach?: number;
  /** Lane 0 of several: the others will attach to its table. */
  natShared?: boolean;
  /** UDP GSO/GRO on the underlay (with offloads): sockets VXLAN leaves from
   *  (one per outer source port); the VXLAN socket has UDP_GRO on. */
  gsoFds?: number[];
  /** As many sockets again, with DF set: for datagrams whose inner packet has DF (src/io/udpgso.ts). */
  gsoDfFds?: number[];
  /** UDP/IPv6 sockets VXLAN over the IPv6 underlay leaves from (node.ipv6.underlayAddress; absent: none). */
  gso6Fds?: number[];
  /** tunnel.kernelGso: this lane's queue of the tap that takes UDP tunnel GSO frames, and the tap's MAC. */
  gsoTap?: { fd: number; mac: string };
  /** An Int32Array's buffer whose element 0 the loop bumps every turn: the
   *  control plane's /healthz and watchdog read it (src/control/admin.ts). */
  heartbeat?: SharedArrayBuffer;
  /** OVERLAYD_TEST_HOOKS=1: obey "hang" and "ctFill" (tests and bench/conntrack-dump.ts only). */
  testHooks?: boolean;
}

/** Flows a conntrack dump reads per loop turn (between packet batches). */
export const CT_DUMP_PER_TURN = 1024;
/** Flows one conntrack dump page holds at most. */
export const CT_PAGE_MAX = 10_000;

export type ToWorker =
  | { type: "tables"; tables: DataplaneTables; id: number }
  | { type: "stop" }
  | { type: "stats" }
  /** A page of the flow table: up to `limit` (<= CT_PAGE_MAX) flows from
   *  flow index `cursor` on, read CT_DUMP_PER_TURN per loop turn. */
  | { type: "conntrack"; id: number; cursor: number; limit: number }
  /** Delete the flows of `proto` from these frontends to these backends (removed from their services). */
  | { type: "flushBackends"; id: number; proto: number; keys: BackendFlowKey[]; keys6?: BackendFlowKey6[] }
  /** Test hooks (cfg.testHooks): block the loop for good; add `n` placeholder flows. */
  | { type: "hang" }
  | { type: "ctFill"; id: number; n: number }
  /** Path MTUs another lane learnt (peer underlay addresses, host order). */
  | { type: "pmtu"; updates: { peer: number; mtu: number }[]; ttlMs: number };
export type FromWorker =
  | { type: "ready"; ctHeader: number }
  /** `next`: the cursor of the next page, -1 at the end; `turns`: loop turns the page took. */
  | { type: "conntrack"; id: number; now: number; flows: FlowRecord[]; stats: ConntrackStats | undefined; next: number; turns: number }
  | { type: "ctFilled"; id: number; made: number }
  | { type: "applied"; id: number; errors: string[]; routesAdded: number; routesRemoved: number }
  | { type: "stats"; counters: Record<string, bigint>; io: IoStats; ct?: ConntrackStats }
  | { type: "flushed"; id: number; deleted: number }
  | { type: "fatal"; message: string }
  /** Peers whose path MTU an ICMP from the underlay lowered (assembly/pipeline/pmtu.ts). */
  | { type: "pmtu"; updates: PmtuUpdate[] }
  | { type: "stopped" };

export interface IoStats {
  sendErrors: number;
  writeErrors: number;
  polls: number;
  /** Offloads: TCP super-frames read from the tun and segmented in WASM. */
  superframes: number;
  /** Offloads: frames the segmenter refused (malformed or unsupported). */
  refused: number;
  /** Offloads: frames written to the tun after GRO (each one or more packets). */
  groFrames: number;
  /** UDP GSO: sends that carried several VXLAN datagrams, and the datagrams in them. */
  gsoSends?: number;
  gsoSegments?: number;
  /** UDP GRO: coalesced trains received (each several datagrams), and the datagrams in them. */
  groTrains?: number;
  groDatagrams?: number;
  /** UDP GRO: datagrams that held a whole encapsulated TCP super-frame (a
   *  GSO packet that crossed virtual links only: ours with tunnel.kernelGso,
   *  or a kernel VTEP's), written to the tun whole or segmented. */
  encapSuperframes?: number;
  /** Of those, written to the tun as one TSO frame (the others were segmented). */
  encapWhole?: number;
  /** tunnel.kernelGso: super-frames written whole to the tap, for the kernel to segment. */
  tnlGsoFrames?: number;
  /** UDP GSO: sockets turned to single datagrams after an EIO, and the datagrams of failed trains resent. */
  gsoFallbacks?: number;
  gsoResent?: number;
  /** Failures by "op/ERRNO" (src/io/errors.ts), cumulative. */
  errors?: Record<string, number>;
}

/** Batches a loop turn reads from each source at most, so one busy
 *  direction cannot starve the other or the control messages. */
const ROUNDS = 8;
/** Longest sleep in poll: expiry and stats run at least this often. */
const POLL_MS = 50;

/** The data path of this lane: the WASM instance with its first tables. */
function startDataplane(cfg: WorkerConfig, port: MessagePort): { dp: Dataplane; state: TableState } {
  const dp = new Dataplane({ batch: cfg.batch, slotSize: cfg.slotSize, tbl8Groups: cfg.tbl8Groups, memory: cfg.memory });
  const state = new TableState(dp);
  // Like Linux's icmp_msgs_per_sec / icmp_msgs_burst: a router must not let
  // a flood of bad packets turn into a flood of ICMP errors (RFC 1812 4.3.2.8).
  dp.setClock(Date.now());
  dp.setIcmpRateLimit(1000, 50);
  if ((cfg.natMaxFlows ?? 0) > 0) dp.natSetup({ maxFlows: cfg.natMaxFlows!, hashSeed: cfg.natHashSeed, attach: cfg.natAttach, shared: cfg.natShared, names6: cfg.natNames6 });
  dp.setNow(nowSec());
  const first = state.apply(cfg.tables);
  if (first.errors.length) port.postMessage({ type: "applied", id: 0, ...first } satisfies FromWorker);
  return { dp, state };
}

/** What the device and the bind share: slots' I/O, counters, the ring. */
function ioContext(cfg: WorkerConfig, dp: Dataplane): IoContext {
  const errors = new IoErrors();
  const io = new BatchIO({ memory: dp.memory, slotBase: dp.slotBase, slotSize: dp.slotSize, metaBase: dp.metaBase, batch: dp.batch, errors });
  const ring = cfg.ioUring ? new TunRing(256) : undefined;
  if (ring) io.useRing(ring);
  const stats: IoStats = { sendErrors: 0, writeErrors: 0, polls: 0, superframes: 0, refused: 0, groFrames: 0 };
  return { dp, io, stats, errors, ring, batch: dp.batch, memBase: io.slotAddress(0) - dp.slotBase, underlay6: new Underlay6Peers() };
}

/** The readable fds in poll order, each with its poll bit. */
interface Source {
  rx: Receiver;
  bit: number;
}

class Lane {
  private readonly sources: Source[];
  private readonly fds: number[];
  private readonly outbox: Outbox;
  private readonly nat: boolean;
  private readonly beat?: Int32Array;
  private lastStats = Date.now();

  constructor(
    private readonly cfg: WorkerConfig,
    private readonly port: MessagePort,
    private readonly dp: Dataplane,
    private readonly ctx: IoContext,
    private readonly dev: PodDevice,
    private readonly bind: UnderlayBind,
    private readonly control: Control,
    private readonly state: TableState,
  ) {
    const rxs = [dev, ...bind.receivers];
    this.fds = rxs.map((r) => r.fd);
    this.sources = rxs.map((rx, k) => ({ rx, bit: 1 << k }));
    this.outbox = new Outbox(dp, bind.splitsVxlan);
    this.nat = (cfg.natMaxFlows ?? 0) > 0;
    this.beat = cfg.heartbeat ? new Int32Array(cfg.heartbeat) : undefined;
  }

  /** poll -> read -> process -> flush, with control messages between batches, until "stop". */
  run(): void {
    for (;;) {
      if (this.beat) Atomics.add(this.beat, 0, 1);
      if (!this.takeMessages()) return;
      this.control.flushStep();
      // With a dump or a flush under way, or packets left behind, do not sleep in poll.
      const wait = this.control.busy || this.leftBehind() ? 0 : POLL_MS;
      const ready = this.ctx.io.pollReadable(this.fds, wait);
      this.tick();
      this.drain(ready);
      this.control.dumpStep();
      this.maybeStats();
    }
  }

  /** A receiver's last read may have left packets behind. */
  private leftBehind(): boolean {
    for (const s of this.sources) if (s.rx.more) return true;
    return false;
  }

  /** Control messages first, between batches; false on "stop". */
  private takeMessages(): boolean {
    for (let msg = receiveMessageOnPort(this.port); msg; msg = receiveMessageOnPort(this.port)) {
      const m = msg.message as ToWorker;
      if (m.type !== "stop") {
        this.control.handle(m);
        continue;
      }
      this.ctx.ring?.close();
      this.control.stopped();
      return false;
    }
    return true;
  }

  private tick(): void {
    this.dp.setClock(Date.now());
    if (this.nat) {
      // Expiry a bounded slice at a time (at least every 50 ms poll), so
      // the data path never stops for a sweep of the whole table.
      const sec = nowSec();
      this.dp.setNow(sec);
      this.dp.ctExpire(sec, 4096);
    }
    this.ctx.stats.polls++;
  }

  /** Read each ready source a bounded number of batches. After the first
   *  round only sources whose last read may have left packets behind are
   *  read again: a drained queue waits for poll. */
  private drain(ready: number): void {
    for (let round = 0; round < ROUNDS; round++) {
      let moved = 0;
      for (const s of this.sources) {
        if (s.rx.more || (round === 0 && ready & s.bit)) moved += this.batch(s.rx);
      }
      if (!moved) break;
    }
  }

  /** One batch from `rx`: read, the stage, then what leaves whole, then the
   *  flush. Returns the packets it moved (ICMP from the underlay: none). */
  private batch(rx: Receiver): number {
    const n = rx.read();
    if (!n) return 0;
    if (!this.process(rx.stage, n)) return 0;
    if (rx.finish?.(n)) return n;
    const out = this.outbox.collect(n);
    this.bind.write(out);
    this.dev.write(out, n);
    return n;
  }

  /** Run stage `stage` on slots 0..n; false when nothing is left to send. */
  private process(stage: Stage, n: number): boolean {
    switch (stage) {
      case "pod":
        this.dp.processPod(n);
        return true;
      case "vxlan":
        this.dp.processVxlan(n);
        return true;
      case "ipip":
        this.dp.processIpip(n);
        return true;
      case "ip6tnl":
        this.dp.processIp6Tunnel(n);
        return true;
      case "icmp": {
        // Fragmentation-needed from routers on the underlay lower peers'
        // path MTUs here; the control plane tells the other lanes.
        const updates = this.dp.processIcmp(n);
        if (updates.length) this.port.postMessage({ type: "pmtu", updates } satisfies FromWorker);
        return false;
      }
      case "icmp6": {
        // Packet too big about our outer IPv6 packets: the same, for peers over IPv6.
        const updates = this.packetTooBig(n);
        if (updates.length) this.port.postMessage({ type: "pmtu", updates } satisfies FromWorker);
        return false;
      }
    }
  }

  /** Slots 0..n hold ICMPv6 packets too big (pmtu6.ts): lower the path MTU
   *  of each peer one names, here and (returned) in the other lanes. */
  private packetTooBig(n: number): PmtuUpdate[] {
    const node6 = this.state.tables?.node.underlay6 ?? 0n;
    if (!node6) return [];
    const self = new Uint8Array(16);
    ipv6ToBytes(node6, self);
    const dv = this.dp.dv, port = this.state.tables?.node.port ?? 4789;
    const out: PmtuUpdate[] = [];
    for (let i = 0; i < n; i++) {
      const m = this.dp.metaBase + i * abi.META_SIZE;
      const off = dv.getUint32(m + abi.META_OFF, true), len = dv.getUint32(m + abi.META_LEN, true);
      if (off + len > this.dp.slotSize) continue;
      const r = parsePacketTooBig(dv, this.dp.slotBase + i * this.dp.slotSize + off, len, self, port, this.ctx.underlay6);
      const index = this.state.tables?.peers.findIndex((p) => p.underlay >>> 0 === r?.peer) ?? -1;
      if (!r || index < 0 || r.mtu >= this.dp.peerPmtu(index)) continue;
      if (this.dp.setPeerPmtu(r.peer, r.mtu, PMTU_TTL_MS)) out.push({ peer: r.peer, mtu: r.mtu, from: 0 });
    }
    return out;
  }

  private maybeStats(): void {
    const now = Date.now();
    if (now - this.lastStats < this.cfg.statsIntervalMs) return;
    this.lastStats = now;
    this.control.postStats();
  }
}

function run(cfg: WorkerConfig, port: MessagePort): void {
  const { dp, state } = startDataplane(cfg, port);
  const ctx = ioContext(cfg, dp);
  // Who sent what comes in over the IPv6 underlay: follows the peers of every reload.
  ctx.underlay6.set(state.tables?.peers ?? []);
  state.onApplied = (t) => ctx.underlay6.set(t.peers);
  const dev = openDevice(cfg, ctx);
  const bind = openBind(cfg, ctx, dev);
  // The lane that carved the connection table answers for it (stats, dumps,
  // flushes); lanes attached to it have nothing of their own to report.
  const ownsTable = (cfg.natMaxFlows ?? 0) > 0 && cfg.natAttach === undefined;
  const control = new Control(dp, state, port, ctx.stats, ctx.errors, ownsTable, cfg.testHooks === true);
  const lane = new Lane(cfg, port, dp, ctx, dev, bind, control, state);
  port.postMessage({ type: "ready", ctHeader: dp.ctHeader } satisfies FromWorker);
  lane.run();
}

if (parentPort && workerData) {
  const { port, config } = workerData as { port: MessagePort; config: WorkerConfig };
  try {
    run(config, port);
  } catch (e) {
    port.postMessage({ type: "fatal", message: (e as Error).stack ?? String(e) } satisfies FromWorker);
  }
}
