// Dual-stack configuration (issue 16): node.ipv6 and peers[].ipv6 checked,
// resolved and derived into IPv6 routes, next hops and kernel routes; a
// reload may not change node.ipv6; `show routes` and metrics cover IPv6.
import { describe, expect, it } from "vitest";
import { deriveTables, NH_LOCAL_INDEX, toDataplaneTables } from "../src/config/derive.js";
import { validateConfig } from "../src/config/load.js";
import { ipv6ToBigint } from "../src/config/net6.js";
import type { Config } from "../src/config/schema.js";
import { createMetrics } from "../src/control/metrics.js";
import { encapOverhead } from "../src/daemon/mtu.js";
import { refusedChanges } from "../src/daemon/reload.js";
import { routeRows } from "../src/daemon/show.js";

type Doc = Record<string, any>;

function doc(o: { six?: boolean; peers6?: boolean; extra?: (d: Doc) => void } = {}): Doc {
  const d: Doc = {
    node: { name: "worker1", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" },
    peers: [
      { name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" },
      { name: "worker3", underlay: "198.18.1.13", podCIDRs: ["198.19.3.0/24"], vtepMac: "0e:00:00:00:03:00", encapsulation: "ipip" },
      { name: "worker4", underlay: "198.18.1.14", podCIDRs: ["198.19.4.0/24"], vtepMac: "0e:00:00:00:04:00" },
    ],
  };
  if (o.six ?? true) d.node.ipv6 = { podCIDR: "2001:2:0:1::/64" };
  if (o.peers6 ?? true) {
    d.peers[0].ipv6 = { podCIDRs: ["2001:2:0:2::/64"] };
    d.peers[1].ipv6 = { podCIDRs: ["2001:2:0:3::/64", "2001:2:0:33::/64"] };
  }
  o.extra?.(d);
  return d;
}

function errors(d: Doc): string[] {
  const r = validateConfig(d);
  return r.ok ? [] : r.errors;
}
function config(d: Doc): Config {
  const r = validateConfig(d);
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

describe("node.ipv6 and peers[].ipv6", () => {
  it("resolves the overlay address to the pod prefix's first address and normalises the text", () => {
    const c = config(doc({ extra: (d) => { d.node.ipv6.podCIDR = "2001:0002:0000:0001:0000::/64"; } }));
    expect(c.node.ipv6).toEqual({ podCIDR: "2001:2:0:1::/64", overlayAddress: "2001:2:0:1::" });
  });
  it("refuses bad text, host bits, overlaps, a one-sided dual stack and an MTU below 1280, naming the field", () => {
    expect(errors(doc({ extra: (d) => { d.node.ipv6.podCIDR = "2001:2:0:1::5/64"; } }))).toEqual([
      'node.ipv6.podCIDR: "2001:2:0:1::5/64" has host bits set (did you mean 2001:2:0:1::/64?)',
    ]);
    expect(errors(doc({ extra: (d) => { d.node.ipv6.overlayAddress = "2001:2::1::2"; } }))[0]).toMatch(/^node\.ipv6\.overlayAddress: .* is not an IPv6 address/);
    expect(errors(doc({ extra: (d) => { d.peers[1].ipv6.podCIDRs[1] = "2001:2:0:2:8000::/66"; } }))).toEqual([
      'peers[1].ipv6.podCIDRs[1]: "2001:2:0:2:8000::/66" overlaps 2001:2:0:2::/64 of peer worker2',
    ]);
    expect(errors(doc({ six: false }))[0]).toMatch(/^peers\[0\]\.ipv6: .*set node\.ipv6\.podCIDR/);
    expect(errors(doc({ extra: (d) => { d.node.ipv6.overlayAddress = "2001:2:0:2::9"; } }))[0]).toMatch(/overlayAddress: "2001:2:0:2::9" lies in 2001:2:0:2::\/64 of peer worker2/);
    expect(errors(doc({ extra: (d) => { d.node.device = { mtu: 1200 }; } }))[0]).toMatch(/^node\.device\.mtu: 1200 is below 1280/);
    expect(errors(doc({ extra: (d) => { d.peers[0].ipv6 = { podCIDRs: [] }; } }))[0]).toMatch(/needs at least one IPv6 pod CIDR/);
  });
  it("an IPv4-only config derives no IPv6 at all", () => {
    const d = deriveTables(config(doc({ six: false, peers6: false })));
    expect(d.routes6).toEqual([]);
    expect(d.overlay6).toBe(0n);
    expect(d.kernelRoutes.some((r) => r.dst.includes(":"))).toBe(false);
  });
});

describe("deriving IPv6 tables", () => {
  const d = deriveTables(config(doc()));
  it("own prefix local; VXLAN and IPIP peers share their IPv4 next hop; a direct peer gets a VXLAN one", () => {
    const route = (p: string, len: number) => d.routes6.find((r) => r.prefix === ipv6ToBigint(p) && r.len === len);
    expect(route("2001:2:0:1::", 64)?.nh).toBe(NH_LOCAL_INDEX);
    // worker2 (198.18.0.12) is in our subnet: direct for IPv4, VXLAN for IPv6.
    expect(d.peers[0].encapsulation).toBe("direct");
    const nh2 = d.nexthops[route("2001:2:0:2::", 64)!.nh];
    expect(nh2).toMatchObject({ kind: "vxlan", peer: 0 });
    expect(d.nexthops[1]).toMatchObject({ kind: "direct", peer: 0 });
    // worker3 over IPIP: the same next hop as its IPv4 (protocol 41 by family).
    expect(route("2001:2:0:3::", 64)?.nh).toBe(2);
    expect(route("2001:2:0:33::", 64)?.nh).toBe(2);
    expect(d.routes6).toHaveLength(4); // worker4 has no IPv6
    expect(d.overlay6).toBe(ipv6ToBigint("2001:2:0:1::"));
  });
  it("every peer's IPv6 prefix goes into our device; the kernel cannot route it via an IPv4 gateway", () => {
    const six = d.kernelRoutes.filter((r) => r.dst.includes(":"));
    expect(six).toEqual([
      { dst: "2001:2:0:2::/64", dev: "tunnel" },
      { dst: "2001:2:0:3::/64", dev: "tunnel" },
      { dst: "2001:2:0:33::/64", dev: "tunnel" },
    ]);
  });
  it("an overlay address outside the pod prefix gets a local /128", () => {
    const e = deriveTables(config(doc({ extra: (x) => { x.node.ipv6.overlayAddress = "2001:2:0:ff::1"; } })));
    expect(e.routes6).toContainEqual({ prefix: ipv6ToBigint("2001:2:0:ff::1"), len: 128, nh: NH_LOCAL_INDEX });
  });
  it("the device MTU leaves room for VXLAN when a direct peer's IPv6 rides it", () => {
    const ipipOnly = (six: boolean) => deriveTables(config(doc({ six, peers6: six, extra: (x) => { x.peers = [x.peers[0], x.peers[1]]; x.peers[0].podCIDRs = ["198.19.2.0/24"]; } })));
    // worker2 direct, worker3 IPIP: IPv4 needs room for IPIP only; IPv6 to worker2 is VXLAN.
    expect(encapOverhead(ipipOnly(false).peers)).toBe(20);
    expect(encapOverhead(ipipOnly(true).peers)).toBe(50);
  });
  it("the workers get the IPv6 routes and overlay address", () => {
    const t = toDataplaneTables(d);
    expect(t.routes6).toEqual(d.routes6);
    expect(t.node.overlay6).toBe(d.overlay6);
  });
  it("show routes lists both families; the routes6 gauge counts IPv6", async () => {
    const rows = routeRows(d, () => "config");
    expect(rows.filter((r) => r.prefix.includes(":")).map((r) => [r.prefix, r.kind, r.peer])).toEqual([
      ["2001:2:0:1::/64", "local", undefined],
      ["2001:2:0:2::/64", "vxlan", "worker2"],
      ["2001:2:0:3::/64", "ipip", "worker3"],
      ["2001:2:0:33::/64", "ipip", "worker3"],
    ]);
    const m = createMetrics();
    m.setTableSizes({ routes: d.routes.length, routes6: d.routes6.length, peers: 3, fdb: 0, neigh: 0 });
    expect(await m.registry.metrics()).toMatch(/^overlay_routes6 4$/m);
  });
});

describe("reload", () => {
  it("refuses a change of node.ipv6 by name; peers' IPv6 prefixes reload live", () => {
    const a = config(doc());
    expect(refusedChanges(a, config(doc({ extra: (d) => { d.node.ipv6.podCIDR = "2001:2:0:9::/64"; } })))).toEqual([
      "node.ipv6.podCIDR changed: restart overlayd to apply it",
    ]);
    expect(refusedChanges(a, config(doc({ six: false, peers6: false })))[0]).toMatch(/^node\.ipv6 changed/);
    expect(refusedChanges(a, config(doc({ extra: (d) => { d.peers[0].ipv6.podCIDRs.push("2001:2:0:22::/64"); } })))).toEqual([]);
  });
});

describe("NAT66 config: clusterIP6, backends6, node.ipv6.underlayAddress, nat.snatAddress6", () => {
  const svc = (o: Doc = {}) => ({ name: "web", clusterIP: "198.18.250.10", clusterIP6: "2001:2:0:250::10", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], backends: ["198.19.2.10"], backends6: ["2001:2:0:2::10"], ...o });
  it("derives IPv6 frontends (ClusterIP and, with an underlay address, the NodePort) and the NAT66 plan", () => {
    const c = config(doc({ extra: (d) => { d.services = [svc()]; d.nat = { masquerade: true }; d.node.ipv6.underlayAddress = "2001:2:ff::1"; } }));
    const t = deriveTables(c);
    expect(t.services6).toEqual([
      { service: "web", protocol: "tcp", addr: "2001:2:0:250::10", port: 80, nodePort: false, backends: [{ addr: "2001:2:0:2::10", port: 8080 }] },
      { service: "web", protocol: "tcp", addr: "2001:2:ff::1", port: 30080, nodePort: true, backends: [{ addr: "2001:2:0:2::10", port: 8080 }] },
    ]);
    expect(t.nat.ipv6).toEqual({ masquerade: true, podCIDR: "2001:2:0:1::/64", underlayAddress: "2001:2:ff::1", snatAddress: "2001:2:0:1:ffff:ffff:ffff:fffe", clusterIPs: ["2001:2:0:250::10"] });
    expect(toDataplaneTables(t).nat?.ipv6).toEqual({ masquerade: true, nodeAddress: "2001:2:ff::1", snatAddress: "2001:2:0:1:ffff:ffff:ffff:fffe" });
  });
  it("without an IPv6 underlay address: no IPv6 masquerade and no IPv6 NodePort", () => {
    const t = deriveTables(config(doc({ extra: (d) => { d.services = [svc()]; d.nat = { masquerade: true }; } })));
    expect(t.services6.map((f) => f.nodePort)).toEqual([false]);
    expect(t.nat.ipv6?.masquerade).toBe(false);
  });
  it("refuses IPv6 services and addresses that cannot work, naming the field", () => {
    expect(errors(doc({ six: false, peers6: false, extra: (d) => { d.services = [svc()]; } }))).toEqual([
      "services[0].clusterIP6: an IPv6 service needs node.ipv6 (dual-stack) on this node",
    ]);
    expect(errors(doc({ extra: (d) => { d.services = [svc({ clusterIP6: undefined })]; } }))).toEqual([
      "services[0].backends6: IPv6 backends need an IPv6 ClusterIP: set clusterIP6",
    ]);
    expect(errors(doc({ extra: (d) => { d.services = [svc({ clusterIP6: "2001:2:0:2::99" })]; } }))[0]).toMatch(/^services\[0\]\.clusterIP6: "2001:2:0:2::99" lies in pod CIDR 2001:2:0:2::\/64/);
    expect(errors(doc({ extra: (d) => { d.nat = { snatAddress6: "2001:2:0:9::1" }; } }))[0]).toMatch(/^nat\.snatAddress6: "2001:2:0:9::1" is outside node\.ipv6\.podCIDR/);
    expect(errors(doc({ extra: (d) => { d.nat = { snatAddress6: "2001:2:0:1::" }; } }))[0]).toMatch(/^nat\.snatAddress6: .* is the node's IPv6 overlay address/);
    expect(errors(doc({ extra: (d) => { d.services = [svc({ backends6: ["198.19.2.10"] })]; } }))[0]).toMatch(/^services\[0\]\.backends6\[0\]: .*not an IPv6 address/);
  });
});

describe("IPv6-only services (ipFamilies: [IPv6])", () => {
  it("derive to IPv6 frontends only, and the kernel routes only their IPv6 ClusterIP", () => {
    const c = config(doc({ extra: (d) => { d.services = [{ name: "v6only", clusterIP6: "2001:2:0:250::20", ports: [{ port: 53, protocol: "udp" }], backends6: ["2001:2:0:2::10"] }]; } }));
    const t = deriveTables(c);
    expect(t.services).toEqual([]);
    expect(t.nat.clusterIPs).toEqual([]);
    expect(t.services6.map((f) => `${f.protocol} [${f.addr}]:${f.port}`)).toEqual(["udp [2001:2:0:250::20]:53"]);
    expect(t.nat.ipv6?.clusterIPs).toEqual(["2001:2:0:250::20"]);
    expect(t.nat.enabled).toBe(true);
  });
  it("refuses a service with no ClusterIP, and IPv4 backends without an IPv4 ClusterIP", () => {
    expect(errors(doc({ extra: (d) => { d.services = [{ name: "none", ports: [{ port: 80 }] }]; } }))).toEqual([
      "services[0]: needs a clusterIP (IPv4), a clusterIP6, or both",
    ]);
    expect(errors(doc({ extra: (d) => { d.services = [{ name: "mixed", clusterIP6: "2001:2:0:250::20", ports: [{ port: 80 }], backends: ["198.19.2.10"] }]; } }))[0]).toMatch(/^services\[0\]\.backends: IPv4 backends need an IPv4 ClusterIP/);
  });
});

describe("peers[].underlay6: reaching a peer over the IPv6 underlay", () => {
  const over6 = (extra?: (d: Doc) => void) =>
    doc({
      extra: (d) => {
        d.node.ipv6.underlayAddress = "2001:2:ff::11";
        d.peers[0].underlay6 = "2001:0002:00ff:0000::12";
        d.peers[1].underlay6 = "2001:2:ff:1::13";
        extra?.(d);
      },
    });

  it("normalises the address; auto resolves to VXLAN (direct needs the IPv4 underlay); the tables carry it", () => {
    const c = config(over6());
    expect(c.peers[0].underlay6).toBe("2001:2:ff::12");
    const d = deriveTables(c);
    expect(d.peers[0]).toMatchObject({ underlay6: "2001:2:ff::12", encapsulation: "vxlan", reason: "auto: reached over the IPv6 underlay (2001:2:ff::12)" });
    expect(d.peers[1]).toMatchObject({ underlay6: "2001:2:ff:1::13", encapsulation: "ipip" });
    expect(d.peers[2].underlay6).toBeUndefined();
    // worker4 (198.18.1.14, outside 198.18.0.0/24) is VXLAN over IPv4; worker2 would have been direct.
    expect(deriveTables(config(doc())).peers[0].encapsulation).toBe("direct");
    const t = toDataplaneTables(d);
    expect(t.node.underlay6).toBe(ipv6ToBigint("2001:2:ff::11"));
    expect(t.peers.map((p) => p.underlay6)).toEqual([ipv6ToBigint("2001:2:ff::12"), ipv6ToBigint("2001:2:ff:1::13"), undefined]);
    expect(t.peers[0].underlay).toBe(0xc612000c); // its IPv4 name stays
  });

  it("the device MTU leaves 20 bytes more for an IPv6 outer header", () => {
    const d = deriveTables(config(over6()));
    expect(encapOverhead(d.peers)).toBe(70);
    expect(encapOverhead(deriveTables(config(over6((x) => { delete x.peers[0].underlay6; x.peers[0].encapsulation = "ipip"; x.peers[2].encapsulation = "ipip"; }))).peers)).toBe(40);
    expect(encapOverhead(deriveTables(config(doc({ extra: (x) => { x.peers[0].encapsulation = "ipip"; x.peers[2].encapsulation = "ipip"; } }))).peers)).toBe(20);
  });

  it("refuses what cannot work, naming the field", () => {
    expect(errors(over6((d) => { delete d.node.ipv6.underlayAddress; }))).toEqual([
      "peers[0].underlay6: an IPv6 underlay needs node.ipv6.underlayAddress (the outer source address)",
      "peers[1].underlay6: an IPv6 underlay needs node.ipv6.underlayAddress (the outer source address)",
    ]);
    expect(errors(over6((d) => { d.peers[1].underlay6 = "2001:2:ff::12"; }))).toEqual(['peers[1].underlay6: IPv6 underlay address "2001:2:ff::12" is also used by peers[0]']);
    expect(errors(over6((d) => { d.peers[1].underlay6 = "2001:2:ff::11"; }))).toEqual(['peers[1].underlay6: "2001:2:ff::11" is this node\'s own IPv6 underlay address']);
    expect(errors(over6((d) => { d.peers[0].encapsulation = "direct"; }))).toEqual([
      "peers[0].encapsulation: direct routing goes over the IPv4 underlay: drop underlay6, or tunnel (vxlan, ipip)",
    ]);
    for (const [bad, why] of [["fe80::12", "link-local"], ["ff02::1", "multicast"], ["::1", "loopback"], ["::", "unspecified"], ["::ffff:198.18.0.12", "IPv4-mapped"], ["198.18.0.12", "not an IPv6 address"]]) {
      const e = errors(over6((d) => { d.peers[0].underlay6 = bad; }));
      expect(e, bad).toHaveLength(1);
      expect(e[0]).toMatch(/^peers\[0\]\.underlay6: /);
      expect(e[0]).toContain(why);
    }
  });

  it("a reload may move a peer onto the IPv6 underlay and back (not a restart-only field)", () => {
    expect(refusedChanges(config(doc({ extra: (d) => { d.node.ipv6.underlayAddress = "2001:2:ff::11"; } })), config(over6()))).toEqual([]);
  });
});
