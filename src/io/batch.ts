// Zero-copy batch I/O between the kernel and WASM linear memory.
//
// The kernel reads and writes packet bytes straight into the data path's
// slots: every iovec points at an absolute address inside the
// WebAssembly.Memory (its native base + slot offset), so no byte passes
// through JavaScript. The message headers (mmsghdr, iovec, sockaddr_in,
// control buffers) live in a native scratch area laid out once here; per batch
// only lengths and addresses are patched. One native call moves a whole batch
// where the kernel allows it (recvmmsg, sendmmsg); tun/tap has no batch call,
// so readTun/writeTun go through io_uring when given a ring (useRing: one
// io_uring_enter per batch, src/io/uring.ts) where the batch is large
// enough to gain from it (RING_MIN_BATCH), else one read()/write() per packet.
//
// Slot i is [slotBase + i*slotSize, +slotSize); its metadata record is at
// metaBase + i*META_SIZE (src/dataplane/abi.ts). Input is placed at HEADROOM.
// Per-packet failures are counted in `stats`, never thrown.
import * as abi from "../dataplane/abi.js";
import koffi from "koffi";
import * as libc from "./libc.js";
import type { TunRing } from "./uring.js";
import { E_BAD_SLOT, E_TRUNCATED, IoErrors, OP_READ, OP_RECV, OP_SEND, OP_WRITE } from "./errors.js";
import { SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE, writeSockaddrIn, writeSockaddrIn6 } from "./sockets.js";
import type { Underlay6Peers } from "./underlay6.js";
import {
  forEachCmsg, IOV_SIZE, MH_CONTROL, MH_CONTROLLEN, MH_FLAGS, MH_IOV, MH_IOVLEN, MH_LEN, MH_NAME, MH_NAMELEN, MMSG_SIZE, ScratchLayout,
  outerTos, setPtr, waitWritable,
} from "./msghdr.js";

const CTRL_SIZE = 64; // room for IP_TOS (24) + IP_PKTINFO (32) cmsgs, or IPV6_TCLASS (24)
const POLLFD_SIZE = 8; // { int fd; short events; short revents }
const MAX_POLL_FDS = 32;
const IPV4_MIN = 20;
const IPV6_MIN = 40;
/** Received source addresses: room for a sockaddr_in6 (the IPv6 underlay's sockets). */
const RX_NAME_SIZE = SOCKADDR_IN6_SIZE;
/** With a ring, batches smaller than this go by read()/write(): on kernel
 *  6.18 here a request through the ring costs about what a whole system
 *  call does (~0.6 µs of kernel for an empty read, against ~0.25 µs to
 *  enter the kernel), so the ring wins only where it saves several calls
 *  (measured break-even: 4 writes). */
export const RING_MIN_BATCH = 4;

export interface BatchIOOptions {
  memory: WebAssembly.Memory;
  slotBase: number;
  slotSize: number;
  metaBase: number;
  /** Number of slots (and metadata records). */
  batch: number;
  /** Where failures are counted by errno (default: an IoErrors of its own). */
  errors?: IoErrors;
}

/** Counters of per-packet failures; plain numbers, read them any time. */
export interface BatchIOStats {
  rxErrors: number; // read/recvmmsg failures other than EAGAIN/EINTR
  rxTruncated: number; // datagrams longer than a slot (MSG_TRUNC); delivered cut short
  txErrors: number; // packets sendRaw could not send (all causes)
  txTooBig: number; // ... of which EMSGSIZE: larger than the route MTU
  txNoBuffer: number; // ... of which EAGAIN/ENOBUFS after one wait
  txBadSlot: number; // ... of which off/len outside the slot
  tunWriteErrors: number;
  lastErrno: number;
}

/** Slot numbers to send or write: the data path's index lists (a Uint16Array over linear memory) or a plain array. */
export type SlotIndices = Uint16Array | readonly number[];

export interface SendResult {
  /** Packets the kernel accepted. */
  sent: number;
  /** Packets dropped: sent + errors === count. */
  errors: number;
}

export interface WriteResult {
  written: number;
  errors: number;
}

export class BatchIO {
  readonly memory: WebAssembly.Memory;
  readonly slotBase: number;
  readonly slotSize: number;
  readonly metaBase: number;
  readonly batch: number;
  readonly stats: BatchIOStats = {
    rxErrors: 0, rxTruncated: 0, txErrors: 0, txTooBig: 0, txNoBuffer: 0, txBadSlot: 0, tunWriteErrors: 0, lastErrno: 0,
  };

  /** Failures by operation and errno (shared with the worker's other I/O). */
  readonly errors: IoErrors;

  /** The last readTun stopped at an empty queue (EAGAIN, EOF or an error)
   *  rather than a full batch: reading again before poll says so finds nothing. */
  lastReadShort = false;

  private buffer!: ArrayBuffer; // memory.buffer the views below were made for
  private mem!: DataView; // over all of linear memory: metadata and headers
  private memAddr = 0; // native address of linear memory byte 0

  private readonly scratch: libc.Scratch;
  private readonly s: DataView;
  private readonly rxMsgs: number; // scratch offsets
  private readonly rxIovs: number;
  private readonly rxNames: number;
  private readonly rxCtrl: number;
  private readonly txMsgs: number;
  private readonly txIovs: number;
  private readonly txNames: number;
  private readonly txNames6: number;
  private readonly pollFds: number;
  private rxFilled: number; // rx messages whose name/control lengths the kernel changed
  private ring?: TunRing; // tun reads/writes through io_uring (useRing)
  private lastRingRead = 0;
  private lastRingWant = 0;
  private ringAddrs?: Float64Array;
  private ringLens?: Uint32Array;

  constructor(opts: BatchIOOptions) {
    if (opts.slotSize <= abi.HEADROOM + IPV4_MIN) throw new RangeError(`slotSize ${opts.slotSize} leaves no room after HEADROOM`);
    if (opts.batch < 1 || opts.batch > 0xffff) throw new RangeError(`batch ${opts.batch} out of range`);
    this.memory = opts.memory;
    this.slotBase = opts.slotBase;
    this.slotSize = opts.slotSize;
    this.metaBase = opts.metaBase;
    this.batch = opts.batch;
    this.errors = opts.errors ?? new IoErrors();
    const end = opts.slotBase + opts.batch * opts.slotSize;
    const metaEnd = opts.metaBase + opts.batch * abi.META_SIZE;
    if (end > opts.memory.buffer.byteLength || metaEnd > opts.memory.buffer.byteLength) {
      throw new RangeError("slots or metadata lie outside linear memory");
    }

    const n = opts.batch;
    const layout = new ScratchLayout();
    const take = (bytes: number) => layout.take(bytes);
    this.rxMsgs = take(n * MMSG_SIZE);
    this.rxIovs = take(n * IOV_SIZE);
    this.rxNames = take(n * RX_NAME_SIZE);
    this.rxCtrl = take(n * CTRL_SIZE);
    this.txMsgs = take(n * MMSG_SIZE);
    this.txIovs = take(n * IOV_SIZE);
    this.txNames = take(n * SOCKADDR_IN_SIZE);
    this.txNames6 = take(n * SOCKADDR_IN6_SIZE);
    this.pollFds = take(MAX_POLL_FDS * POLLFD_SIZE);
    this.scratch = new libc.Scratch(layout.size);
    this.s = this.scratch.dv;

    // Fixed pointers: each message i owns iovec i, name i and control buffer i.
    const base = this.scratch.addr;
    for (let i = 0; i < n; i++) {
      const rm = this.rxMsgs + i * MMSG_SIZE;
      setPtr(this.s, rm + MH_NAME, base + this.rxNames + i * RX_NAME_SIZE);
      setPtr(this.s, rm + MH_IOV, base + this.rxIovs + i * IOV_SIZE);
      setPtr(this.s, rm + MH_IOVLEN, 1);
      setPtr(this.s, rm + MH_CONTROL, base + this.rxCtrl + i * CTRL_SIZE);
      const tm = this.txMsgs + i * MMSG_SIZE;
      setPtr(this.s, tm + MH_NAME, base + this.txNames + i * SOCKADDR_IN_SIZE);
      this.s.setUint32(tm + MH_NAMELEN, SOCKADDR_IN_SIZE, true);
      setPtr(this.s, tm + MH_IOV, base + this.txIovs + i * IOV_SIZE);
      setPtr(this.s, tm + MH_IOVLEN, 1);
      writeSockaddrIn(this.s, this.txNames + i * SOCKADDR_IN_SIZE, 0, 0);
    }
    this.rxFilled = n; // all rx headers get their lengths on first use
    this.rebase();
  }

  /** Absolute native address of slot i's byte 0. */
  slotAddress(i: number): number {
    this.sync();
    return this.memAddr + this.slotBase + i * this.slotSize;
  }

  // --- receive ---------------------------------------------------------------

  /**
   * Read up to `max` packets (capped at `batch`) from a nonblocking tun/tap fd
   * into slots 0.. at HEADROOM, one read() each, stopping at EAGAIN. Sets each
   * packet's meta off = HEADROOM, len, and zeroes addr, addr2, tos. Returns
   * the number of packets read.
   */
  readTun(fd: number, max: number): number {
    this.sync();
    const n = max < this.batch ? max : this.batch;
    const cap = this.slotSize - abi.HEADROOM;
    if (this.ring && this.lastRingRead >= RING_MIN_BATCH) return this.readTunRing(fd, n, cap);
    let got = 0;
    this.lastRingRead = 0;
    this.lastRingWant = n; // a read() loop asks for up to n
    this.lastReadShort = true;
    while (got < n) {
      const r = libc.read(fd, this.memAddr + this.slotBase + got * this.slotSize + abi.HEADROOM, cap);
      if (r < 0) {
        const e = libc.errno();
        if (e === libc.EINTR) continue;
        if (e !== libc.EAGAIN) this.rxError(e, OP_READ);
        return got;
      }
      if (r === 0) return got;
      this.setInputMeta(got, r, 0, 0, 0);
      this.lastRingRead = ++got;
    }
    this.lastReadShort = false;
    return got;
  }

  /**
   * Receive up to `max` datagrams from the VXLAN UDP socket with one
   * recvmmsg(MSG_DONTWAIT) into slots 0.. at HEADROOM. Meta: off = HEADROOM,
   * len = UDP payload bytes, addr = outer source, addr2 = outer destination
   * (IP_PKTINFO), tos = outer TOS (IP_RECVTOS). Returns the count (0 when
   * none is waiting).
   */
  recvVxlan(fd: number, max: number): number {
    const got = this.recvBatch(fd, max);
    const s = this.s;
    for (let i = 0; i < got; i++) {
      const m = this.rxMsgs + i * MMSG_SIZE;
      const src = s.getUint32(this.rxNames + i * RX_NAME_SIZE + 4, false);
      // Walk the control messages: IP_TOS (1 byte) and IP_PKTINFO (ipi_addr).
      let tos = 0, dst = 0;
      forEachCmsg(s, this.rxCtrl + i * CTRL_SIZE, s.getUint32(m + MH_CONTROLLEN, true), (level, type, data) => {
        tos = outerTos(s, level, type, data) ?? tos;
        if (level === libc.IPPROTO_IP && type === libc.IP_PKTINFO) dst = s.getUint32(data + 8, false);
      });
      this.setInputMeta(i, s.getUint32(m + MH_LEN, true), src, dst, tos);
    }
    return got;
  }

  /**
   * Receive up to `max` packets from the raw IPIP socket with one
   * recvmmsg(MSG_DONTWAIT): each slot holds the whole outer IPv4 packet at
   * HEADROOM. Meta: off, len, addr = outer source, and, when the packet has
   * an IPv4 header, addr2 = outer destination and tos = outer TOS.
   */
  recvIpip(fd: number, max: number): number {
    const got = this.recvBatch(fd, max);
    const s = this.s;
    const mem = this.mem;
    for (let i = 0; i < got; i++) {
      const len = s.getUint32(this.rxMsgs + i * MMSG_SIZE + MH_LEN, true);
      const src = s.getUint32(this.rxNames + i * RX_NAME_SIZE + 4, false);
      const p = this.slotBase + i * this.slotSize + abi.HEADROOM;
      const hasHeader = len >= IPV4_MIN;
      this.setInputMeta(i, len, src, hasHeader ? mem.getUint32(p + 16, false) : 0, hasHeader ? mem.getUint8(p + 1) : 0);
    }
    return got;
  }

  /**
   * The IPv6 underlay's sockets: up to `max` messages with one recvmmsg
   * into slots 0.. at HEADROOM, each what the socket hands over after the
   * outer IPv6 header: the VXLAN header onwards (openVxlanSocket6, for
   * processVxlanBatch), or the inner packet of IPv4/IPv6 in IPv6
   * (openIp6TunnelSocket, for processIp6TunnelBatch). Meta addr is the
   * sending peer's IPv4 name (`peers`; 0: no peer's), tos the outer traffic
   * class (IPV6_TCLASS), addr2 0.
   */
  recvUnderlay6(fd: number, max: number, peers: Underlay6Peers): number {
    const got = this.recvBatch(fd, max);
    for (let i = 0; i < got; i++) {
      const m = this.rxMsgs + i * MMSG_SIZE;
      this.setInputMeta(i, this.s.getUint32(m + MH_LEN, true), this.sender6(i, peers), 0, this.tclass(i));
    }
    return got;
  }

  /** The IPv4 name of the peer that sent message i (a sockaddr_in6), 0: none. */
  private sender6(i: number, peers: Underlay6Peers): number {
    const name = this.rxNames + i * RX_NAME_SIZE;
    if (this.s.getUint16(name, true) !== libc.AF_INET6) return 0;
    return peers.lookup(this.s, name + 8);
  }

  /** Message i's outer traffic class (an IPV6_TCLASS cmsg; 0 without one). */
  private tclass(i: number): number {
    const s = this.s;
    let tc = 0;
    forEachCmsg(s, this.rxCtrl + i * CTRL_SIZE, s.getUint32(this.rxMsgs + i * MMSG_SIZE + MH_CONTROLLEN, true), (level, type, data) => {
      tc = outerTos(s, level, type, data) ?? tc;
    });
    return tc;
  }

  // --- send ------------------------------------------------------------------

  /**
   * Send the complete IPv4 packets in slots idx[0..count) - bytes
   * [off, off+len) of each - through a raw IPPROTO_RAW socket, each to
   * sockaddr_in(meta.addr), with sendmmsg. After a partial send the rest is
   * retried; a packet the kernel refuses (EMSGSIZE above the route MTU,
   * unreachable, filtered) is counted and skipped. On EAGAIN/ENOBUFS the call
   * waits once, up to 1 ms, for room, then drops what remains.
   */
  sendRaw(fd: number, idx: SlotIndices, count: number, family: 4 | 6 = 4): SendResult {
    this.sync();
    const s = this.s, mem = this.mem;
    const base = this.scratch.addr;
    let n = 0, errors = 0;
    for (let k = 0; k < count; k++) {
      const i = idx[k];
      const addr = this.outputPacket(i, family === 6 ? IPV6_MIN : IPV4_MIN);
      if (addr < 0) {
        errors++;
        this.stats.txBadSlot++;
        this.errors.add(OP_SEND, E_BAD_SLOT);
        continue;
      }
      const iov = this.txIovs + n * IOV_SIZE;
      setPtr(this.s, iov, addr);
      setPtr(this.s, iov + 8, this.outLen);
      if (family === 6) {
        // IPv6 (NAT66's masqueraded packets): to the header's destination,
        // through an AF_INET6 IPPROTO_RAW socket (header included).
        const name = this.txNames6 + n * SOCKADDR_IN6_SIZE;
        const tm = this.txMsgs + n * MMSG_SIZE;
        setPtr(s, tm + MH_NAME, base + name);
        s.setUint32(tm + MH_NAMELEN, SOCKADDR_IN6_SIZE, true);
        writeSockaddrIn6(s, name, mem, addr - this.memAddr + 24, 0);
      } else {
        s.setUint32(this.txNames + n * SOCKADDR_IN_SIZE + 4, mem.getUint32(this.metaBase + i * abi.META_SIZE + abi.META_ADDR, true), false);
      }
      n++;
    }
    try {
      return this.sendPrepared(fd, n, count, errors);
    } finally {
      if (family === 6) {
        for (let k = 0; k < n; k++) {
          const tm = this.txMsgs + k * MMSG_SIZE;
          setPtr(s, tm + MH_NAME, base + this.txNames + k * SOCKADDR_IN_SIZE);
          s.setUint32(tm + MH_NAMELEN, SOCKADDR_IN_SIZE, true);
        }
      }
    }
  }

  /** sendmmsg of the `n` messages prepared from `count` slots (`errors` already failed). */
  private sendPrepared(fd: number, n: number, count: number, errors: number): SendResult {
    const base = this.scratch.addr;
    let start = 0, waited = false;
    while (start < n) {
      const r = libc.sendmmsg(fd, base + this.txMsgs + start * MMSG_SIZE, n - start, 0);
      if (r > 0) {
        start += r;
        continue;
      }
      const e = r < 0 ? libc.errno() : libc.EAGAIN;
      if (e === libc.EINTR) continue;
      this.stats.lastErrno = e;
      if (e === libc.EAGAIN || e === libc.ENOBUFS) {
        if (!waited) {
          waited = true;
          waitWritable(fd, 1);
          continue;
        }
        const rest = n - start;
        errors += rest;
        this.stats.txNoBuffer += rest;
        this.errors.add(OP_SEND, e, rest);
        break;
      }
      // The first message of the remainder failed: drop it, go on.
      if (e === libc.EMSGSIZE) this.stats.txTooBig++;
      this.errors.add(OP_SEND, e);
      errors++;
      start++;
    }
    this.stats.txErrors += errors;
    return { sent: count - errors, errors };
  }

  /**
   * Write slots idx[0..count) - bytes [off, off+len) of each - to a tun/tap
   * fd, one write() per packet. Failures (EAGAIN on a full queue, EINVAL on a
   * malformed packet, EIO when the link is down) are counted, not thrown.
   */
  writeTun(fd: number, idx: SlotIndices, count: number): WriteResult {
    this.sync();
    if (this.ring && count >= RING_MIN_BATCH) return this.writeTunRing(fd, idx, count);
    let written = 0, errors = 0;
    for (let k = 0; k < count; k++) {
      const addr = this.outputPacket(idx[k], 1);
      if (addr < 0) {
        errors++;
        this.errors.add(OP_WRITE, E_BAD_SLOT);
        continue;
      }
      const len = this.outLen;
      let r = libc.write(fd, addr, len);
      if (r < 0 && libc.errno() === libc.EINTR) r = libc.write(fd, addr, len);
      if (r < 0) {
        this.stats.lastErrno = libc.errno();
        this.errors.add(OP_WRITE, this.stats.lastErrno);
        errors++;
      } else written++;
    }
    this.stats.tunWriteErrors += errors;
    return { written, errors };
  }

  // --- io_uring ------------------------------------------------------------------

  /** Move tun packets through `ring` (one io_uring_enter per batch) from now on. */
  useRing(ring: TunRing): void {
    this.ring = ring;
  }

  /** readTun with one io_uring_enter, once the last read found at least
   *  RING_MIN_BATCH packets (a burst; below that read() is cheaper). An
   *  empty read through the ring costs the kernel ~0.6 µs, so few are asked
   *  for: one more than the last call found, twice as many after a call
   *  that found all it asked for (grow fast in a burst). A packet that
   *  landed after an empty read is moved down to close the gap. */
  private readTunRing(fd: number, n: number, cap: number): number {
    const ring = this.ring!;
    const last = this.lastRingRead, full = last > 0 && last >= this.lastRingWant;
    const want = Math.min(n, ring.entries, full ? 2 * last : last + 1);
    this.lastRingWant = want;
    const r = ring.readBatch(fd, want, this.memAddr + this.slotBase + abi.HEADROOM, this.slotSize, cap);
    if (r < 0) {
      this.rxError(-r, OP_READ);
      this.lastReadShort = true;
      return 0;
    }
    const res = ring.res;
    let got = 0;
    for (let i = 0; i < want; i++) {
      const len = res[i];
      if (len <= 0) {
        if (len < 0 && len !== -libc.EAGAIN && len !== -libc.EINTR) this.rxError(-len, OP_READ);
        continue;
      }
      if (i !== got) {
        const from = this.slotBase + i * this.slotSize + abi.HEADROOM;
        new Uint8Array(this.buffer).copyWithin(this.slotBase + got * this.slotSize + abi.HEADROOM, from, from + len);
      }
      this.setInputMeta(got, len, 0, 0, 0);
      got++;
    }
    this.lastRingRead = got;
    this.lastReadShort = got < want;
    return got;
  }

  /** writeTun through the ring; a slot with a bad length is counted, not written. */
  private writeTunRing(fd: number, idx: SlotIndices, count: number): WriteResult {
    const ring = this.ring!;
    const addrs = (this.ringAddrs ??= new Float64Array(this.batch));
    const lens = (this.ringLens ??= new Uint32Array(this.batch));
    let m = 0, errors = 0;
    for (let k = 0; k < count; k++) {
      const addr = this.outputPacket(idx[k], 1);
      if (addr < 0) {
        errors++;
        this.errors.add(OP_WRITE, E_BAD_SLOT);
        continue;
      }
      addrs[m] = addr;
      lens[m++] = this.outLen;
    }
    const failed = ring.writeAll(fd, m, addrs, lens, this.errors);
    if (failed) this.stats.lastErrno = ring.lastErrno;
    errors += failed;
    this.stats.tunWriteErrors += errors;
    return { written: m - failed, errors };
  }

  // --- waiting -----------------------------------------------------------------

  /**
   * Block in poll() until one of `fds` is readable (or has an error to
   * report, which the next read returns) or `timeoutMs` passes (-1: forever).
   * Returns a bitmask: bit k set when fds[k] is ready; 0 on timeout or EINTR.
   * Negative fds are ignored. Throws if an fd is not open (POLLNVAL).
   */
  pollReadable(fds: readonly number[], timeoutMs: number): number {
    const nfds = fds.length;
    if (nfds > MAX_POLL_FDS) throw new RangeError(`pollReadable takes at most ${MAX_POLL_FDS} fds`);
    const s = this.s;
    for (let k = 0; k < nfds; k++) {
      const p = this.pollFds + k * POLLFD_SIZE;
      s.setInt32(p, fds[k], true);
      s.setInt16(p + 4, libc.POLLIN, true);
      s.setInt16(p + 6, 0, true);
    }
    const r = libc.poll(this.scratch.addr + this.pollFds, nfds, timeoutMs);
    if (r <= 0) {
      if (r < 0 && libc.errno() !== libc.EINTR) throw new libc.SyscallError("poll", libc.errno());
      return 0;
    }
    let mask = 0;
    for (let k = 0; k < nfds; k++) {
      const re = s.getInt16(this.pollFds + k * POLLFD_SIZE + 6, true);
      if (re & libc.POLLNVAL) throw new Error(`pollReadable: fd ${fds[k]} is not open`);
      if (re & (libc.POLLIN | libc.POLLERR | libc.POLLHUP)) mask |= 1 << k;
    }
    return mask;
  }

  // --- internals -----------------------------------------------------------------

  /** Length of the packet outputPacket() found last. */
  private outLen = 0;

  /** The absolute address of output slot i's packet ([off, off+len) from its
   *  metadata), its length left in outLen; -1 when i is not a slot, the
   *  packet runs past the slot or is shorter than `minLen`. */
  private outputPacket(i: number, minLen: number): number {
    if (i >= this.batch) return -1;
    const meta = this.metaBase + i * abi.META_SIZE;
    const off = this.mem.getUint32(meta + abi.META_OFF, true);
    const len = this.mem.getUint32(meta + abi.META_LEN, true);
    if (off + len > this.slotSize || len < minLen) return -1;
    this.outLen = len;
    return this.memAddr + this.slotBase + i * this.slotSize + off;
  }

  private recvBatch(fd: number, max: number): number {
    this.sync();
    const n = max < this.batch ? max : this.batch;
    if (n <= 0) return 0;
    const s = this.s;
    // The kernel overwrote these in the messages the previous call filled.
    for (let i = 0; i < this.rxFilled; i++) {
      const m = this.rxMsgs + i * MMSG_SIZE;
      s.setUint32(m + MH_NAMELEN, RX_NAME_SIZE, true);
      setPtr(this.s, m + MH_CONTROLLEN, CTRL_SIZE);
      s.setInt32(m + MH_FLAGS, 0, true);
    }
    this.rxFilled = 0;
    const r = libc.recvmmsg(fd, this.scratch.addr + this.rxMsgs, n, libc.MSG_DONTWAIT, 0);
    if (r > 0) this.rxFilled = r;
    if (r < 0) {
      const e = libc.errno();
      if (e !== libc.EAGAIN && e !== libc.EINTR) this.rxError(e, OP_RECV);
      return 0;
    }
    for (let i = 0; i < r; i++) {
      if (s.getInt32(this.rxMsgs + i * MMSG_SIZE + MH_FLAGS, true) & libc.MSG_TRUNC) {
        this.stats.rxTruncated++;
        this.errors.add(OP_RECV, E_TRUNCATED);
      }
    }
    return r;
  }

  private setInputMeta(i: number, len: number, addr: number, addr2: number, tos: number): void {
    const m = this.metaBase + i * abi.META_SIZE;
    const mem = this.mem;
    mem.setUint32(m + abi.META_OFF, abi.HEADROOM, true);
    mem.setUint32(m + abi.META_LEN, len, true);
    mem.setUint32(m + abi.META_ADDR, addr, true);
    mem.setUint32(m + abi.META_ADDR2, addr2, true);
    mem.setUint8(m + abi.META_TOS, tos);
  }

  private rxError(e: number, op: number): void {
    this.stats.rxErrors++;
    this.errors.add(op, e);
    this.stats.lastErrno = e;
  }


  /** Re-derive views and the native base if linear memory was replaced (grown). */
  private sync(): void {
    if (this.memory.buffer !== this.buffer) this.rebase();
  }

  private rebase(): void {
    this.buffer = this.memory.buffer;
    this.mem = new DataView(this.buffer);
    this.memAddr = Number(koffi.address(new Uint8Array(this.buffer)));
    const cap = this.slotSize - abi.HEADROOM;
    for (let i = 0; i < this.batch; i++) {
      const iov = this.rxIovs + i * IOV_SIZE;
      setPtr(this.s, iov, this.memAddr + this.slotBase + i * this.slotSize + abi.HEADROOM);
      setPtr(this.s, iov + 8, cap);
    }
  }
}
