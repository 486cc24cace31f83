// Control messages, taken between batches: table updates, stats, conntrack
// pages, backend flushes, path MTUs, test hooks. Long jobs (a dump of
// millions of flows, a backend flush) go on a bounded step per loop turn,
// so they never stall a batch.
import type { MessagePort } from "node:worker_threads";
import type { BackendFlush, Dataplane, FlowRecord } from "../../dataplane/dataplane.js";
import type { TableState } from "../../dataplane/tables.js";
import type { IoErrors } from "../../io/errors.js";
import { CT_DUMP_PER_TURN, CT_PAGE_MAX, type FromWorker, type IoStats, type ToWorker } from "../worker.js";

/** Conntrack entries a backend flush looks at per loop turn: ~0.5 ms of work with deletions (README). */
const FLUSH_BUDGET = 16384;

/** Conntrack runs on seconds of a monotonic clock (wall-clock steps must not expire or immortalise flows). */
export const nowSec = () => Math.floor((performance.timeOrigin + performance.now()) / 1000) >>> 0;

export class Control {
  /** Backend flushes in progress, a bounded slice of the table per loop. */
  private readonly flushes: { id: number; walk: BackendFlush }[] = [];
  /** A conntrack dump in progress. */
  private dump: { id: number; next: number; left: number; flows: FlowRecord[]; turns: number } | undefined;
  private fillSeq = 0;
  private tuples = 0;

  constructor(
    private readonly dp: Dataplane,
    private readonly state: TableState,
    private readonly port: MessagePort,
    private readonly ioStats: IoStats,
    private readonly ioErrors: IoErrors,
    /** Conntrack is carved (natMaxFlows > 0). */
    private readonly nat: boolean,
    private readonly testHooks: boolean,
  ) {}

  /** Work left that must not wait in poll: a dump or a flush under way. */
  get busy(): boolean {
    return this.dump !== undefined || this.flushes.length > 0;
  }

  private post(m: FromWorker): void {
    this.port.postMessage(m);
  }

  postStats(): void {
    this.ioStats.errors = this.ioErrors.snapshot();
    this.post({ type: "stats", counters: this.dp.counters(), io: this.ioStats, ct: this.ctStats() });
  }

  private ctStats() {
    return this.nat ? this.dp.conntrackStats() : undefined;
  }

  /** The last words of a worker: final stats, then "stopped". */
  stopped(): void {
    this.postStats();
    this.post({ type: "stopped" });
  }

  /** Handle one message other than "stop" (the loop's own). */
  handle(m: Exclude<ToWorker, { type: "stop" }>): void {
    switch (m.type) {
      case "tables": {
        const r = this.state.apply(m.tables);
        this.post({ type: "applied", id: m.id, errors: r.errors, routesAdded: r.routesAdded, routesRemoved: r.routesRemoved });
        break;
      }
      case "stats":
        this.postStats();
        break;
      case "pmtu":
        for (const u of m.updates) this.dp.setPeerPmtu(u.peer, u.mtu, m.ttlMs);
        break;
      case "flushBackends":
        if (this.nat) {
          if (m.keys6?.length) this.flushes.push({ id: m.id, walk: this.dp.backendFlush6(m.proto, m.keys6) });
          if (m.keys.length || !m.keys6?.length) this.flushes.push({ id: m.id, walk: this.dp.backendFlush(m.proto, m.keys) });
        }
        else this.post({ type: "flushed", id: m.id, deleted: 0 });
        break;
      case "conntrack":
        this.startDump(m.id, m.cursor, m.limit);
        break;
      case "hang":
        if (this.testHooks) {
          // A worker stuck for good (tests of /healthz and the watchdog).
          const w = new Int32Array(new SharedArrayBuffer(4));
          for (;;) Atomics.wait(w, 0, 0, 1000);
        }
        break;
      case "ctFill":
        if (this.testHooks) this.post({ type: "ctFilled", id: m.id, made: this.nat ? this.ctFill(m.n) : 0 });
        break;
    }
  }

  /** A new page replaces one under way (which is answered with what it has). */
  private startDump(id: number, cursor: number, limit: number): void {
    const d = this.dump;
    if (d) this.post({ type: "conntrack", id: d.id, now: nowSec(), flows: d.flows, stats: this.ctStats(), next: d.next, turns: d.turns });
    limit = Math.min(CT_PAGE_MAX, Math.max(1, Math.floor(limit) || CT_PAGE_MAX));
    this.dump = this.nat ? { id, next: Math.max(0, Math.floor(cursor) || 0), left: limit, flows: [], turns: 0 } : undefined;
    if (!this.nat) this.post({ type: "conntrack", id, now: nowSec(), flows: [], stats: undefined, next: -1, turns: 0 });
  }

  /** One bounded step of the backend flush under way (before poll). */
  flushStep(): void {
    if (!this.flushes.length || !this.flushes[0].walk.step(FLUSH_BUDGET)) return;
    const done = this.flushes.shift()!;
    this.post({ type: "flushed", id: done.id, deleted: done.walk.deleted });
  }

  /** One bounded step of the conntrack dump under way (after the batches). */
  dumpStep(): void {
    const d = this.dump;
    if (!d) return;
    const now = nowSec();
    d.turns++;
    const before = d.flows.length;
    d.next = this.dp.conntrackScan(now, d.next, Math.min(CT_DUMP_PER_TURN, d.left), d.flows);
    d.left -= d.flows.length - before;
    if (d.next < 0 || d.left <= 0) {
      this.post({ type: "conntrack", id: d.id, now, flows: d.flows, stats: this.ctStats(), next: d.next, turns: d.turns });
      this.dump = undefined;
    }
  }

  /** Test hook: `n` placeholder flows (IP protocol 114, "any 0-hop
   *  protocol": the generic timeout, 600 s; protocol bytes from 128 up mark
   *  IPv6 flows in the table, nat/conntrack.ts), from 198.18.128.0/17
   *  to 198.18.127.1, without NAT, so a dump has something to walk. */
  private ctFill(n: number): number {
    const CHUNK = 4096;
    const dp = this.dp;
    if (!this.tuples) this.tuples = Number(dp.raw.allocScratch(CHUNK * 16));
    let made = 0;
    for (let done = 0; done < n; ) {
      const k = Math.min(CHUNK, n - done);
      const dv = dp.dv;
      for (let i = 0; i < k; i++, this.fillSeq++) {
        const t = this.tuples + i * 16, seq = this.fillSeq;
        dv.setUint32(t, (0xc6128000 | (seq >>> 16)) >>> 0, true); // 198.18.128.0 + seq / 65536
        dv.setUint32(t + 4, 0xc6127f01, true); // 198.18.127.1
        dv.setUint16(t + 8, seq & 0xffff, true);
        dv.setUint16(t + 10, 9, true);
        dv.setUint8(t + 12, 114);
      }
      made += dp.ctCreateTuples(this.tuples, k, 0, nowSec());
      done += k;
    }
    return made;
  }
}
