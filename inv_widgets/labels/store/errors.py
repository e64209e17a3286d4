"""Typed errors of the label store, raised the same way by every backend.

Each message names the store (its path, or its URL without the password), what happened, and what to do.
"""
from __future__ import annotations

__all__ = ["StoreBusyError", "StoreDamagedError", "StoreReadOnlyError", "StoreVersionError", "ForeignDatabaseError"]


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


class StoreDamagedError(RuntimeError):
    """The database file is damaged (or truncated, or not a database): refused, nothing was changed."""

    def __init__(self, path: str, detail: str):
        self.path = path
        self.detail = detail
        super().__init__(
            f"the label store {path!r} is damaged ({detail}); it was not changed. To recover: restore a backup "
            "copy of the file, or rebuild a new store from an export (LabelStore.from_csv('labels.csv', "
            "path='new.sqlite') or from_json); `sqlite3 damaged.sqlite .recover | sqlite3 new.sqlite` salvages "
            "what is still readable."
        )


class StoreReadOnlyError(RuntimeError):
    """The store can be read but not written (a read-only file or folder, or a database user without the
    right to write); nothing was stored."""

    def __init__(self, path: str, action: str = "write", why: str = ""):
        self.path = path
        self.action = action
        super().__init__(
            f"the label store {path!r} is read-only{f' ({why})' if why else ''}, so this {action} was not "
            "done (nothing was stored). Reading works; to save answers, give the store a writable file "
            "(or a database user allowed to write)."
        )


class StoreVersionError(RuntimeError):
    """The database was written by a newer inv-widgets (its schema version is unknown here)."""

    def __init__(self, path: str, found: int, known: int):
        self.path = path
        self.found = found
        self.known = known
        super().__init__(
            f"the label store {path!r} has schema version {found}, newer than this inv-widgets understands "
            f"({known}); upgrade inv-widgets (pip install -U inv-widgets). The store was not changed."
        )


class ForeignDatabaseError(RuntimeError):
    """The database belongs to something else: it has tables but no label-store version table."""

    def __init__(self, path: str, tables: list[str]):
        self.path = path
        self.tables = list(tables)
        shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
        super().__init__(
            f"{path!r} is not an inv-widgets label store: it already holds other tables ({shown}) and no "
            "schema_version table, so it was left alone. Give the path of a new file (or an empty database)."
        )
