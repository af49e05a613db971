"""Crash safety: SIGKILL a writer process at random points, reopen, resume.

After every kill the store must open, every committed row must equal the
reference (an uninterrupted run), ``missing()`` must report exactly the rest,
and finishing the run must give a store equal to the uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from embstore import Store

N_IDS = 120
KILLS = 10

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from embstore import Store

    path, n_ids, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def row(i):
        rng = np.random.default_rng(i)
        h = i % 3 + 1
        return (rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2 * h, 4)).astype(np.float32), h)

    st = Store.open(path, mode="a", write_chunks=1)
    todo = st.missing(range(n_ids))
    print("ready", flush=True)
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
    print("done", flush=True)
    """
)


def create(path):
    Store.create(
        path,
        variables={"emb": ("query", "hidden")},
        ragged={"tokens": ("token", "hidden")},
        dtypes={"emb": "float32", "tokens": "float32"},
        chunk_rows=4,
    ).close()


def run_writer(script, path, kill_after=None):
    proc = subprocess.Popen(
        [sys.executable, str(script), path, str(N_IDS), "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    if kill_after is None:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return True
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode != 0


def assert_same_rows(st, ref, ids):
    pos_st = {v: k for k, v in enumerate(st.ids.tolist())}
    pos_ref = {v: k for k, v in enumerate(ref.ids.tolist())}
    a = st.emb.values
    b = ref.emb.values
    ca, cb = st.coords, ref.coords
    for i in ids:
        np.testing.assert_array_equal(a[pos_st[i]], b[pos_ref[i]])
        np.testing.assert_array_equal(st.get_ragged("tokens", i), ref.get_ragged("tokens", i))
        assert ca.loc[i].tolist() == cb.loc[i].tolist()
    hw_a, hw_b = st.ragged_hw("tokens"), ref.ragged_hw("tokens")
    assert hw_a.loc[list(ids)].equals(hw_b.loc[list(ids)])


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_sigkill_at_random_points(tmp_path, suffix):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    ref_path = str(tmp_path / f"ref{suffix}")
    create(ref_path)
    run_writer(script, ref_path)
    path = str(tmp_path / f"run{suffix}")
    create(path)
    rng = np.random.default_rng(1234)
    killed_mid_run = 0
    with Store.open(ref_path) as ref:
        all_ids = list(range(N_IDS))
        assert ref.ids.tolist() == all_ids
        for _ in range(KILLS):
            delay = float(rng.uniform(0.0, 0.5))
            killed_mid_run += run_writer(script, path, kill_after=delay)
            with Store.open(path) as st:  # always opens
                committed = st.ids.tolist()
                assert committed == all_ids[: len(committed)]  # resume appends in order
                assert st.missing(all_ids) == all_ids[len(committed) :]
                assert_same_rows(st, ref, committed)
            if len(committed) == N_IDS:
                break
        run_writer(script, path)
        with Store.open(path) as st:
            assert st.ids.tolist() == all_ids
            np.testing.assert_array_equal(st.emb.values, ref.emb.values)
            assert st.coords.equals(ref.coords)
            assert_same_rows(st, ref, all_ids)
    assert killed_mid_run >= 1
