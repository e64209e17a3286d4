"""The faithfulness evaluation: its statistics on records where the answer is known, and a small real run
with a stand-in for the LIME / KernelSHAP function (inv_widgets.concepts.baselines.attribution_maps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inv_widgets.eval.faithfulness import (
    BASELINE_METHODS,
    FRACTIONS,
    check_targets,
    evaluate_faithfulness,
    main,
    random_groups,
    summarise,
    union_map,
)


def test_random_groups_deal_the_kept_channels_in_the_cut_sizes():
    kept = np.array([1, 4, 5, 9, 12, 20, 31])
    g = random_groups(kept, [3, 2, 1], np.random.default_rng(0))
    assert [len(x) for x in g] == [3, 2, 1]
    flat = np.concatenate(g)
    assert len(set(flat)) == 6 and set(flat) <= set(kept)
    assert any(not np.array_equal(a, b) for a, b in zip(g, random_groups(kept, [3, 2, 1], np.random.default_rng(1))))


def test_union_is_the_weighted_mean_of_the_maps():
    maps = np.stack([np.ones((2, 2)), np.zeros((2, 2))]).astype(np.float32)
    np.testing.assert_allclose(union_map(maps, [75.0, 25.0]), 0.75)
    np.testing.assert_allclose(union_map(maps, [0.0, 0.0]), 0.5)


def record(i, weights, drops, rnd_w, rnd_d, k_drop, areas):
    layer = {
        "layer_index": 0,
        "layer": "features.block3_conv1",
        "k": len(weights),
        "weights": np.asarray(weights, float),
        "drops": np.asarray(drops, float),
        "sizes": np.arange(len(weights), 0, -1).astype(float),
        "rnd_weights": np.asarray(rnd_w, float),
        "rnd_drops": np.asarray(rnd_d, float),
        "kept_drop": k_drop,
        "layer_drop": k_drop,
    }
    layer.update(
        dict(zip(["del_union", "del_heaviest", "del_gradcam", "ins_union", "ins_heaviest", "ins_gradcam"], areas))
    )
    return {"image": {"image": i, "target": 0, "del_lime": 0.3 + i, "ins_lime": 0.6}, "layers": [layer]}


def test_summary_statistics_where_the_answer_is_known():
    recs = [
        # weights rank the drops exactly; the random groups rank them backwards
        record(
            0, [50, 30, 20], [3.0, 2.0, 1.0], [[50, 30, 20]], [[1.0, 2.0, 3.0]], 4.0, [0.2, 0.3, 0.4, 0.8, 0.7, 0.6]
        ),
        record(1, [60, 40], [1.0, 2.0], [[60, 40]], [[2.0, 1.0]], 2.0, [0.5, 0.3, 0.4, 0.8, 0.7, 0.6]),
    ]
    layers, methods = summarise(recs)
    row = layers.iloc[0]
    assert row.spearman_image == 1.0 and row.images_k3 == 1  # only the image with >= 3 maps has its own
    assert row.heaviest_top == 0.5 and row.chance == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert row.random_top == 0.5 and row.random_image == -1.0
    assert row.heaviest_weight_share == pytest.approx((0.5 + 0.6) / 2)
    assert row.heaviest_drop_share == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert row.del_union == pytest.approx(0.35) and row.union_deletes_better == 0.5
    assert methods.method.tolist() == ["lime"] and methods.deletion_area[0] == pytest.approx(0.8)
    from scipy.stats import spearmanr

    assert row.spearman_pooled == pytest.approx(spearmanr([50, 30, 20, 60, 40], [3, 2, 1, 1, 2]).statistic)


def test_partial_spearman_takes_out_what_size_explains():
    from inv_widgets.eval.faithfulness import partial_spearman

    rng = np.random.default_rng(0)
    size = rng.random(200)
    weight = size + 0.05 * rng.random(200)  # the weight says nothing beyond the size
    drop = size + 0.05 * rng.random(200)
    assert abs(partial_spearman(weight, drop, size)) < 0.2
    own = rng.random(200)
    assert partial_spearman(size + own, size + own + 0.01 * rng.random(200), size) > 0.8
    assert np.isnan(partial_spearman([1, 1, 1], [1, 2, 3], [1, 2, 3]))


def test_targets_read_the_table():
    names = [f"features.block{b}_conv{c}" for b in (1, 2, 3, 4) for c in (1, 2)]
    t = pd.DataFrame(
        {
            "layer": names,
            "spearman_pooled": [0.6] * 4 + [0.85] * 4,
            "heaviest_top": [0.6] * 8,
            "del_union": [0.2] * 8,
            "del_gradcam": [0.25] * 6 + [0.1] * 2,
        }
    )
    got = {what: ok for what, ok, _ in check_targets(t, "guided")}
    assert all(got.values()) and len(got) == 4
    t.loc[4, "spearman_pooled"] = 0.7
    t.loc[0, "del_gradcam"] = 0.15  # union deletes better in 5 of 8 layers
    got = {what: ok for what, ok, _ in check_targets(t, "taylor")}
    assert not got["pooled Spearman >= 0.8 in blocks 3-4"] and not got["taylor: pooled Spearman >= 0.8 in every layer"]
    assert not got["union deletes no worse than Grad-CAM in >= 6 of 8 layers"]


def test_a_small_run_with_a_stand_in_for_lime_and_kernelshap(demo):
    """Two demo images, every layer: the stand-in is called once per image with the agreed signature, and its
    maps get deletion and insertion areas; the cluster figures come from the real ablation."""
    model, data = demo
    calls = []

    def stand_in(session, index, target, methods=("lime", "kernelshap", "gradcam")):
        calls.append((index, target, tuple(methods)))
        exp = session.explain(index, target)
        gc = exp[exp.layers[-1]].gradcam()
        return {"lime": gc, "kernelshap": np.random.default_rng(index).random(gc.shape)}

    res = evaluate_faithfulness(
        2, steps=4, repeats=2, attribution_maps=stand_in, model=model, data=data, progress=False
    )
    assert [c[0] for c in calls] == [0, 1] and all(c[2] == BASELINE_METHODS for c in calls)
    assert [c[1] for c in calls] == [r["image"]["target"] for r in res.records]
    lay = res.layers
    assert lay.layer.tolist() == [f"features.block{b}_conv{c}" for b in (1, 2, 3, 4) for c in (1, 2)]
    assert (lay.images == 2).all() and lay.spearman_pooled.between(-1, 1).all()
    assert lay[["del_union", "del_gradcam", "ins_union", "ins_gradcam"]].stack().between(0, 1).all()
    m = res.methods.set_index("method")
    assert list(m.index) == ["lime", "kernelshap"] and (m.images == 2).all()
    # a Grad-CAM map deletes faster than random noise
    assert m.loc["lime", "deletion_area"] < m.loc["kernelshap", "deletion_area"]
    # the records hold what the table summarises: the cut's weights and the measured drops
    rec = res.records[0]["layers"][-1]
    assert len(rec["weights"]) == len(rec["drops"]) == rec["k"] and rec["rnd_drops"].shape == (2, rec["k"])


def test_default_curve_grid_covers_all_pixels_finely_where_objects_are():
    assert FRACTIONS[0] == 0 and FRACTIONS[-1] == 1 and (np.diff(FRACTIONS) > 0).all()
    assert np.allclose(np.diff(FRACTIONS[FRACTIONS <= 0.3]), 0.02)


def test_command_line(capsys):
    assert main(["--n", "1", "--steps", "2", "--random", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    # the default map types, each with its five targets: gradcam (the session's default) and the published maps
    assert "partial rho(weight, drop | size)" in out and "deletion area" in out and out.count("\ntarget ") == 10
    for kind in ("gradcam", "published"):
        assert out.count(f"target met     {kind}: ") + out.count(f"target MISSED  {kind}: ") == 5
    assert "layer point activation (channels zeroed there)" in out
    with pytest.raises(ValueError, match="weighting"):
        evaluate_faithfulness(1, weighting="nope", progress=False)


def test_lime_and_kernelshap_columns_come_from_the_one_implementation(demo, monkeypatch):
    """By default the evaluation calls inv_widgets.concepts.baselines.attribution_maps (as the Explorer's compare
    view and `explain --baselines` do), looked up when it runs: no copy of LIME / KernelSHAP of its own."""
    from inv_widgets.concepts import baselines

    model, data = demo
    calls = []

    def spy(session, index, target, methods=baselines.METHODS, **kw):
        calls.append((index, tuple(methods)))
        exp = session.explain(index, target)
        return {m: exp[exp.layers[-1]].gradcam() for m in methods}

    monkeypatch.setattr(baselines, "attribution_maps", spy)
    res = evaluate_faithfulness(1, steps=2, repeats=1, model=model, data=data, progress=False, baselines=True)
    assert calls == [(0, BASELINE_METHODS)] and list(res.methods.method) == ["lime", "kernelshap"]


def test_no_curves_gives_the_same_ablation_figures_without_areas(demo):
    model, data = demo
    calls = []
    full = evaluate_faithfulness(
        2,
        steps=2,
        repeats=2,
        model=model,
        data=data,
        progress=False,
        attribution_maps=lambda *a, **k: calls.append(a) or {},
    )
    short = evaluate_faithfulness(
        2,
        steps=2,
        repeats=2,
        model=model,
        data=data,
        progress=False,
        curves=False,
        attribution_maps=lambda *a, **k: calls.append(a) or {},
    )
    assert len(calls) == 2  # the full run only
    cols = ["spearman_pooled", "spearman_image", "heaviest_top", "chance", "random_pooled", "random_top"]
    pd.testing.assert_frame_equal(full.layers[cols], short.layers[cols])
    assert short.layers.del_union.isna().all() and full.layers.del_union.notna().all()
    no_curves = [t[0] for t in check_targets(short.layers, "guided")]
    assert no_curves == [t[0] for t in check_targets(full.layers, "guided")][: len(no_curves)] and len(no_curves) == 4
