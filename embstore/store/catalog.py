"""The catalog: which stored object holds each table and blob (copy-on-write).

Tables and blobs are never rewritten in place. A new version is written
under a new physical name (``<name>@<pid>-<token>``), then one new catalog
record (an immutable, checksummed JSON object like a commit record, under
the pseudo-region ``_catalog`` of ``_embstore/commits/``) maps the name to
it, and only then is the old version deleted. A writer killed at any point
leaves the old catalog (old version visible) or the new one (new version
visible); what it wrote without committing is an orphan that
:func:`embstore.store.integrity.repair` (and the next writer taking over the
dead writer's lock) removes.

Several writers (region writers of one store) may update the catalog at
once: each record is created exclusively with the next sequence number; a
writer that loses the race re-reads the newest record and applies its change
again (optimistic concurrency), so no update is lost.

Blob entries carry the SHA-256 of the bytes: a blob that was changed on disk
raises :class:`~embstore.errors.DamagedStoreError` when read instead of
returning wrong bytes (e.g. a tampered FAISS index).

Stores written before the catalog existed have none: their tables and blobs
are found under their own names (``_tables/<name>``, ``_blobs/<name>``).

Examples
--------
>>> cat = Catalog(seq=2, tables={"people": "people@1-ab"})
>>> Catalog.decode(cat.encode()) == cat
True
>>> Catalog.decode(cat.encode()[:-3]) is None
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import DamagedStoreError, StoreError

__all__ = ["CATALOG", "Catalog", "load_catalog", "owner_pid", "physical_name", "update_catalog"]

#: Pseudo-region under ``_embstore/commits/`` that holds catalog records.
CATALOG = "_catalog"
_KEEP = 3


def physical_name(name: str) -> str:
    """A fresh physical name for a new version of ``name``.

    Examples
    --------
    >>> physical_name("people").startswith("people@")
    True
    """
    return f"{name}@{os.getpid()}-{uuid.uuid4().hex[:12]}"


def owner_pid(physical: str) -> int | None:
    """Process id encoded in a physical name (None for a legacy name).

    Examples
    --------
    >>> owner_pid("people@123-abc"), owner_pid("people")
    (123, None)
    """
    if "@" not in physical:
        return None
    tail = physical.rsplit("@", 1)[1].split("-", 1)[0]
    return int(tail) if tail.isdigit() else None


@dataclasses.dataclass
class Catalog:
    """One catalog record.

    Parameters
    ----------
    seq : int
        Sequence number (-1: no catalog record yet, a legacy store).
    tables : dict
        Table name -> physical table name.
    blobs : dict
        Blob name -> ``{"key": physical name, "sha256": hex digest, "size": bytes}``.
    """

    seq: int = -1
    tables: dict[str, str] = dataclasses.field(default_factory=dict)
    blobs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        """Serialise with a SHA-256 checksum of the body."""
        body = json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))
        return json.dumps(
            {"body": body, "sha256": hashlib.sha256(body.encode()).hexdigest()}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Catalog | None:
        """Parse :meth:`encode` output; None when cut short or corrupt."""
        if not raw:
            return None
        try:
            outer = json.loads(raw.decode())
            body = outer["body"]
            if hashlib.sha256(body.encode()).hexdigest() != outer["sha256"]:
                return None
            return cls(**json.loads(body))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def copy(self) -> Catalog:
        """A deep copy."""
        return Catalog(self.seq, dict(self.tables), {k: dict(v) for k, v in self.blobs.items()})


def load_catalog(backend: Any, strict: bool = True) -> Catalog:
    """The newest valid catalog record (``seq=-1`` when the store has none).

    Parameters
    ----------
    backend : Backend
        The store's backend.
    strict : bool
        Raise when the newest record is damaged (otherwise fall back to the
        newest valid one, as :func:`~embstore.store.integrity.repair` does).

    Raises
    ------
    DamagedStoreError
        The newest catalog record is unreadable (``strict``).
    """
    seqs = backend.list_records(CATALOG)
    for i, seq in enumerate(reversed(seqs)):
        cat = Catalog.decode(backend.read_record(CATALOG, seq))
        if cat is not None:
            return cat
        if strict and i == 0:
            raise DamagedStoreError(
                f"catalog record {seq} of {backend.path!r} (tables and blobs) is unreadable; nothing was "
                "deleted. Run `embstore repair` to roll back to the last valid record"
            )
    return Catalog()


def update_catalog(
    backend: Any, change: Callable[[Catalog], None], attempts: int = 50
) -> tuple[Catalog, Catalog]:
    """Apply ``change`` to the newest catalog and commit it as a new record.

    Parameters
    ----------
    backend : Backend
        The store's backend.
    change : callable
        ``change(catalog)`` edits the catalog in place; called again on a
        fresh copy if another writer committed first.
    attempts : int
        Retries when other writers keep winning.

    Returns
    -------
    (Catalog, Catalog)
        The committed catalog and the one it replaced.
    """
    for _ in range(attempts):
        old = load_catalog(backend)
        new = old.copy()
        change(new)
        listed = backend.list_records(CATALOG)
        new.seq = max([old.seq] + listed) + 1
        try:
            backend.write_record(CATALOG, new.seq, new.encode())
        except FileExistsError:
            continue  # another writer committed this number first: redo on top of theirs
        backend.flush()
        for seq in listed:
            if seq <= new.seq - _KEEP:
                backend.delete_record(CATALOG, seq)
        return new, old
    raise StoreError(
        f"could not commit a catalog record to {backend.path!r}: other writers kept committing; retry"
    )
