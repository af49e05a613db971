"""Small helpers shared by the discovery modules (variable choice, labels)."""

from __future__ import annotations

from typing import Any

from ..errors import ValidationError

__all__ = ["resolve_variable"]

#: Tried in order when ``variable=None`` and the store has several variables.
PREFERRED_VARIABLES = ("embedding", "embeddings", "query_embeddings")


def resolve_variable(an: Any, variable: str | None) -> str:
    """The variable an analysis uses: ``variable``, or the store's obvious one.

    With ``variable=None``: the only dense variable, else the first of
    :data:`PREFERRED_VARIABLES` present, else the only one-vector-per-row
    variable.

    Parameters
    ----------
    an : EmbeddingAnalyzer
        The analyzer.
    variable : str or None
        Requested variable.

    Returns
    -------
    str

    Raises
    ------
    ValidationError
        When the choice is ambiguous; the message lists the variables.
    """
    if variable is not None:
        return str(variable)
    names = list(an.variables)
    if len(names) == 1:
        return names[0]
    for name in PREFERRED_VARIABLES:
        if name in names:
            return name
    per_row = [v for v, dims in an.variables.items() if len(dims) == 1]
    if len(per_row) == 1:
        return per_row[0]
    raise ValidationError(
        f"variable=None is ambiguous: the store has variables {names}; pass variable=NAME."
    )
