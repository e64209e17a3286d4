"""How a label store writes answers (the mixin :class:`AnswerWrites` of
:class:`~inv_widgets.labels.store.base.LabelStore`): sign-ups, one answer per transaction, its identity and
its labels, imports and undo. Every rule is :mod:`inv_widgets.labels.rules`; the SQL is :mod:`.queries`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from ...engine.keys import MapKey
from .. import rules
from . import queries as q
from .backend import Tx
from .errors import AnswerOutcomeUnknown

__all__ = ["AnswerWrites", "DuplicateGameError"]


class DuplicateGameError(ValueError):
    """An imported game has the identity of a stored one (participant, map, answer time) but other content."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


class AnswerWrites:
    """Writing answers; :class:`~inv_widgets.labels.store.base.LabelStore` holds the backend, ``path``,
    ``_transaction`` and ``_read``."""

    @staticmethod
    def _participant_id(tx: Tx, participant: Any, create: bool, created: str | None = None) -> int | None:
        if isinstance(participant, bool):
            raise TypeError("participant must be a name (str) or an id (int), got a bool")
        if isinstance(participant, int):
            row = tx.execute(q.PARTICIPANT_BY_ID, {"id": participant}).fetchone()
            if row is None:
                raise KeyError(f"no participant with id {participant}")
            return row[0]
        name = rules.check_name(participant)
        if create:
            tx.execute(q.ADD_PARTICIPANT, {"name": name, "created": created or rules.iso(rules.now())})
        row = tx.execute(q.PARTICIPANT_BY_NAME, {"name": name}).fetchone()
        return None if row is None else row[0]

    def add_participant(self, name: str) -> int:
        """Id of the participant ``name``, created when new (names are stripped; 1..64 characters)."""
        name = rules.check_name(name)
        with self._transaction("participant sign-up", name) as tx:
            return self._participant_id(tx, name, create=True)

    def record_answer(
        self,
        participant: str | int,
        key: MapKey,
        guessed: str | int | None,
        true_class: str | int,
        outcome: str,
        reveal_step: int,
        labels: Sequence[str] = (),
        started_at: Any = None,
        answered_at: Any = None,
        *,
        once: bool = False,
        answer_id: str | None = None,
        weight: float | None = None,
        labels_pending: bool = False,
    ) -> int:
        """Store one game and its labels atomically; returns the game id.

        Parameters
        ----------
        participant : name (created if new) or id of an existing participant.
        key : the :class:`MapKey` of the cluster map that was played.
        guessed : the class the player guessed (None allowed only for ``"resign"``).
        true_class : the class of the image (the explanation's target).
        outcome : ``"win"`` (guessed == true_class), ``"lose"`` (a different class) or ``"resign"``.
        reveal_step : 0..5, the step at which the player answered or resigned.
        labels : 1 to 3 free-text labels (0 to 3 for a resign), each non-blank and at most 200
            characters; kept exactly as typed, with a cleaned copy (:func:`clean_label`).
        started_at, answered_at : datetime, ISO 8601 text or epoch seconds; ``answered_at`` defaults
            to now. ``duration_s`` is derived when both are known.
        once : bool, default False
            Refuse the answer (:class:`~inv_widgets.labels.rules.AlreadyAnswered`, nothing stored) when
            this participant has already answered this map; checked inside the answer's transaction, so
            two browser tabs of one player cannot both score a map. The game sets it.
        answer_id : str, optional
            This answer's identity, chosen by the writer before sending it (e.g. ``uuid.uuid4().hex``; one is
            made when None). A second call with the same ``answer_id`` and the same answer stores nothing and
            returns the stored game's id: a retry after :class:`~.errors.AnswerOutcomeUnknown` (whose
            ``answer_id`` it carries) is safe. The same id for another answer is refused (ValueError).
        weight : float, optional
            The cluster map's weight in percent (``PoolItem.weight``), stored with the answer.
        labels_pending : bool, default False
            The answer is saved when its class is shown, before its labels (``labels`` must be empty): they
            follow with :meth:`set_labels`.

        Every rule is :func:`inv_widgets.labels.rules.validate_answer`.
        """
        answer = rules.validate_answer(
            participant,
            key,
            guessed,
            true_class,
            outcome,
            reveal_step,
            labels,
            started_at,
            answered_at,
            answer_id=answer_id,
            weight=weight,
            labels_pending=labels_pending,
        )
        if answer.answer_id is None:
            answer = dataclasses.replace(answer, answer_id=uuid.uuid4().hex)
        try:
            with self._transaction("answer", answer.participant) as tx:
                stored = self._stored_answer(tx, answer)
                if stored is not None:
                    return stored
                if once and self._has_answered(tx, answer.participant, answer.key):
                    raise rules.AlreadyAnswered(answer.participant, answer.key)
                return self._write_answer(tx, answer)
        except AnswerOutcomeUnknown as exc:
            raise AnswerOutcomeUnknown(
                exc.path,
                "answer",
                answer.answer_id,
                str(exc.__cause__ or "").strip().splitlines()[0] if exc.__cause__ else "",
            ) from exc.__cause__

    def _stored_answer(self, tx: Tx, a: rules.Answer) -> int | None:
        """The id of the game stored under ``a.answer_id`` when it is this answer (a retry); None when no game
        has that id; ValueError when another answer has it."""
        row = tx.execute(q.GAME_BY_ANSWER_ID, {"answer_id": a.answer_id}).fetchone()
        if row is None:
            return None
        pid = self._participant_id(tx, a.participant, create=False)
        mine = (
            pid,
            a.key.model,
            a.key.image_id,
            a.key.target,
            a.key.layer,
            a.key.members_text,
            a.guessed,
            a.true_class,
            a.outcome,
            a.step,
        )
        if tuple(row[1:11]) != mine:
            raise ValueError(
                f"answer_id {a.answer_id!r} is already used in the label store {self.path!r} by "
                "another answer; give each answer its own id (uuid.uuid4().hex)"
            )
        return int(row[0])

    def set_labels(self, participant: str | int, game_id: int, labels: Sequence[str] = ()) -> int:
        """Give (or replace) the labels of ``participant``'s game ``game_id``: 1..3 labels (0..3 after a
        resign), every rule of :func:`~inv_widgets.labels.rules.check_labels`, in one transaction; returns the
        game id. What follows an answer saved with ``labels_pending=True`` (the game saves the answer when it
        shows the class). Calling it again with the same labels changes nothing: a retry is safe. KeyError
        when the game is not in the store; ValueError when it is another participant's."""
        if isinstance(participant, str):
            participant = rules.check_name(participant)
        game_id = int(game_id)
        with self._transaction("labels", participant) as tx:
            row = tx.execute(q.GAME_OF, {"game_id": game_id}).fetchone()
            if row is None:
                raise KeyError(f"game {game_id} is not in the label store {self.path!r} (it was taken back)")
            pid = self._participant_id(tx, participant, create=False)
            if row[0] != pid:
                raise ValueError(f"game {game_id} of the label store {self.path!r} is not an answer of {participant!r}")
            outcome, guessed, true_class = row[1], row[2], row[3]
            labels = rules.check_labels(labels, outcome)
            names = [n for n in (true_class, guessed) if n]
            tx.execute(q.DELETE_LABELS_OF, {"game_id": game_id})
            self._insert_labels(tx, game_id, labels, [rules.clean_label(t, names) for t in labels])
            tx.execute(q.LABELS_DONE, {"game_id": game_id})
            return game_id

    def has_answered(self, participant: str | int, key: MapKey) -> bool:
        """Whether ``participant`` has an answer for the cluster map ``key``."""
        key = rules.as_key(key)
        with self._backend.snapshot() as tx:
            return self._has_answered(tx, participant, key)

    def _has_answered(self, tx: Tx, participant: str | int, key: MapKey) -> bool:
        pid = self._participant_id(tx, participant, create=False)
        if pid is None:
            return False
        return tx.execute(q.ANSWERED, {"participant": pid, **q.key_params(key)}).fetchone() is not None

    def record_answers(
        self,
        answers: Iterable[rules.Answer],
        participants: Iterable[tuple[str, str | None]] = (),
        *,
        skip_existing: bool = False,
    ) -> int:
        """Store several validated answers (:func:`rules.validate_answer`) in one transaction, after
        signing up ``participants`` ((name, created) pairs, in order); returns the number of games added.

        ``skip_existing`` (what an import does): a game whose identity (participant, map, ``answered_at``)
        is already stored is skipped when it is the same game, so importing a file twice adds nothing; one
        that differs raises :class:`DuplicateGameError` (its ``index`` in ``answers``) and nothing is stored.
        """
        answers = list(answers)
        added = 0
        with self._transaction("import") as tx:
            for name, created in participants:
                self._participant_id(tx, name, create=True, created=created)
            for i, answer in enumerate(answers):
                if skip_existing:
                    same = self._stored_twin(tx, answer)
                    if same is True:
                        continue
                    if same:
                        raise DuplicateGameError(i, same)
                if (
                    answer.answer_id is not None
                    and tx.execute(q.GAME_BY_ANSWER_ID, {"answer_id": answer.answer_id}).fetchone() is not None
                ):
                    raise DuplicateGameError(
                        i,
                        f"answer_id {answer.answer_id!r} is already used in the label store "
                        f"{self.path!r} by another game",
                    )
                self._write_answer(tx, answer)
                added += 1
        return added

    def _stored_twin(self, tx: Tx, a: rules.Answer) -> bool | str:
        """False: no stored game has the identity of ``a``; True: one has, and it is the same game; else
        what differs."""
        pid = self._participant_id(tx, a.participant, create=False)
        if pid is None:
            return False
        rows = tx.execute(
            q.GAME_BY_IDENTITY, {"participant": pid, "answered_at": a.answered_at, **q.key_params(a.key)}
        ).fetchall()
        if not rows:
            return False
        mine = (a.guessed, a.true_class, a.outcome, a.step, a.started_at, a.duration_s, list(a.labels))
        names = ("class_guessed", "true_class", "outcome", "reveal_step", "started_at", "duration_s", "labels")
        for row in rows:
            labels = [r[0] for r in tx.execute(q.LABEL_TEXTS_OF, {"game_id": row[0]}).fetchall()]
            stored = tuple(row[1:]) + (labels,)
            if stored == mine:
                return True
        diff = [n for n, x, y in zip(names, mine, stored) if x != y]
        return (
            f"a game of {a.participant!r} on {a.key} answered at {a.answered_at} is already stored with "
            f"another {', '.join(diff)}"
        )

    def _write_answer(self, tx: Tx, a: rules.Answer) -> int:
        pid = self._participant_id(tx, a.participant, create=True)
        return self._insert_game(
            tx,
            pid,
            a.key,
            a.guessed,
            a.true_class,
            a.outcome,
            a.step,
            a.started_at,
            a.answered_at,
            a.duration_s,
            list(a.labels),
            list(a.cleaned),
            a.answer_id,
            a.weight,
            a.labels_pending,
        )

    def _insert_game(
        self,
        tx,
        pid,
        key,
        guessed,
        true_class,
        outcome,
        step,
        started,
        answered,
        duration,
        labels,
        cleaned,
        answer_id=None,
        weight=None,
        labels_pending=False,
    ) -> int:
        game_id = tx.insert(
            q.ADD_GAME,
            {
                "participant": pid,
                "model": key.model,
                "image_id": key.image_id,
                "target": key.target,
                "layer": key.layer,
                "members": key.members_text,
                "class_guessed": guessed,
                "true_class": true_class,
                "outcome": outcome,
                "reveal_step": step,
                "started_at": started,
                "answered_at": answered,
                "duration_s": duration,
                "answer_id": answer_id,
                "weight": weight,
                "labels_pending": int(bool(labels_pending)),
            },
        )
        self._insert_labels(tx, game_id, labels, cleaned)
        return game_id

    def _insert_labels(self, tx: Tx, game_id: int, labels: Sequence[str], cleaned: Sequence[str]) -> None:
        tx.executemany(
            q.ADD_LABEL,
            [
                {"game_id": game_id, "text": t, "text_clean": c, "position": i}
                for i, (t, c) in enumerate(zip(labels, cleaned))
            ],
        )

    def undo_last(self, participant: str | int) -> bool:
        """Remove the participant's most recent answer (game and labels); False when there is none."""
        if isinstance(participant, str):
            participant = rules.check_name(participant)
        with self._transaction("undo", participant) as tx:
            pid = self._participant_id(tx, participant, create=False)
            if pid is None:
                return False
            row = tx.execute(q.LAST_GAME_OF, {"participant": pid}).fetchone()
            if row is None:
                return False
            tx.execute(q.DELETE_LABELS_OF, {"game_id": row[0]})
            tx.execute(q.DELETE_GAME, {"game_id": row[0]})
            return True
