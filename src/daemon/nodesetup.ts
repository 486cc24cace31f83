// Setting up the node for the data path, one named step at a time, each
// recording how it is undone: the tun device (and its queues), its link
// config, the sysctls (global ones with their old values), the kernelGso tap,
// the kernel routes (`proto 79`), the NAT plumbing. undoAll() reverses what
// got done, in reverse order, whether start finished or a signal came in the
// middle. What outlives the process (routes, rules, tc filters, reserved
// ports, sysctls) is also written to the install record in node.stateDir
// after each step, so a later start or `overlayd cleanup` can remove it after
// a crash (src/daemon/reclaim.ts).
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { queueCount, type DerivedTables } from "../config/derive.js";
import { formatMac, u32ToIp } from "../config/net.js";
import type { Config } from "../config/schema.js";
import { bigintToIpv6 } from "../config/net6.js";
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_UDP_TUNNEL_GSO, TUN_F_UDP_TUNNEL_GSO_CSUM } from "../io/libc.js";
import { closeTun, openTun, setTunOffload, setVnetHdrSize, type TunDevice } from "../io/tun.js";
import { TunRing } from "../io/uring.js";
import { hostKernel, RT_PROTO, type Kernel } from "./kernel.js";
import { NodeNat, runCommand, type NatPlan } from "./natsetup.js";
import { writeRecord, type InstallRecord } from "./state.js";
import { KernelRoutes, setSysctl, type KernelRoute } from "./system.js";

/**
 * The start-up steps, in order. `lock` and `reclaim` are the daemon's
 * (src/daemon/daemon.ts), the node steps are NodeSetup's, `lanes` and
 * `admin` the daemon's again. Each name is also a test pause point:
 * OVERLAYD_TEST_PAUSE_AT=<step> makes start wait (forever, logging
 * "paused at start-up step") just before that step, so a test can send
 * SIGTERM there (test/robust-node.test.ts). Never set it in production.
 */
export const START_STEPS = ["lock", "reclaim", "device", "link", "sysctls", "gso-tap", "routes", "nat", "lanes", "admin"] as const;
export type StartStep = (typeof START_STEPS)[number];

export class StartCancelled extends Error {}

/** Test-only pause point (see START_STEPS). */
export async function pausePoint(step: StartStep, log: Logger): Promise<void> {
  if (process.env.OVERLAYD_TEST_PAUSE_AT !== step) return;
  log.warn({ step }, "paused at start-up step (OVERLAYD_TEST_PAUSE_AT)");
  await new Promise<never>(() => {
    setInterval(() => undefined, 1 << 30); // keep the loop alive; only a signal ends this
  });
}

/** Sysctls that are not per-device: restored to their old value on undo and after a crash. */
const GLOBAL_SYSCTL = /^net\.ipv4\.(ip_forward|conf\.(all|default)\.)|^net\.ipv6\.conf\.(all|default)\./;

export class NodeSetup {
  tun?: TunDevice;
  /** The tun's further queues (lane i > 0 reads queue i). */
  queueTuns: TunDevice[] = [];
  /** tunnel.kernelGso: the tap's queues (one per lane) and its MAC, or none. */
  gsoTaps: TunDevice[] = [];
  gsoTapMac = "";
  /** node.device.ioUring, once a ring could be set up here. */
  ioUring = false;
  /** The tun was promised TUN_F_TSO6: it takes GSO_TCPV6 frames, so IPv6 TCP may be coalesced (GRO) for it. */
  tunTso6 = false;
  readonly kernelRoutes: KernelRoutes;
  /** Policy routing, tc steering and reserved ports for NAT (natsetup.ts). */
  readonly nodeNat: NodeNat;
  /** The NAT plan in force (undefined: NAT off), so a failed reload can restore it. */
  natApplied?: NatPlan;
  private undos: { step: string; undo: () => void }[] = [];
  private cancelled = false;
  readonly record: InstallRecord = { version: 1, pid: process.pid, sysctls: [], routeProto: RT_PROTO };

  constructor(
    private config: Config,
    private derived: DerivedTables,
    /** The device MTU in force: node.device.mtu, or derived from the underlay link (mtu.ts). */
    private deviceMtu: number,
    private readonly log: Logger,
    readonly kernel: Kernel = hostKernel,
  ) {
    this.kernelRoutes = new KernelRoutes(kernel);
    this.nodeNat = new NodeNat(kernel === hostKernel ? runCommand : (argv, input) => kernel.exec(argv, input));
  }

  /** Run one named step: its pause point, then `run`, whose returned function undoes it. */
  async step(name: StartStep, run: () => (() => void) | void): Promise<void> {
    await pausePoint(name, this.log);
    if (this.cancelled) throw new StartCancelled(`start-up stopped before step ${name}`);
    const undo = run();
    if (undo) this.undos.push({ step: name, undo });
    this.saveRecord();
  }

  /** Make the next step() throw (a signal arrived during start). */
  cancel(): void {
    this.cancelled = true;
  }

  /** The node steps: device, link, sysctls, gso-tap, routes, nat. */
  async setupNode(): Promise<void> {
    const c = this.config;
    const d = this.derived;
    const offloads = c.node.device.offloads;
    if (offloads && d.node.mode !== "tun") throw new Error("node.device.offloads needs mode: tun (TSO super-frames are IPv4)");
    const queues = queueCount(c).queues;
    const multiQueue = queues > 1;
    await this.step("device", () => {
      this.ioUring = c.node.device.ioUring && this.probeIoUring();
      // A device of our name already here belongs to someone else (a dead
      // instance's was removed by the reclaim step): joining it as a further
      // queue would split its traffic with a stranger.
      if (this.kernel.linkExists(c.node.device.name)) {
        throw new Error(`device ${c.node.device.name} already exists: another overlayd runs in this network namespace (or something else owns that name); stop it, or run \`overlayd cleanup\``);
      }
      this.tun = openTun({ name: c.node.device.name, mode: d.node.mode, vnetHdr: offloads, multiQueue });
      this.record.device = this.tun.name;
      // Promise the kernel we complete checksums and segment TCPv4 (with ECN),
      // and TCPv6 with node.ipv6 (TCP right behind the IPv6 header; see
      // assembly/offload/tso.ts).
      const tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN | (d.overlay6 !== 0n ? TUN_F_TSO6 : 0);
      if (offloads) setTunOffload(this.tun, tso);
      this.tunTso6 = offloads && (tso & TUN_F_TSO6) !== 0;
      for (let q = 1; q < queues; q++) {
        const t = openTun({ name: this.tun.name, mode: d.node.mode, vnetHdr: offloads, multiQueue });
        if (offloads) setTunOffload(t, tso);
        this.queueTuns.push(t);
      }
      return () => {
        // Closing the last queue deletes the (non-persistent) device, and with it its routes and sysctls.
        for (const t of this.queueTuns.splice(0)) closeTun(t);
        if (this.tun) closeTun(this.tun);
        this.tun = undefined;
        this.tunTso6 = false;
        this.record.device = undefined;
      };
    });
    const dev = this.tun!.name;
    await this.step("link", () => {
      // An IPv4-only overlay: without this the kernel sends IPv6 router and
      // neighbour solicitations into the device, which the data path drops.
      // Before the link goes up, or the first of them is already queued.
      // Dual-stack (node.ipv6): IPv6 on, the overlay address without
      // duplicate address detection (it is ours alone; DAD would hold it
      // back as tentative for a second).
      const six = d.overlay6 !== 0n;
      this.sysctl(`net.ipv6.conf.${dev}.disable_ipv6`, six ? "0" : "1");
      this.configureLink(dev, [
        `link set dev ${dev} mtu ${this.deviceMtu}`,
        ...(d.node.mode === "tap" ? [`link set dev ${dev} address ${formatMac(d.node.devMac)}`] : []),
        `addr replace ${u32ToIp(d.node.overlay)}/32 dev ${dev}`,
        // The kernel queues packets for us here while a batch is in flight.
        `link set dev ${dev} txqueuelen 4096`,
        `link set dev ${dev} up`,
        ...(six ? [`addr replace ${bigintToIpv6(d.overlay6)}/128 dev ${dev} nodad`] : []),
      ]);
    });
    await this.step("sysctls", () => {
      // We route between the tunnel and local pods, and our ICMP errors come
      // from the node's own overlay address: let the kernel accept those.
      const undo = this.sysctl("net.ipv4.ip_forward", "1");
      this.sysctl(`net.ipv4.conf.${dev}.accept_local`, "1");
      this.sysctl(`net.ipv4.conf.${dev}.rp_filter`, "0");
      const undo6 = d.overlay6 !== 0n ? this.sysctl("net.ipv6.conf.all.forwarding", "1") : undefined;
      return () => {
        undo6?.();
        undo?.();
      };
    });
    await this.step("gso-tap", () => (c.tunnel.kernelGso ? this.setupGsoTap(queues) : undefined));
    await this.step("routes", () => {
      const errs = this.kernelRoutes.sync(this.kernelRouteList(d));
      if (errs.length) {
        this.kernelRoutes.removeAll();
        throw new Error(`installing routes: ${errs.join("; ")}`);
      }
      return () => {
        const left = this.kernelRoutes.removeAll();
        if (left.length) throw new Error(left.join("; "));
      };
    });
    await this.step("nat", () => {
      if (!d.nat.enabled) return undefined;
      const plan = this.natPlan(d);
      const undo = () => {
        this.natApplied = undefined;
        this.nodeNat.teardown();
        this.record.nat = undefined;
      };
      try {
        this.nodeNat.apply(plan);
      } catch (e) {
        this.record.nat = this.nodeNat.record();
        this.undos.push({ step: "nat", undo }); // whatever got in comes out
        throw e;
      }
      this.natApplied = plan;
      this.record.nat = this.nodeNat.record();
      return undo;
    });
  }

  /** Undo every step done, last first. Returns what could not be undone. */
  undoAll(): string[] {
    const errors: string[] = [];
    for (const { step, undo } of this.undos.splice(0).reverse()) {
      try {
        undo();
      } catch (e) {
        errors.push(`${step}: ${(e as Error).message}`);
      }
    }
    this.saveRecord();
    return errors;
  }

  /** Persist what is installed now (after a step, or a reload's NAT change). */
  saveRecord(): void {
    this.record.nat = this.nodeNat.record();
    this.record.routes = this.kernelRoutes.list();
    try {
      writeRecord(this.config.node.stateDir, this.record);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "cannot write the install record");
    }
  }

  /**
   * A reload's kernel part: the pod routes, then the NAT plumbing (none:
   * torn down). When either fails, both go back to what ran before and the
   * errors are returned; empty: applied and recorded.
   */
  applyReload(routes: KernelRoute[], nat: NatPlan | undefined): string[] {
    const oldRoutes = this.kernelRoutes.list();
    const routeErrors = this.kernelRoutes.sync(routes);
    if (routeErrors.length) {
      const back = this.kernelRoutes.sync(oldRoutes);
      this.saveRecord();
      return [...routeErrors.map((e) => `routes: ${e}`), ...back.map((e) => `rolling back routes: ${e}`)];
    }
    try {
      if (nat) this.nodeNat.apply(nat);
      else this.nodeNat.teardown();
    } catch (e) {
      const errors = [`NAT plumbing: ${(e as Error).message}`];
      try {
        if (this.natApplied) this.nodeNat.apply(this.natApplied);
        else this.nodeNat.teardown();
      } catch (e2) {
        errors.push(`rolling back NAT plumbing: ${(e2 as Error).message}`);
      }
      errors.push(...this.kernelRoutes.sync(oldRoutes).map((x) => `rolling back routes: ${x}`));
      this.saveRecord();
      return errors;
    }
    this.natApplied = nat;
    this.saveRecord();
    return [];
  }

  /** Switch to a new config (after a reload applied). */
  adopt(config: Config, derived: DerivedTables, deviceMtu: number): void {
    this.config = config;
    this.derived = derived;
    this.deviceMtu = deviceMtu;
  }

  /** One `ip -batch` of link settings, in order; throws naming what failed. */
  private configureLink(dev: string, lines: string[]): void {
    const errors = this.kernel.ipBatch(lines);
    if (errors.length) throw new Error(`configuring ${dev}: ${errors.join("; ")}`);
  }

  /** Set a sysctl; a global one changed is recorded with its old value and returns its undo. */
  private sysctl(key: string, value: string): (() => void) | undefined {
    const old = setSysctl(key, value);
    if (old === undefined || old === value || !GLOBAL_SYSCTL.test(key)) return undefined;
    this.record.sysctls.push({ key, old });
    return () => {
      setSysctl(key, old);
      this.record.sysctls = this.record.sysctls.filter((s) => s.key !== key);
    };
  }

  /** Whether an io_uring can be set up (the kernel may lack it or forbid it). */
  private probeIoUring(): boolean {
    try {
      new TunRing(2).close();
      return true;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "io_uring is not available: the tun gets one read()/write() per packet");
      return false;
    }
  }

  /** tunnel.kernelGso: a tap whose writes carry UDP tunnel GSO; the kernel
   *  routes what we write to it (our own VXLAN packets, from the node's
   *  address) out to the underlay. Falls back to UDP GSO with a warning. */
  private setupGsoTap(queues: number): (() => void) | undefined {
    const name = `${this.tun!.name}-gso`.slice(0, 15);
    const flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
    const taps: TunDevice[] = [];
    try {
      for (let q = 0; q < queues; q++) {
        const t = openTun({ name, mode: "tap", vnetHdr: true, multiQueue: queues > 1 });
        taps.push(t);
        // struct virtio_net_hdr_v1_hash_tunnel: 12 + hash 8 + two offsets.
        if (setVnetHdrSize(t, 24) !== 24) throw new Error("the tap refused a 24-byte virtio_net_hdr");
        setTunOffload(t, flags);
      }
    } catch (e) {
      for (const t of taps) closeTun(t);
      this.log.warn({ err: (e as Error).message }, "tunnel.kernelGso: the kernel has no UDP tunnel GSO on taps (Linux 6.17+); VXLAN leaves with UDP GSO");
      return undefined;
    }
    this.gsoTaps = taps;
    this.record.gsoTap = name;
    const undo = () => {
      for (const t of this.gsoTaps.splice(0)) closeTun(t);
      this.record.gsoTap = undefined;
    };
    setSysctl(`net.ipv6.conf.${name}.disable_ipv6`, "1");
    // Our frames come from the node's own address: accept that on this
    // link. The strict reverse-path check fails them (the address is not
    // routed through the tap); the kernel applies the larger of this link's
    // and conf.all's rp_filter, so loose (2) here is enough whatever conf.all
    // says, once the link has an address (a link without one fails any
    // reverse-path check): the node's overlay address, as on the tun.
    setSysctl(`net.ipv4.conf.${name}.accept_local`, "1");
    setSysctl(`net.ipv4.conf.${name}.rp_filter`, "2");
    this.configureLink(name, [`addr replace ${u32ToIp(this.derived.node.overlay)}/32 dev ${name}`, `link set dev ${name} up`]);
    this.gsoTapMac = readFileSync(`/sys/class/net/${name}/address`, "utf8").trim();
    this.log.info({ device: name }, "tunnel.kernelGso: VXLAN super-frames leave through the kernel's UDP tunnel GSO");
    return undo;
  }

  /** What the node needs so NAT traffic reaches the data path. Throws when the underlay device cannot be found. */
  natPlan(d: DerivedTables, c: Config = this.config): NatPlan {
    const underlay = u32ToIp(d.nat.nodeIp);
    const underlayDevice = c.node.underlay.device ?? this.kernel.deviceWithAddress(underlay);
    if (!underlayDevice) throw new Error(`no interface holds the underlay address ${underlay}; set node.underlay.device`);
    return {
      device: this.tun!.name, underlayDevice, underlayAddress: underlay, podCIDR: c.node.podCIDR,
      snatAddress: u32ToIp(d.nat.snatAddress), portMin: d.nat.portRange[0], portMax: d.nat.portRange[1],
      masquerade: d.nat.masquerade, nodePorts: d.nat.nodePorts, clusterIPs: d.nat.clusterIPs,
      table: d.nat.routeTable, rulePref: d.nat.rulePriority,
      ipv6: d.nat.ipv6 && { podCIDR: d.nat.ipv6.podCIDR, underlayAddress: d.nat.ipv6.underlayAddress, snatAddress: d.nat.ipv6.snatAddress, clusterIPs: d.nat.ipv6.clusterIPs },
    };
  }

  /** The kernel routes `d` asks for, with devices resolved. Throws when a direct route's gateway is unreachable. */
  kernelRouteList(d: DerivedTables, c: Config = this.config): KernelRoute[] {
    return d.kernelRoutes.map((r) => r.dev === "blackhole" ? { dst: r.dst, dev: "", type: "blackhole" as const } : {
      dst: r.dst,
      via: r.via,
      dev: r.dev === "tunnel" ? this.tun!.name : (c.node.underlay.device ?? this.underlayDevice(r.via)),
    });
  }

  /** The interface that reaches `via` (for direct routes when the config names no underlay device). */
  private underlayDevice(via?: string): string {
    if (!via) throw new Error("a direct route needs a gateway");
    const out = this.kernel.routeDevice(via);
    if (!out) throw new Error(`no interface reaches ${via}; set node.underlay.device`);
    return out;
  }
}
