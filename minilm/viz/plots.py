"""Figures for the course and the README: attention heatmaps, the positional encoding, loss curves, the check.

    weights = attention_weights(model, ids)            one (B, H, T, T) NumPy array per layer
    attention_heatmaps(weights[-1][0], tokens)         one panel per head: query rows, key columns
    attention_heatmaps(w, target, keys=source)         (H, T, S): a Seq2Seq's cross-attention (cross_attention.py)
    positional_encoding_heatmap(sinusoidal_table(64, 128))
    loss_curves(history, baseline=bigram_val_loss)     train and val loss against the step
    gradcheck_chart(rows)                              the rows of `minilm check --json`, on a log scale

Every function returns a ``matplotlib.figure.Figure`` built without pyplot's global list of figures: a
script or test that makes hundreds of them leaks nothing, and a notebook shows it, once, when it is the
cell's value (``display(fig)`` otherwise; pyplot's figures would also be shown a second time).
``save_figure`` writes a PNG atomically (a temp file beside it, then a rename).
matplotlib is imported inside the functions, so ``import minilm.viz.plots`` and the ``minilm`` command work
without it; drawing without it raises ImportError naming the extra to install.
The ``minilm attention`` command, which draws a checkpoint's heatmaps, lives in minilm.viz.figures.
"""

import contextlib
import importlib
import io
import math
import sys
from pathlib import Path

import numpy as np

from minilm.atomic import replace_file
from minilm.backend import asarray, to_numpy
from minilm.nn import inference
from minilm.nn.attention import MultiHeadAttention

DPI = 150  # pixels per inch of saved PNGs: sharp on a README, a few hundred kB per figure
SHOWN = {"\n": "⏎", " ": "␣", "\t": "⇥"}  # whitespace a tick label would otherwise show as nothing
# the notebooks extra of this checkout; "minilm[notebooks]" would ask the package index for whatever it calls minilm
INSTALL_MATPLOTLIB = 'pip install ".[notebooks]" in the minilm checkout'


def require_matplotlib():
    """Check matplotlib is there (ImportError naming the extra otherwise), and in a notebook make sure a
    returned Figure is shown as a picture: the inline backend registers that display only once loaded."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(f"matplotlib is needed for plots: {INSTALL_MATPLOTLIB}") from err
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None and "inline" in matplotlib.get_backend():
        importlib.import_module("matplotlib_inline.backend_inline")


def _new_figure(width, height):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def shown(token):
    """A token as a tick label: newline ⏎, space ␣, tab ⇥, so whitespace stays visible."""
    return "".join(SHOWN.get(ch, ch) for ch in token)


def token_strings(tokenizer, ids):
    """Each token of ids (T,) as its own text (a special token by name), to label a heatmap's axes."""
    return [tokenizer.decode(ids[t:t + 1]) for t in range(len(ids))]


@contextlib.contextmanager
def weights_kept(model):
    """Within: ``model`` in eval mode (no dropout) under inference(), every attention layer keeping its weights
    (``.attention_weights``) even where keep_attention_weights(model, False) told it not to. After: the mode and
    each layer's setting restored; the weights of the last forward stay on the layers to be read."""
    was_training = model.training
    layers = [m for _, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    settings = [(layer.keep_weights, layer.need_weights) for layer in layers]  # set per layer: restored below
    model.eval()
    try:
        for layer in layers:
            layer.keep_weights = layer.need_weights = True  # these weights are the point of the forward
        with inference():  # and nothing else: no backward follows
            yield model
    finally:
        model.train(was_training)
        for layer, (keep, need) in zip(layers, settings):
            layer.keep_weights, layer.need_weights = keep, need


def attention_weights(model, ids):
    """One NumPy array (B, H, T, T) per layer: the attention of a forward pass of ``model`` on ids (B, T) or (T,).

    Runs under weights_kept(model): eval mode, every layer keeping its weights, the settings restored after.
    Row t of a head's (T, T) matrix is how query t spreads its attention over the keys: it sums to 1 (0 past t
    under the causal mask).
    """
    ids = np.asarray(to_numpy(ids))
    if ids.ndim == 1:
        ids = ids[None, :]  # (1, T)
    with weights_kept(model):
        model(asarray(ids))
    return [to_numpy(block.attn.attention_weights) for block in model.h]  # L arrays (B, H, T, T)


def attention_heatmaps(weights, tokens, title=None, heads=None, keys=None,
                       axis_labels=("query (attending)", "key (attended to)")):
    """Figure with one heatmap per head: weights (H, T, T) or (T, T), rows the queries, columns the keys; with
    ``keys``, weights (H, T, S) or (T, S) whose columns are other tokens (a decoder's cross-attention: the source).

    tokens: the T query tokens as strings, labelling the rows, and the columns too unless ``keys`` (S strings)
    labels them. heads: the head number of each panel (default 0 … H-1). axis_labels: (rows, columns).
    One colour scale (0 to the largest weight) and one colour bar serve every panel.
    """
    w = np.asarray(to_numpy(weights), dtype=np.float64)
    if w.ndim == 2:
        w = w[None]  # (1, T, S)
    if keys is None and (w.ndim != 3 or w.shape[1] != w.shape[2]):
        raise ValueError(f"attention weights must have shape (H, T, T) or (T, T), got {np.shape(weights)}")
    if w.ndim != 3:
        raise ValueError(f"attention weights must have shape (H, T, S) or (T, S), got {np.shape(weights)}")
    keys = tokens if keys is None else keys
    H, T, S = w.shape
    if len(tokens) != T:
        raise ValueError(f"{len(tokens)} tokens given for attention over {T} positions")
    if len(keys) != S:
        raise ValueError(f"{len(keys)} key tokens given for attention over {S} key positions")
    heads = list(range(H)) if heads is None else list(heads)
    if len(heads) != H:
        raise ValueError(f"{len(heads)} head numbers given for {H} panels")
    ncols = H if H <= 3 else math.ceil(math.sqrt(H))
    nrows = math.ceil(H / ncols)

    def inches(n):  # of a panel's side holding n labels: room for them, capped for long texts
        return min(max(0.15 * n + 1.5, 3.5), 6.5)

    width, height = inches(S), inches(T)
    # square cells: a panel far longer one way (a long target, a short source) is cut to its cells the other way
    width, height = min(width, max(2.5, height * S / T + 1.0)), min(height, max(2.5, width * T / S + 1.0))
    # points: the labels must not overlap, along either axis
    fontsize = min(9.0, max(4.0, min(0.8 * (inches(n) - 1.0) * 72 / n for n in (T, S))))
    rows, columns = [shown(t) for t in tokens], [shown(k) for k in keys]
    longest = max(len(label) for label in columns)  # several characters (BPE tokens): written upwards
    upright = fontsize / 72 * 0.7 * longest if longest > 1 else 0.0  # inches the upward key labels take
    fig = _new_figure(ncols * width + 1.0, nrows * height + 0.5 + upright)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    from matplotlib import colormaps, colors  # after _new_figure, which names the extra when matplotlib is missing

    # a square-root colour scale: the first query can only attend to itself (weight 1), and on a linear
    # scale that one cell would leave every spread-out weight of 0.05 the colour of 0
    cmap = colormaps["Blues"].with_extremes(bad="0.85")  # grey: a weight of exactly 0, a masked (future) key
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=max(float(w.max()), 1e-12))
    for i, ax in enumerate(axes.flat):
        if i >= H:
            ax.set_visible(False)
            continue
        image = ax.imshow(np.ma.masked_equal(w[i], 0.0), cmap=cmap, norm=norm, interpolation="nearest")
        ax.set_title(f"head {heads[i]}", fontsize=11)
        ax.set_xticks(range(S), columns, fontsize=fontsize, rotation=90 if longest > 1 else 0)
        ax.set_yticks(range(T), rows, fontsize=fontsize)
        ax.tick_params(length=0)
        if i // ncols == nrows - 1 or i + ncols >= H:
            ax.set_xlabel(axis_labels[1])
            ax.tick_params(labelbottom=True)
        if i % ncols == 0:
            ax.set_ylabel(axis_labels[0])
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8,
                 label="attention weight\n(square-root scale; grey: masked)")
    # wrapped at the figure's edges: one narrow panel (a short source) is narrower than a long title
    fig.suptitle(title or f"attention weights, {H} head{'s' * (H > 1)}", fontsize=13, wrap=True)
    return fig


def positional_encoding_heatmap(pe, title=None):
    """Figure of a positional encoding pe (T, C): positions down, channels across, values in [-1, 1]."""
    pe = np.asarray(to_numpy(pe), dtype=np.float64)
    if pe.ndim != 2:
        raise ValueError(f"a positional encoding must have shape (T, C), got {pe.shape}")
    T, C = pe.shape
    fig = _new_figure(8.0, 5.0)
    ax = fig.subplots()
    image = ax.imshow(pe, cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xlabel("channel  (columns 2i and 2i+1 turn at ωᵢ = 1/10000^(2i/C) radians per position)")
    ax.set_ylabel("position")
    fig.colorbar(image, ax=ax, label="PE(position, channel)")
    ax.set_title(title or f"sinusoidal positional encoding: {T} positions × {C} channels")
    return fig


def loss_curves(history, baseline=None, title=None, baseline_label="bigram baseline"):
    """Figure of the train and val loss against the step; ``baseline`` (e.g. the bigram loss) a dashed line.

    history: a list of {"step", "train", "val"} dicts, as minilm.training.trainer.Trainer.train() returns
    (other keys are ignored, and a missing or None value leaves a gap).
    """
    if not history:
        raise ValueError("loss_curves needs a history with at least one entry")
    fig = _new_figure(8.0, 5.0)
    ax = fig.subplots()
    steps = [entry["step"] for entry in history]
    for key, colour in (("train", "tab:blue"), ("val", "tab:orange")):
        values = [np.nan if entry.get(key) is None else entry[key] for entry in history]
        if not all(np.isnan(values)):
            last = next(v for v in reversed(values) if not np.isnan(v))
            ax.plot(steps, values, "o-", color=colour, markersize=3, label=f"{key} (final {last:.3f})")
    if baseline is not None:
        ax.axhline(baseline, color="0.35", linestyle="--", linewidth=1.2, label=f"{baseline_label}: {baseline:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "training loss")
    return fig


def gradcheck_chart(rows, floor=1e-18):
    """Figure of `minilm check --json`'s rows (or its whole output): per item, the finite-difference error
    and the PyTorch error (dots) against their tolerances (bars), on a log scale. A failed item is in red;
    an error of exactly 0 (or under ``floor``) is drawn at ``floor`` as a ◁; a missing one is not drawn.
    """
    rows = rows["rows"] if isinstance(rows, dict) else list(rows)
    if not rows:
        raise ValueError("gradcheck_chart needs at least one row")
    n = len(rows)
    fig = _new_figure(9.0, 0.32 * n + 1.6)
    ax = fig.subplots()
    y = np.arange(n)[::-1]  # first row at the top
    # each check on its own line within the row, so a dot is never read against the other check's bar
    series = (("fd", "finite differences (float64)", "tab:blue", "o", 0.18),
              ("torch", f"PyTorch ({_torch_dtype(rows)})", "tab:orange", "s", -0.18))
    for key, label, colour, marker, offset in series:
        errors = [row.get(f"{key}_error") for row in rows]
        tols = [row.get(f"{key}_tol") for row in rows]
        drawn = [(yi + offset, e, t) for yi, e, t in zip(y, errors, tols) if e is not None]
        shown_at = [(yi, e) for yi, e, _ in drawn if e >= floor]
        ax.scatter([e for _, e in shown_at], [yi for yi, _ in shown_at], color=colour, marker=marker, s=30,
                   zorder=3, label=label)
        zeros = [yi for yi, e, _ in drawn if e < floor]
        if zeros:
            ax.scatter([floor] * len(zeros), zeros, color=colour, marker="<", s=30, zorder=3,
                       label=f"{label.split(' (')[0]}: 0 (drawn at the edge)")
        bars = [(yi, t) for yi, _, t in drawn if t is not None]
        ax.scatter([t for _, t in bars], [yi for yi, _ in bars], color=colour, marker="|", s=110, linewidths=2,
                   zorder=2, label=f"{label.split(' (')[0]} tolerance")
    ax.set_xscale("log")
    ax.set_xlim(floor / 3, 1.0)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks(y, [row.get("name", "?") for row in rows])
    for tick, row in zip(ax.get_yticklabels(), rows):
        tick.set_color("tab:red" if row.get("passed") is False else "black")
    ax.set_xlabel("max relative error (lower is better; a dot left of its bar passes)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.95)
    passed = sum(row.get("passed") is True for row in rows)
    ax.set_title(f"minilm check: every backward against\nfinite differences and PyTorch: {passed} of {n} items pass",
                 fontsize=11)
    return fig


def _torch_dtype(rows):
    name = rows[0].get("torch_tol_name") or ""
    return name.split("'")[1] if name.count("'") >= 2 else "same dtype"


def save_figure(fig, path):
    """Write ``fig`` as a PNG at ``path`` atomically (rendered in memory, written to a temp file beside it,
    fsynced, renamed over the old one): a failure leaves the old file whole. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG: the output file must end in .png, got {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder, not a PNG file")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    return replace_file(path, png.getvalue())  # atomic, and 0644 under the usual umask
