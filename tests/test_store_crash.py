"""Crash safety: SIGKILL a writer process at random points, reopen, resume.

After every kill the store must open, every committed row must equal the
reference (an uninterrupted run), ``missing()`` must report exactly the rest,
and finishing the run must give a store equal to the uninterrupted one.

Writers are forked child processes (no interpreter start-up per run, so many
kills fit in a few seconds); each is killed with SIGKILL after a random delay
while it appends and commits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np
import pytest

from embstore import Store

N_IDS = 90
KILLS = {".zarr": 12, ".h5": 8}


def row(i):
    rng = np.random.default_rng(i)
    h = i % 3 + 1
    return rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2 * h, 4)).astype(np.float32), h


def writer(path, ready=None, batch=3):
    """Resume the run: append every missing id in order, then close."""
    st = Store.open(path, mode="a", write_chunks=1)
    todo = st.missing(range(N_IDS))
    if ready is not None:
        ready.set()
    for k in range(0, len(todo), batch):
        ids = todo[k : k + batch]
        rows = [row(i) for i in ids]
        st.append(
            ids,
            {"emb": np.stack([r[0] for r in rows]), "tokens": [r[1] for r in rows]},
            coords={"skin": [i % 5 for i in ids], "name": [f"img{i}" for i in ids]},
            ragged_hw={"tokens": [(r[2], 2) for r in rows]},
        )
    st.close()


def _child(path, ready):
    writer(path, ready)
    os._exit(0)


def create(path):
    Store.create(
        path,
        variables={"emb": ("query", "hidden")},
        ragged={"tokens": ("token", "hidden")},
        dtypes={"emb": "float32", "tokens": "float32"},
        chunk_rows=4,
    ).close()


def snapshot(path):
    """Everything a store holds, as plain Python/numpy objects."""
    with Store.open(path) as st:
        ids = st.ids.tolist()
        return {
            "ids": ids,
            "emb": st.emb.values,
            "coords": st.coords,
            "hw": st.ragged_hw("tokens"),
            "tokens": {i: st.get_ragged("tokens", i) for i in ids},
        }


def assert_rows_match(snap, ref):
    n = len(snap["ids"])
    assert snap["ids"] == ref["ids"][:n]
    if n == 0:
        return
    np.testing.assert_array_equal(snap["emb"], ref["emb"][:n])
    assert snap["coords"].equals(ref["coords"].iloc[:n])
    assert snap["hw"].equals(ref["hw"].iloc[:n])
    for i in snap["ids"]:
        np.testing.assert_array_equal(snap["tokens"][i], ref["tokens"][i])


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_sigkill_at_random_points(tmp_path, suffix):
    ctx = multiprocessing.get_context("fork")
    ref_path = str(tmp_path / f"ref{suffix}")
    create(ref_path)
    writer(ref_path)
    ref = snapshot(ref_path)
    all_ids = list(range(N_IDS))
    assert ref["ids"] == all_ids

    path = str(tmp_path / f"run{suffix}")
    create(path)
    rng = np.random.default_rng(1234)
    partial = 0
    for _ in range(KILLS[suffix]):
        ready = ctx.Event()
        proc = ctx.Process(target=_child, args=(path, ready))
        proc.start()
        assert ready.wait(30)
        proc.join(float(rng.uniform(0.0, 0.6)))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        with Store.open(path) as st:  # always opens
            committed = st.ids.tolist()
            assert st.missing(all_ids) == all_ids[len(committed) :]
        snap = snapshot(path)
        assert_rows_match(snap, ref)
        partial += 0 < len(committed) < N_IDS
        if len(committed) == N_IDS:
            break
    assert partial >= 2, "kills should land in the middle of the run"
    writer(path)  # finish the run
    final = snapshot(path)
    assert final["ids"] == all_ids
    assert_rows_match(final, ref)
