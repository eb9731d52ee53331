"""--threads (minilm.training.threads): a step's micro-batches run at once on replicas of the model, one per
thread. In float64 with dropout off 12 AdamW steps give the weights of one thread to 1e-10 relative, for a GPT and
a masked LM (uneven target counts), with grad_accum too, and 3 steps do for every other family the Trainer
trains; with dropout a resume is exact and each replica draws masks of its own; BLAS runs one thread per
replica while they run, and everything wrong is refused by name."""

import numpy as np
import pytest
from bert_tiny import ay_task, finetune_config, pretrain
from threadpoolctl import ThreadpoolController

from minilm import to_numpy
from minilm.nn.normalization import LayerNorm
from minilm.training import threads as threads_module
from minilm.training.config import preset_for, with_changes
from minilm.training.threads import Replicas
from minilm.training.finetune import FineTuner
from minilm.training.trainer import Trainer
from minilm.training.translator import Seq2SeqTrainer

TINY = dict(max_iters=12, eval_interval=12, eval_iters=1, batch_size=8, block_size=16, n_layer=2, n_head=2,
            n_embd=16, sample_tokens=0, warmup_iters=2, lr=3e-3, overwrite=True, seed=5)


def trainer(tmp_path, name, model_type="gpt", float64=True, **changes):
    cfg, shape = with_changes(preset_for(model_type), out=str(tmp_path / name), **{**TINY, **changes})
    made = Trainer(cfg, shape, log=lambda *_: None)
    if float64:
        made.model.to("float64")  # weights and gradients; the replicas follow the model's arrays at each step
    return made


def weights(model):
    return {name: to_numpy(p.data).copy() for name, p in model.named_parameters()}


def relative_gap(a, b):
    return max(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max() for k in a)


@pytest.mark.parametrize("model_type", ["gpt", "bert"])
def test_two_threads_with_or_without_micro_batches_give_the_update_of_one(tmp_path, model_type):
    one = trainer(tmp_path, "one", model_type)
    one.train()
    for name, changes in (("two", dict(threads=2)), ("two-accum", dict(threads=2, grad_accum=2))):
        threaded = trainer(tmp_path, name, model_type, **changes)
        threaded.train()
        assert len(threaded.replicas.copies) == 1 and threaded.history[-1]["step"] == 12
        assert relative_gap(weights(one.model), weights(threaded.model)) < 1e-10, name
        assert threaded.history[-1]["train"] == pytest.approx(one.history[-1]["train"], rel=1e-12)
    assert next(iter(weights(one.model).values())).dtype == np.float64  # float64 really


FAMILIES = {  # model type -> (trainer, a small shape, the run's context), as tests/test_distributed.py's
    "tutorial": (Trainer, dict(n_layer=2, n_head=2, n_embd=16, d_ff=24), 16),
    "lstm": (Trainer, dict(n_layer=2, n_embd=12, hidden_size=16), 16),
    "seq2seq": (Seq2SeqTrainer, dict(d_model=16, nhead=2, dim_feedforward=24, num_encoder_layers=2,
                                     num_decoder_layers=2), 80),
}


def three_steps(made):
    made.model.to("float64")
    for _ in range(3):
        made.train_step()
    return weights(made.model)


@pytest.mark.parametrize("family", [*FAMILIES, "classifier"])
def test_every_family_the_trainer_trains_takes_the_same_steps_on_two_threads(tmp_path, family):
    """The LSTM (one recurrent module), the tutorial Transformer, Seq2Seq (padded pairs: uneven target counts)
    and a fine-tuned classifier (inputs, token types and a padding mask, each cut into the pieces)."""
    if family == "classifier":
        encoder, task = pretrain(tmp_path / "mlm"), ay_task(tmp_path / "ay.csv")

        def make(name, threads):
            cfg = finetune_config(encoder, task, tmp_path / name, threads=threads, max_iters=3)
            return FineTuner(cfg, log=lambda *_: None, dropout=0.0)  # with dropout the masks depend on threads
    else:
        trainer_class, shape, block_size = FAMILIES[family]

        def make(name, threads):
            cfg, model = with_changes(preset_for(family), out=str(tmp_path / name), batch_size=4, max_iters=3,
                                      block_size=block_size, threads=threads, eval_iters=1, sample_tokens=0,
                                      dropout=0.0, **shape)
            return trainer_class(cfg, model, log=lambda *_: None)
    one, two = three_steps(make("one", 1)), three_steps(make("two", 2))
    assert relative_gap(one, two) < 1e-10


def test_a_replica_shares_the_weights_and_keeps_its_own_gradients_and_caches(tmp_path):
    run = trainer(tmp_path, "run", threads=2, max_iters=2)
    run.train_step(), run.train_step()  # not train(): its last evaluation keeps no cache
    (replica,) = run.replicas.copies
    for (name, mine), (_, theirs) in zip(run.model.named_parameters(), replica.named_parameters()):
        assert theirs.data is mine.data, name  # the same array: AdamW's in-place update reached it
        assert theirs.grad is not mine.grad and theirs.grad.shape == mine.grad.shape, name
    assert replica.h[0].attn.out_proj.x is not run.model.h[0].attn.out_proj.x  # its own forward's input
    assert replica.h[0].attn.out_proj.x.shape[0] == run.model.h[0].attn.out_proj.x.shape[0] == 4  # B/2 rows each
    run.model.ln_f = LayerNorm(16).to("float64")  # a module replaced: the replicas are made again
    run.train_step()
    (remade,) = run.replicas.copies
    assert remade is not replica and remade.ln_f.weight.data is run.model.ln_f.weight.data
    assert remade.ln_f.weight.grad is not None and run.model.ln_f.weight.grad is not None


def test_with_dropout_each_replica_draws_its_own_masks_and_a_resume_is_exact(tmp_path):
    same = dict(threads=2, dropout=0.3, eval_interval=4, lr_decay_iters=8)
    probe = trainer(tmp_path, "probe", float64=False, max_iters=1, **same)
    probe.train_step()
    mine, theirs = probe.model.h[0].mlp.dropout, probe.replicas.copies[0].h[0].mlp.dropout
    assert mine.scaled_mask.shape == theirs.scaled_mask.shape
    assert not np.array_equal(mine.scaled_mask, theirs.scaled_mask)  # rows of the two halves never share a mask
    straight = trainer(tmp_path, "a", float64=False, max_iters=8, **same)
    straight.train()
    trainer(tmp_path, "b", float64=False, max_iters=4, **same).train()
    resumed = trainer(tmp_path, "b", float64=False, max_iters=8, resume=True, **same)
    resumed.train()
    for name, expected in weights(straight.model).items():
        np.testing.assert_allclose(weights(resumed.model)[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)


def test_blas_runs_one_thread_per_replica_while_they_run_and_its_own_count_after(tmp_path, monkeypatch):
    run = trainer(tmp_path, "run", threads=2, max_iters=1)
    seen, controller = [], ThreadpoolController()
    original = threads_module.run_pieces

    def recording(model, *args):
        seen.append(controller.select(user_api="blas").info()[0]["num_threads"])
        return original(model, *args)

    monkeypatch.setattr(threads_module, "run_pieces", recording)
    before = controller.select(user_api="blas").info()[0]["num_threads"]
    with controller.limit(limits=2, user_api="blas"):  # as on CI's two cores, whatever this machine has
        run.train_step()
        assert controller.select(user_api="blas").info()[0]["num_threads"] == 2  # given back
    assert seen == [1, 1]
    assert controller.select(user_api="blas").info()[0]["num_threads"] == before


def test_an_error_in_a_replica_reaches_the_caller_after_every_thread_stopped(tmp_path, monkeypatch):
    run = trainer(tmp_path, "run", threads=2, max_iters=1)
    (replica,) = run.replicas.copies

    def broken(*_):
        raise FloatingPointError("planted in the replica")

    monkeypatch.setattr(replica, "forward", broken)
    with pytest.raises(FloatingPointError, match="planted in the replica"):
        run.train_step()
    assert run.step == 0  # no update was made from half a gradient


def test_what_cannot_be_threaded_is_refused_by_name(tmp_path, monkeypatch):
    model = trainer(tmp_path, "run", max_iters=1).model
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        Replicas(model, 0)
    with pytest.raises(ValueError, match=r"batch_size 6 does not split into 1 rank\(s\) x threads 4 x grad_accum 1 "
                                         r"= 4 equal micro-batches: choose a multiple of 4"):
        trainer(tmp_path, "odd", threads=4, batch_size=6)
    monkeypatch.setattr(threads_module, "backend_name", lambda: "cupy")
    with pytest.raises(ValueError, match="--threads 2 splits a step over CPU cores; the cupy backend"):
        Replicas(model, 2)
