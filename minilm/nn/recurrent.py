"""What the recurrent layers share: L stacked layers, each reading the sequence below it one step at a time.

forward:  layer l reads x^l (B, T, I_l) (x^0 = the input, x^{l+1} = layer l's output y^l, I_l = H above 0):
              z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh       (B, G·H), G gates (LSTM 4, RNN 1)
              (h_t, c_t) = cell(z_t, c_{t-1})                     the cell: minilm.nn.lstm, minilm.nn.rnn
          The input half of every z_t is one matmul over all T steps at once (it does not depend on h); only
          the h_{t-1} W_hhᵀ half has to wait for the step before it.
backward: through time, t = T … 1, for each layer from the top: dh_t = dy_t + (the gradient h_t got from step
          t + 1); the cell turns (dh_t, dc_t) into dz_t and the gradients of h_{t-1}, c_{t-1}:
              dh_{t-1} = dz_t W_hh                                 (plus the cell's own path for c)
          Each weight is used T times, so its gradient is a sum over the steps, taken as one matmul each:
              dW_ih = Σ_t dz_tᵀ x_t,   dW_hh = Σ_t dz_tᵀ h_{t-1},   db_ih = db_hh = Σ_t dz_t
              dx_t = dz_t W_ih                                     (the layer below's dy)
          and added into Parameter.grad once per call (DESIGN.md's contract for recurrence).
state:    given (h_0, c_0) (each (L, B, H)) the sequence continues a previous one: truncated backpropagation
          through time carries the final state of one batch into the next as a constant (detached), so its
          gradient is not needed for training but is computed anyway, as ``dstate0``, for the checks.
          backward(dy, dstate) also takes the gradient of the final state (h_n, c_n), None for zeros.
shapes:   B batch, T steps, I input size, H hidden size, L layers; torch's batch_first=True layout.
names:    torch's: weight_ih_l{l} (G·H, I_l), weight_hh_l{l} (G·H, H), bias_ih_l{l}, bias_hh_l{l} (G·H,)
init:     every weight and bias U(-1/√H, 1/√H), torch's.
kept:     per layer, its input, every h_t (and the cell's own per-step values): a list through time.
ref:      Elman 1990; Hochreiter & Schmidhuber 1997; Werbos 1990 (backpropagation through time); torch.nn.LSTM
"""

import math

from minilm.backend import is_floating, xp
from minilm.nn.module import Module, Parameter, host_rng, init_uniform


class Recurrent(Module):
    """Base of LSTM and RNN: G gates, a cell (forward_cell, backward_cell) given by the subclass."""

    kept = ("cache",)
    gates = 1
    with_cell = False  # True: the state is (h, c) (LSTM); False: h alone (RNN)

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, rng=None):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        rng = host_rng(rng)
        self.input_size, self.hidden_size, self.num_layers, self.bias = input_size, hidden_size, num_layers, bias
        G, H, bound = self.gates, hidden_size, 1.0 / math.sqrt(hidden_size)
        for l in range(num_layers):
            below = input_size if l == 0 else H
            setattr(self, f"weight_ih_l{l}", Parameter(init_uniform(rng, (G * H, below), bound)))  # (G·H, I_l)
            setattr(self, f"weight_hh_l{l}", Parameter(init_uniform(rng, (G * H, H), bound)))  # (G·H, H)
            if bias:
                setattr(self, f"bias_ih_l{l}", Parameter(init_uniform(rng, (G * H,), bound)))  # (G·H,)
                setattr(self, f"bias_hh_l{l}", Parameter(init_uniform(rng, (G * H,), bound)))  # (G·H,)

    def _weights(self, l):
        return (getattr(self, f"weight_ih_l{l}"), getattr(self, f"weight_hh_l{l}"),
                getattr(self, f"bias_ih_l{l}", None), getattr(self, f"bias_hh_l{l}", None))

    def forward(self, x, state=None):
        """(y (B, T, H), final state): (h_n, c_n) each (L, B, H) for an LSTM, h_n (L, B, H) for an RNN."""
        if not is_floating(x) or x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects a floating input of shape (B, T, input_size="
                             f"{self.input_size}), got {tuple(x.shape)} {x.dtype}")
        B, T, _ = x.shape
        if T == 0:
            raise ValueError(f"{type(self).__name__} needs at least one step, got an input of shape {tuple(x.shape)}")
        h0, c0 = self._initial_state(state, B, x.dtype)
        caches, h_n, c_n = [], [], []
        for l in range(self.num_layers):
            W_ih, W_hh, b_ih, b_hh = self._weights(l)
            z_in = x @ W_ih.data.T  # (B, T, G·H): the input half of every step at once
            if b_ih is not None:
                z_in = z_in + (b_ih.data + b_hh.data)
            hs, cell_cache, h, c = self.forward_cell(z_in, h0[l], None if c0 is None else c0[l], W_hh.data)
            caches.append((x, hs, cell_cache))
            h_n.append(h)
            c_n.append(c)
            x = hs[:, 1:]  # (B, T, H): this layer's output, the next one's input
        self.cache = caches
        final = xp.stack(h_n)  # (L, B, H)
        return x, ((final, xp.stack(c_n)) if self.with_cell else final)

    def backward(self, dy, dstate=None):
        """dx (B, T, I); adds every parameter's gradient; keeps dstate0, the initial state's gradient."""
        caches = self.cache
        dh_n, dc_n = self._state_gradient(dstate, dy)
        dh0, dc0 = [None] * self.num_layers, [None] * self.num_layers
        for l in reversed(range(self.num_layers)):
            x, hs, cell_cache = caches[l]
            W_ih, W_hh, b_ih, b_hh = self._weights(l)
            dz, dh0[l], dc0[l] = self.backward_cell(dy, dh_n[l], dc_n[l], cell_cache, W_hh.data)  # (B, T, G·H)
            B, T, GH = dz.shape
            dz_rows = dz.reshape(B * T, GH)
            # forward: z_t = x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh, for every t: sums over the steps
            W_ih.accumulate(dz_rows.T @ x.reshape(B * T, -1))  # (G·H, I_l)
            W_hh.accumulate(dz_rows.T @ hs[:, :-1].reshape(B * T, -1))  # (G·H, H): h_{t-1} beside dz_t
            if b_ih is not None:
                db = dz_rows.sum(axis=0)  # (G·H,)
                b_ih.accumulate(db)
                b_hh.accumulate(db.copy())
            dy = dz @ W_ih.data  # (B, T, I_l): the gradient of this layer's input, the layer below's output
        self.dstate0 = (xp.stack(dh0), xp.stack(dc0)) if self.with_cell else xp.stack(dh0)
        return dy

    def _initial_state(self, state, B, dtype):
        """(h0, c0) each (L, B, H) (c0 None for an RNN): zeros, or the given state checked."""
        shape = (self.num_layers, B, self.hidden_size)
        if state is None:
            zeros = xp.zeros(shape, dtype=dtype)
            return zeros, (xp.zeros(shape, dtype=dtype) if self.with_cell else None)
        parts = state if self.with_cell else (state,)
        if self.with_cell and (not isinstance(state, tuple) or len(state) != 2):
            raise ValueError("an LSTM's state is a tuple (h_0, c_0), each (num_layers, B, hidden_size)")
        for name, part in zip(("h_0", "c_0"), parts):
            if tuple(part.shape) != shape:
                raise ValueError(f"{name} must have shape (num_layers, B, hidden_size) = {shape}, got "
                                 f"{tuple(part.shape)}")
        return parts[0].astype(dtype, copy=False), (parts[1].astype(dtype, copy=False) if self.with_cell else None)

    def _state_gradient(self, dstate, dy):
        """(dh_n, dc_n) each (L, B, H): the final state's gradient, zeros where None."""
        shape = (self.num_layers, dy.shape[0], self.hidden_size)
        if dstate is None:
            dstate = (None, None) if self.with_cell else None
        dh, dc = dstate if self.with_cell else (dstate, None)
        return (xp.zeros(shape, dtype=dy.dtype) if dh is None else dh,
                xp.zeros(shape, dtype=dy.dtype) if dc is None else dc)
