"""The GlobalView in JupyterLab 4, driven like a person would: run notebooks/04_global.ipynb (30 images),
pick a class, read the columns, click an example and check that the Explorer shows that image and layer.

The kernel's label store is written to a file the test names (INV_LABEL_STORE): the test builds the same
global explanation from it in its own process, to know what the page must show.
"""
from __future__ import annotations

import pytest
from PIL import Image

from .pages import LONG, NotebookPage

NB = "04_global.ipynb"
N_IMAGES = 30
VIEW = ".inv-global"


def _state(page) -> dict:
    return page.evaluate(
        """(sel) => { const v = document.querySelector(sel);
            if (!v) return null;
            const cols = Array.from(v.querySelectorAll('.inv-global-col'));
            return {rev: v.dataset.revision || '', cls: v.dataset.class || '',
                    active: (v.querySelector('.inv-global-class.inv-active') || {}).textContent || '',
                    classes: Array.from(v.querySelectorAll('.inv-global-class')).map(b => b.textContent),
                    layers: cols.map(c => c.dataset.layer),
                    headers: cols.map(c => c.querySelector('.inv-global-layer').textContent),
                    labels: cols.map(c => Array.from(c.querySelectorAll('.inv-global-name')).map(n => n.textContent)),
                    examples: cols.map(c => Array.from(c.querySelectorAll('.inv-global-label')).map(
                        r => r.querySelectorAll('img.inv-global-example').length)),
                    loaded: Array.from(v.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0),
                    message: (v.querySelector('.inv-global-message') || {}).textContent || '',
                    error: (v.querySelector('.inv-global-error') || {}).textContent || ''};
        }""", VIEW)


def _wait_revision_change(page, old: str, timeout: float = 60_000) -> dict:
    page.wait_for_function(
        "([sel, old]) => { const v = document.querySelector(sel); return v && v.dataset.revision && v.dataset.revision !== old; }",
        arg=[VIEW, old], timeout=timeout)
    return _state(page)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """What the kernel built: filled in once the notebook has run (from the store file it wrote)."""
    return {"store": tmp_path_factory.mktemp("global-store") / "global.sqlite"}


def _build_oracle(store_path):
    import inv_widgets as inv

    model, data = inv.demo.load(n=N_IMAGES)
    session = inv.Session(model, data)
    with inv.LabelStore(store_path) as store:
        ge = inv.GlobalExplanation.from_store(store, session)
    return session, ge


@pytest.mark.timeout(1500)
def test_pick_a_class_read_the_columns_and_open_an_example(browser, jupyter_server, oracle, screenshots_dir):
    server = jupyter_server("lab", notebooks=[NB], env={"INV_GLOBAL_IMAGES": str(N_IMAGES),
                                                         "INV_LABEL_STORE": str(oracle["store"])})
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
    page = ctx.new_page()
    try:
        nb = NotebookPage(page, server, NB).open()
        nb.command("application:toggle-left-area")
        nb.run_all(timeout=LONG * 3)
        assert nb.error_outputs() == [], nb.error_outputs()
        page.wait_for_function("(sel) => { const v = document.querySelector(sel); return v && v.dataset.revision; }",
                               arg=VIEW, timeout=LONG)
        session, ge = _build_oracle(oracle["store"])
        first = _state(page)
        assert first["classes"] == session.classes
        assert first["layers"] == session.layers  # one column per layer, in forward order
        assert [h for h in first["headers"]] == [name.split(".")[-1] for name in session.layers]

        # --- pick a class: the picker, the columns and the labels follow ------------------------------
        target = next(c for c in reversed(session.classes) if ge.n_images(c) and c != first["cls"])
        page.locator(f"{VIEW} .inv-global-class", has_text=target).first.click()
        st = _wait_revision_change(page, first["rev"])
        page.wait_for_function(
            "(sel) => Array.from(document.querySelectorAll(sel + ' img')).every(i => i.complete && i.naturalWidth > 0)",
            arg=VIEW, timeout=30_000)
        st = _state(page)
        assert st["cls"] == target and st["active"] == target and st["error"] == ""
        for layer, labels, examples in zip(session.layers, st["labels"], st["examples"]):
            top = ge.top(target, layer)
            assert labels == list(top["label"]), layer
            assert examples == [min(3, len(e)) for e in top["examples"]], layer
        assert sum(map(sum, st["examples"])) > 0 and st["loaded"]
        # the trends panel is a plotly figure with the class's rising and falling labels
        page.locator(".inv-global-view .js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
        page.wait_for_function(
            "(t) => Array.from(document.querySelectorAll('.inv-global-view .js-plotly-plot .gtitle'))"
            ".some(e => e.textContent.includes(t))", arg=target, timeout=30_000)

        page.locator(VIEW).scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.locator(".inv-global-view").screenshot(path=str(screenshots_dir / "global_view.png"))
        img = Image.open(screenshots_dir / "global_view.png")
        assert img.width > 600 and img.height > 300

        # --- click an example of the deepest layer: the Explorer shows that image and layer ----------
        last = len(session.layers) - 1
        key = ge.top(target, last).iloc[0]["examples"][0]
        before_title = page.locator(".inv-explorer .inv-gallery .inv-gallery-title").text_content()
        col = page.locator(f"{VIEW} .inv-global-col").nth(last)
        col.locator(".inv-global-label").first.locator("img.inv-global-example").first.click()
        i = session.index_of(key.image_id)
        page.wait_for_function(
            "(i) => { const c = document.querySelector('.inv-explorer .inv-header .inv-thumb.inv-current');"
            " return c && Number(c.dataset.index) === i; }", arg=i, timeout=LONG)
        page.wait_for_function(
            "(layer) => (document.querySelector('.inv-explorer .inv-gallery .inv-gallery-title') || {})"
            ".textContent?.startsWith(layer + ' ')", arg=key.layer, timeout=60_000)
        title = page.locator(".inv-explorer .inv-gallery .inv-gallery-title").text_content()
        assert title != before_title and f"“{target}”" in title
        # the cluster map of the example is the one selected in the gallery and the detail view
        _, cl, j = session.locate(key)
        page.wait_for_function(
            "(j) => { const c = document.querySelector('.inv-explorer .inv-gallery .inv-card.inv-selected');"
            " return c && Number(c.dataset.index) === j; }", arg=j, timeout=30_000)
        st = _state(page)
        assert st["message"].startswith(f"Opened in the Explorer: image {i}, {key.layer}"), st["message"]
        assert st["error"] == ""
        assert page.locator(".inv-explorer .inv-detail .inv-detail-title").text_content().startswith(
            f"Cluster map {j + 1} of")
    finally:
        ctx.close()
