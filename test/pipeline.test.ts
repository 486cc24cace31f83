// The batch pipeline end to end inside one process: pod side -> encap ->
// (wire) -> decap -> pod side, ICMP errors, anti-spoofing, ECN, tap mode.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import {
  arpRequest, concat, ethernet, icmpEcho, inetChecksum, ip, ipStr, ipv4, mac, macBytes, parseIpv4, tcp, udp, vxlanHeader,
} from "./helpers/packets.js";
import { DEV_MAC, W1, W2, W3, W4, worker2, worker3 } from "./helpers/topology.js";

const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);

function podUdp(src: string, dst: string, opts: { ttl?: number; tos?: number; df?: boolean; size?: number; sport?: number } = {}) {
  return ipv4({
    src, dst, proto: 17, ttl: opts.ttl ?? 64, tos: opts.tos ?? 0, df: opts.df ?? true,
    payload: udp(src, dst, opts.sport ?? 40000, 8080, payload(opts.size ?? 100)),
  });
}

describe("pod side -> VXLAN", () => {
  const { dp } = worker2();

  it("encapsulates with the peer's template, patched per packet", () => {
    const inner = podUdp("198.19.2.5", "198.19.3.7", { tos: 0xb8 | 2, df: true });
    dp.writePacket(0, inner);
    expect(dp.processPod(1)).toBe(1);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(r.reason).toBe(abi.R_NONE);
    expect(ipStr(r.addr)).toBe("198.18.1.13");
    expect(r.peer).toBe(0);
    const out = dp.readPacket(0);
    expect(out.length).toBe(inner.length + 50);
    const o = parseIpv4(out);
    expect(o).toMatchObject({ version: 4, hl: 20, proto: 17, ttl: 64, src: "198.18.0.12", dst: "198.18.1.13", df: true, checksumOk: true });
    expect(o.totalLen).toBe(out.length);
    expect(o.tos).toBe(0xb8 | 2); // RFC 6040 normal mode: DSCP and ECN copied
    const u = new DataView(out.buffer, 20, 8);
    const sport = u.getUint16(0);
    expect(sport).toBeGreaterThanOrEqual(32768);
    expect(sport).toBeLessThanOrEqual(60999);
    expect(u.getUint16(2)).toBe(4789);
    expect(u.getUint16(4)).toBe(out.length - 20);
    expect(u.getUint16(6)).toBe(0); // RFC 7348: zero UDP checksum over IPv4
    expect(Array.from(out.subarray(28, 36))).toEqual(Array.from(vxlanHeader(100)));
    expect(Array.from(out.subarray(36, 42))).toEqual(macBytes(W3.mac));
    expect(Array.from(out.subarray(42, 48))).toEqual(macBytes(W2.mac));
    expect(out[48] << 8 | out[49]).toBe(0x0800);
    const i = parseIpv4(out.subarray(50));
    // The node's kernel took its hop when it forwarded the packet to us.
    expect(i.ttl).toBe(64);
    expect(i.checksumOk).toBe(true);
    // The inner packet is the original, byte for byte.
    expect(Array.from(out.subarray(50))).toEqual(Array.from(inner));
  });

  it("keeps a flow on one source port and spreads flows over the range", () => {
    const ports = new Set<number>();
    for (let f = 0; f < 64; f++) {
      for (let rep = 0; rep < 2; rep++) dp.writePacket(rep, podUdp("198.19.2.5", "198.19.3.7", { sport: 1000 + f }));
      dp.processPod(2);
      const a = dp.readPacket(0), b = dp.readPacket(1);
      const pa = (a[20] << 8) | a[21], pb = (b[20] << 8) | b[21];
      expect(pa).toBe(pb);
      ports.add(pa);
    }
    expect(ports.size).toBeGreaterThan(48);
  });

  it("outer ids advance and checksums stay valid across a batch", () => {
    for (let k = 0; k < 32; k++) dp.writePacket(k, podUdp("198.19.2.9", "198.19.3.1", { size: 10 + k }));
    dp.processPod(32);
    const ids = new Set<number>();
    for (let k = 0; k < 32; k++) {
      const o = parseIpv4(dp.readPacket(k));
      expect(o.checksumOk).toBe(true);
      ids.add(o.id);
    }
    expect(ids.size).toBe(32);
  });
});

describe("decap(encap(x)) == x", () => {
  const w2 = worker2();
  const w3 = worker3();

  it("VXLAN worker2 -> worker3 delivers the inner packet", () => {
    const inner = ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 6, ttl: 20, payload: tcp("198.19.2.5", "198.19.3.7", 5555, 80, 0x18, payload(700)) });
    w2.dp.writePacket(0, inner);
    w2.dp.processPod(1);
    const wire = w2.dp.readPacket(0);
    const o = parseIpv4(wire);
    // The receiving socket hands over the UDP payload plus the outer source and TOS.
    w3.dp.writePacket(0, wire.subarray(28), { addr: ip(o.src), addr2: ip(o.dst), tos: o.tos });
    w3.dp.processVxlan(1);
    const r = w3.dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(r.peer).toBe(0);
    const got = w3.dp.readPacket(0);
    // TTL too: each node's kernel takes that node's hop (forward.ts, "TTL").
    expect(Array.from(got)).toEqual(Array.from(inner));
  });

  it("IPIP worker2 -> worker1 -> decap at a worker1 dataplane", () => {
    const inner = podUdp("198.19.2.5", "198.19.1.9", { size: 300 });
    w2.dp.writePacket(0, inner);
    w2.dp.processPod(1);
    const r = w2.dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(ipStr(r.addr)).toBe("198.18.0.11");
    const wire = w2.dp.readPacket(0);
    const o = parseIpv4(wire);
    expect(o).toMatchObject({ proto: 4, src: "198.18.0.12", dst: "198.18.0.11", ttl: 64, checksumOk: true, df: true });
    expect(o.totalLen).toBe(inner.length + 20);
    // worker3 knows worker1 as an ipip peer; make it play worker1's receiving side.
    const rx = worker3();
    rx.dp.configure({ mode: "tun", underlay: W1.underlay, overlay: W1.vtep, vtepMac: W1.mac, vni: 100 });
    rx.dp.setPeer(1, W2.underlay, W2.mac);
    rx.routes.remove("198.19.2.0", 24);
    rx.routes.add("198.19.2.0", 24, 2);
    rx.dp.writePacket(0, wire, { addr: W2.underlay });
    rx.dp.processIpip(1);
    const d = rx.dp.result(0);
    expect(d.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const got = parseIpv4(rx.dp.readPacket(0));
    expect(got.ttl).toBe(64);
    expect(got.checksumOk).toBe(true);
    expect(Array.from(got.payload)).toEqual(Array.from(parseIpv4(inner).payload));
  });
});

describe("routing decisions and ICMP errors", () => {
  const { dp } = worker2();

  it("direct next hop: unencapsulated, TTL as the kernel left it, next hop = peer underlay", () => {
    dp.writePacket(0, podUdp("198.19.2.5", "198.19.4.4"));
    dp.processPod(1);
    const r = dp.result(0);
    expect(r.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(r.addr).toBe(W4.underlay);
    const p = parseIpv4(dp.readPacket(0));
    expect(p.ttl).toBe(64);
    expect(p.checksumOk).toBe(true);
  });

  it("blackhole drops with its reason", () => {
    dp.writePacket(0, podUdp("198.19.2.5", "198.18.96.10"));
    dp.processPod(1);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_BLACKHOLE });
  });

  function expectIcmpError(type: number, code: number, reason: number, orig: Uint8Array, mtu?: number) {
    const r = dp.result(0);
    expect(r).toMatchObject({ verdict: abi.VERDICT_REPLY, reason });
    const out = dp.readPacket(0);
    const o = parseIpv4(out);
    expect(o).toMatchObject({ proto: 1, src: "198.19.2.0", dst: "198.19.2.5", checksumOk: true });
    expect(o.totalLen).toBe(out.length);
    expect(out.length).toBeLessThanOrEqual(576);
    const icmp = o.payload;
    expect(icmp[0]).toBe(type);
    expect(icmp[1]).toBe(code);
    expect(inetChecksum(icmp)).toBe(0);
    if (mtu !== undefined) expect((icmp[6] << 8) | icmp[7]).toBe(mtu);
    // The quote starts with the offending header as received.
    expect(Array.from(icmp.subarray(8, 28))).toEqual(Array.from(orig.subarray(0, 20)));
  }

  it("no route: destination unreachable (net)", () => {
    const pkt = podUdp("198.19.2.5", "198.18.200.1");
    dp.writePacket(0, pkt);
    dp.processPod(1);
    expectIcmpError(3, 0, abi.R_NO_ROUTE, pkt);
  });

  it("TTL 1 from the kernel: forwarded as is (the next node's kernel answers it)", () => {
    const pkt = podUdp("198.19.2.5", "198.19.3.7", { ttl: 1 });
    dp.writePacket(0, pkt);
    dp.processPod(1);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_TX_UNDERLAY, reason: abi.R_NONE });
    expect(parseIpv4(dp.readPacket(0).subarray(50)).ttl).toBe(1);
  });

  it("DF and larger than the tunnel MTU: fragmentation needed with MTU 1450", () => {
    const pkt = podUdp("198.19.2.5", "198.19.3.7", { size: 1430, df: true });
    expect(pkt.length).toBe(1458);
    dp.writePacket(0, pkt);
    dp.processPod(1);
    expectIcmpError(3, 4, abi.R_TOO_BIG, pkt, 1450);
  });

  it("exactly the tunnel MTU passes; IPIP allows 1480", () => {
    dp.writePacket(0, podUdp("198.19.2.5", "198.19.3.7", { size: 1450 - 28 }));
    dp.writePacket(1, podUdp("198.19.2.5", "198.19.1.7", { size: 1480 - 28 }));
    dp.writePacket(2, podUdp("198.19.2.5", "198.19.1.7", { size: 1481 - 28 }));
    dp.processPod(3);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.result(1).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.result(2)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG });
  });

  it("too big without DF is a counted drop", () => {
    dp.writePacket(0, podUdp("198.19.2.5", "198.19.3.7", { size: 1430, df: false }));
    dp.processPod(1);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_FRAG_NEEDED_NO_DF });
  });

  it("no ICMP error about an ICMP error, or about a later fragment", () => {
    const err = ipv4({ src: "198.19.2.5", dst: "198.18.200.1", proto: 1, payload: concat(Uint8Array.of(3, 1, 0, 0, 0, 0, 0, 0), payload(28)) });
    const frag = ipv4({ src: "198.19.2.5", dst: "198.18.200.1", proto: 17, fragOffset: 100, payload: payload(40) });
    dp.writePacket(0, err);
    dp.writePacket(1, frag);
    dp.processPod(2);
    expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_ICMP_SUPPRESSED });
    expect(dp.result(1)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_ICMP_SUPPRESSED });
  });

  it("an echo request to an unroutable address gets an error; echo itself is not an error", () => {
    const ping = ipv4({ src: "198.19.2.5", dst: "198.18.200.1", proto: 1, payload: icmpEcho(7, 1, payload(56)) });
    dp.writePacket(0, ping);
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_REPLY);
  });

  it("malformed input: each gets its own counted reason and the batch goes on", () => {
    const good = podUdp("198.19.2.5", "198.19.3.7");
    const badSum = ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, payload: payload(20), badChecksum: true });
    const badVer = good.slice(); badVer[0] = 0x55; // version 5 (6 is IPv6: pipeline6.test.ts)
    const shortIhl = good.slice(); shortIhl[0] = 0x44;
    const longTot = good.slice(); new DataView(longTot.buffer).setUint16(2, good.length + 1);
    const before = dp.counters();
    dp.writePacket(0, good.subarray(0, 12));
    dp.writePacket(1, badSum);
    dp.writePacket(2, badVer);
    dp.writePacket(3, shortIhl);
    dp.writePacket(4, longTot);
    dp.writePacket(5, good);
    dp.writePacket(6, new Uint8Array(0));
    dp.processPod(7);
    const reasons = [0, 1, 2, 3, 4, 5, 6].map((k) => dp.result(k).reason);
    expect(reasons).toEqual([abi.R_TRUNCATED, abi.R_BAD_IP_CHECKSUM, abi.R_BAD_IP_HEADER, abi.R_BAD_IP_HEADER, abi.R_TRUNCATED, abi.R_NONE, abi.R_TRUNCATED]);
    expect(dp.result(5).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const after = dp.counters();
    expect(after.drop_truncated - before.drop_truncated).toBe(3n);
    expect(after.drop_bad_ip_header - before.drop_bad_ip_header).toBe(2n);
    expect(after.verdict_tx_underlay - before.verdict_tx_underlay).toBe(1n);
    expect(after.rx_pod_packets - before.rx_pod_packets).toBe(7n);
  });

  it("metadata pointing outside the slot is refused, not followed", () => {
    dp.writePacket(0, podUdp("198.19.2.5", "198.19.3.7"));
    dp.dv.setUint32(dp.metaPtr(0) + abi.META_LEN, 0xffffff00, true);
    dp.writePacket(1, podUdp("198.19.2.5", "198.19.3.7"), { off: 8 });
    dp.processPod(2);
    expect(dp.result(0).reason).toBe(abi.R_BAD_OFFSET);
    expect(dp.result(1).reason).toBe(abi.R_BAD_OFFSET);
  });

  it("ICMP errors are rate limited by a token bucket when enabled", () => {
    const { dp: d } = worker2();
    d.setClock(1000);
    d.setIcmpRateLimit(1000, 50); // 1000/s sustained, burst 50
    const send = (n: number) => {
      for (let k = 0; k < n; k++) d.writePacket(k, podUdp("198.19.2.5", "198.18.200.1"));
      d.processPod(n);
      return Array.from({ length: n }, (_, k) => d.result(k));
    };
    const first = send(60);
    expect(first.filter((r) => r.verdict === abi.VERDICT_REPLY).length).toBe(50);
    expect(first.slice(50).every((r) => r.reason === abi.R_ICMP_RATE_LIMITED)).toBe(true);
    d.setClock(1010); // 10 ms at 1000/s: 10 more tokens
    expect(send(20).filter((r) => r.verdict === abi.VERDICT_REPLY).length).toBe(10);
    d.setClock(1010 + 60_000); // long idle: back to the burst, not beyond
    expect(send(60).filter((r) => r.verdict === abi.VERDICT_REPLY).length).toBe(50);
    d.setIcmpRateLimit(0, 0); // unlimited
    expect(send(60).filter((r) => r.verdict === abi.VERDICT_REPLY).length).toBe(60);
    expect(d.counters().drop_icmp_rate_limited).toBe(10n + 10n + 10n);
  });

  it("a batch larger than the instance is clipped", () => {
    expect(dp.processPod(10_000)).toBe(dp.batch);
  });
});

describe("VXLAN decap validation", () => {
  const w3 = worker3();
  const frame = (inner: Uint8Array, dst = W3.mac, type = 0x0800) => ethernet(dst, W2.mac, type, inner);
  const ok = () => podUdp("198.19.2.5", "198.19.3.7");
  const run = (payloadBytes: Uint8Array, addr = W2.underlay, tos = 0) => {
    w3.dp.writePacket(0, payloadBytes, { addr, addr2: W3.underlay, tos });
    w3.dp.processVxlan(1);
    return w3.dp.result(0);
  };

  it("accepts a valid frame and ignores reserved bits", () => {
    expect(run(concat(vxlanHeader(100), frame(ok()))).verdict).toBe(abi.VERDICT_TO_DEVICE);
    const reserved = vxlanHeader(100, 0x08 | 0x80);
    reserved[3] = 0x55;
    reserved[7] = 0x66;
    expect(run(concat(reserved, frame(ok()))).verdict).toBe(abi.VERDICT_TO_DEVICE);
  });
  it("I flag clear", () => expect(run(concat(vxlanHeader(100, 0x00), frame(ok()))).reason).toBe(abi.R_VXLAN_BAD_FLAGS));
  it("wrong VNI", () => expect(run(concat(vxlanHeader(101), frame(ok()))).reason).toBe(abi.R_VXLAN_BAD_VNI));
  it("unknown outer source", () => expect(run(concat(vxlanHeader(100), frame(ok())), ip("198.18.0.99")).reason).toBe(abi.R_UNKNOWN_PEER));
  it("inner source outside the sender's pod CIDRs", () => {
    const spoof = podUdp("198.19.1.5", "198.19.3.7"); // worker1's pod, sent by worker2
    expect(run(concat(vxlanHeader(100), frame(spoof))).reason).toBe(abi.R_SPOOFED_SOURCE);
  });
  it("inner IPv4 header with a bad checksum (found by the fuzzer)", () => {
    const bad = ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, payload: payload(20), badChecksum: true });
    expect(run(concat(vxlanHeader(100), frame(bad))).reason).toBe(abi.R_BAD_IP_CHECKSUM);
  });
  it("inner destination MAC not ours", () => expect(run(concat(vxlanHeader(100), frame(ok(), mac("0e:00:00:00:09:09")))).reason).toBe(abi.R_DST_MAC_MISMATCH));
  it("inner ethertype neither IPv4 nor IPv6", () => expect(run(concat(vxlanHeader(100), frame(ok(), W3.mac, 0x88cc))).reason).toBe(abi.R_BAD_ETHERTYPE));
  it("truncated at every length", () => {
    const whole = concat(vxlanHeader(100), frame(ok()));
    for (let n = 0; n < whole.length; n++) {
      const r = run(whole.subarray(0, n));
      expect(r.verdict, `length ${n}`).toBe(abi.VERDICT_DROP);
    }
  });
  it("trailing bytes after the inner datagram are trimmed", () => {
    const r = run(concat(vxlanHeader(100), frame(ok()), new Uint8Array(9)));
    expect(r.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(r.len).toBe(ok().length);
  });

  // RFC 6040 Figure 4, rows = inner, columns = outer (Not-ECT, ECT(0), ECT(1), CE); -1 = drop.
  const NOT = 0, E1 = 1, E0 = 2, CE = 3;
  const table: Record<number, number[]> = {
    [NOT]: [NOT, NOT, NOT, -1],
    [E0]: [E0, E0, E1, CE],
    [E1]: [E1, E1, E1, CE],
    [CE]: [CE, CE, CE, CE],
  };
  const outerOrder = [NOT, E0, E1, CE];
  for (const inner of [NOT, E0, E1, CE]) {
    outerOrder.forEach((outer, col) => {
      it(`ECN decap inner=${inner} outer=${outer}`, () => {
        const pkt = podUdp("198.19.2.5", "198.19.3.7", { tos: 0x28 | inner });
        const r = run(concat(vxlanHeader(100), frame(pkt)), W2.underlay, 0x28 | outer);
        const want = table[inner][col];
        if (want < 0) {
          expect(r.reason).toBe(abi.R_ECN_CE_NOT_ECT);
        } else {
          expect(r.verdict).toBe(abi.VERDICT_TO_DEVICE);
          const got = parseIpv4(w3.dp.readPacket(0));
          expect(got.tos).toBe(0x28 | want);
          expect(got.checksumOk).toBe(true);
        }
      });
    });
  }
});

describe("IPIP decap validation", () => {
  const w3 = worker3();
  const wrap = (inner: Uint8Array, o: { src?: string; dst?: string; proto?: number } = {}) =>
    ipv4({ src: o.src ?? "198.18.0.11", dst: o.dst ?? "198.18.1.13", proto: o.proto ?? 4, payload: inner });
  const run = (pkt: Uint8Array) => {
    w3.dp.writePacket(0, pkt);
    w3.dp.processIpip(1);
    return w3.dp.result(0);
  };
  const inner = () => podUdp("198.19.1.5", "198.19.3.7");
  it("valid", () => expect(run(wrap(inner())).verdict).toBe(abi.VERDICT_TO_DEVICE));
  it("not addressed to us", () => expect(run(wrap(inner(), { dst: "198.18.1.99" })).reason).toBe(abi.R_NOT_LOCAL_UNDERLAY));
  it("unknown sender", () => expect(run(wrap(inner(), { src: "198.18.0.77" })).reason).toBe(abi.R_UNKNOWN_PEER));
  it("wrong protocol (GRE; 41 is IPv6 in IPv4: pipeline6.test.ts)", () => expect(run(wrap(inner(), { proto: 47 })).reason).toBe(abi.R_IPIP_BAD_PROTO));
  it("spoofed inner source", () => expect(run(wrap(podUdp("198.19.2.5", "198.19.3.7"))).reason).toBe(abi.R_SPOOFED_SOURCE));
  it("inner header longer than the outer datagram", () => {
    const pkt = wrap(inner());
    new DataView(pkt.buffer).setUint16(22, 400); // inner total length
    expect(run(pkt).reason).toBe(abi.R_TRUNCATED);
  });
});

describe("tap mode (L2 device)", () => {
  const { dp } = worker2("tap");
  it("answers ARP for a neighbour with its MAC, for a routed address with ours", () => {
    dp.writePacket(0, ethernet(0xffffffffffffn, DEV_MAC, 0x0806, arpRequest(DEV_MAC, "198.19.2.1", "198.19.3.0")));
    dp.writePacket(1, ethernet(0xffffffffffffn, DEV_MAC, 0x0806, arpRequest(DEV_MAC, "198.19.2.1", "198.19.1.0")));
    dp.writePacket(2, ethernet(0xffffffffffffn, DEV_MAC, 0x0806, arpRequest(DEV_MAC, "198.19.2.1", "198.19.2.7")));
    dp.processPod(3);
    for (const [k, want] of [[0, W3.mac], [1, W2.mac]] as const) {
      expect(dp.result(k).verdict).toBe(abi.VERDICT_REPLY);
      const f = dp.readPacket(k);
      expect(f.length).toBe(60);
      expect(Array.from(f.subarray(0, 6))).toEqual(macBytes(DEV_MAC));
      expect(Array.from(f.subarray(6, 12))).toEqual(macBytes(want));
      expect((f[20] << 8) | f[21]).toBe(2); // reply
      expect(Array.from(f.subarray(22, 28))).toEqual(macBytes(want));
      expect(Array.from(f.subarray(32, 38))).toEqual(macBytes(DEV_MAC));
    }
    expect(dp.result(2)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_ARP_IGNORED });
  });
  it("routes IPv4 frames and delivers decapsulated packets with Ethernet to the kernel side", () => {
    const inner = podUdp("198.19.2.5", "198.19.3.7");
    dp.writePacket(0, ethernet(W2.mac, DEV_MAC, 0x0800, inner));
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.readPacket(0).length).toBe(inner.length + 50);
    // decap on a tap-mode worker3
    const w3 = worker3("tap");
    const wire = dp.readPacket(0);
    w3.dp.writePacket(0, wire.subarray(28), { addr: W2.underlay });
    w3.dp.processVxlan(1);
    expect(w3.dp.result(0).verdict).toBe(abi.VERDICT_TO_DEVICE);
    const f = w3.dp.readPacket(0);
    expect(Array.from(f.subarray(0, 6))).toEqual(macBytes(DEV_MAC));
    expect(Array.from(f.subarray(6, 12))).toEqual(macBytes(W3.mac));
    expect(parseIpv4(f.subarray(14)).ttl).toBe(64);
  });
  it("ICMP errors go back to the frame's sender with Ethernet", () => {
    dp.writePacket(0, ethernet(W2.mac, DEV_MAC, 0x0800, podUdp("198.19.2.5", "198.18.200.1")));
    dp.processPod(1);
    const f = dp.readPacket(0);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_REPLY);
    expect(Array.from(f.subarray(0, 6))).toEqual(macBytes(DEV_MAC));
    const o = parseIpv4(f.subarray(14));
    expect(o).toMatchObject({ proto: 1, dst: "198.19.2.5", checksumOk: true });
  });
  it("non-IP, non-ARP frames and multicast are dropped with reasons", () => {
    dp.writePacket(0, ethernet(W2.mac, DEV_MAC, 0x88cc, payload(40)));
    dp.writePacket(1, ethernet(0x01005e000001n, DEV_MAC, 0x0800, podUdp("198.19.2.5", "198.19.3.7")));
    dp.writePacket(2, payload(10));
    dp.processPod(3);
    expect([0, 1, 2].map((k) => dp.result(k).reason)).toEqual([abi.R_BAD_ETHERTYPE, abi.R_MARTIAN, abi.R_TRUNCATED]);
  });
});

describe("peer table edits", () => {
  const peerOf = (dp: ReturnType<typeof worker2>["dp"], addr: number): number | undefined => {
    const t = dp.raw.peerAddrTable();
    const slot = dp.raw.htFind(t, BigInt(addr >>> 0));
    return slot < 0 ? undefined : Number(dp.raw.htValueAt(t, slot));
  };

  it("removing a peer from the middle shifts the rest down without losing their addresses (a reload of peers [W3, W1, W4] to [W1, W4])", () => {
    const { dp } = worker2();
    expect([peerOf(dp, W3.underlay), peerOf(dp, W1.underlay), peerOf(dp, W4.underlay)]).toEqual([0, 1, 2]);
    dp.setPeer(0, W1.underlay, W1.mac);
    dp.setPeer(1, W4.underlay, W4.mac);
    dp.clearPeer(2);
    expect([peerOf(dp, W3.underlay), peerOf(dp, W1.underlay), peerOf(dp, W4.underlay)]).toEqual([undefined, 0, 1]);
    // Moving back up works too.
    dp.setPeer(0, W3.underlay, W3.mac);
    dp.setPeer(1, W1.underlay, W1.mac);
    dp.setPeer(2, W4.underlay, W4.mac);
    expect([peerOf(dp, W3.underlay), peerOf(dp, W1.underlay), peerOf(dp, W4.underlay)]).toEqual([0, 1, 2]);
  });
});
