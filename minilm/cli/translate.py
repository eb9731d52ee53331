"""`minilm translate`: a Seq2Seq checkpoint's translation of each text, one line per text: TEXT -> TRANSLATION.

search:  minilm.training.translation.translate, over minilm.training.decoding: --beam 1 (the default) is greedy,
         y_t = argmax_v p(v | y_<t, x); --beam k > 1 keeps the k best targets and answers the finished one with
         the best log p(y | x) / lp(y), lp(y) = ((5 + |y|) / 6)^α, α = --length-penalty (Wu et al. 2016, §7).
         A target ends at its [EOS], or after --max-len tokens ([EOS] included; default the model's block_size).
input:   each text as it is, read by the checkpoint's own character tokenizer (training stripped the pairs'
         surrounding spaces, so a text should not have them either). No [UNK]: a character the model never saw
         is an error naming the text, the character and its position; so is an empty text, or one longer than
         the model's block_size. Every text is checked before any is translated.
Refuses a checkpoint of another model type, naming both; runs under minilm.nn.inference(), in eval mode.
"""

from minilm.backend import BACKENDS, use_backend
from minilm.cli import bounded
from minilm.data.pairs import encode_texts
from minilm.files.loader import load_model
from minilm.nn import inference
from minilm.training.translation import translate


def add_arguments(parser):
    """Translate texts with a seq2seq checkpoint, by greedy or beam search: one line per text, TEXT -> TRANSLATION."""
    parser.add_argument("--ckpt", required=True, metavar="DIR",
                        help="a seq2seq checkpoint folder, or a training output folder (its best/, else its latest/)")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="the source texts to translate")
    parser.add_argument("--beam", type=bounded(int, 1), default=1, metavar="N",
                        help="beam width: 1 is greedy search, N > 1 beam search keeping the N best targets")
    parser.add_argument("--length-penalty", type=bounded(float, 0.0), default=0.6, metavar="A",
                        help="beam search ranks log p(y | x) / ((5 + |y|) / 6)^A: 0 favours short targets, "
                             "larger A longer ones (no effect on greedy search)")
    parser.add_argument("--max-len", type=bounded(int, 1), default=None, metavar="N",
                        help="the most target tokens, [EOS] included (default: the model's block_size)")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="array library (default: the active one, MINILM_BACKEND or numpy)")


def run(args):
    if args.backend is not None:
        use_backend(args.backend)  # before the model is built, so its weights live on that backend
    model, tokenizer, _ = load_model(args.ckpt, expect=("seq2seq",), user="minilm translate")
    block = model.config.block_size
    for i, (text, ids) in enumerate(zip(args.texts, encode_texts(tokenizer, args.texts, "TEXT"))):
        if len(ids) > block:  # encode_texts named an empty text or an unknown character; this is the length
            raise ValueError(f"TEXT {i} {text[:60]!r} is {len(ids)} tokens long, longer than the model's block_size "
                             f"{block}")
    if args.max_len is not None and args.max_len > block:
        raise ValueError(f"--max-len {args.max_len} is more than the model's block_size {block}")
    model.eval()
    with inference():
        translations = translate(model, tokenizer, args.texts, beam=args.beam, length_penalty=args.length_penalty,
                                 max_len=args.max_len)
    for text, translation in zip(args.texts, translations):
        print(f"{text} -> {translation}")
    return 0
