"""The twin of minilm.models.Transformer: torch.nn.Transformer(batch_first=True) itself, not a re-implementation.

Its modules are also reachable under minilm's names (encoder.0.attn is torch's encoder.layers.0.self_attn, ...,
encoder_norm its encoder.norm), read off ``Transformer.torch_parameter_names``, the one name map: so ``twin()``
loads minilm's state_dict by name, and ``compare`` pairs each minilm gradient with torch's own parameter's.
"""

import warnings

import torch

_NOT_THERE = object()


class TransformerTwin(torch.nn.Module):
    """torch.nn.Transformer, its submodules aliased under minilm's names; the Transformer itself sits in a list so
    that each parameter is listed once, under minilm's name."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        with warnings.catch_warnings():  # the nested-tensor fast path is inference-only, never used here; torch
            # warns when a setting (odd nhead, norm_first) rules it out, and Transformer has no switch to say so
            warnings.filterwarnings("ignore", message="enable_nested_tensor is True")
            core = torch.nn.Transformer(cfg.d_model, cfg.nhead, cfg.num_encoder_layers, cfg.num_decoder_layers,
                                        cfg.dim_feedforward, cfg.dropout, activation=cfg.activation,
                                        layer_norm_eps=cfg.layer_norm_eps, batch_first=True, norm_first=cfg.norm_first)
        theirs = {id(param): name for name, param in model.torch_parameter_names().items()}
        owners = {}  # minilm's module path -> torch's, for each parameter's owner
        for ours, param in model.named_parameters():
            our_owner, _, leaf = ours.rpartition(".")
            their_owner, _, their_leaf = theirs[id(param)].rpartition(".")
            if leaf != their_leaf:
                raise ValueError(f"{ours} maps to {theirs[id(param)]}: the parameter's own name differs")
            owners[our_owner] = their_owner
        for ours in sorted(owners, key=lambda path: path.count(".")):  # a module first, then what it already holds
            if _submodule(self, ours) is _NOT_THERE:
                _alias(self, ours, core.get_submodule(owners[ours]))
        self.core = [core]

    def train(self, mode=True):
        super().train(mode)
        self.core[0].train(mode)  # its own dropouts (dropout1, dropout2, ...) are not among the aliased modules
        return self

    def forward(self, src, tgt, src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
                tgt_is_causal=True):
        T = tgt.shape[1]
        # boolean, as the padding masks (torch warns on a float mask beside a boolean one); True = may not attend
        future = torch.ones(T, T, dtype=torch.bool).triu(1) if tgt_is_causal else None  # (T, T)
        return self.core[0](src, tgt, tgt_mask=future, src_key_padding_mask=src_key_padding_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal)


def _submodule(root, path):
    try:
        return root.get_submodule(path)
    except AttributeError:
        return _NOT_THERE


def _alias(root, path, module):
    *parents, last = path.split(".")
    node = root
    for name in parents:
        if name not in node._modules:
            node.add_module(name, torch.nn.Module())
        node = node._modules[name]
    node.add_module(last, module)
