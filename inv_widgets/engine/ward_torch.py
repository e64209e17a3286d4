"""Ward linkage in torch, batched: many small problems (images x layers) in one loop, on any device.

The ``fast`` recipe clusters each layer's kept maps, min-max scaled, by Ward linkage on Euclidean
distances. scipy does one problem at a time on the CPU; here a batch of problems (every layer of every
image of a batch, padded to the largest) runs at once, so that on a GPU the kept maps never leave the
device: only the (n - 1, 4) linkage matrices come back.

The algorithm is the textbook one: merge the closest pair, then update the merged cluster's distances
with the Lance-Williams formula for Ward on *squared* Euclidean distances,

    d2(k, i+j) = ((n_i + n_k) d2(k, i) + (n_j + n_k) d2(k, j) - n_k d2(i, j)) / (n_i + n_j + n_k),

and the merge height is sqrt(d2(i, j)), the value scipy's ``linkage(method="ward")`` reports. Ward is
reducible, so merging the global closest pair gives the same dendrogram as scipy's nearest-neighbour
chain whenever no two candidate merges tie. Ties are broken deterministically: the pair with the lowest
(row, column) slot position goes first (``argmin`` returns the first minimum); a merged cluster keeps the
lower slot. The result uses scipy's conventions (new cluster ``n + step``, smaller id first, rows
sorted by height), so scipy's ``fcluster`` and our ``assign`` cut it as they cut scipy's.

Pure torch; no files, no printing.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["pairwise_sq_euclidean", "ward_linkage_batched", "ward_linkage_groups", "ward_linkage"]


def pairwise_sq_euclidean(x: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances of each problem's rows, (P, N, D) -> (P, N, N), by one batched product.

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` (clamped at 0) in ``x``'s dtype, like
    :func:`inv_widgets.engine.numeric.condensed_euclidean` does for one problem. Rows at or beyond
    ``counts[p]`` (padding) get infinite distances, the diagonal too.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (problems, points, features), got shape {tuple(x.shape)}")
    p, n, _ = x.shape
    sq = (x * x).sum(-1)
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * torch.bmm(x, x.transpose(1, 2))).clamp_min_(0.0)
    inf = torch.tensor(float("inf"), dtype=d2.dtype, device=d2.device)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    bad = eye[None].expand(p, n, n)
    if counts is not None:
        pad = torch.arange(n, device=x.device)[None, :] >= counts.to(x.device)[:, None]  # (P, N)
        bad = bad | pad[:, :, None] | pad[:, None, :]
    return torch.where(bad, inf, d2)


def ward_linkage_batched(d2: torch.Tensor, counts, dtype: torch.dtype | None = None) -> list[np.ndarray]:
    """Ward linkage of P problems at once from squared distances ``d2`` (P, N, N).

    ``counts`` (P,) says how many points each problem has (the first ``counts[p]`` rows; the rest is
    padding, ignored). The diagonal and the padding should be ``inf`` (:func:`pairwise_sq_euclidean` sets
    them); they are set here as well. ``dtype``: the arithmetic of the loop (default: ``d2``'s; float64
    reproduces scipy to about 1e-12, float32 is the fast choice on a GPU).

    Returns one scipy linkage matrix (counts[p] - 1, 4), float64, per problem.
    """
    if d2.dim() != 3 or d2.shape[1] != d2.shape[2]:
        raise ValueError(f"d2 must be (problems, N, N), got shape {tuple(d2.shape)}")
    n_prob, n_max, _ = d2.shape
    counts_np = np.asarray(torch.as_tensor(counts).cpu(), dtype=np.int64).reshape(-1)
    if counts_np.shape[0] != n_prob:
        raise ValueError(f"got {counts_np.shape[0]} counts for {n_prob} problems")
    if (counts_np < 0).any() or (counts_np > n_max).any():
        raise ValueError(f"counts must be in 0..{n_max}, got {counts_np.tolist()}")
    out = [np.zeros((max(int(c) - 1, 0), 4)) for c in counts_np]
    if n_prob == 0 or n_max < 2 or counts_np.max() < 2:
        return out
    device = d2.device
    dtype = dtype or d2.dtype
    # the largest problems first: after step s only the problems with more than s + 1 points still merge,
    # and they are a prefix, so every step works on a view D[:m] without any host synchronisation
    order = np.argsort(-counts_np, kind="stable")
    sorted_counts = counts_np[order]
    n_max = int(sorted_counts[0])
    perm = torch.as_tensor(order, device=device)
    D = d2.index_select(0, perm)[:, :n_max, :n_max].to(dtype).contiguous()
    cnt = torch.as_tensor(sorted_counts, device=device)
    slots = torch.arange(n_max, device=device)
    pad = slots[None, :] >= cnt[:, None]
    inf = torch.tensor(float("inf"), dtype=dtype, device=device)
    D.masked_fill_(pad[:, :, None] | pad[:, None, :] | torch.eye(n_max, dtype=torch.bool, device=device)[None], inf)
    size = (~pad).to(dtype)  # points in each slot's cluster; 0 for padding and merged-away slots
    # per step: the two slots merged and the merge's squared height and size; ids are assigned on the host
    rec = torch.zeros(len(order), n_max - 1, 4, dtype=dtype, device=device)
    rows = torch.arange(len(order), device=device)
    # active[s]: how many problems still merge at step s (counts - 1 > s), a prefix of the sorted list
    active = [int(np.searchsorted(-sorted_counts, -(s + 2), side="right")) for s in range(n_max - 1)]
    for s in range(n_max - 1):
        m = active[s]
        Dm = D[:m]
        ar = rows[:m]
        flat = Dm.reshape(m, n_max * n_max).argmin(1)  # first minimum: lowest (row, column) on ties
        i = torch.div(flat, n_max, rounding_mode="floor")
        j = flat - i * n_max  # i < j: the matrix is symmetric and the first minimum is above the diagonal
        dij = Dm.reshape(m, -1).gather(1, flat[:, None])  # (m, 1)
        si = size[ar, i][:, None]
        sj = size[ar, j][:, None]
        sk = size[:m]
        sij = si + sj
        di, dj = Dm[ar, i], Dm[ar, j]
        # infinite for dead or padded k and for k = i, j (their diagonal entries are inf): no extra masking
        new = ((si + sk) * di + (sj + sk) * dj - sk * dij) / (sij + sk)
        Dm[ar, i] = new
        Dm[ar, :, i] = new
        Dm[ar, j] = inf
        Dm[ar, :, j] = inf
        rec[:m, s] = torch.cat([i[:, None].to(dtype), j[:, None].to(dtype), dij, sij], 1)
        size[ar, i] = sij[:, 0]
        size[ar, j] = 0
    rec_np = rec.to(torch.float64).cpu().numpy()
    links = _linkage_from_slots(rec_np, sorted_counts)
    for r, p in enumerate(order):
        if counts_np[p] >= 2:
            out[p] = links[r]
    return out


def _linkage_from_slots(rec: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """scipy linkage matrices from the merged slot pairs (P, steps, [i, j, d2, size]), all problems at once.

    A merged cluster keeps the lower slot; at step s it gets scipy's id ``n + s``, so the ids of the two
    clusters merged at step s are what their slots held just before.
    """
    p, steps, _ = rec.shape
    slot_i = rec[:, :, 0].astype(np.int64)
    slot_j = rec[:, :, 1].astype(np.int64)
    ids = np.tile(np.arange(max(steps + 1, 1), dtype=np.int64), (p, 1))
    left = np.empty((p, steps), np.int64)
    right = np.empty((p, steps), np.int64)
    rows = np.arange(p)
    for s in range(steps):
        a, b = ids[rows, slot_i[:, s]], ids[rows, slot_j[:, s]]
        left[:, s], right[:, s] = np.minimum(a, b), np.maximum(a, b)
        ids[rows, slot_i[:, s]] = counts + s
    out = []
    for r in range(p):
        c = int(counts[r])
        if c < 2:
            out.append(np.zeros((0, 4)))
            continue
        z = np.empty((c - 1, 4))
        z[:, 0], z[:, 1] = left[r, : c - 1], right[r, : c - 1]
        z[:, 2] = np.sqrt(np.maximum(rec[r, : c - 1, 2], 0.0))
        z[:, 3] = rec[r, : c - 1, 3]
        out.append(_sorted(z, c))
    return out


def ward_linkage_groups(
    d2s: list[torch.Tensor], counts: list, dtype: torch.dtype | None = None
) -> list[list[np.ndarray]]:
    """Ward linkage of several groups of problems (e.g. the images of a batch, one group per layer),
    ``d2s[g]`` (P_g, N_g, N_g) with ``counts[g]`` (P_g,), as :func:`ward_linkage_batched` of each.

    The problems of all groups are pooled and run in a few buckets of similar size (their point counts
    rounded up to a power of two), so that small layers are not padded to the largest one and the loop
    runs about twice the largest count in steps however many groups there are.
    """
    if len(d2s) != len(counts):
        raise ValueError(f"got {len(d2s)} distance tensors and {len(counts)} count lists")
    cnts = [np.asarray(torch.as_tensor(c).cpu(), dtype=np.int64).reshape(-1) for c in counts]
    out = [[np.zeros((max(int(c) - 1, 0), 4)) for c in cg] for cg in cnts]
    buckets: dict[int, list[tuple[int, int]]] = {}
    for g, cg in enumerate(cnts):
        if d2s[g].shape[0] != len(cg):
            raise ValueError(f"group {g}: {d2s[g].shape[0]} problems but {len(cg)} counts")
        for p, c in enumerate(cg):
            if c >= 2:
                buckets.setdefault(int(c - 1).bit_length(), []).append((g, p))
    for members in buckets.values():
        n = max(int(cnts[g][p]) for g, p in members)
        device = d2s[members[0][0]].device
        D = torch.full((len(members), n, n), float("inf"), dtype=dtype or d2s[members[0][0]].dtype, device=device)
        by_group: dict[int, list[tuple[int, int]]] = {}
        for r, (g, p) in enumerate(members):
            by_group.setdefault(g, []).append((r, p))
        for g, rp in by_group.items():
            m = min(n, d2s[g].shape[1])
            rows = torch.as_tensor([r for r, _ in rp], device=device)
            probs = torch.as_tensor([p for _, p in rp], device=d2s[g].device)
            D[rows, :m, :m] = d2s[g].index_select(0, probs)[:, :m, :m].to(D.dtype).to(device)
        links = ward_linkage_batched(D, [cnts[g][p] for g, p in members], dtype=dtype)
        for (g, p), z in zip(members, links):
            out[g][p] = z
    return out


def ward_linkage(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Ward linkage of the rows of one (n, d) tensor (Euclidean), the same matrix as scipy's
    ``linkage(x, method="ward")`` up to rounding (see the module's notes on ties)."""
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"x must be (points, features), got shape {tuple(x.shape)}")
    d2 = pairwise_sq_euclidean(x[None].to(dtype))
    return ward_linkage_batched(d2, [x.shape[0]], dtype=dtype)[0]


def _sorted(z: np.ndarray, n: int) -> np.ndarray:
    """Heights made non-decreasing, as scipy's rows are. The merges come in the order they were made
    (children before parents), and Ward's heights do not decrease in exact arithmetic: a rounding-level
    dip (an ulp or so) is lifted to the height before it, which keeps the tree and every cut valid."""
    h = z[:, 2]
    if n > 2 and (np.diff(h) < 0).any():
        z[:, 2] = np.maximum.accumulate(h)
    return z
