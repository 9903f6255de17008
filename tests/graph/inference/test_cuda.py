"""The engine on a CUDA device gives the CPU's answers (run on a GPU machine; skipped without)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probdl.graph import BayesNet
from probdl.graph.inference.torch_engine import log_evidence

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_matches_cpu():
    bn = BayesNet.example("alarm")
    rows = bn.sample(300, seed=1)
    rows = rows.mask(np.random.default_rng(0).random(rows.shape) < 0.2)
    gpu = BayesNet.example("alarm")
    gpu.device = torch.device("cuda")
    cpu_post, gpu_post = bn.marginals(rows), gpu.marginals(rows)
    for v in bn.variables:
        np.testing.assert_allclose(gpu_post[v], cpu_post[v], atol=1e-12)
    np.testing.assert_allclose(gpu.log_likelihood(rows), bn.log_likelihood(rows), atol=1e-10)
    assert (gpu.map(rows.iloc[:50]) == bn.map(rows.iloc[:50])).drop(columns="log_prob").all().all()
    cpts = [torch.tensor(bn.cpd(v), device="cuda", requires_grad=True) for v in bn.variables]
    states, observed = bn.encode(rows)
    logp = log_evidence(bn, states, ~observed, cpts)
    logp.sum().backward()
    assert all(bool(torch.isfinite(c.grad).all()) for c in cpts)
