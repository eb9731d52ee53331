"""NumPy against the GPU backend: the same weights and batch give the same logits, loss and gradients.

Every other test runs on whichever backend MINILM_BACKEND names; these switch between the two inside one
test, so they need a CUDA GPU and CuPy, and are skipped (with the reason) anywhere else. Both sides build
their weights from the same seed on the host (minilm.nn.module.init_normal), so they start identical.
"""


import numpy as np
import pytest

from minilm import backend
from minilm.backend import CPU, GPU, asarray, to_numpy, use_backend
from minilm.files.checkpoint import load_checkpoint
from minilm.models import GPT, GPTConfig
from minilm.nn.loss import CrossEntropyLoss
from minilm.verify.tolerances import TORCH
from minilm.training.config import with_changes
from minilm.training.trainer import PRESETS, Trainer, dropout_states

TINY = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
VARIANTS = [dict(), dict(norm="post"), dict(pos="sinusoidal", tie_weights=False), dict(bias=True)]
# a whole model, as test_gpt holds minilm to torch: float32 compounds through the blocks
TOLERANCES = {dtype: (TORCH[entry]["rtol"], TORCH[entry]["atol"]) for dtype, entry in
              (("float32", "float32_model"), ("float64", "float64"))}


@pytest.fixture(autouse=True)
def gpu_or_skip():
    previous = backend.backend_name()
    try:
        use_backend(GPU)
    except RuntimeError as err:  # no CuPy, or no GPU it can reach
        pytest.skip(f"needs the GPU backend: {err}")
    yield
    use_backend(previous)


def forward_backward(name, config, idx, targets, dtype):
    use_backend(name)
    model = GPT(config, rng=0).to(dtype)
    criterion = CrossEntropyLoss()
    logits = model(asarray(idx))
    loss = criterion(logits, asarray(targets))
    model.zero_grad()
    model.backward(criterion.backward())
    return {"logits": to_numpy(logits), "loss": to_numpy(loss),
            **{f"d{name}": to_numpy(param.grad) for name, param in model.named_parameters()}}


def assert_same(cpu, gpu, rtol, atol, what):
    assert cpu.keys() == gpu.keys()
    for name in cpu:
        scale = float(np.max(np.abs(cpu[name]), initial=0.0))
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=rtol, atol=atol * scale, err_msg=f"{name} ({what})")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v}" for k, v in v.items()) or "gpt2")
def test_logits_loss_and_every_gradient_agree(variant, dtype):
    config = GPTConfig(**TINY, **variant)
    rng = np.random.default_rng(1)
    idx, targets = rng.integers(0, config.vocab_size, (2, 2, config.block_size))
    cpu = forward_backward(CPU, config, idx, targets, dtype)
    gpu = forward_backward(GPU, config, idx, targets, dtype)
    assert_same(cpu, gpu, *TOLERANCES[dtype], what=dtype)


def tiny_run(tmp_path, name, **changes):
    """(TrainConfig, GPTConfig) of a tiny run, each change to the dataclass that holds it."""
    fields = dict(block_size=16, n_layer=1, n_head=2, n_embd=12, batch_size=4, eval_iters=2, warmup_iters=2,
                  eval_interval=2, sample_tokens=0, seed=7, lr_decay_iters=6)
    return with_changes(PRESETS["cpu"], out=str(tmp_path / name), **{**fields, **changes})


def weights(model):
    return {name: to_numpy(param.data) for name, param in model.named_parameters()}


def test_a_few_training_steps_end_with_the_same_weights(tmp_path):
    """Same seed, batches, schedule, clipping and AdamW: the backends' weights stay together."""
    cpu = Trainer(*tiny_run(tmp_path, "cpu", backend=CPU, max_iters=4), log=lambda *_: None)
    cpu.train()
    gpu = Trainer(*tiny_run(tmp_path, "gpu", backend=GPU, max_iters=4), log=lambda *_: None)
    gpu.train()
    assert_same(weights(cpu.model), weights(gpu.model), *TOLERANCES["float32"], what="after 4 AdamW steps")


def test_a_cpu_checkpoint_with_dropout_resumes_on_the_gpu(tmp_path):
    """The dropout random state is saved from the host and restored on the GPU, and the run carries on."""
    Trainer(*tiny_run(tmp_path, "run", backend=CPU, max_iters=2, dropout=0.1), log=lambda *_: None).train()
    resumed = Trainer(*tiny_run(tmp_path, "run", backend=GPU, max_iters=4, dropout=0.1, resume=True),
                      log=lambda *_: None)
    saved = load_checkpoint(tmp_path / "run" / "latest").train_state["dropout_rngs"]
    assert resumed.step == 2 and saved and dropout_states(resumed.model) == saved
    history = resumed.train()
    assert [h["step"] for h in history] == [0, 2, 4] and all(np.isfinite(h["val"]) for h in history)


def test_resume_on_the_gpu_with_dropout_ends_where_an_uninterrupted_run_does(tmp_path):
    """Dropout's masks come from the host Generator's state, which the checkpoint restores; the embedding's
    atomic scatter-add can change the last bits of a sum, hence float32's tolerance rather than equality."""
    same = dict(backend=GPU, dropout=0.1)
    straight = Trainer(*tiny_run(tmp_path, "a", max_iters=6, **same), log=lambda *_: None)
    straight.train()
    Trainer(*tiny_run(tmp_path, "b", max_iters=4, **same), log=lambda *_: None).train()
    resumed = Trainer(*tiny_run(tmp_path, "b", max_iters=6, resume=True, **same), log=lambda *_: None)
    resumed.train()
    assert_same(weights(straight.model), weights(resumed.model), *TOLERANCES["float32"], what="resumed")
