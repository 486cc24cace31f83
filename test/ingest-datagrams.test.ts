// ingestDatagrams: a UDP GRO train split into input slots (the receive half
// of UDP GRO on the underlay), with its bounds.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { Dataplane } from "../src/dataplane/dataplane.js";

describe("ingestDatagrams", () => {
  const dp = new Dataplane({ batch: 8, tbl8Groups: 16 });
  const buf = Number(dp.raw.allocScratch(65536));
  const fill = (len: number) => {
    for (let i = 0; i < len; i++) dp.u8[buf + i] = (i * 7) & 255;
  };

  it("copies each datagram of a train to its own slot with the outer metadata", () => {
    fill(350);
    const k = dp.raw.ingestDatagrams(buf, 350, 100, 2, 0xc6120001, 0xc6120002, 0xb9);
    expect(k).toBe(4);
    for (let j = 0; j < 4; j++) {
      const m = dp.metaPtr(2 + j);
      const len = j < 3 ? 100 : 50;
      expect(dp.dv.getUint32(m + abi.META_OFF, true)).toBe(abi.HEADROOM);
      expect(dp.dv.getUint32(m + abi.META_LEN, true)).toBe(len);
      expect(dp.dv.getUint32(m + abi.META_ADDR, true)).toBe(0xc6120001);
      expect(dp.dv.getUint32(m + abi.META_ADDR2, true)).toBe(0xc6120002);
      expect(dp.dv.getUint8(m + abi.META_TOS)).toBe(0xb9);
      expect(Array.from(dp.readPacket(2 + j))).toEqual(Array.from(dp.u8.slice(buf + j * 100, buf + j * 100 + len)));
    }
  });

  it("takes only what fits before the batch ends; the caller goes on from there", () => {
    fill(1000);
    expect(dp.raw.ingestDatagrams(buf, 1000, 100, 5, 1, 2, 0)).toBe(3);
    expect(dp.raw.ingestDatagrams(buf, 1000, 100, 8, 1, 2, 0)).toBe(0);
  });

  it("seg 0 is one datagram; a datagram larger than a slot is refused", () => {
    expect(dp.raw.ingestDatagrams(buf, 300, 0, 0, 1, 2, 0)).toBe(1);
    expect(dp.dv.getUint32(dp.metaPtr(0) + abi.META_LEN, true)).toBe(300);
    expect(dp.raw.ingestDatagrams(buf, 4000, 4000, 0, 1, 2, 0)).toBe(abi.E_RANGE);
    expect(dp.raw.ingestDatagrams(buf, 0, 0, 0, 1, 2, 0)).toBe(0);
  });
});
