"""Provenance helpers shared by every extractor (checkpoint hashes)."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, recorded in a store's attributes as provenance.

    Parameters
    ----------
    path : str or path-like
        File to hash (a checkpoint, usually).
    block : int, default 1 MiB
        Read size in bytes.

    Returns
    -------
    str
        64 hexadecimal characters.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(delete=False) as f:
    ...     _ = f.write(b"abc")
    >>> file_sha256(f.name)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
