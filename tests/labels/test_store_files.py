"""Label stores that are damaged, truncated, foreign, from a newer version, or read-only (issue 12 item 4
and 5): each is refused, or opened for reading, with a message that names the store and what to do; nothing
is changed. SQLite files first, then the same cases on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inv_widgets.labels import (
    ForeignDatabaseError,
    LabelStore,
    MapKey,
    StoreDamagedError,
    StoreReadOnlyError,
    StoreVersionError,
    aggregate_labels,
)

REPO = Path(__file__).resolve().parents[2]
KEY = MapKey("net", "img_1", 0, "conv", [1, 2])


def _filled(path: Path, answers: int = 400) -> Path:
    s = LabelStore(path)
    for i in range(answers):
        s.record_answer(
            f"player {i % 7}",
            MapKey("net", f"img_{i}", i % 10, f"layer{i % 4}", [i % 9, 9]),
            "car",
            "car",
            "win",
            i % 6,
            [f"label {i} " + "x" * 60, "wheel"],
        )
    s.close()
    return path


# --------------------------------------------------------------------------------------------------
# damaged, truncated and foreign SQLite files


@pytest.mark.slow
def test_a_damaged_file_is_refused_with_its_name_and_how_to_recover(tmp_path):
    path = _filled(tmp_path / "labels.sqlite")
    size = path.stat().st_size
    assert size > 64 * 1024
    with open(path, "r+b") as f:  # 4 KiB of garbage in the middle, as a failing disk or a bad copy does
        f.seek(size // 2)
        f.write(os.urandom(4096))
    before = path.read_bytes()
    with pytest.raises(StoreDamagedError) as info:
        LabelStore(path)
    msg = str(info.value)
    assert str(path) in msg and "damaged" in msg and "backup" in msg and "from_csv" in msg
    assert path.read_bytes() == before  # refused, not changed
    # the game and the aggregation get the same refusal when given the path
    with pytest.raises(StoreDamagedError):
        aggregate_labels(LabelStore(path), model="tfidf")


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_a_truncated_file_is_refused_with_its_name(tmp_path, keep):
    path = _filled(tmp_path / "labels.sqlite")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])  # cut short (0.01: not even the first page is whole)
    with pytest.raises(StoreDamagedError, match="labels.sqlite.*damaged"):
        LabelStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(StoreDamagedError, match="notes.sqlite"):
        LabelStore(path)
    assert path.read_text().startswith("these are my notes")


def test_another_applications_sqlite_file_is_not_extended(tmp_path):
    path = tmp_path / "browser-history.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE visits (url TEXT, at TEXT)")
    conn.execute("INSERT INTO visits VALUES ('https://example.org', '2024-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(ForeignDatabaseError, match="browser-history.sqlite.*not an inv-widgets label store.*visits"):
        LabelStore(path)
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["visits"]  # no table of ours was added


def test_a_store_without_its_version_table_is_refused(tmp_path):
    path = _filled(tmp_path / "labels.sqlite", answers=3)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE schema_version")
    conn.commit()
    conn.close()
    with pytest.raises(ForeignDatabaseError, match="no schema_version table"):
        LabelStore(path)


def test_a_newer_version_says_newer_even_while_another_writer_holds_the_lock(tmp_path):
    path = _filled(tmp_path / "labels.sqlite", answers=3)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version VALUES (99, '2030-01-01')")
    conn.execute("BEGIN IMMEDIATE")  # another writer is busy
    try:
        with pytest.raises(StoreVersionError, match="schema version 99, newer than"):
            LabelStore(path, timeout=0.3)
    finally:
        conn.execute("ROLLBACK")
        conn.close()


# --------------------------------------------------------------------------------------------------
# read-only files and folders (a child process without the root privilege to write anyway)

_READ_ONLY_SCRIPT = textwrap.dedent("""
    import json, sys
    from inv_widgets.labels import LabelStore, MapKey, aggregate_labels
    out = {}
    s = LabelStore(sys.argv[1])
    out["read_only"] = s.read_only
    out["labels"] = s.labels()["text"].tolist()
    out["games"] = len(s.games())
    out["board"] = s.leaderboard()["participant"].tolist()
    out["aggregated"] = sorted(aggregate_labels(s, model="tfidf", progress=False)["label"])
    try:
        s.record_answer("eve", MapKey("net", "img_1", 0, "conv", [1, 2]), "car", "car", "win", 0, ["new"])
        out["write"] = "stored"
    except Exception as exc:
        out["write"] = type(exc).__name__ + ": " + str(exc)
    out["labels_after"] = len(s.labels())
    print(json.dumps(out))
""")


def _run_unprivileged(path: Path) -> dict:
    """Run the read-only scenario in a child that obeys file permissions (root's privilege to ignore them
    is dropped with setpriv when the tests run as root, as CI does)."""
    cmd = [sys.executable, "-c", _READ_ONLY_SCRIPT, str(path)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test read-only files as root"
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("what", ["file", "folder", "both"])
def test_a_read_only_store_opens_for_reading_and_refuses_writes(tmp_path, what):
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "labels.sqlite"
    s = LabelStore(path)
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["round wheel"])
    s.record_answer("bob", KEY, "car", "car", "win", 1, ["wheel"])
    s.close()
    assert sorted(p.name for p in folder.iterdir()) == ["labels.sqlite", "labels.sqlite-writers"]
    before = path.read_bytes()
    if what in ("file", "both"):
        path.chmod(0o444)
    if what in ("folder", "both"):
        folder.chmod(0o555)
    try:
        got = _run_unprivileged(path)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert got["read_only"] is True
    assert got["labels"] == ["round wheel", "wheel"] and got["games"] == 2 and got["board"] == ["ada", "bob"]
    assert got["aggregated"] and set(got["aggregated"]) <= {"round", "wheel"}  # the aggregation reads it
    assert got["write"].startswith("StoreReadOnlyError") and "read-only" in got["write"]
    assert str(path) in got["write"] and "nothing was stored" in got["write"]
    assert got["labels_after"] == 2
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------------
# the same on PostgreSQL


def test_postgres_database_of_another_application_is_not_extended(postgres_server):
    url = postgres_server.create_database("other_app")
    postgres_server.execute("CREATE TABLE invoices (id int)", database="other_app")
    with pytest.raises(ForeignDatabaseError, match="other_app.*invoices"):
        LabelStore(url)
    assert postgres_server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database="other_app"
    ) == [("invoices",)]


def test_postgres_newer_version_says_newer_while_another_writer_holds_the_lock(postgres_server):
    import psycopg

    from inv_widgets.labels.store.postgres import LOCK_KEY

    url = postgres_server.create_database("newer")
    LabelStore(url).close()
    postgres_server.execute("INSERT INTO schema_version VALUES (99, '2030-01-01')", database="newer")
    blocker = psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres", dbname="newer")
    blocker.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    try:
        with pytest.raises(StoreVersionError, match="newer"):
            LabelStore(url, timeout=0.3)
    finally:
        blocker.rollback()
        blocker.close()


def test_postgres_user_who_may_only_read_gets_a_read_only_store(postgres_server):
    url = postgres_server.create_database("ro")
    s = LabelStore(url)
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["round wheel"])
    s.close()
    postgres_server.execute("DROP ROLE IF EXISTS reader")
    postgres_server.execute("CREATE ROLE reader LOGIN")
    postgres_server.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader", database="ro")
    reader = LabelStore(postgres_server.url("ro", user="reader"))
    try:
        assert reader.read_only
        assert reader.labels()["text"].tolist() == ["round wheel"]
        assert aggregate_labels(reader, model="tfidf", progress=False)["label"].tolist() in (["round"], ["wheel"])
        with pytest.raises(StoreReadOnlyError, match="read-only.*nothing was stored"):
            reader.record_answer("eve", KEY, "car", "car", "win", 0, ["x"])
        with pytest.raises(StoreReadOnlyError):
            reader.add_participant("eve")
        # a right taken away while the store is open: the same typed error, from the server's refusal
        postgres_server.execute("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO reader", database="ro")
        writer = LabelStore(postgres_server.url("ro", user="reader"))
        assert not writer.read_only
        postgres_server.execute(
            "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM reader", database="ro"
        )
        with pytest.raises(StoreReadOnlyError, match="may not write"):
            writer.record_answer("eve", KEY, "car", "car", "win", 0, ["x"])
        writer.close()
    finally:
        reader.close()
    assert len(LabelStore(url).games()) == 1
