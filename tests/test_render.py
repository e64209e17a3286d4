"""render.py: colour maps, overlays, thumbnails and PNG bytes."""

import io

import numpy as np
import pytest
from PIL import Image

from inv_widgets import render


def test_colormaps_are_256_rgb_tables():
    for name in render.COLORMAPS:
        lut = render.colormap(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        assert not lut.flags.writeable


def test_jet_endpoints_and_middle_match_the_paper_colours():
    jet = render.colormap("jet")
    assert tuple(jet[0]) == (0, 0, 128)  # dark blue
    assert tuple(jet[-1]) == (128, 0, 0)  # dark red
    r, g, b = jet[128]
    assert g > 200 and abs(int(r) - int(b)) < 60  # green-ish at the middle


def test_viridis_and_inferno_known_values():
    assert tuple(render.colormap("viridis")[0]) == (68, 1, 84)
    assert tuple(render.colormap("viridis")[-1]) == (253, 231, 37)
    assert tuple(render.colormap("inferno")[0]) == (0, 0, 4)
    assert tuple(render.colormap("gray")[77]) == (77, 77, 77)


def test_unknown_colormap_names_the_choices():
    with pytest.raises(ValueError, match="jet, viridis, inferno, gray"):
        render.colormap("rainbow")


def test_apply_cmap_clips_and_handles_nan():
    m = np.array([[-1.0, 0.0], [1.0, np.nan]], dtype=np.float32)
    rgb = render.apply_cmap(m, "gray")
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, 1, 0] == 0 and rgb[1, 0, 0] == 255 and rgb[1, 1, 0] == 0


def test_overlay_is_the_paper_blend():
    img = np.full((4, 4, 3), 200, np.uint8)
    m = np.ones((4, 4), np.float32)
    out = render.overlay(img, m, cmap="jet", alpha=0.5)
    expected = np.round(0.5 * 200 + 0.5 * render.colormap("jet")[255].astype(float))
    assert np.array_equal(out[0, 0], expected.astype(np.uint8))
    assert np.array_equal(render.overlay(img, m, alpha=0.0), img)


def test_overlay_resizes_the_map_and_accepts_pil():
    img = Image.new("RGB", (32, 16), (10, 20, 30))
    m = np.zeros((4, 8), np.float32)
    m[:, 4:] = 1.0
    out = render.overlay(img, m, cmap="gray", alpha=1.0)
    assert out.shape == (16, 32, 3)
    assert out[8, 2, 0] < 20 and out[8, 30, 0] > 235


def test_overlay_rejects_bad_alpha_and_bad_maps():
    with pytest.raises(ValueError, match="alpha"):
        render.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2)), alpha=2)
    with pytest.raises(ValueError, match="2-D"):
        render.overlay(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 2, 2)))


def test_to_uint8_image_conversions():
    assert render.to_uint8_image(np.ones((2, 3), np.float32)).tolist() == [[[255] * 3] * 3] * 2
    chw = np.zeros((3, 5, 6), np.float32)
    assert render.to_uint8_image(chw).shape == (5, 6, 3)
    rgba = np.zeros((5, 6, 4), np.uint8)
    assert render.to_uint8_image(rgba).shape == (5, 6, 3)


def test_thumbnail_keeps_aspect():
    t = render.thumbnail(np.zeros((100, 200, 3), np.uint8), size=64)
    assert t.shape == (32, 64, 3)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((8, 9, 3), np.uint8),
        np.zeros((8, 9), np.uint8),
        np.linspace(0, 1, 72, dtype=np.float32).reshape(8, 9),
        np.zeros((8, 9, 4), np.uint8),
    ],
)
def test_to_png_roundtrip(arr):
    data = render.to_png(arr)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert back.shape[:2] == (8, 9)


def test_to_png_roundtrip_values():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(render.to_png(arr))))
    assert np.array_equal(back, arr)
