"""`minilm sample`: text from a checkpoint, through minilm.training.sampling."""

import numpy as np

from minilm.backend import BACKENDS, use_backend
from minilm.cli import bounded
from minilm.files.loader import load_model
from minilm.training.objectives import CausalLM
from minilm.training.sampling import check_sampling, generate


def add_arguments(parser):
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="a checkpoint folder, or a training output folder (its best/, else its latest/)")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--max-new-tokens", type=bounded(int, 0), default=500, metavar="N", help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="divide the logits by T: < 1 sharper, > 1 more varied, 0 greedy (argmax)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, metavar="P",
                        help="sample among the fewest most likely tokens whose probability reaches P (nucleus)")
    parser.add_argument("--seed", type=bounded(int, 0), default=1337,
                        help="seed of the host random generator that draws tokens")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="array library (default: the active one, MINILM_BACKEND or numpy)")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the whole context every token instead of using the key/value cache")


def run(args):
    check_sampling(args.temperature, args.top_k, args.top_p)
    if args.backend is not None:
        use_backend(args.backend)  # before the model is built, so its weights live on that backend
    # every causal language model samples: the GPT, and the history's n-gram, LSTM, RNN and tutorial Transformer
    model, tokenizer, _ = load_model(args.ckpt, expect=(*CausalLM.model_types, "ngram"), user="minilm sample")
    prompt = tokenizer.encode(args.prompt)  # (T,) names a character outside the vocabulary
    ids = generate(model, prompt[None, :], args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, rng=np.random.default_rng(args.seed), use_cache=not args.no_cache)
    print(tokenizer.decode(ids[0]))
    return 0
