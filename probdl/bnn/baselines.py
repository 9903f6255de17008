"""The two baselines of the Bayesian CNN: MAP point estimates, and MC dropout on top of them.

    import torch
    from probdl.bnn import DeterministicCNN, MCDropoutCNN
    model = MCDropoutCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    x = model.prepare(torch.rand(5, 1, 8, 8))
    logits = model.sample_logits(x, num_samples=4)   # (4, 5, 10): one dropout mask per draw

Both share the Bayesian CNN's architecture (:class:`probdl.bnn.architecture.Architecture`) and
API, so that they differ from it only in where the weights come from. MAP maximizes
log p(y | x, w) + log p(w) with the Normal(0, prior_sigma) prior, i.e. weight decay
|w|^2 / (2 sigma^2 N) per example; MC dropout (Gal and Ghahramani 2016) keeps the training
dropout on when predicting and treats each mask as a draw from an approximate posterior.
"""

from __future__ import annotations

from typing import Any

import torch

from probdl.bnn.architecture import Architecture
from probdl.bnn.base import CNNBase, batch_norms, check_positive
from probdl.errors import ModelError

__all__ = ["DeterministicCNN", "MCDropoutCNN"]


class DeterministicCNN(CNNBase):
    """The same CNN with point-estimate weights: MAP under a Normal(0, prior_sigma) prior."""

    kind = "DeterministicCNN"
    stochastic = False
    test_dropout = False

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        filters: tuple[int, ...] = (32, 64),
        dense: tuple[int, ...] = (128,),
        pooling: str = "avg",
        batch_norm: bool = False,
        dropout: float = 0.5,
        prior_sigma: float = 1.0,
        seed: int = 0,
    ) -> None:
        arch = Architecture(
            in_channels, num_classes, image_size, filters, dense, pooling, batch_norm, dropout
        )
        super().__init__(arch, seed)
        check_positive(prior_sigma=prior_sigma)
        self.prior_sigma = float(prior_sigma)
        gen = torch.Generator().manual_seed(seed)
        self.weights = torch.nn.Module()
        self.weights.flat = torch.nn.Parameter(arch.init_weights(gen))
        self.weights.norms = batch_norms(arch)

    def _extra_config(self) -> dict[str, Any]:
        return {"prior_sigma": self.prior_sigma}

    @property
    def _w(self) -> torch.nn.Module:
        return self._modules["weights"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arch = self.architecture
        return arch.forward(x, arch.unflatten(self._w.flat), self._w.norms, dropout=self.training)

    def network(self, x: torch.Tensor, weights: None = None, **_: Any) -> torch.Tensor:
        """Logits of prepared images; dropout is on in training mode."""
        return self.forward(x)

    def log_prior(self) -> torch.Tensor:
        """log p(weights) up to a constant: the Gaussian prior of MAP, -|w|^2 / (2 sigma^2)."""
        w = self._w.flat
        return -0.5 * (w * w).sum() / self.prior_sigma**2

    @torch.no_grad()
    def sample_logits(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        arch = self.architecture
        params = arch.unflatten(self._w.flat)
        if not self.test_dropout:
            return arch.forward(x, params, self._w.norms).unsqueeze(0)
        # Convolutions are shared; only the dropout masks differ between samples.
        return arch.forward_samples(x, params, num_samples, self._w.norms, dropout=True)


class MCDropoutCNN(DeterministicCNN):
    """MAP CNN whose dropout stays on at prediction time (Gal and Ghahramani's MC dropout)."""

    kind = "MCDropoutCNN"
    stochastic = True
    test_dropout = True

    def __init__(self, *args: Any, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, dropout=dropout, **kwargs)
        if self.architecture.dropout <= 0:
            raise ModelError("MCDropoutCNN needs dropout > 0.")
