"""The split Store: facade over reader/writer, one id lookup, one table codec, split Zarr backend."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from embstore import Store
from embstore.errors import (
    ReadOnlyStoreError,
    SelectionError,
    UnknownIdError,
    ValidationError,
)
from embstore.store import tablecodec
from embstore.store.backends import Backend, backend_class
from embstore.store.backends.hdf5_backend import HDF5Backend
from embstore.store.backends.zarr_backend import ZarrBackend
from embstore.store.backends.zarr_fsspec import FsspecZarrBackend
from embstore.store.backends.zarr_local import LocalZarrBackend


def _fill(path: str, **kw) -> None:
    with Store.create(
        path, variables={"e": ("d",)}, dtypes={"e": "float32"}, ragged={"tok": ("token", "h")}, **kw
    ) as st:
        st.append(
            [1, 2, 3],
            {
                "e": np.arange(6.0).reshape(3, 2),
                "tok": [np.ones((k + 1, 2), dtype=np.float32) for k in range(3)],
            },
            coords={"skin": [1, 2, 1]},
        )


def _memory_path() -> str:
    return f"memory://split-{uuid.uuid4().hex}/s.zarr"


@pytest.mark.parametrize("suffix", ["s.zarr", "s.h5"])
def test_every_id_lookup_raises_one_error_type(tmp_path, suffix):
    path = str(tmp_path / suffix)
    _fill(path)
    with Store.open(path, mode="a") as st:
        calls = [
            lambda: st.read("e", ids=[1, 99]),
            lambda: st.get_ragged("tok", 99),
            lambda: list(st.iter_ragged("tok", ids=[99])),
            lambda: st.set_coords({"skin": [5]}, ids=[99]),
        ]
        for call in calls:
            with pytest.raises(UnknownIdError, match=r"\[99\] are not committed") as ei:
                call()
            # one type that both old contracts still catch
            assert isinstance(ei.value, SelectionError) and isinstance(ei.value, KeyError)
            assert isinstance(ei.value, ValidationError) and isinstance(ei.value, ValueError)
        # the refused calls left the writer healthy
        st.set_coords({"skin": [5]}, ids=[2])
        assert st.coords["skin"].tolist() == [1, 5, 1]


def test_read_only_store_has_no_writer(tmp_path):
    path = str(tmp_path / "s.zarr")
    _fill(path)
    st = Store.open(path)
    assert st._writer is None
    for call in (
        lambda: st.append([9], {"e": np.zeros((1, 2)), "tok": [np.ones((1, 2))]}),
        lambda: st.set_coords({"skin": [1, 1, 1]}),
        lambda: st.write_table("t", pd.DataFrame({"a": [1]})),
        lambda: st.write_blob("b", b"x"),
        lambda: st.record_skipped([4], "bad"),
        lambda: st.update_attrs(model="m"),
    ):
        with pytest.raises(ReadOnlyStoreError):
            call()
    st.flush()  # a no-op for readers, as before
    assert len(st) == 3
    st.close()
    with Store.open(path, mode="r+") as w:
        assert w._writer is not None and w._writer.region == "main"


def test_facade_methods_keep_their_signatures_and_docs():
    import inspect

    sig = inspect.signature(Store.read)
    assert list(sig.parameters) == ["self", "var", "ids", "mask", "labels"]
    assert sig.parameters["labels"].kind is inspect.Parameter.VAR_KEYWORD
    for name in ("append", "set_coords", "read", "sel", "missing", "get_ragged", "write_table"):
        doc = getattr(Store, name).__doc__
        assert doc and ("Examples" in doc or "Parameters" in doc), name
    assert Store.coords.__doc__ and "DataFrame" in Store.coords.__doc__


def test_backend_classes_and_capability_flags(tmp_path):
    assert backend_class(str(tmp_path / "a.zarr")) is LocalZarrBackend
    assert backend_class("file:///x/a.zarr") is LocalZarrBackend
    assert backend_class("memory://x/a.zarr") is FsspecZarrBackend
    assert backend_class("s3://bucket/a.zarr") is FsspecZarrBackend
    assert backend_class("a.h5") is HDF5Backend
    for cls in (LocalZarrBackend, FsspecZarrBackend, HDF5Backend):
        assert issubclass(cls, Backend)
    assert issubclass(LocalZarrBackend, ZarrBackend) and issubclass(FsspecZarrBackend, ZarrBackend)
    assert LocalZarrBackend.atomic_rename and not FsspecZarrBackend.atomic_rename
    assert LocalZarrBackend.exclusive_create and FsspecZarrBackend.exclusive_create
    assert not HDF5Backend.exclusive_create and HDF5Backend.atomic_records
    # ZarrBackend.open/create/exists dispatch on the path
    path = str(tmp_path / "d.zarr")
    _fill(path)
    assert ZarrBackend.exists(path, None)
    assert type(ZarrBackend.open(path, "r", None)) is LocalZarrBackend


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_records_are_created_exclusively(tmp_path, kind):
    path = str(tmp_path / "s.zarr") if kind == "local" else _memory_path()
    _fill(path)
    be = backend_class(path).open(path, "a", None)
    seq = max(be.list_records("main")) + 1
    be.write_record("main", seq, b'{"x": 1}')
    with pytest.raises(FileExistsError):
        be.write_record("main", seq, b'{"x": 2}')
    assert be.read_record("main", seq) == b'{"x": 1}'
    be.delete_record("main", seq)
    assert seq not in be.list_records("main")


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flag": [True, False, True],
            "n": np.array([1, -2, 3], dtype=np.int64),
            "x": [0.5, np.nan, 2.0],
            "who": ["a", "", "é"],
            "when": pd.to_datetime(["2020-01-01", "2021-06-30", "1999-12-31"]).astype(
                "datetime64[ns]"
            ),
        },
        index=pd.Index([10, 20, 30], name="key"),
    )


def test_one_table_and_blob_codec_reads_alike_on_every_backend(tmp_path):
    df = _frame()
    blob = bytes(range(256)) * 3
    got = {}
    for path in (str(tmp_path / "t.zarr"), str(tmp_path / "t.h5"), _memory_path()):
        _fill(path)
        with Store.open(path, mode="a") as st:
            st.write_table("people", df)
            st.write_table("empty", pd.DataFrame({"s": pd.Series([], dtype=str)}))
            st.write_blob("index", blob)
        with Store.open(path) as st:
            got[path] = st.read_table("people")
            assert st.read_blob("index") == blob
            assert len(st.read_table("empty")) == 0
    for out in got.values():
        pd.testing.assert_frame_equal(out, df)
        assert out["flag"].dtype == bool


@settings(max_examples=40, deadline=None)
@given(
    ints=hst.lists(hst.integers(-(2**62), 2**62), min_size=1, max_size=8),
    text=hst.text(
        alphabet=hst.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=6,
    ),
    flag=hst.booleans(),
)
def test_codec_round_trip(ints, text, flag):
    n = len(ints)
    df = pd.DataFrame(
        {"i": np.array(ints, dtype=np.int64), "s": [text] * n, "b": [flag] * n},
        index=pd.Index([str(k) for k in range(n)], name="k"),
    )
    cols, meta = tablecodec.encode_frame(df)
    stored = {}
    for name, values in cols.items():
        arr, extra = tablecodec.storable_column(values, bool_as_int8=True)
        stored[name] = tablecodec.column_from_storage(
            arr.astype(object) if arr.dtype.kind == "U" else arr, extra
        )
    pd.testing.assert_frame_equal(tablecodec.decode_frame(stored, meta), df)
