"""Row writes of the HDF5 backend that go to the working copy once (journal by reference).

A writer session of the HDF5 backend (see
:mod:`~embstore.store.backends.hdf5_backend`) journals every mutation. Row
data would then be written twice: into the journal and into the working copy.
For the bulk of the bytes, appends to plain row-chunked numeric datasets, this
module writes each touched chunk once, whole, with ``H5Dwrite_chunk``
(``write_direct_chunk``: one ``pwrite`` at the chunk's file offset, no chunk
cache, no selection machinery), and returns where HDF5 put it. The journal
then records a *reference* ``{"op": "ref", "src": <working copy>, "chunks":
[[row, byte offset], ...]}`` instead of the bytes.

Why a reference is enough:

- ``H5Dwrite_chunk`` writes raw data straight to the file (raw data bypasses
  HDF5's metadata accumulator), so when it returns the bytes are in the
  kernel and survive a SIGKILL; the reference is journaled only after that.
- An unfiltered chunk keeps its file address when it is rewritten (same
  size), and its space is freed only when the dataset shrinks below it (a
  trim to the last commit: those rows were never committed). So the bytes of
  a committed row stay at the referenced offset for the rest of the session.
  A chunk rewritten to add rows (after a flush in mid-chunk) carries the
  same bytes for the rows it already held.
- Each chunk's rows carry a crc32c in the reference. After a power cut
  (pages of the copy not written back) the check fails and the replay stops
  there: a prefix of the commits comes back, never wrong rows. With
  ``HDF5Backend.durable_commits`` the copy is fdatasync'ed before each commit
  record instead, so a durable record never refers to bytes that are not.
- A write over rows that references name (HDF5 writes ``set_coords`` in
  place) would break their checksums: the backend first journals the chunks
  it touches inline (:func:`rebase_rows`), and recovery skips the stale
  checksums of chunks that a later rebase entry rewrites.

Recovery reads the referenced rows from the dead writer's working copy with
``pread`` (the copy's own HDF5 metadata is not needed, so a copy killed in
the middle of an HDF5 call is still a good source) and applies them as plain
writes. That is why a working copy named by a journal is kept until the
journal has been folded in.

Examples
--------
>>> import h5py, numpy as np, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "a.h5")
>>> with h5py.File(p, "w") as f:
...     ds = f.create_dataset("x", shape=(0, 3), maxshape=(None, 3), chunks=(4, 3), dtype="f4")
...     ds.resize(8, axis=0)
...     head = direct_write(ds, 2, np.arange(12.0).reshape(4, 3))
...     ds[:6, 0].tolist()
[0.0, 0.0, 0.0, 3.0, 6.0, 9.0]
>>> head["name"], head["start"], head["n"], len(head["chunks"])
('x', 2, 4, 2)
>>> rows, bad = read_ref(p, head)
>>> rows[:, 0].tolist(), bad
([0.0, 3.0, 6.0, 9.0], [])
"""

from __future__ import annotations

import os
from typing import Any

import google_crc32c
import numpy as np

from .h5journal import fault_point

__all__ = ["direct_dtype", "direct_write", "read_ref", "rebase_rows"]

#: Writes smaller than this go into the journal inline (coordinates, ids): a
#: reference saves nothing there, and inline data may be rewritten in place.
MIN_DIRECT_BYTES = 1 << 16


def direct_dtype(ds: Any) -> np.dtype | None:
    """The element dtype if ``ds`` takes direct chunk writes, else None.

    That is: chunked along rows only (a chunk holds whole rows), no filters,
    a little-endian numeric dtype, and not a boolean stored as ``int8``.
    """
    dt = ds.dtype
    if ds.chunks is None or dt.kind not in "iuf" or dt.byteorder == ">" or len(ds.shape) == 0:
        return None
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]) or ds.attrs.get("dtype") in ("bool", b"bool"):
        return None
    if ds.id.get_create_plist().get_nfilters():
        return None
    return np.dtype(dt)


def direct_write(ds: Any, start: int, values: np.ndarray) -> dict[str, Any]:
    """Write rows ``start ..`` of ``ds`` chunk by chunk; return the journal reference.

    Rows of a touched chunk outside the write (an earlier partial write, or
    rows beyond it) are read back first, so each chunk is written whole. The
    dataset must already be long enough (the backend resizes first) and
    accepted by :func:`direct_dtype`.

    Returns
    -------
    dict
        ``{"op": "ref", "name", "start", "n", "dtype", "shape", "chunks"}``
        with ``chunks`` a list of ``[first row, byte offset]``, one per chunk;
        the caller adds ``"src"`` (the file, as named in the journal).
    """
    dt = np.dtype(ds.dtype)
    vals = np.ascontiguousarray(values, dtype=dt)
    n = len(vals)
    cr = int(ds.chunks[0])
    size = int(ds.shape[0])
    if start < 0 or start + n > size:
        raise IndexError(f"rows {start}..{start + n} outside the {size} rows of {ds.name!r}")
    trailing = tuple(int(s) for s in ds.shape[1:])
    fill = ds.fillvalue if ds.fillvalue is not None else 0
    chunks: list[list[int]] = []
    k = start - start % cr
    end = start + n
    while k < end:
        a, b = max(k, start), min(k + cr, end)
        if a == k and b == k + cr:
            block = vals[a - start : b - start]
        else:  # part of a chunk: keep what the chunk already holds
            block = np.full((cr,) + trailing, fill, dtype=dt)
            have = min(k + cr, size)
            if ds.id.get_chunk_info_by_coord((k,) + (0,) * len(trailing)).byte_offset is not None:
                block[: have - k] = ds[k:have]
            block[a - k : b - k] = vals[a - start : b - start]
        fault_point("h5-direct")
        ds.id.write_direct_chunk((k,) + (0,) * len(trailing), block)
        info = ds.id.get_chunk_info_by_coord((k,) + (0,) * len(trailing))
        crc = google_crc32c.value(vals[a - start : b - start].reshape(-1).view(np.uint8))
        chunks.append([k, int(info.byte_offset), int(crc)])
        k += cr
    return {
        "op": "ref",
        "name": ds.name.lstrip("/"),
        "start": int(start),
        "n": int(n),
        "dtype": dt.str,
        "shape": [n, *trailing],
        "chunks": chunks,
    }


def read_ref(src: str, head: dict[str, Any]) -> tuple[np.ndarray, list[int]]:
    """The rows a reference names, read from its source file with ``pread``.

    Returns
    -------
    rows : numpy.ndarray
        The rows, as read.
    bad : list of int
        First rows of the chunks whose bytes fail their crc32c (not written
        back before a power loss, or rewritten in place later: see
        :func:`rebase_rows`).

    Raises
    ------
    OSError
        The source file is missing or shorter than the reference (the
        entry then ends the journal's usable prefix).
    """
    dt = np.dtype(head["dtype"])
    shape = tuple(int(s) for s in head["shape"])
    start, n = int(head["start"]), int(head["n"])
    out = np.empty(shape, dtype=dt)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dt.itemsize
    flat = out.reshape(-1).view(np.uint8)
    chunks = head["chunks"]
    cr = int(chunks[1][0] - chunks[0][0]) if len(chunks) > 1 else None
    bad: list[int] = []
    fd = os.open(src, os.O_RDONLY)
    try:
        for i, (k, off, crc) in enumerate(chunks):
            a = max(int(k), start)
            b = min(int(chunks[i + 1][0]), start + n) if i + 1 < len(chunks) else start + n
            if cr is not None:
                b = min(b, int(k) + cr)
            want = (b - a) * row_bytes
            view = flat[(a - start) * row_bytes : (b - start) * row_bytes].data
            pos = int(off) + (a - int(k)) * row_bytes
            got = 0
            while got < want:
                m = os.preadv(fd, [view[got:]], pos + got)
                if m <= 0:
                    raise OSError(
                        f"short read of {src!r} at byte {pos + got}: journal reference cut"
                    )
                got += m
            if google_crc32c.value(flat[(a - start) * row_bytes : (b - start) * row_bytes]) != int(
                crc
            ):
                bad.append(int(k))
    finally:
        os.close(fd)
    return out, bad


def rebase_rows(ds: Any, start: int, stop: int, lo: int, hi: int) -> tuple[int, int] | None:
    """Rows to journal inline before rows ``start .. stop`` of ``ds`` are rewritten in place.

    ``lo .. hi`` are the rows that journal references of this session name.
    A write over some of them changes bytes a reference's checksum covers;
    so the whole chunks it touches are first journaled inline (a *rebase*
    entry), and recovery then skips those chunks of the older references.
    Returns the chunk-aligned row range to copy, or None when the write
    touches no referenced row (appends never do).
    """
    a, b = max(start, lo), min(stop, hi)
    if a >= b:
        return None
    cr = int(ds.chunks[0])
    return a - a % cr, min(b + (-b) % cr, int(ds.shape[0]))
