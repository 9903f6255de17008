"""probdl.plots as drawn: the figures are caught before saving and their text and axes read
back, with the renderer's own measure of where each piece of text lands."""

from __future__ import annotations

import numpy as np
import pytest

from probdl import plots
from probdl.graph import BayesNet


@pytest.fixture
def drawn(monkeypatch):
    """The figures plots would save, in order."""
    figures = []
    save = plots.save_figure

    def keep(fig, path, dpi=120):
        fig.canvas.draw()  # lay the text out, as saving would
        figures.append((fig, fig.canvas.get_renderer()))
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def _network_figure(bn, evidence, drawn, tmp_path):
    import pandas as pd

    row = pd.DataFrame([{v: evidence.get(v, np.nan) for v in bn.variables}])
    posteriors = {v: m[0] for v, m in bn.marginals(row).items()}
    path = plots.network_posteriors(bn, posteriors, tmp_path / "net.png", set(evidence))
    assert path.read_bytes()[:4] == b"\x89PNG"
    return *drawn[-1], posteriors


def test_network_drawing_prints_every_probability_on_its_bars(drawn, tmp_path):
    bn = BayesNet.example("asia")
    fig, _, posteriors = _network_figure(bn, {"smoke": "yes"}, drawn, tmp_path)
    panels = {ax.get_title(): ax for ax in fig.axes[1:]}
    assert set(panels) == set(bn.variables)
    for var, probs in posteriors.items():
        texts = [t.get_text() for t in panels[var].texts]
        for state, p in zip(bn.states[var], probs, strict=True):
            assert state in texts and f"{p:.2f}" in texts, (var, state, texts)


def test_long_names_and_labels_fit_inside_their_own_panel(drawn, tmp_path):
    """alarm's INTUBATION has the state ESOPHAGEAL, which the old drawing let its neighbour
    cover; every label must lie inside its panel, every title inside the figure, and no two
    titles may overlap."""
    bn = BayesNet.example("alarm")
    fig, renderer, _ = _network_figure(bn, {}, drawn, tmp_path)
    page = fig.bbox
    titles = []
    for ax in fig.axes[1:]:
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, (ax.get_title(), text.get_text())
        title = ax.title.get_window_extent(renderer)
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1
        titles.append((ax.get_title(), title))
    for i, (a, box_a) in enumerate(titles):
        for b, box_b in titles[i + 1:]:
            assert not box_a.overlaps(box_b), (a, b)
    intubation = next(ax for ax in fig.axes[1:] if ax.get_title() == "INTUBATION")
    assert "ESOPHAGEAL" in [t.get_text() for t in intubation.texts]


def _history(losses):
    return [{"epoch": e, "loss": loss, "val_nll": 1.0 / e, "val_accuracy": 0.5 + 0.1 * e}
            for e, loss in enumerate(losses, 1)]


@pytest.mark.parametrize("losses, scale", [
    ([2.31, 2.25, 2.2], "linear"),          # a small range: a log axis would show no ticks
    ([291.6, 40.2, 3.1, 1.2], "log"),       # two decades
    ([5.0], "linear"),                     # one epoch
])
def test_training_loss_axis_is_linear_over_a_small_range_with_whole_epochs(losses, scale, drawn,
                                                                           tmp_path):
    plots.training_curves(_history(losses), tmp_path / "t.png")
    fig, _ = drawn[-1]
    loss_ax = fig.axes[0]
    assert loss_ax.get_yscale() == scale
    lo, hi = loss_ax.get_xlim()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_figure_is_written_in_the_format_its_suffix_names(tmp_path):
    from probdl.errors import DataError

    plt = pytest.importorskip("matplotlib.pyplot")
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")):
        path = plots.save_figure(plt.figure(), tmp_path / f"f{suffix}")
        assert path.read_bytes().startswith(magic), suffix
    with pytest.raises(DataError, match=r"\.png, \.pdf or \.svg"):
        plots.save_figure(plt.figure(), tmp_path / "f.txt")
    assert not (tmp_path / "f.txt").exists() and not plt.get_fignums()
