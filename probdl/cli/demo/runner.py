"""`probdl demo`: every part of the main job, end to end on bundled data.

    from probdl.cli.demo.runner import run_demo
    run_demo("demo_out", parts=["graph"])      # the summary rows, also printed

Each part is a module ``probdl/cli/demo/<name>_part.py`` with ``run(out_dir) -> [(label,
value)]``. Parts are imported only when they run, so the graph parts never load the CNN side.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from probdl.errors import DataError

PARTS = {
    "data": "Data preparation",
    "graph": "Bayesian network inference",
    "em": "Learning from missing data (EM)",
    "bnn": "Bayesian CNN",
    "hybrid": "Hybrid: digit sums",
}


def run_demo(
    out_dir: str | Path = "demo_out", parts: list[str] | None = None
) -> list[tuple[str, str]]:
    """Run the demo parts in order, print a summary table and return its rows."""
    unknown = sorted(set(parts or ()) - set(PARTS))
    if unknown:
        raise DataError(f"unknown demo part(s) {unknown}; choose from {list(PARTS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str]] = []
    started = time.perf_counter()
    for name, title in PARTS.items():
        if parts is not None and name not in parts:
            continue
        module = importlib.import_module(f"probdl.cli.demo.{name}_part")
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
