// The naive twin of assembly/tables/lpm.ts: a flat rule list scanned in full
// on every lookup. Obviously correct, hopelessly slow; property tests drive
// it and the WASM table with the same operations and compare answers.

export const SLOW_MISS = 0xffffffff;

function mask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export class SlowLpm {
  private rules: { prefix: number; len: number; nh: number }[] = [];

  /** Add or replace prefix/len -> nh (host bits ignored). */
  add(prefix: number, len: number, nh: number): void {
    const p = (prefix & mask(len)) >>> 0;
    const r = this.rules.find((x) => x.prefix === p && x.len === len);
    if (r) r.nh = nh;
    else this.rules.push({ prefix: p, len, nh });
  }

  /** Remove prefix/len; returns whether it was there. */
  remove(prefix: number, len: number): boolean {
    const p = (prefix & mask(len)) >>> 0;
    const i = this.rules.findIndex((x) => x.prefix === p && x.len === len);
    if (i < 0) return false;
    this.rules.splice(i, 1);
    return true;
  }

  /** Next hop of the longest rule containing ip, or SLOW_MISS. */
  lookup(ip: number): number {
    let best = -1;
    let nh = SLOW_MISS;
    for (const r of this.rules) {
      if (r.len > best && ((ip & mask(r.len)) >>> 0) === r.prefix) {
        best = r.len;
        nh = r.nh;
      }
    }
    return nh;
  }

  get size(): number {
    return this.rules.length;
  }
}
