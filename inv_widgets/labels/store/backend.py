"""What a database backend gives the label store, and the registry that picks one for a path or URL.

:class:`~inv_widgets.labels.store.LabelStore` holds the API and the queries (:mod:`.queries`, SQL that
every backend runs, with ``:name`` parameters); a backend holds what differs between databases: how to
connect, the transaction and its locking, which errors mean "busy", integrity checks, a change stamp.
SQLite is :mod:`.sqlite`, PostgreSQL :mod:`.postgres`. A new backend is a new module with a class that follows
:class:`Backend`,
registered in :data:`BACKENDS` under its URL scheme; nothing else changes.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

__all__ = ["Backend", "Tx", "BACKENDS", "open_backend"]

Params = Mapping[str, Any] | Sequence[Any]


@runtime_checkable
class Tx(Protocol):
    """One open transaction. ``execute`` returns an object with ``fetchone()``, ``fetchall()`` and
    iteration over rows (tuples)."""

    def execute(self, sql: str, params: Params = ...) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> Any: ...

    def insert(self, sql: str, params: Params) -> int:
        """Run an ``INSERT`` into a table with an integer ``id`` and return the new row's id."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A connection to one label database, safe to call from several threads."""

    #: which SQL of a dialect-specific migration step this backend runs, e.g. "sqlite"
    dialect: str
    #: the path or URL, as shown in messages (passwords removed)
    where: str
    #: True when the database can be read but not written (writes raise StoreReadOnlyError)
    read_only: bool

    def transaction(self, action: str = "write", scope: str | None = None) -> AbstractContextManager[Tx]:
        """A write transaction that holds the write lock from its start: commit on success, rollback
        on any error; :class:`~inv_widgets.labels.store.StoreBusyError` when the lock is not free
        within the timeout (nothing was done). With a ``scope`` (a participant's name) the transaction
        need only exclude the writes of the same scope and the unscoped ones; a backend may run writes of
        different scopes side by side (PostgreSQL does; SQLite runs every write alone)."""
        ...

    def snapshot(self) -> AbstractContextManager[Tx]:
        """A read transaction: every read inside sees one consistent state, even while others write."""
        ...

    def read(self, sql: str, params: Params = ()) -> list[tuple]:
        """One read outside a transaction (``StoreBusyError`` when locked out)."""
        ...

    def has_table(self, name: str) -> bool: ...

    def tables(self) -> list[str]:
        """The database's own tables (of the current schema), to refuse another application's database."""
        ...

    def change_stamp(self) -> Hashable:
        """A value that changes whenever this or any other connection commits a write."""
        ...

    def integrity_problems(self) -> list[str]:
        """The database engine's own consistency checks; [] when healthy."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def shareable(self) -> bool:
        """Whether another process can open the same database (False for a private in-memory one)."""
        ...

    def close(self) -> None: ...


#: URL scheme -> the backend class, or ``"module:Class"`` (imported on first use). Paths without a scheme
#: are SQLite files. A backend class is called as ``cls(path_or_url, timeout=..., synchronous=...)``.
BACKENDS: dict[str, Any] = {
    "sqlite": "inv_widgets.labels.store.sqlite:SQLiteBackend",
    "postgresql": "inv_widgets.labels.store.postgres:PostgresBackend",
    "postgres": "inv_widgets.labels.store.postgres:PostgresBackend",
}


def scheme_of(path: Any) -> str:
    """The backend name of a path or URL: ``"sqlite"`` for a file path, else the URL's scheme."""
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if text.startswith("sqlite:"):
        return "sqlite"
    if "://" in text:
        return text.split("://", 1)[0].split("+", 1)[0].lower()
    return "sqlite"


def open_backend(path: Any, **options: Any) -> Backend:
    """The backend for ``path`` (a file path, ``":memory:"`` or a database URL), connected."""
    scheme = scheme_of(path)
    target = BACKENDS.get(scheme)
    if target is None:
        raise ValueError(f"the {scheme!r} database URL is not supported yet; use a file path or sqlite:///path")
    if isinstance(target, str):
        module, name = target.split(":")
        target = getattr(importlib.import_module(module), name)
    return target(path, **options)
