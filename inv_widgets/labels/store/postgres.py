"""The PostgreSQL backend of the label store: one database on a server, shared by every Voila or JupyterHub
server of a labelling session. SQLAlchemy Core 2 with psycopg 3 (``pip install 'inv-widgets[postgres]'``)::

    store = LabelStore("postgresql://teacher@db.school.example:5432/labels")
    store = LabelStore("postgresql://teacher:secret@db/labels?sslmode=require")  # any libpq option

The same guarantees as the SQLite file:

* Every write is one transaction that first takes the store's write lock (transaction-level advisory
  locks on this database), so that a transaction that reads before it writes (undo, the "answered once"
  check, an idempotent import) never races another. An answer, an undo or a sign-up of one participant
  takes the store's lock :data:`LOCK_KEY` shared and the participant's own lock exclusive: answers of
  different players commit side by side, those of one player (two browser tabs) one after the other.
  Every other write (an import, a migration) takes :data:`LOCK_KEY` exclusive and runs alone, as every
  write does on SQLite. PostgreSQL queues waiters for a lock in arrival order, so waits are fair. A lock
  not granted within ``timeout`` seconds (``lock_timeout``) raises :class:`StoreBusyError`; nothing was done.
* A writer killed mid-answer loses its connection; the server rolls its transaction back and frees the lock.
* Reads run in autocommit (each sees the latest committed state); :meth:`snapshot` is a read-only
  ``REPEATABLE READ`` transaction (exports read one consistent state while others write).
* A user without the right to write, or a read-only server (a standby), gives :class:`StoreReadOnlyError`.
* A connection lost before the commit gives :class:`StoreConnectionError` (nothing was stored); one lost
  during the commit gives :class:`AnswerOutcomeUnknown` (it may be stored: retry with the same ``answer_id``,
  which the store keeps once). Every error names the store by its URL with the password masked (also a
  password with an unescaped ``@``, which is read as part of the password, as a person means it).
* The schema's ``"postgresql"`` steps are in :mod:`.schema`; ids come from identity columns (``RETURNING id``).
* A forked child gets its own connections (the pool is never shared across processes); a pickled store
  reconnects with the same URL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from .errors import AnswerOutcomeUnknown, StoreBusyError, StoreConnectionError, StoreError, StoreReadOnlyError, mask_url

__all__ = ["PostgresBackend", "LOCK_KEY", "normalise_url"]

#: The advisory-lock key of the store's write lock (any fixed 64-bit number; per database).
LOCK_KEY = 0x1_4E56_1ABE_15  # "INV labels"
#: The first key of a participant's lock (two-int advisory keys, a key space apart from LOCK_KEY's): the
#: second is ``hashtext(name)``.
PARTICIPANT_LOCK_CLASS = 0x1AB5

_BUSY_STATES = {"55P03", "40P01", "40001", "57014"}  # lock_not_available, deadlock, serialization, canceled
_READ_ONLY_STATES = {"25006", "42501"}  # read_only_sql_transaction, insufficient_privilege
# connection_exception (class 08), admin / crash shutdown, cannot connect now
_LOST_STATES = {"57P01", "57P02", "57P03"}


def _lost(exc: BaseException) -> bool:
    """Whether a SQLAlchemy error means the connection to the server is gone."""
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    if state is not None:
        return state.startswith("08") or state in _LOST_STATES
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(orig, psycopg.OperationalError)


def _escape_userinfo(text: str) -> str:
    """``scheme://user:p@ss@host/db`` with the password's ``@`` (and other reserved characters) percent-escaped:
    a password with an unescaped ``@`` is read up to the last ``@`` before the host, as a person means it."""
    from urllib.parse import quote

    head, sep, rest = text.partition("://")
    if not sep or rest.count("@") < 2:
        return text
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch, rest.rfind("@") + 1)
        if i >= 0:
            cut = min(cut, i)
    netloc, tail = rest[:cut], rest[cut:]
    if netloc.count("@") < 2:
        return text
    userinfo, host = netloc.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    return f"{head}://{quote(user, safe='%')}{':' + quote(password, safe='%') if colon else ''}@{host}{tail}"


def _need_sqlalchemy():
    try:
        import psycopg  # noqa: F401
        import sqlalchemy
    except ImportError as exc:
        raise ImportError(
            f"a PostgreSQL label store needs SQLAlchemy 2 and psycopg 3 ({exc}); "
            "install them with: pip install 'inv-widgets[postgres]'"
        ) from exc
    return sqlalchemy


def normalise_url(url: Any):
    """A SQLAlchemy URL for psycopg 3 from ``postgresql://``, ``postgres://`` or ``postgresql+psycopg://``."""
    sa = _need_sqlalchemy()
    text = os.fspath(url) if not isinstance(url, str) else url
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        u = sa.engine.make_url(_escape_userinfo(text))
    except Exception as exc:
        detail = str(exc).replace(text, mask_url(text))
        raise ValueError(f"cannot read the database URL {mask_url(text)!r}: {detail}") from None
    backend, _, driver = u.drivername.partition("+")
    if backend != "postgresql":
        raise ValueError(f"{mask_url(text)!r} is not a postgresql:// URL")
    if driver not in ("", "psycopg"):
        raise ValueError(
            f"the label store talks to PostgreSQL through psycopg 3: write postgresql://... "
            f"(or postgresql+psycopg://...), not postgresql+{driver}://"
        )
    if not u.database:
        raise ValueError(
            f"the URL {u.render_as_string(hide_password=True)!r} names no database: "
            "postgresql://user@host:port/DATABASE"
        )
    return u.set(drivername="postgresql+psycopg")


@lru_cache(maxsize=256)
def _text(sql: str):
    from sqlalchemy import text

    return text(sql)


class _Result:
    """Rows of one statement as plain tuples (what the shared queries expect of sqlite3 cursors)."""

    __slots__ = ("rows",)

    def __init__(self, result):
        self.rows = [tuple(r) for r in result] if result.returns_rows else []

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return list(self.rows)

    def __iter__(self):
        return iter(self.rows)


class _Tx:
    """One transaction on a SQLAlchemy connection: ``execute``, ``executemany`` and ``insert`` (RETURNING id)."""

    __slots__ = ("conn",)

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> _Result:
        return _Result(self.conn.execute(_text(sql), dict(params) if params else {}))

    def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        rows = [dict(r) for r in rows]
        if rows:
            self.conn.execute(_text(sql), rows)

    def insert(self, sql: str, params: Any) -> int:
        return int(self.conn.execute(_text(sql + " RETURNING id"), dict(params)).scalar_one())


class PostgresBackend:
    """A label store in a PostgreSQL database (see the module docstring)."""

    dialect = "postgresql"

    def __init__(self, url: Any, *, timeout: float = 5.0, synchronous: str = "FULL"):
        self.url = normalise_url(url)
        self.where = self.url.set(drivername="postgresql").render_as_string(hide_password=True)
        self.timeout = float(timeout)
        synchronous = str(synchronous).upper()
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._engine_ = None
        self._pid = os.getpid()
        self._closed = False
        self._writes = 0
        self.read_only = False
        try:
            self.read_only = bool(self._server_read_only())
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------------

    def _make_engine(self):
        sa = _need_sqlalchemy()
        engine = sa.create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=4,
            max_overflow=8,
            pool_timeout=max(self.timeout, 1.0),
            connect_args={"connect_timeout": max(2, int(round(self.timeout))), "application_name": "inv-widgets"},
        )
        if self.synchronous == "NORMAL":

            @sa.event.listens_for(engine, "connect")
            def _async_commit(dbapi_conn, _record):  # committed answers survive a crash of the client, not
                with dbapi_conn.cursor() as cur:  # necessarily one of the server's machine
                    cur.execute("SET synchronous_commit = off")
                dbapi_conn.commit()

        return engine

    @property
    def _engine(self):
        if self._closed:
            raise ValueError(f"the label store {self.where!r} is closed")
        if os.getpid() != self._pid:
            # a forked child: never touch the parent's pooled connections
            if self._engine_ is not None:
                self._engine_.dispose(close=False)
            self._engine_ = None
            self._lock = threading.Lock()
            self._pid = os.getpid()
        if self._engine_ is None:
            with self._lock:
                if self._engine_ is None:
                    self._engine_ = self._make_engine()
        return self._engine_

    @contextmanager
    def _connection(self, action: str):
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.exc import TimeoutError as PoolTimeout

        try:
            conn = self._engine.connect()
        except PoolTimeout as exc:
            raise StoreBusyError(self.where, self.timeout, action) from exc
        except DBAPIError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = reason.replace(self.url.password or "\0", "***") if self.url.password else reason
            raise StoreConnectionError(
                self.where,
                action,
                f"cannot connect: {reason}; check that the server "
                "runs, and the host, port, user, password and database of the URL",
            ) from exc
        try:
            yield conn
        finally:
            conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def shareable(self) -> bool:
        return True

    def close(self) -> None:
        self._closed = True
        engine, self._engine_ = self._engine_, None
        if engine is not None and os.getpid() == self._pid:
            engine.dispose()

    # -- errors ------------------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, action: str) -> BaseException | None:
        """The store's typed error for a SQLAlchemy error, naming the store (None: not a database error)."""
        from sqlalchemy.exc import DBAPIError

        state = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if state in _BUSY_STATES:
            return StoreBusyError(self.where, self.timeout, action)
        if state in _READ_ONLY_STATES:
            why = "the server is read-only" if state == "25006" else "this database user may not write"
            return StoreReadOnlyError(self.where, action, why)
        if not isinstance(exc, DBAPIError):
            return None
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        detail = detail[0] if detail else type(exc).__name__
        if self.url.password:
            detail = detail.replace(self.url.password, "***")
        if _lost(exc):
            return StoreConnectionError(self.where, action, detail)
        return StoreError(self.where, action, detail)

    def _raise(self, exc: BaseException, action: str):
        typed = self._translate(exc, action)
        if typed is not None:
            raise typed from exc
        raise exc

    # -- transactions and reads -------------------------------------------------------------------

    @contextmanager
    def transaction(self, action: str = "write", scope: str | None = None) -> Iterator[_Tx]:
        """A write transaction holding the store's write lock from its start (see the module docstring);
        with a ``scope`` (a participant's name), the store's lock shared and the scope's lock exclusive."""
        from sqlalchemy.exc import DBAPIError

        if self.read_only:
            raise StoreReadOnlyError(self.where, action, "the server or this database user is read-only")
        with self._connection(action) as conn:
            trans = conn.begin()
            try:
                self._lock_for(conn, action, scope)
                yield _Tx(conn)
            except BaseException as exc:
                try:
                    trans.rollback()
                except Exception:  # noqa: BLE001 - a lost connection: the server rolls back itself
                    pass
                if isinstance(exc, DBAPIError):
                    self._raise(exc, action)
                raise
            try:
                self._commit(trans)
            except DBAPIError as exc:
                if _lost(exc):  # the server may have committed before the connection went
                    raise AnswerOutcomeUnknown(
                        self.where,
                        action,
                        detail=str(exc.orig or exc).strip().splitlines()[0] if str(exc).strip() else "",
                    ) from exc
                self._raise(exc, action)
            self._writes += 1

    @staticmethod
    def _commit(trans) -> None:
        """Commit (a seam for the tests, which lose the connection here)."""
        trans.commit()

    def _lock_for(self, conn, action: str, scope: str | None) -> None:
        store = "pg_advisory_xact_lock" if scope is None else "pg_advisory_xact_lock_shared"
        own = "" if scope is None else f", pg_advisory_xact_lock({PARTICIPANT_LOCK_CLASS}, hashtext(:scope))"
        params = {} if scope is None else {"scope": scope}
        if self.timeout > 0:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(self.timeout * 1000))}")
            conn.execute(_text(f"SELECT {store}({int(LOCK_KEY)}){own}"), params)
            return
        # timeout 0: take the locks only when they are free now (lock_timeout = 0 would mean "wait forever")
        own = "" if scope is None else f" AND pg_try_advisory_xact_lock({PARTICIPANT_LOCK_CLASS}, hashtext(:scope))"
        if not conn.execute(_text(f"SELECT pg_try_{store[3:]}({int(LOCK_KEY)}){own}"), params).scalar():
            raise StoreBusyError(self.where, self.timeout, action)

    @contextmanager
    def snapshot(self) -> Iterator[_Tx]:
        """A read-only REPEATABLE READ transaction: one consistent state for every read inside."""
        from sqlalchemy.exc import DBAPIError

        with self._connection("read") as conn:
            try:
                with conn.begin():
                    conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield _Tx(conn)
            except DBAPIError as exc:
                self._raise(exc, "read")

    def read(self, sql: str, params: Any = ()) -> list[tuple]:
        from sqlalchemy.exc import DBAPIError

        with self._connection("read") as conn:
            try:
                rows = [tuple(r) for r in conn.execute(_text(sql), dict(params) if params else {})]
                conn.rollback()  # nothing to keep: end the implicit transaction at once
                return rows
            except DBAPIError as exc:
                self._raise(exc, "read")

    # -- what differs between databases ---------------------------------------------------------------

    def _server_read_only(self) -> bool:
        """A standby (in recovery) or ``default_transaction_read_only``; a user without INSERT on the games
        table once the store exists."""
        standby, default_ro = self.read(
            "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'"
        )[0]
        if standby or default_ro:
            return True
        if self.has_table("games"):
            return not self.read(
                "SELECT has_table_privilege('games', 'INSERT') AND has_table_privilege('labels', 'INSERT')"
            )[0][0]
        return False

    def has_table(self, name: str) -> bool:
        return bool(
            self.read(
                "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = :name", {"name": name}
            )
        )

    def tables(self) -> list[str]:
        return [
            r[0]
            for r in self.read("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
        ]

    def change_stamp(self) -> tuple[int, int]:
        """(writes through this object, the server's next transaction id): a write committed by any
        connection took a transaction id, so the second number moves with it (writes to other databases of
        the same server move it too: a cache keyed by it is then rebuilt once more than needed)."""
        return self._writes, int(self.read("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")[0][0])

    def integrity_problems(self) -> list[str]:
        """The server keeps its files consistent itself (write-ahead log, page checksums when enabled); this
        checks that every reference of the store holds."""
        problems = []
        for child, col, parent in (("labels", "game_id", "games"), ("games", "participant", "participants")):
            n = self.read(f"SELECT COUNT(*) FROM {child} c LEFT JOIN {parent} p ON p.id = c.{col} WHERE p.id IS NULL")[
                0
            ][0]
            if n:
                problems.append(f"foreign key: {n} rows of {child} point to a missing {parent[:-1]}")
        return problems

    def state(self) -> dict[str, Any]:
        """What a pickled store needs to reconnect in another process (the URL with its password)."""
        return {
            "path": self.url.set(drivername="postgresql").render_as_string(hide_password=False),
            "timeout": self.timeout,
            "synchronous": self.synchronous,
        }
