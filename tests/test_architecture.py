"""The layout rules of DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "probdl"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join(parts)
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


@pytest.mark.parametrize("world, other", [("graph", "probdl.bnn"), ("bnn", "probdl.graph")])
def test_graph_and_bnn_never_import_each_other(world, other):
    for path in (PACKAGE / world).rglob("*.py"):
        bad = {m for m in imported_modules(path) if m == other or m.startswith(other + ".")}
        assert not bad, f"{path} imports {bad}"


def test_only_the_plotting_modules_import_matplotlib():
    allowed = {"plots.py"}
    for path in PACKAGE.rglob("*.py"):
        if path.name in allowed:
            continue
        assert not any(m.startswith("matplotlib") for m in imported_modules(path)), path


def test_only_the_cli_parses_arguments():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "cli.py":
            assert "argparse" not in {m.split(".")[0] for m in imported_modules(path)} or (
                "ArgumentParser(" not in path.read_text()
            ), path


def test_importing_one_world_does_not_load_the_other():
    code = (
        "import sys, probdl.graph, probdl.data; "
        "assert 'probdl.bnn' not in sys.modules, 'graph loaded bnn'; "
        "import probdl.bnn; "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_public_names_resolve():
    import probdl

    for name in probdl.__all__:
        assert getattr(probdl, name) is not None, name
