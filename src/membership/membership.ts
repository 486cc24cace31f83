// Cluster membership from etcd, as flannel does it: a node leases a pod CIDR
// from the cluster network, publishes itself (underlay address, VTEP MAC,
// encapsulation preference) under that subnet's key attached to a TTL'd etcd
// lease that it keeps alive, and watches every other subnet key. The daemon
// asks `loadConfig()` for the config file merged with the lease and the live
// peers, and re-derives and applies the tables whenever `onChange` fires, the
// same path a config reload takes.
//
// Failure handling:
// - two nodes racing for a subnet: each claim is a transaction that only
//   succeeds when the key does not exist (or is our own previous record); the
//   loser tries the next candidate;
// - our lease lost (etcd unreachable for longer than the TTL, or partitioned):
//   a new lease re-claims the same subnet; when another node took it
//   meanwhile, the pod CIDR this node runs with is no longer its own and
//   `onFatal` asks the daemon to exit (its supervisor restarts it into a new
//   lease);
// - etcd unavailable: nothing changes in the tables (forwarding goes on with
//   the last known peers); the client reconnects, and every reconnect of the
//   watch resyncs the whole peer set (deletes missed while away included).
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, type IBackoff } from "cockatiel";
import { Etcd3, isRecoverableError, type IKeyValue, type Lease, type Watcher } from "etcd3";
import type { Logger } from "pino";
import { formatPath, loadConfigFile, validateConfig, type LoadResult } from "../config/load.js";
import { EtcdSchema, type EtcdConfig } from "../config/schema.js";
import type { EtcdMetrics } from "../control/metrics.js";
import { ipv6SubnetFor, subnetCandidates } from "./allocate.js";
import { composeDocument, etcdSection, mergePeers, readConfigDocument, validateMerged, type LiveRecord, type MergeResult } from "./merge.js";
import {
  NetworkConfigSchema, networkKey, nodeKey, NODES, parseRecord, subnetKey, subnetOfKey, subnetsPrefix, type NetworkConfig, type NodeRecord,
} from "./records.js";

export interface MembershipOptions {
  configPath: string;
  /** `overlayd run --etcd-endpoints/--etcd-prefix`: on top of the file's etcd section. */
  cli?: { endpoints?: string[]; prefix?: string };
  log: Logger;
  metrics: EtcdMetrics;
  /** The peer set changed: load the config again and apply it. */
  onChange: (reason: string) => void;
  /** This node can no longer keep the pod CIDR it runs with. */
  onFatal: (reason: string) => void;
  /** How long start() keeps trying to reach etcd (default 60 s). */
  connectTimeoutMs?: number;
  /** Tests: runs between listing the subnets and claiming one (to lose a race on purpose). */
  beforeClaim?: (candidates: readonly string[]) => Promise<void>;
}

/** Where a peer in the running tables came from, for `show peers`. */
export interface PeerOrigin {
  source: "config" | "etcd";
  /** etcd peers: seconds since the peer leased its subnet. */
  leaseAgeSeconds?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const key = (kv: IKeyValue) => kv.key.toString();

export class Membership {
  private readonly client: Etcd3;
  private readonly settings: EtcdConfig;
  private readonly etcdDoc: Record<string, unknown>;
  private readonly name: string;
  private lease?: Lease;
  private watcher?: Watcher;
  private podCIDR = "";
  /** Dual-stack: the IPv6 subnet that goes with podCIDR (allocate.ts ipv6SubnetFor); undefined: none. */
  private podCIDR6: string | undefined;
  private record?: NodeRecord;
  /** Live subnet keys: subnet → record and the revision it was written at. */
  private live = new Map<string, LiveRecord>();
  private lastMerge: MergeResult = { peers: [], dropped: [] };
  private droppedLogged = "";
  private stopped = false;
  private reacquiring = false;
  private disconnectedAt?: number;
  private resyncTimer?: NodeJS.Timeout;
  /** Revision of the last full listing: the watch starts right after it, so nothing put in between is missed. */
  private listedAt = 0;

  private constructor(private readonly opts: MembershipOptions, settings: EtcdConfig, etcdDoc: Record<string, unknown>, name: string) {
    this.settings = settings;
    this.etcdDoc = etcdDoc;
    this.name = name;
    this.client = new Etcd3({
      hosts: settings.endpoints.map((e) => (e.startsWith("http://") ? e : `http://${e}`)),
      // Come back quickly after an etcd restart: gRPC's reconnect backoff
      // otherwise grows to two minutes, the library's breaker parks a host for 5 s.
      grpcOptions: { "grpc.initial_reconnect_backoff_ms": 200, "grpc.max_reconnect_backoff_ms": 1000 },
      dialTimeout: 3000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5000 }),
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
        // etcd3 calls .next() on it as on its own default ExponentialBackoff (typed as IBackoff there).
        watchBackoff: new ExponentialBackoff({ initialDelay: 200, maxDelay: 1000 }) as unknown as IBackoff<unknown>,
      },
    });
  }

  get log(): Logger {
    return this.opts.log;
  }

  /** Whether the config file or the command line turns etcd membership on. */
  static enabled(configPath: string, cli?: MembershipOptions["cli"]): boolean {
    const read = readConfigDocument(configPath);
    return read.ok && etcdSection(read.doc, cli) !== undefined;
  }

  /**
   * Membership for the config at `opts.configPath`, or undefined when neither
   * the file nor the command line turns etcd on (or the file does not parse:
   * loading it reports why). Resolves once this node holds its subnet, has
   * published its record and knows the current peers; throws when the etcd
   * settings are invalid or etcd stays unreachable.
   */
  static async start(opts: MembershipOptions): Promise<Membership | undefined> {
    const read = readConfigDocument(opts.configPath);
    if (!read.ok) return undefined;
    const etcdDoc = etcdSection(read.doc, opts.cli);
    if (!etcdDoc) return undefined;
    const parsed = EtcdSchema.safeParse(etcdDoc);
    if (!parsed.success) {
      const errors = parsed.error.issues.map((i) => `${formatPath(["etcd", ...i.path])}: ${i.message}`);
      throw new Error(`invalid etcd settings:\n  ${errors.join("\n  ")}`);
    }
    const node = read.doc.node as Record<string, unknown> | undefined;
    const name = typeof node?.name === "string" ? node.name : "";
    if (!name) {
      const loaded = loadConfigFile(opts.configPath);
      throw new Error(`invalid config ${opts.configPath}:\n  ${loaded.ok ? "node.name: is required" : loaded.errors.join("\n  ")}`);
    }
    const m = new Membership(opts, parsed.data, { ...etcdDoc, ...parsed.data }, name);
    try {
      await m.join(read.doc);
    } catch (e) {
      await m.stop();
      throw e;
    }
    return m;
  }

  /** The config file merged with this node's lease and the live etcd peers (see merge.ts). */
  loadConfig(): LoadResult {
    const read = readConfigDocument(this.opts.configPath);
    if (!read.ok) return loadConfigFile(this.opts.configPath);
    const own = this.live.get(this.podCIDR);
    const others = [...this.live.values()].filter((l) => l !== own);
    const { result, merged } = validateMerged(read.doc, this.etcdDoc, this.podCIDR, mergePeers(read.doc, this.podCIDR, others, this.podCIDR6), validateConfig, this.podCIDR6);
    if (result.ok) {
      this.lastMerge = merged;
      this.opts.metrics.peers.set(merged.peers.length);
      const dropped = JSON.stringify(merged.dropped);
      if (dropped !== this.droppedLogged) {
        this.droppedLogged = dropped;
        for (const d of merged.dropped) {
          this.opts.metrics.events.inc({ event: "dropped_peer" });
          this.log.warn(d, "etcd peer left out of the tables");
        }
      }
    }
    return result;
  }

  /** Where the peer called `name` came from. */
  origin(name: string): PeerOrigin {
    const p = this.lastMerge.peers.find((x) => x.name === name);
    if (!p) return { source: "config" };
    const rec = this.live.get(p.podCIDRs[0])?.record;
    const t = rec ? Date.parse(rec.leasedAt) : NaN;
    return { source: "etcd", leaseAgeSeconds: Number.isFinite(t) ? Math.max(0, Math.round((Date.now() - t) / 1000)) : undefined };
  }

  status() {
    return {
      endpoints: this.settings.endpoints,
      prefix: this.settings.prefix,
      podCIDR: this.podCIDR,
      ...(this.podCIDR6 ? { ipv6PodCIDR: this.podCIDR6 } : {}),
      leaseTTL: this.settings.leaseTTL,
      connected: this.disconnectedAt === undefined,
      livePeers: this.lastMerge.peers.length,
      dropped: this.lastMerge.dropped,
    };
  }

  /** The pod CIDR this node holds. */
  get subnet(): string {
    return this.podCIDR;
  }

  // --- joining ---------------------------------------------------------------------

  private async join(doc: Record<string, unknown>): Promise<void> {
    const deadline = Date.now() + (this.opts.connectTimeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.claimSubnet(doc);
        break;
      } catch (e) {
        const err = e as Error;
        if (!isRecoverableError(err) || Date.now() > deadline) throw new Error(`etcd ${this.settings.endpoints.join(",")}: ${err.message}`);
        this.setConnected(false);
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ err: err.message, endpoints: this.settings.endpoints }, "etcd unreachable; retrying");
        await sleep(1000);
      }
    }
    this.setConnected(true);
    this.startWatch();
    this.resyncTimer = setInterval(() => void this.resync("periodic"), 30_000);
    this.resyncTimer.unref();
    this.log.info({ podCIDR: this.podCIDR, peers: this.live.size - 1, prefix: this.settings.prefix, leaseTTL: this.settings.leaseTTL }, "joined the cluster through etcd");
  }

  private async networkConfig(): Promise<NetworkConfig> {
    const s = this.settings;
    if (s.network !== undefined) return { network: s.network, subnetLength: s.subnetLength ?? 24, ipv6Network: s.ipv6Network, ipv6SubnetLength: s.ipv6SubnetLength ?? 64 };
    const at = networkKey(this.settings.prefix);
    const text = await this.client.get(at).string();
    if (text === null) throw new Error(`no cluster network: set etcd.network in the config or put {"network": "10.x.0.0/16", "subnetLength": 24} at ${at}`);
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new Error(`${at} is not JSON`);
    }
    const r = NetworkConfigSchema.safeParse(doc);
    if (!r.success) throw new Error(`${at}: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return {
      network: r.data.network, subnetLength: s.subnetLength ?? r.data.subnetLength,
      ipv6Network: s.ipv6Network ?? r.data.ipv6Network, ipv6SubnetLength: s.ipv6SubnetLength ?? r.data.ipv6SubnetLength,
    };
  }

  /** List the prefix, pick candidates, claim the first one a transaction lets us have. */
  private async claimSubnet(doc: Record<string, unknown>): Promise<void> {
    const net = await this.networkConfig();
    const prefix = this.settings.prefix;
    const listing = await this.client.getAll().prefix(prefix.replace(/\/+$/, "") + "/").exec();
    this.setConnected(true);
    const node = (doc.node ?? {}) as Record<string, unknown>;
    const underlay = (node.underlay as Record<string, unknown> | undefined)?.address;
    const live = new Map<string, { holder: string; kv: IKeyValue }>();
    const reserved = new Map<string, string>();
    let previous: string | undefined;
    for (const kv of listing.kvs) {
      const k = key(kv);
      const cidr = subnetOfKey(prefix, k);
      if (cidr !== undefined) {
        const p = parseRecord(cidr, kv.value.toString());
        if (p.ok && p.record.node === this.name && p.record.underlay !== underlay) {
          // Two machines with one name would take turns at one subnet (flannel checks the public IP the same way).
          throw new Error(`node name ${this.name} is live in etcd from underlay ${p.record.underlay} (${cidr}); rename this node, or wait up to ${this.settings.leaseTTL} s if that was this node before an address change`);
        }
        if (p.ok) live.set(cidr, { holder: p.record.node, kv });
        else live.set(cidr, { holder: "(invalid record)", kv });
        continue;
      }
      const nodesAt = prefix.replace(/\/+$/, "") + NODES;
      if (k.startsWith(nodesAt)) {
        const owner = k.slice(nodesAt.length);
        try {
          const c = (JSON.parse(kv.value.toString()) as { podCIDR?: unknown }).podCIDR;
          if (typeof c === "string") {
            if (owner === this.name) previous = c;
            else reserved.set(c, owner);
          }
        } catch {
          // not ours to judge; ignore
        }
      }
    }
    const fixed = typeof node.podCIDR === "string" ? node.podCIDR : undefined;
    const filePeers = Array.isArray(doc.peers) ? (doc.peers as Array<Record<string, unknown>>) : [];
    const avoid = filePeers.flatMap((p) => (Array.isArray(p?.podCIDRs) ? p.podCIDRs.filter((c): c is string => typeof c === "string") : []));
    const candidates = fixed !== undefined
      ? [fixed]
      : subnetCandidates({ ...net, name: this.name, previous, live: new Map([...live].map(([c, v]) => [c, v.holder])), reserved, avoid });
    if (candidates.length === 0) throw new Error(`no free /${net.subnetLength} left in ${net.network}`);

    await this.opts.beforeClaim?.(candidates);
    const lease = this.client.lease(this.settings.leaseTTL);
    this.watchLease(lease);
    const leaseId = await lease.grant();
    for (const cidr of candidates) {
      const holder = live.get(cidr);
      if (holder && holder.holder !== this.name) {
        if (fixed !== undefined) throw new Error(`node.podCIDR ${fixed} is leased to ${holder.holder} in etcd`);
        continue;
      }
      const six = net.ipv6Network !== undefined ? ipv6SubnetFor(net.network, net.subnetLength, cidr, net.ipv6Network, net.ipv6SubnetLength) : undefined;
      const loaded = validateConfig(composeDocument(doc, this.etcdDoc, cidr, [], six));
      if (!loaded.ok) throw new Error(`invalid config ${this.opts.configPath}:\n  ${loaded.errors.join("\n  ")}`);
      const record: NodeRecord = {
        node: this.name,
        underlay: loaded.config.node.underlay.address,
        podCIDR: cidr,
        vtepMac: loaded.config.node.device.vtepMac,
        encapsulation: this.settings.encapsulation,
        leasedAt: new Date().toISOString(),
        ...(six ? { ipv6PodCIDR: six } : {}),
        ...(this.settings.underlay6 && loaded.config.node.ipv6?.underlayAddress ? { underlay6: loaded.config.node.ipv6.underlayAddress } : {}),
      };
      if (await this.putRecord(record, leaseId, holder?.kv)) {
        this.podCIDR = cidr;
        this.podCIDR6 = six;
        this.record = record;
        this.lease = lease;
        this.opts.metrics.leaseTtl.set(this.settings.leaseTTL);
        this.live.clear();
        await this.resync("join", false);
        return;
      }
      this.log.info({ podCIDR: cidr }, "subnet taken by another node in the meantime; trying the next");
    }
    lease.release();
    throw new Error(`could not lease a subnet of ${net.network}: every candidate was taken concurrently`);
  }

  /** Write our record under its subnet key in a transaction: only if the key
   *  is absent, or still exactly `ours` (our previous record). Also remembers
   *  the subnet under nodes/<name> for the next start. */
  private async putRecord(record: NodeRecord, leaseId: string, ours?: IKeyValue): Promise<boolean> {
    const k = subnetKey(this.settings.prefix, record.podCIDR);
    const txn = ours ? this.client.if(k, "Mod", "==", ours.mod_revision) : this.client.if(k, "Create", "==", 0);
    const res = await txn
      .then(
        this.client.put(k).value(JSON.stringify(record)).lease(leaseId),
        this.client.put(nodeKey(this.settings.prefix, record.node)).value(JSON.stringify({ podCIDR: record.podCIDR })),
      )
      .commit();
    return res.succeeded;
  }

  // --- keeping the lease ---------------------------------------------------------------

  private watchLease(lease: Lease): void {
    lease.on("keepaliveSucceeded", () => {
      if (lease === this.lease) this.setConnected(true);
    });
    // Typed as a keepalive response by etcd3, emitted with the error.
    lease.on("keepaliveFailed", (res) => {
      const err = res as unknown as Error;
      if (lease !== this.lease || this.stopped) return;
      this.opts.metrics.events.inc({ event: "keepalive_failed" });
      this.setConnected(false);
      this.log.debug({ err: err.message }, "etcd lease keepalive failed");
    });
    lease.on("lost", (err) => {
      if (lease !== this.lease || this.stopped) return;
      this.opts.metrics.events.inc({ event: "lease_lost" });
      this.log.warn({ err: err.message, podCIDR: this.podCIDR }, "etcd lease lost; re-claiming the subnet under a new lease");
      void this.reacquire();
    });
  }

  /** A new lease for the subnet we run with; fatal when another node has it now. */
  private async reacquire(): Promise<void> {
    if (this.reacquiring || this.stopped || !this.record) return;
    this.reacquiring = true;
    try {
      const old = this.lease;
      while (!this.stopped) {
        try {
          const k = subnetKey(this.settings.prefix, this.podCIDR);
          const cur = (await this.client.get(k).exec()).kvs[0];
          if (cur) {
            const p = parseRecord(this.podCIDR, cur.value.toString());
            const holder = p.ok ? `${p.record.node} (${p.record.underlay})` : "(invalid record)";
            if (!p.ok || p.record.node !== this.name || p.record.underlay !== this.record.underlay) {
              this.opts.onFatal(`pod CIDR ${this.podCIDR} was leased to ${holder} while this node's etcd lease had run out; restart to lease another`);
              return;
            }
          }
          const lease = this.client.lease(this.settings.leaseTTL);
          const id = await lease.grant();
          this.lease = lease;
          this.watchLease(lease);
          if (await this.putRecord(this.record, id, cur)) {
            old?.release();
            this.opts.metrics.events.inc({ event: "lease_reacquired" });
            this.setConnected(true);
            this.log.info({ podCIDR: this.podCIDR, lease: id }, "subnet re-claimed under a new etcd lease");
            return;
          }
          lease.release();
          // Lost a race with a change to the key: look again.
        } catch (e) {
          this.setConnected(false);
          this.log.debug({ err: (e as Error).message }, "re-claiming the subnet failed; retrying");
          await sleep(1000);
        }
      }
    } finally {
      this.reacquiring = false;
    }
  }

  // --- watching peers ---------------------------------------------------------------------

  private startWatch(): void {
    const prefix = subnetsPrefix(this.settings.prefix);
    void this.client
      .watch()
      .prefix(prefix)
      .startRevision(String(this.listedAt + 1))
      .create()
      .then((w) => {
        if (this.stopped) {
          void w.cancel();
          return;
        }
        this.watcher = w;
        w.on("put", (kv) => this.onPut(kv));
        w.on("delete", (kv) => this.onDelete(kv));
        w.on("disconnected", (err) => {
          this.setConnected(false);
          this.log.warn({ err: err.message }, "etcd watch disconnected; forwarding on with the last known peers");
        });
        w.on("connected", () => {
          if (this.disconnectedAt !== undefined) void this.resync("watch reconnected");
        });
        w.on("error", (err) => this.log.warn({ err: err.message }, "etcd watch error"));
      })
      .catch((e) => {
        this.log.warn({ err: (e as Error).message }, "cannot watch etcd; retrying");
        if (!this.stopped) setTimeout(() => this.startWatch(), 1000).unref();
      });
  }

  private onPut(kv: IKeyValue): void {
    const cidr = subnetOfKey(this.settings.prefix, key(kv));
    if (cidr === undefined) return;
    this.opts.metrics.events.inc({ event: "put" });
    const p = parseRecord(cidr, kv.value.toString());
    if (!p.ok) {
      this.opts.metrics.events.inc({ event: "invalid_record" });
      this.log.warn({ key: key(kv), reason: p.reason }, "ignoring an invalid etcd record");
      if (this.live.delete(cidr)) this.changed(`etcd: ${cidr} now invalid`, true);
      return;
    }
    const prev = this.live.get(cidr);
    this.live.set(cidr, { record: p.record, modRevision: Number(kv.mod_revision) });
    const same = prev && JSON.stringify({ ...prev.record, leasedAt: "" }) === JSON.stringify({ ...p.record, leasedAt: "" });
    if (cidr === this.podCIDR && (p.record.node !== this.name || p.record.underlay !== this.record?.underlay)) {
      this.opts.onFatal(`pod CIDR ${cidr} is now leased to ${p.record.node} (${p.record.underlay}); restart to lease another`);
      return;
    }
    if (same) return;
    this.log.info({ node: p.record.node, podCIDR: cidr, underlay: p.record.underlay, encapsulation: p.record.encapsulation }, prev ? "etcd peer changed" : "etcd peer joined");
    this.opts.onChange(`etcd: ${p.record.node} ${prev ? "changed" : "joined"} (${cidr})`);
  }

  private onDelete(kv: IKeyValue): void {
    const cidr = subnetOfKey(this.settings.prefix, key(kv));
    if (cidr === undefined) return;
    this.opts.metrics.events.inc({ event: "delete" });
    const prev = this.live.get(cidr);
    this.live.delete(cidr);
    if (cidr === this.podCIDR) {
      // Our record vanished (our lease ran out at the server, or someone deleted it).
      if (!this.stopped) {
        this.log.warn({ podCIDR: cidr }, "this node's etcd record disappeared; re-claiming");
        void this.reacquire();
      }
      return;
    }
    if (!prev) return;
    this.log.info({ node: prev.record.node, podCIDR: cidr }, "etcd peer left");
    this.changed(`etcd: ${prev.record.node} left (${cidr})`, true);
  }

  /** Replace the live set with a fresh listing; onChange when it differs. */
  private async resync(why: string, notify = true): Promise<void> {
    if (this.stopped) return;
    let listing;
    try {
      listing = await this.client.getAll().prefix(subnetsPrefix(this.settings.prefix)).exec();
    } catch (e) {
      this.setConnected(false);
      this.log.debug({ err: (e as Error).message, why }, "etcd resync failed");
      return;
    }
    this.setConnected(true);
    this.listedAt = Math.max(this.listedAt, Number(listing.header.revision));
    this.opts.metrics.events.inc({ event: "resync" });
    const next = new Map<string, LiveRecord>();
    for (const kv of listing.kvs) {
      const cidr = subnetOfKey(this.settings.prefix, key(kv));
      if (cidr === undefined) continue;
      const p = parseRecord(cidr, kv.value.toString());
      if (p.ok) next.set(cidr, { record: p.record, modRevision: Number(kv.mod_revision) });
      else this.opts.metrics.events.inc({ event: "invalid_record" });
    }
    const render = (m: Map<string, LiveRecord>) => JSON.stringify([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([c, l]) => [c, l.record]));
    const changed = render(next) !== render(this.live);
    this.live = next;
    const own = next.get(this.podCIDR);
    if (this.podCIDR && own && (own.record.node !== this.name || own.record.underlay !== this.record?.underlay)) {
      this.opts.onFatal(`pod CIDR ${this.podCIDR} is now leased to ${own.record.node}; restart to lease another`);
      return;
    }
    if (this.podCIDR && !own && notify) void this.reacquire();
    if (changed && notify) {
      this.log.info({ why, peers: [...next.values()].filter((l) => l.record.node !== this.name).map((l) => l.record.node) }, "etcd resync changed the peer set");
      this.changed(`etcd resync (${why})`, true);
    }
  }

  /** Tell the daemon to load and apply again (`removal` is kept for the
   *  log; the data path handles peers shifting slots since the peers.ts fix). */
  private changed(reason: string, removal: boolean): void {
    this.opts.onChange(removal ? `${reason} (peer removed)` : reason);
  }

  private setConnected(up: boolean): void {
    if (up && this.disconnectedAt !== undefined) {
      this.log.info({ downSeconds: Math.round((Date.now() - this.disconnectedAt) / 100) / 10 }, "etcd reachable again");
      this.disconnectedAt = undefined;
    } else if (!up && this.disconnectedAt === undefined) {
      this.disconnectedAt = Date.now();
    }
    this.opts.metrics.connected.set(up ? 1 : 0);
  }

  /** Stop watching and renewing. The lease is not revoked: the record stays
   *  until its TTL runs out, so a quick restart keeps its subnet and peers
   *  keep their routes meanwhile (as flannel keeps its lease). Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.resyncTimer);
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel().catch(() => undefined);
    this.lease?.release();
    this.client.close();
  }
}
