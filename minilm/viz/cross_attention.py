"""Cross-attention of a Seq2Seq: where each target position looks in the source, for the course and `minilm attention`.

    weights, source, target = cross_attention_weights(model, tokenizer, "forty-two")   # target: its translation
    attention_heatmaps(weights[-1], target, keys=source, axis_labels=TARGET_SOURCE)    # last decoder layer

weights:  decoder block l's cross-attention on the forward pass of (src, tgt = [BOS] y_1 … y_n):
              A_l = softmax(Q Kᵀ / √hs + mask),  Q = y W_q from the decoder (T rows), K = m W_k from the memory m
          (S columns); row t is query position t, which reads [BOS] y_1 … y_t and predicts y_{t+1} (or [EOS]).
          Each row sums to 1 over the source positions that are not padding (padded ones get 0: -inf before the
          softmax, minilm.nn.masks); one source holds no padding. Taken before dropout, in eval mode.
target:   given, or the source's greedy translation (minilm.training.translation.translate) cut at block_size - 1
          tokens, so that [BOS] and it fit the decoder's block_size.
shapes:   weights (L, H, T, S) NumPy, L decoder layers, H heads, T = 1 + len(target), S = len(source) tokens;
          source (S,) and target (T,) token strings, the target's first "[BOS]".
ref:      Bahdanau et al. 2015, §5.2.2 (alignment heatmaps); Vaswani et al. 2017, §3.2.3 (encoder-decoder attention)
"""

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.data.pairs import encode_texts
from minilm.training.translation import translate
from minilm.viz.plots import token_strings, weights_kept

TARGET_SOURCE = ("target (query)", "source (key)")  # the heatmaps' (rows, columns) labels: short, as panels can be


def cross_attention_weights(model, tokenizer, source, target=None):
    """(weights (L, H, T, S), source tokens (S,), target tokens (T,)) of ``model`` (a Seq2Seq) on the text
    ``source`` and [BOS] + ``target`` (default: the greedy translation); see the module docstring."""
    src, tgt = source_and_target(model, tokenizer, source, target)  # (S,), (T,)
    with weights_kept(model):
        model(asarray(src[None, :]), asarray(tgt[None, :]))  # (1, T, V), read for its attention only
    weights = np.stack([to_numpy(layer.crossattention.attention_weights)[0]
                        for layer in model.transformer.decoder])  # (L, H, T, S)
    return weights, token_strings(tokenizer, src), token_strings(tokenizer, tgt)


def source_and_target(model, tokenizer, source, target=None):
    """(src (S,), tgt (T,)) int64 ids: the text ``source``, and [BOS] + ``target`` (default: the greedy translation
    of the source); a ValueError naming a character outside the vocabulary or a text longer than block_size."""
    block = model.config.block_size
    (src,) = encode_texts(tokenizer, [source], "source")  # (S,) names an unknown character and its position
    if len(src) > block:
        raise ValueError(f"the source is {len(src)} tokens long, longer than the model's block_size {block}")
    if target is None:
        target = translate(model, tokenizer, [source], max_len=max(1, block - 1))[0]
    ys = encode_texts(tokenizer, [target], "target")[0] if target else np.zeros(0, dtype=np.int64)  # (n,)
    tgt = np.concatenate([[tokenizer.special_id("[BOS]")], ys]).astype(np.int64)  # (T,) = [BOS] y_1 … y_n
    if len(tgt) > block:
        raise ValueError(f"the target is {len(tgt)} tokens long with its [BOS], longer than the model's block_size "
                         f"{block}")
    return src, tgt

