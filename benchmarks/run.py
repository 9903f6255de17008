"""`make bench`: run every benchmark side by side with its peers, then assemble the report.

    python -m benchmarks.run            # all benchmarks, full size (tens of minutes on 2 cores)
    python -m benchmarks.run --quick    # small versions, for a quick look
    python -m benchmarks.run --only graph em

Each ``benchmarks/bench_<area>.py`` writes ``benchmarks/results/<area>.md``; this script runs
them one after another (never in parallel: they would steal each other's cores) and joins the
results into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REPORT = ROOT / "docs" / "benchmarks.md"
ORDER = ["graph", "em", "bnn", "hybrid", "scaling", "gpu"]

HEADER = """# Benchmarks

probdl against its peers (pgmpy, pyAgrum, Pyro, bayesian-torch), each table measured side by side
in one run on the same machine and quoted as ratios. Regenerate with `make bench` (this page is
assembled by `python -m benchmarks.run` from `benchmarks/results/*.md`; each section names the
command that produced it, the machine and the date).

"""


def assemble() -> Path:
    sections = []
    names = sorted(RESULTS.glob("*.md"), key=lambda p: [*ORDER, p.stem].index(p.stem))
    for path in names:
        text = path.read_text().strip()
        # each result file may open with its own top-level title; here it is a section
        if text.startswith("# "):
            text = "#" + text
        sections.append(text + "\n")
    REPORT.write_text(HEADER + "\n".join(sections))
    return REPORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="areas to run (default: all)")
    parser.add_argument("--assemble-only", action="store_true")
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    failed = []
    if not args.assemble_only:
        modules = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
        for module in modules:
            area = module.removeprefix("bench_")
            if args.only and area not in args.only:
                continue
            command = [sys.executable, "-m", f"benchmarks.{module}"]
            command += ["--quick"] if args.quick else []
            print(f"== {' '.join(command)}", flush=True)
            start = time.perf_counter()
            if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
                failed.append(module)
            print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    print(f"report -> {assemble()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
