"""Where the Explorer's labels come from: a provider, ``keys -> [[(label, score), ...] per key]``.

``store_labels(store)`` makes one over a label store; any callable works (``Explorer(labels=...)``). A
provider that fails never breaks the Explorer: the maps show without labels and the error is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LabelsProvider", "store_labels", "top_labels"]

log = logging.getLogger("inv_widgets.explorer")

#: ``labels(keys) -> [[(label, score), ...] per key]``: top labels of cluster maps, best first.
LabelsProvider = Callable[[Sequence[Any]], Sequence[Sequence[tuple[str, float]]]]


def store_labels(store, n: int = 3) -> LabelsProvider:
    """A labels provider over a label store: ``store.top_labels(key, n) -> [(label, score), ...]``.

    Stores that answer many keys at once may offer ``top_labels_many(keys, n)`` instead (one query)."""
    many = getattr(store, "top_labels_many", None)
    one = getattr(store, "top_labels", None)
    if many is None and one is None:
        raise TypeError(
            f"{type(store).__name__} has no top_labels(key, n) method; pass labels=callable instead, "
            "a function keys -> [[(label, score), ...] per key]"
        )

    def provider(keys):
        if many is not None:
            return [list(x) for x in many(list(keys), n)]
        return [list(one(k, n)) for k in keys]

    return provider


def top_labels(
    provider: LabelsProvider | None, keys, on_error: Callable[[BaseException], None] | None = None, n: int = 10
) -> list[list]:
    """``[[label, score], ...]`` (at most ``n``) per key from ``provider``; empty lists without a provider or
    when it fails (``on_error(exc)`` is told)."""
    keys = list(keys)
    if provider is None or not keys:
        return [[] for _ in keys]
    try:
        got = provider(keys)
        return [[[str(a), float(b)] for a, b in list(lab)[:n]] for lab in got]
    except Exception as e:  # a failing label store must not break the Explorer
        log.warning("labels provider failed: %s", e)
        if on_error is not None:
            on_error(e)
        return [[] for _ in keys]
