// The config the daemon runs with when etcd is on: the config file's
// document, plus the leased pod CIDR, plus a peer per live etcd record, put
// through the same validation as a plain file (load.ts validateConfig), so
// derive/apply and the kernel-route diff see one ordinary Config.
//
// A record that would make the merged config invalid (a name, underlay
// address, VTEP MAC or pod CIDR that a config-file peer or this node already
// has) is left out and reported; the config file wins over etcd, and for two
// records of one node (its old subnet not expired yet) the newer one wins.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { cidrOverlaps, formatMac, ipToU32, macFromIp, parseMac, tryIpToU32, tryParseCidr, tryParseMac } from "../config/net.js";
import type { LoadResult } from "../config/load.js";
import type { NodeRecord } from "./records.js";
import { bigintToIpv6, tryParseIpv6 } from "../config/net6.js";

/** A peer entry as the config file would have it. */
export interface PeerEntry {
  name: string;
  underlay: string;
  podCIDRs: string[];
  vtepMac: string;
  encapsulation: NodeRecord["encapsulation"];
  ipv6?: { podCIDRs: string[] };
  underlay6?: string;
}

/** A live record with the etcd revision it was written at (newer wins). */
export interface LiveRecord {
  record: NodeRecord;
  modRevision: number;
}

export interface MergeResult {
  peers: PeerEntry[];
  dropped: Array<{ node: string; podCIDR: string; reason: string }>;
}

type Doc = Record<string, unknown>;
const obj = (v: unknown): Doc => (v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Doc) : {});
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** This node's VTEP MAC as the schema resolves it (device.vtepMac, else from the underlay address). */
export function ownVtepMac(doc: Doc): string | undefined {
  const node = obj(doc.node);
  const explicit = str(obj(node.device).vtepMac);
  if (explicit !== undefined) return tryParseMac(explicit).ok ? formatMac(parseMac(explicit)) : undefined;
  const addr = str(obj(node.underlay).address);
  return addr !== undefined && tryIpToU32(addr).ok ? formatMac(macFromIp(ipToU32(addr))) : undefined;
}

/**
 * The etcd peers to add to `doc` (the config file's document, with this
 * node's `podCIDR`): one per node, sorted by name, minus those that clash with
 * the file's peers or static routes or with this node.
 */
export function mergePeers(doc: Doc, podCIDR: string, live: readonly LiveRecord[], podCIDR6?: string): MergeResult {
  const node = obj(doc.node);
  // A peer's IPv6 pods only where this node runs IPv6 too (a one-sided dual stack is a config error).
  const six = podCIDR6 !== undefined || node.ipv6 !== undefined;
  const selfName = str(node.name);
  const selfUnderlay = str(obj(node.underlay).address);
  const selfMac = ownVtepMac(doc);
  // A peer asking for the IPv6 underlay gets it where this node has one (else IPv4).
  const norm6 = (s: string | undefined) => {
    const p = s === undefined ? undefined : tryParseIpv6(s);
    return p?.ok ? bigintToIpv6(p.value) : undefined;
  };
  const selfUnderlay6 = norm6(str(obj(node.ipv6).underlayAddress));
  const filePeers = Array.isArray(doc.peers) ? doc.peers.map(obj) : [];
  const names = new Set(filePeers.map((p) => str(p.name)).filter((x) => x !== undefined));
  const underlays6 = new Set(filePeers.map((p) => norm6(str(p.underlay6))).filter((x) => x !== undefined));
  const underlays = new Set(filePeers.map((p) => str(p.underlay)).filter((x) => x !== undefined));
  const macs = new Set(filePeers.map((p) => str(p.vtepMac)).filter((x) => x !== undefined && tryParseMac(x).ok).map((m) => formatMac(parseMac(m!))));
  const claimed: Array<{ cidr: string; owner: string }> = [{ cidr: podCIDR, owner: "this node" }];
  for (const p of filePeers) {
    for (const c of Array.isArray(p.podCIDRs) ? p.podCIDRs : []) if (typeof c === "string" && tryParseCidr(c).ok) claimed.push({ cidr: c, owner: `config peer ${str(p.name)}` });
  }
  const routePrefixes = new Set((Array.isArray(doc.routes) ? doc.routes : []).map((r) => str(obj(r).prefix)));

  // One record per node: the newest.
  const newest = new Map<string, LiveRecord>();
  for (const l of live) {
    const prev = newest.get(l.record.node);
    if (!prev || l.modRevision > prev.modRevision) newest.set(l.record.node, l);
  }
  const dropped: MergeResult["dropped"] = [];
  for (const l of live) {
    if (newest.get(l.record.node) !== l && l.record.node !== selfName) {
      dropped.push({ node: l.record.node, podCIDR: l.record.podCIDR, reason: "superseded by a newer record of the same node" });
    }
  }

  const peers: PeerEntry[] = [];
  const sorted = [...newest.values()].sort((a, b) => (a.record.node < b.record.node ? -1 : a.record.node > b.record.node ? 1 : 0));
  for (const { record: r } of sorted) {
    if (r.node === selfName) continue; // our own record (or our previous process's)
    const r6 = norm6(r.underlay6);
    const over6 = selfUnderlay6 !== undefined && r6 !== undefined && r.encapsulation !== "direct";
    const clash = (() => {
      if (names.has(r.node)) return `a config peer is also called ${r.node}`;
      if (r.underlay === selfUnderlay) return `underlay ${r.underlay} is this node's`;
      if (underlays.has(r.underlay)) return `underlay ${r.underlay} is a config peer's`;
      if (r.vtepMac === selfMac) return `VTEP MAC ${r.vtepMac} is this node's`;
      if (macs.has(r.vtepMac)) return `VTEP MAC ${r.vtepMac} is a config peer's`;
      const over = claimed.find((c) => cidrOverlaps(c.cidr, r.podCIDR));
      if (over) return `pod CIDR ${r.podCIDR} overlaps ${over.cidr} of ${over.owner}`;
      if (routePrefixes.has(r.podCIDR)) return `pod CIDR ${r.podCIDR} is a static route's prefix`;
      if (over6 && r6 === selfUnderlay6) return `IPv6 underlay ${r6} is this node's`;
      if (over6 && underlays6.has(r6)) return `IPv6 underlay ${r6} is a config peer's`;
      return undefined;
    })();
    if (clash) {
      dropped.push({ node: r.node, podCIDR: r.podCIDR, reason: clash });
      continue;
    }
    names.add(r.node);
    underlays.add(r.underlay);
    macs.add(r.vtepMac);
    if (over6) underlays6.add(r6);
    claimed.push({ cidr: r.podCIDR, owner: `etcd peer ${r.node}` });
    peers.push({
      name: r.node, underlay: r.underlay, podCIDRs: [r.podCIDR], vtepMac: r.vtepMac, encapsulation: r.encapsulation,
      ...(six && r.ipv6PodCIDR ? { ipv6: { podCIDRs: [r.ipv6PodCIDR] } } : {}),
      ...(over6 ? { underlay6: r6 } : {}),
    });
  }
  return { peers, dropped };
}

/** `doc` with the leased pod CIDR (and its IPv6 one), the etcd section in force and the etcd peers after the file's own. */
export function composeDocument(doc: Doc, etcd: Doc, podCIDR: string, peers: readonly PeerEntry[], podCIDR6?: string): Doc {
  const node = obj(doc.node);
  const filePeers = Array.isArray(doc.peers) ? doc.peers : [];
  const ipv6 = podCIDR6 !== undefined ? { ipv6: { ...obj(node.ipv6), podCIDR: podCIDR6 } } : {};
  return { ...doc, node: { ...node, podCIDR, ...ipv6 }, peers: [...filePeers, ...peers], etcd };
}

/** The config file as a plain document (YAML 1.2 reads JSON too); errors come from load.ts's own messages. */
export function readConfigDocument(path: string): { ok: true; doc: Doc } | { ok: false } {
  try {
    const doc: unknown = parseYaml(readFileSync(path, "utf8"), { uniqueKeys: true, maxAliasCount: 100 });
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return { ok: false };
    return { ok: true, doc: doc as Doc };
  } catch {
    return { ok: false };
  }
}

/** The etcd section in force: the file's, with the command line's endpoints and prefix on top. */
export function etcdSection(doc: Doc, cli?: { endpoints?: string[]; prefix?: string }): Doc | undefined {
  const file = doc.etcd === undefined ? undefined : obj(doc.etcd);
  if (!file && !cli?.endpoints?.length) return undefined;
  const out: Doc = { ...(file ?? {}) };
  if (cli?.endpoints?.length) out.endpoints = cli.endpoints;
  if (cli?.prefix !== undefined) out.prefix = cli.prefix;
  return out;
}

/**
 * Validate the composed config; an etcd peer that an error names (its
 * `peers[i]` path, or "peer NAME" in a message) is left out with that error
 * as the reason and the rest validated again, so one odd record cannot hold
 * up every other membership change. Errors that name no etcd peer are the
 * file's and come back as they are.
 */
export function validateMerged(doc: Doc, etcd: Doc, podCIDR: string, merged: MergeResult, validate: (d: Doc) => LoadResult, podCIDR6?: string): { result: LoadResult; merged: MergeResult } {
  const fileCount = Array.isArray(doc.peers) ? doc.peers.length : 0;
  let peers = [...merged.peers];
  const dropped = [...merged.dropped];
  for (;;) {
    const result = validate(composeDocument(doc, etcd, podCIDR, peers, podCIDR6));
    if (result.ok) return { result, merged: { peers, dropped } };
    const blamed = new Map<string, string>();
    for (const e of result.errors) {
      const at = /^peers\[(\d+)\]/.exec(e);
      const byIndex = at ? peers[Number(at[1]) - fileCount] : undefined;
      const byName = peers.find((p) => e.includes(`peer ${p.name}`));
      for (const p of [byIndex, byName]) if (p && !blamed.has(p.name)) blamed.set(p.name, e);
    }
    if (blamed.size === 0) return { result, merged: { peers, dropped } };
    for (const [name, reason] of blamed) {
      const p = peers.find((x) => x.name === name)!;
      dropped.push({ node: name, podCIDR: p.podCIDRs[0], reason });
    }
    peers = peers.filter((p) => !blamed.has(p.name));
  }
}
