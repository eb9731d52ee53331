"""The attention explorer (minilm.viz.explorer, `minilm attention --html`): one self-contained page whose lines
carry the model's own weights and masked scores, checked in a real browser, plus its data and errors without one.

The browser: Debian's chromium, headless, driven by Playwright for Python (`playwright` on PyPI, in the test
extra). Why Playwright: it is maintained by Microsoft with a release every month or so, and its wheel carries its
own driver, so nothing is fetched at run time: it launches the system's chromium through ``executable_path``
(never `playwright install`, which downloads browsers). Its waits (wait_for_selector), its clicks with real mouse
events, page.route (here: refuse any request but the file itself) and screenshots keep each check a few lines.
The alternatives cost more code or more parts: raw DevTools over a websocket is a protocol client to maintain, and
Selenium needs a chromedriver of the browser's exact version. Where no chromium is installed the browser tests
skip, saying so; .ci/run installs it, so CI runs them. MINILM_CHROMIUM names another binary.

Each browser check reads the drawn lines back from the DOM (data-query, data-key, data-weight, data-score) and
compares them with what the model computed: the weights each layer kept (minilm.viz.plots.attention_weights,
cross_attention_weights) and the scores Q Kᵀ / √hs (minilm.viz.attention_data).

Responsiveness (test_a_full_context_stays_responsive, 2 busy CPU cores, chromium 156): a GPT with GPT-2 small's
number of heads, 6 layers × 12 heads of hs 32, on its whole 256-token context: a 6.7 MB page, ready (decoded, a
layer's 12 heads computed and drawn) in about 1.5 s; a click on a query 0.3 s; another layer 0.2 s. The bounds it
asserts are loose (a page that hangs fails, a slow second does not); minilm/viz/explorer.py has the other sizes.
"""

import dataclasses
import html
import io
import json
import os
import re
import shutil
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import minilm
from minilm import cli, plots as plots_alias
from minilm.backend import asarray, to_numpy
from minilm.data import CharTokenizer, WordPieceTokenizer
from minilm.data.pairs import Pairs, pairs_tokenizer
from minilm.files.checkpoint import save_checkpoint
from minilm.models import (BERT, GPT, BERTConfig, GPTConfig, Seq2Seq, Seq2SeqConfig, TutorialConfig,
                           TutorialTransformer)
from minilm.nn.softmax import softmax
from minilm.verify.tolerances import TORCH
from minilm.viz import explorer, plots
from minilm.viz.attention_data import attention_stacks
from minilm.viz.cross_attention import cross_attention_weights, source_and_target
from minilm.viz.plots import weights_kept

CORPUS = "to be, or not to be: that is the question</script>&\n"
LINE = "to be, or not"  # 13 characters
# every size different: block 24, L = 3 layers, H = 2 heads, C = 10, hs = 5 (V = the corpus's 22 characters)
GPT_SIZES = dict(block_size=24, n_layer=3, n_head=2, n_embd=10)
WORDS = "the king is dead long live the king to be or not to be that is the question "
SENTENCE = "to be or not to be"
PAIRS = Pairs("tiny", ["one", "two", "three", "forty-two"], ["1", "2", "3", "42"])
# DOM against the model: weights the browser computes in float64 from float32 q and k, against the float32
# forward's own: the difference is that of a float32 model summing in another order
TOL = {key: TORCH["float32_model"][key] for key in ("rtol", "atol")}
LINES = ("els => els.map(e => ({query: +e.dataset.query, key: +e.dataset.key, w: +e.dataset.weight, "
         "s: +e.dataset.score}))")
INDICES = "els => els.map(e => +e.dataset.index)"


def sharpen(model, rng=1, std=0.6):
    """Attention weights of N(0, std²): GPT-2's N(0, 0.02²) leaves every head uniform and every score near 0."""
    rng = np.random.default_rng(rng)
    for _, module in model.named_modules():
        if hasattr(module, "in_proj_weight"):
            module.in_proj_weight.data = rng.normal(0, std, module.in_proj_weight.shape).astype(np.float32)
    return model


def save(path, model, tokenizer, model_type):
    save_checkpoint(path, model.state_dict(), {"model_type": model_type, "model": dataclasses.asdict(model.config),
                                               "train": {}}, tokenizer=tokenizer.to_dict())
    return path


def tiny_gpt(path, **sizes):
    tokenizer = CharTokenizer.from_text(CORPUS)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **{**GPT_SIZES, **sizes}), rng=0)
    return save(path, sharpen(model), tokenizer, "gpt")


def tiny_bert(path):
    tokenizer = WordPieceTokenizer.train(WORDS * 3, vocab_size=60)  # "to be or not to be": 7 pieces
    config = BERTConfig(vocab_size=tokenizer.vocab_size, block_size=14, n_layer=2, n_head=3, n_embd=12, head="mlm")
    return save(path, sharpen(BERT(config, rng=0)), tokenizer, "bert")


def tiny_seq2seq(path):
    tokenizer = pairs_tokenizer(PAIRS)
    config = Seq2SeqConfig(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id, block_size=14, d_model=10,
                           nhead=2, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=24, dropout=0.2)
    return save(path, sharpen(Seq2Seq(config, rng=3)), tokenizer, "seq2seq")


def tiny_tutorial(path):
    tokenizer = CharTokenizer.from_text(CORPUS)
    config = TutorialConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_embd=10, n_head=2, n_layer=3, d_ff=16)
    return save(path, sharpen(TutorialTransformer(config, rng=0)), tokenizer, "tutorial")


MAKERS = {"gpt": (tiny_gpt, LINE), "bert": (tiny_bert, SENTENCE), "seq2seq": (tiny_seq2seq, "forty-two"),
          "tutorial": (tiny_tutorial, LINE)}


def write_html(ckpt, text, out, *extra):
    assert cli.main(["attention", "--ckpt", str(ckpt), "--text", text, "--html", str(out), *extra]) == 0
    return out


# --- without a browser -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_the_softmax_of_the_scores_is_each_layers_own_weights(tmp_path, kind):
    make, text = MAKERS[kind]
    model, tokenizer = minilm.load(make(tmp_path / kind))
    model.train()  # dropout on: the stacks must come from eval mode, and the mode must come back
    stacks = attention_stacks(model, tokenizer, text)
    assert model.training
    if kind == "seq2seq":
        decoder = model.transformer.decoder
        layers = [[b.attn for b in model.transformer.encoder], [b.attn for b in decoder],
                  [b.crossattention for b in decoder]]
        assert [s.name for s in stacks] == ["encoder self-attention", "decoder self-attention", "cross-attention"]
        inputs, causal = source_and_target(model, tokenizer, text), [False, True, False]
    else:
        ids = tokenizer.encode_pair(text)[0] if kind == "bert" else tokenizer.encode(text)  # (T,)
        blocks = model.layers if kind == "tutorial" else model.h
        layers, inputs, causal = [[b.attn for b in blocks]], (ids,), [kind != "bert"]
    with weights_kept(model):  # the layers' own weights, on the same text, kept as the heatmaps keep them
        model(*(asarray(a[None, :]) for a in inputs))
    for stack, attention, is_causal in zip(stacks, layers, causal):
        kept = np.stack([to_numpy(layer.attention_weights)[0] for layer in attention])  # (L, H, T, S)
        ours = softmax(stack.scores())  # (L, H, T, S)
        np.testing.assert_allclose(ours, kept, rtol=TORCH["float32"]["rtol"], atol=TORCH["float32"]["atol"])
        T, S = kept.shape[2:]
        if is_causal:
            assert np.array_equal(np.isneginf(stack.mask), np.triu(np.ones((T, S), dtype=bool), k=1))
        else:
            assert stack.mask is None  # one text: no padding, nothing hidden
        assert all("forward" not in vars(layer) for layer in attention)  # each layer as it was
    if kind == "bert":  # [CLS] text [SEP], as BERT reads one sentence
        assert stacks[0].queries[0] == "[CLS]" and stacks[0].queries[-1] == "[SEP]"


def test_the_explorer_forward_keeps_no_backward_cache(tmp_path):
    model, tokenizer = minilm.load(tiny_gpt(tmp_path / "gpt"))
    attention_stacks(model, tokenizer, LINE)  # under inference(): each layer hands over q and k, keeps nothing
    for _, module in model.named_modules():
        assert not any(name in vars(module) for name in type(module).kept), module
    with pytest.raises(RuntimeError, match="did not keep"):
        model.backward(np.zeros((1, len(LINE), tokenizer.vocab_size), dtype=np.float32))


def test_the_page_is_one_file_needing_nothing_from_the_network(tmp_path):
    page = write_html(tiny_gpt(tmp_path / "gpt"), LINE, tmp_path / "a.html").read_text(encoding="utf-8")
    assert not re.search(r"""\b(src|href|action|srcset)\s*=""", page, re.IGNORECASE)  # nothing loaded by address
    assert not re.search(r"@import|url\(|<link|<iframe|fetch\(|XMLHttpRequest|import\(", page)
    # the one address is the SVG namespace, a name that is never fetched
    assert set(re.findall(r"https?://[^\s\"'<>)]*", page)) == {"http://www.w3.org/2000/svg"}
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data, then the code


def test_a_text_holding_a_closing_script_tag_stays_data(tmp_path):
    model, tokenizer = minilm.load(tiny_gpt(tmp_path / "gpt"))
    text = "to </script>&<b"
    page = explorer.attention_view(model, tokenizer, text).html()
    assert page.count("</script>") == 2 and page.count("<script") == 2  # the text's own tag is escaped
    data = re.search(r'<script id="minilm-data" type="application/json">(.*?)</script>', page, re.DOTALL).group(1)
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data)["stacks"][0]["queries"] == [plots.shown(ch) for ch in text]


@pytest.mark.parametrize("extra, message", [
    (["--text", "to be, or not to be: that"], "the text is 25 tokens long, longer than the model's block_size 24"),
    (["--text", "to Zed"], "character 'Z' (U+005A) at position 3 is not in the vocabulary of 22 characters"),
    (["--layer", "3"], "layer 3 out of range: the model has 3 layers, numbered 0 to 2"),
    (["--head", "-1"], "head -1 out of range: the model has 2 heads, numbered 0 to 1"),
    (["--text", ""], "--text is empty: give at least one character"),
    (["--html", "a.txt"], "the explorer is written as HTML: the output file must end in .html, got a.txt"),
])
def test_minilm_attention_html_names_what_is_wrong_in_one_line(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    ckpt = tiny_gpt(tmp_path / "gpt")
    code = cli.main(["attention", "--ckpt", str(ckpt), "--text", "to be", "--html", "a.html", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err == f"minilm attention: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt"]  # nothing written


def test_text_outside_the_vocabulary_is_refused_as_minilm_sample_refuses_it(tmp_path, capsys):
    ckpt = str(tiny_gpt(tmp_path / "gpt"))
    assert cli.main(["sample", "--ckpt", ckpt, "--prompt", "to Zed", "--max-new-tokens", "1"]) == 2
    sample = capsys.readouterr().err.removeprefix("minilm sample: error: ")
    assert cli.main(["attention", "--ckpt", ckpt, "--text", "to Zed", "--html", str(tmp_path / "a.html")]) == 2
    assert capsys.readouterr().err.removeprefix("minilm attention: error: ") == sample


def test_what_cannot_be_drawn_is_named(tmp_path, capsys):
    bert = str(tiny_bert(tmp_path / "bert"))
    assert cli.main(["attention", "--ckpt", bert, "--text", "to be"]) == 2
    assert capsys.readouterr().err == ("minilm attention: error: nothing to write: give --out FILE.png, "
                                       "--html FILE.html or both\n")
    assert cli.main(["attention", "--ckpt", bert, "--text", "to be", "--out", str(tmp_path / "a.png")]) == 2
    assert "minilm attention --out needs a model of type gpt or seq2seq" in capsys.readouterr().err
    model, tokenizer = minilm.load(bert)
    with pytest.raises(ValueError, match=r"the text is 16 tokens long with its \[CLS\] and \[SEP\], longer than "
                                         r"the model's block_size 14"):
        explorer.attention_view(model, tokenizer, "to be " * 7)
    with pytest.raises(ValueError, match="head 3 out of range: the model has 3 heads"):
        explorer.attention_view(model, tokenizer, "to be", head=3)
    with pytest.raises(ValueError, match="the text is empty"):
        explorer.attention_view(model, tokenizer, "")


def test_minilm_attention_writes_the_png_and_the_page_together(tmp_path, capsys):
    png, page = tmp_path / "a.png", tmp_path / "a.html"
    ckpt = tiny_gpt(tmp_path / "gpt")
    assert cli.main(["attention", "--ckpt", str(ckpt), "--text", LINE, "--out", str(png), "--html", str(page)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(png), str(page)]
    assert imread(png).shape[1] > 0 and page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_notebook_shows_each_view_in_a_frame_of_its_own(tmp_path):
    model, tokenizer = minilm.load(tiny_gpt(tmp_path / "gpt"))
    assert plots_alias.attention_view is explorer.attention_view  # minilm.plots.attention_view, the name
    one, two = (explorer.attention_view(model, tokenizer, text) for text in ("to be", "or not"))
    frame = one._repr_html_()
    found = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts" style="[^"]*" title="[^"]*"></iframe>',
                         frame)
    assert found and html.unescape(found.group(1)) == one.html()  # ids, styles and script kept apart per view
    assert two._repr_html_() != frame
    assert one.save(tmp_path / "one.html").read_text(encoding="utf-8") == one.html()


def test_any_queries_and_keys_can_be_explored():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 3))  # (H, T, hs), (H, S, hs)
    view = explorer.qk_view(q, k, list("abcde"), keys=list("wxyz"), mask=np.eye(5, 4, dtype=bool), scale=1.0)
    (stack,) = view.stacks
    expected = np.where(np.eye(5, 4, dtype=bool), -np.inf, np.einsum("htd,hsd->hts", q, k))  # (H, T, S)
    np.testing.assert_allclose(stack.scores()[0], expected, rtol=TORCH["float32"]["rtol"])
    with pytest.raises(ValueError, match="q and k must be"):
        explorer.qk_view(q, k[:1], list("abcde"))
    with pytest.raises(ValueError, match="4 query and 4 key tokens given for 5 queries and 4 keys"):
        explorer.qk_view(q, k, list("abcd"), keys=list("wxyz"))
    with pytest.raises(ValueError, match=r"mask must be \(T, S\) = \(5, 4\)"):
        explorer.qk_view(q, k, list("abcde"), keys=list("wxyz"), mask=np.zeros((4, 4)))


def test_the_page_template_ships_in_the_wheel():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert explorer.TEMPLATE in pyproject["tool"]["setuptools"]["package-data"]["minilm.viz"]
    assert explorer.PLACEHOLDER in (Path(explorer.__file__).parent / explorer.TEMPLATE).read_text()


# --- in the browser ----------------------------------------------------------------------------------------

def chromium():
    """The chromium binary to drive: MINILM_CHROMIUM, else the first of the usual names on PATH; None if none."""
    named = os.environ.get("MINILM_CHROMIUM")
    if named:
        return named
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        pytest.skip("needs chromium for the browser checks: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright  # the test extra's; a missing one fails here, by name

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path)  # headless; never downloads a browser
        yield launched
        launched.close()


class Page:
    """A page of the explorer open in the browser; any request but the file itself is refused and recorded."""

    def __init__(self, browser, path):
        self.requests, self.errors = [], []
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        url = Path(path).resolve().as_uri()

        def route(request):
            if request.request.url != url:
                self.requests.append(request.request.url)
                return request.abort()
            return request.continue_()

        self.page.route("**/*", route)
        started = time.perf_counter()
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        self.load_s = time.perf_counter() - started

    def lines(self):
        return self.page.eval_on_selector_all("#lines line", LINES)

    def indices(self, selector):
        return self.page.eval_on_selector_all(selector, INDICES)

    def state(self):
        return self.page.eval_on_selector("#main", "e => ({...e.dataset})")

    def shot(self, path):
        png = self.page.screenshot(path=path)
        return imread(io.BytesIO(png))

    def close(self):
        assert self.errors == [] and self.requests == []
        self.page.close()


def row(drawn, what="w"):
    return np.array([line[what] for line in drawn])


def test_gpt_a_click_draws_the_querys_row_of_weights_none_to_the_future(browser, tmp_path):
    ckpt = tiny_gpt(tmp_path / "gpt")
    page = Page(browser, write_html(ckpt, LINE, tmp_path / "gpt.html"))
    model, tokenizer = minilm.load(ckpt)
    weights = plots.attention_weights(model, tokenizer.encode(LINE))  # L arrays (1, H, T, T)
    T = len(LINE)
    assert page.state() == {"stack": "0", "layer": "2", "head": "0", "mode": "weights", "selected": ""}
    assert page.lines() == []  # nothing selected: every line is on the canvas, none in the DOM
    before = page.shot(tmp_path / "before.png")
    for query in (4, 9):
        page.page.click(f"#queries .tok[data-index='{query}']")
        drawn = page.lines()
        assert [line["query"] for line in drawn] == [query] * (query + 1)
        assert [line["key"] for line in drawn] == list(range(query + 1))  # the causal mask: no line to the future
        np.testing.assert_allclose(row(drawn), weights[2][0, 0, query, :query + 1], **TOL)
        assert page.indices("#keys .tok.masked") == list(range(query + 1, T))  # greyed
    after = page.shot(tmp_path / "after.png")
    assert before.shape == after.shape and np.abs(before - after).max(axis=-1).astype(bool).sum() > 1000
    page.page.click("#queries .tok[data-index='9']")  # a second click lets go; the mouse still shows it
    assert page.indices(".tok.pinned") == [] and page.state()["selected"] == "q9"
    page.page.mouse.move(1100, 10)  # away from the tokens
    assert page.lines() == [] and page.state()["selected"] == ""
    page.page.hover("#keys .tok[data-index='2']")  # hovering alone shows a key's column
    assert [line["query"] for line in page.lines()] == list(range(2, T))
    page.close()


def test_gpt_scores_heads_layers_and_columns(browser, tmp_path):
    ckpt = tiny_gpt(tmp_path / "gpt")
    page = Page(browser, write_html(ckpt, LINE, tmp_path / "gpt.html", "--layer", "1", "--head", "1"))
    model, tokenizer = minilm.load(ckpt)
    weights = plots.attention_weights(model, tokenizer.encode(LINE))  # L arrays (1, H, T, T)
    scores = attention_stacks(model, tokenizer, LINE)[0].scores()  # (L, H, T, T)
    assert (page.state()["layer"], page.state()["head"]) == ("1", "1")
    page.page.click("#queries .tok[data-index='7']")
    np.testing.assert_allclose(row(page.lines()), weights[1][0, 1, 7, :8], **TOL)
    page.page.check("input[name=mode][value=scores]")  # the masked scores S = Q Kᵀ / √hs + M
    drawn = page.lines()
    assert page.state()["mode"] == "scores" and len(drawn) == 8
    np.testing.assert_allclose(row(drawn, "s"), scores[1, 1, 7, :8], **TOL)
    masked = page.page.eval_on_selector_all("#keys .tok.masked .val", "els => els.map(e => e.textContent)")
    assert masked == ["−∞"] * (len(LINE) - 8)
    page.page.check("input[name=mode][value=weights]")
    page.page.select_option("#head", "0")
    np.testing.assert_allclose(row(page.lines()), weights[1][0, 0, 7, :8], **TOL)
    page.page.select_option("#layer", "0")
    np.testing.assert_allclose(row(page.lines()), weights[0][0, 0, 7, :8], **TOL)
    page.page.click(".thumb[data-head='1']")  # the head's thumbnail picks it
    assert page.state()["head"] == "1" and page.page.input_value("#head") == "1"
    assert page.page.eval_on_selector(".thumb.current", "e => e.dataset.head") == "1"
    np.testing.assert_allclose(row(page.lines()), weights[0][0, 1, 7, :8], **TOL)
    page.page.click("#keys .tok[data-index='3']")  # a key: its column, from the queries that may see it
    drawn = page.lines()
    assert [line["query"] for line in drawn] == list(range(3, len(LINE))) and {line["key"] for line in drawn} == {3}
    np.testing.assert_allclose(row(drawn), weights[0][0, 1, 3:, 3], **TOL)
    assert page.indices("#queries .tok.masked") == [0, 1, 2]
    page.close()


def test_bert_sees_both_ways_over_cls_text_sep(browser, tmp_path):
    ckpt = tiny_bert(tmp_path / "bert")
    page = Page(browser, write_html(ckpt, SENTENCE, tmp_path / "bert.html", "--layer", "0", "--head", "2"))
    model, tokenizer = minilm.load(ckpt)
    ids, _ = tokenizer.encode_pair(SENTENCE)  # (T,) [CLS] ... [SEP]
    weights = plots.attention_weights(model, ids)  # L arrays (1, H, T, T)
    texts = page.page.eval_on_selector_all("#keys .tok .txt", "els => els.map(e => e.textContent)")
    assert texts[0] == "[CLS]" and texts[-1] == "[SEP]" and len(texts) == len(ids)
    page.page.click("#queries .tok[data-index='2']")
    drawn = page.lines()
    assert [line["key"] for line in drawn] == list(range(len(ids)))  # every key, those after the query too
    np.testing.assert_allclose(row(drawn), weights[0][0, 2, 2], **TOL)
    assert page.indices("#keys .tok.masked") == []
    page.close()


def test_seq2seq_opens_on_cross_attention_and_shows_each_stack(browser, tmp_path):
    ckpt = tiny_seq2seq(tmp_path / "seq2seq")
    page = Page(browser, write_html(ckpt, "forty-two", tmp_path / "s.html"))
    model, tokenizer = minilm.load(ckpt)
    cross, source, target = cross_attention_weights(model, tokenizer, "forty-two")  # (L, H, T, S)
    assert page.state()["stack"] == "2" and page.page.input_value("#stack") == "2"
    page.page.click("#queries .tok[data-index='0']")  # [BOS]
    drawn = page.lines()
    assert [line["key"] for line in drawn] == list(range(len(source)))
    np.testing.assert_allclose(row(drawn), cross[2, 0, 0], **TOL)
    heads = page.page.eval_on_selector_all("#main .colhead", "els => els.map(e => e.textContent)")
    assert heads == ["target (query)", "source (key)"]
    page.page.select_option("#stack", "1")  # the decoder's self-attention: causal through its attn_mask
    page.page.click(f"#queries .tok[data-index='{len(target) - 1}']")
    assert [line["key"] for line in page.lines()] == list(range(len(target)))
    page.page.click("#queries .tok[data-index='0']")
    assert [line["key"] for line in page.lines()] == [0]
    page.page.select_option("#stack", "0")  # the encoder's: every source position both ways
    page.page.click("#queries .tok[data-index='0']")
    assert [line["key"] for line in page.lines()] == list(range(len(source)))
    page.close()


def test_a_full_context_stays_responsive(browser, tmp_path):
    # GPT-2 small's heads (12 of hs = 32 here, 64 there) over 6 layers, the whole 256-token context
    ckpt = tiny_gpt(tmp_path / "gpt", block_size=256, n_layer=6, n_head=12, n_embd=384)
    text = (CORPUS * 6)[:256]
    out = write_html(ckpt, text, tmp_path / "long.html")
    page = Page(browser, out)
    started = time.perf_counter()
    page.page.click("#queries .tok[data-index='255']")
    click_s = time.perf_counter() - started
    assert len(page.lines()) == 256
    started = time.perf_counter()
    page.page.select_option("#layer", "0")
    layer_s = time.perf_counter() - started
    assert len(page.lines()) == 256 and page.state()["layer"] == "0"
    page.shot(tmp_path / "long.png")
    print(f"\n256 tokens, 6 layers × 12 heads: page {out.stat().st_size / 1e6:.1f} MB, ready in {page.load_s:.2f} s, "
          f"click {click_s:.2f} s, another layer {layer_s:.2f} s")
    # generous bounds for a busy 2-core CI: what they catch is a page that hangs, not a slow second
    assert page.load_s < 60 and click_s < 10 and layer_s < 10
    page.close()
