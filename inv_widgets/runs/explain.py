"""``explain_dataset``: explain many images into a stored, resumable run, in one process or on Dask."""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path

import numpy as np

from ..engine.recipes import get_recipe
from ..engine.runtime import reuse_freed_memory
from .pipeline import WARD_BACKENDS
from .pipeline import build_session, compute_shard, describe, load_shard, shard_meta
from .run import Run
from .store import VERSION, FORMAT, RunStore

__all__ = ["explain_dataset"]

# what must match for a rerun to continue a run (the rest of run.json describes the model and data)
_SAME = ("model", "layers", "recipe", "k", "target", "indices")


def _is_session(obj) -> bool:
    from ..session import Session

    return isinstance(obj, Session)


def _check_int(name, value, lo=1, none_ok=False):
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}{' or None' if none_ok else ''}, got {value!r}")
    return int(value)


def _target_spec(target, classes):
    if target is None or target == "predicted":
        return None
    if target == "label":
        return "label"
    if isinstance(target, str):
        if target not in classes:
            raise ValueError(f"target {target!r} is neither 'predicted', 'label' nor a class name; classes are "
                             f"{classes[:20]}" + (" ..." if len(classes) > 20 else ""))
        return classes.index(target)
    t = _check_int("target", target, lo=0)
    if t >= len(classes):
        raise ValueError(f"target class {t} is outside the {len(classes)} classes (0..{len(classes) - 1})")
    return t


def _indices(indices, n: int) -> list[int]:
    if indices is None:
        return list(range(n))
    if isinstance(indices, (int, np.integer)):
        raise TypeError("indices must be a sequence of image indices (e.g. range(100)), not a single int")
    out = []
    for i in indices:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"indices must be image indices (int), got {i!r}")
        if not -n <= int(i) < n:
            raise IndexError(f"image index {int(i)} out of range: the session has {n} images")
        out.append(int(i) % n)
    if len(set(out)) != len(out):
        seen, dup = set(), None
        for i in out:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"indices has image {dup} more than once; give each image once")
    if not out:
        raise ValueError("indices is empty: nothing to explain")
    return out


def _open_or_create(store: RunStore, want: dict) -> dict:
    if store.exists():
        meta = store.read_meta()
        diff = [key for key in _SAME if meta.get(key) != want.get(key)]
        if diff:
            detail = "; ".join(f"{key}: stored {_short(meta.get(key))}, asked {_short(want.get(key))}" for key in diff)
            raise ValueError(f"{store.root} holds a run made with other settings ({detail}). Rerun with the same "
                             "settings to finish it, read it with inv.Run.open(path), or choose another out=")
        return meta
    if store.root.exists() and any(p.name not in (".lock",) for p in store.root.iterdir()):
        raise FileExistsError(f"{store.root} exists and is not an INV run (no run.json); choose a new or empty "
                              "folder for out=")
    store.write_meta(want)
    return want


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def explain_dataset(session, indices=None, *, out, batch_size: int = 32, layers=None, recipe: str | None = None,
                    k: int | None = None, target=None, client=None, progress: bool = True,
                    ward: str = "auto") -> Run:
    """Explain many images into a stored run on disk; returns the :class:`Run`.

    Parameters
    ----------
    session : Session or callable
        The session whose images are explained, or a *factory*: a picklable callable without arguments
        that returns one (``functools.partial(my_loader, path)``). With ``client``, a factory lets each
        Dask worker build its own model once; a Session is shipped to each worker once, whole.
    indices : sequence of int, optional
        Image indices of the session (default: all).
    out : path
        The run's directory (created if missing). Rerunning the same call continues an interrupted run
        and skips the finished images; other settings for an existing run are refused.
    batch_size : int
        Images per forward/backward pass; a new run also commits its images in shards of this size.
    layers, recipe, k :
        Layers (default: the session's), clustering recipe (default: the session's) and cut (None: the
        suggested cut of each layer; an int: ``cut(k=k)``).
    target : None, "label", int or class name
        Class to explain: None or "predicted" (each image's predicted class), "label" (its ground-truth
        class where the dataset gives one, else the predicted), or one class for every image.
    client : dask.distributed.Client, optional
        Spread the shards over the cluster's workers; each worker writes into ``out``, which must be on a
        file system every worker sees.
    progress : bool
        A progress bar (tqdm: notebook or terminal) with images per second.
    ward : {"auto", "scipy", "torch"}
        How the ``fast`` recipe builds its dendrograms: scipy on the CPU, or the batched torch kernel on
        the model's device ("auto": torch on a CUDA device, scipy otherwise).
    """
    if out is None:
        raise TypeError("explain_dataset needs out=, the folder where the run is stored")
    batch_size = _check_int("batch_size", batch_size)
    k = _check_int("k", k, none_ok=True)
    if ward not in WARD_BACKENDS:
        raise ValueError(f"ward must be one of {WARD_BACKENDS}, got {ward!r}")
    if not _is_session(session) and not callable(session):
        raise TypeError(f"session must be an inv_widgets.Session or a factory (a callable returning one), "
                        f"got {type(session).__name__}")
    store = RunStore(Path(os.fspath(out)).expanduser().resolve())
    if client is None:
        if not _is_session(session):
            session = build_session(session)
        idx = _indices(indices, len(session))
        desc = describe(session, idx[0], layers)
    else:
        from .workers import SessionSpec, describe_task, length_task, register_session

        factory = session
        if _is_session(session):
            n_params = sum(p.numel() * p.element_size() for p in session.model.parameters())
            if n_params > 100 * 2**20:
                warnings.warn(f"the model ({n_params / 2**20:.0f} MB) is sent whole to every Dask worker; pass a "
                              "factory that loads it where it runs instead", stacklevel=2)
            factory = SessionSpec(session)
        name = register_session(client, factory)
        idx = _indices(indices, client.submit(length_task, name, pure=False).result())
        desc = client.submit(describe_task, name, idx[0], layers, pure=False).result()
    recipe = recipe or desc.pop("session_recipe")
    desc.pop("session_recipe", None)
    recipe = get_recipe(recipe).name  # the registry checks the name
    if ward == "torch" and recipe != "fast":
        raise ValueError(f"ward='torch' builds the 'fast' recipe's dendrograms, not {recipe!r}")
    want = {
        "format": FORMAT, "version": VERSION, **desc, "recipe": recipe, "k": k,
        "target": _target_spec(target, desc["classes"]), "indices": idx, "shard_size": batch_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    with store.lock():
        meta = _open_or_create(store, want)
        store.clean_temporary()
        size = int(meta["shard_size"])
        n = len(meta["indices"])
        shards = range((n + size - 1) // size)
        done = store.committed()
        todo = [s for s in shards if s not in done]
        finished = sum(min(size, n - s * size) for s in done)
        bar = _bar(n, finished, progress)
        try:
            if client is None:
                _run_here(session, store, meta, todo, batch_size, ward, bar)
            else:
                _run_on_cluster(client, name, store, meta, todo, batch_size, ward, bar)
        finally:
            bar.close()
            store.clean_temporary()
        missing = [sh for sh in shards if not store.is_committed(sh)]
        if missing:
            raise RuntimeError(f"{len(missing)} shards of the run are not in {store.root} although every task "
                               "finished: the workers wrote them where this machine cannot see them. out= must be "
                               "a file system shared by the client and every worker, at the same path.")
    return Run(store.root)


def _run_here(session, store, meta, todo, batch_size, ward, bar) -> None:
    """Shard after shard in this process. The model's pass uses every core; the clustering after it runs
    on one thread, so meanwhile the other cores write the shard computed before and read the next one (one
    writer and one reader thread, :class:`_SideWork`). At most three shards are in memory: the one being
    read, the one being computed, the one being written. A shard computed when the run is interrupted
    (Ctrl-C) is still written: the rerun resumes after it."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [s for s in todo if not store.is_committed(s)]
    if not todo:
        return
    with reuse_freed_memory() as memory, ThreadPoolExecutor(1, thread_name_prefix="inv-run-reader") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="inv-run-writer") as writer:
        side = _SideWork(session, store, meta, todo, reader, writer, bar)
        try:
            for n, s in enumerate(todo):
                loaded = side.loaded()
                result = compute_shard(session, meta, s, batch_size=batch_size, ward=ward, loaded=loaded,
                                       after_pass=lambda n=n: side.start(n))
                side.start(n)  # (a shard without batches)
                del loaded
                side.computed = (s, *result)
                del result
                memory.step()  # a trim every 16 shards: a long run's memory does not creep
        finally:
            side.write_computed()
            side.wait_write()


class _SideWork:
    """The reading and writing around the main thread's computing, started when a shard's model pass ends."""

    def __init__(self, session, store, meta, todo, reader, writer, bar):
        self.session, self.store, self.meta, self.todo = session, store, meta, todo
        self.reader, self.writer, self.bar = reader, writer, bar
        self.next = reader.submit(load_shard, session, meta, todo[0])
        self.started = -1  # the last shard (position in todo) whose side work was started
        self.computed = None  # (shard, maps, images, arrays) computed, not yet handed to the writer
        self.writing = None  # (future, images) of the write in progress

    def loaded(self) -> dict:
        return self.next.result()

    def start(self, n: int) -> None:
        """Once per shard: read the next shard, write the one computed before."""
        if self.started == n:
            return
        self.started = n
        if n + 1 < len(self.todo):
            self.next = self.reader.submit(load_shard, self.session, self.meta, self.todo[n + 1])
        self.write_computed()

    def write_computed(self) -> None:
        if self.computed is None:
            return
        self.wait_write()  # one write at a time: a slow disk holds the loop back, not memory
        self.writing = (self.writer.submit(self.store.write_shard, *self.computed), len(self.computed[2]))
        self.computed = None

    def wait_write(self) -> None:
        if self.writing is not None:
            future, images = self.writing
            self.writing = None
            future.result()
            self.bar.update(images)


def _bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="explaining", disable=not enabled, smoothing=0.1)


def _run_on_cluster(client, name, store, meta, todo, batch_size, ward, bar) -> None:
    import uuid

    from distributed import as_completed

    from .workers import shard_task

    token = uuid.uuid4().hex[:8]
    root = str(store.root)
    futures = [client.submit(shard_task, name, root, shard_meta(meta, s), s, batch_size, ward,
                             key=f"inv-shard-{s:06d}-{token}") for s in todo]
    failed = []
    try:
        for fut in as_completed(futures):
            if fut.status == "finished":
                bar.update(fut.result()["images"])
            else:
                failed.append((fut.key, fut.exception()))
            fut.release()
    except BaseException:
        client.cancel(futures)
        raise
    if failed:
        key, exc = failed[0]
        n_done = sum(1 for _ in store.committed())
        raise RuntimeError(f"{len(failed)} of {len(todo)} shards failed (first: {key}: {type(exc).__name__}: {exc}); "
                           f"{n_done} shards are stored in {store.root}. Run the same call again to finish the rest.")
