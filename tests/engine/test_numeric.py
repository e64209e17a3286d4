"""The shared numeric kernels (engine/numeric.py), each against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from inv_widgets.engine.numeric import condensed_euclidean, minmax_rows, pca_scores, pearson, silhouette


def test_minmax_rows_scales_each_row_and_zeroes_constant_rows():
    x = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [-2.0, 0.0, 2.0]])
    got = minmax_rows(x)
    torch.testing.assert_close(got, torch.tensor([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.5, 1.0]]))


def test_condensed_euclidean_matches_scipy():
    x = torch.randn(30, 50, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(condensed_euclidean(x), pdist(x.double().numpy()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_silhouette_matches_scikit_learn(seed):
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(40, 3)) + np.repeat(np.eye(3)[:, :3] * 4, [14, 13, 13], axis=0)
    labels = np.repeat([2, 0, 1], [14, 13, 13])
    labels[0] = 5  # a point alone in its cluster counts 0
    d = squareform(pdist(pts))
    assert silhouette(d, labels) == pytest.approx(silhouette_score(d, labels, metric="precomputed"), abs=1e-12)


@pytest.mark.parametrize("n,d", [(20, 60), (60, 8)])  # the Gram side and the SVD side
def test_pca_scores_match_scikit_learn_up_to_sign(n, d):
    from sklearn.decomposition import PCA

    x = torch.randn(n, d, generator=torch.Generator().manual_seed(n)).double()
    ours = pca_scores(x, 5).numpy()
    ref = PCA(n_components=5, svd_solver="full").fit_transform(x.numpy())
    for j in range(5):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], rtol=1e-4, atol=1e-4)
    # deterministic signs: the largest loading of each component is positive
    idx = np.abs(ours).argmax(0)
    assert (ours[idx, np.arange(5)] > 0).all()
    from inv_widgets.engine.tsne import pca_scores as from_tsne

    assert from_tsne is pca_scores  # the old import still works


def test_pearson_matches_numpy_and_is_zero_for_flat_maps():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(4, 6, 5))
    ref = rng.normal(size=(6, 5))
    rows[1] = 2 * ref + 1  # perfectly correlated
    rows[2] = 3.0  # flat
    got = pearson(rows, ref)
    expected = [0.0 if i == 2 else np.corrcoef(r.ravel(), ref.ravel())[0, 1] for i, r in enumerate(rows)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert got[1] == pytest.approx(1.0) and pearson(rows, np.ones((6, 5))).tolist() == [0.0] * 4


def test_tsne_stays_finite_for_points_far_from_the_origin():
    """1 + |y_i - y_j|^2 is computed from |y|^2 terms in float32: for points far from the origin the rounding
    took it to 0 or below and the embedding to NaN (the paper recipe on a VGG-16 layer); it is at least 1."""
    from inv_widgets.engine import tsne

    x = torch.as_tensor(np.random.default_rng(0).normal(size=(40, 10)))
    p, y = tsne._prepare(x, tsne.capped_perplexity(30.0, 40))
    out = tsne._optimise([(p, y + 3000.0)], 64, max_iter=300)[0]
    assert np.isfinite(out).all() and (out.std(0) > 1).all()  # spread out, not collapsed or lost
