// The route rule list for IPv4: the control plane's source of truth for
// IPv4 routes (rules.ts's PrefixRules with the IPv4 family). Addresses are
// host-order u32 numbers throughout.
import { maskOf, tryIpToU32, tryParseCidr, u32ToIp } from "../config/net.js";
import { PrefixRules, type AddressFamily, type Backend, type ReplaceResultOf, type RouteOf } from "./rules.js";

export { LPM_MAX_NH, LPM_MISS } from "./rules.js";

/** The table operations RouteRules drives (Dataplane.lpmBackend). */
export type LpmBackend = Backend<number>;
export type Route = RouteOf<number>;
export type ReplaceResult = ReplaceResultOf<number>;

// Addresses and prefixes are parsed by the control plane's one parser
// (config/net.ts); these names are the route keeper's (and its tests').

/** Mask of the top `len` bits (len 0..32). */
export const prefixMask = maskOf;

/** Parse dotted-quad "a.b.c.d" to a host-order u32; throws an Error naming
 *  the text and the part that is wrong on anything else. */
export function parseIpv4(s: string): number {
  const r = tryIpToU32(s);
  if (!r.ok) throw new Error(`invalid IPv4 address ${JSON.stringify(s)}: ${r.detail ?? r.reason}`);
  return r.value;
}

/** Format a host-order u32 as dotted quad. */
export const formatIpv4 = u32ToIp;

/** Parse "a.b.c.d/len" into a normalised prefix (host bits cleared). Throws
 *  an Error naming the problem for a missing or bad length or address. */
export function parseCidr(cidr: string): { prefix: number; len: number } {
  const r = tryParseCidr(cidr, { hostBits: "clear" });
  if (!r.ok) throw new Error(`invalid IPv4 CIDR ${JSON.stringify(cidr)}: ${r.detail ?? r.reason}`);
  return r.value;
}

function toAddr(prefix: string | number): number {
  if (typeof prefix === "string") return parseIpv4(prefix);
  if (!Number.isInteger(prefix) || prefix < -0x80000000 || prefix > 0xffffffff) {
    throw new RangeError(`invalid IPv4 address ${prefix}: not a 32-bit integer`);
  }
  return prefix >>> 0;
}

const IPV4: AddressFamily<number> = {
  bits: 32,
  toAddr,
  mask: (a, len) => (a & prefixMask(len)) >>> 0,
  key: (a) => a,
  compare: (a, b) => a - b,
};

/** The IPv4 rule list, kept in step with the DIR-24-8 table (see rules.ts). */
export class RouteRules extends PrefixRules<number> {
  constructor(backend: LpmBackend) {
    super(IPV4, backend);
  }
}
