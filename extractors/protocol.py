"""The extractor protocol: what :func:`extractors.pipeline.run_extraction` drives.

Every extractor (DETR, face, SigLIP, ``extract model``, a user's
:class:`~extractors.base.HookExtractor`) is run by the same pipeline and the
same Dask region tasks, which know nothing but this module:

:class:`Extractor`
    ``variables``, ``ragged``, ``dtypes`` (the store schema), ``preprocess``
    (per sample, in DataLoader workers), ``collate`` (list of samples ->
    batch) and ``extract_batch(batch) -> Batch`` (on the compute thread).
    An optional ``finish_batch(batch) -> Batch`` runs on the writer thread
    (device-to-host work such as cropping padded maps, overlapped with the
    next forward pass).
:class:`Batch`
    The result of one forward pass: ``data`` (one array or tensor per
    variable, or a list of per-row arrays for ragged variables), ``coords``
    (per-row coordinates the model computed, e.g. DETR's input size) and
    ``ragged_hw`` (the ``(h, w)`` grid of token variables). It reads like the
    mapping ``data`` (``batch["embedding"]``), so code that indexed the old
    dict results keeps working.
:class:`Record`
    One row to extract: ``image_id`` (the row id), ``path`` and ``coords``.
    :class:`extractors.datasets.ImageRecord` is one; a record may also
    define ``load() -> (image | None, reason | None, coords)`` to produce its
    own input (a SigLIP panoptic crop does), see :func:`load_record`.

An extractor whose own API differs (DETR's ``DetrExtractor``) offers
``pipeline_extractor()`` returning an adapter that implements the protocol;
:func:`as_pipeline_extractor` calls it, so the pipeline imports no model.

Examples
--------
>>> import numpy as np
>>> b = Batch({"embedding": np.ones((2, 3))}, coords={"score": np.array([0.5, 0.7])})
>>> sorted(b), b["embedding"].shape, len(b)
(['embedding'], (2, 3), 1)
>>> b.with_data(embedding=np.zeros((2, 3)))["embedding"].sum()
np.float64(0.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from embstore.errors import ValidationError

__all__ = [
    "Batch",
    "Extractor",
    "Record",
    "as_batch",
    "as_pipeline_extractor",
    "duplicate_id_error",
    "load_record",
]


@dataclass(frozen=True)
class Batch(Mapping[str, Any]):
    """The output of one forward pass, as the writer stores it.

    Parameters
    ----------
    data : mapping of str to array, tensor or list of arrays
        One entry per variable, leading axis = rows of the batch; ragged
        variables as a list of per-row arrays. Tensors may stay on the
        device: the writer thread copies them.
    coords : mapping of str to array, optional
        Per-row coordinates computed by the model, stored with the rows
        (beside each record's own ``coords``).
    ragged_hw : mapping of str to list of (int, int), optional
        For ragged ``("token", F)`` variables whose tokens form a grid: the
        ``(h, w)`` of each row (see :meth:`embstore.Store.append`).

    Notes
    -----
    A :class:`Batch` is a read-only mapping over ``data``: ``batch[name]``,
    ``list(batch)``, ``batch.items()``.
    """

    data: Mapping[str, Any]
    coords: Mapping[str, Any] = field(default_factory=dict)
    ragged_hw: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def with_data(self, **updates: Any) -> Batch:
        """A copy with some variables replaced or added.

        Parameters
        ----------
        **updates
            ``name=value`` entries of :attr:`data`.

        Returns
        -------
        Batch
        """
        return dataclasses.replace(self, data={**self.data, **updates})


def as_batch(out: Batch | Mapping[str, Any]) -> Batch:
    """``out`` as a :class:`Batch` (a plain mapping becomes its ``data``).

    Parameters
    ----------
    out : Batch or mapping
        What an ``extract_batch`` returned.

    Returns
    -------
    Batch

    Raises
    ------
    ValidationError
        ``out`` is neither.

    Examples
    --------
    >>> as_batch({"x": [1]}).data
    {'x': [1]}
    """
    if isinstance(out, Batch):
        return out
    if isinstance(out, Mapping):
        return Batch(dict(out))
    raise ValidationError(
        f"extract_batch returned {type(out).__name__}; return an extractors.protocol.Batch "
        "(or a dict of variable -> array)"
    )


@runtime_checkable
class Record(Protocol):
    """One row to extract (:class:`extractors.datasets.ImageRecord` is one).

    Attributes
    ----------
    image_id : int or str
        The row id in the store (unique in a dataset).
    path : str
        The file the row comes from (named in skip reasons).
    coords : dict
        Coordinates stored with the row.
    """

    image_id: Any
    path: str
    coords: dict[str, Any]


@runtime_checkable
class Extractor(Protocol):
    """What :func:`extractors.pipeline.run_extraction` needs of an extractor.

    Attributes
    ----------
    variables, ragged, dtypes : dict
        Dense dims, ragged dims and storage dtypes, as
        :meth:`embstore.Store.create` takes them.
    preprocess : callable or None
        Picklable ``PIL RGB image -> sample``, run in DataLoader workers.
    collate : callable or None
        ``list of samples -> batch`` (``None``: the list itself).

    Notes
    -----
    Optional: ``finish_batch(batch: Batch) -> Batch`` on the writer thread,
    ``device`` (pins host memory for CUDA), ``to(device)``.
    """

    variables: Mapping[str, tuple[str, ...]]
    ragged: Mapping[str, tuple[str, ...]]
    dtypes: Mapping[str, str]
    preprocess: Callable[[Any], Any] | None
    collate: Callable[[list[Any]], Any] | None

    def extract_batch(self, batch: Any) -> Batch:
        """Run one collated batch (see :class:`Batch`)."""
        ...


def load_record(
    record: Any, preprocess: Callable[[Any], Any] | None
) -> tuple[Any, str | None, dict[str, Any]]:
    """Load and preprocess one record, never raising for a bad input.

    A record with a ``load()`` method produces its own input (``(image |
    None, reason | None, coords)``); any other record is an image file read
    by :func:`extractors.images.load_image`, whose ``height``/``width`` are
    returned as coordinates.

    Parameters
    ----------
    record : Record
        The row to load.
    preprocess : callable or None
        The extractor's ``preprocess``.

    Returns
    -------
    sample : object or None
        The preprocessed input, or ``None`` when the record is skipped.
    reason : str or None
        Why it is skipped (``"missing file: ..."``, ...).
    coords : dict
        Coordinates learned while loading (image size).
    """
    loader = getattr(record, "load", None)
    coords: dict[str, Any]
    if callable(loader):
        image, reason, coords = loader()
    else:
        from .images import load_image

        image, reason = load_image(record.path)
        coords = {} if image is None else {"height": image.height, "width": image.width}
    if image is None:
        return None, reason or f"unreadable: {record.path}", {"height": 0, "width": 0}
    if preprocess is None:
        return image, None, coords
    try:
        return preprocess(image), None, coords
    except Exception as exc:  # a bad image must not end a long run
        return None, f"preprocess failed: {record.path}: {exc}", coords


def duplicate_id_error(record: Any) -> ValidationError:
    """The error for a record whose id occurs twice in a dataset.

    Parameters
    ----------
    record : Record
        The second record with that id.

    Returns
    -------
    ValidationError
        To raise.
    """
    return ValidationError(
        f"image id {record.image_id!r} occurs twice in the dataset ({record.path}); "
        "ids must be unique: use ids='path' or fix the input list"
    )


def as_pipeline_extractor(extractor: Any) -> Any:
    """Return ``extractor`` in the pipeline protocol.

    Parameters
    ----------
    extractor : object
        An :class:`Extractor` (returned as is), or an object with a
        ``pipeline_extractor()`` method returning one (e.g.
        :class:`extractors.detr.DetrExtractor`).

    Returns
    -------
    Extractor

    Raises
    ------
    ValidationError
        Neither is implemented.

    Examples
    --------
    >>> as_pipeline_extractor(object())
    Traceback (most recent call last):
    ...
    embstore.errors.ValidationError: object has no extract_batch(batch) ...
    """
    adapt = getattr(extractor, "pipeline_extractor", None)
    if callable(adapt):
        return adapt()
    if not callable(getattr(extractor, "extract_batch", None)):
        raise ValidationError(
            f"{type(extractor).__name__} has no extract_batch(batch) and no pipeline_extractor(); "
            "pass a HookExtractor, a DetrExtractor, or an object implementing "
            "extractors.protocol.Extractor"
        )
    return extractor
