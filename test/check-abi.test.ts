// One source for the ABI (issue 15): scripts/check-abi.mjs, run first by
// `npm run build`, fails when src/dataplane/abi.ts or fuzz/harness.c
// disagree with assembly/abi.ts. Exercised on temporary copies of the three
// files, never on the repository's own.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { repoRoot } from "../src/dataplane/wasm.js";

const ROOT = repoRoot();
const SCRIPT = resolve(ROOT, "scripts/check-abi.mjs");
const FILES = ["assembly/abi.ts", "assembly/pipeline/verdict.ts", "assembly/nat/conntrack.ts", "src/dataplane/abi.ts", "fuzz/harness.c"];
const dirs: string[] = [];

function copy(): string {
  const d = mkdtempSync(join(tmpdir(), "hy-abi-"));
  dirs.push(d);
  for (const f of FILES) {
    mkdirSync(dirname(join(d, f)), { recursive: true });
    cpSync(resolve(ROOT, f), join(d, f));
  }
  return d;
}
function edit(d: string, f: string, from: RegExp | string, to: string) {
  const text = readFileSync(join(d, f), "utf8");
  const next = text.replace(from, to);
  expect(next, `${f}: ${from} not found`).not.toBe(text);
  writeFileSync(join(d, f), next);
}
function check(d: string) {
  const r = spawnSync(process.execPath, [SCRIPT, "--root", d], { encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("scripts/check-abi.mjs", () => {
  it("passes on the repository as it is, and npm run build runs it first", () => {
    expect(execFileSync(process.execPath, [SCRIPT], { encoding: "utf8" })).toMatch(/agree with assembly\/abi\.ts/);
    const pkg = JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8"));
    expect(pkg.scripts.build).toMatch(/^npm run check:abi && /);
    expect(pkg.scripts["check:abi"]).toBe("node scripts/check-abi.mjs");
  });

  it("a constant changed in assembly/abi.ts without the mirrors fails, naming both copies", () => {
    const d = copy();
    expect(check(d).code).toBe(0);
    edit(d, "assembly/abi.ts", "export const HEADROOM: u32 = 128;", "export const HEADROOM: u32 = 192;");
    const r = check(d);
    expect(r.code).toBe(1);
    expect(r.out).toContain("src/dataplane/abi.ts: HEADROOM = 128, assembly/abi.ts says 192");
    expect(r.out).toContain("fuzz/harness.c: #define HEADROOM 128, assembly/ says 192");
  });

  it("a new reason in assembly/abi.ts needs the mirror's constant and its name", () => {
    const d = copy();
    edit(d, "assembly/abi.ts", /export const REASON_COUNT: u16 = (\d+);/, "export const R_NEW_THING: u16 = $1;\nexport const REASON_COUNT: u16 = 99;");
    const r = check(d);
    expect(r.code).toBe(1);
    expect(r.out).toContain("src/dataplane/abi.ts: R_NEW_THING is missing");
    expect(r.out).toMatch(/REASON_NAMES has \d+ names, REASON_COUNT is 99/);
  });

  it("the mirror or the harness changed alone fails too", () => {
    const d = copy();
    edit(d, "src/dataplane/abi.ts", "export const C_BATCHES = 15;", "export const C_BATCHES = 16;");
    edit(d, "fuzz/harness.c", "#define MIN_OFF 72", "#define MIN_OFF 48");
    edit(d, "fuzz/harness.c", "#define R_BAD_OFFSET 22", "#define R_BAD_OFFSET 22\n#define R_GONE 40");
    const r = check(d);
    expect(r.code).toBe(1);
    expect(r.out).toContain("src/dataplane/abi.ts: C_BATCHES = 16, assembly/abi.ts says 15");
    expect(r.out).toContain("fuzz/harness.c: #define MIN_OFF 48, assembly/ says 72");
    expect(r.out).toContain("fuzz/harness.c: #define R_GONE 40 names no constant of assembly/");
  });

  it("reason names out of order fail", () => {
    const d = copy();
    edit(d, "src/dataplane/abi.ts", '"no_route", "blackhole"', '"blackhole", "no_route"');
    const r = check(d);
    expect(r.code).toBe(1);
    expect(r.out).toContain('REASON_NAMES[5] is "blackhole", R_NO_ROUTE wants "no_route"');
  });
});
