"""The SQLite backend of the label store: one file (or ``":memory:"``) through the standard library.

* WAL journal (readers never block the writer), ``synchronous=FULL`` by default (an answer that was
  committed survives a crash of the process or of the machine), foreign keys on.
* Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so a transaction
  that reads before it writes never fails half-way because another process wrote in between.
* Fair, short waits: SQLite's own busy handler sleeps longer and longer (up to 100 ms a try), so a writer
  that has waited long polls rarely while newcomers poll often, and one that writes back to back takes
  the lock again before a sleeper wakes: writers starve. Here a writer first takes a turnstile (an
  ``flock`` on the side file ``<store>-writers``), then ``BEGIN IMMEDIATE``, then lets the turnstile go:
  a writer that waits holds the turnstile, so the one that just committed cannot take the lock again
  before it. Both are tried with short jittered sleeps (:data:`BACKOFF_CAP_S` at most) until
  ``timeout``: an old waiter tries as often as a new one. A lock held past ``timeout`` raises
  :class:`~inv_widgets.labels.store.errors.StoreBusyError`.
* Opening checks the file (``PRAGMA quick_check``): a damaged, truncated or foreign (not SQLite) file is
  refused with :class:`~inv_widgets.labels.store.errors.StoreDamagedError`, which names it and how to recover.
* A file (or folder) this process may not write opens read-only: every read works, a write raises
  :class:`~inv_widgets.labels.store.errors.StoreReadOnlyError`.
* A forked child opens its own connection (never the parent's); a pickled store reconnects.
"""

from __future__ import annotations

import os
import random

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no turnstile, jittered retries only
    fcntl = None
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import (
    AnswerOutcomeUnknown,
    StoreBusyError,
    StoreDamagedError,
    StoreError,
    StoreReadOnlyError,
    StoreWriteError,
)

__all__ = ["SQLiteBackend", "resolve_path", "is_busy", "BACKOFF_CAP_S"]

#: The longest sleep between two tries of a waiting writer (seconds); each sleep is uniform in
#: [0, min(cap, 0.25 ms x 2**try)].
BACKOFF_CAP_S = 0.004
_BACKOFF_BASE_S = 0.00025

# SQLite's primary result codes
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26

#: the text columns of the store's tables, checked for text that is not UTF-8 (damage inside a row)
TEXT_COLUMNS = {
    "participants": ("name", "created"),
    "games": (
        "model",
        "image_id",
        "layer",
        "members",
        "class_guessed",
        "true_class",
        "outcome",
        "started_at",
        "answered_at",
    ),
    "labels": ("text", "text_clean"),
}


def resolve_path(path: Any) -> str:
    """An absolute file path or ``":memory:"`` from a path, ``sqlite:///relative`` or ``sqlite:////absolute``."""
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if path.startswith("sqlite:"):
        rest = path[len("sqlite:") :]
        if rest in ("", "//", "///:memory:", "//:memory:"):
            return ":memory:"
        if not rest.startswith("///"):
            raise ValueError(f"cannot read the URL {path!r}: use sqlite:///relative/path or sqlite:////absolute/path")
        path = rest[3:]
        if not path:
            return ":memory:"
    elif "://" in path:
        scheme = path.split("://", 1)[0]
        raise ValueError(f"the {scheme!r} database URL is not supported; use a file path or sqlite:///path")
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


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Whether an error means another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _code(exc)
    if code is not None:
        return code in (_BUSY, _LOCKED)
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _is_read_only(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and (
        _code(exc) == _READONLY or "readonly database" in str(exc).lower()
    )


def _is_damaged(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if _code(exc) in (_CORRUPT, _NOTADB):
        return True
    msg = str(exc).lower()
    return "malformed" in msg or "not a database" in msg or "could not decode" in msg


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and (
        _code(exc) == _FULL or "database or disk is full" in str(exc).lower()
    )


def _utf8_ok(value) -> int:
    """SQL function: whether a value (a BLOB cast of a text column) is valid UTF-8 (NULL counts as valid)."""
    if value is None or isinstance(value, (int, float)):
        return 1
    try:
        bytes(value).decode("utf-8")
        return 1
    except UnicodeDecodeError:
        return 0


def undecodable_rows(conn: sqlite3.Connection, limit: int = 20) -> list[str]:
    """Where the store's text is not UTF-8 ("labels row 12 (text)"): damage inside a row, which SQLite's own
    checks do not see and which makes every read of that row fail."""
    conn.create_function("inv_utf8_ok", 1, _utf8_ok, deterministic=True)
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = []
    for table, columns in TEXT_COLUMNS.items():
        if table not in have:
            continue
        present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        cols = [c for c in columns if c in present]
        test = " OR ".join(f"NOT inv_utf8_ok(CAST({c} AS BLOB))" for c in cols)
        rows = conn.execute(
            f"SELECT rowid, {', '.join(f'inv_utf8_ok(CAST({c} AS BLOB))' for c in cols)}"
            f" FROM {table} WHERE {test} LIMIT {int(limit)}"
        ).fetchall()
        for row in rows:
            bad = [c for c, ok in zip(cols, row[1:]) if not ok]
            found.append(f"{table} row {row[0]} ({', '.join(bad)}): text that is not UTF-8")
    return found


class _Tx:
    """A transaction's cursor: ``execute`` / ``executemany`` as sqlite3's, plus ``insert`` -> new id."""

    __slots__ = ("cursor",)

    def __init__(self, cursor: sqlite3.Cursor):
        self.cursor = cursor

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.cursor.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        return self.cursor.executemany(sql, rows)

    def insert(self, sql: str, params: Any) -> int:
        return self.cursor.execute(sql, params).lastrowid

    @property
    def connection(self) -> sqlite3.Connection:
        return self.cursor.connection


def _writable(path: str) -> bool:
    """Whether this process may write the database file and its WAL side files (``-wal``, ``-shm``)."""
    folder = os.path.dirname(path) or "."
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return False
    if not os.access(folder, os.W_OK | os.X_OK):
        # WAL needs the side files: writable only when they exist and are writable themselves
        return all(
            os.path.exists(path + s) and os.access(path + s, os.W_OK) for s in ("-wal", "-shm")
        ) and os.path.exists(path)
    return True


class SQLiteBackend:
    """A SQLite database file (created when missing) or a private in-memory database."""

    dialect = "sqlite"

    def __init__(self, path: Any = ":memory:", *, timeout: float = 5.0, synchronous: str = "FULL"):
        self.path = resolve_path(path)
        self.where = self.path
        self.timeout = float(timeout)
        synchronous = str(synchronous).upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.synchronous = synchronous
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._stale: list[sqlite3.Connection] = []
        self._writes = 0  # commits through this object (with PRAGMA data_version: the change stamp)
        self.read_only = False
        self._turnstile: int | None = None  # fd of <store>-writers (see the module docstring)
        self._connect(check=True)

    # -- connection ---------------------------------------------------------------------------------

    def _open(self, read_only: bool, immutable: bool = False) -> sqlite3.Connection:
        if self.path == ":memory:":
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if not read_only:
            return sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        query = "mode=ro" + ("&immutable=1" if immutable else "")
        uri = f"file:{urllib.parse.quote(self.path)}?{query}"
        return sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False)

    def _connect(self, check: bool = False) -> None:
        exists = self.path != ":memory:" and os.path.exists(self.path)
        wal = self.path + "-wal"
        if check and exists and os.path.getsize(self.path) == 0 and not (os.path.exists(wal) and os.path.getsize(wal)):
            raise StoreDamagedError(
                self.path,
                "the file is empty (0 bytes): a store that lost its contents, or a "
                "file made by hand; if you meant a new store, delete the file first",
            )
        read_only = self.path != ":memory:" and not _writable(self.path)
        if read_only and not exists:
            raise PermissionError(
                f"cannot create the label store {self.path!r}: its folder is read-only; "
                "give a path in a folder you may write"
            )
        try:
            conn = self._open(read_only)
        except sqlite3.OperationalError as exc:
            raise sqlite3.OperationalError(f"cannot open the label store {self.path!r}: {exc}") from exc
        try:
            try:
                self._configure(conn, read_only)
            except sqlite3.OperationalError:
                if not read_only:
                    raise
                # A WAL file without its side files (-shm), which a read-only connection may not create:
                # nobody can be writing it (it is read-only to us, or its folder is), read it as it is.
                conn.close()
                conn = self._open(True, immutable=True)
                self._configure(conn, True)
            if check and exists and os.path.getsize(self.path) > 0:
                problems = [
                    line.strip()
                    for r in conn.execute("PRAGMA quick_check").fetchall()
                    if r[0] != "ok"
                    for line in str(r[0]).splitlines()
                    if line.strip() and not line.startswith("***")
                ]
                if problems:
                    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
                    raise StoreDamagedError(self.path, "PRAGMA quick_check: " + "; ".join(problems[:3]) + more)
                rows = undecodable_rows(conn, limit=4)
                if rows:
                    more = "; and more" if len(rows) > 3 else ""
                    raise StoreDamagedError(self.path, "; ".join(rows[:3]) + more)
        except sqlite3.DatabaseError as exc:
            conn.close()
            typed = self._translate(exc, "open")
            if typed is not None:
                raise typed from exc
            raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.read_only = read_only
        self._pid = os.getpid()
        self._turnstile = None
        if not read_only and self.path != ":memory:" and fcntl is not None:
            try:  # our own open file description: flock excludes other objects of this process too
                self._turnstile = os.open(self.path + "-writers", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError:
                self._turnstile = None  # fairness degrades to jittered retries; correctness is SQLite's

    def _configure(self, conn: sqlite3.Connection, read_only: bool) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # reads the header: damaged files fail here
        if self.path != ":memory:" and not read_only:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":  # pragma: no cover - exotic file systems
                raise sqlite3.OperationalError(f"could not switch {self.path!r} to WAL mode (got {mode!r})")
        if not read_only:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    @property
    def connection(self) -> sqlite3.Connection:
        """The open sqlite3 connection of this process (reconnects in a forked child)."""
        if os.getpid() != self._pid:
            # A forked child must not use its parent's connection: open its own.
            if self.path == ":memory:":
                raise RuntimeError("an in-memory LabelStore cannot be shared with another process")
            if self._conn is not None:
                self._stale.append(self._conn)  # never close a connection inherited by fork
            self._conn = None
            self._turnstile = None  # the parent's: shares its flock, never use it here
            self._lock = threading.RLock()
            self._connect()
        if self._conn is None:
            raise ValueError(f"the label store {self.path!r} is closed")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    @property
    def shareable(self) -> bool:
        return self.path != ":memory:"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and os.getpid() == self._pid:
                self._conn.close()
                if self._turnstile is not None:
                    os.close(self._turnstile)
            self._conn = None
            self._turnstile = None

    # -- errors ------------------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, action: str, committing: bool = False) -> BaseException | None:
        """The store's typed error for a sqlite3 error, naming the store (None: not a database error, re-raise
        it as it is). An input/output error while committing leaves the outcome unknown."""
        if is_busy(exc):
            return StoreBusyError(self.path, self.timeout, action)
        if _is_read_only(exc):
            return StoreReadOnlyError(self.path, action, "the file or its folder cannot be written")
        if _is_damaged(exc):
            return StoreDamagedError(self.path, str(exc))
        if _is_full(exc):
            return StoreWriteError(self.path, action, "the disk is full")
        if isinstance(exc, sqlite3.DatabaseError) and _code(exc) == _IOERR:
            if committing:
                return AnswerOutcomeUnknown(self.path, action, detail=str(exc))
            return StoreWriteError(self.path, action, f"input/output error: {exc}")
        if isinstance(exc, sqlite3.OperationalError):
            return StoreError(self.path, action, str(exc))
        return None

    # -- transactions and reads -------------------------------------------------------------------

    def _retry(self, attempt_once, deadline: float, action: str) -> None:
        """Call ``attempt_once()`` until it returns True, with short jittered sleeps; StoreBusyError at
        ``deadline``."""
        attempt = 0
        while not attempt_once():
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreBusyError(self.path, self.timeout, action)
            ceiling = min(BACKOFF_CAP_S, _BACKOFF_BASE_S * (1 << min(attempt, 16)))
            time.sleep(min(left, random.uniform(0.0, ceiling)))
            attempt += 1

    def _begin(self, db: sqlite3.Connection, action: str) -> None:
        """Turnstile, then ``BEGIN IMMEDIATE``, both retried until ``timeout`` (see the module docstring)."""
        deadline = time.monotonic() + self.timeout
        gate = self._turnstile

        def through_gate() -> bool:
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def begin() -> bool:
            try:
                db.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                return False

        if gate is not None:
            self._retry(through_gate, deadline, action)
        try:
            db.execute("PRAGMA busy_timeout = 0")
            try:
                self._retry(begin, deadline, action)
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        finally:
            if gate is not None:
                fcntl.flock(gate, fcntl.LOCK_UN)

    @contextmanager
    def transaction(self, action: str = "write", scope: str | None = None) -> Iterator[_Tx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rollback on any error; typed errors for busy, read-only, damaged.
        SQLite has one write lock: every write runs alone, whatever its ``scope``."""
        if self.read_only:
            raise StoreReadOnlyError(self.path, action, "the file or its folder cannot be written")
        with self._lock:
            db = self.connection
            try:
                self._begin(db, action)
            except sqlite3.DatabaseError as exc:
                typed = self._translate(exc, action)
                if typed is not None:
                    raise typed from exc
                raise
            committing = False
            try:
                yield _Tx(db.cursor())
                committing = True
                self._commit(db)
                self._writes += 1
            except BaseException as exc:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.DatabaseError:
                    pass  # the first error is the one to report
                typed = self._translate(exc, action, committing=committing and not _is_full(exc))
                if typed is not None:
                    raise typed from exc
                raise

    @staticmethod
    def _commit(db: sqlite3.Connection) -> None:
        """``COMMIT`` (a seam for the tests, which fail it the way a disk does)."""
        db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[_Tx]:
        with self._lock:
            db = self.connection
            db.execute("BEGIN")
            try:
                yield _Tx(db.cursor())
            except sqlite3.DatabaseError as exc:
                typed = self._translate(exc, "read")
                if typed is not None:
                    raise typed from exc
                raise
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] | dict = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.connection.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                typed = self._translate(exc, "read")
                if typed is not None:
                    raise typed from exc
                raise

    # -- what differs between databases ---------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def tables(self) -> list[str]:
        """Every table of the database (SQLite's own ``sqlite_*`` tables left out)."""
        return [
            r[0]
            for r in self.read(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        ]

    def change_stamp(self) -> tuple[int, int]:
        return self._writes, self.read("PRAGMA data_version")[0][0]

    def integrity_problems(self) -> list[str]:
        problems = [r[0] for r in self.read("PRAGMA integrity_check") if r[0] != "ok"]
        with self._lock:
            problems += undecodable_rows(self.connection)
        problems += [
            f"foreign key: row {r[1]} of {r[0]} points to a missing {r[2]}"
            for r in self.read("PRAGMA foreign_key_check")
        ]
        return problems

    def state(self) -> dict[str, Any]:
        """What a pickled store needs to reconnect in another process."""
        return {"path": self.path, "timeout": self.timeout, "synchronous": self.synchronous}
