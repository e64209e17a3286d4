"""The Explorer's dendrogram: what :class:`~inv_widgets.widgets.dendrogram.Dendrogram` draws for a View."""
from __future__ import annotations

__all__ = ["show_dendrogram"]


def show_dendrogram(dendrogram, view) -> None:
    """Draw the layer's dendrogram with the cut of ``view``, its clusters coloured, the suggested cut dashed."""
    lr, cl = view.layer, view.clusters
    tree = lr.tree
    title = f"{lr.name}: {tree.n} kept of {lr.n_channels} channels"
    if tree.n < 2:
        dendrogram.clear(title=title + " (nothing to cluster)")
        return
    sk = int(tree.suggested_k)
    dendrogram.show(lr.linkage, cl.assignment, cl.threshold, suggested_threshold=tree.threshold_for(sk),
                    suggested_k=sk, k=int(cl.k_cut), title=title)
