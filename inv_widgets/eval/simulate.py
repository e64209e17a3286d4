"""Simulated Deep Reveal players on the embedded default, where the parts under every pixel are known.

A simulated player looks at the revealed pixels of a cluster map step by step. A part counts as seen
once enough of it is revealed; the player guesses when the seen parts single out one class (the classes
whose parts include them), reveals more otherwise, and at the last step guesses among the remaining
candidates or resigns. Then it types 1-3 labels: phrases a person might use for the part that the
revealed pixels showed first, each replaced by a noise label with probability ``noise``. Players name what
they noticed first (the part that showed up at the earliest reveal step; the larger revealed area breaks
ties) **in the terms of the class they believe they saw**: after a right guess, the true class's words for it;
after a wrong guess, a part of the guessed class (the part of the same name if it has one, such as a house's
and a car's windows, else one of its parts at random); after resigning, a part of a class still possible.

The truth a map's label is checked against (:func:`truth_part`) is taken independently of what the players
were shown: the part holding most of the map's mass over all pixels at full resolution, not the top few percent
that the game reveals first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SimulatedPlayer", "Answer", "NOISE_LABELS", "dominant_part", "truth_part"]

#: What a distracted or puzzled player types instead of naming a part.
NOISE_LABELS = (
    "colour",
    "colors",
    "shape",
    "texture",
    "pattern",
    "dark area",
    "bright spot",
    "edges",
    "blur",
    "background",
    "no idea",
    "random pixels",
    "contrast",
    "lines",
    "corner",
    "noise",
    "smooth surface",
)


@dataclass(frozen=True)
class Answer:
    guess: str | None
    outcome: str  # win / lose / resign
    step: int
    labels: list[str]


def dominant_part(cluster_map: np.ndarray, masks: dict[str, np.ndarray], top: float = 8.0) -> str | None:
    """The part holding most of the map's mass among its top ``top`` % pixels: what the game shows of the
    map in its first steps (2, 4.5 and 8 %)."""
    if not masks:
        return None
    thr = np.percentile(cluster_map, 100.0 - top)
    salient = np.where(cluster_map >= thr, cluster_map, 0.0)
    mass = {p: float(salient[m].sum()) for p, m in masks.items()}
    best = max(mass, key=mass.get)
    return best if mass[best] > 0 else None


def truth_part(cluster_map: np.ndarray, masks: dict[str, np.ndarray]) -> str | None:
    """The part holding most of the map's mass above its mean, over all its pixels at full resolution: what the
    map shows, read independently of the few pixels the game reveals first (the mean is taken off so that a
    min-max map's diffuse floor does not hand every map to the largest part). None when no part holds any."""
    if not masks:
        return None
    m = np.asarray(cluster_map, np.float64)
    m = np.clip(m - m.mean(), 0, None)
    mass = {p: float(m[mask].sum()) for p, mask in masks.items()}
    best = max(mass, key=mass.get)
    return best if mass[best] > 0 else None


class SimulatedPlayer:
    """One simulated labeller.

    Parameters
    ----------
    name : participant name in the store.
    class_parts : class name -> list of part names.
    vocabulary : class name -> part name -> phrases (the demo's ``CLASS_PART_VOCABULARY``).
    noise : share of labels replaced by noise labels.
    seen_share : share of a part's pixels that must be revealed for the player to notice it.
    slip : chance of guessing a random candidate although several classes remain.
    seed : the player's random seed.
    """

    def __init__(
        self,
        name: str,
        class_parts: dict,
        vocabulary: dict,
        *,
        noise: float = 0.2,
        seen_share: float = 0.25,
        slip: float = 0.1,
        seed: int = 0,
    ):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.name = name
        self.class_parts = class_parts
        self.vocabulary = vocabulary
        self.noise = noise
        self.seen_share = seen_share
        self.slip = slip
        self.rng = np.random.default_rng(seed)

    def _seen(self, revealed: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
        cover = {}
        for p, m in masks.items():
            area = m.sum()
            if area:
                share = float((revealed & m).sum() / area)
                if share >= self.seen_share:
                    cover[p] = share
        return cover

    def play(self, reveal_masks: list[np.ndarray], masks: dict[str, np.ndarray], true_class: str) -> Answer:
        """Play one cluster map: ``reveal_masks`` are the six soft masks (H, W) of steps 0..5."""
        classes = list(self.class_parts)
        step, candidates, seen = 0, classes, {}
        first_step: dict[str, int] = {}  # when each part first showed up: what a player notices first
        for step, soft in enumerate(reveal_masks):
            revealed = soft > 0.5
            for p, m in masks.items():
                if p not in first_step and (revealed & m).any():
                    first_step[p] = step
            seen = self._seen(revealed, masks)
            candidates = [c for c in classes if set(seen) <= set(self.class_parts[c])] if seen else classes
            if seen and (len(candidates) == 1 or self.rng.random() < self.slip):
                break
        under = {p: int((revealed & m).sum()) for p, m in masks.items()}
        ranked = sorted((p for p in first_step), key=lambda p: (first_step[p], -under[p]))
        if not seen or not candidates:
            if self.rng.random() < 0.5:
                believed = (candidates or classes)[int(self.rng.integers(len(candidates or classes)))]
                return Answer(None, "resign", 5, self._labels(ranked, true_class, believed))
            candidates = classes
        guess = candidates[int(self.rng.integers(len(candidates)))]
        outcome = "win" if guess == true_class else "lose"
        return Answer(guess, outcome, step, self._labels(ranked, true_class, guess))

    def _as_part_of(self, part: str, believed: str) -> str:
        """What a player who believes the image shows ``believed`` calls the part ``part`` of the true class:
        the part of the same name if ``believed`` has one, else one of its parts."""
        parts = self.class_parts[believed]
        return part if part in parts else parts[int(self.rng.integers(len(parts)))]

    def _labels(self, ranked: list[str], true_class: str, believed: str | None = None) -> list[str]:
        """1-3 labels, mostly for the part noticed first, sometimes the second, in the words of the class the
        player believes it saw (``believed``, default the true class); some are noise."""
        believed = believed or true_class
        n = int(self.rng.integers(1, 4))
        out = []
        for j in range(n):
            if not ranked or self.rng.random() < self.noise:
                out.append(NOISE_LABELS[int(self.rng.integers(len(NOISE_LABELS)))])
                continue
            part = ranked[0] if j == 0 or len(ranked) == 1 or self.rng.random() < 0.7 else ranked[1]
            if believed != true_class:
                part = self._as_part_of(part, believed)
            phrases = self.vocabulary[believed][part]
            out.append(phrases[int(self.rng.integers(len(phrases)))])
        return list(dict.fromkeys(out))  # a person does not type the same thing twice
