// Loading the compiled data-path module. Synchronous on purpose: the daemon's
// workers and the tests instantiate it once at start-up.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** release: what the daemon runs; debug: with assertions; bench: release plus
 *  the benchmarks' batch loops (assembly/bench.ts, `npm run asbuild:bench`). */
export type BuildKind = "release" | "debug" | "bench";

/** The repository root, found from this file whether it runs from src/ (tsx,
 *  vitest) or from dist/src/ (compiled). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(resolve(dir, "asconfig.json"));
      return dir;
    } catch {
      dir = resolve(dir, "..");
    }
  }
  throw new Error("cannot find the wasm-overlay root (asconfig.json) above " + fileURLToPath(import.meta.url));
}

export function wasmPath(kind: BuildKind = "release"): string {
  return resolve(repoRoot(), "build", kind === "release" ? "overlay.wasm" : kind === "bench" ? "overlay.bench.wasm" : "overlay.debug.wasm");
}

/** The raw exports of the module: functions take and return numbers (i64 as bigint). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RawExports = Record<string, any> & { memory: WebAssembly.Memory };

const moduleCache = new Map<string, WebAssembly.Module>();

/** Pages of the data path's memory: what the module starts with and at most (asconfig.json). */
export const MEMORY_INITIAL_PAGES = 16;
export const MEMORY_MAX_PAGES = 65536;

/** A memory for the data path (the threads build imports one): shared, so
 *  several instances (workers) can use it at once, each carving its own
 *  regions from it, one carving the connection table the others attach to. */
export function createDataplaneMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: MEMORY_INITIAL_PAGES, maximum: MEMORY_MAX_PAGES, shared: true });
}

/** Instantiate a copy of the data path: its own tables, in a fresh memory of
 *  its own, or in `memory` (createDataplaneMemory) beside other instances. */
export function instantiateDataplane(kind: BuildKind = "release", path = wasmPath(kind), memory?: WebAssembly.Memory): RawExports {
  let mod = moduleCache.get(path);
  if (!mod) {
    try {
      mod = new WebAssembly.Module(readFileSync(path));
    } catch (e) {
      throw new Error(`cannot load ${path}: ${(e as Error).message} (run \`npm run build\`${path.endsWith("overlay.bench.wasm") ? " and \`npm run asbuild:bench\`" : ""} first)`);
    }
    moduleCache.set(path, mod);
  }
  const imported = WebAssembly.Module.imports(mod).some((i) => i.module === "env" && i.name === "memory" && i.kind === "memory");
  const instance = new WebAssembly.Instance(mod, {
    env: {
      ...(imported ? { memory: memory ?? createDataplaneMemory() } : {}),
      // AssemblyScript calls abort() on a failed assertion or an explicit throw.
      // The data path never throws; reaching this is a bug worth a loud error.
      abort(msgPtr: number, filePtr: number, line: number, col: number) {
        throw new Error(`wasm abort at ${line}:${col} (msg@${msgPtr} file@${filePtr})`);
      },
      seed() {
        return Date.now() * Math.random();
      },
    },
  });
  return instance.exports as unknown as RawExports;
}
