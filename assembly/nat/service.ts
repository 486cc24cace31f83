// Services: what a ClusterIP or NodePort stands for, as kube-proxy's
// KUBE-SERVICES chain says it, in a table the data path can look up per new
// flow.
//
// A frontend (proto, address, port) -> a service record; a service record ->
// a run of backends in one array. A ClusterIP and the NodePort of the same
// service are two frontends sharing one backend run; the NodePort one is
// flagged so that its flows are also source-translated (replies must come
// back through this node, as kube-proxy's externalTrafficPolicy: Cluster).
//
//   frontend key (u64)  proto << 48 | port << 32 | address      -> service index
//   service record, 8 bytes:  first backend u32 | count u16 | flags u16
//   backend record, 8 bytes:  address u32 | port u16 | (unused) u16
//
// The control plane rewrites the whole table between batches (svcClear,
// svcSetBackend for each backend, svcAdd for each frontend); flows already
// tracked keep the backend they were given, as with kube-proxy.
import { carve } from "../layout";
import { E_FULL, E_NO_MEMORY, E_NOT_INIT, E_RANGE, OK } from "../abi";
import { htClear, htCount, htCreate, htFind, htPut, htValueAt, mix64 } from "../tables/hash";
import { n6Addr, n6Capacity } from "./names6";

export const SVC_F_NODEPORT: u32 = 1;
/** IPv6 frontends and backends: the protocol carries conntrack's
 *  CT_PROTO_V6 and addresses are IPv6 address handles (names6.ts), pinned
 *  by the control plane for as long as the table refers to them. */
export const SVC_PROTO_V6: u32 = 0x80;

let frontends: usize = 0;
let services: usize = 0;
let backends: usize = 0;
let maxServices: u32 = 0;
let maxBackends: u32 = 0;
let nServices: u32 = 0;
/** Frontends of IPv6 services (proto | CT_PROTO_V6, address a names6 handle). */
let nServices6: u32 = 0;
/** A 1024-bit filter of the IPv6 frontends' addresses, per instance: a
 *  packet whose destination misses it is no IPv6 frontend, known without
 *  the connection table's lock (the handles live in the shared table). */
const FILTER6_WORDS: u32 = 16;
const filter6 = memory.data(<i32>FILTER6_WORDS * 8);

@inline function filter6Bit(a: usize): u32 {
  return <u32>(mix64(load<u64>(a) ^ (load<u64>(a, 8) * 0x9e3779b97f4a7c15)) >> 54); // 10 bits
}

/** Might the 16 bytes at `a` be an IPv6 frontend's address? (No false negatives.) */
@inline export function svcMaybe6(a: usize): bool {
  if (nServices6 == 0) return false;
  const b = filter6Bit(a);
  return (load<u64>(filter6 + (<usize>(b >> 6) << 3)) & (<u64>1 << <u64>(b & 63))) != 0;
}

/** Carve room for `maxSvc` frontends and `maxBe` backends. Init-time, once. */
export function svcSetup(maxSvc: u32, maxBe: u32): i32 {
  if (frontends != 0) return E_RANGE;
  if (maxSvc == 0 || maxSvc > 1 << 20 || maxBe == 0 || maxBe > 1 << 22) return E_RANGE;
  // The hash table holds 7/8 of its capacity: size it so maxSvc fit.
  frontends = htCreate(maxSvc + (maxSvc >> 2) + 8);
  services = carve(<usize>maxSvc * 8);
  backends = carve(<usize>maxBe * 8);
  if (frontends == 0 || services == 0 || backends == 0) return E_NO_MEMORY;
  maxServices = maxSvc;
  maxBackends = maxBe;
  return OK;
}

/** Forget every frontend (backend slots are simply overwritten). */
export function svcClear(): void {
  if (frontends == 0) return;
  htClear(frontends);
  nServices = 0;
  nServices6 = 0;
  memory.fill(filter6, 0, <usize>FILTER6_WORDS * 8);
}

/** Backend slot `i`: address and port. */
export function svcSetBackend(i: u32, addr: u32, port: u32): i32 {
  if (backends == 0) return E_NOT_INIT;
  if (i >= maxBackends || port > 0xffff) return E_RANGE;
  const b = backends + (<usize>i << 3);
  store<u32>(b, addr);
  store<u16>(b, <u16>port, 4);
  return OK;
}

@inline function frontendKey(proto: u32, addr: u32, port: u32): u64 {
  return (<u64>proto << 48) | (<u64>port << 32) | <u64>addr;
}

/** A frontend (proto 6 or 17, address, port) served by backends
 *  first..first+count-1 (count may be 0: such a service rejects new flows
 *  with ICMP port unreachable, like kube-proxy's REJECT). Returns OK,
 *  E_RANGE, E_FULL. A frontend added twice keeps the last one. */
export function svcAdd(proto: u32, addr: u32, port: u32, flags: u32, first: u32, count: u32): i32 {
  if (frontends == 0) return E_NOT_INIT;
  const l4 = proto & ~SVC_PROTO_V6;
  if ((l4 != 6 && l4 != 17) || (proto & ~0xff) != 0 || port == 0 || port > 0xffff || count > 0xffff) return E_RANGE;
  if (<u64>first + <u64>count > <u64>maxBackends || flags > 0xffff) return E_RANGE;
  const key = frontendKey(proto, addr, port);
  let idx = nServices;
  const s = htFind(frontends, key);
  if (s >= 0) idx = <u32>htValueAt(frontends, s);
  else if (nServices >= maxServices) return E_FULL;
  const r = services + (<usize>idx << 3);
  store<u32>(r, first);
  store<u16>(r, <u16>count, 4);
  store<u16>(r, <u16>flags, 6);
  if (s < 0) {
    if (htPut(frontends, key, <u64>idx) != OK) return E_FULL;
    nServices++;
    if ((proto & SVC_PROTO_V6) != 0) {
      nServices6++;
      if (addr < n6Capacity()) {
        const b = filter6Bit(n6Addr(addr));
        const w = filter6 + (<usize>(b >> 6) << 3);
        store<u64>(w, load<u64>(w) | (<u64>1 << <u64>(b & 63)));
      }
    }
  }
  return OK;
}

/** IPv6 frontends in the table. */
@inline export function svcCount6(): u32 { return nServices6; }

/** Frontends in the table. */
export function svcCount(): u32 { return frontends == 0 ? 0 : htCount(frontends); }

/** Service record address for a packet's (proto, dst, dport), or 0. */
@inline export function svcLookup(proto: u32, addr: u32, port: u32): usize {
  if (nServices == 0) return 0;
  const s = htFind(frontends, frontendKey(proto, addr, port));
  if (s < 0) return 0;
  return services + (<usize><u32>htValueAt(frontends, s) << 3);
}

@inline export function svcBackendCount(r: usize): u32 { return <u32>load<u16>(r, 4); }
@inline export function svcFlags(r: usize): u32 { return <u32>load<u16>(r, 6); }
/** Backend `k` (< count) of service record `r`: its record address. */
@inline export function svcBackend(r: usize, k: u32): usize {
  return backends + (<usize>(load<u32>(r) + k) << 3);
}
@inline export function backendAddr(b: usize): u32 { return load<u32>(b); }
@inline export function backendPort(b: usize): u32 { return <u32>load<u16>(b, 4); }
