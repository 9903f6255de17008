"""save/load: one file, weights_only, identical predictions in a fresh process, clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from probdl.bnn import BayesianCNN, DeterministicCNN, MCDropoutCNN, load_model, predict
from probdl.bnn.checkpoint import FORMAT, RESAVE_FIX, VERSION
from probdl.errors import CheckpointError
from tests.bnn.conftest import TINY


def _trained_like(cls, **kw):
    model = cls(1, 10, (8, 8), **{**TINY, **kw})
    with torch.no_grad():  # move every parameter away from its initial value
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.set_standardization(torch.tensor([0.3]), torch.tensor([0.4]))
    model.classes_ = [f"digit {i}" for i in range(10)]
    return model.eval()


@pytest.mark.parametrize(
    "cls, kw",
    [(BayesianCNN, {}), (BayesianCNN, {"bayesian_layers": "last", "batch_norm": True}),
     (BayesianCNN, {"components": 3}), (DeterministicCNN, {}), (MCDropoutCNN, {})],
)  # fmt: skip
def test_round_trip_predicts_exactly_the_same(cls, kw, tmp_path):
    model = _trained_like(cls, **kw)
    path = model.save(tmp_path / "m.pt")
    again = cls.load(path)
    assert type(again) is cls and again.config() == model.config()
    assert again.classes_ == model.classes_
    x = torch.rand(9, 1, 8, 8)
    torch.manual_seed(1)
    a = predict(model, x, 5).sample_probs
    torch.manual_seed(1)
    b = predict(again, x, 5).sample_probs
    assert torch.equal(a, b)
    assert type(load_model(path)) is cls


def test_a_fresh_process_predicts_identically(tmp_path):
    model = _trained_like(BayesianCNN)
    path = model.save(tmp_path / "m.pt")
    x = torch.rand(6, 1, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    torch.manual_seed(7)
    expected = predict(model, x, 8).probs
    script = textwrap.dedent(
        f"""
        import torch
        from probdl.bnn import BayesianCNN, predict
        model = BayesianCNN.load({str(path)!r})
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        torch.manual_seed(7)
        torch.save(predict(model, x, 8).probs, {str(tmp_path / "out.pt")!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), expected)


def test_file_holds_plain_tensors_and_a_version(tmp_path):
    path = _trained_like(BayesianCNN).save(tmp_path / "m.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == VERSION and raw["kind"] == "BayesianCNN"
    assert {"variational.loc", "variational.rho"} <= set(raw["state_dict"])
    assert raw["standardize"]["mean"].tolist() == pytest.approx([0.3])
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary behind


def test_a_version_2_file_predicts_as_it_did(tmp_path):
    # predict_dropout came with version 3: a file written before it has no such key, and its
    # model must not take up whatever default a later probdl has
    model = _trained_like(BayesianCNN, predict_dropout=0.05)
    raw = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    config = {k: v for k, v in raw["config"].items() if k not in ("predict_dropout", "components")}
    torch.save({**raw, "version": 2, "config": config}, tmp_path / "old.pt")
    assert BayesianCNN.load(tmp_path / "old.pt").predict_dropout == 0.0
    assert BayesianCNN.load(tmp_path / "m.pt").predict_dropout == 0.05


def test_a_version_3_file_has_one_component(tmp_path):
    model = _trained_like(BayesianCNN)
    raw = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    config = {k: v for k, v in raw["config"].items() if k != "components"}
    torch.save({**raw, "version": 3, "config": config}, tmp_path / "old.pt")
    old = BayesianCNN.load(tmp_path / "old.pt")
    assert old.components == 1 and old.config() == model.config()


def test_truncated_file(tmp_path):
    path = _trained_like(BayesianCNN).save(tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as caught:
        BayesianCNN.load(path)
    # the fix is kept apart, for the command line to say its own
    assert caught.value.fix == RESAVE_FIX
    assert str(caught.value) == f"{caught.value.problem}; {RESAVE_FIX}."


def test_other_version_kind_and_architecture(tmp_path):
    model = _trained_like(BayesianCNN)
    raw = torch.load(model.save(tmp_path / "m.pt"), weights_only=True)
    torch.save({**raw, "version": 99}, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        BayesianCNN.load(tmp_path / "v.pt")
    det = _trained_like(DeterministicCNN).save(tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="holds a DeterministicCNN"):
        BayesianCNN.load(det)
    other = {**raw, "config": {**raw["config"], "filters": [8, 8]}}
    torch.save(other, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="another architecture"):
        BayesianCNN.load(tmp_path / "a.pt")
    torch.save({"state_dict": raw["state_dict"]}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match=r"not a probdl\.bnn checkpoint"):
        BayesianCNN.load(tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="no such"):
        BayesianCNN.load(tmp_path / "missing.pt")


class _Arbitrary:
    """Any class: loading it would run pickle's code paths weights_only forbids."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"format": FORMAT, "payload": _Arbitrary()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        BayesianCNN.load(tmp_path / "evil.pt")


def test_a_mismatching_checkpoint_names_what_differs_not_its_whole_config():
    from probdl.bnn.checkpoint import _config_difference

    model = DeterministicCNN(1, 10, (8, 8), **TINY)
    saved = {"kind": model.kind, "config": {**model.config(), "filters": [8, 8]}}
    assert _config_difference(saved, model.kind, model.config()) == (
        f"filters [8, 8] (this model: {model.config()['filters']})")
    assert _config_difference({"kind": "BayesianCNN", "config": {}}, model.kind, {}) == (
        "kind BayesianCNN (this model: DeterministicCNN)")
