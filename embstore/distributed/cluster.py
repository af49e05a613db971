"""Connecting to Dask: a scheduler address, a local cluster, or the current client.

:func:`connect` is the one entry point: it yields a
:class:`dask.distributed.Client` and closes what it started. Clusters on
SLURM/PBS (``dask-jobqueue``) or Kubernetes (``dask-kubernetes``) are started
by those packages; pass their scheduler address (or the client) to embstore.

:func:`add_dask_arguments` adds the ``--scheduler dask [--workers N |
--address tcp://...]`` options to an ``argparse`` parser and
:func:`client_from_args` turns the parsed options into :func:`connect`.

Examples
--------
>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_dask_arguments(p)
>>> args = p.parse_args(["--scheduler", "dask", "--workers", "2"])
>>> args.scheduler, args.workers, args.address
('dask', 2, None)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from .._optional import attempt_import
from ..errors import ValidationError

__all__ = ["FAST_ALLOC_ENV", "add_dask_arguments", "client_from_args", "connect", "n_workers_of"]

logger = logging.getLogger(__name__)

#: Environment for worker processes that run models. Dask workers start with
#: ``MALLOC_TRIM_THRESHOLD_=65536`` (return freed memory to the OS at once),
#: which makes every large allocation fault in fresh pages: on the development
#: VM a small iresnet ran 1.5-1.9x slower in a worker than in a plain process.
#: These glibc thresholds (see DESIGN.md) restore the plain-process speed.
FAST_ALLOC_ENV: dict[str, int] = {
    "MALLOC_TRIM_THRESHOLD_": 2**30,
    "MALLOC_MMAP_THRESHOLD_": 2**25,
}


@contextlib.contextmanager
def connect(
    address: Any = None,
    n_workers: int | None = None,
    *,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = "auto",
    processes: bool = True,
    daemon: bool = True,
    worker_env: Mapping[str, Any] | None = None,
    **cluster_kwargs: Any,
) -> Iterator[Any]:
    """Yield a Dask client: to ``address``, to a new local cluster, or the current one.

    Parameters
    ----------
    address : str or Client or Cluster, optional
        ``"tcp://host:8786"`` of a running scheduler (e.g. started by
        ``dask-jobqueue`` or ``dask-kubernetes``), a ``Client`` (used as is,
        not closed) or a cluster object (its scheduler is used).
    n_workers : int, optional
        Start a :class:`~dask.distributed.LocalCluster` with this many worker
        processes (closed on exit). Without ``address`` and ``n_workers``,
        the current default client is used, or a local cluster with one
        worker per core is started.
    threads_per_worker : int, default 1
        Threads per local worker (1 suits a model per worker).
    memory_limit : str or int, optional
        Per-worker memory limit of a local cluster (``"2GiB"``); dask pauses a
        worker near it and restarts one that exceeds it.
    processes : bool, default True
        Local workers are processes (False: threads in this process).
    daemon : bool, default True
        Local worker processes are daemonic. Pass False when tasks start
        processes of their own (e.g. a torch DataLoader with
        ``num_workers > 0``).
    worker_env : dict, optional
        Environment variables of local worker processes, set before they
        start (e.g. :data:`FAST_ALLOC_ENV` for model inference).
    **cluster_kwargs
        More :class:`~dask.distributed.LocalCluster` arguments.

    Yields
    ------
    dask.distributed.Client

    Raises
    ------
    MissingDependencyError
        ``distributed`` is not installed (``pip install "embstore[dask]"``).
    ValidationError
        Both ``address`` and ``n_workers`` were given, or ``n_workers < 1``.

    Examples
    --------
    >>> with connect(n_workers=1, processes=False) as client:
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    distributed = attempt_import("dask.distributed")
    if address is not None and n_workers is not None:
        raise ValidationError(
            f"address={address!r} and n_workers={n_workers} both given; pass --address to use a running "
            "cluster or --workers to start a local one, not both"
        )
    if n_workers is not None and (isinstance(n_workers, bool) or int(n_workers) < 1):
        raise ValidationError(f"n_workers={n_workers!r}; pass a positive number of workers")
    if isinstance(address, distributed.Client):
        yield address
        return
    if address is not None:
        target = getattr(address, "scheduler_address", address)
        client = distributed.Client(target)
        try:
            yield client
        finally:
            client.close()
        return
    if n_workers is None:
        try:
            yield distributed.default_client()
            return
        except ValueError:
            pass
    import dask

    kwargs: dict[str, Any] = {
        "n_workers": n_workers,
        "threads_per_worker": threads_per_worker,
        "processes": processes,
        "memory_limit": memory_limit,
        "dashboard_address": None,
    }
    kwargs.update(cluster_kwargs)
    config: dict[str, Any] = {"distributed.worker.daemon": bool(daemon)}
    for key, value in (worker_env or {}).items():
        config[f"distributed.nanny.pre-spawn-environ.{key}"] = value
    with dask.config.set(config):
        cluster = distributed.LocalCluster(**kwargs)
    try:
        client = distributed.Client(cluster)
        try:
            logger.info("started a local Dask cluster: %s", cluster)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def n_workers_of(client: Any) -> int:
    """Number of workers a client currently sees (at least 1).

    Parameters
    ----------
    client : dask.distributed.Client

    Returns
    -------
    int
    """
    try:
        return max(1, len(client.scheduler_info().get("workers", {})))
    except Exception:
        return 1


def add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--scheduler {local,dask}``, ``--workers``, ``--address`` and friends.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        An extraction command's parser.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_dask_arguments(p)
    >>> p.parse_args([]).scheduler
    'local'
    """
    g = parser.add_argument_group("scale-out on Dask (see the 'Scaling out' docs)")
    g.add_argument(
        "--scheduler",
        choices=["local", "dask"],
        default="local",
        help="local: this process (default); dask: one task per chunk-aligned row range, "
        "run by Dask workers into one store",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with --scheduler dask: start a local cluster of N worker processes",
    )
    g.add_argument(
        "--address",
        default=None,
        help="with --scheduler dask: scheduler of a running cluster (tcp://host:8786)",
    )
    g.add_argument(
        "--memory-limit",
        default="auto",
        help="per-worker memory limit of a local cluster (e.g. 8GiB; default auto)",
    )
    g.add_argument(
        "--rows-per-task",
        type=int,
        default=None,
        help="rows per Dask task (a multiple of the store's chunk rows; default: ~4 tasks per worker)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=2,
        help="times a failed task is retried (a task whose worker dies is always rescheduled)",
    )


def client_from_args(
    args: argparse.Namespace, **kwargs: Any
) -> contextlib.AbstractContextManager[Any]:
    """:func:`connect` configured by the options of :func:`add_dask_arguments`.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments.
    **kwargs
        More :func:`connect` arguments (e.g. ``daemon=False``).

    Returns
    -------
    context manager yielding a dask.distributed.Client

    Raises
    ------
    ValidationError
        ``--workers``/``--address`` without ``--scheduler dask``.
    """
    scheduler = getattr(args, "scheduler", "local")
    workers = getattr(args, "workers", None)
    address = getattr(args, "address", None)
    if scheduler != "dask" and (workers is not None or address is not None):
        raise ValidationError(
            "--workers/--address only apply with --scheduler dask; add --scheduler dask"
        )
    memory_limit = getattr(args, "memory_limit", "auto")
    return connect(address=address, n_workers=workers, memory_limit=memory_limit, **kwargs)
