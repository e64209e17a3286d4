"""GlobalView: what each layer uses for one class, as the paper's explainer page, over a GlobalExplanation.

    view = inv.GlobalView(ge, session, explorer=inv.Explorer(session))

- a class picker and, for the class, one column per layer (forward order) with its top labels: score bar,
  mean cluster weight, number of images, the TCAV result when attached (greyed when not significant) and up
  to three example overlays (the cluster map over its image, drawn from the session); clicking an example
  opens that image, layer and cluster map in the Explorer;
- a trends panel (plotly): each label's score per image across the layers, the rising and the falling apart.

The kernel owns the state; the front end (``static/global_view.js``) sends intents (``select_class``,
``open_example``) and draws what the traits say. Example images travel as PNG bytes in binary buffers.
"""

from __future__ import annotations

import html
import logging

import anywidget
import ipywidgets as W
import numpy as np
import traitlets as t

from .. import render
from ..engine.runtime import LRU
from ._common import STATIC, esm, readable

__all__ = ["GlobalView"]

log = logging.getLogger("inv_widgets.global_view")

#: One colour per label of the trends panel: the rising labels take the first six, the falling the last six, so
#: that no two labels of a class share a colour (one cycle for both panels drew two labels in the same blue).
TREND_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#ad494a",
)
#: Labels drawn per panel (rising, falling).
TRENDS_PER_SIDE = 6
#: Width of the trends figure in pixels (plotly's widget draws before the browser has placed it, so without a
#: width it falls back to 700 px); a narrower notebook scrolls it sideways (global_view.css).
TRENDS_WIDTH = 1100


class _GlobalMain(anywidget.AnyWidget):
    """Class picker and the layer columns (front end: static/global_view.js)."""

    _esm = esm("global_view.js")
    _css = STATIC / "global_view.css"

    classes = t.List(t.Unicode()).tag(sync=True)
    class_counts = t.List(t.Int()).tag(sync=True)
    class_index = t.Int(-1).tag(sync=True)
    subtitle = t.Unicode("").tag(sync=True)
    columns = t.List(t.Dict()).tag(sync=True)
    images = t.List(t.Bytes()).tag(sync=True)
    message = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    revision = t.Int(0).tag(sync=True)


def _short_names(layers: list[str]) -> list[str]:
    """Layer names without the dotted prefix they all share ("features.block4_conv2" -> "block4_conv2")."""
    if len(layers) < 2:
        return [name.split(".")[-1] if "." in name else name for name in layers]
    parts = [name.split(".") for name in layers]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return [".".join(p[common:]) for p in parts]


class GlobalView(W.VBox):
    """The global explanation of one class at a time: a column per layer, labels, examples, TCAV, trends.

    Parameters
    ----------
    global_explanation : GlobalExplanation
    session : Session or Run, optional
        Draws the example overlays (any MapSource: a stored run draws them from disk; default: the one the
        explanation was built with, else the Explorer's). Without one the columns show no images.
    explorer : Explorer, optional
        Where a clicked example opens (image, layer, cut and cluster map).
    class_name : str or int, optional
        The class shown first (default: the first class with labels).
    n_labels, n_examples : int
        Labels per layer (default 5, as in the paper) and example overlays per label (default 3).
    thumb : int
        Size of the example overlay images in pixels (drawn 64 px wide on the page, two to a row).

    Each label reads "score · w̄ · images": the score (best-label scores summed over the images), w̄ the mean
    weight of the cluster maps carrying the label (percent of their layer) and the number of images.
    """

    def __init__(
        self,
        global_explanation,
        session=None,
        *,
        explorer=None,
        class_name=None,
        n_labels: int = 5,
        n_examples: int = 3,
        thumb: int = 96,
        cmap: str = "jet",
    ):
        ge = global_explanation
        if not hasattr(ge, "top") or not hasattr(ge, "layers"):
            raise TypeError(
                f"GlobalView shows a GlobalExplanation, got {type(ge).__name__}; build one with "
                "inv.GlobalExplanation.from_store(store, session)"
            )
        render.colormap(cmap)
        if int(n_labels) < 1 or int(n_examples) < 0:
            raise ValueError(f"n_labels must be >= 1 and n_examples >= 0, got {n_labels} and {n_examples}")
        self.global_explanation = ge
        if session is None:  # a source with no image yet is still one (len 0): compared with None, not truth
            session = ge.session if ge.session is not None else explorer.session if explorer is not None else None
        self.session = session
        self.explorer = explorer
        self.n_labels, self.n_examples, self.thumb, self.cmap = int(n_labels), int(n_examples), int(thumb), cmap
        self.last_error: BaseException | None = None
        #: the MapKey opened last (by a click or :meth:`open_example`)
        self.last_opened = None
        self._png = LRU(1024)
        self._shown: list[list[dict]] = []
        self._class: str | None = None
        self._short = _short_names(ge.layers)

        counts = [ge.n_images(c) for c in ge.classes]
        self.main = _GlobalMain(classes=list(ge.classes), class_counts=counts)
        self.trends = self._make_trends()
        super().__init__(children=[self.main, self.trends])
        self.add_class("inv-global-view")
        self.main.on_msg(self._on_msg)
        self._unobserve = ge.observe(lambda _ge: self._safely("show the TCAV results", self.refresh))
        first = (
            class_name
            if class_name is not None
            else next((c for c, n in zip(ge.classes, counts) if n), ge.classes[0] if ge.classes else None)
        )
        if first is None:
            self.main.message = "No classes: the global explanation is empty."
        else:
            self.select_class(first)

    # ---- public API -----------------------------------------------------------------------------------
    @property
    def class_name(self) -> str | None:
        """The class shown."""
        return self._class

    @property
    def layers(self) -> list[str]:
        """The layers of the global explanation, in forward order (one column each)."""
        return list(self.global_explanation.layers)

    def shown(self) -> list[list[dict]]:
        """Per layer, the label rows shown (label, score, mean_weight, n_images, tcav, examples as MapKeys)."""
        return [[dict(r) for r in col] for col in self._shown]

    def select_class(self, cls) -> None:
        """Show a class (name or index)."""
        name = self.global_explanation.class_name(cls)
        self._class = name
        self._push()
        self._push_trends()

    def refresh(self) -> None:
        """Show the explanation again (e.g. after ``concept_test`` attached new results; done automatically)."""
        if self._class is not None:
            self._push()
            self._push_trends()

    def open_example(self, layer, label, k: int = 0):
        """Open example ``k`` of a label of the shown class at a layer in the Explorer; returns its MapKey.

        ``layer`` is a name or a position, ``label`` the label text or its row in the layer's column.
        """
        ge = self.global_explanation
        layer = ge.layer_name(layer)
        col = self._shown[ge.layers.index(layer)]
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(col):
                raise IndexError(f"label row {int(label)} does not exist; {layer} shows {len(col)} labels")
            row = col[int(label)]
        else:
            row = next((r for r in col if r["label"] == str(label)), None)
            if row is None:
                raise KeyError(f"{label!r} is not among the labels shown for {self._class!r} at {layer}")
        if not 0 <= int(k) < len(row["examples"]):
            raise IndexError(f"example {k} does not exist; {row['label']!r} has {len(row['examples'])} examples")
        key = row["examples"][int(k)]
        self.last_opened = key
        if self.explorer is None:
            self.main.message = (
                "No Explorer is connected to open this map in: GlobalView(ge, session, explorer=inv.Explorer(session))."
            )
            return key
        ex = self.explorer
        i, cl, j = ex.session.locate(key)
        if ex.recipe != cl.layer.recipe:
            ex.set_recipe(cl.layer.recipe)
        ex.select_image(i, target=key.target)
        ex.set_layer(key.layer)
        ex.set_cut(threshold=cl.threshold)
        keys = ex.clusters.keys()
        if key in keys:
            ex.select_cluster(keys.index(key))
            self.main.message = (
                f"Opened in the Explorer: image {i}, {key.layer}, cluster map "
                f"{keys.index(key) + 1} of {len(keys)} ({row['label']!r})."
            )
        else:  # the Explorer caps a cut at a number of clusters that may not separate this map
            self.main.message = (
                f"Opened image {i} at {key.layer} in the Explorer, but its cut does not show this "
                f"cluster map on its own ({len(key.members)} channels)."
            )
        self.main.error = ""
        return key

    def close(self):
        """Stop following the global explanation's TCAV results and close the widget."""
        stop = getattr(self, "_unobserve", None)  # absent when __init__ failed
        if stop is not None:
            stop()
        super().close()

    # ---- state to views ---------------------------------------------------------------------------------
    def _rows(self, layer: str) -> list[dict]:
        ge = self.global_explanation
        top = ge.top(self._class, layer, self.n_labels)
        rows = []
        for _, r in top.iterrows():
            res = ge.tcav_of(self._class, layer, r["label"])
            tcav = None
            if res is not None:
                ok = res.get("tcav_score") is not None and np.isfinite(res.get("tcav_score", np.nan))
                tcav = (
                    {
                        "score": float(res["tcav_score"]),
                        "random": float(res["random_score"]),
                        "p": float(res["p_value"]),
                        "significant": bool(res["significant"]),
                    }
                    if ok
                    else {"note": str(res.get("note") or "not tested")}
                )
            rows.append(
                {
                    "label": str(r["label"]),
                    "score": float(r["score"]),
                    "mean_weight": float(r["mean_weight"]) if np.isfinite(r["mean_weight"]) else None,
                    "n_images": int(r["n_images"]),
                    "n_maps": int(r["n_maps"]),
                    "tcav": tcav,
                    "examples": list(r["examples"])[: self.n_examples],
                }
            )
        return rows

    def _example_pngs(self, keys) -> dict:
        """PNG bytes of the example overlays (cached), drawn from the session or the run (``examples.overlays``)."""
        from ..concepts.examples import overlays

        out = {k: self._png.get((k, self.cmap, self.thumb)) for k in keys}
        todo = [k for k, v in out.items() if v is None]
        if todo and self.session is not None:
            for key, picture in overlays(self.session, todo, size=self.thumb, cmap=self.cmap):
                out[key] = self._png.put((key, self.cmap, self.thumb), render.to_png(picture))
        return {k: v for k, v in out.items() if v is not None}

    def _push(self) -> None:
        ge = self.global_explanation
        self._shown = [self._rows(layer) for layer in ge.layers]
        keys = list(dict.fromkeys(k for col in self._shown for r in col for k in r["examples"]))
        pngs = self._example_pngs(keys)
        index = {k: n for n, k in enumerate(k for k in keys if k in pngs)}
        images = [pngs[k] for k in index]
        columns = []
        best = max((r["score"] for col in self._shown for r in col), default=0.0) or 1.0
        for layer, short, col in zip(ge.layers, self._short, self._shown):
            columns.append(
                {
                    "layer": layer,
                    "short": short,
                    "labels": [
                        {
                            **{k: v for k, v in r.items() if k != "examples"},
                            "bar": r["score"] / best,
                            "examples": [index.get(k, -1) for k in r["examples"]],
                        }
                        for r in col
                    ],
                }
            )
        n_img = ge.n_images(self._class)
        tested = ge.tcav is not None and len(ge.tcav)
        with self.main.hold_sync():
            self.main.class_index = ge.classes.index(self._class)
            self.main.subtitle = (
                f"{n_img} labelled image{'s' if n_img != 1 else ''} · top {self.n_labels} labels "
                f"per layer · score = best-label scores summed over the images · w̄ = mean weight "
                f"of the cluster maps carrying the label (% of their layer)"
                + (" · TCAV: share of the class's images that the concept pushes towards it" if tested else "")
            )
            self.main.columns = columns
            self.main.images = images
            self.main.message = "" if any(self._shown) else f"No labelled cluster maps for {self._class!r} yet."
            self.main.error = ""
            self.main.revision += 1

    def _make_trends(self):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        base = make_subplots(
            rows=1, cols=2, subplot_titles=("<b>Rising labels</b>", "<b>Falling labels</b>"), horizontal_spacing=0.1
        )
        for side in (1, 2):
            for n in range(TRENDS_PER_SIDE):
                color = TREND_COLORS[(side - 1) * TRENDS_PER_SIDE + n]
                base.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        mode="lines+markers",
                        name="",
                        visible=False,
                        line=dict(color=color, width=2),
                        marker=dict(size=6, color=color),
                        legendgroup=f"{side}",
                        hovertemplate="%{fullData.name}<br>%{x}: %{y:.3f} per image<extra></extra>",
                    ),
                    row=1,
                    col=side,
                )
            # layer names at an angle, each fully readable, however many layers (they overlapped flat)
            base.update_xaxes(tickangle=-35, automargin=True, row=1, col=side)
        base.update_layout(
            width=TRENDS_WIDTH,
            height=420,
            margin=dict(l=60, r=20, t=80, b=40),
            template="plotly_white",
            legend=dict(orientation="h", y=-0.35, yanchor="top", font=dict(size=11)),
            yaxis_title="score per image",
            font=dict(size=11),
        )
        fig = go.FigureWidget(base)
        fig.add_class("inv-global-trends")
        return fig

    def _push_trends(self) -> None:
        ge = self.global_explanation
        tr = ge.trends(self._class)
        x = self._short
        n = TRENDS_PER_SIDE
        with self.trends.batch_update():
            for side, kind in ((0, "rising"), (1, "falling")):
                rows = tr[tr["trend"] == kind] if len(tr) else tr
                for m in range(n):
                    trace = self.trends.data[side * n + m]
                    if m < len(rows):
                        label = rows.index[m]
                        trace.x, trace.y = x, [float(v) for v in rows.iloc[m][ge.layers]]
                        # plotly reads a few HTML tags in names and titles: label text is escaped (it shows as typed)
                        trace.name = f"{html.escape(str(label))} ({rows.iloc[m]['slope']:+.2f}/layer)"
                        trace.visible = True
                    else:
                        trace.x, trace.y, trace.name, trace.visible = [], [], "", False
            self.trends.layout.title = dict(
                text=f"“{html.escape(self._class)}”: how each label rises and falls through the layers",
                font=dict(size=13),
                x=0.01,
                y=0.98,
                yanchor="top",
            )

    # ---- browser intents ---------------------------------------------------------------------------------
    def _on_msg(self, _widget, content, _buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "select_class":
            self._safely("show that class", self.select_class, int(content["index"]))
        elif kind == "open_example":
            self._safely("open that example", self._open_from_ui, content)

    def _open_from_ui(self, content) -> None:
        li, ri, k = int(content["layer"]), int(content["row"]), int(content["example"])
        self.open_example(li, ri, k)

    def _safely(self, action: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # shown to the person, kept for the programmer
            self.last_error = e
            log.exception("GlobalView could not %s", action)
            self.main.error = readable(e, action)
