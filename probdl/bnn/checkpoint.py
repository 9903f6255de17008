"""One-file model checkpoints and resumable training state, read with ``weights_only=True``.

    from probdl.bnn import load_model
    model = load_model("runs/digits/model.pt")     # whichever of the three CNNs it holds

A model file is a dict of plain types and tensors: format name and version, the model kind,
its constructor config, every parameter and buffer (the variational parameters included, all
created eagerly in ``__init__``, so nothing is missing at load time), and what prediction needs
besides: standardization, pixel range, temperature, class names and prior, the training split.
Nothing is unpickled beyond what ``weights_only`` allows. This module reads and writes the
files; :func:`probdl.bnn.base.load_model` picks the model class a file names.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from probdl.errors import CheckpointError
from probdl.files import atomic_write

__all__ = [
    "FORMAT", "OTHER_RUN_FIX", "RESAVE_FIX", "VERSION", "checkpoint_epoch",
    "load_training_state", "read_model", "restore", "save_model", "save_training_state",
]  # fmt: skip

FORMAT = "probdl.bnn"
# 2: the training tricks left the model's config; pixel range, temperature and split added
# 3: BayesianCNN's predict_dropout; a version-2 file predicts as it did, without it
# 4: BayesianCNN's components; older files hold one
VERSION = 4
_READS = (2, 3, 4)
_STD_KEYS = ("standardize_mean_", "standardize_std_")
# the fixes the messages end in, in Python's words, given to the error apart (its fix
# attribute) so that the command line can say its own instead
RESAVE_FIX = "save it again with model.save(path), or retrain"
OTHER_RUN_FIX = "resume with the same model settings, or use another checkpoint_dir"


def _payload(model: Any) -> dict[str, Any]:
    state = {
        k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k not in _STD_KEYS
    }
    std = None
    if model.standardize_mean_ is not None:
        std = {
            "mean": model.standardize_mean_.detach().cpu().clone(),
            "std": model.standardize_std_.detach().cpu().clone(),
        }
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": model.kind,
        "config": model.config(),
        "state_dict": state,
        "standardize": std,
        "classes": list(model.classes_),
        "class_prior": None if model.class_prior_ is None else list(model.class_prior_),
        "pixel_range": None if model.pixel_range_ is None else list(model.pixel_range_),
        "temperature": float(model.temperature_),
        "split": None if model.split_ is None else dict(model.split_),
        "torch_version": str(torch.__version__),
    }


def _write(obj: dict[str, Any], path: Path) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())
    return path


def save_model(model: Any, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file, fsync, rename)."""
    return _write(_payload(model), Path(path))


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for truncated or foreign files
        raise CheckpointError(
            f"{path}: cannot be read as a probdl checkpoint ({type(err).__name__}: "
            f"{_clip(str(err))}): the file is truncated, corrupt or not a torch file, or holds "
            f"objects weights_only loading refuses", fix=RESAVE_FIX
        ) from None
    if not isinstance(obj, dict) or obj.get("format") not in (FORMAT, FORMAT + ".training"):
        raise CheckpointError(
            f"{path}: not a probdl.bnn checkpoint (no format tag {FORMAT!r})", fix=RESAVE_FIX
        )
    if obj.get("version") not in _READS:
        raise CheckpointError(
            f"{path}: checkpoint format version {obj.get('version')!r}, but this probdl reads "
            f"versions {', '.join(map(str, _READS))}; re-save it with the probdl that wrote it, "
            f"or retrain."
        )
    if obj["version"] < VERSION:  # a default added since must not change an old model
        model = obj if obj["format"] == FORMAT else obj.get("model", {})
        if model.get("kind") == "BayesianCNN" and isinstance(model.get("config"), dict):
            model["config"].setdefault("predict_dropout", 0.0)
            model["config"].setdefault("components", 1)
    return obj


def _clip(reason: str, most: int = 120) -> str:
    """The first line of an error's text, cut at a word and marked if longer than ``most``."""
    line = reason.strip().splitlines()[0] if reason.strip() else "no detail"
    return line if len(line) <= most else line[:most].rsplit(" ", 1)[0] + " ..."


def _config_difference(saved: dict[str, Any], kind: str, config: dict[str, Any]) -> str:
    """What differs between a checkpoint's model and this one, briefly: "filters [32, 64]
    (this model: [16])"."""
    if saved.get("kind") != kind:  # then every setting of the other kind differs: say the kind
        return f"kind {saved.get('kind')} (this model: {kind})"
    parts: list[str] = []
    theirs = saved.get("config") or {}
    parts += [f"{key} {theirs.get(key)} (this model: {config.get(key)})"
              for key in sorted(set(theirs) | set(config)) if theirs.get(key) != config.get(key)]
    return "; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else "")


def read_model(path: str | Path) -> dict[str, Any]:
    """The model payload of a model file or of a training checkpoint."""
    payload = _read(path)
    if payload["format"] != FORMAT:
        payload = payload.get("model", {})
    return payload


def restore(model: Any, payload: dict[str, Any], path: Path) -> Any:
    """Load a payload's parameters and prediction settings into a model of its config."""
    kind = model.kind
    state = payload.get("state_dict", {})
    own = model.state_dict()
    own = {k: v for k, v in own.items() if k not in _STD_KEYS}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {keys[:4]}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise CheckpointError(
            f"{path}: its parameters do not fit the {kind} architecture in its own config "
            f"({detail}); the file was edited or comes from another architecture."
        )
    device = next(iter(model.parameters())).device
    model.load_state_dict(state, strict=False)
    model.to(device)
    std = payload.get("standardize")
    model.set_standardization(None if std is None else std["mean"],
                              None if std is None else std["std"])  # fmt: skip
    k = model.architecture.num_classes
    model.classes_ = [str(c) for c in payload.get("classes", model.classes_)]
    if len(model.classes_) != k:
        raise CheckpointError(f"{path}: {len(model.classes_)} class names for {k} classes.")
    prior = payload.get("class_prior")
    if prior is not None and len(prior) != k:
        raise CheckpointError(f"{path}: a class prior of {len(prior)} entries for {k} classes.")
    model.class_prior_ = None if prior is None else [float(p) for p in prior]
    pixels = payload.get("pixel_range")
    model.pixel_range_ = None if pixels is None else (float(pixels[0]), float(pixels[1]))
    temperature = float(payload.get("temperature", 1.0))
    if not temperature > 0:
        raise CheckpointError(f"{path}: temperature must be > 0, found {temperature}.")
    model.temperature_ = temperature
    split = payload.get("split")
    model.split_ = None if split is None else dict(split)
    model.eval()
    return model


def save_training_state(
    path, model, optimizer, scheduler, epoch, result, best_state, averages=None
) -> Path:
    """Everything ``train(resume=True)`` needs to continue after the given epoch.

    ``averages``: the running parameter averages of ``train(ema_decay=...)``, if any.
    """
    obj = {
        "format": FORMAT + ".training",
        "version": VERSION,
        "model": _payload(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": int(epoch),
        "history": list(result.history),
        "best_epoch": int(result.best_epoch),
        "best_val_nll": float(result.best_val_nll),
        "best_state": {k: v.detach().cpu() for k, v in (best_state or {}).items()},
        "rng": torch.get_rng_state(),
        "averages": None if averages is None else [a.detach().cpu() for a in averages],
    }
    return _write(obj, Path(path))


def checkpoint_epoch(path: str | Path) -> int:
    """How many epochs the training checkpoint at ``path`` holds (what ``resume`` starts after).

    Raises
    ------
    CheckpointError
        The file is no readable training checkpoint.
    """
    obj = _read_training(path)
    if not isinstance(obj.get("epoch"), int):
        raise CheckpointError(f"{path}: a model file, not a training checkpoint.")
    return obj["epoch"]


def _read_training(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's contents; a CheckpointError for a model file."""
    obj = _read(path)
    if obj["format"] != FORMAT + ".training":
        raise CheckpointError(f"{path}: a model file, not a training checkpoint.")
    return obj


def load_training_state(path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore model, optimizer and schedule from a training checkpoint in place."""
    path = Path(path)
    obj = _read_training(path)
    saved = obj["model"]
    if saved.get("kind") != model.kind or saved.get("config") != model.config():
        raise CheckpointError(
            f"{path}: the checkpoint was written for another model: "
            f"{_config_difference(saved, model.kind, model.config())}", fix=OTHER_RUN_FIX
        )
    device = next(iter(model.parameters())).device
    restore(model, saved, path)
    optimizer.load_state_dict(obj["optimizer"])
    scheduler.load_state_dict(obj["scheduler"])
    best = {k: v.to(device) for k, v in obj["best_state"].items()} or None
    averages = obj.get("averages")
    return {
        "averages": None if averages is None else [a.to(device) for a in averages],
        "epoch": obj["epoch"],
        "history": obj["history"],
        "best_epoch": obj["best_epoch"],
        "best_val_nll": obj["best_val_nll"],
        "best_state": best,
        "rng": obj["rng"],
    }
