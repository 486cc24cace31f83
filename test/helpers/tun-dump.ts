// A stand-in for the data path's tun end, run inside a test namespace:
//   ip netns exec NS node --import tsx test/helpers/tun-dump.ts NAME [--vnet]
// Opens tun NAME (src/io/tun.ts), brings it up (IPv6 off, so only what is
// steered shows), prints {"ready":true,"ifindex":N}, then one JSON line per
// packet the kernel hands it: {"pkt":HEX} (with --vnet: IFF_VNET_HDR and
// TUN_F_CSUM|TUN_F_TSO4, as `offloads: true` opens it, and {"vnet":HEX} of
// the 10-byte virtio_net_hdr). Stdin lines {"write":HEX} are written into the
// tun as if the data path sent them to the kernel. SIGTERM closes it.
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { closeTun, configureLink, openTun, setTunOffload } from "../../src/io/tun.js";
import * as libc from "../../src/io/libc.js";

const name = process.argv[2];
const vnet = process.argv.includes("--vnet");
const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");
const VNET = 10;

const dev = openTun({ name, mode: "tun", vnetHdr: vnet });
if (vnet) setTunOffload(dev, libc.TUN_F_CSUM | libc.TUN_F_TSO4);
try {
  writeFileSync(`/proc/sys/net/ipv6/conf/${dev.name}/disable_ipv6`, "1");
} catch {
  // no IPv6 in this kernel
}
configureLink(dev.name, { up: true });
const ifindex = Number(readFileSync(`/sys/class/net/${dev.name}/ifindex`, "utf8").trim());

const rx = new libc.Scratch(65536 + VNET);
const tx = new libc.Scratch(65536 + VNET);

const timer = setInterval(() => {
  for (;;) {
    const n = libc.read(dev.fd, rx.addr, rx.u8.length);
    if (n <= 0) break;
    const b = Buffer.from(rx.u8.subarray(0, n));
    if (vnet) say({ vnet: b.subarray(0, VNET).toString("hex"), pkt: b.subarray(VNET).toString("hex") });
    else say({ pkt: b.toString("hex") });
  }
}, 5);

createInterface({ input: process.stdin }).on("line", (line) => {
  const m = JSON.parse(line) as { write: string };
  const body = Buffer.from(m.write, "hex");
  const frame = vnet ? Buffer.concat([Buffer.alloc(VNET), body]) : body;
  tx.u8.set(frame, 0);
  say({ wrote: libc.write(dev.fd, tx.addr, frame.length) });
});

process.on("SIGTERM", () => {
  clearInterval(timer);
  closeTun(dev);
  process.exit(0);
});
say({ ready: true, name: dev.name, ifindex });
