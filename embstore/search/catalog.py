"""The index catalog of an analyzer: named FAISS indexes, their staleness and storage.

One :class:`IndexCatalog` per analyzer (``an.index.catalog``), in the style of
the named indexes of Hugging Face datasets' ``IndexableMixin``. It owns:

* **naming**: an index of ``variable`` pooled by ``pool`` at ``layer``, of
  ``kind`` under ``metric`` is called ``variable.pool.layer.kind.metric``
  (:meth:`IndexCatalog.name`);
* **staleness**: each index remembers the store's ``version_token`` and a hash
  of the selected ids; it is used only while both are unchanged;
* **save / load**: with the store, as the blob ``faiss_<name>`` plus
  ``faiss_<name>.json`` (parameters, token, selection hash), reloaded by a new
  analyzer on the re-opened store; on a read-only store (or an old directory)
  the index lives in memory only;
* **the in-memory cache** of built and reloaded indexes, and a memo of what
  was computed at the current store version (labels, the id index, "no saved
  index here") so that repeated searches re-read nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..analysis.core import AnalyzerCore
from ..errors import ReadOnlyStoreError
from .index import SearchIndex

__all__ = ["IndexCatalog"]

logger = logging.getLogger(__name__)

#: Kinds tried, in order, when a search names no index kind.
SEARCH_KINDS = ("flat", "ivf", "hnsw")


def _safe(s: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(s))


def _blob(name: str, suffix: str = "") -> str:
    """Blob name of an index (the store allows no ``/`` in blob names)."""
    return f"faiss_{name}{suffix}"


class IndexCatalog:
    """Named FAISS indexes over one analyzer's selection.

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose vectors the indexes hold (its store, selection and
        ``labels``).

    Examples
    --------
    >>> from embstore import EmbeddingAnalyzer
    >>> an = EmbeddingAnalyzer(face_path)
    >>> idx = an.build_index("embedding", kind="flat")
    >>> an.index.catalog.names()
    ['embedding.mean.None.flat.cosine']
    >>> an.index.catalog.get("embedding.mean.None.flat.cosine") is idx
    True
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core
        self._indexes: dict[str, tuple[SearchIndex, str | None, str]] = {}
        self._state: tuple[str | None, str, dict[Any, Any]] | None = None
        #: kind of the index built or found last (searched first next time)
        self.last_kind: str | None = None

    # ------------------------------------------------------------- naming
    @staticmethod
    def name(variable: str, pool: Any, layer: Any, kind: str, metric: str) -> str:
        """The catalog name of an index: ``variable.pool.layer.kind.metric``.

        Parameters
        ----------
        variable, pool, layer, kind, metric
            What the index holds and how.

        Returns
        -------
        str

        Examples
        --------
        >>> IndexCatalog.name("embedding", "topk:5", None, "ivf", "cosine")
        'embedding.topk-5.None.ivf.cosine'
        """
        return ".".join(_safe(p) for p in (variable, pool, layer, kind, metric))

    def names(self) -> list[str]:
        """Names of the indexes held in memory (built or reloaded), oldest first."""
        return list(self._indexes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._indexes)

    def __contains__(self, name: object) -> bool:
        return name in self._indexes

    def __repr__(self) -> str:
        return f"<IndexCatalog {self.names()}>"

    def get(self, name: str) -> SearchIndex | None:
        """The in-memory index called ``name`` if it is still valid, else None."""
        token, sel_hash, _ = self.state()
        entry = self._indexes.get(name)
        if entry is not None and entry[1] == token and entry[2] == sel_hash:
            return entry[0]
        return None

    def drop(self, name: str) -> None:
        """Forget the in-memory index ``name`` (a saved copy stays with the store)."""
        self._indexes.pop(name, None)

    # ---------------------------------------------------------- staleness
    def token(self) -> str | None:
        """The store's ``version_token`` (None without a store)."""
        store = self._an.store
        return None if store is None else str(store.version_token)

    def selection_hash(self) -> str:
        """SHA-1 of the selected ids (dtype and values)."""
        ids = np.asarray(self._an.ids)
        h = hashlib.sha1()
        h.update(str(ids.dtype).encode())
        if ids.dtype.kind in "iuf":
            h.update(np.ascontiguousarray(ids).tobytes())
        else:
            h.update("\x00".join(map(str, ids.tolist())).encode())
        return h.hexdigest()

    def state(self) -> tuple[str | None, str, dict[Any, Any]]:
        """``(version_token, selection hash, memo)``, recomputed only when the token changes.

        The token changes with every commit and coordinate write, so while it
        stays the same the selection, labels and indexes are still valid and
        nothing is re-read or re-hashed (one small read of the commit state
        per call). Without a store (token None) nothing is memoised.
        """
        token = self.token()
        state = self._state
        if token is None or state is None or state[0] != token:
            state = (token, self.selection_hash(), {})
            if token is not None:
                self._state = state
        return state

    # -------------------------------------------------------------- lookup
    def find(
        self, variable: str, pool: Any, layer: Any, metric: str, kind: str | None
    ) -> SearchIndex | None:
        """A valid index for these vectors: in memory, else saved with the store.

        Parameters
        ----------
        variable, pool, layer, metric
            What the index must hold.
        kind : str or None
            The index kind; ``None`` tries the last kind used, then
            ``flat``, ``ivf`` and ``hnsw``.

        Returns
        -------
        SearchIndex or None
        """
        token, sel_hash, memo = self.state()
        kinds = [kind] if kind is not None else list(SEARCH_KINDS)
        if kind is None and self.last_kind is not None:
            kinds.insert(0, self.last_kind)
        for kd in kinds:
            name = self.name(variable, pool, layer, kd, metric)
            entry = self._indexes.get(name)
            if entry is not None and entry[1] == token and entry[2] == sel_hash:
                return entry[0]
            if ("no index", name) in memo:  # looked for at this version already
                continue
            idx = self.load(name)
            if idx is not None:
                self._indexes[name] = (idx, token, sel_hash)
                return idx
            memo[("no index", name)] = True
        return None

    def add(
        self, name: str, idx: SearchIndex, params: dict[str, Any], *, save: bool = True
    ) -> bool:
        """Hold ``idx`` under ``name`` for the current store version; save it if asked.

        Parameters
        ----------
        name : str
            From :meth:`name`.
        idx : SearchIndex
            The index.
        params : dict
            ``variable``, ``pool``, ``layer`` (kept in the saved metadata).
        save : bool
            Save with the store too.

        Returns
        -------
        bool
            Whether it was saved with the store.
        """
        token, sel_hash, _ = self.state()
        saved = self.save(name, idx, params) if save else False
        self._indexes[name] = (idx, token, sel_hash)
        return saved

    # ----------------------------------------------------------- save/load
    def load(self, name: str) -> SearchIndex | None:
        """The index saved with the store as ``name``, if it is still valid."""
        store = self._an.store
        if store is None:
            return None
        token, sel_hash, _ = self.state()
        raw = store.read_blob(_blob(name, ".json"))
        if raw is None:
            return None
        try:
            meta = json.loads(bytes(raw).decode())
        except ValueError:
            logger.warning("ignoring unreadable index metadata faiss_%s.json", name)
            return None
        if meta.get("version_token") != token or meta.get("selection") != sel_hash:
            logger.info(
                "index faiss_%s is stale (store changed since it was built); rebuilding", name
            )
            return None
        data = store.read_blob(_blob(name))
        if data is None:
            return None
        idx = SearchIndex.from_bytes(
            bytes(data),
            meta["metric"],
            meta["kind"],
            meta["factory"],
            device=meta.get("device", "auto"),
        )
        logger.info("reloaded index faiss_%s (%d vectors)", name, idx.ntotal)
        return idx

    def save(self, name: str, idx: SearchIndex, params: dict[str, Any]) -> bool:
        """Save ``idx`` with the store; False (and a warning) when it is read-only."""
        store = self._an.store
        if store is None:
            return False
        _, sel_hash, _ = self.state()
        meta = dict(params, **idx.params(), version_token=self.token(), selection=sel_hash)
        try:
            store.write_blob(_blob(name), idx.to_bytes())
            store.write_blob(_blob(name, ".json"), json.dumps(meta).encode())
        except (ReadOnlyStoreError, PermissionError) as exc:
            logger.warning(
                "index kept in memory only: the store is read-only (%s); "
                "open it with Store.open(path, mode='a') to save indexes",
                exc,
            )
            return False
        return True

    def refresh_tokens(self, old: str | None) -> None:
        """After our own coordinate write, keep the indexes valid before it valid.

        Parameters
        ----------
        old : str or None
            The store's token before the write.
        """
        store = self._an.store
        new = self.token()
        if store is None:
            return
        for name, (idx, token, sel_hash) in list(self._indexes.items()):
            if token != old:
                continue
            self._indexes[name] = (idx, new, sel_hash)
            raw = store.read_blob(_blob(name, ".json"))
            if raw is None:
                continue
            meta = json.loads(bytes(raw).decode())
            if meta.get("version_token") == old:
                meta["version_token"] = new
                try:
                    store.write_blob(_blob(name, ".json"), json.dumps(meta).encode())
                except (ReadOnlyStoreError, PermissionError):  # pragma: no cover
                    pass
