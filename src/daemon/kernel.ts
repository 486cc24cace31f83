// The one way overlayd talks to the kernel's networking tools: reads as
// `ip -json` / `tc -json` (parsed, never regexes over text), bulk writes as
// `ip -batch -` / `tc -batch -` (one process for a whole route table).
// Everything goes through an injectable `Exec` so tests can run it inside a
// namespace (`ip netns exec NS ...`).
import { execFileSync } from "node:child_process";

/** argv (+ stdin) -> stdout; throws KernelError naming the command and its stderr. */
export type Exec = (argv: string[], input?: string) => string;

export class KernelError extends Error {}

/** Route protocol number on every route overlayd installs (`ip route ... proto 79`,
 *  0x4f: unused in /etc/iproute2/rt_protos). After a crash, `proto 79` routes
 *  are known to be ours and are removed (src/daemon/reclaim.ts). */
export const RT_PROTO = 79;

/** Metric of the `blackhole <podCIDR> proto 79` route routing.announce installs
 *  (src/routing/): above any route the node has for the same prefix (a pod
 *  bridge's connected route is metric 0), so it never replaces one. */
export const ANNOUNCE_METRIC = 4791;

export const execHost: Exec = (argv, input) => {
  try {
    return execFileSync(argv[0], argv.slice(1), {
      encoding: "utf8",
      input,
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      timeout: 10_000,
    });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new KernelError(`${argv.join(" ")}: ${(err.stderr ?? "").trim() || err.message}`);
  }
};

export interface JsonRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string | number;
  table?: string;
  type?: string;
  metric?: number;
}

export class Kernel {
  constructor(readonly exec: Exec = execHost) {}

  /** `ip -json ARGS`, parsed ([] when ip prints nothing). */
  ipJson<T = unknown>(...args: string[]): T[] {
    const out = this.exec(["ip", "-json", ...args]).trim();
    return out ? (JSON.parse(out) as T[]) : [];
  }

  /** `tc -json ARGS`, parsed. */
  tcJson<T = unknown>(...args: string[]): T[] {
    const out = this.exec(["tc", "-json", ...args]).trim();
    return out ? (JSON.parse(out) as T[]) : [];
  }

  /**
   * Run `lines` (each one `ip` command without the leading "ip") in one
   * `ip -force -batch -`: every line is tried; returns the failures (empty
   * when all passed). The words of a line must not contain whitespace.
   */
  ipBatch(lines: string[]): string[] {
    return this.batch("ip", lines);
  }

  /** As ipBatch, for `tc`. */
  tcBatch(lines: string[]): string[] {
    return this.batch("tc", lines);
  }

  private batch(tool: "ip" | "tc", lines: string[]): string[] {
    if (!lines.length) return [];
    try {
      this.exec([tool, "-force", "-batch", "-"], lines.join("\n") + "\n");
      return [];
    } catch (e) {
      // ip prints "Error: why" then "Command failed -:N" for each failing line.
      const msg = (e as Error).message;
      const out: string[] = [];
      let why = "";
      for (const l of msg.split("\n")) {
        const m = /Command failed -:(\d+)/.exec(l);
        if (m) {
          out.push(`${tool} ${lines[Number(m[1]) - 1] ?? "?"}: ${why || "failed"}`);
          why = "";
        } else if (l.trim()) why = l.replace(/^.*?: (?=Error)/, "").trim();
      }
      return out.length ? out : [msg];
    }
  }

  linkExists(dev: string): boolean {
    try {
      return this.ipJson("link", "show", "dev", dev).length > 0;
    } catch {
      return false;
    }
  }

  /** The interface holding `addr` (`ip -json -4 addr show to addr/32`), or undefined. */
  deviceWithAddress(addr: string): string | undefined {
    try {
      return this.ipJson<{ ifname: string }>("-4", "addr", "show", "to", `${addr}/32`)[0]?.ifname;
    } catch {
      return undefined;
    }
  }

  /** The interface the kernel would send to `addr` by (`ip -json route get`), or undefined. */
  routeDevice(addr: string): string | undefined {
    try {
      return this.ipJson<{ dev?: string }>("route", "get", addr)[0]?.dev;
    } catch {
      return undefined;
    }
  }

  /** Routes of protocol `proto` in table main (and only there). */
  routesOfProto(proto = RT_PROTO, table = "main"): JsonRoute[] {
    return this.ipJson<JsonRoute>("route", "show", "table", table, "proto", String(proto));
  }
}

/** The host's kernel, in this process's namespace. */
export const hostKernel = new Kernel();
