import argparse
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import matplotlib

matplotlib.use("Agg")
from matplotlib.image import imread  # noqa: E402

from minilm import cli  # noqa: E402
from minilm.viz import figures, plots  # noqa: E402
from minilm.files.checkpoint import save_checkpoint  # noqa: E402
from minilm.data import CharTokenizer  # noqa: E402
from minilm.models import GPT, GPTConfig  # noqa: E402
from minilm.nn.attention import keep_attention_weights  # noqa: E402
from minilm.verify.tolerances import TORCH  # noqa: E402

TEXT = "to be, or not\nto be"
# every size different: V (the 9 characters of TEXT), block, L, H, C
TINY = GPTConfig(vocab_size=9, block_size=12, n_layer=3, n_head=2, n_embd=10)


def save_tiny(path, config=TINY):
    model = GPT(config, rng=0)
    save_checkpoint(path, model.state_dict(), {"model": dataclasses.asdict(config), "train": {}},
                    tokenizer=CharTokenizer.from_text(TEXT).to_dict())
    return path


def run_attention(argv):
    parser = argparse.ArgumentParser()
    figures.add_attention_arguments(parser)
    return figures.run_attention(parser.parse_args(argv))


def panels(fig):
    """The visible heatmap panels of a figure (the colour bar is an axes too, but holds no image)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.images and ax.get_label() != "<colorbar>"]


def pixels(fig):
    width, height = fig.get_size_inches() * plots.DPI
    return round(height), round(width)


def test_attention_weights_are_causal_rows_summing_to_one_and_restore_the_mode():
    model = GPT(TINY, rng=1)
    model.train()
    weights = plots.attention_weights(model, np.array([1, 4, 2, 0, 8, 3, 5]))
    assert model.training
    assert [w.shape for w in weights] == [(1, 2, 7, 7)] * 3 and all(isinstance(w, np.ndarray) for w in weights)
    for w in weights:
        np.testing.assert_allclose(w.sum(axis=-1), 1.0, rtol=TORCH["float32"]["rtol"])  # a float32 model
        assert np.all(np.triu(w, k=1) == 0)  # no query sees a later key
    batch = plots.attention_weights(model.eval(), np.array([[1, 4, 2], [0, 8, 3]]))
    assert batch[0].shape == (2, 2, 3, 3) and not model.training


def test_attention_weights_are_there_when_the_layers_recompute_them_and_each_setting_comes_back():
    model = GPT(TINY, rng=1)
    ids = np.array([1, 4, 2, 0, 8])
    expected = plots.attention_weights(model, ids)
    keep_attention_weights(model, False)  # the memory switch: backward recomputes A, forward keeps none
    model.h[1].attn.keep_weights = True  # one layer set apart, so each layer must get its own setting back
    got = plots.attention_weights(model, ids)
    for layer, (w, e) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(w, e, err_msg=f"layer {layer}")  # the same forward, the same weights
    assert [block.attn.keep_weights for block in model.h] == [False, True, False]


@pytest.mark.parametrize("H, grid", [(1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3))])
def test_attention_heatmaps_draw_one_panel_per_head_and_one_colour_bar(H, grid):
    T = 6
    tokens = list("a b\nc!")
    w = np.random.default_rng(0).dirichlet(np.ones(T), size=(H, T))  # (H, T, T)
    fig = plots.attention_heatmaps(w if H > 1 else w[0], tokens, title="my title")
    shown = panels(fig)
    assert len(shown) == H
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 1
    assert len(fig.axes) == grid[0] * grid[1] + 1  # the empty grid cells are hidden, not drawn
    assert fig._suptitle.get_text() == "my title"
    assert [ax.get_title() for ax in shown] == [f"head {h}" for h in range(H)]
    labels = [t.get_text() for t in shown[0].get_yticklabels()]
    assert labels == ["a", "␣", "b", "⏎", "c", "!"]  # whitespace made visible
    assert [t.get_text() for t in shown[-1].get_xticklabels()] == labels
    assert any(ax.get_xlabel().startswith("key") for ax in shown)
    assert any(ax.get_ylabel().startswith("query") for ax in shown)


def test_attention_heatmaps_name_the_heads_given_and_refuse_bad_shapes():
    w = np.full((3, 3), 1 / 3)
    fig = plots.attention_heatmaps(w, list("abc"), heads=[5])
    assert panels(fig)[0].get_title() == "head 5"
    with pytest.raises(ValueError, match=r"4 tokens given for attention over 3 positions"):
        plots.attention_heatmaps(w, list("abcd"))
    with pytest.raises(ValueError, match=r"shape \(H, T, T\) or \(T, T\), got \(1, 2, 3, 3\)"):
        plots.attention_heatmaps(np.zeros((1, 2, 3, 3)), list("abc"))
    with pytest.raises(ValueError, match="2 head numbers given for 1 panels"):
        plots.attention_heatmaps(w, list("abc"), heads=[0, 1])


def test_attention_heatmaps_write_several_character_tokens_upwards():
    fig = plots.attention_heatmaps(np.full((3, 3), 1 / 3), ["The", " king", "\n"])
    (ax,) = panels(fig)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["The", "␣king", "⏎"]
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {90.0}
    (single,) = panels(plots.attention_heatmaps(np.eye(2), ["a", "b"]))
    assert {t.get_rotation() for t in single.get_xticklabels()} == {0.0}


def test_positional_encoding_heatmap_has_labelled_axes_and_a_colour_bar():
    from minilm.nn.positional import sinusoidal_table

    fig = plots.positional_encoding_heatmap(sinusoidal_table(20, 16))
    ax, bar = fig.axes
    assert ax.get_xlabel().startswith("channel") and ax.get_ylabel() == "position"
    assert bar.get_label() == "<colorbar>" and "PE" in bar.get_ylabel()
    assert "20 positions × 16 channels" in ax.get_title()
    assert ax.images[0].get_array().shape == (20, 16)
    with pytest.raises(ValueError, match=r"shape \(T, C\), got \(3,\)"):
        plots.positional_encoding_heatmap(np.zeros(3))


def test_loss_curves_plot_train_val_and_the_baseline():
    history = [{"step": s, "train": 4.0 - s / 100, "val": 4.1 - s / 110, "lr": 1e-3} for s in range(0, 200, 50)]
    fig = plots.loss_curves(history, baseline=2.48, title="run")
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["train (final 2.500)", "val (final 2.736)", "bigram baseline: 2.480"]
    assert len(ax.lines) == 3 and list(ax.lines[0].get_xdata()) == [0, 50, 100, 150]
    assert ax.get_xlabel() == "step" and "loss" in ax.get_ylabel() and ax.get_title() == "run"
    assert len(plots.loss_curves(history).axes[0].lines) == 2  # no baseline, no line
    with pytest.raises(ValueError, match="at least one entry"):
        plots.loss_curves([])


def check_rows():
    def row(name, fd, torch, passed=True):
        return dict(name=name, fd_error=fd, fd_tol=1e-6 if fd is not None else None, torch_error=torch,
                    torch_tol=1e-10, torch_tol_name="TORCH['float64']['rtol']", passed=passed)

    return [row("Linear", 1e-10, 2e-16), row("ReLU", 6e-12, 0.0), row("Broken", 0.5, 1e-3, passed=False),
            row("AdamW", None, 6e-18)]


def test_gradcheck_chart_shows_every_row_and_marks_the_failed_one():
    fig = plots.gradcheck_chart({"passed": False, "rows": check_rows()})  # the whole --json output works too
    (ax,) = fig.axes
    ticks = ax.get_yticklabels()
    assert [t.get_text() for t in ticks] == ["Linear", "ReLU", "Broken", "AdamW"]
    assert [t.get_color() for t in ticks] == ["black", "black", "tab:red", "black"]
    assert ax.get_xscale() == "log" and "relative error" in ax.get_xlabel()
    assert "3 of 4 items pass" in ax.get_title()  # the failure is not counted
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "PyTorch (float64)" in legend and "PyTorch: 0 (drawn at the edge)" in legend
    with pytest.raises(ValueError, match="at least one row"):
        plots.gradcheck_chart([])


def test_run_attention_writes_a_png_of_the_expected_size(tmp_path, capsys):
    ckpt = save_tiny(tmp_path / "ckpt")
    out = tmp_path / "attention.png"
    assert run_attention(["--ckpt", str(ckpt), "--text", "to be\nor", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    image = imread(out)
    expected = pixels(plots.attention_heatmaps(np.zeros((2, 8, 8)), ["x"] * 8))
    assert image.shape[:2] == expected and image.shape[1] > 2 * plots.DPI  # two panels side by side
    assert run_attention(["--ckpt", str(ckpt), "--text", "to be\nor", "--out", str(out), "--layer", "0",
                          "--head", "1"]) == 0
    one = imread(out)  # replaced in place, nothing left beside it
    assert one.shape[:2] == pixels(plots.attention_heatmaps(np.zeros((8, 8)), ["x"] * 8))
    assert one.shape[1] < image.shape[1]
    assert sorted(os.listdir(tmp_path)) == ["attention.png", "ckpt"]
    (tmp_path / "plain").touch()  # a file made the ordinary way: the figure gets the same permissions
    assert os.stat(out).st_mode & 0o777 == os.stat(tmp_path / "plain").st_mode & 0o777 & 0o644


@pytest.mark.parametrize("extra, message", [
    (["--layer", "3"], r"layer 3 out of range: the model has 3 layers, numbered 0 to 2"),
    (["--layer", "-1"], r"layer -1 out of range: the model has 3 layers, numbered 0 to 2"),
    (["--head", "2"], r"head 2 out of range: the model has 2 heads, numbered 0 to 1"),
    (["--text", "to be or not to be"], r"the text is 18 tokens long, longer than the model's block_size 12"),
    (["--text", "to Zed"], r"character 'Z' \(U\+005A\) at position 3 is not in the vocabulary"),
    (["--text", ""], r"--text is empty"),
])
def test_run_attention_names_what_is_wrong(tmp_path, extra, message):
    ckpt = save_tiny(tmp_path / "ckpt")
    out = tmp_path / "a.png"
    with pytest.raises(ValueError, match=message):
        run_attention(["--ckpt", str(ckpt), "--text", "to be", "--out", str(out)] + extra)
    assert not out.exists()


def test_run_attention_checks_the_output_file(tmp_path):
    ckpt = save_tiny(tmp_path / "ckpt")
    with pytest.raises(ValueError, match=r"must end in \.png, got .*a\.jpg"):
        run_attention(["--ckpt", str(ckpt), "--text", "to", "--out", str(tmp_path / "a.jpg")])
    with pytest.raises(FileNotFoundError, match="output folder .*nowhere does not exist"):
        run_attention(["--ckpt", str(ckpt), "--text", "to", "--out", str(tmp_path / "nowhere" / "a.png")])
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ValueError, match=r"output .*folder\.png is a folder, not a PNG file"):
        run_attention(["--ckpt", str(ckpt), "--text", "to", "--out", str(tmp_path / "folder.png")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_attention(["--ckpt", str(tmp_path / "missing"), "--text", "to", "--out", str(tmp_path / "a.png")])


def test_without_matplotlib_the_module_imports_and_drawing_names_the_extra():
    code = """
import sys
sys.modules["matplotlib"] = None
import numpy as np
import minilm.viz.plots as plots
assert plots.attention_weights  # importing needs no matplotlib
for call in (lambda: plots.attention_heatmaps(np.eye(2), ["a", "b"]),
             lambda: plots.positional_encoding_heatmap(np.eye(2)),
             lambda: plots.loss_curves([{"step": 0, "train": 1.0, "val": 1.0}]),
             lambda: plots.gradcheck_chart([{"name": "x", "fd_error": 1e-9}])):
    try:
        call()
    except ImportError as err:
        assert str(err) == 'matplotlib is needed for plots: pip install ".[notebooks]" in the minilm checkout', err
    else:
        raise AssertionError("no ImportError")
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_minilm_attention_without_matplotlib_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    out = tmp_path / "a.png"
    code = cli.main(["attention", "--ckpt", str(save_tiny(tmp_path / "ckpt")), "--text", "to", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err == ('minilm attention: error: matplotlib is missing, and minilm attention draws with it: '
                                 'pip install ".[notebooks]" in the minilm checkout\n')
    assert not out.exists()


def test_bigram_loss_is_the_cross_entropy_of_add_one_counts():
    train, val = np.array([0, 1, 0, 1, 1]), np.array([0, 1, 1, 0])
    # train pairs: 0→1 twice, 1→0 once, 1→1 once; with +1 over V = 2: P(1|0) = 3/4, P(0|1) = 2/4, P(1|1) = 2/4
    expected = -np.mean(np.log([3 / 4, 2 / 4, 2 / 4]))
    assert figures.bigram_loss(train, val, 2) == pytest.approx(expected, rel=TORCH["float64"]["rtol"])


def test_the_gradcheck_figure_is_skipped_with_a_note_without_minilm_check(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "minilm.verify.check", None)
    assert figures.gradcheck(tmp_path) is None
    assert "minilm.verify.check is not available" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
