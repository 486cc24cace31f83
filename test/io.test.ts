// src/io against the real kernel: a tun device, a UDP socket, raw sockets,
// inside throwaway namespaces. The I/O runs in a child process inside a
// namespace (test/helpers/io-child.ts); peers are python3 one-liners.
//
//   ns "t": tun wotunN 198.18.10.1/24          (ping -> tun -> readTun, writeTun -> ping)
//   ns "a": a0 198.18.0.1/24  <-veth->  ns "b": b0 198.18.0.2/24, lo 198.19.9.1/32
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { Topology, skipUnlessRoot, type Namespace } from "./helpers/netns.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const CHILD = ["node", "--import", "tsx", "test/helpers/io-child.ts"];
const skip = skipUnlessRoot();

interface Meta {
  off: number;
  len: number;
  addr: string;
  addr2: string;
  tos: number;
  hex: string;
}

function parse<T>(line: string): T {
  const o = JSON.parse(line) as { result?: T; error?: string };
  if (o.error) throw new Error(`child: ${o.error}`);
  return o.result as T;
}

const isReady = (l: string) => l.startsWith('{"ready"');
const isDone = (l: string) => l.startsWith('{"result"') || l.startsWith('{"error"');

describe.skipIf(skip !== null)(`packet I/O against the kernel${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let topo: Topology;
  let t: Namespace, a: Namespace, b: Namespace;

  beforeAll(() => {
    topo = new Topology("io");
    t = topo.ns("t");
    a = topo.ns("a");
    b = topo.ns("b");
    topo.veth(a, "a0", b, "b0", { aAddr: "198.18.0.1/24", bAddr: "198.18.0.2/24", mtu: 1500 });
    b.addr("lo", "198.19.9.1/32");
    a.exec(["ip", "addr", "add", "2001:2:1::1/64", "dev", "a0", "nodad"]);
    a.exec(["ip", "addr", "add", "2001:2:1::9/64", "dev", "a0", "nodad"]);
    b.exec(["ip", "addr", "add", "2001:2:1::2/64", "dev", "b0", "nodad"]);
  });

  afterAll(async () => {
    await topo?.cleanup();
  });

  function child(ns: Namespace, ...args: string[]) {
    return ns.spawn([...CHILD, ...args], { cwd: root });
  }

  it("readTun reads a ping routed into the tun; writeTun's echo reply reaches the pinger", async () => {
    const c = child(t, "tun");
    const r = parse<{ request: string; meta: Meta; write: { written: number; errors: number }; pingExit: number | string; pingOut: string }>(
      await c.waitForLine(isDone, 15_000));
    const req = Buffer.from(r.request, "hex");
    expect(req[0]).toBe(0x45);
    expect(req.readUInt16BE(2)).toBe(req.length); // whole packet, no PI header
    expect(req.length).toBe(20 + 8 + 56);
    expect(req[9]).toBe(1); // ICMP
    expect([...req.subarray(12, 20)]).toEqual([198, 18, 10, 1, 198, 18, 10, 2]);
    expect(req[20]).toBe(8); // echo request
    expect(req.subarray(req.length - 16).every((x) => x === 0xa5)).toBe(true); // ping -p a5 pattern
    expect(r.meta.off).toBe(128);
    expect(r.meta.len).toBe(req.length);
    expect(r.write).toEqual({ written: 1, errors: 0 });
    expect(r.pingExit, r.pingOut).toBe(0);
    expect(r.pingOut).toMatch(/1 received/);
  });

  it("through io_uring, readTun takes a burst in order in few calls, an empty queue reads 0 at once, and writeTun delivers a batch", async () => {
    const r = parse<{ empty: number; emptyMs: number; payloads: string[]; batches: number[]; write: { written: number; errors: number }; received: string[] }>(
      await child(t, "tunring").waitForLine(isDone, 20_000));
    expect(r.empty).toBe(0);
    expect(r.emptyMs).toBeLessThan(50);
    expect(r.payloads).toEqual(Array.from({ length: 40 }, (_, i) => `m${String(i).padStart(2, "0")}`));
    expect(r.batches.length).toBeLessThan(40); // several packets per io_uring_enter
    expect(r.write).toEqual({ written: 40, errors: 0 });
    expect(r.received).toEqual(Array.from({ length: 40 }, (_, i) => `r${String(i).padStart(2, "0")}`));
  });

  it("openTun attaches two queues of a multi-queue vnet-hdr tap; header size, offloads and misuse give clear errors", async () => {
    const r = parse<{ name: string; fds: number[]; hdr: number; linkType: string; info: Record<string, unknown>; errors: Record<string, string> }>(
      await child(t, "tapqueues").waitForLine(isDone));
    expect(r.name).toMatch(/^wotap\d+$/);
    expect(r.fds[0]).toBeGreaterThan(2);
    expect(r.fds[1]).not.toBe(r.fds[0]);
    expect(r.hdr).toBe(12);
    expect(r.linkType).toBe("ether");
    expect(r.info).toMatchObject({ type: "tap", pi: false, vnet_hdr: true, multi_queue: true, numqueues: 2 });
    expect(r.errors.wrongMode).toMatch(/TUNSETIFF.*EINVAL.*different flags/);
    expect(r.errors.badHdr).toMatch(/TUNSETVNETHDRSZ.*EINVAL/);
    expect(r.errors.tsoWithoutCsum).toMatch(/TUNSETOFFLOAD.*EINVAL/);
    expect(r.errors.longName).toMatch(/longer than 15 bytes/);
  });

  it("recvVxlan takes a burst of UDP/4789 datagrams in one batch with outer source, destination and TOS", async () => {
    const c = child(b, "vxlan", "198.18.0.2");
    await c.waitForLine(isReady);
    const toses = [0x00, 0xb8, 0x01, 0x02, 0x03];
    a.exec(["python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 40001))
for i, tos in enumerate(${JSON.stringify(toses)}):
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    s.sendto(bytes([8, 0, 0, 0, 0, 0, 100, 0]) + bytes([i]) * (20 + i), ("198.18.0.2", 4789))
`]);
    const r = parse<{ n: number; packets: Meta[]; again: number }>(await c.waitForLine(isDone));
    expect(r.n).toBe(toses.length);
    expect(r.again).toBe(0);
    r.packets.forEach((p, i) => {
      expect(p.off).toBe(128);
      expect(p.len).toBe(8 + 20 + i);
      expect(p.addr).toBe("198.18.0.1");
      expect(p.addr2).toBe("198.18.0.2");
      expect(p.tos).toBe(toses[i]);
      expect(p.hex).toBe("0800000000006400" + i.toString(16).padStart(2, "0").repeat(20 + i));
    });
  });

  it("sendRaw delivers hand-built IPv4/UDP packets, counts the one above the MTU, routes by the sockaddr next hop", async () => {
    const listener = b.spawn(["python3", "-u", "-c", `
import json, select, socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 9999))
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
print(json.dumps({"ready": True}))
def csum(h):
    s = sum((h[i] << 8) | h[i + 1] for i in range(0, len(h), 2))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return s
udp, ip = [], []
end = time.time() + 8
while time.time() < end and not (len(udp) >= 2 and len(ip) >= 2):
    rl, _, _ = select.select([u, r], [], [], 0.1)
    if u in rl:
        data, (addr, port) = u.recvfrom(4096)
        udp.append({"from": addr, "sport": port, "payload": data.rstrip(b"\\0").decode()})
    if r in rl:
        p = r.recv(4096)
        if int.from_bytes(p[22:24], "big") == 9999:
            ip.append({"id": int.from_bytes(p[4:6], "big"), "csumOk": csum(p[:20]) == 0xffff, "totlen": int.from_bytes(p[2:4], "big"),
                       "len": len(p), "dst": socket.inet_ntoa(p[16:20]), "df": bool(p[6] & 0x40)})
print(json.dumps({"result": {"udp": udp, "ip": ip}}))
`], { cwd: root });
    await listener.waitForLine(isReady);
    const specs = [
      { src: "198.18.0.1", dst: "198.18.0.2", sport: 43210, dport: 9999, payload: "one" },
      { src: "198.18.0.1", dst: "198.18.0.2", sport: 43211, dport: 9999, payload: "too big", padTo: 1600 },
      // Direct routing: header to a pod address, sockaddr = the node that has it.
      { src: "198.18.0.1", dst: "198.19.9.1", via: "198.18.0.2", sport: 43212, dport: 9999, payload: "three", df: false },
    ];
    const c = child(a, "sendraw", JSON.stringify(specs));
    const s = parse<{ sent: number; errors: number; stats: { txTooBig: number }; errorsByErrno: Record<string, number> }>(await c.waitForLine(isDone));
    expect(s).toMatchObject({ sent: 2, errors: 1, stats: { txTooBig: 1 } });
    // Counted by errno too, for overlay_io_errors_total{op="send",errno="EMSGSIZE"}.
    expect(s.errorsByErrno).toEqual({ "send/EMSGSIZE": 1 });
    const got = parse<{ udp: { from: string; sport: number; payload: string }[]; ip: { id: number; csumOk: boolean; totlen: number; len: number; dst: string; df: boolean }[] }>(
      await listener.waitForLine(isDone));
    expect(got.udp).toEqual([
      { from: "198.18.0.1", sport: 43210, payload: "one" },
      { from: "198.18.0.1", sport: 43212, payload: "three" },
    ]);
    // IP_HDRINCL: the kernel always fills the header checksum (we sent 0) and
    // total length; a zero ID stays 0 with DF (RFC 6864 atomic datagram) and
    // is filled without DF.
    expect(got.ip.map((p) => p.dst)).toEqual(["198.18.0.2", "198.19.9.1"]);
    expect(got.ip.map((p) => p.df)).toEqual([true, false]);
    for (const p of got.ip) {
      expect(p.csumOk).toBe(true);
      expect(p.totlen).toBe(p.len);
    }
    expect(got.ip[0].id).toBe(0);
    expect(got.ip[1].id).not.toBe(0);
  });

  it("recvUnderlay6: VXLAN over UDP/IPv6 with the outer traffic class, named by the sending peer's IPv4 address (0: no peer's)", async () => {
    const c = child(b, "vxlan6", "2001:2:1::1");
    await c.waitForLine(isReady);
    a.exec(["python3", "-c", `
import socket
for src, tc in (("2001:2:1::1", 0xb8), ("2001:2:1::1", 0x03), ("2001:2:1::9", 0)):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind((src, 40002))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tc)
    s.sendto(bytes([8, 0, 0, 0, 0, 0, 100, 0]) + bytes([tc]) * 30, ("2001:2:1::2", 4789))
    s.close()
`]);
    const r = parse<{ n: number; packets: Meta[]; peers: number }>(await c.waitForLine(isDone, 15_000));
    expect(r.peers).toBe(1);
    expect(r.n).toBe(3);
    expect(r.packets.map((p) => [p.addr, p.addr2, p.tos, p.len, p.off])).toEqual([
      ["198.18.0.1", "0.0.0.0", 0xb8, 38, 128],
      ["198.18.0.1", "0.0.0.0", 0x03, 38, 128],
      ["0.0.0.0", "0.0.0.0", 0, 38, 128],
    ]);
    expect(r.packets[0].hex).toBe("0800000000006400" + "b8".repeat(30));
  });

  // The fourth packet carries a destination options header with the tunnel
  // encapsulation limit option (RFC 2473 4.1.1), as the kernel's ip6tnl sends
  // by default (encaplimit 4): the kernel walks it, we get the inner packet.
  it("recvUnderlay6: IPv4 and IPv6 inside IPv6 (next header 4 and 41, also behind an encapsulation limit option) without the ip6_tunnel module, the inner packet alone", async () => {
    const c = child(b, "ip6tnl", "2001:2:1::1");
    await c.waitForLine(isReady);
    const inner4 = "4500001e" + "00004000" + "40110000" + "c6130105" + "c6130901" + "3039270f000a0000" + "6869";
    const inner6 = "60000000000a1140" + "20010002000000050000000000000005" + "20010002000000090000000000000001" + "3039270f000a0000" + "6869";
    a.exec(["python3", "-c", `
import socket
for proto, tc, inner, src, limit in ((4, 0x04, "${inner4}", "2001:2:1::1", False), (41, 0x0a, "${inner6}", "2001:2:1::1", False),
                                     (4, 0, "${inner4}", "2001:2:1::9", False), (41, 0x0c, "${inner6}", "2001:2:1::1", True)):
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
    s.bind((src, 0))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tc)
    # Destination options: tunnel encapsulation limit (type 4, length 1, value 4), then PadN.
    anc = [(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 4, 1, 4, 1, 1, 0]))] if limit else []
    s.sendmsg([bytes.fromhex(inner)], anc, 0, ("2001:2:1::2", 0))
    s.close()
`]);
    const r = parse<{ n: number; packets: Meta[] }>(await c.waitForLine(isDone, 15_000));
    expect(r.n).toBe(4);
    const byHex = (h: string) => r.packets.filter((p) => p.hex === h);
    expect(byHex(inner6).map((p) => [p.addr, p.tos, p.len]).sort()).toEqual([["198.18.0.1", 0x0a, inner6.length / 2], ["198.18.0.1", 0x0c, inner6.length / 2]]);
    expect(byHex(inner4).map((p) => [p.addr, p.tos]).sort()).toEqual([["0.0.0.0", 0], ["198.18.0.1", 0x04]]);
  });

  it("recvIpip receives a whole protocol-4 packet without the ipip module", async () => {
    const c = child(b, "ipip");
    await c.waitForLine(isReady);
    // Inner IPv4/UDP 198.19.1.5 -> 198.19.9.1; the kernel adds the outer header (protocol 4, TOS 0x04).
    const inner = "4500001e" + "00004000" + "40110000" + "c6130105" + "c6130901" + "3039270f000a0000" + "6869";
    a.exec(["python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x04)
s.sendto(bytes.fromhex("${inner}"), ("198.18.0.2", 0))
`]);
    const r = parse<{ n: number; packets: Meta[]; again: number }>(await c.waitForLine(isDone));
    expect(r.n).toBe(1);
    const p = r.packets[0];
    const outer = Buffer.from(p.hex, "hex");
    expect(p.off).toBe(128);
    expect(p.len).toBe(20 + inner.length / 2);
    expect(outer[0]).toBe(0x45);
    expect(outer[9]).toBe(4); // protocol IPIP
    expect(outer.readUInt16BE(2)).toBe(outer.length); // network order on Linux (BSD differs)
    expect(outer.subarray(20).toString("hex")).toBe(inner);
    expect(p).toMatchObject({ addr: "198.18.0.1", addr2: "198.18.0.2", tos: 0x04 });
  });
});
