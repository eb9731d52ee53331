"""minilm.models.Seq2Seq: against its torch twin (torch's embeddings, torch.nn.Transformer, a Linear) in every
setting the config offers, finite differences, a planted wrong backward, cached decoding against the full forward
(reordered as a beam search reorders it), and the errors bad configs and inputs raise."""

import dataclasses

import numpy as np
import pytest

from layer_checks import assert_matches_torch
from minilm.backend import asarray, to_numpy
from minilm.models import MODELS, Seq2Seq, Seq2SeqConfig
from minilm.verify.check_cases import vary_constants
from minilm.verify.gradcheck import check_module
from minilm.verify.tolerances import GRADCHECK

# every size differs: B, S, T, V, C, H, hs = 4, d_ff; 2 encoder and 3 decoder layers
B, S, T, V = 2, 7, 5, 13
SIZES = dict(vocab_size=V, block_size=9, d_model=12, nhead=3, num_encoder_layers=2, num_decoder_layers=3,
             dim_feedforward=20, dropout=0.0)
VARIANTS = {  # the paper's model, and each choice the config offers turned the other way
    "paper": {},
    "pre-LN, gelu": dict(norm_first=True, activation="gelu"),
    "learned positions": dict(pos="learned"),
    "separate tables, untied": dict(share_embeddings=False, tie_weights=False),
    "shared, untied, unscaled": dict(tie_weights=False, scale_embeddings=False),
    "separate, tied to the target's": dict(share_embeddings=False),
}


def padded_ids(rng, b=B, s=S, t=T):
    """src (b, s) and tgt (b, t) ids from 1 … V - 1; the last row ends in [PAD] = 0 (3 source and 2 target
    positions), the others are whole."""
    src, tgt = rng.integers(1, V, (b, s)), rng.integers(1, V, (b, t))
    src[-1, s - 3:], tgt[-1, t - 2:] = 0, 0
    return asarray(src), asarray(tgt)


def model_for(variant, rng=0, **changes):
    return Seq2Seq(Seq2SeqConfig(**{**SIZES, **VARIANTS[variant], **changes}), rng=rng)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_its_torch_twin(variant, dtype):
    rng = np.random.default_rng(1)
    model = vary_constants(model_for(variant, rng), rng)
    src, tgt = padded_ids(rng)
    assert bool((to_numpy(src) == 0).any()) and bool((to_numpy(tgt) == 0).any())  # padding on both sides
    pairs = assert_matches_torch(model, src, tgt, dtype=dtype)
    assert len(pairs) == 1 + len(model.parameters())  # the logits and every parameter (ids have no gradient)
    shared = model.config.share_embeddings
    assert (model.tgt_embed.wte.weight is model.src_embed.wte.weight) == shared
    assert (model.lm_head.weight is model.tgt_embed.wte.weight) == model.config.tie_weights


@pytest.mark.parametrize("variant", ["paper", "pre-LN, gelu", "separate tables, untied"])
def test_finite_differences(variant):
    rng = np.random.default_rng(2)
    # gelu: ReLU's kink would put differences of a whole model at the mercy of the draw (check_models says so)
    model = vary_constants(model_for(variant, rng, activation="gelu"), rng)
    src, tgt = padded_ids(rng)
    report = check_module(model, src, tgt, max_coords=12)
    assert len(report.errors) == len(model.parameters())
    assert report.passed(GRADCHECK["model"]), report


def test_a_planted_backward_that_forgets_the_source_side_of_the_shared_table_is_caught(monkeypatch):
    """The shared table is read three times; a backward that gives it only the target's and the output's
    gradients (the source's embedding backward left out) fails both checks, and only at that table."""
    def forgets_the_source(self, dlogits):
        dh = self.lm_head.backward(dlogits)
        _, de_tgt = self.transformer.backward(dh)
        self.tgt_embed.backward(de_tgt)

    rng = np.random.default_rng(3)
    model = vary_constants(model_for("paper", rng, activation="gelu"), rng)
    src, tgt = padded_ids(rng)
    monkeypatch.setattr(Seq2Seq, "backward", forgets_the_source)
    report = check_module(model, src, tgt, max_coords=12)
    failing = [name for name, err in report.errors.items() if err > GRADCHECK["model"]]
    assert failing == ["src_embed.wte.weight"], report
    with pytest.raises(AssertionError, match="src_embed.wte.weight differs from torch"):
        assert_matches_torch(model, src, tgt)


@pytest.mark.parametrize("variant", ["paper", "pre-LN, gelu", "learned positions", "separate tables, untied"])
def test_cached_decoding_equals_the_full_forward_at_every_position(variant):
    rng = np.random.default_rng(4)
    model = vary_constants(model_for(variant, rng), rng).to("float64").eval()
    src, tgt = padded_ids(rng)
    tgt = asarray(rng.integers(1, V, (B, T)))  # decoding feeds real tokens only
    full = to_numpy(model(src, tgt))  # (B, T, V)
    cache = model.encode(src)
    steps = [to_numpy(model.decode_step(tgt[:, t:t + 1], cache))[:, 0] for t in range(T)]  # T × (B, V)
    np.testing.assert_allclose(np.stack(steps, axis=1), full, rtol=0, atol=1e-12 * np.abs(full).max())
    assert cache.length == T
    assert all(layer.length == S for layer in cache.cross_attention.layers)  # the memory's keys, projected once


def test_a_reordered_cache_decodes_the_rows_it_kept():
    """Beam search keeps some hypotheses and drops others after each step: reorder(rows) must leave a cache
    that continues exactly as one built for the reordered batch from the start."""
    rng = np.random.default_rng(5)
    model = vary_constants(model_for("paper", rng), rng).to("float64").eval()
    src, _ = padded_ids(rng)
    tgt = rng.integers(1, V, (B, T))
    rows = np.array([1, 1, 0])  # a row twice, another once
    cache = model.encode(src)
    for t in range(2):
        model.decode_step(asarray(tgt[:, t:t + 1]), cache)
    cache.reorder(rows)
    steps = [to_numpy(model.decode_step(asarray(tgt[rows, t:t + 1]), cache))[:, 0] for t in range(2, T)]
    full = to_numpy(model(src[asarray(rows)], asarray(tgt[rows])))[:, 2:]  # (3, T - 2, V)
    np.testing.assert_allclose(np.stack(steps, axis=1), full, rtol=0, atol=1e-12 * np.abs(full).max())


def test_registered_and_its_state_dict_names_a_shared_table_under_each_name():
    assert MODELS["seq2seq"] == (Seq2SeqConfig, Seq2Seq)
    model = model_for("paper")
    state = model.state_dict()
    assert {"src_embed.wte.weight", "tgt_embed.wte.weight", "lm_head.weight", "lm_head.bias"} <= set(state)
    assert state["tgt_embed.wte.weight"] is state["src_embed.wte.weight"] is state["lm_head.weight"]
    other = model_for("paper", rng=1)
    other.load_state_dict({name: to_numpy(a) for name, a in state.items()})
    assert other.tgt_embed.wte.weight is other.src_embed.wte.weight  # loading keeps the tie
    np.testing.assert_array_equal(to_numpy(other.lm_head.weight.data), to_numpy(model.lm_head.weight.data))
    assert dataclasses.asdict(Seq2SeqConfig.from_checkpoint(dataclasses.asdict(model.config), "here")) == \
        dataclasses.asdict(model.config)


@pytest.mark.parametrize("changes, message", [
    (dict(vocab_size=0), "vocab_size must be a positive integer, got 0"),
    (dict(block_size=2.5), "block_size must be a positive integer, got 2.5"),
    (dict(pos="rotary"), "pos must be one of .*'rotary'"),
    (dict(share_embeddings="yes"), "share_embeddings must be true or false, got 'yes'"),
    (dict(d_model=10), "d_model 10 is not divisible by nhead 3"),
    (dict(activation="swish"), "activation must be one of .*'swish'"),
    (dict(dropout=1.0), "dropout must be in .0, 1., got 1.0"),
])
def test_bad_configs_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        Seq2SeqConfig(**{**SIZES, **changes})
    with pytest.raises(ValueError, match="is not a Seq2Seq config"):
        Seq2SeqConfig.from_checkpoint({**SIZES, **changes}, "ckpt")


def test_bad_inputs_are_named():
    model = model_for("paper", dropout=0.1)
    src, tgt = padded_ids(np.random.default_rng(6))
    with pytest.raises(ValueError, match=r"src token ids of shape \(B, L\) and integer dtype, got \(2, 7\) float64"):
        model(asarray(np.zeros((B, S))), tgt)
    with pytest.raises(ValueError, match="tgt length 10 exceeds block_size 9"):
        model(src, asarray(np.ones((B, 10), dtype=np.int64)))
    with pytest.raises(ValueError, match="same batch size, got 2 and 1"):
        model(src, tgt[:1])
    with pytest.raises(ValueError, match="13"):  # the embedding names the id out of range
        model(src, tgt + 13)
    with pytest.raises(RuntimeError, match="call model.eval"):
        model.decode_step(tgt[:, :1], model.encode(src))
    model.eval()
    cache = model.encode(src, capacity=2)
    with pytest.raises(ValueError, match=r"one token per source, \(B, 1\) = \(2, 1\), got \(2, 2\)"):
        model.decode_step(tgt[:, :2], cache)
    model.decode_step(tgt[:, :1], cache)
    model.decode_step(tgt[:, :1], cache)
    with pytest.raises(ValueError, match="target length 3 exceeds the cache's capacity 2"):
        model.decode_step(tgt[:, :1], cache)
    with pytest.raises(ValueError, match="vocab_size is not set"):
        Seq2Seq(Seq2SeqConfig(**{**SIZES, "vocab_size": None}))
