// Golden-byte tests for every header in assembly/wire/, smoltcp style: each
// header is deconstructed (check + accessors) from static bytes, constructed
// (emit* onto a buffer full of 0xA5, so a forgotten field or a write past the
// header shows), fed truncated and overlong, and its length-field rules broken
// one at a time. The golden frames below are hand-written hex; their checksums
// were verified once with tshark (an implementation nobody here wrote), and
// are re-verified here with the naive RFC 1071 sum from test/helpers.
//
// Truncation tests place the bytes at the very end of linear memory, so a
// check that reads one byte past `len` traps instead of passing silently.
// Every check function is also compared with a naive TypeScript model of its
// documented contract on random bytes (fast-check), again at the end of memory.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane, type BuildKind, type RawExports } from "../src/dataplane/wasm.js";
import { inetChecksum, ip, mac } from "./helpers/packets.js";

// ---------------------------------------------------------------------------
// Golden frames.
// ---------------------------------------------------------------------------

/** VXLAN as the Linux kernel sends it (IPv4 underlay, UDP checksum off, DF
 *  clear, TTL 64): 192.168.56.11 -> .12, UDP 54690 -> 4789, VNI 100, inner
 *  Ethernet 0a:58:0a:f4:01:04 -> 0a:58:0a:f4:02:05, inner IPv4 10.244.1.4 ->
 *  10.244.2.5 (DF, TTL 64), ICMP echo request id 0x1f2e seq 1, 16 bytes of
 *  ping payload (timestamp + 0x10..0x17). */
const VXLAN_FRAME = Uint8Array.from([
  // outer IPv4 @0
  0x45, 0x00, 0x00, 0x5e, 0x8a, 0x3c, 0x00, 0x00, 0x40, 0x11, 0xfe, 0xea, 0xc0, 0xa8, 0x38, 0x0b,
  0xc0, 0xa8, 0x38, 0x0c,
  // UDP @20
  0xd5, 0xa2, 0x12, 0xb5, 0x00, 0x4a, 0x00, 0x00,
  // VXLAN @28
  0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00,
  // inner Ethernet @36
  0x0a, 0x58, 0x0a, 0xf4, 0x02, 0x05, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x04, 0x08, 0x00,
  // inner IPv4 @50
  0x45, 0x00, 0x00, 0x2c, 0xb4, 0xe1, 0x40, 0x00, 0x40, 0x01, 0x6c, 0xff, 0x0a, 0xf4, 0x01, 0x04,
  0x0a, 0xf4, 0x02, 0x05,
  // ICMP echo @70
  0x08, 0x00, 0xfb, 0xb9, 0x1f, 0x2e, 0x00, 0x01,
  0x65, 0x5f, 0x2b, 0x67, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
]);
const VX = { udp: 20, vxlan: 28, eth: 36, ip: 50, icmp: 70 } as const;

/** ARP request in an Ethernet broadcast frame (42 bytes, before NIC padding):
 *  who-has 10.244.1.4 tell 10.244.1.1 (0a:58:0a:f4:01:01). */
const ARP_FRAME = Uint8Array.from([
  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x08, 0x06,
  // ARP @14
  0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0xf4,
  0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x01, 0x04,
]);

/** IPv4 with options (IHL 7: Router Alert, NOP x3, EOL), TOS 0xb8 (EF),
 *  a later fragment with MF set and offset 185 (1480 bytes), TTL 63, UDP,
 *  172.16.0.1 -> 172.16.0.2, 16 bytes of payload. */
const IP_OPTS = Uint8Array.from([
  0x47, 0xb8, 0x00, 0x2c, 0xbe, 0xef, 0x20, 0xb9, 0x3f, 0x11, 0xab, 0x37, 0xac, 0x10, 0x00, 0x01,
  0xac, 0x10, 0x00, 0x02,
  0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00,
  0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
]);

/** First fragment (MF, offset 0), TOS 0x02 (ECT(0)), 192.0.2.1 -> 198.51.100.2,
 *  carrying only the 8-byte UDP header of the datagram. */
const IP_FIRST_FRAG = Uint8Array.from([
  0x45, 0x02, 0x00, 0x1c, 0x1c, 0x46, 0x20, 0x00, 0x40, 0x11, 0x52, 0x52, 0xc0, 0x00, 0x02, 0x01,
  0xc6, 0x33, 0x64, 0x02,
  0x9c, 0x40, 0x00, 0x35, 0x05, 0xc8, 0x12, 0x34,
]);

/** Linux TCP SYN with options 10.244.1.4:41970 -> 10.244.2.5:80: MSS 1460,
 *  SACK permitted, timestamps (1000000, 0), NOP, window scale 7. */
const TCP_SYN = Uint8Array.from([
  0x45, 0x00, 0x00, 0x3c, 0x3f, 0x1a, 0x40, 0x00, 0x40, 0x06, 0xe2, 0xb1, 0x0a, 0xf4, 0x01, 0x04,
  0x0a, 0xf4, 0x02, 0x05,
  // TCP @20
  0xa3, 0xf2, 0x00, 0x50, 0x6b, 0x8b, 0x45, 0x67, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
  0x9c, 0x9a, 0x00, 0x00,
  // options @40
  0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x03, 0x03, 0x07,
]);

/** The RST|ACK answering it (no options, data offset 5, IP id 0, DF). */
const TCP_RST = Uint8Array.from([
  0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x21, 0xe0, 0x0a, 0xf4, 0x02, 0x05,
  0x0a, 0xf4, 0x01, 0x04,
  0x00, 0x50, 0xa3, 0xf2, 0x00, 0x00, 0x00, 0x00, 0x6b, 0x8b, 0x45, 0x68, 0x50, 0x14, 0x00, 0x00,
  0x41, 0xaa, 0x00, 0x00,
]);

/** DNS query for k8s.io A, 10.244.1.4:40000 -> 10.96.0.10:53, UDP checksum on. */
const UDP_DNS = Uint8Array.from([
  0x45, 0x00, 0x00, 0x34, 0x5c, 0x21, 0x40, 0x00, 0x40, 0x11, 0xc8, 0x36, 0x0a, 0xf4, 0x01, 0x04,
  0x0a, 0x60, 0x00, 0x0a,
  // UDP @20
  0x9c, 0x40, 0x00, 0x35, 0x00, 0x20, 0x84, 0x61,
  // DNS @28
  0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x6b, 0x38, 0x73,
  0x02, 0x69, 0x6f, 0x00, 0x00, 0x01, 0x00, 0x01,
]);

/** ICMP fragmentation needed (type 3 code 4), next-hop MTU 1450, quoting the
 *  offending 1500-byte TCP datagram's IPv4 header and first 8 bytes. */
const ICMP_FRAG_NEEDED = Uint8Array.from([
  0x03, 0x04, 0xa2, 0x1b, 0x00, 0x00, 0x05, 0xaa,
  0x45, 0x00, 0x05, 0xdc, 0x3f, 0x1b, 0x40, 0x00, 0x40, 0x06, 0xdd, 0x10, 0x0a, 0xf4, 0x01, 0x04,
  0x0a, 0xf4, 0x02, 0x05,
  0xa3, 0xf2, 0x00, 0x50, 0x6b, 0x8b, 0x45, 0x68,
]);

/** IPIP (RFC 2003) as Linux sends it: outer 192.168.56.11 -> .12, protocol 4,
 *  DF, TTL 64, around the inner IPv4+ICMP datagram of VXLAN_FRAME. */
const IPIP_FRAME = Uint8Array.from([
  0x45, 0x00, 0x00, 0x40, 0x7d, 0x10, 0x40, 0x00, 0x40, 0x04, 0xcc, 0x41, 0xc0, 0xa8, 0x38, 0x0b,
  0xc0, 0xa8, 0x38, 0x0c,
  // inner IPv4 @20
  0x45, 0x00, 0x00, 0x2c, 0xb4, 0xe1, 0x40, 0x00, 0x40, 0x01, 0x6c, 0xff,
  0x0a, 0xf4, 0x01, 0x04, 0x0a, 0xf4, 0x02, 0x05, 0x08, 0x00, 0xfb, 0xb9, 0x1f, 0x2e, 0x00, 0x01,
  0x65, 0x5f, 0x2b, 0x67, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
]);

// ---------------------------------------------------------------------------
// Naive models of each check*'s one-sentence contract, for the random tests.
// ---------------------------------------------------------------------------
const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];

function modelIpv4(b: Uint8Array, len: number): number {
  if (len < 20) return abi.R_TRUNCATED;
  if (b[0] >> 4 !== 4) return abi.R_BAD_IP_HEADER;
  const hl = (b[0] & 15) * 4;
  if (hl < 20) return abi.R_BAD_IP_HEADER;
  const tl = be16(b, 2);
  if (tl < hl) return abi.R_BAD_IP_HEADER;
  if (tl > len) return abi.R_TRUNCATED;
  return abi.R_NONE;
}
function modelUdp(b: Uint8Array, len: number): number {
  if (len < 8) return abi.R_TRUNCATED;
  const l = be16(b, 4);
  if (l < 8) return abi.R_BAD_IP_HEADER;
  return l > len ? abi.R_TRUNCATED : abi.R_NONE;
}
function modelTcp(b: Uint8Array, len: number): number {
  if (len < 20) return abi.R_TRUNCATED;
  const hl = (b[12] >> 4) * 4;
  if (hl < 20) return abi.R_BAD_IP_HEADER;
  return hl > len ? abi.R_TRUNCATED : abi.R_NONE;
}
function modelArp(b: Uint8Array, len: number): number {
  if (len < 28) return abi.R_TRUNCATED;
  return be16(b, 0) === 1 && be16(b, 2) === 0x0800 && b[4] === 6 && b[5] === 4 ? abi.R_NONE : abi.R_ARP_IGNORED;
}
function modelVxlan(b: Uint8Array, len: number): number {
  if (len < 8 + 14) return abi.R_TRUNCATED;
  return b[0] & 0x08 ? abi.R_NONE : abi.R_VXLAN_BAD_FLAGS;
}
function modelIpip(b: Uint8Array, len: number): number {
  const r = modelIpv4(b, len);
  if (r !== abi.R_NONE) return r;
  if (b[9] !== 4) return abi.R_IPIP_BAD_PROTO;
  const hl = (b[0] & 15) * 4;
  return modelIpv4(b.subarray(hl), be16(b, 2) - hl);
}

// ---------------------------------------------------------------------------
// Harness: one instance per build, scratch memory in its packet slots.
// ---------------------------------------------------------------------------
const SCRATCH = 8 * 2048;
const GUARD = 16; // bytes of 0xA5 checked on both sides of every emit

class Scratch {
  readonly raw: RawExports;
  readonly base: number;
  constructor(kind: BuildKind) {
    this.raw = instantiateDataplane(kind);
    const r = this.raw.init(8, 2048, 16, 16, 16, 16, 16);
    if (r !== abi.OK) throw new Error(`init failed: ${r}`);
    this.base = this.raw.slotBase();
  }
  mem(): Uint8Array {
    return new Uint8Array(this.raw.memory.buffer);
  }
  /** Copy bytes into scratch at `off` (default: past a guard zone) and return the pointer. */
  put(bytes: Uint8Array, off = GUARD): number {
    if (off + bytes.length > SCRATCH) throw new Error("scratch overflow");
    this.mem().set(bytes, this.base + off);
    return this.base + off;
  }
  /** Fill guard + n + guard bytes with 0xA5 and return the pointer to the n bytes. */
  a5(n: number, off = GUARD): number {
    this.mem().fill(0xa5, this.base + off - GUARD, this.base + off + n + GUARD);
    return this.base + off;
  }
  get(p: number, n: number): Uint8Array {
    return this.mem().slice(p, p + n);
  }
  /** The guards around an a5() area are still 0xA5. */
  guardsIntact(p: number, n: number): boolean {
    const m = this.mem();
    for (let i = 1; i <= GUARD; i++) if (m[p - i] !== 0xa5 || m[p + n - 1 + i] !== 0xa5) return false;
    return true;
  }
  /** Run fn with `bytes` placed flush against the end of linear memory, so any
   *  read past bytes.length traps; restores what was there. */
  atEnd<T>(bytes: Uint8Array, fn: (p: number) => T): T {
    const m = this.mem();
    const p = m.length - bytes.length;
    const saved = m.slice(p);
    m.set(bytes, p);
    try {
      return fn(p);
    } finally {
      this.mem().set(saved, p);
    }
  }
}

const u32 = (x: number) => x >>> 0;
const withByte = (b: Uint8Array, i: number, v: number) => {
  const c = b.slice();
  c[i] = v;
  return c;
};
const with16 = (b: Uint8Array, i: number, v: number) => {
  const c = b.slice();
  c[i] = (v >> 8) & 255;
  c[i + 1] = v & 255;
  return c;
};
/** Recompute the IPv4 header checksum of a copy (naive RFC 1071). */
const fixIpCsum = (b: Uint8Array, at = 0) => {
  const c = b.slice();
  const hl = (c[at] & 15) * 4;
  c[at + 10] = c[at + 11] = 0;
  const s = inetChecksum(c.subarray(at, at + hl));
  c[at + 10] = s >> 8;
  c[at + 11] = s & 255;
  return c;
};

// Static sanity of the goldens themselves, independent of the module.
describe("golden frames are self-consistent (naive RFC 1071)", () => {
  it("IPv4 header checksums verify", () => {
    for (const [b, at] of [[VXLAN_FRAME, 0], [VXLAN_FRAME, VX.ip], [IP_OPTS, 0], [IP_FIRST_FRAG, 0], [TCP_SYN, 0], [TCP_RST, 0],
      [UDP_DNS, 0], [ICMP_FRAG_NEEDED, 8], [IPIP_FRAME, 0], [IPIP_FRAME, 20]] as const) {
      expect(inetChecksum(b.subarray(at, at + (b[at] & 15) * 4))).toBe(0);
    }
    expect(inetChecksum(VXLAN_FRAME.subarray(VX.icmp))).toBe(0);
    expect(inetChecksum(ICMP_FRAG_NEEDED)).toBe(0);
  });
});

for (const kind of ["debug", "release"] as const) {
  describe(`wire (${kind} build)`, () => {
    const s = new Scratch(kind);
    const w = s.raw;

    // ---- Ethernet ---------------------------------------------------------
    describe("Ethernet", () => {
      it("deconstructs the broadcast ARP frame and the VXLAN inner frame", () => {
        let p = s.put(ARP_FRAME);
        expect(w.checkEthernet(p, ARP_FRAME.length)).toBe(abi.R_NONE);
        expect(w.ethDst(p)).toBe(0xffffffffffffn);
        expect(w.ethSrc(p)).toBe(mac("0a:58:0a:f4:01:01"));
        expect(w.ethType(p)).toBe(0x0806);
        p = s.put(VXLAN_FRAME.subarray(VX.eth), GUARD + 1); // odd address
        expect(w.checkEthernet(p, VXLAN_FRAME.length - VX.eth)).toBe(abi.R_NONE);
        expect(w.ethDst(p)).toBe(mac("0a:58:0a:f4:02:05"));
        expect(w.ethSrc(p)).toBe(mac("0a:58:0a:f4:01:04"));
        expect(w.ethType(p)).toBe(0x0800);
      });
      it("emitEthernet writes all 14 bytes and nothing else", () => {
        const p = s.a5(14);
        w.emitEthernet(p, mac("0a:58:0a:f4:02:05"), mac("0a:58:0a:f4:01:04"), 0x0800);
        expect(s.get(p, 14)).toEqual(VXLAN_FRAME.subarray(VX.eth, VX.eth + 14));
        expect(s.guardsIntact(p, 14)).toBe(true);
      });
      it("the setters write one field each", () => {
        const p = s.a5(14);
        w.setEthDst(p, 0xffffffffffffn);
        w.setEthSrc(p, mac("0a:58:0a:f4:01:01"));
        w.setEthType(p, 0x0806);
        expect(s.get(p, 14)).toEqual(ARP_FRAME.subarray(0, 14));
        expect(s.guardsIntact(p, 14)).toBe(true);
      });
      it("truncated: every length below 14 is R_TRUNCATED; 14 and more pass", () => {
        for (let n = 0; n < 14; n++) expect(s.atEnd(ARP_FRAME.subarray(0, n), (p) => w.checkEthernet(p, n))).toBe(abi.R_TRUNCATED);
        for (let n = 14; n <= ARP_FRAME.length; n++) expect(s.atEnd(ARP_FRAME.subarray(0, n), (p) => w.checkEthernet(p, n))).toBe(abi.R_NONE);
      });
      it("macIsMulticast is the group bit of the first octet, for every first octet", () => {
        for (let o = 0; o < 256; o++) {
          const m = (BigInt(o) << 40n) | 0x0000_0000_0000n;
          expect(w.macIsMulticast(m)).toBe(o & 1);
          expect(w.macIsMulticast(m | 0xff_ffff_ffffn)).toBe(o & 1); // other octets never matter
        }
        expect(w.macIsMulticast(0xffffffffffffn)).toBe(1); // broadcast
        expect(w.macIsMulticast(mac("01:00:5e:00:00:fb"))).toBe(1); // IPv4 multicast (mDNS)
        expect(w.macIsMulticast(mac("33:33:00:00:00:01"))).toBe(1); // IPv6 multicast
        expect(w.macIsMulticast(mac("02:42:ac:11:00:02"))).toBe(0); // locally administered unicast
        expect(w.macIsMulticast(mac("00:00:00:00:00:00"))).toBe(0);
        expect(w.macIsMulticast(mac("fe:ff:ff:ff:ff:ff"))).toBe(0);
      });
      it("ldMac/stMac round-trip any 48-bit MAC in network order", () => {
        fc.assert(
          fc.property(fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }), (m) => {
            const p = s.a5(6, GUARD + 3);
            w.stMac(p, m);
            const bytes = s.get(p, 6);
            for (let i = 0; i < 6; i++) expect(bytes[i]).toBe(Number((m >> BigInt(40 - 8 * i)) & 0xffn));
            expect(s.guardsIntact(p, 6)).toBe(true);
            expect(w.ldMac(p)).toBe(m);
          }),
          { numRuns: 500 },
        );
      });
    });

    // ---- ARP --------------------------------------------------------------
    describe("ARP", () => {
      const ARP = ARP_FRAME.subarray(14);
      it("deconstructs the request", () => {
        const p = s.put(ARP);
        expect(w.checkArp(p, 28)).toBe(abi.R_NONE);
        expect(w.arpOper(p)).toBe(1);
        expect(w.arpSha(p)).toBe(mac("0a:58:0a:f4:01:01"));
        expect(u32(w.arpSpa(p))).toBe(ip("10.244.1.1"));
        expect(w.arpTha(p)).toBe(0n);
        expect(u32(w.arpTpa(p))).toBe(ip("10.244.1.4"));
      });
      it("emitArp writes all 28 bytes; with emitEthernet the whole 42-byte frame", () => {
        const p = s.a5(42);
        w.emitEthernet(p, 0xffffffffffffn, mac("0a:58:0a:f4:01:01"), 0x0806);
        w.emitArp(p + 14, 1, mac("0a:58:0a:f4:01:01"), ip("10.244.1.1"), 0n, ip("10.244.1.4"));
        expect(s.get(p, 42)).toEqual(ARP_FRAME);
        expect(s.guardsIntact(p, 42)).toBe(true);
      });
      it("a reply round-trips through emit and the accessors", () => {
        const p = s.a5(28);
        w.emitArp(p, 2, mac("0a:58:0a:f4:01:04"), ip("10.244.1.4"), mac("0a:58:0a:f4:01:01"), ip("10.244.1.1"));
        expect(s.guardsIntact(p, 28)).toBe(true);
        expect(w.checkArp(p, 28)).toBe(abi.R_NONE);
        expect(w.arpOper(p)).toBe(2);
        expect(w.arpSha(p)).toBe(mac("0a:58:0a:f4:01:04"));
        expect(u32(w.arpSpa(p))).toBe(ip("10.244.1.4"));
        expect(w.arpTha(p)).toBe(mac("0a:58:0a:f4:01:01"));
        expect(u32(w.arpTpa(p))).toBe(ip("10.244.1.1"));
      });
      it("truncated below 28 bytes; trailing Ethernet padding is fine", () => {
        for (let n = 0; n < 28; n++) expect(s.atEnd(ARP.subarray(0, n), (p) => w.checkArp(p, n))).toBe(abi.R_TRUNCATED);
        const padded = new Uint8Array(46); // 60-byte minimum frame minus the Ethernet header
        padded.set(ARP);
        for (let n = 28; n <= 46; n++) expect(s.atEnd(padded.subarray(0, n), (p) => w.checkArp(p, n))).toBe(abi.R_NONE);
      });
      it("anything but Ethernet/IPv4 is R_ARP_IGNORED", () => {
        const cases = [with16(ARP, 0, 6), with16(ARP, 0, 0), with16(ARP, 2, 0x86dd), with16(ARP, 2, 0x0806), withByte(ARP, 4, 8), withByte(ARP, 5, 16), withByte(ARP, 5, 0)];
        for (const c of cases) expect(s.atEnd(c, (p) => w.checkArp(p, 28))).toBe(abi.R_ARP_IGNORED);
        // The operation is not part of the check.
        expect(s.atEnd(with16(ARP, 6, 9), (p) => w.checkArp(p, 28))).toBe(abi.R_NONE);
      });
    });

    // ---- IPv4 -------------------------------------------------------------
    describe("IPv4", () => {
      it("deconstructs the VXLAN outer header", () => {
        const p = s.put(VXLAN_FRAME);
        expect(w.checkIpv4(p, VXLAN_FRAME.length)).toBe(abi.R_NONE);
        expect(w.ipVersion(p)).toBe(4);
        expect(w.ipHeaderLen(p)).toBe(20);
        expect(w.ipTos(p)).toBe(0);
        expect(w.ipTotalLen(p)).toBe(94);
        expect(w.ipId(p)).toBe(0x8a3c);
        expect(w.ipFragField(p)).toBe(0);
        expect(w.ipDontFragment(p)).toBe(0);
        expect(w.ipIsFragment(p)).toBe(0);
        expect(w.ipIsLaterFragment(p)).toBe(0);
        expect(w.ipTtl(p)).toBe(64);
        expect(w.ipProto(p)).toBe(17);
        expect(w.ipChecksum(p)).toBe(0xfeea);
        expect(u32(w.ipSrc(p))).toBe(ip("192.168.56.11"));
        expect(u32(w.ipDst(p))).toBe(ip("192.168.56.12"));
        expect(w.ipChecksumOk(p)).toBe(1);
      });
      it("deconstructs a header with options, MF and a fragment offset", () => {
        const p = s.put(IP_OPTS, GUARD + 1);
        expect(w.checkIpv4(p, IP_OPTS.length)).toBe(abi.R_NONE);
        expect(w.ipVersion(p)).toBe(4);
        expect(w.ipHeaderLen(p)).toBe(28);
        expect(w.ipTos(p)).toBe(0xb8);
        expect(w.ipTotalLen(p)).toBe(44);
        expect(w.ipId(p)).toBe(0xbeef);
        expect(w.ipFragField(p)).toBe(0x20b9);
        expect(w.ipFragField(p) & 0x1fff).toBe(185);
        expect(w.ipDontFragment(p)).toBe(0);
        expect(w.ipIsFragment(p)).toBe(1);
        expect(w.ipIsLaterFragment(p)).toBe(1);
        expect(w.ipTtl(p)).toBe(63);
        expect(w.ipProto(p)).toBe(17);
        expect(w.ipChecksum(p)).toBe(0xab37);
        expect(u32(w.ipSrc(p))).toBe(ip("172.16.0.1"));
        expect(u32(w.ipDst(p))).toBe(ip("172.16.0.2"));
        // The checksum covers the options: it verifies, and breaking an option byte breaks it.
        expect(w.ipChecksumOk(p)).toBe(1);
        s.mem()[p + 25] ^= 0x01;
        expect(w.ipChecksumOk(p)).toBe(0);
      });
      it("fragment predicates: first fragment, later fragment without MF, DF only", () => {
        let p = s.put(IP_FIRST_FRAG);
        expect([w.ipIsFragment(p), w.ipIsLaterFragment(p), w.ipDontFragment(p)]).toEqual([1, 0, 0]);
        p = s.put(with16(IP_OPTS, 6, 0x00b9)); // last fragment: offset, no MF
        expect([w.ipIsFragment(p), w.ipIsLaterFragment(p), w.ipDontFragment(p)]).toEqual([1, 1, 0]);
        p = s.put(TCP_SYN);
        expect([w.ipIsFragment(p), w.ipIsLaterFragment(p), w.ipDontFragment(p)]).toEqual([0, 0, 1]);
        p = s.put(with16(IP_OPTS, 6, 0x8000)); // reserved flag only: not a fragment
        expect([w.ipIsFragment(p), w.ipIsLaterFragment(p), w.ipDontFragment(p)]).toEqual([0, 0, 0]);
        p = s.put(with16(IP_OPTS, 6, 0x1fff)); // largest offset
        expect([w.ipIsFragment(p), w.ipIsLaterFragment(p)]).toEqual([1, 1]);
      });
      it("emitIpv4 writes the 20-byte header, checksum included, and nothing past it", () => {
        let p = s.a5(IP_FIRST_FRAG.length);
        w.emitIpv4(p, 0x02, 28, 0x1c46, 0x2000, 64, 17, ip("192.0.2.1"), ip("198.51.100.2"));
        expect(s.get(p, 20)).toEqual(IP_FIRST_FRAG.subarray(0, 20));
        expect(s.get(p + 20, 8)).toEqual(new Uint8Array(8).fill(0xa5));
        expect(s.guardsIntact(p, 28)).toBe(true);
        p = s.a5(20, GUARD + 1);
        w.emitIpv4(p, 0, 94, 0x8a3c, 0, 64, 17, ip("192.168.56.11"), ip("192.168.56.12"));
        expect(s.get(p, 20)).toEqual(VXLAN_FRAME.subarray(0, 20));
        expect(s.guardsIntact(p, 20)).toBe(true);
        p = s.a5(20);
        w.emitIpv4(p, 0, 0x2c, 0xb4e1, 0x4000, 64, 1, ip("10.244.1.4"), ip("10.244.2.5"));
        expect(s.get(p, 20)).toEqual(VXLAN_FRAME.subarray(VX.ip, VX.ip + 20));
      });
      it("ipFillChecksum / setters restore the golden bytes", () => {
        for (const g of [IP_OPTS, VXLAN_FRAME, IP_FIRST_FRAG]) {
          const p = s.put(with16(g, 10, 0xdead));
          expect(w.ipChecksumOk(p)).toBe(0);
          w.ipFillChecksum(p);
          expect(s.get(p, g.length)).toEqual(g);
        }
        const p = s.put(TCP_RST);
        w.setIpSrc(p, ip("10.244.1.4"));
        w.setIpDst(p, ip("10.244.2.5"));
        w.setIpChecksum(p, 0xe2b1);
        expect(s.get(p, 20)).toEqual(Uint8Array.from([...TCP_RST.subarray(0, 10), 0xe2, 0xb1, ...TCP_SYN.subarray(12, 20)]));
      });
      it("truncated: every length below the total length is R_TRUNCATED", () => {
        for (const g of [IP_OPTS, VXLAN_FRAME, IP_FIRST_FRAG]) {
          for (let n = 0; n < g.length; n++) expect(s.atEnd(g.subarray(0, n), (p) => w.checkIpv4(p, n))).toBe(abi.R_TRUNCATED);
        }
      });
      it("overlong: bytes past the total length (Ethernet padding) are fine", () => {
        const padded = new Uint8Array(IP_FIRST_FRAG.length + 40);
        padded.set(IP_FIRST_FRAG);
        for (let n = IP_FIRST_FRAG.length; n <= padded.length; n++) expect(s.atEnd(padded.subarray(0, n), (p) => w.checkIpv4(p, n))).toBe(abi.R_NONE);
      });
      it("version other than 4 is R_BAD_IP_HEADER", () => {
        for (let v = 0; v < 16; v++) {
          if (v === 4) continue;
          const b = fixIpCsum(withByte(IP_OPTS, 0, (v << 4) | 7));
          expect(s.atEnd(b, (p) => w.checkIpv4(p, b.length))).toBe(abi.R_BAD_IP_HEADER);
        }
      });
      it("IHL < 5, IHL*4 > total length, total length < 20 are R_BAD_IP_HEADER", () => {
        for (let ihl = 0; ihl < 5; ihl++) expect(s.atEnd(withByte(IP_OPTS, 0, 0x40 | ihl), (p) => w.checkIpv4(p, 44))).toBe(abi.R_BAD_IP_HEADER);
        // IHL 15 (60 bytes) inside a 44-byte datagram: the header outruns the datagram.
        expect(s.atEnd(withByte(IP_OPTS, 0, 0x4f), (p) => w.checkIpv4(p, 44))).toBe(abi.R_BAD_IP_HEADER);
        // IHL 7 but total length 27: same.
        expect(s.atEnd(with16(IP_OPTS, 2, 27), (p) => w.checkIpv4(p, 44))).toBe(abi.R_BAD_IP_HEADER);
        for (const tl of [0, 1, 19]) expect(s.atEnd(with16(IP_FIRST_FRAG, 2, tl), (p) => w.checkIpv4(p, 28))).toBe(abi.R_BAD_IP_HEADER);
        // Header-only datagrams are well formed: total length == IHL*4.
        expect(s.atEnd(with16(IP_OPTS, 2, 28), (p) => w.checkIpv4(p, 28))).toBe(abi.R_NONE);
        expect(s.atEnd(with16(IP_FIRST_FRAG, 2, 20), (p) => w.checkIpv4(p, 20))).toBe(abi.R_NONE);
      });
      it("total length > buffer is R_TRUNCATED, up to 65535", () => {
        for (const tl of [29, 1500, 65535]) expect(s.atEnd(with16(IP_FIRST_FRAG, 2, tl), (p) => w.checkIpv4(p, 28))).toBe(abi.R_TRUNCATED);
        // Options claimed (IHL 15) and total length 60, but only 28 bytes: truncated, and no read past them.
        const b = with16(withByte(IP_FIRST_FRAG, 0, 0x4f), 2, 60);
        expect(s.atEnd(b, (p) => w.checkIpv4(p, 28))).toBe(abi.R_TRUNCATED);
      });
      it("checkIpv4 agrees with the naive model on random headers (no read past len)", () => {
        fc.assert(
          fc.property(
            fc.constantFrom(0x45, 0x46, 0x4f, 0x44, 0x40, 0x65, 0x35, 0x47),
            fc.integer({ min: 0, max: 90 }),
            fc.uint8Array({ minLength: 0, maxLength: 80 }),
            (vi, tl, rest) => {
              const b = new Uint8Array(rest.length);
              b.set(rest);
              if (b.length > 0) b[0] = vi;
              if (b.length > 3) { b[2] = tl >> 8; b[3] = tl & 255; }
              expect(s.atEnd(b, (p) => w.checkIpv4(p, b.length))).toBe(modelIpv4(b, b.length));
            },
          ),
          { numRuns: 3000 },
        );
      });
      it("ipDecTtl: TTL - 1, checksum equal to a full recompute, nothing else touched", () => {
        for (const g of [IP_OPTS, VXLAN_FRAME, IP_FIRST_FRAG]) {
          const p = s.put(g);
          w.ipDecTtl(p);
          const want = fixIpCsum(withByte(g, 8, g[8] - 1));
          expect(s.get(p, g.length)).toEqual(want);
          expect(w.ipChecksumOk(p)).toBe(1);
        }
      });
      it("ipSetTos: new TOS, checksum equal to a full recompute, nothing else touched", () => {
        for (const tos of [0x00, 0x01, 0x02, 0x03, 0xb8, 0xb9, 0xfc, 0xff]) {
          const p = s.put(IP_OPTS);
          w.ipSetTos(p, tos);
          expect(s.get(p, IP_OPTS.length)).toEqual(fixIpCsum(withByte(IP_OPTS, 1, tos)));
        }
      });
      it("ipDecTtl and ipSetTos match a full recompute on random headers with options", () => {
        fc.assert(
          fc.property(
            fc.integer({ min: 5, max: 15 }),
            fc.uint8Array({ minLength: 60, maxLength: 60 }),
            fc.integer({ min: 1, max: 255 }),
            fc.integer({ min: 0, max: 255 }),
            fc.integer({ min: 0, max: 3 }),
            (ihl, rnd, ttl, tos, off) => {
              const hl = ihl * 4;
              let h = rnd.slice(0, hl);
              h[0] = 0x40 | ihl;
              h[2] = 0;
              h[3] = hl;
              h[8] = ttl;
              h = fixIpCsum(h);
              let p = s.put(h, GUARD + off);
              w.ipDecTtl(p);
              expect(s.get(p, hl)).toEqual(fixIpCsum(withByte(h, 8, ttl - 1)));
              p = s.put(h, GUARD + off);
              w.ipSetTos(p, tos);
              expect(s.get(p, hl)).toEqual(fixIpCsum(withByte(h, 1, tos)));
              // Chained: a router that rewrites ECN then forwards.
              w.ipDecTtl(p);
              expect(s.get(p, hl)).toEqual(fixIpCsum(withByte(withByte(h, 1, tos), 8, ttl - 1)));
            },
          ),
          { numRuns: 3000 },
        );
      });
      it("ipIsMartian at the edges of 0/8, 127/8 and 224/3", () => {
        const yes = ["0.0.0.0", "0.0.0.1", "0.255.255.255", "127.0.0.0", "127.0.0.1", "127.255.255.255", "224.0.0.0", "224.0.0.1",
          "239.255.255.255", "240.0.0.0", "254.255.255.255", "255.255.255.254", "255.255.255.255"];
        const no = ["1.0.0.0", "1.1.1.1", "10.0.0.0", "10.255.255.255", "126.255.255.255", "128.0.0.0", "169.254.0.1", "100.64.0.1",
          "172.16.0.1", "192.168.0.0", "198.18.0.1", "223.255.255.255", "192.0.2.255"];
        for (const a of yes) expect([a, w.ipIsMartian(ip(a))]).toEqual([a, 1]);
        for (const a of no) expect([a, w.ipIsMartian(ip(a))]).toEqual([a, 0]);
        // Only the first octet matters.
        for (let o = 0; o < 256; o++) {
          const m = o === 0 || o === 127 || o >= 224 ? 1 : 0;
          expect(w.ipIsMartian(((o << 24) | 0x00ffffff) >>> 0)).toBe(m);
          expect(w.ipIsMartian((o << 24) >>> 0)).toBe(m);
        }
      });
    });

    // ---- UDP --------------------------------------------------------------
    describe("UDP", () => {
      const SEG = UDP_DNS.subarray(20);
      it("deconstructs the DNS query, checksum verified over the pseudo header", () => {
        const p = s.put(UDP_DNS);
        expect(w.checkIpv4(p, UDP_DNS.length)).toBe(abi.R_NONE);
        const u = p + w.ipHeaderLen(p);
        expect(w.checkUdp(u, w.ipTotalLen(p) - 20)).toBe(abi.R_NONE);
        expect(w.udpSrcPort(u)).toBe(40000);
        expect(w.udpDstPort(u)).toBe(53);
        expect(w.udpLength(u)).toBe(32);
        expect(w.udpChecksum(u)).toBe(0x8461);
        expect(w.csumFinish(w.csumPartial(u, 32, w.csumPseudo(ip("10.244.1.4"), ip("10.96.0.10"), 17, 32)))).toBe(0);
      });
      it("deconstructs the VXLAN outer UDP header (checksum zero = none)", () => {
        const p = s.put(VXLAN_FRAME) + VX.udp;
        expect(w.checkUdp(p, VXLAN_FRAME.length - VX.udp)).toBe(abi.R_NONE);
        expect([w.udpSrcPort(p), w.udpDstPort(p), w.udpLength(p), w.udpChecksum(p)]).toEqual([0xd5a2, 4789, 74, 0]);
      });
      it("emitUdp writes all 8 bytes and nothing else", () => {
        let p = s.a5(8);
        w.emitUdp(p, 40000, 53, 32, 0x8461);
        expect(s.get(p, 8)).toEqual(SEG.subarray(0, 8));
        expect(s.guardsIntact(p, 8)).toBe(true);
        p = s.a5(8, GUARD + 1);
        w.emitUdp(p, 0xd5a2, 4789, 74, 0);
        expect(s.get(p, 8)).toEqual(VXLAN_FRAME.subarray(VX.udp, VX.udp + 8));
        expect(s.guardsIntact(p, 8)).toBe(true);
      });
      it("emit then checksum with csumPseudo/csumPartial/csumFinish rebuilds the golden segment", () => {
        const p = s.a5(32);
        s.mem().set(SEG.subarray(8), p + 8);
        w.emitUdp(p, 40000, 53, 32, 0);
        const c = w.csumFinish(w.csumPartial(p, 32, w.csumPseudo(ip("10.244.1.4"), ip("10.96.0.10"), 17, 32)));
        w.st16(p + 6, c);
        expect(s.get(p, 32)).toEqual(SEG);
      });
      it("truncated below 8 bytes or below the length field; trailing bytes are fine", () => {
        for (let n = 0; n < 32; n++) expect(s.atEnd(SEG.subarray(0, n), (p) => w.checkUdp(p, n))).toBe(abi.R_TRUNCATED);
        const padded = new Uint8Array(48);
        padded.set(SEG);
        for (let n = 32; n <= 48; n++) expect(s.atEnd(padded.subarray(0, n), (p) => w.checkUdp(p, n))).toBe(abi.R_NONE);
      });
      it("length field < 8 is R_BAD_IP_HEADER; == 8 (empty payload) is fine", () => {
        for (let l = 0; l < 8; l++) expect(s.atEnd(with16(SEG, 4, l), (p) => w.checkUdp(p, 32))).toBe(abi.R_BAD_IP_HEADER);
        expect(s.atEnd(with16(SEG, 4, 8), (p) => w.checkUdp(p, 32))).toBe(abi.R_NONE);
        expect(s.atEnd(with16(SEG, 4, 33), (p) => w.checkUdp(p, 32))).toBe(abi.R_TRUNCATED);
        expect(s.atEnd(with16(SEG, 4, 0xffff), (p) => w.checkUdp(p, 32))).toBe(abi.R_TRUNCATED);
      });
      it("checkUdp agrees with the naive model on random bytes", () => {
        fc.assert(
          fc.property(fc.integer({ min: 0, max: 40 }), fc.uint8Array({ minLength: 0, maxLength: 40 }), (l, gen) => {
            const b = gen.slice();
            if (b.length > 5) { b[4] = l >> 8; b[5] = l & 255; }
            expect(s.atEnd(b, (p) => w.checkUdp(p, b.length))).toBe(modelUdp(b, b.length));
          }),
          { numRuns: 2000 },
        );
      });
    });

    // ---- TCP --------------------------------------------------------------
    describe("TCP", () => {
      const SYN = TCP_SYN.subarray(20);
      const RST = TCP_RST.subarray(20);
      it("deconstructs the SYN with options", () => {
        const p = s.put(TCP_SYN, GUARD + 3);
        expect(w.checkIpv4(p, TCP_SYN.length)).toBe(abi.R_NONE);
        expect(w.ipProto(p)).toBe(6);
        const t = p + 20;
        expect(w.checkTcp(t, 40)).toBe(abi.R_NONE);
        expect(w.tcpSrcPort(t)).toBe(41970);
        expect(w.tcpDstPort(t)).toBe(80);
        expect(u32(w.tcpSeq(t))).toBe(0x6b8b4567);
        expect(u32(w.tcpAck(t))).toBe(0);
        expect(w.tcpHeaderLen(t)).toBe(40);
        expect(w.tcpFlags(t)).toBe(0x02);
        expect(w.tcpWindow(t)).toBe(0xfaf0);
        expect(w.tcpChecksum(t)).toBe(0x9c9a);
        // Options area [t+20, t+40): MSS first.
        expect([w.ld8(t + 20), w.ld8(t + 21), w.ld16(t + 22)]).toEqual([2, 4, 1460]);
        expect(w.csumFinish(w.csumPartial(t, 40, w.csumPseudo(ip("10.244.1.4"), ip("10.244.2.5"), 6, 40)))).toBe(0);
      });
      it("deconstructs the RST|ACK", () => {
        const t = s.put(RST);
        expect(w.checkTcp(t, 20)).toBe(abi.R_NONE);
        expect(w.tcpHeaderLen(t)).toBe(20);
        expect(w.tcpFlags(t)).toBe(0x14);
        expect(u32(w.tcpAck(t))).toBe(0x6b8b4568);
        expect(w.tcpWindow(t)).toBe(0);
      });
      it("emitTcp writes all 20 bytes and nothing else", () => {
        const t = s.a5(20, GUARD + 1);
        w.emitTcp(t, 80, 41970, 0, 0x6b8b4568, 0x14, 0, 0x41aa, 0);
        expect(s.get(t, 20)).toEqual(RST);
        expect(s.guardsIntact(t, 20)).toBe(true);
      });
      it("emitIpv4 + emitTcp + pseudo-header checksum rebuild the whole RST packet", () => {
        const p = s.a5(40);
        w.emitIpv4(p, 0, 40, 0, 0x4000, 64, 6, ip("10.244.2.5"), ip("10.244.1.4"));
        w.emitTcp(p + 20, 80, 41970, 0, 0x6b8b4568, 0x14, 0, 0, 0);
        w.st16(p + 36, w.csumFinish(w.csumPartial(p + 20, 20, w.csumPseudo(ip("10.244.2.5"), ip("10.244.1.4"), 6, 20))));
        expect(s.get(p, 40)).toEqual(TCP_RST);
        expect(s.guardsIntact(p, 40)).toBe(true);
      });
      it("truncated below 20 bytes or below the data offset", () => {
        for (let n = 0; n < 40; n++) expect(s.atEnd(SYN.subarray(0, n), (p) => w.checkTcp(p, n))).toBe(abi.R_TRUNCATED);
        for (let n = 0; n < 20; n++) expect(s.atEnd(RST.subarray(0, n), (p) => w.checkTcp(p, n))).toBe(abi.R_TRUNCATED);
      });
      it("overlong: payload past the header is fine", () => {
        const b = new Uint8Array(100);
        b.set(SYN);
        for (let n = 40; n <= 100; n++) expect(s.atEnd(b.subarray(0, n), (p) => w.checkTcp(p, n))).toBe(abi.R_NONE);
      });
      it("data offset < 5 is R_BAD_IP_HEADER; > len is R_TRUNCATED; reserved bits ignored", () => {
        for (let d = 0; d < 5; d++) expect(s.atEnd(withByte(SYN, 12, d << 4), (p) => w.checkTcp(p, 40))).toBe(abi.R_BAD_IP_HEADER);
        for (let d = 11; d < 16; d++) expect(s.atEnd(withByte(SYN, 12, d << 4), (p) => w.checkTcp(p, 40))).toBe(abi.R_TRUNCATED);
        const b = withByte(SYN, 12, 0xaf); // data offset 10, the 4 reserved bits set
        expect(s.atEnd(b, (p) => w.checkTcp(p, 40))).toBe(abi.R_NONE);
        const p = s.put(b);
        expect(w.tcpHeaderLen(p)).toBe(40);
      });
      it("checkTcp agrees with the naive model on random bytes", () => {
        fc.assert(
          fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 0, maxLength: 64 }), (d, gen) => {
            const b = gen.slice();
            if (b.length > 12) b[12] = d;
            expect(s.atEnd(b, (p) => w.checkTcp(p, b.length))).toBe(modelTcp(b, b.length));
          }),
          { numRuns: 2000 },
        );
      });
    });

    // ---- ICMP -------------------------------------------------------------
    describe("ICMP", () => {
      const ECHO = VXLAN_FRAME.subarray(VX.icmp);
      it("deconstructs the echo request", () => {
        const p = s.put(ECHO, GUARD + 1);
        expect(w.checkIcmp(p, ECHO.length)).toBe(abi.R_NONE);
        expect([w.icmpType(p), w.icmpCode(p), w.icmpChecksum(p), w.icmpId(p), w.icmpSeq(p)]).toEqual([8, 0, 0xfbb9, 0x1f2e, 1]);
        expect(w.checksumOk(p, ECHO.length)).toBe(1);
        expect(w.icmpIsError(w.icmpType(p))).toBe(0);
      });
      it("deconstructs fragmentation-needed and the datagram it quotes", () => {
        const p = s.put(ICMP_FRAG_NEEDED);
        expect(w.checkIcmp(p, ICMP_FRAG_NEEDED.length)).toBe(abi.R_NONE);
        expect([w.icmpType(p), w.icmpCode(p), w.icmpChecksum(p), w.icmpMtu(p)]).toEqual([3, 4, 0xa21b, 1450]);
        expect(w.icmpIsError(w.icmpType(p))).toBe(1);
        expect(w.checksumOk(p, ICMP_FRAG_NEEDED.length)).toBe(1);
        // The quoted header announces 1500 bytes but only 28 are quoted: a
        // whole-datagram check rightly calls that truncated.
        const q = p + 8;
        expect(w.checkIpv4(q, 28)).toBe(abi.R_TRUNCATED);
        expect([w.ipTotalLen(q), w.ipProto(q), u32(w.ipSrc(q)), u32(w.ipDst(q)), w.ipChecksumOk(q)]).toEqual([1500, 6, ip("10.244.1.4"), ip("10.244.2.5"), 1]);
        expect([w.tcpSrcPort(q + 20), w.tcpDstPort(q + 20)]).toEqual([41970, 80]);
      });
      it("emitIcmpHeader writes 8 bytes with a zero checksum; checksum() completes the golden", () => {
        let p = s.a5(ECHO.length);
        w.emitIcmpHeader(p, 8, 0, 0x1f2e, 1);
        expect(s.get(p, 8)).toEqual(Uint8Array.from([8, 0, 0, 0, 0x1f, 0x2e, 0, 1]));
        expect(s.get(p + 8, ECHO.length - 8)).toEqual(new Uint8Array(ECHO.length - 8).fill(0xa5));
        s.mem().set(ECHO.subarray(8), p + 8);
        w.st16(p + 2, w.checksum(p, ECHO.length));
        expect(s.get(p, ECHO.length)).toEqual(ECHO);
        expect(s.guardsIntact(p, ECHO.length)).toBe(true);

        p = s.a5(ICMP_FRAG_NEEDED.length, GUARD + 1);
        w.emitIcmpHeader(p, 3, 4, 0, 1450);
        s.mem().set(ICMP_FRAG_NEEDED.subarray(8), p + 8);
        w.st16(p + 2, w.checksum(p, ICMP_FRAG_NEEDED.length));
        expect(s.get(p, ICMP_FRAG_NEEDED.length)).toEqual(ICMP_FRAG_NEEDED);
        expect(s.guardsIntact(p, ICMP_FRAG_NEEDED.length)).toBe(true);
      });
      it("truncated below 8 bytes; 8 and more pass", () => {
        for (let n = 0; n < 8; n++) expect(s.atEnd(ECHO.subarray(0, n), (p) => w.checkIcmp(p, n))).toBe(abi.R_TRUNCATED);
        for (let n = 8; n <= ECHO.length; n++) expect(s.atEnd(ECHO.subarray(0, n), (p) => w.checkIcmp(p, n))).toBe(abi.R_NONE);
      });
      it("icmpIsError is exactly {3, 4, 5, 11, 12} over all 256 types", () => {
        for (let t = 0; t < 256; t++) expect([t, w.icmpIsError(t)]).toEqual([t, [3, 4, 5, 11, 12].includes(t) ? 1 : 0]);
      });
    });

    // ---- VXLAN ------------------------------------------------------------
    describe("VXLAN", () => {
      const VXH = VXLAN_FRAME.subarray(VX.vxlan);
      it("deconstructs the whole kernel frame layer by layer", () => {
        const p = s.put(VXLAN_FRAME);
        const n = VXLAN_FRAME.length;
        expect(w.checkIpv4(p, n)).toBe(abi.R_NONE);
        expect(w.ipProto(p)).toBe(17);
        expect(w.ipChecksumOk(p)).toBe(1);
        expect(w.checkUdp(p + VX.udp, n - VX.udp)).toBe(abi.R_NONE);
        expect(w.udpDstPort(p + VX.udp)).toBe(4789);
        expect(w.checkVxlan(p + VX.vxlan, n - VX.vxlan)).toBe(abi.R_NONE);
        expect(w.vxlanFlags(p + VX.vxlan)).toBe(0x08);
        expect(u32(w.vxlanVni(p + VX.vxlan))).toBe(100);
        expect(w.checkEthernet(p + VX.eth, n - VX.eth)).toBe(abi.R_NONE);
        expect(w.ethType(p + VX.eth)).toBe(0x0800);
        expect(w.checkIpv4(p + VX.ip, n - VX.ip)).toBe(abi.R_NONE);
        expect(w.ipProto(p + VX.ip)).toBe(1);
        expect(w.ipChecksumOk(p + VX.ip)).toBe(1);
        expect(w.checkIcmp(p + VX.icmp, n - VX.icmp)).toBe(abi.R_NONE);
        expect(w.checksumOk(p + VX.icmp, n - VX.icmp)).toBe(1);
        expect(VX.ip).toBe(w.VXLAN_OVERHEAD.value);
      });
      it("emitVxlan writes both words; the emitters together rebuild the kernel frame", () => {
        let p = s.a5(8, GUARD + 1);
        w.emitVxlan(p, 100);
        expect(s.get(p, 8)).toEqual(VXH.subarray(0, 8));
        expect(s.guardsIntact(p, 8)).toBe(true);

        const n = VXLAN_FRAME.length;
        p = s.a5(n);
        w.emitIpv4(p, 0, n, 0x8a3c, 0, 64, 17, ip("192.168.56.11"), ip("192.168.56.12"));
        w.emitUdp(p + VX.udp, 0xd5a2, 4789, n - VX.udp, 0);
        w.emitVxlan(p + VX.vxlan, 100);
        w.emitEthernet(p + VX.eth, mac("0a:58:0a:f4:02:05"), mac("0a:58:0a:f4:01:04"), 0x0800);
        w.emitIpv4(p + VX.ip, 0, n - VX.ip, 0xb4e1, 0x4000, 64, 1, ip("10.244.1.4"), ip("10.244.2.5"));
        w.emitIcmpHeader(p + VX.icmp, 8, 0, 0x1f2e, 1);
        s.mem().set(VXLAN_FRAME.subarray(VX.icmp + 8), p + VX.icmp + 8);
        w.st16(p + VX.icmp + 2, w.checksum(p + VX.icmp, n - VX.icmp));
        expect(s.get(p, n)).toEqual(VXLAN_FRAME);
        expect(s.guardsIntact(p, n)).toBe(true);
      });
      it("emitVxlan keeps the VNI to 24 bits; extremes round-trip", () => {
        for (const [vni, want] of [[0, 0], [1, 1], [0xffffff, 0xffffff], [0x1000064, 100], [0xffffffff, 0xffffff]]) {
          const p = s.a5(8);
          w.emitVxlan(p, vni >>> 0);
          const b = s.get(p, 8);
          expect(Array.from(b)).toEqual([8, 0, 0, 0, (want >> 16) & 255, (want >> 8) & 255, want & 255, 0]);
          expect(u32(w.vxlanVni(p))).toBe(want);
        }
      });
      it("truncated: VXLAN header plus inner Ethernet header (22 bytes) are required", () => {
        for (let n = 0; n < 22; n++) expect(s.atEnd(VXH.subarray(0, n), (p) => w.checkVxlan(p, n))).toBe(abi.R_TRUNCATED);
        // Truncation is reported before the flags are looked at.
        expect(s.atEnd(withByte(VXH, 0, 0).subarray(0, 21), (p) => w.checkVxlan(p, 21))).toBe(abi.R_TRUNCATED);
        for (let n = 22; n <= VXH.length; n++) expect(s.atEnd(VXH.subarray(0, n), (p) => w.checkVxlan(p, n))).toBe(abi.R_NONE);
      });
      it("no I flag is R_VXLAN_BAD_FLAGS; reserved bits and bytes are ignored on receipt", () => {
        for (const f of [0x00, 0x01, 0x80, 0xf7]) expect(s.atEnd(withByte(VXH, 0, f), (p) => w.checkVxlan(p, VXH.length))).toBe(abi.R_VXLAN_BAD_FLAGS);
        const noisy = VXH.slice();
        noisy[0] = 0xff;
        noisy[1] = noisy[2] = noisy[3] = 0xff;
        noisy[7] = 0xff;
        expect(s.atEnd(noisy, (p) => w.checkVxlan(p, noisy.length))).toBe(abi.R_NONE);
        const p = s.put(noisy);
        expect(u32(w.vxlanVni(p))).toBe(100);
        expect(w.vxlanFlags(p)).toBe(0xff);
      });
      it("checkVxlan agrees with the naive model on random bytes", () => {
        fc.assert(
          fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), (b) => {
            expect(s.atEnd(b, (p) => w.checkVxlan(p, b.length))).toBe(modelVxlan(b, b.length));
          }),
          { numRuns: 2000 },
        );
      });
    });

    // ---- IPIP -------------------------------------------------------------
    describe("IPIP", () => {
      const INNER = IPIP_FRAME.subarray(20);
      it("deconstructs the kernel frame", () => {
        const p = s.put(IPIP_FRAME, GUARD + 1);
        expect(w.checkIpip(p, IPIP_FRAME.length)).toBe(abi.R_NONE);
        expect(w.ipProto(p)).toBe(4);
        expect(w.ipDontFragment(p)).toBe(1);
        expect(w.ipipInnerOffset(p)).toBe(20);
        const q = p + w.ipipInnerOffset(p);
        expect([w.ipProto(q), u32(w.ipSrc(q)), u32(w.ipDst(q)), w.ipTotalLen(q), w.ipChecksumOk(q)]).toEqual([1, ip("10.244.1.4"), ip("10.244.2.5"), 44, 1]);
      });
      it("emitIpv4 + the inner datagram rebuild the kernel frame", () => {
        const p = s.a5(IPIP_FRAME.length);
        w.emitIpv4(p, 0, 64, 0x7d10, 0x4000, 64, 4, ip("192.168.56.11"), ip("192.168.56.12"));
        s.mem().set(INNER, p + 20);
        expect(s.get(p, IPIP_FRAME.length)).toEqual(IPIP_FRAME);
        expect(s.guardsIntact(p, IPIP_FRAME.length)).toBe(true);
      });
      it("truncated at every length; trailing bytes past the outer total length are fine", () => {
        for (let n = 0; n < IPIP_FRAME.length; n++) expect(s.atEnd(IPIP_FRAME.subarray(0, n), (p) => w.checkIpip(p, n))).toBe(abi.R_TRUNCATED);
        const padded = new Uint8Array(IPIP_FRAME.length + 20);
        padded.set(IPIP_FRAME);
        for (let n = IPIP_FRAME.length; n <= padded.length; n++) expect(s.atEnd(padded.subarray(0, n), (p) => w.checkIpip(p, n))).toBe(abi.R_NONE);
      });
      it("outer protocol other than 4 is R_IPIP_BAD_PROTO", () => {
        for (const proto of [0, 1, 6, 17, 41, 47, 94, 255]) {
          const b = fixIpCsum(withByte(IPIP_FRAME, 9, proto));
          expect(s.atEnd(b, (p) => w.checkIpip(p, b.length))).toBe(abi.R_IPIP_BAD_PROTO);
        }
      });
      it("outer header errors come first", () => {
        expect(s.atEnd(withByte(IPIP_FRAME, 0, 0x65), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
        expect(s.atEnd(withByte(IPIP_FRAME, 0, 0x44), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
        // Bad outer header and bad protocol: the header error wins.
        expect(s.atEnd(withByte(withByte(IPIP_FRAME, 0, 0x65), 9, 17), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
      });
      it("the inner header is checked against the outer payload, not the buffer", () => {
        // Inner version 6, inner IHL 4, inner IHL > inner total length.
        expect(s.atEnd(withByte(IPIP_FRAME, 20, 0x65), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
        expect(s.atEnd(withByte(IPIP_FRAME, 20, 0x44), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
        expect(s.atEnd(with16(IPIP_FRAME, 22, 19), (p) => w.checkIpip(p, 64))).toBe(abi.R_BAD_IP_HEADER);
        // Inner total length one past the outer payload, though the buffer has the byte.
        const longer = new Uint8Array(80);
        longer.set(with16(IPIP_FRAME, 22, 45));
        expect(s.atEnd(longer, (p) => w.checkIpip(p, 80))).toBe(abi.R_TRUNCATED);
        // Outer payload shorter than an inner header (outer total length 39, inner claims less too).
        let b = fixIpCsum(with16(with16(IPIP_FRAME, 2, 39), 22, 19));
        expect(s.atEnd(b, (p) => w.checkIpip(p, 64))).toBe(abi.R_TRUNCATED);
        // Outer total length == outer header: no inner header at all.
        b = fixIpCsum(with16(IPIP_FRAME, 2, 20));
        expect(s.atEnd(b, (p) => w.checkIpip(p, 64))).toBe(abi.R_TRUNCATED);
        // Inner shorter than the outer payload (inner padding) is accepted.
        b = with16(IPIP_FRAME, 22, 40);
        expect(s.atEnd(b, (p) => w.checkIpip(p, 64))).toBe(abi.R_NONE);
      });
      it("outer options move the inner header", () => {
        const opt = Uint8Array.from([0x94, 0x04, 0x00, 0x00]);
        const b = fixIpCsum(Uint8Array.from([0x46, ...IPIP_FRAME.subarray(1, 2), 0x00, 0x44, ...IPIP_FRAME.subarray(4, 20), ...opt, ...INNER]));
        expect(s.atEnd(b, (p) => w.checkIpip(p, b.length))).toBe(abi.R_NONE);
        const p = s.put(b);
        expect(w.ipipInnerOffset(p)).toBe(24);
        expect(w.ipProto(p + 24)).toBe(1);
      });
      it("checkIpip agrees with the naive model on random frames", () => {
        fc.assert(
          fc.property(
            fc.constantFrom(0x45, 0x46, 0x44, 0x55),
            fc.integer({ min: 0, max: 90 }),
            fc.constantFrom(4, 4, 4, 17),
            fc.constantFrom(0x45, 0x46, 0x44, 0x65),
            fc.integer({ min: 0, max: 70 }),
            fc.uint8Array({ minLength: 0, maxLength: 90 }),
            (vi, tl, proto, ivi, itl, gen) => {
              const b = gen.slice();
              const set = (i: number, v: number) => { if (i < b.length) b[i] = v; };
              set(0, vi); set(2, tl >> 8); set(3, tl & 255); set(9, proto);
              const hl = (vi & 15) * 4;
              set(hl, ivi); set(hl + 2, itl >> 8); set(hl + 3, itl & 255);
              expect(s.atEnd(b, (p) => w.checkIpip(p, b.length))).toBe(modelIpip(b, b.length));
            },
          ),
          { numRuns: 3000 },
        );
      });
    });
  });
}
