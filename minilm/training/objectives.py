"""What a model is trained to predict: an objective turns a split's token ids into (inputs, targets) batches.

clm  causal language modelling (GPT): windows w (B, T + 1) of consecutive tokens,
         inputs x = w[:, :T],   targets y = w[:, 1:]        y[b, t] is the token after x[b, t]
         loss = CE(model(x), y), the mean over the B·T next-token predictions
mlm  masked language modelling (BERT): windows w (B, T) of consecutive tokens, masked as BERT
         (minilm.data.masking: 15% of the positions chosen; of those 80% [MASK], 10% random, 10% kept)
         inputs x = masked w,   targets y = w where chosen, else -100
         loss = CE(model(x), y), the mean over the ~0.15·B·T chosen positions only
         metric: masked accuracy = mean over chosen positions of [argmax_v logits[b, t, v] = y[b, t]]
         Windows are raw stretches of the token stream, as RoBERTa's FULL-SENTENCES, without [CLS] or
         [SEP]: nothing is padded, so no attention mask is needed.
cls  sequence classification (a BERT with the "cls" head, fine-tuned on a labelled Task): each example is
         [CLS] text [SEP] (text_pair [SEP]) with token types 0 ... 0 (1 ... 1), truncated longest-first to
         block_size (the tokenizer's encode_pair), then padded with [PAD] to the longest row of its batch, so
         a batch costs its own longest line, not block_size; attention_mask (B, T) is 1 on tokens, 0 on [PAD]
         inputs (ids, token_type_ids, attention_mask) (B, T) each,   targets y (B,) the labels
         loss = CE(model(*inputs), y), the mean over the B examples;  metric: accuracy
         batch draws B examples uniformly with replacement from the train split (the run's generator, so a
         resume continues the same draws); every_batch goes through the held-out split once, in order.
The trainer runs any objective the same way: logits = model(*inputs); loss = CE(logits, targets);
model.backward(CE.backward()). Each objective names the model types it can train and the special tokens
its tokenizer must have; ``for_tokenizer`` binds it to the run's tokenizer (the ids of those tokens).
seq2seq (translation pairs, a Seq2Seq) lives in minilm.training.translation.
"""

from dataclasses import dataclass

import numpy as np

from minilm.backend import asarray, to_numpy, xp
from minilm.data import next_token_pairs, random_windows, sequential_windows
from minilm.data.char_tokenizer import BERT_SPECIALS
from minilm.data.masking import IGNORE_INDEX, mask_tokens
from minilm.nn import inference
from minilm.training.translation import Translation

# the whole-split masked LM loss masks its split with this seed, every time: the same masks at every
# evaluation and in every run, so two figures differ only by the weights
VAL_MASK_SEED = 0


class CausalLM:
    """Next-token prediction over random windows of a token stream (nanoGPT's get_batch)."""

    name = "clm"
    model_types = ("gpt", "lstm", "rnn", "tutorial")
    special_tokens = ()  # needs none
    metric = None  # reports the loss alone

    def for_tokenizer(self, tokenizer):
        return self

    def batch(self, data, batch_size, block_size, rng):
        """((x,), y) for one training step: B random windows of T + 1 tokens, split into inputs and targets."""
        x, y = next_token_pairs(random_windows(data, batch_size, block_size + 1, rng))  # (B, T) each
        return (x,), y

    def every_batch(self, data, batch_size, block_size):
        """((x,), y) batches covering the whole split once, in order: for a loss without sampling noise."""
        for windows in sequential_windows(data, batch_size, block_size + 1):
            x, y = next_token_pairs(windows)  # (≤ B, T) each
            yield (x,), y


class MaskedLM:
    """BERT's masked language modelling over random windows of a token stream (see the module doc)."""

    name = "mlm"
    model_types = ("bert",)
    special_tokens = BERT_SPECIALS  # [MASK] to show, [PAD] [UNK] [CLS] [SEP] never to choose
    metric = "masked accuracy"

    def __init__(self, mask_id=None, special_ids=(), vocab_size=None):
        self.mask_id, self.special_ids, self.vocab_size = mask_id, tuple(special_ids), vocab_size

    def for_tokenizer(self, tokenizer):
        """This objective with ``tokenizer``'s [MASK] id, special ids and vocabulary size."""
        try:
            ids = [getattr(tokenizer, f"{token[1:-1].lower()}_id") for token in self.special_tokens]
        except (AttributeError, ValueError):
            raise ValueError(f"--objective mlm needs a tokenizer with the special tokens {' '.join(BERT_SPECIALS)}, "
                             f"which {tokenizer!r} lacks (the char tokenizer adds them for a masked LM)") from None
        return MaskedLM(tokenizer.mask_id, ids, tokenizer.vocab_size)

    def _masked(self, windows, rng):
        if self.mask_id is None:
            raise RuntimeError("MaskedLM has no tokenizer: call for_tokenizer(tokenizer) first")
        x, y = mask_tokens(windows, rng, self.mask_id, self.special_ids, self.vocab_size)  # (B, T) each
        return (asarray(x),), asarray(y)

    def batch(self, data, batch_size, block_size, rng):
        """((x,), y) for one training step: B random windows of T tokens, masked with draws from ``rng``."""
        return self._masked(random_windows(data, batch_size, block_size, rng), rng)

    def every_batch(self, data, batch_size, block_size):
        """((x,), y) batches of every non-overlapping window of T tokens in order, the whole split masked at
        once with VAL_MASK_SEED: the same masks on every call, whatever the batch size."""
        data = np.asarray(data)
        windows = data[:len(data) // block_size * block_size].reshape(-1, block_size)  # (W, T)
        (x,), y = self._masked(windows, np.random.default_rng(VAL_MASK_SEED))  # (W, T) each
        for first in range(0, len(windows), batch_size):
            yield (x[first:first + batch_size],), y[first:first + batch_size]  # (≤ B, T) each

    @staticmethod
    def correct(logits, targets):
        """How many chosen positions (targets != -100) the logits (B, T, V) rank their target first at."""
        chosen = targets != IGNORE_INDEX  # (B, T)
        return int((xp.argmax(logits, axis=-1) == targets)[chosen].sum())

    def fill_mask(self, model, tokenizer, data, block_size):
        """Lines showing the model's guesses on the split's first window: each [p|t] a chosen position, p the
        model's guess of its true token t (what the input showed there is not printed)."""
        (x,), y = next(self.every_batch(data, 1, block_size))  # (1, T) each
        model.eval()
        with inference():
            guess = to_numpy(xp.argmax(model(x), axis=-1))[0]  # (T,)
        model.train()
        truth, labels = np.asarray(data[:block_size]), to_numpy(y)[0]  # (T,) each

        def shown(i):
            return tokenizer.decode([int(i)]).replace("\n", "⏎")

        text = "".join(f"[{shown(g)}|{shown(t)}]" if label != IGNORE_INDEX else shown(t)
                       for g, t, label in zip(guess, truth, labels))
        chosen = labels != IGNORE_INDEX  # (T,)
        return [f"fill-mask on the first val window: [guess|truth] at each of its {int(chosen.sum())} chosen "
                f"positions ({int((guess == labels)[chosen].sum())} right; ⏎ is a newline):", text]


@dataclass
class Examples:
    """A task split tokenized once for a BERT: rows padded to the split's longest, cut to a batch's longest."""

    ids: np.ndarray  # (N, T) [CLS] text [SEP] (pair [SEP]) then [PAD], host int64
    token_type_ids: np.ndarray  # (N, T) 0 on the first text, 1 on the second, 0 on padding
    lengths: np.ndarray  # (N,) tokens before the padding
    labels: np.ndarray  # (N,) class indices

    def __len__(self):
        return len(self.labels)


class Classification:
    """Fine-tuning a BERT classifier on a labelled Task (see the module doc)."""

    name = "cls"
    model_types = ("bert",)
    special_tokens = ("[CLS]", "[SEP]", "[PAD]")
    metric = "accuracy"
    whole_split = True  # evaluate on the whole held-out split, in order: a few hundred examples, and exact

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer

    def for_tokenizer(self, tokenizer):
        """This objective with ``tokenizer``, which must have [CLS] [SEP] [PAD] and BERT's pairing."""
        try:
            for needed in ("cls_id", "sep_id", "pad_id", "encode_pair"):
                getattr(tokenizer, needed)  # a char tokenizer without the token raises ValueError, a BPE AttributeError
        except (AttributeError, ValueError):
            raise ValueError(f"fine-tuning a classifier needs a tokenizer with the special tokens "
                             f"{' '.join(self.special_tokens)}, which {tokenizer!r} lacks (a BERT's WordPiece "
                             f"tokenizer has them, as does the char tokenizer of a masked LM)") from None
        return Classification(tokenizer)

    def encode(self, task, block_size):
        """The Examples of ``task`` (a Task or one of its splits), each truncated to ``block_size`` tokens."""
        if self.tokenizer is None:
            raise RuntimeError("Classification has no tokenizer: call for_tokenizer(tokenizer) first")
        pairs = task.text_pairs or [None] * len(task)
        rows = [self.tokenizer.encode_pair(text, pair, max_length=block_size) for text, pair in zip(task.texts, pairs)]
        lengths = np.array([len(ids) for ids, _ in rows], dtype=np.int64)  # (N,)
        ids = np.full((len(rows), max(lengths, default=0)), self.tokenizer.pad_id, dtype=np.int64)  # (N, T)
        types = np.zeros_like(ids)  # (N, T)
        for row, (row_ids, row_types) in enumerate(rows):
            ids[row, :len(row_ids)], types[row, :len(row_types)] = row_ids, row_types
        return Examples(ids, types, lengths, np.asarray(task.labels, dtype=np.int64))

    @staticmethod
    def _batch(data, rows):
        T = int(data.lengths[rows].max())  # the batch's longest example; shorter ones keep their [PAD]
        mask = (np.arange(T) < data.lengths[rows][:, None]).astype(np.int64)  # (B, T) 1 = token, 0 = [PAD]
        inputs = (data.ids[rows, :T], data.token_type_ids[rows, :T], mask)  # (B, T) each
        return tuple(asarray(a) for a in inputs), asarray(data.labels[rows])  # ..., (B,)

    def batch(self, data, batch_size, block_size, rng):
        """((ids, token_type_ids, attention_mask), labels) of B examples drawn with replacement by ``rng``
        (``data`` an Examples, already truncated to block_size)."""
        return self._batch(data, rng.integers(0, len(data), size=batch_size))

    def every_batch(self, data, batch_size, block_size):
        """The same, for every example of ``data`` once, in order, B at a time."""
        for first in range(0, len(data), batch_size):
            yield self._batch(data, np.arange(first, min(first + batch_size, len(data))))

    @staticmethod
    def correct(logits, targets):
        """How many examples the logits (B, K) rank their label (B,) first."""
        return int((xp.argmax(logits, axis=-1) == targets).sum())


OBJECTIVES = {"clm": CausalLM, "mlm": MaskedLM, "cls": Classification, "seq2seq": Translation}


def objective_for(model_type):
    """The first objective in OBJECTIVES that trains ``model_type`` (what `minilm train --model X` runs); None
    when none does."""
    return next((objective() for objective in OBJECTIVES.values() if model_type in objective.model_types), None)
