// tun/tap devices: where pod packets enter and leave the data path.
//
// openTun() attaches one queue of a device through /dev/net/tun. The fd is
// nonblocking: BatchIO.readTun drains it until EAGAIN, and the worker sleeps in
// poll(). Link settings (MTU, MAC, addresses, routes) go through `ip`, run in
// the caller's network namespace; they are control-plane operations, rare and
// allowed to be slow.
import { execFileSync } from "node:child_process";
import * as libc from "./libc.js";

const { TUNSETIFF, IFF_TUN, IFF_TAP, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_VNET_HDR } = libc;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

export type TunMode = "tun" | "tap";

export interface TunOptions {
  /** Interface name, or a template such as "wo%d"; empty lets the kernel choose. */
  name: string;
  mode: TunMode;
  /** IFF_MULTI_QUEUE: call openTun again with the same name for each further queue. */
  multiQueue?: boolean;
  /** IFF_VNET_HDR: every packet is preceded by a struct virtio_net_hdr (offloads). */
  vnetHdr?: boolean;
}

export interface TunDevice {
  fd: number;
  /** The name the kernel gave the device (templates resolved). */
  name: string;
  mode: TunMode;
}

/**
 * Open /dev/net/tun and attach it to device `name` (created if missing) in
 * the calling thread's network namespace. Packets carry no packet-information
 * prefix (IFF_NO_PI): a tun fd yields bare IPv4/IPv6 packets, a tap fd
 * Ethernet frames. The fd is nonblocking and close-on-exec. Throws
 * SyscallError with a hint on failure; never leaks the fd.
 */
export function openTun(opts: TunOptions): TunDevice {
  if (Buffer.byteLength(opts.name) >= IFNAMSIZ) throw new Error(`interface name "${opts.name}" is longer than ${IFNAMSIZ - 1} bytes`);
  const fd = libc.open("/dev/net/tun", libc.O_RDWR | libc.O_NONBLOCK | libc.O_CLOEXEC, 0);
  if (fd < 0) {
    const e = libc.errno();
    const hint = e === libc.ENOENT ? "/dev/net/tun is missing: load the tun module (modprobe tun) or create the node (mknod /dev/net/tun c 10 200)"
      : e === libc.EACCES || e === libc.EPERM ? "opening /dev/net/tun needs root or CAP_NET_ADMIN"
      : e === libc.ENODEV ? "the kernel has no tun/tap support (CONFIG_TUN)"
      : "";
    throw new libc.SyscallError("open(/dev/net/tun)", e, hint);
  }
  try {
    const req = new libc.Scratch(IFREQ_SIZE);
    req.u8.set(Buffer.from(opts.name, "utf8"), 0);
    let flags = (opts.mode === "tap" ? IFF_TAP : IFF_TUN) | IFF_NO_PI;
    if (opts.multiQueue) flags |= IFF_MULTI_QUEUE;
    if (opts.vnetHdr) flags |= IFF_VNET_HDR;
    req.dv.setUint16(IFNAMSIZ, flags, true);
    libc.check(`ioctl(TUNSETIFF, ${opts.mode} "${opts.name}")`, libc.ioctlPtr(fd, TUNSETIFF, req.addr), (e) =>
      e === libc.EPERM ? "creating or attaching a tun/tap device needs root or CAP_NET_ADMIN"
        : e === libc.EBUSY ? "the device exists and is already attached (or is not a tun/tap device)"
        : e === libc.EINVAL ? "the device exists with different flags (tun vs tap, multi-queue or not)"
        : undefined);
    const end = req.u8.indexOf(0);
    const name = Buffer.from(req.u8.subarray(0, end < 0 ? IFNAMSIZ : end)).toString("utf8");
    return { fd, name, mode: opts.mode };
  } catch (e) {
    libc.closeQuiet(fd);
    throw e;
  }
}

/**
 * TUNSETOFFLOAD: tell the kernel which offloads this reader handles (libc
 * TUN_F_* flags; 0 = none, the default). Only meaningful with vnetHdr: the
 * kernel may then hand over unchecksummed or GSO-sized packets described by
 * the virtio_net_hdr in front of each one. Throws SyscallError (EINVAL for
 * flags the kernel does not know, or TSO without CSUM).
 */
export function setTunOffload(dev: TunDevice, flags: number): void {
  libc.check(`ioctl(TUNSETOFFLOAD, ${dev.name}, 0x${flags.toString(16)})`, libc.ioctlPtr(dev.fd, libc.TUNSETOFFLOAD, flags));
}

/**
 * TUNSETVNETHDRSZ: the size of the header in front of each packet on a
 * vnetHdr device (10 = struct virtio_net_hdr, the default; 12 = with
 * num_buffers). Returns the size the kernel now uses (TUNGETVNETHDRSZ).
 */
export function setVnetHdrSize(dev: TunDevice, bytes: number): number {
  const s = new libc.Scratch(4);
  s.dv.setInt32(0, bytes, true);
  libc.check(`ioctl(TUNSETVNETHDRSZ, ${dev.name}, ${bytes})`, libc.ioctlPtr(dev.fd, libc.TUNSETVNETHDRSZ, s.addr),
    (e) => (e === libc.EINVAL ? "the size must be at least 10 (sizeof struct virtio_net_hdr)" : undefined));
  s.dv.setInt32(0, -1, true);
  libc.check(`ioctl(TUNGETVNETHDRSZ, ${dev.name})`, libc.ioctlPtr(dev.fd, libc.TUNGETVNETHDRSZ, s.addr));
  return s.dv.getInt32(0, true);
}

/** Close the queue's fd. A non-persistent device disappears with its last queue. */
export function closeTun(dev: TunDevice): void {
  libc.closeQuiet(dev.fd);
  dev.fd = -1;
}

export interface LinkConfig {
  mtu?: number;
  /** Tap only: the kernel side's MAC, "02:00:00:00:00:01". */
  mac?: string;
  /** Addresses in CIDR form, "198.19.2.1/24". */
  addresses?: string[];
  up?: boolean;
  /** Routes through this link: { to: "198.19.0.0/16" } or with a gateway. */
  routes?: { to: string; via?: string; src?: string }[];
}

/** Run `ip ARGS...` in the current network namespace; throws with ip's stderr. */
export function ip(...args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${(err.stderr ?? "").trim() || err.message}`);
  }
}

/**
 * Apply `cfg` to link `name`, in this order: MTU, MAC, addresses, up, routes
 * (routes need the link up). Existing addresses and routes are replaced, so
 * the call is idempotent.
 */
export function configureLink(name: string, cfg: LinkConfig): void {
  if (cfg.mtu !== undefined) ip("link", "set", "dev", name, "mtu", String(cfg.mtu));
  if (cfg.mac !== undefined) ip("link", "set", "dev", name, "address", cfg.mac);
  for (const a of cfg.addresses ?? []) ip("addr", "replace", a, "dev", name);
  if (cfg.up) ip("link", "set", "dev", name, "up");
  for (const r of cfg.routes ?? []) {
    const args = ["route", "replace", r.to, "dev", name];
    if (r.via) args.push("via", r.via);
    if (r.src) args.push("src", r.src);
    ip(...args);
  }
}

/** Delete link `name` if it exists (a persistent or still-open device). */
export function deleteLink(name: string): void {
  try {
    ip("link", "del", "dev", name);
  } catch {
    // already gone
  }
}
