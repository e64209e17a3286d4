"""``explain_dataset``: explain many images into a stored, resumable run, in one process or on Dask."""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path

import numpy as np

from ..engine.recipes import get_recipe
from ..engine.request import TARGET_MODES, check_batch_size, check_indices, check_k, check_target
from ..engine.runtime import reuse_freed_memory
from .pipeline import WARD_BACKENDS, build_session, compute_shard, describe, image_ids, load_shard, shard_meta
from .run import Run
from .store import FORMAT, VERSION, RunDamagedError, RunStore

__all__ = ["explain_dataset"]

# what must match for a rerun to continue a run: every setting that changes what is stored (a key that a run
# made by an older inv-widgets did not record is not compared)
_SAME = (
    "model",
    "layers",
    "recipe",
    "k",
    "target",
    "indices",
    "n_images",
    "weighting",
    "input_size",
    "classes",
    "output",
)
#: images whose ids a resumed run compares with the session's, by default (verify="sample"): the first of every
#: committed shard and up to this many more, spread over the run
SAMPLE_IDS = 32
VERIFY = ("sample", "all", "none")


def _is_session(obj) -> bool:
    from ..session import Session

    return isinstance(obj, Session)


def _open_or_create(store: RunStore, want: dict) -> dict:
    """The run's description: the stored one when ``out`` holds a run with the same settings, else a new run.
    Call with the lock held: what an interrupted creation left (temporary files) is removed first, so a kill at
    any moment of a run's creation never makes the folder look like something else."""
    store.clean_temporary()
    if store.exists():
        meta = store.read_meta()
        diff = [key for key in _SAME if key in meta and meta.get(key) != want.get(key)]
        if diff:
            detail = "; ".join(_difference(key, meta.get(key), want.get(key)) for key in diff)
            raise ValueError(
                f"{store.root} holds a run made with other settings ({detail}). Rerun with the same "
                "settings to finish it, read it with inv.Run.open(path), or choose another out="
            )
        return meta
    left = (
        [
            p.name
            for p in store.root.iterdir()
            if p.name != ".lock" and not (p.name == "shards" and p.is_dir() and not any(p.iterdir()))
        ]
        if store.root.exists()
        else []
    )
    if left:
        raise FileExistsError(
            f"{store.root} exists and is not an INV run (no run.json; it holds "
            f"{', '.join(sorted(left)[:5])}); choose a new or empty folder for out="
        )
    store.write_meta(want)
    return want


def _difference(key: str, stored, asked) -> str:
    """One differing setting, both values in full; for lists also where they first differ."""
    text = f"{key}: stored {stored!r}, asked {asked!r}"
    if isinstance(stored, list) and isinstance(asked, list):
        at = next((i for i, (a, b) in enumerate(zip(stored, asked)) if a != b), min(len(stored), len(asked)))
        text += (
            f" (first difference at item {at}: stored {stored[at] if at < len(stored) else 'nothing'!r}, "
            f"asked {asked[at] if at < len(asked) else 'nothing'!r})"
        )
    return text


def _check_shards(store: RunStore, meta: dict, repair: bool) -> tuple[dict, set]:
    """The committed shards, and those to redo: damaged ones (refused unless ``repair``) and those holding only
    some of their images (a Dask retry stored the images that did not fail)."""
    done = store.committed()
    damaged = {s: why for s, p in done.items() if (why := store.check_shard(s, meta, p)) is not None}
    if damaged and not repair:
        raise RunDamagedError(store.root, damaged)
    partial = {s for s in done if s not in damaged and store.shard_images(s) < store.expected_images(s, meta)}
    return done, set(damaged) | partial


def _verify_ids(store: RunStore, meta: dict, shards: dict, verify: str, ids_of) -> None:
    """Compare stored image ids with the session's (``verify``: "sample", "all" or "none"); a ValueError naming
    the first images that differ when the session's images are not the run's any more."""
    import pandas as pd

    if verify == "none" or not shards:
        return
    stored = pd.concat(
        [pd.read_parquet(p / "images.parquet", columns=["position", "image", "image_id"]) for p in shards.values()],
        ignore_index=True,
    ).sort_values("position", ignore_index=True)
    if verify == "sample" and len(stored) > SAMPLE_IDS:
        firsts = stored.groupby(stored["position"] // int(meta["shard_size"]))["position"].idxmin().tolist()
        spread = np.linspace(0, len(stored) - 1, SAMPLE_IDS).round().astype(int).tolist()
        stored = stored.loc[sorted(set(firsts) | set(spread))]
    now = ids_of([int(i) for i in stored["image"]])
    wrong = [
        (int(i), int(p), a, b)
        for i, p, a, b in zip(stored["image"], stored["position"], stored["image_id"], now)
        if a != b
    ]
    if wrong:
        i, p, a, b = wrong[0]
        more = (
            f"; so do images {', '.join(str(w[0]) for w in wrong[1:6])}" + (" ..." if len(wrong) > 6 else "")
            if len(wrong) > 1
            else ""
        )
        raise ValueError(
            f"{store.root} holds other images than this session's: image {i} (run position {p}) was stored with id "
            f"{a}, the session's image {i} has id {b}{more} ({len(wrong)} of the {len(stored)} images checked "
            f"differ). The dataset or its transform changed since the run began (an image inserted, removed or "
            "moved, other pictures): resuming would mix two datasets. Use the data the run was made from, or "
            "choose another out="
        )


def explain_dataset(
    session,
    indices=None,
    *,
    out,
    batch_size: int = 32,
    layers=None,
    recipe: str | None = None,
    k: int | None = None,
    target=None,
    client=None,
    progress: bool = True,
    ward: str = "auto",
    verify: str = "sample",
    repair: bool = False,
) -> Run:
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
        and skips the finished images; other settings for an existing run are refused, naming each setting
        with both values (the model, layers, recipe, k, target, indices, the session's number of images,
        weighting, input size, class names and output).
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
    verify : {"sample", "all", "none"}
        When resuming, compare the ids of stored images with the session's images at the same indices:
        "sample" (default) the first image of every committed shard and 32 more spread over the run, "all"
        every stored image, "none" no check. A difference (the dataset changed: an image inserted, removed or
        reordered) is refused, naming the first images that differ.
    repair : bool
        Redo committed shards that are damaged (a truncated or zeroed file, an empty shard folder, a shard of
        another run); without it they are refused with :class:`~inv_widgets.runs.store.RunDamagedError`, which
        names them. Shards that hold only some of their images (a Dask retry stored the images that did not
        fail) are redone whole by every rerun.

    Failures on a Dask cluster are reported once the other shards are done, every failed shard with its
    images. A failed shard is retried alone (one that only ran beside an image that killed their worker goes
    through), then one image at a time, so that an image that fails (or kills its worker) leaves out only
    itself: its shard is stored with the other images, and the next run of the same call redoes it whole. The
    report names the shards whose images fail on their own first, in the order they failed.
    """
    if out is None:
        raise TypeError("explain_dataset needs out=, the folder where the run is stored")
    batch_size = check_batch_size(batch_size)
    k = check_k(k)
    if ward not in WARD_BACKENDS:
        raise ValueError(f"ward must be one of {WARD_BACKENDS}, got {ward!r}")
    if verify not in VERIFY:
        raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
    if not _is_session(session) and not callable(session):
        raise TypeError(
            f"session must be an inv_widgets.Session or a factory (a callable returning one), "
            f"got {type(session).__name__}"
        )
    store = RunStore(Path(os.fspath(out)).expanduser().resolve())
    if client is None:
        if not _is_session(session):
            session = build_session(session)
        idx = check_indices(indices, len(session), unique=True)
        desc = describe(session, idx[0], layers)
    else:
        from .workers import SessionSpec, describe_task, ids_task, length_task, register_session

        factory = session
        if _is_session(session):
            n_params = sum(p.numel() * p.element_size() for p in session.model.parameters())
            if n_params > 100 * 2**20:
                warnings.warn(
                    f"the model ({n_params / 2**20:.0f} MB) is sent whole to every Dask worker; pass a "
                    "factory that loads it where it runs instead",
                    stacklevel=2,
                )
            factory = SessionSpec(session)
        name = register_session(client, factory)
        idx = check_indices(indices, client.submit(length_task, name, pure=False).result(), unique=True)
        desc = client.submit(describe_task, name, idx[0], layers, pure=False).result()
    recipe = recipe or desc.pop("session_recipe")
    desc.pop("session_recipe", None)
    recipe = get_recipe(recipe).name  # the registry checks the name
    if ward == "torch" and recipe != "fast":
        raise ValueError(f"ward='torch' builds the 'fast' recipe's dendrograms, not {recipe!r}")
    want = {
        "format": FORMAT,
        "version": VERSION,
        **desc,
        "recipe": recipe,
        "k": k,
        "target": check_target(target, desc["classes"], modes=TARGET_MODES),
        "indices": idx,
        "shard_size": batch_size,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if client is None:

        def ids_of(ix):
            return image_ids(session, ix)
    else:

        def ids_of(ix):
            return client.submit(ids_task, name, ix, pure=False).result()

    with store.lock():
        meta = _open_or_create(store, want)
        size = int(meta["shard_size"])
        n = len(meta["indices"])
        shards = range((n + size - 1) // size)
        done, redo = _check_shards(store, meta, repair)
        _verify_ids(store, meta, {s: p for s, p in done.items() if s not in redo}, verify, ids_of)
        todo = [s for s in shards if s not in done or s in redo]
        finished = sum(min(size, n - s * size) for s in done if s not in redo)
        bar = _bar(n, finished, progress)
        try:
            if client is None:
                _run_here(session, store, meta, todo, batch_size, ward, bar, redo)
            else:
                _run_on_cluster(client, name, store, meta, todo, batch_size, ward, bar, redo)
        finally:
            bar.close()
            store.clean_temporary()
        missing = [sh for sh in shards if not store.is_committed(sh)]
        if missing:
            raise RuntimeError(
                f"{len(missing)} shards of the run are not in {store.root} although every task "
                "finished: the workers wrote them where this machine cannot see them. out= must be "
                "a file system shared by the client and every worker, at the same path."
            )
    return Run(store.root)


def _images_of(meta: dict, s: int) -> str:
    """Shard ``s``'s images as a person reads them: run positions and the session's image indices."""
    size = int(meta["shard_size"])
    ix = meta["indices"][s * size : (s + 1) * size]
    lo, hi = s * size, s * size + len(ix) - 1
    same = ix == list(range(ix[0], ix[0] + len(ix)))
    images = f"{ix[0]}..{ix[-1]}" if same else ", ".join(map(str, ix[:8])) + (" ..." if len(ix) > 8 else "")
    return f"run positions {lo}..{hi}, images {images}"


def _run_here(session, store, meta, todo, batch_size, ward, bar, redo=frozenset()) -> None:
    """Shard after shard in this process. The model's pass uses every core; the clustering after it runs
    on one thread, so meanwhile the other cores write the shard computed before and read the next one (one
    writer and one reader thread, :class:`_SideWork`). At most three shards are in memory: the one being
    read, the one being computed, the one being written. A shard computed when the run is interrupted
    (Ctrl-C) is still written: the rerun resumes after it."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [s for s in todo if s in redo or not store.is_committed(s)]
    if not todo:
        return
    with (
        reuse_freed_memory() as memory,
        ThreadPoolExecutor(1, thread_name_prefix="inv-run-reader") as reader,
        ThreadPoolExecutor(1, thread_name_prefix="inv-run-writer") as writer,
    ):
        side = _SideWork(session, store, meta, todo, reader, writer, bar, redo)
        try:
            for n, s in enumerate(todo):
                try:
                    loaded = side.loaded()
                    result = compute_shard(
                        session,
                        meta,
                        s,
                        batch_size=batch_size,
                        ward=ward,
                        loaded=loaded,
                        after_pass=lambda n=n: side.start(n),
                    )
                except Exception as e:
                    e.add_note(
                        f"while explaining shard {s} of the run in {store.root} ({_images_of(meta, s)}); "
                        "the shards before it are stored: run the same call again to go on"
                    )
                    raise
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

    def __init__(self, session, store, meta, todo, reader, writer, bar, redo=frozenset()):
        self.session, self.store, self.meta, self.todo = session, store, meta, todo
        self.reader, self.writer, self.bar, self.redo = reader, writer, bar, redo
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
        replace = self.computed[0] in self.redo
        self.writing = (
            self.writer.submit(self.store.write_shard, *self.computed, replace=replace),
            len(self.computed[2]),
        )
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


def _run_on_cluster(client, name, store, meta, todo, batch_size, ward, bar, redo=frozenset()) -> None:
    """Every shard of ``todo`` as a task; then the failed ones again, one image at a time (see explain_dataset)."""
    import uuid

    from distributed import as_completed

    from .workers import shard_task

    token = uuid.uuid4().hex[:8]
    root = str(store.root)
    futures = {
        client.submit(
            shard_task,
            name,
            root,
            shard_meta(meta, s),
            s,
            batch_size,
            ward,
            None,
            True,
            s in redo,
            key=f"inv-shard-{s:06d}-{token}",
        ): s
        for s in todo
    }
    failed = []  # (shard, exception), the first failure first
    try:
        for fut in as_completed(list(futures)):
            if fut.status == "finished":
                bar.update(fut.result()["images"])
            else:
                failed.append((futures[fut], fut.exception()))
            fut.release()
    except BaseException:
        client.cancel(list(futures))
        raise
    if failed:
        _retry_failed(client, name, store, meta, failed, batch_size, ward, bar, len(todo), token)


def _retry_failed(client, name, store, meta, failed, batch_size, ward, bar, n_todo, token) -> None:
    """Retry the failed shards whole, one at a time (a shard that failed only because it ran beside an image that
    killed their worker goes through); each that fails again is retried one image at a time, one task at a time,
    and stored with the images that did not fail. Raise a RuntimeError naming every failed shard with its images:
    first those whose images fail on their own (in the order they failed), then those that went through."""
    from .workers import shard_task

    root = str(store.root)

    def run(s, only, write, tag):
        fut = client.submit(
            shard_task,
            name,
            root,
            shard_meta(meta, s),
            s,
            batch_size,
            ward,
            only,
            write,
            True,
            pure=False,
            key=f"inv-{tag}-{token}",
        )
        error = fut.exception()
        result = fut.result() if error is None else None
        fut.release()
        return error, result

    guilty, innocent = [], []
    for s, first in failed:
        error, done = run(s, None, True, f"retry-{s:06d}")
        if error is None:
            innocent.append((s, first))
            bar.update(done["images"])
            continue
        bad, good = [], []
        for o in range(len(shard_meta(meta, s)["shard_indices"])):
            error, _ = run(s, [o], False, f"image-{s:06d}-{o:04d}")
            if error is None:
                good.append(o)
            else:
                bad.append((o, error))
        stored = 0
        if good:
            error, done = run(s, good, True, f"rest-{s:06d}")
            if error is None:
                stored = done["images"]
                bar.update(stored)
        guilty.append((s, first, bad, stored))
    if not guilty:
        return  # every failed shard went through on its own: workers lost for another reason
    indices, size = meta["indices"], int(meta["shard_size"])
    lines = []
    for s, first, bad, stored in guilty:
        images = "; ".join(
            f"image {indices[s * size + o]} (run position {s * size + o}): {type(e).__name__}: {e}" for o, e in bad
        )
        lines.append(
            f"shard {s} ({_images_of(meta, s)}) failed ({type(first).__name__}); retried one image at a "
            f"time, {len(bad)} image{'s' if len(bad) != 1 else ''} failed on {'their' if len(bad) != 1 else 'its'}"
            f" own ({images}); the {stored} other images of shard {s} are stored"
        )
    also = ""
    if innocent:
        also = (
            f" {len(innocent)} more shard{'s' if len(innocent) != 1 else ''} failed beside "
            f"{'them' if len(guilty) != 1 else 'it'} and went through when retried alone: "
            + "; ".join(f"shard {s} ({_images_of(meta, s)}): {type(e).__name__}" for s, e in innocent)
            + "."
        )
    missing = sum(len(b) for _, _, b, _ in guilty)
    raise RuntimeError(
        f"{len(guilty) + len(innocent)} of {n_todo} shards failed. "
        + ". ".join(lines)
        + "."
        + also
        + f" The run in {store.root} lacks only {missing} image{'s' if missing != 1 else ''} "
        "(Run.open(path).missing()): fix the cause and run the same call again, which redoes "
        f"{'those shards' if len(guilty) != 1 else 'that shard'} whole (or leave the image out of indices)."
    )
