"""When the Explorer's views are drawn: the gallery at once, the rest once a person's requests pause.

A layer or cut change shows the gallery first, and its message leaves the kernel at once (:func:`send_now`).
In a kernel, after a request from the page, the views that follow it (the dendrogram, the detail view, the
drops) are drawn once requests pause for :data:`REST_DELAY_S` (:class:`Later`), one view per turn of the
kernel's event loop, so that keys pressed in a row (a held arrow key, quick taps) are each answered by the gallery
alone, without waiting for the kernel or the page to draw the previous dendrogram (plotly: tens of ms on each
side), and a request arriving meanwhile waits for one view at most. Then, while the person looks, the idle
steps work out what the next key will likely ask for (the neighbouring layers and cuts), one per turn, so that
the next gallery only has to be sent. Outside a kernel (tests, scripts) and for calls from code
(``explorer.set_layer(...)`` in a cell, whose next line may read the views), everything is drawn at once and
nothing is worked out ahead.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

__all__ = ["REST_DELAY_S", "Later", "kernel_loop", "send_now"]

log = logging.getLogger("inv_widgets.explorer")

#: Seconds without a new request before the dendrogram and the detail view follow the gallery (in a kernel).
REST_DELAY_S = 0.15


def kernel_loop():
    """The running event loop of an IPython kernel (JupyterLab, Notebook, Voila), or None elsewhere."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    kernel = sys.modules.get("ipykernel.kernelbase")
    if kernel is None or not kernel.Kernel.initialized():
        return None
    return loop


def send_now() -> None:
    """Let the kernel send the widget messages queued so far before going on.

    ipykernel sends messages from a thread of its own, which needs the GIL: while this thread keeps it (the
    dendrogram's plotly update after the gallery's), the gallery's message waited for it. Flushing
    the kernel's stdout queues a marker behind every message queued before it and waits for it (GIL released),
    so the gallery leaves at once. Outside a kernel this flushes stdout, which costs nothing."""
    out = sys.stdout
    if type(out).__module__.startswith("ipykernel"):
        try:
            out.flush()
        except Exception:  # pragma: no cover - never let a flush break a view change
            log.debug("flushing the kernel's output failed", exc_info=True)


class Later:
    """The views still to draw for the view shown now: ``steps()`` lists them (callables, in order) and
    ``run(step)`` draws one (the Explorer's error handling around it). ``idle()`` lists work to do ahead after
    them, in the paced path only (in a kernel, once requests pause): each step runs in a turn of its own, a new
    request drops the rest, and an error in one is logged, never shown."""

    def __init__(
        self,
        steps: Callable[[], Sequence[Callable[[], None]]],
        run: Callable[[Callable[[], None]], None],
        idle: Callable[[], Sequence[Callable[[], None]]] | None = None,
    ):
        self._steps = steps
        self._run = run
        self._idle = idle
        self._ahead: list[Callable[[], None]] = []
        self.pending = False
        self._handle = None

    def due(self, soon: bool) -> None:
        """The gallery shows a new view: draw the rest once requests pause (``soon``, in a kernel) or now."""
        self.pending = True
        if not (soon and self.soon()):
            self.now()

    def now(self) -> None:
        """Draw what is due at once (and forget a scheduled drawing)."""
        self._cancel()
        if self.pending:
            self.pending = False
            for step in self._steps():
                step()

    def soon(self) -> bool:
        """Draw what is due once requests pause (in a kernel: True); False outside a kernel's event loop."""
        loop = kernel_loop()
        if loop is None:
            return False
        self._cancel()
        self._handle = loop.call_later(REST_DELAY_S, self._step, loop, 0)
        return True

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _step(self, loop, i: int) -> None:
        self._handle = None
        steps = self._steps()
        if not self.pending or i >= len(steps):
            return
        if i == len(steps) - 1:
            self.pending = False
        self._run(steps[i])
        if i + 1 < len(steps):
            self._handle = loop.call_soon(self._step, loop, i + 1)
        elif self._idle is not None and not self.pending:
            self._ahead = list(self._idle())
            self._handle = loop.call_soon(self._work_ahead, loop)

    def _work_ahead(self, loop) -> None:
        self._handle = None
        if self.pending or not self._ahead:
            self._ahead = []
            return
        step = self._ahead.pop(0)
        try:
            step()
        except Exception:  # work ahead is a guess: the request itself will show any error
            log.debug("working ahead failed", exc_info=True)
        if self._ahead:
            self._handle = loop.call_soon(self._work_ahead, loop)
