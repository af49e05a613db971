"""Atomic file operations on local disks (the I/O layer of the commit protocol).

* :func:`write_replace` writes a file to a temporary name and renames it over
  the target: readers see the old or the new content, never a torn file.
* :func:`write_new` publishes a new file that must not exist yet (commit
  records, region claims): the content goes to a temporary file first, then
  ``os.link`` gives it its final name, which fails if the name is taken. A
  kill leaves either no file or the whole file.

Each call counts as fault-injection steps (:mod:`embstore.store.faults`).

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> write_new(os.path.join(d, "a"), b"1")
>>> write_new(os.path.join(d, "a"), b"2")
Traceback (most recent call last):
...
FileExistsError: ...
>>> write_replace(os.path.join(d, "a"), b"3"); open(os.path.join(d, "a"), "rb").read()
b'3'
"""

from __future__ import annotations

import os
import threading

from . import faults

__all__ = ["remove", "write_new", "write_replace"]


def _tmp(path: str) -> str:
    return f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"


def _write_tmp(path: str, data: bytes) -> str:
    tmp = _tmp(path)
    faults.step("write")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
    except BaseException:  # e.g. a full disk: leave no temporary file behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return tmp


def write_replace(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + rename)."""
    tmp = _write_tmp(path, data)
    faults.step("rename")
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def write_new(path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, atomically; FileExistsError if it exists.

    Raises
    ------
    FileExistsError
        ``path`` already exists (its content is left alone).
    """
    if os.path.lexists(path):
        raise FileExistsError(f"{path} exists")
    tmp = _write_tmp(path, data)
    try:
        faults.step("rename")
        try:
            os.link(tmp, path)  # fails if the name is taken
        except (
            PermissionError,
            NotImplementedError,
        ):  # file systems without hard links
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
    finally:
        try:
            os.remove(tmp)
        except FileNotFoundError:  # pragma: no cover
            pass


def remove(path: str) -> bool:
    """Delete a file if present (True when it was there)."""
    faults.step("delete")
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False
