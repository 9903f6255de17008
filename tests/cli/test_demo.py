"""probdl.cli.demo: the runner runs the parts asked for and refuses unknown ones."""

from __future__ import annotations

import pytest

from probdl.cli import main
from probdl.cli.demo.runner import PARTS, run_demo
from probdl.errors import DataError


def test_an_unknown_part_is_an_error_not_a_silent_skip(tmp_path):
    with pytest.raises(DataError, match=r"unknown demo part.*'nets'"):
        run_demo(tmp_path, parts=["graph", "nets"])
    assert not any(tmp_path.iterdir())


def test_the_graph_part_runs_and_reports(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--parts", "graph"]) == 0
    out = capsys.readouterr().out
    assert f"== {PARTS['graph']} ==" in out and "time: whole demo" in out
    assert f"== {PARTS['bnn']} ==" not in out
