#!/usr/bin/env node
// Coverage-guided fuzzing of the shipped data-path module.
//
//   npm run fuzz [-- --target NAME] [--seconds N] [--jobs N] [--wasm FILE]
//   npm run fuzz:smoke                    every target for FUZZ_SMOKE_SECONDS (20)
//   node fuzz/run.mjs --minimize          merge each target's corpus (-merge=1)
//   node fuzz/run.mjs --build-only
//
// Builds build/overlay.fuzz.wasm (npm run asbuild:fuzz: the release build
// without SIMD, which Debian's wasm2c cannot translate) unless --wasm FILE or
// FUZZ_WASM names another module (the planted-bug check), translates it to C
// with wasm2c, links fuzz/harness.c once per target with libFuzzer,
// AddressSanitizer and UBSan under fuzz/out/, and runs the targets with
// their seed and regression corpora. New inputs go to fuzz/out/corpus/, never
// into the repository; crashes to fuzz/out/crashes/<target>/. Seeds: the
// minimised corpus fuzz/corpus/<target>/, the generated fuzz/seeds/<target>/
// (make_ipv6_seeds.py, make_nat66_seeds.py) and fuzz/regressions/<target>/.
// Exits non-zero when any target crashes.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fuzzDir = join(root, "fuzz");
const outDir = join(fuzzDir, "out");

/** Target name -> FUZZ_TARGET number in harness.c. */
export const TARGETS = {
  "vxlan-decap": 1,
  "vxlan-inner": 2,
  "ipip-decap": 3,
  "pod-tun": 4,
  "pod-tap": 5,
  roundtrip: 6,
  nat: 7,
  "vxlan-super": 8,
  "vxlan-inner6": 9,
  "sit-inner": 10,
  nat66: 11,
  ip6tnl: 12,
};
/** Inputs up to this long; vxlan-super needs room for a few segments. */
const maxLen = (target) => (target === "vxlan-super" ? 8192 : 2048);

function parseArgs(argv) {
  const o = { targets: [], seconds: undefined, jobs: undefined, wasm: process.env.FUZZ_WASM, smoke: false, minimize: false, buildOnly: false, extra: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--target" || a === "-t") o.targets.push(...val().split(","));
    else if (a === "--seconds" || a === "-s") o.seconds = Number(val());
    else if (a === "--jobs" || a === "-j") o.jobs = Number(val());
    else if (a === "--wasm") o.wasm = val();
    else if (a === "--smoke") o.smoke = true;
    else if (a === "--minimize") o.minimize = true;
    else if (a === "--build-only") o.buildOnly = true;
    else if (a === "--help" || a === "-h") {
      console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 8).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
      process.exit(0);
    } else if (a.startsWith("-") && a.includes("=")) o.extra.push(a); // libFuzzer flag, e.g. -max_len=4000
    else throw new Error(`unknown argument ${a}`);
  }
  for (const t of o.targets) if (!(t in TARGETS)) throw new Error(`unknown target ${t}; targets: ${Object.keys(TARGETS).join(", ")}`);
  if (o.targets.length === 0) o.targets = Object.keys(TARGETS);
  if (o.seconds === undefined) o.seconds = o.smoke ? Number(process.env.FUZZ_SMOKE_SECONDS ?? 20) : 60;
  if (!(o.seconds > 0)) throw new Error("--seconds must be positive");
  o.jobs ??= Math.min(o.targets.length, availableParallelism());
  return o;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "inherit", "inherit"], ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

function findRuntime() {
  for (const d of ["/usr/share/wabt/wasm2c", "/usr/src/wasm2c"]) {
    if (existsSync(join(d, "wasm-rt-impl.c"))) return d;
  }
  throw new Error("wasm2c runtime (wasm-rt-impl.c) not found: apt-get install wabt");
}

/** Sanitizers: ASan always, UBSan when this clang links it (it does with libclang-rt-14-dev). */
function sanitizerFlags(buildDir) {
  const probe = join(buildDir, "ubsan-probe.c");
  writeFileSync(probe, "int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return n ? d[0] << 1 : 0; }\n");
  const withUb = ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined"];
  const r = spawnSync("clang", [...withUb, probe, "-o", join(buildDir, "ubsan-probe")], { stdio: "ignore" });
  return r.status === 0 ? { san: "address,undefined", extra: ["-fno-sanitize-recover=undefined"] } : { san: "address", extra: [] };
}

/** Build (or reuse) the fuzz binaries for `wasm`; returns their directory. */
export function build(wasm) {
  const bytes = readFileSync(wasm);
  const harness = readFileSync(join(fuzzDir, "harness.c"));
  const key = createHash("sha256").update(bytes).update(harness).digest("hex").slice(0, 12);
  const buildDir = join(outDir, `build-${key}`);
  const stamp = join(buildDir, "ok");
  if (existsSync(stamp)) return buildDir;
  mkdirSync(buildDir, { recursive: true });
  const rt = findRuntime();
  const rtHeaders = existsSync(join(rt, "wasm-rt.h")) ? rt : "/usr/src/wasm2c";
  console.log(`== wasm2c ${wasm} -> ${buildDir}`);
  run("wasm2c", [wasm, "-n", "overlay", "-o", join(buildDir, "overlay.c")]);
  const imports = readFileSync(join(buildDir, "overlay.h"), "utf8").match(/Z_envZ_\w+/g);
  if (imports) throw new Error(`the module imports ${[...new Set(imports)].join(", ")}: the harness expects none (update fuzz/harness.c)`);
  const { san, extra } = sanitizerFlags(buildDir);
  // Explicit bounds checks instead of guard pages (which ASan's allocator
  // does not mix with): an out-of-bounds access is a trap, and a trap aborts.
  const common = ["-O1", "-g", "-fno-omit-frame-pointer", "-DWASM_RT_MEMCHECK_SIGNAL_HANDLER=0", `-I${buildDir}`, `-I${rtHeaders}`, ...extra];
  console.log(`== clang (-fsanitize=fuzzer,${san})`);
  run("clang", [...common, `-fsanitize=fuzzer-no-link,${san}`, "-c", join(buildDir, "overlay.c"), "-o", join(buildDir, "overlay.o")]);
  run("clang", [...common, `-fsanitize=${san}`, "-c", join(rt, "wasm-rt-impl.c"), "-o", join(buildDir, "wasm-rt-impl.o")]);
  for (const [name, n] of Object.entries(TARGETS)) {
    run("clang", [...common, `-fsanitize=fuzzer,${san}`, `-DFUZZ_TARGET=${n}`, join(fuzzDir, "harness.c"),
      join(buildDir, "overlay.o"), join(buildDir, "wasm-rt-impl.o"), "-o", join(buildDir, `fuzz-${name}`)]);
  }
  writeFileSync(join(buildDir, "sanitizers"), `fuzzer,${san}\n`);
  writeFileSync(stamp, `${wasm}\n`);
  return buildDir;
}

function dirs(target) {
  const seeds = join(fuzzDir, "corpus", target);
  const regressions = join(fuzzDir, "regressions", target);
  const work = join(outDir, "corpus", target);
  const crashes = join(outDir, "crashes", target);
  for (const d of [work, crashes]) mkdirSync(d, { recursive: true });
  // Generated seeds (fuzz/seeds/make_ipv6_seeds.py, make_nat66_seeds.py),
  // kept apart from the minimised corpus. libFuzzer refuses a directory that
  // does not exist.
  const generated = join(fuzzDir, "seeds", target);
  const have = (...ds) => ds.filter((d) => existsSync(d));
  return { seeds, sources: have(seeds, generated), inputs: have(seeds, generated, regressions), work, crashes };
}

/** The last libFuzzer status line's numbers. */
function stats(log) {
  let last = null;
  for (const m of log.matchAll(/#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)(?: corp: (\d+)\/(\S+))?.*?exec\/s: (\d+)/g)) last = m;
  const done = log.match(/Done (\d+) runs in (\d+) second/);
  return {
    execs: done ? Number(done[1]) : last ? Number(last[1]) : 0,
    seconds: done ? Number(done[2]) : undefined,
    cov: last ? Number(last[2]) : 0,
    ft: last ? Number(last[3]) : 0,
    corpus: last?.[4] ? Number(last[4]) : 0,
    execPerSec: last ? Number(last[6]) : 0,
  };
}

function fuzzOne(buildDir, target, o) {
  const d = dirs(target);
  const bin = join(buildDir, `fuzz-${target}`);
  const args = [`-max_total_time=${o.seconds}`, `-max_len=${maxLen(target)}`, "-timeout=10", "-rss_limit_mb=4096", "-print_final_stats=1",
    `-artifact_prefix=${d.crashes}/`, ...o.extra, d.work, ...d.inputs];
  const started = Date.now();
  return new Promise((resolveRun) => {
    const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const logFile = join(outDir, `${target}.log`);
    child.stdout.on("data", (b) => (log += b));
    child.stderr.on("data", (b) => (log += b));
    child.on("close", (code, signal) => {
      writeFileSync(logFile, log);
      const s = stats(log);
      const crash = log.match(/Test unit written to (\S+)/)?.[1];
      const wall = (Date.now() - started) / 1000;
      resolveRun({ target, code: code ?? (signal ? 128 : 1), crash, log, logFile, wall, ...s });
    });
  });
}

async function pool(items, jobs, fn) {
  const results = [];
  let next = 0;
  await Promise.all(Array.from({ length: jobs }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  }));
  return results;
}

const sha1 = (b) => createHash("sha1").update(b).digest("hex");

function minimize(buildDir, targets) {
  for (const target of targets) {
    const d = dirs(target);
    const merged = join(outDir, "merge", target);
    rmSync(merged, { recursive: true, force: true });
    mkdirSync(merged, { recursive: true });
    // Seeds that survive keep their descriptive names (libFuzzer names files by SHA-1).
    const names = new Map(d.sources.flatMap((dir) => readdirSync(dir).map((f) => [sha1(readFileSync(join(dir, f))), f])));
    const before = names.size;
    run(join(buildDir, `fuzz-${target}`), ["-merge=1", `-max_len=${maxLen(target)}`, merged, ...d.sources, d.work], { stdio: ["ignore", "ignore", "ignore"] });
    for (const f of readdirSync(merged)) {
      const name = names.get(f);
      if (name) renameSync(join(merged, f), join(merged, name));
    }
    rmSync(d.seeds, { recursive: true, force: true });
    renameSync(merged, d.seeds);
    const files = readdirSync(d.seeds);
    const size = files.reduce((s, f) => s + statSync(join(d.seeds, f)).size, 0);
    console.log(`${target}: ${before} seeds + ${readdirSync(d.work).length} found -> ${files.length} files, ${size} bytes`);
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  let wasm = o.wasm ? resolve(o.wasm) : join(root, "build", "overlay.fuzz.wasm");
  if (!o.wasm) {
    console.log("== npm run asbuild:fuzz");
    run("npm", ["run", "--silent", "asbuild:fuzz"], { cwd: root });
  }
  if (!existsSync(wasm)) throw new Error(`${wasm} does not exist`);
  const t0 = Date.now();
  const buildDir = build(wasm);
  console.log(`== fuzz binaries in ${buildDir} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  if (o.buildOnly) return 0;
  if (o.minimize) {
    minimize(buildDir, o.targets);
    return 0;
  }
  console.log(`== fuzzing ${o.targets.join(", ")} for ${o.seconds} s each, ${o.jobs} at a time`);
  const results = await pool(o.targets, o.jobs, (t) => fuzzOne(buildDir, t, o).then((r) => {
    const line = `${r.target.padEnd(12)} ${r.code === 0 ? "ok   " : "CRASH"} execs ${String(r.execs).padStart(9)}  exec/s ${String(r.execPerSec).padStart(6)}  cov: ${String(r.cov).padStart(4)}  ft: ${String(r.ft).padStart(5)}  corpus ${r.corpus}`;
    console.log(line);
    return { ...r, line };
  }));
  console.log("\n== summary (libFuzzer's last status line per target; cov = edges of the translated module covered)");
  for (const r of results) console.log(r.line);
  const bad = results.filter((r) => r.code !== 0);
  for (const r of bad) {
    console.log(`\n== ${r.target} failed (exit ${r.code}); log ${r.logFile}${r.crash ? `; reproducer ${r.crash}` : ""}`);
    const excerpt = r.log.split("\n").filter((l) => /INVARIANT|wasm trap|ERROR: |SUMMARY|runtime error/.test(l)).slice(0, 8);
    console.log(excerpt.join("\n"));
    if (r.crash) console.log(`reproduce: ${join(buildDir, `fuzz-${r.target}`)} ${r.crash}`);
  }
  return bad.length ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((code) => process.exit(code), (e) => {
    console.error(`fuzz: ${e.message}`);
    process.exit(2);
  });
}
