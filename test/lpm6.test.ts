// The IPv6 LPM (assembly/tables/lpm6.ts) driven through RouteRules6, against
// SlowLpm6, its linear-scan twin below; and the IPv6 text helpers
// (src/config/net6.ts). Dataplane instances cost 64 MiB+ each (the IPv4
// tbl24), so the file keeps three: a tiny one (16 groups), one for
// properties (the default LPM6_GROUPS), a big one.
import fc from "fast-check";
import { beforeEach, describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { LPM6_GROUPS } from "../src/dataplane/limits.js";
import { LPM_MISS, RouteRules6 } from "../src/dataplane/routes6.js";
import { instantiateDataplane } from "../src/dataplane/wasm.js";
import {
  IPV6_MAX, bigintToIpv6, bytesToIpv6, cidr6Contains, cidr6Overlaps, formatCidr6, ipv6ToBigint, ipv6ToBytes, maskOf6,
  parseCidr6, tryParseCidr6, tryParseIpv6,
} from "../src/config/net6.js";

const ip6 = ipv6ToBigint;

/** The naive twin: every rule scanned on every lookup. */
class SlowLpm6 {
  // Keyed by "prefix/len" only so that loading 100k rules isn't quadratic;
  // lookups still scan every rule.
  private rules = new Map<string, { prefix: bigint; mask: bigint; len: number; nh: number }>();

  add(prefix: bigint, len: number, nh: number): void {
    const mask = maskOf6(len);
    this.rules.set(`${prefix & mask}/${len}`, { prefix: prefix & mask, mask, len, nh });
  }

  remove(prefix: bigint, len: number): boolean {
    return this.rules.delete(`${prefix & maskOf6(len)}/${len}`);
  }

  lookup(addr: bigint): number {
    let best = -1;
    let nh = LPM_MISS;
    for (const r of this.rules.values()) {
      if (r.len > best && (addr & r.mask) === r.prefix) {
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

/** Groups the table must be using: a level-k group (keyed by the top 8k+8
 *  bits) for every level from 1 down to each rule's own (depth 8k+9..8k+16). */
function expectedGroups(rules: { prefix: bigint; len: number }[]): number {
  const keys = new Set<string>();
  for (const r of rules) {
    for (let k = 1; 8 * k + 8 < r.len; k++) keys.add(`${k}:${r.prefix >> BigInt(120 - 8 * k)}`);
  }
  return keys.size;
}

const tiny = new Dataplane({ kind: "debug", tbl8Groups: 4, lpm6Groups: 16, batch: 1 });
const look = (dp: Dataplane, a: bigint | string): number => dp.lookup6(typeof a === "string" ? ip6(a) : a);
const inUse = (dp: Dataplane): number => dp.raw.lpm6GroupsInUse();

/** Write `a` as 16 bytes at `ptr` of `dp`'s memory. */
function put(dp: Dataplane, ptr: number, a: bigint): number {
  ipv6ToBytes(a, dp.u8, ptr);
  return ptr;
}

describe("lpm6 module", () => {
  it("set-up: E_RANGE for 0 or > 2^24 groups or a second call, E_NO_MEMORY past 3 GiB; before it, E_NOT_INIT and misses", () => {
    const raw = instantiateDataplane("debug");
    expect(raw.lpm6Lookup(1024) >>> 0).toBe(LPM_MISS);
    expect(raw.lpm6Insert(1024, 8, 1)).toBe(abi.E_NOT_INIT);
    expect(raw.lpm6Delete(1024, 8, LPM_MISS, 0)).toBe(abi.E_NOT_INIT);
    raw.lpm6Clear(); // a no-op, not a trap
    expect(raw.lpm6GroupsInUse()).toBe(0);
    expect(raw.lpm6Setup(0)).toBe(abi.E_RANGE);
    expect(raw.lpm6Setup(2 ** 24 + 1)).toBe(abi.E_RANGE);
    expect(raw.lpm6Setup(2 ** 24)).toBe(abi.E_NO_MEMORY);
    expect(raw.lpm6Setup(16)).toBe(abi.OK);
    expect(raw.lpm6Setup(16)).toBe(abi.E_RANGE);
    expect(raw.lpm6GroupCapacity()).toBe(16);
    expect(tiny.raw.lpm6Setup(4)).toBe(abi.E_RANGE); // already set up by the Dataplane
  });

  it("the Dataplane sets it up with LPM6_GROUPS by default and checks the addresses it is given", () => {
    expect(tiny.raw.lpm6GroupCapacity()).toBe(16);
    expect(() => tiny.lookup6(-1n)).toThrow(RangeError);
    expect(() => tiny.lookup6(1n << 128n)).toThrow(RangeError);
    expect(LPM6_GROUPS).toBeGreaterThanOrEqual(6 * 1024);
  });
});

describe("lpm6 edge cases (16 groups)", () => {
  const dp = tiny;
  let routes: RouteRules6;
  beforeEach(() => {
    dp.raw.lpm6Clear();
    routes = new RouteRules6(dp.lpm6Backend);
  });

  it("empty table misses everywhere", () => {
    for (const a of [0n, ip6("fd00::1"), IPV6_MAX]) expect(look(dp, a)).toBe(LPM_MISS);
  });

  it("/0 default route and /128 host route", () => {
    expect(routes.add("::", 0, 7)).toBe(abi.OK);
    expect(look(dp, "::")).toBe(7);
    expect(look(dp, IPV6_MAX)).toBe(7);
    expect(inUse(dp)).toBe(0);
    expect(routes.add("fd00::1", 128, 9)).toBe(abi.OK);
    expect(inUse(dp)).toBe(14); // one group per level, 1..14
    expect(look(dp, "fd00::1")).toBe(9);
    expect(look(dp, "fd00::")).toBe(7);
    expect(look(dp, "fd00::2")).toBe(7);
    expect(look(dp, "fd00::1:1")).toBe(7);
    expect(routes.remove("fd00::1", 128)).toBe(abi.OK);
    expect(look(dp, "fd00::1")).toBe(7);
    expect(inUse(dp)).toBe(0);
    expect(routes.remove("::", 0)).toBe(abi.OK);
    expect(look(dp, "fd00::1")).toBe(LPM_MISS);
    expect(look(dp, IPV6_MAX)).toBe(LPM_MISS);
  });

  it("stride boundaries: /16, /17, /24, /25 and /120../128", () => {
    routes.add("fd00::", 16, 1);
    routes.add("fd00:8000::", 17, 2);
    routes.add("fd00:ff00::", 24, 3);
    routes.add("fd00:ff80::", 25, 4);
    expect(look(dp, "fcff:ffff::")).toBe(LPM_MISS);
    expect(look(dp, "fd00::")).toBe(1);
    expect(look(dp, "fd00:7fff:ffff::")).toBe(1);
    expect(look(dp, "fd00:8000::")).toBe(2);
    expect(look(dp, "fd00:feff::")).toBe(2);
    expect(look(dp, "fd00:ff00::")).toBe(3);
    expect(look(dp, "fd00:ff7f:ffff::")).toBe(3);
    expect(look(dp, "fd00:ff80::")).toBe(4);
    expect(look(dp, "fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).toBe(4);
    expect(look(dp, "fd01::")).toBe(LPM_MISS);
    routes.add("fd00:1::100", 120, 5);
    routes.add("fd00:1::1ff", 128, 6);
    expect(look(dp, "fd00:1::ff")).toBe(1);
    expect(look(dp, "fd00:1::100")).toBe(5);
    expect(look(dp, "fd00:1::1fe")).toBe(5);
    expect(look(dp, "fd00:1::1ff")).toBe(6);
    expect(look(dp, "fd00:1::200")).toBe(1);
  });

  it("masks host bits beyond the prefix length", () => {
    expect(routes.add("fd00::1234", 64, 3)).toBe(abi.OK);
    expect(routes.entries()).toEqual([{ prefix: ip6("fd00::"), len: 64, nh: 3 }]);
    const ptr = Number(dp.raw.allocScratch(16));
    expect(dp.raw.lpm6Insert(put(dp, ptr, ip6("fd00:1:0:0:ffff::1")), 65, 4)).toBe(abi.OK); // raw call, unmasked
    expect(look(dp, "fd00:1:0:0:8000::")).toBe(4);
    expect(look(dp, "fd00:1:0:0:7fff:ffff:ffff:ffff")).toBe(LPM_MISS);
  });

  it("re-inserting a prefix replaces its next hop, keeping longer prefixes", () => {
    routes.add("2001:db8::", 32, 1);
    routes.add("2001:db8:1::", 48, 2);
    routes.add("2001:db8::", 32, 5);
    expect(routes.size).toBe(2);
    expect(look(dp, "2001:db8:2::1")).toBe(5);
    expect(look(dp, "2001:db8:1::1")).toBe(2);
  });

  it("nested prefixes: deletes restore the covering route, the last one empties the table", () => {
    routes.add("2001:db8::", 32, 1);
    routes.add("2001:db8:1::", 48, 2);
    routes.add("2001:db8:1:2::", 64, 3);
    routes.add("2001:db8:1:2::", 80, 4);
    routes.add("2001:db8:1:2::4", 126, 5);
    const probes = ["2001:db8:9::1", "2001:db8:1:9::1", "2001:db8:1:2:1::1", "2001:db8:1:2::100", "2001:db8:1:2::5"];
    const probe = () => probes.map((a) => look(dp, a));
    expect(probe()).toEqual([1, 2, 3, 4, 5]);
    expect(routes.remove("2001:db8:1:2::", 80)).toBe(abi.OK);
    expect(probe()).toEqual([1, 2, 3, 3, 5]);
    expect(routes.remove("2001:db8:1:2::", 64)).toBe(abi.OK);
    expect(probe()).toEqual([1, 2, 2, 2, 5]);
    expect(routes.remove("2001:db8:1::", 48)).toBe(abi.OK);
    expect(probe()).toEqual([1, 1, 1, 1, 5]);
    expect(routes.remove("2001:db8:1:2::4", 126)).toBe(abi.OK);
    expect(probe()).toEqual([1, 1, 1, 1, 1]);
    expect(inUse(dp)).toBe(2); // the /32's own path: levels 1 and 2
    expect(routes.remove("2001:db8::", 32)).toBe(abi.OK);
    expect(probe()).toEqual(Array(5).fill(LPM_MISS));
    expect(inUse(dp)).toBe(0);
    expect(routes.size).toBe(0);
    expect(routes.remove("2001:db8::", 32)).toBe(abi.E_NOT_FOUND);
  });

  it("E_FULL when the path needs more groups than are free leaves the table and rule list intact", () => {
    routes.add("::", 0, 1);
    expect(routes.add("fd00::", 64, 2)).toBe(abi.OK);
    expect(inUse(dp)).toBe(6);
    expect(routes.add("fd00::1", 128, 3)).toBe(abi.OK);
    expect(inUse(dp)).toBe(14);
    const before = routes.entries();
    // Shares levels 1..7 with fd00::1 (byte 8 differs): needs 7 groups, 2 are free.
    expect(routes.add("fd00::100:0:0:1", 128, 4)).toBe(abi.E_FULL);
    expect(inUse(dp)).toBe(14);
    expect(routes.entries()).toEqual(before);
    expect(look(dp, "fd00::100:0:0:1")).toBe(2);
    expect(look(dp, "fd00::1")).toBe(3);
    expect(look(dp, "fd00::2")).toBe(2);
    expect(look(dp, "fd00:0:0:1::")).toBe(1);
    expect(look(dp, "fe00::")).toBe(1);
    // Existing groups still take prefixes, and /16 or shorter need none.
    expect(routes.add("fd00::ab00:0:0:0", 72, 5)).toBe(abi.OK);
    expect(routes.add("fe00::", 16, 6)).toBe(abi.OK);
    expect(inUse(dp)).toBe(14);
    expect(look(dp, "fd00::abcd:0:0:1")).toBe(5);
    expect(look(dp, "fe00::1")).toBe(6);
    // Freeing groups makes room again (the /72 keeps its level-7 group).
    expect(routes.remove("fd00::1", 128)).toBe(abi.OK);
    expect(inUse(dp)).toBe(7);
    expect(routes.add("fd00::100:0:0:1", 128, 4)).toBe(abi.OK);
    expect(inUse(dp)).toBe(14);
    expect(look(dp, "fd00::100:0:0:1")).toBe(4);
    expect(look(dp, "fd00::1")).toBe(2);
  });

  it("E_RANGE for depth > 128, next hop > 0xFFFFFE, and bad covering rules; E_NOT_FOUND for a path never made", () => {
    const ptr = put(dp, Number(dp.raw.allocScratch(16)), ip6("fd00::"));
    expect(dp.raw.lpm6Insert(ptr, 129, 1)).toBe(abi.E_RANGE);
    expect(dp.raw.lpm6Insert(ptr, 8, 0xffffff)).toBe(abi.E_RANGE);
    expect(routes.add("fd00::", 8, 0xffffff)).toBe(abi.E_RANGE);
    expect(routes.size).toBe(0);
    expect(routes.add("fd00::", 8, 0xfffffe)).toBe(abi.OK);
    expect(look(dp, "fd12::1")).toBe(0xfffffe);
    expect(dp.raw.lpm6Delete(ptr, 129, LPM_MISS, 0)).toBe(abi.E_RANGE);
    expect(dp.raw.lpm6Delete(ptr, 64, 1, 64)).toBe(abi.E_RANGE); // cover not shorter
    expect(dp.raw.lpm6Delete(ptr, 64, 0xffffff, 8)).toBe(abi.E_RANGE);
    expect(dp.raw.lpm6Delete(ptr, 64, LPM_MISS, 0)).toBe(abi.E_NOT_FOUND);
    expect(look(dp, "fd00::")).toBe(0xfffffe);
    expect(() => routes.add("fd00::", 129, 1)).toThrow(RangeError);
    expect(() => routes.add("fd00:::1", 64, 1)).toThrow(/invalid IPv6/);
    expect(() => routes.add(1n << 128n, 64, 1)).toThrow(RangeError);
  });

  it("clear empties the table and frees every group", () => {
    routes.add("::", 0, 1);
    routes.add("fd00:1:2:3::", 64, 2);
    routes.add("fd00:1:2:3::9", 128, 3);
    expect(inUse(dp)).toBeGreaterThan(0);
    dp.raw.lpm6Clear();
    expect(inUse(dp)).toBe(0);
    for (const a of ["::", "fd00:1:2:3::", "fd00:1:2:3::9"]) expect(look(dp, a)).toBe(LPM_MISS);
    routes = new RouteRules6(dp.lpm6Backend);
    expect(routes.add("fd00:1:2:3::9", 128, 4)).toBe(abi.OK);
    expect(look(dp, "fd00:1:2:3::9")).toBe(4);
  });

  it("entry layout in raw memory: tag (31..24) = depth + 1 or 0xff for ext, value (23..0)", () => {
    routes.add("fd00::", 16, 5);
    routes.add("fd01::", 24, 7);
    const dv = dp.dv;
    const t16 = Number(dp.raw.lpm6Tbl16Base());
    const g = Number(dp.raw.lpm6GroupBase());
    expect(dv.getUint32(t16 + 0xfd00 * 4, true)).toBe(((17 << 24) | 5) >>> 0);
    expect(dv.getUint32(t16 + 0xfd02 * 4, true)).toBe(0);
    expect(dv.getUint32(t16 + 0xfd01 * 4, true)).toBe(0xff000000); // ext, group 0
    expect(dv.getUint32(g + 0 * 1024 + 0 * 4, true)).toBe(((25 << 24) | 7) >>> 0);
    expect(dv.getUint32(g + 0 * 1024 + 1 * 4, true)).toBe(0);
  });

  it("lpm6LookupBatch: 16-byte addresses in, u32 next hops out, in place too", () => {
    routes.add("fd00::", 64, 1);
    routes.add("fd00::1", 128, 2);
    const addrs = [ip6("fd00::1"), ip6("fd00::2"), ip6("fd01::"), 0n, ip6("fd00::ffff:ffff:ffff:ffff")];
    const buf = Number(dp.raw.allocScratch(addrs.length * 16));
    addrs.forEach((a, i) => put(dp, buf + i * 16, a));
    const out = Number(dp.raw.allocScratch(addrs.length * 4));
    dp.raw.lpm6LookupBatch(buf, out, addrs.length);
    const want = [2, 1, LPM_MISS, LPM_MISS, 1];
    expect(Array.from(new Uint32Array(dp.memory.buffer, out, addrs.length))).toEqual(want);
    dp.raw.lpm6LookupBatch(buf, buf, addrs.length);
    expect(Array.from(new Uint32Array(dp.memory.buffer, buf, addrs.length))).toEqual(want);
  });
});

describe("RouteRules6", () => {
  it("replaceAll writes only the differences and reports counts", () => {
    const calls: string[] = [];
    const r = new RouteRules6({
      insert: (a, d, nh) => (calls.push(`+${bigintToIpv6(a)}/${d}=${nh}`), 0),
      delete: (a, d, sn, sd) => (calls.push(`-${bigintToIpv6(a)}/${d}>${sn === LPM_MISS ? "miss" : `${sn}/${sd}`}`), 0),
    });
    r.replaceAll([
      { prefix: "fd00::", len: 48, nh: 1 },
      { prefix: "fd00:0:0:1::", len: 64, nh: 2 },
      { prefix: "fd00:0:0:2::", len: 64, nh: 3 },
    ]);
    calls.length = 0;
    const res = r.replaceAll([
      { prefix: "fd00::", len: 48, nh: 1 }, // unchanged
      { prefix: "fd00:0:0:1::", len: 64, nh: 4 }, // changed
      { prefix: ip6("fd00:0:0:3::"), len: 64, nh: 5 }, // new
    ]);
    expect(res).toEqual({ added: 1, changed: 1, removed: 1, unchanged: 1, failed: [] });
    expect(calls).toEqual(["+fd00:0:0:1::/64=4", "+fd00:0:0:3::/64=5", "-fd00:0:0:2::/64>1/48"]);
    expect(r.size).toBe(3);
    expect(r.get("fd00:0:0:3::", 64)).toBe(5);
    expect(r.lookupRule("fd00:0:0:3::5")).toEqual({ prefix: ip6("fd00:0:0:3::"), len: 64, nh: 5 });
    expect(r.lookupRule("fd01::")).toBeUndefined();
  });

  it("replaceAll retries adds refused with E_FULL after its deletes", () => {
    const dp = tiny;
    dp.raw.lpm6Clear();
    const r = new RouteRules6(dp.lpm6Backend);
    // Two /64s in distinct /16s: 6 groups each, 12 of 16.
    const two = [{ prefix: "fd00::", len: 64, nh: 1 }, { prefix: "fd01::", len: 64, nh: 2 }];
    expect(r.replaceAll(two).added).toBe(2);
    const res = r.replaceAll([two[1], { prefix: "fd02::", len: 64, nh: 3 }]);
    expect(res).toEqual({ added: 1, changed: 0, removed: 1, unchanged: 1, failed: [] });
    expect(look(dp, "fd02::1")).toBe(3);
    expect(look(dp, "fd00::1")).toBe(LPM_MISS);
    expect(inUse(dp)).toBe(12);
  });

  it("rejects bad arguments by throwing, before touching the table", () => {
    const r = new RouteRules6({ insert: () => { throw new Error("called"); }, delete: () => { throw new Error("called"); } });
    expect(() => r.add("fd00::", -1, 1)).toThrow(RangeError);
    expect(() => r.add("10.0.0.0", 8, 1)).toThrow(/invalid IPv6/);
    expect(() => r.add(-1n, 8, 1)).toThrow(RangeError);
  });
});

// --- properties: WASM through RouteRules6 vs SlowLpm6 -------------------------

type Op =
  | { kind: "add"; addr: bigint; len: number; nh: number }
  | { kind: "remove"; pick: number }
  | { kind: "readd"; pick: number; nh: number }
  | { kind: "removeAny"; addr: bigint; len: number }
  | { kind: "lookup"; addr: bigint };

// A few bases with a few bits flipped anywhere, or random low 64 bits: the
// prefixes share long common paths, so deep levels fill, split and fold.
const BASES = ["fd00:10:244::", "fd00:10:96::", "2001:db8:1:2::"].map(ip6);
const addrArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...BASES), fc.integer({ min: 0, max: 127 }), fc.integer({ min: 0, max: 255 })).map(([b, s, v]) => (b ^ (BigInt(v) << BigInt(s))) & IPV6_MAX) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...BASES), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })).map(([b, lo]) => b | lo) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: IPV6_MAX }) },
);
// Every depth, weighted to the deep ones; /0../16 rewrite tbl16 ranges (and
// everything under them), so they are rarer.
const lenArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 16 }) },
  { weight: 4, arbitrary: fc.integer({ min: 17, max: 64 }) },
  { weight: 6, arbitrary: fc.integer({ min: 65, max: 128 }) },
  { weight: 2, arbitrary: fc.constantFrom(48, 56, 64, 80, 108, 112, 120, 127, 128) },
);
const nhArb = fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 50 }) }, { weight: 1, arbitrary: fc.constant(0xfffffe) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("add" as const), addr: addrArb, len: lenArb, nh: nhArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("readd" as const), pick: fc.nat(), nh: nhArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("removeAny" as const), addr: addrArb, len: lenArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("lookup" as const), addr: addrArb }) },
);

/** Addresses around every rule's edges, where off-by-ones live. */
function edgeProbes(rules: { prefix: bigint; len: number }[]): bigint[] {
  const out: bigint[] = [];
  for (const r of rules) {
    const last = r.prefix | (~maskOf6(r.len) & IPV6_MAX);
    out.push(r.prefix, last, (r.prefix - 1n) & IPV6_MAX, (last + 1n) & IPV6_MAX, r.prefix + ((last - r.prefix) >> 1n));
  }
  return out;
}

function applyOp(o: Op, routes: RouteRules6, slow: SlowLpm6, dp: Dataplane): void {
  if (o.kind === "add") {
    expect(routes.add(o.addr, o.len, o.nh)).toBe(abi.OK);
    slow.add(o.addr, o.len, o.nh);
  } else if (o.kind === "remove" || o.kind === "readd") {
    const all = routes.entries();
    if (all.length === 0) return;
    const r = all[o.pick % all.length];
    if (o.kind === "remove") {
      expect(routes.remove(r.prefix, r.len)).toBe(abi.OK);
      expect(slow.remove(r.prefix, r.len)).toBe(true);
    } else {
      // Same prefix, new next hop: must replace it everywhere it won.
      expect(routes.add(r.prefix, r.len, o.nh)).toBe(abi.OK);
      slow.add(r.prefix, r.len, o.nh);
    }
  } else if (o.kind === "removeAny") {
    const had = slow.remove(o.addr, o.len);
    expect(routes.remove(o.addr, o.len)).toBe(had ? abi.OK : abi.E_NOT_FOUND);
  } else {
    expect(look(dp, o.addr)).toBe(slow.lookup(o.addr));
  }
}

describe("lpm6 vs SlowLpm6 (fast-check)", () => {
  const dp = new Dataplane({ kind: "debug", tbl8Groups: 4, batch: 1 });

  it("the default Dataplane has LPM6_GROUPS groups", () => {
    expect(dp.raw.lpm6GroupCapacity()).toBe(LPM6_GROUPS);
  });

  it("agree on random add/remove/lookup sequences", () => {
    let dirty = true;
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 50 }), fc.array(addrArb, { minLength: 20, maxLength: 20 }), (ops, probes) => {
        if (dirty) dp.raw.lpm6Clear();
        dirty = true;
        const routes = new RouteRules6(dp.lpm6Backend);
        const slow = new SlowLpm6();
        for (const o of ops) applyOp(o, routes, slow, dp);
        const rules = routes.entries();
        expect(rules.length).toBe(slow.size);
        for (const a of [...probes, ...edgeProbes(rules)]) {
          expect(look(dp, a), bigintToIpv6(a)).toBe(slow.lookup(a));
          expect(routes.lookupRule(a)?.nh ?? LPM_MISS).toBe(slow.lookup(a));
        }
        expect(inUse(dp)).toBe(expectedGroups(rules));
        // Tear down through the rule list: every group must come back.
        const res = routes.replaceAll([]);
        expect(res.removed).toBe(rules.length);
        expect(routes.size).toBe(0);
        expect(inUse(dp)).toBe(0);
        for (const a of probes) expect(look(dp, a)).toBe(LPM_MISS);
        dirty = false;
      }),
      { numRuns: 200 },
    );
  });

  it("replaceAll reaches the same table as building from scratch", () => {
    const ruleArb = fc.array(fc.record({ prefix: addrArb, len: fc.integer({ min: 17, max: 128 }), nh: nhArb }), { maxLength: 40 });
    fc.assert(
      fc.property(ruleArb, ruleArb, fc.array(addrArb, { minLength: 30, maxLength: 30 }), (a, b, probes) => {
        dp.raw.lpm6Clear();
        const routes = new RouteRules6(dp.lpm6Backend);
        routes.replaceAll(a);
        const res = routes.replaceAll(b);
        expect(res.failed).toEqual([]);
        const slow = new SlowLpm6();
        for (const r of b) slow.add(r.prefix, r.len, r.nh);
        expect(routes.size).toBe(slow.size);
        for (const x of [...probes, ...edgeProbes(routes.entries())]) expect(look(dp, x)).toBe(slow.lookup(x));
        expect(inUse(dp)).toBe(expectedGroups(routes.entries()));
      }),
      { numRuns: 100 },
    );
  });
});

describe("100,000 k8s-like prefixes", () => {
  it("load, then check against the twin and the rule list", () => {
    const dp = new Dataplane({ kind: "debug", tbl8Groups: 4, lpm6Groups: 65536, batch: 1 });
    const routes = new RouteRules6(dp.lpm6Backend);
    let seed = 0x1234567;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed ^ (seed >>> 15)) >>> 0;
    };
    // Node /64s under 4 /48s, node /80s under 2 /64s, /112../128s under 4
    // service /108s, all with random indexes, until 100,000 distinct rules.
    const draw = (r: number): { prefix: bigint; len: number } => {
      const x = BigInt(rnd() & 0xffff);
      if (r % 10 < 6) return { prefix: (0xfd10n << 112n) | (BigInt(r & 3) << 80n) | (x << 64n), len: 64 };
      if (r % 10 < 9) return { prefix: (0xfd20n << 112n) | (BigInt(r & 1) << 64n) | (x << 48n), len: 80 };
      const len = 112 + (rnd() % 17);
      const host = BigInt(rnd() & 0xfffff) & ~((1n << BigInt(128 - len)) - 1n);
      return { prefix: (0xfd30n << 112n) | (BigInt(r & 3) << 32n) | host, len };
    };
    while (routes.size < 100_000) {
      const p = draw(rnd());
      expect(routes.add(p.prefix, p.len, rnd() % 4096)).toBe(abi.OK);
    }
    const rules = routes.entries();
    expect(inUse(dp)).toBe(expectedGroups(rules));
    const n = 100_000;
    const inside = (): bigint => {
      const r = rules[rnd() % rules.length];
      return r.prefix | (BigInt(rnd()) & ~maskOf6(r.len) & IPV6_MAX);
    };
    const any = (): bigint => (BigInt(rnd()) << 96n) | (BigInt(rnd()) << 64n) | (BigInt(rnd()) << 32n) | BigInt(rnd());
    const addrs = Array.from({ length: n }, (_, i) => (i & 1 ? inside() : any()));
    // The linear twin is O(rules) per lookup: 100 addresses against it...
    const slow = new SlowLpm6();
    for (const r of rules) slow.add(r.prefix, r.len, r.nh);
    for (const a of addrs.slice(0, 200).filter((_, i) => i & 1)) expect(look(dp, a)).toBe(slow.lookup(a));
    // ...and all against the rule list's own longest match, through the batch export.
    const buf = Number(dp.raw.allocScratch(n * 16));
    addrs.forEach((a, i) => ipv6ToBytes(a, dp.u8, buf + i * 16));
    dp.raw.lpm6LookupBatch(buf, buf, n);
    const got = new Uint32Array(dp.memory.buffer, buf, n);
    let bad = 0;
    for (let i = 0; i < n; i++) if (got[i] !== (routes.lookupRule(addrs[i])?.nh ?? LPM_MISS)) bad++;
    expect(bad).toBe(0);
    // Delete them all: every group comes back.
    expect(routes.replaceAll([]).removed).toBe(100_000);
    expect(inUse(dp)).toBe(0);
  }, 300_000);
});

// --- src/config/net6.ts -------------------------------------------------------

describe("net6: IPv6 text <-> bigint", () => {
  it("parses the RFC 4291 forms", () => {
    expect(tryParseIpv6("::")).toEqual({ ok: true, value: 0n });
    expect(tryParseIpv6("::1")).toEqual({ ok: true, value: 1n });
    expect(ip6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).toBe(IPV6_MAX);
    expect(ip6("fd00:10:244::1")).toBe((0xfd00n << 112n) | (0x10n << 96n) | (0x244n << 80n) | 1n);
    expect(ip6("FD00:0010:0244:0:0:0:0:1")).toBe(ip6("fd00:10:244::1"));
    expect(ip6("::ffff:192.0.2.1")).toBe(0xffffc0000201n);
  });

  it("refuses anything else, saying which part is wrong", () => {
    const why = (s: string) => {
      const r = tryParseIpv6(s);
      expect(r.ok, s).toBe(false);
      return r.ok ? "" : `${r.reason}: ${r.detail}`;
    };
    expect(why("")).toMatch(/"" is not an IPv6 address/);
    expect(why("1:2:3:4:5:6:7:8:9")).toMatch(/eight groups/);
    expect(why("1:2:3")).toMatch(/eight groups/);
    expect(why("1::2::3")).toMatch(/"::" appears more than once/);
    expect(why("12345::1")).toMatch(/"12345" is not 1 to 4 hex digits/);
    expect(why("g::1")).toMatch(/"g" is not 1 to 4 hex digits/);
    expect(why("::1.2.3.256")).toMatch(/dotted-quad/);
    expect(why("fe80::1%eth0")).toMatch(/zone index/);
    expect(why("fd00::/64")).toMatch(/prefix length/);
    expect(why(" ::1")).toMatch(/not an IPv6 address/);
    expect(why("10.0.0.1")).toMatch(/not an IPv6 address/);
    expect(tryParseIpv6(7 as unknown as string).ok).toBe(false);
    expect(() => ip6("fd00:::1")).toThrow(RangeError);
  });

  it("formats in RFC 5952 form and round-trips through bytes", () => {
    expect(bigintToIpv6(0n)).toBe("::");
    expect(bigintToIpv6(1n)).toBe("::1");
    expect(bigintToIpv6(ip6("FD00:0:0:0:0:0:0:1"))).toBe("fd00::1");
    expect(bigintToIpv6(ip6("2001:db8:0:0:1:0:0:1"))).toBe("2001:db8::1:0:0:1");
    expect(bigintToIpv6(IPV6_MAX)).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    expect(() => bigintToIpv6(-1n)).toThrow(RangeError);
    expect(() => bigintToIpv6(1n << 128n)).toThrow(RangeError);
    const b = new Uint8Array(18);
    ipv6ToBytes(ip6("2001:db8::1:2"), b, 1);
    expect(Array.from(b.subarray(1, 17))).toEqual([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    expect(bytesToIpv6(b, 1)).toBe(ip6("2001:db8::1:2"));
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: IPV6_MAX }), (v) => {
      expect(ip6(bigintToIpv6(v))).toBe(v);
      const u = new Uint8Array(16);
      ipv6ToBytes(v, u);
      expect(bytesToIpv6(u)).toBe(v);
    }));
  });
});

describe("net6: CIDRs", () => {
  it("parses prefixes and refuses host bits unless asked to clear them", () => {
    expect(parseCidr6("fd00:10:244::/56")).toEqual({ prefix: ip6("fd00:10:244::"), len: 56 });
    expect(parseCidr6("::/0")).toEqual({ prefix: 0n, len: 0 });
    expect(parseCidr6("::1/128")).toEqual({ prefix: 1n, len: 128 });
    const hb = tryParseCidr6("fd00::1/64");
    expect(hb.ok).toBe(false);
    expect(hb.ok ? "" : hb.reason).toMatch(/host bits set \(did you mean fd00::\/64\?\)/);
    expect(tryParseCidr6("fd00::1/64", { hostBits: "clear" })).toEqual({ ok: true, value: { prefix: ip6("fd00::"), len: 64 } });
    expect(formatCidr6(parseCidr6("fd00:10:96::/112"))).toBe("fd00:10:96::/112");
  });

  it("refuses malformed CIDRs with a detail", () => {
    const detail = (s: string) => {
      const r = tryParseCidr6(s);
      expect(r.ok, s).toBe(false);
      return r.ok ? "" : r.detail;
    };
    expect(detail("fd00::")).toMatch(/missing "\/len"/);
    expect(detail("fd00::/")).toMatch(/prefix length "" is not 0..128/);
    expect(detail("fd00::/129")).toMatch(/prefix length "129"/);
    expect(detail("fd00::/064")).toMatch(/prefix length "064"/);
    expect(detail("fd00::/6 4")).toMatch(/prefix length/);
    expect(detail("zz::/64")).toMatch(/"zz" is not 1 to 4 hex digits/);
    expect(detail("10.0.0.0/8")).toMatch(/eight groups/);
    expect(() => parseCidr6("fd00::1/64")).toThrow(RangeError);
  });

  it("contains and overlaps", () => {
    expect(cidr6Contains("fd00:10:244::/56", "fd00:10:244:ff::1")).toBe(true);
    expect(cidr6Contains("fd00:10:244::/56", "fd00:10:244:100::")).toBe(false);
    expect(cidr6Contains("fd00:10:244::/56", ip6("fd00:10:245::1"))).toBe(false);
    expect(cidr6Contains("::/0", IPV6_MAX)).toBe(true);
    expect(cidr6Contains("::1/128", "::1")).toBe(true);
    expect(cidr6Contains("::1/128", "::2")).toBe(false);
    expect(cidr6Overlaps("fd00:10:244::/48", "fd00:10:244:7::/64")).toBe(true);
    expect(cidr6Overlaps("fd00:10:244:7::/64", "fd00:10:244::/48")).toBe(true);
    expect(cidr6Overlaps("fd00:10:244::/64", "fd00:10:244:1::/64")).toBe(false);
    expect(cidr6Overlaps("::/0", { prefix: ip6("fd00::"), len: 8 })).toBe(true);
    expect(cidr6Overlaps("fd00:10:96::/112", "fd00:10:96::1/128")).toBe(true);
  });
});
