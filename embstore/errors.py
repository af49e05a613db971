"""One exception hierarchy for embstore.

Every error raised on purpose by embstore (and by the ``extractors`` package)
derives from :class:`EmbstoreError`. Each class also subclasses the builtin
exception a caller would naturally catch (``KeyError`` for a selection that
matches nothing, ``PermissionError`` for a write to a read-only store, ...),
so ``except KeyError`` keeps working for code that does not know embstore.

Messages name the offending value and say how to fix it.

Examples
--------
>>> from embstore.errors import EmbstoreError, ReadOnlyStoreError
>>> issubclass(ReadOnlyStoreError, PermissionError)
True
>>> issubclass(ReadOnlyStoreError, EmbstoreError)
True
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DTypeMismatchError",
    "DatasetError",
    "DeviceUnavailableError",
    "DistributedTaskError",
    "DuplicateIdError",
    "EmbstoreError",
    "FormatVersionError",
    "IndexError_",
    "MissingDependencyError",
    "NonFiniteError",
    "NotAStoreError",
    "ReadOnlyStoreError",
    "SelectionError",
    "ShapeMismatchError",
    "StoreError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreNotFoundError",
    "UnknownIdError",
    "UnknownVariableError",
    "ValidationError",
]


class EmbstoreError(Exception):
    """Base class of every error embstore raises on purpose."""


class StoreError(EmbstoreError):
    """A problem with a store on disk (or object storage)."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path given to :meth:`embstore.Store.open` does not exist."""


class NotAStoreError(StoreError, ValueError):
    """The path exists but is not an embstore store."""


class StoreExistsError(StoreError, FileExistsError):
    """:meth:`embstore.Store.create` was asked to create a store that exists."""


class ReadOnlyStoreError(StoreError, PermissionError):
    """A write was attempted on a store opened read-only."""


class StoreLockedError(StoreError, RuntimeError):
    """Another process holds the store's append lock."""


class FormatVersionError(StoreError, ValueError):
    """The store was written by a newer, unknown format version."""


class ValidationError(EmbstoreError, ValueError):
    """Input data failed validation; nothing was written."""


class ShapeMismatchError(ValidationError):
    """An array has the wrong shape (or batch length)."""


class DTypeMismatchError(ValidationError, TypeError):
    """An array has a dtype that cannot be stored in the target variable."""


class DuplicateIdError(ValidationError):
    """Row ids repeat within a batch or are already present in the store."""


class NonFiniteError(ValidationError):
    """Data contains NaN or Inf and ``allow_nonfinite`` was not set."""


class UnknownVariableError(ValidationError, KeyError):
    """A variable (or coordinate) name is not part of the store's schema."""

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0]) if self.args else ""


class SelectionError(EmbstoreError, KeyError):
    """A selection matched nothing, or named an unknown coordinate."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownIdError(SelectionError, ValidationError):
    """An id is not committed in the store (raised by every id lookup: read, set_coords, ragged rows)."""


class CheckpointError(EmbstoreError, ValueError):
    """A model checkpoint could not be loaded (missing/unexpected keys, bad file)."""


class MissingDependencyError(EmbstoreError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class DeviceUnavailableError(EmbstoreError, RuntimeError):
    """The requested compute device (e.g. ``cuda``) is not available."""


class DatasetError(EmbstoreError, ValueError):
    """An input dataset (image list, annotations file) is malformed."""


class IndexError_(EmbstoreError, RuntimeError):
    """A search index is missing, stale or incompatible with the request."""


class DistributedTaskError(EmbstoreError, RuntimeError):
    """Tasks of a distributed (Dask) run failed for good after their retries.

    Rows they committed are kept; re-running the same command resumes.
    """


class DamagedStoreError(StoreError, OSError):
    """Committed data or a commit record is missing, cut short or fails its checksum.

    Nothing is deleted because of it: run ``embstore check STORE`` to see
    what is damaged and ``embstore repair STORE`` to roll back to the last
    valid commit.
    """


__all__ += ["DamagedStoreError"]


class InvalidNameError(ValidationError):
    """A variable, coordinate, table or blob name breaks the naming rule.

    The message names the value and the rule (see
    :func:`embstore.store.validation.check_name`).
    """


class DiskFullError(StoreError, OSError):
    """The disk (or quota) filled up while writing; committed rows are intact.

    Rows buffered since the last commit were not committed; free space and
    append them again (or resume the extraction).
    """


__all__ += ["DiskFullError", "InvalidNameError"]
