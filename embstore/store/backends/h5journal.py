"""Redo journal of the HDF5 backend: an append-only log of backend operations.

A writer of an ``.h5`` store never modifies the committed file in place (see
:mod:`~embstore.store.backends.hdf5_backend`). Every mutation is appended to
``<store>.wal`` as one *entry* before it is applied to a private working copy;
after a crash the committed file plus the journal's valid prefix give back
every committed row.

Entry layout (little-endian)::

    b"EJ01" | header length u32 | payload length u64 | crc32 u32 | header JSON | payload

The CRC covers header and payload, so an entry cut short by a kill (or by a
full disk) fails its check and ends the valid prefix. The first entry is
``{"op": "base", "gen": <generation>}``: the generation (a random token kept
in the committed file) that the journal's operations apply to. A journal whose
base differs from the committed file's generation has already been folded in.

Examples
--------
>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "x.h5.wal")
>>> j = Journal.create(p, "g1")
>>> j.append({"op": "blob", "name": "a"}, b"hello")
>>> j.close()
>>> base, entries = read_journal(p)
>>> base, [(h["op"], bytes(b)) for h, b in entries]
('g1', [('blob', b'hello')])
>>> with open(p, "ab") as fh:
...     _ = fh.write(b"EJ01 torn")          # a torn tail is ignored
>>> len(list(read_journal(p)[1]))
1
"""

from __future__ import annotations

import errno
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "Journal",
    "ensure_space",
    "fault_point",
    "fsync_dir",
    "fsync_path",
    "is_disk_full",
    "json_default",
    "read_journal",
    "set_fault_hook",
]

_MAGIC = b"EJ01"
_HEAD = struct.Struct("<4sIQI")

#: Test hook: called with a label before every durable step (see :func:`set_fault_hook`).
_fault_hook: Callable[[str], None] | None = None


def set_fault_hook(hook: Callable[[str], None] | None) -> None:
    """Install a function called before every write, fsync, rename and unlink.

    Crash tests use it to SIGKILL a writer at its k-th step, or to raise
    ``OSError(ENOSPC)`` as a full disk would. ``None`` removes it.
    """
    global _fault_hook
    _fault_hook = hook


def fault_point(label: str) -> None:
    """Call the test hook, if any (no cost otherwise)."""
    if _fault_hook is not None:
        _fault_hook(label)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception (OSError from Python or HDF5) means "no space left".

    Examples
    --------
    >>> is_disk_full(OSError(28, "No space left on device")), is_disk_full(ValueError("x"))
    (True, False)
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    msg = str(exc)
    return isinstance(exc, (OSError, RuntimeError)) and (
        "No space left" in msg or "errno = 28" in msg
    )


#: Free bytes kept in reserve: HDF5 writes metadata at close, and a failure
#: inside HDF5 is messier than a refusal before anything is written.
SPACE_MARGIN = 1 << 20


def ensure_space(path: str, nbytes: int) -> None:
    """Raise ``OSError(ENOSPC)`` unless ``nbytes`` plus a margin are free beside ``path``.

    Checked before each write so a full disk is met *between* operations,
    never inside an HDF5 call.
    """
    fault_point("space")
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:  # pragma: no cover - no statvfs: let the write itself fail
        return
    free = st.f_bavail * st.f_frsize
    if free < nbytes + SPACE_MARGIN:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({free} bytes free, {nbytes + SPACE_MARGIN} needed)",
        )


def fsync_path(path: str) -> None:
    """fsync a file by name."""
    fault_point("fsync")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync the directory holding ``path`` (makes a rename durable)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class Journal:
    """An open journal file, appended to with unbuffered writes.

    Every :meth:`append` reaches the kernel before it returns, so a SIGKILLed
    writer loses nothing it appended; :meth:`sync` adds durability against
    power loss (called once per commit record).

    Parameters
    ----------
    path : str
        Journal file.
    fd : int
        Open file descriptor (write, positioned at ``end``).
    end : int
        Length of the valid prefix.
    """

    def __init__(self, path: str, fd: int, end: int) -> None:
        self.path = path
        self._fd = fd
        self.end = end
        self.n_ops = 0
        self._dirty = False
        self._last = end

    @classmethod
    def create(cls, path: str, base: str) -> Journal:
        """Start a new journal whose operations apply to generation ``base``."""
        fault_point("wal-create")
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
        j = cls(path, fd, 0)
        try:
            j.append({"op": "base", "gen": base})
        except BaseException:
            j.close()
            os.unlink(path)
            raise
        j.n_ops = 0
        return j

    def append(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        """Append one entry (header JSON + raw payload).

        On failure (e.g. a full disk) the file is cut back to its valid
        prefix before the error propagates.
        """
        hb = json.dumps(header, separators=(",", ":"), default=json_default).encode()
        pv = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
        crc = zlib.crc32(pv, zlib.crc32(hb))
        head = _HEAD.pack(_MAGIC, len(hb), len(pv), crc)
        try:
            fault_point("wal-write")
            self._write_all(head + hb)
            if len(pv) > 1:
                half = len(pv) // 2
                self._write_all(pv[:half])
                fault_point("wal-torn")  # a kill here leaves a torn entry
                self._write_all(pv[half:])
            else:
                self._write_all(pv)
        except BaseException:
            try:
                os.ftruncate(self._fd, self.end)
                os.lseek(self._fd, self.end, os.SEEK_SET)
            except OSError:  # pragma: no cover - best effort
                pass
            raise
        self._last = self.end
        self.end += len(head) + len(hb) + len(pv)
        self.n_ops += 1
        self._dirty = True

    def undo_last(self) -> None:
        """Cut off the last entry (its operation failed, so it did not happen)."""
        if self.end > self._last:
            os.ftruncate(self._fd, self._last)
            os.lseek(self._fd, self._last, os.SEEK_SET)
            self.end = self._last
            self.n_ops -= 1

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            n = os.write(self._fd, view)
            view = view[n:]

    def sync(self) -> None:
        """fdatasync the journal if anything was appended since the last sync."""
        if self._dirty:
            fault_point("fsync")
            getattr(os, "fdatasync", os.fsync)(self._fd)
            self._dirty = False

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def json_default(o: Any) -> Any:
    """``json.dumps`` hook: NumPy scalars and arrays (attribute values) as plain JSON.

    Examples
    --------
    >>> import json, numpy as np
    >>> json.dumps({"a": np.int64(3), "b": np.arange(2)}, default=json_default)
    '{"a": 3, "b": [0, 1]}'
    """
    for conv in ("tolist",):  # a NumPy scalar's tolist() is its Python value
        if hasattr(o, conv):
            return getattr(o, conv)()
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def _entries(fh: Any) -> Iterator[tuple[dict[str, Any], bytes]]:
    while True:
        head = fh.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return
        magic, hlen, plen, crc = _HEAD.unpack(head)
        if magic != _MAGIC or hlen > 1 << 30:
            return
        hb = fh.read(hlen)
        payload = fh.read(plen)
        if len(hb) < hlen or len(payload) < plen or zlib.crc32(payload, zlib.crc32(hb)) != crc:
            return
        try:
            header = json.loads(hb)
        except ValueError:
            return
        yield header, payload


def read_journal(path: str) -> tuple[str | None, Iterator[tuple[dict[str, Any], bytes]]]:
    """Base generation and an iterator over the valid entries after the base.

    Returns ``(None, empty)`` for a journal without a valid first entry. The
    iterator reads one entry at a time (memory: the largest entry).
    """
    fh = open(path, "rb")
    it = _entries(fh)
    first = next(it, None)
    if first is None or first[0].get("op") != "base":
        fh.close()
        return None, iter(())

    def rest() -> Iterator[tuple[dict[str, Any], bytes]]:
        try:
            yield from it
        finally:
            fh.close()

    return str(first[0].get("gen", "")), rest()
