// Learned routes → peers. Each `PREFIX via NEXTHOP` in the routing table says
// "NEXTHOP's node holds PREFIX": the next hop is that node's underlay address.
// One synthesised peer per next hop, named `bgp-<nexthop>`, its VTEP MAC
// derived from the address the way a node derives its own (macFromIp), its
// pod CIDRs the prefixes through it. They are added to the running config
// after the config file's peers and the etcd peers, which win: a learned peer
// or prefix that clashes with them (or with this node) is left out and
// reported, as merge.ts does for etcd records. Kernel routes and data-path
// tables then follow from derive.ts as for any other peer.
import { cidrContains, cidrOverlaps, formatCidr, formatMac, ipToU32, macFromIp, maskOf, parseCidr, parseMac, tryParseCidr, u32ToIp, type Cidr } from "../config/net.js";
import type { Config, PeerConfig, RoutingConfig } from "../config/schema.js";
import { MAX_NEXTHOPS, MAX_PEERS, TBL8_GROUPS } from "../dataplane/limits.js";
import type { LearnedRoute } from "./table.js";

export const BGP_PEER_PREFIX = "bgp-";

export interface Dropped {
  prefix: string;
  via: string;
  reason: string;
}

/** The encapsulation a learned next hop gets: `never` is plain routing (the
 *  fabric knows the pod CIDRs); `auto` is direct inside the underlay subnet
 *  and routing.tunnel outside it. */
export function learnedEncapsulation(config: Config, routing: RoutingConfig, via: string): PeerConfig["encapsulation"] {
  if (routing.encapsulation === "never") return "direct";
  if (routing.encapsulation !== "auto") return routing.encapsulation;
  const u = config.node.underlay;
  const net = formatCidr({ prefix: (ipToU32(u.address) & maskOf(u.prefixLength)) >>> 0, len: u.prefixLength });
  // vxlan: derive.ts resolves "auto" itself (with its reason); ipip it cannot.
  if (routing.tunnel === "vxlan") return "auto";
  return cidrContains(net, via) ? "direct" : "ipip";
}

/**
 * The peers `routes` make, for a node running `config` (the file's peers and
 * any etcd peers already in it), and what was left out and why. Pure: the
 * same routes and config give the same peers, sorted by next hop address.
 */
export function learnedPeers(config: Config, routing: RoutingConfig, routes: readonly LearnedRoute[]): { peers: PeerConfig[]; dropped: Dropped[] } {
  const dropped: Dropped[] = [];
  const self = config.node;
  const names = new Set(config.peers.map((p) => p.name));
  const underlays = new Set(config.peers.map((p) => p.underlay));
  const macs = new Set([self.device.vtepMac, ...config.peers.map((p) => p.vtepMac)].map((m) => formatMac(parseMac(m))));
  // Parsed once: thousands of learned routes meet each of these.
  const claimed = [
    { cidr: self.podCIDR, owner: "this node" },
    ...config.peers.flatMap((p) => p.podCIDRs.map((cidr) => ({ cidr, owner: `peer ${p.name}` }))),
    ...config.routes.map((r) => ({ cidr: r.prefix, owner: "a static route" })),
  ].map((c) => ({ ...c, net: parseCidr(c.cidr) }));
  const vteps = config.peers.map((p) => ({ ip: p.vtepAddress, addr: ipToU32(p.vtepAddress), owner: `peer ${p.name}` }));
  // Prefixes longer than /24 each take a tbl8 group of their /24 (limits.ts).
  const long = new Set<number>();
  for (const c of claimed) if (c.net.len > 24) long.add(c.net.prefix >>> 8);

  const byVia = new Map<string, Cidr[]>();
  for (const r of routes) {
    const c = tryParseCidr(r.prefix);
    const reason = (() => {
      if (!c.ok) return c.reason;
      if (r.via === self.underlay.address) return `next hop ${r.via} is this node`;
      if (underlays.has(r.via)) return `next hop ${r.via} is the underlay of ${config.peers.find((p) => p.underlay === r.via)!.name}, which the config or etcd already has`;
      const over = claimed.find((x) => cidrOverlaps(x.net, c.value));
      if (over) return `overlaps ${over.cidr} of ${over.owner}`;
      const vtep = vteps.find((v) => cidrContains(c.value, v.addr));
      if (vtep) return `holds the VTEP address ${vtep.ip} of ${vtep.owner}`;
      if (c.value.len > 24 && !long.has(c.value.prefix >>> 8)) {
        if (long.size >= TBL8_GROUPS) return `prefixes longer than /24 already fill ${TBL8_GROUPS} /24s of the route table`;
        long.add(c.value.prefix >>> 8);
      }
      return undefined;
    })();
    if (reason) {
      dropped.push({ prefix: r.prefix, via: r.via, reason });
      continue;
    }
    let list = byVia.get(r.via);
    if (!list) byVia.set(r.via, (list = []));
    list.push((c as { value: Cidr }).value);
  }

  const peers: PeerConfig[] = [];
  const room = Math.min(MAX_PEERS, MAX_NEXTHOPS - 2) - config.peers.length;
  const vias = [...byVia.keys()].sort((a, b) => ipToU32(a) - ipToU32(b));
  for (const via of vias) {
    const nets = byVia.get(via)!.sort((x, y) => x.prefix - y.prefix || x.len - y.len);
    const podCIDRs = nets.map(formatCidr);
    const name = `${BGP_PEER_PREFIX}${via}`;
    const vtepMac = formatMac(macFromIp(ipToU32(via)));
    const clash = names.has(name) ? `a peer is already called ${name}` : macs.has(vtepMac) ? `VTEP MAC ${vtepMac} is taken` : peers.length >= room ? `the data path holds at most ${MAX_PEERS} peers` : undefined;
    if (clash) {
      for (const prefix of podCIDRs) dropped.push({ prefix, via, reason: clash });
      continue;
    }
    macs.add(vtepMac);
    peers.push({
      name,
      underlay: via,
      podCIDRs,
      vtepMac,
      // As the schema resolves it for a config peer: the first address of the first pod CIDR.
      vtepAddress: u32ToIp(nets[0].prefix),
      encapsulation: learnedEncapsulation(config, routing, via),
    });
  }
  return { peers, dropped };
}

/** `config` with the learned peers after its own (see learnedPeers). */
export function withLearnedPeers(config: Config, routes: readonly LearnedRoute[]): { config: Config; peers: PeerConfig[]; dropped: Dropped[] } {
  if (!config.routing) return { config, peers: [], dropped: [] };
  const { peers, dropped } = learnedPeers(config, config.routing, routes);
  return { config: { ...config, peers: [...config.peers, ...peers] }, peers, dropped };
}
