// The NAT and services parts of the config: defaults, the checks across
// fields (addresses that belong to someone else, ports that collide), and
// what deriveTables makes of them for the data path and the node plumbing.
import { describe, expect, it } from "vitest";
import { validateConfig, type LoadResult } from "../src/config/load.js";
import { defaultSnatAddress, type Config } from "../src/config/schema.js";
import { deriveTables } from "../src/config/derive.js";
import { ipToU32 } from "../src/config/net.js";

function doc(): any {
  return {
    node: { name: "worker1", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" },
    peers: [{ name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" }],
    services: [
      { name: "web", clusterIP: "198.18.250.10", ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], backends: ["198.19.1.10", "198.19.2.10"] },
      { name: "dns", clusterIP: "198.18.250.53", ports: [{ port: 53, protocol: "udp" }, { port: 53, protocol: "tcp" }], backends: ["198.19.2.10"] },
    ],
  };
}

function ok(r: LoadResult): Config {
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

function errorsOf(mutate: (d: any) => void): string[] {
  const d = doc();
  mutate(d);
  const r = validateConfig(d);
  return r.ok ? [] : r.errors;
}

describe("nat defaults", () => {
  it("NAT is off without masquerade or services, on with either", () => {
    const plain = doc();
    delete plain.services;
    expect(ok(validateConfig(plain)).nat.enabled).toBe(false);
    expect(ok(validateConfig(doc())).nat.enabled).toBe(true);
    plain.nat = { masquerade: true };
    expect(ok(validateConfig(plain)).nat.enabled).toBe(true);
  });

  it("port range 61000-65535, 262144 flows, SNAT address x.y.z.254, policy table/rule 4789, targetPort = port", () => {
    const c = ok(validateConfig(doc()));
    expect(c.nat.portRange).toEqual([61000, 65535]);
    expect(c.nat.conntrack.maxFlows).toBe(262144);
    expect(c.nat.snatAddress).toBe("198.19.1.254");
    expect([c.nat.routeTable, c.nat.rulePriority]).toEqual([4789, 4789]);
    expect(c.services[1].ports[0].targetPort).toBe(53);
    expect(defaultSnatAddress("198.19.4.0/23")).toBe("198.19.5.254");
    expect(defaultSnatAddress("198.19.4.8/32")).toBe("198.19.4.8");
  });
});

describe("nat and services validation", () => {
  it.each([
    ["a ClusterIP inside a pod CIDR", (d: any) => (d.services[0].clusterIP = "198.19.2.99"), "services[0].clusterIP", "lies in pod CIDR 198.19.2.0/24"],
    ["a ClusterIP that is the node's address", (d: any) => (d.services[0].clusterIP = "198.18.0.11"), "services[0].clusterIP", "underlay address"],
    ["the same frontend twice", (d: any) => d.services[1].ports.push({ port: 53, protocol: "udp" }), "services[1].ports[2].port", "udp 198.18.250.53:53 is also"],
    ["one NodePort for two services", (d: any) => (d.services[1].ports[1].nodePort = 30080), "services[1].ports[1].nodePort", "tcp NodePort 30080 is also used by"],
    ["a NodePort inside the NAT port range", (d: any) => (d.services[0].ports[0].nodePort = 62000), "services[0].ports[0].nodePort", "lies in nat.portRange"],
    ["a reversed port range", (d: any) => (d.nat = { portRange: [65000, 61000] }), "nat.portRange", "min is above max"],
    ["a SNAT address outside the pod CIDR", (d: any) => (d.nat = { snatAddress: "198.19.2.254" }), "nat.snatAddress", "outside node.podCIDR"],
    ["a SNAT address that is the overlay address", (d: any) => (d.nat = { snatAddress: "198.19.1.0" }), "nat.snatAddress", "overlay address"],
    ["a service without ports", (d: any) => (d.services[0].ports = []), "services[0].ports", "needs at least one port"],
    ["a bad protocol", (d: any) => (d.services[0].ports[0].protocol = "sctp"), "services[0].ports[0].protocol", ""],
    ["a conntrack table of 0", (d: any) => (d.nat = { conntrack: { maxFlows: 0 } }), "nat.conntrack.maxFlows", "not an integer in 1..8388607"],
  ])("%s", (_what, mutate, path, reason) => {
    const errors = errorsOf(mutate);
    const hit = errors.find((e) => e.startsWith(path));
    expect(hit, errors.join("\n")).toBeDefined();
    expect(hit).toContain(reason);
  });
});

describe("derived NAT tables", () => {
  it("one frontend per ClusterIP port and one per NodePort; plumbing lists ClusterIPs and NodePorts", () => {
    const d = deriveTables(ok(validateConfig(doc())));
    expect(d.services.map((f) => [f.service, f.protocol, f.addr, f.port, f.nodePort, f.backends])).toEqual([
      ["web", "tcp", ipToU32("198.18.250.10"), 80, false, [{ addr: ipToU32("198.19.1.10"), port: 8080 }, { addr: ipToU32("198.19.2.10"), port: 8080 }]],
      ["web", "tcp", ipToU32("198.18.0.11"), 30080, true, [{ addr: ipToU32("198.19.1.10"), port: 8080 }, { addr: ipToU32("198.19.2.10"), port: 8080 }]],
      ["dns", "udp", ipToU32("198.18.250.53"), 53, false, [{ addr: ipToU32("198.19.2.10"), port: 53 }]],
      ["dns", "tcp", ipToU32("198.18.250.53"), 53, false, [{ addr: ipToU32("198.19.2.10"), port: 53 }]],
    ]);
    expect(d.nat).toMatchObject({
      enabled: true, masquerade: false, nodeIp: ipToU32("198.18.0.11"), snatAddress: ipToU32("198.19.1.254"),
      clusterIPs: ["198.18.250.10", "198.18.250.53"], nodePorts: [{ port: 30080, protocol: "tcp" }],
    });
  });
});

describe("nat.conntrack.timeouts", () => {
  it("defaults: nf_conntrack's, ESTABLISHED 24 h as kube-proxy sets it; they reach the derived tables", () => {
    const c = ok(validateConfig(doc()));
    expect(c.nat.conntrack.timeouts).toEqual({
      tcpSynSent: 120, tcpSynRecv: 60, tcpEstablished: 86400, tcpFinWait: 120, tcpCloseWait: 60, tcpLastAck: 30,
      tcpTimeWait: 120, tcpClose: 10, udp: 30, udpStream: 120, icmp: 30,
    });
    expect(deriveTables(c).nat.timeouts.tcpEstablished).toBe(86400);
  });

  it("each may be set; out of range, not an integer or unknown names are refused by path", () => {
    const d = doc();
    d.nat = { conntrack: { timeouts: { tcpEstablished: 3600, udp: 10 } } };
    const c = ok(validateConfig(d));
    expect(c.nat.conntrack.timeouts).toMatchObject({ tcpEstablished: 3600, udp: 10, udpStream: 120 });
    expect(deriveTables(c).nat.timeouts).toMatchObject({ tcpEstablished: 3600, udp: 10 });
    expect(errorsOf((x) => (x.nat = { conntrack: { timeouts: { tcpEstablished: 0 } } }))).toEqual([
      "nat.conntrack.timeouts.tcpEstablished: 0 is not an integer in 1..31536000",
    ]);
    expect(errorsOf((x) => (x.nat = { conntrack: { timeouts: { udp: 1.5 } } }))[0]).toMatch(/^nat\.conntrack\.timeouts\.udp: /);
    expect(errorsOf((x) => (x.nat = { conntrack: { timeouts: { tcpSynSent2: 5 } } }))[0]).toMatch(/^nat\.conntrack\.timeouts/);
    expect(errorsOf((x) => (x.nat = { conntrack: { timeouts: { icmp: 31_536_001 } } }))).toHaveLength(1);
  });
});

describe("capacities the data path is sized for", () => {
  const peer = (i: number) => ({
    name: `p${i}`, underlay: `198.18.${4 + (i >> 8)}.${i & 255}`, podCIDRs: [`198.19.${i >> 8}.${i & 255}/32`],
    vtepMac: `0e:10:00:00:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
  });
  const peersDoc = (n: number) => {
    const d = doc();
    d.node.podCIDR = "198.19.200.0/24";
    d.peers = Array.from({ length: n }, (_, i) => peer(i));
    d.services = [];
    return d;
  };

  it("1024 peers load; 1025 are refused naming the limit", () => {
    expect(validateConfig(peersDoc(1024)).ok).toBe(true);
    const r = validateConfig(peersDoc(1025));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toContain("peers: 1025 peers: the data path holds at most 1024");
  });

  it("service frontends and backend entries beyond the tables are refused", () => {
    const many = (n: number, backends: number) => {
      const d = doc();
      d.services = Array.from({ length: n }, (_, i) => ({
        name: `s${i}`, clusterIP: `198.18.${240 + (i >> 8)}.${i & 255}`, ports: [{ port: 80 }],
        backends: Array.from({ length: backends }, (_, j) => `198.19.2.${1 + j}`),
      }));
      return validateConfig(d);
    };
    expect(many(4096, 1).ok).toBe(true);
    const r = many(4097, 1);
    expect(!r.ok && r.errors).toContain("services: 4097 frontends (ClusterIP ports and NodePorts): the data path holds at most 4096");
    const b = many(300, 220); // 66,000 backend entries
    expect(!b.ok && b.errors).toContain("services: 66000 backend entries (backends x frontends): the data path holds at most 65536");
  });

  it("prefixes longer than /24 in more /24s than the route table's groups are refused", () => {
    const d = doc();
    d.routes = Array.from({ length: 4100 }, (_, i) => ({ prefix: `198.18.${i >> 8}.${i & 255}/32`, via: "local" }));
    // 4100 /32s in 17 /24s: fine.
    expect(validateConfig(d).ok).toBe(true);
    d.routes = Array.from({ length: 4097 }, (_, i) => ({ prefix: `${198 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.0/25`, via: "local" }));
    const r = validateConfig(d);
    expect(!r.ok && r.errors.some((e) => /^routes: prefixes longer than \/24 fall in 409[78] distinct \/24s: the route table holds 4096$/.test(e))).toBe(true);
  });
});
