"""Direct row reads of unfiltered, chunked HDF5 datasets (the HDF5 fast path).

embstore creates its HDF5 datasets chunked along rows only (a chunk holds
``chunk_rows`` whole rows) and, by default, without filters. Such a chunk is
``chunk_rows`` C-ordered rows at one byte offset in the file, so rows
``a..b`` of a chunk are one contiguous byte range. :class:`RawH5Rows` asks
HDF5 once for every chunk's offset (``H5Dchunk_iter``) and then reads rows
with ``os.preadv`` straight into the output array: one system call per run of
consecutive rows, no HDF5 selection machinery.

Why: a 10% subset (2,000 scattered rows of 20,000 x 100 x 256 float16)
through h5py's point selection (``ds[list_of_rows]``) took 39x the Zarr
backend's time, and a full read plus a mask still reads 10x the bytes
needed. Measured with ``bench/hdf5_read.py``; the numbers are in its
docstring and in docs/store.rst.

Examples
--------
>>> import h5py, numpy as np, os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), "a.h5")
>>> with h5py.File(p, "w") as f:
...     ds = f.create_dataset("x", data=np.arange(40.0).reshape(10, 4), chunks=(4, 4))
>>> with h5py.File(p, "r") as f:
...     raw = RawH5Rows.build(f["x"])
...     raw.read(np.array([1, 2, 9]))[:, 0].tolist()
[4.0, 8.0, 36.0]
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["RawH5Rows"]


class RawH5Rows:
    """Row reader of one dataset; see the module docstring.

    Parameters
    ----------
    path : str
        The HDF5 file.
    offsets : numpy.ndarray
        Byte offset of each chunk (``-1``: not allocated, reads the fill value).
    shape : tuple of int
        Dataset shape.
    dtype : numpy.dtype
        Element dtype.
    chunk_rows : int
        Rows per chunk.
    fill : scalar
        Fill value of unallocated chunks.
    """

    def __init__(
        self,
        path: str,
        offsets: np.ndarray,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunk_rows: int,
        fill: Any,
    ) -> None:
        self.path = path
        self.offsets = offsets
        self.shape = shape
        self.dtype = dtype
        self.chunk_rows = chunk_rows
        self.fill = fill
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd = -1

    @classmethod
    def build(cls, ds: Any, filename: str | None = None) -> RawH5Rows | None:
        """Reader for ``ds`` (in file ``filename``), or None when it is not a plain row-chunked numeric dataset."""
        dt = ds.dtype
        if not hasattr(os, "preadv"):  # pragma: no cover - Windows: h5py reads
            return None
        if ds.chunks is None or dt.kind not in "biuf" or dt.byteorder == ">" or len(ds.shape) == 0:
            return None
        if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
            return None
        if ds.id.get_create_plist().get_nfilters():
            return None
        cr = int(ds.chunks[0])
        n_chunks = -(-int(ds.shape[0]) // cr)
        offsets = np.full(n_chunks, -1, dtype=np.int64)
        chunk_bytes = cr * int(np.prod(ds.shape[1:], dtype=np.int64)) * dt.itemsize
        ok = [True]

        def visit(info: Any) -> None:
            c = int(info.chunk_offset[0]) // cr
            if info.size != chunk_bytes or info.filter_mask:
                ok[0] = False
            elif c < n_chunks:
                offsets[c] = int(info.byte_offset)

        try:
            ds.id.chunk_iter(visit)
        except (AttributeError, RuntimeError, OSError, TypeError):  # pragma: no cover - old HDF5
            return None
        if not ok[0]:
            return None
        fill = ds.fillvalue if ds.fillvalue is not None else 0
        return cls(
            filename or ds.file.filename,
            offsets,
            tuple(int(s) for s in ds.shape),
            np.dtype(dt),
            cr,
            fill,
        )

    def _fileno(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Rows at sorted, unique ``positions``."""
        pos = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(pos),) + self.shape[1:], dtype=self.dtype)
        if len(pos) == 0:
            return out
        cr = self.chunk_rows
        chunk = pos // cr
        # runs of consecutive rows inside one chunk: one pread each
        brk = np.flatnonzero((np.diff(pos) != 1) | (np.diff(chunk) != 0)) + 1
        starts = np.concatenate(([0], brk))
        stops = np.concatenate((brk, [len(pos)]))
        self._read_runs(out, pos, chunk, starts, stops)
        return out

    def read_range(self, a: int, b: int) -> np.ndarray:
        """Rows ``a .. b - 1``."""
        return self.read(np.arange(a, b, dtype=np.int64))

    def _read_runs(
        self,
        out: np.ndarray,
        pos: np.ndarray,
        chunk: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
    ) -> None:
        fd = self._fileno()
        rb = self.row_bytes
        flat = (
            out.reshape(len(out), -1).view(np.uint8).reshape(-1) if out.size else out.view(np.uint8)
        )
        base = self.offsets[chunk[starts]]
        file_off = base + (pos[starts] - chunk[starts] * self.chunk_rows) * rb
        for s, e, off, b in zip(starts.tolist(), stops.tolist(), file_off.tolist(), base.tolist()):
            if b < 0:
                out[s:e] = self.fill
                continue
            view = flat[s * rb : e * rb].data
            got = os.preadv(fd, [view], off)
            while got < len(view):  # short read (rare): go on
                n = os.preadv(fd, [view[got:]], off + got)
                if n <= 0:
                    raise OSError(f"short read of {self.path!r} at byte {off + got}")
                got += n
