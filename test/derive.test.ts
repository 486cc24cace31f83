// Config → tables: cross-subnet `auto` resolution, the local route, next
// hops, neighbour/FDB entries and kernel routes for the seed's three
// workers; the IPv4/MAC helpers they rest on; and the metrics fed from
// data-path counter snapshots.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { parse as parseYaml } from "yaml";
import { DEFAULT_MAX_QUEUES, deriveTables, NO_PEER, queueCount, type DerivedTables } from "../src/config/derive.js";
import { loadConfigFile, validateConfig } from "../src/config/load.js";
import {
  cidrContains, cidrOverlaps, formatCidr, formatMac, ipToU32, maskOf, parseCidr, parseMac, tryParseCidr, u32ToIp,
} from "../src/config/net.js";
import type { Config } from "../src/config/schema.js";
import { createMetrics } from "../src/control/metrics.js";
import { resolveLevel } from "../src/control/log.js";
import { REASON_NAMES } from "../src/dataplane/abi.js";

function example(name: string): Config {
  const r = loadConfigFile(`examples/${name}.yaml`);
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

function config(doc: unknown): Config {
  const r = validateConfig(doc);
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

const ip = ipToU32;
const W = {
  1: { underlay: ip("198.18.0.11"), vtep: ip("198.19.1.0"), mac: 0x0e0000000100n },
  2: { underlay: ip("198.18.0.12"), vtep: ip("198.19.2.0"), mac: 0x0e0000000200n },
  3: { underlay: ip("198.18.1.13"), vtep: ip("198.19.3.0"), mac: 0x0e0000000300n },
};

/** The slow obvious lookup: the longest derived route containing `addr`. */
function lookup(d: DerivedTables, addr: number): number | undefined {
  let best: { len: number; nh: number } | undefined;
  for (const r of d.routes) {
    if (cidrContains(r, addr) && (!best || r.len > best.len)) best = r;
  }
  return best?.nh;
}

describe("the seed's three workers", () => {
  it("worker1: worker2 direct (same subnet), worker3 vxlan (other subnet)", () => {
    const d = deriveTables(example("worker1"));
    expect(d.node).toEqual({
      mode: "tun", underlay: W[1].underlay, overlay: W[1].vtep, vtepMac: W[1].mac, devMac: 0n, vni: 100, port: 4789,
      sourcePortRange: [32768, 60999], outerTtl: 64, underlayMtu: 1500,
    });
    expect(d.peers.map((p) => [p.name, p.encapsulation])).toEqual([["worker2", "direct"], ["worker3", "vxlan"]]);
    expect(d.peers[0].reason).toBe("auto: 198.18.0.12 is in the underlay subnet 198.18.0.0/24");
    expect(d.peers[1].reason).toBe("auto: 198.18.1.13 is outside the underlay subnet 198.18.0.0/24");
    expect(d.peers[1]).toMatchObject({ underlay: W[3].underlay, vtepMac: W[3].mac, vtepAddress: W[3].vtep, podCIDRs: ["198.19.3.0/24"] });
    expect(d.nexthops).toEqual([
      { kind: "local", peer: NO_PEER, gateway: 0 },
      { kind: "direct", peer: 0, gateway: W[2].underlay },
      // Hand CNI-7: `ip route add 198.19.3.0/24 via 198.19.3.0 dev vxlan100 onlink`.
      { kind: "vxlan", peer: 1, gateway: W[3].vtep },
    ]);
    expect(d.routes).toEqual([
      { prefix: ip("198.19.1.0"), len: 24, nh: 0 },
      { prefix: ip("198.19.2.0"), len: 24, nh: 1 },
      { prefix: ip("198.19.3.0"), len: 24, nh: 2 },
    ]);
    // Hand CNI-7's static `ip neigh add 198.19.3.0 lladdr …` and `bridge fdb add … dst 198.18.1.13`.
    expect(d.neigh).toEqual([{ ip: W[3].vtep, mac: W[3].mac }]);
    expect(d.fdb).toEqual([{ mac: W[3].mac, peer: 1 }]);
    expect(d.kernelRoutes).toEqual([
      // Hand CNI-6: `ip route add 192.168.10.0/24 via 192.168.210.21`: the kernel routes it, no tunnel.
      { dst: "198.19.2.0/24", via: "198.18.0.12", dev: "underlay" },
      { dst: "198.19.3.0/24", dev: "tunnel" },
    ]);
  });

  it("worker2 mirrors worker1", () => {
    const d = deriveTables(example("worker2"));
    expect(d.peers.map((p) => [p.name, p.encapsulation])).toEqual([["worker1", "direct"], ["worker3", "vxlan"]]);
    expect(d.nexthops[1]).toEqual({ kind: "direct", peer: 0, gateway: W[1].underlay });
    expect(d.kernelRoutes).toEqual([
      { dst: "198.19.1.0/24", via: "198.18.0.11", dev: "underlay" },
      { dst: "198.19.3.0/24", dev: "tunnel" },
    ]);
    expect(d.neigh).toEqual([{ ip: W[3].vtep, mac: W[3].mac }]);
  });

  it("worker3 reaches both through vxlan", () => {
    const d = deriveTables(example("worker3"));
    expect(d.peers.map((p) => p.encapsulation)).toEqual(["vxlan", "vxlan"]);
    expect(d.nexthops.slice(1)).toEqual([
      { kind: "vxlan", peer: 0, gateway: W[1].vtep },
      { kind: "vxlan", peer: 1, gateway: W[2].vtep },
    ]);
    expect(d.neigh).toEqual([{ ip: W[1].vtep, mac: W[1].mac }, { ip: W[2].vtep, mac: W[2].mac }]);
    expect(d.fdb).toEqual([{ mac: W[1].mac, peer: 0 }, { mac: W[2].mac, peer: 1 }]);
    expect(d.kernelRoutes).toEqual([
      { dst: "198.19.1.0/24", dev: "tunnel" },
      { dst: "198.19.2.0/24", dev: "tunnel" },
    ]);
  });

  it("worker3-ipip: ipip next hops to the peers' underlay, no neighbour/FDB entries", () => {
    const d = deriveTables(example("worker3-ipip"));
    expect(d.peers.map((p) => [p.encapsulation, p.reason])).toEqual([["ipip", "configured"], ["ipip", "configured"]]);
    expect(d.nexthops.slice(1)).toEqual([
      { kind: "ipip", peer: 0, gateway: W[1].underlay },
      { kind: "ipip", peer: 1, gateway: W[2].underlay },
    ]);
    expect(d.neigh).toEqual([]);
    expect(d.fdb).toEqual([]);
    expect(d.kernelRoutes.every((r) => r.dev === "tunnel" && r.via === undefined)).toBe(true);
  });

  it("the local route: this node's pods and its VTEP address are delivered here", () => {
    for (const n of [1, 2, 3] as const) {
      const d = deriveTables(example(`worker${n}`));
      expect(d.nexthops[0].kind).toBe("local");
      expect(lookup(d, ip(`198.19.${n}.5`))).toBe(0);
      expect(lookup(d, W[n].vtep)).toBe(0);
      expect(lookup(d, ip("8.8.8.8"))).toBeUndefined();
    }
  });

  it("derivation is deterministic", () => {
    expect(deriveTables(example("worker1"))).toEqual(deriveTables(example("worker1")));
  });
});

describe("resolution and static routes", () => {
  const node = { name: "n", underlay: { address: "10.0.0.1", prefixLength: 16 }, podCIDR: "10.244.0.0/24" };
  const peer = (k: number, underlay: string, encapsulation?: string) => ({
    name: `p${k}`, underlay, podCIDRs: [`10.244.${k}.0/24`], vtepMac: `0e:00:00:00:00:0${k}`, ...(encapsulation ? { encapsulation } : {}),
  });

  it("auto uses the configured prefix length, explicit encapsulations are kept", () => {
    const d = deriveTables(config({
      node,
      peers: [peer(1, "10.0.200.9"), peer(2, "10.1.0.9"), peer(3, "10.0.0.3", "vxlan"), peer(4, "10.9.0.4", "direct")],
    }));
    expect(d.peers.map((p) => p.encapsulation)).toEqual(["direct", "vxlan", "vxlan", "direct"]);
  });

  it("a /32 underlay makes every auto peer a tunnel peer; /0 makes every one direct", () => {
    const p = [peer(1, "10.0.0.2")];
    expect(deriveTables(config({ node: { ...node, underlay: { address: "10.0.0.1", prefixLength: 32 } }, peers: p })).peers[0].encapsulation).toBe("vxlan");
    expect(deriveTables(config({ node: { ...node, underlay: { address: "10.0.0.1", prefixLength: 0 } }, peers: p })).peers[0].encapsulation).toBe("direct");
  });

  it("static routes: blackhole gets one shared next hop, local uses 0, a peer uses its own", () => {
    const d = deriveTables(config({
      node,
      peers: [peer(1, "10.0.0.2"), peer(2, "10.5.0.2")],
      routes: [
        { prefix: "192.0.2.0/24", via: "blackhole" },
        { prefix: "198.51.100.0/24", via: "p2" },
        { prefix: "203.0.113.0/24", via: "local" },
        { prefix: "192.0.2.128/25", via: "blackhole" },
        { prefix: "172.16.0.0/12", via: "p1" },
        { prefix: "10.244.2.128/25", via: "blackhole" },
      ],
    }));
    expect(d.nexthops).toHaveLength(4);
    expect(d.nexthops[3]).toEqual({ kind: "blackhole", peer: NO_PEER, gateway: 0 });
    expect(lookup(d, ip("192.0.2.200"))).toBe(3);
    expect(lookup(d, ip("198.51.100.1"))).toBe(2);
    expect(lookup(d, ip("203.0.113.9"))).toBe(0);
    expect(lookup(d, ip("172.20.0.1"))).toBe(1);
    expect(lookup(d, ip("10.244.2.1"))).toBe(2);
    expect(lookup(d, ip("10.244.2.200"))).toBe(3);
    expect(d.kernelRoutes).toEqual([
      { dst: "10.244.1.0/24", via: "10.0.0.2", dev: "underlay" },
      { dst: "10.244.2.0/24", dev: "tunnel" },
      { dst: "192.0.2.0/24", dev: "tunnel" },
      { dst: "198.51.100.0/24", dev: "tunnel" },
      { dst: "192.0.2.128/25", dev: "tunnel" },
      { dst: "172.16.0.0/12", via: "10.0.0.2", dev: "underlay" },
      { dst: "10.244.2.128/25", dev: "tunnel" },
    ]);
  });

  it("an overlay address outside podCIDR gets a /32 local route", () => {
    const d = deriveTables(config({ node: { ...node, overlayAddress: "100.64.0.1" }, peers: [peer(1, "10.0.0.2")] }));
    expect(d.node.overlay).toBe(ip("100.64.0.1"));
    expect(d.routes).toContainEqual({ prefix: ip("100.64.0.1"), len: 32, nh: 0 });
  });

  it("tap mode carries the kernel-side MAC", () => {
    const d = deriveTables(config({ node: { ...node, device: { mode: "tap", mac: "02:00:00:00:00:01" } } }));
    expect(d.node.mode).toBe("tap");
    expect(d.node.devMac).toBe(0x020000000001n);
  });

  it("random clusters: every pod address routes to its owner; tables are consistent", () => {
    const arb = fc.record({
      prefixLength: fc.integer({ min: 8, max: 30 }),
      peers: fc.uniqueArray(
        fc.record({ third: fc.integer({ min: 1, max: 250 }), host: fc.integer({ min: 2, max: 0xfffe }), encap: fc.constantFrom("auto", "vxlan", "ipip", "direct") }),
        { selector: (p) => p.third, maxLength: 12 },
      ),
    });
    fc.assert(
      fc.property(arb, fc.integer({ min: 0, max: 255 }), ({ prefixLength, peers }, probe) => {
        const hosts = new Set<number>();
        const list = peers.filter((p) => !hosts.has(p.host) && hosts.add(p.host));
        const doc = {
          node: { name: "n", underlay: { address: "10.0.0.1", prefixLength }, podCIDR: "10.244.0.0/24" },
          peers: list.map((p, i) => ({
            name: `p${i}`, underlay: u32ToIp(ip("10.0.0.0") + p.host), podCIDRs: [`10.244.${p.third}.0/24`],
            vtepMac: formatMac(0x0e0000000000n + BigInt(i + 1)), encapsulation: p.encap,
          })),
        };
        const c = config(doc);
        const d = deriveTables(c);
        const subnet = { prefix: (ip("10.0.0.1") & maskOf(prefixLength)) >>> 0, len: prefixLength };
        d.peers.forEach((p, i) => {
          const want = list[i].encap !== "auto" ? list[i].encap : cidrContains(subnet, p.underlay) ? "direct" : "vxlan";
          expect(p.encapsulation).toBe(want);
          const nh = d.nexthops[lookup(d, ip(`10.244.${list[i].third}.${probe}`))!];
          expect(nh.peer).toBe(i);
          expect(nh.kind).toBe(p.encapsulation);
        });
        const vx = d.peers.filter((p) => p.encapsulation === "vxlan");
        expect(d.neigh).toHaveLength(vx.length);
        expect(d.fdb).toHaveLength(vx.length);
        for (const f of d.fdb) expect(d.peers[f.peer].vtepMac).toBe(f.mac);
        for (const n of d.neigh) expect(d.fdb.some((f) => f.mac === n.mac)).toBe(true);
        expect(d.kernelRoutes).toHaveLength(d.peers.length);
        expect(lookup(d, ip(`10.244.0.${probe}`))).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});

describe("ip and mac helpers", () => {
  it("ipToU32 / u32ToIp round-trip", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
      expect(ipToU32(u32ToIp(v))).toBe(v);
    }));;
    fc.assert(fc.property(fc.ipV4(), (s) => {
      expect(u32ToIp(ipToU32(s))).toBe(s);
    }));;
  });

  it("ipToU32 is (a<<24|b<<16|c<<8|d)>>>0", () => {
    expect(ipToU32("198.19.3.0")).toBe(0xc6130300);
    expect(ipToU32("255.255.255.255")).toBe(0xffffffff);
    expect(ipToU32("0.0.0.0")).toBe(0);
    for (const bad of ["1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "a.b.c.d", " 1.2.3.4", "1.2.3.4 ", "", "1..2.3"]) {
      expect(() => ipToU32(bad), bad).toThrow(/is not an IPv4 address/);
    }
  });

  it("parseCidr / formatCidr round-trip; host bits are refused with a hint", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (a, len) => {
        const c = { prefix: (a & maskOf(len)) >>> 0, len };
        expect(parseCidr(formatCidr(c))).toEqual(c);
        if (c.prefix !== a >>> 0) {
          const r = tryParseCidr(`${u32ToIp(a)}/${len}`);
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.reason).toContain(`did you mean ${formatCidr(c)}?`);
        }
      }),
    );
    expect(() => parseCidr("10.0.0.0/33")).toThrow(/not an IPv4 CIDR/);
    expect(() => parseCidr("10.0.0.0")).toThrow(/not an IPv4 CIDR/);
    expect(() => parseCidr("10.0.0.0/08")).toThrow(/not an IPv4 CIDR/);
  });

  it("cidrContains and cidrOverlaps agree with a bit-by-bit check", () => {
    const bits = (v: number, n: number) => (v >>> 0).toString(2).padStart(32, "0").slice(0, n);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (a, la, b, lb) => {
        const x = { prefix: (a & maskOf(la)) >>> 0, len: la };
        const y = { prefix: (b & maskOf(lb)) >>> 0, len: lb };
        expect(cidrContains(x, b)).toBe(bits(a, la) === bits(b, la));
        const n = Math.min(la, lb);
        expect(cidrOverlaps(x, y)).toBe(bits(a, n) === bits(b, n));
        expect(cidrOverlaps(x, y)).toBe(cidrOverlaps(y, x));
      }),
    );
    expect(cidrContains("198.19.0.0/16", "198.19.3.7")).toBe(true);
    expect(cidrContains("198.19.0.0/16", "198.20.0.1")).toBe(false);
    expect(cidrContains("0.0.0.0/0", "1.2.3.4")).toBe(true);
  });

  it("parseMac / formatMac round-trip over 48 bits", () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }), (m) => {
      expect(parseMac(formatMac(m))).toBe(m);
    }));;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }), fc.boolean(), (bytes, upper) => {
        let s = bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
        if (upper) s = s.toUpperCase();
        expect(formatMac(parseMac(s))).toBe(s.toLowerCase());
      }),
    );
    expect(parseMac("0e:00:00:00:03:00")).toBe(0x0e0000000300n);
    expect(parseMac("0E-00-00-00-03-00")).toBe(0x0e0000000300n);
    for (const bad of ["0e:00:00:00:03", "0e:00:00:00:03:00:00", "0e:00-00:00:03:00", "0g:00:00:00:03:00", "e:0:0:0:3:0"]) {
      expect(() => parseMac(bad), bad).toThrow(/not a MAC address/);
    }
  });
});

describe("metrics from data-path counter snapshots", () => {
  const snap = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, BigInt(v)]));
  const value = async (m: ReturnType<typeof createMetrics>, name: string, labels: Record<string, string> = {}) => {
    const got = (await m.registry.getSingleMetric(name)!.get()).values.find((v) =>
      Object.entries(labels).every(([k, x]) => v.labels[k] === x));
    return got?.value;
  };

  it("deltas are applied, several workers are summed, a reset counts from zero", async () => {
    const m = createMetrics();
    m.updateFromCounters(snap({ rx_pod_packets: 10, rx_pod_bytes: 1000, verdict_drop: 2, drop_no_route: 2, batches: 3 }));
    m.updateFromCounters([snap({ rx_pod_packets: 15, drop_no_route: 2 }), snap({ rx_pod_packets: 5, drop_no_route: 1 })]);
    expect(await value(m, "overlay_packets_total", { direction: "rx_pod" })).toBe(20);
    expect(await value(m, "overlay_bytes_total", { direction: "rx_pod" })).toBe(1000);
    expect(await value(m, "overlay_drops_total", { reason: "no_route" })).toBe(3);
    expect(await value(m, "overlay_verdicts_total", { verdict: "drop" })).toBe(2);
    expect(await value(m, "overlay_batches_total")).toBe(3);
    // Worker restarted: its counters start again from 0.
    m.updateFromCounters(snap({ rx_pod_packets: 4 }));
    expect(await value(m, "overlay_packets_total", { direction: "rx_pod" })).toBe(24);
  });

  it("every direction, drop reason (but none) and verdict is exported from the start", async () => {
    const m = createMetrics();
    const text = await m.registry.metrics();
    for (const d of ["rx_pod", "rx_vxlan", "rx_ipip", "tx_vxlan", "tx_ipip", "tx_direct", "to_device"]) {
      expect(text).toContain(`overlay_packets_total{direction="${d}"} 0`);
    }
    for (const r of REASON_NAMES.slice(1)) expect(text).toContain(`overlay_drops_total{reason="${r}"} 0`);
    expect(text).not.toContain('reason="none"');
    expect(text).toContain('overlay_verdicts_total{verdict="tx_underlay"} 0');
    expect(text).toContain('overlay_config_reloads_total{result="error"} 0');
  });

  it("table sizes and reloads", async () => {
    const m = createMetrics();
    const d = deriveTables(example("worker3"));
    m.setTableSizes({ routes: d.routes.length, peers: d.peers.length, fdb: d.fdb.length, neigh: d.neigh.length });
    m.configReloads.inc({ result: "ok" });
    expect(await value(m, "overlay_routes")).toBe(3);
    expect(await value(m, "overlay_fdb_entries")).toBe(2);
    expect(await value(m, "overlay_config_reloads_total", { result: "ok" })).toBe(1);
  });

  it("log level: option, then LOG_LEVEL, then info", () => {
    expect(resolveLevel("debug", {})).toBe("debug");
    expect(resolveLevel(undefined, { LOG_LEVEL: "WARN" })).toBe("warn");
    expect(resolveLevel("bogus", { LOG_LEVEL: "also-bogus" })).toBe("info");
  });
});

describe("queueCount: tun queues and workers", () => {
  const base = example("worker2");
  // The example file as written, with node.device and top-level sections changed.
  const raw = parseYaml(readFileSync("examples/worker2.yaml", "utf8")) as { node: { device: Record<string, unknown> } };
  const withDevice = (device: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    config({ ...raw, node: { ...raw.node, device: { ...raw.node.device, ...device } }, ...extra });
  it("defaults to the cores this process may use, at most 4", () => {
    expect(queueCount(base)).toEqual({ queues: Math.min(availableParallelism(), DEFAULT_MAX_QUEUES), why: `${availableParallelism()} cores, at most 4 by default` });
  });
  it("takes node.device.queues as given, above the default cap too", () => {
    expect(queueCount(withDevice({ queues: 8 })).queues).toBe(8);
    expect(queueCount(withDevice({ queues: 1 })).queues).toBe(1);
  });
  it("is not limited by NAT (the workers share one connection table)", () => {
    expect(queueCount(withDevice({}, { nat: { masquerade: true } }))).toEqual(queueCount(base));
    expect(queueCount(withDevice({ queues: 2 }, { nat: { masquerade: true } })).queues).toBe(2);
  });
});
