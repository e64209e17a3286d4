"""What a plain install gets (issue 14, item 15): the license in pyproject's current form, every library the
package imports declared (core or the extra that brings it) and every extra used, a clear ImportError naming the
extra when one is missing, and a README install section that names every extra and the CPU-only torch index."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# programs to run the notebooks, the tests and the docs, and the maintainers' tool that remakes the shipped label
# model (python -m inv_widgets.labels.distill): not imported by the package
TOOL_EXTRAS = {"notebook", "test", "docs", "distill", "dev"}
#: Libraries the package uses without importing them itself, with how.
USED_INDIRECTLY = {"pyarrow": "pandas' Parquet engine: DataFrame.to_parquet and read_parquet in runs/"}


def _dist(requirement: str) -> str:
    """'psycopg[binary]>=3.1' -> 'psycopg'; names normalised as pip does."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _dists(requirement: str) -> set[str]:
    """The distributions a requirement installs by name: 'dask[distributed]' -> {'dask', 'distributed'}."""
    extra = re.match(r"[A-Za-z0-9._-]+\[([^\]]*)\]", requirement)
    return {_dist(requirement)} | ({_dist(e) for e in extra.group(1).split(",")} if extra else set())


def _imported_modules() -> set[str]:
    """Top-level names of every module imported by the package's code (also inside functions)."""
    names = set()
    for path in (ROOT / "inv_widgets").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"inv_widgets", "__future__"}


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # PEP 639: a string, not the deprecated {text = ...} or {file = ...} table
    assert project["license-files"] == ["LICENSE"]
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]  # not both (PEP 639)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    assert "setuptools>=77" in " ".join(PYPROJECT["build-system"]["requires"])  # the first that reads this form


def test_every_library_imported_is_declared_and_every_extra_is_used():
    project = PYPROJECT["project"]
    core = set().union(*(_dists(r) for r in project["dependencies"]))
    extras = {name: {_dist(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()}
    brought = {name: set().union(*(_dists(r) for r in reqs)) for name, reqs in project["optional-dependencies"].items()}
    declared = core.union(*brought.values())
    by_module = importlib.metadata.packages_distributions()
    imported = {}
    for module in _imported_modules():
        dists = {_dist(d) for d in by_module.get(module, [])}
        assert dists, f"the package imports {module!r}, which no installed distribution provides"
        imported[module] = dists
    undeclared = {m: d for m, d in imported.items() if not d & declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    used = set().union(*imported.values()) | set(USED_INDIRECTLY)
    for name, dists in extras.items():
        if name in TOOL_EXTRAS:
            continue
        unused = {d for d in dists if d not in used and d.split("[")[0] not in used}
        assert not unused, f"the {name!r} extra declares {unused}, which the package never imports"
    assert {"captum", "scikit-image", "threadpoolctl"} <= extras["concepts"]
    dev = project["optional-dependencies"]["dev"][0]
    assert set(re.search(r"\[(.*)\]", dev).group(1).split(",")) == set(extras) - {"dev", "distill"}


def _without(monkeypatch, *modules):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in modules else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_tcav_without_captum_names_the_concepts_extra(tiny_cnn, tmp_path, monkeypatch):
    import inv_widgets as inv
    from inv_widgets.concepts import TCAVRunner

    session = inv.Session(tiny_cnn, [torch.rand(3, 16, 16)])
    _without(monkeypatch, "captum")
    with pytest.raises(ImportError, match=r"TCAV needs captum.*pip install 'inv-widgets\[concepts\]'"):
        TCAVRunner(session, tmp_path / "cavs")
    assert not (tmp_path / "cavs").exists()


def test_lime_without_captum_or_scikit_image_names_the_extra_and_gradcam_still_works(tiny_cnn, monkeypatch):
    import inv_widgets as inv
    from inv_widgets.concepts.baselines import attribution_maps

    session = inv.Session(tiny_cnn, [torch.rand(3, 16, 16)])
    _without(monkeypatch, "captum", "skimage")
    with pytest.raises(ImportError, match=r"LIME and KernelSHAP need.*captum, scikit-image.*inv-widgets\[concepts\]"):
        attribution_maps(session, 0, methods=("lime",))
    assert attribution_maps(session, 0, methods=("gradcam",))["gradcam"].shape == (16, 16)


def test_readme_install_section_names_every_extra_and_the_cpu_torch_index():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    assert "pip install .  " in section and "pip install -e " in section  # from a checkout (issue 22)
    assert "`pip install inv-widgets`" in section and "Until then that command fails" in section
    for name, reqs in PYPROJECT["project"]["optional-dependencies"].items():
        row = re.search(rf"^\| `{name}` \|([^|]+)\|([^|]+)\|", section, re.M)
        assert row, f"the install section has no row for the {name!r} extra"
        if name not in ("dev",):
            brings = row.group(1).lower()
            for r in reqs:
                first = _dist(r).split("-")[0]
                assert first in brings.replace(" ", "-") or first in brings, (name, r, row.group(0))
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in section
    assert "CUDA" in section and "3 GB" in section
    # offline or behind a mirror: a wheel carried over, the mirror's index, or a folder of wheels (issue 22)
    assert "mirror" in section and "--find-links" in section and "pip download" in section


def test_stored_runs_without_the_runs_extra_name_it_before_any_work(tiny_cnn, tmp_path, monkeypatch):
    """zarr and pyarrow serve only stored runs, so they are the ``runs`` extra's (issue 22): without them
    explain_dataset and Run.open say the install command, and nothing is written."""
    import inv_widgets as inv

    project = PYPROJECT["project"]
    base = {_dist(r) for r in project["dependencies"]}
    assert not base & {"zarr", "pyarrow", "numcodecs"}
    assert {"zarr", "pyarrow"} <= {_dist(r) for r in project["optional-dependencies"]["runs"]}
    session = inv.Session(tiny_cnn, [torch.rand(3, 16, 16)])
    for missing in ("zarr", "pyarrow"):
        _without(monkeypatch, missing)
        with pytest.raises(ImportError, match=rf"need {missing}.*pip install 'inv-widgets\[runs\]'"):
            inv.explain_dataset(session, out=tmp_path / "run")
        with pytest.raises(ImportError, match=r"pip install 'inv-widgets\[runs\]'"):
            inv.Run.open(tmp_path / "run")
        monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
