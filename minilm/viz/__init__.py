"""Pictures: attention heatmaps, encodings, loss curves (plots.py), the README's figures (figures.py) and the attention
explorer, one self-contained HTML page to click through (explorer.py, its page explorer.html, its data from
attention_data.py). minilm.plots re-exports the names a notebook uses.

May import: everything below the command line (matplotlib only inside plots.py, when a figure is drawn).
"""
