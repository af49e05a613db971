"""Damage is loud and never destructive; region claims; copy-on-write leftovers.

See also tests/test_store_kills.py (SIGKILL at every I/O step of every write path).
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pandas as pd
import pytest

from embstore import Store
from embstore.cli import main as cli_main
from embstore.errors import DamagedStoreError, StoreLockedError, ValidationError
from embstore.store.integrity import check, repair


def _files(path):
    return sorted(
        os.path.relpath(os.path.join(d, f), path) for d, _s, fs in os.walk(path) for f in fs
    )


@pytest.fixture
def store(tmp_path):
    p = str(tmp_path / "s.zarr")
    with Store.create(p, variables={"emb": ("h",)}, dtypes={"emb": "float32"}, chunk_rows=4) as st:
        st.append(
            list(range(12)),
            {"emb": np.arange(48, dtype=np.float32).reshape(12, 4)},
            coords={"tag": list(range(12))},
        )
        st.write_blob("idx", b"0123456789" * 100)
    return p


def test_missing_chunk_raises_naming_variable_and_rows(store):
    os.remove(os.path.join(store, "emb", "c.1.0"))  # rows 4..7
    before = _files(store)
    with Store.open(store) as st:
        with pytest.raises(DamagedStoreError, match=r"'emb'.*rows 4\.\.7"):
            st.emb.values
        np.testing.assert_array_equal(
            st.read("emb", ids=[0, 9]), [[0, 1, 2, 3], [36, 37, 38, 39]]
        )  # undamaged rows
    with Store.open(store, mode="a"):
        pass
    assert _files(store) == before  # opening as a writer deleted nothing
    rep = check(store)
    assert not rep.ok and any("emb" in p and "4..7" in p for p in rep.problems)
    assert cli_main(["check", store]) == 1


def test_tampered_blob_raises(store):
    with Store.open(store) as st:
        assert st.read_blob("idx") == b"0123456789" * 100
        key = [k for k in os.listdir(os.path.join(store, "_blobs")) if k.startswith("idx@")]
    assert len(key) == 1
    chunk = os.path.join(store, "_blobs", key[0], "c", "0")
    raw = bytearray(open(chunk, "rb").read())
    raw[5] ^= 0xFF
    open(chunk, "wb").write(bytes(raw))
    with Store.open(store) as st, pytest.raises(DamagedStoreError, match="SHA-256"):
        st.read_blob("idx")
    assert not check(store).ok


def test_lost_commit_records_raise_and_repair_rebuilds(store):
    import shutil

    shutil.rmtree(os.path.join(store, "_embstore", "commits", "main"))
    before = _files(store)
    for mode in ("r", "a"):
        with pytest.raises(DamagedStoreError, match="repair"):
            Store.open(store, mode=mode)
    assert _files(store) == before
    rep = repair(store)
    assert rep.ok, rep.lines()
    with Store.open(store) as st:
        assert st.ids.tolist() == list(range(12))
        assert st.coords["tag"].tolist() == list(range(12))


def test_check_and_repair_clean_store_and_orphans(store):
    with Store.open(store, mode="a") as st:
        st.write_table("t", pd.DataFrame({"a": [1]}))
        st.write_table("t", pd.DataFrame({"a": [2, 3]}))  # old version removed after the commit
        st._backend.write_table(
            "t@999999-deadbeef", {"a": np.array([9])}, {"columns": ["a"]}
        )  # an orphan
    assert [
        k for k in os.listdir(os.path.join(store, "_tables")) if k.startswith("t@")
    ].__len__() == 2
    rep = check(store)
    assert rep.ok and rep.orphans == ["_tables/t@999999-deadbeef"]
    assert cli_main(["repair", store]) == 0
    assert len([k for k in os.listdir(os.path.join(store, "_tables")) if k.startswith("t@")]) == 1
    with Store.open(store) as st:
        assert st.tables == ["t"] and st.read_table("t")["a"].tolist() == [2, 3]


@pytest.fixture
def prealloc(tmp_path):
    p = str(tmp_path / "p.zarr")
    Store.create(
        p, variables={"emb": ("h",)}, shapes={"emb": (2,)}, chunk_rows=4, n_rows=16
    ).close()
    return p


def test_overlapping_region_claim_refused(prealloc):
    with Store.open(prealloc, mode="a", region=(0, 8)):
        with pytest.raises(StoreLockedError, match="overlaps"):
            Store.open(prealloc, mode="a", region=(4, 12))
        with pytest.raises(StoreLockedError):
            Store.open(prealloc, mode="a")  # a plain writer overlaps every region
        with Store.open(prealloc, mode="a", region=(8, 16)):  # disjoint: fine
            pass
    with Store.open(prealloc, mode="a", region=(4, 12)):  # the first writer closed: fine now
        pass


def test_region_set_coords_touches_only_its_rows(prealloc):
    a = Store.open(prealloc, mode="a", region=(0, 8))
    b = Store.open(prealloc, mode="a", region=(8, 16))
    a.append(list(range(8)), {"emb": np.zeros((8, 2))})
    b.append(list(range(8, 16)), {"emb": np.ones((8, 2))})
    a.flush(), b.flush()
    a.set_coords({"tag": ["a"] * 8})
    b.refresh()
    b.set_coords({"tag": ["b"] * 8})
    a.refresh()
    with pytest.raises(ValidationError, match="another region"):
        a.set_coords({"tag": ["x"]}, ids=[9])
    a.close(), b.close()
    with Store.open(prealloc) as st:
        assert st.coords["tag"].tolist() == ["a"] * 8 + ["b"] * 8


def _skip_child(path, region, ids):
    with Store.open(path, mode="a", region=region) as st:
        for i in ids:
            st.record_skipped([i], f"bad {i}")
    os._exit(0)


def test_record_skipped_from_four_region_writers_at_once(prealloc):
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_skip_child, args=(prealloc, (4 * k, 4 * k + 4), range(10 * k, 10 * k + 3))
        )
        for k in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store.open(prealloc) as st:
        got = sorted(int(i) for i in st.skipped["id"])
    assert got == sorted(10 * k + j for k in range(4) for j in range(3))
    assert check(prealloc).ok


def test_flipped_bytes_in_a_chunk_raise(store):
    chunk = os.path.join(store, "emb", "c.2.0")  # rows 8..11
    raw = bytearray(open(chunk, "rb").read())
    assert len(raw) == 4 * 4 * 4 + 4  # raw rows + crc32c
    raw[3] ^= 0x10
    open(chunk, "wb").write(bytes(raw))
    with Store.open(store) as st:
        with pytest.raises(DamagedStoreError, match=r"crc32c.*rows 8\.\.11"):
            st.emb.values
        np.testing.assert_array_equal(st.read("emb", ids=[1]), [[4, 5, 6, 7]])
    rep = check(store)
    assert any("crc32c" in p for p in rep.problems)
    import xarray as xr

    with pytest.raises(Exception):  # plain zarr readers verify the checksum too
        xr.open_zarr(store, consolidated=False)["emb"].values


def test_stores_without_catalog_still_read_and_upgrade(tmp_path):
    """Tables and blobs written before the catalog (under their own names) stay readable."""
    p = str(tmp_path / "old.zarr")
    with Store.create(p, variables={"emb": ("h",)}) as st:
        st.append([1], {"emb": np.zeros((1, 2))})
        be = st._backend  # the pre-catalog layout: _tables/<name>, _blobs/<name>, no catalog record
        be.write_table(
            "people",
            {"a": np.array([1, 2])},
            {"columns": ["a"], "index": [], "kinds": {"a": "i"}, "default_index": True},
        )
        be.write_blob("idx", b"old")
        be.write_table(
            "_skipped",
            {"id": np.array(["7"]), "reason": np.array(["bad"])},
            {"columns": ["id", "reason"], "index": [], "kinds": {}, "default_index": True},
        )
    with Store.open(p) as st:
        assert st.tables == ["people"] and st.read_table("people")["a"].tolist() == [1, 2]
        assert st.read_blob("idx") == b"old" and st.skipped["id"].tolist() == ["7"]
    with Store.open(p, mode="a") as st:
        st.write_blob("idx", b"new")
        st.write_table("people", pd.DataFrame({"a": [3]}))
        st.record_skipped([8], "worse")
    with Store.open(p) as st:
        assert st.read_blob("idx") == b"new" and st.read_table("people")["a"].tolist() == [3]
        assert st.skipped["id"].tolist() == ["7", "8"]
    blobs = [b for b in os.listdir(os.path.join(p, "_blobs")) if b != "zarr.json"]
    assert len(blobs) == 1 and blobs[0].startswith("idx@")  # the old version is gone
    assert check(p).ok


def test_open_modes(tmp_path):
    p = str(tmp_path / "m.zarr")
    with pytest.raises(Exception):
        Store.open(p, mode="r+")  # absent
    with Store.open(p, mode="a", variables={"emb": ("h",)}) as st:  # created
        st.append([1], {"emb": np.zeros((1, 2))})
    with Store.open(p, mode="a", variables={"emb": ("h",)}) as st:  # resumed after the schema check
        assert len(st) == 1 and st.mode == "a"
    with pytest.raises(ValidationError, match="another schema"):
        Store.open(p, mode="a", variables={"other": ("h",)})
    with pytest.raises(Exception, match="exists"):
        Store.open(p, mode="w-", variables={"emb": ("h",)})
    with Store.open(p, mode="r+") as st:
        st.append([2], {"emb": np.zeros((1, 2))})
    with Store.open(p, mode="w", variables={"emb": ("h",)}) as st:
        assert len(st) == 0
    with pytest.raises(ValidationError, match="mode"):
        Store.open(p, mode="x")


def test_tampered_faiss_index_raises_instead_of_wrong_neighbours(tmp_path):
    pytest.importorskip("faiss")
    from embstore import EmbeddingAnalyzer

    p = str(tmp_path / "f.zarr")
    rng = np.random.default_rng(0)
    with Store.create(
        p, variables={"embedding": ("hidden",)}, dtypes={"embedding": "float32"}
    ) as st:
        st.append(list(range(60)), {"embedding": rng.normal(size=(60, 8)).astype(np.float32)})
        EmbeddingAnalyzer(st).build_index("embedding", kind="flat")
    bdir = os.path.join(p, "_blobs")
    key = [
        b
        for b in os.listdir(bdir)
        if b.startswith("faiss_") and ".json@" not in b and b != "zarr.json"
    ]
    assert len(key) == 1
    chunk = os.path.join(bdir, key[0], "c", "0")
    raw = bytearray(open(chunk, "rb").read())
    raw[-40] ^= 0x01  # one bit of a stored vector
    open(chunk, "wb").write(bytes(raw))
    with Store.open(p, mode="a") as st:
        with pytest.raises(DamagedStoreError, match="SHA-256"):
            EmbeddingAnalyzer(st).build_index("embedding", kind="flat")


def test_copy_on_write_on_fsspec_store():
    """The same protocol through fsspec (no local renames): memory:// here, S3 in production."""
    import uuid

    url = f"memory://cow-{uuid.uuid4().hex}.zarr"
    with Store.create(url, variables={"emb": ("h",)}, chunk_rows=4) as st:
        st.append(list(range(6)), {"emb": np.zeros((6, 2))}, coords={"tag": list(range(6))})
        for j in (1, 2):
            st.set_coords({"tag": [10 * j + i for i in range(6)], "label": [f"v{j}"] * 6})
            st.write_table("t", pd.DataFrame({"a": [j] * j}))
            st.write_blob("b", bytes([j]) * 10)
        st.record_skipped([99], "bad")
        token = st.version_token
    with Store.open(url) as st:
        assert st.coords["tag"].tolist() == [20 + i for i in range(6)]
        assert st.coords["label"].tolist() == ["v2"] * 6
        assert st.read_table("t")["a"].tolist() == [2, 2] and st.read_blob("b") == b"\x02" * 10
        assert st.skipped["id"].tolist() == [99] and st.version_token == token
        be = st._backend
        assert be.list_staged() == []  # staged versions removed after their commit
        assert [t for t in be.list_tables() if t.startswith("t@")].__len__() == 1
        assert [b for b in be.list_blobs() if b.startswith("b@")].__len__() == 1
