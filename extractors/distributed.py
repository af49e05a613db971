"""Parallel extraction on Dask: one store, chunk-aligned regions, one task per region.

:func:`extract_distributed` is the Python form of ``embstore extract ...
--scheduler dask [--workers N | --address tcp://...]``::

    from functools import partial
    from extractors.distributed import extract_distributed
    from extractors.face import FaceExtractor
    from extractors.face.extractor import face_dataset

    summary = extract_distributed(
        partial(FaceExtractor.from_checkpoint, "backbone.pth", arch="r100", l2_norm=True),
        face_dataset("5M_list.txt"), "faces.zarr", id_name="index",
        address="tcp://scheduler:8786",            # or n_workers=4 for a local cluster
    )

How it works
------------
1. The input list is read once on the client and split into chunk-aligned
   row ranges (:class:`embstore.distributed.RegionPlan`): item ``p`` goes to
   store row ``p``, so the finished store lists rows in input order, row for
   row what a single-process run writes.
2. A probe task builds the extractor on a worker and runs it on one image to
   learn the output shapes; the client preallocates the store
   (``Store.create(..., n_rows=...)``) and saves the plan in its attributes.
3. Each region is one Dask task: it builds the extractor once per worker
   (cached), opens ``Store.open(out, mode="a", region=(start, stop))`` and
   runs :func:`extractors.pipeline.run_extraction` on its items. Rows are
   committed chunk by chunk (commit records per region).
4. ``device="auto"``: each worker uses one GPU (``cuda:<worker rank mod
   GPUs>``; with ``dask-cuda`` every worker sees exactly one) or the CPU.

Failures and resume
-------------------
* A task that raises is retried ``retries`` times (dask ``retries=``); a
  task whose worker process dies is rescheduled by the scheduler on another
  worker (up to ``distributed.scheduler.allowed-failures`` times).
* A retried task reopens its region: committed rows stay, rows not yet
  committed are gone, and only ids the store lacks are extracted again, so
  no row is lost or written twice. The dead writer's lock is taken over
  (same host: the Store sees the pid is gone; another host: the task checks
  that the lock's owner is no live worker of the cluster).
* Re-running the same call after a crash of the client, or after failed
  tasks, resumes: completed regions are skipped, partial ones finished. The
  input list must be the same (its ids' fingerprint is checked).
* Images that cannot be read are skipped, reported in the summary and
  recorded in the store (:attr:`embstore.Store.skipped`) by the client at
  the end (region writers do not share that table).

Ragged variables (per-image token maps) are not supported by region writers;
extract them with one process, or ``extract_type="decoder"`` for DETR.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from embstore._optional import attempt_import
from embstore.errors import DatasetError, DistributedTaskError, StoreLockedError, ValidationError

from .outputs import clean_table, store_exists
from .protocol import as_batch, as_pipeline_extractor, duplicate_id_error, load_record
from .summary import DistributedSummary, ExtractionSummary, RegionResult

__all__ = [
    "DistributedSummary",
    "ExtractionSummary",
    "RegionResult",
    "add_dask_arguments",
    "extract_distributed",
    "run_with_scheduler",
    "worker_device",
]

logger = logging.getLogger(__name__)

_PROBE_LIMIT = 64


def add_dask_arguments(parser: Any) -> None:
    """Add ``--scheduler dask [--workers N | --address ...]`` options (see
    :func:`embstore.distributed.cluster.add_dask_arguments`).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    from embstore.distributed.cluster import add_dask_arguments as _add

    _add(parser)


# ------------------------------------------------------------- worker side
_EXTRACTOR_CACHE: dict[str, Any] = {}


def worker_device(device: str = "auto") -> str:
    """The device a task uses on this worker: one GPU per worker when present.

    Parameters
    ----------
    device : str, default "auto"
        ``"auto"``/``"cuda"``: GPU ``rank % n_gpus`` where ``rank`` is the
        worker's name when it is an int (local clusters name workers 0, 1,
        ...); the CPU under ``"auto"`` without a GPU. Anything else
        (``"cpu"``, ``"cuda:1"``) is used as given.

    Returns
    -------
    str

    Raises
    ------
    DeviceUnavailableError
        ``"cuda"`` was asked for and this worker has no GPU.

    Examples
    --------
    >>> worker_device("cpu")
    'cpu'
    """
    if device not in ("auto", "cuda"):
        return str(device)
    torch = attempt_import("torch")
    if not torch.cuda.is_available():
        if device == "cuda":
            from embstore.errors import DeviceUnavailableError

            raise DeviceUnavailableError(
                f"device='cuda' but worker on {socket.gethostname()} sees no GPU; use device='auto' or 'cpu', "
                "or start workers on GPU nodes"
            )
        return "cpu"
    n = torch.cuda.device_count()
    rank = 0
    try:
        from distributed import get_worker

        name = get_worker().name
        rank = int(name) if isinstance(name, (int, np.integer)) or str(name).isdigit() else 0
    except (ImportError, ValueError):
        rank = 0
    return f"cuda:{rank % n}" if n > 1 else "cuda:0"


def _extractor(factory: Callable[..., Any], device: str) -> Any:
    """Build the extractor once per worker process (cached by factory and device)."""
    from dask.base import tokenize

    key = f"{tokenize(factory)}-{device}"
    ex = _EXTRACTOR_CACHE.get(key)
    if ex is None:
        _EXTRACTOR_CACHE.clear()  # one model per worker at a time
        ex = as_pipeline_extractor(factory(device=device))
        _EXTRACTOR_CACHE[key] = ex
    return ex


def _probe(factory: Callable[..., Any], records: Sequence[Any], device: str) -> dict[str, Any]:
    """Run the extractor on the first readable record: variables, dtypes, shapes."""
    from .base import to_numpy

    dev = worker_device(device)
    ex = _extractor(factory, dev)
    for rec in records:
        sample, _reason, _coords = load_record(rec, getattr(ex, "preprocess", None))
        if sample is None:
            continue
        collate = getattr(ex, "collate", None)
        batch = collate([sample]) if collate is not None else [sample]
        out = as_batch(ex.extract_batch(batch))
        finish = getattr(ex, "finish_batch", None)
        if finish is not None:
            out = as_batch(finish(out))
        shapes = {
            name: tuple(int(s) for s in np.shape(to_numpy(out[name]))[1:]) for name in ex.variables
        }
        prov: dict[str, Any] = {}
        if callable(getattr(ex, "provenance", None)):
            prov.update(ex.provenance())
        if isinstance(getattr(ex, "store_attrs", None), Mapping):
            prov.update(ex.store_attrs)
        return {
            "variables": {k: tuple(v) for k, v in ex.variables.items()},
            "ragged": {k: tuple(v) for k, v in (getattr(ex, "ragged", None) or {}).items()},
            "dtypes": {k: str(v) for k, v in (getattr(ex, "dtypes", None) or {}).items()},
            "shapes": shapes,
            "provenance": prov,
        }
    raise DatasetError(
        f"none of the first {len(records)} inputs could be read (e.g. {records[0].path!r}); "
        "check the input list"
    )


class _RegionStore:
    """A region writer whose skipped ids are kept in memory, not in the shared table.

    ``record_skipped`` rewrites one table of the store: several region
    writers doing that at once would lose records, so the client records
    them at the end.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self.skipped_rows: list[tuple[Any, str]] = []

    def record_skipped(self, ids: Sequence[Any], reasons: Sequence[str]) -> None:
        self.skipped_rows.extend(zip(list(ids), [str(r) for r in reasons]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _lock_owner(
    path: str, region: tuple[int, int], storage_options: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Owner ``{"host", "pid"}`` of a region's append lock, or None."""
    import json

    from embstore.store.commit import region_name

    lock = f"{path.rstrip('/')}/_embstore/locks/{region_name(*region)}.lock"
    try:
        if "://" in path:
            import fsspec

            fs, p = fsspec.core.url_to_fs(lock, **(storage_options or {}))
            return json.loads(fs.cat_file(p))
        with open(lock, encoding="utf-8") as fh:
            return json.load(fh)
    except Exception:
        return None


def _live_workers() -> set[tuple[str, int]] | None:
    """``(hostname, pid)`` of every live worker of the current cluster, or None."""
    try:
        from distributed import get_client

        client = get_client()
        got = client.run(lambda: (socket.gethostname(), os.getpid()))
        return {(str(h), int(p)) for h, p in got.values()}
    except Exception:
        return None


def _open_region(
    out: str, region: tuple[int, int], storage_options: dict[str, Any] | None, write_chunks: int
) -> Any:
    """Open a region writer, taking over the lock of a dead worker on another host."""
    from embstore import Store

    try:
        return Store.open(
            out, mode="a", storage_options=storage_options, region=region, write_chunks=write_chunks
        )
    except StoreLockedError:
        owner = _lock_owner(out, region, storage_options)
        live = _live_workers()
        if owner is None or live is None:
            raise
        who = (str(owner.get("host")), int(owner.get("pid", -1)))
        if who in live:
            raise
        logger.warning(
            "region %s: taking over the lock of %s, which is no live worker", region, who
        )
        return Store.open(
            out,
            mode="a",
            storage_options=storage_options,
            region=region,
            force=True,
            write_chunks=write_chunks,
        )


def _extract_region(
    factory: Callable[..., Any],
    out: str,
    region: tuple[int, int],
    records: Sequence[Any],
    *,
    batch_size: int,
    num_workers: int,
    device: str,
    flush_interval: float | None,
    storage_options: dict[str, Any] | None,
    write_chunks: int,
) -> RegionResult:
    """One Dask task: extract ``records`` into rows ``region`` of the store ``out``."""
    from .pipeline import run_extraction

    t0 = time.perf_counter()
    dev = worker_device(device)
    ex = _extractor(factory, dev)
    if num_workers > 0:
        import multiprocessing

        if multiprocessing.current_process().daemon:
            logger.warning(
                "num_workers=%d but this Dask worker is a daemonic process that cannot start DataLoader "
                "workers; loading in the task thread. Start workers with daemon=False "
                "(embstore.distributed.connect(daemon=False) or distributed.worker.daemon: false)",
                num_workers,
            )
            num_workers = 0
    bounds = (int(region[0]), int(region[1]))
    st = _open_region(out, bounds, storage_options, write_chunks)
    proxy = _RegionStore(st)
    try:
        summary = run_extraction(
            ex,
            list(records),
            proxy,
            batch_size=batch_size,
            num_workers=num_workers,
            resume=True,
            retry_skipped=True,
            progress=False,
            flush_interval=flush_interval,
        )
    finally:
        st.close()
    worker = ""
    try:
        from distributed import get_worker

        worker = str(get_worker().address)
    except (ImportError, ValueError):
        pass
    return RegionResult(
        bounds,
        summary.written,
        summary.already_done,
        proxy.skipped_rows,
        time.perf_counter() - t0,
        worker,
        dev,
    )


# ------------------------------------------------------------- client side
def _materialise(dataset: Any) -> list[Any]:
    records = list(dataset)
    if not records:
        raise DatasetError("the dataset holds no images; check the input folder or list")
    seen: set[Any] = set()
    for rec in records:
        if rec.image_id in seen:
            raise duplicate_id_error(rec)
        seen.add(rec.image_id)
    return records


def _create_store(
    out: str,
    probe: dict[str, Any],
    plan: Any,
    *,
    row_dim: str,
    id_name: str,
    attrs: Mapping[str, Any] | None,
    storage_options: dict[str, Any] | None,
    overwrite: bool,
) -> None:
    from embstore import Store

    all_attrs = dict(probe.get("provenance") or {})
    all_attrs.update(dict(attrs or {}))
    all_attrs["distributed"] = plan.to_json()
    Store.create(
        out,
        row_dim=row_dim,
        id_name=id_name,
        variables=probe["variables"],
        dtypes=probe["dtypes"] or None,
        chunk_rows=plan.chunk_rows,
        n_rows=plan.n_rows,
        shapes=probe["shapes"],
        attrs=all_attrs,
        storage_options=storage_options,
        overwrite=overwrite,
    ).close()


def _chunk_rows_for(probe: dict[str, Any], row_dim: str, id_name: str) -> int:
    from embstore.store.schema import Schema

    schema = Schema.build(
        row_dim, id_name, probe["variables"], None, probe["dtypes"] or None, None, None, 0, None
    )
    row_bytes = max(
        int(np.prod(shape, dtype=np.int64)) * np.dtype(schema.dtypes[name]).itemsize
        for name, shape in probe["shapes"].items()
    )
    return schema.pick_chunk_rows(row_bytes)


def _region_todo(
    out: str, plan: Any, records: Sequence[Any], storage_options: dict[str, Any] | None
) -> list[int]:
    """Indices of regions that still miss rows (complete ones are not run again)."""
    from embstore import Store

    with Store.open(out, storage_options=storage_options) as st:
        done = set(np.asarray(st.ids).tolist())
        skipped = st.skipped
        if len(skipped):  # recorded as unreadable by an earlier run (ids stored as str or int)
            names = set(np.asarray(skipped["id"]).astype(str).tolist())
            done |= {rec.image_id for rec in records if str(rec.image_id) in names}
    todo = []
    for k, (a, b) in enumerate(plan.item_slices):
        if any(rec.image_id not in done for rec in records[a:b]):
            todo.append(k)
    return todo


def extract_distributed(
    extractor_factory: Callable[..., Any],
    dataset: Any,
    out: str | os.PathLike[str],
    *,
    client: Any = None,
    address: str | None = None,
    n_workers: int | None = None,
    row_dim: str = "image",
    id_name: str = "image_id",
    attrs: Mapping[str, Any] | None = None,
    chunk_rows: int | None = None,
    rows_per_task: int | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "auto",
    retries: int = 2,
    flush_interval: float | None = 60.0,
    write_chunks: int = 1,
    resources: Mapping[str, float] | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ExtractionSummary:
    """Extract ``dataset`` into one store with Dask workers, one task per row region.

    Parameters
    ----------
    extractor_factory : callable
        Picklable ``factory(device=...) -> extractor`` run on the workers
        (e.g. ``functools.partial(FaceExtractor.from_checkpoint, "w.pth",
        arch="r100")``). Any extractor of :mod:`extractors.pipeline` (DETR
        extractors are wrapped). Built once per worker.
    dataset : iterable of ImageRecord
        The images (an :class:`~extractors.datasets.ImageDataset` or a list),
        read once on the client; ids must be unique.
    out : str or path-like
        Zarr store (directory or fsspec URL). If it exists and was made by
        this function, the run resumes into it.
    client : dask.distributed.Client, optional
        Cluster to use. Else ``address`` (a running scheduler), else
        ``n_workers`` (a local cluster started and closed here), else the
        current default client or a local cluster.
    address : str, optional
        ``tcp://host:8786`` of a running scheduler.
    n_workers : int, optional
        Worker processes of a local cluster started for this run (with
        :data:`embstore.distributed.cluster.FAST_ALLOC_ENV`: model inference
        in dask workers is otherwise slowed down by their memory trimming).
    row_dim, id_name : str
        Row dimension and id coordinate of a new store.
    attrs : dict, optional
        Extra provenance attributes of a new store.
    chunk_rows : int, optional
        Rows per chunk (default: about 8 MiB of the largest variable).
    rows_per_task : int, optional
        Rows per task, a multiple of ``chunk_rows`` (default: about four
        tasks per worker). Fixed when the store is created.
    batch_size : int, default 16
        Images per forward pass in each task.
    num_workers : int, default 0
        DataLoader workers per task (needs non-daemonic Dask workers).
    device : str, default "auto"
        See :func:`worker_device`.
    retries : int, default 2
        Retries of a task that raised (a task whose worker dies is
        rescheduled in any case).
    flush_interval : float or None, default 60
        Seconds between commits inside a task.
    write_chunks : int, default 1
        Whole chunks gathered per store write in a task.
    resources : dict, optional
        Dask worker resources each task needs, e.g. ``{"GPU": 1}`` for workers
        started with ``--resources GPU=1``.
    storage_options : dict, optional
        fsspec options of ``out``.
    overwrite : bool, default False
        Replace an existing store instead of resuming it.
    progress : bool, optional
        tqdm bar over rows (default: on a terminal).

    Returns
    -------
    ExtractionSummary
        With ``scheduler="dask"``, ``n_tasks``, ``n_workers``, ``regions``.

    Raises
    ------
    DatasetError
        Empty input, or no readable image to probe.
    ValidationError
        Duplicate ids, ragged variables, a changed input list on resume, or
        a store not made by this function.
    DistributedTaskError
        Some tasks failed for good after their retries (a ``RuntimeError``);
        the message names them. Rows they committed are kept: re-run to resume.

    Examples
    --------
    A small random-weight face model over three photos, on a local
    cluster of one worker (with weights: ``partial(FaceExtractor.from_checkpoint,
    "w.pth", arch="r100")`` and ``n_workers=4`` or ``address=...``):

    >>> from functools import partial
    >>> from PIL import Image
    >>> from skimage import data
    >>> from extractors.datasets import ImageRecord
    >>> from extractors.face import FaceExtractor, IResNet
    >>> records = []
    >>> for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
    ...     path = f"{out_dir}/{name}.png"
    ...     Image.fromarray(getattr(data, name)()).save(path)
    ...     records.append(ImageRecord(i, path))
    >>> factory = partial(FaceExtractor, IResNet((1, 1, 1, 1), num_features=8), dtype="float32")
    >>> s = extract_distributed(factory, records, f"{out_dir}/faces.zarr", n_workers=1,
    ...                         device="cpu", progress=False)
    >>> s.written, s.scheduler, s.n_workers
    (3, 'dask', 1)
    """
    from embstore import Store
    from embstore.distributed.cluster import FAST_ALLOC_ENV, connect, n_workers_of
    from embstore.distributed.regions import RegionPlan, ids_fingerprint, plan_regions

    t0 = time.perf_counter()
    out_s = os.fspath(out)
    if batch_size < 1:
        raise ValidationError(f"batch_size={batch_size}; pass a positive integer")
    if isinstance(retries, bool) or int(retries) < 0:
        raise ValidationError(f"retries={retries!r}; pass 0 or more")
    records = _materialise(dataset)
    fingerprint = ids_fingerprint(rec.image_id for rec in records)
    distributed = attempt_import("dask.distributed")
    with connect(
        client if client is not None else address,
        n_workers,
        daemon=num_workers == 0,
        worker_env=FAST_ALLOC_ENV,
    ) as cl:
        summary = DistributedSummary(n_workers=n_workers_of(cl), store=out_s)
        exists = store_exists(out_s, storage_options) and not overwrite
        if exists:
            with Store.open(out_s, storage_options=storage_options) as st:
                saved = st.attrs.get("distributed")
            if not saved:
                raise ValidationError(
                    f"{out_s!r} exists but was not created by a distributed extraction (no region plan); "
                    "pass a new output path, or overwrite=True"
                )
            plan = RegionPlan.from_json(saved)
            if plan.fingerprint != fingerprint or plan.n_items != len(records):
                raise ValidationError(
                    f"{out_s!r} was created for another input list ({plan.n_items} images, ids fingerprint "
                    f"{plan.fingerprint[:12]}...); this run has {len(records)} images ({fingerprint[:12]}...). "
                    "Resume with the same input list, or pass a new output path"
                )
            if rows_per_task is not None and rows_per_task != plan.rows_per_task:
                logger.warning(
                    "resuming %s: keeping its rows_per_task=%d (ignoring %d)",
                    out_s,
                    plan.rows_per_task,
                    rows_per_task,
                )
            todo = _region_todo(out_s, plan, records, storage_options)
            logger.info("resuming %s: %d of %d regions incomplete", out_s, len(todo), len(plan))
        else:
            probe = cl.submit(
                _probe,
                extractor_factory,
                records[:_PROBE_LIMIT],
                device,
                pure=False,
                retries=retries,
                resources=dict(resources) if resources else None,
            ).result()
            if probe["ragged"]:
                raise ValidationError(
                    f"the extractor writes ragged variables {sorted(probe['ragged'])}, which parallel region "
                    "writers do not support; extract them with --scheduler local, or choose dense outputs "
                    "(e.g. DETR extract_type='decoder')"
                )
            cr = (
                int(chunk_rows)
                if chunk_rows is not None
                else _chunk_rows_for(probe, row_dim, id_name)
            )
            plan = plan_regions(
                len(records),
                cr,
                rows_per_task,
                n_workers=summary.n_workers,
                ids=[rec.image_id for rec in records],
            )
            _create_store(
                out_s,
                probe,
                plan,
                row_dim=row_dim,
                id_name=id_name,
                attrs=attrs,
                storage_options=storage_options,
                overwrite=overwrite,
            )
            todo = list(range(len(plan)))
        regions, slices = plan.regions, plan.item_slices
        summary.n_tasks = len(todo)
        futures = {}
        for k in todo:
            a, b = slices[k]
            fut = cl.submit(
                _extract_region,
                extractor_factory,
                out_s,
                regions[k],
                records[a:b],
                batch_size=batch_size,
                num_workers=num_workers,
                device=device,
                flush_interval=flush_interval,
                storage_options=storage_options,
                write_chunks=write_chunks,
                key=f"embstore-extract-{fingerprint[:16]}-{regions[k][0]}-{regions[k][1]}-{time.time_ns()}",
                retries=int(retries),
                pure=False,
                resources=dict(resources) if resources else None,
            )
            futures[fut] = k
        from tqdm.auto import tqdm

        disable = (not progress) if progress is not None else not sys.stderr.isatty()
        bar = tqdm(
            total=sum(slices[k][1] - slices[k][0] for k in todo),
            unit="img",
            desc="extract (dask)",
            disable=disable,
        )
        skipped: list[tuple[Any, str]] = []
        try:
            for fut in distributed.as_completed(list(futures)):
                k = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:
                    msg = f"region {regions[k]} (images {slices[k][0]}..{slices[k][1] - 1}): {type(exc).__name__}: {exc}"
                    logger.error("task failed for good: %s", msg)
                    summary.failed.append(msg)
                    continue
                summary.regions.append(res)
                summary.written += res.written
                summary.already_done += res.already_done
                skipped.extend(res.skipped)
                bar.update(slices[k][1] - slices[k][0])
        finally:
            bar.close()
        if exists:
            done_regions = set(range(len(plan))) - set(todo)
            summary.already_done += sum(slices[k][1] - slices[k][0] for k in done_regions)
        summary.skipped = len(skipped)
        summary.skipped_examples = skipped[:5]
        summary.regions.sort(key=lambda r: r.region)
        summary.seconds = time.perf_counter() - t0
        summary.images_per_s = summary.written / summary.seconds if summary.seconds > 0 else 0.0
        _finish_store(out_s, storage_options, skipped, summary, getattr(dataset, "persons", None))
    if summary.failed:
        raise DistributedTaskError(
            f"{len(summary.failed)} of {summary.n_tasks} extraction tasks failed after {retries} retries: "
            + "; ".join(summary.failed[:3])
            + ". Rows they committed are kept; fix the cause and re-run the same command to resume"
        )
    logger.info("%s", summary)
    return summary


def _finish_store(
    out: str,
    storage_options: dict[str, Any] | None,
    skipped: list[tuple[Any, str]],
    summary: ExtractionSummary,
    persons: Any = None,
) -> None:
    """Record skipped images, the annotation table and the run (main-region writer, after all tasks)."""
    import datetime as _dt

    from embstore import Store

    try:
        with Store.open(out, mode="a", storage_options=storage_options) as st:
            if persons is not None and len(persons):
                st.write_table("persons", clean_table(persons))
            if skipped:
                old = st.skipped
                have = set(np.asarray(old["id"]).astype(str).tolist()) if len(old) else set()
                new = [(i, r) for i, r in skipped if str(i) not in have]
                if new:
                    st.record_skipped([i for i, _ in new], [r for _, r in new])
            runs = list(st.attrs.get("runs", []) or [])
            runs.append(
                {
                    "scheduler": "dask",
                    "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                    "summary": summary.to_dict(),
                }
            )
            st.update_attrs(runs=runs)
    except Exception:
        logger.exception("could not record the run in the attributes of %s", out)


def run_with_scheduler(args: Any, local: Callable[[], Any], **distributed_kwargs: Any) -> Any:
    """Run an extraction command locally or on Dask, as its ``--scheduler`` says.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments including those of :func:`add_dask_arguments`.
    local : callable
        ``local() -> summary``: the command's single-process run.
    **distributed_kwargs
        Arguments of :func:`extract_distributed` (``extractor_factory``,
        ``dataset``, ``out``, ``id_name``, ``batch_size``, ...); ``dataset``
        may be a zero-argument callable, called only for a Dask run. The cluster
        options (``--workers``, ``--address``, ``--memory-limit``,
        ``--rows-per-task``, ``--retries``) are taken from ``args``.

    Returns
    -------
    ExtractionSummary

    Raises
    ------
    ValidationError
        ``--workers``/``--address`` without ``--scheduler dask``.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_dask_arguments(p)
    >>> run_with_scheduler(p.parse_args([]), lambda: "ran locally")
    'ran locally'
    """
    from embstore.distributed.cluster import client_from_args

    if getattr(args, "scheduler", "local") != "dask":
        if getattr(args, "workers", None) is not None or getattr(args, "address", None) is not None:
            raise ValidationError(
                "--workers/--address only apply with --scheduler dask; add --scheduler dask"
            )
        return local()
    kwargs = dict(distributed_kwargs)
    dataset = kwargs.get("dataset")
    if callable(dataset) and not hasattr(dataset, "__iter__"):
        kwargs["dataset"] = dataset()  # built only for a Dask run
    if getattr(args, "rows_per_task", None) is not None:
        kwargs.setdefault("rows_per_task", args.rows_per_task)
    kwargs.setdefault("retries", getattr(args, "retries", 2))
    from embstore.distributed.cluster import FAST_ALLOC_ENV

    with client_from_args(
        args, daemon=int(kwargs.get("num_workers", 0) or 0) == 0, worker_env=FAST_ALLOC_ENV
    ) as client:
        return extract_distributed(client=client, **kwargs)
