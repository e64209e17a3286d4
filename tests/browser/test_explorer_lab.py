"""The Explorer in JupyterLab 4, driven like a person would: open 01_explore.ipynb, run all, use it.

The tests share one opened notebook (starting JupyterLab and a kernel takes a while on a slow machine) and run
in file order; each one reads the state before acting and checks what changed on screen.
"""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from .explorer_ui import ExplorerUI
from .pages import LONG, NotebookPage, images_differ

NOTEBOOK = "01_explore.ipynb"


@pytest.fixture(scope="module")
def lab(browser, lab_server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page = ctx.new_page()
    nb = NotebookPage(page, lab_server, NOTEBOOK).open()
    nb.command("application:toggle-left-area")  # more room for the widget, as on a laptop
    t0 = time.monotonic()
    nb.run_all()
    ui = ExplorerUI(page)
    first = ui.wait_gallery(LONG)
    nb.first_gallery_s = time.monotonic() - t0
    yield nb, ui, first
    ctx.close()


def test_run_all_shows_the_gallery(lab):
    nb, ui, first = lab
    assert not nb.error_outputs(), nb.error_outputs()
    g = ui.gallery()
    assert g["count"] >= 1 and g["loaded"], g
    assert all(c.startswith("w = ") and "map" in c for c in g["captions"]), g["captions"]
    # the weights shown are sorted, heaviest first
    ws = [float(c.split("w = ")[1].split("%")[0]) for c in g["captions"]]
    assert ws == sorted(ws, reverse=True)
    assert nb.page.locator(".inv-explorer .inv-header .inv-thumb").count() >= 2
    nb.page.locator(".inv-explorer .inv-dendro-box .js-plotly-plot .main-svg").first.wait_for(timeout=60_000)
    assert nb.page.locator(".inv-explorer .inv-dendro-box .js-plotly-plot").count() == 1


def test_the_server_sends_the_kernels_messages_without_delay(lab, lab_server):
    # inv_widgets_server, enabled by the install: no Nagle delay on the kernel websocket the Explorer talks over
    log = lab_server.log_path.read_text(errors="replace")
    assert "inv-widgets: kernel websockets send each message at once (TCP_NODELAY)" in log, lab_server.log_tail()


EXPECTED = """
import base64, json, numpy as np
from inv_widgets import render
_cl, _lr = explorer.clusters, explorer.layer_result
_img = explorer.explanation.image
print(json.dumps({"k": int(_cl.k), "shape": list(_img.shape), "cmap": explorer.cmap, "alpha": explorer.alpha,
                  "image": base64.b64encode(np.ascontiguousarray(_img).tobytes()).decode(),
                  "maps": base64.b64encode(np.ascontiguousarray(_cl.maps, dtype=np.float32).tobytes()).decode(),
                  "gradcam": base64.b64encode(np.ascontiguousarray(_lr.gradcam(), dtype=np.float32).tobytes()).decode()}))
"""


def expected_pictures(nb) -> dict:
    """What the kernel says the gallery shows: the image, the cut's maps and Grad-CAM at input size, cmap, alpha."""
    import base64
    import json

    import numpy as np

    got = json.loads(nb.kernel(EXPECTED).strip().splitlines()[-1])
    h, w = got["shape"][:2]
    got["image"] = np.frombuffer(base64.b64decode(got["image"]), np.uint8).reshape(h, w, 3)
    got["maps"] = np.frombuffer(base64.b64decode(got["maps"]), np.float32).reshape(got["k"], h, w)
    got["gradcam"] = np.frombuffer(base64.b64decode(got["gradcam"]), np.float32).reshape(h, w)
    return got


def test_cards_show_the_maps_as_render_colours_and_blends_them(lab):
    """The page colours the maps itself (numbers in, canvas out): every card's pixels are render.apply_cmap of the
    cut's map at the image's size, and what a person sees (the card's picture on screen) is render.overlay of
    the image and the map, scaled to the card; the colour bar beside the gallery shows the same colour table."""
    import numpy as np

    from inv_widgets import render

    nb, ui, _ = lab
    want = expected_pictures(nb)
    g = ui.gallery()
    assert g["count"] == want["k"] == g["canvases"] >= 2 and g["loaded"], g
    for j in range(want["k"]):
        got = ui.card_pixels(j)
        ref = render.apply_cmap(want["maps"][j], want["cmap"])
        assert got.shape[:2] == ref.shape[:2] and (got[..., 3] == 255).all()
        diff = np.abs(got[..., :3].astype(int) - ref).max(axis=2)
        assert (diff > 0).mean() < 1e-3 and diff.max() <= 8, (j, (diff > 0).mean(), diff.max())
    cam = ui.card_pixels("gradcam")
    diff = np.abs(cam[..., :3].astype(int) - render.apply_cmap(want["gradcam"], want["cmap"])).max(axis=2)
    assert (diff > 0).mean() < 1e-3 and diff.max() <= 8
    # on screen: the map over the image at the opacity shown, as render.overlay blends them
    for j in (0, want["k"] - 1):
        shot = Image.open(io.BytesIO(ui.card_png(j))).convert("RGB")
        ref = Image.fromarray(render.overlay(want["image"], want["maps"][j], want["cmap"], want["alpha"]))
        ref = np.asarray(ref.resize(shot.size, Image.BILINEAR), dtype=float)
        seen = np.asarray(shot, dtype=float)
        other = np.asarray(
            Image.fromarray(
                render.overlay(want["image"], want["maps"][(j + 1) % want["k"]], want["cmap"], want["alpha"])
            ).resize(shot.size, Image.BILINEAR),
            dtype=float,
        )
        err, err_other = np.abs(seen - ref).mean(), np.abs(seen - other).mean()
        assert err < 6 and err < err_other / 2, (j, err, err_other)  # this map, not another, blended as render does
    bar = ui.colorbar()
    assert bar["visible"] and bar["ticks"] == ["0 low", "high 1"] and bar["cmap"] == want["cmap"]
    assert np.array_equal(bar["colors"], render.colormap(want["cmap"]))


def test_layer_slider_changes_gallery_and_dendrogram(lab):
    nb, ui, _ = lab
    before, layer0 = ui.gallery(), ui.readout("Layer")
    g_png, d_png = ui.gallery_png(), ui.dendrogram_png()
    ui.drag_slider_to("Layer", 0.45)
    after = ui.wait_gallery_change(before["rev"])
    nb.page.wait_for_timeout(800)  # let the dendrogram redraw
    layer1 = ui.readout("Layer")
    after = ui.gallery()
    assert layer1 != layer0
    assert layer1 in after["title"] and layer0 not in after["title"]
    assert images_differ(g_png, ui.gallery_png())
    assert images_differ(d_png, ui.dendrogram_png())


def test_k_slider_sets_the_number_of_cluster_maps(lab):
    nb, ui, _ = lab
    for key in ("ArrowRight", "ArrowRight", "ArrowLeft"):
        before = ui.gallery()
        k0 = int(ui.readout("Clusters k"))
        ui.press_on_slider("Clusters k", key)
        after = ui.wait_gallery_change(before["rev"])
        k1 = ui.wait_k_matches_gallery()
        assert k1 == k0 + (1 if key == "ArrowRight" else -1)
        assert after["count"] == k1  # fast recipe: no pruning, one map per cluster
        # the dendrogram's cut line follows (its label reads "cut k = ...")
        nb.page.wait_for_function(
            "k => Array.from(document.querySelectorAll('.inv-explorer .inv-dendro-box .annotation-text'))"
            ".some(t => t.textContent.includes('cut k = ' + k))",
            arg=k1,
            timeout=30_000,
        )


def test_click_a_cluster_map_shows_its_detail(lab):
    nb, ui, _ = lab
    g = ui.gallery()
    assert g["count"] >= 2
    nb.page.locator(".inv-explorer .inv-gallery .inv-card[data-index='1']").click()
    nb.page.wait_for_function(
        "() => (document.querySelector('.inv-explorer .inv-detail .inv-detail-title') || {}).textContent?.startsWith('Cluster map 2 of')",
        timeout=30_000,
    )
    assert ui.gallery()["selected"] == 1
    detail = nb.page.locator(".inv-explorer .inv-detail")
    assert detail.locator(".inv-reveal img").count() == 6
    w_card = g["captions"][1].split("w = ")[1].split("%")[0]
    assert f"w = {w_card}%" in detail.locator(".inv-detail-facts").text_content()
    assert detail.locator(".inv-chip").count() >= 1
    assert detail.locator(".inv-member-map img").count() == min(12, detail.locator(".inv-chip").count())
    nb.page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.inv-explorer .inv-detail img')).every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )


def test_opacity_and_colour_map(lab):
    nb, ui, _ = lab
    g_png = ui.gallery_png()
    slider = nb.page.locator(".inv-explorer .inv-detail input.inv-opacity")
    slider.focus()
    nb.page.keyboard.press("End")  # full opacity
    nb.page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.inv-explorer .inv-gallery')).getPropertyValue('--inv-alpha').trim() === '1'",
        timeout=20_000,
    )
    assert images_differ(g_png, ui.gallery_png())
    before = ui.gallery()
    nb.page.locator(".inv-explorer .inv-detail select.inv-cmap").select_option("gray")
    ui.wait_gallery_change(before["rev"])
    png = Image.open(io.BytesIO(ui.gallery_png())).convert("RGB")
    # at full opacity in grey, the cluster maps are grey: little colour saturation left
    import numpy as np

    a = np.asarray(png, dtype=np.int16)
    sat = (a.max(axis=2) - a.min(axis=2)).mean()
    assert sat < 25, sat
    from inv_widgets import render

    assert np.array_equal(ui.colorbar()["colors"], render.colormap("gray"))  # the colour scale follows
    # the colour scale beside the detail view's map follows the colour map: grey now, from black (0) to white (1)
    bar = nb.page.locator(".inv-explorer .inv-detail .inv-scale")
    nb.page.wait_for_function(
        "() => (document.querySelector('.inv-explorer .inv-detail .inv-scale-ramp') || {style: {}})"
        ".style.background.includes('rgb(255, 255, 255)')",
        timeout=20_000,
    )
    assert bar.is_visible() and bar.text_content() == "1 high0 low"
    ramp = np.asarray(Image.open(io.BytesIO(bar.locator(".inv-scale-ramp").screenshot())).convert("L"), float)
    inner = ramp[2:-2, 2:-2]
    assert inner[:3].mean() > 200 and inner[-3:].mean() < 55  # white at the top (1), black at the bottom (0)
    stack = nb.page.locator(".inv-explorer .inv-detail .inv-detail-stack").bounding_box()
    box = bar.bounding_box()
    assert box["x"] >= stack["x"] + stack["width"] - 1 and abs(box["height"] - stack["height"]) < 2  # beside it
    slider.focus()
    for _ in range(10):
        nb.page.keyboard.press("ArrowLeft")  # back to 50 %
    before = ui.gallery()
    nb.page.locator(".inv-explorer .inv-detail select.inv-cmap").select_option("jet")
    ui.wait_gallery_change(before["rev"])


def test_another_target_class_changes_the_explanation(lab):
    nb, ui, _ = lab
    before = ui.gallery()
    target0 = ui.target_row()
    g_png = ui.gallery_png()
    rows = nb.page.locator(".inv-explorer .inv-header .inv-bar-row:not(.inv-target)")
    new_name = rows.nth(1).locator(".inv-bar-label").text_content()
    rows.nth(1).click()
    after = ui.wait_gallery_change(before["rev"], timeout=LONG)
    nb.page.wait_for_function(  # the header's bars may follow the gallery by a moment
        "name => (document.querySelector('.inv-explorer .inv-header .inv-bar-row.inv-target .inv-bar-label') || {})"
        ".textContent === name",
        arg=new_name,
        timeout=30_000,
    )
    assert ui.target_row() == new_name != target0
    assert f"“{new_name}”" in after["title"]
    assert images_differ(g_png, ui.gallery_png())
    select = nb.page.locator(".inv-explorer .widget-dropdown select")
    assert select.evaluate("s => s.options[s.selectedIndex].text").startswith(new_name)


def test_arrow_keys_move_layer_and_cut_not_the_notebook(lab):
    nb, ui, _ = lab
    ui.focus_explorer()
    assert nb.page.evaluate("() => !!document.activeElement.closest('.inv-explorer')")
    cells = nb.page.locator(".jp-Notebook .jp-Cell").count()
    active = nb.active_cell_index()
    layer0 = ui.readout("Layer")
    before = ui.gallery()
    nb.page.keyboard.press("ArrowLeft")
    ui.wait_gallery_change(before["rev"])
    assert ui.wait_layer_matches_gallery() != layer0
    before = ui.gallery()
    nb.page.keyboard.press("ArrowRight")
    after = ui.wait_gallery_change(before["rev"])
    assert ui.wait_layer_matches_gallery() == layer0 and layer0 in after["title"]
    k0 = int(ui.readout("Clusters k"))
    before = ui.gallery()
    nb.page.keyboard.press("ArrowDown")  # move the cut down: one more cluster
    after = ui.wait_gallery_change(before["rev"])
    assert ui.wait_k_matches_gallery() == k0 + 1 and after["count"] == k0 + 1
    before = ui.gallery()
    nb.page.keyboard.press("ArrowUp")
    after = ui.wait_gallery_change(before["rev"])
    assert ui.wait_k_matches_gallery() == k0 and after["count"] == k0
    # JupyterLab did not take the keys: same cells, same active cell, still in the Explorer
    assert nb.page.locator(".jp-Notebook .jp-Cell").count() == cells
    assert nb.active_cell_index() == active
    assert nb.page.evaluate("() => !!document.activeElement.closest('.inv-explorer')")


def test_click_on_the_dendrogram_sets_the_cut(lab):
    nb, ui, _ = lab
    before = ui.gallery()
    ui.click_dendrogram(0.97)  # low: many clusters
    after = ui.wait_gallery_change(before["rev"])
    k_low = ui.wait_k_matches_gallery()
    assert after["count"] == k_low and k_low > before["count"]
    before = after
    ui.click_dendrogram(0.04)  # above the root: one cluster
    after = ui.wait_gallery_change(before["rev"])
    assert ui.wait_k_matches_gallery() == 1 and after["count"] == 1
    before = after
    nb.page.locator(".inv-explorer button", has_text="suggested cut").click()
    after = ui.wait_gallery_change(before["rev"])
    assert after["count"] > 1


def test_upload_errors_show_in_the_widget_and_images_are_added(lab):
    nb, ui, _ = lab
    page = nb.page
    n0 = page.locator(".inv-explorer .inv-header .inv-thumb").count()
    page.set_input_files(
        ".inv-explorer .inv-header .inv-add input",
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}],
    )
    # the kernel answers after the work the earlier tests queued (slow on a busy machine)
    page.locator(".inv-explorer .inv-header .inv-error").wait_for(state="visible", timeout=60_000)
    assert "notes.txt is not an image" in ui.error()
    # still usable: a real picture is added, selected and explained
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (30, 120, 200)).save(buf, "PNG")
    before = ui.gallery()
    page.set_input_files(
        ".inv-explorer .inv-header .inv-add input",
        files=[{"name": "blue.png", "mimeType": "image/png", "buffer": buf.getvalue()}],
    )
    ui.wait_gallery_change(before["rev"], timeout=LONG)
    current = page.locator(".inv-explorer .inv-header .inv-thumb.inv-current")
    assert "blue.png" in current.text_content()
    assert ui.error() == ""  # a success clears the message
    # the new image is the last one: the highest index shown, on the last page of thumbnails
    idx = [
        int(i)
        for i in page.locator(".inv-explorer .inv-header .inv-thumb").evaluate_all(
            "els => els.map(e => e.dataset.index)"
        )
    ]
    assert int(current.get_attribute("data-index")) == max(idx) >= n0
    assert page.locator(".inv-explorer .inv-header .inv-page").nth(1).is_disabled()
    # back to the first image (first page of thumbnails) for the screenshots
    first = page.locator(".inv-explorer .inv-header .inv-thumb[data-index='0']")
    for _ in range(100):
        if first.count():
            break
        page.locator(".inv-explorer .inv-header .inv-page").first.click()
        page.wait_for_timeout(300)
    before = ui.gallery()
    first.click()
    ui.wait_gallery_change(before["rev"], timeout=LONG)


def test_drop_toggle_shows_drops_and_deletion_insertion_curves(lab):
    """The "drop x %" toggle: every card of the shown layer reads "drop x%" under "w = x%", then clicking a card
    draws its deletion and insertion curves against Grad-CAM (plotly) with their areas; off hides both."""
    nb, ui, _ = lab
    page = nb.page
    gallery = f"{ui.root} .inv-gallery"
    toggle = page.locator(f"{ui.root} .inv-drop-toggle")
    assert toggle.text_content().strip() == "drop x %"
    assert page.locator(f"{gallery} .inv-drop").count() == 0
    toggle.click()
    page.wait_for_function(
        "(g) => { const el = document.querySelector(g); const n = el.querySelectorAll('.inv-card[data-index]').length;"
        " return n > 0 && el.querySelectorAll('.inv-drop').length === n; }",
        arg=gallery,
        timeout=60_000,
    )
    drops = page.locator(f"{gallery} .inv-drop").all_text_contents()
    assert all(d.startswith("drop ") and d.endswith("%") for d in drops), drops
    assert "Zeroing the" in page.locator(f"{gallery} .inv-drop").first.get_attribute("title")
    # the cards kept their images: only the captions changed
    assert ui.gallery()["loaded"]
    page.locator(f"{gallery} .inv-card[data-index='1']").click()
    curves = page.locator(f"{ui.root} .inv-curves-box .js-plotly-plot")
    curves.wait_for(timeout=60_000)
    page.wait_for_function(
        "(root) => { const t = Array.from(document.querySelectorAll(root + ' .inv-curves-box .gtitle'))"
        ".map(e => e.textContent).join(' '); return t.startsWith('Map 2 of'); }",
        arg=ui.root,
        timeout=60_000,
    )
    titles = page.locator(f"{ui.root} .inv-curves-box .annotation-text").all_text_contents()
    assert any(t.startswith("Deletionarea under the curve: map 0.") and "Grad-CAM 0." in t for t in titles), titles
    assert any(t.startswith("Insertionarea under the curve: map 0.") for t in titles), titles
    # the subplot titles are inside the figure and off each other, and the figure spans the Explorer (issue 22:
    # they overlapped and were cut at a 1500-px window, the figure used half the width)
    fit = page.evaluate(
        "(root) => { const box = document.querySelector(root + ' .inv-curves-box');"
        " const svg = box.querySelector('.main-svg').getBoundingClientRect();"
        " const ex = document.querySelector(root).getBoundingClientRect();"
        " const t = Array.from(box.querySelectorAll('.annotation-text, .gtitle')).map(e => e.getBoundingClientRect());"
        " return {svg: [svg.left, svg.right, svg.top, svg.bottom], explorer: [ex.left, ex.right],"
        " titles: t.map(r => [r.left, r.right, r.top, r.bottom])}; }",
        ui.root,
    )
    left, right, top, bottom = fit["svg"]
    assert right - left >= 0.9 * (fit["explorer"][1] - fit["explorer"][0]), fit
    boxes = fit["titles"]
    assert len(boxes) == 3, fit
    for x0, x1, y0, y1 in boxes:
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, fit
    for a in range(3):
        for b in range(a + 1, 3):
            (a0, a1, a2, a3), (b0, b1, b2, b3) = boxes[a], boxes[b]
            assert a1 <= b0 or b1 <= a0 or a3 <= b2 or b3 <= a2, ("titles overlap", fit)
    assert page.locator(f"{ui.root} .inv-curves-box .scatterlayer .trace").count() == 4
    # another layer: its own drops, measured for the layer shown
    before = ui.gallery()
    ui.drag_slider_to("Layer", 0.0)
    ui.wait_gallery_change(before["rev"])
    page.wait_for_function(
        "(g) => { const el = document.querySelector(g); const n = el.querySelectorAll('.inv-card[data-index]').length;"
        " return n > 0 && el.querySelectorAll('.inv-drop').length === n; }",
        arg=gallery,
        timeout=60_000,
    )
    assert ui.error() == ""
    toggle.click()  # off: both go
    page.wait_for_function(
        "(g) => document.querySelector(g).querySelectorAll('.inv-drop').length === 0", arg=gallery, timeout=30_000
    )
    page.locator(f"{ui.root} .inv-curves-box").wait_for(state="hidden", timeout=30_000)


def test_compare_view_computes_lime_kernelshap_gradcam_on_demand(lab):
    """The compare view under the detail: offered, computed on "Compute" with a progress bar while the rest of the
    Explorer keeps answering, stoppable, three panels (LIME, KernelSHAP, Grad-CAM) when done; another image is
    another comparison, and coming back shows the computed one at once (cached)."""
    nb, ui, _ = lab
    page = nb.page
    box = f"{ui.root} .inv-compare"
    state = lambda: page.locator(box).get_attribute("data-state")  # noqa: E731
    page.locator(box).scroll_into_view_if_needed()
    page.wait_for_function("(b) => document.querySelector(b).dataset.state === 'idle'", arg=box, timeout=30_000)
    assert "Not computed yet" in page.locator(f"{box} .inv-compare-status").text_content()
    assert page.locator(f"{box} .inv-compare-title").text_content().startswith("Beside INV: LIME, KernelSHAP")
    assert "256 model evaluations" in page.locator(f"{box} .inv-compare-settings").text_content()
    assert page.locator(f"{box} .inv-compare-panel").count() == 0
    # Compute, then Stop while it runs
    page.locator(f"{box} .inv-compare-go").click()
    page.wait_for_function("(b) => document.querySelector(b).dataset.state === 'running'", arg=box, timeout=30_000)
    assert page.locator(f"{box} .inv-compare-bar").is_visible()
    assert page.locator(f"{box} .inv-compare-stop").is_visible()
    page.locator(f"{box} .inv-compare-stop").click()
    page.wait_for_function(
        "(b) => ['stopped', 'done'].includes(document.querySelector(b).dataset.state)", arg=box, timeout=60_000
    )
    if state() == "stopped":  # a fast machine may finish the last batch before the Stop arrives (unit-tested)
        assert page.locator(f"{box} .inv-compare-go").text_content() == "Compute again"
        assert page.locator(f"{box} .inv-compare-panel").count() == 0
    else:
        print("compare view: done before the Stop click arrived")
    # Compute again: the progress bar moves while a click on another card is answered at once
    page.locator(f"{box} .inv-compare-go").click()
    page.wait_for_function(
        "(b) => { const r = document.querySelector(b); return r.dataset.state === 'done' || (r.dataset.state === "
        "'running' && parseFloat(r.querySelector('.inv-compare-fill').style.width) > 0); }",
        arg=box,
        timeout=60_000,
    )
    was_running = state() == "running"
    card = 1 if ui.gallery()["selected"] != 1 else 0
    page.locator(f"{ui.root} .inv-gallery .inv-card[data-index='{card}']").click()
    page.wait_for_function(
        "([root, t]) => (document.querySelector(root + ' .inv-detail .inv-detail-title') || {}).textContent"
        "?.startsWith(t)",
        arg=[ui.root, f"Cluster map {card + 1} of"],
        timeout=30_000,
    )
    print(f"compare view still running when the card click was answered: {was_running and state() == 'running'}")
    page.wait_for_function("(b) => document.querySelector(b).dataset.state === 'done'", arg=box, timeout=240_000)
    page.wait_for_function(
        "(b) => { const imgs = Array.from(document.querySelectorAll(b + ' .inv-compare-panel img'));"
        " return imgs.length === 6 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=box,
        timeout=30_000,
    )
    assert page.locator(f"{box} figcaption").all_text_contents() == ["LIME", "KernelSHAP", "Grad-CAM"]
    scale = page.locator(f"{box} .inv-compare-panels .inv-scale")  # the colour scale beside the three maps
    assert scale.is_visible() and "linear-gradient" in scale.locator(".inv-scale-ramp").evaluate(
        "e => e.style.background"
    )
    assert not page.locator(f"{box} .inv-compare-go").is_visible()
    assert not page.locator(f"{box} .inv-compare-bar").is_visible()
    heats = [page.locator(f"{box} .inv-compare-panel img.inv-heat").nth(j).screenshot() for j in range(3)]
    assert images_differ(heats[0], heats[2]) and images_differ(heats[1], heats[2])  # three different maps
    # another image: not computed yet; back: the computed maps at once
    before = ui.gallery()
    page.locator(f"{ui.root} .inv-header .inv-thumb[data-index='1']").click()
    ui.wait_gallery_change(before["rev"], timeout=LONG)
    page.wait_for_function("(b) => document.querySelector(b).dataset.state === 'idle'", arg=box, timeout=30_000)
    assert page.locator(f"{box} .inv-compare-panel").count() == 0
    before = ui.gallery()
    page.locator(f"{ui.root} .inv-header .inv-thumb[data-index='0']").click()
    ui.wait_gallery_change(before["rev"], timeout=LONG)
    page.wait_for_function(
        "(b) => document.querySelector(b).dataset.state === 'done' && "
        "document.querySelectorAll(b + ' .inv-compare-panel').length === 3",
        arg=box,
        timeout=30_000,  # cached: no computing (which takes minutes), only the page's drawing on a busy machine
    )
    assert ui.error() == ""


def test_screenshots(lab, screenshots_dir):
    """Screenshots for the README: the whole Explorer and the detail view (checked by eye, saved to docs/)."""
    nb, ui, _ = lab
    page = nb.page
    page.set_viewport_size({"width": 1400, "height": 2100})
    before = ui.gallery()
    page.locator(".inv-explorer .inv-header .inv-thumb[data-index='5']").click()  # a clock: four distinct parts
    before = ui.wait_gallery_change(before["rev"], timeout=LONG)
    ui.drag_slider_to("Layer", 1.0)  # the last layer: object parts
    page.wait_for_timeout(1500)
    ui.wait_layer_matches_gallery()
    page.locator(".inv-explorer .inv-gallery .inv-card[data-index='0']").click()
    page.wait_for_timeout(1000)
    explorer = page.locator(".inv-explorer")
    explorer.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    explorer.screenshot(path=str(screenshots_dir / "explorer.png"))
    page.locator(".inv-explorer .inv-detail").screenshot(path=str(screenshots_dir / "explorer_detail.png"))
    page.locator(".inv-explorer .inv-main").screenshot(path=str(screenshots_dir / "explorer_gallery.png"))
    for name in ("explorer.png", "explorer_detail.png", "explorer_gallery.png"):
        img = Image.open(screenshots_dir / name)
        assert img.width > 300 and img.height > 150


def test_labels_and_captions_are_not_clipped(lab):
    """Nothing the Explorer writes is cut off or drawn over the tree (issue 14, item 17): the picker's captions
    ("#0 mushroom", not "#0 mushr..."), every gallery caption ("Grad-CAM whole layer" inside its card), and the
    dendrogram's labels ("cut k = 3 ⇕ drag", "suggested k = 4") inside the figure, off every branch and off each
    other, at the suggested cut, at cuts from the bottom to the top of the tree, and on another layer."""
    nb, ui, _ = lab
    page = nb.page
    seen = set()

    def check(where):
        page.wait_for_timeout(800)  # the dendrogram redraws after the gallery
        c = ui.clipping()
        assert c["n_thumbs"] >= 10 and not c["thumbs"], (where, c["thumbs"])
        assert c["n_captions"] >= 2 and not c["captions"], (where, c["captions"])
        assert page.locator(f"{ui.root} .inv-gallery .inv-card.inv-gradcam .inv-cap").count() == 1
        texts = [lab["text"] for lab in c["labels"]]
        assert any(t.startswith("cut k = ") for t in texts), (where, c["labels"])
        assert all(lab["n_points"] > 100 for lab in c["labels"]), c["labels"]  # the branches were measured
        bad = [lab for lab in c["labels"] if lab["problems"]]
        assert not bad, (where, bad)
        seen.update(w for t in texts for w in ("cut", "suggested") if t.startswith(w))

    check("the suggested cut")
    for fraction in (0.97, 0.6, 0.35, 0.04):  # from many clusters (near the leaves) to one (above the root)
        ui.click_dendrogram(fraction)
        ui.wait_k_matches_gallery()
        check(f"a cut at {fraction:.0%} from the top")
    before = ui.gallery()
    ui.drag_slider_to("Layer", 0.0)
    ui.wait_gallery_change(before["rev"])
    ui.wait_layer_matches_gallery()
    check("the first layer")
    assert {"cut", "suggested"} <= seen, seen  # both labels were on screen at some point
