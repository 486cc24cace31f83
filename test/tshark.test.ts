// Frames produced by encapsulation, dissected by tshark (an implementation
// nobody here wrote): VNI, lengths and checksums as Wireshark reads them.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { ipv4, tcp, udp } from "./helpers/packets.js";
import { haveTshark, tsharkFields } from "./helpers/pcap.js";
import { worker2 } from "./helpers/topology.js";

const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => i & 255);

describe.skipIf(!haveTshark())("tshark dissects our encapsulation", () => {
  const { dp } = worker2();
  const inner = [
    ipv4({ src: "198.19.2.5", dst: "198.19.3.7", proto: 17, payload: udp("198.19.2.5", "198.19.3.7", 40000, 53, data(64)) }),
    ipv4({ src: "198.19.2.6", dst: "198.19.3.8", proto: 6, tos: 0x2a, payload: tcp("198.19.2.6", "198.19.3.8", 5000, 80, 0x02, data(0)) }),
    ipv4({ src: "198.19.2.7", dst: "198.19.3.9", proto: 17, payload: udp("198.19.2.7", "198.19.3.9", 1, 2, data(1372)) }),
    ipv4({ src: "198.19.2.5", dst: "198.19.1.7", proto: 17, payload: udp("198.19.2.5", "198.19.1.7", 40000, 53, data(64)) }),
    ipv4({ src: "198.19.2.5", dst: "198.19.1.8", proto: 6, payload: tcp("198.19.2.5", "198.19.1.8", 5000, 80, 0x10, data(900)) }),
  ];
  inner.forEach((p, i) => dp.writePacket(i, p));
  dp.processPod(inner.length);
  const frames = inner.map((_, i) => {
    expect(dp.result(i).verdict).toBe(abi.VERDICT_TX_UNDERLAY);
    return dp.readPacket(i);
  });

  it("VXLAN: VNI, outer/inner lengths, IPv4 and inner L4 checksums are valid", () => {
    const rows = tsharkFields(frames.slice(0, 3), ["vxlan.vni", "vxlan.flags", "ip.len", "udp.length", "ip.checksum.status", "ip.src", "ip.ttl", "eth.type", "udp.checksum.status", "tcp.checksum.status"], {
      prefs: ["ip.check_checksum:TRUE", "udp.check_checksum:TRUE", "tcp.check_checksum:TRUE"],
    });
    rows.forEach((r, i) => {
      const [vni, flags, ipLen, udpLen, ipCsum, ipSrc, ttl, ethType, udpCsum, tcpCsum] = r;
      expect(vni).toBe("100");
      expect(Number(flags)).toBe(0x0800);
      const lens = ipLen.split(",").map(Number);
      expect(lens).toEqual([inner[i].length + 50, inner[i].length]);
      expect(Number(udpLen.split(",")[0])).toBe(inner[i].length + 30);
      expect(ipCsum).toBe("1,1"); // 1 = good (0 bad, 2 unverified), outer and inner
      expect(ipSrc).toBe(`198.18.0.12,${["198.19.2.5", "198.19.2.6", "198.19.2.7"][i]}`);
      expect(ttl).toBe("64,64"); // one hop per node: the kernel took it when it routed the packet into wo0
      expect(ethType).toBe("0x0800");
      // Outer UDP checksum is zero (not checked); the inner L4 checksum must be good.
      if (i === 1) expect(tcpCsum).toBe("1");
      else expect(udpCsum.split(",")).toContain("1");
    });
  });

  it("IPIP: outer protocol 4, both headers' lengths and checksums valid", () => {
    const rows = tsharkFields(frames.slice(3), ["ip.proto", "ip.len", "ip.checksum.status", "ip.dst", "ip.flags.df"], {
      prefs: ["ip.check_checksum:TRUE"],
    });
    rows.forEach((r, i) => {
      const [proto, len, csum, dst, df] = r;
      expect(proto.split(",")[0]).toBe("4");
      expect(len.split(",").map(Number)).toEqual([inner[3 + i].length + 20, inner[3 + i].length]);
      expect(csum).toBe("1,1"); // 1 = good
      expect(dst).toBe(`198.18.0.11,${i === 0 ? "198.19.1.7" : "198.19.1.8"}`);
      expect(df.split(",")[0]).toBe(df.split(",")[1]); // DF copied from the inner header
    });
  });
});
