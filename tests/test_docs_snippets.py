"""Every Python block of the README and of the docs' getting-started page runs as printed (issue 22): the
blocks of one page in order, in one fresh process, in an empty folder, as a newcomer pastes them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/getting-started.md"]


def python_blocks(path: Path) -> list[str]:
    """The fenced ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S)


def test_the_pages_have_python_to_run():
    for page in PAGES:
        blocks = python_blocks(ROOT / page)
        assert blocks, page
        assert any("inv.explain(model, " in b for b in blocks), f"{page} lacks the one-line inv.explain(model, ...)"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_runs_as_printed(page, tmp_path):
    blocks = python_blocks(ROOT / page)
    script = "\n\n".join(f"# --- block {n + 1} of {page}\n{b}" for n, b in enumerate(blocks))
    (tmp_path / "snippets.py").write_text(script, encoding="utf-8")
    r = subprocess.run([sys.executable, "snippets.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{page}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    assert "Traceback" not in r.stderr
