// The reload planner (src/daemon/reload.ts) and the kernel executor's batch
// error reporting (src/daemon/kernel.ts), without a node.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../src/config/load.js";
import type { Config } from "../src/config/schema.js";
import { Kernel, KernelError } from "../src/daemon/kernel.js";
import { refusedChanges, RESTART_ONLY } from "../src/daemon/reload.js";

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const base = (): Doc => ({
  node: { name: "w1", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" },
  tunnel: { vni: 100 },
  peers: [{ name: "w2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" }],
});
const cfg = (edit: (d: Doc) => void = () => undefined): Config => {
  const d = base();
  edit(d);
  const r = validateConfig(d);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return r.config;
};

describe("refusedChanges", () => {
  it("names each restart-only field that changed, down to the leaf", () => {
    const cases: [(d: Doc) => void, string][] = [
      [(d) => (d.node.podCIDR = "198.19.5.0/24"), "node.podCIDR"],
      [(d) => (d.node.device = { mtu: 1300 }), "node.device.mtu"],
      [(d) => (d.node.device = { name: "wo1" }), "node.device.name"],
      [(d) => (d.node.underlay.device = "eth1"), "node.underlay.device"],
      [(d) => (d.node.stateDir = "/run/other"), "node.stateDir"],
      [(d) => (d.tunnel.port = 4790), "tunnel.port"],
      [(d) => (d.tunnel.udpOffloads = false), "tunnel.udpOffloads"],
      [(d) => (d.tunnel.kernelGso = true), "tunnel.kernelGso"],
      [(d) => (d.tunnel.outerTtl = 10), "tunnel.outerTtl"],
      [(d) => (d.nat = { conntrack: { maxFlows: 10 } }), "nat.conntrack.maxFlows"],
      [(d) => (d.admin = { listen: "127.0.0.1:1", tokenFile: "/etc/wasm-overlay/admin.token" }), "admin.listen"],
    ];
    // (a new podCIDR also moves the default overlay address: both are named)
    for (const [edit, field] of cases) expect(refusedChanges(cfg(), cfg(edit))[0]).toBe(`${field} changed: restart overlayd to apply it`);
  });

  it("lets peers, routes, services, masquerade and log.level through", () => {
    const next = cfg((d) => {
      d.peers.push({ name: "w3", underlay: "198.18.1.13", podCIDRs: ["198.19.3.0/24"], vtepMac: "0e:00:00:00:03:00" });
      d.nat = { masquerade: true };
      d.log = { level: "debug" };
    });
    expect(refusedChanges(cfg(), next)).toEqual([]);
  });

  it("tunnel.outerTtl is restart-only only while the UDP GSO sockets carry it", () => {
    const off = (d: Doc) => (d.tunnel.udpOffloads = false);
    expect(refusedChanges(cfg(off), cfg((d) => (off(d), (d.tunnel.outerTtl = 10))))).toEqual([]);
    expect(RESTART_ONLY.map((f) => f.field)).toContain("tunnel.outerTtl");
  });
});

describe("Kernel.ipBatch", () => {
  it("one ip -force -batch for all lines; failures name their line and the kernel's reason", () => {
    const calls: { argv: string[]; input?: string }[] = [];
    const k = new Kernel((argv, input) => {
      calls.push({ argv, input });
      throw new KernelError(`${argv.join(" ")}: Error: Nexthop has invalid gateway.\nCommand failed -:2\nRTNETLINK answers: No such process\nCommand failed -:3`);
    });
    const errs = k.ipBatch(["route replace 198.19.2.0/24 dev wo0", "route replace 198.19.9.0/24 via 198.18.7.7 dev eth0", "route del 198.19.4.0/24 dev wo0"]);
    expect(calls).toHaveLength(1);
    expect(calls[0].argv).toEqual(["ip", "-force", "-batch", "-"]);
    expect(calls[0].input).toBe("route replace 198.19.2.0/24 dev wo0\nroute replace 198.19.9.0/24 via 198.18.7.7 dev eth0\nroute del 198.19.4.0/24 dev wo0\n");
    expect(errs).toEqual([
      "ip route replace 198.19.9.0/24 via 198.18.7.7 dev eth0: Error: Nexthop has invalid gateway.",
      "ip route del 198.19.4.0/24 dev wo0: RTNETLINK answers: No such process",
    ]);
    expect(k.ipBatch([])).toEqual([]);
    expect(calls).toHaveLength(1);
  });
});
