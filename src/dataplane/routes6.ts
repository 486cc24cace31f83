// The route rule list for IPv6: the control plane's source of truth for
// IPv6 routes (rules.ts's PrefixRules with the IPv6 family). Addresses are
// 128-bit bigints throughout (config/net6.ts); the backend turns them into
// the 16 network-order bytes the table (assembly/tables/lpm6.ts) reads.
import { IPV6_MAX, maskOf6, tryParseIpv6 } from "../config/net6.js";
import { PrefixRules, type AddressFamily, type Backend, type ReplaceResultOf, type RouteOf } from "./rules.js";

export { LPM_MAX_NH, LPM_MISS } from "./rules.js";

/** The table operations RouteRules6 drives (Dataplane.lpm6Backend). */
export type Lpm6Backend = Backend<bigint>;
export type Route6 = RouteOf<bigint>;
export type ReplaceResult6 = ReplaceResultOf<bigint>;

function toAddr6(prefix: string | bigint): bigint {
  if (typeof prefix === "string") {
    const r = tryParseIpv6(prefix);
    if (!r.ok) throw new Error(`invalid IPv6 address ${JSON.stringify(prefix)}: ${r.detail ?? r.reason}`);
    return r.value;
  }
  if (typeof prefix !== "bigint" || prefix < 0n || prefix > IPV6_MAX) {
    throw new RangeError(`invalid IPv6 address ${String(prefix)}: not a 128-bit unsigned bigint`);
  }
  return prefix;
}

const IPV6: AddressFamily<bigint> = {
  bits: 128,
  toAddr: toAddr6,
  mask: (a, len) => a & maskOf6(len),
  // Keyed by the hex text, not the bigint: V8 hashes a BigInt by its low 64
  // bits only, so every /64 (low half zero) would land in one hash bucket
  // and 60k node prefixes would take minutes to load.
  key: (a) => a.toString(16),
  compare: (a, b) => (a < b ? -1 : a > b ? 1 : 0),
};

/** The IPv6 rule list, kept in step with the IPv6 table (see rules.ts). */
export class RouteRules6 extends PrefixRules<bigint> {
  constructor(backend: Lpm6Backend) {
    super(IPV6, backend);
  }
}
