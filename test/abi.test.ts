// The TypeScript mirror of the ABI agrees with the module and with assembly/abi.ts.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { instantiateDataplane, repoRoot } from "../src/dataplane/wasm.js";

describe("ABI mirror", () => {
  it("every constant in assembly/abi.ts has the same value in src/dataplane/abi.ts", () => {
    const src = readFileSync(resolve(repoRoot(), "assembly/abi.ts"), "utf8");
    const found = [...src.matchAll(/^export const (\w+): \w+ = ([^;]+);/gm)];
    expect(found.length).toBeGreaterThan(60);
    for (const [, name, value] of found) {
      expect((abi as Record<string, unknown>)[name], name).toBe(Number(value.trim()));
    }
  });
  it("the module reports the same sizes", () => {
    const raw = instantiateDataplane("release");
    expect(raw.abiMetaSize()).toBe(abi.META_SIZE);
    expect(raw.abiHeadroom()).toBe(abi.HEADROOM);
    expect(raw.abiCounterCount()).toBe(abi.COUNTER_COUNT);
    expect(raw.abiReasonCount()).toBe(abi.REASON_COUNT);
    expect(raw.abiVerdictCount()).toBe(abi.VERDICT_COUNT);
  });
  it("names cover every reason and verdict", () => {
    expect(abi.REASON_NAMES.length).toBe(abi.REASON_COUNT);
    expect(abi.VERDICT_NAMES.length).toBe(abi.VERDICT_COUNT);
    expect(abi.C_DROP_BASE + abi.REASON_COUNT).toBeLessThanOrEqual(abi.COUNTER_COUNT);
    expect(abi.C_VERDICT_BASE + abi.VERDICT_COUNT).toBeLessThanOrEqual(abi.C_DROP_BASE);
  });
});
