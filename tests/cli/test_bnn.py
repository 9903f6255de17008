"""probdl.cli.bnn: `probdl train | evaluate | predict` end to end on digits."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from probdl.cli import main

TRAIN: dict = {}  # what the trained_run fixture saw: stdout, stderr, the reliability plot's data


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from probdl import plots

    out = tmp_path_factory.mktemp("run")
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        mp.setattr(plots, "reliability_diagram", _recording(plots.reliability_diagram, TRAIN))
        code = main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--json"])
    assert code == 0, stderr.getvalue()
    TRAIN.update(stdout=stdout.getvalue(), stderr=stderr.getvalue())
    return out


def _recording(function, seen: dict):
    """``function``, also remembering the arguments of its calls by its name."""
    def wrapper(*args, **kwargs):
        seen[function.__name__] = args
        return function(*args, **kwargs)
    return wrapper


def test_train_passes_lr_and_augment_to_train(monkeypatch, tmp_path):
    import inspect

    import probdl.bnn

    own = inspect.signature(probdl.bnn.train).parameters
    seen = {}

    def fake_train(model, *args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(probdl.bnn, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "a")])
    assert (seen["lr"], seen["augment"]) == (own["lr"].default, own["augment"].default)
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "b"), "--lr", "1e-3", "--augment", "none"])
    assert (seen["lr"], seen["augment"]) == (1e-3, "none")


def test_train_writes_model_reference_and_plots(trained_run):
    from probdl.files import umask

    mode = 0o666 & ~umask()
    for name in ("model.pt", "model.pt.reference.json", "training_curves.png", "reliability.png"):
        assert (trained_run / name).is_file(), name
        assert (trained_run / name).stat().st_mode & 0o777 == mode, name  # the umask's
    from probdl import BayesianCNN

    model = BayesianCNN.load(trained_run / "model.pt")
    assert model.classes_ == [str(d) for d in range(10)]


def test_train_json_is_the_whole_stdout(trained_run):
    scores = json.loads(TRAIN["stdout"])  # one document, nothing else
    assert 0 < scores["accuracy"] <= 1 and scores["best_epoch"] in (1, 2)


def test_the_ece_in_trains_reliability_title_is_the_printed_one(trained_run):
    from probdl import metrics

    probs, labels, _ = TRAIN["reliability_diagram"]
    assert metrics.ece(probs, labels, 15) == json.loads(TRAIN["stdout"])["ece"]


@pytest.mark.parametrize("ood", ["noise", "rotate"])
def test_evaluate_prints_every_number_its_plot_titles_show(ood, trained_run, monkeypatch,
                                                            capsys):
    from probdl import metrics, plots

    seen: dict = {}
    for name in ("reliability_diagram", "risk_coverage_curve", "uncertainty_histograms"):
        monkeypatch.setattr(plots, name, _recording(getattr(plots, name), seen))
    capsys.readouterr()
    model = str(trained_run / "model.pt")
    assert main(["evaluate", "--model", model, "--data", "digits", "--ood", ood, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0.5 < scores["accuracy"] <= 1
    probs, labels, _ = seen["reliability_diagram"]
    assert scores["ece"] == metrics.ece(probs, labels, 15)
    confidence, correct, _ = seen["risk_coverage_curve"]
    assert scores["aurc"] == metrics.risk_coverage(confidence, correct)["aurc"]
    inside, outside, _ = seen["uncertainty_histograms"]
    auroc = scores["auroc_ood" if ood == "noise" else "shift_auroc"]
    assert 0 < auroc <= 1 and auroc == metrics.auroc(outside, inside)


def test_evaluate_writes_files_of_its_own_name(trained_run, capsys):
    train_plot = trained_run / "reliability.png"
    before = train_plot.stat().st_ino  # an atomic rewrite would replace the inode
    model = str(trained_run / "model.pt")
    assert main(["evaluate", "--model", model, "--data", "digits", "--ood", "noise"]) == 0
    assert train_plot.stat().st_ino == before
    printed = capsys.readouterr().out
    for name in ("evaluate_reliability.png", "evaluate_risk_coverage.png",
                 "evaluate_uncertainty_noise.png"):
        assert (trained_run / name).is_file() and name in printed, name


def test_predict_writes_csv_and_flags_a_drifted_batch(trained_run, tmp_path, capsys):
    import torch

    from probdl import load_digits, split

    _, _, test = split(load_digits(), seed=0)
    np.save(tmp_path / "clean.npy", test.images[:120].numpy())
    noise = torch.rand(120, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "noisy.npy", noise.numpy())
    model = str(trained_run / "model.pt")
    reports = {}
    for name in ("clean", "noisy"):
        capsys.readouterr()
        out = tmp_path / f"{name}.csv"
        assert main(["predict", "--model", model, "--images", str(tmp_path / f"{name}.npy"),
                     "--out", str(out), "--json"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)  # the whole stdout
        frame = pd.read_csv(out)
        probs = frame[[f"p_{d}" for d in range(10)]].to_numpy()
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(frame.entropy, frame.epistemic + frame.aleatoric, atol=1e-5)
    assert not reports["clean"]["drifted"] and reports["noisy"]["drifted"]
    assert reports["noisy"]["drift_p_value"] < 1e-6 < reports["clean"]["drift_p_value"]


def test_predict_rejects_images_of_the_wrong_size(trained_run, tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.zeros((2, 3, 16, 16), dtype=np.float32))
    code = main(["predict", "--model", str(trained_run / "model.pt"), "--images",
                 str(tmp_path / "big.npy"), "--out", str(tmp_path / "p.csv")])
    assert code == 1 and "probdl: error:" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
