// What a reload does to the flows of services whose backends changed.
// kube-proxy deletes the UDP conntrack entries of an endpoint that left its
// service (`conntrack -D --orig-dst <service IP> --dst-nat <endpoint IP> -p
// udp`): a UDP client (DNS above all) keeps its flow alive with every
// datagram and would go on sending to the dead pod. TCP flows are left to
// finish (or fail) on their own, as kube-proxy leaves them.
import type { BackendFlowKey } from "../dataplane/dataplane.js";
import type { DerivedFrontend } from "./derive.js";

/** What the diff looks at of a frontend (DerivedFrontend and the data path's ServiceFrontend both have it). */
type Frontend = Pick<DerivedFrontend, "addr" | "port" | "backends"> & { protocol: "tcp" | "udp" };

const frontendKey = (f: Frontend) => `${f.protocol} ${f.addr >>> 0}:${f.port}`;

/** The (frontend, backend) pairs of `protocol` that `prev` had and `next`
 *  no longer has: a backend removed from a frontend, a frontend gone (all of
 *  its backends), a backend whose port changed (the old port). Sorted, no
 *  duplicates. Pure: the daemon hands the result to the workers. */
export function removedBackends(prev: readonly Frontend[], next: readonly Frontend[], protocol: "udp" | "tcp" = "udp"): BackendFlowKey[] {
  const now = new Map<string, Set<string>>();
  for (const f of next) {
    if (f.protocol !== protocol) continue;
    const set = now.get(frontendKey(f)) ?? new Set<string>();
    for (const b of f.backends) set.add(`${b.addr >>> 0}:${b.port}`);
    now.set(frontendKey(f), set);
  }
  const out = new Map<string, BackendFlowKey>();
  for (const f of prev) {
    if (f.protocol !== protocol) continue;
    const keep = now.get(frontendKey(f));
    for (const b of f.backends) {
      const be = `${b.addr >>> 0}:${b.port}`;
      if (keep?.has(be)) continue;
      out.set(`${frontendKey(f)} ${be}`, { frontendAddr: f.addr >>> 0, frontendPort: f.port, backendAddr: b.addr >>> 0, backendPort: b.port });
    }
  }
  return [...out.values()].sort((a, b) => a.frontendAddr - b.frontendAddr || a.frontendPort - b.frontendPort || a.backendAddr - b.backendAddr || a.backendPort - b.backendPort);
}
