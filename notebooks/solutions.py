"""The exercises of the course: the switch that marks a blank, and one reference solution per exercise.

An exercise in a notebook is a function (or a method) whose body the reader writes. It starts blank,

    @exercise("merge_heads_backward")
    def backward(self, dout):
        raise NotImplementedError("your code here: merge_heads_backward, ...")

and the cell after it checks it with minilm's checker, printing the error next to the tolerance it is held to.
Called, an exercise runs the reader's code. While it is still blank it stops with that NotImplementedError, so
a reader running the course meets the blank, never an answer. With MINILM_SOLUTIONS=1 in the environment a
blank runs the function of the same name below instead, and says so; the test suite sets it
(tests/test_notebooks.py), so every notebook executes top to bottom and every check is exercised. A filled-in
exercise always runs the reader's code, switch or not. MINILM_SOLUTIONS may also name a .py file: its
functions stand in for the blanks (the suite plants wrong answers that way, to show the checks catch them).

Read a solution after trying the exercise: each one below is in the order of the notebooks.
"""

import functools
import importlib.util
import math
import os

from minilm.backend import xp
from minilm.nn import softmax
from minilm.nn.activation import GELU_CUBIC, SQRT_2_OVER_PI
from minilm.nn.softmax import softmax_backward

SWITCH = "MINILM_SOLUTIONS"  # "1": a blank runs the solution below; a path to a .py file: that file's function
BLANK = "your code here: "  # how every blank's NotImplementedError begins: the exercise's name follows
_announced = set()  # the exercises whose blank has been replaced once already, so the note prints once


def exercise(name):
    """Mark a function as the exercise ``name``: a blank (it raises NotImplementedError(BLANK + name ...))
    runs the solution ``name`` when the switch is on, and stops the notebook when it is off."""

    def mark(blank):
        @functools.wraps(blank)
        def run(*args, **kwargs):
            try:
                return blank(*args, **kwargs)
            except NotImplementedError as err:
                if not str(err).startswith(BLANK + name) or not os.environ.get(SWITCH):
                    raise  # off: the reader meets the blank (or their own NotImplementedError)
            if name not in _announced:
                _announced.add(name)
                print(f"(exercise {name} is blank: {SWITCH} is set, so {_source()} runs in its place)")
            return _solution(name)(*args, **kwargs)

        run.exercise = name
        return run

    return mark


def _source():
    value = os.environ[SWITCH]
    return "notebooks/solutions.py" if value == "1" else value


def _solution(name):
    """The function ``name`` of this file, or of the .py file the switch names."""
    value = os.environ[SWITCH]
    if value == "1":
        return globals()[name]
    spec = importlib.util.spec_from_file_location("planted_solutions", value)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


# notebook 1: BigramWithBias.backward
def bigram_bias_backward(self, dlogits):
    V = dlogits.shape[-1]
    # forward: logits = W[ids] + b, b added at every one of the B·T positions, so its gradient sums over them
    self.bias.accumulate(dlogits.reshape(-1, V).sum(axis=0))  # (V,)
    return self.wte.backward(dlogits)  # None: token ids have no gradient


# notebook 2: ScaledSoftmax.backward
def scaled_softmax_backward(self, dp):
    # forward: p = softmax(u)
    du = softmax_backward(dp, self.p)  # (B, T, V)
    # forward: u = beta · z
    return self.beta * du  # (B, T, V)


# notebook 3: TiedLogits.backward
def tied_logits_backward(self, dz):
    V, C = self.wte.weight.shape
    # forward: z = e Wᵀ  (the output use of W)
    self.wte.weight.accumulate(dz.reshape(-1, V).T @ self.e.reshape(-1, C))  # (V, C)
    de = dz @ self.wte.weight.data  # (B, T, C)
    # forward: e = W[ids]  (the input use: scatter-adds de into the same gradient; None for the ids)
    return self.wte.backward(de)


# notebook 4: OneCausalHead.backward
def causal_head_backward(self, dy):
    # forward: y = A v
    dA = dy @ self.v.swapaxes(-1, -2)  # (B, T, T)
    dv = self.A.swapaxes(-1, -2) @ dy  # (B, T, hs)
    # forward: A = softmax(S)
    dS = softmax_backward(dA, self.A)  # (B, T, T)
    # forward: S = q kᵀ · scale + M; S_ij pairs query i with key j, so key j collects dS_ij over i: a transpose
    dq = dS @ self.k * self.scale  # (B, T, hs)
    dk = dS.swapaxes(-1, -2) @ self.q * self.scale  # (B, T, hs)
    # forward: q, k, v = projections of the same x, so their input gradients add
    return self.query.backward(dq) + self.key.backward(dk) + self.value.backward(dv)  # (B, T, C)


# notebook 5: MergeHeads.backward
def merge_heads_backward(self, dout):
    # forward: out = y.transpose(0, 2, 1, 3).reshape(B, T, C): undo the reshape, then the transpose (its own inverse)
    return dout.reshape(self.B, self.T, self.H, self.hs).transpose(0, 2, 1, 3)  # (B, H, T, hs)


# notebook 6: RMSNorm.backward
def rms_norm_backward(self, dy):
    # forward: y = w ⊙ xhat
    self.weight.accumulate((dy * self.xhat).reshape(-1, dy.shape[-1]).sum(axis=0))  # (C,)
    dxhat = dy * self.weight.data  # (B, T, C)
    # forward: xhat = x · rstd, rstd = (mean(x²) + eps)^(-1/2): LayerNorm's form without the mean term
    return (dxhat - self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True)) * self.rstd  # (B, T, C)


# notebook 7: SiLU.backward
def silu_backward(self, dy):
    # forward: y = x σ(x);  σ' = σ (1 - σ)
    return dy * self.sig * (1.0 + self.x * (1.0 - self.sig))  # (..., C)


# notebook 8: Rosenbrock.backward
def rosenbrock_backward(self, dout):
    x, y = self.theta.data[0], self.theta.data[1]
    # forward: f = (1 - x)² + 100 (y - x²)²
    dx = -2 * (1 - x) - 400 * x * (y - x * x)
    dy = 200 * (y - x * x)
    self.theta.accumulate(dout * xp.stack([dx, dy]))  # (2,)
    return None  # the module has no inputs


# notebook 9: the learning rate of the warmup-cosine schedule at step it
def warmup_cosine_lr(it, lr, min_lr, warmup_iters, lr_decay_iters):
    if it < warmup_iters:  # linear warmup, one step short of lr at its end
        return lr * (it + 1) / (warmup_iters + 1)
    if it >= lr_decay_iters:  # the floor
        return min_lr
    ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)  # in [0, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


# notebook 10: top-k filtering at a temperature
def top_k_probs(logits, k, temperature):
    z = logits.astype(xp.float64) / temperature  # (B, V)
    kth = xp.sort(z, axis=-1)[:, -k][:, None]  # (B, 1) the k-th largest logit of each row
    z = xp.where(z < kth, -xp.inf, z)  # (B, V) everything below it can no longer be drawn
    return softmax(z, axis=-1)  # (B, V) renormalised over the k kept tokens


# notebook 11: the pre-LN block's backward, every step by hand (f holds the forward's intermediates, p its weights)
def block_backward(dy, x, p, f):
    B, H, T, hs = f["q"].shape
    C, d_ff = H * hs, f["fc"].shape[-1]
    # forward: y = u + mlp  (a sum copies its gradient to both terms: the residual is a highway for dy)
    dmlp = dy  # (B, T, C)
    du = dy  # (B, T, C) the first of u's two paths; the FFN's adds below
    # forward: mlp = gelu W_projᵀ + b_proj
    dW_proj = dmlp.reshape(B * T, C).T @ f["gelu"].reshape(B * T, d_ff)  # (C, d_ff)
    db_proj = dmlp.reshape(B * T, C).sum(axis=0)  # (C,)
    dgelu = dmlp @ p["mlp.c_proj.weight"]  # (B, T, d_ff)
    # forward: gelu = ½ fc (1 + t)
    dfc = 0.5 * (1.0 + f["gelu_t"]) * dgelu  # (B, T, d_ff) the first of fc's two paths
    dgelu_t = 0.5 * f["fc"] * dgelu  # (B, T, d_ff)
    # forward: t = tanh(gelu_u);  tanh' = 1 - t²
    dgelu_u = (1.0 - f["gelu_t"] ** 2) * dgelu_t  # (B, T, d_ff)
    # forward: gelu_u = √(2/π) (fc + 0.044715 fc³)  (fc's second path: the two add)
    dfc = dfc + SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * f["fc"] ** 2) * dgelu_u  # (B, T, d_ff)
    # forward: fc = ln2 W_fcᵀ + b_fc
    dW_fc = dfc.reshape(B * T, d_ff).T @ f["ln2"].reshape(B * T, C)  # (d_ff, C)
    db_fc = dfc.reshape(B * T, d_ff).sum(axis=0)  # (d_ff,)
    dln2 = dfc @ p["mlp.c_fc.weight"]  # (B, T, C)
    # forward: ln2 = w₂ ⊙ xhat₂ + b₂
    dw_2 = (dln2 * f["ln2_xhat"]).reshape(B * T, C).sum(axis=0)  # (C,)
    db_2 = dln2.reshape(B * T, C).sum(axis=0)  # (C,)
    dxhat2 = dln2 * p["ln_2.weight"]  # (B, T, C)
    # forward: xhat₂ = (u - mean(u)) · rstd₂: the closed form of notebook 6 this time, no stages
    xhat2 = f["ln2_xhat"]
    du = du + f["ln2_rstd"] * (dxhat2 - dxhat2.mean(axis=-1, keepdims=True)
                               - xhat2 * (dxhat2 * xhat2).mean(axis=-1, keepdims=True))  # (B, T, C)
    # forward: u = x + attn  (the second residual: x gets du as it is, the attention branch a copy)
    dattn = du  # (B, T, C)
    dx = du  # (B, T, C) the first of x's two paths; the attention's adds below
    # forward: attn = merged W_outᵀ + b_out
    dW_out = dattn.reshape(B * T, C).T @ f["merged"].reshape(B * T, C)  # (C, C)
    db_out = dattn.reshape(B * T, C).sum(axis=0)  # (C,)
    dmerged = dattn @ p["attn.out_proj.weight"]  # (B, T, C)
    # forward: merged = att.swapaxes(1, 2).reshape(B, T, C): undo the reshape, then the swap
    datt = dmerged.reshape(B, T, H, hs).swapaxes(1, 2)  # (B, H, T, hs)
    # forward: att = A v
    dA = datt @ f["v"].swapaxes(-1, -2)  # (B, H, T, T)
    dv = f["A"].swapaxes(-1, -2) @ datt  # (B, H, T, hs)
    # forward: A = softmax(S)  (zero where masked, since A is)
    dS = f["A"] * (dA - (dA * f["A"]).sum(axis=-1, keepdims=True))  # (B, H, T, T)
    # forward: S = q kᵀ / √hs + M; S_ij pairs query i with key j, so key j collects dS_ij over i: a transpose
    dq = dS @ f["k"] / math.sqrt(hs)  # (B, H, T, hs)
    dk = dS.swapaxes(-1, -2) @ f["q"] / math.sqrt(hs)  # (B, H, T, hs)
    # forward: q, k, v = the thirds of qkv, each split into heads: merge each back, side by side again
    dqkv = xp.concatenate([d.swapaxes(1, 2).reshape(B, T, C) for d in (dq, dk, dv)], axis=-1)  # (B, T, 3C)
    # forward: qkv = ln1 W_inᵀ + b_in
    dW_in = dqkv.reshape(B * T, 3 * C).T @ f["ln1"].reshape(B * T, C)  # (3C, C)
    db_in = dqkv.reshape(B * T, 3 * C).sum(axis=0)  # (3C,)
    dln1 = dqkv @ p["attn.in_proj_weight"]  # (B, T, C)
    # forward: ln1 = w₁ ⊙ xhat₁ + b₁
    dw_1 = (dln1 * f["ln1_xhat"]).reshape(B * T, C).sum(axis=0)  # (C,)
    db_1 = dln1.reshape(B * T, C).sum(axis=0)  # (C,)
    dxhat1 = dln1 * p["ln_1.weight"]  # (B, T, C)
    # forward: xhat₁ = xc₁ · rstd₁: staged this time, notebook 6's steps (rstd₁ is broadcast over C: a sum)
    dxc1 = dxhat1 * f["ln1_rstd"]  # (B, T, C) the first of xc₁'s two paths
    drstd1 = (dxhat1 * f["ln1_xc"]).sum(axis=-1, keepdims=True)  # (B, T, 1)
    # forward: rstd₁ = (var₁ + eps)^(-1/2)
    dvar1 = -0.5 * f["ln1_rstd"] ** 3 * drstd1  # (B, T, 1)
    # forward: var₁ = mean(xc₁²)  (xc₁'s second path)
    dxc1 = dxc1 + 2.0 * f["ln1_xc"] * dvar1 / C  # (B, T, C)
    # forward: xc₁ = x - mu₁
    dmu1 = -dxc1.sum(axis=-1, keepdims=True)  # (B, T, 1)
    dx = dx + dxc1  # (B, T, C) x's second path
    # forward: mu₁ = mean(x)  (x's third path: each of the C channels gets 1/C of dmu₁)
    dx = dx + dmu1 / C  # (B, T, C)
    return {"dx": dx, "dln1_mu": dmu1, "dln1_xc": dxc1, "dln1_var": dvar1, "dln1_rstd": drstd1,
            "dln1_xhat": dxhat1, "dln1": dln1, "dqkv": dqkv, "dq": dq, "dk": dk, "dv": dv, "dS": dS, "dA": dA,
            "datt": datt, "dmerged": dmerged, "dattn": dattn, "du": du, "dln2_xhat": dxhat2, "dln2": dln2, "dfc": dfc,
            "dgelu_u": dgelu_u, "dgelu_t": dgelu_t, "dgelu": dgelu, "dmlp": dmlp,
            "dln_1.weight": dw_1, "dln_1.bias": db_1, "dattn.in_proj_weight": dW_in, "dattn.in_proj_bias": db_in,
            "dattn.out_proj.weight": dW_out, "dattn.out_proj.bias": db_out, "dln_2.weight": dw_2,
            "dln_2.bias": db_2, "dmlp.c_fc.weight": dW_fc, "dmlp.c_fc.bias": db_fc,
            "dmlp.c_proj.weight": dW_proj, "dmlp.c_proj.bias": db_proj}


# notebook 12: PreLNResidual.backward, y = x + f(LN(x))
def residual_backward(self, dy):
    # forward: y = x + f(LN(x)): x reaches y directly and through the branch, so the two gradients add
    return dy + self.ln.backward(self.f.backward(dy))  # (B, T, C)


# notebook 13: the sinusoidal positional encoding table
def sinusoidal_table(max_len, C):
    pos = xp.arange(max_len, dtype=xp.float64)[:, None]  # (max_len, 1)
    omega = 10000.0 ** (-xp.arange(0, C, 2, dtype=xp.float64) / C)  # (ceil(C/2),) ω_i = 10000^(-2i/C)
    angle = pos * omega  # (max_len, ceil(C/2))
    pe = xp.zeros((max_len, C), dtype=xp.float64)  # (max_len, C)
    pe[:, 0::2] = xp.sin(angle)  # ceil(C/2) sin columns
    pe[:, 1::2] = xp.cos(angle[:, : C // 2])  # floor(C/2) cos columns: an odd C has no cos for its last pair
    return pe


# notebook 14: inverted dropout's forward and backward, given the uniform draws that decide the mask
def inverted_dropout(x, dy, draws, p, training=True):
    if not training:
        return x, dy  # evaluation: the identity, both ways
    scaled_mask = (draws >= p) / (1.0 - p)  # keep with probability 1 - p, scaled so that E[y] = x
    # forward: y = x ⊙ keep / (1 - p);  backward: dx = dy ⊙ keep / (1 - p), the same mask and scale
    return x * scaled_mask, dy * scaled_mask


# notebook 15: one merge step of BPE training (count adjacent pairs, take the most frequent, merge it everywhere)
def bpe_merge_step(seqs, new_id):
    counts = {}  # (left, right) -> occurrences over all the sequences
    for ids in seqs:
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
    pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))  # most frequent; a tie goes to the smallest ids
    merged = []
    for ids in seqs:
        out, i = [], 0
        while i < len(ids):  # left to right: (a, a) in a a a gives aa a
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        merged.append(out)
    return pair, merged


# notebook 16: GPT-2's tensors (Hugging Face names, Conv1D layout) as minilm's state dict
def gpt2_to_minilm(hf_tensors, n_layer):
    t = {name.removeprefix("transformer."): array for name, array in hf_tensors.items()}
    # the tables and the final LayerNorm keep name and layout (wte (V, C) and wpe (T_max, C) are looked up by row)
    state = {name: t[name] for name in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias")}
    for i in range(n_layer):
        h = f"h.{i}."
        for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.bias", "mlp.c_proj.bias"):
            state[h + name] = t[h + name]  # (C,) or (4C,): one number per channel or output in both libraries
        state[h + "attn.in_proj_bias"] = t[h + "attn.c_attn.bias"]  # (3C,) [q | k | v], under minilm's name
        state[h + "attn.out_proj.bias"] = t[h + "attn.c_proj.bias"]  # (C,)
        # Conv1D computes x W + b with W (in, out), minilm's Linear x Wᵀ + b with W (out, in): each matrix transposed
        state[h + "attn.in_proj_weight"] = t[h + "attn.c_attn.weight"].T  # (C, 3C) -> (3C, C): q|k|v columns -> rows
        state[h + "attn.out_proj.weight"] = t[h + "attn.c_proj.weight"].T  # (C, C): square, transposed all the same
        state[h + "mlp.c_fc.weight"] = t[h + "mlp.c_fc.weight"].T  # (C, 4C) -> (4C, C)
        state[h + "mlp.c_proj.weight"] = t[h + "mlp.c_proj.weight"].T  # (4C, C) -> (C, 4C)
    state["lm_head.weight"] = state["wte.weight"]  # the tied head: GPT-2's logits use wte itself
    return state


# notebook 17: BERT's masking of a batch of ids, from the generator's draws u, v, r taken in mask_tokens's order
def bert_masking(ids, rng, mask_id, special_ids, vocab_size, probability=0.15):
    import numpy as np  # host NumPy, as minilm.data.masking: masks are made before a batch joins the backend

    ids = np.asarray(ids)  # (B, T)
    special = np.asarray(sorted(set(int(i) for i in special_ids)))  # (S,)
    ordinary = np.setdiff1d(np.arange(vocab_size), special)  # (V - S,) in increasing order: what may replace a token
    u = rng.random(ids.shape)  # (B, T) chooses, for every position, chosen or not
    v = rng.random(ids.shape)  # (B, T) what a chosen position shows
    r = ordinary[rng.integers(0, ordinary.size, size=ids.shape)]  # (B, T) a random ordinary token
    chosen = (u < probability) & ~np.isin(ids, special)  # [CLS], [SEP], [PAD], [UNK], [MASK]: never chosen
    labels = np.where(chosen, ids, -100).astype(np.int64)  # (B, T) -100: CrossEntropyLoss's ignore_index
    # v < 0.8: [MASK]; 0.8 <= v < 0.9: the random token; otherwise (and where not chosen) the token itself
    masked = np.where(chosen & (v < 0.8), mask_id, np.where(chosen & (v < 0.9), r, ids)).astype(np.int64)
    return masked, labels  # np.where made new arrays: the caller's ids are untouched


# notebook 18: the classification head's backward (pooler, dropout, classifier), from dlogits to dh
def classifier_head_backward(dlogits, h, p, scaled_mask, W_p, W_c):
    # forward: logits = d W_cᵀ + b_c, where d = p ⊙ scaled_mask is what the classifier read
    d = p * scaled_mask  # (B, C)
    dW_c = dlogits.T @ d  # (K, C)
    db_c = dlogits.sum(axis=0)  # (K,)
    dd = dlogits @ W_c  # (B, C)
    # forward: d = p ⊙ keep / (1 - q): the forward's mask again, no new draw
    dp = dd * scaled_mask  # (B, C)
    # forward: p = tanh(u);  tanh' = 1 - tanh² = 1 - p²
    du = dp * (1.0 - p * p)  # (B, C)
    # forward: u = h W_pᵀ + b_p
    dW_p = du.T @ h  # (C, C)
    db_p = du.sum(axis=0)  # (C,)
    dh = du @ W_p  # (B, C) the gradient at [CLS]; BERT's backward puts it at dx_L[:, 0] and zeros elsewhere
    return {"dh": dh, "dW_p": dW_p, "db_p": db_p, "dW_c": dW_c, "db_c": db_c}


# notebook 19: one head of cross-attention's backward, no biases, from the forward's x, m and A (A is zero at padding)
def cross_attention_backward(dout, x, m, A, W_q, W_k, W_v, W_o):
    C = x.shape[-1]
    scale = 1.0 / math.sqrt(C)  # one head: hs = C
    # recomputed, not kept: three matmuls are cheaper than storing q, k and v
    q, k, v = x @ W_q.T, m @ W_k.T, m @ W_v.T  # (B, T, C), (B, S, C), (B, S, C)
    y = A @ v  # (B, T, C)
    # forward: out = y W_oᵀ
    dW_o = dout.reshape(-1, C).T @ y.reshape(-1, C)  # (C, C)
    dy = dout @ W_o  # (B, T, C)
    # forward: y = A v
    dA = dy @ v.swapaxes(-1, -2)  # (B, T, S)
    dv = A.swapaxes(-1, -2) @ dy  # (B, S, C)
    # forward: A = softmax(Z); where a key was masked A = 0, so dZ = 0 there and the mask needs no other care
    dZ = softmax_backward(dA, A)  # (B, T, S)
    # forward: Z = q kᵀ · scale + M; Z_ij pairs target i with source j, so source j collects dZ_ij over i
    dq = dZ @ k * scale  # (B, T, C)
    dk = dZ.swapaxes(-1, -2) @ q * scale  # (B, S, C)
    # forward: q = x W_qᵀ, k = m W_kᵀ, v = m W_vᵀ
    dW_q = dq.reshape(-1, C).T @ x.reshape(-1, C)  # (C, C)
    dW_k = dk.reshape(-1, C).T @ m.reshape(-1, C)  # (C, C)
    dW_v = dv.reshape(-1, C).T @ m.reshape(-1, C)  # (C, C)
    dx = dq @ W_q  # (B, T, C): x is only the queries
    dm = dk @ W_k + dv @ W_v  # (B, S, C): the memory feeds the keys and the values, so the two paths add
    return {"dx": dx, "dm": dm, "dW_q": dW_q, "dW_k": dW_k, "dW_v": dW_v, "dW_o": dW_o}


# notebook 20: one step of the LSTM cell's backward
def lstm_step_backward(dh, dc, i, f, g, o, c_prev, tanh_c, W_hh):
    # forward: h_t = o ⊙ tanh(c_t); the cell gets a second gradient through tanh
    do = dh * tanh_c  # (B, H)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)  # (B, H)
    # forward: c_t = f ⊙ c_{t-1} + i ⊙ g
    di, df, dg = dc * g, dc * c_prev, dc * i  # (B, H) each
    # forward: i, f, o = σ(z_i, z_f, z_o), g = tanh(z_g)
    dz = xp.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g * g), do * o * (1.0 - o)],
                        axis=-1)  # (B, 4H) in torch's order
    # forward: z_t = … + h_{t-1} W_hhᵀ; the cell's path back in time is scaled by the forget gate alone
    return dz, dz @ W_hh, dc * f


# notebook 21: a sentence vector as sentence-transformers makes all-MiniLM-L6-v2's: the masked mean, of unit length
def mean_pool(hidden, mask):
    import numpy as np  # host NumPy, as minilm.training.sentences: the vectors are compared and searched on the host

    m = np.asarray(mask, dtype=hidden.dtype)[..., None]  # (N, T, 1) 1 at a real token ([CLS] and [SEP] too), 0 at [PAD]
    v = (hidden * m).sum(axis=1) / m.sum(axis=1)  # (N, C) the mean over the real tokens: [PAD]'s states left out
    return v / np.linalg.norm(v, axis=1, keepdims=True)  # (N, C) unit rows, so e_i · e_j is the cosine


# notebook 22: the whole batch's mean-loss gradient from each shard's, each weighted by its share of the targets
def combine_shard_gradients(grads, counts):
    total = sum(counts)  # N = Σ_s N_s: the whole batch's counted targets, the mean's divisor
    # forward: L = (1/N) Σ_i ℓ_i = Σ_s (N_s / N) L_s, and the gradient is linear: the same weights on the ∇L_s
    return {name: sum(count / total * g[name] for g, count in zip(grads, counts)) for name in grads[0]}


# notebook 22: step k of ring all-reduce's reduce-scatter (chunks[r][c] is rank r's chunk c)
def reduce_scatter_step(chunks, k):
    p = len(chunks)
    new = [list(held) for held in chunks]  # every rank sends what it held before the step
    for r in range(p):
        c, to = (r - k) % p, (r + 1) % p  # the chunk rank r has summed k + 1 ranks' shares of, and its receiver
        new[to][c] = chunks[to][c] + chunks[r][c]  # the receiver adds it to its own share of that chunk
    return new
