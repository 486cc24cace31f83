// `overlayd demo` (and `npm start`): the seed's three workers in network
// namespaces, one overlayd each, pod-to-pod pings over IPIP, VXLAN and direct
// routing, a short summary, and a clean teardown.
import { fileURLToPath } from "node:url";
import { Cluster, podIp, WORKERS } from "./cluster.js";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

export async function runDemo(opts: { keep?: boolean } = {}): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error("the demo builds network namespaces and tun devices: run it as root (sudo npm start)");
    return 1;
  }
  const cluster = new Cluster();
  const cleanup = async () => {
    await cluster.destroy();
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  let failures = 0;
  try {
    console.log(`building the three-worker topology (namespaces ${cluster.prefix}-*) ...`);
    cluster.build();
    // worker1 <-> worker3 over IPIP, worker2 <-> worker3 over VXLAN (auto: other
    // subnet), worker1 <-> worker2 directly routed (auto: same subnet).
    const encap = (me: number, peer: number) => ((me === 1 && peer === 3) || (me === 3 && peer === 1) ? "ipip" : "auto");
    for (const w of WORKERS) {
      const file = cluster.writeConfig(w.n, cluster.config(w.n, (p) => encap(w.n, p)));
      await cluster.startDaemon(w.n, file, CLI);
      console.log(`  worker${w.n} (${w.underlay}) overlayd up, pods 198.19.${w.n}.0/24`);
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
    console.log("\ndata-path counters (overlayd show stats):");
    for (const w of WORKERS) {
      const stats = JSON.parse(cluster.exec(`w${w.n}`, [process.execPath, CLI, "show", "stats", "--json"]));
      const c = stats.counters as Record<string, string>;
      const pick = ["rx_pod_packets", "tx_vxlan_packets", "tx_ipip_packets", "rx_vxlan_packets", "rx_ipip_packets", "to_device_packets", "verdict_drop"];
      console.log(`  worker${w.n}: ` + pick.map((k) => `${k}=${c[k]}`).join(" "));
    }
    console.log(failures ? `\n${failures} ping case(s) failed` : "\nall pod-to-pod paths work");
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
