// NAT66 in the batch pipeline (issue 16): masquerade of pods' IPv6, IPv6
// ClusterIP DNAT to a remote and a local (hairpin) backend, a NodePort on
// the node's IPv6 underlay address, the answers on both sides, ICMPv6
// errors translated back, the address names going away with their flows,
// a full name table, and what is not translated. worker2 is the NAT node;
// worker3 hosts the remote backend and encapsulates its answers for real.
// Every translated packet's L4 checksum is verified from scratch.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { RouteRules6 } from "../src/dataplane/routes6.js";
import type { Dataplane } from "../src/dataplane/dataplane.js";
import { concat, ethernet, inetChecksum, vxlanHeader } from "./helpers/packets.js";
import { a6big, icmp6, ipv6, parseIpv6, pseudo6, udp6 } from "./helpers/packets6.js";
import { DEV_MAC, W2, W3, worker2, worker3 } from "./helpers/topology.js";
import { formatFlow } from "../src/control/conntrack.js";
import { removedBackends6 } from "../src/config/backends.js";

const P2 = "2001:2:0:2::";
const P3 = "2001:2:0:3::";
const POD = `${P2}5`;
const LOCAL_BE = `${P2}7`;
const REMOTE_BE = `${P3}7`;
const NODE6 = "2001:2:ff::2";
const OUTSIDE = "2001:2:ff::100";
const SNAT6 = `${P2}fffe`;
const CLUSTER6 = "2001:2:0:250::10";
const EMPTY6 = "2001:2:0:250::11";
const SYN = 0x02;
const SYNACK = 0x12;
const ACK = 0x10;

const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 255);

function tcp6(src: string, dst: string, sport: number, dport: number, flags: number, body = data(24)): Uint8Array {
  const b = new Uint8Array(20 + body.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint32(4, 1000);
  b[12] = 5 << 4;
  b[13] = flags;
  dv.setUint16(14, 65535);
  b.set(body, 20);
  dv.setUint16(16, inetChecksum(b, pseudo6(src, dst, 6, b.length)));
  return b;
}
const tcpPkt = (src: string, dst: string, sport: number, dport: number, flags: number, hlim = 64) =>
  ipv6({ src, dst, next: 6, hlim, payload: tcp6(src, dst, sport, dport, flags) });
const udpPkt = (src: string, dst: string, sport: number, dport: number, hlim = 64) =>
  ipv6({ src, dst, next: 17, hlim, payload: udp6(src, dst, sport, dport, data(40)) });
const echo = (src: string, dst: string, type: number, id: number, seq = 1) =>
  ipv6({ src, dst, next: 58, payload: icmp6(src, dst, type, 0, (id << 16) | seq, data(16)) });
const ports = (b: Uint8Array) => {
  const p = parseIpv6(b).payload;
  return [(p[0] << 8) | p[1], (p[2] << 8) | p[3]];
};

/** worker2 with IPv6 (own /64 local, worker3's over VXLAN) and NAT66 on. */
function nat66(names6 = 4096) {
  const n = worker2();
  n.dp.configure({ mode: "tun", underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100, underlayMtu: 1500, overlay6: a6big(P2) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P2, 64, 0);
  r6.add(P3, 64, 1);
  n.dp.natSetup({ maxFlows: 4096, names6 });
  n.dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, seed: 7, ipv6: { masquerade: true, nodeAddress: NODE6, snatAddress: SNAT6 } });
  n.dp.setNow(1000);
  n.dp.setServices([], [
    { protocol: "tcp", addr: CLUSTER6, port: 80, backends: [{ addr: REMOTE_BE, port: 8080 }] },
    { protocol: "udp", addr: CLUSTER6, port: 53, backends: [{ addr: LOCAL_BE, port: 5353 }] },
    { protocol: "tcp", addr: NODE6, port: 30080, nodePort: true, backends: [{ addr: REMOTE_BE, port: 8080 }] },
    { protocol: "tcp", addr: EMPTY6, port: 80, backends: [] },
  ]);
  return n;
}

/** worker3 with IPv6: its /64 local, worker2's over VXLAN. */
function dual3() {
  const n = worker3();
  n.dp.configure({ mode: "tun", underlay: W3.underlay, overlay: W3.vtep, vtepMac: W3.mac, devMac: DEV_MAC, vni: 100, overlay6: a6big(P3) });
  const r6 = new RouteRules6(n.dp.lpm6Backend);
  r6.add(P3, 64, 0);
  r6.add(P2, 64, 1);
  return n;
}

function run(dp: Dataplane, side: "pod" | "vxlan", pkt: Uint8Array) {
  dp.writePacket(0, pkt, side === "vxlan" ? { addr: W3.underlay, addr2: W2.underlay } : {});
  if (side === "pod") dp.processPod(1);
  else dp.processVxlan(1);
  return { ...dp.result(0), bytes: dp.readPacket(0) };
}

/** What worker3 sends worker2 for `inner`: the VXLAN payload (outer IPv4 and UDP stripped). */
function fromWorker3(w3: Dataplane, inner: Uint8Array): Uint8Array {
  const r = run(w3, "pod", inner);
  expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
  return r.bytes.subarray(28);
}

const names = (dp: Dataplane) => dp.raw.ct6NameCount() as number;
const drops = (dp: Dataplane, r: number) => Number(dp.counter(abi.C_DROP_BASE + r));

describe("NAT66 masquerade", () => {
  const { dp } = nat66();

  it("masquerades UDP to the node's IPv6 address and translates the answer back", () => {
    const out = run(dp, "pod", udpPkt(POD, OUTSIDE, 40000, 53));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    const o = parseIpv6(out.bytes);
    expect(o).toMatchObject({ src: NODE6, dst: OUTSIDE, l4ok: true, hlim: 64 });
    const [sport, dport] = ports(out.bytes);
    expect(dport).toBe(53);
    expect(sport).toBeGreaterThanOrEqual(61000);
    const back = run(dp, "pod", udpPkt(OUTSIDE, NODE6, 53, sport));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(back.bytes)).toMatchObject({ src: OUTSIDE, dst: POD, l4ok: true });
    expect(ports(back.bytes)).toEqual([53, 40000]);
    const flows = dp.conntrackDump(1000);
    const line = flows.map((f) => f.addrs6).find((a) => a?.[0] === POD);
    expect(line).toEqual([POD, OUTSIDE, OUTSIDE, NODE6]);
  });

  it("masquerades ICMPv6 echo by identifier", () => {
    const out = run(dp, "pod", echo(POD, OUTSIDE, 128, 0x4242));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    const o = parseIpv6(out.bytes);
    expect(o).toMatchObject({ src: NODE6, l4ok: true });
    const id = (o.payload[4] << 8) | o.payload[5];
    expect(id).toBeGreaterThanOrEqual(61000);
    const back = run(dp, "pod", echo(OUTSIDE, NODE6, 129, id));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const b = parseIpv6(back.bytes);
    expect(b).toMatchObject({ dst: POD, l4ok: true });
    expect((b.payload[4] << 8) | b.payload[5]).toBe(0x4242);
  });

  it("translates an ICMPv6 error about a masqueraded packet back to the pod, quote included", () => {
    const out = run(dp, "pod", udpPkt(POD, OUTSIDE, 40001, 9999));
    const sent = out.bytes;
    const [sport] = ports(sent);
    const router = "2001:2:ff::1";
    const err = ipv6({ src: router, dst: NODE6, next: 58, payload: icmp6(router, NODE6, 1, 4, 0, sent) });
    const back = run(dp, "pod", err);
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const e = parseIpv6(back.bytes);
    expect(e).toMatchObject({ src: router, dst: POD, l4ok: true });
    const quote = parseIpv6(e.payload.subarray(8));
    expect(quote).toMatchObject({ src: POD, dst: OUTSIDE, l4ok: true });
    expect(ports(e.payload.subarray(8))).toEqual([40001, 9999]);
    expect(sport).not.toBe(40001);
  });

  it("gives the pod a packet too big about its own packet when the masqueraded one would not fit", () => {
    const big = ipv6({ src: POD, dst: OUTSIDE, next: 17, payload: udp6(POD, OUTSIDE, 40002, 53, data(1500 - 48 + 1)) });
    const r = run(dp, "pod", big);
    expect(r.verdict).toBe(abi.VERDICT_REPLY);
    const e = parseIpv6(r.bytes);
    expect(e).toMatchObject({ dst: POD, l4ok: true });
    expect(e.payload[0]).toBe(2);
    expect(new DataView(e.payload.buffer, e.payload.byteOffset).getUint32(4)).toBe(1500);
    expect(parseIpv6(e.payload.subarray(8)).src).toBe(POD);
    expect(ports(e.payload.subarray(8))[0]).toBe(40002);
  });

  it("does not translate pod-to-pod traffic, multicast, or a packet with an extension header", () => {
    const r = run(dp, "pod", udpPkt(POD, REMOTE_BE, 40000, 53));
    expect(r.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(parseIpv6(r.bytes.subarray(50)).src).toBe(POD);
    // Hop-by-hop options before UDP: not walked, so not masqueraded: no route.
    const hbh = concat(Uint8Array.of(17, 0, 1, 4, 0, 0, 0, 0), udp6(POD, OUTSIDE, 40000, 53, data(8)));
    const x = run(dp, "pod", ipv6({ src: POD, dst: OUTSIDE, next: 0, payload: hbh }));
    expect(x.verdict).toBe(abi.VERDICT_REPLY);
    expect(parseIpv6(x.bytes).payload[0]).toBe(1);
    // Addressed to the node with no flow: a counted drop.
    const before = drops(dp, abi.R_NAT_NO_FLOW);
    expect(run(dp, "pod", udpPkt(OUTSIDE, NODE6, 53, 12345)).verdict).toBe(abi.VERDICT_DROP);
    expect(drops(dp, abi.R_NAT_NO_FLOW)).toBe(before + 1);
  });
});

describe("NAT66 services", () => {
  it("DNATs a ClusterIP to a remote backend and translates its answer after decapsulation", () => {
    const { dp } = nat66();
    const w3 = dual3();
    const out = run(dp, "pod", tcpPkt(POD, CLUSTER6, 45000, 80, SYN));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const inner = out.bytes.subarray(50);
    expect(parseIpv6(inner)).toMatchObject({ src: POD, dst: REMOTE_BE, l4ok: true, hlim: 64 });
    expect(ports(inner)).toEqual([45000, 8080]);
    const answer = fromWorker3(w3.dp, tcpPkt(REMOTE_BE, POD, 8080, 45000, SYNACK));
    const back = run(dp, "vxlan", answer);
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(back.bytes)).toMatchObject({ src: CLUSTER6, dst: POD, l4ok: true });
    expect(ports(back.bytes)).toEqual([80, 45000]);
    const f = dp.conntrackDump(1000).find((x) => x.addrs6?.[1] === CLUSTER6)!;
    const line = formatFlow({
      proto: f.proto, state: "SYN_RECV", expiresIn: 60, nat: f.nat, assured: false, seenReply: true,
      orig: { src: f.addrs6![0], dst: f.addrs6![1], sport: f.orig.sport, dport: f.orig.dport },
      reply: { src: f.addrs6![2], dst: f.addrs6![3], sport: f.reply.sport, dport: f.reply.dport },
    });
    expect(line).toBe(`tcp      6 60 SYN_RECV src=${POD} dst=${CLUSTER6} sport=45000 dport=80 src=${REMOTE_BE} dst=${POD} sport=8080 dport=45000 nat=dnat`);
  });

  it("hairpins to a local backend through the IPv6 service-SNAT address, one hop given back", () => {
    const { dp } = nat66();
    const out = run(dp, "pod", udpPkt(POD, CLUSTER6, 41000, 53, 63));
    expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const o = parseIpv6(out.bytes);
    expect(o).toMatchObject({ src: SNAT6, dst: LOCAL_BE, l4ok: true, hlim: 64 });
    const [sport, dport] = ports(out.bytes);
    expect(dport).toBe(5353);
    const back = run(dp, "pod", udpPkt(LOCAL_BE, SNAT6, 5353, sport));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv6(back.bytes)).toMatchObject({ src: CLUSTER6, dst: POD, l4ok: true });
    expect(ports(back.bytes)).toEqual([53, 41000]);
  });

  it("serves a NodePort on the node's IPv6 address: our hop, both ways", () => {
    const { dp } = nat66();
    const w3 = dual3();
    const out = run(dp, "pod", tcpPkt(OUTSIDE, NODE6, 50000, 30080, SYN, 10));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const inner = parseIpv6(out.bytes.subarray(50));
    expect(inner).toMatchObject({ src: SNAT6, dst: REMOTE_BE, l4ok: true, hlim: 9 });
    const [sport] = ports(out.bytes.subarray(50));
    const back = run(dp, "vxlan", fromWorker3(w3.dp, tcpPkt(REMOTE_BE, SNAT6, 8080, sport, SYNACK, 64)));
    expect(back.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(parseIpv6(back.bytes)).toMatchObject({ src: NODE6, dst: OUTSIDE, l4ok: true, hlim: 63 });
    expect(ports(back.bytes)).toEqual([30080, 50000]);
    // Hop limit 1 from outside: our hop would end it.
    const before = drops(dp, abi.R_TTL_EXCEEDED);
    expect(run(dp, "pod", tcpPkt(OUTSIDE, NODE6, 50001, 30080, SYN, 1)).verdict).toBe(abi.VERDICT_DROP);
    expect(drops(dp, abi.R_TTL_EXCEEDED)).toBe(before + 1);
  });

  it("rejects a service without backends with ICMPv6 port unreachable", () => {
    const { dp } = nat66();
    const r = run(dp, "pod", tcpPkt(POD, EMPTY6, 45000, 80, SYN));
    expect(r.verdict).toBe(abi.VERDICT_REPLY);
    const e = parseIpv6(r.bytes);
    expect(e).toMatchObject({ dst: POD, l4ok: true });
    expect([e.payload[0], e.payload[1]]).toEqual([1, 4]);
  });

  it("refuses a SYN-ACK as a flow's first packet", () => {
    const { dp } = nat66();
    const before = drops(dp, abi.R_CT_INVALID);
    expect(run(dp, "pod", tcpPkt(POD, CLUSTER6, 45000, 80, SYNACK)).verdict).toBe(abi.VERDICT_DROP);
    expect(drops(dp, abi.R_CT_INVALID)).toBe(before + 1);
    // A bare ACK picks a flow up mid-stream, as nf_conntrack (and our IPv4 NAT) do.
    const ack = run(dp, "pod", tcpPkt(POD, CLUSTER6, 45000, 80, ACK));
    expect(ack.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(parseIpv6(ack.bytes.subarray(50))).toMatchObject({ dst: REMOTE_BE, l4ok: true });
  });
});

describe("NAT66 address names", () => {
  it("go with their flows: after expiry only the configured addresses stay", () => {
    const { dp } = nat66();
    // Pinned: NODE6, SNAT6, CLUSTER6, REMOTE_BE, LOCAL_BE, EMPTY6.
    const pinned = names(dp);
    expect(pinned).toBe(6);
    for (let i = 0; i < 50; i++) run(dp, "pod", udpPkt(`${P2}${(i % 7) + 10}`, `2001:2:ff::${(i + 0x200).toString(16)}`, 40000 + i, 53));
    expect(dp.conntrackStats().entries).toBe(50);
    expect(names(dp)).toBe(pinned + 7 + 50);
    dp.ctExpire(1000 + 3600, 1 << 20);
    expect(dp.conntrackStats().entries).toBe(0);
    expect(names(dp)).toBe(pinned);
  });

  it("a full name table is a counted drop, and makes room again once flows expire", () => {
    const { dp } = nat66(16);
    const before = drops(dp, abi.R_CT_FULL);
    let sent = 0;
    for (let i = 0; i < 20; i++) if (run(dp, "pod", udpPkt(POD, `2001:2:ff::${(i + 0x300).toString(16)}`, 40000 + i, 53)).verdict === abi.VERDICT_TX_DIRECT) sent++;
    // 6 pinned + the pod: 9 outside addresses fit.
    expect(sent).toBe(9);
    expect(drops(dp, abi.R_CT_FULL)).toBe(before + 11);
    dp.ctExpire(1000 + 3600, 1 << 20);
    dp.setNow(1000 + 3600);
    expect(run(dp, "pod", udpPkt(POD, "2001:2:ff::400", 40000, 53)).verdict).toBe(abi.VERDICT_TX_DIRECT);
  });

  it("services replaced: old addresses let go, new ones pinned", () => {
    const { dp } = nat66();
    dp.setServices([], [{ protocol: "tcp", addr: "2001:2:0:250::99", port: 80, backends: [{ addr: REMOTE_BE, port: 8080 }] }]);
    // NODE6, SNAT6 (NAT) + the new ClusterIP and its backend.
    expect(names(dp)).toBe(4);
    const out = run(dp, "pod", tcpPkt(POD, "2001:2:0:250::99", 45000, 80, SYN));
    expect(parseIpv6(out.bytes.subarray(50)).dst).toBe(REMOTE_BE);
    // The old ClusterIP is just an address no route covers now: masqueraded like any.
    const old = run(dp, "pod", tcpPkt(POD, CLUSTER6, 45001, 80, SYN));
    expect(old.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(parseIpv6(old.bytes)).toMatchObject({ src: NODE6, dst: CLUSTER6 });
  });
});

describe("NAT66 backend flush (a UDP backend removed on reload)", () => {
  it("removedBackends6 names the pairs that went, and the walk deletes exactly their flows", () => {
    const { dp } = nat66();
    const before = [{ protocol: "udp" as const, addr: CLUSTER6, port: 53, backends: [{ addr: LOCAL_BE, port: 5353 }] }];
    const after = [{ protocol: "udp" as const, addr: CLUSTER6, port: 53, backends: [{ addr: `${P2}8`, port: 5353 }] }];
    const gone = removedBackends6(before, after);
    expect(gone).toEqual([{ frontendAddr: CLUSTER6, frontendPort: 53, backendAddr: LOCAL_BE, backendPort: 5353 }]);
    expect(removedBackends6(before, before)).toEqual([]);
    run(dp, "pod", udpPkt(POD, CLUSTER6, 41000, 53));
    run(dp, "pod", udpPkt(`${P2}6`, CLUSTER6, 41001, 53));
    run(dp, "pod", udpPkt(POD, OUTSIDE, 41002, 53));
    expect(dp.conntrackStats().entries).toBe(3);
    // 6 configured + the two clients and OUTSIDE, held by flows only.
    expect(names(dp)).toBe(6 + 3);
    const walk = dp.backendFlush6(17, gone);
    while (!walk.step(2));
    expect(walk.deleted).toBe(2);
    expect(dp.conntrackStats().entries).toBe(1);
    // The masqueraded flow stays (POD, OUTSIDE); P2::6 went with its flow, the walk's pins too.
    expect(names(dp)).toBe(6 + 2);
  });
});

describe("NAT66 NodePort to a backend no route covers (the fuzzer's finding)", () => {
  it("leaves through the node's stack with our hop taken; hop limit 1 ends here", () => {
    const { dp } = nat66();
    const OUT_BE = "2001:2:ff:3::53";
    dp.setServices([], [{ protocol: "udp", addr: NODE6, port: 30053, nodePort: true, backends: [{ addr: OUT_BE, port: 53 }] }]);
    const out = run(dp, "pod", udpPkt(OUTSIDE, NODE6, 40000, 30053, 10));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(parseIpv6(out.bytes)).toMatchObject({ src: SNAT6, dst: OUT_BE, hlim: 9, l4ok: true });
    const before = drops(dp, abi.R_TTL_EXCEEDED);
    expect(run(dp, "pod", udpPkt(OUTSIDE, NODE6, 40001, 30053, 1)).verdict).toBe(abi.VERDICT_DROP);
    expect(drops(dp, abi.R_TTL_EXCEEDED)).toBe(before + 1);
  });
});
