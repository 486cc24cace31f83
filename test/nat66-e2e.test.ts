// NAT66 end to end across namespaces (issue 16): the seed's Hand CNI-3/4/5
// for IPv6 pods. Pods masqueraded to an IPv6 "outside" host that has no
// route to any pod, a dual-stack ClusterIP (IPv4 and IPv6 at once), a
// hairpin to a backend on the same node, a NodePort on a node's IPv6
// underlay address reached from outside, and an ICMPv6 error from outside
// translated back to the pod. The kernel's NAT tables stay empty. Needs
// root; CI runs it as root.
import { execFileSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { haveTshark } from "./helpers/pcap.js";
import { Cluster, OUTSIDE, OUTSIDE6, podIp, podIp6, underlay6, waitFor, WORKERS } from "../src/demo/cluster.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));

function tshark(file: string, filter: string, fields: string[]): string[][] {
  const out = execFileSync("tshark", ["-r", file, "-Y", filter, "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
    "-T", "fields", "-E", "separator=|", ...fields.flatMap((f) => ["-e", f])], { encoding: "utf8" });
  return out.trim() ? out.trim().split("\n").map((l) => l.split("|")) : [];
}
const isRoot = process.getuid?.() === 0;
const CLUSTER_IP = "198.18.250.10";
const CLUSTER_IP6 = "2001:2:0:250::10";
const LOCAL_IP6 = "2001:2:0:250::20";
const node6 = (n: number) => underlay6(WORKERS[n - 1]);
/** The default IPv6 service-SNAT address of worker n (the /64's last address but one). */
const snat6 = (n: number) => `2001:2:0:${n}:ffff:ffff:ffff:fffe`;

describe.skipIf(!isRoot)("NAT66 across namespaces (Hand CNI-3/4/5 for IPv6)", () => {
  const cluster = new Cluster(undefined, { ipv6: true });
  const daemons = new Map<number, ChildProcess>();

  // Every node knows the same services, as kube-proxy does. web: dual-stack,
  // ClusterIP:80 -> pod3:8080 on both families, NodePort 30080. local: an
  // IPv6-only service -> pod2 (worker2's own pod: a hairpin from pod2).
  const extra = {
    nat: { masquerade: true },
    services: [
      { name: "web", clusterIP: CLUSTER_IP, clusterIP6: CLUSTER_IP6, ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }], backends: [podIp(3)], backends6: [podIp6(3)] },
      // IPv6 only (ipFamilies: [IPv6]): no IPv4 ClusterIP.
      { name: "local", clusterIP6: LOCAL_IP6, ports: [{ port: 80, targetPort: 8081 }], backends6: [podIp6(2)] },
    ],
  };

  beforeAll(async () => {
    cluster.build();
    cluster.addOutside();
    cluster.addOutside6();
    for (const n of [1, 2, 3]) {
      const file = cluster.writeConfig(n, cluster.config(n, () => "auto", extra));
      daemons.set(n, await cluster.startDaemon(n, file, CLI));
    }
  }, 90_000);

  afterAll(async () => {
    await cluster.destroy();
  });

  it("the outside host has no route to pods, and the kernel's NAT tables are empty", () => {
    const routes = cluster.exec("outside", ["ip", "-6", "route", "show"]);
    expect(routes).not.toContain("2001:2:0:");
    for (const ns of ["w1", "w2", "w3", "outside"]) expect(cluster.exec(ns, ["nft", "list", "ruleset"]).trim(), ns).toBe("");
  });

  it("a pod's IPv6 TCP transfer to the outside arrives byte for byte, from the node's IPv6 address", async () => {
    const r = await cluster.tcpTransferNs("pod1", "outside", OUTSIDE6.address, OUTSIDE6.address, 5001, 2 << 20);
    expect(r.received).toBe(2 << 20);
    expect(r.receivedSha).toBe(r.sentSha);
    expect(r.client.address).toBe(podIp6(1));
    expect(r.serverSawPeer.address).toBe(node6(1));
    expect(r.serverSawPeer.port).toBeGreaterThanOrEqual(61000);
  });

  it("ping6 from a pod to the outside is masqueraded both ways", () => {
    const out = cluster.exec("pod2", ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", OUTSIDE6.address]);
    expect(out).toContain("3 received");
  });

  it("UDP from a pod: the outside sees the node, the answer reaches the pod", async () => {
    const echo = await cluster.udpEchoServer("outside", "::", 5353);
    try {
      const r = cluster.udpRequest("pod3", OUTSIDE6.address, 5353, "hello6");
      expect(r.ok).toBe(true);
      expect(r.reply).toBe("hello6");
      await waitFor(() => echo.seen().length > 0, 2000, "the echo server saw nothing");
      expect(echo.seen()[0].from).toBe(node6(3));
    } finally {
      echo.stop();
    }
  });

  it("an ICMPv6 port unreachable from outside comes back to the pod translated (connection refused)", () => {
    const r = cluster.udpRequest("pod1", OUTSIDE6.address, 5999, "nobody", 2);
    expect(r.ok).toBe(false);
    expect(r.error).toBe("ConnectionRefusedError");
  });

  it("a dual-stack ClusterIP: both families reach the backend pod, byte for byte", async () => {
    const r6 = await cluster.tcpTransferNs("pod1", "pod3", "::", CLUSTER_IP6, 8080, 1 << 20, 0, 80);
    expect(r6.receivedSha).toBe(r6.sentSha);
    expect(r6.received).toBe(1 << 20);
    // DNAT only: the backend sees the client pod itself.
    expect(r6.serverSawPeer.address).toBe(podIp6(1));
    expect(r6.serverLocal.address).toBe(podIp6(3));
    const r4 = await cluster.tcpTransferNs("pod1", "pod3", "0.0.0.0", CLUSTER_IP, 8080, 1 << 20, 0, 80);
    expect(r4.receivedSha).toBe(r4.sentSha);
    expect(r4.serverSawPeer.address).toBe(podIp(1));
  });

  it("hairpin: a pod reaching itself through an IPv6-only service's ClusterIP, via the node's IPv6 service-SNAT address", async () => {
    const r = await cluster.tcpTransferNs("pod2", "pod2", "::", LOCAL_IP6, 8081, 256 << 10, 0, 80);
    expect(r.receivedSha).toBe(r.sentSha);
    expect(r.serverSawPeer.address).toBe(snat6(2));
  });

  it("a NodePort on a node's IPv6 underlay address, from outside, to a backend on another node", async () => {
    const r = await cluster.tcpTransferNs("outside", "pod3", "::", node6(1), 8080, 1 << 20, 0, 30080);
    expect(r.received).toBe(1 << 20);
    expect(r.receivedSha).toBe(r.sentSha);
    // DNAT + SNAT: the backend sees worker1's IPv6 service-SNAT address; the client saw the NodePort answer.
    expect(r.serverSawPeer.address).toBe(snat6(1));
    expect(r.client.address).toBe(OUTSIDE6.address);
  }, 30_000);

  it.skipIf(!haveTshark())("on the outside's wire: only the node's IPv6 address, every checksum valid (tshark)", async () => {
    const echo = await cluster.udpEchoServer("outside", "::", 5454);
    try {
      const file = await cluster.capture("outside", "eth0", "ip6 and not icmp6[0] >= 133", () => {
        expect(cluster.udpRequest("pod1", OUTSIDE6.address, 5454, "x".repeat(300)).ok).toBe(true);
        expect(cluster.exec("pod1", ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", OUTSIDE6.address])).toContain("2 received");
      });
      const rows = tshark(file, "udp || icmpv6", ["ipv6.src", "ipv6.dst", "udp.checksum.status", "icmpv6.checksum.status"]);
      expect(rows.length).toBeGreaterThanOrEqual(6); // a datagram and its echo, two pings and their replies
      for (const [src, dst, udp, icmp] of rows) {
        expect([src, dst]).toContain(node6(1));
        expect([src, dst]).not.toContain(podIp6(1));
        // What we translated, as it arrived (the outside's own packets are
        // captured before its NIC would finish their checksums).
        if (src === node6(1)) expect(udp || icmp).toBe("1"); // tshark: good
      }
      expect(rows.filter(([src]) => src === node6(1)).length).toBeGreaterThanOrEqual(3);
    } finally {
      echo.stop();
    }
  });

  it("show conntrack lists the IPv6 flows with their addresses; the metrics count the IPv6 names", () => {
    cluster.exec("pod1", ["ping", "-6", "-c", "1", "-W", "2", OUTSIDE6.address]);
    const metrics = cluster.exec("w1", ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9469/metrics').read().decode())"]);
    const names = Number(/^overlay_conntrack_ipv6_names (\d+)/m.exec(metrics)?.[1]);
    // Pinned: the node's and SNAT addresses, two ClusterIPs, two backends; the flows' pod1 and the outside host.
    expect(names).toBeGreaterThanOrEqual(6 + 2);
    expect(metrics).toMatch(/^overlay_conntrack_ipv6_names_capacity 262144$/m);
    const text = cluster.exec("w1", [process.execPath, CLI, "show", "conntrack"]);
    expect(text).toMatch(new RegExp(`icmpv6\\s+58 \\d+ src=${podIp6(1)} dst=${OUTSIDE6.address} type=128 code=0 id=\\d+ src=${OUTSIDE6.address} dst=${node6(1)} type=129`));
    expect(OUTSIDE.address).toBeTruthy();
  });
});
