// The node plumbing that brings NAT traffic to the data path (issue 4). No
// iptables/nftables rule translates anything: the kernel only steers packets
// into the overlay device (wo0), and the WASM pipeline does the translation.
//
//   pod -> outside (masquerade)   policy routing: `from <podCIDR>` whose only
//                                 main-table match is the default route goes to
//                                 table T (default dev wo0). The same rules make
//                                 strict rp_filter accept the de-NATed replies
//                                 we write into wo0.
//   outside -> node (replies,     tc on the underlay device's clsact ingress:
//   NodePort requests)            u32 on dst = underlay /32, proto, dport in the
//                                 SNAT range or a NodePort -> mirred redirect to
//                                 wo0; ICMP echo reply and errors -> mirred
//                                 mirror (the kernel keeps the original).
//   node's own sockets            net.ipv4.ip_local_reserved_ports gets the SNAT
//                                 range and the NodePorts, so nothing auto-binds
//                                 there and steals (or is stolen) replies. (The
//                                 sysctl covers IPv6 sockets too: one list.)
//   pod -> ClusterIP, hairpin     main-table /32 routes dev wo0 for each
//                                 ClusterIP and for the service-SNAT address.
//
// IPv6 (NatPlan.ipv6, NAT66), the same steering in the IPv6 tables:
//
//   pod -> outside (masquerade)   `ip -6 rule` pair from <ipv6.podCIDR> at the
//                                 same prefs (IPv6 rules are a separate list),
//                                 `ip -6 route default dev wo0 table T` (a
//                                 separate table too). Only with masquerade and
//                                 ipv6.underlayAddress. IPv6 has no rp_filter.
//   outside -> node               tc `protocol ipv6` u32 on the same clsact
//                                 ingress, at their own two prefs (filterPref+2
//                                 and +3: the kernel refuses two protocols at
//                                 one pref): dst = underlay /128, next header
//                                 tcp/udp, dport in the SNAT range or a NodePort
//                                 -> redirect; ICMPv6 echo reply (129) and
//                                 errors (1-4) -> mirror. Never NDP (133-137):
//                                 neighbour discovery stays the node's alone.
//   pod -> ClusterIP, hairpin     main-table /128 routes dev wo0 for each IPv6
//                                 ClusterIP and for ipv6.snatAddress.
// wo0 must have IPv6 enabled (disable_ipv6 = 0) for the IPv6 routes through it.
//
// u32 limits, by construction: every steering filter also requires IHL = 5
// (`match ip dport` reads offset 20, so packets with IP options are NOT
// steered; they go to the node's stack) and, for TCP/UDP, fragment offset 0
// with MF clear (fragments are not steered either: only the first carries the
// ports, and splitting a datagram between wo0 and the stack would break it).
// For IPv6, `match ip6 protocol` tests the fixed header's next header and
// `match ip6 dport` / the ICMPv6 type read offsets 42 / 40, right after the
// fixed header: a packet with any extension header (hop-by-hop, routing,
// fragment, ...) has another next header there and is NOT steered; it goes to
// the node's stack. That covers IPv6 fragments (next header 44) as well.
//
// Everything added is recorded; apply() diffs against that record and
// teardown() removes exactly it. Commands go through an injectable `run`
// (argv -> stdout), so tests can run them inside a namespace.
import { execFileSync } from "node:child_process";
import { ipToU32, maskOf, parseCidr, tryIpToU32, tryParseCidr, u32ToIp } from "../config/net.js";
import { bigintToIpv6, formatCidr6, ipv6ToBigint, parseCidr6, tryParseCidr6, tryParseIpv6 } from "../config/net6.js";
import { RT_PROTO } from "./kernel.js";
import type { NatRecord } from "./state.js";

export class NatSetupError extends Error {}

/** argv (+ stdin, for `tc -batch -`) -> stdout. */
export type Run = (argv: string[], input?: string) => string;

/** Run argv in this process's namespace; throws NatSetupError naming the command and its stderr. */
export function runCommand(argv: string[], input?: string): string {
  try {
    return execFileSync(argv[0], argv.slice(1), { encoding: "utf8", input, stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"], timeout: 10_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new NatSetupError(`${argv.join(" ")}: ${(err.stderr ?? "").trim() || err.message}`);
  }
}

/** The IPv6 half of a plan (NAT66). Addresses and the CIDR are IPv6 text. */
export interface NatPlan6 {
  /** The local IPv6 pod CIDR, e.g. "2001:2:0:1::/64" (masquerade source). */
  podCIDR: string;
  /**
   * The node's IPv6 underlay address (masquerade source, NodePort address).
   * Without it there is no IPv6 masquerade and no IPv6 tc steering, only
   * the ClusterIP and snatAddress routes.
   */
  underlayAddress?: string;
  /** IPv6 source for hairpin and NodePort flows; must not be assigned to any interface. */
  snatAddress: string;
  clusterIPs: string[];
}

export interface NatPlan {
  /** The overlay device (tun), e.g. "wo0". Must exist and be up before apply(). */
  device: string;
  /** Where replies and NodePort requests arrive, e.g. "eth0". */
  underlayDevice: string;
  /** The node's underlay address (masquerade source, NodePort address). */
  underlayAddress: string;
  /** The local pod CIDR, e.g. "198.19.1.0/24". */
  podCIDR: string;
  /** Source for hairpin and NodePort flows; must not be assigned to any interface. */
  snatAddress: string;
  /** SNAT source port range, inclusive (default 61000-65535); the same for IPv6. */
  portMin: number;
  portMax: number;
  /** Route pod traffic that would leave by the default route into the device (both families). */
  masquerade: boolean;
  /** NodePorts, on the IPv4 and (with ipv6.underlayAddress) the IPv6 underlay address. */
  nodePorts: { port: number; protocol: "tcp" | "udp" }[];
  clusterIPs: string[];
  /** Routing table holding `default dev <device>` (default 4789); the IPv6 table of the same number for IPv6. */
  table: number;
  /** Preference of the first ip rule; the second is rulePref + 1 (default 4789); the same in the IPv6 rule list. */
  rulePref: number;
  /**
   * tc filter preference on the underlay ingress (default 4789). overlayd
   * owns this pref and the next three: IPv4 filters at filterPref and +1,
   * IPv6 filters at +2 and +3 (the kernel refuses two protocols at one pref).
   * A changed filter set of a family is built at the other pref of its pair,
   * then the old is deleted, so steering never has a gap.
   */
  filterPref?: number;
  /** NAT66: the same steering for the IPv6 pod CIDR, ClusterIPs and underlay address. */
  ipv6?: NatPlan6;
}

export const NAT_DEFAULTS = { portMin: 61000, portMax: 65535, table: 4789, rulePref: 4789, filterPref: 4789 } as const;

/** Offset of the IPv6 filter pair from filterPref. */
export const IPV6_FILTER_PREF_OFFSET = 2;

const RESERVED_PORTS = "net.ipv4.ip_local_reserved_ports";
const PROTO = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 } as const;
/** ICMP types copied to the data path: echo reply, unreachable, time exceeded, parameter problem. */
export const MIRRORED_ICMP_TYPES = [0, 3, 11, 12] as const;
/**
 * ICMPv6 types copied to the data path: echo reply, and the errors
 * (unreachable, packet too big, time exceeded, parameter problem). Never
 * neighbour discovery (133-137): it is the node's, and must stay only the node's.
 */
export const MIRRORED_ICMPV6_TYPES = [129, 1, 2, 3, 4] as const;

type Family = 4 | 6;

/** `ip` for a family: IPv4 commands stay exactly as they were (`ip ...`), IPv6 ones are `ip -6 ...`. */
const ip = (family: Family, ...args: string[]): string[] => (family === 6 ? ["ip", "-6", ...args] : ["ip", ...args]);

/** RFC 5952 text of an IPv6 address (as `ip` prints it). */
const canon6 = (a: string): string => bigintToIpv6(ipv6ToBigint(a));

export interface PortBlock {
  value: number;
  mask: number;
}

/**
 * The inclusive port range [min, max] as the fewest aligned value/mask blocks
 * (each block covers `port & mask === value`), in ascending order. This is
 * what u32 needs, having no range match. Throws RangeError unless
 * 0 <= min <= max <= 65535. At most 30 blocks (2 * 16 - 2).
 */
export function portRangeBlocks(min: number, max: number): PortBlock[] {
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 0 || max > 65535 || min > max) {
    throw new RangeError(`port range ${min}-${max} is not within 0-65535 with min <= max`);
  }
  const out: PortBlock[] = [];
  let p = min;
  while (p <= max) {
    // Largest power-of-two block aligned at p that does not pass max.
    let size = p === 0 ? 65536 : p & -p;
    while (p + size - 1 > max) size >>= 1;
    out.push({ value: p, mask: (0xffff & ~(size - 1)) >>> 0 });
    p += size;
  }
  return out;
}

/** "30080,61000-65535" (the kernel's format) -> a 65536-entry membership map. Throws on junk. */
export function parsePortList(text: string): Uint8Array {
  const set = new Uint8Array(65536);
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2] ?? m[1]) : NaN;
    if (!(lo <= hi && hi <= 65535)) throw new NatSetupError(`${RESERVED_PORTS}: cannot parse "${part}" in "${text}"`);
    set.fill(1, lo, hi + 1);
  }
  return set;
}

/** Membership map -> "30080,61000-65535" (ascending, ranges collapsed; "" when empty). */
export function formatPortList(set: Uint8Array): string {
  const parts: string[] = [];
  for (let p = 0; p < 65536; p++) {
    if (!set[p]) continue;
    let q = p;
    while (q + 1 < 65536 && set[q + 1]) q++;
    parts.push(p === q ? String(p) : `${p}-${q}`);
    p = q;
  }
  return parts.join(",");
}

/** One steering filter: its u32 match/action words after `... protocol ip` (or `protocol ipv6`). */
export interface SteerFilter {
  /** Human key, stable across applies: "udp 61000/0xfff8", "tcp 30080", "icmp type 3" (IPv6: "udp6 ...", "icmp6 type 129"). */
  key: string;
  args: string[];
}

/**
 * The u32 filters for a plan, in install order: the SNAT range (both
 * protocols), then each NodePort, then the mirrored ICMP types. Pure.
 */
export function steeringFilters(plan: Pick<NatPlan, "device" | "underlayAddress" | "portMin" | "portMax" | "nodePorts">): SteerFilter[] {
  const base = (proto: number) => ["u32", "match", "u8", "5", "0x0f", "at", "0", "match", "ip", "dst", `${plan.underlayAddress}/32`, "match", "ip", "protocol", String(proto), "0xff"];
  const noFrag = ["match", "u16", "0", "0x3fff", "at", "6"];
  const redirect = ["action", "mirred", "egress", "redirect", "dev", plan.device];
  const out: SteerFilter[] = [];
  for (const proto of ["tcp", "udp"] as const) {
    for (const b of portRangeBlocks(plan.portMin, plan.portMax)) {
      out.push({
        key: `${proto} ${b.value}/0x${b.mask.toString(16)}`,
        args: [...base(PROTO[proto]), ...noFrag, "match", "ip", "dport", String(b.value), `0x${b.mask.toString(16)}`, ...redirect],
      });
    }
  }
  for (const np of uniqueNodePorts(plan.nodePorts)) {
    out.push({ key: `${np.protocol} ${np.port}`, args: [...base(PROTO[np.protocol]), ...noFrag, "match", "ip", "dport", String(np.port), "0xffff", ...redirect] });
  }
  for (const t of MIRRORED_ICMP_TYPES) {
    out.push({ key: `icmp type ${t}`, args: [...base(PROTO.icmp), "match", "u8", String(t), "0xff", "at", "20", "action", "mirred", "egress", "mirror", "dev", plan.device] });
  }
  return out;
}

/**
 * The IPv6 u32 filters (after `protocol ipv6`) for the IPv6 underlay address
 * `underlayAddress`, in the order of steeringFilters: SNAT range blocks (tcp,
 * udp), NodePorts, mirrored ICMPv6 types. `match ip6 protocol` is the fixed
 * header's next header, so only packets whose TCP/UDP/ICMPv6 header follows
 * the fixed header at offset 40 match (see the file comment). Pure.
 */
export function steeringFilters6(plan: Pick<NatPlan, "device" | "portMin" | "portMax" | "nodePorts">, underlayAddress: string): SteerFilter[] {
  const base = (proto: number) => ["u32", "match", "ip6", "dst", `${canon6(underlayAddress)}/128`, "match", "ip6", "protocol", String(proto), "0xff"];
  const redirect = ["action", "mirred", "egress", "redirect", "dev", plan.device];
  const out: SteerFilter[] = [];
  for (const proto of ["tcp", "udp"] as const) {
    for (const b of portRangeBlocks(plan.portMin, plan.portMax)) {
      out.push({
        key: `${proto}6 ${b.value}/0x${b.mask.toString(16)}`,
        args: [...base(PROTO[proto]), "match", "ip6", "dport", String(b.value), `0x${b.mask.toString(16)}`, ...redirect],
      });
    }
  }
  for (const np of uniqueNodePorts(plan.nodePorts)) {
    out.push({ key: `${np.protocol}6 ${np.port}`, args: [...base(PROTO[np.protocol]), "match", "ip6", "dport", String(np.port), "0xffff", ...redirect] });
  }
  for (const t of MIRRORED_ICMPV6_TYPES) {
    out.push({ key: `icmp6 type ${t}`, args: [...base(PROTO.icmpv6), "match", "u8", String(t), "0xff", "at", "40", "action", "mirred", "egress", "mirror", "dev", plan.device] });
  }
  return out;
}

function uniqueNodePorts(nps: NatPlan["nodePorts"]): NatPlan["nodePorts"] {
  const seen = new Map<string, NatPlan["nodePorts"][number]>();
  for (const np of nps) seen.set(`${np.protocol}/${np.port}`, np);
  return [...seen.values()].sort((a, b) => a.protocol.localeCompare(b.protocol) || a.port - b.port);
}

/** Throws NatSetupError naming the first bad field. */
export function validateNatPlan(plan: NatPlan): void {
  const bad = (field: string, why: string): never => {
    throw new NatSetupError(`nat plan: ${field}: ${why}`);
  };
  for (const f of ["underlayAddress", "snatAddress"] as const) {
    const r = tryIpToU32(plan[f]);
    if (!r.ok) bad(f, r.reason);
  }
  const pod = tryParseCidr(plan.podCIDR);
  if (!pod.ok) bad("podCIDR", pod.reason);
  plan.clusterIPs.forEach((c, i) => {
    const r = tryIpToU32(c);
    if (!r.ok) bad(`clusterIPs[${i}]`, r.reason);
  });
  const port = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!port(plan.portMin) || !port(plan.portMax) || plan.portMin > plan.portMax) bad("portMin/portMax", `${plan.portMin}-${plan.portMax} is not a port range within 1-65535`);
  plan.nodePorts.forEach((np, i) => {
    if (!port(np.port)) bad(`nodePorts[${i}].port`, `${np.port} is not a port`);
    if (np.protocol !== "tcp" && np.protocol !== "udp") bad(`nodePorts[${i}].protocol`, `${String(np.protocol)} is not tcp or udp`);
    if (np.port >= plan.portMin && np.port <= plan.portMax) bad(`nodePorts[${i}].port`, `${np.port} lies inside the SNAT port range ${plan.portMin}-${plan.portMax}`);
  });
  if (!Number.isInteger(plan.table) || plan.table < 1 || plan.table > 0xfffffffe || [253, 254, 255].includes(plan.table)) bad("table", `${plan.table} is not a free routing table id`);
  if (!Number.isInteger(plan.rulePref) || plan.rulePref < 1 || plan.rulePref + 1 >= 32766) bad("rulePref", `${plan.rulePref}: both rulePref and rulePref+1 must be in 1-32765 (before the main table's rule)`);
  const fp = plan.filterPref ?? NAT_DEFAULTS.filterPref;
  if (!Number.isInteger(fp) || fp < 1 || fp + 3 > 0xffff) bad("filterPref", `${fp}: filterPref to filterPref+3 (IPv4 and IPv6 pairs) must be in 1-65535`);
  if (!/^[^\s/]{1,15}$/.test(plan.device)) bad("device", `"${plan.device}" is not an interface name`);
  if (!/^[^\s/]{1,15}$/.test(plan.underlayDevice)) bad("underlayDevice", `"${plan.underlayDevice}" is not an interface name`);
  if (plan.ipv6 === undefined) return;
  const v6 = plan.ipv6;
  if (typeof v6 !== "object" || v6 === null) bad("ipv6", "is not an object");
  const addr6 = (field: string, text: unknown) => {
    const r = tryParseIpv6(text as string);
    if (!r.ok) bad(field, r.detail ? `${r.reason}: ${r.detail}` : r.reason);
  };
  const pod6 = tryParseCidr6(v6.podCIDR);
  if (!pod6.ok) bad("ipv6.podCIDR", pod6.detail ? `${pod6.reason}: ${pod6.detail}` : pod6.reason);
  if (v6.underlayAddress !== undefined) addr6("ipv6.underlayAddress", v6.underlayAddress);
  addr6("ipv6.snatAddress", v6.snatAddress);
  if (!Array.isArray(v6.clusterIPs)) bad("ipv6.clusterIPs", "is not a list");
  v6.clusterIPs.forEach((c, i) => addr6(`ipv6.clusterIPs[${i}]`, c));
}

interface RuleSpec {
  family: Family;
  pref: number;
  args: string[]; // after `pref N`
}

interface TableRoute {
  table: number;
  dev: string;
}

/** One family's filter set on the underlay ingress. */
interface FilterSet {
  /** Our two prefs are basePref and basePref + 1; `pref` is the active one. */
  basePref: number;
  pref: number;
  /** What it holds (keys + target name; "" until installed), and the target's ifindex. */
  keys: string;
  targetIfindex: number;
  filterKeys: string[];
}

interface TcState {
  dev: string;
  /** We added the clsact qdisc (so teardown may remove it, if nothing else hangs off it). */
  createdQdisc: boolean;
  /** IPv4 (`protocol ip`) and IPv6 (`protocol ipv6`) filter sets, each at its own pref pair. */
  sets: Map<Family, FilterSet>;
}

/** What NodeNat has in place right now (for status output and tests). */
export interface NatInstalled {
  rules: string[];
  tableRoute?: string;
  tableRoute6?: string;
  routes: string[];
  tc?: { dev: string; pref: number; createdQdisc: boolean; filters: string[]; pref6?: number; filters6?: string[] };
  reservedPortsAdded: string;
}

/**
 * The NAT steering of one node. apply() is idempotent and diffs against what
 * this instance installed last; teardown() removes exactly that, tolerating
 * pieces already gone (a deleted device takes its routes and the filters'
 * target with it). Neither leaves a half-state silently: apply() throws
 * NatSetupError naming the failing command and its stderr, after which a
 * teardown() still removes whatever got in.
 */
export class NodeNat {
  private rules: RuleSpec[] = [];
  private tableRoutes = new Map<Family, TableRoute>();
  private routes = new Map<string, string>(); // "a.b.c.d/32" or "x::y/128" -> dev
  private tc?: TcState;
  private reservedAdded = new Uint8Array(65536);
  private deviceIfindex?: number;

  constructor(private readonly run: Run = runCommand) {}

  apply(plan: NatPlan): void {
    validateNatPlan(plan);
    const dev = this.ifindex(plan.device); // fails here, plainly, when the device is not there yet
    this.ifindex(plan.underlayDevice);
    if (this.deviceIfindex !== undefined && this.deviceIfindex !== dev) {
      // The device was recreated (daemon restart of the tun): routes through
      // it died with the old one, and the filters' mirred target is stale.
      this.tableRoutes.clear();
      this.routes.clear();
    }
    this.deviceIfindex = dev;
    this.checkSnatAddressUnassigned(4, plan.snatAddress);
    if (plan.ipv6) {
      this.checkSnatAddressUnassigned(6, plan.ipv6.snatAddress);
      this.checkIpv6Enabled(plan.device);
    }
    this.syncRules(plan);
    this.syncRoutes(plan);
    this.syncReservedPorts(plan);
    this.syncTc(plan);
  }

  teardown(): void {
    const errors: string[] = [];
    const quiet = (f: () => void) => {
      try {
        f();
      } catch (e) {
        const msg = (e as Error).message;
        if (!GONE.test(msg)) errors.push(msg);
      }
    };
    quiet(() => this.removeTc());
    quiet(() => this.writeReservedPorts(new Uint8Array(65536)));
    for (const [dst, dev] of this.routes) quiet(() => this.run(ip(familyOf(dst), "route", "del", dst, "dev", dev, "table", "main")));
    this.routes.clear();
    for (const family of [4, 6] as const) quiet(() => this.setRules(family, [], undefined));
    this.deviceIfindex = undefined;
    if (errors.length) throw new NatSetupError(`NAT teardown left things behind:\n  ${errors.join("\n  ")}`);
  }

  installed(): NatInstalled {
    const tr = (family: Family) => {
      const t = this.tableRoutes.get(family);
      return t && `default dev ${t.dev} table ${t.table}`;
    };
    const v4 = this.tc?.sets.get(4);
    const v6 = this.tc?.sets.get(6);
    return {
      rules: this.rules.map((r) => `${r.family === 6 ? "-6 " : ""}${r.pref}: ${r.args.join(" ")}`),
      tableRoute: tr(4),
      tableRoute6: tr(6),
      routes: [...this.routes.keys()],
      tc: this.tc && {
        dev: this.tc.dev,
        pref: v4?.pref ?? -1,
        createdQdisc: this.tc.createdQdisc,
        filters: [...(v4?.filterKeys ?? [])],
        ...(v6 && { pref6: v6.pref, filters6: [...v6.filterKeys] }),
      },
      reservedPortsAdded: formatPortList(this.reservedAdded),
    };
  }

  /** What is installed, for the install record (src/daemon/state.ts): enough to remove it after a crash. */
  record(): NatRecord {
    const t4 = this.tableRoutes.get(4);
    const t6 = this.tableRoutes.get(6);
    return {
      rules: this.rules.map((r) => ({ pref: r.pref, args: [...r.args], family: r.family })),
      tableRoute: t4 && { ...t4 },
      ...(t6 && { tableRoute6: { ...t6 } }),
      routes: [...this.routes].map(([dst, dev]) => ({ dst, dev })),
      tc: this.tc && { dev: this.tc.dev, prefs: [...this.tc.sets.values()].flatMap((s) => [s.basePref, s.basePref + 1]), createdQdisc: this.tc.createdQdisc },
      reservedPortsAdded: formatPortList(this.reservedAdded),
    };
  }

  /**
   * Remove what a dead instance left, as its record says (`rec`) or, for what
   * the record does not name, by overlayd's markers: ip rules (IPv4 and IPv6)
   * at `rulePref` and `rulePref + 1`, `proto 79` routes in `table` (both
   * families), tc filters at `filterPref` to `filterPref + 3` on
   * `underlayDevice`'s ingress. The IPv6 main-table /128 routes come from the
   * record only (they are on the overlay device, which reclaim deletes, taking
   * them along). A record written before IPv6 (rules without `family`, no
   * `tableRoute6`) reads as IPv4. Returns what it removed, one line each;
   * throws NatSetupError for what it could not.
   */
  static reclaim(run: Run, rec: NatRecord | undefined, marks: { rulePref: number; table: number; filterPref?: number; underlayDevice?: string }): string[] {
    const done: string[] = [];
    const errors: string[] = [];
    const attempt = (what: string, f: () => void) => {
      try {
        f();
        done.push(what);
      } catch (e) {
        if (!GONE.test((e as Error).message)) errors.push((e as Error).message);
      }
    };
    const recFamily = (f: number | undefined): Family => (f === 6 ? 6 : 4);
    for (const family of [4, 6] as const) {
      const tag = family === 6 ? "ip -6 rule" : "ip rule";
      const rulePrefs = new Set([marks.rulePref, marks.rulePref + 1, ...(rec?.rules.filter((r) => recFamily(r.family) === family).map((r) => r.pref) ?? [])]);
      for (const pref of rulePrefs) {
        let rules: JsonRule[] = [];
        try {
          rules = JSON.parse(run(ip(family, "-json", "rule", "show", "pref", String(pref))) || "[]") as JsonRule[];
        } catch {
          continue;
        }
        for (const _ of rules) attempt(`${tag} pref ${pref}`, () => run(ip(family, "rule", "del", "pref", String(pref))));
      }
      const recTable = family === 6 ? rec?.tableRoute6 : rec?.tableRoute;
      for (const table of new Set([marks.table, ...(recTable ? [recTable.table] : [])])) {
        let routes: { dst: string; dev?: string }[] = [];
        try {
          routes = JSON.parse(run(ip(family, "-json", "route", "show", "table", String(table), "proto", String(RT_PROTO))) || "[]") as { dst: string }[];
        } catch {
          continue; // table does not exist
        }
        for (const r of routes) attempt(`${family === 6 ? "ip -6 " : ""}route ${r.dst} table ${table}`, () => run(ip(family, "route", "del", r.dst, "table", String(table), "proto", String(RT_PROTO))));
      }
    }
    // IPv4 main-table routes are reclaim.ts's (every `proto 79` route on the
    // device or in the install record); the IPv6 ones are removed here.
    for (const r of rec?.routes ?? []) {
      if (familyOf(r.dst) !== 6) continue;
      attempt(`ip -6 route ${r.dst} dev ${r.dev}`, () => run(ip(6, "route", "del", r.dst, "dev", r.dev, "table", "main", "proto", String(RT_PROTO))));
    }
    const tcs = new Map<string, { prefs: Set<number>; createdQdisc: boolean }>();
    const fp = marks.filterPref ?? NAT_DEFAULTS.filterPref;
    if (marks.underlayDevice) tcs.set(marks.underlayDevice, { prefs: new Set([fp, fp + 1, fp + IPV6_FILTER_PREF_OFFSET, fp + IPV6_FILTER_PREF_OFFSET + 1]), createdQdisc: false });
    if (rec?.tc) {
      const t = tcs.get(rec.tc.dev) ?? { prefs: new Set<number>(), createdQdisc: false };
      for (const p of rec.tc.prefs) t.prefs.add(p);
      t.createdQdisc ||= rec.tc.createdQdisc;
      tcs.set(rec.tc.dev, t);
    }
    for (const [dev, t] of tcs) {
      let filters: unknown[];
      try {
        filters = JSON.parse(run(["tc", "-json", "filter", "show", "dev", dev, "ingress"]) || "[]") as unknown[];
      } catch {
        continue; // no such device or no clsact
      }
      for (const p of t.prefs) {
        if ((filters as { pref?: number }[]).some((f) => f.pref === p)) attempt(`tc filter ${dev} ingress pref ${p}`, () => run(["tc", "filter", "del", "dev", dev, "ingress", "pref", String(p)]));
      }
      if (t.createdQdisc) {
        const left = (run(["tc", "filter", "show", "dev", dev, "ingress"]) + run(["tc", "filter", "show", "dev", dev, "egress"])).trim();
        if (!left) attempt(`tc qdisc clsact ${dev}`, () => run(["tc", "qdisc", "del", "dev", dev, "clsact"]));
      }
    }
    if (rec?.reservedPortsAdded) {
      attempt(`reserved ports ${rec.reservedPortsAdded}`, () => {
        const drop = parsePortList(rec.reservedPortsAdded);
        const cur = parsePortList(run(["sysctl", "-n", RESERVED_PORTS]).trim());
        const next = cur.map((v, p) => (drop[p] ? 0 : v));
        const text = formatPortList(next);
        if (text !== formatPortList(cur)) run(["sysctl", "-qw", `${RESERVED_PORTS}=${text}`]);
      });
    }
    if (errors.length) throw new NatSetupError(`NAT leftovers not removed:\n  ${errors.join("\n  ")}`);
    return done;
  }

  // --- masquerade: policy routing -------------------------------------------

  private syncRules(plan: NatPlan): void {
    const pair = (family: Family, podCIDR: string): RuleSpec[] => [
      { family, pref: plan.rulePref, args: ["from", podCIDR, "lookup", "main", "suppress_prefixlength", "0"] },
      { family, pref: plan.rulePref + 1, args: ["from", podCIDR, "lookup", String(plan.table)] },
    ];
    const tableRoute = { table: plan.table, dev: plan.device };
    this.setRules(4, plan.masquerade ? pair(4, plan.podCIDR) : [], plan.masquerade ? tableRoute : undefined);
    const v6 = plan.masquerade && plan.ipv6?.underlayAddress !== undefined ? plan.ipv6 : undefined;
    this.setRules(6, v6 ? pair(6, formatCidr6(parseCidr6(v6.podCIDR))) : [], v6 ? tableRoute : undefined);
  }

  /** Make `family`'s rules and table route what is wanted (the other family's are not touched). */
  private setRules(family: Family, want: RuleSpec[], tableRoute: TableRoute | undefined): void {
    const same = (a: RuleSpec, b: RuleSpec) => a.family === b.family && a.pref === b.pref && a.args.join(" ") === b.args.join(" ");
    // Route first, rules after: until table T has its default route, the
    // second rule finds nothing there and pod traffic falls through to main
    // and leaves untranslated.
    const old = this.tableRoutes.get(family);
    if (tableRoute && (old?.table !== tableRoute.table || old.dev !== tableRoute.dev)) {
      this.run(ip(family, "route", "replace", "default", "dev", tableRoute.dev, "table", String(tableRoute.table), "proto", String(RT_PROTO)));
      this.tableRoutes.set(family, tableRoute);
    }
    for (const r of want) {
      if (this.rules.some((h) => same(h, r))) continue;
      if (!this.ruleExists(r)) this.run(ip(family, "rule", "add", "pref", String(r.pref), ...r.args));
      this.rules.push(r);
    }
    for (const r of [...this.rules]) {
      if (r.family !== family || want.some((w) => same(w, r))) continue;
      try {
        this.run(ip(family, "rule", "del", "pref", String(r.pref), ...r.args));
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
      this.rules = this.rules.filter((h) => h !== r);
    }
    if (old && (old.table !== tableRoute?.table || old.dev !== tableRoute?.dev)) {
      if (!tableRoute) this.tableRoutes.delete(family);
      try {
        this.run(ip(family, "route", "del", "default", "dev", old.dev, "table", String(old.table)));
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
    }
  }

  /** Whether this exact rule is already there (left by a previous run that died): adopt it, do not duplicate it. */
  private ruleExists(r: RuleSpec): boolean {
    const rules = JSON.parse(this.run(ip(r.family, "-json", "rule", "show", "pref", String(r.pref))) || "[]") as JsonRule[];
    return rules.some((j) => sameRule(j, r));
  }

  // --- ClusterIP and service-SNAT routes ------------------------------------

  private syncRoutes(plan: NatPlan): void {
    const want = new Map<string, string>();
    for (const a of [...plan.clusterIPs, plan.snatAddress]) want.set(`${u32ToIp(ipToU32(a))}/32`, plan.device);
    if (plan.ipv6) for (const a of [...plan.ipv6.clusterIPs, plan.ipv6.snatAddress]) want.set(`${canon6(a)}/128`, plan.device);
    for (const [dst, dev] of [...this.routes]) {
      if (want.get(dst) === dev) continue;
      try {
        this.run(ip(familyOf(dst), "route", "del", dst, "dev", dev, "table", "main"));
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
      this.routes.delete(dst);
    }
    for (const [dst, dev] of want) {
      if (this.routes.get(dst) === dev) continue;
      this.run(ip(familyOf(dst), "route", "replace", dst, "dev", dev, "table", "main", "proto", String(RT_PROTO)));
      this.routes.set(dst, dev);
    }
  }

  private checkSnatAddressUnassigned(family: Family, addr: string): void {
    const field = family === 6 ? "ipv6.snatAddress" : "snatAddress";
    const argv = family === 6 ? ["ip", "-json", "-6", "addr", "show", "to", `${canon6(addr)}/128`] : ["ip", "-json", "-4", "addr", "show", "to", `${addr}/32`];
    const links = JSON.parse(this.run(argv) || "[]") as { ifname: string }[];
    const dev = links[0]?.ifname;
    if (dev) {
      throw new NatSetupError(
        `nat plan: ${field}: ${addr} is assigned to ${dev}; the service-SNAT address must be on no interface (its replies have to be routed into the overlay device, and a local address is delivered to the node's own stack first)`,
      );
    }
  }

  /** The IPv6 routes through the device need IPv6 on it (the kernel says "IPv6 is disabled on nexthop device" otherwise). */
  private checkIpv6Enabled(device: string): void {
    let off: string;
    try {
      off = this.run(["sysctl", "-n", `net.ipv6.conf.${device}.disable_ipv6`]).trim();
    } catch (e) {
      throw new NatSetupError(`nat plan: ipv6: cannot read IPv6 state of ${device} (${(e as Error).message})`);
    }
    if (off !== "0") throw new NatSetupError(`nat plan: ipv6: IPv6 is disabled on ${device} (net.ipv6.conf.${device}.disable_ipv6 = ${off}); its IPv6 routes need it enabled`);
  }

  // --- reserved ports ---------------------------------------------------------

  private syncReservedPorts(plan: NatPlan): void {
    const want = new Uint8Array(65536);
    want.fill(1, plan.portMin, plan.portMax + 1);
    for (const np of plan.nodePorts) want[np.port] = 1;
    this.writeReservedPorts(want);
  }

  /**
   * Make the sysctl hold `want` on top of whatever others reserved: ports we
   * added and no longer want are removed, ports that were reserved before us
   * stay reserved when we let go of them.
   */
  private writeReservedPorts(want: Uint8Array): void {
    const before = this.run(["sysctl", "-n", RESERVED_PORTS]).trim();
    const cur = parsePortList(before);
    const next = cur.slice();
    for (let p = 0; p < 65536; p++) {
      if (this.reservedAdded[p] && !want[p]) {
        next[p] = 0;
        this.reservedAdded[p] = 0;
      }
      if (want[p] && !cur[p]) {
        next[p] = 1;
        this.reservedAdded[p] = 1;
      }
    }
    const text = formatPortList(next);
    if (text !== formatPortList(cur)) this.run(["sysctl", "-qw", `${RESERVED_PORTS}=${text}`]);
  }

  // --- tc steering ------------------------------------------------------------

  /**
   * Each family's filter set lives at its own pref pair (IPv4 at filterPref,
   * IPv6 at filterPref + 2) and is swapped make-before-break within it; an
   * unchanged family is not touched when the other changes.
   */
  private syncTc(plan: NatPlan): void {
    const fp = plan.filterPref ?? NAT_DEFAULTS.filterPref;
    const v6addr = plan.ipv6?.underlayAddress;
    const want = new Map<Family, { basePref: number; filters: SteerFilter[] }>([[4, { basePref: fp, filters: steeringFilters(plan) }]]);
    if (v6addr !== undefined) want.set(6, { basePref: fp + IPV6_FILTER_PREF_OFFSET, filters: steeringFilters6(plan, v6addr) });
    const ifindex = this.ifindex(plan.device);
    if (this.tc && this.tc.dev !== plan.underlayDevice) this.removeTc();
    if (!this.tc) {
      const createdQdisc = !this.hasIngressQdisc(plan.underlayDevice);
      if (createdQdisc) this.run(["tc", "qdisc", "add", "dev", plan.underlayDevice, "clsact"]);
      this.tc = { dev: plan.underlayDevice, createdQdisc, sets: new Map() };
    }
    const tc = this.tc;
    // A family no longer wanted (or whose pair moved) goes first.
    for (const [family, set] of [...tc.sets]) {
      if (want.get(family)?.basePref === set.basePref) continue;
      for (const p of [set.basePref, set.basePref + 1]) this.delFilterPref(tc.dev, p);
      tc.sets.delete(family);
    }
    for (const [family, w] of want) {
      const keys = w.filters.map((f) => f.key).join("|") + `|to ${plan.device}`;
      let set = tc.sets.get(family);
      if (set && set.keys === keys && set.targetIfindex === ifindex) continue;
      let pref = w.basePref;
      const fresh = !set;
      if (!set) {
        // Our two prefs are ours alone; anything there is left from a run that died.
        for (const p of [w.basePref, w.basePref + 1]) this.delFilterPref(tc.dev, p);
        set = { basePref: w.basePref, pref, keys: "", targetIfindex: -1, filterKeys: [] };
        tc.sets.set(family, set);
      } else {
        pref = set.pref === w.basePref ? w.basePref + 1 : w.basePref;
      }
      const prev = { ...set };
      // Make before break: the new set goes in at the other pref, then the old
      // pref is deleted, so no packet of a running flow falls to the node's stack.
      Object.assign(set, { pref, keys: "", targetIfindex: ifindex });
      try {
        // One `tc -batch` for the whole set (it stops at the first failure).
        const proto = family === 6 ? "ipv6" : "ip";
        const lines = w.filters.map((f) => ["filter", "add", "dev", tc.dev, "ingress", "pref", String(pref), "protocol", proto, ...f.args].join(" "));
        this.run(["tc", "-batch", "-"], lines.join("\n") + "\n");
      } catch (e) {
        this.delFilterPref(tc.dev, pref);
        if (fresh) tc.sets.delete(family);
        else Object.assign(set, prev);
        throw e;
      }
      if (!fresh && prev.pref !== pref) this.delFilterPref(tc.dev, prev.pref);
      set.keys = keys;
      set.filterKeys = w.filters.map((f) => f.key);
    }
  }

  /** Remove our filters (both families) and the clsact qdisc if we created it and nothing else uses it. */
  private removeTc(): void {
    const tc = this.tc;
    if (!tc) return;
    for (const set of tc.sets.values()) for (const p of [set.basePref, set.basePref + 1]) this.delFilterPref(tc.dev, p);
    this.tc = undefined;
    if (tc.createdQdisc && this.linkExists(tc.dev)) {
      const others = this.run(["tc", "filter", "show", "dev", tc.dev, "ingress"]) + this.run(["tc", "filter", "show", "dev", tc.dev, "egress"]);
      if (!others.trim()) {
        try {
          this.run(["tc", "qdisc", "del", "dev", tc.dev, "clsact"]);
        } catch (e) {
          if (!GONE.test((e as Error).message)) throw e;
        }
      }
    }
  }

  private delFilterPref(dev: string, pref: number): void {
    try {
      this.run(["tc", "filter", "del", "dev", dev, "ingress", "pref", String(pref)]);
    } catch (e) {
      if (!GONE.test((e as Error).message)) throw e;
    }
  }

  private hasIngressQdisc(dev: string): boolean {
    const qdiscs = JSON.parse(this.run(["tc", "-json", "qdisc", "show", "dev", dev]) || "[]") as { kind: string; handle: string }[];
    return qdiscs.some((q) => (q.kind === "clsact" || q.kind === "ingress") && q.handle === "ffff:");
  }

  private linkExists(dev: string): boolean {
    try {
      this.run(["ip", "-json", "link", "show", "dev", dev]);
      return true;
    } catch {
      return false;
    }
  }

  private ifindex(dev: string): number {
    const out = this.run(["ip", "-json", "link", "show", "dev", dev]);
    const ifindex = (JSON.parse(out || "[]") as { ifindex?: number }[])[0]?.ifindex;
    if (ifindex === undefined) throw new NatSetupError(`ip -json link show dev ${dev}: unexpected output ${JSON.stringify(out.slice(0, 80))}`);
    return ifindex;
  }
}

/** The family of a route destination ("a.b.c.d/32" or "x::y/128"). */
function familyOf(dst: string): Family {
  return dst.includes(":") ? 6 : 4;
}

interface JsonRule {
  priority?: number;
  src?: string;
  srclen?: number;
  table?: string;
  suppress_prefixlen?: number;
}

/** Whether `ip -json rule` entry `j` is our rule `r` (from CIDR lookup T [suppress_prefixlength N]). */
function sameRule(j: JsonRule, r: RuleSpec): boolean {
  const a = r.args;
  const from = a[a.indexOf("from") + 1];
  const table = a[a.indexOf("lookup") + 1];
  const sp = a.includes("suppress_prefixlength") ? Number(a[a.indexOf("suppress_prefixlength") + 1]) : undefined;
  return j.priority === r.pref && `${j.src}/${j.srclen}` === from && j.table === table && j.suppress_prefixlen === sp;
}

/** stderr of a delete whose target is already gone (rule, route, filter pref, device). */
const GONE = /No such (file or directory|process|device)|Cannot find device|Cannot find specified filter chain|not found|does not exist|Invalid handle|FIB table does not exist/i;

/** podCIDR network address + n, e.g. ("198.19.1.0/24", 1) -> "198.19.1.1" (throws if outside the CIDR). */
export function podCidrAddress(podCIDR: string, n: number): string {
  const c = parseCidr(podCIDR);
  const a = (c.prefix + n) >>> 0;
  if (((a & maskOf(c.len)) >>> 0) !== c.prefix) throw new RangeError(`${podCIDR} has no address at offset ${n}`);
  return u32ToIp(a);
}
