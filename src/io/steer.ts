// Flow steering for several data-path workers (node.device.queues > 1).
//
// Each worker has a tun queue and a VXLAN socket in one SO_REUSEPORT group.
// The tun sends a flow to the queue its packets were last written from (its
// automatic flow steering keys on a symmetric flow hash), and by default the
// kernel picks the socket of the group by a hash of the OUTER addresses and
// ports. That lets one inner flow be written to the tun from two workers:
// UDP GRO puts datagrams of several inner flows in one train when they share
// an outer source port, and the answer direction comes back on a port of its
// own. The flow then moves between queues mid-stream and arrives reordered
// (iperf3, 4 flows over 2 queues: thousands of spurious retransmits, DSACKs).
//
// The fix is to pick the socket by the INNER flow, the same way on every
// node and in both directions: a classic BPF program on the group
// (SO_ATTACH_REUSEPORT_CBPF) reads the VXLAN payload's inner IPv4 addresses
// and, for unfragmented TCP/UDP, ports, and returns
//   ((src ^ dst ^ sport ^ dport) * 0x9E3779B1 mod 2^32 >> 16) % lanes
// which is symmetric. So the answer to a flow is received, and written to
// the tun, by the same worker as the flow itself, the tun steers both to that
// worker's queue, and nothing moves. Non-IPv4 payloads and packets the
// program cannot read (too short) go to worker 0.
//
// For a UDP socket the kernel runs the program with the data pointer past
// the UDP header (reuseport_select_sock, hdr_len = 8), so offset 0 is the
// VXLAN header and the inner IPv4 header starts at 8 + 14 = 22.
import * as libc from "./libc.js";

const SO_ATTACH_REUSEPORT_CBPF = 51;

// Classic BPF (linux/bpf_common.h).
const LD = 0x00, LDX = 0x01, ST = 0x02, ALU = 0x04, JMP = 0x05, RET = 0x06;
const W = 0x00, H = 0x08, B = 0x10;
const ABS = 0x20, IND = 0x40, MEM = 0x60, MSH = 0xa0, IMM = 0x00;
const MUL = 0x20, RSH = 0x70, MOD = 0x90, XOR = 0xa0;
/** 2^32 / golden ratio: Knuth's multiplicative hash. Without it, parallel
 *  connections (the kernel gives them ephemeral ports of one parity, 2
 *  apart) differed only in bits a fold never brought down: all on one lane. */
const GOLDEN = 0x9e3779b1;
const K = 0x00, X = 0x08;
const JA = 0x00, JEQ = 0x10, JSET = 0x40;
const RET_A = 0x10;

const INNER = 22; // VXLAN 8 + Ethernet 14

type Insn = [code: number, jt: number, jf: number, k: number];

/** The program for `lanes` sockets (see the file comment). */
export function steeringProgram(lanes: number): Insn[] {
  if (!Number.isInteger(lanes) || lanes < 1) throw new RangeError("lanes must be a positive integer");
  return [
    /* 0 */ [LD | H | ABS, 0, 0, INNER - 2], // inner ethertype
    /* 1 */ [JMP | JEQ | K, 0, 26, 0x0800], // not IPv4 -> 28 (lane 0)
    /* 2 */ [LD | IMM, 0, 0, 0],
    /* 3 */ [ST, 0, 0, 0], // M[0] = ports word (0 without ports)
    /* 4 */ [LD | B | ABS, 0, 0, INNER + 9], // protocol
    /* 5 */ [JMP | JEQ | K, 2, 0, 6], // TCP -> 8
    /* 6 */ [JMP | JEQ | K, 1, 0, 17], // UDP -> 8
    /* 7 */ [JMP | JA, 0, 0, 9], // no ports -> 17
    /* 8 */ [LD | H | ABS, 0, 0, INNER + 6], // flags + fragment offset
    /* 9 */ [JMP | JSET | K, 7, 0, 0x3fff], // MF or an offset: no ports -> 17
    /* 10 */ [LDX | B | MSH, 0, 0, INNER], // X = 4 * IHL
    /* 11 */ [LD | H | IND, 0, 0, INNER], // source port
    /* 12 */ [ST, 0, 0, 0],
    /* 13 */ [LD | H | IND, 0, 0, INNER + 2], // destination port
    /* 14 */ [LDX | W | MEM, 0, 0, 0],
    /* 15 */ [ALU | XOR | X, 0, 0, 0], // A = sport ^ dport
    /* 16 */ [ST, 0, 0, 0], // M[0] = sport ^ dport
    /* 17 */ [LD | W | ABS, 0, 0, INNER + 12], // source address
    /* 18 */ [LDX | W | MEM, 0, 0, 0],
    /* 19 */ [ALU | XOR | X, 0, 0, 0],
    /* 20 */ [ST, 0, 0, 0],
    /* 21 */ [LD | W | ABS, 0, 0, INNER + 16], // destination address
    /* 22 */ [LDX | W | MEM, 0, 0, 0],
    /* 23 */ [ALU | XOR | X, 0, 0, 0], // h
    /* 24 */ [ALU | MUL | K, 0, 0, GOLDEN], // mix every bit into the high half
    /* 25 */ [ALU | RSH | K, 0, 0, 16],
    /* 26 */ [ALU | MOD | K, 0, 0, lanes],
    /* 27 */ [RET | RET_A, 0, 0, 0],
    // Last: the kernel's checker wants every path to a load of M[0] to
    // store it first, and does not count a RET as ending a path.
    /* 28 */ [RET | K, 0, 0, 0],
  ];
}

/** The lane the program picks for an inner IPv4 flow (addresses as host-order
 *  u32, ports or 0 when the packet carries none); for tests and `show`. */
export function laneOf(lanes: number, src: number, dst: number, sport = 0, dport = 0): number {
  const h = (src ^ dst ^ sport ^ dport) >>> 0;
  return (Math.imul(h, GOLDEN) >>> 16) % lanes;
}

/** Attach the program to the SO_REUSEPORT group of `fd` (a bound VXLAN
 *  socket); it then decides for every socket of the group. Socket k of the
 *  group is the k-th one bound. */
export function attachSteering(fd: number, lanes: number): void {
  const prog = steeringProgram(lanes);
  const code = new libc.Scratch(prog.length * 8);
  prog.forEach(([op, jt, jf, k], i) => {
    code.dv.setUint16(i * 8, op, true);
    code.dv.setUint8(i * 8 + 2, jt);
    code.dv.setUint8(i * 8 + 3, jf);
    code.dv.setUint32(i * 8 + 4, k >>> 0, true);
  });
  // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
  const fprog = new libc.Scratch(16);
  fprog.dv.setUint16(0, prog.length, true);
  fprog.dv.setBigUint64(8, BigInt(code.addr), true);
  libc.check("setsockopt(SO_ATTACH_REUSEPORT_CBPF)", libc.setsockopt(fd, libc.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog.addr, 16));
}
