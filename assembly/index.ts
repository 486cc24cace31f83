// wasm-overlay data path: the module's exported ABI.
// Control-plane calls (init, table loads) are here; the per-batch entry points
// live in pipeline/ and are re-exported below.
export * from "./tables/exports";
import { regionsEnd } from "./layout";

/** Bytes of linear memory handed out to regions so far. */
export function memoryInUse(): usize {
  return regionsEnd();
}
