"""Group statistics of embedding geometry (pure functions on NumPy/pandas).

:func:`group_statistics` takes a matrix ``X`` (one embedding per row) and a
table of row labels, and describes how the groups defined by one or more label
columns (``by``) sit in embedding space. With ``by=["skin", "lighting"]`` it
reports every *grouping*: ``skin`` alone, ``lighting`` alone and the
intersection ``skin*lighting`` (every non-empty subset of ``by``).

Figures per group (all cosine-based, so the scale of the embeddings does not
matter except for ``centroid_norm``):

``count``
    rows in the group.
``centroid_norm``
    norm of the group's mean embedding, estimated without the upward bias
    that noise gives ``||mean||`` in small groups: the square root of the mean
    dot product over pairs of distinct rows,
    ``sqrt(max(0, (||sum x_i||^2 - sum ||x_i||^2) / (n (n - 1))))``, so
    groups of different sizes compare fairly (pure noise gives about 0).
``dispersion``
    mean pairwise cosine distance between distinct rows of the group,
    ``1 - (||sum u_i||^2 - n) / (n (n - 1))`` for unit rows ``u_i``.
``dist_to_others``
    mean cosine distance from the group's centroid to the centroids of the
    other (large enough) groups of the same grouping.
``homophily``
    mean share of a row's ``k`` nearest neighbours (cosine, among all rows,
    the row itself left out) that belong to its own group;
    ``homophily_expected`` is the share expected if neighbours were drawn at
    random, ``(n_g - 1) / (N - 1)``, and ``homophily_ratio`` their quotient
    (1 = no clustering by group).
``probe_recall``
    share of the group's rows that a cross-validated linear probe (standardised
    features + ridge classifier, or logistic regression, scikit-learn) assigns
    to the right group. The probe's overall accuracy, balanced accuracy and the
    majority-class baseline are in :attr:`GroupStats.probe`.
``energy``, ``p_value``, ``p_holm``
    energy distance between the group's (unit) rows and all other rows, its
    permutation p-value (:mod:`embstore.fairness.permutation`) and the
    Holm-adjusted p-value within the grouping.

Every figure but ``count``, ``homophily_expected``, ``energy`` and the
p-values has a percentile bootstrap interval (``<figure>_lo``,
``<figure>_hi``) from a stratified bootstrap: each replicate resamples the
rows of every group with replacement. Replicates are first shifted by the
bootstrap bias estimate (``mean(replicates) - estimate``), so that figures
that resampling itself distorts (duplicated rows shrink a dispersion, add
noise to a centroid) still get an interval around the estimate; inside a
replicate, pairs of draws of the same source row are left out of the
pairwise figures. For ``homophily`` and ``probe_recall``
the neighbour sets and probe predictions are held fixed (intervals are
conditional on them). Groups smaller than ``min_count`` keep their row with
``count`` and NaN figures and are left out of other groups' comparisons.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(120, 8)); X[:40] += 2.0
>>> labels = pd.DataFrame({"skin": np.repeat([1, 2, 3], 40)})
>>> res = group_statistics(X, labels, ["skin"], n_boot=50, n_perm=49, min_count=5)
>>> res.table[["skin", "count"]].to_dict("list")
{'skin': [1, 2, 3], 'count': [40, 40, 40]}
>>> bool(res.table["p_value"].iloc[0] < 0.05)
True
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._optional import attempt_import
from ..analysis.spec import Blocks
from ..errors import ShapeMismatchError, UnknownVariableError, ValidationError
from .bootstrap import check_alpha, iter_resample_counts, percentile_ci
from .disparity import disparity_summary, group_label
from .permutation import energy_permutation_test

__all__ = [
    "CI_FIGURES",
    "FIGURES",
    "MISSING_VALUES",
    "GroupStats",
    "add_group_sums",
    "block_group_sums",
    "centroid_distances",
    "group_distance_matrix",
    "group_moments",
    "group_statistics",
    "group_table_skeleton",
    "grouping_name",
    "groupings_of",
    "holm",
    "knn_own_share",
    "labeled_mask",
    "linear_probe",
    "moments_from_sums",
]

logger = logging.getLogger(__name__)

#: Figure columns of the group table, in order (``count`` and ``p_value`` included).
FIGURES = (
    "count",
    "centroid_norm",
    "dispersion",
    "dist_to_others",
    "homophily",
    "homophily_expected",
    "homophily_ratio",
    "probe_recall",
    "energy",
    "p_value",
    "p_holm",
)
#: Figures that carry bootstrap intervals ``<name>_lo`` / ``<name>_hi``.
CI_FIGURES = (
    "centroid_norm",
    "dispersion",
    "dist_to_others",
    "homophily",
    "homophily_ratio",
    "probe_recall",
)


#: Value ranges used to clip the bias-corrected intervals.
_RANGES = {
    "centroid_norm": (0.0, np.inf),
    "dispersion": (0.0, 2.0),
    "dist_to_others": (0.0, 2.0),
    "homophily": (0.0, 1.0),
    "homophily_ratio": (0.0, np.inf),
    "probe_recall": (0.0, 1.0),
}


@dataclass
class GroupStats:
    """Result of :func:`group_statistics`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per group and grouping: the ``by`` columns (NA where a
        coordinate is not part of the row's grouping), ``grouping``, then the
        figures (see the module docstring) with their ``_lo``/``_hi`` bounds.
    distances : dict of str to xarray.DataArray
        Per grouping, the cosine distance between group centroids, dims
        ``("group", "other")`` labeled with readable group names.
    disparity : pandas.DataFrame
        Max-min difference and min/max ratio of each figure across the groups
        of each grouping (see :func:`~embstore.fairness.disparity.disparity_summary`).
    probe : pandas.DataFrame
        Per grouping, the linear probe's ``accuracy``, ``balanced_accuracy``,
        ``majority_baseline``, ``chance``, ``n_rows``, ``n_classes``, ``n_folds``.
    n_excluded : int
        Rows left out for a missing or unknown label.
    """

    table: pd.DataFrame
    distances: dict[str, xr.DataArray] = field(default_factory=dict)
    disparity: pd.DataFrame | None = None
    probe: pd.DataFrame | None = None
    n_excluded: int = 0


def grouping_name(cols: Sequence[str]) -> str:
    """Name of a grouping, e.g. ``"skin*lighting"``.

    Parameters
    ----------
    cols : sequence of str
        Coordinates of the grouping.

    Returns
    -------
    str

    Examples
    --------
    >>> grouping_name(("skin", "lighting"))
    'skin*lighting'
    """
    return "*".join(cols)


def groupings_of(by: Sequence[str], intersections: bool = True) -> list[tuple[str, ...]]:
    """Every grouping reported for ``by``: each coordinate, then intersections.

    Parameters
    ----------
    by : sequence of str
        Grouping coordinates.
    intersections : bool, optional
        Include every combination of two or more coordinates.

    Returns
    -------
    list of tuple of str

    Examples
    --------
    >>> groupings_of(["skin", "lighting"])
    [('skin',), ('lighting',), ('skin', 'lighting')]
    """
    top = len(by) if intersections else 1
    return [c for r in range(1, top + 1) for c in itertools.combinations(by, r)]


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries stay NaN).

    Parameters
    ----------
    p : numpy.ndarray
        Raw p-values.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> holm(np.array([0.01, 0.04, np.nan, 0.03])).round(2).tolist()
    [0.03, 0.06, nan, 0.06]
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if not ok.size:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def centroid_distances(X: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Cosine distances between group centroids.

    Parameters
    ----------
    X : numpy.ndarray
        ``(N, D)`` rows.
    codes : numpy.ndarray
        ``(N,)`` group index of each row in ``[0, n_groups)``.
    n_groups : int
        Number of groups.

    Returns
    -------
    numpy.ndarray
        ``(n_groups, n_groups)``; NaN for groups without rows.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> centroid_distances(X, np.array([0, 0, 1]), 2).round(3).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
    sums = np.zeros((n_groups, X.shape[1]))
    np.add.at(sums, codes, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        C = sums / counts[:, None]
    Cu = _unit(np.nan_to_num(C))
    D = 1.0 - Cu @ Cu.T
    D[counts == 0, :] = np.nan
    D[:, counts == 0] = np.nan
    np.fill_diagonal(D, np.where(counts > 0, 0.0, np.nan))
    return np.clip(D, 0.0, 2.0)


def knn_own_share(
    U: np.ndarray,
    k: int,
    rng: np.random.Generator,
    max_rows: int = 20000,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbours (cosine) of a random subset of rows.

    Parameters
    ----------
    U : numpy.ndarray
        ``(N, D)`` unit rows.
    k : int
        Neighbours per row (capped at ``n - 1``).
    rng : numpy.random.Generator
        Used to pick ``max_rows`` rows when ``N`` is larger.
    max_rows : int, optional
        Largest number of rows searched (exact brute-force search).

    Returns
    -------
    rows : numpy.ndarray
        ``(n,)`` indices of the rows searched (the pool).
    neighbours : numpy.ndarray
        ``(n, k)`` indices into ``U`` of each pooled row's neighbours within
        the pool, the row itself excluded.
    """
    N = len(U)
    rows = np.sort(rng.choice(N, max_rows, replace=False)) if max_rows < N else np.arange(N)
    n = len(rows)
    k = int(min(k, n - 1))
    if k < 1:
        return rows, np.zeros((n, 0), dtype=np.int64)
    P = U[rows]
    nbrs = np.empty((n, k), dtype=np.int64)
    block = max(1, int(2**24 // max(n, 1)))
    for s in range(0, n, block):
        sim = P[s : s + block] @ P.T
        sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        nbrs[s : s + block] = part
    return rows, rows[nbrs]


def linear_probe(
    X: np.ndarray,
    codes: np.ndarray,
    rng: np.random.Generator,
    n_folds: int = 5,
    max_rows: int = 5000,
    seed: int = 0,
    model: str = "ridge",
) -> tuple[np.ndarray, dict]:
    """Cross-validated linear probe predicting the group of each row.

    Parameters
    ----------
    X : numpy.ndarray
        ``(N, D)`` rows.
    codes : numpy.ndarray
        ``(N,)`` group index, ``-1`` for rows to leave out.
    rng : numpy.random.Generator
        Used to subsample ``max_rows`` rows.
    n_folds : int, optional
        Stratified folds (reduced to the smallest class size when needed).
    max_rows : int, optional
        Largest number of rows used to fit.
    seed : int, optional
        Seed of the fold split.
    model : {"ridge", "logistic"}, optional
        ``"ridge"`` (default): a ridge classifier (one closed-form
        least-squares fit per fold, fast for many groups); ``"logistic"``:
        multinomial logistic regression (slower, calibrated).

    Returns
    -------
    correct : numpy.ndarray
        ``(N,)`` 1.0 / 0.0 whether the out-of-fold prediction was right, NaN
        for rows not used.
    summary : dict
        ``accuracy``, ``balanced_accuracy``, ``majority_baseline``, ``chance``,
        ``n_rows``, ``n_classes``, ``n_folds`` (NaN figures when no probe could
        be fitted: fewer than two classes or classes with a single row).
    """
    attempt_import("sklearn")
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    correct = np.full(len(X), np.nan)
    rows = np.flatnonzero(codes >= 0)
    if len(rows) > max_rows:
        rows = np.sort(rng.choice(rows, max_rows, replace=False))
    y = codes[rows]
    classes, counts = np.unique(y, return_counts=True)
    folds = int(min(n_folds, counts.min())) if len(classes) else 0
    summary = {
        "accuracy": np.nan,
        "balanced_accuracy": np.nan,
        "majority_baseline": float(counts.max() / counts.sum()) if len(classes) else np.nan,
        "chance": 1.0 / len(classes) if len(classes) else np.nan,
        "n_rows": len(rows),
        "n_classes": len(classes),
        "n_folds": folds,
    }
    if len(classes) < 2 or folds < 2:
        return correct, summary
    if model == "ridge":
        clf = RidgeClassifier(alpha=1.0)
    elif model == "logistic":
        clf = LogisticRegression(max_iter=300)
    else:
        raise ValidationError(f"probe model={model!r} is unknown; use 'ridge' or 'logistic'.")
    pipe = make_pipeline(StandardScaler(), clf)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(pipe, X[rows], y, cv=cv)
    correct[rows] = (pred == y).astype(np.float64)
    summary["accuracy"] = float(np.mean(pred == y))
    summary["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    return correct, summary


#: Label values treated as "unknown" by default: for every coordinate (``"*"``)
#: FACET's ``"na"``, empty strings and the store's integer fill value -1; for
#: ``skin`` also 0 (FACET's "no skin-tone vote", Monk tones are 1..10).
MISSING_VALUES: dict[str, tuple[Any, ...]] = {"*": ("na", "NA", "n/a", "", -1), "skin": (0,)}


def labeled_mask(
    labels: pd.DataFrame,
    by: Sequence[str],
    missing_values: Mapping[str, Sequence[Any]] | None = None,
) -> np.ndarray:
    """Rows whose ``by`` labels are all known.

    Parameters
    ----------
    labels : pandas.DataFrame
        Row labels.
    by : sequence of str
        Grouping coordinates.
    missing_values : mapping, optional
        Per coordinate, values that mean "unknown"; the key ``"*"`` applies
        to every coordinate. NaN/None always count as unknown. Default:
        :data:`MISSING_VALUES`; pass ``{}`` to keep every non-NaN label.

    Returns
    -------
    numpy.ndarray
        Boolean mask, True for rows to keep.

    Examples
    --------
    >>> labels = pd.DataFrame({"skin": [0, 3, 5], "lighting": ["well_lit", "na", "dimly_lit"]})
    >>> labeled_mask(labels, ["skin", "lighting"]).tolist()
    [False, False, True]
    >>> labeled_mask(labels, ["skin"], missing_values={}).tolist()
    [True, True, True]
    """
    mv = MISSING_VALUES if missing_values is None else missing_values
    keep = np.array(labels[list(by)].notna().all(axis=1), dtype=bool)
    for b in by:
        bad = list(mv.get("*", ())) + list(mv.get(b, ()))
        if bad:
            values = labels[b].to_numpy(dtype=object)
            hit = np.array([_is_one_of(v, bad) for v in values], dtype=bool)
            keep &= ~hit
    return keep


def _is_one_of(value: Any, candidates: Sequence[Any]) -> bool:
    for c in candidates:
        if isinstance(value, str) != isinstance(c, str):
            continue
        try:
            if value == c:
                return True
        except (TypeError, ValueError):
            continue
    return False


def _distance_array(D, keys, names, counts, cols, gname) -> xr.DataArray:
    return xr.DataArray(
        D,
        dims=("group", "other"),
        coords={
            "group": names,
            "other": names,
            "count": ("group", counts),
            **{c: ("group", keys[c].to_numpy()) for c in cols},
        },
        name="centroid_cosine_distance",
        attrs={"grouping": gname, "description": "cosine distance between group centroids"},
    )


def group_distance_matrix(
    X: np.ndarray,
    labels: pd.DataFrame,
    by: Sequence[str] | str,
    missing_values: Mapping[str, Sequence[Any]] | None = None,
) -> xr.DataArray:
    """Cosine distances between the centroids of the groups of ``by``.

    With several coordinates the groups are their intersections. Rows with a
    missing label are left out.

    Parameters
    ----------
    X : numpy.ndarray
        ``(N, D)`` embeddings.
    labels : pandas.DataFrame
        Row labels with the ``by`` columns.
    by : str or sequence of str
        Grouping coordinates.
    missing_values : mapping, optional
        Labels meaning "unknown" (see :func:`labeled_mask`).

    Returns
    -------
    xarray.DataArray
        dims ``("group", "other")``, readable group names, plus ``count`` and
        the ``by`` coordinates along ``group``.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> D = group_distance_matrix(X, pd.DataFrame({"g": ["a", "a", "b"]}), "g")
    >>> D.dims, D["group"].values.tolist()
    (('group', 'other'), ['g=a', 'g=b'])
    """
    X, by = _validate(X, labels, by, 0, 2)
    labels = labels.reset_index(drop=True)
    keep = labeled_mask(labels, by, missing_values)
    X, labels = X[keep], labels[keep].reset_index(drop=True)
    codes, keys = _factorize(labels[by])
    counts = np.bincount(codes, minlength=len(keys))
    names = [group_label(r, by) for _, r in keys.iterrows()]
    D = centroid_distances(X, codes, len(keys))
    return _distance_array(D, keys, names, counts, by, grouping_name(by))


def _validate(
    X: Any, labels: pd.DataFrame, by: Sequence[str] | str, n_boot: int, min_count: int
) -> tuple[np.ndarray, list[str]]:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ShapeMismatchError(
            f"X must be 2-D (rows, features), got shape {X.shape}; pool or flatten the "
            "embeddings first (e.g. analyzer.matrix(variable, pool='mean'))."
        )
    if len(labels) != len(X):
        raise ShapeMismatchError(
            f"labels has {len(labels)} rows but X has {len(X)}; pass one label row per "
            "embedding row."
        )
    if isinstance(by, str):
        by = [by]
    by = list(by)
    if not by:
        raise ValidationError("by is empty; name at least one coordinate, e.g. by=['skin'].")
    unknown = [b for b in by if b not in labels.columns]
    if unknown:
        raise UnknownVariableError(
            f"grouping coordinate(s) {unknown!r} not found; available: {list(labels.columns)!r}."
        )
    if int(n_boot) < 0:
        raise ValidationError(f"n_boot={n_boot!r} must be >= 0 (0 skips the intervals).")
    if int(min_count) < 2:
        raise ValidationError(f"min_count={min_count!r} must be at least 2.")
    if not np.all(np.isfinite(X)):
        raise ValidationError(
            "X contains NaN or Inf; drop those rows (or fix the store) before computing statistics."
        )
    return X.astype(np.float64), by


def _factorize(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    grouped = frame.groupby(list(frame.columns), sort=True, observed=True, dropna=True)
    codes = grouped.ngroup().to_numpy()
    keys = grouped.size().reset_index()[list(frame.columns)]
    return codes.astype(np.int64), keys


def group_table_skeleton(keys: pd.DataFrame, by: Sequence[str], grouping: str) -> pd.DataFrame:
    """Group-key columns of a tidy table: every ``by`` column plus ``grouping``.

    Parameters
    ----------
    keys : pandas.DataFrame
        One row per group, columns = the coordinates of this grouping.
    by : sequence of str
        All grouping coordinates (absent ones are filled with NA).
    grouping : str
        Name of the grouping.

    Returns
    -------
    pandas.DataFrame
    """
    out = pd.DataFrame(index=range(len(keys)))
    for b in by:
        out[b] = keys[b].to_numpy() if b in keys.columns else pd.NA
    out["grouping"] = grouping
    return out


def _tidy_by_columns(table: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    for b in by:
        col = table[b]
        vals = col.dropna()
        if (
            len(vals)
            and all(
                isinstance(v, (int, np.integer))
                or (isinstance(v, (float, np.floating)) and float(v).is_integer())
                for v in vals
            )
            and not all(isinstance(v, (bool, np.bool_)) for v in vals)
        ):
            table[b] = pd.array([None if pd.isna(v) else int(v) for v in col], dtype="Int64")
        else:
            table[b] = col.astype(object).where(col.notna(), None)
    return table


def group_statistics(
    X: np.ndarray,
    labels: pd.DataFrame,
    by: Sequence[str] | str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_count: int = 20,
    k: int = 10,
    probe: str = "ridge",
    n_perm: int = 199,
    max_perm_rows: int = 300,
    max_knn_rows: int = 20000,
    max_probe_rows: int = 5000,
    probe_folds: int = 5,
    intersections: bool = True,
    missing_values: Mapping[str, Sequence[Any]] | None = None,
) -> GroupStats:
    """Embedding-geometry statistics per group and intersection.

    Parameters
    ----------
    X : numpy.ndarray
        ``(N, D)`` embeddings, one per row of ``labels``.
    labels : pandas.DataFrame
        Row labels; must contain the ``by`` columns. Rows with a missing or
        unknown label in any ``by`` column are left out (logged, counted).
    by : str or sequence of str
        Grouping coordinates, e.g. ``["skin", "lighting"]``.
    n_boot : int, optional
        Bootstrap replicates for the intervals (0 skips them).
    seed : int, optional
        Seed of every random step (bootstrap, permutations, subsamples,
        probe folds); equal seeds give equal results.
    alpha : float, optional
        Two-sided level of the intervals (0.05 -> 95 %).
    min_count : int, optional
        Groups with fewer rows get NaN figures (their row and count stay).
    k : int, optional
        Neighbours for ``homophily``.
    probe : {"ridge", "logistic"}, optional
        Linear probe model (see :func:`linear_probe`).
    n_perm : int, optional
        Permutations per group-vs-rest test.
    max_perm_rows : int, optional
        Rows per side of a permutation test (subsampled above).
    max_knn_rows, max_probe_rows : int, optional
        Subsample sizes for the neighbour search and the linear probe.
    probe_folds : int, optional
        Cross-validation folds of the probe.
    intersections : bool, optional
        Also report intersections of the ``by`` coordinates.
    missing_values : mapping, optional
        Labels meaning "unknown" (default :data:`MISSING_VALUES`: ``"na"``,
        ``""``, -1, and skin 0); such rows are left out and counted in
        :attr:`GroupStats.n_excluded`.

    Returns
    -------
    GroupStats
        ``table`` (tidy DataFrame), ``distances`` (DataArrays), ``disparity``
        and ``probe`` summaries.

    Raises
    ------
    ShapeMismatchError
        If ``X`` is not 2-D or its length differs from ``labels``.
    UnknownVariableError
        If a ``by`` column is missing from ``labels``.
    ValidationError
        For bad ``n_boot``, ``min_count``, ``alpha`` or non-finite ``X``.
    """
    X, by = _validate(X, labels, by, n_boot, min_count)
    alpha = check_alpha(alpha)
    n_boot = int(n_boot)
    labels = labels.reset_index(drop=True)
    keep = labeled_mask(labels, by, missing_values)
    n_excluded = int((~keep).sum())
    if n_excluded:
        logger.warning(
            "group_statistics: %d rows with an unknown %s label left out", n_excluded, by
        )
        X, labels = X[keep], labels[keep].reset_index(drop=True)
    if len(X) == 0:
        raise ValidationError(
            f"no rows with a known {by} label are left ({n_excluded} left out as unknown); "
            "check the coordinate values or pass missing_values={}."
        )
    rng = np.random.default_rng(seed)
    U = _unit(X)
    knn_rows, knn_nbrs = knn_own_share(U, k, rng, max_knn_rows)

    tables, distances, probes = [], {}, []
    for cols in groupings_of(by, intersections):
        gname = grouping_name(cols)
        codes, keys = _factorize(labels[list(cols)])
        G = len(keys)
        counts = np.bincount(codes, minlength=G)
        valid = counts >= min_count
        t = group_table_skeleton(keys, by, gname)
        t["count"] = counts
        names = [group_label(r, cols) for _, r in keys.iterrows()]

        # --- point estimates -------------------------------------------------
        D = centroid_distances(X, codes, G)
        distances[gname] = _distance_array(D, keys, names, counts, cols, gname)
        # homophily: per pooled row, share of neighbours in its own group
        share = np.full(len(X), np.nan)
        if knn_nbrs.shape[1]:
            share[knn_rows] = (codes[knn_nbrs] == codes[knn_rows][:, None]).mean(axis=1)
        pool_counts = np.bincount(codes[knn_rows], minlength=G)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = (pool_counts - 1) / (len(knn_rows) - 1)
        # probe over the large-enough groups
        probe_codes = np.where(valid[codes], codes, -1)
        correct, summary = linear_probe(
            X, probe_codes, rng, probe_folds, max_probe_rows, seed, probe
        )
        summary["grouping"] = gname
        probes.append(summary)

        fig = {name: np.full(G, np.nan) for name in FIGURES if name != "count"}
        ci = {name: (np.full(G, np.nan), np.full(G, np.nan)) for name in CI_FIGURES}
        per_row = np.stack([share, correct], axis=1)
        rep_centroids = np.zeros((G, n_boot if n_boot else 0, X.shape[1]), dtype=np.float32)
        rep_figs: dict[int, dict[str, np.ndarray]] = {}
        for g in np.flatnonzero(valid):
            idx = np.flatnonzero(codes == g)
            n = len(idx)
            Xg, Ug = X[idx], U[idx]
            s_x, s_u = Xg.sum(0), Ug.sum(0)
            sq_x, sq_u = np.einsum("nd,nd->n", Xg, Xg), np.einsum("nd,nd->n", Ug, Ug)
            fig["centroid_norm"][g] = np.sqrt(max(0.0, (s_x @ s_x - sq_x.sum()) / (n * (n - 1))))
            fig["dispersion"][g] = 1.0 - (s_u @ s_u - sq_u.sum()) / (n * (n - 1))
            others = valid.copy()
            others[g] = False
            fig["dist_to_others"][g] = D[g, others].mean() if others.any() else np.nan
            v = per_row[idx]
            m = ~np.isnan(v)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(m, v, 0).sum(0) / m.sum(0)
            fig["homophily"][g] = means[0]
            fig["homophily_expected"][g] = expected[g]
            fig["homophily_ratio"][g] = means[0] / expected[g] if expected[g] > 0 else np.nan
            fig["probe_recall"][g] = means[1]
            rest = np.flatnonzero(codes != g)
            if len(rest):
                res = energy_permutation_test(Ug, U[rest], n_perm, rng, max_perm_rows)
                fig["energy"][g], fig["p_value"][g] = res.statistic, res.p_value
            if not n_boot:
                continue
            reps: dict[str, list[np.ndarray]] = {
                "centroid_norm": [],
                "dispersion": [],
                "homophily": [],
                "probe_recall": [],
            }
            filled, mf = np.where(m, v, 0.0), m.astype(np.float64)
            done = 0
            for W in iter_resample_counts(n, n_boot, rng):
                Wd = W.astype(np.float64)
                Sx, Sb = Wd @ Xg, Wd @ Ug
                W2 = Wd * Wd
                # pairs of draws from the same source row are left out (as i != j above)
                with np.errstate(invalid="ignore", divide="ignore"):
                    pairs = n * n - W2.sum(1)
                    sq_b = (np.einsum("bd,bd->b", Sx, Sx) - W2 @ sq_x) / pairs
                    disp_b = 1.0 - (np.einsum("bd,bd->b", Sb, Sb) - W2 @ sq_u) / pairs
                rep_centroids[g, done : done + len(W)] = Sx / n
                done += len(W)
                reps["centroid_norm"].append(np.sqrt(np.maximum(sq_b, 0.0)))
                reps["dispersion"].append(disp_b)
                with np.errstate(invalid="ignore", divide="ignore"):
                    pm = (Wd @ filled) / (Wd @ mf)
                reps["homophily"].append(pm[:, 0])
                reps["probe_recall"].append(pm[:, 1])
            rep_figs[int(g)] = {key: np.concatenate(val) for key, val in reps.items()}
        fig["p_holm"] = holm(fig["p_value"])
        if n_boot and valid.any():
            Cu = _unit(rep_centroids.reshape(-1, X.shape[1]).astype(np.float64)).reshape(
                rep_centroids.shape
            )
            for gi, figs in rep_figs.items():
                others = valid.copy()
                others[gi] = False
                if others.any():
                    sims = np.einsum("bd,hbd->bh", Cu[gi], Cu[others])
                    figs["dist_to_others"] = (1.0 - sims).mean(axis=1)
                else:
                    figs["dist_to_others"] = np.full(n_boot, np.nan)
                figs["homophily_ratio"] = (
                    figs["homophily"] / expected[gi]
                    if expected[gi] > 0
                    else np.full(n_boot, np.nan)
                )
                for name in CI_FIGURES:
                    r = figs[name]
                    # bias-corrected percentile interval: centre replicates on the estimate
                    if np.isfinite(fig[name][gi]) and np.isfinite(r).any():
                        r = r - (np.nanmean(r) - fig[name][gi])
                    lo, hi = np.clip(
                        percentile_ci(r[:, None], alpha), *_RANGES.get(name, (-np.inf, np.inf))
                    )
                    ci[name][0][gi], ci[name][1][gi] = lo[0], hi[0]
        for name in FIGURES:
            if name == "count":
                continue
            t[name] = fig[name]
            if name in CI_FIGURES:
                t[f"{name}_lo"], t[f"{name}_hi"] = ci[name]
        tables.append(t)

    table = _tidy_by_columns(pd.concat(tables, ignore_index=True), by)
    ordered = list(by) + ["grouping", "count"]
    for name in FIGURES[1:]:
        ordered.append(name)
        if name in CI_FIGURES:
            ordered += [f"{name}_lo", f"{name}_hi"]
    table = table[ordered]
    disparity = disparity_summary(
        table, [f for f in FIGURES if f not in ("count", "energy", "p_value", "p_holm")], by
    )
    probe = pd.DataFrame.from_records(probes).set_index("grouping")
    return GroupStats(
        table=table, distances=distances, disparity=disparity, probe=probe, n_excluded=n_excluded
    )


# ---------------------------------------------------------- streamed moments
def block_group_sums(x: np.ndarray, codes: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Per-group sums of one block of vectors: the streamed part of group moments.

    Parameters
    ----------
    x : numpy.ndarray
        ``(m, D)`` vectors of one block.
    codes : numpy.ndarray
        ``(m,)`` group index of each vector in ``[0, n_groups)``.
    n_groups : int
        Number of groups.

    Returns
    -------
    dict of numpy.ndarray
        float64 ``count``, ``sum``, ``sumsq`` (per feature), ``norm`` and
        ``norm2`` (of the L2 norms), each with ``n_groups`` rows; blocks
        combine with :func:`add_group_sums`.

    Examples
    --------
    >>> s = block_group_sums(np.array([[3.0, 4.0], [0.0, 1.0]]), np.array([1, 1]), 2)
    >>> s["count"].tolist(), s["norm"].tolist()
    ([0.0, 2.0], [0.0, 6.0])
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.asarray(codes)
    order = np.argsort(c, kind="stable")
    cs = c[order]
    starts = (
        np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]) if len(cs) else np.zeros(0, dtype=np.int64)
    )
    present = cs[starts]
    xs = x[order]
    norms = np.sqrt((xs * xs).sum(axis=1))
    out = {
        "count": np.zeros(n_groups),
        "sum": np.zeros((n_groups, x.shape[1])),
        "sumsq": np.zeros((n_groups, x.shape[1])),
        "norm": np.zeros(n_groups),
        "norm2": np.zeros(n_groups),
    }
    if len(cs):
        out["count"][present] = np.diff(np.r_[starts, len(cs)])
        out["sum"][present] = np.add.reduceat(xs, starts, axis=0)
        out["sumsq"][present] = np.add.reduceat(xs * xs, starts, axis=0)
        out["norm"][present] = np.add.reduceat(norms, starts)
        out["norm2"][present] = np.add.reduceat(norms * norms, starts)
    return out


def add_group_sums(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add the :func:`block_group_sums` of several blocks (associative, for tree reductions)."""
    out = {k: v.copy() for k, v in parts[0].items()}
    for p in parts[1:]:
        for k, v in p.items():
            out[k] += v
    return out


def group_moments(blocks: Blocks, codes: np.ndarray, n_groups: int) -> dict[str, np.ndarray]:
    """Per-group count, mean, std, mean norm and dispersion, streaming the vectors once.

    Parameters
    ----------
    blocks : Blocks
        ``(start, block)`` pairs (e.g. :func:`embstore.analysis.blocks.vector_blocks`).
    codes : numpy.ndarray
        Group index of every vector.
    n_groups : int
        Number of groups.

    Returns
    -------
    dict of numpy.ndarray
        ``count``, ``mean`` and ``std`` (population, per feature),
        ``mean_norm`` and ``dispersion`` (mean squared distance to the group
        mean); see :func:`moments_from_sums`.

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> m = group_moments([(0, x[:2]), (2, x[2:])], np.array([0, 0, 1]), 2)
    >>> m["mean"].tolist(), m["dispersion"].tolist()
    ([[2.0, 0.0], [0.0, 2.0]], [1.0, 0.0])
    """
    codes = np.asarray(codes)
    parts = [block_group_sums(b, codes[s : s + len(b)], n_groups) for s, b in blocks]
    if not parts:
        parts = [block_group_sums(np.zeros((0, 0)), codes[:0], n_groups)]
    return moments_from_sums(add_group_sums(*parts))


def moments_from_sums(tot: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Group moments from summed :func:`block_group_sums` (NaN for empty groups)."""
    count = tot["count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = tot["sum"] / count[:, None]
        var = np.maximum(tot["sumsq"] / count[:, None] - mean * mean, 0.0)
        mean_norm = tot["norm"] / count
        dispersion = np.maximum(tot["norm2"] / count - (mean * mean).sum(axis=1), 0.0)
    return {
        "count": count.astype(np.int64),
        "mean": mean,
        "std": np.sqrt(var),
        "mean_norm": mean_norm,
        "dispersion": dispersion,
    }
