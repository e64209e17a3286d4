"""Exact t-SNE for the few hundred points of each layer, vectorised in torch, layers batched.

scikit-learn's Barnes-Hut t-SNE spends most of its time in per-iteration overhead at this size; the exact
gradient on n <= ~1000 points is both faster here and closer to t-SNE's definition. The optimiser follows
scikit-learn's (PCA initialisation scaled to std 1e-4, early exaggeration 12 for 250 iterations with
momentum 0.5, then momentum 0.8, learning rate max(n / 48, 50), delta-bar-delta gains with minimum 0.01,
and the same stopping rules), so the embeddings are comparable; the "paper-sklearn" recipe keeps
scikit-learn's own TSNE for reference.

Each iteration costs a fixed number of ops whatever the number of points, so the layers of one
explanation run together, padded to common sizes (``tsne_exact_many``): fewer, larger ops. At these sizes
the loop is bound by memory traffic over the n x n matrices, so the gain is modest (about 10 % on VGG-16's
13 layers); the formulation below keeps the traffic to a few passes per iteration.
"""

from __future__ import annotations

import numpy as np
import torch

from .numeric import pca_scores  # noqa: F401 - also importable from here, as before
from .runtime import limited_threads

__all__ = ["capped_perplexity", "pca_scores", "tsne_exact", "tsne_exact_many"]


def capped_perplexity(perplexity: float, n: int) -> float:
    """``perplexity``, or (n - 1) / 3 for few points (t-SNE needs a perplexity well below n), at least 1."""
    return float(min(perplexity, max(1.0, (n - 1) / 3.0)))


def _joint_p(d2: torch.Tensor, perplexity: float, tol: float = 1e-5, steps: int = 100) -> torch.Tensor:
    """Symmetric joint probabilities with a per-point bandwidth found by bisection on all rows at once."""
    n = d2.shape[0]
    target = float(np.log(perplexity))
    beta = torch.ones(n, 1, dtype=d2.dtype)
    lo = torch.full((n, 1), -np.inf, dtype=d2.dtype)
    hi = torch.full((n, 1), np.inf, dtype=d2.dtype)
    off = ~torch.eye(n, dtype=torch.bool)
    for _ in range(steps):
        p = torch.exp(-d2 * beta) * off
        sp = p.sum(1, keepdim=True).clamp_min(1e-300)
        h = torch.log(sp) + beta * (d2 * p).sum(1, keepdim=True) / sp
        diff = h - target
        if float(diff.abs().max()) < tol:
            break
        up = diff > 0  # entropy too high: increase beta
        lo = torch.where(up, beta, lo)
        hi = torch.where(up, hi, beta)
        beta = torch.where(
            up,
            torch.where(torch.isinf(hi), beta * 2, (beta + hi) / 2),
            torch.where(torch.isinf(lo), beta / 2, (beta + lo) / 2),
        )
    p = p / sp
    p = p + p.T
    return (p / p.sum()).clamp_min(1e-12)


BUCKET = 32  # point sets are zero-padded to a multiple of this many points
BATCH_ELEMENTS = 1 << 22  # at most this many n x n entries per batch (16 MB per float32 buffer)


def tsne_exact(x, perplexity: float = 30.0, **kwargs) -> np.ndarray:
    """2-D t-SNE embedding of rows ``x`` (n, d); deterministic (PCA initialisation, no random draws)."""
    return tsne_exact_many([x], [perplexity], **kwargs)[0]


def tsne_exact_many(xs, perplexities=None, on_done=None, **kwargs) -> list[np.ndarray]:
    """2-D t-SNE embeddings of several point sets (one per layer), computed side by side.

    Each set is zero-padded to a multiple of ``BUCKET`` points, and sets of the same padded size run as
    one batch: the twenty-odd ops of an iteration are paid once per batch instead of once per layer. A set's
    embedding depends on the set alone, not on the others in its batch
    (tested bit for bit): a layer built on its own equals the same layer built with all the others.
    ``on_done(i, y)`` is called as the embedding ``y`` of set ``i`` is ready.
    """
    xs = [torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double().cpu() for x in xs]
    if perplexities is None:
        perplexities = [30.0] * len(xs)
    out: list[np.ndarray | None] = [None] * len(xs)
    groups: dict[int, list[int]] = {}
    with limited_threads(1), torch.inference_mode():
        prepared = {}
        for i, x in enumerate(xs):
            n = x.shape[0]
            if n < 2:
                out[i] = np.zeros((n, 2))
                if on_done:
                    on_done(i, out[i])
                continue
            prepared[i] = _prepare(x, perplexities[i])
            groups.setdefault(BUCKET * -(-n // BUCKET), []).append(i)
        for m, members in sorted(groups.items()):
            per_batch = max(1, BATCH_ELEMENTS // (m * m))
            for s in range(0, len(members), per_batch):
                chunk = members[s : s + per_batch]
                for i, y in zip(chunk, _optimise([prepared[i] for i in chunk], m, **kwargs)):
                    out[i] = y
                    if on_done:
                        on_done(i, y)
    return out


def _prepare(x: torch.Tensor, perplexity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint probabilities P (n, n), float32 with a zero diagonal, and the initial points (n, 2): the
    first two principal components scaled to standard deviation 1e-4, as scikit-learn's init="pca"."""
    n = x.shape[0]
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    p = _joint_p(d2, capped_perplexity(perplexity, n)).float()
    p.fill_diagonal_(0.0)
    y = pca_scores(x, 2).float()
    if y.shape[1] < 2:
        y = torch.cat([y, torch.zeros(n, 2 - y.shape[1])], 1)
    std = y[:, 0].std()
    return p, y / (std if std > 0 else 1.0) * 1e-4


def _optimise(
    sets,
    m: int,
    max_iter: int = 1000,
    early_exaggeration: float = 12.0,
    n_iter_without_progress: int = 300,
    min_grad_norm: float = 1e-7,
) -> list[np.ndarray]:
    """Gradient descent for L point sets padded to m points, as one batch (see the module's docstring).

    Points are kept as columns of ``a = [y0; y1; 1; s]`` (L, 4, m), with s = |y|^2, and
    ``b = [-2 y0; -2 y1; s + 1; 1]``: then a^T b = 1 + |y_i - y_j|^2 in one batched product, and for any
    symmetric M, a[:3] @ M = [(M y)^T; rowsum(M)] in another. Padded points stay at 0 with zero
    probabilities and zero affinities, so they neither move nor pull.
    """
    L = len(sets)
    ns = [p.shape[0] for p, _ in sets]
    P = torch.zeros(L, m, m)
    mask = torch.zeros(L, m, m)  # 1 between two real, distinct points
    a = torch.ones(L, 4, m)
    b = torch.ones(L, 4, m)
    a[:, :2] = 0.0
    for si, ((p, y), n) in enumerate(zip(sets, ns)):
        P[si, :n, :n] = p
        mask[si, :n, :n] = 1.0
        a[si, :2, :n] = y.T
    mask.diagonal(dim1=1, dim2=2).zero_()
    plogp = torch.xlogy(P, P).sum((1, 2))  # for the KL divergence checks
    yt, s = a[:, :2], a[:, 3]
    b_y, b_s = b[:, :2], b[:, 2]
    a_t, a_3 = a.transpose(1, 2), a[:, :3]
    # learning rate max(n / early_exaggeration / 4, 50), as scikit-learn's "auto"; the gradient's
    # factor 4 is folded into the step
    step = torch.tensor([4.0 * max(n / early_exaggeration / 4.0, 50.0) for n in ns]).view(L, 1, 1)
    update = torch.zeros(L, 2, m)
    gains = torch.ones(L, 2, m)
    best_err = np.full(L, np.inf)
    best_iter = np.zeros(L, dtype=np.int64)
    frozen: list[torch.Tensor | None] = [None] * L
    for it in range(max_iter):  # the hot loop: a fixed, small number of batched ops per iteration
        explore = it < 250
        momentum = 0.5 if explore else 0.8
        torch.sum(yt * yt, 1, out=s)
        torch.mul(yt, -2.0, out=b_y)
        torch.add(s, 1.0, out=b_s)
        num = torch.bmm(a_t, b)  # 1 + |y_i - y_j|^2, >= 1 up to rounding
        # float32 cancellation (the |y|^2 terms of points far from the origin) can take it far below 1, to 0 or
        # below: the affinities blow up and the embedding goes to NaN (the paper recipe on a VGG-16 layer).
        # Raised to 0.5 where so: a value that low is rounding, not distance; rounding of the usual size
        # (1 - 1e-7) is left as it was, so an embedding whose values never fell that low is the same to the bit.
        num.clamp_min_(0.5)
        torch.div(mask, num, out=num)  # the Student-t affinities, zero on the diagonal and the padding
        z = num.sum((1, 2), keepdim=True)
        check = not explore and (it + 1) % 50 == 0  # scikit-learn's stopping rules, checked as often
        if check:
            kl = (plogp - torch.xlogy(P, (num / z).clamp_min_(1e-12)).sum((1, 2))).numpy()
        # gradient / 4 = rowsum((P - Q) num) y - ((P - Q) num) y, with Q = num / z
        r = torch.bmm(a_3, torch.mul(P, num))
        if explore:
            r.mul_(early_exaggeration)
        r.sub_(torch.bmm(a_3, num.square_()).div_(z))
        g = torch.sub(r[:, 2:3] * yt, r[:, :2])
        gains = torch.where(update * g < 0, gains + 0.2, gains * 0.8).clamp_min_(0.01)
        update.mul_(momentum).addcmul_(gains, g * step, value=-1.0)
        yt.add_(update)
        if check:
            grad_norm = 4.0 * torch.linalg.vector_norm(g, dim=(1, 2)).numpy()
            for si in range(L):
                if frozen[si] is not None:
                    continue
                stalled = False
                if kl[si] < best_err[si]:
                    best_err[si], best_iter[si] = kl[si], it
                else:
                    stalled = it - best_iter[si] > n_iter_without_progress
                if stalled or grad_norm[si] < min_grad_norm:
                    frozen[si] = yt[si, :, : ns[si]].clone()
            if all(f is not None for f in frozen):
                break
    return [(frozen[si] if frozen[si] is not None else yt[si, :, : ns[si]]).T.double().numpy() for si in range(L)]
