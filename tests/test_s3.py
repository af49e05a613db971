"""Stores on object storage: the Zarr backend against a real S3 API server.

A session fixture starts moto's ``ThreadedMotoServer`` on 127.0.0.1 (a real
HTTP S3 endpoint, not a mocked client) and every test talks to it through
``s3://`` URLs and ``storage_options``, exactly as a user would with AWS,
MinIO or Ceph.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from embstore import Store  # noqa: E402
from embstore.errors import (  # noqa: E402
    SelectionError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)

BUCKET = "embstore-test"
Q, H = 3, 8
SKINS = np.array([1, 2, 3, 4])
LIGHTS = np.array(["well_lit", "dimly_lit"])
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint():
    """Start an S3 API server on the loopback address with one bucket."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in DUMMY_ENV.items():
            mp.setenv(k, v)
        port = _free_port()
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            import s3fs

            fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint)
            fs.mkdir(BUCKET)
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def storage_options(s3_endpoint):
    return {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}


@pytest.fixture
def url():
    return f"s3://{BUCKET}/{uuid.uuid4().hex}/run.zarr"


# --------------------------------------------------------------------------- #
# deterministic rows: every value is a function of the row id
# --------------------------------------------------------------------------- #
def row_values(ids) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    base = np.arange(Q * H, dtype=np.float32).reshape(Q, H)
    q = ids[:, None, None].astype(np.float32) * 0.5 + base[None]
    boxes = np.tile((ids[:, None, None] % 7).astype(np.float32) / 7, (1, Q, 4))
    return {"query_embeddings": q, "pred_boxes": boxes}


def row_coords(ids) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, dtype=np.int64)
    return {"skin": SKINS[ids % 4], "lighting": LIGHTS[ids % 2]}


def ragged_rows(ids) -> list[np.ndarray]:
    return [np.full((2 + int(i) % 3, H), float(i), dtype=np.float32) for i in ids]


def create(url, storage_options, **kw):
    return Store.create(
        url,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden"), "pred_boxes": ("query", "box")},
        dtypes={"query_embeddings": "float32"},
        chunk_rows=4,
        storage_options=storage_options,
        **kw,
    )


def append(st, ids):
    st.append(ids, row_values(ids), coords=row_coords(ids))


# --------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------- #
def test_create_append_open_select(url, storage_options):
    ids = np.arange(10, 20)
    with create(url, storage_options) as st:
        append(st, ids[:6])
        append(st, ids[6:])
    st = Store.open(url, storage_options=storage_options)
    try:
        assert st.mode == "r"
        assert st.ids.tolist() == ids.tolist()
        assert len(st) == 10 and 12 in st and 99 not in st
        np.testing.assert_array_equal(
            st.query_embeddings.values, row_values(ids)["query_embeddings"]
        )
        sel = st.query_embeddings.sel(skin=1)
        expected = ids[row_coords(ids)["skin"] == 1]
        assert sel.image_id.values.tolist() == expected.tolist()
        np.testing.assert_array_equal(sel.values, row_values(expected)["query_embeddings"])
        both = st.sel(skin=[1, 2], lighting="dimly_lit")
        coords = row_coords(ids)
        mask = np.isin(coords["skin"], [1, 2]) & (coords["lighting"] == "dimly_lit")
        assert both.image_id.values.tolist() == ids[mask].tolist()
        assert st.query_embeddings.sel(image_id=13).sizes["image"] == 1
        with pytest.raises(SelectionError):
            st.query_embeddings.sel(skin=9)
        df = st.coords
        assert df.loc[13, "lighting"] == "dimly_lit"
        lazy = st.query_embeddings.sel(lighting="well_lit")
        assert not lazy.variable._in_memory  # nothing read until asked
        np.testing.assert_array_equal(
            lazy.values, row_values(ids[ids % 2 == 0])["query_embeddings"]
        )
    finally:
        st.close()


def test_resume_appends_only_missing(url, storage_options):
    all_ids = list(range(100, 112))
    with create(url, storage_options) as st:
        append(st, np.array(all_ids[:5]))
    with Store.open(url, mode="a", storage_options=storage_options) as st:
        todo = st.missing(all_ids)
        assert todo == all_ids[5:]
        append(st, np.array(todo))
    with Store.open(url, storage_options=storage_options) as st:
        assert st.missing(all_ids) == []
        assert st.ids.tolist() == all_ids
        np.testing.assert_array_equal(
            st.query_embeddings.values, row_values(all_ids)["query_embeddings"]
        )


def test_lock_and_refresh_across_clients(url, storage_options):
    """Two independent S3 clients (as in two processes): lock and fresh listings."""
    other = dict(storage_options, skip_instance_cache=True)
    with create(url, storage_options) as st:
        append(st, np.arange(4))
    reader = Store.open(url, storage_options=storage_options)
    writer = Store.open(url, mode="a", storage_options=other)
    try:
        with pytest.raises(StoreLockedError):
            Store.open(url, mode="a", storage_options=storage_options)
        assert reader.ids.tolist() == [0, 1, 2, 3]
        append(writer, np.arange(4, 8))
        writer.flush()
        reader.refresh()  # must not be fooled by cached listings of the commits
        assert reader.ids.tolist() == list(range(8))
        np.testing.assert_array_equal(
            reader.query_embeddings.values, row_values(range(8))["query_embeddings"]
        )
    finally:
        writer.close()
        reader.close()
    with Store.open(url, mode="a", storage_options=storage_options) as st:  # lock released
        assert len(st) == 8


def test_exists_and_not_found(url, storage_options):
    with pytest.raises(StoreNotFoundError):
        Store.open(url, storage_options=storage_options)
    create(url, storage_options).close()
    with pytest.raises(StoreExistsError):
        create(url, storage_options)
    with create(url, storage_options, overwrite=True) as st:
        append(st, np.arange(3))
    with Store.open(url, storage_options=storage_options) as st:
        assert len(st) == 3


def test_ragged_tables_blobs_attrs(url, storage_options):
    import pandas as pd

    ids = np.arange(5)
    st = Store.create(
        url,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden")},
        ragged={"encoder_output": ("token", "hidden")},
        chunk_rows=4,
        attrs={"model": "tiny"},
        storage_options=storage_options,
    )
    with st:
        st.append(
            ids,
            {
                "query_embeddings": row_values(ids)["query_embeddings"],
                "encoder_output": ragged_rows(ids),
            },
            coords=row_coords(ids),
        )
        st.write_table("people", pd.DataFrame({"image_id": [0, 0, 3], "age": [20, 31, 45]}))
        st.write_blob("faiss.index", b"\x00\x01binary-index\xff")
    with Store.open(url, storage_options=storage_options) as st:
        for i, expected in zip(ids, ragged_rows(ids)):
            np.testing.assert_array_equal(st.get_ragged("encoder_output", int(i)), expected)
        assert st.read_table("people")["age"].tolist() == [20, 31, 45]
        assert st.read_blob("faiss.index") == b"\x00\x01binary-index\xff"
        assert st.read_blob("absent") is None
        assert st.attrs["model"] == "tiny"


def test_search_index_saved_and_loaded_on_s3(url, storage_options, monkeypatch):
    pytest.importorskip("faiss")
    from embstore import EmbeddingAnalyzer

    with create(url, storage_options) as st:
        append(st, np.arange(12))
    with Store.open(url, mode="a", storage_options=storage_options) as st:
        built = EmbeddingAnalyzer(st).build_index(pool="mean", metric="l2", device="cpu")
        assert built.ntotal == 12

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the index saved on S3 should have been loaded, not rebuilt")

    monkeypatch.setattr("embstore.search.index.build_index", no_rebuild)
    with Store.open(url, storage_options=storage_options) as st:
        an = EmbeddingAnalyzer(st)
        loaded = an.build_index(pool="mean", metric="l2", device="cpu")
        assert loaded.ntotal == 12
        hits = an.search(ids=[5], k=2, pool="mean", metric="l2", kind="flat")
        assert hits["image_id"].tolist()[0] == 5
        assert hits["score"].tolist()[0] == pytest.approx(0.0, abs=1e-4)


TOTAL = 40  # rows of the interrupted run (4 per commit)

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_s3 import append, create, Store
    url, endpoint = sys.argv[1], sys.argv[2]
    so = {{"key": "testing", "secret": "testing", "endpoint_url": endpoint}}
    st = create(url, so)
    for lo in range(0, {total}, 4):
        append(st, np.arange(lo, lo + 4))
        st.flush()
        print(lo + 4, flush=True)
    st.close()
    print("done", flush=True)
    """
)


def _start_writer(url, endpoint):
    code = WRITER.format(tests=os.path.dirname(os.path.abspath(__file__)), total=TOTAL)
    env = dict(os.environ, **DUMMY_ENV)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")]
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, url, endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_after_commits(proc, n_lines, extra_delay):
    """Read ``n_lines`` commit reports, wait a little more, then SIGKILL."""
    committed = 0
    for _ in range(n_lines):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"writer exited early: {proc.stderr.read()}")
        committed = int(line)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return committed


def _check_committed(url, storage_options, at_least):
    with Store.open(url, storage_options=storage_options) as st:
        ids = st.ids.tolist()
        assert len(ids) >= at_least
        assert ids == list(range(len(ids)))  # a prefix, in commit order, nothing torn
        np.testing.assert_array_equal(
            st.query_embeddings.values, row_values(ids)["query_embeddings"]
        )
        np.testing.assert_array_equal(st.pred_boxes.values, row_values(ids)["pred_boxes"])
        assert st.missing(range(TOTAL)) == list(range(len(ids), TOTAL))
        return len(ids)


def test_killed_writer_keeps_committed_rows(url, storage_options, s3_endpoint):
    """SIGKILL a writer subprocess mid-append; committed rows survive, resume finishes."""
    delay = float(np.random.default_rng(7).uniform(0.0, 0.3))
    proc = _start_writer(url, s3_endpoint)
    reported = _kill_after_commits(proc, 3, delay)
    n = _check_committed(url, storage_options, reported)
    assert n < TOTAL  # the writer really was interrupted
    # resume in-process (the killed writer's lock is taken over: its pid is
    # gone); the result equals an uninterrupted run
    with Store.open(url, mode="a", storage_options=storage_options) as st:
        todo = st.missing(range(TOTAL))
        assert todo == list(range(n, TOTAL))
        append(st, np.array(todo))
    with Store.open(url, storage_options=storage_options) as st:
        assert st.ids.tolist() == list(range(TOTAL))
        np.testing.assert_array_equal(
            st.query_embeddings.values, row_values(range(TOTAL))["query_embeddings"]
        )
        np.testing.assert_array_equal(st.pred_boxes.values, row_values(range(TOTAL))["pred_boxes"])
