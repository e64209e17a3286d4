"""The label store's schema, its versions and how a database is brought up to date.

:data:`MIGRATIONS` is the ordered list of ``(version, step)``. A step is

* a list of SQL statements that every backend runs as they are,
* a mapping ``{dialect: [statements]}`` when backends need different SQL (a backend finds its own
  ``dialect``, e.g. ``"sqlite"``; a PostgreSQL backend adds its ``"postgresql"`` entry to each step),
* or a callable taking the open transaction (see :class:`~inv_widgets.labels.store.backend.Tx`).

:func:`migrate` applies every step newer than the database's version, each in its own transaction, and
refuses a database from a newer version. Append new versions at the end; never edit a released step.
"""
from __future__ import annotations

from typing import Any

from .. import rules
from .backend import Backend

__all__ = ["MIGRATIONS", "latest_version", "migrate", "read_version"]

_SQLITE_V1 = [
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

#: Ordered ``(version, step)``; see the module docstring.
MIGRATIONS: list[tuple[int, Any]] = [
    (1, {"sqlite": _SQLITE_V1}),
]

#: The version table, in SQL every backend runs.
VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version ("
                 "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")


def latest_version() -> int:
    return max(v for v, _ in MIGRATIONS)


def read_version(tx) -> int:
    return tx.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0


def _statements(step: Any, dialect: str) -> list[str]:
    if isinstance(step, dict):
        if dialect not in step:
            raise RuntimeError(f"the schema migration has no SQL for the {dialect!r} backend "
                               f"(it has {sorted(step)}); add a {dialect!r} entry to the step in MIGRATIONS")
        return list(step[dialect])
    return list(step)


def migrate(backend: Backend, where: str) -> None:
    """Bring the database of ``backend`` to :func:`latest_version` (``where`` names it in errors)."""
    latest = latest_version()
    # Fast path without a write lock: an up-to-date database opens even while another connection writes.
    if backend.has_table("schema_version"):
        current = backend.read("SELECT MAX(version) FROM schema_version")[0][0] or 0
        if current == latest:
            return
    while True:
        with backend.transaction("schema upgrade") as tx:
            tx.execute(VERSION_TABLE)
            current = read_version(tx)
            if current > latest:
                raise RuntimeError(
                    f"the label store {where!r} has schema version {current}, newer than "
                    f"this inv-widgets understands ({latest}); upgrade inv-widgets"
                )
            pending = sorted(((v, s) for v, s in MIGRATIONS if v > current), key=lambda vs: vs[0])
            if not pending:
                return
            version, step = pending[0]
            if callable(step):
                step(tx)
            else:
                for statement in _statements(step, backend.dialect):
                    tx.execute(statement)
            tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (:version, :applied_at)",
                       {"version": version, "applied_at": rules.iso(rules.now())})
