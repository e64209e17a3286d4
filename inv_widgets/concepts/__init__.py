"""Concepts across images: global explanations per class and layer, checked with TCAV (captum), and the
baselines beside INV's cluster maps for one image (LIME, KernelSHAP, Grad-CAM: ``concepts.baselines``).

    ge = GlobalExplanation.from_labels(inv.aggregate_labels(store, class_names=...), session)
    ge.top("car", layer), ge.trends("car"), ge.to_html("global.html")
    concept_test(session, ge)          # TCAV via captum.concept.TCAV; results attached to ge

``concept_test`` and ``baselines.attribution_maps`` import captum (and scikit-image) on first use, so importing
this package stays light; without them they raise an ImportError that says ``pip install 'inv-widgets[concepts]'``.
"""

from __future__ import annotations

from .global_ import GlobalExplanation

__all__ = ["GlobalExplanation", "concept_test", "TCAVRunner"]


def __getattr__(name):
    if name in ("concept_test", "TCAVRunner"):
        from . import tcav

        value = getattr(tcav, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'inv_widgets.concepts' has no attribute {name!r}")
