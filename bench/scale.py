"""Benchmark: Dask scale-out of extraction and larger-than-memory analysis.

Part 1, extraction: ``--images`` small photos (skimage data, cropped) through a
small ArcFace-style iresnet (one block per stage, CPU, one thread per
worker), written by :func:`extractors.distributed.extract_distributed` into
one store with a LocalCluster of 1 and of 2 worker processes (started by
:func:`embstore.distributed.connect` with ``FAST_ALLOC_ENV``, as
``extract_distributed`` does; with dask's default ``MALLOC_TRIM_THRESHOLD_``
the model ran 1.5-1.9x slower in a worker on the development VM). Workers are
warmed up first (torch imported, model built), so the figures are the
steady-state throughput. Baseline, measured in the same run: the same
extraction in this process with ``run_extraction`` (one torch thread).
Printed: images/s and the ratios 1 worker / baseline, 2 workers / 1 worker,
and, as the machine's real parallel capacity (other jobs share the cores),
two plain processes splitting the images without Dask.

Part 2, analysis: a store of ``--store-mib`` MiB of float16 query embeddings
(image x 100 queries x 256) is analysed by a LocalCluster of 2 workers whose
memory limit is ``--memory-limit-mib`` (the store is at least 4x that):
per-skin statistics of mean-pooled vectors, exact k-NN of 8 queries over all
unpooled vectors, pooled vectors written to Zarr, and threshold clustering
of the pooled vectors. Each worker's peak RSS is sampled every 20 ms.
Baseline, measured in the same run: one threaded pass computing the mean of
every stored value (``dask`` local threads), i.e. the cost of reading the
store once. Printed: seconds, ratio to the baseline, peak RSS per worker vs
the limit.

Usage::

    python bench/scale.py                      # about 3-5 minutes on 2 loaded cores
    python bench/scale.py --images 96 --store-mib 2048 --memory-limit-mib 512
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Q, H = 100, 256


# ----------------------------------------------------------------- part 1
def small_face(device: str = "cpu"):
    """Seeded iresnet with one block per stage, 128-d embeddings."""
    import torch

    from extractors.face import FaceExtractor
    from extractors.face.iresnet import IResNet

    torch.manual_seed(0)
    return FaceExtractor(IResNet((1, 1, 1, 1), num_features=128), device=device, dtype="float16")


def _warm(device: str = "cpu") -> int:
    import torch

    torch.set_num_threads(1)
    from extractors.distributed import _extractor

    _extractor(small_face, device)
    return os.getpid()


def make_photos(root: Path, n: int) -> list:
    from PIL import Image
    from skimage import data

    from extractors.datasets import ImageRecord

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel"]
    arrays = [getattr(data, k)() for k in names]
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    recs = []
    for i in range(n):
        a = arrays[i % len(arrays)]
        y, x = rng.integers(0, a.shape[0] // 3), rng.integers(0, a.shape[1] // 3)
        im = Image.fromarray(a[y : y + a.shape[0] // 2, x : x + a.shape[1] // 2])
        im.thumbnail((160, 160))
        p = root / f"{i:05d}.png"
        im.save(p)
        recs.append(ImageRecord(i, str(p), {"path": p.name}))
    return recs


def _plain_process(recs: list, batch: int, path: str, barrier, results) -> None:
    """One plain process (no Dask): warm up, wait for the others, extract."""
    import torch

    from embstore import Store
    from extractors.pipeline import run_extraction

    torch.set_num_threads(1)
    fx = small_face()
    run_extraction(fx, recs[:batch], None, batch_size=batch, write=False, progress=False)
    barrier.wait()
    t = time.perf_counter()
    with Store.create(path, id_name="image_id", variables=fx.variables, dtypes=fx.dtypes) as st:
        run_extraction(fx, recs, st, batch_size=batch, progress=False)
    results.put(time.perf_counter() - t)


def plain_parallel(tmp: Path, recs: list, batch: int, n: int) -> float:
    """Images/s of ``n`` plain processes splitting the images (the machine's parallel capacity)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    parts = [recs[i::n] for i in range(n)]
    procs = [
        ctx.Process(
            target=_plain_process,
            args=(parts[i], batch, str(tmp / f"plain{n}-{i}.zarr"), barrier, results),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    times = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    return len(recs) / max(times)


def bench_extraction(tmp: Path, n_images: int, batch: int) -> dict:
    import cloudpickle
    import torch

    from embstore import Store
    from extractors.distributed import extract_distributed
    from extractors.pipeline import run_extraction

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    recs = make_photos(tmp / "photos", n_images)
    out: dict = {}
    # baseline: this process, one torch thread
    torch.set_num_threads(1)
    fx = small_face()
    run_extraction(fx, recs[:batch], None, batch_size=batch, write=False, progress=False)  # warm-up
    with Store.create(
        tmp / "local.zarr", id_name="image_id", variables=fx.variables, dtypes=fx.dtypes
    ) as st:
        t = time.perf_counter()
        run_extraction(fx, recs, st, batch_size=batch, progress=False)
    out["baseline"] = n_images / (time.perf_counter() - t)
    out["plain2"] = plain_parallel(tmp, recs, batch, 2)
    from embstore.distributed.cluster import FAST_ALLOC_ENV, connect

    for workers in (1, 2):
        with connect(n_workers=workers, worker_env=FAST_ALLOC_ENV) as client:
            client.run(_warm)
            t = time.perf_counter()
            s = extract_distributed(
                small_face,
                recs,
                str(tmp / f"dask{workers}.zarr"),
                client=client,
                batch_size=batch,
                device="cpu",
                chunk_rows=32,
                rows_per_task=32,
            )
            out[workers] = s.written / (time.perf_counter() - t)
            out[f"tasks{workers}"] = s.n_tasks
    with Store.open(tmp / "local.zarr") as a, Store.open(tmp / "dask2.zarr") as b:
        out["equal"] = a.ids.tolist() == b.ids.tolist() and bool(
            np.array_equal(a.embedding.values, b.embedding.values)
        )
    return out


# ----------------------------------------------------------------- part 2
def make_store(path: str, mib: int) -> tuple[int, int]:
    from embstore import Store

    per_image = Q * H * 2
    n = max(256, (mib * 2**20) // per_image // 256 * 256)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, H), dtype=np.float32)
    with Store.create(
        path,
        variables={"query_embeddings": ("query", "hidden")},
        chunk_rows=256,
        shapes={"query_embeddings": (Q, H)},
    ) as st:
        for a in range(0, n, 1024):
            b = min(n, a + 1024)
            which = rng.integers(0, len(centers), size=b - a)
            x = centers[which][:, None, :] + 0.5 * rng.standard_normal(
                (b - a, Q, H), dtype=np.float32
            )
            st.append(
                np.arange(a, b),
                {"query_embeddings": x.astype(np.float16)},
                coords={"skin": rng.integers(1, 11, size=b - a)},
            )
    return n, n * per_image


def _start_sampler(dask_worker=None) -> int:
    import psutil

    proc = psutil.Process()
    state = {"peak": proc.memory_info().rss, "run": True}

    def loop() -> None:
        while state["run"]:
            state["peak"] = max(state["peak"], proc.memory_info().rss)
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True).start()
    dask_worker._embstore_rss = state  # client.run passes the worker
    return state["peak"]


def _read_peak(dask_worker=None) -> int:
    return int(dask_worker._embstore_rss["peak"])


def bench_analysis(tmp: Path, store_mib: int, limit_mib: int) -> dict:
    import dask
    from distributed import Client, LocalCluster

    from embstore import EmbeddingAnalyzer, Store
    from embstore.distributed import analysis as dan

    path = str(tmp / "big.zarr")
    t = time.perf_counter()
    n, nbytes = make_store(path, store_mib)
    out: dict = {"n_images": n, "store_bytes": nbytes, "write_s": time.perf_counter() - t}
    an = EmbeddingAnalyzer(Store.open(path))
    # baseline: read every stored value once (threads, this process)
    t = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        float(an.store.query_embeddings.data.astype(np.float32).mean().compute())
    out["baseline_s"] = time.perf_counter() - t
    limit = limit_mib * 2**20
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=limit,
            dashboard_address=None,
        ) as cl,
        Client(cl) as client,
    ):
        client.run(lambda: __import__("embstore.distributed.analysis") and __import__("faiss"))
        out["start_rss"] = client.run(_start_sampler)
        q = np.random.default_rng(1).standard_normal((8, H), dtype=np.float32)
        steps = {
            "stats (mean pool, by skin)": lambda: dan.vector_stats(
                an, pool="mean", by="skin", block_rows=4096, client=client
            ),
            "exact 8-NN over all queries": lambda: dan.knn_search(
                an, q, k=8, pool=None, block_rows=32768, client=client
            ),
            "pooled vectors -> zarr": lambda: dan.write_vectors(
                an, str(tmp / "pooled.zarr"), pool="mean", block_rows=4096, client=client
            ),
            "cluster pooled (k=10, 0.9)": lambda: dan.threshold_groups(
                an, 0.9, k=10, pool="mean", block_rows=4096, client=client
            ),
        }
        out["steps"] = {}
        for name, fn in steps.items():
            t = time.perf_counter()
            res = fn()
            out["steps"][name] = time.perf_counter() - t
            if name.startswith("cluster"):
                out["n_clusters"] = int(res.n_groups)
        out["peak_rss"] = client.run(_read_peak)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128, help="images to extract (part 1)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--store-mib", type=int, default=1600, help="analysis store size (part 2)")
    ap.add_argument(
        "--memory-limit-mib", type=int, default=400, help="per-worker memory limit (part 2)"
    )
    ap.add_argument("--skip-extract", action="store_true")
    ap.add_argument("--skip-analysis", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="embstore-scale-"))
    try:
        if not args.skip_extract:
            r = bench_extraction(tmp, args.images, args.batch_size)
            print(f"== extraction: {args.images} images, small iresnet, CPU, 1 thread per worker")
            print(f"baseline (this process, run_extraction): {r['baseline']:.2f} images/s")
            print(
                f"dask 1 worker  ({r['tasks1']} tasks): {r[1]:.2f} images/s  ratio vs baseline {r[1] / r['baseline']:.2f}x"
            )
            print(
                f"dask 2 workers ({r['tasks2']} tasks): {r[2]:.2f} images/s  ratio vs 1 worker {r[2] / r[1]:.2f}x"
            )
            print(
                f"machine capacity: 2 plain processes (no Dask) {r['plain2']:.2f} images/s = "
                f"{r['plain2'] / r['baseline']:.2f}x one; dask 2 workers / 2 plain processes {r[2] / r['plain2']:.2f}x"
            )
            print(f"2-worker store equal to the single-process store, row for row: {r['equal']}")
        if not args.skip_analysis:
            r = bench_analysis(tmp, args.store_mib, args.memory_limit_mib)
            limit = args.memory_limit_mib * 2**20
            print(
                f"== analysis: store {r['store_bytes'] / 2**20:.0f} MiB ({r['n_images']} images x {Q} x {H} "
                f"float16) = {r['store_bytes'] / limit:.1f}x the per-worker memory limit "
                f"({args.memory_limit_mib} MiB), 2 workers"
            )
            print(
                f"baseline (one threaded read of the store in this process): {r['baseline_s']:.2f} s"
            )
            for name, sec in r["steps"].items():
                print(f"{name:32s} {sec:7.2f} s   ratio vs baseline {sec / r['baseline_s']:.2f}x")
            print(f"clusters found: {r['n_clusters']}")
            for addr, peak in r["peak_rss"].items():
                print(
                    f"worker {addr}: RSS at start {r['start_rss'][addr] / 2**20:.0f} MiB, peak "
                    f"{peak / 2**20:.0f} MiB = {peak / limit:.2f}x the limit, "
                    f"{peak / r['store_bytes']:.3f}x the store"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
