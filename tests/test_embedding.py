import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.backend import asarray, xp
from minilm.verify.gradcheck import check_module
from minilm.nn.embedding import Embedding
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, V, C = 2, 3, 7, 5  # all different, so a transposed gradient cannot hide behind a square shape


def token_ids(rng, *shape, vocab=V, dtype=np.int64):
    return asarray(rng.integers(0, vocab, size=shape).astype(dtype))


def test_gradcheck():
    rng = np.random.default_rng(0)
    layer = Embedding(V, C, rng=rng)
    report = assert_gradcheck(layer, token_ids(rng, B, T))
    assert set(report.errors) == {"weight"}  # the ids are integers: only W has a gradient


def test_gradcheck_with_repeated_ids():
    rng = np.random.default_rng(1)
    layer = Embedding(V, C, rng=rng)
    ids = asarray(np.array([[1, 4, 1, 1], [4, 0, 1, 6]]))  # id 1 four times, id 4 twice, most ids unused
    assert_gradcheck(layer, ids)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_torch(dtype):
    rng = np.random.default_rng(2)
    layer = Embedding(V, C, rng=rng)
    ids = asarray(np.array([[0, 3, 3, 6], [2, 6, 6, 6], [5, 1, 0, 3]]))  # (3, 4) with repeats
    assert_matches_torch(layer, ids, dtype=dtype)


@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       vocab=st.integers(1, 9), dim=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(lead, vocab, dim, seed):
    # lead = [] is a single 0-d id; [1] a batch of one T = 1; up to three leading axes
    rng = np.random.default_rng(seed)
    layer = Embedding(vocab, dim, rng=rng)
    ids = token_ids(rng, *lead, vocab=vocab)
    pairs = assert_matches_torch(layer, ids, dtype="float64")
    assert pairs["out"][0].shape == (*lead, dim)


def test_gradient_equals_dense_one_hot_reference():
    rng = np.random.default_rng(3)
    layer = Embedding(V, C, rng=rng).to("float64")
    ids, dy = token_ids(rng, B, T, 4), randn(rng, B, T, 4, C)
    y = layer(ids)
    assert layer.backward(dy) is None  # ids have no gradient
    onehot = np.eye(V)[to_numpy(ids).reshape(-1)]  # (B*T*4, V)
    np.testing.assert_allclose(to_numpy(y).reshape(-1, C), onehot @ to_numpy(layer.weight.data),
                               rtol=TORCH["float64"]["rtol"])
    dW_dense = onehot.T @ to_numpy(dy).reshape(-1, C)  # (V, C): y = onehot @ W, so dW = onehotᵀ dy
    np.testing.assert_allclose(to_numpy(layer.weight.grad), dW_dense,
                               rtol=TORCH["float64"]["rtol"], atol=TORCH["float64"]["atol"])


def test_repeated_ids_sum_their_gradients():
    rng = np.random.default_rng(4)
    layer = Embedding(V, C, rng=rng).to("float64")
    ids = asarray(np.full((B, T), 2))  # every position the same id
    dy = randn(rng, B, T, C)
    layer(ids)
    layer.backward(dy)
    grad = to_numpy(layer.weight.grad)
    np.testing.assert_allclose(grad[2], to_numpy(dy).sum(axis=(0, 1)), rtol=TORCH["float64"]["rtol"])
    assert not np.delete(grad, 2, axis=0).any()  # rows never looked up get exactly zero


class FancyIndexEmbedding(Embedding):
    """A planted bug: ``dW[ids] += dy`` keeps one update per repeated id instead of their sum."""

    def backward(self, dy):
        dW = xp.zeros_like(self.weight.data)
        dW[self.ids] += dy
        self.weight.accumulate(dW)


def test_planted_fancy_index_backward_is_caught():
    rng = np.random.default_rng(5)
    layer = FancyIndexEmbedding(V, C, rng=rng)
    report = check_module(layer, asarray(np.array([[1, 1, 3], [1, 3, 0]])))
    assert report.errors["weight"] > 0.1 and not report.passed(GRADCHECK["smooth"])


def test_gradients_accumulate_across_backward_calls():
    # a tied embedding (wte and lm_head share W) relies on backward adding, not overwriting
    rng = np.random.default_rng(6)
    layer = Embedding(V, C, rng=rng).to("float64")
    ids, dy = token_ids(rng, B, T), randn(rng, B, T, C)
    layer(ids)
    layer.backward(dy)
    once = to_numpy(layer.weight.grad).copy()
    layer(ids)
    layer.backward(dy)
    np.testing.assert_allclose(to_numpy(layer.weight.grad), 2 * once, rtol=TORCH["float64"]["rtol"])


def test_init_is_standard_normal_and_seeded():
    layer = Embedding(1000, 64, rng=0)
    w = to_numpy(layer.weight.data).astype(np.float64)
    # 64,000 draws: the sample mean has std 1/253 and the sample std about 1/358; allow 6 of each
    assert abs(w.mean()) < 6 / np.sqrt(w.size)
    assert abs(w.std() - 1.0) < 6 / np.sqrt(2 * w.size)
    np.testing.assert_array_equal(w, to_numpy(Embedding(1000, 64, rng=0).weight.data))


def test_int32_ids_and_host_lists_work():
    rng = np.random.default_rng(7)
    layer = Embedding(V, C, rng=rng)
    ids = rng.integers(0, V, size=(B, T))
    expected = to_numpy(layer(asarray(ids)))
    np.testing.assert_array_equal(to_numpy(layer(asarray(ids.astype(np.int32)))), expected)
    np.testing.assert_array_equal(to_numpy(layer(ids.tolist())), expected)


@pytest.mark.parametrize("bad, first", [([[3, 70], [-2, 80]], 70), ([[0, -1, 65]], -1), ([[65]], 65)])
def test_out_of_range_id_is_named(bad, first):
    layer = Embedding(65, C)
    with pytest.raises(ValueError, match=f"token id {first} out of range for vocab_size 65"):
        layer(asarray(np.array(bad)))


@pytest.mark.parametrize("dtype", ["float32", "float64", "bool"])
def test_non_integer_ids_are_a_type_error(dtype):
    layer = Embedding(V, C)
    with pytest.raises(TypeError, match=f"integer token ids, got dtype {dtype}"):
        layer(asarray(np.zeros((B, T), dtype=dtype)))


def test_wrong_gradient_shape_is_named():
    layer = Embedding(V, C)
    layer(token_ids(np.random.default_rng(8), B, T))
    with pytest.raises(ValueError, match=r"expected a gradient of shape \(2, 3, 5\), got \(2, 3, 4\)"):
        layer.backward(randn(np.random.default_rng(8), B, T, C - 1))


def test_computes_in_float32_by_default():
    layer = Embedding(V, C)
    y = layer(token_ids(np.random.default_rng(9), B, T))
    layer.backward(randn(np.random.default_rng(9), B, T, C, dtype=np.float32))
    assert layer.weight.data.dtype == np.float32 and y.dtype == np.float32
    assert layer.weight.grad.dtype == np.float32
