// NAT rewrites (assembly/nat/translate.ts): every incremental checksum
// update compared with packets built from scratch by the test helpers (full
// RFC 1071 recomputation), on thousands of random packets; zero UDP
// checksums; ICMP errors translated back, embedded header included; length
// guards that leave the packet untouched.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { instantiateDataplane } from "../src/dataplane/wasm.js";
import { icmpEcho, inetChecksum, ip, ipv4, tcp, udp } from "./helpers/packets.js";

const NAT_OK = 0;
const NAT_E_TRUNCATED = 1;
const NAT_E_BAD_HEADER = 2;
const NAT_E_FRAGMENT = 3;
const NAT_E_UNSUPPORTED = 4;
const SIDE_SRC = 0;
const SIDE_DST = 1;
const NAT_SNAT = 1;
const NAT_DNAT = 2;
const NAT_BOTH = 3;

const raw = instantiateDataplane("debug");
const BUF_LEN = 4096;
const buf: number = raw.scratchAlloc(BUF_LEN);
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

/** An ICMP error message (type, code, 32-bit rest) carrying `data`. */
function icmpError(type: number, code: number, rest: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const dv = new DataView(b.buffer);
  b[0] = type;
  b[1] = code;
  dv.setUint32(4, rest);
  b.set(data, 8);
  dv.setUint16(2, inetChecksum(b));
  return b;
}

type Proto = "tcp" | "udp" | "udp0" | "echo" | "echoReply" | "gre";

interface Pkt {
  proto: Proto;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  data: Uint8Array;
  opts: number;
  ttl: number;
  id: number;
  df: boolean;
  flags: number;
}

const PROTO_NUM: Record<Proto, number> = { tcp: 6, udp: 17, udp0: 17, echo: 1, echoReply: 1, gre: 47 };

/** Build the packet from scratch, every checksum computed in full. ICMP
 *  echo: sport is the identifier, dport the sequence number. */
function build(p: Pkt): Uint8Array {
  let l4: Uint8Array;
  switch (p.proto) {
    case "tcp": l4 = tcp(p.src, p.dst, p.sport, p.dport, p.flags, p.data, 0x11223344, 0x55667788); break;
    case "udp": l4 = udp(p.src, p.dst, p.sport, p.dport, p.data, true); break;
    case "udp0": l4 = udp(p.src, p.dst, p.sport, p.dport, p.data, false); break;
    case "echo": l4 = icmpEcho(p.sport, p.dport, p.data, 8); break;
    case "echoReply": l4 = icmpEcho(p.sport, p.dport, p.data, 0); break;
    case "gre": l4 = p.data; break;
  }
  return ipv4({
    src: p.src, dst: p.dst, proto: PROTO_NUM[p.proto], payload: l4, ttl: p.ttl, id: p.id, df: p.df,
    options: new Uint8Array(p.opts).fill(1),
  });
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const pktArb: fc.Arbitrary<Pkt> = fc.record({
  proto: fc.constantFrom<Proto>("tcp", "udp", "udp0", "echo", "echoReply", "gre"),
  src: u32,
  dst: u32,
  sport: u16,
  dport: u16,
  data: fc.uint8Array({ minLength: 0, maxLength: 200 }),
  opts: fc.constantFrom(0, 0, 4, 8, 40),
  ttl: fc.integer({ min: 1, max: 255 }),
  id: u16,
  df: fc.boolean(),
  flags: fc.constantFrom(0x02, 0x12, 0x10, 0x18, 0x11, 0x04),
});

/** What rewriting `side` to addr:port must produce. */
function rewritten(p: Pkt, side: number, addr: number, port: number): Pkt {
  const q = { ...p };
  const echo = p.proto === "echo" || p.proto === "echoReply";
  if (side === SIDE_SRC) {
    q.src = addr;
    if (p.proto !== "gre") q.sport = port;
  } else {
    q.dst = addr;
    if (echo) q.sport = port; // the identifier, whichever side
    else if (p.proto !== "gre") q.dport = port;
  }
  return q;
}

describe("natRewriteSrc / natRewriteDst", () => {
  it("equal a full recomputation on thousands of random packets (TCP, UDP, UDP without checksum, ICMP echo, other)", () => {
    let udpZeroSeen = 0;
    fc.assert(
      fc.property(pktArb, fc.constantFrom(SIDE_SRC, SIDE_DST), u32, u16, (p, side, addr, port) => {
        const before = build(p);
        load(before);
        const fn = side === SIDE_SRC ? raw.natRewriteSrc : raw.natRewriteDst;
        expect(fn(buf, before.length, addr, port)).toBe(NAT_OK);
        const want = build(rewritten(p, side, addr, port));
        const got = read(before.length);
        expect(got).toEqual(want);
        if (p.proto === "udp0") {
          expect(got[before.length - p.data.length - 2] | got[before.length - p.data.length - 1]).toBe(0);
          udpZeroSeen++;
        }
      }),
      { numRuns: 5000 },
    );
    expect(udpZeroSeen).toBeGreaterThan(100);
  });

  it("a computed UDP checksum of 0 is sent as 0xFFFF", () => {
    // Search for a rewrite whose result sums to 0: the builder writes 0xFFFF then, and so must we.
    let found = 0;
    for (let port = 0; port < 65536 && found < 3; port++) {
      const p: Pkt = { proto: "udp", src: ip("10.0.0.5"), dst: ip("8.8.8.8"), sport: 1234, dport: 53, data: new Uint8Array([1, 2, 3, 4]), opts: 0, ttl: 64, id: 1, df: true, flags: 0 };
      const q = rewritten(p, SIDE_SRC, ip("192.168.1.10"), port);
      const want = build(q);
      const csum = (want[26] << 8) | want[27];
      if (csum !== 0xffff) continue;
      found++;
      const before = build(p);
      load(before);
      expect(raw.natRewriteSrc(buf, before.length, q.src, port)).toBe(NAT_OK);
      expect(read(before.length)).toEqual(want);
    }
    expect(found).toBeGreaterThan(0);
  });

  it("a first fragment is translated; a later fragment is refused untouched", () => {
    const l4 = udp("10.0.0.5", "8.8.8.8", 1234, 53, new Uint8Array(64));
    const first = ipv4({ src: "10.0.0.5", dst: "8.8.8.8", proto: 17, payload: l4.subarray(0, 32), mf: true });
    load(first);
    expect(raw.natRewriteSrc(buf, first.length, ip("192.168.1.10"), 61000)).toBe(NAT_OK);
    const got = read(first.length);
    // The L4 checksum covers the whole datagram: check it over the reassembled one.
    const whole = udp("192.168.1.10", "8.8.8.8", 61000, 53, new Uint8Array(64));
    expect(got.subarray(20, 28)).toEqual(whole.subarray(0, 8));
    const later = ipv4({ src: "10.0.0.5", dst: "8.8.8.8", proto: 17, payload: l4.subarray(32), fragOffset: 4 });
    load(later);
    expect(raw.natRewriteSrc(buf, later.length, ip("192.168.1.10"), 61000)).toBe(NAT_E_FRAGMENT);
    expect(read(later.length)).toEqual(later);
  });

  it("length guards: truncated or malformed input returns a status and changes nothing", () => {
    fc.assert(
      fc.property(pktArb, fc.nat(), (p, cut) => {
        const full = build(p);
        const len = cut % full.length;
        load(full);
        const st = raw.natRewriteSrc(buf, len, 1, 2);
        expect([NAT_E_TRUNCATED, NAT_E_BAD_HEADER]).toContain(st);
        expect(read(full.length)).toEqual(full);
      }),
      { numRuns: 1000 },
    );
    // A header that claims too little room for its L4 header.
    const short = ipv4({ src: "10.0.0.5", dst: "8.8.8.8", proto: 6, payload: new Uint8Array(12) });
    load(short);
    expect(raw.natRewriteSrc(buf, short.length, 1, 2)).toBe(NAT_E_TRUNCATED);
    expect(read(short.length)).toEqual(short);
    const v6 = build({ proto: "udp", src: 1, dst: 2, sport: 3, dport: 4, data: new Uint8Array(8), opts: 0, ttl: 9, id: 0, df: false, flags: 0 });
    v6[0] = 0x65;
    load(v6);
    expect(raw.natRewriteDst(buf, v6.length, 1, 2)).toBe(NAT_E_BAD_HEADER);
    expect(read(v6.length)).toEqual(v6);
  });
});

describe("natRewriteIcmpId", () => {
  it("changes the echo identifier and the ICMP checksum only", () => {
    fc.assert(
      fc.property(pktArb.filter((p) => p.proto === "echo" || p.proto === "echoReply"), u16, (p, id) => {
        const before = build(p);
        load(before);
        expect(raw.natRewriteIcmpId(buf, before.length, id)).toBe(NAT_OK);
        expect(read(before.length)).toEqual(build({ ...p, sport: id }));
      }),
      { numRuns: 1000 },
    );
  });

  it("refuses what is not an echo", () => {
    const err = ipv4({ src: "1.1.1.1", dst: "2.2.2.2", proto: 1, payload: icmpError(3, 3, 0, new Uint8Array(28)) });
    load(err);
    expect(raw.natRewriteIcmpId(buf, err.length, 5)).toBe(NAT_E_UNSUPPORTED);
    const u = build({ proto: "udp", src: 1, dst: 2, sport: 3, dport: 4, data: new Uint8Array(8), opts: 0, ttl: 9, id: 0, df: false, flags: 0 });
    load(u);
    expect(raw.natRewriteIcmpId(buf, u.length, 5)).toBe(NAT_E_UNSUPPORTED);
    expect(read(u.length)).toEqual(u);
  });
});

/** How much of the offending packet an error embeds: its header + 8 bytes
 *  at least, all of it at most; never half of TCP's checksum field (the
 *  one case where the embedded checksum cannot be translated back). */
function embedLen(p: Pkt, total: number, hl: number, extra: number): number {
  const k = Math.min(total, hl + 8 + (extra % (total - hl - 7)));
  return p.proto === "tcp" && k === hl + 17 ? k + 1 : k;
}

describe("natTranslateIcmpError: ICMP errors about translated flows, translated back", () => {
  const ERRORS: [number, number, number][] = [[3, 3, 0], [3, 4, 1400], [11, 0, 0], [3, 1, 0], [12, 0, 0x14000000]];

  it("SNAT round trip: the pod gets the error it would have got without NAT (random packets, embedded lengths, error types)", () => {
    fc.assert(
      fc.property(
        pktArb.filter((p) => p.proto !== "echoReply" && (p.proto !== "gre" || p.data.length >= 8)), u32, u16, u32, fc.constantFrom(...ERRORS), fc.nat(),
        (p, node, natPort, router, [type, code, rest], extra) => {
          // The pod's packet, and what left the node after masquerade.
          const orig = build(p);
          const sent = build(rewritten(p, SIDE_SRC, node, natPort));
          load(orig);
          expect(raw.natRewriteSrc(buf, orig.length, node, natPort)).toBe(NAT_OK);
          expect(read(orig.length)).toEqual(sent);
          // A router answers the node with the header + 8 bytes or more (up to all of it).
          const hl = 20 + p.opts;
          const k = embedLen(p, sent.length, hl, extra);
          const err = ipv4({ src: router, dst: node, proto: 1, payload: icmpError(type, code, rest, sent.subarray(0, k)), ttl: 60 });
          const want = ipv4({ src: router, dst: p.src, proto: 1, payload: icmpError(type, code, rest, orig.subarray(0, k)), ttl: 60 });
          load(err);
          expect(raw.natTranslateIcmpError(buf, err.length, SIDE_SRC, p.src, p.sport, p.src)).toBe(NAT_OK);
          expect(read(err.length)).toEqual(want);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("DNAT round trip: an error from the backend's side reaches the client about the service address", () => {
    fc.assert(
      fc.property(
        pktArb.filter((p) => p.proto === "tcp" || p.proto === "udp" || p.proto === "udp0"), u32, u16, fc.constantFrom(...ERRORS), fc.nat(),
        (p, backend, backendPort, [type, code, rest], extra) => {
          const orig = build(p); // client -> service
          const sent = build(rewritten(p, SIDE_DST, backend, backendPort));
          load(orig);
          expect(raw.natRewriteDst(buf, orig.length, backend, backendPort)).toBe(NAT_OK);
          expect(read(orig.length)).toEqual(sent);
          const hl = 20 + p.opts;
          const k = embedLen(p, sent.length, hl, extra);
          const err = ipv4({ src: backend, dst: p.src, proto: 1, payload: icmpError(type, code, rest, sent.subarray(0, k)) });
          const want = ipv4({ src: p.dst, dst: p.src, proto: 1, payload: icmpError(type, code, rest, orig.subarray(0, k)) });
          load(err);
          expect(raw.natTranslateIcmpError(buf, err.length, SIDE_DST, p.dst, p.dport, p.dst)).toBe(NAT_OK);
          expect(read(err.length)).toEqual(want);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("guards: not an error, embedded header short or not IPv4, embedded later fragment; nothing changes", () => {
    const inner = build({ proto: "udp", src: ip("192.168.1.10"), dst: ip("8.8.8.8"), sport: 61000, dport: 53, data: new Uint8Array(16), opts: 0, ttl: 64, id: 7, df: true, flags: 0 });
    const cases: [Uint8Array, number][] = [
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpEcho(1, 1, new Uint8Array(28)) }), NAT_E_UNSUPPORTED],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 17, payload: udp("9.9.9.9", "192.168.1.10", 1, 2, new Uint8Array(28)) }), NAT_E_UNSUPPORTED],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, inner.subarray(0, 27)) }), NAT_E_TRUNCATED],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, inner.subarray(0, 12)) }), NAT_E_TRUNCATED],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, new Uint8Array(28).fill(0x66)) }), NAT_E_BAD_HEADER],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, new Uint8Array([0x46, ...inner.subarray(1, 31)])) }), NAT_E_TRUNCATED],
      [ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, ipv4({ src: "192.168.1.10", dst: "8.8.8.8", proto: 17, payload: new Uint8Array(8), fragOffset: 3 })) }), NAT_E_FRAGMENT],
    ];
    for (const [pkt, st] of cases) {
      load(pkt);
      expect(raw.natTranslateIcmpError(buf, pkt.length, SIDE_SRC, 1, 2, 3)).toBe(st);
      expect(read(pkt.length)).toEqual(pkt);
    }
    const ok = ipv4({ src: "9.9.9.9", dst: "192.168.1.10", proto: 1, payload: icmpError(3, 3, 0, inner.subarray(0, 28)) });
    load(ok);
    expect(raw.natTranslateIcmpError(buf, ok.length - 1, SIDE_SRC, 1, 2, 3)).toBe(NAT_E_TRUNCATED);
    expect(raw.natTranslateIcmpError(buf, ok.length, 2, 1, 2, 3)).toBe(NAT_E_UNSUPPORTED);
    expect(read(ok.length)).toEqual(ok);
  });
});

describe("natLookupPacket + natApplyFlow: a flow's translation both ways", () => {
  const ct = instantiateDataplane("debug");
  ct.ctSetup(64);
  const cbuf: number = ct.scratchAlloc(2048);
  const put = (b: Uint8Array) => new Uint8Array(ct.memory.buffer).set(b, cbuf);
  const get = (n: number) => new Uint8Array(ct.memory.buffer).slice(cbuf, cbuf + n);
  const POD = ip("10.244.1.5");
  const NODE = ip("192.168.1.10");
  const OUT = ip("93.184.216.34");
  const SVC = ip("10.96.0.10");
  const BACKEND = ip("10.244.2.7");

  it("SNAT: pod -> outside leaves as the node; the answer comes back to the pod", () => {
    const f: number = ct.ctCreate(6, POD, OUT, 40000, 443, OUT, NODE, 443, 61234, NAT_SNAT, 100);
    expect(f).toBeGreaterThanOrEqual(0);
    const out = tcp(POD, OUT, 40000, 443, 0x02, new Uint8Array(10));
    const pkt = ipv4({ src: POD, dst: OUT, proto: 6, payload: out });
    put(pkt);
    const ref: number = ct.natLookupPacket(cbuf, pkt.length, 100);
    expect(ref).toBe(f << 1);
    expect(ct.natApplyFlow(cbuf, pkt.length, ref)).toBe(NAT_OK);
    expect(get(pkt.length)).toEqual(ipv4({ src: NODE, dst: OUT, proto: 6, payload: tcp(NODE, OUT, 61234, 443, 0x02, new Uint8Array(10)) }));
    const back = ipv4({ src: OUT, dst: NODE, proto: 6, payload: tcp(OUT, NODE, 443, 61234, 0x12, new Uint8Array(3)) });
    put(back);
    const ref2: number = ct.natLookupPacket(cbuf, back.length, 101);
    expect(ref2).toBe((f << 1) | 1);
    expect(ct.natApplyFlow(cbuf, back.length, ref2)).toBe(NAT_OK);
    expect(get(back.length)).toEqual(ipv4({ src: OUT, dst: POD, proto: 6, payload: tcp(OUT, POD, 443, 40000, 0x12, new Uint8Array(3)) }));
  });

  it("DNAT: client -> ClusterIP goes to the backend; the answer seems to come from the ClusterIP", () => {
    const f: number = ct.ctCreate(17, POD, SVC, 5353, 53, BACKEND, POD, 5300, 5353, NAT_DNAT, 100);
    expect(f).toBeGreaterThanOrEqual(0);
    const q = ipv4({ src: POD, dst: SVC, proto: 17, payload: udp(POD, SVC, 5353, 53, new Uint8Array(30)) });
    put(q);
    const ref: number = ct.natLookupPacket(cbuf, q.length, 100);
    expect(ref).toBe(f << 1);
    expect(ct.natApplyFlow(cbuf, q.length, ref)).toBe(NAT_OK);
    expect(get(q.length)).toEqual(ipv4({ src: POD, dst: BACKEND, proto: 17, payload: udp(POD, BACKEND, 5353, 5300, new Uint8Array(30)) }));
    const a = ipv4({ src: BACKEND, dst: POD, proto: 17, payload: udp(BACKEND, POD, 5300, 5353, new Uint8Array(40), false) });
    put(a);
    const ref2: number = ct.natLookupPacket(cbuf, a.length, 100);
    expect(ref2).toBe((f << 1) | 1);
    expect(ct.natApplyFlow(cbuf, a.length, ref2)).toBe(NAT_OK);
    expect(get(a.length)).toEqual(ipv4({ src: SVC, dst: POD, proto: 17, payload: udp(SVC, POD, 53, 5353, new Uint8Array(40), false) }));
  });

  it("hairpin (BOTH): a backend reaching its own service is DNATed to itself and SNATed to the node, both ways", () => {
    const f: number = ct.ctCreate(6, BACKEND, SVC, 33000, 80, BACKEND, NODE, 8080, 62000, NAT_BOTH, 100);
    expect(f).toBeGreaterThanOrEqual(0);
    const q = ipv4({ src: BACKEND, dst: SVC, proto: 6, payload: tcp(BACKEND, SVC, 33000, 80, 0x02, new Uint8Array(7)) });
    put(q);
    const ref: number = ct.natLookupPacket(cbuf, q.length, 100);
    expect(ref).toBe(f << 1);
    expect(ct.natApplyFlow(cbuf, q.length, ref)).toBe(NAT_OK);
    expect(get(q.length)).toEqual(ipv4({ src: NODE, dst: BACKEND, proto: 6, payload: tcp(NODE, BACKEND, 62000, 8080, 0x02, new Uint8Array(7)) }));
    const a = ipv4({ src: BACKEND, dst: NODE, proto: 6, payload: tcp(BACKEND, NODE, 8080, 62000, 0x12, new Uint8Array(5)) });
    put(a);
    const ref2: number = ct.natLookupPacket(cbuf, a.length, 100);
    expect(ref2).toBe((f << 1) | 1);
    expect(ct.natApplyFlow(cbuf, a.length, ref2)).toBe(NAT_OK);
    expect(get(a.length)).toEqual(ipv4({ src: SVC, dst: BACKEND, proto: 6, payload: tcp(SVC, BACKEND, 80, 33000, 0x12, new Uint8Array(5)) }));
  });

  it("ICMP echo flows are found by identifier; errors and untracked packets are not", () => {
    const f: number = ct.ctCreate(1, POD, OUT, 7, 0, OUT, NODE, 4242, 0, NAT_SNAT, 100);
    const req = ipv4({ src: POD, dst: OUT, proto: 1, payload: icmpEcho(7, 1, new Uint8Array(56)) });
    put(req);
    const ref: number = ct.natLookupPacket(cbuf, req.length, 100);
    expect(ref).toBe(f << 1);
    expect(ct.natApplyFlow(cbuf, req.length, ref)).toBe(NAT_OK);
    expect(get(req.length)).toEqual(ipv4({ src: NODE, dst: OUT, proto: 1, payload: icmpEcho(4242, 1, new Uint8Array(56)) }));
    const rep = ipv4({ src: OUT, dst: NODE, proto: 1, payload: icmpEcho(4242, 1, new Uint8Array(56), 0) });
    put(rep);
    const ref2: number = ct.natLookupPacket(cbuf, rep.length, 100);
    expect(ref2).toBe((f << 1) | 1);
    expect(ct.natApplyFlow(cbuf, rep.length, ref2)).toBe(NAT_OK);
    expect(get(rep.length)).toEqual(ipv4({ src: OUT, dst: POD, proto: 1, payload: icmpEcho(7, 1, new Uint8Array(56), 0) }));
    const err = ipv4({ src: OUT, dst: NODE, proto: 1, payload: icmpError(3, 3, 0, req.subarray(0, 28)) });
    put(err);
    expect(ct.natLookupPacket(cbuf, err.length, 100)).toBe(-1);
    expect(ct.natApplyFlow(cbuf, err.length, -1)).toBe(NAT_E_UNSUPPORTED);
    // Past its 30 s timeout the echo flow is reaped on sight.
    put(rep);
    expect(ct.natLookupPacket(cbuf, rep.length, 130)).toBe(-1);
  });
});
