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
//                                 there and steals (or is stolen) replies.
//   pod -> ClusterIP, hairpin     main-table /32 routes dev wo0 for each
//                                 ClusterIP and for the service-SNAT address.
//
// u32 limits, by construction: every steering filter also requires IHL = 5
// (`match ip dport` reads offset 20, so packets with IP options are NOT
// steered; they go to the node's stack) and, for TCP/UDP, fragment offset 0
// with MF clear (fragments are not steered either: only the first carries the
// ports, and splitting a datagram between wo0 and the stack would break it).
//
// Everything added is recorded; apply() diffs against that record and
// teardown() removes exactly it. Commands go through an injectable `run`
// (argv -> stdout), so tests can run them inside a namespace.
import { execFileSync } from "node:child_process";
import { ipToU32, maskOf, parseCidr, tryIpToU32, tryParseCidr, u32ToIp } from "../config/net.js";
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
  /** SNAT source port range, inclusive (default 61000-65535). */
  portMin: number;
  portMax: number;
  /** Route pod traffic that would leave by the default route into the device. */
  masquerade: boolean;
  nodePorts: { port: number; protocol: "tcp" | "udp" }[];
  clusterIPs: string[];
  /** Routing table holding `default dev <device>` (default 4789). */
  table: number;
  /** Preference of the first ip rule; the second is rulePref + 1 (default 4789). */
  rulePref: number;
  /**
   * tc filter preference on the underlay ingress (default 4789). overlayd
   * owns this pref and the next one: a changed filter set is built at the
   * other one, then the old is deleted, so steering never has a gap.
   */
  filterPref?: number;
}

export const NAT_DEFAULTS = { portMin: 61000, portMax: 65535, table: 4789, rulePref: 4789, filterPref: 4789 } as const;

const RESERVED_PORTS = "net.ipv4.ip_local_reserved_ports";
const PROTO = { tcp: 6, udp: 17, icmp: 1 } as const;
/** ICMP types copied to the data path: echo reply, unreachable, time exceeded, parameter problem. */
export const MIRRORED_ICMP_TYPES = [0, 3, 11, 12] as const;

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

/** One steering filter: its u32 match/action words after `... protocol ip`. */
export interface SteerFilter {
  /** Human key, stable across applies: "udp 61000/0xfff8", "tcp 30080", "icmp type 3". */
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
  if (!Number.isInteger(fp) || fp < 1 || fp + 1 > 0xffff) bad("filterPref", `${fp}: both filterPref and filterPref+1 must be in 1-65535`);
  if (!/^[^\s/]{1,15}$/.test(plan.device)) bad("device", `"${plan.device}" is not an interface name`);
  if (!/^[^\s/]{1,15}$/.test(plan.underlayDevice)) bad("underlayDevice", `"${plan.underlayDevice}" is not an interface name`);
}

interface RuleSpec {
  pref: number;
  args: string[]; // after `pref N`
}

interface TcState {
  dev: string;
  /** We added the clsact qdisc (so teardown may remove it, if nothing else hangs off it). */
  createdQdisc: boolean;
  /** Our two prefs are basePref and basePref + 1; `pref` is the active one. */
  basePref: number;
  /** Active filter pref and what it holds (keys), and the target's ifindex when installed. */
  pref: number;
  keys: string;
  targetIfindex: number;
}

/** What NodeNat has in place right now (for status output and tests). */
export interface NatInstalled {
  rules: string[];
  tableRoute?: string;
  routes: string[];
  tc?: { dev: string; pref: number; createdQdisc: boolean; filters: string[] };
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
  private tableRoute?: { table: number; dev: string };
  private routes = new Map<string, string>(); // "a.b.c.d/32" -> dev
  private tc?: TcState;
  private filterKeys: string[] = [];
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
      this.tableRoute = undefined;
      this.routes.clear();
    }
    this.deviceIfindex = dev;
    this.checkSnatAddressUnassigned(plan.snatAddress);
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
    quiet(() => this.removeTc(true));
    quiet(() => this.writeReservedPorts(new Uint8Array(65536)));
    for (const [dst, dev] of this.routes) quiet(() => this.run(["ip", "route", "del", dst, "dev", dev, "table", "main"]));
    this.routes.clear();
    quiet(() => this.setRules([], undefined));
    this.deviceIfindex = undefined;
    if (errors.length) throw new NatSetupError(`NAT teardown left things behind:\n  ${errors.join("\n  ")}`);
  }

  installed(): NatInstalled {
    return {
      rules: this.rules.map((r) => `${r.pref}: ${r.args.join(" ")}`),
      tableRoute: this.tableRoute && `default dev ${this.tableRoute.dev} table ${this.tableRoute.table}`,
      routes: [...this.routes.keys()],
      tc: this.tc && { dev: this.tc.dev, pref: this.tc.pref, createdQdisc: this.tc.createdQdisc, filters: [...this.filterKeys] },
      reservedPortsAdded: formatPortList(this.reservedAdded),
    };
  }

  /** What is installed, for the install record (src/daemon/state.ts): enough to remove it after a crash. */
  record(): NatRecord {
    return {
      rules: this.rules.map((r) => ({ pref: r.pref, args: [...r.args] })),
      tableRoute: this.tableRoute && { ...this.tableRoute },
      routes: [...this.routes].map(([dst, dev]) => ({ dst, dev })),
      tc: this.tc && { dev: this.tc.dev, prefs: [this.tc.basePref, this.tc.basePref + 1].filter((p) => p > 0), createdQdisc: this.tc.createdQdisc },
      reservedPortsAdded: formatPortList(this.reservedAdded),
    };
  }

  /**
   * Remove what a dead instance left, as its record says (`rec`) or, for what
   * the record does not name, by overlayd's markers: ip rules at `rulePref`
   * and `rulePref + 1` from `podCIDR`, `proto 79` routes in `table`, tc filters
   * at `filterPref` and `filterPref + 1` on `underlayDevice`'s ingress. Returns
   * what it removed, one line each; throws NatSetupError for what it could not.
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
    const rulePrefs = new Set([marks.rulePref, marks.rulePref + 1, ...(rec?.rules.map((r) => r.pref) ?? [])]);
    for (const pref of rulePrefs) {
      let rules: JsonRule[] = [];
      try {
        rules = JSON.parse(run(["ip", "-json", "rule", "show", "pref", String(pref)]) || "[]") as JsonRule[];
      } catch {
        continue;
      }
      for (const _ of rules) attempt(`ip rule pref ${pref}`, () => run(["ip", "rule", "del", "pref", String(pref)]));
    }
    for (const table of new Set([marks.table, ...(rec?.tableRoute ? [rec.tableRoute.table] : [])])) {
      let routes: { dst: string; dev?: string }[] = [];
      try {
        routes = JSON.parse(run(["ip", "-json", "route", "show", "table", String(table), "proto", String(RT_PROTO)]) || "[]") as { dst: string }[];
      } catch {
        continue; // table does not exist
      }
      for (const r of routes) attempt(`route ${r.dst} table ${table}`, () => run(["ip", "route", "del", r.dst, "table", String(table), "proto", String(RT_PROTO)]));
    }
    const tcs = new Map<string, { prefs: Set<number>; createdQdisc: boolean }>();
    const fp = marks.filterPref ?? NAT_DEFAULTS.filterPref;
    if (marks.underlayDevice) tcs.set(marks.underlayDevice, { prefs: new Set([fp, fp + 1]), createdQdisc: false });
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
    const want: RuleSpec[] = plan.masquerade
      ? [
          { pref: plan.rulePref, args: ["from", plan.podCIDR, "lookup", "main", "suppress_prefixlength", "0"] },
          { pref: plan.rulePref + 1, args: ["from", plan.podCIDR, "lookup", String(plan.table)] },
        ]
      : [];
    this.setRules(want, plan.masquerade ? { table: plan.table, dev: plan.device } : undefined);
  }

  private setRules(want: RuleSpec[], tableRoute: { table: number; dev: string } | undefined): void {
    const same = (a: RuleSpec, b: RuleSpec) => a.pref === b.pref && a.args.join(" ") === b.args.join(" ");
    // Route first, rules after: until table T has its default route, the
    // second rule finds nothing there and pod traffic falls through to main
    // and leaves untranslated.
    const old = this.tableRoute;
    if (tableRoute && (old?.table !== tableRoute.table || old.dev !== tableRoute.dev)) {
      this.run(["ip", "route", "replace", "default", "dev", tableRoute.dev, "table", String(tableRoute.table), "proto", String(RT_PROTO)]);
      this.tableRoute = tableRoute;
    }
    for (const r of want) {
      if (this.rules.some((h) => same(h, r))) continue;
      if (!this.ruleExists(r)) this.run(["ip", "rule", "add", "pref", String(r.pref), ...r.args]);
      this.rules.push(r);
    }
    for (const r of [...this.rules]) {
      if (want.some((w) => same(w, r))) continue;
      try {
        this.run(["ip", "rule", "del", "pref", String(r.pref), ...r.args]);
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
      this.rules = this.rules.filter((h) => h !== r);
    }
    if (old && (old.table !== tableRoute?.table || old.dev !== tableRoute?.dev)) {
      if (!tableRoute) this.tableRoute = undefined;
      try {
        this.run(["ip", "route", "del", "default", "dev", old.dev, "table", String(old.table)]);
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
    }
  }

  /** Whether this exact rule is already there (left by a previous run that died): adopt it, do not duplicate it. */
  private ruleExists(r: RuleSpec): boolean {
    const rules = JSON.parse(this.run(["ip", "-json", "rule", "show", "pref", String(r.pref)]) || "[]") as JsonRule[];
    return rules.some((j) => sameRule(j, r));
  }

  // --- ClusterIP and service-SNAT routes ------------------------------------

  private syncRoutes(plan: NatPlan): void {
    const want = new Map<string, string>();
    for (const a of [...plan.clusterIPs, plan.snatAddress]) want.set(`${u32ToIp(ipToU32(a))}/32`, plan.device);
    for (const [dst, dev] of [...this.routes]) {
      if (want.get(dst) === dev) continue;
      try {
        this.run(["ip", "route", "del", dst, "dev", dev, "table", "main"]);
      } catch (e) {
        if (!GONE.test((e as Error).message)) throw e;
      }
      this.routes.delete(dst);
    }
    for (const [dst, dev] of want) {
      if (this.routes.get(dst) === dev) continue;
      this.run(["ip", "route", "replace", dst, "dev", dev, "table", "main", "proto", String(RT_PROTO)]);
      this.routes.set(dst, dev);
    }
  }

  private checkSnatAddressUnassigned(addr: string): void {
    const links = JSON.parse(this.run(["ip", "-json", "-4", "addr", "show", "to", `${addr}/32`]) || "[]") as { ifname: string }[];
    const dev = links[0]?.ifname;
    if (dev) {
      throw new NatSetupError(
        `nat plan: snatAddress: ${addr} is assigned to ${dev}; the service-SNAT address must be on no interface (its replies have to be routed into the overlay device, and a local address is delivered to the node's own stack first)`,
      );
    }
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

  private syncTc(plan: NatPlan): void {
    const filters = steeringFilters(plan);
    const keys = filters.map((f) => f.key).join("|") + `|to ${plan.device}`;
    const basePref = plan.filterPref ?? NAT_DEFAULTS.filterPref;
    const ifindex = this.ifindex(plan.device);
    if (this.tc && this.tc.dev !== plan.underlayDevice) this.removeTc(true);
    if (this.tc && this.tc.basePref !== basePref) this.removeTc(false);
    if (this.tc && this.tc.keys === keys && this.tc.targetIfindex === ifindex) return;

    let pref = basePref;
    if (!this.tc) {
      const createdQdisc = !this.hasIngressQdisc(plan.underlayDevice);
      if (createdQdisc) this.run(["tc", "qdisc", "add", "dev", plan.underlayDevice, "clsact"]);
      this.tc = { dev: plan.underlayDevice, createdQdisc, basePref, pref, keys: "", targetIfindex: -1 };
      // Our two prefs are ours alone; anything there is left from a run that died.
      for (const p of [basePref, basePref + 1]) this.delFilterPref(plan.underlayDevice, p);
    } else {
      pref = this.tc.pref === basePref ? basePref + 1 : basePref;
    }
    const prev = { ...this.tc };
    // Make before break: the new set goes in at the other pref, then the old
    // pref is deleted, so no packet of a running flow falls to the node's stack.
    Object.assign(this.tc, { basePref, pref, keys: "", targetIfindex: ifindex });
    try {
      // One `tc -batch` for the whole set (it stops at the first failure).
      const lines = filters.map((f) => ["filter", "add", "dev", plan.underlayDevice, "ingress", "pref", String(pref), "protocol", "ip", ...f.args].join(" "));
      this.run(["tc", "-batch", "-"], lines.join("\n") + "\n");
    } catch (e) {
      this.delFilterPref(plan.underlayDevice, pref);
      Object.assign(this.tc, prev);
      throw e;
    }
    if (prev.pref !== pref) this.delFilterPref(prev.dev, prev.pref);
    this.tc.keys = keys;
    this.filterKeys = filters.map((f) => f.key);
  }

  /** Remove our filters; with `qdiscToo`, also the clsact qdisc if we created it and nothing else uses it. */
  private removeTc(qdiscToo: boolean): void {
    const tc = this.tc;
    if (!tc) return;
    for (const p of [tc.basePref, tc.basePref + 1]) this.delFilterPref(tc.dev, p);
    this.filterKeys = [];
    if (qdiscToo) {
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
    } else {
      tc.keys = "";
      tc.basePref = -1; // nothing left at the old prefs; the next sync starts over
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
