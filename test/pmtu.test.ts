// Path MTU per peer from the underlay (assembly/pipeline/pmtu.ts): a router's
// fragmentation-needed about one of our outer packets lowers that peer's path
// MTU, later inner packets too big for it are answered with the inner MTU,
// forged or stray errors change nothing (counted), and the value ages out.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { inetChecksum, ip, ipStr, ipv4, parseIpv4, udp } from "./helpers/packets.js";
import { W1, W2, W3, W4, worker2 } from "./helpers/topology.js";

const payload = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 255);
const podUdp = (dst: string, size: number) => ipv4({ src: "198.19.2.5", dst, proto: 17, df: true, payload: udp("198.19.2.5", dst, 40000, 8080, payload(size)) });
const ROUTER = "198.18.0.1";

/** An ICMP fragmentation-needed from `from` to `to`, next-hop MTU `mtu`, quoting `quoted` (its first 28+ bytes). */
function fragNeeded(quoted: Uint8Array, mtu: number, o: { from?: string; to?: number; badChecksum?: boolean; type?: number; code?: number } = {}): Uint8Array {
  const q = quoted.subarray(0, Math.min(quoted.length, 548));
  const icmp = new Uint8Array(8 + q.length);
  icmp[0] = o.type ?? 3;
  icmp[1] = o.code ?? 4;
  new DataView(icmp.buffer).setUint16(6, mtu);
  icmp.set(q, 8);
  new DataView(icmp.buffer).setUint16(2, inetChecksum(icmp) ^ (o.badChecksum ? 0x1111 : 0));
  return ipv4({ src: o.from ?? ROUTER, dst: o.to ?? W2.underlay, proto: 1, payload: icmp });
}

describe("path MTU from the underlay's ICMP", () => {
  const { dp } = worker2();
  const C = (name: string) => dp.counters()[name];

  /** Encapsulate one pod packet to `dst` and return the outer packet as sent. */
  function outer(dst: string, size = 1200): Uint8Array {
    dp.writePacket(0, podUdp(dst, size));
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    return dp.readPacket(0).slice();
  }

  function icmp(pkts: Uint8Array[]) {
    pkts.forEach((p, i) => dp.writePacket(i, p));
    return dp.processIcmp(pkts.length);
  }

  function sendPod(dst: string, size: number) {
    const pkt = podUdp(dst, size);
    dp.writePacket(0, pkt);
    dp.processPod(1);
    const r = dp.result(0);
    if (r.verdict !== abi.VERDICT_REPLY) return { verdict: r.verdict };
    const o = parseIpv4(dp.readPacket(0));
    return { verdict: r.verdict, reason: r.reason, type: o.payload[0], code: o.payload[1], mtu: (o.payload[6] << 8) | o.payload[7], to: o.dst };
  }

  it("forged and stray errors change nothing and are counted", () => {
    dp.setClock(1_000);
    const vx = outer("198.19.3.7");
    const ignoredBefore = C("pmtu_ignored");
    const toPeerUnknown = vx.slice();
    new DataView(toPeerUnknown.buffer).setUint32(16, ip("198.18.5.5")); // no such peer
    const otherPort = vx.slice();
    new DataView(otherPort.buffer).setUint16(22, 5000); // not tunnel.port
    const notFromUs = vx.slice();
    new DataView(notFromUs.buffer).setUint32(12, ip("198.18.0.99"));
    const updates = icmp([
      fragNeeded(toPeerUnknown, 1300),
      fragNeeded(otherPort, 1300),
      fragNeeded(vx, 1300, { badChecksum: true }),
      fragNeeded(vx, 1300, { to: ip("198.18.0.77") }), // not sent to our address
      fragNeeded(notFromUs, 1300), // not about our packet: not even counted
      fragNeeded(vx, 1300, { code: 1 }), // host unreachable: not a PMTU message
      fragNeeded(vx.subarray(0, 24), 1300), // quote cut short of the UDP ports
      fragNeeded(vx, 1600), // not lower than the packet it quotes
    ]);
    expect(updates).toEqual([]);
    // Counted: unknown peer, other port, bad checksum, short quote, an MTU the quoted packet fits.
    expect(C("pmtu_ignored") - ignoredBefore).toBe(5n);
    expect(C("pmtu_lowered")).toBe(0n);
    expect(sendPod("198.19.3.7", 1400 - 28).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.peerPmtu(0)).toBe(1500);
  });

  it("a router's frag-needed about our VXLAN packet lowers worker3's path MTU; bigger inner packets get the inner MTU back", () => {
    dp.setClock(2_000);
    const updates = icmp([fragNeeded(outer("198.19.3.7", 1400), 1300)]);
    expect(updates.map((u) => ({ peer: ipStr(u.peer), mtu: u.mtu, from: ipStr(u.from) }))).toEqual([{ peer: "198.18.1.13", mtu: 1300, from: ROUTER }]);
    expect(C("pmtu_lowered")).toBe(1n);
    expect(dp.peerPmtu(0)).toBe(1300);
    // 1250 inner bytes fit (1300 outer), 1251 get fragmentation-needed with 1250.
    expect(sendPod("198.19.3.7", 1250 - 28).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(sendPod("198.19.3.7", 1251 - 28)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG, type: 3, code: 4, mtu: 1250, to: "198.19.2.5" });
    // Without DF it leaves as it is (the underlay may fragment it), as from the kernel's vxlan.
    dp.writePacket(0, ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, df: false, payload: udp("198.19.2.5", "198.19.3.7", 40000, 8080, payload(1400 - 28)) }));
    dp.processPod(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    // Other peers keep the tunnel MTU: worker1 over IPIP still takes 1480.
    expect(sendPod("198.19.1.7", 1480 - 28).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    // The same report again refreshes it without news; a higher one never raises it.
    expect(icmp([fragNeeded(outer("198.19.3.7", 1250 - 28), 1200 + 100)])).toEqual([]);
    expect(dp.peerPmtu(0)).toBe(1300);
  });

  it("IPIP: a frag-needed quoting our protocol-4 packet lowers worker1's; the inner MTU is 20 less", () => {
    dp.setClock(3_000);
    const updates = icmp([fragNeeded(outer("198.19.1.7", 1400), 1400)]);
    expect(updates.map((u) => [ipStr(u.peer), u.mtu])).toEqual([["198.18.0.11", 1400]]);
    expect(sendPod("198.19.1.7", 1380 - 28).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(sendPod("198.19.1.7", 1381 - 28)).toMatchObject({ verdict: abi.VERDICT_REPLY, mtu: 1380 });
  });

  it("an MTU of 0 (RFC 1191's old routers) or below 552 is taken as 552", () => {
    dp.setClock(4_000);
    icmp([fragNeeded(outer("198.19.1.7", 1300), 0)]);
    expect(dp.peerPmtu(1)).toBe(552);
    dp.setPeerPmtu(W1.underlay, 0, 0); // forget it again
    expect(dp.peerPmtu(1)).toBe(1500);
  });

  it("ages out after 10 minutes; another lane's report is applied by address", () => {
    dp.setClock(2_000 + 600_000 - 1);
    expect(dp.peerPmtu(0)).toBe(1300);
    dp.setClock(2_000 + 600_000 + 1);
    expect(dp.peerPmtu(0)).toBe(1500);
    expect(sendPod("198.19.3.7", 1450 - 28).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    expect(dp.setPeerPmtu(W3.underlay, 1280, 1000)).toBe(true);
    expect(dp.peerPmtu(0)).toBe(1280);
    expect(dp.setPeerPmtu(ip("198.18.9.9"), 1280, 1000)).toBe(false);
    // A peer slot given to another address forgets the old path MTU.
    dp.setPeer(0, W4.underlay + 100, W3.mac);
    expect(dp.peerPmtu(0)).toBe(1500);
  });
});
