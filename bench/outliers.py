"""Outlier scores at scale through ``EmbeddingAnalyzer.outliers``, timed.

Writes an N x 512 float16 store of L2-normalised vectors: identities of
exactly ``--per-id`` photos (centre + noise, cosine ~0.8 between photos of
one identity) plus 0.1% planted outliers (random directions, far from every
identity). Then runs ``an.outliers(k)`` (``kind="auto"``: exact scan below
1M vectors, IVF with nprobe=8 from 1M on, then 8x that many top scores
searched again with 64x the probes, then the top 0.5% (>= 1000)
re-scored exactly) and reports

- wall time (store writing is not counted), CPU time and peak RSS;
- recall of the planted outliers: the share of them among the top-m scores
  (m = number planted);
- the baseline measured in the same run: the exact block-wise scan on a
  sample of queries (``--exact-sample``), extrapolated to all N queries, and
  how far the index's scores are from the exact ones on that sample.

Usage::

    python bench/outliers.py                       # quick: 50k, exact
    python bench/outliers.py --n 100000 --kind ivf
    nice -n 19 python bench/outliers.py --n 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # steady allocations (see DESIGN.md)
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_="1048576",
        MALLOC_TRIM_THRESHOLD_="268435456",
        MALLOC_TOP_PAD_="268435456",
    )
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

import numpy as np

from embstore import EmbeddingAnalyzer, Store
from embstore.discovery.outliers import scores_from_neighbors
from embstore.search import knn_search


def planted(n: int, d: int, seed: int = 0, per_id: int = 10, out_frac: float = 0.001):
    """float16 unit vectors in blocks, plus the boolean truth of planted outliers."""
    rng = np.random.default_rng(seed)
    n_out = max(1, int(out_frac * n))
    n_in = n - n_out
    n_id = max(1, n_in // per_id)
    ident = rng.permutation(np.arange(n_in) % n_id)
    centers = rng.standard_normal((n_id, d), dtype=np.float32)
    is_out = np.zeros(n, bool)
    is_out[rng.choice(n, n_out, replace=False)] = True
    where_in = np.flatnonzero(~is_out)
    x = np.empty((n, d), np.float16)
    for s in range(0, n_in, 65536):
        e = min(n_in, s + 65536)
        v = centers[ident[s:e]] + 0.5 * rng.standard_normal((e - s, d), dtype=np.float32)
        x[where_in[s:e]] = v / np.linalg.norm(v, axis=1, keepdims=True)
    v = rng.standard_normal((n_out, d), dtype=np.float32)
    x[is_out] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return x, is_out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kind", default="auto", help="auto, exact, ivf, hnsw")
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--exact-sample", type=int, default=1000, help="queries of the exact baseline")
    ap.add_argument("--dir", default=None, help="where to write the store (default: a temp dir)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench-outliers-", dir=args.dir)
    t0 = time.perf_counter()
    x, is_out = planted(args.n, args.dim)
    path = os.path.join(tmp, "o.zarr")
    with Store.create(
        path, row_dim="image", id_name="image_id", variables={"embedding": ("hidden",)}
    ) as st:
        for s in range(0, args.n, 65536):
            e = min(args.n, s + 65536)
            st.append(ids=np.arange(s, e), data={"embedding": x[s:e]})
    print(
        f"data: {args.n} x {args.dim} float16 ({x.nbytes / 2**20:.0f} MiB), {is_out.sum()} planted outliers; "
        f"store written in {time.perf_counter() - t0:.1f} s (not counted)"
    )

    an = EmbeddingAnalyzer(path)
    t0, c0 = time.perf_counter(), time.process_time()
    kind = ("ivf" if args.n >= 1_000_000 else "exact") if args.kind == "auto" else args.kind
    if kind != "exact":  # build first (cached on the analyzer) to time the two steps apart
        an.build_index("embedding", "mean", kind, "cosine", save=False)
        print(
            f"index {kind}: built in {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU"
        )
    df = an.outliers(k=args.k, variable="embedding", kind=args.kind, nprobe=args.nprobe)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    m = int(is_out.sum())
    top = df["image_id"].to_numpy()[:m]
    recall = float(is_out[top].mean())
    print(
        f"an.outliers(k={args.k}, kind={args.kind!r}): {wall:.1f} s wall = {wall / 60:.2f} min, "
        f"CPU {cpu:.1f} s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"peak RSS {peak:.2f} GiB (data {x.nbytes / 2**30:.2f} GiB as float16)")
    print(f"recall of planted outliers in the top {m}: {recall:.4f} (goal >= 0.95)")

    # Baseline in the same run: exact block-wise scan for a sample of queries.
    q = np.random.default_rng(1).choice(args.n, min(args.exact_sample, args.n), replace=False)
    t0 = time.perf_counter()
    s, i = knn_search(x, x[q].astype(np.float32), args.k + 1)
    t_ex = time.perf_counter() - t0
    exact = np.array(
        [
            scores_from_neighbors(int(r), s[j : j + 1], i[j : j + 1], args.k)[0]
            for j, r in enumerate(q)
        ]
    )
    got = df.set_index("image_id")["score"].reindex(q).to_numpy()
    est = t_ex * args.n / len(q)
    print(
        f"baseline exact scan: {len(q)} queries in {t_ex:.1f} s -> {est:.0f} s for all {args.n} "
        f"(extrapolated); outliers() / exact = {wall / est:.3f}"
    )
    print(
        f"score error vs exact on the sample: mean {np.abs(got - exact).mean():.2e}, "
        f"max {np.abs(got - exact).max():.2e} (approximate neighbours can only raise a score)"
    )
    print(f"TOTAL {wall / 60:.2f} min for N={args.n} (goal < 15 min at 1M)")


if __name__ == "__main__":
    main()
