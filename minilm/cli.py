"""The ``minilm`` command. Each subcommand's options and its ``run`` live beside the library code it drives.

    minilm train   [--preset cpu|gpu] [--max-iters N] ...   train a GPT, checkpointing as it goes
    minilm sample  --ckpt DIR --prompt TEXT ...              generate text from a checkpoint
    minilm check   [LAYER ...]                               verify every formula (finite differences, PyTorch)
    minilm export / import-hf                                GPT-2 weights in the Hugging Face layout

Exit codes: 0 success; 1 a check that failed (``minilm check``); 2 bad usage or bad input (an unknown
option, a missing file, a corrupt checkpoint), with one line on stderr naming the problem.
"""

import argparse
import importlib
import sys

# command -> (module, function adding its options to a parser, function running it and returning an exit code)
COMMANDS = {
    "train": ("minilm.train", "add_arguments", "run"),
    "sample": ("minilm.sample", "add_arguments", "run"),
    "check": ("minilm.check", "add_arguments", "run"),
    "attention": ("minilm.figures", "add_attention_arguments", "run_attention"),
    "export": ("minilm.hf_cli", "add_export_arguments", "run_export"),
    "import-hf": ("minilm.hf_cli", "add_import_arguments", "run_import"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="minilm", description="Transformer language models written from scratch.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add_arguments, run) in COMMANDS.items():
        module = importlib.import_module(module_name)
        add = getattr(module, add_arguments)
        # a module serving two commands documents each one on its add-arguments function
        summary = (add.__doc__ or module.__doc__ or "").strip().splitlines()[0]
        command = subcommands.add_parser(name, help=summary, description=summary)
        add(command)
        command.set_defaults(run=getattr(module, run))
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        print(f"minilm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"minilm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
