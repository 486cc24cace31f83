// IPv6 address and CIDR helpers for the control plane. Addresses are 128-bit
// unsigned bigints (first address bit most significant), so prefixes and
// masks are plain host arithmetic; the data path takes the same value as 16
// network-order bytes (ipv6ToBytes).
//
// Text is parsed and formatted by ipaddr.js (RFC 4291 forms, with "::" and
// an embedded dotted quad; output in RFC 5952's compressed lower case). On
// top of it, as net.ts does for IPv4: no zone index ("fe80::1%eth0" names an
// interface, not a route), a strict "/len", host bits refused unless asked
// to clear them, and a `detail` naming the part that is wrong.
import { isIPv4 } from "node:net";
import ipaddr from "ipaddr.js";
import type { Parsed } from "./net.js";

/** A parsed IPv6 prefix: network address (host bits zero) and length 0..128. */
export interface Cidr6 {
  prefix: bigint;
  len: number;
}

/** The largest address, ffff:...:ffff. */
export const IPV6_MAX = (1n << 128n) - 1n;

/** Network mask for a prefix length 0..128. */
export function maskOf6(len: number): bigint {
  return (IPV6_MAX << BigInt(128 - len)) & IPV6_MAX;
}

/** Why `text` is not an IPv6 address (ipaddr.js only says that it is not). */
function whyNotIpv6(text: string): string {
  if (text.includes("/")) return "a prefix length where an address belongs";
  if ((text.match(/::/g) ?? []).length > 1) return '"::" appears more than once';
  const groups = text.split(":");
  const last = groups[groups.length - 1];
  const dotted = last.includes(".");
  const bad = (dotted ? groups.slice(0, -1) : groups).find((g) => g !== "" && !/^[0-9a-fA-F]{1,4}$/.test(g));
  if (bad !== undefined) return `${JSON.stringify(bad)} is not 1 to 4 hex digits`;
  if (dotted && !isIPv4(last)) return `${JSON.stringify(last)} is not a dotted-quad IPv4 tail`;
  return "expected eight groups of hex digits separated by ':' (or fewer with one '::')";
}

/** IPv6 text → 128-bit bigint, or the reason it is not one (`reason` names
 *  the text, `detail` the part that is wrong). */
export function tryParseIpv6(text: string): Parsed<bigint> {
  if (typeof text !== "string") return { ok: false, reason: "is not a string", detail: "not a string" };
  const bad = (detail: string): Parsed<bigint> => ({ ok: false, reason: `${JSON.stringify(text)} is not an IPv6 address`, detail });
  if (text.includes("%")) return bad("a zone index (%...) is not allowed");
  if (!ipaddr.IPv6.isValid(text)) return bad(whyNotIpv6(text));
  let v = 0n;
  for (const part of ipaddr.IPv6.parse(text).parts) v = (v << 16n) | BigInt(part);
  return { ok: true, value: v };
}

/** IPv6 text → bigint; throws a RangeError with the reason otherwise. */
export function ipv6ToBigint(text: string): bigint {
  const r = tryParseIpv6(text);
  if (!r.ok) throw new RangeError(`${r.reason}: ${r.detail}`);
  return r.value;
}

function checkAddr(v: bigint): void {
  if (typeof v !== "bigint" || v < 0n || v > IPV6_MAX) throw new RangeError(`${String(v)} is not a 128-bit IPv6 address`);
}

/** bigint → RFC 5952 text ("fd00:10:244::1"). Throws a RangeError outside 0..2^128-1. */
export function bigintToIpv6(v: bigint): string {
  checkAddr(v);
  const parts = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  return new ipaddr.IPv6(parts).toString();
}

/** Write `v` as 16 network-order bytes at `out[off..off+16)`. */
export function ipv6ToBytes(v: bigint, out: Uint8Array, off = 0): void {
  checkAddr(v);
  for (let i = 15; i >= 0; i--) {
    out[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** 16 network-order bytes at `b[off..off+16)` → bigint. */
export function bytesToIpv6(b: Uint8Array, off = 0): bigint {
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(b[off + i]);
  return v;
}

/**
 * "addr/len" → {prefix, len}, or the reason it is not a usable IPv6 CIDR.
 * Host bits set ("fd00::1/64") are refused with the network it probably
 * meant, as tryParseCidr does; `hostBits: "clear"` masks them instead.
 */
export function tryParseCidr6(text: string, opts: { hostBits?: "refuse" | "clear" } = {}): Parsed<Cidr6> {
  if (typeof text !== "string") return { ok: false, reason: "is not a string", detail: "not a string" };
  const notCidr = (detail: string): Parsed<Cidr6> => ({ ok: false, reason: `${JSON.stringify(text)} is not an IPv6 CIDR (want addr/len)`, detail });
  const slash = text.lastIndexOf("/");
  if (slash < 0) return notCidr('missing "/len"');
  const lenText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > 128) return notCidr(`prefix length ${JSON.stringify(lenText)} is not 0..128`);
  const ip = tryParseIpv6(text.slice(0, slash));
  if (!ip.ok) return notCidr(ip.detail ?? ip.reason);
  const len = Number(lenText);
  const prefix = ip.value & maskOf6(len);
  if (prefix !== ip.value && opts.hostBits !== "clear") {
    return { ok: false, reason: `${JSON.stringify(text)} has host bits set (did you mean ${bigintToIpv6(prefix)}/${len}?)`, detail: "host bits set" };
  }
  return { ok: true, value: { prefix, len } };
}

/** Strict CIDR parse; throws a RangeError with the reason (see tryParseCidr6). */
export function parseCidr6(text: string): Cidr6 {
  const r = tryParseCidr6(text);
  if (!r.ok) throw new RangeError(`${r.reason}: ${r.detail}`);
  return r.value;
}

/** {prefix, len} → "addr/len" (host bits, if any, are printed as they are). */
export function formatCidr6(c: Cidr6): string {
  return `${bigintToIpv6(c.prefix)}/${c.len}`;
}

function asCidr6(c: Cidr6 | string): Cidr6 {
  return typeof c === "string" ? parseCidr6(c) : c;
}

/** Whether address `ip` (bigint or text) lies in `cidr`. */
export function cidr6Contains(cidr: Cidr6 | string, ip: bigint | string): boolean {
  const c = asCidr6(cidr);
  const a = typeof ip === "string" ? ipv6ToBigint(ip) : ip;
  checkAddr(a);
  const m = maskOf6(c.len);
  return (a & m) === (c.prefix & m);
}

/** Whether two prefixes share any address (one contains the other). */
export function cidr6Overlaps(a: Cidr6 | string, b: Cidr6 | string): boolean {
  const x = asCidr6(a);
  const y = asCidr6(b);
  const m = maskOf6(Math.min(x.len, y.len));
  return (x.prefix & m) === (y.prefix & m);
}
