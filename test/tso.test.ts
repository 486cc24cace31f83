// Software TSO (assembly/offload/tso.ts) against its naive twin
// (test/reference/slow-segment.ts): random super-frames as the kernel's tun
// hands them over (virtio_net_hdr GSO_TCPV4 + NEEDS_CSUM, the pseudo-header
// partial sum in the TCP checksum field), compared byte for byte; every
// segment's checksums verify; the payloads concatenate to the original;
// refusals and bounds write nothing (guard bytes).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";
import { inetChecksum, ipv4, tcp, udp } from "./helpers/packets.js";
import {
  ACK, CWR, F_DATA_VALID, F_NEEDS_CSUM, FIN, GSO_ECN, GSO_NONE, GSO_TCPV6, GSO_UDP, GSO_UDP_L4, PSH,
  ipv4TcpChecksumsOk, pseudoPartial, pseudoSum, slowTso, superFrame, superFrameSpec, withVnet, type SuperFrameSpec,
} from "./reference/slow-segment.js";

const SRC_CAP = 70_000;
const STRIDE = 2048;
const SLOTS = 160;
const GUARD = 4096;
const A5 = 0xa5;

interface Harness {
  w: RawExports;
  src: number;
  dst: number;
  lens: number;
  mem(): Uint8Array;
}

function harness(kind: "debug" | "release"): Harness {
  const w = instantiateDataplane(kind);
  if (w.init(8, 2048, 16, 16, 16, 16, 16) !== abi.OK) throw new Error("init failed");
  const src: number = w.scratchAlloc(SRC_CAP);
  const dst: number = w.scratchAlloc(SLOTS * STRIDE + GUARD);
  const lens: number = w.scratchAlloc(SLOTS * 4 + GUARD);
  if (!src || !dst || !lens) throw new Error("scratchAlloc failed");
  return { w, src, dst, lens, mem: () => new Uint8Array(w.memory.buffer) };
}

/** Run tsoSegment over `input` with output guarded by 0xA5; returns the
 *  status, the segments, and whether every byte outside the allowed
 *  output (and every outLens entry past the returned count) kept 0xA5. */
function runTso(h: Harness, input: Uint8Array, stride = STRIDE, maxOut = SLOTS) {
  const m = h.mem();
  m.set(input, h.src);
  m.fill(A5, h.dst, h.dst + SLOTS * STRIDE + GUARD);
  m.fill(A5, h.lens, h.lens + SLOTS * 4 + GUARD);
  const n: number = h.w.tsoSegment(h.src, input.length, h.dst, stride, maxOut, h.lens);
  const mm = h.mem();
  const dv = new DataView(mm.buffer);
  const segs: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const len = dv.getUint32(h.lens + 4 * k, true);
    segs.push(mm.slice(h.dst + k * stride, h.dst + k * stride + len));
  }
  const written = Math.max(n, 0);
  let guardsOk = mm.subarray(h.dst + maxOut * stride, h.dst + SLOTS * STRIDE + GUARD).every((b) => b === A5);
  guardsOk &&= mm.subarray(h.lens + 4 * written, h.lens + SLOTS * 4 + GUARD).every((b) => b === A5);
  if (n < 0) guardsOk &&= mm.subarray(h.dst, h.dst + SLOTS * STRIDE).every((b) => b === A5);
  const srcAfter = mm.slice(h.src, h.src + input.length);
  return { n, segs, guardsOk, srcAfter };
}

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const be32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;

for (const kind of ["debug", "release"] as const) {
  describe(`tsoSegment (${kind} build)`, () => {
    const h = harness(kind);

    it("random super-frames: equal to the reference byte for byte; checksums, ids, seqs, flags, payload order", () => {
      fc.assert(
        fc.property(superFrameSpec(), (s) => {
          const input = superFrame(s);
          const want = slowTso(input);
          expect(want).not.toBe("refused");
          const ws = want as Uint8Array[];
          const got = runTso(h, input);
          expect(got.guardsOk).toBe(true);
          expect(got.n).toBe(ws.length);
          expect(got.n).toBe(Math.ceil(s.payload.length / s.mss));
          expect(h.w.tsoSegmentCount(h.src, input.length)).toBe(ws.length);
          for (let k = 0; k < ws.length; k++) {
            if (!Buffer.from(got.segs[k]).equals(Buffer.from(ws[k]))) expect([k, got.segs[k]]).toEqual([k, ws[k]]);
          }
          const ihl = 20 + s.ipOptions.length;
          const hdr = ihl + 20 + s.tcpOptions.length;
          const payloads: Uint8Array[] = [];
          let seq = s.seq;
          got.segs.forEach((g, k) => {
            const last = k === got.segs.length - 1;
            expect(ipv4TcpChecksumsOk(g)).toBe(true);
            expect(be16(g, 2)).toBe(g.length);
            expect(g.length).toBeLessThanOrEqual(hdr + s.mss);
            if (!last) expect(g.length).toBe(hdr + s.mss);
            expect(be16(g, 4)).toBe((s.id + k) & 0xffff);
            expect(be32(g, ihl + 4)).toBe(seq >>> 0);
            let f = s.flags;
            if (!last) f &= ~(FIN | PSH);
            if (k > 0) f &= ~CWR;
            expect(g[ihl + 13]).toBe(f);
            payloads.push(g.subarray(hdr));
            seq += g.length - hdr;
          });
          expect(Buffer.concat(payloads).equals(Buffer.from(s.payload))).toBe(true);
        }),
        { numRuns: kind === "debug" ? 150 : 60 },
      );
    });

    it("gso_type NONE with NEEDS_CSUM: the checksum is finished in place and the packet copied to slot 0", () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 1400 }), fc.boolean(), fc.integer({ min: 1, max: 0xffff }), (data, isUdp, port) => {
          const l4 = isUdp ? udp("10.0.0.1", "10.0.0.2", port, 53, data) : tcp("10.0.0.1", "10.0.0.2", port, 80, ACK | PSH, data);
          const pkt = ipv4({ src: "10.0.0.1", dst: "10.0.0.2", proto: isUdp ? 17 : 6, payload: l4 });
          const off = isUdp ? 6 : 16;
          const partial = pkt.slice();
          const pp = pseudoPartial(pkt, l4.length);
          partial[20 + off] = pp >> 8;
          partial[20 + off + 1] = pp & 255;
          const input = withVnet({ flags: F_NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 20, csumOffset: off }, partial);
          const got = runTso(h, input);
          expect(got.n).toBe(1);
          expect(got.guardsOk).toBe(true);
          expect((slowTso(input) as Uint8Array[])[0]).toEqual(got.segs[0]);
          expect(got.srcAfter.subarray(10)).toEqual(got.segs[0]);
          const seg = got.segs[0];
          expect(inetChecksum(seg.subarray(20), pseudoSum(seg, l4.length))).toBe(0);
          // Same bytes as the helper's own full checksum, up to the 0/0xFFFF zero of RFC 1624.
          const c = be16(seg, 20 + off);
          const ref = be16(pkt, 20 + off);
          expect(c === ref || (c === 0xffff && ref === 0) || (c === 0 && ref === 0xffff)).toBe(true);
        }),
        { numRuns: 300 },
      );
    });

    it("gso_type NONE without NEEDS_CSUM: any packet (even non-IP) copied unchanged", () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 2000 }), fc.boolean(), (pkt, valid) => {
          const input = withVnet({ flags: valid ? F_DATA_VALID : 0, gsoType: GSO_NONE, hdrLen: 7, gsoSize: 3, csumStart: 9, csumOffset: 9 }, pkt);
          const got = runTso(h, input);
          expect(got.n).toBe(1);
          expect(got.segs[0]).toEqual(pkt);
          expect(got.srcAfter).toEqual(input);
        }),
        { numRuns: 200 },
      );
    });

    describe("refusals return E_RANGE and write nothing", () => {
      const base: SuperFrameSpec = {
        payload: Uint8Array.from({ length: 5000 }, (_, i) => i & 255), mss: 1448, flags: ACK | PSH, ipOptions: new Uint8Array(0),
        tcpOptions: new Uint8Array(0), id: 7, seq: 1, ack: 2, window: 1000, tos: 0, ttl: 64, df: true, ecn: false,
        src: 0x0a000001, dst: 0x0a000002, sport: 1234, dport: 80,
      };
      const good = superFrame(base);
      const mutate = (f: (b: Uint8Array, dv: DataView) => void) => {
        const b = good.slice();
        f(b, new DataView(b.buffer));
        return b;
      };
      const cases: [string, Uint8Array][] = [
        ["empty", new Uint8Array(0)],
        ["header only", good.slice(0, 10)],
        ["TCPV6", mutate((b) => (b[1] = GSO_TCPV6))],
        ["UDP (UFO)", mutate((b) => (b[1] = GSO_UDP))],
        ["UDP_L4 (USO)", mutate((b) => (b[1] = GSO_UDP_L4))],
        ["ECN bit alone", mutate((b) => (b[1] = GSO_ECN))],
        ["unknown flag", mutate((b) => (b[0] |= 4))],
        ["TCPV4 without NEEDS_CSUM", mutate((b) => (b[0] = 0))],
        ["gso_size 0", mutate((_, dv) => dv.setUint16(4, 0, true))],
        ["csum_start not the TCP header", mutate((_, dv) => dv.setUint16(6, 24, true))],
        ["csum_offset not the TCP checksum", mutate((_, dv) => dv.setUint16(8, 6, true))],
        ["csum field past the end", mutate((_, dv) => dv.setUint16(6, 60000, true))],
        ["IPv6 version", mutate((b) => (b[10] = 0x65))],
        ["IHL < 5", mutate((b) => (b[10] = 0x44))],
        ["not TCP", mutate((b) => (b[19] = 17))],
        ["a fragment (MF)", mutate((b) => (b[16] |= 0x20))],
        ["a fragment (offset)", mutate((b) => (b[17] = 1))],
        ["total length past the buffer", mutate((_, dv) => dv.setUint16(12, good.length - 10 + 1))],
        ["total length shorter than the TCP header", mutate((_, dv) => dv.setUint16(12, 30))],
        ["TCP data offset < 5", mutate((b) => (b[10 + 20 + 12] = 0x40))],
        ["TCP data offset past the end", mutate((b, dv) => {
          b[10 + 20 + 12] = 0xf0;
          dv.setUint16(12, 20 + 40);
        })],
        ["truncated super-frame", good.slice(0, 40)],
      ];
      for (const [name, input] of cases) {
        it(name, () => {
          expect(slowTso(input)).toBe("refused");
          if (input.length === 0) {
            expect(h.w.tsoSegment(h.src, 0, h.dst, STRIDE, SLOTS, h.lens)).toBe(abi.E_RANGE);
            return;
          }
          const got = runTso(h, input);
          expect(got.n).toBe(abi.E_RANGE);
          expect(got.guardsOk).toBe(true);
          expect(got.srcAfter).toEqual(input);
          expect(h.w.tsoSegmentCount(h.src, input.length)).toBe(abi.E_RANGE);
        });
      }
    });

    describe("bounds", () => {
      it("maxOut one short of the segment count: E_RANGE, nothing written; exactly enough: every slot up to the limit, not past it", () => {
        fc.assert(
          fc.property(superFrameSpec(20000), (s) => {
            const input = superFrame(s);
            const need = Math.ceil(s.payload.length / s.mss);
            if (need > 1) {
              const short = runTso(h, input, STRIDE, need - 1);
              expect(short.n).toBe(abi.E_RANGE);
              expect(short.guardsOk).toBe(true);
            }
            const exact = runTso(h, input, STRIDE, need);
            expect(exact.n).toBe(need);
            expect(exact.guardsOk).toBe(true);
          }),
          { numRuns: 60 },
        );
      });
      it("a stride shorter than a segment: E_RANGE; a stride of exactly the largest segment: packed slots, guard intact", () => {
        fc.assert(
          fc.property(superFrameSpec(8000), (s) => {
            const input = superFrame(s);
            const hdr = 20 + s.ipOptions.length + 20 + s.tcpOptions.length;
            const seg = hdr + Math.min(s.mss, s.payload.length);
            h.mem().set(input, h.src);
            expect(h.w.tsoSegmentMaxLen(h.src, input.length)).toBe(seg);
            const need = Math.ceil(s.payload.length / s.mss);
            const small = runTso(h, input, seg - 1, need);
            expect(small.n).toBe(abi.E_RANGE);
            expect(small.guardsOk).toBe(true);
            const tight = runTso(h, input, seg, need);
            expect(tight.n).toBe(need);
            expect(tight.guardsOk).toBe(true);
            expect(Buffer.concat(tight.segs.map((g) => g.subarray(hdr))).equals(Buffer.from(s.payload))).toBe(true);
            expect(tight.segs).toEqual(slowTso(input));
          }),
          { numRuns: 60 },
        );
      });
      it("gso_type NONE longer than the stride, or maxOut 0: E_RANGE", () => {
        const input = withVnet({ flags: 0, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, new Uint8Array(100).fill(7));
        expect(runTso(h, input, 99, 1).n).toBe(abi.E_RANGE);
        expect(runTso(h, input, 100, 0).n).toBe(abi.E_RANGE);
        const ok = runTso(h, input, 100, 1);
        expect(ok.n).toBe(1);
        expect(ok.guardsOk).toBe(true);
      });
      it("a 64 KiB super-frame of 45 segments (the largest tun hands over)", () => {
        const s: SuperFrameSpec = {
          payload: Uint8Array.from({ length: 65535 - 40 - 12 }, (_, i) => (i * 7) & 255), mss: 1448, flags: ACK | PSH, ipOptions: new Uint8Array(0),
          tcpOptions: Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2), id: 0xfffe, seq: 0xfffff000, ack: 9, window: 512, tos: 2, ttl: 64, df: true,
          ecn: false, src: 0x0a000001, dst: 0x0a000002, sport: 40000, dport: 5201,
        };
        const input = superFrame(s);
        const got = runTso(h, input);
        expect(got.n).toBe(Math.ceil(s.payload.length / 1448));
        expect(got.segs).toEqual(slowTso(input));
        expect(got.segs.every(ipv4TcpChecksumsOk)).toBe(true);
        expect(be16(got.segs[2], 4)).toBe(0); // id wraps
      });
    });
  });
}

