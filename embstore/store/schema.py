"""Static schema of a store and validation of appended batches.

The schema is fixed when a store is created and saved in the group attributes
under the ``"embstore"`` key. It names the row dimension, the id coordinate,
the dense and ragged variables with their trailing dimensions, and the storage
dtype of every variable.

Storage dtypes
--------------
Hidden-state variables default to ``float16`` (about 3 significant decimal
digits: a relative rounding error below ``2**-11 ~ 4.9e-4``, values up to
65504), which halves the bytes of ``float32`` with no measurable effect on
cosine similarities of embeddings. Variables whose name contains ``logits`` or
``boxes`` default to ``float32``. Pass ``dtypes={"name": "float32"}`` to
:meth:`embstore.Store.create` to keep full precision.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import (
    DTypeMismatchError,
    FormatVersionError,
    NonFiniteError,
    NotAStoreError,
    ShapeMismatchError,
    ValidationError,
)

__all__ = [
    "FORMAT_VERSION",
    "RAGGED_LAYOUTS",
    "ROW_ARRAY_CHUNK_TARGET",
    "Schema",
    "check_numeric",
    "coerce_coord",
    "default_dtype",
]

#: Version of the on-disk layout written by this code. Stores with a larger
#: number are refused with :class:`~embstore.errors.FormatVersionError`.
FORMAT_VERSION = 1

#: Accepted layouts of ragged variables: ``"tokens"`` for per-row ``[n_i, F...]``
#: arrays, ``"map"`` for per-row ``[F, h_i, w_i]`` feature maps.
RAGGED_LAYOUTS = ("tokens", "map")

#: Target rows per chunk of one-dimensional row arrays (ids, coordinates,
#: ragged offsets): 16384 int64 values are 128 KiB per chunk file.
ROW_ARRAY_CHUNK_TARGET = 16384


def default_dtype(name: str) -> str:
    """Return the default storage dtype for a variable name.

    Parameters
    ----------
    name : str
        Variable name.

    Returns
    -------
    str
        ``"float32"`` if the name contains ``logits`` or ``boxes``, else
        ``"float16"``.

    Examples
    --------
    >>> default_dtype("pred_logits"), default_dtype("query_embeddings")
    ('float32', 'float16')
    """
    lowered = name.lower()
    if "logits" in lowered or "boxes" in lowered:
        return "float32"
    return "float16"


def _check_name(kind: str, name: Any) -> str:
    from .validation import check_name

    return check_name(kind, name)


def ragged_layout(dims: Sequence[str]) -> str:
    """Return the layout of a ragged variable from its declared dims.

    Parameters
    ----------
    dims : sequence of str
        Declared dims without the row dim, e.g. ``("token", "hidden")`` or
        ``("channel", "y", "x")``.

    Returns
    -------
    str
        ``"map"`` for ``(F, "y", "x")`` / ``(F, "h", "w")`` style dims (the last
        two vary per row), otherwise ``"tokens"`` (the first dim varies).

    Examples
    --------
    >>> ragged_layout(("token", "hidden")), ragged_layout(("channel", "y", "x"))
    ('tokens', 'map')
    """
    dims = tuple(dims)
    if len(dims) == 3 and (dims[1], dims[2]) in {("y", "x"), ("h", "w"), ("height", "width")}:
        return "map"
    return "tokens"


@dataclasses.dataclass
class Schema:
    """Static description of a store (saved in the group attributes).

    Parameters
    ----------
    row_dim : str
        Name of the row dimension (``"image"``, ``"instance"``...).
    id_name : str
        Name of the unique id coordinate along ``row_dim``.
    variables : dict
        Dense variable name -> trailing dims.
    ragged : dict
        Ragged variable name -> declared per-row dims.
    dtypes : dict
        Variable name -> storage dtype string.
    chunk_rows : int or None
        Rows per chunk (decided at the first append when None).
    inner_chunk_rows : int or None
        Rows per inner chunk when sharding is used, else None.
    n_prealloc : int
        Rows preallocated for region writers (0 when not preallocated).
    format_version : int
        On-disk format version.
    compressor : str or None
        ``None`` (raw, default) or ``"zstd"``.
    """

    row_dim: str
    id_name: str
    variables: dict[str, tuple[str, ...]]
    ragged: dict[str, tuple[str, ...]]
    dtypes: dict[str, str]
    chunk_rows: int | None = None
    inner_chunk_rows: int | None = None
    n_prealloc: int = 0
    format_version: int = FORMAT_VERSION
    compressor: str | None = None

    @classmethod
    def build(
        cls,
        row_dim: str,
        id_name: str,
        variables: Mapping[str, Sequence[str]] | None,
        ragged: Mapping[str, Sequence[str]] | None,
        dtypes: Mapping[str, Any] | None,
        chunk_rows: int | None,
        inner_chunk_rows: int | None,
        n_prealloc: int,
        compressor: str | None,
    ) -> Schema:
        """Validate user arguments of :meth:`Store.create` and build a schema."""
        _check_name("row_dim", row_dim)
        _check_name("id_name", id_name)
        if row_dim == id_name:
            raise ValidationError(
                f"id_name {id_name!r} must differ from row_dim {row_dim!r}; e.g. row_dim='image', id_name='image_id'"
            )
        var_dims: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (variables or {}).items()}
        ragged_dims: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (ragged or {}).items()}
        variables, ragged = var_dims, ragged_dims
        if not variables and not ragged:
            raise ValidationError(
                "a store needs at least one variable: pass variables={'query_embeddings': ('query', 'hidden')} "
                "or ragged={...}"
            )
        seen: set[str] = {row_dim, id_name}
        for kind, group in (("variable", variables), ("ragged variable", ragged)):
            for name, dims in group.items():
                _check_name(kind, name)
                if name in seen:
                    raise ValidationError(
                        f"{kind} name {name!r} is used twice (or equals row_dim/id_name); rename it"
                    )
                seen.add(name)
                for d in dims:
                    _check_name(f"dimension of {name!r}", d)
                if row_dim in dims:
                    raise ValidationError(
                        f"dims of {name!r} = {dims} must not include the row dim {row_dim!r}; it is added automatically"
                    )
                if kind == "ragged variable" and len(dims) < 2:
                    raise ValidationError(
                        f"ragged variable {name!r} needs at least 2 dims, e.g. ('token', 'hidden'); got {dims}"
                    )
        for name in ragged:  # each ragged variable also stores <name>_offset, _n, _h, _w arrays
            clash = sorted(seen & {name + sfx for sfx in ("_offset", "_n", "_h", "_w")})
            if clash:
                raise ValidationError(
                    f"variable names {clash} clash with the bookkeeping arrays of ragged variable {name!r}; "
                    "rename them"
                )
        out_dtypes: dict[str, str] = {}
        for name in list(variables) + list(ragged):
            out_dtypes[name] = default_dtype(name)
        for name, dt in (dtypes or {}).items():
            if name not in out_dtypes:
                raise ValidationError(
                    f"dtypes names {name!r}, which is not a variable; declared: {sorted(out_dtypes)}"
                )
            try:
                npdt = np.dtype(dt)
            except (TypeError, ValueError) as exc:
                raise DTypeMismatchError(
                    f"storage dtype {dt!r} for {name!r} is not a dtype ({exc}); use e.g. 'float16' or 'float32'"
                ) from exc
            if npdt.kind not in "fiub":
                raise ValidationError(
                    f"storage dtype {dt!r} for {name!r} is not numeric; use e.g. 'float16' or 'float32'"
                )
            out_dtypes[name] = npdt.name
        from .validation import check_chunk_rows

        for label, val in (("chunk_rows", chunk_rows), ("inner_chunk_rows", inner_chunk_rows)):
            check_chunk_rows(
                label, val, row_bytes=8
            )  # ids are 8 bytes a row; widest variable checked at append
        if (
            inner_chunk_rows is not None
            and chunk_rows is not None
            and chunk_rows % inner_chunk_rows
        ):
            raise ValidationError(
                f"chunk_rows={chunk_rows} must be a multiple of inner_chunk_rows={inner_chunk_rows}"
            )
        if n_prealloc < 0:
            raise ValidationError(f"n_rows={n_prealloc} must be >= 0")
        if n_prealloc and ragged:
            raise ValidationError(
                "preallocated stores (n_rows=...) for region writers cannot hold ragged variables "
                f"{sorted(ragged)}; store them in a separate store or use one appender"
            )
        if compressor not in (None, "zstd"):
            raise ValidationError(
                f"compressor={compressor!r} is not supported; use None (raw) or 'zstd'"
            )
        return cls(
            row_dim=row_dim,
            id_name=id_name,
            variables=var_dims,
            ragged=ragged_dims,
            dtypes=out_dtypes,
            chunk_rows=None if chunk_rows is None else int(chunk_rows),
            inner_chunk_rows=None if inner_chunk_rows is None else int(inner_chunk_rows),
            n_prealloc=int(n_prealloc),
            compressor=compressor,
        )

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["variables"] = {k: list(v) for k, v in self.variables.items()}
        d["ragged"] = {k: list(v) for k, v in self.ragged.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Schema:
        """Build a schema from attributes, checking the format version."""
        try:
            version = int(d["format_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotAStoreError(
                f"{where} has no valid embstore schema ({exc}); is it an embstore store?"
            ) from exc
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"{where} was written with store format version {version}, newer than this embstore "
                f"supports ({FORMAT_VERSION}); upgrade embstore (pip install -U embstore)"
            )
        return cls(
            row_dim=d["row_dim"],
            id_name=d["id_name"],
            variables={k: tuple(v) for k, v in d["variables"].items()},
            ragged={k: tuple(v) for k, v in d["ragged"].items()},
            dtypes=dict(d["dtypes"]),
            chunk_rows=d.get("chunk_rows"),
            inner_chunk_rows=d.get("inner_chunk_rows"),
            n_prealloc=int(d.get("n_prealloc", 0)),
            format_version=version,
            compressor=d.get("compressor"),
        )

    def pick_chunk_rows(self, row_bytes: int) -> int:
        """Choose rows per chunk so the largest dense chunk is about 8 MiB.

        Parameters
        ----------
        row_bytes : int
            Bytes of one row of the largest dense variable.

        Returns
        -------
        int
            A power of two between 16 and 1024 (a multiple of
            ``inner_chunk_rows`` when set).
        """
        target = 8 * 2**20
        rows = max(1, target // max(1, row_bytes))
        rows = 2 ** math.floor(math.log2(rows))
        rows = int(min(1024, max(16, rows)))
        if self.inner_chunk_rows:
            rows = max(self.inner_chunk_rows, rows - rows % self.inner_chunk_rows)
        return rows

    def row_array_chunk(self, name: str) -> int:
        """Rows per chunk of the row array ``name`` when it is created.

        Dense variables use :attr:`chunk_rows` (their chunks line up, one dask
        block each). One-dimensional row arrays (ids, coordinates, ragged
        offsets and grid sizes) hold a few bytes per row, so with the same
        chunking a DETR store of 16-row chunks would make one ~128-byte file
        per array and chunk; they get chunks of about
        :data:`ROW_ARRAY_CHUNK_TARGET` rows instead (a multiple of
        :attr:`chunk_rows`). Preallocated stores keep :attr:`chunk_rows` for
        every array, so that region writers never share a chunk.

        Parameters
        ----------
        name : str
            Array name.

        Returns
        -------
        int
            Rows per chunk (:attr:`chunk_rows` must be set).

        Examples
        --------
        >>> s = Schema.build("image", "image_id", {"q": ("query", "hidden")}, None, None, 16, None, 0, None)
        >>> s.row_array_chunk("q"), s.row_array_chunk("image_id")
        (16, 16384)
        """
        cr = int(self.chunk_rows or 1)
        if name in self.variables or self.n_prealloc:
            return cr
        return cr * max(1, ROW_ARRAY_CHUNK_TARGET // cr)


def check_numeric(
    name: str, arr: np.ndarray, storage: str, allow_nonfinite: bool, cast: bool = True
) -> np.ndarray:
    """Validate and cast one batch of a numeric variable to its storage dtype.

    Parameters
    ----------
    name : str
        Variable name (for messages).
    arr : numpy.ndarray
        The batch.
    storage : str
        Storage dtype.
    allow_nonfinite : bool
        Accept NaN/Inf when True.
    cast : bool
        Return the batch cast to the storage dtype (default). With False the
        validated batch is returned as it is, for callers that cast it later
        straight into their own buffer (:meth:`ChunkBuffer.append_cast
        <embstore.store.buffer.ChunkBuffer.append_cast>`), saving a copy.

    Returns
    -------
    numpy.ndarray
        The batch cast to the storage dtype (or unchanged when ``cast=False``).

    Raises
    ------
    DTypeMismatchError
        Non-numeric input, float input for an integer variable, or integers
        that do not fit the integer storage dtype (300 into ``int8``).
    NonFiniteError
        NaN/Inf present and not allowed, or finite values that would
        overflow a float storage dtype (``1e5`` into ``float16``), which
        ``allow_nonfinite`` does not admit.

    Examples
    --------
    >>> check_numeric("e", np.array([1.0, 2.0]), "float16", False).dtype
    dtype('float16')
    >>> check_numeric("e", np.array([1e5]), "float16", True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    embstore.errors.NonFiniteError: variable 'e' has values of magnitude up to 100000 that overflow ...
    """
    if arr.dtype.kind not in "fiub":
        raise DTypeMismatchError(
            f"variable {name!r} got dtype {arr.dtype}; pass a numeric (float/int/bool) array"
        )
    target = np.dtype(storage)
    if target.kind in "iub" and arr.dtype.kind == "f":
        raise DTypeMismatchError(
            f"variable {name!r} is stored as {storage} but got floats ({arr.dtype}); "
            "round/cast them first or declare a float dtype in Store.create(dtypes=...)"
        )
    if arr.size and arr.dtype.kind in "fiu":
        if arr.dtype == np.float16:
            # float16 has no SIMD min/max in numpy (64 ms per 64x100x256 batch, 88% of the
            # write time); the exponent bits test the same in 0.4 ms. Nothing overflows.
            if not allow_nonfinite and int((arr.view(np.uint16) & 0x7FFF).max()) >= 0x7C00:
                _raise_nonfinite(name, arr)
        elif arr.dtype.kind == "f":
            lo, hi = arr.min(), arr.max()  # NaN propagates; two SIMD reductions
            if not (np.isfinite(lo) and np.isfinite(hi)):
                if not allow_nonfinite:
                    _raise_nonfinite(name, arr)
                fin = arr[
                    np.isfinite(arr)
                ]  # rare path: NaN/Inf admitted, finite values still must fit
                lo, hi = (fin.min(), fin.max()) if fin.size else (0.0, 0.0)
            _check_range(name, float(lo), float(hi), arr.dtype, target, storage)
        elif not np.can_cast(arr.dtype, target, "safe"):  # ints that may not fit the storage dtype
            _check_range(name, int(arr.min()), int(arr.max()), arr.dtype, target, storage)
    return fast_cast(arr, target) if cast else arr


def _raise_nonfinite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    idx = tuple(int(i[0]) for i in np.nonzero(bad))
    raise NonFiniteError(
        f"variable {name!r} contains {int(bad.sum())} NaN/Inf values (first at index {idx}); "
        "fix the data or pass allow_nonfinite=True"
    )


def _check_range(
    name: str, lo: float, hi: float, src: np.dtype, target: np.dtype, storage: str
) -> None:
    """Refuse finite values (or ints) that do not fit the storage dtype (the cast would change them)."""
    if target.kind == "f":
        if src.kind == "f" and target.itemsize >= src.itemsize:
            return
        info = np.finfo(target)
        limit = float(info.max) * (1 + float(info.eps) / 4)  # values from here on round to inf
        if hi >= limit or lo <= -limit:
            raise NonFiniteError(
                f"variable {name!r} has values of magnitude up to {max(abs(lo), abs(hi)):g} "
                f"that overflow its storage dtype {storage} (max {float(info.max):g}); store it as "
                f"float32 (Store.create(dtypes={{{name!r}: 'float32'}})). allow_nonfinite=True admits only "
                "NaN/Inf already in the data"
            )
        return
    if target.kind in "iu":
        ii = np.iinfo(target)
        if lo < int(ii.min) or hi > int(ii.max):
            raise DTypeMismatchError(
                f"variable {name!r} has integer values from {lo} to {hi} that do not fit its storage dtype "
                f"{storage} ({int(ii.min)}..{int(ii.max)}); the cast would wrap them. Declare a wider dtype "
                f"(Store.create(dtypes={{{name!r}: 'int64'}})) or fix the data"
            )
    elif target.kind == "b" and (lo < 0 or hi > 1):
        raise DTypeMismatchError(
            f"variable {name!r} is stored as bool but got integers from {lo} to {hi}; pass 0/1 or bools"
        )


_CAST_STEP = 32768  # torch's parallel grain size: slices this small convert on the calling thread


def fast_cast(arr: np.ndarray, target: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Cast an array; float32 -> float16 uses torch when it is already imported.

    numpy's float32 -> float16 conversion runs at a fraction of memory speed
    (~1.3 GB/s here); torch's vectorised one gives bit-identical results much
    faster. torch is never imported here: it is used only if the caller's
    process has it loaded already (as extraction pipelines and the legacy
    importer do).

    The conversion runs in slices of 32768 values, torch's parallel grain
    size, so each slice converts on the calling thread: a whole-array
    ``tensor.to(float16)`` fans out to torch's intra-op thread pool, which
    on a busy machine (the model using the cores, or a writer thread
    beside the main one) measured 1.1 GB/s against ~20 GB/s for the sliced
    single-thread conversion. When torch is set to one thread
    (``torch.set_num_threads(1)``) nothing fans out and the array converts in
    one call.

    Parameters
    ----------
    arr : numpy.ndarray
        Values to cast.
    target : numpy.dtype
        Target dtype.
    out : numpy.ndarray, optional
        C-contiguous array of dtype ``target`` and the shape of ``arr`` to
        cast into (e.g. a slice of an append buffer: one pass over the data
        instead of a cast followed by a copy). Returned.

    Returns
    -------
    numpy.ndarray
        The cast values (``arr`` itself when it has the target dtype and no
        ``out`` is given).

    Examples
    --------
    >>> fast_cast(np.array([1.0, 2.5], dtype=np.float32), np.dtype("float16")).dtype
    dtype('float16')
    >>> buf = np.zeros(3, dtype=np.float16)
    >>> fast_cast(np.array([1.0, 2.5], dtype=np.float32), np.dtype("float16"), out=buf[1:]).tolist()
    [1.0, 2.5]
    >>> buf.tolist()
    [0.0, 1.0, 2.5]
    """
    target = np.dtype(target)
    if arr.dtype == target and out is None:
        return arr
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and target == np.float16
        and arr.dtype == np.float32
        and arr.size > 4096
        and (
            out is None
            or (out.flags.c_contiguous and out.flags.writeable and out.shape == arr.shape)
        )
    ):
        try:
            src = np.ascontiguousarray(arr)
            dst = np.empty(src.shape, dtype=np.float16) if out is None else out
            s = (
                torch.from_numpy(src.reshape(-1))
                if src.flags.writeable
                else torch.from_numpy(src.reshape(-1).copy())
            )
            d = torch.from_numpy(dst.reshape(-1))
            n = int(s.numel())
            # one thread configured: nothing fans out, so one call (no per-slice overhead)
            step = n if torch.get_num_threads() == 1 else _CAST_STEP
            for i in range(0, n, step):
                d[i : i + step].copy_(s[i : i + step])
            return dst
        except Exception:  # pragma: no cover - any torch oddity: numpy fallback
            pass
    with np.errstate(over="ignore", invalid="ignore"):
        if out is None:
            return arr.astype(target)
        np.copyto(out, arr, casting="unsafe")
        return out


def coerce_coord(name: str, values: Any, n: int) -> np.ndarray:
    """Turn coordinate values into a 1-D numpy array of a storable dtype.

    Parameters
    ----------
    name : str
        Coordinate name (for messages).
    values : array-like
        One value per row.
    n : int
        Expected length.

    Returns
    -------
    numpy.ndarray
        int64, float64, bool or unicode (``<U``) array of length ``n``.

    Raises
    ------
    ShapeMismatchError
        Wrong length or not 1-D.
    DTypeMismatchError
        Values that are not numbers, bools or strings.
    """
    from .validation import check_coord_ints, reject_mixed

    reject_mixed(f"values of coordinate {name!r}", values)
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise ShapeMismatchError(
            f"coordinate {name!r} has shape {arr.shape}; expected one value per row ({n},)"
        )
    if arr.dtype.kind == "b":
        return arr.astype(bool)
    if arr.dtype.kind in "iu":
        check_coord_ints(name, arr)
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64)
    if arr.dtype.kind in "UT":
        return arr.astype(str)
    if arr.dtype.kind == "O":
        if all(isinstance(v, str) for v in arr):
            return arr.astype(str)
        if all(isinstance(v, (bool, np.bool_)) for v in arr):
            return arr.astype(bool)
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            check_coord_ints(name, arr)
            return arr.astype(np.int64)
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in arr):
            return arr.astype(np.float64)
    raise DTypeMismatchError(
        f"coordinate {name!r} has values of dtype {arr.dtype} (e.g. {arr[:1].tolist()!r}); "
        "use ints, floats, bools or strings"
    )
