"""Ragged per-row arrays stored without padding: the layouts and :class:`RaggedAccess`, their reader.

A ragged variable keeps every row's values as consecutive *token rows* of one
flat array ``(<var>_token, F...)`` plus, along the row dimension, the offset of
each row's first token (``<var>_offset``), its token count (``<var>_n``) and
its grid size (``<var>_h``, ``<var>_w``; ``-1`` when unknown).

Two layouts are supported:

``tokens``
    declared dims like ``("token", "hidden")``; a row is ``[n_i, F]``.
``map``
    declared dims like ``("channel", "y", "x")``; a row is ``[F, h_i, w_i]``,
    stored transposed as ``h_i * w_i`` tokens of ``F`` values (row-major over
    ``(y, x)``), so that the layout matches ``encoder_output``.

Examples
--------
>>> import numpy as np
>>> fmap = np.arange(2 * 3 * 4).reshape(2, 3, 4)
>>> tok, h, w = to_tokens(fmap, "map")
>>> tok.shape, h, w
((12, 2), 3, 4)
>>> bool((from_tokens(tok, "map", h, w) == fmap).all())
True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SelectionError, UnknownVariableError
from .schema import ragged_layout

if TYPE_CHECKING:
    import pandas as pd

    from .reader import StoreReader

__all__ = ["RAGGED_SUFFIXES", "RaggedAccess", "flat_dims", "from_tokens", "pad_rows", "to_tokens"]

#: Row arrays kept per ragged variable ``var``: ``var + suffix``.
RAGGED_SUFFIXES = ("_offset", "_n", "_h", "_w")


def flat_dims(var: str, dims: Sequence[str], layout: str) -> tuple[str, ...]:
    """Dims of the flat storage array of a ragged variable.

    Examples
    --------
    >>> flat_dims("enc", ("token", "hidden"), "tokens")
    ('enc_token', 'hidden')
    >>> flat_dims("bb", ("channel", "y", "x"), "map")
    ('bb_token', 'channel')
    """
    if layout == "map":
        return (f"{var}_token", dims[0])
    return (f"{var}_{dims[0]}",) + tuple(dims[1:])


def to_tokens(arr: np.ndarray, layout: str) -> tuple[np.ndarray, int, int]:
    """Flatten one row to token rows; return ``(tokens, h, w)`` (``-1`` if unknown)."""
    if layout == "map":
        f, h, w = arr.shape
        return np.ascontiguousarray(arr.reshape(f, h * w).T), int(h), int(w)
    return arr, -1, -1


def from_tokens(tokens: np.ndarray, layout: str, h: int, w: int) -> np.ndarray:
    """Inverse of :func:`to_tokens`."""
    if layout == "map":
        return np.ascontiguousarray(tokens.T.reshape(tokens.shape[1], h, w))
    return tokens


def pad_rows(
    rows: Sequence[np.ndarray], layout: str, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pad per-row arrays to a common size.

    Parameters
    ----------
    rows : sequence of numpy.ndarray
        ``[n_i, F...]`` (``tokens``) or ``[F, h_i, w_i]`` (``map``) arrays.
    layout : str
        ``"tokens"`` or ``"map"``.
    fill : float
        Value of padded positions.

    Returns
    -------
    padded : numpy.ndarray
        ``[N, max_n, F...]`` or ``[N, F, max_h, max_w]``.
    mask : numpy.ndarray of bool
        ``[N, max_n]`` or ``[N, max_h, max_w]``; True where real values are.

    Examples
    --------
    >>> import numpy as np
    >>> p, m = pad_rows([np.ones((2, 3)), np.ones((1, 3))], "tokens")
    >>> p.shape, m.tolist()
    ((2, 2, 3), [[True, True], [True, False]])
    """
    if not rows:
        raise ValueError("no rows to pad")
    dtype = rows[0].dtype
    n = len(rows)
    if layout == "map":
        f = rows[0].shape[0]
        mh = max(r.shape[1] for r in rows)
        mw = max(r.shape[2] for r in rows)
        out = np.full((n, f, mh, mw), fill, dtype=dtype)
        mask = np.zeros((n, mh, mw), dtype=bool)
        for i, r in enumerate(rows):
            out[i, :, : r.shape[1], : r.shape[2]] = r
            mask[i, : r.shape[1], : r.shape[2]] = True
        return out, mask
    mn = max(r.shape[0] for r in rows)
    out = np.full((n, mn) + rows[0].shape[1:], fill, dtype=dtype)
    mask = np.zeros((n, mn), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
        mask[i, : r.shape[0]] = True
    return out, mask


class RaggedAccess:
    """Reads of ragged variables over a store's committed rows.

    Parameters
    ----------
    reader : StoreReader
        The store's reader (ids, positions and the backend).
    """

    def __init__(self, reader: StoreReader) -> None:
        self._reader = reader

    def layout(self, var: str) -> str:
        """Layout of ragged variable ``var`` (raises :class:`UnknownVariableError` if it is not one)."""
        ragged = self._reader.schema.ragged
        if var not in ragged:
            raise UnknownVariableError(
                f"no ragged variable {var!r}; ragged variables: {sorted(ragged)}"
            )
        return ragged_layout(ragged[var])

    def get(self, var: str, id: Any) -> np.ndarray:
        """One row of a ragged variable in its declared layout.

        Parameters
        ----------
        var : str
            Ragged variable name.
        id : int or str
            Row id.

        Returns
        -------
        numpy.ndarray
            ``[n_i, F...]`` for ``("token", ...)`` variables, ``[F, h_i, w_i]``
            for ``(F, "y", "x")`` variables.

        Examples
        --------
        >>> from embstore import Store
        >>> import numpy as np, tempfile, os
        >>> st = Store.create(os.path.join(tempfile.mkdtemp(), "r.zarr"),
        ...                   ragged={"fmap": ("channel", "y", "x")}, dtypes={"fmap": "float32"})
        >>> st.append([1], {"fmap": [np.ones((2, 3, 4))]})
        >>> st.get_ragged("fmap", 1).shape
        (2, 3, 4)
        """
        layout = self.layout(var)
        be = self._reader.backend
        p = int(self._reader.locate([id])[0])
        off, n, h, w = (int(be.read(var + s, slice(p, p + 1))[0]) for s in RAGGED_SUFFIXES)
        return from_tokens(be.read(var, slice(off, off + n)), layout, h, w)

    def hw(self, var: str) -> pd.DataFrame:
        """Per-row ``h``, ``w`` and ``n``, indexed by id (see :meth:`embstore.Store.ragged_hw`)."""
        import pandas as pd

        self.layout(var)
        r = self._reader
        ids = r.ids
        return pd.DataFrame(
            {k: r.read_rows(var + "_" + k) for k in ("h", "w", "n")},
            index=pd.Index(ids, name=r.schema.id_name),
        )

    def iter(self, var: str, ids: Sequence[Any] | None = None) -> Iterator[tuple[Any, np.ndarray]]:
        """Yield ``(id, row)`` (see :meth:`embstore.Store.iter_ragged`)."""
        layout = self.layout(var)
        r = self._reader
        id_list = list(r.ids.tolist() if ids is None else ids)
        pos = r.locate(id_list)
        offs, ns, hs, ws = (r.read_rows_at(var + s, pos) for s in RAGGED_SUFFIXES)
        for i, id_ in enumerate(id_list):
            t = r.backend.read(var, slice(int(offs[i]), int(offs[i] + ns[i])))
            yield id_, from_tokens(t, layout, int(hs[i]), int(ws[i]))

    def padded(
        self, var: str, ids: Sequence[Any] | None = None, fill: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of a ragged variable padded to a common size.

        Parameters
        ----------
        var : str
            Ragged variable name.
        ids : sequence, optional
            Rows (default: every committed row).
        fill : float
            Value of padded positions.

        Returns
        -------
        padded : numpy.ndarray
            ``[N, max_n, F...]`` or ``[N, F, max_h, max_w]``.
        mask : numpy.ndarray of bool
            True at real (not padded) positions.
        """
        layout = self.layout(var)
        rows = [row for _i, row in self.iter(var, ids)]
        if not rows:
            raise SelectionError(f"no rows to pad for {var!r}; the store or the id list is empty")
        return pad_rows(rows, layout, fill)
