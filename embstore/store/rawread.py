"""Direct reads (and chunk writes) of uncompressed, local Zarr v3 arrays (a fast path).

embstore stores embeddings raw (``compressors=None``): a chunk file is the
C-ordered bytes of ``chunk_rows`` rows, and a shard file is its inner chunks
followed by an index of ``(offset, nbytes)`` pairs. Rows ``a..b`` of a chunk
are therefore one contiguous byte range, which this module reads with
``readinto`` straight into the output array: no per-chunk codec pipeline, no
async round trips, and a subset of rows costs only its own bytes. Reading
whole chunks through zarr-python costs several times more (measured in
``bench/store_io.py``).

Whole chunks of unsharded raw arrays are also *written* directly: each
chunk file is written to a temporary file and renamed into place, exactly
like zarr's ``LocalStore`` does, with one copy instead of zarr's encode
pipeline (a partial last chunk is padded with the fill value, as zarr does).

Only arrays this module fully understands are read this way (numeric dtype,
``bytes`` codec, little endian, optionally ``sharding_indexed`` with its index
at the end, default chunk keys with the ``/`` or ``.`` separator, one chunk
across all trailing dims); anything else goes through zarr.

embstore creates its arrays with the ``.`` separator (flat chunk files
``c.0.0.0`` next to ``zarr.json``): the ``/`` separator creates a directory
per chunk (and per trailing dim), and creating inodes is a large part of the
cost of a write on ext4 (measured with ``perf`` in ``bench/store_io.py``).
Stores written with ``/`` keys are read (and written) as well. Results are compared with zarr's in the tests.

Examples
--------
>>> import numpy as np, tempfile, zarr, os
>>> d = os.path.join(tempfile.mkdtemp(), "a")
>>> z = zarr.create_array(d, shape=(10, 3), chunks=(4, 3), dtype="float32", compressors=None)
>>> z[:] = np.arange(30, dtype="float32").reshape(10, 3)
>>> raw = RawZarrArray.open(d)
>>> raw.read_positions(np.array([9, 1, 5]))[:, 0].tolist()
[27.0, 3.0, 15.0]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from . import faults

__all__ = ["RawZarrArray"]

_EMPTY = 2**64 - 1
_DIR_FD = os.open in os.supports_dir_fd


#: Bytes per ``write()`` call when writing a chunk file. Writing an 8 MiB
#: chunk in 1 MiB pieces ran 2-3x faster than one 8 MiB ``write()`` on the
#: development VM (Linux 6.18, ext4): large single writes make the kernel
#: allocate large page-cache folios, which are slow to come by in a VM.
WRITE_PIECE_BYTES = 1 << 20


def _write_in_pieces(fh: Any, data: memoryview) -> None:
    """Write all of ``data`` to the unbuffered file ``fh`` in :data:`WRITE_PIECE_BYTES` pieces."""
    pos, total = 0, len(data)
    while pos < total:
        done = fh.write(data[pos : pos + WRITE_PIECE_BYTES])
        if not done:
            raise OSError(f"write to {fh.name!r} made no progress at byte {pos} of {total}")
        pos += done


def _plain_bytes_codec(codec: Any) -> bool:
    if not isinstance(codec, dict) or codec.get("name") != "bytes":
        return False
    endian = (codec.get("configuration") or {}).get("endian", "little")
    return endian == "little"


class RawZarrArray:
    """Reader of the rows of a raw local Zarr v3 array.

    Use :meth:`open`, which returns None for arrays it cannot read directly.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    chunk_rows : int
        Rows per chunk file (per shard when sharded).
    inner_rows : int or None
        Rows per inner chunk when sharded.
    """

    def __init__(self, path: str, meta: dict[str, Any], inner_rows: int | None) -> None:
        self.path = path
        self.shape = tuple(int(s) for s in meta["shape"])
        self.dtype = np.dtype(meta["data_type"])
        self.ndim = len(self.shape)
        self.chunk_rows = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.inner_rows = inner_rows
        self.row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        self.row_bytes = self.row_items * self.dtype.itemsize
        fv = meta.get("fill_value")
        self.fill = np.array(np.nan if fv == "NaN" else (0 if fv is None else fv)).astype(
            self.dtype
        )
        sep = ((meta.get("chunk_key_encoding") or {}).get("configuration") or {}).get(
            "separator", "/"
        )
        self.flat = sep == "."  # chunk files c.<i>.0.0 in the array directory (no c/ tree)
        self._tail = "/".join(["0"] * (self.ndim - 1))
        self._dot_tail = ".0" * (self.ndim - 1)
        self._index_extra = 0
        self._made_dirs: set[str] = set()
        #: raise DamagedStoreError for a missing chunk file instead of reading fill values
        #: (set for arrays whose every committed row has a chunk: variables, ids)
        self.strict = False
        #: chunk files end with a crc32c of their bytes (zarr's ``crc32c`` codec)
        self.crc = False

    @classmethod
    def open(cls, path: str) -> RawZarrArray | None:
        """Return a reader for the array at ``path`` (a directory), or None."""
        if sys.byteorder != "little":  # pragma: no cover
            return None
        try:
            with open(os.path.join(path, "zarr.json")) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            return None
        try:
            if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
                return None
            if meta.get("storage_transformers"):
                return None
            dt = np.dtype(meta["data_type"])
            if dt.kind not in "fiub":
                return None
            if meta["chunk_grid"]["name"] != "regular":
                return None
            cke = meta["chunk_key_encoding"]
            if cke["name"] != "default" or (cke.get("configuration") or {}).get(
                "separator", "/"
            ) not in ("/", "."):
                return None
            shape = list(meta["shape"])
            chunk = list(meta["chunk_grid"]["configuration"]["chunk_shape"])
            if len(shape) == 0 or chunk[1:] != shape[1:]:
                return None
            codecs = meta["codecs"]
            if (
                len(codecs) == 2
                and _plain_bytes_codec(codecs[0])
                and codecs[1].get("name") == "crc32c"
            ):
                obj = cls(path, meta, None)  # raw rows + a 4-byte crc32c of them
                obj.crc = True
                return obj
            if len(codecs) != 1:
                return None
            c = codecs[0]
            if _plain_bytes_codec(c):
                return cls(path, meta, None)
            if c.get("name") == "sharding_indexed":
                conf = c["configuration"]
                inner = list(conf["chunk_shape"])
                if inner[1:] != shape[1:] or chunk[0] % inner[0]:
                    return None
                if len(conf["codecs"]) != 1 or not _plain_bytes_codec(conf["codecs"][0]):
                    return None
                if conf.get("index_location", "end") != "end":
                    return None
                ic = conf.get("index_codecs", [])
                if (
                    not ic
                    or not _plain_bytes_codec(ic[0])
                    or [x.get("name") for x in ic[1:]] not in ([], ["crc32c"])
                ):
                    return None
                obj = cls(path, meta, int(inner[0]))
                obj._index_extra = 4 if len(ic) == 2 else 0
                return obj
        except (KeyError, TypeError, ValueError):
            return None
        return None

    # ------------------------------------------------------------------
    def _chunk_file(self, c: int) -> str:
        if self.flat:
            return os.path.join(self.path, f"c.{c}{self._dot_tail}")
        return (
            os.path.join(self.path, "c", str(c), self._tail)
            if self.ndim > 1
            else os.path.join(self.path, "c", str(c))
        )

    def _open_chunk(self, c: int, cdir: int | None) -> int:
        """Open chunk ``c`` read-only (relative to the open ``c/`` directory ``cdir`` if given).

        Opening relative to a directory descriptor skips resolving the whole
        path for every chunk (about a third of the cost of a small read).
        """
        if cdir is None:
            return os.open(self._chunk_file(c), os.O_RDONLY)
        if self.flat:
            rel = f"c.{c}{self._dot_tail}"
        else:
            rel = f"{c}/{self._tail}" if self.ndim > 1 else str(c)
        return os.open(rel, os.O_RDONLY, dir_fd=cdir)

    def _open_cdir(self) -> int | None:
        if not _DIR_FD:
            return None  # pragma: no cover - platforms without dir_fd
        try:
            return os.open(self.path if self.flat else os.path.join(self.path, "c"), os.O_RDONLY)
        except OSError:  # no chunk written yet
            return None

    def _fill_rows(self, out: np.ndarray) -> None:
        out[...] = self.fill

    def _read_into(self, fh: Any, offset: int, out: np.ndarray) -> bool:
        view = out.reshape(-1).view(np.uint8).data
        n = os.preadv(fh, [view], offset) if hasattr(os, "preadv") else None
        if n is None:  # pragma: no cover - non-POSIX
            os.lseek(fh, offset, os.SEEK_SET)
            n = os.readv(fh, [view])
        return n == len(view)

    def _shard_index(self, fd: int) -> np.ndarray:
        n_inner = self.chunk_rows // (self.inner_rows or 1)
        nbytes = n_inner * 16 + self._index_extra
        size = os.fstat(fd).st_size
        buf = os.pread(fd, nbytes, size - nbytes)
        return np.frombuffer(buf[: n_inner * 16], dtype="<u8").reshape(n_inner, 2)

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``start .. stop - 1`` (full trailing dims)."""
        if out is None:
            out = np.empty((stop - start,) + self.shape[1:], dtype=self.dtype)
        cr = self.chunk_rows
        pos = start
        cdir = self._open_cdir() if stop > start else None
        try:
            while pos < stop:
                c = pos // cr
                c_end = min(stop, (c + 1) * cr)
                dst = out[pos - start : c_end - start]
                self._read_chunk_runs(c, [(pos - c * cr, c_end - c * cr, dst)], cdir)
                pos = c_end
        finally:
            if cdir is not None:
                os.close(cdir)
        return out

    def _read_chunk_rows(self, c: int, r0: int, r1: int, dst: np.ndarray) -> None:
        self._read_chunk_runs(c, [(r0, r1, dst)])

    def _read_chunk_runs(
        self, c: int, runs: list[tuple[int, int, np.ndarray]], cdir: int | None = None
    ) -> None:
        """Read runs ``(r0, r1, dst)`` of rows (chunk-local) of chunk ``c``, opening its file once."""
        try:
            fd = self._open_chunk(c, cdir)
        except FileNotFoundError:
            if self.strict:
                from ..errors import DamagedStoreError

                cr = self.chunk_rows
                raise DamagedStoreError(
                    f"chunk file {self._chunk_file(c)} of array {os.path.basename(self.path)!r} is missing: "
                    f"rows {c * cr + runs[0][0]}..{c * cr + runs[-1][1] - 1} cannot be read (other rows can). "
                    "Run `embstore check` to list the damage; restore the file from a backup or re-extract those rows"
                ) from None
            for _r0, _r1, dst in runs:
                self._fill_rows(dst)
            return
        try:
            if self.inner_rows is None:
                rb = self.row_bytes
                if (
                    self.crc
                    and len(runs) == 1
                    and runs[0][0] == 0
                    and runs[0][1] == self.chunk_rows
                ):
                    self._read_verified(
                        fd, c, runs[0][2]
                    )  # a whole chunk: check its crc32c on the way
                    return
                for r0, _r1, dst in runs:
                    if not self._read_into(fd, r0 * rb, dst):
                        from ..errors import DamagedStoreError

                        raise DamagedStoreError(
                            f"chunk file {self._chunk_file(c)} of array {os.path.basename(self.path)!r} is shorter "
                            f"than expected (rows {c * self.chunk_rows + r0}.. cannot be read); run `embstore check`"
                        )
                return
            index = self._shard_index(fd)
            ir = self.inner_rows
            for r0, r1, dst in runs:
                r = r0
                while r < r1:
                    k = r // ir
                    k_end = min(r1, (k + 1) * ir)
                    off, nb = (int(index[k, 0]), int(index[k, 1]))
                    part = dst[r - r0 : k_end - r0]
                    if off == _EMPTY:
                        self._fill_rows(part)
                    else:
                        if nb != ir * self.row_bytes or not self._read_into(
                            fd, off + (r - k * ir) * self.row_bytes, part
                        ):
                            raise OSError(
                                f"shard {self._chunk_file(c)} has an unexpected inner chunk size"
                            )
                    r = k_end
        finally:
            os.close(fd)

    def _read_verified(self, fd: int, c: int, dst: np.ndarray) -> None:
        """Read a whole chunk into ``dst`` and check its trailing crc32c."""
        import google_crc32c

        trailer = bytearray(4)
        view = dst.reshape(-1).view(np.uint8).data
        n = os.preadv(fd, [view, trailer], 0) if hasattr(os, "preadv") else None
        if n is None:  # pragma: no cover - non-POSIX
            n = self._read_into(fd, 0, dst) and len(view)
            trailer = bytearray(os.pread(fd, 4, len(view)))
            n += len(trailer)
        if n != len(view) + 4 or int(
            google_crc32c.value(dst.reshape(-1).view(np.uint8))
        ) != int.from_bytes(trailer, "little"):
            self._damaged(
                c, "fails its crc32c checksum" if n == len(view) + 4 else "is shorter than expected"
            )

    def _damaged(self, c: int, what: str) -> None:
        from ..errors import DamagedStoreError

        cr = self.chunk_rows
        raise DamagedStoreError(
            f"chunk file {self._chunk_file(c)} of array {os.path.basename(self.path)!r} {what}: rows "
            f"{c * cr}..{min(self.shape[0], (c + 1) * cr) - 1} cannot be read (other rows can). Run `embstore check` "
            "to list the damage; restore the file from a backup or re-extract those rows"
        )

    def verify_chunk(self, c: int) -> str | None:
        """Check chunk file ``c`` whole (size and crc32c); a message when damaged, None when fine or absent."""
        from ..errors import DamagedStoreError

        try:
            fd = self._open_chunk(c, None)
        except FileNotFoundError:
            return None
        try:
            if self.inner_rows is None:
                buf = np.empty((self.chunk_rows,) + self.shape[1:], dtype=self.dtype)
                if self.crc:
                    self._read_verified(fd, c, buf)
                elif not self._read_into(fd, 0, buf):
                    self._damaged(c, "is shorter than expected")
            return None
        except DamagedStoreError as exc:
            return str(exc)
        finally:
            os.close(fd)

    def read_positions(self, positions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows at arbitrary positions (any order, repeats allowed).

        Sorted, distinct positions are read straight into ``out`` (one
        ``preadv`` per run of consecutive rows, each chunk file opened once);
        other orders are read sorted and then reordered (one extra copy).

        Parameters
        ----------
        positions : numpy.ndarray
            Row positions.
        out : numpy.ndarray, optional
            Preallocated result, shape ``(len(positions), *shape[1:])``, this dtype,
            C-contiguous.

        Returns
        -------
        numpy.ndarray
        """
        positions = np.asarray(positions, dtype=np.int64)
        shape = (len(positions),) + self.shape[1:]
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        elif out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {self.dtype} array of shape {shape}")
        if len(positions) == 0:
            return out
        if len(positions) > 1 and not bool(np.all(positions[1:] > positions[:-1])):
            uniq, inv = np.unique(positions, return_inverse=True)
            out[...] = self.read_positions(uniq)[inv]
            return out
        if positions[0] < 0 or positions[-1] >= self.shape[0]:
            raise IndexError(
                f"row positions must lie in [0, {self.shape[0]}), got {positions[0]}..{positions[-1]}"
            )
        cr = self.chunk_rows
        # runs of consecutive positions, split at chunk boundaries
        chunk = positions // cr
        brk = np.nonzero((np.diff(positions) != 1) | (np.diff(chunk) != 0))[0] + 1
        starts = np.concatenate([[0], brk]).tolist()
        ends = np.concatenate([brk, [len(positions)]]).tolist()
        by_chunk: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for a, b in zip(starts, ends):
            c = int(chunk[a])
            r0 = int(positions[a]) - c * cr
            by_chunk.setdefault(c, []).append((r0, r0 + (b - a), out[a:b]))
        cdir = self._open_cdir()
        try:
            for c, runs in by_chunk.items():
                self._read_chunk_runs(c, runs, cdir)
        finally:
            if cdir is not None:
                os.close(cdir)
        return out

    @property
    def can_write(self) -> bool:
        """Whether :meth:`write_chunks` can write this array directly.

        Unsharded arrays always; sharded ones when their index checksum (if
        any) can be computed (``google_crc32c``, a zarr dependency).
        """
        if self.inner_rows is None or not self._index_extra:
            return True
        try:
            import google_crc32c  # noqa: F401
        except ImportError:  # pragma: no cover - zarr requires it
            return False
        return True

    def _shard_tail(self) -> bytes:
        """Index (and checksum) of a full shard whose inner chunks lie in order."""
        ir = self.inner_rows or self.chunk_rows
        n_inner = self.chunk_rows // ir
        ib = ir * self.row_bytes
        index = np.empty((n_inner, 2), dtype="<u8")
        index[:, 0] = np.arange(n_inner, dtype=np.uint64) * np.uint64(ib)
        index[:, 1] = ib
        raw = index.tobytes()
        if self._index_extra:
            import google_crc32c

            raw += int(google_crc32c.value(raw)).to_bytes(4, "little")
        return raw

    def write_chunks(self, start: int, values: np.ndarray) -> None:
        """Write rows ``start ..`` as whole chunk (or shard) files (``start`` on a chunk boundary).

        A shard is written as its inner chunks in order followed by the index
        of ``(offset, nbytes)`` pairs (and its crc32c checksum when the array
        declares one), which is what zarr's sharding codec writes for raw
        inner chunks with no empty chunk skipped.

        Parameters
        ----------
        start : int
            First row; a multiple of :attr:`chunk_rows`.
        values : numpy.ndarray
            Rows to write, dtype and trailing shape of the array. A partial last
            chunk is padded with the fill value.
        """
        if start % self.chunk_rows or not self.can_write:
            raise ValueError(
                "write_chunks needs a chunk-aligned start (and a writable shard index)"
            )
        cr = self.chunk_rows
        tail = self._shard_tail() if self.inner_rows is not None else b""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self.crc:
            import google_crc32c
        for k in range(0, len(values), cr):
            block = values[k : k + cr]
            if len(block) < cr:
                full = np.empty((cr,) + self.shape[1:], dtype=self.dtype)
                full[: len(block)] = block
                full[len(block) :] = self.fill
                block = full
            path = self._chunk_file((start + k) // cr)
            parent = os.path.dirname(path)
            if parent not in self._made_dirs:  # a chunk's directories are made once per writer
                os.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
            if self.crc:
                tail = int(google_crc32c.value(block.reshape(-1).view(np.uint8))).to_bytes(
                    4, "little"
                )
            tmp = f"{path}.{os.getpid()}.tmp"
            try:
                faults.step("write")
                with open(tmp, "wb", buffering=0) as fh:
                    _write_in_pieces(fh, block.reshape(-1).view(np.uint8).data)
                    if tail:
                        _write_in_pieces(fh, memoryview(tail))
                faults.step("rename")
                os.replace(tmp, path)
            except BaseException:  # disk full, interrupted: leave no temporary file behind
                try:
                    os.remove(tmp)
                except OSError:
                    pass
                raise
