"""Several writer processes fill disjoint, chunk-aligned regions of one store."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

from embstore import Store
from embstore.errors import StoreLockedError, ValidationError

CHUNK = 4
REGION = 16
WRITERS = 4


def emb(i):
    return np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32)


def fill_region(path, k, count=REGION, batch=3, ready=None):
    start = k * REGION
    ids = [f"w{k}-{j}" for j in range(count)]
    with Store.open(path, mode="a", region=(start, start + REGION), write_chunks=1) as st:
        if ready is not None:
            ready.set()
        for b in range(0, count, batch):
            chunk_ids = ids[b : b + batch]
            st.append(
                chunk_ids,
                {"emb": np.stack([emb(k * 1000 + j) for j in range(b, b + len(chunk_ids))])},
                coords={"writer": [k] * len(chunk_ids), "tag": [f"t{k}"] * len(chunk_ids)},
            )
    return ids


def _child(path, k, count, ready=None):
    fill_region(path, k, count, ready=ready)
    os._exit(0)


def make(path):
    Store.create(
        path,
        variables={"emb": ("query", "hidden")},
        dtypes={"emb": "float32"},
        id_name="image_id",
        chunk_rows=CHUNK,
        n_rows=WRITERS * REGION,
        shapes={"emb": (3, 4)},
    ).close()


def test_four_processes_fill_disjoint_regions(tmp_path):
    path = str(tmp_path / "multi.zarr")
    make(path)
    ctx = multiprocessing.get_context("fork")
    counts = [16, 13, 16, 5]  # regions may stay partly empty
    procs = [ctx.Process(target=_child, args=(path, k, counts[k])) for k in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store.open(path) as st:
        expected = [f"w{k}-{j}" for k in range(WRITERS) for j in range(counts[k])]
        assert st.ids.tolist() == expected
        assert len(st) == sum(counts)
        assert st.missing(["w1-12", "w1-13", "w3-4", "w3-5"]) == ["w1-13", "w3-5"]
        values = st.emb.values
        want = np.stack([emb(k * 1000 + j) for k in range(WRITERS) for j in range(counts[k])])
        np.testing.assert_array_equal(values, want)
        df = st.coords
        assert df["writer"].tolist() == [k for k in range(WRITERS) for _ in range(counts[k])]
        assert df["tag"].tolist() == [f"t{k}" for k in range(WRITERS) for _ in range(counts[k])]
        assert st.emb.sel(writer=2).sizes["image"] == 16
        assert st.sel(tag="t3").sizes["image"] == 5
    # a plain appender adds rows after the preallocated part
    with Store.open(path, mode="a") as st:
        st.append(["extra"], {"emb": emb(5)[None]}, coords={"writer": [9], "tag": ["x"]})
    with Store.open(path) as st:
        assert st.ids.tolist()[-1] == "extra"
        assert len(st) == sum(counts) + 1


def test_region_lock_and_validation(tmp_path):
    path = str(tmp_path / "multi.zarr")
    make(path)
    st = Store.open(path, mode="a", region=(0, REGION))
    with pytest.raises(StoreLockedError):
        Store.open(path, mode="a", region=(0, REGION))
    st.append(["a"], {"emb": emb(0)[None]})
    st.close()
    with pytest.raises(ValidationError, match="aligned"):
        Store.open(path, mode="a", region=(2, REGION))
    with pytest.raises(ValidationError, match="overlaps"):
        Store.open(path, mode="a", region=(0, 2 * REGION))
    with pytest.raises(ValidationError, match="n_rows"):
        Store.open(path, mode="a", region=(0, 10 * REGION))
    with pytest.raises(ValidationError, match="mode='a'"):
        Store.open(path, region=(0, REGION))
    with Store.open(path, mode="a", region=(REGION, 2 * REGION)) as w:
        with pytest.raises(Exception, match="room"):
            w.append([f"x{i}" for i in range(REGION + 1)], {"emb": np.zeros((REGION + 1, 3, 4))})
        assert len(w) == 1
    with pytest.raises(ValidationError, match="multiple of chunk_rows"):
        Store.create(str(tmp_path / "bad.zarr"), variables={"e": ("d",)}, chunk_rows=4, n_rows=10)


def test_killed_region_writer_keeps_other_regions(tmp_path):
    path = str(tmp_path / "multi.zarr")
    make(path)
    fill_region(path, 0)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_child, args=(path, 1, REGION, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    with Store.open(path) as st:
        ids = st.ids.tolist()
        assert ids[:REGION] == [f"w0-{j}" for j in range(REGION)]
        rest = ids[REGION:]
        assert rest == [f"w1-{j}" for j in range(len(rest))]
    # the region can be resumed by a new writer (stale lock of the dead pid is taken over)
    with Store.open(path, mode="a", region=(REGION, 2 * REGION)) as st:
        todo = st.missing([f"w1-{j}" for j in range(REGION)])
        js = [int(t.split("-")[1]) for t in todo]
        st.append(
            todo,
            {"emb": np.stack([emb(1000 + j) for j in js])},
            coords={"writer": [1] * len(js), "tag": ["t1"] * len(js)},
        )
    with Store.open(path) as st:
        assert st.ids.tolist() == [f"w{k}-{j}" for k in range(2) for j in range(REGION)]
        np.testing.assert_array_equal(
            st.emb.values[REGION:], np.stack([emb(1000 + j) for j in range(REGION)])
        )
