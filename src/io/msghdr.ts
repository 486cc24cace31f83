// struct mmsghdr / iovec / cmsghdr on LP64 Linux (x86_64, aarch64), and the
// small helpers batch.ts and udpgso.ts both lay their native message
// headers out with.
import * as libc from "./libc.js";

export const MMSG_SIZE = 64;
export const MH_NAME = 0; // void *msg_name
export const MH_NAMELEN = 8; // socklen_t msg_namelen
export const MH_IOV = 16; // struct iovec *msg_iov
export const MH_IOVLEN = 24; // size_t msg_iovlen
export const MH_CONTROL = 32; // void *msg_control
export const MH_CONTROLLEN = 40; // size_t msg_controllen
export const MH_FLAGS = 48; // int msg_flags
export const MH_LEN = 56; // unsigned int msg_len
export const IOV_SIZE = 16; // { void *iov_base; size_t iov_len }
export const CMSG_HDR = 16; // { size_t cmsg_len; int cmsg_level; int cmsg_type }

/** Store a 64-bit pointer or size as two u32 halves (no BigInt allocated). */
export function setPtr(dv: DataView, off: number, value: number): void {
  dv.setUint32(off, value >>> 0, true);
  dv.setUint32(off + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Offsets of 64-byte-aligned areas in one scratch buffer: take(bytes) each, then `size`. */
export class ScratchLayout {
  size = 0;
  take(bytes: number): number {
    const off = this.size;
    this.size += (bytes + 63) & ~63;
    return off;
  }
}

/** Call fn(level, type, dataOffset) for each control message in the `clen`
 *  bytes at `ctrl` of `dv`; stops at a malformed length. */
export function forEachCmsg(dv: DataView, ctrl: number, clen: number, fn: (level: number, type: number, data: number) => void): void {
  let c = 0;
  while (c + CMSG_HDR <= clen) {
    const len = dv.getUint32(ctrl + c, true);
    if (len < CMSG_HDR || c + len > clen) break;
    fn(dv.getInt32(ctrl + c + 8, true), dv.getInt32(ctrl + c + 12, true), ctrl + c + CMSG_HDR);
    c += (len + 7) & ~7;
  }
}

/** The outer TOS a received control message carries: IP_TOS (one byte) or,
 *  over IPv6, IPV6_TCLASS (an int); undefined for any other message. */
export function outerTos(dv: DataView, level: number, type: number, data: number): number | undefined {
  if (level === libc.IPPROTO_IP && type === libc.IP_TOS) return dv.getUint8(data);
  if (level === libc.IPPROTO_IPV6 && type === libc.IPV6_TCLASS) return dv.getInt32(data, true) & 0xff;
  return undefined;
}

const pollScratch = new libc.Scratch(8);

/** Wait up to `ms` for `fd` to become writable (one poll). */
export function waitWritable(fd: number, ms: number): void {
  pollScratch.dv.setInt32(0, fd, true);
  pollScratch.dv.setInt16(4, libc.POLLOUT, true);
  pollScratch.dv.setInt16(6, 0, true);
  libc.poll(pollScratch.addr, 1, ms);
}
