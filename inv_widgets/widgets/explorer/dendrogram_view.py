"""The Explorer's dendrogram: what :class:`~inv_widgets.widgets.dendrogram.Dendrogram` draws for a View."""

from __future__ import annotations

import sys
import threading

__all__ = ["show_dendrogram", "start_plotly_import"]


def show_dendrogram(dendrogram, view) -> None:
    """Draw the layer's dendrogram with the cut of ``view``, its clusters coloured, the suggested cut dashed."""
    lr, cl = view.layer, view.clusters
    tree = lr.tree
    title = f"{lr.name}: {tree.n} kept of {lr.n_channels} channels"
    if tree.n < 2:
        dendrogram.clear(title=title + " (nothing to cluster)")
        return
    sk = int(tree.suggested_k)
    dendrogram.show(
        lr.linkage,
        cl.assignment,
        cl.threshold,
        suggested_threshold=tree.threshold_for(sk),
        suggested_k=sk,
        k=int(cl.k_cut),
        title=title,
    )


def _import_plotly_widget() -> None:
    try:
        import plotly.graph_objects as go

        go.FigureWidget  # noqa: B018 - the import is the point (plotly.io pulls in nbformat and jsonschema)
    except Exception:  # the Explorer imports it again and reports any real problem
        pass


def start_plotly_import() -> None:
    """Import plotly's FigureWidget in a background thread (1-2 s: plotly.io pulls in nbformat and jsonschema),
    while the kernel is idle and the browser draws the first gallery; the dendrogram needs it right after."""
    if "plotly.basewidget" not in sys.modules:
        threading.Thread(target=_import_plotly_widget, name="inv-import-plotly", daemon=True).start()
