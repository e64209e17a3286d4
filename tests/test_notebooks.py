"""The notebooks run top to bottom in a fresh kernel (nbclient), as a reader would run them."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import psutil
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def run_notebook(name: str, env: dict | None = None, timeout: int = 900):
    """Execute every cell; returns the executed notebook and the kernel's resident memory (bytes) at the end."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
            pid = client.km.provisioner.pid
            rss = psutil.Process(pid).memory_info().rss
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, rss


def outputs(nb, kind=None):
    for cell in nb.cells:
        if cell.cell_type == "code":
            for out in cell.outputs:
                if kind is None or out.output_type == kind:
                    yield out


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.slow
def test_01_explore_runs_offline_and_stays_small():
    nb, rss = run_notebook("01_explore.ipynb", env={"INV_RANDOM_WEIGHTS": "0"})
    assert not list(outputs(nb, "error")), [o.get("evalue") for o in outputs(nb, "error")]
    widgets = [o for o in outputs(nb, "execute_result") if WIDGET_MIME in o.get("data", {})]
    assert widgets, "the Explorer was not displayed"
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "cluster maps" in text and "w = " in text
    assert rss < 1.5e9, f"the 01_explore kernel uses {rss / 1e9:.2f} GB (Binder allows about 2 GB)"
    print(f"01_explore kernel RSS: {rss / 2**20:.0f} MiB")


@pytest.mark.slow
def test_02_your_model_runs_with_random_weights():
    nb, rss = run_notebook("02_your_model.ipynb", env={"INV_RANDOM_WEIGHTS": "1"})
    assert not list(outputs(nb, "error")), [o.get("evalue") for o in outputs(nb, "error")]
    widgets = [o for o in outputs(nb, "execute_result") if WIDGET_MIME in o.get("data", {})]
    assert len(widgets) == 2, "both Explorers (VGG-16, ResNet-50) should be displayed"
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "random weights" in text
    print(f"02_your_model kernel RSS: {rss / 2**20:.0f} MiB")


@pytest.mark.slow
def test_04_global_runs_on_a_small_labelling_session(tmp_path):
    """04_global with INV_GLOBAL_IMAGES=40 (the notebook's default is 100): simulated players, the global
    explanation, the GlobalView with its Explorer, TCAV and the HTML page, all written next to the given store."""
    store = tmp_path / "global.sqlite"
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb, rss = run_notebook("04_global.ipynb", env={"INV_GLOBAL_IMAGES": "40", "INV_LABEL_STORE": str(store)})
    assert not list(outputs(nb, "error")), [o.get("evalue") for o in outputs(nb, "error")]
    widgets = [o for o in outputs(nb, "execute_result") if WIDGET_MIME in o.get("data", {})]
    assert len(widgets) == 2, "the GlobalView and the Explorer should be displayed"
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    assert "cluster maps played" in text and "(class, layer, label) tested" in text
    assert store.exists() and (tmp_path / "global_explanation.html").stat().st_size > 10_000
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before  # nothing written next to the notebook
    print(f"04_global kernel RSS: {rss / 2**20:.0f} MiB")
