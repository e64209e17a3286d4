"""The detail view of the selected cluster map (front end: static/explorer_detail.js): the map large over
the image, its opacity and colour map, the six Deep Reveal steps, its member channels and labels."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from ... import render
from .._common import STATIC, esm

__all__ = ["Detail", "NO_STORE_HINT", "NO_LABELS_HINT"]

NO_STORE_HINT = (
    "No label store connected: pass Explorer(session, store=...) and collect labels with the labelling game."
)
NO_LABELS_HINT = "No labels for this cluster map yet."
MEMBER_MAPS = 12  # member channels shown as feature-map thumbnails (heaviest first)
WEIGHT_TIPS = {
    "guided": "Sum of the member feature maps' guided-gradient (Grad-CAM style) weights, as a share of the layer",
    "taylor": "Sum of the member feature maps' gradient x activation weights (a first-order estimate of what "
    "zeroing them costs the class), as a share of the layer",
    # maps="gradcam": the map's own channels' first-order worth, whatever the session's weighting
    "gradcam": "Sum of mean(gradient x activation) over every channel the map is drawn from: a first-order estimate "
    "of what zeroing them costs the class (negative: they lower it), as a share of the layer's positive total",
}


class Detail(anywidget.AnyWidget):
    """The selected cluster map. ``revision`` is bumped after each content update (the browser re-renders
    once per bump); ``alpha`` and ``cmap`` are the person's controls."""

    _esm = esm("explorer_detail.js")
    _css = STATIC / "explorer_detail.css"

    title = t.Unicode("").tag(sync=True)
    base = t.Bytes(b"").tag(sync=True)
    heat = t.Bytes(b"").tag(sync=True)
    colorbar = t.Unicode("").tag(sync=True)  # the colour scale beside the map: render.css_gradient(cmap)
    alpha = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    cmap = t.Unicode("jet").tag(sync=True)
    cmaps = t.List(t.Unicode()).tag(sync=True)
    reveals = t.List(t.Bytes()).tag(sync=True)
    reveal_percents = t.List(t.Float()).tag(sync=True)
    weight = t.Float(0.0).tag(sync=True)
    weight_tip = t.Unicode("").tag(sync=True)
    weight_name = t.Unicode("gradient weight").tag(sync=True)
    meaning = t.Unicode("").tag(sync=True)  # what a map shows: Explanation.map_meaning
    n_maps = t.Int(0).tag(sync=True)
    gradcam_overlap = t.Float(-1.0).tag(sync=True)
    color = t.Unicode("#888").tag(sync=True)
    members = t.List(t.List()).tag(sync=True)
    member_maps = t.List(t.Bytes()).tag(sync=True)  # PNG: the heaviest members' feature maps, feature resolution
    labels = t.List(t.List()).tag(sync=True)
    labels_hint = t.Unicode("").tag(sync=True)
    revision = t.Int(0).tag(sync=True)

    def show(self, view, pictures, *, cmap: str, color: str, labels: list, labels_hint: str) -> None:
        """Cluster map ``view.selected`` of ``view.clusters`` (nothing when none is selected)."""
        cl, lr, j = view.clusters, view.layer, view.selected
        if not 0 <= j < cl.k:
            self.clear()
            return
        w = np.asarray(lr.channel_weights)
        mem = np.asarray(cl.members[j])
        mem = mem[np.argsort(-w[mem], kind="stable")]  # heaviest first
        exp = view.explanation
        with self.hold_sync():
            self.base = pictures.image(exp)
            self.heat = pictures.heat(cl, j, cmap)
            self.colorbar = render.css_gradient(cmap)
            self.reveals = pictures.reveals(cl, j)
            self.title = f"Cluster map {j + 1} of {cl.k} · {lr.name} · why “{exp.target_name}”"
            self.weight = float(cl.weights[j])
            gradcam = exp.maps == "gradcam"
            self.weight_tip = WEIGHT_TIPS["gradcam" if gradcam else lr.weighting]
            self.weight_name = "first-order worth" if gradcam else "gradient weight"
            self.meaning = exp.map_meaning
            self.n_maps = int(len(mem))
            self.gradcam_overlap = float(cl.gradcam_agreement()[j])
            self.color = color
            self.members = [[int(c), float(w[c])] for c in mem]
            self.member_maps = [pictures.channel(lr, int(c)) for c in mem[:MEMBER_MAPS]]
            self.labels = labels
            self.labels_hint = labels_hint
            self.revision += 1

    def clear(self) -> None:
        with self.hold_sync():
            self.heat = b""
            self.reveals = []
            self.member_maps = []
            self.title = ""
            self.revision += 1
