"""probdl.cli.bnn: `probdl train | evaluate | predict` end to end on digits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probdl.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--json"]) == 0
    return out


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
    for name in ("model.pt", "model.pt.reference.json", "training_curves.png", "reliability.png"):
        assert (trained_run / name).is_file(), name
    from probdl import BayesianCNN

    model = BayesianCNN.load(trained_run / "model.pt")
    assert model.classes_ == [str(d) for d in range(10)]


def test_evaluate_prints_metrics_and_ood_auroc(trained_run, capsys):
    capsys.readouterr()
    model = str(trained_run / "model.pt")
    assert main(["evaluate", "--model", model, "--data", "digits", "--ood", "noise", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0.5 < scores["accuracy"] <= 1 and 0 < scores["auroc_ood"] <= 1
    assert (trained_run / "risk_coverage.png").is_file()
    assert (trained_run / "uncertainty_in_vs_out.png").is_file()


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
        reports[name] = json.loads(capsys.readouterr().out)
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
