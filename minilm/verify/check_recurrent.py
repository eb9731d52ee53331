"""The recurrent rows of `minilm check`: an LSTM and a tanh RNN, two layers each, continuing a given state.

A recurrent layer returns (y, final state), and the checks want one array out: RecurrentOutputs runs the layer
from a given initial state and returns y, so the rows difference x, h_0 (and c_0) and every weight, and
compare them with torch.nn.LSTM / torch.nn.RNN(batch_first=True) run from the same state. The final state's
own gradient path (dh_n, dc_n) is tests/test_recurrent.py's. B = 2, T = 5, I = 3, H = 4, L = 2: every size
differs; inputs and states unit-scale, weights torch's U(±1/√H).
"""

from minilm.nn import LSTM, RNN
from minilm.nn.module import Module
from minilm.verify.check_cases import Case, Item, randn

B, T, I, H, L = 2, 5, 3, 4, 2


class RecurrentOutputs(Module):
    """y (B, T, H) of ``layer`` run from the state (h_0[, c_0]); backward returns (dx, dh_0[, dc_0])."""

    def __init__(self, layer):
        self.layer = layer

    def forward(self, x, h0, c0=None):
        return self.layer(x, h0 if c0 is None else (h0, c0))[0]

    def backward(self, dy):
        dx = self.layer.backward(dy)
        state = self.layer.dstate0
        return (dx, *state) if isinstance(state, tuple) else (dx, state)


def _lstm(rng):
    layer = LSTM(I, H, L, rng=rng)
    return Case(RecurrentOutputs(layer), (randn(rng, B, T, I), randn(rng, L, B, H), randn(rng, L, B, H)))


def _rnn(rng):
    layer = RNN(I, H, L, rng=rng)
    return Case(RecurrentOutputs(layer), (randn(rng, B, T, I), randn(rng, L, B, H)))


RECURRENT_ITEMS = [
    Item("LSTM (2 layers, from a state)", "LSTM", LSTM, _lstm, anchor="cell:", pick=(0, 5, 6)),
    Item("RNN (2 layers, tanh, from a state)", "RNN", RNN, _rnn, anchor="cell:"),
]
