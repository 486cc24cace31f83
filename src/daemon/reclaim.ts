// Removing what overlayd put on a node, from its marks, when the instance
// that put it there is gone: at start after a crash (`kill -9`, OOM, power
// loss of the process) and by hand (`overlayd cleanup`). The marks:
//   - the overlay device and the kernelGso tap (by name);
//   - routes of protocol 79 (RT_PROTO) in the main table;
//   - NAT: ip rules (IPv4 and IPv6) at nat.rulePriority and +1, `proto 79`
//     routes in nat.routeTable (both families), tc filters at prefs 4789-4792
//     on the underlay ingress (IPv4 at the first pair, IPv6 at the second);
//     IPv6 NAT /128 routes from the record (they go with the device anyway);
//   - from the install record (<stateDir>/installed.json) only: reserved
//     ports it added and global sysctls it changed (restored to their old value).
import type { Config } from "../config/schema.js";
import { hostKernel, RT_PROTO, type Kernel } from "./kernel.js";
import { NodeNat } from "./natsetup.js";
import { lockOwner, readRecord, removeRecord, type InstallRecord } from "./state.js";
import { setSysctl } from "./system.js";

export interface ReclaimTarget {
  stateDir: string;
  device: string;
  underlayDevice?: string;
  rulePref: number;
  table: number;
}

export function reclaimTarget(c: Config, kernel: Kernel = hostKernel): ReclaimTarget {
  return {
    stateDir: c.node.stateDir,
    device: c.node.device.name,
    underlayDevice: c.node.underlay.device ?? kernel.deviceWithAddress(c.node.underlay.address),
    rulePref: c.nat.rulePriority,
    table: c.nat.routeTable,
  };
}

/** The defaults, for `overlayd cleanup` without --config. */
export const DEFAULT_TARGET: ReclaimTarget = { stateDir: "/run/wasm-overlay", device: "wo0", rulePref: 4789, table: 4789 };

/**
 * Remove the leftovers of a dead instance (see the file comment). With
 * `devices`, devices of the recorded/configured names are deleted; without,
 * a device of our name that the record does not claim is refused (another
 * overlayd in this namespace owns it). With `sweepAll`
 * every `proto 79` route goes; else only those on our device and those
 * the record names. Returns one line per thing removed;
 * throws naming what could not be removed (the record then stays).
 */
export function reclaim(t: ReclaimTarget, kernel: Kernel = hostKernel, opts: { devices?: boolean; sweepAll?: boolean } = {}): string[] {
  const owner = lockOwner(t.stateDir);
  if (owner !== undefined) throw new Error(`overlayd (pid ${owner}) is running with node.stateDir ${t.stateDir}: stop it instead`);
  const rec: InstallRecord | undefined = readRecord(t.stateDir);
  const done: string[] = [];
  const errors: string[] = [];
  const names = new Set([t.device, rec?.device, rec?.gsoTap, `${t.device}-gso`.slice(0, 15)].filter((x): x is string => !!x));
  for (const dev of names) {
    if (!kernel.linkExists(dev)) continue;
    const ours = opts.devices || rec?.device === dev || rec?.gsoTap === dev;
    if (!ours) {
      if (dev === t.device) throw new Error(`device ${dev} already exists and no overlayd record of ${t.stateDir} claims it: another overlayd runs in this network namespace (or something else owns the name); stop it, or run \`overlayd cleanup\``);
      continue;
    }
    try {
      kernel.exec(["ip", "link", "del", "dev", dev]);
      done.push(`device ${dev}`);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  // Every `proto 79` route when asked to (by hand, or a dead instance whose
  // record is lost); otherwise those on our device and those the record names,
  // so another overlayd's routes in this namespace (other device, other
  // stateDir) are left alone.
  const recorded = new Set((rec?.routes ?? []).map((r) => `${r.dst.replace(/\/32$/, "")}|${r.dev}`));
  // (A blackhole, routing.announce's, has no device: recorded with dev "".)
  const routes = kernel.routesOfProto(RT_PROTO).filter((r) => opts.sweepAll || r.dev === t.device || recorded.has(`${r.dst}|${r.dev ?? ""}`));
  const lines = routes.map((r) => `route del ${r.type === "blackhole" ? "blackhole " : ""}${r.dst}${r.dev ? ` dev ${r.dev}` : ""} proto ${RT_PROTO}${r.metric !== undefined ? ` metric ${r.metric}` : ""}`);
  errors.push(...kernel.ipBatch(lines).filter((e) => !/No such process|Cannot find device/.test(e)));
  for (const r of routes) done.push(`route ${r.type === "blackhole" ? "blackhole " : ""}${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${r.dev ? ` dev ${r.dev}` : ""} proto ${RT_PROTO}`);
  try {
    done.push(...NodeNat.reclaim((argv) => kernel.exec(argv), rec?.nat, { rulePref: t.rulePref, table: t.table, underlayDevice: t.underlayDevice }));
  } catch (e) {
    errors.push((e as Error).message);
  }
  for (const s of rec?.sysctls ?? []) {
    if (setSysctl(s.key, s.old) === undefined) errors.push(`sysctl ${s.key}: cannot restore ${s.old}`);
    else done.push(`sysctl ${s.key}=${s.old}`);
  }
  if (errors.length) throw new Error(`leftovers not removed:\n  ${errors.join("\n  ")}`);
  removeRecord(t.stateDir);
  return done;
}

