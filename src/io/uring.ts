// Batched tun reads and writes through io_uring: one io_uring_enter for a
// whole batch instead of one read()/write() system call per packet.
//
// A tun device has no recvmmsg/sendmmsg; without offloads each packet costs
// a system call, and on a paravirtualised guest like this machine entering
// the kernel costs ~1.1 µs (a getppid() loop). io_uring runs a batch of
// READ or WRITE requests in one call. Every request completes inline, in
// submission order: writes to a tun never wait, and reads carry RWF_NOWAIT,
// so one that finds the queue empty completes with -EAGAIN instead of
// staying in flight (O_NONBLOCK on the fd alone does not do that).
//
// The rings are mapped once (IORING_FEAT_SINGLE_MMAP) and read and written
// through DataViews over the mapping; the kernel only looks at them inside
// io_uring_enter, so plain loads and stores around the call suffice.
import koffi from "koffi";
import * as libc from "./libc.js";
import { OP_WRITE, type IoErrors } from "./errors.js";

const SYS_IO_URING_SETUP = 425; // the same number on every architecture
const SYS_IO_URING_ENTER = 426;
const IORING_ENTER_GETEVENTS = 1;
const IORING_FEAT_SINGLE_MMAP = 1;
const IORING_OFF_SQ_RING = 0;
const IORING_OFF_SQES = 0x10000000;
const IORING_OP_READ = 22;
const IORING_OP_WRITE = 23;
// Reads must complete with -EAGAIN when nothing is queued, never wait (a
// request left in flight would hold its slot): RWF_NOWAIT, as O_NONBLOCK
// alone does not make io_uring give up (it arms a poll instead).
const RWF_NOWAIT = 0x8;
const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1, MAP_POPULATE = 0x8000;

const lib = koffi.load("libc.so.6");
const setup = lib.func("syscall", "long", ["long", "uint32", "intptr_t"]) as (nr: number, entries: number, params: number) => number;
const enter = lib.func("syscall", "long", ["long", "int", "uint32", "uint32", "uint32", "intptr_t", "size_t"]) as (
  nr: number, fd: number, toSubmit: number, minComplete: number, flags: number, sig: number, sz: number) => number;
const mmap = lib.func("void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)");
const munmap = lib.func("int munmap(void *addr, size_t len)");

// struct io_uring_params: sq_off at 40, cq_off at 80 (linux/io_uring.h).
const P_SQ_ENTRIES = 0, P_CQ_ENTRIES = 4, P_FEATURES = 20, P_SQ_OFF = 40, P_CQ_OFF = 80;
const SQE_SIZE = 64, CQE_SIZE = 16;

export class TunRing {
  readonly entries: number;
  private readonly fd: number;
  private readonly ringPtr: unknown;
  private readonly sqesPtr: unknown;
  private readonly ringLen: number;
  private readonly sqesLen: number;
  private readonly ring: DataView;
  private readonly sqes: DataView;
  private readonly sqTail: number;
  private readonly sqMask: number;
  private readonly cqHead: number;
  private readonly cqTail: number;
  private readonly cqMask: number;
  private readonly cqes: number;
  /** res of request i of the last batch: bytes, or -errno. */
  readonly res: Int32Array;

  /** Throws SyscallError when the kernel has no io_uring or refuses it (io_uring_disabled). */
  constructor(entries = 256) {
    const p = new libc.Scratch(120);
    p.u8.fill(0);
    const fd = setup(SYS_IO_URING_SETUP, entries, p.addr);
    if (fd < 0) throw new libc.SyscallError("io_uring_setup", libc.errno());
    this.fd = fd;
    const dv = p.dv;
    this.entries = dv.getUint32(P_SQ_ENTRIES, true);
    const cqEntries = dv.getUint32(P_CQ_ENTRIES, true);
    if (!(dv.getUint32(P_FEATURES, true) & IORING_FEAT_SINGLE_MMAP)) {
      libc.closeQuiet(fd);
      throw new Error("io_uring without IORING_FEAT_SINGLE_MMAP (kernel older than 5.4)");
    }
    const sq = (k: number) => dv.getUint32(P_SQ_OFF + k * 4, true);
    const cq = (k: number) => dv.getUint32(P_CQ_OFF + k * 4, true);
    const sqArray = sq(6);
    this.ringLen = Math.max(sqArray + this.entries * 4, cq(5) + cqEntries * CQE_SIZE);
    this.sqesLen = this.entries * SQE_SIZE;
    this.ringPtr = mmap(null, this.ringLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    this.sqesPtr = mmap(null, this.sqesLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    const failed = (ptr: unknown) => koffi.address(ptr) === 0xffffffffffffffffn;
    if (failed(this.ringPtr) || failed(this.sqesPtr)) {
      const e = libc.errno();
      libc.closeQuiet(fd);
      throw new libc.SyscallError("mmap(io_uring)", e);
    }
    this.ring = new DataView(koffi.view(this.ringPtr, this.ringLen));
    this.sqes = new DataView(koffi.view(this.sqesPtr, this.sqesLen));
    this.sqTail = sq(1);
    this.sqMask = this.ring.getUint32(sq(2), true);
    this.cqHead = cq(0);
    this.cqTail = cq(1);
    this.cqMask = this.ring.getUint32(cq(2), true);
    this.cqes = cq(5);
    // SQ slot k always holds SQE k: fill the indirection array once.
    for (let k = 0; k < this.entries; k++) this.ring.setUint32(sqArray + k * 4, k, true);
    this.res = new Int32Array(this.entries);
  }

  /** Read up to `n` packets from `fd` (O_NONBLOCK), request i into addr(i)
   *  with room for `cap` bytes, in one call. res[i] is the packet's length
   *  or -errno (-EAGAIN once the queue ran empty). Returns -errno when the
   *  call itself failed, else n. */
  readBatch(fd: number, n: number, addr: (i: number) => number, cap: number): number {
    return this.run(IORING_OP_READ, fd, n, addr, () => cap);
  }

  /** errno of the last write writeAll() saw fail. */
  lastErrno = 0;

  /** Write `n` packets to `fd`, packet i from addr(i), len(i) bytes, in
   *  order, `entries` per call. Returns how many failed (lastErrno has the
   *  last failure's errno; `errors` counts each by errno). */
  writeAll(fd: number, n: number, addr: (i: number) => number, len: (i: number) => number, errors?: IoErrors): number {
    let failed = 0;
    for (let k0 = 0; k0 < n; k0 += this.entries) {
      const m = Math.min(this.entries, n - k0);
      const r = this.run(IORING_OP_WRITE, fd, m, (i) => addr(k0 + i), (i) => len(k0 + i));
      if (r < 0) {
        this.lastErrno = -r;
        failed += m;
        errors?.add(OP_WRITE, -r, m);
        continue;
      }
      for (let i = 0; i < m; i++) {
        if (this.res[i] < 0) {
          this.lastErrno = -this.res[i];
          errors?.add(OP_WRITE, -this.res[i]);
          failed++;
        }
      }
    }
    return failed;
  }

  /** One io_uring_enter for n (at most `entries`) requests; fills res. */
  private run(op: number, fd: number, n: number, addr: (i: number) => number, len: (i: number) => number): number {
    if (n > this.entries) n = this.entries;
    if (n <= 0) return 0;
    const r = this.ring, s = this.sqes;
    let tail = r.getUint32(this.sqTail, true);
    for (let i = 0; i < n; i++) {
      const e = ((tail + i) & this.sqMask) * SQE_SIZE;
      // opcode, flags, ioprio, fd; off = -1 (current position: a tun ignores it);
      // addr, len, rw_flags, user_data = i; the rest zero.
      const a = addr(i);
      s.setUint32(e, op, true);
      s.setInt32(e + 4, fd, true);
      s.setUint32(e + 8, 0xffffffff, true);
      s.setUint32(e + 12, 0xffffffff, true);
      s.setUint32(e + 16, a >>> 0, true); // 64-bit address as two words: no BigInt per packet
      s.setUint32(e + 20, Math.floor(a / 0x100000000), true);
      s.setUint32(e + 24, len(i), true);
      s.setUint32(e + 28, op === IORING_OP_READ ? RWF_NOWAIT : 0, true);
      s.setUint32(e + 32, i, true);
      for (let o = 36; o < SQE_SIZE; o += 4) s.setUint32(e + o, 0, true);
    }
    tail = (tail + n) >>> 0;
    r.setUint32(this.sqTail, tail, true);
    if (enter(SYS_IO_URING_ENTER, this.fd, n, n, IORING_ENTER_GETEVENTS, 0, 0) < 0) {
      const e = libc.errno();
      if (e !== libc.EINTR) return -e;
      // Interrupted while waiting: the requests were taken; collect them.
      enter(SYS_IO_URING_ENTER, this.fd, 0, n, IORING_ENTER_GETEVENTS, 0, 0);
    }
    let head = r.getUint32(this.cqHead, true);
    const cqTail = r.getUint32(this.cqTail, true);
    this.res.fill(-libc.EAGAIN, 0, n);
    while (head !== cqTail) {
      const c = this.cqes + (head & this.cqMask) * CQE_SIZE;
      const i = r.getUint32(c, true);
      if (i < n) this.res[i] = r.getInt32(c + 8, true);
      head = (head + 1) >>> 0;
    }
    r.setUint32(this.cqHead, head, true);
    return n;
  }

  close(): void {
    munmap(this.sqesPtr, this.sqesLen);
    munmap(this.ringPtr, this.ringLen);
    libc.closeQuiet(this.fd);
  }
}
