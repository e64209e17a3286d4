"""The rules of the game (inv_widgets.labels.rules): the one place the store, the import and the game
take their limits, points, streaks, clock and validation from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inv_widgets.engine.maps import REVEAL_PERCENTS
from inv_widgets.labels import rules
from inv_widgets.labels.rules import (
    MAX_LABEL_CHARS,
    MAX_LABELS,
    MAX_NAME_CHARS,
    MAX_STEP,
    RuleError,
    check_labels,
    check_name,
    labels_from_boxes,
    points_for,
    streaks,
    validate_answer,
)
from inv_widgets.labels.store import LabelStore, MapKey

KEY = MapKey("vgg16-abc", "img_7", 4, "block5_conv3", [42, 3, 17])


def test_limits_are_those_of_the_game_and_the_reveal_steps():
    assert (MAX_LABELS, MAX_LABEL_CHARS, MAX_NAME_CHARS) == (3, 200, 64)
    assert MAX_STEP == len(REVEAL_PERCENTS) - 1 == 5  # one step per reveal percentage
    assert rules.OUTCOMES == ("win", "lose", "resign")


@pytest.mark.parametrize("step,points", [(0, 6), (1, 5), (3, 3), (5, 1)])
def test_points_reward_early_right_guesses(step, points):
    assert points_for("win", step) == points
    assert points_for("lose", step) == 0
    assert points_for("resign", step) == 0


def test_points_reject_bad_input():
    with pytest.raises(ValueError, match="outcome"):
        points_for("won", 0)
    with pytest.raises(ValueError, match="between 0 and 5"):
        points_for("win", 6)
    with pytest.raises(TypeError, match="bool"):
        points_for("win", True)
    with pytest.raises(TypeError, match="int"):
        points_for("win", 2.0)


@pytest.mark.parametrize(
    "outcomes,expected",
    [
        ([], (0, 0)),
        (["win"], (1, 1)),
        (["win", "win", "lose", "win"], (1, 2)),
        (["win", "resign", "win", "win", "win"], (3, 3)),
        (["win", "win", "win", "lose"], (0, 3)),
    ],
)
def test_streaks_are_the_current_and_the_longest_run_of_wins(outcomes, expected):
    assert streaks(outcomes) == expected
    assert streaks(iter(outcomes)) == expected  # any iterable, read once


def test_outcome_of_a_guess():
    assert rules.outcome_of(3, 3) == "win"
    assert rules.outcome_of(2, 3) == "lose"
    assert rules.outcome_of(None, 3) == "resign"


def test_names_are_stripped_and_refused_with_a_message_for_each_reader():
    assert check_name("  Zoë 🦊 ") == "Zoë 🦊"
    assert check_name("n" * MAX_NAME_CHARS) == "n" * MAX_NAME_CHARS
    with pytest.raises(RuleError) as info:
        check_name("   ")
    assert str(info.value) == "a participant name must not be empty or blank"
    assert info.value.for_player == "Please type your name (it cannot be empty)."
    with pytest.raises(RuleError) as info:
        check_name("n" * 65)
    assert "at most 64 characters; got 65" in str(info.value)
    assert info.value.for_player == "Your name is 65 characters long; names have at most 64 characters."
    with pytest.raises(RuleError) as info:
        check_name("nul\x00")
    assert "NUL" in str(info.value) and info.value.for_player == "Your name contains a NUL character; please remove it."
    with pytest.raises(RuleError, match="surrogate"):
        check_name("lone \ud800")
    with pytest.raises(TypeError, match="must be a str"):
        check_name(None)
    assert isinstance(RuleError("x"), ValueError)


def test_stored_labels_need_one_to_three_texts_within_the_limit():
    assert check_labels(["  as typed  ", "x" * MAX_LABEL_CHARS], "win") == ["  as typed  ", "x" * MAX_LABEL_CHARS]
    assert check_labels([], "resign") == [] and check_labels(None, "resign") == []
    for labels, match in [
        ([], "win answer needs 1 to 3 labels; got 0"),
        (["a", "b", "c", "d"], "needs 1 to 3 labels; got 4"),
        (["ok", " \t"], "label 2 of 2 is empty"),
        (["x" * 201], "has 201 characters; the limit is 200"),
    ]:
        with pytest.raises(RuleError, match=match):
            check_labels(labels, "win")
    with pytest.raises(TypeError, match="not a single str"):
        check_labels("wheel", "win")
    with pytest.raises(TypeError, match="must be a str"):
        check_labels([3], "win")


def test_the_games_boxes_drop_untouched_ones_and_number_boxes_as_seen():
    assert labels_from_boxes(["wheel", "", "round tyre"], "win") == ["wheel", "round tyre"]
    assert labels_from_boxes("wheel", "lose") == ["wheel"]  # one text is one box
    assert labels_from_boxes(["", "", ""], "resign") == []
    cases = [
        (["ok", "\t \n"], "win", "Label 2 is blank: type a feature, or clear the box."),
        (
            ["", "", ""],
            "win",
            f"Type at least one feature that gave it away (up to {MAX_LABELS}, each at most "
            f"{MAX_LABEL_CHARS} characters).",
        ),
        (
            ["fine", "w" * 201],
            "lose",
            "Label 2 is 201 characters long; the limit is 200 characters. Please shorten it.",
        ),
        (["a", "b", "c", "d"], "win", "At most 3 labels, please (you gave 4)."),
        (["a", 3], "win", "Labels must be texts."),
        (5, "win", "Labels must be a list of texts."),
        (["nul\x00"], "win", "Label 1 contains a NUL character; please remove it."),
    ]
    for boxes, outcome, said in cases:
        with pytest.raises(RuleError) as info:
            labels_from_boxes(boxes, outcome)
        assert info.value.for_player == said


def test_times_are_read_as_utc():
    t = rules.as_time("2024-05-01T10:00:00Z", "t")
    assert t == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert rules.as_time(0, "t") == datetime(1970, 1, 1, tzinfo=UTC)
    naive = datetime(2024, 5, 1, 10)
    assert rules.as_time(naive, "t") == naive.astimezone().astimezone(UTC)  # naive = local time
    assert rules.iso(t) == "2024-05-01T10:00:00.000000+00:00"
    assert rules.as_time(None, "t") is None and rules.iso(None) is None
    with pytest.raises(RuleError, match="finite"):
        rules.as_time(float("nan"), "t")
    with pytest.raises(RuleError, match="ISO 8601"):
        rules.as_time("yesterday", "t")
    with pytest.raises(TypeError):
        rules.as_time(True, "t")
    assert rules.now().tzinfo is UTC


def test_validate_answer_derives_duration_and_cleans_a_copy():
    a = validate_answer(
        " ada ",
        KEY,
        "church",
        "church",
        "win",
        2,
        ["The Church's tall Spire!"],
        started_at="2024-05-01T10:00:00+00:00",
        answered_at="2024-05-01T10:00:12.5+00:00",
    )
    assert (a.participant, a.key, a.outcome, a.step) == ("ada", KEY, "win", 2)
    assert a.labels == ("The Church's tall Spire!",) and a.cleaned == ("tall spire",)
    assert a.duration_s == pytest.approx(12.5)
    kept = validate_answer("ada", tuple(KEY), None, 4, "resign", 5, [], answered_at=0, duration_s="3.5")
    assert kept.duration_s == 3.5 and kept.guessed is None and kept.true_class == "4"  # an import keeps it
    with pytest.raises(RuleError, match="after"):
        validate_answer("ada", KEY, "a", "a", "win", 0, ["x"], started_at=10, answered_at=5)
    with pytest.raises(RuleError, match="guessed == true_class"):
        validate_answer("ada", KEY, "a", "b", "win", 0, ["x"])
    with pytest.raises(TypeError, match="MapKey"):
        validate_answer("ada", ("m", 1), "a", "a", "win", 0, ["x"])


def test_the_store_reads_the_time_from_the_rules_clock(monkeypatch):
    fixed = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    monkeypatch.setattr(rules, "now", lambda: fixed)
    s = LabelStore()
    s.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"], started_at=fixed - timedelta(seconds=4))
    g = s.games().iloc[0]
    assert g.answered_at == "2030-01-02T03:04:05.000000+00:00" and g.duration_s == pytest.approx(4.0)
    assert s.participants()["created"].tolist() == ["2030-01-02T03:04:05.000000+00:00"]
