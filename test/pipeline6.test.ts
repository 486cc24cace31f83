// IPv6 through the batch pipeline (issue 16): pod side -> VXLAN (inner
// EtherType 0x86DD) / IPv6-in-IPv4 (protocol 41) -> decap -> pod side,
// ICMPv6 errors (RFC 4443), anti-spoofing, RFC 6040 on the traffic class,
// and proxy neighbour discovery on a tap (RFC 4861).
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import { concat, ethernet, ipStr, ipv4, mac, macBytes, parseIpv4, vxlanHeader } from "./helpers/packets.js";
import { a6, a6big, icmp6, ipv6, neighborSolicit, parseIpv6, pseudo6, udp6 } from "./helpers/packets6.js";
import { DEV_MAC, W1, W2, W3, worker2, worker3, type Node } from "./helpers/topology.js";
import type { DeviceMode } from "../src/dataplane/dataplane.js";

const P1 = "2001:2:0:1::";
const P2 = "2001:2:0:2::";
const P3 = "2001:2:0:3::";
const P4 = "2001:2:0:4::";
const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);

function podUdp6(src: string, dst: string, o: { size?: number; tclass?: number; hlim?: number; sport?: number } = {}) {
  return ipv6({ src, dst, next: 17, tclass: o.tclass ?? 0, hlim: o.hlim ?? 64, flow: 0x12345, payload: udp6(src, dst, o.sport ?? 40000, 8080, payload(o.size ?? 100)) });
}

/** worker2 of helpers/topology with IPv6: own 2001:2:0:2::/64 (local), worker3's
 *  /64 over VXLAN (nh 1), worker1's over IPIP, i.e. protocol 41 (nh 2),
 *  worker4's direct (nh 3), a blackhole /112 (nh 4). */
function dual2(mode: DeviceMode = "tun", overlay6 = true): Node & { r6: RouteRules6 } {
  const n = worker2(mode);
  n.dp.configure({ mode, underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100, underlayMtu: 1500, overlay6: overlay6 ? a6big(P2) : 0n });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P2, 64, 0);
  r6.add(P3, 64, 1);
  r6.add(P1, 64, 2);
  r6.add(P4, 64, 3);
  r6.add("2001:2:0:96::", 112, 4);
  return { ...n, r6 };
}

/** worker3 with IPv6: own 2001:2:0:3::/64, worker2's over VXLAN (nh 1), worker1's over IPIP (nh 2). */
function dual3(mode: DeviceMode = "tun"): Node & { r6: RouteRules6 } {
  const n = worker3(mode);
  n.dp.configure({ mode, underlay: W3.underlay, overlay: W3.vtep, vtepMac: W3.mac, devMac: DEV_MAC, vni: 100, overlay6: a6big(P3) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P3, 64, 0);
  r6.add(P2, 64, 1);
  r6.add(P1, 64, 2);
  return { ...n, r6 };
}

describe("IPv6 pod side -> VXLAN", () => {
  const { dp } = dual2();

  it("encapsulates with EtherType 0x86DD, the peer's VTEP MAC, DF and the traffic class as TOS", () => {
    const inner = podUdp6(`${P2}5`, `${P3}7`, { tclass: 0xb8 | 2, hlim: 1 });
    dp.writePacket(0, inner);
    dp.processPod(1);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(ipStr(r.addr)).toBe("198.18.1.13");
    expect(r.peer).toBe(0);
    const out = dp.readPacket(0);
    expect(out.length).toBe(inner.length + 50);
    const o = parseIpv4(out);
    expect(o).toMatchObject({ proto: 17, src: "198.18.0.12", dst: "198.18.1.13", df: true, checksumOk: true, tos: 0xb8 | 2 });
    expect(o.totalLen).toBe(out.length);
    const u = new DataView(out.buffer, 20, 8);
    expect(u.getUint16(2)).toBe(4789);
    expect(u.getUint16(4)).toBe(out.length - 20);
    expect(Array.from(out.subarray(28, 36))).toEqual(Array.from(vxlanHeader(100)));
    expect(Array.from(out.subarray(36, 42))).toEqual(macBytes(W3.mac));
    expect(Array.from(out.subarray(42, 48))).toEqual(macBytes(W2.mac));
    expect((out[48] << 8) | out[49]).toBe(0x86dd);
    // Byte for byte, hop limit 1 included: the kernel took the hop.
    expect(Array.from(out.subarray(50))).toEqual(Array.from(inner));
  });

  it("keeps a flow on one source port and spreads flows", () => {
    const ports = new Set<number>();
    for (let f = 0; f < 64; f++) {
      for (let rep = 0; rep < 2; rep++) dp.writePacket(rep, podUdp6(`${P2}5`, `${P3}7`, { sport: 1000 + f }));
      dp.processPod(2);
      const a = dp.readPacket(0), b = dp.readPacket(1);
      expect((a[20] << 8) | a[21]).toBe((b[20] << 8) | b[21]);
      ports.add((a[20] << 8) | a[21]);
    }
    expect(ports.size).toBeGreaterThan(48);
  });

  it("IPv4 and IPv6 in one batch each take their own path", () => {
    const v4 = ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, payload: payload(30) });
    dp.writePacket(0, v4);
    dp.writePacket(1, podUdp6(`${P2}5`, `${P3}7`));
    dp.writePacket(2, v4);
    dp.processPod(3);
    expect([0, 1, 2].map((k) => dp.result(k).verdict)).toEqual([abi.VERDICT_TX_UNDERLAY, abi.VERDICT_TX_UNDERLAY, abi.VERDICT_TX_UNDERLAY]);
    expect([0, 1, 2].map((k) => { const f = dp.readPacket(k); return (f[48] << 8) | f[49]; })).toEqual([0x0800, 0x86dd, 0x0800]);
  });
});

describe("IPv6 in IPv4 (protocol 41)", () => {
  it("encapsulates for an IPIP peer with protocol 41, a valid outer checksum and DF", () => {
    const { dp } = dual2();
    const inner = podUdp6(`${P2}5`, `${P1}9`, { tclass: 0x21 });
    dp.writePacket(0, inner);
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const out = dp.readPacket(0);
    expect(parseIpv4(out)).toMatchObject({ proto: 41, src: "198.18.0.12", dst: "198.18.0.11", df: true, checksumOk: true, tos: 0x21, totalLen: inner.length + 20 });
    expect(Array.from(out.subarray(20))).toEqual(Array.from(inner));
  });
  it("decapsulates from a known peer, and refuses spoofed sources and strangers", () => {
    const { dp } = dual3();
    const wrap = (inner: Uint8Array, src = "198.18.0.11") => ipv4({ src, dst: "198.18.1.13", proto: 41, payload: inner });
    const good = podUdp6(`${P1}9`, `${P3}7`);
    dp.writePacket(0, wrap(good));
    dp.writePacket(1, wrap(podUdp6(`${P2}9`, `${P3}7`))); // worker2's pod, sent by worker1
    dp.writePacket(2, wrap(good, "198.18.0.77"));
    dp.processIpip(3);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(Array.from(dp.readPacket(0))).toEqual(Array.from(good));
    expect(dp.result(1).reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(dp.result(2).reason).toBe(abi.R_UNKNOWN_PEER);
  });
});

describe("IPv6 VXLAN decap", () => {
  const { dp } = dual3();
  const frame = (inner: Uint8Array, dst = W3.mac) => concat(vxlanHeader(100), ethernet(dst, W2.mac, 0x86dd, inner));
  const run = (pkt: Uint8Array, tos = 0) => {
    dp.writePacket(0, pkt, { addr: W2.underlay, addr2: W3.underlay, tos });
    dp.processVxlan(1);
    return dp.result(0);
  };

  it("delivers the inner packet unchanged to the device", () => {
    const inner = podUdp6(`${P2}5`, `${P3}7`);
    expect(run(frame(inner)).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(Array.from(dp.readPacket(0))).toEqual(Array.from(inner));
  });
  it("a round trip from worker2's encapsulation", () => {
    const w2 = dual2();
    const inner = podUdp6(`${P2}5`, `${P3}7`, { size: 900 });
    w2.dp.writePacket(0, inner);
    w2.dp.processPod(1);
    const outer = w2.dp.readPacket(0);
    expect(run(outer.subarray(28), outer[1]).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(Array.from(dp.readPacket(0))).toEqual(Array.from(inner));
  });
  it("anti-spoofing: an inner source outside the sender's IPv6 pod CIDRs", () => {
    expect(run(frame(podUdp6(`${P1}5`, `${P3}7`))).reason).toBe(abi.R_SPOOFED_SOURCE);
    expect(run(frame(podUdp6("2001:2:0:99::5", `${P3}7`))).reason).toBe(abi.R_SPOOFED_SOURCE);
  });
  it("RFC 6040 on the traffic class: CE propagates, CE on Not-ECT drops", () => {
    expect(run(frame(podUdp6(`${P2}5`, `${P3}7`, { tclass: 0xb8 | 2 })), 3).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(dp.readPacket(0)).tclass).toBe(0xb8 | 3);
    expect(run(frame(podUdp6(`${P2}5`, `${P3}7`, { tclass: 0xb8 })), 3).reason).toBe(abi.R_ECN_CE_NOT_ECT);
    expect(run(frame(podUdp6(`${P2}5`, `${P3}7`, { tclass: 2 })), 1).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(dp.readPacket(0)).tclass).toBe(1); // ECT(1) outer on ECT(0) inner
  });
  it("RFC 6040 Figure 4, every cell, on the traffic class (DSCP kept)", () => {
    // rows: inner Not-ECT, ECT(1), ECT(0), CE; columns: outer the same; -1: drop.
    const fig4 = [[0, 0, 0, -1], [1, 1, 1, 3], [2, 1, 2, 3], [3, 3, 3, 3]];
    for (let inner = 0; inner < 4; inner++) {
      for (let outer = 0; outer < 4; outer++) {
        const r = run(frame(podUdp6(`${P2}5`, `${P3}7`, { tclass: 0xb8 | inner })), 0x28 | outer);
        const want = fig4[inner][outer];
        if (want < 0) {
          expect(r.reason).toBe(abi.R_ECN_CE_NOT_ECT);
        } else {
          expect(r.verdict).toBe(abi.VERDICT_TO_DEVICE);
          expect(parseIpv6(dp.readPacket(0)).tclass, `inner ${inner} outer ${outer}`).toBe(0xb8 | want);
        }
      }
    }
  });
  it("finishes a kernel VTEP's partial TCP checksum", () => {
    const src = `${P2}5`, dst = `${P3}7`;
    const t = new Uint8Array(20 + 33);
    t[12] = 5 << 4;
    t[13] = 0x18;
    t.set(payload(33), 20);
    let s = pseudo6(src, dst, 6, t.length);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    new DataView(t.buffer).setUint16(16, s); // folded pseudo-header sum, not complemented
    expect(run(frame(ipv6({ src, dst, next: 6, payload: t }))).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(dp.readPacket(0)).l4ok).toBe(true);
  });
  it("malformed inner headers: counted drops at every truncation", () => {
    const whole = frame(podUdp6(`${P2}5`, `${P3}7`, { size: 20 }));
    for (let n = 0; n < whole.length; n++) {
      const r = run(whole.subarray(0, n));
      expect(r.verdict).toBe(abi.VERDICT_DROP);
      expect(r.reason).not.toBe(abi.R_NONE);
    }
    const linkLocal = podUdp6("fe80::5", `${P3}7`);
    expect(run(frame(linkLocal)).reason).toBe(abi.R_MARTIAN);
  });
});

describe("IPv6 routing decisions and ICMPv6 errors", () => {
  it("no route: destination unreachable (code 0) from the IPv6 overlay address, quoting the packet", () => {
    const { dp } = dual2();
    const pkt = podUdp6(`${P2}5`, "2001:2:0:77::1");
    dp.writePacket(0, pkt);
    dp.processPod(1);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_REPLY);
    expect(r.reason).toBe(abi.R_NO_ROUTE);
    const e = parseIpv6(dp.readPacket(0));
    expect(e).toMatchObject({ version: 6, next: 58, src: "2001:2:0:2::", dst: `${P2}5`, hlim: 64, l4ok: true });
    expect([e.payload[0], e.payload[1]]).toEqual([1, 0]);
    expect(Array.from(e.payload.subarray(8))).toEqual(Array.from(pkt));
  });
  it("packet too big: type 2 with the tunnel MTU for the peer, within 1280 bytes", () => {
    const { dp } = dual2();
    const pkt = podUdp6(`${P2}5`, `${P3}7`, { size: 1500 - 48 });
    expect(pkt.length).toBe(1500);
    dp.writePacket(0, pkt);
    dp.writePacket(1, podUdp6(`${P2}5`, `${P3}7`, { size: 1450 - 48 })); // fits exactly
    dp.processPod(2);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG });
    expect(dp.result(1).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const e = parseIpv6(dp.readPacket(0));
    expect(e.l4ok).toBe(true);
    expect(e.payload[0]).toBe(2);
    expect(new DataView(e.payload.buffer, e.payload.byteOffset).getUint32(4)).toBe(1450);
    expect(40 + e.plen).toBe(1280);
    expect(Array.from(e.payload.subarray(8))).toEqual(Array.from(pkt.subarray(0, 1280 - 48)));
    // Through an IPIP peer (protocol 41) the limit is 1480.
    dp.writePacket(0, podUdp6(`${P2}5`, `${P1}9`, { size: 1481 - 48 }));
    dp.processPod(1);
    const e2 = parseIpv6(dp.readPacket(0)).payload;
    expect(new DataView(e2.buffer, e2.byteOffset).getUint32(4)).toBe(1480);
  });
  it("no error about an ICMPv6 error, nor without an IPv6 overlay address", () => {
    const { dp } = dual2();
    const err = ipv6({ src: `${P2}5`, dst: "2001:2:0:77::1", next: 58, payload: icmp6(`${P2}5`, "2001:2:0:77::1", 1, 0, 0, payload(48)) });
    dp.writePacket(0, err);
    dp.processPod(1);
    expect(dp.result(0).reason).toBe(abi.R_ICMP_SUPPRESSED);
    const bare = dual2("tun", false);
    bare.dp.writePacket(0, podUdp6(`${P2}5`, "2001:2:0:77::1"));
    bare.dp.processPod(1);
    expect(bare.dp.result(0).reason).toBe(abi.R_ICMP_SUPPRESSED);
  });
  it("blackhole, direct (the kernel's) and martians are counted drops", () => {
    const { dp } = dual2();
    dp.writePacket(0, podUdp6(`${P2}5`, "2001:2:0:96::10"));
    dp.writePacket(1, podUdp6(`${P2}5`, `${P4}1`));
    dp.writePacket(2, podUdp6(`${P2}5`, "ff02::1"));
    dp.writePacket(3, podUdp6("::", `${P3}7`));
    dp.writePacket(4, podUdp6(`${P2}5`, "fe80::1"));
    const before = dp.counters();
    dp.processPod(5);
    expect([0, 1, 2, 3, 4].map((k) => dp.result(k).reason)).toEqual([abi.R_BLACKHOLE, abi.R_NO_ROUTE, abi.R_MARTIAN, abi.R_MARTIAN, abi.R_MARTIAN]);
    expect(dp.counters().drop_martian - before.drop_martian).toBe(3n);
  });
  it("own pods are delivered to the device; bad lengths are counted drops at every truncation", () => {
    const { dp } = dual2();
    const pkt = podUdp6(`${P3}7`, `${P2}5`);
    dp.writePacket(0, pkt);
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TO_DEVICE);
    for (let n = 1; n < pkt.length; n++) {
      dp.writePacket(0, pkt.subarray(0, n));
      dp.processPod(1);
      expect(dp.result(0).verdict).toBe(abi.VERDICT_DROP);
    }
    const jumbo = pkt.slice();
    jumbo[4] = jumbo[5] = 0; // payload length 0 with a payload: a jumbogram
    dp.writePacket(0, jumbo);
    dp.processPod(1);
    expect(dp.result(0).reason).toBe(abi.R_BAD_IP_HEADER);
  });
});

describe("IPv6 on a tap: proxy neighbour discovery", () => {
  const KMAC = mac("02:00:00:00:aa:01"); // the kernel's side (DEV_MAC)
  const LL = "fe80::aa01";
  const { dp } = dual2("tap");
  const ns = (target: string, o: { src?: string; sll?: bigint | null; corrupt?: boolean } = {}) => {
    const src = o.src ?? LL;
    const pkt = neighborSolicit(src, "ff02::1:ff00:7", target, o.sll === null ? undefined : o.sll ?? KMAC);
    if (o.corrupt) pkt[pkt.length - 1] ^= 1;
    return ethernet(0x3333ff000007n, KMAC, 0x86dd, pkt);
  };

  it("answers a solicitation for a remote pod with our VTEP MAC", () => {
    dp.writePacket(0, ns(`${P3}7`));
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_REPLY);
    const f = dp.readPacket(0);
    expect(Array.from(f.subarray(0, 6))).toEqual(macBytes(KMAC));
    expect(Array.from(f.subarray(6, 12))).toEqual(macBytes(W2.mac));
    expect((f[12] << 8) | f[13]).toBe(0x86dd);
    const na = parseIpv6(f.subarray(14));
    expect(na).toMatchObject({ next: 58, hlim: 255, src: `${P3}7`, dst: LL, plen: 32, l4ok: true });
    const q = na.payload;
    expect([q[0], q[1]]).toEqual([136, 0]);
    expect(q[4] & 0xe0).toBe(0xc0); // Router, Solicited, not Override
    expect(Array.from(q.subarray(8, 24))).toEqual(Array.from(a6(`${P3}7`)));
    expect([q[24], q[25]]).toEqual([2, 1]);
    expect(Array.from(q.subarray(26, 32))).toEqual(macBytes(W2.mac));
    expect(f.length).toBe(14 + 40 + 32);
  });
  it("answers to the frame's source when the solicitation has no link-layer option", () => {
    dp.writePacket(0, ns(`${P1}9`, { sll: null }));
    dp.processPod(1);
    expect(Array.from(dp.readPacket(0).subarray(0, 6))).toEqual(macBytes(KMAC));
  });
  it("ignores DAD, own pods, unrouted and blackholed targets, bad checksums (counted)", () => {
    const before = dp.counters();
    dp.writePacket(0, ns(LL, { src: "::", sll: null }));
    dp.writePacket(1, ns(`${P2}9`));
    dp.writePacket(2, ns("2001:2:0:77::1"));
    dp.writePacket(3, ns("2001:2:0:96::1"));
    dp.writePacket(4, ns(`${P3}7`, { corrupt: true }));
    dp.processPod(5);
    expect([0, 1, 2, 3, 4].map((k) => dp.result(k).reason)).toEqual(Array(5).fill(abi.R_NDP_IGNORED));
    expect(dp.counters().drop_ndp_ignored - before.drop_ndp_ignored).toBe(5n);
  });
  it("never writes an advertisement past the slot, nor answers a multicast or loopback source (found by the fuzzer)", () => {
    const short = ns(`${P3}7`, { sll: null }); // 78 bytes: the 86-byte answer would not fit flush with the slot's end
    dp.writePacket(0, short, { off: dp.slotSize - short.length });
    const full = ns(`${P3}7`); // 86 bytes: fits exactly
    dp.writePacket(1, full, { off: dp.slotSize - full.length });
    dp.writePacket(2, ns(`${P3}7`, { src: "ff02::1" }));
    dp.writePacket(3, ns(`${P3}7`, { src: "::1" }));
    dp.processPod(4);
    expect(dp.result(0).reason).toBe(abi.R_NDP_IGNORED);
    expect(dp.result(1).verdict).toBe(abi.VERDICT_REPLY);
    expect(dp.result(1).off + dp.result(1).len).toBe(dp.slotSize);
    expect([2, 3].map((k) => dp.result(k).reason)).toEqual([abi.R_NDP_IGNORED, abi.R_NDP_IGNORED]);
  });
  it("truncated solicitations never read past the frame", () => {
    const whole = ns(`${P3}7`);
    for (let n = 14; n < whole.length; n++) {
      dp.writePacket(0, whole.subarray(0, n));
      dp.processPod(1);
      expect(dp.result(0).verdict).toBe(abi.VERDICT_DROP);
    }
  });
  it("routes IPv6 frames to our MAC, and delivers to the kernel's MAC", () => {
    dp.writePacket(0, ethernet(W2.mac, KMAC, 0x86dd, podUdp6(`${P2}5`, `${P3}7`)));
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const w3 = dual3("tap");
    const inner = podUdp6(`${P2}5`, `${P3}7`);
    w3.dp.writePacket(0, concat(vxlanHeader(100), ethernet(W3.mac, W2.mac, 0x86dd, inner)), { addr: W2.underlay, addr2: W3.underlay });
    w3.dp.processVxlan(1);
    const f = w3.dp.readPacket(0);
    expect(Array.from(f.subarray(0, 14))).toEqual([...macBytes(DEV_MAC), ...macBytes(W3.mac), 0x86, 0xdd]);
    expect(Array.from(f.subarray(14))).toEqual(Array.from(inner));
  });
  it("an error for a tap goes back to the frame's sender MAC", () => {
    dp.writePacket(0, ethernet(W2.mac, KMAC, 0x86dd, podUdp6(`${P2}5`, "2001:2:0:77::1")));
    dp.processPod(1);
    const f = dp.readPacket(0);
    expect(Array.from(f.subarray(0, 12))).toEqual([...macBytes(KMAC), ...macBytes(W2.mac)]);
    expect(parseIpv6(f.subarray(14))).toMatchObject({ next: 58, l4ok: true, dst: `${P2}5` });
  });
});

describe("a kernel VTEP's IPv6 TCP super-frame in one VXLAN datagram", () => {
  it("is segmented to the tunnel MTU: every byte once, in order, checksums complete", () => {
    const { dp } = dual3();
    const src = `${P2}5`, dst = `${P3}7`;
    const data = payload(20_000, 5);
    const t = new Uint8Array(20 + data.length);
    const dv = new DataView(t.buffer);
    dv.setUint16(0, 5555);
    dv.setUint16(2, 80);
    dv.setUint32(4, 90_000);
    t[12] = 5 << 4;
    t[13] = 0x19; // FIN PSH ACK: only on the last segment
    t.set(data, 20);
    let s = pseudo6(src, dst, 6, t.length);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    dv.setUint16(16, s); // CHECKSUM_PARTIAL
    const datagram = concat(vxlanHeader(100), ethernet(W3.mac, W2.mac, 0x86dd, ipv6({ src, dst, next: 6, payload: t })));
    const buf = Number(dp.raw.allocScratch(65536));
    dp.u8.set(datagram, buf);
    const k = dp.raw.ingestEncapSuperframe(buf, datagram.length, 0, W2.underlay, W3.underlay, 0);
    const mss = 1500 - 50 - 60;
    expect(k).toBe(Math.ceil(data.length / mss));
    dp.processVxlan(k);
    const got: number[] = [];
    for (let j = 0; j < k; j++) {
      expect(dp.result(j).verdict).toBe(abi.VERDICT_TO_DEVICE);
      const h = parseIpv6(dp.readPacket(j));
      expect(h.l4ok).toBe(true);
      expect(40 + h.plen).toBeLessThanOrEqual(1450);
      expect(new DataView(h.payload.buffer, h.payload.byteOffset).getUint32(4)).toBe(90_000 + j * mss);
      expect(h.payload[13]).toBe(j === k - 1 ? 0x19 : 0x10);
      got.push(...h.payload.subarray(20));
    }
    expect(got).toEqual(Array.from(data));
  });
});
