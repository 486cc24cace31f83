// The offload path's WASM stages alone (release build, one core, no I/O):
//   tx  ingestSuperframe (TSO of 64 KiB TCP super-frames into the input
//       slots, full checksums per segment) + processPodBatch (LPM, VXLAN
//       encapsulation): five super-frames (230 segments) per batch.
//   rx  ingestDatagrams (a UDP GRO train split into the slots) +
//       processVxlanBatch (decapsulation checks) + groDeviceBatch (TCP GRO
//       into super-frames, every input checksum verified).
// Reported as Mpps of MSS-sized segments and Gbit/s of TCP payload.
// Run: npm run build && node dist/bench/offload.js (npm run bench includes it)
import { resolve } from "node:path";
import { Dataplane } from "../src/dataplane/dataplane.js";
import { RouteRules } from "../src/dataplane/routes.js";
import { VERDICT_TO_DEVICE, VERDICT_TX_UNDERLAY } from "../src/dataplane/abi.js";

const ipn = (s: string) => s.split(".").reduce((a, x) => (a << 8) | Number(x), 0) >>> 0;
const MSS = 1398; // 1398 + 12 bytes of TCP options + 40 = 1450, the device MTU
const SEGS = 46;
const PER_BATCH = 5;
const BATCH = 256;

function sum16(b: Uint8Array, off: number, len: number, acc = 0): number {
  for (let i = 0; i < len; i += 2) acc += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  return acc;
}
const fold = (s: number) => {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
};

/** virtio_net_hdr (NEEDS_CSUM, GSO_TCPV4) + an IPv4/TCP super-frame with a
 *  partial (pseudo-header) checksum, as an offloading tun hands it over. */
function superFrame(src: string, dst: string): Uint8Array {
  const thl = 32;
  const tl = 20 + thl + MSS * SEGS;
  const b = new Uint8Array(10 + tl);
  const dv = new DataView(b.buffer);
  b[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  b[1] = 1; // GSO_TCPV4
  dv.setUint16(2, 20 + thl, true);
  dv.setUint16(4, MSS, true);
  dv.setUint16(6, 20, true);
  dv.setUint16(8, 16, true);
  const p = 10;
  b[p] = 0x45;
  dv.setUint16(p + 2, tl);
  dv.setUint16(p + 6, 0x4000);
  b[p + 8] = 64;
  b[p + 9] = 6;
  dv.setUint32(p + 12, ipn(src));
  dv.setUint32(p + 16, ipn(dst));
  dv.setUint16(p + 10, ~fold(sum16(b, p, 20)) & 0xffff);
  const t = p + 20;
  dv.setUint16(t, 40000);
  dv.setUint16(t + 2, 5001);
  dv.setUint32(t + 4, 1000);
  dv.setUint32(t + 8, 1);
  b[t + 12] = (thl / 4) << 4;
  b[t + 13] = 0x18;
  dv.setUint16(t + 14, 500);
  for (let i = 0; i < MSS * SEGS; i++) b[t + thl + i] = (i * 7) & 255;
  const pseudo = fold((ipn(src) >>> 16) + (ipn(src) & 0xffff) + (ipn(dst) >>> 16) + (ipn(dst) & 0xffff) + 6 + (tl - 20));
  dv.setUint16(t + 16, pseudo);
  return b;
}

function node(underlay: string, peerUnderlay: string, peerPod: string, ownPod: string): Dataplane {
  const dp = new Dataplane({ batch: BATCH, tbl8Groups: 64 });
  const mac = (a: string) => BigInt("0x0e00" + ipn(a).toString(16).padStart(8, "0"));
  dp.configure({ mode: "tun", underlay: ipn(underlay), overlay: ipn(ownPod), vtepMac: mac(underlay), vni: 100 });
  dp.setPeer(0, ipn(peerUnderlay), mac(peerUnderlay));
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "vxlan", 0, ipn(peerPod));
  dp.neighSet(ipn(peerPod), mac(peerUnderlay));
  dp.fdbSet(mac(peerUnderlay), 0);
  const routes = new RouteRules(dp.lpmBackend);
  routes.add(ipn(ownPod), 24, 0);
  routes.add(ipn(peerPod), 24, 1);
  if (dp.raw.offloadSetup() !== 0) throw new Error("offloadSetup");
  return dp;
}

export interface OffloadBenchResult {
  txMpps: number;
  txGbps: number;
  rxMpps: number;
  rxGbps: number;
}

function time(fn: () => number, seconds = 2): number {
  for (let i = 0; i < 50; i++) fn();
  let pk = 0;
  const t0 = process.hrtime.bigint();
  let el = 0;
  while (el < seconds) {
    for (let i = 0; i < 50; i++) pk += fn();
    el = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  return pk / el;
}

export async function runOffloadBench(): Promise<OffloadBenchResult> {
  const tx = node("198.18.0.12", "198.18.1.13", "198.19.3.0", "198.19.2.0");
  const rx = node("198.18.1.13", "198.18.0.12", "198.19.2.0", "198.19.3.0");
  const sf = superFrame("198.19.2.5", "198.19.3.7");
  const sfPtr = Number(tx.raw.allocScratch(sf.length + 64));
  tx.u8.set(sf, sfPtr);
  const txBatch = () => {
    let n = 0;
    for (let k = 0; k < PER_BATCH; k++) n += tx.raw.ingestSuperframe(sfPtr, sf.length, n);
    tx.processPod(n);
    return n;
  };
  const n = txBatch();
  if (n !== SEGS * PER_BATCH || tx.result(0).verdict !== VERDICT_TX_UNDERLAY) throw new Error(`bench setup: tx gave ${n} segments, verdict ${tx.result(0).verdict}`);
  // One flow's VXLAN payloads of a super-frame, back to back: a UDP GRO train.
  const seg = tx.result(0).len - 28;
  const trainPtr = Number(rx.raw.allocScratch(SEGS * seg + 64));
  let tl = 0;
  for (let i = 0; i < SEGS; i++) {
    const b = tx.readPacket(i);
    rx.u8.set(b.subarray(28), trainPtr + tl);
    tl += b.length - 28;
  }
  const outCap = BATCH * (rx.slotSize + 16);
  const out = Number(rx.raw.allocScratch(outCap));
  const frames = Number(rx.raw.allocScratch(BATCH * 8));
  const rxBatch = () => {
    let m = 0;
    for (let k = 0; k < PER_BATCH; k++) m += rx.raw.ingestDatagrams(trainPtr, tl, seg, m, ipn("198.18.0.12"), ipn("198.18.1.13"), 0);
    rx.processVxlan(m);
    if (rx.raw.groDeviceBatch(m, out, outCap, frames, 0) !== PER_BATCH) throw new Error("bench: GRO did not coalesce");
    return m;
  };
  rxBatch();
  if (rx.result(0).verdict !== VERDICT_TO_DEVICE) throw new Error(`bench setup: rx verdict ${rx.result(0).verdict} reason ${rx.result(0).reason}`);
  const txPps = time(txBatch);
  const rxPps = time(rxBatch);
  return { txMpps: txPps / 1e6, txGbps: (txPps * MSS * 8) / 1e9, rxMpps: rxPps / 1e6, rxGbps: (rxPps * MSS * 8) / 1e9 };
}

const isMain = process.argv[1] && resolve(process.argv[1]).endsWith("bench/offload.js");
if (isMain) console.log(JSON.stringify(await runOffloadBench()));
