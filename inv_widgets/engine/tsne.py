"""Exact t-SNE for the few hundred points of one layer, vectorised in torch.

scikit-learn's Barnes-Hut t-SNE spends most of its time in per-iteration overhead at this size; the exact
gradient on n <= ~1000 points is both faster here and closer to t-SNE's definition. The optimiser follows
scikit-learn's (PCA initialisation scaled to std 1e-4, early exaggeration 12 for 250 iterations with
momentum 0.5, then momentum 0.8, learning rate max(n / 48, 50), delta-bar-delta gains with minimum 0.01,
and the same stopping rules), so the embeddings are comparable; the "paper-sklearn" recipe keeps
scikit-learn's own TSNE for reference.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["pca_scores", "tsne_exact"]


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 1


@contextmanager
def _single_thread():
    """The t-SNE loop runs thousands of small (n x n) ops: extra intra-op threads only add synchronisation,
    and on a busy machine they make it several times slower. Run it on one thread, then restore (counted,
    so that several layers embedded in parallel threads restore the setting only once, at the end)."""
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def pca_scores(x: torch.Tensor, n_components: int) -> torch.Tensor:
    """Principal-component scores of rows ``x`` (n, d), deterministic signs (largest |loading| positive)."""
    x = x.double()
    xc = x - x.mean(0, keepdim=True)
    n, d = xc.shape
    k = min(n_components, n, d)
    if n <= d:  # n x n Gram matrix is the cheap side
        evals, evecs = torch.linalg.eigh(xc @ xc.T)
        order = torch.argsort(evals, descending=True)[:k]
        u = evecs[:, order]
        s = evals[order].clamp_min(0).sqrt()
    else:
        u, s, _ = torch.linalg.svd(xc, full_matrices=False)
        u, s = u[:, :k], s[:k]
    idx = u.abs().argmax(0)
    signs = torch.sign(u[idx, torch.arange(u.shape[1])])
    signs[signs == 0] = 1
    return (u * signs) * s


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
        beta = torch.where(up, torch.where(torch.isinf(hi), beta * 2, (beta + hi) / 2),
                           torch.where(torch.isinf(lo), beta / 2, (beta + lo) / 2))
    p = p / sp
    p = p + p.T
    return (p / p.sum()).clamp_min(1e-12)


def tsne_exact(x, **kwargs) -> np.ndarray:
    """2-D t-SNE embedding of rows ``x`` (n, d); deterministic (PCA initialisation, no random draws)."""
    with _single_thread():
        return _tsne_exact(x, **kwargs)


def _tsne_exact(x: np.ndarray | torch.Tensor, perplexity: float = 30.0, max_iter: int = 1000,
               early_exaggeration: float = 12.0, n_iter_without_progress: int = 300,
               min_grad_norm: float = 1e-7) -> np.ndarray:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    n = x.shape[0]
    if n < 2:
        return np.zeros((n, 2))
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min(0)
    p = _joint_p(d2, min(perplexity, max(1.0, (n - 1) / 3.0))).float()
    y = pca_scores(x, 2).float()
    if y.shape[1] < 2:
        y = torch.cat([y, torch.zeros(n, 2 - y.shape[1])], 1)
    std = y[:, 0].std()
    y = y / (std if std > 0 else 1.0) * 1e-4
    lr = max(n / early_exaggeration / 4.0, 50.0)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    best_err, best_iter = np.inf, 0
    logp = torch.log(p)
    p_exag = p * early_exaggeration
    step = 4.0 * lr  # the gradient is 4 (rowsum(PQ) y - PQ y); the 4 is folded into the step
    for it in range(max_iter):  # the hot loop: few ops per iteration, in place where it helps
        explore = it < 250
        pc = p_exag if explore else p
        momentum = 0.5 if explore else 0.8
        s = (y * y).sum(1)
        # num_ij = 1 / (1 + |y_i - y_j|^2), zero on the diagonal
        # (1 + |y_i - y_j|^2 is >= 1 up to rounding: no clamp needed)
        num = torch.addmm(s[:, None] + (s[None, :] + 1.0), y, y.T, alpha=-2.0).reciprocal_().fill_diagonal_(0.0)
        z = float(num.sum())
        pq = torch.sub(pc, num, alpha=1.0 / z).mul_(num)  # (p_ij - q_ij) num_ij
        g = torch.addmm(pq.sum(1, keepdim=True) * y, pq, y, alpha=-1.0)  # gradient / 4
        gains = torch.where(update * g < 0, gains + 0.2, gains * 0.8).clamp_min_(0.01)
        update.mul_(momentum).addcmul_(gains, g, value=-step)
        y.add_(update)
        if not explore and (it + 1) % 50 == 0:  # scikit-learn's stopping rules, checked as often
            q = (num / z).clamp_min_(1e-12)
            err = float((p * (logp - torch.log(q))).sum())
            if err < best_err:
                best_err, best_iter = err, it
            elif it - best_iter > n_iter_without_progress:
                break
            if 4.0 * float(g.norm()) < min_grad_norm:
                break
    return y.double().numpy()
