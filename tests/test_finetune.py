"""Fine-tuning a BERT classifier (minilm.training.finetune, heads, objectives.Classification, `minilm finetune`):
from a minilm masked LM and from a Hugging Face folder, exact resumes, label names, and the refusals."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

from bert_tiny import ay_task, finetune_config, pretrain, quiet
from minilm import to_numpy
from minilm.cli import main
from minilm.data.char_tokenizer import BERT_SPECIALS, CharTokenizer
from minilm.data.tasks import Task
from minilm.files.checkpoint import load_checkpoint, save_checkpoint
from minilm.files.hf_bert import load_bert, save_bert
from minilm.models import BERT, GPT, BERTConfig, GPTConfig
from minilm.training.finetune import FineTuneConfig, FineTuner
from minilm.training.objectives import Classification, MaskedLM
from minilm.training.trainer import TrainConfig, Trainer

RESUME = {"out", "resume", "max_iters"}  # what `minilm finetune --out OUT --resume --max-iters N` gives
HEAD = ("pooler.", "classifier.")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    return SimpleNamespace(root=root, mlm=pretrain(root), task=ay_task(root / "ay.csv"))


def state(model):
    return {name: to_numpy(array).copy() for name, array in model.state_dict().items()}


def test_a_pretrained_tiny_bert_learns_the_task_far_above_chance_and_says_so(runs, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--init-from", str(runs.mlm), "--task", str(runs.task), "--out", str(out),
                 "--max-iters", "150", "--eval-interval", "50", "--batch-size", "16", "--lr", "3e-3",
                 "--eval-iters", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = {line.rsplit(None, 1)[0].strip(): float(line.split()[-1]) for line in lines[-5:]}
    assert lines[-6].startswith("held-out accuracy on ay (60 examples, 2 labels; trained on 540)")
    assert table["chance (1 / labels)"] == 0.5 and abs(table["majority class of the train split"] - 0.5) < 0.1
    final = table["BERT fine-tuned, final weights (step 150)"]
    assert final >= 0.9  # 1.0 on this seed: the word "ay" is three characters the [CLS] query finds
    saved = load_checkpoint(out / "latest")
    assert saved.config["train"]["objective"] == "cls" and saved.config["train"]["task"] == str(runs.task)
    assert saved.config["model"]["head"] == "cls" and saved.config["model"]["label_names"] == ["no", "yes"]
    history = saved.train_state["history"]
    assert [h["step"] for h in history] == [0, 50, 100, 150] and history[-1]["val_accuracy"] == final
    assert history[0]["val_accuracy"] < 0.75 and (out / "best").is_dir()
    assert saved.config["train"]["warmup_iters"] == 15  # a tenth of the run
    assert saved.config["train"]["block_size"] == 24  # the model's context


def test_the_classifier_starts_from_the_encoder_and_a_fresh_head_drawn_from_the_seed(runs, tmp_path):
    first = FineTuner(finetune_config(runs.mlm, runs.task, tmp_path / "a", max_iters=0), log=quiet)
    again = FineTuner(finetune_config(runs.mlm, runs.task, tmp_path / "b", max_iters=0), log=quiet)
    pretrained = load_checkpoint(runs.mlm / "best").model_state
    ours = state(first.model)
    assert set(ours) == {n for n in pretrained if not n.startswith("mlm.")} | {
        "pooler.weight", "pooler.bias", "classifier.weight", "classifier.bias"}
    for name, array in ours.items():
        if not name.startswith(HEAD):
            np.testing.assert_array_equal(array, pretrained[name], err_msg=name)
        np.testing.assert_array_equal(array, state(again.model)[name], err_msg=name)  # the same seed, the same head
    assert np.all(ours["classifier.bias"] == 0) and 0.01 < ours["classifier.weight"].std() < 0.03  # N(0, 0.02²)
    assert first.model.config.dropout == 0.1 and first.cfg.max_iters == 0
    assert first.model.training and isinstance(first.objective, Classification)
    derived = FineTuner(finetune_config(runs.mlm, runs.task, tmp_path / "c"), log=quiet).cfg
    assert (derived.max_iters, derived.warmup_iters) == (102, 10)  # 3 epochs of 540 examples, 16 a batch


def test_a_pair_is_cls_a_sep_b_sep_with_token_types_and_truncated_longest_first():
    tokenizer = CharTokenizer.from_text("abcdefxyz", BERT_SPECIALS)
    cls, sep, pad = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    ids, types = tokenizer.encode_pair("abcdef", "xyz", max_length=8)  # 9 + 3 specials: a loses three, b one
    assert ids.tolist() == [cls, 0, 1, 2, sep, 6, 7, sep] and types.tolist() == [0] * 5 + [1] * 3
    objective = Classification().for_tokenizer(tokenizer)
    task = Task("t", ["n", "y"], ["ab", "abcdef"], [0, 1], ["x", "yz"], [0, 1])
    (x, t, mask), y = next(objective.every_batch(objective.encode(task, 8), 4, 8))
    assert to_numpy(x).tolist() == [[cls, 0, 1, sep, 6, sep, pad, pad], [cls, 0, 1, 2, sep, 7, 8, sep]]
    assert to_numpy(t).tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]]
    assert to_numpy(mask).tolist() == [[1] * 6 + [0, 0], [1] * 8] and to_numpy(y).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"needs a tokenizer with the special tokens \[CLS\] \[SEP\] \[PAD\]"):
        Classification().for_tokenizer(CharTokenizer.from_text("abc"))


def test_an_interrupted_and_resumed_fine_tuning_ends_bit_identical(runs, tmp_path):
    same = dict(eval_interval=4, lr_decay_iters=8, warmup_iters=2)  # dropout 0.1: its generators resume too
    straight = FineTuner(finetune_config(runs.mlm, runs.task, tmp_path / "a", max_iters=8, **same), log=quiet)
    straight.train()
    FineTuner(finetune_config(runs.mlm, runs.task, tmp_path / "b", max_iters=4, **same), log=quiet).train()
    resumed = FineTuner(FineTuneConfig(out=str(tmp_path / "b"), resume=True, max_iters=8), log=quiet, given=RESUME)
    assert resumed.step == 4 and resumed.model.config.label_names == ["no", "yes"]
    resumed.train()
    assert resumed.history == straight.history and [h["step"] for h in resumed.history] == [0, 4, 8]
    for name, expected in state(straight.model).items():
        np.testing.assert_array_equal(state(resumed.model)[name], expected, err_msg=name)


def test_a_resume_refuses_labels_outside_the_classifiers_and_a_changed_task(runs, tmp_path):
    task = shutil.copy(runs.task, tmp_path / "ay.csv")
    FineTuner(finetune_config(runs.mlm, task, tmp_path / "out", max_iters=2, eval_interval=2), log=quiet).train()
    original = task.read_text()
    task.write_text(original + "to be or not,maybe\n")
    resume = FineTuneConfig(out=str(tmp_path / "out"), resume=True, max_iters=4)
    with pytest.raises(ValueError, match=r"outside the classifier's label set \['no', 'yes'\]: \['maybe'\]"):
        FineTuner(resume, log=quiet, given=RESUME)
    task.write_text(original + "to be or not,no\n")
    with pytest.raises(ValueError, match="has changed since .* \\(600 examples then, 601 now\\)"):
        FineTuner(resume, log=quiet, given=RESUME)


def test_a_classifier_keeps_its_head_for_a_task_within_its_labels_and_gets_a_new_one_otherwise(runs, tmp_path):
    three = shutil.copy(runs.task, tmp_path / "three.csv")
    three.write_text(three.read_text() + "to be or not,maybe\n" * 20)
    FineTuner(finetune_config(runs.mlm, three, tmp_path / "ft", max_iters=0), log=quiet).train()
    trained = load_checkpoint(tmp_path / "ft" / "latest").model_state
    kept = FineTuner(finetune_config(tmp_path / "ft", runs.task, tmp_path / "kept", max_iters=0), log=quiet)
    assert kept.model.config.label_names == ["maybe", "no", "yes"]  # the classifier's, the task's within them
    assert set(kept.train_data.labels.tolist()) == {1, 2}  # "no" and "yes" numbered as the classifier numbers them
    for name in ("classifier.weight", "classifier.bias", "pooler.weight"):
        np.testing.assert_array_equal(state(kept.model)[name], trained[name], err_msg=name)
    other = ay_task(tmp_path / "other.csv", labels=("absent", "present"))
    fresh = FineTuner(finetune_config(tmp_path / "ft", other, tmp_path / "fresh", max_iters=0), log=quiet)
    assert fresh.model.config.label_names == ["absent", "present"] and fresh.model.classifier.weight.shape == (2, 24)
    np.testing.assert_array_equal(state(fresh.model)["pooler.weight"], trained["pooler.weight"])  # kept, as HF's


def hf_folder(folder):
    """A random transformers BertForMaskedLM saved with safetensors, and a vocab.txt of the task's words."""
    vocab = list(BERT_SPECIALS) + ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
                                   "nobler", "in", "mind", "ay"]
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=24, max_position_embeddings=12)
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def test_fine_tuning_a_hugging_face_folder_keeps_its_encoder_and_its_wordpiece_tokenizer(runs, tmp_path):
    folder = hf_folder(tmp_path / "hf")
    start = FineTuner(finetune_config(folder, runs.task, tmp_path / "start", max_iters=0), log=quiet)
    encoder = state(load_bert(folder))
    for name, array in state(start.model).items():
        if not name.startswith(HEAD):
            np.testing.assert_array_equal(array, encoder[name], err_msg=name)
    tuner = FineTuner(finetune_config(folder, runs.task, tmp_path / "ft", max_iters=60, eval_interval=30),
                      log=quiet)
    history = tuner.train()
    assert history[-1]["val_accuracy"] >= 0.9  # "ay" is one WordPiece token here
    saved = load_checkpoint(tmp_path / "ft" / "latest")
    assert saved.tokenizer["type"] == "wordpiece" and saved.config["model"]["label_names"] == ["no", "yes"]


def test_label_names_are_validated_and_round_trip_through_a_hugging_face_folder(tmp_path):
    with pytest.raises(ValueError, match="label_names must be num_labels=3 distinct names"):
        BERTConfig(head="cls", num_labels=3, label_names=["a", "b"])
    with pytest.raises(ValueError, match="distinct names"):
        BERTConfig(head="cls", num_labels=2, label_names=["a", "a"])
    shape = dict(vocab_size=20, block_size=9, n_layer=1, n_head=2, n_embd=8, head="cls", num_labels=2)
    named = BERT(BERTConfig(**shape, label_names=["no", "yes"]), rng=0)
    save_bert(named, tmp_path / "named")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "named").id2label == {0: "no", 1: "yes"}
    assert load_bert(tmp_path / "named").config.label_names == ["no", "yes"]
    save_bert(BERT(BERTConfig(**shape), rng=0), tmp_path / "unnamed")  # transformers' LABEL_k: unnamed both ways
    assert json.loads((tmp_path / "unnamed" / "config.json").read_text())["id2label"] == {"0": "LABEL_0",
                                                                                          "1": "LABEL_1"}
    assert load_bert(tmp_path / "unnamed").config.label_names is None


def test_the_objective_is_recorded_and_a_checkpoint_without_the_record_still_resumes(runs, tmp_path):
    assert load_checkpoint(runs.mlm / "latest").config["train"]["objective"] == "mlm"
    old = shutil.copytree(runs.mlm, tmp_path / "old")
    config = json.loads((old / "latest" / "config.json").read_text())
    del config["train"]["objective"]  # as written before objectives were recorded
    (old / "latest" / "config.json").write_text(json.dumps(config))
    (old / "latest" / "manifest.json").unlink()  # hashes of the old file; a folder without one loads unchecked
    resumed = Trainer(TrainConfig(out=str(old), resume=True, max_iters=31), log=quiet, given=RESUME)
    assert isinstance(resumed.objective, MaskedLM) and resumed.train()[-1]["step"] == 31


def test_refusals_name_the_problem_and_write_nothing(runs, tmp_path, capsys):
    gpt = tmp_path / "gpt"
    model = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=8), rng=0)
    save_checkpoint(gpt, model.state_dict(), {"model_type": "gpt", "model": model.config.__dict__, "train": {}},
                    tokenizer=CharTokenizer.from_text("abcdefghijkl").to_dict())
    plain = tmp_path / "plain"  # a BERT whose tokenizer has no [CLS] [SEP] [PAD]
    bert = BERT(BERTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8), rng=0)
    save_checkpoint(plain, bert.state_dict(), {"model_type": "bert", "model": bert.config.__dict__, "train": {}},
                    tokenizer=CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz '").to_dict())
    out = tmp_path / "out"
    cases = [
        (["finetune", "--init-from", str(gpt), "--task", str(runs.task)],
         "minilm finetune needs a model of type bert, but"),
        (["finetune", "--init-from", str(plain), "--task", str(runs.task)], "needs a tokenizer with the special"),
        (["finetune", "--init-from", str(runs.mlm)], "needs --init-from CKPT and --task"),
        (["finetune", "--init-from", str(runs.mlm), "--task", str(tmp_path / "none.csv")], "no task file at"),
        (["finetune", "--init-from", str(runs.mlm), "--task", "speakers", "--block-size", "99"],
         "block_size 99 exceeds the model's context of 24"),
        (["train", "--model", "bert", "--objective", "cls"], "run minilm finetune --init-from CKPT --task"),
        (["finetune", "--resume"], "nothing to resume"),
    ]
    for argv, message in cases:
        assert main([*argv, "--out", str(out)]) == 2, argv
        assert message in capsys.readouterr().err, argv
        assert not out.exists(), argv
    assert main(["finetune", "--out", str(runs.mlm), "--resume"]) == 2  # a masked LM is not a fine-tuning run
    assert "was trained with objective mlm" in capsys.readouterr().err
    FineTuner(finetune_config(runs.mlm, runs.task, out, max_iters=0), log=quiet).train()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "is a fine-tuned classifier: continue it with minilm finetune" in capsys.readouterr().err
    assert main(["finetune", "--init-from", str(runs.mlm), "--task", str(runs.task), "--out", str(out)]) == 2
    assert "already holds a checkpoint: pass --resume" in capsys.readouterr().err
