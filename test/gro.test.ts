// Software GRO (assembly/offload/gro.ts) against its naive twin
// (test/reference/slow-segment.ts): segments from TSO coalesce back into the
// super-frame they came from; random interleaved batches of several flows
// with drops, duplicates, corruption and non-TCP packets give the same frames
// byte for byte, every flow's byte stream arrives once and in order, merged
// frames verify after the kernel-side checksum completion; every rule that
// stops coalescing is shown passing packets through unchanged; bounds.
// IPv6/TCP (GRO_TCPV6): a golden GSO_TCPV6 frame; mixed IPv4/IPv6 batches
// against the twin, and resegmented by tsoSegment back into the very
// packets they came from; the IPv6 rules that stop coalescing; and the
// kernel (root only): our GSO_TCPV6 and GSO_TCPV4 frames written to a real
// tun, forwarded and segmented by it, come out as the original packets.
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";
import { ipv4, udp } from "./helpers/packets.js";
import { a6, udp6, ipv6 as ipv6Packet } from "./helpers/packets6.js";
import {
  ACK, completeChecksum, CWR, ECE, F_NEEDS_CSUM, fillChecksum6, fillChecksums, FIN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, ipv4TcpChecksumsOk, ipv6TcpChecksumOk, parseVnet,
  plainSegment, plainSegment6, PSH, pseudoPartial6, RST, slowGro, slowTso, superFrame, superFrameSpec, SYN, URG, VNET_HDR_LEN, vnetBytes, type Segment6Spec, type SuperFrameSpec,
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
function runGro(h: Harness, pkts: Uint8Array[], outCap = OUT_CAP, maxFrames = MAX_PKTS, n = pkts.length, flags = 0) {
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
  const k: number = h.w.groCoalesce(h.ptrs, h.lens, n, h.out, outCap, h.frames, maxFrames, flags);
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

// --- IPv6/TCP (GRO_TCPV6) -----------------------------------------------------

const GRO_TCPV6 = abi.GRO_TCPV6;
const SRC6 = a6("2001:2:0:1::5");
const DST6 = a6("2001:2:0:2::7");
const TS_OPT = Uint8Array.of(1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0);
const BASE6: Segment6Spec = {
  src: SRC6, dst: DST6, tclass: 0x0a, flow: 0x12345, hlim: 64, sport: 33000, dport: 5201, seq: 5000, ack: 77, flags: ACK, window: 2000, tcpOptions: TS_OPT,
  payload: new Uint8Array(0),
};
/** A run of `n` IPv6 segments of `size` payload bytes, consecutive. */
function run6(n: number, size: number, over: Partial<Segment6Spec> = {}): Uint8Array[] {
  const s = { ...BASE6, ...over };
  return Array.from({ length: n }, (_, i) => plainSegment6({ ...s, payload: bytes(size, i), seq: (s.seq + i * size) >>> 0 }));
}
function edit6(p: Uint8Array, f: (b: Uint8Array) => void, fix = true): Uint8Array {
  const b = p.slice();
  f(b);
  return fix ? fillChecksum6(b) : b;
}
/** The first `len` bytes of an IPv6 packet as a packet of its own (payload length and checksum fixed). */
function truncate6(p: Uint8Array, len: number): Uint8Array {
  const b = p.slice(0, len);
  b[4] = (len - 40) >> 8;
  b[5] = (len - 40) & 255;
  return fillChecksum6(b);
}
/** The packet with an 8-byte hop-by-hop options header (PadN) before its
 *  TCP header: still a valid packet, its TCP checksum unchanged. */
function withHopByHop(p: Uint8Array): Uint8Array {
  const b = new Uint8Array(p.length + 8);
  b.set(p.subarray(0, 40));
  b.set([6, 0, 1, 4, 0, 0, 0, 0], 40);
  b.set(p.subarray(40), 48);
  b[6] = 0;
  const plen = p.length - 40 + 8;
  b[4] = plen >> 8;
  b[5] = plen & 255;
  return b;
}
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Which sequence a packet's order is kept in: its TCP flow (IPv4, or IPv6
 *  with TCP right behind the header), or "other". */
function bucket(p: Uint8Array): string {
  if (p.length >= 44 && p[0] >> 4 === 6 && p[6] === 6) return "6:" + hex(p.subarray(8, 44));
  const t = tcpPayload(p);
  return t ? "4:" + t.key : "other";
}
function buckets(pkts: Uint8Array[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const p of pkts) {
    const k = bucket(p);
    if (!m.has(k)) m.set(k, []);
    m.get(k)!.push(hex(p));
  }
  return m;
}

interface Tso {
  src: number;
  dst: number;
  lens: number;
}
const TSO_SLOTS = 160;
/** tsoSegment over one frame (virtio header + packet): the segments. */
function resegment(h: Harness, t: Tso, frame: Uint8Array): Uint8Array[] {
  h.mem().set(frame, t.src);
  const n: number = h.w.tsoSegment(t.src, frame.length, t.dst, 2048, TSO_SLOTS, t.lens);
  expect(n).toBeGreaterThan(0);
  const m = h.mem();
  const dv = new DataView(m.buffer);
  return Array.from({ length: n }, (_, k) => m.slice(t.dst + k * 2048, t.dst + k * 2048 + dv.getUint32(t.lens + 4 * k, true)));
}

/** The super-frame of spec `s` (every byte of its payload) as tun hands it over: GSO_TCPV6 behind NEEDS_CSUM. */
function superFrame6(s: Segment6Spec, mss: number): Uint8Array {
  const p = plainSegment6(s);
  const plen = p.length - 40;
  const partial = pseudoPartial6(p, plen);
  p[56] = partial >> 8;
  p[57] = partial & 255;
  const v = vnetBytes({ flags: F_NEEDS_CSUM, gsoType: GSO_TCPV6, hdrLen: 60 + s.tcpOptions.length, gsoSize: mss, csumStart: 40, csumOffset: 16 });
  return Uint8Array.from([...v, ...p]);
}

const addr6 = fc.constantFrom("2001:2:0:1::5", "2001:2:0:1::6", "2001:2:0:2::7").map(a6);
const options = fc.constantFrom(new Uint8Array(0), TS_OPT, Uint8Array.of(1, 1, 1, 1), Uint8Array.of(2, 4, 5, 0xb4, 1, 1, 4, 2));
const spec6 = fc.record({
  src: addr6, dst: addr6, tclass: fc.integer({ min: 0, max: 255 }), flow: fc.integer({ min: 0, max: 0xfffff }), hlim: fc.integer({ min: 1, max: 255 }),
  sport: fc.constant(0), dport: fc.integer({ min: 1, max: 0xffff }), seq: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constant(0xffffff00)),
  ack: fc.integer({ min: 0, max: 0xffffffff }), flags: fc.constantFrom(ACK, ACK | PSH), window: fc.integer({ min: 0, max: 0xffff }), tcpOptions: options,
  payload: fc.constant(new Uint8Array(0)),
});

for (const kind of ["debug", "release"] as const) {
  describe(`groCoalesce with GRO_TCPV6: IPv6/TCP (${kind} build)`, () => {
    const h = harness(kind);
    const t: Tso = { src: h.w.scratchAlloc(70000), dst: h.w.scratchAlloc(TSO_SLOTS * 2048), lens: h.w.scratchAlloc(TSO_SLOTS * 4) };
    const gro6 = (pkts: Uint8Array[]) => runGro(h, pkts, OUT_CAP, MAX_PKTS, pkts.length, GRO_TCPV6);

    it("golden GSO_TCPV6 frame: payload length, PSH from the last, the pseudo-header partial sum, the virtio header", () => {
      const segs = [
        plainSegment6({ ...BASE6, seq: 5000, payload: bytes(1000, 0) }),
        plainSegment6({ ...BASE6, seq: 6000, payload: bytes(1000, 1) }),
        plainSegment6({ ...BASE6, seq: 7000, flags: ACK | PSH, payload: bytes(500, 2) }),
      ];
      const got = gro6(segs);
      expect(got.guardsOk).toBe(true);
      expect(got.inputKept).toBe(true);
      expect(got.k).toBe(1);
      const f = got.frames[0];
      // NEEDS_CSUM, GSO_TCPV6, hdr_len 72, gso_size 1000, csum_start 40, csum_offset 16 (little endian)
      expect(hex(f.subarray(0, 10))).toBe("01044800e80328001000");
      expect(hex(f.subarray(10, 10 + 72))).toBe(
        "60a12345" + "09e4" + "06" + "40" + // version 6, class 0x0a, flow 0x12345; payload 32 + 2500; TCP; hop limit 64
        "20010002000000010000000000000005" + "20010002000000020000000000000007" +
        "80e8" + "1451" + "00001388" + "0000004d" + "80" + "18" + "07d0" + // ports, seq 5000, ack 77, offset 8, ACK|PSH, window
        // pseudo-header partial sum: 0x2009 + 0x200c (addresses) + 0x09e4 (TCP length) + 6 = 0x49ff
        "49ff" + "0000" + "0101080a0000010000000200",
      );
      expect(f.length).toBe(10 + 72 + 2500);
      expect(f.subarray(82)).toEqual(Uint8Array.from([...bytes(1000, 0), ...bytes(1000, 1), ...bytes(500, 2)]));
      expect(ipv6TcpChecksumOk(completeChecksum(f))).toBe(true);
      expect(got.frames).toEqual(slowGro(segs, { tcpv6: true }));
      // and segmented again (the kernel's side): the three packets, byte for byte
      expect(resegment(h, t, f)).toEqual(segs);
    });

    it("without GRO_TCPV6 (a tun without TUN_F_TSO6) the same packets pass singly", () => {
      const segs = run6(3, 1000);
      const got = runGro(h, segs);
      expect(got.k).toBe(3);
      expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_NONE, GSO_NONE, GSO_NONE]);
      expect(got.frames.map((f) => f.subarray(10))).toEqual(segs);
      expect(got.frames).toEqual(slowGro(segs));
    });

    it("gro(tso(IPv6 super-frame)) is the super-frame again, byte for byte, virtio header included", () => {
      const arb = fc.record({
        s: spec6,
        mss: fc.oneof(fc.integer({ min: 500, max: 1440 }), fc.constantFrom(500, 1390, 1440)),
        size: fc.oneof(fc.integer({ min: 1, max: 65400 }), fc.integer({ min: 1, max: 3000 }), fc.constantFrom(1, 1389, 1390, 1391, 2780)),
      });
      fc.assert(
        fc.property(arb, ({ s, mss, size }) => {
          const room = 65535 - 60 - s.tcpOptions.length;
          const input = superFrame6({ ...s, sport: 40000, payload: bytes(Math.min(size, room), 7) }, mss);
          const segs = resegment(h, t, input);
          const got = gro6(segs);
          expect(got.guardsOk).toBe(true);
          expect(got.k).toBe(1);
          const f = got.frames[0];
          if (segs.length === 1) {
            expect(parseVnet(f).gsoType).toBe(GSO_NONE);
            expect(f.subarray(10)).toEqual(segs[0]);
            return;
          }
          if (!Buffer.from(f).equals(Buffer.from(input))) expect(hex(f)).toBe(hex(input));
        }),
        { numRuns: kind === "debug" ? 60 : 30 },
      );
    });

    it("random mixed IPv4/IPv6 batches with faults: equal to the twin; resegmented, every flow's packets come back byte for byte and in order", () => {
      const flow6 = fc.record({ s: spec6, n: fc.integer({ min: 1, max: 40 }), mss: fc.integer({ min: 100, max: 1440 }), last: fc.integer({ min: 1, max: 1440 }) });
      const flow4 = fc.record({
        n: fc.integer({ min: 1, max: 30 }), mss: fc.integer({ min: 100, max: 1400 }), last: fc.integer({ min: 1, max: 1400 }), psh: fc.boolean(),
        id: fc.integer({ min: 0, max: 0xffff }), seq: fc.integer({ min: 0, max: 0xffffffff }), ttl: fc.integer({ min: 1, max: 255 }),
      });
      const fault = fc.record({ at: fc.nat(), kind: fc.constantFrom("drop", "dup", "corrupt", "hlim", "tclass", "flow", "window", "swap", "ext", "trail") });
      const batch = fc.record({
        v6: fc.array(flow6, { minLength: 1, maxLength: 8 }),
        v4: fc.array(flow4, { maxLength: 4 }),
        extras: fc.array(fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 200 }),
          fc.uint8Array({ minLength: 0, maxLength: 300 }).map((d) => ipv6Packet({ src: "2001:2:0:1::5", dst: "2001:2:0:2::7", next: 17, payload: udp6("2001:2:0:1::5", "2001:2:0:2::7", 9, 9, d) })),
          fc.uint8Array({ minLength: 0, maxLength: 300 }).map((d) => ipv6Packet({ src: "2001:2:0:1::6", dst: "2001:2:0:2::7", next: 60, payload: Uint8Array.from([6, 0, 1, 4, 0, 0, 0, 0, ...d]) })),
        ), { maxLength: 6 }),
        faults: fc.array(fault, { maxLength: 8 }),
        schedule: fc.array(fc.nat(), { minLength: 500, maxLength: 500 }),
      });
      fc.assert(
        fc.property(batch, ({ v6, v4, extras, faults, schedule }) => {
          const queues6 = v6.map(({ s, n, mss, last }, i) => {
            const sizes = Array.from({ length: n }, (_, k) => (k === n - 1 ? Math.min(last, mss) : mss));
            let seq = s.seq;
            return sizes.map((size, k) => {
              const p = plainSegment6({ ...s, sport: 2000 + i, flags: k === n - 1 ? s.flags : ACK, seq, payload: bytes(size, k + 17 * i) });
              seq = (seq + size) >>> 0;
              return p;
            });
          });
          const queues4 = v4.map(({ n, mss, last, psh, id, seq, ttl }, i) => {
            let sq = seq;
            return Array.from({ length: n }, (_, k) => {
              const size = k === n - 1 ? Math.min(last, mss) : mss;
              const p = plainSegment({ ...BASE, sport: 3000 + i, ttl, id: (id + k) & 0xffff, seq: sq, flags: k === n - 1 && psh ? ACK | PSH : ACK, payload: bytes(size, k) });
              sq = (sq + size) >>> 0;
              return p;
            });
          });
          // faults, on the IPv6 flows (IPv4's ids would not survive a drop through TSO)
          const all = queues6.flatMap((q, i) => q.map((_, j) => [i, j] as const));
          for (const f of faults) {
            const [i, j] = all[f.at % all.length];
            const q = queues6[i];
            if (j >= q.length) continue;
            if (f.kind === "drop") q.splice(j, 1);
            else if (f.kind === "dup") q.splice(j, 0, q[j].slice());
            else if (f.kind === "corrupt") q[j] = edit6(q[j], (b) => (b[b.length - 1] ^= 0x10), false);
            else if (f.kind === "hlim") q[j] = edit6(q[j], (b) => (b[7] ^= 1));
            else if (f.kind === "tclass") q[j] = edit6(q[j], (b) => (b[1] ^= 0x10));
            else if (f.kind === "flow") q[j] = edit6(q[j], (b) => (b[3] ^= 1));
            else if (f.kind === "window") q[j] = edit6(q[j], (b) => (b[55] ^= 1));
            else if (f.kind === "ext") q[j] = withHopByHop(q[j]);
            else if (f.kind === "trail") q[j] = Uint8Array.from([...q[j], 0]);
            else if (j + 1 < q.length) [q[j], q[j + 1]] = [q[j + 1], q[j]];
          }
          const queues = [...queues6, ...queues4, extras];
          const pkts: Uint8Array[] = [];
          for (const v of schedule) {
            const live = queues.filter((q) => q.length > 0);
            if (live.length === 0) break;
            pkts.push(live[v % live.length].shift()!);
          }
          for (const q of queues) pkts.push(...q.splice(0));
          const want = slowGro(pkts, { tcpv6: true });
          const got = gro6(pkts);
          expect(got.guardsOk).toBe(true);
          expect(got.inputKept).toBe(true);
          expect(got.k).toBe(want.length);
          for (let i = 0; i < want.length; i++) {
            if (!Buffer.from(got.frames[i]).equals(Buffer.from(want[i]))) expect([i, hex(got.frames[i])]).toEqual([i, hex(want[i])]);
          }
          for (const f of got.frames) {
            const v = parseVnet(f);
            if (v.gsoType === GSO_NONE) {
              expect(v.flags).toBe(0);
              continue;
            }
            const six = f[10] >> 4 === 6;
            const ip = six ? 40 : 20;
            expect(v).toEqual({ flags: F_NEEDS_CSUM, gsoType: six ? GSO_TCPV6 : GSO_TCPV4, hdrLen: ip + (f[10 + ip + 12] >> 4) * 4, gsoSize: v.gsoSize, csumStart: ip, csumOffset: 16 });
            expect(f.length - VNET_HDR_LEN).toBeLessThanOrEqual(65535);
            const done = completeChecksum(f);
            expect(six ? ipv6TcpChecksumOk(done) : ipv4TcpChecksumsOk(done)).toBe(true);
          }
          // The round trip: what the kernel gets back by segmenting each frame is the batch itself, flow by flow.
          const back = got.frames.flatMap((f) => (parseVnet(f).gsoType === GSO_NONE ? [f.subarray(VNET_HDR_LEN)] : resegment(h, t, f)));
          expect(back.length).toBe(pkts.length);
          expect(buckets(back)).toEqual(buckets(pkts));
        }),
        { numRuns: kind === "debug" ? 100 : 40 },
      );
    });

    describe("what coalesces", () => {
      it("runs stop at 65535 bytes of IPv6 packet (header included) and a new one starts", () => {
        const segs = run6(100, 1400);
        const got = gro6(segs);
        expect(got.frames).toEqual(slowGro(segs, { tcpv6: true }));
        expect(got.k).toBe(3); // 72 + 46 * 1400 = 64472; 47 would be 65872
        expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV6, GSO_TCPV6, GSO_TCPV6]);
        expect(got.frames.map((f) => (f.length - 10 - 72) / 1400)).toEqual([46, 46, 8]);
      });
      it("a frame of exactly 65535 bytes; one byte more and its last packet passes singly", () => {
        const exact = [...run6(63, 1039), truncate6(run6(64, 1039)[63], 72 + 6)];
        const a = gro6(exact);
        expect(a.k).toBe(1);
        expect(a.frames[0].length - 10).toBe(65535);
        expect(be16(a.frames[0], 14)).toBe(65535 - 40);
        const over = [...run6(63, 1039), truncate6(run6(64, 1039)[63], 72 + 7)];
        const b = gro6(over);
        expect(b.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV6, GSO_NONE]);
        expect(b.frames[1].subarray(10)).toEqual(over[63]);
        expect(b.frames).toEqual(slowGro(over, { tcpv6: true }));
      });
      it("IPv4 and IPv6 flows interleaved packet by packet: one GSO_TCPV4 and one GSO_TCPV6 frame; without GRO_TCPV6 the IPv6 ones pass singly", () => {
        const a = run(10, 1000);
        const b = run6(10, 1000);
        const mixed = a.flatMap((p, i) => [p, b[i]]);
        const got = gro6(mixed);
        expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV4, GSO_TCPV6]);
        expect(got.frames).toEqual(slowGro(mixed, { tcpv6: true }));
        const off = runGro(h, mixed);
        expect(off.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV4, ...Array(10).fill(GSO_NONE)]);
        expect(off.frames.slice(1).map((f) => f.subarray(10))).toEqual(b);
      });
      it("two IPv6 flows between the same addresses interleaved: one frame each", () => {
        const a = run6(10, 1000);
        const b = run6(10, 1000, { sport: 44000 });
        const got = gro6(a.flatMap((p, i) => [p, b[i]]));
        expect(got.k).toBe(2);
        expect(got.frames.map((f) => be16(f, 10 + 40))).toEqual([33000, 44000]);
      });
      it("an IPv6 packet with an extension header between the same addresses closes their runs (it is not overtaken); UDP does not", () => {
        const [s1, s2, s3] = run6(3, 1000);
        const x = withHopByHop(plainSegment6({ ...BASE6, sport: 9999, payload: bytes(100, 9) }));
        const got = gro6([s1, x, s2, s3]);
        expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_NONE, GSO_NONE, GSO_TCPV6]);
        expect(got.frames.slice(0, 2).map((f) => f.subarray(10))).toEqual([s1, x]);
        expect(got.frames).toEqual(slowGro([s1, x, s2, s3], { tcpv6: true }));
        const u = ipv6Packet({ src: "2001:2:0:1::5", dst: "2001:2:0:2::7", next: 17, payload: udp6("2001:2:0:1::5", "2001:2:0:2::7", 9, 9, bytes(50, 1)) });
        const got2 = gro6([s1, u, s2, s3]);
        expect(got2.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV6, GSO_NONE]);
        // and one between other addresses does not either
        const y = edit6(x, (b) => (b[23] = 9), false);
        expect(gro6([s1, y, s2, s3]).frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV6, GSO_NONE]);
      });
    });

    describe("what passes through unchanged (a run of the first packet alone, then the second)", () => {
      const [s1, s2] = run6(2, 1000);
      const tcpFlag = (f: number) => (b: Uint8Array) => (b[53] = ACK | f);
      const cases: [string, Uint8Array, Uint8Array][] = [
        ["an extension header (hop-by-hop) on the second", s1, withHopByHop(s2)],
        ["extension headers on both", withHopByHop(s1), withHopByHop(s2)],
        ["a different traffic class (CE mark)", s1, edit6(s2, (b) => (b[1] |= 0x30))],
        ["a different traffic class (DSCP)", s1, edit6(s2, (b) => (b[0] ^= 0x01))],
        ["a different flow label", s1, edit6(s2, (b) => (b[3] ^= 1))],
        ["a different hop limit", s1, edit6(s2, (b) => (b[7] = 63))],
        ["SYN", s1, edit6(s2, tcpFlag(SYN))],
        ["FIN", s1, edit6(s2, tcpFlag(FIN))],
        ["RST", s1, edit6(s2, tcpFlag(RST))],
        ["URG", s1, edit6(s2, tcpFlag(URG))],
        ["ECE", s1, edit6(s2, tcpFlag(ECE))],
        ["CWR", s1, edit6(s2, tcpFlag(CWR))],
        ["no ACK", s1, edit6(s2, (b) => (b[53] = PSH))],
        ["PSH on the first", edit6(s1, tcpFlag(PSH)), s2],
        ["a sequence gap", s1, edit6(s2, (b) => (b[47] += 1))],
        ["a retransmission (same seq)", s1, edit6(s2, (b) => b.set(s1.subarray(44, 48), 44))],
        ["a different ack", s1, edit6(s2, (b) => (b[51] += 1))],
        ["a different window", s1, edit6(s2, (b) => (b[55] += 1))],
        ["a different option byte (timestamp)", s1, edit6(s2, (b) => (b[71] += 1))],
        ["a bad TCP checksum", s1, edit6(s2, (b) => (b[100] ^= 1), false)],
        ["a trailing byte past the payload length", s1, Uint8Array.from([...s2, 0])],
        ["a payload length past the end", s1, s2.slice(0, s2.length - 1)],
        ["a second longer than the first", truncate6(s1, 72 + 500), s2],
        ["a pure ACK", s1, plainSegment6({ ...BASE6, seq: 6000, payload: new Uint8Array(0) })],
      ];
      for (const [name, a, b] of cases) {
        it(name, () => {
          const got = gro6([a, b]);
          expect(got.k).toBe(2);
          expect(got.frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_NONE, GSO_NONE]);
          expect(got.frames[0].subarray(10)).toEqual(a);
          expect(got.frames[1].subarray(10)).toEqual(b);
          expect(got.frames).toEqual(slowGro([a, b], { tcpv6: true }));
        });
      }
      it("the same two, untouched, do coalesce (the cases above differ by one thing each)", () => {
        expect(gro6([s1, s2]).frames.map((f) => parseVnet(f).gsoType)).toEqual([GSO_TCPV6]);
      });
    });
  });
}

const isRoot = process.getuid?.() === 0;
describe.skipIf(!isRoot)("the kernel takes our GRO frames: written to a TSO6 tun, forwarded to a tun without offloads, segmented back into the packets GRO was given", () => {
  const NS = `nsg6-${Math.random().toString(36).slice(2, 8)}`;
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS]);
  });

  it("GSO_TCPV6 (and GSO_TCPV4 beside it): every frame accepted whole; each segment byte for byte, checksums the kernel completed from our partial sums, hop limit / TTL one less", () => {
    const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "test/helpers/gro-tun-child.ts", "tso6"], {
      encoding: "utf8", timeout: 60_000, maxBuffer: 64 << 20,
    });
    const line = JSON.parse(out.trim().split("\n").pop()!);
    expect(line.error).toBeUndefined();
    const r = line.result as { written: { gsoType: number; len: number; ret: number; errno: number }[]; sent6: string[]; sent4: string[]; got6: string[]; got4: string[] };
    expect(r.written.map((w) => w.gsoType)).toEqual([GSO_TCPV6, GSO_TCPV4, GSO_TCPV6, GSO_TCPV4, GSO_TCPV6, GSO_TCPV4]);
    for (const w of r.written) expect(w.ret).toBe(w.len);
    const want6 = r.sent6.map((x) => {
      const p = Buffer.from(x, "hex");
      p[7] -= 1;
      return p.toString("hex");
    });
    const want4 = r.sent4.map((x) => {
      const p = new Uint8Array(Buffer.from(x, "hex"));
      p[8] -= 1;
      return hex(fillChecksums(p)); // the header checksum follows the TTL; the TCP checksum is the original's
    });
    expect(r.got6.length).toBe(want6.length);
    expect(r.got6).toEqual(want6);
    expect(r.got4).toEqual(want4);
  }, 90_000);
});
