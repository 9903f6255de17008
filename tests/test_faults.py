"""Faults: SIGKILL mid-training, writes cut short, full or read-only disks, hostile checkpoints."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from probdl.bnn import BayesianCNN, Optim, load_model, train
from probdl.errors import CheckpointError
from probdl.graph.inference.torch_engine import single_thread  # one thread: comparable runs

ROOT = Path(__file__).resolve().parents[1]


# ---- hostile checkpoint files -----------------------------------------------------------------
class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a file could run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tiny_model() -> BayesianCNN:
    return BayesianCNN(1, 3, (8, 8), filters=(4,), dense=(8,), seed=0)


def _crafted_files(tmp_path: Path) -> dict[str, Path]:
    """Three ways to smuggle the payload: in a valid checkpoint, as a training state, as pickle."""
    marker = tmp_path / "pwned"
    model_path = _tiny_model().save(tmp_path / "good.pt")
    # our own file, just written: trusted, so the full unpickler may read it
    good = torch.load(model_path, weights_only=False)
    good["torch_version"] = str(good.get("torch_version"))
    (tmp_path / "ckpt").mkdir()
    files = {"model": tmp_path / "model.pt", "training": tmp_path / "ckpt" / "checkpoint.pt",
             "raw": tmp_path / "raw.pt"}
    torch.save(dict(good, classes=[_Payload(marker), "b", "c"]), files["model"])
    training = {"format": "probdl.bnn.training", "version": good["version"], "model": good,
                "epoch": 1, "rng": _Payload(marker)}
    torch.save(training, files["training"])
    with open(files["raw"], "wb") as fh:
        pickle.dump({"format": "probdl.bnn", "payload": _Payload(marker)}, fh, protocol=2)
    return files


def test_a_crafted_pickle_payload_is_refused_and_never_runs(tmp_path):
    files = _crafted_files(tmp_path)
    marker = tmp_path / "pwned"
    for path in (files["model"], files["raw"]):
        for load in (load_model, BayesianCNN.load):
            with pytest.raises(CheckpointError, match="weights_only"):
                load(path)
    model = _tiny_model()
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6) % 3
    with pytest.raises(CheckpointError, match="weights_only"):
        train(model, (x, y), epochs=2, checkpoint_dir=files["training"].parent, resume=True,
              progress=False)
    assert not marker.exists()
    # the control: plain pickle WOULD have run it
    with open(files["raw"], "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_truncated_and_foreign_checkpoints_give_checkpoint_errors(tmp_path):
    path = _tiny_model().save(tmp_path / "model.pt")
    data = path.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 3):
        broken = tmp_path / f"cut{cut}.pt"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_model(broken)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match=r"not a probdl\.bnn checkpoint"):
        load_model(tmp_path / "foreign.pt")


# ---- writes cut short -------------------------------------------------------------------------
_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from probdl.files import atomic_write
    with atomic_write(sys.argv[1], "wb") as fh:
        for _ in range(400):
            fh.write(b"N" * 65536)
            fh.flush()
            time.sleep(0.005)
""")


def test_sigkill_during_an_atomic_write_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"OLD" * 1000)
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once the temporary file is partly written
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if temps and temps[0].stat().st_size > 65536 * random.randint(2, 20):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert target.read_bytes() == b"OLD" * 1000


# ---- SIGKILL mid-training, then resume ---------------------------------------------------------
_TRAINER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from tests.test_faults import _killable_run
    _killable_run(sys.argv[1], progress=False)
""")
EPOCHS = 24


def _killable_run(checkpoint_dir, **kwargs):
    from probdl.data import load_digits, split

    data = load_digits()
    data = data.subset(range(360))
    tr, va, _ = split(data, val=0.25, test=0.1, seed=0)
    model = BayesianCNN(1, 10, (8, 8), filters=(4,), dense=(16,), seed=0)
    result = train(model, tr, va, epochs=EPOCHS, optim=Optim(batch_size=32, lr=1e-2),
                   checkpoint_dir=checkpoint_dir, seed=0, resume=True, **kwargs)
    return model, result


def _checkpoint_epoch(path: Path) -> int:
    """The epoch of the checkpoint at path (0 when none yet); loading proves it whole."""
    if not path.exists():
        return 0
    return int(torch.load(path, weights_only=True)["epoch"])


def test_training_killed_at_a_random_epoch_resumes_to_the_same_model(tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", _TRAINER, str(killed_dir)], cwd=ROOT, env=env)
    with single_thread():
        reference, ref_result = _killable_run(reference_dir, progress=False)
    kill_after = random.randint(2, EPOCHS // 2)
    ckpt = killed_dir / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while _checkpoint_epoch(ckpt) < kill_after and child.poll() is None:
        assert time.monotonic() < deadline, "the training child made no progress"
        time.sleep(0.02)
    time.sleep(random.uniform(0, 0.05))  # anywhere inside the next epoch, or its checkpoint write
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "the child finished before it could be killed"
    done = _checkpoint_epoch(ckpt)
    assert kill_after <= done < EPOCHS
    with single_thread():
        resumed, result = _killable_run(killed_dir, progress=False)
    assert [row["epoch"] for row in result.history] == list(range(1, EPOCHS + 1))
    assert result.best_epoch == ref_result.best_epoch
    for a, b in zip(result.history, ref_result.history, strict=True):
        assert a["val_nll"] == pytest.approx(b["val_nll"], rel=1e-4)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1e-9)
    for (name, p), q in zip(resumed.state_dict().items(), reference.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    assert load_model(killed_dir / "model.pt").config() == reference.config()


# ---- full disks and read-only folders ---------------------------------------------------------


def test_training_refuses_an_unusable_checkpoint_folder_before_the_first_step(tmp_path,
                                                                              monkeypatch):
    (tmp_path / "file").write_text("x")
    model = _tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    data = (torch.rand(6, 1, 8, 8), torch.arange(6) % 3)
    with pytest.raises(CheckpointError, match="checkpoint folder cannot be created"):
        train(model, data, epochs=1, checkpoint_dir=tmp_path / "file" / "ckpt", progress=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 4096))
    with pytest.raises(CheckpointError, match=r"checkpoint folder has 0\.0 MiB free"):
        train(model, data, epochs=1, checkpoint_dir=tmp_path / "full", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert list((tmp_path / "full").iterdir()) == []


def test_cli_train_into_an_unusable_folder_is_a_clear_error(tmp_path, capsys):
    from probdl.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["train", "--out", str(tmp_path / "file" / "run"), "--epochs", "1"]) == 1
    assert "cannot be created" in capsys.readouterr().err
