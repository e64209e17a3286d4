"""Deep Reveal in the notebook: the labelling game of INV as one widget.

    import inv_widgets as inv
    model, data = inv.demo.load()
    store = inv.LabelStore("labels.sqlite")              # one file shared by every player
    inv.LabelingGame(inv.Session(model, data), store)    # asks each player for a name

A player sees only the most salient pixels of one cluster map (the top 2, 4.5, 8, 13, 20 or 30 %),
guesses the class with a button (or a digit key), may ask to see more (space) or give up, and then,
with the whole image and the cluster map in view, types one to three features that gave the class
away. Every answer goes to the :class:`~inv_widgets.labels.LabelStore` in one transaction.

The kernel owns the state. The browser (``static/game.js``) sends actions as custom messages
(``{"type": "guess", "class": 2}``, ``"more"``, ``"resign"``, ``"submit"``, ``"skip"``, ``"undo"``,
``"refresh"``, ``"name"``) that call the methods of the same names, so the whole game can be played
from Python (and is tested that way). Images travel as PNG bytes in binary buffers.

Fair play: before the guess, no synced trait holds the true class (its name, its index, the cluster
map overlay or the unmasked image); the masked image is the only view of the map.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import anywidget
import traitlets as t

from .. import render
from ..engine.cluster import RECIPES
from ..engine.maps import REVEAL_PERCENTS
from ..labels import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    LabelStore,
    MapKey,
    StoreBusyError,
    points_for,
)

__all__ = ["LabelingGame"]

log = logging.getLogger("inv_widgets.game")

from ._common import STATIC, esm, readable as _readable
MAX_STEP = len(REVEAL_PERCENTS) - 1
LEADERBOARD_ROWS = 10
RECENT_ROWS = 5
TARGETS = ("label", "predicted")


@dataclass(frozen=True)
class _Item:
    """One cluster map in the pool."""

    image: int  # index in the session
    target: int  # class the map explains (the answer of the game)
    layer: str
    rank: int  # position in its cut (0 = heaviest)
    key: MapKey
    weight: float  # percent of the layer
    order: tuple  # deterministic tie-break among maps with as many labels


@dataclass
class _Answer:
    """A guess (or a resignation) waiting for its labels."""

    item: _Item
    guessed: int | None  # class index, None for a resignation
    outcome: str  # "win", "lose" or "resign"
    step: int
    started_at: datetime
    answered_at: datetime
    labels: list[str] = field(default_factory=list)  # the last labels tried (kept on errors)


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LabelingGame(anywidget.AnyWidget):
    """The Deep Reveal game: guess the class from a few pixels, then say what gave it away.

    Parameters
    ----------
    session : Session
        The model and images. The class names are the guess buttons (the first ten get the keys 1-9, 0).
    store : LabelStore or path
        Where answers go; give every player the same store (a file) so that the queue, the counts and
        the leaderboard are shared.
    participant : str, optional
        The player's name (1..64 characters). When None, the widget asks for it first.
    images : sequence of int, optional
        Session indices of the images to play (default: every image of the session).
    layers : sequence of str, optional
        Layers whose cluster maps are played (default: every layer of the session).
    recipe : {"fast", "paper"}, optional
        Clustering recipe (default: the session's).
    k : int, optional
        Cut every layer into ``k`` clusters (default: the suggested cut).
    target : {"label", "predicted"}
        The class each image's maps explain, which is the right answer of the game: ``"label"`` uses the
        dataset's ground truth where it has one (else the prediction); ``"predicted"`` always uses the
        model's prediction.

    The pool of cluster maps is built when the widget is first shown (or on the first action), with a
    progress bar: every image is explained once. The next map is always the one with the fewest labels
    in the store, among those this player has not answered yet; ties go to the heaviest map of its
    cut, then to the deepest layer, then to the image order, so that consecutive maps come from
    different images.
    """

    _esm = esm("game.js")
    _css = STATIC / "game.css"

    # screens: "name" (who are you), "loading" (building the pool), "play", "answer", "done"
    phase = t.Unicode("loading").tag(sync=True)
    participant = t.Unicode("").tag(sync=True)
    classes = t.List(t.Unicode()).tag(sync=True)
    # the map being played: a bump of `round` means a new map
    round = t.Int(0).tag(sync=True)
    masked = t.Bytes(b"").tag(sync=True)  # PNG: the Deep Reveal image at `step`
    step = t.Int(0).tag(sync=True)
    percents = t.List(t.Float()).tag(sync=True)
    potential = t.Int(0).tag(sync=True)  # points a right guess earns now
    map_info = t.Unicode("").tag(sync=True)
    # after the guess only (empty before)
    outcome = t.Unicode("").tag(sync=True)
    guessed = t.Int(-1).tag(sync=True)
    true_class = t.Unicode("").tag(sync=True)
    true_index = t.Int(-1).tag(sync=True)
    overlay = t.Bytes(b"").tag(sync=True)  # PNG: the whole image with the cluster map
    earned = t.Int(0).tag(sync=True)
    draft = t.List(t.Unicode()).tag(sync=True)  # labels to put back in the boxes (after undo)
    draft_revision = t.Int(0).tag(sync=True)
    # score and progress
    points = t.Int(0).tag(sync=True)
    streak = t.Int(0).tag(sync=True)
    best_streak = t.Int(0).tag(sync=True)
    answered = t.Int(0).tag(sync=True)  # maps of the pool this player has answered
    total = t.Int(0).tag(sync=True)  # maps in the pool
    loading = t.Float(0.0).tag(sync=True)  # 0..1 while the pool is built
    leaderboard = t.List(t.Dict()).tag(sync=True)
    recent = t.List(t.Dict()).tag(sync=True)  # this player's last answers: class, outcome, labels as typed
    can_undo = t.Bool(False).tag(sync=True)
    # feedback: kind is "error", "info" or "success"
    message = t.Unicode("").tag(sync=True)
    message_kind = t.Unicode("").tag(sync=True)
    message_revision = t.Int(0).tag(sync=True)
    # limits the browser shows
    max_labels = t.Int(MAX_LABELS).tag(sync=True)
    max_label_chars = t.Int(MAX_LABEL_CHARS).tag(sync=True)
    max_name_chars = t.Int(MAX_NAME_CHARS).tag(sync=True)

    def __init__(self, session, store, participant: str | None = None, images: Iterable[int] | None = None,
                 layers: Sequence[str] | None = None, recipe: str | None = None, k: int | None = None, *,
                 target: str = "label", **kwargs):
        if not (hasattr(session, "explain") and hasattr(session, "classes") and hasattr(session, "layers")):
            raise TypeError(f"session must be an inv_widgets.Session, got {type(session).__name__}; "
                            "build one with inv.Session(model, data)")
        if isinstance(store, (str, os.PathLike)):
            store = LabelStore(store)
        for method in ("record_answer", "undo_last", "label_counts", "leaderboard", "games"):
            if not callable(getattr(store, method, None)):
                raise TypeError(f"store must be a LabelStore (it has no {method}() method), got {type(store).__name__}")
        recipe = recipe or session.recipe
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int (clusters per layer) or None for the suggested cut; got {k!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
        n = len(session)
        if images is None:
            images = range(n)
        image_list = []
        for i in images:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"images must be session indices (int), got {i!r}")
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"image index {i} out of range: the session has {n} images")
            if i % n not in image_list:
                image_list.append(i % n)
        if not image_list:
            raise ValueError("no images to play: the session is empty (or images=[] was given)")
        all_layers = list(session.layers)
        if layers is None:
            layers = all_layers
        elif isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        unknown = [name for name in layers if name not in all_layers]
        if unknown:
            raise ValueError(f"unknown layers {unknown}; the session's layers are {all_layers}")
        if not layers:
            raise ValueError("layers is empty: give at least one layer name")
        classes = [str(c) for c in session.classes]
        if len(classes) < 2:
            raise ValueError(f"the game needs at least two classes to guess from; the session has {classes}")
        name = None
        if participant is not None:
            name = self._check_name(participant)
            if isinstance(name, Exception):
                raise name
        super().__init__(classes=classes, percents=[float(p) for p in REVEAL_PERCENTS], **kwargs)
        self.session = session
        self.store = store
        self.images = image_list
        self.layers = [name_ for name_ in all_layers if name_ in layers]  # forward order
        self.recipe = recipe
        self.k = k
        self.target_mode = target
        self._items: list[_Item] | None = None
        self._done: set[MapKey] = set()  # maps this player has answered (from the store)
        self._current: _Item | None = None
        self._started_at: datetime | None = None
        self._pending: _Answer | None = None
        self._pinned: list[_Item] = []  # maps to serve next, before the queue order (after an undo)
        self._history: list[tuple[int, _Answer]] = []  # (game id, answer) recorded here, for undo
        self._counts: dict[MapKey, int] = {}
        self._cut_cache: dict = {}
        self.on_msg(self._on_msg)
        if name is not None:
            self.participant = name
        self.phase = "loading" if name is not None else "name"

    # ---- messages from the browser ------------------------------------------------------------
    def _on_msg(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        rnd = content.get("round")
        if rnd is not None and kind in ("guess", "more", "resign", "submit", "skip") and rnd != self.round:
            return  # a stale click or key (double press) for a map that is gone
        try:
            if kind == "ready":
                self.start()
            elif kind == "name":
                self.join(content.get("name", ""))
            elif kind == "guess":
                self.guess(content.get("class"))
            elif kind == "more":
                self.more()
            elif kind == "resign":
                self.resign()
            elif kind == "submit":
                self.submit(content.get("labels") or [])
            elif kind == "skip":
                self.skip()
            elif kind == "undo":
                self.undo()
            elif kind == "refresh":
                self.refresh()
            elif kind == "dismiss":
                self._say("")
        except Exception as exc:  # never let a click kill the widget: show it instead
            log.exception("LabelingGame: %s failed", kind)
            self._say(_readable(exc, f"do {kind!r}"), "error")

    # ---- feedback -----------------------------------------------------------------------------
    def _say(self, text: str, kind: str = "info") -> None:
        with self.hold_sync():
            self.message = text
            self.message_kind = kind if text else ""
            self.message_revision += 1

    @staticmethod
    def _check_name(name: Any) -> str | ValueError:
        if not isinstance(name, str):
            return ValueError(f"the participant name must be text, got {type(name).__name__}")
        name = name.strip()
        if not name:
            return ValueError("Please type your name (it cannot be empty).")
        if len(name) > MAX_NAME_CHARS:
            return ValueError(f"Your name is {len(name)} characters long; names have at most "
                              f"{MAX_NAME_CHARS} characters.")
        if "\x00" in name:
            return ValueError("Your name contains a NUL character; please remove it.")
        return name

    # ---- the pool -----------------------------------------------------------------------------
    def _target_for(self, i: int) -> int | None:
        if self.target_mode == "label":
            y = self.session.label(i)
            if y is not None and 0 <= int(y) < len(self.classes):
                return int(y)
        return None  # the predicted class

    def prepare(self) -> None:
        """Explain every image and list its cluster maps (once; the progress shows in the widget)."""
        if self._items is not None:
            return
        groups: dict[int | None, list[int]] = {}
        for i in self.images:
            groups.setdefault(self._target_for(i), []).append(i)
        position = {i: p for p, i in enumerate(self.images)}
        depth = {name: d for d, name in enumerate(self.layers)}
        items: list[_Item] = []
        done = 0
        self.loading = 0.001
        for target, idxs in sorted(groups.items(), key=lambda kv: position[kv[1][0]]):
            for s in range(0, len(idxs), 16):
                chunk = idxs[s:s + 16]
                exps = self.session.explain_many(chunk, target=target, recipe=self.recipe, lazy=True)
                for i, exp in zip(chunk, exps):
                    for layer in self.layers:
                        cl = exp.layer(layer, self.recipe).cut(k=self.k)
                        for j in range(cl.k):
                            key = cl.key(j)
                            order = (j, len(self.layers) - depth[layer], position[i])
                            items.append(_Item(i, int(exp.target), layer, j, key, float(cl.weights[j]), order))
                done += len(chunk)
                self.loading = done / len(self.images)
        items.sort(key=lambda it: it.order)
        self._items = items
        self.total = len(items)
        self.loading = 1.0

    @property
    def pool(self) -> list[MapKey]:
        """Every cluster map of the game, in tie-break order (builds the pool when needed)."""
        self.prepare()
        return [it.key for it in self._items]

    def _remaining(self) -> list[_Item]:
        current = self._current.key if self._current is not None else None
        pinned = {it.key for it in self._pinned}
        return [it for it in self._items if it.key not in self._done and it.key != current and it.key not in pinned]

    def _order(self, items: list[_Item]) -> list[_Item]:
        try:
            self._counts.update(self.store.label_counts([it.key for it in items]))
        except StoreBusyError:
            pass  # use the counts read last time
        return sorted(items, key=lambda it: (self._counts.get(it.key, 0), it.order))

    @property
    def queue(self) -> list[MapKey]:
        """The maps left to this player, in the order they come: the current one first, then the
        least-labelled (the counts are read from the store now)."""
        self.prepare()
        head = ([self._current] if self._current is not None else []) + list(self._pinned)
        return [it.key for it in head + self._order(self._remaining())]

    @property
    def current(self) -> MapKey | None:
        """The map on screen (None before the game starts and after the last one)."""
        return self._current.key if self._current is not None else None

    def _read_progress(self) -> None:
        """This player's answered maps, points and streaks, from the store."""
        if not self.participant:
            return
        games = self.store.games(self.participant)
        self._done = {MapKey.from_row(r) for r in games.to_dict("records")} if len(games) else set()
        outcomes = list(games["outcome"]) if len(games) else []
        streak = best = run = 0
        for o in outcomes:
            run = run + 1 if o == "win" else 0
            best = max(best, run)
        streak = run
        pool = {it.key for it in self._items} if self._items is not None else set()
        recent = []
        if len(games):
            last = games.tail(RECENT_ROWS)
            texts: dict[int, list[str]] = {}
            wanted = {int(g) for g in last["game_id"]}
            labels = self.store.labels(self.participant)
            for gid, text in zip(labels["game_id"], labels["text"]):
                if int(gid) in wanted:
                    texts.setdefault(int(gid), []).append(str(text))
            for r in reversed(last.to_dict("records")):
                recent.append({"true_class": str(r["true_class"]), "outcome": str(r["outcome"]),
                               "points": int(r["points"]), "labels": texts.get(int(r["game_id"]), [])})
        with self.hold_sync():
            self.recent = recent
            self.points = int(games["points"].sum()) if len(games) else 0
            self.streak = streak
            self.best_streak = best
            self.answered = len(self._done & pool)

    def _read_leaderboard(self) -> None:
        board = self.store.leaderboard()
        rows = []
        for rank, r in enumerate(board.to_dict("records"), 1):
            if rank <= LEADERBOARD_ROWS or r["participant"] == self.participant:
                rows.append({"rank": rank, "participant": str(r["participant"]), "games": int(r["games"]),
                             "wins": int(r["wins"]), "points": int(r["points"]),
                             "best_streak": int(r["best_streak"]), "me": r["participant"] == self.participant})
        self.leaderboard = rows

    # ---- screens ------------------------------------------------------------------------------
    def start(self) -> None:
        """Build the pool (if needed) and show the first map; does nothing before a name is given."""
        if not self.participant:
            self.phase = "name"
            try:
                self._read_leaderboard()
            except StoreBusyError as exc:
                self._say(_readable(exc, "reading the leaderboard"), "error")
            return
        if self.phase in ("play", "answer"):
            return
        self.phase = "loading"
        self.prepare()
        try:
            self._read_progress()
        except StoreBusyError as exc:
            self._say(_readable(exc, "reading your answers"), "error")
        self.refresh(quiet=True)
        self._next()

    def join(self, name: str) -> bool:
        """Set the player's name (the first screen when ``participant=None``) and start."""
        if self.participant:
            self._say(f"You are playing as {self.participant}.", "info")
            return False
        checked = self._check_name(name)
        if isinstance(checked, Exception):
            self._say(str(checked), "error")
            return False
        try:
            known = checked in set(self.store.participants()["participant"]) if hasattr(self.store, "participants") else False
            if hasattr(self.store, "add_participant"):
                self.store.add_participant(checked)
        except StoreBusyError as exc:
            self._say(_readable(exc, "signing in"), "error")
            return False
        except ValueError as exc:
            self._say(str(exc), "error")
            return False
        self.participant = checked
        self._say(f"Welcome back, {checked}! Your earlier answers and points count." if known
                  else f"Welcome, {checked}! Guess early for more points.", "success")
        self.phase = "loading"
        self.start()
        return True

    def _clusters(self, item: _Item):
        exp = self.session.explain(item.image, target=item.target, recipe=self.recipe, lazy=True)
        cl = exp.layer(item.layer, self.recipe).cut(k=self.k)
        for j in range(cl.k):
            if cl.key(j) == item.key:
                return cl, j
        raise RuntimeError(f"cluster map {item.key} is no longer in its cut (did the session change?)")

    def _masked_png(self, item: _Item, step: int) -> bytes:
        cl, j = self._clusters(item)
        return render.to_png(cl.reveal(j, step))

    def _next(self) -> None:
        """Show the next map: an undone one first, else the least-labelled one left."""
        self._pending = None
        while True:
            if self._pinned:
                item = self._pinned.pop(0)
            else:
                left = self._order(self._remaining())
                item = left[0] if left else None
            if item is None:
                self._current = None
                with self.hold_sync():
                    self._clear_answer()
                    self.masked = b""
                    self.map_info = ""
                    self.round += 1
                    self.phase = "done"
                    self.can_undo = bool(self._history)
                return
            try:
                png = self._masked_png(item, 0)
            except Exception as exc:  # a map that cannot be drawn is skipped, not fatal
                log.exception("LabelingGame: cannot show %s", item.key)
                self._say(_readable(exc, "show a map (skipped)"), "error")
                self._items = [it for it in self._items if it.key != item.key]
                self.total = len(self._items)
                continue
            break
        self._current = item
        self._started_at = _now()
        depth = self.layers.index(item.layer) + 1
        with self.hold_sync():
            self._clear_answer()
            self.step = 0
            self.potential = points_for("win", 0)
            self.masked = png
            self.map_info = f"Layer {depth} of {len(self.layers)} · cluster map {item.rank + 1} · w = {item.weight:.0f} %"
            self.round += 1
            self.phase = "play"
            self.can_undo = bool(self._history)

    def _clear_answer(self) -> None:
        self.outcome = ""
        self.guessed = -1
        self.true_class = ""
        self.true_index = -1
        self.overlay = b""
        self.earned = 0

    def _ready_to_play(self, action: str) -> bool:
        if self.phase == "play" and self._current is not None:
            return True
        if self.phase in ("name", "loading") and self.participant and self._items is None:
            self.start()
            if self.phase == "play":
                return True
        if self.phase == "name":
            self._say("Type your name first.", "error")
        elif self.phase == "answer":
            self._say("Describe what gave it away (or skip after giving up), then the next map comes.", "info")
        return False

    # ---- playing ------------------------------------------------------------------------------
    def more(self) -> bool:
        """Reveal more of the map (the next of the six steps); False at the last step."""
        if not self._ready_to_play("more"):
            return False
        if self.step >= MAX_STEP:
            self._say(f"That is all there is: {REVEAL_PERCENTS[-1]:g} % of the pixels. Guess, or give up.", "info")
            return False
        step = self.step + 1
        png = self._masked_png(self._current, step)
        with self.hold_sync():
            self.masked = png
            self.step = step
            self.potential = points_for("win", step)
            self._say("")
        return True

    def guess(self, cls) -> bool:
        """Guess class ``cls`` (index or name) for the map on screen; shows win or lose."""
        if not self._ready_to_play("guess"):
            return False
        if isinstance(cls, str) and cls in self.classes:
            cls = self.classes.index(cls)
        if isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < len(self.classes):
            self._say(f"There is no class {cls!r} to guess; pick one of the {len(self.classes)} buttons.", "error")
            return False
        item = self._current
        outcome = "win" if cls == item.target else "lose"
        self._answer(_Answer(item, cls, outcome, self.step, self._started_at or _now(), _now()))
        return True

    def resign(self) -> bool:
        """Give up on the map on screen (counted at the last step, as in the paper)."""
        if not self._ready_to_play("resign"):
            return False
        self._answer(_Answer(self._current, None, "resign", MAX_STEP, self._started_at or _now(), _now()))
        return True

    def _answer(self, answer: _Answer) -> None:
        item = answer.item
        cl, j = self._clusters(item)
        exp = cl.layer.explanation
        over = render.to_png(render.overlay(exp.image, cl.maps[j], "jet", 0.5))
        masked = render.to_png(cl.reveal(j, answer.step))
        self._pending = answer
        with self.hold_sync():
            self.masked = masked
            self.step = answer.step
            self.overlay = over
            self.outcome = answer.outcome
            self.guessed = -1 if answer.guessed is None else answer.guessed
            self.true_index = item.target
            self.true_class = self.classes[item.target]
            self.earned = points_for(answer.outcome, answer.step)
            self.potential = 0
            self.draft = list(answer.labels)
            self.draft_revision += 1
            self.phase = "answer"
            self.can_undo = False
            self._say("")

    def _check_labels(self, labels) -> list[str] | None:
        if isinstance(labels, str):
            labels = [labels]
        try:
            labels = list(labels)
        except TypeError:
            self._say("Labels must be a list of texts.", "error")
            return None
        if not all(isinstance(x, str) for x in labels):
            self._say("Labels must be texts.", "error")
            return None
        boxes = labels
        labels = [x for x in boxes if x != ""]  # untouched boxes are not labels
        for n, text in enumerate(boxes, 1):
            if text != "" and not text.strip():
                self._say(f"Label {n} is blank: type a feature, or clear the box.", "error")
                return None
            if len(text) > MAX_LABEL_CHARS:
                self._say(f"Label {n} is {len(text)} characters long; the limit is {MAX_LABEL_CHARS} "
                          "characters. Please shorten it.", "error")
                return None
        if len(labels) > MAX_LABELS:
            self._say(f"At most {MAX_LABELS} labels, please (you gave {len(labels)}).", "error")
            return None
        if not labels and self._pending.outcome != "resign":
            self._say("Type at least one feature that gave it away (up to "
                      f"{MAX_LABELS}, each at most {MAX_LABEL_CHARS} characters).", "error")
            return None
        return labels

    def submit(self, labels: Sequence[str] = ()) -> bool:
        """Save the answer with its labels (1..3; 0..3 after giving up) and show the next map.

        Labels are kept exactly as typed. On a refusal (blank, too long) or a store error the answer
        stays on screen with the labels, and nothing is stored; fix it and submit again.
        """
        if self.phase != "answer" or self._pending is None:
            self._say("There is no answer to save: guess first.", "info")
            return False
        answer = self._pending
        if not isinstance(labels, str):
            try:
                answer.labels = [x for x in labels if isinstance(x, str)]
            except TypeError:
                pass
        checked = self._check_labels(labels)
        if checked is None:
            self._keep_draft(answer)
            return False
        item = answer.item
        guessed = None if answer.guessed is None else self.classes[answer.guessed]
        try:
            game_id = self.store.record_answer(
                self.participant, item.key, guessed, self.classes[item.target], answer.outcome, answer.step,
                checked, started_at=answer.started_at, answered_at=answer.answered_at)
        except (StoreBusyError, ValueError, TypeError, OSError, RuntimeError) as exc:
            log.warning("LabelingGame: could not save an answer: %s", exc)
            self._say(_readable(exc, "saving your answer") if isinstance(exc, StoreBusyError)
                      else f"Your answer was not saved: {exc}", "error")
            self._keep_draft(answer)
            return False
        except Exception as exc:  # e.g. sqlite3 errors: keep the answer, say what happened
            log.exception("LabelingGame: could not save an answer")
            self._say(_readable(exc, "save your answer") + " Your answer is kept: submit again.", "error")
            self._keep_draft(answer)
            return False
        answer.labels = list(checked)
        self._history.append((int(game_id), answer))
        self._done.add(item.key)
        self._current = None
        earned = points_for(answer.outcome, answer.step)
        try:
            self._read_progress()
        except StoreBusyError:
            with self.hold_sync():
                self.points += earned
                self.answered += 1
        self.refresh(quiet=True)
        if answer.outcome == "win":
            note = f"Saved: +{earned} points" + (f" · streak {self.streak}!" if self.streak > 1 else "")
        else:
            note = "Saved. Thanks for the labels!" if checked else "Skipped."
        self._say("")
        rev = self.message_revision
        self._next()
        if self.message_revision == rev:  # unless showing the next map went wrong
            self._say(note, "success")
        return True

    def skip(self) -> bool:
        """After giving up: save the resignation without labels and go on."""
        if self.phase != "answer" or self._pending is None or self._pending.outcome != "resign":
            self._say("Skipping is for maps you gave up on; describe what gave it away instead.", "info")
            return False
        return self.submit([])

    def _keep_draft(self, answer: _Answer) -> None:
        self.draft = list(answer.labels)
        self.draft_revision += 1

    def undo(self) -> bool:
        """Take back this player's last saved answer: it is removed from the store and comes back on
        screen (same guess, labels in the boxes) to be fixed and saved again."""
        if not self._history:
            self._say("Nothing to undo.", "info")
            return False
        if self.phase == "answer":
            self._say("Save or skip the answer on screen first; then you can undo the one before.", "info")
            return False
        game_id, answer = self._history[-1]
        try:
            games = self.store.games(self.participant)
            last = int(games["game_id"].iloc[-1]) if len(games) else None
            if last != game_id:
                self._history.clear()
                self.can_undo = False
                self._say("Your last answer was saved from another window; undo it there.", "error")
                return False
            if not self.store.undo_last(self.participant):
                self._history.pop()
                self.can_undo = bool(self._history)
                self._say("That answer is no longer in the store.", "error")
                return False
        except StoreBusyError as exc:
            self._say(_readable(exc, "undo"), "error")
            return False
        self._history.pop()
        self._done.discard(answer.item.key)
        if self._current is not None:
            self._pinned.insert(0, self._current)  # the map on screen comes right after
        self._current = answer.item
        self._started_at = answer.started_at
        try:
            self._read_progress()
        except StoreBusyError:
            pass
        self.refresh(quiet=True)
        with self.hold_sync():
            self.round += 1
            self._answer(answer)
        self._say("Undone: your answer was removed. Fix the labels and save it again.", "info")
        return True

    def refresh(self, quiet: bool = False) -> bool:
        """Read the leaderboard (and this player's score) again, e.g. to see other players' answers."""
        try:
            self._read_leaderboard()
            if not quiet:
                self._read_progress()
        except StoreBusyError as exc:
            self._say(_readable(exc, "refreshing the leaderboard"), "error")
            return False
        if not quiet:
            self._say("Leaderboard updated.", "info")
        return True
