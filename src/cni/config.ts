// The plugin's network config (stdin), validated with zod. Plugin-specific
// fields next to the spec's well-known ones; unknown fields are tolerated
// (runtimes add their own, e.g. capabilities), as the spec allows.
import { z } from "zod";
import { isIpv4, tryParseCidr } from "../config/net.js";
import { DEFAULT_NODE_STATE } from "../daemon/nodestate.js";
import { SUPPORTED_VERSIONS } from "./spec.js";

const ipv4 = z.string().refine(isIpv4, { error: (iss) => `${JSON.stringify(iss.input)} is not an IPv4 address` });
const cidr = z.string().refine((s) => tryParseCidr(s).ok, { error: (iss) => `${JSON.stringify(iss.input)} is not an IPv4 CIDR` });
const ifname = z.string().regex(/^[^\s/:]{1,15}$/, { error: (iss) => `${JSON.stringify(iss.input)} is not an interface name` });
const absPath = z.string().regex(/^\/[^\0]*$/, { error: (iss) => `${JSON.stringify(iss.input)} is not an absolute path` });

export const DEFAULT_DATA_DIR = "/var/lib/cni/wasm-overlay";

export const NetConfSchema = z.looseObject({
  cniVersion: z.string(),
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { error: "must start with a letter or digit, then letters, digits, _ . -" }),
  type: z.string().min(1),
  /** routed (default; Calico's model, Hand CNI-2) or bridge (flannel's, Hand CNI-1). */
  mode: z.enum(["routed", "bridge"]).default("routed"),
  /** node.json written by overlayd (`${node.stateDir}/node.json`). */
  nodeState: absPath.default(DEFAULT_NODE_STATE),
  /** Bridge mode: the bridge's name. */
  bridge: ifname.default("wob0"),
  /** Override the pods' MTU (default: overlayd's device MTU from node.json). */
  mtu: z.number().int().min(68).max(65535).optional(),
  ipam: z
    .looseObject({
      /** Omitted or "wasm-overlay": the built-in allocator; anything else is a delegated IPAM plugin (host-local). */
      type: z.string().min(1).default("wasm-overlay"),
      /** Built-in: where allocations are kept (one directory per network). */
      dataDir: absPath.default(DEFAULT_DATA_DIR),
      /** Built-in: allocate from this range instead of the node's whole pod CIDR (must lie inside it). */
      subnet: cidr.optional(),
    })
    .default({ type: "wasm-overlay", dataDir: DEFAULT_DATA_DIR }),
  runtimeConfig: z
    .looseObject({
      /** The `ips` capability: addresses the runtime asks for ("198.19.1.10" or "198.19.1.10/24"). */
      ips: z.array(z.string()).optional(),
    })
    .optional(),
  args: z.looseObject({ cni: z.looseObject({ ips: z.array(z.string()).optional() }).optional() }).optional(),
  prevResult: z.looseObject({}).optional(),
  "cni.dev/valid-attachments": z.array(z.looseObject({ containerID: z.string(), ifname: z.string() })).optional(),
  "cni.dev/attachments": z.array(z.looseObject({ containerID: z.string(), ifname: z.string() })).optional(),
  dns: z.looseObject({}).optional(),
});
export type NetConf = z.output<typeof NetConfSchema>;

export { ipv4 as ipv4Schema, SUPPORTED_VERSIONS };
