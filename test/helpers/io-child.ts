// The I/O side of test/io.test.ts, run inside a test namespace:
//   ip netns exec NS node --import tsx test/helpers/io-child.ts MODE [ARGS]
// Prints JSON lines: {"ready":true} once its fd is open, then {"result":...}
// (or {"error":...}). Uses a bare WebAssembly.Memory with the data path's
// slot/metadata layout, so it tests src/io alone.
import { BatchIO } from "../../src/io/batch.js";
import { TunRing } from "../../src/io/uring.js";
import { setSysctl } from "../../src/daemon/system.js";
import { openTun, configureLink, closeTun, setTunOffload, setVnetHdrSize } from "../../src/io/tun.js";
import * as libc from "../../src/io/libc.js";
import { openVxlanSocket, openIpipRecvSocket, openRawSendSocket, parseIPv4, formatIPv4, closeSocket, openVxlanSocket6, openIp6TunnelSocket } from "../../src/io/sockets.js";
import { Underlay6Peers } from "../../src/io/underlay6.js";
import { ipv6ToBigint } from "../../src/config/net6.js";
import * as abi from "../../src/dataplane/abi.js";
import { spawn, spawnSync } from "node:child_process";

const BATCH = 64;
const SLOT = 2048;
const META_BASE = 1024;
const SLOT_BASE = 4096;

const memory = new WebAssembly.Memory({ initial: 4, maximum: 64 });
const io = new BatchIO({ memory, slotBase: SLOT_BASE, slotSize: SLOT, metaBase: META_BASE, batch: BATCH });

const say = (o: unknown): void => {
  process.stdout.write(JSON.stringify(o) + "\n");
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const u8 = () => new Uint8Array(memory.buffer);
const dv = () => new DataView(memory.buffer);
const slot = (i: number) => SLOT_BASE + i * SLOT;
const meta = (i: number) => META_BASE + i * abi.META_SIZE;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function packetOf(i: number): Uint8Array {
  const d = dv();
  const off = d.getUint32(meta(i) + abi.META_OFF, true);
  const len = d.getUint32(meta(i) + abi.META_LEN, true);
  return u8().slice(slot(i) + off, slot(i) + off + len);
}

function metaOf(i: number) {
  const d = dv();
  return {
    off: d.getUint32(meta(i) + abi.META_OFF, true),
    len: d.getUint32(meta(i) + abi.META_LEN, true),
    addr: formatIPv4(d.getUint32(meta(i) + abi.META_ADDR, true)),
    addr2: formatIPv4(d.getUint32(meta(i) + abi.META_ADDR2, true)),
    tos: d.getUint8(meta(i) + abi.META_TOS),
    hex: hex(packetOf(i)),
  };
}

function checksum(b: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2) sum += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Wait until fd is readable, then a little longer so the whole burst is queued. */
async function waitReadable(fd: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (io.pollReadable([fd], 50)) {
      await sleep(300);
      return true;
    }
    await sleep(0); // let stdout flush
  }
  return false;
}

async function tunMode(): Promise<void> {
  // Kernel -> tun: a ping to 198.18.10.2 routed into the tun; we answer it.
  const dev = openTun({ name: "wotun%d", mode: "tun" });
  configureLink(dev.name, { mtu: 1400, addresses: ["198.18.10.1/24"], up: true });
  say({ ready: true, name: dev.name });
  const ping = spawn("ping", ["-n", "-c", "1", "-W", "5", "-s", "56", "-p", "a5", "198.18.10.2"], { stdio: ["ignore", "pipe", "pipe"] });
  let pingOut = "";
  ping.stdout.on("data", (d) => (pingOut += d));
  const pingExit = new Promise<number | null>((r) => ping.once("exit", (c) => r(c)));

  let request: Uint8Array | undefined;
  let idx = -1;
  const end = Date.now() + 5000;
  while (!request && Date.now() < end) {
    if (!io.pollReadable([dev.fd], 100)) {
      await sleep(0);
      continue;
    }
    const n = io.readTun(dev.fd, BATCH);
    for (let i = 0; i < n; i++) {
      const p = packetOf(i);
      if (p[0] >> 4 === 4 && p[9] === 1 && p[20] === 8) {
        request = p;
        idx = i;
        break; // IPv6 router solicitations and the like are ignored
      }
    }
  }
  if (!request) return say({ error: "no echo request read from the tun" });
  const readMeta = metaOf(idx);

  // Turn it into the echo reply in place: swap addresses, type 0, checksums.
  const b = u8();
  const p = slot(idx) + abi.HEADROOM;
  const src = b.slice(p + 12, p + 16);
  b.copyWithin(p + 12, p + 16, p + 20);
  b.set(src, p + 16);
  b[p + 20] = 0;
  b[p + 22] = b[p + 23] = 0;
  const icmp = checksum(b, p + 20, p + request.length);
  b[p + 22] = icmp >> 8;
  b[p + 23] = icmp & 0xff;
  b[p + 10] = b[p + 11] = 0;
  const ipc = checksum(b, p, p + 20);
  b[p + 10] = ipc >> 8;
  b[p + 11] = ipc & 0xff;
  const w = io.writeTun(dev.fd, Uint16Array.of(idx), 1);
  const code = await Promise.race([pingExit, sleep(6000).then(() => "timeout")]);
  closeTun(dev);
  say({ result: { request: hex(request), meta: readMeta, write: w, pingExit: code, pingOut } });
}

/** Tap device options: two queues of one multi-queue vnet-hdr tap, header size and offloads; and the errors. */
function tapQueuesMode(): void {
  const q0 = openTun({ name: "wotap%d", mode: "tap", multiQueue: true, vnetHdr: true });
  const q1 = openTun({ name: q0.name, mode: "tap", multiQueue: true, vnetHdr: true });
  const hdr = setVnetHdrSize(q0, 12);
  setTunOffload(q0, libc.TUN_F_CSUM | libc.TUN_F_TSO4);
  const errors: Record<string, string> = {};
  const tryErr = (k: string, f: () => unknown) => {
    try {
      f();
      errors[k] = "no error";
    } catch (e) {
      errors[k] = (e as Error).message;
    }
  };
  tryErr("wrongMode", () => openTun({ name: q0.name, mode: "tun", multiQueue: true }));
  tryErr("badHdr", () => setVnetHdrSize(q0, 4));
  tryErr("tsoWithoutCsum", () => setTunOffload(q0, libc.TUN_F_TSO4));
  tryErr("longName", () => openTun({ name: "a-name-far-too-long", mode: "tap" }));
  const link = JSON.parse(spawnSync("ip", ["-j", "-d", "link", "show", "dev", q0.name], { encoding: "utf8" }).stdout)[0];
  const fds = [q0.fd, q1.fd];
  closeTun(q0);
  closeTun(q1);
  say({ result: { name: q0.name, fds, hdr, linkType: link?.link_type, info: link?.linkinfo?.info_data, errors } });
}

async function recvMode(kind: "vxlan" | "ipip", bindAddr: string): Promise<void> {
  const fd = kind === "vxlan" ? openVxlanSocket({ bindAddr, port: 4789 }) : openIpipRecvSocket();
  // Grow linear memory once: BatchIO must notice the new buffer and re-derive its base.
  memory.grow(1);
  say({ ready: true });
  if (!(await waitReadable(fd, 8000))) return say({ error: "nothing arrived" });
  const n = kind === "vxlan" ? io.recvVxlan(fd, BATCH) : io.recvIpip(fd, BATCH);
  const packets = Array.from({ length: n }, (_, i) => metaOf(i));
  const again = kind === "vxlan" ? io.recvVxlan(fd, BATCH) : io.recvIpip(fd, BATCH);
  closeSocket(fd);
  say({ result: { n, packets, again, stats: io.stats } });
}

/** The IPv6 underlay's sockets: `peer6` is a known peer (named 198.18.0.1); datagrams from anyone else get name 0. */
async function recv6Mode(kind: "vxlan6" | "ip6tnl", peer6: string): Promise<void> {
  const peers = new Underlay6Peers();
  peers.set([{ underlay: parseIPv4("198.18.0.1"), underlay6: ipv6ToBigint(peer6) }, { underlay: parseIPv4("198.18.0.7") }]);
  const fds = kind === "vxlan6" ? [openVxlanSocket6({ port: 4789 })] : [openIp6TunnelSocket({ proto: 4 }), openIp6TunnelSocket({ proto: 41 })];
  say({ ready: true });
  const packets: ReturnType<typeof metaOf>[] = [];
  const deadline = Date.now() + 8000;
  const want = kind === "ip6tnl" ? 4 : 3;
  while (packets.length < want && Date.now() < deadline) {
    for (const fd of fds) {
      if (!(await waitReadable(fd, 200))) continue;
      const n = io.recvUnderlay6(fd, BATCH, peers);
      for (let i = 0; i < n; i++) packets.push(metaOf(i));
    }
  }
  for (const fd of fds) closeSocket(fd);
  say({ result: { n: packets.length, packets, peers: peers.size } });
}

interface RawSpec {
  src: string;
  dst: string;
  /** sockaddr (next hop) when different from dst */
  via?: string;
  sport: number;
  dport: number;
  payload: string;
  /** pad the UDP payload to this many bytes (oversize tests) */
  padTo?: number;
  /** set DF (default true) */
  df?: boolean;
}

function sendRawMode(specJson: string): void {
  const specs = JSON.parse(specJson) as RawSpec[];
  const fd = openRawSendSocket();
  const d = dv();
  const b = u8();
  specs.forEach((s, i) => {
    const payload = Buffer.alloc(Math.max(s.padTo ?? 0, Buffer.byteLength(s.payload)));
    payload.write(s.payload);
    const len = 28 + payload.length;
    const p = slot(i) + 64; // any offset works; the data path's output starts before HEADROOM
    b.fill(0, p, p + len);
    b[p] = 0x45;
    d.setUint16(p + 2, len); // total length
    // ID 0 and header checksum 0: the kernel fills both (reported by the peer).
    if (s.df !== false) b[p + 6] = 0x40; // DF
    b[p + 8] = 64;
    b[p + 9] = 17;
    d.setUint32(p + 12, parseIPv4(s.src));
    d.setUint32(p + 16, parseIPv4(s.dst));
    d.setUint16(p + 20, s.sport);
    d.setUint16(p + 22, s.dport);
    d.setUint16(p + 24, 8 + payload.length);
    // UDP checksum 0: "none" in IPv4, and the kernel leaves it alone.
    b.set(payload, p + 28);
    d.setUint32(meta(i) + abi.META_OFF, 64, true);
    d.setUint32(meta(i) + abi.META_LEN, len, true);
    d.setUint32(meta(i) + abi.META_ADDR, parseIPv4(s.via ?? s.dst), true);
  });
  const idx = Uint16Array.from(specs.keys());
  const r = io.sendRaw(fd, idx, specs.length);
  closeSocket(fd);
  say({ result: { ...r, stats: io.stats, errorsByErrno: io.errors.snapshot() } });
}

/** readTun/writeTun through io_uring: 40 UDP datagrams routed into the tun
 *  arrive in one or a few batches, in order; an empty queue reads 0 without
 *  waiting; 40 datagrams written back in one batch reach a local socket. */
async function tunRingMode(): Promise<void> {
  const ring = new TunRing(64);
  io.useRing(ring);
  const dev = openTun({ name: "wotun%d", mode: "tun" });
  setSysctl(`net.ipv6.conf.${dev.name}.disable_ipv6`, "1"); // before up: no router solicitations queued
  configureLink(dev.name, { mtu: 1400, addresses: ["198.18.10.1/24"], up: true });
  const t0 = Date.now();
  const empty = io.readTun(dev.fd, BATCH);
  const emptyMs = Date.now() - t0;
  // A sink on the tun's own address, for the written packets.
  const sink = spawn("python3", ["-u", "-c", `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.10.1", 7000)); s.settimeout(5)
print("up", flush=True)
got = []
try:
    while len(got) < 40: got.append(s.recv(100).decode())
except socket.timeout: pass
print(",".join(got), flush=True)
`], { stdio: ["ignore", "pipe", "inherit"] });
  let sinkOut = "";
  sink.stdout.on("data", (d) => (sinkOut += d));
  while (!sinkOut.includes("up")) await sleep(20);
  spawnSync("python3", ["-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(40): s.sendto(b"m%02d" % i, ("198.18.10.2", 7000))
`]);
  const payloads: string[] = [];
  const batches: number[] = [];
  const end = Date.now() + 5000;
  while (payloads.length < 40 && Date.now() < end) {
    if (!io.pollReadable([dev.fd], 100)) continue;
    const n = io.readTun(dev.fd, BATCH);
    if (n) batches.push(n);
    for (let i = 0; i < n; i++) {
      const p = packetOf(i);
      if (p[0] >> 4 === 4 && p[9] === 17) payloads.push(Buffer.from(p.subarray(28)).toString());
    }
  }
  // Turn each into a datagram to the sink: swap addresses, fix checksums (UDP's 0 = none).
  const b = u8();
  for (let i = 0; i < 40; i++) {
    const p = slot(i) + abi.HEADROOM;
    const len = 28 + 3;
    b.set([0x45, 0, 0, len, 0, i, 0, 0, 64, 17, 0, 0, 198, 18, 10, 2, 198, 18, 10, 1, 0x1b, 0x58, 0x1b, 0x58, 0, 11, 0, 0], p);
    b.set(Buffer.from(`r${String(i).padStart(2, "0")}`), p + 28);
    const c = checksum(b, p, p + 20);
    b[p + 10] = c >> 8;
    b[p + 11] = c & 0xff;
    const d = dv();
    d.setUint32(meta(i) + abi.META_OFF, abi.HEADROOM, true);
    d.setUint32(meta(i) + abi.META_LEN, len, true);
  }
  const idx = Uint16Array.from({ length: 40 }, (_, i) => i);
  const w = io.writeTun(dev.fd, idx, 40);
  await new Promise((r) => sink.once("exit", r));
  const received = sinkOut.split("\n").find((l) => l.startsWith("r")) ?? "";
  ring.close();
  closeTun(dev);
  say({ result: { empty, emptyMs, payloads, batches, write: w, received: received.split(",").filter(Boolean), stats: io.stats } });
}

async function main(): Promise<void> {
  const [mode, arg] = process.argv.slice(2);
  if (mode === "tun") await tunMode();
  else if (mode === "tunring") await tunRingMode();
  else if (mode === "vxlan" || mode === "ipip") await recvMode(mode, arg ?? "0.0.0.0");
  else if (mode === "vxlan6" || mode === "ip6tnl") await recv6Mode(mode, arg);
  else if (mode === "sendraw") sendRawMode(arg);
  else if (mode === "tapqueues") tapQueuesMode();
  else say({ error: `unknown mode ${mode}` });
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    say({ error: e.stack ?? String(e) });
    process.exit(1);
  },
);
