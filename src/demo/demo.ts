// `overlayd demo` (and `npm start`): the seed's three workers in network
// namespaces, one overlayd each, pod-to-pod pings over IPIP, VXLAN and direct
// routing, masquerade / ClusterIP / NodePort through the data path's NAT, a
// short summary, and a clean teardown.
import { fileURLToPath } from "node:url";
import { Cluster, OUTSIDE, OUTSIDE6, podCidr6, podIp, underlay6, WORKERS } from "./cluster.js";

/** The IPv6 address the CNI plugin gives worker N's first pod: its prefix's first after the anycast. */
const cniPodIp6 = (n: number) => `2001:2:0:${n}::1`;

const CLUSTER_IP = "198.18.250.10";
const CLUSTER_IP6 = "2001:2:0:250::10";
// Answers each connection with its name and the peer address it saw.
const NAME_SERVER = `
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1]))); s.listen(16); print("listening", flush=True)
while True:
    c, peer = s.accept(); c.sendall(f"{sys.argv[2]} saw {peer[0].removeprefix('::ffff:')}".encode()); c.close()
`;
const NAME_CLIENT = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); print(s.recv(200).decode())
`;

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

export async function runDemo(opts: { keep?: boolean } = {}): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error("the demo builds network namespaces and tun devices: run it as root (sudo npm start)");
    return 1;
  }
  // Pods attached by the CNI plugin (dist/src/cni/main.js), run as a runtime runs it;
  // dual-stack: each also gets an IPv6 address from its node's 2001:2:0:N::/64.
  const cluster = new Cluster(undefined, { pods: "cni", ipv6: true });
  const cleanup = async () => {
    await cluster.destroy();
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  let failures = 0;
  try {
    console.log(`building the three-worker topology (namespaces ${cluster.prefix}-*) ...`);
    cluster.build();
    cluster.addOutside();
    // IPv6 on the underlay too: the nodes' IPv6 addresses masquerade and serve NodePorts (NAT66).
    cluster.addOutside6();
    // worker1 <-> worker3 over IPIP, worker2 <-> worker3 over VXLAN (auto: other
    // subnet), worker1 <-> worker2 directly routed (auto: same subnet).
    const encap = (me: number, peer: number) => ((me === 1 && peer === 3) || (me === 3 && peer === 1) ? "ipip" : "auto");
    // Hand CNI-3/4/5 in the data path: masquerade, a ClusterIP, a NodePort.
    const nat = {
      nat: { masquerade: true },
      services: [{
        name: "web", clusterIP: CLUSTER_IP, clusterIP6: CLUSTER_IP6, ports: [{ port: 80, targetPort: 8080, nodePort: 30080 }],
        backends: [podIp(2), podIp(3)], backends6: [cniPodIp6(2), cniPodIp6(3)],
      }],
    };
    for (const w of WORKERS) {
      const file = cluster.writeConfig(w.n, cluster.config(w.n, (p) => encap(w.n, p), nat));
      await cluster.startDaemon(w.n, file, CLI);
      console.log(`  worker${w.n} (${w.underlay}) overlayd up, pods 198.19.${w.n}.0/24 and ${podCidr6(w.n)}; pod${w.n} ${podIp(w.n)}/32 and ${cniPodIp6(w.n)}/128 attached by the CNI plugin (routed, gateways 198.19.${w.n}.0 and fe80::1)`);
    }
    const cases: Array<[number, number, string]> = [
      [1, 3, "IPIP  (worker1 -> worker3, other subnet)"],
      [3, 1, "IPIP  (worker3 -> worker1)"],
      [2, 3, "VXLAN (worker2 -> worker3, other subnet)"],
      [3, 2, "VXLAN (worker3 -> worker2)"],
      [1, 2, "direct (worker1 -> worker2, same subnet, no encapsulation)"],
      [2, 1, "direct (worker2 -> worker1)"],
    ];
    console.log("\npod-to-pod pings:");
    for (const [from, to, what] of cases) {
      const r = cluster.ping(from, podIp(to), 3);
      const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.out)?.[1];
      console.log(`  ${r.ok ? "ok  " : "FAIL"} pod${from} ${podIp(from)} -> pod${to} ${podIp(to)}  ${what}${rtt ? `  avg ${rtt} ms` : ""}`);
      if (!r.ok) failures++;
    }
    console.log("\nthe same over IPv6 (VXLAN with EtherType 0x86DD; IPv6 in IPv4, protocol 41, to the IPIP peer; VXLAN to the direct one):");
    for (const [from, to] of cases) {
      const r = cluster.ping(from, cniPodIp6(to), 2);
      console.log(`  ${r.ok ? "ok  " : "FAIL"} pod${from} ${cniPodIp6(from)} -> pod${to} ${cniPodIp6(to)}`);
      if (!r.ok) failures++;
    }
    console.log(`\nNAT (Hand CNI-3/4/5; an "outside" host ${OUTSIDE.address} with no route to any pod):`);
    const natCase = (ok: boolean, text: string) => {
      console.log(`  ${ok ? "ok  " : "FAIL"} ${text}`);
      if (!ok) failures++;
    };
    const masq = cluster.ping(1, OUTSIDE.address, 2);
    natCase(masq.ok, `pod1 -> outside ${OUTSIDE.address}: ping, masqueraded to worker1's ${WORKERS[0].underlay}`);
    for (const n of [2, 3]) {
      const srv = cluster.spawnIn(`pod${n}`, ["python3", "-c", NAME_SERVER, "8080", `pod${n}`]);
      await new Promise<void>((r) => srv.stdout!.once("data", () => r()));
    }
    const ask = (ns: string, addr: string, port: number): string => {
      try {
        return cluster.exec(ns, ["python3", "-c", NAME_CLIENT, addr, String(port)]).trim();
      } catch {
        return "";
      }
    };
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(ask("pod1", CLUSTER_IP, 80).split(" ")[0]);
    answers.delete("");
    natCase(answers.size > 0, `pod1 -> ClusterIP ${CLUSTER_IP}:80, 6 connections, answered by: ${[...answers].sort().join(", ") || "nobody"}`);
    const np = ask("outside", WORKERS[0].underlay, 30080);
    natCase(np !== "", `outside -> NodePort ${WORKERS[0].underlay}:30080: "${np}"`);
    console.log(`
NAT66 (the same for IPv6; an outside host ${OUTSIDE6.address} with no route to any pod):`);
    const masq6 = cluster.ping(1, OUTSIDE6.address, 2);
    natCase(masq6.ok, `pod1 -> outside ${OUTSIDE6.address}: ping, masqueraded to worker1's ${underlay6(WORKERS[0])}`);
    const answers6 = new Set<string>();
    for (let i = 0; i < 6; i++) answers6.add(ask("pod1", CLUSTER_IP6, 80).split(" ")[0]);
    answers6.delete("");
    natCase(answers6.size > 0, `pod1 -> ClusterIP [${CLUSTER_IP6}]:80, 6 connections, answered by: ${[...answers6].sort().join(", ") || "nobody"}`);
    const np6 = ask("outside", underlay6(WORKERS[0]), 30080);
    natCase(np6 !== "", `outside -> NodePort [${underlay6(WORKERS[0])}]:30080: "${np6}"`);
    const ct = cluster.exec("w1", [process.execPath, CLI, "show", "conntrack"]).trim().split("\n").slice(0, 3);
    console.log("  worker1 `overlayd show conntrack` (first lines):");
    for (const l of ct) console.log(`    ${l}`);

    console.log("\ndata-path counters (overlayd show stats):");
    for (const w of WORKERS) {
      const stats = JSON.parse(cluster.exec(`w${w.n}`, [process.execPath, CLI, "show", "stats", "--json"]));
      const c = stats.counters as Record<string, string>;
      const pick = ["rx_pod_packets", "tx_vxlan_packets", "tx_ipip_packets", "rx_vxlan_packets", "rx_ipip_packets", "to_device_packets", "nat_snat_flows", "nat_dnat_flows", "verdict_drop"];
      console.log(`  worker${w.n}: ` + pick.map((k) => `${k}=${c[k]}`).join(" "));
    }
    console.log(failures ? `\n${failures} case(s) failed` : "\nall pod-to-pod paths and NAT cases work");
    if (opts.keep) {
      console.log(`\ntopology kept; e.g. ip netns exec ${cluster.ns("pod1")} ping ${podIp(3)}. Ctrl-C to tear down.`);
      await new Promise(() => undefined);
    }
  } catch (e) {
    console.error("demo failed:", (e as Error).message);
    for (const [w, log] of cluster.logs) if (log.length) console.error(`--- ${w} log ---\n${log.join("").slice(-3000)}`);
    failures++;
  } finally {
    await cleanup();
    console.log("cleaned up.");
  }
  return failures ? 1 : 0;
}
