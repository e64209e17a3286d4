"""The dendrogram of one layer as a plotly ``FigureWidget``, with a cut you can click or drag.

The tree is drawn with few traces: one line trace per cluster colour (links inside a cluster, and the legs
from each cluster up to the cut, so a one-channel cluster shows its colour too) and one grey trace for the
links above the cut (and for pruned clusters), segments joined with gaps. The pool
of traces is fixed (``MAX_K`` colours), so a new cut or a new layer only changes trace data inside one
``batch_update``: the figure is never rebuilt. A transparent heatmap behind the tree catches clicks at any
height; the cut line is a draggable shape; the suggested cut is a dashed line. Their labels ("cut k = 3 ⇕ drag",
"suggested k = 4") sit in the right margin, beside the plot, so that they never cover a branch; when the two lines
are close, their labels are pushed apart (:func:`label_shifts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from ..engine.tree import Nodes, nodes

__all__ = ["Dendrogram", "PALETTE", "ABOVE_CUT", "dendrogram_segments", "cluster_stubs", "label_shifts", "MAX_K"]

#: Cluster colours, heaviest cluster first (shared by the dendrogram branches and the gallery cards).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
)
ABOVE_CUT = "#a0a7b0"
CUT_COLOR = "#c62828"
SUGGESTED_COLOR = "#5f6368"
MAX_K = len(PALETTE)

_CATCH, _SUGGESTED, _ABOVE, _FIRST = 0, 1, 2, 3
_CATCH_ROWS = 160
#: Right margin (px) that holds the labels of the cut and of the suggested cut, outside the plot area.
LABEL_MARGIN = 74
_MARGIN_T, _MARGIN_B = 34, 30
_LINE_PX = {11: 15.0, 10: 14.0}  # height of one line of label text by font size (plotly: about 1.3 em)


def label_shifts(
    lines: Sequence[float],
    heights: Sequence[float],
    plot_px: float,
    ymax: float,
    lo: float = 0.0,
    hi: float | None = None,
    gap: float = 3.0,
) -> list[float]:
    """Vertical shifts (px, up positive: plotly's ``yshift``) of labels centred on horizontal lines at data
    heights ``lines`` (0..``ymax`` over ``plot_px`` pixels), each ``heights[i]`` px tall, so that no two overlap
    and each stays between ``lo`` and ``hi`` px from the top of the plot area (``hi``: its bottom). A label sits
    at the end of its line when there is room; two close lines push their labels apart."""
    hi = plot_px if hi is None else hi
    centre = [(1.0 - float(y) / ymax) * plot_px if ymax > 0 else plot_px for y in lines]
    pos = [min(max(c, lo + h / 2), hi - h / 2) for c, h in zip(centre, heights)]
    order = sorted(range(len(pos)), key=lambda i: pos[i])
    for a, b in zip(order, order[1:]):  # downwards: push the lower label down
        need = (heights[a] + heights[b]) / 2 + gap
        if pos[b] - pos[a] < need:
            pos[b] = pos[a] + need
    for a, b in reversed(list(zip(order, order[1:]))):  # past the bottom: push back up
        if pos[b] > hi - heights[b] / 2:
            pos[b] = hi - heights[b] / 2
        need = (heights[a] + heights[b]) / 2 + gap
        if pos[b] - pos[a] < need:
            pos[a] = pos[b] - need
    return [c - p for c, p in zip(centre, pos)]


def dendrogram_segments(linkage, leaf_cluster: np.ndarray | None = None):
    """Geometry of a dendrogram and the cluster of every link.

    Returns ``(xs, ys, link_cluster, order)``: ``xs``/``ys`` (n-1, 4) corner coordinates of every merge's
    upside-down U (leaves at x = 0..n-1 in ``order``, y = merge height), and ``link_cluster`` (n-1,) the
    cluster of each merge when both sides belong to the same cluster, else -2 (``-1`` = pruned cluster).
    ``linkage`` is a scipy linkage matrix or its walk (:func:`inv_widgets.engine.tree.nodes`).
    """
    walk = linkage if isinstance(linkage, Nodes) else nodes(linkage)
    n = walk.n
    if n == 1:
        return np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, np.int64), walk.order
    c = walk.clusters(leaf_cluster if leaf_cluster is not None else np.full(n, -2))
    a, b = walk.left, walk.right
    top = walk.height[n:]
    xs = np.stack([walk.x[a], walk.x[a], walk.x[b], walk.x[b]], axis=1)
    ys = np.stack([walk.height[a], top, top, walk.height[b]], axis=1)
    return xs, ys, c[n:], walk.order


def cluster_stubs(linkage, leaf_cluster: np.ndarray, threshold: float):
    """Where a cluster's branch meets a merge above the cut: the leg from the cluster's top up to the cut.

    Returns ``(xs, ys, cluster)`` with xs/ys (m, 2): vertical segments drawn in the cluster's colour, so that
    every cluster, a single channel included, shows its colour below the cut line.
    """
    walk = linkage if isinstance(linkage, Nodes) else nodes(linkage)
    n = walk.n
    if n == 1:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64)
    c = walk.clusters(leaf_cluster)
    x, y = walk.x, walk.height
    sx, sy, sc = [], [], []
    for i in np.flatnonzero(c[n:] == -2):  # merges above the cut, in merge order
        top = min(float(threshold), y[n + i])
        for ch in (walk.left[i], walk.right[i]):
            if c[ch] >= 0 and top > y[ch]:
                sx.append((x[ch], x[ch]))
                sy.append((y[ch], top))
                sc.append(c[ch])
    return np.asarray(sx).reshape(-1, 2), np.asarray(sy).reshape(-1, 2), np.asarray(sc, dtype=np.int64)


def _polyline(xs: np.ndarray, ys: np.ndarray):
    """Rows of 4 corners -> flat arrays with a NaN gap after each U (one trace for many links)."""
    if xs.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    gap = np.full((xs.shape[0], 1), np.nan)
    return np.hstack([xs, gap]).ravel(), np.hstack([ys, gap]).ravel()


class Dendrogram:
    """A layer's dendrogram with a cut. ``on_cut(height)`` is called when the user clicks or drags."""

    def __init__(self, on_cut: Callable[[float], None] | None = None, width: int = 400, height: int = 330):
        self.on_cut = on_cut
        self._quiet = False
        self._ymax = 1.0
        self._threshold = 0.0
        traces = [
            go.Heatmap(
                z=np.zeros((1, 1)),
                x=[0.0, 1.0],
                y=[0.0, 1.0],
                opacity=0.0,
                showscale=False,
                hovertemplate="click to cut here (h = %{y:.3g})<extra></extra>",
                name="cut catcher",
                colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
            ),
            go.Scatter(
                x=[],
                y=[],
                mode="lines",
                line=dict(color=SUGGESTED_COLOR, width=1.5, dash="dash"),
                hoverinfo="skip",
                name="suggested cut",
                showlegend=False,
            ),
            go.Scatter(
                x=[],
                y=[],
                mode="lines",
                line=dict(color=ABOVE_CUT, width=1.2),
                hoverinfo="skip",
                name="above the cut",
                showlegend=False,
            ),
        ]
        for j, col in enumerate(PALETTE):
            traces.append(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    line=dict(color=col, width=1.6),
                    hoverinfo="skip",
                    name=f"cluster {j + 1}",
                    showlegend=False,
                )
            )
        layout = go.Layout(
            width=width,
            height=height,
            margin=dict(l=52, r=LABEL_MARGIN, t=_MARGIN_T, b=_MARGIN_B),
            template="plotly_white",
            dragmode=False,
            hovermode="closest",
            showlegend=False,
            title=dict(text="", font=dict(size=13), x=0.02, xanchor="left", y=0.98, yanchor="top"),
            xaxis=dict(
                showticklabels=False,
                showgrid=False,
                zeroline=False,
                fixedrange=True,
                title=dict(text="kept channels", font=dict(size=11), standoff=4),
            ),
            yaxis=dict(
                title=dict(text="merge height", font=dict(size=11)),
                fixedrange=True,
                zeroline=False,
                gridcolor="#eef0f3",
            ),
            shapes=[
                dict(
                    type="line",
                    xref="paper",
                    x0=0,
                    x1=1,
                    yref="y",
                    y0=0,
                    y1=0,
                    line=dict(color=CUT_COLOR, width=3),
                    layer="above",
                    name="cut",
                )
            ],
            annotations=[
                dict(
                    xref="paper",
                    x=1.0,
                    xanchor="left",
                    xshift=3,
                    yref="y",
                    y=0,
                    yanchor="middle",
                    text="",
                    showarrow=False,
                    align="left",
                    font=dict(size=11, color=CUT_COLOR),
                ),
                dict(
                    xref="paper",
                    x=1.0,
                    xanchor="left",
                    xshift=3,
                    yref="y",
                    y=0,
                    yanchor="middle",
                    text="",
                    showarrow=False,
                    align="left",
                    font=dict(size=10, color=SUGGESTED_COLOR),
                ),
            ],
        )
        self.figure = go.FigureWidget(data=traces, layout=layout)
        self.figure._config = {
            "displayModeBar": False,
            "edits": {"shapePosition": True},
            "scrollZoom": False,
            "doubleClick": False,
            "responsive": False,
        }
        for tr in self.figure.data:
            tr.on_click(self._clicked)
        self.figure.layout.on_change(self._shapes_changed, "shapes")

    # ---- user input -------------------------------------------------------------------------------
    def _emit(self, h: float):
        if self.on_cut is not None and np.isfinite(h):
            self.on_cut(float(h))

    def _clicked(self, trace, points, state):
        if self._quiet or not points.ys:
            return
        self._emit(points.ys[0])

    def _shapes_changed(self, layout, shapes):
        if self._quiet or not shapes:
            return
        s = shapes[0]
        try:
            h = 0.5 * (float(s.y0) + float(s.y1))
        except (TypeError, ValueError):
            return
        if abs(h - self._threshold) < 1e-12 * max(1.0, abs(h)):
            return
        self._emit(min(max(h, 0.0), self._ymax))

    # ---- drawing ----------------------------------------------------------------------------------
    def show(
        self,
        linkage: np.ndarray,
        leaf_cluster: np.ndarray,
        threshold: float,
        *,
        suggested_threshold: float | None = None,
        suggested_k: int | None = None,
        k: int | None = None,
        title: str = "",
        colors: Sequence[str] = PALETTE,
    ) -> None:
        """Draw ``linkage`` with leaves coloured by ``leaf_cluster`` (cluster index, -1 pruned) and the cut."""
        z = np.asarray(linkage, dtype=np.float64)
        n = z.shape[0] + 1
        walk = nodes(z)  # one walk for the links and the legs
        xs, ys, link_c, _ = dendrogram_segments(walk, leaf_cluster)
        stub_x, stub_y, stub_c = cluster_stubs(walk, leaf_cluster, threshold)
        top = float(z[:, 2].max()) if z.shape[0] else 1.0
        ymax = top * 1.08 if top > 0 else 1.0
        self._ymax = ymax
        self._threshold = float(threshold)
        x0, x1 = -0.5, max(n - 0.5, 0.5)
        slots = [(link_c < 0)] + [(link_c >= 0) & (link_c % MAX_K == s) for s in range(MAX_K)]
        edges_y = np.linspace(0.0, ymax, _CATCH_ROWS + 1)
        k_text = f"k = {k}" if k is not None else ""
        with self._silenced(), self.figure.batch_update():
            d = self.figure.data
            d[_CATCH].update(z=np.zeros((_CATCH_ROWS, 1)), x=[x0, x1], y=edges_y)
            if suggested_threshold is not None and z.shape[0]:
                d[_SUGGESTED].update(x=[x0, x1], y=[suggested_threshold, suggested_threshold])
            else:
                d[_SUGGESTED].update(x=[], y=[])
            for g, mask in enumerate(slots):
                px, py = _polyline(xs[mask], ys[mask])
                if g > 0 and len(stub_c):
                    smask = stub_c % MAX_K == g - 1
                    qx, qy = _polyline(stub_x[smask], stub_y[smask])
                    px, py = np.concatenate([px, qx]), np.concatenate([py, qy])
                d[_ABOVE + g].update(x=px, y=py)
                if g > 0:
                    d[_ABOVE + g].line.color = colors[(g - 1) % len(colors)]
            lay = self.figure.layout
            lay.xaxis.range = [x0, x1]
            lay.yaxis.range = [0.0, ymax]
            lay.title.text = title
            lay.shapes[0].update(x0=0, x1=1, y0=threshold, y1=threshold)
            show_suggested = suggested_threshold is not None and suggested_k is not None and z.shape[0]
            same = show_suggested and abs(float(suggested_threshold) - float(threshold)) <= 1e-9 * max(1.0, ymax)
            # short lines, to fit the margin; a cut on the suggested line says so in its own label
            cut_lines = ["cut " + k_text if k_text else "cut", "⇕ drag"] + (["= suggested"] if same else [])
            lines, heights = [float(threshold)], [len(cut_lines) * _LINE_PX[11]]
            if show_suggested and not same:
                lines.append(float(suggested_threshold))
                heights.append(2 * _LINE_PX[10])
            plot_px = float(lay.height) - _MARGIN_T - _MARGIN_B
            shifts = label_shifts(lines, heights, plot_px, ymax, lo=0.0, hi=plot_px + _MARGIN_B - 4)
            lay.annotations[0].update(y=threshold, yshift=shifts[0], text="<br>".join(cut_lines))
            if show_suggested and not same:
                lay.annotations[1].update(
                    y=suggested_threshold, yshift=shifts[1], text=f"suggested<br>k = {suggested_k}"
                )
            else:
                lay.annotations[1].update(text="")

    def clear(self, title: str = "") -> None:
        """Empty the figure (no tree, no cut), with ``title`` above it."""
        with self._silenced(), self.figure.batch_update():
            for tr in self.figure.data[1:]:
                tr.update(x=[], y=[])
            self.figure.layout.title.text = title
            self.figure.layout.annotations[0].text = ""
            self.figure.layout.annotations[1].text = ""

    class _Silence:
        def __init__(self, owner):
            self.owner = owner

        def __enter__(self):
            self.owner._quiet = True

        def __exit__(self, *exc):
            self.owner._quiet = False

    def _silenced(self):
        return Dendrogram._Silence(self)
