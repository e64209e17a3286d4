"""The Explorer's "drop x %" toggle and deletion / insertion curves, without a browser."""

from __future__ import annotations

import numpy as np
import pytest
from nets import CLASS_NAMES as CLASSES

import inv_widgets as inv
from inv_widgets.widgets import Explorer
from inv_widgets.widgets.gallery import Gallery


@pytest.fixture
def explorer(small_cnn, small_images):
    return Explorer(inv.Session(small_cnn, small_images, class_names=CLASSES))


def test_off_by_default_nothing_is_measured(explorer):
    assert not explorer.drop_toggle.value and explorer.gallery.drops == []
    assert explorer.faithfulness.box.layout.display == "none" and explorer.faithfulness.figure is None
    assert getattr(explorer.clusters, "_ablation", None) is None


def test_toggle_shows_each_cards_drop_and_the_selected_maps_curves(explorer):
    explorer.drop_toggle.value = True  # as a click does
    cl = explorer.clusters
    ab = cl.ablation()
    assert explorer.gallery.drops == pytest.approx(list(ab.share))
    tips = explorer.gallery.drop_tips
    assert len(tips) == cl.k and tips[0].startswith(f"Zeroing the {len(cl.members[0])} channel")
    assert f"by {ab.logit_drop[0]:.3g}" in tips[0]
    # the curves of the selected map against the layer's Grad-CAM, their areas in the titles
    fig = explorer.faithfulness.figure
    c = cl.curves(explorer.selected, steps=25)
    assert explorer.faithfulness.box.layout.display is None
    assert len(fig.data) == 4
    np.testing.assert_allclose(fig.data[0].y, c.deletion[0])
    np.testing.assert_allclose(fig.data[1].y, c.deletion[1])
    np.testing.assert_allclose(fig.data[2].y, c.insertion[0])
    np.testing.assert_allclose(fig.data[3].x, 100 * c.fractions)
    assert f"map {c.deletion_area[0]:.3f}, Grad-CAM {c.deletion_area[1]:.3f}" in fig.layout.annotations[0].text
    assert f"map {c.insertion_area[0]:.3f}, Grad-CAM {c.insertion_area[1]:.3f}" in fig.layout.annotations[1].text


def test_drops_follow_the_layer_cut_and_selection_while_on(explorer):
    explorer.faithfulness.show(True)
    explorer.set_layer(0)
    assert explorer.gallery.drops == pytest.approx(list(explorer.clusters.ablation().share))
    explorer.set_cut(k=2)
    assert len(explorer.gallery.drops) == explorer.clusters.k == 2
    explorer.select_cluster(1)
    title = explorer.faithfulness.figure.layout.title.text
    assert title.startswith(f"Map 2 of {explorer.layer}")
    np.testing.assert_allclose(
        explorer.faithfulness.figure.data[0].y, explorer.clusters.curves(1, steps=25).deletion[0]
    )
    explorer.gallery.selected = 0  # a click on the first card
    assert explorer.faithfulness.figure.layout.title.text.startswith("Map 1 of")
    explorer.faithfulness.show(False)
    assert explorer.gallery.drops == [] and explorer.faithfulness.box.layout.display == "none"
    explorer.set_layer(1)  # off: nothing measured for the new layer
    assert getattr(explorer.clusters, "_ablation", None) is None and explorer.gallery.drops == []


def test_a_failed_measure_shows_in_the_header_and_leaves_the_explorer_usable(explorer, monkeypatch):
    from inv_widgets.engine.explanation import Clusters

    def broken(self):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Clusters, "ablation", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        explorer.faithfulness.show(True)
    assert "measure the cluster maps" in explorer.header.error
    assert explorer.gallery.drops == []
    monkeypatch.undo()
    explorer.set_layer(0)  # still works, and now measures
    assert len(explorer.gallery.drops) == explorer.clusters.k


def test_gallery_drops_are_checked_and_reset_with_new_content():
    g = Gallery()
    g.show(base=b"", heats=[b"a", b"b"], weights=[60, 40], counts=[1, 2], colors=["#000", "#111"])
    g.show_drops([45.0, float("nan")], ["one", "two"])
    assert g.drops == [45.0, None] and g.drop_tips == ["one", "two"]
    with pytest.raises(ValueError, match="one entry per map"):
        g.show_drops([1.0])
    g.show(base=b"", heats=[b"a"], weights=[100], counts=[1], colors=["#000"])
    assert g.drops == []  # measured for other maps
