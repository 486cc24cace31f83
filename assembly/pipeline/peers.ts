// Next-hop records and peer records (with per-peer outer-header templates).
//
// Next hop (16 bytes):  kind u8 @0 | pad u8 @1 | peer u16 @2 | gateway u32 @4 | rsv @8..16
//   gateway: for vxlan the overlay next hop whose MAC the neighbour table gives
//   (Hand CNI-7's `via 192.168.30.4 dev vxlan100 onlink`), for direct the
//   peer's underlay address, otherwise 0.
//
// Peer (128 bytes):
//   @0  underlay u32 | @4 valid u32 | @8 vtepMac u64
//   @16 vxlan template: outer IPv4 (20) + UDP (8) + VXLAN (8) = 36 bytes, with
//       TOS, total length, id, DF, checksum, source port and UDP length zero:
//       patched per packet (VPP's vxlan encap does the same).
//   @52 vxlan template partial checksum (u32): one's-complement sum of the
//       template's IPv4 header words with the patched fields zero.
//   @56 ipip template: outer IPv4 (20), same convention; @76 its partial sum.
//   @80 path MTU learnt from the underlay (u32, 0: none; pmtu.ts) | @84 until (nowMs, u32)
//   @88 IPv6 underlay address (16 bytes, network order; setPeer6), the path
//       towards the peer when @104 says so; the IPv4 `underlay` stays the
//       peer's identity (META_ADDR, peerAddrTable, setPeerPmtu).
//   @104 reached over IPv6 (u32, 1) or IPv4 (0); setPeer resets it to 0.
//   @108 IPv6 pseudo-header partial sum (u32): one's-complement sum of the
//       node's IPv6 underlay address and the peer's (csumPartial word order,
//       folded), so the mandatory UDP checksum of VXLAN over IPv6 (RFC 6935,
//       RFC 6936) only adds length, next header and the datagram per packet.
//   @112..128 unused.
import { ld16 } from "../wire/bytes";
import { csumPartial } from "../wire/checksum";
import { emitIpv4, PROTO_IPIP, PROTO_UDP } from "../wire/ipv4";
import { emitUdp } from "../wire/udp";
import { emitVxlan } from "../wire/vxlan";
import { carve } from "../layout";
import { E_NO_MEMORY, E_RANGE, OK } from "../abi";
import { htDelete, htFind, htPut, htValueAt } from "../tables/hash";
import { cfgOuterTtl, cfgPort, cfgUnderlay, cfgUnderlay6, cfgVni, peerAddrTable } from "./state";

export const NH_SIZE: u32 = 16;
export const PEER_SIZE: u32 = 128;
export const PEER_UNDERLAY: usize = 0;
export const PEER_VALID: usize = 4;
export const PEER_VTEP_MAC: usize = 8;
export const PEER_VXLAN_TPL: usize = 16;
export const PEER_VXLAN_SUM: usize = 52;
export const PEER_IPIP_TPL: usize = 56;
export const PEER_IPIP_SUM: usize = 76;
export const PEER_PMTU: usize = 80;
export const PEER_PMTU_UNTIL: usize = 84;
export const PEER_UNDERLAY6: usize = 88;
export const PEER_OVER6: usize = 104;
export const PEER_PSEUDO6_SUM: usize = 108;
export const VXLAN_TPL_LEN: u32 = 36;

export let nhBase: usize = 0;
export let nhMax: u32 = 0;
export let peerBase: usize = 0;
export let peerMax: u32 = 0;

export function setupNexthops(maxNh: u32, maxPeers: u32): i32 {
  nhBase = carve(<usize>maxNh * NH_SIZE);
  peerBase = carve(<usize>maxPeers * PEER_SIZE);
  if (nhBase == 0 || peerBase == 0) return E_NO_MEMORY;
  nhMax = maxNh;
  peerMax = maxPeers;
  return OK;
}

@inline export function nhPtr(i: u32): usize { return nhBase + <usize>i * NH_SIZE; }
// A route entry may hold any index up to LPM_MAX_NH (the LPM does not know
// how many next hops there are): past nhMax the accessors read nothing and
// answer "no such next hop" (kind 0, no peer, no gateway), which every
// caller treats as unusable (forward.ts: a no_route drop; decap.ts: spoofed
// source), never an out-of-bounds read.
@inline export function nhKind(i: u32): u32 { return i < nhMax ? <u32>load<u8>(nhPtr(i)) : 0; }
@inline export function nhPeer(i: u32): u32 { return i < nhMax ? <u32>load<u16>(nhPtr(i), 2) : 0xffff; }
@inline export function nhGateway(i: u32): u32 { return i < nhMax ? load<u32>(nhPtr(i), 4) : 0; }

export function setNexthop(i: u32, kind: u32, peer: u32, gateway: u32): i32 {
  if (i >= nhMax || kind > 255 || peer > 0xffff) return E_RANGE;
  const p = nhPtr(i);
  store<u8>(p, <u8>kind);
  store<u8>(p, 0, 1);
  store<u16>(p, <u16>peer, 2);
  store<u32>(p, gateway, 4);
  return OK;
}

@inline export function peerPtr(i: u32): usize { return peerBase + <usize>i * PEER_SIZE; }
@inline export function peerValid(i: u32): bool { return i < peerMax && load<u32>(peerPtr(i), PEER_VALID) != 0; }
@inline export function peerUnderlay(i: u32): u32 { return load<u32>(peerPtr(i), PEER_UNDERLAY); }
/** Peer `i` (valid) is reached over the IPv6 underlay. */
@inline export function peerOver6(i: u32): bool { return load<u32>(peerPtr(i), PEER_OVER6) != 0; }

/** Sum of the 16-bit big-endian words of a 20-byte IPv4 header (unfolded). */
function headerWordSum(p: usize): u32 {
  let s: u32 = 0;
  for (let o: usize = 0; o < 20; o += 2) s += ld16(p + o);
  return s;
}

function buildTemplates(i: u32): void {
  const p = peerPtr(i);
  const dst = load<u32>(p, PEER_UNDERLAY);
  const v = p + PEER_VXLAN_TPL;
  emitIpv4(v, 0, 0, 0, 0, cfgOuterTtl, PROTO_UDP, cfgUnderlay, dst);
  store<u16>(v, 0, 10);
  store<u32>(p, headerWordSum(v), PEER_VXLAN_SUM);
  emitUdp(v + 20, 0, cfgPort, 0, 0);
  emitVxlan(v + 28, cfgVni);
  const t = p + PEER_IPIP_TPL;
  emitIpv4(t, 0, 0, 0, 0, cfgOuterTtl, PROTO_IPIP, cfgUnderlay, dst);
  store<u16>(t, 0, 10);
  store<u32>(p, headerWordSum(t), PEER_IPIP_SUM);
  // Source and destination of the IPv6 pseudo header (RFC 8200 8.1),
  // folded to 16 bits so a packet's sum cannot overflow the accumulator.
  let a = csumPartial(cfgUnderlay6, 16, csumPartial(p + PEER_UNDERLAY6, 16, 0));
  a = (a & 0xffffffff) + (a >> 32);
  a = (a & 0xffff) + (a >> 16);
  a = (a & 0xffff) + (a >> 16);
  store<u32>(p, <u32>a, PEER_PSEUDO6_SUM);
}

/** Forget that `addr` is peer `i`'s, unless the address-to-peer table has
 *  already been pointed at another slot: when a reload shifts peers down
 *  (peer i+1 becomes peer i), the address now belongs to its new slot. */
function unmapAddress(addr: u32, i: u32): void {
  const s = htFind(peerAddrTable, <u64>addr);
  if (s >= 0 && <u32>htValueAt(peerAddrTable, s) == i) htDelete(peerAddrTable, <u64>addr);
}

/** Install or replace peer `i`. Templates depend on the node configuration,
 *  so configure() rebuilds them for every valid peer. */
export function setPeer(i: u32, underlay: u32, vtepMac: u64): i32 {
  if (i >= peerMax) return E_RANGE;
  const p = peerPtr(i);
  // The decap side finds peers by outer source address.
  if (peerValid(i) && load<u32>(p, PEER_UNDERLAY) != underlay) unmapAddress(load<u32>(p, PEER_UNDERLAY), i);
  // A path MTU learnt towards another address is not this one's.
  if (!peerValid(i) || load<u32>(p, PEER_UNDERLAY) != underlay) store<u32>(p, 0, PEER_PMTU);
  const r = htPut(peerAddrTable, <u64>underlay, <u64>i);
  if (r != OK) return r;
  store<u32>(p, underlay, PEER_UNDERLAY);
  store<u32>(p, 1, PEER_VALID);
  store<u64>(p, vtepMac, PEER_VTEP_MAC);
  // Over IPv4 until setPeer6 says otherwise (callers that never call it
  // keep IPv4 peers). The IPv6 address stays, so that a reload calling
  // setPeer and setPeer6 with the same addresses keeps a learnt path MTU.
  store<u32>(p, 0, PEER_OVER6);
  buildTemplates(i);
  return OK;
}

/** Reach peer `i` (installed by setPeer, called right before) over the IPv6
 *  underlay at the address whose high and low 64 bits are `hi`, `lo` (as
 *  configureUnderlay6); 0, 0: over IPv4 again. A changed address (a family
 *  change included) forgets the learnt path MTU, as setPeer does for a
 *  changed IPv4 address. E_RANGE when `i` is not a valid peer. */
export function setPeer6(i: u32, hi: u64, lo: u64): i32 {
  if (!peerValid(i)) return E_RANGE;
  const p = peerPtr(i);
  const nh = bswap<u64>(hi);
  const nl = bswap<u64>(lo);
  if (load<u64>(p, PEER_UNDERLAY6) != nh || load<u64>(p, PEER_UNDERLAY6 + 8) != nl) store<u32>(p, 0, PEER_PMTU);
  store<u64>(p, nh, PEER_UNDERLAY6);
  store<u64>(p, nl, PEER_UNDERLAY6 + 8);
  store<u32>(p, (hi | lo) != 0 ? 1 : 0, PEER_OVER6);
  buildTemplates(i);
  return OK;
}

export function clearPeer(i: u32): i32 {
  if (i >= peerMax) return E_RANGE;
  if (peerValid(i)) unmapAddress(load<u32>(peerPtr(i), PEER_UNDERLAY), i);
  memory.fill(peerPtr(i), 0, PEER_SIZE);
  return OK;
}

export function rebuildAllTemplates(): void {
  for (let i: u32 = 0; i < peerMax; i++) if (peerValid(i)) buildTemplates(i);
}
