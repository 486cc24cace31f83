// The node's MTUs, from its underlay link (issue 13 §4).
//
//   link MTU     the underlay interface's (node.underlay.device, or the one
//                holding node.underlay.address), read from sysfs at start and
//                polled while running;
//   tunnel MTU   tunnel.underlayMtu, else the link's: the largest outer packet
//                the data path sends (it answers fragmentation-needed above it);
//   device MTU   node.device.mtu, else the tunnel MTU minus the largest
//                overhead of the encapsulations in use, as flannel derives its
//                device MTU from the link: 50 with any VXLAN peer (or none
//                tunnelled yet: peers may come from etcd), 20 when every
//                tunnelled peer is IPIP.
//
// A configured tunnel.underlayMtu or node.device.mtu above the link's MTU is
// refused at start (no packet that size could leave). When the link's MTU
// changes under a running daemon, the plan is recomputed (and the tables and
// the device follow it); a configured value then above the link is lowered
// to it with a warning, since the link is what it is.
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { deriveTables, type DerivedTables } from "../config/derive.js";
import { u32ToIp } from "../config/net.js";
import type { PmtuUpdate } from "../dataplane/dataplane.js";
import { hostKernel } from "./kernel.js";

/** Bytes each encapsulation adds in front of an inner IPv4 packet. */
export const ENCAP_OVERHEAD = { vxlan: 50, ipip: 20, direct: 0 } as const;

/** Without a link to read (no interface found) and no config: Ethernet's. */
export const FALLBACK_MTU = 1500;

export interface MtuPlan {
  /** The underlay interface, when one was found. */
  device?: string;
  /** Its MTU, when it could be read. */
  linkMtu?: number;
  /** Largest outer packet (the data path's underlayMtu). */
  tunnelMtu: number;
  /** The tun/tap MTU. */
  deviceMtu: number;
  /** The largest overhead of the encapsulations in use (what a derived device MTU leaves room for). */
  overhead: number;
  /** Where the tunnel MTU came from. */
  source: "config" | "link" | "default";
  /** Things worth a log line (a configured value lowered to the link's, no link found). */
  warnings: string[];
}

export class MtuError extends Error {}

/** What an IPv6 outer header adds to an IPv4 one (peers[].underlay6). */
export const IPV6_OUTER_EXTRA = 20;

/** The largest overhead among the tunnelled peers' encapsulations; VXLAN's when none is tunnelled.
 *  A direct peer's IPv6 pods are tunnelled in VXLAN (derive.ts); a peer
 *  reached over the IPv6 underlay costs IPV6_OUTER_EXTRA more. */
export function encapOverhead(peers: readonly { encapsulation: string; podCIDRs6?: string[]; underlay6?: string }[]): number {
  const tunnelled = peers.filter((p) => p.encapsulation === "vxlan" || p.encapsulation === "ipip" || (p.encapsulation === "direct" && p.podCIDRs6));
  if (!tunnelled.length) return ENCAP_OVERHEAD.vxlan;
  const of = (p: (typeof tunnelled)[number]) =>
    (p.encapsulation === "direct" ? ENCAP_OVERHEAD.vxlan : ENCAP_OVERHEAD[p.encapsulation as "vxlan" | "ipip"]) + (p.underlay6 !== undefined ? IPV6_OUTER_EXTRA : 0);
  return Math.max(...tunnelled.map(of));
}

/**
 * The node's MTUs from the config and the link's MTU (undefined: unknown).
 * `strict` (at start and on reload): a configured tunnel.underlayMtu or
 * node.device.mtu above the link's MTU throws an MtuError naming the field;
 * otherwise (the link changed under us) it is lowered to the link's, with a
 * warning.
 */
export function planMtu(config: Config, derived: Pick<DerivedTables, "peers">, link: { device?: string; mtu?: number }, strict: boolean): MtuPlan {
  const warnings: string[] = [];
  const on = link.device ? `the underlay interface ${link.device}` : "the underlay interface";
  const cfgTunnel = config.tunnel.underlayMtu;
  const cfgDevice = config.node.device.mtu;
  let tunnelMtu: number;
  let source: MtuPlan["source"];
  if (link.mtu === undefined) {
    tunnelMtu = cfgTunnel ?? FALLBACK_MTU;
    source = cfgTunnel !== undefined ? "config" : "default";
    if (cfgTunnel === undefined) warnings.push(`cannot read the MTU of ${on}; assuming ${FALLBACK_MTU} (set tunnel.underlayMtu)`);
  } else if (cfgTunnel !== undefined) {
    tunnelMtu = cfgTunnel;
    source = "config";
    if (cfgTunnel > link.mtu) {
      const msg = `tunnel.underlayMtu ${cfgTunnel} is above the MTU of ${on} (${link.mtu}): packets that size cannot leave; lower it or leave it out to use the link's`;
      if (strict) throw new MtuError(msg);
      warnings.push(`${msg}; using ${link.mtu}`);
      tunnelMtu = link.mtu;
    }
  } else {
    tunnelMtu = link.mtu;
    source = "link";
  }
  const overhead = encapOverhead(derived.peers);
  let deviceMtu = tunnelMtu - overhead;
  if (cfgDevice !== undefined) {
    deviceMtu = cfgDevice;
    if (link.mtu !== undefined && cfgDevice > link.mtu) {
      const msg = `node.device.mtu ${cfgDevice} is above the MTU of ${on} (${link.mtu}): no tunnelled packet that size could be sent`;
      if (strict) throw new MtuError(msg);
      warnings.push(`${msg}; using ${link.mtu - overhead}`);
      deviceMtu = link.mtu - overhead;
    }
  }
  if (deviceMtu < 68) throw new MtuError(`the device MTU would be ${deviceMtu} (tunnel MTU ${tunnelMtu} - ${overhead}): below IPv4's 68`);
  return { device: link.device, linkMtu: link.mtu, tunnelMtu, deviceMtu, overhead, source, warnings };
}

/** The MTU of interface `dev` (sysfs; the netns the process runs in), or undefined. */
export function readLinkMtu(dev: string | undefined): number | undefined {
  if (!dev || !/^[^/\0]{1,15}$/.test(dev)) return undefined;
  try {
    const n = Number(readFileSync(`/sys/class/net/${dev}/mtu`, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** node.underlay.device, else the interface holding node.underlay.address. */
export function underlayDeviceOf(config: Config): string | undefined {
  return config.node.underlay.device ?? hostKernel.deviceWithAddress(config.node.underlay.address);
}

/** How long a path MTU learnt from the underlay holds (the data path's PMTU_EXPIRES_MS; the kernel's mtu_expires). */
export const PMTU_TTL_MS = 600_000;

/** A path MTU learnt from an ICMP of router `from` (host-order address), valid until `until` (ms). */
export interface PathMtu {
  mtu: number;
  from: number;
  until: number;
}

/** The learnt path MTUs still in force, for `show status`. */
export function pathMtuList(paths: Map<number, PathMtu>, peers: readonly { name: string; underlay: number }[], now = Date.now()) {
  const ip = (a: number) => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".");
  const out: { peer?: string; underlay: string; pathMtu: number; router: string; expiresIn: number }[] = [];
  for (const [addr, p] of paths) {
    if (p.until <= now) {
      paths.delete(addr);
      continue;
    }
    out.push({ peer: peers.find((x) => x.underlay === addr)?.name, underlay: ip(addr), pathMtu: p.mtu, router: ip(p.from), expiresIn: Math.round((p.until - now) / 1000) });
  }
  return out;
}

/** Polls a link's MTU (sysfs, every `intervalMs`) and calls `onChange` when it moves. */
export class LinkMtuWatcher {
  private timer?: NodeJS.Timeout;
  private last: number | undefined;

  constructor(private readonly device: string, initial: number | undefined, private readonly onChange: (mtu: number, before: number | undefined) => void, intervalMs = 2000) {
    this.last = initial;
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  /** Read once now (also what the timer does). */
  check(): void {
    const now = readLinkMtu(this.device);
    if (now === undefined || now === this.last) return;
    const before = this.last;
    this.last = now;
    this.onChange(now, before);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** A running daemon's MTUs: the plan in force (from the underlay link), the
 *  watcher that follows the link, and the path MTUs learnt from routers on
 *  the underlay (assembly/pipeline/pmtu.ts), for status and the other lanes. */
export class NodeMtu {
  plan?: MtuPlan;
  private watcher?: LinkMtuWatcher;
  private readonly paths = new Map<number, PathMtu>();

  constructor(private readonly log: Logger) {}

  /** deriveTables, with the tunnel MTU the underlay link allows. `strict`:
   *  refuse (MtuError) configured MTUs above the link's. */
  derive(c: Config, strict: boolean): { derived: DerivedTables; plan: MtuPlan } {
    const derived = deriveTables(c);
    const device = underlayDeviceOf(c);
    const plan = planMtu(c, derived, { device, mtu: readLinkMtu(device) }, strict);
    for (const w of plan.warnings) this.log.warn(w);
    derived.node.underlayMtu = plan.tunnelMtu;
    return { derived, plan };
  }

  /** Follow the plan's link: `onChange` (a reload) when its MTU moves. */
  watch(onChange: () => void): void {
    const p = this.plan;
    if (!p?.device) return;
    this.watcher = new LinkMtuWatcher(p.device, p.linkMtu, (mtu, before) => {
      this.log.info({ device: p.device, mtu, before }, "the underlay link's MTU changed; applying it");
      onChange();
    });
  }

  /** Path MTUs a lane learnt: logged and kept; returns what the other lanes must be told. */
  learn(updates: PmtuUpdate[], peers: readonly { name: string; underlay: number }[]): { peer: number; mtu: number }[] {
    for (const u of updates) {
      const peer = peers.find((p) => p.underlay === u.peer);
      // from 0: an ICMPv6 packet too big (a peer over the IPv6 underlay).
      this.log.info({ peer: peer?.name, underlay: u32ToIp(u.peer), pathMtu: u.mtu, router: u.from ? u32ToIp(u.from) : undefined }, u.from ? "path MTU lowered by ICMP fragmentation-needed from the underlay" : "path MTU lowered by ICMPv6 packet too big from the IPv6 underlay");
      this.paths.set(u.peer, { mtu: u.mtu, from: u.from, until: Date.now() + PMTU_TTL_MS });
    }
    return updates.map((u) => ({ peer: u.peer, mtu: u.mtu }));
  }

  /** For `show status`. */
  status(peers: readonly { name: string; underlay: number }[]) {
    const p = this.plan;
    return p && { device: p.device, linkMtu: p.linkMtu, tunnelMtu: p.tunnelMtu, deviceMtu: p.deviceMtu, source: p.source, paths: pathMtuList(this.paths, peers) };
  }

  stop(): void {
    this.watcher?.stop();
    this.watcher = undefined;
  }
}
