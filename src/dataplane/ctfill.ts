// Flows in bulk from tuple records, through the module's ordinary exports
// (ctCreate, natAllocPort, ctLookup): for tests that need a full table and
// for the daemon's test hook (POST /debug/ct-fill). The benchmarks use the
// in-WASM loops of the bench build instead (assembly/nat/bench.ts); these
// do the same thing one boundary crossing per flow.
//
// A tuple record is 16 bytes in linear memory: src u32, dst u32, sport u16,
// dport u16, proto u8, 3 bytes unused (host order, little endian).
import type { RawExports } from "./wasm.js";

const CT_NAT_NONE = 0;
const CT_NAT_SNAT = 1;

/** Create a flow for each of the `n` tuple records at `ptr`, at time `now`
 *  (seconds). With `nodeIp` 0 the reply tuple is the original reversed (no
 *  NAT); otherwise each flow is masqueraded to nodeIp with a port from
 *  natAllocPort (the whole new-flow set-up of SNAT). Returns how many were
 *  created. */
export function ctCreateTuples(raw: RawExports, ptr: number, n: number, nodeIp: number, now: number): number {
  let dv = new DataView(raw.memory.buffer);
  let made = 0;
  for (let i = 0; i < n; i++) {
    if (dv.buffer !== raw.memory.buffer) dv = new DataView(raw.memory.buffer);
    const t = ptr + i * 16;
    const src = dv.getUint32(t, true), dst = dv.getUint32(t + 4, true);
    const sport = dv.getUint16(t + 8, true), dport = dv.getUint16(t + 10, true), proto = dv.getUint8(t + 12);
    let r: number;
    if (nodeIp === 0) {
      r = raw.ctCreate(proto, src, dst, sport, dport, dst, src, dport, sport, CT_NAT_NONE, now);
    } else {
      const port = raw.natAllocPort(proto, nodeIp >>> 0, dst, dport, (i ^ now) >>> 0);
      if (port === 0) continue;
      r = raw.ctCreate(proto, src, dst, sport, dport, dst, nodeIp >>> 0, dport, port, CT_NAT_SNAT, now);
    }
    if (r >= 0) made++;
  }
  return made;
}

/** ctLookup for each of the `n` tuple records at `ptr`; returns how many were found. */
export function ctLookupTuples(raw: RawExports, ptr: number, n: number): number {
  const dv = new DataView(raw.memory.buffer);
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const t = ptr + i * 16;
    const r = raw.ctLookup(dv.getUint8(t + 12), dv.getUint32(t, true), dv.getUint32(t + 4, true), dv.getUint16(t + 8, true), dv.getUint16(t + 10, true));
    if (r >= 0) hits++;
  }
  return hits;
}
