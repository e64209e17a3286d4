"""The SQLite backend of the label store: one file (or ``":memory:"``) through the standard library.

* WAL journal (readers never block the writer), a busy timeout, ``synchronous=FULL`` by default (an
  answer that was committed survives a crash of the process or of the machine), foreign keys on.
* Every write is one ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so a transaction
  that reads before it writes never fails half-way because another process wrote in between.
* Several processes may write to one file at once; a lock held longer than ``timeout`` seconds by
  another connection raises :class:`~inv_widgets.labels.store.errors.StoreBusyError`.
* A forked child opens its own connection (never the parent's); a pickled store reconnects.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .errors import StoreBusyError

__all__ = ["SQLiteBackend", "resolve_path", "is_busy"]


def resolve_path(path: Any) -> str:
    """An absolute file path or ``":memory:"`` from a path, ``sqlite:///relative`` or ``sqlite:////absolute``."""
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
        raise ValueError(f"the {scheme!r} database URL is not supported yet; use a file path or sqlite:///path")
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


def is_busy(exc: BaseException) -> bool:
    """Whether an error means another connection holds the lock (SQLITE_BUSY or SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (5, 6):
        return True
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


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
        self._connect()

    # -- connection ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError as exc:
            raise sqlite3.OperationalError(f"cannot open the label store {self.path!r}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self.path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # pragma: no cover - exotic file systems
                    raise sqlite3.OperationalError(f"could not switch {self.path!r} to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        except sqlite3.OperationalError as exc:
            conn.close()
            if is_busy(exc):
                raise StoreBusyError(self.path, self.timeout, "open") from exc
            raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()

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
            self._conn = None

    # -- transactions and reads -------------------------------------------------------------------

    @contextmanager
    def transaction(self, action: str = "write") -> Iterator[_Tx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rollback on any error; busy -> StoreBusyError."""
        with self._lock:
            db = self.connection
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, action) from exc
                raise
            try:
                yield _Tx(db.cursor())
                db.execute("COMMIT")
                self._writes += 1
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, action) from exc
                raise

    @contextmanager
    def snapshot(self) -> Iterator[_Tx]:
        with self._lock:
            db = self.connection
            db.execute("BEGIN")
            try:
                yield _Tx(db.cursor())
            finally:
                db.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] | dict = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.connection.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    raise StoreBusyError(self.path, self.timeout, "read") from exc
                raise

    # -- what differs between databases ---------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def change_stamp(self) -> tuple[int, int]:
        return self._writes, self.read("PRAGMA data_version")[0][0]

    def integrity_problems(self) -> list[str]:
        problems = [r[0] for r in self.read("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [
            f"foreign key: row {r[1]} of {r[0]} points to a missing {r[2]}"
            for r in self.read("PRAGMA foreign_key_check")
        ]
        return problems

    def state(self) -> dict[str, Any]:
        """What a pickled store needs to reconnect in another process."""
        return {"path": self.path, "timeout": self.timeout, "synchronous": self.synchronous}
