// One connection table for every worker (issue 18): data-path instances on
// one shared memory carve their own regions and share the table the first
// one carved; two worker threads changing it at once leave exactly what a
// sequential twin left (their keys are disjoint, so any interleaving must
// give the same table), with the table's invariants whole.
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dataplane, type FlowRecord } from "../src/dataplane/dataplane.js";
import { createDataplaneMemory } from "../src/dataplane/wasm.js";
import { applyCtOp, type CtOp } from "./helpers/ct-ops.js";

const small = { batch: 8, tbl8Groups: 16 };
const key = (f: FlowRecord) => JSON.stringify([f.orig, f.reply, f.nat, f.flags, f.state, f.expiresIn]);

describe("a connection table shared by instances on one memory", () => {
  it("each instance carves its own regions; the second attaches to the first one's table", () => {
    const memory = createDataplaneMemory();
    const a = new Dataplane({ memory, ...small });
    const b = new Dataplane({ memory, ...small });
    expect(a.memory).toBe(b.memory);
    // Slots (and everything else carved) do not overlap.
    const aEnd = a.slotBase + a.batch * a.slotSize;
    expect(b.slotBase >= aEnd || b.slotBase + b.batch * b.slotSize <= a.slotBase).toBe(true);
    // A table that was not shared refuses attachers (its owner does not lock).
    const alone = new Dataplane({ memory, ...small });
    alone.natSetup({ maxFlows: 10 });
    expect(() => b.natSetup({ maxFlows: 0, attach: alone.ctHeader })).toThrow(/conntrack attach/);
    a.natSetup({ maxFlows: 1000, shared: true });
    expect(a.ctHeader).toBeGreaterThan(0);
    expect(() => b.natSetup({ maxFlows: 1000, attach: 0 })).toThrow(/conntrack attach/);
    b.natSetup({ maxFlows: 0, attach: a.ctHeader });
    expect(b.ctHeader).toBe(a.ctHeader);
    expect(b.raw.ctCapacity()).toBe(1000);
    // Both see one table: created through a, found, touched and deleted through b.
    const f: number = a.raw.ctCreate(17, 1, 2, 3, 4, 2, 9, 4, 61000, 1, 10);
    expect(f).toBeGreaterThanOrEqual(0);
    expect(b.raw.ctLookup(17, 2, 9, 4, 61000)).toBe((f << 1) | 1);
    expect(b.raw.ctHashSeed(0)).toBe(a.raw.ctHashSeed(0));
    expect(b.conntrackStats().entries).toBe(1);
    expect(b.raw.ctDelete(f)).toBe(0);
    expect(a.raw.ctLookup(17, 1, 2, 3, 4)).toBe(-1);
    expect(a.conntrackStats()).toMatchObject({ entries: 0, inserts: 1, deletes: 1 });
    // Only the instance that carved the table reports its events (no double count when summed).
    expect(a.counters().ct_inserts).toBe(1n);
    expect(b.counters().ct_inserts).toBeUndefined();
    // An attached instance cannot carve or attach again.
    expect(() => b.natSetup({ maxFlows: 10, attach: a.ctHeader })).toThrow(/conntrack attach/);
  });

  describe("two worker threads at once against a sequential twin", () => {
    const memory = createDataplaneMemory();
    const owner = new Dataplane({ memory, ...small });
    owner.natSetup({ maxFlows: 4096, shared: true });
    const barrier = new SharedArrayBuffer(8);
    const go = new Int32Array(barrier);
    let workers: Worker[] = [];
    let round = 0;

    beforeAll(async () => {
      // The child is TypeScript: the worker registers tsx's loader, then imports it.
      const child = new URL("./helpers/ct-shared-child.ts", import.meta.url).href;
      const code = `import("tsx/esm/api").then((t) => { t.register(); return import(${JSON.stringify(child)}); })`;
      workers = [0, 1].map((worker) => new Worker(code, { eval: true, workerData: { memory, header: owner.ctHeader, barrier, worker } }));
      await Promise.all(workers.map((w) => new Promise((r, j) => { w.once("message", r); w.once("error", j); })));
    }, 60_000);
    afterAll(async () => {
      await Promise.all(workers.map((w) => w.terminate()));
    });

    /** Run both lists at once; resolves with each worker's outcomes. */
    const runBoth = (lists: CtOp[][]): Promise<string[][]> => {
      round++;
      const done = workers.map((w, i) => new Promise<string[]>((r) => { w.once("message", r); w.postMessage({ ops: lists[i], round }); }));
      Atomics.store(go, 0, round);
      Atomics.notify(go, 0);
      return Promise.all(done);
    };

    it("leaves the flows, outcomes and invariants the twin has", async () => {
      const op = fc.record({ kind: fc.constantFrom<CtOp["kind"]>("create", "create", "delete", "touch"), k: fc.integer({ min: 0, max: 63 }) });
      await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 50, maxLength: 400 }), fc.array(op, { minLength: 50, maxLength: 400 }), async (a, b) => {
        // Empty the shared table, then both workers at once.
        for (let f: number = owner.raw.ctEntryAt(0); f >= 0; f = owner.raw.ctEntryAt(f + 1)) owner.raw.ctDelete(f);
        const got = await runBoth([a, b]);
        const twin = new Dataplane(small);
        twin.natSetup({ maxFlows: 4096 });
        const want = [a, b].map((ops, w) => ops.map((o) => applyCtOp(twin.raw, w, o)));
        expect(got).toEqual(want);
        const shared = owner.conntrackDump(100, 10_000);
        expect(shared.map(key).sort()).toEqual(twin.conntrackDump(100, 10_000).map(key).sort());
        // Invariants: the count is the records in use; each flow is found by both its tuples.
        expect(owner.raw.ctCount()).toBe(shared.length);
        for (const f of shared) {
          const o: number = owner.raw.ctLookup(17, f.orig.src, f.orig.dst, f.orig.sport, f.orig.dport);
          expect(o >= 0 && (o & 1) === 0).toBe(true);
          expect(owner.raw.ctLookup(17, f.reply.src, f.reply.dst, f.reply.sport, f.reply.dport)).toBe(o | 1);
        }
      }), { numRuns: 25 });
    }, 120_000);
  });
});
