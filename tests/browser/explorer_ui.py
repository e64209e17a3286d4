"""What a person sees of an Explorer in the page, and how they act on it (Playwright, sync API).

Shared by the browser tests and benchmarks/bench_widget.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

GALLERY = ".inv-explorer .inv-gallery"


class ExplorerUI:
    def __init__(self, page, root: str = ".inv-explorer"):
        self.page = page
        self.root = root

    # ---- reading ----------------------------------------------------------------------------------
    def gallery(self) -> dict:
        """Revision, number of cluster maps, title and captions of the gallery as rendered."""
        return self.page.evaluate(
            """(root) => { const g = document.querySelector(root + ' .inv-gallery');
                if (!g) return null;
                const cards = Array.from(g.querySelectorAll('.inv-card[data-index]'));
                return {rev: g.dataset.revision || '', count: cards.length,
                        title: (g.querySelector('.inv-gallery-title') || {}).textContent || '',
                        captions: cards.map(c => c.querySelector('.inv-cap').textContent),
                        selected: cards.findIndex(c => c.classList.contains('inv-selected')),
                        loaded: cards.every(c => Array.from(c.querySelectorAll('img')).every(i => i.complete && i.naturalWidth > 0)
                                                 && Array.from(c.querySelectorAll('canvas.inv-heat')).every(v => v.width > 0 && v.height > 0)),
                        canvases: cards.filter(c => c.querySelector('canvas.inv-heat')).length};
            }""",
            self.root,
        )

    def wait_gallery(self, timeout: float = 240_000) -> dict:
        self.page.wait_for_function(
            "(root) => { const g = document.querySelector(root + ' .inv-gallery'); return g && g.dataset.revision; }",
            arg=self.root,
            timeout=timeout,
        )
        return self.gallery()

    def wait_gallery_change(self, old_rev: str, timeout: float = 60_000) -> dict:
        self.page.wait_for_function(
            "([root, old]) => { const g = document.querySelector(root + ' .inv-gallery'); return g && g.dataset.revision && g.dataset.revision !== old; }",
            arg=[self.root, old_rev],
            timeout=timeout,
        )
        return self.gallery()

    def card_pixels(self, j: int | str) -> np.ndarray:
        """The pixels of card ``j``'s coloured map as drawn in its canvas (``"gradcam"``: the Grad-CAM card),
        uint8 (H, W, 4) at the canvas's own size (the image's)."""
        import base64

        import numpy as np

        sel = ".inv-card.inv-gradcam" if j == "gradcam" else f".inv-card[data-index='{j}']"
        got = self.page.evaluate(
            """([root, sel]) => { const c = document.querySelector(root + ' .inv-gallery ' + sel + ' canvas.inv-heat');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
                return {w: c.width, h: c.height, data: btoa(s)}; }""",
            [self.root, sel],
        )
        return np.frombuffer(base64.b64decode(got["data"]), np.uint8).reshape(got["h"], got["w"], 4)

    def colorbar(self) -> dict:
        """The gallery's colour scale: its tick texts and the 256 colours of its bar (uint8 (256, 3))."""
        import numpy as np

        got = self.page.evaluate(
            """(root) => { const s = document.querySelector(root + ' .inv-gallery .inv-colorbar');
                const c = s.querySelector('canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, 1).data;
                const r = s.getBoundingClientRect();
                return {ticks: Array.from(s.querySelectorAll('.inv-colorbar-tick')).map(t => t.textContent),
                        rgba: Array.from(d), visible: r.width > 0 && r.height > 0, cmap: s.dataset.cmap}; }""",
            self.root,
        )
        got["colors"] = np.array(got.pop("rgba"), np.uint8).reshape(-1, 4)[:, :3]
        return got

    def card_png(self, j: int) -> bytes:
        """A screenshot of card ``j``'s picture (the image and its map over it), as a person sees it."""
        loc = self.page.locator(f"{self.root} .inv-gallery .inv-card[data-index='{j}'] .inv-stack")
        loc.scroll_into_view_if_needed()
        return loc.screenshot()

    def slider(self, label: str):
        return self.page.locator(f"{self.root} .widget-slider").filter(
            has=self.page.locator(".widget-label", has_text=label)
        )

    def readout(self, label: str) -> str:
        return self.slider(label).locator(".widget-readout").first.text_content().strip()

    def wait_k_matches_gallery(self, timeout: float = 30_000) -> int:
        """Wait until the k slider shows as many clusters as the gallery has maps (fast recipe: no pruning);
        the controls are updated just after the gallery."""
        self.page.wait_for_function(
            """(root) => {
                const g = document.querySelector(root + ' .inv-gallery');
                const s = Array.from(document.querySelectorAll(root + ' .widget-slider'))
                    .find(e => (e.querySelector('.widget-label') || {}).textContent === 'Clusters k');
                return g && s && Number(s.querySelector('.widget-readout').textContent) === g.querySelectorAll('.inv-card[data-index]').length;
            }""",
            arg=self.root,
            timeout=timeout,
        )
        return int(self.readout("Clusters k"))

    def wait_layer_matches_gallery(self, timeout: float = 30_000) -> str:
        """Wait until the layer slider shows the layer the gallery is about; returns its name."""
        self.page.wait_for_function(
            """(root) => {
                const g = document.querySelector(root + ' .inv-gallery .inv-gallery-title');
                const s = Array.from(document.querySelectorAll(root + ' .widget-slider'))
                    .find(e => (e.querySelector('.widget-label') || {}).textContent === 'Layer');
                const name = s && s.querySelector('.widget-readout').textContent.trim();
                return g && name && g.textContent.startsWith(name + ' ');
            }""",
            arg=self.root,
            timeout=timeout,
        )
        return self.readout("Layer")

    def detail_title(self) -> str:
        return self.page.locator(f"{self.root} .inv-detail .inv-detail-title").text_content()

    def target_row(self) -> str:
        return self.page.locator(f"{self.root} .inv-header .inv-bar-row.inv-target .inv-bar-label").text_content()

    def error(self) -> str:
        loc = self.page.locator(f"{self.root} .inv-header .inv-error")
        return loc.locator(".inv-error-text").text_content() if loc.is_visible() else ""

    def gallery_png(self) -> bytes:
        loc = self.page.locator(f"{self.root} .inv-gallery .inv-gallery-grid")
        loc.scroll_into_view_if_needed()
        return loc.screenshot()

    def dendrogram_png(self) -> bytes:
        loc = self.page.locator(f"{self.root} .inv-dendro-box .js-plotly-plot").first
        loc.scroll_into_view_if_needed()
        return loc.screenshot()

    # ---- acting -----------------------------------------------------------------------------------
    def drag_slider_to(self, label: str, fraction: float) -> None:
        """Drag a slider's handle with the mouse to ``fraction`` (0..1) of its track."""
        handle = self.slider(label).locator(".noUi-handle").first
        handle.scroll_into_view_if_needed()
        hb = handle.bounding_box()
        tb = self.slider(label).locator(".noUi-target").first.bounding_box()
        y = hb["y"] + hb["height"] / 2
        self.page.mouse.move(hb["x"] + hb["width"] / 2, y)
        self.page.mouse.down()
        self.page.mouse.move(tb["x"] + tb["width"] * fraction, y, steps=6)
        self.page.mouse.up()

    def press_on_slider(self, label: str, key: str) -> None:
        handle = self.slider(label).locator(".noUi-handle").first
        handle.focus()
        self.page.keyboard.press(key)

    def focus_explorer(self) -> None:
        """Click on a neutral part of the Explorer (the gallery title), as a person would before using keys."""
        self.page.locator(f"{self.root} .inv-gallery-title").click()

    def click_dendrogram(self, fraction_from_top: float) -> None:
        area = self.page.locator(f"{self.root} .inv-dendro-box .nsewdrag").first
        area.scroll_into_view_if_needed()
        b = area.bounding_box()
        x, y = b["x"] + b["width"] * 0.5, b["y"] + b["height"] * fraction_from_top
        self.page.mouse.move(x - 5, y)
        self.page.mouse.move(x, y, steps=3)
        self.page.wait_for_timeout(250)  # plotly updates its hover point on mouse moves
        self.page.mouse.click(x, y)

    def clipping(self) -> dict:
        """What a person would see cut off or covered, measured in the page (issue 14, item 17):

        - ``thumbs``: picker captions whose text does not fit their box (scrollWidth/Height > clientWidth/Height);
        - ``captions``: gallery card captions wider than the card allows, or poking out of the card;
        - ``labels``: the dendrogram's text labels (cut, suggested cut) with their box and what is wrong with it:
          outside the figure (cut by the SVG's edge), crossing a branch of the tree (points sampled every 2 px
          along every drawn branch path, dashed guide lines excepted), or on top of another label.
        """
        return self.page.evaluate(
            """(root) => {
                const r = document.querySelector(root);
                const over = (e) => e.scrollWidth > e.clientWidth + 0.5 || e.scrollHeight > e.clientHeight + 0.5;
                const out = {thumbs: [], captions: [], labels: [], n_thumbs: 0, n_captions: 0};
                for (const c of r.querySelectorAll('.inv-header .inv-thumb-cap')) {
                    out.n_thumbs += 1;
                    if (over(c)) out.thumbs.push(c.textContent);
                }
                for (const card of r.querySelectorAll('.inv-gallery .inv-card')) {
                    const cap = card.querySelector('.inv-cap');
                    if (!cap) continue;
                    out.n_captions += 1;
                    const inner = card.getBoundingClientRect();
                    const right = inner.right - card.clientLeft;  // inside the card's border
                    const poking = Array.from(cap.children).some(s => s.getBoundingClientRect().right > right + 0.5);
                    if (over(cap) || poking) out.captions.push(cap.textContent);
                }
                const box = r.querySelector('.inv-dendro-box .js-plotly-plot');
                if (!box) return out;
                const svg = box.querySelector('svg.main-svg').getBoundingClientRect();
                const paths = Array.from(box.querySelectorAll('.scatterlayer .trace path.js-line'))
                    .filter(p => !(p.style.strokeDasharray && p.style.strokeDasharray !== 'none'));
                const points = [];
                for (const p of paths) {
                    const m = p.getScreenCTM();
                    const len = p.getTotalLength();
                    for (let s = 0; s <= len; s += 2) {
                        const q = p.getPointAtLength(s);
                        points.push([m.a * q.x + m.c * q.y + m.e, m.b * q.x + m.d * q.y + m.f]);
                    }
                }
                const boxes = [];
                for (const a of box.querySelectorAll('.annotation')) {
                    const text = a.textContent.trim();
                    if (!text) continue;
                    const b = a.querySelector('.annotation-text').getBoundingClientRect();
                    const inside = (x, y) => x > b.left && x < b.right && y > b.top && y < b.bottom;
                    const problems = [];
                    if (b.left < svg.left || b.right > svg.right || b.top < svg.top || b.bottom > svg.bottom)
                        problems.push('outside the figure');
                    const hits = points.filter(([x, y]) => inside(x, y)).length;
                    if (hits) problems.push(`crosses ${hits} branch points`);
                    for (const o of boxes)
                        if (b.left < o.right && o.left < b.right && b.top < o.bottom && o.top < b.bottom)
                            problems.push('on another label');
                    boxes.push(b);
                    out.labels.push({text, problems, n_points: points.length,
                                     box: [b.left - svg.left, b.top - svg.top, b.width, b.height]});
                }
                return out;
            }""",
            self.root,
        )
