// The device and the bind for a worker's config, chosen once at start.
import type { WorkerConfig } from "../worker.js";
import { PlainDevice } from "./device.js";
import { GsoBind, RawBind } from "./bind.js";
import type { IoContext, PodDevice, UnderlayBind } from "./io.js";
import { TnlGsoDevice, VnetDevice } from "./vnet.js";

/** Offloads (IFF_VNET_HDR + TSO) or not; with tunnel.kernelGso, super-frames
 *  for VXLAN peers leave whole through a tap. A tap in place of a tun reads
 *  and writes the same way (frames instead of packets: the pipeline's business). */
export function openDevice(cfg: WorkerConfig, ctx: IoContext): PodDevice {
  if (!cfg.offloads) return new PlainDevice(ctx, cfg.tunFd);
  const tso6 = cfg.tunTso6 === true;
  return cfg.gsoTap ? new TnlGsoDevice(ctx, cfg.tunFd, cfg.gsoTap, tso6) : new VnetDevice(ctx, cfg.tunFd, tso6);
}

/** UDP GSO/GRO sockets when the daemon opened them (tunnel.udpOffloads), else raw send + recvmmsg. */
export function openBind(cfg: WorkerConfig, ctx: IoContext, dev: PodDevice): UnderlayBind {
  const fds = {
    sendFd: cfg.sendFd, vxlanFd: cfg.vxlanFd, ipipFd: cfg.ipipFd, sitFd: cfg.sitFd ?? -1, icmpFd: cfg.icmpFd ?? -1, send6Fd: cfg.send6Fd ?? -1,
    vxlan6Fd: cfg.vxlan6Fd ?? -1, ip6tnlFds: cfg.ip6tnlFds ?? [], icmp6Fd: cfg.icmp6Fd ?? -1,
  };
  if (!cfg.gsoFds?.length) return new RawBind(ctx, fds);
  // Super-frames in one VXLAN datagram go to the tun whole when it takes them.
  return new GsoBind(ctx, fds, cfg.gsoFds, cfg.gsoDfFds, cfg.offloads ? dev : undefined, cfg.gso6Fds);
}
