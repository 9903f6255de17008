"""What the three CNNs share: configuration, input checks, standardization, save and load.

    from probdl.bnn import BayesianCNN
    model = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    model.save("model.pt")
    same = BayesianCNN.load("model.pt")     # torch.load(weights_only=True) underneath

Besides its weights a model carries what prediction needs to read an image the way training
did: the per-channel standardization x' = (x - mean_c) / std_c, the pixel range seen in
training (images far outside it are refused), the temperature T of post-hoc calibration
(probabilities softmax(logits / T)), the class names and prior, and the split it was trained on.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import torch
from pyro.nn import PyroModule

from probdl.bnn import checkpoint
from probdl.bnn.architecture import Architecture
from probdl.errors import CheckpointError, DataError, ModelError

__all__ = ["CNNBase", "load_model"]

#: model kinds by name, filled as subclasses are defined (checkpoints name their kind)
KINDS: dict[str, type[CNNBase]] = {}


class CNNBase(PyroModule):
    """Base of :class:`BayesianCNN`, :class:`DeterministicCNN` and :class:`MCDropoutCNN`.

    Subclasses set ``kind`` and implement ``training_loss`` and ``sample_logits``.
    """

    kind = "base"
    #: whether predictions differ between weight draws (False: one pass is the prediction)
    stochastic = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

    def __init__(self, architecture: Architecture, seed: int = 0) -> None:
        super().__init__()
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ModelError(f"seed must be a whole number, got {seed!r}.")
        self.architecture = architecture
        self.seed = seed
        self.classes_: list[str] = [str(i) for i in range(architecture.num_classes)]
        #: class frequencies of the training labels, set by ``train``; the bridge divides them out
        self.class_prior_: list[float] | None = None
        #: (lowest, highest) pixel value of the training images, set by ``train``
        self.pixel_range_: tuple[float, float] | None = None
        #: post-hoc temperature: probabilities are softmax(logits / temperature_)
        self.temperature_: float = 1.0
        #: the split the model was trained on (seed, fractions, data fingerprint), if known
        self.split_: dict[str, Any] | None = None
        self.register_buffer("standardize_mean_", None)
        self.register_buffer("standardize_std_", None)

    # ---- configuration ----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``type(self)(**model.config())`` rebuilds the model."""
        return {**self.architecture.config(), **self._extra_config(), "seed": self.seed}

    def _extra_config(self) -> dict[str, Any]:
        return {}

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters())).device

    def set_standardization(self, mean: torch.Tensor | None, std: torch.Tensor | None) -> None:
        """Per-channel statistics applied to every input (from ``probdl.data.Standardize``)."""
        if mean is None:
            self.standardize_mean_ = None
            self.standardize_std_ = None
            return
        c = self.architecture.in_channels
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != (c,) or std.shape != (c,) or (std <= 0).any():
            raise ModelError(f"standardization needs {c} means and {c} positive stds.")
        self.standardize_mean_ = mean.to(self.device)
        self.standardize_std_ = std.to(self.device)

    def prepare(self, images: torch.Tensor, where: str = "images") -> torch.Tensor:
        """Check images against the model and standardize them (on the model's device)."""
        x = check_images(images, self.architecture, where)
        check_pixel_range(x, self.pixel_range_, where)
        x = x.to(self.device, torch.float32)
        if self.standardize_mean_ is not None:
            x = (x - self.standardize_mean_[None, :, None, None]) / self.standardize_std_[
                None, :, None, None
            ]
        return x

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups for Adam; the Bayesian CNN gives its posterior scales their own."""
        return [{"params": list(self.parameters()), "lr": lr}]

    # ---- to be implemented by each model ----------------------------------------------------
    def network(self, x: torch.Tensor, weights: Any = None, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    def sample_logits(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        raise NotImplementedError

    def logits_to_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (..., K) from logits / temperature; one logit: a Bernoulli."""
        if self.temperature_ != 1.0:
            logits = logits / self.temperature_
        if self.architecture.num_outputs == 1:
            p = torch.sigmoid(logits)
            return torch.cat([1 - p, p], dim=-1)
        return torch.softmax(logits, dim=-1)

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write config, parameters and what prediction needs to one file, atomically."""
        return checkpoint.save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> CNNBase:
        """Read a model written by :meth:`save` (any of the three kinds when called on the base)."""
        return load_model(path, expected=cls, device=device)

    def extra_repr(self) -> str:
        a = self.architecture
        return (
            f"in_channels={a.in_channels}, num_classes={a.num_classes}, image_size={a.image_size},"
            f" filters={a.filters}, dense={a.dense}, weights={a.num_weights}"
        )


def load_model(
    path: str | Path, expected: type | None = None, device: str | torch.device = "cpu"
) -> CNNBase:
    """Rebuild a model saved by ``model.save``; a CheckpointError names what is wrong."""
    payload = checkpoint.read_model(path)
    path = Path(path)
    kind = payload.get("kind")
    if kind not in KINDS:
        raise CheckpointError(
            f"{path}: unknown model kind {kind!r}; expected one of {list(KINDS)}."
        )
    cls = KINDS[kind]
    if expected is not None and expected in KINDS.values() and expected is not cls:
        raise CheckpointError(
            f"{path}: holds a {kind}, not a {expected.__name__}; load it with {kind}.load(path) "
            "or probdl.bnn.load_model(path)."
        )
    try:
        model = cls(**dict(payload["config"]))
    except Exception as err:
        raise CheckpointError(
            f"{path}: its architecture config cannot be rebuilt ({err})."
        ) from None
    checkpoint.restore(model, payload, path)
    return model.to(resolve_device(device))


def check_images(images: Any, architecture: Architecture, where: str = "images") -> torch.Tensor:
    """Images as a float tensor (N, C, H, W) matching the architecture, or a DataError."""
    if hasattr(images, "images") and hasattr(images, "labels"):
        images = images.images
    try:
        x = torch.as_tensor(images)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{where}: cannot be read as a tensor ({err}).") from None
    c, (h, w) = architecture.in_channels, architecture.image_size
    if x.ndim == 3 and c == 1 and tuple(x.shape[1:]) == (h, w):
        x = x[:, None]
    if x.ndim == 4 and tuple(x.shape[1:]) == (h, w, c) and c > 1:
        raise DataError(
            f"{where}: shape {tuple(x.shape)} is channels-last (N, H, W, C); the model takes "
            f"(N, C, H, W) = (N, {c}, {h}, {w}): pass images.permute(0, 3, 1, 2) (torch) or "
            "images.transpose(0, 3, 1, 2) (numpy)."
        )
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise DataError(
            f"{where}: the model takes images of shape (N, {c}, {h}, {w}) but got "
            f"{tuple(x.shape)}; resize the images or build the model with in_channels and "
            "image_size that match them."
        )
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()
        raise DataError(
            f"{where}: {len(bad)} image(s) hold NaN or infinite pixels (first at index "
            f"{int(bad[0])}); clean or drop them before predicting."
        )
    return x


def check_pixel_range(
    x: torch.Tensor, trained: tuple[float, float] | None, where: str = "images"
) -> None:
    """A DataError when pixels lie far outside the range the model was trained on.

    "Far" is more than the training range's own width beyond either end (with a floor of 1):
    on images trained in [0, 1], pixels of 0-255 are refused, a little overshoot from resizing
    or augmentation is not.
    """
    if trained is None or x.numel() == 0:
        return
    lo, hi = trained
    slack = max(hi - lo, 1.0)
    seen_lo, seen_hi = float(x.min()), float(x.max())
    if seen_lo >= lo - slack and seen_hi <= hi + slack:
        return
    hint = (
        " They look like 0-255 pixels: divide by 255."
        if seen_hi > 2 and hi <= 1.5 and seen_hi <= 255 and seen_lo >= 0
        else " Scale them as the training images were."
    )
    raise DataError(
        f"{where}: pixel values span {seen_lo:g}..{seen_hi:g}, far outside the range the model "
        f"was trained on ({lo:g}..{hi:g}); its predictions would be meaningless.{hint}"
    )


def check_labels(labels: Any, num_classes: int, n: int, where: str = "labels") -> torch.Tensor:
    """Labels as an int64 tensor (N,) with values in range(num_classes), or a DataError."""
    try:
        y = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{where}: cannot be read as class indices ({err}).") from None
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{where}: need {n} labels in a 1-D array, got shape {tuple(y.shape)}.")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise DataError(f"{where}: labels must be whole class indices.")
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{where}: labels must lie in 0..{num_classes - 1} (the model's {num_classes} "
            f"classes), found {int(y.min())}..{int(y.max())}."
        )
    return y


def check_positive(**values: Any) -> None:
    """A ModelError naming the first argument that is not a finite number > 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ModelError(f"{name} must be a number > 0, got {value!r}.")
        if not (value > 0 and math.isfinite(value)):
            raise ModelError(f"{name} must be a finite number > 0, got {value}.")


def batch_norms(arch: Architecture) -> torch.nn.ModuleList | None:
    """One BatchNorm2d per convolution where the architecture asks for batch norm."""
    if not arch.batch_norm:
        return None
    return torch.nn.ModuleList(torch.nn.BatchNorm2d(f) for f in arch.filters)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a ModelError naming the ones that do."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelError(f"device {device!r} is not a torch device name ({err}).") from None
    available = ["cpu"]
    if torch.cuda.is_available():
        available += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} asked for, but CUDA is not available here (torch "
                f"{torch.__version__}); available devices: {', '.join(available)}."
            )
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise ModelError(
                f"device {device!r} does not exist; available devices: {', '.join(available)}."
            )
        return torch.device("cuda", index)
    if dev.type != "cpu":
        raise ModelError(
            f"device {device!r} is not supported; available devices: {', '.join(available)}."
        )
    return dev
