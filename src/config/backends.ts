// What a reload does to the flows of services whose backends changed.
// kube-proxy deletes the UDP conntrack entries of an endpoint that left its
// service (`conntrack -D --orig-dst <service IP> --dst-nat <endpoint IP> -p
// udp`): a UDP client (DNS above all) keeps its flow alive with every
// datagram and would go on sending to the dead pod. TCP flows are left to
// finish (or fail) on their own, as kube-proxy leaves them.
import type { BackendFlowKey, BackendFlowKey6 } from "../dataplane/dataplane.js";
import type { DerivedFrontend, DerivedFrontend6 } from "./derive.js";

/** What the diff looks at of a frontend (DerivedFrontend and the data path's ServiceFrontend both have it). */
type Frontend = Pick<DerivedFrontend, "addr" | "port" | "backends"> & { protocol: "tcp" | "udp" };
/** The same for IPv6 frontends (text addresses). */
type Frontend6 = Pick<DerivedFrontend6, "addr" | "port" | "backends"> & { protocol: "tcp" | "udp" };

/** The (frontend, backend) pairs of `protocol` that `prev` had and `next`
 *  no longer has: a backend removed from a frontend, a frontend gone (all of
 *  its backends), a backend whose port changed (the old port). Sorted, no
 *  duplicates. Pure: the daemon hands the result to the workers. */
export function removedBackends(prev: readonly Frontend[], next: readonly Frontend[], protocol: "udp" | "tcp" = "udp"): BackendFlowKey[] {
  const out = removedPairs(prev, next, protocol, (a) => a >>> 0);
  return out.sort((a, b) => a.frontendAddr - b.frontendAddr || a.frontendPort - b.frontendPort || a.backendAddr - b.backendAddr || a.backendPort - b.backendPort);
}

/** removedBackends for IPv6 frontends (addresses in canonical text). */
export function removedBackends6(prev: readonly Frontend6[], next: readonly Frontend6[], protocol: "udp" | "tcp" = "udp"): BackendFlowKey6[] {
  const out = removedPairs(prev, next, protocol, (a) => a);
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return out.sort((a, b) => cmp(a.frontendAddr, b.frontendAddr) || a.frontendPort - b.frontendPort || cmp(a.backendAddr, b.backendAddr) || a.backendPort - b.backendPort);
}

function removedPairs<A extends number | string>(prev: readonly { protocol: string; addr: A; port: number; backends: { addr: A; port: number }[] }[],
  next: readonly { protocol: string; addr: A; port: number; backends: { addr: A; port: number }[] }[], protocol: string, norm: (a: A) => A) {
  const fkey = (f: { addr: A; port: number }) => `${protocol} ${norm(f.addr)}:${f.port}`;
  const now = new Map<string, Set<string>>();
  for (const f of next) {
    if (f.protocol !== protocol) continue;
    const set = now.get(fkey(f)) ?? new Set<string>();
    for (const b of f.backends) set.add(`${norm(b.addr)}:${b.port}`);
    now.set(fkey(f), set);
  }
  const out = new Map<string, { frontendAddr: A; frontendPort: number; backendAddr: A; backendPort: number }>();
  for (const f of prev) {
    if (f.protocol !== protocol) continue;
    const keep = now.get(fkey(f));
    for (const b of f.backends) {
      const be = `${norm(b.addr)}:${b.port}`;
      if (keep?.has(be)) continue;
      out.set(`${fkey(f)} ${be}`, { frontendAddr: norm(f.addr), frontendPort: f.port, backendAddr: norm(b.addr), backendPort: b.port });
    }
  }
  return [...out.values()];
}
