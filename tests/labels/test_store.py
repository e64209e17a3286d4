"""Tests of the label store on both backends (SQLite files and PostgreSQL, the ``any_store`` and
``store_target`` fixtures of tests/conftest.py): validation, atomicity, files and URLs, schema, backends.

Concurrent writers and killed processes are tests/labels/test_store_concurrency.py; export and import
test_io.py; the rules themselves (points, limits) test_rules.py.
"""

from __future__ import annotations

import pickle

import pytest

from inv_widgets.labels.store import MAX_LABEL_CHARS, LabelStore, MapKey
from inv_widgets.labels.store import schema as schema_mod

KEY = MapKey("vgg16-abc", "img_7", 4, "block5_conv3", [42, 3, 17])

# --------------------------------------------------------------------------------------------------
# map identity and points


def test_mapkey_is_canonical():
    a = MapKey("m", 7, "3", "conv", [42, 3, 17])
    b = MapKey("m", "7", 3, "conv", "17, 3,42")
    assert a == b and hash(a) == hash(b)
    assert a.members == (3, 17, 42) and a.members_text == "3,17,42"
    assert a.image_id == "7" and a.target == 3
    assert MapKey.from_row(a.as_dict()) == a
    with pytest.raises(ValueError, match="repeated"):
        MapKey("m", 1, 0, "conv", [1, 1])
    with pytest.raises(ValueError, match="empty"):
        MapKey("m", 1, 0, "conv", [])
    with pytest.raises(ValueError, match="non-negative"):
        MapKey("m", 1, 0, "conv", [-1])
    with pytest.raises(ValueError, match="layer"):
        MapKey("m", 1, 0, "", [1])


def test_mapkey_equals_other_keys_with_the_same_values(any_store):
    from typing import NamedTuple

    class EngineKey(NamedTuple):  # the shape of inv_widgets.engine's Clusters.key(j)
        model: str
        image_id: str
        target: int
        layer: str
        members: tuple

    k = MapKey("m", "7", 3, "conv", [17, 3])
    other = EngineKey("m", "7", 3, "conv", (3, 17))
    assert k == other and hash(k) == hash(other) and k == ("m", "7", 3, "conv", (3, 17))
    assert {k: 1}[other] == 1
    assert k._replace(members=[9, 1]).members == (1, 9)
    assert pickle.loads(pickle.dumps(k)) == k and type(pickle.loads(pickle.dumps(k))) is MapKey
    s = any_store
    s.record_answer("ada", other, "car", "car", "win", 0, ["wheel"])  # any 5-tuple is accepted
    assert s.label_counts([other])[other] == 1
    assert s.games()["members"].tolist() == ["3,17"]


# --------------------------------------------------------------------------------------------------
# participants and validation


def test_participants_are_idempotent_stripped_and_unicode(any_store):
    s = any_store
    a = s.add_participant("  Zoë 🦊 ")
    assert s.add_participant("Zoë 🦊") == a
    assert s.add_participant("zoë 🦊") != a  # names are case sensitive, kept as typed
    assert s.participants()["participant"].tolist() == ["Zoë 🦊", "zoë 🦊"]
    assert s.add_participant("n" * 64) > 0
    for bad, msg in [("", "empty"), ("   ", "empty"), ("n" * 65, "64")]:
        with pytest.raises(ValueError, match=msg):
            s.add_participant(bad)
    with pytest.raises(TypeError):
        s.add_participant(None)


def test_record_answer_keeps_text_exactly_and_cleans_a_copy(any_store):
    s = any_store
    typed = ["  The Church's tall Spire!  ", "<img src=x onerror=alert(1)>", "中文 轮子"]
    gid = s.record_answer(
        "ada",
        KEY,
        "church",
        "church",
        "win",
        2,
        typed,
        started_at="2024-05-01T10:00:00+00:00",
        answered_at="2024-05-01T10:00:12.5+00:00",
    )
    labels = s.labels()
    assert labels["game_id"].tolist() == [gid] * 3
    assert labels["text"].tolist() == typed
    assert labels["text_clean"].tolist() == ["tall spire", "img src onerror alert", "中文 轮子"]
    assert labels["position"].tolist() == [0, 1, 2]
    g = s.games().iloc[0]
    assert (g.participant, g.model, g.image_id, g.target, g.layer, g.members) == (
        "ada",
        "vgg16-abc",
        "img_7",
        4,
        "block5_conv3",
        "3,17,42",
    )
    assert (g.outcome, g.reveal_step, g.points, g.n_labels) == ("win", 2, 4, 3)
    assert g.duration_s == pytest.approx(12.5)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(labels=[""]), ValueError, "label 1 of 1 is empty"),
        (dict(labels=["ok", "   \n\t"]), ValueError, "label 2 of 2 is empty"),
        (dict(labels=["x" * (MAX_LABEL_CHARS + 1)]), ValueError, "limit is 200"),
        (dict(labels=[]), ValueError, "1 to 3 labels"),
        (dict(labels=["a", "b", "c", "d"]), ValueError, "1 to 3 labels"),
        (dict(labels="wheel"), TypeError, "list of str"),
        (dict(labels=[3]), TypeError, "must be a str"),
        (dict(labels=["nul\x00byte"]), ValueError, "NUL"),
        (dict(labels=["lone \ud800 surrogate"]), ValueError, "surrogate"),
        (dict(outcome="won"), ValueError, "win, lose, resign"),
        (dict(reveal_step=6), ValueError, "between 0 and 5"),
        (dict(reveal_step=-1), ValueError, "between 0 and 5"),
        (dict(reveal_step=1.5), TypeError, "int"),
        (dict(guessed="dog"), ValueError, "guessed == true_class"),
        (dict(outcome="lose"), ValueError, "other than the true class"),
        (dict(guessed=None), ValueError, "guessed is required"),
        (dict(participant=""), ValueError, "empty"),
        (dict(participant=99), KeyError, "99"),
        (dict(key=("m", 1)), TypeError, "MapKey"),
        (dict(started_at="yesterday"), ValueError, "ISO 8601"),
        (dict(started_at="2030-01-01T00:00:00+00:00", answered_at="2029-01-01T00:00:00+00:00"), ValueError, "after"),
    ],
)
def test_bad_answers_are_refused_and_nothing_is_stored(kwargs, error, match, any_store):
    s = any_store
    answer = dict(
        participant="ada",
        key=KEY,
        guessed="church",
        true_class="church",
        outcome="win",
        reveal_step=0,
        labels=["spire"],
    )
    answer.update(kwargs)
    with pytest.raises(error, match=match):
        s.record_answer(**answer)
    assert len(s.games()) == 0 and len(s.labels()) == 0


def test_label_of_exactly_the_limit_and_resign_without_labels_are_fine(any_store):
    s = any_store
    s.record_answer("ada", KEY, "church", "church", "win", 0, ["x" * MAX_LABEL_CHARS])
    s.record_answer("ada", KEY, None, "church", "resign", 5, [])
    s.record_answer("ada", KEY, None, "church", "resign", 5, ["no idea", "blob"])
    assert s.games()["n_labels"].tolist() == [1, 0, 2]
    assert s.integrity_check() == []


def test_failure_inside_the_transaction_stores_nothing(monkeypatch, any_store):
    s = any_store
    s.record_answer("ada", KEY, "church", "church", "win", 0, ["spire"])

    def broken(self, cur, game_id, labels, cleaned):
        cur.execute(
            "INSERT INTO labels (game_id, text, text_clean, position) VALUES (:g, :t, :c, 0)",
            {"g": game_id, "t": labels[0], "c": cleaned[0]},
        )
        raise OSError("disk went away")

    monkeypatch.setattr(LabelStore, "_insert_labels", broken)
    with pytest.raises(OSError):
        s.record_answer("bob", KEY, "church", "church", "win", 0, ["a", "b"])
    monkeypatch.undo()
    assert len(s.games()) == 1 and len(s.labels()) == 1
    assert s.participants()["participant"].tolist() == ["ada"]  # bob's sign-up rolled back too
    assert s.integrity_check() == []


def test_undo_last_removes_only_the_last_answer_of_that_participant(any_store):
    s = any_store
    g1 = s.record_answer("ada", KEY, "church", "church", "win", 0, ["spire"])
    s.record_answer("bob", KEY, "dog", "church", "lose", 2, ["ears", "fur"])
    g3 = s.record_answer("ada", KEY, "dog", "church", "lose", 1, ["fur", "tail", "paw"])
    assert s.undo_last("ada") is True
    assert s.games()["game_id"].tolist() == [g1, g1 + 1]
    assert g3 not in s.labels()["game_id"].tolist()
    assert len(s.labels()) == 3
    assert s.undo_last("ada") is True and s.undo_last("ada") is False
    assert s.undo_last("nobody") is False
    assert s.games()["participant"].tolist() == ["bob"]
    assert s.integrity_check() == []


def test_leaderboard_points_wins_and_best_streak(any_store):
    s = any_store
    s.add_participant("carol")  # signed up, never played
    plays = [("win", 1), ("win", 0), ("lose", 2), ("win", 5), ("win", 2), ("win", 3), ("resign", 5), ("win", 4)]
    for outcome, step in plays:
        guessed = {"win": "car", "lose": "truck", "resign": None}[outcome]
        s.record_answer("ada", KEY, guessed, "car", outcome, step, ["wheel"])
    s.record_answer("bob", KEY, "car", "car", "win", 0, ["wheel"])
    board = s.leaderboard()
    assert board.columns.tolist() == ["participant", "games", "wins", "points", "best_streak"]
    expected_points = sum(6 - step for outcome, step in plays if outcome == "win")
    ada = board.set_index("participant").loc["ada"]
    assert (ada.games, ada.wins, ada.points, ada.best_streak) == (8, 6, expected_points, 3)
    assert board["participant"].tolist() == ["ada", "bob", "carol"]
    assert board.set_index("participant").loc["carol"].tolist() == [0, 0, 0, 0]
    assert board["points"].sum() == s.games()["points"].sum()


def test_label_counts_and_filters(any_store):
    s = any_store
    other = MapKey(KEY.model, KEY.image_id, KEY.target, KEY.layer, [1, 2])
    never = MapKey(KEY.model, KEY.image_id, KEY.target, KEY.layer, [5])
    s.record_answer("ada", KEY, "church", "church", "win", 0, ["a", "b"])
    s.record_answer("bob", KEY, "church", "church", "win", 0, ["c"])
    s.record_answer("bob", other, "church", "church", "win", 0, ["d", "e", "f"])
    counts = s.label_counts([KEY, other, never])
    assert counts == {KEY: 3, other: 3, never: 0}
    assert len(s.labels(key=KEY)) == 3
    assert len(s.labels("bob")) == 4
    assert len(s.games(key=other)) == 1
    assert len(s.games(layer="nope")) == 0
    assert s.labels(participant="bob", key=other)["text"].tolist() == ["d", "e", "f"]


# --------------------------------------------------------------------------------------------------
# files, URLs, schema


def test_file_store_uses_wal_and_urls(tmp_path, monkeypatch):
    s = LabelStore(tmp_path / "a.db", timeout=2.5)
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    assert s._db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"])
    s.close()
    monkeypatch.chdir(tmp_path)
    assert len(LabelStore("sqlite:///a.db").games()) == 1
    assert len(LabelStore(f"sqlite:///{tmp_path / 'a.db'}").games()) == 1
    assert LabelStore("sqlite://").path == ":memory:"
    with pytest.raises(ValueError, match="not supported"):
        LabelStore("mysql://u@h/db")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LabelStore(tmp_path / "no" / "such" / "dir.db")
    with pytest.raises(ValueError, match="closed"):
        s.games()


def test_pickled_store_reconnects(store_target):
    s = store_target.open()
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"])
    t = pickle.loads(pickle.dumps(s))
    assert t.path == s.path and len(t.labels()) == 1 and type(t.backend) is type(s.backend)
    t.close()
    with pytest.raises(TypeError, match="in-memory"):
        pickle.dumps(LabelStore())


def _columns(store, table="games") -> list[str]:
    if store.backend.dialect == "sqlite":
        return [r[1] for r in store._read(f"PRAGMA table_info({table})")]
    return [
        r[0]
        for r in store._read(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = :t",
            {"t": table},
        )
    ]


def test_older_store_is_upgraded_and_newer_store_refused(store_target, monkeypatch):
    n = schema_mod.latest_version()
    old = store_target.open()
    old.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel", "tyre"])
    assert old.schema_version == n
    old.close()

    step = ["ALTER TABLE games ADD COLUMN device TEXT", "UPDATE games SET device = 'tablet'"]
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS + [(n + 1, step)])
    new = store_target.open()
    assert new.schema_version == n + 1
    assert new._read("SELECT device FROM games") == [("tablet",)]
    assert new.labels()["text"].tolist() == ["wheel", "tyre"]  # data kept
    assert new.integrity_check() == []
    new.close()

    # a failing migration leaves the store as it was
    bad = [(n + 2, ["ALTER TABLE games ADD COLUMN x TEXT", "THIS IS NOT SQL"])]
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS + bad)
    with pytest.raises(Exception, match="(?i)syntax"):
        store_target.open()
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:-1])
    again = store_target.open()
    assert again.schema_version == n + 1
    cols = _columns(again)
    assert "x" not in cols and "device" in cols
    again.close()

    # a store from a newer version is refused, not damaged
    monkeypatch.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:n])
    with pytest.raises(RuntimeError, match="newer"):
        store_target.open()


# --------------------------------------------------------------------------------------------------
# the store's seams: backends, batches, change stamps


def test_a_backend_is_a_class_registered_under_its_url_scheme(monkeypatch):
    from inv_widgets.labels.store import backend as backend_mod
    from inv_widgets.labels.store.sqlite import SQLiteBackend

    class MemTest(SQLiteBackend):  # a "new database": another scheme, its own class, nothing else changed
        def __init__(self, url, **options):
            assert url == "memtest://box"
            super().__init__(":memory:", **options)
            self.where = "memtest://box"

    monkeypatch.setitem(backend_mod.BACKENDS, "memtest", MemTest)
    s = LabelStore("memtest://box", timeout=1)
    assert isinstance(s.backend, MemTest) and isinstance(s.backend, backend_mod.Backend)
    assert (
        s.path == "memtest://box" and repr(s) == f"LabelStore('memtest://box', schema v{schema_mod.latest_version()})"
    )
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"])
    assert s.labels()["text"].tolist() == ["wheel"] and s.integrity_check() == []

    class OtherDialect(MemTest):
        dialect = "otherdb"

    monkeypatch.setitem(backend_mod.BACKENDS, "memtest", OtherDialect)
    with pytest.raises(RuntimeError, match="no SQL for the 'otherdb' backend.*add a 'otherdb' entry"):
        LabelStore("memtest://box")
    with pytest.raises(ValueError, match="the 'mysql' database URL is not supported yet"):
        LabelStore("mysql://u@h/db")


def test_record_answers_is_one_transaction(any_store):
    from inv_widgets.labels import rules

    s = any_store
    good = [rules.validate_answer("ada", KEY, "car", "car", "win", i, [f"l{i}"]) for i in range(3)]
    assert s.record_answers(good, participants=[("zed", "2020-01-01T00:00:00+00:00")]) == 3
    assert s.participants()["participant"].tolist() == ["zed", "ada"]
    assert s.participants()["created"][0] == "2020-01-01T00:00:00+00:00"
    unknown = rules.validate_answer(999, KEY, "car", "car", "win", 0, ["x"])  # an id nobody has
    with pytest.raises(KeyError, match="999"):
        s.record_answers(good + [unknown], participants=[("late", None)])
    assert len(s.games()) == 3 and "late" not in s.participants()["participant"].tolist()  # all or nothing


def test_change_stamp_moves_with_every_write_from_any_connection(store_target):
    a = store_target.open()
    b = store_target.open()
    first = a.change_stamp()
    assert a.change_stamp() == first  # reading changes nothing
    a.add_participant("ada")
    second = a.change_stamp()
    assert second != first
    b.record_answer("bob", KEY, "car", "car", "win", 0, ["wheel"])
    assert a.change_stamp() != second


# --------------------------------------------------------------------------------------------------
# text that looks like other text (issue 12 item 10)


def test_names_and_labels_are_nfc_bidi_controls_stripped_and_invisible_text_blank(any_store):
    s = any_store
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    assert s.add_participant(composed) == s.add_participant(decomposed)  # one player, typed two ways
    s.record_answer(decomposed, KEY, "car", "car", "win", 0, ["caf\u0065\u0301 wheel"])
    assert s.participants()["participant"].tolist() == ["Jos\u00e9"]
    assert s.games("Jos\u00e9")["participant"].tolist() == ["Jos\u00e9"]  # filters find it either way
    assert len(s.games(decomposed)) == 1
    assert s.labels()["text"].tolist() == ["caf\u00e9 wheel"]
    # a name cannot show reversed on the leaderboard: bidirectional controls are removed
    rid = s.add_participant("\u202eevil\u202c Ada\u2066x\u2069")
    name = s.participants().set_index("participant_id").loc[rid, "participant"]
    assert name == "evil Adax" and not any(0x2066 <= ord(c) <= 0x2069 or 0x202A <= ord(c) <= 0x202E for c in name)
    # zero-width-only text is blank: refused as a name and as a label
    for blank in ("\u200b", "\u200b\u200c\u2060", " \ufeff "):
        with pytest.raises(ValueError, match="empty|blank"):
            s.add_participant(blank)
        with pytest.raises(ValueError, match="empty"):
            s.record_answer("ada", KEY, "car", "car", "win", 0, [blank])
    assert s.labels()["text"].tolist() == ["caf\u00e9 wheel"]
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["\U0001f469\u200d\U0001f52c hat"])
    assert s.labels()["text"].tolist()[-1] == "\U0001f469\u200d\U0001f52c hat"
