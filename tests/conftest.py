"""Fixtures shared by the whole suite (per-file fixtures stay with their files)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo():
    """The embedded default: the trained demo CNN (eval mode) and its parts dataset, loaded once."""
    import inv_widgets as inv

    return inv.demo.load()


@pytest.fixture
def demo_session(demo):
    """A fresh Session over the demo model and dataset (its own cache, so tests do not share state)."""
    import inv_widgets as inv

    model, data = demo
    return inv.Session(model, data)


@pytest.fixture(scope="module")
def game_session():
    """A small session for the labelling game: the untrained demo CNN (seed 0) on four parts images, as the
    game notebook runs it in the browser tests. One per test module (its explanation cache is shared)."""
    import torch

    import inv_widgets as inv

    torch.manual_seed(0)
    model = inv.demo.DemoCNN(num_classes=10).eval()
    return inv.Session(model, inv.demo.PartsDataset(n=4))


@pytest.fixture
def label_store(tmp_path):
    """A label store in a fresh SQLite file, closed after the test."""
    from inv_widgets.labels import LabelStore

    store = LabelStore(tmp_path / "labels.sqlite")
    yield store
    store.close()
