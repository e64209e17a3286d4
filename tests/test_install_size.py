"""A fresh ``pip install .`` of the base package with a CPU-only torch stays under 1.6 GB (issue 22).

CI has no CPU torch (only PyPI's CUDA build can be reached), so the check is made of two measured parts: the
base dependencies other than the torch stack, measured here in the installed environment by walking the
requirements of ``pyproject.toml`` (the same distributions a fresh install gets: 0.668 GB here and in a fresh
virtual environment alike), plus the torch stack as measured once in a fresh virtual environment, where
``pip install .`` followed torch 2.13.0+cpu (the local CPU wheel) and torchvision 0.28.0: 0.818 GB of the 1.516 GB
that ``du`` counted in its site-packages (docs/getting-started.md, "What an install takes").
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1.6e9
#: torch 2.13.0+cpu and torchvision 0.28.0 installed in a fresh virtual environment, bytes on disk (du).
CPU_TORCH_STACK = 818e6
#: pip and setuptools, which a fresh virtual environment holds whatever is installed in it.
VENV_TOOLS = 25e6
#: What a CUDA torch brings and a CPU torch does not (or what stands for the torch stack itself).
TORCH_STACK = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*)$")


def base_closure() -> dict[str, md.Distribution]:
    """The installed distributions that ``pip install .`` (no extras) brings, by name."""
    requirements = pytest.importorskip("packaging.requirements")
    utils = pytest.importorskip("packaging.utils")
    todo = [
        requirements.Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ]
    seen: dict[str, md.Distribution] = {}
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement, or another platform's
        name = utils.canonicalize_name(req.name)
        if name not in seen:
            seen[name] = md.distribution(name)
            todo.extend(requirements.Requirement(r) for r in seen[name].requires or [])
    return seen


def disk_bytes(dist: md.Distribution) -> int:
    """Bytes on disk of a distribution's installed files, as ``du`` counts them."""
    total = 0
    for f in dist.files or []:
        try:
            total += os.stat(dist.locate_file(f)).st_blocks * 512
        except OSError:
            pass
    return total


def test_the_base_install_with_a_cpu_torch_stays_under_1_6_gb():
    dists = base_closure()
    assert {"zarr", "pyarrow", "numcodecs"}.isdisjoint(dists), "the runs extra's libraries are in the base install"
    rest = {name: disk_bytes(d) for name, d in dists.items() if not TORCH_STACK.match(name)}
    assert {"numpy", "scipy", "pandas", "plotly"} <= set(rest) and min(rest.values()) >= 0
    total = sum(rest.values()) + CPU_TORCH_STACK + VENV_TOOLS
    biggest = sorted(rest.items(), key=lambda kv: -kv[1])[:5]
    print(
        f"base install with a CPU torch: {total / 1e9:.3f} GB (without the torch stack {sum(rest.values()) / 1e9:.3f} "
        f"GB; largest {[(n, round(b / 1e6)) for n, b in biggest]} MB)"
    )
    assert total < LIMIT, f"{total / 1e9:.2f} GB, over {LIMIT / 1e9} GB: {biggest}"
