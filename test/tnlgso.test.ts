// Whole TCP super-frames inside one VXLAN packet (assembly/pipeline/wholeframe.ts):
// worker2 builds the tunnel GSO frame for its tap from a tun super-frame
// (tunnel.kernelGso); worker3 takes such a packet, arrived unsegmented, and
// turns it into one TSO write for its tun. Checked end to end: what the
// kernel would cut from worker3's write is the pod's stream, byte for byte.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { inetChecksum, ip, ipv4, parseIpv4, tcp, tsoFrame } from "./helpers/packets.js";
import { DEV_MAC, W2, W3, worker2, worker3 } from "./helpers/topology.js";

const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 255);
const SRC = "198.19.2.5", DST = "198.19.3.7";
const MSS = 1398;
const TAP_MAC = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

/** virtio_net_hdr TCPV4 (NEEDS_CSUM) + an IPv4/TCP super-frame, as a tun with TSO hands it over. */
function superframe(data: Uint8Array, flags = 0x18, dst = DST): Uint8Array {
  return tsoFrame(ipv4({ src: SRC, dst, proto: 6, ttl: 64, id: 300, payload: tcp(SRC, dst, 40000, 5201, flags, data, 1_000_000, 77) }), MSS);
}

/** Sum over the L4 part with the pseudo header (0 when valid); `partial`: the field's expected partial value instead. */
function pseudo(p: Uint8Array): number {
  const h = parseIpv4(p);
  const a = ip(h.src), b = ip(h.dst);
  return (a >>> 16) + (a & 0xffff) + (b >>> 16) + (b & 0xffff) + p[9] + (h.totalLen - h.hl);
}

describe("tunnel GSO: one super-frame, built on worker2, delivered whole on worker3", () => {
  const w2 = worker2().dp;
  const w3 = worker3().dp;
  w2.raw.gsoSetup((TAP_MAC[0] << 8) | TAP_MAC[1], ((TAP_MAC[2] << 24) | (TAP_MAC[3] << 16) | (TAP_MAC[4] << 8) | TAP_MAC[5]) >>> 0, Number(w2.raw.allocScratch(16)));
  w3.raw.encapRxSetup(Number(w3.raw.allocScratch(64)));
  const PREFIX = Number((w2.raw.TNL_PREFIX as WebAssembly.Global).value);
  const buf2 = Number(w2.raw.allocScratch(70_000)) + 128; // room in front, as the worker leaves it
  const buf3 = Number(w3.raw.allocScratch(70_000));
  const data = payload(20_000);
  const segs = Math.ceil(data.length / MSS);
  /** worker2 builds the frame for `data`; what worker3's UDP socket returns for it, unsegmented: the UDP payload (VXLAN onwards). */
  const sentDatagram = (flags: number): Uint8Array => {
    const sf = superframe(data, flags);
    w2.u8.set(sf, buf2);
    w2.raw.gsoRepresentative(buf2, sf.length, 0);
    w2.processPod(1);
    const len = w2.raw.gsoBuild(0, buf2, sf.length, segs);
    const start = buf2 + 10 - PREFIX + 24 + 14 + 28;
    return w2.u8.slice(start, start + len - 24 - 14 - 28);
  };

  it("worker2: the representative goes through the pipeline, the frame carries its headers over the whole payload", () => {
    const sf = superframe(data, 0x19); // ACK|FIN: FIN must reach the last segment only, by the kernel
    w2.u8.set(sf, buf2);
    const before = w2.counters();
    expect(w2.raw.gsoRepresentative(buf2, sf.length, 0)).toBe(segs);
    w2.processPod(1);
    const len = w2.raw.gsoBuild(0, buf2, sf.length, segs);
    expect(len).toBe(PREFIX + sf.length - 10);
    // The slot is handled: nothing for the I/O layer to send.
    expect(w2.result(0).verdict).toBe(abi.VERDICT_DROP);
    const after = w2.counters();
    // Counted as the segments the kernel will send, not as one packet.
    expect(after.rx_pod_packets - before.rx_pod_packets).toBe(BigInt(segs));
    expect(after.tx_vxlan_packets - before.tx_vxlan_packets).toBe(BigInt(segs));
    expect(after.tx_vxlan_bytes - before.tx_vxlan_bytes).toBe(BigInt(data.length + segs * (40 + 50)));
    expect(after.drop_truncated).toBe(before.drop_truncated);

    const start = buf2 + 10 - PREFIX;
    const f = w2.u8.slice(start, start + len);
    const dv = new DataView(f.buffer);
    // virtio_net_hdr_v1_hash_tunnel
    expect(f[0]).toBe(1);
    expect(f[1]).toBe(0x21); // TCPV4 | UDP_TUNNEL_IPV4
    expect(dv.getUint16(2, true)).toBe(14 + 50 + 40);
    expect(dv.getUint16(4, true)).toBe(MSS);
    expect(dv.getUint16(6, true)).toBe(14 + 50 + 20);
    expect(dv.getUint16(8, true)).toBe(16);
    expect(Array.from(f.subarray(10, 20))).toEqual(new Array(10).fill(0));
    expect(dv.getUint16(20, true)).toBe(14 + 20);
    expect(dv.getUint16(22, true)).toBe(14 + 50);
    // Ethernet to the tap itself.
    expect(Array.from(f.subarray(24, 30))).toEqual(TAP_MAC);
    expect(dv.getUint16(36)).toBe(0x0800);
    // Outer IPv4/UDP/VXLAN: the pipeline's, lengths for the whole frame, TTL one up for the forward.
    const o = parseIpv4(f.subarray(38));
    expect(o).toMatchObject({ src: "198.18.0.12", dst: "198.18.1.13", proto: 17, ttl: 65, checksumOk: true });
    expect(o.totalLen).toBe(len - 38);
    expect(dv.getUint16(38 + 22)).toBe(4789);
    expect(dv.getUint16(38 + 24)).toBe(len - 38 - 20);
    expect(dv.getUint16(38 + 26)).toBe(0);
    expect(f[38 + 28]).toBe(0x08);
    expect(Array.from(f.subarray(38 + 36, 38 + 42))).toEqual(Array.from(W3.mac.toString(16).padStart(12, "0").match(/../g)!, (x) => parseInt(x, 16)));
    // Inner: TTL as read (the kernel took the node's hop), whole length, the frame's flags, checksum left partial for the kernel.
    const inner = f.subarray(38 + 50);
    const i = parseIpv4(inner);
    expect(i).toMatchObject({ src: SRC, dst: DST, ttl: 64, checksumOk: true, totalLen: inner.length, id: 300 });
    const t = new DataView(inner.buffer, inner.byteOffset);
    expect(t.getUint32(20 + 4)).toBe(1_000_000);
    expect(inner[20 + 13]).toBe(0x19);
    let s = pseudo(inner);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    expect(t.getUint16(20 + 16)).toBe(s);
    expect(Buffer.from(inner.subarray(40)).equals(Buffer.from(data))).toBe(true);
  });

  it("worker3: that packet, arrived unsegmented, becomes one TSO write to the tun with the same stream", () => {
    const datagram = sentDatagram(0x19);
    w3.u8.set(datagram, buf3);
    const before = w3.counters();
    const n = w3.raw.encapRepresentative(buf3, datagram.length, 0, ip("198.18.0.12"), ip("198.18.1.13"), 0);
    expect(n).toBe(segs);
    w3.processVxlan(1);
    const wlen = w3.raw.encapBuild(0, buf3, datagram.length, n);
    expect(wlen).toBe(datagram.length - 22 + 10);
    expect(w3.result(0).verdict).toBe(abi.VERDICT_DROP);
    const after = w3.counters();
    expect(after.to_device_packets - before.to_device_packets).toBe(BigInt(segs));
    expect(after.rx_vxlan_packets - before.rx_vxlan_packets).toBe(BigInt(segs));
    const w = w3.u8.slice(buf3 + 12, buf3 + 12 + wlen);
    const dv = new DataView(w.buffer);
    expect(w[0]).toBe(1); // NEEDS_CSUM
    expect(w[1]).toBe(1); // TCPV4
    expect(dv.getUint16(4, true)).toBe(1500 - 50 - 40);
    expect(dv.getUint16(6, true)).toBe(20);
    expect(dv.getUint16(8, true)).toBe(16);
    const inner = w.subarray(10);
    const h = parseIpv4(inner);
    expect(h).toMatchObject({ src: SRC, dst: DST, checksumOk: true, totalLen: inner.length });
    // Finish the partial checksum as the kernel would: then it verifies.
    const c = inner.slice();
    const cdv = new DataView(c.buffer);
    const partial = cdv.getUint16(20 + 16);
    cdv.setUint16(20 + 16, 0);
    cdv.setUint16(20 + 16, inetChecksum(c.subarray(20), partial));
    expect(inetChecksum(c.subarray(20), pseudo(c))).toBe(0);
    expect(c[20 + 13]).toBe(0x19);
    expect(Buffer.from(c.subarray(40)).equals(Buffer.from(data))).toBe(true);
  });

  it("worker3 with NAT on declines (its connection state follows every packet): the frame is segmented instead", () => {
    const datagram = sentDatagram(0x18);
    const nat = worker3().dp;
    nat.raw.encapRxSetup(Number(nat.raw.allocScratch(64)));
    expect(nat.raw.offloadSetup()).toBe(abi.OK);
    const b = Number(nat.raw.allocScratch(70_000));
    nat.u8.set(datagram, b);
    expect(nat.raw.encapRepresentative(b, datagram.length, 0, ip("198.18.0.12"), ip("198.18.1.13"), 0)).toBe(segs);
    nat.natSetup({ maxFlows: 64 });
    nat.natConfigure({ enabled: true, masquerade: true, nodeIp: ip("198.18.1.13"), snatAddress: ip("198.19.3.1") });
    expect(nat.raw.encapRepresentative(b, datagram.length, 0, ip("198.18.0.12"), ip("198.18.1.13"), 0)).toBe(0);
    expect(nat.raw.ingestEncapSuperframe(b, datagram.length, 0, ip("198.18.0.12"), ip("198.18.1.13"), 0)).toBe(segs);
  });

  it("frames that cannot leave whole are left to the usual path: other next hops, one segment, no GSO", () => {
    for (const sf of [
      superframe(data, 0x18, "198.19.1.9"), // IPIP peer
      superframe(data, 0x18, "198.19.4.9"), // direct
      superframe(payload(MSS)), // a single segment
      superframe(payload(65535 - 40)), // the inner packet at 64 KiB: no room for the outer headers
    ]) {
      w2.u8.set(sf, buf2);
      expect(w2.raw.gsoRepresentative(buf2, sf.length, 0)).toBe(0);
    }
    const plain = superframe(data);
    plain[1] = 0; // gso_type NONE
    w2.u8.set(plain, buf2);
    expect(w2.raw.gsoRepresentative(buf2, plain.length, 0)).toBe(0);
  });

  it("a representative the pipeline did not send as VXLAN builds nothing", () => {
    const sf = superframe(data);
    sf[10 + 6] |= 0x40; // DF
    // IPv4 header checksum after the flag change
    const dv = new DataView(sf.buffer);
    dv.setUint16(10 + 10, 0);
    dv.setUint16(10 + 10, inetChecksum(sf.subarray(10, 30)));
    w2.u8.set(sf, buf2);
    expect(w2.raw.gsoRepresentative(buf2, sf.length, 0)).toBe(segs);
    // An underlay too small for the representative: the pipeline answers
    // with fragmentation needed instead.
    const node = { mode: "tun" as const, underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100 };
    w2.configure({ ...node, underlayMtu: 1450 });
    try {
      w2.processPod(1);
    } finally {
      w2.configure({ ...node, underlayMtu: 1500 });
    }
    expect(w2.result(0)).toMatchObject({ verdict: abi.VERDICT_REPLY, reason: abi.R_TOO_BIG });
    expect(w2.raw.gsoBuild(0, buf2, sf.length, segs)).toBe(0);
    expect(w2.result(0).verdict).toBe(abi.VERDICT_REPLY);
  });
});
