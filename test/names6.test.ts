// The IPv6 address names of the connection table (assembly/nat/names6.ts),
// through the exports the control plane uses (ct6Pin / ct6Unpin / ct6Addr)
// and ctCreate / ctDelete, against a naive model with fast-check: the same
// address keeps its handle while it is referenced, the count is exactly the
// addresses referenced, a handle reads back its address, the last reference
// frees the name, a full table refuses a new name and nothing else, and
// ctCreate refuses handles that name nothing.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { bigintToIpv6 } from "../src/config/net6.js";

const NONE = 0xffffffff;
const V6 = 0x80;

function table(names: number, seed?: Uint8Array) {
  const dp = new Dataplane({ batch: 8, tbl8Groups: 16 });
  dp.natSetup({ maxFlows: 256, names6: names, hashSeed: seed });
  return dp;
}
const split = (a: bigint) => [BigInt.asUintN(64, a >> 64n), BigInt.asUintN(64, a)] as const;
const pin = (dp: Dataplane, a: bigint) => (dp.raw.ct6Pin(...split(a)) as number) >>> 0;
const addrOf = (dp: Dataplane, h: number) => {
  const p = Number(dp.raw.ct6Addr(h));
  let v = 0n;
  for (let i = 0; i < 16; i += 4) v = (v << 32n) | BigInt(dp.dv.getUint32(p + i, false));
  return v;
};
const count = (dp: Dataplane) => dp.raw.ct6NameCount() as number;

describe("IPv6 address names (names6.ts)", () => {
  it("behave like a reference-counted map under random pins and unpins", () => {
    // A small pool of addresses, some differing only in their low or high half.
    const pool = Array.from({ length: 24 }, (_, i) => (0x20010002n << 96n) | (BigInt(i % 6) << 64n) | BigInt(Math.floor(i / 6)));
    // One table for every run (an instance is big); each run gives back
    // every reference it took, so the next starts from an empty table.
    const cap = 16;
    const dp = table(cap, Uint8Array.from({ length: 16 }, (_, i) => i * 37));
    fc.assert(fc.property(
      fc.array(fc.record({ pin: fc.boolean(), k: fc.nat(pool.length - 1) }), { maxLength: 300 }),
      (ops) => {
        expect(count(dp)).toBe(0);
        const refs = new Map<bigint, number>();
        const handles = new Map<bigint, number>();
        for (const op of ops) {
          const a = pool[op.k];
          if (op.pin) {
            const h = pin(dp, a);
            if ((refs.get(a) ?? 0) === 0 && refs.size >= cap) {
              expect(h).toBe(NONE); // full: refused, nothing else changes
              continue;
            }
            expect(h).not.toBe(NONE);
            if (handles.has(a)) expect(h).toBe(handles.get(a));
            handles.set(a, h);
            refs.set(a, (refs.get(a) ?? 0) + 1);
            expect(addrOf(dp, h)).toBe(a);
          } else if (refs.has(a)) {
            dp.raw.ct6Unpin(handles.get(a)!);
            const r = refs.get(a)! - 1;
            if (r === 0) {
              refs.delete(a);
              handles.delete(a);
            } else refs.set(a, r);
          } else {
            // Unpinning a handle that names nothing (freed, never used) changes nothing.
            dp.raw.ct6Unpin(cap - 1);
            dp.raw.ct6Unpin(NONE);
          }
          expect(count(dp)).toBe(refs.size);
        }
        for (const [a, h] of handles) expect(addrOf(dp, h)).toBe(a);
        for (const [a, r] of refs) for (let i = 0; i < r; i++) dp.raw.ct6Unpin(handles.get(a)!);
        expect(count(dp)).toBe(0);
      },
    ), { numRuns: 300 });
  });

  it("flows hold their names: ctCreate takes a reference for each address, ctDelete gives them back", () => {
    const dp = table(64);
    const a = pin(dp, 0x20010002000000010000000000000005n);
    const b = pin(dp, 0x200100020000ff020000000000000100n);
    const n = pin(dp, 0x200100020000ff000000000000000011n);
    const f = dp.raw.ctCreate(V6 | 17, a, b, 40000, 53, b, n, 53, 61000, 1, 100) as number;
    expect(f).toBeGreaterThanOrEqual(0);
    // The pins go: the flow still holds all three.
    for (const h of [a, b, n]) dp.raw.ct6Unpin(h);
    expect(count(dp)).toBe(3);
    expect(bigintToIpv6(addrOf(dp, b))).toBe("2001:2:0:ff02::100");
    dp.raw.ctDelete(f);
    expect(count(dp)).toBe(0);
  });

  it("ctCreate refuses IPv6 keys whose handles name nothing, and IPv6 keys without a name table", () => {
    const dp = table(8);
    const a = pin(dp, 1n);
    expect(dp.raw.ctCreate(V6 | 6, a, 5, 1, 2, 5, a, 2, 1, 0, 100)).toBe(-2); // E_RANGE: handle 5 was never handed out
    dp.raw.ct6Unpin(a);
    expect(dp.raw.ctCreate(V6 | 6, a, a, 1, 2, a, a, 2, 1, 0, 100)).toBe(-2); // a was freed
    expect(count(dp)).toBe(0);
    const plain = new Dataplane({ batch: 8, tbl8Groups: 16 });
    plain.natSetup({ maxFlows: 16 });
    expect(plain.raw.ctCreate(V6 | 6, 0, 0, 1, 2, 0, 0, 2, 1, 0, 100)).toBe(-2);
    expect(plain.raw.ct6NameCapacity()).toBe(0);
    expect((plain.raw.ct6Pin(0n, 1n) as number) >>> 0).toBe(NONE);
  });
});
