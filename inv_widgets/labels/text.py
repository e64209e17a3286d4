"""Cleaning of the free-text labels people type in the game.

The rules follow PAPER.md ("Labels to explanations"):

1. Unicode NFKC normalisation (full-width letters, ligatures and decomposed accents become their
   ordinary forms), then lower case.
2. The class names are removed as whole words or phrases, together with their possessive
   ("dog's", "dogs'", "dog’s") and plain plural ("dogs") forms. Underscores in class names count as
   spaces, so ``"garbage_truck"`` also removes "garbage truck".
3. Punctuation is stripped: the text is split into words made of Unicode letters and digits. A
   possessive ``'s`` ending and English contractions (n't, 're, 've, 'll, 'd, 'm) are dropped, other
   apostrophes split a word. Words without any letter
   (pure numbers) and single ASCII letters are dropped.
4. English stop words (scikit-learn's ``ENGLISH_STOP_WORDS``) are removed, plus the words that carry
   position or vagueness: ``EXTRA_STOP_WORDS``.

``clean_label`` returns the remaining words joined by single spaces, or ``""`` when nothing is left;
callers treat ``""`` as noise. Letters from every script are kept ("rueda", "колесо", "車輪").

``lemmatize`` is a light rule-based English lemmatiser for plural nouns (no nltk): it is used for the
representative word of a label cluster.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Iterable

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

__all__ = ["clean_label", "lemmatize", "tokenize", "STOP_WORDS", "EXTRA_STOP_WORDS"]

EXTRA_STOP_WORDS = frozenset(
    {
        "something", "like", "multiple", "lower", "upper", "typical", "maybe", "center",
        "least", "most", "previous", "next", "left", "right",
    }
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | EXTRA_STOP_WORDS

_APOSTROPHES = "'\u2019\u02bc\u2018`\u00b4"
# A word: letters/digits (not underscore), possibly joined by apostrophes ("dog's", "o'clock").
_WORD_RE = re.compile(r"[^\W_]+(?:[" + _APOSTROPHES + r"][^\W_]+)*")
_POSSESSIVE_RE = re.compile(r"[" + _APOSTROPHES + r"]s$")
_SPLIT_APOSTROPHE_RE = re.compile(r"[" + _APOSTROPHES + r"]")
_CONTRACTION_RE = re.compile(r"(?:n[" + _APOSTROPHES + r"]t|[" + _APOSTROPHES + r"](?:re|ve|ll|d|m))$")
_NT_BASE = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower()


@lru_cache(maxsize=256)
def _class_pattern(names: tuple[str, ...]) -> re.Pattern | None:
    """One regex that matches any class name as a whole word/phrase, with possessive or plural."""
    alternatives = []
    for name in names:
        norm = _normalize(str(name)).replace("_", " ")
        words = _WORD_RE.findall(norm)
        if not words:
            continue
        # words of the name separated by any run of non-word characters ("golf-ball", "golf  ball")
        phrase = r"[\W_]+".join(re.escape(w) for w in words)
        alternatives.append(phrase)
    if not alternatives:
        return None
    alternatives.sort(key=len, reverse=True)  # longest first: "golf ball" before "golf"
    apos = "[" + _APOSTROPHES + "]"
    suffix = rf"(?:{apos}s|s{apos}|es{apos}|{apos}|es|s)?"
    return re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")" + suffix + r"(?![^\W_])")


def tokenize(text: str) -> list[str]:
    """Words of ``text`` after normalisation and punctuation stripping (stop words kept)."""
    out: list[str] = []
    for word in _WORD_RE.findall(_normalize(text)):
        word = _POSSESSIVE_RE.sub("", word)
        stripped = _CONTRACTION_RE.sub("", word)
        if stripped != word:  # "don't" -> "do", "can't" -> "can", "they're" -> "they"
            word = _NT_BASE.get(stripped, stripped)
        for part in _SPLIT_APOSTROPHE_RE.split(word):
            if not part or not any(ch.isalpha() for ch in part):
                continue
            if len(part) == 1 and part.isascii():
                continue
            out.append(part)
    return out


def clean_label(text: str, class_names: Iterable[str] = ()) -> str:
    """Clean one label as in the paper; ``""`` when nothing informative is left.

    >>> clean_label("The dog's long floppy ears", ["dog"])
    'long floppy ears'
    >>> clean_label("something like a wheel on the left")
    'wheel'
    """
    if not isinstance(text, str):
        raise TypeError(f"a label must be a str, got {type(text).__name__}")
    norm = _normalize(text)
    names = tuple(sorted({str(n) for n in class_names if n is not None and str(n).strip()}))
    if names:
        pattern = _class_pattern(names)
        if pattern is not None:
            norm = pattern.sub(" ", norm)
    words = [w for w in tokenize(norm) if w not in STOP_WORDS]
    return " ".join(words)


# --- light lemmatiser -----------------------------------------------------------------------------

_IRREGULAR = {
    "feet": "foot", "teeth": "tooth", "geese": "goose", "mice": "mouse", "lice": "louse",
    "men": "man", "women": "woman", "children": "child", "people": "person", "oxen": "ox",
    "leaves": "leaf", "knives": "knife", "wives": "wife", "lives": "life", "wolves": "wolf",
    "halves": "half", "shelves": "shelf", "calves": "calf", "loaves": "loaf", "thieves": "thief",
    "hooves": "hoof", "scarves": "scarf", "elves": "elf", "selves": "self", "wharves": "wharf",
    "heroes": "hero", "potatoes": "potato", "tomatoes": "tomato", "echoes": "echo",
    "volcanoes": "volcano", "torpedoes": "torpedo", "vetoes": "veto", "mosquitoes": "mosquito",
    "buses": "bus", "gases": "gas", "lenses": "lens", "cactuses": "cactus", "cacti": "cactus",
    "fungi": "fungus", "nuclei": "nucleus", "radii": "radius", "stimuli": "stimulus",
    "indices": "index", "vertices": "vertex", "matrices": "matrix", "axes": "axis",
    "analyses": "analysis", "bases": "base", "crises": "crisis", "phenomena": "phenomenon",
    "criteria": "criterion", "dice": "die", "quizzes": "quiz", "spikes": "spike",
}
# Words ending in "s" that are not plurals (or whose plural is the same word).
_NOT_PLURAL = {
    "bus", "gas", "lens", "glass", "grass", "class", "brass", "mass", "pass", "boss", "moss",
    "series", "species", "news", "pants", "scissors", "jeans", "trousers", "shorts", "glasses",
    "physics", "mathematics", "canvas", "chassis", "always", "perhaps", "plus", "atlas", "bias",
    "iris", "this", "thus", "yes", "its", "his", "hers", "ours", "yours", "theirs", "is", "was",
    "has", "does", "us", "tennis", "chaos", "christmas", "lotus", "octopus", "virus", "cactus",
    "status", "campus", "bonus", "focus", "genus", "radius", "walrus", "circus", "corpus",
    "apparatus", "abacus", "asparagus", "hippopotamus", "rhinoceros", "diabetes", "analysis",
    "basis", "axis", "crisis", "thesis", "oasis", "tuxedos", "stairs", "goods", "clothes",
    "headphones", "earphones", "binoculars", "pliers", "tongs", "overalls", "sunglasses",
    "mess", "dress", "press", "less", "across", "towards", "afterwards",
    "sometimes", "besides", "whereas", "various", "numerous", "previous", "famous", "dangerous",
    "gorgeous", "nervous", "obvious", "serious", "curious", "enormous", "tremendous",
}


@lru_cache(maxsize=65536)
def lemmatize(word: str) -> str:
    """Singular form of an English plural noun; other words come back unchanged.

    Rule based: a table of irregular plurals and invariant words, then the suffix rules
    -ies -> -y, -sses -> -ss, -ches/-shes/-xes/-zzes -> drop "es", and a final -s dropped
    (not after s, u or i). Non-ASCII words are returned as they are.
    """
    w = word.lower()
    if not w.isascii() or not w.isalpha() or len(w) <= 3:
        return w
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _NOT_PLURAL:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("sses"):
        return w[:-2]
    if w.endswith(("ches", "shes", "xes", "zzes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")):
        return w[:-1]
    return w
