// virtio_net_hdr (virtio 1.x, struct virtio_net_hdr without num_buffers), the
// 10-byte header a tun device opened with IFF_VNET_HDR puts in front of every
// packet it reads and expects in front of every packet written to it.
//
//   0       1        2                4                6                8                10
//   +-------+--------+----------------+----------------+----------------+----------------+
//   | flags |gso_type|    hdr_len     |    gso_size    |   csum_start   |  csum_offset   |
//   +-------+--------+----------------+----------------+----------------+----------------+
//
// The 16-bit fields are little endian (tun's default on a little-endian host,
// and virtio 1.x's order), so they are plain load<u16>/store<u16>, no bswap.
// flags:     NEEDS_CSUM: the L4 checksum is partial: the field at
//            csum_start + csum_offset holds the folded pseudo-header sum (not
//            complemented) and the sum over [csum_start, end) finishes it.
//            DATA_VALID: (receive only) the checksum was verified.
// gso_type:  NONE, TCPV4, UDP (UFO), TCPV6, UDP_L4 (USO), plus the ECN bit
//            (the super-frame had CWR set; segmentation keeps CWR on the first
//            segment only, which is what the kernel does for every frame).
// hdr_len:   a hint (L2..L4 header bytes); some kernels fill it loosely, so the
//            segmenter derives the header length from the packet instead.
// gso_size:  payload bytes per segment (the MSS).

export const VNET_HDR_LEN: u32 = 10;

export const VNET_FLAGS: usize = 0;
export const VNET_GSO_TYPE: usize = 1;
export const VNET_HDR_LEN_FIELD: usize = 2;
export const VNET_GSO_SIZE: usize = 4;
export const VNET_CSUM_START: usize = 6;
export const VNET_CSUM_OFFSET: usize = 8;

export const VNET_F_NEEDS_CSUM: u32 = 1;
export const VNET_F_DATA_VALID: u32 = 2;

export const VNET_GSO_NONE: u32 = 0;
export const VNET_GSO_TCPV4: u32 = 1;
export const VNET_GSO_UDP: u32 = 3;
export const VNET_GSO_TCPV6: u32 = 4;
export const VNET_GSO_UDP_L4: u32 = 5;
export const VNET_GSO_ECN: u32 = 0x80;

@inline export function vnetFlags(p: usize): u32 { return <u32>load<u8>(p, VNET_FLAGS); }
@inline export function vnetGsoType(p: usize): u32 { return <u32>load<u8>(p, VNET_GSO_TYPE); }
@inline export function vnetHdrLen(p: usize): u32 { return <u32>load<u16>(p, VNET_HDR_LEN_FIELD); }
@inline export function vnetGsoSize(p: usize): u32 { return <u32>load<u16>(p, VNET_GSO_SIZE); }
@inline export function vnetCsumStart(p: usize): u32 { return <u32>load<u16>(p, VNET_CSUM_START); }
@inline export function vnetCsumOffset(p: usize): u32 { return <u32>load<u16>(p, VNET_CSUM_OFFSET); }

/** Write every field of a header. */
@inline export function emitVnet(p: usize, flags: u32, gsoType: u32, hdrLen: u32, gsoSize: u32, csumStart: u32, csumOffset: u32): void {
  store<u8>(p, <u8>flags, VNET_FLAGS);
  store<u8>(p, <u8>gsoType, VNET_GSO_TYPE);
  store<u16>(p, <u16>hdrLen, VNET_HDR_LEN_FIELD);
  store<u16>(p, <u16>gsoSize, VNET_GSO_SIZE);
  store<u16>(p, <u16>csumStart, VNET_CSUM_START);
  store<u16>(p, <u16>csumOffset, VNET_CSUM_OFFSET);
}

/** Returns true iff `len` bytes at `p` hold a header we can act on followed
 *  by at least one packet byte: flags are a subset of NEEDS_CSUM|DATA_VALID;
 *  gso_type is NONE, TCPV4 or TCPV6 (ECN bit allowed with TCP only); TCP has
 *  NEEDS_CSUM and a non-zero gso_size; with NEEDS_CSUM the 2-byte checksum
 *  field at csum_start + csum_offset lies inside the packet. It says nothing
 *  about the packet itself (tsoSegment checks the IPv4/TCP headers). */
export function checkVnet(p: usize, len: u32): bool {
  if (len <= VNET_HDR_LEN) return false;
  const flags = vnetFlags(p);
  if ((flags & ~(VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) != 0) return false;
  const gt = vnetGsoType(p);
  const base = gt & ~VNET_GSO_ECN;
  if (base == VNET_GSO_TCPV4 || base == VNET_GSO_TCPV6) {
    if ((flags & VNET_F_NEEDS_CSUM) == 0 || vnetGsoSize(p) == 0) return false;
  } else if (gt != VNET_GSO_NONE) {
    return false;
  }
  if ((flags & VNET_F_NEEDS_CSUM) != 0) {
    if (vnetCsumStart(p) + vnetCsumOffset(p) + 2 > len - VNET_HDR_LEN) return false;
  }
  return true;
}
