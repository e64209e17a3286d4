"""Numeric kernels shared by the engine and the label clustering: row scaling, distances, silhouette, PCA,
correlation.

numpy / torch only. One implementation of each, tested against scikit-learn, scipy and numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from .runtime import LRU

__all__ = ["minmax_rows", "condensed_euclidean", "silhouette", "pca_scores", "pearson", "distinct_rows", "ROW_TOL"]

#: Rows scaled to [0, 1] that agree within this in every column are copies of one map (rounding at most).
ROW_TOL = 1e-6


def minmax_rows(x: torch.Tensor) -> torch.Tensor:
    """Scale each row to [0, 1]; constant rows become zeros."""
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), torch.zeros_like(x))


def condensed_euclidean(x: torch.Tensor) -> np.ndarray:
    """Condensed pairwise Euclidean distances via one matrix product (n, d) -> (n(n-1)/2,), float64 from
    float32 arithmetic.

    The (n, d) work (squared norms, Gram matrix) is torch's, on ``x``'s device; the (n, n) arithmetic is
    numpy's on the CPU, the same float32 operations in the same order (so the same bits), without torch's
    per-call cost on these small matrices (a dataset run computes thousands of them). The square root stays
    torch's: on the CPU it is not always correctly rounded, and the distances must not change by an ulp.
    """
    x = x.to(torch.float32)
    n = x.shape[0]
    sq = (x * x).sum(1).cpu().numpy()
    gram = (x @ x.T).cpu().numpy()
    d2 = sq[:, None] + sq[None, :]
    d2 -= np.float32(2.0) * gram
    np.maximum(d2, np.float32(0.0), out=d2)
    return torch.from_numpy(d2[_upper(n)]).sqrt_().numpy().astype(np.float64)


_UPPER = LRU(256)


def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, 1)``, kept for the sizes met lately (a few sizes recur thousands of times)."""
    return _UPPER.get(n, lambda: np.triu_indices(n, 1)) if n <= 512 else np.triu_indices(n, 1)


def silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient of a clustering from a square distance matrix (O(n^2), vectorised).

    The same value as scikit-learn's ``silhouette_score(dist, labels, metric="precomputed")`` (tested), 0
    for points alone in their cluster. The paper recipe scores six cuts per layer, and the label clustering
    dozens: scikit-learn's per-call checks cost more than the arithmetic at these sizes.
    """
    n = len(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    change = np.empty(n, dtype=bool)  # where a new cluster begins in the sorted labels
    change[:1] = True
    np.not_equal(sorted_labels[1:], sorted_labels[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    sizes = np.diff(starts, append=n).astype(np.float64)
    sums = np.add.reduceat(dist[:, order], starts, axis=1)  # (n, k): distance to each cluster
    cluster_of = np.searchsorted(sorted_labels[starts], labels)
    own = sizes[cluster_of]
    a = sums[np.arange(n), cluster_of] / np.maximum(own - 1, 1)
    means = sums / sizes
    means[np.arange(n), cluster_of] = np.inf
    b = means.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def pca_scores(x: torch.Tensor, n_components: int) -> torch.Tensor:
    """Principal-component scores of rows ``x`` (n, d), deterministic signs (largest |loading| positive)."""
    n, d = x.shape
    k = min(n_components, n, d)
    if n <= d:  # n x n Gram matrix is the cheap side; float32 products (4x faster at d = 50k), float64 eigh
        xc = x.float() - x.float().mean(0, keepdim=True)
        evals, evecs = torch.linalg.eigh((xc @ xc.T).double())
        order = torch.argsort(evals, descending=True)[:k]
        u = evecs[:, order]
        s = evals[order].clamp_min(0).sqrt()
    else:
        x = x.double()
        u, s, _ = torch.linalg.svd(x - x.mean(0, keepdim=True), full_matrices=False)
        u, s = u[:, :k], s[:k]
    idx = u.abs().argmax(0)
    signs = torch.sign(u[idx, torch.arange(u.shape[1])])
    signs[signs == 0] = 1
    return (u * signs) * s


def pearson(rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``rows`` (k, ...) with ``ref`` (same shape as one row), (k,).

    0 where a row or ``ref`` is constant (no correlation to speak of), as the Explorer shows it.
    """
    a = np.asarray(rows, np.float64).reshape(len(rows), -1)
    b = np.asarray(ref, np.float64).ravel()
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean()
    den = np.sqrt((a * a).sum(1) * (b * b).sum())
    num = a @ b
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def distinct_rows(x: torch.Tensor, tol: float = ROW_TOL) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``x`` (n, d), scaled to [0, 1]: rows within ``tol`` of each other in every column
    are copies (of one map, up to rounding).

    Returns ``(first, groups)``: ``first`` (m,) the index of the first row of each distinct row, in order of
    appearance, and ``groups`` (n,) which of them each row is. Deterministic; about O(n d): rows are sorted
    by a fixed random projection, and a row is compared only with the distinct rows whose projection is close.
    """
    a = x.detach().to("cpu", torch.float64).numpy()
    n, d = a.shape
    r = np.random.default_rng(0).standard_normal(d)
    p = a @ r
    window = tol * np.abs(r).sum() * 1.01 + 1e-12
    rep_of = np.full(n, -1, dtype=np.int64)  # each row's representative (a row index)
    reps: list[int] = []  # representatives, in ascending projection
    for i in np.argsort(p, kind="stable"):
        rep_of[i] = i
        for j in reversed(reps):
            if p[j] < p[i] - window:
                break
            if np.abs(a[i] - a[j]).max() <= tol:
                rep_of[i] = j
                break
        if rep_of[i] == i:
            reps.append(int(i))
    # number the groups by their first row, in order of appearance
    first_of = np.full(n, n, dtype=np.int64)
    np.minimum.at(first_of, rep_of, np.arange(n))
    first = np.unique(first_of[rep_of])
    groups = np.searchsorted(first, first_of[rep_of])
    return first, groups.astype(np.int64)
