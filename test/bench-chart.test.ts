// bench/chart.ts (the SVG the benches write) and bench/floor.ts (the copy
// floor printed by bench:e2e): the drawing and the arithmetic, no network.
import { describe, expect, it } from "vitest";
import { barChartSvg } from "../bench/chart.js";
import { copyFloor, measureMemcpyGBps, measureSyscallUs } from "../bench/floor.js";

const widths = (svg: string) => [...svg.matchAll(/<rect x="\d+" y="\d+" width="(\d+)"/g)].map((m) => Number(m[1]));

describe("bench chart", () => {
  it("scales each panel's bars to its largest value and prints the values", () => {
    const svg = barChartSvg("t", "s", [
      { title: "Throughput", unit: "Gbit/s", bars: [{ label: "kernel", value: 20 }, { label: "ours", value: 10, ours: true }, { label: "tiny", value: 0.001 }] },
      { title: "CPU", unit: "CPU-s/Gbit", bars: [{ label: "a", value: 3 }] },
    ]);
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.trim().endsWith("</svg>")).toBe(true);
    // The bars: 440 for the largest, half for half, at least 1 px.
    expect(widths(svg)).toEqual([440, 220, 1, 440]);
    expect(svg).toContain(">20.00<");
    expect(svg).toContain(">10.00<");
    expect(svg).toContain("Throughput (Gbit/s)");
  });

  it("draws a row without a value as its note, and escapes text", () => {
    const svg = barChartSvg("a <b> & c", "s", [{ title: "T", unit: "u", bars: [{ label: "nebula", note: "skipped: not installed: nebula" }, { label: "x", value: 1 }] }]);
    expect(svg).toContain("skipped: not installed: nebula");
    expect(svg).toContain("a &lt;b&gt; &amp; c");
    expect(widths(svg)).toEqual([440]);
  });
});

describe("copy floor", () => {
  it("adds four copies and four system calls per 64 KiB to the kernel's CPU per Gbit", () => {
    // 10 GB/s: 4 x 0.125 GB = 0.05 s; 1 µs x 4 x 125e6/65536 calls = 0.00763 s.
    const f = copyFloor(10, 1, 0.1);
    expect(f.extraCpuSecondsPerGbit).toBeCloseTo(0.05 + (4 * 125e6 / 65536) * 1e-6, 6);
    expect(f.bestRatio).toBeCloseTo(0.1 / (0.1 + f.extraCpuSecondsPerGbit), 6);
    // Faster copies and calls leave more room; a costlier kernel path too.
    expect(copyFloor(20, 1, 0.1).bestRatio).toBeGreaterThan(f.bestRatio);
    expect(copyFloor(10, 0.5, 0.1).bestRatio).toBeGreaterThan(f.bestRatio);
    expect(copyFloor(10, 1, 0.2).bestRatio).toBeGreaterThan(f.bestRatio);
  });

  it("measures memcpy and a system call on this machine", () => {
    expect(measureMemcpyGBps(50)).toBeGreaterThan(0.5);
    const us = measureSyscallUs(20_000);
    expect(us).toBeGreaterThanOrEqual(0);
    expect(us).toBeLessThan(100);
  });
});
