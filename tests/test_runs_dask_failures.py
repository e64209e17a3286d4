"""Failures on a Dask cluster (issue 23, finding 6): an image that kills its worker is reported with every
failed shard and its images, the first failure first, and leaves out only itself: the rest of its shard is
stored, and a rerun redoes that shard whole.

A cluster of its own (LocalCluster, 2 worker processes, one thread each) with ``allowed-failures`` 1, so that
a task that kills its worker fails after two deaths instead of four (the nannies restart the workers).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import dask
import distributed
import pytest
from test_runs import assert_same_runs

import inv_widgets as inv

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow
KILL = 13  # the image that kills its worker: shard 1 of a run of range(32) in shards of 8


@pytest.fixture(scope="module")
def client():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS)] + ([old] if old else []))
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            cluster = distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=50
            )
            c = distributed.Client(cluster)
        yield c
        c.close()
        cluster.close()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_an_image_that_kills_its_worker_leaves_out_only_itself(client, tmp_path):
    from runs_helpers import killer_demo_session

    factory = functools.partial(killer_demo_session, n=40, kill=KILL)
    out = tmp_path / "killer"
    with pytest.raises(RuntimeError) as info:
        inv.explain_dataset(factory, range(32), out=out, batch_size=8, client=client, progress=False)
    msg = str(info.value)
    # every failed shard with its images, the one whose image fails first (an innocent shard that ran beside it
    # on a dying worker may have been marked failed first: it comes after, stored on its retry)
    body = msg.split(" shards failed. ")[1]
    assert body.startswith(
        "shard 1 (run positions 8..15, images 8..15) failed (KilledWorker); retried one image at "
        f"a time, 1 image failed on its own (image {KILL} (run position {KILL}): KilledWorker"
    ), msg
    assert "the 7 other images of shard 1 are stored" in msg and "lacks only 1 image" in msg
    assert "went through when retried alone" not in msg or "shard 1 (" not in msg.split("retried alone")[1]
    run = inv.Run.open(out)
    assert run.missing() == [KILL] and len(run) == 31  # no innocent image left out
    assert sorted(run.images["image"]) == [i for i in range(32) if i != KILL]
    # the next run (the image's trouble fixed: here, read outside a worker) redoes shard 1 whole
    fixed = inv.explain_dataset(factory(), range(32), out=out, batch_size=8, progress=False)
    assert fixed.complete and len(fixed) == 32
    ref = inv.explain_dataset(inv.demo.session(n=40), range(32), out=tmp_path / "ref", batch_size=8, progress=False)
    assert_same_runs(fixed, ref, same_batches=True)
