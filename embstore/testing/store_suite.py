"""Backend conformance tests for :class:`embstore.Store` (in the style of zarr's ``StoreTests``).

:class:`StoreTests` holds behavioural tests that every storage backend must
pass: create, append, read, ragged variables, coordinates, ``set_coords``,
tables, blobs, skipped rows, attributes, ``version_token``, the mode words
of :meth:`embstore.Store.open` and reopening. A backend's test module
subclasses it and only says how to make a fresh path (and, for URLs, the
``storage_options``)::

    import pytest
    from embstore.testing.store_suite import StoreTests

    class TestLocalZarr(StoreTests):
        @pytest.fixture
        def path(self, tmp_path):
            return str(tmp_path / "run.zarr")

Where a backend does not give a guarantee, the test reads the backend's
capability flag (:attr:`~embstore.store.backends.base.Backend.atomic_records`,
``staged_arrays``, ``strict_arrays``) and is skipped with the reason.

The module needs pytest (install ``embstore[test]``); ``import embstore``
never imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from embstore import Store
from embstore.errors import (
    ReadOnlyStoreError,
    StoreExistsError,
    StoreNotFoundError,
    ValidationError,
)

__all__ = ["StoreTests"]

VARIABLES = {"emb": ("q", "h")}
RAGGED = {"tok": ("token", "h")}
DTYPES = {"emb": "float32", "tok": "float32"}
Q, H = 3, 4


def emb_rows(ids: Any) -> np.ndarray:
    """Deterministic dense rows: every value is a function of the row id."""
    ids = np.asarray(list(ids), dtype=np.float32)
    base = np.arange(Q * H, dtype=np.float32).reshape(Q, H)
    return ids[:, None, None] * 0.5 + base[None]


def tok_rows(ids: Any) -> list[np.ndarray]:
    """Deterministic ragged rows of ``1 + id % 4`` tokens."""
    return [np.full((1 + int(i) % 4, H), float(i), dtype=np.float32) for i in ids]


class StoreTests:
    """Behavioural tests every storage backend must pass.

    Subclasses override the :meth:`path` fixture (a fresh, absent location)
    and, for fsspec URLs, :meth:`storage_options`.
    """

    @pytest.fixture
    def path(self, tmp_path: Any) -> str:
        """A fresh location for a store (override in subclasses)."""
        raise NotImplementedError("subclasses of StoreTests must override the `path` fixture")

    @pytest.fixture
    def storage_options(self) -> dict[str, Any] | None:
        """fsspec options for ``path`` (None for local paths)."""
        return None

    # ------------------------------------------------------------- helpers
    def create(
        self, path: str, so: dict[str, Any] | None, ragged: bool = False, **kw: Any
    ) -> Store:
        """Create the suite's store (dense ``emb``, chunks of 4 rows; ragged ``tok`` if asked).

        Few arrays keep the suite fast on object stores (every array costs requests per commit).
        """
        args: dict[str, Any] = dict(
            variables=VARIABLES,
            ragged=RAGGED if ragged else None,
            dtypes=DTYPES if ragged else {"emb": "float32"},
            chunk_rows=4,
        )
        args.update(kw)
        return Store.create(path, storage_options=so, **args)

    def open(self, path: str, so: dict[str, Any] | None, mode: str = "r", **kw: Any) -> Store:
        """``Store.open`` with the subclass's storage options."""
        return Store.open(path, mode=mode, storage_options=so, **kw)

    @staticmethod
    def append(st: Store, ids: Any, **coords: Any) -> None:
        """Append deterministic rows ``ids`` (and optional coordinates)."""
        ids = list(ids)
        data: dict[str, Any] = {"emb": emb_rows(ids)}
        if "tok" in st.ragged_variables:
            data["tok"] = tok_rows(ids)
        st.append(ids, data, coords=coords or None)

    def filled(
        self, path: str, so: dict[str, Any] | None, n: int = 10, ragged: bool = False
    ) -> None:
        """A closed store with rows ``0..n-1`` (coordinate ``tag = id % 3``)."""
        with self.create(path, so, ragged=ragged) as st:
            for a in range(0, n, 3):
                ids = list(range(a, min(n, a + 3)))
                self.append(st, ids, tag=[i % 3 for i in ids])

    # --------------------------------------------------------------- tests
    def test_create_empty(self, path: str, storage_options: Any) -> None:
        with self.create(path, storage_options, ragged=True) as st:
            assert len(st) == 0
            assert st.ids.tolist() == []
        with self.open(path, storage_options) as st:
            assert len(st) == 0
            assert st.variables == {"emb": ("q", "h")}
            assert st.ragged_variables == {"tok": ("token", "h")}

    def test_append_read_roundtrip(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=10)
        with self.open(path, storage_options) as st:
            assert len(st) == 10
            assert st.ids.tolist() == list(range(10))
            got = st.read("emb")
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, emb_rows(range(10)))
            np.testing.assert_array_equal(st.read("emb", ids=[7, 2]), emb_rows([7, 2]))

    def test_append_across_reopen(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=5)
        with self.open(path, storage_options, mode="r+") as st:
            self.append(st, [5, 6, 7], tag=[2, 0, 1])
        with self.open(path, storage_options) as st:
            assert st.ids.tolist() == list(range(8))
            np.testing.assert_array_equal(st.read("emb"), emb_rows(range(8)))
            assert st.coords["tag"].tolist() == [i % 3 for i in range(8)]

    def test_flush_makes_rows_visible_to_readers(self, path: str, storage_options: Any) -> None:
        with self.create(path, storage_options) as st:
            self.append(st, [0, 1], tag=[0, 1])
            st.flush()
            with self.open(path, storage_options) as rd:
                assert rd.ids.tolist() == [0, 1]

    def test_ragged(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=9, ragged=True)
        with self.open(path, storage_options) as st:
            np.testing.assert_array_equal(st.read("emb"), emb_rows(range(9)))
            for i in (0, 3, 8):
                np.testing.assert_array_equal(st.get_ragged("tok", i), tok_rows([i])[0])
            got = dict(st.iter_ragged("tok", ids=[5, 1]))
            assert sorted(got) == [1, 5]
            np.testing.assert_array_equal(got[5], tok_rows([5])[0])

    def test_coords(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=7)
        with self.open(path, storage_options) as st:
            assert "tag" in st.coord_names
            c = st.coords
            assert c["tag"].tolist() == [i % 3 for i in range(7)]
            np.testing.assert_array_equal(st.read("emb", tag=1), emb_rows([1, 4]))

    def test_set_coords(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=6)
        with self.open(path, storage_options, mode="r+") as st:
            st.set_coords({"tag": [10 + i for i in range(6)], "label": [f"l{i}" for i in range(6)]})
        with self.open(path, storage_options) as st:
            assert st.coords["tag"].tolist() == [10 + i for i in range(6)]
            assert st.coords["label"].tolist() == [f"l{i}" for i in range(6)]
            np.testing.assert_array_equal(st.read("emb"), emb_rows(range(6)))

    def test_set_coords_subset(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=6)
        with self.open(path, storage_options, mode="r+") as st:
            st.set_coords({"tag": [99, 98]}, ids=[4, 1])
        with self.open(path, storage_options) as st:
            assert st.coords["tag"].tolist() == [0, 98, 2, 0, 99, 2]

    def test_set_coords_copy_on_write(self, path: str, storage_options: Any) -> None:
        """A reader opened before ``set_coords`` keeps a consistent snapshot."""
        self.filled(path, storage_options, n=6)
        with self.open(path, storage_options, mode="r+") as st:
            if not st._backend.staged_arrays:
                pytest.skip(
                    f"{st.backend} backend has no staged arrays: set_coords writes in place"
                )
            with self.open(path, storage_options) as rd:
                before = rd.coords["tag"].tolist()
                st.set_coords({"tag": [5] * 6})
                st.flush()
                after = rd.coords["tag"].tolist()
            assert after in (before, [5] * 6)

    def test_tables(self, path: str, storage_options: Any) -> None:
        df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
        with self.create(path, storage_options) as st:
            st.write_table("people", df)
            st.write_table("people", df.iloc[:2])  # replaced as a whole
        with self.open(path, storage_options) as st:
            assert "people" in st.tables
            pd.testing.assert_frame_equal(
                st.read_table("people").reset_index(drop=True),
                df.iloc[:2].reset_index(drop=True),
                check_dtype=False,
            )

    def test_blobs(self, path: str, storage_options: Any) -> None:
        data = np.random.default_rng(0).bytes(3000)
        with self.create(path, storage_options) as st:
            assert st.read_blob("idx") is None
            st.write_blob("idx", b"old")
            st.write_blob("idx", data)
        with self.open(path, storage_options) as st:
            assert st.read_blob("idx") == data

    def test_skipped(self, path: str, storage_options: Any) -> None:
        with self.create(path, storage_options) as st:
            assert len(st.skipped) == 0
            st.record_skipped([100, 101], "unreadable")
            st.record_skipped([102], ["too small"])
        with self.open(path, storage_options) as st:
            sk = st.skipped
            assert sorted(map(int, sk["id"])) == [100, 101, 102]
            assert dict(zip(map(int, sk["id"]), sk["reason"])) == {
                100: "unreadable",
                101: "unreadable",
                102: "too small",
            }

    def test_attrs(self, path: str, storage_options: Any) -> None:
        with self.create(path, storage_options, attrs={"model": "m1"}) as st:
            st.update_attrs(k=1, nested={"a": [1, 2]})
            st.update_attrs(k=2)
        with self.open(path, storage_options) as st:
            a = st.attrs
            assert a["model"] == "m1" and a["k"] == 2 and a["nested"] == {"a": [1, 2]}

    def test_version_token(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=4)
        with self.open(path, storage_options) as st:
            t0 = st.version_token
        with self.open(path, storage_options) as st:
            assert st.version_token == t0  # reopening changes nothing
        with self.open(path, storage_options, mode="r+") as st:
            self.append(st, [4], tag=[1])
        with self.open(path, storage_options) as st:
            t1 = st.version_token
        assert t1 != t0
        with self.open(path, storage_options, mode="r+") as st:
            st.set_coords({"tag": [7] * 5})
        with self.open(path, storage_options) as st:
            assert st.version_token not in (t0, t1)

    def test_mode_r_absent(self, path: str, storage_options: Any) -> None:
        with pytest.raises(StoreNotFoundError):
            self.open(path, storage_options, mode="r")

    def test_mode_r_is_read_only(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=3)
        with self.open(path, storage_options) as st:
            with pytest.raises(ReadOnlyStoreError):
                self.append(st, [3])

    def test_mode_a_creates_then_resumes(self, path: str, storage_options: Any) -> None:
        kw = dict(variables=VARIABLES, dtypes={"emb": "float32"}, chunk_rows=4)
        with self.open(path, storage_options, mode="a", **kw) as st:
            self.append(st, [0, 1])
        with self.open(path, storage_options, mode="a", **kw) as st:
            assert st.ids.tolist() == [0, 1]
            self.append(st, [2])
        with self.open(path, storage_options) as st:
            assert st.ids.tolist() == [0, 1, 2]
            np.testing.assert_array_equal(st.read("emb"), emb_rows(range(3)))

    def test_mode_a_schema_mismatch(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=2)
        with pytest.raises(ValidationError, match="variables"):
            self.open(path, storage_options, mode="a", variables={"other": ("d",)})
        with self.open(path, storage_options) as st:  # untouched
            assert st.ids.tolist() == [0, 1]

    def test_mode_w_replaces(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=4)
        with self.open(path, storage_options, mode="w", variables={"other": ("d",)}) as st:
            assert len(st) == 0
        with self.open(path, storage_options) as st:
            assert len(st) == 0 and list(st.variables) == ["other"]

    def test_mode_w_minus_refuses_existing(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=2)
        with pytest.raises(StoreExistsError):
            self.open(path, storage_options, mode="w-", variables=VARIABLES)
        with self.open(path, storage_options) as st:
            assert len(st) == 2

    def test_mode_word_rejected(self, path: str, storage_options: Any) -> None:
        with pytest.raises(ValidationError, match="mode="):
            self.open(path, storage_options, mode="x")

    def test_duplicate_ids_rejected(self, path: str, storage_options: Any) -> None:
        self.filled(path, storage_options, n=3)
        with self.open(path, storage_options, mode="r+") as st:
            with pytest.raises(ValidationError):
                self.append(st, [1])
        with self.open(path, storage_options) as st:
            assert st.ids.tolist() == [0, 1, 2]

    def test_strict_arrays_flag(self, path: str, storage_options: Any) -> None:
        """A backend that checks chunk presence covers the dense variables and ids."""
        self.filled(path, storage_options, n=3)
        with self.open(path, storage_options) as st:
            strict = st._backend.strict_arrays
            if not strict:
                pytest.skip(
                    f"{st.backend} backend does not check that committed chunks exist (strict_arrays)"
                )
            assert {"emb", "image_id"} <= set(strict)

    def test_atomic_records_flag(self, path: str, storage_options: Any) -> None:
        """Commit records that are written atomically are never left cut short."""
        self.filled(path, storage_options, n=3)
        with self.open(path, storage_options, mode="r+") as st:
            b = st._backend
            if not b.atomic_records:
                pytest.skip(
                    f"{st.backend} backend does not write commit records atomically (atomic_records)"
                )
            listed = b.list_records(st._region)
            assert listed and all(isinstance(s, int) for s in listed)
