// Linear-memory regions, carved once and never freed or moved.
//
// The data path only ever touches memory inside these regions, through raw
// pointers, so it allocates nothing per packet. Regions are carved by
// set-up calls only, never by a batch: init() carves the slots, metadata,
// counters, route and hash tables and every stage's scratch; ctSetup and
// svcSetup (NAT, at start) and allocScratch (the I/O layer's buffers, at
// start) carve theirs after it. A region never moves, so the TypeScript side
// keeps its addresses (and native pointers for recvmmsg/sendmmsg) for the
// life of the instance; memory may grow during those set-up calls, so its
// typed views are renewed when memory.buffer changes (src/dataplane/).

/** Next free byte for region carving; starts past the static data. */
let brk: usize = 0;

/** Reserve `bytes` zero-filled bytes aligned to `align` (a power of two).
 *  Grows memory when needed. Returns 0 when memory cannot grow. Only called
 *  from init paths, never from the data path. */
export function carve(bytes: usize, align: usize = 64): usize {
  if (brk == 0) brk = (__heap_base + 63) & ~<usize>63;
  const start = (brk + align - 1) & ~(align - 1);
  const end = start + bytes;
  const have = <usize>memory.size() << 16;
  if (end > have) {
    const pages = <i32>((end - have + 0xffff) >> 16);
    if (memory.grow(pages) < 0) return 0;
  }
  // Memory past the static data starts zeroed and regions never overlap,
  // so this only makes "zero-filled" independent of how the module was
  // instantiated; it costs at set-up, never per packet.
  memory.fill(start, 0, bytes);
  brk = end;
  return start;
}

/** Highest address handed out so far. */
export function regionsEnd(): usize {
  return brk;
}
