// The node facts the CNI plugin (src/cni/) addresses pods from, written by
// overlayd to `${node.stateDir}/node.json` (like flannel's subnet.env): the
// node's pod CIDR (also one leased from etcd), its overlay address (the pods'
// gateway in routed mode), the device's MTU (the pods' MTU, so they never
// send what the tunnel must drop) and the addresses the pods must not get.
// Written atomically (temp file + rename) so the plugin never reads half a
// file; removed when overlayd stops, so a plugin's STATUS says "not ready".
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { Config } from "../config/schema.js";
import { isIpv4, tryParseCidr } from "../config/net.js";
import { tryParseCidr6, tryParseIpv6 } from "../config/net6.js";

export const NODE_STATE_FILE = "node.json";
export const DEFAULT_NODE_STATE = `/run/wasm-overlay/${NODE_STATE_FILE}`;
/** Written by the plugin next to node.json: where its IPAM keeps allocations (read by `show status`). */
export const CNI_STATE_FILE = "cni.json";

const ipv4 = z.string().refine(isIpv4, { message: "not an IPv4 address" });
export const NodeStateSchema = z.looseObject({
  version: z.literal(1),
  node: z.string().min(1),
  podCIDR: z.string().refine((s) => tryParseCidr(s).ok, { message: "not an IPv4 CIDR" }),
  /** The node's overlay address (on the device as a /32): routed pods' gateway. */
  overlayAddress: ipv4,
  device: z.string().min(1),
  mtu: z.number().int().min(68).max(65535),
  underlay: ipv4,
  /** Addresses in podCIDR that are the node's own (overlay, service-SNAT): never a pod's. */
  reserved: z.array(ipv4).default([]),
  /** Dual-stack (node.ipv6): the IPv6 pod prefix pods are addressed from, and the node's
   *  IPv6 overlay address on the device (never a pod's). */
  ipv6: z.object({
    podCIDR: z.string().refine((s) => tryParseCidr6(s).ok, { message: "not an IPv6 CIDR" }),
    overlayAddress: z.string().refine((s) => tryParseIpv6(s).ok, { message: "not an IPv6 address" }),
  }).optional(),
  pid: z.number().int().optional(),
  writtenAt: z.string().optional(),
});
export type NodeState = z.output<typeof NodeStateSchema>;

export const nodeStatePath = (stateDir: string) => join(stateDir, NODE_STATE_FILE);

/** What node.json says for this config (the daemon's merged one: a leased
 *  podCIDR included) and the device MTU in force (the config's, or the one
 *  derived from the underlay link: src/daemon/mtu.ts). */
export function nodeStateOf(config: Config, deviceMtu: number): NodeState {
  return {
    version: 1,
    node: config.node.name,
    podCIDR: config.node.podCIDR,
    overlayAddress: config.node.overlayAddress,
    device: config.node.device.name,
    mtu: deviceMtu,
    underlay: config.node.underlay.address,
    reserved: [config.node.overlayAddress, config.nat.snatAddress],
    ...(config.node.ipv6 ? { ipv6: { podCIDR: config.node.ipv6.podCIDR, overlayAddress: config.node.ipv6.overlayAddress } } : {}),
    pid: process.pid,
  };
}

/** Write node.json (only when the facts changed); returns its path. Throws on I/O errors. */
export function writeNodeState(stateDir: string, config: Config, deviceMtu: number): string {
  const file = nodeStatePath(stateDir);
  const state = nodeStateOf(config, deviceMtu);
  try {
    const old = JSON.parse(readFileSync(file, "utf8"));
    delete old.writtenAt;
    if (JSON.stringify(old) === JSON.stringify(state)) return file;
  } catch {
    // none yet, or unreadable: write it
  }
  mkdirSync(stateDir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify({ ...state, writtenAt: new Date().toISOString() }, null, 2) + "\n", { mode: 0o644 });
  renameSync(tmp, file);
  return file;
}

/** Remove node.json if this process wrote it (never another overlayd's, e.g. after failing to take its lock). */
export function removeNodeState(stateDir: string): void {
  const file = nodeStatePath(stateDir);
  try {
    if (JSON.parse(readFileSync(file, "utf8")).pid !== process.pid) return;
  } catch {
    return; // none, or not ours to judge
  }
  rmSync(file, { force: true });
}

/** Read and validate node.json; throws with the reason. */
export function readNodeState(file: string): NodeState {
  const text = readFileSync(file, "utf8");
  const r = NodeStateSchema.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`${file}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return r.data;
}

/** For `overlayd show status`: where node.json is and how many pods the plugin's IPAM holds. */
export function podStatus(stateDir: string): { nodeState: string; ipamDir?: string; attachments?: number } {
  const out: { nodeState: string; ipamDir?: string; attachments?: number } = { nodeState: nodeStatePath(stateDir) };
  try {
    const cni = JSON.parse(readFileSync(join(stateDir, CNI_STATE_FILE), "utf8")) as { ipamDir?: string };
    if (typeof cni.ipamDir === "string") {
      out.ipamDir = cni.ipamDir;
      const root = join(cni.ipamDir, "attachments");
      out.attachments = readdirNames(root).reduce((n, net) => n + readdirNames(join(root, net)).filter((f) => !f.endsWith(".tmp")).length, 0);
    }
  } catch {
    // no pod attached through the plugin yet
  }
  return out;
}

function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => !n.startsWith("."));
  } catch {
    return [];
  }
}
