"""What a map shows, said where a person reads maps (issue 25): the Explorer's gallery has a line under the maps
and the detail view one under its title, each naming the session's map type; the detail view's weight says what
a Grad-CAM map's weight is."""

from __future__ import annotations

import pytest

import inv_widgets as inv
from inv_widgets.engine.contrast import map_meaning


@pytest.mark.parametrize("maps", ["gradcam", "published"])
def test_the_gallery_and_the_detail_view_say_what_a_map_shows(demo, maps):
    model, data = demo
    ex = inv.Explorer(inv.Session(model, data, maps=maps))
    assert ex.gallery.note == f"What a map shows: {map_meaning(maps)}"
    ex.select_cluster(0)
    assert ex.detail.meaning == map_meaning(maps)
    if maps == "gradcam":
        assert ex.detail.weight_name == "first-order worth" and "negative" in ex.detail.weight_tip
    else:
        assert ex.detail.weight_name == "gradient weight" and "guided-gradient" in ex.detail.weight_tip
    assert map_meaning("gradcam") != map_meaning("published")
