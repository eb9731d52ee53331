"""GPT-2 weights in the Hugging Face layout: a transformers GPT-2 folder in, a minilm GPT out, and back.

folder:   config.json (GPT2Config's fields) and model.safetensors (name -> array), as
          ``GPT2LMHeadModel.save_pretrained`` writes them; a sharded model.safetensors.index.json is read too.
          Names are "transformer.h.N.attn.c_attn.weight", ...; older files (OpenAI's own upload) drop the
          "transformer." prefix, and both are read. Buffers some files hold (attn.bias, attn.masked_bias: the
          causal mask as a tensor) are skipped: minilm builds its mask. lm_head.weight is usually absent (tied).
Conv1D:   GPT-2's linear layers compute y = x W + b with W stored (in, out); minilm's Linear, like torch's,
          computes y = x Wᵀ + b with W (out, in). So the four matrices of every block are transposed on the way
          in and on the way out. c_attn's (C, 3C) becomes in_proj_weight (3C, C): its column blocks [q | k | v]
          become row blocks in the same order, and both libraries cut C into H heads of hs alike.
trap:     attn.c_proj.weight is square (C, C): leaving out its transpose passes every shape check and
          loads without a word; only the logits show it, which is why the tests compare logits with transformers.
refusals: load_gpt2 refuses a config minilm cannot build (an activation other than tanh GELU, n_inner ≠ 4C,
          attention scaled by 1/(layer index) or not by 1/√hs, cross-attention, an untied head); save_gpt2
          refuses a model the GPT-2 layout cannot hold (post-LN, sinusoidal positions, an untied head). Each
          names the field and its value.
bias:     a bias=False model (the training default) is written with zero Linear biases, the same function,
          and reads back as bias=True with those zeros; its LayerNorms have biases either way.
ref:      transformers' models/gpt2/modeling_gpt2.py and pytorch_utils.Conv1D; Radford et al. 2019 (GPT-2)
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import safetensors.numpy

from minilm.backend import to_numpy
from minilm.data.bpe import BPETokenizer
# the folder's files, shared with hf_bert.py; imported here too, so their old minilm.files.hf paths keep working
from minilm.files.hf_folder import CONFIG, INDEX, WEIGHTS, check_export_path, read_folder, write_export  # noqa: F401
from minilm.models.gpt import GPT, GPTConfig
from minilm.nn.normalization import LayerNorm

PREFIX = "transformer."
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the causal mask stored as a tensor: skipped
HEAD = "lm_head.weight"

# The whole name map: (Hugging Face name, minilm name, transposed?). Block rows get "h.N." on both sides and
# the Hugging Face names the "transformer." prefix. Transposed rows are Conv1D (in, out) <-> Linear (out, in).
TOP = (
    ("wte.weight", "wte.weight", False),  # (V, C) both: an embedding table is not a Conv1D
    ("wpe.weight", "wpe.weight", False),  # (T_max, C)
    ("ln_f.weight", "ln_f.weight", False),
    ("ln_f.bias", "ln_f.bias", False),
)
BLOCK = (
    ("ln_1.weight", "ln_1.weight", False),
    ("ln_1.bias", "ln_1.bias", False),
    ("attn.c_attn.weight", "attn.in_proj_weight", True),  # (C, 3C) -> (3C, C)
    ("attn.c_attn.bias", "attn.in_proj_bias", False),  # (3C,)
    ("attn.c_proj.weight", "attn.out_proj.weight", True),  # (C, C) -> (C, C): the square one
    ("attn.c_proj.bias", "attn.out_proj.bias", False),
    ("ln_2.weight", "ln_2.weight", False),
    ("ln_2.bias", "ln_2.bias", False),
    ("mlp.c_fc.weight", "mlp.c_fc.weight", True),  # (C, 4C) -> (4C, C)
    ("mlp.c_fc.bias", "mlp.c_fc.bias", False),  # (4C,)
    ("mlp.c_proj.weight", "mlp.c_proj.weight", True),  # (4C, C) -> (C, 4C)
    ("mlp.c_proj.bias", "mlp.c_proj.bias", False),
)

# three names transformers gives 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), minilm's GELU("tanh")
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# config.json field -> (values minilm can build, GPT2Config's default, why the others cannot be).
# reorder_and_upcast_attn is absent on purpose: it only reorders the scaling and upcasts to float32, the same maths.
MUST_BE = {
    "model_type": (("gpt2",), "gpt2", "not a GPT-2 config"),
    "activation_function": (TANH_GELUS, "gelu_new", "minilm's GPT uses the tanh GELU"),
    "n_inner": ((None,), None, "minilm's MLP is 4 * n_embd wide"),  # 4C itself is accepted below
    "scale_attn_weights": ((True,), True, "minilm always scales attention scores by 1/sqrt(head size)"),
    "scale_attn_by_inverse_layer_idx": ((False,), False, "minilm does not scale attention by 1/(layer index)"),
    "add_cross_attention": ((False,), False, "minilm's GPT has no cross-attention"),
    "tie_word_embeddings": ((True,), True, "GPT-2's head is tied to wte; minilm imports that layout only"),
}
SIZES = {"vocab_size": "vocab_size", "n_positions": "block_size", "n_layer": "n_layer", "n_head": "n_head",
         "n_embd": "n_embd"}  # config.json field -> GPTConfig field


def name_map(n_layer):
    """[(Hugging Face name, minilm name, transposed?)] for every weight of an ``n_layer``-block GPT-2."""
    rows = [(PREFIX + theirs, ours, t) for theirs, ours, t in TOP]
    for i in range(n_layer):
        rows += [(f"{PREFIX}h.{i}.{theirs}", f"h.{i}.{ours}", t) for theirs, ours, t in BLOCK]
    return rows


def config_from_hf(hf):
    """The GPTConfig of a config.json dict; ValueError naming a field minilm cannot build."""
    for field, (allowed, default, why) in MUST_BE.items():
        value = hf.get(field, default)
        if field == "n_inner" and value == 4 * hf.get("n_embd", 0):
            continue
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"config.json {field}={value!r} cannot be imported: {why}")
    sizes = {}
    for field, ours in SIZES.items():
        value = hf.get(field, hf.get("n_ctx") if field == "n_positions" else None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config.json {field} must be an integer, got {value!r}")
        sizes[ours] = value
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"config.json layer_norm_epsilon must be a positive number, got {eps!r}")
    # minilm has one dropout probability; dropout only acts in training, so take the strongest of the three
    dropout = max(float(hf.get(name, 0.1)) for name in ("embd_pdrop", "attn_pdrop", "resid_pdrop"))
    return GPTConfig(**sizes, dropout=dropout, bias=True, pos="learned", norm="pre", tie_weights=True,
                     layer_norm_eps=float(eps))


def check_exportable(cfg):
    """ValueError naming the GPTConfig field the GPT-2 layout cannot hold."""
    for field, wanted, why in (("norm", "pre", "GPT-2 blocks are pre-LN (x + f(LN(x))) with a final ln_f"),
                               ("pos", "learned", "GPT-2 learns its position table wpe"),
                               ("tie_weights", True, "GPT-2's lm_head is wte itself")):
        if getattr(cfg, field) != wanted:
            raise ValueError(f"the GPT-2 layout cannot hold a model with {field}={getattr(cfg, field)!r}: {why}")


def hf_config(model):
    """The config.json dict of ``model`` for transformers' GPT2LMHeadModel."""
    cfg = model.config
    check_exportable(cfg)
    eps = sorted({m.eps for _, m in model.named_modules() if isinstance(m, LayerNorm)})
    if eps != [cfg.layer_norm_eps]:  # an eps set by hand on a module, which the config would not carry
        raise ValueError(f"GPT-2 has one layer_norm_epsilon, the config's {cfg.layer_norm_eps}, "
                         f"but this model's LayerNorms use {eps}")
    end_of_text = 50256 if cfg.vocab_size > 50256 else None  # GPT-2's <|endoftext|>, only in its own vocabulary
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": float(cfg.layer_norm_eps),
        "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout, "resid_pdrop": cfg.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": end_of_text, "eos_token_id": end_of_text, "dtype": str(model.wte.weight.data.dtype),
    }


def hf_state(model):
    """Hugging Face name -> C-contiguous NumPy array (Conv1D matrices transposed); lm_head is left to the tie."""
    ours = model.state_dict()
    for _, name, _ in name_map(model.config.n_layer):
        if name not in ours:  # bias=False: the Linear's bias is zeros, one per output (row) of its (out, in) weight
            weight = to_numpy(ours[name.removesuffix("bias") + "weight"])  # "...in_proj_bias" -> "...in_proj_weight"
            ours[name] = np.zeros(weight.shape[0], weight.dtype)
    # safetensors 0.8.0 writes a transposed view in memory order, scrambling it: copy into C order
    return {theirs: np.ascontiguousarray(to_numpy(ours[name]).T if t else to_numpy(ours[name]))
            for theirs, name, t in name_map(model.config.n_layer)}


def minilm_state(arrays, model, where):
    """minilm name -> array from Hugging Face name -> array, checked against ``model``; errors name ``where``."""
    arrays = {name if name.startswith(PREFIX) or name == HEAD else PREFIX + name: array
              for name, array in arrays.items() if not name.endswith(MASK_BUFFERS)}
    shapes = {name: tuple(array.shape) for name, array in model.state_dict().items()}
    state, problems = {}, []
    for theirs, ours, t in name_map(model.config.n_layer):
        if theirs not in arrays:
            problems.append(f"missing tensor {theirs}")
            continue
        array = arrays.pop(theirs)
        wanted = shapes[ours][::-1] if t else shapes[ours]
        if tuple(array.shape) != wanted:
            problems.append(f"tensor {theirs} has shape {tuple(array.shape)}, expected {wanted}")
        state[ours] = array.T if t else array
    head = arrays.pop(HEAD, None)
    problems += [f"unexpected tensor {name}" for name in arrays]
    if not problems and head is not None and not np.array_equal(head, state["wte.weight"]):
        problems.append(f"{HEAD} differs from {PREFIX}wte.weight, but GPT-2 ties them")
    if problems:
        raise ValueError(f"{where} does not hold this GPT-2's weights: " + "; ".join(problems))
    state[HEAD] = state["wte.weight"]  # the tied head: one Parameter under two names
    return state


def load_gpt2(path, dtype="float32", *, rng=None, dropout=None):
    """The GPT held by the Hugging Face GPT-2 folder ``path``, in ``dtype``, in eval mode (as from_pretrained).

    rng seeds the dropout masks as ``GPT(config, rng)`` does (None: fresh entropy), so a fine-tune is
    reproducible; dropout None keeps the folder's (its largest pdrop), a float in [0, 1) replaces it.
    """
    hf, arrays = read_folder(path)
    cfg = config_from_hf(hf)
    if dropout is not None:
        cfg = dataclasses.replace(cfg, dropout=dropout)  # GPTConfig checks the range
    model = GPT(cfg, rng=rng).to(dtype)  # the random weights drawn here are all overwritten just below
    model.load_state_dict(minilm_state(arrays, model, Path(path)))
    return model.eval()


def save_gpt2(model, path, tokenizer=None, overwrite=False):
    """Write ``model`` (and a BPE ``tokenizer`` as vocab.json + merges.txt) as a Hugging Face GPT-2 folder that
    GPT2LMHeadModel.from_pretrained(path) opens. ``path``: as ``check_export_path`` allows.

    Atomic: the files go into a temp folder beside ``path``, renamed to ``path`` once complete; an earlier
    export is replaced whole by the checkpoint's swap (a kill mid-swap leaves it at <path>.previous).
    """
    files = {CONFIG: (json.dumps(hf_config(model), indent=2) + "\n").encode(),
             WEIGHTS: safetensors.numpy.save(hf_state(model), metadata={"format": "pt"})}
    extra = None if tokenizer is None else (
        lambda tmp: tokenizer.save_gpt2_files(tmp / "vocab.json", tmp / "merges.txt"))
    return write_export(path, files, overwrite, "Hugging Face GPT-2 folder", extra)


def gpt2_tokenizer(folder):
    """GPT-2's BPE tokenizer from the folder's vocab.json + merges.txt; None when the folder has neither."""
    vocab, merges = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
    if not vocab.is_file() and not merges.is_file():
        return None
    if not (vocab.is_file() and merges.is_file()):
        raise FileNotFoundError(f"{folder} has only one of vocab.json and merges.txt: the tokenizer needs both")
    return BPETokenizer.from_gpt2_files(vocab, merges)
