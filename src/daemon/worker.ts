// The data-path worker thread: one WASM instance, one queue of the tun/tap
// device and the tunnel sockets. It loops poll -> read a batch -> one WASM
// call -> send the batch, and applies table updates between batches. The
// main thread is the control plane; it talks to us only by messages.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from "node:worker_threads";
import { Dataplane, type BackendFlowKey, type BackendFlush, type ConntrackStats, type FlowRecord, type PmtuUpdate } from "../dataplane/dataplane.js";
import { TableState, type DataplaneTables } from "../dataplane/tables.js";
import * as abi from "../dataplane/abi.js";
import { BatchIO } from "../io/batch.js";
import * as libc from "../io/libc.js";
import { UdpGroReceiver, UdpGsoSender } from "../io/udpgso.js";
import { TunRing } from "../io/uring.js";
import { IoErrors, OP_WRITE } from "../io/errors.js";

export interface WorkerConfig {
  tunFd: number;
  vxlanFd: number; // -1: none
  ipipFd: number; // -1: none
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
  /** Tun reads and writes through io_uring, a batch per system call (the daemon checked it works). */
  ioUring: boolean;
  /** Conntrack capacity; carved at start (NAT parameters come with the tables). */
  natMaxFlows?: number;
  /** 16 random bytes keying the conntrack hash (drawn by the daemon at start). */
  natHashSeed?: Uint8Array;
  /** UDP GSO/GRO on the underlay (with offloads): sockets VXLAN leaves from
   *  (one per outer source port); the VXLAN socket has UDP_GRO on. */
  gsoFds?: number[];
  /** As many sockets again, with DF set: for datagrams whose inner packet has DF (src/io/udpgso.ts). */
  gsoDfFds?: number[];
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
  | { type: "flushBackends"; id: number; proto: number; keys: BackendFlowKey[] }
  /** Test hooks (cfg.testHooks): block the loop for good; add `n` placeholder flows. */
  | { type: "hang" }
  | { type: "ctFill"; id: number; n: number }
  /** Path MTUs another lane learnt (peer underlay addresses, host order). */
  | { type: "pmtu"; updates: { peer: number; mtu: number }[]; ttlMs: number };
export type FromWorker =
  | { type: "ready" }
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

function run(cfg: WorkerConfig, port: MessagePort): void {
  const dp = new Dataplane({ batch: cfg.batch, slotSize: cfg.slotSize, tbl8Groups: cfg.tbl8Groups });
  const state = new TableState(dp);
  // Like Linux's icmp_msgs_per_sec / icmp_msgs_burst: a router must not let
  // a flood of bad packets turn into a flood of ICMP errors (RFC 1812 4.3.2.8).
  dp.setClock(Date.now());
  dp.setIcmpRateLimit(1000, 50);
  // Conntrack runs on seconds of a monotonic clock (wall-clock steps must
  // not expire or immortalise flows).
  const nowSec = () => Math.floor((performance.timeOrigin + performance.now()) / 1000) >>> 0;
  const nat = (cfg.natMaxFlows ?? 0) > 0;
  if (nat) dp.natSetup({ maxFlows: cfg.natMaxFlows!, hashSeed: cfg.natHashSeed });
  // Backend flushes in progress, a bounded slice of the table per loop.
  const flushes: { id: number; walk: BackendFlush }[] = [];
  const FLUSH_BUDGET = 16384; // ~0.5 ms of work with deletions (README)
  dp.setNow(nowSec());
  const ctStats = () => (nat ? dp.conntrackStats() : undefined);
  const first = state.apply(cfg.tables);
  if (first.errors.length) port.postMessage({ type: "applied", id: 0, ...first } satisfies FromWorker);
  const ioErrors = new IoErrors();
  const io = new BatchIO({ memory: dp.memory, slotBase: dp.slotBase, slotSize: dp.slotSize, metaBase: dp.metaBase, batch: dp.batch, errors: ioErrors });
  const writeFailed = () => {
    ioStats.writeErrors++;
    ioErrors.add(OP_WRITE, libc.errno());
  };
  const ring = cfg.ioUring ? new TunRing(256) : undefined;
  if (ring) io.useRing(ring);
  // Index lists live in linear memory: collectVerdicts() fills them in WASM.
  const listBytes = dp.batch * 2;
  const toUnderlayPtr = Number(dp.raw.allocScratch(listBytes));
  const toDevicePtr = Number(dp.raw.allocScratch(listBytes));
  let toUnderlay = new Uint16Array(dp.memory.buffer, toUnderlayPtr, dp.batch);
  let toDevice = new Uint16Array(dp.memory.buffer, toDevicePtr, dp.batch);
  const ioStats: IoStats = { sendErrors: 0, writeErrors: 0, polls: 0, superframes: 0, refused: 0, groFrames: 0 };
  // GRO output: every packet of a batch plus a header each fits.
  const groCap = dp.batch * (dp.slotSize + 16);
  const groOut = cfg.offloads ? Number(dp.raw.allocScratch(groCap)) : 0;
  const groFrames = cfg.offloads ? Number(dp.raw.allocScratch(dp.batch * 8)) : 0;
  const icmpFd = cfg.icmpFd ?? -1;
  const fds = [cfg.tunFd, cfg.vxlanFd, cfg.ipipFd, icmpFd].filter((fd) => fd >= 0);
  const bitOf = (fd: number) => (fd < 0 ? 0 : 1 << fds.indexOf(fd));
  // Offloads: one super-frame at a time lands in its own buffer and is
  // segmented by WASM straight into the input slots.
  const SUPER = 65536 + 64;
  // With io_uring, SUPER_BUFS super-frames are read in one call.
  const SUPER_BUFS = ring ? 4 : 1;
  // Each buffer has room in front for the headers of a tunnel GSO frame.
  const SUPER_ROOM = 128;
  const SUPER_STRIDE = SUPER_ROOM + SUPER;
  const superPtr = cfg.offloads ? Number(dp.raw.allocScratch(SUPER_STRIDE * SUPER_BUFS)) : 0;
  const superAt = (j: number) => superPtr + j * SUPER_STRIDE + SUPER_ROOM;
  const superLens = new Int32Array(SUPER_BUFS);
  if (cfg.offloads && dp.raw.offloadSetup() !== 0) throw new Error("no memory for offload buffers");
  const memBase = io.slotAddress(0) - dp.slotBase;
  // UDP GSO/GRO: VXLAN trains leave as one sendmsg and arrive as one buffer.
  const gso = (cfg.gsoFds?.length ?? 0) > 0;
  const region = { memory: dp.memory, slotBase: dp.slotBase, slotSize: dp.slotSize, metaBase: dp.metaBase, batch: dp.batch };
  const gsoSender = gso ? new UdpGsoSender(region, cfg.gsoFds!, ioErrors, cfg.gsoDfFds) : undefined;
  const GRO_BUFS = 8;
  const groBufPtr = gso ? Number(dp.raw.allocScratch(GRO_BUFS * 65536)) : 0;
  const groRx = gso ? new UdpGroReceiver(dp.memory, groBufPtr, GRO_BUFS, ioErrors) : undefined;
  // VXLAN packets for UDP GSO get a list of their own; IPIP and direct ones
  // go to the toUnderlay list as without GSO.
  const vxPtr = gso ? Number(dp.raw.allocScratch(listBytes)) : 0;
  let toVxlan = new Uint16Array(dp.memory.buffer, vxPtr, gso ? dp.batch : 0);
  const countsPtr = gso ? Number(dp.raw.allocScratch(16)) : 0;
  if (gso) Object.assign(ioStats, { gsoSends: 0, gsoSegments: 0, groTrains: 0, groDatagrams: 0, encapSuperframes: 0, encapWhole: 0 });
  // Super-frames in one VXLAN datagram go to the tun whole (while NAT is
  // on, whose connection state follows every packet, encapRepresentative
  // declines and they are segmented).
  const fastRx = gso && cfg.offloads;
  if (fastRx) dp.raw.encapRxSetup(Number(dp.raw.allocScratch(64)));
  // encapBuild's tun write starts this far into its datagram.
  const ENCAP_WRITE_AT = Number((dp.raw.ENCAP_WRITE_AT as WebAssembly.Global).value);
  // Bytes of a datagram an input slot holds.
  const slotRoom = dp.slotSize - abi.HEADROOM;
  const readTrains = (): number => {
    let n = 0;
    for (let round = 0; round < 4 && n < dp.batch; round++) {
      const got = groRx!.recv(cfg.vxlanFd);
      if (!got) break;
      for (let j = 0; j < got; j++) {
        const d = groRx!.out[j];
        const seg = d.seg > 0 && d.seg < d.len ? d.seg : d.len;
        if (seg < d.len) {
          ioStats.groTrains!++;
          ioStats.groDatagrams! += Math.ceil(d.len / seg);
        }
        if (seg === d.len && d.len > slotRoom) {
          // One VXLAN datagram longer than a slot: a TCP super-frame sent
          // over virtual links only (ours with tunnel.kernelGso, or a kernel
          // VTEP's). Written to the tun whole when its representative is
          // delivered there (assembly/offload/tnlgso.ts), else segmented.
          if (fastRx) {
            if (n) {
              // What came before it first, in order.
              dp.processVxlan(n);
              flush(n);
              n = 0;
            }
            const segs = dp.raw.encapRepresentative(d.ptr, d.len, 0, d.src, d.dst, d.tos);
            if (segs > 0) {
              dp.processVxlan(1);
              const len = dp.raw.encapBuild(0, d.ptr, d.len, segs);
              if (len > 0) {
                if (libc.write(cfg.tunFd, memBase + d.ptr + ENCAP_WRITE_AT, len) < 0) writeFailed();
                ioStats.groFrames++;
                ioStats.encapWhole!++;
              } else flush(1); // dropped, or an answer: as any packet
              ioStats.encapSuperframes!++;
              continue;
            }
          }
          let k = dp.raw.ingestEncapSuperframe(d.ptr, d.len, n, d.src, d.dst, d.tos);
          if (k === 0 && n > 0) {
            dp.processVxlan(n);
            flush(n);
            n = 0;
            k = dp.raw.ingestEncapSuperframe(d.ptr, d.len, 0, d.src, d.dst, d.tos);
          }
          if (k > 0) {
            n += k;
            ioStats.encapSuperframes!++;
          } else ioStats.refused++;
          continue;
        }
        let ptr = d.ptr, left = d.len;
        while (left > 0) {
          const k = dp.raw.ingestDatagrams(ptr, left, seg, n, d.src, d.dst, d.tos);
          if (k === 0) {
            // Slots ran out: run this batch, then go on with the train.
            dp.processVxlan(n);
            flush(n);
            n = 0;
            continue;
          }
          if (k < 0) {
            ioStats.refused++;
            break;
          }
          n += k;
          const used = Math.min(left, k * seg);
          ptr += used;
          left -= used;
        }
      }
    }
    return n;
  };
  /** Segment the super-frame at `ptr` (`len` bytes) into the slots from n on;
   *  returns the new slot count (a full batch is run and flushed first). */
  const ingestSuperframe = (ptr: number, len: number, n: number): number => {
    let k = dp.raw.ingestSuperframe(ptr, len, n);
    if (k === 0) {
      // Not enough slots left: run what we have, then start a new batch.
      dp.processPod(n);
      flush(n);
      n = 0;
      k = dp.raw.ingestSuperframe(ptr, len, 0);
    }
    if (k < 0) {
      ioStats.refused++;
      return n;
    }
    ioStats.superframes++;
    return n + k;
  };
  /** Read up to SUPER_BUFS super-frames into their buffers: with io_uring in
   *  one call, completing in order, else one read(). Their lengths (<= 0:
   *  none) land in superLens, copied out of ring.res since running a batch
   *  reuses it. A read after an empty one may still have found a frame that
   *  arrived meanwhile: callers take every one, in order. Returns how many
   *  were found; fewer than SUPER_BUFS means the tun is drained. */
  const readFrames = (): number => {
    if (ring) {
      if (ring.readBatch(cfg.tunFd, SUPER_BUFS, (j) => memBase + superAt(j), SUPER) < 0) {
        superLens.fill(0); // the call failed: nothing read
        return 0;
      }
      for (let j = 0; j < SUPER_BUFS; j++) superLens[j] = ring.res[j];
    } else {
      superLens[0] = libc.read(cfg.tunFd, memBase + superAt(0), SUPER); // EAGAIN (or EOF): none
    }
    let got = 0;
    for (let j = 0; j < SUPER_BUFS; j++) if (superLens[j] > 0) got++;
    return got;
  };
  const readSuperframes = (): number => {
    let n = 0;
    while (n < dp.batch) {
      const got = readFrames();
      for (let j = 0; j < SUPER_BUFS; j++) if (superLens[j] > 0) n = ingestSuperframe(superAt(j), superLens[j], n);
      if (got < SUPER_BUFS) break;
    }
    return n;
  };
  // tunnel.kernelGso: a super-frame bound for a VXLAN peer leaves whole, as
  // one tunnel GSO frame written to the tap; its first segment goes through
  // the pipeline for it (assembly/offload/tnlgso.ts). Frames for anywhere
  // else, and small packets, are segmented as usual.
  const tnl = cfg.offloads && cfg.gsoTap !== undefined;
  const segsOf = new Int32Array(SUPER_BUFS);
  // A tunnel GSO frame starts this far from its super-frame's buffer: its
  // headers (TNL_PREFIX bytes, tnlgso.ts) replace the tun's 10-byte vnet header.
  const TNL_BACK = 10 - Number((dp.raw.TNL_PREFIX as WebAssembly.Global).value);
  if (-TNL_BACK > SUPER_ROOM) throw new Error("super-frame buffers lack room for tunnel GSO headers");
  const tnlFrames = new Float64Array(SUPER_BUFS * 2); // address, length
  if (tnl) {
    const mac = cfg.gsoTap!.mac.split(":").map((x) => parseInt(x, 16));
    dp.raw.gsoSetup((mac[0] << 8) | mac[1], ((mac[2] << 24) | (mac[3] << 16) | (mac[4] << 8) | mac[5]) >>> 0, Number(dp.raw.allocScratch(16)));
    ioStats.tnlGsoFrames = 0;
  }
  // Frames are taken in order, in runs of one kind: representatives (their
  // frames leave through the tap) or segmented frames (through the sockets);
  // a run ends where the kind changes, so a flow is never reordered.
  // Representatives hold on to their read buffers: their run ends with the
  // read. Segmented frames live in slots: their run may go on over reads
  // and is returned for the caller to run.
  const repOf = new Int32Array(SUPER_BUFS); // run slot k -> buffer
  const runReps = (k: number) => {
    dp.processPod(k);
    let frames = 0;
    for (let i = 0; i < k; i++) {
      const j = repOf[i];
      const len = dp.raw.gsoBuild(i, superAt(j), superLens[j], segsOf[j]);
      if (!len) continue;
      tnlFrames[frames * 2] = memBase + superAt(j) + TNL_BACK;
      tnlFrames[frames * 2 + 1] = len;
      frames++;
    }
    if (ring) {
      ioStats.writeErrors += ring.writeAll(cfg.gsoTap!.fd, frames, (i) => tnlFrames[i * 2], (i) => tnlFrames[i * 2 + 1], ioErrors);
    } else {
      for (let i = 0; i < frames; i++) if (libc.write(cfg.gsoTap!.fd, tnlFrames[i * 2], tnlFrames[i * 2 + 1]) < 0) writeFailed();
    }
    ioStats.tnlGsoFrames! += frames;
    // What did not leave as a frame (ICMP errors, drops) goes on as any packet.
    flush(k);
  };
  const readSuperframesTnl = (): number => {
    let n = 0; // slots of the open run of segmented frames
    while (n < dp.batch) {
      const got = readFrames();
      let reps = 0;
      for (let j = 0; j < SUPER_BUFS; j++) {
        if (superLens[j] <= 0) continue;
        const segs = dp.raw.gsoSegments(superAt(j), superLens[j]);
        if (segs > 0) {
          if (n > 0) {
            // A run of segmented frames ends here.
            dp.processPod(n);
            flush(n);
            n = 0;
          }
          if (dp.raw.gsoRepresentative(superAt(j), superLens[j], reps) > 0) {
            segsOf[j] = segs;
            repOf[reps++] = j;
            ioStats.superframes++;
            continue;
          }
        }
        if (reps) {
          runReps(reps);
          reps = 0;
        }
        n = ingestSuperframe(superAt(j), superLens[j], n);
      }
      if (reps) runReps(reps);
      if (got < SUPER_BUFS) break;
    }
    return n;
  };
  /** Fragmentation-needed from routers on the underlay lower peers' path
   *  MTUs here; the control plane tells the other lanes. */
  const readIcmp = (): number => {
    const n = io.recvIpip(icmpFd, dp.batch);
    if (!n) return 0;
    const updates = dp.processIcmp(n);
    if (updates.length) port.postMessage({ type: "pmtu", updates } satisfies FromWorker);
    return 0;
  };
  // Each readable source: how to read a batch from it and which stage takes it.
  const sources = [
    { bit: bitOf(cfg.tunFd), read: () => (tnl ? readSuperframesTnl() : cfg.offloads ? readSuperframes() : io.readTun(cfg.tunFd, dp.batch)), process: (n: number) => dp.processPod(n) },
    { bit: bitOf(cfg.vxlanFd), read: () => (gso ? readTrains() : io.recvVxlan(cfg.vxlanFd, dp.batch)), process: (n: number) => dp.processVxlan(n) },
    { bit: bitOf(cfg.ipipFd), read: () => io.recvIpip(cfg.ipipFd, dp.batch), process: (n: number) => dp.processIpip(n) },
    // ICMP errors from the underlay: taken here, nothing to send (0 slots).
    { bit: bitOf(icmpFd), read: () => readIcmp(), process: () => 0 },
  ].filter((s) => s.bit !== 0);
  port.postMessage({ type: "ready" } satisfies FromWorker);

  // Test hook: `n` placeholder flows (IP protocol 253, RFC 3692's
  // experimental number: the generic timeout, 600 s), from 198.18.128.0/17
  // to 198.18.127.1, without NAT, so a dump has something to walk.
  let fillSeq = 0;
  let tuples = 0;
  const ctFill = (n: number): number => {
    const CHUNK = 4096;
    if (!tuples) tuples = Number(dp.raw.allocScratch(CHUNK * 16));
    let made = 0;
    for (let done = 0; done < n; ) {
      const k = Math.min(CHUNK, n - done);
      const dv = dp.dv;
      for (let i = 0; i < k; i++, fillSeq++) {
        const t = tuples + i * 16;
        dv.setUint32(t, (0xc6128000 | (fillSeq >>> 16)) >>> 0, true); // 198.18.128.0 + seq / 65536
        dv.setUint32(t + 4, 0xc6127f01, true); // 198.18.127.1
        dv.setUint16(t + 8, fillSeq & 0xffff, true);
        dv.setUint16(t + 10, 9, true);
        dv.setUint8(t + 12, 253);
      }
      made += dp.ctCreateTuples(tuples, k, 0, nowSec());
      done += k;
    }
    return made;
  };

  const flush = (n: number) => {
    if (toUnderlay.buffer !== dp.memory.buffer) {
      toUnderlay = new Uint16Array(dp.memory.buffer, toUnderlayPtr, dp.batch);
      toDevice = new Uint16Array(dp.memory.buffer, toDevicePtr, dp.batch);
      toVxlan = new Uint16Array(dp.memory.buffer, vxPtr, gso ? dp.batch : 0);
    }
    let nd: number;
    if (gso) {
      dp.raw.collectVerdictsGso(n, vxPtr, toUnderlayPtr, toDevicePtr, countsPtr);
      const dv = dp.dv;
      const nx = dv.getUint32(countsPtr, true), nr = dv.getUint32(countsPtr + 4, true);
      nd = dv.getUint32(countsPtr + 8, true);
      if (nx) ioStats.sendErrors += gsoSender!.send(toVxlan, nx);
      if (nr) ioStats.sendErrors += io.sendRaw(cfg.sendFd, toUnderlay, nr).errors;
      ioStats.gsoSends = gsoSender!.stats.gsoSends;
      ioStats.gsoSegments = gsoSender!.stats.gsoSegments;
      ioStats.gsoFallbacks = gsoSender!.stats.gsoFallbacks;
      ioStats.gsoResent = gsoSender!.stats.gsoResent;
    } else {
      const packed = dp.raw.collectVerdicts(n, toUnderlayPtr, toDevicePtr) >>> 0;
      const nu = packed & 0xffff;
      nd = packed >>> 16;
      if (nu) ioStats.sendErrors += io.sendRaw(cfg.sendFd, toUnderlay, nu).errors;
    }
    if (!nd) return;
    if (cfg.offloads) {
      // GRO: consecutive segments of a flow go to the kernel as one super-frame.
      const frames = dp.raw.groDeviceBatch(n, groOut, groCap, groFrames);
      if (frames >= 0) {
        const dv = dp.dv;
        if (ring) {
          ioStats.writeErrors += ring.writeAll(cfg.tunFd, frames, (k) => memBase + groOut + dv.getUint32(groFrames + k * 8, true), (k) => dv.getUint32(groFrames + k * 8 + 4, true), ioErrors);
        } else {
          for (let k = 0; k < frames; k++) {
            const off = dv.getUint32(groFrames + k * 8, true), len = dv.getUint32(groFrames + k * 8 + 4, true);
            if (libc.write(cfg.tunFd, memBase + groOut + off, len) < 0) writeFailed();
          }
        }
        ioStats.groFrames += frames;
        return;
      }
      dp.raw.prependVnetNone(n); // GRO refused the batch: one packet per write
    }
    ioStats.writeErrors += io.writeTun(cfg.tunFd, toDevice, nd).errors;
  };

  // A conntrack dump in progress: a bounded step each loop turn, so a
  // table of millions is spread over many turns and never stalls a batch.
  let dump: { id: number; next: number; left: number; flows: FlowRecord[]; turns: number } | undefined;
  const dumpStep = () => {
    const d = dump!;
    const now = nowSec();
    d.turns++;
    const before = d.flows.length;
    d.next = dp.conntrackScan(now, d.next, Math.min(CT_DUMP_PER_TURN, d.left), d.flows);
    d.left -= d.flows.length - before;
    if (d.next < 0 || d.left <= 0) {
      port.postMessage({ type: "conntrack", id: d.id, now, flows: d.flows, stats: ctStats(), next: d.next, turns: d.turns } satisfies FromWorker);
      dump = undefined;
    }
  };
  const beat = cfg.heartbeat ? new Int32Array(cfg.heartbeat) : undefined;
  const ioSnapshot = (): IoStats => {
    ioStats.errors = ioErrors.snapshot();
    return ioStats;
  };
  let lastStats = Date.now();
  for (;;) {
    if (beat) Atomics.add(beat, 0, 1);
    // Control messages first, between batches.
    for (let msg = receiveMessageOnPort(port); msg; msg = receiveMessageOnPort(port)) {
      const m = msg.message as ToWorker;
      if (m.type === "stop") {
        port.postMessage({ type: "stats", counters: dp.counters(), io: ioSnapshot(), ct: ctStats() } satisfies FromWorker);
        port.postMessage({ type: "stopped" } satisfies FromWorker);
        return;
      }
      if (m.type === "tables") {
        const r = state.apply(m.tables);
        port.postMessage({ type: "applied", id: m.id, errors: r.errors, routesAdded: r.routesAdded, routesRemoved: r.routesRemoved } satisfies FromWorker);
      }
      if (m.type === "stats") port.postMessage({ type: "stats", counters: dp.counters(), io: ioSnapshot(), ct: ctStats() } satisfies FromWorker);
      if (m.type === "pmtu") for (const u of m.updates) dp.setPeerPmtu(u.peer, u.mtu, m.ttlMs);
      if (m.type === "flushBackends") {
        if (nat) flushes.push({ id: m.id, walk: dp.backendFlush(m.proto, m.keys) });
        else port.postMessage({ type: "flushed", id: m.id, deleted: 0 } satisfies FromWorker);
      }
      if (m.type === "conntrack") {
        if (dump) port.postMessage({ type: "conntrack", id: dump.id, now: nowSec(), flows: dump.flows, stats: ctStats(), next: dump.next, turns: dump.turns } satisfies FromWorker);
        const limit = Math.min(CT_PAGE_MAX, Math.max(1, Math.floor(m.limit) || CT_PAGE_MAX));
        dump = nat ? { id: m.id, next: Math.max(0, Math.floor(m.cursor) || 0), left: limit, flows: [], turns: 0 } : undefined;
        if (!nat) port.postMessage({ type: "conntrack", id: m.id, now: nowSec(), flows: [], stats: undefined, next: -1, turns: 0 } satisfies FromWorker);
      }
      if (m.type === "hang" && cfg.testHooks) {
        // A worker stuck for good (tests of /healthz and the watchdog).
        const w = new Int32Array(new SharedArrayBuffer(4));
        for (;;) Atomics.wait(w, 0, 0, 1000);
      }
      if (m.type === "ctFill" && cfg.testHooks) port.postMessage({ type: "ctFilled", id: m.id, made: nat ? ctFill(m.n) : 0 } satisfies FromWorker);
    }
    if (flushes.length && flushes[0].walk.step(FLUSH_BUDGET)) {
      const done = flushes.shift()!;
      port.postMessage({ type: "flushed", id: done.id, deleted: done.walk.deleted } satisfies FromWorker);
    }
    // With a dump or a flush under way, do not sleep in poll: they go on between batches.
    const ready = io.pollReadable(fds, dump || flushes.length ? 0 : 50);
    dp.setClock(Date.now());
    if (nat) {
      // Expiry a bounded slice at a time (at least every 50 ms poll), so
      // the data path never stops for a sweep of the whole table.
      const sec = nowSec();
      dp.setNow(sec);
      dp.ctExpire(sec, 4096);
    }
    ioStats.polls++;
    // Drain each readable source a bounded number of batches, so one busy
    // direction cannot starve the other or the control messages.
    for (let round = 0; round < 8 && ready; round++) {
      let moved = 0;
      for (const src of sources) {
        if (!(ready & src.bit)) continue;
        const n = src.read();
        if (n) {
          src.process(n);
          flush(n);
          moved += n;
        }
      }
      if (!moved) break;
    }
    if (dump) dumpStep();
    const now = Date.now();
    if (now - lastStats >= cfg.statsIntervalMs) {
      lastStats = now;
      port.postMessage({ type: "stats", counters: dp.counters(), io: ioSnapshot(), ct: ctStats() } satisfies FromWorker);
    }
  }
}

if (parentPort && workerData) {
  const { port, config } = workerData as { port: MessagePort; config: WorkerConfig };
  try {
    run(config, port);
  } catch (e) {
    port.postMessage({ type: "fatal", message: (e as Error).stack ?? String(e) } satisfies FromWorker);
  }
}
