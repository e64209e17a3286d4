"""The shared runtime helpers (engine/runtime.py) and Session.locate."""
import threading

import numpy as np
import pytest
import torch
from torch import nn

from inv_widgets.engine.runtime import LRU, eval_mode, limited_threads


def test_eval_mode_restores_each_modules_own_flag_also_after_an_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert model.training and model[0].training and not model[1].training and model[2].training


def test_limited_threads_nests_and_restores_the_callers_setting():
    before = torch.get_num_threads()
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        with limited_threads(4):
            assert torch.get_num_threads() == 1  # the smallest active limit wins
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_limited_threads_across_threads_restores_once_at_the_end():
    before = torch.get_num_threads()
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with limited_threads(1):
            inside.set()
            release.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    with limited_threads(2):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 1  # the worker's block still runs
    release.set()
    t.join()
    assert torch.get_num_threads() == before


def test_lru_keeps_the_most_recently_used():
    c = LRU(2)
    made = []
    for k in "abac":
        c.get(k, lambda k=k: made.append(k) or k.upper())
    assert made == ["a", "b", "c"]  # "a" was served from the cache the second time
    assert c.keys() == ["a", "c"]  # "b" was least recently used
    assert c.get("b", default=0) == 0 and c.get("a") == "A"
    with pytest.raises(ValueError):
        LRU(0)


def test_locate_finds_every_map_of_every_cut_and_refuses_foreign_keys(demo_session):
    s = demo_session
    exp = s.explain(2)
    for name in exp.layers[::3]:
        for k in (None, 2, 6):
            cl = exp[name].cut(k=k)
            for j in range(cl.k):
                i, found, jj = s.locate(cl.key(j))
                assert i == 2 and found.key(jj) == cl.key(j)
                np.testing.assert_allclose(found.maps[jj], cl.maps[j])
    key = exp[exp.layers[0]].cut().key(0)
    with pytest.raises(KeyError, match="another model"):
        s.locate(key._replace(model="0" * 16))
    with pytest.raises(KeyError, match="no image"):
        s.locate(key._replace(image_id="not-an-image"))
    with pytest.raises(KeyError, match="not all kept|not one cluster"):
        s.locate(key._replace(members=tuple(range(16))))
