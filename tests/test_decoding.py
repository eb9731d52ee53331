"""minilm.training.decoding: greedy and beam search over a Seq2Seq, cached against recomputed, beam search against
an exhaustive search of every target, scores against the full forward, and the errors."""

import itertools

import numpy as np
import pytest

from minilm.backend import asarray
from minilm.models import Seq2Seq, Seq2SeqConfig
from minilm.training.decoding import _search, beam_search, greedy, log_softmax
from minilm.verify.check_cases import vary_constants

PAD, BOS, EOS = 0, 1, 2
V = 5  # [PAD] [BOS] [EOS] and two ordinary tokens: few enough targets to list them all
SIZES = dict(vocab_size=V, block_size=6, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
             dim_feedforward=16, dropout=0.0)


def model_and_sources(seed, norm_first=False, b=3, s=4):
    rng = np.random.default_rng(seed)
    model = vary_constants(Seq2Seq(Seq2SeqConfig(**SIZES, norm_first=norm_first), rng=rng), rng, scale=0.5)
    src = rng.integers(3, V, (b, s))  # (b, s)
    src[-1, -2:] = PAD  # the last source is shorter
    return model.to("float64").eval(), src


def normalised_log_p(model, src_row, tokens, alpha):
    """log p(tokens | src) / ((5 + |tokens|) / 6)^α from one full forward (tokens may end in [EOS])."""
    prefix = np.array([[BOS, *tokens[:-1]]])
    log_p = log_softmax(model(asarray(src_row[None]), asarray(prefix)))[0]  # (|tokens|, V)
    return log_p[np.arange(len(tokens)), tokens].sum() / ((5 + len(tokens)) / 6) ** alpha


@pytest.mark.parametrize("seed, norm_first", [(0, False), (1, True), (2, False)])
def test_the_cache_gives_the_same_tokens_and_scores_as_recomputing(seed, norm_first):
    model, src = model_and_sources(seed, norm_first)
    assert greedy(model, src, BOS, EOS) == greedy(model, src, BOS, EOS, use_cache=False)
    cached, cached_scores = beam_search(model, src, BOS, EOS, beam=3)
    recomputed, recomputed_scores = beam_search(model, src, BOS, EOS, beam=3, use_cache=False)
    assert cached == recomputed
    np.testing.assert_allclose(cached_scores, recomputed_scores, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_beam_wide_enough_finds_the_best_of_every_target(seed, alpha):
    """max_len 3: every finished target (up to 2 tokens, then [EOS]) and every unfinished one of 3 tokens, 15
    in all ([PAD] and [BOS] are never produced), each scored by a full forward; a beam of 100 never prunes, so
    it must return their best."""
    model, src = model_and_sources(seed)
    others = [t for t in range(V) if t not in (PAD, BOS, EOS)]
    targets = [list(body) + [EOS] for n in range(3) for body in itertools.product(others, repeat=n)]
    targets += [list(body) for body in itertools.product(others, repeat=3)]
    found, scores = beam_search(model, src, BOS, EOS, beam=100, length_penalty=alpha, max_len=3)
    for b in range(len(src)):
        scored = [normalised_log_p(model, src[b], t, alpha) for t in targets]
        best = targets[int(np.argmax(scored))]
        assert found[b] == [t for t in best if t != EOS], (b, found[b], best)
        np.testing.assert_allclose(scores[b], max(scored), rtol=1e-12)


def test_beam_width_one_is_greedy_and_scores_are_the_forwards():
    model, src = model_and_sources(4)
    targets = greedy(model, src, BOS, EOS)
    assert beam_search(model, src, BOS, EOS, beam=1, length_penalty=0.0)[0] == targets
    found, scores = beam_search(model, src, BOS, EOS, beam=4, length_penalty=0.6)
    for b, tokens in enumerate(found):
        ended = len(tokens) < SIZES["block_size"]  # a target shorter than max_len ended with [EOS]
        np.testing.assert_allclose(scores[b], normalised_log_p(model, src[b], tokens + [EOS] * ended, 0.6),
                                   rtol=1e-12)


def test_a_wider_beam_never_scores_worse_on_these_sources():
    model, src = model_and_sources(5, b=4)
    narrow = beam_search(model, src, BOS, EOS, beam=1, length_penalty=0.0)[1]
    wide = beam_search(model, src, BOS, EOS, beam=5, length_penalty=0.0)[1]
    assert np.all(wide >= narrow - 1e-12)


def test_pad_and_bos_are_never_produced_even_where_the_model_prefers_them():
    model, src = model_and_sources(7)
    model.lm_head.bias.data[[PAD, BOS]] += 100.0  # every step's favourites, by far
    for tokens in greedy(model, src, BOS, EOS) + beam_search(model, src, BOS, EOS, beam=3)[0]:
        assert PAD not in tokens and BOS not in tokens


class OneLikelyTarget:
    """A stand-in for the model's steps: "a" with p 0.9 and [EOS] with 0.1 until five a's, then [EOS] with 0.99."""

    def __call__(self, prefix):  # prefix (R, t + 1)
        t = prefix.shape[1] - 1
        p = np.full((len(prefix), 4), 1e-9)
        p[:, [EOS, 3]] = (0.99, 0.01) if t == 5 else (0.1, 0.9)
        return np.log(p)

    def keep(self, rows):
        pass


@pytest.mark.parametrize("k", [1, 2, 4])
def test_unlikely_early_ends_do_not_stop_the_search_before_the_likely_target_finishes(k):
    """a a a a a [EOS] has p 0.9⁵ · 0.99 = 0.58; every earlier [EOS] at most 0.1. Stopping at the first k finished
    targets (the rule this replaced) returned [EOS] alone for k = 2 and 4."""
    finished = _search(OneLikelyTarget(), 1, k, BOS, EOS, 0.0, 10)
    score, tokens = max(finished[0])
    assert tokens == [3] * 5 and score == pytest.approx(5 * np.log(0.9) + np.log(0.99))


def test_the_model_keeps_its_mode_and_bad_settings_are_named():
    model, src = model_and_sources(6)
    model.train()
    greedy(model, src, BOS, EOS)
    assert model.training
    with pytest.raises(ValueError, match="beam width must be at least 1, got 0"):
        beam_search(model, src, BOS, EOS, beam=0)
    with pytest.raises(ValueError, match="length_penalty must be at least 0, got -0.5"):
        beam_search(model, src, BOS, EOS, length_penalty=-0.5)
    with pytest.raises(ValueError, match="max_len must be in 1 … block_size 6, got 7"):
        greedy(model, src, BOS, EOS, max_len=7)
