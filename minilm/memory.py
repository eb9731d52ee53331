"""Will the model fit? Its parameter count from the config alone, checked against the device before allocating.

parameters: per block ln_1, ln_2 2C each; attention 4C² (+ 4C biases); MLP 8C² (+ 5C biases)
            whole: wte VC, wpe TC (learned positions), L blocks, ln_f 2C (pre-LN), lm_head VC unless tied
bytes:      16 per parameter to train: the float32 weight, its gradient and AdamW's two moments. Activations
            come on top, so passing this check is necessary, not sufficient; failing it means certain failure
            (a 1,000,000-channel model asks for ~22 TiB), reported with the figures instead of a MemoryError.
"""

from minilm.backend import backend_name, device_memory_bytes

BYTES_PER_PARAMETER = 16  # float32 weight, gradient and AdamW's two moments


def parameter_count(config):
    """The GPT's number of parameters, from its GPTConfig (equals GPT(config).num_params())."""
    C, V = config.n_embd, config.vocab_size
    block = 12 * C * C + 4 * C + (9 * C if config.bias else 0)
    return (V * C + (config.block_size * C if config.pos == "learned" else 0) + config.n_layer * block
            + (2 * C if config.norm == "pre" else 0) + (0 if config.tie_weights else V * C))


def check_memory(config):
    """ValueError, with the figures, when the weights, gradients and AdamW state alone exceed the device's memory."""
    n = parameter_count(config)
    need, have = BYTES_PER_PARAMETER * n, device_memory_bytes()
    if need > have:
        raise ValueError(f"the model would have {n:,} parameters: {readable_bytes(need)} for its float32 weights, "
                         f"gradients and AdamW state, more than the {readable_bytes(have)} of memory the "
                         f"{backend_name()} backend has (make --n-embd, --n-layer or --vocab-size smaller)")


def readable_bytes(n):
    """1536 -> '1.5 KiB'."""
    unit = max(u for u in range(5) if n >= 1024 ** u or u == 0)
    return f"{n / 1024 ** unit:.1f} {['B', 'KiB', 'MiB', 'GiB', 'TiB'][unit]}"
