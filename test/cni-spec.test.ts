// The CNI plugin against the spec (1.1.0, accepting 0.4.0 and 1.0.0
// configs), runtime-free: each verb driven with CNI_* variables and a config
// on stdin as a runtime drives it, on network namespaces made here (a "node"
// holding a fake overlay address and the node.json overlayd would write,
// and one namespace per pod). Needs root; CI runs it as root.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfigFile } from "../src/config/load.js";
import { nodeStateOf, readNodeState, removeNodeState, writeNodeState } from "../src/daemon/nodestate.js";
import { runCni } from "./helpers/cni.js";

const isRoot = process.getuid?.() === 0;
const P = `wo-cni-${Math.random().toString(36).slice(2, 6)}`;
const NODE = `${P}-node`;
const sh = (...a: string[]) => execFileSync(a[0], a.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const inNode = (...a: string[]) => sh("ip", "netns", "exec", NODE, ...a);

describe("node.json (src/daemon/nodestate.ts)", () => {
  it("carries the daemon's merged facts and round-trips through the plugin's reader", () => {
    const loaded = loadConfigFile(new URL("../examples/worker2.yaml", import.meta.url).pathname);
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    const dir = mkdtempSync(join(tmpdir(), "wo-nodestate-"));
    try {
      const file = writeNodeState(dir, loaded.config, 1450);
      const s = readNodeState(file);
      expect(s).toMatchObject({ node: "worker2", podCIDR: "198.19.2.0/24", overlayAddress: "198.19.2.0", device: "wo0", mtu: 1450, underlay: "198.18.0.12" });
      expect(s.reserved).toContain("198.19.2.0");
      expect(s.reserved).toContain(loaded.config.nat.snatAddress);
      expect(nodeStateOf(loaded.config, 1450).pid).toBe(process.pid);
      removeNodeState(dir);
      expect(existsSync(file)).toBe(false);
      // Another overlayd's file (say one this process failed to take the lock from) stays.
      writeFileSync(file, JSON.stringify({ ...s, pid: process.pid + 1 }));
      removeNodeState(dir);
      expect(existsSync(file)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!isRoot && process.env.CI !== "true")("CNI plugin, spec conformance (runtime-free)", () => {
  const dir = mkdtempSync(join(tmpdir(), `${P}-`));
  const nodeState = join(dir, "state", "node.json");
  const dataDir = join(dir, "ipam");
  const pods: string[] = [];
  const base = { cniVersion: "1.0.0", name: "wonet", type: "wasm-overlay", nodeState, ipam: { dataDir } };
  const pod = (name: string) => {
    const ns = `${P}-${name}`;
    sh("ip", "netns", "add", ns);
    pods.push(ns);
    return `/run/netns/${ns}`;
  };
  const env = (id: string, netns?: string, ifname = "eth0") => ({ CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: ifname });
  const allocated = () => readdirSync(join(dataDir, "addresses")).sort();

  beforeAll(() => {
    sh("ip", "netns", "add", NODE);
    inNode("ip", "link", "set", "lo", "up");
    inNode("ip", "addr", "add", "198.19.1.0/32", "dev", "lo"); // the node's overlay address (on wo0 in overlayd)
    mkdirSync(join(dir, "state"), { recursive: true });
    writeFileSync(nodeState, JSON.stringify({ version: 1, node: "w1", podCIDR: "198.19.1.0/24", overlayAddress: "198.19.1.0", device: "wo0", mtu: 1400, underlay: "198.18.0.11", reserved: ["198.19.1.0", "198.19.1.254"], pid: process.pid }));
  });
  afterAll(() => {
    for (const ns of [...pods, NODE]) {
      try {
        sh("ip", "netns", "del", ns);
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("VERSION lists 0.4.0, 1.0.0 and 1.1.0", async () => {
    const r = await runCni("VERSION", {}, "");
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: "1.1.0", supportedVersions: ["0.4.0", "1.0.0", "1.1.0"] });
  });

  it("ADD (routed) gives the pod a /32, a default route via the node's overlay address, the node's MTU; the node a /32 route", async () => {
    const ns = pod("a");
    const r = await runCni("ADD", env("ctr-a", ns), base, NODE);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const res = r.json!;
    expect(res.cniVersion).toBe("1.0.0");
    const ip = res.ips[0];
    expect(ip.address).toMatch(/^198\.19\.1\.\d+\/32$/);
    expect(ip.gateway).toBe("198.19.1.0");
    expect(ip.version).toBeUndefined();
    expect(res.interfaces[ip.interface]).toMatchObject({ name: "eth0", sandbox: ns });
    expect(res.interfaces[ip.interface].mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(res.routes).toEqual([{ dst: "0.0.0.0/0", gw: "198.19.1.0" }]);
    const addr = ip.address.split("/")[0];
    const podNs = ns.split("/").pop()!;
    expect(sh("ip", "-n", podNs, "-o", "addr", "show", "eth0")).toContain(`inet ${addr}/32`);
    expect(sh("ip", "-n", podNs, "link", "show", "eth0")).toContain("mtu 1400");
    expect(sh("ip", "-n", podNs, "route", "show", "default")).toContain("via 198.19.1.0 dev eth0");
    const hostIf = res.interfaces.find((i: { sandbox?: string }) => !i.sandbox).name;
    expect(inNode("ip", "route", "show", `${addr}/32`)).toContain(`dev ${hostIf}`);
    // The gateway answers: the pod's link works both ways.
    expect(sh("ip", "netns", "exec", podNs, "ping", "-c", "1", "-W", "2", "198.19.1.0")).toContain("1 received");
    // CHECK with the ADD's result passes.
    const c = await runCni("CHECK", env("ctr-a", ns), { ...base, prevResult: res }, NODE);
    expect(c.code, c.stdout).toBe(0);
    expect(c.stdout).toBe("");
    // CHECK notices what changed since.
    sh("ip", "-n", podNs, "route", "del", "default");
    const c2 = await runCni("CHECK", env("ctr-a", ns), { ...base, prevResult: res }, NODE);
    expect(c2.code).not.toBe(0);
    expect(c2.json).toMatchObject({ cniVersion: "1.0.0", code: 102 });
    expect(c2.json!.msg).toContain("default route");
    // CHECK without prevResult is an invalid config.
    expect((await runCni("CHECK", env("ctr-a", ns), base, NODE)).json).toMatchObject({ code: 7 });
  });

  it("ADD of an existing container + ifname is an error object, and leaves the first attachment alone", async () => {
    const ns = pod("dup");
    const first = await runCni("ADD", env("ctr-dup", ns), base, NODE);
    expect(first.code).toBe(0);
    const again = await runCni("ADD", env("ctr-dup", ns), base, NODE);
    expect(again.code).not.toBe(0);
    expect(again.json).toMatchObject({ cniVersion: "1.0.0", code: 100 });
    expect(again.json!.msg).toContain("already has interface eth0");
    expect(allocated()).toContain(first.json!.ips[0].address.split("/")[0]);
  });

  it("the result follows cniVersion: 0.4.0 has ips[].version, 1.1.0 interface mtu", async () => {
    const r04 = await runCni("ADD", env("ctr-v04", pod("v04")), { ...base, cniVersion: "0.4.0" }, NODE);
    expect(r04.code, r04.stdout).toBe(0);
    expect(r04.json!.cniVersion).toBe("0.4.0");
    expect(r04.json!.ips[0].version).toBe("4");
    const r11 = await runCni("ADD", env("ctr-v11", pod("v11")), { ...base, cniVersion: "1.1.0" }, NODE);
    expect(r11.code, r11.stdout).toBe(0);
    expect(r11.json!.interfaces.every((i: { mtu?: number }) => i.mtu === 1400)).toBe(true);
  });

  it("errors are CNI error objects on stdout with a non-zero exit, never a stack trace", async () => {
    const ns = pod("err");
    const cases: Array<[string, Record<string, string | undefined>, unknown, number]> = [
      ["ADD", { CNI_CONTAINERID: "x", CNI_IFNAME: "eth0" }, base, 4], // no CNI_NETNS
      ["ADD", { CNI_NETNS: ns, CNI_IFNAME: "eth0" }, base, 4], // no CNI_CONTAINERID
      ["BOGUS", env("x", ns), base, 4],
      ["ADD", env("x", ns), "{not json", 6],
      ["ADD", env("x", ns), "[1,2]", 6],
      ["ADD", env("x", ns), { ...base, cniVersion: "9.9.9" }, 1],
      ["ADD", env("x", ns), { ...base, cniVersion: "0.2.0" }, 1],
      ["ADD", env("x", ns), { ...base, mode: "tunnel" }, 7],
      ["ADD", env("x", ns), { ...base, name: "-bad" }, 7],
      ["ADD", env("x", ns), { ...base, ipam: { dataDir: "relative/dir" } }, 7],
      ["ADD", env("x", "/run/netns/none-such"), base, 3],
      ["ADD", env("x", ns), { ...base, nodeState: join(dir, "missing.json") }, 11], // overlayd not up yet
      ["ADD", env("x", ns), { ...base, ipam: { type: "no-such-ipam" } }, 7],
      ["STATUS", {}, { ...base, nodeState: join(dir, "missing.json") }, 50],
      ["GC", {}, base, 7], // no valid-attachments
    ];
    for (const [verb, e, conf, code] of cases) {
      const r = await runCni(verb, e, conf, NODE);
      expect(r.code, `${verb} ${JSON.stringify(e)} ${JSON.stringify(conf)}`).not.toBe(0);
      expect(r.json, r.stdout + r.stderr).toMatchObject({ code });
      expect(typeof r.json!.msg).toBe("string");
      expect(typeof r.json!.cniVersion).toBe("string");
      expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    // Nothing was left behind by the failed ADDs.
    expect(sh("ip", "-n", ns.split("/").pop()!, "-o", "link").trim().split("\n")).toHaveLength(1);
  });

  it("STATUS is ready while the node facts are there and their overlayd lives", async () => {
    expect((await runCni("STATUS", {}, base, NODE)).code).toBe(0);
    const stale = join(dir, "stale.json");
    writeFileSync(stale, JSON.stringify({ version: 1, node: "w1", podCIDR: "198.19.1.0/24", overlayAddress: "198.19.1.0", device: "wo0", mtu: 1400, underlay: "198.18.0.11", pid: 2 ** 22 + 7 }));
    expect((await runCni("STATUS", {}, { ...base, nodeState: stale }, NODE)).json).toMatchObject({ code: 50 });
  });

  it("an exhausted pool is a code 11 error; DEL frees an address for the next ADD", async () => {
    // 198.19.1.4/30: .4 network, .7 broadcast -> two addresses.
    const conf = { ...base, name: "tiny", ipam: { dataDir: join(dir, "ipam-tiny"), subnet: "198.19.1.4/30" } };
    const got: string[] = [];
    for (const id of ["t1", "t2"]) {
      const r = await runCni("ADD", env(id, pod(id)), conf, NODE);
      expect(r.code, r.stdout).toBe(0);
      got.push(r.json!.ips[0].address);
    }
    expect(got.sort()).toEqual(["198.19.1.5/32", "198.19.1.6/32"]);
    const ns3 = pod("t3");
    const full = await runCni("ADD", env("t3", ns3), conf, NODE);
    expect(full.code).not.toBe(0);
    expect(full.json).toMatchObject({ code: 11 });
    expect(full.json!.msg).toContain("no free address in 198.19.1.4/30");
    expect((await runCni("DEL", env("t1", `/run/netns/${P}-t1`), conf, NODE)).code).toBe(0);
    const r3 = await runCni("ADD", env("t3", ns3), conf, NODE);
    expect(r3.code, r3.stdout).toBe(0);
    expect(r3.json!.ips[0].address).toBe(got[0]);
  });

  it("DEL is idempotent: twice, for an unknown container, and after the netns is gone", async () => {
    const ns = pod("del");
    const r = await runCni("ADD", env("ctr-del", ns), base, NODE);
    const addr = r.json!.ips[0].address.split("/")[0];
    const hostIf = r.json!.interfaces.find((i: { sandbox?: string }) => !i.sandbox).name;
    expect(allocated()).toContain(addr);
    for (let i = 0; i < 2; i++) {
      const d = await runCni("DEL", env("ctr-del", ns), base, NODE);
      expect(d.code, d.stdout).toBe(0);
      expect(d.stdout).toBe("");
    }
    expect(allocated()).not.toContain(addr);
    expect(() => inNode("ip", "link", "show", hostIf)).toThrow();
    expect((await runCni("DEL", env("never-added", ns), base, NODE)).code).toBe(0);
    expect((await runCni("DEL", { CNI_CONTAINERID: "never-added", CNI_IFNAME: "eth0" }, base, NODE)).code).toBe(0);
    // The netns goes first (the runtime destroyed the sandbox), DEL comes after.
    const ns2 = pod("gone");
    const r2 = await runCni("ADD", env("ctr-gone", ns2), base, NODE);
    const addr2 = r2.json!.ips[0].address.split("/")[0];
    sh("ip", "netns", "del", ns2.split("/").pop()!);
    const d2 = await runCni("DEL", env("ctr-gone", ns2), base, NODE);
    expect(d2.code, d2.stdout).toBe(0);
    expect(allocated()).not.toContain(addr2);
    expect(inNode("ip", "route").includes(addr2)).toBe(false);
  });

  it("a requested address (the `ips` capability) is given exactly, and refused when taken", async () => {
    const r = await runCni("ADD", env("ctr-ip", pod("ip")), { ...base, runtimeConfig: { ips: ["198.19.1.77/24"] } }, NODE);
    expect(r.code, r.stdout).toBe(0);
    expect(r.json!.ips[0].address).toBe("198.19.1.77/32");
    const again = await runCni("ADD", env("ctr-ip2", pod("ip2")), { ...base, runtimeConfig: { ips: ["198.19.1.77"] } }, NODE);
    expect(again.json).toMatchObject({ code: 7 });
    expect(again.json!.msg).toContain("already allocated");
    expect((await runCni("ADD", env("ctr-ip3", pod("ip3")), { ...base, runtimeConfig: { ips: ["198.19.1.254"] } }, NODE)).json!.msg).toContain("reserved");
  });

  it("GC releases every attachment not in cni.dev/valid-attachments, and only those", async () => {
    // Its own data dir, plus a second network sharing it that GC of gcnet must leave alone.
    const conf = { ...base, name: "gcnet", ipam: { dataDir: join(dir, "ipam-gc") } };
    const other = await runCni("ADD", env("g1", pod("gother")), { ...conf, name: "othernet" }, NODE);
    expect(other.code, other.stdout).toBe(0);
    const res: Record<string, any> = {};
    for (const id of ["g1", "g2", "g3"]) res[id] = (await runCni("ADD", env(id, pod(id)), conf, NODE)).json;
    const gcDir = join(dir, "ipam-gc");
    const addrs = (_: string) => readdirSync(join(gcDir, "addresses")).sort();
    expect(addrs("gcnet")).toHaveLength(4); // three of gcnet, one of othernet
    const g = await runCni("GC", {}, { ...conf, cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: "g2", ifname: "eth0" }] }, NODE);
    expect(g.code, g.stdout).toBe(0);
    expect(addrs("gcnet")).toEqual([res.g2.ips[0].address.split("/")[0], other.json!.ips[0].address.split("/")[0]].sort());
    for (const id of ["g1", "g3"]) expect(() => inNode("ip", "link", "show", res[id].interfaces[0].name)).toThrow();
    inNode("ip", "link", "show", res.g2.interfaces[0].name);
  });

  it("20 concurrent ADDs get 20 distinct addresses", async () => {
    const conf = { ...base, name: "burst" };
    const ids = Array.from({ length: 20 }, (_, i) => `b${i}`);
    const nss = ids.map((id) => pod(id));
    const rs = await Promise.all(ids.map((id, i) => runCni("ADD", env(id, nss[i]), conf, NODE)));
    for (const r of rs) expect(r.code, r.stdout + r.stderr).toBe(0);
    const got = new Set(rs.map((r) => r.json!.ips[0].address));
    expect(got.size).toBe(20);
    expect(readdirSync(join(dataDir, "attachments", "burst"))).toHaveLength(20);
  }, 60_000);

  it("bridge mode: pods on one bridge holding the gateway, reaching each other", async () => {
    const conf = { ...base, name: "brnet", mode: "bridge", bridge: `wob${P.slice(-4)}` };
    const a = await runCni("ADD", env("br-a", pod("bra")), conf, NODE);
    const b = await runCni("ADD", env("br-b", pod("brb")), conf, NODE);
    expect(a.code, a.stdout).toBe(0);
    expect(b.code, b.stdout).toBe(0);
    expect(a.json!.ips[0].address).toMatch(/^198\.19\.1\.\d+\/24$/);
    expect(a.json!.ips[0].gateway).toBe("198.19.1.1");
    expect(a.json!.interfaces[0].name).toBe(conf.bridge);
    expect(inNode("ip", "-o", "addr", "show", conf.bridge)).toContain("inet 198.19.1.1/24");
    expect(inNode("ip", "-o", "link", "show", a.json!.interfaces[1].name)).toContain(`master ${conf.bridge}`);
    const bAddr = b.json!.ips[0].address.split("/")[0];
    expect(sh("ip", "netns", "exec", `${P}-bra`, "ping", "-c", "1", "-W", "2", bAddr)).toContain("1 received");
    const c = await runCni("CHECK", env("br-a", `/run/netns/${P}-bra`), { ...conf, prevResult: a.json }, NODE);
    expect(c.code, c.stdout).toBe(0);
  });

  it("delegates to the reference host-local IPAM (ipam.type host-local), and DEL releases there", async () => {
    const hl = join(dir, "host-local");
    const conf = { ...base, name: "hlnet", ipam: { type: "host-local", dataDir: hl, ranges: [[{ subnet: "198.19.1.0/24", rangeStart: "198.19.1.200", rangeEnd: "198.19.1.210" }]] } };
    const ns = pod("hl");
    const r = await runCni("ADD", env("ctr-hl", ns), conf, NODE);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.json!.ips[0].address).toBe("198.19.1.200/32");
    expect(readdirSync(join(hl, "hlnet"))).toContain("198.19.1.200");
    expect((await runCni("DEL", env("ctr-hl", ns), conf, NODE)).code).toBe(0);
    expect(readdirSync(join(hl, "hlnet"))).not.toContain("198.19.1.200");
  });
});

describe.skipIf(!isRoot && process.env.CI !== "true")("CNI plugin, dual-stack (node.json carries node.ipv6)", () => {
  const dir = mkdtempSync(join(tmpdir(), `${P}-6-`));
  const NODE6 = `${P}-node6`;
  const nodeState = join(dir, "state", "node.json");
  const dataDir = join(dir, "ipam");
  const pods: string[] = [];
  const base = { cniVersion: "1.0.0", name: "wonet6", type: "wasm-overlay", nodeState, ipam: { dataDir } };
  const inNode6 = (...a: string[]) => sh("ip", "netns", "exec", NODE6, ...a);
  const pod = (name: string) => {
    const ns = `${P}-6${name}`;
    sh("ip", "netns", "add", ns);
    pods.push(ns);
    return `/run/netns/${ns}`;
  };
  const env = (id: string, netns?: string) => ({ CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: "eth0" });
  const allocated = () => readdirSync(join(dataDir, "addresses")).sort();

  beforeAll(() => {
    sh("ip", "netns", "add", NODE6);
    inNode6("ip", "link", "set", "lo", "up");
    inNode6("ip", "addr", "add", "198.19.1.0/32", "dev", "lo");
    inNode6("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
    mkdirSync(join(dir, "state"), { recursive: true });
    writeFileSync(nodeState, JSON.stringify({
      version: 1, node: "w1", podCIDR: "198.19.1.0/24", overlayAddress: "198.19.1.0", device: "wo0", mtu: 1400, underlay: "198.18.0.11",
      reserved: ["198.19.1.0", "198.19.1.254"], ipv6: { podCIDR: "2001:2:0:1::/64", overlayAddress: "2001:2:0:1::" }, pid: process.pid,
    }));
  });
  afterAll(() => {
    for (const ns of [...pods, NODE6]) {
      try {
        sh("ip", "netns", "del", ns);
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("routed: ADD gives an IPv4 /32 and an IPv6 /128 behind the host end's fe80::1; CHECK sees both; DEL frees both", async () => {
    const ns = pod("a");
    const r = await runCni("ADD", env("ctr6-a", ns), base, NODE6);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const res = r.json!;
    expect(res.ips).toHaveLength(2);
    const [v4, v6] = res.ips;
    expect(v4.address).toMatch(/^198\.19\.1\.\d+\/32$/);
    expect(v6).toMatchObject({ address: "2001:2:0:1::1/128", gateway: "fe80::1", interface: v4.interface });
    expect(res.routes).toEqual([{ dst: "0.0.0.0/0", gw: "198.19.1.0" }, { dst: "::/0", gw: "fe80::1" }]);
    const podNs = ns.split("/").pop()!;
    expect(sh("ip", "-n", podNs, "-o", "addr", "show", "eth0")).toContain("inet6 2001:2:0:1::1/128");
    expect(sh("ip", "-n", podNs, "-6", "route", "show", "default")).toContain("via fe80::1 dev eth0");
    const hostIf = res.interfaces.find((i: { sandbox?: string }) => !i.sandbox).name;
    expect(inNode6("ip", "-6", "route", "show", "2001:2:0:1::1/128")).toContain(`dev ${hostIf}`);
    expect(inNode6("ip", "-o", "addr", "show", "dev", hostIf)).toContain("inet6 fe80::1/64");
    // The node reaches the pod over IPv6 and the pod its gateway.
    expect(inNode6("ping", "-c", "1", "-W", "2", "2001:2:0:1::1")).toContain("1 received");
    expect(sh("ip", "netns", "exec", podNs, "ping", "-c", "1", "-W", "2", "fe80::1%eth0")).toContain("1 received");
    expect(allocated()).toEqual(["198.19.1.1", "2001:2:0:1::1"].sort());
    const c = await runCni("CHECK", env("ctr6-a", ns), { ...base, prevResult: res }, NODE6);
    expect(c.code, c.stdout).toBe(0);
    sh("ip", "-n", podNs, "-6", "route", "del", "default");
    const c2 = await runCni("CHECK", env("ctr6-a", ns), { ...base, prevResult: res }, NODE6);
    expect(c2.json).toMatchObject({ code: 102 });
    expect(c2.json!.msg).toContain("IPv6 default route");
    expect((await runCni("DEL", env("ctr6-a", ns), base, NODE6)).code).toBe(0);
    expect(allocated()).toEqual([]);
  });

  it("a requested IPv6 address (the `ips` capability) is given exactly; 0.4.0 says version 6; the prefix's anycast is refused", async () => {
    const ns = pod("b");
    const asked = { ...base, cniVersion: "0.4.0", runtimeConfig: { ips: ["198.19.1.77", "2001:2:0:1::77"] } };
    const r = await runCni("ADD", env("ctr6-b", ns), asked, NODE6);
    expect(r.code, r.stdout).toBe(0);
    expect(r.json!.ips.map((x: { version: string; address: string }) => [x.version, x.address])).toEqual([["4", "198.19.1.77/32"], ["6", "2001:2:0:1::77/128"]]);
    const bad = await runCni("ADD", env("ctr6-c", pod("c")), { ...base, runtimeConfig: { ips: ["2001:2:0:1::"] } }, NODE6);
    expect(bad.json).toMatchObject({ code: 7 });
    expect(bad.json!.msg).toContain("reserved");
    expect(allocated()).toEqual(["198.19.1.77", "2001:2:0:1::77"].sort());
  });

  it("bridge mode: the bridge holds the prefix's first address, pods get the prefix length and reach each other over IPv6", async () => {
    const conf = { ...base, name: "wobr6", mode: "bridge", bridge: "wobr6" };
    const a = await runCni("ADD", env("ctr6-ba", pod("ba")), conf, NODE6);
    const b = await runCni("ADD", env("ctr6-bb", pod("bb")), conf, NODE6);
    expect(a.code, a.stdout).toBe(0);
    expect(b.code, b.stdout).toBe(0);
    const a6 = a.json!.ips[1];
    expect(a6.address).toMatch(/^2001:2:0:1::[0-9a-f]+\/64$/);
    expect(a6.gateway).toBe("2001:2:0:1::1");
    expect(inNode6("ip", "-o", "addr", "show", "dev", "wobr6")).toContain("inet6 2001:2:0:1::1/64");
    const bAddr = b.json!.ips[1].address.split("/")[0];
    expect(sh("ip", "netns", "exec", `${P}-6ba`, "ping", "-c", "1", "-W", "2", bAddr)).toContain("1 received");
  });
});
