"""Seeds every random source before each test and clears Pyro's global parameter store."""

from __future__ import annotations

import os
import random

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

SEED = 1234


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(SEED)
    np.random.seed(SEED)  # noqa: NPY002 - seeds the legacy global RNG that libraries still use
    torch.manual_seed(SEED)
    try:
        import pyro
    except ImportError:  # pragma: no cover - pyro is a runtime dependency
        yield
        return
    pyro.set_rng_seed(SEED)
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()
