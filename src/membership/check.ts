// `overlayd check-config` for a node whose pod CIDR comes from etcd: the file
// has no node.podCIDR, so it is checked with the subnet this node would lease
// in an empty cluster (the first of etcd.network that no config peer uses).
import { loadConfigFile, validateConfig, type LoadResult } from "../config/load.js";
import { tryParseCidr } from "../config/net.js";
import { ipv6SubnetFor, subnetCandidates } from "./allocate.js";
import { composeDocument, etcdSection, readConfigDocument } from "./merge.js";

export interface CheckResult {
  result: LoadResult;
  /** Set when the pod CIDR is leased from etcd: what the check stood in for it. */
  leased?: { checkedWith?: string; note: string };
}

export function checkConfigFile(path: string, cli?: { endpoints?: string[]; prefix?: string }): CheckResult {
  const read = readConfigDocument(path);
  const node = read.ok ? (read.doc.node as Record<string, unknown> | undefined) : undefined;
  const etcd = read.ok ? etcdSection(read.doc, cli) : undefined;
  if (!read.ok || !etcd || node === undefined || node.podCIDR !== undefined) return { result: loadConfigFile(path) };
  const network = typeof etcd.network === "string" && tryParseCidr(etcd.network).ok ? etcd.network : undefined;
  const len = typeof etcd.subnetLength === "number" ? etcd.subnetLength : 24;
  if (network === undefined) {
    // The network is in etcd: check everything else, standing in with a /32
    // (it only has to be valid and overlap nothing for the other checks to run).
    const r = validateConfig(composeDocument(read.doc, etcd, "198.18.255.255/32", []));
    return { result: r, leased: { note: "node.podCIDR is leased at start from the network at <prefix>/config in etcd (checked with a /32 stand-in)" } };
  }
  const peers = Array.isArray(read.doc.peers) ? (read.doc.peers as Array<Record<string, unknown>>) : [];
  const avoid = peers.flatMap((p) => (Array.isArray(p?.podCIDRs) ? p.podCIDRs.filter((c): c is string => typeof c === "string") : []));
  const [first] = subnetCandidates({ network, subnetLength: len, name: String(node.name ?? ""), live: new Map(), reserved: new Map(), avoid, limit: 1 });
  if (first === undefined) return { result: { ok: false, errors: [`etcd.network: no /${len} of ${network} is free of the config peers' pod CIDRs`] } };
  // Dual-stack: the IPv6 subnet that goes with it (the same index).
  const net6 = typeof etcd.ipv6Network === "string" ? etcd.ipv6Network : undefined;
  let six: string | undefined;
  if (net6 !== undefined) {
    try {
      six = ipv6SubnetFor(network, len, first, net6, typeof etcd.ipv6SubnetLength === "number" ? etcd.ipv6SubnetLength : 64);
    } catch (e) {
      // A malformed network is the schema's to name; a too-small one is said here.
      const r = validateConfig(composeDocument(read.doc, etcd, first, []));
      if (!r.ok) return { result: r };
      return { result: { ok: false, errors: [`etcd.ipv6Network: ${(e as Error).message}`] } };
    }
  }
  return {
    result: validateConfig(composeDocument(read.doc, etcd, first, [], six)),
    leased: { checkedWith: six ? `${first} and ${six}` : first, note: `node.podCIDR is leased from ${network} (/${len}) at start${six ? `, node.ipv6.podCIDR the ${net6} subnet of the same index` : ""}` },
  };
}
