"""Which grouping of a layer's kept channels finds parts? Candidates against random groups of the same sizes.

    python benchmarks/grouping_study.py                       # development set: 30 VAL_SEED images
    python benchmarks/grouping_study.py --held-out            # 30 EVAL_SEED images (the figures to quote)
    python benchmarks/grouping_study.py --only fast spatial --n 100 --held-out

For every image (explained for its true class, as ``python -m inv_widgets.eval parts`` does) and every layer
of the demo CNN, each candidate groups the kept channels; the cluster maps are made as ``LayerResult.cut``
makes them (weighted mean of the members' feature maps with their guided percent weights, bilinear to the
input size, min-max) and scored with ``inv_widgets.eval.parts`` (pointing recall, purity). Beside each
candidate, ``--draws`` random groupings of the same kept channels with the candidate's own group sizes (its
labels shuffled, channels a pruning cut drops included), merged the same way: is it the grouping that
finds the parts?

Registered recipes (``fast``, ``paper``, ``spatial``) use their own suggested cut; the other candidates
use ``fast``'s suggested k for the layer (the setting of the issue's NMF reference). ``oracle-part`` is not
a method: it groups channels by the part that holds most of their mass, read from the ground truth, to see
what grouping by part can give under these metrics; the other ``oracle-*`` candidates are ground-truth
groupings too (by the part holding each channel's peak, by mass density, and with the channels whose mass is
least inside their part dropped): they bound what any grouping could reach. ``focus-*`` candidates group only
the channels whose maps are focused (the share of a map's mass in its top 10 % pixels, read from the map
alone, in the layer's top half, or top 30 % for ``-q7``) and drop the diffuse rest, as a pruning cut drops
channels: ``focus-spatial`` with the ``spatial`` distance, ``focus-peak`` by centre of mass and spread,
``focus-jaccard`` by the overlap of top-10 % pixel masks (average linkage); all with the gap rule
(``-k3``, ``-k2-4``: the cut fixed at 3 or chosen in 2..4); ``jaccard`` and ``spatial-k3`` drop nothing.

The target (issue 10): pointing recall on average >= 0.10 above random groups and below them in no layer;
purity at least that of random groups in every layer. Development happened on VAL_SEED images; the figures
to quote are ``--held-out`` (EVAL_SEED images 0..n-1), never used to choose anything.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inv_widgets as inv  # noqa: E402
from inv_widgets.demo import EVAL_SEED, VAL_SEED  # noqa: E402
from inv_widgets.engine.capture import run_model  # noqa: E402
from inv_widgets.engine.maps import cluster_maps_lowres, upsample_minmax  # noqa: E402
from inv_widgets.engine.recipes import build_tree  # noqa: E402
from inv_widgets.engine.tree import assign  # noqa: E402
from inv_widgets.eval.parts import PartMasks, map_part_scores, specific_found  # noqa: E402


class _Acc:
    """Per-image purity and recall of a grouping's maps, averaged (the metrics of ``eval parts``)."""

    def __init__(self):
        self.rows = []

    @classmethod
    def new(cls):
        return cls()

    def add(self, maps, weights, parts):
        if not parts.names or not len(maps):
            return
        share, on = map_part_scores(maps, parts)
        self.rows.append((share.max(1).mean(), on.any(0).mean(), specific_found(maps, parts).mean(), len(maps)))

    def row(self):
        v = np.asarray(self.rows, np.float64).reshape(-1, 4)
        f = (lambda j: float(v[:, j].mean())) if len(v) else (lambda j: float("nan"))  # noqa: E731
        return dict(purity=f(0), recall_point=f(1), recall_specific=f(2), mean_k=f(3), images=len(v))


# ---- what a candidate sees ----------------------------------------------------------------------------------
class Layer:
    """One layer of one image: kept maps (n, h, w) post-ReLU, their percent weights, their gradients."""

    def __init__(self, maps, pct, grads, k_ref, parts, size):
        self.maps, self.pct, self.grads, self.k_ref, self.parts, self.size = maps, pct, grads, k_ref, parts, size

    def rows(self, kind="minmax"):
        x = self.maps.reshape(len(self.maps), -1).astype(np.float64)
        if kind in ("minmax", "l1", "hellinger"):
            lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
            x = np.where(hi > lo, (x - lo) / np.maximum(hi - lo, 1e-12), 0.0)
        if kind in ("l1", "raw-l1", "hellinger"):
            x = x / np.maximum(x.sum(1, keepdims=True), 1e-12)
        if kind == "hellinger":
            x = np.sqrt(x)
        if kind == "corr":
            x = x - x.mean(1, keepdims=True)
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x

    def contributions(self, sigma=0.0):
        """Guided gradient-weighted maps A * relu(G), optionally smoothed, as distributions."""
        from scipy.ndimage import gaussian_filter

        c = self.maps * np.maximum(self.grads, 0)
        if sigma:
            c = np.stack([gaussian_filter(m, sigma) for m in c])
        c = np.maximum(c, 0).reshape(len(c), -1).astype(np.float64)
        return c / np.maximum(c.sum(1, keepdims=True), 1e-12)


def _cut(z, k):
    from scipy.cluster.hierarchy import fcluster

    return np.unique(fcluster(z, k, criterion="maxclust"), return_inverse=True)[1]


def weighted_ward(x, mass):
    """Ward linkage of rows ``x`` with point masses (the channel weights): the merge cost of two clusters is
    m_a m_b / (m_a + m_b) |c_a - c_b|^2 with c their weighted means, updated by Lance-Williams; heights as
    scipy reports Ward's (equal masses give scipy's tree)."""
    m = np.asarray(mass, np.float64).copy()
    n = len(x)
    sq = (x * x).sum(1)
    cost = (m[:, None] * m[None] / (m[:, None] + m[None])) * np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0)
    np.fill_diagonal(cost, np.inf)
    ids, size, z = np.arange(n), np.ones(n), np.zeros((n - 1, 4))
    for s in range(n - 1):
        i, j = sorted(np.unravel_index(np.argmin(cost), cost.shape))
        h = cost[i, j]
        z[s] = [min(ids[i], ids[j]), max(ids[i], ids[j]), np.sqrt(2 * h), size[i] + size[j]]
        new = ((m[i] + m) * cost[i] + (m[j] + m) * cost[j] - m * h) / (m[i] + m[j] + m)
        new[[i, j]] = np.inf
        cost[i], cost[:, i] = new, new
        cost[j], cost[:, j] = np.inf, np.inf
        m[i] += m[j]
        size[i] += size[j]
        ids[i] = n + s
    return z


# ---- the candidates: Layer -> labels (n,), -1 for channels a cut drops ----------------------------------------
def recipe(name):
    return lambda L: assign(build_tree(torch.from_numpy(L.maps), name)) if name != "paper" else _paper(L)


def _paper(L):
    lr_tree = build_tree(torch.from_numpy(L.maps), "paper")
    labels = assign(lr_tree)
    k = int(labels.max()) + 1
    w = np.bincount(labels, weights=L.pct, minlength=k)
    from inv_widgets.engine.tree import prune_mask

    keep = prune_mask(w)
    remap = np.where(keep, np.cumsum(keep) - 1, -1)  # the clusters kept, numbered 0..K-1; the rest dropped
    return remap[labels]


def ward_on(kind, weighted=False):
    from scipy.cluster.hierarchy import linkage

    def run(L):
        x = L.rows(kind) if isinstance(kind, str) else kind(L)
        return _cut(weighted_ward(x, L.pct) if weighted else linkage(x, "ward"), L.k_ref)
    return run


def linkage_on(kind, method, metric):
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist

    def run(L):
        d = np.nan_to_num(pdist(L.rows(kind), metric), nan=1.0)
        return _cut(linkage(d, method), L.k_ref)
    return run


def nmf(source="raw", weighted=False):
    """Deep Feature Factorization: non-negative factors of the layer's (pixels x channels) activations, each
    channel to the factor that carries most of it (loading x factor-map norm)."""
    from sklearn.decomposition import NMF

    def run(L):
        if source == "contrib":
            a = L.contributions()
        else:
            a = L.rows("raw" if source == "raw" else "l1")
        if weighted:
            a = a * L.pct[:, None]
        k = max(1, min(L.k_ref, len(a)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = NMF(n_components=k, init="nndsvda", random_state=0, max_iter=400)
            w = model.fit_transform(a.T)
        score = model.components_ * np.linalg.norm(w, axis=0)[:, None]
        return np.unique(score.argmax(0), return_inverse=True)[1]
    return run


def kmeans(weighted=True):
    from sklearn.cluster import KMeans

    def run(L):
        return KMeans(min(L.k_ref, len(L.maps)), n_init=4, random_state=0).fit_predict(
            L.rows("minmax"), sample_weight=L.pct if weighted else None)
    return run


def spectral(L):
    from sklearn.cluster import SpectralClustering

    x = L.rows("hellinger")
    return SpectralClustering(min(L.k_ref, len(x)), affinity="precomputed", random_state=0,
                              assign_labels="discretize").fit_predict(np.clip(x @ x.T, 0, 1))


def oracle_part(L):
    up = upsample_minmax(torch.from_numpy(L.maps), L.size)
    share, _ = map_part_scores(up, L.parts)
    if share.shape[1] == 0:
        return np.zeros(len(up), np.int64)
    return np.unique(share.argmax(1), return_inverse=True)[1]


def _oracle_scores(L):
    up = upsample_minmax(torch.from_numpy(L.maps), L.size)
    share, on = map_part_scores(up, L.parts)
    return up, share, on


def oracle_peak(drop_background=False):
    """Not a method: each channel to the part its map's peak lies on (3 px tolerance, the first such part),
    channels peaking on no part gathered in one group (or dropped, as a pruning cut drops channels)."""

    def run(L):
        up, share, on = _oracle_scores(L)
        if share.shape[1] == 0:
            return np.zeros(len(up), np.int64)
        hit = on.any(1)
        lab = np.where(hit, on.argmax(1), -1 if drop_background else share.shape[1])
        if not (lab >= 0).any():
            return np.zeros(len(up), np.int64)
        out = np.full(len(lab), -1, np.int64)
        out[lab >= 0] = np.unique(lab[lab >= 0], return_inverse=True)[1]
        return out
    return run


def oracle_pure(q=0.5):
    """Not a method, a ceiling for purity: each channel to the part holding most of its mass, and only the
    channels whose share there is in the layer's top (1 - q) kept; the rest dropped."""

    def run(L):
        up, share, _ = _oracle_scores(L)
        if share.shape[1] == 0:
            return np.zeros(len(up), np.int64)
        best = share.max(1)
        keep = best >= np.quantile(best, q)
        out = np.full(len(up), -1, np.int64)
        out[keep] = np.unique(share.argmax(1)[keep], return_inverse=True)[1]
        return out
    return run


def oracle_peak_pure(q=0.5):
    """Not a method: channels grouped by the part their peak lies on, and within each part only those whose
    mass share on it is in the part's top (1 - q) kept (at least one per part); the rest dropped."""

    def run(L):
        up, share, on = _oracle_scores(L)
        if share.shape[1] == 0:
            return np.zeros(len(up), np.int64)
        part = np.where(on.any(1), on.argmax(1), -1)
        out = np.full(len(up), -1, np.int64)
        g = 0
        for p in np.unique(part[part >= 0]):
            idx = np.flatnonzero(part == p)
            s = share[idx, p]
            out[idx[s >= min(np.quantile(s, q), s.max())]] = g
            g += 1
        return out if g else np.zeros(len(up), np.int64)
    return run


def oracle_enrich(L):
    """Not a method: each channel to the part where its mass is densest (mass share / part area)."""
    up, share, _ = _oracle_scores(L)
    if share.shape[1] == 0:
        return np.zeros(len(up), np.int64)
    area = L.parts.flat.mean(1)
    return np.unique((share / np.maximum(area, 1e-12)).argmax(1), return_inverse=True)[1]


def concentration(x: np.ndarray, top: float = 0.1) -> np.ndarray:
    """Share of each row's mass (rows >= 0) in its top ``top`` fraction of entries: 1 for a map that responds
    in one spot, ``top`` for a flat one. Read from the map alone, no labels."""
    m = max(1, int(round(top * x.shape[1])))
    s = np.sort(x, axis=1)[:, ::-1]
    return s[:, :m].sum(1) / np.maximum(s.sum(1), 1e-12)


def focused(base, q=0.5, top=0.1):
    """Group only the channels whose maps are focused (concentration in the layer's top 1 - q) with ``base``
    (a function of the rows it sees -> labels); the diffuse rest dropped, as a pruning cut drops channels."""

    def run(L):
        x = L.rows("minmax")
        c = concentration(x, top)
        keep = c >= np.quantile(c, q)
        out = np.full(len(x), -1, np.int64)
        if keep.sum() < 2:
            out[keep] = 0
            return out
        out[keep] = base(x[keep], L)
        return out
    return run


def spatial_gap(x, L, k_range=(3, 8)):
    """The ``spatial`` recipe's distance (each map divided by its mean), Ward, the gap rule over ``k_range``."""
    from scipy.cluster.hierarchy import linkage
    from inv_widgets.engine.recipes.fast import gap_k

    p = x / np.maximum(x.mean(1, keepdims=True), 1e-12)
    z = linkage(p, "ward")
    return _cut(z, gap_k(z[:, 2], len(x), k_range))


def peak_gap(x, L):
    """Ward on each map's centre of mass (as a fraction of the grid) and its spread (root mean square distance
    from that centre), the gap rule."""
    from scipy.cluster.hierarchy import linkage
    from inv_widgets.engine.recipes.fast import gap_k

    h, w = L.maps.shape[1:]
    yy, xx = np.divmod(np.arange(h * w), w)
    p = x / np.maximum(x.sum(1, keepdims=True), 1e-12)
    cy, cx = p @ yy, p @ xx
    spread = np.sqrt(np.maximum(p @ (yy ** 2) - cy ** 2 + p @ (xx ** 2) - cx ** 2, 0))
    f = np.stack([cy / h, cx / w, spread / max(h, w)], 1)
    z = linkage(f, "ward")
    return _cut(z, gap_k(z[:, 2], len(x)))


def jaccard_gap(x, L, top=0.1):
    """Average linkage on the Jaccard distance between each map's top-``top`` pixel masks."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist
    from inv_widgets.engine.recipes.fast import gap_k

    m = max(1, int(round(top * x.shape[1])))
    thr = np.sort(x, 1)[:, -m][:, None]
    b = x >= thr
    z = linkage(pdist(b, "jaccard"), "average")
    return _cut(z, gap_k(z[:, 2], len(x)))


CANDIDATES = {
    "fast": recipe("fast"),
    "paper": recipe("paper"),
    "spatial": recipe("spatial"),
    "ward-corr": ward_on("corr"),
    "average-corr": linkage_on("minmax", "average", "correlation"),
    "complete-l1": linkage_on("l1", "complete", "euclidean"),
    "average-hellinger": linkage_on("hellinger", "average", "euclidean"),
    "ward-hellinger": ward_on("hellinger"),
    "weighted-ward-minmax": ward_on("minmax", weighted=True),
    "weighted-ward-l1": ward_on("l1", weighted=True),
    "weighted-ward-raw-l1": ward_on("raw-l1", weighted=True),
    "weighted-ward-gradxact": ward_on(lambda L: L.contributions(), weighted=True),
    "weighted-ward-gradxact-smooth": ward_on(lambda L: L.contributions(2.0), weighted=True),
    "weighted-kmeans": kmeans(),
    "spectral-hellinger": spectral,
    "nmf": nmf("raw"),
    "nmf-weighted": nmf("raw", weighted=True),
    "nmf-l1": nmf("l1"),
    "nmf-gradxact-weighted": nmf("contrib", weighted=True),
    "oracle-part": oracle_part,
    "oracle-peak": oracle_peak(),
    "oracle-peak-drop": oracle_peak(drop_background=True),
    "oracle-enrich": oracle_enrich,
    "oracle-pure": oracle_pure(0.5),
    "oracle-purest": oracle_pure(0.9),
    "oracle-peak-pure": oracle_peak_pure(0.5),
    "oracle-peak-purest": oracle_peak_pure(0.8),
    "focus-spatial": focused(spatial_gap),
    "focus-peak": focused(peak_gap),
    "focus-jaccard": focused(jaccard_gap),
    "jaccard": lambda L: jaccard_gap(L.rows("minmax"), L),
    "focus-spatial-q7": focused(spatial_gap, q=0.7),
    "focus-spatial-k3": focused(lambda x, L: spatial_gap(x, L, (3, 3))),
    "focus-spatial-k2-4": focused(lambda x, L: spatial_gap(x, L, (2, 4))),
    "focus-spatial-q7-k3": focused(lambda x, L: spatial_gap(x, L, (3, 3)), q=0.7),
    "focus-spatial-q7-k2-4": focused(lambda x, L: spatial_gap(x, L, (2, 4)), q=0.7),
    "spatial-k3": lambda L: spatial_gap(L.rows("minmax"), L, (3, 3)),
}


# ---- the study ----------------------------------------------------------------------------------------------
def study(names, n=30, seed_images=VAL_SEED, draws=3, progress=True):
    model, data = inv.demo.load(n=n, seed=seed_images)
    session = inv.Session(model, data, cache_size=1)
    acc: dict = {}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for i in range(n):
        x, y = data[i]
        parts = PartMasks(data.part_masks(i))
        exp = session.explain(i, target=y, lazy=True)
        grads = run_model(model, x[None], exp.layers, y, keep_gradients=True).gradients
        for li, layer in enumerate(exp.layers):
            lr = exp.layer(layer, "fast")
            kept = lr._data.kept
            L = Layer(lr.feature_maps.copy(), lr.channel_weights[lr.kept].astype(np.float64),
                      grads[layer][0].index_select(0, kept).numpy(), lr.suggested_k, parts, exp.input_size)
            maps, pct = torch.from_numpy(L.maps), torch.from_numpy(L.pct).float()
            for name in names:
                labels = (np.asarray(CANDIDATES[name](L), np.int64) if len(L.maps) >= 2
                          else np.zeros(len(L.maps), np.int64))
                for draw in range(draws + 1):
                    lab = labels if draw == 0 else rng.permutation(labels)
                    k = int(lab.max()) + 1 if lab.size else 0
                    ok = lab >= 0
                    w = np.bincount(lab[ok], weights=L.pct[ok], minlength=k)
                    cmaps = upsample_minmax(cluster_maps_lowres(maps, pct, lab, k), L.size)
                    acc.setdefault((li, layer, name if draw == 0 else name + "/random"), _Acc.new()).add(cmaps, w, parts)
        if progress:
            el = time.perf_counter() - t0
            print(f"\r  image {i + 1}/{n}  {el:.0f} s", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    rows = [dict(layer_index=li, layer=layer.split(".")[-1], method=m, **a.row()) for (li, layer, m), a in acc.items()]
    return pd.DataFrame(rows)


def verdict(df: pd.DataFrame, name: str) -> dict:
    """Recall and purity of ``name`` against its random groups, per layer, and whether the target is met."""
    a = df[df.method == name].set_index("layer_index").sort_index()
    r = df[df.method == name + "/random"].set_index("layer_index").sort_index()
    d_rec, d_pur = a.recall_point - r.recall_point, a.purity - r.purity
    return dict(method=name, k=a.mean_k.mean(), recall=a.recall_point.mean(), random=r.recall_point.mean(),
                gain=d_rec.mean(), worst_layer=d_rec.min(), layers_below=int((d_rec < 0).sum()),
                purity=a.purity.mean(), random_purity=r.purity.mean(), purity_worst_layer=d_pur.min(),
                purity_layers_below=int((d_pur < 0).sum()),
                target=bool(d_rec.mean() >= 0.10 and d_rec.min() >= 0 and d_pur.min() >= 0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--held-out", action="store_true", help="EVAL_SEED images (report), not VAL_SEED (develop)")
    ap.add_argument("--only", nargs="+", default=None, help=f"candidates (default all: {' '.join(CANDIDATES)})")
    ap.add_argument("--draws", type=int, default=3, help="random groupings per image and layer (default 3)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    names = args.only or list(CANDIDATES)
    unknown = [c for c in names if c not in CANDIDATES]
    if unknown:
        ap.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    torch.set_num_threads(1)
    t = time.perf_counter()
    df = study(names, n=args.n, seed_images=EVAL_SEED if args.held_out else VAL_SEED, draws=args.draws)
    if args.csv:
        df.to_csv(args.csv, index=False)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_rows", 200)
    which = f"{'held-out EVAL_SEED' if args.held_out else 'development VAL_SEED'} images 0..{args.n - 1}"
    for metric in ("recall_point", "purity"):
        print(f"\n{metric} per layer ({which}; random: {args.draws} shuffles of each candidate's groups)")
        table = df.pivot(index="method", columns="layer", values=metric)
        table = table[sorted(table.columns, key=lambda c: df[df.layer == c].layer_index.iloc[0])]
        print(table.loc[[m for nm in names for m in (nm, nm + "/random")]].to_string(float_format=lambda v: f"{v:.2f}"))
    print()
    print(pd.DataFrame([verdict(df, nm) for nm in names]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
