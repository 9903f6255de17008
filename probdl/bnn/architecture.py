"""The CNN's architecture as a functional forward pass over a flat weight vector.

    from probdl.bnn.architecture import Architecture
    arch = Architecture(in_channels=1, num_classes=10, image_size=(8, 8))
    weights = arch.init_weights(torch.Generator().manual_seed(0))   # (D,) Kaiming init
    logits = arch.forward(torch.rand(4, 1, 8, 8), arch.unflatten(weights))

All three models (Bayesian, deterministic, MC dropout) share this one description, so they
differ only in where their weights come from. Keeping every weight in one flat vector lets the
Bayesian model draw all of them at one Pyro sample site: fewer sites cost far less bookkeeping
per SVI step than one site per layer tensor.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from probdl.errors import ModelError

__all__ = ["Architecture"]

POOLINGS = ("avg", "global", "max")


@dataclass
class Architecture:
    """Layer sizes and options of the CNN.

    conv 3x3 ``filters[0]`` -> ReLU -> ... conv 3x3 ``filters[-1]`` -> ReLU -> 2x2 max pool ->
    (``pooling="avg"``: 2x2 average pool | ``"global"``: global average pool | ``"max"``:
    nothing more) -> flatten -> dense ``dense[i]`` -> ReLU -> dropout ... -> dense to the
    outputs (one logit when ``num_classes == 2``).
    """

    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    filters: tuple[int, ...] = (32, 64)
    dense: tuple[int, ...] = (128,)
    pooling: str = "avg"
    batch_norm: bool = False
    dropout: float = 0.5
    layer_shapes: list[tuple[str, tuple[int, ...]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.in_channels = _whole("in_channels", self.in_channels)
        self.num_classes = _whole("num_classes", self.num_classes)
        if isinstance(self.image_size, str) or not hasattr(self.image_size, "__len__"):
            raise ModelError(
                f"image_size must be a pair (H, W), e.g. (8, 8) or (28, 28); got "
                f"{self.image_size!r}."
            )
        size = tuple(_whole("image_size", s) for s in self.image_size)
        self.image_size = size  # type: ignore[assignment]
        self.filters = _widths("filters", self.filters)
        self.dense = _widths("dense", self.dense)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ModelError(f"dropout must be a number in [0, 1), got {self.dropout!r}.")
        if not isinstance(self.batch_norm, bool):
            raise ModelError(f"batch_norm must be True or False, got {self.batch_norm!r}.")
        if self.in_channels < 1 or self.num_classes < 2:
            raise ModelError(
                f"in_channels must be >= 1 and num_classes >= 2, got {self.in_channels} and "
                f"{self.num_classes}."
            )
        if len(self.image_size) != 2 or min(self.image_size) < 2:
            raise ModelError(f"image_size must be (H, W) with H, W >= 2, got {self.image_size}.")
        if not self.filters or min(self.filters) < 1 or (self.dense and min(self.dense) < 1):
            raise ModelError(
                f"filters needs at least one positive count and dense positive widths, got "
                f"filters={self.filters}, dense={self.dense}."
            )
        if self.pooling not in POOLINGS:
            raise ModelError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout must lie in [0, 1), got {self.dropout}.")
        h, w = self.image_size
        h, w = h // 2, w // 2
        if self.pooling == "avg":
            h, w = h // 2, w // 2
        elif self.pooling == "global":
            h, w = 1, 1
        if h < 1 or w < 1:
            raise ModelError(
                f"image_size {self.image_size} is too small for pooling={self.pooling!r}: "
                "use images of at least 4x4 or pooling='global'."
            )
        self.flat_features = self.filters[-1] * h * w
        shapes: list[tuple[str, tuple[int, ...]]] = []
        channels = self.in_channels
        for i, f in enumerate(self.filters):
            shapes += [(f"conv{i}.weight", (f, channels, 3, 3)), (f"conv{i}.bias", (f,))]
            channels = f
        width = self.flat_features
        for i, d in enumerate(self.dense):
            shapes += [(f"dense{i}.weight", (d, width)), (f"dense{i}.bias", (d,))]
            width = d
        shapes += [("out.weight", (self.num_outputs, width)), ("out.bias", (self.num_outputs,))]
        self.layer_shapes = shapes

    @property
    def num_outputs(self) -> int:
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for _, s in self.layer_shapes]

    @property
    def num_weights(self) -> int:
        return sum(self.sizes)

    def config(self) -> dict:
        cfg = asdict(self)
        cfg.pop("layer_shapes")
        cfg["image_size"] = list(self.image_size)
        cfg["filters"] = list(self.filters)
        cfg["dense"] = list(self.dense)
        return cfg

    def names(self, layers: str = "all") -> list[str]:
        """Names of the weight tensors; ``"last"`` means only the output layer's."""
        names = [n for n, _ in self.layer_shapes]
        return names if layers == "all" else names[-2:]

    def fan_in(self, name: str) -> int:
        shape = dict(self.layer_shapes)[name.replace(".bias", ".weight")]
        return math.prod(shape[1:])

    def init_weights(
        self, generator: torch.Generator, names: list[str] | None = None
    ) -> torch.Tensor:
        """A flat vector of Kaiming-normal weights (ReLU gain) and zero biases."""
        shapes = dict(self.layer_shapes)
        parts = []
        for name in names or self.names():
            n = math.prod(shapes[name])
            if name.endswith(".bias"):
                parts.append(torch.zeros(n))
            else:
                std = math.sqrt(2.0 / self.fan_in(name))
                parts.append(torch.randn(n, generator=generator) * std)
        return torch.cat(parts)

    def unflatten(
        self, flat: torch.Tensor, names: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Views of a flat (D,) or (S, D) weight vector as named layer tensors."""
        shapes = dict(self.layer_shapes)
        names = names or self.names()
        lead = flat.shape[:-1]
        chunks = flat.split([math.prod(shapes[n]) for n in names], dim=-1)
        return {n: c.reshape(*lead, *shapes[n]) for n, c in zip(names, chunks, strict=True)}

    # ---- forward passes ---------------------------------------------------------------------
    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(h, 2)
        if self.pooling == "avg":
            h = F.avg_pool2d(h, 2)
        elif self.pooling == "global":
            h = h.mean(dim=(-2, -1), keepdim=True)
        return h

    def forward(
        self,
        x: torch.Tensor,
        params: dict[str, torch.Tensor],
        norms: list[torch.nn.Module] | None = None,
        dropout: bool = False,
        variances: dict[str, torch.Tensor] | None = None,
        stats_rows: int | None = None,
        masks: int = 1,
    ) -> torch.Tensor:
        """Logits (N, outputs) for one set of weights; (masks, N, outputs) with ``masks > 1``.

        With ``variances`` (weight variances of a mean-field posterior whose means are
        ``params``), layers named there use the local reparameterization trick: each example's
        pre-activations are drawn from their exact Gaussian, which costs a second convolution
        but gives independent noise per example and lower-variance gradients.
        ``stats_rows``: in training, batch norm takes its batch statistics (and updates its
        running ones) from the first ``stats_rows`` rows only and normalizes the rest with
        them, so rows appended to a batch (the noise-contrastive images) are seen the way a
        test image is, without shifting the statistics.
        ``masks``: multi-sample dropout. The convolutions and the first dense layer run once,
        and its output is copied that many times per example, each copy with its own dropout
        mask; the layers after it run on every copy.
        """
        var = variances or {}

        def layer(op, h, name, **kw):
            w, b = params[f"{name}.weight"], params[f"{name}.bias"]
            out = op(h, w, b, **kw)
            if f"{name}.weight" in var:
                v = op(h * h, var[f"{name}.weight"], var[f"{name}.bias"], **kw)
                out = out + v.clamp_min(1e-16).sqrt() * torch.randn_like(out)
            return out

        h = x
        for i in range(len(self.filters)):
            h = layer(F.conv2d, h, f"conv{i}", padding=1)
            if norms is not None:
                h = _batch_norm(norms[i], h, stats_rows)
            h = F.relu(h)
        h = self._pool(h).flatten(1)
        for i in range(len(self.dense)):
            h = F.relu(layer(F.linear, h, f"dense{i}"))
            if self.dropout > 0:
                if i == 0 and masks > 1:  # the masks split off after the shared first layer
                    h = h.expand(masks, *h.shape)
                h = F.dropout(h, self.dropout, training=dropout)
        if masks > 1 and (self.dropout == 0 or not self.dense):
            h = h.expand(masks, *h.shape)
        return layer(F.linear, h, "out")

    def forward_samples(
        self,
        x: torch.Tensor,
        params: dict[str, torch.Tensor],
        num_samples: int,
        norms: list[torch.nn.Module] | None = None,
        dropout: bool = False,
        grouped: bool | None = None,
        rate: float | None = None,
    ) -> torch.Tensor:
        """Logits (S, N, outputs) for S weight sets at once, without a loop over samples.

        ``dropout``: masks after the dense layers, at ``rate`` (None: the training rate).

        ``params`` holds tensors with a leading sample axis S, or without one where a tensor is
        shared (a deterministic layer). Convolutions run as one grouped convolution whose groups
        are the samples (``grouped=None``: on CUDA only, see below); dense layers as one
        batched matrix product.
        """
        h = self.features_samples(x, params, num_samples, norms, grouped)
        return self.head_samples(h, params, dropout, rate)

    def features_samples(
        self,
        x: torch.Tensor,
        params: dict[str, torch.Tensor],
        num_samples: int,
        norms: list[torch.nn.Module] | None = None,
        grouped: bool | None = None,
    ) -> torch.Tensor:
        """Flattened features (S, N, F) after the convolutions and pooling, S weight sets."""
        s = num_samples
        sampled_conv = params["conv0.weight"].dim() == 5
        if sampled_conv and (x.device.type != "cuda" if grouped is None else not grouped):
            # On CPU, oneDNN's grouped convolution with one group per sample ran slower than
            # S ordinary convolutions of the whole batch (docs/tuning-log.md), so only the
            # convolutions loop; the dense layers stay batched.
            return torch.stack([self._features(x, _conv_params(params, i), norms)
                                for i in range(s)])  # fmt: skip
        return self._grouped_features(x, params, s, norms)

    def head_samples(
        self,
        h: torch.Tensor,
        params: dict[str, torch.Tensor],
        dropout: bool = False,
        rate: float | None = None,
    ) -> torch.Tensor:
        """Logits (S, N, outputs) from features (S, N, F): the dense layers, batched over S.

        Apart from :meth:`features_samples` so that several dropout rates can share one pass
        of the convolutions, which hold nearly all of the work.
        """
        p = self.dropout if rate is None else rate
        for i in range(len(self.dense)):
            h = F.relu(_batched_linear(h, params[f"dense{i}.weight"], params[f"dense{i}.bias"]))
            if p > 0:
                h = F.dropout(h, p, training=dropout)
        return _batched_linear(h, params["out.weight"], params["out.bias"])

    def _features(self, x, params, norms):
        """Flattened features (N, F) after the convolutions and pooling, one weight set."""
        h = x
        for i in range(len(self.filters)):
            h = F.conv2d(h, params[f"conv{i}.weight"], params[f"conv{i}.bias"], padding=1)
            if norms is not None:
                h = norms[i](h)
            h = F.relu(h)
        return self._pool(h).flatten(1)

    def _grouped_features(self, x, params, s, norms):
        """Features (S, N, F): samples as the groups of grouped convolutions."""
        n = x.shape[0]
        h = x
        grouped = False  # h is (N, S*C, H, W) once the samples have split apart
        for i in range(len(self.filters)):
            w, b = params[f"conv{i}.weight"], params[f"conv{i}.bias"]
            if w.dim() == 5:  # one kernel per sample
                if not grouped:
                    h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1)
                    grouped = True
                else:
                    h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1, groups=s)
            elif grouped:
                h = F.conv2d(h, w.repeat(s, 1, 1, 1), b.repeat(s), padding=1, groups=s)
            else:
                h = F.conv2d(h, w, b, padding=1)
            if norms is not None:
                if grouped:
                    c = w.shape[-4]
                    h = norms[i](h.reshape(n * s, c, *h.shape[-2:])).reshape(
                        n, s * c, *h.shape[-2:]
                    )
                else:
                    h = norms[i](h)
            h = F.relu(h)
        h = self._pool(h)
        if grouped:
            return h.reshape(n, s, -1).transpose(0, 1)  # (S, N, F)
        return h.flatten(1).expand(s, n, -1)


def _whole(name: str, value: Any) -> int:
    """An integer argument, or a ModelError naming it (floats with a fraction are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ModelError(f"{name} must be a whole number, got {value!r}.")
    return int(value)


def _widths(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ModelError(f"{name} must be a sequence of layer widths such as (32, 64): {value!r}.")
    return tuple(_whole(name, v) for v in value)


def _batch_norm(norm: torch.nn.Module, h: torch.Tensor, stats_rows: int | None) -> torch.Tensor:
    """``norm(h)``, with the training-time batch statistics of the first ``stats_rows`` rows."""
    if stats_rows is None or stats_rows >= len(h) or not norm.training:
        return norm(h)
    head = h[:stats_rows]
    mean = head.mean(dim=(0, 2, 3))
    var = head.var(dim=(0, 2, 3), unbiased=False)
    with torch.no_grad():  # the running statistics move as norm(head) would move them
        count = head.numel() // head.shape[1]
        norm.running_mean.lerp_(mean, norm.momentum)
        norm.running_var.lerp_(var * count / max(count - 1, 1), norm.momentum)
        norm.num_batches_tracked += 1
    shape = (1, -1, 1, 1)
    scale = torch.rsqrt(var + norm.eps) * norm.weight
    return (h - mean.view(shape)) * scale.view(shape) + norm.bias.view(shape)


def _batched_linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(S, N, F) inputs times per-sample (S, O, F) or shared (O, F) weights."""
    if w.dim() == 3:
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
    return F.linear(h, w, b)


def _conv_params(params: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """Sample i's convolution tensors (per-sample ones indexed, shared ones as they are)."""
    out = {}
    for k, v in params.items():
        if k.startswith("conv"):
            per_sample = v.dim() == (5 if k.endswith(".weight") else 2)
            out[k] = v[i] if per_sample else v
    return out
