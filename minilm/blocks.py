"""An element-wise kernel over cache-sized blocks: how NumPy gets near a fused kernel's one pass over memory.

    kernel(x, dy)  =  concat over blocks b of  kernel(x[b], dy[b])       (element-wise: each block on its own)

A kernel of k NumPy operators over arrays of tens of MB makes k trips to memory, one per operator and its
temporary. Run over 1 MB blocks instead, each operator's temporary is still in the caches when the next one
reads it, so the whole kernel makes about one trip, as the compiled kernel on the GPU does. Each element's
arithmetic is unchanged, so the result is the same to the bit. Arrays of up to 4 blocks are in the caches
already and go through whole, as do operands of different shapes (a broadcast) or strided views. Measured on
GELU's forward + backward at (32, 256, 1536) float32: 46 ms against 81, and 44 against 128 with a second
thread doing the same beside it (benchmarks/RESULTS.md, issue 29). minilm.backend.fused calls it.
"""

import numpy as np

BLOCK_BYTES = 1 << 20  # of the first operand, per call of the kernel: 1 MB, a Zen 4 or Skylake core's L2


def by_blocks(kernel, arrays):
    """``kernel(*arrays)`` for an element-wise ``kernel`` on NumPy arrays, BLOCK_BYTES of the first at a time."""
    first = arrays[0]
    whole = first.nbytes <= 4 * BLOCK_BYTES or any(a.shape != first.shape or not a.flags.c_contiguous for a in arrays)
    if whole:
        return kernel(*arrays)
    flat = [a.reshape(-1) for a in arrays]  # views: every array is contiguous
    size = BLOCK_BYTES // first.itemsize
    out = None
    for start in range(0, first.size, size):
        block = kernel(*(a[start:start + size] for a in flat))
        if out is None:  # the result's dtype is the kernel's to decide
            out = np.empty(first.size, dtype=block.dtype)
        out[start:start + size] = block
    return out.reshape(first.shape)
