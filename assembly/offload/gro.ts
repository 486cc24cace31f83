// Generic receive offload in software (the receive side of a tun device
// opened with IFF_VNET_HDR and TUN_F_TSO4, and TUN_F_TSO6 for IPv6): a batch
// of decapsulated IPv4/TCP and IPv6/TCP packets becomes fewer, larger frames,
// each behind a virtio_net_hdr, so the kernel takes a whole run of segments
// in one write and one trip up its stack.
//
// Coalescing rules (the kernel's inet_gro_receive/ipv6_gro_receive +
// tcp_gro_receive and wireguard-go's tcpGRO, made slightly stricter where
// noted). IPv6 takes part only when the caller passes GRO_TCPV6 (the tun was
// opened with TUN_F_TSO6); without it every IPv6 packet passes singly.
//  A packet may start or join a run only if it is
//   IPv4: a whole datagram (length == total length) with a 20-byte header
//    (no options: the kernel does not coalesce those either), not a
//    fragment, with a valid header checksum and protocol TCP;
//   IPv6: a whole packet (length == 40 + payload length) whose next header
//    is TCP, right behind the fixed header (extension headers pass singly,
//    as with wireguard-go; the kernel would walk and compare them);
//  and, in both, a TCP header with a valid data offset, flags exactly ACK or
//  ACK|PSH (SYN, FIN, RST, URG, ECE and CWR packets pass singly), a
//  non-empty payload, and a valid TCP checksum over the family's pseudo
//  header. The checksum is verified here because the frame is handed over
//  with NEEDS_CSUM: the kernel would recompute, not verify, and a corrupted
//  segment would otherwise be delivered with a fresh valid sum.
//  Packet q joins the open run of its flow (family, addresses and ports)
//  iff, compared with the run's first packet:
//   IPv4: TOS, flags/fragment word (DF) and TTL are equal (id, length and
//    checksum may differ);
//   IPv6: the first word (version, traffic class, flow label) and the hop
//    limit are equal (the payload length may differ). This is what the
//    kernel requires to merge: ipv6_gro_receive treats a different flow
//    label as another flow and a different traffic class or hop limit as a
//    flush. Here a different flow label closes the run instead of opening a
//    second one beside it, so one TCP connection never has two runs open
//    and its packets are never reordered (wireguard-go ignores the label);
//   both: TCP data offset, ack number, window and every option byte are
//   equal (the kernel does not compare the window; we do, so nothing the
//   segments said is lost); q's sequence number is the run's next one; q's
//   payload is at most gso_size (the first packet's payload); and the frame
//   stays within 65535 bytes: the IPv4 total length, and for IPv6 header
//   and payload together, the kernel's GRO limit (skb_gro_receive keeps a
//   merged packet below 64 KiB) although the payload length field alone
//   would allow 40 bytes more.
//  A run closes after a packet shorter than gso_size or one with PSH (so only
//  the last packet of a run may carry PSH or be short), and whenever a packet
//  of its flow cannot join it (that packet then starts a new run if it may).
//  An IPv6 packet whose next header is not TCP, UDP, ICMPv6 or "no next
//  header" (an extension header, behind which any flow's TCP may hide)
//  closes every open IPv6 run between its two addresses, so it is not
//  overtaken by later segments of its own flow.
//  Flows may interleave in the batch: up to GRO_OPEN_RUNS runs are open at a
//  time (the oldest is closed to make room); IPv4 and IPv6 flows never merge.
//  A run of one packet is passed through unchanged behind a gso_type NONE
//  header (flags 0: the kernel checks its checksum itself); so is every
//  packet that may not coalesce.
//
// A merged frame is the first packet's headers with the length rewritten
// (IPv4: total length and header checksum; IPv6: payload length, no header
// checksum), PSH set if the last packet had it, the TCP checksum field
// holding the pseudo-header partial sum (addresses, TCP length, protocol),
// then every payload in order; its header says NEEDS_CSUM, gso_size = first
// payload, hdr_len, csum_offset = 16, and GSO_TCPV4 with csum_start = 20 or
// GSO_TCPV6 with csum_start = 40.
//
// Order: frames are written in the batch order of their first packet; within
// a flow this is the arrival order (a run closes before its flow's next run
// or single starts), across flows it may change, as with the kernel's GRO.
import { E_NOT_INIT, E_RANGE, GRO_TCPV6 } from "../abi";
import { carve } from "../layout";
import { ld16, ld32, ld8, st16, st8 } from "../wire/bytes";
import { csumFinish, csumPartial, csumPartialField, csumPseudo } from "../wire/checksum";
import { IP_TOTLEN, ipChecksumOk, ipDst, ipIsFragment, ipSrc, PROTO_TCP, PROTO_UDP } from "../wire/ipv4";
import { a6copy, a6eq, csumPseudo6, IP6_DST, IP6_HDR_LEN, IP6_HLIM, IP6_NEXT, IP6_PLEN, IP6_SRC, PROTO_ICMPV6, PROTO_NONE6 } from "../wire/ipv6";
import { TCP_ACKF, TCP_CSUM, TCP_FLAGS, TCP_PSH, TCP_SEQ } from "../wire/tcp";
import { emitVnet, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_HDR_LEN } from "./vnet";

/** Most packets one groCoalesce call takes. */
export const GRO_MAX_BATCH: u32 = 4096;
/** Runs open at once (distinct flows being coalesced in one batch). */
export const GRO_OPEN_RUNS: u32 = 8;
/** Largest IP packet (IPv4 datagram, or IPv6 header + payload) a merged frame may become. */
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
const RUN_SIZE: usize = 64;
const R_SRC: usize = 0; // IPv4: 4 bytes, IPv6: 16
const R_DST: usize = 16; // likewise
const R_PORTS: usize = 32;
const R_HEAD: usize = 36; // packet index of the first packet
const R_TAIL: usize = 40; // packet index of the last packet
const R_NEXT_SEQ: usize = 44;
const R_GSO: usize = 48; // payload bytes of the first packet
const R_TOTAL: usize = 52; // bytes of the frame's IP packet so far
const R_IPHL: usize = 56; // IP header bytes, and so the family: 20 (IPv4) or 40 (IPv6)
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
/** Payload bytes of a candidate packet of `len` bytes whose TCP header is at p + iphl. */
@inline function tcpPayloadLen(p: usize, len: u32, iphl: u32): u32 { return len - iphl - (<u32>(ld8(p + iphl + 12) >> 4) << 2); }

/** True iff the IPv4 packet may start or join a run (the first paragraph
 *  of the rules above). Reads only inside [p, p+len). */
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

/** The same for an IPv6 packet (version 6 already seen by the caller).
 *  Reads only inside [p, p+len). */
function groCandidate6(p: usize, len: u32): bool {
  if (len < 60 || ld16(p + IP6_PLEN) + IP6_HDR_LEN != len || ld8(p + IP6_NEXT) != PROTO_TCP) return false;
  const t = p + IP6_HDR_LEN;
  const thl = <u32>(ld8(t + 12) >> 4) << 2;
  if (thl < 20 || thl + IP6_HDR_LEN >= len) return false; // a non-empty payload
  if ((ld8(t + TCP_FLAGS) & ~TCP_PSH) != TCP_ACKF) return false;
  const tl = len - IP6_HDR_LEN;
  return csumFinish(csumPartial(t, tl, csumPseudo6(p, PROTO_TCP, tl))) == 0;
}

/** True iff candidate packet q (len bytes) may be appended to open run r
 *  whose first packet is h (both of r's family). */
function groCanAppend(r: usize, h: usize, q: usize, len: u32): bool {
  const iphl = load<u32>(r, R_IPHL);
  if (iphl == 20) {
    // IPv4: TOS, flags/fragment word, TTL (same addresses: the flow key).
    if (ld8(h + 1) != ld8(q + 1) || ld16(h + 6) != ld16(q + 6) || ld8(h + 8) != ld8(q + 8)) return false;
  } else {
    // IPv6: version, traffic class and flow label; hop limit.
    if (load<u32>(h) != load<u32>(q) || ld8(h + IP6_HLIM) != ld8(q + IP6_HLIM)) return false;
  }
  const th = h + iphl;
  const tq = q + iphl;
  // TCP: data offset byte, ack, window, then every option byte.
  if (ld8(th + 12) != ld8(tq + 12) || ld32(th + 8) != ld32(tq + 8) || ld16(th + 14) != ld16(tq + 14)) return false;
  const thl = <u32>(ld8(th + 12) >> 4) << 2;
  for (let i: u32 = 20; i < thl; i += 4) {
    if (load<u32>(th + i) != load<u32>(tq + i)) return false;
  }
  const pay = len - iphl - thl;
  if (ld32(tq + TCP_SEQ) != load<u32>(r, R_NEXT_SEQ)) return false;
  if (pay > load<u32>(r, R_GSO)) return false;
  return load<u32>(r, R_TOTAL) + pay <= GRO_MAX_FRAME;
}

/** True iff open run rp is the flow of the packet at q (IP header iphl
 *  bytes: 20 for every IPv4 header length, 40 for IPv6) with `ports`. */
@inline function runIsFlow(rp: usize, iphl: u32, q: usize, ports: u32): bool {
  if (load<u32>(rp, R_PORTS) != ports || load<u32>(rp, R_IPHL) != iphl) return false;
  if (iphl == 20) return load<u32>(rp, R_SRC) == load<u32>(q, 12) && load<u32>(rp, R_DST) == load<u32>(q, 16);
  return a6eq(rp + R_SRC, q + IP6_SRC) && a6eq(rp + R_DST, q + IP6_DST);
}

/** An IPv6 packet (at least 40 bytes) that is not TCP right behind the
 *  fixed header but may hide TCP behind extension headers: close the open
 *  IPv6 runs between its addresses, whatever their ports. */
function closeRuns6(q: usize): void {
  const nh = ld8(q + IP6_NEXT);
  if (nh == PROTO_UDP || nh == PROTO_ICMPV6 || nh == PROTO_NONE6) return;
  for (let r: u32 = 0; r < GRO_OPEN_RUNS; r++) {
    if ((openMask & (1 << r)) == 0) continue;
    const rp = runs + <usize>r * RUN_SIZE;
    if (load<u32>(rp, R_IPHL) == 40 && a6eq(rp + R_SRC, q + IP6_SRC) && a6eq(rp + R_DST, q + IP6_DST)) openMask &= ~(1 << r);
  }
}

/** Coalesce a batch of `n` packets (packet i at the u32 pointer pkts[i],
 *  lens[i] bytes) into frames, each a virtio_net_hdr followed by a packet,
 *  written back to back into `out`; frame k's offset from `out` and length
 *  (header included) are written as two u32 at frames + 8k. Rules above.
 *  `flags`: GRO_TCPV6 lets IPv6/TCP coalesce into GSO_TCPV6 frames (only
 *  for a tun opened with TUN_F_TSO6); without it (0) IPv6 passes singly.
 *  `out` must hold sum(lens) + 10*n bytes and `frames` n records; otherwise,
 *  or when n > GRO_MAX_BATCH, returns E_RANGE having written nothing.
 *  Returns the number of frames. Inputs are only read; they must not overlap
 *  `out`. No allocation, no throw. */
export function groCoalesce(pkts: usize, lens: usize, n: u32, out: usize, outCap: u32, frames: usize, maxFrames: u32, flags: u32): i32 {
  if (n > GRO_MAX_BATCH || maxFrames < n) return E_RANGE;
  if (nextOf == 0) return E_NOT_INIT;
  let need: u64 = 0;
  for (let i: u32 = 0; i < n; i++) need += <u64>pktLen(lens, i) + VNET_HDR_LEN;
  if (need > <u64>outCap) return E_RANGE;
  const v6 = (flags & GRO_TCPV6) != 0;

  // Pass 1: chain packets into runs.
  openMask = 0;
  evictNext = 0;
  for (let i: u32 = 0; i < n; i++) {
    store<u16>(nextOf + (<usize>i << 1), NO_NEXT);
    store<u8>(markOf + <usize>i, MARK_SINGLE);
    const q = pktPtr(pkts, i);
    const len = pktLen(lens, i);
    // A packet whose flow can be told (IPv4 or IPv6, TCP, ports present)
    // closes its flow's open run unless it joins it.
    if (len < 40) continue;
    const ver = ld8(q) >> 4;
    let iphl: u32; // 20 stands for every IPv4 header length (the key is the same)
    let ports: u32;
    let cand: bool;
    if (ver == 4) {
      if (ld8(q + 9) != PROTO_TCP) continue;
      const ihl = <u32>(ld8(q) & 0xf) << 2;
      if (ihl < 20 || ihl + 4 > len) continue;
      iphl = 20;
      ports = load<u32>(q + ihl);
      cand = ihl == 20 && groCandidate(q, len);
    } else if (ver == 6 && v6) {
      if (ld8(q + IP6_NEXT) != PROTO_TCP) {
        closeRuns6(q);
        continue;
      }
      if (len < IP6_HDR_LEN + 4) continue;
      iphl = IP6_HDR_LEN;
      ports = load<u32>(q + IP6_HDR_LEN);
      cand = groCandidate6(q, len);
    } else {
      continue;
    }
    let slot: i32 = -1;
    for (let r: u32 = 0; r < GRO_OPEN_RUNS; r++) {
      if ((openMask & (1 << r)) == 0) continue;
      if (runIsFlow(runs + <usize>r * RUN_SIZE, iphl, q, ports)) {
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
        const pay = tcpPayloadLen(q, len, iphl);
        store<u32>(rp, i, R_TAIL);
        store<u32>(rp, load<u32>(rp, R_NEXT_SEQ) + pay, R_NEXT_SEQ);
        store<u32>(rp, load<u32>(rp, R_TOTAL) + pay, R_TOTAL);
        if (pay < load<u32>(rp, R_GSO) || (ld8(q + iphl + TCP_FLAGS) & TCP_PSH) != 0) openMask &= ~(1 << <u32>slot);
        continue;
      }
      openMask &= ~(1 << <u32>slot);
    }
    // Start a run (a PSH packet ends its run at once: nothing may follow).
    if (!cand || (ld8(q + iphl + TCP_FLAGS) & TCP_PSH) != 0) continue;
    let r: u32 = 0;
    if (openMask == (1 << GRO_OPEN_RUNS) - 1) {
      r = evictNext;
      evictNext = (evictNext + 1) % GRO_OPEN_RUNS;
    } else {
      while ((openMask & (1 << r)) != 0) r++;
    }
    const rp = runs + <usize>r * RUN_SIZE;
    const pay = tcpPayloadLen(q, len, iphl);
    if (iphl == 20) {
      store<u32>(rp, load<u32>(q, 12), R_SRC);
      store<u32>(rp, load<u32>(q, 16), R_DST);
    } else {
      a6copy(rp + R_SRC, q + IP6_SRC);
      a6copy(rp + R_DST, q + IP6_DST);
    }
    store<u32>(rp, ports, R_PORTS);
    store<u32>(rp, iphl, R_IPHL);
    store<u32>(rp, i, R_HEAD);
    store<u32>(rp, i, R_TAIL);
    store<u32>(rp, ld32(q + iphl + TCP_SEQ) + pay, R_NEXT_SEQ);
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
      const iphl: u32 = (ld8(h) >> 4) == 6 ? IP6_HDR_LEN : 20;
      const hdr = iphl + (<u32>(ld8(h + iphl + 12) >> 4) << 2);
      const gso = hlen - hdr;
      memory.copy(f, h, hlen);
      let lastFlags = ld8(h + iphl + TCP_FLAGS);
      let j = <u32>load<u16>(nextOf + (<usize>i << 1));
      while (j != <u32>NO_NEXT) {
        const q = pktPtr(pkts, j);
        const pay = pktLen(lens, j) - hdr;
        memory.copy(f + total, q + hdr, pay);
        total += pay;
        lastFlags = ld8(q + iphl + TCP_FLAGS);
        j = <u32>load<u16>(nextOf + (<usize>j << 1));
      }
      st8(f + iphl + TCP_FLAGS, ld8(f + iphl + TCP_FLAGS) | (lastFlags & TCP_PSH));
      const tl = total - iphl;
      if (iphl == 20) {
        st16(f + IP_TOTLEN, total);
        st16(f + 10, 0);
        st16(f + 10, csumFinish(csumPartial(f, 20, 0)));
        st16(f + 20 + TCP_CSUM, csumPartialField(ipSrc(f), ipDst(f), PROTO_TCP, tl));
        emitVnet(o, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, hdr, gso, 20, <u32>TCP_CSUM);
      } else {
        st16(f + IP6_PLEN, tl);
        st16(f + IP6_HDR_LEN + TCP_CSUM, ~csumFinish(csumPseudo6(f, PROTO_TCP, tl)) & 0xffff);
        emitVnet(o, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, hdr, gso, IP6_HDR_LEN, <u32>TCP_CSUM);
      }
    }
    store<u32>(frames + (<usize>k << 3), <u32>(o - out));
    store<u32>(frames + (<usize>k << 3), total + VNET_HDR_LEN, 4);
    o += total + VNET_HDR_LEN;
    k++;
  }
  return <i32>k;
}
