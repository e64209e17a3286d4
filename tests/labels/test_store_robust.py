"""Label stores a hostile or careless world can break (issue 23, finding 5), on SQLite and PostgreSQL:

* answers carry an identity chosen by the writer (``answer_id``): a retry after an unknown outcome stores an
  answer once, and a connection lost during the commit is a typed ``AnswerOutcomeUnknown``;
* schema 2 (answer_id, weight, labels_pending) is applied to a store written by the current release (the file
  ``tests/data/labels_v1.sqlite`` and its exports were written by inv-widgets at schema 1);
* damage inside a row and 0-byte files are refused with ``StoreDamagedError``; ``integrity_check()`` finds
  text that is not UTF-8; a full disk names the store; every error names the store (a PostgreSQL URL with its
  password masked, also one with an unescaped '@').
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from inv_widgets.labels import LabelStore, MapKey
from inv_widgets.labels.store import AnswerOutcomeUnknown, StoreConnectionError, StoreDamagedError, StoreWriteError
from inv_widgets.labels.store import schema as schema_mod
from inv_widgets.labels.store.errors import mask_url

DATA = Path(__file__).resolve().parents[1] / "data"
KEY = MapKey("net", "img_1", 0, "conv", [1, 2])
#: what the release at schema 1 stored in tests/data/labels_v1.sqlite (its games, oldest first)
V1_GAMES = [
    ("ada", "win", 1, ["round wheels", "Fenster ü"]),
    ("ada", "lose", 0, ["red roof"]),
    ("bob", "resign", 5, []),
    ("bob", "win", 3, ["=SUM(A1)"]),
]


def _games_of(store):
    g, lab = store.games(), store.labels()
    return [
        (r.participant, r.outcome, r.reveal_step, lab[lab.game_id == r.game_id].text.tolist()) for r in g.itertuples()
    ]


# ---- the migration to schema 2, on a store written by the current release --------------------------------


def test_a_store_written_at_schema_1_is_migrated_and_keeps_everything(tmp_path):
    path = tmp_path / "labels.sqlite"
    shutil.copy(DATA / "labels_v1.sqlite", path)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT MAX(version) FROM schema_version").fetchone() == (1,)
    assert "answer_id" not in [r[1] for r in raw.execute("PRAGMA table_info(games)")]
    raw.close()
    store = LabelStore(path)
    assert store.schema_version == 2 == schema_mod.latest_version()
    assert _games_of(store) == V1_GAMES
    games = store.games()
    assert games["answer_id"].isna().all() and games["weight"].isna().all() and not games["labels_pending"].any()
    assert store.participants()["participant"].tolist() == ["ada", "bob", "cy"]
    assert store.integrity_check() == []
    # new answers carry their identity and weight; old ones stay as they were
    gid = store.record_answer("cy", KEY, "car", "car", "win", 2, ["wheel"], answer_id="a-1", weight=12.5)
    row = store.games().set_index("game_id").loc[gid]
    assert (row.answer_id, row.weight) == ("a-1", 12.5)
    assert store.labels()["weight"].tolist()[-1] == 12.5
    store.close()


def test_a_postgres_store_at_schema_1_is_migrated(postgres_server):
    url = postgres_server.create_database("v1_store")
    import sqlalchemy as sa

    from inv_widgets.labels.store.postgres import normalise_url

    engine = sa.create_engine(normalise_url(url))
    src = sqlite3.connect(DATA / "labels_v1.sqlite")
    with engine.begin() as conn:  # the release's schema 1, as it created it, and the rows of the fixture
        for statement in schema_mod.MIGRATIONS[0][1]["postgresql"]:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(schema_mod.VERSION_TABLE)
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1, '2025-01-01T00:00:00+00:00')")
        for table in ("participants", "games", "labels"):
            cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
            for row in src.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY id"):
                conn.execute(
                    sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
                    dict(zip(cols, row)),
                )
        for table in ("participants", "games", "labels"):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )
    engine.dispose()
    src.close()
    store = LabelStore(url)
    assert store.schema_version == 2
    assert _games_of(store) == V1_GAMES and store.integrity_check() == []
    store.record_answer("cy", KEY, "car", "car", "win", 2, ["wheel"], answer_id="a-1", weight=33.0)
    assert store.games()["weight"].tolist()[-1] == 33.0
    store.close()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_of_the_release_at_schema_1_import(fmt, any_store):
    assert any_store.import_(DATA / f"labels_v1.{fmt}") == 4
    assert _games_of(any_store) == V1_GAMES
    assert any_store.import_(DATA / f"labels_v1.{fmt}") == 0  # idempotent without answer ids too


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_carry_answer_ids_weights_and_pending_labels(fmt, tmp_path, any_store):
    s = any_store
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"], answer_id="id-1", weight=41.25)
    s.record_answer("ada", KEY._replace(image_id="img_2"), None, "car", "resign", 5, (), labels_pending=True)
    out = tmp_path / f"labels.{fmt}"
    getattr(s, f"to_{fmt}")(out)
    back = getattr(LabelStore, f"from_{fmt}")(out)
    cols = ["participant", "answer_id", "weight", "labels_pending", "n_labels"]
    pd.testing.assert_frame_equal(s.games()[cols], back.games()[cols])
    assert back.games()["answer_id"].tolist()[0] == "id-1" and back.import_(out) == 0


# ---- answers with an identity chosen by the writer --------------------------------------------------------


def test_a_retry_with_the_same_answer_id_stores_the_answer_once(any_store):
    s = any_store
    first = s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], answer_id="7f3a")
    again = s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], answer_id="7f3a", once=True)
    assert first == again and len(s.games()) == 1 and len(s.labels()) == 1
    with pytest.raises(ValueError, match="answer_id '7f3a' is already used .* by another answer"):
        s.record_answer("ada", KEY, "truck", "car", "lose", 1, ["wheel"], answer_id="7f3a")
    with pytest.raises(ValueError, match="answer_id must be"):
        s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], answer_id="has spaces")
    with pytest.raises(ValueError, match="weight must be a finite percentage"):
        s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], weight=float("nan"))
    assert len(s.games()) == 1


def _lose_the_connection_at_commit(store, monkeypatch, after_commit: bool):
    """Make the backend's next commit fail the way a dropped connection does, before or after the server
    committed."""
    backend = type(store.backend)
    real = backend._commit
    if store.backend.dialect == "sqlite":

        def error():
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorcode = 10  # SQLITE_IOERR
            return exc
    else:
        import psycopg
        from sqlalchemy.exc import OperationalError

        def error():
            return OperationalError(
                "COMMIT",
                {},
                psycopg.OperationalError("server closed the connection unexpectedly"),
                connection_invalidated=True,
            )

    calls = []

    def commit(handle):
        if not calls:
            calls.append(1)
            if after_commit:
                real(handle)
            raise error()
        return real(handle)

    monkeypatch.setattr(backend, "_commit", staticmethod(commit))


@pytest.mark.parametrize("after_commit", [True, False], ids=["stored", "not-stored"])
def test_a_connection_lost_during_the_commit_is_an_unknown_outcome_and_a_retry_stores_once(
    after_commit, any_store, monkeypatch
):
    s = any_store
    _lose_the_connection_at_commit(s, monkeypatch, after_commit)
    with pytest.raises(AnswerOutcomeUnknown) as info:
        s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"])
    err = info.value
    assert err.answer_id and err.answer_id in str(err) and str(s.path) in str(err)
    assert "may or may not be stored" in str(err)
    assert len(s.games()) == (1 if after_commit else 0)
    s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], answer_id=err.answer_id)  # the retry
    s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], answer_id=err.answer_id)  # and another
    assert len(s.games()) == 1 and s.games()["answer_id"].tolist() == [err.answer_id]


def test_postgres_connection_killed_mid_answer_is_a_typed_error_and_nothing_is_stored(postgres_server, monkeypatch):
    url = postgres_server.create_database("killed")
    s = LabelStore(url)
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["first"])
    real = LabelStore._insert_labels

    def killed(self, tx, game_id, labels, cleaned):  # the server drops this connection mid-transaction
        tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(LabelStore, "_insert_labels", killed)
    with pytest.raises(StoreConnectionError) as info:
        s.record_answer("ada", KEY._replace(image_id="img_2"), "car", "car", "win", 0, ["second"])
    assert "nothing was stored" in str(info.value) and "killed" in str(info.value)
    monkeypatch.setattr(LabelStore, "_insert_labels", real)
    assert s.labels()["text"].tolist() == ["first"]
    s.record_answer("ada", KEY._replace(image_id="img_2"), "car", "car", "win", 0, ["second"])
    assert s.labels()["text"].tolist() == ["first", "second"]
    s.close()


def test_a_password_with_an_unescaped_at_sign_is_masked_in_every_message(postgres_server):
    port = postgres_server.port
    url = f"postgresql://postgres:s3cr@tP@ss@127.0.0.1:{port}/at_sign"
    postgres_server.create_database("at_sign")
    store = LabelStore(url)  # trust authentication: the password is not checked, but it is parsed right
    assert store.path == f"postgresql://postgres:***@127.0.0.1:{port}/at_sign" and "P@ss" not in repr(store)
    store.close()
    with pytest.raises(StoreConnectionError) as info:  # nothing listens on port 9: every message is masked
        LabelStore("postgresql://postgres:s3cr@tP@ss@127.0.0.1:9/at_sign", timeout=1)
    text = str(info.value)
    assert "***" in text and "tP" not in text and "ss@" not in text and "s3cr" not in text
    assert mask_url("postgresql://u:p@ss@h:1/db?sslmode=require") == "postgresql://u:***@h:1/db?sslmode=require"


# ---- damage inside a row, empty files, full disks (SQLite) -------------------------------------------------


def _stored_label_file(tmp_path) -> Path:
    path = tmp_path / "labels.sqlite"
    s = LabelStore(path)
    for i in range(20):
        s.record_answer("ada", KEY._replace(image_id=f"img_{i}"), "car", "car", "win", 0, [f"wheel number {i:03d}"])
    s.close()
    return path


def test_damage_inside_a_row_is_refused_on_open_and_found_by_integrity_check(tmp_path):
    path = _stored_label_file(tmp_path)
    data = path.read_bytes()
    at = data.index(b"wheel number 007")
    path.write_bytes(data[:at] + b"wh\xff\xfel" + data[at + 5 :])  # bytes flipped inside one label's text
    with pytest.raises(StoreDamagedError) as info:
        LabelStore(path)
    msg = str(info.value)
    assert str(path) in msg and "labels row 8 (text" in msg and "not UTF-8" in msg and "backup" in msg
    assert path.read_bytes()[at : at + 5] == b"wh\xff\xfel"  # refused, not changed


def test_undecodable_text_written_while_open_is_reported_not_raised_raw(tmp_path):
    path = _stored_label_file(tmp_path)
    s = LabelStore(path)
    raw = sqlite3.connect(path)
    raw.execute("UPDATE labels SET text = CAST(X'77FFFE' AS TEXT) WHERE id = 3")  # as a damaged page would
    raw.commit()
    raw.close()
    assert any("labels row 3 (text): text that is not UTF-8" in p for p in s.integrity_check())
    with pytest.raises(StoreDamagedError, match=r"labels.sqlite.*damaged.*(?i:could not decode)"):
        s.labels()
    s.close()


def test_an_empty_file_is_refused_not_turned_into_a_new_store(tmp_path):
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StoreDamagedError) as info:
        LabelStore(path)
    assert str(path) in str(info.value) and "0 bytes" in str(info.value) and "delete the file" in str(info.value)
    assert path.read_bytes() == b""


def test_a_full_disk_names_the_store_and_stores_nothing(tmp_path):
    path = _stored_label_file(tmp_path)
    s = LabelStore(path)
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page: SQLITE_FULL
    with pytest.raises(StoreWriteError) as info:
        for i in range(200):
            s.record_answer("bob", KEY._replace(image_id=f"new_{i}"), "car", "car", "win", 0, ["x" * 190] * 3)
    assert (
        str(path) in str(info.value) and "disk is full" in str(info.value) and "nothing was stored" in str(info.value)
    )
    assert isinstance(info.value, OSError)
    assert s.integrity_check() == []
    s.close()
