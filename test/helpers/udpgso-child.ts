// The UDP GSO/GRO side of test/udpgso.test.ts, run inside a test namespace
// whose loopback holds 198.18.9.1-3 and 2001:2:0:ff::1-2:
//   ip netns exec NS node --import tsx test/helpers/udpgso-child.ts [eio|v6]
// ("v6": the two flows go over IPv6, the three other packets stay IPv4, in
// the same batch.)
// Builds outer VXLAN packets in slots of a bare WebAssembly.Memory (as the
// data path leaves them), sends them with UdpGsoSender, receives them with
// UdpGroReceiver on a UDP_GRO socket, splits the trains and prints one JSON
// line: what was sent, what arrived, and the offload statistics.
import * as abi from "../../src/dataplane/abi.js";
import { openVxlanSocket, openVxlanSocket6, closeSocket } from "../../src/io/sockets.js";
import { Underlay6Peers } from "../../src/io/underlay6.js";
import { ipv6ToBigint, ipv6ToBytes } from "../../src/config/net6.js";
import { enableUdpGro, openUdpSendSockets, UdpGroReceiver, UdpGsoSender } from "../../src/io/udpgso.js";
import * as libc from "../../src/io/libc.js";

const BATCH = 128;
const SLOT = 2048;
const META_BASE = 1024;
const SLOT_BASE = 8192;
const GRO_BUF = SLOT_BASE + BATCH * SLOT;
const memory = new WebAssembly.Memory({ initial: 64, maximum: 128 });
const dv = () => new DataView(memory.buffer);
const u8 = () => new Uint8Array(memory.buffer);
const SRC = 0xc6120901; // 198.18.9.1
const DST = 0xc6120902; // 198.18.9.2

const SRC6 = "2001:2:0:ff::1";
const DST6 = "2001:2:0:ff::2";

interface Spec { sport: number; tos: number; pay: number; dst: number; v6?: boolean }

/** Packet k: outer IPv4 (or IPv6: traffic class `tos`) + UDP (no checksum:
 *  the kernel writes its own) + a payload whose bytes encode k. */
function put(i: number, k: number, s: Spec): void {
  const off = abi.HEADROOM;
  const p = SLOT_BASE + i * SLOT + off;
  const d = dv();
  const h = s.v6 ? 40 : 20;
  const len = h + 8 + s.pay;
  if (s.v6) {
    d.setUint32(p, (6 << 28) | (s.tos << 20) | 0x12345);
    d.setUint16(p + 4, 8 + s.pay);
    d.setUint8(p + 6, 17);
    d.setUint8(p + 7, 64);
    ipv6ToBytes(ipv6ToBigint(SRC6), u8(), p + 8);
    ipv6ToBytes(ipv6ToBigint(DST6), u8(), p + 24);
  } else {
    d.setUint8(p, 0x45);
    d.setUint8(p + 1, s.tos);
    d.setUint16(p + 2, len);
    d.setUint8(p + 8, 64);
    d.setUint8(p + 9, 17);
    d.setUint32(p + 12, SRC);
    d.setUint32(p + 16, s.dst);
  }
  d.setUint16(p + h, s.sport);
  d.setUint16(p + h + 2, 4789);
  d.setUint16(p + h + 4, 8 + s.pay);
  for (let j = 0; j < s.pay; j++) d.setUint8(p + h + 8 + j, (k * 31 + j) & 255);
  d.setUint32(META_BASE + i * abi.META_SIZE + abi.META_OFF, off, true);
  d.setUint32(META_BASE + i * abi.META_SIZE + abi.META_LEN, len, true);
}

const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");

async function main(): Promise<void> {
  const v6 = process.argv[2] === "v6";
  const rx = v6 ? openVxlanSocket6({ port: 4789, rcvBuf: 8 << 20 }) : openVxlanSocket({ bindAddr: "198.18.9.2", port: 4789, rcvBuf: 8 << 20 });
  enableUdpGro(rx);
  const other = openVxlanSocket({ bindAddr: "198.18.9.3", port: 4789, rcvBuf: 1 << 20 });
  const tx = openUdpSendSockets("198.18.9.1", 4, { ttl: 33 });
  const tx6 = v6 ? openUdpSendSockets(SRC6, 4, { ttl: 33 }) : undefined;
  const region = { memory, slotBase: SLOT_BASE, slotSize: SLOT, metaBase: META_BASE, batch: BATCH };
  const sender = new UdpGsoSender(region, tx.fds, undefined, [], tx6?.fds);
  // Over IPv6 the receiver names the sender by the peer table: ::1 is 198.18.9.1.
  const peers6 = new Underlay6Peers();
  peers6.set([{ underlay: SRC, underlay6: ipv6ToBigint(SRC6) }]);
  // "eio": every GSO send fails with EIO, as on a NIC that cannot segment.
  if (process.argv[2] === "eio") sender.failGsoWith(libc.EIO);
  // Two flows of 1400-byte payloads (30 each, the last 700), interleaved in
  // runs of 10; one TOS change mid-run; 3 packets to another address.
  const specs: Spec[] = [];
  for (let r = 0; r < 6; r++) {
    const sport = r % 2 === 0 ? 40001 : 40002;
    for (let j = 0; j < 10; j++) specs.push({ sport, tos: r === 2 && j >= 5 ? 0xb8 : 0, pay: r >= 4 && j === 9 ? 700 : 1400, dst: DST, v6 });
  }
  for (let j = 0; j < 3; j++) specs.push({ sport: 40003, tos: 0, pay: 200, dst: 0xc6120903 });
  specs.forEach((s, k) => put(k, k, s));
  const idx = Uint16Array.from(specs.map((_, k) => k));
  const errors = sender.send(idx, specs.length);

  const recv = new UdpGroReceiver(memory, GRO_BUF, 8, undefined, v6 ? peers6 : undefined);
  const got: { sport: number; tos: number; seg: number; len: number; src: number; datagrams: string[] }[] = [];
  const deadline = Date.now() + 3000;
  let datagrams = 0;
  while (datagrams < 60 && Date.now() < deadline) {
    const n = recv.recv(rx);
    if (!n) {
      await new Promise((r) => setTimeout(r, 10));
      continue;
    }
    for (let m = 0; m < n; m++) {
      const o = recv.out[m];
      const seg = o.seg || o.len;
      const parts: string[] = [];
      for (let at = 0; at < o.len; at += seg) parts.push(Buffer.from(u8().slice(o.ptr + at, o.ptr + Math.min(o.len, at + seg))).toString("hex").slice(0, 8) + ":" + Math.min(seg, o.len - at));
      datagrams += parts.length;
      got.push({ sport: o.sport, tos: o.tos, seg: o.seg, len: o.len, src: o.src, datagrams: parts });
    }
  }
  // Source ports as the receiver saw them: one recvfrom per datagram on the other socket.
  const otherCount = (() => {
    const buf = new libc.Scratch(4096);
    let c = 0;
    while (libc.read(other, buf.addr, 4096) > 0) c++;
    return c;
  })();
  const expected = specs.filter((s) => s.dst === DST).map((s, k) => `${Buffer.from(Array.from({ length: 4 }, (_, j) => (k * 31 + j) & 255)).toString("hex")}:${s.pay}`);
  say({ result: { errors, stats: sender.stats, ports: (tx6 ?? tx).ports, got, expected, otherCount, truncated: recv.truncated } });
  for (const fd of [rx, other, ...tx.fds, ...(tx6?.fds ?? [])]) closeSocket(fd);
}

main().catch((e) => say({ error: String(e?.stack ?? e) }));
