"""What `minilm check` verifies: the registry ITEMS, one entry per row of its table.

The single layers' rows are built here, the models' in check_models; what an item is, and the conventions of
their inputs (every size different, unit scale, constants offset), in check_cases; each row's formula is read
from its class's docstring by check_formula. The names check.py and the tests import all stay importable here.
"""

import numpy as np

from minilm.backend import asarray
from minilm.nn import (CrossEntropyLoss, Dropout, Embedding, Embeddings, FeedForward, GELU, LayerNorm, Linear,
                       LogSoftmax, MultiHeadAttention, ReLU, ScaledDotProductAttention, SelfAttention,
                       SinusoidalPositionalEncoding, Softmax, Tanh, TransformerBlock)
from minilm.nn.module import Module
from minilm.optim import SGD, Adam, AdamW
from minilm.verify.check_cases import Case, Item, OptimizerCase, padding, randn, vary_constants
from minilm.verify.check_formula import formula_of, formula_pieces
from minilm.verify.check_models import GPT_COORDS, MODEL_ITEMS
from minilm.verify.check_recurrent import RECURRENT_ITEMS

__all__ = ["ITEMS", "LAYERS", "Case", "Item", "OptimizerCase", "formula_of", "formula_pieces", "GPT_COORDS"]

B, T, C, H = 2, 5, 12, 3  # attention, blocks: hs = C / H = 4, so B, T, C, H and hs all differ
HS = C // H
TK = 7  # the memory's length in cross-attention and the decoder layer: B, T, TK, C, H and hs all differ
B1, T1, C1, C_OUT = 2, 3, 5, 4  # single layers
V = 7  # classes of the loss, rows of the embedding table
CE_H = 1e-4  # the loss is one scalar ~ log V: a larger step keeps its rounding / 2h under 1e-6 of small p_j / N
GELU_MINIMUM = -0.752  # GELU'(x) = 0 here; near it the element-wise relative error measures only rounding


# --- inputs and modules -----------------------------------------------------------------------------------

def _off_relu_kink(rng, *shape, margin=0.1):
    z = rng.standard_normal(shape)
    return asarray(z + margin * np.sign(z))  # no input within h of 0, where ReLU has no derivative


def _gelu_inputs(rng, *shape, margin=0.05):
    z = np.clip(rng.standard_normal(shape) * 1.5, -3.5, 3.5)  # where |GELU'| ≥ 2e-3, as tests/test_activation.py
    off = z - GELU_MINIMUM
    return asarray(np.where(np.abs(off) < margin, GELU_MINIMUM + np.copysign(margin, off), z))


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
        q, k, v = (randn(rng, B, H, T, HS) for _ in range(3))
        return Case(ScaledDotProductAttention(causal), (q, k, v),
                    {"key_padding_mask": padding(B, T)} if padded else {})
    return build


def _mha(causal, padded):
    def build(rng):
        layer = vary_constants(MultiHeadAttention(C, H, causal=causal, rng=rng), rng)
        return Case(layer, (randn(rng, B, T, C),), {"key_padding_mask": padding(B, T)} if padded else {})
    return build


def _cross_attention(rng):
    layer = vary_constants(MultiHeadAttention(C, H, rng=rng), rng)
    return Case(layer, (randn(rng, B, T, C), randn(rng, B, TK, C)), {"key_padding_mask": padding(B, TK)})


def _decoder_layer(rng):
    """Post-LN, as torch.nn.TransformerDecoderLayer's default; padding on both the target and the memory."""
    block = vary_constants(TransformerBlock(C, H, 2 * C, norm="post", cross_attention=True, rng=rng), rng)
    return Case(block, (randn(rng, B, T, C), randn(rng, B, TK, C)),
                {"key_padding_mask": padding(B, T), "memory_key_padding_mask": padding(B, TK)})


def _block(norm):
    def build(rng):
        block = vary_constants(TransformerBlock(C, H, 2 * C, norm=norm, rng=rng), rng)
        return Case(block, (randn(rng, B, T, C),))
    return build


def _embeddings(rng):
    """BERT's form, so every piece is checked: learned positions, two segments, then a LayerNorm."""
    layer = vary_constants(Embeddings(V, C, T + 2, type_vocab_size=2, layer_norm=True, rng=rng), rng)
    return Case(layer, (asarray(rng.integers(0, V, (B, T))),), {"token_type_ids": asarray(rng.integers(0, 2, (B, T)))})


def _cross_entropy(rng):
    targets = rng.integers(0, V, (B1, T1))
    targets[1, 0] = -100  # one ignored position: it must get exactly zero gradient and not count in the mean
    return Case(CrossEntropyLoss(), (randn(rng, B1, T1, V, scale=2.0), asarray(targets)))


def _optimizer(cls, torch_name, **hyper):
    return lambda rng: OptimizerCase(lambda params: cls(params, **hyper), torch_name, hyper,
                                     shapes=[(5, 3), (3,), (2, 4, 3)])


RANDOM_MASK = "torch draws its own dropout mask: finite differences check the training-mode formula"

ITEMS = [
    Item("Linear", "Linear", Linear,
         lambda rng: Case(Linear(C1, C_OUT, rng=rng), (randn(rng, B1, T1, C1),))),
    Item("Embedding", "Embedding", Embedding,
         lambda rng: Case(Embedding(V, C1, rng=rng), (asarray(rng.integers(0, V, (B1, T1 + 1))),))),
    Item("Embeddings (token + position + segment, LayerNorm)", "Embeddings", Embeddings, _embeddings),
    Item("SinusoidalPositionalEncoding", "SinusoidalPositionalEncoding", SinusoidalPositionalEncoding,
         lambda rng: Case(SinusoidalPositionalEncoding(9, C1 + 2), (randn(rng, B1, T1, C1 + 2),))),
    Item("LayerNorm", "LayerNorm", LayerNorm,
         lambda rng: Case(vary_constants(LayerNorm(C1), rng, scale=0.5), (randn(rng, B1, T1, C1, scale=2.0) + 0.5,))),
    Item("Dropout (training, p = 0.3)", "Dropout", Dropout,
         lambda rng: Case(FixedMaskDropout(0.3, seed=int(rng.integers(2**31))), (randn(rng, B1, T1, C1),)),
         pick=(0,), fd="piecewise", torch=RANDOM_MASK),
    Item("GELU (tanh)", "GELU", GELU, lambda rng: Case(GELU("tanh"), (_gelu_inputs(rng, B1, T1, C1),)),
         anchor='GELU, tanh ("tanh"):'),
    Item("GELU (exact)", "GELU", GELU, lambda rng: Case(GELU("none"), (_gelu_inputs(rng, B1, T1, C1),)),
         anchor='GELU, exact ("none"):'),
    Item("ReLU", "ReLU", ReLU, lambda rng: Case(ReLU(), (_off_relu_kink(rng, B1, T1, C1),)),
         anchor="ReLU:", fd="piecewise"),
    Item("Tanh", "Tanh", Tanh, lambda rng: Case(Tanh(), (randn(rng, B1, T1, C1, scale=1.5),)), anchor="Tanh:"),
    Item("Softmax", "Softmax", Softmax, lambda rng: Case(Softmax(), (randn(rng, B1, T1, V, scale=3.0),)), pick=(0,)),
    Item("LogSoftmax", "LogSoftmax", LogSoftmax,
         lambda rng: Case(LogSoftmax(), (randn(rng, B1, T1, V, scale=3.0),)), pick=(1,)),
    Item("CrossEntropyLoss", "CrossEntropyLoss", CrossEntropyLoss, _cross_entropy, h=CE_H),
    Item("ScaledDotProductAttention", "ScaledDotProductAttention", ScaledDotProductAttention, _sdpa(False, False),
         anchor="Scaled dot-product attention"),
    Item("ScaledDotProductAttention (causal, padding)", "ScaledDotProductAttention", ScaledDotProductAttention,
         _sdpa(True, True), anchor="Scaled dot-product attention"),
    Item("SelfAttention (projection-free)", "SelfAttention", SelfAttention,
         lambda rng: Case(SelfAttention(), (randn(rng, B, T, 6),)),
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
         lambda rng: Case(vary_constants(FeedForward(C1, 7, rng=rng), rng), (randn(rng, B1, T1, C1),))),
    Item("TransformerBlock (pre-LN)", "TransformerBlock", TransformerBlock, _block("pre"),
         anchor="forward, pre-LN (GPT-2):", fd="model"),
    Item("TransformerBlock (post-LN)", "TransformerBlock", TransformerBlock, _block("post"),
         anchor="forward, post-LN (Vaswani et al.):", fd="model"),
    Item("decoder layer", "TransformerBlock", TransformerBlock, _decoder_layer,
         anchor="forward, decoder layer, post-LN (Vaswani et al.):", fd="model"),
    *RECURRENT_ITEMS,
    *MODEL_ITEMS,
    Item("SGD (momentum 0.9, decay 0.01)", "SGD", SGD, _optimizer(SGD, "SGD", lr=0.1, momentum=0.9, weight_decay=0.01),
         anchor="update, per parameter θ with gradient g:", fd=None),
    Item("Adam (L2 decay 0.1)", "Adam", Adam, _optimizer(Adam, "Adam", lr=1e-2, weight_decay=0.1),
         anchor="update, per parameter θ", pick=(0, 2, 3, 4, 5), fd=None),
    Item("AdamW (decay 0.1)", "AdamW", AdamW, _optimizer(AdamW, "AdamW", lr=1e-2, weight_decay=0.1),
         anchor="update, per parameter θ", pick=(1, 2, 3, 4, 5), fd=None),
]

LAYERS = list(dict.fromkeys(item.layer for item in ITEMS))  # the names `minilm check LAYER` accepts
