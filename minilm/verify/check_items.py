"""What `minilm check` verifies: the registry ITEMS, one entry per row of its table.

Each Item builds a fresh module and its inputs from a seed, so the finite-difference run (float64) and the
PyTorch run (the requested dtype) see the same numbers, and a test can plant a wrong backward in a class
(monkeypatch LayerNorm.backward) and watch exactly the rows built on that class fail.

Shapes: every size differs (B ≠ T ≠ C ≠ H ≠ hs; a square shape hides a transposed gradient), values are of
unit scale, and a parameter the constructor leaves constant (LayerNorm's ones and zeros, zero biases) gets a
random offset, since a backward that forgets w or b is invisible at w = 1, b = 0.

The formula of a row is read from its class's module docstring (formula_of), never kept a second time here.
The rule: find the first docstring line containing the item's anchor ("forward:" unless said otherwise);
the text after the anchor, then each following indented line, up to a line starting with "backward", a line
at column 0, or a line with no "=", "->" or "←", is one piece; a piece drops its comment (the text after a
gap of five spaces or more, or a final parenthesis after two) and pieces join with "; ". ``pick`` keeps
some pieces only (Softmax and LogSoftmax share one docstring). When nothing is found the fallback is the
first line of the class's own docstring, or a note saying which anchor is missing.
"""

import re
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from minilm.backend import asarray, to_numpy
from minilm.models.gpt import GPT, GPTConfig
from minilm.nn import (CrossEntropyLoss, Dropout, Embedding, Embeddings, FeedForward, GELU, LayerNorm, Linear,
                       LogSoftmax, MultiHeadAttention, ReLU, ScaledDotProductAttention, SelfAttention,
                       SinusoidalPositionalEncoding, Softmax, TransformerBlock)
from minilm.nn.module import Module
from minilm.optim import SGD, Adam, AdamW

B, T, C, H = 2, 5, 12, 3  # attention, blocks: hs = C / H = 4, so B, T, C, H and hs all differ
HS = C // H
TK = 7  # the memory's length in cross-attention and the decoder layer: B, T, TK, C, H and hs all differ
B1, T1, C1, C_OUT = 2, 3, 5, 4  # single layers
V = 7  # classes of the loss, rows of the embedding table
CE_H = 1e-4  # the loss is one scalar ~ log V: a larger step keeps its rounding / 2h under 1e-6 of small p_j / N
GPT_SIZES = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12)  # C = 12, H = 2, hs = 6, T = 7
# coordinates differenced per GPT array, stratified (minilm.verify.gradcheck): a multiple of 3 and of H, so each
# third of in_proj_weight gets 4 and each head's rows in it 2, whatever the seed (4 independent draws missed a
# third one time in five). Measured: 0.5 s, against 0.2 s for 4 and 6 s for all 4032 parameters
GPT_COORDS = 12
GELU_MINIMUM = -0.752  # GELU'(x) = 0 here; near it the element-wise relative error measures only rounding


@dataclass
class Case:
    """One module and the inputs it is checked on; kwargs go to forward (masks)."""

    module: Module
    inputs: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class OptimizerCase:
    """Parameter shapes and the gradients of ``steps`` steps; ``make(params)`` builds the optimiser."""

    make: Callable
    torch_name: str
    hyper: dict
    shapes: list
    steps: int = 3  # step 1 alone never uses the momentum or the bias correction's t > 1


@dataclass(frozen=True)
class Item:
    name: str  # the row's name
    layer: str  # the class checked: what `minilm check LAYER` selects, case-insensitively
    owner: type  # the class whose module docstring holds the formula
    build: Callable  # numpy Generator -> Case (or OptimizerCase)
    anchor: str = "forward:"  # where the formula starts in that docstring
    pick: tuple = None  # indices of the formula pieces to keep; None keeps all
    fd: str = "smooth"  # the tolerances.GRADCHECK entry; None: no finite differences (optimisers)
    h: float = 1e-5  # the central-difference step (gradcheck's default)
    max_coords: int = None  # difference this many coordinates per array, stratified (None: all)
    torch: str = None  # None: compare with the PyTorch twin; otherwise why there is no comparison


# --- the formula, read from the docstring ----------------------------------------------------------------

def _drop_final_parenthesis(text):
    """'mean((x - mu)²)   (biased: ...)' -> 'mean((x - mu)²)': a remark in parentheses ending the line."""
    if not text.endswith(")"):
        return text
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(text[i], 0)
        if depth == 0:
            return text[:i].rstrip() if text[max(0, i - 2):i] == "  " else text
    return text


def _clean(text):
    chunks = re.split(r"\s{5,}", text.strip())  # the comment column starts after a gap of five spaces
    text = " ".join(chunks[:2]) if chunks[0].endswith(":") else chunks[0]  # "AdamW:      θ ← ..." is a label
    return " ".join(_drop_final_parenthesis(text.rstrip()).split()).rstrip(":")


def _is_formula(piece):
    return any(op in piece for op in ("=", "->", "←")) and not piece.startswith("backward")


def formula_pieces(doc, anchor):
    """The formula pieces after ``anchor`` in ``doc`` (see the module docstring); [] if the anchor is absent."""
    lines = (doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if anchor in line), None)
    if start is None:
        return []
    column = lines[start].index(anchor)
    first = _clean(lines[start][column + len(anchor):])
    pieces = [first] if _is_formula(first) else []
    for line in lines[start + 1:]:
        if not line.strip() or not line[:1].isspace():
            break
        piece = _clean(line[column:])
        if not _is_formula(piece):
            break
        pieces.append(piece)
    return pieces


def formula_of(item):
    """The item's formula in one line, from its owner's module docstring (or the documented fallback)."""
    doc = sys.modules[item.owner.__module__].__doc__
    pieces = formula_pieces(doc, item.anchor)
    if item.pick is not None:
        pieces = [pieces[i] for i in item.pick if i < len(pieces)]
    if pieces:
        return "; ".join(pieces)
    own = (item.owner.__doc__ or "").strip().splitlines()
    return own[0] if own else f"(no {item.anchor!r} line in the {item.owner.__module__} docstring)"


# --- inputs and modules -----------------------------------------------------------------------------------

def _randn(rng, *shape, scale=1.0):
    return asarray(rng.standard_normal(shape) * scale)  # float64 on the active backend


def _vary_constants(module, rng, scale=0.1):
    """Give every parameter that is constant at init (ones, zeros) a random offset of ``scale``."""
    for _, param in module.named_parameters():
        data = np.asarray(to_numpy(param.data), dtype=np.float64)
        if data.size and np.all(data == data.flat[0]):
            param.data = asarray(data + scale * rng.standard_normal(data.shape), dtype=param.data.dtype)
    return module


def _off_relu_kink(rng, *shape, margin=0.1):
    z = rng.standard_normal(shape)
    return asarray(z + margin * np.sign(z))  # no input within h of 0, where ReLU has no derivative


def _gelu_inputs(rng, *shape, margin=0.05):
    z = np.clip(rng.standard_normal(shape) * 1.5, -3.5, 3.5)  # where |GELU'| ≥ 2e-3, as tests/test_activation.py
    off = z - GELU_MINIMUM
    return asarray(np.where(np.abs(off) < margin, GELU_MINIMUM + np.copysign(margin, off), z))


def _padding(b, t):
    """bool (b, t), True = padded: the last sequence's second half. Key 0 stays visible to every query."""
    padded = np.zeros((b, t), dtype=bool)
    padded[-1, t // 2 + 1:] = True
    return asarray(padded)


class FixedMaskDropout(Module):
    """Dropout re-seeded before every forward: finite differences need the same mask at every evaluation."""

    def __init__(self, p, seed):
        self.drop, self.seed = Dropout(p), seed

    def forward(self, x):
        self.drop.rng = np.random.default_rng(self.seed)
        return self.drop(x)

    def backward(self, dy):
        return self.drop.backward(dy)


def _sdpa(causal, padded):
    def build(rng):
        q, k, v = (_randn(rng, B, H, T, HS) for _ in range(3))
        return Case(ScaledDotProductAttention(causal), (q, k, v),
                    {"key_padding_mask": _padding(B, T)} if padded else {})
    return build


def _mha(causal, padded):
    def build(rng):
        layer = _vary_constants(MultiHeadAttention(C, H, causal=causal, rng=rng), rng)
        return Case(layer, (_randn(rng, B, T, C),), {"key_padding_mask": _padding(B, T)} if padded else {})
    return build


def _cross_attention(rng):
    layer = _vary_constants(MultiHeadAttention(C, H, rng=rng), rng)
    return Case(layer, (_randn(rng, B, T, C), _randn(rng, B, TK, C)), {"key_padding_mask": _padding(B, TK)})


def _decoder_layer(rng):
    """Post-LN, as torch.nn.TransformerDecoderLayer's default; padding on both the target and the memory."""
    block = _vary_constants(TransformerBlock(C, H, 2 * C, norm="post", cross_attention=True, rng=rng), rng)
    return Case(block, (_randn(rng, B, T, C), _randn(rng, B, TK, C)),
                {"key_padding_mask": _padding(B, T), "memory_key_padding_mask": _padding(B, TK)})


def _block(norm):
    def build(rng):
        block = _vary_constants(TransformerBlock(C, H, 2 * C, norm=norm, rng=rng), rng)
        return Case(block, (_randn(rng, B, T, C),))
    return build


def _embeddings(rng):
    """BERT's form, so every piece is checked: learned positions, two segments, then a LayerNorm."""
    layer = _vary_constants(Embeddings(V, C, T + 2, type_vocab_size=2, layer_norm=True, rng=rng), rng)
    return Case(layer, (asarray(rng.integers(0, V, (B, T))),), {"token_type_ids": asarray(rng.integers(0, 2, (B, T)))})


def _gpt(rng):
    model = _vary_constants(GPT(GPTConfig(**GPT_SIZES), rng=rng), rng, scale=0.02)
    return Case(model, (asarray(rng.integers(0, GPT_SIZES["vocab_size"], (3, 7))),))


def _cross_entropy(rng):
    targets = rng.integers(0, V, (B1, T1))
    targets[1, 0] = -100  # one ignored position: it must get exactly zero gradient and not count in the mean
    return Case(CrossEntropyLoss(), (_randn(rng, B1, T1, V, scale=2.0), asarray(targets)))


def _optimizer(cls, torch_name, **hyper):
    return lambda rng: OptimizerCase(lambda params: cls(params, **hyper), torch_name, hyper,
                                     shapes=[(5, 3), (3,), (2, 4, 3)])


RANDOM_MASK = "torch draws its own dropout mask: finite differences check the training-mode formula"

ITEMS = [
    Item("Linear", "Linear", Linear,
         lambda rng: Case(Linear(C1, C_OUT, rng=rng), (_randn(rng, B1, T1, C1),))),
    Item("Embedding", "Embedding", Embedding,
         lambda rng: Case(Embedding(V, C1, rng=rng), (asarray(rng.integers(0, V, (B1, T1 + 1))),))),
    Item("Embeddings (token + position + segment, LayerNorm)", "Embeddings", Embeddings, _embeddings),
    Item("SinusoidalPositionalEncoding", "SinusoidalPositionalEncoding", SinusoidalPositionalEncoding,
         lambda rng: Case(SinusoidalPositionalEncoding(9, C1 + 2), (_randn(rng, B1, T1, C1 + 2),))),
    Item("LayerNorm", "LayerNorm", LayerNorm,
         lambda rng: Case(_vary_constants(LayerNorm(C1), rng, scale=0.5), (_randn(rng, B1, T1, C1, scale=2.0) + 0.5,))),
    Item("Dropout (training, p = 0.3)", "Dropout", Dropout,
         lambda rng: Case(FixedMaskDropout(0.3, seed=int(rng.integers(2**31))), (_randn(rng, B1, T1, C1),)),
         pick=(0,), fd="piecewise", torch=RANDOM_MASK),
    Item("GELU (tanh)", "GELU", GELU, lambda rng: Case(GELU("tanh"), (_gelu_inputs(rng, B1, T1, C1),)),
         anchor='GELU, tanh ("tanh"):'),
    Item("GELU (exact)", "GELU", GELU, lambda rng: Case(GELU("none"), (_gelu_inputs(rng, B1, T1, C1),)),
         anchor='GELU, exact ("none"):'),
    Item("ReLU", "ReLU", ReLU, lambda rng: Case(ReLU(), (_off_relu_kink(rng, B1, T1, C1),)),
         anchor="ReLU:", fd="piecewise"),
    Item("Softmax", "Softmax", Softmax, lambda rng: Case(Softmax(), (_randn(rng, B1, T1, V, scale=3.0),)), pick=(0,)),
    Item("LogSoftmax", "LogSoftmax", LogSoftmax,
         lambda rng: Case(LogSoftmax(), (_randn(rng, B1, T1, V, scale=3.0),)), pick=(1,)),
    Item("CrossEntropyLoss", "CrossEntropyLoss", CrossEntropyLoss, _cross_entropy, h=CE_H),
    Item("ScaledDotProductAttention", "ScaledDotProductAttention", ScaledDotProductAttention, _sdpa(False, False),
         anchor="Scaled dot-product attention"),
    Item("ScaledDotProductAttention (causal, padding)", "ScaledDotProductAttention", ScaledDotProductAttention,
         _sdpa(True, True), anchor="Scaled dot-product attention"),
    Item("SelfAttention (projection-free)", "SelfAttention", SelfAttention,
         lambda rng: Case(SelfAttention(), (_randn(rng, B, T, 6),)),
         anchor="SelfAttention, the projection-free form the tutorials start from:", pick=(0, 1)),
    Item("MultiHeadAttention", "MultiHeadAttention", MultiHeadAttention, _mha(False, False),
         anchor="MultiHeadAttention, as torch.nn.MultiheadAttention(batch_first=True):"),
    Item("MultiHeadAttention (causal)", "MultiHeadAttention", MultiHeadAttention, _mha(True, False),
         anchor="MultiHeadAttention, as torch.nn.MultiheadAttention(batch_first=True):"),
    Item("MultiHeadAttention (causal, padding)", "MultiHeadAttention", MultiHeadAttention, _mha(True, True),
         anchor="MultiHeadAttention, as torch.nn.MultiheadAttention(batch_first=True):"),
    Item("cross-attention", "MultiHeadAttention", MultiHeadAttention, _cross_attention,
         anchor="cross-attention (memory given):"),
    Item("FeedForward", "FeedForward", FeedForward,
         lambda rng: Case(_vary_constants(FeedForward(C1, 7, rng=rng), rng), (_randn(rng, B1, T1, C1),))),
    Item("TransformerBlock (pre-LN)", "TransformerBlock", TransformerBlock, _block("pre"),
         anchor="forward, pre-LN (GPT-2):", fd="model"),
    Item("TransformerBlock (post-LN)", "TransformerBlock", TransformerBlock, _block("post"),
         anchor="forward, post-LN (Vaswani et al.):", fd="model"),
    Item("decoder layer", "TransformerBlock", TransformerBlock, _decoder_layer,
         anchor="forward, decoder layer, post-LN (Vaswani et al.):", fd="model"),
    Item("GPT (2 layers, tied head)", "GPT", GPT, _gpt, fd="model", max_coords=GPT_COORDS),
    Item("SGD (momentum 0.9, decay 0.01)", "SGD", SGD, _optimizer(SGD, "SGD", lr=0.1, momentum=0.9, weight_decay=0.01),
         anchor="update, per parameter θ with gradient g:", fd=None),
    Item("Adam (L2 decay 0.1)", "Adam", Adam, _optimizer(Adam, "Adam", lr=1e-2, weight_decay=0.1),
         anchor="update, per parameter θ", pick=(0, 2, 3, 4, 5), fd=None),
    Item("AdamW (decay 0.1)", "AdamW", AdamW, _optimizer(AdamW, "AdamW", lr=1e-2, weight_decay=0.1),
         anchor="update, per parameter θ", pick=(1, 2, 3, 4, 5), fd=None),
]

LAYERS = list(dict.fromkeys(item.layer for item in ITEMS))  # the names `minilm check LAYER` accepts
