// The node-side plumbing the daemon owns: checks that we may run, the tun
// device's addresses and routes, sysctls. Everything added here is recorded
// so shutdown removes exactly that.
import { accessSync, constants, readFileSync, writeFileSync } from "node:fs";
import { ip } from "../io/tun.js";

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
  dev: string;
}

function routeArgs(r: KernelRoute): string[] {
  return ["route", "replace", r.dst, ...(r.via ? ["via", r.via] : []), "dev", r.dev, "proto", "static"];
}

/** Kernel routes we installed, so reloads can diff them and shutdown removes them. */
export class KernelRoutes {
  private installed = new Map<string, KernelRoute>();

  sync(want: KernelRoute[]): string[] {
    const errors: string[] = [];
    const next = new Map(want.map((r) => [`${r.dst}|${r.via ?? ""}|${r.dev}`, r]));
    for (const [key, r] of this.installed) {
      if (!next.has(key)) {
        try {
          ip("route", "del", r.dst, "dev", r.dev);
        } catch (e) {
          errors.push((e as Error).message);
        }
        this.installed.delete(key);
      }
    }
    for (const [key, r] of next) {
      if (this.installed.has(key)) continue;
      try {
        ip(...routeArgs(r));
        this.installed.set(key, r);
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    return errors;
  }

  list(): KernelRoute[] {
    return [...this.installed.values()];
  }

  removeAll(): void {
    this.sync([]);
  }
}
