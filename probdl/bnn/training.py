"""Training: one loop for all three CNNs, the objective passed in (Pyro SVI or MAP).

    from probdl.bnn import BayesianCNN, Optim, train
    from probdl.bnn.objectives import ELBO
    from probdl.data import load_digits, split
    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    result = train(model, tr, va, epochs=30, objective=ELBO(), optim=Optim(lr=3e-3))
    print(result.best_epoch, result.history[-1])

Each step minimizes ``objective.loss`` on a minibatch: for the Bayesian CNN
``TraceMeanField_ELBO().differentiable_loss`` of its model and guide divided by the dataset size
(:mod:`probdl.bnn.objectives`), stepped by one ``torch.optim.Adam(foreach=True)`` over all
parameters: the objective of ``pyro.infer.SVI`` without one optimizer per parameter tensor.
After every step an exponential moving average of the parameters is updated (Polyak
averaging), ``avg <- d avg + (1 - d) theta`` with ``d = min(ema_decay, (1 + t) / (10 + t))``;
validation, the best-epoch choice and the returned model use the averages. With a validation
split the model's temperature is then fitted on it (:mod:`probdl.bnn.calibration`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from probdl import distributed as ddp
from probdl.bnn.base import CNNBase, check_images, resolve_device
from probdl.bnn.calibration import fit_temperature
from probdl.bnn.checkpoint import OTHER_RUN_FIX, load_training_state, save_training_state
from probdl.bnn.objectives import default_objective
from probdl.bnn.options import Inputs, Optim, augment_standardized, epoch_augment
from probdl.bnn.prediction import predictive_probs
from probdl.errors import CheckpointError, DataError, ModelError
from probdl.files import check_writable

__all__ = ["Inputs", "Optim", "TrainResult", "train"]

@dataclass
class TrainResult:
    """What :func:`train` returns: per-epoch history and the epoch whose weights were kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_nll: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0
    temperature: float = 1.0


def _as_xy(data: Any, model: CNNBase, likelihood: Any, where: str) -> tuple[torch.Tensor, Any]:
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
    elif hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    else:
        raise DataError(
            f"{where}: expected an ImageDataset or an (images, labels) pair, got "
            f"{type(data).__name__}."
        )
    m = likelihood.images_per_example
    if m > 1:
        images = torch.as_tensor(images)
        if images.ndim != 5 or images.shape[1] != m:
            raise DataError(
                f"{where}: this likelihood takes {m} images per example, (N, {m}, C, H, W); "
                f"got {tuple(images.shape)}."
            )
        x = check_images(images.flatten(0, 1), model.architecture, where=f"{where} images")
        x = x.unflatten(0, (-1, m))
    else:
        x = check_images(images, model.architecture, where=f"{where} images")
    y = likelihood.targets(labels, model, len(x), where=f"{where} labels")
    if len(x) == 0:
        raise DataError(f"{where}: no examples.")
    return x, y


def _nll_accuracy(model: CNNBase, x: torch.Tensor, y: torch.Tensor, samples: int) -> tuple:
    # The best epoch is chosen on the predictive without dropout masks (a BayesianCNN with
    # predict_dropout > 0): a masked single draw is noisier and picked worse epochs on 8x8
    # digits (docs/tuning-log.md, issue 16, sixth round); temperature and predict keep them.
    # A mixture is scored on an equal share of draws from every component, not on one.
    k = getattr(model, "components", 1)
    samples = -(-samples // k) * k
    rate = getattr(model, "predict_dropout", 0.0)
    if rate:
        model.predict_dropout = 0.0
    try:
        probs = predictive_probs(model, x, samples, prepared=True).mean(0)
    finally:
        if rate:
            model.predict_dropout = rate
    nll = -probs.gather(1, y[:, None]).clamp_min(1e-12).log().mean()
    acc = (probs.argmax(1) == y).float().mean()
    return float(nll), float(acc)


def _prepared(model: CNNBase, x: torch.Tensor, where: str) -> torch.Tensor:
    """``model.prepare`` for (N, C, H, W) or (N, m, C, H, W) images."""
    if x.ndim == 5:
        return model.prepare(x.flatten(0, 1), where).unflatten(0, x.shape[:2])
    return model.prepare(x, where)


def train(
    model: CNNBase,
    train: Any,
    val: Any = None,
    epochs: int = 30,
    objective: Any = None,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | Path | None = None,
    seed: int = 0,
    *,
    optim: Optim | None = None,
    inputs: Inputs | None = None,
    resume: bool = False,
    calibrate: bool = True,
    val_samples: int = 1,
    progress: bool = True,
    distributed: bool | None = None,
) -> TrainResult:
    """Fit a :class:`BayesianCNN` by SVI, or a baseline by MAP, on minibatches.

    Parameters
    ----------
    model : BayesianCNN, DeterministicCNN or MCDropoutCNN
        Trained in place; at the end it holds the weights of the best validation epoch.
    train, val : ImageDataset or (images, labels)
        ``val`` drives early stopping, the best-epoch choice (validation NLL) and the
        temperature; without it the last epoch is kept and the temperature stays 1.
    epochs : training length.
    objective : ``probdl.bnn.objectives.ELBO`` (Bayesian CNN) or ``MAP`` (baselines), with the
        likelihood inside; None: ``ELBO()`` or ``MAP()``. A resumed run uses the objective of
        this call.
    device : "cpu", "cuda" or "cuda:N".
    checkpoint_dir : directory for ``checkpoint.pt`` (every epoch, written atomically) and
        ``model.pt`` (the final model).
    seed : seeds batch order, weight noise, dropout and augmentation.
    optim : :class:`Optim` (learning rate, batch size, schedule, averaging, patience).
    inputs : :class:`Inputs` (standardization, augmentation).
    resume : continue from ``checkpoint_dir/checkpoint.pt`` if it exists.
    calibrate : fit the temperature on ``val`` after training (post-hoc temperature scaling).
    val_samples : posterior samples for the validation NLL and accuracy per epoch.
    progress : show a tqdm bar with the loss (the objective per example) and val accuracy.
    distributed : data-parallel over the ranks of a torchrun job (None: when launched by
        torchrun with several processes). Each rank takes its ``batch_size / world`` share,
        gradients are averaged over ranks (the KL counted once), rank 0 alone writes
        checkpoints and shows progress. See docs/scaling.md.
    """
    optim = Optim() if optim is None else optim
    inputs = Inputs() if inputs is None else inputs
    objective = default_objective(model) if objective is None else objective
    if not hasattr(objective, "loss") or not hasattr(objective, "check"):
        raise ModelError(
            f"objective must be a probdl.bnn.objectives.ELBO or MAP (or alike), got "
            f"{type(objective).__name__}."
        )
    objective.check(model)
    likelihood = objective.likelihood
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1 or val_samples < 1:
        raise ModelError(f"epochs and val_samples must be >= 1; got {epochs}, {val_samples}.")
    if resume and checkpoint_dir is None:
        raise ModelError("resume=True needs the checkpoint_dir of the run to continue.")
    ddp.resolve(distributed, device)
    dev = resolve_device(ddp.local_device(device))
    if checkpoint_dir is not None and ddp.is_writer():
        # a checkpoint holds ~4 copies of the weights (model, Adam's moments, best state);
        # the atomic replace needs room for two of them plus the final model
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        check_writable(checkpoint_dir, 10 * weight_bytes, "checkpoint folder", CheckpointError)
    x_train, y_train = _as_xy(train, model, likelihood, "train")
    x_val, y_val = None, None
    if val is not None:
        if not likelihood.class_labels:
            raise ModelError("validation needs a likelihood over class labels; pass val=None.")
        x_val, y_val = _as_xy(val, model, likelihood, "val")
    if likelihood.class_labels:
        if hasattr(train, "classes"):
            model.classes_ = list(train.classes)
        counts = torch.bincount(y_train.cpu(), minlength=model.architecture.num_classes)
        model.class_prior_ = (counts.double() / counts.sum()).tolist()
    model.split_ = getattr(train, "split_info", None)
    model.to(dev)
    model.pixel_range_ = (float(x_train.min()), float(x_train.max()))
    if inputs.standardize:
        dims = (0, 1, 3, 4) if x_train.ndim == 5 else (0, 2, 3)
        mean = x_train.mean(dim=dims)
        std = x_train.std(dim=dims, unbiased=False).clamp_min(1e-6)
        model.set_standardization(mean, std)
    x_train = _prepared(model, x_train, "train images")
    y_train = y_train.to(dev)
    if x_val is not None:
        x_val, y_val = model.prepare(x_val, "val images"), y_val.to(dev)

    n = len(x_train)
    batch_size = optim.batch_size
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.optimizer_groups(optim.lr), lr=optim.lr, foreach=True)
    if optim.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)),
        )
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    params = [p for p in model.parameters() if p.requires_grad]
    averages: list[torch.Tensor] | None = None
    ema_decay = optim.ema_decay
    start_epoch = 0
    ckpt_path = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir is not None else None
    torch.manual_seed(seed)
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = load_training_state(ckpt_path, model, optimizer, scheduler)
        start_epoch = state["epoch"]
        result.history = state["history"]
        result.best_epoch, result.best_val_nll = state["best_epoch"], state["best_val_nll"]
        best_state = state["best_state"]
        averages = state["averages"] if ema_decay > 0 else None
        if averages is not None and [a.shape for a in averages] != [p.shape for p in params]:
            raise CheckpointError(
                f"{ckpt_path}: its parameter averages do not fit this model", fix=OTHER_RUN_FIX
            )
        torch.set_rng_state(state["rng"])
    ddp.broadcast_parameters(model)

    started = time.perf_counter()
    bar = tqdm(range(start_epoch, epochs), desc=model.kind, leave=False,
               disable=not progress or not ddp.is_writer())
    stale = 0
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        order = ddp.shard(order).to(dev)  # this rank's rows (all of them alone)
        aug = epoch_augment(inputs.augment, seed, epoch)
        total = 0.0
        with pyro.validation_enabled(False), ddp.rank_rng(seed * 100_003 + epoch):
            local_batch = ddp.shard_size(batch_size)
            for start in range(0, len(order), local_batch):
                idx = order[start : start + local_batch]
                xb, yb = x_train[idx], y_train[idx]
                if aug is not None:
                    xb = augment_standardized(model, aug, xb)
                loss = objective.loss(model, xb, yb, idx, n, epoch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                ddp.all_reduce_gradients(model)
                optimizer.step()
                scheduler.step()
                if ema_decay > 0:
                    step = epoch * steps_per_epoch + start // local_batch
                    averages = _update_averages(averages, params, ema_decay, step)
                total += loss.detach() * len(idx)
        train_loss = ddp.sum_scalar(float(total)) / (len(order) * ddp.world_size())
        if not math.isfinite(train_loss):
            raise ModelError(
                f"training diverged at epoch {epoch + 1} (loss {train_loss}); lower lr "
                f"(now {optim.lr}) or check the data for extreme values."
            )
        model.eval()
        row = {"epoch": epoch + 1, "loss": train_loss, "kl_weight": objective.kl_weight(epoch)}
        row["lr"] = optimizer.param_groups[0]["lr"]
        with _averaged(params, averages):  # validate and keep the averages, if any
            if x_val is not None:
                row["val_nll"], row["val_accuracy"] = ddp.mean_over_shards(
                    _nll_accuracy, model, x_val, y_val, val_samples)
            row["seconds"] = time.perf_counter() - t0
            result.history.append(row)
            score = row.get("val_nll", -epoch)
            if score < result.best_val_nll or best_state is None:
                result.best_val_nll, result.best_epoch = score, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
        bar.set_postfix(
            loss=f"{train_loss:.4f}", val_acc=f"{row.get('val_accuracy', math.nan):.3f}"
        )
        if ckpt_path is not None and ddp.is_writer():
            save_training_state(
                ckpt_path, model, optimizer, scheduler, epoch + 1, result, best_state, averages
            )
        if optim.patience is not None and x_val is not None and stale >= optim.patience:
            result.stopped_early = True
            break
    bar.close()
    if best_state is not None and (x_val is not None or averages is not None):
        model.load_state_dict(copy.copy(best_state))
    if x_val is None:
        result.best_val_nll = math.nan
    model.eval()
    model.temperature_ = 1.0
    if calibrate and x_val is not None:
        result.temperature = fit_temperature(model, x_val, y_val, prepared=True, seed=seed)
    result.seconds = time.perf_counter() - started
    if checkpoint_dir is not None and ddp.is_writer():
        model.save(Path(checkpoint_dir) / "model.pt")
    return result


def _update_averages(
    averages: list[torch.Tensor] | None, params: list[torch.Tensor], decay: float, step: int
) -> list[torch.Tensor]:
    """One step of the exponential moving average; the first step starts it at the iterate.

    The decay warms up as ``min(decay, (1 + step) / (10 + step))`` (the ``num_updates`` rule
    of TensorFlow's ``ExponentialMovingAverage``), so that a run of a few dozen steps is not
    held back by its first, poor iterates; from step 170 on a decay of 0.95 applies in full.
    """
    if averages is None:
        return [p.detach().clone() for p in params]
    decay = min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for avg, p in zip(averages, params, strict=True):
            avg.lerp_(p.detach(), 1.0 - decay)
    return averages


@contextlib.contextmanager
def _averaged(params: list[torch.Tensor], averages: list[torch.Tensor] | None):
    """Hold the averaged parameters in the model for the block, then the iterates again."""
    if averages is None:
        yield
        return
    iterates = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, avg in zip(params, averages, strict=True):
            p.copy_(avg)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, it in zip(params, iterates, strict=True):
                p.copy_(it)
