"""The label store: answers of the Deep Reveal game in a database, one transaction per answer.

* :class:`LabelStore` (:mod:`.base`): the API, the same on every backend.
* :mod:`.queries`: the SQL every backend runs; :mod:`.schema`: versions and migrations.
* :mod:`.backend`: what a backend provides and the registry by URL scheme; :mod:`.sqlite`: SQLite.
* :mod:`.postgres`: PostgreSQL (``LabelStore("postgresql://...")``), SQLAlchemy Core with psycopg 3.
* Typed errors (:mod:`.errors`): :class:`StoreBusyError` (the lock stayed taken; nothing was stored,
  retry), :class:`StoreDamagedError`, :class:`StoreReadOnlyError`, :class:`StoreVersionError`,
  :class:`ForeignDatabaseError`, :class:`AnswerOutcomeUnknown` (the connection went during the commit:
  retry with the same ``answer_id``), :class:`StoreConnectionError`, :class:`StoreWriteError` (a full disk),
  :class:`StoreError` (anything else the database said); each names the store.

The game's rules (limits, points, outcomes) live in :mod:`inv_widgets.labels.rules`; their names are
re-exported here because ``from inv_widgets.labels.store import points_for, MAX_LABELS, ...`` worked
before the store became a package.
"""

from __future__ import annotations

from ...engine.keys import MapKey
from ..rules import MAX_LABEL_CHARS, MAX_LABELS, MAX_NAME_CHARS, MAX_STEP, OUTCOMES, points_for
from .base import DuplicateGameError, LabelStore
from .errors import (
    AnswerOutcomeUnknown,
    ForeignDatabaseError,
    StoreBusyError,
    StoreConnectionError,
    StoreDamagedError,
    StoreError,
    StoreReadOnlyError,
    StoreVersionError,
    StoreWriteError,
)
from .schema import MIGRATIONS

__all__ = [
    "LabelStore",
    "MapKey",
    "StoreBusyError",
    "StoreDamagedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "ForeignDatabaseError",
    "AnswerOutcomeUnknown",
    "StoreConnectionError",
    "StoreWriteError",
    "StoreError",
    "DuplicateGameError",
    "points_for",
    "OUTCOMES",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
    "MAX_LABELS",
    "MAX_STEP",
    "MIGRATIONS",
]
