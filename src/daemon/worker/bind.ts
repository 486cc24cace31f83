// The underlay side: the sockets tunnel packets leave and arrive on.
//
//   RawBind  sends every encapsulated packet, whole, through one raw
//            IPPROTO_RAW socket (sendmmsg); receives VXLAN datagrams from a
//            UDP socket and IPIP packets from a raw one (recvmmsg).
//   GsoBind  (tunnel.udpOffloads) sends VXLAN, over either underlay, as
//            UDP GSO trains from per-source-port UDP sockets and receives GRO
//            trains; IP in IP and direct packets go as with RawBind.
// Both take ICMP destination unreachables (frag-needed) from a raw ICMP
// socket, for path MTUs (assembly/pipeline/pmtu.ts).
import * as abi from "../../dataplane/abi.js";
import { UdpGroReceiver, UdpGsoSender, type GroDatagram } from "../../io/udpgso.js";
import type { IoContext, Outbox, PodDevice, Receiver, Stage, UnderlayBind } from "./io.js";

/** A socket read with one recvmmsg into slots 0.. (VXLAN, IPIP, ICMP;
 *  `over6`: the IPv6 underlay's VXLAN and IPv4/IPv6-in-IPv6 sockets). */
class RecvmmsgReceiver implements Receiver {
  more = false;
  constructor(private readonly ctx: IoContext, readonly fd: number, readonly stage: Stage, private readonly over6 = false) {}

  read(): number {
    const { io, batch, underlay6 } = this.ctx;
    const n = this.over6 ? io.recvUnderlay6(this.fd, batch, underlay6) : this.stage === "vxlan" ? io.recvVxlan(this.fd, batch) : io.recvIpip(this.fd, batch);
    this.more = n === batch;
    return n;
  }
}

export interface BindFds {
  sendFd: number;
  vxlanFd: number;
  ipipFd: number;
  /** Protocol 41; its packets go through the same stage as IPIP's (decap.ts tells them apart). */
  sitFd: number;
  icmpFd: number;
  /** AF_INET6 IPPROTO_RAW (-1: none): the IPv6 packets among the underlay-bound ones (NAT66's
   *  masqueraded packets, tunnel packets to peers reached over IPv6). */
  send6Fd?: number;
  /** The IPv6 underlay (node.ipv6.underlayAddress; -1 or absent: none): VXLAN over UDP/IPv6, and raw
   *  IPv6 sockets of next header 4 and 41 (IPv4/IPv6 in IPv6). */
  vxlan6Fd?: number;
  ip6tnlFds?: number[];
  /** Raw ICMPv6, packet too big only: path MTUs over the IPv6 underlay (-1 or absent: none). */
  icmp6Fd?: number;
}

export class RawBind implements UnderlayBind {
  readonly receivers: Receiver[] = [];
  readonly splitsVxlan: boolean = false;

  constructor(protected readonly ctx: IoContext, protected readonly fds: BindFds, vxlan: Receiver | undefined = undefined, vxlan6: Receiver | undefined = undefined) {
    if (fds.vxlanFd >= 0) this.receivers.push(vxlan ?? new RecvmmsgReceiver(ctx, fds.vxlanFd, "vxlan"));
    if (fds.ipipFd >= 0) this.receivers.push(new RecvmmsgReceiver(ctx, fds.ipipFd, "ipip"));
    if (fds.sitFd >= 0) this.receivers.push(new RecvmmsgReceiver(ctx, fds.sitFd, "ipip"));
    if (fds.icmpFd >= 0) this.receivers.push(new RecvmmsgReceiver(ctx, fds.icmpFd, "icmp"));
    if ((fds.vxlan6Fd ?? -1) >= 0) this.receivers.push(vxlan6 ?? new RecvmmsgReceiver(ctx, fds.vxlan6Fd!, "vxlan", true));
    for (const fd of fds.ip6tnlFds ?? []) this.receivers.push(new RecvmmsgReceiver(ctx, fd, "ip6tnl", true));
    if ((fds.icmp6Fd ?? -1) >= 0) this.receivers.push(new RecvmmsgReceiver(ctx, fds.icmp6Fd!, "icmp6", true));
  }

  write(out: Outbox): void {
    if (!out.nUnderlay) return;
    const fd6 = this.fds.send6Fd ?? -1;
    if (fd6 < 0) {
      this.ctx.stats.sendErrors += this.ctx.io.sendRaw(this.fds.sendFd, out.underlay, out.nUnderlay).errors;
      return;
    }
    // IPv6 here: NAT66's packets and tunnel packets to peers reached over IPv6.
    const { dp } = this.ctx;
    const mem = new Uint8Array(dp.memory.buffer);
    const meta = new DataView(dp.memory.buffer);
    const v4 = (this.split4 ??= new Uint16Array(dp.batch));
    const v6 = (this.split6 ??= new Uint16Array(dp.batch));
    let n4 = 0, n6 = 0;
    for (let k = 0; k < out.nUnderlay; k++) {
      const i = out.underlay[k];
      const off = meta.getUint32(dp.metaBase + i * abi.META_SIZE + abi.META_OFF, true);
      if (mem[dp.slotBase + i * dp.slotSize + off] >> 4 === 6) v6[n6++] = i;
      else v4[n4++] = i;
    }
    if (n4) this.ctx.stats.sendErrors += this.ctx.io.sendRaw(this.fds.sendFd, v4, n4).errors;
    if (n6) this.ctx.stats.sendErrors += this.ctx.io.sendRaw(fd6, v6, n6, 6).errors;
  }
  private split4?: Uint16Array;
  private split6?: Uint16Array;
}

export class GsoBind extends RawBind {
  readonly splitsVxlan = true;
  private readonly sender: UdpGsoSender;

  constructor(ctx: IoContext, fds: BindFds, gsoFds: number[], gsoDfFds: number[] | undefined, fastRx: PodDevice | undefined, gso6Fds: number[] = []) {
    super(ctx, fds, fds.vxlanFd >= 0 ? new GroTrains(ctx, fds.vxlanFd, fastRx) : undefined,
      (fds.vxlan6Fd ?? -1) >= 0 ? new GroTrains(ctx, fds.vxlan6Fd!, fastRx, true) : undefined);
    const dp = ctx.dp;
    const region = { memory: dp.memory, slotBase: dp.slotBase, slotSize: dp.slotSize, metaBase: dp.metaBase, batch: dp.batch };
    this.sender = new UdpGsoSender(region, gsoFds, ctx.errors, gsoDfFds, gso6Fds);
    Object.assign(ctx.stats, { gsoSends: 0, gsoSegments: 0, groTrains: 0, groDatagrams: 0, encapSuperframes: 0, encapWhole: 0 });
  }

  write(out: Outbox): void {
    const stats = this.ctx.stats;
    if (out.nVxlan) stats.sendErrors += this.sender.send(out.vxlan, out.nVxlan);
    super.write(out);
    const s = this.sender.stats;
    stats.gsoSends = s.gsoSends;
    stats.gsoSegments = s.gsoSegments;
    stats.gsoFallbacks = s.gsoFallbacks;
    stats.gsoResent = s.gsoResent;
  }
}

const GRO_BUFS = 8;
/** recvmmsg calls one read makes at most. */
const GRO_ROUNDS = 4;

/** VXLAN with UDP GRO: trains of datagrams in 64 KiB buffers, cut into
 *  slots by WASM (ingestDatagrams). A train that does not fit in the slots
 *  left goes on in the next batch; no new train is received before every
 *  one received is in slots. With tun offloads (`fastRx`), a datagram that
 *  holds a whole TCP super-frame (sent over virtual links only: ours with
 *  tunnel.kernelGso, or a kernel VTEP's) is written to the tun whole when
 *  its representative is delivered there (assembly/pipeline/wholeframe.ts), else
 *  segmented. */
export class GroTrains implements Receiver {
  readonly stage = "vxlan";
  more = false;
  private readonly rx: UdpGroReceiver;
  private readonly slotRoom: number;
  /** encapBuild's tun write starts this far into its datagram. */
  private readonly writeAt: number;
  /** Trains received, the one being cut, and where in it. */
  private got = 0;
  private next = 0;
  private ptr = -1;
  private left = 0;
  /** The last batch is one whole super-frame (slot 0 its representative). */
  private wholeOf: GroDatagram | undefined;
  private wholeSegs = 0;

  /** `over6`: the IPv6 underlay's VXLAN socket (senders named through ctx.underlay6). */
  constructor(private readonly ctx: IoContext, readonly fd: number, private readonly fastRx: PodDevice | undefined, over6 = false) {
    const raw = ctx.dp.raw;
    this.rx = new UdpGroReceiver(ctx.dp.memory, Number(raw.allocScratch(GRO_BUFS * 65536)), GRO_BUFS, ctx.errors, over6 ? ctx.underlay6 : undefined);
    if (fastRx) raw.encapRxSetup(Number(raw.allocScratch(64)));
    this.writeAt = Number((raw.ENCAP_WRITE_AT as WebAssembly.Global).value);
    this.slotRoom = ctx.dp.slotSize - abi.HEADROOM;
  }

  read(): number {
    let n = 0, full = true;
    this.wholeOf = undefined;
    for (let round = 0; ; ) {
      for (; this.next < this.got; this.next++) {
        n = this.take(this.rx.out[this.next], n);
        if (this.ptr >= 0) return this.done(n, full); // no room left: the rest opens the next batch
        if (this.wholeOf) {
          this.next++;
          return this.done(1, full);
        }
      }
      if (round++ >= GRO_ROUNDS || n >= this.ctx.batch) break;
      this.got = this.rx.recv(this.fd);
      this.next = 0;
      full = this.got === GRO_BUFS;
      if (!this.got) break;
    }
    return this.done(n, full);
  }

  private done(n: number, full: boolean): number {
    this.more = this.next < this.got || full;
    return n;
  }

  /** Cut datagram `d` into slots from n on; returns the new slot count.
   *  When the slots ran out first, d (or the rest of it) stays: `ptr` is
   *  left >= 0, where the next batch goes on. */
  private take(d: GroDatagram, n: number): number {
    const raw = this.ctx.dp.raw, stats = this.ctx.stats;
    const seg = d.seg > 0 && d.seg < d.len ? d.seg : d.len;
    if (this.ptr < 0) {
      if (seg < d.len) {
        stats.groTrains!++;
        stats.groDatagrams! += Math.ceil(d.len / seg);
      }
      this.ptr = d.ptr;
      this.left = d.len;
    }
    if (seg === d.len && d.len > this.slotRoom) {
      // One VXLAN datagram longer than a slot: a whole TCP super-frame.
      if (this.fastRx) {
        if (n > 0) return n; // what came before it first, in order
        const segs = raw.encapRepresentative(d.ptr, d.len, 0, d.src, d.dst, d.tos);
        if (segs > 0) {
          this.ptr = -1;
          this.wholeOf = d;
          this.wholeSegs = segs;
          return 1;
        }
      }
      const k = raw.ingestEncapSuperframe(d.ptr, d.len, n, d.src, d.dst, d.tos);
      if (k === 0 && n > 0) return n;
      this.ptr = -1;
      if (k > 0) {
        stats.encapSuperframes!++;
        return n + k;
      }
      stats.refused++;
      return n;
    }
    while (this.left > 0) {
      const k = raw.ingestDatagrams(this.ptr, this.left, seg, n, d.src, d.dst, d.tos);
      if (k === 0 && n > 0) return n; // slots ran out: run this batch, then go on with the train
      if (k <= 0) {
        stats.refused++;
        break;
      }
      n += k;
      const used = Math.min(this.left, k * seg);
      this.ptr += used;
      this.left -= used;
    }
    this.ptr = -1;
    return n;
  }

  /** The whole super-frame's representative was processed: when it is
   *  bound for the tun, the frame is written there as one TSO frame; else
   *  (dropped, or an answer) slot 0 is flushed as any packet. */
  finish(_n: number): boolean {
    const d = this.wholeOf;
    if (!d) return false;
    this.wholeOf = undefined;
    const stats = this.ctx.stats;
    stats.encapSuperframes!++;
    const len = this.ctx.dp.raw.encapBuild(0, d.ptr, d.len, this.wholeSegs);
    if (len <= 0) return false;
    this.fastRx!.writeFrame(this.ctx.memBase + d.ptr + this.writeAt, len);
    stats.groFrames++;
    stats.encapWhole!++;
    return true;
  }
}
