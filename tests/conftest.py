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


# ---- small networks and images (tests/nets.py), shared by the engine, session, CLI and widget tests ----------
@pytest.fixture(scope="module")
def tiny_cnn():
    """TinyCNN (in-place ReLU, BatchNorm, skip, depthwise, concatenation; 5 classes), seeded, eval mode."""
    import torch
    from nets import TinyCNN

    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def tiny_image():
    """One random 32 x 32 input tensor, the same every time."""
    import torch

    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def small_cnn():
    """SmallCNN (three conv layers, six classes), seeded, eval mode; a fresh one per test."""
    import torch
    from nets import SmallCNN

    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture
def small_images():
    """Five 48 x 48 PIL images (a rectangle on a flat colour)."""
    from nets import small_images

    return small_images()


@pytest.fixture
def class_names():
    """The six class names of SmallCNN."""
    from nets import CLASS_NAMES

    return list(CLASS_NAMES)


# --------------------------------------------------------------------------------------------------
# label stores on both backends: SQLite files and a throwaway PostgreSQL server (tests/pg_server.py)

import itertools  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # tests/pg_server.py, also for the benchmarks
import pg_server  # noqa: E402

STORE_BACKENDS = ["sqlite", "postgresql"]
_db_numbers = itertools.count(1)


def missing_postgres(reason: str):
    """No PostgreSQL server here: a failure in CI (which must run these tests: make test installs it), a
    skip elsewhere, as for Chromium in tests/browser."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole test session (initdb + pg_ctl as an unprivileged
    user, 127.0.0.1, a free port, trust authentication), stopped and deleted at the end, also on failure."""
    reason = pg_server.missing_reason()
    if reason:
        missing_postgres(reason)
    server = pg_server.PgServer(fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class StoreTarget:
    """A fresh, empty label database on one backend: ``url`` (a SQLite file path or a postgresql:// URL)
    and ``open(**kwargs)`` for LabelStores on it (closed after the test)."""

    def __init__(self, backend: str, url: str):
        self.backend = backend
        self.url = url
        self._open: list = []

    def open(self, **kwargs):
        from inv_widgets.labels import LabelStore

        store = LabelStore(self.url, **kwargs)
        self._open.append(store)
        return store

    def close_all(self) -> None:
        for store in self._open:
            try:
                store.close()
            except Exception:
                pass


@pytest.fixture(params=STORE_BACKENDS)
def store_target(request, tmp_path):
    """A fresh label database, once on SQLite (a file) and once on PostgreSQL (a new database on the
    session's throwaway server)."""
    if request.param == "sqlite":
        target = StoreTarget("sqlite", str(tmp_path / "labels.sqlite"))
        yield target
        target.close_all()
        return
    server = request.getfixturevalue("postgres_server")
    name = f"t{next(_db_numbers)}"
    target = StoreTarget("postgresql", server.create_database(name))
    yield target
    target.close_all()
    server.drop_database(name)


@pytest.fixture
def any_store(store_target):
    """A LabelStore on a fresh database of each backend."""
    return store_target.open()


def pytest_collection_modifyitems(config, items):
    """Tests that need the throwaway PostgreSQL server carry the ``postgres`` marker (``make test-fast`` leaves
    them out: the server takes seconds to start)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        backends = [value for value in params.values() if isinstance(value, str)]
        if "postgres_server" in getattr(item, "fixturenames", ()) or "postgresql" in backends:
            item.add_marker(pytest.mark.postgres)
