// One measurement with tinybench, for the micro benchmarks: the function is
// called back to back for at least `seconds` and `minSamples` calls, after a
// warm-up; hz is calls per second (1 / mean latency), rme the relative
// margin of error of the mean, in percent. BENCH_TIME_SCALE scales every
// time budget (e.g. 0.01 for a quick check that a benchmark runs at all;
// its numbers then mean nothing).
import { Bench, type FnHook } from "tinybench";

const SCALE = Number(process.env.BENCH_TIME_SCALE ?? "1") || 1;

export interface Measured { name: string; hz: number; rme: number }

export interface MeasureOptions {
  /** Time budget of the measured run, seconds (as benchmark.js's maxTime). */
  seconds: number;
  /** Least number of calls measured (at least tinybench's default, 64). */
  minSamples?: number;
  /** Before the warm-up and before the run. */
  before?: () => void;
  /** After the warm-up and after the run (`run` true for the latter). */
  after?: (run: boolean) => void;
}

/** Run a named set of measurements, one after the other, in the order added. */
export class Measurements {
  private readonly bench: Bench;
  private readonly names: string[] = [];

  constructor(defaults: { seconds: number; minSamples?: number }) {
    this.bench = new Bench({
      time: defaults.seconds * 1000 * SCALE,
      iterations: SCALE < 1 ? 1 : Math.max(64, defaults.minSamples ?? 0),
      warmupTime: Math.min(500, defaults.seconds * 100) * SCALE,
      throws: true,
    });
  }

  add(name: string, fn: () => void, opts: Omit<MeasureOptions, "seconds" | "minSamples"> = {}): this {
    const beforeAll: FnHook = function () { opts.before?.(); };
    const afterAll: FnHook = function (mode) { opts.after?.(mode !== "warmup"); };
    this.bench.add(name, fn, { beforeAll, afterAll });
    this.names.push(name);
    return this;
  }

  /** Run them all; results in the order added. */
  run(): Measured[] {
    const tasks = this.bench.runSync();
    return tasks.map((t) => {
      const r = t.result;
      if (r.state !== "completed") throw new Error(`${t.name}: ${r.state}${"error" in r ? `: ${String(r.error)}` : ""}`);
      return { name: t.name, hz: r.latency.mean > 0 ? 1000 / r.latency.mean : 0, rme: r.latency.rme };
    });
  }
}

/** One measurement on its own. */
export function measure(name: string, fn: () => void, opts: MeasureOptions): Measured {
  return new Measurements({ seconds: opts.seconds, minSamples: opts.minSamples }).add(name, fn, opts).run()[0];
}
