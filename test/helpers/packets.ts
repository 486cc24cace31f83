// Naive packet builders and parsers for tests: written from the RFCs,
// independently of the AssemblyScript wire code they check.

export function ip(s: string): number {
  const p = s.split(".").map(Number);
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}
export function ipStr(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
export function mac(s: string): bigint {
  return BigInt("0x" + s.split(":").join(""));
}
export function macBytes(m: bigint): number[] {
  const out: number[] = [];
  for (let i = 5; i >= 0; i--) out.push(Number((m >> BigInt(i * 8)) & 0xffn));
  return out;
}

/** RFC 1071 checksum over bytes (big-endian 16-bit words). */
export function inetChecksum(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i] << 8) | b[i + 1];
  if (b.length & 1) s += b[b.length - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export interface Ipv4Opts {
  src: string | number;
  dst: string | number;
  proto: number;
  payload: Uint8Array;
  ttl?: number;
  tos?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  options?: Uint8Array;
  badChecksum?: boolean;
}

const a32 = (v: string | number) => (typeof v === "string" ? ip(v) : v >>> 0);

export function ipv4(o: Ipv4Opts): Uint8Array {
  const opt = o.options ?? new Uint8Array(0);
  const hl = 20 + opt.length;
  const b = new Uint8Array(hl + o.payload.length);
  const dv = new DataView(b.buffer);
  b[0] = 0x40 | (hl >> 2);
  b[1] = o.tos ?? 0;
  dv.setUint16(2, b.length);
  dv.setUint16(4, o.id ?? 0x1234);
  dv.setUint16(6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff));
  b[8] = o.ttl ?? 64;
  b[9] = o.proto;
  dv.setUint32(12, a32(o.src));
  dv.setUint32(16, a32(o.dst));
  b.set(opt, 20);
  let c = inetChecksum(b.subarray(0, hl));
  if (o.badChecksum) c ^= 0x5a5a;
  dv.setUint16(10, c);
  b.set(o.payload, hl);
  return b;
}

function pseudo(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

export function udp(src: string | number, dst: string | number, sport: number, dport: number, data: Uint8Array, withChecksum = true): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, b.length);
  b.set(data, 8);
  if (withChecksum) {
    let c = inetChecksum(b, pseudo(a32(src), a32(dst), 17, b.length));
    if (c === 0) c = 0xffff;
    dv.setUint16(6, c);
  }
  return b;
}

export function tcp(src: string | number, dst: string | number, sport: number, dport: number, flags: number, data: Uint8Array, seq = 1000, ack = 0): Uint8Array {
  const b = new Uint8Array(20 + data.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint32(4, seq);
  dv.setUint32(8, ack);
  b[12] = 5 << 4;
  b[13] = flags;
  dv.setUint16(14, 65535);
  b.set(data, 20);
  dv.setUint16(16, inetChecksum(b, pseudo(a32(src), a32(dst), 6, b.length)));
  return b;
}

export function icmpEcho(id: number, seq: number, data: Uint8Array, type = 8): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const dv = new DataView(b.buffer);
  b[0] = type;
  dv.setUint16(4, id);
  dv.setUint16(6, seq);
  b.set(data, 8);
  dv.setUint16(2, inetChecksum(b));
  return b;
}

export function ethernet(dst: bigint, src: bigint, type: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(14 + payload.length);
  b.set(macBytes(dst), 0);
  b.set(macBytes(src), 6);
  new DataView(b.buffer).setUint16(12, type);
  b.set(payload, 14);
  return b;
}

export function arpRequest(sha: bigint, spa: string, tpa: string): Uint8Array {
  const b = new Uint8Array(28);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, 1);
  dv.setUint16(2, 0x0800);
  b[4] = 6;
  b[5] = 4;
  dv.setUint16(6, 1);
  b.set(macBytes(sha), 8);
  dv.setUint32(14, ip(spa));
  dv.setUint32(24, ip(tpa));
  return b;
}

export function vxlanHeader(vni: number, flags = 0x08): Uint8Array {
  const b = new Uint8Array(8);
  b[0] = flags;
  new DataView(b.buffer).setUint32(4, (vni << 8) >>> 0);
  return b;
}

/** `pkt` (IPv4/TCP, 20-byte headers) behind a virtio_net_hdr as a tun with
 *  TSO hands a super-frame over: NEEDS_CSUM, TCPV4, hdr_len 40, gso_size
 *  `mss`, checksum start 20 and offset 16. */
export function tsoFrame(pkt: Uint8Array, mss: number): Uint8Array {
  const out = new Uint8Array(10 + pkt.length);
  const dv = new DataView(out.buffer);
  out[0] = 1; // NEEDS_CSUM
  out[1] = 1; // TCPV4
  dv.setUint16(2, 40, true);
  dv.setUint16(4, mss, true);
  dv.setUint16(6, 20, true);
  dv.setUint16(8, 16, true);
  out.set(pkt, 10);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Parsed view of an IPv4 header for assertions. */
export function parseIpv4(b: Uint8Array) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const hl = (b[0] & 15) * 4;
  return {
    version: b[0] >> 4,
    hl,
    tos: b[1],
    totalLen: dv.getUint16(2),
    id: dv.getUint16(4),
    df: (dv.getUint16(6) & 0x4000) !== 0,
    ttl: b[8],
    proto: b[9],
    checksumOk: inetChecksum(b.subarray(0, hl)) === 0,
    src: ipStr(dv.getUint32(12)),
    dst: ipStr(dv.getUint32(16)),
    payload: b.subarray(hl, dv.getUint16(2)),
  };
}
