// The naive twin of assembly/tables/hash.ts: a Map with the same capacity
// rule and status codes, so property tests can compare every answer.
const OK = 0;
const E_FULL = -1;
const E_NOT_FOUND = -3;

const U64 = (1n << 64n) - 1n;

export class SlowHash {
  private readonly map = new Map<bigint, bigint>();
  /** Slots the WASM table has: capacity rounded up to a power of two, >= 8. */
  readonly capacity: number;
  /** Keys it accepts: 7/8 of the slots. */
  readonly limit: number;

  constructor(capacity: number) {
    let cap = 8;
    while (cap < capacity) cap *= 2;
    this.capacity = cap;
    this.limit = cap - cap / 8;
  }

  put(key: bigint, value: bigint): number {
    key &= U64;
    if (!this.map.has(key) && this.map.size >= this.limit) return E_FULL;
    this.map.set(key, value & U64);
    return OK;
  }

  get(key: bigint): bigint | undefined {
    return this.map.get(key & U64);
  }

  delete(key: bigint): number {
    return this.map.delete(key & U64) ? OK : E_NOT_FOUND;
  }

  clear(): void {
    this.map.clear();
  }

  get count(): number {
    return this.map.size;
  }

  entries(): IterableIterator<[bigint, bigint]> {
    return this.map.entries();
  }
}
