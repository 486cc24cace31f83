// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Sums are accumulated over native little-endian loads and byte-swapped once
// at the end: one's-complement addition is byte-order independent (RFC 1071
// section 2(B)), so this equals summing big-endian 16-bit words.

import { ld16 } from "./bytes";

/** One's-complement partial sum of `len` bytes at `p`, added to `acc`.
 *  The result is an unfolded accumulator in little-endian word order; pass it
 *  to csumFinish (or back into csumPartial for the next chunk, which must then
 *  start at an even offset of the whole). */
export function csumPartial(p: usize, len: usize, acc: u64): u64 {
  let sum = acc;
  let n = len;
  while (n >= 8) {
    const v = load<u64>(p);
    sum += (v & 0xffffffff) + (v >> 32);
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    sum += <u64>load<u32>(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum += <u64>load<u16>(p);
    p += 2;
    n -= 2;
  }
  if (n) sum += <u64>load<u8>(p);
  return sum;
}

/** Fold a little-endian accumulator to 16 bits and return the checksum field
 *  value in host order (the complement of the network-order sum). */
@inline export function csumFinish(acc: u64): u32 {
  let s = (acc & 0xffffffff) + (acc >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~(<u32>bswap<u16>(<u16>s)) & 0xffff;
}

/** Full checksum over a buffer: the value to store in the checksum field
 *  (with the field itself zeroed), or 0 when verifying a correct buffer. */
export function checksum(p: usize, len: usize): u32 {
  return csumFinish(csumPartial(p, len, 0));
}

/** Accumulator for the IPv4 pseudo header (RFC 768/793), in the same
 *  little-endian word order as csumPartial. Addresses are host-order u32. */
@inline export function csumPseudo(src: u32, dst: u32, proto: u32, len: u32): u64 {
  const s = <u64>(src >>> 16) + <u64>(src & 0xffff) + <u64>(dst >>> 16) + <u64>(dst & 0xffff) + <u64>proto + <u64>len;
  // Convert the big-endian-word sum to little-endian word order.
  let f = (s & 0xffff) + (s >> 16);
  f = (f & 0xffff) + (f >> 16);
  return <u64>bswap<u16>(<u16>f);
}

/** RFC 1624 eqn. 3: new checksum after a 16-bit field changes from `old` to
 *  `now`: HC' = ~(~HC + ~m + m'). All values host order 16-bit. */
@inline export function csumUpdate16(hc: u32, old: u32, now: u32): u32 {
  let s: u32 = (~hc & 0xffff) + (~old & 0xffff) + (now & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** RFC 1624 for a 32-bit field (an address): two 16-bit updates. */
@inline export function csumUpdate32(hc: u32, old: u32, now: u32): u32 {
  let s: u32 = (~hc & 0xffff) + (~(old >>> 16) & 0xffff) + (~old & 0xffff) + (now >>> 16) + (now & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Verify the checksum of `len` bytes that include their checksum field. */
@inline export function checksumOk(p: usize, len: usize): bool {
  return checksum(p, len) == 0;
}

/** Read a stored checksum field (host order). */
@inline export function csumField(p: usize): u32 {
  return ld16(p);
}
