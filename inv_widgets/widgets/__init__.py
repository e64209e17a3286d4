"""Jupyter widgets: thin views over a Session and the label store.

``Explorer`` (cluster maps of one image, layer by layer) and ``Gallery`` live here; the labelling game is
imported on first use from its own module, so importing the Explorer never pulls in the game.
"""

from __future__ import annotations

import importlib

from .dendrogram import Dendrogram
from .explorer import Explorer, store_labels
from .gallery import Gallery

__all__ = ["Explorer", "Gallery", "Dendrogram", "store_labels", "LabelingGame"]

# Widgets that live in modules owned elsewhere, imported lazily: name -> module.
_LAZY = {"LabelingGame": "inv_widgets.widgets.game"}


def __getattr__(name):
    if name in _LAZY:
        try:
            mod = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as e:
            if e.name == _LAZY[name]:
                raise AttributeError(f"{name} is not available: module {_LAZY[name]} is not installed") from e
            raise
        value = getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'inv_widgets.widgets' has no attribute {name!r}")
