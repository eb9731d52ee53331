"""NGram: Kneser-Ney and add-k against a one-probability-at-a-time reference, the project's evaluation on its
log-probabilities, the checkpoint round trip, and the errors it names."""

import dataclasses
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minilm.backend import to_numpy
from minilm.data import CharTokenizer, load_text, split
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.models.ngram import NGram, NGramConfig
from minilm.nn.loss import CrossEntropyLoss
from minilm.training.evaluation import estimate, split_loss
from minilm.training.objectives import CausalLM
from minilm.verify.tolerances import TORCH

# the model and the reference compute the same formula in float64, only in another order: TORCH["float64"]
TOL = dict(rtol=TORCH["float64"]["rtol"], atol=TORCH["float64"]["atol"])

TRAIN_TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat.\n"
HELD_OUT = "the dog and the cat sat. on a log the mat met a dog"  # unseen contexts, e.g. "g a", "d t"
CHARS = sorted(set(TRAIN_TEXT + HELD_OUT)) + ["#", "%"]  # two tokens never seen in training
V = len(CHARS)


def encode(text):
    return np.array([CHARS.index(ch) for ch in text], dtype=np.int64)


class Reference:
    """The model as the module docstring states it, one probability at a time, from plain dict counts."""

    def __init__(self, ids, vocab_size, n, smoothing="kneser-ney", k=0.03, d=0.75):
        self.V, self.n, self.smoothing, self.k, self.d = vocab_size, n, smoothing, k, d
        self.counts = {}  # gram (a tuple of ids, any order 1 … n) -> how often it occurs
        for m in range(1, n + 1):
            for i in range(len(ids) - m + 1):
                gram = tuple(int(x) for x in ids[i:i + m])
                self.counts[gram] = self.counts.get(gram, 0) + 1
        self.left = {}  # gram -> the distinct tokens seen just before it
        for gram in self.counts:
            if len(gram) > 1:
                self.left.setdefault(gram[1:], set()).add(gram[0])

    def count(self, gram, top):
        """c(gram) at the top order, the continuation count N1+(•gram) below it."""
        return self.counts.get(gram, 0) if top else len(self.left.get(gram, ()))

    def prob(self, w, h, top=True):
        c = [self.count(h + (v,), top) for v in range(self.V)]
        total = sum(c)
        if not h or self.smoothing == "add-k":
            return (c[w] + self.k) / (total + self.k * self.V)
        lower = self.prob(w, h[1:], top=False)
        if total == 0:
            return lower
        kinds = sum(1 for x in c if x > 0)
        return max(c[w] - self.d, 0) / total + self.d * kinds / total * lower

    def probs(self, row):
        """(T, V): position t reads the up to n - 1 tokens of ``row`` ending at t."""
        row = [int(x) for x in row]
        return np.array([[self.prob(w, tuple(row[max(0, t - self.n + 2):t + 1])) for w in range(self.V)]
                         for t in range(len(row))])


def fitted(n, smoothing="kneser-ney", block_size=64, ids=None, **kw):
    cfg = NGramConfig(vocab_size=V, n=n, smoothing=smoothing, block_size=block_size, **kw)
    return NGram(cfg).fit(encode(TRAIN_TEXT) if ids is None else ids).to(np.float64)


def rows():
    """Two rows of held-out text (B = 2, T = 19)."""
    held = encode(HELD_OUT)
    return np.stack([held[:19], held[19:38]])  # (2, 19)


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_matches_the_reference(n, smoothing):
    model, ref = fitted(n, smoothing), Reference(encode(TRAIN_TEXT), V, n, smoothing)
    idx = rows()
    if n == 4:  # the rows hold contexts never seen in training ("g a"), so the back-off is checked too
        assert any(tuple(idx[b, t - n + 2:t + 1]) not in ref.counts for b in range(2) for t in range(n - 2, 19))
    p = np.exp(to_numpy(model(idx)))  # (B, T, V)
    for b in range(idx.shape[0]):
        np.testing.assert_allclose(p[b], ref.probs(idx[b]), **TOL, err_msg=f"n={n} {smoothing} row {b}")


@given(data=st.data(), vocab=st.integers(2, 6), n=st.integers(1, 5), B=st.integers(1, 3), T=st.integers(1, 8),
       smoothing=st.sampled_from(["kneser-ney", "add-k"]), k=st.sampled_from([1.0, 0.1, 0.01]),
       d=st.sampled_from([0.3, 0.75, 1.0]))
def test_matches_the_reference_on_random_counts_and_shapes(data, vocab, n, smoothing, k, d, B, T):
    train = np.array(data.draw(st.lists(st.integers(0, vocab - 1), min_size=n, max_size=60)), dtype=np.int64)
    idx = np.array(data.draw(st.lists(st.integers(0, vocab - 1), min_size=B * T, max_size=B * T))).reshape(B, T)
    cfg = NGramConfig(vocab_size=vocab, n=n, smoothing=smoothing, k=k, discount=d, block_size=8)
    p = np.exp(to_numpy(NGram(cfg).fit(train).to(np.float64)(idx)))  # (B, T, V)
    ref = Reference(train, vocab, n, smoothing, k, d)
    for b in range(B):
        np.testing.assert_allclose(p[b], ref.probs(idx[b]), **TOL)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, **TOL)


def test_add_k_by_hand():
    # train 0 1 0 1 0 2, V = 4: c(0 1) = 2, c(0 2) = 1, c(0) = 3; c(1 0) = 2, c(1) = 2; context 3 never seen
    cfg = NGramConfig(vocab_size=4, n=2, smoothing="add-k", k=0.5, block_size=4)
    p = np.exp(to_numpy(NGram(cfg).fit(np.array([0, 1, 0, 1, 0, 2])).to(np.float64)(np.array([[0, 1, 3]]))))[0]
    np.testing.assert_allclose(p[0], [0.5 / 5, 2.5 / 5, 1.5 / 5, 0.5 / 5], **TOL)  # (c(0w) + k) / (c(0) + kV)
    np.testing.assert_allclose(p[1], [2.5 / 4, 0.5 / 4, 0.5 / 4, 0.5 / 4], **TOL)
    np.testing.assert_allclose(p[2], [0.25] * 4, **TOL)  # unseen context: uniform


def test_kneser_ney_bigram_by_hand():
    # same train, d = 0.5, k = 1: continuation counts N1+(•0) = 1 (1 0), N1+(•1) = 1, N1+(•2) = 1, N1+(•3) = 0,
    # so p_1 = (1 + 1, 1 + 1, 1 + 1, 0 + 1) / (3 + 4); context 0: c = (0, 2, 1, 0), c(0) = 3, N1+(0•) = 2
    cfg = NGramConfig(vocab_size=4, n=2, k=1.0, discount=0.5, block_size=4)
    p = np.exp(to_numpy(NGram(cfg).fit(np.array([0, 1, 0, 1, 0, 2])).to(np.float64)(np.array([[0, 3]]))))[0]
    p1 = np.array([2, 2, 2, 1]) / 7
    np.testing.assert_allclose(p[0], (np.maximum(np.array([0, 2, 1, 0]) - 0.5, 0) + 0.5 * 2 * p1) / 3, **TOL)
    np.testing.assert_allclose(p[1], p1, **TOL)  # context 3 unseen: the continuation unigram alone


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_rows_sum_to_one(smoothing, dtype):
    ids = np.random.default_rng(0).integers(0, V, (3, 40))  # mostly unseen contexts, and the unseen tokens
    for n in range(1, 7):
        logp = to_numpy(fitted(n, smoothing).to(dtype)(ids))
        assert logp.dtype == dtype and np.isfinite(logp).all()
        np.testing.assert_allclose(np.exp(logp.astype(np.float64)).sum(axis=-1), 1.0,
                                   rtol=TORCH["float32" if dtype == np.float32 else "float64"]["rtol"])


def test_an_unseen_context_backs_off_to_the_lower_order():
    ref = Reference(encode(TRAIN_TEXT), V, 3)
    model = fitted(3)
    for context in ("e.", "#%", "g#"):  # "e." and "#%" never seen; "g#" ends in a token never seen at all
        h = tuple(int(x) for x in encode(context))
        assert ref.counts.get(h, 0) == 0
        p = np.exp(to_numpy(model(encode(context)[None])))[0, -1]  # (V,)
        lower = [ref.prob(w, h[1:], top=False) for w in range(V)]  # λ = 1: the lower order alone
        np.testing.assert_allclose(p, lower, **TOL)
    seen = np.exp(to_numpy(model(encode("th")[None])))[0, -1]
    assert not np.allclose(seen, np.exp(to_numpy(model(encode("#h")[None])))[0, -1])  # a seen context differs


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_a_row_start_reads_the_shorter_model(smoothing):
    idx = rows()
    p4 = to_numpy(fitted(4, smoothing)(idx))
    np.testing.assert_allclose(p4[:, 0], to_numpy(fitted(2, smoothing)(idx))[:, 0], **TOL)
    np.testing.assert_allclose(p4[:, 1], to_numpy(fitted(3, smoothing)(idx))[:, 1], **TOL)
    shifted = to_numpy(fitted(4, smoothing)(idx[:, 5:]))  # the same 3 tokens before: the same prediction
    np.testing.assert_allclose(p4[:, 7:], shifted[:, 2:], **TOL)


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_unigram_is_add_k_on_the_counts(smoothing):
    train = encode(TRAIN_TEXT)
    p = np.exp(to_numpy(fitted(1, smoothing, k=0.5)(rows())))  # (B, T, V)
    expected = (np.bincount(train, minlength=V) + 0.5) / (len(train) + 0.5 * V)
    np.testing.assert_allclose(p, np.broadcast_to(expected, p.shape), **TOL)


def test_cross_entropy_on_the_log_probs_is_the_nll_so_evaluation_works_unchanged():
    model, ref = fitted(3, block_size=12), Reference(encode(TRAIN_TEXT), V, 3)
    val = encode(HELD_OUT)
    cfg = types.SimpleNamespace(batch_size=2, block_size=12, eval_iters=3)
    windows = [val[s:s + 13] for s in range(0, len(val) - 12, 12)]  # objectives.CausalLM.every_batch's windows
    nll = [-np.log(ref.probs(w[:-1])[np.arange(12), w[1:]]) for w in windows]
    np.testing.assert_allclose(split_loss(model, val, cfg), np.mean(nll), **TOL)

    loss, metric = estimate(model, val, cfg, np.random.default_rng(5))  # random windows, as in training
    rng, expected = np.random.default_rng(5), []
    for _ in range(3):
        (x,), y = CausalLM().batch(val, 2, 12, rng)
        logp = to_numpy(model(x))
        expected.append(-np.take_along_axis(logp, to_numpy(y)[..., None], axis=-1).mean())
        assert float(CrossEntropyLoss()(model(x), y)) == pytest.approx(expected[-1], rel=1e-12)
    assert metric is None and loss == pytest.approx(np.mean(expected), rel=1e-12)


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_checkpoint_round_trip(tmp_path, smoothing):
    model = fitted(4, smoothing)
    state = model.state_dict()
    assert list(state) == [f"order{m}_{what}" for m in range(1, 5) for what in ("codes", "counts")]
    assert all(a.dtype == np.int64 and a.ndim == 1 for a in state.values())
    config = {"model_type": "ngram", "model": dataclasses.asdict(model.config)}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ngram", state, config))
    cfg = NGramConfig.from_checkpoint(ckpt.config["model"], ckpt.path)
    assert cfg == model.config
    loaded = NGram(cfg).load_state_dict(ckpt.model_state).to(np.float64)
    np.testing.assert_array_equal(to_numpy(loaded(rows())), to_numpy(model(rows())))


def test_load_refuses_counts_fit_would_not_write():
    state = fitted(3).state_dict()
    with pytest.raises(ValueError, match="missing keys: order3_counts"):
        NGram(NGramConfig(vocab_size=V, n=3)).load_state_dict({k: v for k, v in state.items() if k != "order3_counts"})
    shuffled = {**state, "order2_codes": state["order2_codes"][::-1].copy()}
    with pytest.raises(ValueError, match="order2_codes must be distinct sorted codes"):
        NGram(NGramConfig(vocab_size=V, n=3)).load_state_dict(shuffled)
    keep = state["order2_codes"] != state["order3_codes"][0] % V**2  # drop the last two tokens of a trigram
    dropped = {**state, "order2_codes": state["order2_codes"][keep], "order2_counts": state["order2_counts"][keep]}
    with pytest.raises(ValueError, match="order3_codes holds an n-gram whose last 2 tokens are not in order2_codes"):
        NGram(NGramConfig(vocab_size=V, n=3)).load_state_dict(dropped)
    with pytest.raises(ValueError, match="order1_counts must all be at least 1"):
        NGram(NGramConfig(vocab_size=V, n=3)).load_state_dict({**state, "order1_counts": 0 * state["order1_counts"]})


def test_to_changes_the_output_dtype_and_keeps_the_counts():
    model = fitted(3).to(np.float32)
    assert to_numpy(model(rows())).dtype == np.float32
    assert all(p.data.dtype == np.int64 for p in model.parameters())
    with pytest.raises(ValueError, match="floating-point dtype"):
        model.to(np.int32)


@pytest.mark.parametrize("field, value, message", [
    ("n", 0, "n must be a positive integer, got 0"),
    ("n", 2.5, "n must be a positive integer, got 2.5"),
    ("n", True, "n must be a positive integer, got True"),
    ("vocab_size", -3, "vocab_size must be a positive integer"),
    ("block_size", 0, "block_size must be a positive integer"),
    ("smoothing", "good-turing", "smoothing must be 'kneser-ney' or 'add-k', got 'good-turing'"),
    ("k", 0.0, "k must be positive"),
    ("k", float("nan"), "k must be a finite number, got nan"),
    ("discount", 0.0, r"discount must be in \(0, 1\], got 0.0"),
    ("discount", 1.5, r"discount must be in \(0, 1\], got 1.5"),
    ("discount", "0.5", "discount must be a finite number, got '0.5'"),
])
def test_bad_config_values_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        NGramConfig(**{field: value})


def test_codes_that_overflow_int64_are_refused():
    NGramConfig(vocab_size=65, n=10)  # 65**10 < 2**63
    with pytest.raises(ValueError, match=r"vocab_size\*\*n = 50257\*\*5 does not fit the int64"):
        NGramConfig(vocab_size=50257, n=5)
    with pytest.raises(ValueError, match="is not a NGram config"):
        NGramConfig.from_checkpoint({"n": 3, "order": 2}, "ckpt")


def test_errors_are_named():
    model = NGram(NGramConfig(vocab_size=V, n=3, block_size=8))
    with pytest.raises(RuntimeError, match="NGram.forward before fit"):
        model(rows()[:, :8])
    model.fit(encode(TRAIN_TEXT))
    with pytest.raises(ValueError, match=f"token id {V} out of range for vocab_size {V}"):
        model(np.array([[0, V]]))
    with pytest.raises(ValueError, match="token id -1 out of range"):
        model.fit(np.array([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model(np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T\) and integer dtype"):
        model(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="a 1-D array of integer token ids"):
        model.fit(rows())
    with pytest.raises(ValueError, match="at least n = 3 tokens"):
        model.fit(np.array([0, 1]))
    with pytest.raises(RuntimeError, match="an n-gram model is counted, not trained by gradient"):
        model.backward(np.zeros((1, 4, V)))


def test_shakespeare_bigram_matches_the_known_figure():
    text = load_text()
    train, val = split(np.array(CharTokenizer.from_text(text).encode(text)))
    model = NGram(NGramConfig(n=2, block_size=len(val))).fit(train)
    logp = to_numpy(model(val[None, :-1]))[0]  # (N - 1, V): the whole val split as one row
    nll = -float(logp[np.arange(len(val) - 1), val[1:]].astype(np.float64).mean())
    assert 2.45 < nll < 2.52  # the bigram's val loss on this split, as in nanoGPT's and Karpathy's lectures


def test_minilm_train_model_ngram_counts_saves_and_samples(tmp_path, capsys):
    """The command line: counted on a small text, the val loss printed is split_loss's, the checkpoint loads back
    (minilm.load) to the same log-probabilities, minilm sample reads it, and --resume is refused by name."""
    import minilm
    from minilm.cli import main
    from minilm.data import CharTokenizer, split
    from minilm.training.config import TrainConfig
    from minilm.training.evaluation import split_loss

    text = "".join(f"line {i % 7}: the cat sat on the mat {i % 3}\n" for i in range(300))
    data = tmp_path / "text.txt"
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "ng"
    assert main(["train", "--model", "ngram", "--n", "3", "--data", str(data), "--out", str(out),
                 "--block-size", "32", "--sample-tokens", "30"]) == 0
    printed = capsys.readouterr().out
    model, tokenizer = minilm.load(out / "latest")
    _, val = split(tokenizer.encode(text))
    loss = split_loss(model, val, TrainConfig(block_size=32))
    assert f"val loss {loss:.4f} over the whole val split" in printed and model.config.n == 3
    assert main(["sample", "--ckpt", str(out), "--max-new-tokens", "20"]) == 0
    assert main(["train", "--model", "ngram", "--out", str(out), "--resume"]) == 2
    assert "an n-gram model has nothing to resume" in capsys.readouterr().err
