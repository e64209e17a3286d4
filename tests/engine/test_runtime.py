"""The shared runtime helpers (engine/runtime.py): eval_mode, limited_threads, LRU."""

import os
import platform
import sys
import threading

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


def test_limited_threads_in_another_thread_leaves_this_one_alone():
    """torch's OpenMP thread count is each thread's own: a block in a worker limits and restores the worker,
    and this thread keeps, gets and gets back its own setting, whatever order the blocks end in."""
    from inv_widgets.engine import runtime

    if not runtime._threads_are_per_thread():  # pragma: no cover - torch built with its native thread pool
        pytest.skip("this torch has a process-wide thread pool: see the test with a simulated one below")
    before = torch.get_num_threads()
    inside = threading.Event()
    release = threading.Event()
    seen = {}

    def worker():
        seen["worker before"] = torch.get_num_threads()
        with limited_threads(1):
            seen["worker"] = torch.get_num_threads()
            inside.set()
            release.wait(5)
        seen["worker after"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    assert torch.get_num_threads() == before  # the worker's block did not limit this thread
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        release.set()
        t.join()  # the worker's block ends inside this one
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert seen["worker"] == 1 and seen["worker after"] == seen["worker before"]


def test_limited_threads_with_a_process_wide_pool_restores_once_at_the_end(monkeypatch):
    """With a process-wide thread pool (torch's native backend), concurrent blocks in several threads agree on
    the smallest active limit and the caller's setting comes back once, when the last block ends."""
    from inv_widgets.engine import runtime

    pool = {"threads": 4}
    monkeypatch.setattr(runtime, "_per_thread", False)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: pool["threads"])
    monkeypatch.setattr(runtime.torch, "set_num_threads", lambda n: pool.__setitem__("threads", n))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 8)
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
        assert pool["threads"] == 1
    assert pool["threads"] == 1  # the worker's block still runs
    release.set()
    t.join()
    assert pool["threads"] == 4


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


_REUSE = """
import json, os
import numpy as np
from inv_widgets.engine.runtime import reuse_freed_memory

def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def loop(times=4):  # allocate, fill and free a 64 MB buffer: above every mmap threshold glibc picks itself
    for _ in range(times):
        np.ones(16 << 20, np.float32)

before = resident_mb()
loop()
after_loop = resident_mb()
with reuse_freed_memory() as active:
    with reuse_freed_memory() as nested:  # nested blocks share the setting
        pass
    loop()
    held = resident_mb()
print(json.dumps({"active": bool(active) and bool(nested), "before": before, "after_loop": after_loop, "held": held,
                  "after": resident_mb()}))
"""


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc",
    reason="reuse_freed_memory works through glibc's mallopt; with another C library it does "
    "nothing and says so (tested below with the switch off)",
)
@pytest.mark.slow
def test_reuse_freed_memory_keeps_one_buffer_for_the_loop_and_gives_it_back():
    """By default a 64 MB buffer goes back to the kernel when freed (and comes back zero-filled, page by page,
    the next time); inside the block it stays in the process and the loop reuses it (one buffer held, not
    four); when the block ends it is given back. In a fresh process: the heap left by other tests would
    decide what an allocation reuses."""
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "INV_WIDGETS_REUSE_MEMORY"}
    out = subprocess.run([sys.executable, "-c", _REUSE], capture_output=True, text=True, env=env, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["active"]
    assert got["after_loop"] - got["before"] < 16  # glibc's default: unmapped at once
    assert 48 < got["held"] - got["before"] < 100  # kept and reused: one buffer's memory
    assert got["after"] - got["before"] < 16  # given back when the block ends


def test_reuse_freed_memory_can_be_turned_off(monkeypatch):
    from inv_widgets.engine.runtime import reuse_freed_memory

    monkeypatch.setenv("INV_WIDGETS_REUSE_MEMORY", "0")
    with reuse_freed_memory() as active:
        assert not active
