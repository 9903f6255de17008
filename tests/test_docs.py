"""The documentation site builds with --strict (no broken links, no missing API objects)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mkdocs_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        mkdocs = Path(shutil.which("mkdocs") or "mkdocs")
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_every_page_in_the_nav_exists():
    import re

    nav = re.findall(r":\s*([\w-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    missing = [page for page in nav if not (ROOT / "docs" / page).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav without a file: {missing}"


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_block_and_command_of_the_page_runs_as_written(page, tmp_path):
    """README.md and docs/*.md, run by tests/_docs.py in an empty folder (see its docstring
    for what runs, the quick settings and how to mark a block that must not run)."""
    from tests._docs import runnable

    if not runnable(page):
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "tests._docs", str(page)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=850)
    # the runner's last line names the page and line that failed; above it, the error
    assert done.returncode == 0, done.stderr[-4000:]


def test_a_failing_block_is_reported_with_its_page_and_line(tmp_path, monkeypatch):
    from tests import _docs

    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\n```\n\ntext\n\n```\nprobdl bn query asia "
                    "--target nothing\n```\n\n<!-- docs-test: skip needs two machines -->\n"
                    "```python\nraise SystemExit\n```\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(_docs.Failed, match=r"page\.md, line 10: `probdl bn query asia --target "
                                           r"nothing` exited 1"):
        _docs.run_page(page)
    assert [b.skip for b in _docs.blocks(page)] == [None, None, "needs two machines"]
    page.write_text("```python\nimport probdl\n\nprobdl.no_such_name\n```\n")
    with pytest.raises(_docs.Failed, match=r"(?s)page\.md, line 2: the Python block fails:.*"
                                           r'File "page\.md", line 4'):
        _docs.run_page(page)
    page.write_text("```bash\ntorchrun --nproc_per_node 2 -m probdl.cli train --epoch 3\n```\n")
    with pytest.raises(_docs.Failed, match="do not parse"):
        _docs.run_page(page)
    assert [c.argv for b in _docs.blocks(page) for c in _docs.commands(b)] == [
        ["train", "--epoch", "3"]]
    assert _docs.quick("probdl train --epochs 30 --out r") == "probdl train --epochs 1 --out r"
