// One router hop per node (assembly/pipeline/forward.ts, "TTL"): the TTL of
// every packet the data path emits, on each path. The node's kernel takes the
// hop of what it forwards into our device and of what it forwards out of it
// to a pod; the data path takes it only where it is the node's forwarding
// (traffic for the node's own address steered to it by tc, NodePort answers
// leaving through the node's stack) and gives one back where the kernel
// would count the node twice (a hairpin back to a local pod).
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import type { Dataplane } from "../src/dataplane/dataplane.js";
import { ethernet, ip, ipStr, ipv4, parseIpv4, tcp, udp } from "./helpers/packets.js";
import { DEV_MAC, W1, W2, W3, worker2, worker3 } from "./helpers/topology.js";

const POD = "198.19.2.5";
const LOCAL_BE = "198.19.2.7";
const REMOTE_BE = "198.19.3.7";
const DIRECT_BE = "198.19.4.7";
const OUTSIDE = "198.18.2.100";
const SNAT = "198.19.2.1";
const CLUSTER_IP = "198.18.250.10";
const NODE = ipStr(W2.underlay);
const SYN = 0x02;
const SYNACK = 0x12;
const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 255);

function udpPkt(src: string, dst: string, ttl: number) {
  return ipv4({ src, dst, proto: 17, ttl, df: true, payload: udp(src, dst, 40000, 8080, data(100)) });
}
function tcpPkt(src: string, dst: string, sport: number, dport: number, flags: number, ttl: number) {
  return ipv4({ src, dst, proto: 6, ttl, df: true, payload: tcp(src, dst, sport, dport, flags, data(32)) });
}

/** Run one packet through a stage; returns its result, bytes and the emitted IPv4 packet. */
function run(dp: Dataplane, side: "pod" | "vxlan" | "ipip", pkt: Uint8Array, from = 0) {
  dp.writePacket(0, pkt, { addr: from });
  if (side === "pod") dp.processPod(1);
  else if (side === "vxlan") dp.processVxlan(1);
  else dp.processIpip(1);
  const r = dp.result(0);
  const bytes = dp.readPacket(0);
  const inner = r.verdict === abi.VERDICT_TX_UNDERLAY ? bytes.subarray(bytes[9] === 17 ? 50 : 20) : bytes;
  return { ...r, bytes, ip: parseIpv4(inner) };
}

describe("pod side: the kernel forwarded it to us and took the node's hop", () => {
  const { dp } = worker2();
  for (const ttl of [64, 2, 1]) {
    it(`TTL ${ttl} leaves as ${ttl} over VXLAN, IPIP and direct routing, header checksum valid`, () => {
      for (const [dst, verdict, proto] of [["198.19.3.7", abi.VERDICT_TX_UNDERLAY, 17], ["198.19.1.9", abi.VERDICT_TX_UNDERLAY, 4], ["198.19.4.4", abi.VERDICT_TX_DIRECT, -1]] as const) {
        const out = run(dp, "pod", udpPkt(POD, dst, ttl));
        expect(out.verdict, dst).toBe(verdict);
        if (proto > 0) expect(out.bytes[9]).toBe(proto);
        expect(out.ip).toMatchObject({ ttl, checksumOk: true, dst });
      }
    });
  }

  it("a local destination goes back to the device as is (no NAT: the kernel's loop, bounded by its own decrements)", () => {
    const out = run(dp, "pod", udpPkt("198.19.3.7", "198.19.2.9", 5));
    expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(out.ip).toMatchObject({ ttl: 5, checksumOk: true });
  });

  it("tap mode: the kernel routed the frame to the tap and took the hop too", () => {
    const tap = worker2("tap").dp;
    const inner = udpPkt(POD, "198.19.3.7", 1);
    tap.writePacket(0, ethernet(W2.mac, DEV_MAC, 0x0800, inner));
    tap.processPod(1);
    expect(tap.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const wire = tap.readPacket(0);
    expect(parseIpv4(wire.subarray(50))).toMatchObject({ ttl: 1, checksumOk: true });
    // Decapsulated on a tap-mode worker3: handed to its kernel as is, which forwards it (its hop).
    const w3 = worker3("tap").dp;
    w3.writePacket(0, wire.subarray(28), { addr: W2.underlay });
    w3.processVxlan(1);
    expect(w3.result(0).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv4(w3.readPacket(0).subarray(14))).toMatchObject({ ttl: 1, checksumOk: true });
  });
});

describe("decapsulation: the receiving node's kernel forwards it to the pod (its hop)", () => {
  it("VXLAN and IPIP inner packets reach the device with the TTL they were sent with, TTL 1 included", () => {
    const w2 = worker2().dp;
    const w3 = worker3().dp;
    for (const ttl of [64, 1]) {
      const enc = run(w2, "pod", udpPkt(POD, "198.19.3.7", ttl));
      const out = run(w3, "vxlan", enc.bytes.subarray(28), W2.underlay);
      expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
      expect(out.ip).toMatchObject({ ttl, checksumOk: true });
    }
    // worker2 -> worker1 over IPIP; worker3's data path plays worker1's receiving side.
    const rx = worker3();
    rx.dp.configure({ mode: "tun", underlay: W1.underlay, overlay: W1.vtep, vtepMac: W1.mac, vni: 100 });
    rx.dp.setPeer(1, W2.underlay, W2.mac);
    rx.routes.remove("198.19.2.0", 24);
    rx.routes.add("198.19.2.0", 24, 2);
    for (const ttl of [64, 1]) {
      const enc = run(w2, "pod", udpPkt(POD, "198.19.1.9", ttl));
      expect(enc.bytes[9]).toBe(4);
      const out = run(rx.dp, "ipip", enc.bytes, W2.underlay);
      expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
      expect(out.ip).toMatchObject({ ttl, checksumOk: true });
    }
  });
});

function natNode() {
  const w2 = worker2();
  w2.dp.natSetup({ maxFlows: 4096 });
  w2.dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: ip(SNAT), seed: 7 });
  w2.dp.setNow(1000);
  w2.dp.setServices([
    { protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [{ addr: ip(LOCAL_BE), port: 8080 }] },
    { protocol: "tcp", addr: W2.underlay, port: 30080, nodePort: true, backends: [{ addr: ip(REMOTE_BE), port: 8080 }] },
    { protocol: "tcp", addr: W2.underlay, port: 30081, nodePort: true, backends: [{ addr: ip(LOCAL_BE), port: 8080 }] },
    { protocol: "tcp", addr: W2.underlay, port: 30082, nodePort: true, backends: [{ addr: ip(DIRECT_BE), port: 8080 }] },
  ]);
  return w2.dp;
}

const sportOf = (b: Uint8Array) => (b[20] << 8) | b[21];

describe("NAT: where the node's hop is the data path's", () => {
  it("masquerade: kernel-forwarded out through the node's stack as is (TTL 1 too); the answer, steered by tc, goes to the device as is", () => {
    const dp = natNode();
    const out = run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, SYN, 1));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(out.ip).toMatchObject({ src: NODE, ttl: 1, checksumOk: true });
    const back = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, sportOf(out.bytes), SYNACK, 50));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(back.ip).toMatchObject({ dst: POD, ttl: 50, checksumOk: true });
  });

  it("NodePort from outside (steered by tc, not forwarded): one off over a tunnel and directly, none back to a local pod", () => {
    const dp = natNode();
    const remote = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5555, 30080, SYN, 64));
    expect(remote.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(remote.ip).toMatchObject({ dst: REMOTE_BE, ttl: 63, checksumOk: true });
    const direct = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5556, 30082, SYN, 64));
    expect(direct.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(direct.ip).toMatchObject({ dst: DIRECT_BE, ttl: 63, checksumOk: true });
    const local = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5557, 30081, SYN, 64));
    expect(local.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(local.ip).toMatchObject({ dst: LOCAL_BE, ttl: 64, checksumOk: true });
  });

  it("NodePort from outside with TTL 1 to a remote backend: time exceeded to the client, through the node's stack, quoting its own packet", () => {
    const dp = natNode();
    const out = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5555, 30080, SYN, 1));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(out.reason).toBe(abi.R_TTL_EXCEEDED);
    expect(ipStr(out.addr)).toBe(OUTSIDE);
    expect(out.ip).toMatchObject({ proto: 1, src: NODE, dst: OUTSIDE, checksumOk: true });
    const icmp = out.ip.payload;
    expect([icmp[0], icmp[1]]).toEqual([11, 0]);
    const q = parseIpv4(icmp.subarray(8));
    expect(q).toMatchObject({ src: OUTSIDE, dst: NODE });
  });

  it("a NodePort answer from a remote backend leaves through the node's stack one lower; with TTL 1 it is a counted drop", () => {
    const dp = natNode();
    const w3 = worker3().dp;
    const req = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5555, 30080, SYN, 64));
    const sport = sportOf(req.bytes.subarray(50));
    for (const [ttl, verdict, want] of [[40, abi.VERDICT_TX_DIRECT, 39], [1, abi.VERDICT_DROP, -1]] as const) {
      const enc = run(w3, "pod", tcpPkt(REMOTE_BE, SNAT, 8080, sport, SYNACK, ttl));
      expect(enc.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
      const back = run(dp, "vxlan", enc.bytes.subarray(28), W3.underlay);
      expect(back.verdict).toBe(verdict);
      if (want > 0) expect(back.ip).toMatchObject({ src: NODE, dst: OUTSIDE, ttl: want, checksumOk: true });
      else expect(back.reason).toBe(abi.R_TTL_EXCEEDED);
    }
  });

  it("hairpin: a pod to a ClusterIP with a local backend, and the answer, come out one hop lower, not two", () => {
    const dp = natNode();
    // The kernel took one hop forwarding it into the device (64 -> 63) and
    // takes another forwarding it out to the backend: we give one back.
    const out = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 41000, 80, SYN, 63));
    expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(out.ip).toMatchObject({ src: SNAT, dst: LOCAL_BE, ttl: 64, checksumOk: true });
    const back = run(dp, "pod", tcpPkt(LOCAL_BE, SNAT, 8080, sportOf(out.bytes), SYNACK, 1));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(back.ip).toMatchObject({ src: CLUSTER_IP, dst: POD, ttl: 2, checksumOk: true });
    // TTL 255 stays 255 (never wraps).
    const top = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 41001, 80, SYN, 255));
    expect(top.ip).toMatchObject({ ttl: 255, checksumOk: true });
  });

  it("a ClusterIP flow to a remote backend: the kernel took the hop, the tunnel adds none", () => {
    const dp = worker2().dp;
    dp.natSetup({ maxFlows: 64 });
    dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: ip(SNAT), seed: 7 });
    dp.setServices([{ protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [{ addr: ip(REMOTE_BE), port: 8080 }] }]);
    const out = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 42000, 80, SYN, 9));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(out.ip).toMatchObject({ dst: REMOTE_BE, ttl: 9, checksumOk: true });
  });
});
