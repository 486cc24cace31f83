// After a batch: sorting its packets by verdict for the I/O layer, and what
// an offloading tun needs of the device-bound ones (a virtio_net_hdr each,
// or GRO into super-frames).
import { carve } from "../layout";
import { E_NO_MEMORY, VERDICT_REPLY, VERDICT_TO_DEVICE, VERDICT_TX_DIRECT, VERDICT_TX_UNDERLAY } from "../abi";
import { groCoalesce } from "../offload/gro";
import { VNET_HDR_LEN } from "../offload/vnet";
import { batchMax, metaBase, slotBase, slotSize } from "./state";

/** groDeviceBatch's packet pointers and lengths (one u32 per slot each), carved by init. */
let groPtrs: usize = 0;
let groLens: usize = 0;

/** Carve this stage's scratch; init calls it once, after the regions. */
export function egressCarve(): bool {
  groPtrs = carve(<usize>batchMax * 4);
  groLens = carve(<usize>batchMax * 4);
  return groPtrs != 0 && groLens != 0;
}

/** Split the first `n` verdicts of a processed batch into two u16 index
 *  lists for the I/O layer: packets for the underlay (TX_UNDERLAY and
 *  TX_DIRECT) at `toUnderlay`, packets for the device (TO_DEVICE, REPLY) at
 *  `toDevice`. Returns (#underlay) | (#device << 16). */
export function collectVerdicts(n: u32, toUnderlay: usize, toDevice: usize): u32 {
  if (n > batchMax) n = batchMax;
  let u: u32 = 0;
  let d: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const v = load<u16>(metaBase + (<usize>i << 5), 8);
    if (v == VERDICT_TX_UNDERLAY || v == VERDICT_TX_DIRECT) {
      store<u16>(toUnderlay + (<usize>u << 1), <u16>i);
      u++;
    } else if (v == VERDICT_TO_DEVICE || v == VERDICT_REPLY) {
      store<u16>(toDevice + (<usize>d << 1), <u16>i);
      d++;
    }
  }
  return u | (d << 16);
}

/** collectVerdicts for UDP GSO: VXLAN packets for the underlay (TX_UNDERLAY
 *  with an outer IPv4 header, protocol UDP) at `toVxlan`, the other
 *  underlay packets (IPIP, direct, anything over IPv6) at `toRaw`, device-bound ones at `toDevice`; the three counts as
 *  u32 at `counts`. */
export function collectVerdictsGso(n: u32, toVxlan: usize, toRaw: usize, toDevice: usize, counts: usize): void {
  if (n > batchMax) n = batchMax;
  let x: u32 = 0;
  let r: u32 = 0;
  let d: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v == VERDICT_TX_UNDERLAY || v == VERDICT_TX_DIRECT) {
      const p = slotBase + <usize>i * slotSize + load<u32>(m, 0);
      // VXLAN goes to the UDP sockets, over either underlay (the sender
      // tells an IPv4 outer header from an IPv6 one by the version nibble,
      // as the raw socket's I/O layer does for IP in IP).
      const ver = load<u8>(p) >> 4;
      if (v == VERDICT_TX_UNDERLAY && ((ver == 4 && load<u8>(p, 9) == 17) || (ver == 6 && load<u8>(p, 6) == 17))) {
        store<u16>(toVxlan + (<usize>x << 1), <u16>i);
        x++;
      } else {
        store<u16>(toRaw + (<usize>r << 1), <u16>i);
        r++;
      }
    } else if (v == VERDICT_TO_DEVICE || v == VERDICT_REPLY) {
      store<u16>(toDevice + (<usize>d << 1), <u16>i);
      d++;
    }
  }
  store<u32>(counts, x);
  store<u32>(counts, r, 4);
  store<u32>(counts, d, 8);
}

/** On an offloading tun every write starts with a virtio_net_hdr: give the
 *  first `n` packets whose verdict sends them to the device a zeroed one
 *  (gso_type NONE, no checksum request) in their headroom. */
export function prependVnetNone(n: u32): void {
  if (n > batchMax) n = batchMax;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v != VERDICT_TO_DEVICE && v != VERDICT_REPLY) continue;
    const off = load<u32>(m, 0) - VNET_HDR_LEN;
    memory.fill(slotBase + <usize>i * slotSize + off, 0, VNET_HDR_LEN);
    store<u32>(m, off, 0);
    store<u32>(m, load<u32>(m, 4) + VNET_HDR_LEN, 4);
  }
}

/** GRO on the way to an offloading tun: coalesce the device-bound packets
 *  (TO_DEVICE, REPLY) of the first `n` into virtio_net_hdr frames at `out`
 *  (capacity `outCap`), frame k's offset and length as two u32 at frames+8k.
 *  `flags` as groCoalesce's: GRO_TCPV6 when the tun was opened with
 *  TUN_F_TSO6 (IPv6/TCP then coalesces too), else 0.
 *  Returns the number of frames, or a negative status. The packets' own
 *  verdicts are left alone; the caller writes the frames instead of them. */
export function groDeviceBatch(n: u32, out: usize, outCap: u32, frames: usize, flags: u32): i32 {
  if (groPtrs == 0) return E_NO_MEMORY;
  if (n > batchMax) n = batchMax;
  let k: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const m = metaBase + (<usize>i << 5);
    const v = load<u16>(m, 8);
    if (v != VERDICT_TO_DEVICE && v != VERDICT_REPLY) continue;
    store<u32>(groPtrs + (<usize>k << 2), <u32>(slotBase + <usize>i * slotSize + load<u32>(m, 0)));
    store<u32>(groLens + (<usize>k << 2), load<u32>(m, 4));
    k++;
  }
  if (k == 0) return 0;
  return groCoalesce(groPtrs, groLens, k, out, outCap, frames, batchMax, flags);
}
