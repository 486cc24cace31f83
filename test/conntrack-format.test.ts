// `overlayd show conntrack` text: the exact `conntrack -L` layout per protocol.
import { describe, expect, it } from "vitest";
import { formatConntrack, formatFlow, type FlowInfo } from "../src/control/conntrack.js";

const tcp: FlowInfo = {
  proto: 6,
  state: "ESTABLISHED",
  expiresIn: 431999,
  orig: { src: "198.19.1.10", dst: "198.18.2.100", sport: 40000, dport: 5001 },
  reply: { src: "198.18.2.100", dst: "198.18.0.11", sport: 5001, dport: 61234 },
  nat: "snat",
  assured: true,
  seenReply: true,
};

describe("formatConntrack", () => {
  it("prints an established, assured, masqueraded TCP flow like conntrack -L", () => {
    expect(formatFlow(tcp)).toBe(
      "tcp      6 431999 ESTABLISHED src=198.19.1.10 dst=198.18.2.100 sport=40000 dport=5001 src=198.18.2.100 dst=198.18.0.11 sport=5001 dport=61234 [ASSURED] nat=snat",
    );
  });

  it("marks a UDP flow without a reply [UNREPLIED] between the tuples, with no state word", () => {
    const udp: FlowInfo = {
      proto: 17,
      state: "",
      expiresIn: 29.7,
      orig: { src: "198.18.2.100", dst: "198.18.0.11", sport: 5353, dport: 30053 },
      reply: { src: "198.19.2.10", dst: "198.19.1.1", sport: 53, dport: 61001 },
      nat: "both",
      assured: false,
      seenReply: false,
    };
    expect(formatFlow(udp)).toBe(
      "udp      17 29 src=198.18.2.100 dst=198.18.0.11 sport=5353 dport=30053 [UNREPLIED] src=198.19.2.10 dst=198.19.1.1 sport=53 dport=61001 nat=both",
    );
  });

  it("prints ICMP echo with type/code/id (request type 8, reply type 0; id from sport)", () => {
    const icmp: FlowInfo = {
      proto: 1,
      state: "",
      expiresIn: 29,
      orig: { src: "198.19.1.10", dst: "198.18.2.100", sport: 4660, dport: 0 },
      reply: { src: "198.18.2.100", dst: "198.18.0.11", sport: 61500, dport: 0 },
      nat: "snat",
      assured: false,
      seenReply: true,
    };
    expect(formatFlow(icmp)).toBe(
      "icmp     1 29 src=198.19.1.10 dst=198.18.2.100 type=8 code=0 id=4660 src=198.18.2.100 dst=198.18.0.11 type=0 code=0 id=61500 nat=snat",
    );
  });

  it("prints DNAT and untranslated flows, TCP states other than ESTABLISHED, and clamps negative timers", () => {
    const line = formatFlow({ ...tcp, state: "SYN_SENT", expiresIn: -3, nat: "dnat", assured: false, seenReply: false });
    expect(line).toMatch(/^tcp {6}6 0 SYN_SENT src=\S+ dst=\S+ sport=40000 dport=5001 \[UNREPLIED\] src=/);
    expect(line.endsWith(" nat=dnat")).toBe(true);
    expect(formatFlow({ ...tcp, nat: "none" }).endsWith("[ASSURED] nat=none")).toBe(true);
  });

  it("names protocols it does not know 'unknown' and prints addresses only", () => {
    expect(formatFlow({ ...tcp, proto: 47, state: "" })).toBe(
      "unknown  47 431999 src=198.19.1.10 dst=198.18.2.100 src=198.18.2.100 dst=198.18.0.11 [ASSURED] nat=snat",
    );
  });

  it("joins flows one per line, newline-terminated, in the order given; empty table prints nothing", () => {
    expect(formatConntrack([])).toBe("");
    const out = formatConntrack([tcp, { ...tcp, orig: { ...tcp.orig, sport: 40001 } }]);
    expect(out.split("\n")).toHaveLength(3);
    expect(out.endsWith("\n")).toBe(true);
    expect(out.split("\n")[1]).toContain("sport=40001");
  });
});
