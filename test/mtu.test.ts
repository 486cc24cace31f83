// The node's MTUs from the underlay link (src/daemon/mtu.ts): the tunnel MTU
// is the link's unless configured, the device MTU leaves room for the largest
// encapsulation in use, and configured values above the link are refused.
import { describe, expect, it } from "vitest";
import { validateConfig } from "../src/config/load.js";
import { deriveTables } from "../src/config/derive.js";
import type { Config } from "../src/config/schema.js";
import { encapOverhead, MtuError, planMtu, readLinkMtu } from "../src/daemon/mtu.js";
import { createMetrics } from "../src/control/metrics.js";
import { E_BAD_SLOT, E_TRUNCATED, IoErrors, OP_RECV, OP_SEND, OP_WRITE } from "../src/io/errors.js";
import * as libc from "../src/io/libc.js";

function config(extra: { tunnel?: object; device?: object; encap?: string[] } = {}): Config {
  const encap = extra.encap ?? ["auto", "auto"];
  const r = validateConfig({
    node: { name: "worker1", underlay: { address: "198.18.0.11", prefixLength: 24, device: "eth0" }, podCIDR: "198.19.1.0/24", device: extra.device ?? {} },
    tunnel: { vni: 100, ...extra.tunnel },
    peers: [
      { name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00", encapsulation: encap[0] },
      { name: "worker3", underlay: "198.18.1.13", podCIDRs: ["198.19.3.0/24"], vtepMac: "0e:00:00:00:03:00", encapsulation: encap[1] },
    ],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.config;
}

const plan = (c: Config, mtu: number | undefined, strict = true) => planMtu(c, deriveTables(c), { device: "eth0", mtu }, strict);

describe("MTUs from the underlay link", () => {
  it("default config on a 1400-byte link: tunnel MTU 1400, device MTU 1350 (VXLAN's 50)", () => {
    const p = plan(config(), 1400);
    expect(p).toMatchObject({ tunnelMtu: 1400, deviceMtu: 1350, overhead: 50, source: "link", linkMtu: 1400 });
  });

  it("every tunnelled peer IPIP: 20 bytes of room; direct peers need none; none tunnelled: VXLAN's", () => {
    expect(plan(config({ encap: ["ipip", "ipip"] }), 1500).deviceMtu).toBe(1480);
    expect(plan(config({ encap: ["direct", "ipip"] }), 1500).deviceMtu).toBe(1480);
    expect(plan(config({ encap: ["ipip", "vxlan"] }), 1500).deviceMtu).toBe(1450);
    expect(plan(config({ encap: ["direct", "direct"] }), 9000).deviceMtu).toBe(8950);
    expect(encapOverhead([])).toBe(50);
  });

  it("a configured tunnel.underlayMtu at or below the link is used; above it is refused with the field and both values", () => {
    expect(plan(config({ tunnel: { underlayMtu: 1300 } }), 1400)).toMatchObject({ tunnelMtu: 1300, deviceMtu: 1250, source: "config" });
    expect(() => plan(config({ tunnel: { underlayMtu: 1500 } }), 1400)).toThrow(MtuError);
    expect(() => plan(config({ tunnel: { underlayMtu: 1500 } }), 1400)).toThrow(/tunnel\.underlayMtu 1500 is above the MTU of the underlay interface eth0 \(1400\)/);
  });

  it("a configured node.device.mtu above the link is refused; at or below it, it is used as is", () => {
    expect(() => plan(config({ device: { mtu: 1450 } }), 1400)).toThrow(/node\.device\.mtu 1450 is above the MTU of the underlay interface eth0 \(1400\)/);
    expect(plan(config({ device: { mtu: 1300 } }), 1400)).toMatchObject({ tunnelMtu: 1400, deviceMtu: 1300 });
  });

  it("the link shrinking under a configured value (not strict): lowered to the link, with a warning", () => {
    const p = plan(config({ tunnel: { underlayMtu: 1500 } }), 1400, false);
    expect(p).toMatchObject({ tunnelMtu: 1400, deviceMtu: 1350 });
    expect(p.warnings.join()).toMatch(/using 1400/);
  });

  it("no readable link: the configured value, else 1500 with a warning", () => {
    expect(plan(config({ tunnel: { underlayMtu: 9000 } }), undefined)).toMatchObject({ tunnelMtu: 9000, deviceMtu: 8950, source: "config", warnings: [] });
    const p = plan(config(), undefined);
    expect(p).toMatchObject({ tunnelMtu: 1500, deviceMtu: 1450, source: "default" });
    expect(p.warnings.join()).toMatch(/cannot read the MTU/);
  });

  it("reads an interface's MTU from sysfs; unknown or malformed names give undefined", () => {
    expect(readLinkMtu("lo")).toBeGreaterThanOrEqual(1500);
    expect(readLinkMtu("no-such-link0")).toBeUndefined();
    expect(readLinkMtu("../../../etc")).toBeUndefined();
    expect(readLinkMtu(undefined)).toBeUndefined();
  });
});

describe("I/O errors by errno (overlay_io_errors_total)", () => {
  const line = async (m: ReturnType<typeof createMetrics>, op: string, errno: string) => {
    const text = await m.registry.metrics();
    const hit = new RegExp(`^overlay_io_errors_total\\{op="${op}",errno="${errno}"\\} (\\d+)$`, "m").exec(text);
    return hit ? Number(hit[1]) : undefined;
  };

  it("exports each op/errno as a counter, from cumulative snapshots, resets included; common series exist at 0", async () => {
    const m = createMetrics();
    expect(await line(m, "send", "EMSGSIZE")).toBe(0);
    expect(await line(m, "recv", "MSG_TRUNC")).toBe(0);
    m.setIoErrors({ "send/EMSGSIZE": 3, "write/EAGAIN": 1 });
    m.setIoErrors({ "send/EMSGSIZE": 5, "write/EAGAIN": 1, "send/ENETUNREACH": 2 });
    expect(await line(m, "send", "EMSGSIZE")).toBe(5);
    expect(await line(m, "send", "ENETUNREACH")).toBe(2);
    expect(await line(m, "write", "EAGAIN")).toBe(1);
    m.setIoErrors({ "send/EMSGSIZE": 2 }); // a worker restarted from zero
    expect(await line(m, "send", "EMSGSIZE")).toBe(7);
    m.setIoErrors({ "bogus/EIO": 1, "send/E IO": 1, "send/EIO": -1 } as Record<string, number>);
    expect(await m.registry.metrics()).not.toMatch(/bogus|E IO/);
  });

  it("the data path's PMTU counters become overlay_pmtu_events_total", async () => {
    const m = createMetrics();
    m.updateFromCounters({ pmtu_lowered: 2n, pmtu_ignored: 5n });
    const text = await m.registry.metrics();
    expect(text).toMatch(/^overlay_pmtu_events_total\{event="lowered"\} 2$/m);
    expect(text).toMatch(/^overlay_pmtu_events_total\{event="ignored"\} 5$/m);
  });

  it("IoErrors counts by op and errno without names until the snapshot", () => {
    const e = new IoErrors();
    e.add(OP_SEND, libc.EMSGSIZE);
    e.add(OP_SEND, libc.EMSGSIZE, 2);
    e.add(OP_WRITE, libc.EAGAIN);
    e.add(OP_RECV, E_TRUNCATED);
    e.add(OP_SEND, E_BAD_SLOT);
    e.add(OP_SEND, libc.ENOBUFS, 0);
    expect(e.snapshot()).toEqual({ "send/EMSGSIZE": 3, "write/EAGAIN": 1, "recv/MSG_TRUNC": 1, "send/bad_slot": 1 });
  });
});
