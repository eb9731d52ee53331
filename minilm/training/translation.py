"""Translation: the seq2seq objective that trains a Seq2Seq on source/target pairs, and what it is measured by.

seq2seq  each pair (x, y) becomes src = x, tgt_in = [BOS] y, tgt_out = y [EOS] (minilm.data.pairs.make_batch),
         padded to the batch's longest source and target; the model reads the whole source and the target up
         to position t (teacher forcing) and predicts y_{t+1}:
             inputs (src (B, S), tgt_in (B, T)),   targets tgt_out (B, T), -100 at padding
             loss = CE(model(src, tgt_in), tgt_out), the mean over the target tokens ([EOS] included)
         metric: token accuracy = mean over target tokens of [argmax_v logits[b, t, v] = tgt_out[b, t]]
         batch draws B pairs uniformly with replacement from the train split (the run's generator, so a resume
         continues the same draws); every_batch goes through a split once, in order.
scores   after training, each source of a split is decoded with no teacher (minilm.training.decoding, greedy
         or beam) and compared with its reference:
             exact match = share of translations equal to the reference, character for character
             BLEU = sacrebleu's corpus BLEU (Papineni et al. 2002: the geometric mean of 1- to 4-gram
             precisions times a brevity penalty, on its 13a tokenization), 0 to 100; a well-kept
             implementation rather than one written here, so the figure compares with published ones.
ref:     Vaswani et al. 2017, §5; Post 2018, "A Call for Clarity in Reporting BLEU Scores" (sacrebleu)
"""

from dataclasses import dataclass

import numpy as np

from minilm.backend import asarray, xp
from minilm.data.pairs import PAIR_SPECIALS, batch_of_ids, decode_target, encode_texts, make_batch
from minilm.training.decoding import beam_search


@dataclass
class PairIds:
    """A split of pairs, each side tokenized once (host int64 ids), with its texts for the scores."""

    sources: list  # (n_i,) ids of each source
    targets: list  # (m_i,) ids of each target, without [BOS] or [EOS]
    source_texts: list
    target_texts: list

    def __len__(self):
        return len(self.sources)


class Translation:
    """Teacher-forced next-token prediction of the target, given the source (module docstring)."""

    name = "seq2seq"
    model_types = ("seq2seq",)
    special_tokens = PAIR_SPECIALS
    metric = "token accuracy"

    def __init__(self, tokenizer=None):
        self.tokenizer = tokenizer

    def for_tokenizer(self, tokenizer):
        try:
            for token in PAIR_SPECIALS:
                tokenizer.special_id(token)
        except (AttributeError, ValueError):
            raise ValueError(f"--objective seq2seq needs a tokenizer with the special tokens "
                             f"{' '.join(PAIR_SPECIALS)}, which {tokenizer!r} lacks") from None
        return Translation(tokenizer)

    def encode(self, pairs):
        """The PairIds of ``pairs``; a ValueError naming the text and character outside the vocabulary."""
        return PairIds(encode_texts(self.tokenizer, pairs.sources, "source"),
                       encode_texts(self.tokenizer, pairs.targets, "target"), list(pairs.sources),
                       list(pairs.targets))

    def _batch(self, data, rows):
        # from the ids encode() kept: a training step pads and copies, it does not tokenize again
        batch = batch_of_ids(self.tokenizer, [data.sources[i] for i in rows], [data.targets[i] for i in rows])
        return (asarray(batch.src), asarray(batch.tgt_in)), asarray(batch.tgt_out)

    def batch(self, data, batch_size, block_size, rng):
        """((src, tgt_in), tgt_out) of B pairs drawn with replacement by ``rng``."""
        return self._batch(data, rng.integers(0, len(data), size=batch_size))

    def every_batch(self, data, batch_size, block_size):
        """The same, for every pair of ``data`` once, in order, B at a time."""
        for first in range(0, len(data), batch_size):
            yield self._batch(data, range(first, min(first + batch_size, len(data))))

    @staticmethod
    def correct(logits, targets):
        """How many target tokens (targets != -100) the logits (B, T, V) rank first."""
        counted = targets != -100  # (B, T)
        return int((xp.argmax(logits, axis=-1) == targets)[counted].sum())


def translate(model, tokenizer, texts, beam=1, length_penalty=0.6, max_len=None, batch_size=64):
    """The translation of each text (a list of str), by greedy search (beam=1) or beam search; a ValueError
    naming the text, character and position for a character the tokenizer does not know."""
    bos, eos = tokenizer.special_id("[BOS]"), tokenizer.special_id("[EOS]")
    out = []
    for first in range(0, len(texts), batch_size):
        chunk = list(texts[first:first + batch_size])
        src = make_batch(tokenizer, chunk).src  # (B, S), [PAD] after each source
        if src.shape[1] > model.config.block_size:
            longest = max(chunk, key=lambda text: len(tokenizer.encode(text)))
            raise ValueError(f"source {longest[:60]!r} is {src.shape[1]} tokens, longer than the model's "
                             f"block_size {model.config.block_size}")
        ids, _ = beam_search(model, src, bos, eos, beam=beam, length_penalty=length_penalty, max_len=max_len)
        out += [decode_target(tokenizer, np.array(row, dtype=np.int64)) for row in ids]
    return out


def scores(model, tokenizer, data, beam=1, length_penalty=0.6, batch_size=64):
    """{"exact match", "BLEU", "translations"} of the split ``data`` (PairIds) decoded without a teacher."""
    import sacrebleu  # a dependency of minilm; imported here, as only the scores need it

    hypotheses = translate(model, tokenizer, data.source_texts, beam=beam, length_penalty=length_penalty,
                           batch_size=batch_size)
    exact = float(np.mean([h == r for h, r in zip(hypotheses, data.target_texts)]))
    bleu = sacrebleu.corpus_bleu(hypotheses, [data.target_texts]).score
    return {"exact match": exact, "BLEU": float(bleu), "translations": hypotheses}
