"""Zarr v3 store on an fsspec URL (:class:`FsspecZarrBackend`): ``memory://``, ``s3://``, ``gs://`` ...

What the commit protocol gets from object storage (see
:mod:`embstore.store.fsspec_utils`):

- **exclusive create** by one conditional request (``If-None-Match: *``,
  sent by s3fs for ``pipe_file(mode="create")``; honoured by S3, MinIO,
  Ceph, moto and fsspec's memory filesystem): commit records and lock
  objects are created whole and never overwrite one another. Filesystems
  without it fall back to check-then-write (best effort);
- **no rename**: every object is written whole by one request, so nothing
  relies on renaming; metadata goes through zarr, whose single-object PUTs
  are atomic on object stores;
- listings are refreshed on every call (fsspec caches them per process).

There is no raw chunk fast path and no temporary files.
"""

from __future__ import annotations

from typing import Any

from ...errors import NotAStoreError, StoreNotFoundError
from ..fsspec_utils import ObjectLock, fresh_exists, list_names, put_new
from .zarr_backend import ZarrBackend

__all__ = ["FsspecZarrBackend"]


def _fs(path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return fs, str(root).rstrip("/")


class FsspecZarrBackend(ZarrBackend):
    """Zarr v3 group on an fsspec filesystem (see the module docstring for its guarantees)."""

    atomic_rename = False

    def __init__(
        self, path: str, group: Any, storage_options: dict[str, Any] | None, mode: str = "a"
    ) -> None:
        super().__init__(path, group, storage_options, mode)
        self.fs, self.root = _fs(path, self.storage_options)

    # -- lifecycle ---------------------------------------------------------
    @classmethod
    def exists(cls, path: str, storage_options: dict[str, Any] | None) -> bool:
        fs, root = _fs(path, storage_options)
        return fresh_exists(fs, root)

    @classmethod
    def _remove_existing(cls, path: str, storage_options: dict[str, Any] | None) -> None:
        fs, root = _fs(path, storage_options)
        fs.rm(root, recursive=True)

    @classmethod
    def open(
        cls, path: str, mode: str, storage_options: dict[str, Any] | None
    ) -> FsspecZarrBackend:
        if not cls.exists(path, storage_options):
            raise StoreNotFoundError(
                f"no store at {path!r}; check the path or create one with Store.create"
            )
        try:
            group = cls._open_group(path, "r" if mode == "r" else "r+", storage_options)
        except Exception as exc:  # zarr raises several types for "not a group"
            raise NotAStoreError(
                f"{path!r} exists but is not a Zarr v3 embstore store ({type(exc).__name__}: {exc}); "
                "pass the path of a store made by Store.create"
            ) from exc
        return cls(path, group, storage_options, mode)

    # -- commit records ----------------------------------------------------
    def _list_dir(self, path: str) -> list[str]:
        return list_names(self.fs, path)

    def read_record(self, region: str, seq: int) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._rec_path(region, seq)))
        except OSError:
            return None

    def write_record(self, region: str, seq: int, payload: bytes) -> None:
        put_new(self.fs, self._rec_path(region, seq), payload)  # never overwrite an existing record

    def delete_record(self, region: str, seq: int) -> None:
        try:
            self.fs.rm_file(self._rec_path(region, seq))
        except OSError:
            pass

    def _remove_tree(self, key: str) -> None:
        try:
            self.fs.rm(f"{self.root}/{key}", recursive=True)
        except FileNotFoundError:
            pass

    # -- locking -----------------------------------------------------------
    def make_lock(self, region: str) -> Any:
        return ObjectLock(
            self.fs, self._lock_path(region), f"store {self.path!r} (region {region})"
        )
