"""The ``minilm`` command: this dispatcher, and one module per command that is only a command line
(train.py, sample.py, translate.py, hf.py, finetune.py, encoder.py); check and attention keep theirs beside the
code they drive (verify, viz).

    minilm train   [--model MODEL] [--max-iters N] ...       train a model, checkpointing; MODEL: gpt (the default),
                                                             bert, seq2seq, or the history's lstm, rnn, tutorial, ngram
    minilm sample  --ckpt DIR --prompt TEXT ...              generate text from a checkpoint
    minilm translate --ckpt DIR [--beam N] TEXT ...          translate with a seq2seq checkpoint (greedy or beam)
    minilm check   [LAYER ...]                               verify every formula (finite differences, PyTorch)
    minilm attention --ckpt DIR --text TEXT [--out PNG] [--html PAGE]
                                                             draw a checkpoint's attention (a seq2seq's: cross-)
    minilm export / import-hf                                GPT-2 and BERT weights in the Hugging Face layout
    minilm finetune --init-from CKPT --task NAME|FILE        fine-tune a BERT classifier, beside the baselines
    minilm classify / fill-mask / embed --ckpt DIR TEXT ...  use a BERT: labels, masked tokens, hidden states

Exit codes: 0 success; 1 a check that failed (``minilm check``); 2 bad usage or bad input (an unknown
option, a number out of range, a missing file, a corrupt checkpoint, a full disk), with one line on stderr
naming the problem; 130 interrupted. No input ends in a traceback.

May import: every other sub-package (the command line is the top floor); each command's module is imported
only when the parser is built.
"""

import argparse
import importlib
import math
import sys

from minilm.backend import backend_name, keep_freed_heap

# command -> (module, function adding its options to a parser, function running it and returning an exit code)
COMMANDS = {
    "train": ("minilm.cli.train", "add_arguments", "run"),
    "sample": ("minilm.cli.sample", "add_arguments", "run"),
    "translate": ("minilm.cli.translate", "add_arguments", "run"),
    "check": ("minilm.verify.check", "add_arguments", "run"),
    "attention": ("minilm.viz.figures", "add_attention_arguments", "run_attention"),
    "export": ("minilm.cli.hf", "add_export_arguments", "run_export"),
    "import-hf": ("minilm.cli.hf", "add_import_arguments", "run_import"),
    "finetune": ("minilm.cli.finetune", "add_arguments", "run"),
    "classify": ("minilm.cli.encoder", "add_classify_arguments", "run_classify"),
    "fill-mask": ("minilm.cli.encoder", "add_fill_mask_arguments", "run_fill_mask"),
    "embed": ("minilm.cli.encoder", "add_embed_arguments", "run_embed"),
}
POSITIVE = math.ulp(0.0)  # the smallest float above 0: ``bounded(float, POSITIVE)`` means "> 0"


def bounded(kind, low, high=None, high_excluded=False):
    """An argparse type: ``kind`` (int or float) in [low, high] (or [low, high)), else a usage error."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or value < low or (high is not None and (
                value > high or (high_excluded and value == high))):
            shown = "> 0" if low == POSITIVE else f">= {low}"
            upper = "" if high is None else f" and {'<' if high_excluded else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {shown}{upper}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


class DefaultsShown(argparse.HelpFormatter):
    """Help lines end with the option's default, unless the help already says it or there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, False, argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def build_parser():
    parser = argparse.ArgumentParser(prog="minilm", description="Transformer language models written from scratch.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add_arguments, run) in COMMANDS.items():
        module = importlib.import_module(module_name)
        add = getattr(module, add_arguments)
        # a module serving two commands documents each one on its add-arguments function
        summary = (add.__doc__ or module.__doc__ or "").strip().splitlines()[0]
        command = subcommands.add_parser(name, help=summary, description=summary,
                                         formatter_class=DefaultsShown)
        add(command)
        command.set_defaults(run=getattr(module, run))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_heap()  # the command owns its process: keep freed pages for the next step (backend.py says why)
    try:
        backend_name()  # MINILM_BACKEND is read here: a bad value is a one-line error, not a traceback
        return args.run(args)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        print(f"minilm {args.command}: error: {_describe(err)}", file=sys.stderr)
        _end_other_ranks(2)
        return 2
    except MemoryError as err:  # what the up-front estimates (minilm.training.memory) do not foresee
        print(f"minilm {args.command}: error: out of memory ({err or 'no details'}): try smaller sizes",
              file=sys.stderr)
        _end_other_ranks(2)
        return 2
    except KeyboardInterrupt:
        print(f"minilm {args.command}: interrupted", file=sys.stderr)
        _end_other_ranks(130)
        return 130
    except BaseException:
        _end_other_ranks(1)  # an unforeseen error on one rank must not leave the others waiting forever
        raise


def _end_other_ranks(code):
    """Under mpiexec, abort the whole job: the other ranks may be waiting in a collective for this one."""
    from minilm.communicator import World, launched_by_mpi

    if launched_by_mpi():
        try:
            world = World.current()
        except (RuntimeError, ValueError):  # no mpi4py, or a bad MINILM_RANK_TIMEOUT: the error just printed says so
            return
        world.abort(code)


def _describe(err):
    """An exception as one line: an OSError from the system (disk full, read-only folder) with its path."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        paths = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
        return f"{paths}: {err.strerror}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
