"""GlobalExplanation and GlobalView: hand-made aggregates where every figure is known, then the real path
(simulated players -> SQLite store -> Sentence-BERT aggregation -> global explanation -> widget -> Explorer)."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

import inv_widgets as inv
from inv_widgets import MapKey
from inv_widgets.concepts import GlobalExplanation

LAYERS = ["net.conv1", "net.conv2", "net.conv3"]
CLASSES = ["car", "house", "tree"]


def row(image, target, layer, members, label, score, rank=1, weight=10.0, n_maps=1, frequency=2, mean_step=1.0):
    return dict(
        model="m0",
        image_id=f"img{image}",
        target=target,
        layer=layer,
        members=members,
        label=label,
        score=score,
        frequency=frequency,
        mean_step=mean_step,
        n_wrong=0,
        rank=rank,
        n_maps=n_maps,
        weight=weight,
    )


def table():
    rows = [
        # car at conv3: "wheel" on three images (two maps on img0), "window" on one
        row(0, 0, "net.conv3", "1,2", "wheel", 3.0, weight=20.0),
        row(0, 0, "net.conv3", "3", "wheel", 1.0, weight=5.0),
        row(0, 0, "net.conv3", "3", "body", 0.5, rank=2),  # not a best label: ignored
        row(1, 0, "net.conv3", "4,5", "wheel", 2.0, weight=30.0),
        row(2, 0, "net.conv3", "6", "wheel", 1.5, weight=40.0, n_maps=2),  # a merged map
        row(2, 0, "net.conv3", "7", "window", 4.0, weight=12.0, frequency=4, mean_step=2.0),
        # car: "wheel" rises through the layers, "edge" falls
        row(0, 0, "net.conv1", "1", "edge", 3.0),
        row(1, 0, "net.conv1", "2", "edge", 3.0),
        row(2, 0, "net.conv1", "8", "edge", 3.0),
        row(0, 0, "net.conv2", "1", "edge", 1.5),
        row(1, 0, "net.conv2", "2", "wheel", 1.5),
        # house: one map
        row(5, 1, "net.conv3", "1", "<b>roof</b> & co", 2.0),
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def ge():
    return GlobalExplanation.from_labels(table(), class_names=CLASSES, layers=LAYERS)


def test_table_sums_best_label_scores_per_class_layer_and_label(ge):
    t = ge.table
    assert list(t.columns[:10]) == [
        "class",
        "target",
        "layer",
        "label",
        "score",
        "n_images",
        "n_maps",
        "share_images",
        "mean_weight",
        "mean_step",
    ]
    wheel = t[(t["class"] == "car") & (t["layer"] == "net.conv3") & (t["label"] == "wheel")].iloc[0]
    assert wheel["score"] == pytest.approx(3.0 + 1.0 + 2.0 + 1.5)
    assert wheel["n_images"] == 3 and wheel["n_maps"] == 5  # the merged map counts its two maps
    assert wheel["mean_weight"] == pytest.approx(np.mean([20.0, 5.0, 30.0, 40.0]))
    assert wheel["share_images"] == pytest.approx(1.0)  # 3 of the 3 labelled car images
    window = t[(t["label"] == "window")].iloc[0]
    assert window["mean_step"] == pytest.approx(2.0) and window["n_images"] == 1
    assert "body" not in set(t["label"])  # rank 2 labels are not a map's label
    # sorted by class, layer in forward order, then score
    car = t[t["class"] == "car"]
    assert list(dict.fromkeys(car["layer"])) == LAYERS
    c3 = car[car["layer"] == "net.conv3"]
    assert list(c3["label"]) == ["wheel", "window"]


def test_examples_are_the_best_maps_one_per_image_unmerged_first(ge):
    wheel = ge.top("car", "net.conv3").iloc[0]
    ex = wheel["examples"]
    assert all(isinstance(k, MapKey) for k in ex)
    # img0's best wheel map (score 3) comes first, then img1 (2.0); the merged map of img2 comes last
    assert [(k.image_id, k.members) for k in ex] == [("img0", (1, 2)), ("img1", (4, 5)), ("img2", (6,))]
    few = GlobalExplanation.from_labels(table(), class_names=CLASSES, layers=LAYERS, n_examples=1)
    assert [len(e) for e in few.table["examples"]] == [1] * len(few.table)
    none = GlobalExplanation.from_labels(table(), class_names=CLASSES, layers=LAYERS, n_examples=0)
    assert all(e == [] for e in none.table["examples"])


def test_top_takes_names_or_positions_and_says_what_is_wrong(ge):
    assert list(ge.top("car", -1, n=1)["label"]) == ["wheel"]
    assert ge.top(0, "net.conv3").equals(ge.top("car", 2))
    assert ge.top("tree", "net.conv3").empty  # a class without labels: an empty table, not an error
    with pytest.raises(KeyError, match="unknown class 'bus'"):
        ge.top("bus", -1)
    with pytest.raises(KeyError, match="unknown layer 'conv9'"):
        ge.top("car", "conv9")
    with pytest.raises(IndexError, match="3 layers"):
        ge.top("car", 5)


def test_trends_score_per_image_and_slope(ge):
    tr = ge.trends("car")
    assert list(tr.columns) == LAYERS + ["slope", "trend"]
    # per image of the class (3 car images): edge 9/3, 1.5/3, 0; wheel 0, 1.5/3, 7.5/3
    np.testing.assert_allclose(tr.loc["edge", LAYERS].astype(float), [3.0, 0.5, 0.0])
    np.testing.assert_allclose(tr.loc["wheel", LAYERS].astype(float), [0.0, 0.5, 2.5])
    assert tr.loc["wheel", "slope"] == pytest.approx(np.polyfit([0, 1, 2], [0.0, 0.5, 2.5], 1)[0])
    assert tr.loc["edge", "slope"] == pytest.approx(-1.5)
    assert list(tr["trend"]) == ["rising", "rising", "falling"]  # wheel, window; edge
    assert list(tr.index[:2]) == ["wheel", "window"]  # steepest rise first
    assert ge.trends("car", n=1).index.tolist() == ["wheel", "edge"]
    assert ge.trends("tree").empty


def test_bad_tables_get_clear_errors():
    with pytest.raises(ValueError, match="lacks the columns"):
        GlobalExplanation.from_labels(table().drop(columns=["rank"]))
    with pytest.raises(TypeError, match="from_store"):
        GlobalExplanation.from_labels(inv.LabelStore(":memory:"))
    two = table()
    two.loc[0, "model"] = "m1"
    with pytest.raises(ValueError, match="2 models"):
        GlobalExplanation.from_labels(two)
    with pytest.raises(ValueError, match="class_names has only 1 entries"):
        GlobalExplanation.from_labels(table(), class_names=["car"])
    with pytest.raises(ValueError, match="not among the layers"):
        GlobalExplanation.from_labels(table(), layers=LAYERS[:2])
    dup = pd.concat([table(), table().iloc[:1]])
    with pytest.raises(ValueError, match="more than one rank-1"):
        GlobalExplanation.from_labels(dup)
    with pytest.raises(KeyError, match="no entry for"):
        GlobalExplanation.from_labels(table().drop(columns=["weight"]), weights={})


def test_without_session_or_weights_the_weight_is_unknown_and_names_are_indices():
    g = GlobalExplanation.from_labels(table().drop(columns=["weight"]))
    assert g.classes == ["0", "1"] and g.layers == LAYERS  # natural order of the layer names
    assert g.table["mean_weight"].isna().all()
    page = g.to_html()
    assert "w̄ unknown" in page and "<img" not in page


def test_to_html_is_self_contained_escaped_and_written_whole(ge, tmp_path):
    path = tmp_path / "global.html"
    page = ge.to_html(path, title="Parts & <world>")
    assert path.read_text(encoding="utf-8") == page
    assert "<script" not in page.lower() and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert html.escape("<b>roof</b> & co") in page and "<b>roof</b>" not in page
    assert "Parts &amp; &lt;world&gt;" in page
    assert "Rising labels" in page and "Falling labels" in page and "<svg" in page
    assert [p.name for p in tmp_path.iterdir()] == ["global.html"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ge.to_html(tmp_path / "missing" / "g.html")
    with pytest.raises(IsADirectoryError):
        ge.to_html(tmp_path)


def test_tcav_results_join_the_table_and_reach_observers(ge):
    seen = []
    stop = ge.observe(lambda g: seen.append(len(g.tcav)))
    res = pd.DataFrame(
        [
            dict(
                {
                    "class": "car",
                    "layer": "net.conv3",
                    "label": "wheel",
                    "tcav_score": 0.9,
                    "random_score": 0.5,
                    "p_value": 0.01,
                    "significant": True,
                    "note": "",
                }
            )
        ]
    )
    ge.attach_tcav(res)
    t = ge.table
    wheel = t[(t["label"] == "wheel") & (t["layer"] == "net.conv3")].iloc[0]
    assert wheel["tcav_score"] == 0.9 and wheel["tcav_significant"] == True  # noqa: E712
    assert t[t["label"] == "window"]["tcav_score"].isna().all()
    assert ge.tcav_of("car", "net.conv3", "wheel")["p_value"] == 0.01
    assert ge.tcav_of("car", "net.conv3", "window") is None
    # a second result replaces the same rows and keeps the others
    ge.attach_tcav(res.assign(label="window", tcav_score=0.2, significant=False))
    ge.attach_tcav(res.assign(tcav_score=0.8))
    assert len(ge.tcav) == 2 and ge.tcav_of("car", -1, "wheel")["tcav_score"] == 0.8
    assert seen == [1, 2, 2]
    stop()
    ge.attach_tcav(res)
    assert seen == [1, 2, 2]
    with pytest.raises(ValueError, match="concept_test"):
        ge.attach_tcav(pd.DataFrame({"class": ["car"]}))


# ---- the real path ------------------------------------------------------------------------------------
N_IMAGES = 12


@pytest.fixture(scope="module")
def played(demo):
    """Simulated players label the two deepest layers of 12 held-out images through a real store."""
    from inv_widgets.eval.play import play

    model, data = demo
    session = inv.Session(model, data, cache_size=4)
    store = inv.LabelStore(":memory:")
    weights = play(session, store, range(N_IMAGES), players=3, layers=session.layers[-2:], progress=False)
    df = inv.aggregate_labels(store, class_names=data.classes, progress=False)
    return session, store, weights, df


def test_from_store_with_a_session_weighs_maps_as_the_game_showed_them(played):
    session, store, weights, df = played
    g = GlobalExplanation.from_store(store, session)
    assert g.layers == session.layers and g.classes == session.classes
    # the weights the session computes are the ones the players' cut showed (Clusters.weights)
    for r in g.maps.itertuples():
        key = MapKey(r.model, r.image_id, r.target, r.layer, r.members)
        assert r.weight == pytest.approx(weights[key], rel=1e-5)
    same = GlobalExplanation.from_labels(df, session, weights=weights)
    pd.testing.assert_frame_equal(g.table.drop(columns="examples"), same.table.drop(columns="examples"))
    # the labelled images of each class are the images of that class
    for name in g.classes:
        assert g.n_images(name) == sum(1 for i in range(N_IMAGES) if session.label(i) == g.classes.index(name))
    # labels of another model are left out, with a warning
    other = df.copy()
    other["model"] = "another"
    with pytest.warns(UserWarning, match="other models"):
        empty = GlobalExplanation.from_labels(pd.concat([df, other]), session, weights=weights)
    assert len(empty.maps) == len(g.maps)


def test_to_html_with_a_session_shows_each_example_over_its_image(played, tmp_path):
    session, store, weights, df = played
    g = GlobalExplanation.from_labels(df, session, weights=weights)
    page = g.to_html(tmp_path / "g.html")
    n_img = len(re.findall(r'<img src="data:image/jpeg;base64,', page))
    shown = g.table.groupby(["class", "layer"]).head(5)
    assert n_img == sum(len(e) for e in shown["examples"]) > 0


def test_global_view_columns_examples_and_opening_in_the_explorer(played):
    session, store, weights, df = played
    g = GlobalExplanation.from_labels(df, session, weights=weights)
    ex = inv.Explorer(session)
    view = inv.GlobalView(g, explorer=ex)
    main = view.main
    assert main.classes == session.classes
    first = next(c for c in session.classes if g.n_images(c))
    assert view.class_name == first and main.classes[main.class_index] == first
    assert [c["layer"] for c in main.columns] == session.layers  # one column per layer
    last = main.columns[-1]["labels"]
    top = g.top(first, -1)
    assert [r["label"] for r in last] == list(top["label"])
    assert [r["score"] for r in last] == pytest.approx(list(top["score"]))
    assert all(len(r["examples"]) == min(3, len(e)) for r, e in zip(last, top["examples"]))
    n = sum(len(r["examples"]) for c in main.columns for r in c["labels"])
    assert len(main.images) == n and all(img[:8] == b"\x89PNG\r\n\x1a\n" for img in main.images)
    # a click on an example (the browser's intent) opens that image, layer and cluster map in the Explorer
    rev = ex.gallery.revision
    view._on_msg(view.main, {"type": "open_example", "layer": len(session.layers) - 1, "row": 0, "example": 0}, [])
    key = top.iloc[0]["examples"][0]
    assert view.last_opened == key and main.error == ""
    assert ex.index == session.index_of(key.image_id) and ex.layer == key.layer and ex.target == key.target
    assert ex.clusters.key(ex.selected) == key and ex.gallery.revision > rev
    assert "Opened in the Explorer" in main.message
    # another class, by the picker's intent
    other = next(c for c in session.classes if g.n_images(c) and c != first)
    view._on_msg(view.main, {"type": "select_class", "index": session.classes.index(other)}, [])
    assert view.class_name == other and main.classes[main.class_index] == other
    # the trends panel follows the class
    tr = g.trends(other)
    visible = [d for d in view.trends.data if d.visible]
    assert len(visible) == len(tr) and all(d.name.split(" (")[0] in set(tr.index) for d in visible)
    # errors reach the person, nothing changes
    view._on_msg(view.main, {"type": "open_example", "layer": 0, "row": 99, "example": 0}, [])
    assert "label row 99 does not exist" in main.error and view.class_name == other
    with pytest.raises(TypeError, match="GlobalExplanation"):
        inv.GlobalView(df, session)


def test_global_view_without_explorer_says_how_to_connect_one(played):
    session, store, weights, df = played
    g = GlobalExplanation.from_labels(df, session, weights=weights)
    view = inv.GlobalView(g)  # the session comes with the explanation
    layer = len(g.layers) - 1
    key = view.open_example(layer, 0)
    assert key == g.top(view.class_name, layer).iloc[0]["examples"][0]
    assert "explorer=inv.Explorer(session)" in view.main.message


def test_global_view_escapes_label_text_and_shows_tcav_as_it_is_attached(ge):
    """Label text reaches the page as typed: raw in the columns (the front end sets it with textContent only),
    HTML-escaped in the plotly trends (plotly reads tags in trace names); TCAV results attached after the view
    was made show up in it, not-significant and untested ones marked as such."""
    view = inv.GlobalView(ge, class_name="house")  # no session: columns without images
    rows = view.main.columns[2]["labels"]
    assert [r["label"] for r in rows] == ["<b>roof</b> & co"] and rows[0]["tcav"] is None
    names = [d.name for d in view.trends.data if d.visible]
    assert names == ["&lt;b&gt;roof&lt;/b&gt; &amp; co (+1.00/layer)"]  # score 2 on 1 image at conv3 only
    assert "<b>" not in view.trends.layout.title.text
    assert "TCAV" not in view.main.subtitle

    rev = view.main.revision
    res = pd.DataFrame(
        [
            {
                "class": "house",
                "layer": "net.conv3",
                "label": "<b>roof</b> & co",
                "tcav_score": 0.9,
                "random_score": 0.4,
                "p_value": 0.2,
                "significant": False,
                "note": "",
            },
            {
                "class": "car",
                "layer": "net.conv3",
                "label": "window",
                "tcav_score": np.nan,
                "random_score": np.nan,
                "p_value": np.nan,
                "significant": False,
                "note": "1 maps carry this label (min_examples=5)",
            },
            {
                "class": "car",
                "layer": "net.conv3",
                "label": "wheel",
                "tcav_score": 1.0,
                "random_score": 0.5,
                "p_value": 0.001,
                "significant": True,
                "note": "",
            },
        ]
    )
    ge.attach_tcav(res)  # as inv.concept_test(..., attach=True) does
    assert view.main.revision > rev and "TCAV" in view.main.subtitle
    assert view.main.columns[2]["labels"][0]["tcav"] == {"score": 0.9, "random": 0.4, "p": 0.2, "significant": False}
    view.select_class("car")
    car = {r["label"]: r["tcav"] for r in view.main.columns[2]["labels"]}
    assert car["wheel"] == {"score": 1.0, "random": 0.5, "p": 0.001, "significant": True}
    assert car["window"] == {"note": "1 maps carry this label (min_examples=5)"}
    assert view.main.columns[0]["labels"][0]["tcav"] is None  # conv1 was not tested
    view.close()
    rev = view.main.revision
    ge.attach_tcav(res)  # a closed view stops listening
    assert view.main.revision == rev


def test_global_view_trends_give_each_label_its_own_colour_and_readable_layers(ge):
    """Rising and falling labels shared one colour cycle, so the first of each was the same blue (issue 22); the
    layer names lay flat and overlapped; the thumbnails were 64 px and w̄ was not explained."""
    view = inv.GlobalView(ge, class_name="car")
    visible = [d for d in view.trends.data if d.visible]
    assert {d.name.split(" (")[0] for d in visible} == set(ge.trends("car").index) == {"wheel", "edge", "window"}
    colours = [d.line.color for d in view.trends.data]
    assert len(set(colours)) == len(colours) == 12  # every slot of both panels: its own colour
    assert all(d.marker.color == d.line.color for d in view.trends.data)
    for axis in (view.trends.layout.xaxis, view.trends.layout.xaxis2):
        assert axis.tickangle and axis.automargin
    assert view.thumb >= 96
    assert "w̄ = mean weight of the cluster maps carrying the label" in view.main.subtitle
