"""The layout rules of docs/design.md, checked on the source.

Arrows point inward: cli and plots use everything and nothing imports them (plots only from the
cli); hybrid uses graph and bnn; graph and bnn never import each other; no private module at
the top level; no file past the length a reader can hold.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "probdl"
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions, relative ones resolved."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    parts = module_name(path).split(".")
    package_parts = parts if path.name == "__init__.py" else parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def internal_imports() -> dict[str, set[str]]:
    mods = sources()
    return {m: {t for t in imported_modules(p) if t in mods and t != m} for m, p in mods.items()}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("world, other", [("graph", "probdl.bnn"), ("bnn", "probdl.graph")])
def test_graph_and_bnn_never_import_each_other(world, other):
    for path in (PACKAGE / world).rglob("*.py"):
        bad = {m for m in imported_modules(path) if within(m, other)}
        assert not bad, f"{path} imports {bad}"


@pytest.mark.parametrize("edge, allowed", [
    ("probdl.cli", ("probdl.cli",)),
    ("probdl.plots", ("probdl.cli", "probdl.plots")),
    ("probdl.hybrid", ("probdl.cli", "probdl.hybrid")),
])
def test_the_edge_is_imported_only_from_outside_in(edge, allowed):
    for module, targets in internal_imports().items():
        if any(within(module, a) for a in allowed):
            continue
        bad = sorted(t for t in targets if within(t, edge))
        assert not bad, f"{module} imports {bad}: only {allowed} may use {edge}"


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), leaving out a package
    and its own submodules (a package re-exporting them through ``__init__`` is no cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            component.sort()
            if len(component) > 1 and not all(within(m, component[0]) for m in component):
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere():
    cycles = import_cycles(internal_imports())
    assert not cycles, f"import cycles (imports inside functions count): {cycles}"


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    graph = {"probdl.a": {"probdl.b"}, "probdl.b": {"probdl.c"}, "probdl.c": {"probdl.a"},
             "probdl.p": {"probdl.p.x"}, "probdl.p.x": {"probdl.p"}}
    assert import_cycles(graph) == [["probdl.a", "probdl.b", "probdl.c"]]


def test_no_private_module_at_the_top_level():
    private = sorted(p.name for p in PACKAGE.iterdir()
                     if p.name.startswith("_") and p.name not in ("__init__.py", "__pycache__"))
    assert not private, f"private top-level modules {private}: give them a home in a package"


def test_no_file_is_too_long_to_read():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}; split them by responsibility"


def test_only_the_plotting_module_imports_matplotlib():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "plots.py":
            continue
        assert not any(m.startswith("matplotlib") for m in imported_modules(path)), path


def test_only_the_cli_parser_parses_arguments():
    for path in PACKAGE.rglob("*.py"):
        if path != PACKAGE / "cli" / "main.py":
            assert "ArgumentParser(" not in path.read_text(), path


def test_importing_one_world_does_not_load_the_other():
    code = (
        "import sys, probdl.graph, probdl.data; "
        "assert 'probdl.bnn' not in sys.modules, 'graph loaded bnn'; "
        "import probdl.bnn; "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_the_import_rules_see_imports_inside_functions(tmp_path):
    """The checker itself: a function-level relative import is an edge."""
    pkg = tmp_path / "probdl" / "cli"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    source = pkg / "x.py"
    source.write_text("def f():\n    from . import graph\n    from ..files import atomic_write\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "probdl"
    try:
        found = imported_modules(source)
    finally:
        PACKAGE = saved
    assert {"probdl.cli.graph", "probdl.files", "probdl.files.atomic_write"} <= found


def test_public_names_resolve():
    import probdl

    for name in probdl.__all__:
        assert getattr(probdl, name) is not None, name
