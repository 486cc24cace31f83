// The naive twin of assembly/tables/lpm.ts: a flat rule list scanned in full
// on every lookup. Obviously correct, hopelessly slow; property tests drive
// it and the WASM table with the same operations and compare answers.

export const SLOW_MISS = 0xffffffff;

function mask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export class SlowLpm {
  // Keyed by "prefix/len" only so that loading 100k rules isn't quadratic;
  // lookups still scan every rule.
  private rules = new Map<string, { prefix: number; len: number; nh: number }>();

  /** Add or replace prefix/len -> nh (host bits ignored). */
  add(prefix: number, len: number, nh: number): void {
    const p = (prefix & mask(len)) >>> 0;
    this.rules.set(`${p}/${len}`, { prefix: p, len, nh });
  }

  /** Remove prefix/len; returns whether it was there. */
  remove(prefix: number, len: number): boolean {
    return this.rules.delete(`${(prefix & mask(len)) >>> 0}/${len}`);
  }

  /** Next hop of the longest rule containing ip, or SLOW_MISS. */
  lookup(ip: number): number {
    let best = -1;
    let nh = SLOW_MISS;
    for (const r of this.rules.values()) {
      if (r.len > best && ((ip & mask(r.len)) >>> 0) === r.prefix) {
        best = r.len;
        nh = r.nh;
      }
    }
    return nh;
  }

  get size(): number {
    return this.rules.size;
  }
}
