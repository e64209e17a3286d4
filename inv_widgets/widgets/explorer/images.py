"""The Explorer's pictures as PNG bytes, made once and kept (engine.runtime.LRU): the image, the coloured
cluster map of the detail view, the Deep Reveal steps, the member channels' feature maps, the picker's
thumbnails. (The gallery's maps go to the page as numbers and are coloured there: gallery_view.py.)

Keys name what a picture shows, never a position in a list: a cluster map by its identity (MapKey) and
colour map, so a recut or another recipe that finds the same cluster reuses its picture.
"""

from __future__ import annotations

import numpy as np
import torch

from ... import render
from ...engine.maps import REVEAL_PERCENTS
from ...engine.numeric import minmax_rows
from ...engine.runtime import LRU

__all__ = ["Pictures"]


class Pictures:
    """PNG bytes for one session's Explorer, ``maxsize`` pictures kept (least recently used dropped)."""

    def __init__(self, session, maxsize: int = 512, thumb_size: int = 96):
        self.session = session
        self.thumb_size = int(thumb_size)
        self._png = LRU(maxsize)

    def image(self, exp) -> bytes:
        """The explained image as a person sees it."""
        return self._png.get(("base", exp.image_id), lambda: render.to_png(exp.image))

    def heat(self, clusters, j: int, cmap: str) -> bytes:
        """Cluster map ``j`` of a cut, coloured."""
        return self._png.get(
            ("heat", clusters.key(j), cmap), lambda: render.to_png(render.apply_cmap(clusters.maps[j], cmap))
        )

    def reveals(self, clusters, j: int) -> list[bytes]:
        """The six Deep Reveal steps of cluster map ``j``."""
        key = clusters.key(j)
        return [
            self._png.get(("reveal", key, s), lambda s=s: render.to_png(clusters.reveal(j, s)))
            for s in range(len(REVEAL_PERCENTS))
        ]

    def channel(self, lr, c: int, cmap: str = "viridis") -> bytes:
        """Kept channel ``c``'s feature map of a layer at feature resolution (min-max scaled, a flat map
        black), coloured: what a member of a cluster map responds to, before it is merged."""
        e = lr.explanation
        key = ("channel", e.model_id, e.image_id, int(e.target), lr.name, int(c), cmap)

        def make():
            row = int(np.searchsorted(lr.kept, c))
            if row >= len(lr.kept) or lr.kept[row] != c:
                raise ValueError(f"channel {c} is not kept at {lr.name}")
            fm = torch.from_numpy(np.array(lr.feature_maps[row], dtype=np.float32))
            scaled = minmax_rows(fm.reshape(1, -1)).reshape(fm.shape).numpy()
            return render.to_png(render.apply_cmap(scaled, cmap))

        return self._png.get(key, make)

    def thumb(self, i: int) -> bytes:
        """Image ``i`` of the session, small, for the picker."""
        return self._png.get(
            ("thumb", i, self.thumb_size),
            lambda: render.to_png(render.thumbnail(self.session.image(i), self.thumb_size)),
        )

    def thumb_if_made(self, i: int) -> bytes:
        """Image ``i``'s thumbnail if it was made already, else empty bytes (a placeholder)."""
        return self._png.get(("thumb", i, self.thumb_size), default=b"")
