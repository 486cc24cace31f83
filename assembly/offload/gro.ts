// Generic receive offload in software (the receive side of a tun device
// opened with IFF_VNET_HDR and TUN_F_TSO4): a batch of decapsulated IPv4/TCP
// packets becomes fewer, larger frames, each behind a virtio_net_hdr, so the
// kernel takes a whole run of segments in one write and one trip up its stack.
//
// Coalescing rules (the kernel's inet_gro_receive/tcp_gro_receive and
// wireguard-go's tcpGRO, made slightly stricter where noted):
//  A packet may start or join a run only if it is a whole IPv4 datagram
//  (length == total length) with a 20-byte header (no options: the kernel
//  does not coalesce those either), not a fragment, a valid header checksum,
//  protocol TCP with a valid data offset, flags exactly ACK or ACK|PSH (SYN,
//  FIN, RST, URG, ECE and CWR packets pass singly), a non-empty payload, and
//  a valid TCP checksum. The checksum is verified here because the frame is
//  handed over with NEEDS_CSUM: the kernel would recompute, not verify, and a
//  corrupted segment would otherwise be delivered with a fresh valid sum.
//  Packet q joins the open run of its flow (same addresses and ports) iff,
//  compared with the run's first packet: TOS, flags/fragment word (DF) and
//  TTL are equal (id, length and checksum may differ); TCP data offset, ack
//  number, window and every option byte are equal (the kernel does not
//  compare the window; we do, so nothing the segments said is lost); q's
//  sequence number is the run's next one; q's payload is at most gso_size
//  (the first packet's payload); and the frame stays within 65535 bytes.
//  A run closes after a packet shorter than gso_size or one with PSH (so only
//  the last packet of a run may carry PSH or be short), and whenever a packet
//  of its flow cannot join it (that packet then starts a new run if it may).
//  Flows may interleave in the batch: up to GRO_OPEN_RUNS runs are open at a
//  time (the oldest is closed to make room). A run of one packet is passed
//  through unchanged behind a gso_type NONE header (flags 0: the kernel
//  checks its checksum itself); so is every packet that may not coalesce.
//
// A merged frame is the first packet's headers with total length and header
// checksum rewritten, PSH set if the last packet had it, the TCP checksum
// field holding the pseudo-header partial sum, then every payload in order;
// its header says NEEDS_CSUM, GSO_TCPV4, gso_size = first payload, hdr_len,
// csum_start = 20, csum_offset = 16.
//
// Order: frames are written in the batch order of their first packet; within
// a flow this is the arrival order (a run closes before its flow's next run
// or single starts), across flows it may change, as with the kernel's GRO.
import { E_NOT_INIT, E_RANGE } from "../abi";
import { carve } from "../layout";
import { ld16, ld32, ld8, st16, st8 } from "../wire/bytes";
import { csumFinish, csumPartial, csumPartialField, csumPseudo } from "../wire/checksum";
import { IP_TOTLEN, ipChecksumOk, ipDst, ipIsFragment, ipSrc, PROTO_TCP } from "../wire/ipv4";
import { TCP_ACKF, TCP_CSUM, TCP_FLAGS, TCP_PSH, TCP_SEQ } from "../wire/tcp";
import { emitVnet, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN } from "./vnet";

/** Most packets one groCoalesce call takes. */
export const GRO_MAX_BATCH: u32 = 4096;
/** Runs open at once (distinct flows being coalesced in one batch). */
export const GRO_OPEN_RUNS: u32 = 8;
/** Largest IPv4 datagram a merged frame may become. */
export const GRO_MAX_FRAME: u32 = 65535;

const NO_NEXT: u16 = 0xffff;
const MARK_SINGLE: u8 = 0; // written through unchanged
const MARK_HEAD: u8 = 1; // first packet of a merged frame
const MARK_MEMBER: u8 = 2; // later packet of a merged frame

// Per-packet scratch (carved at init by groCarve, so the batch allocates
// nothing, and each instance on a shared memory has its own): the index of
// the next packet of its run, and its mark.
let nextOf: usize = 0;
let markOf: usize = 0;

// Open runs, RUN_SIZE bytes each: flow key and the state an append needs.
const RUN_SIZE: usize = 32;
const R_SRC: usize = 0;
const R_DST: usize = 4;
const R_PORTS: usize = 8;
const R_HEAD: usize = 12; // packet index of the first packet
const R_TAIL: usize = 16; // packet index of the last packet
const R_NEXT_SEQ: usize = 20;
const R_GSO: usize = 24; // payload bytes of the first packet
const R_TOTAL: usize = 28; // IPv4 total length of the frame so far
let runs: usize = 0;

/** Carve the scratch above (init). False when memory cannot grow. */
export function groCarve(): bool {
  if (nextOf != 0) return true;
  nextOf = carve(<usize>GRO_MAX_BATCH * 2, 16);
  markOf = carve(<usize>GRO_MAX_BATCH, 16);
  runs = carve(<usize>GRO_OPEN_RUNS * RUN_SIZE, 16);
  return nextOf != 0 && markOf != 0 && runs != 0;
}
let openMask: u32 = 0; // bit r: runs[r] is open
let evictNext: u32 = 0;

@inline function pktPtr(pkts: usize, i: u32): usize { return <usize>load<u32>(pkts + (<usize>i << 2)); }
@inline function pktLen(lens: usize, i: u32): u32 { return load<u32>(lens + (<usize>i << 2)); }

/** True iff the packet may start or join a run (the first paragraph of the
 *  rules above). Reads only inside [p, p+len). */
function groCandidate(p: usize, len: u32): bool {
  if (len < 40 || ld8(p) != 0x45) return false;
  if (ld16(p + IP_TOTLEN) != len || ld8(p + 9) != PROTO_TCP || ipIsFragment(p)) return false;
  const thl = <u32>(ld8(p + 20 + 12) >> 4) << 2;
  if (thl < 20 || thl + 20 >= len) return false; // a non-empty payload
  const flags = ld8(p + 20 + TCP_FLAGS);
  if ((flags & ~TCP_PSH) != TCP_ACKF) return false;
  if (!ipChecksumOk(p)) return false;
  const tl = len - 20;
  return csumFinish(csumPartial(p + 20, tl, csumPseudo(ipSrc(p), ipDst(p), PROTO_TCP, tl))) == 0;
}

/** True iff candidate packet q (len bytes) may be appended to open run r
 *  whose first packet is h. */
function groCanAppend(r: usize, h: usize, q: usize, len: u32): bool {
  // IPv4: TOS, flags/fragment word, TTL (same addresses: the flow key).
  if (ld8(h + 1) != ld8(q + 1) || ld16(h + 6) != ld16(q + 6) || ld8(h + 8) != ld8(q + 8)) return false;
  const th = h + 20;
  const tq = q + 20;
  // TCP: data offset byte, ack, window, then every option byte.
  if (ld8(th + 12) != ld8(tq + 12) || ld32(th + 8) != ld32(tq + 8) || ld16(th + 14) != ld16(tq + 14)) return false;
  const thl = <u32>(ld8(th + 12) >> 4) << 2;
  for (let i: u32 = 20; i < thl; i += 4) {
    if (load<u32>(th + i) != load<u32>(tq + i)) return false;
  }
  const pay = len - 20 - thl;
  if (ld32(tq + TCP_SEQ) != load<u32>(r, R_NEXT_SEQ)) return false;
  if (pay > load<u32>(r, R_GSO)) return false;
  return load<u32>(r, R_TOTAL) + pay <= GRO_MAX_FRAME;
}

/** Coalesce a batch of `n` packets (packet i at the u32 pointer pkts[i],
 *  lens[i] bytes) into frames, each a virtio_net_hdr followed by a packet,
 *  written back to back into `out`; frame k's offset from `out` and length
 *  (header included) are written as two u32 at frames + 8k. Rules above.
 *  `out` must hold sum(lens) + 10*n bytes and `frames` n records; otherwise,
 *  or when n > GRO_MAX_BATCH, returns E_RANGE having written nothing.
 *  Returns the number of frames. Inputs are only read; they must not overlap
 *  `out`. No allocation, no throw. */
export function groCoalesce(pkts: usize, lens: usize, n: u32, out: usize, outCap: u32, frames: usize, maxFrames: u32): i32 {
  if (n > GRO_MAX_BATCH || maxFrames < n) return E_RANGE;
  if (nextOf == 0) return E_NOT_INIT;
  let need: u64 = 0;
  for (let i: u32 = 0; i < n; i++) need += <u64>pktLen(lens, i) + VNET_HDR_LEN;
  if (need > <u64>outCap) return E_RANGE;

  // Pass 1: chain packets into runs.
  openMask = 0;
  evictNext = 0;
  for (let i: u32 = 0; i < n; i++) {
    store<u16>(nextOf + (<usize>i << 1), NO_NEXT);
    store<u8>(markOf + <usize>i, MARK_SINGLE);
    const q = pktPtr(pkts, i);
    const len = pktLen(lens, i);
    // A packet whose flow can be told (IPv4, TCP, ports present) closes its
    // flow's open run unless it joins it.
    if (len < 40 || (ld8(q) >> 4) != 4 || ld8(q + 9) != PROTO_TCP) continue;
    const ihl = <u32>(ld8(q) & 0xf) << 2;
    if (ihl < 20 || ihl + 4 > len) continue;
    const src = load<u32>(q, 12);
    const dst = load<u32>(q, 16);
    const ports = load<u32>(q + ihl);
    const cand = ihl == 20 && groCandidate(q, len);
    let slot: i32 = -1;
    for (let r: u32 = 0; r < GRO_OPEN_RUNS; r++) {
      if ((openMask & (1 << r)) == 0) continue;
      const rp = runs + <usize>r * RUN_SIZE;
      if (load<u32>(rp, R_SRC) == src && load<u32>(rp, R_DST) == dst && load<u32>(rp, R_PORTS) == ports) {
        slot = <i32>r;
        break;
      }
    }
    if (slot >= 0) {
      const rp = runs + <usize>slot * RUN_SIZE;
      const head = load<u32>(rp, R_HEAD);
      if (cand && groCanAppend(rp, pktPtr(pkts, head), q, len)) {
        const tail = load<u32>(rp, R_TAIL);
        store<u16>(nextOf + (<usize>tail << 1), <u16>i);
        store<u8>(markOf + <usize>head, MARK_HEAD);
        store<u8>(markOf + <usize>i, MARK_MEMBER);
        const pay = len - 20 - (<u32>(ld8(q + 32) >> 4) << 2);
        store<u32>(rp, i, R_TAIL);
        store<u32>(rp, load<u32>(rp, R_NEXT_SEQ) + pay, R_NEXT_SEQ);
        store<u32>(rp, load<u32>(rp, R_TOTAL) + pay, R_TOTAL);
        if (pay < load<u32>(rp, R_GSO) || (ld8(q + 20 + TCP_FLAGS) & TCP_PSH) != 0) openMask &= ~(1 << <u32>slot);
        continue;
      }
      openMask &= ~(1 << <u32>slot);
    }
    // Start a run (a PSH packet ends its run at once: nothing may follow).
    if (!cand || (ld8(q + 20 + TCP_FLAGS) & TCP_PSH) != 0) continue;
    let r: u32 = 0;
    if (openMask == (1 << GRO_OPEN_RUNS) - 1) {
      r = evictNext;
      evictNext = (evictNext + 1) % GRO_OPEN_RUNS;
    } else {
      while ((openMask & (1 << r)) != 0) r++;
    }
    const rp = runs + <usize>r * RUN_SIZE;
    const pay = len - 20 - (<u32>(ld8(q + 32) >> 4) << 2);
    store<u32>(rp, src, R_SRC);
    store<u32>(rp, dst, R_DST);
    store<u32>(rp, ports, R_PORTS);
    store<u32>(rp, i, R_HEAD);
    store<u32>(rp, i, R_TAIL);
    store<u32>(rp, ld32(q + 20 + TCP_SEQ) + pay, R_NEXT_SEQ);
    store<u32>(rp, pay, R_GSO);
    store<u32>(rp, len, R_TOTAL);
    openMask |= 1 << r;
  }
  openMask = 0;

  // Pass 2: write frames in the order of their first packet.
  let o: usize = out;
  let k: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const mark = load<u8>(markOf + <usize>i);
    if (mark == MARK_MEMBER) continue;
    const h = pktPtr(pkts, i);
    const hlen = pktLen(lens, i);
    const f = o + VNET_HDR_LEN;
    let total: u32 = hlen;
    if (mark == MARK_SINGLE) {
      emitVnet(o, 0, VNET_GSO_NONE, 0, 0, 0, 0);
      memory.copy(f, h, hlen);
    } else {
      const hdr = 20 + (<u32>(ld8(h + 32) >> 4) << 2);
      const gso = hlen - hdr;
      memory.copy(f, h, hlen);
      let lastFlags = ld8(h + 20 + TCP_FLAGS);
      let j = <u32>load<u16>(nextOf + (<usize>i << 1));
      while (j != <u32>NO_NEXT) {
        const q = pktPtr(pkts, j);
        const pay = pktLen(lens, j) - hdr;
        memory.copy(f + total, q + hdr, pay);
        total += pay;
        lastFlags = ld8(q + 20 + TCP_FLAGS);
        j = <u32>load<u16>(nextOf + (<usize>j << 1));
      }
      st16(f + IP_TOTLEN, total);
      st16(f + 10, 0);
      st16(f + 10, csumFinish(csumPartial(f, 20, 0)));
      st8(f + 20 + TCP_FLAGS, ld8(f + 20 + TCP_FLAGS) | (lastFlags & TCP_PSH));
      st16(f + 20 + TCP_CSUM, csumPartialField(ipSrc(f), ipDst(f), PROTO_TCP, total - 20));
      emitVnet(o, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdr, gso, 20, <u32>TCP_CSUM);
    }
    store<u32>(frames + (<usize>k << 3), <u32>(o - out));
    store<u32>(frames + (<usize>k << 3), total + VNET_HDR_LEN, 4);
    o += total + VNET_HDR_LEN;
    k++;
  }
  return <i32>k;
}
