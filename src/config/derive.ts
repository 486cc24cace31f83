// Config → the tables the data path and the kernel are programmed with.
// A pure function of the validated config, so a reload can derive the new
// set, diff it against the running one, and a test can check it without a
// data path or root.
//
// Layout of what comes out (indices are positions in the arrays):
//   peers[i]        one per config peer, same order; i is the data path's peer index
//   nexthops[0]     local: deliver to this node's device (node.podCIDR)
//   nexthops[1+i]   peer i, of its resolved encapsulation
//   nexthops[last]  blackhole, present only when a static route needs it
//   routes          podCIDR → 0; each peer pod CIDR → 1+i; static routes
//   neigh, fdb      VXLAN peers only: vtepAddress → vtepMac (`ip neigh add`),
//                   vtepMac → peer (`bridge fdb add`), as in Hand CNI-7
//   kernelRoutes    what to `ip route replace` so the kernel hands us the
//                   tunnelled traffic and routes same-subnet peers itself
import { availableParallelism } from "node:os";
import type { Config, PeerConfig } from "./schema.js";
import type { CtTimeouts } from "../dataplane/dataplane.js";
import type { DataplaneTables } from "../dataplane/tables.js";
import { cidrContains, formatCidr, ipToU32, maskOf, parseCidr, parseMac, u32ToIp } from "./net.js";
import { cidr6Contains, ipv6ToBigint, parseCidr6 } from "./net6.js";

export type ResolvedEncapsulation = "vxlan" | "ipip" | "direct";
export type DerivedNexthopKind = ResolvedEncapsulation | "local" | "blackhole";

/** Peer index of next hops that have none (mirrors abi.PEER_NONE). */
export const NO_PEER = 0xffff;
/** Index of the local next hop. */
export const NH_LOCAL_INDEX = 0;

/** The data path's node parameters (a superset-compatible shape of dataplane's NodeParams, all resolved). */
export interface DerivedNode {
  mode: "tun" | "tap";
  underlay: number;
  overlay: number;
  vtepMac: bigint;
  /** Tap mode: the kernel side's MAC; 0n in tun mode. */
  devMac: bigint;
  vni: number;
  port: number;
  sourcePortRange: [number, number];
  outerTtl: number;
  underlayMtu: number;
}

export interface DerivedPeer {
  name: string;
  underlay: number;
  vtepMac: bigint;
  vtepAddress: number;
  /** VXLAN network identifier used towards this peer (today: tunnel.vni for every peer). */
  vni: number;
  podCIDRs: string[];
  /** Its IPv6 pod prefixes (peers[].ipv6.podCIDRs), when this node runs IPv6 too. */
  podCIDRs6?: string[];
  /** peers[].underlay6: tunnels to it go over the IPv6 underlay, to this address. */
  underlay6?: string;
  encapsulation: ResolvedEncapsulation;
  /** Why this encapsulation (for `check-config` and `show peers`). */
  reason: string;
}

export interface DerivedNexthop {
  kind: DerivedNexthopKind;
  /** Peer index, or NO_PEER for local/blackhole. */
  peer: number;
  /** vxlan: the peer's VTEP address (neighbour key); ipip/direct: its underlay address; else 0. */
  gateway: number;
}

export interface DerivedRoute {
  prefix: number;
  len: number;
  /** Index into nexthops. */
  nh: number;
}

export interface DerivedRoute6 {
  /** Network address, host bits zero, as a 128-bit bigint. */
  prefix: bigint;
  len: number;
  /** Index into nexthops. */
  nh: number;
}

export interface KernelRoute {
  dst: string;
  /** Gateway for direct routes (the peer's underlay address). */
  via?: string;
  /** "tunnel" = our tun/tap device; "underlay" = the underlay interface;
   *  "blackhole" = a blackhole route (routing.announce: the pod CIDR for BIRD to export). */
  dev: "tunnel" | "underlay" | "blackhole";
}

/** NAT as the data path and the node plumbing need it. */
export interface DerivedNat {
  enabled: boolean;
  masquerade: boolean;
  /** Masquerade source and NodePort address: the underlay address. */
  nodeIp: number;
  snatAddress: number;
  portRange: [number, number];
  maxFlows: number;
  /** Conntrack timeouts in seconds (nat.conntrack.timeouts). */
  timeouts: CtTimeouts;
  routeTable: number;
  rulePriority: number;
  /** Addresses the kernel must route into our device (ClusterIPs). */
  clusterIPs: string[];
  nodePorts: Array<{ port: number; protocol: "tcp" | "udp" }>;
  /** NAT66 (node.ipv6): IPv6 text addresses. */
  ipv6?: DerivedNat6;
}

export interface DerivedNat6 {
  /** Pods' IPv6 is masqueraded (nat.masquerade and node.ipv6.underlayAddress). */
  masquerade: boolean;
  podCIDR: string;
  underlayAddress?: string;
  snatAddress: string;
  /** IPv6 ClusterIPs the kernel must route into our device. */
  clusterIPs: string[];
}

/** One IPv6 service frontend (ClusterIP6:port). */
export interface DerivedFrontend6 {
  service: string;
  protocol: "tcp" | "udp";
  addr: string;
  port: number;
  nodePort: boolean;
  backends: Array<{ addr: string; port: number }>;
}

/** One service frontend (ClusterIP:port, or node address:NodePort). */
export interface DerivedFrontend {
  service: string;
  protocol: "tcp" | "udp";
  addr: number;
  port: number;
  nodePort: boolean;
  backends: Array<{ addr: number; port: number }>;
}

export interface DerivedTables {
  node: DerivedNode;
  nat: DerivedNat;
  services: DerivedFrontend[];
  services6: DerivedFrontend6[];
  peers: DerivedPeer[];
  nexthops: DerivedNexthop[];
  routes: DerivedRoute[];
  /** IPv6 routes (node.ipv6): the node's IPv6 pod CIDR → local, each
   *  peer's → its next hop; VXLAN for a direct peer (see deriveRoutes6). */
  routes6: DerivedRoute6[];
  /** This node's IPv6 overlay address (ICMPv6 error source), 0n: no IPv6. */
  overlay6: bigint;
  /** node.ipv6.underlayAddress: the outer source towards peers reached over IPv6; 0n: none. */
  underlay6: bigint;
  neigh: Array<{ ip: number; mac: bigint }>;
  fdb: Array<{ mac: bigint; peer: number }>;
  kernelRoutes: KernelRoute[];
}

/**
 * The encapsulation a peer gets and why. `auto` is flannel's DirectRouting /
 * Calico's CrossSubnet: a peer whose underlay address is inside this node's
 * underlay subnet is reached by plain routing (Hand CNI-6 worker1↔worker2),
 * any other through VXLAN.
 */
export function resolveEncapsulation(config: Config, peer: PeerConfig): { encapsulation: ResolvedEncapsulation; reason: string } {
  if (peer.encapsulation !== "auto") return { encapsulation: peer.encapsulation, reason: "configured" };
  // Routing directly needs the IPv4 underlay; a peer reached over IPv6 is tunnelled.
  if (peer.underlay6 !== undefined) return { encapsulation: "vxlan", reason: `auto: reached over the IPv6 underlay (${peer.underlay6})` };
  const u = config.node.underlay;
  const net = formatCidr({ prefix: (ipToU32(u.address) & maskOf(u.prefixLength)) >>> 0, len: u.prefixLength });
  if (cidrContains(net, peer.underlay)) {
    return { encapsulation: "direct", reason: `auto: ${peer.underlay} is in the underlay subnet ${net}` };
  }
  return { encapsulation: "vxlan", reason: `auto: ${peer.underlay} is outside the underlay subnet ${net}` };
}

/** Most tun queues (workers) by default; node.device.queues may ask for more. */
export const DEFAULT_MAX_QUEUES = 4;

/** Tun queues and data-path workers for this config, and why: node.device.queues,
 *  by default the cores this process may use, at most DEFAULT_MAX_QUEUES (each
 *  worker holds its own tables, about 100 MB). With NAT the workers share one
 *  connection table (src/daemon/lanes.ts), so a flow's two directions may be
 *  translated by different workers. A flow stays on one worker where it can:
 *  see src/io/steer.ts. */
export function queueCount(config: Config): { queues: number; why: string } {
  if (config.node.device.queues !== undefined) return { queues: config.node.device.queues, why: "node.device.queues" };
  const cores = availableParallelism();
  return { queues: Math.min(cores, DEFAULT_MAX_QUEUES), why: `${cores} cores, at most ${DEFAULT_MAX_QUEUES} by default` };
}

/**
 * Derive every table from a validated config. Pure and deterministic: the
 * same config yields equal tables (deep-equal), in config order.
 */
export function deriveTables(config: Config): DerivedTables {
  const n = config.node;
  const t = config.tunnel;
  const node: DerivedNode = {
    mode: n.device.mode,
    underlay: ipToU32(n.underlay.address),
    overlay: ipToU32(n.overlayAddress),
    vtepMac: parseMac(n.device.vtepMac),
    devMac: n.device.mac !== undefined ? parseMac(n.device.mac) : 0n,
    vni: t.vni,
    port: t.port,
    sourcePortRange: [t.sourcePortRange[0], t.sourcePortRange[1]],
    outerTtl: t.outerTtl,
    // Without tunnel.underlayMtu the daemon puts the underlay link's MTU
    // here (src/daemon/mtu.ts); 1500 for a config read on its own.
    underlayMtu: t.underlayMtu ?? 1500,
  };

  const peers: DerivedPeer[] = config.peers.map((p) => {
    const { encapsulation, reason } = resolveEncapsulation(config, p);
    return {
      name: p.name,
      underlay: ipToU32(p.underlay),
      vtepMac: parseMac(p.vtepMac),
      vtepAddress: ipToU32(p.vtepAddress),
      vni: t.vni,
      podCIDRs: [...p.podCIDRs],
      ...(config.node.ipv6 && p.ipv6 ? { podCIDRs6: [...p.ipv6.podCIDRs] } : {}),
      ...(p.underlay6 !== undefined ? { underlay6: p.underlay6 } : {}),
      encapsulation,
      reason,
    };
  });

  const nexthops: DerivedNexthop[] = [{ kind: "local", peer: NO_PEER, gateway: 0 }];
  for (const [i, p] of peers.entries()) {
    // VXLAN resolves the gateway through neigh → fdb (Hand CNI-7 `via
    // 198.19.3.0 onlink`); IPIP and direct send straight to the underlay.
    nexthops.push({ kind: p.encapsulation, peer: i, gateway: p.encapsulation === "vxlan" ? p.vtepAddress : p.underlay });
  }
  const peerNh = (i: number) => 1 + i;
  let blackholeNh: number | undefined;
  const blackhole = () => (blackholeNh ??= nexthops.push({ kind: "blackhole", peer: NO_PEER, gateway: 0 }) - 1);

  const routes: DerivedRoute[] = [];
  const kernelRoutes: KernelRoute[] = [];
  const route = (cidr: string, nh: number) => {
    const c = parseCidr(cidr);
    routes.push({ prefix: c.prefix, len: c.len, nh });
  };
  const kernelRouteTo = (cidr: string, p: DerivedPeer) => {
    if (p.encapsulation === "direct") kernelRoutes.push({ dst: cidr, via: u32ToIp(p.underlay), dev: "underlay" });
    else kernelRoutes.push({ dst: cidr, dev: "tunnel" });
  };

  route(n.podCIDR, NH_LOCAL_INDEX);
  // Announced to the routing daemon (src/routing/); local pods have longer routes of their own.
  if (config.routing?.announce) kernelRoutes.push({ dst: n.podCIDR, dev: "blackhole" });
  // The VTEP address is normally inside podCIDR (flannel's x.y.z.0); if the
  // config puts it elsewhere, packets to it must still be delivered here.
  if (!cidrContains(n.podCIDR, node.overlay)) route(`${n.overlayAddress}/32`, NH_LOCAL_INDEX);

  peers.forEach((p, i) => {
    for (const cidr of p.podCIDRs) {
      route(cidr, peerNh(i));
      kernelRouteTo(cidr, p);
    }
  });

  const peerIndex = new Map(peers.map((p, i) => [p.name, i]));
  for (const r of config.routes) {
    if (r.via === "local") {
      route(r.prefix, NH_LOCAL_INDEX);
    } else if (r.via === "blackhole") {
      route(r.prefix, blackhole());
      // Into the tunnel device, so the drop is counted (reason blackhole).
      kernelRoutes.push({ dst: r.prefix, dev: "tunnel" });
    } else {
      const i = peerIndex.get(r.via);
      if (i === undefined) throw new Error(`routes: via ${JSON.stringify(r.via)} is not a peer (config not validated?)`);
      route(r.prefix, peerNh(i));
      kernelRouteTo(r.prefix, peers[i]);
    }
  }

  const services: DerivedFrontend[] = [];
  for (const svc of config.services) {
    if (svc.clusterIP === undefined) continue; // IPv6 only
    for (const sp of svc.ports) {
      const backends = svc.backends.map((b) => ({ addr: ipToU32(b), port: sp.targetPort }));
      services.push({ service: svc.name, protocol: sp.protocol, addr: ipToU32(svc.clusterIP), port: sp.port, nodePort: false, backends });
      if (sp.nodePort !== undefined) {
        services.push({ service: svc.name, protocol: sp.protocol, addr: node.underlay, port: sp.nodePort, nodePort: true, backends });
      }
    }
  }
  const services6: DerivedFrontend6[] = [];
  if (config.node.ipv6) {
    for (const svc of config.services) {
      if (svc.clusterIP6 === undefined) continue;
      for (const sp of svc.ports) {
        const backends = svc.backends6.map((b) => ({ addr: b, port: sp.targetPort }));
        services6.push({ service: svc.name, protocol: sp.protocol, addr: svc.clusterIP6, port: sp.port, nodePort: false, backends });
        const at = config.node.ipv6.underlayAddress;
        if (sp.nodePort !== undefined && at !== undefined) services6.push({ service: svc.name, protocol: sp.protocol, addr: at, port: sp.nodePort, nodePort: true, backends });
      }
    }
  }
  const six = config.nat6;
  const nat: DerivedNat = {
    enabled: config.nat.enabled,
    masquerade: config.nat.masquerade,
    nodeIp: node.underlay,
    snatAddress: ipToU32(config.nat.snatAddress),
    portRange: [config.nat.portRange[0], config.nat.portRange[1]],
    maxFlows: config.nat.conntrack.maxFlows,
    timeouts: { ...config.nat.conntrack.timeouts },
    routeTable: config.nat.routeTable,
    rulePriority: config.nat.rulePriority,
    clusterIPs: [...new Set(config.services.flatMap((s) => (s.clusterIP === undefined ? [] : [s.clusterIP])))],
    nodePorts: config.services.flatMap((s) => s.ports.filter((p) => p.nodePort !== undefined).map((p) => ({ port: p.nodePort!, protocol: p.protocol }))),
    ipv6: six && config.node.ipv6 && {
      masquerade: six.masquerade,
      podCIDR: config.node.ipv6.podCIDR,
      underlayAddress: six.underlayAddress,
      snatAddress: six.snatAddress,
      clusterIPs: [...new Set(services6.filter((f) => !f.nodePort).map((f) => f.addr))],
    },
  };

  const routes6 = deriveRoutes6(config, peers, nexthops, kernelRoutes);
  const vxlanPeers = peers.map((p, i) => ({ p, i })).filter(({ p }) => p.encapsulation === "vxlan");
  return {
    routes6,
    overlay6: n.ipv6 ? ipv6ToBigint(n.ipv6.overlayAddress) : 0n,
    underlay6: n.ipv6?.underlayAddress !== undefined ? ipv6ToBigint(n.ipv6.underlayAddress) : 0n,
    node,
    nat,
    services,
    services6,
    peers,
    nexthops,
    routes,
    neigh: vxlanPeers.map(({ p }) => ({ ip: p.vtepAddress, mac: p.vtepMac })),
    fdb: vxlanPeers.map(({ p, i }) => ({ mac: p.vtepMac, peer: i })),
    kernelRoutes,
  };
}

/** The IPv6 routes (node.ipv6), appending to `nexthops` and `kernelRoutes`.
 *  Every IPv6 pod CIDR of a peer goes into our device: the kernel has no
 *  IPv6 route through an IPv4 gateway ("IPv6 routes can not use an IPv4
 *  nexthop"), so a peer reached directly for IPv4 gets its IPv6 over VXLAN,
 *  through a next hop of its own; VXLAN and IPIP peers share their IPv4
 *  next hop (the data path picks VXLAN with EtherType 0x86DD, or protocol
 *  41, by the packet's family). */
function deriveRoutes6(config: Config, peers: DerivedPeer[], nexthops: DerivedNexthop[], kernelRoutes: KernelRoute[]): DerivedRoute6[] {
  const six = config.node.ipv6;
  if (!six) return [];
  const routes6: DerivedRoute6[] = [];
  const route = (cidr: string, nh: number) => {
    const c = parseCidr6(cidr);
    routes6.push({ prefix: c.prefix, len: c.len, nh });
  };
  route(six.podCIDR, NH_LOCAL_INDEX);
  const overlay = ipv6ToBigint(six.overlayAddress);
  if (!cidr6Contains(six.podCIDR, overlay)) routes6.push({ prefix: overlay, len: 128, nh: NH_LOCAL_INDEX });
  config.peers.forEach((pc, i) => {
    if (!pc.ipv6) return;
    const p = peers[i];
    const nh = p.encapsulation === "direct" ? nexthops.push({ kind: "vxlan", peer: i, gateway: p.vtepAddress }) - 1 : 1 + i;
    for (const cidr of pc.ipv6.podCIDRs) {
      route(cidr, nh);
      kernelRoutes.push({ dst: cidr, dev: "tunnel" });
    }
  });
  return routes6;
}

/** What the workers get of the derived tables (structured-cloned to each). */
export function toDataplaneTables(d: DerivedTables): DataplaneTables {
  return {
    node: { ...d.node, overlay6: d.overlay6, underlay6: d.underlay6 },
    nat: {
      enabled: d.nat.enabled, masquerade: d.nat.masquerade, nodeIp: d.nat.nodeIp, snatAddress: d.nat.snatAddress, portRange: d.nat.portRange, timeouts: d.nat.timeouts,
      ipv6: d.nat.ipv6 && { masquerade: d.nat.ipv6.masquerade, nodeAddress: d.nat.ipv6.underlayAddress, snatAddress: d.nat.ipv6.snatAddress },
    },
    services: d.services.map((f) => ({ protocol: f.protocol, addr: f.addr, port: f.port, nodePort: f.nodePort, backends: f.backends })),
    services6: d.services6.map((f) => ({ protocol: f.protocol, addr: f.addr, port: f.port, nodePort: f.nodePort, backends: f.backends })),
    peers: d.peers.map((p) => ({ underlay: p.underlay, vtepMac: p.vtepMac, ...(p.underlay6 !== undefined ? { underlay6: ipv6ToBigint(p.underlay6) } : {}) })),
    nexthops: d.nexthops.map((n) => ({ kind: n.kind, peer: n.peer ?? 0xffff, gateway: n.gateway ?? 0 })),
    routes: d.routes,
    routes6: d.routes6,
    neigh: d.neigh,
    fdb: d.fdb,
  };
}
