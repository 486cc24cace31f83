// Replays every fuzz seed (fuzz/corpus/<target>/) and every crash the fuzzer
// ever found (fuzz/regressions/<target>/) through the same release module via
// the TypeScript wrapper, checking the invariants fuzz/harness.c asserts, so
// `npm test` covers them without clang. The input format and the topology
// mirror fuzz/harness.c; keep the two in step.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { Dataplane, type DeviceMode } from "../src/dataplane/dataplane.js";
import { RouteRules } from "../src/dataplane/routes.js";
import { repoRoot } from "../src/dataplane/wasm.js";
import { inetChecksum, ip, mac } from "./helpers/packets.js";
import { DEV_MAC, W1, W2, W3, W4, worker2, worker3, type Node } from "./helpers/topology.js";

const BATCH = 8; // 4 packets, each followed by a guard record
const MAX_PKTS = 4;
const MIN_OFF = 64;
const SEP = [0xff, 0x50, 0x4b, 0xff]; // "\xffPK\xff"
const SPORT_MIN = 32768;
const SPORT_MAX = 60999;
const W8_MAC = mac("0e:00:00:00:08:00");
const TARGETS = ["vxlan-decap", "vxlan-inner", "ipip-decap", "pod-tun", "pod-tap", "roundtrip"] as const;
type Target = (typeof TARGETS)[number];

/** worker2 plus the next hops and routes fuzz/harness.c adds (tbl8 prefixes,
 *  a vxlan next hop without a neighbour, one whose neighbour has no FDB entry). */
function fuzzWorker2(mode: DeviceMode): Node {
  const n = worker2(mode, { batch: BATCH });
  n.dp.setNexthop(5, "vxlan", 0, ip("198.19.7.0"));
  n.dp.setNexthop(6, "vxlan", 0, ip("198.19.8.0"));
  n.dp.neighSet(ip("198.19.8.0"), W8_MAC);
  n.routes.add("198.19.5.0", 25, 3);
  n.routes.add("198.19.5.128", 26, 1);
  n.routes.add("198.19.5.200", 32, 4);
  n.routes.add("198.19.7.0", 24, 5);
  n.routes.add("198.19.8.0", 24, 6);
  return n;
}

/** worker1 (tun): peer 0 worker2 over IPIP. */
function worker1(): Node {
  const dp = new Dataplane({ batch: BATCH, tbl8Groups: 256 });
  dp.configure({ mode: "tun", underlay: W1.underlay, overlay: W1.vtep, vtepMac: W1.mac, devMac: DEV_MAC, vni: 100 });
  dp.setPeer(0, W2.underlay, W2.mac);
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "ipip", 0, 0);
  const routes = new RouteRules(dp.lpmBackend);
  routes.add("198.19.1.0", 24, 0);
  routes.add("198.19.2.0", 24, 1);
  return { dp, routes };
}

interface Pkt {
  bytes: Uint8Array;
  off: number;
  addr: number;
  tos: number;
}

const be16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const be32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const be48 = (b: Uint8Array, o: number) => (BigInt(be16(b, o)) << 32n) | BigInt(be32(b, o + 2));

class Violation extends Error {}
function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Violation(what);
}

function place(ctrl: number, len: number, slotSize: number): number {
  switch (ctrl & 3) {
    case 1: return slotSize - len;
    case 2: return MIN_OFF;
    default: return abi.HEADROOM;
  }
}

function split(data: Uint8Array): Uint8Array[] {
  const segs: Uint8Array[] = [];
  let start = 1;
  let i = 1;
  while (i + 4 <= data.length && segs.length < MAX_PKTS - 1) {
    if (data[i] === SEP[0] && data[i + 1] === SEP[1] && data[i + 2] === SEP[2] && data[i + 3] === SEP[3]) {
      segs.push(data.subarray(start, i));
      i += 4;
      start = i;
    } else {
      i++;
    }
  }
  segs.push(data.subarray(start));
  return segs;
}

/** Load packets into slots 0, 2, 4, ... with guard records (off 0) in the odd
 *  slots, whose bytes are filled with 0xA5 and must stay so. */
function loadBatch(dp: Dataplane, pkts: Pkt[]): { n: number; before: bigint[] } {
  const u8 = dp.u8;
  for (let i = 0; i < BATCH; i++) u8.fill(0, dp.metaPtr(i), dp.metaPtr(i) + abi.META_SIZE);
  pkts.forEach((p, k) => dp.writePacket(2 * k, p.bytes, { off: p.off, addr: p.addr, tos: p.tos }));
  for (let i = 1; i < BATCH; i += 2) u8.fill(0xa5, dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize);
  const before = Array.from({ length: abi.COUNTER_COUNT }, (_, i) => dp.counter(i));
  return { n: 2 * pkts.length, before };
}

function checkIpv4(dp: Dataplane, at: number, len: number, what: string): void {
  const b = dp.u8;
  check(dp.raw.checkIpv4(at, len) === 0, `${what}: checkIpv4 rejects the output (len ${len})`);
  check(len >= 20 && b[at] >> 4 === 4, `${what}: not IPv4`);
  const hl = (b[at] & 15) * 4;
  check(hl >= 20 && hl <= len, `${what}: header length ${hl} of ${len}`);
  check(be16(b, at + 2) === len, `${what}: total length ${be16(b, at + 2)} != ${len}`);
  check(inetChecksum(b.subarray(at, at + hl)) === 0, `${what}: bad IPv4 header checksum`);
}

function checkForwarded(out: Uint8Array, orig: Uint8Array, what: string): void {
  check(out.length === orig.length, `${what}: forwarded ${out.length} bytes of ${orig.length}`);
  check(out[8] + 1 === orig[8], `${what}: TTL ${orig[8]} -> ${out[8]}`);
  for (let i = 0; i < out.length; i++) {
    if (i !== 8 && i !== 10 && i !== 11) check(out[i] === orig[i], `${what}: byte ${i} changed`);
  }
}

/** The inner IPv4 datagram of a pod-side input (tap: behind Ethernet), cut to its total length. */
function podIp(input: Uint8Array, tap: boolean): Uint8Array {
  const p = input.subarray(tap ? 14 : 0);
  return p.subarray(0, be16(p, 2));
}

function checkPacket(node: Node, mode: DeviceMode, slot: number, input: Pkt, pod: boolean): void {
  const { dp } = node;
  const r = dp.result(slot);
  check(r.verdict < abi.VERDICT_COUNT, `verdict ${r.verdict} out of range`);
  check(r.reason < abi.REASON_COUNT, `reason ${r.reason} out of range`);
  if (r.verdict === abi.VERDICT_DROP) {
    check(r.reason !== 0, "a drop without a reason");
    return;
  }
  check(r.off + r.len <= dp.slotSize, `verdict ${r.verdict}: off ${r.off} + len ${r.len} beyond the slot`);
  check(r.len > 0, "an empty packet");
  const at = dp.slotPtr(slot) + r.off;
  const out = dp.readPacket(slot);
  const tap = mode === "tap";
  const vtepMac = vtepMacOf(node);
  switch (r.verdict) {
    case abi.VERDICT_TX_UNDERLAY: {
      check(r.reason === 0, "TX_UNDERLAY with a reason");
      checkIpv4(dp, at, r.len, "TX_UNDERLAY outer");
      check((out[0] & 15) === 5, "outer header has options");
      check(be32(out, 12) === underlayOf(node), "outer source");
      check(be32(out, 16) === r.addr >>> 0, "outer destination != meta addr");
      let inner: number;
      if (out[9] === 17) {
        check(r.len >= 70, "short vxlan packet");
        check(be16(out, 24) === r.len - 20, "UDP length");
        check(be16(out, 22) === 4789, "UDP destination port");
        check(be16(out, 20) >= SPORT_MIN && be16(out, 20) <= SPORT_MAX, "UDP source port");
        check(be16(out, 26) === 0, "UDP checksum not zero");
        check(be32(out, 28) === 0x08000000, "VXLAN flags");
        check(be32(out, 32) === 100 << 8, "VNI");
        check(be48(out, 42) === vtepMac && be16(out, 48) === 0x0800, "inner Ethernet");
        inner = 50;
      } else {
        check(out[9] === 4, `outer protocol ${out[9]}`);
        inner = 20;
      }
      checkIpv4(dp, at + inner, r.len - inner, "TX_UNDERLAY inner");
      check(out[1] === out[inner + 1], "outer TOS != inner TOS");
      check((be16(out, 6) & 0xbfff) === 0 && (be16(out, 6) & 0x4000) === (be16(out, inner + 6) & 0x4000), "outer flags");
      if (pod) checkForwarded(out.subarray(inner), podIp(input.bytes, tap), "TX_UNDERLAY inner");
      break;
    }
    case abi.VERDICT_TX_DIRECT:
      check(r.reason === 0, "TX_DIRECT with a reason");
      checkIpv4(dp, at, r.len, "TX_DIRECT");
      check(r.addr >>> 0 === W4.underlay && r.peer === 2, "TX_DIRECT next hop");
      if (pod) checkForwarded(out, podIp(input.bytes, tap), "TX_DIRECT");
      break;
    case abi.VERDICT_TO_DEVICE: {
      check(r.reason === 0, "TO_DEVICE with a reason");
      let o = 0;
      if (tap) {
        check(r.len >= 34, "short TO_DEVICE frame");
        check(be48(out, 0) === DEV_MAC && be48(out, 6) === vtepMac && be16(out, 12) === 0x0800, "TO_DEVICE Ethernet header");
        o = 14;
      }
      checkIpv4(dp, at + o, r.len - o, "TO_DEVICE");
      if (pod) checkForwarded(out.subarray(o), podIp(input.bytes, tap), "TO_DEVICE (local)");
      break;
    }
    case abi.VERDICT_REPLY: {
      check(pod, "REPLY from a decap path");
      if (tap && r.len >= 14 && be16(out, 12) === 0x0806) {
        check(r.reason === 0, "ARP reply with a reason");
        check(r.len === 60 || (r.len === 42 && r.off + 60 > dp.slotSize), `ARP reply of ${r.len} bytes at ${r.off}`);
        check(be16(out, 14) === 1 && be16(out, 16) === 0x0800 && out[18] === 6 && out[19] === 4 && be16(out, 20) === 2, "ARP header");
        check(be48(out, 0) === be48(input.bytes, 22) && be48(out, 32) === be48(input.bytes, 22), "ARP reply not to the asker");
        check(be32(out, 28) === be32(input.bytes, 38), "ARP reply sender address");
        break;
      }
      check(r.reason !== 0, "ICMP error without a reason");
      let o = 0;
      if (tap) {
        check(r.len >= 14 && r.len <= 576 + 14, `ICMP error frame of ${r.len} bytes`);
        check(be16(out, 12) === 0x0800 && be48(out, 6) === vtepMac, "ICMP error Ethernet header");
        check(be48(out, 0) === be48(input.bytes, 6), "ICMP error not to the sender's MAC");
        o = 14;
      }
      const len = r.len - o;
      checkIpv4(dp, at + o, len, "REPLY");
      check(len <= 576, `ICMP error of ${len} bytes`);
      check(out[o + 9] === 1, "REPLY protocol");
      const hl = (out[o] & 15) * 4;
      check(len >= hl + 28, "short ICMP error");
      check(inetChecksum(out.subarray(o + hl)) === 0, "bad ICMP checksum");
      check(out[o + hl] === 3 || out[o + hl] === 11, `ICMP type ${out[o + hl]}`);
      break;
    }
  }
}

const nodeInfo = new WeakMap<Node, { underlay: number; vtepMac: bigint }>();
const underlayOf = (n: Node) => nodeInfo.get(n)!.underlay;
const vtepMacOf = (n: Node) => nodeInfo.get(n)!.vtepMac;

function checkBatch(node: Node, mode: DeviceMode, n: number, before: bigint[], inputs: Pkt[], rxCounter: number, pod: boolean): void {
  const { dp } = node;
  const wantV = new Array<bigint>(abi.VERDICT_COUNT).fill(0n);
  const wantR = new Array<bigint>(abi.REASON_COUNT).fill(0n);
  let rx = 0n;
  for (let i = 0; i < n; i++) {
    const r = dp.result(i);
    if (i & 1) {
      check(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET, `guard record ${i} not dropped as R_BAD_OFFSET`);
      const g = dp.u8.subarray(dp.slotPtr(i), dp.slotPtr(i) + dp.slotSize);
      check(g.every((b) => b === 0xa5), `guard slot ${i} was written`);
    } else {
      checkPacket(node, mode, i, inputs[i / 2], pod);
    }
    if (r.verdict < abi.VERDICT_COUNT) wantV[r.verdict]++;
    if ((r.verdict === abi.VERDICT_DROP || r.reason !== 0) && r.reason < abi.REASON_COUNT) wantR[r.reason]++;
    if (!(r.verdict === abi.VERDICT_DROP && r.reason === abi.R_BAD_OFFSET)) rx++;
  }
  let sum = 0n;
  for (let v = 0; v < abi.VERDICT_COUNT; v++) {
    const d = dp.counter(abi.C_VERDICT_BASE + v) - before[abi.C_VERDICT_BASE + v];
    check(d === wantV[v], `verdict counter ${v} moved by ${d}, ${wantV[v]} packets got it`);
    sum += d;
  }
  check(sum === BigInt(n), `verdict counters add up to ${sum} for ${n} packets`);
  for (let r = 0; r < abi.REASON_COUNT; r++) {
    const d = dp.counter(abi.C_DROP_BASE + r) - before[abi.C_DROP_BASE + r];
    check(d === wantR[r], `drop counter ${r} moved by ${d}, expected ${wantR[r]}`);
  }
  check(dp.counter(abi.C_BATCHES) - before[abi.C_BATCHES] === 1n, "batch counter");
  check(dp.counter(rxCounter) - before[rxCounter] === rx, "rx counter");
}

/** fuzz/harness.c build_roundtrip(): a valid inner packet from the recipe. */
function buildRoundtrip(r: Uint8Array): { pkt: Uint8Array; ipip: boolean } {
  const h = new Uint8Array(12);
  h.set(r.subarray(0, 12));
  let rest = r.subarray(Math.min(12, r.length));
  const ipip = (h[0] & 1) === 1;
  const words = Math.min((h[0] >> 2) & 15, 10);
  const hl = 20 + 4 * words;
  const proto = h[3] >= 0x80 ? h[3] : 17;
  const opts = new Uint8Array(4 * words).fill(1);
  opts.set(rest.subarray(0, 4 * words));
  rest = rest.subarray(Math.min(4 * words, rest.length));
  const max = 1500 - (ipip ? 20 : 50);
  const l4 = proto === 17 ? 8 : 0;
  const plen = Math.min(rest.length, max - hl - l4);
  const total = hl + l4 + plen;
  const b = new Uint8Array(total);
  b[0] = 0x40 | (hl / 4);
  b[1] = h[1];
  b[2] = total >> 8;
  b[3] = total & 255;
  b[4] = h[6];
  b[5] = h[7];
  b[6] = h[0] & 2 ? 0x40 : 0;
  b[8] = 2 + (h[2] % 254);
  b[9] = proto;
  b.set([198, 19, 2, h[4]], 12);
  b.set([198, 19, ipip ? 1 : 3, h[5]], 16);
  b.set(opts, 20);
  const c = inetChecksum(b.subarray(0, hl));
  b[10] = c >> 8;
  b[11] = c & 255;
  if (proto === 17) {
    b.set(h.subarray(8, 12), hl);
    b[hl + 4] = (8 + plen) >> 8;
    b[hl + 5] = (8 + plen) & 255;
  }
  b.set(rest.subarray(0, plen), hl + l4);
  return { pkt: b, ipip };
}

interface Nodes {
  tun: Node;
  tap: Node;
  w3: Node;
  w1: Node;
}

function makeNodes(): Nodes {
  const tun = fuzzWorker2("tun");
  const tap = fuzzWorker2("tap");
  const w3 = worker3("tun", { batch: BATCH });
  const w1 = worker1();
  nodeInfo.set(tun, { underlay: W2.underlay, vtepMac: W2.mac });
  nodeInfo.set(tap, { underlay: W2.underlay, vtepMac: W2.mac });
  nodeInfo.set(w3, { underlay: W3.underlay, vtepMac: W3.mac });
  nodeInfo.set(w1, { underlay: W1.underlay, vtepMac: W1.mac });
  return { tun, tap, w3, w1 };
}

function replay(nodes: Nodes, target: Target, data: Uint8Array): void {
  if (data.length < 1) return;
  const ctrl = data[0];
  const slotSize = nodes.tun.dp.slotSize;
  if (target === "roundtrip") {
    const { pkt, ipip } = buildRoundtrip(data.subarray(1));
    const a = nodes.tun;
    const input = { bytes: pkt, off: place(ctrl, pkt.length, slotSize), addr: 0, tos: 0 };
    let { n, before } = loadBatch(a.dp, [input]);
    a.dp.processPod(n);
    checkBatch(a, "tun", n, before, [input], abi.C_RX_POD_PKTS, true);
    const ra = a.dp.result(0);
    check(ra.verdict === abi.VERDICT_TX_UNDERLAY, `round trip: worker2 gave verdict ${ra.verdict} reason ${ra.reason}`);
    const o = a.dp.readPacket(0);
    const peer = ipip ? nodes.w1 : nodes.w3;
    const rx = ipip ? { bytes: o, off: abi.HEADROOM, addr: 0, tos: 0 } : { bytes: o.slice(28), off: abi.HEADROOM, addr: be32(o, 12), tos: o[1] };
    ({ n, before } = loadBatch(peer.dp, [rx]));
    if (ipip) peer.dp.processIpip(n);
    else peer.dp.processVxlan(n);
    checkBatch(peer, "tun", n, before, [rx], ipip ? abi.C_RX_IPIP_PKTS : abi.C_RX_VXLAN_PKTS, false);
    const rb = peer.dp.result(0);
    check(rb.verdict === abi.VERDICT_TO_DEVICE, `round trip: peer gave verdict ${rb.verdict} reason ${rb.reason}`);
    checkForwarded(peer.dp.readPacket(0), pkt, "decap(encap(x))");
    return;
  }
  const mode: DeviceMode = target === "pod-tap" ? "tap" : "tun";
  const node = mode === "tap" ? nodes.tap : nodes.tun;
  const pkts: Pkt[] = [];
  for (const s of split(data)) {
    let bytes: Uint8Array;
    let addr = 0;
    let tos = 0;
    if (target === "vxlan-decap") {
      if (s.length < 5) continue;
      addr = be32(s, 0);
      tos = s[4];
      bytes = s.slice(5);
    } else if (target === "vxlan-inner") {
      if (s.length < 1) continue;
      tos = s[0];
      addr = W3.underlay;
      const hdr = [0x08, 0, 0, 0, 0, 0, 100, 0, 0x0e, 0, 0, 0, 0x02, 0, 0x0e, 0, 0, 0, 0x03, 0, 0x08, 0];
      bytes = new Uint8Array(hdr.length + s.length - 1);
      bytes.set(hdr);
      bytes.set(s.subarray(1), hdr.length);
    } else {
      bytes = s.slice();
    }
    if (bytes.length > slotSize - MIN_OFF) continue;
    pkts.push({ bytes, off: place(ctrl, bytes.length, slotSize), addr, tos });
  }
  if (pkts.length === 0) return;
  const { n, before } = loadBatch(node.dp, pkts);
  if (target === "vxlan-decap" || target === "vxlan-inner") {
    node.dp.processVxlan(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_VXLAN_PKTS, false);
  } else if (target === "ipip-decap") {
    node.dp.processIpip(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_IPIP_PKTS, false);
  } else {
    node.dp.processPod(n);
    checkBatch(node, mode, n, before, pkts, abi.C_RX_POD_PKTS, true);
  }
}

const fuzzDir = join(repoRoot(), "fuzz");
function files(target: Target): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  for (const kind of ["corpus", "regressions"]) {
    const d = join(fuzzDir, kind, target);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d).sort()) out.push({ name: `${kind}/${target}/${f}`, path: join(d, f) });
  }
  return out;
}

describe("fuzz corpus and regressions replay through the release module", () => {
  const nodes = makeNodes();
  for (const target of TARGETS) {
    const list = files(target);
    it(`${target}: has seeds`, () => {
      expect(list.length).toBeGreaterThan(0);
    });
    for (const f of list) {
      it(f.name, () => {
        replay(nodes, target, new Uint8Array(readFileSync(f.path)));
      });
    }
  }

  it("a violated invariant fails the replay (the checks are live)", () => {
    // A TO_DEVICE packet whose length disagrees with its header must be caught.
    const { dp } = nodes.tun;
    expect(() => checkIpv4(dp, dp.slotPtr(0), 19, "probe")).toThrow(Violation);
  });
});
