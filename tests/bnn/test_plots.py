"""The Bayesian CNN's figures: each writes a PNG at the path given and nothing else."""

from __future__ import annotations

import numpy as np

from probdl import plots


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_figure_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=200)
    labels = rng.integers(0, 10, 200)
    history = [
        {"epoch": e, "loss": 1.0 / e, "val_nll": 0.5 / e, "val_accuracy": 1 - 0.1 / e}
        for e in range(1, 6)
    ]
    paths = [
        plots.reliability_diagram(probs, labels, tmp_path / "r.png"),
        plots.uncertainty_histograms(rng.random(50), rng.random(60) + 1, tmp_path / "u.png"),
        plots.risk_coverage_curve(probs.max(1), probs.argmax(1) == labels, tmp_path / "c.png"),
        plots.training_curves(history, tmp_path / "sub" / "t.png"),
    ]
    assert all(p.is_file() and _is_png(p) for p in paths)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "c.png", "r.png", "t.png", "u.png",
    ]  # fmt: skip
