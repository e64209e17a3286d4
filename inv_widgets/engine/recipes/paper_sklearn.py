"""``paper-sklearn``: the paper recipe with scikit-learn's Barnes-Hut ``TSNE(random_state=seed)``, as the
authors ran it (several times slower than our exact t-SNE; a reference, not a default)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .paper import Paper

__all__ = ["PaperSklearn"]


class PaperSklearn(Paper):
    name = "paper-sklearn"
    summary = "The paper recipe with scikit-learn's Barnes-Hut TSNE (random_state=432), as the authors ran it"

    def embed(self, pcs: list[torch.Tensor], seed: int, on_done: Callable[[int, np.ndarray], None]) -> None:
        from sklearn.manifold import TSNE

        from ..tsne import capped_perplexity

        for i, pc in enumerate(pcs):
            perplexity = capped_perplexity(30.0, pc.shape[0])
            points = (
                TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca")
                .fit_transform(pc.numpy())
                .astype(np.float64)
            )
            on_done(i, points)
