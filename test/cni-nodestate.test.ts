// overlayd's node facts for the CNI plugin (`${node.stateDir}/node.json`,
// src/daemon/nodestate.ts) with a real daemon: written at start, rewritten by
// a reload that changes them (the underlay link's MTU moving), kept by one
// that is refused (a new pod CIDR needs a restart), removed on stop; `show
// status` points at it.
// Needs root; CI runs it as root.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { Cluster, waitFor } from "../src/demo/cluster.js";
import { readNodeState } from "../src/daemon/nodestate.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot && process.env.CI !== "true")("node.json from a running overlayd", () => {
  const cluster = new Cluster(undefined, { pods: "none" });
  afterAll(async () => {
    await cluster.destroy();
  });

  it("is written at start, follows a reload, and goes on stop", async () => {
    cluster.build();
    const file = cluster.writeConfig(1, cluster.config(1));
    const d = await cluster.startDaemon(1, file, CLI);
    const nodeJson = join(cluster.stateDir(1), "node.json");
    const s = readNodeState(nodeJson);
    expect(s).toMatchObject({ node: "worker1", podCIDR: "198.19.1.0/24", overlayAddress: "198.19.1.0", device: "wo0", mtu: 1450, underlay: "198.18.0.11", pid: d.pid === undefined ? undefined : expect.any(Number) });
    expect(s.reserved).toEqual(["198.19.1.0", "198.19.1.254"]);
    const status = JSON.parse(cluster.exec("w1", [process.execPath, CLI, "show", "status", "--json"]));
    expect(status.pods.nodeState).toBe(nodeJson);
    // A reload that moves the node's pod CIDR is refused (restart-only): node.json keeps the running one.
    const cfg = parse(cluster.config(1));
    cfg.node.podCIDR = "198.19.11.0/24";
    cluster.writeConfig(1, stringify(cfg));
    const lastReload = () => JSON.parse(cluster.exec("w1", [process.execPath, CLI, "show", "status", "--json"])).lastReload;
    await waitFor(() => lastReload()?.ok === false, 10_000, "the pod CIDR change to be refused");
    expect(lastReload().errors.join(" ")).toMatch(/node\.podCIDR changed: restart overlayd/);
    expect(readNodeState(nodeJson)).toMatchObject({ podCIDR: "198.19.1.0/24", mtu: 1450 });
    // The underlay link's MTU moving is applied live, and node.json follows it (pods get the new MTU).
    cluster.writeConfig(1, cluster.config(1));
    cluster.exec("w1", ["ip", "link", "set", "eth0", "mtu", "1400"]);
    await waitFor(() => readNodeState(nodeJson).mtu === 1350, 15_000, "node.json to follow the link MTU");
    expect(readNodeState(nodeJson)).toMatchObject({ podCIDR: "198.19.1.0/24", overlayAddress: "198.19.1.0" });
    // Stopped with a reload in flight (the reload's commit used to rewrite node.json after stop removed it).
    d.kill("SIGHUP");
    expect(await cluster.stopDaemon(d)).toBe(0);
    expect(existsSync(nodeJson)).toBe(false);
  }, 60_000);
});
