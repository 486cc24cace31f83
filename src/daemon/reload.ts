// What a reload may change live, and what needs a restart. The daemon runs a
// reload as validate -> plan -> apply (src/daemon/daemon.ts); this is the
// validate part that compares the running config with the new one.
import type { Config } from "../config/schema.js";

export interface RestartOnly {
  /** Dotted path into the config; "x.*" means the whole subtree. */
  field: string;
  /** Only restart-only while this holds for the running config (e.g. outerTtl only with GSO sockets). */
  when?: (running: Config) => boolean;
}

/**
 * Fields baked into the device, the sockets or the carved memory at start.
 * A reload that changes one is refused by name; nothing is silently ignored.
 */
export const RESTART_ONLY: readonly RestartOnly[] = [
  { field: "node.name" },
  { field: "node.podCIDR" },
  { field: "node.overlayAddress" },
  { field: "node.device.*" },
  { field: "node.underlay.*" },
  { field: "node.stateDir" },
  { field: "tunnel.port" },
  { field: "tunnel.udpOffloads" },
  { field: "tunnel.kernelGso" },
  // The UDP GSO sockets are opened with their TTL (src/io/udpgso.ts).
  { field: "tunnel.outerTtl", when: (c) => c.tunnel.udpOffloads },
  { field: "nat.conntrack.maxFlows" },
  { field: "admin.*" },
  // The table followed (src/routing/); its encapsulation and announce apply live.
  { field: "routing.source" },
  { field: "routing.table" },
  { field: "routing.resyncSeconds" },
] as const;

function at(c: unknown, path: string): unknown {
  let v = c;
  for (const k of path.replace(/\.\*$/, "").split(".")) v = v === undefined || v === null ? undefined : (v as Record<string, unknown>)[k];
  return v;
}

/** Deep-equal for config values (plain JSON data). */
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The first changed subfield under a "x.*" entry, for the message (node.device.mtu rather than node.device). */
function changedLeaf(a: unknown, b: unknown, path: string): string {
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b as object)])) {
      const x = (a as Record<string, unknown>)[k];
      const y = (b as Record<string, unknown>)[k];
      if (!same(x, y)) return changedLeaf(x, y, `${path}.${k}`);
    }
  }
  return path;
}

/**
 * Why `next` cannot be applied to a daemon running `running` without a
 * restart: one message per changed restart-only field,
 * "node.podCIDR changed: restart overlayd to apply it". Empty: reloadable.
 */
export function refusedChanges(running: Config, next: Config, fields: readonly RestartOnly[] = RESTART_ONLY): string[] {
  const out: string[] = [];
  for (const f of fields) {
    if (f.when && !f.when(running)) continue;
    const path = f.field.replace(/\.\*$/, "");
    const a = at(running, path);
    const b = at(next, path);
    if (!same(a, b)) out.push(`${changedLeaf(a, b, path)} changed: restart overlayd to apply it`);
  }
  return out;
}
