"""Does the shown cluster map matter? The Explorer's "drop x %" toggle and deletion / insertion curves.

With the toggle on, the gallery's cards of the shown layer read "drop x %" under "w = x %": the target
logit's drop when the map's member channels are zeroed at the layer's output, as a percentage of the drop
when the whole layer is zeroed (``Clusters.ablation()``: one batched forward pass, cached with the cut). The
detail view gains the deletion and insertion curves of the selected map against the layer's Grad-CAM, with
the areas under them (``Clusters.curves(j)``), in a plotly figure. Nothing runs while the toggle is off;
both measures show progress in the header while they run.
"""

from __future__ import annotations

import logging

import ipywidgets as W
import numpy as np

from .._common import readable
from ..dendrogram import PALETTE
from .gallery_view import color

__all__ = ["FaithfulnessView", "CURVE_STEPS", "drop_tips"]

log = logging.getLogger("inv_widgets.explorer")

#: Equal steps of the Explorer's deletion and insertion curves (4 % of the pixels each).
CURVE_STEPS = 25
GRADCAM_COLOR = "#5f6368"
#: Width of the curves in pixels: the Explorer's own width (its CSS max-width, 1180 px, less padding and border).
#: plotly's widget draws its figure before the browser has placed it, so without a width it falls back to
#: 700 px, half the Explorer; a narrower Explorer scrolls the figure sideways (explorer.css).
CURVES_WIDTH = 1150


def _subplot_title(name: str, areas=None, better: str = "") -> str:
    """A subplot's title on two lines: the curve's name, then its areas in smaller type (inside the figure)."""
    if areas is None:
        return f"<b>{name}</b>"
    return (
        f"<b>{name}</b><br><span style='font-size:11px'>area under the curve: map {areas[0]:.3f}, "
        f"Grad-CAM {areas[1]:.3f} ({better} is more faithful)</span>"
    )


def drop_tips(ablation, clusters, target_name: str) -> list[str]:
    """One sentence per map: what zeroing its channels does to the target, as the card's tooltip says it."""
    out = []
    for j, (d, dp) in enumerate(zip(ablation.logit_drop, ablation.probability_drop)):
        n = len(clusters.members[j])
        p0, p1 = ablation.probability, ablation.probability - dp
        share = ablation.share[j]
        out.append(
            f"Zeroing the {n} channel{'s' if n != 1 else ''} of map {j + 1} lowers the “{target_name}” logit "
            f"by {d:.3g} (from {ablation.logit:.3g}) and its probability from {100 * p0:.1f} % to "
            f"{100 * p1:.1f} %"
            + (
                f": {share:.0f} % of the drop when the whole layer is zeroed ({ablation.layer_logit_drop:.3g})."
                if np.isfinite(share)
                else "."
            )
        )
    return out


class FaithfulnessView:
    """The toggle (``toggle``, an ipywidgets ToggleButton, in ``tools``) and the curves (``box``: a plotly
    FigureWidget made on first use, below the detail view), for the Explorer's ``gallery`` and ``header``.

    ``view()`` returns the View shown. A failure shows in the header (``last_error`` keeps it) and leaves the
    rest as it is. The view follows its toggle and the gallery's selected card itself; the Explorer calls
    :meth:`update` after showing another image, layer or cut.
    """

    def __init__(self, gallery, header, view):
        self.gallery, self.header, self._view = gallery, header, view
        self.last_error: BaseException | None = None
        self.toggle = W.ToggleButton(
            value=False,
            description="drop x %",
            tooltip="Measure each cluster map: the drop of the class score when its channels "
            "are zeroed (shown layer), and deletion / insertion curves of the "
            "selected map against Grad-CAM",
            layout=W.Layout(width="auto"),
        )
        self.toggle.add_class("inv-drop-toggle")
        self.tools = W.HBox([self.toggle])  # above the gallery
        self.tools.add_class("inv-gallery-tools")
        self.box = W.VBox([], layout=W.Layout(display="none"))  # below the detail view
        self.box.add_class("inv-curves-box")
        self.figure = None
        self.toggle.observe(self._toggled, "value")
        gallery.observe(lambda change: self.update(curves_only=True), "selected")

    @property
    def on(self) -> bool:
        return bool(self.toggle.value)

    def show(self, on: bool = True) -> None:
        """Turn the toggle on (measure and show) or off (hide); a failure is shown, then raised."""
        self.last_error = None
        self.toggle.value = bool(on)  # the observer measures (or hides)
        if self.last_error is not None:
            raise self.last_error

    def _toggled(self, change) -> None:
        self.header.error = ""  # a new request replaces the last message
        self.update()

    def update(self, *, curves_only: bool = False) -> None:
        """Everything the toggle shows for the View shown (or nothing when it is off); progress in the header."""
        view = self._view()
        if view is None:
            return
        if not self.on:
            if self.gallery.drops:
                self.gallery.show_drops([])
            self.hide()
            return
        steps = [] if curves_only else [("measure the cluster maps", lambda: self.show_drops(view))]
        steps.append(("draw the deletion and insertion curves", lambda: self.show_curves(view)))
        for action, step in steps:
            try:
                step()
            except Exception as e:  # shown to the person, logged for the developer
                self.last_error = e
                log.warning("Explorer could not %s", action, exc_info=True)
                self.header.error = readable(e, action)

    # ---- drops on the cards -----------------------------------------------------------------------
    def show_drops(self, view) -> None:
        """Measure the shown cut and put its drops on the cards."""
        cl = view.clusters
        if cl.k == 0:
            self.gallery.show_drops([])
            return
        with self.header.working(f"ablating {cl.k} cluster map{'s' if cl.k != 1 else ''} of {view.layer_name}…"):
            ab = cl.ablation()
        self.gallery.show_drops(list(ab.share), drop_tips(ab, cl, view.explanation.target_name))

    # ---- curves in the detail view --------------------------------------------------------------------
    def _make_figure(self):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=(_subplot_title("Deletion"), _subplot_title("Insertion")),
            horizontal_spacing=0.1,
        )
        for col in (1, 2):
            for name, line_color, dash in (("cluster map", PALETTE[0], "solid"), ("Grad-CAM", GRADCAM_COLOR, "dash")):
                fig.add_trace(
                    go.Scatter(
                        x=[],
                        y=[],
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=col == 1,
                        marker={"size": 4},
                        line={"color": line_color, "dash": dash, "width": 2},
                    ),
                    row=1,
                    col=col,
                )
            fig.update_xaxes(title_text="% of pixels, most salient first", range=[0, 100], row=1, col=col)
            fig.update_yaxes(title_text="class probability" if col == 1 else None, range=[0, 1.02], row=1, col=col)
        fig.update_layout(
            width=CURVES_WIDTH,
            height=360,
            margin={"l": 60, "r": 20, "t": 96, "b": 50},
            template="plotly_white",
            legend={"orientation": "h", "y": -0.25},
            title={"text": "", "font": {"size": 13}, "x": 0.01, "y": 0.98, "yanchor": "top"},
        )
        for annotation in fig.layout.annotations:  # the subplot titles: two lines, inside the top margin
            annotation.update(font={"size": 13}, yshift=8)
        self.figure = go.FigureWidget(fig)
        self.figure.add_class("inv-curves")
        self.box.children = [self.figure]

    def show_curves(self, view) -> None:
        """The selected card's map: its deletion and insertion curves against the layer's Grad-CAM."""
        cl, j = view.clusters, int(self.gallery.selected)
        if not 0 <= j < cl.k:
            self.hide()
            return
        with self.header.working(f"deletion and insertion curves of map {j + 1}…"):
            c = cl.curves(j, steps=CURVE_STEPS, progress=self.header.report)
        if self.figure is None:
            self._make_figure()
        x = 100.0 * c.fractions
        names = [f"cluster map {j + 1}", "Grad-CAM"]
        fig = self.figure
        with fig.batch_update():
            for col, ys in enumerate((c.deletion, c.insertion)):
                for r in range(2):
                    tr = fig.data[2 * col + r]
                    tr.x, tr.y, tr.name = x, ys[r], names[r]
                    tr.hovertemplate = names[r] + "<br>%{x:.0f} % of pixels: p = %{y:.3f}<extra></extra>"
                    if r == 0:
                        tr.line.color = color(j)
            fig.layout.annotations[0].text = _subplot_title("Deletion", c.deletion_area, "lower")
            fig.layout.annotations[1].text = _subplot_title("Insertion", c.insertion_area, "higher")
            fig.layout.title.text = (
                f"Map {j + 1} of {view.layer_name} against the layer's Grad-CAM, “{view.explanation.target_name}”"
            )
        self.box.layout.display = None

    def hide(self) -> None:
        self.box.layout.display = "none"
