// `overlayd show conntrack`: the data path's flow table printed the way
// `conntrack -L` prints the kernel's, so people (and their grep habits) read
// it without learning a new format. Pure: flows in, text out.
//
//   tcp      6 431999 ESTABLISHED src=A dst=B sport=P dport=Q src=B dst=N sport=Q dport=R [ASSURED] nat=snat
//   udp      17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=N sport=Q dport=R nat=snat
//   icmp     1 29 src=A dst=B type=8 code=0 id=X src=B dst=N type=0 code=0 id=Y nat=snat
//
// As in libnetfilter_conntrack: protocol name padded to 8, its number, the
// seconds left, the TCP state; [UNREPLIED] after the original tuple when no
// reply was seen, [ASSURED] after the reply tuple. `nat=` is ours (the
// kernel shows NAT only by the tuples differing).

export interface FlowTuple {
  src: string;
  dst: string;
  /** TCP/UDP: the port. ICMP echo: the identifier (conntrack.ts keys echo flows by it). */
  sport: number;
  /** TCP/UDP: the port. ICMP echo: unused (0). */
  dport: number;
}

export interface FlowInfo {
  /** IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6 (IPv6 flows: IPv6 addresses). */
  proto: number;
  /** TCP state name as conntrack prints it ("ESTABLISHED", "TIME_WAIT", ...); "" for other protocols. */
  state: string;
  /** Seconds until the flow expires. */
  expiresIn: number;
  orig: FlowTuple;
  reply: FlowTuple;
  nat: "none" | "snat" | "dnat" | "both";
  assured: boolean;
  seenReply: boolean;
}

const PROTO_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

function tuple(proto: number, t: FlowTuple, icmpType: number): string {
  const addrs = `src=${t.src} dst=${t.dst}`;
  // Only echo is tracked: the original is the request (8), the reply the reply (0).
  if (proto === 1) return `${addrs} type=${icmpType} code=0 id=${t.sport}`;
  // ICMPv6 echo: request 128, reply 129.
  if (proto === 58) return `${addrs} type=${icmpType === 8 ? 128 : 129} code=0 id=${t.sport}`;
  if (proto === 6 || proto === 17) return `${addrs} sport=${t.sport} dport=${t.dport}`;
  return addrs;
}

/** One flow as one `conntrack -L` line (no newline). */
export function formatFlow(f: FlowInfo): string {
  const parts = [`${(PROTO_NAMES[f.proto] ?? "unknown").padEnd(8)} ${f.proto}`, String(Math.max(0, Math.floor(f.expiresIn)))];
  if (f.state) parts.push(f.state);
  parts.push(tuple(f.proto, f.orig, 8));
  if (!f.seenReply) parts.push("[UNREPLIED]");
  parts.push(tuple(f.proto, f.reply, 0));
  if (f.assured) parts.push("[ASSURED]");
  parts.push(`nat=${f.nat}`);
  return parts.join(" ");
}

/** Every flow, one line each, in the order given; "" for none, otherwise newline-terminated. */
export function formatConntrack(flows: FlowInfo[]): string {
  return flows.map((f) => formatFlow(f) + "\n").join("");
}
