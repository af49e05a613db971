"""Fairness over an analyzer (``an.fairness``): group statistics and detection fairness.

:class:`FairnessAccessor` holds a typed reference to the analyzer core
(``vectors``, ``matrix``, ``coords``, ``store``, ``id_name``); the statistics
themselves are the pure functions of :mod:`embstore.fairness.stats` and
:mod:`embstore.fairness.detection`. :class:`embstore.EmbeddingAnalyzer` also
offers each method flat (``an.group_stats(...)``).

Examples
--------
>>> from embstore import EmbeddingAnalyzer
>>> an = EmbeddingAnalyzer(demo_path)
>>> table = an.fairness.group_stats(by=["skin"], n_boot=20, min_count=5)
>>> sorted(table["skin"].dropna().astype(int))
[1, 2, 3, 4]
>>> det = an.detection_fairness(by=["skin"], n_boot=20, min_count=5)
>>> {"recall", "count"} <= set(det.columns)
True
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from ..analysis.accessor import split_spec
from ..analysis.core import AnalyzerCore
from ..analysis.defaults import resolve_variable
from ..analysis.spec import VectorSpec
from ..errors import UnknownVariableError, ValidationError
from .detection import PERSON_CLASS, DetectionStats, detection_statistics, match_persons
from .stats import GroupStats, group_distance_matrix, group_statistics

__all__ = ["FairnessAccessor"]

logger = logging.getLogger(__name__)

_WIDTH_NAMES = ("width", "image_width", "img_width", "w")
_HEIGHT_NAMES = ("height", "image_height", "img_height", "h")


def _as_list(by: Sequence[str] | str) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


class FairnessAccessor:
    """Group statistics and detection fairness on an analyzer (``an.fairness``).

    Methods return labeled pandas/xarray objects; see
    :func:`embstore.fairness.stats.group_statistics` and
    :func:`embstore.fairness.detection.detection_statistics` for the figures.

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose rows are grouped.
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core

    # ------------------------------------------------------------- embeddings
    def fairness_stats(
        self,
        variable: str | None = None,
        by: Sequence[str] | str = ("skin",),
        pool: str | None = "mean",
        layer: int | None = None,
        *,
        persons: pd.DataFrame | None = None,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        min_count: int = 20,
        spec: VectorSpec | None = None,
        **options: Any,
    ) -> GroupStats:
        """Full group statistics: table, centroid distances, disparity, probe.

        Parameters
        ----------
        variable : str, optional
            Embedding variable.
        by : str or sequence of str, optional
            Grouping coordinates (row coordinates, or columns of ``persons``).
        pool : str or None, optional
            Pooling over queries (see ``vectors``); ``None`` analyses every
            (row, query) vector. Ignored with ``persons``.
        layer : int, optional
            Layer of a layered variable (``decoder_output``).
        spec : VectorSpec, optional
            The vectors as one :class:`~embstore.analysis.spec.VectorSpec`
            (its ``pool`` is used; a given ``variable`` or ``layer`` overrides it).
        persons : pandas.DataFrame, optional
            A per-person table from :meth:`person_detections`: analyse the
            embedding of each detected person's matched query, grouped by the
            person's own labels.
        n_boot, seed, alpha, min_count
            As in :func:`~embstore.fairness.stats.group_statistics`.
        **options
            Other keywords of :func:`~embstore.fairness.stats.group_statistics`
            (``k``, ``n_perm``, ``probe``, ``max_knn_rows``, ...).

        Returns
        -------
        GroupStats
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="fairness_stats()")
        variable = resolve_variable(self._an, variable)
        by = _as_list(by)
        if persons is not None:
            X, labels = self.matched_embeddings(persons, variable, layer)
        else:
            X, labels = self._an.matrix(variable, pool=pool, layer=layer)
        return group_statistics(
            X, labels, by, n_boot=n_boot, seed=seed, alpha=alpha, min_count=min_count, **options
        )

    def group_stats(
        self,
        variable: str | None = None,
        by: Sequence[str] | str = ("skin",),
        pool: str | None = "mean",
        layer: int | None = None,
        *,
        persons: pd.DataFrame | None = None,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        min_count: int = 20,
        spec: VectorSpec | None = None,
        **options: Any,
    ) -> pd.DataFrame:
        """Embedding statistics per group and intersection, as a tidy table.

        One row per group of every grouping (each ``by`` coordinate and their
        intersections); columns: the ``by`` coordinates (NA where not part of
        the row's grouping), ``grouping``, ``count``, ``centroid_norm``,
        ``dispersion``, ``dist_to_others``, ``homophily`` (with
        ``homophily_expected`` and ``homophily_ratio``), ``probe_recall``,
        ``energy``, ``p_value``, ``p_holm``, and ``<figure>_lo`` /
        ``<figure>_hi`` bootstrap bounds. Use :meth:`fairness_stats` for the
        centroid distance matrices, disparity summary and probe accuracy too.

        Parameters
        ----------
        variable, by, pool, layer, persons, n_boot, seed, alpha, min_count, spec, **options
            As in :meth:`fairness_stats`.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> t = an.group_stats(by=["skin", "lighting"], n_boot=20, min_count=5)
        >>> sorted(set(t["grouping"]))
        ['lighting', 'skin', 'skin*lighting']
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="group_stats()")
        variable = resolve_variable(self._an, variable)
        return self.fairness_stats(
            variable,
            by,
            pool,
            layer,
            persons=persons,
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            min_count=min_count,
            **options,
        ).table

    def group_distances(
        self,
        variable: str | None = None,
        by: Sequence[str] | str = ("skin",),
        pool: str | None = "mean",
        layer: int | None = None,
        *,
        persons: pd.DataFrame | None = None,
        missing_values: Mapping[str, Sequence[Any]] | None = None,
        spec: VectorSpec | None = None,
    ) -> xr.DataArray:
        """Cosine distances between the centroids of the groups of ``by``.

        Parameters
        ----------
        variable, by, pool, layer, persons, spec
            As in :meth:`fairness_stats`; with several ``by`` coordinates the
            groups are their intersections.
        missing_values : mapping, optional
            Labels meaning "unknown" (see
            :func:`~embstore.fairness.stats.labeled_mask`).

        Returns
        -------
        xarray.DataArray
            dims ``("group", "other")`` labeled with readable group names.
        """
        variable, pool, layer, _ = split_spec(spec, variable, pool, layer, what="group_distances()")
        variable = resolve_variable(self._an, variable)
        if persons is not None:
            X, labels = self.matched_embeddings(persons, variable, layer)
        else:
            X, labels = self._an.matrix(variable, pool=pool, layer=layer)
        return group_distance_matrix(X, labels, _as_list(by), missing_values)

    # -------------------------------------------------------------- detection
    def _image_size(self) -> tuple[np.ndarray, np.ndarray]:
        coords = self._an.coords
        w = next((c for c in _WIDTH_NAMES if c in coords.columns), None)
        h = next((c for c in _HEIGHT_NAMES if c in coords.columns), None)
        if w is None or h is None:
            raise UnknownVariableError(
                f"detection matching needs per-image 'width' and 'height' coordinates (pred_boxes "
                f"are relative); the store has {list(coords.columns)!r}. Add them with "
                "store.set_coords({'width': ..., 'height': ...})."
            )
        return coords[w].to_numpy(dtype=np.float64), coords[h].to_numpy(dtype=np.float64)

    def _iter_row_blocks(self, variable: str, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        arr = self._an.vectors(variable, pool=None)
        n = len(self._an.coords)
        q = arr.shape[0] // max(n, 1)
        data = arr.data
        for start in range(0, n, block_rows):
            stop = min(n, start + block_rows)
            block = np.asarray(data[start * q : stop * q])
            yield start, block.reshape(stop - start, q, -1)

    def person_table(self, table: str = "persons") -> pd.DataFrame:
        """The person annotations of the selected images.

        Parameters
        ----------
        table : str, optional
            Name of the store table holding one row per annotated person.

        Returns
        -------
        pandas.DataFrame
            The table's rows whose image is among the analyzer's rows.

        Raises
        ------
        ValidationError
            If the analyzer has no store (old per-image directory).
        """
        if self._an.store is None:
            raise ValidationError(
                "person annotations live in a store table; convert the old directory to a store "
                "first (embstore convert) and write the persons table."
            )
        persons = self._an.store.read_table(table)
        id_col = self._an.id_name if self._an.id_name in persons.columns else "image_id"
        if id_col not in persons.columns:
            raise UnknownVariableError(
                f"table {table!r} has no {self._an.id_name!r} (or 'image_id') column linking people to "
                f"rows; its columns are {list(persons.columns)!r}."
            )
        ids = pd.Index(self._an.coords.index)
        keep = ids.get_indexer(persons[id_col]) >= 0
        if not keep.all():
            logger.info("person_table: %d people of unselected images left out", int((~keep).sum()))
        return persons[keep].reset_index(drop=True)

    def person_detections(
        self,
        iou: float = 0.5,
        *,
        score_threshold: float = 0.0,
        person_class: int = PERSON_CLASS,
        table: str = "persons",
        boxes: str = "pred_boxes",
        logits: str = "pred_logits",
        block_rows: int = 2048,
    ) -> pd.DataFrame:
        """Match every annotated person to the person predictions of their image.

        See :mod:`embstore.fairness.detection` for the matching rule.

        Parameters
        ----------
        iou : float, optional
            IoU threshold of ``detected``.
        score_threshold : float, optional
            Ignore predictions scoring below (0: all person-labelled queries).
        person_class : int, optional
            Class index of "person" in ``pred_logits`` (COCO: 1).
        table : str, optional
            Store table with the person annotations.
        boxes, logits : str, optional
            Variables holding DETR's ``(cx, cy, w, h)`` boxes and logits.
        block_rows : int, optional
            Images read per block (bounds memory).

        Returns
        -------
        pandas.DataFrame
            The person table plus ``row``, ``detected``, ``iou``, ``best_iou``,
            ``score``, ``query`` (matched query, -1 if none) and
            ``recall_avg``; usable as ``persons=`` of :meth:`group_stats`.
        """
        persons = self.person_table(table)
        id_col = self._an.id_name if self._an.id_name in persons.columns else "image_id"
        width, height = self._image_size()
        rows = pd.Index(self._an.coords.index).get_indexer(persons[id_col])
        parts = []
        it_boxes = self._iter_row_blocks(boxes, block_rows)
        it_logits = self._iter_row_blocks(logits, block_rows)
        bar = tqdm(
            total=len(width), unit="img", desc="matching people", disable=not sys.stderr.isatty()
        )
        for (start, pb), (_, pl) in zip(it_boxes, it_logits):
            bar.update(len(pb))
            stop = start + len(pb)
            sel = np.flatnonzero((rows >= start) & (rows < stop))
            if not sel.size:
                continue
            part = match_persons(
                persons.iloc[sel],
                rows[sel] - start,
                pb,
                pl,
                width[start:stop],
                height[start:stop],
                iou=iou,
                score_threshold=score_threshold,
                person_class=person_class,
            )
            part["row"] = rows[sel]
            part.index = sel
            parts.append(part)
        bar.close()
        if not parts:
            return match_persons(
                persons.iloc[:0],
                np.zeros(0, dtype=np.int64),
                np.zeros((0, 1, 4)),
                np.zeros((0, 1, 2)),
                np.zeros(0),
                np.zeros(0),
            )
        return pd.concat(parts).sort_index().reset_index(drop=True)

    def matched_embeddings(
        self,
        persons: pd.DataFrame,
        variable: str | None = None,
        layer: int | None = None,
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Embeddings of the queries matched to detected people.

        Parameters
        ----------
        persons : pandas.DataFrame
            Output of :meth:`person_detections`.
        variable : str, optional
            Per-query embedding variable.
        layer : int, optional
            Layer of a layered variable.

        Returns
        -------
        matrix : numpy.ndarray
            float32 ``(n_detected, D)``.
        labels : pandas.DataFrame
            The detected people's rows of ``persons``.
        """
        variable = resolve_variable(self._an, variable)
        need = [c for c in ("row", "query", "detected") if c not in persons.columns]
        if need:
            raise UnknownVariableError(
                f"persons lacks columns {need!r}; build it with analyzer.person_detections()."
            )
        det = persons[persons["detected"].astype(bool)].reset_index(drop=True)
        arr = self._an.vectors(variable, pool=None, layer=layer)
        q = arr.shape[0] // max(len(self._an.coords), 1)
        pos = det["row"].to_numpy(dtype=np.int64) * q + det["query"].to_numpy(dtype=np.int64)
        order = np.argsort(pos, kind="stable")
        X = np.empty((len(pos), arr.shape[1]), dtype=np.float32)
        if len(pos):
            X[order] = np.asarray(arr.data[pos[order]], dtype=np.float32)
        return X, det

    def detection_stats(
        self,
        by: Sequence[str] | str = ("skin",),
        iou: float = 0.5,
        *,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        min_count: int = 20,
        persons: pd.DataFrame | None = None,
        missing_values: Mapping[str, Sequence[Any]] | None = None,
        **match_options: Any,
    ) -> DetectionStats:
        """Detection recall per group with disparity summary.

        Parameters
        ----------
        by : str or sequence of str, optional
            Person-level grouping columns (``skin``, ``lighting``, ...).
        iou : float, optional
            IoU threshold of ``recall``.
        n_boot, seed, alpha, min_count
            As in :func:`~embstore.fairness.detection.detection_statistics`.
        persons : pandas.DataFrame, optional
            A precomputed :meth:`person_detections` table.
        missing_values : mapping, optional
            Labels meaning "unknown" (see
            :func:`~embstore.fairness.stats.labeled_mask`).
        **match_options
            Keywords of :meth:`person_detections`.

        Returns
        -------
        DetectionStats
        """
        if persons is None:
            persons = self.person_detections(iou, **match_options)
        return detection_statistics(
            persons,
            _as_list(by),
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            min_count=min_count,
            missing_values=missing_values,
        )

    def detection_fairness(
        self,
        by: Sequence[str] | str = ("skin",),
        iou: float = 0.5,
        *,
        n_boot: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
        min_count: int = 20,
        persons: pd.DataFrame | None = None,
        **match_options: Any,
    ) -> pd.DataFrame:
        """Person-detection recall per group and intersection.

        Columns: the ``by`` coordinates, ``grouping``, ``count``,
        ``n_detected``, ``recall`` (at ``iou``), ``recall_avg`` (IoU
        0.5:0.95), ``mean_score``, each with ``_lo``/``_hi`` bootstrap
        bounds. :meth:`detection_stats` also returns the disparity summary.

        Parameters
        ----------
        by, iou, n_boot, seed, alpha, min_count, persons, **match_options
            As in :meth:`detection_stats`.

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> t = an.detection_fairness(by=["skin"], n_boot=20, min_count=5)
        >>> bool(t["recall"].between(0, 1).all())
        True
        """
        return self.detection_stats(
            by,
            iou,
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            min_count=min_count,
            persons=persons,
            **match_options,
        ).table
