// The bench build (build/overlay.bench.wasm, `npm run asbuild:bench`): the
// module's whole ABI and the benchmarks' batch loops (nat/bench.ts). The
// daemon never loads it.
export * from "./index";
export { ctBenchLookup, ctBenchLookupLocked, ctBenchCreate, natBenchTranslate, natBenchTranslateLocked, ctBenchDelete } from "./nat/bench";
