"""The gallery of cluster maps: one card per map, sorted by weight, with the layer's plain Grad-CAM first.

An anywidget whose front end is ``static/gallery.js``. The image travels once as PNG bytes (``base``); the
maps travel as raw float32 numbers at feature resolution in one binary buffer (``maps``, a few hundred to a
few thousand numbers per map) and the page colours them itself: each map is upsampled bilinearly to the
image's size and min-max scaled as :func:`inv_widgets.engine.maps.upsample_minmax` does, then looked up in
the colour map's 256-entry table (``lut``, from :func:`inv_widgets.render.colormap`) as
:func:`inv_widgets.render.apply_cmap` does, onto a canvas. Nothing is encoded or decoded as PNG on a layer or
cut change, and the cards are updated in place. The browser stacks each coloured map over the image with CSS
opacity ``alpha``, so the overlay is ``(1 - alpha) * image + alpha * heat`` (the paper's 50/50 blend at
``alpha = 0.5``), what :func:`inv_widgets.render.overlay` computes, and moving the opacity slider never calls
the kernel. A colour bar beside the maps reads their scale (each map is scaled to 0..1, low to high).

Coloured pictures made elsewhere still work: ``show(heats=[png, ...])`` shows PNG bytes instead of maps.
"""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets as t

from .. import render
from ._common import STATIC, esm

__all__ = ["Gallery", "map_bytes"]


def map_bytes(maps) -> tuple[bytes, list[int]]:
    """``(bytes, [h, w])`` of a stack of 2-D maps (K, h, w) or one map (h, w): little-endian float32, C order,
    what ``Gallery.maps`` and ``Gallery.gradcam_map`` hold. Non-finite values become 0 (NaN, -inf) or 1 (+inf)."""
    a = np.asarray(maps, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must be (K, h, w) or (h, w); got an array of shape {a.shape}")
    if a.size and not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(a, dtype="<f4").tobytes(), [int(a.shape[1]), int(a.shape[2])]


class Gallery(anywidget.AnyWidget):
    """Cluster maps as overlays sorted by weight, captioned ``w = x %`` and their number of feature maps.

    Traits (all synced):

    ``base``       PNG of the image every map is drawn over.
    ``maps``       the cluster maps, heaviest first: float32 (K, h, w) bytes (:func:`map_bytes`), shaped
                   ``map_shape`` = [h, w], each drawn upsampled to ``size`` = [H, W] and min-max scaled (a map
                   flat to rounding shows as 0), coloured with ``lut`` (256 x RGB bytes) named ``cmap``.
    ``heats``      instead of ``maps``: PNGs of coloured maps (pictures made elsewhere).
    ``weights``    percent weight of each map; ``counts`` its number of feature maps.
    ``colors``     CSS colour of each map (the dendrogram's branch colour).
    ``labels``     per map a list of ``[label, score]`` (top 3) from the label store; empty lists hide the bars.
    ``gradcam_map`` the layer's plain Grad-CAM as float32 bytes shaped ``gradcam_shape`` (or ``gradcam``, a
                   coloured PNG), shown first; empty hides it.
    ``drops``      per map the ablation drop in percent ("drop x %" under "w = x %"; None: not measured);
                   empty hides them. ``drop_tips``: the sentence shown when hovering it. Set apart from the
                   content (:meth:`show_drops`): the cards keep their images, only the captions change.
    ``selected``   index of the highlighted map (-1: none); set by a click in the browser.
    ``alpha``      opacity of the heat over the image, 0..1.
    ``revision``   bumped by the kernel after each content update; the browser re-renders once per bump and
                   writes it to ``data-revision`` on its root element once the cards show it.
    """

    _esm = esm("gallery.js")
    _css = STATIC / "gallery.css"

    title = t.Unicode("").tag(sync=True)
    subtitle = t.Unicode("").tag(sync=True)
    base = t.Bytes(b"").tag(sync=True)
    maps = t.Bytes(b"").tag(sync=True)
    map_shape = t.List(t.Int(), [0, 0]).tag(sync=True)
    size = t.List(t.Int(), [0, 0]).tag(sync=True)
    cmap = t.Unicode("jet").tag(sync=True)
    lut = t.Bytes(render.colormap("jet").tobytes()).tag(sync=True)
    heats = t.List(t.Bytes()).tag(sync=True)
    weights = t.List(t.Float()).tag(sync=True)
    counts = t.List(t.Int()).tag(sync=True)
    colors = t.List(t.Unicode()).tag(sync=True)
    labels = t.List(t.List()).tag(sync=True)
    gradcam = t.Bytes(b"").tag(sync=True)
    gradcam_map = t.Bytes(b"").tag(sync=True)
    gradcam_shape = t.List(t.Int(), [0, 0]).tag(sync=True)
    gradcam_caption = t.Unicode("Grad-CAM").tag(sync=True)
    selected = t.Int(-1).tag(sync=True)
    alpha = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    revision = t.Int(0).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    #: a line under the maps: what a map shows (the explanation's map type, ``Explanation.map_meaning``)
    note = t.Unicode("").tag(sync=True)
    drops = t.List(t.Float(allow_none=True)).tag(sync=True)
    drop_tips = t.List(t.Unicode()).tag(sync=True)

    @property
    def k(self) -> int:
        """Number of cluster maps shown."""
        return len(self.weights)

    def show(
        self,
        *,
        base: bytes,
        weights,
        counts,
        colors,
        maps=None,
        heats=None,
        size=None,
        cmap: str = "jet",
        labels=None,
        gradcam=b"",
        gradcam_caption: str = "Grad-CAM",
        title: str = "",
        subtitle: str = "",
        selected: int = -1,
        message: str = "",
        note: str = "",
    ) -> None:
        """Replace the content in one message (the browser re-renders once).

        ``maps``: (K, h, w) numbers, each shown upsampled to ``size = (H, W)`` (default: (h, w)) and min-max
        scaled, coloured with ``cmap``; or ``heats``: K coloured PNGs. ``gradcam``: the layer's Grad-CAM as a
        2-D array (shown like a map) or a coloured PNG (bytes); empty hides it. ``note``: a line under the maps
        (what a map shows).
        """
        if (maps is None) == (heats is None):
            raise ValueError(
                "give the cluster maps either as maps= (numbers, coloured in the page) or as "
                "heats= (PNG bytes), not both or neither"
            )
        n = len(heats) if heats is not None else (np.shape(maps)[0] if np.ndim(maps) == 3 else -1)
        if n < 0:
            raise ValueError(f"maps must be (K, h, w); got an array of shape {np.shape(maps)}")
        if not (len(weights) == len(counts) == len(colors) == n):
            raise ValueError(
                f"maps, weights, counts and colors must have the same length; got "
                f"{n}, {len(weights)}, {len(counts)}, {len(colors)}"
            )
        labels = [list(map(list, lab)) for lab in labels] if labels is not None else [[] for _ in range(n)]
        if len(labels) != n:
            raise ValueError(f"labels must have one entry per map ({n}); got {len(labels)}")
        lut = render.colormap(cmap).tobytes()  # validates the name
        if maps is not None:
            data, shape = map_bytes(maps)
            size = shape if size is None else [int(size[0]), int(size[1])]
            if min(size) < 1 or size[0] < shape[0] or size[1] < shape[1]:
                raise ValueError(f"size {tuple(size)} must be at least the maps' own size {tuple(shape)}")
        else:
            data, shape, size = b"", [0, 0], [0, 0]
        cam_png, cam_data, cam_shape = b"", b"", [0, 0]
        if isinstance(gradcam, (bytes, bytearray, memoryview)):
            cam_png = bytes(gradcam)
        elif gradcam is not None:
            cam_data, cam_shape = map_bytes(gradcam)
            if maps is not None and (cam_shape[0] > size[0] or cam_shape[1] > size[1]):
                raise ValueError(f"the Grad-CAM {tuple(cam_shape)} is larger than the maps' size {tuple(size)}")
        with self.hold_sync():
            self.base = base
            self.maps = data
            self.map_shape = shape
            self.size = size
            self.cmap = str(cmap).lower()
            self.lut = lut
            self.heats = list(heats) if heats is not None else []
            self.weights = [float(w) for w in weights]
            self.counts = [int(c) for c in counts]
            self.colors = [str(c) for c in colors]
            self.labels = labels
            self.gradcam = cam_png
            self.gradcam_map = cam_data
            self.gradcam_shape = cam_shape
            self.gradcam_caption = gradcam_caption
            self.title = title
            self.subtitle = subtitle
            self.message = message
            self.note = note
            self.selected = int(selected) if -1 <= int(selected) < n else -1
            self.drops = []  # measured for other maps: shown again by show_drops once measured for these
            self.drop_tips = []
            self.revision = self.revision + 1

    def show_drops(self, drops, tips=None) -> None:
        """Each map's ablation drop in percent (None where not measured), heaviest first; [] hides them."""
        drops = [None if d is None or not np.isfinite(d) else float(d) for d in drops]
        if drops and len(drops) != self.k:
            raise ValueError(f"drops must have one entry per map ({self.k}); got {len(drops)}")
        tips = [str(x) for x in tips] if tips is not None else [""] * len(drops)
        with self.hold_sync():
            self.drops = drops
            self.drop_tips = tips
