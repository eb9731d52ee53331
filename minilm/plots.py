"""minilm.plots: the course's pictures under one short name, for notebooks and scripts.

    from minilm.plots import attention_view, attention_heatmaps
    attention_view(model, tokenizer, "to be or not")      # the attention explorer (an HTML page; Jupyter shows it)
    attention_heatmaps(weights, tokens)                   # the static heatmaps, for print

Only re-exports: the figures live in minilm.viz.plots, the explorer in minilm.viz.explorer.
"""

from minilm.viz.explorer import AttentionView, attention_view, qk_view
from minilm.viz.plots import (attention_heatmaps, attention_weights, gradcheck_chart, loss_curves,
                              positional_encoding_heatmap, save_figure, shown, token_strings, weights_kept)

__all__ = ["AttentionView", "attention_view", "qk_view", "attention_heatmaps", "attention_weights", "gradcheck_chart",
           "loss_curves", "positional_encoding_heatmap", "save_figure", "shown", "token_strings", "weights_kept"]
