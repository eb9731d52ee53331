"""The one place that knows NumPy from CuPy.

Layer code is written once against ``xp``, which stands for whichever array library is active:

    from minilm.backend import xp
    y = xp.maximum(x, 0)

``xp`` forwards every attribute to the active library at call time, so ``use_backend`` takes effect
everywhere at once, including in modules that imported ``xp`` before the switch. The backend is chosen by
``MINILM_BACKEND=numpy|cupy``, read when an array is first made (not at import, so a bad value is an error
the command line can report, not a traceback from ``import minilm``), or by ``minilm.use_backend(name)``.
Arrays made before a switch stay where they were: build (or ``load_state_dict``) models after switching.

The two libraries agree on almost everything. The few places they are spelled differently live here:
``scatter_add`` (the embedding backward), ``erf`` (the exact GELU), ``uniform`` (dropout's random draws,
whose state stays on the host), ``fused`` (an element-wise formula as one GPU kernel), ``nccl`` (the GPU's
collectives, for minilm.communicator) and moving arrays to and from the host. Three more exist for NumPy's speed:
``sum_last_axis`` (short-row sums through BLAS), ``softmax_shift`` (one shift for a whole softmax), ``keep_freed_heap``.
"""

import ctypes
import functools
import math
import os
import platform
import sys

import numpy as np

from minilm.blocks import by_blocks

BACKENDS = ("numpy", "cupy")
CPU, GPU = BACKENDS  # the names other modules use, so only this file spells out the GPU library
_active = {"name": None, "lib": None}  # None until the first use reads MINILM_BACKEND (see _lib)


def _lib():
    """The active array library, choosing it from MINILM_BACKEND on first use."""
    if _active["lib"] is None:
        name = os.environ.get("MINILM_BACKEND", CPU)
        try:
            use_backend(name)
        except (ValueError, RuntimeError) as err:
            raise type(err)(f"MINILM_BACKEND={name}: {err}") from None
    return _active["lib"]


class _ArrayNamespace:
    """Looks up every attribute on the active array library (numpy or cupy) when it is used."""

    def __getattr__(self, attr):
        return getattr(_lib(), attr)

    def __repr__(self):
        return f"<minilm array namespace: {backend_name()}>"


xp = _ArrayNamespace()


def _import_cupy():
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError("CuPy requested but not installed (pip install 'minilm[gpu]' for CUDA 12, or pip install "
                           "cupy-cuda13x for CUDA 13)") from err
    try:
        n_devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken: CuPy raises its own runtime error type
        raise RuntimeError(f"CuPy is installed but cannot reach a GPU: {err}") from err
    if n_devices == 0:
        raise RuntimeError("CuPy is installed but no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    return cupy


def use_backend(name):
    """Make ``name`` ("numpy" or "cupy") the array library behind ``xp``; returns the library module."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    _active["lib"] = _import_cupy() if name == GPU else np
    _active["name"] = name
    return _active["lib"]


def backend_name():
    """The active backend: "numpy" or "cupy"."""
    _lib()
    return _active["name"]


def asarray(a, dtype=None):
    """``a`` (a list, a NumPy or a CuPy array) as an array of the active backend."""
    return _lib().asarray(a, dtype=dtype)


def to_numpy(a):
    """``a`` as a NumPy array on the host (a no-op for NumPy arrays)."""
    if backend_name() == GPU:
        return _lib().asnumpy(a)
    return np.asarray(a)


def default_rng(seed=None):
    """A seeded random Generator on the active backend, for draws wanted on the device directly.

    minilm's own layers keep their random state in a NumPy Generator on the host instead (see ``uniform``):
    a device Generator's state cannot be saved, so a run using one could not resume exactly.
    """
    return _lib().random.default_rng(seed)


_device_generators = {}  # GPU id -> the one cuRAND Philox generator ``uniform`` re-seeds on every call


def uniform(rng, shape, dtype):
    """Draws from U[0, 1) of ``shape`` and ``dtype``, on the active backend, steered by ``rng``.

    ``rng`` is a NumPy Generator on the host, and all the random state is in it: a checkpoint stores its
    state as JSON and a resume, on either backend, carries on from it. NumPy draws from ``rng`` itself. The
    GPU draws one 64-bit seed from ``rng`` and expands it on the device with Philox, a counter-based
    generator whose whole state is that seed and a counter, so re-seeding it costs nothing. The same seed
    therefore gives different (equally uniform) draws on the CPU and on the GPU.
    """
    if backend_name() == GPU:
        lib = _lib()
        device = lib.cuda.Device().id
        if device not in _device_generators:
            _device_generators[device] = lib.random.RandomState(method=lib.cuda.curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
        generator = _device_generators[device]
        # a np.uint64, not a Python int: seed() casts to uint64 with casting="safe", which refuses an int64
        generator.seed(rng.integers(2**64, dtype=np.uint64))
        return generator.random_sample(shape, dtype=dtype)
    return rng.random(shape, dtype=dtype)


def is_floating(a):
    """True for arrays of a floating-point dtype (the inputs a backward returns gradients for)."""
    return hasattr(a, "dtype") and np.issubdtype(a.dtype, np.floating)


def scatter_add(target, indices, values):
    """``target[indices[n]] += values[n]`` for every n, with repeated indices summed (in place).

    shapes: target (V, C); indices (N,) integers; values (N, C).
    As a product: target[u] += Σ_n S[u, n] values[n], with S the (U, N) one-hot matrix of the U distinct
    indices (S[u, n] = 1 where indices[n] is the u-th of them): Sᵀ's rows are the one-hot ids, so this is
    the embedding's dW = onehot(ids)ᵀ dy, touching only the rows that occur. NumPy's ``np.add.at`` does the
    same with a Python-level loop in C (1 ms at the CPU preset); here S is a SciPy sparse matrix whose rows
    are the runs of equal indices after a sort, and the product sums each run in C (50 µs, against 145 µs
    for ``np.add.reduceat`` over the sorted rows: measured, benchmarks/RESULTS.md). CuPy's ``add.at`` is an
    atomic scatter-add kernel: the order of its additions, so a float32 sum's last bits, vary between runs.
    """
    indices = indices.reshape(-1)  # (N,)
    values = values.reshape(indices.shape[0], *target.shape[1:])  # (N, C)
    if backend_name() == GPU:
        _lib().add.at(target, indices, values)
        return target
    if indices.size == 0:
        return target
    from scipy import sparse  # SciPy's own import takes ~0.1 s: paid at the first backward, not on import

    order = np.argsort(indices, kind="stable")  # (N,) each run of equal indices keeps its rows' order
    sorted_ids = indices[order]  # (N,)
    run_starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # (U,) one per distinct id
    runs = sparse.csr_array((np.ones(order.size, dtype=values.dtype), order, np.r_[run_starts, order.size]),
                            shape=(run_starts.size, order.size))  # (U, N) S: row u holds the u-th run's rows
    sums = runs @ values.reshape(order.size, -1)  # (U, C): each distinct index's rows, summed
    target[sorted_ids[run_starts]] += sums.reshape(run_starts.size, *target.shape[1:])
    return target


def fused(expression, numpy=None):
    """``expression`` compiled into one kernel on the GPU; on NumPy, ``numpy`` if given, else ``expression``.

    ``expression`` is element-wise arithmetic on arrays and Python floats, written with ``xp`` (no reductions,
    no ``out=``): the formula as a layer's docstring states it. Run operator by operator, each operator
    launches its own kernel and writes a temporary the size of its input; cupy.fuse compiles the whole
    expression into a single pass over memory. NumPy has no such compiler, so a layer may pass the same
    maths written in place over one or two buffers as ``numpy``; a parity test holds the two together, and
    ``.expression`` keeps the formula callable as the reference. On arrays that outgrow a core's cache, NumPy
    runs it block by block (minilm.blocks): one trip to memory, not one per operator, to the same bits.
    """
    kernels = {}

    @functools.wraps(expression)
    def run(*arrays):
        if backend_name() != GPU:
            return by_blocks(numpy or expression, arrays)
        if "gpu" not in kernels:  # compiled once per process, for each dtype at its first call
            kernels["gpu"] = _lib().fuse(kernel_name=expression.__name__.strip("_"))(expression)
        return kernels["gpu"](*arrays)

    run.expression, run.numpy = expression, numpy
    return run


def nccl():
    """CuPy's NCCL binding, which minilm.communicator sums gradients with; a RuntimeError if NCCL cannot load."""
    try:
        from cupy.cuda import nccl as binding
    except ImportError:  # a CuPy built without the binding
        binding = None
    if binding is None or not binding.available:  # .available: whether libnccl was found
        raise RuntimeError("the GPU backend sums gradients with NCCL, which CuPy cannot load: install NCCL for CuPy")
    return binding


def sum_last_axis(a):
    """Σ over the last axis, kept as size 1: (..., n) -> (..., 1), in the dtype of ``a``.

    A matrix-vector product with a vector of ones: NumPy's own reduction over many short rows runs a scalar
    loop per row, which BLAS beats several times over (measured: 10 µs against 70 µs on the (12, 4, 64, 64)
    attention weights, 6 µs against 35 µs on (12, 64, 128) activations). Same sum, other rounding order.
    """
    n = a.shape[-1]
    if n == 0:  # no rows to multiply: an empty sum is 0
        return a.sum(axis=-1, keepdims=True)
    row_sums = a.reshape(-1, n) @ _lib().ones(n, dtype=a.dtype)  # (N,)
    return row_sums.reshape(*a.shape[:-1], 1)  # (..., 1)


def softmax_shift(S):
    """One number to subtract from every score before softmax's exp, in place of a max per row; or None.

    Subtracting any constant from a row leaves its softmax unchanged; the row max is the usual choice, as it
    keeps every exp(s - m) ≤ 1. When all the scores lie within half the dtype's exponent range of the
    largest (44 in float32), subtracting that one largest score keeps every exp(s - max) in [√tiny, 1], so
    nothing overflows or underflows either. NumPy finds the max of a short row with a scalar loop; one max
    and one min over the whole array cost a tenth of that (measured at T = 64: 15 µs against 200 µs). On the
    GPU a max per row is one fast reduction, and reading two numbers back to the host would stall it: None.
    """
    if S.size == 0 or backend_name() == GPU:
        return None
    top, bottom = float(S.max()), float(S.min())
    return top if top - bottom <= -0.5 * math.log(np.finfo(S.dtype).tiny) else None  # NaN or inf: None


def erf(x):
    """The error function, element-wise, in the dtype of ``x`` (float32 or float64), for GELU's exact form.

    NumPy has no erf: SciPy's ufunc serves it (a runtime dependency for this reason), CuPy's own on the GPU,
    where it also compiles inside ``fused``. SciPy's float64 erf agrees with ``math.erf`` to 2 ulps; its float32
    loop is a scalar loop too, about 11 ns an element on N(0, 1) data (measured: 4.4 ms at (12, 64, 512),
    40x NumPy's SIMD ``tanh``), so the exact GELU stays several times slower than the tanh form on NumPy
    (benchmarks/RESULTS.md, issue 26); ``math.erf`` element by element, used before, was 9x slower still.
    """
    if backend_name() == GPU:
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    # imported here, not at the top of the module: scipy.special takes ~0.3 s to import
    from scipy.special import erf as scipy_erf

    return scipy_erf(x)


M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3  # glibc's mallopt parameter numbers (malloc.h)
HEAP_TOP_PAD = 64 << 20  # bytes of freed memory glibc may keep at the top of its heap
MMAP_THRESHOLD = 32 << 20  # the largest block served from the heap: glibc's own ceiling for it on 64-bit
heap_padded = False  # whether keep_freed_heap() has set the pad in this process


def keep_freed_heap():
    """Ask glibc's malloc to keep up to 64 MB of freed memory at the top of its heap (mallopt M_TOP_PAD), and
    to serve blocks up to 32 MB from that heap (M_MMAP_THRESHOLD).

    Why: a training step frees and allocates the same arrays (hundreds of KB to MBs each) every step. CuPy
    keeps freed GPU memory in a pool for the next step; glibc, under NumPy, hands freed memory at the top of
    its heap back to the OS, and the next step's arrays fault every page in again: measured 2,000 to 10,000
    page faults per step of the CPU preset, 10 to 30 % of its time on a 2-core VM. With the pad, the heap
    keeps those pages. The threshold is set with it because any mallopt freezes glibc's sliding one at its
    start, 128 KB: every larger array would then get a fresh mmap, faulted in page by page and unmapped when
    freed (measured: 110,000 faults per step at the GPU preset's shape on the CPU, against 177 with both
    set); 32 MB is where glibc's own sliding threshold stops. Nothing is done off glibc (macOS, Windows, musl)
    or when the user chose a pad or a threshold (MALLOC_TOP_PAD_, MALLOC_MMAP_THRESHOLD_, or their names in
    GLIBC_TUNABLES): their setting stands. Returns True if set. Opt-in, never on import: it changes malloc for
    the whole process, which a library must not do to the program that imports it. The `minilm` command and
    the benchmarks own their process and call it first, as may your script: ``minilm.backend.keep_freed_heap()``.
    """
    global heap_padded
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if {"MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"} & set(os.environ) or "top_pad" in tunables \
            or "mmap_threshold" in tunables:
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    heap_padded = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TOP_PAD, HEAP_TOP_PAD) == 1
    return heap_padded


def device_memory_bytes():
    """Total memory of the device arrays live on: the GPU's own, or the host's RAM for NumPy."""
    if backend_name() == GPU:
        return int(_lib().cuda.Device().mem_info[1])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
