// Connection tracking: every flow the NAT has seen, both directions, in one
// fixed-capacity table carved once at start-up (ctSetup).
//
// Like nf_conntrack, a flow is one record holding two tuples, the original
// (as the first packet was seen) and the reply (what answers look like after
// translation), and the hash table holds two keyed entries per flow, one per
// tuple, each pointing back at the record with its direction. A lookup of any
// packet's (proto, src, dst, sport, dport) therefore finds its flow and tells
// which way the packet goes.
//
// Tuples are host-order. TCP/UDP: ports. ICMP echo: the identifier is the
// "source port" and the "destination port" is 0, in both directions (request
// a->b id X: (1, a, b, X, 0); reply b->a id X': (1, b, a, X', 0)).
//
// Flow records, CT_FLOW_SIZE = 40 bytes each, index 0 .. maxFlows-1:
//
//   0        4        8    10   12       16       20   22   24 25 26 27 28       32       36       40
//   +--------+--------+----+----+--------+--------+----+----+--+--+--+--+--------+--------+--------+
//   |o.src   |o.dst   |o.sp|o.dp|r.src   |r.dst   |r.sp|r.dp|pr|nk|st|fl|lastSeen|deadline|nextFree|
//   +--------+--------+----+----+--------+--------+----+----+--+--+--+--+--------+--------+--------+
//
// pr: IP protocol. nk: NAT kind (CT_NAT_*). st: TCP state (CT_TCP_*; 0 for
// other protocols). fl: CT_F_* flags (USED marks a live record). lastSeen and
// deadline are seconds on the caller's clock (WASM has none: the data path
// passes `now` per batch). nextFree links free records.
//
// Hash slots, 16 bytes, 3 per flow (so the load never exceeds 2/3):
//
//   0        4        8    10   12                 16
//   +--------+--------+----+----+--+---------------+
//   |  src   |  dst   |sprt|dprt|pr| ref (24 bits)  |
//   +--------+--------+----+----+--+---------------+
//
// ref = (flow << 1 | dir) + 1, so the all-zero tag word means "empty" and a
// key (which may be anything, proto 0 included) needs no separate flag. The
// whole key is compared with two 64-bit loads. 24-bit refs bound a table to
// CT_MAX_FLOWS = 2^23 - 1 flows.
//
// Memory: 40 + 3 x 16 = 88 bytes per flow (1,000,000 flows: 88 MB).
//
// Open addressing with linear probing over a slot count that need not be a
// power of two (home = high 32 hash bits x slots >> 32, Lemire's reduction),
// backward-shift deletion (no tombstones), as in tables/hash.ts. Because the
// load stays <= 2/3, every probe loop meets an empty slot and ends; the
// expected probes are ~2 for a hit and ~5 for a miss.
//
// Keyed hash: the home slot of a key depends on a 128-bit seed the control
// plane draws at random when the table is set up (ctSetHashSeed), so a client
// choosing its tuples (a NodePort client picks its source ports, and its
// source address when it can spoof one) cannot predict which keys collide
// and build long probe chains. Two fmix64 rounds with the seed entering both:
// keyed mixing, not a cryptographic PRF (the kernel moved nf_conntrack to
// siphash; this costs one multiply more than the unkeyed mix it replaced).
//
// A full table admits a new flow by early drop, as nf_conntrack does: the
// slots around the new flow's home (CT_EVICT_WINDOW of them, its probe chain
// and neighbours) are searched for a victim: an expired flow (reaped), else
// the least recently seen flow that is not ASSURED, or an assured TCP flow
// already closing (FIN_WAIT .. CLOSE, which nf_conntrack's gc also drops when
// the table is nearly full). Counted as early_drop; only when the window
// holds no victim is the new flow refused (insert_failed). ASSURED means: a
// TCP flow that reached ESTABLISHED with a reply seen; a UDP flow that saw a
// reply and then more traffic (a query answered once stays unassured; the
// kernel asks for a reply and traffic still flowing 2 s after the first packet).
//
// Expiry is incremental: ctExpire(now, budget) moves a clock hand over at
// most `budget` flow records per call, so the data path can reap a little
// every batch and never stops for a sweep. A flow past its deadline that the
// hand has not reached yet is still in the table: ctLookupLive (and
// ctCreate, for a clashing tuple) reap it on sight, as nf_conntrack's lookup
// does; plain ctLookup does not look at time.
//
// Concurrency: the table may be shared by every worker. The threads build
// runs each worker's instance on one shared memory; one instance carves the
// table (ctSetup) and the others attach to it (ctAttach(ctHeader())). What
// changes as flows come and go (flows live, the high-water mark, the free
// list, the clock hand) is kept in the table's header in memory, next to a
// lock word, not in an instance's globals; what does not (where the regions
// are, their sizes, the hash seed) each instance copies once. Every caller
// takes the lock around a whole operation (the data path per packet,
// pipeline/nat.ts; the control plane around each bounded step: expiry,
// flushes, dumps), so the table is only ever changed by one worker at a
// time, as nf_conntrack's insert and delete are under a spinlock (its
// lookups are RCU; ours wait their turn, the hold time being one packet's
// lookup and rewrite). ctLock spins briefly, then sleeps
// (memory.atomic.wait32) until an unlock wakes it; a locker that slept a
// few times goes first (see ctLock).
// Without the threads feature (the fuzz build) the lock is a no-op.
import { carve, regionsEnd } from "../layout";
import { E_FULL, E_NOT_FOUND, E_NOT_INIT, E_NO_MEMORY, E_RANGE, OK } from "../abi";
import { mix64 } from "../tables/hash";
import { TCP_ACKF, TCP_FIN, TCP_RST, TCP_SYN } from "../wire/tcp";
import { n6AttachTo, n6Carve, n6Count, n6Live, n6MemoryBytes, n6Ref, n6Reseed, n6Unref } from "./names6";

// --- statuses beyond abi.ts (move there when NAT is wired in) ---------------
/** ctCreate: one of the two tuples already belongs to a live flow. */
export const E_CT_CLASH: i32 = -6;

// --- directions, NAT kinds, flags ----------------------------------------------
export const CT_DIR_ORIG: u32 = 0;
export const CT_DIR_REPLY: u32 = 1;

export const CT_NAT_NONE: u32 = 0;
export const CT_NAT_SNAT: u32 = 1;
export const CT_NAT_DNAT: u32 = 2;
/** Both ends translated: a service reached by one of its own backends, or
 *  from the same node (hairpin: DNAT to the backend plus SNAT so the
 *  answer comes back through us). */
export const CT_NAT_BOTH: u32 = 3;

/** Marks an IPv6 flow's protocol byte: its addresses are handles of
 *  names6.ts (TCP 6 -> 0x86, UDP 17 -> 0x91, ICMPv6 58 -> 0xBA). IPv4
 *  flows never carry it: their protocol is below 128 (NAT tracks 1, 6
 *  and 17); ctCreate takes a protocol from 128 up as an IPv6 key and
 *  refuses it (E_RANGE) unless its four addresses are live handles. */
export const CT_PROTO_V6: u32 = 0x80;
const ICMP6_KEY: u32 = CT_PROTO_V6 | 58;

export const CT_F_USED: u32 = 1;
export const CT_F_SEEN_REPLY: u32 = 2;
export const CT_F_ASSURED: u32 = 4;

// --- TCP states: nf_conntrack's enum tcp_conntrack, same numbers ---------------
export const CT_TCP_NONE: u32 = 0;
export const CT_TCP_SYN_SENT: u32 = 1;
export const CT_TCP_SYN_RECV: u32 = 2;
export const CT_TCP_ESTABLISHED: u32 = 3;
export const CT_TCP_FIN_WAIT: u32 = 4;
export const CT_TCP_CLOSE_WAIT: u32 = 5;
export const CT_TCP_LAST_ACK: u32 = 6;
export const CT_TCP_TIME_WAIT: u32 = 7;
export const CT_TCP_CLOSE: u32 = 8;
export const CT_TCP_SYN_SENT2: u32 = 9; // simultaneous open
const sIV: u8 = 10; // invalid: state kept, timer not refreshed
const sIG: u8 = 11; // ignored: state kept, timer not refreshed

/** ctUpdateTcp result: low byte the state after the packet, bits 8.. one of these. */
export const CT_TCP_ACCEPTED: u32 = 0;
export const CT_TCP_IGNORED: u32 = 1;
export const CT_TCP_INVALID: u32 = 2;

// --- timeouts: index = TCP state for 0..9, then the others ----------------------
export const CT_TO_UDP: u32 = 10;
export const CT_TO_UDP_STREAM: u32 = 11;
export const CT_TO_ICMP: u32 = 12;
export const CT_TO_GENERIC: u32 = 13;
export const CT_TO_COUNT: u32 = 14;

// --- counters (ctStat) -----------------------------------------------------------
export const CT_STAT_INSERTS: u32 = 0;
export const CT_STAT_DELETES: u32 = 1; // ctDelete
export const CT_STAT_EXPIRED: u32 = 2; // reaped by the clock hand or on sight
export const CT_STAT_INSERT_FAILED: u32 = 3; // table full: the new flow was refused
export const CT_STAT_CLASH: u32 = 4; // a tuple already belonged to a live flow
export const CT_STAT_INVALID: u32 = 5; // TCP packets the state machine called invalid
export const CT_STAT_EARLY_DROP: u32 = 6; // a flow evicted so that a new one fits a full table
export const CT_STAT_COUNT: u32 = 7;

/** Slots around a new flow's home that early drop searches for a victim
 *  (~10 keys at the 2/3 load of a full table; nf_conntrack looks at 8). */
export const CT_EVICT_WINDOW: u32 = 16;

export const CT_FLOW_SIZE: u32 = 40;
export const CT_MAX_FLOWS: u32 = (1 << 23) - 1;
const SLOTS_PER_FLOW: u32 = 3;
const SLOT: usize = 16;
const NONE: u32 = 0xffffffff;

// Flow record field offsets.
export const F_OSRC: usize = 0;
export const F_ODST: usize = 4;
export const F_OSPORT: usize = 8;
export const F_ODPORT: usize = 10;
export const F_RSRC: usize = 12;
export const F_RDST: usize = 16;
export const F_RSPORT: usize = 20;
export const F_RDPORT: usize = 22;
export const F_PROTO: usize = 24;
export const F_NAT: usize = 25;
export const F_STATE: usize = 26;
export const F_FLAGS: usize = 27;
export const F_LAST: usize = 28;
export const F_DEADLINE: usize = 32;
export const F_NEXT: usize = 36;

// Key comparison: the slot's second u64 is ports (low 32) | ref (bits 32..55) | proto (56..63).
const KEY1_MASK: u64 = 0xff000000ffffffff;

// The header: H_SIZE bytes carved first by ctSetup. The changing state,
// then what ctAttach copies, then (on a cache line of its own) the lock.
const H_LIVE: usize = 4; // records in use (expired ones not yet reaped included)
const H_HIGH: usize = 8; // records ever handed out: the hand scans [0, high)
const H_FREE: usize = 12; // head of the free list, NONE when empty
const H_HAND: usize = 16; // where the clock hand looks next
const H_MAX: usize = 20;
const H_NSLOTS: usize = 24;
const H_FLOWS: usize = 28;
const H_SLOTS: usize = 32;
const H_STATS: usize = 36;
const H_TIMEOUTS: usize = 40;
const H_SEED0: usize = 48;
const H_SEED1: usize = 56;
const H_LOCK: usize = 64; // i32: 0 free, 1 held
const H_STARVING: usize = 68; // i32: 1 while a locker that waited too long goes first
const H_WAITERS: usize = 72; // i32: lockers asleep in wait32 (unlock wakes one only then)
const H_SHARED: usize = 76; // i32: 1 once ctShare: others may attach, and the lock is taken
const H_NAMES: usize = 80; // the IPv6 address handles' header (names6.ts), 0 = no IPv6 flows
const H_SIZE: usize = 128;

let hdr: usize = 0;
let flows: usize = 0;
let slots: usize = 0;
let nSlots: u32 = 0;
let maxFlows: u32 = 0;
let seed0: u64 = 0;
let seed1: u64 = 0;
let stats: usize = 0;
let timeouts: usize = 0;
let carvedBytes: usize = 0;

/** Carve the table for `maxFlows` flows (1 .. CT_MAX_FLOWS), 88 bytes each
 *  (see the layout above), and set the default timeouts (nf_conntrack's,
 *  ESTABLISHED 24 h as kube-proxy sets it). Returns
 *  OK, E_RANGE for a bad size or a second call (one table per instance), or
 *  E_NO_MEMORY. Init-time only. */
export function ctSetup(max: u32): i32 {
  if (flows != 0) return E_RANGE;
  if (max == 0 || max > CT_MAX_FLOWS) return E_RANGE;
  const n = max * SLOTS_PER_FLOW;
  const flowBytes = <usize>max * CT_FLOW_SIZE;
  const slotBytes = <usize>n * SLOT;
  const extra: u64 = <u64>H_SIZE + <u64>CT_STAT_COUNT * 8 + <u64>CT_TO_COUNT * 4 + 4 * 64;
  // carve() does not guard its own arithmetic; keep everything below 4 GiB.
  if (<u64>flowBytes + <u64>slotBytes + extra > <u64>(<usize>0xffffffff - regionsEnd())) return E_NO_MEMORY;
  const h = carve(H_SIZE);
  const st = carve(<usize>CT_STAT_COUNT * 8);
  const to = carve(<usize>CT_TO_COUNT * 4);
  const f = carve(flowBytes);
  const s = carve(slotBytes);
  if (h == 0 || st == 0 || to == 0 || f == 0 || s == 0) return E_NO_MEMORY;
  store<u32>(h + H_FREE, NONE);
  store<u32>(h + H_MAX, max);
  store<u32>(h + H_NSLOTS, n);
  store<u32>(h + H_FLOWS, <u32>f);
  store<u32>(h + H_SLOTS, <u32>s);
  store<u32>(h + H_STATS, <u32>st);
  store<u32>(h + H_TIMEOUTS, <u32>to);
  store<u64>(h + H_SEED0, seed0);
  store<u64>(h + H_SEED1, seed1);
  attachTo(h);
  setDefaultTimeouts();
  return OK;
}

/** Copy where the table's regions are from header `h` into this instance. */
function attachTo(h: usize): void {
  stats = <usize>load<u32>(h + H_STATS);
  timeouts = <usize>load<u32>(h + H_TIMEOUTS);
  flows = <usize>load<u32>(h + H_FLOWS);
  slots = <usize>load<u32>(h + H_SLOTS);
  nSlots = load<u32>(h + H_NSLOTS);
  maxFlows = load<u32>(h + H_MAX);
  seed0 = load<u64>(h + H_SEED0);
  seed1 = load<u64>(h + H_SEED1);
  carvedBytes = <usize>maxFlows * CT_FLOW_SIZE + (<usize>nSlots << 4);
  hdr = h;
  n6AttachTo(<usize>load<u32>(h + H_NAMES), seed0, seed1);
}

/** Let the table hold IPv6 flows: carve `names` IPv6 address handles
 *  (names6.ts, 40 bytes each) next to it. After ctSetup and the seed,
 *  before ctShare; once. Returns OK, E_NOT_INIT (no table), E_RANGE (a
 *  second call, or 0 / more than maxFlows * 4 names), E_NO_MEMORY. */
export function ctSetup6(names: u32): i32 {
  if (hdr == 0) return E_NOT_INIT;
  if (load<u32>(hdr + H_NAMES) != 0 || names == 0 || <u64>names > <u64>maxFlows * 4) return E_RANGE;
  const h = n6Carve(names, seed0, seed1);
  if (h == 0) return E_NO_MEMORY;
  store<u32>(hdr + H_NAMES, <u32>h);
  carvedBytes += n6MemoryBytes();
  return OK;
}

/** Where this instance's table header is (0: no table): the address another
 *  instance on the same (shared) memory attaches to. */
export function ctHeader(): usize {
  return hdr;
}

/** Make this instance's table one others may attach to (ctAttach), before
 *  any traffic: from now on every operation takes the lock. A table no
 *  one shares skips it (one worker: no atomic operation per packet).
 *  Returns OK, or E_NOT_INIT without a table. */
export function ctShare(): i32 {
  if (hdr == 0) return E_NOT_INIT;
  if (ASC_FEATURE_THREADS) atomic.store<i32>(hdr + H_SHARED, 1);
  else store<i32>(hdr + H_SHARED, 1);
  return OK;
}

/** Use the table whose header is at `h` (ctHeader() of the instance that
 *  set it up, on this same shared memory) instead of carving one: its
 *  flows, timeouts, counters and hash seed. Returns OK, or E_RANGE when
 *  this instance has a table already or `h` holds none. Init-time only. */
export function ctAttach(h: usize): i32 {
  if (hdr != 0 || h == 0 || <u64>h + H_SIZE > (<u64>memory.size() << 16)) return E_RANGE;
  const max = load<u32>(h + H_MAX);
  if (max == 0 || max > CT_MAX_FLOWS || load<u32>(h + H_NSLOTS) != max * SLOTS_PER_FLOW) return E_RANGE;
  if (load<i32>(h + H_SHARED) != 1) return E_RANGE; // not shared (ctShare): its owner does not lock
  attachTo(h);
  return OK;
}

/** Take the table's lock (see the file comment): every operation on a
 *  shared table runs between ctLock and ctUnlock. Not re-entrant.
 *  Test-and-set with barging, as a kernel mutex's optimistic spinning: a
 *  worker that unlocks and locks again at once usually keeps the lock's
 *  cache line and goes on (a fair ticket lock made two workers hand it
 *  over on every packet, each handover a sleep and a wake-up: 0.08 M
 *  lookups/s for two workers against 22 M for one). Bounded unfairness: a
 *  locker that slept STARVE_SLEEPS times raises the starving flag, and
 *  others then wait until it has had the lock (a test-and-set lock without
 *  it let a worker walking a dump starve the other for over a second). */
export function ctLock(): void {
  if (!ASC_FEATURE_THREADS || hdr == 0 || load<i32>(hdr + H_SHARED) == 0) return;
  if (atomic.load<i32>(hdr + H_STARVING) == 0 && atomic.cmpxchg<i32>(hdr + H_LOCK, 0, 1) == 0) return;
  lockSlow();
}

const SPINS: u32 = 1024;
const STARVE_SLEEPS: u32 = 4;

function lockSlow(): void {
  const lock = hdr + H_LOCK;
  let starving = false;
  let spins: u32 = 0;
  let sleeps: u32 = 0;
  while (true) {
    if ((starving || atomic.load<i32>(hdr + H_STARVING) == 0) && atomic.load<i32>(lock) == 0 && atomic.cmpxchg<i32>(lock, 0, 1) == 0) {
      if (starving) atomic.store<i32>(hdr + H_STARVING, 0);
      return;
    }
    if (++spins < SPINS) continue;
    spins = 0;
    if (!starving && ++sleeps >= STARVE_SLEEPS && atomic.cmpxchg<i32>(hdr + H_STARVING, 0, 1) == 0) starving = true;
    // Counted before the lock word is read: an unlock either sees this
    // waiter and wakes it, or came first and the word read here is 0.
    atomic.add<i32>(hdr + H_WAITERS, 1);
    if (atomic.load<i32>(lock) != 0) memory.atomic.wait32(lock, 1, 20_000);
    atomic.sub<i32>(hdr + H_WAITERS, 1);
  }
}

export function ctUnlock(): void {
  if (!ASC_FEATURE_THREADS || hdr == 0 || load<i32>(hdr + H_SHARED) == 0) return;
  atomic.store<i32>(hdr + H_LOCK, 0);
  if (atomic.load<i32>(hdr + H_WAITERS) != 0) atomic.notify(hdr + H_LOCK, 1);
}

@inline function getLive(): u32 { return load<u32>(hdr + H_LIVE); }
@inline function setLive(v: u32): void { store<u32>(hdr + H_LIVE, v); }
@inline function getHigh(): u32 { return hdr == 0 ? 0 : load<u32>(hdr + H_HIGH); }
@inline function setHigh(v: u32): void { store<u32>(hdr + H_HIGH, v); }
@inline function getFree(): u32 { return load<u32>(hdr + H_FREE); }
@inline function setFree(v: u32): void { store<u32>(hdr + H_FREE, v); }

function setDefaultTimeouts(): void {
  // nf_conntrack defaults (net.netfilter.nf_conntrack_*_timeout*), but ESTABLISHED.
  store<u32>(timeouts + (<usize>CT_TCP_NONE << 2), 120);
  store<u32>(timeouts + (<usize>CT_TCP_SYN_SENT << 2), 120);
  store<u32>(timeouts + (<usize>CT_TCP_SYN_RECV << 2), 60);
  // kube-proxy's conntrack.tcpEstablishedTimeout (24 h), not nf_conntrack's 5 days.
  store<u32>(timeouts + (<usize>CT_TCP_ESTABLISHED << 2), 86400);
  store<u32>(timeouts + (<usize>CT_TCP_FIN_WAIT << 2), 120);
  store<u32>(timeouts + (<usize>CT_TCP_CLOSE_WAIT << 2), 60);
  store<u32>(timeouts + (<usize>CT_TCP_LAST_ACK << 2), 30);
  store<u32>(timeouts + (<usize>CT_TCP_TIME_WAIT << 2), 120);
  store<u32>(timeouts + (<usize>CT_TCP_CLOSE << 2), 10);
  store<u32>(timeouts + (<usize>CT_TCP_SYN_SENT2 << 2), 120);
  store<u32>(timeouts + (<usize>CT_TO_UDP << 2), 30);
  store<u32>(timeouts + (<usize>CT_TO_UDP_STREAM << 2), 120);
  store<u32>(timeouts + (<usize>CT_TO_ICMP << 2), 30);
  store<u32>(timeouts + (<usize>CT_TO_GENERIC << 2), 600);
}

/** Set timeout `which` (a TCP state 0..9 or CT_TO_*) to `seconds` (1 ..
 *  2^30). Applies to a flow from its next packet on, as in nf_conntrack.
 *  Returns OK, E_RANGE, or E_NOT_INIT. */
export function ctSetTimeout(which: u32, seconds: u32): i32 {
  if (timeouts == 0) return E_NOT_INIT;
  if (which >= CT_TO_COUNT || seconds == 0 || seconds > (1 << 30)) return E_RANGE;
  store<u32>(timeouts + (<usize>which << 2), seconds);
  return OK;
}

/** Timeout `which` in seconds, or 0 for a bad index / no table. */
export function ctTimeout(which: u32): u32 {
  if (timeouts == 0 || which >= CT_TO_COUNT) return 0;
  return load<u32>(timeouts + (<usize>which << 2));
}

/** Set the 128-bit hash seed (s0, s1), against crafted collisions from
 *  outside; the control plane draws it at random for every table. Only while
 *  the table is empty, since every home slot moves: OK, E_RANGE otherwise. */
export function ctSetHashSeed(s0: u64, s1: u64): i32 {
  if (hdr != 0 && (getLive() != 0 || n6Count() != 0)) return E_RANGE;
  seed0 = s0;
  seed1 = s1;
  n6Reseed(s0, s1);
  if (hdr != 0) {
    store<u64>(hdr + H_SEED0, s0);
    store<u64>(hdr + H_SEED1, s1);
  }
  return OK;
}

/** Half `i` (0 or 1) of the hash seed (tests; 0 for another i). */
export function ctHashSeed(i: u32): u64 {
  return i == 0 ? seed0 : i == 1 ? seed1 : 0;
}

// --- internals -----------------------------------------------------------------

@inline function statAdd(i: u32): void {
  const p = stats + (<usize>i << 3);
  store<u64>(p, load<u64>(p) + 1);
}

@inline function flowPtr(f: u32): usize {
  return flows + <usize>f * CT_FLOW_SIZE;
}

@inline function slotPtr(i: u32): usize {
  return slots + (<usize>i << 4);
}

@inline function key0(src: u32, dst: u32): u64 {
  return (<u64>dst << 32) | <u64>src;
}

@inline function key1(proto: u32, sport: u32, dport: u32): u64 {
  return (<u64>(proto & 0xff) << 56) | (<u64>(dport & 0xffff) << 16) | <u64>(sport & 0xffff);
}

@inline function homeOf(k0: u64, k1: u64): u32 {
  const h = mix64(mix64(k0 ^ seed0) ^ k1 ^ seed1);
  return <u32>(((h >> 32) * <u64>nSlots) >> 32);
}

/** Slot holding the key, or -1. Ends at the first empty slot (load <= 2/3). */
@inline function findSlot(k0: u64, k1: u64): i32 {
  let i = homeOf(k0, k1);
  const n = nSlots;
  while (true) {
    const s = slotPtr(i);
    const v1 = load<u64>(s, 8);
    if ((v1 >> 32) == 0) return -1;
    if (load<u64>(s) == k0 && (v1 & KEY1_MASK) == k1) return <i32>i;
    i++;
    if (i == n) i = 0;
  }
  return -1;
}

@inline function refOfSlot(i: i32): u32 {
  return <u32>(load<u64>(slotPtr(<u32>i), 8) >> 32) & 0xffffff;
}

function insertSlot(k0: u64, k1: u64, ref: u32): void {
  let i = homeOf(k0, k1);
  const n = nSlots;
  while (true) {
    const s = slotPtr(i);
    if ((load<u64>(s, 8) >> 32) == 0) {
      store<u64>(s, k0);
      store<u64>(s, k1 | (<u64>ref << 32), 8);
      return;
    }
    i++;
    if (i == n) i = 0;
  }
}

/** Backward-shift deletion of the key in slot `found` (Knuth 6.4 Algorithm R). */
function removeSlot(found: u32): void {
  const n = nSlots;
  let hole = found;
  let j = found;
  while (true) {
    j++;
    if (j == n) j = 0;
    const s = slotPtr(j);
    const v1 = load<u64>(s, 8);
    if ((v1 >> 32) == 0) break;
    const home = homeOf(load<u64>(s), v1 & KEY1_MASK);
    // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
    const homeAfterHole = hole <= j ? home > hole && home <= j : home > hole || home <= j;
    if (!homeAfterHole) {
      memory.copy(slotPtr(hole), s, SLOT);
      hole = j;
    }
  }
  store<u64>(slotPtr(hole), 0);
  store<u64>(slotPtr(hole), 0, 8);
}

@inline function origKey0(r: usize): u64 { return load<u64>(r, F_OSRC); }
@inline function replyKey0(r: usize): u64 { return load<u64>(r, F_RSRC); }
@inline function origKey1(r: usize): u64 {
  return key1(load<u8>(r, F_PROTO), load<u16>(r, F_OSPORT), load<u16>(r, F_ODPORT));
}
@inline function replyKey1(r: usize): u64 {
  return key1(load<u8>(r, F_PROTO), load<u16>(r, F_RSPORT), load<u16>(r, F_RDPORT));
}

@inline function isUsed(f: u32): bool {
  return f < getHigh() && (<u32>load<u8>(flowPtr(f), F_FLAGS) & CT_F_USED) != 0;
}

/** Deadline reached: wrap-safe, so a u32 seconds clock may roll over. */
@inline function isExpired(r: usize, now: u32): bool {
  return <i32>(now - load<u32>(r, F_DEADLINE)) >= 0;
}

/** Remove flow `f` (in use) from the slots and put its record on the free list. */
function release(f: u32): void {
  const r = flowPtr(f);
  const so = findSlot(origKey0(r), origKey1(r));
  if (so >= 0) removeSlot(<u32>so);
  const sr = findSlot(replyKey0(r), replyKey1(r));
  if (sr >= 0) removeSlot(<u32>sr);
  if ((<u32>load<u8>(r, F_PROTO) & CT_PROTO_V6) != 0) {
    unrefTuples(load<u32>(r, F_OSRC), load<u32>(r, F_ODST), load<u32>(r, F_RSRC), load<u32>(r, F_RDST));
  }
  memory.fill(r, 0, CT_FLOW_SIZE);
  store<u32>(r, getFree(), F_NEXT);
  setFree(f);
  setLive(getLive() - 1);
}

/** An IPv6 flow's four handles go back (names6.ts). */
function unrefTuples(a: u32, b: u32, c: u32, d: u32): void {
  n6Unref(a);
  n6Unref(b);
  n6Unref(c);
  n6Unref(d);
}

@inline function timeoutFor(r: usize): u32 {
  const proto = <u32>load<u8>(r, F_PROTO) & ~CT_PROTO_V6;
  let which: u32;
  if (proto == 6) which = <u32>load<u8>(r, F_STATE);
  else if (proto == 17) which = (<u32>load<u8>(r, F_FLAGS) & CT_F_ASSURED) != 0 ? CT_TO_UDP_STREAM : CT_TO_UDP;
  else if (proto == 1 || proto == 58) which = CT_TO_ICMP;
  else which = CT_TO_GENERIC;
  return load<u32>(timeouts + (<usize>which << 2));
}

@inline function refresh(r: usize, now: u32): void {
  store<u32>(r, now, F_LAST);
  store<u32>(r, now + timeoutFor(r), F_DEADLINE);
}

// --- lookup ----------------------------------------------------------------------

/** The flow a packet with this tuple belongs to, as (flow << 1) | direction
 *  (CT_DIR_ORIG 0, CT_DIR_REPLY 1), or -1. Does not look at time: a flow
 *  past its deadline is found until it is reaped (see ctLookupLive). Hot
 *  path: never throws, allocates nothing. */
export function ctLookup(proto: u32, src: u32, dst: u32, sport: u32, dport: u32): i32 {
  if (nSlots == 0) return -1;
  const s = findSlot(key0(src, dst), key1(proto, sport, dport));
  if (s < 0) return -1;
  return <i32>(refOfSlot(s) - 1);
}

/** ctLookup for the data path: a flow whose deadline has passed at `now`
 *  is reaped on sight (counted as expired) and -1 returned, as
 *  nf_conntrack's lookup does with expired entries. */
export function ctLookupLive(proto: u32, src: u32, dst: u32, sport: u32, dport: u32, now: u32): i32 {
  if (nSlots == 0) return -1;
  const s = findSlot(key0(src, dst), key1(proto, sport, dport));
  if (s < 0) return -1;
  const ref = refOfSlot(s) - 1;
  const f = ref >> 1;
  if (isExpired(flowPtr(f), now)) {
    release(f);
    statAdd(CT_STAT_EXPIRED);
    return -1;
  }
  return <i32>ref;
}

/** For a tuple about to be inserted: reap a flow that holds it but has
 *  expired. Returns true when the tuple is still held by a live flow. */
function heldLive(k0: u64, k1: u64, now: u32): bool {
  const s = findSlot(k0, k1);
  if (s < 0) return false;
  const f = (refOfSlot(s) - 1) >> 1;
  if (!isExpired(flowPtr(f), now)) return true;
  release(f);
  statAdd(CT_STAT_EXPIRED);
  return false;
}

/** Early drop may take this flow: not assured, or an assured TCP flow that
 *  is already closing. */
@inline function evictable(r: usize): bool {
  if ((<u32>load<u8>(r, F_FLAGS) & CT_F_ASSURED) == 0) return true;
  if ((<u32>load<u8>(r, F_PROTO) & ~CT_PROTO_V6) != 6) return false;
  const st = <u32>load<u8>(r, F_STATE);
  return st >= CT_TCP_FIN_WAIT && st <= CT_TCP_CLOSE;
}

/** Make room in a full table: look at CT_EVICT_WINDOW slots from `home`
 *  (the new flow's home; fewer in a smaller table) and free the first
 *  expired flow seen (counted as expired) or else the evictable one seen
 *  least recently (counted as early_drop). Returns false when none is there.
 *  Bounded work: at most CT_EVICT_WINDOW slots and their records. */
function evictNear(home: u32, now: u32): bool {
  const n = nSlots;
  const w = n < CT_EVICT_WINDOW ? n : CT_EVICT_WINDOW;
  let i = home;
  let victim = NONE;
  let oldest: u32 = 0;
  for (let k: u32 = 0; k < w; k++) {
    const tag = <u32>(load<u64>(slotPtr(i), 8) >> 32);
    if (tag != 0) {
      const f = ((tag & 0xffffff) - 1) >> 1;
      const r = flowPtr(f);
      if (isExpired(r, now)) {
        release(f);
        statAdd(CT_STAT_EXPIRED);
        return true;
      }
      if (evictable(r)) {
        const age = now - load<u32>(r, F_LAST);
        if (victim == NONE || age > oldest) {
          victim = f;
          oldest = age;
        }
      }
    }
    i++;
    if (i == n) i = 0;
  }
  if (victim == NONE) return false;
  release(victim);
  statAdd(CT_STAT_EARLY_DROP);
  return true;
}

// --- create / update / delete ----------------------------------------------------

/** Track a new flow: original tuple (proto, oSrc, oDst, oSport, oDport) as
 *  its first packet was seen, reply tuple (rSrc, rDst, rSport, rDport) as the
 *  answers will arrive (after translation: for no NAT, the original
 *  reversed). `nat` is CT_NAT_*; `now` seconds. A TCP flow starts in state
 *  NONE: feed its first packet to ctUpdateTcp next (and ctDelete it if that
 *  says invalid). Returns the flow index, or
 *   E_FULL      maxFlows flows are tracked and early drop found no victim
 *               near the new flow's home (counted; nothing changes),
 *   E_CT_CLASH  a tuple belongs to a live flow (counted; nothing changes),
 *   E_RANGE     bad nat kind or the two tuples are the same key,
 *   E_NOT_INIT  no table.
 *  A flow past its deadline that holds one of the tuples is reaped first.
 *  With the table full, one flow near the new one's home slot is reaped
 *  (expired) or early-dropped (not assured) to make room, if there is one. */
export function ctCreate(proto: u32, oSrc: u32, oDst: u32, oSport: u32, oDport: u32,
  rSrc: u32, rDst: u32, rSport: u32, rDport: u32, nat: u32, now: u32): i32 {
  if (nSlots == 0) return E_NOT_INIT;
  if (nat > CT_NAT_BOTH) return E_RANGE;
  const ok0 = key0(oSrc, oDst);
  const ok1 = key1(proto, oSport, oDport);
  const rk0 = key0(rSrc, rDst);
  const rk1 = key1(proto, rSport, rDport);
  if (ok0 == rk0 && ok1 == rk1) return E_RANGE;
  const v6 = (proto & CT_PROTO_V6) != 0;
  if (v6) {
    if (!n6Live(oSrc) || !n6Live(oDst) || !n6Live(rSrc) || !n6Live(rDst)) return E_RANGE;
    // The record will hold a reference to each handle. Taken first: a
    // flow reaped or evicted below may hold the only other one.
    n6Ref(oSrc);
    n6Ref(oDst);
    n6Ref(rSrc);
    n6Ref(rDst);
  }
  if (heldLive(ok0, ok1, now) || heldLive(rk0, rk1, now)) {
    if (v6) unrefTuples(oSrc, oDst, rSrc, rDst);
    statAdd(CT_STAT_CLASH);
    return E_CT_CLASH;
  }
  if (getLive() >= maxFlows && !evictNear(homeOf(ok0, ok1), now)) {
    if (v6) unrefTuples(oSrc, oDst, rSrc, rDst);
    statAdd(CT_STAT_INSERT_FAILED);
    return E_FULL;
  }
  let f = getFree();
  if (f != NONE) {
    setFree(load<u32>(flowPtr(f), F_NEXT));
  } else {
    f = getHigh();
    setHigh(f + 1);
  }
  const r = flowPtr(f);
  store<u32>(r, oSrc, F_OSRC);
  store<u32>(r, oDst, F_ODST);
  store<u16>(r, <u16>oSport, F_OSPORT);
  store<u16>(r, <u16>oDport, F_ODPORT);
  store<u32>(r, rSrc, F_RSRC);
  store<u32>(r, rDst, F_RDST);
  store<u16>(r, <u16>rSport, F_RSPORT);
  store<u16>(r, <u16>rDport, F_RDPORT);
  store<u8>(r, <u8>proto, F_PROTO);
  store<u8>(r, <u8>nat, F_NAT);
  store<u8>(r, 0, F_STATE);
  store<u8>(r, <u8>CT_F_USED, F_FLAGS);
  store<u32>(r, NONE, F_NEXT);
  refresh(r, now);
  insertSlot(ok0, ok1, (f << 1) + 1);
  insertSlot(rk0, rk1, ((f << 1) | 1) + 1);
  setLive(getLive() + 1);
  statAdd(CT_STAT_INSERTS);
  return <i32>f;
}

/** A packet of flow `f` went in direction `dir` at `now`: refresh its
 *  timer (TCP: at its current state's timeout; use ctUpdateTcp to follow
 *  flags). A UDP flow with traffic after its first reply becomes a stream
 *  (ASSURED, the longer timeout). Returns OK, E_NOT_FOUND (no such live record) or
 *  E_RANGE (dir > 1). */
export function ctTouch(f: u32, dir: u32, now: u32): i32 {
  if (dir > 1) return E_RANGE;
  if (!isUsed(f)) return E_NOT_FOUND;
  const r = flowPtr(f);
  let fl = <u32>load<u8>(r, F_FLAGS);
  // UDP: traffic after a reply makes a stream (ASSURED, longer timeout).
  if ((fl & CT_F_SEEN_REPLY) != 0 && (<u32>load<u8>(r, F_PROTO) & ~CT_PROTO_V6) == 17) fl |= CT_F_ASSURED;
  if (dir == CT_DIR_REPLY) fl |= CT_F_SEEN_REPLY;
  store<u8>(r, <u8>fl, F_FLAGS);
  refresh(r, now);
  return OK;
}

// nf_conntrack_proto_tcp.c tcp_conntracks[dir][event][state], without its
// window tracking. States sNO sSS sSR sES sFW sCW sLA sTW sCL sS2 across,
// events syn synack fin ack rst none down; ORIGINAL then REPLY.
const TCP_TABLE: StaticArray<u8> = [
  // ORIGINAL
  /*syn*/    1, 1, 11, 11, 11, 11, 11, 1, 1, 9,
  /*synack*/ 10, 10, 2, 10, 10, 10, 10, 10, 10, 2,
  /*fin*/    10, 10, 4, 4, 6, 6, 6, 7, 8, 10,
  /*ack*/    3, 10, 3, 3, 5, 5, 7, 7, 8, 10,
  /*rst*/    10, 8, 8, 8, 8, 8, 8, 8, 8, 8,
  /*none*/   10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
  // REPLY
  /*syn*/    10, 9, 10, 10, 10, 10, 10, 1, 10, 9,
  /*synack*/ 10, 2, 11, 11, 11, 11, 11, 11, 11, 2,
  /*fin*/    10, 10, 4, 4, 6, 6, 6, 7, 8, 10,
  /*ack*/    10, 11, 2, 3, 5, 5, 7, 7, 8, 11,
  /*rst*/    10, 8, 8, 8, 8, 8, 8, 8, 8, 8,
  /*none*/   10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
];

/** nf_conntrack's get_conntrack_index: which event a flag byte is. */
@inline function tcpEvent(flags: u32): u32 {
  if (flags & TCP_RST) return 4;
  if (flags & TCP_SYN) return (flags & TCP_ACKF) ? 1 : 0;
  if (flags & TCP_FIN) return 2;
  if (flags & TCP_ACKF) return 3;
  return 5;
}

/** Follow TCP flow `f` through a packet with flag byte `flags` going in
 *  direction `dir` at `now`, by nf_conntrack's state table (SYN, SYN-ACK,
 *  FIN, ACK, RST; no sequence-window checks). Accepted transitions set the
 *  state and its timeout; an ignored or invalid packet changes nothing
 *  (invalid ones are counted). A SYN in TIME_WAIT/CLOSE reopens the flow in
 *  place. Returns state | (CT_TCP_ACCEPTED/IGNORED/INVALID << 8), or
 *  E_NOT_FOUND, or E_RANGE (not a TCP flow, or dir > 1). */
export function ctUpdateTcp(f: u32, dir: u32, flags: u32, now: u32): i32 {
  if (dir > 1) return E_RANGE;
  if (!isUsed(f)) return E_NOT_FOUND;
  const r = flowPtr(f);
  if ((<u32>load<u8>(r, F_PROTO) & ~CT_PROTO_V6) != 6) return E_RANGE;
  const old = <u32>load<u8>(r, F_STATE);
  const next = <u32>unchecked(TCP_TABLE[dir * 60 + tcpEvent(flags) * 10 + old]);
  if (next == sIV) {
    statAdd(CT_STAT_INVALID);
    return <i32>(old | (CT_TCP_INVALID << 8));
  }
  if (next == sIG) return <i32>(old | (CT_TCP_IGNORED << 8));
  store<u8>(r, <u8>next, F_STATE);
  let fl = <u32>load<u8>(r, F_FLAGS);
  if (dir == CT_DIR_REPLY) fl |= CT_F_SEEN_REPLY;
  if (next == CT_TCP_ESTABLISHED && (fl & CT_F_SEEN_REPLY) != 0) fl |= CT_F_ASSURED;
  store<u8>(r, <u8>fl, F_FLAGS);
  refresh(r, now);
  return <i32>next;
}

/** Stop tracking flow `f`: both keys go. Returns OK, or E_NOT_FOUND. */
export function ctDelete(f: u32): i32 {
  if (!isUsed(f)) return E_NOT_FOUND;
  release(f);
  statAdd(CT_STAT_DELETES);
  return OK;
}

/** Reap flows whose deadline has passed at `now`, looking at no more than
 *  `budget` flow records: a clock hand resumes where the previous call
 *  stopped and wraps over the records ever used. Returns how many it
 *  reaped. Bounded work, so the data path can call it every batch. */
export function ctExpire(now: u32, budget: u32): u32 {
  const high = getHigh();
  if (high == 0) return 0;
  let n: u32 = 0;
  if (budget > high) budget = high;
  let h = load<u32>(hdr + H_HAND);
  for (let k: u32 = 0; k < budget; k++) {
    const r = flowPtr(h);
    if ((<u32>load<u8>(r, F_FLAGS) & CT_F_USED) != 0 && isExpired(r, now)) {
      release(h);
      n++;
    }
    h++;
    if (h >= high) h = 0;
  }
  store<u32>(hdr + H_HAND, h);
  const sp = stats + (<usize>CT_STAT_EXPIRED << 3);
  store<u64>(sp, load<u64>(sp) + <u64>n);
  return n;
}

/** Delete the flows of protocol `proto` that a service sent to a backend
 *  which is gone: those DNATed (or DNAT + SNAT) from frontend faddr:fport to
 *  backend baddr:bport, for any entry of the list at `list`: `n` 16-byte
 *  records sorted ascending by (key u64 @0, faddr u32 @8), key = baddr << 32
 *  | bport << 16 | fport, 4 bytes unused. (kube-proxy does this for UDP:
 *  `conntrack -D --orig-dst <frontend> --dst-nat <endpoint>`, or a client
 *  keeps sending a dead pod its datagrams.) Looks at records [from, from +
 *  budget) of the records ever used, a binary search of the list each;
 *  returns where to go on, or -1 once the end is reached. Deletions are
 *  counted as deletes, and ctFlushed() says how many this call made.
 *  E_RANGE when the list does not lie inside memory. */
export function ctFlushBackends(proto: u32, list: usize, n: u32, from: u32, budget: u32): i32 {
  flushed = 0;
  if (<u64>list + (<u64>n << 4) > (<u64>memory.size() << 16)) return E_RANGE;
  const high = getHigh();
  let end = <u64>from + <u64>budget;
  if (end > <u64>high) end = <u64>high;
  for (let f = from; <u64>f < end; f++) {
    const r = flowPtr(f);
    if ((<u32>load<u8>(r, F_FLAGS) & CT_F_USED) == 0 || <u32>load<u8>(r, F_PROTO) != proto) continue;
    const nat = <u32>load<u8>(r, F_NAT);
    if (nat != CT_NAT_DNAT && nat != CT_NAT_BOTH) continue;
    const key = (<u64>load<u32>(r, F_RSRC) << 32) | (<u64>load<u16>(r, F_RSPORT) << 16) | <u64>load<u16>(r, F_ODPORT);
    const faddr = load<u32>(r, F_ODST);
    let lo: u32 = 0;
    let hi = n;
    while (lo < hi) {
      const mid = lo + ((hi - lo) >> 1);
      const e = list + (<usize>mid << 4);
      const ek = load<u64>(e);
      const ef = load<u32>(e, 8);
      if (ek < key || (ek == key && ef < faddr)) lo = mid + 1;
      else hi = mid;
    }
    if (lo < n) {
      const e = list + (<usize>lo << 4);
      if (load<u64>(e) == key && load<u32>(e, 8) == faddr) {
        release(f);
        statAdd(CT_STAT_DELETES);
        flushed++;
      }
    }
  }
  return end >= <u64>high ? -1 : <i32>end;
}

let flushed: u32 = 0;

/** Flows the last ctFlushBackends call deleted. */
export function ctFlushed(): u32 { return flushed; }

// --- introspection ---------------------------------------------------------------

/** Flows tracked (including expired ones not reaped yet). */
export function ctCount(): u32 { return hdr == 0 ? 0 : getLive(); }

/** ctCount without the lock (a hint, e.g. "no flows at all", taken before
 *  deciding to lock): atomic, so never torn. */
export function ctCountHint(): u32 {
  if (hdr == 0) return 0;
  return ASC_FEATURE_THREADS ? atomic.load<u32>(hdr + H_LIVE) : getLive();
}

/** Flows the table holds at most (the ctSetup argument). */
export function ctCapacity(): u32 { return maxFlows; }

/** Hash slots (3 per flow). */
export function ctSlotCount(): u32 { return nSlots; }

/** Bytes of linear memory the flows and slots use. */
export function ctMemoryBytes(): usize { return carvedBytes; }

/** Counter `i` (CT_STAT_*), or 0. */
export function ctStat(i: u32): u64 {
  if (stats == 0 || i >= CT_STAT_COUNT) return 0;
  return load<u64>(stats + (<usize>i << 3));
}

/** Dump iterator: the first flow index >= `i` in use, or -1.
 *  for (f = ctEntryAt(0); f >= 0; f = ctEntryAt(f + 1)) read ctFlowPtr(f). */
export function ctEntryAt(i: u32): i32 {
  const high = getHigh();
  for (let f = i; f < high; f++) {
    if ((<u32>load<u8>(flowPtr(f), F_FLAGS) & CT_F_USED) != 0) return <i32>f;
  }
  return -1;
}

/** Address of flow `f`'s CT_FLOW_SIZE-byte record (layout above), or 0 when
 *  `f` is not in use. Valid until the flow is deleted or reaped. */
export function ctFlowPtr(f: u32): usize {
  return isUsed(f) ? flowPtr(f) : 0;
}

/** Home slot of a key under the current seed (tests that build colliding
 *  keys), or 0 with no table. */
export function ctHomeSlot(proto: u32, src: u32, dst: u32, sport: u32, dport: u32): u32 {
  if (nSlots == 0) return 0;
  return homeOf(key0(src, dst), key1(proto, sport, dport));
}

/** Where the clock hand will look next (tests, `show conntrack` stats). */
export function ctHand(): u32 { return hdr == 0 ? 0 : load<u32>(hdr + H_HAND); }

/** Records ever handed out: the range the clock hand covers. */
export function ctHighWater(): u32 { return getHigh(); }

// --- SNAT source ports --------------------------------------------------------------

// Outside the kernel's default ip_local_port_range (32768-60999), so that an
// answer to a translated flow never looks like one to the node's own sockets.
let portMin: u32 = 61000;
let portMax: u32 = 65535;

/** Set the range natAllocPort draws from (1 <= min <= max <= 65535).
 *  Returns OK or E_RANGE. */
export function natSetPortRange(min: u32, max: u32): i32 {
  if (min == 0 || min > max || max > 0xffff) return E_RANGE;
  portMin = min;
  portMax = max;
  return OK;
}

export function natPortMin(): u32 { return portMin; }
export function natPortMax(): u32 { return portMax; }

/** A source port (ICMP: identifier) for a flow masqueraded to `nodeIp`
 *  towards dst:dport, such that the reply tuple (proto, dst, nodeIp, dport,
 *  port) belongs to no flow in the table (live or not yet reaped), or 0 when
 *  none was found. Randomised like --random-fully, and bounded like nf_nat's
 *  unique-tuple search: up to 128 consecutive candidates from a random
 *  offset, then 64, 32, 16 from fresh offsets (at most 240 probes; a range
 *  of <= 128 ports is searched whole). `seed` varies per call (e.g. a
 *  per-batch random from the control plane mixed with the packet's hash).
 *  IPv6 flows: proto | CT_PROTO_V6, nodeIp and dst handles (names6.ts).
 *  ICMP (proto 1, or ICMPv6's key): `port` is the echo identifier, checked as the reply
 *  tuple (proto, dst, nodeIp, id, 0); `dport` is ignored. */
export function natAllocPort(proto: u32, nodeIp: u32, dst: u32, dport: u32, seed: u32): u32 {
  const size = portMax - portMin + 1;
  const k0 = key0(dst, nodeIp);
  let attempts: u32 = size < 128 ? size : 128;
  let h = mix64((<u64>seed << 32) ^ k0 ^ (<u64>dport << 8) ^ <u64>proto ^ seed0);
  let off = <u32>(h >> 32) % size;
  let i: u32 = 0;
  while (true) {
    const port = portMin + off;
    // ICMP echo keys hold the identifier as the "source port" both ways.
    const k1 = proto == 1 || proto == ICMP6_KEY ? key1(proto, port, 0) : key1(proto, dport, port);
    if (nSlots == 0 || findSlot(k0, k1) < 0) return port;
    off++;
    if (off == size) off = 0;
    if (++i != attempts) continue;
    if (attempts == size) return 0;
    attempts >>= 1;
    if (attempts < 16) return 0;
    h = mix64(h + 0x9e3779b97f4a7c15);
    off = <u32>(h >> 32) % size;
    i = 0;
  }
  return 0;
}
