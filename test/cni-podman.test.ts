// The CNI plugin under a real container runtime: Debian's podman (CNI
// backend, runc) starts busybox containers on the seed's worker namespaces,
// each worker running overlayd; podman runs in the worker's network
// namespace, so the plugin configures the worker as the node. Only our
// network (198.19.0.0/16 pods) is used, never podman's default one.
// Chained after our plugin: the reference portmap and bandwidth plugins.
// Needs root and podman, runc, busybox-static, containernetworking-plugins
// (scripts/install-deps.sh); CI runs it as root.
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster, OUTSIDE, WORKERS } from "../src/demo/cluster.js";
import { CNI_MAIN, runCni } from "./helpers/cni.js";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const isRoot = process.getuid?.() === 0;
const have = (f: string) => existsSync(f);
const ready = isRoot && have("/usr/bin/podman") && have("/usr/sbin/runc") && have("/bin/busybox") && have("/usr/lib/cni/portmap");
const run = promisify(execFile);

describe.skipIf(!ready && process.env.CI !== "true")("CNI plugin with podman on the worker namespaces", () => {
  const cluster = new Cluster(`wopd${Math.random().toString(36).slice(2, 5)}`, { pods: "none" });
  const rootfs = join(cluster.dir, "rootfs");
  const bin = join(cluster.dir, "cni-bin");
  const daemons: import("node:child_process").ChildProcess[] = [];
  const pdir = (n: number) => join(cluster.dir, `podman-w${n}`);
  const ipamDir = (n: number) => join(cluster.dir, `cni-w${n}`);

  const podmanArgs = (n: number, args: string[]) => {
    const d = pdir(n);
    // nsenter joins only the worker's network namespace (ip netns exec would
    // also remount /sys, hiding the cgroup mounts runc needs).
    return ["--net=/run/netns/" + cluster.ns(`w${n}`), "podman", "--root", join(d, "root"), "--runroot", join(d, "run"), "--tmpdir", join(d, "tmp"),
      "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network-backend", "cni", "--cni-config-dir", join(d, "net.d"), "--events-backend", "file", ...args];
  };
  const podmanEnv = (n: number) => ({ ...process.env, CONTAINERS_CONF: join(pdir(n), "containers.conf") });
  // Asynchronous on purpose: a podman call can take seconds on a loaded machine,
  // and a test file that blocks its event loop for a minute misses the test
  // runner's RPC deadline (vitest's fixed 60 s onTaskUpdate timeout).
  const podman = async (n: number, ...args: string[]) => (await run("nsenter", podmanArgs(n, args), { encoding: "utf8", env: podmanEnv(n), timeout: 180_000 })).stdout.trim();
  const runBox = (n: number, name: string, extra: string[], ...cmd: string[]) =>
    ["run", "-d", "--name", name, "--cap-add", "NET_RAW", "--tmpfs", "/data", ...(extra.includes("--network") ? [] : ["--network", "wasm-overlay"]), ...extra, "--rootfs", rootfs, ...cmd];
  const ipOf = async (n: number, name: string, net = "wasm-overlay") => JSON.parse(await podman(n, "inspect", name))[0].NetworkSettings.Networks[net].IPAddress as string;
  const allocated = (n: number) => (existsSync(join(ipamDir(n), "addresses")) ? readdirSync(join(ipamDir(n), "addresses")).sort() : []);
  const hostLinks = (n: number) => cluster.exec(`w${n}`, ["ip", "-o", "link", "show"]).split("\n").filter((l) => /: wov[0-9a-f]+@/.test(l)).length;

  beforeAll(async () => {
    cluster.build();
    cluster.addOutside();
    for (const n of [1, 3]) {
      daemons.push(await cluster.startDaemon(n, cluster.writeConfig(n, cluster.config(n)), CLI)); // auto: worker1 <-> worker3 over VXLAN
    }
    // A busybox rootfs (no image registry needed).
    mkdirSync(join(rootfs, "bin"), { recursive: true });
    for (const d of ["proc", "sys", "dev", "tmp", "etc", "data"]) mkdirSync(join(rootfs, d), { recursive: true });
    copyFileSync("/bin/busybox", join(rootfs, "bin", "busybox"));
    chmodSync(join(rootfs, "bin", "busybox"), 0o755);
    for (const a of execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n").filter((x) => x && x !== "busybox")) symlinkSync("busybox", join(rootfs, "bin", a));
    // /opt/cni/bin/wasm-overlay on a real node: the two-line launcher of deploy/.
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "wasm-overlay"), `#!/bin/sh\nexec ${process.execPath} ${CNI_MAIN} "$@"\n`, { mode: 0o755 });
    for (const n of [1, 3]) {
      const d = pdir(n);
      for (const s of ["root", "run", "tmp", "net.d"]) mkdirSync(join(d, s), { recursive: true });
      // setrlimit is refused here, hence no default ulimits.
      writeFileSync(join(d, "containers.conf"), `[containers]\ndefault_ulimits = []\n[network]\ncni_plugin_dirs = ["${bin}", "/usr/lib/cni"]\n`);
      const ours = cluster.cniConfig(n);
      delete (ours as Record<string, unknown>).cniVersion;
      delete (ours as Record<string, unknown>).name;
      writeFileSync(join(d, "net.d", "10-wasm-overlay.conflist"), JSON.stringify({
        cniVersion: "1.0.0", name: "wasm-overlay",
        plugins: [ours, { type: "portmap", capabilities: { portMappings: true }, snat: true }, { type: "bandwidth", capabilities: { bandwidth: true } }],
      }, null, 2));
      // A second network on the same node and IPAM store, with a static bandwidth limit.
      writeFileSync(join(d, "net.d", "20-wo-limited.conflist"), JSON.stringify({
        cniVersion: "1.0.0", name: "wo-limited",
        plugins: [ours, { type: "bandwidth", ingressRate: 8_000_000, ingressBurst: 100_000, egressRate: 8_000_000, egressBurst: 100_000 }],
      }, null, 2));
    }
  }, 120_000);

  afterAll(async () => {
    for (const n of [1, 3]) {
      try {
        await podman(n, "rm", "-a", "-f", "-t", "0");
      } catch {
        // nothing to remove, or podman never got this far
      }
    }
    for (const d of daemons) await cluster.stopDaemon(d);
    await cluster.destroy();
  }, 120_000);

  it("a container on worker1 pings and sends TCP byte for byte to one on worker3, over VXLAN, with overlayd's MTU", async () => {
    await podman(3, ...runBox(3, "recv", [], "sh", "-c", "sleep 600 | nc -l -p 5001 > /data/r"));
    // (busybox nc with stdin at EOF ends after the first read: keep it open.)
    await podman(1, ...runBox(1, "send", [], "sleep", "600"));
    const ip3 = await ipOf(3, "recv");
    const ip1 = await ipOf(1, "send");
    expect(ip1).toMatch(/^198\.19\.1\.\d+$/);
    expect(ip3).toMatch(/^198\.19\.3\.\d+$/);
    expect(allocated(1)).toEqual([ip1]);
    expect(await podman(1, "exec", "send", "ip", "-o", "addr", "show", "eth0")).toContain(`inet ${ip1}/32`);
    expect(await podman(1, "exec", "send", "ip", "link", "show", "eth0")).toContain("mtu 1450"); // overlayd's device MTU
    expect(await podman(1, "exec", "send", "ip", "route")).toContain("default via 198.19.1.0 dev eth0");
    const before = JSON.parse(cluster.exec("w1", [process.execPath, CLI, "show", "stats", "--json"])).counters.tx_vxlan_packets;
    const ping = await podman(1, "exec", "send", "ping", "-c", "3", "-W", "3", ip3);
    expect(ping).toContain("3 packets received");
    const after = JSON.parse(cluster.exec("w1", [process.execPath, CLI, "show", "stats", "--json"])).counters.tx_vxlan_packets;
    expect(Number(after) - Number(before)).toBeGreaterThanOrEqual(3);
    const sent = await podman(1, "exec", "send", "sh", "-c", `head -c 3000000 /dev/urandom > /data/x && sha256sum /data/x && nc ${ip3} 5001 < /data/x`);
    let size = "";
    for (let i = 0; i < 50 && size !== "3000000"; i++) {
      size = await podman(3, "exec", "recv", "sh", "-c", "wc -c < /data/r");
      if (size !== "3000000") await new Promise((r) => setTimeout(r, 200));
    }
    expect(size).toBe("3000000");
    expect((await podman(3, "exec", "recv", "sha256sum", "/data/r")).split(/\s+/)[0]).toBe(sent.split(/\s+/)[0]);
    // What `overlayd show status` says about pods.
    const status = JSON.parse(cluster.exec("w1", [process.execPath, CLI, "show", "status", "--json"]));
    expect(status.pods).toMatchObject({ nodeState: join(cluster.stateDir(1), "node.json"), ipamDir: ipamDir(1), attachments: 1 });
  }, 120_000);

  it("podman rm frees the container's address and its host interface", async () => {
    const links = hostLinks(1);
    await podman(1, ...runBox(1, "brief", [], "sleep", "600"));
    const ip = await ipOf(1, "brief");
    expect(allocated(1)).toContain(ip);
    expect(hostLinks(1)).toBe(links + 1);
    await podman(1, "rm", "-f", "-t", "0", "brief");
    expect(allocated(1)).not.toContain(ip);
    expect(hostLinks(1)).toBe(links);
    expect(cluster.exec("w1", ["ip", "route"])).not.toContain(`${ip} dev`);
  }, 60_000);

  it("20 containers started at once get 20 distinct addresses", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `many${i}`);
    await Promise.all(names.map((name) => podman(1, ...runBox(1, name, [], "sleep", "600"))));
    const ips = await Promise.all(names.map((name) => ipOf(1, name)));
    expect(new Set(ips).size).toBe(20);
    for (const ip of ips) expect(allocated(1)).toContain(ip);
    // Each is reachable from worker3's receiver container (its own /32 route on worker1).
    expect(await podman(1, "exec", "many7", "ping", "-c", "1", "-W", "3", await ipOf(3, "recv"))).toContain("1 packets received");
    await Promise.all(names.map((name) => podman(1, "rm", "-f", "-t", "0", name)));
    for (const ip of ips) expect(allocated(1)).not.toContain(ip);
  }, 300_000);

  it("a portmap mapping makes a container reachable from the outside host", async () => {
    await podman(1, ...runBox(1, "web", ["-p", "8080:80"], "sh", "-c", "echo hello-from-container > /data/index.html; httpd -f -p 80 -h /data"));
    let body = "";
    for (let i = 0; i < 20 && !body; i++) {
      try {
        const url = `http://${WORKERS[0].underlay}:8080/index.html`;
        body = cluster.exec("outside", ["python3", "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())", url]).trim();
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect(body).toBe("hello-from-container");
    expect(OUTSIDE.address).toBe("198.18.2.100"); // the host with no route to any pod
    await podman(1, "rm", "-f", "-t", "0", "web");
    expect(cluster.exec("w1", ["iptables", "-t", "nat", "-S"])).not.toMatch(/--dport 8080\b/);
  }, 60_000);

  it("a bandwidth limit puts a tc qdisc on the container's host interface (and on its ifb for egress)", async () => {
    await podman(1, ...runBox(1, "slow", ["--network", "wo-limited"], "sleep", "600"));
    const ip = await ipOf(1, "slow", "wo-limited");
    expect(allocated(1)).toContain(ip); // one address store for both networks of the node
    const hostIf = cluster.exec("w1", ["ip", "-o", "route", "show", `${ip}/32`]).match(/dev (\S+)/)![1];
    const qd = cluster.exec("w1", ["tc", "qdisc", "show"]);
    expect(qd).toMatch(new RegExp(`qdisc tbf \\S+ dev ${hostIf} root .*rate 8Mbit`));
    expect(qd).toMatch(/qdisc tbf \S+ dev bwp\S+ root .*rate 8Mbit/);
    await podman(1, "rm", "-f", "-t", "0", "slow");
    expect(allocated(1)).not.toContain(ip);
  }, 60_000);

  it("stopping overlayd removes node.json: the plugin's STATUS says not available and a new container is refused", async () => {
    const nodeJson = join(cluster.stateDir(3), "node.json");
    expect(existsSync(nodeJson)).toBe(true);
    await podman(3, "rm", "-f", "-t", "0", "recv");
    expect(await cluster.stopDaemon(daemons.pop()!)).toBe(0);
    expect(existsSync(nodeJson)).toBe(false);
    const st = await runCni("STATUS", {}, { ...cluster.cniConfig(3) });
    expect(st.json).toMatchObject({ code: 50 });
    await expect(podman(3, ...runBox(3, "late", [], "true"))).rejects.toThrow(/overlayd is not running on this node/);
  }, 60_000);
});
