"""Writing a file so that readers never see half of it: one helper for the label exports and the reports."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "current_umask"]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``); elsewhere
    set and restored at once (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permissions a new file at ``path`` gets: those of the file it replaces (a shared 0644 report stays
    0644), else what ``open()`` would give a new file, 0666 less the umask (0644 under the usual 022)."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def atomic_write(path: Any, write: Callable[[Any], None], *, binary: bool = False, newline: str | None = None) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path`` (text in UTF-8, or ``binary``), flush it to the
    disk and rename it over ``path``: no half-written file, and no temporary file left after an error.

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces,
    else 0666 less the process's umask (``tempfile.mkstemp`` alone makes every file 0600, private to its
    owner, which a report on a shared JupyterHub must not be)."""
    path = Path(os.fspath(path)).expanduser()
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder does not exist")
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
