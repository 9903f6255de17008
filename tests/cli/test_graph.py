"""probdl.cli.graph: `probdl bn query | fit | impute`, answers checked against pgmpy."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

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


def test_bn_fit_on_two_threads_writes_the_one_thread_fit(tmp_path, asia_rows, capsys):
    from probdl import BayesNet

    data, _ = asia_rows
    for jobs in ("1", "2"):
        assert main(["bn", "fit", "asia", str(data), "--out", str(tmp_path / f"f{jobs}.bif"),
                     "--max-iter", "5", "--n-jobs", jobs]) == 0
    one, two = (BayesNet.read(tmp_path / f"f{jobs}.bif") for jobs in ("1", "2"))
    for v in one.variables:
        np.testing.assert_allclose(two.cpd(v), one.cpd(v), atol=1e-12)
    with pytest.raises(SystemExit):
        main(["bn", "fit", "asia", str(data), "--out", str(tmp_path / "x.bif"), "--n-jobs", "0"])
    assert "--n-jobs: must be 1 or more, or -1 for every core" in capsys.readouterr().err


@pytest.fixture
def asia_rows(tmp_path):
    """400 rows of asia, 10% of cells missing, as a CSV; and the frame."""
    from probdl import BayesNet

    rows = BayesNet.example("asia").sample(400, seed=0).astype(object)
    rows = rows.mask(np.random.default_rng(0).random(rows.shape) < 0.1)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    return tmp_path / "rows.csv", rows


def test_json_is_one_document_on_stdout_and_the_rest_on_stderr(tmp_path):
    """The issue's own command line, as a process: nothing after the JSON on stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "probdl.cli", "bn", "query", "asia", "--target", "lung",
         "--evidence", "smoke=yes", "--plot", "a.png", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"lung": {"yes": pytest.approx(0.1),
                                                "no": pytest.approx(0.9)}}
    assert "network plot -> a.png" in done.stderr
    assert (tmp_path / "a.png").is_file()


@pytest.mark.parametrize("command", ["fit", "impute"])
def test_fit_and_impute_json_is_the_whole_stdout(command, asia_rows, tmp_path, capsys):
    data, _ = asia_rows
    out = tmp_path / "sub" / ("fitted.bif" if command == "fit" else "completed.csv")
    extra = ["--max-iter", "5"] if command == "fit" else ["--posteriors", str(tmp_path / "p.csv")]
    assert main(["bn", command, "asia", str(data), "--out", str(out), *extra, "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # fails on a second document or any stray line
    assert summary["out"] == str(out) and summary["rows"] == 400
    assert "created folder" in captured.err


def test_fit_prints_the_log_likelihood_and_the_em_objective_by_their_names(asia_rows, tmp_path,
                                                                           capsys):
    from probdl import BayesNet

    data, rows = asia_rows
    out = tmp_path / "fitted.bif"
    assert main(["bn", "fit", "asia", str(data), "--out", str(out), "--max-iter", "20",
                 "--prior", "1.0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    fitted = BayesNet.read(out)  # recomputed from the file, not from what fit remembers
    loglik = fitted.log_likelihood(rows).sum()
    log_prior = sum(np.log(fitted.cpd(v)).sum() for v in fitted.variables)  # prior 1.0
    assert summary["log_likelihood"] == pytest.approx(loglik, rel=1e-9)
    assert summary["em_objective"] == pytest.approx(loglik + log_prior, rel=1e-9)
    assert summary["em_objective"] < summary["log_likelihood"]
    assert main(["bn", "fit", "asia", str(data), "--out", str(out), "--max-iter", "20"]) == 0
    text = capsys.readouterr().out
    assert f"log_likelihood: {summary['log_likelihood']}  (of the rows" in text
    assert f"em_objective: {summary['em_objective']}  (log-likelihood + prior term" in text


@pytest.mark.parametrize("out, message", [
    ("rows.csv/x.bif", "is a file, not a folder"),
    ("fitted.txt", "unknown network format '.txt'"),
])
def test_fit_refuses_an_unusable_out_before_running_em(out, message, asia_rows, tmp_path,
                                                       capsys, monkeypatch):
    from probdl import BayesNet

    def no_em(*args, **kwargs):
        raise AssertionError("EM ran before the output path was checked")

    monkeypatch.setattr(BayesNet, "fit", no_em)
    data, _ = asia_rows
    assert main(["bn", "fit", "asia", str(data), "--out", str(tmp_path / out)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fit_creates_missing_folders_of_out(asia_rows, tmp_path):
    data, _ = asia_rows
    out = tmp_path / "missing" / "dir" / "x.bif"
    assert main(["bn", "fit", "asia", str(data), "--out", str(out), "--max-iter", "3"]) == 0
    assert out.is_file()


def test_impute_posteriors_hold_every_state_of_every_imputed_cell(asia_rows, tmp_path):
    from pgmpy.inference import VariableElimination

    from probdl import BayesNet

    data, rows = asia_rows
    completed, posteriors = tmp_path / "completed.csv", tmp_path / "posteriors.csv"
    assert main(["bn", "impute", "asia", str(data), "--out", str(completed),
                 "--posteriors", str(posteriors)]) == 0
    table = pd.read_csv(posteriors, dtype={"state": str})
    assert list(table.columns) == ["row", "variable", "state", "probability"]
    bn = BayesNet.example("asia")
    holes = {(r, v) for v in rows for r in np.flatnonzero(rows[v].isna().to_numpy())}
    cells = table.groupby(["row", "variable"])
    assert set(cells.groups) == holes
    np.testing.assert_allclose(cells["probability"].sum(), 1, atol=1e-9)
    for (_, v), cell in cells:
        assert list(cell["state"]) == bn.states[v]
    # the imputed state is the most probable one, and the posteriors are pgmpy's
    filled = pd.read_csv(completed, dtype=str)
    best = table.loc[cells["probability"].idxmax()]
    assert all(filled.at[r, v] == s for r, v, s in zip(best.row, best.variable, best.state,
                                                         strict=True))
    engine = VariableElimination(bn.to_pgmpy())
    for r, v in sorted(holes)[:5]:
        evidence = {k: val for k, val in rows.iloc[r].items() if pd.notna(val)}
        ref = engine.query([v], evidence=evidence, show_progress=False)
        mine = cells.get_group((r, v)).set_index("state")["probability"]
        np.testing.assert_allclose([mine[s] for s in ref.state_names[v]], ref.values,
                                   atol=1e-10)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_honour_the_umask(mask, asia_rows, tmp_path):
    import os

    data, _ = asia_rows
    before = os.umask(mask)
    try:
        assert main(["bn", "query", "asia", "--target", "lung", "--plot",
                     str(tmp_path / "net.png")]) == 0
        assert main(["bn", "impute", "asia", str(data), "--out", str(tmp_path / "c.csv")]) == 0
        assert main(["bn", "fit", "asia", str(data), "--out", str(tmp_path / "f.bif"),
                     "--max-iter", "2"]) == 0
    finally:
        os.umask(before)
    for name in ("net.png", "c.csv", "f.bif"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_fit_speaks_the_command_lines_words_and_its_advice_works(tmp_path, capsys):
    from probdl import BayesNet

    rows = BayesNet.example("asia").sample(300, seed=1).drop(columns="either")
    data = tmp_path / "data.csv"
    rows.to_csv(data, index=False)
    out = str(tmp_path / "fitted.bif")
    assert main(["bn", "fit", "asia", str(data), "--out", out]) == 1
    err = capsys.readouterr().err
    assert "declare them hidden with --latent either:2" in err and "latent={" not in err
    assert main(["bn", "fit", "asia", str(data), "--latent", "either:3", "--out", out]) == 1
    assert "never changes its states: write --latent either:2" in capsys.readouterr().err
    assert main(["bn", "fit", "asia", str(data), "--latent", "smoke:2", "--out", out]) == 1
    assert "has values of 'smoke'" in capsys.readouterr().err
    assert main(["bn", "fit", "asia", str(data), "--latent", "either:2", "--out", out,
                 "--max-iter", "5"]) == 0
    assert BayesNet.read(out).states["either"] == ["yes", "no"]


def test_states_named_like_gaps_stay_states_and_real_gaps_are_imputed(tmp_path, capsys):
    # insurance has states called "None" (Accident, ThisCarDam): before, `bn impute` counted
    # them as missing and rewrote observed cells, and `bn fit` learned from the damage.
    from probdl.graph import BayesNet

    rows = BayesNet.example("insurance").sample(200, seed=1)
    nones = int((rows == "None").sum().sum())
    assert nones > 10
    rows.loc[:2, "Age"] = np.nan  # written as empty cells
    rows.loc[3, "Age"] = "NA"  # Age has no state "NA": a gap in R's spelling
    rows.to_csv(tmp_path / "ins.csv", index=False)
    assert main(["bn", "impute", "insurance", str(tmp_path / "ins.csv"),
                 "--out", str(tmp_path / "o.csv"), "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["cells_imputed"] == 4
    filled = pd.read_csv(tmp_path / "o.csv", dtype=str, keep_default_na=False)
    assert int((filled == "None").sum().sum()) == nones
    kept = rows.drop(columns="Age")
    assert filled[kept.columns].equals(kept)


def test_fit_from_init_keeps_the_meaning_of_hidden_states(tmp_path, capsys):
    # A hidden column learned from a random start may come back with its names permuted;
    # --init starts EM where the names mean what the network says. Same fit as Python's init=.
    from probdl.graph import BayesNet

    bn = BayesNet.example("alarm")
    truth = bn.sample(400, seed=0)
    rows = truth.drop(columns="LVFAILURE").assign(HR=np.nan)
    rows.to_csv(tmp_path / "a.csv", index=False)
    args = ["bn", "fit", "alarm", str(tmp_path / "a.csv"), "--latent", "LVFAILURE:2",
            "--max-iter", "20", "--json"]  # fmt: skip
    assert main([*args, "--init", "alarm", "--out", str(tmp_path / "f.bif")]) == 0
    printed = json.loads(capsys.readouterr().out)
    same = bn.fit(rows, latent={"LVFAILURE": 2}, init=bn, max_iter=20, prior=1.0)
    assert printed["log_likelihood"] == pytest.approx(same.log_likelihood_, rel=1e-9)
    assert main(["bn", "impute", str(tmp_path / "f.bif"), str(tmp_path / "a.csv"),
                 "--out", str(tmp_path / "c.csv")]) == 0  # fmt: skip
    filled = pd.read_csv(tmp_path / "c.csv", dtype=str)
    assert (filled["HR"] == truth["HR"]).mean() > 0.9
    capsys.readouterr()
    assert main([*args, "--init", "asia", "--out", str(tmp_path / "g.bif")]) == 1
    assert "init must have the structure" in capsys.readouterr().err


def test_evidence_giving_one_variable_two_states_is_refused(capsys):
    # before, the last one won silently: P(lung | smoke=no) was printed
    assert main(["bn", "query", "asia", "--target", "lung",
                 "--evidence", "smoke=yes,smoke=no"]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "'smoke' two states ('yes' and 'no'); keep one" in err and len(err.splitlines()) == 1
    assert main(["bn", "query", "asia", "--target", "lung",
                 "--evidence", "smoke=yes,smoke=yes"]) == 0  # fmt: skip


def test_the_first_compile_is_announced_and_later_runs_are_quiet(tmp_path, monkeypatch, capsys):
    from probdl.cli.graph import note_first_compile

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    note_first_compile()
    assert "compiling the inference engine" in capsys.readouterr().err
    (tmp_path / "inference_x").mkdir()
    (tmp_path / "inference_x" / "kernels.run_rows-1.py311.nbi").write_bytes(b"")
    note_first_compile()
    assert capsys.readouterr().err == ""


def test_a_misspelt_header_is_named_and_a_header_without_rows_is_refused(asia_rows, tmp_path,
                                                                          capsys):
    _, frame = asia_rows
    frame.rename(columns={"smoke": "Smoke"}).to_csv(tmp_path / "m.csv", index=False)
    frame.iloc[:0].to_csv(tmp_path / "e.csv", index=False)
    for command in ("fit", "impute"):
        out = str(tmp_path / ("f.bif" if command == "fit" else "f.csv"))
        assert main(["bn", command, "asia", str(tmp_path / "m.csv"), "--out", out]) == 1
        assert "'Smoke'" in capsys.readouterr().err
        assert main(["bn", command, "asia", str(tmp_path / "e.csv"), "--out", out]) == 1
        assert "a header and no rows" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "m.csv", "rows.csv"]


def test_fit_to_uai_says_the_names_are_gone(asia_rows, tmp_path, capsys):
    source, _ = asia_rows
    assert main(["bn", "fit", "asia", str(source), "--out", str(tmp_path / "f.uai"),
                 "--max-iter", "3"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "holds no variable or state names" in err and ".bif or .xmlbif" in err
    from probdl.graph import BayesNet

    assert BayesNet.read(tmp_path / "f.uai").variables[0] == "var_0"  # what the note says
    assert main(["bn", "fit", "asia", str(source), "--out", str(tmp_path / "f.bif"),
                 "--max-iter", "3"]) == 0  # fmt: skip
    assert "no variable or state names" not in capsys.readouterr().err
def test_bn_impute_refuses_out_and_posteriors_of_one_file(asia_rows, tmp_path, capsys,
                                                          monkeypatch):
    data, _ = asia_rows
    monkeypatch.chdir(tmp_path)
    for posteriors in ("same.csv", "./same.csv", "sub/../same.csv"):
        code = main(["bn", "impute", "asia", str(data), "--out", "same.csv",
                     "--posteriors", posteriors])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert "--out and --posteriors name the same file" in err
        assert not (tmp_path / "same.csv").exists() and not (tmp_path / "sub").exists()


@pytest.mark.parametrize(("suffix", "magic"), [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                               (".svg", b"<?xml"), (".SVG", b"<?xml")])
def test_bn_query_plot_is_written_in_the_format_its_suffix_names(suffix, magic, tmp_path):
    plot = tmp_path / f"out{suffix}"
    assert main(["bn", "query", "asia", "--target", "lung", "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["out.txt", "out.jpeg", "out"])
def test_bn_query_refuses_a_plot_format_it_cannot_write_before_work(name, tmp_path, capsys):
    plot = tmp_path / "new" / name
    assert main(["bn", "query", "asia", "--target", "lung", "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
    assert "--plot" in captured.err and ".png, .pdf or .svg" in captured.err
    assert not (tmp_path / "new").exists()


def test_an_output_that_is_the_commands_input_is_refused(asia_rows, capsys):
    data, _ = asia_rows
    before = data.read_bytes()
    assert main(["bn", "impute", "asia", str(data), "--out", str(data)]) == 2
    err = capsys.readouterr().err
    assert "--out names the command's input DATA" in err and err.count("\n") == 1
    assert data.read_bytes() == before
