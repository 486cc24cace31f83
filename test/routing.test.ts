// Routes from a routing daemon's kernel table → peers (src/routing/): the
// table parser, the route-to-peer derivation and its precedence rules, the
// announcement's blackhole route, and the events counted per source.
import { describe, expect, it } from "vitest";
import { deriveTables } from "../src/config/derive.js";
import { fileURLToPath } from "node:url";
import { loadConfigFile, validateConfig } from "../src/config/load.js";
import { formatMac, ipToU32, macFromIp } from "../src/config/net.js";
import type { Config } from "../src/config/schema.js";
import { createMetrics, createRouteMetrics } from "../src/control/metrics.js";
import { Kernel } from "../src/daemon/kernel.js";
import { refusedChanges } from "../src/daemon/reload.js";
import { KernelRoutes } from "../src/daemon/system.js";
import { RouteEventCounter } from "../src/routing/events.js";
import { learnedPeers, withLearnedPeers } from "../src/routing/peers.js";
import { diffRoutes, parseTableRoutes, type LearnedRoute } from "../src/routing/table.js";

function config(extra: Record<string, unknown> = {}, routing: Record<string, unknown> | null = {}): Config {
  const r = validateConfig({
    node: { name: "worker1", underlay: { address: "198.18.0.11", prefixLength: 24, device: "eth0" }, podCIDR: "198.19.1.0/24" },
    ...(routing ? { routing } : {}),
    ...extra,
  });
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

const routes = (...pairs: [string, string][]): LearnedRoute[] => pairs.map(([prefix, via]) => ({ prefix, via }));

describe("parseTableRoutes (ip -json route show table N)", () => {
  it("keeps unicast routes with a gateway, one per prefix, sorted; skips the rest", () => {
    const out = parseTableRoutes([
      { dst: "198.19.3.0/24", gateway: "198.18.1.13", dev: "eth0", protocol: "bird", metric: 32, flags: [] },
      { dst: "198.19.2.0/24", gateway: "198.18.0.12", dev: "eth0", protocol: "bird" },
      { dst: "198.18.0.0/15", dev: "eth0", protocol: "bird", scope: "link" }, // device route (BIRD's mesh helper)
      { type: "blackhole", dst: "198.19.9.0/24" },
      { dst: "default", gateway: "198.18.0.1" },
      { dst: "198.19.7.7", gateway: "198.18.0.12" }, // a /32 prints without its length
      { dst: "198.19.8.0/24", nexthops: [{ gateway: "198.18.0.12", dev: "eth0" }, { gateway: "198.18.0.13", dev: "eth0" }] },
      { dst: "198.19.3.0/24", gateway: "198.18.0.99" }, // a second route of the same prefix (another metric)
      null, "junk", { dst: "198.19.4.0/33", gateway: "198.18.0.1" }, { dst: "198.19.5.0/24", gateway: "not-an-ip" },
    ]);
    expect(out.routes).toEqual(routes(
      ["198.19.2.0/24", "198.18.0.12"], ["198.19.3.0/24", "198.18.1.13"], ["198.19.7.7/32", "198.18.0.12"], ["198.19.8.0/24", "198.18.0.12"],
    ));
    expect(out.ignored).toBe(7); // the second route of a prefix is not "ignored", only shadowed
    expect(parseTableRoutes("not a list")).toEqual({ routes: [], ignored: 0 });
  });

  it("diffRoutes counts a moved next hop as a withdrawal and a new route", () => {
    const a = routes(["198.19.2.0/24", "198.18.0.12"], ["198.19.3.0/24", "198.18.1.13"]);
    expect(diffRoutes(a, a)).toEqual({ added: 0, deleted: 0 });
    expect(diffRoutes(a, routes(["198.19.2.0/24", "198.18.0.1"]))).toEqual({ added: 1, deleted: 2 });
    expect(diffRoutes([], a)).toEqual({ added: 2, deleted: 0 });
  });
});

describe("learned routes → peers", () => {
  it("one peer per next hop: bgp-<nexthop>, VTEP MAC from its address, its prefixes as pod CIDRs", () => {
    const c = config();
    const { peers, dropped } = learnedPeers(c, c.routing!, routes(
      ["198.19.3.0/24", "198.18.1.13"], ["198.19.2.0/24", "198.18.0.12"], ["198.19.30.0/24", "198.18.1.13"], ["198.19.3.128/25", "198.18.0.12"],
    ));
    expect(dropped).toEqual([]);
    expect(peers.map((p) => [p.name, p.underlay, p.podCIDRs, p.vtepMac, p.vtepAddress])).toEqual([
      ["bgp-198.18.0.12", "198.18.0.12", ["198.19.2.0/24", "198.19.3.128/25"], formatMac(macFromIp(ipToU32("198.18.0.12"))), "198.19.2.0"],
      ["bgp-198.18.1.13", "198.18.1.13", ["198.19.3.0/24", "198.19.30.0/24"], "0e:00:c6:12:01:0d", "198.19.3.0"],
    ]);
    // The MAC is the one that node derives for itself by default (schema: node.device.vtepMac).
    expect(config({ node: { name: "w3", underlay: { address: "198.18.1.13", prefixLength: 24 }, podCIDR: "198.19.3.0/24" } }).node.device.vtepMac).toBe("0e:00:c6:12:01:0d");
  });

  it("encapsulation: auto = direct in the underlay subnet, else VXLAN (or routing.tunnel: ipip); never = plain routing", () => {
    const r = routes(["198.19.2.0/24", "198.18.0.12"], ["198.19.3.0/24", "198.18.1.13"]);
    const encaps = (routing: Record<string, unknown>) => {
      const d = deriveTables(withLearnedPeers(config({}, routing), r).config);
      return d.peers.map((p) => `${p.name}=${p.encapsulation}`);
    };
    expect(encaps({})).toEqual(["bgp-198.18.0.12=direct", "bgp-198.18.1.13=vxlan"]);
    expect(encaps({ tunnel: "ipip" })).toEqual(["bgp-198.18.0.12=direct", "bgp-198.18.1.13=ipip"]);
    expect(encaps({ encapsulation: "vxlan" })).toEqual(["bgp-198.18.0.12=vxlan", "bgp-198.18.1.13=vxlan"]);
    expect(encaps({ encapsulation: "never" })).toEqual(["bgp-198.18.0.12=direct", "bgp-198.18.1.13=direct"]);
    // never: the kernel routes the pods through the next hop; the data path has nothing to tunnel.
    const d = deriveTables(withLearnedPeers(config({}, { encapsulation: "never" }), r).config);
    expect(d.kernelRoutes.filter((k) => k.dev !== "blackhole")).toEqual([
      { dst: "198.19.2.0/24", via: "198.18.0.12", dev: "underlay" },
      { dst: "198.19.3.0/24", via: "198.18.1.13", dev: "underlay" },
    ]);
    expect(d.neigh).toEqual([]);
  });

  it("the config file's and etcd's peers keep precedence; this node's own routes are left out", () => {
    const c = config({
      peers: [{ name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" }],
      routes: [{ prefix: "198.19.50.0/24", via: "worker2" }],
    });
    const { peers, dropped } = learnedPeers(c, c.routing!, routes(
      ["198.19.1.0/24", "198.18.0.12"], // overlaps this node's pod CIDR
      ["198.19.2.128/25", "198.18.0.14"], // inside a config peer's pod CIDR
      ["198.19.20.0/24", "198.18.0.12"], // through a config peer's underlay
      ["198.19.50.0/24", "198.18.0.14"], // a static route's prefix
      ["198.19.60.0/24", "198.18.0.11"], // through this node
      ["198.19.0.0/16", "198.18.0.15"], // covers everything above
      ["198.19.4.0/24", "198.18.0.14"], // fine
    ));
    expect(peers.map((p) => [p.name, p.podCIDRs])).toEqual([["bgp-198.18.0.14", ["198.19.4.0/24"]]]);
    expect(dropped.map((d) => `${d.prefix} via ${d.via}: ${d.reason}`)).toEqual([
      "198.19.1.0/24 via 198.18.0.12: next hop 198.18.0.12 is the underlay of worker2, which the config or etcd already has",
      "198.19.2.128/25 via 198.18.0.14: overlaps 198.19.2.0/24 of peer worker2",
      "198.19.20.0/24 via 198.18.0.12: next hop 198.18.0.12 is the underlay of worker2, which the config or etcd already has",
      "198.19.50.0/24 via 198.18.0.14: overlaps 198.19.50.0/24 of a static route",
      "198.19.60.0/24 via 198.18.0.11: next hop 198.18.0.11 is this node",
      "198.19.0.0/16 via 198.18.0.15: overlaps 198.19.1.0/24 of this node",
    ]);
    // A peer whose name a config peer has: its routes are left out.
    const named = config({ peers: [{ name: "bgp-198.18.0.14", underlay: "198.18.0.20", podCIDRs: ["198.19.9.0/24"], vtepMac: "0e:00:00:00:09:00" }] });
    const r2 = learnedPeers(named, named.routing!, routes(["198.19.4.0/24", "198.18.0.14"]));
    expect(r2.peers).toEqual([]);
    expect(r2.dropped[0].reason).toBe("a peer is already called bgp-198.18.0.14");
  });

  it("is deterministic and the merged config derives like any other (5,000 prefixes through one next hop)", () => {
    const many: LearnedRoute[] = Array.from({ length: 5000 }, (_, i) => ({ prefix: `198.19.${128 + (i >> 6)}.${(i & 63) * 4}/30`, via: "198.18.0.50" }));
    const c = config();
    const a = withLearnedPeers(c, many);
    const b = withLearnedPeers(c, [...many].reverse());
    expect(a.config.peers).toEqual(b.config.peers);
    expect(a.peers).toHaveLength(1);
    expect(a.peers[0].podCIDRs).toHaveLength(5000);
    const d = deriveTables(a.config);
    expect(d.routes).toHaveLength(1 + 5000);
    expect(d.kernelRoutes.filter((k) => k.via === "198.18.0.50")).toHaveLength(5000);
    // Withdrawn in bulk: nothing of them is derived any more.
    const after = deriveTables(withLearnedPeers(c, []).config);
    expect(after.routes).toHaveLength(1);
    expect(after.peers).toEqual([]);
  });

  it("without a routing section nothing is added", () => {
    const c = config({}, null);
    expect(withLearnedPeers(c, routes(["198.19.4.0/24", "198.18.0.14"])).config).toBe(c);
  });
});

describe("announcing the pod CIDR", () => {
  it("routing.announce (default on) adds a blackhole kernel route for node.podCIDR; off without routing", () => {
    expect(deriveTables(config()).kernelRoutes).toContainEqual({ dst: "198.19.1.0/24", dev: "blackhole" });
    expect(deriveTables(config({}, { announce: false })).kernelRoutes).toEqual([]);
    expect(deriveTables(config({}, null)).kernelRoutes).toEqual([]);
  });

  it("is installed and removed as `blackhole ... proto 79 metric 4791` (never replacing a same-prefix route)", () => {
    const batches: string[] = [];
    const k = new Kernel((argv, input) => {
      if (argv.includes("-batch")) batches.push(input ?? "");
      return "";
    });
    const kr = new KernelRoutes(k);
    expect(kr.sync([{ dst: "198.19.1.0/24", dev: "", type: "blackhole" }, { dst: "198.19.3.0/24", dev: "wo0" }])).toEqual([]);
    expect(kr.sync([{ dst: "198.19.3.0/24", dev: "wo0" }])).toEqual([]);
    expect(batches).toEqual([
      "route replace blackhole 198.19.1.0/24 proto 79 metric 4791\nroute replace 198.19.3.0/24 dev wo0 proto 79\n",
      "route del blackhole 198.19.1.0/24 proto 79 metric 4791\n",
    ]);
  });

  it("the table followed is restart-only; encapsulation and announce change live", () => {
    const a = config();
    expect(refusedChanges(a, config({}, { table: 100 }))).toEqual(["routing.table changed: restart overlayd to apply it"]);
    expect(refusedChanges(a, config({}, null))).toEqual(["routing.source changed: restart overlayd to apply it", "routing.table changed: restart overlayd to apply it", "routing.resyncSeconds changed: restart overlayd to apply it"]);
    expect(refusedChanges(a, config({}, { encapsulation: "never", announce: false }))).toEqual([]);
  });

  it("examples/worker1-bgp.yaml loads", () => {
    const r = loadConfigFile(fileURLToPath(new URL("../examples/worker1-bgp.yaml", import.meta.url)));
    expect(r.ok ? r.config.routing : r.errors).toEqual({ source: "kernel", table: 4791, encapsulation: "never", tunnel: "vxlan", announce: true, resyncSeconds: 30 });
  });

  it("refuses the kernel's own tables and NAT's", () => {
    const r = validateConfig({ node: { name: "w", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" }, routing: { table: 254 } });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatch(/^routing\.table: is a kernel table of its own/);
    const nat = validateConfig({ node: { name: "w", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" }, routing: { table: 4789 } });
    expect(nat.ok ? [] : nat.errors).toEqual(["routing.table: 4789 is also nat.routeTable (overlayd's own routes): give BIRD another table"]);
  });
});

describe("overlay_route_events_total", () => {
  it("counts routes added and removed per source, a removed route by the source it had", async () => {
    const m = createRouteMetrics(createMetrics().registry);
    const counter = new RouteEventCounter(m);
    const base = config({ peers: [{ name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" }] });
    const src = (name: string) => (name.startsWith("bgp-") ? "bgp" : "config");
    counter.update(deriveTables(withLearnedPeers(base, routes(["198.19.3.0/24", "198.18.1.13"], ["198.19.4.0/24", "198.18.1.13"])).config), src);
    counter.update(deriveTables(withLearnedPeers(base, routes(["198.19.3.0/24", "198.18.1.13"])).config), () => "config"); // the gone peer's source is no longer known
    const values = Object.fromEntries((await m.events.get()).values.map((v) => [`${v.labels.source}/${v.labels.event}`, v.value]));
    expect(values).toMatchObject({ "config/added": 2, "bgp/added": 2, "bgp/removed": 1, "config/removed": 0, "etcd/added": 0 });
  });
});
