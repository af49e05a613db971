"""Layer-wise analysis: group metrics per layer and CKA between layers.

A layered variable (DETR's ``decoder_output``, dims ``(layer, query,
hidden)``) makes one question cheap: at which layer does a label (skin tone,
lighting) become linearly decodable from the representation, and how far
apart are the groups at each layer? :func:`layer_profile` answers it with
the fairness statistics of :mod:`embstore.fairness.stats` computed on every
layer, in one tidy table:

``probe_accuracy``
    cross-validated linear-probe accuracy predicting the group
    (:func:`~embstore.fairness.stats.linear_probe`); one row per layer and
    grouping (``group == "all"``), with a bootstrap interval stratified by
    group and the majority-class ``baseline``.
``centroid_distance``
    per group, the mean cosine distance from its centroid to the other
    groups' centroids (``dist_to_others`` of
    :func:`~embstore.fairness.stats.group_statistics`, bias-corrected
    bootstrap interval).
``energy_p``
    per group, the permutation p-value of the energy distance between the
    group and all other rows (``value``), with the Holm-adjusted ``p_holm``
    and the ``energy`` statistic; p-values carry no interval.
any other interval figure of the group table
    (``dispersion``, ``centroid_norm``, ``homophily``, ``homophily_ratio``,
    ``probe_recall``) per group.

:func:`cka_matrix` gives the linear CKA (:mod:`embstore.analysis.similarity`)
between every pair of layers. :func:`plot_layer_profile` and
:func:`plot_cka_matrix` draw them.

Examples
--------
Four decoder layers of 60 images in two skin groups; only layer 2 tells the
groups apart:

>>> import numpy as np, xarray as xr
>>> from embstore import EmbeddingAnalyzer
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(60, 4, 4, 8)).astype("float32")
>>> skin = np.repeat([1, 2], 30)
>>> x[skin == 2, 2] += 1.0
>>> ds = xr.Dataset(
...     {"decoder_output": (("image", "layer", "query", "hidden"), x)},
...     coords={"image_id": ("image", np.arange(60)), "skin": ("image", skin)},
... )
>>> an = EmbeddingAnalyzer(ds, row_dim="image", id_name="image_id")
>>> t = an.layer_profile("decoder_output", by="skin", n_boot=0)
>>> probe = t[t["metric"] == "probe_accuracy"].set_index("layer")["value"]
>>> int(probe.idxmax()), bool(probe[2] > 0.9)
(2, True)
>>> an.cka_matrix("decoder_output").shape
(4, 4)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import UnknownVariableError, ValidationError
from .core import AnalyzerCore
from .similarity import cka_from_matrices
from .spec import VectorSpec

__all__ = [
    "METRICS",
    "LayersAccessor",
    "cka_matrix",
    "layer_profile",
    "plot_cka_matrix",
    "plot_layer_profile",
    "profile_columns",
]

logger = logging.getLogger(__name__)

#: Metrics of :func:`layer_profile` and the group-table column each reads
#: (``None``: computed here).
METRICS: dict[str, str | None] = {
    "probe_accuracy": None,
    "centroid_distance": "dist_to_others",
    "energy_p": "p_value",
    "centroid_norm": "centroid_norm",
    "dispersion": "dispersion",
    "homophily": "homophily",
    "homophily_ratio": "homophily_ratio",
    "probe_recall": "probe_recall",
}

#: Columns of the :func:`layer_profile` table, in order.
profile_columns = (
    "layer",
    "metric",
    "grouping",
    "group",
    "count",
    "value",
    "lo",
    "hi",
    "baseline",
    "energy",
    "p_holm",
)


def _vectors_of(
    spec: VectorSpec | None, variable: str, pool: str | None
) -> tuple[str, str | None, dict[str, Any]]:
    """Variable, pool and pooling keywords from ``spec=`` or the flat keywords."""
    if spec is None:
        return variable, pool, {}
    spec = VectorSpec.coerce(spec)
    return spec.variable or variable, spec.pool, spec.pool_kwargs()


def _as_list(by: Sequence[str] | str) -> list[str]:
    return [by] if isinstance(by, str) else list(by)


def _n_layers(an: Any, variable: str) -> int:
    dims = an.variables.get(variable)
    if dims is None:
        raise UnknownVariableError(
            f"variable {variable!r} is not in the store (dense variables: {sorted(an.variables)!r}); "
            "pass a layered variable such as variable='decoder_output'."
        )
    if "layer" not in dims:
        raise ValidationError(
            f"{variable!r} has dims {list(dims)!r} without 'layer'; layer-wise analysis needs a "
            "layered variable such as 'decoder_output' (extract with --extract-type decoder)."
        )
    # the analyzer core contract has no public size accessor for one dimension
    return int(an._dense(variable).sizes["layer"])


def _layers(an: Any, variable: str, layers: Sequence[int] | None) -> list[int]:
    n = _n_layers(an, variable)
    if layers is None:
        return list(range(n))
    out = []
    for layer in layers:
        if (
            isinstance(layer, bool)
            or not isinstance(layer, (int, np.integer))
            or not -n <= layer < n
        ):
            raise ValidationError(
                f"layer {layer!r} is out of range for {variable!r} with {n} layers; pass integers in "
                f"[{-n}, {n - 1}]."
            )
        out.append(int(layer) % n)
    return out


def _check_metrics(metrics: Sequence[str] | str) -> list[str]:
    metrics = _as_list(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValidationError(f"unknown layer metric(s) {bad!r}; choose from {list(METRICS)!r}.")
    return metrics


def _probe_rows(
    X: np.ndarray,
    labels: pd.DataFrame,
    cols: Sequence[str],
    *,
    n_boot: int,
    alpha: float,
    min_count: int,
    seed: int,
    probe: str,
    missing_values: Mapping[str, Sequence[Any]] | None,
    max_rows: int = 5000,
) -> dict[str, Any]:
    """Probe accuracy for one grouping with a bootstrap stratified by group."""
    from ..fairness.bootstrap import percentile_ci, resample_counts
    from ..fairness.stats import labeled_mask, linear_probe

    keep = labeled_mask(labels, list(cols), missing_values)
    codes = np.full(len(X), -1, dtype=np.int64)
    if keep.any():
        grouped = labels.loc[keep, list(cols)].groupby(
            list(cols), sort=True, observed=True, dropna=True
        )
        codes[keep] = grouped.ngroup().to_numpy()
    counts = np.bincount(codes[codes >= 0], minlength=max(1, codes.max() + 1))
    valid = counts >= min_count
    codes = np.where((codes >= 0) & valid[np.maximum(codes, 0)], codes, -1)
    rng = np.random.default_rng(seed)
    correct, summary = linear_probe(X, codes, rng, max_rows=max_rows, seed=seed, model=probe)
    row = {
        "value": summary["accuracy"],
        "lo": np.nan,
        "hi": np.nan,
        "baseline": summary["majority_baseline"],
        "count": summary["n_rows"],
    }
    used = np.isfinite(correct)
    if n_boot > 0 and used.any():
        total = int(used.sum())
        reps = np.zeros(n_boot)
        for g in np.unique(codes[used]):
            v = correct[used & (codes == g)]
            W = resample_counts(len(v), n_boot, rng).astype(np.float64)
            reps += W @ v
        lo, hi = percentile_ci((reps / total)[:, None], alpha)
        row["lo"], row["hi"] = float(lo[0]), float(hi[0])
    return row


def layer_profile(
    an: Any,
    variable: str = "decoder_output",
    by: Sequence[str] | str = "skin",
    metrics: Sequence[str] | str = ("probe_accuracy", "centroid_distance", "energy_p"),
    *,
    pool: str | None = "mean",
    layers: Sequence[int] | None = None,
    n_boot: int = 1000,
    n_perm: int = 199,
    seed: int = 0,
    alpha: float = 0.05,
    min_count: int = 20,
    probe: str = "ridge",
    intersections: bool = False,
    missing_values: Mapping[str, Sequence[Any]] | None = None,
    spec: VectorSpec | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Group metrics of a layered variable at every layer (tidy table).

    Parameters
    ----------
    an : EmbeddingAnalyzer
        The analyzer (selection applied).
    variable : str, optional
        Layered variable, dims ``(layer, ..., feature)``.
    by : str or sequence of str, optional
        Grouping coordinate(s).
    metrics : str or sequence of str, optional
        Names from :data:`METRICS` (see the module docstring).
    pool : str or None, optional
        Pooling over queries per row (``None``: every query is a vector).
    layers : sequence of int, optional
        Layers to analyse (default: all).
    n_boot : int, optional
        Bootstrap replicates of the intervals (0: no intervals).
    n_perm : int, optional
        Permutations of each energy test (only used for ``energy_p``).
    seed, alpha, min_count, probe, intersections, missing_values
        As in :func:`~embstore.fairness.stats.group_statistics`.
    spec : VectorSpec, optional
        Which vectors (variable, pool, ``k``, ``over``) instead of
        ``variable``/``pool``; its ``layer`` is ignored (every layer is used).
    **options
        Other keywords of :func:`~embstore.fairness.stats.group_statistics`
        (``k``, ``max_perm_rows``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per (layer, metric, group or grouping); columns
        :data:`profile_columns` plus the ``by`` coordinates of each group.

    Raises
    ------
    UnknownVariableError
        If ``variable`` or a ``by`` coordinate is missing.
    ValidationError
        For an unlayered variable, unknown metric or bad layer.
    """
    from ..fairness.bootstrap import check_alpha
    from ..fairness.stats import group_statistics, grouping_name, groupings_of

    by = _as_list(by)
    metrics = _check_metrics(metrics)
    alpha = check_alpha(alpha)
    if int(n_boot) < 0:
        raise ValidationError(f"n_boot={n_boot!r} must be >= 0 (0 skips the intervals).")
    table_metrics = [m for m in metrics if METRICS[m] is not None]
    rows: list[dict[str, Any]] = []
    variable, pool, pool_kw = _vectors_of(spec, variable, pool)
    for layer in _layers(an, variable, layers):
        X, labels = an.matrix(variable, pool=pool, layer=layer, **pool_kw)
        missing = [b for b in by if b not in labels.columns]
        if missing:
            raise UnknownVariableError(
                f"grouping coordinate(s) {missing!r} not found; available: {list(labels.columns)!r}."
            )
        if "probe_accuracy" in metrics:
            for cols in groupings_of(by, intersections):
                r = _probe_rows(
                    X,
                    labels,
                    cols,
                    n_boot=int(n_boot),
                    alpha=alpha,
                    min_count=min_count,
                    seed=seed,
                    probe=probe,
                    missing_values=missing_values,
                    max_rows=int(options.get("max_probe_rows", 5000)),
                )
                rows.append(
                    {
                        "layer": layer,
                        "metric": "probe_accuracy",
                        "grouping": grouping_name(cols),
                        "group": "all",
                        **r,
                    }
                )
        if not table_metrics:
            continue
        stats = group_statistics(
            X,
            labels,
            by,
            n_boot=int(n_boot),
            seed=seed,
            alpha=alpha,
            min_count=min_count,
            n_perm=max(1, int(n_perm)),
            probe=probe,
            intersections=intersections,
            missing_values=missing_values,
            **options,
        )
        t = stats.table
        from ..fairness.disparity import group_label

        for _, g in t.iterrows():
            cols = tuple(str(g["grouping"]).split("*"))
            for m in table_metrics:
                col = METRICS[m]
                has_ci = f"{col}_lo" in t.columns
                rows.append(
                    {
                        "layer": layer,
                        "metric": m,
                        "grouping": g["grouping"],
                        "group": group_label(g, cols),
                        "count": int(g["count"]),
                        "value": float(g[col]),
                        "lo": float(g[f"{col}_lo"]) if has_ci else np.nan,
                        "hi": float(g[f"{col}_hi"]) if has_ci else np.nan,
                        "baseline": np.nan,
                        "energy": float(g["energy"]) if m == "energy_p" else np.nan,
                        "p_holm": float(g["p_holm"]) if m == "energy_p" else np.nan,
                        **{b: g[b] for b in by},
                    }
                )
    out = pd.DataFrame.from_records(rows)
    for c in list(profile_columns) + by:
        if c not in out.columns:
            out[c] = np.nan
    out = out[list(profile_columns) + by]
    out["layer"] = out["layer"].astype(np.int64)
    out["count"] = out["count"].astype(np.int64)
    return out


def cka_matrix(
    an: Any,
    variable: str = "decoder_output",
    *,
    pool: str | None = "mean",
    layers: Sequence[int] | None = None,
    spec: VectorSpec | None = None,
) -> xr.DataArray:
    """Linear CKA between every pair of layers of a layered variable.

    Parameters
    ----------
    an : EmbeddingAnalyzer
        The analyzer.
    variable : str, optional
        Layered variable.
    pool : str or None, optional
        Pooling over queries (``None``: every (row, query) vector).
    layers : sequence of int, optional
        Layers to compare (default: all).
    spec : VectorSpec, optional
        Which vectors instead of ``variable``/``pool`` (its ``layer`` is ignored).

    Returns
    -------
    xarray.DataArray
        Symmetric, dims ``("layer", "layer_other")``, ones on the diagonal.
    """
    variable, pool, pool_kw = _vectors_of(spec, variable, pool)
    idx = _layers(an, variable, layers)
    mats = [an.matrix(variable, pool=pool, layer=layer, **pool_kw)[0] for layer in idx]
    n = len(idx)
    M = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            M[i, j] = M[j, i] = cka_from_matrices(mats[i], mats[j])
    return xr.DataArray(
        M,
        dims=("layer", "layer_other"),
        coords={"layer": idx, "layer_other": idx},
        name="cka",
        attrs={"variable": variable, "pool": str(pool), "kind": "linear CKA"},
    )


def plot_layer_profile(
    table: pd.DataFrame,
    path: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> str:
    """Metric vs layer, one line per group with its interval band.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`layer_profile`.
    path : str or os.PathLike
        PNG file to write.
    metrics : sequence of str, optional
        Metrics to draw (default: all in the table), one panel each.
    title : str, optional
        Figure title.

    Returns
    -------
    str
        The path written.
    """
    from ..fairness.plots import _figure, _save

    metrics = list(dict.fromkeys(table["metric"])) if metrics is None else list(metrics)
    if not metrics:
        raise ValidationError("the layer profile table is empty; nothing to plot.")
    fig = _figure(4.2 * len(metrics), 3.4)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        sub = table[table["metric"] == m]
        for (grouping, group), g in sub.groupby(["grouping", "group"], sort=False):
            g = g.sort_values("layer")
            label = str(group) if group != "all" else str(grouping)
            line = ax.plot(g["layer"], g["value"], marker="o", label=label)[0]
            if g["lo"].notna().any():
                ax.fill_between(g["layer"], g["lo"], g["hi"], color=line.get_color(), alpha=0.2)
            if m == "probe_accuracy" and g["baseline"].notna().any():
                ax.plot(
                    g["layer"],
                    g["baseline"],
                    ls="--",
                    color=line.get_color(),
                    lw=1,
                    label=f"{label} majority",
                )
        if m == "energy_p":
            ax.set_yscale("log")
            ax.axhline(0.05, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("layer")
        ax.set_ylabel(m)
        ax.set_title(m)
        if len(sub):
            ax.set_xticks(sorted(sub["layer"].unique()))
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_cka_matrix(matrix: xr.DataArray, path: str | os.PathLike, title: str | None = None) -> str:
    """Heatmap of a CKA matrix (e.g. from :func:`cka_matrix`).

    Parameters
    ----------
    matrix : xarray.DataArray
        Square 2-D matrix with labeled dims.
    path : str or os.PathLike
        PNG file to write.
    title : str, optional
        Axes title.

    Returns
    -------
    str
        The path written.
    """
    from ..fairness.plots import _figure, _save

    if matrix.ndim != 2:
        raise ValidationError(f"a CKA matrix is 2-D, got dims {list(matrix.dims)!r}.")
    d0, d1 = matrix.dims
    fig = _figure(3.0 + 0.8 * matrix.shape[1], 2.2 + 0.6 * matrix.shape[0])
    ax = fig.subplots()
    im = ax.imshow(matrix.values, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(
        range(matrix.shape[1]), [str(v) for v in matrix[d1].values], rotation=45, ha="right"
    )
    ax.set_yticks(range(matrix.shape[0]), [str(v) for v in matrix[d0].values])
    ax.set_xlabel(str(d1))
    ax.set_ylabel(str(d0))
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = float(matrix.values[i, j])
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if v > 0.6 else "white",
            )
    fig.colorbar(im, ax=ax, label="linear CKA")
    ax.set_title(title or f"linear CKA ({matrix.attrs.get('variable', '')})", fontsize=9)
    return _save(fig, path)


class LayersAccessor:
    """Layer-wise analysis of an analyzer (``an.layers``).

    Uses only the analyzer core (``variables``, ``matrix``);
    :class:`embstore.EmbeddingAnalyzer` also offers each method flat
    (``an.layer_profile(...)``).

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose layers are compared.
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core

    def layer_profile(
        self,
        variable: str = "decoder_output",
        by: Sequence[str] | str = "skin",
        metrics: Sequence[str] | str = ("probe_accuracy", "centroid_distance", "energy_p"),
        **options: Any,
    ) -> pd.DataFrame:
        """Group metrics at every layer; see :func:`embstore.analysis.layers.layer_profile`.

        Parameters
        ----------
        variable, by, metrics, **options
            As in :func:`~embstore.analysis.layers.layer_profile`
            (``n_boot``, ``pool``, ``layers``, ``seed``, ...).

        Returns
        -------
        pandas.DataFrame

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from embstore import EmbeddingAnalyzer
        >>> x = np.random.default_rng(0).normal(size=(40, 2, 3, 4))
        >>> ds = xr.Dataset(
        ...     {"decoder_output": (("image", "layer", "query", "hidden"), x)},
        ...     coords={"image_id": ("image", np.arange(40)), "skin": ("image", np.repeat([1, 2], 20))},
        ... )
        >>> an = EmbeddingAnalyzer(ds, row_dim="image", id_name="image_id")
        >>> sorted(set(an.layer_profile(by="skin", n_boot=0)["layer"]))
        [0, 1]
        """
        return layer_profile(self._an, variable, by, metrics, **options)

    def cka_matrix(
        self,
        variable: str = "decoder_output",
        *,
        pool: str | None = "mean",
        layers: Sequence[int] | None = None,
    ) -> xr.DataArray:
        """Linear CKA between layers; see :func:`embstore.analysis.layers.cka_matrix`.

        Parameters
        ----------
        variable, pool, layers
            As in :func:`~embstore.analysis.layers.cka_matrix`.

        Returns
        -------
        xarray.DataArray
        """
        return cka_matrix(self._an, variable, pool=pool, layers=layers)


def __getattr__(name: str) -> Any:
    """``LayersMixin`` (before 0.2) is ``LayersAccessor`` now: a FutureWarning, then the accessor."""
    if name == "LayersMixin":
        import warnings

        warnings.warn(
            "embstore.analysis.layers.LayersMixin is deprecated and will be removed in embstore 0.3; use embstore.analysis.layers.LayersAccessor",
            FutureWarning,
            stacklevel=2,
        )
        return LayersAccessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
