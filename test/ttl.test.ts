// One router hop per node, end to end (assembly/pipeline/forward.ts, "TTL"):
// traceroute from pod1 to pod3 (worker1 -> worker3, other subnet) shows the
// same hops through two overlayd as through the kernel's own vxlan on the
// same namespaces (Hand CNI-7: vxlan100 with static neigh + fdb on both
// workers), over VXLAN (tun and tap) and IPIP; a ping with just enough TTL
// gets through, one less gets "time to live exceeded" from worker3. And a
// pod masqueraded to the outside host (Hand CNI-3) sees the hops it sees
// through the kernel's own masquerade (nftables) on the same namespaces.
// Needs root and Debian's traceroute; CI runs it (and fails without them).
import { spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, OUTSIDE, podIp, vtepMac, WORKERS, type Encap } from "../src/demo/cluster.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
const haveTraceroute = spawnSync("traceroute", ["--version"], { stdio: "ignore" }).status === 0;
const ci = process.env.CI === "true";

/** Hop addresses of `traceroute -n -q 1 -w 1` ("*" for no answer). One probe
 *  in flight at a time (-N 1), so no node's ICMP rate limit hides a hop. */
function traceroute(cluster: Cluster, fromPod: number, to: string): string[] {
  const out = cluster.exec(`pod${fromPod}`, ["traceroute", "-n", "-q", "1", "-w", "1", "-N", "1", "-m", "8", to]);
  return out
    .split("\n")
    .slice(1)
    .map((l) => /^\s*\d+\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined);
}

/** One ping with IP TTL `ttl`: ok, and the output (a "Time to live exceeded" names who answered). */
function pingTtl(cluster: Cluster, fromPod: number, to: string, ttl: number): { ok: boolean; out: string } {
  const r = spawnSync("ip", ["netns", "exec", cluster.ns(`pod${fromPod}`), "ping", "-n", "-c", "1", "-W", "2", "-t", String(ttl), to], { encoding: "utf8" });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

describe.skipIf(!isRoot || (!haveTraceroute && !ci))("one hop per node: traceroute pod1 -> pod3 like the kernel's vxlan", () => {
  const cluster = new Cluster();
  const underlay = (n: number) => WORKERS.find((w) => w.n === n)!.underlay;
  const hops = new Map<string, string[]>();
  let daemons: ChildProcess[] = [];

  /** The kernel's vxlan on worker `me` towards worker `peer` (no overlayd). */
  function kernelVtep(me: number, peer: number): void {
    const x = (args: string[]) => cluster.exec(`w${me}`, args);
    x(["ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "dstport", "4789", "local", underlay(me), "dev", "eth0", "nolearning"]);
    x(["ip", "addr", "add", `198.19.${me}.0/32`, "dev", "vxlan100"]);
    x(["ip", "link", "set", "dev", "vxlan100", "address", vtepMac(me)]);
    x(["ip", "link", "set", "dev", "vxlan100", "up"]);
    x(["ip", "route", "add", `198.19.${peer}.0/24`, "via", `198.19.${peer}.0`, "dev", "vxlan100", "onlink"]);
    x(["ip", "neigh", "add", `198.19.${peer}.0`, "dev", "vxlan100", "lladdr", vtepMac(peer)]);
    x(["bridge", "fdb", "add", vtepMac(peer), "dev", "vxlan100", "dst", underlay(peer)]);
  }

  async function startOurs(encap: Encap, mode: "tun" | "tap"): Promise<void> {
    for (const n of [1, 3]) {
      const text = cluster.config(n, (p) => (p === 2 ? "auto" : encap)).replace("mode: tun", `mode: ${mode}`);
      daemons.push(await cluster.startDaemon(n, cluster.writeConfig(n, text), CLI));
    }
  }

  async function stopOurs(): Promise<void> {
    for (const d of daemons) expect(await cluster.stopDaemon(d)).toBe(0);
    daemons = [];
  }

  beforeAll(() => {
    cluster.build();
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("the kernel's vxlan on worker1 and worker3: the reference hops; TTL 3 is just enough", () => {
    kernelVtep(1, 3);
    kernelVtep(3, 1);
    try {
      expect(cluster.ping(1, podIp(3), 1).ok).toBe(true);
      const h = traceroute(cluster, 1, podIp(3));
      console.log(`kernel vxlan: ${h.join(" ")}`);
      // worker1 (its pod gateway), worker3 (its VTEP address), pod3.
      expect(h).toEqual(["198.19.1.1", "198.19.3.0", podIp(3)]);
      hops.set("kernel", h);
      expect(pingTtl(cluster, 1, podIp(3), 3).ok).toBe(true);
      const short = pingTtl(cluster, 1, podIp(3), 2);
      expect(short.ok).toBe(false);
      expect(short.out).toMatch(/From 198\.19\.3\.0 .*Time to live exceeded/);
    } finally {
      for (const n of [1, 3]) cluster.exec(`w${n}`, ["ip", "link", "del", "vxlan100"]);
    }
  }, 60_000);

  for (const [name, encap, mode] of [
    ["VXLAN", "vxlan", "tun"],
    ["IPIP", "ipip", "tun"],
    ["VXLAN, tap mode", "vxlan", "tap"],
  ] as const) {
    it(`two overlayd over ${name}: the same hops; TTL 3 is just enough, TTL 2 is answered by worker3`, async () => {
      expect(hops.get("kernel"), "the kernel's reference run").toBeDefined();
      await startOurs(encap, mode);
      try {
        expect(cluster.ping(1, podIp(3), 1).ok).toBe(true);
        const h = traceroute(cluster, 1, podIp(3));
        console.log(`overlayd ${name}: ${h.join(" ")}`);
        expect(h).toEqual(hops.get("kernel"));
        const enough = pingTtl(cluster, 1, podIp(3), 3);
        expect(enough.ok, enough.out).toBe(true);
        const short = pingTtl(cluster, 1, podIp(3), 2);
        expect(short.ok).toBe(false);
        expect(short.out).toMatch(/From 198\.19\.3\.0 .*Time to live exceeded/);
      } finally {
        await stopOurs();
      }
    }, 90_000);
  }
});

describe.skipIf(!isRoot || (!haveTraceroute && !ci))("one hop per node: traceroute pod1 -> outside, masqueraded, like the kernel's masquerade", () => {
  const cluster = new Cluster();
  beforeAll(() => {
    cluster.build();
    cluster.addOutside();
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("through overlayd's NAT and through nftables masquerade: worker1, the leaf, the outside host", async () => {
    // Only worker1 matters here: its pod leaves the cluster. Loose
    // reverse-path filtering on it: the leaf's "time exceeded" about a
    // masqueraded packet comes from worker1's own underlay subnet, and once
    // the data path has translated it and hands it to the kernel on wo0, a
    // strict check (the route back to 198.18.0.1 is eth0) drops it: hop 2
    // shows as "*". A known limitation of the NAT setup (natsetup.ts), not of
    // the TTL; the kernel's masquerade de-NATs it on eth0 and does not meet it.
    cluster.exec("w1", ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
    const d = await cluster.startDaemon(1, cluster.writeConfig(1, cluster.config(1, () => "auto", { nat: { masquerade: true } })), CLI);
    let ours: string[];
    try {
      ours = traceroute(cluster, 1, OUTSIDE.address);
      console.log(`overlayd masquerade: ${ours.join(" ")}`);
      expect(pingTtl(cluster, 1, OUTSIDE.address, 3).ok).toBe(true);
      const short = pingTtl(cluster, 1, OUTSIDE.address, 2);
      expect(short.ok).toBe(false);
      expect(short.out).toMatch(/From 198\.18\.0\.1 .*Time to live exceeded/);
    } finally {
      expect(await cluster.stopDaemon(d)).toBe(0);
    }
    const x = (args: string[]) => cluster.exec("w1", args);
    x(["nft", "add", "table", "ip", "hlmasq"]);
    x(["nft", "add", "chain", "ip", "hlmasq", "post", "{ type nat hook postrouting priority 100 ; }"]);
    x(["nft", "add", "rule", "ip", "hlmasq", "post", "ip", "saddr", "198.19.1.0/24", "oifname", "eth0", "masquerade"]);
    try {
      const kernel = traceroute(cluster, 1, OUTSIDE.address);
      console.log(`kernel masquerade: ${kernel.join(" ")}`);
      expect(kernel).toEqual(["198.19.1.1", "198.18.0.1", OUTSIDE.address]);
      expect(ours).toEqual(kernel);
    } finally {
      x(["nft", "delete", "table", "ip", "hlmasq"]);
    }
  }, 90_000);
});
