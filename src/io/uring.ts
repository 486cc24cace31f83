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
// through typed arrays over the mapping; the kernel only looks at them
// inside io_uring_enter, so plain loads and stores around the call suffice.
//
// What a call costs, measured on kernel 6.18 (2026-12-02): an empty
// RWF_NOWAIT read through the ring ~0.6 µs of kernel CPU (against ~0.12 µs
// for an empty read()), and ~1.3 µs of JavaScript per call with closures
// and DataViews. So: request i always uses SQE i (the SQ index array points
// at it), whose constant fields stay written from the last call of the same
// kind and only address and length change; the ring is set up
// SINGLE_ISSUER | DEFER_TASKRUN where the kernel takes it (6.1+), falling
// back to plain. The callers ask for few reads and use the ring only for
// batches large enough to gain from it (src/io/batch.ts).
//
// The fds are not registered (IORING_REGISTER_FILES): it saved ~0.1 µs a
// request, within the noise, and a registered tun stays attached until the
// ring is torn down, which the kernel does some time after the process
// exits: a daemon that exits past a hung worker would leave its tun behind
// for a moment (test/admin.test.ts saw it).
import koffi from "koffi";
import * as libc from "./libc.js";
import { OP_WRITE, type IoErrors } from "./errors.js";

const SYS_IO_URING_SETUP = 425; // the same number on every architecture
const SYS_IO_URING_ENTER = 426;
const IORING_ENTER_GETEVENTS = 1;
const IORING_FEAT_SINGLE_MMAP = 1;
const IORING_SETUP_SINGLE_ISSUER = 1 << 12;
const IORING_SETUP_DEFER_TASKRUN = 1 << 13;
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

// struct io_uring_params: flags at 8, sq_off at 40, cq_off at 80 (linux/io_uring.h).
const P_SQ_ENTRIES = 0, P_CQ_ENTRIES = 4, P_FLAGS = 8, P_FEATURES = 20, P_SQ_OFF = 40, P_CQ_OFF = 80;
const SQE_SIZE = 64, CQE_SIZE = 16;
// 32-bit words of an SQE: opcode | flags << 8 (ioprio 0), fd, off (2), addr (2), len, rw_flags, user_data (2), rest.
const W_OP = 0, W_FD = 1, W_OFF = 2, W_ADDR = 4, W_LEN = 6, W_RWFLAGS = 7, W_USER = 8, SQE_WORDS = SQE_SIZE / 4;

/** io_uring_setup with `flags`; the fd, or -errno. */
function trySetup(entries: number, flags: number, p: libc.Scratch): number {
  p.u8.fill(0);
  p.dv.setUint32(P_FLAGS, flags, true);
  const fd = setup(SYS_IO_URING_SETUP, entries, p.addr);
  return fd < 0 ? -libc.errno() : fd;
}

export class TunRing {
  readonly entries: number;
  /** The setup flags the kernel took (SINGLE_ISSUER | DEFER_TASKRUN, or 0). */
  readonly setupFlags: number;
  private readonly fd: number;
  private readonly ringPtr: unknown;
  private readonly sqesPtr: unknown;
  private readonly ringLen: number;
  private readonly sqesLen: number;
  private readonly ring32: Uint32Array;
  private readonly sqe32: Uint32Array;
  private readonly sqTail: number; // word offsets into ring32
  private readonly sqMask: number;
  private readonly sqArray: number;
  private readonly cqHead: number;
  private readonly cqTail: number;
  private readonly cqMask: number;
  private readonly cqes: number;
  /** What SQE i's constant fields were last written for (op and fd), -1: nothing. */
  private readonly kind: Float64Array;
  /** res of request i of the last batch: bytes, or -errno. */
  readonly res: Int32Array;

  /** Throws SyscallError when the kernel has no io_uring or refuses it
   *  (io_uring_disabled). */
  constructor(entries = 256) {
    const p = new libc.Scratch(120);
    let flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    let fd = trySetup(entries, flags, p);
    if (fd === -libc.EINVAL) fd = trySetup(entries, (flags = 0), p); // older than 6.1
    if (fd < 0) throw new libc.SyscallError("io_uring_setup", -fd);
    this.fd = fd;
    this.setupFlags = flags;
    const dv = p.dv;
    this.entries = dv.getUint32(P_SQ_ENTRIES, true);
    const cqEntries = dv.getUint32(P_CQ_ENTRIES, true);
    if (!(dv.getUint32(P_FEATURES, true) & IORING_FEAT_SINGLE_MMAP)) {
      libc.closeQuiet(fd);
      throw new Error("io_uring without IORING_FEAT_SINGLE_MMAP (kernel older than 5.4)");
    }
    const sq = (k: number) => dv.getUint32(P_SQ_OFF + k * 4, true);
    const cq = (k: number) => dv.getUint32(P_CQ_OFF + k * 4, true);
    this.ringLen = Math.max(sq(6) + this.entries * 4, cq(5) + cqEntries * CQE_SIZE);
    this.sqesLen = this.entries * SQE_SIZE;
    this.ringPtr = mmap(null, this.ringLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    this.sqesPtr = mmap(null, this.sqesLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    const failed = (ptr: unknown) => koffi.address(ptr) === 0xffffffffffffffffn;
    if (failed(this.ringPtr) || failed(this.sqesPtr)) {
      const e = libc.errno();
      libc.closeQuiet(fd);
      throw new libc.SyscallError("mmap(io_uring)", e);
    }
    this.ring32 = new Uint32Array(koffi.view(this.ringPtr, this.ringLen));
    this.sqe32 = new Uint32Array(koffi.view(this.sqesPtr, this.sqesLen));
    this.sqTail = sq(1) / 4;
    this.sqMask = this.ring32[sq(2) / 4];
    this.sqArray = sq(6) / 4;
    this.cqHead = cq(0) / 4;
    this.cqTail = cq(1) / 4;
    this.cqMask = this.ring32[cq(2) / 4];
    this.cqes = cq(5) / 4;
    this.kind = new Float64Array(this.entries).fill(-1);
    this.res = new Int32Array(this.entries);
  }

  /** Read up to `n` packets from `fd` (O_NONBLOCK), request i into address
   *  base + i * stride with room for `cap` bytes, in one call. res[i] is
   *  the packet's length or -errno (-EAGAIN once the queue ran empty).
   *  Returns -errno when the call itself failed, else n. */
  readBatch(fd: number, n: number, base: number, stride: number, cap: number): number {
    if (n > this.entries) n = this.entries;
    if (n <= 0) return 0;
    const s = this.sqe32;
    this.prepare(IORING_OP_READ, fd, n);
    for (let i = 0; i < n; i++) {
      const e = i * SQE_WORDS, a = base + i * stride;
      s[e + W_ADDR] = a >>> 0; // 64-bit address as two words: no BigInt per packet
      s[e + W_ADDR + 1] = Math.floor(a / 0x100000000);
      s[e + W_LEN] = cap;
    }
    return this.submit(n);
  }

  /** errno of the last write writeAll() saw fail. */
  lastErrno = 0;

  /** Write `n` packets to `fd`, packet i from addrs[i], lens[i] bytes, in
   *  order, `entries` per call. Returns how many failed (lastErrno has the
   *  last failure's errno; `errors` counts each by errno). */
  writeAll(fd: number, n: number, addrs: Float64Array, lens: Uint32Array, errors?: IoErrors): number {
    let failed = 0;
    const s = this.sqe32;
    for (let k0 = 0; k0 < n; k0 += this.entries) {
      const m = Math.min(this.entries, n - k0);
      this.prepare(IORING_OP_WRITE, fd, m);
      for (let i = 0; i < m; i++) {
        const e = i * SQE_WORDS, a = addrs[k0 + i];
        s[e + W_ADDR] = a >>> 0;
        s[e + W_ADDR + 1] = Math.floor(a / 0x100000000);
        s[e + W_LEN] = lens[k0 + i];
      }
      const r = this.submit(m);
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

  /** SQEs 0..n get the constant fields of `op` on `fd` where they hold another kind. */
  private prepare(op: number, fd: number, n: number): void {
    const key = op * 0x100000000 + (fd >>> 0);
    const s = this.sqe32, kind = this.kind;
    for (let i = 0; i < n; i++) {
      if (kind[i] === key) continue;
      kind[i] = key;
      const e = i * SQE_WORDS;
      s.fill(0, e, e + SQE_WORDS);
      s[e + W_OP] = op;
      s[e + W_FD] = fd;
      s[e + W_OFF] = 0xffffffff; // off = -1: the current position (a tun ignores it)
      s[e + W_OFF + 1] = 0xffffffff;
      s[e + W_RWFLAGS] = op === IORING_OP_READ ? RWF_NOWAIT : 0;
      s[e + W_USER] = i;
    }
  }

  /** One io_uring_enter for requests 0..n (SQE i each); fills res. */
  private submit(n: number): number {
    const r = this.ring32;
    const tail = r[this.sqTail];
    for (let i = 0; i < n; i++) r[this.sqArray + ((tail + i) & this.sqMask)] = i;
    r[this.sqTail] = (tail + n) >>> 0;
    if (enter(SYS_IO_URING_ENTER, this.fd, n, n, IORING_ENTER_GETEVENTS, 0, 0) < 0) {
      const e = libc.errno();
      if (e !== libc.EINTR) return -e;
      // Interrupted while waiting: the requests were taken; collect them.
      enter(SYS_IO_URING_ENTER, this.fd, 0, n, IORING_ENTER_GETEVENTS, 0, 0);
    }
    let head = r[this.cqHead];
    const cqTail = r[this.cqTail];
    const res = this.res;
    res.fill(-libc.EAGAIN, 0, n);
    while (head !== cqTail) {
      const c = this.cqes + (head & this.cqMask) * (CQE_SIZE / 4);
      const i = r[c];
      if (i < n) res[i] = r[c + 2] | 0;
      head = (head + 1) >>> 0;
    }
    r[this.cqHead] = head;
    return n;
  }

  close(): void {
    munmap(this.sqesPtr, this.sqesLen);
    munmap(this.ringPtr, this.ringLen);
    libc.closeQuiet(this.fd);
  }
}
