"""--threads (minilm.training.threads): a step's micro-batches run at once on replicas of the model, one per
thread. In float64 with dropout off 12 AdamW steps give the weights of one thread to 1e-10 relative, for a GPT and
a masked LM (uneven target counts), with grad_accum too, and 3 steps do for every other family the Trainer
trains; with dropout a resume is exact and each replica draws masks of its own; BLAS runs one thread per
replica while they run, and everything wrong is refused by name."""

import time

import numpy as np
import pytest
from bert_tiny import ay_task, finetune_config, pretrain
from threadpoolctl import ThreadpoolController

from minilm import to_numpy
from minilm.nn.normalization import LayerNorm
from minilm.training import threads as threads_module
from minilm.training.config import preset_for, with_changes
from minilm.training.distributed import derived_generator, micro_batches
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
    losses = [made.train_step() for _ in range(3)]
    return weights(made.model), losses


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
    (one, one_losses), (two, two_losses) = three_steps(make("one", 1)), three_steps(make("two", 2))
    assert relative_gap(one, two) < 1e-10
    assert two_losses == pytest.approx(one_losses, rel=1e-12)  # the step's loss: the whole batch's mean


def recording(monkeypatch, what):
    """[(model, what(model))] after each replica's pieces ran in a step (threads.run_pieces wrapped)."""
    seen, original = [], threads_module.run_pieces

    def run_then_record(model, *args):
        summed = original(model, *args)
        seen.append((model, what(model)))
        return summed

    monkeypatch.setattr(threads_module, "run_pieces", run_then_record)
    return seen


def test_a_replica_shares_the_weights_and_keeps_its_own_gradients_and_caches(tmp_path, monkeypatch):
    run = trainer(tmp_path, "run", threads=2, max_iters=2)
    inputs = recording(monkeypatch, lambda model: model.h[0].attn.out_proj.x)
    run.train_step(), run.train_step()
    (replica,) = run.replicas.copies
    for (name, mine), (_, theirs) in zip(run.model.named_parameters(), replica.named_parameters()):
        assert theirs.data is mine.data, name  # the same array: AdamW's in-place update reached it
        assert theirs.grad is not mine.grad and theirs.grad.shape == mine.grad.shape, name
    (model_a, x_a), (model_b, x_b) = inputs[-2:]
    assert {id(model_a), id(model_b)} == {id(run.model), id(replica)} and x_a is not x_b  # each its own forward's
    assert x_a.shape[0] == x_b.shape[0] == 4  # B/2 rows each
    assert "x" not in vars(replica.h[0].attn.out_proj)  # the replica's caches are dropped once the step is done
    run.model.ln_f = LayerNorm(16).to("float64")  # a module replaced: the replicas are made again
    run.train_step()
    (remade,) = run.replicas.copies
    assert remade is not replica and remade.ln_f.weight.data is run.model.ln_f.weight.data
    assert remade.ln_f.weight.grad is not None and run.model.ln_f.weight.grad is not None


def test_with_dropout_each_replica_draws_its_own_masks_and_a_resume_is_exact(tmp_path, monkeypatch):
    same = dict(threads=2, dropout=0.3, eval_interval=4, lr_decay_iters=8)
    probe = trainer(tmp_path, "probe", float64=False, max_iters=2, **same)
    masks = recording(monkeypatch, lambda model: model.h[0].mlp.dropout.scaled_mask)
    probe.train_step(), probe.train_step()
    (replica,) = probe.replicas.copies
    by_model = {id(probe.model): [], id(replica): []}
    for model, mask in masks:
        by_model[id(model)].append(mask)
    (mine_1, mine_2), (theirs_1, theirs_2) = by_model.values()
    assert mine_1.shape == theirs_1.shape
    assert not np.array_equal(mine_1, theirs_1)  # rows of the two halves never share a mask
    assert not np.array_equal(theirs_1, theirs_2)  # and a replica's stream moves on from step to step
    monkeypatch.undo()
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


def test_a_step_interrupted_while_a_replica_runs_leaves_the_next_step_right(tmp_path, monkeypatch):
    run = trainer(tmp_path, "run", threads=2, max_iters=1)
    inputs, targets = run.objective.batch(run.train_data, 8, 16, np.random.default_rng(0))
    pieces = micro_batches(inputs, targets, run.world, 1, threads=2)
    counts, total = [int(y.size) for _, y in pieces], int(targets.size)
    Replicas(run.model, 1).run(pieces, counts, total)  # one thread: the reference
    expected = {name: p.grad.copy() for name, p in run.model.named_parameters()}
    (replica,) = run.replicas.copies
    forward = replica.forward

    def slowly(*args):
        time.sleep(1.0)  # still running when the interrupt lands in the model's thread, even on a loaded machine
        return forward(*args)

    monkeypatch.setattr(replica, "forward", slowly)

    def interrupted(futures):
        if not futures:  # the wait for the last run's replicas, before this run: none
            return
        monkeypatch.undo()  # the next wait is the real one again
        raise KeyboardInterrupt  # as a Ctrl-C landing while the model's thread waits for the replica

    monkeypatch.setattr(threads_module, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.replicas.run(pieces, counts, total)
    monkeypatch.setattr(replica, "forward", slowly)
    assert run.replicas.running and not all(f.done() for f in run.replicas.running)  # the replica runs on
    run.replicas.run(pieces, counts, total)
    for name, param in run.model.named_parameters():
        np.testing.assert_allclose(param.grad, expected[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_derived_streams_differ_by_key_and_repeat_for_the_same_state_and_key():
    draws = lambda key, seed=1: derived_generator(np.random.default_rng(seed), key).random(4)  # noqa: E731
    assert np.array_equal(draws((0, 1)), draws((0, 1)))  # a resume derives the same stream again
    assert not np.array_equal(draws((1,)), draws((0, 1)))  # rank 1's stream is not replica 1's
    assert not np.array_equal(draws((0, 1)), draws((0, 2)))
    assert not np.array_equal(draws((0, 1)), draws((0, 1), seed=2))  # another state, another stream


def test_a_run_resumes_on_another_number_of_threads(tmp_path):
    trainer(tmp_path, "run", float64=False, threads=2, max_iters=4, eval_interval=4).train()
    resumed = trainer(tmp_path, "run", float64=False, threads=1, max_iters=8, eval_interval=4, resume=True)
    assert resumed.cfg.threads == 1 and resumed.step == 4 and not resumed.replicas.copies
    resumed.train()
    assert [h["step"] for h in resumed.history] == [0, 4, 8]
