"""Typed errors of the label store, raised the same way by every backend.

Each message names the store (its path, or its URL without the password), what happened, and what to do.
"""

from __future__ import annotations

__all__ = [
    "StoreBusyError",
    "StoreDamagedError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "ForeignDatabaseError",
    "AnswerOutcomeUnknown",
    "StoreConnectionError",
    "StoreWriteError",
    "StoreError",
    "mask_url",
]


def mask_url(text: str) -> str:
    """A database URL as shown in messages: the password replaced by ``***``, also when it holds an
    unescaped ``@`` (everything between the first ``:`` after the scheme's ``//`` and the last ``@`` before
    the host is the password)."""
    text = str(text)
    head, sep, rest = text.partition("://")
    if not sep:
        return text
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch, rest.rfind("@") + 1 if "@" in rest else 0)
        if i >= 0:
            cut = min(cut, i)
    netloc, tail = rest[:cut], rest[cut:]
    if "@" not in netloc:
        return text
    userinfo, host = netloc.rsplit("@", 1)
    user, colon, _password = userinfo.partition(":")
    return f"{head}://{user}{':***' if colon else ''}@{host}{tail}"


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
    """The database file is damaged (or truncated, empty, or not a database, or a row in it cannot be read):
    refused, nothing was changed."""

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


class AnswerOutcomeUnknown(RuntimeError):
    """The connection was lost while an answer was being committed: it may or may not be stored.

    Retrying with the same ``answer_id`` is safe on every backend: the store keeps an answer once per
    ``answer_id`` (a second call with the same id and the same answer returns the stored game's id)."""

    def __init__(self, path: str, action: str = "write", answer_id: str | None = None, detail: str = ""):
        self.path = path
        self.action = action
        self.answer_id = answer_id
        retry = f"record_answer(..., answer_id={answer_id!r})" if answer_id else "the same call"
        super().__init__(
            f"the label store {path!r} lost the connection while this {action} was being committed"
            f"{f' ({detail})' if detail else ''}, so it may or may not be stored. Retry {retry}: an answer with "
            "the same answer_id is stored at most once."
        )


class StoreConnectionError(ConnectionError):
    """The connection to the store was lost (or refused) before anything was committed: nothing was stored."""

    def __init__(self, path: str, action: str = "write", detail: str = ""):
        self.path = path
        self.action = action
        super().__init__(
            f"lost the connection to the label store {path!r}{f' ({detail})' if detail else ''}, so this "
            f"{action} was not done (nothing was stored). Check that the server runs, then retry."
        )


class StoreWriteError(OSError):
    """The store's file could not be written (a full disk, an input/output error): nothing was stored."""

    def __init__(self, path: str, action: str = "write", detail: str = ""):
        self.path = path
        self.action = action
        super().__init__(
            f"could not write the label store {path!r}{f' ({detail})' if detail else ''}, so this {action} was "
            "not done (nothing was stored). Free space on its disk (or move the store), then retry."
        )


class StoreError(RuntimeError):
    """Any other failure of the database under the store, with the store's name (the database's own error is
    chained as ``__cause__``)."""

    def __init__(self, path: str, action: str, detail: str):
        self.path = path
        self.action = action
        super().__init__(f"the label store {path!r} failed during this {action}: {detail}")
