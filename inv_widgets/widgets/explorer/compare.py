"""The Explorer's compare view (front end: static/explorer_compare.js): LIME, KernelSHAP and Grad-CAM for the
image and class the Explorer shows, the explanations people already know, beside INV's cluster maps.

Computed on demand (a person presses "Compute"; LIME and KernelSHAP take hundreds of model evaluations) in a
worker thread, so the rest of the Explorer keeps answering; a progress bar follows the model evaluations and
"Stop" cancels between two batches. Results are cached per image, class and settings
(:func:`inv_widgets.concepts.baselines.attribution_maps`): coming back to an image shows its maps at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import anywidget
import traitlets as t

from ... import render
from ...concepts.baselines import (
    DEFAULT_SAMPLES,
    DEFAULT_SEGMENTS,
    METHODS,
    Cancelled,
    attribution_maps,
    cached_maps,
    check_settings,
)
from .._common import STATIC, esm, readable

__all__ = ["Compare", "TITLES"]

log = logging.getLogger("inv_widgets.explorer")

#: What each method is called on screen.
TITLES = {"lime": "LIME", "kernelshap": "KernelSHAP", "gradcam": "Grad-CAM"}


@dataclass(eq=False)
class _Job:
    key: tuple
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Compare(anywidget.AnyWidget):
    """LIME, KernelSHAP and Grad-CAM of the Explorer's image and class, on demand.

    ``state`` is ``"idle"`` (not computed for this image and class), ``"running"``, ``"done"``,
    ``"stopped"`` or ``"error"``; ``done``/``total`` count model evaluations. The browser sends the intents
    ``{"type": "compute"}`` and ``{"type": "cancel"}`` (the methods :meth:`compute` and :meth:`cancel`).
    """

    _esm = esm("explorer_compare.js")
    _css = STATIC / "explorer_compare.css"

    state = t.Unicode("idle").tag(sync=True)
    done = t.Int(0).tag(sync=True)
    total = t.Int(0).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    settings = t.Unicode("").tag(sync=True)
    base = t.Bytes(b"").tag(sync=True)
    heats = t.List(t.Bytes()).tag(sync=True)
    colorbar = t.Unicode("").tag(sync=True)  # the colour scale beside the maps: render.css_gradient(cmap)
    captions = t.List(t.Unicode()).tag(sync=True)
    alpha = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    revision = t.Int(0).tag(sync=True)

    def __init__(
        self,
        session,
        *,
        cmap: str = "jet",
        alpha: float = 0.5,
        methods=METHODS,
        n_samples: int = DEFAULT_SAMPLES,
        n_segments: int = DEFAULT_SEGMENTS,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(alpha=float(alpha), **kwargs)
        self.session = session
        self.methods = tuple(methods)
        self.options = self.check_options(dict(n_samples=n_samples, n_segments=n_segments, seed=seed))
        self.settings = (
            f"{self.options['n_samples']} model evaluations each for LIME and KernelSHAP, "
            f"{self.options['n_segments']} superpixels (SLIC), seed {self.options['seed']}"
        )
        self._cmap = cmap
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._key: tuple | None = None  # (image index, target) shown now
        self._image = b""
        self._maps: dict | None = None
        self.last_error: BaseException | None = None
        self.on_msg(self._on_msg)

    @staticmethod
    def check_options(options: dict | None) -> dict:
        """The compare view's settings (``n_samples``, ``n_segments``, ``seed``), checked: a clear error for an
        unknown name or a bad value."""
        if options is None:
            return {}
        if not isinstance(options, dict):
            raise TypeError(f"baselines must be a dict of n_samples, n_segments, seed; got {options!r}")
        return check_settings(**options)

    # ---- what the Explorer calls -------------------------------------------------------------------
    def show(self, index: int, target: int, *, image_png: bytes = b"", class_name: str = "") -> None:
        """The Explorer now shows image ``index`` explained for ``target``: show its maps if they were computed,
        else offer to compute them. A computation for another image or class is stopped."""
        key = (int(index), int(target))
        with self._lock:
            if key == self._key:
                return
            self._key, self._image, self._maps = key, image_png, None
            job = self._job
        if job is not None and job.key != key:
            job.stop.set()
        cached = self._cached(key)
        with self.hold_sync():
            self.title = f"Beside INV: LIME, KernelSHAP and Grad-CAM for “{class_name or target}”"
            self.base = image_png
            if cached is not None:
                self._put_maps(cached)
            else:
                self.heats, self.captions = [], []
                running = job is not None and job.key == key and not job.stop.is_set()
                self.state = "running" if running else "idle"
                self.message = "" if running else "Not computed yet for this image and class."
                self.done = self.total = 0
            self.revision += 1

    def set_cmap(self, cmap: str) -> None:
        render.colormap(cmap)
        self._cmap = cmap
        if self._maps is not None:
            with self.hold_sync():
                self._put_maps(self._maps)
                self.revision += 1

    # ---- intents -----------------------------------------------------------------------------------
    def compute(self) -> None:
        """Compute the maps of the current image and class in a worker thread (nothing if already running)."""
        with self._lock:
            key = self._key
            if key is None or (self._job is not None and self._job.key == key and not self._job.stop.is_set()):
                return
            job = self._job = _Job(key)
        with self.hold_sync():
            self.state, self.done, self.total, self.message = "running", 0, 0, "starting…"
        job.thread = threading.Thread(target=self._run, args=(job,), name="inv-compare", daemon=True)
        job.thread.start()

    def cancel(self) -> None:
        """Stop the running computation (between two batches of model evaluations)."""
        with self._lock:
            job = self._job
        if job is not None:
            job.stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running computation; ``True`` when none is running any more."""
        job = self._job
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

    @property
    def maps(self) -> dict | None:
        """The maps shown (method -> (H, W) in [0, 1]), ``None`` while not computed."""
        return self._maps

    # ---- the worker --------------------------------------------------------------------------------
    def _cached(self, key):
        return cached_maps(self.session, key[0], key[1], self.methods, **self.options)

    def _run(self, job: _Job) -> None:
        last, shown = [0.0], [0]

        def progress(done: int, total: int, message: str) -> None:
            if job.stop.is_set():
                raise Cancelled()
            now = time.perf_counter()
            # at most ten updates a second, but the first batch and the end always show
            if now - last[0] >= 0.1 or done >= total or (done > 0 and shown[0] == 0):
                last[0], shown[0] = now, int(done)
                if self._current(job):
                    with self.hold_sync():
                        self.done, self.total, self.message = int(done), int(total), message

        try:
            maps = attribution_maps(
                self.session, job.key[0], job.key[1], self.methods, progress=progress, **self.options
            )
        except Cancelled:
            self._finish(job, "stopped", "Stopped. Compute again to start over.")
        except Exception as e:  # shown to the person, logged for the developer
            self.last_error = e
            log.warning("Explorer could not compute the baselines", exc_info=True)
            self._finish(job, "error", readable(e, "compute LIME, KernelSHAP and Grad-CAM"))
        else:
            with self._lock:
                current = self._key == job.key
                if current:
                    self._maps = maps
            if current:
                with self.hold_sync():
                    self._put_maps(maps)
                    self.revision += 1
            self._finish(job, None, None)

    def _current(self, job: _Job) -> bool:
        with self._lock:
            return self._key == job.key and self._job is job

    def _finish(self, job: _Job, state: str | None, message: str | None) -> None:
        with self._lock:
            current = self._key == job.key and self._job is job
            if self._job is job:
                self._job = None
        if current and state is not None:
            with self.hold_sync():
                self.state, self.message = state, message
                self.revision += 1

    def _put_maps(self, maps: dict) -> None:
        self._maps = maps
        self.heats = [render.to_png(render.apply_cmap(maps[m], self._cmap)) for m in self.methods]
        self.colorbar = render.css_gradient(self._cmap)
        self.captions = [TITLES.get(m, m) for m in self.methods]
        self.state, self.message = "done", ""
        self.done = self.total = max(self.total, 1)

    def _on_msg(self, widget, content, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "compute":
            self.compute()
        elif kind == "cancel":
            self.cancel()
