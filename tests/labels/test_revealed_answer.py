"""A revealed class is an answer (issue 23, finding 2): a guess or a resignation is saved when the class is
shown, before its labels, so no other tab of the same player can score that map. Two queues (two widgets)
over one store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from inv_widgets.labels import rules
from inv_widgets.labels.queue import NotSaved, ParticipantQueue
from inv_widgets.labels.store import AnswerOutcomeUnknown

from .test_queue import CLASSES, _pool


def _tabs(store, name="ada"):
    pool = _pool()
    tabs = []
    for _ in range(2):
        q = ParticipantQueue(pool, store, name, CLASSES)
        q.load()
        tabs.append(q)
    return tabs


@pytest.mark.parametrize("how", ["resign", "lose"])
def test_a_class_shown_in_one_tab_cannot_be_scored_in_the_other(how, any_store):
    tab_a, tab_b = _tabs(any_store)
    a, b = tab_a.next(), tab_b.next()
    assert a.key == b.key
    if how == "resign":
        answer = tab_a.resign()
    else:
        answer = tab_a.guess((a.target + 1) % len(CLASSES))
    assert answer.outcome == how  # tab A shows the class now; its player has not typed any label yet
    with pytest.raises(rules.AlreadyAnswered):
        tab_b.guess(b.target)  # the right class at step 0: +6 points before the fix
    games = any_store.games("ada")
    assert games["outcome"].tolist() == [how] and games["points"].sum() == 0
    assert games["labels_pending"].tolist() == [True] and len(any_store.labels()) == 0
    assert tab_b.next().key != a.key
    # tab A's labels follow as an update of the same answer
    tab_a.submit(["tall chimney"] if how == "lose" else [])
    games = any_store.games("ada")
    assert len(games) == 1 and games["labels_pending"].tolist() == [False]
    assert any_store.integrity_check() == []


@pytest.mark.slow  # builds a session and its pool: the widget tier's, not the unit tier's
def test_two_game_widgets_of_one_player_on_one_store(tmp_path):
    """The same with the widget: tab A gives up and sees the class; tab B's right guess at step 0 is refused."""
    import torch

    import inv_widgets as inv
    from inv_widgets.labels import LabelStore

    torch.manual_seed(0)
    session = inv.Session(inv.demo.DemoCNN(num_classes=10).eval(), inv.demo.PartsDataset(n=2))
    store = LabelStore(tmp_path / "labels.sqlite")
    layers = session.layers[-1:]
    tab_a = inv.LabelingGame(session, store, "ada", images=[0], layers=layers)
    tab_b = inv.LabelingGame(session, store, "ada", images=[0], layers=layers)
    tab_a.start()
    tab_b.start()
    assert tab_a.current == tab_b.current
    same = tab_a.current
    assert tab_a.resign() and tab_a.phase == "answer" and tab_a.true_class  # the class is on screen in tab A
    right = session.classes.index(tab_a.true_class)
    assert not tab_b.guess(right)
    assert "already answered" in tab_b.message and tab_b.points == 0 and tab_b.current != same
    games = store.games("ada")
    assert games["outcome"].tolist() == ["resign"] and games["points"].sum() == 0
    assert tab_a.skip() and store.games("ada")["labels_pending"].tolist() == [False]
    store.close()


def test_an_answer_whose_outcome_is_unknown_is_sent_again_and_stored_once(any_store, monkeypatch):
    tab, _ = _tabs(any_store)
    item = tab.next()
    real = any_store.record_answer

    def lost_after_commit(*args, **kwargs):
        real(*args, **kwargs)  # the server kept it, but the acknowledgment never came back
        raise AnswerOutcomeUnknown(any_store.path, "answer", kwargs.get("answer_id"))

    monkeypatch.setattr(any_store, "record_answer", lost_after_commit)
    wrong = (item.target + 1) % len(CLASSES)
    with pytest.raises(NotSaved) as failure:
        tab.guess(wrong)
    assert isinstance(failure.value.error, AnswerOutcomeUnknown) and tab.pending is None
    monkeypatch.undo()
    again = tab.guess(item.target)  # another click: the answer already sent is sent again, unchanged
    assert again.guessed == wrong and again.outcome == "lose"
    games = any_store.games("ada")
    assert len(games) == 1 and games["answer_id"].tolist() == [again.answer_id]
    assert games["weight"].tolist() == [50.0]  # the map's weight travels with the answer (issue 21)
