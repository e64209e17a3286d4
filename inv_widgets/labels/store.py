"""The label store: answers of the Deep Reveal game in SQLite.

One file (or ``":memory:"``) holds participants, games and their free-text labels::

    store = LabelStore("labels.sqlite")            # also "sqlite:///labels.sqlite", ":memory:"
    key = MapKey("vgg16-3f2a", "img_0007", 4, "block5_conv3", [42, 3, 17])
    store.record_answer("ada", key, guessed="church", true_class="church", outcome="win",
                        reveal_step=1, labels=["tall spire", "stained windows"])
    store.labels()                                 # pandas DataFrame, one row per label

Design points:

* ``sqlite3`` from the standard library, WAL journal (readers never block the writer), a busy timeout,
  ``synchronous=FULL`` by default (an answer that ``record_answer`` returned survives a crash of the
  process or of the machine), foreign keys on. Every answer is one ``BEGIN IMMEDIATE`` transaction:
  the game and its labels are stored together or not at all. All SQL uses bound parameters: text from
  people is data.
* Several processes may write to one file at once. When another connection holds the write lock for
  longer than ``timeout`` seconds the call raises :class:`StoreBusyError` (nothing was stored; retry).
* The schema is versioned: ``schema_version`` records the migrations applied; opening an older file
  applies the missing ones from :data:`MIGRATIONS`, each in its own transaction.
* A cluster map is identified by :class:`MapKey` (model, image id, target, layer, sorted member
  channels), stored as canonical text ``"3,17,42"``, never by its position in a list.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import os
import sqlite3
import tempfile
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from ..engine.keys import MapKey
from .text import clean_label

__all__ = [
    "LabelStore",
    "MapKey",
    "StoreBusyError",
    "points_for",
    "OUTCOMES",
    "MAX_LABEL_CHARS",
    "MAX_NAME_CHARS",
    "MAX_LABELS",
    "MAX_STEP",
    "MIGRATIONS",
]

OUTCOMES = ("win", "lose", "resign")
MAX_STEP = 5
MAX_LABELS = 3
MAX_LABEL_CHARS = 200
MAX_NAME_CHARS = 64
EXPORT_FORMAT = "inv-widgets-labels"


def _as_key(key: Any) -> MapKey:
    if isinstance(key, MapKey):
        return key
    if isinstance(key, Mapping):
        return MapKey.from_row(key)
    if isinstance(key, (tuple, list)) and len(key) == 5:
        return MapKey(*key)
    raise TypeError(
        "key must be a MapKey(model, image_id, target, layer, members), "
        f"got {type(key).__name__}"
    )


# --------------------------------------------------------------------------------------------------
# scoring of the game


def points_for(outcome: str, reveal_step: int) -> int:
    """Leaderboard points of one game: a right guess at step s earns ``6 - s``; lose or resign 0.

    Early right guesses are rewarded: 6 points with the least revealed (step 0), 1 point at step 5.
    """
    _check_outcome(outcome)
    step = _check_step(reveal_step)
    return (MAX_STEP + 1 - step) if outcome == "win" else 0


def _check_outcome(outcome: Any) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    return outcome


def _check_step(step: Any) -> int:
    if isinstance(step, bool):
        raise TypeError("reveal_step must be an int 0..5, got a bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"reveal_step must be an int 0..5, got {step!r}") from None
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"reveal_step must be between 0 and {MAX_STEP}; got {step}")
    return int(step)


# --------------------------------------------------------------------------------------------------
# errors


class StoreBusyError(RuntimeError):
    """The database stayed locked by another connection for longer than the timeout.

    Nothing was written by the failed call; retrying later is safe.
    """

    def __init__(self, path: str, timeout: float, action: str = "write"):
        self.path = path
        self.timeout = timeout
        super().__init__(
            f"label store {path!r} is busy: another connection held the lock for more than "
            f"{timeout:g} s, so this {action} was not done (nothing was stored). "
            "Retry in a moment, or open the store with a longer timeout=..."
        )


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return True
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


# --------------------------------------------------------------------------------------------------
# schema and migrations

_SCHEMA_V1 = [
    """CREATE TABLE participants (
        id      INTEGER PRIMARY KEY,
        name    TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL
    )""",
    """CREATE TABLE games (
        id            INTEGER PRIMARY KEY,
        participant   INTEGER NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
        model         TEXT NOT NULL,
        image_id      TEXT NOT NULL,
        target        INTEGER NOT NULL,
        layer         TEXT NOT NULL,
        members       TEXT NOT NULL,
        class_guessed TEXT,
        true_class    TEXT NOT NULL,
        outcome       TEXT NOT NULL CHECK (outcome IN ('win', 'lose', 'resign')),
        reveal_step   INTEGER NOT NULL CHECK (reveal_step BETWEEN 0 AND 5),
        started_at    TEXT,
        answered_at   TEXT NOT NULL,
        duration_s    REAL
    )""",
    "CREATE INDEX games_map ON games (model, image_id, layer, target, members)",
    "CREATE INDEX games_participant ON games (participant, id)",
    """CREATE TABLE labels (
        id         INTEGER PRIMARY KEY,
        game_id    INTEGER NOT NULL REFERENCES games(id) ON DELETE CASCADE,
        text       TEXT NOT NULL,
        text_clean TEXT NOT NULL,
        position   INTEGER NOT NULL CHECK (position BETWEEN 0 AND 2),
        UNIQUE (game_id, position)
    )""",
]

#: Ordered list of ``(version, step)``; a step is a list of SQL statements or a callable taking the
#: connection. Opening a file applies every step newer than the file's version, each in one
#: transaction. Append new versions at the end; never edit a released step.
MIGRATIONS: list[tuple[int, Any]] = [
    (1, _SCHEMA_V1),
]


def _latest_version() -> int:
    return max(v for v, _ in MIGRATIONS)


# --------------------------------------------------------------------------------------------------
# small helpers


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _as_time(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite time, got {value!r}")
        dt = datetime.fromtimestamp(float(value), tz=timezone.utc)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{name} must be an ISO 8601 time like '2024-05-01T10:00:00+00:00', got {value!r}"
            ) from None
    else:
        raise TypeError(f"{name} must be a datetime, an ISO 8601 str or epoch seconds, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.astimezone()  # naive times are local times
    return dt.astimezone(timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="microseconds")


def _check_text_is_storable(text: str, what: str) -> None:
    if "\x00" in text:
        raise ValueError(f"{what} contains a NUL character, which cannot be stored; remove it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} is not valid Unicode text (it has an unpaired surrogate); re-type it"
        ) from None


def _clean_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a participant name must be a str, got {type(name).__name__}")
    name = name.strip()
    if not name:
        raise ValueError("a participant name must not be empty or blank")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(
            f"a participant name has at most {MAX_NAME_CHARS} characters; got {len(name)}"
        )
    _check_text_is_storable(name, "the participant name")
    return name


def _class_text(value: Any, what: str, allow_none: bool) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{what} is required")
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a class name or index, got a bool")
    if not isinstance(value, str):
        try:
            value = str(operator.index(value))
        except TypeError:
            raise TypeError(f"{what} must be a class name (str) or index (int), got {value!r}") from None
    value = value.strip()
    if not value:
        raise ValueError(f"{what} must not be empty")
    _check_text_is_storable(value, what)
    return value


def _check_labels(labels: Any, outcome: str) -> list[str]:
    if isinstance(labels, str):
        raise TypeError("labels must be a list of str (e.g. [text]), not a single str")
    if labels is None:
        labels = []
    try:
        labels = list(labels)
    except TypeError:
        raise TypeError(f"labels must be a list of str, got {type(labels).__name__}") from None
    low = 0 if outcome == "resign" else 1
    if not low <= len(labels) <= MAX_LABELS:
        raise ValueError(
            f"a {outcome} answer needs {low} to {MAX_LABELS} labels; got {len(labels)}"
        )
    for i, text in enumerate(labels, 1):
        what = f"label {i} of {len(labels)}"
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{what} is empty: type what gave the class away, or leave it out")
        if len(text) > MAX_LABEL_CHARS:
            raise ValueError(
                f"{what} has {len(text)} characters; the limit is {MAX_LABEL_CHARS}"
            )
        _check_text_is_storable(text, what)
    return labels


def _resolve_path(path: Any) -> str:
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if path.startswith("sqlite:"):
        rest = path[len("sqlite:"):]
        if rest in ("", "//", "///:memory:", "//:memory:"):
            return ":memory:"
        if not rest.startswith("///"):
            raise ValueError(
                f"cannot read the URL {path!r}: use sqlite:///relative/path or sqlite:////absolute/path"
            )
        path = rest[3:]
        if not path:
            return ":memory:"
    elif "://" in path:
        scheme = path.split("://", 1)[0]
        raise ValueError(
            f"the {scheme!r} database URL is not supported yet; use a file path or sqlite:///path"
        )
    if path == ":memory:":
        return path
    p = Path(path).expanduser()
    if p.is_dir():
        raise IsADirectoryError(f"{str(p)!r} is a directory; give the path of a database file")
    if not p.parent.exists():
        raise FileNotFoundError(
            f"cannot create the label store {str(p)!r}: the folder {str(p.parent)!r} does not exist"
        )
    return str(p.resolve())


_GAME_COLUMNS = [
    "game_id", "participant", "model", "image_id", "target", "layer", "members",
    "class_guessed", "true_class", "outcome", "reveal_step", "points", "n_labels",
    "started_at", "answered_at", "duration_s",
]
_LABEL_COLUMNS = [
    "label_id", "game_id", "participant", "model", "image_id", "target", "layer", "members",
    "class_guessed", "true_class", "outcome", "reveal_step", "position", "text", "text_clean",
    "answered_at",
]
_CSV_COLUMNS = [
    "record", "participant", "participant_created", "model", "image_id", "target", "layer",
    "members", "class_guessed", "true_class", "outcome", "reveal_step", "started_at",
    "answered_at", "duration_s", "label_1", "label_2", "label_3",
]


# --------------------------------------------------------------------------------------------------
# the store


class LabelStore:
    """Answers of the labelling game in a SQLite database.

    Parameters
    ----------
    path : str or path-like, default ":memory:"
        A database file (created when missing), ``"sqlite:///relative.db"``,
        ``"sqlite:////absolute.db"`` or ``":memory:"`` (private to this object).
    timeout : float, default 5.0
        Seconds to wait for another connection's write lock before :class:`StoreBusyError`.
    synchronous : {"FULL", "NORMAL"}, default "FULL"
        SQLite durability. ``FULL`` syncs each answer to disk before ``record_answer`` returns;
        ``NORMAL`` is faster and still safe when the process dies, but the last answers may be lost
        if the machine loses power.

    A store may be used from several threads (calls are serialised) and pickled to other processes
    (a file store reconnects there). Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, path: Any = ":memory:", *, timeout: float = 5.0, synchronous: str = "FULL"):
        self.path = _resolve_path(path)
        timeout = float(timeout)
        if not (timeout >= 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        self.timeout = timeout
        synchronous = str(synchronous).upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.synchronous = synchronous
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._stale: list[sqlite3.Connection] = []
        self._writes = 0  # commits through this object (with PRAGMA data_version: a change stamp)
        self._aggregated: tuple[Any, str, pd.DataFrame] | None = None
        self._connect()

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError as exc:
            raise sqlite3.OperationalError(f"cannot open the label store {self.path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # pragma: no cover - exotic file systems
                    raise sqlite3.OperationalError(
                        f"could not switch {self.path!r} to WAL mode (got {mode!r})"
                    )
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            self._conn = conn
            self._pid = os.getpid()
            self._migrate()
        except sqlite3.OperationalError as exc:
            conn.close()
            self._conn = None
            if _is_busy(exc):
                raise StoreBusyError(self.path, self.timeout, "open") from exc
            raise
        except BaseException:
            conn.close()
            self._conn = None
            raise

    @property
    def _db(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            # A forked child must not use its parent's connection: open its own.
            if self.path == ":memory:":
                raise RuntimeError("an in-memory LabelStore cannot be shared with another process")
            if self._conn is not None:
                self._stale.append(self._conn)  # never close a connection inherited by fork
            self._conn = None
            self._lock = threading.RLock()
            self._connect()
        if self._conn is None:
            raise ValueError(f"the label store {self.path!r} is closed")
        return self._conn

    def close(self) -> None:
        """Close the connection (further calls raise ValueError)."""
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"schema v{self.schema_version}"
        return f"LabelStore({self.path!r}, {state})"

    def __getstate__(self) -> dict[str, Any]:
        if self.path == ":memory:":
            raise TypeError("an in-memory LabelStore cannot be pickled; use a file path")
        return {"path": self.path, "timeout": self.timeout, "synchronous": self.synchronous}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout=state["timeout"], synchronous=state["synchronous"])

    @contextmanager
    def _transaction(self, action: str = "write") -> Iterator[sqlite3.Cursor]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rollback on any error; busy -> StoreBusyError."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, action) from exc
                raise
            try:
                cur = db.cursor()
                yield cur
                db.execute("COMMIT")
                self._writes += 1
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if _is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, action) from exc
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, "read") from exc
                raise

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        latest = _latest_version()
        # Fast path without a write lock: an up-to-date file opens even while another connection
        # is writing.
        db = self._conn
        has_table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if has_table and (db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0) == latest:
            return
        while True:
            with self._transaction("schema upgrade") as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                current = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                if current > latest:
                    raise RuntimeError(
                        f"the label store {self.path!r} has schema version {current}, newer than "
                        f"this inv-widgets understands ({latest}); upgrade inv-widgets"
                    )
                pending = sorted((v, s) for v, s in MIGRATIONS if v > current)
                if not pending:
                    return
                version, step = pending[0]
                if callable(step):
                    step(cur.connection)
                else:
                    for statement in step:
                        cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, _iso(_now())),
                )

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return self._read("SELECT MAX(version) FROM schema_version")[0][0] or 0

    # -- writing -----------------------------------------------------------------------------

    @staticmethod
    def _participant_id(cur: sqlite3.Cursor, participant: Any, create: bool,
                        created: str | None = None) -> int | None:
        if isinstance(participant, bool):
            raise TypeError("participant must be a name (str) or an id (int), got a bool")
        if isinstance(participant, int):
            row = cur.execute("SELECT id FROM participants WHERE id = ?", (participant,)).fetchone()
            if row is None:
                raise KeyError(f"no participant with id {participant}")
            return row[0]
        name = _clean_name(participant)
        if create:
            cur.execute(
                "INSERT OR IGNORE INTO participants (name, created) VALUES (?, ?)",
                (name, created or _iso(_now())),
            )
        row = cur.execute("SELECT id FROM participants WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def add_participant(self, name: str) -> int:
        """Id of the participant ``name``, created when new (names are stripped; 1..64 characters)."""
        name = _clean_name(name)
        with self._transaction("participant sign-up") as cur:
            return self._participant_id(cur, name, create=True)

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
        """
        key = _as_key(key)
        outcome = _check_outcome(outcome)
        step = _check_step(reveal_step)
        guessed_t = _class_text(guessed, "guessed", allow_none=outcome == "resign")
        true_t = _class_text(true_class, "true_class", allow_none=False)
        if outcome == "win" and guessed_t != true_t:
            raise ValueError(
                f"outcome 'win' needs guessed == true_class; got {guessed_t!r} and {true_t!r}"
            )
        if outcome == "lose" and guessed_t == true_t:
            raise ValueError(
                f"outcome 'lose' needs a guess other than the true class {true_t!r}"
            )
        labels = _check_labels(labels, outcome)
        started = _as_time(started_at, "started_at")
        answered = _as_time(answered_at, "answered_at") or _now()
        duration = None
        if started is not None:
            duration = (answered - started).total_seconds()
            if duration < 0:
                raise ValueError("started_at is after answered_at")
        names = [n for n in (true_t, guessed_t) if n]
        cleaned = [clean_label(t, names) for t in labels]
        if not isinstance(participant, (int, str)) or isinstance(participant, bool):
            raise TypeError("participant must be a name (str) or an id (int)")
        if isinstance(participant, str):
            participant = _clean_name(participant)
        with self._transaction("answer") as cur:
            pid = self._participant_id(cur, participant, create=True)
            return self._insert_game(
                cur, pid, key, guessed_t, true_t, outcome, step,
                _iso(started), _iso(answered), duration, labels, cleaned,
            )

    def _insert_game(self, cur, pid, key, guessed, true_class, outcome, step, started, answered,
                     duration, labels, cleaned) -> int:
        cur.execute(
            "INSERT INTO games (participant, model, image_id, target, layer, members, class_guessed,"
            " true_class, outcome, reveal_step, started_at, answered_at, duration_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (pid, key.model, key.image_id, key.target, key.layer, key.members_text, guessed,
             true_class, outcome, step, started, answered, duration),
        )
        game_id = cur.lastrowid
        self._insert_labels(cur, game_id, labels, cleaned)
        return game_id

    def _insert_labels(self, cur: sqlite3.Cursor, game_id: int, labels: Sequence[str],
                       cleaned: Sequence[str]) -> None:
        cur.executemany(
            "INSERT INTO labels (game_id, text, text_clean, position) VALUES (?, ?, ?, ?)",
            [(game_id, t, c, i) for i, (t, c) in enumerate(zip(labels, cleaned))],
        )

    def undo_last(self, participant: str | int) -> bool:
        """Remove the participant's most recent answer (game and labels); False when there is none."""
        with self._transaction("undo") as cur:
            pid = self._participant_id(cur, participant, create=False)
            if pid is None:
                return False
            row = cur.execute(
                "SELECT id FROM games WHERE participant = ? ORDER BY id DESC LIMIT 1", (pid,)
            ).fetchone()
            if row is None:
                return False
            cur.execute("DELETE FROM labels WHERE game_id = ?", (row[0],))
            cur.execute("DELETE FROM games WHERE id = ?", (row[0],))
            return True

    # -- reading -----------------------------------------------------------------------------

    def label_counts(self, keys: Iterable[MapKey]) -> dict[MapKey, int]:
        """Number of labels stored for each cluster map (0 for maps never labelled)."""
        keys = [_as_key(k) for k in keys]
        counts = {k: 0 for k in keys}
        groups: dict[tuple[str, str, str], set[MapKey]] = {}
        for k in keys:
            groups.setdefault((k.model, k.image_id, k.layer), set()).add(k)
        for (model, image_id, layer), group in groups.items():
            rows = self._read(
                "SELECT g.target, g.members, COUNT(l.id) FROM games g JOIN labels l"
                " ON l.game_id = g.id WHERE g.model = ? AND g.image_id = ? AND g.layer = ?"
                " GROUP BY g.target, g.members",
                (model, image_id, layer),
            )
            for target, members, n in rows:
                k = MapKey(model, image_id, target, layer, members)
                if k in group:
                    counts[k] = n
        return counts

    def _where(self, participant=None, key=None, model=None, image_id=None, target=None,
               layer=None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if key is not None:
            key = _as_key(key)
            clauses.append(
                "g.model = ? AND g.image_id = ? AND g.target = ? AND g.layer = ? AND g.members = ?"
            )
            params += [key.model, key.image_id, key.target, key.layer, key.members_text]
        if participant is not None:
            if isinstance(participant, int) and not isinstance(participant, bool):
                clauses.append("p.id = ?")
                params.append(participant)
            else:
                clauses.append("p.name = ?")
                params.append(_clean_name(participant))
        for col, value in (("model", model), ("image_id", image_id), ("layer", layer)):
            if value is not None:
                clauses.append(f"g.{col} = ?")
                params.append(str(value))
        if target is not None:
            clauses.append("g.target = ?")
            params.append(operator.index(target))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def games(self, participant=None, *, key: MapKey | None = None, model: str | None = None,
              image_id=None, target: int | None = None, layer: str | None = None) -> pd.DataFrame:
        """One row per game, oldest first, optionally filtered.

        Columns: game_id, participant (name), model, image_id, target, layer, members (canonical
        text), class_guessed, true_class, outcome, reveal_step, points, n_labels, started_at,
        answered_at, duration_s.
        """
        where, params = self._where(participant, key, model, image_id, target, layer)
        rows = self._read(
            "SELECT g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
            " g.class_guessed, g.true_class, g.outcome, g.reveal_step,"
            " (SELECT COUNT(*) FROM labels l WHERE l.game_id = g.id),"
            " g.started_at, g.answered_at, g.duration_s"
            " FROM games g JOIN participants p ON p.id = g.participant" + where +
            " ORDER BY g.id",
            params,
        )
        records = [
            r[:11] + (points_for(r[9], r[10]),) + r[11:] for r in rows
        ]
        df = pd.DataFrame.from_records(records, columns=_GAME_COLUMNS)
        return df.astype({"game_id": "int64", "target": "int64", "reveal_step": "int64",
                          "points": "int64", "n_labels": "int64", "duration_s": "float64"})

    def labels(self, participant=None, *, key: MapKey | None = None, model: str | None = None,
               image_id=None, target: int | None = None, layer: str | None = None) -> pd.DataFrame:
        """One row per label, in answer order, joined with its game and map identity.

        Columns: label_id, game_id, participant, model, image_id, target, layer, members,
        class_guessed, true_class, outcome, reveal_step, position, text (as typed), text_clean,
        answered_at. This is the input of :func:`inv_widgets.labels.aggregate_labels`.
        """
        where, params = self._where(participant, key, model, image_id, target, layer)
        rows = self._read(
            "SELECT l.id, g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
            " g.class_guessed, g.true_class, g.outcome, g.reveal_step, l.position, l.text,"
            " l.text_clean, g.answered_at"
            " FROM labels l JOIN games g ON g.id = l.game_id"
            " JOIN participants p ON p.id = g.participant" + where +
            " ORDER BY g.id, l.position",
            params,
        )
        df = pd.DataFrame.from_records(rows, columns=_LABEL_COLUMNS)
        return df.astype({"label_id": "int64", "game_id": "int64", "target": "int64",
                          "reveal_step": "int64", "position": "int64"})

    def participants(self) -> pd.DataFrame:
        """Columns: participant_id, participant, created."""
        rows = self._read("SELECT id, name, created FROM participants ORDER BY id")
        return pd.DataFrame.from_records(rows, columns=["participant_id", "participant", "created"])

    def leaderboard(self) -> pd.DataFrame:
        """Columns participant, games, wins, points, best_streak; best first.

        Points per game are :func:`points_for` (6 - reveal step for a right guess, else 0); the best
        streak is the longest run of consecutive wins. Ties are ordered by wins, then name.
        """
        rows = self._read(
            "SELECT p.name, g.outcome, g.reveal_step FROM participants p"
            " LEFT JOIN games g ON g.participant = p.id ORDER BY p.id, g.id"
        )
        stats: dict[str, list[int]] = {}
        for name, outcome, step in rows:
            s = stats.setdefault(name, [0, 0, 0, 0, 0])  # games, wins, points, best, current
            if outcome is None:
                continue
            s[0] += 1
            s[2] += points_for(outcome, step)
            if outcome == "win":
                s[1] += 1
                s[4] += 1
                s[3] = max(s[3], s[4])
            else:
                s[4] = 0
        df = pd.DataFrame(
            [(n, *s[:4]) for n, s in stats.items()],
            columns=["participant", "games", "wins", "points", "best_streak"],
        )
        df = df.sort_values(["points", "wins", "participant"], ascending=[False, False, True],
                            kind="stable")
        return df.reset_index(drop=True).astype(
            {"games": "int64", "wins": "int64", "points": "int64", "best_streak": "int64"}
        )

    # -- explanations -------------------------------------------------------------------------

    def aggregate(self, **options: Any) -> pd.DataFrame:
        """:func:`~inv_widgets.labels.aggregate_labels` of this store, cached until the labels change.

        ``options`` are those of ``aggregate_labels`` (class_names, model, merge, min_labels,
        weights, ...). The cache is dropped when this or any other connection writes to the store.
        """
        from .aggregate import aggregate_labels

        options.setdefault("progress", False)
        stamp = (self._writes, self._read("PRAGMA data_version")[0][0])
        wanted = repr(sorted(options.items(), key=lambda kv: kv[0]))
        cached = self._aggregated
        if cached is not None and cached[0] == stamp and cached[1] == wanted:
            return cached[2].copy()
        table = aggregate_labels(self, **options)
        self._aggregated = (stamp, wanted, table)
        return table.copy()

    def top_labels(self, key: MapKey, n: int = 3, **options: Any) -> list[tuple[str, float]]:
        """The ``n`` best ``(label, score)`` of one cluster map ([] when it has no labels yet).

        Uses :meth:`aggregate` (cached), so a gallery can ask for every map it shows.
        """
        return self.top_labels_many([key], n, **options)[0]

    def top_labels_many(self, keys: Iterable[MapKey], n: int = 3,
                        **options: Any) -> list[list[tuple[str, float]]]:
        """:meth:`top_labels` of several maps with one aggregation."""
        from .aggregate import top_labels

        keys = [_as_key(k) for k in keys]
        if not any(self.label_counts(keys).values()):  # nothing to aggregate: don't load Sentence-BERT
            return [[] for _ in keys]
        table = self.aggregate(**options)
        return [top_labels(table, k, n) for k in keys]

    def integrity_check(self) -> list[str]:
        """Problems found in the database; an empty list means it is healthy.

        Runs SQLite's ``PRAGMA integrity_check`` and ``foreign_key_check`` and checks that no answer
        is partial: every win/lose game has 1..3 labels at positions 0, 1, ...
        """
        problems = [r[0] for r in self._read("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key: row {r[1]} of {r[0]} points to a missing {r[2]}"
            for r in self._read("PRAGMA foreign_key_check")
        ]
        for gid, outcome, n, maxpos in self._read(
            "SELECT g.id, g.outcome, COUNT(l.id), MAX(l.position) FROM games g"
            " LEFT JOIN labels l ON l.game_id = g.id GROUP BY g.id"
        ):
            if outcome != "resign" and n == 0:
                problems.append(f"game {gid} ({outcome}) has no labels")
            if n and maxpos != n - 1:
                problems.append(f"game {gid} has label positions with gaps")
        version = self.schema_version
        if version != _latest_version():
            problems.append(f"schema version {version}, expected {_latest_version()}")
        return problems

    # -- export / import ---------------------------------------------------------------------

    def _export_rows(self) -> tuple[list[tuple], list[dict[str, Any]]]:
        with self._lock:
            # one read transaction: a consistent snapshot even while others write
            db = self._db
            db.execute("BEGIN")
            try:
                people = db.execute("SELECT id, name, created FROM participants ORDER BY id").fetchall()
                games = db.execute(
                    "SELECT g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
                    " g.class_guessed, g.true_class, g.outcome, g.reveal_step, g.started_at,"
                    " g.answered_at, g.duration_s FROM games g"
                    " JOIN participants p ON p.id = g.participant ORDER BY g.id"
                ).fetchall()
                labels: dict[int, list[str]] = {}
                for gid, text in db.execute(
                    "SELECT game_id, text FROM labels ORDER BY game_id, position"
                ):
                    labels.setdefault(gid, []).append(text)
            finally:
                db.execute("COMMIT")
        cols = ["participant", "model", "image_id", "target", "layer", "members", "class_guessed",
                "true_class", "outcome", "reveal_step", "started_at", "answered_at", "duration_s"]
        out = []
        for row in games:
            d = dict(zip(cols, row[1:]))
            d["labels"] = labels.get(row[0], [])
            out.append(d)
        return people, out

    def to_json(self, path: Any) -> Path:
        """Write everything (participants, games, labels as typed) to a UTF-8 JSON file."""
        people, games = self._export_rows()
        doc = {
            "format": EXPORT_FORMAT,
            "schema_version": self.schema_version,
            "participants": [{"name": n, "created": c} for _, n, c in people],
            "games": games,
        }
        return _atomic_write(path, lambda f: json.dump(doc, f, ensure_ascii=False, indent=1))

    def to_csv(self, path: Any) -> Path:
        """Write everything to one UTF-8 CSV file, one row per game (``record = "game"``).

        Columns: record, participant, participant_created, the map identity, class_guessed,
        true_class, outcome, reveal_step, started_at, answered_at, duration_s, label_1..label_3.
        Every participant first gets a row with ``record = "participant"`` (so that people without
        games and the sign-up order survive). Empty cells mean "none" (labels and class names are
        never empty).
        """
        people, games = self._export_rows()
        created = {n: c for _, n, c in people}

        def write(f):
            w = csv.writer(f)  # RFC 4180: CRLF rows, fields with CR, LF, "," or quotes quoted
            w.writerow(_CSV_COLUMNS)
            for _, name, c in people:
                w.writerow(["participant", name, c] + [""] * (len(_CSV_COLUMNS) - 3))
            for g in games:
                labels = g["labels"] + [""] * (MAX_LABELS - len(g["labels"]))
                w.writerow(
                    ["game", g["participant"], created[g["participant"]], g["model"], g["image_id"],
                     g["target"], g["layer"], g["members"], g["class_guessed"] or "",
                     g["true_class"], g["outcome"], g["reveal_step"], g["started_at"] or "",
                     g["answered_at"], "" if g["duration_s"] is None else repr(g["duration_s"])]
                    + labels
                )

        return _atomic_write(path, write, newline="")

    def import_(self, path: Any) -> int:
        """Add the answers of a :meth:`to_csv` or :meth:`to_json` file (by extension); returns the
        number of games added. Everything is validated first and added in one transaction."""
        path = Path(os.fspath(path))
        suffix = path.suffix.lower()
        if suffix == ".json":
            people, games = _read_json(path)
        elif suffix == ".csv":
            people, games = _read_csv(path)
        else:
            raise ValueError(f"cannot import {str(path)!r}: expected a .csv or .json file")
        prepared = []
        for i, g in enumerate(games, 1):
            try:
                key = MapKey(g["model"], g["image_id"], g["target"], g["layer"], g["members"])
                outcome = _check_outcome(g["outcome"])
                step = _check_step(int(g["reveal_step"]))
                guessed = _class_text(g.get("class_guessed"), "class_guessed", outcome == "resign")
                true_t = _class_text(g["true_class"], "true_class", False)
                labels = _check_labels(g.get("labels") or [], outcome)
                answered = _iso(_as_time(g["answered_at"], "answered_at"))
                started = _iso(_as_time(g.get("started_at"), "started_at"))
                duration = g.get("duration_s")
                duration = None if duration in (None, "") else float(duration)
                name = _clean_name(g["participant"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path.name}: game {i} is invalid: {exc}") from exc
            names = [n for n in (true_t, guessed) if n]
            cleaned = [clean_label(t, names) for t in labels]
            prepared.append((name, key, guessed, true_t, outcome, step, started, answered,
                             duration, labels, cleaned))
        with self._transaction("import") as cur:
            for name, created in people:
                self._participant_id(cur, name, create=True, created=created)
            for name, *rest in prepared:
                pid = self._participant_id(cur, name, create=True)
                self._insert_game(cur, pid, *rest)
        return len(prepared)

    @classmethod
    def from_csv(cls, csv_path: Any, path: Any = ":memory:", **kwargs: Any) -> "LabelStore":
        """A new store (``path``, default in memory) filled from a :meth:`to_csv` file."""
        if Path(os.fspath(csv_path)).suffix.lower() != ".csv":
            raise ValueError(f"from_csv expects a .csv file, got {os.fspath(csv_path)!r}")
        store = cls(path, **kwargs)
        store.import_(csv_path)
        return store

    @classmethod
    def from_json(cls, json_path: Any, path: Any = ":memory:", **kwargs: Any) -> "LabelStore":
        """A new store (``path``, default in memory) filled from a :meth:`to_json` file."""
        if Path(os.fspath(json_path)).suffix.lower() != ".json":
            raise ValueError(f"from_json expects a .json file, got {os.fspath(json_path)!r}")
        store = cls(path, **kwargs)
        store.import_(json_path)
        return store


# --------------------------------------------------------------------------------------------------
# file helpers


def _atomic_write(path: Any, write, newline: str | None = None) -> Path:
    """Write to a temporary file next to ``path`` and rename it: no half-written file is left."""
    path = Path(os.fspath(path)).expanduser()
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _read_json(path: Path) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path.name} is not an inv-widgets label export (format field missing)")
    people = [(p["name"], p.get("created")) for p in doc.get("participants", [])]
    return people, list(doc.get("games", []))


def _read_csv(path: Path) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != _CSV_COLUMNS:
            raise ValueError(
                f"{path.name} is not an inv-widgets label export: expected the columns "
                f"{', '.join(_CSV_COLUMNS)}"
            )
        people: dict[str, str] = {}
        games = []
        for n, row in enumerate(reader, 2):
            if len(row) != len(_CSV_COLUMNS):
                raise ValueError(f"{path.name}: line {n} has {len(row)} cells, expected {len(_CSV_COLUMNS)}")
            d = dict(zip(_CSV_COLUMNS, row))
            people.setdefault(d["participant"], d["participant_created"] or None)
            if d["record"] == "participant":
                continue
            if d["record"] != "game":
                raise ValueError(f"{path.name}: line {n}: record must be 'game' or 'participant'")
            d["labels"] = [d[f"label_{i}"] for i in range(1, MAX_LABELS + 1) if d[f"label_{i}"] != ""]
            d["class_guessed"] = d["class_guessed"] or None
            d["started_at"] = d["started_at"] or None
            games.append(d)
    return list(people.items()), games
