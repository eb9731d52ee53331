import argparse
import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_close
from minilm import to_numpy
from minilm.backend import asarray
from minilm.files.checkpoint import save_checkpoint
from minilm.data import BPETokenizer, CharTokenizer, tokenizer_from_dict
from minilm.models import GPT, GPTConfig
from minilm.nn.kv_cache import KVCache
from minilm.cli.sample import add_arguments, run
from minilm.files.loader import load_model
from minilm.training.sampling import generate, next_logits, next_token_probs, sample_next

# every size different: V, block, L, H, C, hs = C / H
TINY = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12)
VARIANTS = [dict(pos=p, norm=n) for p, n in itertools.product(["learned", "sinusoidal"], ["pre", "post"])]


def variant_id(v):
    return f"{v['pos']}-{v['norm']}"


def tiny_model(dtype="float64", seed=0, **overrides):
    return GPT(GPTConfig(**{**TINY, **overrides}), rng=seed).to(dtype).eval()


def tokens(seed, b, t, vocab_size=TINY["vocab_size"]):
    return np.random.default_rng(seed).integers(0, vocab_size, (b, t))


def cached_logits(model, ids, chunks):
    """Logits (B, T, V) of ids (B, T) fed through one KVCache in pieces of the given sizes."""
    cache, out, start = model.new_cache(), [], 0
    for size in chunks:
        out.append(to_numpy(model.forward_cached(asarray(ids[:, start:start + size]), cache)))
        start += size
    assert cache.length == start == ids.shape[1]
    return np.concatenate(out, axis=1)


# ---- the cache: cached logits equal full recomputation --------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_cached_logits_equal_full_recomputation_at_every_step(variant, dtype):
    model = tiny_model(dtype, **variant)
    ids = tokens(1, 3, TINY["block_size"])  # (B, T) filling the whole context
    full = to_numpy(model(asarray(ids)))  # (B, T, V)
    # a prefill of 3, then one token at a time, then two at once (the offset causal mask inside a chunk)
    got = cached_logits(model, ids, [3, 1, 1, 1, 2, 1])
    assert got.dtype == full.dtype == np.dtype(dtype)
    for t in range(ids.shape[1]):
        assert_close(got[:, t], full[:, t], dtype, f"position {t}")


def test_one_token_at_a_time_from_the_first_is_float64_exact():
    model = tiny_model(bias=False, tie_weights=False)
    ids = tokens(2, 2, TINY["block_size"])
    np.testing.assert_allclose(cached_logits(model, ids, [1] * ids.shape[1]), to_numpy(model(asarray(ids))),
                               rtol=0, atol=1e-12)


@given(b=st.integers(1, 3), chunks=st.lists(st.integers(1, 4), min_size=1, max_size=5).filter(lambda c: sum(c) <= 9),
       pos=st.sampled_from(["learned", "sinusoidal"]), norm=st.sampled_from(["pre", "post"]))
def test_any_chunking_equals_full_recomputation(b, chunks, pos, norm):
    model = tiny_model(pos=pos, norm=norm)
    ids = tokens(sum(chunks), b, sum(chunks))
    assert_close(cached_logits(model, ids, chunks), to_numpy(model(asarray(ids))), "float64", f"chunks {chunks}")


def test_cache_holds_keys_and_values_of_every_position_seen():
    model = tiny_model()
    cache = model.new_cache()
    B, T, L, H, hs = 2, 5, TINY["n_layer"], TINY["n_head"], TINY["n_embd"] // TINY["n_head"]
    model.forward_cached(asarray(tokens(3, B, T)), cache)
    assert cache.length == T
    for layer in cache.layers:
        assert layer.keys.shape == layer.values.shape == (B, H, T, hs)
    # the memory: 2·L·B·H·T·hs numbers, allocated once for T = block_size
    assert cache.num_elements() == 2 * L * B * H * TINY["block_size"] * hs
    cache.reset()
    assert cache.length == 0 and all(layer.keys.shape[2] == 0 for layer in cache.layers)


def test_cached_forward_refuses_what_it_cannot_do():
    model = tiny_model()
    cache = model.new_cache()
    model.forward_cached(asarray(tokens(4, 1, 7)), cache)
    with pytest.raises(ValueError, match=r"sequence length 10 \(7 cached \+ 3 new\) exceeds block_size 9"):
        model.forward_cached(asarray(tokens(5, 1, 3)), cache)
    with pytest.raises(ValueError, match=r"the cache holds \(B, H, hs\) = \(1, 2, 6\)"):
        model.forward_cached(asarray(tokens(5, 2, 1)), cache)
    with pytest.raises(ValueError, match="the cache has 3 layers, the model 2"):
        model.forward_cached(asarray(tokens(5, 1, 1)), KVCache(3, 9))
    dropout_model = GPT(GPTConfig(**TINY, dropout=0.1), rng=0).train()
    with pytest.raises(RuntimeError, match="call model.eval"):
        dropout_model.forward_cached(asarray(tokens(5, 1, 1)), dropout_model.new_cache())


def test_non_causal_attention_takes_a_cache_one_position_at_a_time():
    from minilm.nn.attention import MultiHeadAttention
    from minilm.nn.kv_cache import LayerKV

    attn = MultiHeadAttention(12, 2, causal=False, rng=0)
    with pytest.raises(ValueError, match="takes one new position at a time .got 2.: causal=False would let old"):
        attn(asarray(np.zeros((1, 2, 12))), cache=LayerKV(4))


# ---- past block_size: the cache is rebuilt, and results equal nanoGPT's cropped window ------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_next_logits_past_block_size_equal_the_cropped_window(variant):
    model = tiny_model(**variant)
    bs = TINY["block_size"]
    context = tokens(6, 2, 2 * bs + 3)
    cache = model.new_cache()
    for n in range(1, context.shape[1] + 1):  # one growing context, as generate feeds it
        ids = context[:, :n]
        expected = to_numpy(model(asarray(ids[:, -bs:])))[:, -1]  # nanoGPT: recompute the last block_size tokens
        assert_close(to_numpy(next_logits(model, ids, cache)), expected, "float64", f"context length {n}")
        assert cache.length == min(n, bs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_cached_generation_equals_uncached_token_for_token_past_block_size(variant, dtype):
    model = tiny_model(dtype, **variant)
    prompt = tokens(7, 2, 4)
    n = 3 * TINY["block_size"]  # well past block_size
    for settings in (dict(), dict(temperature=0.8, top_k=5), dict(temperature=1.3, top_p=0.9), dict(temperature=0)):
        cached = generate(model, prompt, n, rng=11, **settings)
        uncached = generate(model, prompt, n, rng=11, use_cache=False, **settings)
        assert cached.shape == (2, 4 + n)
        np.testing.assert_array_equal(cached, uncached, err_msg=str(settings))
        np.testing.assert_array_equal(cached[:, :4], prompt)


# ---- sampling -------------------------------------------------------------------------------------------

def test_greedy_is_the_argmax_at_every_step():
    model = tiny_model(seed=3)
    ids = generate(model, tokens(8, 2, 3), 2 * TINY["block_size"], temperature=0)
    bs = TINY["block_size"]
    for n in range(3, ids.shape[1]):
        logits = to_numpy(model(asarray(ids[:, max(0, n - bs):n])))[:, -1]  # (B, V)
        np.testing.assert_array_equal(ids[:, n], logits.argmax(axis=-1), err_msg=f"token {n}")


def test_top_k_1_equals_greedy():
    model = tiny_model(seed=4)
    prompt = tokens(9, 3, 2)
    np.testing.assert_array_equal(generate(model, prompt, 15, temperature=1.0, top_k=1, rng=5),
                                  generate(model, prompt, 15, temperature=0))


def hand_made_logits():
    # row 0: probabilities 0.05, 0.45, 0.12, 0.30, 0.08 (sorted: 0.45, 0.30, 0.12, 0.08, 0.05;
    #        cumulative 0.45, 0.75, 0.87, 0.95, 1); row 1: the same, reversed
    p = np.array([0.05, 0.45, 0.12, 0.30, 0.08])
    return asarray(np.log(np.stack([p, p[::-1]]))), p


@pytest.mark.parametrize("top_p, kept", [(0.3, [1]), (0.44, [1]), (0.46, [1, 3]), (0.7, [1, 3]), (0.8, [1, 3, 2]),
                                         (0.9, [1, 3, 2, 4]), (1.0, [0, 1, 2, 3, 4])])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, kept):
    logits, p = hand_made_logits()
    probs = to_numpy(next_token_probs(logits, top_p=top_p))  # (2, 5)
    expected = np.zeros(5)
    expected[kept] = p[kept] / p[kept].sum()  # the kept tokens, renormalised
    np.testing.assert_allclose(probs[0], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs[1], expected[::-1], rtol=1e-12, atol=1e-15)


def test_top_k_keeps_the_k_largest_and_temperature_reshapes():
    logits, p = hand_made_logits()
    probs = to_numpy(next_token_probs(logits, top_k=2))
    np.testing.assert_allclose(probs[0], [0, 0.6, 0, 0.4, 0], atol=1e-12)
    # softmax(log p / T) = p^(1/T) / Σ p^(1/T)
    hot = to_numpy(next_token_probs(logits, temperature=2.0))[0]
    np.testing.assert_allclose(hot, np.sqrt(p) / np.sqrt(p).sum(), rtol=1e-12)
    assert to_numpy(next_token_probs(logits, top_k=100)).shape == (2, 5)  # k above V keeps everything


def test_draws_follow_the_probabilities():
    logits, p = hand_made_logits()
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample_next(logits, rng=rng) for _ in range(2000)]).reshape(-1, 2)  # (2000, B)
    freq = np.bincount(draws[:, 0], minlength=5) / len(draws)
    np.testing.assert_allclose(freq, p, atol=0.03)  # ~3 standard errors of a 2000-draw frequency
    assert set(np.unique(draws[:, 1])) <= {0, 1, 2, 3, 4}
    assert sample_next(logits, top_p=0.7, rng=0).tolist()[0] in (1, 3)


def test_a_fixed_seed_reproduces_and_another_differs():
    model = tiny_model(seed=5)
    prompt = tokens(10, 1, 3)
    first = generate(model, prompt, 30, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(first, generate(model, prompt, 30, rng=np.random.default_rng(42)))
    assert not np.array_equal(first, generate(model, prompt, 30, rng=np.random.default_rng(43)))


def test_generate_restores_the_training_mode():
    model = tiny_model().train()
    generate(model, tokens(1, 1, 2), 3, rng=0)
    assert all(m.training for _, m in model.named_modules())
    model.eval()
    generate(model, tokens(1, 1, 2), 3, rng=0)
    assert not any(m.training for _, m in model.named_modules())


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.5), "temperature must be a number >= 0 .* got -0.5"),
    (dict(temperature=float("nan")), "temperature must be a number >= 0 .* got nan"),
    (dict(top_k=0), "top_k must be a positive integer, got 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0.0"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
])
def test_bad_sampling_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tiny_model(), tokens(1, 1, 2), 3, **kwargs)


def test_bad_generate_input_is_named():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 0, got -1"):
        generate(model, tokens(1, 1, 2), -1)
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        generate(model, np.array([1, 2]), 3)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, np.zeros((1, 0), dtype=np.int64), 3)
    with pytest.raises(ValueError, match="token id 11 out of range for vocab_size 11"):
        generate(model, np.array([[11]]), 3)
    assert generate(model, tokens(1, 2, 3), 0).shape == (2, 3)


# ---- checkpoints and the command ------------------------------------------------------------------------

TEXT = "to be, or not to be: that is the question.\n"


def save_tiny(folder, seed=0, **overrides):
    tok = CharTokenizer.from_text(TEXT)
    config = GPTConfig(**{**TINY, **overrides, "vocab_size": tok.vocab_size})
    model = GPT(config, rng=seed)
    save_checkpoint(folder, model.state_dict(), {"model": dataclasses.asdict(config), "train": {}},
                    tokenizer=tok.to_dict())
    return model, tok


def test_load_model_rebuilds_the_saved_model_and_tokenizer(tmp_path):
    model, tok = save_tiny(tmp_path / "ckpt", pos="sinusoidal", norm="post")
    loaded, loaded_tok, ckpt = load_model(tmp_path / "ckpt")
    assert loaded_tok == tok and ckpt.path == tmp_path / "ckpt"
    ids = asarray(tok.encode("not to be")[None, :])
    np.testing.assert_array_equal(to_numpy(loaded(ids)), to_numpy(model(ids)))


def test_load_model_prefers_best_then_latest_in_a_training_folder(tmp_path):
    save_tiny(tmp_path / "out" / "latest", seed=1)
    assert load_model(tmp_path / "out")[2].path == tmp_path / "out" / "latest"
    save_tiny(tmp_path / "out" / "best", seed=2)
    assert load_model(tmp_path / "out")[2].path == tmp_path / "out" / "best"


def test_missing_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"checkpoint folder {tmp_path / 'nowhere'} does not exist"):
        load_model(tmp_path / "nowhere")
    save_tiny(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="checkpoint model.safetensors is truncated or corrupt"):
        load_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "manifest.json").unlink()  # without the manifest, safetensors itself must notice
    with pytest.raises(ValueError, match="checkpoint model.safetensors is truncated or corrupt"):
        load_model(tmp_path / "ckpt")


def test_tokenizer_types_are_named():
    assert tokenizer_from_dict(CharTokenizer("ab").to_dict()) == CharTokenizer("ab")
    bpe = BPETokenizer.train("abcabcabd " * 20, 260)
    assert tokenizer_from_dict(bpe.to_dict()) == bpe
    with pytest.raises(ValueError, match="unknown tokenizer type 'sentencepiece'"):
        tokenizer_from_dict({"type": "sentencepiece"})


def run_command(argv, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    code = run(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_run_prints_the_prompt_and_the_generated_text(tmp_path, capsys):
    save_tiny(tmp_path / "ckpt")
    argv = ["--ckpt", str(tmp_path / "ckpt"), "--prompt", "to be", "--max-new-tokens", "25", "--seed", "3"]
    code, out = run_command(argv, capsys)
    assert code == 0
    text = out[:-1]  # print's newline
    assert text.startswith("to be") and len(text) == len("to be") + 25
    assert set(text) <= set(TEXT)
    assert run_command(argv + ["--no-cache"], capsys) == (0, out)  # the same text without the cache
    assert run_command(argv, capsys) == (0, out)  # and the same seed, the same text
    assert run_command(argv + ["--top-k", "3", "--top-p", "0.9", "--temperature", "0.7"], capsys)[0] == 0


def test_run_names_a_prompt_character_outside_the_vocabulary(tmp_path, capsys):
    save_tiny(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"character 'Z' \(U\+005A\) at position 3 is not in the vocabulary"):
        run_command(["--ckpt", str(tmp_path / "ckpt"), "--prompt", "to Zed"], capsys)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_command(["--ckpt", str(tmp_path / "missing")], capsys)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        run_command(["--ckpt", str(tmp_path / "ckpt"), "--temperature", "-1"], capsys)
