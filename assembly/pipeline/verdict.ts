// Writing a packet's outcome into its metadata record, with its counters.
import {
  C_DROP_BASE, C_REPLY_PKTS, C_TX_DIRECT_BYTES, C_TX_DIRECT_PKTS, C_VERDICT_BASE, META_ADDR, META_ADDR2, META_HASH, META_LEN, META_OFF, META_PEER, META_REASON, META_TOS,
  META_VERDICT, PEER_NONE, R_BAD_OFFSET, R_NONE, VERDICT_DROP, VERDICT_REPLY, VERDICT_TX_DIRECT,
} from "../abi";
import { count, slotSize } from "./state";

@inline export function metaPtr(base: usize, i: u32): usize { return base + (<usize>i << 5); }

/** Fill record `m` as input for a stage: the packet at [off, off+len) of its
 *  slot, outer source `addr` and destination `addr2`, outer TOS `tos` (0 on
 *  the pod side). */
@inline export function setInput(m: usize, off: u32, len: u32, addr: u32, addr2: u32, tos: u32): void {
  store<u32>(m, off, META_OFF);
  store<u32>(m, len, META_LEN);
  store<u32>(m, addr, META_ADDR);
  store<u32>(m, addr2, META_ADDR2);
  store<u8>(m, <u8>tos, META_TOS);
}

/** Reset the output fields of a record before a stage fills them. */
@inline export function metaReset(m: usize): void {
  store<u16>(m, VERDICT_DROP, META_VERDICT);
  store<u16>(m, R_NONE, META_REASON);
  store<u16>(m, PEER_NONE, META_PEER);
  store<u32>(m, 0, META_HASH);
}

@inline export function drop(m: usize, reason: u16): void {
  store<u16>(m, VERDICT_DROP, META_VERDICT);
  store<u16>(m, reason, META_REASON);
  count(C_VERDICT_BASE + <u32>VERDICT_DROP);
  count(C_DROP_BASE + <u32>reason);
}

/** Any non-drop verdict; `reason` is kept for replies that answer an error. */
@inline export function emit(m: usize, verdict: u16, reason: u16, off: u32, len: u32, addr: u32): void {
  store<u16>(m, verdict, META_VERDICT);
  store<u16>(m, reason, META_REASON);
  store<u32>(m, off, META_OFF);
  store<u32>(m, len, META_LEN);
  store<u32>(m, addr, META_ADDR);
  count(C_VERDICT_BASE + <u32>verdict);
  if (reason != R_NONE) count(C_DROP_BASE + <u32>reason);
  if (verdict == VERDICT_REPLY) count(C_REPLY_PKTS);
}

/** TX_DIRECT: bytes [off, off+len) leave unencapsulated through the node's
 *  stack, routed to `addr`; counted as such. */
@inline export function emitDirect(m: usize, off: u32, len: u32, addr: u32): void {
  emit(m, VERDICT_TX_DIRECT, R_NONE, off, len, addr);
  count(C_TX_DIRECT_PKTS);
  count(C_TX_DIRECT_BYTES, len);
}

/** Turn a REPLY just emitted into a TX_DIRECT to `addr` of the bytes at
 *  [off, off+len) (an ICMP error for a host outside the cluster, which
 *  leaves through the node's stack rather than the device), moving its
 *  verdict counts so the counters still add up to the verdicts. */
export function replyToDirect(m: usize, off: u32, len: u32, addr: u32): void {
  count(C_VERDICT_BASE + <u32>VERDICT_REPLY, <u64>-1);
  count(C_REPLY_PKTS, <u64>-1);
  // The REPLY's reason (the error it answers) stays counted once, as emit
  // would count it again: keep it out of this second emit.
  const reason = load<u16>(m, META_REASON);
  emitDirect(m, off, len, addr);
  store<u16>(m, reason, META_REASON);
}

/** Smallest input offset a stage accepts: room for the largest prepend
 *  (VXLAN over IPv6's 70 bytes, encap.ts; VXLAN over IPv4 takes 50, an
 *  ICMP error 42), rounded up to a multiple of 8. */
export const MIN_OFF: u32 = 72;

/** Start a packet of a batch: reset its outputs, refuse metadata whose
 *  [off, off+len) is not inside the slot (a counted R_BAD_OFFSET drop, never
 *  a wild read), and count it as received on `rxCounter` (packets; the next
 *  counter is bytes). Returns false when the packet was dropped. */
@inline export function admit(m: usize, off: u32, len: u32, rxCounter: u32): bool {
  metaReset(m);
  if (off < MIN_OFF || <u64>off + <u64>len > <u64>slotSize) {
    drop(m, R_BAD_OFFSET);
    return false;
  }
  count(rxCounter);
  count(rxCounter + 1, len);
  return true;
}
