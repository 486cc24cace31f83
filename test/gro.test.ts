// Software GRO (assembly/offload/gro.ts) against its naive twin
// (test/reference/slow-segment.ts): segments from TSO coalesce back into the
// super-frame they came from; random interleaved batches of several flows
// with drops, duplicates, corruption and non-TCP packets give the same frames
// byte for byte, every flow's byte stream arrives once and in order, merged
// frames verify after the kernel-side checksum completion; every rule that
// stops coalescing is shown passing packets through unchanged; bounds.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";
import { ipv4, udp } from "./helpers/packets.js";
import {
  ACK, completeChecksum, CWR, ECE, F_NEEDS_CSUM, fillChecksums, FIN, GSO_NONE, GSO_TCPV4, ipv4TcpChecksumsOk, parseVnet, plainSegment, PSH, RST,
  slowGro, slowTso, superFrame, superFrameSpec, SYN, URG, VNET_HDR_LEN, type SuperFrameSpec,
} from "./reference/slow-segment.js";

const MAX_PKTS = 600;
const PKT_STRIDE = 2048;
const OUT_CAP = MAX_PKTS * (PKT_STRIDE + 10);
const GUARD = 4096;
const A5 = 0xa5;

interface Harness {
  w: RawExports;
  inp: number;
  ptrs: number;
  lens: number;
  out: number;
  frames: number;
  mem(): Uint8Array;
}

function harness(kind: "debug" | "release"): Harness {
  const w = instantiateDataplane(kind);
  if (w.init(8, 2048, 16, 16, 16, 16, 16) !== abi.OK) throw new Error("init failed");
  const h = {
    w,
    inp: w.scratchAlloc(MAX_PKTS * PKT_STRIDE),
    ptrs: w.scratchAlloc(MAX_PKTS * 4 + 64),
    lens: w.scratchAlloc(MAX_PKTS * 4 + 64),
    out: w.scratchAlloc(OUT_CAP + GUARD),
    frames: w.scratchAlloc(MAX_PKTS * 8 + GUARD),
    mem: () => new Uint8Array(w.memory.buffer),
  };
  if (!h.inp || !h.ptrs || !h.lens || !h.out || !h.frames) throw new Error("scratchAlloc failed");
  return h;
}

/** groCoalesce over `pkts` with the output guarded by 0xA5 past `outCap`
 *  bytes and past the returned number of frame records. */
function runGro(h: Harness, pkts: Uint8Array[], outCap = OUT_CAP, maxFrames = MAX_PKTS, n = pkts.length) {
  if (pkts.length > MAX_PKTS) throw new Error("too many packets for the harness");
  const m = h.mem();
  const dv = new DataView(m.buffer);
  pkts.forEach((p, i) => {
    if (p.length > PKT_STRIDE) throw new Error("packet too long for the harness");
    m.set(p, h.inp + i * PKT_STRIDE);
    dv.setUint32(h.ptrs + 4 * i, h.inp + i * PKT_STRIDE, true);
    dv.setUint32(h.lens + 4 * i, p.length, true);
  });
  const inputBefore = m.slice(h.inp, h.inp + pkts.length * PKT_STRIDE);
  m.fill(A5, h.out, h.out + OUT_CAP + GUARD);
  m.fill(A5, h.frames, h.frames + MAX_PKTS * 8 + GUARD);
  const k: number = h.w.groCoalesce(h.ptrs, h.lens, n, h.out, outCap, h.frames, maxFrames);
  const mm = h.mem();
  const dv2 = new DataView(mm.buffer);
  const frames: Uint8Array[] = [];
  let end = 0;
  for (let i = 0; i < k; i++) {
    const off = dv2.getUint32(h.frames + 8 * i, true);
    const len = dv2.getUint32(h.frames + 8 * i + 4, true);
    expect(off).toBe(end); // packed back to back
    end = off + len;
    frames.push(mm.slice(h.out + off, h.out + off + len));
  }
  let guardsOk = mm.subarray(h.out + (k < 0 ? 0 : end), h.out + OUT_CAP + GUARD).every((b) => b === A5);
  guardsOk &&= mm.subarray(h.frames + 8 * Math.max(k, 0), h.frames + MAX_PKTS * 8 + GUARD).every((b) => b === A5);
  const inputKept = Buffer.from(mm.subarray(h.inp, h.inp + pkts.length * PKT_STRIDE)).equals(Buffer.from(inputBefore));
  return { k, frames, guardsOk, inputKept };
}

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];

/** Flow key and payload of an IPv4/TCP packet (no virtio header), or undefined. */
function tcpPayload(p: Uint8Array): { key: string; payload: Uint8Array } | undefined {
  if (p.length < 40 || p[0] >> 4 !== 4 || p[9] !== 6) return undefined;
  const ihl = (p[0] & 15) * 4;
  const tot = Math.min(be16(p, 2), p.length);
  if (ihl < 20 || ihl + 20 > tot) return undefined;
  const thl = (p[ihl + 12] >> 4) * 4;
  if (thl < 20 || ihl + thl > tot) return undefined;
  return { key: [...p.subarray(12, 20), ...p.subarray(ihl, ihl + 4)].join(","), payload: p.subarray(ihl + thl, tot) };
}

function streams(pkts: Uint8Array[]): Map<string, Buffer> {
  const m = new Map<string, Buffer[]>();
  for (const p of pkts) {
    const t = tcpPayload(p);
    if (!t) continue;
    if (!m.has(t.key)) m.set(t.key, []);
    m.get(t.key)!.push(Buffer.from(t.payload));
  }
  return new Map([...m].map(([k, v]) => [k, Buffer.concat(v)]));
}

const BASE: SuperFrameSpec = {
  payload: new Uint8Array(0), mss: 1000, flags: ACK, ipOptions: new Uint8Array(0), tcpOptions: Uint8Array.of(1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0),
  id: 100, seq: 5000, ack: 77, window: 2000, tos: 0, ttl: 64, df: true, ecn: false, src: 0x0a000001, dst: 0x0a000102, sport: 33000, dport: 5201,
};
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
/** A run of `n` plain segments of `size` payload bytes, consecutive. */
function run(n: number, size: number, over: Partial<SuperFrameSpec> = {}): Uint8Array[] {
  const s = { ...BASE, ...over };
  return Array.from({ length: n }, (_, i) => plainSegment({ ...s, payload: bytes(size, i), seq: (s.seq + i * size) >>> 0, id: (s.id + i) & 0xffff }));
}
/** Mutate a copy of p and fix its checksums. */
function edit(p: Uint8Array, f: (b: Uint8Array) => void, fix = true): Uint8Array {
  const b = p.slice();
  f(b);
  return fix ? fillChecksums(b) : b;
}

/** The first `len` bytes of p as a packet of its own (total length and checksums fixed). */
function truncate(p: Uint8Array, len: number): Uint8Array {
  const b = p.slice(0, len);
  b[2] = len >> 8;
  b[3] = len & 255;
  return fillChecksums(b);
}

for (const kind of ["debug", "release"] as const) {
  describe(`groCoalesce (${kind} build)`, () => {
    const h = harness(kind);

    it("an empty batch gives no frames", () => {
      expect(runGro(h, []).k).toBe(0);
    });

    it("gro(tso(super-frame)) is the super-frame again, byte for byte, virtio header included", () => {
      const spec = superFrameSpec(60000).map((s) => ({ ...s, flags: s.flags & PSH ? ACK | PSH : ACK, ipOptions: new Uint8Array(0), ecn: false }));
      fc.assert(
        fc.property(spec, (s) => {
          const input = superFrame(s);
          const segs = slowTso(input) as Uint8Array[];
          const got = runGro(h, segs);
          expect(got.guardsOk).toBe(true);
          expect(got.inputKept).toBe(true);
          expect(got.k).toBe(1);
          const f = got.frames[0];
          if (segs.length === 1) {
            expect(parseVnet(f)).toEqual({ flags: 0, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 });
            expect(f.subarray(VNET_HDR_LEN)).toEqual(segs[0]);
            return;
          }
          if (!Buffer.from(f).equals(Buffer.from(input))) expect(f).toEqual(input);
          const done = completeChecksum(f);
          expect(ipv4TcpChecksumsOk(done)).toBe(true);
          // and the kernel, segmenting it again, would send the same segments
          expect(slowTso(f)).toEqual(segs);
        }),
        { numRuns: kind === "debug" ? 80 : 40 },
      );
    });

    it("random interleaved batches (up to 12 flows, faults, non-TCP): equal to the reference; every stream once and in order", () => {
      const extra = fc.oneof(
        fc.uint8Array({ minLength: 0, maxLength: 1500 }),
        fc.uint8Array({ minLength: 0, maxLength: 1400 }).map((d) => ipv4({ src: "192.168.9.1", dst: "192.168.9.2", proto: 17, payload: udp("192.168.9.1", "192.168.9.2", 9, 9, d) })),
        fc.integer({ min: 0, max: 11 }).map((i) => plainSegment({ ...BASE, sport: 1000 + i, flags: ACK, payload: new Uint8Array(0) })),
      );
      const batch = fc.record({
        flows: fc.array(
          superFrameSpec(9000).map((s) => ({
            ...s,
            flags: [ACK, ACK | PSH, ACK | FIN | PSH, ACK | CWR, ACK | ECE, ACK | URG][s.flags % 6],
            ipOptions: s.ipOptions.length > 20 ? s.ipOptions : new Uint8Array(0),
            src: 0x0a000001,
            dst: 0x0a000002,
          })),
          { minLength: 1, maxLength: 12 },
        ),
        extras: fc.array(extra, { maxLength: 8 }),
        faults: fc.array(fc.record({ at: fc.nat(), kind: fc.constantFrom("drop", "dup", "corrupt", "ttl", "window", "swap") }), { maxLength: 6 }),
        schedule: fc.array(fc.nat(), { minLength: 700, maxLength: 700 }),
      });
      fc.assert(
        fc.property(batch, ({ flows, extras, faults, schedule }) => {
          const queues: Uint8Array[][] = flows.map((s, i) => {
            const segs = slowTso(superFrame({ ...s, sport: 1000 + i })) as Uint8Array[];
            return segs.map((seg) => completeChecksum(Uint8Array.from([...new Uint8Array(10), ...seg]))).map((p) => fillChecksums(p));
          });
          // faults, applied to the flows' segments in place
          const all = queues.flatMap((q, i) => q.map((_, j) => [i, j] as const));
          for (const f of faults) {
            const [i, j] = all[f.at % all.length];
            const q = queues[i];
            if (j >= q.length) continue;
            if (f.kind === "drop") q.splice(j, 1);
            else if (f.kind === "dup") q.splice(j, 0, q[j].slice());
            else if (f.kind === "corrupt") q[j] = edit(q[j], (b) => (b[b.length - 1] ^= 0x10), false);
            else if (f.kind === "ttl") q[j] = edit(q[j], (b) => (b[8] ^= 1));
            else if (f.kind === "window") q[j] = edit(q[j], (b) => (b[(b[0] & 15) * 4 + 15] ^= 1));
            else if (j + 1 < q.length) [q[j], q[j + 1]] = [q[j + 1], q[j]];
          }
          queues.push(extras);
          const pkts: Uint8Array[] = [];
          for (const v of schedule) {
            const live = queues.filter((q) => q.length > 0);
            if (live.length === 0) break;
            pkts.push(live[v % live.length].shift()!);
          }
          for (const q of queues) pkts.push(...q.splice(0));
          const want = slowGro(pkts);
          const got = runGro(h, pkts);
          expect(got.guardsOk).toBe(true);
          expect(got.inputKept).toBe(true);
          expect(got.k).toBe(want.length);
          for (let i = 0; i < want.length; i++) {
            if (!Buffer.from(got.frames[i]).equals(Buffer.from(want[i]))) expect([i, got.frames[i]]).toEqual([i, want[i]]);
          }
          // stream invariant: per flow, the bytes in frame order are the bytes in packet order
          const delivered = got.frames.map(completeChecksum);
          expect(streams(delivered)).toEqual(streams(pkts));
          for (const f of got.frames) {
            const v = parseVnet(f);
            if (v.gsoType === GSO_NONE) {
              expect(v.flags).toBe(0);
              expect(pkts.some((p) => Buffer.from(p).equals(Buffer.from(f.subarray(VNET_HDR_LEN))))).toBe(true);
            } else {
              expect(v.gsoType).toBe(GSO_TCPV4);
              expect(v.flags).toBe(F_NEEDS_CSUM);
              expect(f.length - VNET_HDR_LEN).toBeLessThanOrEqual(65535);
              expect(ipv4TcpChecksumsOk(completeChecksum(f))).toBe(true);
            }
          }
        }),
        { numRuns: kind === "debug" ? 120 : 50 },
      );
    });

    describe("what coalesces", () => {
      it("ids may differ, PSH on the last, the last shorter", () => {
        const segs = run(4, 1000);
        segs[1] = edit(segs[1], (b) => (b[5] ^= 0x55));
        segs.push(truncate(edit(run(5, 1000)[4], (b) => (b[33] |= PSH)), 52 + 300));
        const got = runGro(h, segs);
        expect(got.k).toBe(1);
        const v = parseVnet(got.frames[0]);
        expect(v).toEqual({ flags: F_NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 52, gsoSize: 1000, csumStart: 20, csumOffset: 16 });
        const p = completeChecksum(got.frames[0]);
        expect(be16(p, 2)).toBe(52 + 4300);
        expect(p[33]).toBe(ACK | PSH);
        expect(be16(p, 4)).toBe(100);
        expect(ipv4TcpChecksumsOk(p)).toBe(true);
        expect(got.frames).toEqual(slowGro(segs));
      });
      it("runs stop at 65535 bytes and a new one starts", () => {
        const segs = run(100, 1448);
        const got = runGro(h, segs);
        expect(got.frames).toEqual(slowGro(segs));
        expect(got.k).toBe(3); // 45 + 45 + 10 segments
        expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV4, GSO_TCPV4, GSO_TCPV4]);
        expect(got.frames.every((f) => f.length - 10 <= 65535)).toBe(true);
      });
      it("two flows interleaved packet by packet give one frame each", () => {
        const a = run(10, 1000);
        const b = run(10, 1000, { sport: 44000 });
        const got = runGro(h, a.flatMap((p, i) => [p, b[i]]));
        expect(got.k).toBe(2);
        expect(got.frames.map((f) => be16(f, 10 + 20))).toEqual([33000, 44000]);
      });
    });

    describe("what passes through unchanged (a run of the first packet alone, then the second)", () => {
      const [s1, s2] = run(2, 1000);
      const tcpFlag = (f: number) => (b: Uint8Array) => (b[33] = ACK | f);
      const cases: [string, Uint8Array, Uint8Array][] = [
        ["SYN", s1, edit(s2, tcpFlag(SYN))],
        ["FIN", s1, edit(s2, tcpFlag(FIN))],
        ["RST", s1, edit(s2, tcpFlag(RST))],
        ["URG", s1, edit(s2, tcpFlag(URG))],
        ["ECE", s1, edit(s2, tcpFlag(ECE))],
        ["CWR", s1, edit(s2, tcpFlag(CWR))],
        ["no ACK", s1, edit(s2, (b) => (b[33] = PSH))],
        ["PSH on the first", edit(s1, tcpFlag(PSH)), s2],
        ["a sequence gap", s1, edit(s2, (b) => (b[27] += 1))],
        ["a retransmission (same seq)", s1, edit(s2, (b) => b.set(s1.subarray(24, 28), 24))],
        ["a different TTL", s1, edit(s2, (b) => (b[8] = 63))],
        ["a different TOS (CE mark)", s1, edit(s2, (b) => (b[1] = 3))],
        ["DF cleared", s1, edit(s2, (b) => (b[6] = 0))],
        ["MF set (a fragment)", s1, edit(s2, (b) => (b[6] |= 0x20))],
        ["a different ack", s1, edit(s2, (b) => (b[31] += 1))],
        ["a different window", s1, edit(s2, (b) => (b[35] += 1))],
        ["a different option byte (timestamp)", s1, edit(s2, (b) => (b[51] += 1))],
        ["a bad TCP checksum", s1, edit(s2, (b) => (b[100] ^= 1), false)],
        ["a bad IP checksum", s1, edit(s2, (b) => (b[10] ^= 1), false)],
        ["a trailing byte past the total length", s1, Uint8Array.from([...s2, 0])],
        ["a second longer than the first", truncate(s1, 1032), s2],
        ["a pure ACK", s1, plainSegment({ ...BASE, seq: 6000, payload: new Uint8Array(0) })],
      ];
      for (const [name, a, b] of cases) {
        it(name, () => {
          const got = runGro(h, [a, b]);
          expect(got.k).toBe(2);
          expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_NONE, GSO_NONE]);
          expect(got.frames[0].subarray(10)).toEqual(a);
          expect(got.frames[1].subarray(10)).toEqual(b);
          expect(got.frames).toEqual(slowGro([a, b]));
        });
      }
      it("IP options on both", () => {
        const o = run(2, 1000, { ipOptions: Uint8Array.of(1, 1, 1, 1) });
        expect(runGro(h, o).frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_NONE, GSO_NONE]);
      });
      it("after a short packet the run is closed", () => {
        const [a, b, c] = run(3, 1000);
        const short = truncate(b, 552);
        const c2 = edit(c, (x) => x.set([(5000 + 1500) >>> 24, ((5000 + 1500) >> 16) & 255, ((5000 + 1500) >> 8) & 255, (5000 + 1500) & 255], 24));
        const got = runGro(h, [a, short, c2]);
        expect(got.k).toBe(2);
        expect(parseVnet(got.frames[0]).gsoType).toBe(GSO_TCPV4);
        expect(got.frames[1].subarray(10)).toEqual(c2);
      });
    });

    describe("bounds", () => {
      const segs = run(20, 1000);
      const need = segs.reduce((a, p) => a + p.length + 10, 0);
      it("outCap one byte short: E_RANGE, nothing written", () => {
        const got = runGro(h, segs, need - 1);
        expect(got.k).toBe(abi.E_RANGE);
        expect(got.guardsOk).toBe(true);
      });
      it("maxFrames below the packet count: E_RANGE, nothing written", () => {
        const got = runGro(h, segs, OUT_CAP, segs.length - 1);
        expect(got.k).toBe(abi.E_RANGE);
        expect(got.guardsOk).toBe(true);
      });
      it("more than GRO_MAX_BATCH packets: E_RANGE", () => {
        expect(h.w.groCoalesce(h.ptrs, h.lens, 4097, h.out, 0x7fffffff, h.frames, 5000)).toBe(abi.E_RANGE);
      });
      it("exactly enough room: frames written, nothing past them", () => {
        const got = runGro(h, segs, need, segs.length);
        expect(got.k).toBe(1);
        expect(got.guardsOk).toBe(true);
      });
    });
  });
}
