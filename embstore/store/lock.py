"""Append locks: one writer per region.

A lock is a small file holding the owner's host name and process id. It is
created atomically, never empty: the owner record is written to a private
temporary file which is then hard-linked to the lock's name (``link`` fails
when the name exists, like ``O_CREAT | O_EXCL``). A process killed while
taking the lock therefore leaves either no lock or a complete one (which the
next writer recognises as stale), never an empty file that would block
appends. On file systems without hard links the lock is created with
``O_CREAT | O_EXCL`` and then written; an empty lock found there is removed
once it is 5 s old. A second appender finds the lock and gets
:class:`~embstore.errors.StoreLockedError`. A lock left behind by a killed
process on the same host is detected (its pid is gone) and taken over with a
warning; on another host (or on object storage, where exclusive creation is not
available) pass ``force=True`` to :meth:`embstore.Store.open` after making sure
no other writer runs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import StoreLockedError
from . import atomic

__all__ = ["FileLock", "parse_owner", "pid_alive"]

log = logging.getLogger(__name__)


def parse_owner(raw: bytes | str) -> dict[str, object] | None:
    """Owner of a lock from the lock file's bytes; None for garbage.

    A lock file that is not a JSON object (truncated, empty, written by
    something else) or whose ``pid`` is not an integer gives None or a pid of
    -1 (never alive), so garbage never raises a raw ``ValueError``,
    ``TypeError`` or ``AttributeError``.

    Examples
    --------
    >>> parse_owner('{"host": "h", "pid": 12}')["pid"]
    12
    >>> parse_owner("[1, 2]") is None, parse_owner('{"pid": "x"}')["pid"]
    (True, -1)
    """
    try:
        owner = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(owner, dict):
        return None
    pid = owner.get("pid", -1)
    try:
        owner["pid"] = int(pid) if not isinstance(pid, bool) else -1
    except (TypeError, ValueError, OverflowError):
        owner["pid"] = -1
    owner["host"] = str(owner.get("host", ""))
    return owner


def pid_alive(pid: int) -> bool:
    """Return True if a process with this pid exists on this host.

    Examples
    --------
    >>> pid_alive(os.getpid())
    True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed child not yet reaped) is as good as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _owner_pid(owner: dict[str, object]) -> int:
    """The ``pid`` of a lock owner record (-1 when absent or not a number)."""
    pid = owner.get("pid", -1)
    try:
        return int(pid) if isinstance(pid, (int, str)) else -1
    except ValueError:
        return -1


class FileLock:
    """Exclusive lock file on a local file system.

    Parameters
    ----------
    path : str or pathlib.Path
        Lock file path.
    what : str
        Description for error messages (e.g. the store path and region).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> lk = FileLock(os.path.join(d, "x.lock"), "demo")
    >>> lk.acquire(); lk.release()
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.held = False
        #: pid of a dead process (this host) whose stale lock :meth:`acquire` took over
        self.stale_pid: int | None = None

    def _owner(self) -> dict[str, object] | None:
        try:
            return parse_owner(self.path.read_bytes())
        except OSError:
            return None

    def _create(self, record: dict[str, object]) -> bool:
        """Create the lock file holding ``record``; False when it exists already.

        :func:`embstore.store.atomic.write_new` writes the record to a
        temporary file and hard-links it to the lock's name, so the lock never
        exists empty (a SIGKILL at any instant leaves no lock or a complete one).
        """
        try:
            atomic.write_new(str(self.path), json.dumps(record).encode())
        except FileExistsError:
            return False
        return True

    def _remove_dead_temporaries(self) -> None:
        """Remove temporary lock records of processes killed while taking the lock."""
        for tmp in self.path.parent.glob(f"{self.path.name}.*.*.tmp"):
            pid = tmp.name[len(self.path.name) + 1 :].split(".", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                tmp.unlink(missing_ok=True)

    def acquire(self, force: bool = False) -> None:
        """Take the lock.

        Parameters
        ----------
        force : bool
            Remove an existing lock first (only when you know its writer is gone).

        Raises
        ------
        StoreLockedError
            Another live process holds the lock.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_dead_temporaries()
        me: dict[str, object] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
        }
        for _attempt in range(3):
            if not self._create(me):
                owner = self._owner()
                if force:
                    log.warning("removing lock %s held by %s (force=True)", self.path, owner)
                    self.path.unlink(missing_ok=True)
                    continue
                if owner is None:
                    # being written right now, or garbage from a crash during creation
                    time.sleep(0.05)
                    owner = self._owner()
                    if owner is None:
                        age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0
                        if age > 5:
                            try:
                                self.path.unlink(missing_ok=True)
                            except OSError as exc:
                                raise StoreLockedError(
                                    f"the lock {self.path} of {self.what} is unreadable and cannot be removed "
                                    f"({exc}); remove it by hand once no writer runs"
                                ) from exc
                            continue
                if (
                    owner is not None
                    and owner.get("host") == me["host"]
                    and not pid_alive(_owner_pid(owner))
                ):
                    log.warning(
                        "taking over stale lock %s of dead process %s", self.path, owner.get("pid")
                    )
                    self.stale_pid = _owner_pid(owner)
                    self.path.unlink(missing_ok=True)
                    continue
                raise StoreLockedError(
                    f"{self.what} is already open for appending by {owner} (lock file {self.path}); "
                    "close that writer first, or open read-only with mode='r'. If that process is gone "
                    "(e.g. on another host), pass force=True to Store.open"
                )
            self.held = True
            return
        raise StoreLockedError(
            f"could not take the append lock {self.path} for {self.what}; retry or pass force=True"
        )

    def release(self) -> None:
        """Release the lock if held (idempotent)."""
        if self.held:
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
