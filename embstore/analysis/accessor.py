"""Accessor plumbing of :class:`embstore.EmbeddingAnalyzer`.

The analyzer is a core (:class:`~embstore.analysis.core.AnalyzerCore`:
selection, pooling, vectors) plus typed helper objects over it, in the style
of xarray's accessors (``xarray/plot/accessor.py``): ``an.index`` (search,
deduplication, clustering, the index catalog), ``an.fairness``,
``an.discovery``, ``an.plot``, ``an.layers``, ``an.attention`` and
``an.legacy``. Each helper holds a typed reference to the core; its logic
lives in free functions.

This module holds the two small pieces that wire them up:

* :class:`UncachedAccessor`, a descriptor building a fresh helper on every
  access (``an.plot`` is ``PlotAccessor(an)``), as xarray's
  ``UncachedAccessor``;
* :func:`forward`, which keeps the documented flat methods
  (``an.search(...)`` is ``an.index.search(...)``) as one-line, typed
  delegates: the signature and docstring are the helper method's.

and :func:`split_spec`, which merges an optional
:class:`~embstore.analysis.spec.VectorSpec` with the flat ``variable=,
pool=, layer=`` keywords.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ..errors import ValidationError
from .spec import VectorSpec

__all__ = ["UncachedAccessor", "forward", "split_spec"]

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")


class UncachedAccessor(Generic[A]):
    """A descriptor building ``accessor(obj)`` on each instance access.

    Parameters
    ----------
    accessor : callable
        The helper class; called with the owning object.

    Examples
    --------
    >>> class Doubler:
    ...     def __init__(self, obj):
    ...         self.obj = obj
    ...     def twice(self):
    ...         return 2 * self.obj.value
    >>> class Thing:
    ...     value = 21
    ...     double = UncachedAccessor(Doubler)
    >>> Thing().double.twice()
    42
    >>> Thing.double is Doubler
    True
    """

    def __init__(self, accessor: Callable[[Any], A]) -> None:
        self._accessor = accessor

    @overload
    def __get__(self, obj: None, cls: type | None = None) -> Callable[[Any], A]: ...

    @overload
    def __get__(self, obj: object, cls: type | None = None) -> A: ...

    def __get__(self, obj: object | None, cls: type | None = None) -> A | Callable[[Any], A]:
        if obj is None:
            return self._accessor
        return self._accessor(obj)


class _Forward(Generic[P, R]):
    """Descriptor behind :func:`forward`."""

    def __init__(self, accessor: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self._accessor = accessor
        self._method = method
        name = method.__name__

        @functools.wraps(method)
        def flat(owner: Any, /, *args: Any, **kwargs: Any) -> Any:
            return getattr(getattr(owner, accessor), name)(*args, **kwargs)

        self._flat = flat

    @overload
    def __get__(self, obj: None, cls: type | None = None) -> Callable[..., R]: ...

    @overload
    def __get__(self, obj: object, cls: type | None = None) -> Callable[P, R]: ...

    def __get__(self, obj: object | None, cls: type | None = None) -> Callable[..., R]:
        if obj is None:  # class access (autodoc, help()): a plain function
            return self._flat
        bound: Callable[P, R] = getattr(getattr(obj, self._accessor), self._method.__name__)
        return bound


def forward(accessor: str, method: Callable[Concatenate[Any, P], R]) -> _Forward[P, R]:
    """A flat method delegating to ``getattr(self, accessor).<method name>``.

    The delegate has the helper method's signature (checked by mypy through
    the :class:`~typing.ParamSpec`) and docstring, so ``an.search(...)``
    behaves exactly as ``an.index.search(...)``.

    Parameters
    ----------
    accessor : str
        Attribute of the owner that returns the helper (``"index"``).
    method : callable
        The helper's method (``SearchAccessor.search``).

    Returns
    -------
    descriptor
        Put it in a class body: ``search = forward("index", SearchAccessor.search)``.

    Examples
    --------
    >>> class Helper:
    ...     def __init__(self, owner):
    ...         self.owner = owner
    ...     def greet(self, name: str, punct: str = "!") -> str:
    ...         '''Say hello.'''
    ...         return f"hello {name}{punct}"
    >>> class Owner:
    ...     @property
    ...     def helper(self):
    ...         return Helper(self)
    ...     greet = forward("helper", Helper.greet)
    >>> Owner().greet("you", punct="?")
    'hello you?'
    >>> Owner.greet.__doc__
    'Say hello.'
    """
    return _Forward(accessor, method)


def split_spec(
    spec: VectorSpec | None,
    variable: str | None,
    pool: str | None,
    layer: int | None,
    *,
    what: str = "this call",
    allow_over: bool = False,
) -> tuple[str | None, str | None, int | None, dict[str, Any]]:
    """``(variable, pool, layer, pool_kwargs)`` from ``spec=`` plus the flat keywords.

    Without a spec the flat keywords are returned unchanged. With one, the
    spec gives the vectors; a flat ``variable`` or ``layer`` that is given
    (not ``None``) overrides it. ``pool`` always comes from the spec (the
    flat default ``"mean"`` cannot be told from an explicit one). A spec's
    ``k`` with ``pool="topk"`` becomes ``pool="topk:K"``.

    Parameters
    ----------
    spec : VectorSpec or None
        The vector specification.
    variable, pool, layer
        The flat keywords.
    what : str
        Name of the calling method, for error messages.
    allow_over : bool
        Whether ``spec.over`` is supported (returned in ``pool_kwargs``).

    Returns
    -------
    tuple
        ``variable, pool, layer, pool_kwargs`` (``over`` when allowed).

    Raises
    ------
    ValidationError
        If ``spec`` is not a VectorSpec, or sets ``over`` where not supported.

    Examples
    --------
    >>> split_spec(None, "embedding", None, None)
    ('embedding', None, None, {})
    >>> split_spec(VectorSpec("query_embeddings", pool="topk", k=3), None, "mean", None)
    ('query_embeddings', 'topk:3', None, {})
    """
    if spec is None:
        return variable, pool, layer, {}
    s = VectorSpec.coerce(spec, variable=variable, layer=layer)
    pool_out = s.pool
    if s.k is not None and pool_out is not None:
        if pool_out == "topk":
            pool_out = f"topk:{s.k}"
        elif not pool_out.startswith("topk"):
            raise ValidationError(
                f"spec k={s.k} needs pool='topk' in {what}, got pool={pool_out!r}; "
                "drop k or use pool='topk'"
            )
    extra: dict[str, Any] = {}
    if s.over is not None:
        if not allow_over:
            raise ValidationError(
                f"spec over={s.over!r} is not supported by {what}; it pools over the "
                "variable's own dimensions, so leave over=None"
            )
        extra["over"] = s.over
    return s.variable, pool_out, s.layer, extra
