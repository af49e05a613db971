"""Two-sample permutation test with the energy distance.

The energy distance (Szekely & Rizzo) between samples ``X`` (n1 rows) and
``Y`` (n2 rows) is

.. math:: E = 2\\,\\overline{d(X, Y)} - \\overline{d(X, X)} - \\overline{d(Y, Y)}

(means over all pairs, V-statistic form, Euclidean distance ``d``). It is zero
only when the two distributions are equal, so unlike a test on the means it
also reacts to differences in spread or shape. The p-value comes from
relabelling the pooled rows at random: ``p = (1 + #{E_perm >= E_obs}) /
(1 + n_perm)``, which is exact (valid at every sample size) under the null
hypothesis of exchangeable rows.

Cost: with ``m = m1 + m2`` pooled rows the distance matrix is ``m x m`` and
all permutations are evaluated at once as quadratic forms ``A D A^T``, so a
test costs ``O(m^2 D + n_perm m^2)``. Large groups are subsampled to
``max_per_sample`` rows each (at random, from ``rng``), which keeps the test
exact for the subsample.

Examples
--------
>>> from typing import Any

import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(40, 3)); y = rng.normal(size=(60, 3)) + 1.0
>>> res = energy_permutation_test(x, y, n_perm=99, rng=rng)
>>> res.p_value <= 0.01
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import ValidationError

__all__ = ["PermutationResult", "energy_distance", "energy_permutation_test"]


@dataclass(frozen=True)
class PermutationResult:
    """Outcome of :func:`energy_permutation_test`.

    Attributes
    ----------
    statistic : float
        Energy distance of the (possibly subsampled) observed split.
    p_value : float
        Permutation p-value, in ``(0, 1]``.
    n_perm : int
        Number of random relabellings.
    n1, n2 : int
        Rows used from each sample (after subsampling).
    """

    statistic: float
    p_value: float
    n_perm: int
    n1: int
    n2: int


def _energy_from_quadratic(aDa: Any, aD1: Any, oDo: Any, n1: int, n2: int) -> Any:
    # with b = 1 - a: bDb = 1'D1 - 2 a'D1 + a'Da ; aDb = a'D1 - a'Da
    aDb = aD1 - aDa
    bDb = oDo - 2 * aD1 + aDa
    return 2 * aDb / (n1 * n2) - aDa / n1**2 - bDb / n2**2


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance between two samples (V-statistic form).

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n1, D)`` and ``(n2, D)`` samples.

    Returns
    -------
    float
        Non-negative energy distance.

    Examples
    --------
    >>> import numpy as np
    >>> float(energy_distance(np.zeros((3, 2)), np.zeros((4, 2))))
    0.0
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean())


def energy_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    n_perm: int = 199,
    rng: np.random.Generator | int | None = None,
    max_per_sample: int = 300,
) -> PermutationResult:
    """Permutation test of "x and y come from the same distribution".

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n1, D)`` and ``(n2, D)`` samples (at least 1 row each).
    n_perm : int, optional
        Number of random relabellings (199 gives p-values in steps of 0.005).
    rng : numpy.random.Generator or int, optional
        Randomness for subsampling and relabelling.
    max_per_sample : int, optional
        Larger samples are subsampled to this many rows.

    Returns
    -------
    PermutationResult

    Raises
    ------
    ValidationError
        If a sample is empty, the feature dimensions differ or ``n_perm < 1``.
    """
    rng = np.random.default_rng(rng)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValidationError(
            f"samples must be 2-D with the same number of columns, got shapes {x.shape} and "
            f"{y.shape}; reshape them to (rows, features)."
        )
    if len(x) == 0 or len(y) == 0:
        raise ValidationError(
            f"both samples need at least one row (got {len(x)} and {len(y)}); "
            "drop empty groups before testing."
        )
    if int(n_perm) < 1:
        raise ValidationError(f"n_perm={n_perm!r} must be at least 1, e.g. n_perm=199.")
    n_perm = int(n_perm)
    if len(x) > max_per_sample:
        x = x[rng.choice(len(x), max_per_sample, replace=False)]
    if len(y) > max_per_sample:
        y = y[rng.choice(len(y), max_per_sample, replace=False)]
    n1, n2 = len(x), len(y)
    z = np.concatenate([x, y])
    D = cdist(z, z)
    r = D.sum(1)
    oDo = r.sum()
    a = np.zeros(n1 + n2)
    a[:n1] = 1.0
    obs = _energy_from_quadratic(a @ D @ a, a @ r, oDo, n1, n2)
    A = rng.permuted(np.broadcast_to(a, (n_perm, n1 + n2)), axis=1)
    DA = A @ D
    aDa = np.einsum("pm,pm->p", DA, A)
    perm = _energy_from_quadratic(aDa, A @ r, oDo, n1, n2)
    # a tiny tolerance so that ties from identical splits count as >= obs
    exceed = int(np.sum(perm >= obs - 1e-12 * max(1.0, abs(obs))))
    return PermutationResult(
        statistic=float(obs),
        p_value=(1 + exceed) / (1 + n_perm),
        n_perm=n_perm,
        n1=n1,
        n2=n2,
    )
