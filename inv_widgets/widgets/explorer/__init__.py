"""The Explorer, a package: the composed widget (``widget.py``), what it shows as pure values (``state.py``),
and its views: the header (``header.py``), the controls (``controls.py``), the gallery and dendrogram glue
(``gallery_view.py``, ``dendrogram_view.py``), the detail view (``detail.py``), their pictures
(``images.py``) and labels (``provider.py``).

    from inv_widgets.widgets import Explorer, store_labels      # as before the package
"""
from __future__ import annotations

from .provider import LabelsProvider, store_labels
from .state import Cut, Selection, View
from .widget import Explorer

__all__ = ["Explorer", "store_labels", "LabelsProvider", "Selection", "View", "Cut"]
