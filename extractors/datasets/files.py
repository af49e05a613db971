"""Generic inputs: image folders and text lists; finding annotated files on disk.

Image ids
---------
``ids="auto"`` (folders and annotation files): the integer formed by the
trailing digits of each file's stem (``000000000139.jpg`` -> 139,
``sa_1234.jpg`` -> 1234) when every file has such digits and they are unique,
else the file name relative to the image root (a string). COCO JSON files
carry their own integer ids, which are used. Text lists are streamed and use
the 0-based line number among non-empty lines (``ids="index"``), which is
stable as long as the list is only appended to; ``ids="path"`` uses the line
itself.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from embstore.errors import DatasetError

from ..images import IMAGE_EXTENSIONS
from .records import ImageDataset, ImageRecord

__all__ = [
    "folder_dataset",
    "list_dataset",
]

logger = logging.getLogger(__name__)

_N_EXAMPLES = 5


def ids_from_names(names: Sequence[str]) -> list[Any]:
    """Integer ids from trailing stem digits when unique, else the names."""
    ids: list[Any] = []
    for name in names:
        m = re.search(r"(\d+)$", Path(name).stem)
        if m is None:
            return list(names)
        ids.append(int(m.group(1)))
    if len(set(ids)) != len(ids):
        return list(names)
    return ids


def _file_key(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of what ``path`` points to (None if it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def scan_images(root: Path, extensions: Sequence[str]) -> list[Path]:
    """Image files under ``root``, sorted, each real file once.

    Symlinked directories are followed, but a directory already visited (a
    symlink loop such as ``a/loop -> ..``, or two links to one folder) is
    entered only once, and a file reached through several paths (symlinks,
    hard links) is listed once, at the first path in sorted walk order.
    """
    exts = {e.lower() for e in extensions}
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    root_key = _file_key(str(root))
    if root_key is not None:
        seen_dirs.add(root_key)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            key = _file_key(os.path.join(dirpath, d))
            if key is None or key in seen_dirs:
                continue  # a loop back to a visited directory, or a second link to one
            seen_dirs.add(key)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in exts:
                path = os.path.join(dirpath, name)
                key = _file_key(path)
                if key is not None:
                    if key in seen_files:
                        continue
                    seen_files.add(key)
                found.append(Path(path))
    return found


def folder_dataset(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ids: str = "auto",
) -> ImageDataset:
    """All images under ``root`` (recursive, sorted by relative path).

    Parameters
    ----------
    root : str or path-like
        Directory to scan (symlinked directories are followed; symlink loops
        are detected and every file is listed once).
    extensions : sequence of str
        File extensions to include (case-insensitive).
    ids : {"auto", "path"}
        ``"auto"``: integer ids from trailing stem digits when unique, else
        the relative path; ``"path"``: always the relative path.

    Returns
    -------
    ImageDataset
        Coordinates: ``file_name`` (path relative to ``root``).

    Raises
    ------
    DatasetError
        ``root`` is not a directory or holds no images.

    Examples
    --------
    >>> import tempfile
    >>> folder_dataset(tempfile.mkdtemp())  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    embstore.errors.DatasetError: no images ...
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"image folder {str(base)!r} does not exist or is not a directory")
    files = scan_images(base, extensions)
    if not files:
        raise DatasetError(
            f"no images ({', '.join(extensions)}) found under {str(base)!r}; check the path "
            "or pass a text file listing image paths"
        )
    rel = [f.relative_to(base).as_posix() for f in files]
    if ids == "auto":
        row_ids = ids_from_names(rel)
    elif ids == "path":
        row_ids = rel
    else:
        raise DatasetError(f"ids={ids!r} is unknown for a folder; use 'auto' or 'path'")
    table = pd.DataFrame(
        {"path": [str(f) for f in files], "file_name": rel},
        index=pd.Index(row_ids, name="image_id"),
    )
    return ImageDataset.from_table(table, kind="folder", source=str(base))


def list_dataset(
    list_file: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    ids: str = "index",
) -> ImageDataset:
    """Images named in a text file, one path per line, streamed.

    Empty lines and lines starting with ``#`` are ignored. Nothing but a line
    count is done up front, so lists with millions of lines cost no memory.

    Parameters
    ----------
    list_file : str or path-like
        The text file.
    root : str or path-like, optional
        Relative paths are resolved against it (default: the current
        directory, as the old scripts did).
    ids : {"index", "path"}
        ``"index"``: 0-based position among the non-empty lines (int);
        ``"path"``: the line itself (str).

    Returns
    -------
    ImageDataset
        Coordinates: ``file_name`` (the line as written).

    Raises
    ------
    DatasetError
        The file does not exist.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "list.txt")
    >>> _ = open(p, "w").write("a.jpg\\n\\nb.jpg\\n")
    >>> [(r.image_id, r.coords["file_name"]) for r in list_dataset(p)]
    [(0, 'a.jpg'), (1, 'b.jpg')]
    """
    path = Path(list_file)
    if not path.is_file():
        raise DatasetError(
            f"image list {str(path)!r} does not exist; pass a folder or a text file of paths"
        )
    if ids not in ("index", "path"):
        raise DatasetError(f"ids={ids!r} is unknown for a text list; use 'index' or 'path'")
    base = Path(root) if root is not None else None

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line

    n = sum(1 for _ in lines())

    def records() -> Iterator[ImageRecord]:
        for i, line in enumerate(lines()):
            full = str(base / line) if base is not None and not os.path.isabs(line) else line
            yield ImageRecord(i if ids == "index" else line, full, {"file_name": line})

    return ImageDataset(records, length=n, kind="list", source=str(path))


def _resolve_files(names: Iterable[str], root: Path) -> tuple[list[str | None], list[str]]:
    """Find each annotated file under ``root``: ``root/name`` or by base name."""
    names = list(names)
    out: list[str | None] = []
    by_base: dict[str, str] | None = None
    missing: list[str] = []
    for name in names:
        direct = root / name
        if direct.is_file():
            out.append(str(direct))
            continue
        if by_base is None:
            by_base = {}
            for f in scan_images(root, IMAGE_EXTENSIONS + (".gif", ".tif", ".tiff")):
                by_base.setdefault(f.name, str(f))
        found = by_base.get(Path(name).name)
        out.append(found)
        if found is None:
            missing.append(name)
    return out, missing


def _report_missing(missing: Sequence[str], total: int, what: str) -> None:
    if missing:
        logger.warning(
            "%d of %d images named in %s are missing and are skipped; first: %s",
            len(missing),
            total,
            what,
            ", ".join(missing[:_N_EXAMPLES]),
        )


def attach_paths(
    table: pd.DataFrame, image_root: str | os.PathLike[str], source: str
) -> tuple[pd.DataFrame, list[str]]:
    """Resolve ``table["file_name"]`` under ``image_root`` into a ``path`` column.

    Missing files are reported (count + first examples) and their rows
    dropped; no file at all is an error naming the annotations and folder.
    """
    root = Path(image_root)
    if not root.is_dir():
        raise DatasetError(
            f"image folder {str(root)!r} does not exist; pass image_root=<folder with the images>"
        )
    paths, missing = _resolve_files(table["file_name"], root)
    table.insert(0, "path", paths)
    _report_missing(missing, len(table), source)
    table = table[table["path"].notna()]
    if table.empty:
        raise DatasetError(
            f"none of the {len(paths)} images named in {source!r} exist under {str(root)!r} "
            f"(e.g. {missing[:3]}); check image_root"
        )
    return table, missing
