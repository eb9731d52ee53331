import itertools

import numpy as np
import pytest
import torch

from layer_checks import assert_close
from minilm import to_numpy
from minilm.verify import reference
from minilm.backend import asarray
from minilm.verify.check import check_item
from minilm.verify.check_items import GPT_COORDS, ITEMS
from minilm.verify.gradcheck import check_module
from minilm.models import GPT, GPTConfig
from minilm.nn import MultiHeadAttention
from minilm.nn.loss import CrossEntropyLoss
from minilm.verify.tolerances import GRADCHECK

# every size different: V, block, C, H, hs = C / H, B, T
TINY = dict(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=12)
B, T = 3, 7

VARIANTS = [dict(norm=n, pos=p, tie_weights=t)
            for n, p, t in itertools.product(["pre", "post"], ["learned", "sinusoidal"], [True, False])]


def variant_id(v):
    return f"{v['norm']}-{v['pos']}-{'tied' if v['tie_weights'] else 'untied'}"


def batch(seed, vocab_size=TINY["vocab_size"], b=B, t=T):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, (b, t)), rng.integers(0, vocab_size, (b, t))


def run_both(cfg, dtype, seed=0):
    """Same weights, same batch: minilm's and torch's logits, loss and every parameter gradient."""
    model = GPT(cfg, rng=seed).to(dtype)
    twin = reference.twin(model)
    idx, targets = batch(seed + 1)

    logits = model(asarray(idx))
    criterion = CrossEntropyLoss()
    loss = criterion(logits, asarray(targets))
    model.zero_grad()
    model.backward(criterion.backward())

    torch_logits = twin(torch.from_numpy(idx))
    torch_loss = torch.nn.functional.cross_entropy(torch_logits.reshape(-1, cfg.vocab_size),
                                                   torch.from_numpy(targets).reshape(-1))
    torch_loss.backward()
    pairs = {"logits": (to_numpy(logits), torch_logits.detach().numpy()),
             "loss": (to_numpy(loss), torch_loss.detach().numpy())}
    torch_params = dict(twin.named_parameters())
    for name, param in model.named_parameters():
        pairs[f"d{name}"] = (to_numpy(param.grad), torch_params[name].grad.numpy())
    assert len(torch_params) == len(list(model.named_parameters()))
    return pairs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_logits_loss_and_every_gradient_match_torch(variant, dtype):
    pairs = run_both(GPTConfig(**TINY, **variant), dtype)
    # end to end through 2 blocks, float32 compounds more roundings than one layer: rtol 1e-4 as the issue
    # states; float64 stays at the table's tolerance
    kind = "float64" if dtype == "float64" else "float32_model"
    largest = max(float(np.max(np.abs(theirs))) for _, theirs in pairs.values())
    for name, (ours, theirs) in pairs.items():
        assert_close(ours, theirs, kind, f"{name} ({dtype})", largest)


def gpt_gradcheck(variant, seed=0, only=None):
    """Finite differences on a tiny GPT, at the stratified coordinates `minilm check` differences too."""
    model = GPT(GPTConfig(**TINY, **variant), rng=seed)
    idx, _ = batch(seed + 1, b=2, t=5)
    return check_module(model, asarray(idx), seed=seed, max_coords=GPT_COORDS, only=only)


GPT_ITEM = next(item for item in ITEMS if item.layer == "GPT")


def check_row_gradcheck(seed, only=None):
    """The finite differences of `minilm check GPT --seed SEED` (minilm.verify.check.check_item), on ``only``."""
    case = GPT_ITEM.build(np.random.default_rng(seed))
    return check_module(case.module, *case.inputs, h=GPT_ITEM.h, seed=seed, max_coords=GPT_ITEM.max_coords,
                        only=only, **case.kwargs)


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[7]], ids=variant_id)
def test_gradcheck_samples_every_parameter(variant):
    report = gpt_gradcheck(variant)
    assert len(report.errors) == len(GPT(GPTConfig(**TINY, **variant), rng=0).parameters())
    assert report.passed(GRADCHECK["model"]), str(report)


# --- a bug in one third of a weight is caught whatever the seed (minilm.verify.gradcheck: stratified coordinates) ---

THIRDS = {"query": 0, "key": 1, "value": 2}  # the row blocks of in_proj_weight (3C, C)
IN_PROJ = ["h.0.attn.in_proj_weight", "h.1.attn.in_proj_weight"]
SEEDS = range(20)


def plant_in_third(monkeypatch, third, factor=1.01):
    """MultiHeadAttention.backward with one third of in_proj_weight's gradient off by 1% and the rest right."""
    backward = MultiHeadAttention.backward

    def wrong_backward(self, dout):
        dx = backward(self, dout)
        C = self.in_proj_weight.shape[1]
        grad = to_numpy(self.in_proj_weight.grad).copy()  # (3C, C), this backward's alone: check_module zeroed it
        grad[third * C:(third + 1) * C] *= factor
        self.in_proj_weight.grad = asarray(grad)
        return dx

    monkeypatch.setattr(MultiHeadAttention, "backward", wrong_backward)


@pytest.mark.parametrize("third", THIRDS)
def test_gradcheck_catches_a_bug_in_any_third_of_in_proj_weight_for_every_seed(monkeypatch, third):
    # 1% is the subtle end: at GPT-2's 0.02 init the q and k thirds carry ~1e-3 of the array's largest
    # gradient (tolerances.GRADCHECK["model"]); measured over these seeds the error is still ≥ 5e-4, 50x the
    # tolerance, and 1.4e-7 at most without the bug. Each array on its own, not either of the two.
    plant_in_third(monkeypatch, THIRDS[third])
    for seed in SEEDS:
        for report in (gpt_gradcheck(VARIANTS[0], seed, only=IN_PROJ), check_row_gradcheck(seed, only=IN_PROJ)):
            for name in IN_PROJ:
                assert report.errors[name] > GRADCHECK["model"], f"{third} third missed at seed {seed}:\n{report}"


def test_without_the_planted_bug_the_same_checks_pass():
    for seed in SEEDS:
        for report in (gpt_gradcheck(VARIANTS[0], seed, only=IN_PROJ), check_row_gradcheck(seed, only=IN_PROJ)):
            assert report.passed(GRADCHECK["model"]), f"seed {seed}:\n{report}"


def test_minilm_check_fails_the_gpt_row_on_a_bug_in_the_key_third(monkeypatch):
    plant_in_third(monkeypatch, THIRDS["key"])
    row = check_item(GPT_ITEM, "float64", seed=0, reference=None)  # the row `minilm check GPT` prints
    assert row["passed"] is False
    failed = {name for name, err in row["errors"]["fd"].items() if err >= GRADCHECK["model"]}
    assert failed == set(IN_PROJ), row["errors"]["fd"]


def test_tied_head_receives_the_sum_of_both_gradients():
    tied = GPT(GPTConfig(**TINY, tie_weights=True), rng=0).to("float64")
    untied = GPT(GPTConfig(**TINY, tie_weights=False), rng=0).to("float64")
    untied.load_state_dict(tied.state_dict())
    idx, _ = batch(2)
    dlogits = asarray(np.random.default_rng(3).standard_normal((B, T, TINY["vocab_size"])))
    for model in (tied, untied):
        model.zero_grad()
        model(asarray(idx))
        model.backward(dlogits)
    np.testing.assert_allclose(to_numpy(tied.wte.weight.grad),
                               to_numpy(untied.wte.weight.grad + untied.lm_head.weight.grad), rtol=1e-12)


def test_residual_projections_get_the_scaled_init():
    cfg = GPTConfig(vocab_size=50, block_size=16, n_layer=8, n_head=4, n_embd=256)
    model = GPT(cfg, rng=0)
    out_proj = np.concatenate([to_numpy(b.attn.out_proj.weight.data).ravel() for b in model.h])
    c_fc = np.concatenate([to_numpy(b.mlp.c_fc.weight.data).ravel() for b in model.h])
    assert out_proj.std() == pytest.approx(0.02 / np.sqrt(2 * cfg.n_layer), rel=0.02)
    assert c_fc.std() == pytest.approx(0.02, rel=0.02)
    assert all(float(abs(to_numpy(b.attn.in_proj_bias.data)).max()) == 0 for b in model.h)


def test_parameter_names_follow_gpt2():
    names = [name for name, _ in GPT(GPTConfig(**TINY), rng=0).named_parameters()]
    assert names[:3] == ["wte.weight", "wpe.weight", "h.0.ln_1.weight"]
    assert "h.1.attn.in_proj_weight" in names and "h.1.mlp.c_proj.weight" in names
    assert names[-2:] == ["ln_f.weight", "ln_f.bias"]  # lm_head.weight is wte.weight


def test_overfits_one_batch():
    from minilm.optim import AdamW

    cfg = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg, rng=0)
    idx, targets = batch(5, vocab_size=13, b=4, t=16)
    idx, targets = asarray(idx), asarray(targets)
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    criterion = CrossEntropyLoss()
    for _ in range(300):
        loss = criterion(model(idx), targets)
        model.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
    assert float(loss) < 0.05


def test_bad_input_is_named():
    model = GPT(GPTConfig(**TINY), rng=0)
    with pytest.raises(ValueError, match="token id 11 out of range for vocab_size 11"):
        model(asarray(np.array([[1, 11, 2]])))
    with pytest.raises(ValueError, match="sequence length 10 exceeds block_size 9"):
        model(asarray(np.zeros((1, 10), dtype=np.int64)))
    with pytest.raises(ValueError, match="n_embd 12 is not divisible by n_head 5"):
        GPTConfig(**{**TINY, "n_head": 5})
