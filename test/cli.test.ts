// The overlayd command line as a newcomer meets it: help, check-config,
// running without privileges, asking a daemon that is not there.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const CLI = fileURLToPath(new URL("../dist/src/cli/main.js", import.meta.url));
const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));
const run = (args: string[], prefix: string[] = []) => {
  const r = spawnSync(prefix[0] ?? process.execPath, [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), CLI, ...args], { encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe("overlayd CLI", () => {
  it("--help names every command", () => {
    const r = run(["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["run", "check-config", "show", "reload", "demo"]) expect(r.out).toContain(c);
  });

  it("check-config accepts the examples and shows each peer's resolved encapsulation", () => {
    const r = run(["check-config", join(EXAMPLES, "worker2.yaml")]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/worker1 +198\.18\.0\.11 +direct/);
    expect(r.out).toMatch(/worker3 +198\.18\.1\.13 +vxlan/);
    const j = run(["check-config", "--json", join(EXAMPLES, "worker3-ipip.yaml")]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out).peers.map((p: { encapsulation: string }) => p.encapsulation)).toContain("ipip");
    // The etcd example has no pod CIDR and no peers: both come from etcd.
    const e = run(["check-config", join(EXAMPLES, "worker-etcd.yaml")]);
    expect(e.code).toBe(0);
    expect(e.out).toContain("leased from 198.19.0.0/16");
  });

  it("check-config says what NAT masquerades to in each family, and counts the frontends", () => {
    const dir = mkdtempSync(join(tmpdir(), "wo-cli-"));
    const f = join(dir, "nat6.yaml");
    const base = "node:\n  name: x\n  underlay: { address: 198.18.0.11, prefixLength: 24 }\n  podCIDR: 198.19.1.0/24\n";
    const svc = "services:\n  - { name: web, clusterIP: 198.18.250.10, clusterIP6: \"2001:2:0:250::10\", ports: [{ port: 80, nodePort: 30080 }], backends6: [\"2001:2:0:2::10\"] }\n";
    writeFileSync(f, base + "  ipv6: { podCIDR: \"2001:2:0:1::/64\" }\nnat: { masquerade: true }\n" + svc);
    expect(run(["check-config", f]).out).toContain("nat: masquerade IPv4 to 198.18.0.11, IPv6 not (no node.ipv6.underlayAddress); 2 IPv4 service frontends, 1 IPv6");
    writeFileSync(f, base + "  ipv6: { podCIDR: \"2001:2:0:1::/64\", underlayAddress: \"2001:2:ff::11\" }\nnat: { masquerade: true }\n" + svc);
    expect(run(["check-config", f]).out).toContain("nat: masquerade IPv4 to 198.18.0.11, IPv6 to 2001:2:ff::11; 2 IPv4 service frontends, 2 IPv6");
  });

  it("check-config rejects a bad file with the field and the reason, exit 1", () => {
    const dir = mkdtempSync(join(tmpdir(), "wo-cli-"));
    const f = join(dir, "bad.yaml");
    writeFileSync(f, "node:\n  name: x\n  underlay: { address: 198.18.0.1, prefixLength: 24 }\n  podCIDR: 198.19.2.0/33\n");
    const r = run(["check-config", f]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/node\.podCIDR/);
    expect(run(["check-config", join(dir, "missing.yaml")]).code).toBe(1);
  });

  it("show and reload without a running daemon say so instead of crashing", () => {
    const r = run(["show", "peers", "--admin", "127.0.0.1:1"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cannot reach overlayd/);
    // The socket path comes from the config's node.stateDir.
    const dir = mkdtempSync(join(tmpdir(), "wo-cli-"));
    const f = join(dir, "node.yaml");
    writeFileSync(f, `node:\n  name: x\n  stateDir: ${dir}/state\n`);
    const s = run(["reload", "--config", f]);
    expect(s.code).toBe(1);
    expect(s.err).toContain(`cannot reach overlayd at ${dir}/state/admin.sock`);
  });

  const canDrop = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;
  it.skipIf(!canDrop)("run as an unprivileged user fails with a clear message", () => {
    const r = run(["run", "--config", join(EXAMPLES, "worker2.yaml")], ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    expect(r.code).toBe(1);
    expect(r.out + r.err).toMatch(/must run as root/);
  });
});
