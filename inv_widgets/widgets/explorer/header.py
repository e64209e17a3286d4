"""The Explorer's header (front end: static/explorer.js): image picker with thumbnails and an upload tile,
the top-5 prediction (click a class to explain it), progress and errors, and the keyboard for the whole
Explorer. The browser sends intents as messages ({type: "image" | "target" | "page" | "key" | "upload" |
"ready"}); the kernel answers by setting traits.
"""

from __future__ import annotations

import contextlib
import io
import time

import anywidget
import numpy as np
import traitlets as t
from PIL import Image

from .._common import STATIC, esm

__all__ = ["Header", "HINT", "true_class", "caption", "read_upload"]

HINT = (
    "Keyboard (click the Explorer first): ← → layer · ↑ ↓ move the cut (↑ fewer, ↓ more clusters). "
    "Click or drag on the dendrogram to cut it; click a cluster map for its details."
)


def _label(session, i: int):
    try:
        return session.label(i)
    except Exception:
        return None


def true_class(session, i: int, names) -> str:
    """The name of image ``i``'s true class, when the session's dataset tells it; "" otherwise."""
    y = _label(session, i) if i >= 0 else None
    try:
        return names[int(y)] if y is not None else ""
    except Exception:  # a label the class names do not have: show none
        return ""


def caption(session, i: int) -> str:
    """The picker's caption of image ``i``: its number and, when known, its true class."""
    y = _label(session, i)
    if y is not None and 0 <= int(y) < len(session.classes):
        return f"#{i} {session.classes[int(y)]}"
    return f"#{i}"


def read_upload(name: str, buffers, limits=None) -> Image.Image:
    """The image a person dropped on the picker (the message's first buffer); a ValueError saying what to do
    when it is not one. ``limits`` (the session's ``inputs``) refuses one above the pixel cap before decoding."""
    if not buffers:
        raise ValueError(f"{name} arrived empty")
    unreadable = ValueError(f"{name} is not an image this Explorer can read; use a PNG, JPEG, GIF, BMP or WebP file")
    try:
        img = Image.open(io.BytesIO(bytes(buffers[0])))
    except Exception:
        raise unreadable from None
    if limits is not None:
        limits.check_pixels(img, name=name)  # from the header, before decoding
    try:
        img.load()
    except Exception:
        raise unreadable from None
    return img


class Header(anywidget.AnyWidget):
    """Picker, prediction, progress, errors and keyboard (front end: static/explorer.js)."""

    _esm = esm("explorer.js")
    _css = STATIC / "explorer.css"

    thumbs = t.List(t.Bytes()).tag(sync=True)
    thumb_indices = t.List(t.Int()).tag(sync=True)
    thumb_captions = t.List(t.Unicode()).tag(sync=True)
    index = t.Int(0).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(24).tag(sync=True)
    n_images = t.Int(0).tag(sync=True)
    top = t.List(t.List()).tag(sync=True)
    target = t.Int(-1).tag(sync=True)
    predicted = t.Int(-1).tag(sync=True)
    truth = t.Unicode("").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    progress = t.Float(-1.0).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    hint = t.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._busy_depth = 0
        self._last_progress = 0.0

    # ---- content ------------------------------------------------------------------------------------
    def show_prediction(self, exp, *, index: int, n_images: int, names, truth: str) -> None:
        """The top-5 classes of explanation ``exp`` of image ``index``, its target and predicted class."""
        p = np.asarray(exp.probabilities, dtype=np.float64)
        order = np.argsort(-p, kind="stable")
        with self.hold_sync():
            self.index = int(index)
            self.n_images = int(n_images)
            self.top = [[int(c), str(names[c]), float(p[c])] for c in order[:5]]
            self.target = int(exp.target)
            self.predicted = int(exp.predicted)
            self.truth = truth

    def pages(self, n_images: int) -> int:
        return max(1, -(-int(n_images) // max(1, self.page_size)))

    def page_of(self, index: int) -> int:
        return int(index) // max(1, self.page_size)

    def page_indices(self, page: int, n_images: int) -> tuple[int, list[int]]:
        """The page (clipped to the pages there are) and the image indices on it."""
        ps = max(1, self.page_size)
        page = int(np.clip(page, 0, self.pages(n_images) - 1))
        return page, list(range(page * ps, min(n_images, (page + 1) * ps)))

    def shows(self, index: int) -> bool:
        """Whether the picker shows image ``index`` now (with thumbnails)."""
        return bool(self.thumbs) and int(index) in self.thumb_indices

    def show_thumbs(
        self, page: int, indices: list[int], thumbs: list[bytes], captions: list[str], n_images: int
    ) -> None:
        with self.hold_sync():
            self.thumbs = thumbs
            self.thumb_indices = indices
            self.thumb_captions = captions
            self.page = int(page)
            self.n_images = int(n_images)

    # ---- progress -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def working(self, message: str):
        """Show ``message`` and a moving bar while the block runs (nested blocks: until the outermost ends)."""
        self._busy_depth += 1
        with self.hold_sync():
            self.busy = True
            self.progress = -1.0
            self.status = message
        try:
            yield
        finally:
            self._busy_depth -= 1
            if self._busy_depth == 0:
                with self.hold_sync():
                    self.busy = False
                    self.progress = -1.0
                    self.status = ""

    def report(self, done: int, total: int, message: str) -> None:
        """A progress callback (``Session.explain(progress=...)``), sent at most every 80 ms until done."""
        now = time.perf_counter()
        if done < total and now - self._last_progress < 0.08:
            return
        self._last_progress = now
        with self.hold_sync():
            self.busy = True
            self.progress = float(done) / float(total) if total else -1.0
            self.status = str(message)
