// A typed wrapper over one instance of the WASM data path: init, node
// configuration, table writes, batch calls and counters. One instance per
// worker thread; all calls on it come from that thread.
import { randomBytes } from "node:crypto";
import * as abi from "./abi.js";
import { FDB_CAPACITY, LPM6_GROUPS, MAX_BACKENDS, MAX_FRONTENDS, MAX_NEXTHOPS, MAX_PEERS, NEIGH_CAPACITY, TBL8_GROUPS } from "./limits.js";
import { instantiateDataplane, type BuildKind, type RawExports } from "./wasm.js";
import { ctCreateTuples } from "./ctfill.js";
import { bigintToIpv6, ipv6ToBigint } from "../config/net6.js";

export interface DataplaneOptions {
  kind?: BuildKind;
  /** Packet slots per batch. */
  batch?: number;
  /** Bytes per slot (multiple of 64, >= HEADROOM + 1600). */
  slotSize?: number;
  /** LPM tbl8 groups (256 entries each); each /25../32 prefix under a distinct /24 uses one. */
  tbl8Groups?: number;
  /** IPv6 LPM groups (1 KiB each; see LPM6_GROUPS for what a prefix costs). */
  lpm6Groups?: number;
  maxNexthops?: number;
  maxPeers?: number;
  neighCapacity?: number;
  fdbCapacity?: number;
  /** A memory shared with other instances (createDataplaneMemory): each
   *  carves its own tables from it, and they may share one connection
   *  table (natSetup's `attach`). Default: a memory of its own. */
  memory?: WebAssembly.Memory;
}

export type DeviceMode = "tun" | "tap";

export interface NodeParams {
  mode: DeviceMode;
  /** This node's underlay address (outer source), host-order u32. */
  underlay: number;
  /** This node's overlay address (VTEP IP; source of ICMP errors). */
  overlay: number;
  /** This node's IPv6 overlay address (source of ICMPv6 errors), a 128-bit
   *  bigint; 0n or left out: none (ICMPv6 errors are then not sent). */
  overlay6?: bigint;
  /** This node's IPv6 underlay address (outer source towards peers reached
   *  over IPv6, setPeer6), a 128-bit bigint; 0n or left out: none. */
  underlay6?: bigint;
  /** Our MAC on the overlay: inner Ethernet source, ARP answers. */
  vtepMac: bigint;
  /** Tap mode: MAC of the kernel's side of the tap device. */
  devMac?: bigint;
  vni: number;
  port?: number;
  sourcePortRange?: [number, number];
  outerTtl?: number;
  underlayMtu?: number;
}

export const NH_KIND = {
  vxlan: abi.NH_VXLAN,
  ipip: abi.NH_IPIP,
  direct: abi.NH_DIRECT,
  local: abi.NH_LOCAL,
  blackhole: abi.NH_BLACKHOLE,
} as const;
export type NexthopKind = keyof typeof NH_KIND;

/** names6.ts: no handle. */
const N6_NONE = 0xffffffff;
/** conntrack.ts CT_PROTO_V6: the protocol mark of IPv6 flows and frontends. */
export const CT_PROTO_V6 = 0x80;

export interface NatSetup {
  /** Conntrack capacity (flows; both directions of a flow are one). */
  maxFlows: number;
  maxFrontends?: number;
  maxBackends?: number;
  /** 16 bytes keying the conntrack hash; default: crypto.randomBytes(16). */
  hashSeed?: Uint8Array;
  /** Others will attach to this instance's table (natSetup's `attach`): it
   *  takes its lock from the start. Without it the table is this instance's
   *  alone and skips the lock. */
  shared?: boolean;
  /** Use the connection table of another instance on the same shared memory
   *  (its `ctHeader`) instead of carving one: `maxFlows` and `hashSeed` are
   *  then that table's. */
  attach?: number;
  /** IPv6 address names the connection table holds (NAT66; 40 bytes each;
   *  0 or absent: no IPv6 flows). Ignored with `attach` (the table's owner decides). */
  names6?: number;
}

/** Conntrack timeouts in seconds, by the names of nat.conntrack.timeouts. */
export interface CtTimeouts {
  tcpSynSent: number;
  tcpSynRecv: number;
  tcpEstablished: number;
  tcpFinWait: number;
  tcpCloseWait: number;
  tcpLastAck: number;
  tcpTimeWait: number;
  tcpClose: number;
  udp: number;
  udpStream: number;
  icmp: number;
}

/** Which WASM timeout slots (nat/conntrack.ts: TCP state 0..9, then
 *  CT_TO_UDP 10, CT_TO_UDP_STREAM 11, CT_TO_ICMP 12) each name sets;
 *  SYN_SENT2 (simultaneous open) takes SYN_SENT's, as in nf_conntrack. */
export const CT_TIMEOUT_SLOTS: Record<keyof CtTimeouts, number[]> = {
  tcpSynSent: [1, 9], tcpSynRecv: [2], tcpEstablished: [3], tcpFinWait: [4], tcpCloseWait: [5], tcpLastAck: [6],
  tcpTimeWait: [7], tcpClose: [8], udp: [10], udpStream: [11], icmp: [12],
};

/** A frontend -> backend pair whose flows are to be deleted (a backend removed from a service). */
export interface BackendFlowKey {
  frontendAddr: number;
  frontendPort: number;
  backendAddr: number;
  backendPort: number;
}

/** BackendFlowKey of an IPv6 service: text addresses. */
export interface BackendFlowKey6 {
  frontendAddr: string;
  frontendPort: number;
  backendAddr: string;
  backendPort: number;
}

export interface NatParams {
  enabled: boolean;
  masquerade: boolean;
  /** Address masqueraded flows leave with and NodePorts answer on (host-order u32). */
  nodeIp: number;
  /** Service-SNAT address for hairpin and NodePort flows (routed into our device, on no interface). */
  snatAddress?: number;
  portRange?: [number, number];
  seed?: number;
  /** Conntrack timeouts; they apply to a flow from its next packet on. */
  timeouts?: CtTimeouts;
  /** NAT66 (needs natSetup's names6): IPv6 text addresses. */
  ipv6?: NatParams6;
}

export interface NatParams6 {
  /** Masquerade pods' IPv6 to `nodeAddress` (the node's IPv6 underlay address). */
  masquerade: boolean;
  nodeAddress?: string;
  /** Source of IPv6 hairpin flows (routed into our device, on no interface). */
  snatAddress?: string;
}

/** An IPv6 service frontend (ClusterIP:port), IPv6 text addresses. */
export interface ServiceFrontend6 {
  protocol: "tcp" | "udp";
  addr: string;
  port: number;
  /** A NodePort on the node's IPv6 underlay address: its flows are also source-translated. */
  nodePort?: boolean;
  backends: { addr: string; port: number }[];
}

/** One service frontend: a ClusterIP:port or a NodePort (node address:port). */
export interface ServiceFrontend {
  protocol: "tcp" | "udp";
  addr: number;
  port: number;
  /** A NodePort frontend: its flows are also source-translated. */
  nodePort?: boolean;
  backends: { addr: number; port: number }[];
}

export interface ConntrackStats {
  entries: number;
  capacity: number;
  inserts: number;
  deletes: number;
  expired: number;
  insertFailed: number;
  clash: number;
  invalid: number;
  /** Flows evicted to admit a new one into a full table. */
  earlyDrop: number;
  frontends: number;
  /** IPv6 address names in use and their capacity (NAT66; 0 without node.ipv6). */
  names6: number;
  names6Capacity: number;
}

export interface FlowTuple { src: number; dst: number; sport: number; dport: number }
export interface FlowRecord {
  proto: number;
  orig: FlowTuple;
  reply: FlowTuple;
  nat: "none" | "snat" | "dnat" | "both";
  /** TCP state (nf_conntrack numbering), 0 for other protocols. */
  state: number;
  /** CT_F_* bits: 1 used, 2 seen reply, 4 assured. */
  flags: number;
  expiresIn: number;
  /** An IPv6 flow (proto is then 6, 17 or 58): its addresses, orig src and
   *  dst then reply src and dst (the tuples' numbers are table handles). */
  addrs6?: [string, string, string, string];
}

const NAT_KINDS = ["none", "snat", "dnat", "both"] as const;
/** ctStat indices (nat/conntrack.ts CT_STAT_*) by name. */
const CT_EVENT_NAMES = ["inserts", "deletes", "expired", "insert_failed", "clash", "invalid", "early_drop"] as const;

/** Bytes of one pmtuIcmpBatch record (assembly/pipeline/pmtu.ts PMTU_RECORD). */
const PMTU_RECORD = 12;

/** A peer's path MTU lowered by an ICMP from the underlay: host-order addresses. */
export interface PmtuUpdate {
  peer: number;
  mtu: number;
  from: number;
}

export class DataplaneError extends Error {
  constructor(what: string, public readonly status: number) {
    super(`${what} failed: ${statusName(status)} (${status})`);
  }
}

export function statusName(s: number): string {
  switch (s) {
    case abi.OK: return "ok";
    case abi.E_FULL: return "table full";
    case abi.E_RANGE: return "argument out of range";
    case abi.E_NOT_FOUND: return "not found";
    case abi.E_NOT_INIT: return "not initialised";
    case abi.E_NO_MEMORY: return "out of memory";
    default: return "unknown status";
  }
}

function check(what: string, s: number): void {
  if (s !== abi.OK) throw new DataplaneError(what, s);
}

export class Dataplane {
  readonly raw: RawExports;
  readonly batch: number;
  readonly slotSize: number;
  readonly slotBase: number;
  readonly metaBase: number;
  readonly countersBase: number;
  /** 16 bytes where an IPv6 address is written for one lpm6 call. */
  private readonly addr6: number;
  private view8: Uint8Array;
  private viewDv: DataView;

  constructor(opts: DataplaneOptions = {}) {
    this.raw = instantiateDataplane(opts.kind ?? "release", undefined, opts.memory);
    this.batch = opts.batch ?? 256;
    this.slotSize = opts.slotSize ?? 2048;
    const maxPeers = opts.maxPeers ?? MAX_PEERS;
    check("init", this.raw.init(this.batch, this.slotSize, opts.tbl8Groups ?? TBL8_GROUPS, opts.maxNexthops ?? MAX_NEXTHOPS,
      maxPeers, opts.neighCapacity ?? NEIGH_CAPACITY, opts.fdbCapacity ?? FDB_CAPACITY));
    check("IPv6 LPM setup (lpm6Setup)", this.raw.lpm6Setup(opts.lpm6Groups ?? LPM6_GROUPS));
    this.addr6 = Number(this.raw.allocScratch(16));
    if (this.addr6 === 0) throw new DataplaneError("IPv6 address scratch (allocScratch)", abi.E_NO_MEMORY);
    this.slotBase = Number(this.raw.slotBase());
    this.metaBase = Number(this.raw.metaBase());
    this.countersBase = Number(this.raw.countersBase());
    this.view8 = new Uint8Array(this.raw.memory.buffer);
    this.viewDv = new DataView(this.raw.memory.buffer);
  }

  get memory(): WebAssembly.Memory {
    return this.raw.memory;
  }

  /** Byte view over all of linear memory (memory does not grow after init). */
  get u8(): Uint8Array {
    if (this.view8.buffer !== this.raw.memory.buffer) this.refreshViews();
    return this.view8;
  }

  get dv(): DataView {
    if (this.viewDv.buffer !== this.raw.memory.buffer) this.refreshViews();
    return this.viewDv;
  }

  private refreshViews(): void {
    this.view8 = new Uint8Array(this.raw.memory.buffer);
    this.viewDv = new DataView(this.raw.memory.buffer);
  }

  configure(p: NodeParams): void {
    const [smin, smax] = p.sourcePortRange ?? [32768, 60999];
    check("configure", this.raw.configure(p.mode === "tap" ? abi.MODE_TAP : abi.MODE_TUN, p.underlay >>> 0,
      p.overlay >>> 0, BigInt.asUintN(64, p.vtepMac), BigInt.asUintN(64, p.devMac ?? 0n), p.vni, p.port ?? 4789,
      smin, smax, p.outerTtl ?? 64, p.underlayMtu ?? 1500));
    const o6 = p.overlay6 ?? 0n;
    check("configure6", this.raw.configure6(BigInt.asUintN(64, o6 >> 64n), BigInt.asUintN(64, o6)));
    const u6 = p.underlay6 ?? 0n;
    check("configureUnderlay6", this.raw.configureUnderlay6(BigInt.asUintN(64, u6 >> 64n), BigInt.asUintN(64, u6)));
  }

  /** Stamp the following batches with the time (wrapping u32 milliseconds). */
  setClock(ms: number): void {
    this.raw.setClock(ms >>> 0);
  }

  /** Token bucket for ICMP errors: `perSecond` sustained, `burst` at once;
   *  0 per second = unlimited (the default of a fresh instance). */
  setIcmpRateLimit(perSecond: number, burst: number): void {
    this.raw.setIcmpRateLimit(perSecond >>> 0, burst >>> 0);
  }

  // --- NAT ----------------------------------------------------------------
  /** Carve the conntrack table (`maxFlows`, 88 bytes each) and the service
   *  table, and key the conntrack hash (`hashSeed`, random by default). Once
   *  per instance, before traffic. */
  natSetup(o: NatSetup): void {
    if (o.attach !== undefined) {
      check("conntrack attach", this.raw.ctAttach(o.attach >>> 0));
    } else {
      const seed = o.hashSeed ?? randomBytes(16);
      if (seed.length !== 16) throw new RangeError("the conntrack hash seed is 16 bytes");
      check("conntrack setup", this.raw.ctSetup(o.maxFlows));
      if (o.names6) check("conntrack IPv6 names", this.raw.ctSetup6(o.names6));
      if (o.shared) check("conntrack share", this.raw.ctShare());
      this.ctOwner = true;
      const dv = new DataView(seed.buffer, seed.byteOffset, 16);
      check("conntrack hash seed", this.raw.ctSetHashSeed(dv.getBigUint64(0, true), dv.getBigUint64(8, true)));
    }
    check("service table setup", this.raw.svcSetup(o.maxFrontends ?? MAX_FRONTENDS, o.maxBackends ?? MAX_BACKENDS));
    this.natSized = true;
  }
  private natSized = false;
  /** This instance carved the connection table (others may attach to it). */
  private ctOwner = false;

  /** Where this instance's connection table is (0: none): what another
   *  instance on the same shared memory attaches to (natSetup's `attach`). */
  get ctHeader(): number {
    return Number(this.raw.ctHeader());
  }

  /** Run `fn` holding the connection table's lock: the control plane's
   *  operations on a table other workers may be using (expiry, dumps,
   *  flushes, fills) go one bounded step at a time between batches. */
  withTableLock<T>(fn: () => T): T {
    this.raw.ctLock();
    try {
      return fn();
    } finally {
      this.raw.ctUnlock();
    }
  }

  /** Switch the NAT stage on/off and set its addresses and port range. */
  natConfigure(p: NatParams): void {
    if (p.enabled && !this.natSized) throw new DataplaneError("NAT enabled before natSetup", abi.E_NOT_INIT);
    const [lo, hi] = p.portRange ?? [61000, 65535];
    check("NAT configure", this.raw.natConfigure(p.enabled ? 1 : 0, p.masquerade ? 1 : 0, p.nodeIp >>> 0,
      (p.snatAddress ?? 0) >>> 0, lo, hi, (p.seed ?? (Math.random() * 0xffffffff) | 1) >>> 0));
    if (p.timeouts && this.natSized) this.setTimeouts(p.timeouts);
    const six = p.ipv6;
    const on6 = p.enabled && six !== undefined && this.raw.ct6NameCapacity() > 0;
    const pins = on6 ? [six.nodeAddress, six.snatAddress].map((a) => (a === undefined ? N6_NONE : this.pin6(a))) : [N6_NONE, N6_NONE];
    const st = this.raw.natConfigure6(on6 ? 1 : 0, on6 && six.masquerade && pins[0] !== N6_NONE ? 1 : 0, pins[0], pins[1]);
    this.unpin6(this.natPins6);
    this.natPins6 = pins;
    check("NAT66 configure", st);
  }
  /** Handles the NAT66 configuration holds (node, SNAT). */
  private natPins6: number[] = [];

  /** Pin an IPv6 address in the connection table's names: its handle.
   *  Throws when the names are full. */
  private pin6(text: string): number {
    const a = ipv6ToBigint(text);
    const h = this.raw.ct6Pin(BigInt.asUintN(64, a >> 64n), BigInt.asUintN(64, a)) >>> 0;
    if (h === N6_NONE) throw new DataplaneError(`no room to hold IPv6 address ${text} in the connection table`, abi.E_FULL);
    return h;
  }

  /** ct6Unpin each (between batches). */
  unpin6(handles: number[]): void {
    for (const h of handles) if (h !== N6_NONE) this.raw.ct6Unpin(h);
  }

  /** Set conntrack timeouts (seconds, 1 .. 2^30); a flow takes a changed
   *  one from its next packet on, as with nf_conntrack's sysctls. */
  setTimeouts(t: Partial<CtTimeouts>): void {
    for (const [name, slots] of Object.entries(CT_TIMEOUT_SLOTS) as [keyof CtTimeouts, number[]][]) {
      const v = t[name];
      if (v !== undefined) for (const i of slots) check(`conntrack timeout ${name}`, this.raw.ctSetTimeout(i, v >>> 0));
    }
  }

  /** A bounded walk over the conntrack table deleting the flows of `proto`
   *  (17: UDP) that went from one of the frontends to one of the backends
   *  given (a backend removed from its service); see BackendFlush. */
  backendFlush(proto: number, keys: BackendFlowKey[]): BackendFlush {
    if (!this.flushList) this.flushList = Number(this.raw.allocScratch(BackendFlush.CHUNK * 16));
    return new BackendFlush(this, this.flushList, proto, keys);
  }
  private flushList = 0;

  /** backendFlush for IPv6 frontends (NAT66): the addresses' table handles
   *  are held (pinned) for the walk, so none can name another address
   *  before it ends (BackendFlush.release). */
  backendFlush6(proto: number, keys: BackendFlowKey6[]): BackendFlush {
    if (this.raw.ct6NameCapacity() === 0) return this.backendFlush(proto | CT_PROTO_V6, []);
    const pins: number[] = [];
    const pin = (a: string) => {
      const h = this.pin6(a);
      pins.push(h);
      return h;
    };
    let numeric: BackendFlowKey[];
    try {
      numeric = keys.map((k) => ({ frontendAddr: pin(k.frontendAddr), frontendPort: k.frontendPort, backendAddr: pin(k.backendAddr), backendPort: k.backendPort }));
    } catch (e) {
      this.unpin6(pins);
      throw e;
    }
    const walk = this.backendFlush(proto | CT_PROTO_V6, numeric);
    walk.release = () => this.unpin6(pins);
    return walk;
  }
  /** The walk whose list chunk is in the shared buffer. */
  flushOwner?: BackendFlush;

  /** The conntrack clock in seconds (the worker stamps each batch). */
  setNow(sec: number): void {
    this.raw.natSetNow(sec >>> 0);
  }

  /** Replace every service frontend (between batches; tracked flows keep
   *  their backends). Throws when the table cannot hold them. */
  setServices(frontends: ServiceFrontend[], frontends6: ServiceFrontend6[] = []): void {
    // IPv6 addresses are table handles (names6.ts): pin the new set before
    // the table refers to it, let the old one go after.
    const pins: number[] = [];
    try {
      this.raw.svcClear();
      let next = 0;
      for (const f of frontends) {
        const first = next;
        for (const b of f.backends) check(`backend ${next}`, this.raw.svcSetBackend(next++, b.addr >>> 0, b.port));
        check(`service ${f.protocol}/${f.addr >>> 0}:${f.port}`, this.raw.svcAdd(f.protocol === "tcp" ? 6 : 17,
          f.addr >>> 0, f.port, f.nodePort ? 1 : 0, first, f.backends.length));
      }
      if (frontends6.length > 0 && this.raw.ct6NameCapacity() === 0) throw new DataplaneError("IPv6 services need the connection table's IPv6 names (node.ipv6)", abi.E_NOT_INIT);
      for (const f of frontends6) {
        const first = next;
        for (const b of f.backends) {
          const h = this.pin6(b.addr);
          pins.push(h);
          check(`backend ${next}`, this.raw.svcSetBackend(next++, h, b.port));
        }
        const h = this.pin6(f.addr);
        pins.push(h);
        check(`service ${f.protocol}/[${f.addr}]:${f.port}`, this.raw.svcAdd((f.protocol === "tcp" ? 6 : 17) | CT_PROTO_V6, h, f.port, f.nodePort ? 1 : 0, first, f.backends.length));
      }
    } finally {
      this.unpin6(this.svcPins6);
      this.svcPins6 = pins;
    }
  }
  /** Handles the service table holds. */
  private svcPins6: number[] = [];

  /** Reap expired flows, looking at no more than `budget` records. */
  ctExpire(nowSec: number, budget: number): number {
    return this.withTableLock(() => this.raw.ctExpire(nowSec >>> 0, budget >>> 0));
  }

  conntrackStats(): ConntrackStats {
    return this.withTableLock(() => this.ctStatsNow());
  }

  private ctStatsNow(): ConntrackStats {
    const st = (i: number) => Number(this.raw.ctStat(i));
    return {
      entries: this.raw.ctCount(), capacity: this.raw.ctCapacity(), inserts: st(0), deletes: st(1), expired: st(2),
      insertFailed: st(3), clash: st(4), invalid: st(5), earlyDrop: st(6), frontends: this.raw.svcCount(),
      names6: this.raw.ct6NameCount(), names6Capacity: this.raw.ct6NameCapacity(),
    };
  }

  /** Up to `limit` tracked flows, as `conntrack -L` would list them. */
  conntrackDump(nowSec: number, limit = 10_000): FlowRecord[] {
    const out: FlowRecord[] = [];
    this.conntrackScan(nowSec, 0, limit, out);
    return out;
  }

  /** Create a flow for each of the `n` 16-byte tuple records at `ptr` (see
   *  ctfill.ts), masqueraded to `nodeIp` unless it is 0; returns how many
   *  were created. For tests and the ct-fill test hook. */
  ctCreateTuples(ptr: number, n: number, nodeIp: number, nowSec: number): number {
    return this.withTableLock(() => ctCreateTuples(this.raw, ptr, n, nodeIp, nowSec));
  }

  /** One bounded step of a dump: the tracked flows from flow index `from`
   *  on, at most `max` of them, appended to `out`. Returns the index to go
   *  on from, or -1 when the table has no more. Flow indexes are stable while
   *  a flow lives, so a walk in steps lists every flow that lived through it
   *  exactly once (flows created or removed meanwhile may or may not show). */
  conntrackScan(nowSec: number, from: number, max: number, out: FlowRecord[]): number {
    return this.withTableLock(() => this.scanNow(nowSec, from, max, out));
  }

  private scanNow(nowSec: number, from: number, max: number, out: FlowRecord[]): number {
    const dv = this.dv;
    let f = this.raw.ctEntryAt(from >>> 0);
    for (let n = 0; f >= 0 && n < max; f = this.raw.ctEntryAt(f + 1)) {
      const r = Number(this.raw.ctFlowPtr(f));
      if (r === 0) continue;
      const tuple = (o: number) => ({
        src: dv.getUint32(r + o, true), dst: dv.getUint32(r + o + 4, true),
        sport: dv.getUint16(r + o + 8, true), dport: dv.getUint16(r + o + 10, true),
      });
      const deadline = dv.getUint32(r + 32, true);
      const proto = dv.getUint8(r + 24);
      const rec: FlowRecord = {
        orig: tuple(0), reply: tuple(12), proto: proto & ~CT_PROTO_V6, nat: NAT_KINDS[dv.getUint8(r + 25)] ?? "none",
        state: dv.getUint8(r + 26), flags: dv.getUint8(r + 27), expiresIn: ((deadline - nowSec) | 0),
      };
      if (proto & CT_PROTO_V6) {
        const name = (h: number) => {
          const a = Number(this.raw.ct6Addr(h >>> 0));
          let v = 0n;
          for (let i = 0; i < 16; i += 4) v = (v << 32n) | BigInt(dv.getUint32(a + i, false));
          return bigintToIpv6(v);
        };
        rec.addrs6 = [name(rec.orig.src), name(rec.orig.dst), name(rec.reply.src), name(rec.reply.dst)];
      }
      out.push(rec);
      n++;
    }
    return f;
  }

  // --- tables ------------------------------------------------------------
  setNexthop(index: number, kind: NexthopKind, peer: number, gateway: number): void {
    check(`next hop ${index}`, this.raw.setNexthop(index, NH_KIND[kind], peer, gateway >>> 0));
  }

  setPeer(index: number, underlay: number, vtepMac: bigint): void {
    check(`peer ${index}`, this.raw.setPeer(index, underlay >>> 0, vtepMac));
  }

  /** After setPeer: reach peer `index` over the IPv6 underlay at `underlay6`
   *  (0n: over IPv4 again; setPeer alone leaves it IPv4). */
  setPeer6(index: number, underlay6: bigint): void {
    check(`peer ${index} IPv6 underlay`, this.raw.setPeer6(index, BigInt.asUintN(64, underlay6 >> 64n), BigInt.asUintN(64, underlay6)));
  }

  clearPeer(index: number): void {
    check(`peer ${index}`, this.raw.clearPeer(index));
  }

  /** The LPM operations, as the route-rule keeper drives them. */
  get lpmBackend(): { insert(ip: number, depth: number, nh: number): number; delete(ip: number, depth: number, subNh: number, subDepth: number): number } {
    const raw = this.raw;
    return {
      insert: (ip, depth, nh) => raw.lpmInsert(ip >>> 0, depth, nh),
      delete: (ip, depth, subNh, subDepth) => raw.lpmDelete(ip >>> 0, depth, subNh >>> 0, subDepth),
    };
  }

  lookup(ip: number): number | undefined {
    const nh = this.raw.lpmLookup(ip >>> 0) >>> 0;
    return nh === 0xffffffff ? undefined : nh;
  }

  /** The IPv6 LPM operations, as RouteRules6 drives them: addresses are
   *  128-bit bigints, written to a scratch buffer as 16 network-order bytes. */
  get lpm6Backend(): { insert(addr: bigint, depth: number, nh: number): number; delete(addr: bigint, depth: number, subNh: number, subDepth: number): number } {
    const raw = this.raw;
    return {
      insert: (addr, depth, nh) => raw.lpm6Insert(this.putAddr6(addr), depth, nh),
      delete: (addr, depth, subNh, subDepth) => raw.lpm6Delete(this.putAddr6(addr), depth, subNh >>> 0, subDepth),
    };
  }

  /** The next hop the IPv6 table holds for `addr`, or LPM_MISS (0xffffffff). */
  lookup6(addr: bigint): number {
    return this.raw.lpm6Lookup(this.putAddr6(addr)) >>> 0;
  }

  private putAddr6(addr: bigint): number {
    if (typeof addr !== "bigint" || addr < 0n || addr >> 128n !== 0n) throw new RangeError(`${String(addr)} is not a 128-bit IPv6 address`);
    this.dv.setBigUint64(this.addr6, addr >> 64n);
    this.dv.setBigUint64(this.addr6 + 8, BigInt.asUintN(64, addr));
    return this.addr6;
  }

  neighSet(ip: number, mac: bigint): void {
    check("neighbour", this.raw.htPut(this.raw.neighTable(), BigInt(ip >>> 0), mac));
  }
  neighDelete(ip: number): number {
    return this.raw.htDelete(this.raw.neighTable(), BigInt(ip >>> 0));
  }
  fdbSet(mac: bigint, peer: number): void {
    check("fdb", this.raw.htPut(this.raw.fdbTable(), mac, BigInt(peer)));
  }
  fdbDelete(mac: bigint): number {
    return this.raw.htDelete(this.raw.fdbTable(), mac);
  }

  // --- packets (tests, benchmarks, fuzzing; the daemon uses BatchIO) -------
  slotPtr(i: number): number {
    return this.slotBase + i * this.slotSize;
  }
  metaPtr(i: number): number {
    return this.metaBase + i * abi.META_SIZE;
  }

  /** Copy `bytes` into slot i at `off` and fill its input metadata. */
  writePacket(i: number, bytes: Uint8Array, extra: { off?: number; addr?: number; addr2?: number; tos?: number } = {}): void {
    const off = extra.off ?? abi.HEADROOM;
    if (off + bytes.length > this.slotSize) throw new RangeError(`packet of ${bytes.length} bytes does not fit a slot`);
    this.u8.set(bytes, this.slotPtr(i) + off);
    const m = this.metaPtr(i);
    const dv = this.dv;
    dv.setUint32(m + abi.META_OFF, off, true);
    dv.setUint32(m + abi.META_LEN, bytes.length, true);
    dv.setUint32(m + abi.META_ADDR, (extra.addr ?? 0) >>> 0, true);
    dv.setUint32(m + abi.META_ADDR2, (extra.addr2 ?? 0) >>> 0, true);
    dv.setUint8(m + abi.META_TOS, extra.tos ?? 0);
  }

  /** A copy of slot i's current bytes [off, off+len). */
  readPacket(i: number): Uint8Array {
    const m = this.metaPtr(i);
    const off = this.dv.getUint32(m + abi.META_OFF, true);
    const len = this.dv.getUint32(m + abi.META_LEN, true);
    const start = this.slotPtr(i) + off;
    return this.u8.slice(start, start + len);
  }

  result(i: number): { verdict: number; reason: number; addr: number; peer: number; hash: number; off: number; len: number } {
    const m = this.metaPtr(i);
    const dv = this.dv;
    return {
      verdict: dv.getUint16(m + abi.META_VERDICT, true),
      reason: dv.getUint16(m + abi.META_REASON, true),
      addr: dv.getUint32(m + abi.META_ADDR, true),
      peer: dv.getUint16(m + abi.META_PEER, true),
      hash: dv.getUint32(m + abi.META_HASH, true),
      off: dv.getUint32(m + abi.META_OFF, true),
      len: dv.getUint32(m + abi.META_LEN, true),
    };
  }

  processPod(n: number): number {
    return this.raw.processPodBatch(n);
  }
  processVxlan(n: number): number {
    return this.raw.processVxlanBatch(n);
  }
  processIpip(n: number): number {
    return this.raw.processIpipBatch(n);
  }
  /** Protocol 4/41 packets that came over IPv6: each slot holds the inner
   *  packet, meta addr the sender's IPv4 name, tos the outer traffic class. */
  processIp6Tunnel(n: number): number {
    return this.raw.processIp6TunnelBatch(n);
  }

  // --- path MTU from the underlay (assembly/pipeline/pmtu.ts) ------------------
  private pmtuOut = 0;

  /** Take `n` ICMP packets from the slots (whole IPv4 packets, as a raw ICMP
   *  socket delivers them); returns the peers whose path MTU a valid
   *  fragmentation-needed lowered (peer underlay address, new MTU, router). */
  processIcmp(n: number): PmtuUpdate[] {
    if (!this.pmtuOut) this.pmtuOut = Number(this.raw.allocScratch(this.batch * PMTU_RECORD));
    const k = this.raw.pmtuIcmpBatch(n, this.pmtuOut) >>> 0;
    const out: PmtuUpdate[] = [];
    const dv = this.dv;
    for (let i = 0; i < k; i++) {
      const r = this.pmtuOut + i * PMTU_RECORD;
      out.push({ peer: dv.getUint32(r, true), mtu: dv.getUint32(r + 4, true), from: dv.getUint32(r + 8, true) });
    }
    return out;
  }

  /** Set the path MTU towards the peer at underlay address `peer` for
   *  `ttlMs` (what another lane learnt); false when no peer has it. */
  setPeerPmtu(peer: number, mtu: number, ttlMs: number): boolean {
    return this.raw.setPeerPmtu(peer >>> 0, mtu >>> 0, ttlMs >>> 0) === abi.OK;
  }

  /** The path MTU in force towards peer index i (tunnel MTU when none learnt; 0: no such peer). */
  peerPmtu(i: number): number {
    return this.raw.peerPmtu(i) >>> 0;
  }

  // --- counters -------------------------------------------------------------
  counter(index: number): bigint {
    return this.dv.getBigUint64(this.countersBase + index * 8, true);
  }

  /** Snapshot of every counter by name: named ones, `verdict_<name>`, `drop_<reason>`. */
  counters(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    for (const [name, idx] of Object.entries(abi.COUNTER_NAMES)) out[name] = this.counter(idx);
    abi.VERDICT_NAMES.forEach((name, v) => (out[`verdict_${name}`] = this.counter(abi.C_VERDICT_BASE + v)));
    abi.REASON_NAMES.forEach((name, r) => {
      if (r !== 0) out[`drop_${name}`] = this.counter(abi.C_DROP_BASE + r);
    });
    if (this.natSized && this.ctOwner) {
      // Conntrack events, so `show stats` lists them (summed over workers;
      // a table shared by several is counted by the one that carved it).
      CT_EVENT_NAMES.forEach((name, i) => (out[`ct_${name}`] = this.raw.ctStat(i) as bigint));
    }
    return out;
  }
}

/** A walk deleting the flows of removed backends, in bounded steps. The
 *  pairs are sorted and copied into linear memory BackendFlush.CHUNK at a
 *  time (16 bytes each); each chunk is one walk over the table's records.
 *  step(budget) looks at `budget` flow records (run it between batches) and
 *  returns true once every chunk has been walked. */
export class BackendFlush {
  static readonly CHUNK = 4096;
  private readonly sorted: { key: bigint; faddr: number }[];
  private chunk = -1;
  private at = -1;
  private n = 0;
  deleted = 0;

  constructor(private readonly dp: Dataplane, private readonly list: number, private readonly proto: number, keys: BackendFlowKey[]) {
    this.sorted = keys.map((k) => ({
      key: (BigInt(k.backendAddr >>> 0) << 32n) | (BigInt(k.backendPort & 0xffff) << 16n) | BigInt(k.frontendPort & 0xffff),
      faddr: k.frontendAddr >>> 0,
    }));
    this.sorted.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.faddr - b.faddr));
  }

  private load(): void {
    const dv = this.dp.dv;
    const part = this.sorted.slice(this.chunk * BackendFlush.CHUNK, (this.chunk + 1) * BackendFlush.CHUNK);
    part.forEach((e, i) => {
      dv.setBigUint64(this.list + i * 16, e.key, true);
      dv.setUint32(this.list + i * 16 + 8, e.faddr, true);
    });
    this.n = part.length;
    this.dp.flushOwner = this;
  }

  /** Called once the walk is done (what it held, e.g. IPv6 handles). */
  release?: () => void;

  step(budget: number): boolean {
    const done = this.stepOnce(budget);
    if (done && this.release) {
      this.release();
      this.release = undefined;
    }
    return done;
  }

  private stepOnce(budget: number): boolean {
    if (this.at < 0) {
      this.chunk++;
      if (this.chunk * BackendFlush.CHUNK >= this.sorted.length) return true;
      this.at = 0;
      this.load();
    } else if (this.dp.flushOwner !== this) {
      this.load(); // another walk used the buffer meanwhile
    }
    const next: number = this.dp.withTableLock(() => this.dp.raw.ctFlushBackends(this.proto, this.list, this.n, this.at, Math.max(1, budget) >>> 0));
    if (next < -1) throw new DataplaneError("conntrack flush", next);
    this.deleted += this.dp.raw.ctFlushed();
    this.at = next;
    return this.at < 0 && (this.chunk + 1) * BackendFlush.CHUNK >= this.sorted.length;
  }
}
