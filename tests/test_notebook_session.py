"""notebooks/03_label_session.ipynb runs top to bottom headless and writes only to the store it is given."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient
from test_notebooks import NOTEBOOKS, WIDGET_MIME, outputs


def test_03_label_session_runs_with_a_given_store(tmp_path, monkeypatch):
    store = tmp_path / "session.sqlite"
    monkeypatch.setenv("INV_LABEL_STORE", str(store))
    monkeypatch.setenv("INV_GAME_IMAGES", "3")
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    nb = nbformat.read(NOTEBOOKS / "03_label_session.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    assert not list(outputs(nb, "error")), [o.get("evalue") for o in outputs(nb, "error")]
    assert any(WIDGET_MIME in o.get("data", {}) for o in outputs(nb, "execute_result")), "the game was not shown"
    assert store.exists()  # the shared store was opened where the host said
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before  # nothing written next to the notebook
