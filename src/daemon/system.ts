// The node-side plumbing the daemon owns: checks that we may run, the tun
// device's addresses and routes, sysctls. Everything added here is recorded
// so shutdown removes exactly that.
import { accessSync, constants, readFileSync, writeFileSync } from "node:fs";
import { ANNOUNCE_METRIC, hostKernel, RT_PROTO, type Kernel } from "./kernel.js";

export class SetupError extends Error {}

/** Fail early, with a message a newcomer understands, when we cannot open a tun device. */
export function checkPrivileges(): void {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new SetupError("overlayd must run as root (it creates a tun/tap device and raw sockets); try: sudo overlayd run --config FILE");
  }
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    throw new SetupError("/dev/net/tun is missing: load the tun module (modprobe tun) or, in a container, pass --device /dev/net/tun");
  }
}

export function setSysctl(key: string, value: string): string | undefined {
  const path = "/proc/sys/" + key.replace(/\./g, "/");
  try {
    const old = readFileSync(path, "utf8").trim();
    if (old !== value) writeFileSync(path, value);
    return old;
  } catch {
    return undefined;
  }
}

export interface KernelRoute {
  dst: string;
  via?: string;
  /** "" for a blackhole. */
  dev: string;
  /** A blackhole route at ANNOUNCE_METRIC (routing.announce), behind any route of the same prefix. */
  type?: "blackhole";
}

const routeKey = (r: KernelRoute) => `${r.type ?? ""}|${r.dst}|${r.via ?? ""}|${r.dev}`;
const routeDel = (r: KernelRoute) => r.type === "blackhole" ? `route del blackhole ${r.dst} proto ${RT_PROTO} metric ${ANNOUNCE_METRIC}` : `route del ${r.dst} dev ${r.dev} proto ${RT_PROTO}`;
const routeAdd = (r: KernelRoute) => r.type === "blackhole"
  ? `route replace blackhole ${r.dst} proto ${RT_PROTO} metric ${ANNOUNCE_METRIC}`
  : `route replace ${r.dst}${r.via ? ` via ${r.via}` : ""} dev ${r.dev} proto ${RT_PROTO}`;

/**
 * Kernel routes we installed (all `proto 79`, RT_PROTO), so reloads can diff
 * them and shutdown removes them. One `ip -batch` per sync.
 */
export class KernelRoutes {
  private installed = new Map<string, KernelRoute>();

  constructor(private readonly kernel: Kernel = hostKernel) {}

  /** Make the installed set `want`; returns the lines that failed (the set then
   *  holds what did go in: re-sync the previous list to roll back). */
  sync(want: KernelRoute[]): string[] {
    const next = new Map(want.map((r) => [routeKey(r), r]));
    const dels = [...this.installed].filter(([k]) => !next.has(k));
    const adds = [...next].filter(([k]) => !this.installed.has(k));
    const lines = [
      ...dels.map(([, r]) => routeDel(r)),
      ...adds.map(([, r]) => routeAdd(r)),
    ];
    const errors = this.kernel.ipBatch(lines);
    const failed = new Set(errors.map((e) => lines.findIndex((l) => e.startsWith(`ip ${l}:`))));
    dels.forEach(([k], i) => {
      // A route already gone (its device went) counts as removed.
      if (!failed.has(i) || /No such process|Cannot find device/.test(errors.find((e) => e.startsWith(`ip ${lines[i]}:`)) ?? "")) this.installed.delete(k);
    });
    adds.forEach(([k, r], i) => {
      if (!failed.has(dels.length + i)) this.installed.set(k, r);
    });
    return errors.filter((e) => !/route del .*(No such process|Cannot find device)/.test(e));
  }

  list(): KernelRoute[] {
    return [...this.installed.values()];
  }

  removeAll(): string[] {
    return this.sync([]);
  }
}
