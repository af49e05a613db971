"""Typed results of searches, duplicate detection and clustering.

Each result keeps plain NumPy arrays for speed and offers ``to_frame`` for a
labeled pandas view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["GroupResult", "KnnResult", "Pairs", "RecallReport", "search_frame"]


@dataclass
class KnnResult:
    """k nearest neighbours of every vector.

    Attributes
    ----------
    scores : numpy.ndarray
        ``(n, k)`` float32, best first (cosine/ip similarity or l2 distance).
    ids : numpy.ndarray
        ``(n, k)`` int64 vector positions; ``-1`` pads missing neighbours.
        The query itself is normally among them (``k`` counts it, as in the
        face pipeline's ``topK``).
    metric : str
        The metric the scores are in.
    exact : bool
        Whether they come from an exhaustive search.
    """

    scores: np.ndarray
    ids: np.ndarray
    metric: str
    exact: bool = True

    @property
    def k(self) -> int:
        """Neighbours per vector."""
        return int(self.ids.shape[1])

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class Pairs:
    """Unordered pairs of vector positions ``i < j`` with their score.

    Examples
    --------
    >>> p = Pairs(np.array([0]), np.array([2]), np.array([0.95], dtype=np.float32))
    >>> len(p), p.as_set()
    (1, {(0, 2)})
    """

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.i.size)

    def as_set(self) -> set[tuple[int, int]]:
        """The pairs as a Python set of ``(i, j)`` tuples."""
        return set(zip(self.i.tolist(), self.j.tolist()))

    def to_frame(self, labels: pd.DataFrame | None = None) -> pd.DataFrame:
        """DataFrame with columns ``i``, ``j``, ``score`` (+ labels of both ends).

        Parameters
        ----------
        labels : pandas.DataFrame, optional
            One row per vector position; its columns are added with suffixes
            ``_i`` and ``_j``.
        """
        df = pd.DataFrame({"i": self.i, "j": self.j, "score": self.score})
        if labels is not None:
            li = labels.iloc[self.i].reset_index(drop=True).add_suffix("_i")
            lj = labels.iloc[self.j].reset_index(drop=True).add_suffix("_j")
            df = pd.concat([df, li, lj], axis=1)
        return df

    @classmethod
    def empty(cls) -> Pairs:
        """No pairs."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))

    @classmethod
    def concat(cls, parts: list[Pairs]) -> Pairs:
        """Concatenate pair lists, dropping repeats (keeping the best score)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        i = np.concatenate([p.i for p in parts])
        j = np.concatenate([p.j for p in parts])
        s = np.concatenate([p.score for p in parts])
        order = np.lexsort((-s, j, i))
        i, j, s = i[order], j[order], s[order]
        keep = np.ones(i.size, bool)
        keep[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
        return cls(i[keep], j[keep], s[keep])


@dataclass
class GroupResult:
    """Connected components of a thresholded neighbour graph.

    Group ids are deterministic: ``0`` is the largest group, ties broken by
    the smallest row position in the group; singletons are kept as groups of
    size one (so every row has a label).

    Attributes
    ----------
    labels : numpy.ndarray
        ``(n,)`` int64 group id of every vector.
    threshold : float
        Score threshold of an edge.
    metric : str
        Metric of the scores.
    k : int or None
        Neighbours searched per vector (``None``: exhaustive range search).
    exact : bool
        Whether the neighbour search was exhaustive.
    pairs : Pairs or None
        The edges, when kept.
    """

    labels: np.ndarray
    threshold: float
    metric: str
    k: int | None
    exact: bool
    pairs: Pairs | None = None
    _sizes: np.ndarray | None = field(default=None, repr=False)

    @property
    def sizes(self) -> np.ndarray:
        """``(n_groups,)`` group sizes, non-increasing."""
        if self._sizes is None:
            self._sizes = np.bincount(self.labels) if self.labels.size else np.zeros(0, np.int64)
        return self._sizes

    @property
    def n_groups(self) -> int:
        """Number of groups, singletons included."""
        return int(self.sizes.size)

    @property
    def n_singletons(self) -> int:
        """Groups of size one."""
        return int((self.sizes == 1).sum())

    def __len__(self) -> int:
        return int(self.labels.size)

    def members(self, group: int) -> np.ndarray:
        """Row positions of one group, ascending."""
        return np.flatnonzero(self.labels == group)

    def groups(self, min_size: int = 2) -> list[np.ndarray]:
        """Row positions of every group with at least ``min_size`` members, largest first."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(self.sizes)])
        return [
            order[bounds[g] : bounds[g + 1]]
            for g in range(self.n_groups)
            if self.sizes[g] >= min_size
        ]

    def representatives(self) -> np.ndarray:
        """``(n_groups,)`` the smallest row position in each group (its representative)."""
        first = np.full(self.n_groups, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, self.labels, np.arange(self.labels.size, dtype=np.int64))
        return first

    @property
    def keep(self) -> np.ndarray:
        """Boolean mask: True for the one row kept per group (the smallest position)."""
        mask = np.zeros(self.labels.size, bool)
        mask[self.representatives()] = True
        return mask

    @property
    def n_removed(self) -> int:
        """Rows that :attr:`keep` drops: ``n - n_groups``."""
        return int(self.labels.size - self.n_groups)

    def size_histogram(self) -> pd.Series:
        """Number of groups per group size (index: size, ascending)."""
        vals, counts = np.unique(self.sizes, return_counts=True)
        return pd.Series(counts, index=pd.Index(vals, name="size"), name="groups")

    def stats(self) -> dict[str, Any]:
        """Summary numbers: vectors, groups, singletons, largest, removed, histogram."""
        return {
            "n_vectors": len(self),
            "n_groups": self.n_groups,
            "n_singletons": self.n_singletons,
            "n_multi": int((self.sizes >= 2).sum()),
            "largest": int(self.sizes.max()) if self.n_groups else 0,
            "n_removed_if_deduplicated": self.n_removed,
            "n_pairs": None if self.pairs is None else len(self.pairs),
            "threshold": self.threshold,
            "metric": self.metric,
            "k": self.k,
            "exact": self.exact,
            "size_histogram": {int(s): int(c) for s, c in self.size_histogram().items()},
        }

    def to_frame(self, labels: pd.DataFrame | None = None, column: str = "group") -> pd.DataFrame:
        """One row per vector: ``column``, ``group_size``, ``representative`` (+ labels).

        Parameters
        ----------
        labels : pandas.DataFrame, optional
            One row per vector position, joined column-wise.
        column : str
            Name of the group-id column.
        """
        reps = self.representatives()
        df = pd.DataFrame(
            {
                column: self.labels,
                "group_size": self.sizes[self.labels]
                if self.labels.size
                else np.zeros(0, np.int64),
                "representative": np.arange(self.labels.size) == reps[self.labels]
                if self.labels.size
                else np.zeros(0, bool),
            }
        )
        if labels is not None:
            df = pd.concat([labels.reset_index(drop=True), df], axis=1)
        return df


@dataclass
class RecallReport:
    """Pair recall of an approximate search against exhaustive search on a sample.

    Attributes
    ----------
    recall : float
        Found exact pairs / exact pairs (1.0 when there are none).
    precision : float
        Pairs found that are exact pairs / pairs found (scores are recomputed
        exactly, so this is 1.0 unless scores are approximate, e.g. PQ).
    n_exact, n_found, n_common : int
        Pair counts.
    sample_size : int
        Query vectors sampled.
    threshold : float
        Score threshold of a pair.
    k : int
        Neighbours searched.
    """

    recall: float
    precision: float
    n_exact: int
    n_found: int
    n_common: int
    sample_size: int
    threshold: float
    k: int


def search_frame(
    scores: np.ndarray,
    ids: np.ndarray,
    db_labels: pd.DataFrame | None = None,
    query_labels: pd.DataFrame | None = None,
    lims: np.ndarray | None = None,
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """Labeled DataFrame of search results, one row per (query, neighbour).

    Parameters
    ----------
    scores, ids : numpy.ndarray
        ``(nq, k)`` kNN results, or flat arrays with ``lims`` for range search.
    db_labels : pandas.DataFrame, optional
        Labels of the database vectors (one row per position).
    query_labels : pandas.DataFrame, optional
        Labels of the queries; columns get a ``query_`` prefix. Without it,
        a ``query_index`` column holds the query's position.
    lims : numpy.ndarray, optional
        Range-search offsets.
    higher_is_better : bool
        Sort order of range-search results (False for l2 distances).

    Returns
    -------
    pandas.DataFrame
        Columns: query label(s), ``rank`` (0 = best), ``neighbor`` (position),
        the neighbour's labels, ``score``. Padding (id ``-1``) is dropped.

    Examples
    --------
    >>> df = search_frame(np.array([[1.0, 0.5]]), np.array([[0, 3]]))
    >>> df[["query_index", "rank", "neighbor", "score"]].values.tolist()
    [[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 3.0, 0.5]]
    """
    if lims is None:
        nq, k = ids.shape
        q = np.repeat(np.arange(nq), k)
        rank = np.tile(np.arange(k), nq)
        nb = ids.ravel()
        sc = scores.ravel()
    else:
        nq = lims.size - 1
        counts = np.diff(lims)
        q = np.repeat(np.arange(nq), counts)
        order = np.lexsort((ids, -scores if higher_is_better else scores, q))
        nb, sc = ids[order], scores[order]
        starts = np.repeat(lims[:-1], counts)
        rank = np.arange(nb.size) - starts
    valid = nb >= 0
    if not valid.all():
        q, rank, nb, sc = q[valid], rank[valid], nb[valid], sc[valid]
    # one column at a time, gathered with NumPy take (a join on positions):
    # several times faster than iloc + reset_index + concat of frames
    cols: list[tuple[str, Any]] = []
    if query_labels is not None:
        cols += [(f"query_{c}", _take(v, q)) for c, v in query_labels.items()]
    else:
        cols.append(("query_index", q))
    cols += [("rank", rank), ("neighbor", nb)]
    if db_labels is not None:
        cols += [(c, _take(v, nb)) for c, v in db_labels.items()]
    if any(
        c == "score" for c, _ in cols
    ):  # a "score" label is overwritten in place, as pandas would
        cols = [(c, sc if c == "score" else v) for c, v in cols]
    else:
        cols.append(("score", sc))
    names = [c for c, _ in cols]
    if len(set(names)) < len(names):  # a repeated column name (e.g. a "score" label): keep both
        out = pd.concat([pd.Series(v) for _, v in cols], axis=1)
        out.columns = names
        return out
    return pd.DataFrame(dict(cols), copy=False)


def _take(col: pd.Series, pos: np.ndarray) -> Any:
    """Values of ``col`` at positions ``pos``, keeping its dtype (categorical, string...)."""
    if isinstance(col.dtype, np.dtype):
        return col.to_numpy()[pos]
    return col.array.take(pos)
