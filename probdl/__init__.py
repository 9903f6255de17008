"""probdl: discrete Bayesian networks and Bayesian CNNs in one toolkit.

    import probdl
    bn = probdl.BayesNet.example("asia")
    print(bn.query(["lung"], evidence={"smoke": "yes"})["lung"])

The public names are re-exported here and imported on first use, so ``import probdl`` stays
fast and a user of one half never pays for loading the other.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "ProbdlError": "probdl.errors",
    "DataError": "probdl.errors",
    "ModelError": "probdl.errors",
    "InferenceError": "probdl.errors",
    "CheckpointError": "probdl.errors",
    # data
    "ImageDataset": "probdl.data",
    "load_digits": "probdl.data",
    "load_idx": "probdl.data",
    "load_cifar": "probdl.data",
    "load_image_folder": "probdl.data",
    "make_shapes": "probdl.data",
    "split": "probdl.data",
    "Standardize": "probdl.data",
    "Augment": "probdl.data",
    # graph
    "BayesNet": "probdl.graph",
    "learn_structure": "probdl.graph",
    # bnn
    "BayesianCNN": "probdl.bnn",
    "DeterministicCNN": "probdl.bnn",
    "MCDropoutCNN": "probdl.bnn",
    "Prediction": "probdl.bnn",
    "train": "probdl.bnn",
    "predict": "probdl.bnn",
    "evaluate": "probdl.bnn",
    # hybrid
    "HybridModel": "probdl.hybrid",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'probdl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
