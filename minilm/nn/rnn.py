"""RNN: the plain (Elman) recurrent layer, h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh).

cell:     z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh     (B, H)
          h_t = φ(z_t),  φ = tanh (torch's default) or relu
backward: dz_t = (dy_t + dh_t) ⊙ φ'(z_t),  φ' = 1 - h_t² for tanh, [h_t > 0] for relu
          dh_{t-1} = dz_t W_hh
          Back in time the gradient is multiplied, step after step, by diag(φ') W_hh: over k steps a product
          of k such matrices, whose size goes as the k-th power of W_hh's largest singular value times the
          squashing: it vanishes below 1 and explodes above it (Bengio et al. 1994; Pascanu et al. 2013), the
          reason for the LSTM (minilm.nn.lstm) and for gradient clipping. The layers, the sums over time and
          the state are minilm.nn.recurrent's.
shapes:   weight_ih_l{l} (H, I_l), weight_hh_l{l} (H, H), as torch.nn.RNN; the state is h alone, (L, B, H)
kept:     every h_t (B, T + 1, H, h_0 first).
ref:      Elman 1990; Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural
          networks"; torch.nn.RNN
"""

from minilm.backend import xp
from minilm.nn.recurrent import Recurrent

NONLINEARITIES = ("tanh", "relu")


class RNN(Recurrent):
    gates = 1
    with_cell = False

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, rng=None):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, rng)

    def forward_cell(self, z_in, h0, c0, W_hh):
        B, T, H = z_in.shape
        hs = xp.empty((B, T + 1, H), dtype=z_in.dtype)  # h_0 … h_T
        hs[:, 0] = h0
        for t in range(T):
            z = z_in[:, t] + hs[:, t] @ W_hh.T  # (B, H)
            hs[:, t + 1] = xp.tanh(z) if self.nonlinearity == "tanh" else xp.maximum(z, 0)
        return hs, hs, hs[:, T], None  # the cell's cache: h_t alone gives φ'

    def backward_cell(self, dy, dh, dc, cell_cache, W_hh):
        hs = cell_cache  # (B, T + 1, H)
        B, T, H = dy.shape
        dz = xp.empty_like(dy)  # (B, T, H)
        for t in reversed(range(T)):
            h = hs[:, t + 1]
            slope = 1.0 - h * h if self.nonlinearity == "tanh" else (h > 0).astype(h.dtype)  # φ'(z_t) from h_t
            dz[:, t] = (dh + dy[:, t]) * slope
            dh = dz[:, t] @ W_hh  # (B, H) to h_{t-1}
        return dz, dh, None
