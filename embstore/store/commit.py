"""Commit records: how rows become visible, without atomic renames.

A writer first writes its data (chunks, ids, coordinates), then a *commit
record*: a small, immutable JSON object named by a sequence number,
``<seq:012d>.json``, under ``_embstore/commits/<region>/``. A reader takes the
highest-numbered record whose checksum verifies. A record cut short by a crash
fails its checksum and the previous record wins. No object is ever renamed or
rewritten, so the protocol works on object stores (S3, GCS) that lack atomic
renames as well as on local disks.

Examples
--------
>>> rec = CommitRecord(region="main", seq=3, start=0, n=10)
>>> CommitRecord.decode(rec.encode()) == rec
True
>>> CommitRecord.decode(rec.encode()[:-5]) is None
True
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from typing import Any

__all__ = ["MAIN_REGION", "CommitRecord", "region_name"]

#: Region name of the single (non-region) appender.
MAIN_REGION = "main"


def region_name(start: int, stop: int) -> str:
    """Return the storage name of a writer region.

    Examples
    --------
    >>> region_name(0, 128)
    'r000000000000-000000000128'
    """
    return f"r{start:012d}-{stop:012d}"


@dataclasses.dataclass
class CommitRecord:
    """What a region has committed.

    Parameters
    ----------
    region : str
        ``"main"`` or a :func:`region_name`.
    seq : int
        Sequence number (strictly increasing per region).
    start : int
        First row position of the region.
    n : int
        Committed rows: positions ``start .. start + n - 1``.
    ragged : dict
        Ragged variable -> committed flat length (tokens).
    coords : list of str
        Coordinate names committed so far.
    time : str
        ISO-8601 UTC time of the commit.
    staged : dict
        Coordinate -> ``{"array": hidden array, "ranges": [[lo, hi], ...]}``:
        a ``set_coords`` made visible by this record but not yet copied into
        the coordinate array (see :mod:`embstore.store.transaction`).
    vis : int
        Sequence number of the last record that changed what readers see
        (-1: this one); records that only finish a staged copy keep it, so
        :attr:`embstore.Store.version_token` does not change.
    """

    region: str
    seq: int
    start: int
    n: int
    ragged: dict[str, int] = dataclasses.field(default_factory=dict)
    coords: list[str] = dataclasses.field(default_factory=list)
    time: str = ""
    staged: dict[str, Any] = dataclasses.field(default_factory=dict)
    vis: int = -1

    @property
    def visible_seq(self) -> int:
        """Sequence number of the last visible change."""
        return self.seq if self.vis < 0 else self.vis

    def encode(self) -> bytes:
        """Serialise to bytes with a trailing SHA-256 checksum of the body."""
        d = dataclasses.asdict(self)
        for k, default in (("staged", {}), ("vis", -1)):  # records without them read as format 1
            if d[k] == default:
                del d[k]
        body = json.dumps(d, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()
        return json.dumps({"body": body, "sha256": digest}).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> CommitRecord | None:
        """Parse bytes written by :meth:`encode`; None if truncated or corrupt."""
        if not raw:
            return None
        try:
            outer = json.loads(raw.decode())
            body = outer["body"]
            if hashlib.sha256(body.encode()).hexdigest() != outer["sha256"]:
                return None
            d: dict[str, Any] = json.loads(body)
            return cls(**d)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    @staticmethod
    def now() -> str:
        """Current UTC time in ISO-8601 format."""
        return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
