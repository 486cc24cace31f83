// Peers reached over the IPv6 underlay (peers[].underlay6): who sent a
// datagram that came in over IPv6. The data path knows a peer by its IPv4
// underlay address (its name: peer records, the decap stages' anti-spoofing),
// so the receiver puts that name in the packet's metadata where an IPv4
// datagram's outer source would be; a source that is no peer's gets 0, which
// the stage drops as an unknown peer (counted).
//
// Looked up once per received datagram: the key is the address's last 32
// bits (distinct between peers in practice), the other 96 are compared.

interface Entry {
  w0: number;
  w1: number;
  w2: number;
  name: number;
}

export class Underlay6Peers {
  private byLow = new Map<number, Entry[]>();

  /** Number of peers reached over IPv6. */
  get size(): number {
    let n = 0;
    for (const l of this.byLow.values()) n += l.length;
    return n;
  }

  /** Replace the table: each peer with an IPv6 underlay address (128-bit bigint) under its IPv4 name. */
  set(peers: readonly { underlay: number; underlay6?: bigint }[]): void {
    const next = new Map<number, Entry[]>();
    for (const p of peers) {
      if (!p.underlay6) continue;
      const a = p.underlay6;
      const w = (k: number) => Number((a >> BigInt(96 - 32 * k)) & 0xffffffffn);
      const low = w(3);
      const list = next.get(low) ?? [];
      list.push({ w0: w(0), w1: w(1), w2: w(2), name: p.underlay >>> 0 });
      next.set(low, list);
    }
    this.byLow = next;
  }

  /** The IPv4 name of the peer whose IPv6 underlay address is the 16 bytes
   *  at `off` of `dv` (network order); 0 when it is no peer's. */
  lookup(dv: DataView, off: number): number {
    const list = this.byLow.get(dv.getUint32(off + 12, false));
    if (!list) return 0;
    const w0 = dv.getUint32(off, false), w1 = dv.getUint32(off + 4, false), w2 = dv.getUint32(off + 8, false);
    for (const e of list) if (e.w0 === w0 && e.w1 === w1 && e.w2 === w2) return e.name;
    return 0;
  }
}
