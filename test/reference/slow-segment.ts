// The naive twins of assembly/offload/tso.ts and gro.ts: the same rules,
// written over Uint8Arrays field by field, with the RFC 1071 sum of
// test/helpers/packets.ts. Obviously correct, slow; property tests feed both
// the same packets and compare every byte.
import fc from "fast-check";
import { inetChecksum, ipv4, tcp } from "../helpers/packets.js";

export const VNET_HDR_LEN = 10;
export const F_NEEDS_CSUM = 1;
export const F_DATA_VALID = 2;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
export const GSO_ECN = 0x80;

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;
export const ECE = 0x40;
export const CWR = 0x80;

export interface VnetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function vnetBytes(h: VnetHdr): Uint8Array {
  const b = new Uint8Array(VNET_HDR_LEN);
  const dv = new DataView(b.buffer);
  b[0] = h.flags;
  b[1] = h.gsoType;
  dv.setUint16(2, h.hdrLen, true);
  dv.setUint16(4, h.gsoSize, true);
  dv.setUint16(6, h.csumStart, true);
  dv.setUint16(8, h.csumOffset, true);
  return b;
}

export function parseVnet(b: Uint8Array): VnetHdr {
  const dv = new DataView(b.buffer, b.byteOffset, VNET_HDR_LEN);
  return { flags: b[0], gsoType: b[1], hdrLen: dv.getUint16(2, true), gsoSize: dv.getUint16(4, true), csumStart: dv.getUint16(6, true), csumOffset: dv.getUint16(8, true) };
}

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const be32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const put16 = (b: Uint8Array, o: number, v: number) => {
  b[o] = (v >> 8) & 255;
  b[o + 1] = v & 255;
};
const put32 = (b: Uint8Array, o: number, v: number) => {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
};

/** Sum of the IPv4 pseudo header in big-endian words, unfolded (an initial
 *  value for inetChecksum). */
export function pseudoSum(ip: Uint8Array, l4Len: number): number {
  return be16(ip, 12) + be16(ip, 14) + be16(ip, 16) + be16(ip, 18) + ip[9] + l4Len;
}

/** The folded pseudo-header sum, as the kernel leaves it in the checksum
 *  field of a CHECKSUM_PARTIAL (NEEDS_CSUM) packet. */
export function pseudoPartial(ip: Uint8Array, l4Len: number): number {
  return ~inetChecksum(new Uint8Array(0), pseudoSum(ip, l4Len)) & 0xffff;
}

/** IPv4 header checksum and TCP checksum (with pseudo header) both verify. */
export function ipv4TcpChecksumsOk(p: Uint8Array): boolean {
  const ihl = (p[0] & 15) * 4;
  const tot = be16(p, 2);
  return inetChecksum(p.subarray(0, ihl)) === 0 && inetChecksum(p.subarray(ihl, tot), pseudoSum(p, tot - ihl)) === 0;
}

/** What the kernel does with a frame written to tun with NEEDS_CSUM (or
 *  with a NEEDS_CSUM packet it transmits): complete the checksum at
 *  csum_start + csum_offset over [csum_start, end). Returns the packet
 *  without the virtio header; frames without NEEDS_CSUM come back as they are. */
export function completeChecksum(frame: Uint8Array): Uint8Array {
  const h = parseVnet(frame);
  const p = frame.slice(VNET_HDR_LEN);
  if (h.flags & F_NEEDS_CSUM) {
    let c = inetChecksum(p.subarray(h.csumStart));
    if (c === 0) c = 0xffff;
    put16(p, h.csumStart + h.csumOffset, c);
  }
  return p;
}

/** tsoSegment's twin: the segments, or "refused". `input` is the virtio
 *  header followed by the packet; it is not modified. */
export function slowTso(input: Uint8Array): Uint8Array[] | "refused" {
  if (input.length <= VNET_HDR_LEN) return "refused";
  const h = parseVnet(input);
  const pkt = input.slice(VNET_HDR_LEN);
  if (h.flags & ~(F_NEEDS_CSUM | F_DATA_VALID)) return "refused";
  const tcp4 = h.gsoType === GSO_TCPV4 || h.gsoType === (GSO_TCPV4 | GSO_ECN);
  if (!tcp4 && h.gsoType !== GSO_NONE) return "refused";
  if (tcp4 && (!(h.flags & F_NEEDS_CSUM) || h.gsoSize === 0)) return "refused";
  if (h.flags & F_NEEDS_CSUM && h.csumStart + h.csumOffset + 2 > pkt.length) return "refused";
  if (!tcp4) return [completeChecksum(input)];

  if (pkt.length < 20 || pkt[0] >> 4 !== 4) return "refused";
  const ihl = (pkt[0] & 15) * 4;
  const tot = be16(pkt, 2);
  if (ihl < 20 || tot < ihl || tot > pkt.length) return "refused";
  if (pkt[9] !== 6 || (be16(pkt, 6) & 0x3fff) !== 0) return "refused";
  if (h.csumStart !== ihl || h.csumOffset !== 16) return "refused";
  if (tot - ihl < 20) return "refused";
  const thl = (pkt[ihl + 12] >> 4) * 4;
  if (thl < 20 || thl > tot - ihl) return "refused";
  const hdr = ihl + thl;
  const payload = pkt.subarray(hdr, tot);
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < payload.length; o += h.gsoSize) chunks.push(payload.subarray(o, Math.min(o + h.gsoSize, payload.length)));
  if (chunks.length === 0) chunks.push(new Uint8Array(0));
  const id0 = be16(pkt, 4);
  const seq0 = be32(pkt, ihl + 4);
  let sent = 0;
  return chunks.map((c, k) => {
    const s = new Uint8Array(hdr + c.length);
    s.set(pkt.subarray(0, hdr));
    s.set(c, hdr);
    put16(s, 2, s.length);
    put16(s, 4, (id0 + k) & 0xffff);
    put16(s, 10, 0);
    put16(s, 10, inetChecksum(s.subarray(0, ihl)));
    put32(s, ihl + 4, (seq0 + sent) >>> 0);
    if (k !== chunks.length - 1) s[ihl + 13] &= ~(FIN | PSH);
    if (k !== 0) s[ihl + 13] &= ~CWR;
    put16(s, ihl + 16, 0);
    put16(s, ihl + 16, inetChecksum(s.subarray(ihl), pseudoSum(s, s.length - ihl)));
    sent += c.length;
    return s;
  });
}

// --- GRO --------------------------------------------------------------------

export const GRO_OPEN_RUNS = 8;
export const GRO_MAX_FRAME = 65535;

/** Sum of the IPv6 pseudo header (addresses, upper-layer length, next header
 *  TCP) of the packet `ip`, unfolded (an initial value for inetChecksum). */
export function pseudoSum6(ip: Uint8Array, l4Len: number): number {
  let s = 0;
  for (let i = 8; i < 40; i += 2) s += be16(ip, i);
  return s + (l4Len >>> 16) + (l4Len & 0xffff) + 6;
}

/** The IPv6 twin of pseudoPartial. */
export function pseudoPartial6(ip: Uint8Array, l4Len: number): number {
  return ~inetChecksum(new Uint8Array(0), pseudoSum6(ip, l4Len)) & 0xffff;
}

/** The TCP checksum (over the IPv6 pseudo header) of an IPv6 packet with TCP right behind its header verifies. */
export function ipv6TcpChecksumOk(p: Uint8Array): boolean {
  const plen = be16(p, 4);
  return inetChecksum(p.subarray(40, 40 + plen), pseudoSum6(p, plen)) === 0;
}

/** May this packet start or join a run? (rules in assembly/offload/gro.ts) */
export function groCandidate(p: Uint8Array): boolean {
  if (p.length < 40 || p[0] !== 0x45) return false;
  if (be16(p, 2) !== p.length || p[9] !== 6 || (be16(p, 6) & 0x3fff) !== 0) return false;
  const thl = (p[32] >> 4) * 4;
  if (thl < 20 || 20 + thl >= p.length) return false;
  if ((p[33] & ~PSH) !== ACK) return false;
  return ipv4TcpChecksumsOk(p);
}

/** The same for an IPv6 packet. */
export function groCandidate6(p: Uint8Array): boolean {
  if (p.length < 60 || p[0] >> 4 !== 6 || be16(p, 4) + 40 !== p.length || p[6] !== 6) return false;
  const thl = (p[52] >> 4) * 4;
  if (thl < 20 || 40 + thl >= p.length) return false;
  if ((p[53] & ~PSH) !== ACK) return false;
  return ipv6TcpChecksumOk(p);
}

/** Options of slowGro (as groCoalesce's flags). */
export interface GroOptions {
  /** GRO_TCPV6: IPv6/TCP coalesces too. */
  tcpv6?: boolean;
}

/** The flow of an IPv4/TCP packet (any header length), or with tcpv6 of an
 *  IPv6 packet with TCP right behind its header, or undefined. */
function flowKey(p: Uint8Array, o: GroOptions): string | undefined {
  if (p.length < 40) return undefined;
  if (o.tcpv6 && p[0] >> 4 === 6) {
    if (p[6] !== 6 || p.length < 44) return undefined;
    return "6:" + [...p.subarray(8, 44)].join(",");
  }
  if (p[0] >> 4 !== 4 || p[9] !== 6) return undefined;
  const ihl = (p[0] & 15) * 4;
  if (ihl < 20 || ihl + 4 > p.length) return undefined;
  return "4:" + [...p.subarray(12, 20), ...p.subarray(ihl, ihl + 4)].join(",");
}

/** With tcpv6, an IPv6 packet whose next header is none of TCP, UDP, ICMPv6,
 *  no-next-header: the address pair whose open runs it closes ("6:" + the
 *  addresses, a prefix of their flow keys). */
function hiddenFlows(p: Uint8Array, o: GroOptions): string | undefined {
  if (!o.tcpv6 || p.length < 40 || p[0] >> 4 !== 6 || [6, 17, 58, 59].includes(p[6])) return undefined;
  return "6:" + [...p.subarray(8, 40)].join(",") + ",";
}

interface Run {
  key: string;
  v6: boolean;
  members: Uint8Array[];
  nextSeq: number;
  gso: number;
  total: number;
}

function canAppend(r: Run, q: Uint8Array): boolean {
  const h = r.members[0];
  const ip = r.v6 ? 40 : 20;
  const same = r.v6 ? [0, 1, 2, 3, 7] : [1, 6, 7, 8];
  for (const i of [...same, ...[12, 8, 9, 10, 11, 14, 15].map((t) => ip + t)]) if (h[i] !== q[i]) return false;
  const thl = (h[ip + 12] >> 4) * 4;
  for (let i = ip + 20; i < ip + thl; i++) if (h[i] !== q[i]) return false;
  const pay = q.length - ip - thl;
  return be32(q, ip + 4) === r.nextSeq && pay <= r.gso && r.total + pay <= GRO_MAX_FRAME;
}

/** groCoalesce's twin: the frames (virtio header + packet), in order. */
export function slowGro(pkts: Uint8Array[], o: GroOptions = {}): Uint8Array[] {
  const slots: (Run | undefined)[] = new Array(GRO_OPEN_RUNS).fill(undefined);
  let evict = 0;
  const order: (Run | Uint8Array)[] = [];
  for (const q of pkts) {
    const key = flowKey(q, o);
    if (key === undefined) {
      const pair = hiddenFlows(q, o);
      if (pair !== undefined) slots.forEach((r, i) => r?.key.startsWith(pair) && (slots[i] = undefined));
      order.push(q);
      continue;
    }
    const v6 = key.startsWith("6:");
    const ip = v6 ? 40 : 20;
    const cand = v6 ? groCandidate6(q) : groCandidate(q);
    const thl = (q[ip + 12] >> 4) * 4;
    const pay = q.length - ip - thl;
    const s = slots.findIndex((r) => r?.key === key);
    if (s >= 0) {
      const r = slots[s]!;
      if (cand && canAppend(r, q)) {
        r.members.push(q);
        r.nextSeq = (r.nextSeq + pay) >>> 0;
        r.total += pay;
        if (pay < r.gso || q[ip + 13] & PSH) slots[s] = undefined;
        continue;
      }
      slots[s] = undefined;
    }
    if (!cand || q[ip + 13] & PSH) {
      order.push(q);
      continue;
    }
    const r: Run = { key, v6, members: [q], nextSeq: (be32(q, ip + 4) + pay) >>> 0, gso: pay, total: q.length };
    order.push(r);
    let free = slots.findIndex((x) => x === undefined);
    if (free < 0) {
      free = evict;
      evict = (evict + 1) % GRO_OPEN_RUNS;
    }
    slots[free] = r;
  }
  return order.map((x) => {
    const single = x instanceof Uint8Array ? x : x.members.length === 1 ? x.members[0] : undefined;
    if (single) {
      const f = new Uint8Array(VNET_HDR_LEN + single.length);
      f.set(single, VNET_HDR_LEN);
      return f;
    }
    const r = x as Run;
    const h = r.members[0];
    const ip = r.v6 ? 40 : 20;
    const hdr = ip + (h[ip + 12] >> 4) * 4;
    const p = new Uint8Array(r.total);
    p.set(h);
    let o = h.length;
    for (const m of r.members.slice(1)) {
      p.set(m.subarray(hdr), o);
      o += m.length - hdr;
    }
    if (r.v6) {
      put16(p, 4, r.total - 40);
    } else {
      put16(p, 2, r.total);
      put16(p, 10, 0);
      put16(p, 10, inetChecksum(p.subarray(0, 20)));
    }
    p[ip + 13] |= r.members[r.members.length - 1][ip + 13] & PSH;
    put16(p, ip + 16, r.v6 ? pseudoPartial6(p, r.total - 40) : pseudoPartial(p, r.total - 20));
    const v = vnetBytes({ flags: F_NEEDS_CSUM, gsoType: r.v6 ? GSO_TCPV6 : GSO_TCPV4, hdrLen: hdr, gsoSize: h.length - hdr, csumStart: ip, csumOffset: 16 });
    const f = new Uint8Array(VNET_HDR_LEN + p.length);
    f.set(v);
    f.set(p, VNET_HDR_LEN);
    return f;
  });
}

// --- builders for the tests ---------------------------------------------------

export interface SuperFrameSpec {
  payload: Uint8Array;
  mss: number;
  flags: number;
  ipOptions: Uint8Array;
  tcpOptions: Uint8Array;
  id: number;
  seq: number;
  ack: number;
  window: number;
  tos: number;
  ttl: number;
  df: boolean;
  ecn: boolean;
  src: number;
  dst: number;
  sport: number;
  dport: number;
}

/** A TCP segment with options (the helper's tcp() has none): its header is
 *  tcp()'s with the data offset widened and the options inserted. */
export function tcpWithOptions(s: SuperFrameSpec): Uint8Array {
  const base = tcp(s.src, s.dst, s.sport, s.dport, s.flags, new Uint8Array(0), s.seq, s.ack);
  const thl = 20 + s.tcpOptions.length;
  const b = new Uint8Array(thl + s.payload.length);
  b.set(base.subarray(0, 20));
  b.set(s.tcpOptions, 20);
  b.set(s.payload, thl);
  b[12] = (thl / 4) << 4;
  b[14] = s.window >> 8;
  b[15] = s.window & 255;
  return b;
}

/** The IPv4/TCP super-frame and its virtio header, as tun gives them. */
export function superFrame(s: SuperFrameSpec): Uint8Array {
  const pkt = ipv4({ src: s.src, dst: s.dst, proto: 6, payload: tcpWithOptions(s), ttl: s.ttl, tos: s.tos, id: s.id, df: s.df, options: s.ipOptions });
  const ihl = 20 + s.ipOptions.length;
  const partial = pseudoPartial(pkt, pkt.length - ihl);
  pkt[ihl + 16] = partial >> 8;
  pkt[ihl + 17] = partial & 255;
  const v = vnetBytes({ flags: F_NEEDS_CSUM, gsoType: GSO_TCPV4 | (s.ecn ? GSO_ECN : 0), hdrLen: ihl + 20 + s.tcpOptions.length, gsoSize: s.mss, csumStart: ihl, csumOffset: 16 });
  const out = new Uint8Array(10 + pkt.length);
  out.set(v);
  out.set(pkt, 10);
  return out;
}

const options4 = (max: number) => fc.integer({ min: 0, max: max / 4 }).chain((n) => fc.uint8Array({ minLength: n * 4, maxLength: n * 4 }));

export const superFrameSpec = (maxPayload = 64000): fc.Arbitrary<SuperFrameSpec> =>
  fc.record({
    payload: fc.oneof(
      fc.integer({ min: 1, max: maxPayload }),
      fc.integer({ min: 1, max: 3000 }),
      fc.constantFrom(1, 499, 500, 501, 1460, 1461, 2920, maxPayload),
    ).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    mss: fc.oneof(fc.integer({ min: 500, max: 1460 }), fc.constantFrom(500, 1448, 1460)),
    flags: fc.oneof(fc.constantFrom(ACK, ACK | PSH, ACK | PSH | FIN, ACK | CWR, ACK | ECE | CWR | PSH), fc.integer({ min: 0, max: 255 })),
    ipOptions: fc.oneof(fc.constant(new Uint8Array(0)), options4(40)),
    tcpOptions: fc.oneof(fc.constant(new Uint8Array(0)), fc.constant(Uint8Array.of(1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8)), options4(40)),
    id: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constant(0xffffff00)),
    ack: fc.integer({ min: 0, max: 0xffffffff }),
    window: fc.integer({ min: 0, max: 0xffff }),
    tos: fc.integer({ min: 0, max: 255 }),
    ttl: fc.integer({ min: 1, max: 255 }),
    df: fc.boolean(),
    ecn: fc.boolean(),
    src: fc.integer({ min: 1, max: 0xffffffff }),
    dst: fc.integer({ min: 1, max: 0xffffffff }),
    sport: fc.integer({ min: 1, max: 0xffff }),
    dport: fc.integer({ min: 1, max: 0xffff }),
  });

export function withVnet(h: VnetHdr, pkt: Uint8Array): Uint8Array {
  const out = new Uint8Array(10 + pkt.length);
  out.set(vnetBytes(h));
  out.set(pkt, 10);
  return out;
}


/** Recompute the IPv4 header and full TCP checksums of an IPv4/TCP packet
 *  in place (after a test mutated a field). Returns the packet. */
export function fillChecksums(p: Uint8Array): Uint8Array {
  const ihl = (p[0] & 15) * 4;
  const tot = be16(p, 2);
  put16(p, 10, 0);
  put16(p, 10, inetChecksum(p.subarray(0, ihl)));
  put16(p, ihl + 16, 0);
  put16(p, ihl + 16, inetChecksum(p.subarray(ihl, tot), pseudoSum(p, tot - ihl)));
  return p;
}

/** One plain IPv4/TCP packet (full checksums) with the spec's fields. */
export function plainSegment(s: SuperFrameSpec): Uint8Array {
  const pkt = ipv4({ src: s.src, dst: s.dst, proto: 6, payload: tcpWithOptions(s), ttl: s.ttl, tos: s.tos, id: s.id, df: s.df, options: s.ipOptions });
  return fillChecksums(pkt);
}

// --- IPv6 builders ----------------------------------------------------------

/** An IPv6/TCP segment (TCP right behind the fixed header) with the fields
 *  of `s` (addresses as 16 bytes each, tclass/flow/hlim of the header). */
export interface Segment6Spec {
  src: Uint8Array;
  dst: Uint8Array;
  tclass: number;
  flow: number;
  hlim: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  tcpOptions: Uint8Array;
  payload: Uint8Array;
}

/** Recompute the TCP checksum of an IPv6 packet (TCP right behind the header) in place. Returns it. */
export function fillChecksum6(p: Uint8Array): Uint8Array {
  const plen = be16(p, 4);
  put16(p, 56, 0);
  put16(p, 56, inetChecksum(p.subarray(40, 40 + plen), pseudoSum6(p, plen)));
  return p;
}

/** One plain IPv6/TCP packet (full checksum) with the spec's fields. */
export function plainSegment6(s: Segment6Spec): Uint8Array {
  const thl = 20 + s.tcpOptions.length;
  const p = new Uint8Array(40 + thl + s.payload.length);
  put32(p, 0, ((6 << 28) | ((s.tclass & 255) << 20) | (s.flow & 0xfffff)) >>> 0);
  put16(p, 4, thl + s.payload.length);
  p[6] = 6;
  p[7] = s.hlim;
  p.set(s.src, 8);
  p.set(s.dst, 24);
  put16(p, 40, s.sport);
  put16(p, 42, s.dport);
  put32(p, 44, s.seq >>> 0);
  put32(p, 48, s.ack >>> 0);
  p[52] = (thl / 4) << 4;
  p[53] = s.flags;
  put16(p, 54, s.window);
  p.set(s.tcpOptions, 60);
  p.set(s.payload, 40 + thl);
  return fillChecksum6(p);
}
