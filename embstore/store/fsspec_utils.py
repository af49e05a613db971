"""Helpers for stores on fsspec object storage (S3, GCS, Azure, ``memory://``).

Object stores differ from a local disk in three ways that matter to the
commit protocol (see :mod:`embstore.store.commit`):

* **no rename**: every object is written whole by one request (S3 ``PUT`` is
  atomic: a reader sees the old object, the new one, or none, never a torn
  one), so commit records are immutable new objects, never renamed;
* **exclusive create is a conditional request**: S3 (since 2024), MinIO,
  Ceph and moto honour ``If-None-Match: *``, which s3fs sends for
  ``pipe_file(..., mode="create")``; other filesystems fall back to a check
  followed by a write (best effort);
* **listings are cached**: fsspec filesystems are cached per set of options
  and keep directory listings, so a long-lived process would not see commit
  records written by another process. Every listing here is refreshed.

Examples
--------
>>> import fsspec
>>> fs = fsspec.filesystem("memory")
>>> put_new(fs, "/demo/commits/000000000001.json", b"{}")
>>> list_names(fs, "/demo/commits")
['000000000001.json']
>>> put_new(fs, "/demo/commits/000000000001.json", b"{}")
Traceback (most recent call last):
...
FileExistsError: /demo/commits/000000000001.json already exists
>>> fs.rm("/demo", recursive=True)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

from ..errors import StoreLockedError
from .lock import pid_alive

__all__ = ["ObjectLock", "fresh_exists", "list_names", "put_new"]

log = logging.getLogger(__name__)


def fresh_exists(fs: Any, path: str) -> bool:
    """``fs.exists(path)`` after dropping fsspec's cached listings of ``path``.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    path : str
        Path without protocol (as returned by ``fsspec.core.url_to_fs``).

    Returns
    -------
    bool
    """
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def list_names(fs: Any, path: str) -> list[str]:
    """Names (last path component) of the entries under ``path``, freshly listed.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    path : str
        Directory (prefix) path without protocol.

    Returns
    -------
    list of str
        Sorted names; empty when ``path`` does not exist.
    """
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False, refresh=True)
    except TypeError:  # filesystems whose ls takes no ``refresh``
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    base = path.rstrip("/")
    names = {e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != base}
    return sorted(names)


def put_new(fs: Any, path: str, data: bytes) -> None:
    """Write an object that must not exist yet (exclusive create).

    Uses the filesystem's conditional create (``If-None-Match: *`` on S3),
    falling back to check-then-write where the filesystem has none.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    path : str
        Object path without protocol.
    data : bytes
        Full content; written by one request.

    Raises
    ------
    FileExistsError
        If the object already exists.
    """
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        raise FileExistsError(f"{path} already exists") from None
    except (TypeError, NotImplementedError):  # no ``mode`` support: best effort
        if fresh_exists(fs, path):
            raise FileExistsError(f"{path} already exists") from None
        fs.pipe_file(path, data)
    finally:
        fs.invalidate_cache(path)


class ObjectLock:
    """Append lock stored as one object, created exclusively.

    The object holds the owner's host, pid and time. A second appender gets
    :class:`~embstore.errors.StoreLockedError`. A lock left by a killed
    process on the same host (its pid is gone) is taken over with a warning,
    like :class:`embstore.store.lock.FileLock` does on local disks; a lock
    from another host needs ``force=True`` once you know that writer is gone.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    path : str
        Lock object path without protocol.
    what : str
        Description for messages (store URL and region).

    Examples
    --------
    >>> import fsspec
    >>> fs = fsspec.filesystem("memory")
    >>> lock = ObjectLock(fs, "/demo/main.lock", "demo store")
    >>> lock.acquire()
    >>> ObjectLock(fs, "/demo/main.lock", "demo store").acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    embstore.errors.StoreLockedError: demo store is already open for appending ...
    >>> lock.release()
    >>> fs.exists("/demo/main.lock")
    False
    """

    def __init__(self, fs: Any, path: str, what: str) -> None:
        self.fs, self.path, self.what = fs, path, what
        self.held = False

    def _owner(self) -> dict[str, Any] | None:
        try:
            self.fs.invalidate_cache(self.path)
            from .lock import parse_owner

            return parse_owner(bytes(self.fs.cat_file(self.path)))
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None

    def _remove(self) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache(self.path)

    def acquire(self, force: bool = False) -> None:
        """Take the lock.

        Parameters
        ----------
        force : bool
            Remove an existing lock first (only when its writer is gone).

        Raises
        ------
        StoreLockedError
            Another writer holds the lock.
        """
        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        for _attempt in range(3):
            try:
                put_new(self.fs, self.path, json.dumps(me).encode())
            except FileExistsError:
                owner = self._owner()
                if force:
                    log.warning("removing lock %s held by %s (force=True)", self.path, owner)
                    self._remove()
                    continue
                if (
                    owner is not None
                    and owner.get("host") == me["host"]
                    and not pid_alive(int(owner.get("pid", -1)))
                ):
                    log.warning(
                        "taking over stale lock %s of dead process %s", self.path, owner.get("pid")
                    )
                    self._remove()
                    continue
                raise StoreLockedError(
                    f"{self.what} is already open for appending by {owner} (lock object "
                    f"{self.path}); close that writer first, or open with mode='r'. If that "
                    "writer is gone (e.g. it ran on another host), pass force=True to Store.open"
                ) from None
            self.held = True
            return
        raise StoreLockedError(
            f"could not take the append lock {self.path} for {self.what}; retry, or pass "
            "force=True to Store.open"
        )

    def release(self) -> None:
        """Release the lock if this process holds it (idempotent)."""
        if self.held:
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self._remove()
            self.held = False
