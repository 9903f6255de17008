"""probdl.cli.graph: `probdl bn query | fit | impute`, answers checked against pgmpy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from probdl.cli import main


def test_bn_query_matches_pgmpy(capsys):
    from pgmpy.inference import VariableElimination
    from pgmpy.utils import get_example_model

    assert main(["bn", "query", "asia", "--target", "lung,tub", "--evidence",
                 "smoke=yes,xray=yes", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    ref = VariableElimination(get_example_model("asia")).query(
        ["lung"], evidence={"smoke": "yes", "xray": "yes"}, show_progress=False
    )
    lung = [answer["lung"][state] for state in ref.state_names["lung"]]
    np.testing.assert_allclose(lung, ref.values, atol=1e-10)


def test_bn_query_plot_and_table(tmp_path, capsys):
    png = tmp_path / "asia.png"
    assert main(["bn", "query", "asia", "--target", "lung", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "P(lung | no evidence)" in capsys.readouterr().out


def test_bn_fit_and_impute_round_trip(tmp_path, capsys):
    from probdl import BayesNet

    truth = BayesNet.example("asia")
    rows = truth.sample(400, seed=0).astype(object)
    rows = rows.mask(np.random.default_rng(0).random(rows.shape) < 0.1)
    data = tmp_path / "rows.csv"
    rows.to_csv(data, index=False)
    out = tmp_path / "fitted.bif"
    assert main(["bn", "fit", "asia", str(data), "--out", str(out), "--max-iter", "20"]) == 0
    fitted = BayesNet.read(out)
    assert sorted(fitted.variables) == sorted(truth.variables)
    assert abs(fitted.cpd("smoke")[0] - truth.cpd("smoke")[0]) < 0.1
    completed = tmp_path / "completed.csv"
    assert main(["bn", "impute", str(out), str(data), "--out", str(completed)]) == 0
    filled = pd.read_csv(completed, dtype=str)
    assert not filled.isna().any().any() and filled.shape == rows.shape
    observed = rows.notna()
    assert (filled[observed] == rows[observed].astype(str))[observed].all().all()
