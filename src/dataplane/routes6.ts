// The IPv6 route rule list: the control plane's source of truth for IPv6
// routes, as routes.ts is for IPv4.
//
// The WASM LPM (assembly/tables/lpm6.ts) only holds a derived trie and cannot
// tell which rule an entry came from, so the rules live here: on delete we
// find the rule that takes over the deleted prefix's addresses (the longest
// shorter rule containing it) and hand it to the table. Addresses are
// 128-bit bigints throughout (config/net6.ts); the backend turns them into
// the 16 network-order bytes the table reads.
import { IPV6_MAX, maskOf6, tryParseIpv6 } from "../config/net6.js";
import { LPM_MISS } from "./routes.js";

export { LPM_MAX_NH, LPM_MISS } from "./routes.js";

const OK = 0;
const E_FULL = -1;
const E_NOT_FOUND = -3;

/** The table operations RouteRules6 drives (Dataplane.lpm6Backend). Both
 *  return a status code (0 = OK, negative = error), never throw. */
export interface Lpm6Backend {
  insert(addr: bigint, depth: number, nh: number): number;
  delete(addr: bigint, depth: number, subNh: number, subDepth: number): number;
}

export interface Route6 {
  /** Network address, host bits zero. */
  prefix: bigint;
  len: number;
  nh: number;
}

export interface ReplaceResult6 {
  added: number;
  changed: number;
  removed: number;
  unchanged: number;
  /** Rules whose table write failed, with the status. The rule list keeps
   *  only what the table accepted. */
  failed: { route: Route6; status: number }[];
}

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

function checkLen6(len: number): void {
  if (!Number.isInteger(len) || len < 0 || len > 128) throw new RangeError(`invalid prefix length ${len}: not 0..128`);
}

const byPrefix = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

// The maps are keyed by the prefix's hex text, not the bigint: V8 hashes a
// BigInt by its low 64 bits only, so every /64 (low half zero) would land in
// one hash bucket and 60k node prefixes would take minutes to load.
const keyOf = (p: bigint): string => p.toString(16);

/** Per prefix length: key -> the rule's prefix and next hop. */
type RuleMap = Map<string, { prefix: bigint; nh: number }>;
const ruleMaps = (): RuleMap[] => Array.from({ length: 129 }, () => new Map());

/**
 * The IPv6 rule list, kept in step with an LPM backend. Per prefix length,
 * a map from normalised prefix to next hop: finding the covering rule of a
 * prefix is at most 128 map probes (empty lengths are skipped), and so is
 * lookupRule.
 *
 * Invalid arguments (bad address or length) throw; table results (E_FULL,
 * E_RANGE for a next hop the table can't hold) come back as status codes.
 */
export class RouteRules6 {
  private readonly byLen: RuleMap[] = ruleMaps();
  private count = 0;

  constructor(private readonly backend: Lpm6Backend) {}

  /** Number of rules. */
  get size(): number {
    return this.count;
  }

  /** Add or replace prefix/len -> nh (host bits of prefix are ignored).
   *  Returns the backend status; the rule is recorded only on OK. */
  add(prefix: string | bigint, len: number, nh: number): number {
    checkLen6(len);
    const p = toAddr6(prefix) & maskOf6(len);
    const st = this.backend.insert(p, len, nh);
    if (st !== OK) return st;
    const m = this.byLen[len];
    const k = keyOf(p);
    if (!m.has(k)) this.count++;
    m.set(k, { prefix: p, nh });
    return OK;
  }

  /** Remove prefix/len. Returns OK, the backend status, or E_NOT_FOUND (-3)
   *  when there is no such rule (nothing is sent to the table then). */
  remove(prefix: string | bigint, len: number): number {
    checkLen6(len);
    const p = toAddr6(prefix) & maskOf6(len);
    const m = this.byLen[len];
    const k = keyOf(p);
    if (!m.has(k)) return E_NOT_FOUND;
    const cover = this.covering(p, len);
    const st = cover ? this.backend.delete(p, len, cover.nh, cover.len) : this.backend.delete(p, len, LPM_MISS, 0);
    if (st !== OK) return st;
    m.delete(k);
    this.count--;
    return OK;
  }

  /** The next hop of prefix/len exactly, or undefined. */
  get(prefix: string | bigint, len: number): number | undefined {
    checkLen6(len);
    return this.byLen[len].get(keyOf(toAddr6(prefix) & maskOf6(len)))?.nh;
  }

  /** The longest rule containing `addr`, or undefined: what the table should answer. */
  lookupRule(addr: string | bigint): Route6 | undefined {
    return this.longestAtMost(toAddr6(addr), 128);
  }

  /** Every rule, shortest prefixes first, then by address. */
  entries(): Route6[] {
    const out: Route6[] = [];
    for (let len = 0; len <= 128; len++) {
      const rules = [...this.byLen[len].values()].sort((a, b) => byPrefix(a.prefix, b.prefix));
      for (const { prefix, nh } of rules) out.push({ prefix, len, nh });
    }
    return out;
  }

  /**
   * Make the rule list equal `rules` touching only the differences, and
   * return counts. New and changed rules are written first and vanished ones
   * deleted after, so a route that moves (fd00:1::/64 -> fd00:1::/63) never
   * leaves a moment with no route. Adds refused for lack of groups are
   * retried once after the deletes have freed some. Later duplicates in
   * `rules` win; writes that still fail are listed in `failed`.
   */
  replaceAll(rules: Iterable<{ prefix: string | bigint; len: number; nh: number }>): ReplaceResult6 {
    const want = ruleMaps();
    for (const r of rules) {
      checkLen6(r.len);
      const p = toAddr6(r.prefix) & maskOf6(r.len);
      want[r.len].set(keyOf(p), { prefix: p, nh: r.nh });
    }
    const res: ReplaceResult6 = { added: 0, changed: 0, removed: 0, unchanged: 0, failed: [] };
    const retry: Route6[] = [];
    const put = (route: Route6, last: boolean): void => {
      const cur = this.byLen[route.len].get(keyOf(route.prefix));
      const st = this.add(route.prefix, route.len, route.nh);
      if (st === OK) {
        if (cur === undefined) res.added++;
        else res.changed++;
      } else if (st === E_FULL && !last) retry.push(route);
      else res.failed.push({ route, status: st });
    };
    for (let len = 0; len <= 128; len++) {
      for (const [k, { prefix, nh }] of want[len]) {
        if (this.byLen[len].get(k)?.nh === nh) res.unchanged++;
        else put({ prefix, len, nh }, false);
      }
    }
    for (let len = 128; len >= 0; len--) {
      for (const [k, { prefix, nh }] of [...this.byLen[len]]) {
        if (want[len].has(k)) continue;
        const st = this.remove(prefix, len);
        if (st !== OK) res.failed.push({ route: { prefix, len, nh }, status: st });
        else res.removed++;
      }
    }
    for (const route of retry) put(route, true);
    return res;
  }

  /** The longest rule strictly shorter than `len` that contains prefix/len. */
  private covering(prefix: bigint, len: number): Route6 | undefined {
    return len === 0 ? undefined : this.longestAtMost(prefix, len - 1);
  }

  private longestAtMost(addr: bigint, maxLen: number): Route6 | undefined {
    for (let len = maxLen; len >= 0; len--) {
      const m = this.byLen[len];
      if (m.size === 0) continue;
      const r = m.get(keyOf(addr & maskOf6(len)));
      if (r !== undefined) return { prefix: r.prefix, len, nh: r.nh };
    }
    return undefined;
  }
}
