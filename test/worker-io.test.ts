// The worker's receivers (src/daemon/worker/*) against the real kernel: a
// read that runs out of slots keeps the rest of what it read for the next
// batch instead of processing it itself, and loses nothing.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const isRoot = process.getuid?.() === 0;
const NS = `wowio${Math.random().toString(36).slice(2, 6)}`;

describe.skipIf(!isRoot && process.env.CI !== "true")("the worker's receivers", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
    execFileSync("ip", ["-n", NS, "addr", "add", "198.18.9.2/32", "dev", "lo"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS]);
  });

  it("a UDP GRO train longer than the free slots goes on in the next batches, every datagram once, in order", () => {
    const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "test/helpers/worker-io-child.ts"], { encoding: "utf8", timeout: 30_000 });
    const line = JSON.parse(out.trim().split("\n").pop()!);
    expect(line.error).toBeUndefined();
    const r = line.result as { batches: number[]; order: number[]; trains: number; datagrams: number; refused: number };
    expect(r.trains).toBeGreaterThanOrEqual(1); // it came as a train (UDP GRO)
    expect(r.datagrams).toBe(40);
    expect(r.refused).toBe(0);
    expect(r.batches).toEqual([16, 16, 8]);
    expect(r.order).toEqual(Array.from({ length: 40 }, (_, k) => k));
  });
});
