"""probdl.cli.bnn: the command line keeps its promises to a newcomer (issue 17): a damaged file,
a resumed run or a deterministic model gives a one-line error or an honest result, never a
traceback or a silently wrong one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probdl.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small deterministic CNN on digits, saved with its drift reference, as `train` does."""
    from probdl import load_digits, split
    from probdl.bnn import DeterministicCNN, Optim, predict, train

    folder = tmp_path_factory.mktemp("tiny")
    tr, va, _ = split(load_digits(), val=0.15, test=0.2, seed=0)
    model = DeterministicCNN(1, 10, (8, 8), filters=(4,), dense=(16,))
    train(model, tr, va, epochs=1, optim=Optim(lr=1e-2), progress=False)
    path = model.save(folder / "model.pt")
    reference = {"val_entropy": predict(model, va.images).entropy.tolist()}
    (folder / "model.pt.reference.json").write_text(json.dumps(reference))
    np.save(folder / "x.npy", va.images[:10].numpy())
    return path


@pytest.mark.parametrize("damage", ["{", "[1, 2]", '{"val_entropy": "abc"}', '{"other": [1]}',
                                    '{"val_entropy": []}'])
def test_predict_refuses_a_damaged_reference_before_writing(damage, tiny_model, tmp_path,
                                                           capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(tiny_model.read_bytes())
    (tmp_path / "model.pt.reference.json").write_text(damage)
    out = tmp_path / "p.csv"
    code = main(["predict", "--model", str(model), "--images", str(tiny_model.parent / "x.npy"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("probdl: error:"), err
    assert "model.pt.reference.json" in err and "delete it" in err
    assert not out.exists()


def test_evaluate_leaves_out_the_mutual_information_auroc_of_a_deterministic_model(
        tiny_model, tmp_path, capsys):
    argv = ["evaluate", "--model", str(tiny_model), "--ood", "noise", "--num-samples", "2",
            "--out", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert "auroc_ood" in scores and "auroc_ood_mi" not in scores
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "auroc_ood" in printed and "auroc_ood_mi" not in printed


def test_evaluate_and_predict_json_carry_the_files_and_say_the_notes_on_stderr(
        tiny_model, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tiny_model), "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    plots = json.loads(captured.out)["plots"]
    assert plots == [str(tmp_path / "evaluate_reliability.png"),
                     str(tmp_path / "evaluate_risk_coverage.png")]
    assert "plots: " + ", ".join(plots) in captured.err
    alone = tmp_path / "alone"  # a model without its drift reference
    alone.mkdir()
    (alone / "model.pt").write_bytes(tiny_model.read_bytes())
    for model, reference in ((alone / "model.pt", None),
                             (tiny_model, str(tiny_model) + ".reference.json")):
        assert main(["predict", "--model", str(model), "--images",
                     str(tiny_model.parent / "x.npy"), "--out", str(tmp_path / "p.csv"),
                     "--json"]) == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["drift_reference"] == reference and report["out"] == str(tmp_path / "p.csv")
        assert ("drift: no reference entropies" in captured.err) == (reference is None)
        assert "drift: predictive entropy is" in captured.err or reference is None


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A run folder `probdl train` left after one epoch of a deterministic CNN."""
    out = tmp_path_factory.mktemp("run") / "digits"
    assert main(["train", "--model", "deterministic", "--epochs", "1", "--out", str(out),
                 "--json"]) == 0
    return out


def test_train_resume_of_no_run_is_refused_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "runs" / "new"
    code = main(["train", "--epochs", "1", "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "holds no run to continue" in err and "drop --resume" in err
    assert not (tmp_path / "runs").exists()


def test_train_into_a_run_folder_without_resume_is_refused(one_epoch_run, capsys):
    model = one_epoch_run / "model.pt"
    before = model.stat().st_mtime_ns
    capsys.readouterr()
    code = main(["train", "--model", "deterministic", "--epochs", "1", "--out",
                 str(one_epoch_run)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "pass --resume to continue it, or choose another --out" in err
    assert model.stat().st_mtime_ns == before


def test_train_resume_past_its_epochs_says_there_is_nothing_to_do(one_epoch_run, capsys):
    capsys.readouterr()
    assert main(["train", "--model", "deterministic", "--epochs", "1", "--out",
                 str(one_epoch_run), "--resume", "--json"]) == 0
    captured = capsys.readouterr()
    assert "already trained 1 epochs >= --epochs 1; nothing to do" in captured.err
    assert json.loads(captured.out)["best_epoch"] == 1


def _error(argv, capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("probdl: error:"), (code, err)
    return err


def test_predict_speaks_of_resize_not_size_for_images_of_several_sizes(tiny_model, tmp_path,
                                                                       capsys):
    from PIL import Image

    (tmp_path / "pngs").mkdir()
    for i, side in enumerate((8, 12)):
        Image.fromarray(np.zeros((side, side), dtype=np.uint8)).save(tmp_path / f"pngs/{i}.png")
    argv = ["predict", "--model", str(tiny_model), "--images", str(tmp_path / "pngs"), "--out",
            str(tmp_path / "p.csv")]
    err = _error(argv, capsys)
    assert "--resize" in err and "size=(H, W)" not in err
    assert main([*argv, "--resize"]) == 0


def test_predict_names_a_channels_last_array_and_resizes_a_npy(tiny_model, tmp_path, capsys):
    np.save(tmp_path / "hwc.npy", np.zeros((4, 8, 8, 1), dtype=np.float32))
    argv = ["predict", "--model", str(tiny_model), "--images", str(tmp_path / "hwc.npy"),
            "--out", str(tmp_path / "p.csv")]
    for extra in ([], ["--resize"]):
        err = _error([*argv, *extra], capsys)
        assert "channels-last" in err and "(N, C, H, W)" in err and "8 channel(s)" not in err
    np.save(tmp_path / "big.npy", np.random.default_rng(0).random((3, 3, 16, 16)))
    argv = ["predict", "--model", str(tiny_model), "--images", str(tmp_path / "big.npy"),
            "--out", str(tmp_path / "p.csv")]
    assert "--resize" in _error(argv, capsys)
    assert main([*argv, "--resize"]) == 0  # colour 16x16 to the model's grey 8x8


def test_a_truncated_model_or_checkpoint_gives_the_command_lines_fix(tiny_model, one_epoch_run,
                                                                     tmp_path, capsys):
    cut = tmp_path / "model.pt"
    cut.write_bytes(tiny_model.read_bytes()[:3000])
    err = _error(["predict", "--model", str(cut), "--images", str(tiny_model.parent / "x.npy"),
                  "--out", str(tmp_path / "p.csv")], capsys)
    assert "probdl train" in err and "model.save" not in err and err.endswith(".\n")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = (one_epoch_run / "checkpoints" / "checkpoint.pt").read_bytes()
    (run / "checkpoints" / "checkpoint.pt").write_bytes(checkpoint[:3000])
    err = _error(["train", "--model", "deterministic", "--epochs", "2", "--out", str(run),
                  "--resume"], capsys)
    assert "drop --resume" in err and "model.save" not in err


def test_resuming_with_other_settings_says_another_out_without_a_config_dump(one_epoch_run,
                                                                             capsys):
    err = _error(["train", "--model", "bayesian", "--epochs", "2", "--out",
                  str(one_epoch_run), "--resume"], capsys)
    assert "another --out" in err and "checkpoint_dir" not in err
    assert "kind DeterministicCNN (this model: BayesianCNN)" in err and "{" not in err


def test_predict_refuses_to_write_its_csv_over_the_model(tiny_model, tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(tiny_model.read_bytes())
    assert main(["predict", "--model", str(model), "--images", str(tiny_model.parent / "x.npy"),
                 "--out", str(model)]) == 2
    assert "--out names the command's input --model" in capsys.readouterr().err
    assert model.read_bytes() == tiny_model.read_bytes()
