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
