// The node config: what one overlayd needs to know about itself, the tunnel
// and its peers. Validated with zod; every message names the field and the
// reason, and defaults that depend on other fields (device MTU, overlay
// address, VTEP MAC, peer VTEP addresses) are filled in so the rest of the
// control plane reads one fully resolved `Config`.
//
// Field checks (formats, ranges) live on the fields; checks across fields
// (duplicates, overlaps, references) run once the whole document parsed, in
// `crossCheck` below. Formatting the issues into "path: reason" lines is
// load.ts's job.
import { z } from "zod";
import {
  cidrContains, cidrFirst, cidrOverlaps, formatMac, ipToU32, isMulticastMac, macFromIp, parseCidr, parseMac, tryIpToU32,
  tryParseCidr, tryParseListen, tryParseMac, u32ToIp, UNIX_PATH_MAX, type Cidr, type Parsed,
} from "./net.js";
import { bigintToIpv6, cidr6Contains, cidr6Overlaps, formatCidr6, ipv6ToBigint, parseCidr6, tryParseCidr6, tryParseIpv6, type Cidr6 } from "./net6.js";
import { MAX_BACKENDS, MAX_FRONTENDS, MAX_NEXTHOPS, MAX_PEERS, TBL8_GROUPS } from "../dataplane/limits.js";

// --- field types ---------------------------------------------------------------

function fromParser<T>(parse: (s: string) => Parsed<T>) {
  return z.string().superRefine((v, ctx) => {
    const r = parse(v);
    if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason });
  });
}

/** Dotted-quad IPv4 address. */
const ipv4 = fromParser(tryIpToU32);

/** An address a node or peer can use on the underlay: not 0.0.0.0/8, multicast or reserved/broadcast. */
const unicastIpv4 = fromParser((s) => {
  const r = tryIpToU32(s);
  if (!r.ok) return r;
  const top = r.value >>> 24;
  if (top === 0) return { ok: false, reason: `${JSON.stringify(s)} is in 0.0.0.0/8, not a usable unicast address` };
  if (top >= 224) return { ok: false, reason: `${JSON.stringify(s)} is multicast/reserved/broadcast, not a usable unicast address` };
  return r;
});

/** IPv4 CIDR with no host bits set. */
const cidr = fromParser(tryParseCidr);

/** IPv6 address (RFC 4291 text; normalised to RFC 5952's compressed form). */
const ipv6 = fromParser(tryParseIpv6).transform((s) => bigintToIpv6(ipv6ToBigint(s)));

/** An IPv6 address a peer can be reached at on the underlay: global or
 *  unique-local unicast; not ::, ::1, link-local (it would need a zone),
 *  multicast or IPv4-mapped. Normalised as `ipv6`. */
const unicastIpv6 = fromParser((s) => {
  const r = tryParseIpv6(s);
  if (!r.ok) return { ok: false as const, reason: r.reason };
  const v = r.value;
  const why =
    v <= 1n ? "the unspecified or loopback address"
    : v >> 120n === 0xffn ? "multicast"
    : v >> 118n === 0x3fan ? "link-local (fe80::/10 needs an interface)"
    : v >> 32n === 0xffffn ? "IPv4-mapped (give the IPv4 address as `underlay`)"
    : undefined;
  return why ? { ok: false as const, reason: `${JSON.stringify(s)} is ${why}, not a usable unicast address` } : { ok: true as const, value: s };
}).transform((s) => bigintToIpv6(ipv6ToBigint(s)));

/** IPv6 CIDR with no host bits set; normalised to the compressed form. */
const cidr6 = fromParser(tryParseCidr6).transform((s) => formatCidr6(parseCidr6(s)));

/** A unicast MAC; normalised to lower-case colon form. */
const unicastMac = fromParser((s) => {
  const r = tryParseMac(s);
  if (!r.ok) return r;
  if (r.value === 0n) return { ok: false, reason: `${JSON.stringify(s)} is the all-zero MAC` };
  if (isMulticastMac(r.value)) {
    return { ok: false, reason: `${JSON.stringify(s)} is a multicast/broadcast MAC (low bit of the first octet set); use a unicast one, e.g. 0e:...` };
  }
  return r;
}).transform((s) => formatMac(parseMac(s)));

function intIn(lo: number, hi: number) {
  return z.number().superRefine((v, ctx) => {
    if (!Number.isInteger(v) || v < lo || v > hi) ctx.addIssue({ code: "custom", message: `${v} is not an integer in ${lo}..${hi}` });
  });
}

const port = intIn(1, 65535);

/** Node and peer names: Kubernetes node-name-like (DNS subdomain characters). */
const name = z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$/, {
  error: (iss) => `${JSON.stringify(iss.input)} is not a valid name (letters, digits, '.', '_', '-'; starts with a letter or digit)`,
});

/** Linux interface names: 1..15 bytes, no '/', ':' or whitespace, not "." or "..". */
const ifname = z.string().superRefine((v, ctx) => {
  if (v.length === 0 || v.length > 15 || /[\s/:]/.test(v) || v === "." || v === "..") {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is not a Linux interface name (1..15 characters, no '/', ':' or spaces)` });
  }
});

/** Admin API address: "host:port" or an absolute unix socket path. */
const listen = fromParser(tryParseListen);

/** The metrics listener: "host:port" of a server of its own (it serves /metrics and /healthz only), or false for none. */
const metricsAt = z.union([z.literal(false), z.string().superRefine((v, ctx) => {
  const r = tryParseListen(v);
  if (!r.ok || r.value.kind !== "tcp") {
    const was = v.startsWith("/") ? " (/metrics is always on the admin API; admin.metrics is a listener of its own)" : "";
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is not host:port${was}` });
  }
})]);

/** An absolute file path. */
const absPath = z.string().regex(/^\/[^\0]*$/, { error: (iss) => `${JSON.stringify(iss.input)} is not an absolute path` });

/** Path of the metrics endpoint (on the admin API and on the metrics listener). */
export const DEFAULT_METRICS_PATH = "/metrics";
/** The metrics listener when admin.metrics is left out: Prometheus scrapes it; it serves /metrics and /healthz only. */
export const DEFAULT_METRICS_LISTEN = "127.0.0.1:9469";
/** admin.conntrackDumpRate's default, flows/s (measured in bench/conntrack-dump.ts: see the README). */
export const DEFAULT_CT_DUMP_RATE = 10_000;
/** The admin API's unix socket, in node.stateDir, when admin.listen is left out. */
export const ADMIN_SOCKET_NAME = "admin.sock";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export const ENCAPSULATIONS = ["vxlan", "ipip", "direct", "auto"] as const;
export const DEVICE_MODES = ["tun", "tap"] as const;
/** Reserved `via` words of a static route (so no peer may be called this). */
export const ROUTE_TARGETS = ["local", "blackhole"] as const;

/** Bytes VXLAN adds (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14); the default device MTU leaves room for it. */
export const VXLAN_OVERHEAD = 50;

// --- document shape --------------------------------------------------------------

const TunnelSchema = z.strictObject({
  /** VXLAN network identifier; both ends must agree (Hand CNI-7 uses `id 100`). */
  vni: intIn(1, 16777215).default(1),
  /** VXLAN UDP destination port (IANA 4789; the kernel's vxlan default is 8472). */
  port: port.default(4789),
  /** Outer UDP source ports, chosen by flow hash for ECMP entropy (RFC 7348 §5). */
  sourcePortRange: z.tuple([port, port]).default([32768, 60999]),
  outerTtl: intIn(1, 255).default(64),
  /** MTU of the underlay path; the data path refuses packets that do not fit
   *  once encapsulated. Default: the underlay interface's MTU, read at start
   *  and followed while running (src/daemon/mtu.ts); a value above it is
   *  refused at start. */
  underlayMtu: intIn(576, 65535).optional(),
  /** UDP GSO/GRO for VXLAN on the underlay: a flow's datagrams leave as one
   *  send and arrive as one buffer; outer source ports then come from 8
   *  sockets. Default: as node.device.offloads. */
  udpOffloads: z.boolean().optional(),
  /** Let the kernel segment VXLAN: a TCP super-frame from a pod leaves as one
   *  encapsulated packet written to a tap (<device>-gso) with UDP tunnel GSO
   *  (Linux 6.17+), which the kernel forwards to the underlay and the NIC
   *  (or the kernel's GSO) cuts into datagrams, as for its own vxlan. Needs
   *  node.device.offloads, no NAT, and a FORWARD chain that lets the node's
   *  VXLAN packets from that tap through. Default off; without kernel
   *  support overlayd warns and uses UDP GSO. */
  kernelGso: z.boolean().default(false),
});

const NodeSchema = z.strictObject({
  name,
  underlay: z.strictObject({
    /** This node's address on the underlay: the outer source address. */
    address: unicastIpv4,
    /** Length of the underlay subnet's prefix: peers inside it are "same subnet" (encapsulation auto → direct). */
    prefixLength: intIn(0, 32),
    /** Underlay interface for direct routes; looked up with `ip route get` when absent. */
    device: ifname.optional(),
  }),
  /** This node's pods' prefix (delivered locally). With `etcd:` it may be left out: src/membership/ leases one and fills it in. */
  podCIDR: cidr,
  /** Dual-stack (issue 16): this node's IPv6 pods. IPv6 pod traffic to
   *  peers that have `ipv6` too is carried over the IPv4 underlay: VXLAN
   *  (inner EtherType 0x86DD) to VXLAN and direct peers (the kernel has no
   *  IPv6 route through an IPv4 gateway), IPv6-in-IPv4 (protocol 41, the
   *  kernel's sit) to IPIP peers. NAT66 as NAT44: IPv6 services
   *  (services[].clusterIP6), and masquerade with `underlayAddress`. */
  ipv6: z.strictObject({
    /** This node's IPv6 pod prefix (delivered locally), e.g. a /64. */
    podCIDR: cidr6,
    /** Source of ICMPv6 errors, assigned to the device. Default: the first address of podCIDR. */
    overlayAddress: ipv6.optional(),
    /** The node's IPv6 address on its underlay interface (assigned there, not by
     *  overlayd): pods' IPv6 to destinations no route covers is masqueraded to it
     *  when nat.masquerade is on. Without it pods' IPv6 is never masqueraded. */
    underlayAddress: ipv6.optional(),
  }).optional(),
  /** Where overlayd keeps its run-time files: the instance lock, the record
   *  of what it installed on the node (reclaimed after a crash), the node
   *  facts the CNI plugin reads (pod CIDR, MTU), the admin socket. One
   *  overlayd per directory. Several daemons on one host (namespaces in
   *  tests and the demo) each need their own. */
  stateDir: z.string().regex(/^\/[^\0]*$/, { error: (iss) => `${JSON.stringify(iss.input)} is not an absolute path` }).default("/run/wasm-overlay"),
  /** The node's overlay address (VTEP IP, source of ICMP errors). Default: the first address of podCIDR. */
  overlayAddress: ipv4.optional(),
  device: z.strictObject({
    name: ifname.default("wo0"),
    mode: z.enum(DEVICE_MODES).default("tun"),
    /** Default: the tunnel MTU (tunnel.underlayMtu, else the underlay
     *  link's) minus the largest overhead of the encapsulations in use:
     *  50 for VXLAN, 20 when every tunnelled peer is IPIP (src/daemon/mtu.ts). */
    mtu: intIn(68, 65535).optional(),
    /** Tap mode: MAC of the kernel's side of the tap. Default: 0e:01:<underlay address bytes>. */
    mac: unicastMac.optional(),
    /** Our MAC on the overlay. Default: 0e:00:<underlay address bytes> (locally administered). */
    vtepMac: unicastMac.optional(),
    /** Tun offloads (IFF_VNET_HDR + TSO4/checksum): the kernel hands us TCP
     *  super-frames of up to 64 KiB, segmented in WASM before encapsulation.
     *  Default: on in tun mode, off in tap mode. */
    offloads: z.boolean().optional(),
    /** Batch the tun's reads and writes through io_uring: one system call
     *  per batch instead of one per packet (or super-frame). Default on;
     *  without io_uring in the kernel (or with kernel.io_uring_disabled)
     *  overlayd says so at start and makes one read()/write() per packet. */
    ioUring: z.boolean().optional(),
    /** Tun queues (IFF_MULTI_QUEUE), one data-path worker each, VXLAN
     *  sockets shared with SO_REUSEPORT and steered by the inner flow (a flow
     *  stays on one worker). Default: the cores overlayd may use, at most 4;
     *  1 with NAT, where it must be 1 (one connection table). */
    queues: intIn(1, 64).optional(),
  }).prefault({}),
});

const PeerSchema = z.strictObject({
  name,
  /** The peer's underlay address (outer destination), and its name on the
   *  underlay: packets from it are the peer's. */
  underlay: unicastIpv4,
  /** Reach the peer over the IPv6 underlay at this address instead: VXLAN
   *  in UDP/IPv6 (checksum always computed, RFC 6935), IPIP as IPv4-in-IPv6
   *  (next header 4) and IPv6 pods as IPv6-in-IPv6 (41), like the kernel's
   *  vxlan with an IPv6 `remote` and its ip6tnl. The outer source is
   *  node.ipv6.underlayAddress. Packets from this address are the peer's
   *  too; `underlay` stays its name. Not with encapsulation `direct`. */
  underlay6: unicastIpv6.optional(),
  /** Prefixes routed to this peer (its pods). */
  podCIDRs: z.array(cidr).min(1, "needs at least one pod CIDR"),
  /** The peer's VTEP MAC (its `vxlan100` address in Hand CNI-7). */
  vtepMac: unicastMac,
  /** The peer's VTEP IP. Default: the first address of its first pod CIDR. */
  vtepAddress: ipv4.optional(),
  /** auto = direct when the peer is in our underlay subnet, else vxlan (flannel DirectRouting / Calico CrossSubnet). */
  encapsulation: z.enum(ENCAPSULATIONS).default("auto"),
  /** The peer's IPv6 pod prefixes (it runs dual-stack). */
  ipv6: z.strictObject({
    podCIDRs: z.array(cidr6).min(1, "needs at least one IPv6 pod CIDR"),
  }).optional(),
});

const RouteSchema = z.strictObject({
  prefix: cidr,
  /** A peer name, "local" (deliver to this node) or "blackhole" (drop, counted). */
  via: z.string().min(1, "is empty"),
});

/** A timeout in seconds: 1 s .. 1 year. */
const timeout = intIn(1, 31_536_000);

/** nf_conntrack's defaults (net.netfilter.nf_conntrack_*_timeout*), except
 *  ESTABLISHED: 24 h as kube-proxy sets it (conntrack.tcpEstablishedTimeout),
 *  not the kernel's 5 days. */
const CtTimeoutsSchema = z.strictObject({
  tcpSynSent: timeout.default(120),
  tcpSynRecv: timeout.default(60),
  tcpEstablished: timeout.default(86_400),
  tcpFinWait: timeout.default(120),
  tcpCloseWait: timeout.default(60),
  tcpLastAck: timeout.default(30),
  tcpTimeWait: timeout.default(120),
  tcpClose: timeout.default(10),
  /** UDP until the flow is a stream (traffic after its first reply). */
  udp: timeout.default(30),
  udpStream: timeout.default(120),
  icmp: timeout.default(30),
});

/** NAT (issue 4): masquerade for pods, DNAT for services. Active when
 *  `masquerade` is on or any service is configured. */
const NatSchema = z.strictObject({
  /** Pod traffic to destinations no route covers leaves with the node's
   *  underlay address (Hand CNI-3; flannel's --ip-masq, Calico's natOutgoing). */
  masquerade: z.boolean().default(false),
  /** Source ports (ICMP: identifiers) for translated flows; kept out of the
   *  node's own ephemeral range and reserved with ip_local_reserved_ports. */
  portRange: z.tuple([port, port]).default([61000, 65535]),
  /** Source address of hairpin and NodePort flows: inside node.podCIDR,
   *  assigned to no interface (the node routes it into our device).
   *  Default: the pod CIDR's last address below broadcast (x.y.z.254 of a /24). */
  snatAddress: ipv4.optional(),
  /** The IPv6 twin of snatAddress (hairpin flows of IPv6 services): inside
   *  node.ipv6.podCIDR, on no interface. Default: the prefix's last address but one. */
  snatAddress6: ipv6.optional(),
  conntrack: z.strictObject({
    /** Flows tracked at most (88 bytes each). A new flow meeting a full
     *  table evicts a flow that is not assured near its hash slot (early
     *  drop, counted), else it is dropped (counted). Needs a restart. */
    maxFlows: intIn(1, 8_388_607).default(262_144),
    /** Seconds a flow lives after its last packet, by state; a change on
     *  reload applies to each flow from its next packet on. */
    timeouts: CtTimeoutsSchema.prefault({}),
  }).prefault({}),
  /** Policy routing that sends pod traffic leaving the cluster into our device. */
  routeTable: intIn(1, 0xfffffffe).default(4789),
  rulePriority: intIn(1, 32765).default(4789),
}).prefault({});

const ServicePortSchema = z.strictObject({
  port,
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
  /** The backends' port. Default: `port`. */
  targetPort: port.optional(),
  /** Also reachable at the node's underlay address on this port (from outside the cluster). */
  nodePort: port.optional(),
});

const ServiceSchema = z.strictObject({
  name,
  /** The virtual address clients use (routed into our device on this node).
   *  An IPv6-only service (Kubernetes' ipFamilies: [IPv6]) has only clusterIP6. */
  clusterIP: unicastIpv4.optional(),
  ports: z.array(ServicePortSchema).min(1, "needs at least one port"),
  /** Backend pod addresses, here or on other nodes; each new flow picks one at random. */
  backends: z.array(unicastIpv4).default([]),
  /** Dual-stack (needs node.ipv6): the service's IPv6 ClusterIP, same ports;
   *  its flows go to `backends6` (NAT66). Its NodePorts also answer on
   *  node.ipv6.underlayAddress when that is set. */
  clusterIP6: ipv6.optional(),
  backends6: z.array(ipv6).default([]),
});

/** An etcd v3 endpoint: "http://host:port" (plain HTTP; the scheme may be left out). */
const etcdEndpoint = z.string().regex(/^(http:\/\/)?[A-Za-z0-9.-]+:\d{1,5}$/, {
  error: (iss) => `${JSON.stringify(iss.input)} is not an etcd endpoint like "http://198.18.0.1:2379" (TLS is not supported yet)`,
});

/** Cluster membership from etcd (src/membership/): a pod-CIDR lease and live peers, as flannel does. */
export const EtcdSchema = z.strictObject({
  endpoints: z.array(etcdEndpoint).min(1, "needs at least one endpoint"),
  /** Every key overlayd writes or watches lives under this prefix. */
  prefix: z.string().regex(/^\/[A-Za-z0-9._/-]*$/, { error: (iss) => `${JSON.stringify(iss.input)} is not a key prefix like "/wasm-overlay"` }).default("/wasm-overlay"),
  /** The cluster's pod network that subnets are leased from. Default: `<prefix>/config` in etcd, as flannel's network config. */
  network: cidr.optional(),
  /** Prefix length of each node's leased pod CIDR (default 24, or `<prefix>/config`'s subnetLength). */
  subnetLength: intIn(1, 30).optional(),
  /** Seconds the node's record outlives its last renewal (renewed every third of it): how long a dead node's routes stay. */
  leaseTTL: intIn(2, 3600).default(15),
  /** How peers should reach this node (published with its record; auto = direct in a shared subnet, else VXLAN). */
  encapsulation: z.enum(ENCAPSULATIONS).default("auto"),
  /** Dual-stack: the cluster's IPv6 pod network (default: `<prefix>/config`'s ipv6Network, if any). A
   *  node's IPv6 subnet is the one of the same index as its leased IPv4 subnet, so it needs no lease of its own. */
  ipv6Network: cidr6.optional(),
  /** Prefix length of each node's IPv6 subnet (default 64, or `<prefix>/config`'s ipv6SubnetLength). */
  ipv6SubnetLength: intIn(1, 128).optional(),
  /** Ask peers to reach this node over the IPv6 underlay: its record carries
   *  node.ipv6.underlayAddress, and a peer that has an IPv6 underlay
   *  address itself tunnels to it over IPv6 (peers[].underlay6); one that
   *  has none, over IPv4. Needs node.ipv6.underlayAddress and an
   *  encapsulation other than direct. */
  underlay6: z.boolean().default(false),
});

/** Routes a routing daemon (BIRD) installs into a kernel table become peers (src/routing/). */
export const RoutingSchema = z.strictObject({
  source: z.literal("kernel").default("kernel"),
  /** The kernel routing table BIRD's kernel protocol exports the learned routes into (not one the node forwards with). */
  table: intIn(1, 4294967295).refine((t) => ![253, 254, 255].includes(t), "is a kernel table of its own (default, main, local): pick another").default(4791),
  /** auto: direct when the next hop is in the underlay subnet, else `tunnel` (Calico's CrossSubnet);
   *  vxlan / ipip: always; never: the fabric routes the pod CIDRs (no encapsulation, Hand CNI-9). */
  encapsulation: z.enum(["auto", "vxlan", "ipip", "never"]).default("auto"),
  /** The encapsulation `auto` uses across subnets. */
  tunnel: z.enum(["vxlan", "ipip"]).default("vxlan"),
  /** Install `blackhole <node.podCIDR> proto 79` in the main table, for BIRD to export (`krt_source = 79`). */
  announce: z.boolean().default(true),
  /** Seconds between full re-reads of the table (on top of the live monitor). */
  resyncSeconds: intIn(1, 3600).default(30),
});

const ConfigShape = z.strictObject({
  node: NodeSchema,
  tunnel: TunnelSchema.prefault({}),
  peers: z.array(PeerSchema).default([]),
  routes: z.array(RouteSchema).default([]),
  nat: NatSchema,
  services: z.array(ServiceSchema).default([]),
  admin: z.strictObject({
    /** Admin HTTP API (show, reload, conntrack, /metrics, /healthz): a unix
     *  socket path (default <node.stateDir>/admin.sock, mode 0600) or
     *  "host:port", which then needs tokenFile. */
    listen: listen.optional(),
    /** A file holding the bearer token every request to a TCP admin API must carry. */
    tokenFile: absPath.optional(),
    /** The metrics listener, "host:port" (default 127.0.0.1:9469): /metrics and /healthz only; false: none. */
    metrics: metricsAt.default(DEFAULT_METRICS_LISTEN),
    /** A data-path worker that has not turned its loop for this long makes
     *  overlayd log, clean up and exit non-zero (its supervisor restarts it);
     *  /healthz reports it stale after min(5 s, this). */
    watchdogSeconds: intIn(2, 3600).default(15),
    /** Flows per second a conntrack dump (/conntrack pages) may read: pages
     *  beyond it wait, so a dump of a full table costs the data path a bounded
     *  share of its CPU instead of stalling it (issue 13). */
    conntrackDumpRate: intIn(1000, 10_000_000).default(DEFAULT_CT_DUMP_RATE),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(LOG_LEVELS).default("info"),
  }).prefault({}),
  etcd: EtcdSchema.optional(),
  routing: RoutingSchema.optional(),
});

type Shape = z.output<typeof ConfigShape>;

// --- checks across fields ----------------------------------------------------------

const NODE_OWNER = "this node (node.podCIDR)";

function crossCheck(c: Shape, ctx: z.RefinementCtx): void {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
  const nodeUnderlay = c.node.underlay.address;
  const tunnel = c.tunnel;

  const [smin, smax] = tunnel.sourcePortRange;
  if (smin > smax) issue(["tunnel", "sourcePortRange"], `[${smin}, ${smax}]: min is above max`);
  if (c.routing && c.routing.table === c.nat.routeTable) issue(["routing", "table"], `${c.routing.table} is also nat.routeTable (overlayd's own routes): give BIRD another table`);
  if (c.etcd?.underlay6) {
    if (c.node.ipv6?.underlayAddress === undefined) issue(["etcd", "underlay6"], "needs node.ipv6.underlayAddress (the address peers would tunnel to)");
    if (c.etcd.encapsulation === "direct") issue(["etcd", "underlay6"], "direct routing goes over the IPv4 underlay: set etcd.encapsulation to vxlan, ipip or auto");
  }

  const mtu = c.node.device.mtu;
  // Without tunnel.underlayMtu the link's MTU is known only at run time,
  // where src/daemon/mtu.ts makes the same checks against it.
  if (mtu !== undefined && tunnel.underlayMtu !== undefined && mtu > tunnel.underlayMtu) {
    issue(["node", "device", "mtu"], `${mtu} is above tunnel.underlayMtu ${tunnel.underlayMtu}: no tunnelled packet that size could be sent`);
  }
  if (mtu === undefined && tunnel.underlayMtu !== undefined && tunnel.underlayMtu - VXLAN_OVERHEAD < 68) {
    issue(["tunnel", "underlayMtu"], `${tunnel.underlayMtu} leaves no room for VXLAN (${VXLAN_OVERHEAD} bytes); set node.device.mtu`);
  }
  if (c.node.device.offloads === true && c.node.device.mode === "tap") {
    issue(["node", "device", "offloads"], "tun offloads need mode: tun (TSO super-frames are IPv4 packets, a tap carries Ethernet)");
  }
  if (tunnel.kernelGso && (c.node.device.offloads === false || c.node.device.mode === "tap")) {
    issue(["tunnel", "kernelGso"], "needs node.device.offloads (tun mode): it sends the tun's TCP super-frames whole");
  }
  if (tunnel.kernelGso && (c.nat.masquerade || c.services.length > 0)) {
    issue(["tunnel", "kernelGso"], "does not work with NAT: a super-frame would be translated by its first segment alone");
  }
  const { mac, vtepMac } = c.node.device;
  if (mac !== undefined && vtepMac !== undefined && mac === vtepMac) {
    issue(["node", "device", "mac"], `${mac} is also node.device.vtepMac; the two ends of the tap need different MACs`);
  }

  // Prefixes already claimed, with who claimed them, for overlap messages.
  // Parsed once: a node with a thousand peers compares a million pairs.
  const claimed: Array<{ text: string; owner: string; cidr: Cidr }> = [];
  /** Record a prefix; false (and an issue) when it overlaps one already claimed. */
  const claim = (path: (string | number)[], text: string, owner: string): boolean => {
    const parsed = tryParseCidr(text);
    if (!parsed.ok) return false;
    const clash = claimed.find((x) => cidrOverlaps(x.cidr, parsed.value));
    if (clash) issue(path, `${JSON.stringify(text)} overlaps ${clash.text} of ${clash.owner}`);
    else claimed.push({ text, owner, cidr: parsed.value });
    return !clash;
  };
  claim(["node", "podCIDR"], c.node.podCIDR, NODE_OWNER);
  const vteps: Array<string | undefined> = [];

  const ownVtepMac = vtepMac ?? (tryIpToU32(nodeUnderlay).ok ? formatMac(macFromIp(ipToU32(nodeUnderlay))) : undefined);
  const ownOverlay = c.node.overlayAddress ?? (tryParseCidr(c.node.podCIDR).ok ? u32ToIp(cidrFirst(c.node.podCIDR)) : undefined);
  const seen = { name: new Map<string, number>(), underlay: new Map<string, number>(), underlay6: new Map<string, number>(), mac: new Map<string, number>(), vtep: new Map<string, number>() };
  const ownUnderlay6 = c.node.ipv6?.underlayAddress;
  /** Record a peer's key; false (and an issue) when another peer has it. */
  const dup = (kind: keyof typeof seen, key: string, i: number, field: string, what: string): boolean => {
    const prev = seen[kind].get(key);
    if (prev !== undefined) issue(["peers", i, field], `${what} ${JSON.stringify(key)} is also used by peers[${prev}]`);
    else seen[kind].set(key, i);
    return prev === undefined;
  };

  c.peers.forEach((p, i) => {
    if ((ROUTE_TARGETS as readonly string[]).includes(p.name)) {
      issue(["peers", i, "name"], `"${p.name}" is reserved (a static route's via); pick another name`);
    }
    dup("name", p.name, i, "name", "name");
    dup("underlay", p.underlay, i, "underlay", "underlay address");
    dup("mac", p.vtepMac, i, "vtepMac", "VTEP MAC");
    if (p.underlay === nodeUnderlay) issue(["peers", i, "underlay"], `${JSON.stringify(p.underlay)} is this node's own underlay address`);
    if (p.underlay6 !== undefined) {
      dup("underlay6", p.underlay6, i, "underlay6", "IPv6 underlay address");
      if (ownUnderlay6 === undefined) issue(["peers", i, "underlay6"], "an IPv6 underlay needs node.ipv6.underlayAddress (the outer source address)");
      else if (p.underlay6 === ownUnderlay6) issue(["peers", i, "underlay6"], `${JSON.stringify(p.underlay6)} is this node's own IPv6 underlay address`);
      if (p.encapsulation === "direct") issue(["peers", i, "encapsulation"], "direct routing goes over the IPv4 underlay: drop underlay6, or tunnel (vxlan, ipip)");
    }
    if (ownVtepMac !== undefined && p.vtepMac === ownVtepMac) issue(["peers", i, "vtepMac"], `${p.vtepMac} is this node's own VTEP MAC`);
    const firstPod = p.podCIDRs[0];
    const vtep = p.vtepAddress ?? (firstPod !== undefined && tryParseCidr(firstPod).ok ? u32ToIp(cidrFirst(firstPod)) : undefined);
    let vtepOk = vtep !== undefined;
    if (vtep !== undefined) {
      vtepOk = dup("vtep", vtep, i, "vtepAddress", "VTEP address");
      if (vtep === ownOverlay) {
        issue(["peers", i, "vtepAddress"], `${JSON.stringify(vtep)} is this node's own overlay address`);
        vtepOk = false;
      }
    }
    const podsOk = p.podCIDRs.map((text, j) => claim(["peers", i, "podCIDRs", j], text, `peer ${p.name}`)).every(Boolean);
    // A defaulted VTEP address inherits its pod CIDR's problem; report that once.
    vteps.push(vtepOk && (p.vtepAddress !== undefined || podsOk) ? vtep : undefined);
  });

  // A VTEP address inside someone else's pod CIDR would be routed there
  // instead of being this node's / that peer's overlay address.
  const inOther = (addr: string | undefined, owner: string) => {
    const a = addr === undefined ? undefined : tryIpToU32(addr);
    return a?.ok ? claimed.find((x) => x.owner !== owner && cidrContains(x.cidr, a.value)) : undefined;
  };
  const ownClash = inOther(ownOverlay, NODE_OWNER);
  if (ownClash) issue(["node", "overlayAddress"], `${JSON.stringify(ownOverlay)} lies in ${ownClash.text} of ${ownClash.owner}`);
  c.peers.forEach((p, i) => {
    const clash = inOther(vteps[i], `peer ${p.name}`);
    if (clash) issue(["peers", i, "vtepAddress"], `${JSON.stringify(vteps[i])} lies in ${clash.text} of ${clash.owner}`);
  });

  crossCheckIpv6(c, issue);
  crossCheckNat(c, issue);
  crossCheckAdmin(c, issue);
  crossCheckCapacity(c, issue);

  const peerNames = new Set(c.peers.map((p) => p.name));
  const routePrefixes = new Map<string, number>();
  c.routes.forEach((r, i) => {
    if (!(ROUTE_TARGETS as readonly string[]).includes(r.via) && !peerNames.has(r.via)) {
      issue(["routes", i, "via"], `${JSON.stringify(r.via)} is not a peer name, "local" or "blackhole"`);
    }
    const parsed = tryParseCidr(r.prefix);
    if (!parsed.ok) return;
    const prev = routePrefixes.get(r.prefix);
    if (prev !== undefined) issue(["routes", i, "prefix"], `${JSON.stringify(r.prefix)} is also routes[${prev}]`);
    else routePrefixes.set(r.prefix, i);
    // The same prefix as a pod CIDR would silently replace that route; a
    // longer or shorter one is fine (longest prefix wins).
    const same = claimed.find((x) => x.text === r.prefix);
    if (same) issue(["routes", i, "prefix"], `${JSON.stringify(r.prefix)} is already the pod CIDR of ${same.owner}`);
  });
}

/** IPv6 prefixes: none overlaps another owner's, the overlay address is
 *  not a peer's, an IPv6 device MTU is at least 1280 (below it the kernel
 *  turns IPv6 off on the link, RFC 8200 5). */
function crossCheckIpv6(c: Shape, issue: (path: (string | number)[], message: string) => void): void {
  const claimed: Array<{ text: string; owner: string; cidr: Cidr6 }> = [];
  const claim = (path: (string | number)[], text: string, owner: string) => {
    const parsed = tryParseCidr6(text);
    if (!parsed.ok) return;
    const clash = claimed.find((x) => cidr6Overlaps(x.cidr, parsed.value));
    if (clash) issue(path, `${JSON.stringify(text)} overlaps ${clash.text} of ${clash.owner}`);
    else claimed.push({ text, owner, cidr: parsed.value });
  };
  const six = c.node.ipv6;
  if (six) claim(["node", "ipv6", "podCIDR"], six.podCIDR, "this node (node.ipv6.podCIDR)");
  c.peers.forEach((p, i) => p.ipv6?.podCIDRs.forEach((text, j) => claim(["peers", i, "ipv6", "podCIDRs", j], text, `peer ${p.name}`)));
  if (!six) {
    const i = c.peers.findIndex((p) => p.ipv6);
    if (i >= 0) issue(["peers", i, "ipv6"], "peers have IPv6 pods but this node has none: set node.ipv6.podCIDR (dual-stack needs both ends)");
    return;
  }
  const own = six.overlayAddress;
  if (own !== undefined && tryParseIpv6(own).ok) {
    const clash = claimed.find((x) => x.owner.startsWith("peer ") && cidr6Contains(x.cidr, own));
    if (clash) issue(["node", "ipv6", "overlayAddress"], `${JSON.stringify(own)} lies in ${clash.text} of ${clash.owner}`);
  }
  const mtu = c.node.device.mtu;
  if (mtu !== undefined && mtu < 1280) issue(["node", "device", "mtu"], `${mtu} is below 1280, the IPv6 minimum (node.ipv6 is set): the kernel would turn IPv6 off on the device`);
}

/** What the data path is sized for (src/dataplane/limits.ts): a config that
 *  would not fit is refused here, naming the limit, rather than failing a
 *  table write at run time. */
function crossCheckCapacity(c: Shape, issue: (path: (string | number)[], message: string) => void): void {
  if (c.peers.length > MAX_PEERS) issue(["peers"], `${c.peers.length} peers: the data path holds at most ${MAX_PEERS}`);
  // derive.ts: local + one per peer + blackhole when a route needs it.
  // IPv6: a next hop more for each direct peer with IPv6 pods (counted for every peer with IPv6).
  const nexthops = 1 + c.peers.length + (c.routes.some((r) => r.via === "blackhole") ? 1 : 0) + (c.node.ipv6 ? c.peers.filter((p) => p.ipv6).length : 0);
  if (nexthops > MAX_NEXTHOPS) issue(["peers"], `${nexthops} next hops: the data path holds at most ${MAX_NEXTHOPS}`);
  // One tbl8 group per /24 that holds a prefix longer than /24.
  const long = new Set<number>();
  for (const text of [c.node.podCIDR, ...c.peers.flatMap((p) => p.podCIDRs), ...c.routes.map((r) => r.prefix)]) {
    const r = tryParseCidr(text);
    if (r.ok && r.value.len > 24) long.add(r.value.prefix >>> 8);
  }
  if (long.size > TBL8_GROUPS) issue(["routes"], `prefixes longer than /24 fall in ${long.size} distinct /24s: the route table holds ${TBL8_GROUPS}`);
  let frontends = 0;
  let backendSlots = 0;
  for (const svc of c.services) {
    for (const sp of svc.ports) {
      const n = svc.clusterIP === undefined ? 0 : sp.nodePort !== undefined ? 2 : 1;
      frontends += n;
      backendSlots += n * svc.backends.length;
      if (svc.clusterIP6 !== undefined) {
        const n6 = sp.nodePort !== undefined ? 2 : 1;
        frontends += n6;
        backendSlots += n6 * svc.backends6.length;
      }
    }
  }
  if (frontends > MAX_FRONTENDS) issue(["services"], `${frontends} frontends (ClusterIP ports and NodePorts): the data path holds at most ${MAX_FRONTENDS}`);
  if (backendSlots > MAX_BACKENDS) issue(["services"], `${backendSlots} backend entries (backends x frontends): the data path holds at most ${MAX_BACKENDS}`);
}

/** NAT and services: addresses that must not be anyone else's, ports that must not collide. */
/** A TCP admin API only with a token; the default socket path must fit sun_path; two listeners, two addresses. */
function crossCheckAdmin(c: Shape, issue: (path: (string | number)[], message: string) => void): void {
  const a = c.admin;
  if (a.listen === undefined) {
    const sock = adminSocketPath(c.node.stateDir);
    if (!tryParseListen(sock).ok) issue(["node", "stateDir"], `${JSON.stringify(c.node.stateDir)}: the admin socket ${sock} would be longer than a unix socket path may be (${UNIX_PATH_MAX} bytes); shorten it or set admin.listen`);
  } else if (tryParseListen(a.listen).ok && !a.listen.startsWith("/") && a.tokenFile === undefined) {
    issue(["admin", "tokenFile"], `admin.listen ${JSON.stringify(a.listen)} is TCP: set admin.tokenFile to a file holding a bearer token (or leave admin.listen out for the unix socket ${adminSocketPath(c.node.stateDir)})`);
  }
  if (a.metrics !== false && a.listen !== undefined && a.metrics === a.listen) {
    issue(["admin", "metrics"], `${JSON.stringify(a.metrics)} is admin.listen too: the metrics listener needs an address of its own`);
  }
}

/** NAT66: IPv6 services and addresses need node.ipv6, and must be nobody else's. */
function crossCheckNat6(c: Shape, issue: (path: (string | number)[], message: string) => void): void {
  const six = c.node.ipv6;
  const pods = six ? [six.podCIDR, ...c.peers.flatMap((p) => p.ipv6?.podCIDRs ?? [])].filter((x) => tryParseCidr6(x).ok) : [];
  c.services.forEach((svc, i) => {
    if (svc.clusterIP6 === undefined) {
      if (svc.backends6.length > 0) issue(["services", i, "backends6"], "IPv6 backends need an IPv6 ClusterIP: set clusterIP6");
      return;
    }
    if (!six) {
      issue(["services", i, "clusterIP6"], "an IPv6 service needs node.ipv6 (dual-stack) on this node");
      return;
    }
    if (!tryParseIpv6(svc.clusterIP6).ok) return;
    const inPods = pods.find((x) => cidr6Contains(x, ipv6ToBigint(svc.clusterIP6!)));
    if (inPods) issue(["services", i, "clusterIP6"], `${JSON.stringify(svc.clusterIP6)} lies in pod CIDR ${inPods}; ClusterIPs come from a range of their own`);
    if (svc.clusterIP6 === six.underlayAddress) issue(["services", i, "clusterIP6"], `${JSON.stringify(svc.clusterIP6)} is this node's IPv6 underlay address`);
  });
  const snat = c.nat.snatAddress6;
  if (snat === undefined) return;
  if (!six) {
    issue(["nat", "snatAddress6"], "needs node.ipv6 (dual-stack) on this node");
    return;
  }
  if (!tryParseCidr6(six.podCIDR).ok || !tryParseIpv6(snat).ok) return;
  if (!cidr6Contains(six.podCIDR, ipv6ToBigint(snat))) issue(["nat", "snatAddress6"], `${JSON.stringify(snat)} is outside node.ipv6.podCIDR ${six.podCIDR}: peers would not route answers to it back here`);
  const overlay = six.overlayAddress ?? bigintToIpv6(parseCidr6(six.podCIDR).prefix);
  if (ipv6ToBigint(snat) === ipv6ToBigint(overlay)) issue(["nat", "snatAddress6"], `${JSON.stringify(snat)} is the node's IPv6 overlay address, which is assigned to the device; pick an unused pod address`);
}

function crossCheckNat(c: Shape, issue: (path: (string | number)[], message: string) => void): void {
  crossCheckNat6(c, issue);
  const [pmin, pmax] = c.nat.portRange;
  if (pmin > pmax) issue(["nat", "portRange"], `[${pmin}, ${pmax}]: min is above max`);
  const pod = c.node.podCIDR;
  if (c.nat.snatAddress !== undefined && tryParseCidr(pod).ok && tryIpToU32(c.nat.snatAddress).ok) {
    if (!cidrContains(pod, c.nat.snatAddress)) {
      issue(["nat", "snatAddress"], `${JSON.stringify(c.nat.snatAddress)} is outside node.podCIDR ${pod}: peers would not route answers to it back here`);
    }
    const overlay = c.node.overlayAddress ?? u32ToIp(cidrFirst(parseCidr(pod)));
    if (c.nat.snatAddress === overlay) issue(["nat", "snatAddress"], `${JSON.stringify(overlay)} is the node's overlay address, which is assigned to the device; pick an unused pod address`);
  }
  const prefixes = [pod, ...c.peers.flatMap((p) => p.podCIDRs)].filter((x) => tryParseCidr(x).ok);
  const frontends = new Map<string, string>();
  c.services.forEach((svc, i) => {
    if (svc.clusterIP === undefined) {
      if (svc.clusterIP6 === undefined) issue(["services", i], "needs a clusterIP (IPv4), a clusterIP6, or both");
      else if (svc.backends.length > 0) issue(["services", i, "backends"], "IPv4 backends need an IPv4 ClusterIP: set clusterIP (or list the pods' IPv6 addresses in backends6)");
    } else if (tryIpToU32(svc.clusterIP).ok) {
      const inPods = prefixes.find((x) => cidrContains(x, svc.clusterIP!));
      if (inPods) issue(["services", i, "clusterIP"], `${JSON.stringify(svc.clusterIP)} lies in pod CIDR ${inPods}; ClusterIPs come from a range of their own`);
      if (svc.clusterIP === c.node.underlay.address) issue(["services", i, "clusterIP"], `${JSON.stringify(svc.clusterIP)} is this node's underlay address`);
    }
    svc.ports.forEach((sp, j) => {
      for (const vip of [svc.clusterIP, svc.clusterIP6]) {
        if (vip === undefined) continue;
        const key = `${sp.protocol} ${vip}:${sp.port}`;
        const prev = frontends.get(key);
        if (prev) issue(["services", i, "ports", j, "port"], `${key} is also ${prev}`);
        else frontends.set(key, `services[${i}] ${svc.name}`);
      }
      if (sp.nodePort !== undefined) {
        const nkey = `${sp.protocol} nodePort ${sp.nodePort}`;
        const nprev = frontends.get(nkey);
        if (nprev) issue(["services", i, "ports", j, "nodePort"], `${sp.protocol} NodePort ${sp.nodePort} is also used by ${nprev}`);
        else frontends.set(nkey, `services[${i}] ${svc.name}`);
        if (sp.nodePort >= pmin && sp.nodePort <= pmax) {
          issue(["services", i, "ports", j, "nodePort"], `${sp.nodePort} lies in nat.portRange [${pmin}, ${pmax}], which translated flows use as source ports`);
        }
      }
    });
  });
}

// --- defaults that depend on other fields ---------------------------------------------

/** The pod CIDR's last address below its broadcast address (x.y.z.254 of a
 *  /24): the end IPAM reaches last, away from a bridge gateway's .1. */
export function defaultSnatAddress(podCIDR: string): string {
  const c = parseCidr(podCIDR);
  const size = c.len >= 31 ? 1 : 2 ** (32 - c.len);
  return u32ToIp((cidrFirst(c) + Math.max(0, size - 2)) >>> 0);
}

/** The IPv6 pod CIDR's last address but one (a /128: the address). */
export function defaultSnatAddress6(podCIDR: string): string {
  const c = parseCidr6(podCIDR);
  const size = 1n << BigInt(128 - c.len);
  return bigintToIpv6(c.prefix + (size > 2n ? size - 2n : 0n));
}

/** The admin API's default unix socket in a state directory. */
export function adminSocketPath(stateDir: string): string {
  return `${stateDir.replace(/\/+$/, "")}/${ADMIN_SOCKET_NAME}`;
}

function resolve(c: Shape) {
  const underlay = ipToU32(c.node.underlay.address);
  const d = c.node.device;
  const device = {
    name: d.name,
    mode: d.mode,
    // Left undefined unless set: the default depends on the link (src/daemon/mtu.ts).
    mtu: d.mtu,
    mac: d.mac ?? (d.mode === "tap" ? formatMac(macFromIp(underlay, [0x0e, 0x01])) : undefined),
    vtepMac: d.vtepMac ?? formatMac(macFromIp(underlay)),
    // On by default for tun (3x the TCP throughput); tap has no TSO path.
    offloads: d.offloads ?? d.mode === "tun",
    ioUring: d.ioUring ?? true,
    queues: d.queues,
  };
  return {
    node: {
      name: c.node.name,
      underlay: c.node.underlay,
      podCIDR: c.node.podCIDR,
      stateDir: c.node.stateDir,
      overlayAddress: c.node.overlayAddress ?? u32ToIp(cidrFirst(parseCidr(c.node.podCIDR))),
      ipv6: c.node.ipv6 && {
        podCIDR: c.node.ipv6.podCIDR,
        overlayAddress: c.node.ipv6.overlayAddress ?? bigintToIpv6(parseCidr6(c.node.ipv6.podCIDR).prefix),
        underlayAddress: c.node.ipv6.underlayAddress,
      },
      device,
    },
    tunnel: {
      ...c.tunnel,
      sourcePortRange: [c.tunnel.sourcePortRange[0], c.tunnel.sourcePortRange[1]] as [number, number],
      udpOffloads: c.tunnel.udpOffloads ?? (d.offloads ?? d.mode === "tun"),
    },
    peers: c.peers.map((p) => ({
      ...p,
      vtepAddress: p.vtepAddress ?? u32ToIp(cidrFirst(parseCidr(p.podCIDRs[0]))),
    })),
    routes: c.routes,
    nat: {
      ...c.nat,
      /** NAT runs when masquerading or when any service is configured. */
      enabled: c.nat.masquerade || c.services.length > 0,
      portRange: [c.nat.portRange[0], c.nat.portRange[1]] as [number, number],
      snatAddress: c.nat.snatAddress ?? defaultSnatAddress(c.node.podCIDR),
    },
    services: c.services.map((s) => ({ ...s, ports: s.ports.map((p) => ({ ...p, targetPort: p.targetPort ?? p.port })) })),
    /** NAT66 (node.ipv6): IPv6 services, and masquerade with node.ipv6.underlayAddress. */
    nat6: c.node.ipv6 && {
      masquerade: c.nat.masquerade && c.node.ipv6.underlayAddress !== undefined,
      underlayAddress: c.node.ipv6.underlayAddress,
      snatAddress: c.nat.snatAddress6 ?? defaultSnatAddress6(c.node.ipv6.podCIDR),
    },
    admin: {
      listen: c.admin.listen ?? adminSocketPath(c.node.stateDir),
      tokenFile: c.admin.tokenFile,
      /** host:port of the metrics listener, or undefined for none. */
      metrics: c.admin.metrics === false ? undefined : c.admin.metrics,
      watchdogSeconds: c.admin.watchdogSeconds,
      conntrackDumpRate: c.admin.conntrackDumpRate,
    },
    log: c.log,
    etcd: c.etcd,
    routing: c.routing,
  };
}

/** The node config schema: parse with `ConfigSchema.safeParse(doc)`; the output is fully resolved. */
export const ConfigSchema = ConfigShape.superRefine(crossCheck).transform(resolve);

/** What a config file may contain (optional fields may be left out). */
export type ConfigInput = z.input<typeof ConfigSchema>;
/** A validated config with every default filled in. */
export type Config = z.output<typeof ConfigSchema>;
export type PeerConfig = Config["peers"][number];
export type RouteConfig = Config["routes"][number];
export type EtcdConfig = NonNullable<Config["etcd"]>;
export type RoutingConfig = NonNullable<Config["routing"]>;
export type ServiceConfig = Config["services"][number];
export type Encapsulation = (typeof ENCAPSULATIONS)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];
