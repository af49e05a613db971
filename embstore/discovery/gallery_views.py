"""Gallery groups from analyzer results: duplicates, clusters, outliers, neighbours, leaks.

Each builder turns one analysis into ordered :class:`~embstore.discovery.gallery.Group`
objects for :func:`~embstore.discovery.gallery.write_gallery`: duplicate
groups and clusters largest first, outliers by descending score (in pages of
``per_group``), neighbours in the order of the query ids, leaks by the best
score of each query row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from .gallery import Group, Item

if TYPE_CHECKING:  # the accessor imports this module when a gallery is written
    from .accessor import DiscoveryAccessor

__all__ = ["KINDS", "build_groups", "resolve_paths"]

KINDS = ("duplicates", "clusters", "outliers", "neighbors", "leaks")

#: Coordinates searched (in order) for image paths when ``path_coord`` is not given.
PATH_COORDS = ("path", "filepath", "file_path", "image_path", "fpath", "filename", "file_name")


def _path_column(columns: Sequence[str], path_coord: str | None, suffix: str = "") -> str | None:
    if path_coord is not None:
        if path_coord + suffix not in columns:
            raise ValidationError(
                f"path coordinate {path_coord!r} not found; coordinates: {list(columns)}."
            )
        return path_coord + suffix
    for c in PATH_COORDS:
        if c + suffix in columns:
            return c + suffix
    return None


def resolve_paths(
    labels: pd.DataFrame, path_coord: str | None, image_root: Any, suffix: str = ""
) -> list[str | None]:
    """Image path of every label row (joined to ``image_root`` when relative), or ``None``.

    Parameters
    ----------
    labels : pandas.DataFrame
        Label rows.
    path_coord : str, optional
        Column holding paths (default: the first of :data:`PATH_COORDS`).
    image_root : path, optional
        Folder relative paths are resolved against.
    suffix : str
        Column suffix (``"_query"`` / ``"_against"`` for leak pairs).

    Returns
    -------
    list
    """
    col = _path_column(list(labels.columns), path_coord, suffix)
    if col is None:
        return [None] * len(labels)
    out: list[str | None] = []
    for v in labels[col].tolist():
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
            continue
        p = str(v)
        if image_root is not None and not os.path.isabs(p):
            p = os.path.join(str(image_root), p)
        out.append(p)
    return out


def _items(
    labels: pd.DataFrame,
    rows: Sequence[int],
    paths: list,
    id_col: str,
    captions: Sequence[str],
    scores: Any = None,
    suffix: str = "",
) -> list[Item]:
    items = []
    for t, r in enumerate(rows):
        row = labels.iloc[int(r)]
        fields = {c: row[c + suffix] for c in captions if c + suffix in labels.columns}
        s = None if scores is None else scores[t]
        items.append(
            Item(
                row[id_col + suffix],
                paths[int(r)],
                None if s is None or np.isnan(s) else float(s),
                fields,
            )
        )
    return items


def _from_groups(
    res: Any,
    labels: pd.DataFrame,
    paths: list,
    id_col: str,
    captions: Sequence[str],
    name: str,
    n_groups: int,
    per_group: int,
    item_score: np.ndarray | None,
) -> list[Group]:
    lab = np.asarray(res.labels)
    sizes = np.bincount(lab) if lab.size else np.zeros(0, np.int64)
    out: list[Group] = []
    for g in np.argsort(-sizes, kind="stable"):
        if len(out) >= n_groups or sizes[g] < 2:
            break
        rows = np.flatnonzero(lab == g)[:per_group]
        sc = None if item_score is None else item_score[rows]
        gs = None if sc is None else float(np.nanmax(sc))
        out.append(
            Group(
                f"{name} {len(out)} (size {int(sizes[g])})",
                _items(labels, rows.tolist(), paths, id_col, captions, sc),
                gs,
                int(g),
            )
        )
    return out


def build_groups(
    disc: DiscoveryAccessor,
    kind: str,
    *,
    variable: str | None = None,
    pool: Any = "mean",
    image_root: Any = None,
    path_coord: str | None = None,
    threshold: float | None = None,
    k: int | None = None,
    ids: Any = None,
    against: Any = None,
    n_groups: int = 50,
    per_group: int = 12,
    captions: Sequence[str] = ("skin", "lighting"),
    device: str = "auto",
) -> tuple[list[Group], str]:
    """The groups of one gallery kind, in display order, plus a one-line summary.

    Parameters
    ----------
    disc : DiscoveryAccessor
        The analyzer's discovery helper (``an.discovery``): its rows, search
        helper, outliers and leaks.
    kind : {"duplicates", "clusters", "outliers", "neighbors", "leaks"}
        What to show.
    variable, pool
        Which vectors.
    image_root, path_coord
        Where the images are (see :func:`resolve_paths`).
    threshold : float, optional
        Duplicates (default 0.9), clusters (0.7) and leaks (0.95).
    k : int, optional
        Neighbours searched (duplicates/clusters: 100; outliers: 10;
        neighbours: ``per_group``; leaks: all).
    ids : list, optional
        Query ids of ``"neighbors"`` (default: the first 10 rows).
    against : EmbeddingAnalyzer, Store or path
        The searched side of ``"leaks"``.
    n_groups, per_group : int
        Groups shown and images per group.
    captions : sequence of str
        Coordinates added to captions when present.
    device : str
        faiss device.

    Returns
    -------
    (list of Group, str)
    """
    from ._common import resolve_variable

    if kind not in KINDS:
        raise ValidationError(f"kind={kind!r} is not a gallery kind; use one of {list(KINDS)}.")
    an, index = disc.core, disc.index
    variable = resolve_variable(an, variable)
    id_col = an.id_name
    labels = an.labels(variable, pool=pool)
    paths = resolve_paths(labels, path_coord, image_root)
    common = dict(variable=variable, pool=pool, device=device)
    if kind == "duplicates":
        thr = 0.9 if threshold is None else threshold
        res = index.duplicate_groups(thr, 100 if k is None else k, **common)
        best = np.full(len(labels), np.nan)
        if res.pairs is not None and len(res.pairs):
            for a in (res.pairs.i, res.pairs.j):
                np.fmax.at(best, a, res.pairs.score.astype(np.float64))
        groups = _from_groups(
            res, labels, paths, id_col, captions, "duplicate group", n_groups, per_group, best
        )
        return groups, f"near-duplicate groups (cosine >= {thr}), largest first"
    if kind == "clusters":
        thr = 0.7 if threshold is None else threshold
        res = index.cluster(thr, 100 if k is None else k, coord=None, **common).groups
        groups = _from_groups(
            res, labels, paths, id_col, captions, "cluster", n_groups, per_group, None
        )
        return groups, f"threshold clusters (cosine >= {thr}), largest first"
    if kind == "outliers":
        kk = 10 if k is None else k
        df = disc.outliers(kk, variable=variable, pool=pool, device=device).head(
            n_groups * per_group
        )
        pos = df.index.to_numpy()
        sc = df["score"].to_numpy()
        groups = []
        for s in range(0, len(pos), per_group):
            rows = pos[s : s + per_group]
            groups.append(
                Group(
                    f"ranks {s}-{s + len(rows) - 1}",
                    _items(labels, rows, paths, id_col, captions, sc[s : s + per_group]),
                    float(sc[s]),
                )
            )
        return (
            groups,
            f"most unusual rows first (mean cosine distance to the {kk} nearest neighbours)",
        )
    if kind == "neighbors":
        q = list(an.ids[: min(10, len(labels))]) if ids is None else list(np.atleast_1d(ids))
        df = index.search(ids=q, k=per_group if k is None else k, **common)
        groups = []
        qcol = f"query_{id_col}"
        for qid in q[:n_groups]:
            part = df[df[qcol] == qid].sort_values("rank")
            rows = part["neighbor"].to_numpy()
            groups.append(
                Group(
                    f"neighbours of {qid}",
                    _items(labels, rows, paths, id_col, captions, part["score"].to_numpy()),
                )
            )
        return groups, "nearest neighbours of each query (outlined), best first"
    # leaks
    if against is None:
        raise ValidationError("kind='leaks' needs against= (the searched selection or store).")
    thr = 0.95 if threshold is None else threshold
    df = disc.leaks(against, thr, k, variable=variable, pool=pool, device=device)
    qpaths = resolve_paths(df, path_coord, image_root, "_query")
    apaths = resolve_paths(df, path_coord, image_root, "_against")
    groups = []
    for i, part in df.groupby("i", sort=False):  # df is sorted by score: best query first
        if len(groups) >= n_groups:
            break
        rows = part.index.to_numpy()[: per_group - 1]
        first = _items(df, rows[:1], qpaths, id_col, captions, None, "_query")
        first[0].fields = {"side": "query", **first[0].fields}
        rest = _items(df, rows, apaths, id_col, captions, part["score"].to_numpy(), "_against")
        for it in rest:
            it.fields = {"side": "against", **it.fields}
        groups.append(
            Group(f"query {first[0].id}", first + rest, float(part["score"].max()), int(i))
        )
    return groups, f"query rows with matches at cosine >= {thr} in the searched set, best first"
