"""Typed errors of the label store, raised the same way by every backend."""
from __future__ import annotations

__all__ = ["StoreBusyError"]


class StoreBusyError(RuntimeError):
    """The database stayed locked by another connection for longer than the timeout.

    Nothing was written by the failed call; retrying later is safe.
    """

    def __init__(self, path: str, timeout: float, action: str = "write"):
        self.path = path
        self.timeout = timeout
        super().__init__(
            f"label store {path!r} is busy: another connection held the lock for more than "
            f"{timeout:g} s, so this {action} was not done (nothing was stored). "
            "Retry in a moment, or open the store with a longer timeout=..."
        )
