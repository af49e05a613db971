"""Detection fairness: match annotated people to DETR person predictions.

Matching rule (the COCO evaluation rule, applied per image and per IoU
threshold ``t``):

1. Candidates are the queries whose DETR label is the person class: the
   class probabilities are ``softmax(pred_logits)`` without the last
   ("no object") entry, a query's label is its most probable class and its
   score that probability (as in DETR's ``PostProcess``). Queries scoring
   below ``score_threshold`` (default 0: every person-labelled query, like
   COCO average recall) are dropped.
2. Candidates are visited in decreasing score order (ties: lower query index
   first). Each takes the still unmatched annotated person with the highest
   IoU, provided that IoU is ``>= t``; otherwise it stays unmatched.
   A person is thus matched to at most one prediction and vice versa.

A person is *detected at t* when matched at ``t``. ``detected`` and
``score``/``iou``/``query`` refer to the main threshold (``iou``, 0.5 by
default); ``recall_avg`` is the share of the thresholds 0.50:0.05:0.95 at
which the person is detected, so its group mean is the COCO-style average
recall. ``best_iou`` is the highest IoU with any candidate (matched or not).

Boxes: annotations are pixel ``(x, y, w, h)`` (top-left corner, FACET/COCO
convention); DETR ``pred_boxes`` are ``(cx, cy, w, h)`` relative to the image,
converted with each image's ``width`` and ``height``.

Examples
--------
>>> import numpy as np
>>> iou = np.array([[0.9, 0.6], [0.55, 0.0]])   # 2 people x 2 predictions
>>> greedy_match(iou, scores=np.array([0.5, 0.9]), threshold=0.5).tolist()
[1, 0]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ShapeMismatchError, UnknownVariableError, ValidationError
from .bootstrap import bootstrap_means, check_alpha
from .disparity import disparity_summary
from .stats import (
    _factorize,
    _tidy_by_columns,
    group_table_skeleton,
    grouping_name,
    groupings_of,
    labeled_mask,
)

__all__ = [
    "IOU_THRESHOLDS",
    "PERSON_CLASS",
    "DetectionStats",
    "box_iou",
    "cxcywh_to_xyxy",
    "detection_statistics",
    "greedy_match",
    "match_persons",
    "person_boxes",
    "person_scores",
    "xywh_to_xyxy",
]

logger = logging.getLogger(__name__)

#: IoU thresholds of the average recall (COCO: 0.50, 0.55, ..., 0.95).
IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
#: COCO category id of "person" in DETR's 91(+1) class head.
PERSON_CLASS = 1

_BOX_COLUMNS = (
    ("x", "y", "w", "h"),
    ("bbox_x", "bbox_y", "bbox_w", "bbox_h"),
    ("x", "y", "width", "height"),
    ("bbox_x", "bbox_y", "bbox_width", "bbox_height"),
    ("bb_x", "bb_y", "bb_width", "bb_height"),
)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Convert ``(x, y, w, h)`` boxes (top-left corner) to ``(x0, y0, x1, y1)``.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(..., 4)`` boxes.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> xywh_to_xyxy(np.array([10.0, 20.0, 5.0, 5.0])).tolist()
    [10.0, 20.0, 15.0, 25.0]
    """
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def cxcywh_to_xyxy(
    boxes: np.ndarray, width: float | np.ndarray, height: float | np.ndarray
) -> np.ndarray:
    """Convert DETR's relative ``(cx, cy, w, h)`` boxes to pixel ``(x0, y0, x1, y1)``.

    Parameters
    ----------
    boxes : numpy.ndarray
        ``(..., 4)`` boxes with coordinates in ``[0, 1]``.
    width, height : float or numpy.ndarray
        Image size in pixels (broadcast against ``boxes[..., 0]``).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> cxcywh_to_xyxy(np.array([0.5, 0.5, 0.2, 0.4]), 100, 50).tolist()
    [40.0, 15.0, 60.0, 35.0]
    """
    b = np.asarray(boxes, dtype=np.float64)
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    cx, cy, bw, bh = b[..., 0] * w, b[..., 1] * h, b[..., 2] * w, b[..., 3] * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``(x0, y0, x1, y1)`` boxes.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(n, 4)`` and ``(m, 4)`` boxes.

    Returns
    -------
    numpy.ndarray
        ``(n, m)`` IoU in ``[0, 1]`` (0 for empty boxes).

    Examples
    --------
    >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])).round(3).tolist()
    [[0.333, 0.0]]
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def person_scores(
    pred_logits: np.ndarray, person_class: int = PERSON_CLASS
) -> tuple[np.ndarray, np.ndarray]:
    """Which queries DETR labels as a person, and their scores.

    Parameters
    ----------
    pred_logits : numpy.ndarray
        ``(..., n_classes + 1)`` logits; the last entry is "no object".
    person_class : int, optional
        Class index of "person" (COCO: 1).

    Returns
    -------
    is_person : numpy.ndarray
        Boolean ``(...)``: the most probable real class is ``person_class``.
    score : numpy.ndarray
        ``(...)`` that class's softmax probability.

    Examples
    --------
    >>> logits = np.array([[0.0, 5.0, 0.0, 1.0], [0.0, 0.0, 0.0, 9.0]])
    >>> is_p, s = person_scores(logits)
    >>> is_p.tolist(), s.round(2).tolist()
    ([True, False], [0.97, 0.0])
    """
    z = np.asarray(pred_logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    real = p[..., :-1]
    label = real.argmax(axis=-1)
    return label == person_class, real.max(axis=-1)


def greedy_match(iou: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Match people to predictions by the COCO greedy rule (see module docstring).

    Parameters
    ----------
    iou : numpy.ndarray
        ``(n_people, n_predictions)`` IoU of the candidate predictions.
    scores : numpy.ndarray
        ``(n_predictions,)`` scores; higher is visited first.
    threshold : float, optional
        Smallest IoU that counts as a match.

    Returns
    -------
    numpy.ndarray
        ``(n_people,)`` index of the matched prediction, ``-1`` when unmatched.
    """
    iou = np.asarray(iou, dtype=np.float64)
    matched = np.full(iou.shape[0], -1, dtype=np.int64)
    if iou.size == 0:
        return matched
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    avail = iou.copy()
    for q in order:
        col = avail[:, q]
        p = int(np.argmax(col))
        if col[p] >= threshold:
            matched[p] = q
            avail[p, :] = -1.0
    return matched


def person_boxes(persons: pd.DataFrame) -> np.ndarray:
    """Pixel ``(x0, y0, x1, y1)`` boxes of a persons table.

    Accepted layouts: columns ``x, y, w, h``; ``bbox_x, bbox_y, bbox_w,
    bbox_h``; ``x, y, width, height``; ``bbox_x, bbox_y, bbox_width,
    bbox_height``; ``bb_x, bb_y, bb_width, bb_height``; or one
    ``bounding_box`` column of dicts / JSON strings with ``x, y, width,
    height`` (FACET's CSV).

    Parameters
    ----------
    persons : pandas.DataFrame
        One row per annotated person.

    Returns
    -------
    numpy.ndarray
        ``(n, 4)`` float boxes.

    Raises
    ------
    UnknownVariableError
        If no box layout is recognised.

    Examples
    --------
    >>> person_boxes(pd.DataFrame({"x": [1], "y": [2], "w": [3], "h": [4]})).tolist()
    [[1.0, 2.0, 4.0, 6.0]]
    """
    for cols in _BOX_COLUMNS:
        if all(c in persons.columns for c in cols):
            return xywh_to_xyxy(persons[list(cols)].to_numpy(dtype=np.float64))
    if "bounding_box" in persons.columns:
        recs = [json.loads(v) if isinstance(v, str) else dict(v) for v in persons["bounding_box"]]
        arr = np.array([[r["x"], r["y"], r["width"], r["height"]] for r in recs], dtype=np.float64)
        return xywh_to_xyxy(arr.reshape(-1, 4))
    raise UnknownVariableError(
        f"no person box columns found among {list(persons.columns)!r}; provide x, y, w, h "
        "(pixels, top-left corner) or a FACET 'bounding_box' column."
    )


def match_persons(
    persons: pd.DataFrame,
    row_of_person: np.ndarray,
    pred_boxes: np.ndarray,
    pred_logits: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    *,
    iou: float = 0.5,
    score_threshold: float = 0.0,
    person_class: int = PERSON_CLASS,
    iou_thresholds: Sequence[float] = tuple(IOU_THRESHOLDS),
) -> pd.DataFrame:
    """Per-person detection table.

    Parameters
    ----------
    persons : pandas.DataFrame
        Annotated people (box columns as in :func:`person_boxes`, plus any
        labels such as ``skin`` or ``lighting``, which are kept).
    row_of_person : numpy.ndarray
        ``(n_persons,)`` index of each person's image in the arrays below.
    pred_boxes : numpy.ndarray
        ``(n_images, n_queries, 4)`` relative ``(cx, cy, w, h)`` boxes.
    pred_logits : numpy.ndarray
        ``(n_images, n_queries, n_classes + 1)``.
    width, height : numpy.ndarray
        ``(n_images,)`` image sizes in pixels.
    iou : float, optional
        IoU threshold of ``detected``.
    score_threshold : float, optional
        Predictions scoring below are ignored.
    person_class : int, optional
        Class index of "person".
    iou_thresholds : sequence of float, optional
        Thresholds averaged in ``recall_avg``.

    Returns
    -------
    pandas.DataFrame
        ``persons`` (index reset) plus ``row`` (image index), ``detected``
        (bool), ``iou`` (of the match, NaN if none), ``best_iou``, ``score``
        (NaN if none), ``query`` (matched query, -1 if none) and
        ``recall_avg``.

    Raises
    ------
    ShapeMismatchError
        If the array shapes disagree.
    ValidationError
        If ``iou`` is not in (0, 1] or a person's image index is out of range.
    """
    pb = np.asarray(pred_boxes)
    pl = np.asarray(pred_logits)
    if pb.ndim != 3 or pb.shape[-1] != 4 or pl.ndim != 3 or pl.shape[:2] != pb.shape[:2]:
        raise ShapeMismatchError(
            f"pred_boxes {pb.shape} and pred_logits {pl.shape} must be (images, queries, 4) and "
            "(images, queries, classes + 1) with the same images and queries."
        )
    row_of_person = np.asarray(row_of_person, dtype=np.int64)
    if len(row_of_person) != len(persons):
        raise ShapeMismatchError(
            f"row_of_person has {len(row_of_person)} entries for {len(persons)} persons; give one per person."
        )
    if len(row_of_person) and (row_of_person.min() < 0 or row_of_person.max() >= len(pb)):
        raise ValidationError(
            f"person image indices must lie in [0, {len(pb)}), got {row_of_person.min()}..{row_of_person.max()}."
        )
    if not 0.0 < float(iou) <= 1.0:
        raise ValidationError(f"iou={iou!r} must be in (0, 1], e.g. 0.5.")
    thresholds = np.asarray(list(iou_thresholds), dtype=np.float64)
    gt = person_boxes(persons)
    is_person, score = person_scores(pl, person_class)
    is_person &= score >= score_threshold
    n = len(persons)
    out = {
        "detected": np.zeros(n, dtype=bool),
        "iou": np.full(n, np.nan),
        "best_iou": np.zeros(n),
        "score": np.full(n, np.nan),
        "query": np.full(n, -1, dtype=np.int64),
        "recall_avg": np.zeros(n),
    }
    order = np.argsort(row_of_person, kind="stable")
    bounds = np.flatnonzero(np.diff(row_of_person[order])) + 1
    for people in np.split(order, bounds) if n else []:
        r = int(row_of_person[people[0]])
        cand = np.flatnonzero(is_person[r])
        if not cand.size:
            continue
        boxes = cxcywh_to_xyxy(pb[r, cand], width[r], height[r])
        M = box_iou(gt[people], boxes)
        out["best_iou"][people] = M.max(axis=1)
        s = score[r, cand]
        m = greedy_match(M, s, iou)
        hit = m >= 0
        out["detected"][people] = hit
        out["iou"][people[hit]] = M[np.flatnonzero(hit), m[hit]]
        out["score"][people[hit]] = s[m[hit]]
        out["query"][people[hit]] = cand[m[hit]]
        for t in thresholds:
            out["recall_avg"][people] += greedy_match(M, s, t) >= 0
    out["recall_avg"] /= max(len(thresholds), 1)
    table = persons.reset_index(drop=True).copy()
    table["row"] = row_of_person
    for k, v in out.items():
        table[k] = v
    return table


@dataclass
class DetectionStats:
    """Result of :func:`detection_statistics`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per group and grouping: the ``by`` columns, ``grouping``,
        ``count``, ``n_detected``, then ``recall`` (at the main IoU),
        ``recall_avg`` (average recall over IoU 0.5:0.95) and ``mean_score``
        (over detected people), each with ``_lo``/``_hi`` bootstrap bounds.
    disparity : pandas.DataFrame
        Max-min difference and min/max ratio of each figure per grouping.
    n_excluded : int
        People left out for a missing or unknown label.
    """

    table: pd.DataFrame
    disparity: pd.DataFrame
    n_excluded: int = 0


#: Figures of the detection table that carry intervals.
DETECTION_FIGURES = ("recall", "recall_avg", "mean_score")


def detection_statistics(
    matches: pd.DataFrame,
    by: Sequence[str] | str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_count: int = 20,
    intersections: bool = True,
    missing_values: Mapping[str, Sequence[Any]] | None = None,
) -> DetectionStats:
    """Recall, average recall and mean score per group, with bootstrap intervals.

    Parameters
    ----------
    matches : pandas.DataFrame
        A per-person table from :func:`match_persons` (columns ``detected``,
        ``recall_avg``, ``score`` and the ``by`` columns).
    by : str or sequence of str
        Grouping coordinates, e.g. ``["skin", "lighting"]``.
    n_boot : int, optional
        Bootstrap replicates (0 skips the intervals).
    seed : int, optional
        Seed of the bootstrap.
    alpha : float, optional
        Two-sided level of the intervals.
    min_count : int, optional
        Groups with fewer people get NaN figures (row and count kept).
    intersections : bool, optional
        Also report intersections of the ``by`` coordinates.
    missing_values : mapping, optional
        Labels meaning "unknown" (see :func:`~embstore.fairness.stats.labeled_mask`);
        such people are left out and counted in ``n_excluded``.

    Returns
    -------
    DetectionStats

    Raises
    ------
    UnknownVariableError
        If a needed column is missing.
    ValidationError
        For a bad ``n_boot``, ``min_count`` or ``alpha``.

    Examples
    --------
    >>> m = pd.DataFrame({"skin": [1, 1, 2, 2], "detected": [True, False, True, True],
    ...                   "recall_avg": [0.5, 0.0, 1.0, 0.8], "score": [0.9, np.nan, 0.8, 0.7]})
    >>> res = detection_statistics(m, ["skin"], n_boot=0, min_count=1)
    >>> res.table["recall"].tolist()
    [0.5, 1.0]
    """
    if isinstance(by, str):
        by = [by]
    by = list(by)
    need = by + ["detected", "recall_avg", "score"]
    missing = [c for c in need if c not in matches.columns]
    if missing:
        raise UnknownVariableError(
            f"columns {missing!r} are missing from the per-person table (have "
            f"{list(matches.columns)!r}); build it with match_persons and name existing coordinates in by."
        )
    if int(n_boot) < 0:
        raise ValidationError(f"n_boot={n_boot!r} must be >= 0 (0 skips the intervals).")
    if int(min_count) < 1:
        raise ValidationError(f"min_count={min_count!r} must be at least 1.")
    alpha = check_alpha(alpha)
    rng = np.random.default_rng(seed)
    m = matches.reset_index(drop=True)
    keep = labeled_mask(m, by, missing_values)
    n_excluded = int((~keep).sum())
    if n_excluded:
        logger.warning(
            "detection_statistics: %d people with an unknown %s label left out", n_excluded, by
        )
        m = m[keep].reset_index(drop=True)
    if len(m) == 0:
        raise ValidationError(
            f"no people with a known {by} label are left ({n_excluded} left out as unknown); "
            "check the labels or pass missing_values={}."
        )
    values = np.stack(
        [
            m["detected"].to_numpy(dtype=np.float64),
            m["recall_avg"].to_numpy(dtype=np.float64),
            m["score"].to_numpy(dtype=np.float64, na_value=np.nan),
        ],
        axis=1,
    )
    tables = []
    for cols in groupings_of(by, intersections):
        codes, keys = _factorize(m[list(cols)])
        G = len(keys)
        counts = np.bincount(codes, minlength=G)
        t = group_table_skeleton(keys, by, grouping_name(cols))
        t["count"] = counts
        t["n_detected"] = np.bincount(codes, weights=values[:, 0], minlength=G).astype(np.int64)
        est = np.full((G, 3), np.nan)
        lo, hi = est.copy(), est.copy()
        for g in np.flatnonzero(counts >= min_count):
            est[g], lo[g], hi[g] = bootstrap_means(values[codes == g], int(n_boot), rng, alpha)
        for j, name in enumerate(DETECTION_FIGURES):
            t[name], t[f"{name}_lo"], t[f"{name}_hi"] = est[:, j], lo[:, j], hi[:, j]
        tables.append(t)
    table = _tidy_by_columns(pd.concat(tables, ignore_index=True), by)
    disparity = disparity_summary(table, list(DETECTION_FIGURES), by)
    return DetectionStats(table=table, disparity=disparity, n_excluded=n_excluded)
