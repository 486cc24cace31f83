// The data path's layers run one way (issue 15): wire/ and tables/ are the
// ground, nat/ and offload/ are libraries, pipeline/ is the only place stages
// are composed, index.ts is the exported ABI. Read from the sources.
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { instantiateDataplane, repoRoot } from "../src/dataplane/wasm.js";

const ASM = resolve(repoRoot(), "assembly");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : []);
}

/** Every module a source file imports or re-exports from, as a path under assembly/ ("pipeline/state"). */
export function importsOf(file: string, text = readFileSync(file, "utf8")): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/g)) {
    out.push(relative(ASM, resolve(dirname(file), m[1])).replace(/\\/g, "/").replace(/\.ts$/, ""));
  }
  for (const m of text.matchAll(/(?:^|\n)\s*import\s*["']([^"']+)["']/g)) {
    out.push(relative(ASM, resolve(dirname(file), m[1])).replace(/\\/g, "/").replace(/\.ts$/, ""));
  }
  return out;
}

const layer = (mod: string) => mod.split("/")[0];

/** What each folder may import from (besides itself): the files at the top, abi.ts and layout.ts, are below everything. */
const ALLOWED: Record<string, string[]> = {
  wire: ["abi", "layout"],
  tables: ["abi", "layout"],
  nat: ["abi", "layout", "wire", "tables"],
  offload: ["abi", "layout", "wire", "tables"],
};

/** The imports of `file` that break the layering, as "from -> to". */
export function violations(file: string, text?: string): string[] {
  const from = relative(ASM, file).replace(/\\/g, "/");
  const own = layer(from);
  const allowed = ALLOWED[own];
  if (!allowed) return [];
  return importsOf(file, text).filter((to) => layer(to) !== own && !allowed.includes(layer(to))).map((to) => `${from} -> ${to}`);
}

describe("assembly/ layering", () => {
  const files = sources(ASM);

  it("finds the sources and their imports", () => {
    expect(files.length).toBeGreaterThan(30);
    expect(importsOf(join(ASM, "pipeline/nat.ts"))).toContain("nat/conntrack");
  });

  it("wire/ and tables/ import nothing above them; nat/ and offload/ nothing from pipeline/ (or each other)", () => {
    expect(files.flatMap((f) => violations(f))).toEqual([]);
  });

  it("catches a library reaching into pipeline/ (the check itself)", () => {
    const f = join(ASM, "nat/stage.ts");
    expect(violations(f, `import { count } from "../pipeline/state";\nimport { ld16 } from "../wire/bytes";`)).toEqual(["nat/stage.ts -> pipeline/state"]);
    expect(violations(join(ASM, "offload/x.ts"), `export { a } from "../pipeline/wholeframe";`)).toEqual(["offload/x.ts -> pipeline/wholeframe"]);
    expect(violations(join(ASM, "wire/x.ts"), `import {\n  a,\n} from "../tables/lpm";`)).toEqual(["wire/x.ts -> tables/lpm"]);
    expect(violations(join(ASM, "tables/x.ts"), `import { a } from "../nat/conntrack";`)).toEqual(["tables/x.ts -> nat/conntrack"]);
  });

  it("index.ts is the exported ABI only: re-exports, no functions of its own", () => {
    const text = readFileSync(join(ASM, "index.ts"), "utf8").replace(/\/\/.*$/gm, "");
    expect(text).not.toMatch(/\bfunction\b|\blet\b|\bconst\b|\bimport\b/);
  });

  it("the module the daemon runs exports no benchmark loops and no dead code", () => {
    const names = Object.keys(instantiateDataplane("release"));
    expect(names).toContain("processPodBatch");
    expect(names.filter((n) => /Bench|^resetRegions$/.test(n))).toEqual([]);
  });
});
