"""Dask scale-out: clusters, region plans and larger-than-memory analysis.

embstore runs on an existing distributed engine, :mod:`dask.distributed`,
rather than a home-made one:

* :mod:`embstore.distributed.cluster`: connect to a scheduler
  (``tcp://...``), start a :class:`~dask.distributed.LocalCluster`, and the
  ``--scheduler dask`` command-line options.
* :mod:`embstore.distributed.regions`: the partition of an input list into
  chunk-aligned row regions of one preallocated store (one task per region).
* :mod:`embstore.distributed.analysis`: statistics, exact k-NN search and
  threshold clustering computed block by block as dask tasks, on the local
  scheduler or a cluster, with memory per worker bounded by the block size
  (its ``cluster`` function is not re-exported here: the name
  ``embstore.distributed.cluster`` is the module of :func:`connect`).

The torch side (running extractors in dask tasks) lives in
:mod:`extractors.distributed`.

Importing this package imports neither :mod:`dask.distributed` nor torch;
names are resolved on first use.

Examples
--------
>>> from embstore.distributed import plan_regions
>>> plan_regions(10, chunk_rows=4, rows_per_task=4).regions
[(0, 4), (4, 8), (8, 12)]
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__ = [
    "RegionPlan",
    "add_dask_arguments",
    "client_from_args",
    "connect",
    "ids_fingerprint",
    "knn_search",
    "knn_self",
    "plan_regions",
    "threshold_groups",
    "vector_stats",
    "write_vectors",
]

_LAZY = {
    "connect": ".cluster",
    "add_dask_arguments": ".cluster",
    "client_from_args": ".cluster",
    "RegionPlan": ".regions",
    "plan_regions": ".regions",
    "ids_fingerprint": ".regions",
    "vector_stats": ".analysis",
    "knn_search": ".analysis",
    "knn_self": ".analysis",
    "threshold_groups": ".analysis",
    "write_vectors": ".analysis",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())
