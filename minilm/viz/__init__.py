"""Pictures: attention heatmaps, encodings, loss curves (plots.py) and the figures of the README (figures.py).

May import: everything below the command line (matplotlib only inside plots.py, when a figure is drawn).
"""
