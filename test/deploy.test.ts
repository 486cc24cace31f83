// The deploy files (deploy/): the Kubernetes manifest parses and has what a
// node needs (no cluster here to apply it to), the conflists and the overlayd
// config in it are valid for the plugin and overlayd, the launcher runs the
// plugin, the systemd unit starts overlayd.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseConfigText } from "../src/config/load.js";
import { NetConfSchema } from "../src/cni/config.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const read = (p: string) => readFileSync(`${root}${p}`, "utf8");

/** A conflist is valid when each plugin gets a valid config, as a runtime builds it (name and cniVersion from the list). */
function checkConflist(text: string) {
  const list = JSON.parse(text);
  expect(list.name).toBe("wasm-overlay");
  expect(["1.0.0", "1.1.0"]).toContain(list.cniVersion);
  const types = list.plugins.map((p: { type: string }) => p.type);
  expect(types).toEqual(["wasm-overlay", "portmap", "bandwidth"]);
  const ours = NetConfSchema.safeParse({ ...list.plugins[0], name: list.name, cniVersion: list.cniVersion });
  expect(ours.success, JSON.stringify(ours.error?.issues)).toBe(true);
  expect(ours.data!.nodeState).toBe("/run/wasm-overlay/node.json");
  expect(list.plugins[1].capabilities).toEqual({ portMappings: true });
  expect(list.plugins[2].capabilities).toEqual({ bandwidth: true });
  return list;
}

describe("deploy/", () => {
  const docs = parseAllDocuments(read("deploy/kubernetes/wasm-overlay.yaml"));
  for (const d of docs) expect(d.errors).toEqual([]);
  const objs = docs.map((d) => d.toJS()) as any[];
  const ds = objs.find((o) => o.kind === "DaemonSet");
  const cm = objs.find((o) => o.kind === "ConfigMap");
  const spec = ds?.spec?.template?.spec;

  it("the manifest is a Namespace, a ConfigMap and a DaemonSet that select their own pods", () => {
    expect(objs.map((o) => o.kind)).toEqual(["Namespace", "ConfigMap", "DaemonSet"]);
    expect(ds.apiVersion).toBe("apps/v1");
    expect(ds.spec.selector.matchLabels).toEqual(ds.spec.template.metadata.labels);
    for (const o of objs.slice(1)) expect(o.metadata.namespace).toBe(objs[0].metadata.name);
  });

  it("overlayd runs privileged on the host network, on every node, with the tun device and its state dir", () => {
    expect(spec.hostNetwork).toBe(true);
    expect(spec.hostPID).toBe(true);
    expect(spec.tolerations).toContainEqual({ operator: "Exists" });
    const c = spec.containers.find((x: any) => x.name === "overlayd");
    expect(c.securityContext.privileged).toBe(true);
    expect(c.command).toEqual(expect.arrayContaining(["/opt/wasm-overlay/dist/src/cli/main.js", "run", "--config", "/etc/wasm-overlay/overlayd.yaml"]));
    const vol = (name: string) => spec.volumes.find((v: any) => v.name === name);
    const mount = (path: string) => c.volumeMounts.find((m: any) => m.mountPath === path);
    expect(vol(mount("/dev/net/tun").name).hostPath).toEqual({ path: "/dev/net/tun", type: "CharDevice" });
    expect(vol(mount("/run/wasm-overlay").name).hostPath.path).toBe("/run/wasm-overlay"); // node.json reaches the host's plugin
  });

  it("the init step installs the plugin as /opt/cni/bin/wasm-overlay and the conflist into /etc/cni/net.d on the host", () => {
    const init = spec.initContainers.find((x: any) => x.name === "install-cni");
    const script = init.command.join(" ");
    const hostPathOf = (mountPath: string) => spec.volumes.find((v: any) => v.name === init.volumeMounts.find((m: any) => m.mountPath === mountPath).name).hostPath.path;
    expect(hostPathOf("/host/opt/cni/bin")).toBe("/opt/cni/bin");
    expect(hostPathOf("/host/etc/cni/net.d")).toBe("/etc/cni/net.d");
    expect(hostPathOf("/host/opt/wasm-overlay")).toBe("/opt/wasm-overlay");
    expect(script).toContain("/host/opt/cni/bin/wasm-overlay");
    expect(script).toContain("/host/etc/cni/net.d/10-wasm-overlay.conflist");
    expect(script).toMatch(/mv \S+\.tmp \/host\/opt\/cni\/bin\/wasm-overlay/); // atomic: a runtime never runs half a file
    expect(init.env.map((e: any) => e.valueFrom.fieldRef.fieldPath).sort()).toEqual(["spec.nodeName", "status.hostIP"]);
  });

  it("the ConfigMap's conflist is the one in deploy/, and valid for the plugin", () => {
    const a = checkConflist(cm.data["10-wasm-overlay.conflist"]);
    const b = checkConflist(read("deploy/10-wasm-overlay.conflist"));
    expect(a).toEqual(b);
  });

  it("the ConfigMap's overlayd config, as the init step renders it, is a valid overlayd config", () => {
    const text = (cm.data["overlayd.yaml"] as string).replace("__NODE_NAME__", "node-a").replace("__NODE_IP__", "198.18.0.21");
    // With etcd the pod CIDR is leased; here the one an empty cluster would get.
    const r = parseConfigText(text.replace(/^( *)device:/m, "$1podCIDR: 198.19.0.0/24\n$1device:"));
    expect(r.ok, r.ok ? "" : r.errors.join("\n")).toBe(true);
    if (r.ok) expect(r.config.node.stateDir).toBe("/run/wasm-overlay");
  });

  it("the launcher runs the plugin (VERSION) from WASM_OVERLAY_HOME", () => {
    const out = execFileSync("sh", [`${root}deploy/wasm-overlay-cni`], { env: { ...process.env, WASM_OVERLAY_HOME: root, CNI_COMMAND: "VERSION" }, encoding: "utf8" });
    expect(JSON.parse(out).supportedVersions).toContain("1.1.0");
    expect(read("deploy/wasm-overlay-cni").split("\n").filter((l) => l && !l.startsWith("#")).length).toBeLessThanOrEqual(2);
  });

  it("the systemd unit starts overlayd with its config and keeps node.stateDir as its runtime directory", () => {
    const unit = read("deploy/overlayd.service");
    expect(unit).toMatch(/^ExecStart=.*dist\/src\/cli\/main\.js run --config \/etc\/wasm-overlay\/overlayd\.yaml$/m);
    expect(unit).toMatch(/^RuntimeDirectory=wasm-overlay$/m);
    expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
  });
});
