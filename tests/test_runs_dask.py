"""Stored runs on a Dask cluster: LocalCluster(n_workers=2, processes=True, threads_per_worker=1).

The workers build their sessions from a factory (a worker plugin), write shards straight into the run, and
give the same run as one process; a worker killed mid-run costs nothing but time: a rerun is complete,
without duplicates or gaps.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import distributed  # the runs extra, installed by dev: missing, it is a failure, not a skip
import pandas as pd
import pytest
from test_runs import assert_same_runs  # one comparison of two runs for both files

import inv_widgets as inv
from inv_widgets.runs.store import RunStore

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    # spawned workers import the package and the tests' factories from these paths
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS.parent), str(TESTS)] + ([old] if old else []))
    try:
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


def test_two_workers_give_the_single_process_run(client, tmp_path):
    factory = functools.partial(inv.demo.session, n=40)
    run = inv.explain_dataset(factory, range(32), out=tmp_path / "dask", batch_size=8, client=client, progress=False)
    assert run.complete and len(run) == 32
    # both workers took part, each with a session of its own
    workers = {
        w: s
        for w, s in client.run(
            lambda dask_worker: [
                p.session is not None for n, p in dask_worker.plugins.items() if n.startswith("inv-session-")
            ]
        ).items()
    }
    assert len(workers) == 2 and all(v == [True] for v in workers.values())
    ref = inv.explain_dataset(factory, range(32), out=tmp_path / "one", batch_size=8, progress=False)
    assert_same_runs(run, ref, same_batches=True)
    # a live Session (not a factory) is shipped to the workers once, in the plugin: the same run again
    again = inv.explain_dataset(
        factory(), range(8, 16), out=tmp_path / "live", batch_size=8, client=client, progress=False
    )
    pd.testing.assert_frame_equal(
        again.maps.drop(columns=["position", "shard"]).reset_index(drop=True),
        ref.maps[ref.maps["image"].between(8, 15)].drop(columns=["position", "shard"]).reset_index(drop=True),
    )


def test_a_worker_killed_mid_run_then_a_rerun_is_complete(client, tmp_path):
    from runs_helpers import slow_demo_session

    factory = functools.partial(slow_demo_session, n=40, delay=0.04)
    out = tmp_path / "killed"
    result: dict = {}

    def drive():
        try:
            result["run"] = inv.explain_dataset(factory, out=out, batch_size=4, client=client, progress=False)
        except Exception as e:  # the lost task may be retried elsewhere, or fail the call: both are fine
            result["error"] = e

    t = threading.Thread(target=drive)
    t.start()
    deadline = time.monotonic() + 120
    while len(RunStore(out).committed()) < 2 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.02)
    pids = client.run(os.getpid)
    committed_at_kill = len(RunStore(out).committed())
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=180)
    assert not t.is_alive()
    assert 2 <= committed_at_kill < 10, "the worker was killed after the run had finished: nothing was interrupted"
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker; its plugin builds a new session
    assert victim not in client.run(os.getpid).values()
    run = inv.explain_dataset(factory, out=out, batch_size=4, client=client, progress=False)
    assert run.complete and len(run) == 40
    imgs, maps = run.images, run.maps
    assert sorted(imgs["image"]) == list(range(40)) and imgs["image"].is_unique  # no gaps, no duplicates
    assert not maps.duplicated(["model", "image_id", "target", "layer", "members"]).any()
    assert sorted(p.name for p in (out / "shards").iterdir()) == [f"s{s:06d}" for s in range(10)]  # no leftovers
    ref = inv.explain_dataset(factory, out=tmp_path / "ref", batch_size=4, progress=False)
    assert_same_runs(run, ref, same_batches=True)
