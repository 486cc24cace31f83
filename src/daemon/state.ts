// node.stateDir: the instance lock and the install record.
//
//   <stateDir>/overlayd.lock    the owner's PID. One overlayd per stateDir: a
//                               live owner refuses a second instance; a lock
//                               whose PID is dead is stale and taken over.
//   <stateDir>/installed.json   what this instance put on the node that outlives
//                               it (routes are `proto 79`, NAT rules/tc filters at
//                               their prefs, reserved ports it added, sysctls it
//                               changed with their old values). Written after each
//                               set-up step and NAT change, removed after a clean
//                               stop, read back after a crash (src/daemon/reclaim.ts).
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

export class LockError extends Error {}

export interface InstallRecord {
  version: 1;
  pid: number;
  /** The overlay device and the kernelGso tap, when they were created. */
  device?: string;
  gsoTap?: string;
  /** Global sysctls changed, with the value to restore (device sysctls go with the device). */
  sysctls: { key: string; old: string }[];
  /** Route protocol of every route installed (RT_PROTO). */
  routeProto: number;
  /** The kernel routes installed (main table), for a reclaim that removes only these. */
  routes?: { dst: string; via?: string; dev: string; type?: "blackhole" }[];
  /** NAT plumbing (src/daemon/natsetup.ts NodeNat.record()). */
  nat?: NatRecord;
}

export interface NatRecord {
  /** ip rules; `family` 6 is an `ip -6 rule` (absent in records written before IPv6: IPv4). */
  rules: { pref: number; args: string[]; family?: 4 | 6 }[];
  tableRoute?: { table: number; dev: string };
  /** The IPv6 `default dev <device>` route in table `table` (NAT66 masquerade). */
  tableRoute6?: { table: number; dev: string };
  /** Main-table routes: "a.b.c.d/32" (IPv4) or "x::y/128" (IPv6). */
  routes: { dst: string; dev: string }[];
  /** Filter prefs on dev's ingress: IPv4 pair, and the IPv6 pair when there were IPv6 filters. */
  tc?: { dev: string; prefs: number[]; createdQdisc: boolean };
  /** Ports this instance added to ip_local_reserved_ports ("61000-65535,30080"). */
  reservedPortsAdded: string;
}

export const lockPath = (stateDir: string) => join(stateDir, "overlayd.lock");
export const recordPath = (stateDir: string) => join(stateDir, "installed.json");

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The live PID holding stateDir's lock, if any (not this process). */
export function lockOwner(stateDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(lockPath(stateDir), "utf8").trim());
    return pid !== process.pid && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Take stateDir's lock for this process. Throws LockError naming the owner
 * when a live process holds it; a stale lock (dead PID) is taken over.
 * Returns whether it was stale (a dead instance may have left things behind).
 */
export function acquireLock(stateDir: string): { stale: boolean } {
  mkdirSync(stateDir, { recursive: true, mode: 0o755 });
  const path = lockPath(stateDir);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return { stale: false };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = lockOwner(stateDir);
    if (owner !== undefined) {
      throw new LockError(`another overlayd (pid ${owner}) runs with node.stateDir ${stateDir} (${path}): one overlayd per node; stop it first`);
    }
    // Stale: its owner is dead. Replace it atomically with ours.
    const tmp = `${path}.${process.pid}`;
    writeFileSync(tmp, `${process.pid}\n`);
    renameSync(tmp, path);
    if (Number(readFileSync(path, "utf8").trim()) === process.pid) return { stale: true };
  }
  throw new LockError(`cannot take ${path}: another process keeps replacing it`);
}

/** Remove the lock if it is ours. */
export function releaseLock(stateDir: string): void {
  try {
    if (Number(readFileSync(lockPath(stateDir), "utf8").trim()) === process.pid) rmSync(lockPath(stateDir), { force: true });
  } catch {
    // not there
  }
}

export function readRecord(stateDir: string): InstallRecord | undefined {
  const path = recordPath(stateDir);
  if (!existsSync(path)) return undefined;
  try {
    const r = JSON.parse(readFileSync(path, "utf8")) as InstallRecord;
    return r && r.version === 1 ? r : undefined;
  } catch {
    return undefined; // torn write of a dying instance: the sweep by markers still runs
  }
}

export function writeRecord(stateDir: string, r: InstallRecord): void {
  const path = recordPath(stateDir);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(r, null, 2) + "\n");
  renameSync(tmp, path);
}

export function removeRecord(stateDir: string): void {
  rmSync(recordPath(stateDir), { force: true });
}
