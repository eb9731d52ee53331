"""Pictures: attention heatmaps, encodings, loss curves (plots.py), the README's figures and `minilm attention`
(figures.py), a seq2seq's cross-attention (cross_attention.py) and the attention explorer, one self-contained HTML
page to click through (explorer.py, its page explorer.html, its data from attention_data.py). minilm.plots
re-exports the names a notebook uses.

May import: minilm.backend, minilm.atomic, minilm.nn, minilm.models, minilm.data, minilm.files, minilm.training
(matplotlib only inside plots.py, when a figure is drawn). The one exception: figures.py reaches
minilm.verify.check lazily (importlib), for the check-table figure gradcheck.png.
"""
