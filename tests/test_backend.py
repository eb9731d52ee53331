import math
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest

import minilm
from minilm import backend
from minilm.backend import asarray, to_numpy

PACKAGE = pathlib.Path(minilm.__file__).parent


@pytest.fixture
def restore_backend():
    name = backend.backend_name()
    yield
    backend.use_backend(name)


def test_cupy_missing_is_a_clear_error(monkeypatch, restore_backend):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(RuntimeError, match=r"CuPy requested but not installed \(pip install 'minilm\[gpu\]'"):
        minilm.use_backend("cupy")
    assert backend.backend_name() == "numpy" or backend.backend_name() == "cupy"  # unchanged by the failure


def test_unknown_backend_is_named(restore_backend):
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        minilm.use_backend("jax")


@pytest.mark.parametrize("value, expected", [("numpy", "numpy"), ("tpu", "unknown backend 'tpu'")])
def test_environment_variable_selects_backend(value, expected):
    run = subprocess.run([sys.executable, "-c", "import minilm; print(minilm.backend_name())"],
                         env={"MINILM_BACKEND": value, "PATH": ""}, capture_output=True, text=True)
    assert expected in run.stdout + run.stderr


def test_xp_follows_the_active_backend():
    assert backend.xp.zeros is backend._active["lib"].zeros
    assert type(asarray([1.0, 2.0])) is type(backend.xp.zeros(2))


def test_to_numpy_round_trip():
    a = np.arange(6.0).reshape(2, 3)
    back = to_numpy(asarray(a))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)


def test_default_rng_is_reproducible():
    a = to_numpy(backend.default_rng(7).random(5))
    b = to_numpy(backend.default_rng(7).random(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_is_steered_by_a_host_generator(dtype):
    draws = backend.uniform(np.random.default_rng(5), (3, 400), dtype)
    assert draws.shape == (3, 400) and draws.dtype == dtype
    values = to_numpy(draws)
    assert values.min() >= 0.0 and values.max() < 1.0 and abs(values.mean() - 0.5) < 0.05  # σ of the mean: 0.008
    np.testing.assert_array_equal(to_numpy(backend.uniform(np.random.default_rng(5), (3, 400), dtype)), values)
    rng = np.random.default_rng(5)
    backend.uniform(rng, (3, 400), dtype)
    assert (to_numpy(backend.uniform(rng, (3, 400), dtype)) != values).any()  # the host Generator moved on
    if backend.backend_name() == backend.CPU:  # NumPy draws from the Generator itself
        np.testing.assert_array_equal(values, np.random.default_rng(5).random((3, 400), dtype=dtype))


@pytest.mark.parametrize("ids", [[3, 1, 3, 3, 0], [2, 2, 2, 2, 2], [4, 0, 1, 2, 3]])
def test_scatter_add_sums_repeated_indices(ids):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((len(ids), 3))
    expected = np.zeros((5, 3))
    np.add.at(expected, np.array(ids), values)
    target = asarray(np.zeros((5, 3)))
    backend.scatter_add(target, asarray(np.array(ids)), asarray(values))
    np.testing.assert_allclose(to_numpy(target), expected, rtol=1e-14)


@pytest.mark.parametrize("row_shape", [(), (3,), (2, 3)])
def test_scatter_add_matches_add_at_for_any_row_shape_and_a_corpus_sized_batch(row_shape):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 65, 768)  # the CPU preset's B·T ids over a character vocabulary: every id repeats
    values = rng.standard_normal((768, *row_shape))
    expected = rng.standard_normal((70, *row_shape))  # rows 65..69 never occur and must keep their values
    target = asarray(expected.copy())
    np.add.at(expected, ids, values)
    backend.scatter_add(target, asarray(ids), asarray(values))
    np.testing.assert_allclose(to_numpy(target), expected, rtol=1e-12, atol=1e-12)


def test_scatter_add_with_no_indices_changes_nothing():
    target = asarray(np.ones((4, 2)))
    backend.scatter_add(target, asarray(np.zeros(0, dtype=np.int64)), asarray(np.zeros((0, 2))))
    np.testing.assert_array_equal(to_numpy(target), np.ones((4, 2)))


def erf_grid(dtype):
    """A fine grid over erf's bend, 0 of both signs, the smallest normal numbers, and far tails up to the
    largest finite value and ±inf, where erf is ±1 exactly (it rounds to ±1 in float64 from |x| ≈ 5.93)."""
    info = np.finfo(dtype)
    edges = [0.0, -0.0, info.tiny, -info.tiny, 1e-30, -1e-8, 0.5, 0.8862, 3.0, -5.9, 6.0, -26.0, 27.0, 1e10,
             -1e30, info.max, -info.max, np.inf, -np.inf]
    return np.concatenate([np.linspace(-7, 7, 14_001), edges]).astype(dtype)  # step 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_erf_matches_math_erf(dtype):
    x = erf_grid(dtype)
    got = to_numpy(backend.erf(asarray(x)))
    assert got.dtype == dtype
    expected = np.array([math.erf(v) for v in x.astype(np.float64)])  # each float32 input exactly, in double
    if dtype == np.float64:
        # SciPy's erf and libm's differ by at most 2 ulps (4.3e-16 relative, measured on a 1e-4 grid; CUDA's
        # erf is documented to 2 ulps): a few ulps allowed, no absolute slack, so 0 must be 0 (with its sign)
        # and the tails exactly ±1
        np.testing.assert_allclose(got, expected, rtol=1e-15, atol=0)
        assert (np.signbit(got) == np.signbit(expected)).all()
    else:  # SciPy rounds erf's double value once (half an ulp, 6e-8); CUDA's erff is documented to 2 ulps
        np.testing.assert_allclose(got, expected, rtol=3e-7, atol=0)


def test_scipy_is_a_runtime_dependency():
    """erf comes from SciPy on NumPy (issue 26: math.erf per element made the exact GELU 9x slower again), so
    an install must bring it: pyproject's dependencies name it, and it is not in an optional extra only."""
    text = (pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text()
    dependencies = next(line for line in text.splitlines() if line.startswith("dependencies = "))
    assert '"scipy>=' in dependencies


def test_only_backend_names_cupy():
    mentions = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                if "cupy" in p.read_text().lower() and p.name != "backend.py"]
    assert mentions == []


def test_package_imports_without_torch():
    """Layers, models and optimisers never import torch: only minilm.verify.reference may, and only when asked."""
    code = (
        "import sys, pkgutil, importlib; sys.modules['torch'] = None; import minilm\n"
        "names = [m.name for m in pkgutil.walk_packages(minilm.__path__, 'minilm.')]\n"
        "for name in names:\n"
        "    if not name.startswith('minilm.verify.reference') and not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "print(len(names))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) >= 3


@pytest.mark.parametrize("shape", [(3, 4, 7), (5,), (2, 0), (1, 1)])
def test_sum_last_axis_equals_numpy_sum(shape):
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = to_numpy(backend.sum_last_axis(asarray(a)))
    assert got.shape == (*shape[:-1], 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, a.sum(axis=-1, keepdims=True), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("env, expected", [({}, "True"), ({"MALLOC_TOP_PAD_": "0"}, "False"),
                                           ({"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}, "False")])
def test_the_heap_pad_leaves_a_users_own_setting_alone(env, expected):
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    code = "from minilm.backend import keep_freed_heap; print(keep_freed_heap())"
    run = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": ""}, capture_output=True, text=True)
    assert run.stdout.strip() == expected, run.stderr


FAULTS_PER_STEP = """
import ctypes, resource, sys
import numpy as np
import minilm.backend as b
if sys.argv[1] == "keep_freed_heap":
    assert b.keep_freed_heap()
else:  # the pad alone, as keep_freed_heap set it before the threshold was pinned too
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    assert mallopt(b.M_TOP_PAD, b.HEAP_TOP_PAD) == 1

def step():  # three 4 MB arrays made and freed, as a layer's forward and backward make theirs
    a = np.ones((1024, 1024), np.float32)
    c = a + 1
    return float((c * a)[0, 0])

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def test_the_kept_heap_serves_multi_megabyte_arrays_without_faulting_their_pages_in_again():
    """A mallopt freezes glibc's mmap threshold at 128 KB: with the pad alone, every 4 MB array was a fresh
    mmap whose ~1,000 pages faulted in on each step. keep_freed_heap pins the threshold at 32 MB with the pad."""
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        assert not backend.keep_freed_heap()  # nothing to set off glibc
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    faults = {}
    for how in ("pad alone", "keep_freed_heap"):
        run = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, how], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        faults[how] = float(run.stdout)
    assert faults["keep_freed_heap"] < 10 and faults["pad alone"] > 500, faults


def test_importing_minilm_leaves_malloc_alone_and_the_command_opts_in():
    """mallopt changes the whole process: a library import must not do it, the `minilm` command (which owns its
    process) does."""
    code = ("import minilm, minilm.backend as b, minilm.training.trainer; print(b.heap_padded); "
            "from minilm.cli import main; main(['check', 'Softmax']); print(b.heap_padded)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = run.stdout.split()
    assert lines[0] == "False", run.stderr
    assert lines[-1] == str(sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"), run.stderr
