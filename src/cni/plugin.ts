// The verbs of the wasm-overlay CNI plugin. run() takes what a runtime hands a
// plugin (the CNI_* environment and the network config on stdin) and returns
// what it must print on stdout and the exit status: a result, nothing, or
// the spec's error object with a non-zero exit. It never throws.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { cidrContains, ipToU32, parseCidr, u32ToIp } from "../config/net.js";
import { bigintToIpv6, parseCidr6, tryParseIpv6 } from "../config/net6.js";
import { CNI_STATE_FILE, readNodeState, type NodeState } from "../daemon/nodestate.js";
import { NetConfSchema, type NetConf } from "./config.js";
import { Ipam } from "./ipam.js";
import { attach, detach, hostIfName, netnsExists, ROUTED_GATEWAY6, verify, type Plumbing } from "./link.js";
import { CniError, ERR, formatResult, parseEnv, SPEC_VERSION, SUPPORTED_VERSIONS, type CniEnv, type Result } from "./spec.js";

export interface Outcome {
  code: number;
  stdout: string;
}

export function run(env: NodeJS.ProcessEnv, stdin: string): Outcome {
  let version = SPEC_VERSION;
  try {
    const e = parseEnv(env);
    if (e.command === "VERSION") return ok({ cniVersion: SPEC_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] });
    const { conf, raw } = parseConf(stdin);
    version = conf.cniVersion;
    switch (e.command) {
      case "ADD":
        return ok(add(e, conf, raw));
      case "DEL":
        del(e, conf, raw);
        return { code: 0, stdout: "" };
      case "CHECK":
        check(e, conf, raw);
        return { code: 0, stdout: "" };
      case "STATUS":
        status(e, conf, raw);
        return { code: 0, stdout: "" };
      case "GC":
        gc(e, conf, raw);
        return { code: 0, stdout: "" };
    }
  } catch (err) {
    const ce = err instanceof CniError ? err : new CniError(ERR.IO_FAILURE, (err as Error).message ?? String(err));
    return { code: 1, stdout: JSON.stringify(ce.toJSON(version)) + "\n" };
  }
  return { code: 1, stdout: "" };
}

const ok = (o: unknown): Outcome => ({ code: 0, stdout: JSON.stringify(o) + "\n" });

function parseConf(stdin: string): { conf: NetConf; raw: Record<string, unknown> } {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(ERR.DECODE, "the network config on stdin is not JSON", (e as Error).message);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new CniError(ERR.DECODE, "the network config on stdin is not a JSON object");
  const v = (raw as { cniVersion?: unknown }).cniVersion;
  if (typeof v !== "string" || !(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(ERR.INCOMPATIBLE_VERSION, `cniVersion ${JSON.stringify(v)} is not supported`, `supported: ${SUPPORTED_VERSIONS.join(", ")}`);
  }
  const r = NetConfSchema.safeParse(raw);
  if (!r.success) {
    throw new CniError(ERR.INVALID_CONFIG, "invalid network config", r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; "));
  }
  return { conf: r.data, raw: raw as Record<string, unknown> };
}

function nodeFacts(conf: NetConf): NodeState {
  if (!existsSync(conf.nodeState)) {
    throw new CniError(ERR.TRY_AGAIN_LATER, `overlayd is not running on this node (no ${conf.nodeState})`);
  }
  try {
    return readNodeState(conf.nodeState);
  } catch (e) {
    throw new CniError(ERR.IO_FAILURE, `cannot read the node facts: ${(e as Error).message}`);
  }
}

const builtinIpam = (conf: NetConf) => conf.ipam.type === "wasm-overlay";

/** The bridge-mode gateway: the pod CIDR's first host address (flannel's cni0 .1). */
function bridgeGateway(node: NodeState): string {
  return u32ToIp((parseCidr(node.podCIDR).prefix + 1) >>> 0);
}

/** The addresses the runtime asked for: the `ips` capability, args.cni.ips, or CNI_ARGS IP= (comma-separated). */
function askedIps(e: CniEnv, conf: NetConf): string[] {
  const list = conf.runtimeConfig?.ips ?? conf.args?.cni?.ips ?? (e.args.IP ? e.args.IP.split(",") : []);
  return list.map((a) => a.split("/")[0]);
}

/** The IPv6 address the runtime asked for, if any. */
function requestedIp6(e: CniEnv, conf: NetConf): string | undefined {
  const asked = askedIps(e, conf).find((a) => a.includes(":"));
  if (asked !== undefined && !tryParseIpv6(asked).ok) throw new CniError(ERR.INVALID_CONFIG, `requested address ${JSON.stringify(asked)} is not an IPv6 address`);
  return asked;
}

/** The IPv4 address the runtime asked for, if any. */
function requestedIp(e: CniEnv, conf: NetConf): string | undefined {
  const asked = askedIps(e, conf).find((a) => !a.includes(":"));
  if (!asked) return undefined;
  const addr = asked.split("/")[0];
  try {
    ipToU32(addr);
  } catch {
    throw new CniError(ERR.INVALID_CONFIG, `requested address ${JSON.stringify(asked)} is not an IPv4 address`);
  }
  return addr;
}

function add(e: CniEnv, conf: NetConf, raw: Record<string, unknown>): Record<string, unknown> {
  const node = nodeFacts(conf);
  if (!netnsExists(e.netns!)) throw new CniError(ERR.UNKNOWN_CONTAINER, `network namespace ${e.netns} does not exist`);
  const ipam = new Ipam(conf.ipam.dataDir, conf.name);
  ipam.claim(e.containerId, e.ifname);
  const hostIf = hostIfName(conf.name, e.containerId, e.ifname);
  const mtu = conf.mtu ?? node.mtu;
  const gateway = conf.mode === "bridge" ? bridgeGateway(node) : node.overlayAddress;
  const podLen = parseCidr(node.podCIDR).len;
  const six = ipv6Of(node, conf);
  let address: string;
  let address6: string | undefined;
  try {
    if (builtinIpam(conf)) {
      const range = conf.ipam.subnet ?? node.podCIDR;
      if (conf.ipam.subnet && !(cidrContains(node.podCIDR, parseCidr(range).prefix) && parseCidr(range).len >= podLen)) {
        throw new CniError(ERR.INVALID_CONFIG, `ipam.subnet ${range} is not inside the node's pod CIDR ${node.podCIDR}`);
      }
      address = ipam.allocate(range, [...node.reserved, gateway], e.containerId, e.ifname, requestedIp(e, conf));
      // Dual-stack (the node runs node.ipv6): an IPv6 address too, from the node's IPv6 pod prefix.
      if (six) address6 = ipam.allocate6(six.podCIDR, [six.overlayAddress, ...(conf.mode === "bridge" ? [six.gateway] : [])], e.containerId, e.ifname, requestedIp6(e, conf));
    } else {
      const r = delegateIpam("ADD", e, conf, raw) as { ips?: { address: string }[] };
      const a = r.ips?.find((x) => !x.address.includes(":"))?.address;
      if (!a) throw new CniError(ERR.INVALID_CONFIG, `IPAM plugin ${conf.ipam.type} returned no IPv4 address`);
      address = a.split("/")[0];
      if (six) address6 = r.ips?.find((x) => x.address.includes(":"))?.address.split("/")[0];
    }
    ipam.record({ containerId: e.containerId, ifname: e.ifname, ip: address, ...(address6 ? { ip6: address6 } : {}), hostIf, netns: e.netns, mode: conf.mode, ipam: conf.ipam.type });
    writeCniState(conf, ipam);
    const plumbing: Plumbing = {
      mode: conf.mode, netns: e.netns!, ifname: e.ifname, hostIf, address, gateway, mtu,
      prefixLength: conf.mode === "routed" ? 32 : podLen, bridge: conf.bridge, bridgePrefixLength: podLen,
      ...(six && address6 ? { address6, prefixLength6: six.prefixLength, gateway6: six.gateway } : {}),
    };
    const links = attach(plumbing);
    const result: Result = { interfaces: [], ips: [], routes: [{ dst: "0.0.0.0/0", gw: gateway }] };
    if (conf.mode === "bridge") result.interfaces.push({ name: conf.bridge, mac: links.bridgeMac, mtu });
    result.interfaces.push({ name: hostIf, mac: links.hostMac, mtu });
    result.interfaces.push({ name: e.ifname, mac: links.podMac, mtu, sandbox: e.netns });
    result.ips.push({ address: `${address}/${plumbing.prefixLength}`, gateway, interface: result.interfaces.length - 1 });
    if (plumbing.address6) {
      result.ips.push({ address: `${plumbing.address6}/${plumbing.prefixLength6}`, gateway: plumbing.gateway6!, interface: result.interfaces.length - 1 });
      result.routes.push({ dst: "::/0", gw: plumbing.gateway6! });
    }
    if (conf.dns) result.dns = conf.dns;
    return mergePrev(formatResult(conf.cniVersion, result), conf.prevResult);
  } catch (err) {
    // Leave nothing behind: the runtime may not call DEL after a failed ADD.
    if (!builtinIpam(conf)) {
      try {
        delegateIpam("DEL", e, conf, raw);
      } catch {
        // best effort
      }
    }
    ipam.release(e.containerId, e.ifname);
    throw err;
  }
}

/** Dual-stack: the node's IPv6 pod prefix and what a pod gets from it: a /128 with
 *  the link-local gateway on the host end (routed), or the prefix's length with
 *  its first host address on the bridge as gateway (bridge). */
function ipv6Of(node: NodeState, conf: NetConf): { podCIDR: string; overlayAddress: string; prefixLength: number; gateway: string } | undefined {
  if (!node.ipv6) return undefined;
  const c = parseCidr6(node.ipv6.podCIDR);
  if (conf.mode === "routed") return { ...node.ipv6, prefixLength: 128, gateway: ROUTED_GATEWAY6 };
  return { ...node.ipv6, prefixLength: c.len, gateway: bigintToIpv6(c.prefix + 1n) };
}

/** Chained after another plugin: keep what it reported, add ours. */
function mergePrev(ours: Record<string, unknown>, prev?: Record<string, unknown>): Record<string, unknown> {
  if (!prev) return ours;
  const pi = (prev.interfaces as unknown[] | undefined) ?? [];
  const shift = pi.length;
  const ips = ((ours.ips as { interface?: number }[]) ?? []).map((x) => ({ ...x, interface: x.interface === undefined ? undefined : x.interface + shift }));
  return {
    ...ours,
    interfaces: [...pi, ...(ours.interfaces as unknown[])],
    ips: [...((prev.ips as unknown[]) ?? []), ...ips],
    routes: [...((prev.routes as unknown[]) ?? []), ...(ours.routes as unknown[])],
  };
}

function del(e: CniEnv, conf: NetConf, raw: Record<string, unknown>): void {
  const ipam = new Ipam(conf.ipam.dataDir, conf.name);
  const rec = ipam.get(e.containerId, e.ifname);
  detach(rec?.hostIf ?? hostIfName(conf.name, e.containerId, e.ifname));
  if (!builtinIpam(conf)) delegateIpam("DEL", e, conf, raw);
  ipam.release(e.containerId, e.ifname);
}

function check(e: CniEnv, conf: NetConf, raw: Record<string, unknown>): void {
  if (conf.cniVersion === "0.3.1") throw new CniError(ERR.INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later");
  const prev = conf.prevResult as { ips?: { address: string }[] } | undefined;
  if (!prev) throw new CniError(ERR.INVALID_CONFIG, "CHECK needs prevResult (the result of ADD)");
  const node = nodeFacts(conf);
  const ipam = new Ipam(conf.ipam.dataDir, conf.name);
  const rec = ipam.get(e.containerId, e.ifname);
  if (!rec?.ip) throw new CniError(ERR.UNKNOWN_CONTAINER, `no attachment of container ${e.containerId} interface ${e.ifname} on network ${conf.name}`);
  const prevIp = prev.ips?.[0]?.address?.split("/")[0];
  if (prevIp !== rec.ip) throw new CniError(ERR.CHECK_FAILED, `prevResult says ${prevIp ?? "no address"}, the allocation is ${rec.ip}`);
  if (builtinIpam(conf)) {
    const owner = ipam.addresses().find((a) => a.ip === rec.ip);
    if (owner?.containerId !== e.containerId) throw new CniError(ERR.CHECK_FAILED, `address ${rec.ip} is not allocated to container ${e.containerId}`);
  } else delegateIpam("CHECK", e, conf, raw);
  const podLen = parseCidr(node.podCIDR).len;
  const six = ipv6Of(node, conf);
  verify({
    mode: conf.mode, netns: e.netns!, ifname: e.ifname, hostIf: rec.hostIf ?? hostIfName(conf.name, e.containerId, e.ifname), address: rec.ip,
    gateway: conf.mode === "bridge" ? bridgeGateway(node) : node.overlayAddress, mtu: conf.mtu ?? node.mtu,
    prefixLength: conf.mode === "routed" ? 32 : podLen, bridge: conf.bridge, bridgePrefixLength: podLen,
    ...(six && rec.ip6 ? { address6: rec.ip6, prefixLength6: six.prefixLength, gateway6: six.gateway } : {}),
  });
}

/** STATUS: ready when overlayd has written the node facts and is alive. */
function status(_e: CniEnv, conf: NetConf, _raw: Record<string, unknown>): void {
  let node: NodeState;
  try {
    node = nodeFacts(conf);
  } catch (err) {
    throw new CniError(ERR.NOT_AVAILABLE, (err as Error).message);
  }
  if (node.pid !== undefined && !existsSync(`/proc/${node.pid}`)) {
    throw new CniError(ERR.NOT_AVAILABLE, `overlayd (pid ${node.pid}, from ${conf.nodeState}) is not running`);
  }
}

/** GC: release every attachment the runtime no longer knows, and its host interface. */
function gc(e: CniEnv, conf: NetConf, raw: Record<string, unknown>): void {
  const valid = conf["cni.dev/valid-attachments"] ?? conf["cni.dev/attachments"];
  if (!valid) throw new CniError(ERR.INVALID_CONFIG, "GC needs cni.dev/valid-attachments");
  const ipam = new Ipam(conf.ipam.dataDir, conf.name);
  for (const a of ipam.gc(valid)) if (a.hostIf) detach(a.hostIf);
  if (!builtinIpam(conf) && delegateSupports(e, conf, "1.1.0")) delegateIpam("GC", e, conf, raw);
}

/** Where `show status` finds the allocations (next to node.json). */
function writeCniState(conf: NetConf, ipam: Ipam): void {
  const file = join(dirname(conf.nodeState), CNI_STATE_FILE);
  const text = JSON.stringify({ network: conf.name, ipamDir: ipam.dir }) + "\n";
  try {
    if (existsSync(file) && readFileSync(file, "utf8") === text) return;
    mkdirSync(dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch {
    // informational only
  }
}

function findPlugin(e: CniEnv, type: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) throw new CniError(ERR.INVALID_CONFIG, `ipam.type ${JSON.stringify(type)} is not a plugin name`);
  for (const d of e.path) if (existsSync(join(d, type))) return join(d, type);
  throw new CniError(ERR.INVALID_CONFIG, `IPAM plugin ${type} not found in CNI_PATH ${e.path.join(":") || "(empty)"}`);
}

/** The delegate's view of the config: the Debian plugins speak up to 1.0.0, whose results are the same shape. */
function delegateConf(conf: NetConf, raw: Record<string, unknown>): string {
  const v = conf.cniVersion === "1.1.0" ? "1.0.0" : conf.cniVersion;
  return JSON.stringify({ ...raw, cniVersion: v });
}

function delegateSupports(e: CniEnv, conf: NetConf, version: string): boolean {
  try {
    const out = execFileSync(findPlugin(e, conf.ipam.type), [], { env: { ...process.env, CNI_COMMAND: "VERSION" }, input: "{}", encoding: "utf8" });
    return (JSON.parse(out).supportedVersions as string[]).includes(version);
  } catch {
    return false;
  }
}

/** Run the IPAM plugin for `verb` with the runtime's environment; its parsed stdout. */
function delegateIpam(verb: string, e: CniEnv, conf: NetConf, raw: Record<string, unknown>): unknown {
  const bin = findPlugin(e, conf.ipam.type);
  let out = "";
  try {
    out = execFileSync(bin, [], { env: { ...process.env, CNI_COMMAND: verb }, input: delegateConf(conf, raw), encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], timeout: 30_000 });
  } catch (err) {
    const x = err as { stdout?: string; message: string };
    try {
      const o = JSON.parse(x.stdout ?? "");
      throw new CniError(typeof o.code === "number" ? o.code : ERR.IO_FAILURE, `${conf.ipam.type}: ${o.msg ?? "failed"}`, o.details);
    } catch (inner) {
      if (inner instanceof CniError) throw inner;
      throw new CniError(ERR.IO_FAILURE, `${conf.ipam.type} ${verb} failed: ${x.message}`);
    }
  }
  return out.trim() ? JSON.parse(out) : {};
}
