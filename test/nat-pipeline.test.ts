// NAT in the batch pipeline: masquerade, ClusterIP and NodePort DNAT,
// hairpin, the answers (pod side and after decapsulation), ICMP errors
// translated back, and what happens at the edges (full table, invalid
// openers, expiry, steered packets without a flow). worker2 is the NAT node;
// worker3 hosts a remote backend and encapsulates its answers for real.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as abi from "../src/dataplane/abi.js";
import { BackendFlush, type Dataplane, type ServiceFrontend } from "../src/dataplane/dataplane.js";
import { removedBackends } from "../src/config/backends.js";
import { TableState, type DataplaneTables } from "../src/dataplane/tables.js";
import { concat, icmpEcho, inetChecksum, ip, ipStr, ipv4, parseIpv4, tcp, udp } from "./helpers/packets.js";
import { W2, W3, worker2, worker3 } from "./helpers/topology.js";

const POD = "198.19.2.5";
const LOCAL_BE = "198.19.2.7";
const REMOTE_BE = "198.19.3.7";
const OUTSIDE = "198.18.2.100";
const SNAT = "198.19.2.1";
const CLUSTER_IP = "198.18.250.10";
const EMPTY_IP = "198.18.250.11";
const NODE = ipStr(W2.underlay);
const SYN = 0x02;
const ACK = 0x10;
const SYNACK = 0x12;

const TIMEOUTS = {
  tcpSynSent: 120, tcpSynRecv: 60, tcpEstablished: 86400, tcpFinWait: 120, tcpCloseWait: 60, tcpLastAck: 30, tcpTimeWait: 120,
  tcpClose: 10, udp: 30, udpStream: 120, icmp: 30,
};

const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 255);

function natNode(maxFlows = 4096, seed = 7) {
  const w2 = worker2();
  w2.dp.natSetup({ maxFlows });
  w2.dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: ip(SNAT), seed });
  w2.dp.setNow(1000);
  w2.dp.setServices([
    { protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [{ addr: ip(REMOTE_BE), port: 8080 }, { addr: ip(LOCAL_BE), port: 8080 }] },
    { protocol: "tcp", addr: W2.underlay, port: 30080, nodePort: true, backends: [{ addr: ip(REMOTE_BE), port: 8080 }] },
    { protocol: "udp", addr: ip(CLUSTER_IP), port: 53, backends: [{ addr: ip("198.19.3.8"), port: 5353 }] },
    { protocol: "tcp", addr: ip(EMPTY_IP), port: 80, backends: [] },
  ]);
  return w2;
}

function tcpPkt(src: string, dst: string, sport: number, dport: number, flags: number, opts: { size?: number; df?: boolean; ttl?: number } = {}) {
  return ipv4({ src, dst, proto: 6, ttl: opts.ttl ?? 64, df: opts.df ?? true, payload: tcp(src, dst, sport, dport, flags, data(opts.size ?? 32)) });
}
function udpPkt(src: string, dst: string, sport: number, dport: number, withChecksum = true) {
  return ipv4({ src, dst, proto: 17, ttl: 64, payload: udp(src, dst, sport, dport, data(40), withChecksum) });
}

/** Run one packet through a stage; returns its result and bytes. */
function run(dp: Dataplane, side: "pod" | "vxlan", pkt: Uint8Array, from = 0) {
  dp.writePacket(0, pkt, { addr: from });
  if (side === "pod") dp.processPod(1);
  else dp.processVxlan(1);
  const r = dp.result(0);
  return { ...r, bytes: dp.readPacket(0) };
}

/** L4 checksum of an IPv4 packet verifies (TCP/UDP with pseudo header; a
 *  zero UDP checksum counts as "none"; ICMP over its message). */
function l4Ok(b: Uint8Array): boolean {
  const p = parseIpv4(b);
  const seg = p.payload;
  if (p.proto === 1) return inetChecksum(seg) === 0;
  if (p.proto === 17 && seg[6] === 0 && seg[7] === 0) return true;
  const ph = new Uint8Array(12 + seg.length);
  const dv = new DataView(ph.buffer);
  dv.setUint32(0, ip(p.src));
  dv.setUint32(4, ip(p.dst));
  ph[9] = p.proto;
  dv.setUint16(10, seg.length);
  ph.set(seg, 12);
  return inetChecksum(ph) === 0;
}

function ports(b: Uint8Array): { sport: number; dport: number } {
  const p = parseIpv4(b);
  const dv = new DataView(p.payload.buffer, p.payload.byteOffset);
  return { sport: dv.getUint16(0), dport: dv.getUint16(2) };
}

/** worker3's pod answers: encapsulated by worker3's data path, the VXLAN
 *  payload handed to worker2's decap stage. */
function fromWorker3(w3: Dataplane, w2: Dataplane, inner: Uint8Array) {
  const enc = run(w3, "pod", inner);
  expect(enc.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
  return run(w2, "vxlan", enc.bytes.subarray(28), W3.underlay);
}

describe("masquerade (Hand CNI-3)", () => {
  it("TCP to an outside host leaves with the node's address and a port from the range; the answer comes back to the pod", () => {
    const { dp } = natNode();
    const out = run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, SYN));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(ipStr(out.addr)).toBe(OUTSIDE);
    const o = parseIpv4(out.bytes);
    // The kernel took the node's hop forwarding it to us; the raw socket takes none.
    expect(o).toMatchObject({ src: NODE, dst: OUTSIDE, ttl: 64, checksumOk: true });
    expect(l4Ok(out.bytes)).toBe(true);
    const { sport } = ports(out.bytes);
    expect(sport).toBeGreaterThanOrEqual(61000);
    expect(sport).toBeLessThanOrEqual(65535);

    const back = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, sport, SYNACK));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const b = parseIpv4(back.bytes);
    expect(b).toMatchObject({ src: OUTSIDE, dst: POD, checksumOk: true });
    expect(ports(back.bytes)).toEqual({ sport: 80, dport: 40000 });
    expect(l4Ok(back.bytes)).toBe(true);

    run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, ACK));
    const flows = dp.conntrackDump(1000);
    expect(flows).toHaveLength(1);
    expect(flows[0]).toMatchObject({ proto: 6, nat: "snat", state: 3 /* ESTABLISHED */ });
    expect(ipStr(flows[0].reply.dst)).toBe(NODE);
    expect(flows[0].reply.dport).toBe(sport);
    expect(flows[0].flags & 4).toBe(4); // assured
    const c = dp.counters();
    expect(c.nat_snat_flows).toBe(1n);
    expect(c.nat_translated_packets).toBe(3n);
  });

  it("pod-to-pod traffic across nodes is never translated and creates no flow", () => {
    const { dp } = natNode();
    const pkt = tcpPkt(POD, "198.19.3.9", 40000, 80, SYN);
    const out = run(dp, "pod", pkt);
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const inner = parseIpv4(out.bytes.subarray(50));
    expect(inner).toMatchObject({ src: POD, dst: "198.19.3.9" });
    expect(dp.conntrackStats().entries).toBe(0);
  });

  it("the node's own traffic (not from a local pod) and masquerade off are left alone", () => {
    const { dp } = natNode();
    expect(run(dp, "pod", tcpPkt("198.18.0.12", OUTSIDE, 40000, 80, SYN)).reason).toBe(abi.R_NO_ROUTE);
    dp.natConfigure({ enabled: true, masquerade: false, nodeIp: W2.underlay, snatAddress: ip(SNAT) });
    expect(run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, SYN)).reason).toBe(abi.R_NO_ROUTE);
    expect(dp.conntrackStats().entries).toBe(0);
  });

  it("a zero UDP checksum stays zero; a real one is updated", () => {
    const { dp } = natNode();
    const a = run(dp, "pod", udpPkt(POD, OUTSIDE, 5000, 53, false));
    expect(a.verdict).toBe(abi.VERDICT_TX_DIRECT);
    const seg = parseIpv4(a.bytes).payload;
    expect(seg[6] | seg[7]).toBe(0);
    const b = run(dp, "pod", udpPkt(POD, OUTSIDE, 5001, 53, true));
    expect(l4Ok(b.bytes)).toBe(true);
    const seg2 = parseIpv4(b.bytes).payload;
    expect(seg2[6] | seg2[7]).not.toBe(0);
  });

  it("ICMP echo: the identifier is translated and the reply finds the pod", () => {
    const { dp } = natNode();
    const req = ipv4({ src: POD, dst: OUTSIDE, proto: 1, ttl: 64, payload: icmpEcho(0x1234, 1, data(56)) });
    const out = run(dp, "pod", req);
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    const o = parseIpv4(out.bytes);
    expect(o.src).toBe(NODE);
    expect(l4Ok(out.bytes)).toBe(true);
    const id = new DataView(o.payload.buffer, o.payload.byteOffset).getUint16(4);
    expect(id).toBeGreaterThanOrEqual(61000);
    const rep = ipv4({ src: OUTSIDE, dst: NODE, proto: 1, ttl: 64, payload: icmpEcho(id, 1, data(56), 0) });
    const back = run(dp, "pod", rep);
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const b = parseIpv4(back.bytes);
    expect(b.dst).toBe(POD);
    expect(new DataView(b.payload.buffer, b.payload.byteOffset).getUint16(4)).toBe(0x1234);
    expect(l4Ok(back.bytes)).toBe(true);
  });

  it("many flows to one destination get distinct ports", () => {
    const { dp } = natNode();
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const out = run(dp, "pod", tcpPkt(POD, OUTSIDE, 20000 + i, 443, SYN));
      expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
      seen.add(ports(out.bytes).sport);
    }
    expect(seen.size).toBe(500);
  });
});

describe("ClusterIP (Hand CNI-4)", () => {
  it("new flows are balanced over backends on two nodes; the remote one's answer is translated after decap", () => {
    const w2 = natNode();
    const w3 = worker3();
    let remote = 0;
    let local = 0;
    for (let i = 0; i < 64; i++) {
      const sport = 30000 + i;
      const out = run(w2.dp, "pod", tcpPkt(POD, CLUSTER_IP, sport, 80, SYN));
      if (out.verdict === abi.VERDICT_TX_UNDERLAY) {
        remote++;
        const inner = parseIpv4(out.bytes.subarray(50));
        expect(inner).toMatchObject({ src: POD, dst: REMOTE_BE, checksumOk: true });
        expect(ports(out.bytes.subarray(50))).toEqual({ sport, dport: 8080 });
        expect(l4Ok(out.bytes.subarray(50))).toBe(true);
        // The backend answers the pod's real address; worker2 restores the ClusterIP.
        const back = fromWorker3(w3.dp, w2.dp, tcpPkt(REMOTE_BE, POD, 8080, sport, SYNACK));
        expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
        const b = parseIpv4(back.bytes);
        expect(b).toMatchObject({ src: CLUSTER_IP, dst: POD, checksumOk: true });
        expect(ports(back.bytes)).toEqual({ sport: 80, dport: sport });
        expect(l4Ok(back.bytes)).toBe(true);
      } else {
        // Same-node backend: DNAT + SNAT, so the answer comes back through us.
        expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
        local++;
        const o = parseIpv4(out.bytes);
        expect(o).toMatchObject({ src: SNAT, dst: LOCAL_BE, checksumOk: true });
        expect(l4Ok(out.bytes)).toBe(true);
        const p = ports(out.bytes);
        expect(p.dport).toBe(8080);
        const back = run(w2.dp, "pod", tcpPkt(LOCAL_BE, SNAT, 8080, p.sport, SYNACK));
        expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
        expect(parseIpv4(back.bytes)).toMatchObject({ src: CLUSTER_IP, dst: POD, checksumOk: true });
        expect(ports(back.bytes)).toEqual({ sport: 80, dport: sport });
        expect(l4Ok(back.bytes)).toBe(true);
      }
    }
    expect(remote).toBeGreaterThan(10);
    expect(local).toBeGreaterThan(10);
    expect(w2.dp.counters().nat_dnat_flows).toBe(64n);
  });

  it("hairpin: a backend reaching its own service through the ClusterIP", () => {
    const { dp } = natNode(4096, 99);
    let selfHits = 0;
    for (let i = 0; i < 40; i++) {
      const out = run(dp, "pod", tcpPkt(LOCAL_BE, CLUSTER_IP, 31000 + i, 80, SYN));
      if (out.verdict !== abi.VERDICT_TO_DEVICE) continue;
      selfHits++;
      const o = parseIpv4(out.bytes);
      expect(o).toMatchObject({ src: SNAT, dst: LOCAL_BE });
      const { sport } = ports(out.bytes);
      const back = run(dp, "pod", tcpPkt(LOCAL_BE, SNAT, 8080, sport, SYNACK));
      expect(parseIpv4(back.bytes)).toMatchObject({ src: CLUSTER_IP, dst: LOCAL_BE, checksumOk: true });
      expect(ports(back.bytes)).toEqual({ sport: 80, dport: 31000 + i });
    }
    expect(selfHits).toBeGreaterThan(5);
  });

  it("a backend reached by plain routing (direct peer) gets the SNAT source too, so its answer is routed back into us", () => {
    const { dp } = natNode();
    dp.setServices([{ protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [{ addr: ip("198.19.4.7"), port: 8080 }] }]);
    const out = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 40000, 80, SYN));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(parseIpv4(out.bytes)).toMatchObject({ src: SNAT, dst: "198.19.4.7", checksumOk: true });
    const { sport } = ports(out.bytes);
    // The answer arrives at the node, which routes the SNAT address into our device.
    const back = run(dp, "pod", tcpPkt("198.19.4.7", SNAT, 8080, sport, SYNACK));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(parseIpv4(back.bytes)).toMatchObject({ src: CLUSTER_IP, dst: POD, checksumOk: true });
    expect(ports(back.bytes)).toEqual({ sport: 80, dport: 40000 });
  });

  it("UDP service and a zero checksum", () => {
    const { dp } = natNode();
    const out = run(dp, "pod", udpPkt(POD, CLUSTER_IP, 7000, 53, false));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const inner = out.bytes.subarray(50);
    expect(parseIpv4(inner).dst).toBe("198.19.3.8");
    expect(ports(inner).dport).toBe(5353);
    const seg = parseIpv4(inner).payload;
    expect(seg[6] | seg[7]).toBe(0);
  });

  it("a service without backends is refused with ICMP port unreachable", () => {
    const { dp } = natNode();
    const out = run(dp, "pod", tcpPkt(POD, EMPTY_IP, 40000, 80, SYN));
    expect(out.verdict).toBe(abi.VERDICT_REPLY);
    expect(out.reason).toBe(abi.R_SVC_NO_BACKEND);
    const o = parseIpv4(out.bytes);
    expect(o.dst).toBe(POD);
    expect([o.payload[0], o.payload[1]]).toEqual([3, 3]);
  });

  it("a SYN-ACK, FIN or RST cannot open a flow", () => {
    const { dp } = natNode();
    for (const flags of [SYNACK, 0x11, 0x04]) {
      const out = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 40000, 80, flags));
      expect(out.verdict).toBe(abi.VERDICT_DROP);
      expect(out.reason).toBe(abi.R_CT_INVALID);
    }
    expect(dp.conntrackStats().entries).toBe(0);
  });

  it("a reload of the service table keeps tracked flows on their backend", () => {
    const w2 = natNode();
    const w3 = worker3();
    let sport = 0;
    for (let i = 0; i < 50 && sport === 0; i++) {
      const out = run(w2.dp, "pod", tcpPkt(POD, CLUSTER_IP, 32000 + i, 80, SYN));
      if (out.verdict === abi.VERDICT_TX_UNDERLAY) sport = 32000 + i;
    }
    expect(sport).not.toBe(0);
    w2.dp.setServices([{ protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [{ addr: ip(LOCAL_BE), port: 9090 }] }]);
    const next = run(w2.dp, "pod", tcpPkt(POD, CLUSTER_IP, sport, 80, ACK));
    expect(parseIpv4(next.bytes.subarray(50)).dst).toBe(REMOTE_BE);
    const back = fromWorker3(w3.dp, w2.dp, tcpPkt(REMOTE_BE, POD, 8080, sport, ACK));
    expect(parseIpv4(back.bytes).src).toBe(CLUSTER_IP);
    const fresh = run(w2.dp, "pod", tcpPkt(POD, CLUSTER_IP, sport + 1000, 80, SYN));
    expect(parseIpv4(fresh.bytes)).toMatchObject({ dst: LOCAL_BE });
    expect(ports(fresh.bytes).dport).toBe(9090);
  });
});

describe("NodePort (Hand CNI-5)", () => {
  it("outside -> node:30080 reaches the backend on another node from the SNAT address; the answer leaves from node:30080", () => {
    const w2 = natNode();
    const w3 = worker3();
    const out = run(w2.dp, "pod", tcpPkt(OUTSIDE, NODE, 5555, 30080, SYN));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    const inner = out.bytes.subarray(50);
    expect(parseIpv4(inner)).toMatchObject({ src: SNAT, dst: REMOTE_BE, checksumOk: true });
    expect(l4Ok(inner)).toBe(true);
    const { sport } = ports(inner);
    const back = fromWorker3(w3.dp, w2.dp, tcpPkt(REMOTE_BE, SNAT, 8080, sport, SYNACK));
    expect(back.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(ipStr(back.addr)).toBe(OUTSIDE);
    const b = parseIpv4(back.bytes);
    expect(b).toMatchObject({ src: NODE, dst: OUTSIDE, checksumOk: true });
    expect(ports(back.bytes)).toEqual({ sport: 30080, dport: 5555 });
    expect(l4Ok(back.bytes)).toBe(true);
    expect(w2.dp.conntrackDump(1000)[0].nat).toBe("both");
  });

  it("steered packets that match no flow, and later fragments of them, are counted drops", () => {
    const { dp } = natNode();
    expect(run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, 61234, ACK)).reason).toBe(abi.R_NAT_NO_FLOW);
    expect(run(dp, "pod", udpPkt(OUTSIDE, SNAT, 80, 61234)).reason).toBe(abi.R_NAT_NO_FLOW);
    const frag = ipv4({ src: OUTSIDE, dst: NODE, proto: 17, ttl: 64, fragOffset: 185, payload: data(64) });
    expect(run(dp, "pod", frag).reason).toBe(abi.R_NAT_FRAGMENT);
    const c = dp.counters();
    expect(c.drop_nat_no_flow).toBe(2n);
    expect(c.drop_nat_fragment).toBe(1n);
  });
});

describe("ICMP errors about translated flows", () => {
  function icmpError(from: string, to: string, type: number, code: number, quoted: Uint8Array) {
    const q = quoted.subarray(0, 28);
    const msg = new Uint8Array(8 + q.length);
    msg[0] = type;
    msg[1] = code;
    msg.set(q, 8);
    new DataView(msg.buffer).setUint16(2, inetChecksum(msg));
    return ipv4({ src: from, dst: to, proto: 1, ttl: 64, payload: msg });
  }
  function quotedOf(b: Uint8Array) {
    const q = parseIpv4(b).payload.subarray(8);
    const qh = (q[0] & 15) * 4;
    const dv = new DataView(q.buffer, q.byteOffset);
    return {
      src: ipStr(dv.getUint32(12)), dst: ipStr(dv.getUint32(16)), sport: dv.getUint16(qh), dport: dv.getUint16(qh + 2),
      ipChecksumOk: inetChecksum(q.subarray(0, qh)) === 0,
    };
  }

  it("an error from outside about a masqueraded flow reaches the pod, quoting the pod's own packet", () => {
    const { dp } = natNode();
    const sent = run(dp, "pod", udpPkt(POD, OUTSIDE, 5000, 53)).bytes;
    const { sport } = ports(sent);
    const err = icmpError("198.18.2.1", NODE, 3, 3, sent);
    const out = run(dp, "pod", err);
    expect(out.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const o = parseIpv4(out.bytes);
    expect(o).toMatchObject({ src: "198.18.2.1", dst: POD, checksumOk: true });
    expect(l4Ok(out.bytes)).toBe(true);
    expect(quotedOf(out.bytes)).toMatchObject({ src: POD, dst: OUTSIDE, sport: 5000, dport: 53, ipChecksumOk: true });
    expect(sport).not.toBe(5000);
    expect(dp.counters().nat_icmp_translated).toBe(1n);
  });

  it("an error from a remote backend about a ClusterIP flow comes from the ClusterIP", () => {
    const w2 = natNode();
    const w3 = worker3();
    const sent = run(w2.dp, "pod", udpPkt(POD, CLUSTER_IP, 7001, 53)).bytes.subarray(50);
    expect(parseIpv4(sent).dst).toBe("198.19.3.8");
    const back = fromWorker3(w3.dp, w2.dp, icmpError("198.19.3.8", POD, 3, 3, sent));
    expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
    const o = parseIpv4(back.bytes);
    expect(o).toMatchObject({ src: CLUSTER_IP, dst: POD, checksumOk: true });
    expect(l4Ok(back.bytes)).toBe(true);
    expect(quotedOf(back.bytes)).toMatchObject({ src: POD, dst: CLUSTER_IP, sport: 7001, dport: 53, ipChecksumOk: true });
  });

  it("our own 'fragmentation needed' about a DNAT'd packet quotes the ClusterIP, so the pod's PMTU applies", () => {
    const { dp } = natNode();
    let out;
    for (let i = 0; i < 50; i++) {
      out = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 33000 + i, 80, ACK, { size: 1460, df: true }));
      if (out.reason === abi.R_TOO_BIG) break;
    }
    expect(out!.verdict).toBe(abi.VERDICT_REPLY);
    expect(out!.reason).toBe(abi.R_TOO_BIG);
    const o = parseIpv4(out!.bytes);
    expect(o.dst).toBe(POD);
    expect(l4Ok(out!.bytes)).toBe(true);
    expect(quotedOf(out!.bytes)).toMatchObject({ src: POD, dst: CLUSTER_IP, dport: 80, ipChecksumOk: true });
  });

  it("our 'fragmentation needed' for a NodePort client outside leaves through the node's stack, from the node's address", () => {
    const { dp } = natNode();
    const out = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 5555, 30080, ACK, { size: 1460, df: true }));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(out.reason).toBe(abi.R_TOO_BIG);
    expect(ipStr(out.addr)).toBe(OUTSIDE);
    const o = parseIpv4(out.bytes);
    expect(o).toMatchObject({ src: NODE, dst: OUTSIDE, proto: 1, checksumOk: true });
    expect(l4Ok(out.bytes)).toBe(true);
    expect(quotedOf(out.bytes)).toMatchObject({ src: OUTSIDE, dst: NODE, sport: 5555, dport: 30080, ipChecksumOk: true });
    const c = dp.counters();
    expect(c.verdict_reply).toBe(0n);
    expect(c.reply_packets).toBe(0n);
    expect(c.verdict_tx_direct).toBe(1n);
    expect(c.drop_too_big).toBe(1n);
  });

  it("errors about nothing we track pass untouched", () => {
    const { dp } = natNode();
    const quoted = udpPkt(POD, "198.19.3.9", 1, 2);
    const out = run(dp, "pod", icmpError("198.19.2.9", "198.19.3.9", 3, 3, quoted));
    expect(out.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.counters().nat_icmp_translated).toBe(0n);
  });
});

describe("conntrack limits in the pipeline", () => {
  /** Fill worker2's table with `n` masqueraded TCP flows; `established`: each gets its SYN-ACK and ACK (ASSURED). */
  function fill(dp: Dataplane, n: number, established: boolean): number[] {
    const sports: number[] = [];
    for (let i = 0; i < n; i++) {
      const out = run(dp, "pod", tcpPkt(POD, OUTSIDE, 41000 + i, 80, SYN));
      expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
      sports.push(ports(out.bytes).sport);
      if (!established) continue;
      expect(run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, sports[i], SYNACK)).verdict).toBe(abi.VERDICT_TO_DEVICE);
      expect(run(dp, "pod", tcpPkt(POD, OUTSIDE, 41000 + i, 80, ACK)).verdict).toBe(abi.VERDICT_TX_DIRECT);
    }
    return sports;
  }

  it("a table full of established flows drops new flows (counted) while existing flows keep working", () => {
    const { dp } = natNode(8);
    const sports = fill(dp, 8, true);
    const ninth = run(dp, "pod", tcpPkt(POD, OUTSIDE, 41100, 80, SYN));
    expect(ninth.verdict).toBe(abi.VERDICT_DROP);
    expect(ninth.reason).toBe(abi.R_CT_FULL);
    expect(dp.conntrackStats().insertFailed).toBe(1);
    expect(dp.conntrackStats().earlyDrop).toBe(0);
    expect(dp.counters().ct_insert_failed).toBe(1n);
    for (let i = 0; i < 8; i++) {
      const back = run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, sports[i], ACK));
      expect(back.verdict).toBe(abi.VERDICT_TO_DEVICE);
      expect(ports(back.bytes).dport).toBe(41000 + i);
    }
  });

  it("a table full of half-open flows (a SYN flood) admits a new flow by early drop, counted", () => {
    const { dp } = natNode(4); // 12 slots: the search covers them all
    const est = fill(dp, 1, true)[0];
    // A NodePort SYN flood from outside fills the rest and keeps coming.
    for (let p = 0; p < 50; p++) {
      dp.setNow(1000 + p);
      expect(run(dp, "pod", tcpPkt(OUTSIDE, NODE, 20000 + p, 30080, SYN)).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    }
    expect(dp.conntrackStats()).toMatchObject({ entries: 4, earlyDrop: 47, insertFailed: 0 });
    // A pod's new masqueraded flow still opens, and so does the established one go on.
    const out = run(dp, "pod", tcpPkt(POD, OUTSIDE, 42000, 80, SYN));
    expect(out.verdict).toBe(abi.VERDICT_TX_DIRECT);
    expect(run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, ports(out.bytes).sport, SYNACK)).verdict).toBe(abi.VERDICT_TO_DEVICE);
    expect(ports(run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, est, ACK)).bytes).dport).toBe(41000);
    expect(dp.conntrackStats().earlyDrop).toBe(48);
    expect(dp.counters().ct_early_drop).toBe(48n);
    expect(dp.counters().drop_ct_full).toBe(0n);
  });

  it("flows expire on the data path's clock: a UDP flow after 30 s without an answer", () => {
    const { dp } = natNode();
    const out = run(dp, "pod", udpPkt(POD, OUTSIDE, 5000, 53));
    const { sport } = ports(out.bytes);
    dp.setNow(1029);
    dp.ctExpire(1029, 1000);
    expect(dp.conntrackStats().entries).toBe(1);
    dp.setNow(1031);
    expect(dp.ctExpire(1031, 1000)).toBe(1);
    expect(dp.conntrackStats().entries).toBe(0);
    expect(run(dp, "pod", udpPkt(OUTSIDE, NODE, 53, sport)).reason).toBe(abi.R_NAT_NO_FLOW);
  });

  it("random mutations of NAT traffic never trap, and every packet gets a verdict and a known reason", () => {
    const w2 = natNode(64);
    const seeds = [
      tcpPkt(POD, OUTSIDE, 40000, 80, SYN), tcpPkt(OUTSIDE, NODE, 5555, 30080, SYN), udpPkt(POD, CLUSTER_IP, 7000, 53),
      ipv4({ src: POD, dst: OUTSIDE, proto: 1, ttl: 64, payload: icmpEcho(7, 1, data(8)) }),
    ];
    const sent = run(w2.dp, "pod", udpPkt(POD, OUTSIDE, 5000, 53)).bytes;
    seeds.push(concat(sent.subarray(0, 0), ipv4({ src: "198.18.2.1", dst: NODE, proto: 1, ttl: 64, payload: concat(new Uint8Array([3, 3, 0, 0, 0, 0, 0, 0]), sent.subarray(0, 28)) })));
    fc.assert(fc.property(fc.integer({ min: 0, max: seeds.length - 1 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.integer({ min: 0, max: 80 }),
      (k, flips, cut) => {
        const b = seeds[k].slice(0, Math.max(1, seeds[k].length - cut));
        for (const [at, v] of flips) b[at % b.length] = v;
        const r = run(w2.dp, "pod", b);
        expect(r.verdict).toBeLessThan(abi.VERDICT_COUNT);
        expect(r.reason).toBeLessThan(abi.REASON_COUNT);
        if (r.verdict === abi.VERDICT_TX_DIRECT || r.verdict === abi.VERDICT_TO_DEVICE) expect(parseIpv4(r.bytes).checksumOk).toBe(true);
      }), { numRuns: 3000, seed: 4 });
  });
});

describe("conntrack timeouts from the control plane", () => {
  it("natConfigure sets them; a flow expires at the configured time, and a changed one applies from its next packet", () => {
    const { dp } = natNode();
    dp.natConfigure({ enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: ip(SNAT), timeouts: { ...TIMEOUTS, udp: 5, tcpEstablished: 600 } });
    expect(dp.raw.ctTimeout(10)).toBe(5);
    expect(dp.raw.ctTimeout(3)).toBe(600);
    expect(dp.raw.ctTimeout(1)).toBe(TIMEOUTS.tcpSynSent);
    expect(dp.raw.ctTimeout(9)).toBe(TIMEOUTS.tcpSynSent); // SYN_SENT2 follows SYN_SENT
    run(dp, "pod", udpPkt(POD, OUTSIDE, 5000, 53));
    expect(dp.ctExpire(1004, 100)).toBe(0);
    expect(dp.ctExpire(1005, 100)).toBe(1);
    // ESTABLISHED at 600 s, then lowered live to 60: the flow takes it with its next packet.
    const sport = ports(run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, SYN)).bytes).sport;
    run(dp, "pod", tcpPkt(OUTSIDE, NODE, 80, sport, SYNACK));
    run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, ACK));
    expect(dp.conntrackDump(1000)[0]).toMatchObject({ state: 3, expiresIn: 600 });
    dp.setTimeouts({ tcpEstablished: 60 });
    expect(dp.conntrackDump(1000)[0].expiresIn).toBe(600);
    dp.setNow(1010);
    run(dp, "pod", tcpPkt(POD, OUTSIDE, 40000, 80, ACK));
    expect(dp.conntrackDump(1010)[0].expiresIn).toBe(60);
    expect(dp.ctExpire(1069, 100)).toBe(0);
    expect(dp.ctExpire(1070, 100)).toBe(1);
    expect(() => dp.setTimeouts({ udp: 0 })).toThrow(/timeout udp/);
  });

  it("a reload's tables carry them: applied at start and changed live (TableState, as the worker does)", () => {
    const { dp } = natNode();
    const state = new TableState(dp);
    const tables = (timeouts: typeof TIMEOUTS): DataplaneTables => ({
      node: { mode: "tun", underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, vni: 100 },
      peers: [], nexthops: [{ kind: "local", peer: 0xffff, gateway: 0 }], routes: [{ prefix: ip("198.19.2.0"), len: 24, nh: 0 }], neigh: [], fdb: [],
      nat: { enabled: true, masquerade: true, nodeIp: W2.underlay, snatAddress: ip(SNAT), timeouts }, services: [],
    });
    expect(state.apply(tables({ ...TIMEOUTS, tcpEstablished: 3600 })).errors).toEqual([]);
    expect(dp.raw.ctTimeout(3)).toBe(3600);
    expect(state.apply(tables({ ...TIMEOUTS, tcpEstablished: 7200, icmp: 9 })).errors).toEqual([]);
    expect([dp.raw.ctTimeout(3), dp.raw.ctTimeout(12)]).toEqual([7200, 9]);
  });
});

describe("a backend removed from a service", () => {
  const BE_A = { addr: ip("198.19.3.8"), port: 5353 };
  const BE_B = { addr: ip("198.19.3.9"), port: 5353 };
  const svc = (udpBackends: { addr: number; port: number }[]): ServiceFrontend[] => [
    { protocol: "udp", addr: ip(CLUSTER_IP), port: 53, backends: udpBackends },
    { protocol: "udp", addr: W2.underlay, port: 30053, nodePort: true, backends: udpBackends },
    { protocol: "tcp", addr: ip(CLUSTER_IP), port: 80, backends: [BE_A] },
  ];
  const flush = (dp: Dataplane, prev: ServiceFrontend[], next: ServiceFrontend[]) => {
    const walk = dp.backendFlush(17, removedBackends(prev, next, "udp"));
    let steps = 0;
    while (!walk.step(1)) steps++;
    return { deleted: walk.deleted, steps };
  };

  it("its UDP flows are deleted, so the client's next datagram goes to the remaining backend; TCP flows stay", () => {
    const { dp } = natNode();
    const before = svc([BE_A]);
    dp.setServices(before);
    const dns = run(dp, "pod", udpPkt(POD, CLUSTER_IP, 7000, 53));
    expect(parseIpv4(dns.bytes.subarray(50)).dst).toBe("198.19.3.8");
    const tcpOut = run(dp, "pod", tcpPkt(POD, CLUSTER_IP, 40000, 80, SYN));
    expect(tcpOut.verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    // The flow keeps its backend across the table swap (as with kube-proxy) ...
    const after = svc([BE_B]);
    dp.setServices(after);
    const again = run(dp, "pod", udpPkt(POD, CLUSTER_IP, 7000, 53));
    expect(parseIpv4(again.bytes.subarray(50)).dst).toBe("198.19.3.8");
    // ... until the reload's flush deletes it.
    const { deleted, steps } = flush(dp, before, after);
    expect(deleted).toBe(1);
    expect(steps).toBe(1); // bounded slices: 1 record per step here, 2 records
    const next = run(dp, "pod", udpPkt(POD, CLUSTER_IP, 7000, 53));
    expect(parseIpv4(next.bytes.subarray(50)).dst).toBe("198.19.3.9");
    expect(dp.conntrackDump(1000).filter((f) => f.proto === 6)).toHaveLength(1);
    expect(flush(dp, before, after).deleted).toBe(0);
  });

  it("NodePort flows of the backend go too; flows of other frontends to the same pod stay", () => {
    const { dp } = natNode();
    dp.setServices([
      ...svc([BE_A]),
      { protocol: "udp", addr: ip("198.18.250.12"), port: 53, backends: [BE_A] }, // another service on the same pod
    ]);
    run(dp, "pod", udpPkt(OUTSIDE, NODE, 6000, 30053));
    run(dp, "pod", udpPkt(POD, "198.18.250.12", 7001, 53));
    expect(dp.conntrackStats().entries).toBe(2);
    const prev = [...svc([BE_A]), { protocol: "udp" as const, addr: ip("198.18.250.12"), port: 53, backends: [BE_A] }];
    const next = [...svc([BE_B]), { protocol: "udp" as const, addr: ip("198.18.250.12"), port: 53, backends: [BE_A] }];
    dp.setServices(next);
    expect(flush(dp, prev, next).deleted).toBe(1);
    const left = dp.conntrackDump(1000);
    expect(left).toHaveLength(1);
    expect(ipStr(left[0].orig.dst)).toBe("198.18.250.12");
  });

  it("removedBackends: per frontend, removed backends, gone frontends and changed ports; only the protocol asked", () => {
    const fe = (protocol: "tcp" | "udp", addr: number, port: number, backends: { addr: number; port: number }[]) => ({ protocol, addr, port, backends });
    const prev = [fe("udp", 1, 53, [BE_A, BE_B]), fe("udp", 2, 53, [BE_A]), fe("tcp", 1, 80, [BE_A]), fe("udp", 3, 99, [{ addr: 7, port: 1 }])];
    const next = [fe("udp", 1, 53, [BE_B]), fe("tcp", 1, 80, []), fe("udp", 3, 99, [{ addr: 7, port: 2 }])];
    expect(removedBackends(prev, next, "udp")).toEqual([
      { frontendAddr: 1, frontendPort: 53, backendAddr: BE_A.addr, backendPort: 5353 },
      { frontendAddr: 2, frontendPort: 53, backendAddr: BE_A.addr, backendPort: 5353 },
      { frontendAddr: 3, frontendPort: 99, backendAddr: 7, backendPort: 1 },
    ]);
    expect(removedBackends(prev, next, "tcp")).toEqual([{ frontendAddr: 1, frontendPort: 80, backendAddr: BE_A.addr, backendPort: 5353 }]);
    expect(removedBackends(next, next)).toEqual([]);
  });

  it("a list of more pairs than one chunk is walked chunk by chunk", () => {
    const { dp } = natNode();
    const many = Array.from({ length: BackendFlush.CHUNK + 10 }, (_, i) => ({ addr: ip("198.19.3.8"), port: 1000 + i }));
    dp.setServices([{ protocol: "udp", addr: ip(CLUSTER_IP), port: 53, backends: many.slice(-1) }]);
    run(dp, "pod", udpPkt(POD, CLUSTER_IP, 7000, 53));
    const prev: ServiceFrontend[] = [{ protocol: "udp", addr: ip(CLUSTER_IP), port: 53, backends: many }];
    const walk = dp.backendFlush(17, removedBackends(prev, []));
    let steps = 0;
    while (!walk.step(1 << 16)) steps++;
    expect(steps).toBe(1); // two chunks, one step each (the table is small)
    expect(walk.deleted).toBe(1);
  });
});
