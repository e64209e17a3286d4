"""Shared helpers of the label tests: a transparent encoder and short ways to write answers."""

from __future__ import annotations

from collections import Counter

import numpy as np

from inv_widgets.labels import MapKey

CLASSES = ["car", "church", "golf ball", "dog", "castle"]


class WordVectors:
    """A transparent encoder: a text is the normalised sum of one-hot vectors of its words.

    Distinct words are orthogonal, so tests of scoring and merging do not depend on a language
    model. ``calls`` counts how often each text was embedded.
    """

    def __init__(self):
        self.vocab: dict[str, int] = {}
        self.calls: Counter = Counter()

    def encode(self, texts, **kwargs):
        self.calls.update(texts)
        rows = []
        for t in texts:
            v = np.zeros(256)
            for w in t.split():
                v[self.vocab.setdefault(w, len(self.vocab))] += 1
            rows.append(v)
        return np.array(rows)


def key(members, image=1, layer="block5", target=1, model="net"):
    return MapKey(model, image, target, layer, members)


def answer(store, k, labels, outcome="win", step=0, true="church", guessed=None, who="p"):
    if guessed is None:
        guessed = {"win": true, "lose": "castle", "resign": None}[outcome]
    store.record_answer(who, k, guessed, true, outcome, step, labels)


def rows_of(df, k):
    m = df[
        (df["model"] == k.model)
        & (df["image_id"] == k.image_id)
        & (df["target"] == k.target)
        & (df["layer"] == k.layer)
        & (df["members"] == k.members_text)
    ]
    return m.set_index("label")
