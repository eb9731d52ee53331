"""What every attention layer of a model computes on one text: its queries, keys, mask and scale, for the explorer.

    stacks = attention_stacks(model, tokenizer, "to be or not")    # one Stack per kind of attention in the model
    stacks[0].scores()                                            # (L, H, T, S) S = Q Kᵀ / √hs + M
    softmax(stacks[0].scores())                                   # (L, H, T, S) the layers' own weights A

scores:   S = Q Kᵀ · scale + M per layer and head (scale = 1/√hs), M the additive mask: 0 where query i may see
          key j, -inf where it may not (minilm.nn.masks). It is the S that the layer's softmax took (minilm.nn.sdpa),
          and A = softmax(S) row by row is its ``.attention_weights`` (a row with every key masked: zeros).
          The layers do not keep S (their backward needs only A): it is recomputed here from the layer's own q and
          k, so minilm.nn is untouched and no forward outside the explorer pays for it.
stacks:   a GPT or the tutorial Transformer: "self-attention" over the text's tokens, causal;
          a BERT: "self-attention" over [CLS] text [SEP], both ways (a char-level masked LM reads the raw text,
          as minilm's pre-training and `minilm fill-mask` give it);
          a Seq2Seq: "encoder self-attention" (source × source), "decoder self-attention" ([BOS] + target, causal
          through its attn_mask) and "cross-attention" (target queries × source keys), the target being the
          greedy translation unless given (minilm.viz.cross_attention).
shapes:   q (L, H, T, hs), k (L, H, S, hs) float32, mask (T, S) or None, scale (L,); L layers, H heads, T queries,
          S keys (S = T in self-attention); queries (T,) and keys (S,) the tokens as strings.
kept:     the forward runs in eval mode under inference(), which drops each layer's backward cache as its forward
          returns; just before, the layer hands over its q, k, mask and scale (``captured``). So the forward holds
          one layer's activations at a time, plus every layer's q and k: 2·L·T·C numbers, not L·H·T² weights.
ref:      Vaswani et al. 2017, §3.2.1; Vig 2019, "A Multiscale Visualization of Attention in the Transformer Model"
"""

import contextlib
from dataclasses import dataclass

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.data.char_tokenizer import CharTokenizer
from minilm.models import type_of_model
from minilm.nn import inference
from minilm.viz.cross_attention import source_and_target
from minilm.viz.plots import token_strings

MODEL_TYPES = ("gpt", "tutorial", "bert", "seq2seq")  # the models whose attention the explorer reads


@dataclass
class Stack:
    """One kind of attention of a model, every layer of it: the module docstring's shapes."""

    name: str  # "self-attention", "cross-attention", ...
    queries: list  # (T,) token strings, the rows
    keys: list  # (S,) token strings, the columns
    q: np.ndarray  # (L, H, T, hs)
    k: np.ndarray  # (L, H, S, hs)
    mask: np.ndarray  # (T, S) additive, 0 or -inf; None: every query sees every key
    scale: list  # (L,) the factor on Q Kᵀ, 1/√hs unless a layer was given another

    def scores(self):
        """S = Q Kᵀ · scale + M (L, H, T, S) in float64, -inf where masked."""
        S = np.einsum("lhtd,lhsd->lhts", self.q.astype(np.float64), self.k.astype(np.float64))  # (L, H, T, S)
        S *= np.asarray(self.scale, dtype=np.float64)[:, None, None, None]
        return S if self.mask is None else S + self.mask  # (L, H, T, S)


def check_index(what, value, count):
    """ValueError naming the range, as `minilm attention` says it, unless 0 <= value < count."""
    if not 0 <= value < count:
        raise ValueError(f"{what} {value} out of range: the model has {count} {what}s, numbered 0 to {count - 1}")


def attention_stacks(model, tokenizer, text, target=None):
    """The Stacks of ``model`` on ``text`` (a Seq2Seq: the source; ``target`` its translation, default greedy).
    A ValueError names an empty text, a character outside the vocabulary (the tokenizer's own message, as
    `minilm sample` gives it) or a text longer than the model's block_size."""
    kind = type_of_model(model)
    if kind not in MODEL_TYPES:
        raise ValueError(f"the attention explorer reads a model of type {' or '.join(MODEL_TYPES)}, not {kind}")
    if not isinstance(text, str) or text == "":
        raise ValueError(f"the text is empty: give at least one character (got {text!r})")
    if kind == "seq2seq":
        return _seq2seq(model, tokenizer, text, target)
    block = model.config.block_size
    if kind == "bert" and not (isinstance(tokenizer, CharTokenizer) and model.config.head == "mlm"):
        ids, types = tokenizer.encode_pair(text)  # (T,) each: [CLS] text [SEP], as BERT reads one sentence
        inputs, extra = (ids[None, :], types[None, :]), " with its [CLS] and [SEP]"
    else:
        ids = tokenizer.encode(text)  # (T,) names a character outside the vocabulary
        inputs, extra = (ids[None, :],), ""
    if len(ids) > block:
        raise ValueError(f"the text is {len(ids)} tokens long{extra}, longer than the model's block_size {block}")
    blocks = model.layers if kind == "tutorial" else model.h
    tokens = token_strings(tokenizer, ids)
    attention = [b.attn for b in blocks]
    with captured(model, attention) as found:
        model(*(asarray(a) for a in inputs))  # (1, T, ·), read for its attention only
    return [_read("self-attention", [found[id(a)] for a in attention], tokens, tokens)]


def _seq2seq(model, tokenizer, source, target):
    src, tgt = source_and_target(model, tokenizer, source, target)  # (S,), (T,) = [BOS] + target
    sources, targets = token_strings(tokenizer, src), token_strings(tokenizer, tgt)
    encoder, decoder = model.transformer.encoder, model.transformer.decoder
    stacks = [("encoder self-attention", [b.attn for b in encoder], sources, sources),
              ("decoder self-attention", [b.attn for b in decoder], targets, targets),
              ("cross-attention", [b.crossattention for b in decoder], targets, sources)]
    with captured(model, [a for _, layers, _, _ in stacks for a in layers]) as found:
        model(asarray(src[None, :]), asarray(tgt[None, :]))  # (1, T, V), read for its attention only
    return [_read(name, [found[id(a)] for a in layers], queries, keys) for name, layers, queries, keys in stacks]


def _read(name, records, queries, keys):
    """A Stack from what each layer handed over on its one forward (one sequence, B = 1): [(q, k, mask, scale)]."""
    if any(len(r) != 1 for r in records):
        raise RuntimeError(f"{name}: each layer should run once on the text, got {[len(r) for r in records]} forwards")
    q, k, masks, scales = zip(*(r[0] for r in records))  # (1, H, T, hs), (1, H, S, hs), (1, 1, T, S) or None, float
    for m in masks:
        if m is not None and m.shape[:2] != (1, 1):
            raise ValueError(f"{name}: a mask per sequence or per head ({m.shape}) is not drawn; give one text")
    if any((m is None) != (masks[0] is None) or (m is not None and not np.array_equal(m, masks[0])) for m in masks):
        raise ValueError(f"{name}: the layers were given different masks, which the explorer does not draw")
    mask = None if masks[0] is None else masks[0][0, 0].astype(np.float32)  # (T, S)
    if mask is not None and not mask.any():
        mask = None  # a padding mask with no padding (one text) hides nothing
    q = np.stack([a[0] for a in q]).astype(np.float32)  # (L, H, T, hs)
    k = np.stack([a[0] for a in k]).astype(np.float32)  # (L, H, S, hs)
    return Stack(name, list(queries), list(keys), q, k, mask, [float(c) for c in scales])


@contextlib.contextmanager
def captured(model, layers):
    """Within: ``model`` in eval mode under inference(), each attention layer of ``layers`` appending its
    (q, k, mask, scale) as host arrays to ``found[id(layer)]`` at the end of each forward (``found`` is what the
    context yields), before inference() drops its cache. After: the mode and every layer as they were."""
    was_training = model.training
    found = {id(layer): [] for layer in layers}
    model.eval()
    try:
        for layer in layers:
            layer.forward = _handing_over(layer, found[id(layer)])  # an instance attribute: found before the class's
        with inference():
            yield found
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)
        model.train(was_training)


def _handing_over(layer, into):
    forward = type(layer).forward

    def forward_and_hand_over(*args, **kwargs):
        out = forward(layer, *args, **kwargs)
        cache = layer.cache  # AttentionCache(q, k, v, A, scale, dropout, mask) of this forward
        into.append((to_numpy(cache.q), to_numpy(cache.k), None if cache.mask is None else to_numpy(cache.mask),
                     cache.scale))
        return out

    return forward_and_hand_over
