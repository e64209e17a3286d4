"""One participant's queue (inv_widgets.labels.queue) over a hand-made pool and a real store: no widget,
no model."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from inv_widgets.labels import rules
from inv_widgets.labels.pool import Pool, PoolItem
from inv_widgets.labels.queue import (
    NotSaved,
    ParticipantQueue,
    Refusal,
    check_store,
    least_labelled,
    read_leaderboard,
    read_progress,
    sign_in,
)
from inv_widgets.labels.rules import RuleError
from inv_widgets.labels.store import LabelStore, MapKey, StoreBusyError

CLASSES = ["car", "house", "clock"]


def _pool() -> Pool:
    """Six maps: 3 images (targets 0, 1, 2) x 2 layers, one map per layer and image, in a fixed order."""
    low = np.eye(4, dtype=np.float32)
    items = []
    for pos, image in enumerate(range(3)):
        for depth, layer in enumerate(["conv1", "conv2"], 1):
            key = MapKey("net", f"img{image}", image, layer, [depth, 10 + image])
            items.append(PoolItem(key, image, image, layer, depth, 0, 50.0, low, "fast", None, (0, 2 - depth, pos)))
    return Pool(items, lambda i: np.full((16, 16, 3), 100 + i, np.uint8), ["conv1", "conv2"])


@pytest.fixture
def pool():
    return _pool()


@pytest.fixture
def store():
    s = LabelStore()
    yield s
    s.close()


def queue_of(pool, store, name="ada") -> ParticipantQueue:
    q = ParticipantQueue(pool, store, name, CLASSES)
    q.load()
    return q


def test_order_is_least_labelled_first_then_the_pool_order(pool, store):
    keys = pool.keys
    assert [k.layer for k in keys[:3]] == ["conv2"] * 3  # deepest layer first, then image order
    q = queue_of(pool, store)
    assert [it.key for it in q.upcoming()] == keys
    store.record_answer("bob", keys[0], "car", "car", "win", 0, ["a", "b"])
    store.record_answer("cy", keys[1], None, "house", "resign", 5, ["c"])
    assert [it.key for it in q.upcoming()] == keys[2:] + [keys[1], keys[0]]  # counts are read again
    first = q.next()
    assert first.key == keys[2] and q.current is first and q.step == 0
    assert [it.key for it in q.upcoming()][0] == keys[2]  # the current map heads the list


def test_a_player_never_gets_a_map_twice_and_the_queue_ends(pool, store):
    q = queue_of(pool, store)
    seen = []
    while (item := q.next()) is not None:
        seen.append(item.key)
        q.resign()
        q.submit([])
    assert len(seen) == len(set(seen)) == len(pool) and q.current is None
    again = queue_of(pool, store)  # the same player in a new session: everything is answered
    assert again.next() is None and again.upcoming() == []
    assert queue_of(pool, store, "bob").next() is not None


def test_guess_more_resign_and_the_steps(pool, store):
    q = queue_of(pool, store)
    item = q.next()
    with pytest.raises(Refusal, match="no answer to save"):
        q.submit(["x"])
    assert [q.more() for _ in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(Refusal, match="30 % of the pixels"):
        q.more()
    with pytest.raises(Refusal, match="no class 'boat'") as info:
        q.guess("boat")
    assert info.value.kind == "error"
    answer = q.guess(CLASSES[item.target])  # by name or by index
    assert (answer.outcome, answer.step, answer.guessed) == ("win", 5, item.target)
    with pytest.raises(Refusal):
        q.more()  # the answer waits for its labels
    item2 = (q.submit(["x"]), q.next())[1]
    wrong = q.guess((item2.target + 1) % 3)
    assert wrong.outcome == "lose" and wrong.step == 0
    q.submit(["y"])
    q.next()
    assert q.resign().step == rules.MAX_STEP and q.step == rules.MAX_STEP


def test_submit_stores_exactly_the_answer(pool, store, monkeypatch):
    t0 = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    monkeypatch.setattr(rules, "now", lambda: t0)  # the queue reads the rules' clock
    q = queue_of(pool, store)
    item = q.next()
    assert q.started_at == t0
    q.more()
    q.guess(item.target)
    game_id = q.submit(["round wheels", "", "  kept as typed "])
    g = store.games("ada").iloc[0]
    assert game_id == g.game_id and MapKey.from_row(g) == item.key
    assert (g.class_guessed, g.true_class, g.outcome, g.reveal_step, g.points) == (
        CLASSES[item.target],
        CLASSES[item.target],
        "win",
        1,
        5,
    )
    assert g.started_at == g.answered_at == "2031-05-06T07:08:09.000000+00:00"
    assert store.labels("ada").text.tolist() == ["round wheels", "  kept as typed "]
    assert q.pending is None and q.current is None and item.key in q.done and q.can_undo


def test_refused_labels_and_store_errors_keep_the_answer_waiting(pool, store, monkeypatch):
    q = queue_of(pool, store)
    q.next()
    q.guess(0)
    with pytest.raises(RuleError) as info:
        q.submit(["ok", "   "])
    assert info.value.for_player.startswith("Label 2 is blank")
    assert q.pending is not None and q.pending.labels == ["ok", "   "]  # what was typed, for the boxes

    def busy(*args, **kwargs):
        raise StoreBusyError(store.path, 0.1)

    monkeypatch.setattr(store, "set_labels", busy)
    with pytest.raises(NotSaved) as failure:
        q.submit(["fine"])
    assert isinstance(failure.value.error, StoreBusyError)
    assert q.pending is not None and q.pending.labels == ["fine"] and not q.history
    monkeypatch.undo()
    q.submit(["fine"])
    assert store.labels().text.tolist() == ["fine"]
    # a guess the store did not take is not pending (the class is not to be shown): nothing stored, guess again
    item = q.next()
    monkeypatch.setattr(store, "record_answer", busy)
    with pytest.raises(NotSaved):
        q.guess(item.target)
    assert q.pending is None and q.current is item and len(store.games()) == 1
    monkeypatch.undo()
    assert q.guess(item.target).outcome == "win" and len(store.games()) == 2


def test_undo_brings_the_answer_back_and_the_current_map_comes_next(pool, store):
    q = queue_of(pool, store)
    with pytest.raises(Refusal, match="Nothing to undo"):
        q.undo()
    zeroth = q.next()
    q.resign()
    q.submit([])
    first = q.next()
    q.more()
    q.guess(first.target)
    q.submit(["tall chimney", "red door"])
    second = q.next()
    answer = q.undo()
    # the answer stays in the store (its class was shown); its labels come back to be fixed
    assert store.games().outcome.tolist() == ["resign", "win"] and first.key in q.done and zeroth.key in q.done
    assert q.current is first and q.pending is answer and q.step == 1
    assert answer.labels == ["tall chimney", "red door"] and answer.outcome == "win"
    with pytest.raises(Refusal, match="Save or skip the answer on screen first"):
        q.undo()
    q.submit(["tall chimney", "red door frame"])
    assert store.labels().text.tolist() == ["tall chimney", "red door frame"]
    assert q.next() is second  # the map that was on screen before the undo comes right after


def test_undo_refuses_answers_saved_elsewhere_or_gone(pool, store):
    q = queue_of(pool, store)
    q.next()
    q.resign()
    q.submit([])
    other = queue_of(pool, store)  # the same player in a second window
    other.next()
    other.resign()
    other.submit([])
    with pytest.raises(Refusal, match="another window") as info:
        q.undo()
    assert info.value.kind == "error" and not q.history and len(store.games("ada")) == 2
    assert other.can_undo
    # taken back by someone else (another program's store.undo_last) before the undo
    assert store.undo_last("ada")
    with pytest.raises(Refusal, match="no longer in the store"):
        other.undo()
    assert not other.history and len(store.games("ada")) == 1


def test_progress_points_streaks_and_recent_answers(pool, store):
    q = queue_of(pool, store)
    assert q.load() == read_progress(store, "ada") and q.load().points == 0
    served = []
    for labels, win in ((["a"], True), (["b", "c"], True), (["d"], False), (["e"], True)):
        item = q.next()
        served.append(item)
        q.guess(item.target if win else (item.target + 1) % 3)
        q.submit(labels)
    store.record_answer("ada", MapKey("other", "x", 0, "l", [1]), "car", "car", "win", 0, ["elsewhere"])
    p = q.load()
    assert (p.points, p.streak, p.best_streak) == (6 * 3 + 6, 2, 2)
    assert p.answered == 4 and len(p.done) == 5  # answered maps of this pool; all of them in done
    assert [r["labels"] for r in p.recent] == [["elsewhere"], ["e"], ["d"], ["b", "c"], ["a"]]
    assert p.recent[2] == {"true_class": CLASSES[served[2].target], "outcome": "lose", "points": 0, "labels": ["d"]}
    board = read_leaderboard(store, "ada", rows=1)
    assert board == q.leaderboard(rows=1) and board[0]["participant"] == "ada" and board[0]["me"] is True


def test_dropped_maps_are_not_served_or_counted(pool, store):
    q = queue_of(pool, store)
    item = q.next()
    q.drop(item)
    assert q.current is None and q.total == len(pool) - 1
    assert item.key not in [it.key for it in q.upcoming()]
    served = []
    while (it := q.next()) is not None:
        served.append(it.key)
        q.resign()
        q.submit([])
    assert item.key not in served and len(served) == len(pool) - 1


def test_the_store_is_checked_once_by_its_protocol(pool):
    class Half:
        def record_answer(self, *a, **k): ...
        def games(self, *a, **k): ...

    with pytest.raises(
        TypeError, match=r"store must be a LabelStore \(it has no add_participant\(\), participants\(\)"
    ):
        check_store(Half())
    with pytest.raises(TypeError, match="LabelStore"):
        ParticipantQueue(pool, object(), "ada", CLASSES)
    with pytest.raises(ValueError, match="empty"):
        ParticipantQueue(pool, LabelStore(), "  ", CLASSES)


def test_sign_in_and_busy_counts(pool, store, monkeypatch):
    assert sign_in(store, "  Zoë ") == ("Zoë", False)
    assert sign_in(store, "Zoë") == ("Zoë", True)
    with pytest.raises(RuleError):
        sign_in(store, "")
    counts = {}
    store.record_answer("bob", pool.keys[0], "car", "car", "win", 0, ["a"])
    assert least_labelled(store, list(pool), counts)[-1].key == pool.keys[0]

    def busy(keys):
        raise StoreBusyError(store.path, 0.1)

    monkeypatch.setattr(store, "label_counts", busy)
    # a busy store: the counts read last time decide
    assert least_labelled(store, list(pool), counts)[-1].key == pool.keys[0]


# ---- fair play: one player in two browser tabs (issue 12 item 7) -----------------------------------------


def test_a_map_given_up_in_one_tab_cannot_be_scored_in_the_other(pool, any_store):
    tab_a, tab_b = queue_of(pool, any_store), queue_of(pool, any_store)
    a, b = tab_a.next(), tab_b.next()
    assert a.key == b.key  # both tabs opened at once: the same least-labelled map
    tab_a.resign()
    tab_a.submit([])  # given up in tab A
    with pytest.raises(rules.AlreadyAnswered) as info:
        tab_b.guess(b.target)  # tab B tries the right class at step 0: 6 points before the fix
    assert "already answered" in info.value.for_player
    assert tab_b.current is None and tab_b.pending is None and b.key in tab_b.done
    games = any_store.games("ada")
    assert games["outcome"].tolist() == ["resign"] and games["points"].sum() == 0
    assert tab_b.next().key != a.key  # tab B goes on with another map


def test_an_answer_saved_in_one_tab_is_the_answer_while_its_labels_are_typed(pool, any_store):
    tab_a, tab_b = queue_of(pool, any_store), queue_of(pool, any_store)
    a, b = tab_a.next(), tab_b.next()
    tab_b.guess(b.target)  # tab B guessed first (right, step 0): saved; its player is typing the labels...
    with pytest.raises(rules.AlreadyAnswered):
        tab_a.guess(a.target)  # ...so tab A cannot answer the same map
    tab_b.submit(["round wheel"])
    games = any_store.games("ada")
    assert len(games) == 1 and any_store.labels()["text"].tolist() == ["round wheel"]
    assert games["points"].sum() == 6 and not games["labels_pending"].any()
    assert tab_a.pending is None and tab_a.next().key != a.key


def test_next_skips_maps_answered_in_another_tab(pool, any_store):
    tab_a, tab_b = queue_of(pool, any_store), queue_of(pool, any_store)
    first = tab_a.next()
    tab_a.guess(first.target)
    tab_a.submit(["wheel"])
    assert tab_b.next().key != first.key  # tab B had loaded its progress before tab A answered


def test_record_answer_once_refuses_a_second_answer_of_the_same_map(any_store):
    k = MapKey("net", "img0", 0, "conv1", [1])
    any_store.record_answer("ada", k, "car", "car", "win", 0, ["wheel"], once=True)
    with pytest.raises(rules.AlreadyAnswered, match="already answered"):
        any_store.record_answer("ada", k, None, "car", "resign", 5, [], once=True)
    any_store.record_answer("bob", k, None, "car", "resign", 5, [], once=True)  # another player may
    any_store.record_answer("ada", k, None, "car", "resign", 5, [])  # once=False: stored as asked
    assert any_store.games()["participant"].tolist() == ["ada", "bob", "ada"]
    assert any_store.has_answered("ada", k) and not any_store.has_answered("eve", k)
