// UDP segmentation and receive offload on the underlay (issue 6), the way
// wireguard-go and Tailscale reach 10 Gbit/s: many VXLAN datagrams cross the
// kernel as one.
//
//   send (UDP_SEGMENT): consecutive encapsulated packets of a batch that go
//     to the same peer, from the same source socket, with the same TOS and
//     size (the last may be shorter) become ONE sendmsg whose iovecs point at
//     the slots' UDP payloads; the kernel builds one GSO skb, which crosses
//     the stack (and a veth) once and is segmented only where it must be.
//   receive (UDP_GRO): the VXLAN socket hands us such a train as one buffer
//     of up to 64 KiB plus the segment size (cmsg); WASM splits it into the
//     input slots (ingestDatagrams).
//
// A UDP socket cannot choose its source port per packet, so the outer source
// port (RFC 7348's entropy field) comes from a small set of sockets: the data
// path's per-flow port picks socket (port % count), and the wire carries that
// socket's port. One flow keeps one port; flows spread over `count` ports.
// The kernel computes the outer UDP checksum (UDP GSO needs one, RFC 7348
// allows it) and the IPv4 ID; TTL is a socket option, TOS a cmsg per send.
// DF is inherited from the inner packet, as on the raw-socket path (the
// data path copies it into the outer header it builds, encap.ts): DF is a
// socket option only, so a second set of sockets with IP_PMTUDISC_PROBE (DF
// set, the kernel's learnt path MTU not applied: the data path keeps its own
// per peer) sends the datagrams whose outer header has DF.
//
// Over the IPv6 underlay (peers[].underlay6) the same, from UDP/IPv6 sockets
// bound to node.ipv6.underlayAddress: the kernel writes the mandatory UDP
// checksum (RFC 6935: in hardware where the NIC can) and the flow label
// (IPV6_AUTOFLOWLABEL: a hash of the outer addresses and ports, so per outer
// source port, which follows the inner flow); traffic class per send as a
// cmsg; nothing is fragmented at the source (IPV6_DONTFRAG): the data path
// never builds a packet larger than its peer's path MTU.
//
// A send with UDP_SEGMENT that fails with EIO means the route cannot take a
// GSO packet (Linux before 6.11 on a device without checksum offload, an
// xfrm/IPsec route): that socket stops using GSO for good and the train is
// sent again as single datagrams, as wireguard-go does (counted in
// stats.gsoFallbacks; the daemon logs it once).
import * as abi from "../dataplane/abi.js";
import koffi from "koffi";
import * as libc from "./libc.js";
import { E_BAD_SLOT, E_TRUNCATED, IoErrors, OP_RECV, OP_SEND } from "./errors.js";
import { parseIPv4, SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE, writeSockaddrIn, writeSockaddrIn6 } from "./sockets.js";
import { ipv6ToBigint, ipv6ToBytes } from "../config/net6.js";
import type { Underlay6Peers } from "./underlay6.js";
import {
  CMSG_HDR, forEachCmsg, IOV_SIZE, MH_CONTROL, MH_CONTROLLEN, MH_FLAGS, MH_IOV, MH_IOVLEN, MH_LEN, MH_NAME, MH_NAMELEN, MMSG_SIZE,
  outerTos, ScratchLayout, setPtr, waitWritable,
} from "./msghdr.js";

export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;
export const UDP_GRO = 104;
const IP_TTL = 2;

const CMSG_SPACE_SMALL = 24; // CMSG_SPACE of a u16 or an int
const TX_CTRL = 2 * CMSG_SPACE_SMALL;
const RX_CTRL = 128;
/** The kernel's UDP_MAX_SEGMENTS (since 5.x: 128 with GSO_PARTIAL; 64 is safe everywhere). */
export const MAX_SEGMENTS = 64;
/** Bytes of UDP payload one GSO send may carry (IPv4 total length limit minus headers). */
const MAX_GSO_BYTES = 65507;

/** Outer headers in front of the UDP payload in a TX_UNDERLAY VXLAN packet (IPv4 20 + UDP 8). */
const OUTER = 28;
/** The same over the IPv6 underlay (IPv6 40 + UDP 8). */
const OUTER6 = 48;

export interface UdpSendSockets {
  fds: number[];
  ports: number[];
}

/** `count` nonblocking UDP sockets bound to bindAddr with kernel-chosen
 *  ports, outer TTL `ttl`, big send buffers. IPv4 (a dotted bindAddr): DF
 *  clear (or, with `df`, set on every datagram). IPv6 (the IPv6 underlay's
 *  address): never fragmented at the source (IPV6_DONTFRAG; `df` is
 *  meaningless there), flow labels from the kernel's flow hash. */
export function openUdpSendSockets(bindAddr: string, count: number, opts: { ttl?: number; sndBuf?: number; df?: boolean } = {}): UdpSendSockets {
  const fds: number[] = [];
  const ports: number[] = [];
  const v6 = bindAddr.includes(":");
  const sa = new libc.Scratch(SOCKADDR_IN6_SIZE);
  if (v6) {
    const a = new Uint8Array(16);
    ipv6ToBytes(ipv6ToBigint(bindAddr), a);
    writeSockaddrIn6(sa.dv, 0, new DataView(a.buffer), 0, 0);
  } else writeSockaddrIn(sa.dv, 0, parseIPv4(bindAddr), 0);
  try {
    for (let k = 0; k < count; k++) {
      const fd = v6
        ? libc.check("socket(AF_INET6, SOCK_DGRAM)", libc.socket(libc.AF_INET6, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0))
        : libc.check("socket(AF_INET, SOCK_DGRAM)", libc.socket(libc.AF_INET, libc.SOCK_DGRAM | libc.SOCK_NONBLOCK | libc.SOCK_CLOEXEC, 0));
      fds.push(fd);
      if (v6) {
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_V6ONLY, 1, "IPV6_V6ONLY");
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_UNICAST_HOPS, opts.ttl ?? 64, "IPV6_UNICAST_HOPS");
        // The device MTU, not the learnt path MTU (the data path keeps its
        // own per peer), and never fragmented here: the data path sends
        // nothing larger than its peer's path takes (packet too big instead).
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_MTU_DISCOVER, libc.IPV6_PMTUDISC_PROBE, "IPV6_MTU_DISCOVER");
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_DONTFRAG, 1, "IPV6_DONTFRAG");
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_AUTOFLOWLABEL, 1, "IPV6_AUTOFLOWLABEL");
        // A node that has just come up may still be running duplicate address
        // detection on its IPv6 underlay address: bind(2) would fail
        // (EADDRNOTAVAIL) and overlayd with it; sends work meanwhile.
        libc.setIntOpt(fd, libc.IPPROTO_IPV6, libc.IPV6_FREEBIND, 1, "IPV6_FREEBIND");
      } else {
        libc.setIntOpt(fd, libc.IPPROTO_IP, IP_TTL, opts.ttl ?? 64, "IP_TTL");
        // Neither kind applies the route's learnt path MTU (the data path keeps
        // its own per peer): PROBE sets DF, INTERFACE never does (and with DONT
        // a learnt PMTU below a train's segment size would fail it, EINVAL).
        libc.setIntOpt(fd, libc.IPPROTO_IP, libc.IP_MTU_DISCOVER, opts.df ? libc.IP_PMTUDISC_PROBE : libc.IP_PMTUDISC_INTERFACE, "IP_MTU_DISCOVER");
      }
      if (opts.sndBuf) {
        try {
          libc.setIntOpt(fd, libc.SOL_SOCKET, libc.SO_SNDBUFFORCE, opts.sndBuf, "SO_SNDBUFFORCE");
        } catch {
          libc.setIntOpt(fd, libc.SOL_SOCKET, libc.SO_SNDBUF, opts.sndBuf, "SO_SNDBUF");
        }
      }
      const len = v6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE;
      libc.check(v6 ? `bind([${bindAddr}]:0)` : `bind(${bindAddr}:0)`, libc.bind(fd, sa.addr, len));
      ports.push(localPort(fd));
    }
    return { fds, ports };
  } catch (e) {
    for (const fd of fds) libc.closeQuiet(fd);
    throw e;
  }
}

const getsocknameFn = koffi.load("libc.so.6").func("int getsockname(int fd, intptr_t addr, intptr_t len)") as (fd: number, addr: number, len: number) => number;

/** The local port of a bound socket (either family: the port sits at offset 2 of both). */
function localPort(fd: number): number {
  const sa = new libc.Scratch(SOCKADDR_IN6_SIZE + 8);
  sa.dv.setUint32(SOCKADDR_IN6_SIZE, SOCKADDR_IN6_SIZE, true);
  libc.check("getsockname", getsocknameFn(fd, sa.addr, sa.addr + SOCKADDR_IN6_SIZE));
  return sa.dv.getUint16(2, false);
}

/** Ask the kernel to coalesce datagrams of a flow on this socket (UDP_GRO). */
export function enableUdpGro(fd: number): void {
  libc.setIntOpt(fd, SOL_UDP, UDP_GRO, 1, "UDP_GRO");
}

interface Region {
  memory: WebAssembly.Memory;
  slotBase: number;
  slotSize: number;
  metaBase: number;
  batch: number;
}

export interface GsoStats {
  /** sendmsg calls that carried more than one datagram. */
  gsoSends: number;
  /** Datagrams sent inside them. */
  gsoSegments: number;
  /** Datagrams the kernel refused (counted per datagram). */
  errors: number;
  lastErrno: number;
  /** Sockets that gave EIO for a GSO send and now send single datagrams. */
  gsoFallbacks: number;
  /** Datagrams of failed trains sent again one by one. */
  gsoResent: number;
}

/** Sends encapsulated VXLAN packets from the slots with UDP_SEGMENT: over
 *  IPv4 from `fds`/`dfFds`, over the IPv6 underlay (an outer IPv6 header:
 *  peers[].underlay6) from `fds6`. The kernel writes the outer headers
 *  again: the socket's port, its own UDP checksum (mandatory over IPv6) and
 *  flow label; TOS / traffic class go as a cmsg per send. */
export class UdpGsoSender {
  readonly stats: GsoStats = { gsoSends: 0, gsoSegments: 0, errors: 0, lastErrno: 0, gsoFallbacks: 0, gsoResent: 0 };
  /** Per socket (index into fds): GSO turned off after an EIO. */
  private readonly noGso: boolean[];
  /** Test hook (failGsoWith): a GSO send on a socket still using GSO fails with this errno. */
  private injectErrno = 0;
  /** One message per datagram of a failed train: the single-datagram resend. */
  private readonly singles: number;
  private readonly scratch: libc.Scratch;
  private readonly s: DataView;
  private readonly msgs: number;
  private readonly iovs: number;
  private readonly names: number;
  private readonly ctrl: number;
  private buffer!: ArrayBuffer;
  private mem!: DataView;
  private memAddr = 0;

  /** Every socket: `fds` (DF clear), `dfFds` (DF set, as many), then `fds6`. */
  private readonly all: number[];

  /** `fds`: DF-clear sockets; `dfFds` (as many, or none: every datagram
   *  leaves DF clear): DF-set ones, for datagrams whose outer header has DF;
   *  `fds6` (none: a datagram over IPv6 is refused, counted as a bad slot):
   *  UDP/IPv6 sockets for the IPv6 underlay.
   *  `errors`: where failures are counted by errno (default: its own). */
  constructor(private readonly r: Region, private readonly fds: number[], readonly errors: IoErrors = new IoErrors(), private readonly dfFds: number[] = [],
    private readonly fds6: number[] = []) {
    if (fds.length === 0) throw new RangeError("no send sockets");
    if (dfFds.length && dfFds.length !== fds.length) throw new RangeError("as many DF sockets as others");
    this.all = [...fds, ...dfFds, ...fds6];
    const n = r.batch;
    const layout = new ScratchLayout();
    this.msgs = layout.take(n * MMSG_SIZE);
    this.iovs = layout.take(n * IOV_SIZE);
    this.names = layout.take(n * SOCKADDR_IN6_SIZE);
    this.ctrl = layout.take(n * TX_CTRL);
    this.singles = layout.take(MAX_SEGMENTS * MMSG_SIZE);
    this.scratch = new libc.Scratch(layout.size);
    this.s = this.scratch.dv;
    this.noGso = this.all.map(() => false);
    this.sync();
  }

  /** For tests: make every GSO send fail with `errno` (as a NIC that cannot
   *  segment would with EIO) on the sockets still using GSO; 0 stops it. */
  failGsoWith(errno: number): void {
    this.injectErrno = errno;
  }

  private sync(): void {
    if (this.buffer === this.r.memory.buffer) return;
    this.buffer = this.r.memory.buffer;
    this.mem = new DataView(this.buffer);
    this.memAddr = Number(koffi.address(new Uint8Array(this.buffer)));
  }

  /** Send the VXLAN packets in slots idx[0..count) (whole outer packets as
   *  the data path builds them: IPv4 with a 20-byte header, or IPv6 with a
   *  40-byte one). Returns the number of datagrams the kernel refused. */
  send(idx: ArrayLike<number>, count: number): number {
    this.sync();
    const s = this.s, mem = this.mem, r = this.r;
    const base = this.scratch.addr;
    let nMsg = 0, nIov = 0, errors = 0;
    let fdOfBatch = -1, firstMsgOfBatch = 0;
    // The open group (gD0..gD2: the rest of an IPv6 destination, 0 for IPv4;
    // the socket tells the families apart; gAt: its first packet).
    let gDst = 0, gD0 = 0, gD1 = 0, gD2 = 0, gAt = 0, gPort = 0, gFd = -1, gTos = -1, gSeg = 0, gSegs = 0, gBytes = 0, gFirstIov = 0, gClosed = true, gV6 = false;

    const closeGroup = () => {
      if (gClosed) return;
      gClosed = true;
      const m = this.msgs + nMsg * MMSG_SIZE;
      const name = this.names + nMsg * SOCKADDR_IN6_SIZE;
      if (gV6) writeSockaddrIn6(s, name, mem, gAt + 24, gPort);
      else writeSockaddrIn(s, name, gDst, gPort);
      setPtr(this.s, m + MH_NAME, base + name);
      s.setUint32(m + MH_NAMELEN, gV6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE, true);
      setPtr(this.s, m + MH_IOV, base + this.iovs + gFirstIov * IOV_SIZE);
      setPtr(this.s, m + MH_IOVLEN, gSegs);
      const c = this.ctrl + nMsg * TX_CTRL;
      let clen = 0;
      if (gSegs > 1) {
        setPtr(this.s, c, CMSG_HDR + 2);
        s.setInt32(c + 8, SOL_UDP, true);
        s.setInt32(c + 12, UDP_SEGMENT, true);
        s.setUint16(c + CMSG_HDR, gSeg, true);
        clen += CMSG_SPACE_SMALL;
      }
      if (gTos !== 0) {
        setPtr(this.s, c + clen, CMSG_HDR + 4);
        s.setInt32(c + clen + 8, gV6 ? libc.IPPROTO_IPV6 : libc.IPPROTO_IP, true);
        s.setInt32(c + clen + 12, gV6 ? libc.IPV6_TCLASS : libc.IP_TOS, true);
        s.setInt32(c + clen + CMSG_HDR, gTos, true);
        clen += CMSG_SPACE_SMALL;
      }
      setPtr(this.s, m + MH_CONTROL, clen ? base + c : 0);
      setPtr(this.s, m + MH_CONTROLLEN, clen);
      if (gSegs > 1) {
        this.stats.gsoSends++;
        this.stats.gsoSegments += gSegs;
      }
      nMsg++;
    };
    const flush = () => {
      if (nMsg > firstMsgOfBatch) errors += this.sendmmsg(fdOfBatch, firstMsgOfBatch, nMsg);
      firstMsgOfBatch = nMsg;
    };

    for (let k = 0; k < count; k++) {
      const i = idx[k];
      const meta = r.metaBase + i * abi.META_SIZE;
      const off = mem.getUint32(meta + abi.META_OFF, true);
      const len = mem.getUint32(meta + abi.META_LEN, true);
      const p = r.slotBase + i * r.slotSize + off;
      const v6 = off + len <= r.slotSize && len > OUTER && mem.getUint8(p) >> 4 === 6;
      const outer = v6 ? OUTER6 : OUTER;
      if (off + len > r.slotSize || len <= outer || (v6 && this.fds6.length === 0)) {
        errors++;
        this.errors.add(OP_SEND, E_BAD_SLOT);
        continue;
      }
      let tos: number, dst: number, d0 = 0, d1 = 0, d2 = 0, sport: number, dport: number, fdIdx: number;
      if (v6) {
        tos = ((mem.getUint8(p) & 0x0f) << 4) | (mem.getUint8(p + 1) >> 4);
        d0 = mem.getUint32(p + 24, false);
        d1 = mem.getUint32(p + 28, false);
        d2 = mem.getUint32(p + 32, false);
        dst = mem.getUint32(p + 36, false);
        sport = mem.getUint16(p + 40, false);
        dport = mem.getUint16(p + 42, false);
        fdIdx = this.fds.length + this.dfFds.length + (sport % this.fds6.length);
      } else {
        tos = mem.getUint8(p + 1);
        dst = mem.getUint32(p + 16, false);
        sport = mem.getUint16(p + 20, false);
        dport = mem.getUint16(p + 22, false);
        const df = this.dfFds.length > 0 && (mem.getUint8(p + 6) & 0x40) !== 0;
        fdIdx = (df ? this.fds.length : 0) + (sport % this.fds.length);
      }
      const fd = this.all[fdIdx];
      const pay = len - outer;
      const fits = !gClosed && dst === gDst && d0 === gD0 && d1 === gD1 && d2 === gD2 && fd === gFd && tos === gTos && dport === gPort && pay <= gSeg &&
        gSegs < MAX_SEGMENTS && gBytes + pay <= MAX_GSO_BYTES && !this.noGso[fdIdx];
      if (!fits) {
        closeGroup();
        if (fd !== fdOfBatch) {
          flush();
          fdOfBatch = fd;
        }
        gDst = dst; gD0 = d0; gD1 = d1; gD2 = d2; gAt = p; gV6 = v6;
        gPort = dport; gFd = fd; gTos = tos; gSeg = pay; gSegs = 0; gBytes = 0; gFirstIov = nIov; gClosed = false;
      }
      const iov = this.iovs + nIov * IOV_SIZE;
      setPtr(this.s, iov, this.memAddr + p + outer);
      setPtr(this.s, iov + 8, pay);
      nIov++;
      gSegs++;
      gBytes += pay;
      // A shorter datagram can only be the last of a train.
      if (pay < gSeg) closeGroup();
    }
    closeGroup();
    flush();
    this.stats.errors += errors;
    return errors;
  }

  /** sendmmsg messages [from, to) on fd; returns datagrams refused. */
  private sendmmsg(fd: number, from: number, to: number): number {
    const s = this.s;
    const base = this.scratch.addr;
    let start = from, errors = 0, waited = false;
    const segsOf = (m: number) => s.getUint32(this.msgs + m * MMSG_SIZE + MH_IOVLEN, true);
    const fdIdx = this.all.indexOf(fd);
    while (start < to) {
      const inject = this.injectErrno !== 0 && !this.noGso[fdIdx] && segsOf(start) > 1;
      const r = inject ? -1 : libc.sendmmsg(fd, base + this.msgs + start * MMSG_SIZE, to - start, 0);
      if (r > 0) {
        start += r;
        continue;
      }
      const e = inject ? this.injectErrno : r < 0 ? libc.errno() : libc.EAGAIN;
      if (e === libc.EINTR) continue;
      this.stats.lastErrno = e;
      if (e === libc.EIO && segsOf(start) > 1) {
        // The route cannot take GSO packets: no more trains on this socket,
        // and this one (and any after it in this call) goes out datagram by datagram.
        if (!this.noGso[fdIdx]) {
          this.noGso[fdIdx] = true;
          this.stats.gsoFallbacks++;
        }
        errors += this.sendSingles(fd, start);
        start++;
        continue;
      }
      if ((e === libc.EAGAIN || e === libc.ENOBUFS) && !waited) {
        waited = true;
        waitWritable(fd, 1);
        continue;
      }
      if (e === libc.EAGAIN || e === libc.ENOBUFS) {
        let lost = 0;
        for (let m = start; m < to; m++) lost += segsOf(m);
        errors += lost;
        this.errors.add(OP_SEND, e, lost);
        break;
      }
      errors += segsOf(start);
      this.errors.add(OP_SEND, e, segsOf(start));
      start++;
    }
    return errors;
  }

  /** Send the datagrams of message m (a train) one per message, with the
   *  same destination and TOS but no UDP_SEGMENT; returns those refused. */
  private sendSingles(fd: number, m: number): number {
    const s = this.s, base = this.scratch.addr;
    const mm = this.msgs + m * MMSG_SIZE;
    const segs = s.getUint32(mm + MH_IOVLEN, true);
    const iov0 = Number(s.getBigUint64(mm + MH_IOV, true));
    const ctrl = Number(s.getBigUint64(mm + MH_CONTROL, true));
    const clen = Number(s.getBigUint64(mm + MH_CONTROLLEN, true));
    // A train's control area starts with its UDP_SEGMENT cmsg; what follows (TOS) stays.
    const rest = clen > CMSG_SPACE_SMALL ? clen - CMSG_SPACE_SMALL : 0;
    for (let j = 0; j < segs; j++) {
      const o = this.singles + j * MMSG_SIZE;
      setPtr(s, o + MH_NAME, Number(s.getBigUint64(mm + MH_NAME, true)));
      s.setUint32(o + MH_NAMELEN, s.getUint32(mm + MH_NAMELEN, true), true);
      setPtr(s, o + MH_IOV, iov0 + j * IOV_SIZE);
      setPtr(s, o + MH_IOVLEN, 1);
      setPtr(s, o + MH_CONTROL, rest ? ctrl + CMSG_SPACE_SMALL : 0);
      setPtr(s, o + MH_CONTROLLEN, rest);
      s.setInt32(o + MH_FLAGS, 0, true);
    }
    let start = 0, refused = 0, waited = false;
    while (start < segs) {
      const r = libc.sendmmsg(fd, base + this.singles + start * MMSG_SIZE, segs - start, 0);
      if (r > 0) {
        this.stats.gsoResent += r;
        start += r;
        continue;
      }
      const e = r < 0 ? libc.errno() : libc.EAGAIN;
      if (e === libc.EINTR) continue;
      this.stats.lastErrno = e;
      if ((e === libc.EAGAIN || e === libc.ENOBUFS) && !waited) {
        waited = true;
        waitWritable(fd, 1);
        continue;
      }
      const lost = e === libc.EAGAIN || e === libc.ENOBUFS ? segs - start : 1;
      this.errors.add(OP_SEND, e, lost);
      refused += lost;
      start += lost;
    }
    return refused;
  }
}

export interface GroDatagram {
  /** Offset of the buffer in linear memory. */
  ptr: number;
  len: number;
  /** Segment size from UDP_GRO (0: a single datagram). */
  seg: number;
  src: number;
  /** Outer UDP source port. */
  sport: number;
  dst: number;
  tos: number;
}

/** Receives coalesced VXLAN trains (UDP_GRO) into buffers in linear memory. */
/** Room for a sockaddr_in6 (the IPv6 underlay's socket); IPv4 fills 16 bytes of it. */
const NAME_SIZE = SOCKADDR_IN6_SIZE;

export class UdpGroReceiver {
  readonly bufSize = 65536;
  /** Trains cut short (MSG_TRUNC), and recvmmsg failures other than EAGAIN. */
  truncated = 0;
  rxErrors = 0;
  private readonly scratch: libc.Scratch;
  private readonly s: DataView;
  private readonly msgs: number;
  private readonly iovs: number;
  private readonly names: number;
  private readonly ctrl: number;
  private buffer!: ArrayBuffer;
  private memAddr = 0;
  readonly out: GroDatagram[];

  /** `bufs` buffers of 64 KiB each starting at linear-memory offset `bufPtr`;
   *  failures counted by errno in `errors`. With `peers6` the socket is the
   *  IPv6 underlay's: `src` is the sending peer's IPv4 name (0: no peer's),
   *  `tos` the outer traffic class. */
  constructor(private readonly memory: WebAssembly.Memory, private readonly bufPtr: number, private readonly bufs: number, readonly errors: IoErrors = new IoErrors(),
    private readonly peers6?: Underlay6Peers) {
    const layout = new ScratchLayout();
    this.msgs = layout.take(bufs * MMSG_SIZE);
    this.iovs = layout.take(bufs * IOV_SIZE);
    this.names = layout.take(bufs * NAME_SIZE);
    this.ctrl = layout.take(bufs * RX_CTRL);
    this.scratch = new libc.Scratch(layout.size);
    this.s = this.scratch.dv;
    const base = this.scratch.addr;
    for (let i = 0; i < bufs; i++) {
      const m = this.msgs + i * MMSG_SIZE;
      setPtr(this.s, m + MH_NAME, base + this.names + i * NAME_SIZE);
      setPtr(this.s, m + MH_IOV, base + this.iovs + i * IOV_SIZE);
      setPtr(this.s, m + MH_IOVLEN, 1);
      setPtr(this.s, m + MH_CONTROL, base + this.ctrl + i * RX_CTRL);
    }
    this.out = Array.from({ length: bufs }, (_, i) => ({ ptr: bufPtr + i * this.bufSize, len: 0, seg: 0, src: 0, sport: 0, dst: 0, tos: 0 }));
  }

  /** One recvmmsg(MSG_DONTWAIT) of up to `bufs` trains; fills out[0..n). */
  recv(fd: number): number {
    if (this.buffer !== this.memory.buffer) {
      this.buffer = this.memory.buffer;
      this.memAddr = Number(koffi.address(new Uint8Array(this.buffer)));
    }
    const s = this.s;
    for (let i = 0; i < this.bufs; i++) {
      const m = this.msgs + i * MMSG_SIZE;
      const iov = this.iovs + i * IOV_SIZE;
      setPtr(s, iov, this.memAddr + this.bufPtr + i * this.bufSize);
      setPtr(s, iov + 8, this.bufSize);
      s.setUint32(m + MH_NAMELEN, NAME_SIZE, true);
      setPtr(s, m + MH_CONTROLLEN, RX_CTRL);
    }
    let got = libc.recvmmsg(fd, this.scratch.addr + this.msgs, this.bufs, libc.MSG_DONTWAIT, 0);
    if (got < 0) {
      const e = libc.errno();
      if (e !== libc.EAGAIN && e !== libc.EINTR) {
        this.rxErrors++;
        this.errors.add(OP_RECV, e);
      }
      got = 0;
    }
    for (let i = 0; i < got; i++) {
      const m = this.msgs + i * MMSG_SIZE;
      const o = this.out[i];
      o.len = s.getUint32(m + MH_LEN, true);
      if ((s.getInt32(m + MH_FLAGS, true) & libc.MSG_TRUNC) !== 0) {
        this.truncated++;
        this.errors.add(OP_RECV, E_TRUNCATED);
      }
      const name = this.names + i * NAME_SIZE;
      o.src = !this.peers6 ? s.getUint32(name + 4, false) : s.getUint16(name, true) === libc.AF_INET6 ? this.peers6.lookup(s, name + 8) : 0;
      o.sport = s.getUint16(name + 2, false);
      o.seg = 0;
      o.tos = 0;
      o.dst = 0;
      forEachCmsg(s, this.ctrl + i * RX_CTRL, s.getUint32(m + MH_CONTROLLEN, true), (level, type, data) => {
        o.tos = outerTos(s, level, type, data) ?? o.tos;
        if (level === libc.IPPROTO_IP && type === libc.IP_PKTINFO) o.dst = s.getUint32(data + 8, false);
        else if (level === SOL_UDP && type === UDP_GRO) o.seg = s.getUint16(data, true);
      });
    }
    return got;
  }
}
