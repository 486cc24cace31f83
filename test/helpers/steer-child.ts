// The socket side of test/steer.test.ts, run inside a test namespace whose
// loopback holds 198.18.9.1:
//   ip netns exec NS node --import tsx test/helpers/steer-child.ts LANES
// Opens LANES VXLAN sockets in one SO_REUSEPORT group with the steering
// program attached, sends VXLAN datagrams (inner flows, their reverse
// directions, from many outer source ports) with node:dgram, and prints one
// JSON line: for every datagram, its label and the socket that received it.
import dgram from "node:dgram";
import * as libc from "../../src/io/libc.js";
import { closeSocket, openVxlanSocket } from "../../src/io/sockets.js";
import { attachSteering } from "../../src/io/steer.js";

const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");

export interface Probe {
  label: string;
  /** Inner IPv4 fields; proto 6/17 carry ports unless fragmented. */
  src: number;
  dst: number;
  proto: number;
  sport: number;
  dport: number;
  ihl: number;
  frag: number; // flags + offset word
  ethertype: number;
  outerSport: number;
  /** Bytes of the VXLAN payload to send (shorter: a truncated inner header). */
  cut?: number;
}

function vxlan(p: Probe): Buffer {
  const ihlBytes = p.ihl * 4;
  const b = Buffer.alloc(8 + 14 + ihlBytes + 8 + 16);
  b[0] = 0x08; // VXLAN flags: VNI valid
  b.writeUIntBE(100, 4, 3);
  b.writeUInt16BE(p.ethertype, 8 + 12);
  const ip = 22;
  b[ip] = 0x40 | p.ihl;
  b.writeUInt16BE(ihlBytes + 8 + 16, ip + 2);
  b.writeUInt16BE(p.frag, ip + 6);
  b[ip + 8] = 64;
  b[ip + 9] = p.proto;
  b.writeUInt32BE(p.src >>> 0, ip + 12);
  b.writeUInt32BE(p.dst >>> 0, ip + 16);
  b.writeUInt16BE(p.sport, ip + ihlBytes);
  b.writeUInt16BE(p.dport, ip + ihlBytes + 2);
  return p.cut === undefined ? b : b.subarray(0, p.cut);
}

async function main(): Promise<void> {
  const lanes = Number(process.argv[2]);
  const probes = JSON.parse(process.argv[3]) as Probe[];
  const fds: number[] = [];
  for (let k = 0; k < lanes; k++) {
    const fd = openVxlanSocket({ bindAddr: "198.18.9.1", port: 4789, reusePort: true });
    fds.push(fd);
    attachSteering(fd, lanes);
  }
  const senders = new Map<number, dgram.Socket>();
  for (const p of probes) {
    if (!senders.has(p.outerSport)) {
      const s = dgram.createSocket("udp4");
      await new Promise<void>((r) => s.bind(p.outerSport, "198.18.9.1", () => r()));
      senders.set(p.outerSport, s);
    }
  }
  const got: { label: string; lane: number }[] = [];
  const buf = new libc.Scratch(4096);
  for (const p of probes) {
    const msg = vxlan(p);
    await new Promise<void>((r, j) => senders.get(p.outerSport)!.send(msg, 4789, "198.18.9.1", (e) => (e ? j(e) : r())));
    // Loopback delivers within the send; look for it on every socket.
    let lane = -1;
    for (let t = 0; t < 100 && lane < 0; t++) {
      for (let k = 0; k < fds.length; k++) {
        const n = libc.read(fds[k], buf.addr, 4096);
        if (n === msg.length && Buffer.from(buf.u8.subarray(0, n)).equals(msg)) lane = k;
      }
      if (lane < 0) await new Promise((r) => setTimeout(r, 5));
    }
    got.push({ label: p.label, lane });
  }
  for (const s of senders.values()) s.close();
  for (const fd of fds) closeSocket(fd);
  say({ result: got });
}

main().catch((e) => say({ error: String(e?.stack ?? e) }));
