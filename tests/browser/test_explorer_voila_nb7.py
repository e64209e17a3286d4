"""Smoke tests: the Explorer works in Voila (a dashboard, no notebook UI) and in Notebook 7."""

from __future__ import annotations

from .explorer_ui import ExplorerUI
from .pages import LONG, NotebookPage

NOTEBOOK = "01_explore.ipynb"


def _use_it(page, ui: ExplorerUI, nb: NotebookPage | None = None):
    first = ui.wait_gallery(LONG)
    assert first["count"] >= 1 and first["loaded"], first
    # interactive, not a static render: a key moves the layer and the kernel answers with new maps
    layer0 = ui.readout("Layer")
    ui.focus_explorer()
    if nb is not None:
        cells, active = page.locator(".jp-Notebook .jp-Cell").count(), nb.active_cell_index()
    page.keyboard.press("ArrowLeft")
    after = ui.wait_gallery_change(first["rev"])
    assert ui.wait_layer_matches_gallery() != layer0 and after["loaded"]
    if nb is not None:  # the notebook did not take the key
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells and nb.active_cell_index() == active
    return after


def test_voila_serves_a_working_explorer(browser, jupyter_server, screenshots_dir):
    server = jupyter_server("voila", notebooks=[NOTEBOOK], notebook=NOTEBOOK)
    ctx = browser.new_context(viewport={"width": 1300, "height": 1500})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(server.url(""), wait_until="domcontentloaded")
        ui = ExplorerUI(page)
        _use_it(page, ui)
        assert page.locator(".cm-editor:visible, .jp-InputArea-editor:visible").count() == 0  # no code: a dashboard
        page.wait_for_timeout(500)
        page.locator(".inv-explorer").screenshot(path=str(screenshots_dir / "explorer_voila.png"))
        assert not errors, errors
    finally:
        ctx.close()


def test_notebook7_runs_the_explorer(browser, jupyter_server):
    server = jupyter_server("notebook", notebooks=[NOTEBOOK])
    ctx = browser.new_context(viewport={"width": 1300, "height": 1100})
    page = ctx.new_page()
    try:
        nb = NotebookPage(page, server, NOTEBOOK).open()
        nb.run_all()
        assert not nb.error_outputs(), nb.error_outputs()
        _use_it(page, ExplorerUI(page), nb)
    finally:
        ctx.close()
