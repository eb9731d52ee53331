"""Will it fit? A training run's memory from its config alone, checked against the device before allocating.

parameters: GPT, per block ln_1, ln_2 2C each; attention 4C² (+ 4C biases); MLP 8C² (+ 5C biases)
            whole: wte VC, wpe TC (learned positions), L blocks, ln_f 2C (pre-LN), lm_head VC unless tied
            BERT (biases everywhere, MLP width F = d_ff or 4C), per block 4C² + 4C + 2FC + F + C + 4C
            whole: wte VC, wpe TC, wtt (type_vocab_size)·C, embedding LN 2C, L blocks; then the MLM head
            C² + C + 2C + V (its decoder is wte, only its bias is new), or a pooler C² + C (+ a classifier
            K·C + K)
            Seq2Seq (biases everywhere, F = dim_feedforward), per encoder block 4C² + 2FC + F + 9C, per decoder
            block 8C² + 2FC + F + 15C, the two final LayerNorms 4C; token tables VC (2VC when not shared),
            learned positions 2TC, the output's bias V (and its VC when not tied)
            LSTM/RNN language model (G = 4 or 1 gates, H hidden): VC + Σ_l G·H·(I_l + H + 2) + HV + V
            the tutorial's Transformer: VC + L·(4C² + 2FC + F + 9C) + CV + V
bytes:      16 per parameter to train: the float32 weight, its gradient and AdamW's two moments (and 4 more for
            each --threads replica beyond the first, which holds a gradient of its own); and for one
            batch at least its logits and their gradient, 2·B·T·V floats, and the (B, H, T, T) attention
            weights of every layer (of one layer at a time with --recompute-attention). The rest of the
            activations (~16·B·T·C floats a layer) come on top, so passing this check is necessary, not
            sufficient; failing it means certain failure (a 1,000,000-channel model asks for ~700 TiB),
            reported with the figures instead of a MemoryError or the kernel's OOM killer.
"""

from minilm.backend import backend_name, device_memory_bytes
from minilm.models import BERTConfig, LSTMConfig, Seq2SeqConfig, TutorialConfig

BYTES_PER_PARAMETER = 16  # float32 weight, gradient and AdamW's two moments
FLOAT = 4  # bytes of a float32


def parameter_count(config):
    """The model's number of parameters, from its GPTConfig or BERTConfig (equals the built model's num_params())."""
    if isinstance(config, LSTMConfig):  # an RNNConfig too
        C, V, H = config.n_embd, config.vocab_size, config.hidden_size
        G = 1 if type(config).__name__ == "RNNConfig" else 4  # gates: an RNN's one, an LSTM's i, f, g, o
        return V * C + sum(G * H * ((C if l == 0 else H) + H + 2) for l in range(config.n_layer)) + H * V + V
    if isinstance(config, TutorialConfig):
        C, V, F = config.n_embd, config.vocab_size, config.d_ff
        return V * C + config.n_layer * (4 * C * C + 2 * F * C + F + 9 * C) + C * V + V
    if isinstance(config, Seq2SeqConfig):
        C, V, F = config.d_model, config.vocab_size, config.dim_feedforward
        blocks = (config.num_encoder_layers * (4 * C * C + 2 * F * C + F + 9 * C)
                  + config.num_decoder_layers * (8 * C * C + 2 * F * C + F + 15 * C) + 4 * C)
        tables = V * C * (1 if config.share_embeddings else 2) + (2 * config.block_size * C if config.pos == "learned"
                                                                  else 0)
        return blocks + tables + V + (0 if config.tie_weights else V * C)
    C, V = config.n_embd, config.vocab_size
    if isinstance(config, BERTConfig):
        F, K = config.ff_width, config.num_labels
        block = 4 * C * C + 4 * C + 2 * F * C + F + C + 4 * C
        head = {"mlm": C * C + 3 * C + V, "none": C * C + C, "cls": C * C + C + K * C + K}[config.head]
        return V * C + config.block_size * C + config.type_vocab_size * C + 2 * C + config.n_layer * block + head
    block = 12 * C * C + 4 * C + (9 * C if config.bias else 0)
    return (V * C + (config.block_size * C if config.pos == "learned" else 0) + config.n_layer * block
            + (2 * C if config.norm == "pre" else 0) + (0 if config.tie_weights else V * C))


def batch_bytes(config, batch_size, block_size, keep_attention=True):
    """A lower bound on one training step's activations: logits and their gradient, and attention weights.
    (A BERT without the MLM head has (B, K) logits or none: a small term, left out.)"""
    B, T = batch_size, block_size
    if isinstance(config, LSTMConfig):  # no attention: the logits, and the per-step states (~B·T·H·8, left out)
        return FLOAT * 2 * B * T * config.vocab_size
    if isinstance(config, Seq2SeqConfig):  # sources and targets both T long: self-, causal and cross-attention
        layers = config.num_encoder_layers + 2 * config.num_decoder_layers
        return FLOAT * (2 * B * T * config.vocab_size + (layers if keep_attention else 1) * B * config.nhead * T * T)
    H = config.n_head
    layers_kept = config.n_layer if keep_attention else 1
    per_position = 0 if getattr(config, "head", "mlm") != "mlm" else config.vocab_size  # logits per position
    return FLOAT * (2 * B * T * per_position + layers_kept * B * H * T * T)


def check_memory(config, batch_size=1, block_size=None, keep_attention=True, threads=1):
    """ValueError, with the figures, when the parameters' training state and one batch's logits and attention
    weights alone exceed the memory of the active backend's device (``threads``: replicas, minilm.training.threads)."""
    n, have = parameter_count(config), device_memory_bytes()
    weights = (BYTES_PER_PARAMETER + FLOAT * (threads - 1)) * n  # the batch is split between replicas, not repeated
    gradients = "gradients" if threads == 1 else f"gradients ({threads}: one per --threads replica)"
    batch = batch_bytes(config, batch_size, block_size or config.block_size, keep_attention)
    if weights + batch > have:
        raise ValueError(f"training would need more than the {readable_bytes(have)} of memory the {backend_name()} "
                         f"backend has: {readable_bytes(weights)} for the float32 weights, {gradients} and AdamW "
                         f"state of {n:,} parameters, and at least {readable_bytes(batch)} for one batch's logits "
                         f"and attention weights (make --n-embd, --n-layer, --vocab-size, --batch-size or "
                         f"--block-size smaller)")


def readable_bytes(n):
    """1536 -> '1.5 KiB'."""
    unit = max(u for u in range(5) if n >= 1024 ** u or u == 0)
    return f"{n / 1024 ** unit:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][unit]}"
