// Connection tracking and NAT primitives exported to the control plane and
// the tests (the packet pipeline's NAT stage is ../pipeline/nat.ts).
// Signatures use only u32/i32/u64/usize. The benchmarks' batch loops are in
// bench.ts, exported only by the bench build (../bench.ts).
import { CT_FLOW_SIZE, CT_MAX_FLOWS, E_CT_CLASH } from "./conntrack";

export {
  ctSetup, ctSetup6, ctSetTimeout, ctTimeout, ctSetHashSeed, ctHashSeed, ctFlushBackends, ctFlushed, ctHomeSlot, ctLookup, ctLookupLive, ctCreate, ctTouch, ctUpdateTcp, ctDelete,
  ctExpire, ctCount, ctCountHint, ctCapacity, ctHeader, ctShare, ctAttach, ctLock, ctUnlock, ctSlotCount, ctMemoryBytes, ctStat, ctEntryAt, ctFlowPtr, ctHand, ctHighWater,
  natSetPortRange, natPortMin, natPortMax, natAllocPort,
} from "./conntrack";
export { n6Count as ct6NameCount, n6Capacity as ct6NameCapacity } from "./names6";
export {
  natRewriteSrc, natRewriteDst, natRewriteIcmpId, natTranslateIcmpError, natApplyFlow, natLookupPacket,
} from "./translate";

/** Bytes per flow record (the layout in nat/conntrack.ts). */
export function ctFlowSize(): u32 { return CT_FLOW_SIZE; }
/** The largest ctSetup argument. */
export function ctMaxFlows(): u32 { return CT_MAX_FLOWS; }
/** The status ctCreate returns when a tuple already belongs to a live flow. */
export function ctErrClash(): i32 { return E_CT_CLASH; }
export { nat6RewriteSrc, nat6RewriteDst, nat6TranslateIcmpError } from "./translate6";
