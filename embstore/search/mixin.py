"""Search, deduplication, clustering and exports as analyzer methods.

:class:`SearchMixin` is mixed into :class:`embstore.EmbeddingAnalyzer`. It uses
only the analyzer contract (``iter_vectors``, ``labels``, ``sel``, ``ids``,
``store``, ``id_name``), streams vectors block by block, and returns labeled
results (pandas).

Index persistence
-----------------
:meth:`SearchMixin.build_index` saves the index with the store as the blob
``faiss_<name>`` plus ``faiss_<name>.json`` (``<name>`` =
``variable.pool.layer.kind.metric``) (parameters, the store's
``version_token`` and a hash of the selected ids). Later calls, also from a
new analyzer on the re-opened store, reload it while the token and selection
are unchanged, and rebuild it otherwise. On a read-only store (or an old
directory) the index lives in memory only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.defaults import resolve_variable
from ..errors import ReadOnlyStoreError, SelectionError, ValidationError
from .export import export_training_labels as _export_labels
from .export import save_group_previews as _save_previews
from .results import GroupResult, Pairs, search_frame
from .source import DEFAULT_BLOCK_ROWS, BlockSource, positions_of_ids

__all__ = ["PATH_COORDS", "ClusterResult", "Deduplicated", "SearchMixin"]

logger = logging.getLogger(__name__)

#: Default bytes of stored data read at once when streaming vectors.
READ_BYTES = 64 * 2**20

#: Coordinates looked up (in order) for image paths when ``path_coord`` is not given.
PATH_COORDS = ("path", "filepath", "file_path", "image_path", "fpath", "filename", "file_name")


@dataclass
class Deduplicated:
    """Outcome of :meth:`SearchMixin.remove_duplicates`.

    Attributes
    ----------
    analyzer : EmbeddingAnalyzer
        An analyzer on the kept rows (one per duplicate group).
    kept_ids, removed_ids : numpy.ndarray
        Row ids kept and removed.
    n_removed : int
        ``len(removed_ids)``.
    groups : GroupResult
        The duplicate groups (over vectors in selection order).
    """

    analyzer: Any
    kept_ids: np.ndarray
    removed_ids: np.ndarray
    n_removed: int
    groups: GroupResult


@dataclass
class ClusterResult:
    """Outcome of :meth:`SearchMixin.cluster`.

    Attributes
    ----------
    groups : GroupResult
        Cluster id per vector (0 = largest, ties by smallest row, singletons kept).
    frame : pandas.DataFrame
        One row per vector: its labels plus the cluster column,
        ``group_size`` and ``representative``.
    stats : dict
        Counts and size histogram (also logged).
    coord : str or None
        Coordinate the labels were written to in the store, if they were.
    """

    groups: GroupResult
    frame: pd.DataFrame
    stats: dict[str, Any]
    coord: str | None


def _safe(s: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s))


def _blob(key: str, suffix: str = "") -> str:
    """Blob name of an index (the store allows no ``/`` in blob names)."""
    return f"faiss_{key}{suffix}"


class SearchMixin:
    """FAISS search, near-duplicate removal and clustering on an analyzer.

    State (built indexes) is created lazily, since analyzers derived by
    ``sel`` bypass ``__init__``.

    Examples
    --------
    >>> an = EmbeddingAnalyzer("faces.zarr")                      # doctest: +SKIP
    >>> an.build_index("embedding", kind="flat")                   # doctest: +SKIP
    >>> an.search(ids=["img_001"], k=5)                             # doctest: +SKIP
    >>> dedup = an.remove_duplicates("embedding", threshold=0.9)   # doctest: +SKIP
    >>> res = dedup.analyzer.cluster("embedding", threshold=0.7)   # doctest: +SKIP
    """

    # ------------------------------------------------------------ internals
    def _search_cache(self) -> dict[str, Any]:
        cache = self.__dict__.get("_embstore_search_cache")
        if cache is None:
            cache = {"indexes": {}, "last": None}
            self.__dict__["_embstore_search_cache"] = cache
        return cache

    def _vector_source(
        self,
        variable: str,
        pool: str | None,
        layer: int | None,
        n: int | None = None,
        memory_budget: int | None = None,
    ) -> BlockSource:
        from .queries import reads_rows_directly, stored_blocks

        if n is None:
            n = len(self._labels(variable, pool, layer))
        direct = reads_rows_directly(self, variable)
        per_row = n // max(len(self.ids), 1)  # type: ignore[attr-defined]

        def factory(rows: int) -> Any:
            if direct:  # Store.read of each block's rows: no dask graph over the store
                return stored_blocks(self, variable, pool, layer, per_row, rows)
            return self.iter_vectors(variable, pool=pool, layer=layer, block_rows=rows)  # type: ignore[attr-defined]

        return BlockSource(
            factory, n=n, read_rows=self._read_rows(variable, n, memory_budget), fresh=direct
        )

    def _read_rows(self, variable: str, n_vectors: int, memory_budget: int | None) -> int | None:
        """Vectors per store read so that one read stays within a quarter of the
        budget (64 MiB by default), counting the stored row and its float32 copy."""
        target = READ_BYTES if memory_budget is None else max(int(memory_budget) // 4, 2**20)
        store = self.store  # type: ignore[attr-defined]
        if store is None or n_vectors == 0:
            return None
        try:
            arr = store[variable]
        except (KeyError, AttributeError, ValueError):
            return None
        per_row = int(np.prod(arr.shape[1:], dtype=np.int64)) * (np.dtype(arr.dtype).itemsize + 4)
        n_rows = max(len(self.ids), 1)  # type: ignore[attr-defined]
        per_vector = max(per_row * n_rows // max(n_vectors, 1), 1)
        return int(min(max(target // per_vector, 1), DEFAULT_BLOCK_ROWS))

    def _selection_hash(self) -> str:
        ids = np.asarray(self.ids)  # type: ignore[attr-defined]
        h = hashlib.sha1()
        h.update(str(ids.dtype).encode())
        if ids.dtype.kind in "iuf":
            h.update(np.ascontiguousarray(ids).tobytes())
        else:
            h.update("\x00".join(map(str, ids.tolist())).encode())
        return h.hexdigest()

    @staticmethod
    def _index_key(variable: str, pool: Any, layer: Any, kind: str, metric: str) -> str:
        return ".".join(_safe(p) for p in (variable, pool, layer, kind, metric))

    def _store_token(self) -> str | None:
        store = self.store  # type: ignore[attr-defined]
        return None if store is None else str(store.version_token)

    def _load_persisted(self, key: str, token: str | None, sel_hash: str) -> Any:
        from .index import SearchIndex

        store = self.store  # type: ignore[attr-defined]
        if store is None:
            return None
        raw = store.read_blob(_blob(key, ".json"))
        if raw is None:
            return None
        try:
            meta = json.loads(bytes(raw).decode())
        except ValueError:
            logger.warning("ignoring unreadable index metadata faiss_%s.json", key)
            return None
        if meta.get("version_token") != token or meta.get("selection") != sel_hash:
            logger.info(
                "index faiss_%s is stale (store changed since it was built); rebuilding", key
            )
            return None
        data = store.read_blob(_blob(key))
        if data is None:
            return None
        idx = SearchIndex.from_bytes(
            bytes(data),
            meta["metric"],
            meta["kind"],
            meta["factory"],
            device=meta.get("device", "auto"),
        )
        logger.info("reloaded index faiss_%s (%d vectors)", key, idx.ntotal)
        return idx

    def _persist(self, key: str, idx: Any, params: dict[str, Any], sel_hash: str) -> bool:
        store = self.store  # type: ignore[attr-defined]
        if store is None:
            return False
        meta = dict(params, **idx.params(), version_token=self._store_token(), selection=sel_hash)
        try:
            store.write_blob(_blob(key), idx.to_bytes())
            store.write_blob(_blob(key, ".json"), json.dumps(meta).encode())
        except (ReadOnlyStoreError, PermissionError) as exc:
            logger.warning(
                "index kept in memory only: the store is read-only (%s); "
                "open it with Store.open(path, mode='a') to save indexes",
                exc,
            )
            return False
        return True

    def _state(self) -> tuple[str | None, str, dict[str, Any]]:
        """``(version_token, selection hash, per-state memo)``, recomputed only when the token changes.

        The token changes with every commit and coordinate write, so while it
        stays the same the selection, labels and indexes are still valid and
        nothing is re-read or re-hashed (one small read of the commit state
        per call). Without a store (token None) nothing is memoised.
        """
        cache = self._search_cache()
        token = self._store_token()
        state = cache.get("state")
        if token is None or state is None or state[0] != token:
            state = (token, self._selection_hash(), {})
            if token is not None:
                cache["state"] = state
        return state

    def _labels(
        self, variable: str, pool: Any, layer: Any, memo: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """:meth:`labels` of ``variable``, memoised while the store is unchanged."""
        memo = self._state()[2] if memo is None else memo
        key = ("labels", variable, repr(pool), layer)
        if key not in memo:
            memo[key] = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        return memo[key]

    def _row_index(self, memo: dict[str, Any] | None = None) -> pd.Index:
        """Unique ids of the analysed rows (memoised with :meth:`_labels`)."""
        memo = self._state()[2] if memo is None else memo
        if "row_index" not in memo:
            memo["row_index"] = pd.Index(np.asarray(self.ids))  # type: ignore[attr-defined]
        return memo["row_index"]

    def _find_index(
        self, variable: str, pool: Any, layer: Any, metric: str, kind: str | None
    ) -> Any:
        cache = self._search_cache()
        token, sel_hash, memo = self._state()
        kinds = [kind] if kind is not None else ["flat", "ivf", "hnsw"]
        last = cache["last"]
        if kind is None and last is not None:
            kinds.insert(0, last)
        for kd in kinds:
            key = self._index_key(variable, pool, layer, kd, metric)
            entry = cache["indexes"].get(key)
            if entry is not None and entry[1] == token and entry[2] == sel_hash:
                return entry[0]
            if ("no index", key) in memo:  # looked for at this version already
                continue
            idx = self._load_persisted(key, token, sel_hash)
            if idx is not None:
                cache["indexes"][key] = (idx, token, sel_hash)
                return idx
            memo[("no index", key)] = True
        return None

    def _query_vectors(
        self, queries: Any, ids: Any, variable: str, pool: Any, layer: Any
    ) -> tuple[np.ndarray, pd.DataFrame | None, pd.DataFrame]:
        """Query vectors, their labels (for ``ids=``) and the labels of all vectors.

        For ``ids=`` only the query rows are read (:func:`.queries.row_vectors`);
        positions come from a hash lookup per id.
        """
        from .queries import id_positions, row_vectors

        if (queries is None) == (ids is None):
            raise ValidationError("pass exactly one of queries= (vectors) or ids= (row ids).")
        memo = self._state()[2]
        labels = self._labels(variable, pool, layer, memo)
        if ids is None:
            return np.asarray(queries), None, labels
        index = self._row_index(memo)
        if not index.is_unique:  # a plain dataset may repeat ids: match them all
            pos = positions_of_ids(labels, self.id_name, ids)  # type: ignore[attr-defined]
            return (
                self._vector_source(variable, pool, layer, n=len(labels)).read_rows(pos),
                labels.iloc[pos],
                labels,
            )
        per_row = len(labels) // max(len(index), 1)
        pos = id_positions(index, ids, per_row)
        rows = pos[::per_row] // per_row
        return row_vectors(self, variable, pool, layer, rows), labels.iloc[pos], labels

    # ------------------------------------------------------------ indexes
    def build_index(
        self,
        variable: str | None = None,
        pool: str | None = "mean",
        kind: str = "flat",
        metric: str = "cosine",
        device: str = "auto",
        *,
        layer: int | None = None,
        save: bool = True,
        rebuild: bool = False,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        progress: bool | None = None,
        **index_kwargs: Any,
    ) -> Any:
        """Build (or reload) a FAISS index of the analysed vectors.

        Vectors are streamed chunk by chunk; only one block plus the index
        is in memory. The index is saved with the store and reloaded while
        the store and the selection are unchanged.

        Parameters
        ----------
        variable : str
            Variable to index.
        pool : str or None
            Pooling (``None``: one vector per query).
        kind : str
            ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` or a faiss factory string.
        metric : {"cosine", "ip", "l2"}
            Cosine L2-normalises and uses inner product.
        device : {"auto", "cpu", "cuda"}
            ``"auto"``: every GPU faiss sees; ``"cuda"`` without one raises.
        layer : int, optional
            Layer of ``decoder_output``.
        save : bool
            Save with the store (needs a store opened with ``mode="a"``).
        rebuild : bool
            Ignore a saved or cached index.
        block_rows : int
            Vectors per streamed block.
        progress : bool, optional
            tqdm bar (default: on a terminal).
        **index_kwargs
            ``nlist``, ``hnsw_m``, ``train_rows``, ``ngpu``, ``shard`` (see
            :func:`embstore.search.index.build_index`).

        Returns
        -------
        SearchIndex
            Positions in it are vector positions (rows of :meth:`labels`).
        """
        variable = resolve_variable(self, variable)
        from .index import build_index as _build
        from .index import check_metric

        metric = check_metric(metric)
        key = self._index_key(variable, pool, layer, kind, metric)
        cache = self._search_cache()
        if not rebuild:
            idx = self._find_index(variable, pool, layer, metric, kind)
            if idx is not None:
                cache["last"] = kind
                return idx
        src = self._vector_source(variable, pool, layer)
        # faiss adds blocks of any size: add each read as it comes (no joining copy)
        idx = _build(
            src,
            kind=kind,
            metric=metric,
            device=device,
            block_rows=min(block_rows, src.max_read_rows or block_rows),
            progress=progress,
            **index_kwargs,
        )
        token, sel_hash, _ = self._state()
        if save:
            self._persist(key, idx, {"variable": variable, "pool": pool, "layer": layer}, sel_hash)
        cache["indexes"][key] = (idx, token, sel_hash)
        cache["last"] = kind
        return idx

    def search(
        self,
        queries: Any = None,
        k: int = 10,
        *,
        ids: Any = None,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        device: str = "auto",
        block_rows: int = DEFAULT_BLOCK_ROWS,
        exact: bool = False,
    ) -> pd.DataFrame:
        """k nearest neighbours of query vectors or of stored rows.

        Uses an index of ``variable``/``pool``/``metric`` built (or saved)
        earlier, the one of ``kind`` when given (built if missing). Without
        any, it runs an exact block-wise scan of the store: slower, but no
        index is held in memory.

        Parameters
        ----------
        queries : array_like, optional
            ``(nq, dim)`` query vectors.
        k : int
            Neighbours per query. A stored row queried by id finds itself at rank 0.
        ids : scalar or list, optional
            Row ids whose vectors are the queries (instead of ``queries``).
        variable, pool, layer
            Which vectors (as in :meth:`build_index`).
        metric : {"cosine", "ip", "l2"}
            Score: cosine similarity, inner product or Euclidean distance.
        kind : str, optional
            Use (or build) this kind of index.
        device : str
            Device of a scan / new index.
        block_rows : int
            Vectors per streamed block.
        exact : bool, default False
            Ignore saved and cached indexes and scan every vector (exact
            results); cannot be combined with ``kind``.

        Returns
        -------
        pandas.DataFrame
            ``query_<label>`` columns (or ``query_index``: the query position),
            ``rank``, ``neighbor`` (vector position), the neighbour's labels
            (id, ``query`` when unpooled, coordinates) and ``score``.
            ``frame.attrs["index"]`` says what answered: ``"exact scan"`` or
            the index (e.g. ``"hnsw index (HNSW32,Flat), approximate"``).
        """
        variable = resolve_variable(self, variable)
        from .index import check_metric
        from .knn import knn_search

        metric = check_metric(metric)
        xq, qlabels, labels = self._query_vectors(queries, ids, variable, pool, layer)
        if exact and kind is not None:
            raise ValidationError(
                f"exact=True scans without an index; drop kind={kind!r} (or exact)."
            )
        idx = (
            self.build_index(variable, pool, kind, metric, device, layer=layer)
            if kind is not None
            else None
            if exact
            else self._find_index(variable, pool, layer, metric, None)
        )
        if idx is not None:
            scores, nbrs = idx.search(xq, k)
        else:
            src = self._vector_source(variable, pool, layer, n=len(labels))
            scores, nbrs = knn_search(src, xq, k, metric, block_rows=block_rows, device=device)
        frame = search_frame(scores, nbrs, labels, qlabels)
        frame.attrs["index"] = _describe_index(idx)
        return frame

    def range_search(
        self,
        queries: Any = None,
        threshold: float = 0.9,
        *,
        ids: Any = None,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        device: str = "auto",
        block_rows: int = DEFAULT_BLOCK_ROWS,
        exact: bool = False,
    ) -> pd.DataFrame:
        """Every neighbour within ``threshold`` of query vectors or stored rows.

        Parameters
        ----------
        queries : array_like, optional
            ``(nq, dim)`` query vectors.
        threshold : float
            Minimum cosine similarity / inner product, or maximum l2 distance.
        ids : scalar or list, optional
            Row ids whose vectors are the queries.
        variable, pool, layer, metric, kind, device, block_rows, exact
            As in :meth:`search`.

        Returns
        -------
        pandas.DataFrame
            Same columns as :meth:`search`; ``rank`` orders each query's hits
            best first; ``frame.attrs["index"]`` as in :meth:`search`.
        """
        variable = resolve_variable(self, variable)
        from .index import check_metric, higher_is_closer
        from .knn import range_search_blocks

        metric = check_metric(metric)
        xq, qlabels, labels = self._query_vectors(queries, ids, variable, pool, layer)
        if exact and kind is not None:
            raise ValidationError(
                f"exact=True scans without an index; drop kind={kind!r} (or exact)."
            )
        idx = (
            self.build_index(variable, pool, kind, metric, device, layer=layer)
            if kind is not None
            else None
            if exact
            else self._find_index(variable, pool, layer, metric, None)
        )
        if idx is not None:
            lims, scores, nbrs = idx.range_search(xq, threshold)
        else:
            src = self._vector_source(variable, pool, layer, n=len(labels))
            lims, scores, nbrs = range_search_blocks(
                src, xq, threshold, metric, block_rows=block_rows
            )
        frame = search_frame(
            scores, nbrs, labels, qlabels, lims=lims, higher_is_better=higher_is_closer(metric)
        )
        frame.attrs["index"] = _describe_index(idx)
        return frame

    # ------------------------------------------------------ groups
    def _groups(
        self,
        threshold: float,
        k: int | None,
        variable: str,
        pool: Any,
        layer: Any,
        metric: str,
        kind: str | None,
        batch: int | None,
        memory_budget: int | None,
        device: str,
        progress: bool | None,
        keep_pairs: bool,
    ) -> tuple[GroupResult, pd.DataFrame]:
        from .graph import _groups

        labels = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        src = self._vector_source(variable, pool, layer, n=len(labels), memory_budget=memory_budget)
        index = None
        if kind is not None:
            index = self.build_index(
                variable, pool, kind, metric, device, layer=layer, progress=progress
            )
            metric = index.metric
        res = _groups(
            src,
            threshold,
            k,
            metric,
            index=index,
            keep_pairs=keep_pairs,
            row_batch=batch,
            block_rows=None,
            memory_budget=memory_budget,
            device=device,
            progress=progress,
        )
        return res, labels

    def duplicate_groups(
        self,
        threshold: float = 0.90,
        k: int | None = 100,
        *,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        batch: int | None = None,
        memory_budget: int | None = None,
        device: str = "auto",
        progress: bool | None = None,
    ) -> GroupResult:
        """Near-duplicate groups of the analysed vectors (typed result).

        See :meth:`find_duplicates` for the parameters; returns the
        :class:`~embstore.search.results.GroupResult` (labels, pairs, keep mask).
        """
        variable = resolve_variable(self, variable)
        res, _ = self._groups(
            threshold,
            k,
            variable,
            pool,
            layer,
            metric,
            kind,
            batch,
            memory_budget,
            device,
            progress,
            keep_pairs=True,
        )
        return res

    def find_duplicates(
        self,
        threshold: float = 0.90,
        k: int | None = 100,
        *,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        batch: int | None = None,
        memory_budget: int | None = None,
        device: str = "auto",
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Pairs with cosine >= threshold, grouped by connected components.

        Parameters
        ----------
        threshold : float
            Minimum similarity of a duplicate pair (maximum distance for l2).
        k : int or None
            Neighbours searched per vector, itself included (face pipeline
            ``topK``). ``None``: exhaustive range search, exact for any group size.
        variable, pool, layer
            Which vectors.
        metric : {"cosine", "ip", "l2"}
            Metric.
        kind : str, optional
            Search with this index kind (e.g. ``"ivf"`` at scale) instead of
            the exact block-wise scan.
        batch : int, optional
            Query rows per search batch (face pipeline ``--batch``).
        memory_budget : int, optional
            Bytes for the exact scan's batches.
        device : str
            ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress : bool, optional
            tqdm bar.

        Returns
        -------
        pandas.DataFrame
            One row per pair, sorted by ``group`` (0 = largest group), then
            ``i``, ``j``: ``group``, ``group_size``, ``i``, ``j`` (vector
            positions, ``i < j``), ``score`` and the labels of both ends
            (suffixes ``_i``, ``_j``).
        """
        variable = resolve_variable(self, variable)
        res, labels = self._groups(
            threshold,
            k,
            variable,
            pool,
            layer,
            metric,
            kind,
            batch,
            memory_budget,
            device,
            progress,
            keep_pairs=True,
        )
        pairs = res.pairs if res.pairs is not None else Pairs.empty()
        df = pairs.to_frame(labels)
        grp = res.labels[df["i"].to_numpy()]
        df.insert(0, "group", grp)
        df.insert(1, "group_size", res.sizes[grp] if grp.size else np.zeros(0, np.int64))
        return df.sort_values(["group", "i", "j"], kind="stable").reset_index(drop=True)

    def remove_duplicates(
        self,
        threshold: float = 0.90,
        k: int | None = 100,
        *,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        batch: int | None = None,
        memory_budget: int | None = None,
        device: str = "auto",
        progress: bool | None = None,
    ) -> Deduplicated:
        """Keep one row per near-duplicate group: the first in row order.

        Needs one vector per row (a pooled variable, or a per-row embedding).

        Parameters
        ----------
        threshold, k, variable, pool, layer, metric, kind, batch, memory_budget, device, progress
            As in :meth:`find_duplicates`.

        Returns
        -------
        Deduplicated
            ``analyzer`` on the kept rows, ``kept_ids``, ``removed_ids``,
            ``n_removed`` (also logged) and the ``groups``.
        """
        variable = resolve_variable(self, variable)
        labels = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        if len(labels) != len(self.ids):  # type: ignore[attr-defined]
            raise ValidationError(
                f"remove_duplicates needs one vector per row, but {variable!r} with pool={pool!r} "
                f"gives {len(labels)} vectors for {len(self.ids)} rows; pass pool='mean' (or another method)."  # type: ignore[attr-defined]
            )
        res = self.duplicate_groups(
            threshold,
            k,
            variable=variable,
            pool=pool,
            layer=layer,
            metric=metric,
            kind=kind,
            batch=batch,
            memory_budget=memory_budget,
            device=device,
            progress=progress,
        )
        ids = np.asarray(self.ids)  # type: ignore[attr-defined]
        keep = res.keep
        kept, removed = ids[keep], ids[~keep]
        logger.info(
            "remove_duplicates: %d of %d rows removed (threshold %.3f)",
            removed.size,
            ids.size,
            threshold,
        )
        sub = self.sel(**{self.id_name: kept.tolist()}) if removed.size else self.sel()  # type: ignore[attr-defined]
        return Deduplicated(sub, kept, removed, int(removed.size), res)

    def cluster(
        self,
        threshold: float = 0.70,
        k: int | None = 100,
        batch: int | None = None,
        *,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        coord: str | None = "cluster",
        memory_budget: int | None = None,
        device: str = "auto",
        progress: bool | None = None,
    ) -> ClusterResult:
        """Union-find clusters over the k-NN graph above ``threshold``.

        Cluster ids are deterministic (0 = largest, ties by smallest row),
        singletons are kept. With one vector per row the ids are written to
        the store as coordinate ``coord`` (when the store is writable).

        Parameters
        ----------
        threshold : float
            Minimum cosine similarity of an edge.
        k : int or None
            Neighbours per vector, itself included (``None``: exhaustive).
        batch : int, optional
            Query rows per search batch (face pipeline ``--batch``).
        variable, pool, layer, metric, kind, memory_budget, device, progress
            As in :meth:`find_duplicates`.
        coord : str or None
            Coordinate to write the cluster ids to; ``None`` to skip.

        Returns
        -------
        ClusterResult
        """
        variable = resolve_variable(self, variable)
        res, labels = self._groups(
            threshold,
            k,
            variable,
            pool,
            layer,
            metric,
            kind,
            batch,
            memory_budget,
            device,
            progress,
            keep_pairs=False,
        )
        frame = res.to_frame(labels, column=coord or "cluster")
        stats = res.stats()
        logger.info(
            "cluster: %d vectors -> %d clusters (%d singletons, largest %d); sizes %s",
            stats["n_vectors"],
            stats["n_groups"],
            stats["n_singletons"],
            stats["largest"],
            stats["size_histogram"],
        )
        written = None
        store = self.store  # type: ignore[attr-defined]
        if coord is not None and store is not None:
            if len(labels) != len(self.ids):  # type: ignore[attr-defined]
                logger.warning(
                    "cluster ids not written: %d vectors for %d rows (unpooled)",
                    len(labels),
                    len(self.ids),
                )  # type: ignore[attr-defined]
            else:
                old = self._store_token()
                try:
                    store.set_coords({coord: res.labels}, ids=np.asarray(self.ids))  # type: ignore[attr-defined]
                    written = coord
                except (ReadOnlyStoreError, PermissionError) as exc:
                    logger.warning(
                        "cluster ids not written to the store (read-only: %s); open it with mode='a'",
                        exc,
                    )
                if written:
                    self._refresh_tokens(old)
        return ClusterResult(res, frame, stats, written)

    def _refresh_tokens(self, old: str | None) -> None:
        """After our own coordinate write, keep indexes that were valid before it valid."""
        store = self.store  # type: ignore[attr-defined]
        new = self._store_token()
        cache = self._search_cache()
        for key, (idx, token, sel_hash) in list(cache["indexes"].items()):
            if token != old:
                continue
            cache["indexes"][key] = (idx, new, sel_hash)
            raw = store.read_blob(_blob(key, ".json"))
            if raw is None:
                continue
            meta = json.loads(bytes(raw).decode())
            if meta.get("version_token") == old:
                meta["version_token"] = new
                try:
                    store.write_blob(_blob(key, ".json"), json.dumps(meta).encode())
                except (ReadOnlyStoreError, PermissionError):  # pragma: no cover
                    pass

    def pair_recall(
        self,
        threshold: float = 0.9,
        k: int = 100,
        *,
        kind: str = "ivf",
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        sample: int = 1000,
        seed: int = 0,
        device: str = "auto",
    ) -> Any:
        """Pair recall of an approximate index against exact search on a sample.

        Parameters
        ----------
        threshold, k
            Pair definition (as in :meth:`find_duplicates`).
        kind : str
            The index kind to evaluate (built or reloaded).
        variable, pool, layer, metric, device
            As in :meth:`build_index`.
        sample : int
            Query vectors sampled.
        seed : int
            Sample seed.

        Returns
        -------
        RecallReport
        """
        variable = resolve_variable(self, variable)
        from .recall import pair_recall as _recall

        idx = self.build_index(variable, pool, kind, metric, device, layer=layer)
        src = self._vector_source(variable, pool, layer)
        return _recall(src, idx, threshold, k, sample=sample, seed=seed, device=device)

    # ------------------------------------------------------------- exports
    def _paths(self, labels: pd.DataFrame, path_coord: str | None, required: bool) -> Any:
        if path_coord is not None:
            if path_coord not in labels.columns:
                raise SelectionError(
                    f"path coordinate {path_coord!r} not found; coordinates: {list(labels.columns)}."
                )
            return labels[path_coord].astype(str).tolist()
        for c in PATH_COORDS:
            if c in labels.columns:
                return labels[c].astype(str).tolist()
        if required:
            raise ValidationError(
                f"no image paths known: none of the coordinates {list(PATH_COORDS)} exists "
                f"(coordinates: {list(labels.columns)}); pass path_coord= or paths=."
            )
        return None

    def export_training_labels(
        self,
        out_dir: str | os.PathLike,
        clusters: ClusterResult,
        *,
        dedup: Deduplicated | None = None,
        path_coord: str | None = None,
        min_size: int = 1,
        prefix: str = "fr_train",
    ) -> dict[str, Any]:
        """Write ``fr_train_{X_class}_{Y_data}_classes.npy`` / ``_data_list.npy``.

        Parameters
        ----------
        out_dir : path
            Output folder.
        clusters : ClusterResult
            From :meth:`cluster` on this analyzer.
        dedup : Deduplicated, optional
            If given, only its kept rows are exported (cluster on
            ``dedup.analyzer`` instead to drop them before clustering).
        path_coord : str, optional
            Coordinate holding image paths (default: the first of
            :data:`PATH_COORDS` present, else the row ids).
        min_size : int
            Drop clusters with fewer items.
        prefix : str
            File name prefix.

        Returns
        -------
        dict
            Paths and counts (see :func:`embstore.search.export.export_training_labels`).
        """
        frame = clusters.frame
        items = self._paths(frame, path_coord, required=False)
        if items is None:
            items = frame[self.id_name].astype(str).tolist()  # type: ignore[attr-defined]
        keep = None
        if dedup is not None:
            keep = frame[self.id_name].isin(set(dedup.kept_ids.tolist())).to_numpy()  # type: ignore[attr-defined]
        return _export_labels(
            clusters.groups, items, out_dir, keep=keep, min_size=min_size, prefix=prefix
        )

    def save_group_previews(
        self,
        out_dir: str | os.PathLike,
        groups: ClusterResult | GroupResult,
        *,
        path_coord: str | None = None,
        n_groups: int = 50,
        per_group: int = 10,
        size: int = 112,
        image_root: str | os.PathLike | None = None,
    ) -> list:
        """Preview grids of the largest groups (needs an image-path coordinate).

        Parameters
        ----------
        out_dir : path
            Output folder.
        groups : ClusterResult or GroupResult
            From :meth:`cluster` or :meth:`duplicate_groups` on this analyzer
            (with its default ``variable``/``pool``).
        path_coord : str, optional
            Coordinate holding image paths.
        n_groups, per_group, size
            See :func:`embstore.search.export.save_group_previews`.
        image_root : path, optional
            Folder that relative image paths are relative to (default: the
            current directory). Missing images become grey tiles and are
            counted in a warning.

        Returns
        -------
        list of pathlib.Path
        """
        if isinstance(groups, ClusterResult):
            labels_df, res = groups.frame, groups.groups
        else:
            labels_df, res = self.coords.reset_index(), groups  # type: ignore[attr-defined]
            if len(labels_df) != len(res):
                raise ValidationError(
                    f"{len(res)} group labels for {len(labels_df)} rows; pass the ClusterResult instead."
                )
        paths = self._paths(labels_df, path_coord, required=True)
        if image_root is not None:
            paths = [
                p if os.path.isabs(p) else os.path.join(os.fspath(image_root), p)
                for p in map(str, paths)
            ]
        n_missing = sum(not os.path.exists(p) for p in map(str, paths))
        if n_missing:
            logger.warning(
                "%d of %d image paths do not exist (e.g. %s); their previews are grey - "
                "give the folder they are relative to (image_root=, --image-root)",
                n_missing,
                len(paths),
                next(p for p in map(str, paths) if not os.path.exists(p)),
            )
        return _save_previews(
            res, paths, out_dir, n_groups=n_groups, per_group=per_group, size=size
        )


def _describe_index(idx: Any) -> str:
    """What answered a search: ``"exact scan"`` or the index kind and factory."""
    if idx is None:
        return "exact scan"
    how = "exact" if idx.exact else "approximate"
    return f"{idx.kind} index ({idx.factory}, {idx.ntotal} vectors), {how}"
