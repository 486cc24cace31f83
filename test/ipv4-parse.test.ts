// One IPv4/CIDR parser in the control plane (issue 15): config/net.ts, with
// the route keeper's and the sockets' names over it. They accept exactly the
// same texts, with the same values, as node:net's isIPv4 and BlockList.
import { BlockList, isIPv4 } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ipToU32, tryIpToU32, tryParseCidr, u32ToIp } from "../src/config/net.js";
import { formatIpv4, parseCidr as routesParseCidr, parseIpv4 as routesParseIpv4 } from "../src/dataplane/routes.js";
import { formatIPv4, parseIPv4 as socketsParseIPv4 } from "../src/io/sockets.js";

const attempt = (f: () => number): number | "error" => {
  try {
    return f();
  } catch {
    return "error";
  }
};

/** Texts near IPv4 addresses: octets with leading zeros, over 255, signs, spaces, too few or many parts. */
const nearIp = fc.array(
  fc.oneof(fc.nat(300).map(String), fc.constantFrom("0", "00", "01", "010", "255", "256", "-1", "+1", " 1", "1 ", "x", "", "0x1", "1e2")),
  { minLength: 1, maxLength: 5 },
).map((p) => p.join("."));

describe("the one IPv4 parser", () => {
  it("config, route rules and sockets accept the same texts, with the same values, as node:net isIPv4", () => {
    fc.assert(
      fc.property(fc.oneof(nearIp, fc.ipV4(), fc.string({ maxLength: 16 })), (text) => {
        const c = attempt(() => ipToU32(text));
        expect(attempt(() => routesParseIpv4(text)), text).toBe(c);
        expect(attempt(() => socketsParseIPv4(text)), text).toBe(c);
        expect(c !== "error", text).toBe(isIPv4(text));
        if (c !== "error") expect(u32ToIp(c)).toBe(text);
      }),
      { numRuns: 5000 },
    );
    expect(formatIpv4(0xc6120001)).toBe("198.18.0.1");
    expect(formatIPv4(0xc6120001)).toBe("198.18.0.1");
  });

  it("a CIDR's addresses are what node:net's BlockList says they are", () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), fc.ipV4(), (addr, len, probe) => {
        const c = routesParseCidr(`${addr}/${len}`); // host bits cleared
        const strict = tryParseCidr(`${u32ToIp(c.prefix)}/${len}`);
        expect(strict.ok && strict.value).toEqual(c);
        const bl = new BlockList();
        bl.addSubnet(u32ToIp(c.prefix), len, "ipv4");
        const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
        expect(((ipToU32(probe) & mask) >>> 0) === c.prefix).toBe(bl.check(probe, "ipv4"));
      }),
      { numRuns: 2000 },
    );
  });

  it("says which part is wrong; the config's wording stays", () => {
    expect(tryIpToU32("198.18.0.256")).toEqual({ ok: false, reason: '"198.18.0.256" is not an IPv4 address', detail: '"256" is not 0..255' });
    expect(tryIpToU32("198.19.2.01")).toMatchObject({ ok: false, detail: '"01" has a leading zero' });
    expect(tryIpToU32("198.18.11")).toMatchObject({ ok: false, detail: "expected four dotted numbers" });
    expect(tryParseCidr("198.19.2.0/33")).toMatchObject({ ok: false, reason: '"198.19.2.0/33" is not an IPv4 CIDR (want a.b.c.d/len)' });
    expect(tryParseCidr("198.19.2.7/24")).toMatchObject({ ok: false, reason: '"198.19.2.7/24" has host bits set (did you mean 198.19.2.0/24?)' });
    expect(tryParseCidr("198.19.2.7/24", { hostBits: "clear" })).toEqual({ ok: true, value: { prefix: ipToU32("198.19.2.0"), len: 24 } });
    expect(() => routesParseCidr("10.1.2.3/33")).toThrow('invalid IPv4 CIDR "10.1.2.3/33": prefix length "33" is not 0..32');
    expect(() => routesParseIpv4("10.1.x.3")).toThrow('invalid IPv4 address "10.1.x.3": "x" is not 0..255');
  });
});
