// MTU and PMTU end to end (issue 13 §4): the seed cluster on an underlay of
// MTU 1400 with the default config (no tunnel.underlayMtu, no device MTU).
// Needs root; CI runs it as root.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, podIp, waitFor } from "../src/demo/cluster.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
if (process.env.CI === "true" && !isRoot) throw new Error("test/mtu-e2e.test.ts needs root in CI");

// Echo requests of every size in [lo, hi] (ICMP payload bytes), DF set, from
// a raw socket; prints the sizes that got no echo reply within the timeout.
const PING_SWEEP = `
import socket, struct, sys, time, select
dst, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: DF set
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: every reply fits
def csum(b):
    if len(b) % 2: b += b"\\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); t += t >> 16
    return ~t & 0xffff
ident = 0x4d54; want = set(range(lo, hi + 1)); got = set()
for size in range(lo, hi + 1):
    body = bytes((size + i) & 0xff for i in range(size))
    h = struct.pack("!BBHHH", 8, 0, 0, ident, size) + body
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(h), ident, size) + body, (dst, 0))
    if size % 50 == 0: time.sleep(0.01)
end = time.time() + 3
while time.time() < end and got != want:
    r, _, _ = select.select([s], [], [], 0.2)
    if not r: continue
    p = s.recv(65535); ihl = (p[0] & 15) * 4; t, _, _, i, seq = struct.unpack("!BBHHH", p[ihl:ihl + 8])
    if t == 0 and i == ident and len(p) - ihl - 8 == seq: got.add(seq)
print(" ".join(str(x) for x in sorted(want - got)))
`;

describe.skipIf(!isRoot)("MTU from the underlay link (1400)", () => {
  const cluster = new Cluster();
  // worker1 <-> worker3 IPIP, worker2 <-> worker3 VXLAN, as test/e2e.test.ts.
  const encap = (me: number, peer: number) => ((me === 1 && peer === 3) || (me === 3 && peer === 1) ? "ipip" : "auto");
  const status = (n: number) => JSON.parse(cluster.exec(`w${n}`, [process.execPath, CLI, "show", "status", "--json"]));
  const linkMtu = (ns: string, dev: string) => Number(/ mtu (\d+)/.exec(cluster.exec(ns, ["ip", "-o", "link", "show", dev]))![1]);

  beforeAll(async () => {
    cluster.build({ underlayMtu: 1400 });
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("a configured tunnel.underlayMtu above the link is refused at start with a clear message", () => {
    const file = cluster.writeConfig(1, cluster.config(1, (p) => encap(1, p), { tunnel: { vni: 100, underlayMtu: 1500 } }));
    let out = "";
    let code = 0;
    try {
      execFileSync("ip", ["netns", "exec", cluster.ns("w1"), process.execPath, CLI, "run", "--config", file], { encoding: "utf8", stdio: "pipe", timeout: 20_000 });
    } catch (e) {
      const x = e as { status: number; stdout: string; stderr: string };
      code = x.status;
      out = `${x.stdout}${x.stderr}`;
    }
    expect(code).not.toBe(0);
    expect(out).toMatch(/tunnel\.underlayMtu 1500 is above the MTU of the underlay interface eth0 \(1400\)/);
    // Refused before anything was set up.
    expect(cluster.exec("w1", ["ip", "-o", "link"])).not.toMatch(/wo0/);
  }, 30_000);

  it("starts with the default config: device MTU 1350, tunnel MTU 1400", async () => {
    for (const n of [1, 2, 3]) {
      const file = cluster.writeConfig(n, cluster.config(n, (p) => encap(n, p)));
      await cluster.startDaemon(n, file, CLI);
    }
    // Room for VXLAN (50) where a peer is reached by VXLAN; worker1's only
    // tunnelled peer is IPIP (20): 1380.
    for (const [n, dev] of [[1, 1380], [2, 1350], [3, 1350]]) {
      expect(linkMtu(`w${n}`, "wo0")).toBe(dev);
      expect(status(n).mtu).toMatchObject({ device: "eth0", linkMtu: 1400, tunnelMtu: 1400, deviceMtu: dev, source: "link" });
    }
  }, 60_000);

  it("pings of every size up to the device MTU pass pod to pod over VXLAN (DF set)", () => {
    // ICMP payload + 28 bytes of headers: 1322 gives a 1350-byte packet.
    const missing = cluster.exec("pod2", ["python3", "-c", PING_SWEEP, podIp(3), "0", "1322"]).trim();
    expect(missing, `sizes without a reply: ${missing}`).toBe("");
  }, 60_000);

  it("larger DF pings get fragmentation needed with MTU 1350, from the kernel and from the data path", () => {
    const tooBig = () => {
      cluster.exec("pod2", ["ip", "route", "flush", "cache"]); // forget a PMTU learnt before
      try {
        return cluster.exec("pod2", ["sh", "-c", `ping -c 1 -W 2 -M do -s 1323 ${podIp(3)} 2>&1`]);
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? e);
      }
    };
    // The device MTU stops it at worker2's kernel (local error or an ICMP from the node).
    expect(tooBig()).toMatch(/mtu = 1350|mtu=1350/);
    // With the device opened up, the data path itself answers with the tunnel MTU's inner size.
    cluster.exec("w2", ["ip", "link", "set", "wo0", "mtu", "1400"]);
    try {
      expect(tooBig()).toMatch(/From 198\.19\.2\.0 .*Frag needed and DF set \(mtu = 1350\)/);
    } finally {
      cluster.exec("w2", ["ip", "link", "set", "wo0", "mtu", "1350"]);
    }
  });

  it("outer DF is the inner packet's, with UDP offloads (VXLAN, worker2) and through the raw socket (IPIP, worker1)", async () => {
    const ping = (pod: number, df: boolean, size: number) => {
      cluster.exec(`pod${pod}`, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", df ? "do" : "dont", "-s", String(size), podIp(3)]);
    };
    const file = await cluster.capture("w3", "eth0", "", () => {
      for (const pod of [1, 2]) {
        ping(pod, true, 1000);
        ping(pod, false, 1001);
      }
    });
    // Echo requests only: per packet the outer and inner DF flags and lengths.
    const out = execFileSync("tshark", ["-r", file, "-Y", "icmp.type == 8", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
      "-e", "ip.proto", "-e", "ip.flags.df", "-e", "ip.len"], { encoding: "utf8" }).trim().split("\n");
    const rows = out.map((l) => l.split("|")).map(([proto, df, len]) => ({ outer: proto.split(",")[0], df: df.split(","), innerLen: Number(len.split(",")[1]) }));
    for (const outer of ["17", "4"]) {
      const mine = rows.filter((r) => r.outer === outer);
      expect(mine.filter((r) => r.innerLen === 1028).length, `outer proto ${outer} DF`).toBe(2);
      expect(mine.filter((r) => r.innerLen === 1029).length, `outer proto ${outer} no DF`).toBe(2);
      for (const r of mine) {
        expect(r.df[1]).toBe(r.innerLen === 1028 ? "1" : "0"); // inner, as the pod sent it
        expect(r.df[0], `outer DF of a ${r.innerLen}-byte inner packet over proto ${outer}`).toBe(r.df[1]);
      }
    }
  }, 30_000);

  it("a router with a smaller MTU on the path (the leaf towards worker3, 1300) sends frag-needed; TCP through it completes byte for byte", async () => {
    const stats = (n: number) => JSON.parse(cluster.exec(`w${n}`, [process.execPath, CLI, "show", "stats", "--json"])).counters;
    // The leaf's route towards worker3's subnet gets MTU 1300 (on the link
    // itself the veth would also drop bigger packets arriving from worker3).
    const leafRoute = ["198.18.1.0/24", "dev", "pB", "proto", "kernel", "scope", "link", "src", "198.18.1.1"];
    cluster.exec("leaf", ["ip", "route", "replace", ...leafRoute, "mtu", "1300"]);
    try {
      // pod1 -> pod3 over IPIP (the raw socket), pod2 -> pod3 over VXLAN (UDP GSO).
      for (const from of [1, 2]) {
        const r = await cluster.tcpTransfer(from, 3, 4 << 20, 0, 5100 + from);
        expect(r.received, `pod${from} -> pod3`).toBe(4 << 20);
        expect(r.receivedSha).toBe(r.sentSha);
      }
      expect(BigInt(stats(1).pmtu_lowered)).toBeGreaterThan(0n);
      expect(BigInt(stats(2).pmtu_lowered)).toBeGreaterThan(0n);
      const paths = status(1).mtu.paths as { peer: string; pathMtu: number; router: string }[];
      expect(paths).toContainEqual(expect.objectContaining({ peer: "worker3", pathMtu: 1300, router: "198.18.0.1" }));
      // Inner packets too big for the path get frag-needed with 1300 - 20 (IPIP) from the data path.
      cluster.exec("pod1", ["ip", "route", "flush", "cache"]);
      const out = cluster.exec("pod1", ["sh", "-c", `ping -c 1 -W 2 -M do -s 1300 ${podIp(3)} 2>&1 || true`]);
      expect(out).toMatch(/Frag needed and DF set \(mtu = 1280\)/);
      // Without DF the same sizes still get through (the leaf fragments the outer packet).
      for (const from of [1, 2]) {
        const nodf = cluster.exec(`pod${from}`, ["sh", "-c", `ping -c 2 -i 0.2 -W 2 -M dont -s 1300 ${podIp(3)} 2>&1 || true`]);
        expect(nodf, `pod${from} -> pod3 without DF`).toMatch(/2 received/);
      }
    } finally {
      cluster.exec("leaf", ["ip", "route", "replace", ...leafRoute]);
    }
  }, 120_000);

  it("follows the link: lowering worker2's underlay MTU to 1300 makes its device MTU 1250, and back", async () => {
    const set = (mtu: number) => {
      cluster.exec("w2", ["ip", "link", "set", "eth0", "mtu", String(mtu)]);
    };
    set(1300);
    try {
      await waitFor(() => linkMtu("w2", "wo0") === 1250, 10_000, "device MTU did not follow the link to 1250");
      expect(status(2).mtu).toMatchObject({ linkMtu: 1300, tunnelMtu: 1300, deviceMtu: 1250 });
    } finally {
      set(1400);
    }
    await waitFor(() => linkMtu("w2", "wo0") === 1350, 10_000, "device MTU did not follow the link back to 1350");
    expect(cluster.ping(2, podIp(3), 1).ok).toBe(true);
  }, 30_000);
});
