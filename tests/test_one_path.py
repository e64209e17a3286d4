"""One result path: a stored run and a Session give the same cut on every layer, degenerate ones too (copied
channels, constant maps, maps flat to rounding, 1 x 1 maps, a layer with a single kept channel), because both
call engine/cut.py. Issue 21: "A run and a Session give identical maps, weights, members and suggested k on
degenerate layers too"."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inv_widgets as inv
from inv_widgets.engine.maps import FLAT_RTOL

LAYERS = ["copies", "const", "flat", "single", "pixel", "plain"]


class DegenerateNet(nn.Module):
    """Parallel branches from the image, each a degenerate layer, pooled into one linear head. Every weight is set
    so that class 0 gets positive guided weights where the branch says."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.copies = nn.Conv2d(3, 6, 3, padding=1)  # channels 0-2 and 3-5: two sets of three copies
        self.const = nn.Conv2d(3, 4, 3, padding=1)  # no weights, positive biases: constant maps
        self.flat = nn.Conv2d(3, 4, 3, padding=1)  # 10 + about 1e-6: flat to float32 rounding, not constant
        self.single = nn.Conv2d(3, 8, 3, padding=1)  # only channel 0 matters to the head
        self.pixel = nn.Conv2d(3, 4, 8)  # an 8 x 8 kernel on an 8 x 8 image: 1 x 1 maps
        self.plain = nn.Conv2d(3, 10, 3, padding=1)  # an ordinary layer beside them
        with torch.no_grad():
            w = torch.randn(2, 3, 3, 3, generator=g)
            self.copies.weight.copy_(w.repeat_interleave(3, 0))
            self.copies.bias.copy_(torch.tensor([0.1, 0.1, 0.1, 0.2, 0.2, 0.2]))
            self.const.weight.zero_()
            self.const.bias.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
            self.flat.weight.copy_(1e-7 * torch.rand(4, 3, 3, 3, generator=g))
            self.flat.bias.fill_(10.0)
            self.single.weight.copy_(torch.rand(8, 3, 3, 3, generator=g))
            self.pixel.weight.copy_(torch.rand(4, 3, 8, 8, generator=g) / 64)
            self.plain.weight.copy_(torch.randn(10, 3, 3, 3, generator=g))
        widths = [6, 4, 4, 8, 4, 10]
        self.head = nn.Linear(sum(widths), 3)
        with torch.no_grad():
            head = torch.rand(3, sum(widths), generator=g) * 0.1
            start = sum(widths[:3])
            head[0, start : start + 8] = torch.tensor([5.0, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6])
            self.head.weight.copy_(head)
            self.head.bias.zero_()

    def forward(self, x):
        parts = [
            torch.relu(self.copies(x)),
            self.const(x),
            self.flat(x),
            torch.relu(self.single(x)),
            self.pixel(x),
            torch.relu(self.plain(x)),
        ]
        return self.head(torch.cat([p.mean((2, 3)) for p in parts], 1))


@pytest.fixture(scope="module")
def degenerate():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 8, 8, generator=g) for _ in range(6)]
    return inv.Session(DegenerateNet(), images, layers=LAYERS, class_names=["a", "b", "c"])


def _same_cut(rl, cl, exact=True):
    """A run's layer and a Session's cut: the same members, weights and keys to the bit; the maps the run stores
    are the Session's maps at feature resolution as float16. The torch Ward kernel's merge heights (float64
    arithmetic on the distances) differ from scipy's in the last digits: the cut height then within 1e-6."""
    assert rl.k == cl.k
    assert [m.tolist() for m in rl.members] == [m.tolist() for m in cl.members]
    np.testing.assert_array_equal(rl.weights, cl.weights)
    assert rl.keys() == cl.keys()
    np.testing.assert_array_equal(rl.maps_lowres, cl.maps_lowres.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(rl.cut.assignment, cl.assignment)
    assert rl.cut.k_cut == cl.k_cut and rl.cut.threshold == pytest.approx(cl.threshold, rel=1e-12 if exact else 1e-6)


@pytest.mark.parametrize("ward", ["scipy", "torch"])
def test_a_run_and_a_session_cut_degenerate_layers_alike(degenerate, tmp_path, ward):
    run = inv.explain_dataset(degenerate, out=tmp_path / ward, batch_size=3, target=0, progress=False, ward=ward)
    exps = degenerate.explain_many(range(len(degenerate)), target=0, batch_size=3)
    for i, exp in enumerate(exps):
        for name in LAYERS:
            _same_cut(run[i][name], exp[name].cut(), exact=ward == "scipy")
    exp = exps[0]
    # what makes each layer degenerate, seen through the Session
    copies = exp["copies"]
    assert copies.suggested_k <= 2 and all(
        set(m.tolist()) in ({0, 1, 2}, {3, 4, 5}) or len(m) <= 3 for m in copies.cut().members
    )
    assert exp["const"].cut().k == 1 and not exp["const"].cut().maps.any()  # constant maps: one map, all zeros
    flat = exp["flat"].feature_maps
    assert np.ptp(flat) > 0 and np.ptp(flat) < FLAT_RTOL * np.abs(flat).max()
    assert not exp["flat"].cut().maps_lowres.any()  # flat to rounding: shown as zeros, in a run too
    assert exp["single"].kept.tolist() == [0] and exp["single"].cut().k == 1
    assert exp["pixel"].shape == (1, 1) and exp["pixel"].cut().k == 1
    assert exp["plain"].cut().k >= 2


def test_the_run_table_is_the_one_maps_schema(degenerate, tmp_path):
    from inv_widgets.engine.records import MAP_COLUMNS

    run = inv.explain_dataset(degenerate, range(2), out=tmp_path / "r", batch_size=2, target=0, progress=False)
    frame = degenerate.explain(0, target=0).to_frame()
    assert list(run.maps.columns[: len(MAP_COLUMNS)]) == list(MAP_COLUMNS) == list(frame.columns[: len(MAP_COLUMNS)])
    for c in MAP_COLUMNS:
        assert run.maps[c].dtype == frame[c].dtype, c
    mine = run.maps[run.maps["image"] == 0][list(MAP_COLUMNS)].reset_index(drop=True)
    pd_frame = frame[list(MAP_COLUMNS)].reset_index(drop=True)
    import pandas as pd

    pd.testing.assert_frame_equal(mine, pd_frame)
