"""Session factories for the stored-run tests (importable by Dask workers and subprocesses: tests/ on PYTHONPATH)."""

from __future__ import annotations

import sys
import time

import inv_widgets as inv
from inv_widgets.demo import PartsDataset


class SlowParts(PartsDataset):
    """The demo's parts images, each one ``delay`` seconds slower to read: runs last long enough to be
    interrupted at a chosen moment."""

    def __init__(self, n, delay):
        super().__init__(n=n)
        self.delay = float(delay)

    def __getitem__(self, i):
        time.sleep(self.delay)
        return super().__getitem__(i)


def slow_demo_session(n: int = 48, delay: float = 0.05):
    model, _ = inv.demo.load(n)
    return inv.Session(model, SlowParts(n, delay))


class KillerParts(PartsDataset):
    """The demo's parts images, but reading image ``kill`` inside a Dask worker kills that worker's process (as a
    picture that crashes a decoder or exhausts memory does). Read elsewhere, it is an ordinary image."""

    def __init__(self, n, kill):
        super().__init__(n=n)
        self.kill = int(kill)

    def __getitem__(self, i):
        if int(i) == self.kill:
            try:
                from distributed import get_worker

                get_worker()
            except (ImportError, ValueError):
                pass
            else:
                import os
                import signal

                os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)


def killer_demo_session(n: int = 40, kill: int = 13):
    model, _ = inv.demo.load(n)
    return inv.Session(model, KillerParts(n, kill))


def main():
    """``python runs_helpers.py OUT N DELAY BATCH``: a run in a process of its own, to be killed."""
    out, n, delay, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    inv.explain_dataset(slow_demo_session(n, delay), out=out, batch_size=batch, progress=False)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
