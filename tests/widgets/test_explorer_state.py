"""The Explorer's state (widgets/explorer/state.py) on its own: a frozen Selection, resolved against a real
Session into a View, and the rules of the Explorer's requests. No widgets."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest

import inv_widgets as inv
from inv_widgets.widgets.explorer import state
from inv_widgets.widgets.explorer.state import KEEP, Cut, Selection, View

MAX_K = 12


@pytest.fixture
def session(small_cnn, small_images, class_names):
    return inv.Session(small_cnn, small_images, class_names=class_names)


def resolve(session, selection, previous=None):
    return selection.resolve(session, max_k=MAX_K, previous=previous)


def test_the_state_module_is_pure():
    tree = ast.parse(inspect.getsource(state))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {
        (n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
    }
    assert not imported & {"ipywidgets", "anywidget", "traitlets", "plotly", "IPython", "torch"}, imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))  # nothing of the package


def test_cuts_are_checked_values():
    assert Cut() == Cut.suggested() and Cut.k(3) == Cut("k", 3) and Cut.height(0.5).value == 0.5
    assert [c.label for c in (Cut.suggested(), Cut.k(2), Cut.height(1.0))] == [
        "suggested cut",
        "k chosen",
        "height chosen",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        Cut.k(0)
    with pytest.raises(ValueError, match="finite number"):
        Cut.height(float("inf"))
    with pytest.raises(ValueError, match="'suggested', 'k' or 'height'"):
        Cut("depth", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cut.k(2).value = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        Selection().image = 3


def test_a_selection_resolves_to_what_it_names(session):
    view = resolve(session, Selection(image=1))
    exp = session.explain(1, lazy=True)
    assert view.explanation is exp and view.target == exp.predicted and view.image == 1
    assert view.layer_name == exp.layers[-1] and view.layer is exp.layer(exp.layers[-1], "fast")
    assert view.clusters is view.layer.cut() and view.selected == 0
    s = view.selection  # settled: every blank filled in
    assert s.target == exp.predicted and s.layer == exp.layers[-1] and s.recipe == "fast"
    assert s.selected == view.clusters.key(0) and s.cut == Cut.suggested()
    again = resolve(session, s, previous=view)
    assert again.same_content(view) and again.selection == s


def test_a_failed_resolution_raises_and_names_the_problem(session):
    with pytest.raises(IndexError, match="out of range"):
        resolve(session, Selection(image=99))
    with pytest.raises(KeyError, match="'nope' is not explained"):
        resolve(session, Selection(layer="nope"))
    with pytest.raises(ValueError, match="unknown recipe 'magic'"):
        resolve(session, Selection(recipe="magic"))


def test_a_new_image_starts_at_its_predicted_class(session):
    view = resolve(session, Selection(image=0))
    other = (view.target + 1) % 6
    at_other = resolve(session, view.request(target=other), previous=view)
    assert at_other.target == other
    next_image = resolve(session, at_other.request(image=2), previous=at_other)
    assert next_image.target == session.explain(2, lazy=True).predicted
    kept_class = resolve(session, at_other.request(image=2, target=other), previous=at_other)
    assert kept_class.target == other
    by_name = resolve(session, view.request(target=session.classes[other]), previous=view)
    assert by_name.target == other


def test_requests_keep_what_they_do_not_change(session):
    view = resolve(session, Selection(image=0))
    layer0 = view.explanation.layers[0]
    sel = view.request(layer=layer0)
    assert (sel.image, sel.target, sel.recipe, sel.cut, sel.selected) == (
        0,
        view.target,
        "fast",
        view.cut,
        view.selected_key,
    )
    assert view.request() == view.selection
    assert view.request(target=KEEP).target == view.target and view.request(target=None).target is None


def test_a_height_cut_becomes_a_number_of_clusters_when_the_layer_changes(session):
    view = resolve(session, Selection(image=0))
    lr = view.layer
    h = lr.tree.threshold_for(3)
    at_h = resolve(session, view.request(cut=Cut.height(h)), previous=view)
    assert at_h.cut == Cut.height(h) and at_h.clusters.k == 3
    layer0 = at_h.explanation.layers[0]
    moved = at_h.request(layer=layer0)
    assert moved.cut == Cut.k(3)  # heights of two dendrograms are not comparable; k is
    assert resolve(session, moved, previous=at_h).clusters.k_cut == min(3, at_h.explanation[layer0].tree.n)
    # a new cut asked for at the same time wins
    assert at_h.request(layer=layer0, cut=Cut.suggested()).cut == Cut.suggested()


def test_a_height_below_max_k_clusters_settles_as_max_k(session):
    view = resolve(session, Selection(image=0))
    n = view.layer.tree.n
    low = resolve(session, view.request(cut=Cut.height(-1.0)), previous=view)
    if n > MAX_K:
        assert low.cut == Cut.k(MAX_K) and low.clusters.k == MAX_K
    else:
        assert low.cut == Cut.height(0.0) and low.clusters.k == n
    capped = Selection(image=0, cut=Cut.height(0.0)).resolve(session, max_k=2)
    assert capped.cut == Cut.k(2) and capped.clusters.k == 2 and capped.cut.label == "k chosen"


def test_the_selected_map_is_followed_by_its_identity(session):
    view = resolve(session, Selection(image=0, cut=Cut.k(3)))
    picked = view.select(2)
    key = picked.selected_key
    assert picked.selected == 2 and key == view.clusters.key(2) and view.selected == 0  # a new value
    same = resolve(session, picked.request(cut=Cut.k(3)), previous=picked)
    assert same.selected == 2 and same.selected_key == key
    coarser = resolve(session, picked.request(cut=Cut.k(1)), previous=picked)
    assert coarser.selected == 0 and coarser.selected_key == coarser.clusters.key(0)  # gone: the heaviest
    with pytest.raises(IndexError, match="cluster map 7 does not exist; this cut has 3 maps"):
        view.select(7)


def test_arrow_keys_move_within_bounds(session):
    view = resolve(session, Selection(image=0))
    layers = view.explanation.layers
    assert view.neighbour_layer(1) is None and view.neighbour_layer(-1) == layers[-2]
    first = resolve(session, view.request(layer=layers[0]), previous=view)
    assert first.neighbour_layer(-1) is None and first.neighbour_layer(1) == layers[1]
    k = view.clusters.k_cut
    assert view.moved_k(1, MAX_K) == k + 1 and view.moved_k(-1, MAX_K) == (k - 1 if k > 1 else None)
    one = resolve(session, view.request(cut=Cut.k(1)), previous=view)
    assert one.moved_k(-1, MAX_K) is None  # already one cluster
    top = min(view.layer.tree.n, 3)
    at_top = resolve(session, view.request(cut=Cut.k(top)), previous=view)
    assert at_top.moved_k(1, 3) is None  # at the largest k allowed


def test_recipe_changes_reuse_the_explanation(session, small_cnn):
    calls = []
    hook = small_cnn.register_forward_hook(lambda *a: calls.append(1))
    try:
        view = resolve(session, Selection(image=0))
        n = len(calls)
        paper = resolve(session, view.request(recipe="paper"), previous=view)
        assert paper.layer.recipe == "paper" and paper.recipe == "paper" and len(calls) == n
        assert paper.explanation is view.explanation
    finally:
        hook.remove()


def test_views_are_values(session):
    view = resolve(session, Selection(image=0))
    assert isinstance(view, View)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.selected = 3
