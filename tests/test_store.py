"""The Store test suite, run once per backend (Zarr v3 and HDF5).

``StoreSuite`` holds every behavioural test; ``TestZarrStore`` and
``TestHDF5Store`` only say which file suffix to use.
"""

from __future__ import annotations

import json
import os

import dask.array
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from embstore import Store
from embstore.errors import (
    DamagedStoreError,
    DTypeMismatchError,
    DuplicateIdError,
    EmbstoreError,
    FormatVersionError,
    NonFiniteError,
    NotAStoreError,
    ReadOnlyStoreError,
    SelectionError,
    ShapeMismatchError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownVariableError,
    ValidationError,
)
from embstore.store import schema as schema_mod
from embstore.testing.synthetic import DETR_RAGGED as RAGGED
from embstore.testing.synthetic import DETR_VARIABLES as VARS
from embstore.testing.synthetic import detr_batch as make_batch


class StoreSuite:
    """Backend-independent tests; subclasses set ``suffix``."""

    suffix = ".zarr"

    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / f"run{self.suffix}")

    def create(self, path, **kw):
        kw.setdefault("variables", VARS)
        kw.setdefault("ragged", RAGGED)
        kw.setdefault("chunk_rows", 4)
        return Store.create(path, **kw)

    def fill(self, path, ids=range(10), batch=3, seed=0, **kw):
        rng = np.random.default_rng(seed)
        ids = list(ids)
        expected = {}
        with self.create(path, **kw) as st:
            for i in range(0, len(ids), batch):
                b = ids[i : i + batch]
                data, coords, hw = make_batch(b, rng, ragged=bool(kw.get("ragged", RAGGED)))
                st.append(b, data, coords=coords, ragged_hw=hw)
                for j, id_ in enumerate(b):
                    expected[id_] = {k: v[j] for k, v in data.items()}
        return expected

    # ---------------------------------------------------------------- basics
    def test_roundtrip_values_ids_dtypes(self, path):
        exp = self.fill(path, dtypes={"query_embeddings": "float32"})
        st = Store.open(path)
        assert st.ids.tolist() == list(range(10))
        assert len(st) == 10
        q = st.query_embeddings
        assert (
            q.chunks is None and q.dtype == np.float32
        )  # lazily indexed (xarray backend array), not dask
        assert isinstance(q.chunk().data, dask.array.Array)
        assert q.dims == ("image", "query", "hidden")
        assert q.dtype == np.float32
        assert st.pred_logits.dtype == np.float32
        np.testing.assert_array_equal(
            q.values, np.stack([exp[i]["query_embeddings"] for i in range(10)])
        )
        np.testing.assert_array_equal(
            st["pred_logits"].values, np.stack([exp[i]["pred_logits"] for i in range(10)])
        )
        assert st.variables == VARS
        assert st.ragged_variables == RAGGED
        assert st.row_dim == "image" and st.id_name == "image_id"
        assert st.mode == "r"
        st.close()

    def test_default_float16_precision(self, path):
        exp = self.fill(path)
        with Store.open(path) as st:
            q = st.query_embeddings
            assert st.dtypes["query_embeddings"] == "float16"  # stored as float16 ...
            assert q.dtype == np.float32  # ... decoded to float32 in the view
            assert st.read("query_embeddings").dtype == np.float16
            ref = np.stack([exp[i]["query_embeddings"] for i in range(10)])
            np.testing.assert_allclose(q.values.astype(np.float32), ref, rtol=1e-3, atol=1e-3)

    def test_missing_contains(self, path):
        self.fill(path, ids=[5, 1, 9, 3])
        with Store.open(path) as st:
            assert st.ids.tolist() == [5, 1, 9, 3]
            assert st.missing([0, 1, 2, 3, 9, 10]) == [0, 2, 10]
            assert st.missing(np.array([1, 7])) == [7]
            assert 5 in st and 4 not in st
            assert st.missing([]) == []

    def test_string_ids(self, path):
        rng = np.random.default_rng(1)
        with self.create(path, ragged=None) as st:
            ids = ["a.jpg", "b.jpg", "c.jpg"]
            data, coords, _ = make_batch([0, 1, 2], rng, ragged=False)
            st.append(ids, data, coords=coords)
            with pytest.raises(DTypeMismatchError):
                st.append([7], make_batch([7], rng, ragged=False)[0])
        with Store.open(path) as st:
            assert st.ids.tolist() == ids
            assert st.missing(["b.jpg", "z.jpg"]) == ["z.jpg"]
            assert st.query_embeddings.sel(image_id="b.jpg").sizes["image"] == 1

    def test_coords_dtypes_and_dataframe(self, path):
        self.fill(path, ids=range(6))
        with Store.open(path) as st:
            df = st.coords
            assert df.index.name == "image_id"
            assert df.index.tolist() == list(range(6))
            assert df["skin"].dtype == np.int64
            assert df["is_person"].dtype == bool
            assert df["score"].dtype == np.float64
            assert df["lighting"].tolist() == ["dimly_lit", "well_lit"] * 3
            assert df.loc[4, "skin"] == 1
            q = st.query_embeddings
            assert {"image_id", "skin", "lighting", "is_person", "score"} <= set(q.coords)

    def test_selection(self, path):
        self.fill(path, ids=range(12))
        with Store.open(path) as st:
            q = st.query_embeddings
            one = q.sel(skin=1)
            assert one.dims[0] == "image"
            assert one.image_id.values.tolist() == [0, 4, 8]
            two = q.sel(skin=[1, 2])
            assert sorted(two.image_id.values.tolist()) == [0, 1, 4, 5, 8, 9]
            both = st.sel(skin=[1, 2], lighting="well_lit")
            assert isinstance(both, xr.Dataset)
            assert sorted(both.image_id.values.tolist()) == [1, 5, 9]
            single = st.sel(skin=2, lighting="well_lit", is_person=True)
            assert single.sizes["image"] >= 1 and "image" in single.query_embeddings.dims
            np.testing.assert_array_equal(q.sel(skin=1).values, q.values[[0, 4, 8]])
            with pytest.raises(KeyError) as ei:
                st.sel(skin=99)
            assert "skin" in str(ei.value)
            with pytest.raises(SelectionError):
                q.sel(skin=99)

    def test_dataset_view(self, path):
        self.fill(path, ids=range(5))
        with Store.open(path) as st:
            ds = st.dataset
            assert set(ds.data_vars) == set(VARS)
            assert ds.sizes["image"] == 5
            assert ds.attrs["format_version"] == 1

    def test_set_coords_and_version_token(self, path):
        self.fill(path, ids=range(6))
        with Store.open(path, mode="a") as st:
            t0 = st.version_token
            st.set_coords({"cluster": [0, 0, 1, 1, 2, 2]})
            t1 = st.version_token
            assert t1 != t0
            st.set_coords({"cluster": [9, 8]}, ids=[4, 1])
            st.set_coords({"skin": [10]}, ids=[0])
            assert st.version_token != t1
            with pytest.raises(ShapeMismatchError):
                st.set_coords({"cluster": [1, 2]})
            with pytest.raises(ValidationError):
                st.set_coords({"cluster": [1]}, ids=[999])
            with pytest.raises(DTypeMismatchError):
                st.set_coords({"skin": ["x"]}, ids=[0])
        with Store.open(path) as st:
            assert st.coords["cluster"].tolist() == [0, 8, 1, 1, 9, 2]
            assert st.coords["skin"].tolist()[0] == 10
            assert st.query_embeddings.sel(cluster=1).sizes["image"] == 2

    def test_set_coords_then_append(self, path):
        rng = np.random.default_rng(3)
        self.fill(path, ids=range(5))
        with Store.open(path, mode="a") as st:
            st.set_coords({"cluster": [1, 2, 3, 4, 5]})
            data, coords, hw = make_batch([5, 6], rng)
            st.append([5, 6], data, coords=coords, ragged_hw=hw)
            data, coords, hw = make_batch([7], rng)
            coords["cluster"] = [70]
            st.append([7], data, coords=coords, ragged_hw=hw)
        with Store.open(path) as st:
            assert st.coords["cluster"].tolist() == [1, 2, 3, 4, 5, -1, -1, 70]

    def test_new_coord_later_gets_fill(self, path):
        rng = np.random.default_rng(3)
        with self.create(path, ragged=None) as st:
            d, _c, _ = make_batch([0, 1], rng, ragged=False)
            st.append([0, 1], d)
            d, _c, _ = make_batch([2], rng, ragged=False)
            st.append([2], d, coords={"name": ["x"], "w": [1.5]})
        with Store.open(path) as st:
            assert st.coords["name"].tolist() == ["", "", "x"]
            w = st.coords["w"].to_numpy()
            assert np.isnan(w[:2]).all() and w[2] == 1.5

    def test_attrs_provenance(self, path):
        st = self.create(
            path, attrs={"model": "detr_r50", "config": {"lr": 1e-4}, "argv": ["a", "b"]}
        )
        a = st.attrs
        assert a["model"] == "detr_r50" and a["config"] == {"lr": 1e-4} and a["argv"] == ["a", "b"]
        assert a["embstore_version"] and a["format_version"] == 1 and a["created"] and a["updated"]
        st.update_attrs(checkpoint_sha256="abc")
        with pytest.raises(ValidationError):
            st.update_attrs(bad=object())
        st.close()
        with Store.open(path) as st:
            assert st.attrs["checkpoint_sha256"] == "abc"
            assert "embstore" not in st.attrs

    def test_tables_blobs_skipped(self, path):
        with self.create(path) as st:
            df = pd.DataFrame(
                {
                    "person": [1, 2, 3],
                    "skin": [3, 7, 1],
                    "label": ["a", "b", "c"],
                    "ok": [True, False, True],
                    "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
                },
                index=pd.Index([10, 20, 30], name="annotation_id"),
            )
            st.write_table("people", df)
            st.write_table("plain", pd.DataFrame({"x": [1.5, 2.5]}))
            st.write_blob("faiss", b"\x00\x01binary")
            st.write_blob("faiss", b"replaced")
            st.record_skipped([3, 4], "unreadable")
            st.record_skipped([8], ["too small"])
            with pytest.raises(ShapeMismatchError):
                st.record_skipped([1, 2], ["one"])
        with Store.open(path) as st:
            pd.testing.assert_frame_equal(st.read_table("people"), df, check_dtype=False)
            pd.testing.assert_frame_equal(st.read_table("plain"), pd.DataFrame({"x": [1.5, 2.5]}))
            assert st.read_blob("faiss") == b"replaced"
            assert st.read_blob("nothing") is None
            assert sorted(st.tables) == ["people", "plain"]
            sk = st.skipped
            assert sk["id"].tolist() == [3, 4, 8] and sk["reason"].tolist() == [
                "unreadable"
            ] * 2 + ["too small"]
            with pytest.raises(KeyError):
                st.read_table("nope")
            with pytest.raises(ReadOnlyStoreError):
                st.write_blob("x", b"1")

    # ---------------------------------------------------------------- ragged
    def test_ragged_roundtrip(self, path):
        exp = self.fill(
            path, ids=range(7), dtypes={"encoder_output": "float32", "backbone_features": "float32"}
        )
        with Store.open(path) as st:
            for i in range(7):
                np.testing.assert_array_equal(
                    st.get_ragged("encoder_output", i), exp[i]["encoder_output"]
                )
                np.testing.assert_array_equal(
                    st.get_ragged("backbone_features", i), exp[i]["backbone_features"]
                )
            hw = st.ragged_hw("encoder_output")
            assert hw.loc[4].tolist() == [2, 2, 4]
            assert hw.index.tolist() == list(range(7))
            bhw = st.ragged_hw("backbone_features")
            assert (bhw["h"] * bhw["w"] == bhw["n"]).all()
            pad, mask = st.get_ragged_padded("encoder_output", [0, 2])
            assert pad.shape == (2, 6, 8)
            assert mask.sum(axis=1).tolist() == [2, 6]
            np.testing.assert_array_equal(pad[0, :2], exp[0]["encoder_output"])
            assert (pad[0, 2:] == 0).all()
            fpad, fmask = st.get_ragged_padded("backbone_features", [0, 2])
            assert fpad.shape == (2, 4, 3, 2) and fmask.shape == (2, 3, 2)
            np.testing.assert_array_equal(fpad[1], exp[2]["backbone_features"])
            rows = dict(st.iter_ragged("backbone_features", [5, 1]))
            np.testing.assert_array_equal(rows[1], exp[1]["backbone_features"])
            with pytest.raises(UnknownVariableError):
                st.get_ragged("query_embeddings", 0)
            with pytest.raises(SelectionError):
                st.get_ragged("encoder_output", 99)
            with pytest.raises(UnknownVariableError):
                st["encoder_output"]

    def test_ragged_validation(self, path):
        rng = np.random.default_rng(0)
        with self.create(path) as st:
            data, _coords, hw = make_batch([0, 1], rng)
            st.append([0, 1], data, ragged_hw=hw)
            bad = dict(data)
            bad["encoder_output"] = [np.ones((2, 9)), np.ones((2, 9))]
            with pytest.raises(ShapeMismatchError):
                st.append([2, 3], bad)
            bad = dict(data)
            bad["encoder_output"] = data["encoder_output"][:1]
            with pytest.raises(ShapeMismatchError):
                st.append([2, 3], bad)
            with pytest.raises(ShapeMismatchError):
                st.append([2, 3], data, ragged_hw={"encoder_output": [(5, 5), (1, 1)]})
            bad = dict(data)
            bad["backbone_features"] = [np.ones((5, 1, 1)), np.ones((5, 1, 1))]
            with pytest.raises(ShapeMismatchError):
                st.append([2, 3], bad)
            assert len(st) == 2

    # ---------------------------------------------------------------- append
    def test_reopen_append_equals_single_run(self, tmp_path):
        a = str(tmp_path / f"a{self.suffix}")
        b = str(tmp_path / f"b{self.suffix}")
        rng = np.random.default_rng(7)
        batches = [list(range(i, min(i + 3, 17))) for i in range(0, 17, 3)]
        made = [make_batch(bt, rng) for bt in batches]
        with self.create(a) as st:
            for bt, (d, c, hw) in zip(batches, made):
                st.append(bt, d, coords=c, ragged_hw=hw)
        for k, (bt, (d, c, hw)) in enumerate(zip(batches, made)):
            st = self.create(b) if k == 0 else Store.open(b, mode="a")
            st.append(bt, d, coords=c, ragged_hw=hw)
            st.close()
        sa, sb = Store.open(a), Store.open(b)
        assert sa.ids.tolist() == sb.ids.tolist() == list(range(17))
        xr.testing.assert_equal(
            sa.dataset.compute().drop_indexes(list(sa.dataset.indexes)),
            sb.dataset.compute().drop_indexes(list(sb.dataset.indexes)),
        )
        pd.testing.assert_frame_equal(sa.coords, sb.coords)
        for i in range(17):
            np.testing.assert_array_equal(
                sa.get_ragged("encoder_output", i), sb.get_ragged("encoder_output", i)
            )
            np.testing.assert_array_equal(
                sa.get_ragged("backbone_features", i), sb.get_ragged("backbone_features", i)
            )
        sa.close(), sb.close()

    def test_rows_visible_after_commit_only(self, path):
        rng = np.random.default_rng(0)
        st = self.create(path, chunk_rows=4, write_chunks=1, ragged=None)
        d, c, _ = make_batch([0, 1, 2], rng, ragged=False)
        st.append([0, 1, 2], d, coords=c)  # < one chunk: buffered
        if self.suffix == ".zarr":  # HDF5 files cannot be read while a writer holds them
            with Store.open(path) as reader:
                assert len(reader) == 0
        d, c, _ = make_batch([3, 4], rng, ragged=False)
        st.append([3, 4], d, coords=c)  # completes chunk 0 -> written + committed
        if self.suffix == ".zarr":
            with Store.open(path) as reader:
                assert reader.ids.tolist() == [0, 1, 2, 3]
        assert len(st) == 5  # reading from the writer flushes first
        st.close()
        with Store.open(path) as reader:
            assert len(reader) == 5

    def test_read_while_writing_flushes(self, path):
        rng = np.random.default_rng(0)
        with self.create(path, ragged=None) as st:
            d, c, _ = make_batch([0, 1], rng, ragged=False)
            st.append([0, 1], d, coords=c)
            assert st.query_embeddings.shape == (2, 3, 8)
            d, c, _ = make_batch([2], rng, ragged=False)
            st.append([2], d, coords=c)
            assert st.ids.tolist() == [0, 1, 2]
            assert st.coords["skin"].tolist() == [1, 2, 3]

    def test_empty_store(self, path):
        with self.create(path) as st:
            assert len(st) == 0
            assert st.missing([1]) == [1]
            assert st.query_embeddings.shape[0] == 0
        with Store.open(path) as st:
            assert len(st) == 0 and st.ids.tolist() == []

    # ------------------------------------------------------------ validation
    def test_validation_errors_write_nothing(self, path):
        rng = np.random.default_rng(0)
        with self.create(path) as st:
            data, coords, hw = make_batch([0, 1], rng)
            st.append([0, 1], data, coords=coords, ragged_hw=hw)
            token = st.version_token

            def bad(exc, ids=(2, 3), **changes):
                d = dict(data)
                kw = {"coords": dict(coords), "ragged_hw": hw}
                for k, v in changes.items():
                    if k in d:
                        d[k] = v
                    elif k == "drop":
                        d.pop(v)
                    else:
                        kw[k] = v
                with pytest.raises(exc) as ei:
                    st.append(list(ids), d, **kw)
                assert isinstance(ei.value, EmbstoreError)
                return str(ei.value)

            msg = bad(ShapeMismatchError, query_embeddings=np.ones((2, 4, 8)))
            assert "query_embeddings" in msg and "(2, 4, 8)" in msg
            bad(ShapeMismatchError, query_embeddings=np.ones((3, 3, 8)))
            bad(ShapeMismatchError, ids=(2, 3, 4))
            bad(DTypeMismatchError, query_embeddings=np.full((2, 3, 8), "x"))
            msg = bad(DuplicateIdError, ids=(5, 5))
            assert "5" in msg
            msg = bad(DuplicateIdError, ids=(1, 9))
            assert "[1]" in msg
            nan = data["query_embeddings"].copy()
            nan[1, 2, 3] = np.nan
            msg = bad(NonFiniteError, query_embeddings=nan)
            assert "allow_nonfinite" in msg
            bad(NonFiniteError, query_embeddings=np.full((2, 3, 8), 1e6))  # overflows float16
            d2 = dict(data, extra=np.ones((2, 1)))
            with pytest.raises(UnknownVariableError, match="extra"):
                st.append([2, 3], d2, ragged_hw=hw)
            with pytest.raises(ValidationError, match="missing"):
                st.append(
                    [2, 3], {k: v for k, v in data.items() if k != "pred_logits"}, ragged_hw=hw
                )
            bad(ShapeMismatchError, coords={"skin": [1, 2, 3]})
            bad(DTypeMismatchError, coords={"skin": ["a", "b"]})
            bad(DTypeMismatchError, coords={"skin": [object(), object()]})
            bad(ValidationError, coords={"query_embeddings": [1, 2]})
            bad(DTypeMismatchError, ids=(1.5, 2.5))
            assert len(st) == 2 and st.version_token == token
            # allow_nonfinite and a valid append still work afterwards
            st.append(
                [2, 3],
                dict(data, query_embeddings=nan),
                coords=coords,
                ragged_hw=hw,
                allow_nonfinite=True,
            )
            assert len(st) == 4
        with Store.open(path) as st:
            assert np.isnan(st.query_embeddings.values[3, 2, 3])

    def test_create_validation(self, path, tmp_path):
        with pytest.raises(ValidationError):
            Store.create(path)
        with pytest.raises(ValidationError):
            Store.create(path, variables={"x": ("image", "h")})
        with pytest.raises(ValidationError):
            Store.create(path, variables={"x": ("h",)}, dtypes={"y": "float32"})
        with pytest.raises(ValidationError):
            Store.create(path, variables={"x": ("h",)}, dtypes={"x": "str"})
        with pytest.raises(ValidationError):
            Store.create(path, variables={"_x": ("h",)})
        with pytest.raises(ValidationError):
            Store.create(path, variables={"x": ("h",)}, chunk_rows=0)
        assert not os.path.exists(path)
        self.create(path).close()
        with pytest.raises(StoreExistsError):
            self.create(path)
        st = self.create(path, overwrite=True, ragged=None)
        assert st.ragged_variables == {}
        st.close()

    def test_open_errors(self, path, tmp_path):
        with pytest.raises(StoreNotFoundError):
            Store.open(str(tmp_path / f"nothing{self.suffix}"))
        junk = tmp_path / f"junk{self.suffix}"
        if self.suffix == ".zarr":
            junk.mkdir()
            (junk / "readme.txt").write_text("not a store")
        else:
            junk.write_bytes(b"not an hdf5 file at all")
        with pytest.raises(NotAStoreError):
            Store.open(str(junk))
        with pytest.raises(ValidationError):
            Store.open(str(junk), mode="w")

    def test_newer_format_version_refused(self, path):
        self.create(path).close()
        with Store.open(path, mode="a") as st:
            attrs = st._backend.read_attrs()
            attrs["embstore"]["format_version"] = 99
            st._backend.write_attrs(attrs)
        with pytest.raises(FormatVersionError, match="99"):
            Store.open(path)

    def test_read_only(self, path):
        self.fill(path, ids=range(2))
        rng = np.random.default_rng(0)
        with Store.open(path) as st:
            d, _c, hw = make_batch([5], rng)
            with pytest.raises(ReadOnlyStoreError):
                st.append([5], d, ragged_hw=hw)
            with pytest.raises(PermissionError):
                st.set_coords({"x": [1, 2]})
            with pytest.raises(ReadOnlyStoreError):
                st.update_attrs(a=1)

    def test_lock(self, path):
        st = self.create(path)
        with pytest.raises(StoreLockedError):
            Store.open(path, mode="a")
        st.close()
        st2 = Store.open(path, mode="a")
        st2.close()
        st2.close()  # idempotent

    def test_stale_lock_of_dead_process_is_taken_over(self, path):
        import socket
        import subprocess
        import sys

        self.create(path).close()
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        lock = Store.open(path, mode="a")._lock
        lockpath = lock.path
        lock.release()
        lockpath.write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid, "time": 0}))
        with Store.open(path, mode="a") as st:  # dead pid: taken over
            assert st.mode == "a"
        lockpath.write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 0}))
        with pytest.raises(StoreLockedError, match="force=True"):
            Store.open(path, mode="a")
        Store.open(path, mode="a", force=True).close()

    def test_closed_store(self, path):
        st = self.create(path)
        st.close()
        with pytest.raises(EmbstoreError, match="closed"):
            st.ids
        assert "closed" in repr(st)

    def test_repr_and_dir(self, path):
        self.fill(path, ids=range(3))
        with Store.open(path) as st:
            r = repr(st)
            assert "rows: 3" in r and "query_embeddings" in r
            assert "query_embeddings" in dir(st)
            with pytest.raises(AttributeError):
                st.not_a_variable

    # -------------------------------------------------------- interoperability
    def open_plain(self, path):
        raise NotImplementedError

    def test_plain_xarray_sees_dims_and_coords(self, path):
        self.fill(path, ids=range(6))
        ds = self.open_plain(path)
        assert ds["query_embeddings"].dims == ("image", "query", "hidden")
        assert ds.sizes["image"] == 6
        for c in ("image_id", "skin", "lighting", "is_person"):
            assert c in ds.coords, c
        assert ds["image_id"].values.tolist() == list(range(6))
        assert [str(v) for v in ds["lighting"].values] == ["dimly_lit", "well_lit"] * 3
        assert ds["is_person"].dtype == bool
        assert ds["skin"].values.tolist() == [1, 2, 3, 4, 1, 2]
        assert ds["encoder_output"].dims == ("encoder_output_token", "hidden")
        ds.close()

    def test_row_arrays_get_larger_chunks(self, path, monkeypatch):
        """ids, coordinates and ragged offsets use chunks of ~ROW_ARRAY_CHUNK_TARGET rows."""
        monkeypatch.setattr(schema_mod, "ROW_ARRAY_CHUNK_TARGET", 10)
        exp = self.fill(path, ids=range(12), batch=5, chunk_rows=4)  # row-array chunks: 8 rows
        with Store.open(path, mode="a") as st:  # resume mid row-array chunk
            rng = np.random.default_rng(3)
            for b in ([12, 13, 14], [15, 16, 17, 18, 19, 20]):
                data, coords, hw = make_batch(b, rng)
                st.append(b, data, coords=coords, ragged_hw=hw)
                exp.update({i: {k: v[j] for k, v in data.items()} for j, i in enumerate(b)})
        with Store.open(path) as st:
            be = st._backend
            assert be.array_info("query_embeddings")[2] == 4
            for name in ("image_id", "skin", "lighting", "is_person", "encoder_output_offset"):
                assert be.array_info(name)[2] == 8, name
                assert be.array_info(name)[0][0] == 21, name  # one row count for every row array
            assert st.ids.tolist() == list(range(21))
            assert st.coords["skin"].tolist() == [1, 2, 3, 4] * 5 + [1]
            np.testing.assert_array_equal(
                st.read("query_embeddings", ids=[19]).astype(np.float32)[0],
                exp[19]["query_embeddings"].astype(np.float16).astype(np.float32),
            )
            for i in (0, 7, 8, 15, 20):
                np.testing.assert_array_equal(
                    st.get_ragged("encoder_output", i), exp[i]["encoder_output"].astype(np.float16)
                )
        ds = self.open_plain(path)
        assert ds.sizes["image"] == 21 and ds["image_id"].values.tolist() == list(range(21))
        ds.close()

    # ------------------------------------------------------------ properties
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        sizes=st_.lists(st_.integers(0, 6), min_size=1, max_size=4),
        chunk=st_.integers(1, 5),
        reopen=st_.booleans(),
        seed=st_.integers(0, 2**16),
        row_array_target=st_.sampled_from([1, 7, schema_mod.ROW_ARRAY_CHUNK_TARGET]),
    )
    def test_roundtrip_property(
        self, tmp_path_factory, sizes, chunk, reopen, seed, row_array_target
    ):
        default_target = schema_mod.ROW_ARRAY_CHUNK_TARGET
        schema_mod.ROW_ARRAY_CHUNK_TARGET = (
            row_array_target  # ids/coords chunks of 1x, ~7 rows or default
        )
        try:
            self._roundtrip(tmp_path_factory, sizes, chunk, reopen, seed)
        finally:
            schema_mod.ROW_ARRAY_CHUNK_TARGET = default_target

    def _roundtrip(self, tmp_path_factory, sizes, chunk, reopen, seed):
        path = str(tmp_path_factory.mktemp("h") / f"p{self.suffix}")
        rng = np.random.default_rng(seed)
        dtypes = {
            "query_embeddings": "float32",
            "encoder_output": "float32",
            "backbone_features": "float32",
        }
        st = self.create(path, chunk_rows=chunk, dtypes=dtypes, write_chunks=1)
        expected, next_id = [], 0
        for n in sizes:
            ids = list(range(next_id, next_id + n))
            next_id += n
            d, c, hw = make_batch(ids, rng)
            st.append(ids, d, coords=c, ragged_hw=hw)
            expected += [
                (
                    i,
                    d["query_embeddings"][k],
                    d["encoder_output"][k],
                    d["backbone_features"][k],
                    c["lighting"][k],
                )
                for k, i in enumerate(ids)
            ]
            if reopen:
                st.close()
                st = Store.open(path, mode="a")
        st.close()
        with Store.open(path) as st:
            assert st.ids.tolist() == [e[0] for e in expected]
            if expected:
                np.testing.assert_array_equal(
                    st.query_embeddings.values, np.stack([e[1] for e in expected])
                )
                assert st.coords["lighting"].tolist() == [e[4] for e in expected]
            for i, _q, enc, bb, _l in expected:
                np.testing.assert_array_equal(st.get_ragged("encoder_output", i), enc)
                np.testing.assert_array_equal(st.get_ragged("backbone_features", i), bb)


class TestZarrStore(StoreSuite):
    suffix = ".zarr"

    def open_plain(self, path):
        return xr.open_zarr(path, consolidated=False)

    def test_commit_records_are_numbered_and_pruned(self, path):
        self.fill(path, ids=range(30), batch=2, chunk_rows=2)
        recs = sorted(os.listdir(os.path.join(path, "_embstore", "commits", "main")))
        assert 1 <= len(recs) <= 3
        assert all(r.endswith(".json") and r[:-5].isdigit() for r in recs)

    def test_damaged_commit_record_raises_and_repair_rolls_back(self, path):
        self.fill(path, ids=range(8), batch=4, chunk_rows=4)
        d = os.path.join(path, "_embstore", "commits", "main")
        last = sorted(os.listdir(d))[-1]
        raw = open(os.path.join(d, last), "rb").read()
        with open(os.path.join(d, f"{int(last[:-5]) + 1:012d}.json"), "wb") as fh:
            fh.write(raw.replace(b'"n\\":8', b'"n\\":99')[:-3])  # corrupt + cut short
        files = sorted(f for _d, _s, fs in os.walk(path) for f in fs)
        # records are published whole (link of a complete temp file): a bad one is damage, never 0 rows
        for mode in ("r", "a"):
            with pytest.raises(DamagedStoreError, match="repair"):
                Store.open(path, mode=mode)
        assert sorted(f for _d, _s, fs in os.walk(path) for f in fs) == files  # nothing deleted
        from embstore.store.integrity import repair

        report = repair(path)
        assert any("main" in a for a in report.actions)
        with Store.open(path) as st:
            assert len(st) == 8

    def test_sharded_inner_chunks(self, path):
        exp = self.fill(
            path,
            ids=range(10),
            chunk_rows=4,
            inner_chunk_rows=1,
            dtypes={"query_embeddings": "float32"},
            compressor="zstd",
        )
        with Store.open(path) as st:
            np.testing.assert_array_equal(st.query_embeddings.values[7], exp[7]["query_embeddings"])

    def test_preallocated_store_keeps_one_chunking(self, path, monkeypatch):
        """Region writers never share a chunk: every row array uses chunk_rows."""
        monkeypatch.setattr(schema_mod, "ROW_ARRAY_CHUNK_TARGET", 10)
        Store.create(path, variables=VARS, chunk_rows=4, n_rows=8).close()
        rng = np.random.default_rng(0)
        for start in (4, 0):
            with Store.open(path, mode="a", region=(start, start + 4)) as st:
                data, coords, _ = make_batch(range(start, start + 4), rng, ragged=False)
                st.append(list(range(start, start + 4)), data, coords=coords)
        with Store.open(path) as st:
            assert sorted(st.ids.tolist()) == list(range(8))
            assert {
                st._backend.array_info(n)[2] for n in ("image_id", "skin", "query_embeddings")
            } == {4}

    def test_storage_options_url(self, tmp_path):
        url = "file://" + str(tmp_path / "u.zarr")
        self.fill(url, ids=range(3), ragged=None)
        with Store.open(url) as st:
            assert st.ids.tolist() == [0, 1, 2]


class TestHDF5Store(StoreSuite):
    suffix = ".h5"

    def open_plain(self, path):
        return xr.open_dataset(path, engine="h5netcdf")

    def test_region_writers_refused(self, path):
        with pytest.raises(ValidationError, match="Zarr"):
            self.create(path, n_rows=8, ragged=None)

    def test_h5dump(self, path):
        import shutil
        import subprocess

        if shutil.which("h5dump") is None:
            pytest.skip("h5dump is not installed")
        self.fill(path, ids=range(3))
        out = subprocess.run(
            ["h5dump", "-H", path], capture_output=True, text=True, check=True
        ).stdout
        assert "query_embeddings" in out and "DIMENSION_LIST" in out
        assert 'DATASET "image"' in out  # the row dimension is a dimension scale

        def dump(name):
            return subprocess.run(
                ["h5dump", "-d", name, path], capture_output=True, text=True, check=True
            ).stdout

        ids = dump("/image_id")
        assert (
            "(0): 0, 1, 2" in ids and "(DATASET" in ids and '"/image")' in ids
        )  # ids attached to the image dim
        assert "(0): 1, 2, 3" in dump("/skin")
        assert '"dimly_lit", "well_lit", "dimly_lit"' in dump("/lighting")


def test_appends_from_a_writer_thread_with_concurrent_reads(tmp_path):
    """A background writer thread appends while the main thread reads."""
    import threading

    path = str(tmp_path / "t.zarr")
    rng = np.random.default_rng(0)
    st = Store.create(path, variables=VARS, chunk_rows=4, write_chunks=1)
    batches = [
        (list(range(i, i + 3)), make_batch(list(range(i, i + 3)), rng, ragged=False))
        for i in range(0, 60, 3)
    ]

    def work():
        for ids, (d, c, _) in batches:
            st.append(ids, d, coords=c)

    t = threading.Thread(target=work)
    t.start()
    seen = []
    while t.is_alive():
        seen.append(len(st))
    t.join()
    assert seen == sorted(seen)
    assert st.ids.tolist() == list(range(60))
    with pytest.raises(ValueError):
        st.ids[0] = 5  # read-only view
    st.close()
