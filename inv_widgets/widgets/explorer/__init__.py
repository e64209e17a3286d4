"""The Explorer, a package: the composed widget (``widget.py``), what it shows as pure values (``state.py``),
its pictures (``images.py``) and labels (``provider.py``), and its views:

- a header (``header.py``, front end ``static/explorer.js``): image picker with thumbnails and an upload tile,
  the top-5 prediction (click a class to explain it), progress and errors, and the keyboard for the Explorer;
- ipywidgets controls (``controls.py``): target class, recipe, layer slider, cut (k slider, "suggested cut");
- the dendrogram of the layer (:class:`~inv_widgets.widgets.dendrogram.Dendrogram`, a plotly FigureWidget,
  drawn by ``dendrogram_view.py``): click or drag to set the cut height;
- the :class:`~inv_widgets.widgets.gallery.Gallery` of cluster maps beside the layer's plain Grad-CAM
  (``gallery_view.py``);
- a detail view (``detail.py``, front end ``static/explorer_detail.js``) of the selected cluster map;
- the "drop x %" toggle (``faithfulness_view.py``, ``explorer.faithfulness.show()``): the cards' ablation drops
  (``gallery.drops``), the selected map's deletion and insertion curves (``faithfulness.figure``);
- the compare view (``compare.py``, front end ``static/explorer_compare.js``): LIME, KernelSHAP and Grad-CAM
  of the image and class shown, computed on demand in a worker thread, cached, stoppable (``baselines=``).

    from inv_widgets.widgets import Explorer, store_labels      # as before the package
"""

from __future__ import annotations

from .provider import LabelsProvider, store_labels
from .state import Cut, Selection, View
from .widget import Explorer

__all__ = ["Explorer", "store_labels", "LabelsProvider", "Selection", "View", "Cut"]
