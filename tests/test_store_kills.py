"""SIGKILL every write path at every I/O step, and at random times.

For each path (``append``, ``set_coords``, ``write_table``, ``write_blob``,
``record_skipped``, ``update_attrs``) a forked child opens a copy of a small
store and makes a sequence of calls; :func:`embstore.store.faults.arm` kills
it at its k-th file write, rename or delete, for k = 1, 2, ... until the
child finishes unharmed. After every kill:

* the store opens (read-only, then as a writer, which finishes or cleans up
  what the killed writer left), and ``embstore check`` finds no damage;
* committed rows are bit-identical;
* the object the path writes equals its state after exactly ``j`` of the
  calls, for some ``j`` (each call entirely old or entirely new), and
  ``version_token`` equals the token of that state;
* plain ``xarray.open_zarr`` (no embstore) opens the store as the kill left
  it, after every kill of every path, and shows committed rows bit-identical:
  exactly the committed ones, or (kill between the commit record and the
  consolidated metadata, one rename apart) those of the previous commit;
  exactly the committed ones once a writer has reopened the store.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time

import numpy as np
import pandas as pd
import pytest

from embstore import Store
from embstore.store import faults
from embstore.store.integrity import check

N0 = 12
XR_STALE: list[
    bool
] = []  # per verified kill: did plain xarray.open_zarr show other rows than committed?


def _plain_rows(path):
    """Row ids and ``emb`` as plain ``xarray.open_zarr`` (consolidated metadata) shows them."""
    import xarray as xr

    with xr.open_zarr(path) as ds:
        return ds["image_id"].values.tolist(), ds["emb"].values


def _check_plain(plain, committed, ref_emb):
    ids, emb = plain
    if committed is not None:
        assert ids == committed, f"plain open_zarr shows rows {ids}, committed {committed}"
    assert ids == list(range(len(ids)))
    np.testing.assert_array_equal(emb, ref_emb[: len(ids)])


def _emb(ids):
    return np.stack([np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32) for i in ids])


def make_template(path):
    with Store.create(
        path, variables={"emb": ("q", "h")}, dtypes={"emb": "float32"}, chunk_rows=4
    ) as st:
        ids = list(range(N0))
        st.append(
            ids,
            {"emb": _emb(ids)},
            coords={"tag": [i % 3 for i in ids], "name": [f"n{i}" for i in ids]},
        )
        st.write_table("people", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
        st.write_blob("idx", b"v0" * 10)
        st.record_skipped([100, 101], "unreadable")
        st.update_attrs(k1=0, k2=0)


# ------------------------------------------------------------- write paths
def _table(j):
    return pd.DataFrame({"a": np.arange(j + 3) * j, "b": [f"t{j}-{i}" for i in range(j + 3)]})


def _blob(j):
    return np.random.default_rng(j).bytes(1000 * j + 7)


def _coords(j):
    return {"tag": (np.arange(N0) * 10 + j).tolist(), "label": [f"v{j}-{i}" for i in range(N0)]}


APPEND_IDS = list(range(N0, N0 + 18))

PATHS = {
    "set_coords": (3, lambda st, j: st.set_coords(_coords(j))),
    "write_table": (4, lambda st, j: st.write_table("people", _table(j))),
    "write_blob": (4, lambda st, j: st.write_blob("idx", _blob(j))),
    "record_skipped": (4, lambda st, j: st.record_skipped([200 + 2 * j, 201 + 2 * j], f"r{j}")),
    "update_attrs": (12, lambda st, j: st.update_attrs(k1=j, k2=-j)),
    "append": (
        9,
        lambda st, j: st.append(
            APPEND_IDS[2 * j - 2 : 2 * j],
            {"emb": _emb(APPEND_IDS[2 * j - 2 : 2 * j])},
            coords={"tag": [7, 7], "name": ["a", "b"]},
        ),
    ),
}


def state(st, path_name):
    """What ``path_name`` writes, as comparable plain objects."""
    if path_name == "set_coords":
        c = st.coords
        return tuple(c["tag"].tolist()), tuple(c["label"].tolist()) if "label" in c else None
    if path_name == "write_table":
        return st.read_table("people").to_json()
    if path_name == "write_blob":
        return st.read_blob("idx")
    if path_name == "record_skipped":
        return st.skipped.to_json()
    if path_name == "update_attrs":
        a = st.attrs
        return a["k1"], a["k2"]
    return tuple(st.ids.tolist())


def run_calls(path, path_name, upto, kill_at=None):
    _n, call = PATHS[path_name]
    st = Store.open(path, mode="a", write_chunks=1)
    faults.arm(kill_at)
    for j in range(1, upto + 1):
        call(st, j)
    st.close()
    faults.arm(None)


def _child(path, path_name, kill_at):
    run_calls(path, path_name, PATHS[path_name][0], kill_at)
    os._exit(0)


def reference(tmp_path, template, path_name):
    """States and version tokens after 0..M calls (uninterrupted)."""
    n = PATHS[path_name][0]
    states, tokens = [], []
    for j in range(n + 1):
        p = str(tmp_path / f"ref-{path_name}-{j}.zarr")
        shutil.copytree(template, p)
        run_calls(p, path_name, j)
        with Store.open(p) as st:
            states.append(state(st, path_name))
            tokens.append(st.version_token)
            if path_name == "append":
                emb = st.emb.values
    return states, tokens, (emb if path_name == "append" else None)


def verify(path, path_name, states, tokens, ref_emb):
    """Assert the store is in one of the reference states; return j."""

    # as the kill left it, before any writer tidied up: plain xarray (no embstore) must open it
    # and show exactly the committed rows
    plain = _plain_rows(path)
    with Store.open(path, mode="r") as st:
        committed = st.ids.tolist()
    XR_STALE.append(plain[0] != committed)
    if plain[0] != committed:
        # killed between the commit record and the consolidated metadata (one rename apart): the
        # plain reader still sees the previous commit, a call boundary with fewer rows
        assert (
            path_name == "append" and tuple(plain[0]) in states and len(plain[0]) < len(committed)
        ), plain[0]
    _check_plain(plain, None, ref_emb if path_name == "append" else _emb(range(N0)))
    for mode in (
        "r",
        "a",
    ):  # read as left, then after a writer took over (and finished or cleaned up)
        with Store.open(path, mode=mode) as st:
            got = state(st, path_name)
            assert got in states, f"{path_name}: state after kill matches no call boundary: {got!r}"
            j = states.index(got)
            if path_name == "append":
                n = len(st)
                np.testing.assert_array_equal(st.emb.values, ref_emb[:n])
                assert st.ids.tolist() == list(range(n))
            else:
                assert st.version_token == tokens[j], (
                    f"{path_name}: version_token does not match state {j}"
                )
                np.testing.assert_array_equal(st.emb.values, _emb(range(N0)))
    rep = check(path)
    assert rep.ok, rep.lines()
    with Store.open(path, mode="r") as st:
        committed = st.ids.tolist()
    _check_plain(
        _plain_rows(path), committed, ref_emb if path_name == "append" else _emb(range(N0))
    )
    return j


def sweep(tmp_path, path_name, every=1):
    template = str(tmp_path / "template.zarr")
    if not os.path.exists(template):
        make_template(template)
    states, tokens, ref_emb = reference(tmp_path, template, path_name)
    assert len(set(map(repr, states))) == len(states), "reference states must differ"
    ctx = multiprocessing.get_context("fork")
    kills, seen, k = 0, set(), 1
    while True:
        path = str(tmp_path / f"{path_name}-{k}.zarr")
        shutil.copytree(template, path)
        proc = ctx.Process(target=_child, args=(path, path_name, k))
        proc.start()
        proc.join(60)
        assert proc.exitcode in (0, -signal.SIGKILL), proc.exitcode
        j = verify(path, path_name, states, tokens, ref_emb)
        shutil.rmtree(path)
        if proc.exitcode == 0:
            assert j == len(states) - 1
            break
        kills += 1
        seen.add(j)
        k += every
    return kills, seen


@pytest.mark.slow
@pytest.mark.parametrize("path_name", list(PATHS))
def test_kill_at_every_io_step(tmp_path, path_name):
    XR_STALE.clear()
    kills, seen = sweep(tmp_path, path_name)
    print(
        f"KILLS {path_name}: {kills} injected kills, states seen {sorted(seen)}, "
        f"plain open_zarr showed other rows than committed after {sum(XR_STALE)} of {len(XR_STALE)}"
    )
    assert kills >= 20, f"{path_name}: only {kills} injection points"
    assert len(seen) >= 3  # kills landed before, between and after calls


def test_kill_set_coords_quick(tmp_path):
    """Every 7th step of set_coords (a fast subset of the sweep, run without ``-m slow``)."""
    kills, seen = sweep(tmp_path, "set_coords", every=7)
    assert kills >= 4 and len(seen) >= 2


def _child_timed(path, path_name, ready):
    st = Store.open(path, mode="a", write_chunks=1)
    n, call = PATHS[path_name]
    ready.set()
    for j in range(1, n + 1):
        call(st, j)
    st.close()
    os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("path_name", list(PATHS))
def test_kill_at_random_times(tmp_path, path_name):
    template = str(tmp_path / "template.zarr")
    make_template(template)
    states, tokens, ref_emb = reference(tmp_path, template, path_name)
    p = str(tmp_path / "timing.zarr")
    shutil.copytree(template, p)
    t0 = time.perf_counter()
    run_calls(p, path_name, PATHS[path_name][0])
    duration = time.perf_counter() - t0
    ctx = multiprocessing.get_context("fork")
    rng = np.random.default_rng(7)
    killed = 0
    for i in range(8):
        path = str(tmp_path / f"rand-{i}.zarr")
        shutil.copytree(template, path)
        ready = ctx.Event()
        proc = ctx.Process(target=_child_timed, args=(path, path_name, ready))
        proc.start()
        assert ready.wait(30)
        proc.join(float(rng.uniform(0, duration)))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.join()
        verify(path, path_name, states, tokens, ref_emb)
    print(f"RANDOM {path_name}: {killed} random-time kills of 8 runs")
    assert killed >= 3
