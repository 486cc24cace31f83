// The kernel side of test/gro.test.ts's real-tun check, run inside a test
// namespace:
//   ip netns exec NS node --import tsx test/helpers/gro-tun-child.ts tso6|no-tso6
// Tun "g6in" (IFF_VNET_HDR, TUN_F_CSUM|TSO4, plus TSO6 with `tso6`) is where
// our GRO frames are written, as the worker writes them; the kernel forwards
// what it accepts to tun "g6out", a plain tun without offloads, so it has to
// segment every GSO frame itself and compute each segment's checksum from
// the partial sum we left. Prints one JSON line: every frame written (its
// gso_type, length and write()'s result), the packets GRO was given, and the
// TCP packets read back from g6out, as hex.
import { execFileSync } from "node:child_process";
import * as abi from "../../src/dataplane/abi.js";
import { instantiateDataplane } from "../../src/dataplane/wasm.js";
import * as libc from "../../src/io/libc.js";
import { closeTun, openTun, setTunOffload } from "../../src/io/tun.js";
import { a6 } from "./packets6.js";
import { ACK, plainSegment, plainSegment6, PSH } from "../reference/slow-segment.js";

const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] });
const sysctl = (k: string, v: string) => execFileSync("sysctl", ["-qw", `${k}=${v}`]);
const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

async function main(): Promise<void> {
  const tso6 = process.argv[2] === "tso6";
  const tin = openTun({ name: "g6in", mode: "tun", vnetHdr: true });
  setTunOffload(tin, libc.TUN_F_CSUM | libc.TUN_F_TSO4 | (tso6 ? libc.TUN_F_TSO6 : 0));
  const tout = openTun({ name: "g6out", mode: "tun" });
  try {
    sysctl("net.ipv6.conf.all.forwarding", "1");
    sysctl("net.ipv4.ip_forward", "1");
    sysctl("net.ipv4.conf.all.rp_filter", "0");
    for (const [dev, a6net, a4net] of [["g6in", "2001:2:0:1::1/64", "198.18.20.1/24"], ["g6out", "2001:2:0:2::1/64", "198.18.21.1/24"]]) {
      sysctl(`net.ipv6.conf.${dev}.disable_ipv6`, "0");
      sysctl(`net.ipv4.conf.${dev}.rp_filter`, "0");
      ip("link", "set", "dev", dev, "mtu", "1500", "up");
      ip("addr", "add", a6net, "dev", dev, "nodad");
      ip("addr", "add", a4net, "dev", dev);
    }

    // Two flows, one per family, interleaved, through GRO: three frames
    // each, of 46, 46 and the rest of the segments (46 x 1400 + headers is
    // the most below 64 KiB); the last segment short, with PSH.
    const N6 = 100, N4 = 96, MSS = 1400;
    const src = a6("2001:2:0:1::5"), dst = a6("2001:2:0:2::7");
    const ts = Uint8Array.of(1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 2, 0);
    const sent6 = Array.from({ length: N6 }, (_, k) => plainSegment6({
      src, dst, tclass: 0x28, flow: 0xbeef1, hlim: 64, sport: 40000, dport: 5201, seq: (0xfffff000 + k * MSS) >>> 0, ack: 12345,
      flags: k === N6 - 1 ? ACK | PSH : ACK, window: 501, tcpOptions: ts, payload: bytes(k === N6 - 1 ? 321 : MSS, k),
    }));
    const sent4 = Array.from({ length: N4 }, (_, k) => plainSegment({
      src: (198 << 24 | 18 << 16 | 20 << 8 | 5) >>> 0, dst: (198 << 24 | 18 << 16 | 21 << 8 | 7) >>> 0, sport: 40001, dport: 5201, id: (0xfff0 + k) & 0xffff,
      seq: 777 + k * MSS, ack: 999, flags: k === N4 - 1 ? ACK | PSH : ACK, window: 502, tcpOptions: ts, ipOptions: new Uint8Array(0),
      tos: 0, ttl: 64, df: true, ecn: false, mss: MSS, payload: bytes(k === N4 - 1 ? 123 : MSS, k + 1),
    }));
    const pkts = sent6.flatMap((p, k) => (k < N4 ? [p, sent4[k]] : [p]));

    const w = instantiateDataplane("release");
    if (w.init(8, 2048, 16, 16, 16, 16, 16) !== abi.OK) throw new Error("init failed");
    const inp = w.scratchAlloc(pkts.length * 2048), ptrs = w.scratchAlloc(pkts.length * 4), lens = w.scratchAlloc(pkts.length * 4);
    const outCap = pkts.length * 2100, out = w.scratchAlloc(outCap), frames = w.scratchAlloc(pkts.length * 8);
    let m = new Uint8Array(w.memory.buffer), dv = new DataView(w.memory.buffer);
    pkts.forEach((p, i) => {
      m.set(p, inp + i * 2048);
      dv.setUint32(ptrs + 4 * i, inp + i * 2048, true);
      dv.setUint32(lens + 4 * i, p.length, true);
    });
    const k: number = w.groCoalesce(ptrs, lens, pkts.length, out, outCap, frames, pkts.length, abi.GRO_TCPV6);
    if (k < 0) throw new Error(`groCoalesce: ${k}`);
    m = new Uint8Array(w.memory.buffer);
    dv = new DataView(w.memory.buffer);
    const buf = new libc.Scratch(70000);
    const written: { gsoType: number; len: number; ret: number; errno: number }[] = [];
    for (let f = 0; f < k; f++) {
      const off = dv.getUint32(frames + 8 * f, true), len = dv.getUint32(frames + 8 * f + 4, true);
      buf.u8.set(m.subarray(out + off, out + off + len));
      const ret = libc.write(tin.fd, buf.addr, len);
      written.push({ gsoType: m[out + off + 1], len, ret, errno: ret < 0 ? libc.errno() : 0 });
    }

    const got6: string[] = [], got4: string[] = [];
    let quiet = 0;
    while (quiet < 50 && got6.length + got4.length < pkts.length) { // up to 1 s without a packet
      const n = libc.read(tout.fd, buf.addr, 65536);
      if (n <= 0) {
        quiet++;
        await sleep(20);
        continue;
      }
      quiet = 0;
      const p = buf.u8.slice(0, n);
      if (p[0] >> 4 === 6 && p[6] === 6) got6.push(hex(p));
      else if (p[0] >> 4 === 4 && p[9] === 6) got4.push(hex(p)); // router solicitations and the like are ignored
    }
    say({ result: { written, sent6: sent6.map(hex), sent4: sent4.map(hex), got6, got4 } });
  } finally {
    closeTun(tout);
    closeTun(tin);
  }
}

main().catch((e) => say({ error: String((e as Error).stack ?? e) }));
