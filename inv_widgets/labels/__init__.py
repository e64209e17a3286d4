"""Labels from the Deep Reveal game: storage, cleaning and aggregation into explanations.

* :class:`LabelStore` keeps participants, games and labels in SQLite (one transaction per answer).
* :class:`MapKey` is the identity of a cluster map.
* :func:`clean_label` cleans free text as in the paper.
* :func:`aggregate_labels` turns labels into scored representative labels per cluster map
  (Sentence-BERT + agglomerative clustering); :func:`top_labels` reads the best ones of one map.
"""

from .aggregate import EmbeddingFallbackWarning, aggregate_labels, label_score, top_labels
from .store import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    OUTCOMES,
    LabelStore,
    MapKey,
    StoreBusyError,
    points_for,
)
from .text import clean_label, lemmatize

__all__ = [
    "aggregate_labels",
    "top_labels",
    "label_score",
    "EmbeddingFallbackWarning",
    "LabelStore",
    "MapKey",
    "StoreBusyError",
    "points_for",
    "clean_label",
    "lemmatize",
    "OUTCOMES",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
]
