"""Twins of whole blocks and models: the encoder block, the decoder layer (torch.nn.TransformerDecoderLayer) and
the GPT."""

import torch
import torch.nn.functional as F

from minilm.nn.transformer import TORCH_DECODER_NAMES
from minilm.verify.reference.layers import FeedForwardTwin, MultiheadAttentionTwin, SinusoidalTwin, _with_future


class TransformerBlockTwin(torch.nn.Module):
    """Pre-LN: u = x + Attn(LN₁(x)), y = u + FFN(LN₂(u)). Post-LN: u = LN₁(x + Attn(x)), y = LN₂(u + FFN(u))."""

    def __init__(self, block):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        self.norm = block.norm
        self.ln_1 = torch.nn.LayerNorm(block.ln_1.normalized_shape, eps=block.ln_1.eps)
        self.attn = MultiheadAttentionTwin(attn.d_model, attn.n_heads, bias=attn.in_proj_bias is not None,
                                           causal=attn.causal, dropout=attn.attn_dropout.p)
        self.ln_2 = torch.nn.LayerNorm(block.ln_2.normalized_shape, eps=block.ln_2.eps)
        self.mlp = FeedForwardTwin(mlp.c_fc.in_features, mlp.c_fc.out_features, mlp.activation, mlp.c_fc.bias is not None)

    def forward(self, x, key_padding_mask=None):
        if self.norm == "pre":
            u = x + self.attn(self.ln_1(x), key_padding_mask=key_padding_mask)
            return u + self.mlp(self.ln_2(u))
        u = self.ln_1(x + self.attn(x, key_padding_mask=key_padding_mask))
        return self.ln_2(u + self.mlp(u))


class DecoderLayerTwin(torch.nn.Module):
    """torch.nn.TransformerDecoderLayer(batch_first=True), its sublayers under minilm's names (TORCH_DECODER_NAMES)."""

    def __init__(self, block):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        act = {"relu": "relu", "gelu_exact": "gelu", "gelu": lambda x: F.gelu(x, approximate="tanh")}[mlp.activation]
        # dropout 0: torch draws its own masks, never comparable, and so its hidden layer may stay in training mode
        layer = torch.nn.TransformerDecoderLayer(attn.d_model, attn.n_heads, mlp.c_fc.out_features, dropout=0.0,
                                                 activation=act, layer_norm_eps=block.ln_1.eps, batch_first=True,
                                                 norm_first=block.norm == "pre")
        if attn.in_proj_bias is None:  # minilm's bias=False drops the Linears' biases; torch's drops LayerNorm's too
            for linear in (layer.linear1, layer.linear2, layer.self_attn.out_proj, layer.multihead_attn.out_proj):
                linear.bias = None
            layer.self_attn.in_proj_bias = layer.multihead_attn.in_proj_bias = None
        self.mlp = torch.nn.Module()
        for ours, theirs in TORCH_DECODER_NAMES.items():  # the same modules: torch's forward uses minilm's weights
            owner, _, name = ours.rpartition(".")
            setattr(self.get_submodule(owner), name, getattr(layer, theirs))
        self.layer, self.causal = [layer], attn.causal  # in a list, so its parameters are listed once, as minilm's

    def forward(self, x, memory, key_padding_mask=None, memory_key_padding_mask=None, attn_mask=None):
        return self.layer[0](x, memory, tgt_mask=_with_future(attn_mask, x.shape[1], self.causal),
                             tgt_key_padding_mask=key_padding_mask, memory_key_padding_mask=memory_key_padding_mask)


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
