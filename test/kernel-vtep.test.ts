// What a kernel VTEP sends over virtual links only (veth, namespaces routed
// by the kernel, no NIC to finish offloads): inner checksums left partial
// (the pseudo-header sum alone, the skb still CHECKSUM_PARTIAL), and whole
// TCP super-frames in one VXLAN datagram (a GSO packet no device segmented).
// A UDP socket hands us the bytes without the skb's flags; decap finishes
// partial checksums and ingestEncapSuperframe segments super-frames.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { concat, ethernet, inetChecksum, ip, ipv4, parseIpv4, tcp, udp, vxlanHeader } from "./helpers/packets.js";
import { W2, W3, worker3 } from "./helpers/topology.js";

const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);
const SRC = "198.19.2.5", DST = "198.19.3.7";

/** The folded pseudo-header sum, as the kernel leaves it in a CHECKSUM_PARTIAL field. */
function partialField(src: string, dst: string, proto: number, l4len: number): number {
  const a = ip(src), b = ip(dst);
  let s = (a >>> 16) + (a & 0xffff) + (b >>> 16) + (b & 0xffff) + proto + l4len;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Inner IPv4 packet with its L4 checksum field replaced by the partial sum. */
function withPartial(pkt: Uint8Array): Uint8Array {
  const out = pkt.slice();
  const hl = (out[0] & 15) * 4;
  const proto = out[9];
  const field = proto === 6 ? 16 : 6;
  new DataView(out.buffer).setUint16(hl + field, partialField(SRC, DST, proto, out.length - hl));
  return out;
}

/** Checksum over the L4 part with the pseudo header: 0 when valid. */
function l4Check(pkt: Uint8Array): number {
  const hl = (pkt[0] & 15) * 4;
  const l4 = pkt.subarray(hl);
  const a = ip(parseIpv4(pkt).src), b = ip(parseIpv4(pkt).dst);
  const pseudo = (a >>> 16) + (a & 0xffff) + (b >>> 16) + (b & 0xffff) + pkt[9] + l4.length;
  return inetChecksum(l4, pseudo);
}

const frame = (inner: Uint8Array) => concat(vxlanHeader(100), ethernet(W3.mac, W2.mac, 0x0800, inner));
const outer = { addr: ip("198.18.0.12"), addr2: ip("198.18.1.13"), tos: 0 };

describe("decap finishes partial inner checksums", () => {
  const { dp } = worker3();
  const deliver = (inner: Uint8Array): Uint8Array => {
    dp.writePacket(0, frame(inner), outer);
    dp.processVxlan(1);
    expect(dp.result(0).verdict).toBe(abi.VERDICT_TO_DEVICE);
    return dp.readPacket(0);
  };

  it("a TCP segment with only the pseudo-header sum arrives with its full checksum", () => {
    const good = ipv4({ src: SRC, dst: DST, proto: 6, payload: tcp(SRC, DST, 5555, 80, 0x18, payload(900)) });
    const partial = withPartial(good);
    expect(l4Check(partial)).not.toBe(0);
    const got = deliver(partial);
    expect(l4Check(got)).toBe(0);
    // The same bytes the complete packet has after decap (TTL and header checksum aside).
    expect(Array.from(got.subarray(20))).toEqual(Array.from(good.subarray(20)));
  });

  it("UDP too; a zero UDP checksum (none) stays zero", () => {
    const good = ipv4({ src: SRC, dst: DST, proto: 17, payload: udp(SRC, DST, 4000, 53, payload(301)) });
    expect(l4Check(deliver(withPartial(good)))).toBe(0);
    const none = ipv4({ src: SRC, dst: DST, proto: 17, payload: udp(SRC, DST, 4000, 53, payload(301), false) });
    const got = deliver(none);
    expect(new DataView(got.buffer, got.byteOffset).getUint16(20 + 6)).toBe(0);
  });

  it("a complete checksum is left alone, and so is a wrong one (the pod's stack drops it)", () => {
    const good = ipv4({ src: SRC, dst: DST, proto: 6, payload: tcp(SRC, DST, 5555, 80, 0x10, payload(64)) });
    expect(Array.from(deliver(good).subarray(20))).toEqual(Array.from(good.subarray(20)));
    const bad = good.slice();
    bad[20 + 16] ^= 0x5a;
    const got = deliver(bad);
    expect(Array.from(got.subarray(20))).toEqual(Array.from(bad.subarray(20)));
    expect(l4Check(got)).not.toBe(0);
  });
});

describe("ingestEncapSuperframe: a whole TCP super-frame in one VXLAN datagram", () => {
  const { dp } = worker3();
  expect(dp.raw.offloadSetup()).toBe(abi.OK);
  const buf = Number(dp.raw.allocScratch(65536));
  const put = (b: Uint8Array) => dp.u8.set(b, buf);
  const data = payload(20_000, 3);
  // A pod's 20000-byte send: one IPv4/TCP packet, its checksum partial (CHECKSUM_PARTIAL).
  const superInner = withPartial(ipv4({ src: SRC, dst: DST, proto: 6, id: 700, payload: tcp(SRC, DST, 5555, 80, 0x19, data, 77_000, 5) }));
  const datagram = frame(superInner);

  it("becomes tunnel-MTU datagrams the pipeline delivers: every byte once, in order, checksums valid", () => {
    put(datagram);
    const k = dp.raw.ingestEncapSuperframe(buf, datagram.length, 2, outer.addr, outer.addr2, 0);
    const mss = 1500 - 50 - 40;
    expect(k).toBe(Math.ceil(data.length / mss));
    // The datagram's bytes are as they were (the caller may still need them).
    expect(Array.from(dp.u8.subarray(buf, buf + datagram.length))).toEqual(Array.from(datagram));
    for (let j = 0; j < k; j++) {
      const m = dp.metaPtr(2 + j);
      expect(dp.dv.getUint32(m + abi.META_ADDR, true)).toBe(outer.addr);
      expect(dp.dv.getUint32(m + abi.META_ADDR2, true)).toBe(outer.addr2);
      const seg = dp.readPacket(2 + j);
      // Each slot holds VXLAN + Ethernet + one segment no longer than the tunnel MTU.
      expect(Array.from(seg.subarray(0, 22))).toEqual(Array.from(datagram.subarray(0, 22)));
      expect(seg.length - 22).toBeLessThanOrEqual(1450);
    }
    // Through the pipeline, two slots left free in front.
    for (let j = 0; j < 2; j++) dp.writePacket(j, new Uint8Array(4), outer);
    dp.processVxlan(2 + k);
    const got: number[] = [];
    let seq = 77_000;
    for (let j = 0; j < k; j++) {
      expect(dp.result(2 + j).verdict).toBe(abi.VERDICT_TO_DEVICE);
      const p = dp.readPacket(2 + j);
      const h = parseIpv4(p);
      expect(h.checksumOk).toBe(true);
      expect(h.totalLen).toBe(p.length);
      expect(h.id).toBe((700 + j) & 0xffff);
      expect(l4Check(p)).toBe(0);
      const dv = new DataView(p.buffer, p.byteOffset);
      expect(dv.getUint32(20 + 4)).toBe(seq >>> 0);
      // FIN (0x01) on the last segment only; ACK on all.
      expect(p[20 + 13]).toBe(j === k - 1 ? 0x19 : 0x10);
      const body = p.subarray(40);
      seq += body.length;
      got.push(...body);
    }
    expect(got.length).toBe(data.length);
    expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
  });

  it("takes nothing when the slots left cannot hold it all; the caller runs the batch first", () => {
    put(datagram);
    expect(dp.raw.ingestEncapSuperframe(buf, datagram.length, 60, outer.addr, outer.addr2, 0)).toBe(0);
  });

  it("refuses what is not an IPv4/TCP super-frame whose length matches the datagram", () => {
    const udpInner = ipv4({ src: SRC, dst: DST, proto: 17, payload: udp(SRC, DST, 1, 2, payload(5000)) });
    for (const d of [
      frame(udpInner), // inner UDP
      datagram.subarray(0, datagram.length - 1), // cut short
      concat(vxlanHeader(100, 0), datagram.subarray(8)), // no I flag
      concat(datagram.subarray(0, 20), Uint8Array.of(0x86, 0xdd), datagram.subarray(22)), // not IPv4
    ]) {
      put(d);
      expect(dp.raw.ingestEncapSuperframe(buf, d.length, 0, outer.addr, outer.addr2, 0)).toBe(abi.E_RANGE);
    }
  });
});
