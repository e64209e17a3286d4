"""The Deep Reveal game widget, played from Python (the browser sends the same actions as messages).

A small session (an untrained demo CNN with fixed seeds, three images, the last two layers) keeps these
tests to seconds; the browser tests in tests/browser/test_game_browser.py drive the real front end.
"""

from __future__ import annotations

import io
import re
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import inv_widgets as inv
from inv_widgets.labels import MAX_LABEL_CHARS, LabelStore, MapKey, StoreBusyError, points_for
from inv_widgets.widgets.game import LabelingGame

STATIC = Path(inv.__file__).parent / "widgets" / "static"
HOSTILE = "<img src=x onerror=alert(1)>"
UNICODE = "naïve 🚗 wheels · 中文 轮子 · e\u0301 · zero\u200bwidth · RTL עברית"


@pytest.fixture(scope="module")
def session(game_session):
    return game_session


@pytest.fixture(scope="module")
def layers(session):
    return session.layers[-2:]


@pytest.fixture
def store(label_store):
    return label_store


@pytest.fixture
def make_game(session, store, layers):
    def make(participant="ada", **kw):
        kw.setdefault("images", [0, 1, 2])
        kw.setdefault("layers", layers)
        g = LabelingGame(session, kw.pop("store", store), participant, **kw)
        g.start()
        return g

    return make


def right(game) -> int:
    """The class that wins the map on screen (test-side knowledge: MapKey.target)."""
    return game.current.target


def wrong(game) -> int:
    return (game.current.target + 1) % len(game.classes)


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ---- the pool and the queue ------------------------------------------------------------------------
def test_pool_has_every_map_of_the_chosen_images_and_layers(make_game, session, layers):
    game = make_game()
    expected = set()
    for i in (0, 1, 2):
        exp = session.explain(i, target=session.label(i))
        for name in layers:
            cl = exp[name].cut()
            expected |= {MapKey(*cl.key(j)) for j in range(cl.k) if cl.weights[j] > 0}  # what the game plays
    assert set(game.pool) == expected
    assert game.total == len(expected) and len(game.queue) == len(expected)
    # the maps explain the ground-truth class of their image
    assert {k.target for k in game.pool} == {session.label(i) for i in (0, 1, 2)}
    assert game.phase == "play" and game.current == game.queue[0]


def test_queue_is_least_labelled_first_with_deterministic_ties(make_game, store):
    game = make_game()
    pool = game.pool
    # other players label some maps: the first two maps twice and once, a late map three times
    for who, key, n in (("bob", pool[0], 2), ("cy", pool[1], 1), ("bob", pool[-1], 3)):
        store.record_answer(who, key, None, str(key.target), "resign", 5, [f"l{i}" for i in range(n)])
    fresh = make_game("dee")
    queue = fresh.queue
    counts = store.label_counts(queue)
    assert [counts[k] for k in queue] == sorted(counts[k] for k in queue)
    assert queue[0] not in (pool[0], pool[1], pool[-1])
    assert queue[-3:] == [pool[1], pool[0], pool[-1]]
    # ties keep the pool's order, the same for everybody: deepest layer first, heaviest map, image order
    unlabelled = [k for k in pool if counts[k] == 0]
    assert queue[: len(unlabelled)] == unlabelled
    assert make_game("eve").queue == queue
    # consecutive maps come from different images
    assert queue[0].image_id != queue[1].image_id


def test_next_map_reads_the_counts_again(make_game):
    ada = make_game("ada")
    bob = make_game("bob")
    first = ada.current
    assert bob.current == first  # nobody has labelled anything yet: same first map
    ada.guess(right(ada))
    assert ada.submit(["red roof"])
    late = make_game("cy")  # joins after ada's answer: her map has a label now, so it comes last
    assert late.current != first
    assert late.queue[-1] == first


def test_a_player_never_gets_a_map_twice(make_game):
    game = make_game()
    seen = []
    while game.phase == "play":
        seen.append(game.current)
        game.resign()
        assert game.skip()
    assert game.phase == "done"
    assert len(seen) == len(set(seen)) == game.total == game.answered
    again = make_game("ada")  # the same player coming back has nothing left
    assert again.phase == "done" and again.queue == []


# ---- playing -------------------------------------------------------------------------------------
def test_more_walks_the_six_steps_and_points_drop(make_game):
    game = make_game()
    first = game.masked
    assert game.step == 0 and game.potential == 6
    shown = [png(first)]
    for step in range(1, 6):
        assert game.more()
        assert game.step == step and game.potential == 6 - step
        shown.append(png(game.masked))
    assert not game.more() and game.step == 5 and "30" in game.message
    visible = [float((a.max(axis=2) > 8).mean()) for a in shown]
    assert visible == sorted(visible) and visible[-1] > visible[0]  # more pixels at each step


def test_points_and_streak(make_game, store):
    game = make_game()
    assert game.guess(right(game))
    assert game.outcome == "win" and game.earned == 6
    assert game.submit(["a label"])
    assert (game.points, game.streak) == (6, 1)
    game.more()
    game.more()
    game.guess(right(game))
    assert game.earned == 4
    game.submit(["another"])
    assert (game.points, game.streak, game.best_streak) == (10, 2, 2)
    game.guess(wrong(game))
    assert game.outcome == "lose" and game.earned == 0
    game.submit(["wrong but honest"])
    assert (game.points, game.streak, game.best_streak) == (10, 0, 2)
    game.resign()
    game.skip()
    assert game.points == 10 and game.answered == 4
    board = store.leaderboard()
    assert board.loc[0, "participant"] == "ada" and board.loc[0, "points"] == 10
    assert game.leaderboard[0]["participant"] == "ada" and game.leaderboard[0]["points"] == 10
    assert game.leaderboard[0]["me"] is True


def test_win_lose_resign_are_recorded_exactly(make_game, store, session):
    game = make_game()
    keys = []
    keys.append(game.current)
    game.more()
    game.guess(right(game))
    game.submit(["round wheels", "", "dark windows"])
    keys.append(game.current)
    bad = wrong(game)
    game.guess(bad)
    game.submit(["pointy top"])
    keys.append(game.current)
    game.more()
    game.resign()
    game.submit(["no idea, maybe a roof"])
    keys.append(game.current)
    game.resign()
    game.skip()
    games = store.games("ada")
    assert [MapKey.from_row(r) for r in games.to_dict("records")] == keys
    classes = session.classes
    assert list(games.outcome) == ["win", "lose", "resign", "resign"]
    assert list(games.reveal_step) == [1, 0, 5, 5]  # giving up counts as the last step
    assert list(games.class_guessed[:2]) == [classes[keys[0].target], classes[bad]]
    assert games.class_guessed[2:].isna().all()
    assert list(games.true_class) == [classes[k.target] for k in keys]
    assert list(games.points) == [points_for("win", 1), 0, 0, 0]
    assert list(games.n_labels) == [2, 1, 1, 0]
    assert (games.duration_s >= 0).all()
    labels = store.labels("ada")
    assert list(labels.text) == ["round wheels", "dark windows", "pointy top", "no idea, maybe a roof"]
    assert store.integrity_check() == []


def test_undo_brings_the_labels_back_and_keeps_the_answer(make_game, store):
    game = make_game()
    assert not game.can_undo and not game.undo()
    key = game.current
    game.more()
    game.guess(right(game))
    assert not game.can_undo  # not while an answer is on screen
    game.submit(["tall chimney", "red door"])
    assert game.can_undo and game.points == 5 and len(store.games()) == 1
    on_screen = game.current
    assert game.undo()
    # the answer stays (its class was shown: a revealed class is an answer); its labels come back to be fixed
    assert len(store.games()) == 1 and game.points == 5 and game.answered == 1
    assert game.phase == "answer" and game.current == key and game.queue[0] == key
    assert game.outcome == "win" and game.step == 1 and game.draft == ["tall chimney", "red door"]
    assert "the guess stays" in game.message
    assert game.submit(["tall chimney", "red door frame"])
    assert list(store.labels().text) == ["tall chimney", "red door frame"]
    # the map that was on screen before the undo comes next
    assert game.current == on_screen
    assert game.points == 5


def test_undo_refuses_an_answer_saved_elsewhere(make_game, store):
    game = make_game()
    game.resign()
    game.skip()
    other = make_game("ada")  # the same player in a second window
    other.resign()
    other.skip()
    assert not game.undo()
    assert "another window" in game.message
    assert len(store.games("ada")) == 2


# ---- labels from people ------------------------------------------------------------------------
def test_blank_and_empty_labels_are_refused_with_a_message(make_game, store):
    game = make_game()
    game.guess(right(game))
    assert not game.submit(["   "])
    assert game.message_kind == "error" and "blank" in game.message.lower()
    assert not game.submit(["", "", ""])
    assert "at least one" in game.message
    assert not game.submit(["ok", "\t \n"])
    assert "Label 2" in game.message
    # the answer was saved when the class was shown; no label was stored
    assert game.phase == "answer" and store.games()["labels_pending"].tolist() == [True] and len(store.labels()) == 0
    assert game.submit(["ok"]) and game.message_kind == "success"
    assert store.games()["labels_pending"].tolist() == [False] and store.labels()["text"].tolist() == ["ok"]


def test_long_labels_are_refused_naming_the_limit(make_game, store):
    game = make_game()
    game.guess(wrong(game))
    long = "w" * (MAX_LABEL_CHARS + 1)
    assert not game.submit(["fine", long])
    assert str(MAX_LABEL_CHARS) in game.message and "Label 2" in game.message
    assert game.draft == ["fine", long]  # the boxes keep what was typed
    assert len(store.labels()) == 0 and store.games()["labels_pending"].tolist() == [True]
    exact = "é" * MAX_LABEL_CHARS
    assert game.submit([exact])
    assert store.labels().text.tolist() == [exact]


def test_unicode_and_hostile_labels_are_kept_as_typed(make_game, store):
    game = make_game()
    game.guess(right(game))
    assert game.submit([UNICODE, HOSTILE, "  spaces kept  "])
    # kept as typed, in Unicode NFC (e + combining accent is stored as the one character é)
    nfc = unicodedata.normalize("NFC", UNICODE)
    assert nfc != UNICODE and "\u00e9" in nfc
    assert store.labels().text.tolist() == [nfc, HOSTILE, "  spaces kept  "]
    assert game.recent[0]["labels"] == [nfc, HOSTILE, "  spaces kept  "]
    assert game.recent[0]["outcome"] == "win"
    game.resign()
    game.skip()
    assert game.undo()
    game.undo()  # second undo: that answer is on screen now, so refused
    assert game.draft == []


def test_front_end_never_parses_text_as_html():
    js = (STATIC / "game.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, f"game.js uses {sink}"


# ---- fair play ---------------------------------------------------------------------------------
def _state_text(game) -> str:
    state = game.get_state()
    return " ".join(str(v) for k, v in state.items() if k != "classes" and not isinstance(v, (bytes, memoryview)))


def test_no_class_is_revealed_before_the_guess(make_game, session):
    game = make_game()
    at_first = png(game.masked)
    for step in range(6):
        truth = session.classes[game.current.target]
        assert game.true_class == "" and game.true_index == -1 and game.outcome == "" and game.overlay == b""
        assert game.guessed == -1 and game.earned == 0
        text = _state_text(game)
        for name in game.classes:
            assert not re.search(rf"\b{re.escape(name)}\b", text, re.I), f"{name!r} is in the state before the guess"
        if step < 5:
            game.more()
    # the masked image hides most of the picture: at 2 %, most of it is black
    assert (at_first.max(axis=2) < 8).mean() > 0.7
    game.guess(wrong(game))
    assert game.true_class == truth and game.overlay != b""
    assert png(game.overlay).shape == at_first.shape


def test_state_before_the_guess_does_not_depend_on_the_answer(session, store, layers):
    """Two games on images of different classes: apart from the pictures, the same traits."""
    a = LabelingGame(session, store, "ada", images=[0], layers=layers)
    b = LabelingGame(session, store, "bob", images=[1], layers=layers)
    assert session.label(0) != session.label(1)
    a.start()
    b.start()
    skip = {
        "masked",
        "map_info",
        "leaderboard",
        "participant",
        "message",
        "message_kind",
        "message_revision",
        "total",
        "layout",
    }
    sa = {k: v for k, v in a.get_state().items() if k not in skip}
    sb = {k: v for k, v in b.get_state().items() if k not in skip}
    assert sa == sb


# ---- errors lose no answer --------------------------------------------------------------------
def test_store_busy_keeps_the_answer_until_the_retry(make_game, tmp_path):
    path = tmp_path / "busy.sqlite"
    store = LabelStore(path, timeout=0.2)
    game = make_game(store=store)
    key = game.current
    game.more()
    game.guess(right(game))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        assert not game.submit(["striped sail"])
        assert game.message_kind == "error" and "busy" in game.message and "try again" in game.message.lower()
        assert game.phase == "answer" and game.current == key and game.draft == ["striped sail"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert len(store.labels()) == 0 and store.games()["labels_pending"].tolist() == [True]
    assert game.submit(["striped sail"])
    games = store.games()
    assert len(games) == 1 and games.loc[0, "outcome"] == "win" and games.loc[0, "reveal_step"] == 1
    assert store.labels().text.tolist() == ["striped sail"]
    assert game.message_kind == "success"
    store.close()


def test_any_store_error_keeps_the_answer(make_game, store, monkeypatch):
    game = make_game()
    game.guess(right(game))
    calls = []

    def broken(*a, **k):
        calls.append(a)
        raise StoreBusyError(store.path, 0.1)

    monkeypatch.setattr(store, "set_labels", broken)
    assert not game.submit(["one"])
    assert "busy" in game.message and game.phase == "answer"
    monkeypatch.undo()
    assert game.submit(["one"]) and len(calls) == 1
    assert len(store.games()) == 1 and store.labels()["text"].tolist() == ["one"]


def test_messages_from_the_browser(make_game, store):
    game = make_game()
    rnd = game.round
    game._on_msg(game, {"type": "more", "round": rnd}, [])
    assert game.step == 1
    game._on_msg(game, {"type": "guess", "class": right(game), "round": rnd}, [])
    assert game.phase == "answer"
    game._on_msg(game, {"type": "guess", "class": 0, "round": rnd}, [])  # a second key press: ignored
    assert game.outcome == "win"
    game._on_msg(game, {"type": "submit", "labels": ["x"], "round": rnd}, [])
    assert game.round != rnd and len(store.games()) == 1
    game._on_msg(game, {"type": "submit", "labels": ["x"], "round": rnd}, [])  # stale: ignored
    assert len(store.games()) == 1
    game._on_msg(game, {"type": "guess", "class": "not a class", "round": game.round}, [])
    assert game.message_kind == "error" and game.phase == "play"
    game._on_msg(game, {"type": "undo"}, [])
    assert len(store.games()) == 1 and game.phase == "answer"


# ---- participants --------------------------------------------------------------------------------
def test_name_screen_first_when_no_participant(make_game, store):
    game = make_game(None)
    assert game.phase == "name" and not game.guess(0)
    assert not game.join("   ") and "empty" in game.message
    assert not game.join("n" * 65) and "64" in game.message
    assert game.phase == "name" and len(store.participants()) == 0
    assert game.join("  Zoë 🎲 <b>x</b> ")
    assert game.participant == "Zoë 🎲 <b>x</b>" and game.phase == "play"
    assert store.participants().participant.tolist() == ["Zoë 🎲 <b>x</b>"]
    assert any(r["participant"] == "Zoë 🎲 <b>x</b>" for r in game.leaderboard)


def test_coming_back_keeps_points_and_skips_answered_maps(make_game):
    game = make_game()
    first = game.current
    game.guess(right(game))
    game.submit(["x"])
    back = make_game(None)
    back.join("ada")
    assert "Welcome back" in back.message
    assert back.points == 6 and back.answered == 1 and first not in back.queue


def test_refresh_shows_other_players(make_game, store):
    game = make_game()
    assert [r["participant"] for r in game.leaderboard] == []
    store.record_answer("bob", game.pool[-1], None, "x", "resign", 5, [])
    assert game.refresh()
    assert [r["participant"] for r in game.leaderboard] == ["bob"]


def test_bad_arguments_are_explained(session, store, layers):
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        LabelingGame(session, store, "a", layers=["nope"])
    with pytest.raises(IndexError, match="out of range"):
        LabelingGame(session, store, "a", images=[99])
    with pytest.raises(ValueError, match="k must be"):
        LabelingGame(session, store, "a", k=0)
    with pytest.raises(ValueError, match="recipe"):
        LabelingGame(session, store, "a", recipe="magic")
    with pytest.raises(TypeError, match="LabelStore"):
        LabelingGame(session, object(), "a")
    with pytest.raises(ValueError, match="64"):
        LabelingGame(session, store, "x" * 65)
    with pytest.raises(ValueError, match="target"):
        LabelingGame(session, store, "a", target="truth")


def test_predicted_target_and_fixed_k(session, store, layers):
    game = LabelingGame(session, store, "a", images=[0], layers=layers[-1:], k=2, target="predicted")
    assert len(game.pool) == game.total == 2
    assert {k.target for k in game.pool} == {int(session.explain(0).predicted)}


def test_store_path_is_accepted(session, tmp_path, layers):
    game = LabelingGame(session, tmp_path / "s.sqlite", "a", images=[0], layers=layers[-1:])
    game.start()
    game.resign()
    game.skip()
    assert len(LabelStore(tmp_path / "s.sqlite").games()) == 1


# ---- the widget over its pool and queue ------------------------------------------------------------
def test_playing_and_undoing_never_run_the_model_again(make_game, session, store, monkeypatch):
    game = make_game()  # the pool is built: every image explained once
    session.clear_cache()

    def no_model(*args, **kwargs):
        raise AssertionError("the game asked the session for an explanation during play")

    monkeypatch.setattr(session, "explain", no_model)
    monkeypatch.setattr(session, "explain_many", no_model)
    game.more()
    game.guess(right(game))
    assert game.overlay and game.phase == "answer"
    assert game.submit(["wheel"])
    assert game.undo() and game.phase == "answer" and game.overlay
    assert game.submit(["wheel"]) and game.phase == "play" and game.message_kind == "success"
    assert len(store.games()) == 1


def test_message_table_calls_the_methods_of_the_same_names(make_game):
    from inv_widgets.widgets.game import ACTIONS

    assert set(ACTIONS) == {"ready", "name", "guess", "more", "resign", "submit", "skip", "undo", "refresh", "dismiss"}
    for kind in ACTIONS:
        if kind not in ("ready", "name", "dismiss"):
            assert callable(getattr(LabelingGame, kind)), kind
    game = make_game()
    before = game.get_state()
    game._on_msg(game, {"type": "no such action"}, [])
    game._on_msg(game, ["not", "a", "dict"], [])
    assert game.get_state() == before  # ignored
    game._on_msg(game, {"type": "guess", "class": 99, "round": game.round}, [])
    assert game.message_kind == "error"
    game._on_msg(game, {"type": "dismiss"}, [])
    assert game.message == "" and game.message_kind == ""
    game._on_msg(game, {"type": "refresh"}, [])
    assert game.message == "Leaderboard updated."


def test_a_store_is_checked_by_what_the_game_needs(session, layers):
    class Partial:
        def record_answer(self, *a, **k): ...

    with pytest.raises(TypeError, match=r"it has no add_participant\(\), participants\(\), set_labels\(\)"):
        LabelingGame(session, Partial(), "a", layers=layers)


# ---- fair play across two tabs, read-only stores (issue 12 items 5 and 7) -----------------------------------
def test_one_player_in_two_tabs_cannot_score_a_map_twice(make_game, store):
    tab_a, tab_b = make_game("ada"), make_game("ada")
    assert tab_a.current == tab_b.current  # opened together: the same map
    same = tab_a.current
    assert tab_a.resign() and tab_a.skip()
    assert not tab_b.guess(right(tab_b))  # the win at step 0 that scored 6 points before
    assert "already answered" in tab_b.message and tab_b.message_kind == "info"
    assert tab_b.phase == "play" and tab_b.current != same and tab_b.points == 0
    games = store.games("ada")
    assert games["outcome"].tolist() == ["resign"] and games["points"].sum() == 0


def test_a_read_only_store_is_said_at_once_and_never_invites_submit_again(session, layers, postgres_server):
    url = postgres_server.create_database("game_ro")
    LabelStore(url).close()
    postgres_server.execute("DROP ROLE IF EXISTS game_reader")
    postgres_server.execute("CREATE ROLE game_reader LOGIN")
    postgres_server.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO game_reader", database="game_ro")
    reader = LabelStore(postgres_server.url("game_ro", user="game_reader"))
    game = LabelingGame(session, reader, images=[0], layers=layers)
    game.start()
    assert game.phase == "name" and game.message_kind == "error" and "read-only" in game.message
    assert not game.join("ada")
    assert "read-only" in game.message and game.phase == "name" and len(reader.participants()) == 0
    reader.close()

    # a store that turns read-only during the game (the right to write taken away)
    postgres_server.execute(
        "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO game_reader", database="game_ro"
    )
    writer = LabelStore(postgres_server.url("game_ro", user="game_reader"))
    game = LabelingGame(session, writer, "ada", images=[0], layers=layers)
    game.start()
    assert game.phase == "play"
    postgres_server.execute(
        "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM game_reader", database="game_ro"
    )
    assert not game.guess(right(game))  # not saved: nothing is shown
    assert game.message_kind == "error" and "read-only" in game.message
    assert "again" not in game.message.lower()
    assert game.phase == "play" and game.true_class == "" and game.overlay == b""
    assert len(LabelStore(url).games()) == 0
    writer.close()


def test_a_damaged_store_file_is_refused_before_anyone_plays(session, layers, tmp_path):
    from inv_widgets.labels import StoreDamagedError

    path = tmp_path / "labels.sqlite"
    s = LabelStore(path)
    for i in range(300):
        s.record_answer(f"p{i % 5}", MapKey("net", f"img{i}", 0, "conv", [1]), "car", "car", "win", 0, ["w" * 80])
    s.close()
    with open(path, "r+b") as f:  # 4 KiB overwritten in the middle: the game used to say "Saved" on it
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 4096)
    with pytest.raises(StoreDamagedError, match="labels.sqlite.*damaged.*backup"):
        LabelingGame(session, path, "ada", images=[0], layers=layers)
