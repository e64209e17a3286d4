"""Explanations beside and across INV's cluster maps: baselines (LIME, KernelSHAP, Grad-CAM) for one image.

``inv_widgets.concepts.baselines.attribution_maps(session, index, ...)`` is the one entry point for the
baselines; it imports captum and scikit-image only when called (the ``concepts`` extra).
"""
