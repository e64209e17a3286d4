"""The on-disk layout of a run and its commit protocol.

::

    out/
      run.json                 what was asked (model fingerprint, layers, recipe, k, target, image indices,
                               shard size, class names): written once, atomically, when the run is created
      .lock                    held (flock) by the one explain_dataset call writing the run
      shards/
        s000000/               images 0..S-1 of the run (S = shard size), committed as one directory:
          maps.parquet         one row per cluster map (MapKey fields, image, layer, rank, weight, size, ...)
          images.parquet       one row per image (index, id, label, prediction, target, probability)
          arrays.zarr.zip      a Zarr v3 group in one zip file: images (S, H, W, 3) uint8, logits (S, classes),
                               per layer l: maps/l (M_l, h, w) float16, gradcam/l (S, h, w) float16,
                               channel_weights/l (S, C) float32
        .tmp-s000003-<token>/  a shard being written (invisible to readers; removed on the next start)

**Commit protocol.** A writer (the driver or any Dask worker) builds a shard in a private temporary
directory, flushes its files to disk, and publishes it with one ``rename`` to ``shards/sNNNNNN``. POSIX
rename of a directory is atomic, and it fails when the target exists and is not empty, so:

- a shard is either absent or complete: an interrupted writer (Ctrl-C, SIGKILL, a lost Dask worker)
  leaves at most a ``.tmp-*`` directory, which no reader looks at and the next start removes;
- two writers of the same shard (a task retried while its first attempt still runs) cannot both commit:
  the first rename wins, the second finds the target and discards its copy, so no image is stored twice;
- the set of committed shard directories *is* the manifest of finished images: nothing else to keep in
  sync, and a rerun skips exactly those.

**Verification.** Every committed shard is checked when a run is resumed and when it is opened (cheaply:
nothing is decompressed): its three files are there (a shard folder without them is an interrupted copy),
the zip's central directory lists the group's arrays, the Parquet footers read, and its rows belong to this
run at this place (shard number, positions, image indices: a shard copied in from another run is caught).
A damaged shard is named with what is wrong (:class:`RunDamagedError`) and is redone by
``explain_dataset(..., repair=True)``. A shard that holds only some of its images (a Dask retry stored the
images that did not fail) is redone whole by the next run of the same call.

One shard is one file of arrays rather than a directory of chunk files: a run of 2,000 images at 32 per
shard is 63 zip files, not tens of thousands of chunk files, and the rename stays a single step. The run
directory must be on a POSIX file system that every writer sees (local disk, NFS, Lustre, GPFS); object
stores have no atomic rename and are not supported as ``out``.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "RunStore",
    "RunBusyError",
    "RunDamagedError",
    "FORMAT",
    "VERSION",
    "shard_name",
    "CHUNK_BYTES",
    "chunk_shape",
    "CUT_COLUMNS",
    "STORAGE_COLUMNS",
    "SHARD_FILES",
    "require_runs",
]

FORMAT = "inv-run"
VERSION = 1
_SHARD = re.compile(r"^s(\d{6,})$")
_TMP = ".tmp-"
#: The maps table's columns after the engine's MAP_COLUMNS: what a run keeps of each cut (the LayerCut's threshold
#: and its clusters before pruning), then where each map is stored.
CUT_COLUMNS = ["threshold", "k_cut"]
STORAGE_COLUMNS = ["position", "shard", "row"]
#: uncompressed bytes per Zarr chunk of a shard's arrays (``chunk_shape``)
CHUNK_BYTES = 1 << 20


#: the files of a committed shard
SHARD_FILES = ("maps.parquet", "images.parquet", "arrays.zarr.zip")


def require_runs() -> None:
    """ImportError naming the ``runs`` extra when the libraries a stored run is written with are missing (Zarr
    and its codecs, numcodecs, for the arrays; pyarrow for the Parquet tables): checked before any work."""
    missing = [m for m in ("zarr", "numcodecs", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"stored runs (explain_dataset, Run) need {', '.join(missing)}, which is not installed; "
            "install it with: pip install 'inv-widgets[runs]'"
        )


class RunBusyError(RuntimeError):
    """Another explain_dataset call is writing this run now."""


class RunDamagedError(ValueError):
    """Committed shards of a run that cannot be read (or do not belong to it); ``damaged`` maps each shard number
    to what is wrong. ``explain_dataset(..., repair=True)`` redoes them."""

    def __init__(self, root, damaged: dict[int, str]):
        self.root = Path(root)
        self.damaged = dict(sorted(damaged.items()))
        shown = "; ".join(f"{shard_name(s)}: {why}" for s, why in list(self.damaged.items())[:5])
        more = f"; and {len(self.damaged) - 5} more" if len(self.damaged) > 5 else ""
        super().__init__(
            f"{len(self.damaged)} committed shard{'s' if len(self.damaged) != 1 else ''} of the run in {self.root} "
            f"cannot be used ({shown}{more}). Repair: run the same explain_dataset call with repair=True, which "
            "redoes these shards (the others are kept)"
        )


def shard_name(s: int) -> str:
    return f"s{int(s):06d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class RunStore:
    """Paths, metadata and shard commits of one run directory (no model, no compute)."""

    def __init__(self, root):
        require_runs()
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.meta_path = self.root / "run.json"

    # ---- metadata ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.meta_path.is_file()

    def read_meta(self) -> dict:
        try:
            meta = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.root} is not an INV run (no run.json); make one with inv.explain_dataset(session, out=...)"
            ) from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.meta_path} is not valid JSON ({e}); the run's description is damaged") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.meta_path} does not describe an INV run (format {meta.get('format')!r})")
        if int(meta.get("version", 0)) > VERSION:
            raise ValueError(
                f"{self.root} was written by a newer inv-widgets (run format {meta['version']}, this "
                f"one reads up to {VERSION}); upgrade inv-widgets to read it"
            )
        return meta

    def write_meta(self, meta: dict) -> None:
        """Write run.json atomically (a temporary file renamed over it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{_TMP}run-{uuid.uuid4().hex}.json"
        try:
            tmp.write_text(json.dumps(meta, indent=1))
            _fsync_file(tmp)
            os.replace(tmp, self.meta_path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.root)

    # ---- the one writer of a run --------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive for the duration (an flock, released by the kernel when the process dies)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise RunBusyError(
                    f"the run in {self.root} is being written by {other} now; wait for that "
                    "explain_dataset call to end, or choose another out="
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def clean_temporary(self) -> int:
        """Remove what interrupted writers left (``.tmp-*``); returns how many. Call with the lock held."""
        n = 0
        for parent in (self.root, self.shards):
            if not parent.is_dir():
                continue
            for p in parent.iterdir():
                if p.name.startswith(_TMP):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    n += 1
        return n

    # ---- shards -------------------------------------------------------------------------------
    def committed(self) -> dict[int, Path]:
        """Committed shards, ``{shard number: directory}``."""
        if not self.shards.is_dir():
            return {}
        out = {}
        for p in self.shards.iterdir():
            m = _SHARD.match(p.name)
            if m and p.is_dir():
                out[int(m.group(1))] = p
        return dict(sorted(out.items()))

    def is_committed(self, s: int) -> bool:
        return (self.shards / shard_name(s)).is_dir()

    def check_shard(self, s: int, meta: dict, path: Path | None = None) -> str | None:
        """What is wrong with committed shard ``s`` (None: nothing found), without decompressing anything: its
        files, the zip's central directory, the Parquet footers, and that its rows are this run's shard ``s``
        (shard number, positions and image indices of ``meta``)."""
        import pyarrow.parquet as pq

        path = path or self.shards / shard_name(s)
        missing = [f for f in SHARD_FILES if not (path / f).is_file()]
        if len(missing) == len(SHARD_FILES):
            return "the shard folder is empty (an interrupted copy?)"
        if missing:
            return f"{', '.join(missing)} missing"
        try:
            with zipfile.ZipFile(path / "arrays.zarr.zip") as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            return f"arrays.zarr.zip is not a readable zip file ({e})"
        wanted = ["zarr.json", "images/zarr.json", "logits/zarr.json"] + [
            f"{a}/{li}/zarr.json"
            for li in range(len(meta.get("layers", [])))
            for a in ("maps", "gradcam", "channel_weights")
        ]
        lost = [n for n in wanted if n not in names]
        if lost:
            return f"arrays.zarr.zip lacks {', '.join(lost[:3])}" + (" ..." if len(lost) > 3 else "")
        tables = {}
        for name, cols in (
            ("images.parquet", ["shard", "position", "image", "row"]),
            ("maps.parquet", ["shard", "model"]),
        ):
            try:
                tables[name] = pq.ParquetFile(path / name).read(columns=cols).to_pandas()
            except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
                return f"{name} is not readable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        images, maps = tables["images.parquet"], tables["maps.parquet"]
        size = int(meta["shard_size"])
        indices = meta["indices"]
        if len(images) == 0:
            return "images.parquet holds no image"
        if (images["shard"] != s).any() or (len(maps) and (maps["shard"] != s).any()):
            return (
                f"its rows say shard {sorted(set(images['shard']) | set(maps['shard']))[:3]}, not {s}: a shard "
                "of another run?"
            )
        pos = images["position"].to_numpy()
        if pos.min() < s * size or pos.max() >= min(len(indices), (s + 1) * size) or len(set(pos)) != len(pos):
            return (
                f"its positions {int(pos.min())}..{int(pos.max())} are not those of shard {s} "
                f"({s * size}..{min(len(indices), (s + 1) * size) - 1}): a shard of another run?"
            )
        wrong = [int(p) for p, i in zip(pos, images["image"]) if int(indices[int(p)]) != int(i)]
        if wrong:
            return (
                f"image {int(images['image'][list(pos).index(wrong[0])])} is stored at position {wrong[0]}, "
                f"where this run has image {int(indices[wrong[0]])}: a shard of another run?"
            )
        if len(maps) and (maps["model"] != meta["model"]).any():
            return "its maps were made by another model: a shard of another run?"
        return None

    def shard_images(self, s: int) -> int:
        """How many images committed shard ``s`` holds (fewer than its share when a retry stored only some)."""
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(self.shards / shard_name(s) / "images.parquet").metadata.num_rows)

    def expected_images(self, s: int, meta: dict) -> int:
        size = int(meta["shard_size"])
        return max(0, min(size, len(meta["indices"]) - s * size))

    def discard_shard(self, s: int) -> None:
        """Take committed shard ``s`` out (renamed aside, then deleted): to redo it. Call with the lock held."""
        final = self.shards / shard_name(s)
        if not final.exists():
            return
        aside = self.shards / f"{_TMP}old-{shard_name(s)}-{uuid.uuid4().hex[:12]}"
        os.rename(final, aside)
        _fsync_dir(self.shards)
        shutil.rmtree(aside, ignore_errors=True)

    def write_shard(
        self,
        s: int,
        maps: pd.DataFrame,
        images: pd.DataFrame,
        arrays: dict[str, np.ndarray],
        chunk_bytes: int = CHUNK_BYTES,
        replace: bool = False,
    ) -> bool:
        """Write shard ``s`` privately and publish it with one rename.

        Arrays are chunked along their first axis, about ``chunk_bytes`` (before compression) per chunk.
        Returns True when this call committed it, False when another writer had already (ours is dropped).
        ``replace``: a committed shard ``s`` (damaged, or holding only some of its images) is replaced by this one.
        """
        import zarr
        from zarr.core.sync import sync

        self.shards.mkdir(parents=True, exist_ok=True)
        final = self.shards / shard_name(s)
        if final.is_dir() and not replace:
            return False
        tmp = self.shards / f"{_TMP}{shard_name(s)}-{uuid.uuid4().hex[:12]}"
        try:
            tmp.mkdir()
            maps.to_parquet(tmp / "maps.parquet", index=False)
            images.to_parquet(tmp / "images.parquet", index=False)
            zstore = zarr.storage.ZipStore(tmp / "arrays.zarr.zip", mode="w")
            try:
                sync(_write_arrays(zstore, arrays, chunk_bytes))
            finally:
                zstore.close()
            for f in tmp.iterdir():
                _fsync_file(f)
            _fsync_dir(tmp)
            if replace:
                self.discard_shard(s)
            try:
                os.rename(tmp, final)
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.is_dir():
                    return False  # another writer committed this shard first: keep theirs
                raise
            _fsync_dir(self.shards)
            return True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


async def _write_arrays(zstore, arrays: dict[str, np.ndarray], chunk_bytes: int) -> None:
    """Create and fill every array of a shard concurrently (one round trip to zarr's event loop)."""
    import asyncio

    import zarr.api.asynchronous as za
    from zarr.codecs import ZstdCodec

    group = await za.open_group(store=zstore, mode="w", zarr_format=3)
    codec = ZstdCodec(level=1)  # the default level's size within 2 %, at two thirds of the time

    async def one(name: str, arr: np.ndarray) -> None:
        out = await group.create_array(
            name,
            shape=arr.shape,
            dtype=arr.dtype,
            chunks=chunk_shape(arr, chunk_bytes),
            compressors=codec,
            config={"write_empty_chunks": True},
        )
        if arr.size:
            await out.setitem(slice(None), arr)

    await asyncio.gather(*(one(n, a) for n, a in arrays.items()))


def chunk_shape(arr: np.ndarray, chunk_bytes: int | None = None) -> tuple[int, ...]:
    """Chunks of whole rows (first axis), about ``chunk_bytes`` each: one image's maps of a layer are in one or
    two chunks, and a shard's array is a handful of chunks rather than one per few rows (zarr's own cost per
    chunk is more than compressing it)."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
    row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize)
    rows = max(1, min(arr.shape[0] or 1, chunk_bytes // row))
    return (rows,) + tuple(max(1, d) for d in arr.shape[1:])
