"""The shared runtime helpers (engine/runtime.py): eval_mode, limited_threads, LRU."""
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


def _faults_of_big_allocations(times: int = 4) -> int:
    """Minor page faults of allocating, touching and freeing a 64 MB buffer ``times`` times (after one)."""
    import resource

    torch.empty(16 << 20).fill_(1.0)  # 64 MB: above every mmap threshold glibc picks by itself
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        torch.empty(16 << 20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_reuse_freed_memory_stops_the_page_faults_of_a_loop_and_ends_with_the_defaults():
    from inv_widgets.engine.runtime import reuse_freed_memory

    pages = (64 << 20) // 4096
    outside = _faults_of_big_allocations()
    with reuse_freed_memory() as active:
        assert active
        with reuse_freed_memory() as nested:  # nested blocks share the setting
            assert nested
        inside = _faults_of_big_allocations()
    after = _faults_of_big_allocations()
    assert outside > 3 * pages  # each 64 MB buffer is mapped afresh and faulted in page by page
    assert inside < pages // 4  # the same heap memory, reused
    assert after > 3 * pages  # back to glibc's behaviour when the block ends


def test_reuse_freed_memory_can_be_turned_off(monkeypatch):
    from inv_widgets.engine.runtime import reuse_freed_memory

    monkeypatch.setenv("INV_WIDGETS_REUSE_MEMORY", "0")
    with reuse_freed_memory() as active:
        assert not active
