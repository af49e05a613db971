"""FAISS indexes built by streaming blocks: kinds, metrics, devices, bytes.

:func:`build_index` reads vectors block by block (see
:mod:`embstore.search.source`), so only one block plus the index itself is in
memory. Kinds are ``"flat"`` (exact), ``"ivf"`` (inverted lists, trained on
the first blocks), ``"hnsw"`` (graph) or any faiss factory string such as
``"IVF1024,PQ64"``. Metrics are ``"cosine"`` (vectors L2-normalised, inner
product: scores are cosine similarities, higher is closer), ``"ip"`` (raw inner
product) and ``"l2"`` (scores are Euclidean distances, lower is closer; faiss
itself works on squared distances, converted here).

faiss is an optional dependency, imported on first use.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._optional import attempt_import
from ..errors import DeviceUnavailableError, IndexError_, ValidationError
from .source import DEFAULT_BLOCK_ROWS, as_block_source, as_float32_matrix

__all__ = [
    "KINDS",
    "METRICS",
    "SearchIndex",
    "build_index",
    "check_metric",
    "factory_string",
    "get_faiss",
    "higher_is_closer",
    "prepare_vectors",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: Supported metric names.
METRICS = ("cosine", "ip", "l2")
#: Named index kinds (anything else is passed to ``faiss.index_factory``).
KINDS = ("flat", "ivf", "hnsw")


def get_faiss() -> Any:
    """Import faiss or raise :class:`~embstore.errors.MissingDependencyError`.

    Returns
    -------
    module
        The ``faiss`` module.
    """
    return attempt_import("faiss")


def check_metric(metric: str) -> str:
    """Validate a metric name and return it lower-cased.

    Parameters
    ----------
    metric : str
        ``"cosine"``, ``"ip"`` or ``"l2"``.

    Returns
    -------
    str

    Examples
    --------
    >>> check_metric("Cosine")
    'cosine'
    """
    m = str(metric).lower()
    if m not in METRICS:
        raise ValidationError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
    return m


def higher_is_closer(metric: str) -> bool:
    """Whether larger scores mean closer vectors (cosine, ip) or not (l2).

    Examples
    --------
    >>> higher_is_closer("cosine"), higher_is_closer("l2")
    (True, False)
    """
    return check_metric(metric) != "l2"


def faiss_metric(metric: str) -> int:
    """Return the faiss metric constant for ``metric``."""
    faiss = get_faiss()
    return faiss.METRIC_L2 if check_metric(metric) == "l2" else faiss.METRIC_INNER_PRODUCT


def prepare_vectors(x: Any, metric: str, dim: int | None = None, copy: bool = True) -> np.ndarray:
    """Convert to float32 and L2-normalise rows when ``metric == "cosine"``.

    Zero vectors stay zero (their cosine with anything is 0).

    Parameters
    ----------
    x : array_like
        ``(n, dim)`` vectors.
    metric : str
        Metric name.
    dim : int, optional
        Expected number of columns.
    copy : bool
        Never modify ``x`` in place (a float32 input would otherwise be normalised in place).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> prepare_vectors([[3.0, 4.0]], "cosine")
    array([[0.6, 0.8]], dtype=float32)
    """
    arr = as_float32_matrix(x, dim)
    if check_metric(metric) == "cosine":
        if copy and (arr is x or np.shares_memory(arr, np.asarray(x))):
            arr = arr.copy()
        norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
        norms[norms == 0] = 1.0
        arr /= norms[:, None]
    return arr


def scores_from_faiss(d: np.ndarray, metric: str) -> np.ndarray:
    """Turn faiss distances into user scores (sqrt of squared L2 for ``"l2"``)."""
    if check_metric(metric) == "l2":
        return np.sqrt(np.maximum(d, 0, out=d), out=d)
    return d


def threshold_to_faiss(threshold: float, metric: str) -> float:
    """Turn a user threshold into a faiss radius (squared for ``"l2"``)."""
    return float(threshold) ** 2 if check_metric(metric) == "l2" else float(threshold)


def resolve_device(device: str = "auto", ngpu: int | None = None) -> tuple[str, int]:
    """Decide where faiss runs.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` uses the GPUs when ``faiss.get_num_gpus() > 0``.
        ``"cuda"`` without a GPU build or device raises rather than silently
        running on the CPU.
    ngpu : int, optional
        How many GPUs to use (``None`` or ``-1``: all).

    Returns
    -------
    (str, int)
        ``("cpu", 0)`` or ``("cuda", number of GPUs)``.

    Examples
    --------
    >>> resolve_device("cpu")
    ('cpu', 0)
    """
    dev = str(device).lower()
    if dev not in ("auto", "cpu", "cuda") and not dev.startswith("cuda:"):
        raise ValidationError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'.")
    if dev == "cpu":
        return "cpu", 0
    faiss = get_faiss()
    available = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if available == 0:
        if dev == "auto":
            return "cpu", 0
        raise DeviceUnavailableError(
            f"device={device!r} was requested but faiss sees no GPU (faiss.get_num_gpus() == 0). "
            "Install a GPU build of faiss (faiss-gpu) on a machine with CUDA, or pass device='cpu'."
        )
    want = available if ngpu is None or ngpu < 0 else min(int(ngpu), available)
    if dev.startswith("cuda:"):
        want = 1
    return "cuda", max(1, want)


def factory_string(kind: str, n: int | None = None, nlist: int | None = None, m: int = 32) -> str:
    """Return the faiss factory string for a kind.

    Parameters
    ----------
    kind : str
        ``"flat"``, ``"ivf"``, ``"hnsw"`` or a faiss factory string (returned unchanged).
    n : int, optional
        Number of vectors (sets ``nlist = 4 * sqrt(n)`` for ``"ivf"`` when not given).
    nlist : int, optional
        Inverted lists for ``"ivf"``.
    m : int
        Graph degree for ``"hnsw"``.

    Returns
    -------
    str

    Examples
    --------
    >>> factory_string("flat"), factory_string("ivf", n=10000), factory_string("hnsw")
    ('Flat', 'IVF256,Flat', 'HNSW32')
    """
    k = str(kind)
    low = k.lower()
    if low == "flat":
        return "Flat"
    if low == "hnsw":
        return f"HNSW{int(m)}"
    if low == "ivf":
        if nlist is None:
            if n is None:
                raise ValidationError("kind='ivf' needs nlist= or a known number of vectors.")
            nlist = default_nlist(n)
        return f"IVF{int(nlist)},Flat"
    return k


def default_nlist(n: int) -> int:
    """``4 * sqrt(n)`` inverted lists, at least 1 and at most ``n // 39``.

    Examples
    --------
    >>> default_nlist(1_000_000)
    4000
    """
    return int(max(1, min(4 * math.sqrt(max(n, 1)), max(1, n // 39), 65536)))


class SearchIndex:
    """A faiss index plus what is needed to use it correctly.

    Parameters
    ----------
    index : faiss.Index
        The (trained, filled) faiss index, on CPU or GPU.
    metric : str
        ``"cosine"``, ``"ip"`` or ``"l2"``; queries are prepared accordingly.
    kind : str
        The kind or factory string it was built from.
    factory : str
        The faiss factory string.
    device : str
        ``"cpu"`` or ``"cuda"``.
    ngpu : int
        GPUs holding the index.

    Attributes
    ----------
    dim, ntotal : int
        Vector dimension and number of vectors.
    exact : bool
        Whether searches are exhaustive (a flat index).

    Examples
    --------
    >>> idx = build_index(np.eye(3), kind="flat", metric="cosine", device="cpu")
    >>> idx.ntotal, idx.exact
    (3, True)
    >>> scores, ids = idx.search(np.eye(3)[:1], k=2)
    >>> int(ids[0, 0]), float(scores[0, 0])
    (0, 1.0)
    """

    def __init__(
        self,
        index: Any,
        metric: str,
        kind: str,
        factory: str,
        device: str = "cpu",
        ngpu: int = 0,
    ) -> None:
        self.index = index
        self.metric = check_metric(metric)
        self.kind = kind
        self.factory = factory
        self.device = device
        self.ngpu = ngpu
        self._cpu_copy: Any = None

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        return int(self.index.ntotal)

    @property
    def exact(self) -> bool:
        """True for exhaustive (flat) indexes."""
        return self.factory.replace(" ", "") in ("Flat", "IDMap,Flat")

    def __repr__(self) -> str:
        return (
            f"SearchIndex(factory={self.factory!r}, metric={self.metric!r}, dim={self.dim}, "
            f"ntotal={self.ntotal}, device={self.device!r})"
        )

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set the speed/recall knobs of approximate indexes.

        Parameters
        ----------
        nprobe : int, optional
            Inverted lists visited per query (IVF).
        ef_search : int, optional
            Candidate list size (HNSW).
        """
        faiss = get_faiss()
        if self.device == "cuda" and hasattr(faiss, "GpuParameterSpace"):
            ps = faiss.GpuParameterSpace()
        else:
            ps = faiss.ParameterSpace()
        if nprobe is not None:
            try:
                ps.set_index_parameter(self.index, "nprobe", int(nprobe))
            except RuntimeError as exc:
                raise ValidationError(
                    f"nprobe does not apply to a {self.factory!r} index ({exc})."
                ) from exc
        if ef_search is not None:
            try:
                ps.set_index_parameter(self.index, "efSearch", int(ef_search))
            except RuntimeError as exc:
                raise ValidationError(
                    f"ef_search does not apply to a {self.factory!r} index ({exc})."
                ) from exc

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k nearest neighbours of each query.

        Parameters
        ----------
        queries : array_like
            ``(nq, dim)`` vectors (normalised here for cosine).
        k : int
            Neighbours per query (capped at :attr:`ntotal`).

        Returns
        -------
        scores : numpy.ndarray
            ``(nq, k)`` float32, best first (cosine similarity, inner product,
            or Euclidean distance for l2).
        ids : numpy.ndarray
            ``(nq, k)`` int64 positions in insertion order; ``-1`` where fewer were found.
        """
        k = _check_k(k)
        xq = prepare_vectors(queries, self.metric, self.dim)
        kk = min(k, max(self.ntotal, 1))
        d, i = self.index.search(xq, kk)
        d = scores_from_faiss(d, self.metric)
        if kk < k:
            pad = k - kk
            fill = -np.inf if higher_is_closer(self.metric) else np.inf
            d = np.hstack([d, np.full((d.shape[0], pad), fill, dtype=d.dtype)])
            i = np.hstack([i, np.full((i.shape[0], pad), -1, dtype=i.dtype)])
        return d, i

    def range_search(
        self, queries: Any, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All neighbours within a threshold.

        Parameters
        ----------
        queries : array_like
            ``(nq, dim)`` vectors.
        threshold : float
            Minimum score for cosine/ip (``>=`` in practice, faiss keeps ``>``
            the radius, so equal scores at float precision may be missed), or
            maximum Euclidean distance for l2.

        Returns
        -------
        lims : numpy.ndarray
            ``(nq + 1,)``: results of query ``q`` are ``[lims[q]:lims[q+1]]``.
        scores, ids : numpy.ndarray
            Flat arrays of scores and positions.

        Notes
        -----
        GPU indexes have no range search in faiss; a CPU copy is made once and cached.
        """
        xq = prepare_vectors(queries, self.metric, self.dim)
        index = self.index
        if self.device == "cuda":
            if self._cpu_copy is None:
                self._cpu_copy = get_faiss().index_gpu_to_cpu(self.index)
                logger.info("range_search: faiss GPU indexes cannot range-search; using a CPU copy")
            index = self._cpu_copy
        radius = threshold_to_faiss(threshold, self.metric)
        try:
            lims, d, i = index.range_search(xq, radius)
        except RuntimeError as exc:
            raise IndexError_(
                f"a {self.factory!r} index does not support range search ({exc}); "
                "build a flat or IVF index instead."
            ) from exc
        return lims.astype(np.int64), scores_from_faiss(d, self.metric), i

    def to_bytes(self) -> bytes:
        """Serialise the index (moved to CPU first) with ``faiss.serialize_index``."""
        faiss = get_faiss()
        index = self.index
        if self.device == "cuda":
            index = faiss.index_gpu_to_cpu(index)
        return faiss.serialize_index(index).tobytes()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        metric: str,
        kind: str,
        factory: str,
        device: str = "auto",
        ngpu: int | None = None,
    ) -> SearchIndex:
        """Rebuild an index saved with :meth:`to_bytes`.

        Parameters
        ----------
        data : bytes
            Serialised index.
        metric, kind, factory : str
            As stored alongside the bytes.
        device : str
            Where to load it (``"auto"``: GPUs when present).
        ngpu : int, optional
            GPUs to use (all by default).

        Returns
        -------
        SearchIndex
        """
        faiss = get_faiss()
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        dev, n = resolve_device(device, ngpu)
        if dev == "cuda" and "HNSW" in factory.upper():
            dev, n = _hnsw_on_cpu(device)
        if dev == "cuda":
            index = _to_gpu(index, n)
        return cls(index, metric, kind, factory, dev, n)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable description (kind, factory, metric, dim, ntotal)."""
        return {
            "kind": self.kind,
            "factory": self.factory,
            "metric": self.metric,
            "dim": self.dim,
            "ntotal": self.ntotal,
        }


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValidationError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def _hnsw_on_cpu(device: str) -> tuple[str, int]:
    if str(device).lower().startswith("cuda"):
        raise ValidationError(
            f"HNSW indexes run on the CPU only in faiss, but device={device!r} was requested; "
            "use kind='flat' or 'ivf' on the GPU, or device='cpu'."
        )
    logger.info("HNSW index: faiss has no GPU HNSW, building on the CPU")
    return "cpu", 0


def _to_gpu(index: Any, ngpu: int, shard: bool = True) -> Any:
    faiss = get_faiss()
    if ngpu == 1:
        res = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, 0, index)
        gpu._embstore_res = res  # keep resources alive with the index
        return gpu
    co = faiss.GpuMultipleClonerOptions()
    co.shard = shard
    logger.info("Sharded index across %d GPU(s)", ngpu)
    return faiss.index_cpu_to_all_gpus(index, co=co, ngpu=ngpu)


def _progress(total: int | None, desc: str, enabled: bool | None) -> Any:
    import sys

    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else (not enabled)
    return tqdm(total=total, desc=desc, unit="vec", disable=disable)


def build_index(
    blocks: Any,
    dim: int | None = None,
    kind: str = "flat",
    metric: str = "cosine",
    device: str = "auto",
    *,
    n: int | None = None,
    nlist: int | None = None,
    hnsw_m: int = 32,
    train_rows: int | None = None,
    ngpu: int | None = None,
    shard: bool = True,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool | None = None,
) -> SearchIndex:
    """Build a faiss index by streaming blocks of vectors.

    Parameters
    ----------
    blocks : array_like, callable or iterable
        The vectors: a 2-D array, a callable returning an iterator of
        ``(start, block)`` pairs, or an iterable of blocks (see
        :func:`~embstore.search.source.as_block_source`). Only one block is
        held at a time, plus the training sample for trained kinds.
    dim : int, optional
        Vector dimension (read from the first block when omitted).
    kind : str
        ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` or a faiss factory string.
    metric : {"cosine", "ip", "l2"}
        Cosine L2-normalises every vector and uses inner product.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` uses every GPU faiss sees; ``"cuda"`` without one raises
        :class:`~embstore.errors.DeviceUnavailableError`.
    n : int, optional
        Number of vectors when the source cannot tell (sets IVF's nlist).
    nlist : int, optional
        Inverted lists for ``"ivf"`` (default ``4 * sqrt(n)``).
    hnsw_m : int
        Graph degree for ``"hnsw"``.
    train_rows : int, optional
        Training sample size for trained kinds: the first ``train_rows``
        vectors of the stream (default ``min(n, max(64 * nlist, 10000))``).
        If the store is sorted by something that correlates with the
        vectors, pass a shuffled source or a factory string and train
        yourself.
    ngpu : int, optional
        GPUs to use (all by default).
    shard : bool
        With several GPUs, split the vectors across them (else replicate).
    block_rows : int
        Rows per streamed block.
    progress : bool, optional
        Show a tqdm bar (default: only when stderr is a terminal).

    Returns
    -------
    SearchIndex

    Raises
    ------
    MissingDependencyError
        faiss is not installed (``pip install "embstore[faiss]"``).
    DeviceUnavailableError
        ``device="cuda"`` but faiss sees no GPU.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> idx = build_index(x, kind="flat", metric="cosine", device="cpu")
    >>> scores, ids = idx.search(x[:2], k=1)
    >>> ids.ravel().tolist()
    [0, 1]
    """
    faiss = get_faiss()
    metric = check_metric(metric)
    src = as_block_source(blocks, dim=dim, n=n)
    n_total = n if n is not None else src.n
    dev, ngpus = resolve_device(device, ngpu)
    if str(kind).lower() == "ivf" and nlist is None and n_total is None:
        if not src.reiterable:
            raise ValidationError("kind='ivf' on a one-shot iterator needs n= or nlist=.")
        n_total = src.count()
    fac = factory_string(kind, n=n_total, nlist=nlist, m=hnsw_m)
    if dev == "cuda" and "HNSW" in fac.upper():
        dev, ngpus = _hnsw_on_cpu(device)

    it: Iterator[tuple[int, np.ndarray]] = src.blocks(block_rows)
    first: list[np.ndarray] = []
    d = dim if dim is not None else src.dim
    if d is None:
        for _, b in it:
            first.append(prepare_vectors(b, metric, copy=not src.fresh))
            d = b.shape[1]
            break
        else:
            raise ValidationError("no vectors to index: the source is empty.")
    try:
        index = faiss.index_factory(int(d), fac, faiss_metric(metric))
    except RuntimeError as exc:
        raise ValidationError(
            f"faiss could not build an index from kind={kind!r} (factory {fac!r}): {exc}. "
            "Use 'flat', 'ivf', 'hnsw' or a valid faiss factory string."
        ) from exc
    if "HNSW" in fac.upper() and hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(int(index.hnsw.efSearch), 128)
    if dev == "cuda":
        index = _to_gpu(index, ngpus, shard)

    bar = _progress(n_total, f"index {fac}", progress)
    if not index.is_trained:
        nl = nlist or _nlist_of(index) or 1
        want = train_rows or min(n_total or 10**9, max(64 * nl, 10000))
        have = sum(b.shape[0] for b in first)
        for _, b in it:
            first.append(prepare_vectors(b, metric, d, copy=not src.fresh))
            have += b.shape[0]
            if have >= want:
                break
        sample = np.concatenate(first) if first else np.empty((0, d), np.float32)
        if sample.shape[0] < nl:
            raise ValidationError(
                f"index {fac!r} needs at least {nl} training vectors but only {sample.shape[0]} "
                "were available; lower nlist or use kind='flat'."
            )
        logger.info("training %s on %d vectors", fac, min(sample.shape[0], want))
        index.train(sample[:want])
        del sample
    for b in first:
        index.add(b)
        bar.update(b.shape[0])
    first.clear()
    for _, b in it:
        index.add(prepare_vectors(b, metric, d, copy=not src.fresh))
        bar.update(b.shape[0])
    bar.close()
    out = SearchIndex(index, metric, str(kind), fac, dev, ngpus)
    if fac.upper().startswith("IVF"):
        nl = _nlist_of(index) or 1
        try:
            out.set_search_params(nprobe=int(min(nl, max(8, nl // 16))))
        except ValidationError:  # pragma: no cover - e.g. a sharded GPU index
            logger.debug("could not set nprobe on %s", fac)
    logger.info("built %s index (%s, %d vectors, device=%s)", fac, metric, index.ntotal, dev)
    return out


def _nlist_of(index: Any) -> int | None:
    faiss = get_faiss()
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError):
        nl = getattr(index, "nlist", None)  # GPU IVF indexes
        return int(nl) if nl is not None else None
