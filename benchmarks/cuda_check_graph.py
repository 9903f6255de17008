"""A short GPU check of the Bayesian-network engine (seconds on one H100/H200).

    python -m benchmarks.cuda_check_graph

Runs all marginals, log-likelihoods and MAP for a batch of partially observed rows on CUDA
(the torch engine on the junction tree) and on the CPU (the compiled engine), requires the
answers to agree to 1e-10 (float64), and prints timings: 1,000,000 rows on alarm and hepar2,
the issue's GPU case. Exits non-zero on a mismatch.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from probdl.graph import BayesNet


def _rows(bn: BayesNet, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = bn.sample(n, seed=seed).astype(object)
    hidden = rng.random(rows.shape) < 0.3
    return rows.mask(hidden)


def _timed(fn):
    fn()  # warm-up: compile the plan, fill caches
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here; nothing to check")
        return 1
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    failures = 0
    for name, n in (("alarm", 1_000_000), ("hepar2", 1_000_000), ("hailfinder", 10_000)):
        bn = BayesNet.example(name)
        rows = _rows(bn, n)
        results = {}
        for device in ("cpu", "cuda"):
            bn.device = device
            bn.memory_budget = 16 * 2**30
            marg, t_marg = _timed(lambda bn=bn, rows=rows: bn.marginals(rows))
            ll, t_ll = _timed(lambda bn=bn, rows=rows: bn.log_likelihood(rows))
            few = rows.head(500)
            best, t_map = _timed(lambda bn=bn, few=few: bn.map(few))
            results[device] = (marg, ll, best)
            print(f"{name:10s} {device:4s} {n} rows: marginals {t_marg * 1e3:8.1f} ms, "
                  f"log-likelihood {t_ll * 1e3:8.1f} ms, MAP (500 rows) {t_map * 1e3:8.1f} ms")
        (m_cpu, ll_cpu, map_cpu), (m_gpu, ll_gpu, map_gpu) = results["cpu"], results["cuda"]
        gap = max(np.abs(m_cpu[v] - m_gpu[v]).max() for v in m_cpu)
        gap_ll = np.abs(ll_cpu - ll_gpu).max()
        same_map = map_cpu.drop(columns="log_prob").equals(map_gpu.drop(columns="log_prob"))
        print(f"  cpu vs cuda: marginals {gap:.1e}, log-likelihood {gap_ll:.1e}, "
              f"MAP states identical {same_map}")
        failures += (gap > 1e-10) + (gap_ll > 1e-8) + (not same_map)
    print("OK" if not failures else f"{failures} FAILURE(S)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
