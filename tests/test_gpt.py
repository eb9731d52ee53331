import itertools

import numpy as np
import pytest

from layer_checks import assert_close
from minilm import to_numpy
from minilm.backend import asarray
from minilm.gradcheck import check_module
from minilm.models import GPT, GPTConfig
from minilm.nn.loss import CrossEntropyLoss
from minilm.tolerances import GRADCHECK

torch = pytest.importorskip("torch")
reference = pytest.importorskip("minilm.reference")

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


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[7]], ids=variant_id)
def test_gradcheck_samples_every_parameter(variant):
    model = GPT(GPTConfig(**TINY, **variant), rng=0)
    idx, _ = batch(1, b=2, t=5)
    report = check_module(model, asarray(idx), max_coords=4)
    assert len(report.errors) == len(model.parameters())
    assert report.passed(GRADCHECK["model"]), str(report)


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
