// UDP GSO and GRO on the underlay (src/io/udpgso.ts) against the real
// kernel, inside a namespace: trains of VXLAN datagrams leave as one
// sendmsg (UDP_SEGMENT) and arrive as one buffer (UDP_GRO), byte for byte,
// in order per flow, with their TOS; a flow keeps one source port.
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const isRoot = process.getuid?.() === 0;
const NS = `wogso${Math.random().toString(36).slice(2, 6)}`;

describe.skipIf(!isRoot)("UDP GSO/GRO on the underlay", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
    for (const a of ["198.18.9.1", "198.18.9.2", "198.18.9.3"]) execFileSync("ip", ["-n", NS, "addr", "add", `${a}/32`, "dev", "lo"]);
    for (const a of ["2001:2:0:ff::1", "2001:2:0:ff::2"]) execFileSync("ip", ["-n", NS, "addr", "add", `${a}/128`, "dev", "lo", "nodad"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS]);
  });

  // "v6": the two flows over the IPv6 underlay (peers[].underlay6), the three other packets over IPv4 in the same batch.
  it.each(["v4", "v6"])("trains leave as one send and arrive as one buffer, byte for byte, in order, with their TOS (%s)", (family) => {
    const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "test/helpers/udpgso-child.ts", ...(family === "v6" ? ["v6"] : [])],
      { encoding: "utf8", timeout: 30_000 });
    const line = JSON.parse(out.trim().split("\n").pop()!);
    expect(line.error).toBeUndefined();
    const r = line.result as {
      errors: number; stats: { gsoSends: number; gsoSegments: number }; ports: number[];
      got: { sport: number; tos: number; seg: number; len: number; src: number; datagrams: string[] }[]; expected: string[]; otherCount: number; truncated: number;
    };
    // The receiver names the sender: its IPv4 address, or over IPv6 the peer whose underlay6 sent it.
    for (const g of r.got) expect(g.src).toBe(0xc6120901);
    expect(r.errors).toBe(0);
    expect(r.truncated).toBe(0);
    // 60 datagrams in runs of 10 per flow, one TOS change, two short last ones:
    // every run boundary, TOS change and short datagram closes a train.
    expect(r.stats.gsoSends).toBeGreaterThanOrEqual(6);
    expect(r.stats.gsoSegments).toBeGreaterThanOrEqual(55);
    // Everything arrived once; per flow (source port) in the order sent.
    const all = r.got.flatMap((g) => g.datagrams);
    expect([...all].sort()).toEqual([...r.expected].sort());
    const flowA = r.expected.filter((_, k) => Math.floor(k / 10) % 2 === 0);
    const flowB = r.expected.filter((_, k) => Math.floor(k / 10) % 2 === 1);
    const byPort = new Map<number, string[]>();
    for (const g of r.got) byPort.set(g.sport, [...(byPort.get(g.sport) ?? []), ...g.datagrams]);
    // Outer source ports: the flow's port picks socket port % 4.
    expect(byPort.get(r.ports[40001 % 4])).toEqual(flowA);
    expect(byPort.get(r.ports[40002 % 4])).toEqual(flowB);
    // The receiver got trains (UDP GRO) of 1400-byte datagrams.
    expect(r.got.some((g) => g.seg === 1400 && g.len > 1400)).toBe(true);
    // TOS travelled per send: the five marked datagrams, and only those.
    expect(r.got.filter((g) => g.tos === 0xb8).reduce((a, g) => a + g.datagrams.length, 0)).toBe(5);
    // The three packets to the other address reached it.
    expect(r.otherCount).toBe(3);
  });

  // A node just booted may still run duplicate address detection on its IPv6
  // underlay address: bind(2) to a tentative address fails unless freebind.
  it("UDP/IPv6 send sockets open on an address still tentative (DAD running)", () => {
    execFileSync("ip", ["-n", NS, "link", "add", "dad0", "type", "veth", "peer", "name", "dad1"]);
    execFileSync("ip", ["-n", NS, "link", "set", "dad0", "up"]);
    execFileSync("ip", ["-n", NS, "link", "set", "dad1", "up"]);
    execFileSync("ip", ["-n", NS, "addr", "add", "2001:2:0:fe::1/64", "dev", "dad0"]); // no nodad: tentative for a while
    const script = `
      import { openUdpSendSockets } from "./src/io/udpgso.ts";
      import { execFileSync } from "node:child_process";
      const tentative = execFileSync("ip", ["addr", "show", "dev", "dad0"], { encoding: "utf8" }).includes("tentative");
      const s = openUdpSendSockets("2001:2:0:fe::1", 2, { ttl: 9 });
      console.log(JSON.stringify({ tentative, ports: s.ports }));`;
    const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
    const r = JSON.parse(out.trim().split("\n").pop()!);
    expect(r.tentative).toBe(true);
    expect(r.ports).toHaveLength(2);
    expect(r.ports.every((p: number) => p > 0)).toBe(true);
  });

  // No NIC or route here fails GSO with EIO (Linux 6.11+ checksums GSO in
  // software for a device without checksum offload; there is no xfrm/esp4
  // module for an IPsec route), so the kernel's answer is injected
  // (UdpGsoSender.failGsoWith): the fallback path after it is real.
  it("a GSO send failing with EIO turns GSO off for that socket and resends the train datagram by datagram", () => {
    const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "test/helpers/udpgso-child.ts", "eio"], { encoding: "utf8", timeout: 30_000 });
    const line = JSON.parse(out.trim().split("\n").pop()!);
    expect(line.error).toBeUndefined();
    const r = line.result as {
      errors: number; stats: { gsoFallbacks: number; gsoResent: number; gsoSends: number }; got: { sport: number; datagrams: string[] }[]; expected: string[]; otherCount: number;
    };
    // Nothing lost: all 60 datagrams arrived, each once, in order per flow.
    expect(r.errors).toBe(0);
    const all = r.got.flatMap((g) => g.datagrams);
    expect([...all].sort()).toEqual([...r.expected].sort());
    const flowA = r.expected.filter((_, k) => Math.floor(k / 10) % 2 === 0);
    const bySport = new Map<number, string[]>();
    for (const g of r.got) bySport.set(g.sport, [...(bySport.get(g.sport) ?? []), ...g.datagrams]);
    expect([...bySport.values()].some((d) => JSON.stringify(d) === JSON.stringify(flowA))).toBe(true);
    // The three sockets that had trains (two flows, and the three packets to
    // the other address) each fell back once; each one's first train went
    // out again datagram by datagram (10 + 10 + 3), every later datagram of
    // those sockets went alone from the start: 3 trains tried, none after.
    expect(r.stats.gsoFallbacks).toBe(3);
    expect(r.stats.gsoResent).toBe(23);
    expect(r.stats.gsoSends).toBe(3);
    expect(r.otherCount).toBe(3);
  });
});
