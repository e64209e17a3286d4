"""The recipe registry (engine/recipes): one place that knows and checks recipe names, one module per recipe;
the recipes themselves on planted groups; a recipe added from outside works end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

import inv_widgets as inv
from inv_widgets.engine import assign, build_tree, recipes
from inv_widgets.engine.recipes import RECIPES, Link, Recipe, build_trees, get_recipe, recipe_names, register_recipe

from .helpers import planted_maps


@pytest.fixture
def registry(monkeypatch):
    """The registry, restored after the test (recipes registered in it go away)."""
    monkeypatch.setattr(recipes, "_registry", dict(recipes._registry))
    return recipes


class Correlation(Recipe):
    """A recipe as another engineer would add one: average linkage on correlation distance, k = 2."""

    name = "test-correlation"
    summary = "average linkage on 1 - Pearson correlation"

    def link(self, x, seed=0):
        z = linkage(x.double().numpy(), method="average", metric="correlation")
        return Link(z, 2)


# ---- the registry ----------------------------------------------------------------------------------


def test_the_registered_recipes():
    assert recipe_names() == ("fast", "paper", "paper-sklearn", "spatial")
    assert RECIPES == ("fast", "paper", "paper-sklearn", "spatial") and "paper" in RECIPES and "magic" not in RECIPES
    assert list(RECIPES) == list(recipe_names()) and len(RECIPES) == 4
    assert get_recipe("fast").prune is False and get_recipe("paper").prune is True
    assert get_recipe("paper-sklearn").prune is True and get_recipe("spatial").prune is False
    assert all(get_recipe(r).summary for r in recipe_names())


def test_an_unknown_name_gets_the_registrys_message_everywhere(tiny_cnn, tiny_image, tmp_path):
    with pytest.raises(ValueError) as reference:
        get_recipe("magic")
    msg = str(reference.value)
    assert msg == "unknown recipe 'magic'; choose one of ('fast', 'paper', 'paper-sklearn', 'spatial')"
    s = inv.Session(tiny_cnn, [tiny_image])
    exp = s.explain(0, lazy=True)
    entry_points = [
        lambda: inv.Session(tiny_cnn, [tiny_image], recipe="magic"),
        lambda: s.explain(0, recipe="magic"),
        lambda: s.explain_many([0], recipe="magic"),
        lambda: exp.layer(exp.layers[0], "magic"),
        lambda: exp.compute("magic"),
        lambda: build_tree(torch.rand(5, 4, 4), "magic"),
        lambda: inv.explain(tiny_cnn, tiny_image, recipe="magic"),
    ]
    for call in entry_points:
        with pytest.raises(ValueError) as got:
            call()
        assert str(got.value) == msg
    from inv_widgets.eval.parts import evaluate_parts

    with pytest.raises(ValueError, match="unknown recipe 'magic'"):  # before loading anything
        evaluate_parts(recipe="magic", n=1)
    with pytest.raises(ValueError, match=r"unknown recipe None; choose one of"):
        get_recipe(None)


def test_the_cli_asks_the_registry(capsys):
    from inv_widgets.cli import main

    with pytest.raises(SystemExit):
        main(["explain", "--recipe", "magic"])
    err = capsys.readouterr().err
    assert "unknown recipe 'magic'; choose one of ('fast', 'paper', 'paper-sklearn', 'spatial')" in err


def test_a_new_recipe_is_one_class_and_one_registration(registry, tiny_cnn, tiny_image):
    assert register_recipe(Correlation) is Correlation  # usable as a class decorator
    assert recipe_names()[-1] == "test-correlation" and "test-correlation" in RECIPES
    maps, truth = planted_maps()
    tree = build_tree(maps, "test-correlation")
    assert tree.recipe == "test-correlation" and tree.suggested_k == 2 and tree.n == len(truth)
    # end to end: a session, its explanations, cuts and cluster-map identities
    s = inv.Session(tiny_cnn, [tiny_image], recipe="test-correlation")
    exp = s.explain(0)
    lr = exp[exp.layers[1]]
    assert lr.recipe == "test-correlation" and lr.tree.recipe == "test-correlation"
    cl = lr.cut()
    assert cl.k == min(2, len(lr.kept)) and sorted(np.concatenate(cl.members).tolist()) == sorted(lr.kept.tolist())
    i, found, j = s.locate(cl.key(0))
    assert found.key(j) == cl.key(0)


def test_registration_errors_name_the_problem(registry):
    with pytest.raises(TypeError, match="subclass of inv_widgets.engine.recipes.Recipe"):
        register_recipe(object)

    class Nameless(Recipe):
        pass

    with pytest.raises(ValueError, match="needs a name"):
        register_recipe(Nameless)

    class Impostor(Recipe):
        name = "fast"

    with pytest.raises(ValueError, match="'fast' is already registered.*replace=True"):
        register_recipe(Impostor)
    register_recipe(Impostor, replace=True)
    assert type(get_recipe("fast")) is Impostor
    with pytest.raises(NotImplementedError, match="'fast' does not implement link"):
        build_tree(torch.rand(5, 4, 4), "fast")


def test_the_driver_scales_rows_and_handles_tiny_layers(registry):
    seen = []

    @register_recipe
    class Spy(Recipe):
        name = "test-spy"
        prune = True

        def link(self, x, seed=0):
            seen.append((x.shape, float(x.min()), float(x.max()), seed))
            return Link(linkage(x.double().numpy(), "single"), 1)

    maps = [torch.rand(1, 4, 4), torch.rand(6, 5, 5) * 7 + 3, torch.zeros(0, 4, 4), torch.rand(3, 8)]
    done = []
    trees = build_trees(maps, "test-spy", seed=5, progress=done.append)
    assert sorted(done) == [0, 1, 2, 3]
    assert [t.n for t in trees] == [1, 6, 0, 3] and all(t.recipe == "test-spy" and t.prune for t in trees)
    assert trees[0].linkage.shape == trees[2].linkage.shape == (0, 4)  # nothing to link below two maps
    assert [s[0] for s in seen] == [(6, 25), (3, 8)]  # flattened rows of the layers with two maps or more
    assert all(lo == 0.0 and hi == 1.0 and seed == 5 for _, lo, hi, seed in seen)  # min-max scaled rows


# ---- the recipes -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fast", "paper", "paper-sklearn", "spatial"])
def test_recipes_recover_planted_groups(recipe):
    maps, truth = planted_maps()
    tree = build_tree(maps, recipe)
    assert tree.linkage.shape == (len(truth) - 1, 4)
    assert tree.suggested_k == 3
    assert adjusted_rand_score(truth, assign(tree)) == 1.0


def test_recipe_is_deterministic():
    maps, _ = planted_maps(seed=5)
    for recipe in ("fast", "paper", "spatial"):
        a, b = build_tree(maps, recipe), build_tree(maps.clone(), recipe)
        np.testing.assert_array_equal(a.linkage, b.linkage)


def test_fast_is_ward_on_the_scaled_maps_with_the_widest_gap():
    """Against scipy's own Ward on the min-max scaled rows; the gap rule by hand."""
    from inv_widgets.engine.recipes.fast import gap_k

    maps, _ = planted_maps(seed=2)
    x = maps.reshape(len(maps), -1).double()
    lo, hi = x.min(1, keepdim=True).values, x.max(1, keepdim=True).values
    ref = linkage(((x - lo) / (hi - lo)).numpy(), method="ward")
    tree = build_tree(maps, "fast")
    np.testing.assert_array_equal(tree.linkage[:, [0, 1, 3]], ref[:, [0, 1, 3]])  # the same merges
    np.testing.assert_allclose(tree.linkage[:, 2], ref[:, 2], rtol=1e-4)  # distances from float32 products
    h = np.array([0.1, 0.2, 0.3, 1.0, 1.1, 5.0, 5.2])  # n = 8: k = 3 sits between 1.1 and 5.0
    assert gap_k(h, 8) == 3


@pytest.mark.parametrize("copies", [False, True])
def test_ward_is_scipys_linkage_bit_for_bit(copies):
    """The recipes' ``ward`` calls scipy's kernel directly: the same matrix as ``linkage(y, "ward")``, and
    scipy's own error for distances that are not finite."""
    from inv_widgets.engine.numeric import condensed_euclidean
    from inv_widgets.engine.recipes.base import ward

    g = torch.Generator().manual_seed(3)
    for n in (2, 3, 17, 64):
        x = torch.rand(n, 300, generator=g)
        if copies:
            x[n // 2 :] = x[0]  # merges at height 0
        ref = linkage(condensed_euclidean(x), method="ward")
        assert ward(x).tobytes() == ref.tobytes()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        ward(x)


@pytest.mark.slow
def test_paper_layers_side_by_side_equal_one_at_a_time():
    """The paper recipe's shared embedding step gives each layer the tree it gets alone (and tiny layers are
    clustered as they are)."""
    groups = [planted_maps(seed=s, per_group=p)[0] for s, p in ((0, 12), (1, 7), (2, 1), (3, 20))]
    together = build_trees(groups, "paper")
    assert together[2].n == 3 and together[2].suggested_k == 3 and together[2].embedding is None
    for maps, tree in zip(groups, together):
        alone = build_tree(maps, "paper")
        np.testing.assert_array_equal(alone.linkage, tree.linkage)
        assert alone.suggested_k == tree.suggested_k


@pytest.mark.slow
def test_tsne_of_several_layers_side_by_side_equals_one_at_a_time():
    """Batching pads each set to a bucket, not to its batch: a layer's embedding is the same bit for bit
    whether it runs alone or with others of the same or another size."""
    from inv_widgets.engine.tsne import tsne_exact, tsne_exact_many

    g = torch.Generator().manual_seed(0)
    sizes = [40, 33, 64, 5, 1, 90, 36]  # 33, 36 and 40 share a bucket; 1 point has no embedding to learn
    xs = [torch.randn(n, 12, generator=g).double() for n in sizes]
    together = tsne_exact_many(xs, max_iter=300)
    for x, y in zip(xs, together):
        assert y.shape == (x.shape[0], 2) and np.isfinite(y).all()
        np.testing.assert_array_equal(y, tsne_exact(x, max_iter=300))
    # the embedding separates what is apart: two far-away blobs land in two groups
    blobs = torch.cat([torch.randn(30, 12, generator=g), torch.randn(30, 12, generator=g) + 20]).double()
    labels = fcluster(linkage(tsne_exact(blobs), method="ward"), 2, criterion="maxclust")
    assert adjusted_rand_score(np.repeat([0, 1], 30), labels) == 1.0


@pytest.mark.slow
def test_compute_builds_the_same_trees_as_layer_by_layer(tiny_cnn, tiny_image):
    s = inv.Session(tiny_cnn, [tiny_image])
    lazy = s.explain(0, recipe="paper", lazy=True)
    one_by_one = [lazy.layer(n).tree for n in lazy.layers]
    seen = []
    together = inv.Session(tiny_cnn, [tiny_image]).explain(
        0, recipe="paper", progress=lambda d, t, m: seen.append((d, t))
    )
    assert seen[-1][0] == seen[-1][1] == len(together.layers) + 1
    for name, a in zip(together.layers, one_by_one):
        b = together[name].tree
        np.testing.assert_array_equal(a.linkage, b.linkage)
        assert a.suggested_k == b.suggested_k
