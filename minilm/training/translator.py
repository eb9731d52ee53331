"""Training a Seq2Seq on translation pairs: the Trainer's loop with pairs for data (Vaswani et al. 2017, §5).

    pairs = the numbers task (English number words -> French words), numbers-digits, or a TSV file of pairs
    train / val / test = pairs.split()          two sources in ten held out, by source (minilm.data.pairs)
    for it in range(start, max_iters): the Trainer's step, B pairs per batch (translation.Translation)
    every eval_interval steps: the train and val losses (and val token accuracy) on eval_iters random batches
        each, as every objective's; OUT/best is the lowest val loss, OUT/latest the last save; at the end the
        command line scores the whole val split too
    at the end (report): the test split decoded with no teacher, greedy and beam search, exact match and BLEU

The tokenizer is one character vocabulary over both sides of every split, with [PAD] [BOS] [EOS] after the
characters (minilm.data.pairs), built at the start and kept in the checkpoint: `minilm translate` refuses a
character outside it by name. The pairs' fingerprint is recorded, so --resume refuses pairs that changed.
"""

import hashlib
import json

from minilm.data import tokenizer_from_dict
from minilm.data.pairs import load_pairs, pairs_tokenizer
from minilm.models import Seq2Seq, Seq2SeqConfig
from minilm.training.config import model_config
from minilm.training.memory import check_memory
from minilm.training.trainer import Trainer
from minilm.training.translation import scores

DEFAULT_PAIRS = "numbers"  # what --data None trains on
EXAMPLES = 5  # test translations printed by the report


def pairs_fingerprint(pairs):
    """What a resume checks the pairs against: their number and the SHA-256 of every source and target."""
    content = json.dumps([pairs.sources, pairs.targets])
    return {"pairs": len(pairs), "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest()}


class Seq2SeqTrainer(Trainer):
    """The Trainer on translation pairs (see the module docstring); cfg.data names the pairs."""

    def _build(self, model, model_type, objective, resumed, given):
        cfg = self.cfg
        if cfg.init_from:
            raise ValueError("--init-from fine-tunes a Hugging Face GPT-2 folder, not --model seq2seq")
        if resumed is None and cfg.tokenizer != "char":
            raise ValueError(f"--model seq2seq reads characters (one vocabulary over both languages), not "
                             f"--tokenizer {cfg.tokenizer}")
        pairs = load_pairs(cfg.data or DEFAULT_PAIRS)
        self.data_fingerprint = pairs_fingerprint(pairs)
        if resumed is not None:
            saved = (resumed.train_state or {}).get("data")
            if saved is not None and saved != self.data_fingerprint:
                raise ValueError(f"the pairs {cfg.data or DEFAULT_PAIRS} have changed since {self.out / 'latest'} "
                                 f"was saved ({saved['pairs']:,} pairs then, {len(pairs):,} now): resume trains on "
                                 f"the same pairs, or start a new run")
            self.tokenizer = tokenizer_from_dict(resumed.tokenizer)
            config = Seq2SeqConfig.from_checkpoint(resumed.config.get("model"), resumed.path)
        else:
            self.tokenizer = pairs_tokenizer(pairs)
            config = model_config(model, cfg, self.tokenizer)
        check_memory(config, cfg.batch_size, cfg.block_size, not cfg.recompute_attention, cfg.threads)
        self.model = Seq2Seq(config, rng=cfg.seed)
        self.objective = objective.for_tokenizer(self.tokenizer)
        self.pairs = pairs
        splits = dict(zip(("train", "val", "test"), pairs.split()))
        for name, part in splits.items():
            if len(part) == 0:
                raise ValueError(f"the pairs {cfg.data or DEFAULT_PAIRS} have {len(pairs)} distinct sources too few "
                                 f"for a {name} split: two sources in ten are held out, so give at least 10")
        self._check_lengths(pairs)
        self.train_data, self.val_data, self.test_data = (self.objective.encode(part) for part in splits.values())
        self.splits = splits

    def _check_lengths(self, pairs):
        """A source longer than block_size, or a target that is with its [BOS] or [EOS], is named."""
        block = self.cfg.block_size
        for side, texts, extra in (("source", pairs.sources, 0), ("target", pairs.targets, 1)):
            longest = max(texts, key=len)
            if len(longest) + extra > block:
                raise ValueError(f"the {side} {longest[:60]!r} is {len(longest)} characters"
                                 f"{' (+1 for [BOS] or [EOS])' if extra else ''}, longer than --block-size {block}: "
                                 f"give a larger --block-size")

    def report(self, beam=4, length_penalty=0.6):
        """Lines: the test split's exact match and BLEU, greedy and beam, and the first translations."""
        test, pairs = self.test_data, self.splits["test"]
        results = {f"greedy": scores(self.model, self.tokenizer, test),
                   f"beam {beam} (length penalty {length_penalty})": scores(self.model, self.tokenizer, test,
                                                                            beam=beam, length_penalty=length_penalty)}
        width = max(len(name) for name in results)
        lines = [f"the test split ({len(test)} pairs of {pairs.name}) translated from the final weights:"]
        lines += [f"  {name:<{width}}  exact match {r['exact match']:.4f}, BLEU {r['BLEU']:.2f}"
                  for name, r in results.items()]
        greedy = results["greedy"]["translations"]
        lines.append("the first test sources, greedy translation (reference after =):")
        lines += [f"  {source} -> {guess}" + ("" if guess == truth else f"   (= {truth})")
                  for source, guess, truth in zip(test.source_texts, greedy, test.target_texts)][:EXAMPLES]
        return lines, results
