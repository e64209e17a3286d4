"""Export and import of the label store (inv_widgets.labels.io): lossless round trips of hostile text,
files refused with a message that names the problem."""

from __future__ import annotations

import json
import unicodedata

import pandas as pd
import pytest

from inv_widgets.labels import io as label_io
from inv_widgets.labels.store import MAX_LABEL_CHARS, LabelStore, MapKey

KEY = MapKey("vgg16-abc", "img_7", 4, "block5_conv3", [42, 3, 17])

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "Robert'); DROP TABLE labels;--",
    "quote \" and 'single' and `back`",
    "comma, semicolon; tab\there",
    "new\nline",
    "carriage\r\nreturn",
    "lone\rcr",
    "  leading and trailing  ",
    "NA",
    "null",
    "None",
    "nan",
    "1e5",
    "0001",
    "=SUM(A1:A2)",
    "emoji 🚗🛞👍🏽 and ZWJ 👩‍🔬",
    "RTL עברית العربية \u202eevil",
    "combining e\u0301 vs \u00e9",
    "zero\u200bwidth",
    "ＦＵＬＬ ｗｉｄｔｈ",
    "中文 轮子",
    "\\backslash\\n not a newline",
    "x" * MAX_LABEL_CHARS,
    "∑ math ≠ ≤ ∞",
    '{"json": [1, 2]}',
]


def _fill_hostile(s: LabelStore) -> None:
    s.add_participant("lurker without games")
    names = ["Zoë 🦊", "O'Brien; DROP TABLE participants", "中文名字", "<b>bold</b>"]
    keys = [KEY, MapKey('m"odel', "im,g", 0, "la\nyer", [0]), MapKey("m", 3, 9, "l", [1, 99])]
    for i, text in enumerate(HOSTILE):
        outcome = ("win", "lose", "resign")[i % 3]
        guessed = {"win": "the car's", "lose": "truck", "resign": None}[outcome]
        labels = [text, HOSTILE[(i + 5) % len(HOSTILE)]][: 1 + i % 2]
        s.record_answer(
            names[i % len(names)],
            keys[i % len(keys)],
            guessed,
            "the car's",
            outcome,
            i % 6,
            labels,
            started_at=1_700_000_000 + i,
            answered_at=1_700_000_010.25 + 2 * i,
        )
    s.undo_last(names[0])  # ids with a gap
    s.record_answer(names[1], KEY, None, "the car's", "resign", 5, [])


def _comparable(s: LabelStore):
    games = s.games().drop(columns="game_id")
    labels = s.labels().drop(columns=["label_id", "game_id"])
    people = s.participants().drop(columns="participant_id")
    return games, labels, people


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_round_trip_is_lossless(tmp_path, fmt):
    src = LabelStore(tmp_path / "src.db")
    _fill_hostile(src)
    out = tmp_path / f"export.{fmt}"
    getattr(src, f"to_{fmt}")(out)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # no half-written file left
    dst = getattr(LabelStore, f"from_{fmt}")(out)
    for a, b in zip(_comparable(src), _comparable(dst)):
        pd.testing.assert_frame_equal(a, b)
    assert sorted(dst.labels()["text"]) == sorted(src.labels()["text"])
    # kept as typed, in Unicode NFC (HOSTILE[0] was undone)
    assert {unicodedata.normalize("NFC", h) for h in HOSTILE} <= set(dst.labels()["text"]) | {HOSTILE[0]}
    assert dst.leaderboard().equals(src.leaderboard())
    assert dst.integrity_check() == []
    # importing the same file again adds nothing (idempotent by game identity)
    assert dst.import_(out) == 0
    assert len(dst.games()) == len(src.games())


def test_import_refuses_foreign_or_broken_files(tmp_path):
    s = LabelStore()
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not an inv-widgets label export"):
        s.import_(bad)
    src = LabelStore()
    src.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"])
    good = tmp_path / "good.csv"
    src.to_csv(good)
    text = good.read_text(encoding="utf-8").replace(",win,0,", ",win,9,")
    broken = tmp_path / "broken.csv"
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.csv: line 3 \(game 1\) is invalid.*between 0 and 5"):
        s.import_(broken)
    assert len(s.games()) == 0 and len(s.participants()) == 0
    with pytest.raises(ValueError, match=".csv or .json"):
        s.import_(tmp_path / "x.txt")


def test_module_functions_are_what_the_store_methods_do(tmp_path):
    s = LabelStore()
    _fill_hostile(s)
    label_io.write_csv(s, tmp_path / "a.csv")
    s.to_csv(tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    people, answers = label_io.read_answers(tmp_path / "a.csv")
    assert [name for name, _ in people] == s.participants()["participant"].tolist()
    games = s.games()
    assert [a.key for a in answers] == [MapKey.from_row(r) for r in games.to_dict("records")]
    assert [a.outcome for a in answers] == games["outcome"].tolist()
    assert [list(a.labels) for a in answers] == [
        s.labels(key=None).query("game_id == @g")["text"].tolist() for g in games["game_id"]
    ]
    # the cleaned copies are made as record_answer makes them
    assert [c for a in answers for c in a.cleaned] == s.labels()["text_clean"].tolist()


def _json_export(tmp_path, **change):
    s = LabelStore()
    s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"])
    path = tmp_path / "one.json"
    s.to_json(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["games"][0].update(change)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(class_guessed="truck"), "outcome 'win' needs guessed == true_class"),  # the rules of record_answer
        (dict(outcome="lose"), "other than the true class"),
        (dict(labels=[]), "1 to 3 labels"),
        (dict(labels=["x" * (MAX_LABEL_CHARS + 1)]), "limit is 200"),
        (dict(answered_at=None), "answered_at is required"),
        (dict(participant=7), "participant must be a name"),
        (dict(participant="  "), "empty"),
    ],
)
def test_import_checks_every_rule_of_record_answer(tmp_path, change, match):
    path = _json_export(tmp_path, **change)
    s = LabelStore()
    with pytest.raises(ValueError, match=f"one.json: game 1 is invalid: .*{match}"):
        s.import_(path)
    assert len(s.games()) == 0 and len(s.participants()) == 0  # nothing half-imported


def test_from_files_check_the_extension_and_failed_writes_leave_nothing(tmp_path):
    with pytest.raises(ValueError, match="from_csv expects a .csv file"):
        LabelStore.from_csv(tmp_path / "labels.json")
    with pytest.raises(ValueError, match="from_json expects a .json file"):
        LabelStore.from_json(tmp_path / "labels.csv")

    def broken(f):
        f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        label_io.atomic_write(tmp_path / "out.csv", broken)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        LabelStore().to_csv(tmp_path / "no" / "x.csv")


# ---- CSV formula injection, spreadsheets, idempotent and validated imports (issue 12 items 3 and 6) -------


def test_csv_cells_that_start_a_formula_are_neutralised_and_restored(tmp_path, any_store):
    import csv

    s = any_store
    s.record_answer("=1+1", KEY, "car", "car", "win", 0, ["@SUM(1)"])
    risky = ["+cmd|' /C calc'!A0", "-2+3", "\tTAB", "\rCR", "'=already quoted", "'plain apostrophe", '=HYPERLINK("x")']
    s.record_answer("-minus name", KEY, None, "car", "resign", 5, risky[:3])
    s.record_answer("@at", KEY, None, "car", "resign", 5, risky[3:6])
    s.record_answer("@at", MapKey("=model", "+img", 0, "-layer", [1]), "=car", "=car", "win", 1, risky[6:])
    out = tmp_path / "labels.csv"
    s.to_csv(out)
    with open(out, encoding="utf-8", newline="") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]  # a spreadsheet runs none
    assert "'=1+1" in cells and "'@SUM(1)" in cells and "''=already quoted" in cells
    back = LabelStore.from_csv(out)
    for a, b in zip(_comparable(s), _comparable(back)):
        pd.testing.assert_frame_equal(a, b)  # exact round trip
    assert back.participants()["participant"].tolist() == ["=1+1", "-minus name", "@at"]


def test_a_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_imports(tmp_path):
    src = LabelStore()
    src.record_answer("ada", KEY, "car", "car", "win", 0, ["wheel"])
    out = tmp_path / "labels.csv"
    src.to_csv(out)
    bom = tmp_path / "from-excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())
    dst = LabelStore.from_csv(bom)
    assert dst.labels()["text"].tolist() == ["wheel"] and dst.participants()["participant"].tolist() == ["ada"]


def test_importing_the_same_file_twice_adds_its_games_once(tmp_path, store_target):
    src = LabelStore()
    _fill_hostile(src)
    src.to_csv(tmp_path / "labels.csv")
    src.to_json(tmp_path / "labels.json")
    dst = store_target.open()
    n = len(src.games())
    assert dst.import_(tmp_path / "labels.csv") == n
    assert dst.import_(tmp_path / "labels.csv") == 0  # twice: nothing more
    assert dst.import_(tmp_path / "labels.json") == 0  # the same games, exported as JSON
    assert len(dst.games()) == n and len(dst.labels()) == len(src.labels())
    # a file with the same game twice adds it once; a game that clashes with a stored one is refused
    doc = json.loads((tmp_path / "labels.json").read_text(encoding="utf-8"))
    doc["games"].append(dict(doc["games"][0]))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps(doc), encoding="utf-8")
    fresh = LabelStore()
    assert fresh.import_(twice) == len(src.games())
    doc["games"][-1]["labels"] = ["something else"]
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"clash.json: game {len(doc['games'])} is invalid: .*already stored"):
        LabelStore().import_(clash)


def _csv_export(tmp_path, **change):
    s = LabelStore()
    s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"], started_at=1_700_000_000, answered_at=1_700_000_004)
    s.record_answer("bob", KEY, "car", "car", "win", 2, ["tyre"], started_at=1_700_000_000, answered_at=1_700_000_009)
    path = tmp_path / "two.csv"
    s.to_csv(path)
    import csv
    import io

    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    for column, value in change.items():
        rows[-1][rows[0].index(column)] = value  # bob's game: the last row, line 5 of the file
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(class_guessed="truck"), "outcome 'win' needs guessed == true_class"),
        (dict(reveal_step="3.9"), "reveal_step must be a whole number"),
        (dict(reveal_step="true"), "reveal_step must be a whole number"),
        (dict(duration_s="nan"), "duration_s must be a finite number"),
        (dict(duration_s="-4.0"), "duration_s must be a finite number"),
        (dict(duration_s="inf"), "duration_s must be a finite number"),
    ],
)
def test_csv_import_validates_every_row_and_names_the_file_and_line(tmp_path, change, match):
    path = _csv_export(tmp_path, **change)
    s = LabelStore()
    with pytest.raises(ValueError, match=rf"two.csv: line 5 \(game 2\) is invalid: .*{match}"):
        s.import_(path)
    assert len(s.games()) == 0 and len(s.participants()) == 0


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(reveal_step=True), "reveal_step must be an int 0..5, got a bool"),
        (dict(reveal_step=3.9), "reveal_step must be an int"),
        (dict(duration_s=float("nan")), "duration_s must be a finite number"),
        (dict(duration_s=-1.5), "duration_s must be a finite number"),
    ],
)
def test_json_import_validates_steps_and_durations(tmp_path, change, match):
    path = _json_export(tmp_path, **change)
    s = LabelStore()
    with pytest.raises(ValueError, match=f"one.json: game 1 is invalid: .*{match}"):
        s.import_(path)
    assert len(s.games()) == 0
