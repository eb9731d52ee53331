"""nn.LSTM and nn.RNN against torch.nn.LSTM / torch.nn.RNN(batch_first=True) with the same weights: outputs, final
states and every gradient (the final state's included); finite differences; a planted wrong backward; truncated
backpropagation through time; inference; and the errors."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_close, largest_magnitude
from minilm.backend import asarray, to_numpy, xp
from minilm.nn import LSTM, RNN, inference
from minilm.nn.module import NotKeptError
from minilm.verify.check_recurrent import RecurrentOutputs
from minilm.verify.gradcheck import check_module
from minilm.verify.reference import compare
from minilm.verify.tolerances import GRADCHECK

B, T, I, H = 2, 6, 3, 4  # every size differs


def build(kind, num_layers=2, bias=True, rng=0, **options):
    if kind == "lstm":
        return LSTM(I, H, num_layers, bias=bias, rng=rng)
    return RNN(I, H, num_layers, nonlinearity=kind, bias=bias, rng=rng)


def torch_twin(model):
    kind = type(model).__name__
    options = dict(bias=model.bias, batch_first=True)
    twin = (torch.nn.LSTM(model.input_size, model.hidden_size, model.num_layers, **options) if kind == "LSTM" else
            torch.nn.RNN(model.input_size, model.hidden_size, model.num_layers, nonlinearity=model.nonlinearity,
                         **options))
    twin.load_state_dict({name: torch.tensor(to_numpy(a)) for name, a in model.state_dict().items()})
    return twin


def run_both(model, dtype="float64", seed=0, b=B, t=T, with_state=True):
    """{name: (minilm's, torch's)}: y, the final state, dx, the initial state's gradient and every parameter's,
    under the loss Σ y ⊙ g + Σ h_n ⊙ g_h (+ Σ c_n ⊙ g_c)."""
    rng = np.random.default_rng(seed)
    lstm = isinstance(model, LSTM)
    L = model.num_layers
    model.to(dtype)
    reference = torch_twin(model).to(getattr(torch, dtype))
    x = rng.standard_normal((b, t, model.input_size)).astype(dtype)
    states = [rng.standard_normal((L, b, model.hidden_size)).astype(dtype) for _ in range(2 if lstm else 1)]
    g = rng.standard_normal((b, t, model.hidden_size)).astype(dtype)
    g_states = [rng.standard_normal((L, b, model.hidden_size)).astype(dtype) for _ in states]

    given_state = (tuple(asarray(s) for s in states) if lstm else asarray(states[0])) if with_state else None
    y, final = model(asarray(x), given_state)
    dx = model.backward(asarray(g), tuple(asarray(s) for s in g_states) if lstm else asarray(g_states[0]))

    x_t = torch.tensor(x, requires_grad=True)
    states_t = [torch.tensor(s, requires_grad=True) for s in states]
    if with_state:
        y_t, final_t = reference(x_t, tuple(states_t) if lstm else states_t[0])
    else:
        y_t, final_t = reference(x_t)
    finals_t = final_t if lstm else (final_t,)
    loss = (y_t * torch.from_numpy(g)).sum() + sum((f * torch.from_numpy(gs)).sum() for f, gs in zip(finals_t, g_states))
    loss.backward()

    finals = final if lstm else (final,)
    pairs = {"y": (y, y_t.detach().numpy()), "dx": (dx, x_t.grad.numpy())}
    pairs.update({f"final {i}": (f, f_t.detach().numpy()) for i, (f, f_t) in enumerate(zip(finals, finals_t))})
    if with_state:
        dstate0 = model.dstate0 if lstm else (model.dstate0,)
        pairs.update({f"dstate0 {i}": (d, s.grad.numpy()) for i, (d, s) in enumerate(zip(dstate0, states_t))})
    theirs = dict(reference.named_parameters())
    pairs.update({"d" + name: (p.grad, theirs[name].grad.numpy()) for name, p in model.named_parameters()})
    return pairs, [x, *states]


def assert_pairs_close(pairs, inputs, dtype):
    largest = largest_magnitude([theirs for _, theirs in pairs.values()] + inputs)
    for name, (ours, theirs) in pairs.items():
        assert to_numpy(ours).dtype == theirs.dtype, name
        assert_close(ours, theirs, dtype, f"{name} ({dtype})", largest)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["lstm", "tanh", "relu"])
@pytest.mark.parametrize("num_layers, bias, with_state", [(1, True, False), (2, True, True), (2, False, True)])
def test_matches_torch(kind, num_layers, bias, with_state, dtype):
    model = build(kind, num_layers, bias)
    pairs, inputs = run_both(model, dtype, with_state=with_state)
    assert len([n for n in pairs if n.startswith("dweight") or n.startswith("dbias")]) == len(model.parameters())
    assert_pairs_close(pairs, inputs, dtype)


@given(b=st.integers(1, 3), t=st.integers(1, 7), i=st.integers(1, 4), h=st.integers(1, 5), layers=st.integers(1, 3),
       kind=st.sampled_from(["lstm", "tanh", "relu"]), seed=st.integers(0, 2**16))
def test_matches_torch_any_shape(b, t, i, h, layers, kind, seed):
    model = LSTM(i, h, layers, rng=seed) if kind == "lstm" else RNN(i, h, layers, nonlinearity=kind, rng=seed)
    pairs, inputs = run_both(model, seed=seed, b=b, t=t)
    assert_pairs_close(pairs, inputs, "float64")


@pytest.mark.parametrize("kind", ["lstm", "tanh"])
def test_finite_differences(kind):
    rng = np.random.default_rng(1)
    model = RecurrentOutputs(build(kind, rng=rng))
    states = [rng.standard_normal((2, B, H)) for _ in range(2 if kind == "lstm" else 1)]
    report = check_module(model, rng.standard_normal((B, T, I)), *states)
    assert len(report.errors) == len(model.parameters()) + 1 + len(states)  # every weight, x and the state
    assert report.passed(GRADCHECK["smooth"]), report


def forgets_the_forget_gate(self, dy, dh, dc, cell_cache, W_hh):
    """LSTM.backward_cell with dc_{t-1} = dc instead of dc ⊙ f: the cell's path back in time unscaled."""
    cs, acts, tanh_c = cell_cache
    H = acts.shape[-1] // 4
    dz = xp.empty_like(acts)
    for t in reversed(range(acts.shape[1])):
        a = acts[:, t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dh = dh + dy[:, t]
        dc = dc + dh * o * (1.0 - tanh_c[:, t] ** 2)
        dz[:, t] = xp.concatenate([dc * g * i * (1 - i), dc * cs[:, t] * f * (1 - f), dc * i * (1 - g * g),
                                   dh * tanh_c[:, t] * o * (1 - o)], axis=1)
        dh = dz[:, t] @ W_hh
    return dz, dh, dc


def test_a_planted_backward_that_forgets_the_forget_gate_is_caught(monkeypatch):
    monkeypatch.setattr(LSTM, "backward_cell", forgets_the_forget_gate)
    rng = np.random.default_rng(2)
    model = RecurrentOutputs(build("lstm", rng=rng))
    inputs = (rng.standard_normal((B, T, I)), rng.standard_normal((2, B, H)), rng.standard_normal((2, B, H)))
    assert not check_module(model, *inputs).passed(GRADCHECK["smooth"])
    pairs = compare(model, *(asarray(a) for a in inputs))
    assert np.abs(pairs["dinput0"][0] - pairs["dinput0"][1]).max() > 1e-3  # dx off by order 0.1, not rounding


@pytest.mark.parametrize("kind", ["lstm", "tanh"])
def test_truncated_bptt_carries_the_state_and_equals_the_whole_sequence(kind):
    """Two chunks, the first's final state fed to the second, give the whole sequence's outputs; with no loss
    on the first chunk, the second's input gradient is the whole run's there too."""
    rng = np.random.default_rng(3)
    model = build(kind, rng=rng).to("float64")
    x = asarray(rng.standard_normal((B, T, I)))
    whole, _ = model(x)
    g = rng.standard_normal((B, T, H))
    g[:, :T // 2] = 0
    dx_whole = to_numpy(model.backward(asarray(g)))
    first, state = model(x[:, :T // 2])
    second, _ = model(x[:, T // 2:], state)
    np.testing.assert_allclose(np.concatenate([to_numpy(first), to_numpy(second)], axis=1), to_numpy(whole),
                               rtol=0, atol=1e-15)
    dx_second = to_numpy(model.backward(asarray(g[:, T // 2:])))
    np.testing.assert_allclose(dx_second, dx_whole[:, T // 2:], rtol=0, atol=1e-15)


def test_under_inference_nothing_is_kept_and_a_backward_says_so():
    model = build("lstm")
    with inference():
        y, _ = model(asarray(np.zeros((B, T, I), dtype=np.float32)))
    with pytest.raises(NotKeptError, match="LSTM.backward needs 'cache'"):
        model.backward(y)


def test_bad_input_is_named():
    model = build("lstm")
    with pytest.raises(ValueError, match=r"expects a floating input of shape \(B, T, input_size=3\), got \(2, 6, 4\)"):
        model(asarray(np.zeros((B, T, 4))))
    with pytest.raises(ValueError, match="needs at least one step"):
        model(asarray(np.zeros((B, 0, I))))
    with pytest.raises(ValueError, match=r"an LSTM's state is a tuple \(h_0, c_0\)"):
        model(asarray(np.zeros((B, T, I))), asarray(np.zeros((2, B, H))))
    with pytest.raises(ValueError, match=r"c_0 must have shape \(num_layers, B, hidden_size\) = \(2, 2, 4\), got "
                                         r"\(1, 2, 4\)"):
        model(asarray(np.zeros((B, T, I))), (asarray(np.zeros((2, B, H))), asarray(np.zeros((1, B, H)))))
    with pytest.raises(ValueError, match="nonlinearity must be one of .*'sigmoid'"):
        RNN(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        LSTM(I, 0)
