// Replays every fuzz seed (fuzz/corpus/<target>/) and every crash the fuzzer
// ever found (fuzz/regressions/<target>/) through the same release module via
// the TypeScript wrapper, checking the invariants fuzz/harness.c asserts, so
// `npm test` covers them without clang. The input format and the topology
// mirror fuzz/harness.c; keep the two in step.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { Dataplane, type DeviceMode, type ServiceFrontend6 } from "../src/dataplane/dataplane.js";
import { RouteRules } from "../src/dataplane/routes.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import { repoRoot } from "../src/dataplane/wasm.js";
import { inetChecksum, ip, mac } from "./helpers/packets.js";
import { a6, a6big } from "./helpers/packets6.js";
import { DEV_MAC, W1, W2, W3, W4, worker2, worker3, type Node } from "./helpers/topology.js";

const BATCH = 8; // 4 packets, each followed by a guard record
const MAX_PKTS = 4;
const MIN_OFF = 72;
const SEP = [0xff, 0x50, 0x4b, 0xff]; // "\xffPK\xff"
const SPORT_MIN = 32768;
const SPORT_MAX = 60999;
const W8_MAC = mac("0e:00:00:00:08:00");
// Peer 3 of worker2, reached over the IPv6 underlay (harness.c W2_PEERS[3]).
const W6 = { underlay: ip("198.18.0.16"), mac: mac("0e:00:00:00:06:00"), underlay6: "2001:2:0:fe::6" };
const W2_UNDERLAY6 = "2001:2:0:fe::2";
const UNKNOWN_UNDERLAY = ip("198.18.0.99");
const OUTER_TTL = 64;
const TARGETS = ["vxlan-decap", "vxlan-inner", "ipip-decap", "pod-tun", "pod-tap", "roundtrip", "nat", "vxlan-super", "vxlan-inner6", "sit-inner", "nat66", "ip6tnl"] as const;
type Target = (typeof TARGETS)[number];
const MTU = 1500;
const LPM6_GROUPS = 64;

// What each node was told, for the invariants (harness.c node_t's nh, peers, r6, overlay6).
interface Route6 { prefix: Uint8Array; depth: number; nh: number }
interface Route4 { prefix: number; depth: number; nh: number }
interface NodeInfo {
  underlay: number;
  vtepMac: bigint;
  /** u6: the setPeer6 address (reached over the IPv6 underlay). */
  peers: { underlay: number; mac: bigint; u6?: Uint8Array }[];
  nh: { kind: number; peer: number }[];
  routes6: Route6[];
  overlay6: Uint8Array;
  /** The IPv4 routes (harness.c W2_ROUTES), worker2's only. */
  routes4?: Route4[];
  underlay6?: Uint8Array;
}
const nodeInfo = new WeakMap<Node, NodeInfo>();
const infoOf = (n: Node) => nodeInfo.get(n)!;
const underlayOf = (n: Node) => infoOf(n).underlay;
const vtepMacOf = (n: Node) => infoOf(n).vtepMac;

/** IPv6 (issue 16), as harness.c ipv6_setup(): the overlay address
 *  2001:2:0:N:: of worker N and `routes` ([prefix, length, next hop]). */
function addIpv6(n: Node, worker: number, params: Parameters<Dataplane["configure"]>[0], routes: [string, number, number][]): Route6[] {
  n.dp.configure({ ...params, overlay6: a6big(`2001:2:0:${worker}::`) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  for (const [prefix, depth, nh] of routes) expect(r6.add(prefix, depth, nh), `IPv6 route ${prefix}/${depth}`).toBe(0);
  return routes.map(([prefix, depth, nh]) => ({ prefix: a6(prefix), depth, nh }));
}
const K = { vxlan: abi.NH_VXLAN, ipip: abi.NH_IPIP, direct: abi.NH_DIRECT, local: abi.NH_LOCAL, blackhole: abi.NH_BLACKHOLE };

/** worker2 plus the next hops and routes fuzz/harness.c adds (tbl8 prefixes,
 *  a vxlan next hop without a neighbour, one whose neighbour has no FDB
 *  entry), peer 3 over the IPv6 underlay with a VXLAN (7) and an IPIP (8)
 *  next hop, IPv6 (harness.c W2_ROUTES6) unless `ipv6` is false, and the
 *  routes to peer 3 (both families) when `under6` (harness.c worker2()). */
function fuzzWorker2(mode: DeviceMode, ipv6 = true, under6 = ipv6): Node {
  const n = worker2(mode, { batch: BATCH, lpm6Groups: LPM6_GROUPS });
  const params = { mode, underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100, underlayMtu: MTU, underlay6: a6big(W2_UNDERLAY6) };
  n.dp.configure(params);
  n.dp.setPeer(3, W6.underlay, W6.mac);
  n.dp.setPeer6(3, a6big(W6.underlay6));
  n.dp.setNexthop(5, "vxlan", 0, ip("198.19.7.0"));
  n.dp.setNexthop(6, "vxlan", 0, ip("198.19.8.0"));
  n.dp.setNexthop(7, "vxlan", 3, ip("198.19.9.0"));
  n.dp.setNexthop(8, "ipip", 3, 0);
  n.dp.neighSet(ip("198.19.8.0"), W8_MAC);
  n.dp.neighSet(ip("198.19.9.0"), W6.mac);
  n.dp.fdbSet(W6.mac, 3);
  const routes4: [string, number, number][] = [
    ["198.19.2.0", 24, 0], ["198.19.3.0", 24, 1], ["198.19.1.0", 24, 2], ["198.19.4.0", 24, 3], ["198.18.96.0", 24, 4],
    ["198.19.5.0", 25, 3], ["198.19.5.128", 26, 1], ["198.19.5.200", 32, 4], ["198.19.7.0", 24, 5], ["198.19.8.0", 24, 6],
    ...(under6 ? ([["198.19.9.0", 24, 7], ["198.19.10.0", 24, 8]] as [string, number, number][]) : []),
  ];
  for (const [prefix, depth, nh] of routes4.slice(5)) n.routes.add(prefix, depth, nh); // the first five: helpers/topology
  const routes6 = !ipv6 ? [] : addIpv6(n, 2, params, [
    ["2001:2:0:2::", 64, 0],
    ["2001:2:0:3::", 64, 1],
    ["2001:2:0:1::", 64, 2],
    ["2001:2:0:4::", 64, 3],
    ["2001:2:0:96::", 112, 4],
    ["2001:2:0:5::", 64, 3],
    ["2001:2:0:5:8000::", 80, 1],
    ["2001:2:0:5::c8", 128, 4],
    ["2001:2:0:7::", 64, 5],
    ["2001:2:0:8::", 64, 6],
    ...(under6 ? ([["2001:2:0:9::", 64, 7], ["2001:2:0:a::", 64, 8]] as [string, number, number][]) : []),
  ]);
  nodeInfo.set(n, {
    underlay: W2.underlay,
    vtepMac: W2.mac,
    peers: [{ underlay: W3.underlay, mac: W3.mac }, { underlay: W1.underlay, mac: W1.mac }, { underlay: W4.underlay, mac: W4.mac },
      { underlay: W6.underlay, mac: W6.mac, u6: a6(W6.underlay6) }],
    nh: [{ kind: K.local, peer: 0xffff }, { kind: K.vxlan, peer: 0 }, { kind: K.ipip, peer: 1 }, { kind: K.direct, peer: 2 }, { kind: K.blackhole, peer: 0xffff },
      { kind: K.vxlan, peer: 0 }, { kind: K.vxlan, peer: 0 }, { kind: K.vxlan, peer: 3 }, { kind: K.ipip, peer: 3 }],
    routes6,
    overlay6: ipv6 ? a6("2001:2:0:2::") : new Uint8Array(16),
    routes4: routes4.map(([prefix, depth, nh]) => ({ prefix: ip(prefix) >>> 0, depth, nh })),
    underlay6: a6(W2_UNDERLAY6),
  });
  return n;
}

/** worker3 (tun) of helpers/topology, with IPv6. */
function fuzzWorker3(): Node {
  const n = worker3("tun", { batch: BATCH, lpm6Groups: LPM6_GROUPS });
  const routes6 = addIpv6(n, 3, { mode: "tun", underlay: W3.underlay, overlay: W3.vtep, vtepMac: W3.mac, devMac: DEV_MAC, vni: 100 },
    [["2001:2:0:3::", 64, 0], ["2001:2:0:2::", 64, 1], ["2001:2:0:1::", 64, 2]]);
  nodeInfo.set(n, {
    underlay: W3.underlay,
    vtepMac: W3.mac,
    peers: [{ underlay: W2.underlay, mac: W2.mac }, { underlay: W1.underlay, mac: W1.mac }],
    nh: [{ kind: K.local, peer: 0xffff }, { kind: K.vxlan, peer: 0 }, { kind: K.ipip, peer: 1 }],
    routes6,
    overlay6: a6("2001:2:0:3::"),
  });
  return n;
}

/** worker1 (tun): peer 0 worker2 over IPIP (IPv6: protocol 41). */
function worker1(): Node {
  const dp = new Dataplane({ batch: BATCH, tbl8Groups: 256, lpm6Groups: LPM6_GROUPS });
  const params = { mode: "tun" as const, underlay: W1.underlay, overlay: W1.vtep, vtepMac: W1.mac, devMac: DEV_MAC, vni: 100 };
  dp.configure(params);
  dp.setPeer(0, W2.underlay, W2.mac);
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "ipip", 0, 0);
  const routes = new RouteRules(dp.lpmBackend);
  routes.add("198.19.1.0", 24, 0);
  routes.add("198.19.2.0", 24, 1);
  const n = { dp, routes };
  const routes6 = addIpv6(n, 1, params, [["2001:2:0:1::", 64, 0], ["2001:2:0:2::", 64, 1]]);
  nodeInfo.set(n, {
    underlay: W1.underlay,
    vtepMac: W1.mac,
    peers: [{ underlay: W2.underlay, mac: W2.mac }],
    nh: [{ kind: K.local, peer: 0xffff }, { kind: K.ipip, peer: 0 }],
    routes6,
    overlay6: a6("2001:2:0:1::"),
  });
  return n;
}

interface Pkt {
  bytes: Uint8Array;
  off: number;
  addr: number;
  tos: number;
}

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const be32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const be48 = (b: Uint8Array, o: number) => (BigInt(be16(b, o)) << 32n) | BigInt(be32(b, o + 2));

class Violation extends Error {}
function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Violation(what);
}

function place(ctrl: number, len: number, slotSize: number): number {
  switch (ctrl & 3) {
    case 1: return slotSize - len;
    case 2: return MIN_OFF;
    default: return abi.HEADROOM;
  }
}

function split(data: Uint8Array, max = MAX_PKTS): Uint8Array[] {
  const segs: Uint8Array[] = [];
  let start = 1;
  let i = 1;
  while (i + 4 <= data.length && segs.length < max - 1) {
    if (data[i] === SEP[0] && data[i + 1] === SEP[1] && data[i + 2] === SEP[2] && data[i + 3] === SEP[3]) {
      segs.push(data.subarray(start, i));
      i += 4;
      start = i;
    } else {
      i++;
    }
  }
  segs.push(data.subarray(start));
  return segs;
}

/** Load packets into slots 0, 2, 4, ... with guard records (off 0) in the odd
 *  slots, whose bytes are filled with 0xA5 and must stay so. */
function loadBatch(dp: Dataplane, pkts: Pkt[]): { n: number; before: bigint[] } {
  const u8 = dp.u8;
  for (let i = 0; i < BATCH; i++) u8.fill(0, dp.metaPtr(i), dp.metaPtr(i) + abi.META_SIZE);
  pkts.forEach((p, k) => dp.writePacket(2 * k, p.bytes, { off: p.off, addr: p.addr, tos: p.tos }));
  for (let i = 1; i < BATCH; i += 2) u8.fill(0xa5, dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize);
  const before = Array.from({ length: abi.COUNTER_COUNT }, (_, i) => dp.counter(i));
  return { n: 2 * pkts.length, before };
}

function checkIpv4(dp: Dataplane, at: number, len: number, what: string): void {
  const b = dp.u8;
  check(dp.raw.checkIpv4(at, len) === 0, `${what}: checkIpv4 rejects the output (len ${len})`);
  check(len >= 20 && b[at] >> 4 === 4, `${what}: not IPv4`);
  const hl = (b[at] & 15) * 4;
  check(hl >= 20 && hl <= len, `${what}: header length ${hl} of ${len}`);
  check(be16(b, at + 2) === len, `${what}: total length ${be16(b, at + 2)} != ${len}`);
  check(inetChecksum(b.subarray(at, at + hl)) === 0, `${what}: bad IPv4 header checksum`);
}

/** `out` is `orig` forwarded without NAT: identical, TTL included (the
 *  node's kernel takes its hop, before or after us: forward.ts, "TTL"). */
function checkForwarded(out: Uint8Array, orig: Uint8Array, what: string): void {
  check(out.length === orig.length, `${what}: forwarded ${out.length} bytes of ${orig.length}`);
  check(out[8] === orig[8], `${what}: TTL ${orig[8]} -> ${out[8]}`);
  for (let i = 0; i < out.length; i++) {
    if (i !== 8 && i !== 10 && i !== 11) check(out[i] === orig[i], `${what}: byte ${i} changed`);
  }
}

/** The inner IPv4 datagram of a pod-side input (tap: behind Ethernet), cut to its total length. */
function podIp(input: Uint8Array, tap: boolean): Uint8Array {
  const p = input.subarray(tap ? 14 : 0);
  return p.subarray(0, be16(p, 2));
}

// --- IPv6 (harness.c's IPv6 helpers): from RFC 8200/4291/4443/4861, and a
// naive IPv6 route lookup over the routes the node was given.
const a6Multicast = (b: Uint8Array, o: number) => b[o] === 0xff;
const a6Zero = (b: Uint8Array, o: number) => b.subarray(o, o + 16).every((x) => x === 0);
const a6Loopback = (b: Uint8Array, o: number) => b.subarray(o, o + 15).every((x) => x === 0) && b[o + 15] === 1;
const a6LinkLocal = (b: Uint8Array, o: number) => b[o] === 0xfe && (b[o + 1] & 0xc0) === 0x80;
const a6Equal = (a: Uint8Array, ao: number, b: Uint8Array, bo: number) => a.subarray(ao, ao + 16).every((x, i) => x === b[bo + i]);
const tclass = (p: Uint8Array, o = 0) => (be16(p, o) >> 4) & 0xff;
const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/** 40 + payload length of a valid IPv6 header in `p`, else 0 (harness.c ip6_len). */
function ip6Len(p: Uint8Array): number {
  if (p.length < 40 || p[0] >> 4 !== 6) return 0;
  const plen = be16(p, 4);
  if (40 + plen > p.length || (plen === 0 && p[6] !== 59)) return 0;
  return 40 + plen;
}
/** The pseudo-header sum (not folded) of the IPv6 packet `ip` for `n` bytes of `next`. */
function pseudoSum6(ip: Uint8Array, next: number, n: number): number {
  let s = Math.floor(n / 65536) + (n & 0xffff) + next;
  for (let i = 8; i < 40; i += 2) s += be16(ip, i);
  return s;
}
/** 0 when the `n` bytes of protocol `next` behind the IPv6 header hold a right checksum. */
const l4Sum6 = (ip: Uint8Array, next: number, n: number) => inetChecksum(ip.subarray(40, 40 + n), pseudoSum6(ip, next, n));
const partialSum6 = (ip: Uint8Array, next: number, n: number) => ~inetChecksum(new Uint8Array(0), pseudoSum6(ip, next, n)) & 0xffff;

function checkIpv6(p: Uint8Array, what: string): void {
  check(p.length >= 40 && p[0] >> 4 === 6, `${what}: not IPv6 (${p.length} bytes)`);
  check(40 + be16(p, 4) === p.length, `${what}: payload length ${be16(p, 4)}, ${p.length} bytes`);
  check(be16(p, 4) !== 0 || p[6] === 59, `${what}: a jumbogram`);
}

function route6Lookup(info: NodeInfo, a: Uint8Array, o: number): number {
  let best = -1;
  let bestDepth = 0;
  for (const r of info.routes6) {
    let k = 0;
    for (; k < r.depth; k++) if (((a[o + (k >> 3)] ^ r.prefix[k >> 3]) >> (7 - (k & 7))) & 1) break;
    if (k === r.depth && (best < 0 || r.depth >= bestDepth)) {
      best = r.nh;
      bestDepth = r.depth;
    }
  }
  return best;
}
const nhKind = (info: NodeInfo, nh: number) => (nh >= 0 && nh < info.nh.length ? info.nh[nh].kind : 0);
const peerOf = (info: NodeInfo, underlay: number) => info.peers.findIndex((p) => p.underlay === underlay >>> 0);
const peerOver6 = (info: NodeInfo, i: number) => i < info.peers.length && info.peers[i].u6 !== undefined;
/** harness.c route4_lookup: longest match among the node's IPv4 routes. */
function route4Lookup(info: NodeInfo, a: number): number {
  let best = -1;
  let bestDepth = 0;
  for (const r of info.routes4 ?? []) {
    const mask = r.depth === 0 ? 0 : (~0 << (32 - r.depth)) >>> 0;
    if (((a & mask) >>> 0) === ((r.prefix & mask) >>> 0) && (best < 0 || r.depth >= bestDepth)) {
      best = r.nh;
      bestDepth = r.depth;
    }
  }
  return best;
}
/** harness.c inner_mtu: the one MTU rule (20 bytes less to a peer over IPv6). */
function innerMtu(info: NodeInfo, nh: number): number {
  const k = nhKind(info, nh);
  if (k === abi.NH_DIRECT) return MTU;
  if (k !== abi.NH_VXLAN && k !== abi.NH_IPIP) return 0;
  return MTU - (k === abi.NH_VXLAN ? 50 : 20) - (peerOver6(info, info.nh[nh].peer) ? 20 : 0);
}

/** RFC 6040 section 4.2: the inner ECN field after decapsulation, or -1 (drop). */
function ecnDecap(inner: number, outer: number): number {
  if (inner === 0) return outer === 3 ? -1 : 0;
  if (outer === 3) return 3;
  if (outer === 1 && inner === 2) return 1;
  return inner;
}

/** harness.c check_tx_underlay6: an encapsulated IPv6 packet. */
function checkTxUnderlay6(info: NodeInfo, out: Uint8Array, inner: number, addr: number, peer: number, vxlan: boolean, input: Pkt, podOff: number): void {
  const ip6 = out.subarray(inner);
  checkIpv6(ip6, "TX_UNDERLAY inner IPv6");
  check(be16(out, 6) === 0x4000, `TX_UNDERLAY (IPv6 inside): outer flags ${be16(out, 6).toString(16)}, DF must be set`);
  check(out[1] === tclass(ip6), "TX_UNDERLAY: outer TOS != traffic class");
  check(out.length <= MTU, "TX_UNDERLAY (IPv6 inside): over the underlay MTU");
  const nh = route6Lookup(info, ip6, 24);
  check(nhKind(info, nh) === (vxlan ? abi.NH_VXLAN : abi.NH_IPIP) && info.nh[nh].peer === peer, `TX_UNDERLAY (IPv6 inside): the destination routes to next hop ${nh}, not to peer ${peer}`);
  check(addr >>> 0 === info.peers[peer].underlay, "TX_UNDERLAY: not to the peer's underlay address");
  if (podOff >= 0) {
    const in6 = input.bytes.subarray(podOff);
    check(ip6Len(in6) === ip6.length, `TX_UNDERLAY: ${ip6.length} inner IPv6 bytes for an input of ${ip6Len(in6)}`);
    check(bytesEqual(ip6, in6.subarray(0, ip6.length)), "TX_UNDERLAY inner IPv6: not the input byte for byte");
  }
}

/** harness.c check_tx_over6: a TX_UNDERLAY packet to a peer over the IPv6 underlay. */
function checkTxOver6(dp: Dataplane, info: NodeInfo, at: number, out: Uint8Array, r: { addr: number; peer: number; hash: number }, input: Pkt, podOff: number): void {
  const { peer } = r;
  checkIpv6(out, "TX_UNDERLAY over IPv6: outer");
  check(peerOver6(info, peer), `TX_UNDERLAY: an IPv6 outer header to peer ${peer}, not a peer over IPv6`);
  check(r.addr >>> 0 === info.peers[peer].underlay, "TX_UNDERLAY over IPv6: meta addr is not the peer's identity");
  check(a6Equal(out, 8, info.underlay6!, 0), "TX_UNDERLAY over IPv6: source is not the node's IPv6 underlay address");
  check(a6Equal(out, 24, info.peers[peer].u6!, 0), "TX_UNDERLAY over IPv6: destination is not the peer's IPv6 address");
  check(out[7] === OUTER_TTL, `TX_UNDERLAY over IPv6: hop limit ${out[7]}`);
  const fl = be32(out, 0) & 0xfffff;
  check(fl === ((r.hash & 0xfffff) || 1), `TX_UNDERLAY over IPv6: flow label ${fl.toString(16)} for hash ${r.hash.toString(16)}`);
  check(out.length <= MTU, `TX_UNDERLAY over IPv6: ${out.length} bytes over the underlay MTU (the +20 rule)`);
  const vxlan = out[6] === 17;
  let inner: number;
  let six: boolean;
  if (vxlan) {
    check(out.length >= 90, "TX_UNDERLAY vxlan over IPv6: short");
    check(be16(out, 44) === out.length - 40, "TX_UNDERLAY vxlan over IPv6: UDP length");
    check(be16(out, 42) === 4789, "TX_UNDERLAY vxlan over IPv6: UDP destination port");
    check(be16(out, 40) >= SPORT_MIN && be16(out, 40) <= SPORT_MAX, "TX_UNDERLAY vxlan over IPv6: UDP source port");
    check(be16(out, 46) !== 0, "TX_UNDERLAY vxlan over IPv6: UDP checksum 0");
    check(l4Sum6(out, 17, out.length - 40) === 0, "TX_UNDERLAY vxlan over IPv6: bad UDP checksum");
    check(be32(out, 48) === 0x08000000 && be32(out, 52) === 100 << 8, "TX_UNDERLAY vxlan over IPv6: VXLAN flags / VNI");
    check(be48(out, 62) === info.vtepMac && be48(out, 56) === info.peers[peer].mac, "TX_UNDERLAY vxlan over IPv6: inner MACs");
    check(be16(out, 68) === 0x0800 || be16(out, 68) === 0x86dd, "TX_UNDERLAY vxlan over IPv6: inner ethertype");
    six = be16(out, 68) === 0x86dd;
    inner = 70;
  } else {
    check(out[6] === 4 || out[6] === 41, `TX_UNDERLAY over IPv6: next header ${out[6]}`);
    six = out[6] === 41;
    inner = 40;
  }
  const q = out.subarray(inner);
  check(q.length >= 20 && q[0] >> 4 === (six ? 6 : 4), "TX_UNDERLAY over IPv6: inner version");
  check(tclass(out) === (six ? tclass(q) : q[1]), "TX_UNDERLAY over IPv6: traffic class");
  let nh: number;
  if (six) {
    checkIpv6(q, "TX_UNDERLAY over IPv6: inner IPv6");
    nh = route6Lookup(info, q, 24);
  } else {
    checkIpv4(dp, at + inner, q.length, "TX_UNDERLAY over IPv6: inner IPv4");
    nh = route4Lookup(info, be32(q, 16));
  }
  check(nhKind(info, nh) === (vxlan ? abi.NH_VXLAN : abi.NH_IPIP) && info.nh[nh].peer === peer, `TX_UNDERLAY over IPv6: the destination routes to next hop ${nh}, not to peer ${peer}`);
  check(q.length <= innerMtu(info, nh), "TX_UNDERLAY over IPv6: inner over the tunnel MTU");
  if (podOff < 0) return;
  const inp = input.bytes.subarray(podOff);
  if (six) {
    check(ip6Len(inp) === q.length, `TX_UNDERLAY over IPv6: ${q.length} inner IPv6 bytes for an input of ${ip6Len(inp)}`);
    check(bytesEqual(q, inp.subarray(0, q.length)), "TX_UNDERLAY over IPv6, inner IPv6: not the input byte for byte");
  } else {
    checkForwarded(q, inp.subarray(0, be16(inp, 2)), "TX_UNDERLAY over IPv6, inner");
  }
}

/** harness.c check_to_device4_ip6tnl: an IPv4 packet processIp6TunnelBatch delivered. */
function checkToDevice4Ip6tnl(info: NodeInfo, ipp: Uint8Array, input: Pkt, mpeer: number): void {
  const q = input.bytes;
  check(q.length >= 20 && q[0] >> 4 === 4 && be16(q, 2) === ipp.length && ipp.length <= q.length, "TO_DEVICE IPv4 (ip6tnl): length");
  const sp = peerOf(info, input.addr);
  check(sp >= 0 && mpeer === sp, `TO_DEVICE IPv4 (ip6tnl): sent by peer ${sp}, metadata says ${mpeer}`);
  const nh = route4Lookup(info, be32(q, 12));
  const k = nhKind(info, nh);
  check((k === abi.NH_VXLAN || k === abi.NH_IPIP || k === abi.NH_DIRECT) && info.nh[nh].peer === sp, `TO_DEVICE IPv4 (ip6tnl): spoofed source (next hop ${nh})`);
  const ecn = ecnDecap(q[1] & 3, input.tos & 3);
  check(ecn >= 0, "TO_DEVICE IPv4 (ip6tnl): outer CE on a Not-ECT packet delivered");
  check((ipp[1] & 0xfc) === (q[1] & 0xfc) && (ipp[1] & 3) === ecn, `TO_DEVICE IPv4 (ip6tnl): TOS, RFC 6040 says ECN ${ecn}`);
  const hl = (q[0] & 15) * 4;
  const whole = (be16(q, 6) & 0x3fff) === 0;
  const cf = !whole ? 0 : q[9] === 6 ? hl + 16 : q[9] === 17 ? hl + 6 : 0;
  const hasCf = cf !== 0 && cf + 2 <= ipp.length;
  for (let i = 2; i < ipp.length; i++) {
    if (i === 10 || i === 11 || (hasCf && (i === cf || i === cf + 1))) continue;
    check(ipp[i] === q[i], `TO_DEVICE IPv4 (ip6tnl): byte ${i} changed`);
  }
  if (hasCf && be16(ipp, cf) !== be16(q, cf)) {
    const l4n = ipp.length - hl;
    let ps = q[9] + l4n;
    for (let i = 12; i < 20; i += 2) ps += be16(q, i);
    check(be16(q, cf) === (~inetChecksum(new Uint8Array(0), ps) & 0xffff), "TO_DEVICE IPv4 (ip6tnl): a checksum changed that was not a partial sum");
    check(inetChecksum(ipp.subarray(hl), ps) === 0, "TO_DEVICE IPv4 (ip6tnl): the finished checksum is wrong");
  }
}

/** harness.c check_icmp6_error. */
function checkIcmp6Error(info: NodeInfo, p: Uint8Array, inp: Uint8Array, reason: number, what: string): void {
  checkIpv6(p, what);
  check(p.length <= 1280, `${what}: ICMPv6 error of ${p.length} bytes`);
  check(p.length >= 48 && p[6] === 58, `${what}: next header ${p[6]}`);
  check(a6Equal(p, 8, info.overlay6, 0), `${what}: source is not the node's IPv6 overlay address`);
  const il = ip6Len(inp);
  check(il !== 0, `${what}: about an input that holds no valid IPv6 header`);
  check(a6Equal(p, 24, inp, 8), `${what}: not sent to the packet's source`);
  check(l4Sum6(p, 58, p.length - 40) === 0, `${what}: bad ICMPv6 checksum`);
  const type = p[40];
  const code = p[41];
  check(type >= 1 && type <= 4, `${what}: ICMPv6 type ${type}`);
  const q = p.length - 48;
  check(q === Math.min(il, 1280 - 48), `${what}: quotes ${q} bytes of a ${il}-byte packet`);
  check(bytesEqual(p.subarray(48), inp.subarray(0, q)), `${what}: the quote is not the packet`);
  check(!(inp[6] === 58 && il > 40 && inp[40] < 128), `${what}: an ICMPv6 error about an ICMPv6 error`);
  check(!a6Multicast(inp, 8) && !a6Zero(inp, 8) && !a6Loopback(inp, 8), `${what}: about a packet from a multicast/unspecified/loopback source`);
  check(!a6Multicast(inp, 24), `${what}: about a packet to a multicast destination`);
  const nh = route6Lookup(info, inp, 24);
  if (type === 1) {
    check(code === 0 && reason === abi.R_NO_ROUTE && nh < 0, `${what}: destination unreachable code ${code} reason ${reason} for a destination routed to ${nh}`);
  } else if (type === 2) {
    const k = nhKind(info, nh);
    const mtu = innerMtu(info, nh);
    check(code === 0 && reason === abi.R_TOO_BIG && (k === abi.NH_VXLAN || k === abi.NH_IPIP), `${what}: packet too big code ${code} reason ${reason} kind ${k}`);
    check(be32(p, 44) === mtu, `${what}: packet too big says MTU ${be32(p, 44)}, the tunnel's is ${mtu}`);
    check(il > mtu, `${what}: packet too big for ${il} bytes that fit`);
  }
}

/** harness.c check_neighbor_advert: proxy NDP's answer to the tap frame `f`. */
function checkNeighborAdvert(info: NodeInfo, p: Uint8Array, f: Uint8Array): void {
  check(p.length === 14 + 40 + 32, `NA of ${p.length} bytes`);
  check(f.length >= 14 + 40 + 24 && be16(f, 12) === 0x86dd, "NA for a frame that is not IPv6");
  const ip = f.subarray(14);
  const il = ip6Len(ip);
  check(il >= 40 + 24, "NA for an input without a whole IPv6 NS");
  const ql = il - 40;
  check(ip[6] === 58 && ip[7] === 255 && ip[40] === 135 && ip[41] === 0, `NA for no NS: next ${ip[6]} hop limit ${ip[7]} type ${ip[40]} code ${ip[41]}`);
  check(l4Sum6(ip, 58, ql) === 0, "NA for an NS with a bad checksum");
  check(!a6Multicast(ip, 48), "NA for a multicast target");
  check(!a6Zero(ip, 8), "NA answering duplicate address detection (unspecified source)");
  check(!a6Multicast(ip, 8) && !a6Loopback(ip, 8), "NA to a multicast or loopback source (RFC 4291 2.7: never a source)");
  check(!a6Equal(ip, 48, ip, 8), "NA for an NS whose target is its own source");
  let sll = 0n;
  let o = 24;
  while (o + 2 <= ql) {
    const ol = ip[40 + o + 1] * 8;
    check(ol !== 0 && o + ol <= ql, `NA for an NS with a malformed option at ${o}`);
    if (ip[40 + o] === 1 && ol >= 8) sll = be48(ip, 40 + o + 2);
    o += ol;
  }
  check(o === ql, "NA for an NS whose options do not fill it");
  const k = nhKind(info, route6Lookup(info, ip, 48));
  check(k === abi.NH_VXLAN || k === abi.NH_IPIP || k === abi.NH_DIRECT, `NA for a target routed to kind ${k}`);
  const to = sll !== 0n ? sll : be48(f, 6);
  check(be48(p, 0) === to, "NA not sent to the solicitor's MAC");
  check(be48(p, 6) === info.vtepMac && be16(p, 12) === 0x86dd, "NA: Ethernet header");
  const a = p.subarray(14);
  checkIpv6(a, "NA");
  check(a[6] === 58 && a[7] === 255, `NA: next header ${a[6]} hop limit ${a[7]}`);
  check(a6Equal(a, 8, ip, 48), "NA: source is not the target");
  check(a6Equal(a, 24, ip, 8), "NA: not sent to the solicitor");
  check(a[40] === 136 && a[41] === 0, `NA: type ${a[40]} code ${a[41]}`);
  check(l4Sum6(a, 58, 32) === 0, "NA: bad ICMPv6 checksum");
  check((a[44] & 0x60) === 0x40, "NA: flags (must be Solicited, not Override)");
  check(a6Equal(a, 48, ip, 48), "NA: target is not the NS's");
  check(a[64] === 2 && a[65] === 1 && be48(a, 66) === info.vtepMac, "NA: target link-layer option");
}

/** harness.c check_to_device6: an IPv6 packet handed to the device. */
function checkToDevice6(info: NodeInfo, ipp: Uint8Array, input: Pkt, stage: Side, ipOff: number, mpeer: number): void {
  checkIpv6(ipp, "TO_DEVICE IPv6");
  if (stage === "pod") {
    const in6 = input.bytes.subarray(ipOff);
    check(ip6Len(in6) === ipp.length, `TO_DEVICE IPv6: ${ipp.length} bytes for an input of ${ip6Len(in6)}`);
    check(nhKind(info, route6Lookup(info, in6, 24)) === abi.NH_LOCAL, "TO_DEVICE IPv6: a pod's packet to a destination that is not local");
    check(bytesEqual(ipp, in6.subarray(0, ipp.length)), "TO_DEVICE IPv6 (local): not the input byte for byte");
    return;
  }
  const b = input.bytes;
  let q: Uint8Array;
  let sender: number;
  let otos: number;
  if (stage === "ip6tnl") {
    q = b;
    sender = input.addr;
    otos = input.tos;
  } else if (stage === "vxlan") {
    check(b.length >= 22 && be16(b, 20) === 0x86dd, "TO_DEVICE IPv6 from a VXLAN frame that is not 0x86DD");
    q = b.subarray(22);
    sender = input.addr;
    otos = input.tos;
  } else {
    const ohl = b.length >= 20 ? (b[0] & 15) * 4 : 0;
    check(ohl >= 20 && b[9] === 41 && be16(b, 2) >= ohl && be16(b, 2) <= b.length, "TO_DEVICE IPv6 from an outer packet that is not protocol 41");
    check(be32(b, 16) === info.underlay, "TO_DEVICE IPv6 from protocol 41 not to this node");
    q = b.subarray(ohl, be16(b, 2));
    sender = be32(b, 12);
    otos = b[1];
  }
  check(ip6Len(q) === ipp.length, `TO_DEVICE IPv6: ${ipp.length} bytes for an inner packet of ${ip6Len(q)}`);
  const sp = peerOf(info, sender);
  check(sp >= 0 && mpeer === sp, `TO_DEVICE IPv6: sent by peer ${sp}, metadata says ${mpeer}`);
  const nh = route6Lookup(info, q, 8);
  const k = nhKind(info, nh);
  check((k === abi.NH_VXLAN || k === abi.NH_IPIP || k === abi.NH_DIRECT) && info.nh[nh].peer === sp, `TO_DEVICE IPv6: spoofed source (next hop ${nh}), sent by peer ${sp}`);
  check(!a6Multicast(q, 8) && !a6Zero(q, 8) && !a6Loopback(q, 8) && !a6LinkLocal(q, 8), "TO_DEVICE IPv6: martian source");
  check(!a6Multicast(q, 24) && !a6Zero(q, 24) && !a6Loopback(q, 24) && !a6LinkLocal(q, 24), "TO_DEVICE IPv6: martian destination");
  const ecn = ecnDecap(tclass(q) & 3, otos & 3);
  check(ecn >= 0, "TO_DEVICE IPv6: outer CE on a Not-ECT packet delivered");
  check((tclass(ipp) & 3) === ecn, `TO_DEVICE IPv6: ECN ${tclass(ipp) & 3}, RFC 6040 says ${ecn}`);
  const cf = q[6] === 6 ? 40 + 16 : q[6] === 17 ? 40 + 6 : 0;
  const hasCf = cf !== 0 && cf + 2 <= ipp.length;
  for (let i = 0; i < ipp.length; i++) {
    if (hasCf && (i === cf || i === cf + 1)) continue;
    const mask = i === 1 ? 0xcf : 0xff;
    check((ipp[i] & mask) === (q[i] & mask), `TO_DEVICE IPv6 (decapsulated): byte ${i} changed`);
  }
  if (hasCf && be16(ipp, cf) !== be16(q, cf)) {
    check(be16(q, cf) === partialSum6(q, q[6], ipp.length - 40), "TO_DEVICE IPv6: a checksum changed that was not a partial sum");
    check(l4Sum6(ipp, ipp[6], ipp.length - 40) === 0, "TO_DEVICE IPv6: the finished checksum is wrong");
  }
}

function checkPacket(node: Node, mode: DeviceMode, slot: number, input: Pkt, stage: Side): void {
  const { dp } = node;
  const info = infoOf(node);
  const r = dp.result(slot);
  check(r.verdict < abi.VERDICT_COUNT, `verdict ${r.verdict} out of range`);
  check(r.reason < abi.REASON_COUNT, `reason ${r.reason} out of range`);
  const tap = mode === "tap";
  const pod = stage === "pod";
  const ipOff = pod ? (tap ? 14 : 0) : -1;
  check(stage !== "ip6tnl" || peerOf(info, input.addr) >= 0 || (r.verdict === abi.VERDICT_DROP && r.reason === abi.R_UNKNOWN_PEER),
    `ip6tnl: sender ${input.addr} is no peer, verdict ${r.verdict} reason ${r.reason}`);
  if (r.verdict === abi.VERDICT_DROP) {
    check(r.reason !== 0, "a drop without a reason");
    if (pod && r.reason === abi.R_FRAG_NEEDED_NO_DF && input.bytes.length >= ipOff + 20) {
      const nh = route4Lookup(info, be32(input.bytes, ipOff + 16));
      const k = nhKind(info, nh);
      check(!((k === abi.NH_VXLAN || k === abi.NH_IPIP) && peerOver6(info, info.nh[nh].peer)), "frag_needed_no_df drop towards a peer over IPv6 (must answer ICMP)");
    }
    return;
  }
  check(r.off + r.len <= dp.slotSize, `verdict ${r.verdict}: off ${r.off} + len ${r.len} beyond the slot`);
  check(r.len > 0, "an empty packet");
  const at = dp.slotPtr(slot) + r.off;
  const out = dp.readPacket(slot);
  const vtepMac = vtepMacOf(node);
  switch (r.verdict) {
    case abi.VERDICT_TX_UNDERLAY: {
      check(r.reason === 0, "TX_UNDERLAY with a reason");
      check(r.peer < info.peers.length, `TX_UNDERLAY: peer ${r.peer}`);
      if (out[0] >> 4 === 6) {
        checkTxOver6(dp, info, at, out, r, input, ipOff);
        break;
      }
      checkIpv4(dp, at, r.len, "TX_UNDERLAY outer");
      check(!peerOver6(info, r.peer), `TX_UNDERLAY: an IPv4 outer header to peer ${r.peer}, reached over IPv6`);
      check((out[0] & 15) === 5, "outer header has options");
      check(be32(out, 12) === underlayOf(node), "outer source");
      check(be32(out, 16) === r.addr >>> 0, "outer destination != meta addr");
      let inner: number;
      if (out[9] === 17) {
        check(r.len >= 70, "short vxlan packet");
        check(be16(out, 24) === r.len - 20, "UDP length");
        check(be16(out, 22) === 4789, "UDP destination port");
        check(be16(out, 20) >= SPORT_MIN && be16(out, 20) <= SPORT_MAX, "UDP source port");
        check(be16(out, 26) === 0, "UDP checksum not zero");
        check(be32(out, 28) === 0x08000000, "VXLAN flags");
        check(be32(out, 32) === 100 << 8, "VNI");
        check(be48(out, 42) === vtepMac && (be16(out, 48) === 0x0800 || be16(out, 48) === 0x86dd), "inner Ethernet");
        inner = 50;
        if (be16(out, 48) === 0x86dd) {
          check(be48(out, 36) === info.peers[r.peer].mac, "TX_UNDERLAY vxlan (IPv6): inner destination MAC is not the peer's VTEP MAC");
          checkTxUnderlay6(info, out, inner, r.addr, r.peer, true, input, ipOff);
          break;
        }
      } else {
        check(out[9] === 4 || out[9] === 41, `outer protocol ${out[9]}`);
        inner = 20;
        if (out[9] === 41) {
          checkTxUnderlay6(info, out, inner, r.addr, r.peer, false, input, ipOff);
          break;
        }
      }
      checkIpv4(dp, at + inner, r.len - inner, "TX_UNDERLAY inner");
      check(out[1] === out[inner + 1], "outer TOS != inner TOS");
      check((be16(out, 6) & 0xbfff) === 0 && (be16(out, 6) & 0x4000) === (be16(out, inner + 6) & 0x4000), "outer flags");
      if (pod) checkForwarded(out.subarray(inner), podIp(input.bytes, tap), "TX_UNDERLAY inner");
      break;
    }
    case abi.VERDICT_TX_DIRECT:
      check(r.reason === 0, "TX_DIRECT with a reason");
      checkIpv4(dp, at, r.len, "TX_DIRECT");
      check(r.addr >>> 0 === W4.underlay && r.peer === 2, "TX_DIRECT next hop");
      if (pod) checkForwarded(out, podIp(input.bytes, tap), "TX_DIRECT");
      break;
    case abi.VERDICT_TO_DEVICE: {
      check(r.reason === 0, "TO_DEVICE with a reason");
      let o = 0;
      let six = out[0] >> 4 === 6;
      if (tap) {
        check(r.len >= 14 && be48(out, 0) === DEV_MAC && be48(out, 6) === vtepMac && (be16(out, 12) === 0x0800 || be16(out, 12) === 0x86dd), "TO_DEVICE Ethernet header");
        six = be16(out, 12) === 0x86dd;
        check(r.len >= 14 + (six ? 40 : 20), "short TO_DEVICE frame");
        o = 14;
      }
      if (six) {
        checkToDevice6(info, out.subarray(o), input, stage, ipOff, r.peer);
        break;
      }
      checkIpv4(dp, at + o, r.len - o, "TO_DEVICE");
      if (pod) checkForwarded(out.subarray(o), podIp(input.bytes, tap), "TO_DEVICE (local)");
      if (stage === "ip6tnl") checkToDevice4Ip6tnl(info, out.subarray(o), input, r.peer);
      break;
    }
    case abi.VERDICT_REPLY: {
      check(pod, "REPLY from a decap path");
      if (tap && r.len >= 14 && be16(out, 12) === 0x0806) {
        check(r.reason === 0, "ARP reply with a reason");
        check(r.len === 60 || (r.len === 42 && r.off + 60 > dp.slotSize), `ARP reply of ${r.len} bytes at ${r.off}`);
        check(be16(out, 14) === 1 && be16(out, 16) === 0x0800 && out[18] === 6 && out[19] === 4 && be16(out, 20) === 2, "ARP header");
        check(be48(out, 0) === be48(input.bytes, 22) && be48(out, 32) === be48(input.bytes, 22), "ARP reply not to the asker");
        check(be32(out, 28) === be32(input.bytes, 38), "ARP reply sender address");
        break;
      }
      const six = tap ? r.len >= 14 && be16(out, 12) === 0x86dd : out[0] >> 4 === 6;
      if (six && r.reason === 0) {
        check(tap, "a REPLY without a reason in tun mode");
        checkNeighborAdvert(info, out, input.bytes);
        break;
      }
      check(r.reason !== 0, "ICMP error without a reason");
      if (six) {
        if (tap) {
          check(r.len <= 1280 + 14, `ICMPv6 error frame of ${r.len} bytes`);
          check(be48(out, 6) === vtepMac, "ICMPv6 error: Ethernet source");
          check(input.bytes.length >= 14 && be48(out, 0) === be48(input.bytes, 6), "ICMPv6 error not sent back to the sender's MAC");
          checkIcmp6Error(info, out.subarray(14), input.bytes.subarray(14), r.reason, "REPLY ICMPv6 (tap)");
        } else {
          checkIcmp6Error(info, out, input.bytes, r.reason, "REPLY ICMPv6");
        }
        break;
      }
      let o = 0;
      if (tap) {
        check(r.len >= 14 && r.len <= 576 + 14, `ICMP error frame of ${r.len} bytes`);
        check(be16(out, 12) === 0x0800 && be48(out, 6) === vtepMac, "ICMP error Ethernet header");
        check(be48(out, 0) === be48(input.bytes, 6), "ICMP error not to the sender's MAC");
        o = 14;
      }
      const len = r.len - o;
      checkIpv4(dp, at + o, len, "REPLY");
      check(len <= 576, `ICMP error of ${len} bytes`);
      check(out[o + 9] === 1, "REPLY protocol");
      const hl = (out[o] & 15) * 4;
      check(len >= hl + 28, "short ICMP error");
      check(inetChecksum(out.subarray(o + hl)) === 0, "bad ICMP checksum");
      check(out[o + hl] === 3 || out[o + hl] === 11, `ICMP type ${out[o + hl]}`);
      if (r.reason === abi.R_TOO_BIG) {
        // harness.c: fragmentation needed with the MTU of the route's tunnel (the +20 rule).
        const c = o + hl;
        check(out[c] === 3 && out[c + 1] === 4, "REPLY too_big: not fragmentation needed");
        check(input.bytes.length >= ipOff + 20, "REPLY too_big about a short input");
        const nh = route4Lookup(info, be32(input.bytes, ipOff + 16));
        const mtu = innerMtu(info, nh);
        check(mtu !== 0 && be16(out, c + 6) === mtu, `REPLY too_big says MTU ${be16(out, c + 6)}, next hop ${nh} takes ${mtu}`);
        check(be16(input.bytes, ipOff + 2) > mtu, "REPLY too_big for a packet that fits");
      }
      break;
    }
  }
}

function checkBatch(node: Node, mode: DeviceMode, n: number, before: bigint[], inputs: Pkt[], rxCounter: number, stage: Side): void {
  const { dp } = node;
  for (let i = 0; i < n; i++) {
    const r = dp.result(i);
    if (i & 1) {
      check(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET, `guard record ${i} not dropped as R_BAD_OFFSET`);
      const g = dp.u8.subarray(dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize);
      check(g.every((b) => b === 0xa5), `guard slot ${i} was written`);
    } else {
      checkPacket(node, mode, i, inputs[i / 2], stage);
    }
  }
  checkCounters(dp, n, before, rxCounter);
}

/** Per batch, each verdict counter moves by the packets given that verdict,
 *  each drop counter by the packets carrying that reason. */
function checkCounters(dp: Dataplane, n: number, before: bigint[], rxCounter: number): void {
  const wantV = new Array<bigint>(abi.VERDICT_COUNT).fill(0n);
  const wantR = new Array<bigint>(abi.REASON_COUNT).fill(0n);
  let rx = 0n;
  for (let i = 0; i < n; i++) {
    const r = dp.result(i);
    if (r.verdict < abi.VERDICT_COUNT) wantV[r.verdict]++;
    if ((r.verdict === abi.VERDICT_DROP || r.reason !== 0) && r.reason < abi.REASON_COUNT) wantR[r.reason]++;
    if (!(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET)) rx++;
  }
  let sum = 0n;
  for (let v = 0; v < abi.VERDICT_COUNT; v++) {
    const d = dp.counter(abi.C_VERDICT_BASE + v) - before[abi.C_VERDICT_BASE + v];
    check(d === wantV[v], `verdict counter ${v} moved by ${d}, ${wantV[v]} packets got it`);
    sum += d;
  }
  check(sum === BigInt(n), `verdict counters add up to ${sum} for ${n} packets`);
  for (let r = 0; r < abi.REASON_COUNT; r++) {
    const d = dp.counter(abi.C_DROP_BASE + r) - before[abi.C_DROP_BASE + r];
    check(d === wantR[r], `drop counter ${r} moved by ${d}, expected ${wantR[r]}`);
  }
  check(dp.counter(abi.C_BATCHES) - before[abi.C_BATCHES] === 1n, "batch counter");
  check(dp.counter(rxCounter) - before[rxCounter] === rx, "rx counter");
}

/** fuzz/harness.c build_roundtrip(): a valid inner packet from the recipe. */
/** fuzz/harness.c build_roundtrip6(): the IPv6 recipe (r[0] bit 6). */
function buildRoundtrip6(h: Uint8Array, rest: Uint8Array, ipip: boolean): Uint8Array {
  const next = h[3] >= 0x80 ? h[3] : 17;
  const max = MTU - (ipip ? 20 : 50);
  const l4 = next === 17 ? 8 : 0;
  const rlen = Math.min(rest.length, max - 40 - l4);
  const plen = l4 + rlen;
  const b = new Uint8Array(40 + plen);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, ((6 << 28) | (h[1] << 20) | (((h[0] >> 2) & 15) << 16) | (h[6] << 8) | h[7]) >>> 0);
  dv.setUint16(4, plen);
  b[6] = plen ? next : 59;
  b[7] = 2 + (h[2] % 254);
  b.set(a6(`2001:2:0:2::${h[4].toString(16)}`), 8);
  b.set(a6(`2001:2:0:${ipip ? 1 : 3}::${h[5].toString(16)}`), 24);
  if (l4) {
    b.set(h.subarray(8, 12), 40);
    dv.setUint16(44, plen);
  }
  b.set(rest.subarray(0, rlen), 40 + l4);
  if (l4) dv.setUint16(46, l4Sum6(b, 17, plen) || 0xffff);
  return b;
}

function buildRoundtrip(r: Uint8Array): { pkt: Uint8Array; ipip: boolean } {
  const h = new Uint8Array(12);
  h.set(r.subarray(0, 12));
  let rest = r.subarray(Math.min(12, r.length));
  const ipip = (h[0] & 1) === 1;
  if (h[0] & 0x40) return { pkt: buildRoundtrip6(h, rest, ipip), ipip };
  const words = Math.min((h[0] >> 2) & 15, 10);
  const hl = 20 + 4 * words;
  const proto = h[3] >= 0x80 ? h[3] : 17;
  const opts = new Uint8Array(4 * words).fill(1);
  opts.set(rest.subarray(0, 4 * words));
  rest = rest.subarray(Math.min(4 * words, rest.length));
  const max = 1500 - (ipip ? 20 : 50);
  const l4 = proto === 17 ? 8 : 0;
  const plen = Math.min(rest.length, max - hl - l4);
  const total = hl + l4 + plen;
  const b = new Uint8Array(total);
  b[0] = 0x40 | (hl / 4);
  b[1] = h[1];
  b[2] = total >> 8;
  b[3] = total & 255;
  b[4] = h[6];
  b[5] = h[7];
  b[6] = h[0] & 2 ? 0x40 : 0;
  b[8] = 2 + (h[2] % 254);
  b[9] = proto;
  b.set([198, 19, 2, h[4]], 12);
  b.set([198, 19, ipip ? 1 : 3, h[5]], 16);
  b.set(opts, 20);
  const c = inetChecksum(b.subarray(0, hl));
  b[10] = c >> 8;
  b[11] = c & 255;
  if (proto === 17) {
    b.set(h.subarray(8, 12), hl);
    b[hl + 4] = (8 + plen) >> 8;
    b[hl + 5] = (8 + plen) & 255;
  }
  b.set(rest.subarray(0, plen), hl + l4);
  return { pkt: b, ipip };
}

// --- nat: fuzz/harness.c nat_run(), step by step -----------------------------------
const NAT_FLOWS = 16;
const NAT_PORT_MIN = 61000;
const NAT_PORT_MAX = 61011;
const NAT_SEED = 7;
const NAT_T0 = 1000;
const MAX_STEPS = 6;
const W2_OVERLAY = ip("198.19.2.0");
const SNAT_IP = ip("198.19.2.1");
const CLUSTER_IP = ip("198.18.250.10");
const EMPTY_IP = ip("198.18.250.11");
const LOCAL_BE = ip("198.19.2.7");
const REMOTE_BE = ip("198.19.3.7");
const REMOTE_BE2 = ip("198.19.3.8");
const DIRECT_BE = ip("198.19.4.7");
const C_NAT_TRANSLATED = 66;
const C_NAT_ICMP_TRANSLATED = 67;
const NAT_ADVANCE = [0, 1, 11, 31, 61, 121, 601, 432001];
const NAT_ERRS = [[3, 0], [3, 1], [3, 3], [3, 4], [11, 0], [12, 0], [3, 13], [4, 0]];
type Side = "pod" | "vxlan" | "ipip" | "ip6tnl";

function natConfigure(dp: Dataplane): void {
  dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: SNAT_IP, portRange: [NAT_PORT_MIN, NAT_PORT_MAX], seed: NAT_SEED });
  dp.setNow(NAT_T0);
}

/** harness.c nat_worker2(): fuzzWorker2 with NAT on. */
function natWorker2(): Node {
  const n = fuzzWorker2("tun", false); // IPv4 only: IPv6 has no route here (nat66 is the NAT66 target)
  // The harness keeps the module's default hash seed (0): the same here, so flows land alike.
  n.dp.natSetup({ maxFlows: NAT_FLOWS, maxFrontends: 16, maxBackends: 16, hashSeed: new Uint8Array(16) });
  n.dp.setServices([
    { protocol: "tcp", addr: CLUSTER_IP, port: 80, backends: [{ addr: REMOTE_BE, port: 8080 }, { addr: LOCAL_BE, port: 8080 }] },
    { protocol: "tcp", addr: W2.underlay, port: 30080, nodePort: true, backends: [{ addr: REMOTE_BE, port: 8080 }, { addr: LOCAL_BE, port: 8080 }] },
    { protocol: "udp", addr: CLUSTER_IP, port: 53, backends: [{ addr: REMOTE_BE2, port: 5353 }, { addr: DIRECT_BE, port: 5353 }] },
    { protocol: "tcp", addr: EMPTY_IP, port: 80, backends: [] },
  ]);
  natConfigure(n.dp);
  return n;
}

function natReset(dp: Dataplane): void {
  const raw = dp.raw;
  const high = raw.ctHighWater() >>> 0;
  for (let f = high - 1; f >= 0; f--) if (Number(raw.ctFlowPtr(f)) !== 0) raw.ctDelete(f);
  const hand = raw.ctHand() >>> 0;
  if (hand !== 0) raw.ctExpire(0, high - hand);
  check(raw.ctCount() === 0 && raw.ctHand() === 0, "conntrack reset");
  natConfigure(dp);
}

/** Flows that left the table: deleted, expired, early-dropped (ctStat 1, 2, 6). */
const ctGone = (dp: Dataplane) => BigInt(dp.raw.ctStat(1)) + BigInt(dp.raw.ctStat(2)) + BigInt(dp.raw.ctStat(6));
const put16 = (b: Uint8Array, o: number, v: number) => { b[o] = (v >> 8) & 255; b[o + 1] = v & 255; };
const put32 = (b: Uint8Array, o: number, v: number) => { put16(b, o, v >>> 16); put16(b, o + 2, v & 0xffff); };
const ipLen = (p: Uint8Array) => (p.length >= 20 && be16(p, 2) >= 20 && be16(p, 2) <= p.length ? be16(p, 2) : p.length);
const ipHl = (p: Uint8Array) => (p[0] & 15) * 4;
const ipFirst = (p: Uint8Array) => (be16(p, 6) & 0x1fff) === 0;
const ipWhole = (p: Uint8Array) => (be16(p, 6) & 0x3fff) === 0;
const icmpIsError = (t: number) => t === 3 || t === 4 || t === 5 || t === 11 || t === 12;

interface Tuple { src: number; dst: number; sport: number; dport: number; proto: number; ok: boolean }
function tupleOf(p: Uint8Array): Tuple {
  const t = { src: 0, dst: 0, sport: 0, dport: 0, proto: 0, ok: false };
  if (p.length < 20) return t;
  const hl = ipHl(p);
  if (hl < 20 || hl > p.length) return t;
  t.src = be32(p, 12);
  t.dst = be32(p, 16);
  t.proto = p[9];
  if (!ipFirst(p)) return t;
  const n = p.length - hl;
  if ((t.proto === 6 || t.proto === 17) && n >= 4) {
    t.sport = be16(p, hl);
    t.dport = be16(p, hl + 2);
    t.ok = true;
  } else if (t.proto === 1 && n >= 8 && (p[hl] === 0 || p[hl] === 8)) {
    t.sport = be16(p, hl + 4);
    t.ok = true;
  }
  return t;
}

/** TCP/UDP checksum over the pseudo header and `n` bytes of segment at `hl`. */
function l4Sum(p: Uint8Array, hl: number, n: number): number {
  const b = new Uint8Array(12 + n);
  b.set(p.subarray(12, 20));
  b[9] = p[9];
  b[10] = n >> 8;
  b[11] = n & 255;
  b.set(p.subarray(hl, hl + n), 12);
  return inetChecksum(b);
}

function l4CsumState(p: Uint8Array): number {
  const hl = ipHl(p);
  if (p.length < 20 || hl < 20 || hl > p.length || !ipWhole(p)) return -1;
  const n = p.length - hl;
  if (p[9] === 1) return n >= 8 ? +(inetChecksum(p.subarray(hl)) === 0) : -1;
  if (p[9] === 6) return n >= 20 ? +(l4Sum(p, hl, n) === 0) : -1;
  if (p[9] === 17) {
    if (n < 8 || be16(p, hl + 6) === 0) return -1;
    const ul = be16(p, hl + 4);
    if (ul < 8 || ul > n) return -1;
    return +(l4Sum(p, hl, ul) === 0);
  }
  return -1;
}

function fixChecksums(p: Uint8Array): void {
  const hl = ipHl(p);
  if (ipWhole(p)) {
    const n = p.length - hl;
    if (p[9] === 1 && n >= 8) {
      put16(p, hl + 2, 0);
      put16(p, hl + 2, inetChecksum(p.subarray(hl)));
    } else if (p[9] === 6 && n >= 20) {
      put16(p, hl + 16, 0);
      put16(p, hl + 16, l4Sum(p, hl, n));
    } else if (p[9] === 17 && n >= 8 && be16(p, hl + 6) !== 0 && be16(p, hl + 4) >= 8 && be16(p, hl + 4) <= n) {
      put16(p, hl + 6, 0);
      const c = l4Sum(p, hl, be16(p, hl + 4));
      put16(p, hl + 6, c || 0xffff);
    }
  }
  put16(p, 10, 0);
  put16(p, 10, inetChecksum(p.subarray(0, hl)));
}

const baseOk = (b: Uint8Array) => b.length >= 20 && be16(b, 2) === b.length && ipHl(b) >= 20 && ipHl(b) <= b.length;

function buildAnswer(b: Uint8Array, body: Uint8Array): Uint8Array | null {
  if (!baseOk(b)) return null;
  const o = b.slice();
  put32(o, 12, be32(b, 16));
  put32(o, 16, be32(b, 12));
  o[8] = 64;
  const hl = ipHl(o);
  const n = o.length - hl;
  if (ipFirst(o)) {
    if ((o[9] === 6 || o[9] === 17) && n >= 4) {
      o.set(b.subarray(hl + 2, hl + 4), hl);
      o.set(b.subarray(hl, hl + 2), hl + 2);
    }
    if (o[9] === 6 && n >= 14 && body.length >= 1) o[hl + 13] = body[0];
    if (o[9] === 1 && n >= 8 && (o[hl] === 0 || o[hl] === 8)) o[hl] ^= 8;
  }
  fixChecksums(o);
  return o;
}

function buildError(b: Uint8Array, body: Uint8Array): { pkt: Uint8Array; patched: boolean } | null {
  if (!baseOk(b)) return null;
  const [type, code] = NAT_ERRS[body.length >= 1 ? body[0] & 7 : 0];
  const q = Math.min(ipHl(b) + 8 + (body.length >= 2 ? body[1] : 0), b.length);
  const o = new Uint8Array(28 + q);
  o[0] = 0x45;
  put16(o, 2, 28 + q);
  o[8] = 64;
  o[9] = 1;
  put32(o, 12, be32(b, 16));
  put32(o, 16, be32(b, 12));
  o[20] = type;
  o[21] = code;
  if (type === 3 && code === 4) put16(o, 26, 1400);
  o.set(b.subarray(0, q), 28);
  let patched = false;
  for (let i = 2; i < body.length && i - 2 < q; i++) {
    if (body[i]) {
      o[28 + i - 2] ^= body[i];
      patched = true;
    }
  }
  fixChecksums(o);
  return { pkt: o, patched };
}

function varyCopy(p: Uint8Array, j: number): void {
  if (j === 0 || p.length < 20) return;
  const hl = ipHl(p);
  if (hl < 20 || hl > p.length || !ipFirst(p)) return;
  const n = p.length - hl;
  let at: number;
  let c: number;
  if ((p[9] === 6 || p[9] === 17) && n >= 4) {
    at = 0;
    c = p[9] === 6 ? (n >= 18 ? 16 : 0) : n >= 8 && be16(p, hl + 6) !== 0 ? 6 : 0;
  } else if (p[9] === 1 && n >= 8 && (p[hl] === 0 || p[hl] === 8)) {
    at = 4;
    c = 2;
  } else {
    return;
  }
  const old = be16(p, hl + at);
  const nw = (old + j) & 0xffff;
  put16(p, hl + at, nw);
  if (c) {
    let s = (~be16(p, hl + c) & 0xffff) + (~old & 0xffff) + nw;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    let v = ~s & 0xffff;
    if (p[9] === 17 && v === 0) v = 0xffff;
    put16(p, hl + c, v);
  }
}

class Seen {
  addrs: number[] = [];
  ports: number[] = [];
  add(p: Uint8Array, deep: boolean): void {
    if (p.length < 20) return;
    const t = tupleOf(p);
    if (this.addrs.length < 256) this.addrs.push(t.src);
    if (this.addrs.length < 256) this.addrs.push(t.dst);
    if (t.ok) {
      if (this.ports.length < 256) this.ports.push(t.sport);
      if (this.ports.length < 256) this.ports.push(t.dport);
    }
    const hl = ipHl(p);
    if (deep && t.proto === 1 && hl >= 20 && p.length >= hl + 28 && icmpIsError(p[hl]) && ipFirst(p)) this.add(p.subarray(hl + 8), false);
  }
  addrOk(a: number): boolean {
    return [W2.underlay, W2_OVERLAY, SNAT_IP, CLUSTER_IP, EMPTY_IP, LOCAL_BE, REMOTE_BE, REMOTE_BE2, DIRECT_BE].includes(a) || this.addrs.includes(a);
  }
  portOk(p: number): boolean {
    return (p >= NAT_PORT_MIN && p <= NAT_PORT_MAX) || p === 8080 || p === 5353 || this.ports.includes(p);
  }
}

function checkTranslatedTuple(seen: Seen, a: Uint8Array, b: Uint8Array, what: string): void {
  const x = tupleOf(a);
  const y = tupleOf(b);
  check(y.src === x.src || seen.addrOk(y.src), `${what}: source ${x.src.toString(16)} -> ${y.src.toString(16)}, an address nothing told us`);
  check(y.dst === x.dst || seen.addrOk(y.dst), `${what}: destination ${x.dst.toString(16)} -> ${y.dst.toString(16)}, an address nothing told us`);
  if (x.ok && y.ok) {
    check(y.sport === x.sport || seen.portOk(y.sport), `${what}: source port/id ${x.sport} -> ${y.sport}`);
    check(y.dport === x.dport || seen.portOk(y.dport), `${what}: destination port ${x.dport} -> ${y.dport}`);
  }
}

function natField(inp: Uint8Array, i: number): boolean {
  if (i === 10 || i === 11 || (i >= 12 && i < 20)) return true;
  const hl = ipHl(inp);
  if (i < hl || !ipFirst(inp)) return false;
  const k = i - hl;
  const n = inp.length - hl;
  if (inp[9] === 6) return n >= 20 && (k < 4 || k === 16 || k === 17);
  if (inp[9] === 17) return n >= 8 && (k < 4 || k === 6 || k === 7);
  if (inp[9] !== 1 || n < 8) return false;
  const t = inp[hl];
  if (t === 0 || t === 8) return k >= 2 && k < 6;
  if (!icmpIsError(t)) return false;
  if (k === 2 || k === 3) return true;
  if (k < 28) return k >= 18 && k < 28;
  const ehl = (inp[hl + 8] & 15) * 4;
  if (k < 8 + ehl) return false;
  const e = k - 8 - ehl;
  return e < 8 || e === 16 || e === 17;
}

/** What the data path takes off the TTL of a packet NAT's node forwards
 *  (forward.ts, "TTL: one hop per node"): one where the node's hop is its
 *  own, a pod-side packet to the node's underlay address (steered by tc)
 *  leaving by a tunnel or the node's stack, or a NodePort answer leaving the
 *  decap side through the node's stack; minus one (one given back) for a
 *  hairpin, a pod-side packet the kernel forwarded in that NAT translated
 *  back to the device; else none. */
function natTtlDrop(pod: boolean, verdict: number, inRaw: Uint8Array, out: Uint8Array): number {
  if (!pod) return verdict === abi.VERDICT_TX_DIRECT ? 1 : 0;
  const inp = inRaw.subarray(0, ipLen(inRaw));
  if (be32(inp, 16) === W2.underlay) return verdict === abi.VERDICT_TO_DEVICE ? 0 : 1;
  if (verdict !== abi.VERDICT_TO_DEVICE || inp[8] === 255) return 0;
  const translated = out.some((b, i) => i !== 8 && i !== 10 && i !== 11 && b !== inp[i]);
  return translated ? -1 : 0;
}

function checkNatForwarded(seen: Seen, out: Uint8Array, inRaw: Uint8Array, ttlDrop: number, what: string): void {
  const inp = inRaw.subarray(0, ipLen(inRaw));
  check(out.length === inp.length, `${what}: ${out.length} bytes out of ${inp.length}`);
  check(out[8] + ttlDrop === inp[8], `${what}: TTL ${inp[8]} -> ${out[8]}`);
  for (let i = 0; i < out.length; i++) {
    if (i === 8 || out[i] === inp[i]) continue;
    check(natField(inp, i), `${what}: byte ${i} changed, not a NAT field`);
  }
  checkTranslatedTuple(seen, inp, out, what);
  check(l4CsumState(inp) !== 1 || l4CsumState(out) === 1, `${what}: L4 checksum was right and is wrong now`);
  const hl = ipHl(inp);
  if (inp[9] === 17 && ipFirst(inp) && inp.length >= hl + 8 && be16(inp, hl + 6) === 0) check(be16(out, hl + 6) === 0, `${what}: a zero UDP checksum changed`);
  if (inp[9] === 1 && ipFirst(inp) && inp.length >= hl + 28 && icmpIsError(inp[hl])) {
    const qi = inp.subarray(hl + 8);
    const qo = out.subarray(hl + 8);
    const ehl = (qi[0] & 15) * 4;
    if (ehl >= 20 && hl + 8 + ehl <= inp.length && inetChecksum(qi.subarray(0, ehl)) === 0) {
      check(inetChecksum(qo.subarray(0, ehl)) === 0, `${what}: the quoted header's checksum was right and is wrong now`);
    }
    checkTranslatedTuple(seen, qi, qo, "quoted packet");
  }
}

function checkOwnError(p: Uint8Array, inRaw: Uint8Array): void {
  const inp = inRaw.subarray(0, ipLen(inRaw));
  check(be32(p, 16) === be32(inp, 12), "own ICMP error not to the sender");
  check(be32(p, 12) === W2_OVERLAY || be32(p, 12) === be32(inp, 16), "own ICMP error source");
  const q = p.subarray(ipHl(p) + 8);
  const ehl = ipHl(inp);
  check(q.length >= ehl && inetChecksum(q.subarray(0, ehl)) === 0, "own ICMP error: the quoted header's checksum is wrong");
  const x = tupleOf(inp);
  const y = tupleOf(q);
  check(x.src === y.src && x.dst === y.dst && x.proto === y.proto, "own ICMP error quotes other addresses than the sender sent");
  if (x.ok && q.length >= ehl + 8) check(y.ok && x.sport === y.sport && x.dport === y.dport, "own ICMP error quotes other ports than the sender sent");
}

/** The IPv4 packet of a non-drop output, and which way answers to it come. */
function outputIp(dp: Dataplane, slot: number): { ip: Uint8Array; side: Side } {
  const out = dp.readPacket(slot);
  if (dp.result(slot).verdict !== abi.VERDICT_TX_UNDERLAY) return { ip: out, side: "pod" };
  return out[9] === 17 ? { ip: out.subarray(50), side: "vxlan" } : { ip: out.subarray(20), side: "ipip" };
}

function checkNatPacket(node: Node, slot: number, inp: Uint8Array, side: Side, seen: Seen): void {
  const { dp } = node;
  const r = dp.result(slot);
  check(r.verdict < abi.VERDICT_COUNT, `verdict ${r.verdict} out of range`);
  check(r.reason < abi.REASON_COUNT, `reason ${r.reason} out of range`);
  const pod = side === "pod";
  const tl = ipLen(inp);
  if (pod && tl >= 20 && ipHl(inp) >= 20 && ipHl(inp) <= tl && ipFirst(inp) && (inp[9] === 6 || inp[9] === 17) && tl - ipHl(inp) < (inp[9] === 6 ? 20 : 8)) {
    // Never translated: dropped, or (routed traffic, left to the router as
    // with NAT off) forwarded with its addresses unchanged, never to the node
    // or the SNAT address.
    check(r.reason !== abi.R_CT_INVALID, "a truncated L4 header got reason ct_invalid");
    if (r.verdict === abi.VERDICT_TX_UNDERLAY || r.verdict === abi.VERDICT_TX_DIRECT || r.verdict === abi.VERDICT_TO_DEVICE) {
      const o = outputIp(dp, slot).ip;
      const a32 = (b: Uint8Array, at: number) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
      check(o.length >= 20 && a32(o, 12) === a32(inp, 12) && a32(o, 16) === a32(inp, 16) && a32(inp, 16) !== SNAT_IP && a32(inp, 16) !== W2.underlay,
        "a truncated L4 header was forwarded translated or to a NAT address");
    }
  }
  if (r.verdict === abi.VERDICT_DROP) {
    check(r.reason !== 0, "a drop without a reason");
    return;
  }
  check(r.off + r.len <= dp.slotSize, `verdict ${r.verdict}: off ${r.off} + len ${r.len} beyond the slot`);
  check(r.len > 0, "an empty packet");
  const at = dp.slotPtr(slot) + r.off;
  const out = dp.readPacket(slot);
  switch (r.verdict) {
    case abi.VERDICT_TX_UNDERLAY: {
      check(pod, "TX_UNDERLAY from a decap path");
      check(r.reason === 0, "TX_UNDERLAY with a reason");
      checkIpv4(dp, at, r.len, "TX_UNDERLAY outer");
      check((out[0] & 15) === 5 && be32(out, 12) === W2.underlay && be32(out, 16) === r.addr >>> 0, "TX_UNDERLAY outer header");
      const o = out[9] === 17 ? 50 : 20;
      if (o === 50) {
        check(be16(out, 24) === r.len - 20 && be16(out, 22) === 4789 && be16(out, 26) === 0, "VXLAN UDP header");
        check(be16(out, 20) >= SPORT_MIN && be16(out, 20) <= SPORT_MAX, "UDP source port");
        check(be32(out, 28) === 0x08000000 && be32(out, 32) === 100 << 8, "VXLAN header");
        check(be48(out, 42) === W2.mac && be16(out, 48) === 0x0800, "inner Ethernet");
      } else {
        check(out[9] === 4, `outer protocol ${out[9]}`);
      }
      checkIpv4(dp, at + o, r.len - o, "TX_UNDERLAY inner");
      check(out[1] === out[o + 1], "outer TOS != inner TOS");
      check((be16(out, 6) & 0xbfff) === 0 && (be16(out, 6) & 0x4000) === (be16(out, o + 6) & 0x4000), "outer flags");
      checkNatForwarded(seen, out.subarray(o), inp, natTtlDrop(pod, r.verdict, inp, out.subarray(o)), "TX_UNDERLAY inner");
      break;
    }
    case abi.VERDICT_TX_DIRECT:
      checkIpv4(dp, at, r.len, "TX_DIRECT");
      if (r.reason !== 0) {
        check(pod, "an ICMP error from a decap path");
        checkIcmpError(dp, at, out, "TX_DIRECT (ICMP error)");
        check(r.addr >>> 0 === be32(out, 16), "TX_DIRECT ICMP error next hop");
        checkOwnError(out, inp);
        break;
      }
      check((r.addr >>> 0 === W4.underlay && r.peer === 2) || (r.addr >>> 0 === be32(out, 16) && be32(out, 12) === W2.underlay), "TX_DIRECT next hop");
      checkNatForwarded(seen, out, inp, natTtlDrop(pod, r.verdict, inp, out), "TX_DIRECT");
      break;
    case abi.VERDICT_TO_DEVICE:
      check(r.reason === 0, "TO_DEVICE with a reason");
      checkIpv4(dp, at, r.len, "TO_DEVICE");
      checkNatForwarded(seen, out, inp, natTtlDrop(pod, r.verdict, inp, out), "TO_DEVICE");
      break;
    case abi.VERDICT_REPLY:
      check(pod, "REPLY from a decap path");
      check(r.reason !== 0, "ICMP error without a reason");
      checkIcmpError(dp, at, out, "REPLY");
      checkOwnError(out, inp);
      break;
  }
}

function checkIcmpError(dp: Dataplane, at: number, out: Uint8Array, what: string): void {
  checkIpv4(dp, at, out.length, what);
  check(out.length <= 576, `${what}: ICMP error of ${out.length} bytes`);
  check(out[9] === 1, `${what}: protocol`);
  const hl = ipHl(out);
  check(out.length >= hl + 28, `${what}: short ICMP error`);
  check(inetChecksum(out.subarray(hl)) === 0, `${what}: bad ICMP checksum`);
  check(out[hl] === 3 || out[hl] === 11, `${what}: ICMP type ${out[hl]}`);
}

/** `tracked`: copy 0's flow was still in the table after its step (a later
 *  copy of the same batch may have early-dropped it to make room). */
interface NatStep { inp: Uint8Array; out: Uint8Array | null; verdict: number; reason: number; side: Side; gone: bigint; tracked: boolean }

function replayNat(node: Node, data: Uint8Array): void {
  const { dp } = node;
  natReset(dp);
  const seen = new Seen();
  const steps: NatStep[] = [];
  const ctrl = data[0];
  let now = NAT_T0;
  for (const s of split(data, MAX_STEPS)) {
    if (s.length < 2) continue;
    const kind = s[0] & 3;
    const copies = 1 + ((s[1] >> 4) & 3);
    const body = s.subarray(2);
    now += NAT_ADVANCE[s[1] & 7];
    dp.setNow(now);
    if (s[1] & 8) dp.ctExpire(now, NAT_FLOWS);
    let ipPkt: Uint8Array;
    let side: Side;
    let patched = false;
    let ref: NatStep | null = null;
    if (kind <= 1) {
      if (body.length > dp.slotSize) continue;
      ipPkt = body.slice();
      side = kind === 0 ? "pod" : "vxlan";
    } else {
      if (steps.length === 0) continue;
      ref = steps[((s[0] >> 2) & 7) % steps.length];
      const b = ref.out ?? ref.inp;
      side = ref.out ? ref.side : "pod";
      if (kind === 2) {
        const a = buildAnswer(b, body);
        if (!a) continue;
        ipPkt = a;
      } else {
        const e = buildError(b, body);
        if (!e) continue;
        ipPkt = e.pkt;
        patched = e.patched;
      }
    }
    let hdr = new Uint8Array(0);
    let addr = 0;
    if (side === "vxlan") {
      hdr = Uint8Array.from([0x08, 0, 0, 0, 0, 0, 100, 0, 0x0e, 0, 0, 0, 0x02, 0, 0x0e, 0, 0, 0, 0x03, 0, 0x08, 0]);
      addr = W3.underlay;
    } else if (side === "ipip") {
      hdr = new Uint8Array(20);
      hdr[0] = 0x45;
      put16(hdr, 2, 20 + ipPkt.length);
      hdr[8] = 64;
      hdr[9] = 4;
      put32(hdr, 12, W1.underlay);
      put32(hdr, 16, W2.underlay);
      put16(hdr, 10, inetChecksum(hdr));
    }
    const cin: Uint8Array[] = [];
    const pkts: Pkt[] = [];
    for (let j = 0; j < copies; j++) {
      const c = ipPkt.slice();
      if (kind <= 1) varyCopy(c, j);
      const bytes = new Uint8Array(hdr.length + c.length);
      bytes.set(hdr);
      bytes.set(c, hdr.length);
      if (bytes.length > dp.slotSize - MIN_OFF) break;
      cin.push(c);
      pkts.push({ bytes, off: place(ctrl, bytes.length, dp.slotSize), addr, tos: 0 });
      seen.add(c.subarray(0, ipLen(c)), true);
    }
    if (pkts.length < copies) continue;
    const npk = pkts.length;
    const tr0 = dp.counter(C_NAT_TRANSLATED);
    const icmp0 = dp.counter(C_NAT_ICMP_TRANSLATED);
    const { n, before } = loadBatch(dp, pkts);
    let rxc = abi.C_RX_POD_PKTS;
    if (side === "pod") dp.processPod(n);
    else if (side === "vxlan") {
      dp.processVxlan(n);
      rxc = abi.C_RX_VXLAN_PKTS;
    } else {
      dp.processIpip(n);
      rxc = abi.C_RX_IPIP_PKTS;
    }
    for (let i = 1; i < n; i += 2) {
      const r = dp.result(i);
      check(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET, `guard record ${i} not dropped as R_BAD_OFFSET`);
      check(dp.u8.subarray(dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize).every((b) => b === 0xa5), `guard slot ${i} was written`);
    }
    for (let j = 0; j < npk; j++) checkNatPacket(node, 2 * j, cin[j], side, seen);
    checkCounters(dp, n, before, rxc);
    const live = dp.raw.ctCount() >>> 0;
    check(live <= NAT_FLOWS && dp.raw.ctCapacity() === NAT_FLOWS, `conntrack holds ${live} flows`);
    check(BigInt(live) === BigInt(dp.raw.ctStat(0)) - ctGone(dp), "conntrack count != inserts - deletes - expired - early drops");
    const dtr = dp.counter(C_NAT_TRANSLATED) - tr0;
    const dicmp = dp.counter(C_NAT_ICMP_TRANSLATED) - icmp0;
    check(dtr <= BigInt(npk) && dicmp <= BigInt(npk), "NAT counters moved by more than the packets");
    if (ref && !patched && ref.out && ref.reason === 0 && ref.tracked && ctGone(dp) === ref.gone) {
      const ti = tupleOf(ref.inp);
      const to = tupleOf(ref.out);
      const translated = ti.ok && to.ok && ti.proto === to.proto && (ti.src !== to.src || ti.dst !== to.dst || ti.sport !== to.sport || ti.dport !== to.dport);
      for (let j = 0; translated && j < npk; j++) {
        const r = dp.result(2 * j);
        if (r.verdict === abi.VERDICT_DROP || r.reason !== 0) continue;
        const o = outputIp(dp, 2 * j).ip;
        if (kind === 2) {
          const t = tupleOf(o);
          const es = ti.proto === 1 ? ti.sport : ti.dport;
          const ed = ti.proto === 1 ? ti.dport : ti.sport;
          check(t.ok && t.src === ti.dst && t.dst === ti.src && t.sport === es && t.dport === ed, "an answer not translated back exactly");
        } else {
          const hl = ipHl(o);
          check(o[9] === 1 && o.length >= hl + 28, "an ICMP error came out as something else");
          const t = tupleOf(o.subarray(hl + 8));
          check(t.ok && t.src === ti.src && t.dst === ti.dst && t.sport === ti.sport && t.dport === ti.dport, "an ICMP error does not quote what the sender sent");
          check(be32(o, 12) === t.dst && be32(o, 16) === t.src, "an ICMP error's addresses disagree with what it quotes");
        }
      }
      if (translated) {
        if (kind === 2) check(dtr === BigInt(npk), `answers: ${dtr} of ${npk} translated`);
        else check(dicmp === BigInt(npk), `ICMP errors: ${dicmp} of ${npk} translated`);
      }
    }
    const r0 = dp.result(0);
    let out: Uint8Array | null = null;
    let outSide: Side = "pod";
    if (r0.verdict !== abi.VERDICT_DROP) {
      const o = outputIp(dp, 0);
      out = o.ip.slice();
      outSide = o.side;
    }
    const t0 = tupleOf(cin[0].slice(0, ipLen(cin[0])));
    const tracked = t0.ok && (dp.raw.ctLookup(t0.proto, t0.src, t0.dst, t0.sport, t0.proto === 1 ? 0 : t0.dport) as number) >= 0;
    steps.push({ inp: cin[0].slice(0, ipLen(cin[0])), out, verdict: r0.verdict, reason: r0.reason, side: outSide, gone: ctGone(dp), tracked });
  }
}

// --- nat66: fuzz/harness.c nat66_run(), step by step --------------------------------
const NAT66_NAMES = 16;
const N6_NONE = 0xffffffff;
const CT_PROTO_V6 = 0x80;
const NODE6 = a6("2001:2:ff::2");
const SNAT6 = a6("2001:2:0:2::fffe");
const CLUSTER6 = a6("2001:2:0:250::10");
const EMPTY6 = a6("2001:2:0:250::11");
const LOCAL_BE6 = a6("2001:2:0:2::7");
const REMOTE_BE6 = a6("2001:2:0:3::7");
const SIT_BE6 = a6("2001:2:0:1::7");
const EXT_BE6 = a6("2001:2:ff::53");
const NAT66_ERRS = [[1, 0], [1, 1], [1, 3], [1, 4], [1, 5], [2, 0], [3, 0], [4, 0]];
const NAT66_SERVICES: ServiceFrontend6[] = [
  { protocol: "tcp", addr: "2001:2:0:250::10", port: 80, backends: [{ addr: "2001:2:0:3::7", port: 8080 }] },
  { protocol: "udp", addr: "2001:2:0:250::10", port: 53, backends: [{ addr: "2001:2:0:2::7", port: 5353 }] },
  { protocol: "tcp", addr: "2001:2:ff::2", port: 30080, nodePort: true, backends: [{ addr: "2001:2:0:3::7", port: 8080 }, { addr: "2001:2:0:2::7", port: 8080 }] },
  { protocol: "tcp", addr: "2001:2:0:250::10", port: 443, backends: [{ addr: "2001:2:0:1::7", port: 8443 }] },
  { protocol: "udp", addr: "2001:2:ff::2", port: 30053, nodePort: true, backends: [{ addr: "2001:2:ff::53", port: 53 }] },
  { protocol: "tcp", addr: "2001:2:0:250::11", port: 80, backends: [] },
];
const eq6 = (a: Uint8Array, ao: number, b: Uint8Array) => a6Equal(a, ao, b, 0);

function nat66Configure(dp: Dataplane): void {
  dp.natConfigure({
    enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: SNAT_IP, portRange: [NAT_PORT_MIN, NAT_PORT_MAX], seed: NAT_SEED,
    ipv6: { masquerade: true, nodeAddress: "2001:2:ff::2", snatAddress: "2001:2:0:2::fffe" },
  });
  dp.setNow(NAT_T0);
}

/** The references the configuration pins (harness.c g_pins): natConfigure's
 *  node and SNAT addresses, then each backend and frontend address per use. */
const nat66Pins = new WeakMap<Node, Map<number, number>>();

/** harness.c nat66_worker2(): fuzzWorker2 (IPv6 routes) with NAT66 on. */
function nat66Worker2(): Node {
  const n = fuzzWorker2("tun", true, false); // no routes to peer 3: the NAT66 checks read IPv4 outer headers
  n.dp.natSetup({ maxFlows: NAT_FLOWS, names6: NAT66_NAMES, maxFrontends: 16, maxBackends: 16, hashSeed: new Uint8Array(16) });
  nat66Configure(n.dp);
  n.dp.setServices([], NAT66_SERVICES);
  const pins = new Map<number, number>();
  const pin = (a: string) => {
    const x = a6big(a);
    const h = n.dp.raw.ct6Pin(BigInt.asUintN(64, x >> 64n), BigInt.asUintN(64, x)) >>> 0;
    n.dp.raw.ct6Unpin(h); // only asks which handle: the pins are the Dataplane's
    pins.set(h, (pins.get(h) ?? 0) + 1);
  };
  pin("2001:2:ff::2");
  pin("2001:2:0:2::fffe");
  for (const f of NAT66_SERVICES) {
    for (const b of f.backends) pin(b.addr);
    pin(f.addr);
  }
  nat66Pins.set(n, pins);
  return n;
}

/** harness.c check_names6: every handle a pin or a live IPv6 flow holds has
 *  exactly that many references (names6.ts entry: address, then refs u32)
 *  and its own non-zero address; the table holds exactly those. */
function checkNames6(node: Node, when: string): void {
  const { dp } = node;
  const raw = dp.raw;
  const cap = raw.ct6NameCapacity() >>> 0;
  const live = raw.ct6NameCount() >>> 0;
  check(cap === NAT66_NAMES && live <= cap, `${when}: ${live} IPv6 names of capacity ${cap}`);
  const want = new Array<number>(cap).fill(0);
  for (const [h, k] of nat66Pins.get(node)!) want[h] += k;
  const u8 = dp.u8;
  const dv = new DataView(u8.buffer);
  const high = raw.ctHighWater() >>> 0;
  for (let f = 0; f < high; f++) {
    const fp = Number(raw.ctFlowPtr(f));
    if (fp === 0 || !(u8[fp + 24] & CT_PROTO_V6)) continue;
    for (const at of [0, 4, 12, 16]) {
      const h = dv.getUint32(fp + at, true);
      check(h < cap, `${when}: flow ${f} holds IPv6 name handle ${h}`);
      want[h]++;
    }
  }
  let held = 0;
  const addrs = new Set<string>();
  for (let h = 0; h < cap; h++) {
    const e = Number(raw.ct6Addr(h));
    const refs = dv.getUint32(e + 16, true);
    check(refs === want[h], `${when}: IPv6 name ${h} has ${refs} references, the pins and flows hold ${want[h]}`);
    if (want[h] === 0) continue;
    held++;
    check(!a6Zero(u8, e), `${when}: IPv6 name ${h} is held but its entry is free`);
    const key = Buffer.from(u8.subarray(e, e + 16)).toString("hex");
    check(!addrs.has(key), `${when}: two IPv6 names hold the same address`);
    addrs.add(key);
  }
  check(held === live, `${when}: ${live} IPv6 names in the table, ${held} held by pins and flows`);
}

/** harness.c nat66_reset: natReset, then only the pinned names remain, and
 *  the free ones are put in a fresh table's order (scratch pins, given back
 *  from the highest handle down). */
function nat66Reset(node: Node): void {
  const { dp } = node;
  const raw = dp.raw;
  const high = raw.ctHighWater() >>> 0;
  for (let f = high - 1; f >= 0; f--) if (Number(raw.ctFlowPtr(f)) !== 0) raw.ctDelete(f);
  const hand = raw.ctHand() >>> 0;
  if (hand !== 0) raw.ctExpire(0, high - hand);
  check(raw.ctCount() === 0 && raw.ctHand() === 0, "conntrack reset");
  nat66Configure(dp);
  const pinned = nat66Pins.get(node)!.size;
  check(raw.ct6NameCount() >>> 0 === pinned, `after every flow was deleted ${raw.ct6NameCount()} IPv6 names remain, ${pinned} are pinned`);
  checkNames6(node, "reset");
  const scratch: number[] = [];
  for (let i = 1; i <= NAT66_NAMES; i++) {
    const h = raw.ct6Pin(0xfd00000000000000n, BigInt(i)) >>> 0;
    if (h === N6_NONE) break;
    scratch.push(h);
  }
  check(scratch.length === NAT66_NAMES - pinned, `the IPv6 names took ${scratch.length} more addresses, ${NAT66_NAMES - pinned} are free`);
  for (const h of scratch.sort((a, b) => b - a)) raw.ct6Unpin(h);
  check(raw.ct6NameCount() >>> 0 === pinned, "scratch names not given back");
}

interface Tuple6 { src: Uint8Array; dst: Uint8Array; sport: number; dport: number; proto: number; ok: boolean }
function tuple6Of(p: Uint8Array): Tuple6 {
  const t: Tuple6 = { src: new Uint8Array(16), dst: new Uint8Array(16), sport: 0, dport: 0, proto: 0, ok: false };
  if (p.length < 40 || p[0] >> 4 !== 6) return t;
  t.src = p.slice(8, 24);
  t.dst = p.slice(24, 40);
  t.proto = p[6];
  const n = Math.min(p.length - 40, be16(p, 4));
  if ((t.proto === 6 || t.proto === 17) && n >= 4) {
    t.sport = be16(p, 40);
    t.dport = be16(p, 42);
    t.ok = true;
  } else if (t.proto === 58 && n >= 8 && (p[40] === 128 || p[40] === 129)) {
    t.sport = be16(p, 44);
    t.ok = true;
  }
  return t;
}
const icmp6ErrorType = (t: number) => t >= 1 && t <= 4;
const natPort = (p: number) => p >= NAT_PORT_MIN && p <= NAT_PORT_MAX;

/** harness.c l4_state6: 1 valid, 0 invalid, -1 cannot tell, for a whole IPv6 packet. */
function l4State6(p: Uint8Array): number {
  if (p.length < 40 || 40 + be16(p, 4) !== p.length) return -1;
  const n = p.length - 40;
  if (p[6] === 6) return n >= 20 ? +(l4Sum6(p, 6, n) === 0) : -1;
  if (p[6] === 17) return n >= 8 && be16(p, 46) !== 0 && be16(p, 44) === n ? +(l4Sum6(p, 17, n) === 0) : -1;
  if (p[6] === 58) return n >= 8 ? +(l4Sum6(p, 58, n) === 0) : -1;
  return -1;
}

function fixL4Sum6(p: Uint8Array): void {
  const n = p.length - 40;
  if (p[6] === 6 && n >= 20) {
    put16(p, 56, 0);
    put16(p, 56, l4Sum6(p, 6, n));
  } else if (p[6] === 17 && n >= 8 && be16(p, 46) !== 0) {
    put16(p, 46, 0);
    put16(p, 46, l4Sum6(p, 17, n) || 0xffff);
  } else if (p[6] === 58 && n >= 4) {
    put16(p, 42, 0);
    put16(p, 42, l4Sum6(p, 58, n));
  }
}

function buildAnswer6(b: Uint8Array, body: Uint8Array): Uint8Array | null {
  if (ip6Len(b) !== b.length) return null;
  const o = b.slice();
  o.set(b.subarray(24, 40), 8);
  o.set(b.subarray(8, 24), 24);
  o[7] = 64;
  const n = o.length - 40;
  if ((o[6] === 6 || o[6] === 17) && n >= 4) {
    o.set(b.subarray(42, 44), 40);
    o.set(b.subarray(40, 42), 42);
  }
  if (o[6] === 6 && n >= 14 && body.length >= 1) o[53] = body[0];
  if (o[6] === 58 && n >= 8 && (o[40] === 128 || o[40] === 129)) o[40] ^= 1;
  fixL4Sum6(o);
  return o;
}

function buildError6(b: Uint8Array, body: Uint8Array): { pkt: Uint8Array; patched: boolean } | null {
  if (ip6Len(b) !== b.length) return null;
  const [type, code] = NAT66_ERRS[body.length >= 1 ? body[0] & 7 : 0];
  const q = Math.min(48 + (body.length >= 2 ? body[1] : 0), b.length, 1280 - 48);
  const o = new Uint8Array(48 + q);
  o[0] = 0x60;
  put16(o, 4, 8 + q);
  o[6] = 58;
  o[7] = 64;
  o.set(b.subarray(24, 40), 8);
  o.set(b.subarray(8, 24), 24);
  o[40] = type;
  o[41] = code;
  if (type === 2) put32(o, 44, 1280);
  o.set(b.subarray(0, q), 48);
  let patched = false;
  for (let i = 2; i < body.length && i - 2 < q; i++) {
    if (body[i]) {
      o[48 + i - 2] ^= body[i];
      patched = true;
    }
  }
  fixL4Sum6(o);
  return { pkt: o, patched };
}

function varyCopy6(p: Uint8Array, j: number): void {
  if (j === 0 || p.length < 40 || p[0] >> 4 !== 6) return;
  const n = p.length - 40;
  let at: number;
  let c: number;
  if ((p[6] === 6 || p[6] === 17) && n >= 4) {
    at = 0;
    c = p[6] === 6 ? (n >= 18 ? 16 : 0) : n >= 8 && be16(p, 46) !== 0 ? 6 : 0;
  } else if (p[6] === 58 && n >= 8 && (p[40] === 128 || p[40] === 129)) {
    at = 4;
    c = 2;
  } else {
    return;
  }
  const old = be16(p, 40 + at);
  const nw = (old + j) & 0xffff;
  put16(p, 40 + at, nw);
  if (c) {
    let s = (~be16(p, 40 + c) & 0xffff) + (~old & 0xffff) + nw;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    let v = ~s & 0xffff;
    if (p[6] === 17 && v === 0) v = 0xffff;
    put16(p, 40 + c, v);
  }
}

class Seen6 {
  addrs: Uint8Array[] = [];
  ports: number[] = [];
  add(p: Uint8Array, deep: boolean): void {
    if (p.length < 40 || p[0] >> 4 !== 6) return;
    const t = tuple6Of(p);
    if (this.addrs.length < 256) this.addrs.push(t.src);
    if (this.addrs.length < 256) this.addrs.push(t.dst);
    if (t.ok) {
      if (this.ports.length < 256) this.ports.push(t.sport);
      if (this.ports.length < 256) this.ports.push(t.dport);
    }
    if (deep && p[6] === 58 && p.length >= 88 && icmp6ErrorType(p[40])) this.add(p.subarray(48), false);
  }
  addrOk(a: Uint8Array): boolean {
    return [NODE6, SNAT6, CLUSTER6, EMPTY6, LOCAL_BE6, REMOTE_BE6, SIT_BE6, EXT_BE6, ...this.addrs].some((x) => bytesEqual(x, a));
  }
  portOk(p: number): boolean {
    return natPort(p) || [8080, 5353, 8443, 53].includes(p) || this.ports.includes(p);
  }
}

function checkTranslatedTuple6(seen: Seen6, a: Uint8Array, b: Uint8Array, what: string): void {
  const x = tuple6Of(a);
  const y = tuple6Of(b);
  check(bytesEqual(y.src, x.src) || seen.addrOk(y.src), `${what}: IPv6 source changed to an address nothing told us`);
  check(bytesEqual(y.dst, x.dst) || seen.addrOk(y.dst), `${what}: IPv6 destination changed to an address nothing told us`);
  if (x.ok && y.ok) {
    check(y.sport === x.sport || seen.portOk(y.sport), `${what}: source port/id ${x.sport} -> ${y.sport}`);
    check(y.dport === x.dport || seen.portOk(y.dport), `${what}: destination port ${x.dport} -> ${y.dport}`);
  }
}

/** harness.c nat_field6: byte positions NAT66 may change (besides the hop limit). */
function natField6(inp: Uint8Array, i: number): boolean {
  if (i >= 8 && i < 40) return true;
  if (i < 40) return false;
  const k = i - 40;
  const n = inp.length - 40;
  if (inp[6] === 6) return n >= 20 && (k < 4 || k === 16 || k === 17);
  if (inp[6] === 17) return n >= 8 && (k < 4 || k === 6 || k === 7);
  if (inp[6] !== 58 || n < 8) return false;
  const t = inp[40];
  if (t === 128 || t === 129) return k >= 2 && k < 6;
  if (!icmp6ErrorType(t)) return false;
  if (k === 2 || k === 3) return true;
  if (k < 8) return false;
  const e = k - 8;
  if (e < 40) return e >= 8;
  const q = e - 40;
  switch (inp[54]) {
    case 6: return q < 4 || q === 16 || q === 17;
    case 17: return q < 4 || q === 6 || q === 7;
    case 58: return q >= 2 && q < 6;
  }
  return false;
}

/** harness.c nat66_hop_drop. */
function nat66HopDrop(pod: boolean, verdict: number, inp: Uint8Array, out: Uint8Array): number {
  if (!pod) return verdict === abi.VERDICT_TX_DIRECT ? 1 : 0;
  if (eq6(inp, 24, NODE6)) return verdict === abi.VERDICT_TO_DEVICE ? 0 : 1;
  if (verdict !== abi.VERDICT_TO_DEVICE || inp[7] === 255) return 0;
  const translated = out.some((b, i) => i < inp.length && i !== 7 && b !== inp[i]);
  return translated ? -1 : 0;
}

/** harness.c check_nat66_forwarded. */
function checkNat66Forwarded(seen: Seen6, out: Uint8Array, inRaw: Uint8Array, hopDrop: number, what: string): void {
  const il = ip6Len(inRaw);
  check(il !== 0, `${what}: forwarded an input that holds no whole IPv6 packet`);
  const inp = inRaw.subarray(0, il);
  check(out.length === il, `${what}: ${out.length} bytes out of ${il}`);
  checkIpv6(out, what);
  check(out[7] + hopDrop === inp[7], `${what}: hop limit ${inp[7]} -> ${out[7]}`);
  for (let i = 0; i < out.length; i++) {
    if (i === 7 || out[i] === inp[i]) continue;
    check(natField6(inp, i), `${what}: byte ${i} changed, not a NAT66 field`);
  }
  checkTranslatedTuple6(seen, inp, out, what);
  check(l4State6(inp) !== 1 || l4State6(out) === 1, `${what}: L4 checksum (IPv6 pseudo header) was right and is wrong now`);
  if (inp[6] === 17 && il >= 48) check((be16(inp, 46) === 0) === (be16(out, 46) === 0), `${what}: a UDP checksum became zero or stopped being zero`);
  if (inp[6] === 58 && il >= 88 && icmp6ErrorType(inp[40])) {
    const ql = ip6Len(inp.subarray(48));
    if (ql !== 0 && l4State6(inp.subarray(48, 48 + ql)) === 1) {
      check(l4State6(out.subarray(48, 48 + ql)) === 1, `${what}: the quoted packet's L4 checksum was right and is wrong now`);
    }
    checkTranslatedTuple6(seen, inp.subarray(48), out.subarray(48), "quoted packet");
  }
  const x = tuple6Of(inp);
  const y = tuple6Of(out);
  if (x.ok && y.ok && !bytesEqual(x.src, y.src)) {
    if (bytesEqual(y.src, SNAT6)) check(natPort(y.sport), `${what}: source rewritten to the SNAT address with port ${y.sport}, not from the NAT range`);
    if (bytesEqual(y.src, NODE6) && bytesEqual(x.dst, y.dst) && !bytesEqual(x.dst, SNAT6)) {
      check(natPort(y.sport), `${what}: masqueraded with source port/id ${y.sport}, not from the NAT range`);
    }
  }
}

/** harness.c check_own_error6. */
function checkOwnError6(info: NodeInfo, p: Uint8Array, inRaw: Uint8Array, reason: number, what: string): void {
  checkIpv6(p, what);
  check(p.length >= 48 && p.length <= 1280 && p[6] === 58, `${what}: next header ${p[6]}, ${p.length} bytes`);
  check(l4Sum6(p, 58, p.length - 40) === 0, `${what}: bad ICMPv6 checksum`);
  const il = ip6Len(inRaw);
  check(il !== 0, `${what}: about an input that holds no whole IPv6 packet`);
  const inp = inRaw.subarray(0, il);
  check(a6Equal(p, 24, inp, 8), `${what}: not sent to the sender`);
  check(a6Equal(p, 8, info.overlay6, 0) || a6Equal(p, 8, inp, 24), `${what}: from neither our overlay address nor the address the sender used`);
  const q = p.length - 48;
  check(q === Math.min(il, 1232), `${what}: quotes ${q} bytes of a ${il}-byte packet`);
  const cf = inp[6] === 6 ? 56 : inp[6] === 17 ? 46 : inp[6] === 58 ? 42 : 0;
  const hasCf = cf !== 0 && cf + 2 <= q;
  for (let i = 0; i < q; i++) {
    if (hasCf && (i === cf || i === cf + 1)) continue;
    check(p[48 + i] === inp[i], `${what}: quoted byte ${i} is not what the sender sent`);
  }
  if (hasCf && l4State6(inp) === 1) check(be16(p, 48 + cf) === be16(inp, cf), `${what}: quoted L4 checksum is not the one the sender sent`);
  const type = p[40];
  const code = p[41];
  if (reason === abi.R_NO_ROUTE) {
    check(type === 1 && code === 0 && route6Lookup(info, inp, 24) < 0, `${what}: no route, but type ${type} code ${code}, or the destination routes`);
  } else if (reason === abi.R_TOO_BIG) {
    const mtu = be32(p, 44);
    check(type === 2 && code === 0 && [MTU, MTU - 50, MTU - 20].includes(mtu) && il > mtu,
      `${what}: packet too big type ${type} code ${code} MTU ${mtu} for ${il} bytes`);
  } else if (reason === abi.R_SVC_NO_BACKEND) {
    check(type === 1 && code === 4 && eq6(inp, 24, EMPTY6), `${what}: a service without backends, type ${type} code ${code}`);
  } else {
    check(false, `${what}: an ICMPv6 error with reason ${reason}`);
  }
}

/** The IPv6 packet of a non-drop output, and which way answers to it come. */
function outputIp6(dp: Dataplane, slot: number): { ip: Uint8Array; side: Side } {
  const out = dp.readPacket(slot);
  if (dp.result(slot).verdict !== abi.VERDICT_TX_UNDERLAY) return { ip: out, side: "pod" };
  return out[9] === 17 ? { ip: out.subarray(50), side: "vxlan" } : { ip: out.subarray(20), side: "ipip" };
}

function checkNat66Packet(node: Node, slot: number, inp: Uint8Array, side: Side, seen: Seen6): void {
  const { dp } = node;
  const info = infoOf(node);
  const r = dp.result(slot);
  check(r.verdict < abi.VERDICT_COUNT, `verdict ${r.verdict} out of range`);
  check(r.reason < abi.REASON_COUNT, `reason ${r.reason} out of range`);
  const pod = side === "pod";
  const il = ip6Len(inp);
  if (pod && il !== 0 && (inp[6] === 6 || inp[6] === 17) && il - 40 < (inp[6] === 6 ? 20 : 8)) {
    check(r.reason !== abi.R_CT_INVALID, "a truncated L4 header got reason ct_invalid");
    if (r.verdict === abi.VERDICT_TX_UNDERLAY || r.verdict === abi.VERDICT_TX_DIRECT || r.verdict === abi.VERDICT_TO_DEVICE) {
      const o = outputIp6(dp, slot).ip;
      check(o.length >= 40 && bytesEqual(o.subarray(8, 40), inp.subarray(8, 40)) && !eq6(inp, 24, NODE6) && !eq6(inp, 24, SNAT6),
        "a truncated L4 header was forwarded translated or to a NAT address");
    }
  }
  if (r.verdict === abi.VERDICT_DROP) {
    check(r.reason !== 0, "a drop without a reason");
    return;
  }
  check(r.off + r.len <= dp.slotSize, `verdict ${r.verdict}: off ${r.off} + len ${r.len} beyond the slot`);
  check(r.len > 0, "an empty packet");
  const at = dp.slotPtr(slot) + r.off;
  const out = dp.readPacket(slot);
  switch (r.verdict) {
    case abi.VERDICT_TX_UNDERLAY: {
      check(pod, "TX_UNDERLAY from a decap path");
      check(r.reason === 0, "TX_UNDERLAY with a reason");
      checkIpv4(dp, at, r.len, "TX_UNDERLAY outer");
      check((out[0] & 15) === 5 && be32(out, 12) === W2.underlay && be32(out, 16) === r.addr >>> 0, "TX_UNDERLAY outer header");
      check(r.peer < info.peers.length, `TX_UNDERLAY: peer ${r.peer}`);
      const vxlan = out[9] === 17;
      if (vxlan) {
        check(be16(out, 24) === r.len - 20 && be16(out, 22) === 4789 && be16(out, 26) === 0, "VXLAN UDP header");
        check(be16(out, 20) >= SPORT_MIN && be16(out, 20) <= SPORT_MAX, "UDP source port");
        check(be32(out, 28) === 0x08000000 && be32(out, 32) === 100 << 8, "VXLAN header");
        check(be48(out, 42) === W2.mac && be16(out, 48) === 0x86dd, "inner Ethernet");
        check(be48(out, 36) === info.peers[r.peer].mac, "TX_UNDERLAY vxlan (IPv6): inner destination MAC is not the peer's VTEP MAC");
      } else {
        check(out[9] === 41, `outer protocol ${out[9]}`);
      }
      const o = vxlan ? 50 : 20;
      checkTxUnderlay6(info, out, o, r.addr, r.peer, vxlan, { bytes: inp, off: 0, addr: 0, tos: 0 }, -1);
      checkNat66Forwarded(seen, out.subarray(o), inp, nat66HopDrop(pod, r.verdict, inp.subarray(0, il), out.subarray(o)), "TX_UNDERLAY inner");
      break;
    }
    case abi.VERDICT_TX_DIRECT:
      checkIpv6(out, "TX_DIRECT");
      check(r.addr === 0, "TX_DIRECT IPv6 with a next hop (the node's stack routes it)");
      check(route6Lookup(info, out, 24) < 0, "TX_DIRECT to an IPv6 destination we route");
      if (r.reason !== 0) {
        check(pod, "an ICMPv6 error from a decap path");
        checkOwnError6(info, out, inp, r.reason, "TX_DIRECT (ICMPv6 error)");
        break;
      }
      check([NODE6, SNAT6, CLUSTER6, EMPTY6].some((a) => eq6(out, 8, a)),
        "TX_DIRECT: a packet leaves the cluster from an address that is none of the node's NAT addresses");
      checkNat66Forwarded(seen, out, inp, nat66HopDrop(pod, r.verdict, inp.subarray(0, il), out), "TX_DIRECT");
      break;
    case abi.VERDICT_TO_DEVICE:
      check(r.reason === 0, "TO_DEVICE with a reason");
      checkIpv6(out, "TO_DEVICE");
      if (pod) check(nhKind(info, route6Lookup(info, out, 24)) === abi.NH_LOCAL, "TO_DEVICE: a pod-side packet to a destination that is not local");
      checkNat66Forwarded(seen, out, inp, nat66HopDrop(pod, r.verdict, inp.subarray(0, il), out), "TO_DEVICE");
      break;
    case abi.VERDICT_REPLY:
      check(pod, "REPLY from a decap path");
      check(r.reason !== 0, "ICMPv6 error without a reason");
      checkOwnError6(info, out, inp, r.reason, "REPLY");
      break;
  }
}

/** harness.c tracked6: some IPv6 flow has `t` as its original or reply tuple. */
function tracked6(dp: Dataplane, t: Tuple6): boolean {
  if (!t.ok) return false;
  const raw = dp.raw;
  const u8 = dp.u8;
  const dv = new DataView(u8.buffer);
  const dport = t.proto === 58 ? 0 : t.dport;
  const addr = (h: number) => u8.subarray(Number(raw.ct6Addr(h)), Number(raw.ct6Addr(h)) + 16);
  const high = raw.ctHighWater() >>> 0;
  for (let f = 0; f < high; f++) {
    const fp = Number(raw.ctFlowPtr(f));
    if (fp === 0 || u8[fp + 24] !== (t.proto | CT_PROTO_V6)) continue;
    for (const a of [fp, fp + 12]) {
      if (dv.getUint16(a + 8, true) === t.sport && dv.getUint16(a + 10, true) === dport && bytesEqual(addr(dv.getUint32(a, true)), t.src) &&
        bytesEqual(addr(dv.getUint32(a + 4, true)), t.dst)) return true;
    }
  }
  return false;
}

function replayNat66(node: Node, data: Uint8Array): void {
  const { dp } = node;
  nat66Reset(node);
  const seen = new Seen6();
  const steps: NatStep[] = [];
  const ctrl = data[0];
  let now = NAT_T0;
  for (const s of split(data, MAX_STEPS)) {
    if (s.length < 2) continue;
    const kind = s[0] & 3;
    const copies = 1 + ((s[1] >> 4) & 3);
    const body = s.subarray(2);
    now += NAT_ADVANCE[s[1] & 7];
    dp.setNow(now);
    if (s[1] & 8) dp.ctExpire(now, NAT_FLOWS);
    let ipPkt: Uint8Array;
    let side: Side;
    let patched = false;
    let ref: NatStep | null = null;
    if (kind <= 1) {
      if (body.length < 1 || body[0] >> 4 !== 6 || body.length > dp.slotSize) continue;
      ipPkt = body.slice();
      side = kind === 0 ? "pod" : s[0] & 0x20 ? "ipip" : "vxlan";
    } else {
      if (steps.length === 0) continue;
      ref = steps[((s[0] >> 2) & 7) % steps.length];
      const b = ref.out ?? ref.inp;
      side = ref.out ? ref.side : "pod";
      if (kind === 2) {
        const a = buildAnswer6(b, body);
        if (!a) continue;
        ipPkt = a;
      } else {
        const e = buildError6(b, body);
        if (!e) continue;
        ipPkt = e.pkt;
        patched = e.patched;
      }
    }
    let hdr = new Uint8Array(0);
    let addr = 0;
    if (side === "vxlan") {
      hdr = Uint8Array.from([0x08, 0, 0, 0, 0, 0, 100, 0, 0x0e, 0, 0, 0, 0x02, 0, 0x0e, 0, 0, 0, 0x03, 0, 0x86, 0xdd]);
      addr = W3.underlay;
    } else if (side === "ipip") {
      hdr = new Uint8Array(20);
      hdr[0] = 0x45;
      put16(hdr, 2, 20 + ipPkt.length);
      hdr[6] = 0x40;
      hdr[8] = 64;
      hdr[9] = 41;
      put32(hdr, 12, W1.underlay);
      put32(hdr, 16, W2.underlay);
      put16(hdr, 10, inetChecksum(hdr));
    }
    const cin: Uint8Array[] = [];
    const pkts: Pkt[] = [];
    for (let j = 0; j < copies; j++) {
      const c = ipPkt.slice();
      if (kind <= 1) varyCopy6(c, j);
      const bytes = new Uint8Array(hdr.length + c.length);
      bytes.set(hdr);
      bytes.set(c, hdr.length);
      if (bytes.length > dp.slotSize - MIN_OFF) break;
      cin.push(c);
      pkts.push({ bytes, off: place(ctrl, bytes.length, dp.slotSize), addr, tos: 0 });
      seen.add(c.subarray(0, ip6Len(c) || c.length), true);
    }
    if (pkts.length < copies) continue;
    const npk = pkts.length;
    const tr0 = dp.counter(C_NAT_TRANSLATED);
    const icmp0 = dp.counter(C_NAT_ICMP_TRANSLATED);
    const { n, before } = loadBatch(dp, pkts);
    let rxc = abi.C_RX_POD_PKTS;
    if (side === "pod") dp.processPod(n);
    else if (side === "vxlan") {
      dp.processVxlan(n);
      rxc = abi.C_RX_VXLAN_PKTS;
    } else {
      dp.processIpip(n);
      rxc = abi.C_RX_IPIP_PKTS;
    }
    for (let i = 1; i < n; i += 2) {
      const r = dp.result(i);
      check(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET, `guard record ${i} not dropped as R_BAD_OFFSET`);
      check(dp.u8.subarray(dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize).every((b) => b === 0xa5), `guard slot ${i} was written`);
    }
    for (let j = 0; j < npk; j++) checkNat66Packet(node, 2 * j, cin[j], side, seen);
    checkCounters(dp, n, before, rxc);
    const live = dp.raw.ctCount() >>> 0;
    check(live <= NAT_FLOWS && dp.raw.ctCapacity() === NAT_FLOWS, `conntrack holds ${live} flows`);
    check(BigInt(live) === BigInt(dp.raw.ctStat(0)) - ctGone(dp), "conntrack count != inserts - deletes - expired - early drops");
    checkNames6(node, "after a batch");
    const dtr = dp.counter(C_NAT_TRANSLATED) - tr0;
    const dicmp = dp.counter(C_NAT_ICMP_TRANSLATED) - icmp0;
    check(dtr <= BigInt(npk) && dicmp <= BigInt(npk), "NAT counters moved by more than the packets");
    if (ref && !patched && ref.out && ref.reason === 0 && ref.tracked && ctGone(dp) === ref.gone) {
      const ti = tuple6Of(ref.inp);
      const to = tuple6Of(ref.out);
      const translated = ti.ok && to.ok && ti.proto === to.proto &&
        (!bytesEqual(ti.src, to.src) || !bytesEqual(ti.dst, to.dst) || ti.sport !== to.sport || ti.dport !== to.dport);
      for (let j = 0; translated && j < npk; j++) {
        const r = dp.result(2 * j);
        if (r.verdict === abi.VERDICT_DROP || r.reason !== 0) continue;
        const o = outputIp6(dp, 2 * j).ip;
        if (kind === 2) {
          const t = tuple6Of(o);
          const es = ti.proto === 58 ? ti.sport : ti.dport;
          const ed = ti.proto === 58 ? ti.dport : ti.sport;
          check(t.ok && bytesEqual(t.src, ti.dst) && bytesEqual(t.dst, ti.src) && t.sport === es && t.dport === ed, "an answer not translated back exactly");
        } else {
          check(o.length >= 88 && o[6] === 58 && icmp6ErrorType(o[40]), "an ICMPv6 error came out as something else");
          const t = tuple6Of(o.subarray(48));
          check(t.ok && bytesEqual(t.src, ti.src) && bytesEqual(t.dst, ti.dst) && t.sport === ti.sport && t.dport === ti.dport, "an ICMPv6 error does not quote what the sender sent");
          check(eq6(o, 8, t.dst) && eq6(o, 24, t.src), "an ICMPv6 error's addresses are not the quoted ones swapped");
        }
      }
      if (translated) {
        if (kind === 2) check(dtr === BigInt(npk), `answers: ${dtr} of ${npk} translated`);
        else check(dicmp === BigInt(npk), `ICMPv6 errors: ${dicmp} of ${npk} translated`);
      }
    }
    const r0 = dp.result(0);
    let out: Uint8Array | null = null;
    let outSide: Side = "pod";
    if (r0.verdict !== abi.VERDICT_DROP) {
      const o = outputIp6(dp, 0);
      out = o.ip.slice();
      outSide = o.side;
    }
    const inp = cin[0].slice(0, ip6Len(cin[0]) || cin[0].length);
    steps.push({ inp, out, verdict: r0.verdict, reason: r0.reason, side: outSide, gone: ctGone(dp), tracked: tracked6(dp, tuple6Of(inp)) });
  }
}

interface Nodes {
  tun: Node;
  tap: Node;
  w3: Node;
  w1: Node;
  nat: Node;
  nat66: Node;
}

function makeNodes(): Nodes {
  return { tun: fuzzWorker2("tun"), tap: fuzzWorker2("tap"), w3: fuzzWorker3(), w1: worker1(), nat: natWorker2(), nat66: nat66Worker2() };
}

/** vxlan-super (fuzz/harness.c super_run): a VXLAN datagram holding a whole
 *  TCP super-frame (inner IPv4, or IPv6 by its version nibble: Ethernet
 *  type 0x86DD), both ways the worker takes it: to the tun whole through
 *  its representative (never for IPv6: the tun is not offered TSO6), and
 *  segmented. The harness's main invariants; returns the verdict of the
 *  representative (-1: not taken) and of the segments (-1: none) for the
 *  seed checks. */
const superBufs = new Map<Node, { a: number; b: number }>();
function replaySuper(node: Node, data: Uint8Array): { rep: number; segs: number } {
  const dp = node.dp;
  if (data.length < 2 || data.length - 2 + 22 > 65536) return { rep: -1, segs: -1 };
  let bufs = superBufs.get(node);
  if (!bufs) {
    check(dp.raw.offloadSetup() === abi.OK, "offloadSetup");
    dp.raw.encapRxSetup(Number(dp.raw.allocScratch(64)));
    bufs = { a: Number(dp.raw.allocScratch(65600)), b: Number(dp.raw.allocScratch(65600)) };
    superBufs.set(node, bufs);
  }
  const tos = data[1];
  const inner = data.subarray(2);
  const six = inner.length >= 1 && inner[0] >> 4 === 6;
  const d = new Uint8Array(22 + inner.length);
  d.set([0x08, 0, 0, 0, 0, 0, 100, 0, 0x0e, 0, 0, 0, 0x02, 0, 0x0e, 0, 0, 0, 0x03, 0, six ? 0x86 : 0x08, six ? 0xdd : 0]);
  d.set(inner, 22);
  // What the module may take, judged here (harness.c: ihl, hdr, valid).
  const ilen = inner.length;
  let ihl = 0;
  let valid: boolean;
  if (six) {
    ihl = 40;
    valid = ilen >= 60 && 40 + be16(inner, 4) === ilen && inner[6] === 6;
  } else {
    ihl = ilen >= 20 ? (inner[0] & 15) * 4 : 0;
    valid = ilen >= 40 && inner[0] >> 4 === 4 && ihl >= 20 && ihl + 20 <= ilen && be16(inner, 2) === ilen && inner[9] === 6 && (be16(inner, 6) & 0x3fff) === 0 &&
      inetChecksum(inner.subarray(0, ihl)) === 0;
  }
  const hdr = valid ? ihl + (inner[ihl + 12] >> 4) * 4 : 0;
  if (valid) valid = hdr >= ihl + 20 && hdr <= ilen;
  const mss = valid ? MTU - 50 - hdr : 0;
  const payload = valid ? ilen - hdr : 0;
  const segs = valid ? (payload === 0 ? 1 : Math.ceil(payload / mss)) : 0;
  const u8 = () => new Uint8Array(dp.memory.buffer);
  u8().set(d, bufs.a);
  for (let i = 0; i < BATCH; i++) u8().fill(0, dp.metaPtr(i), dp.metaPtr(i) + abi.META_SIZE);
  const r = dp.raw.encapRepresentative(bufs.a, d.length, 0, W3.underlay, W2.underlay, tos);
  check(Buffer.from(u8().subarray(bufs.a, bufs.a + d.length)).equals(Buffer.from(d)), "encapRepresentative changed the datagram");
  check(!six || r === 0, "encapRepresentative took an IPv6 frame: the tun is not offered TSO6");
  let verdict = -1;
  if (r > 0) {
    check(valid && r === segs, `encapRepresentative: ${r} segments, expected ${segs}`);
    dp.processVxlan(1);
    verdict = dp.result(0).verdict;
    const w = dp.raw.encapBuild(0, bufs.a, d.length, r);
    if (verdict === abi.VERDICT_TO_DEVICE) {
      check(w === inner.length + 10, `tun write of ${w} bytes for ${inner.length}`);
      const q = u8().slice(bufs.a + 22, bufs.a + 22 + inner.length);
      check(inetChecksum(q.subarray(0, (q[0] & 15) * 4)) === 0, "tun write: bad IPv4 header checksum");
      check(Buffer.from(q.subarray(12, 20)).equals(Buffer.from(inner.subarray(12, 20))), "tun write: addresses changed");
    } else check(w === 0, `a tun write for verdict ${verdict}`);
  }
  u8().set(d, bufs.b);
  const k = dp.raw.ingestEncapSuperframe(bufs.b, d.length, 0, W3.underlay, W2.underlay, tos);
  check(Buffer.from(u8().subarray(bufs.b, bufs.b + d.length)).equals(Buffer.from(d)), "ingestEncapSuperframe changed the datagram");
  check(k === abi.E_RANGE || (k >= 0 && k <= BATCH), `ingestEncapSuperframe returned ${k}`);
  if (k !== abi.E_RANGE) check(valid, "ingestEncapSuperframe took a datagram that holds no super-frame");
  if (r > 0) check(k === r || (k === 0 && r > BATCH), `representative: ${r} segments, ingest: ${k}`);
  if (k === 0) check(segs > BATCH, `ingest: no room for ${segs} segments`);
  if (k <= 0) return { rep: verdict, segs: -1 };
  check(k === segs, `ingest: ${k} segments, expected ${segs}`);
  dp.processVxlan(k);
  const first = dp.result(0).verdict;
  const ecn = six ? ecnDecap(tclass(inner) & 3, tos & 3) : 0;
  let at = hdr;
  let seq = be32(inner, ihl + 4);
  for (let i = 0; i < k; i++) {
    const res = dp.result(i);
    check(res.verdict === first, `segment ${i}: verdict ${res.verdict}`);
    if (res.verdict !== abi.VERDICT_TO_DEVICE) continue;
    const p = dp.readPacket(i);
    const l = p.length;
    check(l >= hdr && l - hdr <= mss && (l > hdr || payload === 0), `segment ${i}: ${l} bytes`);
    if (six) {
      checkIpv6(p, `segment ${i}`);
      check(bytesEqual(p.subarray(6, 40), inner.subarray(6, 40)), `segment ${i}: next header, hop limit or addresses changed`);
      check(((be32(p, 0) ^ be32(inner, 0)) & ~0x00300000) === 0, `segment ${i}: traffic class or flow label changed`);
      check(ecn >= 0 && (tclass(p) & 3) === ecn, `segment ${i}: ECN ${tclass(p) & 3}, RFC 6040 says ${ecn}`);
      check(l4Sum6(p, 6, l - 40) === 0, `segment ${i}: bad TCP checksum (IPv6 pseudo header)`);
    } else {
      check(inetChecksum(p.subarray(0, (p[0] & 15) * 4)) === 0, `segment ${i}: bad IPv4 header checksum`);
    }
    check(be32(p, ihl + 4) === seq, `segment ${i}: sequence ${be32(p, ihl + 4)}, expected ${seq}`);
    let want = inner[ihl + 13];
    if (i !== k - 1) want &= ~0x09;
    if (i !== 0) want &= ~0x80;
    check(p[ihl + 13] === want, `segment ${i} of ${k}: TCP flags ${p[ihl + 13]}, expected ${want}`);
    check(bytesEqual(p.subarray(hdr), inner.subarray(at, at + l - hdr)), `segment ${i}: payload is not the input's`);
    at += l - hdr;
    seq = (seq + l - hdr) >>> 0;
  }
  if (first === abi.VERDICT_TO_DEVICE) check(at === ilen, `segments carried ${at - hdr} of ${ilen - hdr} bytes`);
  return { rep: verdict, segs: first };
}

function replay(nodes: Nodes, target: Target, data: Uint8Array): void {
  if (data.length < 1) return;
  if (target === "vxlan-super") {
    replaySuper(nodes.tun, data);
    return;
  }
  const ctrl = data[0];
  const slotSize = nodes.tun.dp.slotSize;
  if (target === "nat") {
    replayNat(nodes.nat, data);
    return;
  }
  if (target === "nat66") {
    replayNat66(nodes.nat66, data);
    return;
  }
  if (target === "roundtrip") {
    const { pkt, ipip } = buildRoundtrip(data.subarray(1));
    const a = nodes.tun;
    const input = { bytes: pkt, off: place(ctrl, pkt.length, slotSize), addr: 0, tos: 0 };
    let { n, before } = loadBatch(a.dp, [input]);
    a.dp.processPod(n);
    checkBatch(a, "tun", n, before, [input], abi.C_RX_POD_PKTS, "pod");
    const ra = a.dp.result(0);
    check(ra.verdict === abi.VERDICT_TX_UNDERLAY, `round trip: worker2 gave verdict ${ra.verdict} reason ${ra.reason}`);
    const o = a.dp.readPacket(0);
    const peer = ipip ? nodes.w1 : nodes.w3;
    const rx = ipip ? { bytes: o, off: abi.HEADROOM, addr: 0, tos: 0 } : { bytes: o.slice(28), off: abi.HEADROOM, addr: be32(o, 12), tos: o[1] };
    ({ n, before } = loadBatch(peer.dp, [rx]));
    if (ipip) peer.dp.processIpip(n);
    else peer.dp.processVxlan(n);
    checkBatch(peer, "tun", n, before, [rx], ipip ? abi.C_RX_IPIP_PKTS : abi.C_RX_VXLAN_PKTS, ipip ? "ipip" : "vxlan");
    const rb = peer.dp.result(0);
    check(rb.verdict === abi.VERDICT_TO_DEVICE, `round trip: peer gave verdict ${rb.verdict} reason ${rb.reason}`);
    if (pkt[0] >> 4 === 6) check(bytesEqual(peer.dp.readPacket(0), pkt), "decap(encap(x)) != x (IPv6)");
    else checkForwarded(peer.dp.readPacket(0), pkt, "decap(encap(x))");
    return;
  }
  const mode: DeviceMode = target === "pod-tap" ? "tap" : "tun";
  const node = mode === "tap" ? nodes.tap : nodes.tun;
  const pkts: Pkt[] = [];
  for (const s of split(data)) {
    let bytes: Uint8Array;
    let addr = 0;
    let tos = 0;
    if (target === "vxlan-decap") {
      if (s.length < 5) continue;
      addr = be32(s, 0);
      tos = s[4];
      bytes = s.slice(5);
    } else if (target === "vxlan-inner" || target === "vxlan-inner6") {
      if (s.length < 1) continue;
      tos = s[0];
      addr = W3.underlay;
      const six = target === "vxlan-inner6";
      const hdr = [0x08, 0, 0, 0, 0, 0, 100, 0, 0x0e, 0, 0, 0, 0x02, 0, 0x0e, 0, 0, 0, 0x03, 0, six ? 0x86 : 0x08, six ? 0xdd : 0];
      bytes = new Uint8Array(hdr.length + s.length - 1);
      bytes.set(hdr);
      bytes.set(s.subarray(1), hdr.length);
    } else if (target === "sit-inner") {
      // harness.c: worker1's sit packet (DF), the fuzzer's byte as its TOS.
      if (s.length < 1 || s.length - 1 + 20 > 0xffff) continue;
      bytes = new Uint8Array(20 + s.length - 1);
      bytes.set([0x45, s[0]]);
      put16(bytes, 2, bytes.length);
      bytes[6] = 0x40;
      bytes[8] = 64;
      bytes[9] = 41;
      put32(bytes, 12, W1.underlay);
      put32(bytes, 16, W2.underlay);
      put16(bytes, 10, inetChecksum(bytes.subarray(0, 20)));
      bytes.set(s.subarray(1), 20);
    } else if (target === "ip6tnl") {
      // harness.c: the inner packet as the AF_INET6 raw socket hands it over,
      // the sender by byte 0's bits 2-3, the segment's first byte the traffic class.
      if (s.length < 1) continue;
      addr = [W6.underlay, W3.underlay, 0, UNKNOWN_UNDERLAY][(ctrl >> 2) & 3];
      tos = s[0];
      bytes = s.slice(1);
    } else {
      bytes = s.slice();
    }
    if (bytes.length > slotSize - MIN_OFF) continue;
    pkts.push({ bytes, off: place(ctrl, bytes.length, slotSize), addr, tos });
  }
  if (pkts.length === 0) return;
  const { n, before } = loadBatch(node.dp, pkts);
  if (target === "vxlan-decap" || target === "vxlan-inner" || target === "vxlan-inner6") {
    node.dp.processVxlan(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_VXLAN_PKTS, "vxlan");
  } else if (target === "ipip-decap" || target === "sit-inner") {
    node.dp.processIpip(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_IPIP_PKTS, "ipip");
  } else if (target === "ip6tnl") {
    node.dp.processIp6Tunnel(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_IPIP_PKTS, "ip6tnl");
  } else {
    node.dp.processPod(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_POD_PKTS, "pod");
  }
}

const fuzzDir = join(repoRoot(), "fuzz");
function files(target: Target): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  // The minimised corpus, the generated seeds (make_ipv6_seeds.py, make_nat66_seeds.py), the regressions.
  for (const kind of ["corpus", "seeds", "regressions"]) {
    const d = join(fuzzDir, kind, target);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).sort()) out.push({ name: `${kind}/${target}/${f}`, path: join(d, f) });
  }
  return out;
}

describe("fuzz corpus and regressions replay through the release module", () => {
  const nodes = makeNodes();
  for (const target of TARGETS) {
    const list = files(target);
    it(`${target}: has seeds`, () => {
      expect(list.length).toBeGreaterThan(0);
    });
    for (const f of list) {
      it(f.name, () => {
        replay(nodes, target, new Uint8Array(readFileSync(f.path)));
      });
    }
  }

  it("vxlan-super: the valid seeds are taken whole and delivered, the malformed ones refused", () => {
    for (const f of files("vxlan-super").filter((x) => x.name.startsWith("corpus/"))) {
      const v = replaySuper(nodes.tun, new Uint8Array(readFileSync(f.path))).rep;
      const base = f.name.split("/")[2];
      if (/^(two-segments|five-segments|other-destination)/.test(base)) expect(v, base).toBe(abi.VERDICT_TO_DEVICE);
      if (/^(udp-inner|length-mismatch|fragment|short|exactly-one-mss)/.test(base)) expect(v, base).toBe(-1);
      if (/^(spoofed-source|outer-ce)/.test(base)) expect(v, base).toBe(abi.VERDICT_DROP);
    }
  });

  it("vxlan-super: IPv6 super-frames are segmented and delivered, never taken whole; the malformed ones refused", () => {
    const seen = new Set<string>();
    for (const f of files("vxlan-super").filter((x) => x.name.startsWith("seeds/"))) {
      const { rep, segs } = replaySuper(nodes.tun, new Uint8Array(readFileSync(f.path)));
      const base = f.name.split("/")[2].replace(/-[0-9a-f]{10}$/, "");
      seen.add(base);
      expect(rep, base).toBe(-1);
      if (/^ipv6-(two|five)-segments|^ipv6-(partial-checksum|exactly-one-mss|bare-ack|deep-80-source)$/.test(base)) expect(segs, base).toBe(abi.VERDICT_TO_DEVICE);
      if (/^ipv6-(spoofed-source|outer-ce-not-ect)$/.test(base)) expect(segs, base).toBe(abi.VERDICT_DROP);
      if (/^ipv6-(udp-inner|extension-header|length-mismatch|short|ten-segments-no-room)$/.test(base)) expect(segs, base).toBe(-1);
    }
    expect(seen.size).toBeGreaterThanOrEqual(10);
  });

  it("IPv6 seeds reach the paths they are named for", () => {
    // The first packet's result, on the node the target runs on.
    const verdictOf = (target: Target, name: string) => {
      const f = files(target).find((x) => x.name.startsWith(`seeds/${target}/${name}-`));
      expect(f, `${target}/${name}`).toBeDefined();
      replay(nodes, target, new Uint8Array(readFileSync(f!.path)));
      return (target === "pod-tap" ? nodes.tap : nodes.tun).dp.result(0);
    };
    expect(verdictOf("pod-tun", "udp-vxlan").verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(verdictOf("pod-tun", "tcp-syn-sit").verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(verdictOf("pod-tun", "echo-local").verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(verdictOf("pod-tun", "no-route")).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_NO_ROUTE });
    expect(verdictOf("pod-tun", "too-big-vxlan-1500")).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG });
    expect(verdictOf("pod-tun", "direct-is-the-kernels").reason).toBe(abi.R_NO_ROUTE);
    expect(verdictOf("pod-tun", "host-128-blackhole").reason).toBe(abi.R_BLACKHOLE);
    expect(verdictOf("pod-tun", "deep-80-vxlan").verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(verdictOf("pod-tun", "no-route-icmp6-error").reason).toBe(abi.R_ICMP_SUPPRESSED);
    expect(verdictOf("pod-tap", "ns-vxlan-target")).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: 0 });
    expect(verdictOf("pod-tap", "ns-sit-target")).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: 0 });
    expect(verdictOf("pod-tap", "ns-dad").reason).toBe(abi.R_NDP_IGNORED);
    expect(verdictOf("pod-tap", "ns-local-target").reason).toBe(abi.R_NDP_IGNORED);
    expect(verdictOf("vxlan-inner6", "tcp-partial-checksum").verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(verdictOf("vxlan-inner6", "deep-80-source").verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(verdictOf("vxlan-inner6", "notect-outer-ce").reason).toBe(abi.R_ECN_CE_NOT_ECT);
    expect(verdictOf("vxlan-inner6", "w1-source").reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(verdictOf("sit-inner", "udp-partial-checksum").verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(verdictOf("sit-inner", "w3-source").reason).toBe(abi.R_SPOOFED_SOURCE);
    // Peer 3 over the IPv6 underlay (issue 16): encapsulated in IPv6, the +20 rule, processIp6TunnelBatch.
    const over6 = (name: string) => {
      const r = verdictOf("pod-tun", name);
      expect(r.verdict, name).toBe(abi.VERDICT_TX_UNDERLAY);
      expect(r.peer, name).toBe(3);
      expect(nodes.tun.dp.readPacket(0)[0] >> 4, name).toBe(6);
    };
    for (const name of ["over6-udp-vxlan", "over6-tcp-ip6ip6", "over6-ipv4-vxlan", "over6-ipv4-ipip6", "over6-vxlan-1430-fits", "over6-ipv4-ipip6-1460-fits"]) over6(name);
    for (const name of ["over6-too-big-vxlan-1431", "over6-too-big-ip6ip6-1461", "over6-ipv4-too-big-df-1431", "over6-ipv4-too-big-no-df-1461"]) {
      expect(verdictOf("pod-tun", name), name).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG });
    }
    for (const name of ["ipv4-udp", "ipv4-partial-checksum", "ipv6-udp", "ipv6-udp-partial-checksum", "ipv6-tcp-ce"]) {
      expect(verdictOf("ip6tnl", name), name).toMatchObject({ verdict: abi.VERDICT_TO_DEVICE, peer: 3 });
    }
    expect(verdictOf("ip6tnl", "ipv4-from-w3")).toMatchObject({ verdict: abi.VERDICT_TO_DEVICE, peer: 0 });
    expect(verdictOf("ip6tnl", "ipv4-spoofed-w3-source").reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(verdictOf("ip6tnl", "ipv6-spoofed-w1-source").reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(verdictOf("ip6tnl", "ipv4-notect-outer-ce").reason).toBe(abi.R_ECN_CE_NOT_ECT);
    expect(verdictOf("ip6tnl", "no-sender").reason).toBe(abi.R_UNKNOWN_PEER);
    expect(verdictOf("ip6tnl", "unknown-sender").reason).toBe(abi.R_UNKNOWN_PEER);
  });

  it("a violated invariant fails the replay (the checks are live)", () => {
    // A TO_DEVICE packet whose length disagrees with its header must be caught.
    const { dp } = nodes.tun;
    expect(() => checkIpv4(dp, dp.slotPtr(0), 19, "probe")).toThrow(Violation);
  });
});
