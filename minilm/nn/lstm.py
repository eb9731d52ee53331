"""LSTM: the long short-term memory layer, a recurrence whose cell state is only ever scaled and added to.

cell:     z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh, split into four (B, H) gates in torch's order i, f, g, o:
              i = σ(z_i)   input gate: how much of the candidate to write
              f = σ(z_f)   forget gate: how much of the old cell to keep
              g = tanh(z_g) the candidate
              o = σ(z_o)   output gate: how much of the cell to show
              c_t = f ⊙ c_{t-1} + i ⊙ g,    h_t = o ⊙ tanh(c_t)
backward: given dh_t (from above and from step t + 1) and dc_t (from step t + 1), with σ' = σ(1 - σ), tanh' = 1 - tanh²:
              do = dh_t ⊙ tanh(c_t)
              dc = dc_t + dh_t ⊙ o ⊙ (1 - tanh²(c_t))
              di = dc ⊙ g,   df = dc ⊙ c_{t-1},   dg = dc ⊙ i
              dz = [di ⊙ i(1 - i), df ⊙ f(1 - f), dg ⊙ (1 - g²), do ⊙ o(1 - o)]
              dc_{t-1} = dc ⊙ f,   dh_{t-1} = dz W_hh
          The cell's path back in time is dc_{t-1} = dc ⊙ f: a product of forget gates, not of weight matrices
          and squashing derivatives as in a plain RNN, so with f near 1 a gradient crosses many steps
          undiminished (Hochreiter & Schmidhuber's constant error carousel). The layers, the sums over time and
          the state are minilm.nn.recurrent's.
shapes:   z (B, T, 4H); h, c (B, H) per step; weight_ih_l{l} (4H, I_l), weight_hh_l{l} (4H, H) as torch.nn.LSTM
kept:     every h_t and c_t (B, T + 1, H each, h_0 and c_0 first), the four gates and tanh(c_t) of every step.
ref:      Hochreiter & Schmidhuber 1997; Gers et al. 2000 (the forget gate); torch.nn.LSTM
"""

from minilm.backend import xp
from minilm.nn.recurrent import Recurrent


def sigmoid(z):
    """σ(z) = 1 / (1 + e^{-z}) written as (1 + tanh(z/2)) / 2, which overflows for no z."""
    return 0.5 * (xp.tanh(0.5 * z) + 1.0)


class LSTM(Recurrent):
    gates = 4
    with_cell = True

    def forward_cell(self, z_in, h0, c0, W_hh):
        B, T, G = z_in.shape
        H = G // 4
        hs = xp.empty((B, T + 1, H), dtype=z_in.dtype)  # h_0 … h_T
        cs = xp.empty((B, T + 1, H), dtype=z_in.dtype)  # c_0 … c_T
        hs[:, 0], cs[:, 0] = h0, c0
        acts = xp.empty_like(z_in)  # (B, T, 4H): i, f, g, o of every step
        tanh_c = xp.empty((B, T, H), dtype=z_in.dtype)  # (B, T, H)
        for t in range(T):
            z = z_in[:, t] + hs[:, t] @ W_hh.T  # (B, 4H)
            a = sigmoid(z)  # (B, 4H): i, f and o are right; g is overwritten next
            a[:, 2 * H:3 * H] = xp.tanh(z[:, 2 * H:3 * H])
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            cs[:, t + 1] = f * cs[:, t] + i * g  # (B, H)
            tanh_c[:, t] = xp.tanh(cs[:, t + 1])
            hs[:, t + 1] = o * tanh_c[:, t]
            acts[:, t] = a
        return hs, (cs, acts, tanh_c), hs[:, T], cs[:, T]

    def backward_cell(self, dy, dh, dc, cell_cache, W_hh):
        cs, acts, tanh_c = cell_cache
        B, T, G = acts.shape
        H = G // 4
        dz = xp.empty_like(acts)  # (B, T, 4H)
        for t in reversed(range(T)):
            a = acts[:, t]
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            # forward: h_t = o ⊙ tanh(c_t); dh_t gathers the output's gradient and step t + 1's
            dh = dh + dy[:, t]
            do = dh * tanh_c[:, t]
            dc = dc + dh * o * (1.0 - tanh_c[:, t] ** 2)
            # forward: c_t = f ⊙ c_{t-1} + i ⊙ g
            dz[:, t, :H] = dc * g * i * (1.0 - i)  # di ⊙ σ'
            dz[:, t, H:2 * H] = dc * cs[:, t] * f * (1.0 - f)  # df ⊙ σ'
            dz[:, t, 2 * H:3 * H] = dc * i * (1.0 - g * g)  # dg ⊙ tanh'
            dz[:, t, 3 * H:] = do * o * (1.0 - o)  # do ⊙ σ'
            dc = dc * f  # (B, H) to c_{t-1}
            dh = dz[:, t] @ W_hh  # (B, H) to h_{t-1}
        return dz, dh, dc
