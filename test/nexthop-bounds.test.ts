// A route entry whose next-hop index lies past the next-hop table (the LPM
// takes any index up to LPM_MAX_NH; only the control plane knows how many
// next hops there are) is a counted drop, never a read outside the table.
import { describe, expect, it } from "vitest";
import * as abi from "../src/dataplane/abi.js";
import { concat, ethernet, ip, ipv4, udp, vxlanHeader } from "./helpers/packets.js";
import { W2, W3, worker2 } from "./helpers/topology.js";

describe("next-hop indexes are bounded in the data path", () => {
  const pkt = (src: string, dst: string) => ipv4({ src, dst, proto: 17, ttl: 64, payload: udp(src, dst, 1000, 2000, new Uint8Array(16)) });

  for (const nh of [64, 4096, 0xfffff0]) {
    it(`a route to next hop ${nh} (of ${64}) drops as no_route, from the pod side and as an inner source`, () => {
      const { dp, routes } = worker2("tun", { maxNexthops: 64 });
      expect(dp.raw.nexthopCapacity()).toBe(64);
      routes.add("198.19.9.0", 24, nh);
      dp.writePacket(0, pkt("198.19.2.5", "198.19.9.7"));
      expect(() => dp.processPod(1)).not.toThrow();
      expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_NO_ROUTE });
      expect(dp.counters().drop_no_route).toBe(1n);
      // Decapsulated from worker3 with an inner source routed there: not worker3's.
      const inner = pkt("198.19.9.7", "198.19.2.5");
      const vx = concat(vxlanHeader(100), ethernet(W2.mac, W3.mac, 0x0800, inner));
      dp.writePacket(0, vx, { addr: W3.underlay, addr2: ip("198.18.0.12") });
      expect(() => dp.processVxlan(1)).not.toThrow();
      expect(dp.result(0)).toMatchObject({ verdict: abi.VERDICT_DROP, reason: abi.R_SPOOFED_SOURCE });
    });
  }
});
