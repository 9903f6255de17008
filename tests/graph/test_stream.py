"""probdl.graph.stream: how CSV cells become states or gaps (the streaming itself runs in
tests/test_distributed.py, one and two processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probdl.graph import BayesNet
from probdl.graph.stream import MISSING_MARKERS, missing_as_nan, read_chunks, stream_impute


def test_a_marker_is_a_gap_unless_the_variable_has_a_state_of_that_name():
    frame = pd.DataFrame({"A": ["None", "NA", "", "x"], "B": ["None", "NA", "null", "y"]})
    got = missing_as_nan(frame, {"A": ["None", "x"], "B": ["y"]})
    assert got["A"].tolist()[0] == "None" and got["A"].tolist()[3] == "x"
    assert got["A"].isna().tolist() == [False, True, True, False]
    assert got["B"].isna().tolist() == [True, True, True, False]
    assert {"", "NA", "NaN", "None"} <= MISSING_MARKERS
    assert frame["A"].tolist() == ["None", "NA", "", "x"]  # the input is left alone


def test_streamed_rows_keep_states_named_none(tmp_path):
    # insurance's Accident and ThisCarDam have a state called "None"; pandas' default reader
    # turned every such cell into a gap, so impute rewrote observed data.
    bn = BayesNet.example("insurance")
    rows = bn.sample(300, seed=1)
    assert (rows["Accident"] == "None").sum() > 10
    rows.loc[:4, "Age"] = np.nan
    source, out = tmp_path / "ins.csv", tmp_path / "filled.csv"
    rows.to_csv(source, index=False)
    chunk = next(read_chunks(source, 1000, bn.states))
    assert chunk.isna().sum().sum() == 5
    stream_impute(bn, source, out, chunk_rows=100, progress=False)
    filled = pd.read_csv(out, dtype=str, keep_default_na=False)
    observed = rows.drop(columns="Age")
    assert filled[observed.columns].equals(observed.astype(str))
