"""Labelled tasks for fine-tuning (minilm.data.tasks) and the baselines a classifier must beat."""

import json

import numpy as np
import pytest

from minilm.data.tasks import HOLD_OUT_EVERY, MIN_WORDS, load_task, read_task_file, speakers_task, word_order_task
from minilm.training.baselines import bag_of_words, baselines, fit_logistic_regression, word_vocabulary

PLAY = """ROMEO:
But soft, what light
through yonder window breaks?

JULIET:
O Romeo, Romeo!

ROMEO:
It is the east.

NURSE:
Madam!

JULIET:
Wherefore art thou
Romeo?
"""


def test_speakers_task_labels_every_line_of_the_top_speakers_and_nothing_else():
    task = speakers_task(PLAY, n_speakers=2)
    assert task.label_names == ["JULIET", "ROMEO"]  # the two with most lines (3 each), sorted
    named = [(task.label_names[label], text) for label, text in zip(task.labels, task.texts)]
    assert named == [("ROMEO", "But soft, what light"), ("ROMEO", "through yonder window breaks?"),
                     ("JULIET", "O Romeo, Romeo!"), ("ROMEO", "It is the east."),
                     ("JULIET", "Wherefore art thou"), ("JULIET", "Romeo?")]
    assert task.groups == [0, 0, 1, 2, 4, 4]  # the speech each line came from; the nurse's (3) is not a label


def test_the_embedded_corpus_task_splits_by_whole_speeches():
    task = speakers_task(n_speakers=4)
    train, test = task.split()
    assert len(train) + len(test) == len(task) and len(test) > 0.05 * len(task)
    assert not set(train.groups) & set(test.groups)  # no speech on both sides
    assert all(g % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 for g in test.groups)
    assert set(test.labels) == set(range(4)) and task.num_labels == 4
    assert speakers_task(n_speakers=4).texts == task.texts  # deterministic


def test_speakers_task_refuses_more_speakers_than_the_text_has():
    with pytest.raises(ValueError, match="n_speakers <= the 3 speakers of the text, got 5"):
        speakers_task(PLAY, n_speakers=5)


def test_word_order_task_keeps_or_shuffles_each_long_enough_line_and_never_mislabels_one():
    text = PLAY + "\nHAMLET:\nto be or not to be\nay ay ay ay\n"
    task = word_order_task(text)
    originals = [line.strip() for line in text.splitlines()
                 if len(line.split()) >= MIN_WORDS and len(set(line.split())) > 1]
    assert len(task) == len(originals) == 4 and task.label_names == ["original", "shuffled"]  # not "ay ay ay ay"
    for original, shown, label in zip(originals, task.texts, task.labels):
        assert sorted(shown.split()) == sorted(original.split())  # the same bag of words either way
        assert (shown == original) == (task.label_names[label] == "original")  # a shuffle always moves a word
    assert task.groups == [0, 0, 2, 5] and word_order_task(text).texts == task.texts  # its speech; fixed seed


def test_the_embedded_word_order_task_is_balanced_large_and_beyond_bag_of_words():
    task = word_order_task()
    train, test = task.split()
    assert len(test) >= 2000 and not set(train.groups) & set(test.groups)  # the floor for one point
    assert abs(np.mean(task.labels) - 0.5) < 0.01 and abs(np.mean(test.labels) - 0.5) < 0.02
    figures = baselines(train.subset(range(4000)), test)  # 4,000 of the 21,813 training lines: a dense fit is slow
    assert abs(figures["bag of words"] - 0.5) < 0.03  # a bag cannot see order: at chance, within sampling noise
    assert load_task("word-order").texts == task.texts


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_and_jsonl_files_give_the_same_task(tmp_path):
    csv_file = write(tmp_path / "reviews.csv", 'text,label\n"good, very",pos\nbad,neg\nfine,pos\n')
    rows = [{"text": "good, very", "label": "pos"}, {"text": "bad", "label": "neg"}, {"text": "fine", "label": "pos"}]
    jsonl_file = write(tmp_path / "reviews.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    for task in (read_task_file(csv_file), load_task(str(jsonl_file))):
        assert task.texts == ["good, very", "bad", "fine"] and task.label_names == ["neg", "pos"]
        assert task.labels == [1, 0, 1] and task.text_pairs is None and task.name == "reviews"


def test_pairs_and_numeric_labels(tmp_path):
    rows = [{"text": "a", "text_pair": "b", "label": 1}, {"text": "c", "text_pair": "d", "label": 0}]
    task = read_task_file(write(tmp_path / "pairs.jsonl", "\n".join(json.dumps(r) for r in rows)))
    assert task.text_pairs == ["b", "d"] and task.label_names == ["0", "1"] and task.labels == [1, 0]


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "", "is empty: expected a header"),
    ("header_only.csv", "text,label\n", "holds no examples"),
    ("no_label.csv", "text,tag\nhello,x\n", "line 2 has no 'label' column"),
    ("blank_text.csv", "text,label\n  ,x\nhi,y\n", "line 2 has an empty 'text'"),
    ("one_label.csv", "text,label\na,x\nb,x\n", "one label only \\('x'\\)"),
    ("broken.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', "line 2 is not JSON"),
    ("list.jsonl", '["a", "x"]\n', "line 1 is not a JSON object"),
    ("some_pairs.jsonl", '{"text": "a", "label": "x", "text_pair": "b"}\n{"text": "c", "label": "y"}\n',
     "text_pair is given on some rows"),
    ("data.txt", "a\tx\n", "must end in .csv or .jsonl"),
])
def test_bad_task_files_are_refused_naming_the_problem(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        read_task_file(write(tmp_path / name, content))


def test_labels_outside_a_classifiers_label_set_are_refused(tmp_path):
    path = write(tmp_path / "more.csv", "text,label\na,pos\nb,neutral\nc,neg\n")
    with pytest.raises(ValueError, match=r"outside the classifier's label set \['neg', 'pos'\]: \['neutral'\]"):
        read_task_file(path, label_names=["neg", "pos"])
    with pytest.raises(FileNotFoundError, match="no task file"):
        load_task(str(tmp_path / "missing.csv"))


def test_bag_of_words_counts_known_words_only():
    vocabulary = word_vocabulary(["the cat", "the dog", "the cat sat"], max_words=2)
    assert vocabulary == {"the": 0, "cat": 1}
    np.testing.assert_allclose(bag_of_words(["The cat, the CAT!", "a dog"], vocabulary),
                               np.log1p([[2, 2], [0, 0]]))


def test_logistic_regression_separates_separable_words_and_reaches_the_penalised_optimum():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int)
    model = fit_logistic_regression(X, y, 2, steps=2000, lr=0.05, l2=1e-2)
    W = np.asarray(model.weight.data)
    assert np.mean((X @ W.T + np.asarray(model.bias.data)).argmax(1) == y) > 0.95
    # at the optimum the gradient of CE + λ/2 ‖W‖² vanishes: (1/N) Σ (p - onehot) xᵀ + λ W = 0
    z = X @ W.T + np.asarray(model.bias.data)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(2)[y]).T @ X / len(y) + 1e-2 * W
    assert np.abs(grad).max() < 1e-4


def test_baselines_on_the_speakers_task_beat_chance_honestly():
    train, test = speakers_task(n_speakers=4).split()
    scores = baselines(train, test)
    assert scores["chance"] == 0.25
    assert 0.25 < scores["majority"] < 0.5
    assert scores["bag of words"] > scores["majority"]  # words tell speakers apart a little
