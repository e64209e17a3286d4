"""Dask: each worker builds the session once (a worker plugin) and writes its shards straight into the run.

The scheduler only ever sees a plugin holding the *factory* (a picklable callable that builds the
session where it runs: a module-level function or ``functools.partial`` of one), task arguments of a
few hundred bytes (run path, shard number, settings) and results of a few numbers per shard.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import ExitStack

from distributed.diagnostics.plugin import WorkerPlugin

from ..engine.runtime import reuse_freed_memory
from .pipeline import build_session, describe, image_ids, process_shard
from .store import RunStore

__all__ = ["SessionPlugin", "SessionSpec", "register_session", "ids_task", "shard_task"]


class SessionSpec:
    """A factory made from a live Session: its model, images and settings, rebuilt on each worker.

    The model travels once per worker inside the plugin (not once per task). Fine for small models; for
    large ones pass a factory function that loads the weights where it runs.
    """

    def __init__(self, session):
        self.model = session.model
        self.dataset = session.dataset
        self.extra = list(session.image_set._extra)
        self.transform = session.transform
        self.class_names = session._class_names
        self.layers = session.layers
        self.recipe = session.recipe
        self.device = str(session.device)
        self.weighting = session.weighting
        self.output = session.output
        self.input_options = dict(session.inputs.options)  # input_size, max_pixels, max_memory

    def __call__(self):
        from ..session import Session

        data = self.dataset if self.dataset is not None else (self.extra or None)
        s = Session(
            self.model,
            data,
            transform=self.transform,
            class_names=self.class_names,
            layers=self.layers,
            recipe=self.recipe,
            device=self.device,
            weighting=self.weighting,
            output=self.output,
            **self.input_options,
        )
        if self.dataset is not None:
            for im in self.extra:
                s.add_image(im)
        return s


class SessionPlugin(WorkerPlugin):
    """Builds the session from ``factory`` when a worker starts (and on every worker that joins later)."""

    def __init__(self, factory, name: str):
        self.factory = factory
        self.name = name
        self.session = None
        self.lock = None
        self._resources = None
        self.memory = None

    def setup(self, worker):
        self.lock = threading.Lock()  # one model pass at a time, whatever the worker's thread count
        self.session = build_session(self.factory)
        # the worker's shards reuse each other's freed memory instead of page-faulting it in again, for as
        # long as the session lives on the worker (engine.runtime.reuse_freed_memory)
        self._resources = ExitStack()
        self.memory = self._resources.enter_context(reuse_freed_memory())

    def teardown(self, worker):
        self.session = None
        resources, self._resources, self.memory = self._resources, None, None
        if resources is not None:
            resources.close()


def _plugin(name: str) -> SessionPlugin:
    from distributed import get_worker

    plugin = get_worker().plugins.get(name)
    if plugin is None or getattr(plugin, "session", None) is None:
        raise RuntimeError(f"this worker has no session {name!r}: its plugin was not set up")
    return plugin


def describe_task(name: str, index: int, layers) -> dict:
    return describe(_plugin(name).session, index, layers)


def length_task(name: str) -> int:
    return len(_plugin(name).session)


def ids_task(name: str, indices) -> list[str]:
    """The ids of the worker session's images ``indices`` (a resumed run compares them with the stored ones)."""
    return image_ids(_plugin(name).session, indices)


def shard_task(
    name: str,
    root: str,
    meta: dict,
    s: int,
    batch_size: int,
    ward: str,
    only=None,
    write: bool = True,
    replace: bool = False,
) -> dict:
    plugin = _plugin(name)
    done = process_shard(
        plugin.session,
        RunStore(root),
        meta,
        s,
        batch_size=batch_size,
        ward=ward,
        lock=plugin.lock,
        only=only,
        write=write,
        replace=replace,
    )
    plugin.memory.step()
    return done


def register_session(client, factory) -> str:
    """Register the session plugin on the cluster (once per factory) and return its name."""
    from dask.base import tokenize

    if isinstance(factory, SessionSpec):
        name = f"inv-session-{uuid.uuid4().hex[:12]}"  # tokenizing would hash the whole model
    else:
        name = f"inv-session-{tokenize(factory)}"
    present = client.run_on_scheduler(lambda dask_scheduler: name in dask_scheduler.worker_plugins)
    if not present:
        client.register_plugin(SessionPlugin(factory, name), name=name)
    return name
