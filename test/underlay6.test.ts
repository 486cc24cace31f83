// Peers reached over an IPv6 underlay (assembly/pipeline/encap.ts, peers.ts
// setPeer6, setup.ts configureUnderlay6, decap.ts processIp6TunnelBatch):
// VXLAN over IPv6 with its mandatory UDP checksum (RFC 7348, RFC 6935/6936),
// IPv4/IPv6 in IPv6 (RFC 2473), the MTU rule with a 40-byte outer header, the
// offload paths that must stay IPv4, and the receiving side. Expected bytes
// are built here from the RFCs, not from the module's code.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as abi from "../src/dataplane/abi.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import { inetChecksum, ip, ipStr, ipv4, macBytes, parseIpv4, tcp, tsoFrame, udp, vxlanHeader } from "./helpers/packets.js";
import { a6, a6big, ipv6, parseIpv6, udp6 } from "./helpers/packets6.js";
import { haveTshark, tsharkFields } from "./helpers/pcap.js";
import { DEV_MAC, W1, W2, W3, worker2, worker3, type Node } from "./helpers/topology.js";
import type { Dataplane } from "../src/dataplane/dataplane.js";

// 2011:...: byte 9 of an IPv6 header (the source's second byte) is 0x11 = 17,
// the UDP protocol number an IPv4-only check would see there.
const NODE6 = "2011:db8::12";
const W3_6 = "2001:db8:1::13";
const W1_6 = "2001:db8:1::11";
const P1 = "2001:2:0:1::", P2 = "2001:2:0:2::", P3 = "2001:2:0:3::";
const SPORT_MIN = 32768, SPORT_SPAN = 60999 - 32768 + 1;
const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);
const split = (a: bigint): [bigint, bigint] => [BigInt.asUintN(64, a >> 64n), BigInt.asUintN(64, a)];
const A6 = (s: string) => split(a6big(s));

function podUdp(src: string, dst: string, o: { tos?: number; df?: boolean; size?: number; sport?: number; csum?: boolean } = {}) {
  return ipv4({ src, dst, proto: 17, tos: o.tos ?? 0, df: o.df ?? true, payload: udp(src, dst, o.sport ?? 40000, 8080, payload(o.size ?? 100), o.csum ?? true) });
}
function podUdp6(src: string, dst: string, o: { tclass?: number; size?: number; sport?: number } = {}) {
  return ipv6({ src, dst, next: 17, tclass: o.tclass ?? 0, flow: 0x12345, payload: udp6(src, dst, o.sport ?? 40000, 8080, payload(o.size ?? 100)) });
}

/** worker2 of helpers/topology with IPv6 inner routes (as test/pipeline6's dual2), this
 *  node's IPv6 underlay NODE6, and peer 0 (worker3, VXLAN) at W3_6, peer 1 (worker1, IPIP) at W1_6. */
function node2(o: { over6?: boolean; mtu?: number } = {}): Node & { r6: RouteRules6 } {
  const n = worker2();
  n.dp.configure({ mode: "tun", underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100, underlayMtu: o.mtu ?? 1500, overlay6: a6big(P2) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P2, 64, 0);
  r6.add(P3, 64, 1);
  r6.add(P1, 64, 2);
  const raw = n.dp.raw;
  expect(raw.configureUnderlay6(...A6(NODE6))).toBe(abi.OK);
  if (o.over6 ?? true) {
    expect(raw.setPeer6(0, ...A6(W3_6))).toBe(abi.OK);
    expect(raw.setPeer6(1, ...A6(W1_6))).toBe(abi.OK);
  }
  return { ...n, r6 };
}

/** The UDP checksum of `udpBytes` (checksum field included, treated as
 *  zero) over the IPv6 pseudo header, from scratch: 0 is sent as 0xFFFF. */
function slowUdp6Checksum(src: Uint8Array, dst: Uint8Array, udpBytes: Uint8Array): number {
  const b = new Uint8Array(40 + udpBytes.length + (udpBytes.length & 1));
  b.set(src, 0);
  b.set(dst, 16);
  new DataView(b.buffer).setUint32(32, udpBytes.length);
  b[39] = 17;
  b.set(udpBytes, 40);
  b[40 + 6] = 0;
  b[40 + 7] = 0;
  let s = 0;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | b[i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  const c = ~s & 0xffff;
  return c === 0 ? 0xffff : c;
}

const expectedLabel = (hash: number) => (hash & 0xfffff) || 1;
const expectedSport = (hash: number) => SPORT_MIN + Number((BigInt(hash >>> 0) * BigInt(SPORT_SPAN)) >> 32n);

/** The whole VXLAN-over-IPv6 packet for `inner`, built from RFC 8200 / 768 / 7348. */
function goldenVxlan6(inner: Uint8Array, tc: number, hash: number, etype: number, src6: string, dst6: string, dstMac: bigint, srcMac: bigint): Uint8Array {
  const udpLen = 8 + 8 + 14 + inner.length;
  const out = new Uint8Array(40 + udpLen);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, ((6 << 28) | (tc << 20) | expectedLabel(hash)) >>> 0);
  dv.setUint16(4, udpLen);
  out[6] = 17;
  out[7] = 64;
  out.set(a6(src6), 8);
  out.set(a6(dst6), 24);
  dv.setUint16(40, expectedSport(hash));
  dv.setUint16(42, 4789);
  dv.setUint16(44, udpLen);
  out.set(vxlanHeader(100), 48);
  out.set(macBytes(dstMac), 56);
  out.set(macBytes(srcMac), 62);
  dv.setUint16(68, etype);
  out.set(inner, 70);
  dv.setUint16(46, slowUdp6Checksum(a6(src6), a6(dst6), out.subarray(40)));
  return out;
}

/** The whole IPv4/IPv6-in-IPv6 packet for `inner` (RFC 2473). */
function goldenIp6Tnl(inner: Uint8Array, tc: number, hash: number, next: number, src6: string, dst6: string): Uint8Array {
  const out = new Uint8Array(40 + inner.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, ((6 << 28) | (tc << 20) | expectedLabel(hash)) >>> 0);
  dv.setUint16(4, inner.length);
  out[6] = next;
  out[7] = 64;
  out.set(a6(src6), 8);
  out.set(a6(dst6), 24);
  out.set(inner, 40);
  return out;
}

/** Verify the UDP checksum of an IPv6/UDP packet: the sum over pseudo header and datagram folds to 0xFFFF. */
function udp6Verifies(out: Uint8Array): boolean {
  const h = parseIpv6(out);
  return h.l4ok === true;
}

function tx(dp: Dataplane, pkts: Uint8Array[]): Uint8Array[] {
  pkts.forEach((p, i) => dp.writePacket(i, p));
  dp.processPod(pkts.length);
  return pkts.map((_, i) => dp.readPacket(i));
}

describe("VXLAN over IPv6: golden bytes", () => {
  const { dp } = node2();

  it("an IPv4 inner packet: every outer field, the UDP checksum recomputed from scratch", () => {
    const inner = podUdp("198.19.2.5", "198.19.3.7", { tos: 0xb8 | 2 });
    const before = dp.counters();
    const [out] = tx(dp, [inner]);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(ipStr(r.addr)).toBe("198.18.1.13"); // the peer's IPv4 identity
    expect(r.peer).toBe(0);
    expect(r.off).toBe(abi.HEADROOM - 70);
    expect(out.length).toBe(inner.length + 70);
    expect(Array.from(out)).toEqual(Array.from(goldenVxlan6(inner, 0xb8 | 2, r.hash, 0x0800, NODE6, W3_6, W3.mac, W2.mac)));
    const h = parseIpv6(out);
    expect(h).toMatchObject({ version: 6, tclass: 0xb8 | 2, flow: expectedLabel(r.hash), plen: out.length - 40, next: 17, hlim: 64, src: NODE6, dst: W3_6 });
    const csum = (out[46] << 8) | out[47];
    expect(csum).not.toBe(0);
    expect(udp6Verifies(out)).toBe(true);
    expect(inetChecksum(out.subarray(40), pseudo6Sum(out))).toBe(0);
    const after = dp.counters();
    expect(after.tx_vxlan_packets - before.tx_vxlan_packets).toBe(1n);
    expect(after.tx_vxlan_bytes - before.tx_vxlan_bytes).toBe(BigInt(out.length));
  });

  it("an IPv6 inner packet: traffic class copied, EtherType 0x86DD", () => {
    const inner = podUdp6(`${P2}5`, `${P3}7`, { tclass: 0x21 });
    const [out] = tx(dp, [inner]);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(Array.from(out)).toEqual(Array.from(goldenVxlan6(inner, 0x21, r.hash, 0x86dd, NODE6, W3_6, W3.mac, W2.mac)));
    expect(udp6Verifies(out)).toBe(true);
  });

  it("ECN and DSCP reach the traffic class unchanged (RFC 6040 normal mode): Not-ECT, ECT(1), ECT(0), CE", () => {
    const toses = [0x00, 0x01, 0x02, 0x03, 0xb8 | 3, 0x28 | 1];
    const outs = tx(dp, toses.map((tos, k) => podUdp("198.19.2.5", "198.19.3.7", { tos, sport: 1000 + k })));
    outs.forEach((o, k) => expect(parseIpv6(o).tclass).toBe(toses[k]));
    const outs6 = tx(dp, toses.map((tclass, k) => podUdp6(`${P2}5`, `${P3}7`, { tclass, sport: 1000 + k })));
    outs6.forEach((o, k) => expect(parseIpv6(o).tclass).toBe(toses[k]));
  });

  it("the flow label: the flow hash's low 20 bits, never 0, one per flow, spread over flows", () => {
    const labels = new Set<number>();
    for (let f = 0; f < 48; f++) {
      const outs = tx(dp, [0, 1].map(() => podUdp("198.19.2.5", "198.19.3.7", { sport: 2000 + f })));
      const a = parseIpv6(outs[0]).flow, b = parseIpv6(outs[1]).flow;
      expect(a).toBe(b);
      expect(a).toBe(expectedLabel(dp.result(0).hash));
      expect(a).not.toBe(0);
      labels.add(a);
    }
    expect(labels.size).toBeGreaterThan(40);
  });

  it("a datagram whose checksum computes to 0 is sent with 0xFFFF (RFC 768, RFC 8200 8.1)", () => {
    // The inner UDP checksum is off and the first two payload bytes are a
    // free word: choose it so the whole sum is 0xFFFF (flow hash, and so the
    // ports and label, do not depend on the payload).
    const mk = (w: number) => {
      const data = payload(64);
      data[0] = w >> 8;
      data[1] = w & 255;
      return ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, df: true, payload: udp("198.19.2.5", "198.19.3.7", 4321, 53, data, false) });
    };
    const [probe] = tx(dp, [mk(0)]);
    let s = pseudo6Sum(probe);
    const z = probe.slice(40);
    z[6] = 0;
    z[7] = 0;
    for (let i = 0; i + 1 < z.length; i += 2) s += (z[i] << 8) | z[i + 1];
    if (z.length & 1) s += z[z.length - 1] << 8;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    const [out] = tx(dp, [mk(0xffff - s)]);
    expect((out[46] << 8) | out[47]).toBe(0xffff);
    expect(udp6Verifies(out)).toBe(true);
  });
});

describe("IPv4 and IPv6 in IPv6 (RFC 2473): golden bytes", () => {
  const { dp } = node2();

  it("IPv4 in IPv6: next header 4, the inner packet as is", () => {
    const inner = podUdp("198.19.2.5", "198.19.1.7", { tos: 0x2a | 1 });
    const before = dp.counters();
    const [out] = tx(dp, [inner]);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(ipStr(r.addr)).toBe("198.18.0.11");
    expect(r.peer).toBe(1);
    expect(Array.from(out)).toEqual(Array.from(goldenIp6Tnl(inner, 0x2a | 1, r.hash, 4, NODE6, W1_6)));
    const after = dp.counters();
    expect(after.tx_ipip_packets - before.tx_ipip_packets).toBe(1n);
    expect(after.tx_ipip_bytes - before.tx_ipip_bytes).toBe(BigInt(inner.length + 40));
  });

  it("IPv6 in IPv6: next header 41, traffic class copied (CE too)", () => {
    const inner = podUdp6(`${P2}5`, `${P1}9`, { tclass: 0xb8 | 3 });
    const [out] = tx(dp, [inner]);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(Array.from(out)).toEqual(Array.from(goldenIp6Tnl(inner, 0xb8 | 3, r.hash, 41, NODE6, W1_6)));
  });
});

describe("the VXLAN-over-IPv6 UDP checksum against a slow twin", () => {
  it("random inner lengths, contents, addresses and source ports", () => {
    const { dp } = node2();
    const raw = dp.raw;
    const addr = fc.uint8Array({ minLength: 16, maxLength: 16 }).filter((b) => b.some((x) => x !== 0));
    const big = (b: Uint8Array) => b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
    fc.assert(
      fc.property(addr, addr, fc.uint8Array({ minLength: 0, maxLength: 1380 }), fc.integer({ min: 1, max: 65535 }), fc.boolean(), fc.integer({ min: 0, max: 255 }),
        (node, peer, data, sport, nodeFirst, tos) => {
          if (nodeFirst) raw.configureUnderlay6(...split(big(node)));
          expect(raw.setPeer6(0, ...split(big(peer)))).toBe(abi.OK);
          if (!nodeFirst) raw.configureUnderlay6(...split(big(node)));
          const inner = ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, tos, df: true, payload: udp("198.19.2.5", "198.19.3.7", sport, 53, data) });
          const [out] = tx(dp, [inner]);
          expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
          expect(out.length).toBe(inner.length + 70);
          expect(Array.from(out.subarray(8, 24))).toEqual(Array.from(node));
          expect(Array.from(out.subarray(24, 40))).toEqual(Array.from(peer));
          const got = (out[46] << 8) | out[47];
          expect(got).toBe(slowUdp6Checksum(node, peer, out.subarray(40)));
          expect(got).not.toBe(0);
          expect((out[40] << 8) | out[41]).toBe(expectedSport(dp.result(0).hash));
        }),
      { numRuns: 300 },
    );
  });
});

describe("switching a peer's underlay family, and refusals", () => {
  it("setPeer makes a peer IPv4 again; setPeer6(0, 0) does too; the IPv6 address comes back with setPeer6", () => {
    const { dp } = node2();
    const raw = dp.raw;
    const send = () => tx(dp, [podUdp("198.19.2.5", "198.19.3.7")])[0];
    expect(send()[0] >> 4).toBe(6);
    dp.setPeer(0, W3.underlay, W3.mac);
    let out = send();
    expect(parseIpv4(out)).toMatchObject({ version: 4, dst: "198.18.1.13", proto: 17, checksumOk: true });
    expect(out.length).toBe(100 + 8 + 20 + 50);
    expect(raw.setPeer6(0, ...A6(W3_6))).toBe(abi.OK);
    expect(parseIpv6(send()).dst).toBe(W3_6);
    expect(raw.setPeer6(0, 0n, 0n)).toBe(abi.OK);
    out = send();
    expect(out[0] >> 4).toBe(4);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
  });

  it("clearPeer clears the IPv6 path too; setPeer6 on a cleared or out-of-range peer is E_RANGE", () => {
    const { dp } = node2();
    const raw = dp.raw;
    dp.clearPeer(0);
    expect(raw.setPeer6(0, ...A6(W3_6))).toBe(abi.E_RANGE);
    expect(raw.setPeer6(raw.peerCapacity(), ...A6(W3_6))).toBe(abi.E_RANGE);
    expect(raw.setPeer6(0xffffffff, 0n, 0n)).toBe(abi.E_RANGE);
    tx(dp, [podUdp("198.19.2.5", "198.19.3.7")]);
    expect(dp.result(0).reason).toBe(abi.R_NO_FDB);
    // Installed again with setPeer alone: over IPv4, nothing of the IPv6 path left.
    dp.setPeer(0, W3.underlay, W3.mac);
    expect(tx(dp, [podUdp("198.19.2.5", "198.19.3.7")])[0][0] >> 4).toBe(4);
  });

  it("without a node IPv6 underlay address a packet for an IPv6 peer is a counted no_route drop (VXLAN, IPIP, IPv6 inner)", () => {
    const { dp } = node2();
    expect(dp.raw.configureUnderlay6(0n, 0n)).toBe(abi.OK);
    const before = dp.counters();
    tx(dp, [podUdp("198.19.2.5", "198.19.3.7"), podUdp("198.19.2.5", "198.19.1.7"), podUdp6(`${P2}5`, `${P3}7`), podUdp6(`${P2}5`, `${P1}7`),
      podUdp("198.19.2.5", "198.19.3.7", { size: 1450 })]);
    for (let k = 0; k < 5; k++) expect(dp.result(k)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_NO_ROUTE });
    const after = dp.counters();
    expect(after.drop_no_route - before.drop_no_route).toBe(5n);
    expect(after.tx_vxlan_packets).toBe(before.tx_vxlan_packets);
    expect(after.tx_ipip_packets).toBe(before.tx_ipip_packets);
    // Configured again: the peers' sums are rebuilt and the packets leave with valid checksums.
    expect(dp.raw.configureUnderlay6(...A6(NODE6))).toBe(abi.OK);
    const [out] = tx(dp, [podUdp("198.19.2.5", "198.19.3.7")]);
    expect(parseIpv6(out).src).toBe(NODE6);
    expect(udp6Verifies(out)).toBe(true);
  });

  it("an IPv4 peer next to IPv6 ones is unchanged (50-byte VXLAN, checksum 0)", () => {
    const { dp } = node2();
    dp.setPeer(0, W3.underlay, W3.mac); // worker3 over IPv4, worker1 stays over IPv6
    const [v, i] = tx(dp, [podUdp("198.19.2.5", "198.19.3.7"), podUdp("198.19.2.5", "198.19.1.7")]);
    expect(parseIpv4(v)).toMatchObject({ version: 4, proto: 17, checksumOk: true });
    expect((v[26] << 8) | v[27]).toBe(0);
    expect(parseIpv6(i).next).toBe(4);
  });
});

/** The ICMP error at `k` (IPv4, tun mode): type, code, next-hop MTU. */
function icmpOf(dp: Dataplane, k: number) {
  const o = dp.readPacket(k);
  const h = parseIpv4(o);
  return { verdict: dp.result(k).verdict, reason: dp.result(k).reason, type: h.payload[0], code: h.payload[1], mtu: (h.payload[6] << 8) | h.payload[7] };
}
function icmp6Of(dp: Dataplane, k: number) {
  const h = parseIpv6(dp.readPacket(k));
  const p = h.payload;
  return { verdict: dp.result(k).verdict, reason: dp.result(k).reason, type: p[0], mtu: ((p[4] << 24) | (p[5] << 16) | (p[6] << 8) | p[7]) >>> 0 };
}
/** An IPv4/UDP packet of exactly `len` bytes. */
const sized = (dst: string, len: number, df: boolean) => podUdp("198.19.2.5", dst, { size: len - 28, df });
const sized6 = (dst: string, len: number) => podUdp6(`${P2}5`, dst, { size: len - 48 });

describe("MTU over IPv6: 20 more bytes of outer header, never fragmented", () => {
  const tooBig4 = { verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG, type: 3, code: 4 };

  it("VXLAN: 1430 bytes fit a 1500 underlay; 1431 get fragmentation needed with 1430, DF or not", () => {
    const { dp } = node2();
    tx(dp, [sized("198.19.3.7", 1430, true), sized("198.19.3.7", 1430, false), sized("198.19.3.7", 1431, true), sized("198.19.3.7", 1431, false)]);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.result(0).len).toBe(1500);
    expect(dp.result(1).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(icmpOf(dp, 2)).toMatchObject({ ...tooBig4, mtu: 1430 });
    expect(icmpOf(dp, 3)).toMatchObject({ ...tooBig4, mtu: 1430 });
  });

  it("IPv4 in IPv6: 1460 fit, 1461 get 1460; the same peer over IPv4 takes 1480 and fragments non-DF", () => {
    const { dp } = node2();
    tx(dp, [sized("198.19.1.7", 1460, true), sized("198.19.1.7", 1461, true), sized("198.19.1.7", 1461, false)]);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1500 });
    expect(icmpOf(dp, 1)).toMatchObject({ ...tooBig4, mtu: 1460 });
    expect(icmpOf(dp, 2)).toMatchObject({ ...tooBig4, mtu: 1460 });
    dp.setPeer(1, W1.underlay, W1.mac);
    tx(dp, [sized("198.19.1.7", 1480, true), sized("198.19.1.7", 1481, true), sized("198.19.1.7", 1481, false)]);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1500 });
    expect(icmpOf(dp, 1)).toMatchObject({ ...tooBig4, mtu: 1480 });
    expect(dp.result(2)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_FRAG_NEEDED_NO_DF });
  });

  it("IPv6 inner: packet too big with the size that fits (VXLAN 1430, IPv6 in IPv6 1460)", () => {
    const { dp } = node2();
    tx(dp, [sized6(`${P3}7`, 1430), sized6(`${P3}7`, 1431), sized6(`${P1}7`, 1460), sized6(`${P1}7`, 1461)]);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1500 });
    expect(icmp6Of(dp, 1)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG, type: 2, mtu: 1430 });
    expect(dp.result(2)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1500 });
    expect(icmp6Of(dp, 3)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG, type: 2, mtu: 1460 });
  });

  it("a learnt path MTU binds every packet, DF or not, with the IPv6 overhead; a lower tunnel MTU wins", () => {
    const { dp } = node2();
    expect(dp.setPeerPmtu(W3.underlay, 1400, 60_000)).toBe(true);
    expect(dp.setPeerPmtu(W1.underlay, 1400, 60_000)).toBe(true);
    tx(dp, [sized("198.19.3.7", 1330, false), sized("198.19.3.7", 1331, false), sized("198.19.3.7", 1331, true),
      sized("198.19.1.7", 1360, false), sized("198.19.1.7", 1361, false), sized6(`${P3}7`, 1331)]);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1400 });
    expect(icmpOf(dp, 1)).toMatchObject({ ...tooBig4, mtu: 1330 });
    expect(icmpOf(dp, 2)).toMatchObject({ ...tooBig4, mtu: 1330 });
    expect(dp.result(3)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, len: 1400 });
    expect(icmpOf(dp, 4)).toMatchObject({ ...tooBig4, mtu: 1360 });
    expect(icmp6Of(dp, 5)).toMatchObject({ type: 2, mtu: 1330 });
    const low = node2({ mtu: 1300 }).dp;
    expect(low.setPeerPmtu(W3.underlay, 1400, 60_000)).toBe(true);
    tx(low, [sized("198.19.3.7", 1230, false), sized("198.19.3.7", 1231, false)]);
    expect(low.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(icmpOf(low, 1)).toMatchObject({ ...tooBig4, mtu: 1230 });
  });
});

describe("path MTU learnt from IPv4 ICMP", () => {
  it("an IPv4 fragmentation-needed quoting a packet to the peer's IPv4 identity does not lower an IPv6 peer's path MTU", () => {
    const { dp } = node2({ over6: false });
    const [vx] = tx(dp, [podUdp("198.19.2.5", "198.19.3.7", { size: 1200 })]);
    expect(vx[0] >> 4).toBe(4);
    const icmp = new Uint8Array(8 + 28);
    icmp[0] = 3;
    icmp[1] = 4;
    new DataView(icmp.buffer).setUint16(6, 1250);
    icmp.set(vx.subarray(0, 28), 8);
    new DataView(icmp.buffer).setUint16(2, inetChecksum(icmp));
    const err = ipv4({ src: "198.18.0.1", dst: W2.underlay, proto: 1, payload: icmp });
    expect(dp.raw.setPeer6(0, ...A6(W3_6))).toBe(abi.OK);
    dp.writePacket(0, err);
    const ignored = dp.counters().pmtu_ignored;
    expect(dp.processIcmp(1)).toEqual([]);
    expect(dp.counters().pmtu_ignored - ignored).toBe(1n);
    expect(dp.peerPmtu(0)).toBe(1500);
    // The same error while the peer is over IPv4 is taken.
    expect(dp.raw.setPeer6(0, 0n, 0n)).toBe(abi.OK);
    dp.writePacket(0, err);
    expect(dp.processIcmp(1)).toHaveLength(1);
    expect(dp.peerPmtu(0)).toBe(1250);
  });
});

/** worker3 of helpers/topology with IPv6 inner routes: worker2's /64 over VXLAN (nh 1), worker1's over IPIP (nh 2). */
function node3(): Node {
  const n = worker3();
  n.dp.configure({ mode: "tun", underlay: W3.underlay, overlay: W3.vtep, vtepMac: W3.mac, devMac: DEV_MAC, vni: 100, overlay6: a6big(P3) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P3, 64, 0);
  r6.add(P2, 64, 1);
  r6.add(P1, 64, 2);
  return n;
}

describe("processIp6TunnelBatch: IPv4/IPv6 in IPv6 received on an AF_INET6 raw socket", () => {
  it("delivers, refuses and counts", () => {
    const { dp } = node3();
    const good4 = ipv4({ src: "198.19.1.9", dst: "198.19.3.7", proto: 17, tos: 2, payload: udp("198.19.1.9", "198.19.3.7", 5, 6, payload(40)) });
    const good6 = podUdp6(`${P1}9`, `${P3}7`, { tclass: 0x21 });
    const notEct = ipv4({ src: "198.19.1.9", dst: "198.19.3.7", proto: 17, tos: 0, payload: udp("198.19.1.9", "198.19.3.7", 5, 6, payload(40)) });
    const garbage = good4.slice();
    garbage[0] = 0x55;
    const cases: [Uint8Array, { addr?: number; tos?: number; off?: number }][] = [
      [good4, { addr: W1.underlay }], // 0 delivered
      [good6, { addr: W1.underlay }], // 1 delivered
      [good4, { addr: ip("198.18.0.77") }], // 2 unknown identity
      [good4, { addr: 0 }], // 3 no identity
      [ipv4({ src: "198.19.2.9", dst: "198.19.3.7", proto: 17, payload: udp("198.19.2.9", "198.19.3.7", 5, 6, payload(8)) }), { addr: W1.underlay }], // 4 worker2's pod via worker1
      [podUdp6(`${P2}9`, `${P3}7`), { addr: W1.underlay }], // 5 the same in IPv6
      [good4, { addr: W1.underlay, tos: 3 }], // 6 CE onto ECT(0)
      [good6, { addr: W1.underlay, tos: 3 }], // 7 CE onto Not-ECT (tclass 0x21: ECT(1))... ECT(1) -> CE
      [notEct, { addr: W1.underlay, tos: 3 }], // 8 CE onto Not-ECT: dropped
      [garbage, { addr: W1.underlay }], // 9 version 5
      [new Uint8Array(0), { addr: W1.underlay }], // 10 nothing
      [good4, { addr: W1.underlay, off: 8 }], // 11 offset inside the headroom
      [good4, { addr: W2.underlay }], // 12 sent by worker2 (a VXLAN peer): its pods only
    ];
    cases.forEach(([p, x], k) => dp.writePacket(k, p, x));
    const n = cases.length;
    // An offset past the slot's end, after writing (writePacket refuses it).
    dp.writePacket(n, good4, { addr: W1.underlay });
    dp.dv.setUint32(dp.metaPtr(n) + abi.META_OFF, dp.slotSize - 10, true);
    const before = dp.counters();
    expect(dp.raw.processIp6TunnelBatch(n + 1)).toBe(n + 1);
    const res = Array.from({ length: n + 1 }, (_, k) => dp.result(k));
    expect(res[0]).toMatchObject({ verdict: abi.VERDICT_TO_DEVICE, peer: 1 });
    expect(Array.from(dp.readPacket(0))).toEqual(Array.from(good4));
    expect(res[1]).toMatchObject({ verdict: abi.VERDICT_TO_DEVICE, peer: 1 });
    expect(Array.from(dp.readPacket(1))).toEqual(Array.from(good6));
    expect(res[2].reason).toBe(abi.R_UNKNOWN_PEER);
    expect(res[3].reason).toBe(abi.R_UNKNOWN_PEER);
    expect(res[4].reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(res[5].reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(res[6].verdict).toBe(abi.VERDICT_TO_DEVICE);
    const ce = parseIpv4(dp.readPacket(6));
    expect(ce.tos & 3).toBe(3);
    expect(ce.checksumOk).toBe(true);
    expect(res[7].verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(dp.readPacket(7)).tclass).toBe(0x23);
    expect(res[8].reason).toBe(abi.R_ECN_CE_NOT_ECT);
    expect(res[9].reason).toBe(abi.R_BAD_IP_HEADER);
    expect(res[10].reason).toBe(abi.R_TRUNCATED);
    expect(res[11].reason).toBe(abi.R_BAD_OFFSET);
    expect(res[12].reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(res[13].reason).toBe(abi.R_BAD_OFFSET);
    for (const k of [2, 3, 4, 5, 8, 9, 10, 11, 12, 13]) expect(res[k].verdict).toBe(abi.VERDICT_DROP);
    const after = dp.counters();
    const d = (name: string) => after[name] - before[name];
    // Admitted packets count as IPIP received; the two bad offsets do not.
    expect(d("rx_ipip_packets")).toBe(BigInt(n + 1 - 2));
    const admittedBytes = cases.filter((_, k) => k !== 11).reduce((s, [p]) => s + p.length, 0);
    expect(d("rx_ipip_bytes")).toBe(BigInt(admittedBytes));
    expect(d("to_device_packets")).toBe(4n);
    expect(d("verdict_to_device")).toBe(4n);
    expect(d("verdict_drop")).toBe(10n);
    expect(d("drop_unknown_peer")).toBe(2n);
    expect(d("drop_spoofed_source")).toBe(3n);
    expect(d("drop_ecn_ce_not_ect")).toBe(1n);
    expect(d("drop_bad_ip_header")).toBe(1n);
    expect(d("drop_truncated")).toBe(1n);
    expect(d("drop_bad_offset")).toBe(2n);
    expect(d("batches")).toBe(1n);
  });

  it("a VXLAN datagram that came over IPv6 goes through processVxlanBatch with the peer's IPv4 identity", () => {
    // What worker2 sends to worker3 over IPv6, the UDP payload as the AF_INET6 socket returns it.
    const { dp: w2 } = node2();
    const inner = podUdp("198.19.2.5", "198.19.3.7", { tos: 0x02 });
    const [out] = tx(w2, [inner]);
    const { dp: w3 } = node3();
    w3.writePacket(0, out.subarray(48), { addr: W2.underlay, tos: 3 });
    w3.processVxlan(1);
    expect(w3.result(0)).toMatchObject({ verdict: abi.VERDICT_TO_DEVICE, peer: 0 });
    expect(parseIpv4(w3.readPacket(0)).tos).toBe(3);
  });
});

describe("offload paths", () => {
  it("collectVerdictsGso: VXLAN over either underlay goes to the UDP GSO list, IP in IPv6 and the rest to the raw list", () => {
    const { dp, routes } = node2();
    // A second VXLAN peer (peer 3) over IPv4: worker5.
    const W5 = { underlay: ip("198.18.0.15"), vtep: ip("198.19.5.0"), mac: 0x0e0000000500n };
    dp.setPeer(3, W5.underlay, W5.mac);
    dp.setNexthop(5, "vxlan", 3, W5.vtep);
    dp.neighSet(W5.vtep, W5.mac);
    dp.fdbSet(W5.mac, 3);
    routes.add("198.19.5.0", 24, 5);
    const outs = tx(dp, [podUdp("198.19.2.5", "198.19.3.7"), podUdp("198.19.2.5", "198.19.5.7"), podUdp("198.19.2.5", "198.19.1.7"),
      podUdp("198.19.2.5", "198.19.4.7"), podUdp("198.19.2.5", "198.19.2.7")]);
    expect(outs[0][9]).toBe(17); // what an IPv4-only check would take for UDP
    const raw = dp.raw;
    const s = Number(raw.allocScratch(4 * 128 + 16));
    const [toVxlan, toRaw, toDevice, counts] = [s, s + 128, s + 256, s + 384];
    raw.collectVerdictsGso(5, toVxlan, toRaw, toDevice, counts);
    const dv = dp.dv;
    const list = (at: number, n: number) => Array.from({ length: n }, (_, k) => dv.getUint16(at + 2 * k, true));
    const [x, r, d] = [dv.getUint32(counts, true), dv.getUint32(counts + 4, true), dv.getUint32(counts + 8, true)];
    expect(outs[0][0] >> 4).toBe(6);
    expect(list(toVxlan, x)).toEqual([0, 1]);
    expect(list(toRaw, r)).toEqual([2, 3]);
    expect(list(toDevice, d)).toEqual([4]);
  });

  const TAP_MAC = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
  const MSS = 1360; // segments of 1400 bytes fit VXLAN over IPv6 in 1500
  function superframe(data: Uint8Array): Uint8Array {
    return tsoFrame(ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 6, ttl: 64, id: 300, df: true, payload: tcp("198.19.2.5", "198.19.3.7", 40000, 5201, 0x18, data, 1_000_000, 77) }), MSS);
  }

  it("tunnel GSO refuses a super-frame for an IPv6 peer before its representative, and the frame is segmented whole", () => {
    const { dp } = node2();
    const raw = dp.raw;
    raw.gsoSetup((TAP_MAC[0] << 8) | TAP_MAC[1], ((TAP_MAC[2] << 24) | (TAP_MAC[3] << 16) | (TAP_MAC[4] << 8) | TAP_MAC[5]) >>> 0, 0);
    const buf = Number(raw.allocScratch(40_000)) + 128;
    const data = payload(10 * MSS + 7);
    const sf = superframe(data);
    dp.u8.set(sf, buf);
    expect(raw.gsoSegments(buf, sf.length)).toBe(0);
    expect(raw.gsoRepresentative(buf, sf.length, 0)).toBe(0);
    // The worker segments it instead (vnet.ts TnlGsoDevice): every segment leaves over IPv6.
    const k = raw.ingestSuperframe(buf, sf.length, 0);
    expect(k).toBe(11);
    dp.processPod(k);
    let bytes = 0;
    for (let i = 0; i < k; i++) {
      expect(dp.result(i).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
      const o = dp.readPacket(i);
      expect(parseIpv6(o)).toMatchObject({ version: 6, next: 17, dst: W3_6 });
      expect(udp6Verifies(o)).toBe(true);
      bytes += o.length - 70 - 40;
    }
    expect(bytes).toBe(data.length);
    // The same peer over IPv4: the frame may leave whole.
    dp.setPeer(0, W3.underlay, W3.mac);
    dp.u8.set(sf, buf);
    expect(raw.gsoSegments(buf, sf.length)).toBe(11);
  });

  it("gsoBuild never builds a frame from an IPv6 outer header (the peer changed family after the representative was taken)", () => {
    const { dp } = node2({ over6: false });
    const raw = dp.raw;
    raw.gsoSetup((TAP_MAC[0] << 8) | TAP_MAC[1], ((TAP_MAC[2] << 24) | (TAP_MAC[3] << 16) | (TAP_MAC[4] << 8) | TAP_MAC[5]) >>> 0, 0);
    const buf = Number(raw.allocScratch(40_000)) + 128;
    const sf = superframe(payload(4 * MSS));
    dp.u8.set(sf, buf);
    expect(raw.gsoRepresentative(buf, sf.length, 0)).toBe(4);
    expect(raw.setPeer6(0, ...A6(W3_6))).toBe(abi.OK);
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(raw.gsoBuild(0, buf, sf.length, 4)).toBe(0);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY); // flushed as any packet
  });
});

describe.skipIf(!haveTshark())("tshark dissects IPv6-underlay encapsulation", () => {
  it("VXLAN over IPv6: UDP checksum good, VNI, inner IPv4 and UDP valid; IPv4 in IPv6: next header 4, inner valid", () => {
    const { dp } = node2();
    const outs = tx(dp, [
      podUdp("198.19.2.5", "198.19.3.7", { size: 333 }),
      podUdp("198.19.2.6", "198.19.3.8", { size: 1200, tos: 0x2a }),
      podUdp("198.19.2.5", "198.19.1.7", { size: 77 }),
    ]);
    const rows = tsharkFields(outs.slice(0, 2), ["ipv6.nxt", "ipv6.plen", "ipv6.hlim", "udp.checksum.status", "vxlan.vni", "ip.checksum.status", "ip.src", "udp.length", "eth.type"], {
      prefs: ["udp.check_checksum:TRUE", "ip.check_checksum:TRUE"],
    });
    rows.forEach((r, i) => {
      const [nxt, plen, hlim, udpCsum, vni, ipCsum, src, udpLen, etype] = r;
      expect(nxt).toBe("17");
      expect(Number(plen)).toBe(outs[i].length - 40);
      expect(hlim).toBe("64");
      expect(udpCsum).toBe("1,1"); // good: the outer (over IPv6) and the inner
      expect(vni).toBe("100");
      expect(ipCsum).toBe("1");
      expect(src).toBe(i === 0 ? "198.19.2.5" : "198.19.2.6");
      expect(udpLen.split(",").map(Number)[0]).toBe(outs[i].length - 40);
      expect(etype).toBe("0x0800");
    });
    const [ipip] = tsharkFields(outs.slice(2), ["ipv6.nxt", "ipv6.dst", "ip.checksum.status", "ip.dst", "udp.checksum.status"], {
      prefs: ["udp.check_checksum:TRUE", "ip.check_checksum:TRUE"],
    });
    expect(ipip).toEqual(["4", W1_6, "1", "198.19.1.7", "1"]);
  });
});

// --- small helpers ------------------------------------------------------------
/** The unfolded pseudo-header sum of the IPv6/UDP packet `out`. */
function pseudo6Sum(out: Uint8Array): number {
  let s = 0;
  for (let i = 8; i < 40; i += 2) s += (out[i] << 8) | out[i + 1];
  const len = (out[4] << 8) | out[5];
  return s + len + 17;
}
