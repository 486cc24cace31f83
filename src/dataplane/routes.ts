// The route rule list: the control plane's source of truth for IPv4 routes.
//
// The WASM LPM (assembly/tables/lpm.ts) only holds a derived DIR-24-8 table
// and cannot tell which rule an entry came from. So, as in DPDK rte_lpm, the
// rules live here: on delete we find the rule that takes over the deleted
// prefix's addresses (the longest shorter rule containing it) and hand it to
// the table. Addresses are host-order u32 numbers throughout.
import { maskOf, tryIpToU32, tryParseCidr, u32ToIp } from "../config/net.js";

/** Next hop returned by the WASM lookup when nothing matches. */
export const LPM_MISS = 0xffffffff;
/** Largest next-hop index the table can hold. */
export const LPM_MAX_NH = 0xfffffe;

const OK = 0;
const E_FULL = -1;
const E_NOT_FOUND = -3;

/** The table operations RouteRules drives (Dataplane.lpmBackend). Both return
 *  a status code (0 = OK, negative = error), never throw. */
export interface LpmBackend {
  insert(ip: number, depth: number, nh: number): number;
  delete(ip: number, depth: number, subNh: number, subDepth: number): number;
}

export interface Route {
  /** Network address, host bits zero, host-order u32. */
  prefix: number;
  len: number;
  nh: number;
}

export interface ReplaceResult {
  added: number;
  changed: number;
  removed: number;
  unchanged: number;
  /** Rules whose table write failed, with the status. The rule list keeps
   *  only what the table accepted. */
  failed: { route: Route; status: number }[];
}

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

function checkLen(len: number): void {
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new RangeError(`invalid prefix length ${len}: not 0..32`);
}

/**
 * The rule list, kept in step with an LPM backend. Per prefix length, a map
 * from normalised prefix to next hop: finding the covering rule of a prefix
 * is at most 32 map probes, and so is lookupRule.
 *
 * Invalid arguments (bad address or length) throw; table results (E_FULL,
 * E_RANGE for a next hop the table can't hold) come back as status codes.
 */
export class RouteRules {
  private readonly byLen: Map<number, number>[] = Array.from({ length: 33 }, () => new Map<number, number>());
  private count = 0;

  constructor(private readonly backend: LpmBackend) {}

  /** Number of rules. */
  get size(): number {
    return this.count;
  }

  /** Add or replace prefix/len -> nh (host bits of prefix are ignored).
   *  Returns the backend status; the rule is recorded only on OK. */
  add(prefix: string | number, len: number, nh: number): number {
    checkLen(len);
    const p = (toAddr(prefix) & prefixMask(len)) >>> 0;
    const st = this.backend.insert(p, len, nh);
    if (st !== OK) return st;
    const m = this.byLen[len];
    if (!m.has(p)) this.count++;
    m.set(p, nh);
    return OK;
  }

  /** Remove prefix/len. Returns OK, the backend status, or E_NOT_FOUND (-3)
   *  when there is no such rule (nothing is sent to the table then). */
  remove(prefix: string | number, len: number): number {
    checkLen(len);
    const p = (toAddr(prefix) & prefixMask(len)) >>> 0;
    const m = this.byLen[len];
    if (!m.has(p)) return E_NOT_FOUND;
    const cover = this.covering(p, len);
    const st = cover
      ? this.backend.delete(p, len, cover.nh, cover.len)
      : this.backend.delete(p, len, LPM_MISS, 0);
    if (st !== OK) return st;
    m.delete(p);
    this.count--;
    return OK;
  }

  /** The next hop of prefix/len exactly, or undefined. */
  get(prefix: string | number, len: number): number | undefined {
    checkLen(len);
    return this.byLen[len].get((toAddr(prefix) & prefixMask(len)) >>> 0);
  }

  /** The longest rule containing `ip`, or undefined: what the table should answer. */
  lookupRule(ip: string | number): Route | undefined {
    return this.longestAtMost(toAddr(ip), 32);
  }

  /** Every rule, shortest prefixes first, then by address. */
  entries(): Route[] {
    const out: Route[] = [];
    for (let len = 0; len <= 32; len++) {
      const keys = [...this.byLen[len].keys()].sort((a, b) => a - b);
      for (const prefix of keys) out.push({ prefix, len, nh: this.byLen[len].get(prefix)! });
    }
    return out;
  }

  /**
   * Make the rule list equal `rules` touching only the differences, and
   * return counts. New and changed rules are written first and vanished ones
   * deleted after, so a route that moves (10.1.0.0/24 -> 10.1.0.0/23) never
   * leaves a moment with no route. Adds refused for lack of tbl8 groups are
   * retried once after the deletes have freed some. Later duplicates in
   * `rules` win; writes that still fail are listed in `failed`.
   */
  replaceAll(rules: Iterable<{ prefix: string | number; len: number; nh: number }>): ReplaceResult {
    const want: Map<number, number>[] = Array.from({ length: 33 }, () => new Map<number, number>());
    for (const r of rules) {
      checkLen(r.len);
      want[r.len].set((toAddr(r.prefix) & prefixMask(r.len)) >>> 0, r.nh);
    }
    const res: ReplaceResult = { added: 0, changed: 0, removed: 0, unchanged: 0, failed: [] };
    const retry: Route[] = [];
    const put = (route: Route, last: boolean): void => {
      const cur = this.byLen[route.len].get(route.prefix);
      const st = this.add(route.prefix, route.len, route.nh);
      if (st === OK) {
        if (cur === undefined) res.added++;
        else res.changed++;
      } else if (st === E_FULL && !last) retry.push(route);
      else res.failed.push({ route, status: st });
    };
    for (let len = 0; len <= 32; len++) {
      for (const [prefix, nh] of want[len]) {
        if (this.byLen[len].get(prefix) === nh) res.unchanged++;
        else put({ prefix, len, nh }, false);
      }
    }
    for (let len = 32; len >= 0; len--) {
      for (const [prefix, nh] of [...this.byLen[len]]) {
        if (want[len].has(prefix)) continue;
        const st = this.remove(prefix, len);
        if (st !== OK) res.failed.push({ route: { prefix, len, nh }, status: st });
        else res.removed++;
      }
    }
    for (const route of retry) put(route, true);
    return res;
  }

  /** The longest rule strictly shorter than `len` that contains prefix/len. */
  private covering(prefix: number, len: number): Route | undefined {
    return len === 0 ? undefined : this.longestAtMost(prefix, len - 1);
  }

  private longestAtMost(ip: number, maxLen: number): Route | undefined {
    for (let len = maxLen; len >= 0; len--) {
      const m = this.byLen[len];
      if (m.size === 0) continue;
      const p = (ip & prefixMask(len)) >>> 0;
      const nh = m.get(p);
      if (nh !== undefined) return { prefix: p, len, nh };
    }
    return undefined;
  }
}
