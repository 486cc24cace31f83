// bench:e2e's CPU accounting (bench/e2e.ts): the daemons' CPU time, measured
// over a whole `iperf3 -O 1 -t 5` run, is divided by the bytes moved over
// that whole run, the omitted first second included.
import { describe, expect, it } from "vitest";
import { cpuSecondsPerGbit, iperfBytesMoved, type IperfJson } from "../bench/e2e.js";

/** iperf3 -J as it comes out of `-O 1 -t 5` at a steady `bytesPerSecond`
 *  (as iperf3 3.x writes it, seen here: omitted intervals flagged and left
 *  out of sum_received). */
function steadyRun(bytesPerSecond: number, omit = 1, seconds = 5): IperfJson & { end: { sum_received: { bytes: number; seconds: number; bits_per_second: number } } } {
  const intervals = [
    ...Array.from({ length: omit }, () => ({ sum: { bytes: bytesPerSecond, omitted: true } })),
    ...Array.from({ length: seconds }, () => ({ sum: { bytes: bytesPerSecond, omitted: false } })),
  ];
  return { intervals, end: { sum_received: { bytes: bytesPerSecond * seconds, seconds, bits_per_second: bytesPerSecond * 8 } } };
}

describe("bench:e2e CPU-s per Gbit", () => {
  it("counts the omitted second's bytes: 6 s of traffic for 6 s of CPU", () => {
    const j = steadyRun(250e6); // 2 Gbit/s
    expect(iperfBytesMoved(j)).toBe(6 * 250e6);
    // Two daemons busy 1.2 cores for the 6 s: 7.2 CPU-s over 12 Gbit.
    expect(cpuSecondsPerGbit(7.2, iperfBytesMoved(j))).toBeCloseTo(0.6, 10);
    // What the old formula (rate of the counted seconds x 5 s) gave: 20% high.
    const old = 7.2 / ((j.end.sum_received.bits_per_second / 1e9) * 5);
    expect(old / cpuSecondsPerGbit(7.2, iperfBytesMoved(j))).toBeCloseTo(1.2, 10);
  });

  it("without -O it is the received bytes", () => {
    const j = steadyRun(1e6, 0, 3);
    expect(iperfBytesMoved(j)).toBe(3e6);
    expect(iperfBytesMoved({ end: { sum_received: { bytes: 42 } } })).toBe(42);
  });

  it("uneven seconds: the omitted interval's own bytes, not the average's", () => {
    const j = steadyRun(100e6);
    j.intervals![0].sum.bytes = 10e6; // slow start in the omitted second
    expect(iperfBytesMoved(j)).toBe(510e6);
    expect(cpuSecondsPerGbit(4.08, 510e6)).toBeCloseTo(1, 10);
  });

  it("nothing moved: not a number, never Infinity", () => {
    expect(cpuSecondsPerGbit(1, 0)).toBeNaN();
  });
});
