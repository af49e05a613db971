"""The analyzer core: selection, pooling, vectors, matrices and streaming.

:class:`AnalyzerCore` implements the members every analysis mixin relies on
(``ARCHITECTURE.md``, "Analyzer contract"): ``store``, ``row_dim``,
``id_name``, ``sel``, ``pool``, ``vectors``, ``matrix``, ``labels``,
``iter_vectors`` and ``coords``. The helper objects of
:class:`~embstore.EmbeddingAnalyzer` (``an.index``, ``an.fairness``, ...) hold
a typed reference to it (:mod:`embstore.analysis.accessor`). It works on an :class:`embstore.Store`, a
path to one, an old per-image ``.pt`` directory or a plain
:class:`xarray.Dataset`.

Vectors
-------
A *vector* is one row of the 2-D matrix an analysis works on:

* ``pool=None`` keeps every query: a ``(image, query, hidden)`` variable gives
  ``image x query`` vectors, in row-major order (all queries of the first
  image, then the second image, ...), labelled by id and query;
* ``pool="mean" | "max" | "confidence" | "topk"`` (``"topk:K"`` or ``k=K``)
  gives one vector per row;
* a variable that already is one vector per row, e.g. a face ``embedding``
  ``(image, hidden)``, gives its rows whatever ``pool`` says (there is nothing
  to pool).

A variable with a ``layer`` dimension (``decoder_output``) is reduced to one
layer first: ``layer=`` picks it (negative values count from the end) and
``layer=None`` means the last layer, which equals ``query_embeddings``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import SelectionError, UnknownVariableError, ValidationError
from .accessor import split_spec
from .blocks import block_bounds, iter_array_blocks
from .defaults import resolve_variable
from .pooling import parse_pool, pool_dataarray
from .sources import open_source
from .spec import VectorSpec

__all__ = ["SPATIAL_DIMS", "AnalyzerCore", "feature_dim"]

logger = logging.getLogger(__name__)

#: Dimensions of variable-size maps that pooling averages away.
SPATIAL_DIMS: tuple[str, ...] = ("token", "y", "x")

_RAGGED_BLOCK = 256


def feature_dim(dims: Sequence[str]) -> str:
    """The feature dimension of a variable: the last dim that is not spatial.

    Parameters
    ----------
    dims : sequence of str
        Dimensions without the row dimension.

    Returns
    -------
    str
        e.g. ``"hidden"`` for ``("token", "hidden")`` and ``"channel"`` for
        ``("channel", "y", "x")``.

    Examples
    --------
    >>> feature_dim(("channel", "y", "x"))
    'channel'
    >>> feature_dim(("layer", "query", "hidden"))
    'hidden'
    """
    non_spatial = [d for d in dims if d not in SPATIAL_DIMS]
    if not non_spatial:
        raise ValidationError(f"dims {list(dims)} have no feature dimension")
    return non_spatial[-1]


def _attach_index(obj: xr.DataArray, dim: str) -> xr.DataArray:
    """Attach the RowIndex so ``.sel(skin=1)`` works on results (best effort)."""
    try:
        from ..selection import attach_row_index
    except ImportError:  # pragma: no cover - selection module always shipped
        return obj
    return attach_row_index(obj, dim)


def _row_mask(columns: Mapping[Hashable, np.ndarray], labels: Mapping[Hashable, Any]) -> np.ndarray:
    from ..selection import row_mask

    return row_mask(columns, labels)


def _dask_array() -> Any:
    """``dask.array``, imported on use (its functions carry no annotations)."""
    import dask.array

    return dask.array


@dataclass(frozen=True)
class _Rows:
    """Some rows of a source: what :meth:`AnalyzerCore.sel` hands to ``__init__``."""

    source: Any
    positions: np.ndarray | None


class AnalyzerCore:
    """Selection, pooling and matrices over a store (the analyzer's core).

    Use it through :class:`embstore.EmbeddingAnalyzer`, which adds the
    search, fairness, discovery and plotting helpers over it.

    Parameters
    ----------
    store_or_path : Store, str, os.PathLike, xarray.Dataset or AnalyzerCore
        An open :class:`embstore.Store`, a path to a store (opened
        read-only), an old per-image ``.pt`` directory, a Dataset, or
        another analyzer (same rows).
    row_dim, id_name : str, optional
        Only for a plain :class:`xarray.Dataset` (see
        :class:`~embstore.analysis.sources.DatasetSource`).

    Examples
    --------
    >>> from embstore.analysis.core import AnalyzerCore
    >>> core = AnalyzerCore(demo_path)
    >>> len(core), core.row_dim, core.id_name
    (120, 'image', 'image_id')
    >>> core.sel(skin=[1, 2]).pool(method="confidence").dims
    ('image', 'hidden')
    """

    def __init__(
        self, store_or_path: Any, *, row_dim: str | None = None, id_name: str | None = None
    ) -> None:
        source: Any
        positions: np.ndarray | None
        if isinstance(store_or_path, _Rows):
            source, positions = store_or_path.source, store_or_path.positions
        elif isinstance(store_or_path, AnalyzerCore):
            source, positions = store_or_path._source, store_or_path._positions
        else:
            source, positions = open_source(store_or_path, row_dim, id_name), None
        self._source: Any = source
        self._positions: np.ndarray | None = positions
        self._id_lookup: tuple[int, pd.Index] | None = None

    # ------------------------------------------------------------- internals
    def _derive(self, positions: np.ndarray) -> Self:
        """A new analyzer of the same class on the given source rows (through ``__init__``)."""
        return type(self)(_Rows(self._source, positions))

    def _source_positions(self) -> np.ndarray:
        if self._positions is not None:
            return self._positions
        return np.arange(len(self._source.ids))

    # ------------------------------------------------------------ properties
    @property
    def store(self) -> Any:
        """The :class:`embstore.Store` analysed (``None`` for an old directory)."""
        return self._source.store

    @property
    def row_dim(self) -> str:
        """Name of the row dimension (``"image"``, ``"instance"``, ...)."""
        return self._source.row_dim

    @property
    def id_name(self) -> str:
        """Name of the unique id coordinate (``"image_id"``, ...)."""
        return self._source.id_name

    @property
    def ids(self) -> np.ndarray:
        """Ids of the selected rows, in row order."""
        ids = np.asarray(self._source.ids)
        return ids if self._positions is None else ids[self._positions]

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates of the selected rows; index = ids (named ``id_name``)."""
        df = self._source.coords
        if self._positions is not None:
            df = df.iloc[self._positions]
        df.index.name = self.id_name
        return df

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables and their dims (without the row dimension)."""
        return self._source.variables

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Variable-size variables and their dims (without the row dimension)."""
        return self._source.ragged_variables

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        what = (
            self.store.path
            if self.store is not None
            else getattr(self._source, "path", type(self._source).__name__)
        )
        return (
            f"<{type(self).__name__} {what!s}: {len(self)} {self.row_dim} rows, "
            f"variables {sorted(self.variables) + sorted(self.ragged_variables)}>"
        )

    # ------------------------------------------------------------- selection
    def sel(self, **coords: Any) -> Self:
        """Select rows by coordinate labels; returns an analyzer on the subset.

        Same rules as :meth:`embstore.Store.sel` (:mod:`embstore.selection`):
        a scalar selects equal rows, a list any of its values (OR), several
        coordinates combine with AND, ``slice(a, b)`` means ``a <= v <= b``,
        row order is kept. Selections chain: ``an.sel(skin=1).sel(lighting="dim")``.

        Parameters
        ----------
        **coords
            ``coordinate=value | list | slice``; the id coordinate works too.

        Returns
        -------
        EmbeddingAnalyzer
            A new analyzer (same class) restricted to the matching rows.

        Raises
        ------
        SelectionError
            Unknown coordinate, or labels matching no row; the message lists
            the values present.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> sub = an.sel(skin=[1, 2])
        >>> type(sub).__name__, sorted(set(sub.coords["skin"])), len(sub) < len(an)
        ('EmbeddingAnalyzer', [1, 2], True)
        """
        if not coords:
            return self._derive(self._source_positions())
        table = self.coords
        columns: dict[Hashable, np.ndarray] = {self.id_name: np.asarray(self.ids)}
        columns.update({str(c): table[c].to_numpy() for c in table.columns})
        wanted: dict[Hashable, Any] = dict(coords.items())
        mask = _row_mask(columns, wanted)
        return self._derive(self._source_positions()[mask])

    def _position_of(self, row_id: Any) -> int | None:
        """Source position of ``row_id`` within the selection, or None."""
        ids = self.ids
        if self._id_lookup is None or self._id_lookup[0] != len(ids):
            self._id_lookup = (len(ids), pd.Index(ids))
        index = self._id_lookup[1]
        try:
            loc = index.get_indexer([row_id])[0]
        except (TypeError, ValueError):
            return None
        if loc < 0:
            return None
        return int(self._source_positions()[loc])

    # ----------------------------------------------------------- data access
    def _unknown(self, name: str) -> UnknownVariableError:
        return UnknownVariableError(
            f"variable {name!r} not found; dense variables: {sorted(self.variables)}, "
            f"ragged variables: {sorted(self.ragged_variables)}"
        )

    def _row_coord_vars(self, dim: str | None = None, repeat: int = 1) -> dict[str, Any]:
        dim = dim or self.row_dim
        table = self.coords
        out: dict[str, Any] = {self.id_name: (dim, np.repeat(np.asarray(self.ids), repeat))}
        for c in table.columns:
            out[str(c)] = (dim, np.repeat(table[c].to_numpy(), repeat))
        return out

    def _dense(self, name: str) -> xr.DataArray:
        """Selected rows of a dense variable, lazy, with row coordinates."""
        if name not in self.variables:
            raise self._unknown(name)
        arr = self._source.dataarray(name)
        if self._positions is not None:
            arr = arr.isel({self.row_dim: self._positions})
        return arr.assign_coords(self._row_coord_vars())

    def _select_layer(
        self, arr: xr.DataArray, layer: int | None, over: tuple[str, ...]
    ) -> xr.DataArray:
        if "layer" not in arr.dims:
            if layer is not None:
                raise ValidationError(
                    f"layer={layer} given but {arr.name!r} has no 'layer' dimension "
                    f"(dims {list(arr.dims)}); leave layer=None"
                )
            return arr
        if layer is None:
            if "layer" in over:
                return arr
            layer = -1
        n = arr.sizes["layer"]
        if (
            isinstance(layer, bool)
            or not isinstance(layer, (int, np.integer))
            or not -n <= layer < n
        ):
            raise ValidationError(
                f"layer={layer!r} is out of range for {arr.name!r} with {n} layers; "
                f"pass an integer in [{-n}, {n - 1}] (negative counts from the end)"
            )
        out = arr.isel(layer=int(layer))
        out.attrs["layer"] = int(layer) % n
        return out

    def _pool_ragged(self, name: str, over: tuple[str, ...], method: str) -> xr.DataArray:
        import dask

        da = _dask_array()
        dims = self.ragged_variables[name]
        feat = feature_dim(dims)
        if set(over) != set(dims) - {feat}:
            raise ValidationError(
                f"ragged variable {name!r} {list(dims)} pools over "
                f"{[d for d in dims if d != feat]}, got over={list(over)}"
            )
        if method not in ("mean", "max"):
            raise ValidationError(
                f"ragged variable {name!r} supports pool 'mean' or 'max', got {method!r}"
            )
        axis = tuple(i for i, d in enumerate(dims) if d != feat)
        ids = self.ids
        if len(ids) == 0:
            raise SelectionError("the selection is empty")
        source = self._source
        reduce = np.mean if method == "mean" else np.max

        def load(block_ids: np.ndarray) -> np.ndarray:
            if hasattr(source, "iter_ragged"):
                arrays = (
                    row for _, row in source.iter_ragged(name, np.asarray(block_ids).tolist())
                )
            else:
                arrays = (source.get_ragged(name, i) for i in block_ids)
            rows = [reduce(np.asarray(a, dtype=np.float32), axis=axis) for a in arrays]
            return np.stack(rows).astype(np.float32)

        n_feat = load(ids[:1]).shape[1]
        token = uuid.uuid4().hex
        blocks = [
            da.from_delayed(
                dask.delayed(load)(
                    ids[s : s + _RAGGED_BLOCK],
                    dask_key_name=f"pool-{name}-{method}-{s}-{token}",
                ),
                (len(ids[s : s + _RAGGED_BLOCK]), n_feat),
                dtype=np.float32,
            )
            for s in range(0, len(ids), _RAGGED_BLOCK)
        ]
        out = xr.DataArray(
            da.concatenate(blocks), dims=(self.row_dim, feat), name=name
        ).assign_coords(self._row_coord_vars())
        return out

    # --------------------------------------------------------------- pooling
    def pool(
        self,
        variable: str | None = None,
        over: str | Sequence[str] = "query",
        method: str = "mean",
        k: int | None = None,
        layer: int | None = None,
        *,
        logits: str = "pred_logits",
        score: str = "foreground",
    ) -> xr.DataArray:
        """Pool a variable into one vector per row (lazy, labeled).

        Parameters
        ----------
        variable : str, optional
            Default: the store's default variable (:func:`~embstore.analysis.defaults.resolve_variable`).
            Variable to pool; ``(row, query, hidden)`` or, with ``layer``,
            ``(row, layer, query, hidden)``. Ragged variables
            (``encoder_output``, ``backbone_features``) pool over their
            token / spatial dims with ``mean`` or ``max``.
        over : str or sequence of str, default "query"
            Dimension(s) pooled away.
        method : {"mean", "max", "confidence", "topk"}
            ``confidence``: mean weighted by each query's foreground
            probability from ``pred_logits`` (softmax, ``1 - p(no-object)``,
            weights normalised over the row's queries); ``topk``: plain mean of
            the ``k`` most confident queries (ties: lower query index). See
            :mod:`embstore.analysis.pooling`.
        k : int, optional
            Number of queries for ``topk`` (``method="topk:K"`` also works).
        layer : int, optional
            Layer of ``decoder_output`` to use (negative counts from the
            end); ``None`` = last layer unless ``"layer"`` is in ``over``.
        logits : str, default "pred_logits"
            Variable holding the class logits (last class = no object).
        score : {"foreground", "max_class"}
            Query score for ``confidence`` / ``topk``.

        Returns
        -------
        xarray.DataArray
            float32, dims ``(row_dim, hidden)``, dask-backed, with the id and
            every row coordinate (and a RowIndex, so ``.sel(skin=1)`` works).

        Raises
        ------
        UnknownVariableError
            If ``variable`` (or ``logits`` when needed) is not in the store.
        ValidationError
            On a bad method, dimension, layer or ``k``.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> pooled = an.pool(method="topk", k=5)
        >>> pooled.dims, pooled.shape, pooled.attrs["k"]
        (('image', 'hidden'), (120, 16), 5)
        """
        variable = resolve_variable(self, variable)
        method_, k = parse_pool(method, k)
        if method_ is None:
            raise ValidationError(
                "pool() needs a method ('mean', 'max', 'confidence', 'topk'); "
                "use vectors(pool=None) to keep every query"
            )
        over_t = (over,) if isinstance(over, str) else tuple(over)
        if variable in self.ragged_variables and variable not in self.variables:
            if layer is not None:
                raise ValidationError(f"layer= does not apply to ragged {variable!r}")
            out = self._pool_ragged(variable, over_t, method_)
        else:
            arr = self._select_layer(self._dense(variable), layer, over_t)
            lg = None
            if method_ in ("confidence", "topk"):
                if logits not in self.variables:
                    raise ValidationError(
                        f"method={method_!r} weights queries by class confidence "
                        f"but the store has no {logits!r} variable; pass "
                        f"logits=<name> or use method='mean'"
                    )
                lg = self._dense(logits)
            out = pool_dataarray(arr, over_t, method_, logits=lg, k=k, score=score)
            if out.dims[0] != self.row_dim or out.ndim != 2:
                raise ValidationError(
                    f"pooling {variable!r} {list(arr.dims)} over {list(over_t)} leaves "
                    f"dims {list(out.dims)}; pool over more dims or pick a layer="
                )
        out.name = variable
        out.attrs.update(
            {"pool": method_, "over": ",".join(over_t), "score": score}
            | ({"k": int(k)} if k is not None and method_ == "topk" else {})
        )
        return _attach_index(out, self.row_dim)

    # --------------------------------------------------------------- vectors
    def _is_vector_per_row(self, variable: str) -> bool:
        dims = self.variables.get(variable)
        return dims is not None and len(dims) == 1

    def vectors(
        self,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        *,
        spec: VectorSpec | None = None,
        **pool_kwargs: Any,
    ) -> xr.DataArray:
        """The 2-D ``(vector, hidden)`` array an analysis works on (lazy, labeled).

        Parameters
        ----------
        variable : str, optional
            Default: the store's default variable (:func:`~embstore.analysis.defaults.resolve_variable`).
            Variable to read.
        pool : str or None, default "mean"
            ``None`` keeps every query (vectors are ``(row, query)`` pairs,
            row-major); otherwise a method of :meth:`pool` (``"topk:K"``
            allowed). Ignored for variables that are already one vector per
            row.
        layer : int, optional
            Layer of ``decoder_output`` (default: last).
        spec : VectorSpec, optional
            The vectors as one :class:`~embstore.analysis.spec.VectorSpec`
            (its pool, ``k`` and ``over`` are used; a flat ``variable`` or
            ``layer`` that is given overrides it).
        **pool_kwargs
            ``k``, ``over``, ``logits``, ``score`` passed to :meth:`pool`.

        Returns
        -------
        xarray.DataArray
            float32, dims ``("vector", <feature>)``; coordinates along
            ``vector``: the id, ``query`` when unpooled, and every row
            coordinate.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> an.vectors(pool=None).shape
        (960, 16)
        >>> from embstore.analysis.spec import VectorSpec
        >>> an.vectors(spec=VectorSpec(pool="topk", k=2)).attrs["k"]
        2
        """
        variable, pool, layer, extra = split_spec(
            spec, variable, pool, layer, what="vectors()", allow_over=True
        )
        pool_kwargs = extra | pool_kwargs
        variable = resolve_variable(self, variable)
        method, k = parse_pool(pool, pool_kwargs.pop("k", None))
        is_ragged = variable in self.ragged_variables and variable not in self.variables
        if is_ragged:
            if method is None:
                raise ValidationError(
                    f"ragged variable {variable!r} needs pool='mean' or 'max' to become "
                    "vectors (its rows have different sizes)"
                )
            dims = self.ragged_variables[variable]
            over = tuple(d for d in dims if d != feature_dim(dims))
            out = self.pool(variable, over=pool_kwargs.pop("over", over), method=method)
            return self._as_vectors(out)
        if method is None or self._is_vector_per_row(variable):
            arr = self._select_layer(self._dense(variable), layer, ())
            if arr.ndim == 2:
                return self._as_vectors(arr.astype(np.float32))
            if arr.ndim != 3:
                raise ValidationError(
                    f"{variable!r} has dims {list(arr.dims)}; pool=None can flatten "
                    "(row, item, feature) only: pass layer= or a pool method"
                )
            n, q, d = arr.shape
            inner = arr.dims[1]
            data = arr.data.astype(np.float32).reshape((n * q, d))
            coords = self._row_coord_vars("vector", repeat=q)
            coords[str(inner)] = ("vector", np.tile(np.arange(q), n))
            # id first, then the inner index, then the other coordinates
            ordered = {self.id_name: coords.pop(self.id_name), str(inner): coords.pop(str(inner))}
            ordered.update(coords)
            out = xr.DataArray(
                data,
                dims=("vector", arr.dims[2]),
                coords=ordered,
                name=variable,
                attrs=dict(arr.attrs) | {"pool": "none"},
            )
            return _attach_index(out, "vector")
        out = self.pool(variable, method=method, k=k, layer=layer, **pool_kwargs)
        return self._as_vectors(out)

    def _as_vectors(self, arr: xr.DataArray) -> xr.DataArray:
        try:
            from ..selection import detach_row_index

            arr = detach_row_index(arr)
        except ImportError:  # pragma: no cover
            pass
        out = arr.swap_dims({self.row_dim: "vector"}).transpose("vector", ...)
        return _attach_index(out, "vector")

    def labels(
        self,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        *,
        spec: VectorSpec | None = None,
        **pool_kwargs: Any,
    ) -> pd.DataFrame:
        """One row of labels per vector of :meth:`vectors` (no data is read).

        Parameters
        ----------
        variable, pool, layer, spec, **pool_kwargs
            As in :meth:`vectors`.

        Returns
        -------
        pandas.DataFrame
            Columns: the id (``id_name``), ``query`` when unpooled, then every
            row coordinate; index: vector position ``0..n-1``.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> an.labels(pool=None)[["image_id", "query"]].head(2)
           image_id  query
        0         0      0
        1         0      1
        """
        variable, pool, layer, extra = split_spec(
            spec, variable, pool, layer, what="labels()", allow_over=True
        )
        pool_kwargs = extra | pool_kwargs
        variable = resolve_variable(self, variable)
        method, _ = parse_pool(pool, pool_kwargs.get("k"))
        base = self.coords.reset_index()
        base = base.rename(columns={base.columns[0]: self.id_name}).reset_index(drop=True)
        if variable in self.ragged_variables and variable not in self.variables:
            if method is None:
                raise ValidationError(f"ragged variable {variable!r} needs pool='mean' or 'max'")
            return base
        if variable not in self.variables:
            raise self._unknown(variable)
        if method is not None or self._is_vector_per_row(variable):
            return base
        dims = self.variables[variable]
        if "layer" in dims:
            dims = tuple(d for d in dims if d != "layer")
        if len(dims) != 2:
            raise ValidationError(
                f"{variable!r} has dims {list(dims)}; pool=None can flatten "
                "(row, item, feature) only"
            )
        q = self._source.dataarray(variable).sizes[dims[0]]
        rep = base.loc[base.index.repeat(q)].reset_index(drop=True)
        rep.insert(1, dims[0], np.tile(np.arange(q), len(base)))
        return rep

    # ------------------------------------------------------------- streaming
    @staticmethod
    def _block_bounds(chunks: Sequence[int], block_rows: int) -> list[tuple[int, int]]:
        """Group consecutive chunks into blocks of at most ``block_rows`` rows."""
        return block_bounds(chunks, block_rows)

    def _iter_dataarray(
        self, arr: xr.DataArray, block_rows: int, progress: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``arr`` as ``(start, float32 block)`` pairs (the one block producer)."""
        return iter_array_blocks(arr, block_rows, progress)

    def iter_vectors(
        self,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        block_rows: int = 65536,
        *,
        progress: bool = False,
        spec: VectorSpec | None = None,
        **pool_kwargs: Any,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream the vectors of :meth:`vectors` block by block.

        Blocks follow the storage chunks (whole chunks grouped up to
        ``block_rows`` vectors; a larger chunk is split), so each chunk is read
        once and memory stays bounded by a block: this works on stores larger
        than RAM.

        Parameters
        ----------
        variable, pool, layer, spec, **pool_kwargs
            As in :meth:`vectors`.
        block_rows : int, default 65536
            Maximum number of vectors per block.
        progress : bool, default False
            Show a tqdm progress bar (only on a terminal).

        Yields
        ------
        start : int
            Position of the block's first vector.
        block : numpy.ndarray
            float32 array ``[n, D]``.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> [(start, block.shape) for start, block in an.iter_vectors(block_rows=50)]
        [(0, (50, 16)), (50, (50, 16)), (100, (20, 16))]
        """
        variable, pool, layer, extra = split_spec(
            spec, variable, pool, layer, what="iter_vectors()", allow_over=True
        )
        pool_kwargs = extra | pool_kwargs
        variable = resolve_variable(self, variable)
        arr = self.vectors(variable, pool=pool, layer=layer, **pool_kwargs)
        return self._iter_dataarray(arr, block_rows, progress)

    def matrix(
        self,
        variable: str | None = None,
        pool: str | None = None,
        layer: int | None = None,
        *,
        block_rows: int = 65536,
        spec: VectorSpec | None = None,
        **pool_kwargs: Any,
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """The vectors as one in-memory float32 matrix plus their labels.

        Parameters
        ----------
        variable : str, optional
            Default: the store's default variable (:func:`~embstore.analysis.defaults.resolve_variable`).
            Variable to read.
        pool : str or None, default None
            ``None`` keeps every query (``[N * Q, D]``, like the old
            ``get_query_embeddings_as_matrix``); else a :meth:`pool` method.
        layer : int, optional
            Layer of ``decoder_output``.
        block_rows : int, default 65536
            Read block size (see :meth:`iter_vectors`).
        spec : VectorSpec, optional
            As in :meth:`vectors`.
        **pool_kwargs
            ``k``, ``over``, ``logits``, ``score``.

        Returns
        -------
        matrix : numpy.ndarray
            float32 ``[N, D]``.
        labels : pandas.DataFrame
            One row per matrix row (see :meth:`labels`).

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> m, lab = an.matrix("query_embeddings")
        >>> m.shape, list(lab.columns[:3])
        ((960, 16), ['image_id', 'query', 'file_name'])
        """
        variable, pool, layer, extra = split_spec(
            spec, variable, pool, layer, what="matrix()", allow_over=True
        )
        pool_kwargs = extra | pool_kwargs
        variable = resolve_variable(self, variable)
        arr = self.vectors(variable, pool=pool, layer=layer, **dict(pool_kwargs))
        out = np.empty(arr.shape, dtype=np.float32)
        for start, block in self._iter_dataarray(arr, block_rows):
            out[start : start + len(block)] = block
        labels = self.labels(variable, pool=pool, layer=layer, **pool_kwargs)
        return out, labels
