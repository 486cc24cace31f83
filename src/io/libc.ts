// The libc system calls the packet I/O layer needs, bound with koffi.
//
// Every pointer argument is declared `intptr_t`, not `void *`: callers pass
// absolute addresses (WASM linear memory base + offset, or a native scratch
// area) as plain numbers, so a call moves no bytes through JavaScript and
// allocates nothing. Functions return the raw result (-1 on failure); read the
// failure with `errno()` immediately after the call, before any other native
// call. `check*` wrappers throw `SyscallError` for the setup paths where a
// failure is fatal; the per-packet paths never throw.
import koffi from "koffi";

if (process.platform !== "linux") throw new Error("src/io needs Linux (tun/tap, recvmmsg, raw sockets)");
if (process.arch !== "x64" && process.arch !== "arm64") {
  // The struct layouts in batch.ts (msghdr, iovec, cmsghdr) are the LP64 ones.
  throw new Error(`src/io supports 64-bit Linux only (x64, arm64), not ${process.arch}`);
}

const lib = koffi.load("libc.so.6");

export const open = lib.func("int open(const char *path, int flags, int mode)") as (path: string, flags: number, mode: number) => number;
export const close = lib.func("int close(int fd)") as (fd: number) => number;
export const read = lib.func("intptr_t read(int fd, intptr_t buf, size_t count)") as (fd: number, buf: number, count: number) => number;
export const write = lib.func("intptr_t write(int fd, intptr_t buf, size_t count)") as (fd: number, buf: number, count: number) => number;
/** ioctl with a pointer argument (struct ifreq, int *). */
export const ioctlPtr = lib.func("int ioctl(int fd, unsigned long request, intptr_t arg)") as (fd: number, request: number, arg: number) => number;
export const fcntl = lib.func("int fcntl(int fd, int cmd, int arg)") as (fd: number, cmd: number, arg: number) => number;
export const socket = lib.func("int socket(int domain, int type, int protocol)") as (domain: number, type: number, protocol: number) => number;
export const bind = lib.func("int bind(int fd, intptr_t addr, uint32_t addrlen)") as (fd: number, addr: number, len: number) => number;
export const setsockopt = lib.func("int setsockopt(int fd, int level, int name, intptr_t value, uint32_t len)") as (
  fd: number, level: number, name: number, value: number, len: number) => number;
export const getsockopt = lib.func("int getsockopt(int fd, int level, int name, intptr_t value, intptr_t lenPtr)") as (
  fd: number, level: number, name: number, value: number, lenPtr: number) => number;
export const poll = lib.func("int poll(intptr_t fds, unsigned long nfds, int timeout)") as (fds: number, nfds: number, timeoutMs: number) => number;
export const recvmmsg = lib.func("int recvmmsg(int fd, intptr_t msgvec, unsigned int vlen, int flags, intptr_t timeout)") as (
  fd: number, msgvec: number, vlen: number, flags: number, timeout: number) => number;
export const sendmmsg = lib.func("int sendmmsg(int fd, intptr_t msgvec, unsigned int vlen, int flags)") as (
  fd: number, msgvec: number, vlen: number, flags: number) => number;

/** errno of the last native call made through koffi on this thread. */
export function errno(): number {
  return koffi.errno();
}

// --- constants (Linux, all architectures we support) ------------------------
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_IP = 0;
export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_UDP = 17;
export const IPPROTO_RAW = 255;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_RCVBUFFORCE = 33;
export const SO_SNDBUFFORCE = 32;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ICMPV6 = 58;
export const IPV6_V6ONLY = 26;
export const IPV6_RECVTCLASS = 66;
export const IPV6_TCLASS = 67;
export const IPV6_UNICAST_HOPS = 16;
export const IPV6_MTU_DISCOVER = 23;
/** As IP_PMTUDISC_PROBE: the device MTU, not the route's learnt path MTU (the data path keeps its own). */
export const IPV6_PMTUDISC_PROBE = 3;
/** Never fragment at the source: a datagram too big fails (EMSGSIZE). */
export const IPV6_DONTFRAG = 62;
/** Flow labels from the flow hash whatever net.ipv6.auto_flowlabels says (RFC 6438). */
export const IPV6_AUTOFLOWLABEL = 70;
/** Bind to an address not (yet) usable: IPv6's is tentative for a second or two while DAD runs. */
export const IPV6_FREEBIND = 78;
export const IP_TOS = 1;
export const IP_HDRINCL = 3;
export const IP_PKTINFO = 8;
export const IP_RECVTOS = 13;
export const IP_MTU_DISCOVER = 10;
export const IP_PMTUDISC_DONT = 0;
/** DF set on every packet; the route's learnt path MTU is not applied (the data path keeps its own). */
export const IP_PMTUDISC_PROBE = 3;
/** DF never set; the interface's MTU, never the route's learnt path MTU. */
export const IP_PMTUDISC_INTERFACE = 4;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

// <linux/if_tun.h> ioctls (asm-generic _IOW/_IOR encoding: x86_64 and arm64).
export const TUNSETIFF = 0x400454ca; // _IOW('T', 202, int): struct ifreq *
export const TUNSETOFFLOAD = 0x400454d0; // _IOW('T', 208, unsigned int): flags by value
export const TUNGETVNETHDRSZ = 0x800454d7; // _IOR('T', 215, int): int *
export const TUNSETVNETHDRSZ = 0x400454d8; // _IOW('T', 216, int): int *
export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
// TUNSETOFFLOAD flags: what the reader promises to handle in virtio_net_hdr.
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
/** Linux 6.17+: the reader/writer handles UDP tunnel GSO (virtio_net_hdr_v1_hash_tunnel). */
export const TUN_F_UDP_TUNNEL_GSO = 0x80;
export const TUN_F_UDP_TUNNEL_GSO_CSUM = 0x100;

// --- errors -----------------------------------------------------------------
const errnoNumbers = koffi.os.errno as Record<string, number>;
const errnoNames = new Map<number, string>();
for (const [name, num] of Object.entries(errnoNumbers)) if (!errnoNames.has(num)) errnoNames.set(num, name);

export const EPERM = errnoNumbers.EPERM ?? 1;
export const ENOENT = errnoNumbers.ENOENT ?? 2;
export const EINTR = errnoNumbers.EINTR ?? 4;
export const EIO = errnoNumbers.EIO ?? 5;
export const EAGAIN = errnoNumbers.EAGAIN ?? 11;
export const EACCES = errnoNumbers.EACCES ?? 13;
export const EBUSY = errnoNumbers.EBUSY ?? 16;
export const ENODEV = errnoNumbers.ENODEV ?? 19;
export const EINVAL = errnoNumbers.EINVAL ?? 22;
export const EMSGSIZE = errnoNumbers.EMSGSIZE ?? 90;
export const ENOBUFS = errnoNumbers.ENOBUFS ?? 105;
export const EADDRINUSE = errnoNumbers.EADDRINUSE ?? 98;

/** "EAGAIN" for 11; "errno 999" for numbers libc does not name. */
export function errnoName(e: number): string {
  return errnoNames.get(e) ?? `errno ${e}`;
}

/** A failed system call: `what` names the call and its object, `errno` the cause. */
export class SyscallError extends Error {
  readonly code: string;
  constructor(what: string, readonly errno: number, hint = "") {
    super(`${what}: ${errnoName(errno)} (${errno})${hint ? ` - ${hint}` : ""}`);
    this.name = "SyscallError";
    this.code = errnoName(errno);
  }
}

/** Throws SyscallError when `ret` is negative (reads errno at once). */
export function check(what: string, ret: number, hint?: (e: number) => string | undefined): number {
  if (ret < 0) {
    const e = errno();
    throw new SyscallError(what, e, hint?.(e) ?? "");
  }
  return ret;
}

/**
 * A native scratch area that never moves: the backing store of a large
 * ArrayBuffer (off the V8 heap, pinned for its lifetime). `addr` is its
 * absolute address; keep the object referenced while the kernel may use it.
 */
export class Scratch {
  readonly buf: ArrayBuffer;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly addr: number;
  constructor(size: number) {
    // Small typed arrays can live on the V8 heap and move; 256+ bytes never do.
    this.buf = new ArrayBuffer(Math.max(size, 256));
    this.u8 = new Uint8Array(this.buf);
    this.dv = new DataView(this.buf);
    this.addr = Number(koffi.address(this.u8));
  }
}

/** Set O_NONBLOCK on fd. */
export function setNonBlocking(fd: number): void {
  const flags = check(`fcntl(${fd}, F_GETFL)`, fcntl(fd, F_GETFL, 0));
  check(`fcntl(${fd}, F_SETFL, O_NONBLOCK)`, fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

/** setsockopt with an int value. */
export function setIntOpt(fd: number, level: number, name: number, value: number, what: string): void {
  const s = intScratch();
  s.dv.setInt32(0, value, true);
  check(`setsockopt(${what})`, setsockopt(fd, level, name, s.addr, 4));
}

/** getsockopt of an int value. */
export function getIntOpt(fd: number, level: number, name: number, what: string): number {
  const s = intScratch();
  s.dv.setUint32(8, 4, true);
  check(`getsockopt(${what})`, getsockopt(fd, level, name, s.addr, s.addr + 8));
  return s.dv.getInt32(0, true);
}

let intArea: Scratch | undefined;
function intScratch(): Scratch {
  return (intArea ??= new Scratch(256));
}

/** close(fd), ignoring EBADF-style failures (for cleanup paths). Returns errno or 0. */
export function closeQuiet(fd: number): number {
  if (fd < 0) return 0;
  return close(fd) < 0 ? errno() : 0;
}
