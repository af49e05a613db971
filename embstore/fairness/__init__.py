"""Fairness analysis: embedding-geometry and detection statistics by group.

Pure functions on NumPy/pandas (:mod:`~embstore.fairness.stats`,
:mod:`~embstore.fairness.detection`, :mod:`~embstore.fairness.bootstrap`,
:mod:`~embstore.fairness.permutation`, :mod:`~embstore.fairness.disparity`),
the analyzer helper (:class:`~embstore.fairness.accessor.FairnessAccessor`, ``an.fairness``), plots
(:mod:`~embstore.fairness.plots`, matplotlib imported on use), reports
(:mod:`~embstore.fairness.report`) and a synthetic FACET-like generator with
planted effects (:mod:`~embstore.fairness.synthetic`).

Importing this package imports neither matplotlib nor scikit-learn.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from embstore.fairness import group_statistics
>>> X = np.random.default_rng(0).normal(size=(60, 4))
>>> res = group_statistics(X, pd.DataFrame({"g": [0, 1] * 30}), "g", n_boot=20, n_perm=19, min_count=5)
>>> res.table["count"].tolist()
[30, 30]
"""

from __future__ import annotations

from .detection import (
    DetectionStats,
    box_iou,
    detection_statistics,
    greedy_match,
    match_persons,
    person_scores,
)
from .disparity import difference, disparity_summary, ratio
from .permutation import PermutationResult, energy_distance, energy_permutation_test
from .stats import GroupStats, group_statistics
from .synthetic import SyntheticFacet, make_synthetic_facet, write_synthetic_store

__all__ = [
    "DetectionStats",
    "GroupStats",
    "PermutationResult",
    "SyntheticFacet",
    "box_iou",
    "detection_statistics",
    "difference",
    "disparity_summary",
    "energy_distance",
    "energy_permutation_test",
    "greedy_match",
    "group_statistics",
    "make_synthetic_facet",
    "match_persons",
    "person_scores",
    "ratio",
    "write_synthetic_store",
]
