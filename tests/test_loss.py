import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.verify import reference
from minilm.backend import asarray
from minilm.verify.gradcheck import check_module
from minilm.nn.loss import CrossEntropyLoss
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, V = 2, 3, 7  # all different: a gradient summed or scattered along the wrong axis cannot hide
IGNORE = -100
# The loss is one scalar L ~ log V, so its rounding (~1e-16 · L) divided by 2h lands on every coordinate's
# difference quotient, while the true coordinates are small: p_j / N for the wrong classes. At the default
# h = 1e-6 that rounding (~1e-10) exceeds 1e-6 of any p_j / N below ~1e-4, which modest logits over a
# couple of dozen positions already reach. h = 1e-4 makes the rounding 100x smaller and costs nothing in
# truncation: every derivative of p_j is proportional to p_j, so the O(h²) term is ≤ h²/6 ≈ 2e-9 *relative*.
# (Measured over 300 random shapes with logits of unit scale: worst 1e-6 at h = 1e-6, 2e-8 at h = 1e-4.)
CE_H = 1e-4


def make_targets(rng, shape, vocab, ignore_frac=0.3, ignore_index=IGNORE):
    """Class ids in [0, vocab) with about ``ignore_frac`` of them set to ignore_index; the first is kept."""
    targets = np.asarray(rng.integers(0, vocab, size=shape))
    drop = np.asarray(rng.random(shape) < ignore_frac)
    drop.reshape(-1)[:1] = False  # at least one counted target, or torch's mean is 0 / 0 = NaN
    targets[drop] = ignore_index
    return asarray(targets)


def loss_float64(logits, targets, ignore_index=IGNORE):
    """The loss written out on the host in float64: mean over counted positions of -log softmax[target]."""
    x = np.asarray(to_numpy(logits), dtype=np.float64).reshape(-1, np.shape(logits)[-1])
    t = to_numpy(targets).reshape(-1)
    keep = t != ignore_index
    x, t = x[keep], t[keep]
    logp = x - x.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(t)), t].mean()


def test_gradcheck():
    rng = np.random.default_rng(0)
    targets = to_numpy(make_targets(rng, (B, T), V, ignore_frac=0.0)).copy()
    targets[1, 0] = IGNORE  # one ignored position: its gradient must be exactly 0, and the mean skip it
    report = assert_gradcheck(CrossEntropyLoss(), randn(rng, B, T, V, scale=2.0), asarray(targets), h=CE_H)
    assert set(report.errors) == {"logits"}  # the integer targets have no gradient to check


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ignore_index", [IGNORE, 0])  # 0: a padding id that is also a class
def test_matches_torch(dtype, ignore_index):
    rng = np.random.default_rng(1)
    targets = make_targets(rng, (B, T), V, ignore_index=ignore_index)
    assert_matches_torch(CrossEntropyLoss(ignore_index), randn(rng, B, T, V, scale=2.0), targets, dtype=dtype)


def one_percent_off(loss_fn):
    """The same loss with its backward scaled by 1.01: an example on which this passes checks nothing."""
    backward = loss_fn.backward
    loss_fn.backward = lambda dloss=1.0: 1.01 * backward(dloss)
    return loss_fn


# v ≥ 2: with one class the loss is log 1 = 0 whatever the logits, its gradient is exactly 0, and any
# backward that returns a multiple of the right one (zero) passes; the last assert shows no example is vacuous
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3), v=st.integers(2, 9),
       ignore_frac=st.sampled_from([0.0, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_any_shape(lead, v, ignore_frac, seed):
    rng = np.random.default_rng(seed)
    logits = randn(rng, *lead, v)  # unit scale: up to 27 positions make p_j / N small (see CE_H)
    targets = make_targets(rng, tuple(lead), v, ignore_frac)
    assert_gradcheck(CrossEntropyLoss(), logits, targets, h=CE_H)
    assert_matches_torch(CrossEntropyLoss(), logits, targets, dtype="float64")
    assert not check_module(one_percent_off(CrossEntropyLoss()), logits, targets, h=CE_H).passed(GRADCHECK["smooth"])


def test_one_class_is_a_vacuous_check():
    # why test_any_shape draws v ≥ 2: at v = 1 a backward 1% off passes, as would any multiple of zero
    rng = np.random.default_rng(14)
    logits, targets = randn(rng, B, T, 1), make_targets(rng, (B, T), 1)
    assert check_module(one_percent_off(CrossEntropyLoss()), logits, targets, h=CE_H).max_error == 0.0


def test_uniform_logits_give_log_vocab_and_a_known_gradient():
    logits, targets = asarray(np.zeros((B, T, V))), asarray(np.arange(B * T).reshape(B, T) % V)
    loss_fn = CrossEntropyLoss()
    np.testing.assert_allclose(float(loss_fn(logits, targets)), np.log(V), rtol=1e-15)
    onehot = np.eye(V)[to_numpy(targets)]
    np.testing.assert_allclose(to_numpy(loss_fn.backward()), (1 / V - onehot) / (B * T), rtol=1e-14)


def test_output_is_a_0d_array_and_gradients_keep_the_dtype():
    rng = np.random.default_rng(2)
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(randn(rng, B, T, V, dtype=np.float32), make_targets(rng, (B, T), V))
    dlogits = loss_fn.backward(asarray(np.array(1.0)))  # a float64 0-d dloss must not promote
    assert loss.shape == () and loss.dtype == np.float32 and dlogits.dtype == np.float32
    # each counted row of p - onehot sums to zero: probability mass only moves between classes
    np.testing.assert_allclose(to_numpy(dlogits).sum(axis=-1), 0.0, atol=1e-7)


def test_backward_scales_with_dloss():
    rng = np.random.default_rng(3)
    loss_fn = CrossEntropyLoss()
    loss_fn(randn(rng, B, T, V), make_targets(rng, (B, T), V))
    np.testing.assert_allclose(to_numpy(loss_fn.backward(2.5)), 2.5 * to_numpy(loss_fn.backward()), rtol=1e-15)


def test_float32_logits_of_1e4_stay_finite_and_correct():
    rng = np.random.default_rng(4)
    logits = randn(rng, B, T, V, dtype=np.float32, scale=1e4)
    targets = make_targets(rng, (B, T), V)
    loss_fn = CrossEntropyLoss()
    loss = float(loss_fn(logits, targets))
    dlogits = to_numpy(loss_fn.backward())
    assert np.isfinite(loss) and np.isfinite(dlogits).all() and loss > 1e3  # wrong guesses cost ~1e4 nats
    np.testing.assert_allclose(loss, loss_float64(logits, targets), rtol=TORCH["float32"]["rtol"])
    assert_matches_torch(CrossEntropyLoss(), logits, targets, dtype="float32")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_most_targets_ignored(dtype):
    rng = np.random.default_rng(5)
    targets = np.full((4, 8), IGNORE)
    targets[1, 5], targets[3, 0] = 2, 6  # 2 counted positions out of 32
    targets = asarray(targets)
    logits = randn(rng, 4, 8, V, scale=2.0)
    pairs = assert_matches_torch(CrossEntropyLoss(), logits, targets, dtype=dtype)
    np.testing.assert_allclose(pairs["out"][0], loss_float64(logits, targets), rtol=TORCH[dtype]["rtol"])
    dlogits = pairs["dinput0"][0]
    ignored = to_numpy(targets) == IGNORE
    assert (dlogits[ignored] == 0).all()  # exactly, not nearly
    assert (dlogits[~ignored] != 0).all()


def test_all_targets_ignored_is_no_targets_no_loss():
    rng = np.random.default_rng(6)
    logits = randn(rng, B, T, V, dtype=np.float32)
    targets = asarray(np.full((B, T), IGNORE))
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(logits, targets)
    dlogits = loss_fn.backward()
    assert loss.shape == () and loss.dtype == np.float32 and float(loss) == 0.0
    assert dlogits.shape == (B, T, V) and dlogits.dtype == np.float32
    np.testing.assert_array_equal(to_numpy(dlogits), 0.0)
    # the gradient check agrees: the loss is the constant 0, so its true gradient is 0 everywhere
    assert_gradcheck(CrossEntropyLoss(), logits, targets)
    # torch's mean is 0 / 0 here: this is the one place we differ from it, on purpose
    assert torch.isnan(reference.CrossEntropyTwin(IGNORE)(reference.to_torch(logits), reference.to_torch(targets)))


def test_ignored_rows_of_minus_inf_logits_do_not_make_nan():
    # a padded position whose logits were fully masked: log-softmax is NaN there, but it is not counted
    logits = np.random.default_rng(7).standard_normal((B, T, V))
    logits[0, 2] = -np.inf
    targets = to_numpy(make_targets(np.random.default_rng(8), (B, T), V, ignore_frac=0.0)).copy()
    targets[0, 2] = IGNORE
    loss_fn = CrossEntropyLoss()
    with np.errstate(invalid="ignore"):  # -inf - (-inf) inside log-softmax, on that ignored row only
        loss = float(loss_fn(asarray(logits), asarray(targets)))
    dlogits = to_numpy(loss_fn.backward())
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    np.testing.assert_array_equal(dlogits[0, 2], 0.0)
    np.testing.assert_allclose(loss, loss_float64(logits, targets), rtol=1e-14)


# --- bad input ---------------------------------------------------------------------------------------------

def test_target_out_of_range_is_named():
    logits = randn(np.random.default_rng(9), B, T, 65)
    targets = np.zeros((B, T), dtype=np.int64)
    targets[1, 2] = 70
    with pytest.raises(ValueError, match="target 70 out of range for 65 classes"):
        CrossEntropyLoss()(logits, asarray(targets))
    targets[1, 2] = -1  # negative and not the ignore_index
    with pytest.raises(ValueError, match="target -1 out of range for 65 classes"):
        CrossEntropyLoss()(logits, asarray(targets))


def test_target_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=re.escape("targets shape (2, 4) does not match logits shape (2, 3, 7)")):
        CrossEntropyLoss()(randn(np.random.default_rng(10), B, T, V), asarray(np.zeros((2, 4), dtype=np.int64)))


def test_float_targets_are_refused():
    with pytest.raises(TypeError, match="targets must be integer class ids, got dtype float64"):
        CrossEntropyLoss()(randn(np.random.default_rng(11), B, T, V), asarray(np.zeros((B, T))))


def test_integer_logits_are_refused():
    with pytest.raises(TypeError, match="logits must be floating-point, got dtype int64"):
        CrossEntropyLoss()(asarray(np.zeros((B, T, V), dtype=np.int64)), asarray(np.zeros((B, T), dtype=np.int64)))


def test_non_scalar_dloss_is_refused():
    loss_fn = CrossEntropyLoss()
    loss_fn(randn(np.random.default_rng(12), B, T, V), asarray(np.zeros((B, T), dtype=np.int64)))
    with pytest.raises(ValueError, match=re.escape("expects a scalar dloss, got shape (2, 3)")):
        loss_fn.backward(asarray(np.ones((B, T))))


def test_logits_without_a_class_axis_are_refused():
    with pytest.raises(ValueError, match="logits need a class axis, got a 0-d array"):
        CrossEntropyLoss()(asarray(np.array(1.0)), asarray(np.array(0)))


class MeanOverEveryPosition(CrossEntropyLoss):
    """A planted bug: divide by every position instead of the counted ones (the ignored rows still zero)."""

    def backward(self, dloss=1.0):
        return super().backward(dloss) * self.n_valid / self.valid.size


def test_planted_wrong_divisor_is_caught():
    rng = np.random.default_rng(13)
    logits, targets = randn(rng, B, T, V, scale=2.0), make_targets(rng, (B, T), V, ignore_frac=0.5)
    report = check_module(MeanOverEveryPosition(), logits, targets, h=CE_H)
    assert report.max_error > 0.1, str(report)  # off by the fraction ignored, not by rounding
    assert check_module(CrossEntropyLoss(), logits, targets, h=CE_H).passed(GRADCHECK["smooth"])

