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
  return csumPass(0, p, len, acc, false);
}

/** Copy `len` bytes from `src` to `dst` (not overlapping) and return their
 *  partial sum added to `acc`, as csumPartial(src, len, acc) would: one pass
 *  over the data instead of a copy and a sum (the kernel's
 *  csum_partial_copy_nocheck). */
export function csumCopy(dst: usize, src: usize, len: usize, acc: u64): u64 {
  return csumPass(dst, src, len, acc, true);
}

/** Both of the above; `copy` is a constant at each call, so each gets its
 *  own loop. 32 bytes a step in two vectors of 16-bit words summed pairwise
 *  into u32 lanes. A lane gains at most 2*0xFFFF a step, so it is folded into
 *  the sum every CSUM_VEC_STEPS steps, before it could wrap. (Without SIMD,
 *  as in the fuzz build for wasm2c, the scalar tail loop does it all.) */
@inline function csumPass(dst: usize, src: usize, len: usize, acc: u64, copy: bool): u64 {
  let sum = acc;
  let n = len;
  if (ASC_FEATURE_SIMD) while (n >= 32) {
    let steps = min(n >> 5, CSUM_VEC_STEPS);
    n -= steps << 5;
    let a = i32x4.splat(0);
    let b = i32x4.splat(0);
    for (; steps; steps--) {
      const x = v128.load(src);
      const y = v128.load(src, 16);
      if (copy) {
        v128.store(dst, x);
        v128.store(dst, y, 16);
        dst += 32;
      }
      a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(x));
      b = i32x4.add(b, i32x4.extadd_pairwise_i16x8_u(y));
      src += 32;
    }
    sum += laneSum(a) + laneSum(b);
  }
  if (copy) memory.copy(dst, src, n);
  return csumTail(src, n, sum);
}

/** Vector steps between folds: 16384 * 2 * 0xFFFF < 2^32. */
const CSUM_VEC_STEPS: usize = 16384;

/** The four u32 lanes of v added up, without loss. */
@inline function laneSum(v: v128): u64 {
  const w = i64x2.add(i64x2.extend_low_i32x4_u(v), i64x2.extend_high_i32x4_u(v));
  return <u64>i64x2.extract_lane(w, 0) + <u64>i64x2.extract_lane(w, 1);
}

/** The last `n` bytes at `p` (fewer than 32 with SIMD), added to `sum`. */
@inline function csumTail(p: usize, n: usize, sum: u64): u64 {
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

/** What a TCP/UDP checksum field holds while the checksum is partial
 *  (CHECKSUM_PARTIAL, a virtio_net_hdr with NEEDS_CSUM): the folded
 *  pseudo-header sum, not complemented; the sum over the L4 bytes finishes it. */
@inline export function csumPartialField(src: u32, dst: u32, proto: u32, l4len: u32): u32 {
  return ~csumFinish(csumPseudo(src, dst, proto, l4len)) & 0xffff;
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

/** The four 16-bit lanes of `x` added up (no carry lost: at most 4 * 0xFFFF). */
@inline function lanes16(x: u64): u64 {
  return (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
}

/** RFC 1624 for a 128-bit field (an IPv6 address): eight 16-bit updates at
 *  once. The old and new values are given as the two native (little-endian)
 *  u64 loads of each 16 bytes, `load<u64>(a)` and `load<u64>(a, 8)`, so a
 *  caller can keep them in locals while it overwrites the field; one's-
 *  complement addition is byte-order independent (RFC 1071 2(B)), so the
 *  lanes are summed as loaded and the folded sum swapped once. Like
 *  csumUpdate16, the result is never 0xFFFF unless `hc` was 0xFFFF. */
@inline export function csumUpdate128(hc: u32, oldHi: u64, oldLo: u64, nowHi: u64, nowLo: u64): u32 {
  let d: u64 = lanes16(~oldHi) + lanes16(~oldLo) + lanes16(nowHi) + lanes16(nowLo);
  d = (d & 0xffff) + (d >> 16);
  d = (d & 0xffff) + (d >> 16);
  let s: u32 = (~hc & 0xffff) + <u32>bswap<u16>(<u16>d);
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
