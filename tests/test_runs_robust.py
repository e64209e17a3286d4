"""Runs that know their data (issue 23, findings 3, 5 and 9): a resume compares the session's images and every
setting with the run's, committed shards are verified on resume and on open (a damaged one is named with the
repair, which redoes it), and a kill at any moment of a run's creation never locks its folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from test_runs import assert_same_runs

import inv_widgets as inv
from inv_widgets.demo import PartsDataset
from inv_widgets.runs.run import RunDamageWarning
from inv_widgets.runs.store import RunDamagedError, RunStore

TESTS = Path(__file__).resolve().parent
N, BATCH = 24, 8


class Inserted(PartsDataset):
    """The demo's images with one new picture inserted at the front (the same number of images)."""

    def __getitem__(self, i):
        i = self._index(i)
        return super().__getitem__(self.n - 1 if i == 0 else i - 1)


class Swapped(PartsDataset):
    """The demo's images with images 2 and 3 swapped."""

    def __getitem__(self, i):
        i = self._index(i)
        return super().__getitem__({2: 3, 3: 2}.get(i, i))


@pytest.fixture(scope="module")
def model(demo):
    return demo[0]


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "reference"
    return inv.explain_dataset(
        inv.Session(model, PartsDataset(48)), range(N), out=out, batch_size=BATCH, progress=False
    )


def _copy(run, tmp_path, name="copy") -> Path:
    out = tmp_path / name
    shutil.copytree(run.path, out)
    return out


# ---- a resume compares the data and the settings ------------------------------------------------------------


@pytest.mark.parametrize("data,first", [(Inserted, 0), (Swapped, 2)], ids=["inserted", "reordered"])
def test_a_resume_over_changed_data_is_refused_naming_the_first_images(data, first, model, reference, tmp_path):
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "shards" / "s000002")  # an interrupted run: 16 of 24 images stored
    changed = inv.Session(model, data(48))
    with pytest.raises(ValueError) as info:
        inv.explain_dataset(changed, range(N), out=out, batch_size=BATCH, progress=False)
    msg = str(info.value)
    assert f"image {first} (run position {first}) was stored with id" in msg and "mix two datasets" in msg
    assert not RunStore(out).is_committed(2)  # refused before anything was written
    # the check can be turned off, and asks every image with verify="all"
    run = inv.explain_dataset(changed, range(N), out=out, batch_size=BATCH, progress=False, verify="none")
    assert run.complete


@pytest.mark.slow
def test_the_sample_of_a_large_run_catches_an_image_inserted_at_the_front(model, tmp_path):
    data = PartsDataset(80)
    out = tmp_path / "large"
    inv.explain_dataset(
        inv.Session(model, data), range(72), out=out, batch_size=BATCH, progress=False, layers=["features.block1_conv1"]
    )
    with pytest.raises(ValueError, match=r"image 0 \(run position 0\).*\(\d+ of the 3\d images checked differ\)"):
        inv.explain_dataset(
            inv.Session(model, Inserted(80)),
            range(72),
            out=out,
            batch_size=BATCH,
            progress=False,
            layers=["features.block1_conv1"],
        )
    with pytest.raises(ValueError, match=r"of the 72 images checked differ"):
        inv.explain_dataset(
            inv.Session(model, Inserted(80)),
            range(72),
            out=out,
            batch_size=BATCH,
            progress=False,
            layers=["features.block1_conv1"],
            verify="all",
        )


def test_every_setting_that_changes_results_is_compared_and_shown_in_full(model, reference, tmp_path):
    with pytest.raises(ValueError, match="weighting: stored 'guided', asked 'taylor'"):
        inv.explain_dataset(
            inv.Session(model, PartsDataset(48), weighting="taylor"),
            range(N),
            out=reference.path,
            batch_size=BATCH,
            progress=False,
        )
    with pytest.raises(ValueError, match="n_images: stored 48, asked 50"):
        inv.explain_dataset(
            inv.Session(model, PartsDataset(50)), range(N), out=reference.path, batch_size=BATCH, progress=False
        )
    layers = reference.layers[:3]
    with pytest.raises(ValueError) as info:
        inv.explain_dataset(
            inv.Session(model, PartsDataset(48)),
            range(N),
            out=reference.path,
            batch_size=BATCH,
            progress=False,
            layers=layers,
        )
    assert f"layers: stored {reference.layers!r}, asked {layers!r}" in str(info.value)  # whole, not cut at 60
    assert "first difference at item 3: stored 'features.block2_conv2', asked 'nothing'" in str(info.value)


# ---- damaged shards: found on open and on resume, named with the repair --------------------------------------


def _truncate(path):
    f = path / "arrays.zarr.zip"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _zero(path):
    f = path / "arrays.zarr.zip"
    f.write_bytes(b"\0" * f.stat().st_size)


def _parquet(path):
    f = path / "maps.parquet"
    f.write_bytes(f.read_bytes()[:-64])  # its footer cut off


def _empty(path):
    for f in path.iterdir():
        f.unlink()


DAMAGE = {
    "truncated zip": (_truncate, "arrays.zarr.zip is not a readable zip"),
    "zeroed zip": (_zero, "arrays.zarr.zip is not a readable zip"),
    "parquet footer": (_parquet, "maps.parquet is not readable"),
    "empty folder": (_empty, "the shard folder is empty"),
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_shard_is_named_with_the_repair_and_repair_redoes_it(how, model, reference, tmp_path):
    out = _copy(reference, tmp_path)
    damage, said = DAMAGE[how]
    damage(out / "shards" / "s000001")
    with pytest.warns(RunDamageWarning, match=rf"s000001: {said}.*repair=True"):
        run = inv.Run.open(out)
    assert set(run.damaged) == {1} and run.missing() == list(range(8, 16)) and not run.complete
    assert run[0].image.shape == (128, 128, 3)  # the other shards read as before
    with pytest.raises(RunDamagedError, match="s000001"):
        inv.Run.open(out, strict=True)
    session = inv.Session(model, PartsDataset(48))
    with pytest.raises(RunDamagedError, match=rf"s000001: {said}.*repair=True"):
        inv.explain_dataset(session, range(N), out=out, batch_size=BATCH, progress=False)
    repaired = inv.explain_dataset(session, range(N), out=out, batch_size=BATCH, progress=False, repair=True)
    assert repaired.complete and not repaired.damaged
    assert_same_runs(repaired, reference, same_batches=True)


def test_a_shard_copied_in_from_another_run_is_caught(model, reference, tmp_path):
    other = inv.explain_dataset(
        inv.Session(model, PartsDataset(48)), range(N, 2 * N), out=tmp_path / "other", batch_size=BATCH, progress=False
    )
    out = _copy(reference, tmp_path)
    shutil.rmtree(out / "shards" / "s000001")
    shutil.copytree(other.path / "shards" / "s000001", out / "shards" / "s000001")  # same name, other images
    with pytest.warns(
        RunDamageWarning,
        match=r"s000001: image 32 is stored at position 8, where this run has "
        r"image 8: a shard of another run",
    ):
        run = inv.Run.open(out)
    assert 32 not in run.images["image"].tolist() and 8 in run.missing()


def test_damage_found_only_when_read_names_the_file_and_the_repair(reference, tmp_path):
    out = _copy(reference, tmp_path)
    f = out / "shards" / "s000000" / "arrays.zarr.zip"
    with zipfile.ZipFile(f) as z:
        info = z.getinfo("maps/0/c/0/0/0")  # the chunk that holds image 0
    data = bytearray(f.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + info.compress_size] = bytes(info.compress_size)  # the chunk zeroed, the directory intact
    f.write_bytes(bytes(data))
    run = inv.Run.open(out)  # the cheap checks pass
    with pytest.raises(RunDamagedError) as err:
        _ = run[0][0].maps_lowres
    assert "arrays.zarr.zip cannot be read" in str(err.value) and "repair=True" in str(err.value)


def test_run_image_index_errors_name_the_layers(reference):
    with pytest.raises(IndexError) as info:
        reference[0][99]
    msg = str(info.value)
    assert "layer index 99 out of range" in msg and "has 8 layers (0..7)" in msg and reference.layers[0] in msg
    assert reference[0][-1].name == reference.layers[-1]


# ---- a kill at any moment of a run's creation ----------------------------------------------------------------

KILL = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import inv_widgets as inv
    from inv_widgets.runs import store as st
    out, point = sys.argv[1], sys.argv[2]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "lock":                       # the folder and its .lock made, nothing else
        st.RunStore.write_meta = die
    elif point == "meta":                     # run.json written to a temporary file, not yet renamed
        real = st._fsync_file
        st._fsync_file = lambda p: die() if Path(p).name.startswith(".tmp-run") else real(p)
    elif point == "described":                # run.json in place, no shard yet
        st.RunStore.committed = die
    elif point == "shard":                    # the first shard written, not yet renamed into place
        real_dir = st._fsync_dir
        st._fsync_dir = lambda p: die() if Path(p).name.startswith(".tmp-s") else real_dir(p)
    model, _ = inv.demo.load(16)
    inv.explain_dataset(inv.Session(model, inv.demo.PartsDataset(16)), range(8), out=out, batch_size=4,
                        progress=False, layers=["features.block1_conv1", "features.block4_conv2"])
    print("finished")
""")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["lock", "meta", "described", "shard"])
def test_a_kill_at_any_moment_of_a_runs_creation_never_locks_its_folder(point, model, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    r = subprocess.run(
        [sys.executable, "-c", KILL, str(out), point], env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == -9 and "finished" not in r.stdout, r.stderr[-2000:]
    left = sorted(p.name for p in out.rglob("*"))
    assert left, "the kill came before anything was made"
    run = inv.explain_dataset(
        inv.Session(model, PartsDataset(16)),
        range(8),
        out=out,
        batch_size=4,
        progress=False,
        layers=["features.block1_conv1", "features.block4_conv2"],
    )
    assert run.complete and len(run) == 8
    assert not [p for p in out.rglob(".tmp-*")]
