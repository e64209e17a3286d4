"""What the rest of the package needs from a label store, as typing Protocols.

:class:`~inv_widgets.labels.store.LabelStore` (any backend) satisfies both. Code that takes a store
checks ``isinstance(store, GameStore)`` (runtime-checkable: the methods are present) instead of asking
for methods one by one, and never imports the store module itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from ..engine.keys import MapKey

__all__ = ["LabelSource", "GameStore", "missing_methods"]


@runtime_checkable
class LabelSource(Protocol):
    """Labels to aggregate and count: what :class:`~inv_widgets.labels.index.LabelIndex` reads."""

    def labels(self, participant: Any = None, **filters: Any) -> pd.DataFrame:
        """One row per label typed, with its game (map key, guess, outcome, reveal step)."""
        ...

    def label_counts(self, keys: Iterable[MapKey]) -> dict[MapKey, int]:
        """How many labels each map has."""
        ...

    def change_stamp(self) -> Hashable:
        """A value that changes whenever an answer is added or undone (caches compare it)."""
        ...


@runtime_checkable
class GameStore(Protocol):
    """What the Deep Reveal game (:mod:`inv_widgets.labels.queue`, the widget) reads and writes."""

    def add_participant(self, name: str) -> int:
        """The id of the participant called ``name``, added if new."""
        ...

    def participants(self) -> pd.DataFrame:
        """One row per participant."""
        ...

    def record_answer(
        self,
        participant: str | int,
        key: MapKey,
        guessed: str | int | None,
        true_class: str | int,
        outcome: str,
        reveal_step: int,
        labels: Sequence[str] = (),
        started_at: Any = None,
        answered_at: Any = None,
        *,
        once: bool = False,
        answer_id: str | None = None,
        weight: float | None = None,
        labels_pending: bool = False,
    ) -> int:
        """Store one game (a guess, its outcome and reveal step, the labels typed, or none yet with
        ``labels_pending``) in one transaction, once per ``answer_id``; its id."""
        ...

    def set_labels(self, participant: str | int, game_id: int, labels: Sequence[str] = ()) -> int:
        """Give (or replace) the labels of a stored game (the game saves an answer when it shows the class)."""
        ...

    def label_counts(self, keys: Iterable[MapKey]) -> dict[MapKey, int]:
        """How many labels each map has."""
        ...

    def games(self, participant: Any = None, **filters: Any) -> pd.DataFrame:
        """One row per game played."""
        ...

    def labels(self, participant: Any = None, **filters: Any) -> pd.DataFrame:
        """One row per label typed, with its game."""
        ...

    def leaderboard(self) -> pd.DataFrame:
        """Participants by points."""
        ...


def missing_methods(obj: Any, protocol: type) -> list[str]:
    """The methods of ``protocol`` that ``obj`` lacks (for an error message that names them)."""
    names = [n for n in vars(protocol) if not n.startswith("_") and callable(vars(protocol)[n])]
    return [n for n in names if not callable(getattr(obj, n, None))]
