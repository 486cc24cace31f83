// The GRO side of test/worker-io.test.ts, run inside a test namespace whose
// loopback holds 198.18.9.2:
//   ip netns exec NS node --import tsx test/helpers/worker-io-child.ts
// A train of 40 VXLAN datagrams arrives as one UDP_GRO buffer; the worker's
// VXLAN receiver (GroTrains) cuts it into batches of 16 slots. Prints one
// JSON line: each batch's size and the index byte of every slot in order.
import { execFileSync } from "node:child_process";
import * as abi from "../../src/dataplane/abi.js";
import { Dataplane } from "../../src/dataplane/dataplane.js";
import { BatchIO } from "../../src/io/batch.js";
import { IoErrors } from "../../src/io/errors.js";
import { openVxlanSocket } from "../../src/io/sockets.js";
import { enableUdpGro } from "../../src/io/udpgso.js";
import { GroTrains } from "../../src/daemon/worker/bind.js";
import type { IoStats } from "../../src/daemon/worker.js";

const say = (o: unknown) => process.stdout.write(JSON.stringify(o) + "\n");

try {
  const dp = new Dataplane({ batch: 16 });
  const errors = new IoErrors();
  const io = new BatchIO({ memory: dp.memory, slotBase: dp.slotBase, slotSize: dp.slotSize, metaBase: dp.metaBase, batch: dp.batch, errors });
  const stats: IoStats = { sendErrors: 0, writeErrors: 0, polls: 0, superframes: 0, refused: 0, groFrames: 0, groTrains: 0, groDatagrams: 0 };
  const ctx = { dp, io, stats, errors, batch: dp.batch, memBase: io.slotAddress(0) - dp.slotBase };
  const fd = openVxlanSocket({ bindAddr: "198.18.9.2", port: 4789, rcvBuf: 8 << 20 });
  enableUdpGro(fd);
  const rx = new GroTrains(ctx, fd, undefined);
  // One sendmsg with UDP_SEGMENT: 40 datagrams of 1400 bytes, datagram k
  // a VXLAN header then bytes k.
  execFileSync("python3", ["-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.9.2", 40001))
s.setsockopt(socket.SOL_UDP, 103, 1400)
s.sendto(b"".join(bytes([8, 0, 0, 0, 0, 0, 100, 0]) + bytes([k]) * 1392 for k in range(40)), ("198.18.9.2", 4789))
`]);
  if (!io.pollReadable([fd], 2000)) throw new Error("the train did not arrive");
  const batches: number[] = [];
  const order: number[] = [];
  for (let turn = 0; turn < 20; turn++) {
    const n = rx.read();
    if (n) batches.push(n);
    const dv = dp.dv;
    for (let i = 0; i < n; i++) {
      const m = dp.metaBase + i * abi.META_SIZE;
      order.push(dv.getUint8(dp.slotBase + i * dp.slotSize + dv.getUint32(m + abi.META_OFF, true) + 8));
    }
    if (!n && !rx.more) break;
  }
  say({ result: { batches, order, trains: stats.groTrains, datagrams: stats.groDatagrams, refused: stats.refused } });
} catch (e) {
  say({ error: (e as Error).stack ?? String(e) });
}
