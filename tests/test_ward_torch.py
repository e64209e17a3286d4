"""The batched torch Ward kernel (engine/ward_torch.py) against scipy's linkage(method="ward"), on CPU tensors.

Tolerance: merge heights within 1e-9 relative (float64 loop; measured differences are about 1e-15), the
merged ids and sizes exactly equal, and the clusters of every cut k = 1..n identical, whenever no two
candidate merges tie. With ties both are valid Ward dendrograms: the heights agree as a multiset and ours
is deterministic. float32 (the GPU default): heights within 1e-5 relative on generic data.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from inv_widgets.engine.numeric import condensed_euclidean, minmax_rows
from inv_widgets.engine.ward_torch import pairwise_sq_euclidean, ward_linkage, ward_linkage_batched, ward_linkage_groups


def assert_same_tree(z, ref, rtol=1e-9):
    assert z.shape == ref.shape
    np.testing.assert_array_equal(z[:, [0, 1, 3]], ref[:, [0, 1, 3]])
    np.testing.assert_allclose(z[:, 2], ref[:, 2], rtol=rtol, atol=1e-12)
    n = z.shape[0] + 1
    for k in range(1, n + 1):
        np.testing.assert_array_equal(fcluster(z, k, "maxclust"), fcluster(ref, k, "maxclust"))


@pytest.mark.parametrize("n,d", [(2, 3), (3, 1), (7, 5), (40, 16), (150, 64)])
def test_single_problem_equals_scipy(n, d):
    x = np.random.default_rng(n).random((n, d))
    assert_same_tree(ward_linkage(torch.from_numpy(x)), linkage(pdist(x), method="ward"))


def test_batch_with_padding_and_mixed_sizes_equals_scipy_one_by_one():
    rng = np.random.default_rng(5)
    sizes = [5, 40, 1, 0, 17, 40, 2, 3]
    xs = [rng.random((n, 12)) for n in sizes]
    X = torch.zeros(len(xs), max(sizes), 12, dtype=torch.float64)
    for p, x in enumerate(xs):
        X[p, : len(x)] = torch.from_numpy(x)
    X[2:4] = 7.0  # garbage in the padding must not matter
    X[2, 0] = torch.from_numpy(xs[2][0])
    links = ward_linkage_batched(pairwise_sq_euclidean(X, torch.tensor(sizes)), sizes)
    for x, z in zip(xs, links):
        if len(x) < 2:
            assert z.shape == (0, 4)
        else:
            assert_same_tree(z, linkage(pdist(x), method="ward"))


def test_groups_of_layers_equal_scipy():
    """Several layers (groups) of several images, pooled into size buckets: each problem as scipy."""
    rng = np.random.default_rng(9)
    d2s, counts, refs = [], [], []
    for n_max, d in ((9, 30), (33, 8), (70, 20)):
        cnt = rng.integers(0, n_max + 1, size=4)
        X = torch.zeros(4, n_max, d, dtype=torch.float64)
        ref = []
        for p, c in enumerate(cnt):
            x = rng.random((c, d))
            X[p, :c] = torch.from_numpy(x)
            ref.append(linkage(pdist(x), method="ward") if c >= 2 else None)
        d2s.append(pairwise_sq_euclidean(X, torch.as_tensor(cnt)))
        counts.append(cnt)
        refs.append(ref)
    for links, ref in zip(ward_linkage_groups(d2s, counts), refs):
        for z, r in zip(links, ref):
            if r is None:
                assert z.shape == (0, 4)
            else:
                assert_same_tree(z, r)


def test_real_feature_maps_of_the_demo_equal_scipy_on_the_same_distances(demo_session):
    """Every layer of two demo images: the kept maps, min-max scaled, with the engine's own distances."""
    exp = demo_session.explain(0, lazy=True)
    exp2 = demo_session.explain(7, lazy=True)
    checked = 0
    for e in (exp, exp2):
        for name in e.layers:
            maps = e[name]._data.maps
            if maps.shape[0] < 2:
                continue
            x = minmax_rows(maps.reshape(maps.shape[0], -1).float())
            cond = condensed_euclidean(x)  # what the fast recipe hands to scipy
            ref = linkage(cond, method="ward")
            n = maps.shape[0]
            d = np.zeros((n, n))
            d[np.triu_indices(n, 1)] = cond
            d2 = torch.from_numpy((d + d.T) ** 2)[None].clone()
            d2[0].fill_diagonal_(float("inf"))
            z = ward_linkage_batched(d2, [n])[0]
            assert_same_tree(z, ref)
            assert_same_tree(z, e[name].linkage)  # the session's own dendrogram of this layer
            checked += 1
    assert checked >= 12


def test_float32_close_to_scipy():
    x = np.random.default_rng(3).random((60, 20))
    z = ward_linkage(torch.from_numpy(x).float(), dtype=torch.float32)
    ref = linkage(pdist(x), method="ward")
    np.testing.assert_allclose(z[:, 2], ref[:, 2], rtol=1e-5)
    np.testing.assert_array_equal(z[:, [0, 1, 3]], ref[:, [0, 1, 3]])


def test_ties_are_deterministic_and_heights_agree():
    grid = np.array([[i, j] for i in range(4) for j in range(4)], float)  # many equal distances
    dup = np.repeat(np.random.default_rng(1).random((6, 3)), 3, axis=0)  # identical points: zero heights
    for x in (grid, dup, np.zeros((5, 3))):
        z = ward_linkage(torch.from_numpy(x))
        ref = linkage(pdist(x), method="ward")
        np.testing.assert_allclose(np.sort(z[:, 2]), np.sort(ref[:, 2]), atol=1e-12)
        assert (np.diff(z[:, 2]) >= 0).all()  # sorted like scipy's rows
        np.testing.assert_array_equal(z, ward_linkage(torch.from_numpy(x)))
        # the same problem inside a batch with others: the same tree
        X = torch.zeros(3, 20, x.shape[1], dtype=torch.float64)
        X[1, : len(x)] = torch.from_numpy(x)
        X[0] = torch.rand(20, x.shape[1], dtype=torch.float64)
        links = ward_linkage_batched(pairwise_sq_euclidean(X, torch.tensor([20, len(x), 0])), [20, len(x), 0])
        np.testing.assert_array_equal(links[1], z)
    # on the grid, ties go to the lowest slots first: the first merge joins points 0 and 1
    assert tuple(ward_linkage(torch.from_numpy(grid))[0, :2]) == (0.0, 1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="problems, N, N"):
        ward_linkage_batched(torch.zeros(3, 4), [3])
    with pytest.raises(ValueError, match="counts"):
        ward_linkage_batched(torch.zeros(2, 4, 4), [3])
    with pytest.raises(ValueError, match="0..4"):
        ward_linkage_batched(torch.zeros(1, 4, 4), [5])
    with pytest.raises(ValueError, match="points, features"):
        ward_linkage(torch.zeros(3))
