// The DIR-24-8 LPM (assembly/tables/lpm.ts) driven through RouteRules, against
// SlowLpm, its linear-scan twin. Instances cost 64 MiB+ each, so the file
// keeps three: a tiny one (4 tbl8 groups), one for properties, a big one.
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { LPM_MISS, RouteRules, formatIpv4, parseCidr, parseIpv4, prefixMask } from "../src/dataplane/routes.js";
import { instantiateDataplane } from "../src/dataplane/wasm.js";
import { SlowLpm } from "./reference/slow-lpm.js";

const ip = parseIpv4;

const tiny = new Dataplane({ kind: "debug", tbl8Groups: 4, batch: 1 });
const look = (dp: Dataplane, a: number | string): number => dp.raw.lpmLookup((typeof a === "string" ? ip(a) : a) >>> 0) >>> 0;

/** Groups the table must be using: one per /24 holding a rule longer than /24. */
function expectedGroups(rules: { prefix: number; len: number }[]): number {
  return new Set(rules.filter((r) => r.len > 24).map((r) => r.prefix >>> 8)).size;
}

describe("lpm module", () => {
  it("exports LPM_MISS and agrees with the TS mirror", () => {
    expect(tiny.raw.lpmMiss() >>> 0).toBe(LPM_MISS);
    expect(tiny.raw.lpmTbl8Capacity()).toBe(4);
    expect(tiny.raw.lpmTbl8InUse()).toBe(0);
  });

  it("lpmSetup: E_RANGE for 0 or > 2^24 groups or a second call, E_NO_MEMORY past 4 GiB; E_NOT_INIT before setup", () => {
    const raw = instantiateDataplane("debug");
    expect(raw.lpmInsert(0, 8, 1)).toBe(abi.E_NOT_INIT);
    expect(raw.lpmDelete(0, 8, LPM_MISS, 0)).toBe(abi.E_NOT_INIT);
    expect(raw.lpmSetup(0)).toBe(abi.E_RANGE);
    expect(raw.lpmSetup(2 ** 24 + 1)).toBe(abi.E_RANGE);
    expect(raw.lpmSetup(2 ** 24)).toBe(abi.E_NO_MEMORY);
    expect(raw.lpmSetup(1 << 22)).toBe(abi.E_NO_MEMORY);
    expect(tiny.raw.lpmSetup(4)).toBe(abi.E_RANGE); // already set up by init
  });
});

describe("lpm edge cases (4 tbl8 groups)", () => {
  const dp = tiny;
  let routes: RouteRules;
  beforeEach(() => {
    dp.raw.lpmClear();
    routes = new RouteRules(dp.lpmBackend);
  });

  it("empty table misses everywhere", () => {
    for (const a of ["0.0.0.0", "10.1.2.3", "255.255.255.255"]) expect(look(dp, a)).toBe(LPM_MISS);
    expect(dp.lookup(ip("10.1.2.3"))).toBeUndefined();
  });

  it("/0 default route and /32 host route", () => {
    expect(routes.add("0.0.0.0", 0, 7)).toBe(abi.OK);
    expect(look(dp, "0.0.0.0")).toBe(7);
    expect(look(dp, "255.255.255.255")).toBe(7);
    expect(routes.add("10.1.2.3", 32, 9)).toBe(abi.OK);
    expect(look(dp, "10.1.2.3")).toBe(9);
    expect(look(dp, "10.1.2.2")).toBe(7);
    expect(look(dp, "10.1.2.4")).toBe(7);
    expect(routes.remove("10.1.2.3", 32)).toBe(abi.OK);
    expect(look(dp, "10.1.2.3")).toBe(7);
    expect(dp.raw.lpmTbl8InUse()).toBe(0);
    expect(routes.remove("0.0.0.0", 0)).toBe(abi.OK);
    expect(look(dp, "10.1.2.3")).toBe(LPM_MISS);
    expect(look(dp, "255.255.255.255")).toBe(LPM_MISS);
  });

  it("/24 and /25 boundaries", () => {
    routes.add("10.1.2.0", 24, 1);
    routes.add("10.1.2.128", 25, 2);
    expect(look(dp, "10.1.1.255")).toBe(LPM_MISS);
    expect(look(dp, "10.1.2.0")).toBe(1);
    expect(look(dp, "10.1.2.127")).toBe(1);
    expect(look(dp, "10.1.2.128")).toBe(2);
    expect(look(dp, "10.1.2.255")).toBe(2);
    expect(look(dp, "10.1.3.0")).toBe(LPM_MISS);
    expect(dp.raw.lpmTbl8InUse()).toBe(1);
  });

  it("masks host bits beyond the prefix length", () => {
    expect(routes.add("10.1.2.77", 24, 3)).toBe(abi.OK);
    expect(routes.entries()).toEqual([{ prefix: ip("10.1.2.0"), len: 24, nh: 3 }]);
    expect(look(dp, "10.1.2.0")).toBe(3);
    expect(dp.raw.lpmInsert(ip("10.9.9.200"), 25, 4)).toBe(abi.OK); // raw call, unmasked
    expect(look(dp, "10.9.9.128")).toBe(4);
    expect(look(dp, "10.9.9.127")).toBe(LPM_MISS);
  });

  it("re-inserting a prefix replaces its next hop, keeping longer prefixes", () => {
    routes.add("10.1.0.0", 16, 1);
    routes.add("10.1.2.0", 24, 2);
    routes.add("10.1.0.0", 16, 5);
    expect(routes.size).toBe(2);
    expect(look(dp, "10.1.3.1")).toBe(5);
    expect(look(dp, "10.1.2.1")).toBe(2);
  });

  it("nested prefixes: deletes restore the covering route", () => {
    routes.add("10.0.0.0", 8, 1);
    routes.add("10.1.0.0", 16, 2);
    routes.add("10.1.2.0", 24, 3);
    routes.add("10.1.2.0", 26, 4);
    routes.add("10.1.2.4", 30, 5);
    const probe = () => ["10.9.9.9", "10.1.9.9", "10.1.2.200", "10.1.2.60", "10.1.2.5"].map((a) => look(dp, a));
    expect(probe()).toEqual([1, 2, 3, 4, 5]);
    expect(routes.remove("10.1.2.0", 26)).toBe(abi.OK);
    expect(probe()).toEqual([1, 2, 3, 3, 5]);
    expect(routes.remove("10.1.2.0", 24)).toBe(abi.OK);
    expect(probe()).toEqual([1, 2, 2, 2, 5]);
    expect(routes.remove("10.1.0.0", 16)).toBe(abi.OK);
    expect(probe()).toEqual([1, 1, 1, 1, 5]);
    expect(routes.remove("10.1.2.4", 30)).toBe(abi.OK);
    expect(probe()).toEqual([1, 1, 1, 1, 1]);
    expect(dp.raw.lpmTbl8InUse()).toBe(0);
    expect(routes.remove("10.0.0.0", 8)).toBe(abi.OK);
    expect(probe()).toEqual(Array(5).fill(LPM_MISS));
    expect(routes.remove("10.0.0.0", 8)).toBe(abi.E_NOT_FOUND);
  });

  it("recycles tbl8 groups that become uniform", () => {
    routes.add("10.1.0.0", 16, 1);
    routes.add("10.1.2.0", 25, 2);
    routes.add("10.1.2.128", 25, 3);
    routes.add("10.1.3.7", 32, 4);
    expect(dp.raw.lpmTbl8InUse()).toBe(2);
    routes.remove("10.1.3.7", 32);
    expect(dp.raw.lpmTbl8InUse()).toBe(1);
    routes.remove("10.1.2.0", 25);
    expect(dp.raw.lpmTbl8InUse()).toBe(1); // 10.1.2.128/25 still needs it
    routes.remove("10.1.2.128", 25);
    expect(dp.raw.lpmTbl8InUse()).toBe(0);
    expect(look(dp, "10.1.2.200")).toBe(1);
    // A group emptied of everything (no covering rule) is recycled too.
    routes.add("10.7.7.0", 28, 9);
    expect(dp.raw.lpmTbl8InUse()).toBe(1);
    routes.remove("10.7.7.0", 28);
    expect(dp.raw.lpmTbl8InUse()).toBe(0);
    expect(look(dp, "10.7.7.1")).toBe(LPM_MISS);
  });

  it("E_FULL when no tbl8 group is free leaves the table and rule list intact", () => {
    routes.add("10.0.0.0", 8, 1);
    for (let i = 0; i < 4; i++) expect(routes.add(`10.0.${i}.128`, 25, 10 + i)).toBe(abi.OK);
    expect(dp.raw.lpmTbl8InUse()).toBe(4);
    const before = routes.entries();
    expect(routes.add("10.0.9.128", 25, 99)).toBe(abi.E_FULL);
    expect(routes.entries()).toEqual(before);
    expect(look(dp, "10.0.9.200")).toBe(1);
    for (let i = 0; i < 4; i++) {
      expect(look(dp, `10.0.${i}.200`)).toBe(10 + i);
      expect(look(dp, `10.0.${i}.1`)).toBe(1);
    }
    // An existing group still takes more prefixes, and shorter ones need none.
    expect(routes.add("10.0.0.4", 30, 50)).toBe(abi.OK);
    expect(routes.add("10.0.9.0", 24, 51)).toBe(abi.OK);
    expect(look(dp, "10.0.9.200")).toBe(51);
    // Freeing a group makes room again.
    expect(routes.remove("10.0.3.128", 25)).toBe(abi.OK);
    expect(routes.add("10.0.9.128", 25, 99)).toBe(abi.OK);
    expect(look(dp, "10.0.9.200")).toBe(99);
  });

  it("E_RANGE for depth > 32, next hop > 0xFFFFFE, and bad covering rules", () => {
    expect(dp.raw.lpmInsert(0, 33, 1)).toBe(abi.E_RANGE);
    expect(dp.raw.lpmInsert(0, 8, 0xffffff)).toBe(abi.E_RANGE);
    expect(routes.add("10.0.0.0", 8, 0xffffff)).toBe(abi.E_RANGE);
    expect(routes.size).toBe(0);
    expect(routes.add("10.0.0.0", 8, 0xfffffe)).toBe(abi.OK);
    expect(look(dp, "10.2.3.4")).toBe(0xfffffe);
    expect(dp.raw.lpmDelete(0, 33, LPM_MISS, 0)).toBe(abi.E_RANGE);
    expect(dp.raw.lpmDelete(ip("10.1.0.0"), 16, 1, 16)).toBe(abi.E_RANGE); // cover not shorter
    expect(dp.raw.lpmDelete(ip("10.1.0.0"), 16, 0xffffff, 8)).toBe(abi.E_RANGE);
  });

  it("entry layout in raw tbl24/tbl8 memory: V(31) X(30) depth(29..24) value(23..0)", () => {
    routes.add("10.0.0.0", 24, 5);
    routes.add("10.0.1.128", 25, 7);
    routes.add("10.0.1.0", 24, 6);
    const dv = dp.dv;
    const t24 = Number(dp.raw.lpmTbl24Base());
    const t8 = Number(dp.raw.lpmTbl8Base());
    const e24 = (a: string) => dv.getUint32(t24 + (ip(a) >>> 8) * 4, true);
    expect(e24("10.0.0.0")).toBe((0x80000000 | (24 << 24) | 5) >>> 0);
    expect(e24("10.0.2.0")).toBe(0);
    expect(e24("10.0.1.0")).toBe((0x80000000 | 0x40000000 | 0) >>> 0); // ext, group 0
    expect(dv.getUint32(t8 + 0 * 1024 + 128 * 4, true)).toBe((0x80000000 | (25 << 24) | 7) >>> 0);
    expect(dv.getUint32(t8 + 0 * 1024 + 127 * 4, true)).toBe((0x80000000 | (24 << 24) | 6) >>> 0);
  });
});

describe("RouteRules", () => {
  it("parseCidr normalises and rejects malformed input with a clear message", () => {
    expect(parseCidr("10.1.2.3/16")).toEqual({ prefix: ip("10.1.0.0"), len: 16 });
    expect(parseCidr("0.0.0.0/0")).toEqual({ prefix: 0, len: 0 });
    expect(parseCidr("255.255.255.255/32")).toEqual({ prefix: 0xffffffff, len: 32 });
    expect(() => parseCidr("10.1.2.3")).toThrow(/missing "\/len"/);
    expect(() => parseCidr("10.1.2.3/33")).toThrow(/prefix length "33"/);
    expect(() => parseCidr("10.1.2.3/")).toThrow(/prefix length/);
    expect(() => parseCidr("10.1.2/8")).toThrow(/four dotted numbers/);
    expect(() => parseCidr("10.1.2.256/8")).toThrow(/"256" is not 0..255/);
    expect(() => parseCidr("10.1.x.3/8")).toThrow(/invalid IPv4/);
    expect(formatIpv4(ip("198.19.2.0"))).toBe("198.19.2.0");
  });

  it("replaceAll writes only the differences and reports counts", () => {
    const calls: string[] = [];
    const r = new RouteRules({
      insert: (a, d, nh) => (calls.push(`+${formatIpv4(a)}/${d}=${nh}`), 0),
      delete: (a, d, sn, sd) => (calls.push(`-${formatIpv4(a)}/${d}>${sn === LPM_MISS ? "miss" : `${sn}/${sd}`}`), 0),
    });
    r.replaceAll([
      { prefix: "10.0.0.0", len: 8, nh: 1 },
      { prefix: "10.1.0.0", len: 16, nh: 2 },
      { prefix: "10.2.0.0", len: 16, nh: 3 },
    ]);
    calls.length = 0;
    const res = r.replaceAll([
      { prefix: "10.0.0.0", len: 8, nh: 1 }, // unchanged
      { prefix: "10.1.0.0", len: 16, nh: 4 }, // changed
      { prefix: "10.3.0.0", len: 16, nh: 5 }, // new
    ]);
    expect(res).toEqual({ added: 1, changed: 1, removed: 1, unchanged: 1, failed: [] });
    expect(calls).toEqual(["+10.1.0.0/16=4", "+10.3.0.0/16=5", "-10.2.0.0/16>1/8"]);
    expect(r.size).toBe(3);
    expect(r.lookupRule("10.3.4.5")).toEqual({ prefix: ip("10.3.0.0"), len: 16, nh: 5 });
    expect(r.lookupRule("11.0.0.0")).toBeUndefined();
  });

  it("replaceAll retries adds refused with E_FULL after its deletes", () => {
    const dp = tiny;
    dp.raw.lpmClear();
    const r = new RouteRules(dp.lpmBackend);
    const four = [0, 1, 2, 3].map((i) => ({ prefix: `10.0.${i}.0`, len: 25, nh: i }));
    expect(r.replaceAll(four).added).toBe(4);
    const res = r.replaceAll([...four.slice(1), { prefix: "10.0.9.0", len: 25, nh: 9 }]);
    expect(res).toEqual({ added: 1, changed: 0, removed: 1, unchanged: 3, failed: [] });
    expect(look(dp, "10.0.9.1")).toBe(9);
    expect(look(dp, "10.0.0.1")).toBe(LPM_MISS);
    expect(dp.raw.lpmTbl8InUse()).toBe(4);
  });

  it("rejects bad arguments by throwing, before touching the table", () => {
    const r = new RouteRules({ insert: () => { throw new Error("called"); }, delete: () => { throw new Error("called"); } });
    expect(() => r.add("10.0.0.0", 33, 1)).toThrow(RangeError);
    expect(() => r.add("10.0.0", 8, 1)).toThrow(/invalid IPv4/);
    expect(() => r.add(2 ** 32, 8, 1)).toThrow(RangeError);
  });
});

// --- properties: WASM through RouteRules vs SlowLpm ----------------------------

type Op =
  | { kind: "add"; addr: number; len: number; nh: number }
  | { kind: "remove"; pick: number }
  | { kind: "readd"; pick: number; nh: number }
  | { kind: "removeAny"; addr: number; len: number }
  | { kind: "lookup"; addr: number };

// Addresses bunched into a few /16s, and within them a few /24s, so prefixes
// nest and overlap; some fully random ones for the rest of the space.
const addrArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(ip("10.1.0.0"), ip("10.2.0.0"), ip("192.168.0.0")), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 })).map(([b, c, d]) => (b | (c << 8) | d) >>> 0) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(ip("10.1.0.0"), ip("10.2.0.0"), ip("192.168.0.0")), fc.integer({ min: 0, max: 0xffff })).map(([b, lo]) => (b | lo) >>> 0) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
// Mostly /12../32 (many past /24, to exercise tbl8); rarely very short ones,
// which rewrite millions of tbl24 entries and would make runs slow.
const lenArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 4, 8) },
  { weight: 8, arbitrary: fc.integer({ min: 12, max: 24 }) },
  { weight: 10, arbitrary: fc.integer({ min: 25, max: 32 }) },
);
const nhArb = fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 50 }) }, { weight: 1, arbitrary: fc.constant(0xfffffe) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("add" as const), addr: addrArb, len: lenArb, nh: nhArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("readd" as const), pick: fc.nat(), nh: nhArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("removeAny" as const), addr: addrArb, len: lenArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("lookup" as const), addr: addrArb }) },
);

describe("lpm vs SlowLpm (fast-check)", () => {
  const dp = new Dataplane({ kind: "debug", tbl8Groups: 256, batch: 1 });

  /** Addresses around every rule's edges, where off-by-ones live. */
  function edgeProbes(rules: { prefix: number; len: number }[]): number[] {
    const out: number[] = [];
    for (const r of rules) {
      const last = (r.prefix | ~prefixMask(r.len)) >>> 0;
      out.push(r.prefix, last, (r.prefix - 1) >>> 0, (last + 1) >>> 0, (r.prefix + ((last - r.prefix) >>> 1)) >>> 0);
    }
    return out;
  }

  it("agree on random add/remove/lookup sequences", () => {
    let dirty = true;
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 50 }), fc.array(addrArb, { minLength: 20, maxLength: 20 }), (ops, probes) => {
        if (dirty) dp.raw.lpmClear();
        dirty = true;
        const routes = new RouteRules(dp.lpmBackend);
        const slow = new SlowLpm();
        for (const o of ops) {
          if (o.kind === "add") {
            expect(routes.add(o.addr, o.len, o.nh)).toBe(abi.OK);
            slow.add(o.addr, o.len, o.nh);
          } else if (o.kind === "remove") {
            const all = routes.entries();
            if (all.length === 0) continue;
            const r = all[o.pick % all.length];
            expect(routes.remove(r.prefix, r.len)).toBe(abi.OK);
            expect(slow.remove(r.prefix, r.len)).toBe(true);
          } else if (o.kind === "readd") {
            // Same prefix, new next hop: must replace it everywhere it won.
            const all = routes.entries();
            if (all.length === 0) continue;
            const r = all[o.pick % all.length];
            expect(routes.add(r.prefix, r.len, o.nh)).toBe(abi.OK);
            slow.add(r.prefix, r.len, o.nh);
          } else if (o.kind === "removeAny") {
            const had = slow.remove(o.addr, o.len);
            expect(routes.remove(o.addr, o.len)).toBe(had ? abi.OK : abi.E_NOT_FOUND);
          } else {
            expect(look(dp, o.addr)).toBe(slow.lookup(o.addr));
          }
        }
        const rules = routes.entries();
        expect(rules.length).toBe(slow.size);
        for (const a of [...probes, ...edgeProbes(rules)]) {
          expect(look(dp, a), formatIpv4(a)).toBe(slow.lookup(a));
          expect(routes.lookupRule(a)?.nh ?? LPM_MISS).toBe(slow.lookup(a));
        }
        expect(dp.raw.lpmTbl8InUse()).toBe(expectedGroups(rules));
        // Tear down through the rule list: every group must come back.
        const res = routes.replaceAll([]);
        expect(res.removed).toBe(rules.length);
        expect(routes.size).toBe(0);
        expect(dp.raw.lpmTbl8InUse()).toBe(0);
        for (const a of probes) expect(look(dp, a)).toBe(LPM_MISS);
        dirty = false;
      }),
      { numRuns: 200 },
    );
  });

  it("replaceAll reaches the same table as building from scratch", () => {
    const ruleArb = fc.array(fc.record({ prefix: addrArb, len: fc.integer({ min: 12, max: 32 }), nh: nhArb }), { maxLength: 40 });
    fc.assert(
      fc.property(ruleArb, ruleArb, fc.array(addrArb, { minLength: 30, maxLength: 30 }), (a, b, probes) => {
        dp.raw.lpmClear();
        const routes = new RouteRules(dp.lpmBackend);
        routes.replaceAll(a);
        const res = routes.replaceAll(b);
        expect(res.failed).toEqual([]);
        const slow = new SlowLpm();
        for (const r of b) slow.add(r.prefix, r.len, r.nh);
        expect(routes.size).toBe(slow.size);
        for (const x of [...probes, ...edgeProbes(routes.entries())]) expect(look(dp, x)).toBe(slow.lookup(x));
        expect(dp.raw.lpmTbl8InUse()).toBe(expectedGroups(routes.entries()));
      }),
      { numRuns: 100 },
    );
  });
});

describe("100,000 random prefixes", () => {
  it("load, then spot-check against the twin and the rule list", () => {
    const dp = new Dataplane({ kind: "debug", tbl8Groups: 65536, batch: 1 });
    const routes = new RouteRules(dp.lpmBackend);
    const slow = new SlowLpm();
    let seed = 0x1234567;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed ^ (seed >>> 15)) >>> 0;
    };
    // 55% /18../24, 45% /25../32, inside 10/8 and 172.16/12 so they nest and
    // overlap; the longer ones land in ~35k distinct /24s, within 65536 groups.
    // Draw until 100,000 distinct prefixes (short ones collide now and then).
    const N = 100_000;
    while (routes.size < N) {
      const r = rnd();
      const len = r % 100 < 55 ? 18 + (rnd() % 7) : 25 + (rnd() % 8);
      const base = (r & 0x100 ? ip("10.0.0.0") | (rnd() & 0xffffff) : ip("172.16.0.0") | (rnd() & 0xfffff)) >>> 0;
      const nh = rnd() % 4096;
      expect(routes.add(base, len, nh)).toBe(abi.OK);
      slow.add(base, len, nh);
    }
    expect(routes.size).toBe(slow.size);
    expect(routes.size).toBe(N);
    const rules = routes.entries();
    expect(dp.raw.lpmTbl8InUse()).toBe(expectedGroups(rules));
    // The linear twin is O(rules) per lookup: 1,500 addresses against it...
    for (let i = 0; i < 1500; i++) {
      const a = (i % 3 === 0 ? rules[rnd() % rules.length].prefix + (rnd() & 0xff) : rnd()) >>> 0;
      expect(look(dp, a)).toBe(slow.lookup(a));
    }
    // ...and 200,000 against the rule list's own longest match, through the batch export.
    const n = 200_000;
    const buf = Number((dp.raw.scratchAlloc ?? dp.raw.allocScratch)(n * 4));
    const addrs = new Uint32Array(dp.memory.buffer, buf, n);
    for (let i = 0; i < n; i++) addrs[i] = i & 1 ? rules[rnd() % rules.length].prefix + (rnd() & 0x3ff) : rnd();
    const want = Array.from(addrs, (a) => routes.lookupRule(a)?.nh ?? LPM_MISS);
    dp.raw.lpmLookupBatch(buf, buf, n);
    const got = new Uint32Array(dp.memory.buffer, buf, n);
    let bad = 0;
    for (let i = 0; i < n; i++) if (got[i] !== want[i]) bad++;
    expect(bad).toBe(0);
  }, 300_000);
});
