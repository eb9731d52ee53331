"""Attention: the mask builder, scaled_dot_product_attention, SelfAttention and MultiHeadAttention (self-, causal,
cross-attention and cached decoding), by finite differences and torch.

Finite differences here take the step FD_STEP = 1e-5, gradcheck's default, named so the choice is visible.
The error of a central difference is truncation ~h² plus rounding ~ε·|L|/h; in float64 the sum is smallest
near h = ε^(1/3) ≈ 1e-5. The element-wise relative error divides by each element, and attention gradients
have elements 1e-5 times smaller than their largest (cancelling paths through the softmax): at h = 1e-6 the
rounding alone (~1e-10) put 10 of 40 random multi-head checks over 1e-6; at h = 1e-5 none of them (nor any
of 1000 hypothesis examples per test). Elements far smaller still would fail on rounding at any step.
"""

import gc
import weakref

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from layer_checks import assert_close, assert_gradcheck, assert_matches_torch, randn
from minilm import to_numpy
from minilm.backend import asarray
from minilm.verify.gradcheck import check_module, numerical_gradient, rel_error
from minilm.nn import sdpa
from minilm.nn.attention import (  # the public path; the functions live in minilm.nn.sdpa and minilm.nn.masks
    MultiHeadAttention,
    ScaledDotProductAttention,
    SelfAttention,
    attention_mask,
    scaled_dot_product_attention,
    scaled_dot_product_attention_backward,
)
from minilm.nn.kv_cache import LayerKV
from minilm.nn.module import Module
from minilm.nn.softmax import softmax_backward
from minilm.verify.tolerances import GRADCHECK, TORCH

B, T, C, H = 2, 5, 12, 3
HS = C // H  # 4: B, T, C, H and hs all differ, and T != hs, so no transposed product can hide behind a square
TK = 7  # the memory's length in cross-attention: B, T, TK, C, H and hs all differ
FD_STEP = 1e-5  # see the module docstring
MASKS = [(False, False), (True, False), (False, True), (True, True)]  # (causal, key padding)
C_SELF = 6  # SelfAttention's width: unscaled scores e_i · e_j have variance C, and 6 keeps softmax off one-hot


def right_padding(b, t):
    """bool (b, t), True = padded: the last sequence's keys after the first half. Every query sees key 0."""
    padded = np.zeros((b, t), dtype=bool)
    padded[-1, t // 2 + 1:] = True
    return asarray(padded)


def qkv(rng, *shape):
    return tuple(randn(rng, *shape) for _ in range(3))


def mha(rng, bias=True, causal=False, d_model=C, n_heads=H, dropout=0.0):
    """A MultiHeadAttention at init scale, with small random biases (torch's zeros would hide a missing bias)."""
    layer = MultiHeadAttention(d_model, n_heads, bias=bias, causal=causal, dropout=dropout, rng=rng)
    if bias:
        layer.in_proj_bias.data = randn(rng, 3 * d_model, dtype=np.float32, scale=0.1)
        layer.out_proj.bias.data = randn(rng, d_model, dtype=np.float32, scale=0.1)
    return layer


def assert_mha_gradcheck(layer, *inputs, **kwargs):
    """assert_gradcheck for MultiHeadAttention (inputs: x, or x and memory), with in_proj_bias checked on its
    query and value thirds only.

    Its key third has an exactly zero gradient (test_key_bias_changes_nothing): finite differences of a
    constant are pure rounding noise, which a relative error cannot judge.
    """
    report = check_module(layer, *inputs, h=FD_STEP, **kwargs)
    errors = {name: err for name, err in report.errors.items() if name != "in_proj_bias"}
    assert max(errors.values()) < GRADCHECK["smooth"], f"gradient check failed:\n{report}"
    if layer.in_proj_bias is not None:
        dout = randn(np.random.default_rng(1), *layer(*inputs, **kwargs).shape)
        layer.zero_grad()
        layer.backward(dout)
        c = layer.d_model
        query_and_value = np.r_[0:c, 2 * c:3 * c]
        numeric = numerical_gradient(lambda: layer.forward(*inputs, **kwargs), layer.in_proj_bias.data, dout,
                                     h=FD_STEP, coords=query_and_value)
        analytic = to_numpy(layer.in_proj_bias.grad)
        error = rel_error(analytic[query_and_value], numeric[query_and_value])
        assert error < GRADCHECK["smooth"], f"in_proj_bias (query and value thirds): gradient check failed: {error:.2e}"


# --- planted bugs: wrong versions of the real functions, swapped in by monkeypatch (so the code may move) ----

REAL_SDPA_BACKWARD = sdpa.scaled_dot_product_attention_backward


def softmax_backward_without_rank_one_term(dp, p, axis=-1):
    """dS = A ⊙ dA: the softmax Jacobian's rank-one term forgotten, each weight moved as if the others did not."""
    return dp * p


def sdpa_backward_without_key_transpose(dy, cache):
    """dK = dS Q instead of dSᵀ Q: runs when the scores are square (Tq = Tk), wrong unless dS is symmetric."""
    dq, _, dv = REAL_SDPA_BACKWARD(dy, cache)
    dS = softmax_backward(dy @ cache.v.swapaxes(-1, -2), cache.A)  # (..., T, T) as the real backward's
    return dq, (dS @ cache.q) * cache.scale, dv


class SelfAttentionValuePathOnly(SelfAttention):
    """de = dV: the paths of e through the scores (as a query and as a key) dropped."""

    def backward(self, dy):
        return scaled_dot_product_attention_backward(dy, self.cache)[2]


class SelfAttentionWithoutKeyPath(SelfAttention):
    """de = dQ + dV: e's use as a key dropped."""

    def backward(self, dy):
        de_as_query, _, de_as_value = scaled_dot_product_attention_backward(dy, self.cache)
        return de_as_query + de_as_value


# --- scaled dot-product attention ------------------------------------------------------------------------

@pytest.mark.parametrize("causal,padded", MASKS)
def test_sdpa_gradcheck(causal, padded):
    rng = np.random.default_rng(0)
    mask = right_padding(B, T) if padded else None
    assert_gradcheck(ScaledDotProductAttention(causal), *qkv(rng, B, H, T, HS), key_padding_mask=mask, h=FD_STEP)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("causal,padded", MASKS)
def test_sdpa_matches_torch(dtype, causal, padded):
    rng = np.random.default_rng(1)
    mask = right_padding(B, T) if padded else None
    assert_matches_torch(ScaledDotProductAttention(causal), *qkv(rng, B, H, T, HS), dtype=dtype, key_padding_mask=mask)


@given(b=st.integers(1, 3), h=st.integers(1, 3), t=st.integers(1, 6), hs=st.integers(1, 5),
       causal=st.booleans(), padded=st.booleans(), seed=st.integers(0, 2**16))
@example(b=1, h=1, t=1, hs=1, causal=True, padded=True, seed=0)  # the edges, whatever hypothesis draws
@example(b=3, h=1, t=3, hs=1, causal=False, padded=True, seed=3642)  # the audit's: dk ~1e-3 of Σ|y ⊙ g|
def test_sdpa_any_shape(b, h, t, hs, causal, padded, seed):
    rng = np.random.default_rng(seed)
    mask = asarray((rng.random((b, t)) < 0.4) & (np.arange(t) > 0)) if padded else None  # key 0 always visible
    inputs = qkv(rng, b, h, t, hs)
    assert_gradcheck(ScaledDotProductAttention(causal), *inputs, key_padding_mask=mask, h=FD_STEP)
    assert_matches_torch(ScaledDotProductAttention(causal), *inputs, key_padding_mask=mask)


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=3), t=st.integers(1, 6), hs=st.integers(1, 5),
       seed=st.integers(0, 2**16))
@example(lead=[], t=1, hs=1, seed=0)
def test_functional_any_leading_dims_matches_torch(lead, t, hs, seed):
    """The functional form over (..., T, hs) with an arbitrary additive mask, against F.scaled_dot_product_attention."""
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, *lead, t, hs)
    blocked = (rng.random((*lead, t, t)) < 0.4) & (np.arange(t) > 0)  # key 0 always visible
    mask = np.where(blocked, -np.inf, 0.0)  # (..., T, T)
    dy = randn(rng, *lead, t, hs)
    y, cache = scaled_dot_product_attention(q, k, v, asarray(mask))
    ours = [y, *scaled_dot_product_attention_backward(dy, cache)]

    tq, tk, tv = (torch.tensor(to_numpy(a), requires_grad=True) for a in (q, k, v))
    ty = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(mask))
    (ty * torch.tensor(to_numpy(dy))).sum().backward()
    theirs = [b.numpy() for b in (ty.detach(), tq.grad, tk.grad, tv.grad)]
    largest = max(float(np.abs(b).max(initial=0.0)) for b in theirs)
    for name, a, b in zip(["y", "dq", "dk", "dv"], ours, theirs):
        assert_close(a, b, "float64", name, largest)


@pytest.mark.parametrize("T_past", [0, 2])
def test_functional_over_other_key_lengths_matches_torch(T_past):
    """Tq ≠ Tk: T queries over TK keys, causal with the queries at T_past … T_past + T - 1 (past TK: every key)."""
    rng = np.random.default_rng(30)
    q, (k, v), dy = randn(rng, B, H, T, HS), qkv(rng, B, H, TK, HS)[:2], randn(rng, B, H, T, HS)
    mask = attention_mask(B, T, causal=True, key_padding_mask=right_padding(B, TK), Tk=TK, T_past=T_past)
    y, cache = scaled_dot_product_attention(q, k, v, mask)
    ours = [y, *scaled_dot_product_attention_backward(dy, cache)]
    assert [a.shape for a in ours] == [(B, H, T, HS), (B, H, T, HS), (B, H, TK, HS), (B, H, TK, HS)]

    tq, tk, tv = (torch.tensor(to_numpy(a), requires_grad=True) for a in (q, k, v))
    ty = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(to_numpy(mask)))
    (ty * torch.tensor(to_numpy(dy))).sum().backward()
    theirs = [b.numpy() for b in (ty.detach(), tq.grad, tk.grad, tv.grad)]
    largest = max(float(np.abs(b).max(initial=0.0)) for b in theirs)
    for name, a, b in zip(["y", "dq", "dk", "dv"], ours, theirs):
        assert_close(a, b, "float64", name, largest)


def test_attention_mask_is_zero_or_minus_inf_and_broadcasts_over_heads():
    assert attention_mask(B, T) is None
    causal = to_numpy(attention_mask(B, T, causal=True, dtype=np.float32))
    assert causal.shape == (1, 1, T, T) and causal.dtype == np.float32
    np.testing.assert_array_equal(causal[0, 0], np.where(np.triu(np.ones((T, T)), k=1) > 0, -np.inf, 0.0))
    both = to_numpy(attention_mask(B, T, causal=True, key_padding_mask=right_padding(B, T)))
    assert both.shape == (B, 1, T, T)
    padded_keys = to_numpy(right_padding(B, T))[-1]
    assert np.all(np.isneginf(both[-1, 0][:, padded_keys])) and np.array_equal(both[0], causal[0])


def test_a_mask_written_by_one_caller_leaves_the_next_causal_and_nothing_else_keeps_it():
    rng = np.random.default_rng(13)
    x = randn(rng, B, T, C, dtype=np.float32)
    first, second = mha(rng, causal=True), mha(rng, causal=True)
    first(x)
    first.cache.mask[...] = 0  # a caller unmasks the future in the mask it was handed
    second(x)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert not to_numpy(second.attention_weights)[..., future].any()
    kept = weakref.ref(second.cache.mask)
    del second
    gc.collect()
    assert kept() is None  # only its layer held the (T, T) mask: no process-wide cache keeps one alive


@pytest.mark.parametrize("name,wrong", [
    ("softmax_backward", softmax_backward_without_rank_one_term),
    ("scaled_dot_product_attention_backward", sdpa_backward_without_key_transpose),
])
def test_planted_wrong_backward_is_caught(monkeypatch, name, wrong):
    monkeypatch.setattr(sdpa, name, wrong)  # what ScaledDotProductAttention and the sdpa backward call
    rng = np.random.default_rng(2)
    inputs = qkv(rng, B, H, T, HS)
    with pytest.raises(AssertionError, match="gradient check failed"):
        assert_gradcheck(ScaledDotProductAttention(causal=True), *inputs, h=FD_STEP)
    with pytest.raises(AssertionError, match="differs from torch"):
        assert_matches_torch(ScaledDotProductAttention(causal=True), *inputs)


# --- the fully masked row rule ---------------------------------------------------------------------------

def left_padded_and_empty():
    """Sequence 0 left-padded by one, so under a causal mask query 0 sees only a padded key; sequence 1 all padding."""
    padded = np.zeros((B, T), dtype=bool)
    padded[0, 0] = True
    padded[1] = True
    return asarray(padded)


def test_fully_masked_query_gives_zero_output_and_zero_gradients():
    rng = np.random.default_rng(3)
    layer = ScaledDotProductAttention(causal=True)
    y = to_numpy(layer(*qkv(rng, B, H, T, HS), key_padding_mask=left_padded_and_empty()))
    dq, dk, dv = (to_numpy(d) for d in layer.backward(randn(rng, B, H, T, HS)))
    for array in (y, dq, dk, dv):
        assert np.all(np.isfinite(array))
    assert not y[0, :, 0].any() and not y[1].any()  # the fully masked rows: query 0 of sequence 0, all of sequence 1
    assert not dq[0, :, 0].any() and not dq[1].any() and not dk[1].any() and not dv[1].any()
    assert not dk[0, :, 0].any() and not dv[0, :, 0].any()  # a padded key gets no gradient from anyone
    assert y[0, :, 1:].all()  # the other queries of sequence 0 see something


def test_fully_masked_rows_pass_gradcheck():
    rng = np.random.default_rng(4)
    assert_gradcheck(ScaledDotProductAttention(causal=True), *qkv(rng, B, H, T, HS),
                     key_padding_mask=left_padded_and_empty(), h=FD_STEP)
    assert_mha_gradcheck(mha(rng, causal=True), randn(rng, B, T, C), key_padding_mask=left_padded_and_empty())


def test_mha_fully_masked_rows_are_the_output_bias_and_match_torch_elsewhere():
    """torch's MultiheadAttention gives NaN on a fully masked row (with need_weights=True), so it is compared
    only where some key is visible."""
    from minilm.verify.reference import twin

    rng = np.random.default_rng(5)
    layer = mha(rng, causal=True).to("float64")
    x, padded = randn(rng, B, T, C), left_padded_and_empty()
    out = to_numpy(layer(x, key_padding_mask=padded))
    dx = to_numpy(layer.backward(randn(rng, B, T, C)))
    bias = to_numpy(layer.out_proj.bias.data)
    np.testing.assert_array_equal(out[1], np.broadcast_to(bias, (T, C)))  # attention output 0, then out_proj
    np.testing.assert_array_equal(out[0, 0], bias)
    assert not dx[1].any() and all(np.isfinite(to_numpy(p.grad)).all() for p in layer.parameters())
    assert not to_numpy(layer.attention_weights)[1].any()

    theirs = twin(layer)(torch.tensor(to_numpy(x)), key_padding_mask=torch.tensor(to_numpy(padded))).detach().numpy()
    assert_close(out[0, 1:], theirs[0, 1:], "float64", "rows with a visible key")


# --- SelfAttention ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("scaled", [True, False])
def test_self_attention_gradcheck(scaled):
    assert_gradcheck(SelfAttention(scaled), randn(np.random.default_rng(6), B, T, C_SELF), h=FD_STEP)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scaled", [True, False])
def test_self_attention_matches_torch(dtype, scaled):
    rng = np.random.default_rng(7)
    assert_matches_torch(SelfAttention(scaled), randn(rng, B, T, C_SELF), dtype=dtype)


@given(b=st.integers(1, 3), t=st.integers(1, 6), c=st.integers(1, 7), scaled=st.booleans(), seed=st.integers(0, 2**16))
@example(b=1, t=1, c=1, scaled=False, seed=0)
def test_self_attention_any_shape(b, t, c, scaled, seed):
    rng = np.random.default_rng(seed)
    e = randn(rng, b, t, c)
    assert_gradcheck(SelfAttention(scaled), e, h=FD_STEP)
    assert_matches_torch(SelfAttention(scaled), e)


@pytest.mark.parametrize("wrong", [SelfAttentionValuePathOnly, SelfAttentionWithoutKeyPath])
def test_self_attention_needs_every_use_of_e(wrong):
    """Dropping the paths through the scores (or only the key path) is caught."""
    with pytest.raises(AssertionError, match="gradient check failed"):
        assert_gradcheck(wrong(), randn(np.random.default_rng(8), B, T, C_SELF), h=FD_STEP)


# --- MultiHeadAttention ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal,padded", MASKS)
def test_mha_gradcheck(bias, causal, padded):
    rng = np.random.default_rng(9)
    assert_mha_gradcheck(mha(rng, bias, causal), randn(rng, B, T, C),
                         key_padding_mask=right_padding(B, T) if padded else None)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal,padded", MASKS)
def test_mha_matches_torch(dtype, bias, causal, padded):
    rng = np.random.default_rng(10)
    assert_matches_torch(mha(rng, bias, causal), randn(rng, B, T, C), dtype=dtype,
                         key_padding_mask=right_padding(B, T) if padded else None)


@given(b=st.integers(1, 3), t=st.integers(1, 6), h=st.integers(1, 3), hs=st.integers(1, 4), bias=st.booleans(),
       causal=st.booleans(), padded=st.booleans(), seed=st.integers(0, 2**16))
@example(b=1, t=1, h=1, hs=1, bias=True, causal=True, padded=True, seed=0)
@example(b=1, t=6, h=1, hs=4, bias=True, causal=False, padded=False, seed=1)  # one head: C = hs
def test_mha_any_shape(b, t, h, hs, bias, causal, padded, seed):
    rng = np.random.default_rng(seed)
    mask = asarray((rng.random((b, t)) < 0.4) & (np.arange(t) > 0)) if padded else None  # key 0 always visible
    x = randn(rng, b, t, h * hs)
    assert_matches_torch(mha(rng, bias, causal, h * hs, h), x, key_padding_mask=mask)
    assert_mha_gradcheck(mha(rng, bias, causal, h * hs, h), x, key_padding_mask=mask)


def test_key_bias_changes_nothing():
    """q_i · (k_j + b_k) = q_i · k_j + q_i · b_k adds the same number to every key j of query i's row, and softmax
    ignores a shift of its row: the key bias cannot change the output, so its gradient is zero (torch's too)."""
    rng = np.random.default_rng(11)
    layer, x = mha(rng, causal=True).to("float64"), randn(rng, B, T, C)
    before = to_numpy(layer(x))
    layer.in_proj_bias.data[C:2 * C] += 1.0
    after = to_numpy(layer(x))
    np.testing.assert_allclose(after, before, rtol=TORCH["float64"]["rtol"], atol=TORCH["float64"]["atol"])
    layer.backward(randn(rng, B, T, C))
    dbias = to_numpy(layer.in_proj_bias.grad)
    assert np.abs(dbias[C:2 * C]).max() <= TORCH["float64"]["atol"] * np.abs(dbias).max()


def test_attention_weights_are_torchs_per_head_weights():
    from minilm.verify.reference import twin

    rng = np.random.default_rng(12)
    layer, x, padded = mha(rng, causal=True).to("float64"), randn(rng, B, T, C), right_padding(B, T)
    layer(x, key_padding_mask=padded)
    ours = to_numpy(layer.attention_weights)
    assert ours.shape == (B, H, T, T)
    np.testing.assert_allclose(ours.sum(axis=-1), 1.0, rtol=TORCH["float64"]["rtol"])
    assert not ours[..., np.triu(np.ones((T, T), dtype=bool), k=1)].any()  # no query sees its future
    assert not ours[-1][..., to_numpy(padded)[-1]].any()  # nor a padded key
    _, theirs = twin(layer)(torch.tensor(to_numpy(x)), key_padding_mask=torch.tensor(to_numpy(padded)),
                            need_weights=True)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=TORCH["float64"]["rtol"],
                               atol=TORCH["float64"]["atol"])


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_names_and_shapes_are_torchs(bias):
    ours = {name: tuple(p.shape) for name, p in MultiHeadAttention(C, H, bias=bias).named_parameters()}
    reference = torch.nn.MultiheadAttention(C, H, bias=bias, batch_first=True)
    assert ours == {name: tuple(p.shape) for name, p in reference.named_parameters()}


def test_init_is_torchs():
    layer = MultiHeadAttention(C, H, rng=0)
    bound = np.sqrt(6.0 / (C + 3 * C))  # xavier-uniform on (3C, C)
    w = to_numpy(layer.in_proj_weight.data)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound / np.sqrt(3)  # U(-a, a) has std a/√3
    assert not to_numpy(layer.in_proj_bias.data).any() and not to_numpy(layer.out_proj.bias.data).any()
    assert np.abs(to_numpy(layer.out_proj.weight.data)).max() <= 1 / np.sqrt(C)  # Linear's default


class FixedDropoutMask(Module):
    """MultiHeadAttention whose dropout draws the same mask at every forward, so finite differences see one function."""

    def __init__(self, attention, seed):
        self.attention, self.seed = attention, seed

    def forward(self, x):
        self.attention.attn_dropout.rng = np.random.default_rng(self.seed)
        return self.attention(x)

    def backward(self, dout):
        return self.attention.backward(dout)


def test_dropout_acts_in_training_only_and_its_backward_is_right():
    rng = np.random.default_rng(13)
    x = randn(rng, B, T, C)
    layer = mha(rng, bias=False, causal=True, dropout=0.3).to("float64")
    plain = mha(np.random.default_rng(0), bias=False, causal=True).to("float64").load_state_dict(layer.state_dict())
    assert not np.allclose(to_numpy(layer(x)), to_numpy(plain(x)))
    weight_sums = to_numpy(layer.attention_weights.sum(axis=-1))
    np.testing.assert_allclose(weight_sums, 1.0, rtol=TORCH["float64"]["rtol"])  # A is kept before dropout
    assert not layer.eval().attn_dropout.training
    np.testing.assert_array_equal(to_numpy(layer(x)), to_numpy(plain(x)))
    assert_gradcheck(FixedDropoutMask(layer.train(), seed=14), x, h=FD_STEP)


@pytest.mark.parametrize("causal,padded", MASKS)
def test_recomputing_the_weights_in_backward_gives_the_same_gradients(causal, padded):
    """keep_weights=False holds no (B, H, T, T) array after forward, and backward's recomputed A is forward's A:
    every gradient equals the kept-weights layer's, dropout (its mask reused from forward) included."""
    x, dout = randn(np.random.default_rng(16), B, T, C), randn(np.random.default_rng(17), B, T, C)
    mask = right_padding(B, T) if padded else None
    results = []
    for keep in (True, False):
        layer = mha(np.random.default_rng(18), causal=causal, dropout=0.3).to("float64")
        layer.keep_weights = keep
        y = layer(x, key_padding_mask=mask)
        kept_square = [a for a in layer.cache if getattr(a, "shape", None) == (B, H, T, T)]  # A, not the mask
        assert (layer.attention_weights is None and not kept_square) if not keep else len(kept_square) == 1
        dx = layer.backward(dout)
        results.append({"y": to_numpy(y), "dx": to_numpy(dx),
                        **{name: to_numpy(param.grad) for name, param in layer.named_parameters()}})
    for name, kept in results[0].items():
        np.testing.assert_allclose(results[1][name], kept, rtol=TORCH["float64"]["rtol"],
                                   atol=TORCH["float64"]["atol"] * np.abs(kept).max(), err_msg=name)


def test_recomputed_weights_pass_the_gradient_check():
    rng = np.random.default_rng(19)
    layer = mha(rng, causal=True)
    layer.keep_weights = False
    assert_mha_gradcheck(layer, randn(rng, B, T, C), key_padding_mask=right_padding(B, T))


def test_gradients_accumulate_across_backward_calls():
    rng = np.random.default_rng(15)
    layer, x, dout = mha(rng).to("float64"), randn(rng, B, T, C), randn(rng, B, T, C)
    layer(x)
    layer.backward(dout)
    once = {name: to_numpy(p.grad).copy() for name, p in layer.named_parameters()}
    layer(x)
    layer.backward(dout)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(to_numpy(p.grad), 2 * once[name], rtol=TORCH["float64"]["rtol"], err_msg=name)


def test_computes_in_float32_by_default():
    layer = MultiHeadAttention(C, H, causal=True)
    y = layer(randn(np.random.default_rng(0), B, T, C, dtype=np.float32), key_padding_mask=right_padding(B, T))
    assert y.dtype == np.float32 and layer.attention_weights.dtype == np.float32
    assert layer.backward(asarray(np.ones((B, T, C), dtype=np.float32))).dtype == np.float32


# --- bad input -------------------------------------------------------------------------------------------

def test_d_model_not_divisible_by_n_heads():
    with pytest.raises(ValueError, match="d_model 10 is not divisible by n_heads 3"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="must be positive, got d_model 12, n_heads 0"):
        MultiHeadAttention(12, 0)


def test_key_padding_mask_of_wrong_shape_or_dtype():
    layer, x = MultiHeadAttention(C, H), randn(np.random.default_rng(0), B, T, C)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, T\) = \(2, 5\), got \(2, 6\)"):
        layer(x, key_padding_mask=right_padding(B, T + 1))
    with pytest.raises(ValueError, match=r"must have shape \(B, T\) = \(2, 5\), got \(5,\)"):
        layer(x, key_padding_mask=right_padding(B, T)[0])
    with pytest.raises(TypeError, match="key_padding_mask must be boolean .* got dtype float64"):
        layer(x, key_padding_mask=randn(np.random.default_rng(0), B, T))


def test_input_of_wrong_rank_or_width():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"MultiHeadAttention expects shape \(B, T, C\), got shape \(5, 12\)"):
        MultiHeadAttention(C, H)(randn(rng, T, C))
    with pytest.raises(ValueError, match="MultiHeadAttention expected last dim 12, got 8"):
        MultiHeadAttention(C, H)(randn(rng, B, T, 8))
    with pytest.raises(ValueError, match=r"SelfAttention expects shape \(B, T, C\), got shape \(2, 3, 5, 4\)"):
        SelfAttention()(randn(rng, B, H, T, HS))
    with pytest.raises(ValueError, match=r"ScaledDotProductAttention expects shape \(B, H, T, hs\), got shape \(2, 5,"):
        ScaledDotProductAttention()(*qkv(rng, B, T, HS))


def test_functional_rejects_mismatched_inputs_and_masks():
    rng = np.random.default_rng(0)
    q, k, v = qkv(rng, B, H, T, HS)
    with pytest.raises(ValueError, match=r"q, k and v must share one shape .* got \(2, 3, 5, 4\), \(2, 3, 4, 4\)"):
        scaled_dot_product_attention(q, k[:, :, 1:], v)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 4, 4\) does not broadcast to the scores \(2, 3, 5, 5"):
        scaled_dot_product_attention(q, k, v, randn(rng, B, 1, T - 1, T - 1))
    with pytest.raises(TypeError, match="mask must be additive .* got dtype bool"):
        scaled_dot_product_attention(q, k, v, right_padding(B, T)[:, None, None, :])


# --- the one mask builder: causal with a cache offset, key padding, attn_mask ------------------------------

def test_causal_mask_with_a_cache_offset_is_the_last_rows_of_the_full_mask():
    """Query i of the T - T_past new positions sits at T_past + i: its row is row T_past + i of the full triangle."""
    full = to_numpy(attention_mask(B, T, causal=True))  # (1, 1, T, T)
    for T_past in range(T):
        cached = to_numpy(attention_mask(B, T - T_past, causal=True, T_past=T_past))  # (1, 1, T - T_past, T)
        np.testing.assert_array_equal(cached, full[:, :, T_past:])
    one_new = to_numpy(attention_mask(B, 1, causal=True, T_past=T - 1))
    assert one_new.shape == (1, 1, 1, T) and not one_new.any()  # one new token sees every key


def test_attn_mask_boolean_blocks_and_floating_adds_and_neither_is_written():
    rng = np.random.default_rng(20)
    blocked = rng.random((T, TK)) < 0.3  # (T, Tk) True = may not attend, as torch.nn.MultiheadAttention
    bias = rng.standard_normal((1, H, T, TK))  # (1, H, T, Tk) an additive mask per head
    kept = bias.copy()
    got = to_numpy(attention_mask(B, T, key_padding_mask=right_padding(B, TK), dtype=np.float32, Tk=TK,
                                  attn_mask=asarray(blocked)))
    assert got.shape == (B, 1, T, TK) and got.dtype == np.float32
    expected = np.isneginf(got)
    np.testing.assert_array_equal(expected, blocked | to_numpy(right_padding(B, TK))[:, None, None, :])
    assert not got[~expected].any()
    added = to_numpy(attention_mask(B, T, causal=True, Tk=TK, attn_mask=asarray(bias)))  # (1, H, T, Tk)
    future = np.triu(np.ones((T, TK), dtype=bool), k=1)
    np.testing.assert_array_equal(added, np.where(future, -np.inf, bias))
    np.testing.assert_array_equal(bias, kept)


def test_mask_builder_names_bad_masks():
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, Tk\) = \(2, 7\), got \(2, 5\)"):
        attention_mask(B, T, key_padding_mask=right_padding(B, T), Tk=TK)
    with pytest.raises(ValueError, match=r"attn_mask must have shape \(T, Tk\) = \(5, 7\) .* got \(5, 5\)"):
        attention_mask(B, T, Tk=TK, attn_mask=np.zeros((T, T), dtype=bool))
    with pytest.raises(TypeError, match="attn_mask must be boolean .* or floating .* got dtype int64"):
        attention_mask(B, T, attn_mask=np.zeros((T, T), dtype=np.int64))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("causal", [True, False])
def test_mha_bool_attn_mask_matches_torch(dtype, causal):
    rng = np.random.default_rng(21)
    blocked = asarray((rng.random((T, T)) < 0.4) & (np.arange(T) > 0))  # (T, T) key 0 always visible
    assert_matches_torch(mha(rng, causal=causal), randn(rng, B, T, C), dtype=dtype, attn_mask=blocked)


def test_mha_additive_attn_mask_passes_gradcheck_and_matches_torch():
    rng = np.random.default_rng(22)
    x, additive = randn(rng, B, T, C), randn(rng, T, T)  # (T, T) a bias on every score, as ALiBi or T5 use
    assert_mha_gradcheck(mha(rng, causal=True), x, attn_mask=additive)
    assert_matches_torch(mha(rng, causal=True), x, attn_mask=additive)


# --- cross-attention: queries from x (B, T, C), keys and values from memory (B, Tk, C) --------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_cross_attention_gradcheck(bias, padded):
    rng = np.random.default_rng(23)
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    assert_mha_gradcheck(mha(rng, bias), x, memory, key_padding_mask=right_padding(B, TK) if padded else None)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_cross_attention_matches_torch(dtype, bias, padded):
    """Against torch.nn.MultiheadAttention(batch_first=True) with query x and key = value = memory: the output,
    dx, dmemory and every parameter gradient."""
    rng = np.random.default_rng(24)
    layer = mha(rng, bias)
    pairs = assert_matches_torch(layer, randn(rng, B, T, C), randn(rng, B, TK, C), dtype=dtype,
                                 key_padding_mask=right_padding(B, TK) if padded else None)
    assert pairs["dinput0"][0].shape == (B, T, C) and pairs["dinput1"][0].shape == (B, TK, C)
    assert layer.attention_weights.shape == (B, H, T, TK)


@given(b=st.integers(1, 3), tq=st.integers(1, 6), tk=st.integers(1, 6), h=st.integers(1, 3), hs=st.integers(1, 4),
       bias=st.booleans(), padded=st.booleans(), seed=st.integers(0, 2**16))
@example(b=1, tq=1, tk=1, h=1, hs=1, bias=True, padded=True, seed=0)  # the edges: one query, one key, one head
@example(b=1, tq=1, tk=6, h=1, hs=4, bias=True, padded=True, seed=1)  # one query over many keys
@example(b=2, tq=6, tk=1, h=3, hs=2, bias=False, padded=False, seed=2)  # many queries, one key
def test_cross_attention_any_shape(b, tq, tk, h, hs, bias, padded, seed):
    rng = np.random.default_rng(seed)
    mask = asarray((rng.random((b, tk)) < 0.4) & (np.arange(tk) > 0)) if padded else None  # key 0 always visible
    x, memory = randn(rng, b, tq, h * hs), randn(rng, b, tk, h * hs)
    assert_matches_torch(mha(rng, bias, d_model=h * hs, n_heads=h), x, memory, key_padding_mask=mask)
    assert_mha_gradcheck(mha(rng, bias, d_model=h * hs, n_heads=h), x, memory, key_padding_mask=mask)


def test_cross_attention_with_memory_x_is_self_attention():
    """Self-attention is cross-attention to itself: the same output, and dx + dmemory is self-attention's dx."""
    rng = np.random.default_rng(25)
    layer, x, dout = mha(rng).to("float64"), randn(rng, B, T, C), randn(rng, B, T, C)
    out_self, dx_self = to_numpy(layer(x)), to_numpy(layer.backward(dout))
    out_cross = to_numpy(layer(x, x))
    dx, dmemory = layer.backward(dout)
    assert_close(out_cross, out_self, "float64", "output")
    assert_close(to_numpy(dx) + to_numpy(dmemory), dx_self, "float64", "dx + dmemory")


def planted_memory_gradient_through_query_rows(real):
    """_project_backward whose memory gradient goes through W_in's first rows (the queries') instead of W_kv."""
    def wrong(self, a, first, grads):
        da, dW, db = real(self, a, first, grads)
        if first == 1:
            da = real(self, a, 0, grads)[0]
        return da, dW, db
    return wrong


def test_planted_wrong_memory_gradient_is_caught(monkeypatch):
    monkeypatch.setattr(MultiHeadAttention, "_project_backward",
                        planted_memory_gradient_through_query_rows(MultiHeadAttention._project_backward))
    rng = np.random.default_rng(26)
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    with pytest.raises(AssertionError, match="gradient check failed"):
        assert_mha_gradcheck(mha(rng), x, memory)
    with pytest.raises(AssertionError, match="differs from torch"):
        assert_matches_torch(mha(rng), x, memory)


def test_cached_cross_attention_projects_the_memory_once_and_equals_the_full_forward():
    """Decoding: the first cached step projects the memory's keys and values into the cache, later steps read
    them back (a different memory passed later is not even projected), and each step's output equals the
    uncached forward of that query against the whole memory."""
    rng = np.random.default_rng(28)
    layer = mha(rng).to("float64")
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    padded = np.zeros((B, TK), dtype=bool)
    padded[1, -2:] = True
    full = layer(x, memory, key_padding_mask=padded)  # (B, T, C)
    cache = LayerKV(TK)
    for t in range(T):
        step = layer(x[:, t:t + 1], memory if t == 0 else memory * 0, key_padding_mask=padded, cache=cache)
        np.testing.assert_allclose(step[:, 0], full[:, t], rtol=0, atol=1e-13)
        assert cache.length == TK  # the memory's keys, stored once


def test_cross_attention_refuses_what_it_cannot_do():
    rng = np.random.default_rng(27)
    x, memory = randn(rng, B, T, C), randn(rng, B, TK, C)
    with pytest.raises(ValueError, match="takes no causal mask"):
        mha(rng, causal=True)(x, memory)
    with pytest.raises(ValueError, match="memory has batch size 1, x has 2"):
        mha(rng)(x, memory[:1])
    with pytest.raises(ValueError, match=r"expected last dim 12, got 8 \(MultiHeadAttention memory shape"):
        mha(rng)(x, memory[..., :8])
    with pytest.raises(TypeError, match="must be floating .* pass masks by keyword"):
        mha(rng)(x, right_padding(B, T))  # the old positional key_padding_mask


# --- cached decoding through the same layer --------------------------------------------------------------

@pytest.mark.parametrize("chunks", [[1] * T, [2, 1, 2], [T]])
def test_cached_forward_equals_the_full_forward(chunks):
    """A causal layer fed its positions in chunks through a LayerKV gives the full forward's rows, and its
    attention weights are the full weights' rows up to each chunk's last key."""
    rng = np.random.default_rng(28)
    layer, x = mha(rng, causal=True).to("float64").eval(), randn(rng, B, T, C)
    full, weights = to_numpy(layer(x)), to_numpy(layer.attention_weights)
    cache, start = LayerKV(T + 2), 0
    for size in chunks:
        got = layer(x[:, start:start + size], cache=cache)
        assert_close(got, full[:, start:start + size], "float64", f"positions {start}..{start + size - 1}")
        assert_close(layer.attention_weights, weights[:, :, start:start + size, :start + size], "float64", "A")
        start += size
    assert cache.length == T


def test_backward_after_a_cached_forward_is_refused():
    layer = mha(np.random.default_rng(29), causal=True)
    layer(randn(np.random.default_rng(0), 1, 2, C), cache=LayerKV(4))
    with pytest.raises(RuntimeError, match="a cached forward is for inference and keeps nothing"):
        layer.backward(randn(np.random.default_rng(1), 1, 2, C))


@pytest.mark.parametrize("bias", [-200.0, 100.0])
def test_a_large_constant_additive_bias_per_row_changes_nothing(bias):
    """softmax is shift-invariant per row: a float32 bias of -200 on every key of a row must not underflow it to
    the fully masked zero row, nor +100 overflow it to NaN (the one-shift shortcut is for 0/-inf masks only)."""
    rng = np.random.default_rng(9)
    q, k, v = (randn(rng, 1, 2, 3, 4, dtype=np.float32) for _ in range(3))
    plain, _ = scaled_dot_product_attention(q, k, v)
    biased, _ = scaled_dot_product_attention(q, k, v, asarray(np.full((3, 3), bias, np.float32)))
    np.testing.assert_allclose(to_numpy(biased), to_numpy(plain), rtol=1e-5, atol=1e-6)
