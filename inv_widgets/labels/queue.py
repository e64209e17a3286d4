"""What one participant plays next, and what they did: the game's queue over a pool and a store.

    queue = ParticipantQueue(pool, store, "ada", classes)
    queue.load()                       # this player's answered maps, points and streaks (from the store)
    item = queue.next()                # the least-labelled map this player has not answered
    queue.more()                       # reveal step 1
    queue.guess(2)                     # or queue.resign(): the answer is saved, the class may be shown
    queue.submit(["round wheels"])     # its labels follow (one transaction); the next map may come
    queue.undo()                       # the last answer's labels come back to be fixed

The order is the one every player shares: fewest labels in the store first (counts read again for each
map), ties by the pool's order. A map the player has answered never comes back, also when it was answered
in another window (the answered maps are read from the store for each map); a map taken back by
:meth:`~ParticipantQueue.undo` comes first. Fair play across two tabs of one player: a revealed class is an
answer. :meth:`~ParticipantQueue.guess` and :meth:`~ParticipantQueue.resign` store the answer
(``record_answer(..., once=True, labels_pending=True)``) before they return, that is before the class can be
shown; its labels follow as an update (:meth:`~ParticipantQueue.submit`, ``LabelStore.set_labels``). So a map
answered, lost or given up in one tab cannot be scored in the other, whatever happens to the labels; that tab
gets :class:`~inv_widgets.labels.rules.AlreadyAnswered` and moves on. Each answer carries an identity made
before it is sent (``answer_id``): when the store cannot say whether it kept it
(:class:`~inv_widgets.labels.store.errors.AnswerOutcomeUnknown`), the next try on that map sends the same
answer again, which the store keeps once. The queue is
pure Python over a pool and a :class:`~inv_widgets.labels.protocols.GameStore`: no widget, and every rule
comes from :mod:`inv_widgets.labels.rules`. Refused actions raise :class:`Refusal` (a message for the player);
labels that break a rule raise :class:`~inv_widgets.labels.rules.RuleError`; a store that could not
save raises :class:`NotSaved` (a guess that was not saved is not shown: nothing was stored, guess again;
labels that were not saved stay pending).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..engine.keys import MapKey
from ..engine.maps import REVEAL_PERCENTS
from . import rules
from .pool import Pool, PoolItem
from .protocols import GameStore, missing_methods
from .store.errors import AnswerOutcomeUnknown, StoreBusyError

__all__ = [
    "ParticipantQueue",
    "PendingAnswer",
    "Progress",
    "Refusal",
    "NotSaved",
    "read_progress",
    "read_leaderboard",
    "least_labelled",
    "sign_in",
    "check_store",
    "RECENT_ROWS",
    "LEADERBOARD_ROWS",
]

RECENT_ROWS = 5
LEADERBOARD_ROWS = 10


class Refusal(Exception):
    """An action that is not possible now (nothing changed); ``str(exc)`` is for the player, ``kind`` is
    ``"info"`` or ``"error"``."""

    def __init__(self, message: str, kind: str = "info"):
        super().__init__(message)
        self.kind = kind


class NotSaved(Exception):
    """The store did not take the answer (``error`` says why); nothing was stored and the answer waits."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


@dataclass
class PendingAnswer:
    """A guess (or a resignation), saved in the store, waiting for its labels."""

    item: PoolItem
    guessed: int | None  # class index, None for a resignation
    outcome: str  # "win", "lose" or "resign"
    step: int
    started_at: datetime
    answered_at: datetime
    labels: list[str] = field(default_factory=list)  # the last labels tried (kept on errors)
    answer_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # made before it is sent
    game_id: int | None = None  # the stored game, once saved


@dataclass(frozen=True)
class Progress:
    """One participant's standing, read from the store."""

    points: int = 0
    streak: int = 0
    best_streak: int = 0
    answered: int = 0  # maps of the pool this player has answered
    recent: tuple = ()  # the last answers, newest first: dicts of true_class, outcome, points, labels
    done: frozenset = frozenset()  # every map this player has answered


def check_store(store: Any) -> GameStore:
    """``store`` when it has what the game needs (:class:`GameStore`), else a TypeError naming what is missing."""
    if not isinstance(store, GameStore):
        missing = ", ".join(f"{m}()" for m in missing_methods(store, GameStore))
        raise TypeError(f"store must be a LabelStore (it has no {missing} method), got {type(store).__name__}")
    return store


def least_labelled(store: GameStore, items: list[PoolItem], counts: dict[MapKey, int] | None = None) -> list[PoolItem]:
    """``items`` with the fewest labels in the store first, ties in pool order. ``counts`` (when given) is
    updated with what the store says now, and used as it is when the store is busy."""
    counts = {} if counts is None else counts
    try:
        counts.update(store.label_counts([it.key for it in items]))
    except StoreBusyError:
        pass  # use the counts read last time
    return sorted(items, key=lambda it: (counts.get(it.key, 0), it.order))


def read_progress(store: GameStore, participant: str, pool_keys: Iterable[MapKey] | None = None) -> Progress:
    """Points, streaks, answered maps and the last answers of ``participant``."""
    games = store.games(participant)
    if not len(games):
        return Progress()
    done = frozenset(MapKey.from_row(r) for r in games.to_dict("records"))
    streak, best = rules.streaks(games["outcome"])
    last = games.tail(RECENT_ROWS)
    wanted = {int(g) for g in last["game_id"]}
    texts: dict[int, list[str]] = {}
    labels = store.labels(participant)
    for gid, text in zip(labels["game_id"], labels["text"]):
        if int(gid) in wanted:
            texts.setdefault(int(gid), []).append(str(text))
    recent = tuple(
        {
            "true_class": str(r["true_class"]),
            "outcome": str(r["outcome"]),
            "points": int(r["points"]),
            "labels": texts.get(int(r["game_id"]), []),
        }
        for r in reversed(last.to_dict("records"))
    )
    pool = set(pool_keys) if pool_keys is not None else set()
    return Progress(int(games["points"].sum()), streak, best, len(done & pool), recent, done)


def read_leaderboard(store: GameStore, participant: str = "", rows: int = LEADERBOARD_ROWS) -> list[dict]:
    """The first ``rows`` of the leaderboard, plus ``participant``'s row wherever it is (``me`` marks it)."""
    out = []
    for rank, r in enumerate(store.leaderboard().to_dict("records"), 1):
        if rank <= rows or r["participant"] == participant:
            out.append(
                {
                    "rank": rank,
                    "participant": str(r["participant"]),
                    "games": int(r["games"]),
                    "wins": int(r["wins"]),
                    "points": int(r["points"]),
                    "best_streak": int(r["best_streak"]),
                    "me": r["participant"] == participant,
                }
            )
    return out


def sign_in(store: GameStore, name: Any) -> tuple[str, bool]:
    """Check ``name`` (:func:`rules.check_name`), sign it up; ``(name, known)`` where known means the
    player had signed up before."""
    name = rules.check_name(name)
    known = name in set(store.participants()["participant"])
    store.add_participant(name)
    return name, known


def _weight(item: PoolItem) -> float | None:
    """The map's weight as the store keeps it (percent), or None when the pool has none that fits."""
    try:
        w = float(item.weight)
    except (TypeError, ValueError):
        return None
    return w if 0.0 <= w <= 100.0 else None  # NaN fails both


class ParticipantQueue:
    """Next map, answer, undo and progress of one participant; see the module docstring.

    Parameters
    ----------
    pool : Pool
    store : GameStore (a LabelStore)
    participant : str
        The player's name (checked with :func:`rules.check_name`).
    classes : sequence of str
        Class names by index: a guess is an index, stored as its name.
    """

    def __init__(self, pool: Pool, store: GameStore, participant: str, classes: Sequence[str]):
        self.pool = pool
        self.store = check_store(store)
        self.participant = rules.check_name(participant)
        self.classes = [str(c) for c in classes]
        self.current: PoolItem | None = None
        self.step = 0
        self.started_at: datetime | None = None
        self.pending: PendingAnswer | None = None
        self.done: set[MapKey] = set()  # maps this player has answered (from the store)
        self.pinned: list[PoolItem] = []  # maps to serve next, before the queue order (after an undo)
        self.history: list[tuple[int, PendingAnswer]] = []  # (game id, answer) saved here, for undo
        self.dropped: set[MapKey] = set()  # maps that could not be shown
        self.unsure: PendingAnswer | None = None  # an answer the store may or may not have kept (sent again)
        self._counts: dict[MapKey, int] = {}

    # -- the order ----------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Maps in the pool (less those that could not be shown)."""
        return len(self.pool) - len(self.dropped)

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` can bring the last answer back (there is one, and none is being sent)."""
        return bool(self.history) and self.pending is None

    def remaining(self) -> list[PoolItem]:
        """Maps left to this player, not counting the current and the pinned ones, in pool order."""
        skip = set(self.done) | self.dropped | {it.key for it in self.pinned}
        if self.current is not None:
            skip.add(self.current.key)
        return [it for it in self.pool if it.key not in skip]

    def ordered(self, items: list[PoolItem]) -> list[PoolItem]:
        """``items`` least-labelled first (counts read from the store now; the last ones when it is busy)."""
        return least_labelled(self.store, items, self._counts)

    def upcoming(self) -> list[PoolItem]:
        """The maps left, in the order they come: the current one first, the pinned ones, then the rest."""
        head = ([self.current] if self.current is not None else []) + list(self.pinned)
        return head + self.ordered(self.remaining())

    def _sync_done(self) -> None:
        """Add the maps this player answered elsewhere (another tab) to :attr:`done`."""
        try:
            games = self.store.games(self.participant)
        except StoreBusyError:
            return
        if len(games):
            self.done |= {MapKey.from_row(r) for r in games.to_dict("records")}
        self.pinned = [it for it in self.pinned if it.key not in self.done]

    def next(self) -> PoolItem | None:
        """Start the next map (an undone one first, else the least-labelled one this player has not answered,
        here or in another window); None when done."""
        self.pending = None
        self.current = None
        self._sync_done()
        if self.pinned:
            item = self.pinned.pop(0)
        else:
            left = self.ordered(self.remaining())
            item = left[0] if left else None
        self.current = item
        self.step = 0
        self.started_at = rules.now() if item is not None else None
        return item

    def drop(self, item: PoolItem) -> None:
        """Leave out a map that cannot be shown (it is not counted in :attr:`total` any more)."""
        self.dropped.add(item.key)
        if self.current is item:
            self.current = None

    # -- playing ------------------------------------------------------------------------------------

    def _playing(self) -> PoolItem:
        if self.current is None or self.pending is not None:
            raise Refusal("There is no map to play now.")
        return self.current

    def more(self) -> int:
        """Reveal the next step; returns it (:class:`Refusal` at the last step)."""
        self._playing()
        if self.step >= rules.MAX_STEP:
            raise Refusal(f"That is all there is: {REVEAL_PERCENTS[-1]:g} % of the pixels. Guess, or give up.")
        self.step += 1
        return self.step

    def _answered_elsewhere(self, item: PoolItem) -> None:
        """:class:`~inv_widgets.labels.rules.AlreadyAnswered` when the store has this player's answer for
        ``item`` already (given in another window); the map is then done here too."""
        has = getattr(self.store, "has_answered", None)
        try:
            answered = bool(has(self.participant, item.key)) if callable(has) else False
        except StoreBusyError:
            return  # the transaction of submit() checks again
        if answered:
            self._gone(item)
            raise rules.AlreadyAnswered(self.participant, item.key)

    def _gone(self, item: PoolItem) -> None:
        self.done.add(item.key)
        if self.current is item:
            self.current = None
        self.pending = None

    def guess(self, cls: int | str) -> PendingAnswer:
        """Guess class ``cls`` (index or name) for the current map. The answer is stored before this returns
        (its labels follow with :meth:`submit`), so the class may be shown. :class:`NotSaved` when the store
        did not take it (nothing is shown; guess again). :class:`~inv_widgets.labels.rules.AlreadyAnswered`
        when this player answered the map in another window meanwhile (the map is then done: call
        :meth:`next`)."""
        item = self._playing()
        if isinstance(cls, str) and cls in self.classes:
            cls = self.classes.index(cls)
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < len(self.classes):
            raise Refusal(f"There is no class {cls!r} to guess; pick one of the {len(self.classes)} buttons.", "error")
        if self.unsure is not None and self.unsure.item is item:
            return self._save(self.unsure)  # the answer the store may have kept already: the same, again
        self._answered_elsewhere(item)
        return self._save(
            PendingAnswer(
                item, cls, rules.outcome_of(cls, item.target), self.step, self.started_at or rules.now(), rules.now()
            )
        )

    def resign(self) -> PendingAnswer:
        """Give up on the current map (counted at the last step, as in the paper); stored before this returns,
        as :meth:`guess` is."""
        item = self._playing()
        if self.unsure is not None and self.unsure.item is item:
            return self._save(self.unsure)
        self._answered_elsewhere(item)
        return self._save(
            PendingAnswer(item, None, "resign", rules.MAX_STEP, self.started_at or rules.now(), rules.now())
        )

    def _save(self, answer: PendingAnswer) -> PendingAnswer:
        """Store ``answer`` with its labels to follow (once per map and player; once per ``answer_id``)."""
        item = answer.item
        guessed = None if answer.guessed is None else self.classes[answer.guessed]
        try:
            game_id = self.store.record_answer(
                self.participant,
                item.key,
                guessed,
                self.classes[item.target],
                answer.outcome,
                answer.step,
                (),
                started_at=answer.started_at,
                answered_at=answer.answered_at,
                once=True,
                answer_id=answer.answer_id,
                weight=_weight(item),
                labels_pending=True,
            )
        except rules.AlreadyAnswered:
            self.unsure = None
            self._gone(item)
            raise
        except AnswerOutcomeUnknown as exc:
            self.unsure = answer  # kept or not: the next try sends this answer again, which is stored once
            raise NotSaved(exc) from exc
        except Exception as exc:
            raise NotSaved(exc) from exc
        self.unsure = None
        answer.game_id = int(game_id)
        self.pending = answer
        self.done.add(item.key)
        if answer.outcome == "resign":
            self.step = rules.MAX_STEP
        return answer

    def submit(self, boxes: Any = ()) -> int:
        """Save the labels typed in ``boxes`` (empty boxes are left out) for the pending answer, which is
        stored already; returns the game id. :class:`~inv_widgets.labels.rules.RuleError` for labels that
        break a rule, :class:`NotSaved` when the store refused; in both cases the labels wait (submitting
        them again is safe: they replace the game's labels). A :class:`Refusal` when the answer is no longer in
        the store (taken back elsewhere)."""
        answer = self.pending
        if answer is None:
            raise Refusal("There is no answer to save: guess first.")
        if not isinstance(boxes, str):
            try:
                answer.labels = [x for x in boxes if isinstance(x, str)]
            except TypeError:
                pass
        labels = rules.labels_from_boxes(boxes, answer.outcome)
        item = answer.item
        try:
            game_id = self.store.set_labels(self.participant, answer.game_id, labels)
        except KeyError:
            self._gone(item)
            raise Refusal("That answer is no longer in the store (it was taken back elsewhere).", "error") from None
        except Exception as exc:
            raise NotSaved(exc) from exc
        answer.labels = list(labels)
        self.history.append((int(game_id), answer))
        self.done.add(item.key)
        self.current = None
        self.pending = None
        return int(game_id)

    def undo(self) -> PendingAnswer:
        """Bring back this player's last answer saved here, to fix its labels: the answer itself stays in the
        store (its class has been shown), the labels come back to be submitted again (they replace the stored
        ones), and the map that was current comes right after it."""
        if not self.history:
            raise Refusal("Nothing to undo.")
        if self.pending is not None:
            raise Refusal("Save or skip the answer on screen first; then you can undo the one before.")
        game_id, answer = self.history[-1]
        games = self.store.games(self.participant)
        last = int(games["game_id"].iloc[-1]) if len(games) else None
        if last is None or game_id not in set(int(g) for g in games["game_id"]):
            self.history.pop()
            raise Refusal("That answer is no longer in the store.", "error")
        if last != game_id:
            self.history.clear()
            raise Refusal("Your last answer was saved from another window; undo it there.", "error")
        self.history.pop()
        if self.current is not None:
            self.pinned.insert(0, self.current)
        self.current = answer.item
        self.started_at = answer.started_at
        self.step = answer.step
        self.pending = answer
        return answer

    # -- standing -----------------------------------------------------------------------------------

    def load(self) -> Progress:
        """Read this player's standing from the store (and which maps they answered)."""
        progress = read_progress(self.store, self.participant, (k for k in self.pool.keys if k not in self.dropped))
        self.done = set(progress.done)
        return progress

    def leaderboard(self, rows: int = LEADERBOARD_ROWS) -> list[dict]:
        """The first ``rows`` of the leaderboard, plus this participant's row wherever it is (``me`` marks it)."""
        return read_leaderboard(self.store, self.participant, rows)
