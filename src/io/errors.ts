// Packet I/O failures counted by operation and errno, for
// overlay_io_errors_total{op, errno} (src/control/metrics.ts).
//
// The I/O classes (BatchIO, UdpGsoSender, UdpGroReceiver, TunRing) and the
// worker add to one IoErrors per worker; counting is an array increment (no
// allocation on the error path), the names are made only in snapshot(),
// once per statistics message.
import { errnoName } from "./libc.js";

/** Underlay sends (raw socket, UDP GSO sockets). */
export const OP_SEND = 0;
/** Writes to the tun/tap (and the kernelGso tap). */
export const OP_WRITE = 1;
/** Underlay receives (VXLAN, IPIP, ICMP sockets). */
export const OP_RECV = 2;
/** Reads from the tun/tap. */
export const OP_READ = 3;
export const IO_OPS = ["send", "write", "recv", "read"] as const;
export type IoOp = (typeof IO_OPS)[number];

/** Not errnos: a datagram longer than its buffer (MSG_TRUNC), a slot whose
 *  offset/length lies outside it (never sent). */
export const E_TRUNCATED = 256;
export const E_BAD_SLOT = 257;
const SLOTS = 258;

/** The errno label of a counted failure. */
export function errnoLabel(e: number): string {
  if (e === E_TRUNCATED) return "MSG_TRUNC";
  if (e === E_BAD_SLOT) return "bad_slot";
  return errnoName(e).replace(/ /g, "_");
}

export class IoErrors {
  private readonly counts = new Float64Array(IO_OPS.length * SLOTS);

  /** Count `n` failures of `op` (OP_*) with `errno` (or E_TRUNCATED / E_BAD_SLOT). */
  add(op: number, errno: number, n = 1): void {
    if (n <= 0) return;
    const e = errno >= 0 && errno < SLOTS ? errno : 0;
    this.counts[op * SLOTS + e] += n;
  }

  /** Every non-zero count as "op/ERRNO" -> cumulative count. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 0; i < this.counts.length; i++) {
      if (this.counts[i] > 0) out[`${IO_OPS[Math.floor(i / SLOTS)]}/${errnoLabel(i % SLOTS)}`] = this.counts[i];
    }
    return out;
  }
}
