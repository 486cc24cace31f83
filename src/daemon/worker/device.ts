// The pod side without offloads: one packet per read or write, the same for
// a tun (IP packets) and a tap (Ethernet frames; the pipeline knows which).
// With node.device.ioUring a batch of reads or writes is one io_uring_enter
// (BatchIO.useRing, src/io/uring.ts), else one read()/write() per packet.
import * as libc from "../../io/libc.js";
import { OP_WRITE } from "../../io/errors.js";
import type { IoContext, Outbox, PodDevice } from "./io.js";

export class PlainDevice implements PodDevice {
  readonly stage = "pod";
  more = false;

  constructor(protected readonly ctx: IoContext, readonly fd: number) {}

  read(): number {
    const n = this.ctx.io.readTun(this.fd, this.ctx.batch);
    this.more = !this.ctx.io.lastReadShort;
    return n;
  }

  write(out: Outbox, _n: number): void {
    if (out.nDevice) this.ctx.stats.writeErrors += this.ctx.io.writeTun(this.fd, out.device, out.nDevice).errors;
  }

  writeFrame(addr: number, len: number): void {
    this.writeTo(this.fd, addr, len);
  }

  /** One write(); a failure is counted by errno. */
  protected writeTo(fd: number, addr: number, len: number): void {
    if (libc.write(fd, addr, len) < 0) {
      this.ctx.stats.writeErrors++;
      this.ctx.errors.add(OP_WRITE, libc.errno());
    }
  }
}
