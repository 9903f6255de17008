"""`probdl demo`: every part of the main job, end to end on bundled data.

Each part lives in ``probdl/_demo/<part>.py`` with ``run(out_dir) -> [(label, value)]``; a part
whose module is not there yet is skipped, so the demo always runs what exists.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

PARTS = [
    ("Data preparation", "probdl._demo.data_part"),
    ("Bayesian network inference", "probdl._demo.graph_part"),
    ("Learning from missing data (EM)", "probdl._demo.em_part"),
    ("Bayesian CNN", "probdl._demo.bnn_part"),
    ("Hybrid: digit sums", "probdl._demo.hybrid_part"),
]


def run_demo(
    out_dir: str | Path = "demo_out", parts: list[str] | None = None
) -> list[tuple[str, str]]:
    """Run the demo parts in order, print a summary table and return its rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str]] = []
    started = time.perf_counter()
    for title, module_name in PARTS:
        if parts is not None and module_name.rsplit(".", 1)[-1].removesuffix("_part") not in parts:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        print(f"\n== {title} ==")
        t0 = time.perf_counter()
        summary.extend(module.run(out))
        summary.append((f"time: {title}", f"{time.perf_counter() - t0:.1f} s"))
    summary.append(("time: whole demo", f"{time.perf_counter() - started:.1f} s"))
    width = max(len(label) for label, _ in summary)
    print("\n== Summary ==")
    for label, value in summary:
        print(f"  {label:<{width}}  {value}")
    return summary
