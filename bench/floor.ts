// The copy floor (issue 18): the best ratio to the kernel's vxlan that any
// VTEP built from a tun device and a UDP socket could reach on this machine,
// from numbers measured in the same run:
//   - memcpy bandwidth for a 64 KiB super-frame (in cache: the best case);
//   - the cost of entering the kernel (a getppid() through koffi, less a
//     libc call that does not enter it: the FFI's own cost);
//   - the whole machine's CPU per Gbit on the kernel vxlan row.
// Such a VTEP does all the kernel does (both pods' TCP, veth, the underlay
// UDP) and on top copies every byte four times (tun read and UDP send on the
// sender, UDP receive and tun write on the receiver) with at least four
// system calls per 64 KiB super-frame (tun offloads and UDP GSO/GRO, the
// best batching a tun allows). With the CPU the limit on both paths, its
// ratio to the kernel is at most kernel / (kernel + that extra work).
import koffi from "koffi";

/** memcpy of 64 KiB blocks, GB/s (10^9 bytes per second). */
export function measureMemcpyGBps(ms = 300): number {
  const src = Buffer.alloc(64 * 1024, 7);
  const dst = Buffer.alloc(64 * 1024);
  let bytes = 0;
  const end = performance.now() + ms;
  let t0 = performance.now();
  for (let i = 0; i < 2000; i++) src.copy(dst); // warm-up
  t0 = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) src.copy(dst);
    bytes += 1000 * src.length;
  }
  return bytes / ((performance.now() - t0) / 1e3) / 1e9;
}

/** Microseconds one system call costs here: getppid() less labs() (both through koffi). */
export function measureSyscallUs(n = 200_000): number {
  const lib = koffi.load("libc.so.6");
  const getppid = lib.func("int getppid()") as () => number;
  const labs = lib.func("long labs(long x)") as (x: number) => number;
  const time = (f: () => unknown) => {
    for (let i = 0; i < 10_000; i++) f();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) f();
    return ((performance.now() - t0) * 1e3) / n;
  };
  const ffi = time(() => labs(-1));
  return Math.max(0, time(getppid) - ffi);
}

export interface CopyFloor {
  memcpyGBps: number;
  syscallUs: number;
  /** The whole machine's CPU-s per Gbit on the kernel vxlan row. */
  kernelCpuSecondsPerGbit: number;
  /** What any tun+socket VTEP adds per Gbit, at least (CPU-s). */
  extraCpuSecondsPerGbit: number;
  /** kernel / (kernel + extra): the best ratio to the kernel such a VTEP can reach here. */
  bestRatio: number;
}

const BYTES_PER_GBIT = 1e9 / 8;
const SUPER_FRAME = 64 * 1024;

export function copyFloor(memcpyGBps: number, syscallUs: number, kernelCpuSecondsPerGbit: number): CopyFloor {
  const copies = (4 * BYTES_PER_GBIT) / (memcpyGBps * 1e9);
  const syscalls = ((4 * BYTES_PER_GBIT) / SUPER_FRAME) * syscallUs * 1e-6;
  const extra = copies + syscalls;
  return { memcpyGBps, syscallUs, kernelCpuSecondsPerGbit, extraCpuSecondsPerGbit: extra, bestRatio: kernelCpuSecondsPerGbit / (kernelCpuSecondsPerGbit + extra) };
}
