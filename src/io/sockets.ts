// Underlay sockets: where tunnel packets enter and leave this node.
//
//   VXLAN in:   UDP socket on port 4789; the kernel strips outer IPv4 + UDP and
//               hands us the VXLAN header onwards, with the outer TOS
//               (IP_RECVTOS) and outer destination (IP_PKTINFO) as cmsgs.
//   IPIP in:    raw socket, protocol 4: the whole outer IPv4 packet. Works
//               without the ipip module; raw sockets see a protocol before
//               (and whether or not) a kernel handler exists, and the kernel
//               sends no "protocol unreachable" while one is open.
//   All out:    one raw IPPROTO_RAW socket (IP_HDRINCL implied): the WASM data
//               path builds complete outer IPv4 packets (VXLAN/UDP or IPIP) or
//               forwards inner ones unchanged (direct routing).
//
// Addresses are host-order u32 numbers (a.b.c.d => (a<<24|b<<16|c<<8|d)>>>0).
import * as libc from "./libc.js";
import { ipToU32 as parseIPv4, u32ToIp as formatIPv4 } from "../config/net.js";

export const SOCKADDR_IN_SIZE = 16;

/** Write a struct sockaddr_in for `addr`:`port` at `off` of `dv`. */
export function writeSockaddrIn(dv: DataView, off: number, addr: number, port: number): void {
  dv.setUint16(off, libc.AF_INET, true);
  dv.setUint16(off + 2, port, false);
  dv.setUint32(off + 4, addr >>> 0, false);
  dv.setUint32(off + 8, 0, true);
  dv.setUint32(off + 12, 0, true);
}

// "198.18.0.1" <=> host-order u32: the control plane's one IPv4 parser.
export { parseIPv4, formatIPv4 };

export interface VxlanSocketOptions {
  /** Local address to bind, "0.0.0.0" for any. */
  bindAddr: string;
  port?: number;
  /** SO_REUSEPORT: one socket per worker, the kernel spreads flows by hash. */
  reusePort?: boolean;
  /** SO_RCVBUF in bytes (forced past rmem_max when root). */
  rcvBuf?: number;
}

/**
 * A nonblocking UDP socket bound to bindAddr:port that reports each
 * datagram's outer TOS (IP_RECVTOS) and outer destination address
 * (IP_PKTINFO). Read it with BatchIO.recvVxlan. Throws SyscallError on failure
 * (EADDRINUSE with a hint when the kernel's own vxlan device holds the port).
 */
export function openVxlanSocket(opts: VxlanSocketOptions): number {
  const port = opts.port ?? 4789;
  const addr = parseIPv4(opts.bindAddr);
  const fd = libc.check("socket(AF_INET, SOCK_DGRAM)", libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0));
  try {
    if (opts.reusePort) libc.setIntOpt(fd, libc.SOL_SOCKET, libc.SO_REUSEPORT, 1, "SO_REUSEPORT");
    libc.setIntOpt(fd, libc.IPPROTO_IP, libc.IP_RECVTOS, 1, "IP_RECVTOS");
    libc.setIntOpt(fd, libc.IPPROTO_IP, libc.IP_PKTINFO, 1, "IP_PKTINFO");
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
    const sa = new libc.Scratch(SOCKADDR_IN_SIZE);
    writeSockaddrIn(sa.dv, 0, addr, port);
    libc.check(`bind(${opts.bindAddr}:${port})`, libc.bind(fd, sa.addr, SOCKADDR_IN_SIZE), (e) =>
      e === libc.EADDRINUSE ? `port ${port} is taken (a kernel vxlan device or another overlayd in this namespace?); use reusePort for several workers` : undefined);
    return fd;
  } catch (e) {
    libc.closeQuiet(fd);
    throw e;
  }
}

/** struct sockaddr_in6. */
export const SOCKADDR_IN6_SIZE = 28;

/** Write a struct sockaddr_in6 at `off` of `dv` for port `port` and the
 *  16-byte address at `from` of `src` (network order; flow info and scope 0). */
export function writeSockaddrIn6(dv: DataView, off: number, src: DataView, from: number, port: number): void {
  dv.setUint16(off, libc.AF_INET6, true);
  dv.setUint16(off + 2, port, false);
  dv.setUint32(off + 4, 0, true);
  for (let b = 0; b < 16; b += 4) dv.setUint32(off + 8 + b, src.getUint32(from + b, false), false);
  dv.setUint32(off + 24, 0, true);
}

/**
 * The IPv6 underlay's VXLAN socket: nonblocking UDP/IPv6 on [::]:port,
 * IPv6 only (the IPv4 socket keeps IPv4), reporting each datagram's outer
 * traffic class (IPV6_RECVTCLASS). The kernel checks the UDP checksum and
 * drops a datagram whose checksum is 0 (RFC 6935/6936: a zero checksum is
 * allowed only where both ends agreed to it, as the kernel's vxlan
 * `udp6zerocsumrx` does; we never send one). Read it with
 * BatchIO.recvUnderlay6. Throws SyscallError on failure.
 */
export function openVxlanSocket6(opts: { port?: number; rcvBuf?: number; reusePort?: boolean } = {}): number {
  const port = opts.port ?? 4789;
  const fd = libc.check("socket(AF_INET6, SOCK_DGRAM)", libc.socket(libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0));
  try {
    libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_RECVTCLASS, 1, "IPV6_RECVTCLASS");
    if (opts.reusePort) libc.setIntOpt(fd, libc.SOL_SOCKET, libc.SO_REUSEPORT, 1, "SO_REUSEPORT");
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
    const sa = new libc.Scratch(SOCKADDR_IN6_SIZE);
    sa.dv.setUint16(0, libc.AF_INET6, true);
    sa.dv.setUint16(2, port, false); // the rest (flow info, ::, scope) stays 0
    libc.check(`bind([::]:${port})`, libc.bind(fd, sa.addr, SOCKADDR_IN6_SIZE), (e) =>
      e === libc.EADDRINUSE ? `port ${port} over IPv6 is taken (a kernel vxlan device with an IPv6 local address, or another overlayd in this namespace?)` : undefined);
    return fd;
  } catch (e) {
    libc.closeQuiet(fd);
    throw e;
  }
}

/**
 * A nonblocking raw IPv6 socket for next header 4 (IPv4-in-IPv6) or 41
 * (IPv6-in-IPv6), RFC 2473, the kernel's ip6tnl: each read yields the inner
 * packet (an IPv6 raw socket never hands over the IPv6 header), with the
 * source in the address and the outer traffic class as a cmsg
 * (IPV6_RECVTCLASS). Works without the ip6_tunnel module, as IPIP's does.
 * Read it with BatchIO.recvUnderlay6.
 */
export function openIp6TunnelSocket(opts: { proto: 4 | 41; rcvBuf?: number }): number {
  return openRaw(6, opts.proto, String(opts.proto), (fd) => {
    libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_RECVTCLASS, 1, "IPV6_RECVTCLASS");
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
  });
}

/**
 * A nonblocking raw ICMPv6 socket that sees a copy of every ICMPv6 packet
 * too big (type 2) the node receives, ICMP6_FILTER blocking every other
 * type in the kernel, which also checks the checksum: routers' reports
 * about our outer IPv6 packets (src/daemon/worker/pmtu6.ts). Each read is
 * the ICMPv6 message from its type on. Read it with BatchIO.recvUnderlay6.
 */
export function openIcmp6RecvSocket(opts: { rcvBuf?: number } = {}): number {
  return openRaw(6, libc.IPPROTO_ICMPV6, "IPPROTO_ICMPV6", (fd) => {
    // struct icmp6_filter: 256 bits, a set bit blocks that type (Linux).
    const f = new libc.Scratch(32);
    for (let w = 0; w < 8; w++) f.dv.setUint32(w * 4, 0xffffffff, true);
    f.dv.setUint32(0, ~(1 << 2) >>> 0, true); // pass type 2, packet too big
    libc.check("setsockopt(ICMP6_FILTER)", libc.setsockopt(fd, libc.IPPROTO_ICMPV6, 1, f.addr, 32));
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
  });
}

/**
 * A nonblocking raw socket for IPv4 protocol 4 (IP-in-IP), or with
 * `proto: 41` IPv6-in-IPv4 (the kernel's sit): each read yields a whole
 * outer IPv4 packet, header included. Read it with BatchIO.recvIpip.
 */
export function openIpipRecvSocket(opts: { rcvBuf?: number; proto?: 4 | 41 } = {}): number {
  const proto = opts.proto ?? libc.IPPROTO_IPIP;
  return openRaw(4, proto, String(proto), (fd) => {
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
  });
}

/** SOL_RAW / ICMP_FILTER (linux/icmp.h): a bitmask of ICMP types NOT to deliver. */
const SOL_RAW = 255;
const ICMP_FILTER = 1;
const ICMP_DEST_UNREACH = 3;

/**
 * A nonblocking raw ICMP socket that sees a copy of every ICMP destination
 * unreachable the node receives (ICMP_FILTER drops every other type in the
 * kernel, so a ping flood never reaches us), header included: the
 * fragmentation-needed errors routers send about our outer packets
 * (assembly/pipeline/pmtu.ts). Read it with BatchIO.recvIpip.
 */
export function openIcmpRecvSocket(opts: { rcvBuf?: number } = {}): number {
  return openRaw(4, libc.IPPROTO_ICMP, "IPPROTO_ICMP", (fd) => {
    libc.setIntOpt(fd, SOL_RAW, ICMP_FILTER, ~(1 << ICMP_DEST_UNREACH), "ICMP_FILTER");
    if (opts.rcvBuf) setBuf(fd, libc.SO_RCVBUFFORCE, libc.SO_RCVBUF, opts.rcvBuf);
  });
}

/**
 * A nonblocking raw IPPROTO_RAW socket (IP_HDRINCL implied) that sends
 * complete IPv4 packets, routed by the sockaddr address (the next hop: the
 * kernel resolves the neighbour for it, not for the header's destination).
 * The kernel always rewrites total length and header checksum, fills the ID
 * when it is 0 and the source when it is 0.0.0.0; it never fragments and
 * refuses (EMSGSIZE) any packet larger than the route's MTU, DF or not.
 */
export function openRawSendSocket(opts: { sndBuf?: number; family?: 4 | 6 } = {}): number {
  return openRaw(opts.family ?? 4, libc.IPPROTO_RAW, "IPPROTO_RAW", (fd) => {
    if (opts.sndBuf) setBuf(fd, libc.SO_SNDBUFFORCE, libc.SO_SNDBUF, opts.sndBuf);
  });
}

/** A nonblocking raw socket of `family` and `proto` (named `protoName` in
 *  errors), set up by `setup`; closed again if that throws. */
function openRaw(family: 4 | 6, proto: number, protoName: string, setup: (fd: number) => void): number {
  const fd = libc.check(`socket(${family === 6 ? "AF_INET6" : "AF_INET"}, SOCK_RAW, ${protoName})`,
    libc.socket(family === 6 ? libc.AF_INET6 : libc.AF_INET, libc.SOCK_RAW | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, proto),
    (e) => (e === libc.EPERM ? "raw sockets need root or CAP_NET_RAW" : undefined));
  try {
    setup(fd);
    return fd;
  } catch (e) {
    libc.closeQuiet(fd);
    throw e;
  }
}

/**
 * The same for complete IPv6 packets (`family: 6`): an AF_INET6 IPPROTO_RAW
 * socket (header included: IPPROTO_RAW implies IPV6_HDRINCL), routed by the
 * sockaddr_in6 destination: NAT66's masqueraded packets. The kernel refuses
 * (EMSGSIZE) a packet above the route's MTU and never fragments it.
 */
export function openRawSendSocket6(opts: { sndBuf?: number } = {}): number {
  return openRawSendSocket({ ...opts, family: 6 });
}

export function closeSocket(fd: number): void {
  libc.closeQuiet(fd);
}

function setBuf(fd: number, force: number, plain: number, bytes: number): void {
  try {
    libc.setIntOpt(fd, libc.SOL_SOCKET, force, bytes, "SO_*BUFFORCE");
  } catch {
    libc.setIntOpt(fd, libc.SOL_SOCKET, plain, bytes, "SO_*BUF");
  }
}
