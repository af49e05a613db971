"""One description of "which vectors": :class:`VectorSpec`, and the block contract.

Every analysis that works on vectors (search, near-duplicates, clustering,
fairness statistics, layer profiles, the Dask paths) names its vectors the
same way: a variable, how to pool it, which layer, ``k`` for top-k pooling and
the dimensions pooled over. :class:`VectorSpec` is that description, frozen
and hashable, so that it can key caches (an index catalog) and travel to Dask
workers.

Vectors then travel as *blocks*: an iterable of ``(start, block)`` pairs where
``start`` is the position of the block's first vector and ``block`` is a
C-contiguous ``float32`` array ``(n, dim)``. This is the contract of faiss'
``knn_ground_truth(xq, db_iterator, k)``; :data:`Blocks` names it.

Examples
--------
>>> from embstore.analysis.spec import VectorSpec
>>> spec = VectorSpec("query_embeddings", pool="mean")
>>> spec.replace(layer=-1)
VectorSpec(variable='query_embeddings', pool='mean', layer=-1, k=None, over=None)
>>> VectorSpec.coerce(None, variable="embedding").variable
'embedding'
>>> VectorSpec(over="y,x").over
('y', 'x')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from ..errors import ValidationError

__all__ = ["Blocks", "VectorSpec", "parse_over"]

#: The block contract: ``(start, float32 block of shape (n, dim))`` pairs in
#: row order, as faiss ``knn_ground_truth`` takes its database iterator.
Blocks: TypeAlias = Iterable[tuple[int, np.ndarray]]


def parse_over(over: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Dimension names from ``"y,x"`` or a sequence (``None`` stays ``None``).

    Raises
    ------
    ValidationError
        If no dimension is named.

    Examples
    --------
    >>> parse_over(" y, x ")
    ('y', 'x')
    """
    if over is None:
        return None
    if isinstance(over, str):
        parts = tuple(p.strip() for p in over.split(",") if p.strip())
    else:
        parts = tuple(str(p) for p in over)
    if not parts:
        raise ValidationError(
            f"over={over!r} names no dimension; give dimension names such as 'y,x'"
        )
    return parts


@dataclass(frozen=True)
class VectorSpec:
    """Which vectors an analysis works on.

    Parameters
    ----------
    variable : str, optional
        The store variable. ``None`` means the store's default variable
        (:func:`embstore.analysis.defaults.resolve_variable`).
    pool : str, optional
        ``"mean"``, ``"max"``, ``"confidence"``, ``"topk"`` (or ``"topk:K"``),
        or ``None`` to keep every query as its own vector.
    layer : int, optional
        The layer of a variable with a ``layer`` dimension; ``None`` is the last.
    k : int, optional
        How many queries ``pool="topk"`` keeps.
    over : str or sequence of str, optional
        Dimensions pooled over. ``None`` means the variable's own: ``query``
        for query variables, the spatial dimensions (``y, x`` or ``token``) for
        feature maps. A string is split on commas (``"y,x"``).
    """

    variable: str | None = None
    pool: str | None = "mean"
    layer: int | None = None
    k: int | None = None
    over: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "over", parse_over(self.over))
        if self.layer is not None and (
            isinstance(self.layer, bool) or not isinstance(self.layer, int)
        ):
            raise ValidationError(
                f"layer={self.layer!r} is not an integer; give a layer index such as -1"
            )
        if self.k is not None and (
            isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1
        ):
            raise ValidationError(f"k={self.k!r} must be a positive integer")

    def replace(self, **changes: Any) -> VectorSpec:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def coerce(cls, spec: VectorSpec | None = None, **fields: Any) -> VectorSpec:
        """Build a spec from an optional spec plus keyword fields.

        Keyword fields that are given (not ``None``) override the spec's; with
        no spec, they fill a default one. This lets every function accept both
        ``spec=VectorSpec(...)`` and the flat ``variable=, pool=, layer=``
        keywords of the documented API.

        Raises
        ------
        ValidationError
            If ``spec`` is not a :class:`VectorSpec` or a field is unknown.
        """
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValidationError(
                f"unknown vector field(s) {sorted(unknown)}; use variable, pool, layer, k or over"
            )
        if spec is None:
            return cls(**{k: v for k, v in fields.items() if v is not None})
        if not isinstance(spec, cls):
            raise ValidationError(
                f"spec={spec!r} is not a VectorSpec; build one with VectorSpec(variable=..., pool=...)"
            )
        given = {k: v for k, v in fields.items() if v is not None}
        return spec.replace(**given) if given else spec

    def pool_kwargs(self) -> dict[str, Any]:
        """The pooling keywords (``k``, ``over``) that are set, for the pooling functions."""
        out: dict[str, Any] = {}
        if self.k is not None:
            out["k"] = self.k
        if self.over is not None:
            out["over"] = self.over
        return out
