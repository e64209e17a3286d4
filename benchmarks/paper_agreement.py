"""Does a faster ``paper`` recipe find the same clusters? Agreement of its suggested cuts with the recipe as it was.

    python benchmarks/paper_agreement.py [--images 30] [--offset 0] [--iters 1000,750,500]

For each demo image (the trained demo CNN, its predicted class) and each of its 8 layers, the paper recipe's
dendrogram is built under several settings from the same kept feature maps, and each suggested cut (k by
silhouette in 3..8, light clusters pruned) is compared with the reference, the recipe as it was before issue 24
(the PCA's eigensolver on the machine's threads, 1,000 t-SNE iterations): the share of layers with the same
suggested k, the share of layers whose clusters are exactly the same (adjusted Rand index 1 over the kept
channels, the pruned ones as a cluster of their own), and the mean and lowest adjusted Rand index. The time of
building all trees per setting is printed too (one process, settings interleaved image by image).

Choose on a dev set of images (``--offset 0``), report on another (``--offset 100``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inv_widgets as inv  # noqa: E402
from inv_widgets.engine import numeric  # noqa: E402
from inv_widgets.engine.recipes import build_trees, paper  # noqa: E402
from inv_widgets.engine.tree import assign, prune_mask  # noqa: E402


def threaded_pca50(x):
    """The PCA step as it was: the eigensolver on the machine's threads."""
    n, d = x.shape
    return numeric.pca_scores(x, min(50, n, d)) if min(50, n) < d else x.double()


def suggested(tree, weights) -> np.ndarray:
    """Cluster of each kept channel at the suggested cut, -1 for the pruned ones."""
    labels = assign(tree, k=None, threshold=None)
    w = np.bincount(labels, weights=weights, minlength=int(labels.max()) + 1)
    keep = prune_mask(w)
    return np.where(keep[labels], labels, -1)


def main(argv=None) -> int:
    from sklearn.metrics import adjusted_rand_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--iters", default="1000,750,500", help="t-SNE iterations to try with the one-thread PCA")
    args = ap.parse_args(argv)
    model, data = inv.demo.load(n=args.offset + args.images)
    session = inv.Session(model, data, cache_size=2)
    settings = [("before: threaded PCA, 1000 iterations", threaded_pca50, 1000)]
    settings += [(f"one-thread PCA, {it} iterations", paper.pca50, int(it)) for it in args.iters.split(",")]
    got = {name: [] for name, _, _ in settings}
    secs = {name: [] for name, _, _ in settings}
    original_pca, original_iter = paper.pca50, paper.Paper.MAX_ITER
    try:
        for i in range(args.offset, args.offset + args.images):
            exp = session.explain(i, lazy=True)
            lrs = [exp.layer(n, "fast") for n in exp.layers]
            maps = [lr._data.maps for lr in lrs]
            weights = [lr.channel_weights[lr.kept] for lr in lrs]
            for name, pca, iters in settings:
                paper.pca50, paper.Paper.MAX_ITER = pca, iters
                t = time.perf_counter()
                trees = build_trees(maps, "paper")
                secs[name].append(time.perf_counter() - t)
                got[name].append([suggested(tr, w) for tr, w in zip(trees, weights)])
    finally:
        paper.pca50, paper.Paper.MAX_ITER = original_pca, original_iter
    ref = settings[0][0]
    print(f"demo images {args.offset}..{args.offset + args.images - 1}, {len(got[ref][0])} layers each; "
          f"against '{ref}':")
    for name, _, _ in settings:
        same_k = exact = 0
        aris = []
        for cuts, ref_cuts in zip(got[name], got[ref]):
            for a, b in zip(cuts, ref_cuts):
                same_k += len(set(a[a >= 0])) == len(set(b[b >= 0]))
                ari = adjusted_rand_score(b, a)
                exact += ari == 1.0
                aris.append(ari)
        n = len(aris)
        print(f"  {name:40s} same k {same_k / n:.3f}, same clusters {exact / n:.3f}, ARI mean {np.mean(aris):.3f} "
              f"(lowest {np.min(aris):.3f}); trees of all layers: median {statistics.median(secs[name]):.2f} s "
              f"per image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
