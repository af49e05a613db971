"""Adversarial input to the store: names, ids and values, resources, errors (issue 11 items 3, 7-9).

Every refused call must raise an :class:`~embstore.errors.EmbstoreError`
subclass whose message names the bad value, write nothing, and leave the
writer healthy: the tests append more rows after the refusal, close, and
check that every accepted row is there.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from embstore import Store
from embstore.errors import (
    DiskFullError,
    DTypeMismatchError,
    EmbstoreError,
    InvalidNameError,
    NonFiniteError,
    StoreLockedError,
    ValidationError,
)
from embstore.store.validation import MAX_NAME_LENGTH, check_name

BACKENDS = [".zarr", ".h5"]

BAD_NAMES = [
    "",
    ".",
    "..",
    "...",
    "zarr.json",
    "ZARR.JSON",
    ".zattrs",
    "a/b",
    "a\\b",
    "x\x00y",
    "x" * (MAX_NAME_LENGTH + 100),
    "/tmp/abs/image_id",
    "../other.zarr/image_id",
    "_embstore",
    "_tables",
    "-rf",
    "with space",
    "tab\tname",
    "é",
    7,
    None,
]


def _path(tmp_path, ext, name="s"):
    return str(tmp_path / f"{name}{ext}")


def _new(tmp_path, ext, name="s", **kw):
    return Store.create(
        _path(tmp_path, ext, name), variables={"e": ("d",)}, dtypes={"e": "float32"}, **kw
    )


def _rows(ids):
    ids = np.asarray(ids)
    return {"e": np.stack([np.full(3, float(i), dtype=np.float32) for i in ids])}


def _check_healthy(st, path, done_ids, more_ids):
    """Append more rows after a refused call, close, and check every accepted row."""
    st.append(more_ids, _rows(more_ids))
    st.close()
    ro = Store.open(path)
    want = list(done_ids) + list(more_ids)
    assert sorted(ro.ids.tolist()) == sorted(want)
    got = ro.read("e", ids=want)
    np.testing.assert_array_equal(got[:, 0], np.asarray(want, dtype=np.float32))
    ro.close()


def _names_value(exc: BaseException, value) -> None:
    assert isinstance(exc, EmbstoreError), type(exc).__mro__
    text = str(exc)
    shown = repr(value) if not isinstance(value, str) or len(value) < 60 else repr(value)[:40]
    assert shown in text or str(value) in text, (value, text)


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n)[:20])
def test_check_name_refuses(name):
    with pytest.raises(InvalidNameError) as ei:
        check_name("coordinate", name)
    _names_value(ei.value, name)
    assert "not valid" in str(ei.value)


@given(st_.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_check_name_accepts_only_safe_path_components(name):
    try:
        check_name("table", name)
    except InvalidNameError:
        return
    assert os.path.basename(name) == name and name not in {".", ".."}
    assert os.path.normpath(os.path.join("/store", name)) == "/store/" + name
    assert not name.startswith(("_", ".", "-")) and "\x00" not in name


@pytest.mark.parametrize("ext", BACKENDS)
@pytest.mark.parametrize("kind", ["coordinate", "set_coords", "table", "blob", "variable"])
def test_bad_names_refused_and_writer_stays_healthy(tmp_path, ext, kind):
    path = _path(tmp_path, ext)
    if kind == "variable":
        for name in BAD_NAMES:
            with pytest.raises(InvalidNameError):
                Store.create(path, variables={name: ("d",)}, overwrite=True)
        with pytest.raises(InvalidNameError):
            Store.create(path, variables={"e": ("d",)}, id_name="..", overwrite=True)
        st = _new(tmp_path, ext, overwrite=True)
        _check_healthy(st, path, [], [1, 2])
        return
    st = _new(tmp_path, ext)
    st.append([1, 2], _rows([1, 2]), coords={"skin": [1, 2]})
    taken = (
        ["image_id", "e", "image"] if kind in ("coordinate", "set_coords") else []
    )  # tables live apart
    for name in BAD_NAMES + taken:
        with pytest.raises(InvalidNameError) as ei:
            if kind == "coordinate":
                st.append([3], _rows([3]), coords={name: [1]})
            elif kind == "set_coords":
                st.set_coords({name: [1, 2]})
            elif kind == "table":
                st.write_table(name, pd.DataFrame({"a": [1]}))
            else:
                st.write_blob(name, b"x")
        _names_value(ei.value, name)
    assert 3 not in st.ids.tolist()
    _check_healthy(st, path, [1, 2], [3, 4, 5])


def test_ragged_bookkeeping_names_are_reserved(tmp_path):
    with pytest.raises(ValidationError, match="enc_offset"):
        Store.create(
            str(tmp_path / "r.zarr"),
            variables={"enc_offset": ("d",)},
            ragged={"enc": ("token", "f")},
        )
    st = Store.create(str(tmp_path / "r.zarr"), ragged={"enc": ("token", "f")})
    st.append([1], {"enc": [np.zeros((2, 3))]})
    for name in ("enc_offset", "enc_n", "enc_h", "enc_w", "enc"):
        with pytest.raises(InvalidNameError, match=name):
            st.append([2], {"enc": [np.zeros((2, 3))]}, coords={name: [1]})
    st.append([2], {"enc": [np.ones((1, 3))]})
    st.close()
    assert Store.open(str(tmp_path / "r.zarr")).get_ragged("enc", 2).tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize("ext", BACKENDS)
def test_names_never_write_outside_the_store(tmp_path, ext):
    a_path, b_path = _path(tmp_path, ext, "a"), _path(tmp_path, ext, "b")
    with _new(tmp_path, ext, "b") as b:
        b.append([100, 101], _rows([100, 101]))

    def stamps():
        files = (
            glob.glob(os.path.join(b_path, "**"), recursive=True)
            if os.path.isdir(b_path)
            else [b_path]
        )
        return {p: (os.path.getmtime(p), os.path.getsize(p)) for p in files}

    before = stamps()
    a = _new(tmp_path, ext, "a")
    a.append([1], _rows([1]))
    for name in (
        os.path.join(b_path, "image_id"),
        f"../b{ext}/image_id",
        os.path.join(b_path, "e"),
        f"../b{ext}",
    ):
        with pytest.raises(InvalidNameError):
            a.append([2], _rows([2]), coords={name: [7]})
        with pytest.raises(InvalidNameError):
            a.set_coords({name: [7]})
        with pytest.raises(InvalidNameError):
            a.write_table(name, pd.DataFrame({"x": [1]}))
        with pytest.raises(InvalidNameError):
            a.write_blob(name, b"x")
    _check_healthy(a, a_path, [1], [2, 3])
    assert stamps() == before
    b = Store.open(b_path)
    assert b.ids.tolist() == [100, 101] and b.coord_names == []
    assert sorted(os.listdir(tmp_path)) == [f"a{ext}", f"b{ext}"]


# ------------------------------------------------------- values and ids
@pytest.mark.parametrize("ext", BACKENDS)
def test_ids_and_values_refused(tmp_path, ext):
    path = _path(tmp_path, ext)
    st = _new(tmp_path, ext)
    st.append([1], _rows([1]), coords={"skin": [3]})
    big = 2**63 + 5
    cases = [
        (
            lambda: st.append(np.array([big], dtype=np.uint64), _rows([2])),
            DTypeMismatchError,
            str(big),
        ),
        (lambda: st.append([2**64 + 1], _rows([2])), DTypeMismatchError, str(2**64 + 1)),
        (lambda: st.append([7, "a"], _rows([7, 8])), DTypeMismatchError, "'a'"),
        (
            lambda: st.append([7, 8], _rows([7, 8]), coords={"skin": [1, "a"]}),
            DTypeMismatchError,
            "'a'",
        ),
        (
            lambda: st.append([7], _rows([7]), coords={"skin": np.array([big], dtype=np.uint64)}),
            DTypeMismatchError,
            str(big),
        ),
        (
            lambda: st.append([7], {"e": np.full((1, 3), 1e39)}, allow_nonfinite=True),
            NonFiniteError,
            "1e+39",
        ),
        (lambda: st.append([7], {"e": np.array([[np.nan, 0, 0]])}), NonFiniteError, "NaN"),
    ]
    for call, cls, shown in cases:
        with pytest.raises(cls) as ei:
            call()
        assert isinstance(ei.value, EmbstoreError) and shown in str(ei.value), str(ei.value)
    assert st.ids.tolist() == [1]
    _check_healthy(st, path, [1], [2, 3])


@pytest.mark.parametrize("ext", BACKENDS)
def test_integer_and_float16_overflow(tmp_path, ext):
    path = _path(tmp_path, ext)
    st = Store.create(
        path, variables={"i": ("d",), "h": ("d",)}, dtypes={"i": "int8", "h": "float16"}
    )
    ok = {"i": np.array([[-128, 127]]), "h": np.array([[65504.0, -1.0]], dtype=np.float32)}
    st.append([0], ok)
    with pytest.raises(DTypeMismatchError, match="300"):
        st.append([1], {"i": np.array([[300, 0]]), "h": np.zeros((1, 2))})
    with pytest.raises(NonFiniteError, match="100000"):
        st.append(
            [1], {"i": np.zeros((1, 2), dtype=int), "h": np.array([[1e5, 0]])}, allow_nonfinite=True
        )
    with pytest.raises(NonFiniteError, match="70000"):  # ints overflow float16 too
        st.append([1], {"i": np.zeros((1, 2), dtype=int), "h": np.array([[70000, 0]])})
    # NaN/Inf already in the data pass with allow_nonfinite, finite values beside them must still fit
    st.append(
        [2],
        {"i": np.zeros((1, 2), dtype=np.uint8), "h": np.array([[np.nan, np.inf]])},
        allow_nonfinite=True,
    )
    with pytest.raises(NonFiniteError, match="100000"):
        st.append(
            [3],
            {"i": np.zeros((1, 2), dtype=int), "h": np.array([[np.nan, 1e5]])},
            allow_nonfinite=True,
        )
    with pytest.raises(NonFiniteError):
        st.append(
            [3], {"i": np.zeros((1, 2), dtype=int), "h": np.array([[np.inf, 0]], dtype=np.float16)}
        )
    st.close()
    ro = Store.open(path)
    assert ro.ids.tolist() == [0, 2]
    np.testing.assert_array_equal(ro.read("i"), [[-128, 127], [0, 0]])
    h = ro.read("h")
    assert h[0].tolist() == [65504.0, -1.0] and np.isnan(h[1, 0]) and np.isinf(h[1, 1])


@pytest.mark.parametrize("ext", BACKENDS)
def test_append_copies_what_it_buffers(tmp_path, ext):
    """A caller reusing one buffer for every batch must not overwrite buffered rows."""
    path = _path(tmp_path, ext)
    st = Store.create(
        path,
        variables={"e": ("d",)},
        ragged={"t": ("token", "f")},
        dtypes={"e": "float32", "t": "float16"},
        chunk_rows=16,
    )
    dense = np.empty((4, 3), dtype=np.float32)  # already the storage dtype: the aliasing case
    tok = np.empty((2, 5), dtype=np.float16)
    ids = np.empty(4, dtype=np.int64)
    for b in range(3):
        dense[:] = b + 1
        tok[:] = b + 1
        ids[:] = np.arange(4) + 4 * b
        st.append(ids, {"e": dense, "t": [tok] * 4}, coords={"batch": np.full(4, b + 1)})
    dense[:] = -1
    tok[:] = -1
    ids[:] = -1
    st.close()
    ro = Store.open(path)
    assert ro.ids.tolist() == list(range(12))
    assert ro.read("e")[:, 0].tolist() == [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    assert [float(ro.get_ragged("t", i)[0, 0]) for i in range(12)] == [1.0] * 4 + [2.0] * 4 + [
        3.0
    ] * 4


# -------------------------------------------------------------- resources
@pytest.mark.parametrize("ext", BACKENDS)
def test_chunk_rows_bounded(tmp_path, ext):
    path = _path(tmp_path, ext)
    for bad in (True, False, 0, -4, 2.5, 10**9):
        with pytest.raises(ValidationError) as ei:
            Store.create(path, variables={"e": ("d",)}, chunk_rows=bad, overwrite=True)
        assert repr(bad) in str(ei.value) or str(bad) in str(ei.value)
    st = Store.create(path, variables={"e": ("q", "d")}, chunk_rows=2**20, overwrite=True)
    with pytest.raises(
        ValidationError, match="512 MiB"
    ):  # 2**20 rows of 100x256 float16: 50 GiB chunks
        st.append([1], {"e": np.zeros((1, 100, 256), dtype=np.float16)})
    assert len(st) == 0
    st.close()
    assert (
        sum(
            os.path.getsize(p)
            for p in glob.glob(os.path.join(path, "**"), recursive=True)
            if os.path.isfile(p)
        )
        < 2**20
    )


@pytest.mark.parametrize("ext", BACKENDS)
def test_unsorted_id_reads_use_little_memory(tmp_path, ext):
    path = _path(tmp_path, ext)
    rng = np.random.default_rng(0)
    n = 1024
    with Store.create(path, variables={"q": ("query", "hidden")}, chunk_rows=64) as st:
        st.append(np.arange(n), {"q": rng.standard_normal((n, 16, 256)).astype(np.float16)})
    ro = Store.open(path)
    ids = rng.permutation(n)[: n // 5]
    ids = np.concatenate([ids, ids[:10]])  # repeats too
    want = ro.read("q")[ids]
    ro.read("q", ids=ids)  # warm caches
    tracemalloc.start()
    tracemalloc.reset_peak()
    got = ro.read("q", ids=ids)
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    np.testing.assert_array_equal(got, want)
    assert peak <= 1.5 * got.nbytes, peak / got.nbytes


def test_folder_scan_symlink_loops(tmp_path):
    from extractors.datasets import folder_dataset

    root = tmp_path / "imgs"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    for p in ("a/1.jpg", "a/deep/2.jpg", "b/3.png"):
        (root / p).write_bytes(b"x")
    os.symlink("..", root / "a" / "deep" / "loop")  # a/deep/loop -> a
    os.symlink(str(root), root / "b" / "to_root")  # b/to_root -> imgs
    os.symlink("a", root / "alias")  # a second path to a
    os.symlink("1.jpg", root / "a" / "one_again.jpg")  # a second path to one file
    ds = folder_dataset(root, ids="path")
    names = sorted(r.coords["file_name"] for r in ds)
    assert names == ["a/1.jpg", "a/deep/2.jpg", "b/3.png"]


# -------------------------------------------------------------- disk full
def test_disk_full_injected(tmp_path, monkeypatch):
    from embstore.store import rawread

    path = _path(tmp_path, ".zarr")
    st = _new(tmp_path, ".zarr", chunk_rows=16)
    st.append(np.arange(32), _rows(np.arange(32)))
    st.flush()
    real = rawread._write_in_pieces

    def full(fh, data):
        real(fh, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rawread, "_write_in_pieces", full)
    st.append(np.arange(32, 64), _rows(np.arange(32, 64)))
    with pytest.raises(DiskFullError) as ei:
        st.flush()
    assert isinstance(ei.value, OSError) and "full" in str(ei.value) and path in str(ei.value)
    assert glob.glob(os.path.join(path, "**", "*.tmp"), recursive=True) == []
    ro = Store.open(path)
    assert ro.ids.tolist() == list(range(32))
    np.testing.assert_array_equal(ro.read("e")[:, 0], np.arange(32, dtype=np.float32))
    monkeypatch.setattr(
        rawread, "_write_in_pieces", real
    )  # space freed: the buffered rows go through
    st.close()
    ro = Store.open(path)
    assert ro.ids.tolist() == list(range(64))
    np.testing.assert_array_equal(ro.read("e")[:, 0], np.arange(64, dtype=np.float32))


def _can_mount_tmpfs(where) -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True
    )
    return r.returncode == 0


def test_disk_full_on_small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if not _can_mount_tmpfs(mnt):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    try:
        path = str(mnt / "s.zarr")
        st = Store.create(path, variables={"e": ("d",)}, dtypes={"e": "float32"}, chunk_rows=64)
        committed = 0
        with pytest.raises(DiskFullError) as ei:
            for b in range(200):  # 200 x 64 rows x 4 KiB: far more than 3 MiB
                ids = np.arange(b * 64, (b + 1) * 64)
                st.append(ids, {"e": np.repeat(ids[:, None], 1024, axis=1).astype(np.float32)})
                st.flush()
                committed = (b + 1) * 64
        assert "full" in str(ei.value)
        assert committed > 0
        try:
            st.close()
        except DiskFullError:
            pass
        assert glob.glob(os.path.join(path, "**", "*.tmp"), recursive=True) == []
        ro = Store.open(path)
        n = len(ro)
        assert n >= committed
        np.testing.assert_array_equal(ro.read("e")[:, 0], np.arange(n, dtype=np.float32))
        np.testing.assert_array_equal(ro.read("e")[:, -1], np.arange(n, dtype=np.float32))
        ro.close()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("ext", BACKENDS)
def test_adversarial_errors_are_embstore_errors(tmp_path, ext):
    """Each adversarial case of issue 11: an EmbstoreError subclass whose message names the value."""
    path = _path(tmp_path, ext)
    for dt in ("foo", object, "U8", "complex64"):
        with pytest.raises(EmbstoreError) as ei:
            Store.create(path, variables={"e": ("d",)}, dtypes={"e": dt}, overwrite=True)
        assert isinstance(ei.value, (ValueError, TypeError)) and str(dt)[:6] in str(ei.value)
    st = _new(tmp_path, ext, overwrite=True)
    st.append([1], _rows([1]))
    deep: list = []
    node = deep
    for _ in range(200):
        node.append([])
        node = node[0]
    for kv, shown in (
        ({"deep": deep}, "deep"),
        ({"s": {1, 2}}, "{1, 2}"),
        ({"nan": float("nan")}, "nan"),
        ({"lst": [1, {2}]}, "lst"),
    ):
        with pytest.raises(ValidationError) as ei:
            st.update_attrs(**kv)
        assert shown in str(ei.value)
    st.update_attrs(layers=[1, [2, {"a": [3]}]])  # lists and moderate nesting are fine
    assert st.attrs["layers"] == [1, [2, {"a": [3]}]]
    with pytest.raises(ValidationError, match="'a'"):
        st.write_table("t", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(ValidationError, match="'k'"):
        st.write_table("t", pd.DataFrame({"k": [1]}, index=pd.Index([5], name="k")))
    with pytest.raises(ValidationError, match="list"):
        st.write_table("t", [1, 2])
    st.write_table(
        "t", pd.DataFrame({"index": [1, 2]})
    )  # an unnamed index beside an 'index' column is fine
    assert st.read_table("t")["index"].tolist() == [1, 2]
    with pytest.raises(ValidationError, match="attribute .a. = <object"):
        Store.create(_path(tmp_path, ext, "x"), variables={"e": ("d",)}, attrs={"a": object()})
    _check_healthy(st, path, [1], [2])


@pytest.mark.parametrize(
    "junk", ["[1, 2]", '{"pid": "x", "host": "HOST"}', '{"pid": null}', "", "\xff\xfe", "{"]
)
def test_garbage_lock_files(tmp_path, junk):
    import socket

    path = _path(tmp_path, ".zarr")
    _new(tmp_path, ".zarr").close()
    lock = os.path.join(path, "_embstore", "locks", "main.lock")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(junk.replace("HOST", socket.gethostname()))
    os.utime(lock, (0, 0))  # old: a writer crashed while creating it
    try:
        st = Store.open(path, mode="a")
    except EmbstoreError as exc:  # refused: must say which lock
        assert isinstance(exc, StoreLockedError) and "main.lock" in str(exc)
        return
    st.append([1], _rows([1]))
    st.close()
    assert Store.open(path).ids.tolist() == [1]


def test_garbage_lock_json_never_raises_raw():
    from embstore.store.lock import parse_owner

    for junk in ("[1]", "3", '"s"', "null", '{"pid": [1]}', '{"pid": 1e400}', "{" * 5000, b"\xff"):
        owner = parse_owner(junk)
        assert owner is None or owner["pid"] == -1, junk
    assert json.loads('{"pid": 5}') and parse_owner('{"pid": 5, "host": "h"}')["pid"] == 5


# ------------------------------------------------- legacy non-finite files
def test_legacy_importers_report_nonfinite_files(tmp_path, caplog):
    import logging

    from embstore.legacy import import_detr_dir, import_face_npy, import_siglip_cache
    from embstore.legacy._finite import count_nonfinite

    torch = pytest.importorskip("torch")
    from embstore.legacy.detr_pt import pt_filename

    assert count_nonfinite(np.array([1, np.nan, -np.inf, 2], dtype=np.float16)) == 2
    assert count_nonfinite([np.full((2, 2), np.nan, dtype=np.float32), np.arange(3)]) == 4
    assert count_nonfinite(np.ones(5, dtype=np.float16)) == 0
    caplog.set_level(logging.WARNING)
    # DETR .pt: file 2 is all NaN, file 3 holds one Inf
    src = tmp_path / "detr"
    src.mkdir()
    for iid in (1, 2, 3):
        q = torch.ones(4, 8) * iid
        if iid == 2:
            q[:] = float("nan")
        if iid == 3:
            q[0, 0] = float("inf")
        torch.save({"query_embeddings": q}, src / pt_filename(iid))
    (src / "metadata.json").write_text(json.dumps({"image_ids": [1, 2, 3], "num_images": 3}))
    rep = import_detr_dir(src, tmp_path / "d.zarr", variables=["query_embeddings"])
    assert rep.imported == 3
    assert sorted((os.path.basename(p), n) for p, n in rep.nonfinite) == [
        (pt_filename(2), 32),
        (pt_filename(3), 1),
    ]
    assert "2 with NaN/Inf values" in str(rep) and rep.to_dict()["nonfinite"]
    assert "NaN/Inf" in caplog.text
    # face npy: 2 of 5 rows non-finite
    npy = tmp_path / "npy"
    npy.mkdir()
    emb = np.ones((5, 4), dtype=np.float32)
    emb[1, 2] = np.nan
    emb[4] = np.inf
    np.save(npy / "final_embs.npy", emb)
    res = import_face_npy(npy, tmp_path / "f.zarr")
    assert res["rows"] == 5 and res["nonfinite"] == [(str(npy / "final_embs.npy"), 2)]
    # SigLIP cache: one all-NaN vector file
    cache = tmp_path / "cache"
    cache.mkdir()
    lines = ["image_id\tsegment_id\tfeat_file"]
    for img, seg in ((1, 1), (2, 1)):
        v = np.full(6, np.nan if img == 2 else 0.5, dtype=np.float16)
        np.save(cache / f"{img:012d}_{seg}.npy", v)
        lines.append(f"{img:012d}\t{seg}\t{img:012d}_{seg}.npy")
    (cache / "inst2feat.tsv").write_text("\n".join(lines) + "\n")
    res = import_siglip_cache(cache, tmp_path / "s.zarr")
    assert res["rows"] == 2 and [(os.path.basename(p), n) for p, n in res["nonfinite"]] == [
        ("000000000002_1.npy", 6)
    ]
