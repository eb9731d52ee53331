"""The attention explorer: one self-contained HTML page (script and data inline; no server, no network) in which
a student hovers or clicks a token to see where it attends and what attends to it.

    view = attention_view(model, tokenizer, "to be or not")   # a notebook shows it; view.save("a.html") writes it
    qk_view(q, k, tokens, mask=M, scale=1.0)                  # any q (H, T, hs) and k (H, S, hs), no model needed
    minilm attention --ckpt DIR --text "to be or not" --html a.html

the page: the queries down the left, the keys down the right, and from query i to key j a line whose opacity is
              A_ij = softmax_j(S_ij),   S = Q Kᵀ · scale + M   (scale = 1/√hs; M: 0, or -inf where masked)
          computed in the browser, in float64, from the model's own q and k (minilm.viz.attention_data). Toggled,
          the lines show the masked scores S_ij instead (opacity: the row's min to max, as the softmax ignores a
          row's offset); a masked key (the future, under a causal mask) is greyed and gets no line. Hover or
          click a query: its row, where it attends; a key: its column, what attends to it. A layer and a head
          to choose, and every head of the layer as a thumbnail (click one to pick it). Each drawn line carries
          data-query, data-key, data-weight and data-score, which tests/test_explorer.py reads back.
data:     q and k as base64 float32, 2·L·T·C numbers a stack, instead of A and S, 2·L·H·T·S, H·S/C times more:
          at 6 layers × 12 heads, C = 384 and 256 tokens, a 6.7 MB page instead of 50. Then the JSON, with "<",
          ">" and "&" escaped (\\u003c ...) so that a token "</script>" cannot end the data's script element early.
measured: headless chromium 156 (software raster) on 2 busy CPU cores, times as Playwright sees them (paint
          included): the trained course GPT on its whole context (64 tokens, 4 × 4 heads): a 0.4 MB page, ready in
          0.8 s, a click 0.13 s; 256 tokens through 6 layers × 12 heads (tests/test_explorer.py): 6.7 MB, ready in
          1.5 s, a click 0.3 s, another layer 0.2 s; the real all-MiniLM-L6-v2 on 511 word pieces (6 × 12 heads):
          12.6 MB, ready in 2.2 s, a click or hover 0.2-0.5 s, another head 0.4 s, another layer 0.4-0.9 s, the
          scores toggle 1.4 s. What kept it so: one layer's scores computed at a time (kept for the last six),
          thumbnails redrawn only for a new layer or mode, and the overview's lines capped by total length
          (stroking all 262,144 lines of 13 canvases took seconds to paint at 511 tokens).
ref:      Vig 2019, "A Multiscale Visualization of Attention in the Transformer Model" (bertviz's head and model
          views, the model of this page)
"""

import base64
import html
import json
from importlib import resources
from pathlib import Path

import numpy as np

from minilm.atomic import replace_file
from minilm.backend import to_numpy
from minilm.models import type_of_model
from minilm.viz.attention_data import Stack, attention_stacks, check_index
from minilm.viz.cross_attention import TARGET_SOURCE
from minilm.viz.plots import shown

TEMPLATE = "explorer.html"  # package data beside this module: the page's HTML, CSS and script
PLACEHOLDER = "__MINILM_DATA__"  # where the template takes the JSON
ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}  # JSON string escapes that HTML does not read as markup
ROW_PX, FRAME_PX, MAX_FRAME_PX = 18, 330, 820  # a notebook frame's height: rows of tokens plus the controls


def attention_view(model, tokenizer, text, layer=None, head=None, target=None, title=None):
    """The explorer of ``model`` (a GPT, BERT, Seq2Seq or tutorial Transformer) on ``text``, first showing
    ``layer`` (default the last) and ``head`` (default 0); a Seq2Seq opens on its cross-attention, ``target``
    being the translation (default: greedy). ValueErrors as minilm.viz.attention_data.attention_stacks."""
    stacks = attention_stacks(model, tokenizer, text, target)
    L, H = stacks[-1].q.shape[:2]
    title = title or f"{type_of_model(model)}, {L} layers × {H} heads, on {text[:60]!r}"
    return AttentionView(stacks, title, stack=len(stacks) - 1, layer=layer, head=head)


def qk_view(q, k, tokens, keys=None, mask=None, scale=None, title="attention", name="attention"):
    """The explorer of any queries and keys: q (T, hs), (H, T, hs) or (L, H, T, hs), k the same with S keys.

    tokens: the T query strings; keys: the S key strings (default: tokens, self-attention). mask: (T, S) additive
    (0 or -inf, as minilm.nn.masks.attention_mask builds it; leading axes of size 1 are dropped) or boolean
    (True = blocked). scale: the factor on q kᵀ, default 1/√hs (1.0 for notebook 4's projection-free attention).
    """
    q, k = (np.asarray(to_numpy(a), dtype=np.float32) for a in (q, k))
    if q.ndim != k.ndim or not 2 <= q.ndim <= 4 or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must be (T, hs), (H, T, hs) or (L, H, T, hs), alike but for T, got {q.shape} "
                         f"and {k.shape}")
    q, k = (a.reshape((1,) * (4 - a.ndim) + a.shape) for a in (q, k))  # (L, H, T, hs), (L, H, S, hs)
    keys = tokens if keys is None else keys
    T, S = q.shape[2], k.shape[2]
    if len(tokens) != T or len(keys) != S:
        raise ValueError(f"{len(tokens)} query and {len(keys)} key tokens given for {T} queries and {S} keys")
    if mask is not None:
        mask = np.asarray(to_numpy(mask))
        mask = mask.reshape(mask.shape[-2:]) if mask.ndim > 2 and mask.size == T * S else mask  # (T, S)
        if mask.shape != (T, S):
            raise ValueError(f"mask must be (T, S) = {(T, S)}, got {mask.shape}")
        mask = np.where(mask, -np.inf, 0.0) if mask.dtype == bool else mask  # (T, S) additive
        mask = mask.astype(np.float32)
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    stack = Stack(name, list(tokens), list(keys), q, k, mask, [float(scale)] * q.shape[0])
    return AttentionView([stack], title)


class AttentionView:
    """The page for some Stacks: ``html()`` its text, ``save(path)`` a file, and a notebook displays it."""

    def __init__(self, stacks, title, stack=0, layer=None, head=None):
        self.stacks, self.title = list(stacks), str(title)
        L, H = self.stacks[stack].q.shape[:2]
        layer = L - 1 if layer is None else layer
        head = 0 if head is None else head
        check_index("layer", layer, L)
        check_index("head", head, H)
        self.initial = {"stack": stack, "layer": int(layer), "head": int(head)}

    def html(self):
        """The whole page, one string: the template with the data in it."""
        data = json.dumps({"title": self.title, "initial": self.initial,
                           "stacks": [_stack_data(s) for s in self.stacks]}, ensure_ascii=False)
        for character, escape in ESCAPES.items():  # only inside JSON strings can these appear: escapes are valid
            data = data.replace(character, escape)
        template = resources.files("minilm.viz").joinpath(TEMPLATE).read_text(encoding="utf-8")
        return template.replace(PLACEHOLDER, data, 1)

    def save(self, path):
        """Write the page to ``path`` (.html or .htm) atomically: a failure leaves the old file whole."""
        return replace_file(check_html_path(path), self.html().encode("utf-8"))

    def _repr_html_(self):
        # an iframe of its own: every view in a notebook keeps its own ids, styles and script
        rows = max(max(len(s.queries), len(s.keys)) for s in self.stacks)
        height = min(MAX_FRAME_PX, FRAME_PX + ROW_PX * rows)
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" sandbox="allow-scripts" '
                f'style="width: 100%; height: {height}px; border: 1px solid #ddd" '
                f'title="attention explorer: {html.escape(self.title, quote=True)}"></iframe>')


def check_html_path(path):
    """``path`` as a Path, or an error naming what is wrong with it as a place for the page."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the explorer is written as HTML: the output file must end in .html, got {path}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")
    if path.is_dir():
        raise ValueError(f"output {path} is a folder, not an HTML file")
    return path


def _stack_data(stack):
    L, H, T, hs = stack.q.shape
    labels = TARGET_SOURCE if "cross" in stack.name else ("query (attending)", "key (attended to)")
    return {"name": stack.name, "labels": labels,
            "queries": [shown(t) for t in stack.queries], "keys": [shown(t) for t in stack.keys],
            "L": L, "H": H, "T": T, "S": stack.k.shape[2], "hs": hs, "scale": list(stack.scale),
            "q": _base64(stack.q), "k": _base64(stack.k), "mask": None if stack.mask is None else _base64(stack.mask)}


def _base64(a):
    """Little-endian float32 bytes as base64 (the page reads them as a Float32Array, little-endian everywhere)."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")
