"""LabelStore: the answers of the Deep Reveal game, one transaction per answer.

One database holds participants, games and their free-text labels::

    store = LabelStore("labels.sqlite")            # also "sqlite:///labels.sqlite", ":memory:"
    store = LabelStore("postgresql://user@host:5432/labels")   # a shared server (SQLAlchemy + psycopg 3)
    key = MapKey("vgg16-3f2a", "img_0007", 4, "block5_conv3", [42, 3, 17])
    store.record_answer("ada", key, guessed="church", true_class="church", outcome="win",
                        reveal_step=1, labels=["tall spire", "stained windows"])
    store.labels()                                 # pandas DataFrame, one row per label

Design points:

* The rules (what an answer may be, points, streaks) are :mod:`inv_widgets.labels.rules`; the SQL is
  :mod:`.queries`, the same for every backend; what differs between databases (connecting, locking,
  busy errors, integrity checks) is the backend (:mod:`.sqlite`, :mod:`.postgres`, picked by
  :func:`.backend.open_backend` from the path or URL).
* Every answer is one transaction that takes the write lock first: the game and its labels are stored
  together or not at all. All SQL uses bound parameters: text from people is data.
* Several processes may write at once; waiting writers are served fairly. When another connection holds
  the write lock for longer than ``timeout`` seconds the call raises :class:`StoreBusyError` (nothing was
  stored; retry).
* A damaged, truncated, empty or foreign file, or one with a row whose text cannot be read, is refused on
  open with a message that names it and how to recover (:class:`~.errors.StoreDamagedError`,
  :class:`~.errors.ForeignDatabaseError`); a store that may only be read opens for reading and refuses writes
  (:class:`~.errors.StoreReadOnlyError`). Every error names the store (a URL with its password masked).
* An answer carries an identity chosen by its writer (``answer_id``; one is made when none is given): the
  store keeps it once, so a retry after :class:`~.errors.AnswerOutcomeUnknown` (the connection went during
  the commit) is safe. It also carries its cluster map's weight in percent (``weight``, when given).
* The game saves an answer when it shows the class (``labels_pending=True``, no labels yet), so no other tab
  of the player can score that map; the labels follow with :meth:`LabelStore.set_labels`.
* The schema is versioned (:mod:`.schema`); opening an older database applies the missing migrations.
* A cluster map is identified by :class:`MapKey` (model, image id, target, layer, sorted member
  channels), stored as canonical text ``"3,17,42"``, never by its position in a list.
* Export and import (CSV, JSON) are :mod:`inv_widgets.labels.io`; top labels per map, cached until the
  labels change, are :class:`inv_widgets.labels.index.LabelIndex`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import Any

import pandas as pd

from ...engine.keys import MapKey
from .. import io as label_io
from .. import rules
from ..index import AggregateCache, LabelIndex, top_labels_of
from . import queries as q
from . import schema
from .answers import AnswerWrites, DuplicateGameError
from .backend import Backend, open_backend

__all__ = ["LabelStore", "DuplicateGameError"]


class LabelStore(AnswerWrites):
    """Answers of the labelling game in a database.

    Parameters
    ----------
    path : str or path-like, default ":memory:"
        A SQLite database file (created when missing), ``"sqlite:///relative.db"``,
        ``"sqlite:////absolute.db"``, ``":memory:"`` (private to this object), or a PostgreSQL database
        ``"postgresql://user:password@host:port/database"`` (``pip install 'inv-widgets[postgres]'``).
    timeout : float, default 5.0
        Seconds to wait for another connection's write lock before :class:`StoreBusyError`.
    synchronous : {"FULL", "NORMAL"}, default "FULL"
        Durability. ``FULL`` syncs each answer to disk before ``record_answer`` returns;
        ``NORMAL`` is faster and still safe when the process dies, but the last answers may be lost
        if the machine (PostgreSQL: the server's machine) loses power.

    A store may be used from several threads and pickled to other processes (a file or server store
    reconnects there). Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, path: Any = ":memory:", *, timeout: float = 5.0, synchronous: str = "FULL"):
        timeout = float(timeout)
        if not (timeout >= 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        self._backend: Backend | None = None
        self._aggregated = AggregateCache()
        backend = open_backend(path, timeout=timeout, synchronous=synchronous)
        try:
            schema.migrate(backend, backend.where)
        except BaseException:
            backend.close()
            raise
        self._backend = backend
        self.path = backend.where
        self.timeout = timeout
        self.synchronous = getattr(backend, "synchronous", synchronous)

    # -- connection ---------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The database backend (SQLite: :class:`~inv_widgets.labels.store.sqlite.SQLiteBackend`)."""
        return self._backend

    @property
    def _db(self):
        """The raw connection of the backend (SQLite: a ``sqlite3.Connection``); for tests and debugging."""
        return self._backend.connection

    def close(self) -> None:
        """Close the connection (further calls raise ValueError)."""
        if self._backend is not None:
            self._backend.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._backend is None or self._backend.closed else f"schema v{self.schema_version}"
        return f"LabelStore({self.path!r}, {state})"

    def __getstate__(self) -> dict[str, Any]:
        if not self._backend.shareable:
            raise TypeError("an in-memory LabelStore cannot be pickled; use a file path")
        state = getattr(self._backend, "state", None)
        if callable(state):
            return dict(state())
        return {"path": self.path, "timeout": self.timeout, "synchronous": self.synchronous}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"], synchronous=state["synchronous"])

    def _transaction(self, action: str = "write", participant: Any = None):
        """A write transaction of the backend (a context manager yielding a :class:`~.backend.Tx`).

        With a participant's name, the transaction only has to exclude other writes of that participant
        (a backend may run writes of different participants side by side: PostgreSQL does); without,
        it excludes every other write."""
        scope = participant if isinstance(participant, str) else None
        if scope is None:
            return self._backend.transaction(action)
        try:
            return self._backend.transaction(action, scope=scope)
        except TypeError:  # a backend without scopes: every write excludes every other
            return self._backend.transaction(action)

    def _read(self, sql: str, params: Any = ()) -> list[tuple]:
        return self._backend.read(sql, params)

    @property
    def read_only(self) -> bool:
        """True when this store can be read but not written (a read-only file or folder, a read-only
        server or a database user without the right to write); writes raise ``StoreReadOnlyError``."""
        return bool(getattr(self._backend, "read_only", False))

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._read(q.SCHEMA_VERSION)[0][0] or 0

    def change_stamp(self) -> Hashable:
        """A value that changes whenever this or any other connection writes to the store."""
        return self._backend.change_stamp()

    # -- reading -----------------------------------------------------------------------------

    def label_counts(self, keys: Iterable[MapKey]) -> dict[MapKey, int]:
        """Number of labels stored for each cluster map (0 for maps never labelled)."""
        keys = [rules.as_key(k) for k in keys]
        counts = {k: 0 for k in keys}
        groups: dict[tuple[str, str, str], set[MapKey]] = {}
        for k in keys:
            groups.setdefault((k.model, k.image_id, k.layer), set()).add(k)
        for (model, image_id, layer), group in groups.items():
            rows = self._read(q.LABEL_COUNTS, {"model": model, "image_id": image_id, "layer": layer})
            for target, members, n in rows:
                k = MapKey(model, image_id, target, layer, members)
                if k in group:
                    counts[k] = n
        return counts

    def games(
        self,
        participant=None,
        *,
        key: MapKey | None = None,
        model: str | None = None,
        image_id=None,
        target: int | None = None,
        layer: str | None = None,
    ) -> pd.DataFrame:
        """One row per game, oldest first, optionally filtered.

        Columns: game_id, participant (name), model, image_id, target, layer, members (canonical
        text), class_guessed, true_class, outcome, reveal_step, points, n_labels, started_at,
        answered_at, duration_s, answer_id (the writer's identity of the answer; None for answers stored
        before schema 2), weight (the cluster map's weight in percent; NaN when not given), labels_pending
        (True while the labels of an answer saved when its class was shown have not come).
        """
        where, params = q.where(participant, key, model, image_id, target, layer)
        rows = self._read(q.GAMES.format(where=where), params)
        records = [r[:11] + (rules.points_for(r[9], r[10]),) + r[11:] for r in rows]
        df = pd.DataFrame.from_records(records, columns=q.GAME_COLUMNS)
        return df.astype(
            {
                "game_id": "int64",
                "target": "int64",
                "reveal_step": "int64",
                "points": "int64",
                "n_labels": "int64",
                "duration_s": "float64",
                "weight": "float64",
                "labels_pending": "bool",
            }
        )

    def labels(
        self,
        participant=None,
        *,
        key: MapKey | None = None,
        model: str | None = None,
        image_id=None,
        target: int | None = None,
        layer: str | None = None,
    ) -> pd.DataFrame:
        """One row per label, in answer order, joined with its game and map identity.

        Columns: label_id, game_id, participant, model, image_id, target, layer, members,
        class_guessed, true_class, outcome, reveal_step, position, text (as typed), text_clean,
        answered_at, answer_id, weight (the cluster map's weight in percent, NaN when not given). This is
        the input of :func:`inv_widgets.labels.aggregate_labels`.
        """
        where, params = q.where(participant, key, model, image_id, target, layer)
        rows = self._read(q.LABELS.format(where=where), params)
        df = pd.DataFrame.from_records(rows, columns=q.LABEL_COLUMNS)
        return df.astype(
            {
                "label_id": "int64",
                "game_id": "int64",
                "target": "int64",
                "reveal_step": "int64",
                "position": "int64",
                "weight": "float64",
            }
        )

    def participants(self) -> pd.DataFrame:
        """Columns: participant_id, participant, created."""
        return pd.DataFrame.from_records(
            self._read(q.PARTICIPANTS), columns=["participant_id", "participant", "created"]
        )

    def leaderboard(self) -> pd.DataFrame:
        """Columns participant, games, wins, points, best_streak; best first.

        Points per game are :func:`~inv_widgets.labels.rules.points_for` (6 - reveal step for a right
        guess, else 0); the best streak is the longest run of consecutive wins
        (:func:`~inv_widgets.labels.rules.streaks`). Ties are ordered by wins, then name.
        """
        played: dict[str, list[tuple[str, int]]] = {}
        for name, outcome, step in self._read(q.LEADERBOARD):
            games = played.setdefault(name, [])
            if outcome is not None:
                games.append((outcome, step))
        rows = [
            (
                name,
                len(g),
                sum(o == "win" for o, _ in g),
                sum(rules.points_for(o, s) for o, s in g),
                rules.streaks(o for o, _ in g)[1],
            )
            for name, g in played.items()
        ]
        df = pd.DataFrame(rows, columns=["participant", "games", "wins", "points", "best_streak"])
        df = df.sort_values(["points", "wins", "participant"], ascending=[False, False, True], kind="stable")
        return df.reset_index(drop=True).astype(
            {"games": "int64", "wins": "int64", "points": "int64", "best_streak": "int64"}
        )

    def integrity_check(self) -> list[str]:
        """Problems found in the database; an empty list means it is healthy.

        Runs the database's own checks (SQLite: ``PRAGMA integrity_check``, ``foreign_key_check`` and text
        that is not UTF-8) and checks that no answer is partial: every win/lose game has 1..3 labels at
        positions 0, 1, ... (unless its labels are still to come: ``labels_pending``).
        """
        problems = self._backend.integrity_problems()
        for gid, outcome, n, maxpos, pending in self._read(q.LABELS_PER_GAME):
            if outcome != "resign" and n == 0 and not pending:
                problems.append(f"game {gid} ({outcome}) has no labels")
            if n and maxpos != n - 1:
                problems.append(f"game {gid} has label positions with gaps")
        version = self.schema_version
        if version != schema.latest_version():
            problems.append(f"schema version {version}, expected {schema.latest_version()}")
        return problems

    # -- explanations (cached in an index) -------------------------------------------------------

    def index(self, n: int = 3, **options: Any) -> LabelIndex:
        """A :class:`~inv_widgets.labels.index.LabelIndex` over this store sharing its cache: the top
        ``n`` labels of cluster maps, e.g. ``Explorer(session, labels=store.index())``."""
        return LabelIndex(self, n, cache=self._aggregated, **options)

    def aggregate(self, **options: Any) -> pd.DataFrame:
        """:func:`~inv_widgets.labels.aggregate_labels` of this store, cached until the labels change.

        ``options`` are those of ``aggregate_labels`` (class_names, model, merge, min_labels,
        weights, ...). The cache is dropped when this or any other connection writes to the store.
        """
        return self._aggregated.get(self, **options)

    def top_labels(self, key: MapKey, n: int = 3, **options: Any) -> list[tuple[str, float]]:
        """The ``n`` best ``(label, score)`` of one cluster map ([] when it has no labels yet).

        Uses :meth:`aggregate` (cached), so a gallery can ask for every map it shows.
        """
        return self.top_labels_many([key], n, **options)[0]

    def top_labels_many(self, keys: Iterable[MapKey], n: int = 3, **options: Any) -> list[list[tuple[str, float]]]:
        """:meth:`top_labels` of several maps with one aggregation."""
        return top_labels_of(self, keys, n, self._aggregated, **options)

    # -- export / import (inv_widgets.labels.io) -----------------------------------------------

    def export_rows(self) -> tuple[list[tuple], list[dict[str, Any]]]:
        """Everything, read in one consistent snapshot: ``(participants, games)`` where participants
        are ``(id, name, created)`` and each game is a dict of the export columns plus ``labels``."""
        with self._backend.snapshot() as tx:
            people = tx.execute(q.PARTICIPANTS).fetchall()
            games = tx.execute(q.EXPORT_GAMES).fetchall()
            labels: dict[int, list[str]] = {}
            for gid, text in tx.execute(q.EXPORT_LABELS).fetchall():
                labels.setdefault(gid, []).append(text)
        out = []
        for row in games:
            d = dict(zip(q.EXPORT_GAME_COLUMNS, row[1:]))
            d["labels_pending"] = bool(d["labels_pending"])
            d["labels"] = labels.get(row[0], [])
            out.append(d)
        return people, out

    def to_json(self, path: Any):
        """Write everything (participants, games, labels as typed) to a UTF-8 JSON file."""
        return label_io.write_json(self, path)

    def to_csv(self, path: Any):
        """Write everything to one UTF-8 CSV file, one row per game (see :func:`inv_widgets.labels.io.write_csv`)."""
        return label_io.write_csv(self, path)

    def import_(self, path: Any) -> int:
        """Add the answers of a :meth:`to_csv` or :meth:`to_json` file (by extension); returns the
        number of games added. Everything is validated first and added in one transaction."""
        return label_io.import_file(self, path)

    @classmethod
    def from_csv(cls, csv_path: Any, path: Any = ":memory:", **kwargs: Any) -> LabelStore:
        """A new store (``path``, default in memory) filled from a :meth:`to_csv` file."""
        label_io.check_suffix(csv_path, ".csv", "from_csv")
        store = cls(path, **kwargs)
        store.import_(csv_path)
        return store

    @classmethod
    def from_json(cls, json_path: Any, path: Any = ":memory:", **kwargs: Any) -> LabelStore:
        """A new store (``path``, default in memory) filled from a :meth:`to_json` file."""
        label_io.check_suffix(json_path, ".json", "from_json")
        store = cls(path, **kwargs)
        store.import_(json_path)
        return store
