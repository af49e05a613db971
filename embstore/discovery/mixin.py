"""Discovery methods on :class:`embstore.EmbeddingAnalyzer`.

:class:`DiscoveryMixin` is mixed into the analyzer. Each method is a thin
labeled wrapper over a free function of this package and uses only the
analyzer contract (``iter_vectors``, ``labels``, ``sel``, ``ids``, ``store``,
``id_name``) plus :meth:`SearchMixin.build_index` for indexes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadOnlyStoreError, ValidationError
from ._common import resolve_variable

__all__ = ["DiscoveryMixin"]

logger = logging.getLogger(__name__)

_METHODS = ("knn",)


class DiscoveryMixin:
    """Outliers, cross-split leaks, exports and galleries on an analyzer.

    Examples
    --------
    >>> an = EmbeddingAnalyzer("faces.zarr")                          # doctest: +SKIP
    >>> an.outliers(k=10).head()                                       # doctest: +SKIP
    >>> an.sel(split="test").leaks(an.sel(split="train"), 0.95)        # doctest: +SKIP
    """

    # ------------------------------------------------------------ helpers
    def _discovery_source(
        self, variable: str, pool: Any, layer: Any, n: int, memory_budget: Any
    ) -> Any:
        from ..search.source import BlockSource

        make = getattr(self, "_vector_source", None)
        if make is not None:
            return make(variable, pool, layer, n=n, memory_budget=memory_budget)

        def factory(rows: int) -> Any:  # pragma: no cover - analyzer without SearchMixin
            return self.iter_vectors(variable, pool=pool, layer=layer, block_rows=rows)  # type: ignore[attr-defined]

        return BlockSource(factory, n=n)  # pragma: no cover

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

        labels = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        n = len(labels)
        src = self._discovery_source(variable, pool, layer, n, memory_budget)
        kd = str(kind).lower()
        if kd == "auto":
            kd = "ivf" if n >= IVF_ROWS else "exact"
            if kd == "ivf" and nprobe is None:
                nprobe = AUTO_NPROBE
        index = None
        if kd != "exact":
            index = self.build_index(  # type: ignore[attr-defined]
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
        pool, layer
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
        >>> an.outliers(k=10, variable="embedding").head(3)            # doctest: +SKIP
        >>> an.outliers(k=10, by="skin")                               # doctest: +SKIP
        """
        from ..search.index import check_metric

        if method not in _METHODS:
            raise ValidationError(
                f"method={method!r} is not supported; use one of {list(_METHODS)}."
            )
        metric = check_metric(metric)
        variable = resolve_variable(self, variable)
        labels = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        common = dict(
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
                sub = self.sel(**{c: [v] for c, v in values.items()})  # type: ignore[attr-defined]
                part = sub._outlier_scores(variable, pool, layer, **common)
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
        store = self.store  # type: ignore[attr-defined]
        if store is None:
            raise ValidationError(f"coord={coord!r}: this analyzer has no store to write to.")
        ids = np.asarray(self.ids)  # type: ignore[attr-defined]
        if n_vectors != ids.size:
            raise ValidationError(
                f"coord={coord!r} needs one vector per row ({n_vectors} vectors for {ids.size} rows); "
                "pass pool='mean' or coord=None."
            )
        token = getattr(self, "_store_token", None)
        old = token() if token is not None else None
        try:
            store.set_coords({coord: scores}, ids=ids)
        except PermissionError as exc:
            raise ReadOnlyStoreError(
                f"cannot write coordinate {coord!r}: the store is read-only; "
                "open it with Store.open(path, mode='a')."
            ) from exc
        refresh = getattr(self, "_refresh_tokens", None)
        if refresh is not None:
            refresh(old)

    # ------------------------------------------------------------ leaks
    def _same_store(self, other: Any) -> bool:
        a, b = self.store, other.store  # type: ignore[attr-defined]
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
        variable, pool, layer
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
        >>> an.sel(split="test").leaks(an.sel(split="train"), threshold=0.95)  # doctest: +SKIP
        """
        from ..search.index import check_metric
        from .leaks import cross_pairs

        if not hasattr(other, "iter_vectors"):
            other = type(self)(other)  # type: ignore[call-arg]
        if kind is not None and k is None:
            raise ValidationError(f"kind={kind!r} needs k= (an index returns the top k only).")
        metric = check_metric(metric)
        variable = resolve_variable(self, variable)
        qlab = self.labels(variable, pool=pool, layer=layer)  # type: ignore[attr-defined]
        dlab = other.labels(variable, pool=pool, layer=layer)
        qsrc = self._discovery_source(variable, pool, layer, len(qlab), None)
        dsrc = other._discovery_source(variable, pool, layer, len(dlab), None)
        index = None
        if kind is not None:
            index = other.build_index(variable, pool, kind, metric, device, layer=layer, save=False)
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
        id_name = self.id_name  # type: ignore[attr-defined]
        if self._same_store(other) and len(pairs) and id_name in qlab and id_name in dlab:
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

    # ------------------------------------------------------------ exports
    def to_parquet(
        self,
        path: Any,
        variables: Any = None,
        pool: str | None = "mean",
        *,
        normalize: bool = False,
        block_rows: int = 16384,
    ) -> Any:
        """Write the analysed rows (ids, coordinates, vectors) to a Parquet file.

        Parameters
        ----------
        path : path
            Output ``.parquet`` file.
        variables : str or list of str, optional
            Variables (default: every one-vector-per-row variable).
        pool : str or None
            Pooling of multi-vector variables; ``None`` keeps nested lists.
        normalize : bool
            L2-normalise the vectors.
        block_rows : int
            Rows per row group (streamed: one block in memory).

        Returns
        -------
        pathlib.Path
        """
        from .export import write_parquet

        return write_parquet(
            self, path, variables, pool, normalize=normalize, block_rows=block_rows
        )

    def to_hf_dataset(
        self,
        variables: Any = None,
        pool: str | None = "mean",
        *,
        normalize: bool = False,
        path: Any = None,
        block_rows: int = 16384,
    ) -> Any:
        """The analysed rows as a Hugging Face :class:`datasets.Dataset`.

        Columns: the id, every coordinate, one float32 list column per
        variable. With ``normalize=True``, ``ds.add_faiss_index(column,
        metric_type=faiss.METRIC_INNER_PRODUCT)`` ranks by cosine and
        ``get_nearest_examples`` returns the neighbours of :meth:`search`.

        Parameters
        ----------
        variables, pool, normalize, block_rows
            As in :meth:`to_parquet`.
        path : path, optional
            The backing ``.arrow`` file (default: in a new temporary folder).

        Returns
        -------
        datasets.Dataset
        """
        from .export import to_hf_dataset

        return to_hf_dataset(
            self, variables, pool, normalize=normalize, path=path, block_rows=block_rows
        )

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
        >>> an.gallery("duplicates", "dups/", image_root="photos/")    # doctest: +SKIP
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

        cache = self.__dict__.setdefault("_embstore_query_extractors", {})
        key = (str(weights), device)
        if key not in cache:
            cache[key] = extractor_from_store(
                self.store,
                weights=weights,  # type: ignore[attr-defined]
                device="cpu" if device == "auto" else device,
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
        variable = resolve_variable(self, variable)
        df = self.search(q, k, variable=variable, kind=kind, device=device)  # type: ignore[attr-defined]
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
        variable = resolve_variable(self, variable)
        df = self.search(q, k, variable=variable, kind=kind, device=device)  # type: ignore[attr-defined]
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
            self,
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
