"""Labelled texts for fine-tuning a classifier: a task derived from the corpus, or any CSV / JSONL file.

A task is a list of examples (text, label) with an optional second text (text_pair), and its label names;
labels are stored as indices into the sorted label names, so a model's class k is ``label_names[k]``.

speakers:  which of the N speakers with the most lines in tiny Shakespeare says a line. A speech is a
           "NAME:" line followed by its lines; each non-empty line of a top-N speaker is one example.
           Deterministic, no download; chance is 1/N and the majority class a little more.
word-order: two classes, as the documents' fine-tuning: is a line of the corpus in its own word order, or
           are its words shuffled? Every line of every speech with at least MIN_WORDS words is one example,
           every other one (by a fixed seed) shuffled into an order that differs from its own. A line's
           bag of words is the same either way, so the bag-of-words baseline is at chance by construction:
           only a model that reads order (and knows the language) can tell. 24,128 examples, 2,315 held out.
split:     every 10th speech (by its order in the corpus) is held out, so the two splits never share a
           speech: neighbouring lines of one speech are too alike to test on the other's.
files:     .csv with a header (columns text, label, optional text_pair; csv.DictReader) or .jsonl (one
           JSON object per line with those keys). Labels are strings (a JSON number is taken as its
           text); the label set is every distinct label of the file. Errors name the file, the line and the
           problem: a missing column, an empty text or label, a malformed line, an empty file, one label only.
"""

import csv
import json
import re

import numpy as np
from dataclasses import dataclass, field
from pathlib import Path

from minilm.data.corpus import load_text

SPEECH = re.compile(r"(?m)^([A-Z][A-Za-z' ]*[A-Za-z]):\n((?:.+\n?)+)")  # "NAME:" then its non-empty lines
HOLD_OUT_EVERY = 10  # every 10th speech (or file row) is in the held-out split
MIN_WORDS = 4  # a word-order example's shortest line: fewer words have too few orders to tell apart
WORD_ORDER_SEED = 0  # which lines are shuffled, and how: fixed, so the task is the same for every run


@dataclass
class Task:
    """Examples of one classification task: texts[i] (and text_pairs[i]) labelled labels[i] ∈ 0..K-1."""

    name: str
    label_names: list
    texts: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    text_pairs: list = None  # None: single texts
    groups: list = field(default_factory=list)  # the speech (or row) each example came from: splits keep them whole

    @property
    def num_labels(self):
        return len(self.label_names)

    def __len__(self):
        return len(self.texts)

    def subset(self, keep):
        """The examples whose indices are in ``keep``, in order."""
        pick = lambda values: None if values is None else [values[i] for i in keep]  # noqa: E731
        return Task(self.name, self.label_names, pick(self.texts), pick(self.labels), pick(self.text_pairs),
                    pick(self.groups))

    def relabel(self, label_names):
        """This task with its labels numbered as in ``label_names`` (a classifier's, which may have more); a
        ValueError naming the labels outside it."""
        unknown = [name for name in self.label_names if name not in label_names]
        if unknown:
            raise ValueError(f"task {self.name!r} has labels outside the classifier's label set "
                             f"{list(label_names)}: {unknown[:5]}")
        index = {name: k for k, name in enumerate(label_names)}
        return Task(self.name, list(label_names), self.texts, [index[self.label_names[k]] for k in self.labels],
                    self.text_pairs, self.groups)

    def split(self):
        """(train, held-out): the groups numbered 9, 19, 29 ... held out (every HOLD_OUT_EVERY-th)."""
        held = [i for i, g in enumerate(self.groups) if g % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
        held_set = set(held)
        return self.subset([i for i in range(len(self)) if i not in held_set]), self.subset(held)


def speakers_task(text=None, n_speakers=4):
    """The speakers task on ``text`` (default: the embedded tiny Shakespeare)."""
    text = load_text() if text is None else text
    speeches = SPEECH.findall(text)
    lines = {}
    for speaker, body in speeches:
        lines[speaker] = lines.get(speaker, 0) + sum(1 for line in body.split("\n") if line.strip())
    if len(lines) < n_speakers or n_speakers < 2:
        raise ValueError(f"the speakers task needs 2 <= n_speakers <= the {len(lines)} speakers of the text, "
                         f"got {n_speakers}")
    top = sorted(sorted(lines), key=lambda s: -lines[s])[:n_speakers]  # ties broken by name: deterministic
    label_names = sorted(top)
    task = Task(f"speakers{n_speakers}", label_names)
    for number, (speaker, body) in enumerate(speeches):
        if speaker in label_names:
            for line in body.split("\n"):
                if line.strip():
                    task.texts.append(line.strip())
                    task.labels.append(label_names.index(speaker))
                    task.groups.append(number)
    return task


def word_order_task(text=None, seed=WORD_ORDER_SEED):
    """The word-order task on ``text`` (default: the embedded tiny Shakespeare); labels "original", "shuffled"."""
    text = load_text() if text is None else text
    rng = np.random.default_rng(seed)
    task = Task("word-order", ["original", "shuffled"])
    for number, (_, body) in enumerate(SPEECH.findall(text)):
        for line in body.split("\n"):
            words = line.split()
            if len(set(words)) < 2 or len(words) < MIN_WORDS:  # one distinct word has no other order
                continue
            shuffled = rng.random() < 0.5
            if shuffled:
                order = words
                while order == words:  # a permutation that changes nothing would be mislabelled
                    order = [words[i] for i in rng.permutation(len(words))]
                words = order
            task.texts.append(" ".join(words))
            task.labels.append(int(shuffled))
            task.groups.append(number)
    return task


TASKS = {"speakers": speakers_task, "word-order": word_order_task}  # `minilm finetune --task`'s names, besides a file


def _rows(path):
    """(line number, dict) for each example of a .csv or .jsonl file."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {number} is not JSON: {err.msg}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path} line {number} is not a JSON object: {line.strip()[:60]!r}")
                yield number, row
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise ValueError(f"{path} is empty: expected a header with the columns text and label")
            for row in reader:
                yield reader.line_num, row
    else:
        raise ValueError(f"a task file must end in .csv or .jsonl, got {path.name!r}")


def read_task_file(path, label_names=None):
    """The Task a .csv or .jsonl file of (text, label[, text_pair]) rows holds. label_names: the label set a
    classifier already has (a checkpoint's); a label outside it is refused. None: the file's own labels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no task file at {path}")
    texts, labels, pairs = [], [], []
    for number, row in _rows(path):
        for column in ("text", "label"):
            if column not in row:
                raise ValueError(f"{path} line {number} has no {column!r} column (it has {sorted(row)}); "
                                 f"a task file needs text and label, and may have text_pair")
            value = row[column]
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ValueError(f"{path} line {number} has an empty {column!r}")
        if not isinstance(row["text"], str):
            raise ValueError(f"{path} line {number}: text must be a string, got {row['text']!r}")
        texts.append(row["text"])
        labels.append(str(row["label"]))
        pairs.append(row.get("text_pair"))
    if not texts:
        raise ValueError(f"{path} holds no examples")
    has_pairs = [pair is not None for pair in pairs]
    if any(has_pairs) and not all(has_pairs):
        raise ValueError(f"{path}: text_pair is given on some rows and missing on others "
                         f"(first missing at example {has_pairs.index(False) + 1})")
    if label_names is not None:
        unknown = sorted(set(labels) - set(label_names))
        if unknown:
            raise ValueError(f"{path} has labels outside the classifier's label set {list(label_names)}: "
                             f"{unknown[:5]} (first at example {labels.index(unknown[0]) + 1})")
    label_names = sorted(set(labels)) if label_names is None else list(label_names)
    if len(label_names) < 2:
        raise ValueError(f"{path} has one label only ({label_names[0]!r}): a classifier needs at least two")
    index = {name: k for k, name in enumerate(label_names)}
    return Task(path.stem, label_names, texts, [index[label] for label in labels],
                [str(pair) for pair in pairs] if all(has_pairs) else None, list(range(len(texts))))


def load_task(name_or_path, label_names=None):
    """A named task (TASKS) or a task file; label_names as read_task_file's."""
    if name_or_path in TASKS:
        task = TASKS[name_or_path]()
        return task if label_names is None else task.relabel(label_names)
    return read_task_file(name_or_path, label_names)


def check_labels(labels, label_names, where):
    """ValueError naming the first label outside 0..K-1 (a model with K classes cannot score it)."""
    for i, label in enumerate(labels):
        if not 0 <= label < len(label_names):
            raise ValueError(f"label {label} of example {i} in {where} is outside the label set 0..{len(label_names) - 1}")
