"""Deep Reveal in the notebook: the labelling game of INV as one widget.

    import inv_widgets as inv
    model, data = inv.demo.load()
    store = inv.LabelStore("labels.sqlite")              # one file shared by every player
    inv.LabelingGame(inv.Session(model, data), store)    # asks each player for a name

A player sees only the most salient pixels of one cluster map (the top 2, 4.5, 8, 13, 20 or 30 %),
guesses the class with a button (or a digit key), may ask to see more (space) or give up, and then,
with the whole image and the cluster map in view, types one to three features that gave the class
away. The answer goes to the :class:`~inv_widgets.labels.LabelStore` when the class is shown (before it
is shown: a guess the store did not take shows nothing); its labels follow as an update.

The kernel owns the state. The browser (``static/game.js``) sends actions as custom messages
(``{"type": "guess", "class": 2}``, ``"more"``, ``"resign"``, ``"submit"``, ``"skip"``, ``"undo"``,
``"refresh"``, ``"name"``) that call the methods of the same names, so the whole game can be played
from Python (and is tested that way). Images travel as PNG bytes in binary buffers.

This module is the view: its traits and the message-to-method table. Which maps are played is
:class:`~inv_widgets.labels.pool.Pool`; what this player plays next, saving and undoing is
:class:`~inv_widgets.labels.queue.ParticipantQueue`; every rule (limits, points, names) is
:mod:`inv_widgets.labels.rules`.

Fair play: before the guess, no synced trait holds the true class (its name, its index, the cluster
map overlay or the unmasked image); the masked image is the only view of the map. A revealed class is an
answer: the guess (or the resignation) is saved before the class is shown, so one player in two browser tabs
cannot score a map twice, not even while the labels of the first tab are still being typed: the other tab
skips the map, says so and shows its next map.

A read-only store (a read-only file or folder, a database user who may only read) is said at once: the
game does not start, and an answer that meets a store turned read-only is not "kept to submit again".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

import anywidget
import traitlets as t

from .. import render
from ..engine.contrast import map_meaning
from ..engine.maps import REVEAL_PERCENTS
from ..engine.sources import is_map_source
from ..labels import rules
from ..labels.pool import Pool, PoolItem, PoolSpec
from ..labels.queue import (
    LEADERBOARD_ROWS,
    NotSaved,
    ParticipantQueue,
    PendingAnswer,
    Refusal,
    check_store,
    least_labelled,
    read_leaderboard,
    read_progress,
    sign_in,
)
from ..labels.rules import MAX_LABEL_CHARS, MAX_LABELS, MAX_NAME_CHARS, AlreadyAnswered, RuleError, points_for
from ..labels.store import LabelStore, MapKey, StoreBusyError, StoreReadOnlyError
from ._common import STATIC, esm
from ._common import readable as _readable

__all__ = ["LabelingGame"]

log = logging.getLogger("inv_widgets.game")

#: The message-to-method table: message type -> the method it calls (with what the message carries).
ACTIONS = {
    "ready": lambda game, msg: game.start(),
    "name": lambda game, msg: game.join(msg.get("name", "")),
    "guess": lambda game, msg: game.guess(msg.get("class")),
    "more": lambda game, msg: game.more(),
    "resign": lambda game, msg: game.resign(),
    "submit": lambda game, msg: game.submit(msg.get("labels") or []),
    "skip": lambda game, msg: game.skip(),
    "undo": lambda game, msg: game.undo(),
    "refresh": lambda game, msg: game.refresh(),
    "dismiss": lambda game, msg: game.dismiss(),
}
#: actions on the map on screen: ignored when they name another round (a stale click or double press)
ROUND_ACTIONS = ("guess", "more", "resign", "submit", "skip")

READ_ONLY_MESSAGE = (
    "This label store is read-only, so answers cannot be saved here and nothing you play "
    "would be kept. Please tell the person running the session."
)


class LabelingGame(anywidget.AnyWidget):
    """The Deep Reveal game: guess the class from a few pixels, then say what gave it away.

    Parameters
    ----------
    session : Session or Run
        The model and images. The class names are the guess buttons (the first ten get the keys 1-9, 0).
        Or a stored dataset run (``inv.Run``, made by :func:`inv_widgets.explain_dataset`): the game then plays
        the run's maps as they were stored, reading each from disk when it is shown, and no model runs; its
        recipe, cut and targets are the run's (``recipe``, ``k`` and ``target`` must be left out or agree).
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

    def __init__(
        self,
        session,
        store,
        participant: str | None = None,
        images: Iterable[int] | None = None,
        layers: Sequence[str] | None = None,
        recipe: str | None = None,
        k: int | None = None,
        *,
        target: str | None = None,
        **kwargs,
    ):
        if not is_map_source(session):
            raise TypeError(
                f"session must be an inv_widgets.Session, a stored run (inv.Run) or another MapSource, "
                f"got {type(session).__name__}; build one with inv.Session(model, data)"
            )
        if isinstance(store, (str, os.PathLike)):
            store = LabelStore(store)
        check_store(store)
        spec = PoolSpec.for_source(session, images, layers, recipe, k, target)
        classes = [str(c) for c in session.classes]
        if len(classes) < 2:
            raise ValueError(f"the game needs at least two classes to guess from; the session has {classes}")
        name = rules.check_name(participant) if participant is not None else None
        super().__init__(classes=classes, percents=[float(p) for p in REVEAL_PERCENTS], **kwargs)
        self.session = session  # where the maps come from: a Session, a stored Run, any MapSource
        self.store = store
        self.spec = spec
        self.images = list(spec.images)
        self.layers = list(spec.layers)  # forward order
        self.recipe = spec.recipe
        self.k = spec.k
        self.target_mode = spec.target
        self._pool: Pool | None = None
        self._queue: ParticipantQueue | None = None
        self.on_msg(self._on_msg)
        if name is not None:
            self.participant = name
        self.phase = "loading" if name is not None else "name"

    # ---- messages from the browser ------------------------------------------------------------
    def _on_msg(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict) or content.get("type") not in ACTIONS:
            return
        kind = content["type"]
        rnd = content.get("round")
        if rnd is not None and kind in ROUND_ACTIONS and rnd != self.round:
            return  # a stale click or key (double press) for a map that is gone
        try:
            ACTIONS[kind](self, content)
        except Exception as exc:  # never let a click kill the widget: show it instead
            log.exception("LabelingGame: %s failed", kind)
            self._say(_readable(exc, f"do {kind!r}"), "error")

    # ---- feedback -----------------------------------------------------------------------------
    def _say(self, text: str, kind: str = "info") -> None:
        with self.hold_sync():
            self.message = text
            self.message_kind = kind if text else ""
            self.message_revision += 1

    def dismiss(self) -> None:
        """Hide the message."""
        self._say("")

    # ---- the pool and the queue ---------------------------------------------------------------
    def prepare(self) -> None:
        """Explain every image and list its cluster maps (once; the progress shows in the widget). From a
        stored run: list its maps (no model runs)."""
        if self._pool is not None:
            return
        self.loading = 0.001
        self._pool = Pool.from_source(
            self.session, self.spec, progress=lambda done, total: setattr(self, "loading", max(done / total, 0.001))
        )
        self.total = len(self._pool)
        self.loading = 1.0

    @property
    def pool(self) -> list[MapKey]:
        """Every cluster map of the game, in tie-break order (builds the pool when needed)."""
        self.prepare()
        return [it.key for it in self._pool if self._queue is None or it.key not in self._queue.dropped]

    @property
    def queue(self) -> list[MapKey]:
        """The maps left to this player, in the order they come: the current one first, then the
        least-labelled (the counts are read from the store now)."""
        self.prepare()
        if self._queue is None:  # not started: every map, least-labelled first
            return [it.key for it in least_labelled(self.store, list(self._pool))]
        return [it.key for it in self._queue.upcoming()]

    @property
    def current(self) -> MapKey | None:
        """The map on screen (None before the game starts and after the last one)."""
        q = self._queue
        return q.current.key if q is not None and q.current is not None else None

    def _read_progress(self) -> None:
        """This player's answered maps, points and streaks, from the store."""
        if not self.participant:
            return
        p = self._queue.load() if self._queue is not None else read_progress(self.store, self.participant)
        with self.hold_sync():
            self.recent = list(p.recent)
            self.points, self.streak, self.best_streak, self.answered = p.points, p.streak, p.best_streak, p.answered

    def _read_leaderboard(self) -> None:
        self.leaderboard = read_leaderboard(self.store, self.participant, LEADERBOARD_ROWS)

    # ---- screens ------------------------------------------------------------------------------
    def _read_only(self) -> bool:
        """Say so and stop when the store cannot take answers (checked before anyone plays)."""
        if not getattr(self.store, "read_only", False):
            return False
        with self.hold_sync():
            self.phase = "name"
            self._say(READ_ONLY_MESSAGE, "error")
        return True

    def start(self) -> None:
        """Build the pool (if needed) and show the first map; does nothing before a name is given."""
        if self._read_only():
            try:
                self._read_leaderboard()
            except Exception:  # the message about the store matters more than the leaderboard
                pass
            return
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
        if self._queue is None:
            self._queue = ParticipantQueue(self._pool, self.store, self.participant, self.classes)
        try:
            self._read_progress()
        except StoreBusyError as exc:
            self._say(_readable(exc, "reading your answers"), "error")
        self.refresh(quiet=True)
        self._next()

    def join(self, name: str) -> bool:
        """Set the player's name (the first screen when ``participant=None``) and start."""
        if self._read_only():
            return False
        if self.participant:
            self._say(f"You are playing as {self.participant}.", "info")
            return False
        try:
            name, known = sign_in(self.store, name)
        except StoreReadOnlyError:
            self._say(READ_ONLY_MESSAGE, "error")
            return False
        except RuleError as exc:
            self._say(exc.for_player, "error")
            return False
        except StoreBusyError as exc:
            self._say(_readable(exc, "signing in"), "error")
            return False
        except (ValueError, TypeError) as exc:
            self._say(str(exc), "error")
            return False
        self.participant = name
        source = self.session if self.session is not None else self.run
        self._say(
            (
                f"Welcome back, {name}! Your earlier answers and points count."
                if known
                else f"Welcome, {name}! Guess early for more points."
            )
            + f" The pixels you see: {map_meaning(source.map_type)}",
            "success",
        )
        self.phase = "loading"
        self.start()
        return True

    def _masked_png(self, item: PoolItem, step: int) -> bytes:
        return render.to_png(self._pool.reveal(item, step))

    def _next(self) -> None:
        """Show the next map: an undone one first, else the least-labelled one left."""
        q = self._queue
        while True:
            item = q.next()
            if item is None:
                with self.hold_sync():
                    self._clear_answer()
                    self.masked = b""
                    self.map_info = ""
                    self.round += 1
                    self.phase = "done"
                    self.can_undo = q.can_undo
                return
            try:
                png = self._masked_png(item, 0)
            except Exception as exc:  # a map that cannot be drawn is skipped, not fatal
                log.exception("LabelingGame: cannot show %s", item.key)
                self._say(_readable(exc, "show a map (skipped)"), "error")
                q.drop(item)
                self.total = q.total
                continue
            break
        with self.hold_sync():
            self._clear_answer()
            self.step = 0
            self.potential = points_for("win", 0)
            self.masked = png
            self.map_info = (
                f"Layer {item.depth} of {len(self.layers)} · cluster map {item.rank + 1} · w = {item.weight:.0f} %"
            )
            self.round += 1
            self.phase = "play"
            self.can_undo = q.can_undo

    def _clear_answer(self) -> None:
        self.outcome = ""
        self.guessed = -1
        self.true_class = ""
        self.true_index = -1
        self.overlay = b""
        self.earned = 0

    def _ready_to_play(self, action: str) -> bool:
        if self.phase == "play" and self._queue is not None and self._queue.current is not None:
            return True
        if self.phase in ("name", "loading") and self.participant and self._queue is None:
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
        try:
            step = self._queue.more()
        except Refusal as exc:
            self._say(str(exc), exc.kind)
            return False
        png = self._masked_png(self._queue.current, step)
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
        try:
            answer = self._queue.guess(cls)
        except Refusal as exc:
            self._say(str(exc), exc.kind)
            return False
        except AlreadyAnswered as exc:
            self._answered_elsewhere(exc)
            return False
        except NotSaved as failure:
            self._not_saved(failure, "Your guess was not saved, so the answer is not shown yet: guess again.")
            return False
        self._answer(answer)
        return True

    def resign(self) -> bool:
        """Give up on the map on screen (counted at the last step, as in the paper)."""
        if not self._ready_to_play("resign"):
            return False
        try:
            answer = self._queue.resign()
        except AlreadyAnswered as exc:
            self._answered_elsewhere(exc)
            return False
        except NotSaved as failure:
            self._not_saved(failure, "Giving up was not saved, so the answer is not shown yet: try again.")
            return False
        self._answer(answer)
        return True

    def _not_saved(self, failure: NotSaved, then: str) -> None:
        """A guess or resignation the store did not take: nothing is shown, the map stays on screen."""
        exc = failure.error
        if isinstance(exc, StoreReadOnlyError):
            self._say(READ_ONLY_MESSAGE, "error")
            return
        log.warning("LabelingGame: could not save an answer: %s", exc)
        self._say(
            (_readable(exc, "saving your answer") if isinstance(exc, StoreBusyError) else str(exc)) + " " + then,
            "error",
        )

    def _answered_elsewhere(self, exc: AlreadyAnswered, text: str | None = None) -> None:
        """The map on screen was answered in another window of this player: say so, show the next one."""
        try:
            self._read_progress()
        except StoreBusyError:
            pass
        self._say("")
        rev = self.message_revision
        self._next()
        if self.message_revision == rev:
            self._say(text or exc.for_player, "info")

    def _answer(self, answer: PendingAnswer) -> None:
        item = answer.item
        pool = self._pool
        over = render.to_png(render.overlay(pool.image(item), pool.heatmap(item), "jet", 0.5))
        masked = self._masked_png(item, answer.step)
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

    def submit(self, labels: Sequence[str] = ()) -> bool:
        """Save the labels of the answer on screen (1..3; 0..3 after giving up; the answer itself was saved
        when its class was shown) and show the next map.

        Labels are kept exactly as typed. On a refusal (blank, too long) or a store error the answer
        stays on screen with the labels, and no label is stored; fix them and submit again.
        """
        q = self._queue
        if self.phase != "answer" or q is None or q.pending is None:
            self._say("There is no answer to save: guess first.", "info")
            return False
        answer = q.pending
        try:
            q.submit(labels)
        except AlreadyAnswered as exc:
            self._answered_elsewhere(exc)
            return False
        except Refusal as exc:  # the answer was taken back elsewhere: go on
            self._answered_elsewhere(AlreadyAnswered(self.participant, answer.item.key), str(exc))
            return False
        except RuleError as exc:
            self._say(exc.for_player, "error")
            self._keep_draft(answer)
            return False
        except NotSaved as failure:
            exc = failure.error
            if isinstance(exc, StoreReadOnlyError):  # submitting again cannot help: say what can
                log.warning("LabelingGame: the store is read-only: %s", exc)
                self._say("Your labels were not saved: " + READ_ONLY_MESSAGE, "error")
                self._keep_draft(answer)
                return False
            if isinstance(exc, (StoreBusyError, ValueError, TypeError, OSError, RuntimeError)):
                log.warning("LabelingGame: could not save an answer: %s", exc)
                self._say(
                    _readable(exc, "saving your labels")
                    if isinstance(exc, StoreBusyError)
                    else f"Your labels were not saved: {exc}",
                    "error",
                )
            else:  # e.g. sqlite3 errors: keep the labels, say what happened
                log.error("LabelingGame: could not save an answer's labels", exc_info=exc)
                self._say(_readable(exc, "save your labels") + " Your labels are kept: submit again.", "error")
            self._keep_draft(answer)
            return False
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
            note = "Saved. Thanks for the labels!" if answer.labels else "Skipped."
        self._say("")
        rev = self.message_revision
        self._next()
        if self.message_revision == rev:  # unless showing the next map went wrong
            self._say(note, "success")
        return True

    def skip(self) -> bool:
        """After giving up: save the resignation without labels and go on."""
        q = self._queue
        if self.phase != "answer" or q is None or q.pending is None or q.pending.outcome != "resign":
            self._say("Skipping is for maps you gave up on; describe what gave it away instead.", "info")
            return False
        return self.submit([])

    def _keep_draft(self, answer: PendingAnswer) -> None:
        self.draft = list(answer.labels)
        self.draft_revision += 1

    def undo(self) -> bool:
        """Bring back this player's last saved answer to fix its labels: it comes back on screen (same guess,
        labels in the boxes) and the labels saved again replace the stored ones. The answer itself stays in the
        store: its class has been shown."""
        q = self._queue
        if q is None or not q.history:
            self._say("Nothing to undo.", "info")
            return False
        try:
            answer = q.undo()
        except Refusal as exc:
            self.can_undo = q.can_undo
            self._say(str(exc), exc.kind)
            return False
        except StoreBusyError as exc:
            self._say(_readable(exc, "undo"), "error")
            return False
        try:
            self._read_progress()
        except StoreBusyError:
            pass
        self.refresh(quiet=True)
        with self.hold_sync():
            self.round += 1
            self._answer(answer)
        self._say("Your last answer is back: fix its labels and save them again (the guess stays).", "info")
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
