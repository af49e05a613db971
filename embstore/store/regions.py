"""Region claims: overlapping writers of one preallocated store are refused.

A region writer's claim is its append lock, ``_embstore/locks/<region>.lock``,
created exclusively (``O_EXCL`` locally, a conditional put on object
storage), so a claim is recorded atomically. After taking its own lock, a
writer lists the other claims; if one overlaps its rows and its owner is
alive, it gives its lock back and raises
:class:`~embstore.errors.StoreLockedError`. Two overlapping writers that
start at the same moment both see each other and both refuse: never both
write.

The plain (``"main"``) appender of a preallocated store counts as
overlapping every region: its ``set_coords`` may touch any row, and its
coordinate arrays are shared with the regions. So a plain writer and a
region writer never run at once on one store; open the plain writer after
the region writers have closed (as ``extract_distributed`` does).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ..errors import StoreLockedError, ValidationError
from .catalog import CATALOG
from .commit import MAIN_REGION, region_name
from .lock import pid_alive

if TYPE_CHECKING:
    from .backends import Backend
    from .schema import Schema

__all__ = ["check_claims", "check_region", "region_bounds"]


def region_bounds(region: str, n_prealloc: int) -> tuple[int, float]:
    """Rows a region writer may touch (``main``: all of them).

    Examples
    --------
    >>> region_bounds("r000000000000-000000000032", 64)
    (0, 32)
    >>> region_bounds("main", 64)
    (0, inf)
    """
    if region == MAIN_REGION:
        return 0, float("inf")
    a, b = region[1:].split("-")
    return int(a), int(b)


def _live(owner: dict[str, Any] | None, force: bool = False) -> bool:
    if owner is None:
        return True  # being written right now
    if owner.get("host") != socket.gethostname():
        return not force  # cannot tell: assume alive, unless the caller vouches (force=True)
    try:
        return pid_alive(int(owner.get("pid", -1)))
    except (TypeError, ValueError):
        return True


def check_claims(backend: Any, region: str, n_prealloc: int, force: bool = False) -> None:
    """Raise StoreLockedError if a live writer holds an overlapping claim.

    Parameters
    ----------
    backend : Backend
        The store's backend (with ``list_locks``).
    region : str
        The claim just taken (``"main"`` or a region name).
    n_prealloc : int
        Preallocated rows of the store.
    force : bool
        The caller vouches that writers on other hosts are gone (their
        claims are ignored); claims of live processes on this host still
        refuse.
    """
    lister = getattr(backend, "list_locks", None)
    if lister is None:
        return
    lo, hi = region_bounds(region, n_prealloc)
    for other in lister():
        if other == region or not (other == MAIN_REGION or other.startswith("r")):
            continue
        try:
            a, b = region_bounds(other, n_prealloc)
        except ValueError:
            continue
        if not (a < hi and lo < b):
            continue
        owner = backend.make_lock(other)._owner()
        if _live(owner, force):
            what = "the plain appender" if other == MAIN_REGION else f"region ({a}, {b})"
            raise StoreLockedError(
                f"store {backend.path!r}: {what} is open for writing by {owner}, and it overlaps "
                f"{'every region' if region == MAIN_REGION else f'rows {lo}..{hi}'} of this writer. Close it "
                "first; use disjoint regions for parallel writers, and open the plain writer only after the "
                "region writers have closed"
            )


def check_region(
    schema: Schema, backend: Backend, region: tuple[int, int], mode: str
) -> tuple[int, int]:
    """Validate the ``region=`` of :meth:`embstore.Store.open`; return it as ints.

    Raises
    ------
    ValidationError
        The backend has no regions, the mode is not a writing one, or the
        region is malformed, out of bounds, not chunk-aligned or overlaps a
        region already written.
    """
    if not backend.supports_regions:
        raise ValidationError(
            f"region={region}: the {backend.kind} backend has no region writers; use Zarr"
        )
    if mode != "a":
        raise ValidationError("region= is only for writers: pass mode='a'")
    try:
        start, stop = (int(region[0]), int(region[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValidationError(f"region={region!r} must be a (start, stop) pair of ints") from exc
    cr = schema.chunk_rows or 1
    n = schema.n_prealloc
    if not (0 <= start < stop <= n):
        raise ValidationError(
            f"region={region} must satisfy 0 <= start < stop <= n_rows={n} (preallocate with Store.create(n_rows=...))"
        )
    if start % cr or (stop % cr and stop != n):
        raise ValidationError(
            f"region={region} is not aligned to chunk_rows={cr}: use multiples of {cr}, "
            f"e.g. ({start - start % cr}, {min(n, stop + (-stop) % cr)})"
        )
    for other in backend.list_regions():
        if other in (MAIN_REGION, CATALOG) or other == region_name(start, stop):
            continue
        a, b = (int(x) for x in other[1:].split("-"))
        if a < stop and start < b:
            raise ValidationError(
                f"region={region} overlaps region ({a}, {b}) already written; use disjoint regions"
            )
    return start, stop
