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
        }""",
        VIEW,
    )


def _wait_revision_change(page, old: str, timeout: float = 60_000) -> dict:
    page.wait_for_function(
        "([sel, old]) => { const v = document.querySelector(sel); return v && v.dataset.revision && v.dataset.revision !== old; }",
        arg=[VIEW, old],
        timeout=timeout,
    )
    return _state(page)


def _trends_are_readable(page) -> None:
    """The trends panel as a person reads it (issue 22): each drawn label in its own colour (rising and falling
    shared one colour cycle: two labels in the same blue), the titles inside the figure, the layer names on the
    x axes off each other."""
    fig = ".inv-global-view .js-plotly-plot"
    info = page.evaluate(
        r"""(fig) => { const root = document.querySelector(fig);
            const svg = root.querySelector('.main-svg').getBoundingClientRect();
            const box = r => [r.left, r.right, r.top, r.bottom];
            const colours = Array.from(root.querySelectorAll('.scatterlayer .trace'))
                .filter(t => t.style.opacity !== '0' && t.querySelector('path.js-line'))
                .map(t => t.querySelector('path.js-line').style.stroke);
            const names = Array.from(root.querySelectorAll('.legend .traces .legendtext')).map(e => e.textContent);
            const titles = Array.from(root.querySelectorAll('.gtitle, .annotation-text'))
                .map(e => box(e.getBoundingClientRect()));
            const ticks = ['xtick', 'x2tick'].map(c => Array.from(root.querySelectorAll('.' + c + ' text'))
                .map(e => { const r = e.getBoundingClientRect(), b = e.getBBox();
                            const m = /rotate\((-?[\d.]+)/.exec(e.getAttribute('transform') || '');
                            return {cx: (r.left + r.right) / 2, left: r.left, right: r.right, w: b.width,
                                    h: b.height, angle: m ? Number(m[1]) : 0}; }));
            return {svg: box(svg), colours, names, titles, ticks}; }""",
        fig,
    )
    colours = [c for c in info["colours"] if c]
    assert len(colours) >= 2, info
    assert len(set(colours)) == len(colours), f"two labels share a colour: {info['colours']} for {info['names']}"
    left, right, top, bottom = info["svg"]
    assert len(info["titles"]) == 3, info  # the figure's title and the two panels' titles
    for x0, x1, y0, y1 in info["titles"]:
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, ("a title is cut", info)
    import math

    for axis in info["ticks"]:
        assert len(axis) >= 2, info
        for a, b in zip(axis, axis[1:]):  # neighbouring layer names do not overlap
            if a["angle"] == 0:
                assert a["right"] <= b["left"] + 0.5, ("tick labels overlap", axis)
            else:  # parallel slanted lines of text: apart by the spacing times the sine of their angle
                gap = abs(b["cx"] - a["cx"]) * abs(math.sin(math.radians(a["angle"])))
                assert gap >= 0.9 * a["h"], ("tick labels overlap", axis)


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
    server = jupyter_server(
        "lab", notebooks=[NB], env={"INV_GLOBAL_IMAGES": str(N_IMAGES), "INV_LABEL_STORE": str(oracle["store"])}
    )
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
    page = ctx.new_page()
    try:
        nb = NotebookPage(page, server, NB).open()
        nb.command("application:toggle-left-area")
        nb.run_all(timeout=LONG * 3)
        # no error; at 30 images the concept test has too few maps per label and says so (its one warning)
        errors = [o for o in nb.error_outputs() if "UserWarning: concept_test:" not in o or "not tested" not in o]
        assert errors == [], errors
        page.wait_for_function(
            "(sel) => { const v = document.querySelector(sel); return v && v.dataset.revision; }",
            arg=VIEW,
            timeout=LONG,
        )
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
            arg=VIEW,
            timeout=30_000,
        )
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
            ".some(e => e.textContent.includes(t))",
            arg=target,
            timeout=30_000,
        )

        _trends_are_readable(page)
        sizes = page.locator(f"{VIEW} img.inv-global-example").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().width)"
        )
        assert sizes and min(sizes) >= 64, sizes  # were 44 px, hard to read
        assert (
            "w̄ = mean weight of the cluster maps carrying the label"
            in page.locator(f"{VIEW} .inv-global-subtitle").text_content()
        )

        page.set_viewport_size({"width": 1500, "height": 2000})  # the whole view, trends included, on screen
        page.locator(VIEW).scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        page.locator(".inv-global-view").screenshot(path=str(screenshots_dir / "global_view.png"))
        page.set_viewport_size({"width": 1500, "height": 1100})
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
            " return c && Number(c.dataset.index) === i; }",
            arg=i,
            timeout=LONG,
        )
        page.wait_for_function(
            "(layer) => (document.querySelector('.inv-explorer .inv-gallery .inv-gallery-title') || {})"
            ".textContent?.startsWith(layer + ' ')",
            arg=key.layer,
            timeout=60_000,
        )
        title = page.locator(".inv-explorer .inv-gallery .inv-gallery-title").text_content()
        assert title != before_title and f"“{target}”" in title
        # the cluster map of the example is the one selected in the gallery and the detail view
        _, cl, j = session.locate(key)
        page.wait_for_function(
            "(j) => { const c = document.querySelector('.inv-explorer .inv-gallery .inv-card.inv-selected');"
            " return c && Number(c.dataset.index) === j; }",
            arg=j,
            timeout=30_000,
        )
        st = _state(page)
        assert st["message"].startswith(f"Opened in the Explorer: image {i}, {key.layer}"), st["message"]
        assert st["error"] == ""
        assert (
            page.locator(".inv-explorer .inv-detail .inv-detail-title")
            .text_content()
            .startswith(f"Cluster map {j + 1} of")
        )
        # the notebook gives its Explorer the store: the detail view lists labels, not "No label store connected"
        labels = page.locator(".inv-explorer .inv-detail .inv-detail-labels").text_content()
        assert "No label store connected" not in labels and labels.strip(), labels
    finally:
        ctx.close()
