// ICMPv6 packet too big about our outer IPv6 packets (src/daemon/worker/pmtu6.ts):
// which messages lower a peer's path MTU over the IPv6 underlay, and that
// nothing else does, whatever the bytes. The real thing, a router between
// two overlayd, is in test/underlay6-e2e.test.ts.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ipv6ToBigint, ipv6ToBytes } from "../src/config/net6.js";
import { IPV6_MIN_MTU, parsePacketTooBig } from "../src/daemon/worker/pmtu6.js";
import { Underlay6Peers } from "../src/io/underlay6.js";

const SELF = "2001:2:ff::12";
const PEER = "2001:2:ff:1::13";
const NAME = 0xc612010d; // 198.18.1.13
const peers = new Underlay6Peers();
peers.set([{ underlay: NAME, underlay6: ipv6ToBigint(PEER) }]);
const self = new Uint8Array(16);
ipv6ToBytes(ipv6ToBigint(SELF), self);

/** A packet too big quoting an outer packet of `outerLen` bytes from `src` to `dst`, next header `next`, UDP to `dport`. */
function ptb(o: { mtu?: number; type?: number; code?: number; src?: string; dst?: string; next?: number; dport?: number; outerLen?: number; quote?: number } = {}): DataView {
  const quote = o.quote ?? 40 + 8 + 8;
  const b = new Uint8Array(8 + quote);
  const dv = new DataView(b.buffer);
  b[0] = o.type ?? 2;
  b[1] = o.code ?? 0;
  dv.setUint32(4, o.mtu ?? 1400, false);
  const q = 8;
  b[q] = 0x60;
  dv.setUint16(q + 4, (o.outerLen ?? 1500) - 40, false);
  b[q + 6] = o.next ?? 17;
  b[q + 7] = 64;
  if (quote >= 40) {
    ipv6ToBytes(ipv6ToBigint(o.src ?? SELF), b, q + 8);
    ipv6ToBytes(ipv6ToBigint(o.dst ?? PEER), b, q + 24);
  }
  if (quote >= 48) {
    dv.setUint16(q + 40, 49152, false);
    dv.setUint16(q + 42, o.dport ?? 4789, false);
  }
  return dv;
}
const parse = (dv: DataView) => parsePacketTooBig(dv, 0, dv.byteLength, self, 4789, peers);

describe("ICMPv6 packet too big over the IPv6 underlay", () => {
  it("one quoting our VXLAN or IP-in-IPv6 packet to a peer gives that peer's name and the MTU", () => {
    expect(parse(ptb())).toEqual({ peer: NAME, mtu: 1400 });
    expect(parse(ptb({ next: 4, quote: 48 }))).toEqual({ peer: NAME, mtu: 1400 });
    expect(parse(ptb({ next: 41, quote: 40 }))).toEqual({ peer: NAME, mtu: 1400 });
    // Below the IPv6 minimum: taken as 1280 (RFC 8201 4).
    expect(parse(ptb({ mtu: 500, outerLen: 1400 }))).toEqual({ peer: NAME, mtu: IPV6_MIN_MTU });
  });

  it("ignores everything else", () => {
    expect(parse(ptb({ type: 1 }))).toBeUndefined(); // destination unreachable
    expect(parse(ptb({ code: 1 }))).toBeUndefined();
    expect(parse(ptb({ src: "2001:2:ff::99" }))).toBeUndefined(); // not sent by this node
    expect(parse(ptb({ dst: "2001:2:ff:1::99" }))).toBeUndefined(); // no peer's
    expect(parse(ptb({ dport: 53 }))).toBeUndefined(); // not our VXLAN port
    expect(parse(ptb({ next: 6 }))).toBeUndefined(); // not a tunnel packet
    expect(parse(ptb({ next: 17, quote: 44 }))).toBeUndefined(); // UDP ports cut off
    expect(parse(ptb({ quote: 39 }))).toBeUndefined(); // the quoted header cut off
    expect(parse(ptb({ mtu: 1500, outerLen: 1500 }))).toBeUndefined(); // not larger than the MTU it reports
    const v4 = ptb();
    v4.setUint8(8, 0x45);
    expect(parse(v4)).toBeUndefined();
    expect(parsePacketTooBig(ptb(), 4, 61, self, 4789, peers)).toBeUndefined(); // off + len past the end
  });

  it("never throws and never names a peer from bytes that do not quote our packet to it", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(16), (bytes, off) => {
        const dv = new DataView(bytes.buffer);
        const r = parsePacketTooBig(dv, off, Math.max(0, bytes.length - off), self, 4789, peers);
        if (r) {
          expect(r.peer).toBe(NAME);
          expect(r.mtu).toBeGreaterThanOrEqual(IPV6_MIN_MTU);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
