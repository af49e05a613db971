"""Exact search through the analyzer vs raw faiss vs scikit-learn; IVF/HNSW recall@10.

Builds a store of N x D float16 face-like embeddings (clustered), then times,
in the same run (medians of --repeat runs):

- raw faiss: ``IndexFlatIP`` on the L2-normalised in-memory matrix (add + search);
- the analyzer: ``an.build_index(kind="flat")`` (streams the store) and
  ``an.search(queries, k)`` (normalises, searches, returns a labeled DataFrame);
- scikit-learn ``NearestNeighbors(algorithm="brute", metric="cosine")``;
- IVF and HNSW through the analyzer: build/search time and recall@10 against exact.

Ratios are printed against raw faiss (goal: analyzer search <= 1.1x).

Usage::

    python bench/search.py                  # N=50000, D=512, 1000 queries
    python bench/search.py --n 200000 --nq 2000
"""

from __future__ import annotations

import argparse
import os
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


def median_time(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import faiss
    from sklearn.neighbors import NearestNeighbors

    from embstore import EmbeddingAnalyzer, Store

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((args.n // 10, args.dim), dtype=np.float32)
    x = centers[rng.integers(0, len(centers), args.n)] + 0.5 * rng.standard_normal(
        (args.n, args.dim), dtype=np.float32
    )
    tmp = tempfile.mkdtemp(prefix="embstore-bench-")
    st = Store.create(
        os.path.join(tmp, "faces.zarr"),
        row_dim="image",
        id_name="image_id",
        variables={"embedding": ("hidden",)},
    )  # float16 storage (default)
    for s in range(0, args.n, 65536):
        st.append(np.arange(s, min(args.n, s + 65536)), {"embedding": x[s : s + 65536]})
    st.flush()
    an = EmbeddingAnalyzer(st)
    q = x[rng.choice(args.n, args.nq, replace=False)] + 0.1 * rng.standard_normal(
        (args.nq, args.dim), dtype=np.float32
    )
    print(
        f"N={args.n} D={args.dim} float16 store, {args.nq} queries, k={args.k}, "
        f"faiss threads={faiss.omp_get_max_threads()}"
    )

    # raw faiss on the same (float16-rounded) vectors, already in memory
    t_load, (xm, _) = median_time(lambda: an.matrix("embedding"), 1)
    xn = xm / np.linalg.norm(xm, axis=1, keepdims=True)
    qn = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)

    def raw_build():
        idx = faiss.IndexFlatIP(args.dim)
        idx.add(xn)
        return idx

    t_raw_build, raw = median_time(raw_build, args.repeat)
    t_raw_search, (_, raw_i) = median_time(lambda: raw.search(qn, args.k), args.repeat)

    t_an_build, _idx = median_time(
        lambda: an.build_index("embedding", kind="flat", save=False, rebuild=True, progress=False),
        args.repeat,
    )
    t_an_search, df = median_time(
        lambda: an.search(q, args.k, variable="embedding", kind="flat"), args.repeat
    )
    an_i = df["neighbor"].to_numpy().reshape(args.nq, args.k)
    agree = float((an_i == raw_i).mean())

    nn = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric="cosine")
    _t_sk_fit, _ = median_time(lambda: nn.fit(xm), 1)
    t_sk, _ = median_time(lambda: nn.kneighbors(q), max(1, args.repeat // 2))

    print(f"{'method':42s} {'time (s)':>10s} {'ratio vs raw faiss':>20s}")
    rows = [
        ("raw faiss IndexFlatIP search", t_raw_search, t_raw_search),
        ("analyzer search (flat index, DataFrame)", t_an_search, t_raw_search),
        ("scikit-learn brute cosine kneighbors", t_sk, t_raw_search),
        ("raw faiss add (matrix in memory)", t_raw_build, t_raw_build),
        ("analyzer build_index flat (from store)", t_an_build, t_raw_build),
        ("raw: read matrix from store + add", t_load + t_raw_build, t_raw_build),
    ]
    for name, t, base in rows:
        print(f"{name:42s} {t:10.4f} {t / base:20.2f}x")
    total_an = t_an_build + t_an_search
    total_raw = t_load + t_raw_build + t_raw_search
    print(
        f"end to end from the store: analyzer {total_an:.3f} s vs raw faiss {total_raw:.3f} s "
        f"= {total_an / total_raw:.2f}x"
    )
    print(
        f"analyzer search / raw faiss search = {t_an_search / t_raw_search:.2f}x (goal <= 1.1x); "
        f"neighbour ids identical: {agree:.4f}"
    )

    for kind in ("ivf", "hnsw"):
        tb, ix = median_time(
            lambda kind=kind: an.build_index(
                "embedding", kind=kind, save=False, rebuild=True, progress=False
            ),
            1,
        )
        ts, d = median_time(
            lambda kind=kind: an.search(q, args.k, variable="embedding", kind=kind), args.repeat
        )
        got = d["neighbor"].to_numpy().reshape(args.nq, args.k)
        recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(got, raw_i)])
        print(
            f"{ix.factory:14s} build {tb:7.2f} s  search {ts:7.4f} s "
            f"({t_raw_search / ts:5.2f}x faster than exact)  recall@{args.k} vs exact {recall:.4f}"
        )
    st.close()


if __name__ == "__main__":
    main()
