"""The PyTorch twins of minilm's layers: the reference every hand-written forward and backward is held to.

This is the only sub-package of minilm that imports torch, and nothing imports it at package import time: the
tests and ``minilm check`` load it when they need it, so minilm itself runs without torch installed.

``twin(module)`` builds the torch module that computes the same function, with the same parameter names,
and copies the weights across by name. ``compare(module, *inputs)`` runs both on the same inputs with the
"fake loss" L = Σ out ⊙ g (g random), and returns, for the output, every floating input and every
parameter, the pair (minilm's array, torch's array) as NumPy arrays.
"""

import numpy as np
import torch

from minilm.backend import asarray, is_floating, to_numpy
from minilm.verify.reference.bert import BERTTwin, MLMHeadTwin
from minilm.verify.reference.blocks import DecoderLayerTwin, GPTTwin, TransformerBlockTwin
from minilm.verify.reference.language_models import RNNModel, TutorialTwin
from minilm.verify.reference.recurrent import RecurrentOutputsTwin
from minilm.verify.reference.seq2seq import Seq2SeqTwin
from minilm.verify.reference.transformer import TransformerTwin
from minilm.verify.reference.layers import (CrossEntropyTwin, EmbeddingsTwin, FeedForwardTwin, LogSoftmaxTwin,
                                     MultiheadAttentionTwin, ScaledDotProductAttentionTwin, SelfAttentionTwin,
                                     SinusoidalTwin)


def to_torch(a, requires_grad=False):
    """A torch tensor on the CPU holding a copy of ``a`` (an array of either backend), same dtype."""
    return torch.tensor(np.asarray(to_numpy(a)), requires_grad=requires_grad)


def _build_twin(module):
    kind = type(module).__name__
    if kind == "Linear":
        return torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if kind == "Embedding":
        return torch.nn.Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx)
    if kind == "LayerNorm":
        return torch.nn.LayerNorm(module.normalized_shape, eps=module.eps)
    if kind == "GELU":
        return torch.nn.GELU(approximate=module.approximate)
    if kind == "ReLU":
        return torch.nn.ReLU()
    if kind == "Tanh":
        return torch.nn.Tanh()
    if kind == "Softmax":
        return torch.nn.Softmax(dim=module.axis)
    if kind == "LogSoftmax":
        return LogSoftmaxTwin(module.axis)
    if kind == "CrossEntropyLoss":
        return CrossEntropyTwin(module.ignore_index)
    if kind == "Dropout":
        return torch.nn.Dropout(module.p)
    if kind == "SinusoidalPositionalEncoding":
        return SinusoidalTwin(module.max_len, module.d_model)
    if kind == "ScaledDotProductAttention":
        return ScaledDotProductAttentionTwin(module.causal)
    if kind == "SelfAttention":
        return SelfAttentionTwin(module.scaled)
    if kind == "MultiHeadAttention":
        return MultiheadAttentionTwin(module.d_model, module.n_heads, bias=module.in_proj_bias is not None,
                                      causal=module.causal, dropout=module.attn_dropout.p)
    if kind == "FeedForward":
        return FeedForwardTwin(module.c_fc.in_features, module.c_fc.out_features, module.activation,
                               bias=module.c_fc.bias is not None)
    if kind == "TransformerBlock":
        return TransformerBlockTwin(module) if module.crossattention is None else DecoderLayerTwin(module)
    if kind == "Embeddings":
        return EmbeddingsTwin(module)
    if kind == "GPT":
        return GPTTwin(module)
    if kind == "MLMHead":
        return MLMHeadTwin(module)
    if kind == "BERT":
        return BERTTwin(module)
    if kind == "Transformer":
        return TransformerTwin(module)
    if kind == "Seq2Seq":
        return Seq2SeqTwin(module)
    if kind == "RecurrentOutputs":
        return RecurrentOutputsTwin(module)
    if kind in ("LSTMLM", "RNNLM"):
        return RNNModel(module)
    if kind == "TutorialTransformer":
        return TutorialTwin(module)
    raise TypeError(f"no PyTorch twin for {kind}")


def twin(module, dtype=None):
    """The torch module computing what ``module`` computes, with its weights copied by name.

    dtype: the torch dtype of the twin; by default that of the module's first parameter (float32 if none).
    """
    reference = _build_twin(module)
    state = module.state_dict()
    if dtype is None:
        first = next(iter(state.values()), None)
        dtype = to_torch(first).dtype if first is not None else torch.float32
    reference = reference.to(dtype)
    if state:
        reference.load_state_dict({name: to_torch(array) for name, array in state.items()}, strict=True)
    return reference.train(module.training)


def compare(module, *inputs, seed=0, **kwargs):
    """Run ``module`` and its twin forward and backward on the same inputs and upstream gradient.

    Returns {name: (minilm array, torch array)} for "out", each floating input (named "d" + its position,
    e.g. "dinput0") and each parameter gradient ("d" + dotted name), all as NumPy arrays; a parameter without
    a gradient on a side (one the output does not use, as BertModel's pooler) counts as zeros there.
    """
    dtype = next((to_torch(x).dtype for x in inputs if is_floating(x)), None)
    reference = twin(module, dtype=dtype)

    module.zero_grad()
    out = module.forward(*inputs, **kwargs)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out)).astype(out.dtype)
    dinputs = module.backward(asarray(dout))
    if not isinstance(dinputs, tuple):
        dinputs = (dinputs,)

    torch_inputs = [to_torch(x, requires_grad=is_floating(x)) for x in inputs]
    torch_kwargs = {k: to_torch(v) if hasattr(v, "dtype") else v for k, v in kwargs.items()}
    torch_out = reference(*torch_inputs, **torch_kwargs)
    (torch_out * torch.from_numpy(dout)).sum().backward()

    pairs = {"out": (to_numpy(out), torch_out.detach().numpy())}
    floating = [(i, x) for i, x in enumerate(torch_inputs) if x.requires_grad]
    for (i, x), dx in zip(floating, dinputs):
        pairs[f"dinput{i}"] = (to_numpy(dx), x.grad.numpy())
    torch_params = dict(reference.named_parameters())
    for name, param in module.named_parameters():
        # a parameter the output does not use (BertModel's pooler) has no gradient on either side: zeros
        unused = np.zeros(param.shape, dtype=param.data.dtype)
        theirs = torch_params[name].grad
        pairs[f"d{name}"] = (to_numpy(param.grad) if param.grad is not None else unused,
                             theirs.numpy() if theirs is not None else unused)
    return pairs


def max_rel_error(ours, theirs):
    """max|a - b| / max|b|: the error relative to the tensor's scale (0.0 when both are zero)."""
    scale = float(np.max(np.abs(theirs), initial=0.0))
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - theirs), initial=0.0))
    return diff / scale if scale > 0 else diff
