// The naive twin of assembly/nat/conntrack.ts: flows in a Map by index, keys
// in a Map by string, the TCP state machine transcribed from
// nf_conntrack_proto_tcp.c by event name. It does not choose flow indices
// (that is the allocator's business): create() is told the index the WASM
// table returned and checks that it was free. What it predicts exactly:
// every status, every lookup, every field, the clock hand's reaping and the
// counters. Early drop (a full table evicting a flow near the new one's hash
// slot) depends on where keys hash, which the twin does not model: it checks
// that the flow the table evicted (its index is the new flow's, the freed
// record being reused) was a legal victim, and, when the search window
// covers every slot (small tables), that it was the right one.
export const OK = 0;
export const E_FULL = -1;
export const E_RANGE = -2;
export const E_NOT_FOUND = -3;
export const E_CT_CLASH = -6;

export const NAT_NONE = 0;
export const NAT_SNAT = 1;
export const NAT_DNAT = 2;
export const NAT_BOTH = 3;

export const F_USED = 1;
export const F_SEEN_REPLY = 2;
export const F_ASSURED = 4;

export const TCP = { NONE: 0, SYN_SENT: 1, SYN_RECV: 2, ESTABLISHED: 3, FIN_WAIT: 4, CLOSE_WAIT: 5, LAST_ACK: 6, TIME_WAIT: 7, CLOSE: 8, SYN_SENT2: 9 } as const;
export const TO = { UDP: 10, UDP_STREAM: 11, ICMP: 12, GENERIC: 13 } as const;
export const STAT = { INSERTS: 0, DELETES: 1, EXPIRED: 2, INSERT_FAILED: 3, CLASH: 4, INVALID: 5, EARLY_DROP: 6 } as const;
/** Slots early drop looks at (nat/conntrack.ts CT_EVICT_WINDOW); 3 slots per flow. */
export const EVICT_WINDOW = 16;
export const TCP_VERDICT = { ACCEPTED: 0, IGNORED: 1, INVALID: 2 } as const;

export interface Tuple {
  src: number;
  dst: number;
  sport: number;
  dport: number;
}

export interface SlowFlow {
  index: number;
  proto: number;
  orig: Tuple;
  reply: Tuple;
  nat: number;
  state: number;
  flags: number;
  lastSeen: number;
  deadline: number;
}

// nf_conntrack's defaults, indexed like the WASM table, but ESTABLISHED 24 h (kube-proxy's).
export const DEFAULT_TIMEOUTS = [120, 120, 60, 86400, 120, 60, 30, 120, 10, 120, 30, 120, 30, 600];

type Ev = "syn" | "synack" | "fin" | "ack" | "rst" | "none";
const S = ["NO", "SS", "SR", "ES", "FW", "CW", "LA", "TW", "CL", "S2"] as const;
// tcp_conntracks[dir][event]: the next state for each current state, in the
// order sNO sSS sSR sES sFW sCW sLA sTW sCL sS2. IV = invalid, IG = ignore.
const TABLE: Record<"orig" | "reply", Record<Ev, string>> = {
  orig: {
    syn: "SS SS IG IG IG IG IG SS SS S2",
    synack: "IV IV SR IV IV IV IV IV IV SR",
    fin: "IV IV FW FW LA LA LA TW CL IV",
    ack: "ES IV ES ES CW CW TW TW CL IV",
    rst: "IV CL CL CL CL CL CL CL CL CL",
    none: "IV IV IV IV IV IV IV IV IV IV",
  },
  reply: {
    syn: "IV S2 IV IV IV IV IV SS IV S2",
    synack: "IV SR IG IG IG IG IG IG IG SR",
    fin: "IV IV FW FW LA LA LA TW CL IV",
    ack: "IV IG SR ES CW CW TW TW CL IG",
    rst: "IV CL CL CL CL CL CL CL CL CL",
    none: "IV IV IV IV IV IV IV IV IV IV",
  },
};

function event(flags: number): Ev {
  if (flags & 0x04) return "rst";
  if (flags & 0x02) return flags & 0x10 ? "synack" : "syn";
  if (flags & 0x01) return "fin";
  if (flags & 0x10) return "ack";
  return "none";
}

/** Next TCP state, or "IV"/"IG", by the table above. */
export function tcpNext(dir: 0 | 1, state: number, flags: number): number | "IV" | "IG" {
  const row = TABLE[dir === 0 ? "orig" : "reply"][event(flags)].split(" ");
  const n = row[state];
  if (n === "IV" || n === "IG") return n;
  return S.indexOf(n as (typeof S)[number]);
}

const keyOf = (proto: number, t: Tuple) => `${proto & 0xff}/${t.src >>> 0}/${t.dst >>> 0}/${t.sport & 0xffff}/${t.dport & 0xffff}`;

export class SlowConntrack {
  readonly flows = new Map<number, SlowFlow>();
  private readonly keys = new Map<string, { flow: SlowFlow; dir: 0 | 1 }>();
  readonly timeouts = [...DEFAULT_TIMEOUTS];
  readonly stats = [0, 0, 0, 0, 0, 0, 0];
  high = 0;
  hand = 0;
  /** Flows a full table freed for a new one (expired or early-dropped). */
  evictions = 0;

  constructor(readonly capacity: number) {}

  get count(): number {
    return this.flows.size;
  }

  setTimeout(which: number, seconds: number): number {
    if (which < 0 || which >= this.timeouts.length || seconds === 0 || seconds > 2 ** 30) return E_RANGE;
    this.timeouts[which] = seconds;
    return OK;
  }

  private expired(f: SlowFlow, now: number): boolean {
    return ((now - f.deadline) | 0) >= 0;
  }

  private timeoutOf(f: SlowFlow): number {
    if (f.proto === 6) return this.timeouts[f.state];
    if (f.proto === 17) return this.timeouts[f.flags & F_ASSURED ? TO.UDP_STREAM : TO.UDP];
    if (f.proto === 1) return this.timeouts[TO.ICMP];
    return this.timeouts[TO.GENERIC];
  }

  private refresh(f: SlowFlow, now: number): void {
    f.lastSeen = now >>> 0;
    f.deadline = (now + this.timeoutOf(f)) >>> 0;
  }

  private remove(f: SlowFlow): void {
    this.keys.delete(keyOf(f.proto, f.orig));
    this.keys.delete(keyOf(f.proto, f.reply));
    this.flows.delete(f.index);
  }

  lookup(proto: number, src: number, dst: number, sport: number, dport: number): number {
    const e = this.keys.get(keyOf(proto, { src, dst, sport, dport }));
    return e ? (e.flow.index << 1) | e.dir : -1;
  }

  lookupLive(proto: number, src: number, dst: number, sport: number, dport: number, now: number): number {
    const e = this.keys.get(keyOf(proto, { src, dst, sport, dport }));
    if (!e) return -1;
    if (this.expired(e.flow, now)) {
      this.remove(e.flow);
      this.stats[STAT.EXPIRED]++;
      return -1;
    }
    return (e.flow.index << 1) | e.dir;
  }

  private heldLive(proto: number, t: Tuple, now: number): boolean {
    const e = this.keys.get(keyOf(proto, t));
    if (!e) return false;
    if (!this.expired(e.flow, now)) return true;
    this.remove(e.flow);
    this.stats[STAT.EXPIRED]++;
    return false;
  }

  /** The expected ctCreate result; `wasmIndex` is what the WASM table
   *  returned, adopted as the new flow's index when a flow is expected (and
   *  rejected loudly if it cannot be right). */
  create(proto: number, orig: Tuple, reply: Tuple, nat: number, now: number, wasmIndex: number): number {
    if (nat > NAT_BOTH) return E_RANGE;
    if (keyOf(proto, orig) === keyOf(proto, reply)) return E_RANGE;
    if (this.heldLive(proto, orig, now) || this.heldLive(proto, reply, now)) {
      this.stats[STAT.CLASH]++;
      return E_CT_CLASH;
    }
    if (this.flows.size >= this.capacity && !this.evicted(wasmIndex, now)) {
      this.stats[STAT.INSERT_FAILED]++;
      return E_FULL;
    }
    if (!Number.isInteger(wasmIndex) || wasmIndex < 0 || wasmIndex >= this.capacity || this.flows.has(wasmIndex)) {
      throw new Error(`expected a new flow, the table returned ${wasmIndex}`);
    }
    const f: SlowFlow = {
      index: wasmIndex, proto: proto & 0xff, orig: { ...orig }, reply: { ...reply }, nat, state: 0, flags: F_USED, lastSeen: 0, deadline: 0,
    };
    this.refresh(f, now);
    this.flows.set(f.index, f);
    this.keys.set(keyOf(proto, orig), { flow: f, dir: 0 });
    this.keys.set(keyOf(proto, reply), { flow: f, dir: 1 });
    this.high = Math.max(this.high, f.index + 1);
    this.stats[STAT.INSERTS]++;
    return f.index;
  }

  /** Early drop may take `f`: not assured, or assured TCP already closing (FIN_WAIT .. CLOSE). */
  static evictable(f: SlowFlow): boolean {
    return (f.flags & F_ASSURED) === 0 || (f.proto === 6 && f.state >= TCP.FIN_WAIT && f.state <= TCP.CLOSE);
  }

  /** The table is full: did it rightly make room by freeing flow `wasmIndex`
   *  (a negative one: it found nothing)? Counts like the table does. */
  private evicted(wasmIndex: number, now: number): boolean {
    const all = [...this.flows.values()];
    const expired = all.filter((f) => this.expired(f, now));
    const candidates = all.filter((f) => SlowConntrack.evictable(f));
    const whole = this.capacity * 3 <= EVICT_WINDOW; // the window is every slot
    if (wasmIndex < 0) {
      if (whole && (expired.length || candidates.length)) throw new Error(`a full table refused a flow although ${expired.length} expired and ${candidates.length} evictable flows were there`);
      return false;
    }
    const victim = this.flows.get(wasmIndex);
    if (!victim) throw new Error(`a full table admitted flow ${wasmIndex}, which evicted nothing`);
    if (this.expired(victim, now)) {
      this.stats[STAT.EXPIRED]++;
    } else {
      if (!SlowConntrack.evictable(victim)) throw new Error(`early drop took flow ${wasmIndex}, assured (flags ${victim.flags}, state ${victim.state})`);
      if (whole && expired.length) throw new Error(`early drop took flow ${wasmIndex} while ${expired.length} had expired`);
      const age = (f: SlowFlow) => (now - f.lastSeen) >>> 0;
      const oldest = Math.max(...candidates.map(age));
      if (whole && age(victim) !== oldest) throw new Error(`early drop took flow ${wasmIndex} (idle ${age(victim)} s), not the oldest (${oldest} s)`);
      this.stats[STAT.EARLY_DROP]++;
    }
    this.remove(victim);
    this.evictions++;
    return true;
  }

  touch(index: number, dir: number, now: number): number {
    if (dir > 1) return E_RANGE;
    const f = this.flows.get(index);
    if (!f) return E_NOT_FOUND;
    // UDP: traffic after the first reply makes a stream.
    if (f.flags & F_SEEN_REPLY && f.proto === 17) f.flags |= F_ASSURED;
    if (dir === 1) f.flags |= F_SEEN_REPLY;
    this.refresh(f, now);
    return OK;
  }

  updateTcp(index: number, dir: number, flags: number, now: number): number {
    if (dir > 1) return E_RANGE;
    const f = this.flows.get(index);
    if (!f) return E_NOT_FOUND;
    if (f.proto !== 6) return E_RANGE;
    const next = tcpNext(dir as 0 | 1, f.state, flags);
    if (next === "IV") {
      this.stats[STAT.INVALID]++;
      return f.state | (TCP_VERDICT.INVALID << 8);
    }
    if (next === "IG") return f.state | (TCP_VERDICT.IGNORED << 8);
    f.state = next;
    if (dir === 1) f.flags |= F_SEEN_REPLY;
    if (next === TCP.ESTABLISHED && f.flags & F_SEEN_REPLY) f.flags |= F_ASSURED;
    this.refresh(f, now);
    return next;
  }

  delete(index: number): number {
    const f = this.flows.get(index);
    if (!f) return E_NOT_FOUND;
    this.remove(f);
    this.stats[STAT.DELETES]++;
    return OK;
  }

  /** The clock hand: look at `budget` indices from where it stopped,
   *  wrapping over [0, high). */
  expire(now: number, budget: number): number {
    if (this.high === 0) return 0;
    let n = 0;
    const steps = Math.min(budget, this.high);
    for (let k = 0; k < steps; k++) {
      const f = this.flows.get(this.hand);
      if (f && this.expired(f, now)) {
        this.remove(f);
        n++;
      }
      this.hand = this.hand + 1 >= this.high ? 0 : this.hand + 1;
    }
    this.stats[STAT.EXPIRED] += n;
    return n;
  }

  /** True when a flow holds (proto, t) in either direction, expired or not. */
  holds(proto: number, t: Tuple): boolean {
    return this.keys.has(keyOf(proto, t));
  }
}
