"""The EM figures: written atomically as real PNGs, downhill steps marked."""

from __future__ import annotations

import numpy as np
from PIL import Image

from probdl.plots import calibration_curve, em_history


def test_em_history_and_calibration_write_pngs(tmp_path):
    history = -100 - 50 * np.exp(-np.arange(12) / 2.0)
    path = em_history({"run a": history, "run b": history - 3}, tmp_path / "em.png")
    assert Image.open(path).format == "PNG" and Image.open(path).size[0] > 400
    assert [p.name for p in tmp_path.iterdir()] == ["em.png"]  # no temporary file left behind
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 500)
    curve = calibration_curve(confidence, rng.random(500) < confidence, tmp_path / "cal.png")
    assert Image.open(curve).format == "PNG"
