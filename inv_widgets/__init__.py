"""inv-widgets: Interpretable Network Visualizations (INV) for CNN image classifiers.

    import inv_widgets as inv
    model, data = inv.demo.load()
    session = inv.Session(model, data)
    exp = session.explain(0)
    exp[exp.layers[-1]].cut().maps

Widgets, the label store and the demo are imported on first use, so ``import inv_widgets`` stays light; so are
the subpackages, which work as attributes in a fresh process (``inv.labels.pool``, ``inv.concepts``, ``inv.runs``,
``inv.widgets``, ``inv.eval``).
"""

from __future__ import annotations

import importlib
import importlib.metadata

from .engine import Clusters, Explanation, LayerResult, MapKey
from .session import Session, explain

try:  # the installed distribution's version (pyproject.toml), so that a release needs one edit
    __version__ = importlib.metadata.version("inv-widgets")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

_LAZY = {
    "demo": ("inv_widgets.demo", None),
    "labels": ("inv_widgets.labels", None),
    "concepts": ("inv_widgets.concepts", None),
    "widgets": ("inv_widgets.widgets", None),
    "eval": ("inv_widgets.eval", None),
    "render": ("inv_widgets.render", None),
    "export": ("inv_widgets.export", None),
    "Explorer": ("inv_widgets.widgets", "Explorer"),
    "LabelingGame": ("inv_widgets.widgets", "LabelingGame"),
    "LabelStore": ("inv_widgets.labels", "LabelStore"),
    "aggregate_labels": ("inv_widgets.labels", "aggregate_labels"),
    "top_labels": ("inv_widgets.labels", "top_labels"),
    "StoreBusyError": ("inv_widgets.labels", "StoreBusyError"),
    "runs": ("inv_widgets.runs", None),
    "explain_dataset": ("inv_widgets.runs", "explain_dataset"),
    "Run": ("inv_widgets.runs", "Run"),
    "GlobalExplanation": ("inv_widgets.concepts", "GlobalExplanation"),
    "GlobalView": ("inv_widgets.widgets.global_view", "GlobalView"),
    "concept_test": ("inv_widgets.concepts", "concept_test"),
}

# ``eval`` is reached as ``inv.eval`` but left out of ``from inv_widgets import *``, which would hide the builtin.
__all__ = ["Session", "explain", "Explanation", "LayerResult", "Clusters", "MapKey", *(n for n in _LAZY if n != "eval")]


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'inv_widgets' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
