"""Twins of the history's language models, written as their PyTorch examples write them.

RNNModel: pytorch/examples word_language_model's (Embedding -> dropout -> LSTM/RNN -> dropout -> Linear), with
    batch_first=True; its names (encoder, rnn, decoder) are minilm.models.LSTMLM's, so it loads minilm's state
    dict as it is.
TransformerModel: the tutorial "Language Modeling with nn.Transformer"'s model (embedding × √d_model,
    PositionalEncoding with dropout, nn.TransformerEncoder of post-LN ReLU layers under a causal mask, a Linear),
    batch_first=True (the tutorial feeds (T, B); only the layout differs). TutorialTwin shows it under minilm's
    names, read off TutorialTransformer.torch_parameter_names, as TransformerTwin does for nn.Transformer.
"""

import math

import torch

from minilm.verify.reference.transformer import _NOT_THERE, _alias, _submodule


class RNNModel(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg, rnn = model.config, model.rnn
        self.drop = torch.nn.Dropout(cfg.dropout)
        self.encoder = torch.nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.rnn = (torch.nn.LSTM if type(rnn).__name__ == "LSTM" else torch.nn.RNN)(
            cfg.n_embd, cfg.hidden_size, cfg.n_layer, batch_first=True)
        self.decoder = torch.nn.Linear(cfg.hidden_size, cfg.vocab_size)

    def forward(self, idx, state=None):
        output, _ = self.rnn(self.drop(self.encoder(idx)), state)
        return self.decoder(self.drop(output))


class PositionalEncoding(torch.nn.Module):
    def __init__(self, d_model, dropout, max_len):
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        # float64 where the tutorial has float32: the table is a constant, and the twin's must be exact
        position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)[:, : d_model // 2]
        self.register_buffer("pe", pe)

    def forward(self, x):  # (B, T, C)
        return self.dropout(x + self.pe[: x.shape[1]].to(x.dtype))


class TransformerModel(torch.nn.Module):
    def __init__(self, ntoken, d_model, nhead, d_hid, nlayers, dropout, max_len):
        super().__init__()
        self.pos_encoder = PositionalEncoding(d_model, dropout, max_len)
        layer = torch.nn.TransformerEncoderLayer(d_model, nhead, d_hid, dropout, batch_first=True)
        self.transformer_encoder = torch.nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.embedding = torch.nn.Embedding(ntoken, d_model)
        self.d_model = d_model
        self.linear = torch.nn.Linear(d_model, ntoken)

    def forward(self, src):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(src.shape[1])  # -inf above the diagonal
        x = self.pos_encoder(self.embedding(src) * math.sqrt(self.d_model))
        return self.linear(self.transformer_encoder(x, mask.to(x.dtype), is_causal=True))


class TutorialTwin(torch.nn.Module):
    """The tutorial's TransformerModel, its submodules aliased under minilm's names (in a list: listed once)."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        core = TransformerModel(cfg.vocab_size, cfg.n_embd, cfg.n_head, cfg.d_ff, cfg.n_layer, cfg.dropout,
                                cfg.block_size)
        theirs = {id(param): name for name, param in model.torch_parameter_names().items()}
        owners = {}
        for ours, param in model.named_parameters():
            our_owner, _, _ = ours.rpartition(".")
            owners[our_owner] = theirs[id(param)].rpartition(".")[0]
        for ours in sorted(owners, key=lambda path: path.count(".")):
            if _submodule(self, ours) is _NOT_THERE:
                _alias(self, ours, core.get_submodule(owners[ours]))
        self.core = [core]

    def train(self, mode=True):
        super().train(mode)
        self.core[0].train(mode)
        return self

    def forward(self, idx):
        return self.core[0](idx)
