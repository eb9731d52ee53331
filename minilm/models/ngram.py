"""NGram: a token n-gram language model, counted on a corpus and smoothed (Kneser-Ney or add-k).

Where the course's history starts (issue 17: n-gram → RNN/LSTM → Transformer): predict the next token from the
n - 1 before it by counting how often each n-gram occurs in the train split. There is no gradient: ``fit``
counts, ``forward`` reads the probabilities off the counts, and ``backward`` is an error.

forward:  logp[b, t, w] = log p(w | h),   h = idx[b, t-n+2 … t], the n - 1 tokens of the row ending at t
add-k:    p(w|h) = (c(hw) + k) / (c(h) + kV)        c(h) = Σ_w c(hw); k = 1 is Laplace, k < 1 Lidstone.
          An unseen context (c(h) = 0) gives the uniform 1/V.
kneser-ney, interpolated, one discount d (Chen & Goodman 1998 §3):
          p_n(w|h) = max(c(hw) - d, 0) / c(h)  +  λ(h) · p_{n-1}(w|h'),      λ(h) = d · N1+(h•) / c(h)
          h' is h without its oldest token. The lower orders read continuation counts instead of c:
          N1+(•gw) = |{v : c(vgw) > 0}|, how many distinct tokens precede gw (a token that follows many
          contexts is a likely continuation of a new one; one frequent only after a single context is not):
          p_m(w|g) = max(N1+(•gw) - d, 0) / N1+(•g•)  +  d · N1+(g•) / N1+(•g•) · p_{m-1}(w|g')  1 < m < n
          p_1(w)   = (N1+(•w) + k) / (N1+(••) + kV)         the bottom: add-k, so an unseen token keeps p > 0
          N1+(g•) counts the w whose count (in the counts its level reads) is > 0, and N1+(•g•) = Σ_w N1+(•gw).
          λ is exactly the mass the discount took (a seen w gives up d ≤ 1 ≤ its count), so Σ_w p = 1.
          An unseen context (a zero denominator) has λ = 1: the lower order alone, a full back-off.
n = 1:    the unigram with add-k, (c(w) + k) / (N + kV), under either smoothing.
row start: position t of a row sees t + 1 tokens, so for t < n - 2 it reads the (t + 2)-gram model of the same
          smoothing, raw counts at its top order: what a model fitted with n = t + 2 would say, i.e. what one
          reading the window from its start knows. Nothing of a row reaches into the previous one.
shapes:   idx (B, T) integer ids < V, T ≤ block_size; logp (B, T, V), computed in float64 and returned in the
          model's dtype (float32 unless ``to``). exp(logp) sums to 1 over V, so log_softmax(logp) = logp and a
          CrossEntropyLoss on these "logits" is the model's exact negative log-likelihood.
state:    per order m = 1 … n, order{m}_codes (G_m,) int64: the distinct m-grams seen, each as the base-V
          number w_1 … w_m (w_1 most significant), sorted; order{m}_counts (G_m,) int64: how often each occurs.
          Memory grows with the distinct m-grams seen (at most the train length per order), never as V^n.
          Continuation counts and each context's run of grams are derived from these (fit, load_state_dict).
lookup:   a context g's grams are adjacent in the sorted codes (code // V = g's code), so one searchsorted
          per order finds every position's context and its run of grams is scattered into a dense (P, V) row.
backward: none: the model is counted by ``fit``, not trained by gradient, so ``backward`` raises; kept: nothing.
ref:      Chen & Goodman 1998, "An empirical study of smoothing techniques for language modeling" (Harvard
          TR-10-98): §2.1 additive, §2.7 Kneser-Ney, §3 its interpolated form; Jurafsky & Martin, Speech and
          Language Processing (3rd ed.), ch. 3
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.models.registry import config_from_fields
from minilm.nn.module import Module, Parameter

SMOOTHINGS = ("kneser-ney", "add-k")
MAX_CODE = 2**63 - 1  # the n-gram codes are int64 (safetensors-friendly), so V^n must stay below this


@dataclass
class NGramConfig:
    vocab_size: int = 65  # tokens; 65 distinct characters in tiny Shakespeare
    n: int = 6  # order: reads the n - 1 previous tokens (1 unigram, 2 bigram ...); 6: KN's best on tiny Shakespeare
    smoothing: str = "kneser-ney"  # "kneser-ney" (interpolated, Chen & Goodman's best simple method) or "add-k"
    # Laplace's k = 1 gives each unseen continuation of a context as much as a seen one, ruinous once most of the V^n grams are unseen (val
    # 2.59 nats at n = 6 on tiny Shakespeare); k = 0.03 is near add-k's best at n = 4 … 6 there (1.75 at n = 5)
    k: float = 0.03  # add-k's pseudo-count per (context, token), and the floor of Kneser-Ney's unigram
    discount: float = 0.75  # Kneser-Ney's d in (0, 1]: the usual fixed value; 0.7 … 0.9 differ < 0.02 nats
    block_size: int = 256  # longest row forward accepts, in tokens (the model itself reads only n - 1 of them)

    def __post_init__(self):
        for name in ("vocab_size", "n", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("k", "discount"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be 'kneser-ney' or 'add-k', got {self.smoothing!r}")
        if not self.k > 0:
            raise ValueError(f"k must be positive (k = 0 leaves unseen n-grams probability 0), got {self.k}")
        if not 0 < self.discount <= 1:  # d > 1 would take more than a count-1 gram has; d = 0 never backs off
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.vocab_size ** self.n > MAX_CODE:
            raise ValueError(f"vocab_size**n = {self.vocab_size}**{self.n} does not fit the int64 n-gram codes "
                             f"(it must be < 2**63): lower n")

    @classmethod
    def from_checkpoint(cls, fields, folder):
        """The config a checkpoint's config.json holds as its "model" section; ValueError naming the file."""
        return config_from_fields(cls, fields, folder, "NGram")


@dataclass
class _Order:
    """What forward reads for one order m, derived from the saved codes and counts."""

    codes: np.ndarray  # (G,) sorted m-gram codes
    counts: np.ndarray  # (G,) c(gram): what the top order reads
    continuations: np.ndarray  # (G,) N1+(•gram): what Kneser-Ney's lower orders read (None at m = n or for add-k)
    contexts: np.ndarray  # (K,) sorted distinct context codes (code // V)
    start: np.ndarray  # (K,) index in codes of each context's first gram
    length: np.ndarray  # (K,) how many distinct grams follow it


class NGram(Module):
    def __init__(self, config, rng=None):  # rng: accepted as every model's is (registry.build); counting draws nothing
        self.config = cfg = config
        self.dtype = np.dtype(np.float32)  # of the log-probabilities forward returns (``to`` sets it)
        for m in range(1, cfg.n + 1):  # empty until fit or load_state_dict
            setattr(self, f"order{m}_codes", Parameter(asarray(np.zeros(0, dtype=np.int64))))
            setattr(self, f"order{m}_counts", Parameter(asarray(np.zeros(0, dtype=np.int64))))
        self._orders = None  # [_Order for m = 1 … n] once counted

    def fit(self, ids):
        """Count every m-gram, m = 1 … n, of the 1-D token ids ``ids`` (the train split); returns self."""
        ids = to_numpy(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"NGram.fit expects a 1-D array of integer token ids, got {ids.shape} {ids.dtype}")
        if len(ids) < self.config.n:
            raise ValueError(f"NGram.fit needs at least n = {self.config.n} tokens to count an n-gram, got {len(ids)}")
        _check_range(ids, self.config.vocab_size)
        V, codes = self.config.vocab_size, ids.astype(np.int64)  # (N,) the unigram codes are the ids
        for m in range(1, self.config.n + 1):
            if m > 1:
                codes = codes[:-1] * V + ids[m - 1:]  # (N - m + 1,) gram i = the (m-1)-gram i, then ids[i + m - 1]
            grams, counts = np.unique(codes, return_counts=True)  # (G_m,) each, sorted
            getattr(self, f"order{m}_codes").data = asarray(grams.astype(np.int64))
            getattr(self, f"order{m}_counts").data = asarray(counts.astype(np.int64))
        self._index()
        return self

    def _index(self):
        """Derive each order's continuation counts and context runs from the saved codes and counts."""
        V, n = self.config.vocab_size, self.config.n
        codes = [to_numpy(getattr(self, f"order{m}_codes").data) for m in range(1, n + 1)]
        counts = [to_numpy(getattr(self, f"order{m}_counts").data) for m in range(1, n + 1)]
        _check_counts(codes, counts, V)
        if len(codes[0]) == 0:
            self._orders = None  # nothing counted: forward refuses
            return
        self._orders = []
        for m in range(1, n + 1):
            grams, continuations = codes[m - 1], None
            if self.config.smoothing == "kneser-ney" and m < n:
                suffixes = codes[m] % V**m  # (G_{m+1},) the last m tokens of each distinct (m+1)-gram
                at = np.minimum(np.searchsorted(grams, suffixes), len(grams) - 1)  # (G_{m+1},)
                if len(suffixes) and (len(grams) == 0 or np.any(grams[at] != suffixes)):
                    raise ValueError(f"order{m + 1}_codes holds an n-gram whose last {m} tokens are not in "
                                     f"order{m}_codes: the counts are inconsistent")
                continuations = np.bincount(at, minlength=len(grams))  # (G_m,) one per distinct left neighbour
            contexts, start, length = np.unique(grams // V, return_index=True, return_counts=True)  # (K,) each
            self._orders.append(_Order(grams, counts[m - 1], continuations, contexts, start, length))

    def _rows(self, order, which, contexts):
        """Dense (P, V) float64 counts (``which``: "counts" or "continuations") of the grams following each of
        the P context codes ``contexts`` in ``order``; a row of zeros for a context never seen."""
        V = self.config.vocab_size
        if len(order.contexts) == 0:
            return np.zeros((len(contexts), V))
        at = np.minimum(np.searchsorted(order.contexts, contexts), len(order.contexts) - 1)  # (P,)
        seen = order.contexts[at] == contexts  # (P,)
        start, length = np.where(seen, order.start[at], 0), np.where(seen, order.length[at], 0)  # (P,) each
        row = np.repeat(np.arange(len(contexts)), length)  # (S,) one entry per (position, gram of its context)
        gram = np.arange(len(row)) - np.repeat(np.cumsum(length) - length, length) + np.repeat(start, length)  # (S,)
        rows = np.zeros((len(contexts), V))  # (P, V)
        rows[row, order.codes[gram] % V] = getattr(order, which)[gram]
        return rows

    def forward(self, idx):
        if self._orders is None:
            raise RuntimeError("NGram.forward before fit: count a corpus with fit(train_ids) or load a checkpoint")
        ids = to_numpy(idx)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"NGram expects token ids of shape (B, T) and integer dtype, got {ids.shape} {ids.dtype}")
        B, T = ids.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        _check_range(ids, self.config.vocab_size)
        cfg, V, ids = self.config, self.config.vocab_size, ids.astype(np.int64)
        k, d, kn = cfg.k, cfg.discount, cfg.smoothing == "kneser-ney"
        top = np.minimum(cfg.n, np.arange(T) + 2)  # (T,) the order position t reads: its row holds t + 1 tokens
        context = np.zeros((B, T), dtype=np.int64)  # (B, T) code of the m - 1 tokens ending at t (m = 1: none)
        p = np.zeros((B, T, V))  # (B, T, V) p_m, built up from m = 1; float64, so Σ_w p = 1 to ~1e-15
        for m in range(1, cfg.n + 1):
            if m > T + 1:  # no position of these rows sees m - 1 tokens
                break
            if m > 1:  # prepend the token m - 2 back as the new most significant digit (valid where t ≥ m - 2)
                context[:, m - 2:] += ids[:, :T - m + 2] * V ** (m - 2)
            for which, here in (("counts", top == m), ("continuations", top > m)):
                if not here.any() or (which == "continuations" and not kn):  # add-k reads only its top order
                    continue
                c = self._rows(self._orders[m - 1], which, context[:, here].ravel())  # (P, V)
                total = c.sum(axis=1, keepdims=True)  # (P, 1) c(h), or N1+(•g•) for continuations
                if m == 1 or not kn:
                    q = (c + k) / (total + k * V)  # (P, V) add-k
                else:  # interpolated Kneser-Ney; an unseen context (total 0) keeps the lower order: λ = 1
                    lower = p[:, here].reshape(-1, V)  # (P, V) p_{m-1}
                    types = (c > 0).sum(axis=1, keepdims=True)  # (P, 1) N1+(h•)
                    safe = np.maximum(total, 1)  # (P, 1) the division is discarded where total = 0
                    q = np.where(total > 0, (np.maximum(c - d, 0) + d * types * lower) / safe, lower)  # (P, V)
                p[:, here] = q.reshape(B, -1, V)  # (B, T_here, V)
        return asarray(np.log(p).astype(self.dtype))  # (B, T, V); every p > 0, as the bottom is add-k

    def backward(self, dlogp):
        raise RuntimeError("an n-gram model is counted, not trained by gradient: call fit(train_ids) instead "
                           "of backward (it has no gradient to give)")

    def load_state_dict(self, state, strict=True):
        """Module's, each count array first sized as the state's (how many n-grams were seen depends on the
        corpus), then checked and indexed as ``fit`` leaves them."""
        for name, param in self._named_parameters_all():
            if name in state:
                param.data = asarray(np.zeros(np.shape(state[name]), dtype=np.int64))
        super().load_state_dict(state, strict)
        self._index()
        return self

    def to(self, dtype):
        """Set the dtype of the log-probabilities forward returns; the counts stay int64 (a cast would lose them)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"NGram log-probabilities need a floating-point dtype, got {dtype}")
        self.dtype = dtype
        return self


def _check_range(ids, V):
    bad = (ids < 0) | (ids >= V)
    if bad.any():
        raise ValueError(f"token id {int(ids[bad][0])} out of range for vocab_size {V}")


def _check_counts(codes, counts, V):
    """ValueError naming the array when saved codes or counts are not what fit writes."""
    for m, (grams, seen) in enumerate(zip(codes, counts), start=1):
        if grams.ndim != 1 or grams.shape != seen.shape:
            raise ValueError(f"order{m}_codes {grams.shape} and order{m}_counts {seen.shape} must be 1-D of one length")
        if len(grams) and (grams[0] < 0 or grams[-1] >= V**m or np.any(np.diff(grams) <= 0)):
            raise ValueError(f"order{m}_codes must be distinct sorted codes in [0, {V}**{m})")
        if np.any(seen < 1):
            raise ValueError(f"order{m}_counts must all be at least 1 (only seen n-grams are stored)")
