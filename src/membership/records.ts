// What overlayd keeps in etcd, and where (every key under the configured prefix):
//
//   <prefix>/config                    {"network": "198.19.0.0/16", "subnetLength": 24}
//                                      the cluster network (flannel's network config);
//                                      read when the node's config has no etcd.network
//   <prefix>/subnets/198.19.5.0-24     NodeRecord JSON, attached to the node's TTL'd lease:
//                                      the subnet is leased and the node is alive while
//                                      the key exists; peers watch these keys
//   <prefix>/nodes/<name>              {"podCIDR": "198.19.5.0/24"}, no lease: the subnet
//                                      this node had, so a restarted node keeps it (flannel
//                                      keeps it in subnet.env on the node)
//
// A record comes from another machine: it is parsed with a schema and a bad
// one is ignored (and counted), never trusted.
import { z } from "zod";
import { ENCAPSULATIONS } from "../config/schema.js";
import { formatMac, parseMac, tryIpToU32, tryParseCidr, tryParseMac } from "../config/net.js";
import { bigintToIpv6, tryParseCidr6, tryParseIpv6 } from "../config/net6.js";

const checked = (parse: (s: string) => { ok: boolean; reason?: string }) =>
  z.string().superRefine((v, ctx) => {
    const r = parse(v);
    if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason ?? "invalid" });
  });

/** One node's membership record, as published under its subnet key. */
export const NodeRecordSchema = z.object({
  node: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/),
  underlay: checked(tryIpToU32),
  podCIDR: checked(tryParseCidr),
  vtepMac: checked(tryParseMac).transform((s) => formatMac(parseMac(s))),
  /** How the node wants to be reached (its etcd.encapsulation). */
  encapsulation: z.enum(ENCAPSULATIONS),
  /** When the node leased this subnet (its clock, ISO 8601): `show peers` prints the age. */
  leasedAt: z.string(),
  /** Dual-stack: the node's IPv6 pod prefix (derived from its subnet: allocate.ts ipv6SubnetFor). */
  ipv6PodCIDR: checked(tryParseCidr6).optional(),
  /** The node asks to be reached over the IPv6 underlay at this address (its etcd.underlay6). */
  underlay6: checked(tryParseIpv6).transform((s) => {
    const p = tryParseIpv6(s);
    return p.ok ? bigintToIpv6(p.value) : s;
  }).optional(),
});
export type NodeRecord = z.output<typeof NodeRecordSchema>;

/** The cluster network, from the node's config or `<prefix>/config`. */
export const NetworkConfigSchema = z.object({
  network: checked(tryParseCidr),
  subnetLength: z.number().int().min(1).max(30).default(24),
  /** Dual-stack: the cluster's IPv6 pod network; a node's IPv6 subnet is the one of the same index as its IPv4 subnet. */
  ipv6Network: checked(tryParseCidr6).optional(),
  ipv6SubnetLength: z.number().int().min(1).max(128).default(64),
});
export type NetworkConfig = z.output<typeof NetworkConfigSchema>;

export const SUBNETS = "/subnets/";
export const NODES = "/nodes/";

/** "198.19.5.0/24" → "<prefix>/subnets/198.19.5.0-24". */
export function subnetKey(prefix: string, cidr: string): string {
  return `${trimPrefix(prefix)}${SUBNETS}${cidr.replace("/", "-")}`;
}

/** "<prefix>/subnets/198.19.5.0-24" → "198.19.5.0/24"; undefined for other keys. */
export function subnetOfKey(prefix: string, key: string): string | undefined {
  const head = trimPrefix(prefix) + SUBNETS;
  if (!key.startsWith(head)) return undefined;
  const cidr = key.slice(head.length).replace("-", "/");
  return tryParseCidr(cidr).ok ? cidr : undefined;
}

export function nodeKey(prefix: string, name: string): string {
  return `${trimPrefix(prefix)}${NODES}${name}`;
}

export function networkKey(prefix: string): string {
  return `${trimPrefix(prefix)}/config`;
}

export function subnetsPrefix(prefix: string): string {
  return trimPrefix(prefix) + SUBNETS;
}

function trimPrefix(prefix: string): string {
  return prefix.replace(/\/+$/, "");
}

/** Parse a record stored under `<prefix>/subnets/<cidr>`; the key's subnet must be the record's. */
export function parseRecord(cidrOfKey: string, value: string): { ok: true; record: NodeRecord } | { ok: false; reason: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(value);
  } catch {
    return { ok: false, reason: "not JSON" };
  }
  const r = NodeRecordSchema.safeParse(doc);
  if (!r.success) return { ok: false, reason: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") };
  if (r.data.podCIDR !== cidrOfKey) return { ok: false, reason: `record says ${r.data.podCIDR}, key says ${cidrOfKey}` };
  return { ok: true, record: r.data };
}
