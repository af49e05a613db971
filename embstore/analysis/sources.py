"""Adapters giving the analyzer one view of a Store, an xarray Dataset or an old directory.

Every source exposes the same small interface (internal, used by
:class:`~embstore.analysis.core.AnalyzerCore`):

``row_dim``, ``id_name``, ``store``
    Row dimension, id coordinate name, and the :class:`~embstore.Store`
    (``None`` when there is none).
``ids``
    NumPy array of row ids, in row order.
``coords``
    :class:`pandas.DataFrame` of the row coordinates other than the id,
    indexed by id.
``variables`` / ``ragged_variables``
    ``{name: dims}`` without the row dimension.
``dataarray(name)``
    Dense variable as a dask-backed :class:`xarray.DataArray` ``(row, ...)``
    without coordinates (the analyzer attaches its own).
``get_ragged(name, id)``
    One row of a variable-size variable as NumPy.
``attrs``
    Provenance dictionary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import UnknownVariableError, ValidationError
from .legacy_dir import LegacyDirSource, is_legacy_dir

__all__ = ["DatasetSource", "LegacyDirSource", "PooledSource", "StoreSource", "open_source"]

_DEFAULT_CHUNK_ROWS = 4096


def _as_dask(arr: xr.DataArray, row_dim: str, rows: int | None = None) -> xr.DataArray:
    """``arr`` without coordinates, dask-backed (chunked along rows if needed).

    Store views are lazily indexed (not dask): they are chunked like the
    storage (``rows`` rows a block), so each block reads its own rows once.
    """
    if arr.chunks is None:  # (reading .data would load a lazily indexed array)
        arr = arr.chunk({row_dim: rows or _DEFAULT_CHUNK_ROWS})
    return xr.DataArray(arr.data, dims=arr.dims, name=arr.name, attrs=dict(arr.attrs))


class StoreSource:
    """An :class:`embstore.Store` seen through the analyzer's source interface.

    Parameters
    ----------
    store : embstore.Store
        An open store.

    Examples
    --------
    >>> from embstore import Store
    >>> src = StoreSource(Store.open(demo_path))
    >>> src.dataarray("query_embeddings").dims
    ('image', 'query', 'hidden')
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.row_dim: str = store.row_dim
        self.id_name: str = store.id_name

    @property
    def ids(self) -> np.ndarray:
        """Row ids, in row order."""
        return np.asarray(self.store.ids)

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates other than the id; index = ids."""
        df = self.store.coords
        df = df.drop(columns=[c for c in (self.id_name,) if c in df.columns])
        df.index.name = self.id_name
        return df

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables and their dims (without the row dimension)."""
        return dict(self.store.variables)

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Variable-size variables and their dims (without the row dimension)."""
        return dict(getattr(self.store, "ragged_variables", {}) or {})

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes."""
        return dict(getattr(self.store, "attrs", {}) or {})

    def dataarray(self, name: str) -> xr.DataArray:
        """Dense variable ``name`` as a dask-backed DataArray ``(row, ...)``, no coords."""
        if name not in self.variables:
            raise UnknownVariableError(
                f"variable {name!r} is not a dense variable of the store; "
                f"dense: {sorted(self.variables)}, ragged: {sorted(self.ragged_variables)}"
            )
        return _as_dask(self.store[name], self.row_dim, getattr(self.store, "chunk_rows", None))

    def get_ragged(self, name: str, row_id: Any) -> np.ndarray:
        """One row of ragged variable ``name`` as NumPy, in its declared layout."""
        return np.asarray(self.store.get_ragged(name, row_id))

    def iter_ragged(self, name: str, ids: list[Any]):
        """Yield ``(id, row)`` for ``ids`` (batched offset reads when the store can)."""
        if hasattr(self.store, "iter_ragged"):
            yield from self.store.iter_ragged(name, ids)
        else:  # pragma: no cover - older stores
            for i in ids:
                yield i, self.get_ragged(name, i)


class DatasetSource:
    """A plain :class:`xarray.Dataset` (e.g. from ``xarray.open_zarr``) as a source.

    Parameters
    ----------
    dataset : xarray.Dataset
        Variables share a leading row dimension.
    row_dim : str, optional
        Row dimension; default: the first dimension of the first variable.
    id_name : str, optional
        Unique id coordinate along ``row_dim``; default: ``<row_dim>_id`` or
        the dimension coordinate when present, otherwise positions are used
        as ids under the name ``<row_dim>_id``.

    Attributes
    ----------
    store : None
        There is no :class:`~embstore.Store` behind a plain Dataset.
    """

    store = None

    def __init__(
        self, dataset: xr.Dataset, row_dim: str | None = None, id_name: str | None = None
    ) -> None:
        if not dataset.data_vars:
            raise ValidationError("the dataset has no data variables to analyse")
        if row_dim is None:
            row_dim = str(next(iter(dataset.data_vars.values())).dims[0])
        if row_dim not in dataset.dims:
            raise ValidationError(
                f"row_dim={row_dim!r} is not a dimension of the dataset; dims: {list(dataset.dims)}"
            )
        self.row_dim = str(row_dim)
        n = dataset.sizes[self.row_dim]
        if id_name is None:
            for cand in (f"{self.row_dim}_id", self.row_dim):
                if cand in dataset.coords and dataset[cand].dims == (self.row_dim,):
                    id_name = cand
                    break
        if id_name is None:
            self.id_name = f"{self.row_dim}_id"
            self._ids = np.arange(n)
        else:
            if id_name not in dataset.coords:
                raise ValidationError(
                    f"id_name={id_name!r} is not a coordinate of the dataset; "
                    f"coordinates: {list(dataset.coords)}"
                )
            self.id_name = str(id_name)
            self._ids = np.asarray(dataset[id_name].values)
        self.dataset = dataset
        self._coords = pd.DataFrame(
            {
                str(name): np.asarray(c.values)
                for name, c in dataset.coords.items()
                if c.dims == (self.row_dim,) and name not in (self.id_name, self.row_dim)
            },
            index=pd.Index(self._ids, name=self.id_name),
        )

    @property
    def ids(self) -> np.ndarray:
        """Row ids, in row order."""
        return self._ids

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates other than the id; index = ids."""
        return self._coords.copy()

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables and their dims (without the row dimension)."""
        return {
            str(k): tuple(str(d) for d in v.dims[1:])
            for k, v in self.dataset.data_vars.items()
            if v.dims and v.dims[0] == self.row_dim
        }

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Variable-size variables and their dims (without the row dimension)."""
        return {}

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes (nested values of store views decoded from JSON)."""
        from ..store.xrio import decode_attrs

        return decode_attrs(dict(self.dataset.attrs))

    def dataarray(self, name: str) -> xr.DataArray:
        """Dense variable ``name`` as a dask-backed DataArray ``(row, ...)``, no coords."""
        if name not in self.variables:
            raise UnknownVariableError(
                f"variable {name!r} is not in the dataset; available: {sorted(self.variables)}"
            )
        return _as_dask(self.dataset[name], self.row_dim)

    def get_ragged(self, name: str, row_id: Any) -> np.ndarray:
        """One row of ragged variable ``name`` as NumPy, in its declared layout."""
        raise UnknownVariableError(
            f"variable {name!r}: a plain xarray Dataset has no ragged variables; "
            "open the store with embstore.Store.open to read ragged data"
        )


class PooledSource:
    """A source in which one spatial variable is pooled to one vector per row.

    ``embstore search|dedup|cluster --over y,x`` analyse a feature map
    ``(channel, y, x)`` (dense or ragged) through this source: every other
    variable, the coordinates and the :class:`embstore.Store` (so cluster
    ids can still be written) are those of the underlying source, while
    ``variable`` becomes the ``(row, channel)`` mean (or max) over ``over``,
    lazily, as :meth:`embstore.EmbeddingAnalyzer.pool` computes it.

    Parameters
    ----------
    obj : Store, str, os.PathLike, xarray.Dataset or source
        What to analyse (see :func:`open_source`).
    variable : str, optional
        The spatial variable (default: the store's default variable).
    over : str or sequence of str
        Dimensions pooled over (``"y,x"``).
    method : {"mean", "max"}
        Pooling.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"fmap": (("image", "channel", "y", "x"), np.arange(16.0).reshape(2, 2, 2, 2))},
    ...     coords={"image_id": ("image", [10, 11])},
    ... )
    >>> src = PooledSource(DatasetSource(ds, row_dim="image", id_name="image_id"), "fmap", "y,x")
    >>> src.variables["fmap"], src.dataarray("fmap").values.tolist()
    (('channel',), [[1.5, 5.5], [9.5, 13.5]])
    """

    def __init__(
        self,
        obj: Any,
        variable: str | None,
        over: str | Sequence[str],
        method: str = "mean",
    ) -> None:
        from .core import AnalyzerCore
        from .defaults import resolve_variable
        from .spec import parse_over

        self._base: Any = obj if _is_source(obj) else open_source(obj)
        core = AnalyzerCore(self._base)
        self.variable = resolve_variable(core, variable)
        self.over: tuple[str, ...] = parse_over(over) or ()
        if method not in ("mean", "max"):
            raise ValidationError(f"over= pools with 'mean' or 'max', got pool={method!r}")
        self.method = method
        pooled = core.pool(self.variable, over=self.over, method=method)
        if pooled.ndim != 2:
            raise ValidationError(
                f"pooling {self.variable!r} over {list(self.over)} leaves dims {list(pooled.dims)}; "
                "name every dimension but the feature one in over= (e.g. over='y,x')"
            )
        self._pooled = xr.DataArray(pooled.data, dims=pooled.dims, name=self.variable)
        self.store: Any = self._base.store
        self.row_dim: str = self._base.row_dim
        self.id_name: str = self._base.id_name

    @property
    def ids(self) -> np.ndarray:
        """Row ids, in row order."""
        return np.asarray(self._base.ids)

    @property
    def coords(self) -> pd.DataFrame:
        """Row coordinates other than the id; index = ids."""
        return self._base.coords

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Dense variables; the pooled one as ``(feature,)``."""
        out = dict(self._base.variables)
        out[self.variable] = (str(self._pooled.dims[1]),)
        return out

    @property
    def ragged_variables(self) -> dict[str, tuple[str, ...]]:
        """Ragged variables of the source, without the pooled one."""
        return {k: v for k, v in self._base.ragged_variables.items() if k != self.variable}

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance attributes, plus how the variable was pooled."""
        base = dict(getattr(self._base, "attrs", {}) or {})
        return {**base, "pooled_over": {self.variable: list(self.over)}}

    def dataarray(self, name: str) -> xr.DataArray:
        """The pooled variable ``(row, feature)``, or another variable of the source."""
        if name == self.variable:
            return self._pooled
        return self._base.dataarray(name)

    def get_ragged(self, name: str, row_id: Any) -> np.ndarray:
        """One row of another ragged variable."""
        return self._base.get_ragged(name, row_id)


def _is_source(obj: Any) -> bool:
    return isinstance(obj, (StoreSource, DatasetSource, LegacyDirSource, PooledSource))


def _looks_like_store(obj: Any) -> bool:
    return all(
        hasattr(obj, a) for a in ("row_dim", "id_name", "variables", "ids", "coords")
    ) and hasattr(obj, "__getitem__")


def open_source(
    obj: Any, row_dim: str | None = None, id_name: str | None = None
) -> StoreSource | DatasetSource | LegacyDirSource | PooledSource:
    """Wrap a Store, a path (store or old directory) or a Dataset as a source.

    Parameters
    ----------
    obj : Store, str, os.PathLike or xarray.Dataset
        What to analyse. A directory holding ``metadata.json`` or
        ``embedding_*.pt`` files is read as an old per-image directory; any
        other path is opened with :meth:`embstore.Store.open` (read-only).
    row_dim, id_name : str, optional
        Only for an :class:`xarray.Dataset`.

    Returns
    -------
    source
        An object with the source interface described in this module.

    Raises
    ------
    ValidationError
        If ``obj`` is none of the supported kinds.
    """
    if _is_source(obj):
        return obj
    if isinstance(obj, xr.Dataset):
        return DatasetSource(obj, row_dim=row_dim, id_name=id_name)
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if "://" not in path and is_legacy_dir(path):
            return LegacyDirSource(path)
        from ..store import Store

        return StoreSource(Store.open(path, mode="r"))
    if _looks_like_store(obj):
        return StoreSource(obj)
    raise ValidationError(
        f"cannot analyse a {type(obj).__name__}; pass an embstore.Store, a path to "
        "a store or to an old per-image .pt directory, or an xarray.Dataset"
    )
