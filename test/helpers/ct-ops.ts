// Connection-table operations for test/ct-shared.test.ts, applied the same
// way by the workers on the shared table and by the sequential twin. Worker
// w's keys never meet another worker's: a masqueraded UDP flow from
// 10.w.0.k:1000+k to 11.0.0.1:53, answered at 12.0.0.1:20000+100w+k.
import type { RawExports } from "../../src/dataplane/wasm.js";

export type CtOp = { kind: "create" | "delete" | "touch"; k: number };

const NOW = 100;

export function tuple(worker: number, k: number) {
  return {
    orig: { src: (0x0a000000 | (worker << 16) | k) >>> 0, dst: 0x0b000001, sport: 1000 + k, dport: 53 },
    reply: { src: 0x0b000001, dst: 0x0c000001, sport: 53, dport: 20000 + 100 * worker + k },
  };
}

/** Apply `op`; the outcome as a word the twin's must equal: "ok", or the status. */
export function applyCtOp(raw: RawExports, worker: number, op: CtOp): string {
  const { orig: o, reply: r } = tuple(worker, op.k);
  const ref: number = raw.ctLookup(17, o.src, o.dst, o.sport, o.dport);
  if (op.kind === "create") {
    const f: number = raw.ctCreate(17, o.src, o.dst, o.sport, o.dport, r.src, r.dst, r.sport, r.dport, 1, NOW);
    return f >= 0 ? "ok" : `status ${f}`;
  }
  if (ref < 0) return "absent";
  const st: number = op.kind === "delete" ? raw.ctDelete(ref >> 1) : raw.ctTouch(ref >> 1, 1, NOW + op.k);
  return st === 0 ? "ok" : `status ${st}`;
}
