"""The rules of the Deep Reveal game, in one place: outcomes, limits, points, streaks, the clock, and the
validation of names, labels and whole answers.

The label store (what may be stored), the import of exported files (what may be read back) and the game
widget (what a player may submit) all call these functions, so a rule changes here and nowhere else::

    points_for("win", 2)                       # 4: a right guess at step s earns 6 - s
    streaks(["win", "win", "lose", "win"])     # (1, 2): the current and the best run of wins
    check_name("  Zoë ")                       # "Zoë"
    labels_from_boxes(["wheel", ""], "win")    # ["wheel"]: the game's boxes, untouched ones dropped

A broken rule raises :class:`RuleError` (a ``ValueError``; wrong types raise ``TypeError``). Its text
is written for a programmer and names the fix; ``exc.for_player`` says the same to the person at the
game, in the second person.
"""

from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..engine.keys import MapKey
from ..engine.maps import REVEAL_PERCENTS
from .text import clean_label

__all__ = [
    "OUTCOMES",
    "MAX_STEP",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
    "RuleError",
    "Answer",
    "now",
    "points_for",
    "streaks",
    "outcome_of",
    "check_outcome",
    "check_step",
    "check_name",
    "check_labels",
    "labels_from_boxes",
    "class_text",
    "as_time",
    "iso",
    "as_key",
    "validate_answer",
    "AlreadyAnswered",
    "normal_text",
    "is_blank",
    "check_duration",
]

OUTCOMES = ("win", "lose", "resign")
#: The last reveal step (0-based): one step per entry of the engine's REVEAL_PERCENTS (2 .. 30 %).
MAX_STEP = len(REVEAL_PERCENTS) - 1
MAX_LABELS = 3
MAX_LABEL_CHARS = 200
MAX_NAME_CHARS = 64


class RuleError(ValueError):
    """An answer, label or name that breaks a rule of the game; nothing was stored.

    ``str(exc)`` is for programmers; ``exc.for_player`` is the same problem said to a player.
    """

    def __init__(self, message: str, for_player: str | None = None):
        super().__init__(message)
        self.for_player = for_player or message


class AlreadyAnswered(RuleError):
    """The participant has already answered this cluster map (e.g. in another browser tab); nothing was stored."""

    def __init__(self, participant: Any, key: MapKey):
        super().__init__(
            f"participant {participant!r} has already answered the cluster map {key}; a map is answered once "
            "per participant (record_answer(..., once=False) stores it anyway)",
            "You have already answered this map (in another window?), so this answer was not saved. "
            "Here is the next one.",
        )
        self.participant = participant
        self.key = key


def now() -> datetime:
    """The clock of the game and the store (UTC). The one place both read the time from."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# outcomes, steps, points, streaks


def check_outcome(outcome: Any) -> str:
    if outcome not in OUTCOMES:
        raise RuleError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    return outcome


def check_step(step: Any) -> int:
    """A reveal step 0..MAX_STEP as an int (bools and floats are refused, not rounded)."""
    if isinstance(step, bool):
        raise TypeError(f"reveal_step must be an int 0..{MAX_STEP}, got a bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"reveal_step must be an int 0..{MAX_STEP}, got {step!r}") from None
    if not 0 <= step <= MAX_STEP:
        raise RuleError(f"reveal_step must be between 0 and {MAX_STEP}; got {step}")
    return int(step)


def points_for(outcome: str, reveal_step: int) -> int:
    """Leaderboard points of one game: a right guess at step s earns ``6 - s``; lose or resign 0.

    Early right guesses are rewarded: 6 points with the least revealed (step 0), 1 point at step 5.
    """
    check_outcome(outcome)
    step = check_step(reveal_step)
    return (MAX_STEP + 1 - step) if outcome == "win" else 0


def streaks(outcomes: Iterable[str]) -> tuple[int, int]:
    """``(current, best)``: the run of wins at the end of ``outcomes`` (oldest first) and the longest one."""
    run = best = 0
    for outcome in outcomes:
        run = run + 1 if outcome == "win" else 0
        best = max(best, run)
    return run, best


def outcome_of(guessed: int | str | None, true_class: int | str) -> str:
    """``"win"`` when the guess is the true class, ``"lose"`` for another class, ``"resign"`` for None."""
    if guessed is None:
        return "resign"
    return "win" if guessed == true_class else "lose"


# --------------------------------------------------------------------------------------------------
# text from people

#: Characters that draw nothing: text made only of these (and spaces) is blank.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u200e\u200f\u061c"
#: Bidirectional embedding, override and isolate controls: removed from names, so that a name cannot show
#: reversed (or reverse what follows it) on a leaderboard.
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_NAME_DROP = re.compile("[" + BIDI_CONTROLS + "\u200b\u2060\ufeff]")
_INVISIBLE_RE = re.compile("[" + INVISIBLE + BIDI_CONTROLS + "]")


def normal_text(text: str) -> str:
    """``text`` in Unicode NFC: "José" typed as one code point or as "e" + accent is the same text."""
    return unicodedata.normalize("NFC", text)


def is_blank(text: str) -> bool:
    """Nothing visible: empty, spaces, or only zero-width and direction marks."""
    return not _INVISIBLE_RE.sub("", text).strip()


def _storable(text: str, what: str, player_what: str) -> None:
    if "\x00" in text:
        raise RuleError(
            f"{what} contains a NUL character, which cannot be stored; remove it",
            f"{player_what} contains a NUL character; please remove it.",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError(
            f"{what} is not valid Unicode text (it has an unpaired surrogate); re-type it",
            f"{player_what} has a broken character; please re-type it.",
        ) from None


def check_name(name: Any) -> str:
    """A participant name: NFC, without bidirectional controls (and zero-width spaces), stripped;
    1..MAX_NAME_CHARS characters of storable text. Text with nothing visible is blank."""
    if not isinstance(name, str):
        raise TypeError(f"a participant name must be a str, got {type(name).__name__}")
    name = _NAME_DROP.sub("", normal_text(name)).strip()
    if is_blank(name):
        raise RuleError("a participant name must not be empty or blank", "Please type your name (it cannot be empty).")
    if len(name) > MAX_NAME_CHARS:
        raise RuleError(
            f"a participant name has at most {MAX_NAME_CHARS} characters; got {len(name)}",
            f"Your name is {len(name)} characters long; names have at most {MAX_NAME_CHARS} characters.",
        )
    _storable(name, "the participant name", "Your name")
    return name


def _check_label(text: str, what: str, player_what: str) -> None:
    if is_blank(text):
        raise RuleError(
            f"{what} is empty: type what gave the class away, or leave it out",
            f"{player_what} is blank: type a feature, or clear the box.",
        )
    if len(text) > MAX_LABEL_CHARS:
        raise RuleError(
            f"{what} has {len(text)} characters; the limit is {MAX_LABEL_CHARS}",
            f"{player_what} is {len(text)} characters long; the limit is {MAX_LABEL_CHARS} "
            "characters. Please shorten it.",
        )
    _storable(text, what, player_what)


def _count_rule(n: int, outcome: str) -> None:
    low = 0 if outcome == "resign" else 1
    if n > MAX_LABELS:
        raise RuleError(
            f"a {outcome} answer needs {low} to {MAX_LABELS} labels; got {n}",
            f"At most {MAX_LABELS} labels, please (you gave {n}).",
        )
    if n < low:
        raise RuleError(
            f"a {outcome} answer needs {low} to {MAX_LABELS} labels; got {n}",
            f"Type at least one feature that gave it away (up to {MAX_LABELS}, each at most "
            f"{MAX_LABEL_CHARS} characters).",
        )


def check_labels(labels: Any, outcome: str) -> list[str]:
    """The labels of one stored answer: 1..3 (0..3 after a resign) non-blank texts of <= 200 characters,
    kept exactly as typed."""
    if isinstance(labels, str):
        raise TypeError("labels must be a list of str (e.g. [text]), not a single str")
    if labels is None:
        labels = []
    try:
        labels = list(labels)
    except TypeError:
        raise TypeError(f"labels must be a list of str, got {type(labels).__name__}") from None
    _count_rule(len(labels), outcome)
    out = []
    for i, text in enumerate(labels, 1):
        what = f"label {i} of {len(labels)}"
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a str, got {type(text).__name__}")
        text = normal_text(text)
        _check_label(text, what, f"Label {i}")
        out.append(text)
    return out


def labels_from_boxes(boxes: Any, outcome: str) -> list[str]:
    """The labels a player typed into the game's boxes: untouched (empty) boxes are dropped, the rest
    must pass :func:`check_labels`. A box is numbered as the player sees it ("Label 2")."""
    if isinstance(boxes, str):
        boxes = [boxes]
    try:
        boxes = list(boxes)
    except TypeError:
        raise RuleError(
            f"labels must be a list of str, got {type(boxes).__name__}", "Labels must be a list of texts."
        ) from None
    if not all(isinstance(x, str) for x in boxes):
        raise RuleError("labels must be str", "Labels must be texts.")
    boxes = [normal_text(x) for x in boxes]
    for n, text in enumerate(boxes, 1):
        if text != "":
            _check_label(text, f"label {n}", f"Label {n}")
    labels = [x for x in boxes if x != ""]
    _count_rule(len(labels), outcome)
    return labels


def class_text(value: Any, what: str, allow_none: bool) -> str | None:
    """A class as stored: its name, or its index as text."""
    if value is None:
        if allow_none:
            return None
        raise RuleError(f"{what} is required")
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a class name or index, got a bool")
    if not isinstance(value, str):
        try:
            value = str(operator.index(value))
        except TypeError:
            raise TypeError(f"{what} must be a class name (str) or index (int), got {value!r}") from None
    value = normal_text(value).strip()
    if not value:
        raise RuleError(f"{what} must not be empty")
    _storable(value, what, what)
    return value


# --------------------------------------------------------------------------------------------------
# times and keys


def as_time(value: Any, name: str) -> datetime | None:
    """A datetime, ISO 8601 text or epoch seconds as an aware UTC datetime (naive times are local)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise RuleError(f"{name} must be a finite time, got {value!r}")
        dt = datetime.fromtimestamp(float(value), tz=UTC)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise RuleError(
                f"{name} must be an ISO 8601 time like '2024-05-01T10:00:00+00:00', got {value!r}"
            ) from None
    else:
        raise TypeError(f"{name} must be a datetime, an ISO 8601 str or epoch seconds, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive times are local times
    return dt.astimezone(UTC)


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="microseconds")


def as_key(key: Any) -> MapKey:
    """A :class:`MapKey` from a key, a row mapping or any 5-tuple."""
    if isinstance(key, MapKey):
        return key
    if isinstance(key, Mapping):
        return MapKey.from_row(key)
    if isinstance(key, (tuple, list)) and len(key) == 5:
        return MapKey(*key)
    raise TypeError(f"key must be a MapKey(model, image_id, target, layer, members), got {type(key).__name__}")


# --------------------------------------------------------------------------------------------------
# a whole answer


@dataclass(frozen=True)
class Answer:
    """One validated game, ready to be stored (times as ISO 8601 text)."""

    participant: str | int  # a stripped name, or the id of an existing participant
    key: MapKey
    guessed: str | None
    true_class: str
    outcome: str
    step: int
    labels: tuple[str, ...]  # as typed
    cleaned: tuple[str, ...]  # clean_label of each, with the guessed and true class removed
    started_at: str | None
    answered_at: str
    duration_s: float | None
    answer_id: str | None = None  # the writer's identity of this answer (a retry with it stores it once)
    weight: float | None = None  # the cluster map's weight in percent, when the writer gave it
    labels_pending: bool = False  # saved when the class was shown; the labels follow


_DERIVE = object()
_ANSWER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_answer_id(value: Any) -> str | None:
    """An answer's identity chosen by its writer (e.g. ``uuid.uuid4().hex``): None, or 1..128 characters of
    letters, digits and ``. _ : -``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ANSWER_ID.fullmatch(value):
        raise RuleError(
            f"answer_id must be 1 to 128 letters, digits, '.', '_', ':' or '-' (e.g. uuid4().hex), got {value!r}"
        )
    return value


def check_weight(value: Any) -> float | None:
    """A cluster map's weight: None (unknown) or a finite percentage in [0, 100]."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("weight must be a percentage (a number), got a bool")
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise RuleError(f"weight must be a percentage (a number 0..100), got {value!r}") from None
    if not math.isfinite(w) or not 0.0 <= w <= 100.0 + 1e-6:
        raise RuleError(f"weight must be a finite percentage in 0..100, got {value!r}")
    return min(w, 100.0)


def check_duration(value: Any) -> float | None:
    """A duration in seconds: None (unknown) or a finite number >= 0 (NaN, infinities, negatives refused)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TypeError("duration_s must be a number of seconds, got a bool")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise RuleError(f"duration_s must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise RuleError(f"duration_s must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def validate_answer(
    participant: Any,
    key: Any,
    guessed: Any,
    true_class: Any,
    outcome: Any,
    reveal_step: Any,
    labels: Sequence[str] = (),
    started_at: Any = None,
    answered_at: Any = None,
    *,
    duration_s: Any = _DERIVE,
    answer_id: Any = None,
    weight: Any = None,
    labels_pending: bool = False,
) -> Answer:
    """Check one answer against every rule and return it as an :class:`Answer`.

    ``answered_at`` defaults to :func:`now`; ``duration_s`` is derived from the two times unless given
    (an import keeps the exported value). ``labels_pending``: the answer is saved when the class is shown and
    its labels follow (``LabelStore.set_labels``); it has none yet.
    """
    key = as_key(key)
    if not -(2**31) <= key.target < 2**31:  # both backends store it as a 32-bit INTEGER
        raise RuleError(f"target {key.target} is too large for a class index (at most {2**31 - 1:,})")
    outcome = check_outcome(outcome)
    step = check_step(reveal_step)
    guessed_t = class_text(guessed, "guessed", allow_none=outcome == "resign")
    true_t = class_text(true_class, "true_class", allow_none=False)
    if outcome == "win" and guessed_t != true_t:
        raise RuleError(f"outcome 'win' needs guessed == true_class; got {guessed_t!r} and {true_t!r}")
    if outcome == "lose" and guessed_t == true_t:
        raise RuleError(f"outcome 'lose' needs a guess other than the true class {true_t!r}")
    labels_pending = bool(labels_pending)
    if labels_pending:
        if labels:
            raise RuleError(
                "an answer whose labels follow (labels_pending) has no labels yet; give them with set_labels"
            )
        labels = []
    else:
        labels = check_labels(labels, outcome)
    answer_id = check_answer_id(answer_id)
    weight = check_weight(weight)
    started = as_time(started_at, "started_at")
    answered = as_time(answered_at, "answered_at") or now()
    if duration_s is _DERIVE:
        duration = None
        if started is not None:
            duration = (answered - started).total_seconds()
            if duration < 0:
                raise RuleError("started_at is after answered_at")
    else:
        duration = check_duration(duration_s)
    if not isinstance(participant, (int, str)) or isinstance(participant, bool):
        raise TypeError("participant must be a name (str) or an id (int)")
    if isinstance(participant, str):
        participant = check_name(participant)
    names = [n for n in (true_t, guessed_t) if n]
    cleaned = tuple(clean_label(t, names) for t in labels)
    return Answer(
        participant,
        key,
        guessed_t,
        true_t,
        outcome,
        step,
        tuple(labels),
        cleaned,
        iso(started),
        iso(answered),
        duration,
        answer_id,
        weight,
        labels_pending,
    )
