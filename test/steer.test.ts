// Flow steering over several workers (src/io/steer.ts) against the real
// kernel, inside a namespace: the classic BPF program on the VXLAN sockets'
// SO_REUSEPORT group picks the socket by the inner flow, the same for both
// directions of a flow whatever the outer source port, as laneOf() says.
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { laneOf, steeringProgram } from "../src/io/steer.js";
import type { Probe } from "./helpers/steer-child.js";

const isRoot = process.getuid?.() === 0;
const NS = `wosteer${Math.random().toString(36).slice(2, 6)}`;

function runChild(lanes: number, probes: Probe[]): { label: string; lane: number }[] {
  const out = execFileSync("ip", ["netns", "exec", NS, "node", "--import", "tsx", "test/helpers/steer-child.ts", String(lanes), JSON.stringify(probes)],
    { encoding: "utf8", timeout: 60_000 });
  const line = JSON.parse(out.trim().split("\n").pop()!);
  expect(line.error).toBeUndefined();
  return line.result;
}

const base = { ihl: 5, frag: 0x4000, ethertype: 0x0800, sport: 0, dport: 0 };

describe("steeringProgram", () => {
  it("refuses a lane count that is not a positive integer", () => {
    expect(() => steeringProgram(0)).toThrow(RangeError);
    expect(() => steeringProgram(1.5)).toThrow(RangeError);
  });
  it("laneOf is symmetric in addresses and ports", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 64 }), fc.nat(), fc.nat(), fc.nat({ max: 65535 }), fc.nat({ max: 65535 }), (n, a, b, p, q) => {
      expect(laneOf(n, a, b, p, q)).toBe(laneOf(n, b, a, q, p));
      expect(laneOf(n, a, b, p, q)).toBeLessThan(n);
    }));
  });
});

describe.skipIf(!isRoot)("flow steering on a SO_REUSEPORT group", () => {
  beforeAll(() => {
    execFileSync("ip", ["netns", "add", NS]);
    execFileSync("ip", ["-n", NS, "link", "set", "lo", "up"]);
    execFileSync("ip", ["-n", NS, "addr", "add", "198.18.9.1/32", "dev", "lo"]);
  });
  afterAll(() => {
    execFileSync("ip", ["netns", "del", NS]);
  });

  for (const lanes of [2, 3, 4]) {
    it(`${lanes} sockets: both directions of every flow reach the socket laneOf names, from any outer port`, () => {
      const flows = fc.sample(
        fc.record({
          src: fc.integer({ min: 0xc6120000, max: 0xc613ffff }),
          dst: fc.integer({ min: 0xc6120000, max: 0xc613ffff }),
          proto: fc.constantFrom(6, 17),
          sport: fc.integer({ min: 1, max: 65535 }),
          dport: fc.integer({ min: 1, max: 65535 }),
          ihl: fc.constantFrom(5, 5, 6, 8),
        }),
        { numRuns: 24, seed: 4789 + lanes },
      );
      const probes: Probe[] = [];
      flows.forEach((f, i) => {
        for (const outerSport of [40000 + i, 41000 + i, 42000]) probes.push({ ...base, ...f, label: `f${i}`, outerSport });
        for (const outerSport of [43000 + i, 42000]) {
          probes.push({ ...base, ...f, src: f.dst, dst: f.src, sport: f.dport, dport: f.sport, label: `f${i}`, outerSport });
        }
      });
      // Parallel connections between two pods: the kernel hands out
      // ephemeral ports of one parity, 2 apart. They must spread too.
      for (let k = 0; k < 8; k++) {
        probes.push({ ...base, src: 0xc6130210, dst: 0xc613030a, proto: 6, sport: 45678 + 2 * k, dport: 5201, label: `par${k}`, outerSport: 45000 + k });
      }
      // Packets without ports: ICMP, and a TCP fragment (MF, then an offset).
      const a = 0xc6120a0b, b = 0xc6130c0d;
      probes.push({ ...base, src: a, dst: b, proto: 1, label: "icmp", outerSport: 44000 });
      probes.push({ ...base, src: b, dst: a, proto: 1, label: "icmp", outerSport: 44001 });
      probes.push({ ...base, src: a, dst: b, proto: 6, sport: 1234, dport: 80, frag: 0x2000, label: "frag", outerSport: 44002 });
      probes.push({ ...base, src: a, dst: b, proto: 6, sport: 9999, dport: 9999, frag: 0x00b9, label: "frag", outerSport: 44003 });
      // Not IPv4 inside, and an inner header cut short: socket 0.
      probes.push({ ...base, src: a, dst: b, proto: 6, sport: 1, dport: 2, ethertype: 0x86dd, label: "ipv6", outerSport: 44004 });
      probes.push({ ...base, src: a, dst: b, proto: 6, sport: 1, dport: 2, cut: 30, label: "short", outerSport: 44005 });

      const got = runChild(lanes, probes);
      expect(got.length).toBe(probes.length);
      expect(got.filter((g) => g.lane < 0)).toEqual([]);
      const want = (p: Probe) => {
        if (p.ethertype !== 0x0800 || p.cut !== undefined) return 0;
        const ports = (p.proto === 6 || p.proto === 17) && (p.frag & 0x3fff) === 0;
        return ports ? laneOf(lanes, p.src, p.dst, p.sport, p.dport) : laneOf(lanes, p.src, p.dst);
      };
      expect(got.map((g, i) => [g.label, g.lane])).toEqual(probes.map((p) => [p.label, want(p)]));
      // Every direction of a flow, from every outer port, on one socket.
      const lanesOf = new Map<string, Set<number>>();
      for (const g of got) lanesOf.set(g.label, (lanesOf.get(g.label) ?? new Set()).add(g.lane));
      for (const [label, set] of lanesOf) if (label.startsWith("f") || label === "icmp") expect([label, set.size]).toEqual([label, 1]);
      // And the flows are spread: every socket got some, of the random ones and of the parallel ones.
      expect(new Set(got.filter((g) => g.label.startsWith("f")).map((g) => g.lane)).size).toBe(lanes);
      expect(new Set(got.filter((g) => g.label.startsWith("par")).map((g) => g.lane)).size).toBeGreaterThan(1);
    });
  }
});
