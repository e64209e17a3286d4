"""Degenerate layers (issue 14, items 1 and 5): constant, identical or all-zero kept maps, 1-pixel layers and
copies of maps get one clear answer from every recipe, and never kill the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import is_valid_linkage

from inv_widgets.engine import assign, build_tree, build_trees
from inv_widgets.engine.recipes import recipe_names
from inv_widgets.engine.tree import expand_linkage, one_cluster_linkage

from .helpers import planted_maps

RECIPES = ["fast", "paper", "paper-sklearn"]


def _same(n, seed=0):
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(seed)).expand(n, 8, 8).clone()


DEGENERATE = {
    "40 constant maps": lambda: torch.ones(40, 8, 8),
    "40 all-zero maps": lambda: torch.zeros(40, 8, 8),
    "5 identical maps": lambda: _same(5),
    "40 identical maps": lambda: _same(40),
    "40 identical maps, scaled": lambda: _same(40) * torch.linspace(1, 3, 40)[:, None, None],
    "40 1-pixel maps": lambda: torch.rand(40, 1, 1, generator=torch.Generator().manual_seed(1)),
}


@pytest.mark.slow
def test_degenerate_layers_do_not_kill_the_process():
    """scikit-learn's Barnes-Hut t-SNE used to die with SIGSEGV on identical maps: run it where a crash cannot
    take the test session with it."""
    script = textwrap.dedent("""
        import torch
        from inv_widgets.engine import assign, build_tree
        cases = [torch.ones(40, 8, 8), torch.zeros(40, 8, 8), torch.rand(1, 8, 8).expand(5, 8, 8).clone(),
                 torch.rand(1, 8, 8).expand(40, 8, 8).clone(), torch.rand(40, 1, 1)]
        for recipe in ("fast", "paper", "paper-sklearn"):
            for maps in cases:
                tree = build_tree(maps, recipe)
                print(recipe, tree.n, tree.suggested_k, len(set(assign(tree).tolist())), flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == 15
    assert all(line.split()[2:] == ["1", "1"] for line in lines), r.stdout


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_every_recipe_gives_one_cluster_for_maps_that_are_all_the_same(recipe, case):
    maps = DEGENERATE[case]()
    tree = build_tree(maps, recipe)
    assert tree.n == maps.shape[0] and tree.suggested_k == 1
    assert is_valid_linkage(tree.linkage) and (tree.linkage[:, 2] == 0).all()
    for k in (None, 2, 3, 8, 40):  # whatever k is asked for, one cluster: there is nothing to tell apart
        assert set(assign(tree, k=k).tolist()) == {0}


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_paper_recipes_do_not_split_identical_maps(recipe):
    """Item 5: 40 identical maps are one cluster map (the paper recipe made 8 of them)."""
    tree = build_tree(_same(40, seed=7), recipe)
    assert tree.suggested_k == 1 and len(set(assign(tree).tolist())) == 1


@pytest.mark.parametrize("recipe", RECIPES)
def test_copies_of_maps_stay_together_and_k_is_at_most_the_distinct_maps(recipe):
    two = torch.cat([_same(20, seed=1), _same(20, seed=2)])
    tree = build_tree(two, recipe)
    assert tree.suggested_k == 2
    truth = np.r_[np.zeros(20), np.ones(20)]
    for k in (None, 2, 5, 8):
        labels = assign(tree, k=k)
        assert len(set(labels.tolist())) == 2 and (labels == labels[0]).sum() == 20
        assert ((labels == labels[0]) == (truth == 0)).all()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["paper", "paper-sklearn"])
def test_copies_in_planted_groups_join_their_map_and_the_groups_are_found(recipe):
    maps, truth = planted_maps()
    dup = torch.cat([maps, maps[:5]])  # five maps twice
    tree = build_tree(dup, recipe)
    labels = assign(tree)
    assert tree.suggested_k == 3 and tree.embedding.shape == (len(dup), 2)
    assert (labels[len(maps) :] == labels[:5]).all()  # each copy in its original's cluster
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels[: len(maps)]) == 1.0


def test_a_layer_of_copies_among_others_in_one_call():
    maps, _ = planted_maps()
    trees = build_trees([maps, torch.zeros(10, 4, 4), _same(6), maps[:1]], "paper")
    assert [t.suggested_k for t in trees] == [3, 1, 1, 1]


def test_linkage_helpers():
    z = one_cluster_linkage(4)
    assert is_valid_linkage(z) and z.shape == (3, 4) and (z[:, 2] == 0).all() and z[-1, 3] == 4
    from scipy.cluster.hierarchy import linkage

    pts = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 7.0]])
    ze = expand_linkage(linkage(pts, "ward"), np.array([0, 1, 0, 2, 1, 1]))
    assert is_valid_linkage(ze) and ze.shape == (5, 4) and ze[-1, 3] == 6
    assert (ze[:3, 2] == 0).all() and ze[3:, 2].min() > 0  # copies first, at height 0


def test_a_registered_recipe_gets_the_same_degenerate_answers(monkeypatch):
    from scipy.cluster.hierarchy import linkage

    from inv_widgets.engine import recipes
    from inv_widgets.engine.recipes import Link, Recipe, register_recipe

    monkeypatch.setattr(recipes, "_registry", dict(recipes._registry))

    class Average(Recipe):
        name = "test-average"

        def link(self, x, seed=0):
            return Link(linkage(x.double().numpy(), "average"), 4)

    register_recipe(Average)
    assert "test-average" in recipe_names()
    tree = build_tree(_same(12), "test-average")
    assert tree.suggested_k == 1 and set(assign(tree, k=4).tolist()) == {0}
