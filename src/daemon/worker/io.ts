// The two interfaces the worker's loop moves packets through, in the spirit
// of wireguard-go's tun.Device and conn.Bind:
//
//   PodDevice    the pod side: one queue of the tun/tap device (./device.ts,
//                ./vnet.ts). read() fills input slots with packets from the
//                pods, write() hands the batch's pod-bound packets back.
//   UnderlayBind the underlay side: the tunnel sockets (./bind.ts).
//                Its receivers fill input slots with packets from peers,
//                write() sends the batch's underlay-bound packets.
//
// The worker picks the implementations once at start from its config
// (openDevice, openBind) and then only loops:
//   poll -> receiver.read() -> stage -> receiver.finish?() -> flush
// where flush = Outbox.collect (the batch's verdicts, in WASM) ->
// bind.write -> device.write. Every batch lives in the data path's slots
// (0..n); reads never process or flush anything themselves: a read that
// runs out of slots keeps what it already holds (a super-frame, the rest of
// a GRO train) and hands it over on the next call (`more`).
import type { Dataplane } from "../../dataplane/dataplane.js";
import type { BatchIO } from "../../io/batch.js";
import type { IoErrors } from "../../io/errors.js";
import type { TunRing } from "../../io/uring.js";
import type { IoStats } from "../worker.js";
import type { Underlay6Peers } from "../../io/underlay6.js";

/** The pipeline stage a receiver's batches go to. */
export type Stage = "pod" | "vxlan" | "ipip" | "ip6tnl" | "icmp" | "icmp6";

/** One readable fd of the worker and how a batch is read from it. */
export interface Receiver {
  readonly fd: number;
  readonly stage: Stage;
  /** Read a batch into input slots 0..; returns its size (0: nothing came). */
  read(): number;
  /** The last read may have left packets behind: frames already read that
   *  did not fit the batch, or a full batch (the queue may hold more). The
   *  loop reads again without waiting for poll; false after a short read,
   *  so a drained queue is not probed again until poll says so. */
  readonly more: boolean;
  /** After the stage ran on the batch: send what leaves whole (tunnel GSO
   *  frames to the tap, encapsulated super-frames to the tun). Returns true
   *  when nothing is left for the flush. */
  finish?(n: number): boolean;
}

/** The pod side. */
export interface PodDevice extends Receiver {
  readonly stage: "pod";
  /** Write the batch's pod-bound packets (out.device); `n`: the batch size. */
  write(out: Outbox, n: number): void;
  /** Write one frame prepared in linear memory (absolute address) as is. */
  writeFrame(addr: number, len: number): void;
}

/** The underlay side. */
export interface UnderlayBind {
  /** VXLAN, IPIP, ICMP: the sockets packets from the underlay come in on. */
  readonly receivers: Receiver[];
  /** VXLAN datagrams get a list of their own (UDP GSO trains). */
  readonly splitsVxlan: boolean;
  /** Send the batch's underlay-bound packets. */
  write(out: Outbox): void;
}

/** What the implementations share: the data path, its slots' I/O, the counters. */
export interface IoContext {
  dp: Dataplane;
  io: BatchIO;
  stats: IoStats;
  errors: IoErrors;
  /** Native address of linear memory byte 0 (it never grows after init). */
  memBase: number;
  /** Tun reads and writes through io_uring (node.device.ioUring). */
  ring?: TunRing;
  /** Input slots of one batch. */
  batch: number;
  /** Peers reached over the IPv6 underlay, by address (kept in step with the tables). */
  underlay6: Underlay6Peers;
}

/** The verdicts of a batch as slot lists in linear memory (collectVerdicts fills them in WASM). */
export class Outbox {
  underlay!: Uint16Array;
  device!: Uint16Array;
  vxlan!: Uint16Array;
  nUnderlay = 0;
  nDevice = 0;
  nVxlan = 0;
  private readonly underlayPtr: number;
  private readonly devicePtr: number;
  private readonly vxlanPtr: number;
  private readonly countsPtr: number;

  constructor(private readonly dp: Dataplane, private readonly splitsVxlan: boolean) {
    const bytes = dp.batch * 2;
    this.underlayPtr = Number(dp.raw.allocScratch(bytes));
    this.devicePtr = Number(dp.raw.allocScratch(bytes));
    this.vxlanPtr = splitsVxlan ? Number(dp.raw.allocScratch(bytes)) : 0;
    this.countsPtr = splitsVxlan ? Number(dp.raw.allocScratch(16)) : 0;
    this.views();
  }

  /** Sort slots 0..n by verdict into the lists. */
  collect(n: number): this {
    if (this.underlay.buffer !== this.dp.memory.buffer) this.views();
    if (this.splitsVxlan) {
      this.dp.raw.collectVerdictsGso(n, this.vxlanPtr, this.underlayPtr, this.devicePtr, this.countsPtr);
      const dv = this.dp.dv;
      this.nVxlan = dv.getUint32(this.countsPtr, true);
      this.nUnderlay = dv.getUint32(this.countsPtr + 4, true);
      this.nDevice = dv.getUint32(this.countsPtr + 8, true);
    } else {
      const packed = this.dp.raw.collectVerdicts(n, this.underlayPtr, this.devicePtr) >>> 0;
      this.nUnderlay = packed & 0xffff;
      this.nDevice = packed >>> 16;
    }
    return this;
  }

  private views(): void {
    const b = this.dp.memory.buffer, n = this.dp.batch;
    this.underlay = new Uint16Array(b, this.underlayPtr, n);
    this.device = new Uint16Array(b, this.devicePtr, n);
    this.vxlan = new Uint16Array(b, this.vxlanPtr, this.splitsVxlan ? n : 0);
  }
}
