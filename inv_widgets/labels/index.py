"""The top labels of cluster maps, served from one cached aggregation of a label store.

    index = LabelIndex(store)                 # or store.index(), which shares the store's cache
    index.top([key_a, key_b])                 # [[("wheel", 2.7), ("tyre", 0.9)], []]
    inv.Explorer(session, labels=index)       # an index is the Explorer's labels provider

:func:`~inv_widgets.labels.aggregate.aggregate_labels` runs once per change of the labels: the cache is
keyed by the store's change stamp (any connection's write changes it) and the aggregation options. While
none of the asked maps has a label, nothing is aggregated, so Sentence-BERT is not even loaded.

The index needs only what :class:`~inv_widgets.labels.protocols.LabelSource` names (``labels()``,
``label_counts(keys)``, ``change_stamp()``); it does not import the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .aggregate import aggregate_labels, top_labels
from .protocols import LabelSource
from .rules import as_key

__all__ = ["LabelIndex", "AggregateCache", "top_labels_of"]


class AggregateCache:
    """One aggregation table, kept until the source's labels or the options change."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: tuple[Any, str, pd.DataFrame] | None = None

    def get(self, source: LabelSource, **options: Any) -> pd.DataFrame:
        """``aggregate_labels(source, **options)`` (a copy), from the cache when nothing changed."""
        options.setdefault("progress", False)
        stamp = source.change_stamp()
        wanted = repr(sorted(options.items(), key=lambda kv: kv[0]))
        with self._lock:
            held = self._held
        if held is not None and held[0] == stamp and held[1] == wanted:
            return held[2].copy()
        table = aggregate_labels(source, **options)
        with self._lock:
            self._held = (stamp, wanted, table)
        return table.copy()

    def clear(self) -> None:
        with self._lock:
            self._held = None


def top_labels_of(
    source: LabelSource, keys: Iterable[Any], n: int, cache: AggregateCache, **options: Any
) -> list[list[tuple[str, float]]]:
    """The ``n`` best ``(label, score)`` of each map in ``keys`` ([] for a map without labels)."""
    keys = [as_key(k) for k in keys]
    if not any(source.label_counts(keys).values()):  # nothing to aggregate: don't load Sentence-BERT
        return [[] for _ in keys]
    table = cache.get(source, **options)
    return [top_labels(table, k, n) for k in keys]


class LabelIndex:
    """Top labels of cluster maps from a label store (see the module docstring).

    Parameters
    ----------
    source : LabelStore or any :class:`~inv_widgets.labels.protocols.LabelSource`
    n : int, default 3
        Labels per map when called as a provider (``index(keys)``).
    cache : AggregateCache, optional
        Share a cache (``store.index()`` shares the store's, so ``store.aggregate()`` is reused).
    **options
        Options of :func:`~inv_widgets.labels.aggregate.aggregate_labels` (class_names, model, merge, ...).
    """

    def __init__(self, source: LabelSource, n: int = 3, *, cache: AggregateCache | None = None, **options: Any):
        if not isinstance(source, LabelSource):
            raise TypeError(
                f"a LabelIndex reads a label store (labels(), label_counts(keys), change_stamp()); "
                f"got {type(source).__name__}. Pass inv.LabelStore(path)."
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (labels per map), got {n!r}")
        self.source = source
        self.n = n
        self.options = dict(options)
        self._cache = cache if cache is not None else AggregateCache()

    def table(self, **options: Any) -> pd.DataFrame:
        """The aggregation table (cached until the labels change)."""
        return self._cache.get(self.source, **{**self.options, **options})

    def top(self, keys: Iterable[Any], n: int | None = None, **options: Any) -> list[list[tuple[str, float]]]:
        """The ``n`` best ``(label, score)`` of each map in ``keys``, best first."""
        return top_labels_of(
            self.source, keys, self.n if n is None else int(n), self._cache, **{**self.options, **options}
        )

    def __call__(self, keys: Sequence[Any]) -> list[list[tuple[str, float]]]:
        """The Explorer's labels provider: ``index(keys) -> [[(label, score), ...] per key]``."""
        return [list(x) for x in self.top(list(keys))]

    def refresh(self) -> None:
        """Forget the cached table (it is rebuilt on the next question)."""
        self._cache.clear()

    def __repr__(self) -> str:
        return f"LabelIndex({self.source!r}, n={self.n})"
