// A Dataplane loaded with the seed's worker2 view of the cluster (Hand CNI-6/7
// translated into 198.18.0.0/15), for pipeline tests and benchmarks.
import { Dataplane, type DataplaneOptions, type DeviceMode } from "../../src/dataplane/dataplane.js";
import { RouteRules } from "../../src/dataplane/routes.js";
import { ip, mac } from "./packets.js";

export const W1 = { underlay: ip("198.18.0.11"), pod: "198.19.1.0", vtep: ip("198.19.1.0"), mac: mac("0e:00:00:00:01:00") };
export const W2 = { underlay: ip("198.18.0.12"), pod: "198.19.2.0", vtep: ip("198.19.2.0"), mac: mac("0e:00:00:00:02:00") };
export const W3 = { underlay: ip("198.18.1.13"), pod: "198.19.3.0", vtep: ip("198.19.3.0"), mac: mac("0e:00:00:00:03:00") };
export const W4 = { underlay: ip("198.18.0.14"), pod: "198.19.4.0", vtep: ip("198.19.4.0"), mac: mac("0e:00:00:00:04:00") };
export const DEV_MAC = mac("02:00:00:00:aa:01");

export interface Node {
  dp: Dataplane;
  routes: RouteRules;
}

/**
 * worker2 (198.18.0.12, pods 198.19.2.0/24) with next hops:
 *   0 local (own pods), 1 vxlan to worker3 via 198.19.3.0, 2 ipip to worker1,
 *   3 direct to worker4, 4 blackhole (198.18.96.0/24).
 * Peers: 0 worker3, 1 worker1, 2 worker4.
 */
export function worker2(mode: DeviceMode = "tun", opts: DataplaneOptions = {}): Node {
  const dp = new Dataplane({ batch: 64, tbl8Groups: 256, ...opts });
  dp.configure({ mode, underlay: W2.underlay, overlay: W2.vtep, vtepMac: W2.mac, devMac: DEV_MAC, vni: 100, underlayMtu: 1500 });
  dp.setPeer(0, W3.underlay, W3.mac);
  dp.setPeer(1, W1.underlay, W1.mac);
  dp.setPeer(2, W4.underlay, W4.mac);
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "vxlan", 0, W3.vtep);
  dp.setNexthop(2, "ipip", 1, 0);
  dp.setNexthop(3, "direct", 2, W4.underlay);
  dp.setNexthop(4, "blackhole", 0xffff, 0);
  dp.neighSet(W3.vtep, W3.mac);
  dp.fdbSet(W3.mac, 0);
  const routes = new RouteRules(dp.lpmBackend);
  routes.add("198.19.2.0", 24, 0);
  routes.add("198.19.3.0", 24, 1);
  routes.add("198.19.1.0", 24, 2);
  routes.add("198.19.4.0", 24, 3);
  routes.add("198.18.96.0", 24, 4);
  return { dp, routes };
}

/** worker3 (198.18.1.13, pods 198.19.3.0/24): peer 0 worker2 over vxlan,
 *  peer 1 worker1 over ipip; next hops 0 local, 1 vxlan worker2, 2 ipip worker1. */
export function worker3(mode: DeviceMode = "tun", opts: DataplaneOptions = {}): Node {
  const dp = new Dataplane({ batch: 64, tbl8Groups: 256, ...opts });
  dp.configure({ mode, underlay: W3.underlay, overlay: W3.vtep, vtepMac: W3.mac, devMac: DEV_MAC, vni: 100 });
  dp.setPeer(0, W2.underlay, W2.mac);
  dp.setPeer(1, W1.underlay, W1.mac);
  dp.setNexthop(0, "local", 0xffff, 0);
  dp.setNexthop(1, "vxlan", 0, W2.vtep);
  dp.setNexthop(2, "ipip", 1, 0);
  dp.neighSet(W2.vtep, W2.mac);
  dp.fdbSet(W2.mac, 0);
  const routes = new RouteRules(dp.lpmBackend);
  routes.add("198.19.3.0", 24, 0);
  routes.add("198.19.2.0", 24, 1);
  routes.add("198.19.1.0", 24, 2);
  return { dp, routes };
}
