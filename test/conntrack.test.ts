// Connection tracking (assembly/nat/conntrack.ts) against its naive twin
// (test/reference/slow-conntrack.ts) under random operations, plus the
// full-table, expiry, TCP state and port-allocation cases spelled out.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { instantiateDataplane, type RawExports } from "../src/dataplane/wasm.js";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { ctCreateTuples, ctLookupTuples } from "../src/dataplane/ctfill.js";
import {
  DEFAULT_TIMEOUTS, E_CT_CLASH, E_FULL, E_NOT_FOUND, E_RANGE, F_ASSURED, F_SEEN_REPLY, F_USED, NAT_DNAT, NAT_NONE, NAT_SNAT, OK,
  SlowConntrack, STAT, TCP, TCP_VERDICT, TO, type SlowFlow, type Tuple,
} from "./reference/slow-conntrack.js";

const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;
const RST = 0x04;
const PSH = 0x08;

function fresh(maxFlows: number, seed?: [bigint, bigint]): RawExports {
  const raw = instantiateDataplane("debug");
  expect(raw.ctSetup(maxFlows)).toBe(OK);
  if (seed) expect(raw.ctSetHashSeed(seed[0], seed[1])).toBe(OK);
  return raw;
}

/** Flow record `f` as the twin spells it (layout in nat/conntrack.ts). */
function readFlow(raw: RawExports, f: number): SlowFlow | undefined {
  const p: number = raw.ctFlowPtr(f);
  if (p === 0) return undefined;
  const dv = new DataView(raw.memory.buffer, p, raw.ctFlowSize());
  return {
    index: f,
    orig: { src: dv.getUint32(0, true), dst: dv.getUint32(4, true), sport: dv.getUint16(8, true), dport: dv.getUint16(10, true) },
    reply: { src: dv.getUint32(12, true), dst: dv.getUint32(16, true), sport: dv.getUint16(20, true), dport: dv.getUint16(22, true) },
    proto: dv.getUint8(24),
    nat: dv.getUint8(25),
    state: dv.getUint8(26),
    flags: dv.getUint8(27),
    lastSeen: dv.getUint32(28, true),
    deadline: dv.getUint32(32, true),
  };
}

function dump(raw: RawExports): SlowFlow[] {
  const out: SlowFlow[] = [];
  for (let f: number = raw.ctEntryAt(0); f >= 0; f = raw.ctEntryAt(f + 1)) out.push(readFlow(raw, f)!);
  return out;
}

function stats(raw: RawExports): number[] {
  return [0, 1, 2, 3, 4, 5, 6].map((i) => Number(raw.ctStat(i)));
}

function create(raw: RawExports, proto: number, o: Tuple, r: Tuple, nat: number, now: number): number {
  return raw.ctCreate(proto, o.src, o.dst, o.sport, o.dport, r.src, r.dst, r.sport, r.dport, nat, now);
}

function lookup(raw: RawExports, proto: number, t: Tuple): number {
  return raw.ctLookup(proto, t.src, t.dst, t.sport, t.dport);
}

const rev = (t: Tuple): Tuple => ({ src: t.dst, dst: t.src, sport: t.dport, dport: t.sport });

// --- random operation sequences ---------------------------------------------------

// Small pools so tuples collide, flows clash and the table fills.
const ADDRS = [0x0a000001, 0x0a000002, 0xc0a80001, 0x08080808];
const PORTS = [53, 80, 61000, 40000];
const PROTOS = [6, 17, 1, 47];
const FLAGS = [SYN, SYN | ACK, ACK, FIN | ACK, FIN, RST, RST | ACK, PSH | ACK, 0];
const STEPS = [0, 1, 5, 29, 30, 31, 59, 61, 119, 121, 599, 601, 432001];

const tupleArb = fc.record({
  src: fc.constantFrom(...ADDRS),
  dst: fc.constantFrom(...ADDRS),
  sport: fc.constantFrom(...PORTS),
  dport: fc.constantFrom(...PORTS),
});

type Op =
  | { k: "create"; proto: number; o: Tuple; nat: number; x: Tuple }
  | { k: "lookup"; proto: number; t: Tuple; live: boolean }
  | { k: "lookupFlow"; pick: number; reply: boolean; live: boolean }
  | { k: "touch"; pick: number; dir: number }
  | { k: "tcp"; pick: number; dir: number; flags: number }
  | { k: "delete"; pick: number }
  | { k: "expire"; budget: number }
  | { k: "time"; dt: number }
  | { k: "timeout"; which: number; secs: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant("create" as const), proto: fc.constantFrom(...PROTOS), o: tupleArb, nat: fc.nat(3), x: tupleArb }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("lookup" as const), proto: fc.constantFrom(...PROTOS), t: tupleArb, live: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("lookupFlow" as const), pick: fc.nat(), reply: fc.boolean(), live: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("touch" as const), pick: fc.nat(), dir: fc.nat(2) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant("tcp" as const), pick: fc.nat(), dir: fc.nat(1), flags: fc.constantFrom(...FLAGS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("delete" as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("expire" as const), budget: fc.nat(40) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("time" as const), dt: fc.constantFrom(...STEPS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("timeout" as const), which: fc.nat(14), secs: fc.constantFrom(0, 1, 7, 45) }) },
);

/** An index into the twin's flows (sometimes one that holds nothing). */
function pickIndex(slow: SlowConntrack, pick: number): number {
  const idx = [...slow.flows.keys()].sort((a, b) => a - b);
  if (idx.length === 0 || pick % 7 === 6) return pick % (slow.capacity + 2);
  return idx[pick % idx.length];
}

/** Room the random runs' full tables made (each victim checked by the twin), and how much of it by early drop. */
let evictions = 0;
let earlyDrops = 0;

function runOps(capacity: number, ops: Op[], seed?: [bigint, bigint]): void {
  const raw = fresh(capacity, seed);
  const slow = new SlowConntrack(capacity);
  let now = 1000;
  for (const op of ops) {
    switch (op.k) {
      case "create": {
        // nat 0: reply = original reversed; 1: SNAT to x.dst:x.sport; 2: DNAT to x.src:x.dport; 3: an unknown kind (E_RANGE).
        const o = op.o;
        let r: Tuple;
        if (op.nat === NAT_SNAT) r = { src: o.dst, dst: op.x.dst, sport: o.dport, dport: op.x.sport };
        else if (op.nat === NAT_DNAT) r = { src: op.x.src, dst: o.src, sport: op.x.dport, dport: o.sport };
        else r = rev(o);
        const nat = op.nat === 3 ? 4 + (op.x.sport & 3) : op.nat;
        const got = create(raw, op.proto, o, r, nat, now);
        expect(got).toBe(slow.create(op.proto, o, r, nat, now, got));
        break;
      }
      case "lookup": {
        const t = op.t;
        if (op.live) expect(raw.ctLookupLive(op.proto, t.src, t.dst, t.sport, t.dport, now)).toBe(slow.lookupLive(op.proto, t.src, t.dst, t.sport, t.dport, now));
        else expect(lookup(raw, op.proto, t)).toBe(slow.lookup(op.proto, t.src, t.dst, t.sport, t.dport));
        break;
      }
      case "lookupFlow": {
        const f = slow.flows.get(pickIndex(slow, op.pick));
        if (!f) break;
        const t = op.reply ? f.reply : f.orig;
        if (op.live) expect(raw.ctLookupLive(f.proto, t.src, t.dst, t.sport, t.dport, now)).toBe(slow.lookupLive(f.proto, t.src, t.dst, t.sport, t.dport, now));
        else expect(lookup(raw, f.proto, t)).toBe(slow.lookup(f.proto, t.src, t.dst, t.sport, t.dport));
        break;
      }
      case "touch": {
        const i = pickIndex(slow, op.pick);
        expect(raw.ctTouch(i, op.dir, now)).toBe(slow.touch(i, op.dir, now));
        break;
      }
      case "tcp": {
        const i = pickIndex(slow, op.pick);
        expect(raw.ctUpdateTcp(i, op.dir, op.flags, now)).toBe(slow.updateTcp(i, op.dir, op.flags, now));
        break;
      }
      case "delete": {
        const i = pickIndex(slow, op.pick);
        expect(raw.ctDelete(i)).toBe(slow.delete(i));
        break;
      }
      case "expire":
        expect(raw.ctExpire(now, op.budget)).toBe(slow.expire(now, op.budget));
        expect(raw.ctHand()).toBe(slow.hand);
        break;
      case "time":
        now += op.dt;
        break;
      case "timeout":
        expect(raw.ctSetTimeout(op.which, op.secs)).toBe(slow.setTimeout(op.which, op.secs));
        break;
    }
    expect(raw.ctCount()).toBe(slow.count);
    expect(stats(raw)).toEqual(slow.stats);
  }
  // Every record, field by field, and both keys of each flow findable.
  const got = dump(raw);
  const want = [...slow.flows.values()].sort((a, b) => a.index - b.index);
  expect(got).toEqual(want);
  for (const f of want) {
    expect(lookup(raw, f.proto, f.orig)).toBe(f.index << 1);
    expect(lookup(raw, f.proto, f.reply)).toBe((f.index << 1) | 1);
  }
  expect(raw.ctHighWater()).toBe(slow.high);
  earlyDrops += slow.stats[STAT.EARLY_DROP];
  evictions += slow.evictions;
}

describe("conntrack against the Map-based twin", () => {
  const seedArb = fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

  it("random create/lookup/update/expire/delete sequences agree, both directions, time advancing, random hash seeds", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 24 }), fc.array(opArb, { minLength: 1, maxLength: 250 }), seedArb, (cap, ops, seed) => runOps(cap, ops, seed)),
      { numRuns: 300 },
    );
  });

  it("full tables making room: early drop and reaping agree with the twin (exactly, where the search covers the table)", () => {
    evictions = 0;
    earlyDrops = 0;
    // Mostly creates and TCP/UDP traffic (which assures flows), time moving in small steps.
    const fillArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 8, arbitrary: fc.record({ k: fc.constant("create" as const), proto: fc.constantFrom(6, 17), o: tupleArb, nat: fc.nat(2), x: tupleArb }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant("touch" as const), pick: fc.nat(), dir: fc.nat(1) }) },
      { weight: 4, arbitrary: fc.record({ k: fc.constant("tcp" as const), pick: fc.nat(), dir: fc.nat(1), flags: fc.constantFrom(...FLAGS) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant("delete" as const), pick: fc.nat() }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant("time" as const), dt: fc.constantFrom(0, 1, 2, 5, 11, 31) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant("lookupFlow" as const), pick: fc.nat(), reply: fc.boolean(), live: fc.boolean() }) },
    );
    fc.assert(
      // Up to 5 flows: 15 slots, inside the 16-slot window, so the twin knows each victim; up to 12: it checks legality only.
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(fillArb, { minLength: 60, maxLength: 300 }), seedArb, (cap, ops, seed) => runOps(cap, ops, seed)),
      { numRuns: 120 },
    );
    expect(evictions).toBeGreaterThan(1000);
    expect(earlyDrops).toBeGreaterThan(500);
  });

  it("a larger table under churn (backward-shift deletion across long clusters)", () => {
    const wide = fc.record({
      src: fc.integer({ min: 0, max: 40 }).map((x) => 0x0a000000 + x),
      dst: fc.integer({ min: 0, max: 3 }).map((x) => 0x08080800 + x),
      sport: fc.integer({ min: 1000, max: 1100 }),
      dport: fc.constantFrom(53, 443),
    });
    const churn: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ k: fc.constant("create" as const), proto: fc.constantFrom(6, 17), o: wide, nat: fc.nat(2), x: wide }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant("lookupFlow" as const), pick: fc.nat(), reply: fc.boolean(), live: fc.boolean() }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant("delete" as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant("expire" as const), budget: fc.nat(100) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant("time" as const), dt: fc.constantFrom(0, 31, 121) }) },
    );
    fc.assert(fc.property(fc.array(churn, { minLength: 200, maxLength: 1500 }), seedArb, (ops, seed) => runOps(300, ops, seed)), { numRuns: 25 });
  });
});

// --- spelled-out cases --------------------------------------------------------------

const A = 0x0a000005; // pod
const B = 0x5db8d822; // outside
const NODE = 0xc0a80a0a;

function udpFlow(raw: RawExports, i: number, now: number): number {
  const o = { src: A, dst: B, sport: 10000 + i, dport: 53 };
  return create(raw, 17, o, rev(o), NAT_NONE, now);
}

describe("conntrack setup", () => {
  it("sizes: 88 bytes per flow, bad sizes refused, one table per instance", () => {
    const raw = instantiateDataplane("debug");
    expect(raw.ctLookup(6, 1, 2, 3, 4)).toBe(-1);
    expect(raw.ctCreate(6, 1, 2, 3, 4, 2, 1, 4, 3, 0, 0)).toBe(-4); // E_NOT_INIT
    expect(raw.ctSetup(0)).toBe(E_RANGE);
    expect(raw.ctSetup(raw.ctMaxFlows() + 1)).toBe(E_RANGE);
    expect(raw.ctSetup(1000)).toBe(OK);
    expect(raw.ctSetup(1000)).toBe(E_RANGE);
    expect(raw.ctCapacity()).toBe(1000);
    expect(raw.ctSlotCount()).toBe(3000);
    expect(Number(raw.ctMemoryBytes())).toBe(1000 * 88);
    expect(raw.ctFlowSize()).toBe(40);
    for (let i = 0; i < 14; i++) expect(raw.ctTimeout(i)).toBe(DEFAULT_TIMEOUTS[i]);
    expect(raw.ctErrClash()).toBe(E_CT_CLASH);
  });

  it("holds 1,000,000 flows: every one found in both directions; the next one early-drops one", () => {
    const N = 1_000_000;
    const raw = fresh(N);
    expect(Number(raw.ctMemoryBytes())).toBe(N * 88);
    const buf: number = raw.scratchAlloc(16 * 65536);
    const dv = new DataView(raw.memory.buffer);
    const fill = (start: number, n: number, reverse: boolean) => {
      for (let i = 0; i < n; i++) {
        const k = start + i;
        const t = { src: 0x0a000000 + (k >>> 4), dst: 0x08080800 + (k & 15), sport: 1024 + (k % 50000), dport: 443 };
        const u = reverse ? rev(t) : t;
        dv.setUint32(buf + i * 16, u.src, true);
        dv.setUint32(buf + i * 16 + 4, u.dst, true);
        dv.setUint16(buf + i * 16 + 8, u.sport, true);
        dv.setUint16(buf + i * 16 + 10, u.dport, true);
        dv.setUint8(buf + i * 16 + 12, 6);
      }
    };
    for (let s = 0; s < N; s += 65536) {
      const n = Math.min(65536, N - s);
      fill(s, n, false);
      expect(ctCreateTuples(raw, buf, n, 0, 5000)).toBe(n);
    }
    expect(raw.ctCount()).toBe(N);
    for (let s = 0; s < N; s += 65536) {
      const n = Math.min(65536, N - s);
      fill(s, n, false);
      expect(ctLookupTuples(raw, buf, n)).toBe(n);
      fill(s, n, true);
      expect(ctLookupTuples(raw, buf, n)).toBe(n);
    }
    // None of them is assured (no packet was seen): one gives way.
    expect(udpFlow(raw, 1, 5001)).toBeGreaterThanOrEqual(0);
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(1);
    expect(Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(0);
    expect(raw.ctCount()).toBe(N);
  });
});

/** UDP flow `f` answered and then used again: a stream, ASSURED. */
function assure(raw: RawExports, f: number, now: number): void {
  expect(raw.ctTouch(f, 1, now)).toBe(OK);
  expect(raw.ctTouch(f, 0, now)).toBe(OK);
  expect(readFlow(raw, f)!.flags & F_ASSURED).toBe(F_ASSURED);
}

describe("conntrack: full table", () => {
  it("full of assured flows: existing ones keep working, new ones fail and are counted, a freed record is reused", () => {
    const raw = fresh(8);
    const flows = Array.from({ length: 8 }, (_, i) => udpFlow(raw, i, 100));
    expect(flows).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const f of flows) assure(raw, f, 100);
    for (let i = 8; i < 20; i++) expect(udpFlow(raw, i, 101)).toBe(E_FULL);
    expect(Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(12);
    expect(Number(raw.ctStat(STAT.INSERTS))).toBe(8);
    expect(raw.ctCount()).toBe(8);
    for (let i = 0; i < 8; i++) {
      const o = { src: A, dst: B, sport: 10000 + i, dport: 53 };
      expect(lookup(raw, 17, o)).toBe(i << 1);
      expect(lookup(raw, 17, rev(o))).toBe((i << 1) | 1);
      expect(raw.ctTouch(i, 1, 102)).toBe(OK);
    }
    expect(lookup(raw, 17, { src: A, dst: B, sport: 10008, dport: 53 })).toBe(-1);
    expect(raw.ctDelete(3)).toBe(OK);
    expect(raw.ctDelete(3)).toBe(E_NOT_FOUND);
    expect(udpFlow(raw, 30, 103)).toBe(3);
    // The newcomer is not assured: the next new flow takes its place.
    expect(udpFlow(raw, 31, 103)).toBe(3);
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(1);
    assure(raw, 3, 104);
    expect(udpFlow(raw, 32, 104)).toBe(E_FULL);
    expect(Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(13);
  });

  it("full of unassured flows: a new flow evicts the least recently seen one (early drop, counted)", () => {
    const raw = fresh(5); // 15 slots: the search window covers the whole table
    for (let i = 0; i < 5; i++) expect(udpFlow(raw, i, 100 + i)).toBe(i);
    raw.ctTouch(0, 0, 110); // flow 0 is the freshest now; flow 1 the oldest
    expect(udpFlow(raw, 5, 111)).toBe(1);
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(1);
    expect(lookup(raw, 17, { src: A, dst: B, sport: 10001, dport: 53 })).toBe(-1);
    expect(lookup(raw, 17, { src: A, dst: B, sport: 10005, dport: 53 })).toBe(1 << 1);
    // Assured flows stay; the unassured ones go, oldest first.
    assure(raw, 0, 112);
    assure(raw, 2, 112);
    expect(udpFlow(raw, 6, 113)).toBe(3);
    expect(udpFlow(raw, 7, 113)).toBe(4);
    expect(udpFlow(raw, 8, 114)).toBe(1); // flow 1 (sport 10005, seen at 111) was next
    for (const f of [0, 2]) expect(raw.ctFlowPtr(f)).not.toBe(0);
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(4);
    expect(Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(0);
    // An expired flow is reaped first (counted as expired, not as an early drop).
    assure(raw, 3, 114);
    assure(raw, 4, 114);
    assure(raw, 1, 114);
    expect(udpFlow(raw, 9, 115)).toBe(E_FULL);
    expect(Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(1);
    expect(udpFlow(raw, 9, 114 + 120)).toBeGreaterThanOrEqual(0); // the streams' 120 s are up
    expect(Number(raw.ctStat(STAT.EXPIRED))).toBe(1);
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(4);
  });

  it("assured TCP flows are kept unless they are closing; a SYN flood cannot push out established flows", () => {
    const raw = fresh(64);
    const est: number[] = [];
    for (let i = 0; i < 16; i++) {
      const o = { src: A, dst: B, sport: 20000 + i, dport: 443 };
      const f = create(raw, 6, o, rev(o), NAT_NONE, 1000);
      raw.ctUpdateTcp(f, 0, SYN, 1000);
      raw.ctUpdateTcp(f, 1, SYN | ACK, 1000);
      expect(raw.ctUpdateTcp(f, 0, ACK, 1000)).toBe(TCP.ESTABLISHED);
      est.push(f);
    }
    // A flood from one address over many source ports fills the rest and keeps coming.
    let admitted = 0;
    for (let p = 0; p < 2000; p++) {
      const o = { src: NODE, dst: A, sport: 1024 + p, dport: 30080 };
      const f = create(raw, 6, o, rev(o), NAT_NONE, 1001 + (p >> 8));
      if (f < 0) continue;
      expect(raw.ctUpdateTcp(f, 0, SYN, 1001 + (p >> 8))).toBe(TCP.SYN_SENT);
      admitted++;
    }
    expect(raw.ctCount()).toBe(64);
    for (const f of est) expect(readFlow(raw, f)!.state).toBe(TCP.ESTABLISHED);
    expect(admitted).toBeGreaterThan(1500); // the flood mostly evicts itself
    expect(Number(raw.ctStat(STAT.EARLY_DROP))).toBe(admitted - 48);
    expect(Number(raw.ctStat(STAT.EARLY_DROP)) + Number(raw.ctStat(STAT.INSERT_FAILED))).toBe(2000 - 48);
    // A closing assured flow may go: TIME_WAIT.
    const tiny = fresh(2);
    const o = { src: A, dst: B, sport: 1, dport: 2 };
    const f = create(tiny, 6, o, rev(o), NAT_NONE, 10);
    for (const [d, fl] of [[0, SYN], [1, SYN | ACK], [0, ACK], [0, FIN | ACK], [1, ACK], [1, FIN | ACK], [0, ACK]]) tiny.ctUpdateTcp(f, d, fl, 10);
    expect(readFlow(tiny, f)!.state).toBe(TCP.TIME_WAIT);
    const g = udpFlow(tiny, 0, 10);
    assure(tiny, g, 10);
    expect(udpFlow(tiny, 1, 11)).toBe(f);
    expect(Number(tiny.ctStat(STAT.EARLY_DROP))).toBe(1);
    // The newcomer is unassured itself: the next one evicts it, until it is a stream too.
    expect(udpFlow(tiny, 2, 12)).toBe(f);
    assure(tiny, f, 12);
    expect(udpFlow(tiny, 3, 13)).toBe(E_FULL);
    expect(Number(tiny.ctStat(STAT.EARLY_DROP))).toBe(2);
    expect(Number(tiny.ctStat(STAT.INSERT_FAILED))).toBe(1);
  });

  it("a clash changes nothing; an expired holder of the tuple is reaped instead", () => {
    const raw = fresh(4);
    const o = { src: A, dst: B, sport: 1, dport: 2 };
    expect(create(raw, 17, o, rev(o), NAT_NONE, 100)).toBe(0);
    expect(create(raw, 17, o, { src: B, dst: NODE, sport: 2, dport: 9 }, NAT_SNAT, 110)).toBe(E_CT_CLASH);
    expect(create(raw, 17, { src: 7, dst: 8, sport: 9, dport: 10 }, rev(o), NAT_NONE, 110)).toBe(E_CT_CLASH);
    expect(Number(raw.ctStat(STAT.CLASH))).toBe(2);
    expect(raw.ctCount()).toBe(1);
    // UDP unreplied: 30 s. At 130 the old flow is dead; the new one takes the tuple.
    expect(create(raw, 17, o, { src: B, dst: NODE, sport: 2, dport: 9 }, NAT_SNAT, 130)).toBe(0);
    expect(Number(raw.ctStat(STAT.EXPIRED))).toBe(1);
    expect(lookup(raw, 17, rev(o))).toBe(-1);
    expect(lookup(raw, 17, { src: B, dst: NODE, sport: 2, dport: 9 })).toBe(1);
    // The same key for both directions is refused.
    expect(create(raw, 17, { src: A, dst: A, sport: 5, dport: 5 }, { src: A, dst: A, sport: 5, dport: 5 }, 0, 130)).toBe(E_RANGE);
  });
});

describe("conntrack: keyed hash", () => {
  it("the seed moves keys; a set built to collide without it spreads with a random one", () => {
    const N = 4096;
    const plain = fresh(N, [0n, 0n]);
    // An attacker who knew the hash (seed 0): NodePort tuples from one
    // address, source ports picked so that they all land on few home slots.
    const chosen: number[] = [];
    const target = plain.ctHomeSlot(6, B, NODE, 1024, 30080) as number;
    for (let p = 1024; p < 65536 && chosen.length < 40; p++) {
      const h = plain.ctHomeSlot(6, B, NODE, p, 30080) as number;
      if (Math.abs(h - target) < 24) chosen.push(p);
    }
    expect(chosen.length).toBe(40);
    const spread = (raw: RawExports) => {
      const homes = chosen.map((p) => raw.ctHomeSlot(6, B, NODE, p, 30080) as number).sort((a, b) => a - b);
      return homes[homes.length - 1] - homes[0];
    };
    expect(spread(plain)).toBeLessThan(48);
    const keyed = fresh(N, [0x0123456789abcdefn, 0xfedcba9876543210n]);
    expect(spread(keyed)).toBeGreaterThan(N); // over the 3N slots, not a cluster
    // And the probe chains those keys build: inserted, they are found with short runs.
    let made = 0;
    for (const p of chosen) {
      const o = { src: B, dst: NODE, sport: p, dport: 30080 };
      if (create(keyed, 6, o, rev(o), NAT_NONE, 1) >= 0) made++;
    }
    expect(made).toBe(40);
    for (const p of chosen) expect(lookup(keyed, 6, { src: B, dst: NODE, sport: p, dport: 30080 })).toBeGreaterThanOrEqual(0);
  });

  it("a seed is set only on an empty table; two data paths draw different seeds", () => {
    const raw = fresh(8, [1n, 2n]);
    expect(raw.ctHashSeed(0)).toBe(1n);
    expect(raw.ctHashSeed(1)).toBe(2n);
    udpFlow(raw, 0, 1);
    expect(raw.ctSetHashSeed(3n, 4n)).toBe(E_RANGE);
    expect(raw.ctHashSeed(0)).toBe(1n);
    const seeds = [0, 1].map(() => {
      const dp = new Dataplane({ kind: "debug" });
      dp.natSetup({ maxFlows: 16 });
      return `${dp.raw.ctHashSeed(0)}/${dp.raw.ctHashSeed(1)}`;
    });
    expect(seeds[0]).not.toBe(seeds[1]);
    expect(seeds[0]).not.toBe("0/0");
    const given = new Dataplane({ kind: "debug" });
    given.natSetup({ maxFlows: 16, hashSeed: Uint8Array.from({ length: 16 }, (_, i) => i + 1) });
    expect(given.raw.ctHashSeed(0)).toBe(0x0807060504030201n);
    expect(given.raw.ctHashSeed(1)).toBe(0x100f0e0d0c0b0a09n);
  });
});


describe("conntrack: timeouts", () => {
  /** Drive a TCP flow into `state` by its flag sequence; return the flow. */
  const paths: Record<string, [number, number][]> = {
    SYN_SENT: [[0, SYN]],
    SYN_RECV: [[0, SYN], [1, SYN | ACK]],
    ESTABLISHED: [[0, SYN], [1, SYN | ACK], [0, ACK]],
    FIN_WAIT: [[0, SYN], [1, SYN | ACK], [0, ACK], [0, FIN | ACK]],
    CLOSE_WAIT: [[0, SYN], [1, SYN | ACK], [0, ACK], [0, FIN | ACK], [1, ACK]],
    LAST_ACK: [[0, SYN], [1, SYN | ACK], [0, ACK], [0, FIN | ACK], [1, ACK], [1, FIN | ACK]],
    TIME_WAIT: [[0, SYN], [1, SYN | ACK], [0, ACK], [0, FIN | ACK], [1, ACK], [1, FIN | ACK], [0, ACK]],
    CLOSE: [[0, SYN], [1, SYN | ACK], [0, ACK], [1, RST]],
    SYN_SENT2: [[0, SYN], [1, SYN]],
  };

  it("every state x direction x event agrees with the transcribed nf_conntrack table (120 cases)", () => {
    const starts: [string, [number, number][]][] = [["NONE", []], ...Object.entries(paths)];
    const events = [SYN, SYN | ACK, FIN | ACK, ACK, RST, PSH];
    let cases = 0;
    for (const [name, path] of starts) {
      for (const dir of [0, 1]) {
        for (const flags of events) {
          const raw = fresh(2);
          const slow = new SlowConntrack(2);
          const o = { src: A, dst: B, sport: 40000, dport: 80 };
          const f = create(raw, 6, o, rev(o), NAT_NONE, 1000);
          slow.create(6, o, rev(o), NAT_NONE, 1000, f);
          for (const [d, fl] of path) expect(raw.ctUpdateTcp(f, d, fl, 1000)).toBe(slow.updateTcp(f, d, fl, 1000));
          expect(readFlow(raw, f)!.state, name).toBe(TCP[name as keyof typeof TCP]);
          expect(raw.ctUpdateTcp(f, dir, flags, 1001), `${name} dir ${dir} flags ${flags}`).toBe(slow.updateTcp(f, dir, flags, 1001));
          expect(readFlow(raw, f)).toEqual(slow.flows.get(f));
          cases++;
        }
      }
    }
    expect(cases).toBe(120);
  });

  for (const [name, path] of Object.entries(paths)) {
    it(`TCP ${name}: reaped exactly at its nf_conntrack timeout (${DEFAULT_TIMEOUTS[TCP[name as keyof typeof TCP]]} s)`, () => {
      const raw = fresh(16);
      const o = { src: A, dst: B, sport: 40000, dport: 80 };
      const f = create(raw, 6, o, rev(o), NAT_NONE, 1000);
      let st = 0;
      for (const [dir, flags] of path) st = raw.ctUpdateTcp(f, dir, flags, 1000);
      const want = TCP[name as keyof typeof TCP];
      expect(st).toBe(want);
      const to = DEFAULT_TIMEOUTS[want];
      expect(readFlow(raw, f)!.deadline).toBe(1000 + to);
      expect(raw.ctExpire(1000 + to - 1, 100)).toBe(0);
      expect(raw.ctLookupLive(6, A, B, 40000, 80, 1000 + to - 1)).toBe(f << 1);
      expect(raw.ctExpire(1000 + to, 100)).toBe(1);
      expect(raw.ctCount()).toBe(0);
      expect(lookup(raw, 6, o)).toBe(-1);
    });
  }

  it("UDP: 30 s until a reply and after it, a 120 s stream once traffic follows the reply; ICMP 30 s; other protocols 600 s", () => {
    const raw = fresh(16);
    const u = udpFlow(raw, 0, 1000);
    const icmp = create(raw, 1, { src: A, dst: B, sport: 77, dport: 0 }, { src: B, dst: A, sport: 77, dport: 0 }, NAT_NONE, 1000);
    const gre = create(raw, 47, { src: A, dst: B, sport: 0, dport: 0 }, { src: B, dst: A, sport: 0, dport: 0 }, NAT_NONE, 1000);
    expect(readFlow(raw, u)!.deadline).toBe(1030);
    expect(readFlow(raw, icmp)!.deadline).toBe(1030);
    expect(readFlow(raw, gre)!.deadline).toBe(1600);
    expect(raw.ctTouch(u, 0, 1010)).toBe(OK);
    expect(readFlow(raw, u)!.deadline).toBe(1040);
    expect(raw.ctTouch(u, 1, 1020)).toBe(OK);
    // One answer (a DNS query's): still 30 s, not assured.
    expect(readFlow(raw, u)!.deadline).toBe(1050);
    expect(readFlow(raw, u)!.flags).toBe(F_USED | F_SEEN_REPLY);
    expect(raw.ctTouch(u, 0, 1025)).toBe(OK);
    const fl = readFlow(raw, u)!;
    expect(fl.deadline).toBe(1145);
    expect(fl.flags).toBe(F_USED | F_SEEN_REPLY | F_ASSURED);
    expect(raw.ctExpire(1144, 100)).toBe(1); // the ICMP flow
    expect(raw.ctExpire(1145, 100)).toBe(1); // the UDP stream
    expect(raw.ctExpire(1599, 100)).toBe(0);
    expect(raw.ctExpire(1600, 100)).toBe(1);
  });

  it("a changed timeout applies from a flow's next packet; bad settings are refused", () => {
    const raw = fresh(4);
    const u = udpFlow(raw, 0, 1000);
    expect(raw.ctSetTimeout(TO.UDP, 5)).toBe(OK);
    expect(raw.ctSetTimeout(14, 5)).toBe(E_RANGE);
    expect(raw.ctSetTimeout(TO.UDP, 0)).toBe(E_RANGE);
    expect(readFlow(raw, u)!.deadline).toBe(1030);
    raw.ctTouch(u, 0, 1001);
    expect(readFlow(raw, u)!.deadline).toBe(1006);
  });

  it("the clock hand looks at no more than `budget` records per call and wraps", () => {
    const raw = fresh(100);
    for (let i = 0; i < 100; i++) udpFlow(raw, i, 1000);
    for (let k = 0; k < 10; k++) {
      expect(raw.ctExpire(2000, 10)).toBe(10);
      expect(raw.ctCount()).toBe(90 - k * 10);
    }
    expect(raw.ctHand()).toBe(0);
    expect(raw.ctExpire(2000, 1000)).toBe(0);
    expect(Number(raw.ctStat(STAT.EXPIRED))).toBe(100);
  });

  it("the u32 clock may wrap", () => {
    const raw = fresh(4);
    const start = 0xffffffff - 10;
    const u = udpFlow(raw, 0, start);
    expect(readFlow(raw, u)!.deadline).toBe((start + 30) >>> 0);
    expect(raw.ctExpire(start + 29, 10)).toBe(0);
    expect(raw.ctExpire((start + 30) >>> 0, 10)).toBe(1);
  });
});

describe("conntrack: TCP state machine", () => {
  const o = { src: A, dst: B, sport: 40001, dport: 443 };
  const tcpFlow = (raw: RawExports) => create(raw, 6, o, rev(o), NAT_NONE, 1000);
  const verdict = (r: number) => r >> 8;
  const state = (r: number) => r & 0xff;

  it("handshake, data and an orderly close", () => {
    const raw = fresh(4);
    const f = tcpFlow(raw);
    expect(readFlow(raw, f)!.state).toBe(TCP.NONE);
    const steps: [number, number, number][] = [
      [0, SYN, TCP.SYN_SENT], [0, SYN, TCP.SYN_SENT], [1, SYN | ACK, TCP.SYN_RECV], [0, ACK, TCP.ESTABLISHED],
      [0, PSH | ACK, TCP.ESTABLISHED], [1, ACK, TCP.ESTABLISHED], [0, FIN | ACK, TCP.FIN_WAIT], [1, ACK, TCP.CLOSE_WAIT],
      [1, FIN | ACK, TCP.LAST_ACK], [0, ACK, TCP.TIME_WAIT], [0, ACK, TCP.TIME_WAIT],
    ];
    for (const [dir, flags, want] of steps) expect(raw.ctUpdateTcp(f, dir, flags, 1000)).toBe(want);
    expect(readFlow(raw, f)!.flags).toBe(F_USED | F_SEEN_REPLY | F_ASSURED);
  });

  it("RST closes from any state; SYN in TIME_WAIT or CLOSE reopens", () => {
    const raw = fresh(4);
    const f = tcpFlow(raw);
    raw.ctUpdateTcp(f, 0, SYN, 1000);
    expect(raw.ctUpdateTcp(f, 1, RST | ACK, 1001)).toBe(TCP.CLOSE);
    expect(readFlow(raw, f)!.deadline).toBe(1011);
    expect(raw.ctUpdateTcp(f, 0, SYN, 1002)).toBe(TCP.SYN_SENT);
    expect(readFlow(raw, f)!.deadline).toBe(1122);
  });

  it("invalid packets change nothing and are counted; ignored ones change nothing", () => {
    const raw = fresh(4);
    const f = tcpFlow(raw);
    const r0 = raw.ctUpdateTcp(f, 0, FIN, 1000); // a flow must start with SYN (or ACK: picked up mid-stream)
    expect(verdict(r0)).toBe(TCP_VERDICT.INVALID);
    expect(state(r0)).toBe(TCP.NONE);
    raw.ctUpdateTcp(f, 0, SYN, 1000);
    const r1 = raw.ctUpdateTcp(f, 0, ACK, 1005); // ACK before any SYN-ACK
    expect(verdict(r1)).toBe(TCP_VERDICT.INVALID);
    expect(state(r1)).toBe(TCP.SYN_SENT);
    expect(readFlow(raw, f)!.deadline).toBe(1120); // not refreshed
    raw.ctUpdateTcp(f, 1, SYN | ACK, 1006);
    const r2 = raw.ctUpdateTcp(f, 1, SYN | ACK, 1007); // retransmitted SYN-ACK
    expect(verdict(r2)).toBe(TCP_VERDICT.IGNORED);
    expect(state(r2)).toBe(TCP.SYN_RECV);
    expect(Number(raw.ctStat(STAT.INVALID))).toBe(2);
    expect(raw.ctUpdateTcp(f, 2, ACK, 1008)).toBe(E_RANGE);
    expect(raw.ctUpdateTcp(3, 0, ACK, 1008)).toBe(E_NOT_FOUND);
    const u = udpFlow(raw, 0, 1000);
    expect(raw.ctUpdateTcp(u, 0, ACK, 1008)).toBe(E_RANGE);
  });

  it("an ACK first picks an established flow up mid-stream (nf_conntrack_tcp_loose)", () => {
    const raw = fresh(4);
    const f = tcpFlow(raw);
    expect(raw.ctUpdateTcp(f, 0, ACK, 1000)).toBe(TCP.ESTABLISHED);
    expect(readFlow(raw, f)!.deadline).toBe(1000 + 86400);
  });
});

describe("SNAT port allocation", () => {
  it("ports come from the range, never reuse a tracked reply tuple, and run out with 0", () => {
    const raw = fresh(64);
    expect(raw.natSetPortRange(0, 10)).toBe(E_RANGE);
    expect(raw.natSetPortRange(20, 10)).toBe(E_RANGE);
    expect(raw.natSetPortRange(1, 65536)).toBe(E_RANGE);
    expect(raw.natPortMin()).toBe(61000);
    expect(raw.natPortMax()).toBe(65535);
    expect(raw.natSetPortRange(61000, 61019)).toBe(OK);
    const seen = new Set<number>();
    for (let i = 0; i < 20; i++) {
      const p: number = raw.natAllocPort(17, NODE, B, 53, i * 7919);
      expect(p).toBeGreaterThanOrEqual(61000);
      expect(p).toBeLessThanOrEqual(61019);
      expect(seen.has(p)).toBe(false);
      seen.add(p);
      const o = { src: A, dst: B, sport: 5000 + i, dport: 53 };
      expect(create(raw, 17, o, { src: B, dst: NODE, sport: 53, dport: p }, NAT_SNAT, 1000)).toBe(i);
    }
    expect(raw.natAllocPort(17, NODE, B, 53, 1)).toBe(0);
    // Another destination port, protocol or destination has its own space.
    expect(raw.natAllocPort(17, NODE, B, 54, 1)).not.toBe(0);
    expect(raw.natAllocPort(6, NODE, B, 53, 1)).not.toBe(0);
    expect(raw.natAllocPort(17, NODE, B + 1, 53, 1)).not.toBe(0);
  });

  it("random: an allocated port never collides with any key in the table", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.nat()), { minLength: 1, maxLength: 300 }), (steps) => {
        const raw = fresh(400);
        raw.natSetPortRange(1024, 1299);
        const slow = new SlowConntrack(400);
        const dsts = [B, B + 1];
        for (const [d, seed] of steps) {
          const dst = dsts[d & 1];
          const dport = d & 2 ? 80 : 443;
          const p: number = raw.natAllocPort(6, NODE, dst, dport, seed);
          if (p === 0) continue;
          expect(p >= 1024 && p <= 1299).toBe(true);
          expect(slow.holds(6, { src: dst, dst: NODE, sport: dport, dport: p })).toBe(false);
          const o = { src: A, dst, sport: seed & 0xffff, dport };
          const r = { src: dst, dst: NODE, sport: dport, dport: p };
          const got = create(raw, 6, o, r, NAT_SNAT, 1000);
          expect(got).toBe(slow.create(6, o, r, NAT_SNAT, 1000, got));
        }
      }),
      { numRuns: 100 },
    );
  });

  it("spreads: consecutive allocations are not sequential", () => {
    const raw = fresh(8);
    const ports = Array.from({ length: 8 }, (_, i) => raw.natAllocPort(6, NODE, B, 443, i) as number);
    const sequential = ports.every((p, i) => i === 0 || p === ports[i - 1] + 1);
    expect(sequential).toBe(false);
    expect(new Set(ports).size).toBeGreaterThan(4);
  });
});
