// NodeNat (src/daemon/natsetup.ts): the policy routes, tc steering, reserved
// ports and service routes that bring NAT traffic into the overlay device,
// checked first as text (what `ip rule`, `ip route`, `tc filter`, sysctl
// show), then by packets in a namespace network:
//
//   peer (198.18.0.1/24, "outside") --eth0-- node (198.18.0.11/24, wo0 tun) --veth-pod-- pod (198.19.1.10/24)
//
// wo0 is held open by test/helpers/tun-dump.ts, standing in for the data path.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  formatPortList,
  MIRRORED_ICMP_TYPES,
  MIRRORED_ICMPV6_TYPES,
  NodeNat,
  parsePortList,
  portRangeBlocks,
  steeringFilters,
  steeringFilters6,
  validateNatPlan,
  type NatPlan,
} from "../src/daemon/natsetup.js";
import { Cluster, OUTSIDE, podIp, waitFor } from "../src/demo/cluster.js";
import { cidr6Contains } from "../src/config/net6.js";
import { readRecord, writeRecord, type NatRecord } from "../src/daemon/state.js";
import { createTopology, skipUnlessRoot, Topology, type Child, type Namespace } from "./helpers/netns.js";
import { parseIpv6 } from "./helpers/packets6.js";

describe("portRangeBlocks", () => {
  it("splits the default SNAT range 61000-65535 into six aligned blocks", () => {
    expect(portRangeBlocks(61000, 65535)).toEqual([
      { value: 61000, mask: 0xfff8 },
      { value: 61008, mask: 0xfff0 },
      { value: 61024, mask: 0xffe0 },
      { value: 61056, mask: 0xff80 },
      { value: 61184, mask: 0xff00 },
      { value: 61440, mask: 0xf000 },
    ]);
  });

  it("handles a single port, the full range and the edges", () => {
    expect(portRangeBlocks(30080, 30080)).toEqual([{ value: 30080, mask: 0xffff }]);
    expect(portRangeBlocks(0, 65535)).toEqual([{ value: 0, mask: 0 }]);
    expect(portRangeBlocks(65535, 65535)).toEqual([{ value: 65535, mask: 0xffff }]);
    expect(portRangeBlocks(1, 65534)).toHaveLength(30);
  });

  it("refuses empty, reversed and out-of-range ranges", () => {
    expect(() => portRangeBlocks(5, 4)).toThrow(RangeError);
    expect(() => portRangeBlocks(-1, 4)).toThrow(RangeError);
    expect(() => portRangeBlocks(1, 65536)).toThrow(RangeError);
    expect(() => portRangeBlocks(1.5, 4)).toThrow(RangeError);
  });

  it("covers exactly [min, max] with disjoint, ascending, aligned blocks, at most 30 (fast-check)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (a, b) => {
        const [min, max] = a <= b ? [a, b] : [b, a];
        const blocks = portRangeBlocks(min, max);
        expect(blocks.length).toBeLessThanOrEqual(30);
        let next = min;
        for (const { value, mask } of blocks) {
          const size = 0x10000 - mask;
          expect(value & ~mask & 0xffff).toBe(0); // aligned: the mask's zero bits are zero in value
          expect(mask & 0xffff).toBe(mask);
          expect(value).toBe(next); // ascending, no gap, no overlap
          next = value + size;
        }
        expect(next).toBe(max + 1);
        // and every port of a few samples agrees with a plain range test
        for (const p of [min, max, min - 1, max + 1, (min + max) >> 1]) {
          if (p < 0 || p > 65535) continue;
          expect(blocks.some((blk) => (p & blk.mask) === blk.value)).toBe(p >= min && p <= max);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("reserved-port lists", () => {
  it("parse and format the kernel's comma-separated ranges, collapsing and sorting", () => {
    expect(formatPortList(parsePortList(""))).toBe("");
    expect(formatPortList(parsePortList("61000-65535,30080, 5555"))).toBe("5555,30080,61000-65535");
    expect(formatPortList(parsePortList("10-12,13,14-20"))).toBe("10-20");
    expect(() => parsePortList("70000")).toThrow(/cannot parse "70000"/);
    expect(() => parsePortList("9-3")).toThrow(/cannot parse/);
  });
});

const PLAN: NatPlan = {
  device: "wo0",
  underlayDevice: "eth0",
  underlayAddress: "198.18.0.11",
  podCIDR: "198.19.1.0/24",
  snatAddress: "198.19.1.254",
  portMin: 61000,
  portMax: 65535,
  masquerade: true,
  nodePorts: [
    { port: 30080, protocol: "tcp" },
    { port: 30053, protocol: "udp" },
  ],
  clusterIPs: ["198.18.96.10", "198.18.96.11"],
  table: 4789,
  rulePref: 4789,
};

describe("steeringFilters and validateNatPlan", () => {
  it("one filter per range block and protocol, one per NodePort, one per mirrored ICMP type", () => {
    const keys = steeringFilters(PLAN).map((f) => f.key);
    expect(keys).toHaveLength(6 * 2 + 2 + MIRRORED_ICMP_TYPES.length);
    expect(keys).toContain("tcp 61000/0xfff8");
    expect(keys).toContain("udp 61440/0xf000");
    expect(keys).toContain("tcp 30080");
    expect(keys).toContain("udp 30053");
    expect(keys.filter((k) => k.startsWith("icmp"))).toEqual(["icmp type 0", "icmp type 3", "icmp type 11", "icmp type 12"]);
    const np = steeringFilters(PLAN).find((f) => f.key === "tcp 30080")!.args.join(" ");
    // IHL = 5 and no fragments, so `match ip dport` (offset 20) really is the port
    expect(np).toContain("match u8 5 0x0f at 0");
    expect(np).toContain("match u16 0 0x3fff at 6");
    expect(np).toContain("match ip dst 198.18.0.11/32 match ip protocol 6 0xff");
    expect(np).toMatch(/match ip dport 30080 0xffff action mirred egress redirect dev wo0$/);
    expect(steeringFilters(PLAN).find((f) => f.key === "icmp type 3")!.args.join(" ")).toMatch(/match u8 3 0xff at 20 action mirred egress mirror dev wo0$/);
  });

  it("names the bad field", () => {
    expect(() => validateNatPlan({ ...PLAN, podCIDR: "198.19.1.1/24" })).toThrow(/podCIDR/);
    expect(() => validateNatPlan({ ...PLAN, snatAddress: "198.19.1" })).toThrow(/snatAddress/);
    expect(() => validateNatPlan({ ...PLAN, clusterIPs: ["x"] })).toThrow(/clusterIPs\[0\]/);
    expect(() => validateNatPlan({ ...PLAN, portMin: 65000, portMax: 64000 })).toThrow(/portMin\/portMax/);
    expect(() => validateNatPlan({ ...PLAN, nodePorts: [{ port: 62000, protocol: "tcp" }] })).toThrow(/nodePorts\[0\]\.port: 62000 lies inside the SNAT port range/);
    expect(() => validateNatPlan({ ...PLAN, table: 254 })).toThrow(/table/);
    expect(() => validateNatPlan({ ...PLAN, rulePref: 32765 })).toThrow(/rulePref/);
    expect(() => validateNatPlan(PLAN)).not.toThrow();
  });
});

// --- in namespaces -------------------------------------------------------------

interface Ip4 {
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
  icmpType: number;
  ipCsumOk: boolean;
  l4CsumOk: boolean;
  len: number;
}

function csum(b: Buffer, init = 0): number {
  let s = init;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (i + 1 < b.length ? b[i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function parseIp4(hex: string): Ip4 | undefined {
  const b = Buffer.from(hex, "hex");
  if (b.length < 20 || b[0] >> 4 !== 4) return undefined;
  const ihl = (b[0] & 15) * 4;
  const total = b.readUInt16BE(2);
  const l4 = b.subarray(ihl, total);
  const a = (o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
  const pseudo = csum(Buffer.concat([b.subarray(12, 20), Buffer.from([0, b[9], l4.length >> 8, l4.length & 255])]));
  const l4Ok = b[9] === 1 ? csum(l4) === 0xffff : b[9] === 17 && l4.readUInt16BE(6) === 0 ? true : csum(l4, pseudo) === 0xffff;
  return {
    src: a(12),
    dst: a(16),
    proto: b[9],
    sport: b[9] === 1 ? 0 : l4.readUInt16BE(0),
    dport: b[9] === 1 ? 0 : l4.readUInt16BE(2),
    icmpType: b[9] === 1 ? l4[0] : -1,
    ipCsumOk: csum(b.subarray(0, ihl)) === 0xffff,
    l4CsumOk: l4Ok,
    len: total,
  };
}

/** A UDP packet from src:sport to dst:dport with correct checksums, as hex. */
function udpPacket(src: string, dst: string, sport: number, dport: number, payload: Buffer): string {
  const ip = (s: string) => Buffer.from(s.split(".").map(Number));
  const udp = Buffer.concat([Buffer.alloc(8), payload]);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udp.length, 4);
  const pseudo = csum(Buffer.concat([ip(src), ip(dst), Buffer.from([0, 17, udp.length >> 8, udp.length & 255])]));
  udp.writeUInt16BE(~csum(udp, pseudo) & 0xffff || 0xffff, 6);
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + udp.length, 2);
  h[8] = 64;
  h[9] = 17;
  ip(src).copy(h, 12);
  ip(dst).copy(h, 16);
  h.writeUInt16BE(~csum(h) & 0xffff, 10);
  return Buffer.concat([h, udp]).toString("hex");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const UDP_SEND = `
import socket, sys
src, dst, port, n, seg = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
if seg: s.setsockopt(socket.IPPROTO_UDP, 103, seg)  # UDP_SEGMENT: one GSO super-packet
s.sendto(bytes(range(256)) * (n // 256) + bytes(n % 256), (dst, port))
`;

const UDP_RECV = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(65535)
    print("got", a[0], a[1], len(d), flush=True)
`;

const skip = skipUnlessRoot();

describe.skipIf(skip !== null)("NodeNat on a node in namespaces", () => {
  let topo: Topology;
  let node: Namespace, peer: Namespace, pod: Namespace;
  let tun: Child;
  let lines = 0;
  const log: string[][] = [];
  // A batch (`tc -batch -`) is logged as its lines, each as the command it stands for.
  const run = (argv: string[], input?: string) => {
    if (input === undefined) {
      log.push(argv);
      return node.exec(argv);
    }
    for (const l of input.split("\n").filter(Boolean)) log.push([argv[0], ...l.split(" ")]);
    return execFileSync("ip", ["netns", "exec", node.name, ...argv], { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  };
  const nsRun = (argv: string[], input?: string) =>
    input === undefined ? node.exec(argv) : execFileSync("ip", ["netns", "exec", node.name, ...argv], { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  const nat = new NodeNat(run);
  let rulesBefore = "";
  const RESERVED_BEFORE = "5555,30080"; // 30080 was reserved before us and must stay after teardown

  const reserved = () => node.exec(["sysctl", "-n", "net.ipv4.ip_local_reserved_ports"]).trim();
  const tcFilters = () => node.exec(["tc", "filter", "show", "dev", "eth0", "ingress"]);

  function startTun(vnet = false): Promise<string> {
    tun = node.spawn(["node", "--import", "tsx", "test/helpers/tun-dump.ts", "wo0", ...(vnet ? ["--vnet"] : [])], { cwd: process.cwd() });
    lines = 0;
    return tun.waitForLine((l) => l.includes('"ready"'), 20_000);
  }

  /** Packets the tun has read since the last mark(). */
  function tunPackets(): { ip: Ip4; vnet?: string }[] {
    return tun
      .stdout()
      .split("\n")
      .slice(lines, -1)
      .map((l) => JSON.parse(l) as { pkt?: string; vnet?: string })
      .filter((o) => o.pkt)
      .map((o) => ({ ip: parseIp4(o.pkt!)!, vnet: o.vnet }))
      .filter((p) => p.ip);
  }
  function mark(): void {
    lines = tun.stdout().split("\n").length - 1;
  }
  async function waitTun(pred: (p: Ip4) => boolean, ms = 3000): Promise<{ ip: Ip4; vnet?: string }[]> {
    const end = Date.now() + ms;
    for (;;) {
      const hits = tunPackets().filter((p) => pred(p.ip));
      if (hits.length || Date.now() > end) return hits;
      await sleep(50);
    }
  }

  beforeAll(async () => {
    topo = createTopology("nat");
    node = topo.ns("node");
    peer = topo.ns("peer");
    pod = topo.ns("pod");
    topo.veth(node, "eth0", peer, "eth0", { aAddr: "198.18.0.11/24", bAddr: "198.18.0.1/24" });
    topo.veth(pod, "eth0", node, "veth-pod", { aAddr: "198.19.1.10/24", bAddr: "198.19.1.1/24" });
    pod.exec(["ip", "route", "add", "default", "via", "198.19.1.1"]);
    // The node reaches "everything else" by a default route, as a real node does;
    // inside this namespace it only leads to the peer namespace.
    node.exec(["ip", "route", "add", "default", "via", "198.18.0.1", "dev", "eth0"]);
    node.sysctl("net.ipv4.ip_forward", 1);
    node.sysctl("net.ipv4.conf.all.rp_filter", 1);
    node.sysctl("net.ipv4.conf.default.rp_filter", 1);
    node.sysctl("net.ipv4.ip_local_reserved_ports", RESERVED_BEFORE);
    await startTun();
    // what the daemon does to its device
    node.sysctl("net.ipv4.conf.wo0.rp_filter", 0);
    node.sysctl("net.ipv4.conf.wo0.accept_local", 1);
    rulesBefore = node.exec(["ip", "rule", "show"]);
  }, 60_000);

  afterAll(async () => {
    try {
      nat.teardown();
    } catch {
      // the namespaces go anyway
    }
    await topo?.cleanup();
  });

  it("refuses a service-SNAT address that is assigned to an interface (the pod gateway here)", () => {
    expect(() => nat.apply({ ...PLAN, snatAddress: "198.19.1.1" })).toThrow(/snatAddress: 198\.19\.1\.1 is assigned to veth-pod/);
    expect(nat.installed().rules).toEqual([]);
  });

  it("apply installs the rules, table route, service routes, reserved ports and tc filters the plan says", () => {
    nat.apply(PLAN);
    const rules = node.exec(["ip", "rule", "show"]);
    expect(rules).toContain("4789:\tfrom 198.19.1.0/24 lookup main suppress_prefixlength 0");
    expect(rules).toContain("4790:\tfrom 198.19.1.0/24 lookup 4789");
    expect(node.exec(["ip", "route", "show", "table", "4789"]).trim()).toBe("default dev wo0 proto 79 scope link");
    const main = node.exec(["ip", "route", "show"]);
    for (const a of ["198.18.96.10", "198.18.96.11", "198.19.1.254"]) expect(main).toContain(`${a} dev wo0 proto 79 scope link`);
    expect(reserved()).toBe("5555,30053,30080,61000-65535");

    expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).toMatch(/qdisc clsact ffff:/);
    const f = tcFilters();
    expect(f).toContain("pref 4789 u32");
    expect(f).not.toContain("pref 4790");
    const entries = f.split(/\n(?=filter )/).filter((e) => e.includes("fh 8") && e.includes("::"));
    expect(entries).toHaveLength(6 * 2 + 2 + 4);
    for (const e of entries) {
      expect(e).toContain("match c612000b/ffffffff at 16"); // dst 198.18.0.11/32
      expect(e).toContain("match 05000000/0f000000 at 0"); // IHL 5
    }
    const redirects = entries.filter((e) => e.includes("mirred (Egress Redirect to device wo0) stolen"));
    const mirrors = entries.filter((e) => e.includes("mirred (Egress Mirror to device wo0) pipe"));
    expect(redirects).toHaveLength(14);
    expect(mirrors).toHaveLength(4);
    expect(redirects.filter((e) => e.includes("match 00060000/00ff0000 at 8") && e.includes("match 0000ee48/0000fff8 at 20"))).toHaveLength(1); // tcp 61000/13
    expect(redirects.filter((e) => e.includes("match 00110000/00ff0000 at 8") && e.includes("match 0000f000/0000f000 at 20"))).toHaveLength(1); // udp 61440/4
    expect(redirects.filter((e) => e.includes("match 00060000/00ff0000 at 8") && e.includes("match 00007580/0000ffff at 20"))).toHaveLength(1); // tcp 30080
    expect(redirects.filter((e) => e.includes("match 00110000/00ff0000 at 8") && e.includes("match 00007565/0000ffff at 20"))).toHaveLength(1); // udp 30053
    for (const t of [0, 3, 11, 12]) {
      const hex = t.toString(16).padStart(2, "0");
      expect(mirrors.filter((e) => e.includes("match 00010000/00ff0000 at 8") && e.includes(`match ${hex}000000/ff000000 at 20`))).toHaveLength(1);
    }
  });

  it("a second apply of the same plan runs no command that changes anything", () => {
    log.length = 0;
    nat.apply(PLAN);
    const changing = log.filter((a) => a.some((w) => ["add", "del", "replace", "-qw", "-w"].includes(w)));
    expect(changing).toEqual([]);
  });

  it("a changed plan is applied as a diff: routes and reserved ports per item, tc filters swapped make-before-break", () => {
    log.length = 0;
    const plan2: NatPlan = {
      ...PLAN,
      nodePorts: [
        { port: 30080, protocol: "tcp" },
        { port: 30081, protocol: "udp" },
      ],
      clusterIPs: ["198.18.96.11", "198.18.96.12"],
    };
    nat.apply(plan2);
    const main = node.exec(["ip", "route", "show"]);
    expect(main).not.toContain("198.18.96.10 ");
    expect(main).toContain("198.18.96.11 dev wo0");
    expect(main).toContain("198.18.96.12 dev wo0");
    const cmds = log.map((a) => a.join(" "));
    expect(cmds).toContain("ip route del 198.18.96.10/32 dev wo0 table main");
    expect(cmds).toContain("ip route replace 198.18.96.12/32 dev wo0 table main proto 79");
    expect(cmds.filter((c) => c.startsWith("ip route replace 198.18.96.11"))).toEqual([]); // unchanged: untouched
    expect(cmds.filter((c) => c.startsWith("ip rule"))).toEqual(cmds.filter((c) => c.startsWith("ip rule show"))); // rules untouched
    expect(reserved()).toBe("5555,30080-30081,61000-65535"); // the kernel collapses ranges too
    const f = tcFilters();
    expect(f).toContain("pref 4790 u32");
    expect(f).not.toContain("pref 4789 ");
    expect(f).toContain("match 00007581/0000ffff at 20"); // udp 30081
    expect(f).not.toContain("match 00007565/0000ffff at 20"); // udp 30053 gone
    // the new set went in before the old one was deleted
    const firstAdd = cmds.findIndex((c) => c.startsWith("tc filter add") && c.includes("pref 4790"));
    const oldDel = cmds.findIndex((c) => c.startsWith("tc filter del") && c.includes("pref 4789"));
    expect(firstAdd).toBeGreaterThanOrEqual(0);
    expect(oldDel).toBeGreaterThan(firstAdd);
    expect(nat.installed().tc?.filters).toContain("udp 30081");
  });

  it("masquerade off removes the rules and table route; another table and pref move them; back again restores", () => {
    const plan2: NatPlan = { ...PLAN, nodePorts: [{ port: 30080, protocol: "tcp" }, { port: 30081, protocol: "udp" }], clusterIPs: ["198.18.96.11", "198.18.96.12"] };
    const tableRoutes = (t: number) => {
      try {
        return node.exec(["ip", "route", "show", "table", String(t)]).trim();
      } catch {
        return ""; // FIB table does not exist
      }
    };
    nat.apply({ ...plan2, masquerade: false });
    expect(node.exec(["ip", "rule", "show"])).toBe(rulesBefore);
    expect(tableRoutes(4789)).toBe("");
    nat.apply({ ...plan2, table: 4800, rulePref: 4700 });
    const rules = node.exec(["ip", "rule", "show"]);
    expect(rules).toContain("4700:\tfrom 198.19.1.0/24 lookup main suppress_prefixlength 0");
    expect(rules).toContain("4701:\tfrom 198.19.1.0/24 lookup 4800");
    expect(rules).not.toContain("4789:");
    expect(tableRoutes(4800)).toBe("default dev wo0 proto 79 scope link");
    nat.apply(plan2);
    expect(node.exec(["ip", "rule", "show"])).not.toContain("4700:");
    expect(node.exec(["ip", "rule", "show"])).toContain("4790:\tfrom 198.19.1.0/24 lookup 4789");
    expect(tableRoutes(4800)).toBe("");
    expect(tableRoutes(4789)).toBe("default dev wo0 proto 79 scope link");
  });

  it("steers UDP to the SNAT range and NodePorts into wo0 with complete checksums; other ports reach the node's sockets", async () => {
    const server = node.spawn(["python3", "-u", "-c", UDP_RECV, "198.18.0.11", "5000"]);
    await server.waitForLine((l) => l === "ready");
    mark();
    peer.exec(["python3", "-c", UDP_SEND, "198.18.0.1", "198.18.0.11", "61500", "100", "0"]);
    peer.exec(["python3", "-c", UDP_SEND, "198.18.0.1", "198.18.0.11", "30081", "200", "0"]);
    peer.exec(["python3", "-c", UDP_SEND, "198.18.0.1", "198.18.0.11", "5000", "300", "0"]);
    const snat = await waitTun((p) => p.proto === 17 && p.dport === 61500);
    const np = await waitTun((p) => p.proto === 17 && p.dport === 30081);
    await server.waitForLine((l) => l.startsWith("got"));
    await sleep(200);
    expect(snat).toHaveLength(1);
    expect(snat[0].ip).toMatchObject({ src: "198.18.0.1", dst: "198.18.0.11", len: 128, ipCsumOk: true, l4CsumOk: true });
    expect(np).toHaveLength(1);
    expect(np[0].ip.l4CsumOk).toBe(true);
    expect(server.stdout()).toContain("got 198.18.0.1");
    expect(server.stdout()).not.toMatch(/got .* (100|200)$/m);
    expect(tunPackets().filter((p) => p.ip.dport === 5000)).toEqual([]);
  });

  it("a UDP GSO super-packet redirected to the tun arrives segmented, each segment with a complete checksum", async () => {
    mark();
    peer.exec(["python3", "-c", UDP_SEND, "198.18.0.1", "198.18.0.11", "61501", "3000", "1000"]);
    await waitTun((p) => p.dport === 61501);
    await sleep(300);
    const segs = tunPackets().filter((p) => p.ip.dport === 61501);
    expect(segs.map((p) => p.ip.len)).toEqual([1028, 1028, 1028]);
    for (const s of segs) expect(s.ip.l4CsumOk).toBe(true);
  });

  it("steers a TCP SYN to the SNAT range (the node's stack never sees it, so it sends no RST)", async () => {
    mark();
    const cap = peer.spawn(["tcpdump", "-n", "-l", "-i", "eth0", "tcp and src host 198.18.0.11"]);
    await sleep(500);
    try {
      peer.exec(["python3", "-c", "import socket; s=socket.socket(); s.settimeout(1)\ntry: s.connect(('198.18.0.11', 62000))\nexcept Exception as e: print(type(e).__name__)"]);
    } catch {
      // timeout is the point
    }
    const syn = await waitTun((p) => p.proto === 6 && p.dport === 62000);
    expect(syn.length).toBeGreaterThanOrEqual(1);
    expect(syn[0].ip.l4CsumOk).toBe(true);
    cap.proc.kill("SIGINT");
    await cap.exited;
    expect(cap.stdout()).not.toContain("198.18.0.11.62000");
  });

  it("copies ICMP echo replies to wo0 while the node's own ping still works; echo requests to the node are not copied", async () => {
    mark();
    const out = node.exec(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.1"]);
    expect(out).toMatch(/2 received/);
    const replies = await waitTun((p) => p.proto === 1 && p.icmpType === 0);
    expect(replies.length).toBe(2);
    expect(replies[0].ip).toMatchObject({ src: "198.18.0.1", dst: "198.18.0.11", ipCsumOk: true, l4CsumOk: true });
    mark();
    expect(peer.exec(["ping", "-n", "-c", "1", "-W", "2", "198.18.0.11"])).toMatch(/1 received/);
    await sleep(200);
    expect(tunPackets().filter((p) => p.ip.proto === 1)).toEqual([]);
  });

  it("copies ICMP errors (port unreachable) to wo0 and the node's socket still gets the error", async () => {
    mark();
    // A connected UDP socket on the node to a closed port on the peer: the peer's
    // port unreachable reaches the socket (ECONNREFUSED) and a copy reaches wo0.
    const r = node.exec([
      "python3",
      "-c",
      "import socket,time; s=socket.socket(2,2); s.connect(('198.18.0.1', 9)); s.send(b'x'); time.sleep(0.3)\ntry: s.send(b'y'); s.recv(10); print('no error')\nexcept ConnectionRefusedError: print('refused')",
    ]);
    expect(r.trim()).toBe("refused");
    const errs = await waitTun((p) => p.proto === 1 && p.icmpType === 3);
    expect(errs.length).toBeGreaterThanOrEqual(1);
    expect(errs[0].ip.src).toBe("198.18.0.1");
  });

  it("routes a pod's packet to an outside address (default route) and to a ClusterIP into wo0, but not pod -> node", async () => {
    const server = node.spawn(["python3", "-u", "-c", UDP_RECV, "198.18.0.11", "5002"]);
    await server.waitForLine((l) => l === "ready");
    mark();
    pod.exec(["python3", "-c", UDP_SEND, "198.19.1.10", "198.18.2.100", "9", "64", "0"]);
    pod.exec(["python3", "-c", UDP_SEND, "198.19.1.10", "198.18.96.11", "80", "65", "0"]);
    pod.exec(["python3", "-c", UDP_SEND, "198.19.1.10", "198.18.0.11", "5002", "66", "0"]);
    const out = await waitTun((p) => p.dst === "198.18.2.100");
    const svc = await waitTun((p) => p.dst === "198.18.96.11");
    await server.waitForLine((l) => l.startsWith("got 198.19.1.10"));
    await sleep(200);
    expect(out).toHaveLength(1);
    expect(out[0].ip).toMatchObject({ src: "198.19.1.10", proto: 17, dport: 9, ipCsumOk: true, l4CsumOk: true });
    expect(svc).toHaveLength(1);
    expect(tunPackets().filter((p) => p.ip.dst === "198.18.0.11")).toEqual([]);
  });

  it("pod -> a host on a connected (non-default) route is forwarded by the kernel untranslated, not into wo0", async () => {
    const server = peer.spawn(["python3", "-u", "-c", UDP_RECV, "198.18.0.1", "5003"]);
    await server.waitForLine((l) => l === "ready");
    mark();
    pod.exec(["python3", "-c", UDP_SEND, "198.19.1.10", "198.18.0.1", "5003", "67", "0"]);
    await server.waitForLine((l) => l.startsWith("got"));
    expect(server.stdout()).toContain("got 198.19.1.10");
    expect(tunPackets().filter((p) => p.ip.dst === "198.18.0.1")).toEqual([]);
  });

  it("strict rp_filter accepts a de-NATed reply written into wo0 (outside source -> pod)", async () => {
    const server = pod.spawn(["python3", "-u", "-c", UDP_RECV, "198.19.1.10", "7000"]);
    await server.waitForLine((l) => l === "ready");
    tun.proc.stdin!.write(JSON.stringify({ write: udpPacket("198.18.2.100", "198.19.1.10", 9, 7000, Buffer.from("reply")) }) + "\n");
    await server.waitForLine((l) => l.startsWith("got"));
    expect(server.stdout()).toContain("got 198.18.2.100 9 5");
  });

  it("re-points the filters when the device is recreated; with vnet headers the kernel hands over what it has", async () => {
    tun.proc.kill("SIGTERM");
    await tun.exited;
    // wo0 is gone: the filters' mirred target shows as "*"
    expect(tcFilters()).toContain("Egress Redirect to device *");
    const ready = JSON.parse(await startTun(true)) as { ifindex: number };
    expect(ready.ifindex).toBeGreaterThan(0);
    nat.apply({ ...PLAN, nodePorts: [{ port: 30080, protocol: "tcp" }, { port: 30081, protocol: "udp" }], clusterIPs: ["198.18.96.11", "198.18.96.12"] });
    expect(tcFilters()).not.toContain("device *");
    expect(tcFilters()).toContain("pref 4789 u32");
    // routes through the old device went with it; apply put them back
    expect(node.exec(["ip", "route", "show", "table", "4789"]).trim()).toBe("default dev wo0 proto 79 scope link");
    mark();
    peer.exec(["python3", "-c", UDP_SEND, "198.18.0.1", "198.18.0.11", "61502", "100", "0"]);
    const got = await waitTun((p) => p.dport === 61502);
    expect(got).toHaveLength(1);
    const flags = parseInt(got[0].vnet!.slice(0, 2), 16);
    // Either the checksum is complete, or the kernel says NEEDS_CSUM (1) and
    // csum_start/offset point at the UDP checksum (20 + 6).
    if (flags & 1) {
      const v = Buffer.from(got[0].vnet!, "hex");
      expect(v.readUInt16LE(6)).toBe(20);
      expect(v.readUInt16LE(8)).toBe(6);
    } else {
      expect(got[0].ip.l4CsumOk).toBe(true);
    }
    console.log(`vnet header of a UDP datagram redirected from veth ingress: ${got[0].vnet} (flags ${flags}, checksum ${got[0].ip.l4CsumOk ? "complete" : "partial"})`);
  });

  it("teardown restores rules, routes, reserved ports and removes the qdisc it created; twice is fine", async () => {
    nat.teardown();
    expect(node.exec(["ip", "rule", "show"])).toBe(rulesBefore);
    let table = "";
    try {
      table = node.exec(["ip", "route", "show", "table", "4789"]);
    } catch (e) {
      expect(String(e)).toMatch(/FIB table does not exist/);
    }
    expect(table.trim()).toBe("");
    expect(node.exec(["ip", "route", "show"])).not.toMatch(/198\.18\.96\.|198\.19\.1\.254/);
    expect(reserved()).toBe(RESERVED_BEFORE);
    expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).not.toContain("clsact");
    expect(nat.installed()).toEqual({ rules: [], tableRoute: undefined, routes: [], tc: undefined, reservedPortsAdded: "" });
    expect(() => nat.teardown()).not.toThrow();

    // Control: without the rules, strict rp_filter drops the same reply.
    const server = pod.spawn(["python3", "-u", "-c", UDP_RECV, "198.19.1.10", "7001"]);
    await server.waitForLine((l) => l === "ready");
    tun.proc.stdin!.write(JSON.stringify({ write: udpPacket("198.18.2.100", "198.19.1.10", 9, 7001, Buffer.from("reply")) }) + "\n");
    await sleep(500);
    expect(server.stdout()).not.toContain("got");
  });

  it("leaves a clsact qdisc it found, and other filters on it, in place", () => {
    node.exec(["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    try {
      node.exec(["tc", "filter", "add", "dev", "eth0", "ingress", "pref", "100", "protocol", "ip", "u32", "match", "ip", "dst", "198.18.0.99/32", "flowid", "ffff:1"]);
      const other = new NodeNat(nsRun);
      other.apply(PLAN);
      expect(other.installed().tc?.createdQdisc).toBe(false);
      other.teardown();
      expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).toContain("clsact");
      const f = tcFilters();
      expect(f).toContain("pref 100 u32");
      expect(f).not.toMatch(/pref 47(89|90)/);
      expect(reserved()).toBe(RESERVED_BEFORE);
    } finally {
      node.exec(["tc", "qdisc", "del", "dev", "eth0", "clsact"]);
    }
  });

  it("teardown after the devices are gone does not throw; a failing command is named with its stderr", async () => {
    const n2 = new NodeNat(nsRun);
    n2.apply(PLAN);
    tun.proc.kill("SIGTERM");
    await tun.exited;
    expect(() => n2.teardown()).not.toThrow();
    expect(node.exec(["ip", "rule", "show"])).toBe(rulesBefore);
    expect(reserved()).toBe(RESERVED_BEFORE);
    expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).not.toContain("clsact");
    // wo0 is gone now: apply fails, naming the command
    const n3 = new NodeNat(nsRun);
    expect(() => n3.apply(PLAN)).toThrow(/ip -json link show dev wo0.*Device "wo0" does not exist/);
    n3.teardown();
    expect(node.exec(["ip", "rule", "show"])).toBe(rulesBefore);
    expect(reserved()).toBe(RESERVED_BEFORE);
  });
});

describe.skipIf(skip !== null)("the demo cluster's outside host, and NodeNat on a cluster worker", () => {
  let cluster: Cluster;

  beforeAll(() => {
    cluster = new Cluster();
    cluster.build();
    cluster.addOutside();
  }, 60_000);

  afterAll(async () => {
    await cluster?.destroy();
  });

  it("reaches every worker's underlay address through the leaf, and has no route to the pods", () => {
    expect(cluster.pingFrom("outside", "198.18.0.11", 1).ok).toBe(true);
    expect(cluster.pingFrom("outside", "198.18.1.13", 1).ok).toBe(true);
    const routes = cluster.exec("outside", ["ip", "route", "show"]);
    expect(routes).not.toContain("198.19.");
    expect(routes).not.toContain("default");
    expect(() => cluster.exec("outside", ["ip", "route", "get", podIp(1)])).toThrow(/unreachable/i);
  });

  it("tcpTransferNs reports the client's address and the peer the server saw; udp echo and requests work from a worker", async () => {
    const r = await cluster.tcpTransferNs("w3", "outside", "0.0.0.0", OUTSIDE.address, 5201, 300_000);
    expect(r.received).toBe(300_000);
    expect(r.receivedSha).toBe(r.sentSha);
    expect(r.client.address).toBe("198.18.1.13");
    expect(r.serverSawPeer).toEqual(r.client);
    expect(r.serverLocal).toEqual({ address: OUTSIDE.address, port: 5201 });
    const echo = await cluster.udpEchoServer("outside", "0.0.0.0", 5353);
    try {
      const u = cluster.udpRequest("w1", OUTSIDE.address, 5353, "hello");
      expect(u).toMatchObject({ ok: true, reply: "hello", local: ["198.18.0.11", expect.any(Number)] });
      await waitFor(() => echo.seen().length === 1, 2000, "the echo server did not log the datagram");
      expect(echo.seen()).toEqual([{ from: "198.18.0.11", port: u.local[1], len: 5 }]);
      // Without NAT a pod's datagram reaches the outside, but the answer has no way back.
      const p = cluster.udpRequest("pod1", OUTSIDE.address, 5353, "lost", 1);
      expect(p.ok).toBe(false);
      await waitFor(() => echo.seen().length === 2, 2000, "the echo server did not log the pod's datagram");
      expect(echo.seen().at(-1)).toMatchObject({ from: podIp(1) });
    } finally {
      echo.stop();
    }
  });

  it("with NodeNat on worker1, pod1 -> outside is routed into wo0 (the worker reaches the outside by its default route)", async () => {
    const tun = cluster.spawnIn("w1", ["node", "--import", "tsx", "test/helpers/tun-dump.ts", "wo0"]);
    let out = "";
    tun.stdout!.on("data", (d) => (out += String(d)));
    await waitFor(() => out.includes('"ready"'), 20_000, "tun-dump did not start");
    const nat = new NodeNat((a, input) => cluster.exec("w1", a, input));
    try {
      nat.apply({ ...PLAN, clusterIPs: [] });
      cluster.udpRequest("pod1", OUTSIDE.address, 5354, "via-wo0", 1);
      const pkts = () =>
        out
          .split("\n")
          .filter((l) => l.includes('"pkt"'))
          .map((l) => parseIp4(JSON.parse(l).pkt))
          .filter((p) => p && p.dst === OUTSIDE.address);
      await waitFor(() => pkts().length > 0, 3000, "nothing from pod1 reached wo0");
      expect(pkts()[0]).toMatchObject({ src: podIp(1), dport: 5354, l4CsumOk: true });
      // Only default-route traffic is diverted: pod1 -> worker2's underlay address
      // matches the connected 198.18.0.0/24 and is forwarded by the kernel, untranslated.
      expect(cluster.exec("w1", ["ip", "route", "get", "198.18.0.12", "from", podIp(1), "iif", "veth-pod"])).toContain("dev eth0");
      expect(cluster.exec("w1", ["ip", "route", "get", OUTSIDE.address, "from", podIp(1), "iif", "veth-pod"])).toContain("dev wo0");
    } finally {
      nat.teardown();
      tun.kill("SIGTERM");
    }
  });
});

// --- IPv6 (NatPlan.ipv6, NAT66) ---------------------------------------------------

const IPV6: NonNullable<NatPlan["ipv6"]> = {
  podCIDR: "2001:2:0:1::/64",
  underlayAddress: "2001:2::11",
  snatAddress: "2001:2:0:1::fffe",
  clusterIPs: ["2001:2:0:96::a", "2001:2:0:96::b"],
};
const PLAN6: NatPlan = { ...PLAN, ipv6: IPV6 };

describe("steeringFilters6 and validateNatPlan's IPv6 fields", () => {
  it("one protocol-ipv6 filter per range block and protocol, per NodePort, per mirrored ICMPv6 type (golden argv)", () => {
    const f = steeringFilters6(PLAN6, "2001:0002:0000::0011"); // written out long: the filter gets RFC 5952 text
    expect(f.map((x) => x.key)).toEqual([
      ...["tcp6", "udp6"].flatMap((p) => ["61000/0xfff8", "61008/0xfff0", "61024/0xffe0", "61056/0xff80", "61184/0xff00", "61440/0xf000"].map((b) => `${p} ${b}`)),
      "tcp6 30080",
      "udp6 30053",
      "icmp6 type 129",
      "icmp6 type 1",
      "icmp6 type 2",
      "icmp6 type 3",
      "icmp6 type 4",
    ]);
    const args = (key: string) => f.find((x) => x.key === key)!.args;
    const base = (proto: number) => ["u32", "match", "ip6", "dst", "2001:2::11/128", "match", "ip6", "protocol", String(proto), "0xff"];
    expect(args("udp6 61000/0xfff8")).toEqual([...base(17), "match", "ip6", "dport", "61000", "0xfff8", "action", "mirred", "egress", "redirect", "dev", "wo0"]);
    expect(args("tcp6 30080")).toEqual([...base(6), "match", "ip6", "dport", "30080", "0xffff", "action", "mirred", "egress", "redirect", "dev", "wo0"]);
    expect(args("icmp6 type 129")).toEqual([...base(58), "match", "u8", "129", "0xff", "at", "40", "action", "mirred", "egress", "mirror", "dev", "wo0"]);
    expect(args("icmp6 type 2")).toEqual([...base(58), "match", "u8", "2", "0xff", "at", "40", "action", "mirred", "egress", "mirror", "dev", "wo0"]);
    // never neighbour discovery
    expect([...MIRRORED_ICMPV6_TYPES].filter((t) => t >= 133 && t <= 137)).toEqual([]);
  });

  it("names the bad IPv6 field", () => {
    const with6 = (v: Partial<NonNullable<NatPlan["ipv6"]>>, extra: Partial<NatPlan> = {}): NatPlan => ({ ...PLAN, ...extra, ipv6: { ...IPV6, ...v } });
    expect(() => validateNatPlan(with6({ podCIDR: "2001:2:0:1::1/64" }))).toThrow(/nat plan: ipv6\.podCIDR: .*host bits set \(did you mean 2001:2:0:1::\/64\?\)/);
    expect(() => validateNatPlan(with6({ podCIDR: "198.19.1.0/24" }))).toThrow(/ipv6\.podCIDR: "198\.19\.1\.0\/24" is not an IPv6 CIDR/);
    expect(() => validateNatPlan(with6({ underlayAddress: "2001:2::g" }))).toThrow(/ipv6\.underlayAddress: "2001:2::g" is not an IPv6 address: "g" is not 1 to 4 hex digits/);
    expect(() => validateNatPlan(with6({ snatAddress: "fe80::1%eth0" }))).toThrow(/ipv6\.snatAddress: .*zone index/);
    expect(() => validateNatPlan(with6({ clusterIPs: ["2001:2:0:96::a", "198.18.96.10"] }))).toThrow(/ipv6\.clusterIPs\[1\]/);
    expect(() => validateNatPlan(with6({}, { filterPref: 65533 }))).toThrow(/filterPref: 65533/);
    expect(() => validateNatPlan(with6({ underlayAddress: undefined }))).not.toThrow();
    expect(() => validateNatPlan(PLAN6)).not.toThrow();
  });
});

/** Namespaces named ns6s-<random>-<name>, apart from every other suite's wo-* ones. */
class Ns6sTopology extends Topology {
  override readonly prefix = `ns6s-${randomBytes(2).toString("hex")}-`;
}

/** `ip -6 addr add CIDR dev DEV nodad` inside `ns`, for 2001:2::/48 only. */
function addr6(ns: Namespace, dev: string, cidr: string): void {
  if (!cidr6Contains("2001:2::/48", cidr.split("/")[0])) throw new Error(`${cidr} is outside 2001:2::/48, the only IPv6 range tests may use`);
  ns.exec(["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"]);
}

const UDP6_SEND = `
import socket, sys
src, dst, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((src, 0))
if sys.argv[5:] == ["dstopts"]:
    # a Destination Options header (one PadN option) between the fixed header and UDP
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.sendto(bytes(range(256)) * (n // 256) + bytes(n % 256), (dst, port))
`;

const UDP6_RECV = `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(65535)
    print("got", a[0], a[1], len(d), flush=True)
`;

/** A unicast Neighbor Solicitation from src for target (the kernel fills the ICMPv6 checksum); prints "na" when target answers. */
const NS_SEND = `
import socket, sys, time
src, target, mac = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", ""))
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
s.bind((src, 0))
t = socket.inet_pton(socket.AF_INET6, target)
s.sendto(bytes([135, 0, 0, 0, 0, 0, 0, 0]) + t + bytes([1, 1]) + mac, (target, 0))
s.settimeout(0.2)
end = time.time() + 3
while time.time() < end:
    try:
        d, a = s.recvfrom(2000)
    except socket.timeout:
        continue
    if d[0] == 136 and d[8:24] == t:
        print("na", a[0], flush=True)
        break
else:
    print("no na", flush=True)
`;

interface Ip6 {
  src: string;
  dst: string;
  next: number;
  sport: number;
  dport: number;
  icmpType: number;
  l4ok: boolean;
  plen: number;
}

function parseIp6(hex: string): Ip6 | undefined {
  const b = Buffer.from(hex, "hex");
  if (b.length < 40 || b[0] >> 4 !== 6) return undefined;
  const p = parseIpv6(new Uint8Array(b));
  const l4 = p.payload.length >= 4 && (p.next === 6 || p.next === 17);
  return {
    src: p.src,
    dst: p.dst,
    next: p.next,
    sport: l4 ? (p.payload[0] << 8) | p.payload[1] : -1,
    dport: l4 ? (p.payload[2] << 8) | p.payload[3] : -1,
    icmpType: p.next === 58 ? p.payload[0] : -1,
    l4ok: p.l4ok === true,
    plen: p.plen,
  };
}

describe.skipIf(skip !== null)("NodeNat with IPv6 (NAT66) on a node in namespaces", () => {
  // peer (2001:2::1/64) --eth0-- node (2001:2::11/64, wo0 tun) --veth-pod-- pod (2001:2:0:1::10/64)
  // (plus the IPv4 addresses of the block above: the IPv4 half of the plan is applied too)
  let topo: Ns6sTopology;
  let node: Namespace, peer: Namespace, pod: Namespace;
  let tun: Child;
  let lines = 0;
  const log: string[][] = [];
  const run = (argv: string[], input?: string) => {
    if (input === undefined) {
      log.push(argv);
      return node.exec(argv);
    }
    for (const l of input.split("\n").filter(Boolean)) log.push([argv[0], ...l.split(" ")]);
    return execFileSync("ip", ["netns", "exec", node.name, ...argv], { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  };
  const nsRun = (argv: string[], input?: string) =>
    input === undefined ? node.exec(argv) : execFileSync("ip", ["netns", "exec", node.name, ...argv], { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  const nat = new NodeNat(run);
  let rules6Before = "";
  let rules4Before = "";
  const RESERVED_BEFORE = "5555";

  const rules6 = () => node.exec(["ip", "-6", "rule", "show"]);
  const table6 = (t = 4789) => {
    try {
      return node.exec(["ip", "-6", "route", "show", "table", String(t)]).trim();
    } catch {
      return ""; // FIB table does not exist
    }
  };
  const main6 = () => node.exec(["ip", "-6", "route", "show"]);
  const tcFilters = () => node.exec(["tc", "filter", "show", "dev", "eth0", "ingress"]);
  /** `tc filter show` split into its filter entries (the ones with a key), of one protocol. */
  const entries = (proto: "ip" | "ipv6") =>
    tcFilters()
      .split(/\n(?=filter )/)
      .filter((e) => e.startsWith(`filter protocol ${proto} `) && e.includes("fh 8") && e.includes("::"))
      .map((e) => e.trim());

  async function startTun(): Promise<void> {
    tun = node.spawn(["node", "--import", "tsx", "test/helpers/tun-dump.ts", "wo0"], { cwd: process.cwd() });
    lines = 0;
    await tun.waitForLine((l) => l.includes('"ready"'), 20_000);
    // tun-dump turns IPv6 off on its device; the IPv6 routes through wo0 need it
    // on (no address, so the kernel has nothing of its own to say there).
    node.exec(["ip", "link", "set", "dev", "wo0", "addrgenmode", "none"]);
    node.sysctl("net.ipv6.conf.wo0.disable_ipv6", 0);
  }
  /** IPv6 packets the tun has read since the last mark() (all of them with `all`). */
  function tunPackets(all = false): Ip6[] {
    return tun
      .stdout()
      .split("\n")
      .slice(all ? 0 : lines, -1)
      .map((l) => JSON.parse(l) as { pkt?: string })
      .filter((o) => o.pkt)
      .map((o) => parseIp6(o.pkt!))
      .filter((p): p is Ip6 => p !== undefined);
  }
  function mark(): void {
    lines = tun.stdout().split("\n").length - 1;
  }
  async function waitTun(pred: (p: Ip6) => boolean, ms = 3000): Promise<Ip6[]> {
    const end = Date.now() + ms;
    for (;;) {
      const hits = tunPackets().filter(pred);
      if (hits.length || Date.now() > end) return hits;
      await sleep(50);
    }
  }

  beforeAll(async () => {
    topo = new Ns6sTopology("nat6");
    node = topo.ns("node");
    peer = topo.ns("peer");
    pod = topo.ns("pod");
    topo.veth(node, "eth0", peer, "eth0", { aAddr: "198.18.0.11/24", bAddr: "198.18.0.1/24" });
    topo.veth(pod, "eth0", node, "veth-pod", { aAddr: "198.19.1.10/24", bAddr: "198.19.1.1/24" });
    addr6(node, "eth0", "2001:2::11/64");
    addr6(peer, "eth0", "2001:2::1/64");
    addr6(pod, "eth0", "2001:2:0:1::10/64");
    addr6(node, "veth-pod", "2001:2:0:1::1/64");
    pod.exec(["ip", "route", "add", "default", "via", "198.19.1.1"]);
    pod.exec(["ip", "-6", "route", "add", "default", "via", "2001:2:0:1::1"]);
    // The node reaches "everything else" by its default routes; inside this
    // namespace they only lead to the peer namespace.
    node.exec(["ip", "route", "add", "default", "via", "198.18.0.1", "dev", "eth0"]);
    node.exec(["ip", "-6", "route", "add", "default", "via", "2001:2::1", "dev", "eth0"]);
    node.sysctl("net.ipv4.ip_forward", 1);
    node.sysctl("net.ipv6.conf.all.forwarding", 1);
    node.sysctl("net.ipv4.ip_local_reserved_ports", RESERVED_BEFORE);
    await startTun();
    node.sysctl("net.ipv4.conf.wo0.rp_filter", 0);
    rules6Before = rules6();
    rules4Before = node.exec(["ip", "rule", "show"]);
  }, 60_000);

  afterAll(async () => {
    try {
      nat.teardown();
    } catch {
      // the namespaces go anyway
    }
    await topo?.cleanup();
  });

  it("refuses an IPv6 service-SNAT address assigned to an interface, and a device with IPv6 off, before changing anything", () => {
    expect(() => nat.apply({ ...PLAN6, ipv6: { ...IPV6, snatAddress: "2001:2:0:1::1" } })).toThrow(/ipv6\.snatAddress: 2001:2:0:1::1 is assigned to veth-pod/);
    node.sysctl("net.ipv6.conf.wo0.disable_ipv6", 1);
    try {
      expect(() => nat.apply(PLAN6)).toThrow(/ipv6: IPv6 is disabled on wo0 \(net\.ipv6\.conf\.wo0\.disable_ipv6 = 1\)/);
    } finally {
      node.sysctl("net.ipv6.conf.wo0.disable_ipv6", 0);
    }
    expect(nat.installed()).toMatchObject({ rules: [], routes: [], tc: undefined });
    expect(rules6()).toBe(rules6Before);
  });

  it("apply installs the ip -6 rules, the IPv6 table route, /128 routes and protocol-ipv6 filters at their own prefs", () => {
    nat.apply(PLAN6);
    const r6 = rules6();
    expect(r6).toContain("4789:\tfrom 2001:2:0:1::/64 lookup main suppress_prefixlength 0");
    expect(r6).toContain("4790:\tfrom 2001:2:0:1::/64 lookup 4789");
    expect(table6()).toBe("default dev wo0 proto 79 metric 1024 pref medium");
    for (const a of ["2001:2:0:96::a", "2001:2:0:96::b", "2001:2:0:1::fffe"]) expect(main6()).toContain(`${a} dev wo0 proto 79 metric 1024 pref medium`);
    // the IPv4 half is there as before
    expect(node.exec(["ip", "rule", "show"])).toContain("4790:\tfrom 198.19.1.0/24 lookup 4789");
    expect(node.exec(["ip", "route", "show", "table", "4789"]).trim()).toBe("default dev wo0 proto 79 scope link");

    const f = tcFilters();
    expect(f).toContain("filter protocol ip pref 4789 u32");
    expect(f).toContain("filter protocol ipv6 pref 4791 u32");
    expect(f).not.toMatch(/pref 479[02] /);
    const v6 = entries("ipv6");
    expect(v6).toHaveLength(6 * 2 + 2 + 5);
    expect(entries("ip")).toHaveLength(6 * 2 + 2 + 4);
    for (const e of v6) {
      expect(e).toContain("pref 4791");
      // dst 2001:2::11/128, as the kernel holds it
      for (const m of ["20010002/ffffffff at 24", "00000000/ffffffff at 28", "00000000/ffffffff at 32", "00000011/ffffffff at 36"]) expect(e).toContain(`match ${m}`);
    }
    const redirects = v6.filter((e) => e.includes("mirred (Egress Redirect to device wo0) stolen"));
    const mirrors = v6.filter((e) => e.includes("mirred (Egress Mirror to device wo0) pipe"));
    expect(redirects).toHaveLength(14);
    expect(mirrors).toHaveLength(5);
    // next header at offset 6 (the word at 4), the port at 42 (the low half of the word at 40)
    expect(redirects.filter((e) => e.includes("match 00000600/0000ff00 at 4") && e.includes("match 0000ee48/0000fff8 at 40"))).toHaveLength(1); // tcp 61000/13
    expect(redirects.filter((e) => e.includes("match 00001100/0000ff00 at 4") && e.includes("match 0000f000/0000f000 at 40"))).toHaveLength(1); // udp 61440/4
    expect(redirects.filter((e) => e.includes("match 00000600/0000ff00 at 4") && e.includes("match 00007580/0000ffff at 40"))).toHaveLength(1); // tcp 30080
    expect(redirects.filter((e) => e.includes("match 00001100/0000ff00 at 4") && e.includes("match 00007565/0000ffff at 40"))).toHaveLength(1); // udp 30053
    for (const t of [129, 1, 2, 3, 4]) {
      const hex = t.toString(16).padStart(2, "0");
      expect(mirrors.filter((e) => e.includes("match 00003a00/0000ff00 at 4") && e.includes(`match ${hex}000000/ff000000 at 40`))).toHaveLength(1);
    }
    for (const t of [133, 134, 135, 136, 137]) expect(f).not.toContain(`match ${t.toString(16)}000000/ff000000 at 40`);

    expect(nat.installed()).toMatchObject({ tableRoute6: "default dev wo0 table 4789", tc: { pref: 4789, pref6: 4791 } });
    const rec = nat.record();
    expect(rec.rules.filter((r) => r.family === 6)).toEqual([
      { family: 6, pref: 4789, args: ["from", "2001:2:0:1::/64", "lookup", "main", "suppress_prefixlength", "0"] },
      { family: 6, pref: 4790, args: ["from", "2001:2:0:1::/64", "lookup", "4789"] },
    ]);
    expect(rec.tableRoute6).toEqual({ table: 4789, dev: "wo0" });
    expect(rec.routes.filter((r) => r.dst.includes(":")).map((r) => r.dst)).toEqual(["2001:2:0:96::a/128", "2001:2:0:96::b/128", "2001:2:0:1::fffe/128"]);
    expect(rec.tc?.prefs).toEqual([4789, 4790, 4791, 4792]);
  });

  it("a second apply of the same plan runs no command that changes anything", () => {
    log.length = 0;
    nat.apply(PLAN6);
    expect(log.filter((a) => a.some((w) => ["add", "del", "replace", "-qw", "-w"].includes(w)))).toEqual([]);
  });

  it("steers UDP to the SNAT range and a NodePort on the IPv6 underlay address into wo0; other ports reach the node's sockets", async () => {
    const server = node.spawn(["python3", "-u", "-c", UDP6_RECV, "2001:2::11", "5000"]);
    await server.waitForLine((l) => l === "ready");
    mark();
    peer.exec(["python3", "-c", UDP6_SEND, "2001:2::1", "2001:2::11", "61500", "100"]);
    peer.exec(["python3", "-c", UDP6_SEND, "2001:2::1", "2001:2::11", "30053", "200"]);
    peer.exec(["python3", "-c", UDP6_SEND, "2001:2::1", "2001:2::11", "5000", "300"]);
    const snat = await waitTun((p) => p.next === 17 && p.dport === 61500);
    const np = await waitTun((p) => p.next === 17 && p.dport === 30053);
    await server.waitForLine((l) => l.startsWith("got"));
    await sleep(200);
    expect(snat).toHaveLength(1);
    expect(snat[0]).toMatchObject({ src: "2001:2::1", dst: "2001:2::11", plen: 108, l4ok: true });
    expect(np).toHaveLength(1);
    expect(np[0].l4ok).toBe(true);
    expect(server.stdout()).toMatch(/^got 2001:2::1 \d+ 300$/m);
    expect(server.stdout()).not.toMatch(/got .* (100|200)$/m);
    expect(tunPackets().filter((p) => p.dport === 5000)).toEqual([]);
  });

  it("a datagram with an extension header after the fixed header is not steered (by construction): the node's socket gets it", async () => {
    // A socket bound explicitly to a reserved port (only auto-binding avoids them).
    const server = node.spawn(["python3", "-u", "-c", UDP6_RECV, "2001:2::11", "61600"]);
    await server.waitForLine((l) => l === "ready");
    mark();
    peer.exec(["python3", "-c", UDP6_SEND, "2001:2::1", "2001:2::11", "61600", "40", "dstopts"]);
    peer.exec(["python3", "-c", UDP6_SEND, "2001:2::1", "2001:2::11", "61600", "41"]);
    await server.waitForLine((l) => l.startsWith("got"));
    const plain = await waitTun((p) => p.next === 17 && p.dport === 61600);
    await sleep(200);
    expect(server.stdout()).toMatch(/^got 2001:2::1 \d+ 40$/m);
    expect(server.stdout()).not.toMatch(/ 41$/m);
    expect(plain).toHaveLength(1);
    expect(tunPackets().filter((p) => p.next === 60)).toEqual([]); // no Destination Options packet in wo0
  });

  it("steers a TCP SYN to the SNAT range (the node's stack never sees it, so it sends no RST)", async () => {
    mark();
    const cap = peer.spawn(["tcpdump", "-n", "-l", "-i", "eth0", "ip6 and tcp and src host 2001:2::11"]);
    await sleep(500);
    peer.exec(["python3", "-c", "import socket; s=socket.socket(socket.AF_INET6); s.settimeout(1)\ntry: s.connect(('2001:2::11', 62000))\nexcept Exception as e: print(type(e).__name__)"]);
    const syn = await waitTun((p) => p.next === 6 && p.dport === 62000);
    expect(syn.length).toBeGreaterThanOrEqual(1);
    expect(syn[0].l4ok).toBe(true);
    cap.proc.kill("SIGINT");
    await cap.exited;
    expect(cap.stdout()).not.toContain("2001:2::11.62000");
  });

  it("copies ICMPv6 echo replies to wo0 while the node's own ping works; echo requests to the node are not copied", async () => {
    mark();
    expect(node.exec(["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", "2001:2::1"])).toMatch(/2 received/);
    const replies = await waitTun((p) => p.next === 58 && p.icmpType === 129);
    await sleep(200);
    expect(tunPackets().filter((p) => p.next === 58 && p.icmpType === 129)).toHaveLength(2);
    expect(replies[0]).toMatchObject({ src: "2001:2::1", dst: "2001:2::11", l4ok: true });
    mark();
    expect(peer.exec(["ping", "-6", "-n", "-c", "1", "-W", "2", "2001:2::11"])).toMatch(/1 received/);
    await sleep(200);
    expect(tunPackets().filter((p) => p.next === 58)).toEqual([]);
  });

  it("copies ICMPv6 errors (port unreachable) to wo0 and the node's socket still gets the error", async () => {
    mark();
    const r = node.exec([
      "python3",
      "-c",
      "import socket,time; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.connect(('2001:2::1', 9)); s.send(b'x'); time.sleep(0.3)\ntry: s.send(b'y'); s.recv(10); print('no error')\nexcept ConnectionRefusedError: print('refused')",
    ]);
    expect(r.trim()).toBe("refused");
    const errs = await waitTun((p) => p.next === 58 && p.icmpType === 1);
    expect(errs.length).toBeGreaterThanOrEqual(1);
    expect(errs[0]).toMatchObject({ src: "2001:2::1", dst: "2001:2::11", l4ok: true });
  });

  it("a unicast Neighbor Solicitation for the underlay address is answered by the node and never reaches wo0", async () => {
    mark();
    const mac = peer.exec(["cat", "/sys/class/net/eth0/address"]).trim();
    expect(peer.exec(["python3", "-c", NS_SEND, "2001:2::1", "2001:2::11", mac]).trim()).toBe("na 2001:2::11");
    await sleep(200);
    expect(tunPackets().filter((p) => p.next === 58)).toEqual([]);
    // nor any neighbour discovery the two kernels exchanged during this whole block
    expect(tunPackets(true).filter((p) => p.next === 58 && p.icmpType >= 133 && p.icmpType <= 137)).toEqual([]);
  });

  it("routes a pod's IPv6 packet to an outside address (default route) and to a ClusterIP into wo0, but not pod -> node or pod -> a connected host", async () => {
    const nodeServer = node.spawn(["python3", "-u", "-c", UDP6_RECV, "2001:2::11", "5002"]);
    const peerServer = peer.spawn(["python3", "-u", "-c", UDP6_RECV, "2001:2::1", "5003"]);
    await nodeServer.waitForLine((l) => l === "ready");
    await peerServer.waitForLine((l) => l === "ready");
    mark();
    pod.exec(["python3", "-c", UDP6_SEND, "2001:2:0:1::10", "2001:2:0:ff::100", "9", "64"]);
    pod.exec(["python3", "-c", UDP6_SEND, "2001:2:0:1::10", "2001:2:0:96::b", "80", "65"]);
    pod.exec(["python3", "-c", UDP6_SEND, "2001:2:0:1::10", "2001:2::11", "5002", "66"]);
    pod.exec(["python3", "-c", UDP6_SEND, "2001:2:0:1::10", "2001:2::1", "5003", "67"]);
    const out = await waitTun((p) => p.dst === "2001:2:0:ff::100");
    const svc = await waitTun((p) => p.dst === "2001:2:0:96::b");
    await nodeServer.waitForLine((l) => l.startsWith("got 2001:2:0:1::10"));
    await peerServer.waitForLine((l) => l.startsWith("got 2001:2:0:1::10"));
    await sleep(200);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ src: "2001:2:0:1::10", next: 17, dport: 9, l4ok: true });
    expect(svc).toHaveLength(1);
    expect(tunPackets().filter((p) => p.dst === "2001:2::11" || p.dst === "2001:2::1")).toEqual([]);
  });

  it("a changed plan is applied as a diff: /128 routes per item, each family's filters swapped make-before-break at its own pair", () => {
    // Only IPv6 ClusterIPs change: routes only, tc untouched.
    log.length = 0;
    const ipv6b = { ...IPV6, clusterIPs: ["2001:2:0:96::b", "2001:2:0:96::c"] };
    nat.apply({ ...PLAN, ipv6: ipv6b });
    let cmds = log.map((a) => a.join(" "));
    expect(main6()).not.toContain("2001:2:0:96::a ");
    expect(main6()).toContain("2001:2:0:96::b dev wo0");
    expect(main6()).toContain("2001:2:0:96::c dev wo0");
    expect(cmds).toContain("ip -6 route del 2001:2:0:96::a/128 dev wo0 table main");
    expect(cmds).toContain("ip -6 route replace 2001:2:0:96::c/128 dev wo0 table main proto 79");
    expect(cmds.filter((c) => c.includes("2001:2:0:96::b"))).toEqual([]); // unchanged: untouched
    expect(cmds.filter((c) => c.startsWith("tc filter") || c.startsWith("tc qdisc"))).toEqual([]);
    expect(cmds.filter((c) => / rule (add|del)/.test(c))).toEqual([]);

    // NodePorts change: both families swap to their other pref, new set before the old goes.
    log.length = 0;
    const plan3: NatPlan = { ...PLAN, nodePorts: [{ port: 30080, protocol: "tcp" }, { port: 30081, protocol: "udp" }], ipv6: ipv6b };
    nat.apply(plan3);
    cmds = log.map((a) => a.join(" "));
    const f = tcFilters();
    expect(f).toContain("filter protocol ip pref 4790 u32");
    expect(f).toContain("filter protocol ipv6 pref 4792 u32");
    expect(f).not.toMatch(/pref 4789 |pref 4791 /);
    const v6 = entries("ipv6");
    expect(v6.filter((e) => e.includes("match 00001100/0000ff00 at 4") && e.includes("match 00007581/0000ffff at 40"))).toHaveLength(1); // udp 30081
    expect(v6.filter((e) => e.includes("match 00007565/0000ffff at 40"))).toEqual([]); // udp 30053 gone
    expect(v6.filter((e) => e.includes("match 00007580/0000ffff at 40"))).toHaveLength(1); // tcp 30080 kept
    const firstAdd6 = cmds.findIndex((c) => c.startsWith("tc filter add") && c.includes("pref 4792 protocol ipv6"));
    const oldDel6 = cmds.findIndex((c) => c === "tc filter del dev eth0 ingress pref 4791");
    expect(firstAdd6).toBeGreaterThanOrEqual(0);
    expect(oldDel6).toBeGreaterThan(firstAdd6);
    expect(nat.installed().tc).toMatchObject({ pref: 4790, pref6: 4792 });
    expect(nat.installed().tc?.filters6).toContain("udp6 30081");
    expect(cmds.filter((c) => / rule (add|del)/.test(c) || c.includes("route"))).toEqual([]);
  });

  it("without ipv6.underlayAddress: no IPv6 masquerade or steering, the routes stay; without ipv6: nothing IPv6; the IPv4 half untouched; back again", () => {
    const ipv6b = { ...IPV6, clusterIPs: ["2001:2:0:96::b", "2001:2:0:96::c"] };
    const plan3: NatPlan = { ...PLAN, nodePorts: [{ port: 30080, protocol: "tcp" }, { port: 30081, protocol: "udp" }], ipv6: ipv6b };
    const v4filters = () => entries("ip").join("\n"); // with the action indexes: a reinstalled filter would show
    const v4Before = v4filters();
    nat.apply({ ...plan3, ipv6: { ...ipv6b, underlayAddress: undefined } });
    expect(rules6()).toBe(rules6Before);
    expect(table6()).toBe("");
    expect(entries("ipv6")).toEqual([]);
    expect(tcFilters()).not.toMatch(/pref 479[12] /);
    expect(main6()).toContain("2001:2:0:96::c dev wo0");
    expect(v4filters()).toBe(v4Before);
    expect(node.exec(["ip", "rule", "show"])).toContain("4790:\tfrom 198.19.1.0/24 lookup 4789");

    nat.apply({ ...plan3, ipv6: undefined });
    expect(main6()).not.toMatch(/2001:2:0:96::|2001:2:0:1::fffe/);
    expect(v4filters()).toBe(v4Before);
    expect(nat.record().routes.filter((r) => r.dst.includes(":"))).toEqual([]);

    // masquerade off takes the IPv6 rules too
    nat.apply(plan3);
    expect(rules6()).toContain("4790:\tfrom 2001:2:0:1::/64 lookup 4789");
    expect(entries("ipv6")).toHaveLength(19);
    nat.apply({ ...plan3, masquerade: false });
    expect(rules6()).toBe(rules6Before);
    expect(table6()).toBe("");
    expect(entries("ipv6")).toHaveLength(19);
    nat.apply(plan3);
    expect(table6()).toBe("default dev wo0 proto 79 metric 1024 pref medium");
  });

  it("teardown removes every IPv6 rule, route and filter and the qdisc it created; twice is fine", () => {
    nat.teardown();
    expect(rules6()).toBe(rules6Before);
    expect(node.exec(["ip", "rule", "show"])).toBe(rules4Before);
    expect(table6()).toBe("");
    expect(main6()).not.toMatch(/proto 79/);
    expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).not.toContain("clsact");
    expect(node.exec(["sysctl", "-n", "net.ipv4.ip_local_reserved_ports"]).trim()).toBe(RESERVED_BEFORE);
    expect(nat.installed()).toEqual({ rules: [], routes: [], tc: undefined, reservedPortsAdded: "" });
    expect(() => nat.teardown()).not.toThrow();
  });

  it("reclaim removes what a dead instance left, from its persisted record and from the markers alone; an old record still reclaims", () => {
    const nothingLeft = () => {
      expect(rules6()).toBe(rules6Before);
      expect(node.exec(["ip", "rule", "show"])).toBe(rules4Before);
      expect(table6(4789)).toBe("");
      expect(table6(4800)).toBe("");
      expect(tcFilters()).not.toMatch(/pref 47(89|90|91|92) /);
      expect(node.exec(["tc", "qdisc", "show", "dev", "eth0"])).not.toContain("clsact");
      expect(node.exec(["sysctl", "-n", "net.ipv4.ip_local_reserved_ports"]).trim()).toBe(RESERVED_BEFORE);
    };
    // (IPv4 /32s are reclaim.ts's: every proto 79 route on the device)
    const dropIpv4Routes = (rec: NatRecord) => {
      for (const r of rec.routes.filter((x) => !x.dst.includes(":"))) node.exec(["ip", "route", "del", r.dst, "dev", r.dev]);
      expect(node.exec(["ip", "route", "show", "proto", "79"])).toBe("");
    };
    // Another table and rule pref than the markers, and no underlay device in
    // the markers: what goes, goes because the record names it.
    const moved = { rulePref: 4700, table: 4800 };
    const noMarks = { rulePref: 4789, table: 4789 };
    const dir = mkdtempSync(join(tmpdir(), "ns6s-state-"));
    try {
      // From the record, through installed.json as the daemon writes it.
      const dead = new NodeNat(nsRun);
      dead.apply({ ...PLAN6, ...moved });
      expect(table6(4800)).toBe("default dev wo0 proto 79 metric 1024 pref medium");
      writeRecord(dir, { version: 1, pid: 1, sysctls: [], routeProto: 79, nat: dead.record() });
      const done = NodeNat.reclaim(nsRun, readRecord(dir)?.nat, noMarks);
      expect(done).toEqual(
        expect.arrayContaining(["ip -6 rule pref 4700", "ip -6 rule pref 4701", "ip -6 route default table 4800", "ip -6 route 2001:2:0:96::a/128 dev wo0", "ip -6 route 2001:2:0:1::fffe/128 dev wo0", "tc filter eth0 ingress pref 4791", "tc qdisc clsact eth0"]),
      );
      nothingLeft();
      expect(main6()).not.toMatch(/proto 79/);
      dropIpv4Routes(dead.record());

      // From the markers alone (the record is lost): rules, table routes, filters; the
      // /128 routes are on the overlay device, which reclaim.ts deletes.
      const dead2 = new NodeNat(nsRun);
      dead2.apply(PLAN6);
      NodeNat.reclaim(nsRun, undefined, { ...noMarks, underlayDevice: "eth0" });
      expect(rules6()).toBe(rules6Before);
      expect(table6()).toBe("");
      expect(tcFilters()).not.toMatch(/pref 47(89|90|91|92) /);
      dead2.teardown(); // the /128s, reserved ports and the qdisc dead2 created
      nothingLeft();
      expect(main6()).not.toMatch(/proto 79/);

      // A record written before IPv6 (no `family`, no tableRoute6, two prefs) still loads and reclaims.
      const old = new NodeNat(nsRun);
      old.apply({ ...PLAN, ...moved });
      const rec = old.record();
      const oldShape = { ...rec, rules: rec.rules.map(({ pref, args }) => ({ pref, args })) };
      expect(JSON.stringify(oldShape)).not.toMatch(/family|tableRoute6|4791|\/128/);
      writeFileSync(join(dir, "installed.json"), JSON.stringify({ version: 1, pid: 1, sysctls: [], routeProto: 79, nat: oldShape }));
      expect(NodeNat.reclaim(nsRun, readRecord(dir)?.nat, noMarks)).toEqual(
        expect.arrayContaining(["ip rule pref 4700", "ip rule pref 4701", "route default table 4800", "tc filter eth0 ingress pref 4789", "tc qdisc clsact eth0"]),
      );
      nothingLeft();
      dropIpv4Routes(rec);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
