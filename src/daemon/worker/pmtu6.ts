// Path MTUs over the IPv6 underlay: ICMPv6 packet too big (RFC 4443 3.2)
// about our own outer IPv6 packets lowers the sending peer's path MTU, as
// an IPv4 fragmentation-needed does for IPv4 peers (assembly/pipeline/pmtu.ts).
// An IPv6 outer packet is never fragmented on the way (RFC 8200 5), so
// without this a narrower link between two nodes would drop every large
// tunnel packet silently; with it the data path answers the pod with the
// MTU that fits and TCP moves on.
//
// Read in the worker, not WASM: the raw ICMPv6 socket passes type 2 alone
// (ICMP6_FILTER), after the kernel checked its checksum, and routers send a
// few at most; each is parsed with bounds checks and anything that does not
// quote one of our tunnel packets is ignored.
import type { Underlay6Peers } from "../../io/underlay6.js";

/** RFC 8200 5: no IPv6 link is narrower; a smaller reported MTU is taken as this. */
export const IPV6_MIN_MTU = 1280;
const ICMP6_PACKET_TOO_BIG = 2;

/** A path MTU a packet too big reports for a peer (its IPv4 name). */
export interface PacketTooBig {
  peer: number;
  mtu: number;
}

/**
 * The ICMPv6 message at `b[off, off+len)` (as a raw ICMPv6 socket hands it
 * over: from its type on), when it is a packet too big quoting an outer
 * packet this node (`self`: its IPv6 underlay address, 16 bytes) sent to a
 * peer over IPv6 (VXLAN to `port`, or next header 4/41) that was larger
 * than the reported MTU. Undefined for anything else.
 */
export function parsePacketTooBig(b: DataView, off: number, len: number, self: Uint8Array, port: number, peers: Underlay6Peers): PacketTooBig | undefined {
  if (len < 8 + 40 || off < 0 || off + len > b.byteLength) return undefined;
  if (b.getUint8(off) !== ICMP6_PACKET_TOO_BIG || b.getUint8(off + 1) !== 0) return undefined;
  const reported = b.getUint32(off + 4, false);
  const q = off + 8; // the quoted packet: as much of ours as fits in 1280 bytes
  if (b.getUint8(q) >> 4 !== 6) return undefined;
  for (let i = 0; i < 16; i++) if (b.getUint8(q + 8 + i) !== self[i]) return undefined;
  const next = b.getUint8(q + 6);
  const ours = next === 4 || next === 41 || (next === 17 && len >= 8 + 40 + 8 && b.getUint16(q + 40 + 2, false) === port);
  if (!ours) return undefined;
  const peer = peers.lookup(b, q + 24);
  if (!peer) return undefined;
  // A quoted packet no larger than the MTU reported cannot have been too big for it.
  if (40 + b.getUint16(q + 4, false) <= reported) return undefined;
  return { peer, mtu: Math.max(reported, IPV6_MIN_MTU) };
}
