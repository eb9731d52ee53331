"""The PyTorch twins of minilm's layers: the reference every hand-written forward and backward is held to.

This is the only module in minilm that imports torch, and nothing imports it at package import time: the
tests and ``minilm check`` load it when they need it, so minilm itself runs without torch installed.

``twin(module)`` builds the torch module that computes the same function, with the same parameter names,
and copies the weights across by name. ``compare(module, *inputs)`` runs both on the same inputs with the
"fake loss" L = Σ out ⊙ g (g random), and returns, for the output, every floating input and every
parameter, the pair (minilm's array, torch's array) as NumPy arrays.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from minilm.backend import asarray, is_floating, to_numpy


def to_torch(a, requires_grad=False):
    """A torch tensor on the CPU holding a copy of ``a`` (an array of either backend), same dtype."""
    return torch.tensor(np.asarray(to_numpy(a)), requires_grad=requires_grad)


class CrossEntropyTwin(torch.nn.Module):
    """F.cross_entropy over the last axis of logits of any leading shape (torch wants classes on axis 1)."""

    def __init__(self, ignore_index):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=self.ignore_index)


class LogSoftmaxTwin(torch.nn.Module):
    def __init__(self, axis):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return torch.log_softmax(x, dim=self.axis)


class SinusoidalTwin(torch.nn.Module):
    """x + PE[:T], PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""

    def __init__(self, max_len, d_model):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]
        inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq)[:, : d_model // 2]
        self.register_buffer("pe", pe, persistent=False)  # a function of the shape, not state

    def forward(self, x):
        return x + self.pe[: x.shape[-2]].to(x.dtype)


def _visible(T, causal, key_padding_mask):
    """Bool (B or 1, 1, T, T), True where query i may see key j: torch's attn_mask convention for sdpa."""
    visible = torch.ones(1, 1, T, T, dtype=torch.bool)
    if causal:
        visible = visible & torch.ones(T, T, dtype=torch.bool).tril()
    if key_padding_mask is not None:
        visible = visible & ~key_padding_mask[:, None, None, :]
    return visible


class ScaledDotProductAttentionTwin(torch.nn.Module):
    """F.scaled_dot_product_attention over (B, H, T, hs) with the causal and key-padding masks as one bool mask."""

    def __init__(self, causal):
        super().__init__()
        self.causal = causal

    def forward(self, q, k, v, key_padding_mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=_visible(q.shape[-2], self.causal, key_padding_mask))


class SelfAttentionTwin(torch.nn.Module):
    """softmax(e eᵀ · scale) e, scale = 1/√C (scaled) or 1: F.scaled_dot_product_attention with q = k = v = e."""

    def __init__(self, scaled):
        super().__init__()
        self.scaled = scaled

    def forward(self, e):
        return F.scaled_dot_product_attention(e, e, e, scale=None if self.scaled else 1.0)


class MultiheadAttentionTwin(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention(batch_first=True) as self-attention: forward(x, key_padding_mask) -> output.

    A subclass rather than a wrapper so the parameter names stay torch's (in_proj_weight, out_proj.weight, ...).
    For a query whose every key is masked torch gives NaN (need_weights=True) or zeros (need_weights=False, through
    F.scaled_dot_product_attention in recent versions): compare against it only where some key is visible.
    """

    def __init__(self, d_model, n_heads, bias, causal, dropout):
        super().__init__(d_model, n_heads, dropout=dropout, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x, key_padding_mask=None, need_weights=False):
        T = x.shape[1]
        future = torch.ones(T, T, dtype=torch.bool).triu(1) if self.causal else None  # True = may not attend
        out, weights = super().forward(x, x, x, key_padding_mask=key_padding_mask, attn_mask=future,
                                       need_weights=need_weights, average_attn_weights=False)
        return (out, weights) if need_weights else out


class FeedForwardTwin(torch.nn.Module):
    """c_proj(act(c_fc(x))): minilm's FeedForward, with GPT-2's names for the two Linear layers."""

    def __init__(self, d_model, d_ff, activation, bias):
        super().__init__()
        self.c_fc = torch.nn.Linear(d_model, d_ff, bias=bias)
        self.act = {"gelu": torch.nn.GELU("tanh"), "gelu_exact": torch.nn.GELU(), "relu": torch.nn.ReLU()}[activation]
        self.c_proj = torch.nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class TransformerBlockTwin(torch.nn.Module):
    """Pre-LN: u = x + Attn(LN₁(x)), y = u + FFN(LN₂(u)). Post-LN: u = LN₁(x + Attn(x)), y = LN₂(u + FFN(u))."""

    def __init__(self, block):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        self.norm = block.norm
        self.ln_1 = torch.nn.LayerNorm(block.ln_1.normalized_shape, eps=block.ln_1.eps)
        self.attn = _build_twin(attn)
        self.ln_2 = torch.nn.LayerNorm(block.ln_2.normalized_shape, eps=block.ln_2.eps)
        self.mlp = FeedForwardTwin(mlp.c_fc.in_features, mlp.c_fc.out_features, mlp.activation, mlp.c_fc.bias is not None)

    def forward(self, x):
        if self.norm == "pre":
            u = x + self.attn(self.ln_1(x))
            return u + self.mlp(self.ln_2(u))
        u = self.ln_1(x + self.attn(x))
        return self.ln_2(u + self.mlp(u))


class GPTTwin(torch.nn.Module):
    """The whole GPT in torch with minilm's (GPT-2's) parameter names: logits = head(LN_f(blocks(wte[idx] + P)))."""

    def __init__(self, gpt):
        super().__init__()
        cfg = self.config = gpt.config
        self.wte = torch.nn.Embedding(cfg.vocab_size, cfg.n_embd)
        learned = cfg.pos == "learned"
        self.wpe = torch.nn.Embedding(cfg.block_size, cfg.n_embd) if learned else SinusoidalTwin(cfg.block_size, cfg.n_embd)
        self.h = torch.nn.ModuleList(TransformerBlockTwin(block) for block in gpt.h)
        self.ln_f = torch.nn.LayerNorm(cfg.n_embd) if gpt.ln_f is not None else None
        self.lm_head = torch.nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        if self.config.pos == "learned":
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        else:
            x = self.wpe(self.wte(idx))
        for block in self.h:
            x = block(x)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return self.lm_head(x)


def _build_twin(module):
    kind = type(module).__name__
    if kind == "Linear":
        return torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if kind == "Embedding":
        return torch.nn.Embedding(module.num_embeddings, module.embedding_dim)
    if kind == "LayerNorm":
        return torch.nn.LayerNorm(module.normalized_shape, eps=module.eps)
    if kind == "GELU":
        return torch.nn.GELU(approximate=module.approximate)
    if kind == "ReLU":
        return torch.nn.ReLU()
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
        return TransformerBlockTwin(module)
    if kind == "GPT":
        return GPTTwin(module)
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
    e.g. "dinput0") and each parameter gradient ("d" + dotted name), all as NumPy arrays.
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
        grad = param.grad if param.grad is not None else np.zeros(param.shape)
        pairs[f"d{name}"] = (to_numpy(grad), torch_params[name].grad.numpy())
    return pairs


def max_rel_error(ours, theirs):
    """max|a - b| / max|b|: the error relative to the tensor's scale (0.0 when both are zero)."""
    scale = float(np.max(np.abs(theirs), initial=0.0))
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - theirs), initial=0.0))
    return diff / scale if scale > 0 else diff
