"""The model rows of `minilm check`: a tiny GPT, BERT with each trained head, BERT's MLM head on its own, the
encoder-decoder Transformer (torch.nn.Transformer's core) and the translation model around it, Seq2Seq.

A model is too large to difference everywhere, so its rows difference GPT_COORDS stratified coordinates of each
array (minilm.verify.gradcheck) and are held to tolerances.GRADCHECK["model"]. Weights are the models' own
init (N(0, 0.02²)), with the constants (LayerNorm's ones and zeros, zero biases) offset by 0.02: realistic
magnitudes, and a forgotten w or b still shows.

BERT runs on a padded batch with two segments: attention_mask (B, T) with trailing zeros (every sequence keeps
its [CLS] key) and token_type_ids 0 then 1. Its ids avoid the [PAD] id: padding_idx makes the [PAD] row's
gradient zero by rule (torch's), not the derivative of the lookup, so finite differences would disagree there
by design; the padding itself is the attention mask's job. tests/test_bert.py checks the [PAD] row apart.

The Transformer runs post-LN (torch's default norm_first=False) with 1 encoder and 2 decoder blocks, so the
memory's gradient is a sum over two cross-attentions, on a padded source (also the memory's mask) and a padded
target. Its activation is "gelu": ReLU's kink would put the differences at the mercy of the seed (--seed).
Weights are minilm's own init (Linear U(±1/√fan_in)), the constants offset by 0.1. Its twin is
torch.nn.Transformer itself (minilm.verify.reference.transformer). tests/test_seq2seq_core.py covers relu and
norm_first=True.

Seq2Seq is that Transformer between token ids and logits, as the translation model runs it: one token table for
both languages, tied to the output (so it gets three gradients), scaled by √d_model, sinusoidal positions,
padding read from the ids ([PAD] = 0 at the end of the last source and target). Its twin is torch's embeddings,
torch.nn.Transformer and a Linear (minilm.verify.reference.seq2seq); tests/test_seq2seq.py covers the rest.
"""

import numpy as np

from minilm.backend import asarray
from minilm.models.bert import BERT, BERTConfig, MLMHead
from minilm.models.gpt import GPT, GPTConfig
from minilm.models.seq2seq import Seq2Seq, Seq2SeqConfig
from minilm.models.transformer import Transformer, TransformerConfig
from minilm.nn import Embedding
from minilm.verify.check_cases import Case, Item, padding, randn, vary_constants

GPT_SIZES = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12)  # C = 12, H = 2, hs = 6, T = 7
# coordinates differenced per GPT array, stratified (minilm.verify.gradcheck): a multiple of 3 and of H, so each
# third of in_proj_weight gets 4 and each head's rows in it 2, whatever the seed (4 independent draws missed a
# third one time in five). Measured: 0.5 s, against 0.2 s for 4 and 6 s for all 4032 parameters
GPT_COORDS = 12
# BERT: B = 3, T = 7, C = 12, H = 2, hs = 6, V = 11, d_ff = 20, K = 5 classes, 9 positions: every size differs,
# and C, H as the GPT's so GPT_COORDS keeps its guarantee (4 per third of in_proj_weight, 2 per head in each)
BERT_SIZES = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12, d_ff=20, num_labels=5, dropout=0.0)
BERT_BATCH, BERT_LENGTHS = (3, 7), (7, 5, 3)  # (B, T); the real tokens of each sequence, then padding
# the pooler's weight std in the classifier row: at the 0.02 init tanh is nearly the identity on [CLS]
# (|p| ≤ 0.14, tanh' ≥ 0.98), so a forgotten tanh' would be only ~1% off; at 0.1 |p| reaches 0.6 to 0.8, well
# into the bend, and that bug is off by order 1 (tests/test_bert.py). Not 0.3: |p| then reaches 0.996, where
# the curvature alone gave a truncation error of 1.3e-5 (∝ h², measured) at one seed of 40 at h = 1e-5
POOLER_STD = 0.1
MLM_B, MLM_T, MLM_C, MLM_V = 2, 3, 6, 7  # the MLM head alone
BERT_EPS = 1e-12  # BERT's LayerNorm eps (BERTConfig.layer_norm_eps)
# B = 3, S = 7 source and T = 5 target positions, C = 12, H = 2, hs = 6 (GPT_COORDS' guarantee as above), d_ff = 20
TRANSFORMER_SIZES = dict(d_model=12, nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=20,
                         dropout=0.0, activation="gelu")
TRANSFORMER_B, TRANSFORMER_S, TRANSFORMER_T = 3, 7, 5


def _gpt(rng):
    model = vary_constants(GPT(GPTConfig(**GPT_SIZES), rng=rng), rng, scale=0.02)
    return Case(model, (asarray(rng.integers(0, GPT_SIZES["vocab_size"], (3, 7))),))


def bert_batch(rng, vocab_size=BERT_SIZES["vocab_size"], lengths=BERT_LENGTHS, t=BERT_BATCH[1]):
    """ids, token_type_ids, attention_mask (B, T): sentence A then B over each sequence's real tokens, then
    padding (attention_mask 0, segment 0). ids are drawn from 1 ... V - 1, never the [PAD] id 0 (see above)."""
    b, lengths = len(lengths), np.asarray(lengths)[:, None]  # (B, 1)
    positions = np.arange(t)[None, :]  # (1, T)
    ids = rng.integers(1, vocab_size, (b, t))  # (B, T)
    mask = (positions < lengths).astype(np.int64)  # (B, T) 1 = a real token
    types = ((positions >= (lengths + 1) // 2) & (positions < lengths)).astype(np.int64)  # (B, T)
    return asarray(ids), asarray(types), asarray(mask)


def _bert(head):
    def build(rng):
        model = vary_constants(BERT(BERTConfig(**BERT_SIZES, head=head), rng=rng), rng, scale=0.02)
        if model.pooler is not None:
            pooler = model.pooler.weight
            pooler.data = asarray(rng.standard_normal(pooler.shape) * POOLER_STD, dtype=pooler.data.dtype)
        ids, types, mask = bert_batch(rng)
        return Case(model, (ids,), {"token_type_ids": types, "attention_mask": mask})
    return build


def _mlm_head(rng):
    head = vary_constants(MLMHead(Embedding(MLM_V, MLM_C, rng=rng), BERT_EPS, rng=rng), rng)
    return Case(head, (randn(rng, MLM_B, MLM_T, MLM_C),))


def _transformer(rng):
    model = vary_constants(Transformer(TransformerConfig(**TRANSFORMER_SIZES), rng=rng), rng)
    B, S, T, C = TRANSFORMER_B, TRANSFORMER_S, TRANSFORMER_T, TRANSFORMER_SIZES["d_model"]
    src_pad = padding(B, S)  # (B, S) the last source's second half: the encoder's keys and the memory's
    return Case(model, (randn(rng, B, S, C), randn(rng, B, T, C)),
                {"src_key_padding_mask": src_pad, "tgt_key_padding_mask": padding(B, T),
                 "memory_key_padding_mask": src_pad})


def _seq2seq(rng):
    config = Seq2SeqConfig(vocab_size=11, block_size=9, **TRANSFORMER_SIZES)
    model = vary_constants(Seq2Seq(config, rng=rng), rng)
    B, S, T = TRANSFORMER_B, TRANSFORMER_S, TRANSFORMER_T
    src, tgt = rng.integers(1, 11, (B, S)), rng.integers(1, 11, (B, T))  # (B, S), (B, T), never [PAD] = 0 ...
    src[-1, S // 2:], tgt[-1, T - 2:] = 0, 0  # ... except the last row's padding
    return Case(model, (asarray(src), asarray(tgt)))


# measured over seeds 0 ... 39 (600 for the MLM head) at h = 1e-5: worst FD errors 2.4e-6 (BERT, MLM head),
# 1.7e-6 (BERT, classifier head), both under GRADCHECK["model"]; 4.2e-7 (MLM head alone) under its "smooth"
MODEL_ITEMS = [
    Item("GPT (2 layers, tied head)", "GPT", GPT, _gpt, fd="model", max_coords=GPT_COORDS),
    Item("MLM head", "MLMHead", MLMHead, _mlm_head, anchor='head "mlm":', pick=(0,)),
    Item("BERT (MLM head)", "BERT", BERT, _bert("mlm"), anchor='head "mlm":', pick=(0,),
         fd="model", max_coords=GPT_COORDS),
    Item("BERT (classifier head)", "BERT", BERT, _bert("cls"), anchor='head "cls":',
         fd="model", max_coords=GPT_COORDS),
    Item("Transformer", "Transformer", Transformer, _transformer, pick=(0, 1, 2, 4), fd="model",
         max_coords=GPT_COORDS),
    Item("Seq2Seq", "Seq2Seq", Seq2Seq, _seq2seq, pick=(0, 1, 2, 3), fd="model", max_coords=GPT_COORDS),
]
