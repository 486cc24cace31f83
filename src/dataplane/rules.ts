// The route rule list of one address family, kept in step with its LPM
// table: the control plane's source of truth for routes (routes.ts for
// IPv4, routes6.ts for IPv6 are this class with their family).
//
// The WASM LPMs (assembly/tables/lpm.ts, lpm6.ts) hold only a derived table
// and cannot tell which rule an entry came from. So, as in DPDK rte_lpm,
// the rules live here: on delete we find the rule that takes over the
// deleted prefix's addresses (the longest shorter rule containing it) and
// hand it to the table.

/** Next hop returned by the WASM lookups when nothing matches. */
export const LPM_MISS = 0xffffffff;
/** Largest next-hop index the tables can hold. */
export const LPM_MAX_NH = 0xfffffe;

const OK = 0;
const E_FULL = -1;
const E_NOT_FOUND = -3;

/** The table operations a rule list drives (Dataplane.lpmBackend,
 *  lpm6Backend). Both return a status code (0 = OK, negative = error),
 *  never throw. */
export interface Backend<A> {
  insert(addr: A, depth: number, nh: number): number;
  delete(addr: A, depth: number, subNh: number, subDepth: number): number;
}

/** What the rule list needs to know of an address family. */
export interface AddressFamily<A> {
  /** Address bits: the longest prefix. */
  bits: number;
  /** An address given as text or as a value, checked; throws naming what is wrong. */
  toAddr(a: string | A): A;
  /** `a` with all but the top `len` bits cleared. */
  mask(a: A, len: number): A;
  /** A map key for a prefix (its value where that hashes well). */
  key(a: A): number | string;
  compare(a: A, b: A): number;
}

export interface RouteOf<A> {
  /** Network address, host bits zero. */
  prefix: A;
  len: number;
  nh: number;
}

export interface ReplaceResultOf<A> {
  added: number;
  changed: number;
  removed: number;
  unchanged: number;
  /** Rules whose table write failed, with the status. The rule list keeps
   *  only what the table accepted. */
  failed: { route: RouteOf<A>; status: number }[];
}

/** Per prefix length: key -> the rule's prefix and next hop. */
type RuleMap<A> = Map<number | string, { prefix: A; nh: number }>;

/**
 * The rule list. Per prefix length, a map from normalised prefix to next
 * hop: finding the covering rule of a prefix is at most `bits` map probes
 * (empty lengths are skipped), and so is lookupRule.
 *
 * Invalid arguments (bad address or length) throw; table results (E_FULL,
 * E_RANGE for a next hop the table can't hold) come back as status codes.
 */
export class PrefixRules<A> {
  private readonly byLen: RuleMap<A>[];
  private count = 0;

  constructor(private readonly family: AddressFamily<A>, private readonly backend: Backend<A>) {
    this.byLen = this.maps();
  }

  /** Number of rules. */
  get size(): number {
    return this.count;
  }

  /** Add or replace prefix/len -> nh (host bits of prefix are ignored).
   *  Returns the backend status; the rule is recorded only on OK. */
  add(prefix: string | A, len: number, nh: number): number {
    const p = this.normal(prefix, len);
    const st = this.backend.insert(p, len, nh);
    if (st !== OK) return st;
    const m = this.byLen[len];
    const k = this.family.key(p);
    if (!m.has(k)) this.count++;
    m.set(k, { prefix: p, nh });
    return OK;
  }

  /** Remove prefix/len. Returns OK, the backend status, or E_NOT_FOUND (-3)
   *  when there is no such rule (nothing is sent to the table then). */
  remove(prefix: string | A, len: number): number {
    const p = this.normal(prefix, len);
    const m = this.byLen[len];
    const k = this.family.key(p);
    if (!m.has(k)) return E_NOT_FOUND;
    const cover = this.covering(p, len);
    const st = cover ? this.backend.delete(p, len, cover.nh, cover.len) : this.backend.delete(p, len, LPM_MISS, 0);
    if (st !== OK) return st;
    m.delete(k);
    this.count--;
    return OK;
  }

  /** The next hop of prefix/len exactly, or undefined. */
  get(prefix: string | A, len: number): number | undefined {
    return this.byLen[len].get(this.family.key(this.normal(prefix, len)))?.nh;
  }

  /** The longest rule containing `addr`, or undefined: what the table should answer. */
  lookupRule(addr: string | A): RouteOf<A> | undefined {
    return this.longestAtMost(this.family.toAddr(addr), this.family.bits);
  }

  /** Every rule, shortest prefixes first, then by address. */
  entries(): RouteOf<A>[] {
    const out: RouteOf<A>[] = [];
    this.byLen.forEach((m, len) => {
      const rules = [...m.values()].sort((a, b) => this.family.compare(a.prefix, b.prefix));
      for (const { prefix, nh } of rules) out.push({ prefix, len, nh });
    });
    return out;
  }

  /**
   * Make the rule list equal `rules` touching only the differences, and
   * return counts. New and changed rules are written first and vanished ones
   * deleted after, so a route that moves (10.1.0.0/24 -> 10.1.0.0/23) never
   * leaves a moment with no route. Adds refused for lack of table groups are
   * retried once after the deletes have freed some. Later duplicates in
   * `rules` win; writes that still fail are listed in `failed`.
   */
  replaceAll(rules: Iterable<{ prefix: string | A; len: number; nh: number }>): ReplaceResultOf<A> {
    const want = this.maps();
    for (const r of rules) {
      const p = this.normal(r.prefix, r.len);
      want[r.len].set(this.family.key(p), { prefix: p, nh: r.nh });
    }
    const res: ReplaceResultOf<A> = { added: 0, changed: 0, removed: 0, unchanged: 0, failed: [] };
    const retry: RouteOf<A>[] = [];
    const put = (route: RouteOf<A>, last: boolean): void => {
      const cur = this.byLen[route.len].get(this.family.key(route.prefix));
      const st = this.add(route.prefix, route.len, route.nh);
      if (st === OK) {
        if (cur === undefined) res.added++;
        else res.changed++;
      } else if (st === E_FULL && !last) retry.push(route);
      else res.failed.push({ route, status: st });
    };
    want.forEach((m, len) => {
      for (const [k, { prefix, nh }] of m) {
        if (this.byLen[len].get(k)?.nh === nh) res.unchanged++;
        else put({ prefix, len, nh }, false);
      }
    });
    for (let len = this.family.bits; len >= 0; len--) {
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

  private maps(): RuleMap<A>[] {
    return Array.from({ length: this.family.bits + 1 }, () => new Map());
  }

  /** prefix/len checked, host bits cleared. */
  private normal(prefix: string | A, len: number): A {
    if (!Number.isInteger(len) || len < 0 || len > this.family.bits) throw new RangeError(`invalid prefix length ${len}: not 0..${this.family.bits}`);
    return this.family.mask(this.family.toAddr(prefix), len);
  }

  /** The longest rule strictly shorter than `len` that contains prefix/len. */
  private covering(prefix: A, len: number): RouteOf<A> | undefined {
    return len === 0 ? undefined : this.longestAtMost(prefix, len - 1);
  }

  private longestAtMost(addr: A, maxLen: number): RouteOf<A> | undefined {
    for (let len = maxLen; len >= 0; len--) {
      const m = this.byLen[len];
      if (m.size === 0) continue;
      const r = m.get(this.family.key(this.family.mask(addr, len)));
      if (r !== undefined) return { prefix: r.prefix, len, nh: r.nh };
    }
    return undefined;
  }
}
