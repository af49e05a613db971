"""The extraction pipeline: DataLoader -> model -> background writer -> Store.

:func:`run_extraction` streams an :class:`~extractors.datasets.ImageDataset`
through an extractor into an :class:`embstore.Store`::

    DataLoader workers          main thread                 writer thread
    load_image + preprocess --> extractor.extract_batch --> D2H copy, dtype cast,
    + collate                   (on the device)             store.append / record_skipped

* Compute never waits on disk: results go into a bounded queue
  (``queue_size`` batches) consumed by one writer thread. An error in the
  writer is re-raised in the caller at the next batch.
* Resume: ids already committed in the store (``store.missing``) and ids
  recorded as skipped are not extracted again, so re-running the same
  command finishes an interrupted run.
* Ctrl-C (``KeyboardInterrupt``) or ``SIGTERM``: batches already computed are
  written, the store is flushed (its commit record makes those rows
  visible) and the interrupt propagates. A ``SIGKILL`` loses only rows not yet
  committed; the store still opens (its commit protocol guarantees it).
* Bad images (missing, empty, truncated, corrupt) are skipped, counted and
  recorded with :meth:`embstore.Store.record_skipped`; the run never aborts
  for them.
* A tqdm progress bar (images/s, ETA) is shown on a terminal and is silent
  when stderr is not a TTY (logs, CI).

Extractor protocol
------------------
The pipeline knows only :mod:`extractors.protocol`: ``variables``,
``ragged``, ``dtypes``, ``preprocess``, ``collate``, ``extract_batch(batch)
-> Batch`` and the optional ``finish_batch(batch) -> Batch`` (called on the
writer thread, before the copy and cast: the place for device-to-host work
such as cropping padded feature maps, so that it overlaps the next forward
pass). Records are :class:`~extractors.protocol.Record` s: image files, or
records with their own ``load()`` (SigLIP's panoptic crops). An extractor
with another API offers ``pipeline_extractor()`` (DETR does).

Examples
--------
A tiny random-weight model over two photos:

>>> import pathlib, torch
>>> from PIL import Image
>>> from skimage import data
>>> from embstore import Store
>>> from extractors.base import HookExtractor
>>> from extractors.datasets import folder_dataset
>>> folder = pathlib.Path(out_dir) / "photos"; folder.mkdir()
>>> Image.fromarray(data.astronaut()).save(folder / "a.png")
>>> Image.fromarray(data.chelsea()).save(folder / "b.png")
>>> _ = torch.manual_seed(0)
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
...                             torch.nn.Flatten())
>>> def tf(im):
...     return torch.from_numpy(np.asarray(im.resize((16, 16)), np.float32)).permute(2, 0, 1)
>>> ex = HookExtractor(model, {"feat": "2"}, preprocess=tf, dims={"feat": ("hidden",)})
>>> with Store.create(folder.parent / "run.zarr", variables=ex.variables) as st:
...     summary = run_extraction(ex, folder_dataset(folder), st, batch_size=2)
>>> summary.written, Store.open(folder.parent / "run.zarr").read("feat").shape
(2, (2, 4))
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from embstore._optional import attempt_import
from embstore.errors import ValidationError

from .base import to_numpy
from .datasets import ImageDataset, ImageRecord
from .protocol import Batch, as_batch, as_pipeline_extractor, duplicate_id_error, load_record
from .summary import ExtractionSummary

__all__ = ["ExtractionSummary", "as_pipeline_extractor", "run_extraction"]

logger = logging.getLogger(__name__)

_N_EXAMPLES = 5


# ------------------------------------------------------------------ loading
class _LoadSample:
    """DataLoader dataset: ``record -> (record, sample | None, reason, load coords)``."""

    def __init__(self, preprocess: Any) -> None:
        self.preprocess = preprocess

    def __getitem__(self, record: Any) -> tuple[Any, Any, str | None, dict[str, Any]]:
        sample, reason, coords = load_record(record, self.preprocess)
        return record, sample, reason, coords

    def __len__(self) -> int:  # pragma: no cover - not used with a batch sampler
        raise TypeError("length is given by the batch sampler")


class _Collate:
    """Split good and bad samples; collate the good ones."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate

    def __call__(self, items: list[tuple[Any, Any, str | None, dict[str, Any]]]) -> dict[str, Any]:
        good = [it for it in items if it[2] is None]
        bad = [(it[0], it[2]) for it in items if it[2] is not None]
        samples = [it[1] for it in good]
        batch = None
        if samples:
            batch = self.collate(samples) if self.collate is not None else samples
        return {
            "records": [it[0] for it in good],
            "load_coords": [it[3] for it in good],
            "batch": batch,
            "bad": bad,
        }


class _ResumeBatches:
    """Batch sampler run in the main process: drops ids already done, yields record lists.

    The committed and skipped ids are read once, before the writer thread
    starts, so the sampler never touches the store while it is being written.
    """

    def __init__(
        self,
        dataset: Any,
        store: Any,
        batch_size: int,
        resume: bool,
        retry_skipped: bool,
        block_size: int,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.block_size = max(block_size, batch_size)
        self.already_done = 0
        self.previously_skipped = 0
        self.done_ids: set[Any] = set()
        self.skip_ids: set[Any] = set()
        if resume and store is not None:
            self.done_ids = set(np.asarray(store.ids).tolist())
            if not retry_skipped:
                skipped = store.skipped
                if skipped is not None and len(skipped):
                    col = "id" if "id" in skipped.columns else skipped.columns[0]
                    self.skip_ids = set(np.asarray(skipped[col]).tolist()) - self.done_ids

    def _blocks(self) -> Iterator[list[ImageRecord]]:
        block: list[ImageRecord] = []
        for rec in self.dataset:
            block.append(rec)
            if len(block) >= self.block_size:
                yield block
                block = []
        if block:
            yield block

    def __iter__(self) -> Iterator[list[ImageRecord]]:
        batch: list[ImageRecord] = []
        seen: set[Any] = set()
        for block in self._blocks():
            if self.done_ids:
                keep = [r for r in block if r.image_id not in self.done_ids]
                self.already_done += len(block) - len(keep)
                block = keep
            if self.skip_ids:
                keep = [r for r in block if r.image_id not in self.skip_ids]
                self.previously_skipped += len(block) - len(keep)
                block = keep
            for rec in block:
                if rec.image_id in seen:
                    raise duplicate_id_error(rec)
                seen.add(rec.image_id)
                batch.append(rec)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch


# ------------------------------------------------------------------- writer
def _category(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _stack_coords(
    records: Sequence[Any],
    load_coords: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Per-row coordinates: each record's, then those found loading it, then the model's."""
    names: list[str] = []
    for rec in records:
        for k in rec.coords:
            if k not in names:
                names.append(k)
    coords: dict[str, np.ndarray] = {}
    for k in names:
        coords[k] = np.asarray([rec.coords.get(k) for rec in records])
    loaded = [k for k in ("height", "width") if any(k in c for c in load_coords)]
    for k in loaded:
        coords[k] = np.asarray([c.get(k, 0) for c in load_coords], dtype=np.int64)
    for k, v in extra.items():
        coords[k] = np.asarray(to_numpy(v))
    return coords


class _Writer(threading.Thread):
    """Background thread: D2H copy, dtype cast, store.append, record_skipped."""

    _STOP = object()

    def __init__(
        self,
        store: Any,
        dtypes: Mapping[str, str],
        write: bool,
        queue_size: int,
        flush_interval: float | None,
        finish: Any = None,
    ) -> None:
        super().__init__(name="embstore-writer", daemon=True)
        self.finish_fn = finish
        self.busy = 0.0
        self.store = store
        self.dtypes = dict(dtypes)
        self.write = write
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self.error: BaseException | None = None
        self.written = 0
        self.skipped: list[tuple[Any, str]] = []
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.dense = set(getattr(store, "variables", {}) or {}) if store is not None else set()
        self.ragged = (
            set(getattr(store, "ragged_variables", {}) or {}) if store is not None else set()
        )

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is self._STOP:
                return
            if self.error is not None:
                continue  # drain without work after a failure
            t0 = time.perf_counter()
            try:
                self._handle(item)
            except BaseException as exc:
                self.error = exc
            self.busy += time.perf_counter() - t0

    def _cast(self, name: str, value: Any) -> Any:
        arr = to_numpy(value)
        dtype = self.dtypes.get(name)
        if dtype is None:
            return arr
        if isinstance(arr, list):
            return [a.astype(dtype, copy=False) for a in arr]
        return arr.astype(dtype, copy=False)

    def _handle(self, item: tuple[str, Any]) -> None:
        kind, payload = item
        if kind == "skipped":
            ids, reasons = payload
            self.skipped.extend(zip(ids, reasons))
            if self.write and self.store is not None:
                self.store.record_skipped(list(ids), list(reasons))
            return
        records, load_coords, out = payload
        if self.finish_fn is not None:
            out = as_batch(self.finish_fn(out))
        data = {}
        for name, value in out.data.items():
            if self.store is not None and name not in self.dense and name not in self.ragged:
                continue  # e.g. helper outputs the store does not keep
            data[name] = self._cast(name, value)
        ids = [r.image_id for r in records]
        coords = _stack_coords(records, load_coords, out.coords)
        hw = {
            k: [tuple(int(x) for x in p) for p in to_numpy(v)]
            for k, v in out.ragged_hw.items()
            if k in data
        }
        if self.write and self.store is not None:
            self.store.append(ids, data, coords=coords, ragged_hw=hw or None)
            if (
                self.flush_interval is not None
                and time.monotonic() - self._last_flush >= self.flush_interval
            ):
                self.store.flush()
                self._last_flush = time.monotonic()
        self.written += len(ids)

    def put(self, item: Any) -> None:
        """Queue an item; raise the writer's error instead of blocking forever."""
        while True:
            self.raise_error()
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Write everything queued, then stop (also after errors)."""
        while self.is_alive():
            try:
                self.queue.put(self._STOP, timeout=0.2)
                break
            except queue.Full:
                if self.error is not None:
                    with contextlib.suppress(queue.Empty):
                        self.queue.get_nowait()
        self.join()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while extracting (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # pragma: no cover - not in the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _progress(total: int | None, progress: bool | None) -> Any:
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress  # None: off unless a TTY
    if progress is None and not sys.stderr.isatty():
        disable = True
    return tqdm(
        total=total, unit="img", desc="extract", disable=disable, dynamic_ncols=True, smoothing=0.1
    )


def run_extraction(
    extractor: Any,
    dataset: ImageDataset | Sequence[ImageRecord] | Sequence[Any],
    store: Any,
    batch_size: int = 16,
    num_workers: int = 0,
    device: Any = None,
    *,
    resume: bool = True,
    retry_skipped: bool = False,
    write: bool = True,
    queue_size: int = 4,
    block_size: int = 4096,
    flush_interval: float | None = 60.0,
    progress: bool | None = None,
    prefetch_factor: int = 2,
) -> ExtractionSummary:
    """Extract every image of ``dataset`` into ``store``.

    Parameters
    ----------
    extractor : object
        Implements :class:`extractors.protocol.Extractor` (e.g.
        :class:`extractors.base.HookExtractor`), or offers
        ``pipeline_extractor()`` (e.g. :class:`extractors.detr.DetrExtractor`).
    dataset : ImageDataset or sequence of Record
        What to extract; iterated once, in order (text lists stream).
        Records are :class:`~extractors.protocol.Record` s (image files, or
        records with their own ``load()``, such as SigLIP crops).
    store : embstore.Store or None
        Opened for appending. ``None`` (with ``write=False``) runs without a
        store, e.g. to benchmark.
    batch_size : int, default 16
        Images per forward pass.
    num_workers : int, default 0
        DataLoader worker processes for decoding and preprocessing; 0 loads
        in the main thread.
    device : str or torch.device, optional
        When given, the extractor is moved there first (``extractor.to``).
        Normally the extractor already lives on its device.
    resume : bool, default True
        Skip ids the store already has (and ids it recorded as skipped).
    retry_skipped : bool, default False
        Try again images an earlier run recorded as skipped.
    write : bool, default True
        ``False`` does everything (including the device-to-host copy and the
        dtype cast) except writing to the store: the baseline of
        ``bench/extract_overhead.py``.
    queue_size : int, default 4
        Computed batches that may wait for the writer.
    block_size : int, default 4096
        Ids checked against the store at once when resuming.
    flush_interval : float or None, default 60
        Seconds between store flushes (commit points) while writing; a
        killed run loses at most this much work. ``None`` flushes at the end
        only.
    progress : bool or None, default None
        ``None``: a progress bar only when stderr is a terminal.
    prefetch_factor : int, default 2
        Batches each worker loads ahead.

    Returns
    -------
    ExtractionSummary
        Rows written, skipped (with reasons), already present, seconds,
        images/s.

    Raises
    ------
    ValidationError
        Bad arguments or duplicate ids.
    KeyboardInterrupt
        After Ctrl-C / SIGTERM, once computed batches are written and the
        store is flushed.
    Exception
        Whatever the writer thread or the extractor raised (e.g. a store
        error); batches committed before it stay in the store.
    """
    torch = attempt_import("torch")
    if batch_size < 1:
        raise ValidationError(f"batch_size={batch_size}; pass a positive integer")
    if num_workers < 0:
        raise ValidationError(f"num_workers={num_workers}; pass 0 or more")
    if store is None and write:
        raise ValidationError("store is None; pass a Store opened for appending, or write=False")
    if device is not None:
        mover = getattr(extractor, "to", None)
        if mover is None:
            raise ValidationError(
                f"device={device!r} given but {type(extractor).__name__} has no .to(); "
                "create the extractor on that device instead"
            )
        mover(device)

    extractor = as_pipeline_extractor(extractor)
    dtypes = dict(getattr(extractor, "dtypes", {}) or {})
    sampler = _ResumeBatches(
        dataset, store if resume else None, batch_size, resume, retry_skipped, block_size
    )
    compute_device = getattr(extractor, "device", None)
    pin = bool(compute_device is not None and torch.device(compute_device).type == "cuda")
    loader_kwargs: dict[str, Any] = {}
    if num_workers > 0:
        loader_kwargs["prefetch_factor"] = prefetch_factor
    loader = torch.utils.data.DataLoader(
        _LoadSample(getattr(extractor, "preprocess", None)),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_Collate(getattr(extractor, "collate", None)),
        pin_memory=pin,
        **loader_kwargs,
    )
    total = getattr(dataset, "length", None)
    if total is None and hasattr(dataset, "__len__") and not isinstance(dataset, ImageDataset):
        total = len(dataset)
    summary = ExtractionSummary()
    writer = _Writer(
        store, dtypes, write, queue_size, flush_interval, getattr(extractor, "finish_batch", None)
    )
    bar = _progress(total, progress)
    start = time.perf_counter()
    failed = False
    writer.start()
    try:
        with _sigterm_as_interrupt():
            done_before = 0
            n_bad = 0
            for item in loader:
                if item["bad"]:
                    ids = [rec.image_id for rec, _ in item["bad"]]
                    reasons = [reason for _, reason in item["bad"]]
                    for i, r in zip(ids, reasons):  # the first few loudly, the rest at INFO
                        n_bad += 1
                        logger.log(
                            logging.WARNING if n_bad <= _N_EXAMPLES else logging.INFO,
                            "skipping image %r: %s",
                            i,
                            r,
                        )
                    writer.put(("skipped", (ids, reasons)))
                if item["records"]:
                    out: Batch = as_batch(extractor.extract_batch(item["batch"]))
                    writer.put(("rows", (item["records"], item["load_coords"], out)))
                bar.update(
                    len(item["records"])
                    + len(item["bad"])
                    + sampler.already_done
                    + sampler.previously_skipped
                    - done_before
                )
                done_before = sampler.already_done + sampler.previously_skipped
                bar.set_postfix(skipped=len(writer.skipped), refresh=False)
            bar.update(sampler.already_done + sampler.previously_skipped - done_before)
    except KeyboardInterrupt as exc:
        failed = True
        summary.interrupted = True
        vars(exc)["summary"] = summary  # what was committed, for callers that want it
        logger.warning("interrupted: writing computed batches and committing the store")
        raise
    except BaseException:
        failed = True
        raise
    finally:
        bar.close()
        writer.finish()
        if write and store is not None:
            try:
                store.flush()
            except Exception:
                if not failed and writer.error is None:
                    raise
                logger.exception("flushing the store after an error failed")
        summary.seconds = time.perf_counter() - start
        summary.written = writer.written
        summary.skipped = len(writer.skipped)
        summary.skipped_reasons = dict(Counter(_category(r) for _, r in writer.skipped))
        summary.skipped_examples = writer.skipped[:_N_EXAMPLES]
        summary.already_done = sampler.already_done
        summary.previously_skipped = sampler.previously_skipped
        summary.writer_seconds = writer.busy
        summary.images_per_s = summary.written / summary.seconds if summary.seconds > 0 else 0.0
        if summary.interrupted:
            logger.warning("%s", summary)
    writer.raise_error()
    logger.info("%s", summary)
    return summary
