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
4. Function words are removed: the 179 English stop words of NLTK, as the paper did (shipped as
   ``data/stopwords_en.txt``, nothing is downloaded), plus the paper's words for position or vagueness
   (``EXTRA_STOP_WORDS``) except "center", which people use for a part ("flower center"). Words for parts
   and their look stay: top, bottom, front, back, side, fire, thin, thick, empty, full, ...

``clean_label`` returns the remaining words joined by single spaces, or ``""`` when nothing is left;
callers treat ``""`` as noise. Letters from every script are kept ("rueda", "колесо", "車輪").

``lemmatize`` gives the singular of an English noun with LemmInflect (a dictionary of English inflections
and its rules for unknown words, offline, in the wheel), after a short table of this project's own
choices (``leaves`` -> leaf, invariant words such as ``glasses``); it is used for the representative word
of a label cluster.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

__all__ = ["clean_label", "lemmatize", "tokenize", "STOP_WORDS", "FUNCTION_WORDS", "EXTRA_STOP_WORDS"]


def _read_words(name: str) -> frozenset[str]:
    path = Path(__file__).parent / "data" / name
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


#: NLTK's English stop list (179 function words), as the paper used it.
FUNCTION_WORDS = _read_words("stopwords_en.txt")
#: The paper's extra words for position or vagueness, less "center" (a part: "flower center").
EXTRA_STOP_WORDS = frozenset(
    {
        "something",
        "like",
        "multiple",
        "lower",
        "upper",
        "typical",
        "maybe",
        "least",
        "most",
        "previous",
        "next",
        "left",
        "right",
    }
)
STOP_WORDS = FUNCTION_WORDS | EXTRA_STOP_WORDS

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


# --- lemmatiser -----------------------------------------------------------------------------------

# This project's choices, before LemmInflect: plurals whose noun reading it does not put first
# ("leaves" -> leave), or gets wrong ("calories" -> calory), and nouns with an -ie singular it lacks.
_IRREGULAR = {
    "leaves": "leaf",
    "calves": "calf",
    "halves": "half",
    "people": "person",
    "oxen": "ox",
    "dice": "die",
    "calories": "calorie",
    "hoodies": "hoodie",
    "selfies": "selfie",
    "smoothies": "smoothie",
    "veggies": "veggie",
    "walkies": "walkie",
    "cuties": "cutie",
    "goalies": "goalie",
    "rookies": "rookie",
    "aussies": "aussie",
    "budgies": "budgie",
    "birdies": "birdie",
    "beanies": "beanie",
    "doggies": "doggie",
    "pixies": "pixie",
    "sweeties": "sweetie",
    "neckties": "necktie",
    "bowties": "bowtie",
    "axes": "axe",
    "bases": "base",
}
# Words ending in "s" that are not plurals (or whose plural is the same word), and words that are not
# nouns at all, which a noun lemmatiser would cut ("was" -> wa, "always" -> alway).
_NOT_PLURAL = {
    "bus",
    "gas",
    "lens",
    "glass",
    "grass",
    "class",
    "brass",
    "mass",
    "pass",
    "boss",
    "moss",
    "series",
    "species",
    "news",
    "pants",
    "scissors",
    "jeans",
    "trousers",
    "shorts",
    "glasses",
    "physics",
    "mathematics",
    "canvas",
    "chassis",
    "always",
    "perhaps",
    "plus",
    "atlas",
    "bias",
    "iris",
    "this",
    "thus",
    "yes",
    "its",
    "his",
    "hers",
    "ours",
    "yours",
    "theirs",
    "is",
    "was",
    "has",
    "does",
    "us",
    "tennis",
    "chaos",
    "christmas",
    "lotus",
    "octopus",
    "virus",
    "cactus",
    "status",
    "campus",
    "bonus",
    "focus",
    "genus",
    "radius",
    "walrus",
    "circus",
    "corpus",
    "apparatus",
    "abacus",
    "asparagus",
    "hippopotamus",
    "rhinoceros",
    "diabetes",
    "analysis",
    "basis",
    "axis",
    "crisis",
    "thesis",
    "oasis",
    "stairs",
    "goods",
    "clothes",
    "headphones",
    "earphones",
    "binoculars",
    "pliers",
    "tongs",
    "overalls",
    "sunglasses",
    "mess",
    "dress",
    "press",
    "less",
    "across",
    "towards",
    "afterwards",
    "sometimes",
    "besides",
    "whereas",
    "various",
    "numerous",
    "previous",
    "famous",
    "dangerous",
    "gorgeous",
    "nervous",
    "obvious",
    "serious",
    "curious",
    "enormous",
    "tremendous",
    "fireworks",
}


@lru_cache(maxsize=1)
def _lemminflect():
    try:
        import lemminflect
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("lemmatize() needs the package lemminflect (pip install lemminflect)") from exc
    return lemminflect


@lru_cache(maxsize=65536)
def lemmatize(word: str) -> str:
    """Singular form of an English noun; other words come back unchanged.

    >>> [lemmatize(w) for w in ["wheels", "movies", "cookies", "leaves", "glasses", "colesa"]]
    ['wheel', 'movie', 'cookie', 'leaf', 'glasses', 'colesa']

    Lower case; words that are not plain ASCII letters, or of at most 3 letters, are returned as they are.
    Then this module's table (``_IRREGULAR``, ``_NOT_PLURAL``), then LemmInflect's noun lemma (its
    dictionary, or its rules for words it does not know: "blorfies" -> blorfy).
    """
    w = word.lower()
    if not w.isascii() or not w.isalpha() or len(w) <= 3:
        return w
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _NOT_PLURAL or not w.endswith(("s", "i", "a", "en", "ice", "eet", "eeth", "eese")):
        return w  # only plural-looking words go to the lemmatiser: adjectives and singulars stay as typed
    lemmas = _lemminflect().getLemma(w, upos="NOUN", lemmatize_oov=True)
    return lemmas[0] if lemmas else w
