// IPv4 address, CIDR and MAC helpers for the control plane. Addresses are
// host-order unsigned 32-bit numbers (what the data path's tables take);
// MACs are 48-bit bigints (the ABI's u64 MAC, first octet most significant).
//
// The one IPv4/CIDR parser of the control plane (config, route rules, I/O):
// strict on purpose: a config file is the main source of these values, and
// "010.1.1.1" (octal to some tools) or "10.1.1.0/24 " is more likely a typo
// than intent. Each parser has a `try…` twin that returns a reason instead of
// throwing, which the config schema turns into messages. node:net's BlockList
// answers only "is this address string in the set", while the tables need the
// numbers (prefix, length, mask), so containment is plain arithmetic here.
import { isIPv4 } from "node:net";

/** A parsed IPv4 prefix: network address (host order, host bits zero) and length. */
export interface Cidr {
  prefix: number;
  len: number;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string; detail?: string };

/** Dotted-quad IPv4 → host-order u32, or the reason it is not one (`reason`
 *  names the text, `detail` the part that is wrong). node:net's isIPv4
 *  accepts exactly the strict form (four decimal octets 0..255, no leading
 *  zeros, nothing around them); the rest only says why not. */
export function tryIpToU32(text: string): Parsed<number> {
  if (typeof text !== "string") return { ok: false, reason: "is not a string", detail: "not a string" };
  if (isIPv4(text)) {
    const [a, b, c, d] = text.split(".").map(Number);
    return { ok: true, value: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0 };
  }
  const parts = text.split(".");
  let detail = "expected four dotted numbers";
  if (parts.length === 4) {
    const bad = parts.find((p) => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) ?? text;
    detail = /^0[0-9]+$/.test(bad) ? `${JSON.stringify(bad)} has a leading zero` : `${JSON.stringify(bad)} is not 0..255`;
  }
  return { ok: false, reason: `${JSON.stringify(text)} is not an IPv4 address`, detail };
}

/** "a.b.c.d" → (a<<24 | b<<16 | c<<8 | d) >>> 0. Throws a RangeError naming the text otherwise. */
export function ipToU32(text: string): number {
  const r = tryIpToU32(text);
  if (!r.ok) throw new RangeError(r.reason);
  return r.value;
}

/** Host-order u32 → "a.b.c.d" (the number is taken modulo 2^32). */
export function u32ToIp(v: number): string {
  const x = v >>> 0;
  return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
}

/** Whether `text` is a dotted-quad IPv4 address (strict: see tryIpToU32). */
export function isIpv4(text: string): boolean {
  return typeof text === "string" && isIPv4(text);
}

/** Network mask for a prefix length 0..32, host order. */
export function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/**
 * "a.b.c.d/len" → {prefix, len}, or the reason it is not a usable CIDR
 * (`detail`: which part is wrong). Host bits set ("10.0.0.1/24") are refused
 * with the network it probably meant, because silently masking them hides a
 * wrong address in the file; `hostBits: "clear"` masks them instead (route
 * rules, where a prefix is normalised by definition).
 */
export function tryParseCidr(text: string, opts: { hostBits?: "refuse" | "clear" } = {}): Parsed<Cidr> {
  if (typeof text !== "string") return { ok: false, reason: "is not a string", detail: "not a string" };
  const slash = text.indexOf("/");
  const notCidr = (detail: string): Parsed<Cidr> => ({ ok: false, reason: `${JSON.stringify(text)} is not an IPv4 CIDR (want a.b.c.d/len)`, detail });
  if (slash < 0) return notCidr('missing "/len"');
  const lenText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]?)$/.test(lenText) || Number(lenText) > 32) return notCidr(`prefix length ${JSON.stringify(lenText)} is not 0..32`);
  const ip = tryIpToU32(text.slice(0, slash));
  if (!ip.ok) return notCidr(ip.detail ?? ip.reason);
  const len = Number(lenText);
  const prefix = (ip.value & maskOf(len)) >>> 0;
  if (prefix !== ip.value && opts.hostBits !== "clear") {
    return {
      ok: false,
      reason: `${JSON.stringify(text)} has host bits set (did you mean ${u32ToIp(prefix)}/${len}?)`,
      detail: "host bits set",
    };
  }
  return { ok: true, value: { prefix, len } };
}

/** Strict CIDR parse; throws a RangeError with the reason (see tryParseCidr). */
export function parseCidr(text: string): Cidr {
  const r = tryParseCidr(text);
  if (!r.ok) throw new RangeError(r.reason);
  return r.value;
}

/** {prefix, len} → "a.b.c.d/len". */
export function formatCidr(c: Cidr): string {
  return `${u32ToIp(c.prefix)}/${c.len}`;
}

function asCidr(c: Cidr | string): Cidr {
  return typeof c === "string" ? parseCidr(c) : c;
}

/** Whether address `ip` (u32 or dotted quad) lies in `cidr`. */
export function cidrContains(cidr: Cidr | string, ip: number | string): boolean {
  const c = asCidr(cidr);
  const a = typeof ip === "string" ? ipToU32(ip) : ip >>> 0;
  const m = maskOf(c.len);
  return ((a & m) >>> 0) === ((c.prefix & m) >>> 0);
}

/** Whether two prefixes share any address (one contains the other). */
export function cidrOverlaps(a: Cidr | string, b: Cidr | string): boolean {
  const x = asCidr(a);
  const y = asCidr(b);
  const m = maskOf(Math.min(x.len, y.len));
  return ((x.prefix & m) >>> 0) === ((y.prefix & m) >>> 0);
}

/** First address of a prefix (its network address: flannel's x.y.z.0 VTEP IP). */
export function cidrFirst(c: Cidr | string): number {
  return asCidr(c).prefix >>> 0;
}

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** "0e:00:00:00:01:00" (or with '-') → 48-bit bigint, or the reason it is not a MAC. */
export function tryParseMac(text: string): Parsed<bigint> {
  if (typeof text !== "string" || !MAC_RE.test(text)) {
    return { ok: false, reason: `${JSON.stringify(text)} is not a MAC address (want xx:xx:xx:xx:xx:xx)` };
  }
  return { ok: true, value: BigInt("0x" + text.replace(/[:-]/g, "")) };
}

/** Strict MAC parse; throws a RangeError with the reason. */
export function parseMac(text: string): bigint {
  const r = tryParseMac(text);
  if (!r.ok) throw new RangeError(r.reason);
  return r.value;
}

/** 48-bit bigint → "xx:xx:xx:xx:xx:xx" (lower case; higher bits ignored). */
export function formatMac(mac: bigint): string {
  const hex = BigInt.asUintN(48, mac).toString(16).padStart(12, "0");
  return hex.match(/../g)!.join(":");
}

/** Group bit of the first octet: multicast/broadcast, never a station's address. */
export function isMulticastMac(mac: bigint): boolean {
  return ((mac >> 40n) & 1n) === 1n;
}

/**
 * A locally administered unicast MAC derived from an IPv4 address:
 * `0e:00:a:b:c:d` (`prefixOctets` default to 0e:00; 0x0e has the
 * locally-administered bit set and the group bit clear). Deterministic, so
 * a node's VTEP MAC survives restarts and peers can compute it.
 */
export function macFromIp(ip: number, prefixOctets: [number, number] = [0x0e, 0x00]): bigint {
  return (BigInt(prefixOctets[0] & 0xff) << 40n) | (BigInt(prefixOctets[1] & 0xff) << 32n) | BigInt(ip >>> 0);
}

/** Where an HTTP server listens: a TCP host:port, or a unix socket path. */
export type ListenAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** Longest unix socket path Linux takes (sun_path is 108 bytes with the NUL). */
export const UNIX_PATH_MAX = 107;

/**
 * "127.0.0.1:9469" / "localhost:9469" / ":9469" (host defaults to
 * 127.0.0.1, never all interfaces) → tcp; an absolute path "/run/x.sock" →
 * unix socket. Anything else: the reason.
 */
export function tryParseListen(text: string): Parsed<ListenAddress> {
  if (typeof text !== "string") return { ok: false, reason: "is not a string" };
  if (text.startsWith("/")) {
    if (Buffer.byteLength(text) > UNIX_PATH_MAX || text.includes("\0") || text.endsWith("/")) {
      return { ok: false, reason: `${JSON.stringify(text)} is not a usable unix socket path (at most ${UNIX_PATH_MAX} bytes, not a directory)` };
    }
    return { ok: true, value: { kind: "unix", path: text } };
  }
  const i = text.lastIndexOf(":");
  const host = text.slice(0, i);
  const p = text.slice(i + 1);
  const hostOk = host === "" || tryIpToU32(host).ok || /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host);
  if (i < 0 || !hostOk || !/^[1-9][0-9]{0,4}$/.test(p) || Number(p) > 65535) {
    return { ok: false, reason: `${JSON.stringify(text)} is neither host:port (e.g. "127.0.0.1:9469") nor an absolute unix socket path` };
  }
  return { ok: true, value: { kind: "tcp", host: host || "127.0.0.1", port: Number(p) } };
}

/** Strict listen-address parse; throws a RangeError with the reason. */
export function parseListen(text: string): ListenAddress {
  const r = tryParseListen(text);
  if (!r.ok) throw new RangeError(r.reason);
  return r.value;
}
