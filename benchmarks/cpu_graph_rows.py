"""CPU time per row of ``bn.marginals`` on fresh rows, the cases tuned in issue 15's round 3.

    python -m benchmarks.cpu_graph_rows                      # every case below
    python -m benchmarks.cpu_graph_rows insurance,alarm      # only these networks

Rows come from bench_graph's ``regime_rows`` (seed 1); one warm-up call on 5 other rows, then
three calls on the same fresh rows, timed with ``time.process_time`` (the machine is shared:
CPU time, best of three). Prints milliseconds of CPU per row.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks.bench_graph import regime_rows
from probdl.graph import BayesNet

CASES = [("insurance", "20% observed", 1000), ("alarm", "20% observed", 1000),
         ("child", "20% observed", 1000), ("hailfinder", "20% observed", 1000),
         ("hepar2", "20% observed", 1000), ("win95pts", "20% observed", 1000),
         ("andes", "20% observed", 200), ("pigs", "20% observed", 200),
         ("alarm", "few hidden", 1000), ("child", "few hidden", 1000)]


def main() -> None:
    only = sys.argv[1].split(",") if len(sys.argv) > 1 else None
    for name, regime, n in CASES:
        if only and name not in only:
            continue
        bn = BayesNet.example(name)
        rows = regime_rows(bn, n + 5, 1, regime)
        bn.marginals(rows.iloc[:5])
        fresh = rows.iloc[5:]
        times = []
        for _ in range(3):
            start = time.process_time()
            bn.marginals(fresh)
            times.append((time.process_time() - start) / n * 1e3)
        print(f"{name:10s} {regime:13s} {n:5d} rows: CPU ms per row {min(times):.3f} "
              f"(all {' '.join(f'{t:.3f}' for t in times)})", flush=True)


if __name__ == "__main__":
    main()
