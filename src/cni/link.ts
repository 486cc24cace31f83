// Pod plumbing with iproute2: a veth pair whose pod end is moved into the
// sandbox's netns (CNI_NETNS, a path) and configured there through nsenter,
// the host end either routed to (a /32 route, Calico's model, Hand CNI-2) or
// enslaved to a bridge holding the gateway address (flannel's, Hand CNI-1).
// The host side is the network namespace the plugin runs in.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { CniError, ERR } from "./spec.js";

function run(args: string[], input?: string): string {
  try {
    return execFileSync(args[0], args.slice(1), { encoding: "utf8", input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], timeout: 20_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new CniError(ERR.PLUMBING, `${args.join(" ")}: ${(err.stderr || err.message).trim()}`);
  }
}
const ip = (...args: string[]) => run(["ip", ...args]);
/** Commands for `ip -batch` inside the netns at `netns` (one process for all). */
const ipIn = (netns: string, lines: string[]) => run(["nsenter", `--net=${netns}`, "ip", "-batch", "-"], lines.join("\n") + "\n");

/** The host end's name: unique per network + container + interface, at most 15 characters. */
export function hostIfName(network: string, containerId: string, ifname: string): string {
  return "wov" + createHash("sha256").update(`${network}\0${containerId}\0${ifname}`).digest("hex").slice(0, 12);
}

export function linkExists(name: string, netns?: string): boolean {
  try {
    execFileSync(netns ? "nsenter" : "ip", netns ? [`--net=${netns}`, "ip", "link", "show", "dev", name] : ["link", "show", "dev", name], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

interface LinkInfo {
  ifname: string;
  address?: string;
  mtu?: number;
  master?: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}
function linkInfo(name: string, netns?: string): LinkInfo | undefined {
  try {
    const args = ["ip", "-j", "addr", "show", "dev", name];
    const out = execFileSync(netns ? "nsenter" : args[0], netns ? [`--net=${netns}`, ...args] : args.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return (JSON.parse(out) as LinkInfo[])[0];
  } catch {
    return undefined;
  }
}

export function netnsExists(netns: string): boolean {
  return existsSync(netns);
}

export interface Plumbing {
  mode: "routed" | "bridge";
  netns: string;
  ifname: string;
  hostIf: string;
  /** The pod's address and the prefix length it gets (32 in routed mode). */
  address: string;
  prefixLength: number;
  gateway: string;
  mtu: number;
  bridge?: string;
  /** Bridge mode: the bridge's prefix length (the pod CIDR's). */
  bridgePrefixLength?: number;
  /** Dual-stack: the pod's IPv6 address, its prefix length (128 routed, the IPv6 pod
   *  CIDR's in bridge mode) and gateway (routed: ROUTED_GATEWAY6 on the host end;
   *  bridge: the bridge's address). */
  address6?: string;
  prefixLength6?: number;
  gateway6?: string;
}

/** Routed pods' IPv6 gateway: a link-local address on every host end (as Calico's
 *  fe80::ecee:eeff:feee:eeee): the kernel answers neighbour solicitations only for
 *  addresses of the interface they arrive on, unlike ARP. */
export const ROUTED_GATEWAY6 = "fe80::1";

export interface PlumbingResult {
  hostMac: string;
  podMac: string;
  bridgeMac?: string;
}

/** Create and configure the veth pair. On failure, whatever was created is removed and the error thrown. */
export function attach(p: Plumbing): PlumbingResult {
  if (!netnsExists(p.netns)) throw new CniError(ERR.UNKNOWN_CONTAINER, `network namespace ${p.netns} does not exist`);
  if (linkExists(p.ifname, p.netns)) throw new CniError(ERR.ALREADY_ATTACHED, `interface ${p.ifname} already exists in ${p.netns}`);
  let bridgeMac: string | undefined;
  if (p.mode === "bridge") bridgeMac = ensureBridge(p.bridge!, `${p.gateway}/${p.bridgePrefixLength}`, p.mtu);
  ip("link", "add", p.hostIf, "mtu", String(p.mtu), "type", "veth", "peer", "name", p.ifname, "mtu", String(p.mtu), "netns", p.netns);
  try {
    if (p.mode === "bridge") ip("link", "set", p.hostIf, "master", p.bridge!);
    ip("link", "set", p.hostIf, "up");
    // Routed: the node reaches the pod by a /32 on the host end (before the
    // pod speaks: its ARP for the gateway passes reverse-path checks by it).
    if (p.mode === "routed") ip("route", "replace", `${p.address}/32`, "dev", p.hostIf, "scope", "link");
    if (p.address6) attachHost6(p);
    const lines = [`link set lo up`, `addr add ${p.address}/${p.prefixLength} dev ${p.ifname}`, `link set ${p.ifname} up`];
    // A /32 has no subnet: the gateway is made reachable on the link first.
    if (p.mode === "routed") lines.push(`route add ${p.gateway}/32 dev ${p.ifname} scope link`);
    lines.push(`route add default via ${p.gateway} dev ${p.ifname}`);
    // IPv6 without duplicate address detection: usable at once, and ours alone (IPAM).
    if (p.address6) lines.push(`addr add ${p.address6}/${p.prefixLength6} dev ${p.ifname} nodad`, `route add ::/0 via ${p.gateway6} dev ${p.ifname}`);
    ipIn(p.netns, lines);
    const host = linkInfo(p.hostIf);
    const pod = linkInfo(p.ifname, p.netns);
    return { hostMac: host?.address ?? "", podMac: pod?.address ?? "", bridgeMac };
  } catch (e) {
    detach(p.hostIf);
    throw e;
  }
}

function ensureBridge(name: string, addr: string, mtu: number): string {
  if (!linkExists(name)) {
    try {
      ip("link", "add", name, "mtu", String(mtu), "type", "bridge");
    } catch (e) {
      if (!linkExists(name)) throw e; // another ADD made it meanwhile: fine
    }
  }
  const info = linkInfo(name);
  if (!info?.addr_info?.some((a) => a.family === "inet" && `${a.local}/${a.prefixlen}` === addr)) ip("addr", "replace", addr, "dev", name);
  ip("link", "set", name, "up");
  return linkInfo(name)?.address ?? "";
}

/** Remove the veth pair by its host end (its routes go with it). Idempotent. */
export function detach(hostIf: string): void {
  try {
    execFileSync("ip", ["link", "del", hostIf], { stdio: "ignore" });
  } catch {
    // gone already (or its netns went and took the pair with it)
  }
}

/** The host side of a pod's IPv6: routed, the link-local gateway on the host end and
 *  a /128 to the pod; bridge, the gateway address on the bridge. */
function attachHost6(p: Plumbing): void {
  if (p.mode === "bridge") {
    ip("addr", "replace", `${p.gateway6}/${p.prefixLength6}`, "dev", p.bridge!, "nodad");
    return;
  }
  ip("addr", "replace", `${ROUTED_GATEWAY6}/64`, "dev", p.hostIf, "nodad");
  ip("-6", "route", "replace", `${p.address6}/128`, "dev", p.hostIf);
}

/** CHECK: the attachment is as ADD left it; throws CHECK_FAILED naming the difference. */
export function verify(p: Plumbing): void {
  const fail = (why: string) => {
    throw new CniError(ERR.CHECK_FAILED, why);
  };
  if (!netnsExists(p.netns)) throw new CniError(ERR.UNKNOWN_CONTAINER, `network namespace ${p.netns} does not exist`);
  const host = linkInfo(p.hostIf);
  if (!host) fail(`host interface ${p.hostIf} is missing`);
  if (p.mode === "bridge" && host!.master !== p.bridge) fail(`host interface ${p.hostIf} is not on bridge ${p.bridge}`);
  const pod = linkInfo(p.ifname, p.netns);
  if (!pod) fail(`interface ${p.ifname} is missing in ${p.netns}`);
  if (!pod!.addr_info?.some((a) => a.family === "inet" && a.local === p.address && a.prefixlen === p.prefixLength)) {
    fail(`interface ${p.ifname} does not hold ${p.address}/${p.prefixLength}`);
  }
  const routes = run(["nsenter", `--net=${p.netns}`, "ip", "-4", "route", "show", "default"]);
  if (!routes.includes(`via ${p.gateway} dev ${p.ifname}`)) fail(`no default route via ${p.gateway} dev ${p.ifname} in ${p.netns}`);
  if (p.mode === "routed") {
    const r = run(["ip", "-4", "route", "show", `${p.address}/32`]);
    if (!r.includes(`dev ${p.hostIf}`)) fail(`no host route ${p.address}/32 dev ${p.hostIf}`);
  }
  if (!p.address6) return;
  if (!pod!.addr_info?.some((a) => a.family === "inet6" && a.local === p.address6 && a.prefixlen === p.prefixLength6)) {
    fail(`interface ${p.ifname} does not hold ${p.address6}/${p.prefixLength6}`);
  }
  const r6 = run(["nsenter", `--net=${p.netns}`, "ip", "-6", "route", "show", "default"]);
  if (!r6.includes(`via ${p.gateway6} dev ${p.ifname}`)) fail(`no IPv6 default route via ${p.gateway6} dev ${p.ifname} in ${p.netns}`);
}
