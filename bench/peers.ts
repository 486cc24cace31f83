// The userspace VTEPs a user would set beside overlayd (issue 18), built on
// the e2e bench's own worker2 and worker3 namespaces to carry pod2 <-> pod3,
// one at a time, after the kernel and overlayd rows of the same run:
//   - socat: a tun <-> UDP relay, one datagram per packet: the naive floor;
//   - wireguard-go and nebula: userspace tunnels that also encrypt (their
//     rows pay for ChaCha20-Poly1305 / AES-GCM, overlayd's do not);
//   - Open vSwitch's userspace (netdev) datapath doing VXLAN, with its
//     userspace tunnelling set-up (the underlay address on a br-phy bridge
//     that holds eth0, a br-int bridge with the VXLAN port).
// Each takes the pod CIDRs through its own device with addresses in
// 198.18.250-253.0/24 inside the two namespaces; a peer whose binaries are
// missing is skipped, not failed. Only the processes started here are
// stopped, by PID; the namespaces go with the bench's cluster.
import { execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Cluster, podIp } from "../src/demo/cluster.js";

/** The two ends: worker, its underlay address, the other end. */
const ENDS = [
  { n: 2, underlay: "198.18.0.12", gateway: "198.18.0.1", otherNet: "198.18.1.0/24", other: 3 },
  { n: 3, underlay: "198.18.1.13", gateway: "198.18.1.1", otherNet: "198.18.0.0/24", other: 2 },
] as const;
type End = (typeof ENDS)[number];
const underlayOf = (n: number) => ENDS.find((e) => e.n === n)!.underlay;
const podNet = (n: number) => `198.19.${n}.0/24`;

export interface PeerUp {
  /** The processes whose CPU time is the peer's cost (stopped, by PID, after its row). */
  procs: ChildProcess[];
}

export interface PeerPath {
  name: string;
  /** What the row says about it (encryption, datapath). */
  note: string;
  /** Binaries it needs; missing ones make it skipped. */
  needs: string[];
  /** Set it up on worker2 and worker3 (files under `dir`); the caller waits for pod2 -> pod3. */
  up(c: Cluster, dir: string): Promise<PeerUp>;
}

/** Where a binary is, or undefined. */
export function findBinary(name: string): string | undefined {
  for (const d of ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin", "/usr/local/sbin"]) {
    if (existsSync(join(d, name))) return join(d, name);
  }
  return undefined;
}

/** Wait until `dev` exists in the namespace (a daemon creating its device). */
async function waitLink(c: Cluster, ns: string, dev: string, child?: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      c.exec(ns, ["ip", "link", "show", "dev", dev]);
      return;
    } catch {
      if (child && child.exitCode !== null) throw new Error(`${dev}: its process exited (${child.exitCode})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${dev} did not appear in ${ns}`);
}

/** Address, MTU and the route to the other pod CIDR on a peer's device. */
function plumb(c: Cluster, e: End, dev: string, addr: string, mtu: number, via?: string): void {
  const x = (args: string[]) => c.exec(`w${e.n}`, args);
  x(["ip", "addr", "add", addr, "dev", dev]);
  x(["ip", "link", "set", "dev", dev, "mtu", String(mtu), "up"]);
  x(["ip", "route", "replace", podNet(e.other), ...(via ? ["via", via] : []), "dev", dev]);
}

/** Start a peer's daemon in worker `e`'s namespace and wait for the device
 *  it creates; a failure names the device and quotes the daemon's output. */
async function startVtep(c: Cluster, e: End, argv: string[], dev: string): Promise<ChildProcess> {
  const child = c.spawnIn(`w${e.n}`, argv);
  let text = "";
  child.stderr?.on("data", (d) => (text = (text + String(d)).slice(-2000)));
  child.stdout?.on("data", (d) => (text = (text + String(d)).slice(-2000)));
  await waitLink(c, `w${e.n}`, dev, child).catch((err: Error) => {
    throw new Error(`${err.message}: ${text}`);
  });
  return child;
}

const socat: PeerPath = {
  name: "socat tun<->UDP",
  note: "one datagram per packet, no encryption: the naive floor",
  needs: ["socat"],
  async up(c) {
    const procs: ChildProcess[] = [];
    for (const e of ENDS) {
      const dev = `sot${e.n}`;
      const child = await startVtep(c, e, ["socat", "-b", "65536",
        `TUN:198.18.250.${e.n}/24,tun-name=${dev},tun-type=tun,iff-no-pi,iff-up`,
        `UDP-DATAGRAM:${underlayOf(e.other)}:4790,bind=${e.underlay}:4790`], dev);
      c.exec(`w${e.n}`, ["ip", "link", "set", "dev", dev, "mtu", "1472"]);
      c.exec(`w${e.n}`, ["ip", "route", "replace", podNet(e.other), "dev", dev]);
      procs.push(child);
    }
    return { procs };
  },
};

const wireguardGo: PeerPath = {
  name: "wireguard-go",
  note: "encrypts (ChaCha20-Poly1305)",
  needs: ["wireguard-go", "wg"],
  async up(c, dir) {
    const keys = ENDS.map((e) => {
      const priv = execFileSync("wg", ["genkey"], { encoding: "utf8" }).trim();
      const pub = execFileSync("wg", ["pubkey"], { input: priv, encoding: "utf8" }).trim();
      const file = join(dir, `wg${e.n}.key`);
      writeFileSync(file, priv + "\n", { mode: 0o600 });
      return { n: e.n, file, pub };
    });
    const procs: ChildProcess[] = [];
    for (const e of ENDS) {
      const dev = `wgb${e.n}`;
      // wireguard-go refuses to run on Linux (which has the kernel module) unless told.
      const child = await startVtep(c, e, ["env", "WG_PROCESS_FOREGROUND=1", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "wireguard-go", dev], dev);
      const peer = keys.find((k) => k.n === e.other)!;
      c.exec(`w${e.n}`, ["wg", "set", dev, "private-key", keys.find((k) => k.n === e.n)!.file, "listen-port", "51820",
        "peer", peer.pub, "allowed-ips", `${podNet(e.other)},198.18.251.${e.other}/32`, "endpoint", `${underlayOf(e.other)}:51820`]);
      plumb(c, e, dev, `198.18.251.${e.n}/24`, 1420);
      procs.push(child);
    }
    return { procs };
  },
};

const nebula: PeerPath = {
  name: "nebula",
  note: "encrypts (AES-256-GCM), Noise handshake",
  needs: ["nebula", "nebula-cert"],
  async up(c, dir) {
    const nb = (n: number) => `198.18.252.${n}`;
    execFileSync("nebula-cert", ["ca", "-name", "wasm-overlay bench", "-duration", "24h", "-out-crt", join(dir, "ca.crt"), "-out-key", join(dir, "ca.key")]);
    const procs: ChildProcess[] = [];
    for (const e of ENDS) {
      execFileSync("nebula-cert", ["sign", "-ca-crt", join(dir, "ca.crt"), "-ca-key", join(dir, "ca.key"), "-name", `worker${e.n}`,
        "-ip", `${nb(e.n)}/24`, "-subnets", podNet(e.n), "-out-crt", join(dir, `w${e.n}.crt`), "-out-key", join(dir, `w${e.n}.key`)]);
      const dev = `nbt${e.n}`;
      const any = [{ port: "any", proto: "any", host: "any" }];
      const conf = {
        pki: { ca: join(dir, "ca.crt"), cert: join(dir, `w${e.n}.crt`), key: join(dir, `w${e.n}.key`) },
        static_host_map: { [nb(e.other)]: [`${underlayOf(e.other)}:4242`] },
        lighthouse: { am_lighthouse: false, interval: 60, hosts: [] },
        listen: { host: e.underlay, port: 4242 },
        punchy: { punch: false },
        tun: { disabled: false, dev, mtu: 1400, unsafe_routes: [{ route: podNet(e.other), via: nb(e.other) }] },
        logging: { level: "warning" },
        firewall: { outbound: any, inbound: any },
      };
      const file = join(dir, `nebula${e.n}.json`); // JSON is YAML
      writeFileSync(file, JSON.stringify(conf));
      const child = await startVtep(c, e, ["nebula", "-config", file], dev);
      procs.push(child);
    }
    return { procs };
  },
};

const ovsNetdev: PeerPath = {
  name: "Open vSwitch netdev (VXLAN)",
  note: "userspace datapath, no DPDK (AF_PACKET on eth0, taps for the bridges), no encryption",
  needs: ["ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool"],
  async up(c, dir) {
    const procs: ChildProcess[] = [];
    const schema = ["/usr/share/openvswitch/vswitch.ovsschema"].find(existsSync);
    if (!schema) throw new Error("vswitch.ovsschema not found");
    for (const e of ENDS) {
      const ns = `w${e.n}`;
      const d = join(dir, `ovs${e.n}`);
      mkdirSync(d, { recursive: true });
      const db = `unix:${join(d, "db.sock")}`;
      const env = ["env", `OVS_RUNDIR=${d}`, `OVS_LOGDIR=${d}`, `OVS_DBDIR=${d}`];
      execFileSync("ovsdb-tool", ["create", join(d, "conf.db"), schema]);
      const server = c.spawnIn(ns, [...env, "ovsdb-server", join(d, "conf.db"), `--remote=p${db}`, `--unixctl=${join(d, "ovsdb.ctl")}`, `--log-file=${join(d, "ovsdb.log")}`]);
      for (let i = 0; i < 50 && !existsSync(join(d, "db.sock")); i++) await new Promise((r) => setTimeout(r, 100));
      const vsctl = (...args: string[]) => c.exec(ns, [...env, "ovs-vsctl", `--db=${db}`, "--timeout=10", ...args]);
      vsctl("--no-wait", "init");
      const vswitchd = c.spawnIn(ns, [...env, "ovs-vswitchd", db, `--unixctl=${join(d, "vswitchd.ctl")}`, `--log-file=${join(d, "vswitchd.log")}`]);
      procs.push(server, vswitchd);
      // Userspace tunnelling: the underlay address moves to br-phy, which holds eth0.
      vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev");
      vsctl("add-port", "br-phy", "eth0");
      await waitLink(c, ns, "br-phy", vswitchd);
      const x = (args: string[]) => c.exec(ns, args);
      x(["ip", "addr", "del", `${e.underlay}/24`, "dev", "eth0"]);
      x(["ip", "addr", "add", `${e.underlay}/24`, "dev", "br-phy"]);
      x(["ip", "link", "set", "dev", "br-phy", "up"]);
      x(["ip", "route", "replace", e.otherNet, "via", e.gateway, "dev", "br-phy"]);
      vsctl("add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev");
      vsctl("add-port", "br-int", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
        `options:remote_ip=${underlayOf(e.other)}`, `options:local_ip=${e.underlay}`, "options:key=100");
      await waitLink(c, ns, "br-int", vswitchd);
      plumb(c, e, "br-int", `198.18.253.${e.n}/24`, 1450, `198.18.253.${e.other}`);
    }
    return { procs };
  },
};

/** In the order they run: OVS last, as it moves the underlay address off eth0. */
export const PEERS: readonly PeerPath[] = [socat, wireguardGo, nebula, ovsNetdev];

/** Stop a peer's processes (SIGTERM, then SIGKILL after 3 s) and wait for them. */
export async function stopPeer(procs: readonly ChildProcess[]): Promise<void> {
  await Promise.all(procs.map(async (p) => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  }));
}

/** Wait until pod2 reaches pod3 through the peer just set up. */
export async function waitPath(c: Cluster, seconds = 15): Promise<boolean> {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (const n of [2, 3]) c.exec(`pod${n}`, ["ip", "route", "flush", "cache"]);
    if (c.ping(2, podIp(3), 1).ok) return true;
    await new Promise((r) => setTimeout(r, 300));
  }
  return false;
}
