// Config loading and validation: the examples load, every rule the schema
// enforces gives a "field: reason" message, YAML and JSON both work, and no
// input (garbage, wrong types, missing files) makes the loader throw.
// The control plane's logger and metrics are checked at the end.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { formatConfigErrors, loadConfigFile, parseConfigText, validateConfig, type LoadResult } from "../src/config/load.js";
import type { Config } from "../src/config/schema.js";
import { createLogger, resolveLevel } from "../src/control/log.js";
import { createMetrics, DIRECTIONS, DROP_REASONS } from "../src/control/metrics.js";
import { REASON_NAMES } from "../src/dataplane/abi.js";

const EXAMPLES = resolve(import.meta.dirname, "../examples");
const tmp = mkdtempSync(join(tmpdir(), "overlay-config-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** worker1 of the lab, as a plain document each test mutates. */
function doc(): any {
  return {
    node: { name: "worker1", underlay: { address: "198.18.0.11", prefixLength: 24 }, podCIDR: "198.19.1.0/24" },
    tunnel: { vni: 100 },
    peers: [
      { name: "worker2", underlay: "198.18.0.12", podCIDRs: ["198.19.2.0/24"], vtepMac: "0e:00:00:00:02:00" },
      { name: "worker3", underlay: "198.18.1.13", podCIDRs: ["198.19.3.0/24"], vtepMac: "0e:00:00:00:03:00" },
    ],
  };
}

function ok(r: LoadResult): Config {
  if (!r.ok) throw new Error(`expected a valid config, got:\n${formatConfigErrors(r.errors)}`);
  return r.config;
}

function errorsOf(mutate: (d: any) => void): string[] {
  const d = doc();
  mutate(d);
  const r = validateConfig(d);
  if (r.ok) throw new Error("expected the config to be rejected");
  return r.errors;
}

describe("examples", () => {
  it.each(["worker1", "worker2", "worker3", "worker3-ipip"])("examples/%s.yaml loads", (name) => {
    const c = ok(loadConfigFile(join(EXAMPLES, `${name}.yaml`)));
    expect(c.node.name).toBe(name.replace("-ipip", ""));
    expect(c.peers).toHaveLength(2);
    expect(c.tunnel.vni).toBe(100);
  });

  it("each worker lists the other two with matching underlay, pod CIDR and VTEP MAC", () => {
    const cs = ["worker1", "worker2", "worker3"].map((w) => ok(loadConfigFile(join(EXAMPLES, `${w}.yaml`))));
    for (const c of cs) {
      for (const p of c.peers) {
        const other = cs.find((o) => o.node.name === p.name)!;
        expect(other, p.name).toBeDefined();
        expect(p.underlay).toBe(other.node.underlay.address);
        expect(p.podCIDRs).toEqual([other.node.podCIDR]);
        expect(p.vtepMac).toBe(other.node.device.vtepMac);
        expect(p.vtepAddress).toBe(other.node.overlayAddress);
        expect(p.encapsulation).toBe("auto");
      }
    }
  });

  it("worker3-ipip uses ipip towards both peers and leaves room for the 20-byte outer header", () => {
    const c = ok(loadConfigFile(join(EXAMPLES, "worker3-ipip.yaml")));
    expect(c.peers.map((p) => p.encapsulation)).toEqual(["ipip", "ipip"]);
    expect(c.node.device.mtu).toBe(1480);
  });
});

describe("defaults", () => {
  it("fills every optional field", () => {
    const d = doc();
    delete d.tunnel;
    const c = ok(validateConfig(d));
    expect(c.tunnel).toEqual({ vni: 1, port: 4789, sourcePortRange: [32768, 60999], outerTtl: 64, underlayMtu: undefined, udpOffloads: true, kernelGso: false });
    expect(c.node.overlayAddress).toBe("198.19.1.0");
    // The device MTU is left to the daemon, which reads the underlay link (src/daemon/mtu.ts).
    expect(c.node.device).toEqual({ name: "wo0", mode: "tun", mtu: undefined, mac: undefined, vtepMac: "0e:00:c6:12:00:0b", offloads: true, ioUring: true, queues: undefined });
    expect(c.peers[0].vtepAddress).toBe("198.19.2.0");
    expect(c.peers[0].encapsulation).toBe("auto");
    expect(c.routes).toEqual([]);
    // The admin API on a unix socket in node.stateDir; the metrics listener where Prometheus scrapes.
    expect(c.admin).toEqual({ listen: "/run/wasm-overlay/admin.sock", tokenFile: undefined, metrics: "127.0.0.1:9469", watchdogSeconds: 15, conntrackDumpRate: 10_000 });
    expect(c.node.stateDir).toBe("/run/wasm-overlay");
    expect(c.log).toEqual({ level: "info" });
  });

  it("offloads: on for tun, off for tap, refused for tap; UDP GSO/GRO follows them unless set", () => {
    const d = doc();
    d.node.device = { mode: "tap" };
    let c = ok(validateConfig(d));
    expect([c.node.device.offloads, c.tunnel.udpOffloads]).toEqual([false, false]);
    d.node.device = { mode: "tap", offloads: true };
    const r = validateConfig(d);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.join("\n")).toContain("node.device.offloads");
    d.node.device = { offloads: false };
    c = ok(validateConfig(d));
    expect([c.node.device.offloads, c.tunnel.udpOffloads]).toEqual([false, false]);
    d.tunnel.udpOffloads = true;
    expect(ok(validateConfig(d)).tunnel.udpOffloads).toBe(true);
    d.node.device = {};
    d.tunnel.udpOffloads = false;
    c = ok(validateConfig(d));
    expect([c.node.device.offloads, c.tunnel.udpOffloads]).toEqual([true, false]);
  });

  it("tunnel.kernelGso: off by default; refused without tun offloads and with NAT", () => {
    expect(ok(validateConfig(doc())).tunnel.kernelGso).toBe(false);
    const d = doc();
    d.tunnel.kernelGso = true;
    expect(ok(validateConfig(d)).tunnel.kernelGso).toBe(true);
    for (const mutate of [
      (x: any) => { x.node.device = { offloads: false }; },
      (x: any) => { x.node.device = { mode: "tap" }; },
      (x: any) => { x.nat = { masquerade: true }; },
    ]) {
      const e = errorsOf((x) => { x.tunnel.kernelGso = true; mutate(x); });
      expect(e.join("\n")).toContain("tunnel.kernelGso");
    }
  });

  it("tunnel.underlayMtu is kept as set; a tap device gets a kernel-side MAC distinct from the VTEP MAC", () => {
    const d = doc();
    d.tunnel.underlayMtu = 9000;
    d.node.device = { mode: "tap" };
    const c = ok(validateConfig(d));
    expect(c.tunnel.underlayMtu).toBe(9000);
    expect(c.node.device.mtu).toBeUndefined();
    expect(c.node.device.mac).toBe("0e:01:c6:12:00:0b");
    expect(c.node.device.vtepMac).toBe("0e:00:c6:12:00:0b");
  });

  it("normalises MACs to lower-case colon form", () => {
    const d = doc();
    d.peers[0].vtepMac = "0E-00-00-00-02-AA";
    expect(ok(validateConfig(d)).peers[0].vtepMac).toBe("0e:00:00:00:02:aa");
  });

  it("admin: the socket follows node.stateDir; a socket path of its own; TCP with a token file; metrics on a listener of its own or none", () => {
    const d = doc();
    d.node.stateDir = "/var/run/wo-a/";
    expect(ok(validateConfig(d)).admin.listen).toBe("/var/run/wo-a/admin.sock");
    d.admin = { listen: "/run/overlayd.sock", metrics: "0.0.0.0:9470", watchdogSeconds: 30, conntrackDumpRate: 250_000 };
    expect(ok(validateConfig(d)).admin).toEqual({ listen: "/run/overlayd.sock", tokenFile: undefined, metrics: "0.0.0.0:9470", watchdogSeconds: 30, conntrackDumpRate: 250_000 });
    d.admin = { conntrackDumpRate: 10 };
    expect(validateConfig(d).ok).toBe(false);
    d.admin = { listen: "127.0.0.1:9470", tokenFile: "/etc/wasm-overlay/admin.token" };
    expect(ok(validateConfig(d)).admin).toMatchObject({ listen: "127.0.0.1:9470", tokenFile: "/etc/wasm-overlay/admin.token", metrics: "127.0.0.1:9469" });
    d.admin = { metrics: false };
    expect(ok(validateConfig(d)).admin.metrics).toBeUndefined();
  });
});

describe("validation messages name the field and the reason", () => {
  // [what, mutation, field the message must start with, words it must contain]
  const cases: Array<[string, (d: any) => void, string, RegExp]> = [
    ["prefix length 33", (d) => (d.peers[1].podCIDRs[0] = "198.19.2.0/33"), "peers[1].podCIDRs[0]", /"198\.19\.2\.0\/33" is not an IPv4 CIDR/],
    ["CIDR without length", (d) => (d.node.podCIDR = "198.19.1.0"), "node.podCIDR", /not an IPv4 CIDR/],
    ["host bits set", (d) => (d.peers[0].podCIDRs[0] = "198.19.2.7/24"), "peers[0].podCIDRs[0]", /host bits set \(did you mean 198\.19\.2\.0\/24\?\)/],
    ["node podCIDR host bits", (d) => (d.node.podCIDR = "198.19.1.1/24"), "node.podCIDR", /host bits/],
    ["octet over 255", (d) => (d.peers[0].underlay = "198.18.0.256"), "peers[0].underlay", /not an IPv4 address/],
    ["three octets", (d) => (d.node.underlay.address = "198.18.11"), "node.underlay.address", /not an IPv4 address/],
    ["leading zero octet", (d) => (d.peers[0].vtepAddress = "198.19.2.01"), "peers[0].vtepAddress", /not an IPv4 address/],
    ["multicast underlay", (d) => (d.peers[0].underlay = "239.1.1.1"), "peers[0].underlay", /multicast/],
    ["short MAC", (d) => (d.peers[0].vtepMac = "0e:00:00:00:02"), "peers[0].vtepMac", /not a MAC address/],
    ["multicast MAC", (d) => (d.peers[0].vtepMac = "01:00:5e:00:00:01"), "peers[0].vtepMac", /multicast/],
    ["duplicate peer name", (d) => (d.peers[1].name = "worker2"), "peers[1].name", /"worker2" is also used by peers\[0\]/],
    ["duplicate underlay", (d) => (d.peers[1].underlay = "198.18.0.12"), "peers[1].underlay", /"198\.18\.0\.12" is also used by peers\[0\]/],
    ["duplicate MAC", (d) => (d.peers[1].vtepMac = "0e:00:00:00:02:00"), "peers[1].vtepMac", /is also used by peers\[0\]/],
    ["duplicate MAC, other spelling", (d) => (d.peers[1].vtepMac = "0E:00:00:00:02:00"), "peers[1].vtepMac", /is also used by peers\[0\]/],
    ["overlapping peer pod CIDRs", (d) => (d.peers[1].podCIDRs = ["198.19.2.128/25"]), "peers[1].podCIDRs[0]", /overlaps 198\.19\.2\.0\/24 of peer worker2/],
    ["peer pod CIDR overlaps the node's", (d) => (d.peers[1].podCIDRs = ["198.19.0.0/16"]), "peers[1].podCIDRs[0]", /overlaps 198\.19\.1\.0\/24 of this node/],
    ["overlap within one peer", (d) => d.peers[0].podCIDRs.push("198.19.2.0/25"), "peers[0].podCIDRs[1]", /overlaps/],
    ["peer underlay is the node's", (d) => (d.peers[1].underlay = "198.18.0.11"), "peers[1].underlay", /this node's own underlay address/],
    ["peer MAC is the node's", (d) => (d.peers[0].vtepMac = "0e:00:c6:12:00:0b"), "peers[0].vtepMac", /this node's own VTEP MAC/],
    ["peer VTEP is the node's overlay address", (d) => (d.peers[0].vtepAddress = "198.19.1.0"), "peers[0].vtepAddress", /this node's own overlay address/],
    ["node overlay address inside a peer's pods", (d) => (d.node.overlayAddress = "198.19.2.7"), "node.overlayAddress", /lies in 198\.19\.2\.0\/24 of peer worker2/],
    ["peer VTEP address inside this node's pods", (d) => (d.peers[1].vtepAddress = "198.19.1.9"), "peers[1].vtepAddress", /lies in 198\.19\.1\.0\/24 of this node/],
    ["VNI 0", (d) => (d.tunnel.vni = 0), "tunnel.vni", /0 is not an integer in 1\.\.16777215/],
    ["VNI 2^24", (d) => (d.tunnel.vni = 16777216), "tunnel.vni", /1\.\.16777215/],
    ["VNI as a string", (d) => (d.tunnel.vni = "100"), "tunnel.vni", /expected number, got string "100"/],
    ["port 0", (d) => (d.tunnel.port = 0), "tunnel.port", /1\.\.65535/],
    ["port 70000", (d) => (d.tunnel.port = 70000), "tunnel.port", /1\.\.65535/],
    ["fractional port", (d) => (d.tunnel.port = 4789.5), "tunnel.port", /not an integer/],
    ["source port range reversed", (d) => (d.tunnel.sourcePortRange = [60999, 32768]), "tunnel.sourcePortRange", /min is above max/],
    ["source port out of range", (d) => (d.tunnel.sourcePortRange = [0, 100]), "tunnel.sourcePortRange[0]", /1\.\.65535/],
    ["source port range of one", (d) => (d.tunnel.sourcePortRange = [1]), "tunnel.sourcePortRange", /./],
    ["outer TTL 0", (d) => (d.tunnel.outerTtl = 0), "tunnel.outerTtl", /1\.\.255/],
    ["outer TTL 256", (d) => (d.tunnel.outerTtl = 256), "tunnel.outerTtl", /1\.\.255/],
    ["underlay prefix length 33", (d) => (d.node.underlay.prefixLength = 33), "node.underlay.prefixLength", /0\.\.32/],
    ["device MTU above the underlay's", (d) => ((d.node.device = { mtu: 1600 }), (d.tunnel.underlayMtu = 1500)), "node.device.mtu", /above tunnel\.underlayMtu/],
    ["device mode", (d) => (d.node.device = { mode: "tun0" }), "node.device.mode", /"tun0" is not one of "tun", "tap"/],
    ["device name too long", (d) => (d.node.device = { name: "a-very-long-ifname" }), "node.device.name", /interface name/],
    ["no pod CIDRs", (d) => (d.peers[0].podCIDRs = []), "peers[0].podCIDRs", /at least one pod CIDR/],
    ["unknown encapsulation", (d) => (d.peers[0].encapsulation = "gre"), "peers[0].encapsulation", /"gre" is not one of "vxlan", "ipip", "direct", "auto"/],
    ["missing field", (d) => delete d.node.podCIDR, "node.podCIDR", /is required/],
    ["missing node", (d) => delete d.node, "node", /is required/],
    ["misspelt field", (d) => (d.peers[0].podCIDR = "198.19.2.0/24"), "peers[0]", /unknown field "podCIDR"/],
    ["peer named like a route target", (d) => (d.peers[0].name = "blackhole"), "peers[0].name", /reserved/],
    ["route via an unknown peer", (d) => (d.routes = [{ prefix: "198.19.9.0/24", via: "worker9" }]), "routes[0].via", /"worker9" is not a peer name/],
    ["route repeating a pod CIDR", (d) => (d.routes = [{ prefix: "198.19.2.0/24", via: "blackhole" }]), "routes[0].prefix", /already the pod CIDR of peer worker2/],
    ["duplicate route", (d) => (d.routes = [{ prefix: "10.0.0.0/8", via: "local" }, { prefix: "10.0.0.0/8", via: "worker2" }]), "routes[1].prefix", /also routes\[0\]/],
    ["admin listen", (d) => (d.admin = { listen: "localhost" }), "admin.listen", /neither host:port/],
    ["metrics on a path", (d) => (d.admin = { metrics: "/prom" }), "admin.metrics", /is not host:port \(\/metrics is always on the admin API/],
    ["TCP admin without a token", (d) => (d.admin = { listen: "127.0.0.1:9470" }), "admin.tokenFile", /admin.listen "127.0.0.1:9470" is TCP: set admin.tokenFile/],
    ["admin and metrics on one address", (d) => (d.admin = { listen: "127.0.0.1:9469", tokenFile: "/t" }), "admin.metrics", /needs an address of its own/],
    ["relative token file", (d) => (d.admin = { listen: "127.0.0.1:9470", tokenFile: "t" }), "admin.tokenFile", /not an absolute path/],
    ["state dir too long for the socket", (d) => (d.node.stateDir = "/" + "x".repeat(100)), "node.stateDir", /longer than a unix socket path/],
    ["watchdog", (d) => (d.admin = { watchdogSeconds: 1 }), "admin.watchdogSeconds", /not an integer in 2\.\.3600/],
    ["log level", (d) => (d.log = { level: "verbose" }), "log.level", /"verbose" is not one of/],
  ];

  it.each(cases)("%s", (_what, mutate, field, reason) => {
    const errors = errorsOf(mutate);
    const hit = errors.find((e) => e.startsWith(`${field}: `));
    expect(hit, `no error for ${field} in:\n${errors.join("\n")}`).toBeDefined();
    expect(hit).toMatch(reason);
  });

  it("reports every problem at once, field errors and cross-field ones together", () => {
    const errors = errorsOf((d) => {
      d.peers[0].podCIDRs[0] = "198.19.2.0/33";
      d.peers[1].name = "worker2";
      d.tunnel.vni = 0;
    });
    expect(errors).toEqual(expect.arrayContaining([
      expect.stringMatching(/^peers\[0\]\.podCIDRs\[0\]: /),
      expect.stringMatching(/^peers\[1\]\.name: /),
      expect.stringMatching(/^tunnel\.vni: /),
    ]));
  });

  it("formatConfigErrors makes an indented list", () => {
    expect(formatConfigErrors(["a: x", "b: y"])).toBe("  - a: x\n  - b: y");
  });
});

describe("YAML and JSON", () => {
  it("the same document as YAML and as JSON gives the same config", () => {
    const yamlFile = join(tmp, "w1.yaml");
    const jsonFile = join(tmp, "w1.json");
    const d = doc();
    d.routes = [{ prefix: "198.18.96.0/24", via: "blackhole" }];
    writeFileSync(yamlFile, stringify(d));
    writeFileSync(jsonFile, JSON.stringify(d, null, 2));
    const a = ok(loadConfigFile(yamlFile));
    expect(ok(loadConfigFile(jsonFile))).toEqual(a);
    expect(a.routes).toEqual([{ prefix: "198.18.96.0/24", via: "blackhole" }]);
  });

  it("JSON is recognised by content, whatever the file is called", () => {
    const f = join(tmp, "json-in-disguise.conf");
    writeFileSync(f, JSON.stringify(doc()));
    expect(ok(loadConfigFile(f)).node.name).toBe("worker1");
    // ...and its errors are JSON errors.
    writeFileSync(f, '{"node": {');
    const r = loadConfigFile(f);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatch(/invalid JSON/);
  });

  it("YAML syntax errors say where", () => {
    const r = parseConfigText("node:\n  name: [worker1\n", "bad.yaml");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatch(/^bad\.yaml: invalid YAML: .*line \d+/);
  });

  it("duplicate YAML keys are an error, not a silent override", () => {
    const r = parseConfigText(stringify(doc()) + "tunnel:\n  vni: 7\n", "dup.yaml");
    expect(r.ok).toBe(false);
  });

  it("YAML anchors work; an alias bomb is refused", () => {
    const text = stringify(doc()).replace("tunnel:\n  vni: 100", "tunnel: &t\n  vni: 100") ;
    expect(ok(parseConfigText(text)).tunnel.vni).toBe(100);
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x]", "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]", "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]", "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]"].join("\n");
    const r = parseConfigText(bomb);
    expect(r.ok).toBe(false);
  });
});

describe("bad input gives errors, never exceptions", () => {
  it.each([
    ["empty file", ""],
    ["only a comment", "# nothing here\n"],
    ["null", "null"],
    ["a number", "42"],
    ["a string", "hello"],
    ["a list", "- a\n- b\n"],
    ["binary", "\u0000\u0001\u0002\u00ff"],
    ["truncated JSON", '{"node": '],
    ["unclosed flow", "a: ["],
    ["undefined alias", "a: *x"],
    ["tabs", "node:\n\tname: x\n"],
    ["wrong types everywhere", "node: 5\ntunnel: []\npeers: x\nroutes: {}\nadmin: 1\nlog: true\n"],
    ["peers of nulls", "node: {}\npeers: [null, 5, {}]\n"],
    ["NaN", "node: {}\ntunnel: {vni: .nan, port: .inf}\n"],
  ])("%s", (_what, text) => {
    const r = parseConfigText(text, "x.yaml");
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.errors.length).toBeGreaterThan(0);
      for (const e of r.errors) expect(typeof e).toBe("string");
    }
  });

  it("missing file and directory", () => {
    expect(loadConfigFile(join(tmp, "nope.yaml"))).toEqual({ ok: false, errors: [`${join(tmp, "nope.yaml")}: cannot read config: no such file`] });
    const r = loadConfigFile(tmp);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors[0]).toMatch(/is a directory/);
  });

  it("random documents and random strings never throw (property)", () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const r = validateConfig(v);
      return r.ok === false && r.errors.length > 0;
    }), { numRuns: 300 });
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
      const r = parseConfigText(s);
      return r.ok === false && r.errors.length > 0;
    }), { numRuns: 300 });
  });

  it("random mutations of a valid document never throw (property)", () => {
    // Each path is set if its parent still exists (an earlier mutation may have replaced it).
    const paths = [
      "node.underlay.address", "node.underlay.prefixLength", "node.podCIDR", "node.overlayAddress", "node.device", "tunnel.vni",
      "tunnel.sourcePortRange", "peers.0.podCIDRs", "peers.1.vtepMac", "peers.1.underlay", "peers.0.vtepAddress", "routes", "peers", "admin.listen",
    ].map((path) => (d: any, v: unknown) => {
      const keys = path.split(".");
      const parent = keys.slice(0, -1).reduce((o, k) => (o !== null && typeof o === "object" ? o[k] : undefined), d);
      if (parent !== null && typeof parent === "object") parent[keys[keys.length - 1]] = v;
    });
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat(paths.length - 1), fc.jsonValue({ maxDepth: 2 })), { minLength: 1, maxLength: 4 }), (muts) => {
      const d = doc();
      for (const [i, v] of muts) paths[i](d, v);
      const r = validateConfig(d);
      return r.ok || r.errors.every((e) => typeof e === "string" && !e.startsWith("config could not be validated"));
    }), { numRuns: 500 });
  });
});

describe("control: logger", () => {
  it("level from the option, else $LOG_LEVEL, else info", () => {
    expect(resolveLevel("debug", {})).toBe("debug");
    expect(resolveLevel(undefined, { LOG_LEVEL: "WARN" })).toBe("warn");
    expect(resolveLevel("nonsense", { LOG_LEVEL: "also-nonsense" })).toBe("info");
  });

  it("writes JSON lines with the name and level", () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
    const log = createLogger({ level: "warn", destination: sink });
    log.info("hidden");
    log.warn({ peer: "worker3" }, "shown");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({ name: "overlayd", level: 40, peer: "worker3", msg: "shown" });
  });
});

describe("control: metrics", () => {
  // Deltas, resets, summing and gauges are covered in derive.test.ts; here the
  // snapshot values that are plain numbers, and values that are not counts.
  it("snapshot values may be numbers; non-integers and negatives are ignored", async () => {
    const m = createMetrics();
    m.updateFromCounters({ tx_vxlan_packets: 2, tx_vxlan_bytes: 200n });
    m.updateFromCounters({ tx_vxlan_packets: 1.5, tx_vxlan_bytes: -1, to_device_packets: Number.NaN });
    const text = await m.registry.metrics();
    expect(text).toContain('overlay_packets_total{direction="tx_vxlan"} 2');
    expect(text).toContain('overlay_bytes_total{direction="tx_vxlan"} 200');
    expect(text).toContain('overlay_packets_total{direction="to_device"} 0');
    expect(DIRECTIONS).toEqual(["rx_pod", "rx_vxlan", "rx_ipip", "tx_vxlan", "tx_ipip", "tx_direct", "to_device"]);
    expect(DROP_REASONS).toEqual(REASON_NAMES.slice(1));
    expect(DROP_REASONS).toEqual(expect.arrayContaining(["no_route", "ttl_exceeded", "no_fdb", "spoofed_source"]));
  });

  it("packet I/O statistics: deltas of the summed IoStats, a drop counts as a reset, unknown keys ignored", async () => {
    const m = createMetrics();
    const line = async (event: string) => (await m.registry.metrics()).split("\n").find((l) => l.startsWith(`overlay_io_events_total{event="${event}"}`));
    expect(await line("tunnel_gso_frames")).toBe('overlay_io_events_total{event="tunnel_gso_frames"} 0');
    m.setIo({ tnlGsoFrames: 5, encapWhole: 3, superframes: 10, bogus: 7 });
    m.setIo({ tnlGsoFrames: 9, encapWhole: 3, superframes: 4, gsoSends: undefined });
    expect(await line("tunnel_gso_frames")).toBe('overlay_io_events_total{event="tunnel_gso_frames"} 9');
    expect(await line("encap_superframes_whole")).toBe('overlay_io_events_total{event="encap_superframes_whole"} 3');
    expect(await line("superframes")).toBe('overlay_io_events_total{event="superframes"} 14');
    expect(await line("gso_sends")).toBe('overlay_io_events_total{event="gso_sends"} 0');
    expect((await m.registry.metrics()).includes("bogus")).toBe(false);
  });
});
