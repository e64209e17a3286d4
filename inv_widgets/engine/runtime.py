"""Small runtime helpers every layer of the package shares: one of each.

- :func:`eval_mode`: run a model in eval mode and give every module its own train flag back.
- :func:`limited_threads`: cap torch's intra-op threads for a block, restore the caller's setting.
- :class:`LRU`: a bounded, thread-safe least-recently-used cache with ``get(key, make)``.
- :func:`return_freed_memory`: hand memory freed by emptied caches back to the operating system.
- :func:`reuse_freed_memory`: the opposite for a long loop: keep freed memory in the process for the next batch.
- :func:`parallel_map`: independent pieces of CPU work (a layer each) on a few threads, one intra-op thread each.

Pure Python and torch; nothing here knows about sessions, labels or widgets.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = [
    "eval_mode",
    "limited_threads",
    "LRU",
    "return_freed_memory",
    "reuse_freed_memory",
    "MemoryReuse",
    "parallel_map",
]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then each module's own ``training`` flag back as it was.

    ``model.train(was)`` would reset every submodule to one flag; a model with, say, a frozen BatchNorm in
    eval mode inside a training model keeps its mix here, also after an exception.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


_threads_lock = threading.Lock()
_thread_limits: list[int] = []  # global backends: the limits of the blocks running now, in any thread
_threads_before = 1
_per_thread: bool | None = None


def _threads_are_per_thread() -> bool:
    """Whether torch's intra-op thread count belongs to the calling thread (the OpenMP backend, which
    torch's CPU wheels use: ``set_num_threads`` in one thread leaves the others as they were) rather than
    to the process (the native thread pool)."""
    global _per_thread
    if _per_thread is None:
        _per_thread = "parallel backend: OpenMP" in torch.__config__.parallel_info()
    return _per_thread


@contextmanager
def limited_threads(limit: int = 1) -> Iterator[None]:
    """Run torch with at most ``limit`` intra-op threads (and never more than the caller had).

    Nested blocks agree on the smallest limit, and the caller's setting comes back when its block ends.
    With torch's OpenMP backend the thread count is each thread's own: a block limits and restores the
    thread it runs in and leaves other threads alone. With a process-wide thread pool, concurrent blocks
    in several threads agree on the smallest active limit and the setting comes back once, when the last
    block ends. The t-SNE loop runs on one thread (many small ops: extra threads only add synchronisation
    and make results depend on the thread count); the Sentence-BERT embedding on a few.
    """
    limit = max(1, int(limit))
    if _threads_are_per_thread():
        before = torch.get_num_threads()
        wanted = max(1, min(limit, before, os.cpu_count() or 1))
        if wanted != before:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
        return
    with _counted_threads(limit):
        yield


@contextmanager
def _counted_threads(limit: int) -> Iterator[None]:
    global _threads_before
    with _threads_lock:
        if not _thread_limits:
            _threads_before = torch.get_num_threads()
        _thread_limits.append(limit)
        wanted = max(1, min(min(_thread_limits), _threads_before, os.cpu_count() or 1))
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
    try:
        yield
    finally:
        with _threads_lock:
            _thread_limits.remove(limit)
            wanted = _threads_before if not _thread_limits else max(1, min(min(_thread_limits), _threads_before))
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)


_MISSING = object()


class LRU:
    """A bounded least-recently-used cache, safe to share between threads.

    ``cache.get(key, make)`` returns the cached value or calls ``make()`` and keeps its result; the least
    recently used entry goes once more than ``maxsize`` are held. ``make`` runs outside the lock, so two
    threads may both build a missing value; the first one stored wins and both get it.
    """

    def __init__(self, maxsize: int):
        if int(maxsize) < 1:
            raise ValueError(f"an LRU cache holds at least one entry, got maxsize={maxsize}")
        self.maxsize = int(maxsize)
        self.dropped = 0  #: entries pushed out so far (the owner may reset it)
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any] | None = None, default: Any = None) -> Any:
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING:
                self._data.move_to_end(key)
                return value
        if make is None:
            return default
        value = make()
        return self.put(key, value)

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key`` (unless another thread stored one first) and return what is held."""
        with self._lock:
            held = self._data.get(key, _MISSING)
            if held is not _MISSING:
                self._data.move_to_end(key)
                return held
            self._data[key] = value
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
                self.dropped += 1
            return value

    def pop(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            return self._data.pop(key, default)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def keys(self) -> list:
        with self._lock:
            return list(self._data)

    def values(self) -> list:
        with self._lock:
            return list(self._data.values())

    def __repr__(self) -> str:
        return f"LRU({len(self)}/{self.maxsize})"


def return_freed_memory() -> bool:
    """Collect garbage, then ask the C allocator to give freed memory back to the operating system.

    Arrays and tensors dropped from a cache are freed, but glibc keeps much of that memory in its heap (an
    explanation is many medium-sized buffers), so the process's resident size stays where it was. On Linux
    with glibc this calls ``malloc_trim(0)`` (a few milliseconds) and returns True; elsewhere it only collects
    garbage and returns False.
    """
    import gc

    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_reuse_lock = threading.Lock()
_reuse_depth = 0
_GLIBC: list = []  # the C library, once looked up: [handle or None]


def _glibc():
    """glibc through ctypes, or None (not Linux, or another C library: musl has no libc.so.6 with these)."""
    if not _GLIBC:
        import ctypes
        import sys

        libc = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.mallopt  # noqa: B018 - both must be there
                libc.malloc_trim  # noqa: B018
            except (OSError, AttributeError):
                libc = None
        _GLIBC.append(libc)
    return _GLIBC[0]


class MemoryReuse:
    """What :func:`reuse_freed_memory` yields: true when it took effect; :meth:`step` once per batch or shard."""

    def __init__(self, libc, trim_every: int):
        self._libc, self._every, self._steps = libc, max(1, int(trim_every)), 0

    def __bool__(self) -> bool:
        return self._libc is not None

    def step(self) -> None:
        """Count one batch (or shard); every ``trim_every`` of them, give back what of the kept heap is free
        (``malloc_trim``: fragments that no later batch fits in would otherwise stay until the block ends)."""
        self._steps += 1
        if self._libc is not None and self._steps % self._every == 0:
            self._libc.malloc_trim(0)


@contextmanager
def reuse_freed_memory(trim_every: int = 16) -> Iterator[MemoryReuse]:
    """For the block, glibc keeps memory that is freed for the next allocation instead of unmapping it.

    A run over many batches allocates and frees the same few hundred MB per batch (feature maps, gradients,
    the autograd graph). By default glibc returns blocks of 32 MB and more to the kernel at once (``munmap``)
    and trims the top of its heap, so every batch page-faults its memory in again, zero-filled by the
    kernel: about 700,000 page faults per 256 demo images, a quarter of the model pass's time. Inside the
    block every block up to 1 GB comes from the heap and the heap is not trimmed, so a batch reuses the
    pages of the one before (resident memory stays at the largest batch's needs, as the run's flat-memory
    test checks); ``step()`` on what it yields, once per batch, trims every ``trim_every`` batches so that
    free fragments do not pile up over a long loop. On leaving, the thresholds are set to 32 MB and 64 MB,
    the ceiling glibc's own dynamic thresholds reach once a block of that size is freed, and
    ``malloc_trim(0)`` gives the heap back.

    What it yields is true when it took effect: only with glibc on Linux; nothing is changed elsewhere or
    when the environment variable ``INV_WIDGETS_REUSE_MEMORY=0`` is set (e.g. under jemalloc or tcmalloc).
    Nested and concurrent blocks share one setting, undone when the last one ends.
    """
    global _reuse_depth
    libc = None if os.environ.get("INV_WIDGETS_REUSE_MEMORY", "1") == "0" else _glibc()
    if libc is None:
        yield MemoryReuse(None, trim_every)
        return
    with _reuse_lock:
        if _reuse_depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
            libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
        _reuse_depth += 1
    try:
        yield MemoryReuse(libc, trim_every)
    finally:
        with _reuse_lock:
            _reuse_depth -= 1
            if _reuse_depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
                libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
                libc.malloc_trim(0)


_CPUS = os.cpu_count() or 1
_pools: dict = {}  # threads -> ThreadPoolExecutor, made on first use
_pools_lock = threading.Lock()
_in_pool = threading.local()


def parallel_map(
    fn: Callable[[Any], Any], items, *, threads: int | None = None, cost: Callable[[Any], float] | None = None
) -> list:
    """``[fn(item) for item in items]``, the items on up to ``threads`` threads, each running torch with one
    intra-op thread; the results in the items' order, the first exception raised as it is.

    For independent pieces of CPU work of a few milliseconds each (one layer's maps, Ward linkage and cut):
    torch's own intra-op threads split every small operation and wait for each other after each one, which
    costs more than it gains at these sizes (several times more on a busy machine), while whole pieces side by
    side keep every core busy. ``threads`` defaults to the caller's torch thread count (so a caller limited to
    one thread, or a machine with one core, runs the items in turn, here); ``cost`` orders the work, most costly
    first, so that the threads finish together. Called from one of its own threads, it runs the items in turn.
    What ``fn`` computes must not depend on the number of threads torch uses (results here are per item, each
    on one thread, whatever the caller's setting).
    """
    items = list(items)
    n = max(1, min(int(threads if threads is not None else torch.get_num_threads()), len(items), _CPUS))
    if n == 1 or getattr(_in_pool, "active", False):
        with limited_threads(1):
            return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with _pools_lock:
        pool = _pools.get(n)
        if pool is None:  # its threads start with the creator's thread count, which limited_threads restores
            pool = _pools[n] = ThreadPoolExecutor(
                n,
                thread_name_prefix="inv-widgets",
                initializer=torch.set_num_threads,
                initargs=(torch.get_num_threads(),),
            )
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost is not None else range(len(items))

    def run(item):
        _in_pool.active = True
        try:
            with limited_threads(1):
                return fn(item)
        finally:
            _in_pool.active = False

    futures = {i: pool.submit(run, items[i]) for i in order}
    return [futures[i].result() for i in range(len(items))]
