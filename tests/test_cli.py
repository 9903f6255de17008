"""The `probdl` command: help, exit codes, and answers checked against pgmpy."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from probdl.cli import build_parser, main

COMMANDS = [["demo"], ["train"], ["evaluate"], ["predict"], ["bn"], ["bn", "query"],
            ["bn", "fit"], ["bn", "impute"]]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from probdl import __version__

    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: probdl" in out
    if command not in (["bn"],):
        assert "example:" in out


def test_usage_errors_exit_2(capsys):
    usage_errors = (["nope"], ["train"], ["bn", "query", "asia"], ["train", "--epochs", "x"])
    for argv in usage_errors:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert main([]) == 2
    assert main(["bn"]) == 2


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bn", "query", "asia", "--target", "lung", "--evidence", "smoke=maybe"], "maybe"),
        (["bn", "query", "asia", "--target", "lung", "--evidence", "smoke"], "VARIABLE=STATE"),
        (["bn", "query", "no-such-net", "--target", "lung"], "no-such-net"),
        (["bn", "query", "missing.bif", "--target", "lung"], "missing.bif"),
        (["train", "--data", "mnist", "--out", "x"], "--data"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_1(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("probdl: error:") and message in err
    assert "Traceback" not in err


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


def test_parser_lists_every_design_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"demo", "train", "evaluate", "predict", "bn"} <= set(sub.choices)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--data", "digits", "--epochs", "2", "--out", str(out), "--json"]) == 0
    return out


def test_train_passes_lr_and_augment_to_train(monkeypatch, tmp_path):
    import inspect

    import probdl.bnn

    own = inspect.signature(probdl.bnn.Optim).parameters
    own_inputs = inspect.signature(probdl.bnn.Inputs).parameters
    seen = {}

    def fake_train(model, *args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(probdl.bnn, "train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "a")])
    assert seen["optim"].lr == own["lr"].default
    default = probdl.bnn.Inputs(augment=own_inputs["augment"].default).augment
    assert vars(seen["inputs"].augment) == vars(default)
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "b"), "--lr", "1e-3", "--augment", "none"])
    assert (seen["optim"].lr, seen["inputs"].augment) == (1e-3, None)


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


def _write_pngs(folder, images, labels, classes):
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (folder / classes[label]).mkdir(parents=True, exist_ok=True)
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(
            folder / classes[label] / f"{i:04d}.png"
        )


def test_train_and_evaluate_a_binary_rgb_folder(tmp_path, capsys):
    """The problem the project comes from: m x n colour images, two classes, one logit."""
    from probdl import BayesianCNN, make_shapes

    shapes = make_shapes(600, size=16, channels=3, seed=0)
    keep = shapes.labels > 0
    _write_pngs(tmp_path / "data", shapes.images[keep], shapes.labels[keep] - 1,
                ["square", "triangle"])  # fmt: skip
    out = tmp_path / "run"
    data = f"folder:{tmp_path / 'data'}"
    assert main(["train", "--data", data, "--epochs", "10", "--out", str(out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["accuracy"] > 0.85  # chance is .5
    model = BayesianCNN.load(out / "model.pt")
    assert model.architecture.num_outputs == 1 and model.classes_ == ["square", "triangle"]
    assert main(["evaluate", "--model", str(out / "model.pt"), "--data", data, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(scores["accuracy"])


def test_evaluate_scores_the_split_the_model_was_trained_on(tmp_path, capsys):
    from probdl import load_digits, split
    from probdl.bnn import DeterministicCNN, Optim, evaluate, train
    from probdl.data import ImageDataset

    data = load_digits()
    tr, va, te = split(data, val=0.15, test=0.2, seed=1)
    model = DeterministicCNN(1, 10, (8, 8), filters=(4,), dense=(16,))
    train(model, tr, va, epochs=1, optim=Optim(lr=1e-2), progress=False)
    path = model.save(tmp_path / "model.pt")
    assert model.split_["seed"] == 1
    capsys.readouterr()
    assert main(["evaluate", "--model", str(path), "--data", "digits", "--json"]) == 0
    by_cli = json.loads(capsys.readouterr().out)
    torch_seed = evaluate(model, te, num_samples=1)
    assert by_cli["accuracy"] == pytest.approx(torch_seed["accuracy"])  # seed 1's test split
    # a test split of another seed overlaps the training images: refused, unless asked for
    with pytest.raises(Exception, match="overlaps the training images"):
        evaluate(model, split(data, seed=0)[2])
    assert main(["evaluate", "--model", str(path), "--data", "digits", "--seed", "0"]) == 0
    # other data: refused unless --other-data
    capsys.readouterr()
    assert main(["evaluate", "--model", str(path), "--data", "shapes"]) == 1
    assert "--other-data" in capsys.readouterr().err
    half = ImageDataset(data.images[::2], data.labels[::2], data.classes)
    np.save(tmp_path / "x.npy", half.images.numpy())  # (unrelated: predict reads it below)
    assert main(["predict", "--model", str(path), "--images", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "p.csv")]) == 0


def test_predict_resizes_only_when_asked(trained_run, tmp_path, capsys):
    from probdl import make_shapes

    shapes = make_shapes(6, size=32, channels=3, seed=0)
    _write_pngs(tmp_path / "pngs", shapes.images, shapes.labels, ["a", "b", "c"])
    argv = ["predict", "--model", str(trained_run / "model.pt"), "--images",
            str(tmp_path / "pngs"), "--out", str(tmp_path / "p.csv")]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "3 channel(s), 32x32" in err and "1 channel(s), 8x8" in err and "--resize" in err
    assert main([*argv, "--resize"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 6
