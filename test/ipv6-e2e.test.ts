// Dual-stack end to end (issue 16): the seed's three workers with IPv6 pods
// beside their IPv4 ones, real tun/tap devices and sockets, and the kernel's
// vxlan carrying IPv6 pods as an independent peer (Hand CNI-7 with IPv6
// neighbours). Addresses: 198.18.0.0/15 and 2001:2::/48 only. Needs root.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, podIp, podIp6, vtepMac } from "../src/demo/cluster.js";
import { haveTshark } from "./helpers/pcap.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;

function tshark(file: string, filter: string, fields: string[]): string[][] {
  const out = execFileSync("tshark", ["-r", file, "-Y", filter, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
    "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,", ...fields.flatMap((f) => ["-e", f])], { encoding: "utf8" });
  return out.trim() ? out.trim().split("\n").map((l) => l.split("|")) : [];
}

async function transfer6(cluster: Cluster, from: number, to: number, bytes: number, port: number) {
  const r = await cluster.tcpTransferNs(`pod${from}`, `pod${to}`, podIp6(to), podIp6(to), port, bytes);
  expect(r.receivedSha).toBe(r.sentSha);
  expect(r.received).toBe(bytes);
  expect(r.serverSawPeer.address).toBe(podIp6(from));
}

describe.skipIf(!isRoot)("dual-stack pods across three overlayd (VXLAN, IPv6 in IPv4, direct peers over VXLAN)", () => {
  const cluster = new Cluster(undefined, { ipv6: true });
  // worker1 <-> worker3 IPIP (IPv6: protocol 41); worker2 <-> worker3 VXLAN;
  // worker1 <-> worker2 direct for IPv4 (IPv6 over VXLAN: the kernel routes
  // no IPv6 through an IPv4 gateway).
  const encap = (me: number, peer: number) => ((me === 1 && peer === 3) || (me === 3 && peer === 1) ? "ipip" : "auto");
  beforeAll(async () => {
    cluster.build();
    for (const n of [1, 2, 3]) await cluster.startDaemon(n, cluster.writeConfig(n, cluster.config(n, (p) => encap(n, p))), CLI);
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("every pair pings over both families", () => {
    expect(cluster.unreachablePairs()).toEqual([]);
  });

  it("IPv6 TCP byte for byte over VXLAN, protocol 41 and the direct pair", async () => {
    await transfer6(cluster, 2, 3, 4 << 20, 5101);
    await transfer6(cluster, 3, 1, 4 << 20, 5102);
    await transfer6(cluster, 1, 2, 4 << 20, 5103);
  });

  it.skipIf(!haveTshark())("on the wire: VXLAN with inner IPv6 and protocol 41, every header valid", async () => {
    const vx = await cluster.capture("w3", "eth0", "udp port 4789", () => {
      expect(cluster.ping(2, podIp6(3), 2).ok).toBe(true);
    });
    const rows = tshark(vx, "vxlan && ipv6", ["vxlan.vni", "eth.type", "ip.checksum.status", "ipv6.src", "ipv6.dst", "icmpv6.checksum.status", "ip.flags.df"]);
    expect(rows.length).toBeGreaterThanOrEqual(4); // requests and replies
    for (const [vni, etype, csum, src, dst, icmp, df] of rows) {
      expect(vni).toBe("100");
      expect(etype.split(",").at(-1)).toBe("0x86dd");
      expect(csum).toBe("1"); // outer IPv4 header checksum good
      expect([podIp6(2), podIp6(3)]).toContain(src);
      expect([podIp6(2), podIp6(3)]).toContain(dst);
      expect(icmp).toBe("1");
      expect(df).toBe("1");
    }
    const sit = await cluster.capture("w3", "eth0", "ip proto 41", () => {
      expect(cluster.ping(1, podIp6(3), 2).ok).toBe(true);
    });
    const srows = tshark(sit, "ip.proto == 41", ["ip.checksum.status", "ipv6.src", "icmpv6.checksum.status", "ip.src"]);
    expect(srows.length).toBeGreaterThanOrEqual(4);
    for (const [csum, src, icmp, outer] of srows) {
      expect(csum).toBe("1");
      expect([podIp6(1), podIp6(3)]).toContain(src);
      expect(["198.18.0.11", "198.18.1.13"]).toContain(outer);
      expect(icmp).toBe("1");
    }
  });

  it("IPv6 larger than the tunnel MTU gets ICMPv6 packet too big (mtu 1450) from the node's IPv6 overlay address", async () => {
    // Let 1500-byte packets into the device so the data path, not the kernel, decides (as the IPv4 test in e2e.test.ts).
    cluster.exec("w2", ["ip", "link", "set", "wo0", "mtu", "1500"]);
    cluster.exec("pod2", ["ip", "-6", "route", "flush", "cache"]);
    let out = "";
    const file = await cluster.capture("w2", "wo0", "icmp6", () => {
      try {
        out = cluster.exec("pod2", ["sh", "-c", `ping -c 2 -i 0.3 -W 1 -M do -s 1452 ${podIp6(3)} 2>&1`]);
      } catch (e) {
        out = String((e as { stdout?: string }).stdout ?? "");
      }
    });
    cluster.exec("w2", ["ip", "link", "set", "wo0", "mtu", "1450"]);
    expect(out).toMatch(/From 2001:2:0:2:: .*Packet too big: mtu=1450/);
    const stats = JSON.parse(cluster.exec("w2", [process.execPath, CLI, "show", "stats", "--json"]));
    expect(BigInt(stats.counters.drop_too_big)).toBeGreaterThan(0n);
    if (!haveTshark()) return;
    // The error as written to the tun: well formed, checksum good, quoting the echo request.
    const rows = tshark(file, "icmpv6.type == 2", ["ipv6.src", "ipv6.dst", "icmpv6.mtu", "icmpv6.checksum.status", "ipv6.plen"]);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    for (const [src, dst, mtu, csum, plen] of rows) {
      expect(src.split(",")[0]).toBe("2001:2:0:2::");
      expect(dst.split(",")[0]).toBe(podIp6(2));
      expect(mtu).toBe("1450");
      expect(csum.split(",")[0]).toBe("1"); // the error's own; the quoted, truncated echo's is unverifiable (2)
      expect(40 + Number(plen.split(",")[0])).toBe(1280);
    }
  });

  it("show stats counts IPv6 through the same counters, nothing refused", () => {
    const s = JSON.parse(cluster.exec("w3", [process.execPath, CLI, "show", "stats", "--json"]));
    expect(s.io.refused ?? 0).toBe(0);
    const c = s.counters ?? s;
    expect(Number(c.drop_spoofed_source ?? 0)).toBe(0);
    expect(Number(c.rx_ipip_packets ?? 0)).toBeGreaterThan(0); // protocol 41 counts as IPIP received
    // Only IPv6 TCP ran: worker2's tun handed it TCPv6 super-frames (TUN_F_TSO6), segmented in WASM.
    const s2 = JSON.parse(cluster.exec("w2", [process.execPath, CLI, "show", "stats", "--json"]));
    expect(s2.io.superframes).toBeGreaterThan(0);
    expect(s2.io.refused ?? 0).toBe(0);
  });
});

for (const kernel of [3, 2]) describe.skipIf(!isRoot)(`IPv6 pods between overlayd and the kernel's vxlan (Hand CNI-7, IPv6 neighbours)${kernel === 2 ? ", the kernel's GSO packets unsegmented" : ""}`, () => {
  const cluster = new Cluster(undefined, { ipv6: true });
  const ours = 5 - kernel;
  const underlay: Record<number, string> = { 2: "198.18.0.12", 3: "198.18.1.13" };
  beforeAll(async () => {
    cluster.build();
    await cluster.startDaemon(ours, cluster.writeConfig(ours, cluster.config(ours, () => "vxlan")), CLI);
    const x = (args: string[]) => cluster.exec(`w${kernel}`, args);
    x(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    x(["ip", "link", "add", "vxlan100", "type", "vxlan", "id", "100", "dstport", "4789", "local", underlay[kernel], "dev", "eth0", "nolearning"]);
    x(["ip", "link", "set", "dev", "vxlan100", "address", vtepMac(kernel)]);
    x(["ip", "link", "set", "dev", "vxlan100", "up"]);
    x(["ip", "addr", "add", `198.19.${kernel}.0/32`, "dev", "vxlan100"]);
    x(["ip", "addr", "add", `2001:2:0:${kernel}::/128`, "dev", "vxlan100", "nodad"]);
    // Both families through the same neighbour MAC and FDB entry.
    x(["ip", "route", "add", `198.19.${ours}.0/24`, "via", `198.19.${ours}.0`, "dev", "vxlan100", "onlink"]);
    x(["ip", "neigh", "add", `198.19.${ours}.0`, "dev", "vxlan100", "lladdr", vtepMac(ours)]);
    x(["ip", "-6", "route", "add", `2001:2:0:${ours}::/64`, "via", `2001:2:0:${ours}::`, "dev", "vxlan100", "onlink"]);
    x(["ip", "-6", "neigh", "add", `2001:2:0:${ours}::`, "dev", "vxlan100", "lladdr", vtepMac(ours)]);
    x(["bridge", "fdb", "add", vtepMac(ours), "dev", "vxlan100", "dst", underlay[ours]]);
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("ping6 both ways", () => {
    expect(cluster.ping(ours, podIp6(kernel), 3).ok).toBe(true);
    expect(cluster.ping(kernel, podIp6(ours), 3).ok).toBe(true);
  });

  it("IPv6 TCP both ways, byte for byte, nothing refused", async () => {
    await transfer6(cluster, ours, kernel, 4 << 20, 5201);
    await transfer6(cluster, kernel, ours, 4 << 20, 5202);
    const s = JSON.parse(cluster.exec(`w${ours}`, [process.execPath, CLI, "show", "stats", "--json"]));
    expect(s.io.refused ?? 0).toBe(0);
    // Only IPv6 TCP ran here: the kernel's IPv6 super-frames arrived whole and were segmented (TCPV6).
    if (kernel === 2) expect(s.io.encapSuperframes).toBeGreaterThan(0);
    // ... and went to the tun coalesced again (GRO_TCPV6: the tun has TUN_F_TSO6): fewer frames than packets.
    expect(s.io.groFrames).toBeGreaterThan(0);
    expect(s.io.groFrames).toBeLessThan(Number((s.counters ?? s).to_device_packets));
  });

  it("IPv4 still works beside it", () => {
    expect(cluster.ping(ours, podIp(kernel), 2).ok).toBe(true);
    expect(cluster.ping(kernel, podIp(ours), 2).ok).toBe(true);
  });
});

describe.skipIf(!isRoot)("IPv6 pods on tap devices: the kernel resolves them through our neighbour advertisements", () => {
  const cluster = new Cluster(undefined, { ipv6: true });
  beforeAll(async () => {
    cluster.build();
    for (const n of [2, 3]) {
      const text = cluster.config(n, () => "vxlan").replace("mode: tun", "mode: tap");
      await cluster.startDaemon(n, cluster.writeConfig(n, text), CLI);
    }
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("ping6 and TCP work; the kernel's neighbour entry for the remote pod is our VTEP MAC", async () => {
    const file = await cluster.capture("w2", "wo0", "icmp6", () => {
      expect(cluster.ping(2, podIp6(3), 3).ok).toBe(true);
    });
    if (haveTshark()) {
      // Our advertisement on the tap, as tshark reads it: solicited, for the pod, our MAC, checksum good.
      const na = tshark(file, "icmpv6.type == 136", ["icmpv6.nd.na.target_address", "icmpv6.opt.linkaddr", "icmpv6.nd.na.flag.s", "icmpv6.checksum.status", "ipv6.hlim"]);
      expect(na.length).toBeGreaterThanOrEqual(1);
      expect(na[0]).toEqual([podIp6(3), vtepMac(2), "1", "1", "255"]);
    }
    expect(cluster.exec("w2", ["ip", "-6", "neigh", "show", "dev", "wo0"])).toMatch(new RegExp(`${podIp6(3)} lladdr ${vtepMac(2)}`));
    await transfer6(cluster, 3, 2, 2 << 20, 5301);
  });
});

describe.skipIf(!isRoot)("dual-stack pods attached by the CNI plugin", () => {
  const cluster = new Cluster(undefined, { pods: "cni", ipv6: true });
  beforeAll(async () => {
    cluster.build();
    for (const n of [2, 3]) await cluster.startDaemon(n, cluster.writeConfig(n, cluster.config(n, () => "vxlan")), CLI);
  }, 60_000);
  afterAll(async () => {
    await cluster.destroy();
  });

  it("each pod gets its node's first IPv6 pod address behind fe80::1 and reaches the other node's pod over IPv6", async () => {
    for (const n of [2, 3]) expect(cluster.exec(`pod${n}`, ["ip", "-o", "-6", "addr", "show", "eth0"])).toContain(`inet6 2001:2:0:${n}::1/128`);
    expect(cluster.ping(2, "2001:2:0:3::1", 2).ok).toBe(true);
    expect(cluster.ping(3, "2001:2:0:2::1", 2).ok).toBe(true);
    const r = await cluster.tcpTransferNs("pod2", "pod3", "2001:2:0:3::1", "2001:2:0:3::1", 5401, 1 << 20);
    expect(r.receivedSha).toBe(r.sentSha);
    expect(r.serverSawPeer.address).toBe("2001:2:0:2::1");
  });
});
