"""Every import error names the file and the line (issue 23, finding 9): malformed exports a careless or hostile
person may hand to ``LabelStore.import_``; each is refused with one message naming the file, where in it and
what to do, and nothing is stored. Also the numbers of ``GlobalExplanation.from_labels``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from inv_widgets.concepts import GlobalExplanation
from inv_widgets.labels import LabelStore, MapKey

KEY = MapKey("net", "img_1", 0, "conv", [1, 2])


@pytest.fixture
def export(tmp_path):
    s = LabelStore()
    s.record_answer("ada", KEY, "car", "car", "win", 1, ["wheel"])
    s.record_answer("bob", KEY, None, "car", "resign", 5, [])
    s.to_csv(tmp_path / "labels.csv")
    s.to_json(tmp_path / "labels.json")
    return tmp_path


def _refused(path, *needles):
    store = LabelStore()
    with pytest.raises(ValueError) as info:
        store.import_(path)
    msg = str(info.value)
    assert msg.startswith(path.name), msg
    for n in needles:
        assert n in msg, msg
    assert len(store.games()) == 0 and len(store.participants()) == 0
    return msg


def test_json_that_does_not_decode(export):
    path = export / "labels.json"
    text = path.read_text(encoding="utf-8").splitlines()
    text[5] = text[5] + " oops"
    path.write_text("\n".join(text), encoding="utf-8")
    _refused(path, "line 6, column", "not valid JSON")


def test_a_target_of_2_to_the_70(export):
    path = export / "labels.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["games"][1]["target"] = 2**70
    path.write_text(json.dumps(doc), encoding="utf-8")
    _refused(path, "game 2 is invalid", f"target {2**70} is too large for a class index")
    csv = export / "labels.csv"
    csv.write_text(csv.read_text(encoding="utf-8").replace(",img_1,0,", f",img_1,{2**70},"), encoding="utf-8")
    _refused(csv, "line 4 (game 1) is invalid", "too large for a class index")


def test_json_nested_deeper_than_any_export(export):
    path = export / "labels.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    text = json.dumps(doc, indent=1)
    path.write_text(
        text.replace('"games": [', '"junk": ' + "[" * 5000 + "]" * 5000 + ',\n "games": ['), encoding="utf-8"
    )
    line = text[: text.index('"games": [')].count("\n") + 1
    _refused(path, f"line {line}:", "nested more than 32 levels")


def test_a_latin_1_csv(export):
    path = export / "labels.csv"
    text = path.read_text(encoding="utf-8").replace("wheel", "Räder")
    path.write_bytes(text.encode("latin-1"))
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "Räder" in ln)
    _refused(path, f"line {line} is not UTF-8 text (byte 0xe4", "save the file as UTF-8")


def test_a_cell_over_131072_characters(export):
    path = export / "labels.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("wheel", "w" * 200_000), encoding="utf-8")
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "wheel" in ln)
    _refused(path, f"line {line}: a cell is longer than 131,072 characters")


@pytest.mark.parametrize(
    "case,needles",
    [
        ("empty.csv", ["line 1: not an inv-widgets label export"]),
        ("nul.csv", ["line 4 (game 1) is invalid", "NUL character"]),
        ("participant.json", ["participant 1 is invalid"]),
        ("games.json", ["games must be a list"]),
        ("labels.json", ["game 1 is invalid", "labels must be a list of str"]),
        ("weight.json", ["game 1 is invalid", "weight must be a finite percentage"]),
    ],
)
def test_other_malformed_files(case, needles, export):
    doc = json.loads((export / "labels.json").read_text(encoding="utf-8"))
    path = export / case
    if case == "empty.csv":
        path.write_text("", encoding="utf-8")
    elif case == "nul.csv":
        path.write_text(
            (export / "labels.csv").read_text(encoding="utf-8").replace("wheel", "wh\0eel"), encoding="utf-8"
        )
    else:
        if case == "participant.json":
            doc["participants"][0] = ["not", "an", "object"]
        elif case == "games.json":
            doc["games"] = {"not": "a list"}
        elif case == "labels.json":
            doc["games"][0]["labels"] = "wheel"
        elif case == "weight.json":
            doc["games"][0]["weight"] = float("inf")
        path.write_text(json.dumps(doc), encoding="utf-8")
    _refused(path, *needles)


# ---- GlobalExplanation.from_labels: the numbers --------------------------------------------------------------


def _labels(**change):
    rows = [
        dict(
            model="m0",
            image_id=f"img{i}",
            target=i % 2,
            layer="conv",
            members=str(i),
            label="wheel",
            score=1.0 + i,
            rank=1,
            frequency=2,
            mean_step=1.0,
            n_maps=1,
            weight=10.0,
        )
        for i in range(4)
    ]
    df = pd.DataFrame(rows)
    for col, value in change.items():
        df[col] = df[col].astype(object)
        df.loc[2, col] = value
    return df


@pytest.mark.parametrize(
    "col,value,said",
    [
        (
            "score",
            np.nan,
            "score value that is not a finite number 0 or more (first: NaN for label 'wheel' of image img2",
        ),
        ("score", np.inf, "score value that is not a finite number 0 or more (first: inf"),
        ("score", -3.0, "(first: -3 for label 'wheel'"),
        ("weight", -50.0, "weight value that is not a finite number from 0 to 100 (first: -50"),
        ("weight", np.inf, "weight value"),
        ("mean_step", 9.0, "mean_step value"),
        ("frequency", 0, "frequency value"),
        ("score", "lots", "score column holds values that are not numbers"),
    ],
)
def test_from_labels_refuses_numbers_that_cannot_be_scores(col, value, said):
    with pytest.raises(ValueError) as info:
        GlobalExplanation.from_labels(_labels(**{col: value}), class_names=["car", "house"], layers=["conv"])
    assert said in str(info.value) and "aggregate_labels" in str(info.value)


def test_from_labels_takes_unknown_weights_and_steps():
    ge = GlobalExplanation.from_labels(
        _labels(weight=np.nan, mean_step=np.nan), class_names=["car", "house"], layers=["conv"]
    )
    assert len(ge.table) == 2
