// One worker of test/ct-shared.test.ts: a data-path instance on the test's
// shared memory, attached to its connection table, running the op lists it
// is sent against it (each op under the table's lock, as the data path
// does per packet), started together with the other worker by a barrier.
import { parentPort, workerData } from "node:worker_threads";
import { Dataplane } from "../../src/dataplane/dataplane.js";
import { applyCtOp, type CtOp } from "./ct-ops.js";

const { memory, header, barrier, worker } = workerData as { memory: WebAssembly.Memory; header: number; barrier: SharedArrayBuffer; worker: number };
const dp = new Dataplane({ memory, batch: 8, tbl8Groups: 16 });
dp.natSetup({ maxFlows: 0, attach: header });
const go = new Int32Array(barrier);

parentPort!.on("message", (m: { ops: CtOp[]; round: number }) => {
  // Both workers wait for the round to open, so their ops run at the same time.
  Atomics.add(go, 1, 1);
  while (Atomics.load(go, 0) < m.round) Atomics.wait(go, 0, m.round - 1, 100);
  const results = m.ops.map((op) => {
    dp.raw.ctLock();
    try {
      return applyCtOp(dp.raw, worker, op);
    } finally {
      dp.raw.ctUnlock();
    }
  });
  parentPort!.postMessage(results);
});
parentPort!.postMessage("ready");
