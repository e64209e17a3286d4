"""Labels from the Deep Reveal game: rules, storage, what to play next, and aggregation into explanations.

* :mod:`.rules`: outcomes, limits, points, streaks, the clock, answer validation (the one place).
* :class:`LabelStore` (:mod:`.store`) keeps participants, games and labels (one transaction per answer);
  :mod:`.io` exports and imports them (CSV, JSON).
* :class:`MapKey` is the identity of a cluster map.
* :class:`Pool` (:mod:`.pool`): the cluster maps a game plays; :class:`ParticipantQueue`
  (:mod:`.queue`): next, submit, undo and progress of one participant over a pool and a store.
* :func:`clean_label` cleans free text as in the paper.
* :func:`aggregate_labels` turns labels into scored representative labels per cluster map
  (Sentence-BERT + agglomerative clustering); :func:`top_labels` reads the best ones of one map;
  :class:`LabelIndex` serves them per map from a store, cached until the labels change.
"""

from .aggregate import EmbeddingFallbackWarning, aggregate_labels, label_score, top_labels
from .index import LabelIndex
from .pool import Pool, PoolItem, PoolSpec
from .protocols import GameStore, LabelSource
from .queue import ParticipantQueue
from .rules import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    MAX_STEP,
    OUTCOMES,
    AlreadyAnswered,
    RuleError,
    points_for,
    streaks,
)
from .store import (
    AnswerOutcomeUnknown,
    ForeignDatabaseError,
    LabelStore,
    MapKey,
    StoreBusyError,
    StoreDamagedError,
    StoreReadOnlyError,
    StoreVersionError,
)
from .text import clean_label, lemmatize

__all__ = [
    "aggregate_labels",
    "top_labels",
    "label_score",
    "EmbeddingFallbackWarning",
    "LabelStore",
    "LabelIndex",
    "MapKey",
    "StoreBusyError",
    "StoreDamagedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "ForeignDatabaseError",
    "AnswerOutcomeUnknown",
    "RuleError",
    "AlreadyAnswered",
    "GameStore",
    "LabelSource",
    "Pool",
    "PoolItem",
    "PoolSpec",
    "ParticipantQueue",
    "points_for",
    "streaks",
    "clean_label",
    "lemmatize",
    "OUTCOMES",
    "MAX_STEP",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
]
