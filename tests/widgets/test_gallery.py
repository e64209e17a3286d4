"""The gallery widget: what it sends (maps as numbers, not pictures) and how the page colours them.

The page's colouring (static/gallery.js: bilinear upsampling, min-max, the colour table) runs here in Node against
the engine's own ``upsample_minmax`` and ``render.apply_cmap``; the browser tests compare the pixels on screen.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from inv_widgets import render
from inv_widgets.engine.maps import upsample_minmax
from inv_widgets.widgets._common import esm
from inv_widgets.widgets.gallery import Gallery, map_bytes

from .test_front_end import NODE, needs_node

PAINT = r"""
import { readFileSync, writeFileSync } from "node:fs";
const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const raw = readFileSync(spec.maps);
const src = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const lutBytes = readFileSync(spec.lut);
const lut = packedLut(new DataView(lutBytes.buffer, lutBytes.byteOffset, lutBytes.byteLength));
const [k, h, w] = spec.shape, [H, W] = spec.size;
const out = new Uint32Array(k * H * W);
const ax = { x: axis(w, W), y: axis(h, H) };
const buf = new Float32Array(H * W);
for (let j = 0; j < k; j++) paintMap(src, j * h * w, h, w, H, W, ax, lut, buf, out.subarray(j * H * W, (j + 1) * H * W));
writeFileSync(spec.out, Buffer.from(out.buffer));
"""


def paint_in_node(tmp_path, maps: np.ndarray, size, cmap: str) -> np.ndarray:
    """(K, H, W, 4) uint8: what gallery.js paints into its canvases for ``maps`` (K, h, w)."""
    data, shape = map_bytes(maps)
    (tmp_path / "maps.f32").write_bytes(data)
    (tmp_path / "lut.bin").write_bytes(render.colormap(cmap).tobytes())
    spec = {
        "maps": str(tmp_path / "maps.f32"),
        "lut": str(tmp_path / "lut.bin"),
        "out": str(tmp_path / "out.bin"),
        "shape": [len(maps), *shape],
        "size": list(size),
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    f = tmp_path / "paint.mjs"
    f.write_text(esm("gallery.js") + PAINT)
    r = subprocess.run([NODE, str(f), str(tmp_path / "spec.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.frombuffer((tmp_path / "out.bin").read_bytes(), dtype=np.uint8).reshape(len(maps), *size, 4)


CASES = [  # (low-resolution shape, input size): the demo's layers, VGG-16's, odd sizes, no upsampling
    ((8, 8), (128, 128)),
    ((16, 16), (128, 128)),
    ((64, 64), (128, 128)),
    ((14, 14), (224, 224)),
    ((112, 112), (224, 224)),
    ((7, 9), (48, 50)),
    ((5, 5), (5, 5)),
    ((1, 1), (32, 32)),
]


@needs_node
@pytest.mark.parametrize("shape,size", CASES)
@pytest.mark.parametrize("cmap", ["jet", "viridis"])
def test_the_page_colours_maps_as_the_engine_and_render_do(tmp_path, shape, size, cmap):
    rng = np.random.default_rng(sum(shape) + sum(size))
    maps = [
        rng.random(shape, dtype=np.float32) * 3.0,
        np.abs(rng.normal(size=shape)).astype(np.float32) ** 2,
        np.full(shape, 0.7, np.float32),
    ]  # the last one flat: shown as zeros
    smooth = rng.random(shape, dtype=np.float32)
    smooth[0, 0] += 1e-7  # flat to rounding
    maps = np.stack(maps + [smooth * 0 + 0.25 + (np.arange(smooth.size).reshape(shape) == 0) * 1e-7])
    got = paint_in_node(tmp_path, maps, size, cmap)
    want = np.stack([render.apply_cmap(m, cmap) for m in upsample_minmax(torch.from_numpy(maps), size)])
    assert (got[..., 3] == 255).all()
    diff = np.abs(got[..., :3].astype(int) - want.astype(int)).max(axis=-1)
    # float32 arithmetic in the same order as PyTorch's kernel: equal but for rare rounding at a colour boundary
    assert (diff > 0).mean() < 1e-3, (diff > 0).mean()
    assert diff.max() <= 8  # one step of the colour table at most (jet's steepest step is 8 of 255)
    assert (got[2, ..., :3] == render.colormap(cmap)[0]).all() and (got[3, ..., :3] == render.colormap(cmap)[0]).all()


def test_show_sends_maps_as_float32_numbers_and_checks_its_arguments():
    g = Gallery()
    maps = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    g.show(
        base=b"",
        maps=maps,
        size=(6, 8),
        weights=[60, 40],
        counts=[1, 2],
        colors=["#000", "#111"],
        cmap="viridis",
        gradcam=np.ones((6, 8)),
    )
    assert g.k == 2 and g.map_shape == [3, 4] and g.size == [6, 8] and g.gradcam_shape == [6, 8]
    assert np.array_equal(np.frombuffer(g.maps, "<f4").reshape(2, 3, 4), maps)
    assert g.lut == render.colormap("viridis").tobytes() and g.cmap == "viridis" and g.heats == []
    rev = g.revision
    g.show(base=b"", heats=[b"png1"], weights=[100], counts=[3], colors=["#000"])  # pictures made elsewhere
    assert g.revision == rev + 1 and g.maps == b"" and g.heats == [b"png1"] and g.k == 1
    kw = dict(base=b"", weights=[1], counts=[1], colors=["#000"])
    with pytest.raises(ValueError, match="either as maps"):
        g.show(**kw)
    with pytest.raises(ValueError, match="either as maps"):
        g.show(maps=maps[:1], heats=[b"x"], **kw)
    with pytest.raises(ValueError, match="same length"):
        g.show(maps=maps, **kw)
    with pytest.raises(ValueError, match="at least the maps' own size"):
        g.show(maps=maps[:1], size=(2, 8), **kw)
    with pytest.raises(ValueError, match="unknown colour map"):
        g.show(maps=maps[:1], cmap="rainbow", **kw)
    with pytest.raises(ValueError, match="one entry per map"):
        g.show_drops([1.0, 2.0])
    assert g.revision == rev + 1  # nothing changed by the refused calls


def test_map_bytes_of_non_finite_values():
    data, shape = map_bytes(np.array([[np.nan, np.inf], [-np.inf, 0.5]]))
    assert shape == [2, 2] and np.frombuffer(data, "<f4").tolist() == [0.0, 1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="shape"):
        map_bytes(np.zeros(3))
