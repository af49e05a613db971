"""Pooling, exact search and dedup on a store several times larger than a hard memory cap.

A child process imports embstore + faiss, warms up on a few rows, measures its
virtual memory (RLIMIT_AS counts address space, not RSS), then caps it at
``baseline + BUDGET`` and works on a store of more than 3 x BUDGET bytes:
mean pooling of every row, exact k-NN of a few queries over every unpooled
vector, and exact duplicate search of the
pooled vectors. It also checks that the cap is real: allocating the data size fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("faiss")
resource = pytest.importorskip("resource")

BUDGET = 80 * 2**20  # bytes above the warmed-up baseline (data: 3.2x this)
N_IMAGES, N_QUERY, HIDDEN = 16384, 16, 256
DTYPE = "float32"  # 256 MiB stored and as vectors (the store reads ~32 MiB dask blocks)

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import embstore, faiss
    from embstore import EmbeddingAnalyzer, Store

    path, budget = sys.argv[1], int(sys.argv[2])
    st = Store.open(path)
    an = EmbeddingAnalyzer(st)

    def vm(key="VmSize:"):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    # warm up every code path on a few rows (threads, codecs, faiss)
    few = an.sel(image_id=list(st.ids[:256]))
    for _ in few.iter_vectors(pool="mean", block_rows=128):
        pass
    few.search(np.ones((2, 256), np.float32), k=3, pool=None, block_rows=4096)
    few.find_duplicates(0.9, k=10, batch=128, memory_budget=32 * 2**20)
    # BLAS reserves its work buffers (~130 MB of address space here) on the first
    # large product: a fixed cost, not proportional to the data, so warm it up too
    z = np.zeros((1024, 256), np.float32)
    faiss.knn(z, np.zeros((2048, 256), np.float32), 5, faiss.METRIC_INNER_PRODUCT)
    del z
    base = vm()
    resource.setrlimit(resource.RLIMIT_AS, (base + budget, resource.RLIM_INFINITY))
    out = {"baseline_vm": base}

    n, s = 0, 0.0
    for start, block in an.iter_vectors(pool="mean", block_rows=256):
        n += len(block)
        s += float(block[:, 0].sum())
    out["pooled_rows"] = n
    out["pooled_col0_sum"] = s
    q = np.asarray(st.query_embeddings[7, 3].values, np.float32)[None]
    df = an.search(q, k=2, pool=None, block_rows=8192)
    out["top"] = [int(v) for v in df["image_id"]] + [int(v) for v in df["query"]]
    dup = an.find_duplicates(0.99, k=5, batch=1024, memory_budget=32 * 2**20)
    out["dup_pairs"] = sorted([int(a), int(b)] for a, b in zip(dup["image_id_i"], dup["image_id_j"]))
    out["peak_vm"] = vm("VmPeak:")
    try:  # the cap is real: the data does not fit under it
        np.ones(int(sys.argv[3]), np.uint8)
        out["cap_effective"] = False
    except MemoryError:
        out["cap_effective"] = True
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    from embstore import Store

    path = tmp_path_factory.mktemp("cap") / "big.zarr"
    rng = np.random.default_rng(0)
    st_ = Store.create(
        path,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden")},
        dtypes={"query_embeddings": DTYPE},
        chunk_rows=128,
    )
    col0 = 0.0
    for start in range(0, N_IMAGES, 512):
        x = rng.normal(size=(512, N_QUERY, HIDDEN)).astype(DTYPE)
        if start == 0:
            x[100] = x[7]  # a planted exact duplicate image (ids 7 and 100)
        col0 += float(x.astype(np.float32).mean(1)[:, 0].sum())
        st_.append(np.arange(start, start + 512), {"query_embeddings": x})
    st_.flush()
    st_.close()
    return str(path), col0


@pytest.mark.slow  # ~26 s of CPU
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_pool_search_dedup_under_memory_cap(big_store):
    path, col0 = big_store
    data_bytes = N_IMAGES * N_QUERY * HIDDEN * np.dtype(DTYPE).itemsize
    assert data_bytes >= 3 * BUDGET
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MALLOC_ARENA_MAX="1",
        MALLOC_MMAP_THRESHOLD_="131072",
        MALLOC_TRIM_THRESHOLD_="131072",
        DASK_SCHEDULER="synchronous",
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, path, str(BUDGET), str(data_bytes)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["cap_effective"], "the data must not fit under the cap"
    assert out["pooled_rows"] == N_IMAGES
    assert out["pooled_col0_sum"] == pytest.approx(col0, rel=1e-3, abs=1e-2)
    # the query is image 7 / query 3, which image 100 duplicates exactly
    assert sorted(out["top"][:2]) == [7, 100] and out["top"][2:] == [3, 3]
    assert out["dup_pairs"] == [[7, 100]]
    assert out["peak_vm"] <= out["baseline_vm"] + BUDGET
