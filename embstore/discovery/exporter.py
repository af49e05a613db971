"""Exports of an analyzer's rows and groups (``an.export``).

:class:`ExportAccessor` writes what the analysis found to files other tools
read: Parquet / Hugging Face datasets of the rows and vectors
(:mod:`embstore.discovery.export`), face-recognition training labels from
clusters and preview grids of groups (:mod:`embstore.search.export`).
:class:`embstore.EmbeddingAnalyzer` also offers each method flat
(``an.to_parquet(...)``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis.core import AnalyzerCore
from ..errors import SelectionError, ValidationError
from ..search.accessor import PATH_COORDS, ClusterResult, Deduplicated
from ..search.export import export_training_labels as _export_labels
from ..search.export import save_group_previews as _save_previews
from ..search.results import GroupResult

__all__ = ["ExportAccessor"]

logger = logging.getLogger(__name__)


class ExportAccessor:
    """Parquet / datasets exports, training labels and group previews (``an.export``).

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose rows are exported.

    Examples
    --------
    >>> import os
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(face_path)
    >>> path = an.export.to_parquet(os.path.join(out_dir, "faces.parquet"))
    >>> import pandas as pd
    >>> pd.read_parquet(path).shape[0]
    80
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core

    def _paths(
        self, labels: pd.DataFrame, path_coord: str | None, required: bool
    ) -> list[str] | None:
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
            items = frame[self._an.id_name].astype(str).tolist()
        keep = None
        if dedup is not None:
            keep = frame[self._an.id_name].isin(set(dedup.kept_ids.tolist())).to_numpy()
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
    ) -> list[Path]:
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
            labels_df, res = self._an.coords.reset_index(), groups
            if len(labels_df) != len(res):
                raise ValidationError(
                    f"{len(res)} group labels for {len(labels_df)} rows; pass the ClusterResult instead."
                )
        found = self._paths(labels_df, path_coord, required=True)
        paths: list[str] = [] if found is None else found
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
            self._an, path, variables, pool, normalize=normalize, block_rows=block_rows
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
            self._an, variables, pool, normalize=normalize, path=path, block_rows=block_rows
        )
