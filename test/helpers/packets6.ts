// Naive IPv6 packet builders and parsers for tests, written from RFC 8200,
// RFC 4443 and RFC 4861, independently of the AssemblyScript wire code.
// Addresses are text (parsed by ipaddr.js) or 16 bytes.
import ipaddr from "ipaddr.js";
import { inetChecksum } from "./packets.js";

export function a6(s: string): Uint8Array {
  return Uint8Array.from(ipaddr.IPv6.parse(s).toByteArray());
}
export function a6str(b: Uint8Array): string {
  return ipaddr.fromByteArray(Array.from(b)).toString();
}
export function a6big(s: string): bigint {
  return a6(s).reduce((v, x) => (v << 8n) | BigInt(x), 0n);
}

/** Sum (not complemented, not folded) of the pseudo header: src, dst, length, next header. */
export function pseudo6(src: string, dst: string, next: number, len: number): number {
  const b = new Uint8Array(40);
  b.set(a6(src), 0);
  b.set(a6(dst), 16);
  new DataView(b.buffer).setUint32(32, len);
  b[39] = next;
  let s = 0;
  for (let i = 0; i < 40; i += 2) s += (b[i] << 8) | b[i + 1];
  return s;
}

export interface Ipv6Opts {
  src: string;
  dst: string;
  next: number;
  payload: Uint8Array;
  hlim?: number;
  tclass?: number;
  flow?: number;
}

export function ipv6(o: Ipv6Opts): Uint8Array {
  const b = new Uint8Array(40 + o.payload.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, ((6 << 28) | ((o.tclass ?? 0) << 20) | (o.flow ?? 0)) >>> 0);
  dv.setUint16(4, o.payload.length);
  b[6] = o.next;
  b[7] = o.hlim ?? 64;
  b.set(a6(o.src), 8);
  b.set(a6(o.dst), 24);
  b.set(o.payload, 40);
  return b;
}

export function udp6(src: string, dst: string, sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, b.length);
  b.set(data, 8);
  let c = inetChecksum(b, pseudo6(src, dst, 17, b.length));
  if (c === 0) c = 0xffff;
  dv.setUint16(6, c);
  return b;
}

/** An ICMPv6 message of `type`/`code` with a 4-byte `rest` and `body`, checksummed. */
export function icmp6(src: string, dst: string, type: number, code: number, rest: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + body.length);
  const dv = new DataView(b.buffer);
  b[0] = type;
  b[1] = code;
  dv.setUint32(4, rest >>> 0);
  b.set(body, 8);
  dv.setUint16(2, inetChecksum(b, pseudo6(src, dst, 58, b.length)));
  return b;
}

/** A whole Neighbor Solicitation (IPv6 + ICMPv6) for `target` from `src`, with a source link-layer option when `sll` is given. */
export function neighborSolicit(src: string, dst: string, target: string, sll?: bigint): Uint8Array {
  const body = new Uint8Array(16 + (sll !== undefined ? 8 : 0));
  body.set(a6(target), 0);
  if (sll !== undefined) {
    body[16] = 1;
    body[17] = 1;
    for (let i = 0; i < 6; i++) body[18 + i] = Number((sll >> BigInt((5 - i) * 8)) & 0xffn);
  }
  return ipv6({ src, dst, next: 58, hlim: 255, payload: icmp6(src, dst, 135, 0, 0, body) });
}

export function parseIpv6(b: Uint8Array) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const w = dv.getUint32(0);
  const plen = dv.getUint16(4);
  const src = a6str(b.subarray(8, 24));
  const dst = a6str(b.subarray(24, 40));
  const next = b[6];
  const payload = b.subarray(40, 40 + plen);
  // A transport checksum over the pseudo header is 0 when correct (ICMPv6, UDP, TCP).
  const l4ok = [58, 17, 6].includes(next) ? inetChecksum(payload, pseudo6(src, dst, next, plen)) === 0 : undefined;
  return { version: w >>> 28, tclass: (w >>> 20) & 0xff, flow: w & 0xfffff, plen, next, hlim: b[7], src, dst, payload, l4ok };
}
