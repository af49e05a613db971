"""Search, deduplication, clustering and exports over an analyzer (``an.index``).

:class:`SearchAccessor` is the analyzer's search helper: ``an.index.search(...)``,
also offered flat as ``an.search(...)`` by :class:`embstore.EmbeddingAnalyzer`.
It holds a typed reference to the analyzer core (``iter_vectors``, ``labels``,
``sel``, ``ids``, ``store``, ``id_name``) and the analyzer's
:class:`~embstore.search.catalog.IndexCatalog`; it streams vectors block by
block into the free functions of :mod:`embstore.search.knn`,
:mod:`~embstore.search.graph` and :mod:`~embstore.search.index`, and returns
labeled results (pandas).

Index persistence
-----------------
:meth:`SearchAccessor.build_index` saves the index with the store as the blob
``faiss_<name>`` plus ``faiss_<name>.json`` (``<name>`` =
``variable.pool.layer.kind.metric``) (parameters, the store's
``version_token`` and a hash of the selected ids). Later calls, also from a
new analyzer on the re-opened store, reload it while the token and selection
are unchanged, and rebuild it otherwise. On a read-only store (or an old
directory) the index lives in memory only. The catalog
(:class:`~embstore.search.catalog.IndexCatalog`) owns all of this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.accessor import split_spec
from ..analysis.core import AnalyzerCore
from ..analysis.defaults import resolve_variable
from ..analysis.spec import VectorSpec
from ..errors import ReadOnlyStoreError, ValidationError
from .catalog import IndexCatalog
from .index import SearchIndex
from .results import GroupResult, Pairs, search_frame
from .source import DEFAULT_BLOCK_ROWS, BlockSource, positions_of_ids

__all__ = ["PATH_COORDS", "ClusterResult", "Deduplicated", "SearchAccessor"]

logger = logging.getLogger(__name__)

#: Default bytes of stored data read at once when streaming vectors.
READ_BYTES = 64 * 2**20

#: Coordinates looked up (in order) for image paths when ``path_coord`` is not given.
PATH_COORDS = ("path", "filepath", "file_path", "image_path", "fpath", "filename", "file_name")


@dataclass
class Deduplicated:
    """Outcome of :meth:`SearchAccessor.remove_duplicates`.

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
    """Outcome of :meth:`SearchAccessor.cluster`.

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


def _read_rows(
    core: AnalyzerCore, variable: str, n_vectors: int, memory_budget: int | None
) -> int | None:
    """Vectors per store read so that one read stays within a quarter of the
    budget (64 MiB by default), counting the stored row and its float32 copy."""
    target = READ_BYTES if memory_budget is None else max(int(memory_budget) // 4, 2**20)
    store = core.store
    if store is None or n_vectors == 0:
        return None
    try:
        arr = store[variable]
    except (KeyError, AttributeError, ValueError):
        return None
    per_row = int(np.prod(arr.shape[1:], dtype=np.int64)) * (np.dtype(arr.dtype).itemsize + 4)
    n_rows = max(len(core.ids), 1)
    per_vector = max(per_row * n_rows // max(n_vectors, 1), 1)
    return int(min(max(target // per_vector, 1), DEFAULT_BLOCK_ROWS))


class SearchAccessor:
    """FAISS search, near-duplicate removal and clustering on an analyzer (``an.index``).

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose vectors are searched.
    catalog : IndexCatalog, optional
        Its index catalog (the analyzer keeps one; a new, empty one by default).

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(face_path)
    >>> idx = an.index.build_index("embedding", kind="flat")
    >>> an.search(ids=[0], k=2)["neighbor"].tolist()
    [0, 1]
    >>> dedup = an.remove_duplicates(threshold=0.9)
    >>> dedup.n_removed, len(dedup.analyzer)
    (40, 40)
    >>> res = dedup.analyzer.cluster(threshold=0.7, coord=None)
    >>> res.stats["n_vectors"]
    40
    """

    def __init__(self, core: AnalyzerCore, catalog: IndexCatalog | None = None) -> None:
        self.core = core
        self.catalog = catalog if catalog is not None else IndexCatalog(core)

    # ------------------------------------------------------------ internals
    def vector_source(
        self,
        variable: str,
        pool: str | None,
        layer: int | None,
        n: int | None = None,
        memory_budget: int | None = None,
    ) -> BlockSource:
        """The analysed vectors as a re-iterable :class:`~embstore.search.source.BlockSource`.

        Parameters
        ----------
        variable, pool, layer
            Which vectors.
        n : int, optional
            Number of vectors, when known.
        memory_budget : int, optional
            Bytes; bounds the rows read at once.

        Returns
        -------
        BlockSource
        """
        from .queries import reads_rows_directly, stored_blocks

        core = self.core
        if n is None:
            n = len(self._labels(variable, pool, layer))
        direct = reads_rows_directly(core, variable)
        per_row = n // max(len(core.ids), 1)

        def factory(rows: int) -> Any:
            if direct:  # Store.read of each block's rows: no dask graph over the store
                return stored_blocks(core, variable, pool, layer, per_row, rows)
            return core.iter_vectors(variable, pool=pool, layer=layer, block_rows=rows)

        return BlockSource(
            factory, n=n, read_rows=_read_rows(core, variable, n, memory_budget), fresh=direct
        )

    def _labels(
        self, variable: str, pool: Any, layer: Any, memo: dict[Any, Any] | None = None
    ) -> pd.DataFrame:
        """``core.labels`` of ``variable``, memoised while the store is unchanged."""
        memo = self.catalog.state()[2] if memo is None else memo
        key = ("labels", variable, repr(pool), layer)
        if key not in memo:
            memo[key] = self.core.labels(variable, pool=pool, layer=layer)
        labels: pd.DataFrame = memo[key]
        return labels

    def _row_index(self, memo: dict[Any, Any] | None = None) -> pd.Index:
        """Unique ids of the analysed rows (memoised with :meth:`_labels`)."""
        memo = self.catalog.state()[2] if memo is None else memo
        if "row_index" not in memo:
            memo["row_index"] = pd.Index(np.asarray(self.core.ids))
        index: pd.Index = memo["row_index"]
        return index

    def _index_for(
        self,
        variable: str,
        pool: str | None,
        layer: int | None,
        metric: str,
        kind: str | None,
        exact: bool,
        device: str,
    ) -> SearchIndex | None:
        """The index answering a search: ``kind``'s (built if missing), none, or a known one."""
        if exact and kind is not None:
            raise ValidationError(
                f"exact=True scans without an index; drop kind={kind!r} (or exact)."
            )
        if kind is not None:
            return self.build_index(variable, pool, kind, metric, device, layer=layer)
        return None if exact else self.catalog.find(variable, pool, layer, metric, None)

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
        spec: VectorSpec | None = None,
        **index_kwargs: Any,
    ) -> SearchIndex:
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
        spec : VectorSpec, optional
            The vectors as one :class:`~embstore.analysis.spec.VectorSpec`
            (its ``pool`` is used; a given ``variable`` or ``layer`` overrides it).
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
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="build_index()")
        variable = resolve_variable(self.core, variable)
        from .index import build_index as _build
        from .index import check_metric

        metric = check_metric(metric)
        key = self.catalog.name(variable, pool, layer, kind, metric)
        if not rebuild:
            idx = self.catalog.find(variable, pool, layer, metric, kind)
            if idx is not None:
                self.catalog.last_kind = kind
                return idx
        src = self.vector_source(variable, pool, layer)
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
        self.catalog.add(key, idx, {"variable": variable, "pool": pool, "layer": layer}, save=save)
        self.catalog.last_kind = kind
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
        spec: VectorSpec | None = None,
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
        variable, pool, layer, spec
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
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="search()")
        variable = resolve_variable(self.core, variable)
        from .index import check_metric
        from .knn import knn_search

        metric = check_metric(metric)
        xq, qlabels, labels = _query_vectors(self, queries, ids, variable, pool, layer)
        idx = self._index_for(variable, pool, layer, metric, kind, exact, device)
        if idx is not None:
            scores, nbrs = idx.search(xq, k)
        else:
            src = self.vector_source(variable, pool, layer, n=len(labels))
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
        spec: VectorSpec | None = None,
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
        variable, pool, layer, spec, metric, kind, device, block_rows, exact
            As in :meth:`search`.

        Returns
        -------
        pandas.DataFrame
            Same columns as :meth:`search`; ``rank`` orders each query's hits
            best first; ``frame.attrs["index"]`` as in :meth:`search`.
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="range_search()")
        variable = resolve_variable(self.core, variable)
        from .index import check_metric, higher_is_closer
        from .knn import range_search_blocks

        metric = check_metric(metric)
        xq, qlabels, labels = _query_vectors(self, queries, ids, variable, pool, layer)
        idx = self._index_for(variable, pool, layer, metric, kind, exact, device)
        if idx is not None:
            lims, scores, nbrs = idx.range_search(xq, threshold)
        else:
            src = self.vector_source(variable, pool, layer, n=len(labels))
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

        labels = self.core.labels(variable, pool=pool, layer=layer)
        src = self.vector_source(variable, pool, layer, n=len(labels), memory_budget=memory_budget)
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
        spec: VectorSpec | None = None,
    ) -> GroupResult:
        """Near-duplicate groups of the analysed vectors (typed result).

        See :meth:`find_duplicates` for the parameters; returns the
        :class:`~embstore.search.results.GroupResult` (labels, pairs, keep mask).
        """
        variable, pool, layer, _ = split_spec(
            spec, variable, pool, layer, what="duplicate_groups()"
        )
        variable = resolve_variable(self.core, variable)
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
        spec: VectorSpec | None = None,
    ) -> pd.DataFrame:
        """Pairs with cosine >= threshold, grouped by connected components.

        Parameters
        ----------
        threshold : float
            Minimum similarity of a duplicate pair (maximum distance for l2).
        k : int or None
            Neighbours searched per vector, itself included (face pipeline
            ``topK``). ``None``: exhaustive range search, exact for any group size.
        variable, pool, layer, spec
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
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="find_duplicates()")
        variable = resolve_variable(self.core, variable)
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
        spec: VectorSpec | None = None,
    ) -> Deduplicated:
        """Keep one row per near-duplicate group: the first in row order.

        Needs one vector per row (a pooled variable, or a per-row embedding).

        Parameters
        ----------
        threshold, k, variable, pool, layer, spec, metric, kind, batch, memory_budget, device, progress
            As in :meth:`find_duplicates`.

        Returns
        -------
        Deduplicated
            ``analyzer`` on the kept rows, ``kept_ids``, ``removed_ids``,
            ``n_removed`` (also logged) and the ``groups``.
        """
        variable, pool, layer, _ = split_spec(
            spec, variable, pool, layer, what="remove_duplicates()"
        )
        variable = resolve_variable(self.core, variable)
        labels = self.core.labels(variable, pool=pool, layer=layer)
        if len(labels) != len(self.core.ids):
            raise ValidationError(
                f"remove_duplicates needs one vector per row, but {variable!r} with pool={pool!r} "
                f"gives {len(labels)} vectors for {len(self.core.ids)} rows; pass pool='mean' (or another method)."
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
        ids = np.asarray(self.core.ids)
        keep = res.keep
        kept, removed = ids[keep], ids[~keep]
        logger.info(
            "remove_duplicates: %d of %d rows removed (threshold %.3f)",
            removed.size,
            ids.size,
            threshold,
        )
        sub = (
            self.core.sel(**{self.core.id_name: kept.tolist()}) if removed.size else self.core.sel()
        )
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
        spec: VectorSpec | None = None,
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
        variable, pool, layer, spec, metric, kind, memory_budget, device, progress
            As in :meth:`find_duplicates`.
        coord : str or None
            Coordinate to write the cluster ids to; ``None`` to skip.

        Returns
        -------
        ClusterResult
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="cluster()")
        variable = resolve_variable(self.core, variable)
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
        store = self.core.store
        if coord is not None and store is not None:
            if len(labels) != len(self.core.ids):
                logger.warning(
                    "cluster ids not written: %d vectors for %d rows (unpooled)",
                    len(labels),
                    len(self.core.ids),
                )
            else:
                old = self.catalog.token()
                try:
                    store.set_coords({coord: res.labels}, ids=np.asarray(self.core.ids))
                    written = coord
                except (ReadOnlyStoreError, PermissionError) as exc:
                    logger.warning(
                        "cluster ids not written to the store (read-only: %s); open it with mode='a'",
                        exc,
                    )
                if written:
                    self.catalog.refresh_tokens(old)
        return ClusterResult(res, frame, stats, written)

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
        spec: VectorSpec | None = None,
    ) -> Any:
        """Pair recall of an approximate index against exact search on a sample.

        Parameters
        ----------
        threshold, k
            Pair definition (as in :meth:`find_duplicates`).
        kind : str
            The index kind to evaluate (built or reloaded).
        variable, pool, layer, spec, metric, device
            As in :meth:`build_index`.
        sample : int
            Query vectors sampled.
        seed : int
            Sample seed.

        Returns
        -------
        RecallReport
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="pair_recall()")
        variable = resolve_variable(self.core, variable)
        from .recall import pair_recall as _recall

        idx = self.build_index(variable, pool, kind, metric, device, layer=layer)
        src = self.vector_source(variable, pool, layer)
        return _recall(src, idx, threshold, k, sample=sample, seed=seed, device=device)


def _query_vectors(
    search: SearchAccessor, queries: Any, ids: Any, variable: str, pool: Any, layer: Any
) -> tuple[np.ndarray, pd.DataFrame | None, pd.DataFrame]:
    """Query vectors, their labels (for ``ids=``) and the labels of all vectors.

    For ``ids=`` only the query rows are read (:func:`.queries.row_vectors`);
    positions come from a hash lookup per id.
    """
    from .queries import id_positions, row_vectors

    if (queries is None) == (ids is None):
        raise ValidationError("pass exactly one of queries= (vectors) or ids= (row ids).")
    memo = search.catalog.state()[2]
    labels = search._labels(variable, pool, layer, memo)
    if ids is None:
        return np.asarray(queries), None, labels
    index = search._row_index(memo)
    if not index.is_unique:  # a plain dataset may repeat ids: match them all
        pos = positions_of_ids(labels, search.core.id_name, ids)
        return (
            search.vector_source(variable, pool, layer, n=len(labels)).read_rows(pos),
            labels.iloc[pos],
            labels,
        )
    per_row = len(labels) // max(len(index), 1)
    pos = id_positions(index, ids, per_row)
    rows = pos[::per_row] // per_row
    return row_vectors(search.core, variable, pool, layer, rows), labels.iloc[pos], labels


def _describe_index(idx: Any) -> str:
    """What answered a search: ``"exact scan"`` or the index kind and factory."""
    if idx is None:
        return "exact scan"
    how = "exact" if idx.exact else "approximate"
    return f"{idx.kind} index ({idx.factory}, {idx.ntotal} vectors), {how}"
