// The linear-memory hash table (assembly/tables/hash.ts) against its naive
// twin (test/reference/slow-hash.ts), driven by the same random operations,
// plus the layout, full-table and backward-shift cases spelled out.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane } from "../src/dataplane/wasm.js";
import { SlowHash } from "./reference/slow-hash.js";

const raw = instantiateDataplane("debug");
const u64 = (x: bigint) => BigInt.asUintN(64, x);
const HDR = 64;
const SLOT = 24;

function valueOf(t: number, key: bigint): bigint | undefined {
  const s: number = raw.htFind(t, key);
  return s < 0 ? undefined : u64(raw.htValueAt(t, s));
}

/** Every used slot must be reachable from its home without crossing an
 *  empty slot: the invariant backward-shift deletion has to keep. */
function assertProbeInvariant(t: number): void {
  const cap: number = raw.htCapacity(t);
  let used = 0;
  for (let i = 0; i < cap; i++) {
    if (!raw.htUsedAt(t, i)) continue;
    used++;
    const key = u64(raw.htKeyAt(t, i));
    for (let j = raw.htHomeOf(t, key); j !== i; j = (j + 1) & (cap - 1)) {
      if (!raw.htUsedAt(t, j)) throw new Error(`slot ${j} empty between home and slot ${i} of key ${key}`);
    }
    if (raw.htFind(t, key) !== i) throw new Error(`key ${key} in slot ${i} not found there`);
  }
  if (used !== raw.htCount(t)) throw new Error(`count ${raw.htCount(t)} but ${used} slots used`);
}

/** `n` distinct keys whose home slots all lie in [home, home + spread). */
function keysNear(t: number, home: number, spread: number, n: number): bigint[] {
  const cap: number = raw.htCapacity(t);
  const out: bigint[] = [];
  for (let k = 0n; out.length < n; k++) {
    const h: number = raw.htHomeOf(t, k);
    if (((h - home + cap) & (cap - 1)) < spread) out.push(k);
  }
  return out;
}

type Op = { kind: "put"; key: bigint; value: bigint } | { kind: "del"; key: bigint } | { kind: "get"; key: bigint };

describe("hash table layout", () => {
  it("header and slots sit where the diagram says", () => {
    const t: number = raw.htCreate(16);
    expect(t % 64).toBe(0);
    raw.htPut(t, 0x1122334455667788n, 0x99aabbccddeeff00n);
    const dv = new DataView(raw.memory.buffer);
    expect(dv.getUint32(t + 0, true)).toBe(16); // capacity
    expect(dv.getUint32(t + 4, true)).toBe(15); // mask
    expect(dv.getUint32(t + 8, true)).toBe(1); // count
    expect(dv.getUint32(t + 12, true)).toBe(14); // limit = 7/8
    const s: number = raw.htFind(t, 0x1122334455667788n);
    expect(s).toBe(raw.htHomeOf(t, 0x1122334455667788n));
    const p = t + HDR + s * SLOT;
    expect(dv.getBigUint64(p, true)).toBe(0x1122334455667788n);
    expect(dv.getBigUint64(p + 8, true)).toBe(0x99aabbccddeeff00n);
    expect(dv.getUint32(p + 16, true)).toBe(1);
  });

  it("capacity rounds up to a power of two, at least 8; absurd sizes get 0", () => {
    expect(raw.htCapacity(raw.htCreate(1000))).toBe(1024);
    expect(raw.htCapacity(raw.htCreate(1024))).toBe(1024);
    expect(raw.htCapacity(raw.htCreate(1))).toBe(8);
    expect(raw.htCapacity(raw.htCreate(0))).toBe(8);
    expect(raw.htCreate(0x80000000)).toBe(0);
    expect(raw.htCreate((1 << 26) + 1)).toBe(0);
  });

  it("keys and values use all 64 bits, including 0 and all-ones", () => {
    const t: number = raw.htCreate(8);
    const max = (1n << 64n) - 1n;
    expect(raw.htPut(t, 0n, max)).toBe(abi.OK);
    expect(raw.htPut(t, max, 0n)).toBe(abi.OK);
    expect(raw.htPut(t, 1n << 63n, 5n)).toBe(abi.OK);
    expect(valueOf(t, 0n)).toBe(max);
    expect(valueOf(t, max)).toBe(0n);
    expect(valueOf(t, 1n << 63n)).toBe(5n);
    expect(valueOf(t, 1n)).toBeUndefined();
  });
});

describe("hash table: full, clear, delete", () => {
  it("a full table refuses new keys, changes nothing, and still updates old ones", () => {
    const t: number = raw.htCreate(16);
    for (let k = 0n; k < 14n; k++) expect(raw.htPut(t, k, k * 10n)).toBe(abi.OK);
    const before = new Uint8Array(raw.memory.buffer, t, HDR + 16 * SLOT).slice();
    expect(raw.htPut(t, 99n, 1n)).toBe(abi.E_FULL);
    expect(new Uint8Array(raw.memory.buffer, t, HDR + 16 * SLOT)).toEqual(before);
    expect(raw.htFind(t, 99n)).toBe(-1);
    expect(raw.htCount(t)).toBe(14);
    expect(raw.htPut(t, 3n, 333n)).toBe(abi.OK);
    expect(valueOf(t, 3n)).toBe(333n);
    for (let k = 0n; k < 14n; k++) if (k !== 3n) expect(valueOf(t, k)).toBe(k * 10n);
    expect(raw.htDelete(t, 5n)).toBe(abi.OK);
    expect(raw.htPut(t, 99n, 1n)).toBe(abi.OK);
    expect(raw.htPut(t, 100n, 1n)).toBe(abi.E_FULL);
    assertProbeInvariant(t);
  });

  it("delete of a missing key is E_NOT_FOUND and changes nothing; clear empties", () => {
    const t: number = raw.htCreate(32);
    for (let k = 1n; k <= 20n; k++) raw.htPut(t, k, k);
    expect(raw.htDelete(t, 1000n)).toBe(abi.E_NOT_FOUND);
    expect(raw.htCount(t)).toBe(20);
    expect(raw.htDelete(t, 7n)).toBe(abi.OK);
    expect(raw.htDelete(t, 7n)).toBe(abi.E_NOT_FOUND);
    raw.htClear(t);
    expect(raw.htCount(t)).toBe(0);
    for (let k = 1n; k <= 20n; k++) expect(raw.htFind(t, k)).toBe(-1);
    expect(raw.htCapacity(t)).toBe(32);
  });

  it("backward shift keeps one long cluster findable, deleting in any order", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 56 }), fc.infiniteStream(fc.nat()),
        (home, spread, n, picks) => {
          const t: number = raw.htCreate(64);
          // Keys all homed within a few slots of `home` (wrapping past the end
          // of the table when home is near 63) form one cluster.
          const keys = keysNear(t, home, spread, n);
          keys.forEach((k, i) => expect(raw.htPut(t, k, BigInt(i))).toBe(abi.OK));
          assertProbeInvariant(t);
          const live = keys.map((k, i) => [k, BigInt(i)] as const);
          const it = picks[Symbol.iterator]();
          while (live.length) {
            const [k] = live.splice(it.next().value % live.length, 1)[0];
            expect(raw.htDelete(t, k)).toBe(abi.OK);
            assertProbeInvariant(t);
            for (const [lk, lv] of live) if (valueOf(t, lk) !== lv) throw new Error(`lost ${lk} after deleting ${k}`);
            if (raw.htFind(t, k) !== -1) throw new Error(`deleted ${k} still found`);
          }
          expect(raw.htCount(t)).toBe(0);
        }),
      { numRuns: 150 },
    );
  });
});

describe("hash table vs Map twin", () => {
  it("agree on random operation sequences (clustered and full-range keys)", () => {
    // Few distinct small keys so deletes hit and chains cluster; some large.
    const key = fc.oneof(fc.bigInt({ min: 0n, max: 40n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("put" as const), key, value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
      fc.record({ kind: fc.constant("del" as const), key }),
      fc.record({ kind: fc.constant("get" as const), key }),
    );
    const t: number = raw.htCreate(64);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        raw.htClear(t);
        const twin = new SlowHash(64);
        for (const o of ops) {
          if (o.kind === "put") expect(raw.htPut(t, o.key, o.value)).toBe(twin.put(o.key, o.value));
          else if (o.kind === "del") expect(raw.htDelete(t, o.key)).toBe(twin.delete(o.key));
          else expect(valueOf(t, o.key)).toBe(twin.get(o.key));
          expect(raw.htCount(t)).toBe(twin.count);
        }
        for (const [k, v] of twin.entries()) expect(valueOf(t, k)).toBe(v);
        assertProbeInvariant(t);
      }),
      { numRuns: 200 },
    );
  });

  it("agree when driven to full and drained again, tiny table", () => {
    const key = fc.bigInt({ min: 0n, max: 20n });
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant("put" as const), key, value: fc.bigInt({ min: 0n, max: 1000n }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("del" as const), key }) },
    );
    const t: number = raw.htCreate(8);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        raw.htClear(t);
        const twin = new SlowHash(8);
        for (const o of ops) {
          if (o.kind === "put") expect(raw.htPut(t, o.key, o.value)).toBe(twin.put(o.key, o.value));
          else expect(raw.htDelete(t, o.key)).toBe(twin.delete(o.key));
          expect(raw.htCount(t)).toBe(twin.count);
        }
        for (let k = 0n; k <= 20n; k++) expect(valueOf(t, k)).toBe(twin.get(k));
        assertProbeInvariant(t);
      }),
      { numRuns: 300 },
    );
  });

  it("enumeration (htUsedAt/htKeyAt) lists exactly the twin's keys", () => {
    const t: number = raw.htCreate(256);
    const twin = new SlowHash(256);
    let x = 0x9e3779b97f4a7c15n;
    for (let i = 0; i < 400; i++) {
      x = u64(x * 6364136223846793005n + 1442695040888963407n);
      const k = x >> 56n; // 256 possible keys: plenty of repeats
      if (i % 3 === 2) expect(raw.htDelete(t, k)).toBe(twin.delete(k));
      else expect(raw.htPut(t, k, x)).toBe(twin.put(k, x));
    }
    const seen = new Map<bigint, bigint>();
    for (let i = 0; i < raw.htCapacity(t); i++) {
      if (raw.htUsedAt(t, i)) seen.set(u64(raw.htKeyAt(t, i)), u64(raw.htValueAt(t, i)));
    }
    expect(seen).toEqual(new Map(twin.entries()));
    expect(raw.htUsedAt(t, raw.htCapacity(t))).toBe(0);
  });
});
