// The linear-memory hash table against a Map (its naive twin), driven by the
// same random operations.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane } from "../src/dataplane/wasm.js";

const raw = instantiateDataplane("debug");

type Op = { kind: "put"; key: bigint; value: bigint } | { kind: "del"; key: bigint } | { kind: "get"; key: bigint };

describe("htPut/htFind/htDelete vs Map", () => {
  it("agree on random operation sequences, clustered keys included", () => {
    // Few distinct keys (so deletes hit) from a small range (so probe chains cluster).
    const key = fc.oneof(fc.bigInt({ min: 0n, max: 40n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("put" as const), key, value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
      fc.record({ kind: fc.constant("del" as const), key }),
      fc.record({ kind: fc.constant("get" as const), key }),
    );
    const t = raw.htCreate(64);
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        raw.htClear(t);
        const twin = new Map<bigint, bigint>();
        for (const o of ops) {
          if (o.kind === "put") {
            const r = raw.htPut(t, o.key, o.value);
            if (twin.has(o.key) || twin.size < 56) {
              expect(r).toBe(abi.OK);
              twin.set(o.key, o.value);
            } else {
              expect(r).toBe(abi.E_FULL);
            }
          } else if (o.kind === "del") {
            expect(raw.htDelete(t, o.key)).toBe(twin.delete(o.key) ? abi.OK : abi.E_NOT_FOUND);
          }
          // After every operation every key the twin holds is findable with its value.
          for (const [k, v] of twin) {
            const s = raw.htFind(t, k);
            expect(s).toBeGreaterThanOrEqual(0);
            expect(BigInt.asUintN(64, raw.htValueAt(t, s))).toBe(v);
          }
          if (o.kind === "get" && !twin.has(o.key)) expect(raw.htFind(t, o.key)).toBe(-1);
          expect(raw.htCount(t)).toBe(twin.size);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("a full table refuses new keys, keeps old ones and still updates them", () => {
    const t = raw.htCreate(16);
    expect(raw.htCapacity(t)).toBe(16);
    for (let k = 0n; k < 14n; k++) expect(raw.htPut(t, k, k * 10n)).toBe(abi.OK);
    expect(raw.htPut(t, 99n, 1n)).toBe(abi.E_FULL);
    expect(raw.htFind(t, 99n)).toBe(-1);
    expect(raw.htPut(t, 3n, 333n)).toBe(abi.OK);
    expect(raw.htValueAt(t, raw.htFind(t, 3n))).toBe(333n);
    for (let k = 0n; k < 14n; k++) if (k !== 3n) expect(raw.htValueAt(t, raw.htFind(t, k))).toBe(k * 10n);
    expect(raw.htDelete(t, 5n)).toBe(abi.OK);
    expect(raw.htPut(t, 99n, 1n)).toBe(abi.OK);
  });

  it("capacity rounds up to a power of two", () => {
    expect(raw.htCapacity(raw.htCreate(1000))).toBe(1024);
    expect(raw.htCapacity(raw.htCreate(1))).toBe(8);
  });
});
