"""probdl.cli.demo: the parts asked for run, unknown ones are refused, the whole demo holds."""

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


@pytest.mark.slow
def test_the_whole_demo_runs_end_to_end_and_its_numbers_hold(tmp_path, capsys):
    # What `make demo` runs, through the same door (`probdl demo`), every part: the suite
    # otherwise runs only the graph part (through the docs), so a broken CNN or hybrid part
    # would first be seen by a new user.
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = dict(
        (label.strip(), value.strip())
        for label, value in (line.strip().split("  ", 1) for line in
                             out.split("== Summary ==")[1].strip().splitlines())
    )  # fmt: skip
    assert all(f"== {title} ==" in out for title in PARTS.values())
    # Floors well under what the demo's settings reach (accuracy .98, AUROC 1.0, KL .16,
    # sums .94 -> .99), above what a broken part gives (chance: .1 accuracy, .5 AUROC).
    assert float(rows["bnn: test accuracy"]) > 0.95
    assert float(rows["bnn: noise AUROC (entropy)"]) > 0.98
    assert float(rows["em: alarm KL to truth (latent + 20% missing)"]) < 0.5
    alone, with_sum = map(float, rows["hybrid: digit accuracy CNN alone -> with sum"].split("->"))
    assert with_sum > alone and float(rows["hybrid: digit accuracy learned from sums only"]) > 0.8
    pngs = {p.name for p in tmp_path.glob("*.png")}
    assert {"augmented_digits.png", "em_history.png", "imputation_calibration.png",
            "bnn_reliability.png", "bnn_uncertainty.png"} <= pngs  # fmt: skip
    assert all((tmp_path / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in pngs)


def test_parts_without_names_is_a_usage_error(tmp_path, capsys):
    # `--parts` alone ran nothing, exited 0 and left an empty folder
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--out", str(tmp_path / "d"), "--parts"])
    assert stop.value.code == 2 and not (tmp_path / "d").exists()
