"""Bad input, swept by hypothesis: image tensors for predict/evaluate, argument lists for the CLI.

Every call must return a correct result (finite probabilities summing to one, scores in range,
exit codes 0/1/2) or raise a ProbdlError; see tests/test_fuzz.py for the network half and
tests/_fuzz.py for scale, counts and triage.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, seed
from hypothesis import strategies as st

from probdl.errors import ProbdlError
from probdl.graph import BayesNet
from tests._fuzz import SEED, _case, _quiet, _settings, junk_text, report_counts  # noqa: F401


@pytest.fixture(scope="module")
def asia():
    return BayesNet.example("asia")


# ---- 3. images -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    from probdl.bnn import BayesianCNN

    return BayesianCNN(1, 3, (8, 8), filters=(4,), dense=(8,), seed=0).eval()


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8,
          torch.bool, torch.complex64]
specials = st.sampled_from([0.0, 1.0, -1.0, 0.5, float("nan"), float("inf"), float("-inf"),
                            1e38, -1e38, 1e-45, 255.0])


@st.composite
def image_inputs(draw):
    kind = draw(st.sampled_from(["tensor", "tensor", "tensor", "numpy", "list", "other"]))
    if kind == "other":
        return draw(st.sampled_from([None, "images", 3.0, {"x": 1}, [], [[1, 2], [3]]]))
    shape = draw(st.one_of(
        st.tuples(st.integers(0, 4), st.just(1), st.just(8), st.just(8)),
        st.tuples(st.integers(0, 3), st.just(8), st.just(8)),
        st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple),
    ))
    dtype = draw(st.sampled_from(DTYPES))
    x = torch.rand(shape) if int(np.prod(shape)) < 5000 else torch.rand(1, 1, 8, 8)
    if draw(st.booleans()) and x.numel():
        flat = x.view(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, flat.numel() - 1))] = draw(specials)
    with _quiet():
        x = x.to(dtype)
    if kind == "numpy" and dtype not in (torch.bfloat16,):
        return x.numpy()
    if kind == "list":
        return x.tolist()
    return x


@pytest.mark.timeout(150)
@seed(SEED)
@_settings(150)
@given(images=image_inputs(), num_samples=st.sampled_from([1, 2, 0, -1, 2.5, True, "4", None]),
       labels=st.one_of(st.none(), st.lists(st.integers(-1, 4), max_size=5),
                        st.sampled_from([[0.5], "0", [[0]]])),
       which=st.sampled_from(["predict", "evaluate"]))
def test_predict_and_evaluate_answer_or_raise(tiny_model, images, num_samples, labels, which):
    from probdl.bnn import evaluate, predict

    if labels is None:
        try:
            labels = [0] * len(images)
        except TypeError:  # a scalar or 0-d input: any labels will do
            labels = [0]

    def call():
        if which == "predict":
            return predict(tiny_model, images, num_samples=num_samples)
        return evaluate(tiny_model, (images, labels), num_samples=num_samples)

    _case(f"bnn.{which} (image tensors)",
          {"images": images, "num_samples": num_samples, "labels": labels}, call,
          lambda answer: _check_images(which, answer))


def _check_images(which, answer):
    if which == "predict":
        probs = answer.probs
        assert probs.ndim == 2 and probs.shape[1] == 3
        assert torch.isfinite(probs).all() and (probs >= 0).all()
        torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)), rtol=0, atol=1e-5)
        assert torch.isfinite(answer.entropy).all()
    else:
        assert 0.0 <= answer["accuracy"] <= 1.0 and math.isfinite(answer["nll"])


# ---- 4. the command line ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, asia, tiny_model):
    folder = tmp_path_factory.mktemp("cli")
    asia.sample(30, seed=0).mask(np.random.default_rng(0).random((30, 8)) < 0.2).to_csv(
        folder / "rows.csv", index=False)
    (folder / "junk.csv").write_text("a,b\n1,2,3\n\"\n")
    (folder / "empty.csv").write_text("")
    with _quiet():
        asia.write(folder / "asia.bif")
    digits_model = __import__("probdl.bnn", fromlist=["BayesianCNN"]).BayesianCNN(
        1, 10, (8, 8), filters=(4,), dense=(8,), seed=0)
    with contextlib.suppress(ProbdlError):
        digits_model.save(folder / "model.pt")
    np.save(folder / "images.npy", np.random.default_rng(0).random((3, 1, 8, 8)))
    (folder / "model_junk.pt").write_bytes(b"PK\x03\x04junk")
    return folder


def _cli_tokens(folder: Path):
    f = str(folder)
    values = {
        "--data": ["digits", "idx:a,b", f"cifar:{f}", f"folder:{f}", "", "junk", "idx:",
                   f"folder:{f}/missing"],
        "--out": [f"{f}/out", f"{f}/o.csv", f"{f}/o.bif", "/etc/passwd/x", f"{f}/rows.csv/x",
                  ""],
        "--model": ["bayesian", "deterministic", "mc-dropout", f"{f}/model.pt",
                    f"{f}/model_junk.pt", f"{f}/none.pt", "junk"],
        "--epochs": ["0", "-1", "1", "x", "0.5"],
        "--batch-size": ["0", "-3", "256", "x"],
        "--lr": ["0", "-1", "nan", "inf", "0.01", "x"],
        "--device": ["cpu", "cuda", "cuda:7", "tpu", "", "cpu:0"],
        "--seed": ["0", "-1", "x"],
        "--nproc": ["0", "-1", "1", "x"],
        "--ood": ["noise", "rotate", "junk"],
        "--num-samples": ["0", "-1", "1", "2", "x"],
        "--images": [f"{f}/images.npy", f"{f}/rows.csv", f, f"{f}/missing", "/dev/null"],
        "--abstain": ["0.5", "nan", "-1", "2", "x"],
        "--target": ["lung", "junk", "", "lung,smoke", "lung,lung", ","],
        "--evidence": ["", "smoke=yes", "smoke=maybe", "junk=1", "=", "smoke=", ",,",
                       "smoke=yes,smoke=no", "either=yes,tub=no,lung=no"],
        "--plot": [f"{f}/p.png", "/etc/passwd/p.png"],
        "--latent": ["either:2", "H:2", "either:x", ":2", "either:1", "either"],
        "--max-iter": ["0", "1", "-1", "x", "3"],
        "--prior": ["0", "-1", "nan", "1", "inf"],
        "--parts": ["junk"],
    }
    flags = ["--json", "--resume", "--help", "--version", "--debug", "-h", "--bogus"]
    commands = {
        "train": ["--data", "--out", "--model", "--batch-size", "--lr", "--device", "--seed",
                  "--nproc", "--json", "--resume"],
        "evaluate": ["--model", "--data", "--ood", "--num-samples", "--out", "--json"],
        "predict": ["--model", "--images", "--out", "--num-samples", "--abstain", "--json"],
        "bn query": ["--target", "--evidence", "--plot", "--json"],
        "bn fit": ["--latent", "--out", "--max-iter", "--prior", "--nproc", "--json"],
        "bn impute": ["--out", "--json"],
    }
    positional = ["asia", f"{f}/asia.bif", f"{f}/rows.csv", f"{f}/junk.csv", f"{f}/empty.csv",
                  "junk", f"{f}/missing.bif", "/etc/passwd", ""]
    return values, flags, commands, positional


@st.composite
def cli_argv(draw, folder):
    values, flags, commands, positional = _cli_tokens(folder)
    if draw(st.integers(0, 9)) == 0:  # pure noise
        return draw(st.lists(st.one_of(junk_text, st.sampled_from(flags)), max_size=5))
    command = draw(st.sampled_from(sorted(commands)))
    argv = command.split()
    if command.startswith("bn"):
        argv += draw(st.lists(st.sampled_from(positional), min_size=0, max_size=3))
    options = draw(st.lists(st.sampled_from(commands[command]), max_size=5))
    for option in options:
        argv.append(option)
        if option in values:
            argv.append(draw(st.sampled_from(values[option])))
    if command == "train":  # bounded: a full 30-epoch run is no bad-input case
        argv += ["--epochs", draw(st.sampled_from(values["--epochs"]))]
    if draw(st.booleans()):
        argv.insert(draw(st.integers(0, len(argv))), draw(st.sampled_from(flags)))
    return argv


@pytest.mark.timeout(400)
@seed(SEED)
@_settings(100)
@given(data=st.data())
def test_cli_exits_cleanly_on_any_arguments(cli_files, data, monkeypatch):
    from probdl.cli import main

    argv = data.draw(cli_argv(cli_files))
    monkeypatch.chdir(cli_files)

    def call():
        try:
            code = main(argv)
        except SystemExit as exit_:  # --help / --version, or an argparse usage error
            return ("exit", exit_.code)
        except ProbdlError:  # main turns them into exit code 1 unless --debug
            assert "--debug" in argv, argv
            return ("debug", 1)
        return ("return", code)

    def check(outcome):
        kind, code = outcome
        assert code in ((0, 2) if kind == "exit" else (0, 1, 2)), (argv, outcome)

    _case("probdl.cli.main (argument lists)", {"argv": argv}, call, check)
