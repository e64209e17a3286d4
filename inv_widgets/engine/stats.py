"""Confidence intervals: a seeded percentile bootstrap over the unit of replication (images, unless said
otherwise), 95 %. :func:`ci` takes per-unit values (their mean), :func:`paired` the per-unit difference of two
methods measured on the same units, :func:`cluster_ci` any statistic of units that each carry several rows (a
Spearman correlation pooled over the (image, map) pairs, resampled by image), :func:`ratio_ci` a ratio of means.
Used by the sanity check a Session runs and by every evaluation (``inv_widgets.eval``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Figure", "ci", "paired", "cluster_ci", "ratio_ci", "N_BOOT", "CONFIDENCE"]

N_BOOT = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Figure:
    """A figure with its 95 % confidence interval and the number of units it rests on."""

    value: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        if not np.isfinite(self.value):
            return "–"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def fmt(self, digits: int = 2) -> str:
        if not np.isfinite(self.value):
            return "–"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)

    def as_dict(self, prefix: str) -> dict:
        return {prefix: self.value, f"{prefix}_lo": self.lo, f"{prefix}_hi": self.hi}


def _nan(n: int = 0) -> Figure:
    return Figure(float("nan"), float("nan"), float("nan"), n)


def _interval(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if not len(boot):
        return float("nan"), float("nan")
    a = (1.0 - CONFIDENCE) / 2
    lo, hi = np.quantile(boot, [a, 1.0 - a])
    return float(lo), float(hi)


def ci(values: Sequence[float], *, seed: int = 0, n_boot: int = N_BOOT) -> Figure:
    """The mean of per-unit ``values`` (NaN units left out) with a percentile bootstrap 95 % CI."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if not len(v):
        return _nan()
    if len(v) == 1:
        return Figure(float(v[0]), float("nan"), float("nan"), 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), (n_boot, len(v)))
    return Figure(float(v.mean()), *_interval(v[idx].mean(1)), len(v))


def paired(a: Sequence[float], b: Sequence[float], *, seed: int = 0, n_boot: int = N_BOOT) -> Figure:
    """The mean per-unit difference ``a - b`` (units where both are finite) with its bootstrap 95 % CI."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired figures need one value per unit on both sides, got {a.shape} and {b.shape}")
    return ci(a - b, seed=seed, n_boot=n_boot)


def cluster_ci(units: Sequence, statistic: Callable[[list], float], *, seed: int = 0, n_boot: int = 1000) -> Figure:
    """``statistic(units)`` with a 95 % CI from resampling whole units (e.g. images, each with its rows)."""
    units = list(units)
    if not units:
        return _nan()
    value = float(statistic(units))
    if len(units) == 1:
        return Figure(value, float("nan"), float("nan"), 1)
    rng = np.random.default_rng(seed)
    boot = np.array(
        [statistic([units[i] for i in rng.integers(0, len(units), len(units))]) for _ in range(n_boot)], np.float64
    )
    return Figure(value, *_interval(boot), len(units))


def ratio_ci(num: Sequence[float], den: Sequence[float], *, seed: int = 0, n_boot: int = N_BOOT) -> Figure:
    """mean(num) / mean(den) over paired units, with a bootstrap 95 % CI (resampling units); no interval (NaN
    bounds) when the denominator's own 95 % interval reaches 0."""
    num, den = np.asarray(num, np.float64).ravel(), np.asarray(den, np.float64).ravel()
    ok = np.isfinite(num) & np.isfinite(den)
    num, den = num[ok], den[ok]
    if not len(num) or den.mean() == 0:
        return _nan(len(num))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (n_boot, len(num)))
    d = den[idx].mean(1)
    value = float(num.mean() / den.mean())
    if np.mean(np.sign(d) != np.sign(den.mean())) > (1.0 - CONFIDENCE) / 2:
        # the denominator's own interval reaches 0: the ratio has no bounded interval
        return Figure(value, float("nan"), float("nan"), len(num))
    boot = num[idx].mean(1) / d
    return Figure(value, *_interval(boot), len(num))
