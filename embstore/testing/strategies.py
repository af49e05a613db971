"""Hypothesis strategies for store inputs: ids, coordinate columns, names, float arrays.

Property tests draw their inputs here instead of each writing its own
generators, so every test explores the same corners: string and integer ids
at the int64 limits, coordinate columns of every kind the store keeps, names
that :func:`embstore.store.validation.check_name` must accept or refuse, and
float arrays including the float16 edge values (largest finite, smallest
normal and subnormal, signed zero) that a float16 store must keep exactly.

Requires ``hypothesis`` (installed by the ``test`` extra).

Examples
--------
>>> from hypothesis import given
>>> from embstore.store.validation import check_name
>>> @given(valid_names())
... def test_accepted(name):
...     assert check_name("variable", name) == name
>>> test_accepted()
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..store.validation import MAX_NAME_LENGTH, RESERVED_NAMES

__all__ = [
    "FLOAT16_EDGE_VALUES",
    "coord_columns",
    "coord_values",
    "float16_arrays",
    "float16_edge_values",
    "float_arrays",
    "int_ids",
    "invalid_names",
    "row_ids",
    "str_ids",
    "valid_names",
]

_INT64 = np.iinfo(np.int64)

#: float16 values a float16 store must keep bit for bit: signed zeros, the
#: largest finite value, the smallest normal and subnormal numbers, values
#: around 1 one ulp apart.
FLOAT16_EDGE_VALUES: tuple[float, ...] = tuple(
    float(np.float16(v))
    for v in (
        0.0,
        -0.0,
        1.0,
        -1.0,
        1.0 + 2.0**-10,  # the next float16 after 1
        1.0 - 2.0**-11,  # the float16 before 1
        65504.0,  # largest finite float16
        -65504.0,
        2.0**-14,  # smallest positive normal
        -(2.0**-14),
        2.0**-24,  # smallest positive subnormal
        -(2.0**-24),
        2.0**-14 - 2.0**-24,  # largest subnormal
        0.1,
        1.0 / 3.0,
    )
)

# text safe as a string id or value: no NUL, no lone surrogates
_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


def int_ids(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[list[int]]:
    """Unique integer row ids over the whole int64 range (limits included).

    Parameters
    ----------
    min_size, max_size : int, optional
        Bounds on the number of ids.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Lists of distinct Python ints.
    """
    values = st.one_of(
        st.integers(-5, 1000),
        st.integers(int(_INT64.min), int(_INT64.max)),
        st.sampled_from([int(_INT64.min), int(_INT64.max), 0, -1]),
    )
    return st.lists(values, min_size=min_size, max_size=max_size, unique=True)


def str_ids(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[list[str]]:
    """Unique non-empty string row ids (any Unicode except NUL).

    Parameters
    ----------
    min_size, max_size : int, optional
        Bounds on the number of ids.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Lists of distinct strings.
    """
    return st.lists(_TEXT, min_size=min_size, max_size=max_size, unique=True)


def row_ids(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[list[Any]]:
    """Unique row ids, all integers or all strings (a store never mixes them).

    Parameters
    ----------
    min_size, max_size : int, optional
        Bounds on the number of ids.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Lists of distinct ints or of distinct strings.
    """
    return st.one_of(int_ids(min_size, max_size), str_ids(min_size, max_size))


def coord_values(kind: str, n: int) -> st.SearchStrategy[list[Any]]:
    """One coordinate column of ``n`` values of one kind.

    Parameters
    ----------
    kind : {"int", "float", "bool", "str"}
        Value kind. Integers span int64; floats are finite float64.
    n : int
        Number of values (rows).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Lists of length ``n``.

    Raises
    ------
    ValueError
        For an unknown ``kind``.
    """
    elements: dict[str, st.SearchStrategy[Any]] = {
        "int": st.integers(int(_INT64.min), int(_INT64.max)),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
        "str": _TEXT,
    }
    if kind not in elements:
        raise ValueError(f"kind={kind!r}; pass one of {sorted(elements)}")
    return st.lists(elements[kind], min_size=n, max_size=n)


def coord_columns(n: int, max_columns: int = 3) -> st.SearchStrategy[dict[str, list[Any]]]:
    """A dict of coordinate columns (valid names, mixed kinds) for ``n`` rows.

    Parameters
    ----------
    n : int
        Number of rows.
    max_columns : int, optional
        Most columns drawn.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        ``{name: values}`` with names ``c0``, ``c1``... and one kind per column.
    """
    kinds = st.lists(
        st.sampled_from(["int", "float", "bool", "str"]), min_size=0, max_size=max_columns
    )
    return kinds.flatmap(
        lambda ks: st.fixed_dictionaries({f"c{i}": coord_values(k, n) for i, k in enumerate(ks)})
    )


def valid_names(max_size: int = 40) -> st.SearchStrategy[str]:
    """Names the store accepts for variables, coordinates, tables and blobs.

    Parameters
    ----------
    max_size : int, optional
        Longest name drawn (at most :data:`~embstore.store.validation.MAX_NAME_LENGTH`).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Strings of letters, digits, ``_``, ``-`` and ``.``, starting with a
        letter or digit, not reserved.
    """
    size = min(max_size, MAX_NAME_LENGTH) - 1
    pattern = rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{size}}}"
    return st.from_regex(pattern, fullmatch=True).filter(lambda s: s.lower() not in RESERVED_NAMES)


def invalid_names() -> st.SearchStrategy[Any]:
    """Names the store must refuse, one strategy per rule they break.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Empty strings, names with a path separator, NUL or whitespace, names
        starting with ``.``, ``_`` or ``-``, names longer than
        :data:`~embstore.store.validation.MAX_NAME_LENGTH`, reserved file
        names (any case) and non-strings.
    """
    ok = valid_names(20)
    reserved = st.sampled_from(sorted(RESERVED_NAMES)).flatmap(
        lambda r: st.sampled_from([r, r.upper(), r.capitalize()])
    )
    return st.one_of(
        st.just(""),
        st.tuples(ok, st.sampled_from(["/", "\\", "\x00", " ", "\t", "\n"]), ok).map("".join),
        st.tuples(st.sampled_from([".", "_", "-"]), ok).map("".join),
        st.sampled_from([".", "..", "...", "../x", "a/../b"]),
        st.integers(MAX_NAME_LENGTH + 1, MAX_NAME_LENGTH + 50).map(lambda n: "a" * n),
        reserved,
        st.one_of(st.none(), st.integers(), st.floats(), st.binary(min_size=1)),
    )


def float_arrays(
    dtype: Any = np.float32,
    shape: Any = None,
) -> st.SearchStrategy[np.ndarray]:
    """Finite float arrays of ``dtype`` (values over the dtype's whole finite range).

    Parameters
    ----------
    dtype : numpy dtype, optional
        float16, float32 or float64.
    shape : tuple or strategy, optional
        The shape, or a strategy of shapes (default, None: 2-D, sides 1 to 6).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Arrays of ``dtype``; float16 arrays are mixed with
        :data:`FLOAT16_EDGE_VALUES`.
    """
    dt = np.dtype(dtype)
    if shape is None:
        shape = hnp.array_shapes(min_dims=2, max_dims=2, max_side=6)
    width = 8 * dt.itemsize
    elements = st.floats(allow_nan=False, allow_infinity=False, width=width)
    if dt == np.float16:
        elements = st.one_of(elements, float16_edge_values())
    return hnp.arrays(dt, shape, elements=elements)


def float16_edge_values() -> st.SearchStrategy[float]:
    """One of :data:`FLOAT16_EDGE_VALUES`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Python floats exactly representable in float16.
    """
    return st.sampled_from(FLOAT16_EDGE_VALUES)


def float16_arrays(shape: Any) -> st.SearchStrategy[np.ndarray]:
    """float16 arrays of ``shape`` (see :func:`float_arrays`).

    Parameters
    ----------
    shape : tuple or strategy
        The shape or a strategy of shapes.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        float16 arrays rich in edge values.
    """
    return float_arrays(np.float16, shape)
