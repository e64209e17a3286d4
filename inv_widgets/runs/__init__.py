"""Dataset-scale explanations stored on disk: ``explain_dataset`` and ``Run``.

    run = inv.explain_dataset(session, range(2000), out="runs/parts")   # resumable; client= for Dask
    run = inv.Run.open("runs/parts")
    run.maps                     # DataFrame, one row per cluster map (MapKey fields, image, layer, weight, ...)
    run[i][layer].maps           # one image's cluster maps, drawn from disk (no model)
    run.reveal(key, step)        # the Deep Reveal image of a map, for a labelling pool
    run.weights()                # MapKey -> percent, for aggregate_labels(..., merge=True, weights=...)

Layout, commit protocol and verification: runs/store.py. Dask workers: runs/workers.py. A damaged shard is
named (``RunDamagedError``, or ``RunDamageWarning`` from ``Run.open``) and redone by
``explain_dataset(..., repair=True)``.
"""

from .explain import explain_dataset
from .run import Run, RunDamageWarning, RunImage, RunLayer
from .store import RunBusyError, RunDamagedError

__all__ = ["explain_dataset", "Run", "RunImage", "RunLayer", "RunBusyError", "RunDamagedError", "RunDamageWarning"]
