// Linear-memory regions, carved once at init and never freed or moved.
//
// The data path only ever touches memory inside these regions, through raw
// pointers, so it allocates nothing per packet. The TypeScript side learns the
// addresses through exported getters and, because WASM memory never grows
// after init(), may keep views (and native pointers for recvmmsg/sendmmsg)
// over them for the life of the instance.

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
  // Fresh pages from memory.grow are zero, but a region may reuse memory
  // below the previous top after a reset; clear it either way.
  memory.fill(start, 0, bytes);
  brk = end;
  return start;
}

/** Forget every region (used by init() when called again). */
export function resetRegions(): void {
  brk = 0;
}

/** Highest address handed out so far. */
export function regionsEnd(): usize {
  return brk;
}
