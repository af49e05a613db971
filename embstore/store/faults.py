"""Fault injection for crash tests: SIGKILL the process at the k-th I/O step.

Every place where the store changes a file on a local disk calls
:func:`step` just before doing so (a chunk or record write, a rename, a
deletion, a metadata rewrite). When armed, the ``k``-th step kills the
process with ``SIGKILL``, so a test can crash a writer at *every* point of a
write path, deterministically. Unarmed (the default), :func:`step` costs one
integer comparison.

Arm it with :func:`arm` in a forked child, or with the environment variable
``EMBSTORE_KILL_AT=<k>`` in a subprocess. zarr's own ``LocalStore`` writes
(array creation, group metadata) are counted too while armed.

Examples
--------
>>> arm(None); step("write")  # unarmed: nothing happens
>>> counted()
0
"""

from __future__ import annotations

import os
import signal
from typing import Any

__all__ = ["arm", "counted", "step"]

_kill_at: int | None = None
_count = 0
_patched = False


def counted() -> int:
    """Number of I/O steps seen since :func:`arm` (0 when unarmed)."""
    return _count


def arm(k: int | None) -> None:
    """Kill this process at the ``k``-th I/O step from now (None: disarm).

    Parameters
    ----------
    k : int or None
        1-based step number; ``None`` disarms.
    """
    global _kill_at, _count
    _kill_at = None if k is None else int(k)
    _count = 0
    if _kill_at is not None:
        _patch_zarr()


def step(kind: str = "write") -> None:
    """Count one I/O step (``kind`` is informative) and die here if armed for it."""
    global _count
    if _kill_at is None:
        return
    _count += 1
    if _count >= _kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def _patch_zarr() -> None:
    """Count zarr LocalStore writes and deletes as steps (once per process)."""
    global _patched
    if _patched:
        return
    try:
        from zarr.storage import LocalStore
    except ImportError:  # pragma: no cover - zarr is a core dependency
        return
    orig_set, orig_delete = LocalStore.set, LocalStore.delete

    async def set_(self: Any, key: str, value: Any, *a: Any, **kw: Any) -> None:
        step("zarr-set")
        await orig_set(self, key, value, *a, **kw)

    async def delete_(self: Any, key: str) -> None:
        step("zarr-delete")
        await orig_delete(self, key)

    LocalStore.set = set_  # type: ignore[method-assign]
    LocalStore.delete = delete_  # type: ignore[method-assign]
    _patched = True


_env = os.environ.get("EMBSTORE_KILL_AT")
if _env and _env.strip().isdigit():
    arm(int(_env))
