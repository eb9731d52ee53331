"""Decoding a Seq2Seq: the target, one token at a time, by greedy search or beam search.

both:     the source is encoded once (the memory m); then y_0 = [BOS] and each step feeds the last token to the
          decoder and reads log p(v | y_<t, x) = log softmax(logits)_v over the vocabulary. A target ends at its
          [EOS], or after max_len tokens. With use_cache (the default) a step costs one position: every decoder
          block's self-attention keeps its keys and values, and its cross-attention reads m's, projected once
          (Seq2Seq.decode_step); use_cache=False runs the whole decoder over the whole prefix at every step,
          the reference the tests hold the cache to (the same tokens and scores).
never:    [PAD] and [BOS] are not produced (their log p is set to -inf): no target holds them, and a [PAD] in a
          prefix would be a masked key to the full forward.
greedy:   y_t = argmax_v log p(v | y_<t, x).
beam:     keeps the k best unfinished targets by log p(y_<t | x) = Σ_s log p(y_s | y_<s, x). Each step scores
          all k·V one-token extensions and goes down them best first until k unfinished ones are kept: an
          extension ending in [EOS] on the way joins the source's finished list. The answer is the finished
          target with the best length-normalised score (Wu et al. 2016, §7):
              score(y) = log p(y | x) / lp(y),   lp(y) = ((5 + |y|) / 6)^α,   α = length_penalty
          |y| counts the tokens produced, [EOS] included. α = 0 ranks by log p alone, which favours short
          targets (every token multiplies in a p ≤ 1); α > 0 favours longer ones. Beam width 1 is greedy.
          A source is done when its best finished score is at least the best an unfinished target could still
          reach, log p(y_<t | x) / lp(max_len): log p only falls and lp only grows as a target lengthens. So the
          beam width is the one approximation; stopping at the first k finished targets instead (Hugging
          Face's early_stopping=True) let unlikely early [EOS]s end the search before the likely target had
          finished, measured: beam 4 at 82% exact match on the numbers task where greedy had 98%.
          If max_len is reached first, the unfinished targets are scored as they stand.
shapes:   src (B, S) ids; rows R = B (greedy) or B·k (beam); returns a list of B id lists, [BOS] and [EOS]
          left out. Scores are float64 on the host.
ref:      Wu et al. 2016, "Google's Neural Machine Translation System", §7; Sutskever et al. 2014, §3.2
"""

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.nn import inference


def log_softmax(logits):
    """log softmax over the last axis, in float64 on the host: scores summed over many steps stay exact."""
    z = np.asarray(to_numpy(logits), dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class _Steps:
    """log p(v | prefix, x) (R, V) for R rows, each row a target prefix of one source: cached or recomputed."""

    def __init__(self, model, src, rows, use_cache, capacity, never):
        self.model, self.src, self.rows, self.use_cache = model, asarray(src), np.asarray(rows), use_cache
        self.never = list(never)
        if use_cache:
            self.cache = model.encode(self.src, capacity=capacity)
            self.cache.reorder(self.rows)

    def __call__(self, prefix):
        """prefix (R, t + 1) host ids, [BOS] first; the cache has seen all but the last."""
        if self.use_cache:
            log_p = log_softmax(self.model.decode_step(asarray(prefix[:, -1:]), self.cache)[:, 0])  # (R, V)
        else:
            log_p = log_softmax(self.model(self.src[asarray(self.rows)], asarray(prefix))[:, -1])  # (R, V)
        log_p[:, self.never] = -np.inf
        return log_p

    def keep(self, rows):
        """Continue rows ``rows`` of the current R (a row may repeat), in that order."""
        self.rows = self.rows[rows]
        if self.use_cache:
            self.cache.reorder(rows)


def _limit(model, max_len):
    block = model.config.block_size
    if max_len is not None and not 1 <= max_len <= block:
        raise ValueError(f"max_len must be in 1 … block_size {block}, got {max_len}")
    return max_len or block


def greedy(model, src, bos_id, eos_id, max_len=None, use_cache=True):
    """The greedy target of each source row of src (B, S): a list of B id lists (module docstring)."""
    return beam_search(model, src, bos_id, eos_id, beam=1, length_penalty=0.0, max_len=max_len,
                       use_cache=use_cache)[0]


def beam_search(model, src, bos_id, eos_id, beam=4, length_penalty=0.6, max_len=None, use_cache=True):
    """(targets, scores): the best target of each source row of src (B, S) by beam search of width ``beam``, a
    list of B id lists, and its length-normalised score (B,) (module docstring)."""
    if beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam}")
    if not length_penalty >= 0:  # the stopping rule's bound needs lp to grow with length
        raise ValueError(f"length_penalty must be at least 0, got {length_penalty}")
    src = np.asarray(to_numpy(src))
    B, k = src.shape[0], beam
    max_len = _limit(model, max_len)
    training = model.training
    model.eval()
    try:
        with inference():
            steps = _Steps(model, src, np.repeat(np.arange(B), k), use_cache, max_len,
                           never=(model.config.pad_token_id, bos_id))
            finished = _search(steps, B, k, bos_id, eos_id, length_penalty, max_len)
    finally:
        model.train(training)
    # (normalised score, tokens) per source; none at all only when every step offered [EOS] alone
    best = [max(hyps, key=lambda h: h[0], default=(-np.inf, [])) for hyps in finished]
    return [tokens for _, tokens in best], np.array([score for score, _ in best])


def _search(steps, B, k, bos_id, eos_id, alpha, max_len):
    """Per source, the finished (normalised score, tokens) list; see the module docstring."""
    def normalised(log_p, length):
        return log_p / ((5 + length) / 6) ** alpha

    prefix = np.full((B * k, 1), bos_id, dtype=np.int64)  # (B·k, t + 1)
    log_p = np.full((B, k), -np.inf)  # (B, k) log p(y_<t | x) of each unfinished row
    log_p[:, 0] = 0.0  # one row per source at first: k copies of [BOS] would fill the beam with duplicates
    finished = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for t in range(max_len):
        step = steps(prefix)  # (B·k, V)
        V = step.shape[-1]
        candidates = (log_p[:, :, None] + step.reshape(B, k, V)).reshape(B, k * V)  # (B, k·V)
        order = np.argsort(-candidates, axis=1, kind="stable")  # best first; ties to the lower row, then id
        rows, tokens, kept = np.zeros((B, k), np.int64), np.full((B, k), eos_id), np.full((B, k), -np.inf)
        for b in np.flatnonzero(~done):
            n = 0
            for flat in order[b]:
                score = candidates[b, flat]
                if n == k or score == -np.inf:
                    break
                row, token = divmod(int(flat), V)
                if token == eos_id:
                    finished[b].append((normalised(score, t + 1), prefix[b * k + row, 1:].tolist()))
                else:
                    rows[b, n], tokens[b, n], kept[b, n] = row, token, score
                    n += 1
            best = max((score for score, _ in finished[b]), default=-np.inf)
            done[b] = n == 0 or best >= normalised(kept[b, 0], max_len)  # kept[b, 0]: the best unfinished
        if done.all() or t + 1 == max_len:
            break
        keep = (np.arange(B)[:, None] * k + rows).reshape(-1)  # (B·k,) the rows that continue
        steps.keep(keep)
        prefix = np.concatenate([prefix[keep], tokens.reshape(-1, 1)], axis=1)  # (B·k, t + 2)
        log_p = kept
    for b in np.flatnonzero(~done):  # max_len reached: the unfinished rows compete as they stand
        finished[b] += [(normalised(kept[b, n], t + 1), prefix[b * k + rows[b, n], 1:].tolist()
                         + [int(tokens[b, n])]) for n in range(k) if kept[b, n] > -np.inf]
    return finished
