// Flow hashing of inner packets: picks the VXLAN UDP source port (RFC 7348
// section 5: "a hash of fields from the inner packet", so ECMP in the
// underlay spreads flows) and later the worker queue.
import { ld32 } from "../wire/bytes";
import { IP_DST, IP_PROTO, IP_SRC, PROTO_ICMP, PROTO_TCP, PROTO_UDP, ipHeaderLen, ipIsFragment } from "../wire/ipv4";

@inline function fmix32(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}

/** Hash of (src, dst, protocol, ports or ICMP id) of a checked IPv4 packet of
 *  `len` bytes. Fragmented datagrams hash without ports so that all their
 *  fragments take one path and are not reordered. */
export function flowHash(p: usize, len: u32): u32 {
  const proto = <u32>load<u8>(p + IP_PROTO);
  let ports: u32 = 0;
  if (!ipIsFragment(p)) {
    const hl = ipHeaderLen(p);
    if ((proto == PROTO_TCP || proto == PROTO_UDP) && hl + 4 <= len) ports = load<u32>(p + hl);
    else if (proto == PROTO_ICMP && hl + 8 <= len) ports = <u32>load<u16>(p + hl + 4);
  }
  let h = fmix32(ld32(p + IP_SRC) ^ 0x9e3779b9);
  h = fmix32(h ^ ld32(p + IP_DST));
  return fmix32(h ^ ports ^ (proto << 24));
}

/** Map a hash onto [min, min+span) without a division. */
@inline export function pickSourcePort(hash: u32, min: u32, span: u32): u32 {
  return min + <u32>((<u64>hash * <u64>span) >> 32);
}

/** The IPv6 counterpart of flowHash: source, destination, next header, the
 *  flow label (RFC 6437: the sender's own flow key) and, when TCP or UDP
 *  follows the fixed header directly, the ports. Headers checked. */
export function flowHash6(p: usize, len: u32): u32 {
  const next = <u32>load<u8>(p + 6);
  let ports: u32 = ld32(p) & 0xfffff;
  if ((next == PROTO_TCP || next == PROTO_UDP) && len >= 44) ports ^= load<u32>(p + 40);
  let h = fmix32(ld32(p + 8) ^ ld32(p + 12) ^ 0x9e3779b9);
  h = fmix32(h ^ ld32(p + 16) ^ ld32(p + 20));
  h = fmix32(h ^ ld32(p + 24) ^ ld32(p + 28));
  h = fmix32(h ^ ld32(p + 32) ^ ld32(p + 36));
  return fmix32(h ^ ports ^ (next << 24));
}
