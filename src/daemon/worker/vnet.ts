// The pod side with offloads: the tun has IFF_VNET_HDR and TSO, so a read
// is a TCP super-frame of up to 64 KiB behind a virtio_net_hdr, segmented in
// WASM into the input slots; pod-bound packets of a batch are coalesced
// again (GRO) and written as super-frames (IPv6/TCP too when the tun was
// opened with TUN_F_TSO6).
//
// Super-frames are read SUPER_BUFS at a time (with io_uring in one call)
// into buffers of their own. A frame that does not fit in the slots left
// stays in its buffer and opens the next batch (`more`); no new frame is
// read before every buffered one is in slots.
//
// TnlGsoDevice (tunnel.kernelGso) adds a way out: a super-frame bound for a
// VXLAN peer leaves whole, as one tunnel GSO frame written to a tap; only
// its first segment (its representative) goes through the pipeline, to get
// the verdict for all of it (assembly/pipeline/wholeframe.ts).
import * as abi from "../../dataplane/abi.js";
import * as libc from "../../io/libc.js";
import type { IoContext, Outbox } from "./io.js";
import { PlainDevice } from "./device.js";

/** Largest super-frame read (64 KiB + the vnet header, rounded up). */
const SUPER = 65536 + 64;
/** Room in front of each buffer for the headers of a tunnel GSO frame. */
const SUPER_ROOM = 128;
const SUPER_STRIDE = SUPER_ROOM + SUPER;

export class VnetDevice extends PlainDevice {
  /** Super-frames read per call: several with io_uring, else one read(). */
  protected readonly bufs: number;
  protected readonly superPtr: number;
  /** Lengths of the frames in the buffers (<= 0: none). */
  protected readonly lens: Int32Array;
  /** The first buffer not yet taken into slots (bufs: all taken). */
  protected next: number;
  private readonly groCap: number;
  private readonly groOut: number;
  private readonly groFrames: number;
  private readonly frameAddrs: Float64Array;
  private readonly frameLens: Uint32Array;
  /** groDeviceBatch's flags: GRO_TCPV6 when the tun takes GSO_TCPV6 frames (TUN_F_TSO6). */
  private readonly groFlags: number;

  /** `tso6`: the tun was opened with TUN_F_TSO6 (else IPv6 is written one packet per frame). */
  constructor(ctx: IoContext, fd: number, tso6 = false) {
    super(ctx, fd);
    const dp = ctx.dp;
    this.groFlags = tso6 ? abi.GRO_TCPV6 : 0;
    // GRO output: every packet of a batch plus a header each fits.
    this.groCap = dp.batch * (dp.slotSize + 16);
    this.groOut = Number(dp.raw.allocScratch(this.groCap));
    this.groFrames = Number(dp.raw.allocScratch(dp.batch * 8));
    this.bufs = ctx.ring ? 4 : 1;
    this.superPtr = Number(dp.raw.allocScratch(SUPER_STRIDE * this.bufs));
    this.lens = new Int32Array(this.bufs);
    this.next = this.bufs;
    this.frameAddrs = new Float64Array(dp.batch);
    this.frameLens = new Uint32Array(dp.batch);
    if (dp.raw.offloadSetup() !== 0) throw new Error("no memory for offload buffers");
  }

  /** Linear-memory offset of super-frame buffer j. */
  protected superAt(j: number): number {
    return this.superPtr + j * SUPER_STRIDE + SUPER_ROOM;
  }

  read(): number {
    let n = 0, again = true;
    for (;;) {
      for (; this.next < this.bufs; this.next++) {
        const len = this.lens[this.next];
        if (len <= 0) continue;
        const k = this.ctx.dp.raw.ingestSuperframe(this.superAt(this.next), len, n);
        if (k === 0 && n > 0) return this.done(n, again); // no room left: it opens the next batch
        if (k < 0) this.ctx.stats.refused++;
        else {
          this.ctx.stats.superframes++;
          n += k;
        }
      }
      if (n >= this.ctx.batch || !again) break;
      again = this.readFrames() === this.bufs;
      if (this.next >= this.bufs) break;
    }
    return this.done(n, again);
  }

  protected done(n: number, again: boolean): number {
    this.more = this.next < this.bufs || again;
    return n;
  }

  /** Read up to `bufs` super-frames into their buffers: with io_uring in one
   *  call, completing in order, else one read(). A read after an empty one
   *  may still have found a frame that arrived meanwhile: every one is
   *  taken, in order. Returns how many were found; fewer than `bufs` means
   *  the tun is drained. Sets `next` to the first frame (bufs: none). */
  protected readFrames(): number {
    const { ring, memBase } = this.ctx;
    if (ring) {
      const r = ring.readBatch(this.fd, this.bufs, memBase + this.superAt(0), SUPER_STRIDE, SUPER);
      if (r < 0) this.lens.fill(0); // the call failed: nothing read
      else for (let j = 0; j < this.bufs; j++) this.lens[j] = ring.res[j];
    } else {
      this.lens[0] = libc.read(this.fd, memBase + this.superAt(0), SUPER); // EAGAIN (or EOF): none
    }
    let got = 0;
    this.next = this.bufs;
    for (let j = this.bufs - 1; j >= 0; j--) {
      if (this.lens[j] > 0) {
        got++;
        this.next = j;
      }
    }
    return got;
  }

  write(out: Outbox, n: number): void {
    if (!out.nDevice) return;
    const { dp, stats } = this.ctx;
    // GRO: consecutive segments of a flow go to the kernel as one super-frame.
    const frames = dp.raw.groDeviceBatch(n, this.groOut, this.groCap, this.groFrames, this.groFlags);
    if (frames < 0) {
      dp.raw.prependVnetNone(n); // GRO refused the batch: one packet per write
      super.write(out, n);
      return;
    }
    const dv = dp.dv, base = this.ctx.memBase + this.groOut;
    for (let k = 0; k < frames; k++) {
      this.frameAddrs[k] = base + dv.getUint32(this.groFrames + k * 8, true);
      this.frameLens[k] = dv.getUint32(this.groFrames + k * 8 + 4, true);
    }
    this.writeFrames(this.fd, frames, this.frameAddrs, this.frameLens);
    stats.groFrames += frames;
  }

  /** Write frames (absolute addresses) to `fd`: through the ring in one call, else one write() each. */
  protected writeFrames(fd: number, n: number, addrs: Float64Array, lens: Uint32Array): void {
    const { ring, stats, errors } = this.ctx;
    if (ring) stats.writeErrors += ring.writeAll(fd, n, addrs, lens, errors);
    else for (let k = 0; k < n; k++) this.writeTo(fd, addrs[k], lens[k]);
  }
}

/** tunnel.kernelGso: VnetDevice plus the tap that takes tunnel GSO frames.
 *  Frames are taken in order, in runs of one kind: representatives (their
 *  frames leave through the tap) or segmented frames (through the sockets);
 *  a run ends where the kind changes, so a flow is never reordered.
 *  Representatives hold on to their read buffers: their run ends with the
 *  read. Segmented frames live in slots: their run may go on over reads. */
export class TnlGsoDevice extends VnetDevice {
  private readonly tapFd: number;
  /** A tunnel GSO frame starts this far from its super-frame's buffer: its
   *  headers (TNL_PREFIX bytes, tnlgso.ts) replace the tun's 10-byte vnet header. */
  private readonly back: number;
  /** The last batch is a run of representatives: slot i stands for buffer repOf[i]. */
  private reps = 0;
  private readonly repOf: Int32Array;
  private readonly segsOf: Int32Array;
  private readonly tnlAddrs: Float64Array;
  private readonly tnlLens: Uint32Array;

  constructor(ctx: IoContext, fd: number, tap: { fd: number; mac: string }, tso6 = false) {
    super(ctx, fd, tso6);
    const raw = ctx.dp.raw;
    this.tapFd = tap.fd;
    this.back = 10 - Number((raw.TNL_PREFIX as WebAssembly.Global).value);
    if (-this.back > SUPER_ROOM) throw new Error("super-frame buffers lack room for tunnel GSO headers");
    this.repOf = new Int32Array(this.bufs);
    this.segsOf = new Int32Array(this.bufs);
    this.tnlAddrs = new Float64Array(this.bufs);
    this.tnlLens = new Uint32Array(this.bufs);
    const mac = tap.mac.split(":").map((x) => parseInt(x, 16));
    raw.gsoSetup((mac[0] << 8) | mac[1], ((mac[2] << 24) | (mac[3] << 16) | (mac[4] << 8) | mac[5]) >>> 0, Number(raw.allocScratch(16)));
    ctx.stats.tnlGsoFrames = 0;
  }

  read(): number {
    const raw = this.ctx.dp.raw, stats = this.ctx.stats;
    let n = 0, again = true; // n: slots of the open run of segmented frames
    this.reps = 0;
    for (;;) {
      for (; this.next < this.bufs; this.next++) {
        const j = this.next, at = this.superAt(j), len = this.lens[j];
        if (len <= 0) continue;
        const segs = raw.gsoSegments(at, len);
        if (segs > 0) {
          if (n > 0) return this.done(n, again); // a run of segmented frames ends here
          if (raw.gsoRepresentative(at, len, this.reps) > 0) {
            this.segsOf[j] = segs;
            this.repOf[this.reps++] = j;
            stats.superframes++;
            continue;
          }
        }
        if (this.reps) return this.done(this.reps, again); // a run of representatives ends here
        const k = raw.ingestSuperframe(at, len, n);
        if (k === 0 && n > 0) return this.done(n, again);
        if (k < 0) stats.refused++;
        else {
          stats.superframes++;
          n += k;
        }
      }
      if (this.reps) return this.done(this.reps, again); // their run ends with the read
      if (n >= this.ctx.batch || !again) break;
      again = this.readFrames() === this.bufs;
      if (this.next >= this.bufs) break;
    }
    return this.done(n, again);
  }

  /** A run of representatives was processed: their frames leave through the
   *  tap; what did not become a frame (ICMP errors, drops) is flushed as any packet. */
  finish(_n: number): boolean {
    const k = this.reps;
    if (!k) return false;
    this.reps = 0;
    const raw = this.ctx.dp.raw;
    let frames = 0;
    for (let i = 0; i < k; i++) {
      const j = this.repOf[i];
      const len = raw.gsoBuild(i, this.superAt(j), this.lens[j], this.segsOf[j]);
      if (!len) continue;
      this.tnlAddrs[frames] = this.ctx.memBase + this.superAt(j) + this.back;
      this.tnlLens[frames++] = len;
    }
    this.writeFrames(this.tapFd, frames, this.tnlAddrs, this.tnlLens);
    this.ctx.stats.tnlGsoFrames! += frames;
    return false;
  }
}
