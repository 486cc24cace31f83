// What `overlayd show peers|fdb|neigh|routes|stats` prints: rows built from
// the tables in force and the lanes' last reports (src/control/admin.ts
// serves them; the daemon supplies where each peer came from).
import type { DerivedTables } from "../config/derive.js";
import { formatMac, u32ToIp } from "../config/net.js";
import { bigintToIpv6 } from "../config/net6.js";
import type { Lane } from "./lanes.js";

/** Where a peer came from: the config file, etcd membership, or a routing table BIRD fills. */
export type PeerSource = "config" | "etcd" | "bgp";

export function peerRows(d: DerivedTables, origin: (name: string) => object) {
  return d.peers.map((p, i) => ({
    index: i, name: p.name, underlay: u32ToIp(p.underlay), vtepMac: formatMac(p.vtepMac), vtepAddress: u32ToIp(p.vtepAddress),
    ...(p.underlay6 ? { underlay6: p.underlay6 } : {}),
    podCIDRs: p.podCIDRs, ...(p.podCIDRs6?.length ? { podCIDRs6: p.podCIDRs6 } : {}), encapsulation: p.encapsulation, reason: p.reason, ...origin(p.name),
  }));
}

export function fdbRows(d: DerivedTables) {
  // As `bridge fdb` shows a VTEP's remote: the IPv6 one for a peer reached over IPv6.
  return d.fdb.map((f) => ({ mac: formatMac(f.mac), peer: d.peers[f.peer]?.name, dst: d.peers[f.peer]?.underlay6 ?? u32ToIp(d.peers[f.peer]?.underlay ?? 0) }));
}

export function neighRows(d: DerivedTables) {
  return d.neigh.map((n) => ({ ip: u32ToIp(n.ip), mac: formatMac(n.mac) }));
}

/** The LPM's routes; `bgpTable` names the kernel table learned routes came from. */
export function routeRows(d: DerivedTables, sourceOf: (peer: string) => PeerSource, bgpTable?: number) {
  const row = (prefix: string, nhIndex: number, withVia: boolean) => {
    const nh = d.nexthops[nhIndex];
    const peer = nh && nh.peer !== undefined && nh.peer !== 0xffff ? d.peers[nh.peer] : undefined;
    const source = peer ? sourceOf(peer.name) : "config";
    return {
      prefix, kind: nh?.kind, peer: peer?.name, ...(withVia ? { via: nh?.gateway ? u32ToIp(nh.gateway) : undefined } : {}),
      underlay: peer ? u32ToIp(peer.underlay) : undefined, source: source === "bgp" ? `bgp (table ${bgpTable})` : source,
    };
  };
  // IPv6 (node.ipv6): no `via` (the data path sends to the peer's VTEP MAC);
  // a direct peer's IPv6 goes over VXLAN (derive.ts), and its kind says so.
  return [
    ...d.routes.map((r) => row(`${u32ToIp(r.prefix)}/${r.len}`, r.nh, true)),
    ...d.routes6.map((r) => row(`${bigintToIpv6(r.prefix)}/${r.len}`, r.nh, false)),
  ];
}

/** Per queue (one worker each): what each one moved. */
export function queueRows(lanes: readonly Lane[]) {
  return lanes.map((l, q) => ({
    queue: q, rx_pod_packets: l.counters.rx_pod_packets ?? 0n, rx_vxlan_packets: l.counters.rx_vxlan_packets ?? 0n,
    rx_ipip_packets: l.counters.rx_ipip_packets ?? 0n, to_device_packets: l.counters.to_device_packets ?? 0n,
    // Which worker translated which direction (the queues share one connection table).
    nat_translated_packets: l.counters.nat_translated_packets ?? 0n, nat_reply_packets: l.counters.nat_reply_packets ?? 0n,
  }));
}
