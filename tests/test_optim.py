import json
import math

import numpy as np
import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st

from layer_checks import assert_close
from minilm import nn, to_numpy
from minilm.backend import asarray
from minilm.nn.module import Parameter
from minilm.optim import SGD, Adam, AdamW, WarmupCosine, WarmupLinear, clip_grad_norm, decay_groups
from minilm.verify.tolerances import TORCH


# Matrices, a 3-D tensor and vectors of different sizes: a parameter paired with the wrong state shows up.
SHAPES = [(5, 3), (3,), (2, 4, 3), (4,)]
STEPS = 5


def make_params(dtype, shapes=SHAPES, seed=0):
    """The same starting values as minilm Parameters and as torch leaf tensors."""
    rng = np.random.default_rng(seed)
    host = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return [Parameter(asarray(a.copy())) for a in host], [torch.tensor(a, requires_grad=True) for a in host]


def set_grads(ours, theirs, grads):
    """Give both sides the same gradients (None skips a parameter on both)."""
    for p, q, g in zip(ours, theirs, grads):
        p.grad = None if g is None else asarray(g.copy())
        q.grad = None if g is None else torch.tensor(g)


def random_grads(rng, dtype, shapes=SHAPES, scale=1.0):
    return [(rng.standard_normal(shape) * scale).astype(dtype) for shape in shapes]


def assert_same(ours, theirs, dtype, what):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        got, ref = to_numpy(p.data), q.detach().numpy()
        assert got.dtype == ref.dtype, f"{what}: parameter {i} is {got.dtype}, torch's is {ref.dtype}"
        assert_close(got, ref, dtype, f"{what}: parameter {i} differs from torch ({dtype})")


def run_against_torch(make_ours, make_theirs, dtype, steps=STEPS, seed=1, shapes=SHAPES, grad_mask=None):
    """``steps`` steps of both optimizers on the same random gradients, parameters compared after each."""
    ours, theirs = make_params(dtype, shapes)
    opt, ref = make_ours(ours), make_theirs(theirs)
    rng = np.random.default_rng(seed)
    for it in range(steps):
        grads = random_grads(rng, dtype, shapes)
        if grad_mask is not None:
            grads = [g if keep else None for g, keep in zip(grads, grad_mask(it))]
        set_grads(ours, theirs, grads)
        opt.step()
        ref.step()
        assert_same(ours, theirs, dtype, f"{type(opt).__name__} step {it + 1}")
    return opt, ours


SGD_CASES = [
    dict(momentum=0.0),
    dict(momentum=0.9, weight_decay=0.01),
    dict(momentum=0.9, dampening=0.1),
    dict(momentum=0.9, nesterov=True, weight_decay=0.01),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kwargs", SGD_CASES, ids=["plain", "momentum_l2", "dampening", "nesterov"])
def test_sgd_matches_torch(dtype, kwargs):
    run_against_torch(lambda ps: SGD(ps, lr=0.1, **kwargs), lambda ps: torch.optim.SGD(ps, lr=0.1, **kwargs), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_torch(dtype, weight_decay):
    kwargs = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-7, weight_decay=weight_decay)
    run_against_torch(lambda ps: Adam(ps, **kwargs), lambda ps: torch.optim.Adam(ps, **kwargs), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adamw_defaults_match_torch(dtype):
    # torch's AdamW default weight_decay is 0.01, and ours must be the same when the caller does not say.
    run_against_torch(lambda ps: AdamW(ps, lr=1e-2), lambda ps: torch.optim.AdamW(ps, lr=1e-2), dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adamw_with_decay_groups_clipping_and_schedule_matches_torch(dtype):
    ours, theirs = make_params(dtype)
    named = [(f"p{i}", p) for i, p in enumerate(ours)]
    opt = AdamW(decay_groups(named, weight_decay=0.1), lr=1.0, betas=(0.9, 0.95))
    ref = torch.optim.AdamW([{"params": [q for q in theirs if q.dim() >= 2], "weight_decay": 0.1},
                             {"params": [q for q in theirs if q.dim() < 2], "weight_decay": 0.0}],
                            lr=1.0, betas=(0.9, 0.95))
    schedule = WarmupCosine(lr=1e-2, min_lr=1e-3, warmup_iters=2, lr_decay_iters=4)
    torch_schedule = torch.optim.lr_scheduler.LambdaLR(ref, lambda it: schedule(it))  # base lr 1: factor = lr
    rng = np.random.default_rng(2)
    clipped = []
    for it, scale in enumerate([0.1, 3.0, 0.2, 2.0, 1.0]):  # joint norms ~0.4 to ~12 around max_norm 1.5
        set_grads(ours, theirs, random_grads(rng, dtype, scale=scale))
        lr = schedule.apply(opt, it)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([g["lr"] for g in ref.param_groups],
                                                                    rel=TORCH["float64"]["rtol"])
        norm = clip_grad_norm(ours, 1.5)
        torch_norm = float(torch.nn.utils.clip_grad_norm_(theirs, 1.5))
        assert norm == pytest.approx(torch_norm, rel=TORCH[dtype]["rtol"])
        clipped.append(norm > 1.5)
        opt.step()
        ref.step()
        torch_schedule.step()
        assert_same(ours, theirs, dtype, f"AdamW step {it + 1} (lr {lr:g})")
    assert any(clipped) and not all(clipped), f"the test should clip on some steps only, clipped {clipped}"


def test_adam_with_l2_is_not_adamw():
    # The comparison can fail: Adam's L2 decay (divided by √v) is a different rule from decoupled decay.
    with pytest.raises(AssertionError, match="differs from torch"):
        run_against_torch(lambda ps: Adam(ps, lr=1e-2, weight_decay=0.5),
                          lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.5), "float64")


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_first_adam_step_moves_each_coordinate_by_lr_sign_g(cls):
    lr, eps = 1e-3, 1e-8
    rng = np.random.default_rng(3)
    g = rng.standard_normal(50) * 10.0 ** rng.uniform(-3, 3, 50)  # magnitudes from 1e-3 to 1e3
    param = Parameter(asarray(rng.standard_normal(50)))
    before = to_numpy(param.data).copy()
    param.grad = asarray(g)
    cls([param], lr=lr, eps=eps, weight_decay=0.0).step()
    moved = before - to_numpy(param.data)
    # With t = 1 the corrections give m̂ = g, v̂ = g², so the move is lr g/(|g| + ε): lr sign(g) up to
    # lr ε/|g| (whatever |g| is), plus rounding of θ. Without the correction it would be 3.2 lr sign(g).
    bound = lr * eps / np.abs(g) + 4 * np.finfo(np.float64).eps * np.abs(before)
    assert np.all(np.abs(moved - lr * np.sign(g)) <= bound)


@pytest.mark.parametrize("ours_and_torch", [
    (lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1), lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
], ids=["adamw", "sgd"])
def test_parameters_without_grad_are_skipped_like_torch(ours_and_torch):
    # Parameter 1 has no gradient on steps 1-2 and parameter 3 none on step 4: they must not move then (not
    # even by decay), nor count the step, so their later bias corrections use their own t, as torch's do.
    mask = lambda it: [True, it >= 2, True, it != 3]  # noqa: E731
    opt, _ = run_against_torch(*ours_and_torch, "float64", grad_mask=mask)
    if isinstance(opt, AdamW):
        assert [opt.state[i]["step"] for i in range(4)] == [5, 3, 5, 4]


def test_skipped_parameter_is_untouched():
    ours, _ = make_params("float64")
    before = [to_numpy(p.data).copy() for p in ours]
    ours[0].grad = asarray(np.ones(SHAPES[0]))
    opt = AdamW(ours, lr=0.1, weight_decay=0.5)
    opt.step()
    assert list(opt.state) == [0]
    for p, b in zip(ours[1:], before[1:]):
        np.testing.assert_array_equal(to_numpy(p.data), b)
    assert not np.array_equal(to_numpy(ours[0].data), before[0])


def feed(opt, params, grads, lr):
    """One step of ``opt`` at learning rate ``lr`` (set on every group, as a schedule does) with ``grads``."""
    for p, g in zip(params, grads):
        p.grad = asarray(g.copy())
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()


@pytest.mark.parametrize("make", [
    lambda ps: AdamW(decay_groups([(str(i), p) for i, p in enumerate(ps)], 0.1), lr=1e-2),
    lambda ps: Adam(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adamw_groups", "adam", "sgd_nesterov"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_state_dict_round_trip_continues_identically(make, dtype):
    rng = np.random.default_rng(4)
    grads = [random_grads(rng, dtype) for _ in range(STEPS)]
    lrs = [0.05, 0.04, 0.02, 0.01, 0.005]  # a changing lr, as a schedule would set it
    straight, _ = make_params(dtype)
    opt = make(straight)
    for it in range(STEPS):
        feed(opt, straight, grads[it], lrs[it])

    params, _ = make_params(dtype)
    first = make(params)
    for it in range(3):
        feed(first, params, grads[it], lrs[it])
    arrays, meta = first.state_dict()
    saved = {key: to_numpy(a).copy() for key, a in arrays.items()}
    meta = json.loads(json.dumps(meta))  # through JSON, as train_state.json holds it
    weights = [to_numpy(p.data).copy() for p in params]  # the model checkpoint
    feed(first, params, grads[3], lrs[3])  # training on must not change what state_dict() returned
    for key, a in arrays.items():
        np.testing.assert_array_equal(to_numpy(a), saved[key], err_msg=f"{key} changed after state_dict()")

    resumed = [Parameter(asarray(w)) for w in weights]
    second = make(resumed)
    second.load_state_dict(saved, meta)
    assert [g["lr"] for g in second.param_groups] == [lrs[2]] * len(second.param_groups)
    assert all(a.dtype == np.dtype(dtype) for a in second.state_dict()[0].values())
    for it in range(3, STEPS):
        feed(second, resumed, grads[it], lrs[it])
    for i, (p, q) in enumerate(zip(resumed, straight)):
        np.testing.assert_array_equal(to_numpy(p.data), to_numpy(q.data), err_msg=f"parameter {i} after resuming")


def saved_adam_state():
    params, _ = make_params("float64")
    opt = Adam(params, lr=1e-2)
    for p in params:
        p.grad = asarray(np.ones(p.shape))
    opt.step()
    arrays, meta = opt.state_dict()
    return params, {key: to_numpy(a) for key, a in arrays.items()}, meta


def test_load_state_dict_mismatches_are_named():
    params, arrays, meta = saved_adam_state()
    with pytest.raises(ValueError, match="saved by 'Adam', cannot load it into SGD"):
        SGD(params, lr=0.1, momentum=0.9).load_state_dict(arrays, meta)
    with pytest.raises(ValueError, match="optimizer state has 4 parameters, this Adam has 3"):
        Adam(params[:3]).load_state_dict(arrays, meta)
    with pytest.raises(ValueError, match="optimizer state has 1 parameter groups, this Adam has 2"):
        Adam([{"params": params[:2]}, {"params": params[2:]}]).load_state_dict(arrays, meta)
    swapped, _ = make_params("float64", shapes=[SHAPES[1], SHAPES[0], *SHAPES[2:]])
    with pytest.raises(ValueError, match=r"0.exp_avg: expected shape \(3,\), got \(5, 3\)"):
        Adam(swapped).load_state_dict(arrays, meta)
    missing = {key: a for key, a in arrays.items() if key != "2.exp_avg_sq"}
    with pytest.raises(ValueError, match=r"missing 2.exp_avg_sq"):
        Adam(params).load_state_dict(missing, meta)
    with pytest.raises(ValueError, match=r"unexpected array 7.exp_avg"):
        Adam(params).load_state_dict({**arrays, "7.exp_avg": arrays["0.exp_avg"]}, meta)
    bad = json.loads(json.dumps(meta))
    bad["groups"][0]["betas"] = [0.9, 1.5]
    with pytest.raises(ValueError, match=r"invalid beta2 1.5"):
        Adam(params).load_state_dict(arrays, bad)


def test_failed_load_changes_nothing():
    params, arrays, meta = saved_adam_state()
    opt = Adam(params, lr=0.123)
    bad = json.loads(json.dumps(meta))
    bad["state"]["0"]["bogus"] = 1
    with pytest.raises(ValueError, match="unexpected state number 0.bogus"):
        opt.load_state_dict(arrays, bad)
    assert opt.state == {} and opt.param_groups[0]["lr"] == 0.123


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_state_and_parameters_stay_float32(cls):
    ours, _ = make_params("float32")
    opt = cls(ours, lr=1e-2, **({"momentum": 0.9, "weight_decay": 0.1} if cls is SGD else {"weight_decay": 0.1}))
    rng = np.random.default_rng(5)
    for _ in range(2):
        for p, g in zip(ours, random_grads(rng, "float32")):
            p.grad = asarray(g)
        opt.step()
    arrays, _ = opt.state_dict()
    assert arrays and all(a.dtype == np.float32 for a in arrays.values())
    assert all(p.data.dtype == np.float32 for p in ours)


def test_zero_grad_forgets_every_gradient():
    ours, _ = make_params("float64")
    for p in ours:
        p.grad = asarray(np.ones(p.shape))
    opt = SGD([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.5}], lr=0.1)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_decay_groups_follow_nanogpt():
    ours, _ = make_params("float64")
    decay, no_decay = decay_groups([(f"p{i}", p) for i, p in enumerate(ours)], 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(ours[0]), id(ours[2])]  # (5, 3) and (2, 4, 3)
    assert [id(p) for p in no_decay["params"]] == [id(ours[1]), id(ours[3])]  # the vectors
    layer = nn.Linear(3, 2)
    decay, no_decay = decay_groups(layer, 0.1)
    assert decay["params"] == [layer.weight] and no_decay["params"] == [layer.bias]
    with pytest.raises(TypeError, match="expects \\(name, Parameter\\) pairs"):
        decay_groups(ours, 0.1)


def test_schedule_values():
    s = WarmupCosine(lr=1.0, min_lr=0.1, warmup_iters=4, lr_decay_iters=12)
    rel = TORCH["float64"]["rtol"]
    assert s(0) == pytest.approx(1 / 5, rel=rel)  # warmup starts above 0: lr·1/(warmup_iters + 1)
    assert s(3) == pytest.approx(4 / 5, rel=rel)  # last warmup step, one short of the peak
    assert s(4) == pytest.approx(1.0, rel=rel)  # the cosine starts at the peak
    # a quarter of the way down a cosine, not a line (which would give 0.775): ½(1 + cos(π/4)) of the range
    assert s(6) == pytest.approx(0.1 + 0.5 * (1 + math.sqrt(0.5)) * 0.9, rel=rel)
    assert s(8) == pytest.approx(0.55, rel=rel)  # halfway through the decay: the mean of lr and min_lr
    assert s(12) == pytest.approx(0.1, rel=rel) and s(13) == 0.1 and s(1000) == 0.1  # the floor, and after
    values = [s(it) for it in range(16)]
    assert all(a < b for a, b in zip(values[:4], values[1:5])), "warmup must rise"
    assert all(a > b for a, b in zip(values[4:12], values[5:13])), "the cosine must fall"
    assert WarmupCosine(lr=1.0, min_lr=0.1, warmup_iters=0, lr_decay_iters=0)(0) == 0.1
    assert WarmupCosine(lr=2.0, min_lr=0.0, warmup_iters=0, lr_decay_iters=10)(0) == 2.0


def test_linear_schedule_is_transformers_step_for_step():
    """WarmupLinear with min_lr 0 gives every step the lr of transformers' get_linear_schedule_with_warmup (the
    Trainer's default) under torch's LambdaLR, the value each optimizer.step() uses, its first step's 0 included."""
    for warmup, total in ((10, 100), (0, 7), (3, 3)):
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([param], lr=5e-5)
        theirs = transformers.get_linear_schedule_with_warmup(opt, warmup, total)
        got = []
        for _ in range(total + 3):
            got.append(opt.param_groups[0]["lr"])
            opt.step()
            theirs.step()
        ours = WarmupLinear(lr=5e-5, min_lr=0.0, warmup_iters=warmup, lr_decay_iters=total)
        np.testing.assert_allclose([ours(it) for it in range(total + 3)], got, rtol=1e-15, atol=0)


def test_linear_schedule_values_with_a_floor():
    s = WarmupLinear(lr=1.0, min_lr=0.1, warmup_iters=4, lr_decay_iters=12)
    assert [s(it) for it in range(4)] == [0.0, 0.25, 0.5, 0.75]  # from 0, as BERT and transformers
    assert s(4) == 1.0 and s(8) == pytest.approx(0.55, rel=1e-15)  # the peak; halfway down a line
    assert s(6) == pytest.approx(0.1 + 0.75 * 0.9, rel=1e-15)  # a quarter of the way down: the cosine gives 0.868
    assert s(12) == 0.1 and s(100) == 0.1
    with pytest.raises(ValueError, match="invalid step -1"):
        s(-1)


def test_schedule_drives_every_group_and_rejects_bad_values():
    ours, _ = make_params("float64")
    opt = AdamW(decay_groups([(str(i), p) for i, p in enumerate(ours)], 0.1), lr=1.0)
    s = WarmupCosine(lr=6e-4, min_lr=6e-5, warmup_iters=10, lr_decay_iters=100)
    assert s.apply(opt, 500) == 6e-5 and [g["lr"] for g in opt.param_groups] == [6e-5, 6e-5]
    with pytest.raises(ValueError, match="lr_decay_iters 5 is before the end of warmup_iters 10"):
        WarmupCosine(lr=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=5)
    with pytest.raises(ValueError, match="invalid lr -1.0"):
        WarmupCosine(lr=-1.0, min_lr=0.1, warmup_iters=1, lr_decay_iters=5)
    with pytest.raises(ValueError, match="invalid warmup_iters 2.5"):
        WarmupCosine(lr=1.0, min_lr=0.1, warmup_iters=2.5, lr_decay_iters=5)
    with pytest.raises(ValueError, match="invalid step -1"):
        s(-1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [0.05, 10.0], ids=["below_max", "clipped"])
def test_clip_grad_norm_matches_torch(dtype, scale):
    ours, theirs = make_params(dtype)
    grads = random_grads(np.random.default_rng(6), dtype, scale=scale)
    grads[1] = None  # a parameter without a gradient is left out of the norm
    set_grads(ours, theirs, grads)
    norm = clip_grad_norm(ours, 1.0)
    torch_norm = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert isinstance(norm, float) and norm == pytest.approx(float(torch_norm), rel=TORCH[dtype]["rtol"])
    assert (norm > 1.0) == (scale > 1.0)
    expected = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads if g is not None))
    assert norm == pytest.approx(expected, rel=TORCH[dtype]["rtol"])
    tol = TORCH[dtype]
    for i, (p, q, g) in enumerate(zip(ours, theirs, grads)):
        if g is None:
            assert p.grad is None
            continue
        assert p.grad.dtype == np.dtype(dtype)
        ref = q.grad.numpy()
        assert_close(p.grad, ref, dtype, f"gradient {i} scaled unlike torch")
        if scale < 1.0:
            np.testing.assert_array_equal(to_numpy(p.grad), g)  # below max_norm nothing is touched
    after = [to_numpy(p.grad).astype(np.float64) for p in ours if p.grad is not None]
    assert np.sqrt(sum(float(np.sum(g**2)) for g in after)) <= 1.0 * (1 + tol["rtol"])  # at most max_norm after


def test_clip_grad_norm_edges():
    ours, _ = make_params("float64")
    assert clip_grad_norm(ours, 1.0) == 0.0  # no gradients at all
    with pytest.raises(ValueError, match="invalid max_norm -1"):
        clip_grad_norm(ours, -1)
    with pytest.raises(TypeError, match="expects minilm.nn.Parameter, got ndarray"):
        clip_grad_norm([np.ones(3)], 1.0)
    ours[0].grad = asarray(np.full(SHAPES[0], np.inf))
    assert clip_grad_norm(ours, 1.0) == math.inf  # returned as it is, for the caller to skip the step


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_bad_input_names_the_value(cls):
    ours, _ = make_params("float64")
    with pytest.raises(ValueError, match="invalid learning rate -0.1"):
        cls(ours, lr=-0.1)
    with pytest.raises(ValueError, match=r"invalid beta1 1.0 in betas \(1.0, 0.999\): must be in \[0, 1\)"):
        cls(ours, betas=(1.0, 0.999))
    with pytest.raises(ValueError, match=r"invalid beta2 -0.1"):
        cls(ours, betas=(0.9, -0.1))
    with pytest.raises(ValueError, match=r"invalid betas \(0.9,\)"):
        cls(ours, betas=(0.9,))
    with pytest.raises(ValueError, match="invalid eps -1e-08"):
        cls(ours, eps=-1e-8)
    with pytest.raises(ValueError, match="parameter group 1: invalid weight_decay -0.5"):
        cls([{"params": ours[:2]}, {"params": ours[2:], "weight_decay": -0.5}])
    with pytest.raises(ValueError, match="parameter group 0: unknown option\\(s\\) weight_deacy"):
        cls([{"params": ours, "weight_deacy": 0.1}])


def test_sgd_bad_input_names_the_value():
    ours, _ = make_params("float64")
    with pytest.raises(ValueError, match="invalid learning rate -1"):
        SGD(ours, lr=-1)
    with pytest.raises(ValueError, match="invalid momentum -0.9"):
        SGD(ours, momentum=-0.9)
    with pytest.raises(ValueError, match="nesterov needs momentum > 0 and dampening 0, got momentum 0.0"):
        SGD(ours, nesterov=True)


def test_bad_parameter_lists_are_named():
    ours, _ = make_params("float64")
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        AdamW([])
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        AdamW([{"params": []}])
    with pytest.raises(TypeError, match="got Parameter"):
        AdamW(ours[0])
    with pytest.raises(TypeError, match="expected minilm.nn.Parameter, got ndarray"):
        AdamW([np.ones(3)])
    with pytest.raises(ValueError, match=r"Parameter\(shape=\(3,\), dtype=float64\) appears more than once"):
        AdamW([{"params": ours}, {"params": [ours[1]]}])
    with pytest.raises(ValueError, match="parameter group 0: missing the 'params' key"):
        AdamW([{"lr": 0.1}])


@st.composite
def shapes_and_options(draw):
    shapes = draw(st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=3))
    lr = draw(st.sampled_from([1e-4, 3e-3, 0.1]))
    beta1, beta2 = draw(st.sampled_from([0.0, 0.5, 0.9])), draw(st.sampled_from([0.0, 0.9, 0.999]))
    weight_decay = draw(st.sampled_from([0.0, 0.01, 0.3]))
    return shapes, lr, (beta1, beta2), weight_decay, draw(st.integers(0, 2**16))


@given(shapes_and_options(), st.sampled_from(["Adam", "AdamW", "SGD"]))
def test_matches_torch_any_shape_and_options(case, name):
    shapes, lr, betas, weight_decay, seed = case
    if name == "SGD":
        kwargs = dict(lr=lr, momentum=betas[0], weight_decay=weight_decay, nesterov=betas[0] > 0)
    else:
        kwargs = dict(lr=lr, betas=betas, weight_decay=weight_decay)
    run_against_torch(lambda ps: {"Adam": Adam, "AdamW": AdamW, "SGD": SGD}[name](ps, **kwargs),
                      lambda ps: getattr(torch.optim, name)(ps, **kwargs), "float64", steps=3, seed=seed, shapes=shapes)
