"""The gallery of cluster maps: one card per map, sorted by weight, with the layer's plain Grad-CAM first.

An anywidget whose front end is ``static/gallery.js``. Images travel as PNG bytes in binary buffers:
``base`` is the image (once), ``heats`` are the coloured maps, and the browser stacks each heat over
the image with CSS opacity ``alpha``, so the overlay is exactly ``(1 - alpha) * image + alpha * heat``
(the paper's 50/50 blend at ``alpha = 0.5``) and moving the opacity slider never calls the kernel.
"""
from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

__all__ = ["Gallery"]

from ._common import STATIC, esm


class Gallery(anywidget.AnyWidget):
    """Cluster maps as overlays sorted by weight, captioned ``w = x %`` and their number of feature maps.

    Traits (all synced):

    ``base``       PNG of the image every map is drawn over.
    ``heats``      PNGs of the coloured cluster maps, heaviest first.
    ``weights``    percent weight of each map; ``counts`` its number of feature maps.
    ``colors``     CSS colour of each map (the dendrogram's branch colour).
    ``labels``     per map a list of ``[label, score]`` (top 3) from the label store; empty lists hide the bars.
    ``gradcam``    PNG of the layer's plain Grad-CAM (coloured), shown first; empty hides it.
    ``drops``      per map the ablation drop in percent ("drop x %" under "w = x %"; None: not measured);
                   empty hides them. ``drop_tips``: the sentence shown when hovering it. Set apart from the
                   content (:meth:`show_drops`): the cards keep their images, only the captions change.
    ``selected``   index of the highlighted map (-1: none); set by a click in the browser.
    ``alpha``      opacity of the heat over the image, 0..1.
    ``revision``   bumped by the kernel after each content update; the browser re-renders once per bump and
                   writes it to ``data-revision`` on its root element once the images are decoded.
    """

    _esm = esm("gallery.js")
    _css = STATIC / "gallery.css"

    title = t.Unicode("").tag(sync=True)
    subtitle = t.Unicode("").tag(sync=True)
    base = t.Bytes(b"").tag(sync=True)
    heats = t.List(t.Bytes()).tag(sync=True)
    weights = t.List(t.Float()).tag(sync=True)
    counts = t.List(t.Int()).tag(sync=True)
    colors = t.List(t.Unicode()).tag(sync=True)
    labels = t.List(t.List()).tag(sync=True)
    gradcam = t.Bytes(b"").tag(sync=True)
    gradcam_caption = t.Unicode("Grad-CAM").tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    alpha = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    revision = t.Int(0).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    drops = t.List(t.Float(allow_none=True)).tag(sync=True)
    drop_tips = t.List(t.Unicode()).tag(sync=True)

    def show(self, *, base: bytes, heats: list[bytes], weights, counts, colors, labels=None,
             gradcam: bytes = b"", gradcam_caption: str = "Grad-CAM", title: str = "", subtitle: str = "",
             selected: int = -1, message: str = "") -> None:
        """Replace the content in one message (the browser re-renders once)."""
        n = len(heats)
        if not (len(weights) == len(counts) == len(colors) == n):
            raise ValueError(f"heats, weights, counts and colors must have the same length; got "
                             f"{n}, {len(weights)}, {len(counts)}, {len(colors)}")
        labels = [list(map(list, lab)) for lab in labels] if labels is not None else [[] for _ in range(n)]
        if len(labels) != n:
            raise ValueError(f"labels must have one entry per map ({n}); got {len(labels)}")
        with self.hold_sync():
            self.base = base
            self.heats = list(heats)
            self.weights = [float(w) for w in weights]
            self.counts = [int(c) for c in counts]
            self.colors = [str(c) for c in colors]
            self.labels = labels
            self.gradcam = gradcam
            self.gradcam_caption = gradcam_caption
            self.title = title
            self.subtitle = subtitle
            self.message = message
            self.selected = int(selected) if -1 <= int(selected) < n else -1
            self.drops = []  # measured for other maps: shown again by show_drops once measured for these
            self.drop_tips = []
            self.revision = self.revision + 1

    def show_drops(self, drops, tips=None) -> None:
        """Each map's ablation drop in percent (None where not measured), heaviest first; [] hides them."""
        drops = [None if d is None or not np.isfinite(d) else float(d) for d in drops]
        if drops and len(drops) != len(self.heats):
            raise ValueError(f"drops must have one entry per map ({len(self.heats)}); got {len(drops)}")
        tips = [str(x) for x in tips] if tips is not None else [""] * len(drops)
        with self.hold_sync():
            self.drops = drops
            self.drop_tips = tips
