#!/usr/bin/env node
// One source for the data path's ABI: assembly/abi.ts. Its copies are checked
// against it before anything is compiled (`npm run build` runs this first):
//
//   src/dataplane/abi.ts  must export every `export const NAME: type = value`
//                         of assembly/abi.ts with the same value, no numeric
//                         constant it lacks, and REASON_NAMES in the order of
//                         the R_* codes (R_BAD_OFFSET -> "bad_offset");
//   fuzz/harness.c        every #define named like a constant of assembly/
//                         (abi.ts, pipeline/verdict.ts's MIN_OFF, the
//                         conntrack's CT_STAT_*) must have its value, and a
//                         #define of an ABI-looking name (META_, VERDICT_,
//                         R_, C_, NH_, E_, CT_STAT_) that assembly/ lacks is
//                         an error too.
//
// A check rather than generated files: both copies stay ordinary, reviewed
// source (the TS mirror carries names and comments of its own, the harness
// copies a subset next to its own constants), nothing generated has to be
// kept in step with git, and a mismatch names the file, constant and values.
//
// Usage: node scripts/check-abi.mjs [--root DIR]   (exit 1 on a mismatch)
import { readFileSync } from "node:fs";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const at = args.indexOf("--root");
const root = at >= 0 ? resolve(args[at + 1]) : resolve(dirname(fileURLToPath(import.meta.url)), "..");
const read = (rel) => readFileSync(resolve(root, rel), "utf8");

/** `export const NAME: type = <number>;` of an AssemblyScript file, in order. */
function asConstants(rel) {
  const out = new Map();
  for (const m of read(rel).matchAll(/^export const (\w+): \w+ = (-?(?:0x[0-9a-fA-F]+|\d+));/gm)) out.set(m[1], Number(m[2]));
  return out;
}

const problems = [];
const abi = asConstants("assembly/abi.ts");
if (abi.size < 60) problems.push(`assembly/abi.ts: found only ${abi.size} constants (has the format changed?)`);

// --- the TypeScript mirror -------------------------------------------------
const tsText = read("src/dataplane/abi.ts");
const ts = new Map();
for (const m of tsText.matchAll(/^export const (\w+) = (-?(?:0x[0-9a-fA-F]+|\d+));/gm)) ts.set(m[1], Number(m[2]));
for (const [name, value] of abi) {
  if (!ts.has(name)) problems.push(`src/dataplane/abi.ts: ${name} is missing (assembly/abi.ts: ${value})`);
  else if (ts.get(name) !== value) problems.push(`src/dataplane/abi.ts: ${name} = ${ts.get(name)}, assembly/abi.ts says ${value}`);
}
for (const [name, value] of ts) {
  if (!abi.has(name)) problems.push(`src/dataplane/abi.ts: ${name} = ${value} is not in assembly/abi.ts`);
}
const namesMatch = tsText.match(/export const REASON_NAMES = \[([\s\S]*?)\] as const;/);
if (!namesMatch) problems.push("src/dataplane/abi.ts: REASON_NAMES not found");
else {
  const names = [...namesMatch[1].matchAll(/"(\w+)"/g)].map((m) => m[1]);
  const reasons = [...abi].filter(([n]) => n.startsWith("R_"));
  if (names.length !== abi.get("REASON_COUNT")) {
    problems.push(`src/dataplane/abi.ts: REASON_NAMES has ${names.length} names, REASON_COUNT is ${abi.get("REASON_COUNT")}`);
  }
  for (const [n, code] of reasons) {
    const want = n.slice(2).toLowerCase();
    if (names[code] !== want) problems.push(`src/dataplane/abi.ts: REASON_NAMES[${code}] is "${names[code]}", ${n} wants "${want}"`);
  }
}

// --- the fuzz harness --------------------------------------------------------
const known = new Map([...abi]);
known.set("MIN_OFF", asConstants("assembly/pipeline/verdict.ts").get("MIN_OFF"));
for (const [n, v] of asConstants("assembly/nat/conntrack.ts")) if (n.startsWith("CT_STAT_")) known.set(n, v);
const abiLooking = /^(META_|VERDICT_|R_|C_|NH_|E_|CT_STAT_|HEADROOM$|MIN_OFF$|REASON_COUNT$|COUNTER_COUNT$|MODE_)/;
let checked = 0;
for (const m of read("fuzz/harness.c").matchAll(/^#define (\w+) (-?(?:0x[0-9a-fA-F]+|\d+))\b/gm)) {
  const [name, value] = [m[1], Number(m[2])];
  if (known.has(name)) {
    checked++;
    if (known.get(name) !== value) problems.push(`fuzz/harness.c: #define ${name} ${value}, assembly/ says ${known.get(name)}`);
  } else if (abiLooking.test(name)) {
    problems.push(`fuzz/harness.c: #define ${name} ${value} names no constant of assembly/ (renamed or removed?)`);
  }
}
if (checked === 0) problems.push("fuzz/harness.c: no ABI #define found (has the format changed?)");

if (problems.length) {
  console.error(`ABI copies disagree with assembly/abi.ts (${problems.length}):\n  ` + problems.join("\n  "));
  process.exit(1);
}
console.log(`abi: src/dataplane/abi.ts (${abi.size} constants) and fuzz/harness.c (${checked} #defines) agree with assembly/abi.ts`);
