"""`minilm finetune`: a BERT classifier fine-tuned on a labelled task, reported beside the baselines.

    minilm finetune --init-from CKPT --task speakers|FILE.csv|FILE.jsonl [--out OUT] [run options]
    minilm finetune --out OUT --resume [--max-iters N]

Every option is a field of FineTuneConfig (minilm.training.finetune: BERT's fine-tuning defaults, the field's
end-of-line comment its help) less the ones a fine-tuning run has no use for, and the model's --dropout.
Checkpoints, --resume and --overwrite follow `minilm train`'s rules; the run ends with a table of held-out
accuracies: chance, the majority class, bag-of-words logistic regression, and the fine-tuned BERT.
"""

import dataclasses

from tqdm import tqdm

from minilm.cli import bounded
from minilm.cli.train import _add_fields, _field_help
from minilm.training.finetune import DROPOUT, UNUSED, FineTuneConfig, FineTuner

FIRST = ("init_from", "task")  # shown first, with their own metavars
OPTIONS = tuple(f.name for f in dataclasses.fields(FineTuneConfig) if f.name not in UNUSED + FIRST)


def add_arguments(parser):
    """Fine-tune a BERT (a minilm checkpoint or a Hugging Face folder) as a classifier on a labelled task."""
    defaults = FineTuneConfig()
    parser.add_argument("--init-from", default=None, metavar="CKPT", dest="init_from",
                        help=f"{_help('init_from')} (required unless --resume)")
    parser.add_argument("--task", default=None, metavar="NAME|FILE", dest="task",
                        help=f"{_help('task')} with the columns text, label and, for pairs, text_pair (required "
                             f"unless --resume)")
    _add_fields(parser.add_argument_group("the run (FineTuneConfig)"), FineTuneConfig, OPTIONS, {"cpu": defaults})
    parser.add_argument("--dropout", type=bounded(float, 0.0, 1.0, high_excluded=True), default=None, metavar="P",
                        help=f"the model's dropout on every layer and the classifier, BERT's for fine-tuning "
                             f"(default: {DROPOUT}; on --resume the checkpoint's)")


def _help(name):
    return _field_help(FineTuneConfig)[name]


def run(args):
    given = {name for name in FIRST + OPTIONS if getattr(args, name, None) is not None}
    cfg = dataclasses.replace(FineTuneConfig(), **{name: getattr(args, name) for name in given})
    if args.dropout is not None:
        given.add("dropout")
    tuner = FineTuner(cfg, log=tqdm.write, given=given, dropout=DROPOUT if args.dropout is None else args.dropout)
    tuner.train()
    print(f"best held-out loss {tuner.best_val:.4f}; checkpoints in {tuner.out}/latest and {tuner.out}/best "
          f"(minilm classify --ckpt {tuner.out} TEXT)")
    print("\n".join(tuner.report()))
    return 0
