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


# --- padding_idx (torch's): a row that starts at 0 and is never trained -----------------------------------------

PAD = 4


def test_padding_row_starts_at_zero_and_the_rest_of_the_table_is_unchanged():
    plain, padded = Embedding(V, C, rng=0), Embedding(V, C, padding_idx=PAD, rng=0)
    table, expected = to_numpy(padded.weight.data), to_numpy(plain.weight.data)
    assert not table[PAD].any()
    np.testing.assert_array_equal(np.delete(table, PAD, axis=0), np.delete(expected, PAD, axis=0))  # same draws


def test_padding_row_gets_zero_gradient_and_every_other_row_the_usual_one():
    rng = np.random.default_rng(10)
    plain, padded = Embedding(V, C, rng=0).to("float64"), Embedding(V, C, padding_idx=PAD, rng=0).to("float64")
    ids = asarray(np.array([[PAD, 1, PAD], [3, PAD, 1]]))  # the padding id three times, among others
    dy = randn(rng, 2, 3, C)
    for layer in (plain, padded):
        layer(ids)
        layer.backward(dy)
    grad, expected = to_numpy(padded.weight.grad), to_numpy(plain.weight.grad)
    assert not grad[PAD].any() and expected[PAD].any()
    np.testing.assert_array_equal(np.delete(grad, PAD, axis=0), np.delete(expected, PAD, axis=0))


def test_padding_idx_is_the_derivative_wherever_the_padding_id_is_absent():
    """By rule the pad row's gradient is 0, which is the derivative only when the id is not looked up; then
    finite differences agree everywhere (with it looked up they disagree on that row, by design)."""
    rng = np.random.default_rng(11)
    layer = Embedding(V, C, padding_idx=PAD, rng=rng)
    assert_gradcheck(layer, asarray(np.array([[0, 1, 6], [6, 2, 0]])))
    report = check_module(layer, asarray(np.array([[0, PAD, 6], [PAD, 2, 0]])))
    assert report.errors["weight"] > 0.1  # the pad row's lookup is real, its gradient zero by rule


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_padding_idx_matches_torch(dtype):
    rng = np.random.default_rng(12)
    layer = Embedding(V, C, padding_idx=PAD, rng=rng)
    ids = asarray(np.array([[PAD, 3, PAD, 6], [2, PAD, PAD, PAD], [5, 1, 0, 3]]))  # (3, 4), the pad id six times
    pairs = assert_matches_torch(layer, ids, dtype=dtype)
    assert not pairs["dweight"][0][PAD].any() and not pairs["dweight"][1][PAD].any()


def test_a_loaded_nonzero_padding_row_is_used_and_never_trained_as_in_torch():
    rng = np.random.default_rng(13)
    layer = Embedding(V, C, padding_idx=PAD, rng=rng).to("float64")
    layer.weight.data[PAD] = asarray(rng.standard_normal(C))  # a checkpoint may hold any row there
    pairs = assert_matches_torch(layer, asarray(np.array([[PAD, 1], [PAD, PAD]])), dtype="float64")
    np.testing.assert_array_equal(pairs["out"][0][0, 0], to_numpy(layer.weight.data)[PAD])
    assert not pairs["dweight"][0][PAD].any()


@given(lead=st.lists(st.integers(1, 4), min_size=1, max_size=3), vocab=st.integers(1, 9), dim=st.integers(1, 9),
       pad=st.integers(0, 8), seed=st.integers(0, 2**16))
def test_padding_idx_matches_torch_any_shape(lead, vocab, dim, pad, seed):
    rng = np.random.default_rng(seed)
    layer = Embedding(vocab, dim, padding_idx=pad % vocab, rng=rng)
    pairs = assert_matches_torch(layer, token_ids(rng, *lead, vocab=vocab), dtype="float64")
    assert not pairs["dweight"][0][pad % vocab].any()


@pytest.mark.parametrize("bad", [7, 70, -1])
def test_padding_idx_out_of_range_is_named(bad):
    # torch would count -1 from the end; minilm refuses it rather than guess
    with pytest.raises(ValueError, match=f"padding_idx {bad} out of range for num_embeddings 7"):
        Embedding(V, C, padding_idx=bad)
