"""The Explorer's ipywidgets controls: target class, recipe, layer slider, cut (k slider, "suggested cut")."""

from __future__ import annotations

import contextlib

import ipywidgets as W
import numpy as np

from ...engine.recipes import get_recipe
from ..dendrogram import MAX_K

__all__ = ["Controls", "SHOWN_RECIPES"]

#: Recipes offered by the recipe buttons (any registered recipe works with ``set_recipe``; it then gets a button).
SHOWN_RECIPES = ("fast", "paper", "spatial")


def _tip(name: str) -> str:
    try:
        return get_recipe(name).summary or name
    except ValueError:
        return name


class Controls:
    """The controls as plain ipywidgets; the Explorer observes them and :meth:`show` sets them from a View."""

    def __init__(self, recipe: str):
        self.target_select = W.Dropdown(
            description="Explain class",
            options=[("–", -1)],
            value=-1,
            style={"description_width": "initial"},
            layout=W.Layout(width="340px"),
        )
        shown = list(SHOWN_RECIPES) + ([recipe] if recipe not in SHOWN_RECIPES else [])
        self.recipe_select = W.ToggleButtons(
            options=shown,
            value=recipe,
            description="Recipe",
            tooltips=[_tip(r) for r in shown],
            style={"description_width": "initial", "button_width": "auto"},
        )
        self.layer_slider = W.SelectionSlider(
            options=["–"],
            value="–",
            description="Layer",
            continuous_update=True,
            style={"description_width": "80px"},
            layout=W.Layout(width="100%"),
        )
        self.k_slider = W.IntSlider(
            value=1,
            min=1,
            max=2,
            description="Clusters k",
            continuous_update=True,
            style={"description_width": "80px"},
            layout=W.Layout(width="380px"),
        )
        self.suggest_button = W.Button(
            description="suggested cut",
            tooltip="Back to the suggested number of clusters",
            layout=W.Layout(width="auto"),
        )
        self.cut_info = W.HTML(layout=W.Layout(margin="0 0 0 8px"))
        self.cut_info.add_class("inv-cutinfo")

    def rows(self) -> tuple[W.HBox, W.SelectionSlider, W.HBox]:
        """The three rows of controls, top to bottom."""
        controls = W.HBox([self.target_select, self.recipe_select])
        controls.add_class("inv-controls")
        cut_row = W.HBox([self.k_slider, self.suggest_button, self.cut_info])
        cut_row.add_class("inv-controls")
        return controls, self.layer_slider, cut_row

    def show_targets(self, exp, names, quiet=contextlib.nullcontext) -> None:
        """Every class, most probable first, with its probability; the explained one selected."""
        p = np.asarray(exp.probabilities, dtype=np.float64)
        order = np.argsort(-p, kind="stable")
        options = [
            (f"{names[c]} · {100 * p[c]:.1f} %" + ("  (predicted)" if c == exp.predicted else ""), int(c))
            for c in order
        ]
        with quiet(), self.target_select.hold_sync():
            self.target_select.options = options
            self.target_select.value = int(exp.target)

    def show(self, view, layer_changed: bool, quiet=contextlib.nullcontext) -> None:
        """Layer, recipe and cut of ``view``; ``quiet`` silences the Explorer's observers meanwhile."""
        lr, cl = view.layer, view.clusters
        n = lr.tree.n
        with quiet():
            if layer_changed:
                layers = tuple(view.explanation.layers)
                if tuple(self.layer_slider.options) != layers:
                    self.layer_slider.options = layers
                self.layer_slider.value = view.layer_name
            if view.recipe not in self.recipe_select.options:
                self.recipe_select.options = [*self.recipe_select.options, view.recipe]
            if self.recipe_select.value != view.recipe:
                self.recipe_select.value = view.recipe
            kmax = max(2, min(n, MAX_K))
            k_cut = int(cl.k_cut) or 1
            with self.k_slider.hold_sync():
                if self.k_slider.max != kmax:
                    if k_cut > self.k_slider.max:  # raise the maximum first, so the value is not clipped
                        self.k_slider.max = kmax
                        self.k_slider.value = min(k_cut, kmax)
                    else:
                        self.k_slider.value = min(k_cut, kmax)
                        self.k_slider.max = kmax
                else:
                    self.k_slider.value = min(k_cut, kmax)
                self.k_slider.disabled = n < 2
        self.cut_info.value = (
            f"cut height <b>{cl.threshold:.3g}</b> · suggested k = <b>{lr.suggested_k}</b> · {view.cut.label}"
        )
        self.suggest_button.disabled = view.cut.mode == "suggested"
