// Network-order loads and stores over raw linear-memory pointers.
// WASM is little endian; every multi-byte wire field goes through bswap here.

@inline export function ld8(p: usize): u32 {
  return <u32>load<u8>(p);
}
@inline export function ld16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}
@inline export function ld32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}
@inline export function st8(p: usize, v: u32): void {
  store<u8>(p, <u8>v);
}
@inline export function st16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}
@inline export function st32(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}
/** A MAC address as the low 48 bits of a u64, first octet most significant. */
@inline export function ldMac(p: usize): u64 {
  return (<u64>bswap<u32>(load<u32>(p)) << 16) | <u64>bswap<u16>(load<u16>(p, 4));
}
@inline export function stMac(p: usize, mac: u64): void {
  store<u32>(p, bswap<u32>(<u32>(mac >> 16)));
  store<u16>(p, bswap<u16>(<u16>mac), 4);
}
