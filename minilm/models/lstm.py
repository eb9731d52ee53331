"""LSTMLM and RNNLM: the recurrent language models the course's history runs through, as PyTorch's
word_language_model example builds them (its RNNModel: Embedding -> dropout -> LSTM/RNN -> dropout -> Linear).

forward:  e = dropout(E[idx])                            (B, T, C)  C = n_embd
          (y, state) = LSTM(e, state_0)                  (B, T, H)  n_layer stacked layers (minilm.nn.lstm; RNNLM:
                                                                    minilm.nn.rnn's tanh RNN)
          logits = dropout(y) W_decᵀ + b_dec             (B, T, V)
          Position t sees tokens 0 … t through the recurrence alone: no positions, no mask, and no context limit
          but the one a run chooses (block_size, the windows it trains on).
backward: the list read bottom to top, through time inside the recurrent layer (minilm.nn.recurrent).
state:    forward(idx, state) continues from a state (h_0, c_0) (RNN: h_0), each (n_layer, B, H); the final state
          is kept as ``final_state`` so that a caller can carry it into the next window (truncated BPTT,
          detached: no gradient crosses windows). The Trainer's random windows start from zeros, as nanoGPT's.
names:    word_language_model's: encoder (the token table), rnn.weight_ih_l0 … (torch.nn.LSTM's), decoder.
init:     encoder and decoder weights U(-0.1, 0.1), decoder bias 0 (its init_weights); the LSTM's own torch init.
ref:      Zaremba et al. 2014, "Recurrent Neural Network Regularization"; pytorch/examples word_language_model
"""

import numbers
from dataclasses import dataclass

from minilm.backend import xp
from minilm.models.inputs import token_ids
from minilm.models.registry import config_from_fields
from minilm.nn import LSTM, RNN, Dropout, Embedding, Linear
from minilm.nn.module import Module, host_rng, init_uniform

INIT_RANGE = 0.1  # word_language_model's initrange


@dataclass
class LSTMConfig:
    vocab_size: int = 65  # tokens; 65 distinct characters in tiny Shakespeare
    block_size: int = 64  # the longest window a forward takes (the recurrence itself has no limit)
    n_embd: int = 128  # channels C of the token embedding (emsize)
    hidden_size: int = 256  # the recurrent state's size H (nhid)
    n_layer: int = 2  # stacked recurrent layers (nlayers)
    dropout: float = 0.0  # on the embedding and on the recurrent output

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_embd", "hidden_size", "n_layer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_checkpoint(cls, fields, folder):
        return config_from_fields(cls, fields, folder, cls.__name__.removesuffix("Config"))


@dataclass
class RNNConfig(LSTMConfig):
    """The same fields, for the plain tanh RNN."""


class LSTMLM(Module):
    cell = LSTM

    def __init__(self, config, rng=None):
        rng = host_rng(rng)
        self.config = cfg = config
        self.encoder = Embedding(cfg.vocab_size, cfg.n_embd, rng=rng)
        self.encoder.weight.data = init_uniform(rng, (cfg.vocab_size, cfg.n_embd), INIT_RANGE)
        self.drop_in = Dropout(cfg.dropout, rng=int(rng.integers(2**63)))
        self.rnn = self.cell(cfg.n_embd, cfg.hidden_size, cfg.n_layer, rng=rng)
        self.drop_out = Dropout(cfg.dropout, rng=int(rng.integers(2**63)))
        self.decoder = Linear(cfg.hidden_size, cfg.vocab_size, rng=rng)
        self.decoder.weight.data = init_uniform(rng, (cfg.vocab_size, cfg.hidden_size), INIT_RANGE)
        self.decoder.bias.data = xp.zeros(cfg.vocab_size, dtype=self.decoder.bias.data.dtype)
        self.final_state = None

    def forward(self, idx, state=None):
        idx = token_ids(idx, type(self).__name__, self.config.block_size)  # (B, T)
        e = self.drop_in(self.encoder(idx))  # (B, T, C)
        y, self.final_state = self.rnn(e, state)  # (B, T, H)
        return self.decoder(self.drop_out(y))  # (B, T, V)

    def backward(self, dlogits):
        dy = self.drop_out.backward(self.decoder.backward(dlogits))  # (B, T, H)
        de = self.rnn.backward(dy)  # (B, T, C)
        self.encoder.backward(self.drop_in.backward(de))
        return None  # token ids have no gradient


class RNNLM(LSTMLM):
    cell = RNN
