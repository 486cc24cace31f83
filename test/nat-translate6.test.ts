// NAT66 rewrites (assembly/nat/translate6.ts): every incremental checksum
// update compared with packets built from scratch (test/helpers/packets6.ts)
// and with a full RFC 1071 recomputation written here, on thousands of random
// TCP, UDP and ICMPv6 packets; rewrites undone byte for byte; ICMPv6 errors
// translated back, quotes of every interesting length; refusals that leave
// the packet untouched. Addresses are from 2001:2::/48 (RFC 5180).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { instantiateDataplane } from "../src/dataplane/wasm.js";
import { a6, a6str, icmp6, ipv6, udp6 } from "./helpers/packets6.js";

const NAT_OK = 0;
const NAT_E_TRUNCATED = 1;
const NAT_E_BAD_HEADER = 2;
const NAT_E_UNSUPPORTED = 4;
const SIDE_SRC = 0;
const SIDE_DST = 1;

const raw = instantiateDataplane("debug");
const BUF_LEN = 4096;
const buf: number = raw.scratchAlloc(BUF_LEN);
const ADDR: number = raw.scratchAlloc(32); // the address argument, then the outer address argument
const OUTER = ADDR + 16;
const mem = () => new Uint8Array(raw.memory.buffer);

/** Put `pkt` at the start of the buffer with 0xA5 after it, so a write past
 *  the packet shows. */
function load(pkt: Uint8Array): void {
  const m = mem();
  m.fill(0xa5, buf, buf + BUF_LEN);
  m.set(pkt, buf);
}

function read(n: number): Uint8Array {
  const m = mem();
  for (let i = n; i < n + 64; i++) if (m[buf + i] !== 0xa5) throw new Error(`byte ${i} past the packet was written`);
  return m.slice(buf, buf + n);
}

function rewrite(side: number, len: number, addr: Uint8Array, port: number): number {
  mem().set(addr, ADDR);
  return side === SIDE_SRC ? raw.nat6RewriteSrc(buf, len, ADDR, port) : raw.nat6RewriteDst(buf, len, ADDR, port);
}

function translateError(len: number, side: number, addr: Uint8Array, port: number, outer: Uint8Array): number {
  mem().set(addr, ADDR);
  mem().set(outer, OUTER);
  return raw.nat6TranslateIcmpError(buf, len, side, ADDR, port, OUTER);
}

// --- a reference checksum, independent of the builders and of the wasm --------

function sum16(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i] << 8) | b[i + 1];
  if (b.length & 1) s += b[b.length - 1] << 8;
  return s;
}

/** The checksum field a full computation gives for upper-layer bytes `l4`
 *  (their field at `cOff` taken as zero) of protocol `next` between `src`
 *  and `dst`; UDP writes a computed 0 as 0xFFFF. */
function fullChecksum(src: Uint8Array, dst: Uint8Array, next: number, l4: Uint8Array, cOff: number): number {
  const ph = new Uint8Array(40);
  ph.set(src, 0);
  ph.set(dst, 16);
  new DataView(ph.buffer).setUint32(32, l4.length);
  ph[39] = next;
  const z = l4.slice();
  z[cOff] = 0;
  z[cOff + 1] = 0;
  let s = sum16(ph) + sum16(z);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  const c = ~s & 0xffff;
  return next === 17 && c === 0 ? 0xffff : c;
}

const CSUM_OFF: Record<number, number> = { 6: 16, 17: 6, 58: 2 };
const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];

/** The stored L4 checksum of a whole IPv6 packet and what a full
 *  recomputation gives (payload length bytes only; padding excluded). */
function l4Checksum(pkt: Uint8Array): { stored: number; full: number } {
  const next = pkt[6];
  const l4 = pkt.subarray(40, 40 + be16(pkt, 4));
  const cOff = CSUM_OFF[next];
  return { stored: be16(l4, cOff), full: fullChecksum(pkt.subarray(8, 24), pkt.subarray(24, 40), next, l4, cOff) };
}

function expectChecksumValid(pkt: Uint8Array, udpZero = false): void {
  const { stored, full } = l4Checksum(pkt);
  expect(stored).toBe(udpZero ? 0 : full);
}

// --- packets built from scratch ------------------------------------------------

type Proto = "tcp" | "udp" | "udp0" | "echo" | "echoReply" | "icmpOther";

interface Pkt {
  proto: Proto;
  src: Uint8Array;
  dst: Uint8Array;
  /** TCP/UDP source port; ICMPv6 echo: the identifier. */
  sport: number;
  /** TCP/UDP destination port; ICMPv6 echo: the sequence number; other ICMPv6: the 32-bit rest's low half. */
  dport: number;
  data: Uint8Array;
  icmpType: number; // icmpOther
  tclass: number;
  flow: number;
  hlim: number;
  pad: number; // link padding past the payload length
}

const NEXT: Record<Proto, number> = { tcp: 6, udp: 17, udp0: 17, echo: 58, echoReply: 58, icmpOther: 58 };

function tcp6(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(20 + data.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint32(4, 0x11223344);
  dv.setUint32(8, 0x55667788);
  b[12] = 5 << 4;
  b[13] = 0x18;
  dv.setUint16(14, 0xfaf0);
  dv.setUint16(18, 0x0102);
  b.set(data, 20);
  dv.setUint16(16, fullChecksum(src, dst, 6, b, 16));
  return b;
}

function l4Of(p: Pkt): Uint8Array {
  const s = a6str(p.src);
  const d = a6str(p.dst);
  switch (p.proto) {
    case "tcp": return tcp6(p.src, p.dst, p.sport, p.dport, p.data);
    case "udp": return udp6(s, d, p.sport, p.dport, p.data);
    case "udp0": { const u = udp6(s, d, p.sport, p.dport, p.data); u[6] = u[7] = 0; return u; }
    case "echo": return icmp6(s, d, 128, 0, (p.sport << 16) | p.dport, p.data);
    case "echoReply": return icmp6(s, d, 129, 0, (p.sport << 16) | p.dport, p.data);
    case "icmpOther": return icmp6(s, d, p.icmpType, 0, (p.sport << 16) | p.dport, p.data);
  }
}

/** The whole packet, every checksum computed in full, `pad` bytes of 0x5A after it. */
function build(p: Pkt): Uint8Array {
  const pkt = ipv6({ src: a6str(p.src), dst: a6str(p.dst), next: NEXT[p.proto], payload: l4Of(p), hlim: p.hlim, tclass: p.tclass, flow: p.flow });
  const out = new Uint8Array(pkt.length + p.pad).fill(0x5a);
  out.set(pkt);
  return out;
}

const isEcho = (p: Pkt) => p.proto === "echo" || p.proto === "echoReply";

/** What rewriting `side` to addr:port must produce. */
function rewritten(p: Pkt, side: number, addr: Uint8Array, port: number): Pkt {
  const q = { ...p };
  if (side === SIDE_SRC) q.src = addr;
  else q.dst = addr;
  if (isEcho(p)) q.sport = port; // the identifier, whichever side
  else if (p.proto !== "icmpOther") {
    if (side === SIDE_SRC) q.sport = port;
    else q.dport = port;
  }
  return q;
}

/** An address in 2001:2::/48. */
const addr6 = fc.uint8Array({ minLength: 10, maxLength: 10 }).map((t) => Uint8Array.from([0x20, 0x01, 0x00, 0x02, 0x00, 0x00, ...t]));
const u16 = fc.integer({ min: 0, max: 0xffff });
const pktArb = (protos: Proto[], pad = true): fc.Arbitrary<Pkt> => fc.record({
  proto: fc.constantFrom(...protos),
  src: addr6,
  dst: addr6,
  sport: u16,
  dport: u16,
  data: fc.uint8Array({ minLength: 0, maxLength: 200 }),
  icmpType: fc.constantFrom(1, 2, 3, 4, 133, 134, 135, 136, 143, 200),
  tclass: fc.integer({ min: 0, max: 255 }),
  flow: fc.integer({ min: 0, max: 0xfffff }),
  hlim: fc.integer({ min: 1, max: 255 }),
  pad: pad ? fc.constantFrom(0, 0, 0, 1, 6, 22) : fc.constant(0),
});
const ALL: Proto[] = ["tcp", "udp", "udp0", "echo", "echoReply", "icmpOther"];

const A = (s: string) => a6(s);
const POD = A("2001:2::a");
const OUT = A("2001:2:0:ff::53");
const NODE = A("2001:2:0:1::1");
const ROUTER = A("2001:2:0:fe::1");
const basePkt = (proto: Proto, over: Partial<Pkt> = {}): Pkt => ({
  proto, src: POD, dst: OUT, sport: 40000, dport: 53, data: Uint8Array.from({ length: 37 }, (_, i) => i * 7),
  icmpType: 135, tclass: 0x2e, flow: 0x12345, hlim: 64, pad: 0, ...over,
});

/** Offsets of the bytes where `a` and `b` differ. */
function diff(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

describe("nat6RewriteSrc / nat6RewriteDst", () => {
  it("golden: each protocol, each side: the address, port or id and the L4 checksum change, nothing else", () => {
    for (const proto of ALL) {
      for (const side of [SIDE_SRC, SIDE_DST]) {
        const p = basePkt(proto, { pad: 5 });
        const before = build(p);
        load(before);
        expect(rewrite(side, before.length, NODE, 61000)).toBe(NAT_OK);
        const got = read(before.length);
        expect(got, `${proto} side ${side}`).toEqual(build(rewritten(p, side, NODE, 61000)));
        expectChecksumValid(got, proto === "udp0");
        expect(got.subarray(side === SIDE_SRC ? 8 : 24, side === SIDE_SRC ? 24 : 40)).toEqual(NODE);
        const allowed = new Set([...range(side === SIDE_SRC ? 8 : 24, 16), ...range(40 + CSUM_OFF[NEXT[proto]], 2)]);
        if (proto === "tcp" || proto === "udp" || proto === "udp0") {
          for (const i of range(40 + (side === SIDE_SRC ? 0 : 2), 2)) allowed.add(i);
          expect(be16(got, 40 + (side === SIDE_SRC ? 0 : 2))).toBe(61000);
        } else if (isEcho(p)) {
          for (const i of range(44, 2)) allowed.add(i);
          expect(be16(got, 44)).toBe(61000);
        }
        expect(diff(before, got).filter((i) => !allowed.has(i))).toEqual([]);
        if (proto === "udp0") expect(be16(got, 46)).toBe(0);
        else expect(be16(got, 40 + CSUM_OFF[NEXT[proto]])).not.toBe(be16(before, 40 + CSUM_OFF[NEXT[proto]]));
      }
    }
  });

  it("random packets: src then dst rewritten equal a full recomputation, and rewriting back restores every byte", () => {
    let udpZeroSeen = 0;
    fc.assert(
      fc.property(pktArb(ALL), addr6, u16, addr6, u16, (p, sa, sp, da, dp) => {
        const orig = build(p);
        load(orig);
        expect(rewrite(SIDE_SRC, orig.length, sa, sp)).toBe(NAT_OK);
        const q1 = rewritten(p, SIDE_SRC, sa, sp);
        expect(read(orig.length)).toEqual(build(q1));
        expect(rewrite(SIDE_DST, orig.length, da, dp)).toBe(NAT_OK);
        const got = read(orig.length);
        expect(got).toEqual(build(rewritten(q1, SIDE_DST, da, dp)));
        expectChecksumValid(got, p.proto === "udp0");
        // And back: destination first, then the source (an echo's id last).
        expect(rewrite(SIDE_DST, orig.length, p.dst, isEcho(p) ? p.sport : p.dport)).toBe(NAT_OK);
        expect(rewrite(SIDE_SRC, orig.length, p.src, p.sport)).toBe(NAT_OK);
        expect(read(orig.length)).toEqual(orig);
        if (p.proto === "udp0") udpZeroSeen++;
      }),
      { numRuns: 4000 },
    );
    expect(udpZeroSeen).toBeGreaterThan(200);
  });

  it("a computed UDP checksum of 0 is sent as 0xFFFF, and a 0xFFFF one is updated like any other", () => {
    let found = 0;
    const p = basePkt("udp", { data: Uint8Array.from([1, 2, 3, 4]) });
    for (let port = 0; port < 65536 && found < 3; port++) {
      const q = rewritten(p, SIDE_SRC, NODE, port);
      const want = build(q);
      if (be16(want, 46) !== 0xffff) continue;
      found++;
      const before = build(p);
      load(before);
      expect(rewrite(SIDE_SRC, before.length, NODE, port)).toBe(NAT_OK);
      expect(read(before.length)).toEqual(want);
      expect(rewrite(SIDE_SRC, before.length, POD, p.sport)).toBe(NAT_OK);
      expect(read(before.length)).toEqual(before);
    }
    expect(found).toBeGreaterThan(0);
  });

  it("ICMPv6 echo: a checksum that is 0 by full computation, and the all-zero echo reply, come out as a full computation gives", () => {
    // The pseudo header (next header 58) keeps the sum off +0, so a checksum
    // of 0 is a legitimate result: reach it, leave it, and zero the whole message.
    for (const proto of ["echo", "echoReply"] as Proto[]) {
      let found = 0;
      const p = basePkt(proto, { sport: 7, dport: 0, data: new Uint8Array(16) });
      for (let id = 0; id < 65536 && found < 2; id++) {
        const want = build(rewritten(p, SIDE_DST, NODE, id));
        if (be16(want, 42) !== 0) continue;
        found++;
        const before = build(p);
        load(before);
        expect(rewrite(SIDE_DST, before.length, NODE, id)).toBe(NAT_OK);
        expect(read(before.length)).toEqual(want);
        expectChecksumValid(want);
        expect(rewrite(SIDE_DST, before.length, OUT, 7)).toBe(NAT_OK);
        expect(read(before.length)).toEqual(before);
      }
      expect(found).toBeGreaterThan(0);
      const zero = basePkt(proto, { sport: 0x1234, dport: 0, data: new Uint8Array(56) });
      const before = build(zero);
      load(before);
      expect(rewrite(SIDE_SRC, before.length, NODE, 0)).toBe(NAT_OK);
      expect(read(before.length)).toEqual(build(rewritten(zero, SIDE_SRC, NODE, 0)));
    }
  });

  it("refuses, packet unchanged: truncated at every length", () => {
    for (const proto of ALL) {
      const full = build(basePkt(proto));
      for (let cut = 0; cut < full.length; cut++) {
        for (const side of [SIDE_SRC, SIDE_DST]) {
          load(full);
          expect(rewrite(side, cut, NODE, 1), `${proto} cut ${cut}`).toBe(NAT_E_TRUNCATED);
          expect(read(full.length)).toEqual(full);
        }
      }
    }
  });

  it("refuses, packet unchanged: an L4 header longer than the payload length (padding is not L4)", () => {
    const cases: [number, number][] = [[6, 19], [6, 8], [17, 7], [58, 7], [58, 0]];
    for (const [next, plen] of cases) {
      // The bytes are there (as link padding), but the payload length says they are not L4.
      const l4 = tcp6(POD, OUT, 1, 2, new Uint8Array(8));
      const pkt = ipv6({ src: "2001:2::a", dst: "2001:2:0:ff::53", next, payload: l4 });
      new DataView(pkt.buffer).setUint16(4, plen);
      load(pkt);
      expect(rewrite(SIDE_SRC, pkt.length, NODE, 1), `next ${next} plen ${plen}`).toBe(plen === 0 ? NAT_E_BAD_HEADER : NAT_E_TRUNCATED);
      expect(read(pkt.length)).toEqual(pkt);
    }
  });

  it("refuses, packet unchanged: extension headers and other next headers, wrong version, jumbogram", () => {
    const tcpBytes = tcp6(POD, OUT, 1234, 80, new Uint8Array(40));
    for (const next of [0, 43, 44, 50, 51, 60, 135, 4, 41, 47, 1, 132]) {
      const pkt = ipv6({ src: "2001:2::a", dst: "2001:2:0:ff::53", next, payload: tcpBytes });
      for (const side of [SIDE_SRC, SIDE_DST]) {
        load(pkt);
        expect(rewrite(side, pkt.length, NODE, 1), `next ${next}`).toBe(NAT_E_UNSUPPORTED);
        expect(read(pkt.length)).toEqual(pkt);
      }
    }
    const none = ipv6({ src: "2001:2::a", dst: "2001:2:0:ff::53", next: 59, payload: new Uint8Array(0) });
    load(none);
    expect(rewrite(SIDE_SRC, none.length, NODE, 1)).toBe(NAT_E_UNSUPPORTED);
    expect(read(none.length)).toEqual(none);
    for (const version of [0, 4, 5, 7, 15]) {
      const pkt = build(basePkt("tcp"));
      pkt[0] = (version << 4) | (pkt[0] & 0x0f);
      load(pkt);
      expect(rewrite(SIDE_DST, pkt.length, NODE, 1)).toBe(NAT_E_BAD_HEADER);
      expect(read(pkt.length)).toEqual(pkt);
    }
    const jumbo = build(basePkt("udp"));
    jumbo[4] = jumbo[5] = 0;
    load(jumbo);
    expect(rewrite(SIDE_SRC, jumbo.length, NODE, 1)).toBe(NAT_E_BAD_HEADER);
    expect(read(jumbo.length)).toEqual(jumbo);
  });
});

// --- ICMPv6 errors ---------------------------------------------------------------

/** An ICMPv6 error from `src` to `dst` quoting `quote`, checksummed in full. */
function errorPkt(src: Uint8Array, dst: Uint8Array, type: number, code: number, rest: number, quote: Uint8Array): Uint8Array {
  const s = a6str(src);
  const d = a6str(dst);
  return ipv6({ src: s, dst: d, next: 58, hlim: 60, payload: icmp6(s, d, type, code, rest, quote) });
}

const ERR_PROTOS: Proto[] = ["tcp", "udp", "udp0", "echo", "echoReply"];
/** L4 bytes quoted: the minimum, half and whole TCP checksum field, more. */
const quoteArb = fc.oneof(fc.constantFrom(8, 17, 18, 20), fc.integer({ min: 48, max: 260 }));
const errTypeArb = fc.constantFrom<[number, number, number]>(
  [1, 0, 0], [1, 1, 0], [1, 3, 0], [1, 4, 0], [2, 0, 1280], [2, 0, 1400], [3, 0, 0], [3, 1, 0], [4, 0, 6], [4, 1, 40],
);

/** The quote an error about `pkt` (a whole packet, no padding) carries: its
 *  header and `l4` bytes of its payload, at most all of it. */
const quoteOf = (pkt: Uint8Array, l4: number) => pkt.subarray(0, Math.min(pkt.length, 40 + l4));

describe("nat6TranslateIcmpError", () => {
  it("random errors about TCP/UDP/echo packets: outer and embedded checksums equal a full recomputation of the translated packet", () => {
    const seen = new Set<number>();
    fc.assert(
      fc.property(
        pktArb(ERR_PROTOS, false), fc.constantFrom(SIDE_SRC, SIDE_DST), addr6, u16, addr6, errTypeArb, quoteArb, addr6,
        (p, side, addr, port, outer, [type, code, rest], ql, router) => {
          const sent = build(p);
          const quote = quoteOf(sent, ql);
          const q = quote.length - 40;
          seen.add(q);
          // SIDE_SRC: the error goes to the packet's source; SIDE_DST: it comes from its destination.
          const err = side === SIDE_SRC ? errorPkt(router, p.src, type, code, rest, quote) : errorPkt(p.dst, p.src, type, code, rest, quote);
          load(err);
          expect(translateError(err.length, side, addr, port, outer)).toBe(NAT_OK);
          const got = read(err.length);

          // The untruncated translated packet, checksummed in full, then cut to the quote.
          const whole = build(rewritten(p, side, addr, port));
          const wantQuote = whole.slice(0, quote.length);
          const cOff = CSUM_OFF[NEXT[p.proto]];
          if (q > cOff && q < cOff + 2) wantQuote.set(quote.subarray(40 + cOff, 40 + q), 40 + cOff); // half a field: left alone
          const want = side === SIDE_SRC
            ? errorPkt(router, outer, type, code, rest, wantQuote)
            : errorPkt(outer, p.src, type, code, rest, wantQuote);
          expect(got).toEqual(want);

          // The same, field by field against the reference checksum.
          expectChecksumValid(got);
          expect(got.subarray(side === SIDE_SRC ? 24 : 8, side === SIDE_SRC ? 40 : 24)).toEqual(outer);
          const e = got.subarray(48);
          expect(e.subarray(side === SIDE_SRC ? 8 : 24, side === SIDE_SRC ? 24 : 40)).toEqual(addr);
          expect(be16(e, 40 + (isEcho(p) ? 4 : side === SIDE_SRC ? 0 : 2))).toBe(port);
          if (q >= cOff + 2) expect(be16(e, 40 + cOff)).toBe(p.proto === "udp0" ? 0 : l4Checksum(whole).full);
        },
      ),
      { numRuns: 4000 },
    );
    for (const q of [8, 17, 18, 20]) expect(seen.has(q)).toBe(true);
  });

  it("SNAT and DNAT round trips: the pod gets the error it would have got without NAT", () => {
    fc.assert(
      fc.property(pktArb(ERR_PROTOS, false), addr6, u16, addr6, errTypeArb, quoteArb, (p, natAddr, natPort, router, [type, code, rest], q) => {
        // Half of TCP's checksum field (17 bytes) cannot be translated back: the other property covers it.
        const ql = p.proto === "tcp" && q === 17 ? 18 : q;
        const orig = build(p);
        // SNAT: the pod's packet leaves as natAddr:natPort; a router on the way answers natAddr.
        load(orig);
        expect(rewrite(SIDE_SRC, orig.length, natAddr, natPort)).toBe(NAT_OK);
        const sent = read(orig.length);
        let err = errorPkt(router, natAddr, type, code, rest, quoteOf(sent, ql));
        load(err);
        expect(translateError(err.length, SIDE_SRC, p.src, p.sport, p.src)).toBe(NAT_OK);
        expect(read(err.length)).toEqual(errorPkt(router, p.src, type, code, rest, quoteOf(orig, ql)));
        // DNAT: the client's packet to p.dst goes to natAddr; the backend's error reaches the client from p.dst.
        if (isEcho(p)) return;
        load(orig);
        expect(rewrite(SIDE_DST, orig.length, natAddr, natPort)).toBe(NAT_OK);
        const fwd = read(orig.length);
        err = errorPkt(natAddr, p.src, type, code, rest, quoteOf(fwd, ql));
        load(err);
        expect(translateError(err.length, SIDE_DST, p.dst, p.dport, p.dst)).toBe(NAT_OK);
        expect(read(err.length)).toEqual(errorPkt(p.dst, p.src, type, code, rest, quoteOf(orig, ql)));
      }),
      { numRuns: 2000 },
    );
  });

  it("refuses, packet unchanged: truncated at every length", () => {
    for (const proto of ERR_PROTOS) {
      const err = errorPkt(ROUTER, NODE, 1, 4, 0, quoteOf(build(basePkt(proto)), 48));
      for (let cut = 0; cut < err.length; cut++) {
        load(err);
        expect(translateError(cut, SIDE_SRC, POD, 1, POD), `${proto} cut ${cut}`).toBe(NAT_E_TRUNCATED);
        expect(read(err.length)).toEqual(err);
      }
    }
  });

  it("refuses, packet unchanged: not an ICMPv6 error, a short or non-IPv6 quote, extension headers, a bad side", () => {
    const inner = build(basePkt("udp"));
    const s = "2001:2:0:fe::1";
    const d = "2001:2:0:1::1";
    const cases: [string, Uint8Array, number][] = [
      ["udp, not icmpv6", ipv6({ src: s, dst: d, next: 17, payload: udp6(s, d, 1, 2, inner.subarray(0, 60)) }), NAT_E_UNSUPPORTED],
      ["hop-by-hop before the icmpv6", ipv6({ src: s, dst: d, next: 0, payload: icmp6(s, d, 1, 0, 0, inner.subarray(0, 60)) }), NAT_E_UNSUPPORTED],
      ["icmpv6 header cut", ipv6({ src: s, dst: d, next: 58, payload: new Uint8Array([1, 0, 0, 0]) }), NAT_E_TRUNCATED],
      ["quote of 39 bytes", errorPkt(ROUTER, NODE, 1, 0, 0, inner.subarray(0, 39)), NAT_E_TRUNCATED],
      ["quote of header + 7", errorPkt(ROUTER, NODE, 3, 0, 0, inner.subarray(0, 47)), NAT_E_TRUNCATED],
      ["quoted ipv4", errorPkt(ROUTER, NODE, 1, 0, 0, Uint8Array.from(inner.subarray(0, 60), (x, i) => (i === 0 ? 0x45 : x))), NAT_E_BAD_HEADER],
      ["quoted version 0", errorPkt(ROUTER, NODE, 1, 0, 0, Uint8Array.from(inner.subarray(0, 60), (x, i) => (i === 0 ? 0x00 : x))), NAT_E_BAD_HEADER],
    ];
    for (const type of [0, 5, 100, 127, 128, 129, 133, 135, 136, 143, 255]) {
      cases.push([`icmpv6 type ${type}`, errorPkt(ROUTER, NODE, type, 0, 0, inner.subarray(0, 60)), NAT_E_UNSUPPORTED]);
    }
    for (const next of [0, 43, 44, 60, 59, 50, 47]) {
      const q = inner.slice(0, 60);
      q[6] = next;
      cases.push([`quoted next header ${next}`, errorPkt(ROUTER, NODE, 1, 0, 0, q), NAT_E_UNSUPPORTED]);
    }
    for (const [name, pkt, st] of cases) {
      for (const side of [SIDE_SRC, SIDE_DST]) {
        load(pkt);
        expect(translateError(pkt.length, side, POD, 1, POD), name).toBe(st);
        expect(read(pkt.length)).toEqual(pkt);
      }
    }
    const ok = errorPkt(ROUTER, NODE, 1, 0, 0, inner.subarray(0, 60));
    load(ok);
    expect(translateError(ok.length, 2, POD, 1, POD)).toBe(NAT_E_UNSUPPORTED);
    expect(read(ok.length)).toEqual(ok);
    expect(translateError(ok.length, SIDE_SRC, POD, 1, POD)).toBe(NAT_OK);
  });
});
