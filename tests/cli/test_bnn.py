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


def test_train_json_names_the_files_it_wrote_and_says_them_on_stderr(trained_run):
    document = json.loads(TRAIN["stdout"])
    assert document["model"] == str(trained_run / "model.pt")
    plots = [trained_run / "training_curves.png", trained_run / "reliability.png"]
    assert document["plots"] == [str(p) for p in plots]
    assert f"plots: {plots[0]}, {plots[1]}" in TRAIN["stderr"]


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


def test_predict_reads_byte_arrays_and_refuses_0_255_floats(trained_run, tmp_path, capsys):
    # a uint8 .npy is 0-255 bytes: it predicts as its [0, 1] twin; a float .npy is taken as
    # given, so 0-255 floats meet the model's range check (it names the fix) rather than a
    # silent rescale that would also have darkened floats a little above 1
    from probdl import load_digits, split

    _, _, test = split(load_digits(), seed=0)
    images = test.images[:20].numpy()
    np.save(tmp_path / "unit.npy", images)
    np.save(tmp_path / "bytes.npy", np.round(images * 255).astype(np.uint8))
    np.save(tmp_path / "floats255.npy", images * 255)
    model = str(trained_run / "model.pt")
    frames = {}
    for name in ("unit", "bytes"):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", "--model", model, "--images", str(tmp_path / f"{name}.npy"),
                     "--out", str(out), "--num-samples", "4"]) == 0
        frames[name] = pd.read_csv(out)
    probs = [frames[n][[f"p_{d}" for d in range(10)]].to_numpy() for n in ("unit", "bytes")]
    np.testing.assert_allclose(probs[0], probs[1], atol=0.02)  # bytes round to 1/255
    capsys.readouterr()
    code = main(["predict", "--model", model, "--images", str(tmp_path / "floats255.npy"),
                 "--out", str(tmp_path / "f.csv")])
    assert code == 1 and "255" in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()


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


def test_train_takes_predict_dropout_components_and_names_folder_problems(tmp_path, capsys):
    from PIL import Image

    from probdl import BayesianCNN, load_digits

    digits = load_digits()
    _write_pngs(tmp_path / "two", digits.images[:40], digits.labels[:40] % 2, ["even", "odd"])
    out = tmp_path / "run"
    argv = ["train", "--data", f"folder:{tmp_path / 'two'}", "--epochs", "1", "--out"]
    assert main([*argv, str(out), "--predict-dropout", "0.2", "--components", "2"]) == 0
    model = BayesianCNN.load(out / "model.pt")
    assert model.predict_dropout == 0.2 and model.posterior_loc().shape[0] == 2
    capsys.readouterr()
    for extra, code, message in (
        (["--predict-dropout", "0.7"], 1, "training dropout (0.5)"),  # the model's error
        (["--model", "deterministic", "--predict-dropout", "0.1"], 2, "--model bayesian only"),
        (["--model", "mc-dropout", "--components", "2"], 2, "--model bayesian only"),
    ):
        assert main([*argv, str(tmp_path / "r2"), *extra]) == code
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error, exit status 2
        main([*argv, str(tmp_path / "r2"), "--components", "0"])
    assert "--components: must be 1 or more" in capsys.readouterr().err
    # one class subfolder; images of two sizes (the command line has no size option)
    _write_pngs(tmp_path / "one", digits.images[:4], [0] * 4, ["zero"])
    assert main(["train", "--data", f"folder:{tmp_path / 'one'}", "--out", str(tmp_path / "r3")]
                ) == 1  # fmt: skip
    assert "needs at least two, one subfolder per class" in capsys.readouterr().err
    Image.new("L", (16, 16)).save(tmp_path / "two" / "odd" / "big.png")
    assert main([*argv, str(tmp_path / "r4")]) == 1
    err = capsys.readouterr().err
    assert "differ in size" in err and "resize the images to one size first" in err
    assert "pass size=" not in err


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
