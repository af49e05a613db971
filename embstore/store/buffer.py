"""Chunk-aligned append buffers.

Appending a small batch into a larger chunk rewrites the whole chunk each time
(measured 4-70x slower than writing whole chunks). A :class:`ChunkBuffer`
collects batches in memory and hands out blocks that always *start* on a chunk
boundary, so every write covers whole chunks (plus, on an explicit flush, one
partial last chunk whose rows stay buffered and are rewritten with the next
block).

Batches are gathered into one array that the buffer keeps and reuses between
writes (the partial chunk left after a write moves to its front). Fresh large
allocations are slow on many machines (page faults on every new page: a copy
into new memory ran at 0.35 GB/s here, several times slower than into
reused memory), so reusing the gather array makes appends of many small
batches cheaper. :meth:`ChunkBuffer.append` keeps the arrays it is given
(callers pass arrays they own); :meth:`ChunkBuffer.append_cast` always
copies, so a caller may reuse its input array for the next batch.

Batches that need a dtype conversion (float32 input into a float16 store)
are cast straight into the gather array by :meth:`ChunkBuffer.append_cast`:
one pass over the data instead of a cast into a fresh array followed by a
copy into the gather array (the store's write path is memory-bound, so every
pass saved shows).

Examples
--------
>>> import numpy as np
>>> b = ChunkBuffer(start=0, chunk=4)
>>> b.append(np.arange(6))
>>> b.full_end()
4
>>> b.block(4).tolist()
[0, 1, 2, 3]
>>> b.advance(4); b.start, len(b)
(4, 2)
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChunkBuffer"]


class ChunkBuffer:
    """Rows ``start .. start + len - 1`` of one array, held in memory.

    Parameters
    ----------
    start : int
        Absolute position of the first buffered row (a chunk boundary).
    chunk : int
        Rows per chunk.
    """

    def __init__(self, start: int, chunk: int) -> None:
        self.start = int(start)
        self.chunk = int(chunk)
        self._parts: list[np.ndarray] = []
        self._n = 0
        self._space: np.ndarray | None = None  # reusable gather array (rows, *trailing)

    def __len__(self) -> int:
        return self._n

    @property
    def end(self) -> int:
        """Absolute position one past the last buffered row."""
        return self.start + self._n

    def append(self, arr: np.ndarray) -> None:
        """Add rows at the end."""
        if len(arr):
            self._parts.append(arr)
            self._n += len(arr)

    def append_cast(self, arr: np.ndarray, dtype: np.dtype | str) -> None:
        """Add rows at the end, cast to ``dtype`` straight into the gather array.

        The rows are always copied now, also when ``arr`` already has
        ``dtype``: later changes to ``arr`` (a caller reusing one buffer for
        every batch) never show in buffered rows. The copy goes into the
        reused gather array, which the buffered rows need to reach anyway.

        Parameters
        ----------
        arr : numpy.ndarray
            Rows to add (leading row axis).
        dtype : numpy.dtype or str
            Storage dtype of the buffered rows.

        Examples
        --------
        >>> import numpy as np
        >>> b = ChunkBuffer(start=0, chunk=2)
        >>> b.append_cast(np.array([[1.5], [2.0]], dtype=np.float64), "float16")
        >>> b.append_cast(np.array([[3.0]], dtype=np.float32), "float16")
        >>> blk = b.block(3); blk.dtype, blk[:, 0].tolist()
        (dtype('float16'), [1.5, 2.0, 3.0])
        """
        from .schema import fast_cast

        dtype = np.dtype(dtype)
        if dtype.kind not in "fiub" or arr.dtype.kind not in "fiub":
            self.append(arr.astype(dtype))  # astype copies
            return
        if not len(arr):
            return
        data = self._consolidate()
        need = self._n + len(arr)
        sp = self._space
        fits = (
            sp is not None
            and sp.dtype == dtype
            and sp.shape[1:] == arr.shape[1:]
            and len(sp) >= need
        )
        if (
            fits and data is not None and sp is not None
        ):  # existing rows must already sit at the front of the gather array
            fits = (
                data.base is sp
                and data.__array_interface__["data"][0] == sp.__array_interface__["data"][0]
            )
        if not fits or sp is None:
            same = sp is not None and sp.shape[1:] == arr.shape[1:]
            cap = max(need, self.chunk, 2 * len(sp) if same and sp is not None else 0)
            new = np.empty((cap,) + arr.shape[1:], dtype=dtype)
            if data is not None:
                new[: self._n] = data
            self._space = sp = new
        fast_cast(arr, dtype, out=sp[self._n : need])
        self._parts = [sp[:need]]
        self._n = need

    def full_end(self) -> int:
        """Absolute end of the last complete chunk in the buffer."""
        return self.end - (self.end % self.chunk)

    def _room(self, rows: int, like: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """The gather array, (re)allocated to hold ``rows`` rows shaped like ``like``."""
        sp = self._space
        if sp is None or sp.dtype != dtype or sp.shape[1:] != like.shape[1:] or len(sp) < rows:
            cap = max(
                rows, self.chunk, 0 if sp is None or sp.shape[1:] != like.shape[1:] else 2 * len(sp)
            )
            sp = np.empty((cap,) + like.shape[1:], dtype=dtype)
            self._space = sp
        return sp

    def _consolidate(self) -> np.ndarray | None:
        if not self._parts:
            return None
        if len(self._parts) > 1:
            parts = self._parts
            dtype = np.result_type(*parts)
            if dtype.kind == "O" or any(p.shape[1:] != parts[0].shape[1:] for p in parts):
                self._parts = [np.concatenate(parts, axis=0)]
            else:
                first = parts[0]
                sp = self._space
                keep_first = (  # the leftover partial chunk already sits at the front
                    sp is not None
                    and first.base is sp
                    and first.__array_interface__["data"][0] == sp.__array_interface__["data"][0]
                    and sp.dtype == dtype
                    and len(sp) >= self._n
                )
                if not keep_first or sp is None:
                    sp = self._room(self._n, first, dtype)
                    sp[: len(first)] = first
                pos = len(first)
                for p in parts[1:]:
                    sp[pos : pos + len(p)] = p
                    pos += len(p)
                self._parts = [sp[: self._n]]
        return self._parts[0]

    def block(self, upto: int) -> np.ndarray:
        """Return buffered rows ``start .. upto - 1`` (not removed)."""
        data = self._consolidate()
        if data is None:
            raise ValueError("empty buffer")
        return data[: upto - self.start]

    def advance(self, upto: int) -> None:
        """Drop whole chunks before ``upto``; a partial chunk stays buffered."""
        keep_from = upto - (upto % self.chunk)
        drop = keep_from - self.start
        if drop <= 0:
            return
        data = self._consolidate()
        assert data is not None  # internal invariant, not an input check
        rest = data[drop:]
        n = len(rest)
        if n:
            sp = self._space
            if sp is not None and data.base is sp:
                sp[:n] = rest  # overlapping move to the front (numpy copies safely)
            else:
                sp = self._room(n, rest, rest.dtype)
                sp[:n] = rest
            self._parts = [sp[:n]]
        else:
            self._parts = []
        self._n = n
        self.start = keep_from
