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

/** Where the next free byte for region carving is kept: a cell below the
 *  static data (asconfig.json's memoryBase keeps [0, 1024) out of every
 *  data segment), so it lives in memory, not in an instance's globals. In
 *  the threads build every instance on one shared memory carves from the
 *  same cell, advanced atomically: regions of different instances (workers
 *  sharing a connection table) never overlap. Zero means "not started":
 *  the first carve starts past the static data. */
const BRK_CELL: usize = 64;

@inline function heapStart(): usize {
  return (__heap_base + 63) & ~<usize>63;
}

/** Move the cell from `cur` to `end`; returns what it held (== cur: moved). */
@inline function advanceBrk(cur: usize, end: usize): usize {
  if (ASC_FEATURE_THREADS) return atomic.cmpxchg<usize>(BRK_CELL, cur, end);
  store<usize>(BRK_CELL, end);
  return cur;
}

/** Reserve `bytes` zero-filled bytes aligned to `align` (a power of two).
 *  Grows memory when needed. Returns 0 when memory cannot grow. Only called
 *  from init paths, never from the data path. */
export function carve(bytes: usize, align: usize = 64): usize {
  let cur: usize = ASC_FEATURE_THREADS ? atomic.load<usize>(BRK_CELL) : load<usize>(BRK_CELL);
  let start: usize, end: usize;
  for (;;) {
    const base = cur == 0 ? heapStart() : cur;
    start = (base + align - 1) & ~(align - 1);
    end = start + bytes;
    // Grown before the cell moves: an instance that sees the new end finds the memory there.
    const have = <usize>memory.size() << 16;
    if (end > have) {
      const pages = <i32>((end - have + 0xffff) >> 16);
      // Another instance may have grown it meanwhile: only a failure with the memory still short is one.
      if (memory.grow(pages) < 0 && end > (<usize>memory.size() << 16)) return 0;
    }
    const seen = advanceBrk(cur, end);
    if (seen == cur) break;
    cur = seen; // another instance carved first: try again past its region
  }
  // Memory past the static data starts zeroed and regions never overlap,
  // so this only makes "zero-filled" independent of how the module was
  // instantiated; it costs at set-up, never per packet.
  memory.fill(start, 0, bytes);
  return start;
}

/** Highest address handed out so far (by any instance on this memory). */
export function regionsEnd(): usize {
  const b: usize = ASC_FEATURE_THREADS ? atomic.load<usize>(BRK_CELL) : load<usize>(BRK_CELL);
  return b == 0 ? heapStart() : b;
}
