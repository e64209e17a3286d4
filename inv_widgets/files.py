"""Writing a file so that readers never see half of it: one helper for the label exports and the reports."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write"]


def atomic_write(path: Any, write: Callable[[Any], None], *, binary: bool = False,
                 newline: str | None = None) -> Path:
    """Call ``write(f)`` on a temporary file next to ``path`` (text in UTF-8, or ``binary``), flush it to the
    disk and rename it over ``path``: no half-written file, and no temporary file left after an error."""
    path = Path(os.fspath(path)).expanduser()
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
