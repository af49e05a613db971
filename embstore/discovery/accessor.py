"""Discovery over an analyzer (``an.discovery``): outliers, leaks, galleries, queries.

:class:`DiscoveryAccessor` is the analyzer's discovery helper; each method is
a thin labeled wrapper over a free function of this package and uses the
analyzer core (``iter_vectors``, ``labels``, ``sel``, ``ids``, ``store``,
``id_name``) plus the analyzer's search helper
(:class:`~embstore.search.accessor.SearchAccessor`) for indexes and block
sources. :class:`embstore.EmbeddingAnalyzer` also offers each method flat
(``an.outliers(...)``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.accessor import split_spec
from ..analysis.core import AnalyzerCore
from ..analysis.spec import VectorSpec
from ..errors import ReadOnlyStoreError, ValidationError
from ..search.accessor import SearchAccessor
from ..search.source import BlockSource
from ._common import resolve_variable

__all__ = ["DiscoveryAccessor"]

logger = logging.getLogger(__name__)

_METHODS = ("knn",)


class DiscoveryAccessor:
    """Outliers, cross-split leaks, galleries and text/image queries (``an.discovery``).

    Parameters
    ----------
    search : SearchAccessor
        The analyzer's search helper (its core and index catalog).
    extractors : dict, optional
        Cache of the extractors rebuilt for text and image queries (the
        analyzer keeps one, so that a model is loaded once).

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(demo_path)
    >>> an.discovery.outliers(k=10)[["image_id", "score", "rank"]].shape
    (120, 3)
    >>> leaks = an.sel(skin=1).leaks(an.sel(skin=2), threshold=0.99)
    >>> list(leaks.columns[:3])
    ['i', 'j', 'score']
    """

    def __init__(
        self, search: SearchAccessor, extractors: dict[tuple[str, str], Any] | None = None
    ) -> None:
        self._search = search
        self._an: AnalyzerCore = search.core
        self._query_extractors = {} if extractors is None else extractors

    @property
    def core(self) -> AnalyzerCore:
        """The analyzer core (rows, labels, vectors)."""
        return self._an

    @property
    def index(self) -> SearchAccessor:
        """The analyzer's search helper (indexes, search, duplicates, clusters)."""
        return self._search

    # ------------------------------------------------------------ helpers
    def _source(
        self, variable: str, pool: Any, layer: Any, n: int, memory_budget: Any
    ) -> BlockSource:
        return self._search.vector_source(variable, pool, layer, n=n, memory_budget=memory_budget)

    def _outlier_scores(
        self,
        variable: str,
        pool: Any,
        layer: Any,
        k: int,
        metric: str,
        kind: str,
        nprobe: int | None,
        memory_budget: Any,
        device: str,
        progress: Any,
        refine: int | None = None,
    ) -> np.ndarray:
        from .outliers import AUTO_NPROBE, IVF_ROWS, outlier_scores

        labels = self._an.labels(variable, pool=pool, layer=layer)
        n = len(labels)
        src = self._source(variable, pool, layer, n, memory_budget)
        kd = str(kind).lower()
        if kd == "auto":
            kd = "ivf" if n >= IVF_ROWS else "exact"
            if kd == "ivf" and nprobe is None:
                nprobe = AUTO_NPROBE
        index = None
        if kd != "exact":
            index = self._search.build_index(
                variable, pool, kd, metric, device, layer=layer, save=False, progress=progress
            )
            if nprobe is not None:
                index.set_search_params(nprobe=int(nprobe))
        return outlier_scores(
            src,
            k,
            metric,
            index=index,
            memory_budget=memory_budget,
            device=device,
            progress=progress,
            refine=refine,
        )

    # ------------------------------------------------------------ outliers
    def outliers(
        self,
        k: int = 10,
        *,
        variable: str | None = None,
        method: str = "knn",
        by: str | list[str] | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str = "auto",
        nprobe: int | None = None,
        refine: int | None = None,
        coord: str | None = None,
        memory_budget: int | None = None,
        device: str = "auto",
        progress: bool | None = None,
        spec: VectorSpec | None = None,
    ) -> pd.DataFrame:
        """Outlier (uniqueness) score of every vector, most unusual first.

        The score is the mean cosine distance (``1 - cosine``) to the ``k``
        nearest other vectors (:func:`embstore.discovery.outliers.outlier_scores`):
        streamed block by block with the same kNN machinery as
        :meth:`find_duplicates`, so memory stays bounded.

        Parameters
        ----------
        k : int
            Neighbours averaged (the row itself excluded).
        variable : str, optional
            Variable to score (default: the store's obvious embedding variable).
        method : {"knn"}
            Scoring method.
        by : str or list of str, optional
            Per-group view: score each row against the rows of its own group
            (e.g. ``"skin"`` or ``["skin", "lighting"]``) only. Rows whose group
            value is missing get NaN.
        pool, layer, spec
            Which vectors (as in :meth:`search`).
        metric : {"cosine", "ip", "l2"}
            ``"l2"`` scores are mean Euclidean distances.
        kind : str
            ``"auto"`` (exact below 1M vectors, IVF with ``nprobe=8`` from
            1M on), ``"exact"``, or an index kind of :meth:`build_index`
            (``"ivf"``, ``"hnsw"``, ``"flat"``).
        nprobe : int, optional
            IVF lists probed per query.
        refine : int, optional
            With an index: re-score this many top candidates exactly
            (default 0.5% of the rows, at least 1000; 0: off). The index
            can only overestimate scores, so this restores the exact top.
        coord : str, optional
            Write the scores to the store as this coordinate (needs one
            vector per row and a store opened with ``mode="a"``).
        memory_budget : int, optional
            Bytes for the exact scan's batches.
        device : {"auto", "cpu", "cuda"}
            Where faiss computes.
        progress : bool, optional
            tqdm bar.

        Returns
        -------
        pandas.DataFrame
            The labels of every vector (id, coordinates) plus ``score`` and
            ``rank`` (0 = most unusual; within the group when ``by`` is
            given), sorted by descending score; the index is the vector
            position.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> top = an.outliers(k=10)
        >>> top["rank"].tolist()[:3], bool(top["score"].is_monotonic_decreasing)
        ([0, 1, 2], True)
        >>> per_skin = an.outliers(k=5, by="skin")
        >>> int(per_skin.groupby("skin")["rank"].min().max())
        0
        """
        from ..search.index import check_metric

        if method not in _METHODS:
            raise ValidationError(
                f"method={method!r} is not supported; use one of {list(_METHODS)}."
            )
        metric = check_metric(metric)
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="outliers()")
        variable = resolve_variable(self._an, variable)
        labels = self._an.labels(variable, pool=pool, layer=layer)
        common: dict[str, Any] = dict(
            k=k,
            metric=metric,
            kind=kind,
            nprobe=nprobe,
            memory_budget=memory_budget,
            device=device,
            progress=progress,
            refine=refine,
        )
        if by is None:
            scores = self._outlier_scores(variable, pool, layer, **common)
            group_key = None
        else:
            cols = [by] if isinstance(by, str) else list(by)
            missing = [c for c in cols if c not in labels.columns]
            if missing:
                raise ValidationError(
                    f"by={missing} is not a coordinate; coordinates: {list(labels.columns)}."
                )
            scores = np.full(len(labels), np.nan, np.float32)
            keys = labels[cols]
            groups = keys.dropna().drop_duplicates()
            for _, row in groups.iterrows():
                values = {c: row[c] for c in cols}
                mask = np.ones(len(labels), bool)
                for c, v in values.items():
                    mask &= (keys[c] == v).to_numpy()
                sub = self._an.sel(**{c: [v] for c, v in values.items()})
                part = DiscoveryAccessor(SearchAccessor(sub))._outlier_scores(
                    variable, pool, layer, **common
                )
                if part.size != int(mask.sum()):  # pragma: no cover - selection semantics changed
                    raise ValidationError(
                        f"group {values} selected {part.size} rows, expected {int(mask.sum())}."
                    )
                scores[mask] = part
            group_key = cols
        out = labels.copy()
        out["score"] = scores
        if group_key is None:
            order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
            out = out.iloc[order]
            out["rank"] = np.arange(len(out))
        else:
            out = out.sort_values("score", ascending=False, kind="stable", na_position="last")
            out["rank"] = out.groupby(group_key, dropna=False, sort=False).cumcount()
        if coord is not None:
            self._write_scores(coord, scores, len(labels))
        return out

    def _write_scores(self, coord: str, scores: np.ndarray, n_vectors: int) -> None:
        store = self._an.store
        if store is None:
            raise ValidationError(f"coord={coord!r}: this analyzer has no store to write to.")
        ids = np.asarray(self._an.ids)
        if n_vectors != ids.size:
            raise ValidationError(
                f"coord={coord!r} needs one vector per row ({n_vectors} vectors for {ids.size} rows); "
                "pass pool='mean' or coord=None."
            )
        old = self._search.catalog.token()
        try:
            store.set_coords({coord: scores}, ids=ids)
        except PermissionError as exc:
            raise ReadOnlyStoreError(
                f"cannot write coordinate {coord!r}: the store is read-only; "
                "open it with Store.open(path, mode='a')."
            ) from exc
        self._search.catalog.refresh_tokens(old)

    # ------------------------------------------------------------ leaks
    def _same_store(self, other: AnalyzerCore) -> bool:
        a, b = self._an.store, other.store
        if a is None or b is None:
            return False
        if a is b:
            return True
        try:
            return str(a.path) == str(b.path)
        except AttributeError:  # pragma: no cover
            return False

    def leaks(
        self,
        other: Any,
        threshold: float = 0.95,
        k: int | None = None,
        *,
        variable: str | None = None,
        pool: str | None = "mean",
        layer: int | None = None,
        metric: str = "cosine",
        kind: str | None = None,
        row_batch: int | None = None,
        block_rows: int | None = None,
        device: str = "auto",
        spec: VectorSpec | None = None,
    ) -> pd.DataFrame:
        """Pairs between this selection and ``other`` whose score passes ``threshold``.

        The typical use is finding test images that are near copies of
        training images: ``an.sel(split="test").leaks(an.sel(split="train"))``.
        ``other`` may be another selection of the same store or another store.

        Parameters
        ----------
        other : EmbeddingAnalyzer, Store or path
            The set searched (e.g. the training split).
        threshold : float
            Minimum cosine similarity (maximum distance for ``"l2"``).
        k : int, optional
            Keep at most ``k`` matches per query row; ``None`` (default) is
            an exhaustive, exact range search.
        variable, pool, layer, spec
            Which vectors, on both sides (as in :meth:`search`).
        metric : {"cosine", "ip", "l2"}
            Metric.
        kind : str, optional
            With ``k``: search an index of this kind built on ``other``
            (e.g. ``"ivf"``) instead of the exact scan.
        row_batch, block_rows : int, optional
            Query rows per batch and rows of ``other`` per streamed block.
        device : {"auto", "cpu", "cuda"}
            Where faiss computes.

        Returns
        -------
        pandas.DataFrame
            One row per pair, best score first: ``i`` / ``j`` (vector
            positions on this side / in ``other``), ``score``, then the
            labels (id and coordinates) of both sides with suffixes
            ``_query`` and ``_against``. Within one store, a row is never
            paired with itself.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(face_path)
        >>> pairs = an.sel(person=[0, 1]).leaks(an, threshold=0.95)
        >>> pairs[["image_id_query", "image_id_against"]].values.tolist()
        [[0, 1], [1, 0], [2, 3], [3, 2]]
        """
        from ..search.index import check_metric
        from .leaks import cross_pairs

        osearch = _search_of(other)
        if kind is not None and k is None:
            raise ValidationError(f"kind={kind!r} needs k= (an index returns the top k only).")
        metric = check_metric(metric)
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="leaks()")
        variable = resolve_variable(self._an, variable)
        qlab = self._an.labels(variable, pool=pool, layer=layer)
        dlab = osearch.core.labels(variable, pool=pool, layer=layer)
        qsrc = self._source(variable, pool, layer, len(qlab), None)
        dsrc = osearch.vector_source(variable, pool, layer, n=len(dlab))
        index = None
        if kind is not None:
            index = osearch.build_index(
                variable, pool, kind, metric, device, layer=layer, save=False
            )
        pairs = cross_pairs(
            qsrc,
            dsrc,
            threshold,
            metric,
            k=k,
            index=index,
            row_batch=row_batch,
            block_rows=block_rows,
            device=device,
        )
        id_name = self._an.id_name
        if self._same_store(osearch.core) and len(pairs) and id_name in qlab and id_name in dlab:
            keep = qlab[id_name].to_numpy()[pairs.i] != dlab[id_name].to_numpy()[pairs.j]
            pairs = type(pairs)(pairs.i[keep], pairs.j[keep], pairs.score[keep])
        df = pd.DataFrame({"i": pairs.i, "j": pairs.j, "score": pairs.score})
        li = qlab.iloc[pairs.i].reset_index(drop=True).add_suffix("_query")
        lj = dlab.iloc[pairs.j].reset_index(drop=True).add_suffix("_against")
        df = pd.concat([df, li, lj], axis=1)
        ascending = metric == "l2"
        return df.sort_values(
            ["score", "i", "j"], ascending=[ascending, True, True], kind="stable"
        ).reset_index(drop=True)

    # ------------------------------------------------------------ galleries
    def gallery(
        self,
        kind: str,
        out_dir: Any,
        *,
        image_root: Any = None,
        path_coord: str | None = None,
        variable: str | None = None,
        pool: str | None = "mean",
        threshold: float | None = None,
        k: int | None = None,
        ids: Any = None,
        against: Any = None,
        n_groups: int = 50,
        per_group: int = 12,
        per_page: int = 300,
        thumb: int = 160,
        captions: Any = ("skin", "lighting"),
        device: str = "auto",
    ) -> Any:
        """Write a captioned, self-contained HTML gallery of duplicates, clusters, outliers...

        Parameters
        ----------
        kind : {"duplicates", "clusters", "outliers", "neighbors", "leaks"}
            What to show (see :func:`embstore.discovery.gallery_views.build_groups`).
        out_dir : path
            Output folder; ``index.html`` is the first page.
        image_root : path, optional
            Folder that relative image paths are resolved against.
        path_coord : str, optional
            Coordinate holding image paths (default: ``path``, ``filename``...).
        variable, pool
            Which vectors.
        threshold, k, ids, against
            Parameters of the analysis behind ``kind``.
        n_groups, per_group : int
            Groups shown and images per group.
        per_page : int
            Images per HTML page (pages are linked).
        thumb : int
            Thumbnail box in pixels (aspect ratio kept).
        captions : sequence of str
            Coordinates added to each caption when present.
        device : str
            faiss device.

        Returns
        -------
        pathlib.Path
            The first page.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(face_path)
        >>> page = an.gallery("duplicates", out_dir, threshold=0.9)
        >>> page.name
        'index.html'
        """
        from .gallery import write_gallery
        from .gallery_views import build_groups

        groups, summary = build_groups(
            self,
            kind,
            variable=variable,
            pool=pool,
            image_root=image_root,
            path_coord=path_coord,
            threshold=threshold,
            k=k,
            ids=ids,
            against=against,
            n_groups=n_groups,
            per_group=per_group,
            captions=tuple(captions),
            device=device,
        )
        return write_gallery(
            groups,
            out_dir,
            title=f"embstore {kind}",
            thumb=thumb,
            per_page=per_page,
            summary=summary,
            first_is_query=kind in ("neighbors", "leaks"),
        )

    # ------------------------------------------------------------ text and image queries
    def _query_extractor(self, extractor: Any, weights: Any, device: str) -> Any:
        if extractor is not None:
            return extractor
        from .queries import extractor_from_store

        cache = self._query_extractors
        key = (str(weights), device)
        if key not in cache:
            cache[key] = extractor_from_store(
                self._an.store, weights=weights, device="cpu" if device == "auto" else device
            )
        return cache[key]

    def search_text(
        self,
        texts: Any,
        k: int = 10,
        *,
        extractor: Any = None,
        variable: str | None = None,
        weights: Any = None,
        kind: str | None = None,
        device: str = "auto",
    ) -> pd.DataFrame:
        """Rows whose embeddings best match text queries (text-to-image search).

        Parameters
        ----------
        texts : str or list of str
            Queries, e.g. ``"a person in dim light"``.
        k : int
            Rows per query.
        extractor : object, optional
            An extractor with ``extract_texts`` (e.g. a
            :class:`~extractors.siglip.SiglipExtractor`); by default the one
            recorded in the store's provenance is rebuilt (model name and
            local weights, checked by SHA-256).
        variable : str, optional
            Variable searched (default: the store's embedding variable).
        weights : path, optional
            The weights file when it moved since extraction.
        kind : str, optional
            Search with this index kind (see :meth:`search`).
        device : str
            Where the model and faiss run.

        Returns
        -------
        pandas.DataFrame
            One row per (text, rank): ``text``, ``rank``, ``neighbor``, the
            row's id and coordinates, ``score`` (cosine).

        Raises
        ------
        CheckpointError
            If the recorded weights are missing (the message names them) or differ.
        """
        from .queries import search_frame_for

        texts = [texts] if isinstance(texts, str) else list(texts)
        ex = self._query_extractor(extractor, weights, device)
        q = np.asarray(ex.extract_texts(texts), np.float32)
        variable = resolve_variable(self._an, variable)
        df = self._search.search(q, k, variable=variable, kind=kind, device=device)
        return search_frame_for(texts, "text", df)

    def search_images(
        self,
        paths: Any,
        k: int = 10,
        *,
        extractor: Any = None,
        variable: str | None = None,
        weights: Any = None,
        kind: str | None = None,
        device: str = "auto",
    ) -> pd.DataFrame:
        """Rows most similar to new image files, embedded with the store's extractor.

        Parameters
        ----------
        paths : path or list of paths
            Query images.
        k, extractor, variable, weights, kind, device
            As in :meth:`search_text` (the extractor needs ``extract_images``).

        Returns
        -------
        pandas.DataFrame
            One row per (image, rank): ``image`` (the path), ``rank``,
            ``neighbor``, the row's id and coordinates, ``score``.
        """
        from .queries import load_query_images, search_frame_for

        items = (
            [paths]
            if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__")
            else list(paths)
        )
        images = load_query_images(items)
        ex = self._query_extractor(extractor, weights, device)
        out = ex.extract_images(images)
        q = np.asarray(out["embedding"] if isinstance(out, dict) else out, np.float32)
        variable = resolve_variable(self._an, variable)
        df = self._search.search(q, k, variable=variable, kind=kind, device=device)
        return search_frame_for(items, "image", df)

    # ------------------------------------------------------------ explorer
    def explore(
        self,
        out: Any,
        *,
        color: str | None = "skin",
        variable: str | None = None,
        pool: str | None = "mean",
        method: str = "pca",
        image_root: Any = None,
        path_coord: str | None = None,
        max_points: int = 100_000,
        max_thumbs: int = 3000,
        thumb: int = 128,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Write a standalone interactive HTML explorer (2-D projection, Plotly).

        Points are coloured by ``color``; hovering shows the thumbnail and the
        coordinates; the lasso or box tool lists the selected ids in a text
        box to copy. The page inlines plotly.js and opens from disk with no
        server. See :func:`embstore.discovery.explorer.write_explorer`.

        Parameters
        ----------
        out : path
            Output ``.html`` file.
        color, variable, pool, method, image_root, path_coord, max_points, max_thumbs, thumb, seed
            See :func:`~embstore.discovery.explorer.write_explorer`.

        Returns
        -------
        dict
            ``path``, ``n_rows``, ``n_shown``, ``subsampled``, ``method``,
            ``explained``, ``note``.
        """
        from .explorer import write_explorer

        return write_explorer(
            self._an,
            out,
            color=color,
            variable=variable,
            pool=pool,
            method=method,
            image_root=image_root,
            path_coord=path_coord,
            max_points=max_points,
            max_thumbs=max_thumbs,
            thumb=thumb,
            seed=seed,
        )


def _search_of(other: Any) -> SearchAccessor:
    """The search helper of ``other``: an analyzer (its own), a core, a Store or a path."""
    if isinstance(other, SearchAccessor):
        return other
    index = getattr(other, "index", None)
    if isinstance(index, SearchAccessor):
        return index
    if isinstance(other, AnalyzerCore):
        return SearchAccessor(other)
    return SearchAccessor(AnalyzerCore(other))
