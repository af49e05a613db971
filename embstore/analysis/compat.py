"""The old ``analyze_embeddings.EmbeddingAnalyzer`` API, on a store or an old directory.

Users' scripts written for the per-image ``.pt`` analyzer keep working:

=====================================  ==============================================
old call                               behaviour here
=====================================  ==============================================
``metadata``                           dict with ``image_ids``, ``num_images``,
                                       ``extract_type``, ``embedding_keys``
``load_embedding(image_id)``           dict of torch tensors, ``None`` if unknown id
``load_all_embeddings(key)``           ``(list of tensors, list of ids)``
``get_query_embeddings_as_matrix()``   ``(matrix [N*Q, D], image_ids, query_indices)``
``get_embedding_statistics(key)``      dict ``shape, mean, std, min, max,
                                       norm_mean, norm_std``
``visualize_embeddings_pca(...)``      ``(reduced, pca)``, PNG at ``save_path``
``visualize_embeddings_tsne(...)``     ``reduced``, PNG at ``save_path``
=====================================  ==============================================

Differences from the old code, all deliberate:

* floating tensors come back as float32 even when the store keeps float16
  (the old files were float32);
* statistics are computed in one streaming pass (float64 accumulators), so
  they work on stores larger than memory;
* for variables other than ``query_embeddings`` one vector per image is made
  by averaging every non-feature dimension: ``decoder_output`` over layers and
  queries (as before), ``encoder_output`` over tokens, ``backbone_features``
  over ``y, x`` (the old code averaged all but the LAST axis, which for
  ``[2048, h, w]`` gave ``w``-sized vectors and failed for images of
  different sizes);
* ``load_all_embeddings`` of a variable the store does not hold raises
  :class:`~embstore.errors.UnknownVariableError` (the old code returned two
  empty lists, and the next step crashed);
* nothing is printed (messages go to :mod:`logging`) and, without
  ``save_path``, no window is opened (figures are never shown).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import xarray as xr

from .._optional import attempt_import
from ..errors import UnknownVariableError, ValidationError
from .core import AnalyzerCore, feature_dim

__all__ = ["ChunkCache", "LegacyAPI"]

#: One decoded storage chunk per variable: ``name -> (token, start, stop, rows)``.
ChunkCache = dict[str, tuple[Any, int, int, np.ndarray]]

logger = logging.getLogger(__name__)


def _to_tensor(arr: np.ndarray) -> Any:
    torch = attempt_import("torch")
    arr = np.asarray(arr)
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _python_id(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class LegacyAPI:
    """The old analyzer's methods over an analyzer core (``an.legacy``).

    :class:`~embstore.EmbeddingAnalyzer` keeps one per analyzer and also
    offers each method flat (``an.load_embedding(...)``), as the old
    analyzer did.

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose rows are read.
    chunk_cache : dict, optional
        The decoded-chunk cache (the analyzer keeps one across calls).

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(demo_path)
    >>> an.legacy.metadata["num_images"], an.metadata["extract_type"]
    (120, 'all')
    """

    def __init__(self, core: AnalyzerCore, chunk_cache: ChunkCache | None = None) -> None:
        self._an = core
        self._chunk_cache: ChunkCache = {} if chunk_cache is None else chunk_cache

    # ------------------------------------------------------------- metadata
    @property
    def metadata(self) -> dict[str, Any]:
        """Old ``metadata.json``-style description of the (selected) rows.

        Returns
        -------
        dict
            ``image_ids`` (list), ``num_images``, ``extract_type`` (from the
            store attributes when recorded, else None) and ``embedding_keys``.
        """
        src = self._an._source
        legacy_meta = getattr(src, "metadata", None)
        if legacy_meta is not None and self._an._positions is None:
            return dict(legacy_meta)
        ids = [_python_id(i) for i in self._an.ids]
        if legacy_meta is not None:
            extract_type = legacy_meta.get("extract_type")
        else:
            attrs = getattr(src, "attrs", {}) or {}
            run = attrs.get("run", {}) if isinstance(attrs.get("run"), dict) else {}
            extract_type = attrs.get("extract_type", run.get("extract_type"))
        keys = list(self._an.variables) + list(self._an.ragged_variables)
        return {
            "image_ids": ids,
            "num_images": len(ids),
            "extract_type": extract_type,
            "embedding_keys": keys,
        }

    # --------------------------------------------------------------- loading
    def load_embedding(self, image_id: Any) -> dict[str, Any] | None:
        """All tensors of one row as a dict of torch tensors (old API).

        Parameters
        ----------
        image_id : int or str
            Row id.

        Returns
        -------
        dict or None
            ``{variable: torch.Tensor}`` in the old shapes (``[Q, D]``,
            ``[L, Q, D]``, ``[h*w, D]``, ``[C, h, w]``...), or ``None`` when the
            id is not in the (selected) rows, like the old analyzer.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> emb = an.load_embedding(an.metadata["image_ids"][0])
        >>> emb["query_embeddings"].shape
        torch.Size([8, 16])
        >>> an.load_embedding(10**6) is None
        True
        """
        pos = self._an._position_of(image_id)
        if pos is None:
            return None
        src = self._an._source
        if hasattr(src, "load"):
            return src.load(image_id)
        out: dict[str, Any] = {}
        for name in self._an.variables:
            out[name] = _to_tensor(self._chunk_row(name, pos))
        for name in self._an.ragged_variables:
            out[name] = _to_tensor(src.get_ragged(name, image_id))
        return out

    def _chunk_row(self, name: str, pos: int) -> np.ndarray:
        """Row ``pos`` of a dense variable, through a one-chunk cache per variable.

        A storage chunk holds many rows and is decoded as a whole, so a loop
        over ids in row order (the old scripts' pattern) decodes each chunk
        once instead of once per row. Memory: one chunk per variable.
        """
        import dask.array as da

        src = self._an._source
        store = getattr(src, "store", None)
        token = None if store is None else getattr(store, "version_token", None)
        cache = self._chunk_cache
        hit = cache.get(name)
        if hit is not None and hit[0] == token and hit[1] <= pos < hit[2]:
            return hit[3][pos - hit[1]]
        data = src.dataarray(name).data
        if not isinstance(data, da.Array):
            return np.asarray(data[pos])
        bounds = np.cumsum((0,) + data.chunks[0])
        c = int(np.searchsorted(bounds, pos, side="right") - 1)
        start, stop = int(bounds[c]), int(bounds[c + 1])
        block = np.asarray(data[start:stop].compute())
        cache[name] = (token, start, stop, block)
        return block[pos - start]

    def load_all_embeddings(
        self, embedding_key: str = "query_embeddings"
    ) -> tuple[list[Any], list[Any]]:
        """One tensor per row for one variable (old API).

        Parameters
        ----------
        embedding_key : str, default "query_embeddings"
            Variable to load.

        Returns
        -------
        embeddings : list of torch.Tensor
            One tensor per row, in the old per-image shape.
        image_ids : list
            The matching ids.

        Raises
        ------
        UnknownVariableError
            If no variable has that name.

        Notes
        -----
        Everything is loaded into memory, as before; prefer :meth:`iter_vectors`
        or :meth:`matrix` for large stores.
        """
        src = self._an._source
        ids = list(self._an.ids)
        if hasattr(src, "load"):
            # old directory: read file by file, skipping files without the key
            embs, kept = [], []
            for i in ids:
                tensors = src.load(int(i))
                if embedding_key in tensors:
                    embs.append(tensors[embedding_key])
                    kept.append(_python_id(i))
            return embs, kept
        if embedding_key in self._an.variables:
            arr = self._an._dense(embedding_key)
            embs = []
            import dask.array as da

            data = arr.data
            for start, stop in self._an._block_bounds(
                data.chunks[0] if isinstance(data, da.Array) else [data.shape[0]], 65536
            ):
                block = np.asarray(data[start:stop].compute())
                embs.extend(_to_tensor(row) for row in block)
            return embs, [_python_id(i) for i in ids]
        if embedding_key in self._an.ragged_variables:
            embs = [_to_tensor(src.get_ragged(embedding_key, i)) for i in ids]
            return embs, [_python_id(i) for i in ids]
        raise self._an._unknown(embedding_key)

    def get_query_embeddings_as_matrix(self) -> tuple[np.ndarray, list[Any], list[int]]:
        """Every query embedding of every row as one matrix (old API).

        Returns
        -------
        matrix : numpy.ndarray
            float32 ``[N * Q, D]``, row-major (all queries of the first row,
            then the next row...).
        image_ids : list
            Row id of each matrix row.
        query_indices : list of int
            Query index of each matrix row.

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> m, ids, q = an.get_query_embeddings_as_matrix()
        >>> m.shape, ids[:2], q[:2]
        ((960, 16), [0, 0], [0, 1])
        """
        matrix, labels = self._an.matrix("query_embeddings", pool=None)
        ids = [_python_id(i) for i in labels[self._an.id_name].to_numpy()]
        return matrix, ids, labels["query"].astype(int).tolist()

    # ------------------------------------------------------------ statistics
    def _compat_vectors(self, key: str) -> xr.DataArray:
        """Vectors the old analyzer used for ``key`` (see the module notes)."""
        if key == "query_embeddings" and key in self._an.variables:
            return self._an.vectors(key, pool=None)
        if key in self._an.variables:
            dims = self._an.variables[key]
            if len(dims) == 1:
                return self._an.vectors(key, pool=None)
            feat = feature_dim(dims)
            over = tuple(d for d in dims if d != feat)
            return self._an._as_vectors(self._an.pool(key, over=over, method="mean"))
        if key in self._an.ragged_variables:
            return self._an.vectors(key, pool="mean")
        raise self._an._unknown(key)

    def _compat_matrix(
        self, key: str, max_points: int | None = None, seed: int = 0
    ) -> tuple[np.ndarray, xr.DataArray]:
        vec = self._compat_vectors(key)
        n = vec.shape[0]
        if max_points is not None and n > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
            vec = vec.isel(vector=keep)
        out = np.empty(vec.shape, dtype=np.float32)
        for start, block in self._an._iter_dataarray(vec, 65536):
            out[start : start + len(block)] = block
        return out, vec

    def get_embedding_statistics(self, embedding_key: str = "query_embeddings") -> dict[str, Any]:
        """Per-dimension statistics of a variable's vectors (old API, streaming).

        Parameters
        ----------
        embedding_key : str, default "query_embeddings"
            Variable; ``query_embeddings`` uses every query, others one
            vector per row (see the module notes).

        Returns
        -------
        dict
            ``shape`` (tuple), ``mean``, ``std`` (population, like
            ``numpy.std``), ``min``, ``max`` (float32 arrays ``[D]``),
            ``norm_mean``, ``norm_std`` (floats: mean and std of the L2 norms).

        Examples
        --------
        >>> from embstore import EmbeddingAnalyzer
        >>> an = EmbeddingAnalyzer(demo_path)
        >>> an.get_embedding_statistics()["shape"]
        (960, 16)
        """
        vec = self._compat_vectors(embedding_key)
        n_tot = 0
        # running mean, sum of squared deviations, min and max (None before the first block)
        mean: Any = None
        m2: Any = None
        vmin: Any = None
        vmax: Any = None
        norm_sum = norm_sq = 0.0
        for _, block in self._an._iter_dataarray(vec, 65536):
            b = block.astype(np.float64)
            nb = len(b)
            if nb == 0:
                continue
            bmean = b.mean(axis=0)
            bm2 = ((b - bmean) ** 2).sum(axis=0)
            if mean is None:
                mean, m2 = bmean, bm2
                vmin, vmax = block.min(axis=0), block.max(axis=0)
            else:
                delta = bmean - mean
                tot = n_tot + nb
                mean = mean + delta * (nb / tot)
                m2 = m2 + bm2 + delta**2 * (n_tot * nb / tot)
                vmin = np.minimum(vmin, block.min(axis=0))
                vmax = np.maximum(vmax, block.max(axis=0))
            norms = np.linalg.norm(b, axis=1)
            norm_sum += float(norms.sum())
            norm_sq += float((norms**2).sum())
            n_tot += nb
        if n_tot == 0 or mean is None:
            raise ValidationError(f"no vectors for {embedding_key!r}: the selection is empty")
        norm_mean = norm_sum / n_tot
        return {
            "shape": (n_tot, int(vec.shape[1])),
            "mean": mean.astype(np.float32),
            "std": np.sqrt(m2 / n_tot).astype(np.float32),
            "min": vmin,
            "max": vmax,
            "norm_mean": float(norm_mean),
            "norm_std": float(np.sqrt(max(norm_sq / n_tot - norm_mean**2, 0.0))),
        }

    # ----------------------------------------------------------------- plots
    def _color_values(self, vec: xr.DataArray, color_by: str | None) -> np.ndarray | None:
        if color_by is None:
            return None
        if color_by not in vec.coords:
            raise UnknownVariableError(
                f"color_by={color_by!r} is not a coordinate; available: "
                f"{sorted(str(c) for c in vec.coords if vec[c].dims == ('vector',))}"
            )
        return np.asarray(vec[color_by].values)

    def visualize_embeddings_pca(
        self,
        embedding_key: str = "query_embeddings",
        n_components: int = 2,
        save_path: str | os.PathLike | None = None,
        *,
        color_by: str | None = None,
        max_points: int | None = None,
        dpi: int = 300,
    ) -> tuple[np.ndarray, Any]:
        """PCA of a variable's vectors, scatter-plotted to a PNG (old API).

        Parameters
        ----------
        embedding_key : str, default "query_embeddings"
            Variable (vectors as in :meth:`get_embedding_statistics`).
        n_components : {2, 3}
            Number of principal components plotted.
        save_path : str or os.PathLike, optional
            Where to write the PNG; without it nothing is written.
        color_by : str, optional
            Row coordinate colouring the points (e.g. ``"skin"``).
        max_points : int, optional
            Random subset size (seed 0) for large stores.
        dpi : int, default 300
            Resolution of the PNG.

        Returns
        -------
        reduced : numpy.ndarray
            ``[n, n_components]`` projections.
        pca : sklearn.decomposition.PCA
            The fitted PCA (``explained_variance_ratio_``...).
        """
        from .plots import pca_projection, scatter_projection

        matrix, vec = self._compat_matrix(embedding_key, max_points)
        logger.info("Applying PCA to %d embeddings of dimension %d", *matrix.shape)
        reduced, pca = pca_projection(matrix, n_components)
        ratio = pca.explained_variance_ratio_
        axis = [f"PC{i + 1} ({ratio[i]:.2%})" for i in range(n_components)]
        if save_path is not None:
            scatter_projection(
                reduced,
                save_path,
                title=f"PCA visualization of {embedding_key}",
                axis_labels=axis,
                groups=self._color_values(vec, color_by),
                group_name=color_by,
                dpi=dpi,
            )
        return reduced, pca

    def visualize_embeddings_tsne(
        self,
        embedding_key: str = "query_embeddings",
        n_components: int = 2,
        save_path: str | os.PathLike | None = None,
        *,
        color_by: str | None = None,
        max_points: int | None = None,
        perplexity: float = 30.0,
        random_state: int = 42,
        dpi: int = 300,
    ) -> np.ndarray:
        """t-SNE of a variable's vectors, scatter-plotted to a PNG (old API).

        Parameters
        ----------
        embedding_key : str, default "query_embeddings"
            Variable (vectors as in :meth:`get_embedding_statistics`).
        n_components : {2, 3}
            Output dimensions.
        save_path : str or os.PathLike, optional
            Where to write the PNG; without it nothing is written.
        color_by : str, optional
            Row coordinate colouring the points.
        max_points : int, optional
            Random subset size (seed 0); t-SNE is quadratic-ish in time.
        perplexity : float, default 30
            As before; lowered to ``n - 1`` for fewer points.
        random_state : int, default 42
            As before.
        dpi : int, default 300
            Resolution of the PNG.

        Returns
        -------
        numpy.ndarray
            ``[n, n_components]`` embedding.
        """
        from .plots import scatter_projection, tsne_projection

        matrix, vec = self._compat_matrix(embedding_key, max_points)
        logger.info("Applying t-SNE to %d embeddings of dimension %d", *matrix.shape)
        reduced = tsne_projection(
            matrix, n_components, perplexity=perplexity, random_state=random_state
        )
        if save_path is not None:
            scatter_projection(
                reduced,
                save_path,
                title=f"t-SNE visualization of {embedding_key}",
                axis_labels=[f"t-SNE {i + 1}" for i in range(n_components)],
                groups=self._color_values(vec, color_by),
                group_name=color_by,
                dpi=dpi,
            )
        return reduced
