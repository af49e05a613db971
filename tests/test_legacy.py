"""Legacy layouts: DETR .pt directories (safe loading, missing/unreadable files, round trip),
face npy (merged and split) and SigLIP cache round trips, and their CLI commands."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_

from embstore import Store
from embstore.cli import main
from embstore.errors import DatasetError, StoreExistsError, ValidationError
from embstore.legacy import (
    export_detr_dir,
    export_face_npy,
    export_siglip_cache,
    import_detr_dir,
    import_face_npy,
    import_siglip_cache,
)
from embstore.legacy.detr_pt import load_pt, pt_filename

torch = pytest.importorskip("torch")


class _Evil:
    """Unpickling this runs ``Path(marker).write_text("pwned")``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def make_detr_dir(root: Path, marker: Path | None = None) -> dict:
    """Ids 1..3 good (varying feature maps), 4 missing, 5 malicious, 6 truncated."""
    root.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    originals = {}
    for iid, (h, w) in zip([1, 2, 3], [(2, 3), (3, 3), (1, 4)]):
        entry = {
            "query_embeddings": torch.randn(5, 8, generator=g),
            "decoder_output": torch.randn(2, 5, 8, generator=g),
            "pred_logits": torch.randn(5, 7, generator=g),
            "pred_boxes": torch.rand(5, 4, generator=g),
            "encoder_output": torch.randn(h * w, 8, generator=g),
            "backbone_features": torch.randn(16, h, w, generator=g),
        }
        torch.save(entry, root / pt_filename(iid))
        originals[iid] = entry
    ids = [1, 2, 3, 4]
    if marker is not None:
        torch.save({"query_embeddings": _Evil(str(marker))}, root / pt_filename(5))
        ids.append(5)
    good = (root / pt_filename(1)).read_bytes()
    (root / pt_filename(6)).write_bytes(good[: len(good) // 2])
    ids.append(6)
    meta = {
        "image_ids": ids,
        "num_images": len(ids),
        "extract_type": "all",
        "embedding_keys": list(originals[1]),
    }
    (root / "metadata.json").write_text(json.dumps(meta))
    return originals


def test_malicious_pt_is_not_executed(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / pt_filename(5)
    torch.save({"x": _Evil(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(Exception) as info:
        load_pt(path)
    assert str(path) in str(info.value) and "weights_only=True" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("first_bad", [False, True])
def test_malicious_pt_is_refused_on_the_analyzer_path(tmp_path, first_bad):
    """EmbeddingAnalyzer(old_dir) reads through the same safe loader as the importer."""
    from embstore import EmbeddingAnalyzer

    marker = tmp_path / "marker.txt"
    src = tmp_path / "embeddings_output"
    make_detr_dir(src, marker)
    if first_bad:  # the schema probe reads the first listed file: make it the malicious one
        meta = json.loads((src / "metadata.json").read_text())
        meta["image_ids"] = [5, 1, 2, 3, 6]
        (src / "metadata.json").write_text(json.dumps(meta))
    an = EmbeddingAnalyzer(src)
    for read in (lambda: an.load_embedding(5), lambda: an.pool().values):
        with pytest.raises(ValidationError) as info:
            read()
        assert pt_filename(5) in str(info.value) and "weights_only=True" in str(info.value)
    assert not marker.exists(), "unpickling ran code"
    if not first_bad:
        with pytest.raises(ValidationError, match=pt_filename(6)):
            an.load_embedding(6)  # truncated: wrapped too, not a raw RuntimeError


def test_import_detr_dir_values_missing_unreadable_resume_export(tmp_path):
    marker = tmp_path / "marker.txt"
    src = tmp_path / "embeddings_output"
    orig = make_detr_dir(src, marker)
    out = tmp_path / "run.zarr"
    rep = import_detr_dir(src, out)
    assert not marker.exists(), "unpickling ran code"
    assert rep.imported == 3
    assert [i for i, _ in rep.missing] == [4]
    bad = dict(rep.unreadable)
    assert set(bad) == {str(src / pt_filename(5)), str(src / pt_filename(6))}
    assert pt_filename(5) in bad[str(src / pt_filename(5))]
    with Store.open(out) as st:
        assert st.ids.tolist() == [1, 2, 3]
        assert set(st.variables) == {
            "query_embeddings",
            "decoder_output",
            "pred_logits",
            "pred_boxes",
        }
        assert st.ragged_variables == {
            "encoder_output": ("token", "hidden"),
            "backbone_features": ("channel", "y", "x"),
        }
        for pos, iid in enumerate([1, 2, 3]):
            for k in st.variables:
                np.testing.assert_array_equal(st[k].values[pos], orig[iid][k].numpy())
            for k in st.ragged_variables:
                np.testing.assert_array_equal(st.get_ragged(k, iid), orig[iid][k].numpy())
        hw = st.ragged_hw("encoder_output")
        assert hw.loc[2, "h"] == 3 and hw.loc[3, "w"] == 4
        assert sorted(int(i) for i in st.skipped["id"]) == [4, 5, 6]
        assert st.attrs["legacy_metadata"]["extract_type"] == "all"
    again = import_detr_dir(src, out)
    assert again.imported == 0 and again.already_present == 3

    back = tmp_path / "back"
    assert export_detr_dir(out, back) == 3
    meta = json.loads((back / "metadata.json").read_text())
    assert meta["image_ids"] == [1, 2, 3] and meta["extract_type"] == "all"
    for iid in [1, 2, 3]:
        got = torch.load(back / pt_filename(iid), weights_only=True)
        assert set(got) == set(orig[iid])
        for k, v in orig[iid].items():
            assert torch.equal(got[k], v), (iid, k)
    with pytest.raises(StoreExistsError):
        export_detr_dir(out, back)


def test_import_without_metadata_uses_file_names(tmp_path):
    src = tmp_path / "d"
    orig = make_detr_dir(src)
    (src / "metadata.json").unlink()
    rep = import_detr_dir(
        src,
        tmp_path / "s.zarr",
        variables=["query_embeddings"],
        dtypes={"query_embeddings": "float16"},
    )
    assert rep.imported == 3 and len(rep.unreadable) == 1
    with Store.open(tmp_path / "s.zarr") as st:
        assert list(st.variables) == ["query_embeddings"] and not st.ragged_variables
        assert st.dtypes["query_embeddings"] == "float16"
        np.testing.assert_allclose(
            st.query_embeddings.values[0], orig[1]["query_embeddings"].numpy(), atol=2e-3
        )
    with pytest.raises(DatasetError, match="no metadata.json"):
        import_detr_dir(tmp_path / "s.zarr", tmp_path / "t.zarr")


def test_cli_import_legacy(tmp_path, capsys):
    marker = tmp_path / "m.txt"
    src = tmp_path / "old"
    make_detr_dir(src, marker)
    rc = main(["import-legacy", str(src), str(tmp_path / "cli.zarr")])
    out = capsys.readouterr().out
    assert rc == 0 and "imported 3 of 6 files" in out and pt_filename(5) in out and "missing" in out
    assert not marker.exists()
    rc = main(["import-legacy", str(src), str(tmp_path / "cli.zarr"), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["imported"] == 0 and rep["already_present"] == 3
    rc = main(["export-legacy", str(tmp_path / "cli.zarr"), str(tmp_path / "back")])
    assert rc == 0 and len(list((tmp_path / "back").glob("embedding_*.pt"))) == 3


# --------------------------------------------------------------------------- face npy
def _face_store(path: Path, emb: np.ndarray, l2: bool | None = None) -> None:
    n = len(emb)
    attrs = {} if l2 is None else {"l2_norm": l2}
    with Store.create(
        path,
        row_dim="image",
        id_name="index",
        variables={"embedding": ("hidden",)},
        dtypes={"embedding": "float32"},
        attrs=attrs,
    ) as st:
        st.append(
            np.arange(n) * 3,
            {"embedding": emb},
            coords={"path": np.array([f"/data/faces/{i:05d}.jpg" for i in range(n)])},
        )


def _check_same_face(a: Path, b: Path) -> None:
    with Store.open(a) as sa, Store.open(b) as sb:
        assert sa.ids.tolist() == sb.ids.tolist()
        np.testing.assert_array_equal(sa.embedding.values, sb.embedding.values)
        assert sa.coords["path"].tolist() == sb.coords["path"].tolist()


def test_face_npy_merged_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((7, 16)).astype(np.float32)
    _face_store(tmp_path / "a.zarr", emb)
    files = export_face_npy(tmp_path / "a.zarr", tmp_path / "npy")
    assert sorted(Path(f).name for f in files) == [
        "final_embs.npy",
        "final_fpaths.npy",
        "final_indices.npy",
    ]
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "final_embs.npy"), emb)
    assert np.load(tmp_path / "npy" / "final_indices.npy").tolist() == [0, 3, 6, 9, 12, 15, 18]
    fp = np.load(tmp_path / "npy" / "final_fpaths.npy", allow_pickle=False)
    assert fp[2] == "/data/faces/00002.jpg"
    res = import_face_npy(tmp_path / "npy", tmp_path / "b.zarr")
    assert res["rows"] == 7 and res["normalized"] is False
    _check_same_face(tmp_path / "a.zarr", tmp_path / "b.zarr")
    with pytest.raises(StoreExistsError):
        export_face_npy(tmp_path / "a.zarr", tmp_path / "npy")


def test_face_npy_split_and_normalized(tmp_path, capsys):
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((10, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    _face_store(tmp_path / "a.zarr", emb, l2=True)
    rc = main(
        [
            "export-face-npy",
            str(tmp_path / "a.zarr"),
            str(tmp_path / "npy"),
            "--split-threshold",
            "4",
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "npy").iterdir())
    assert names == sorted(
        [f"{s}_{i}.npy" for s in ("embs_norm", "fpaths", "indices") for i in range(3)]
    )
    assert [len(np.load(tmp_path / "npy" / f"embs_norm_{i}.npy")) for i in range(3)] == [4, 4, 2]
    rc = main(["import-face-npy", str(tmp_path / "npy"), str(tmp_path / "b.zarr")])
    assert rc == 0 and "imported 10 rows from 3 file set(s)" in capsys.readouterr().out
    _check_same_face(tmp_path / "a.zarr", tmp_path / "b.zarr")
    with Store.open(tmp_path / "b.zarr") as st:
        assert st.attrs["l2_norm"] is True


def test_face_npy_object_paths_need_allow_pickle(tmp_path):
    d = tmp_path / "npy"
    d.mkdir()
    np.save(d / "final_embs.npy", np.ones((2, 4), np.float32))
    np.save(d / "final_fpaths.npy", np.array(["a.jpg", "b.jpg"], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="allow_pickle"):
        import_face_npy(d, tmp_path / "x.zarr")
    res = import_face_npy(d, tmp_path / "y.zarr", allow_pickle=True)
    assert res["rows"] == 2
    with Store.open(tmp_path / "y.zarr") as st:
        assert st.coords["path"].tolist() == ["a.jpg", "b.jpg"] and st.ids.tolist() == [0, 1]


@given(
    n=st_.integers(1, 9),
    d=st_.integers(1, 6),
    threshold=st_.integers(1, 10),
    seed=st_.integers(0, 2**16),
)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_face_npy_roundtrip_property(n, d, threshold, seed):
    emb = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        _face_store(t / "a.zarr", emb, l2=False)
        export_face_npy(t / "a.zarr", t / "npy", split_threshold=threshold)
        import_face_npy(t / "npy", t / "b.zarr")
        _check_same_face(t / "a.zarr", t / "b.zarr")


# ----------------------------------------------------------------------- siglip cache
def make_cache(d: Path, rows: list[tuple[int, int]], dim: int = 12, seed: int = 0) -> dict:
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    vecs = {}
    lines = ["image_id\tsegment_id\tfeat_file"]
    for image_id, seg in rows:
        v = rng.standard_normal(dim).astype(np.float32)
        v = (v / np.linalg.norm(v)).astype(np.float16)
        name = f"{image_id:012d}_{seg}.npy"
        np.save(d / name, v)
        vecs[(image_id, seg)] = v
        lines.append(f"{image_id:012d}\t{seg}\t{name}")
    (d / "inst2feat.tsv").write_text("\n".join(lines) + "\n")
    return vecs


def test_siglip_cache_roundtrip_and_missing(tmp_path, capsys):
    rows = [(397133, 15466), (37777, 23456), (37777, 2), (139, 16777215)]
    vecs = make_cache(tmp_path / "cache", rows)
    with open(tmp_path / "cache" / "inst2feat.tsv", "a") as f:
        f.write("000000000001\t5\t000000000001_5.npy\n")  # listed, file missing
    (tmp_path / "cache" / "000000000002_6.npy").write_bytes(b"garbage")
    with open(tmp_path / "cache" / "inst2feat.tsv", "a") as f:
        f.write("000000000002\t6\t000000000002_6.npy\n")  # unreadable
    res = import_siglip_cache(tmp_path / "cache", tmp_path / "s.zarr")
    assert res["rows"] == 4 and len(res["missing"]) == 1 and len(res["unreadable"]) == 1
    with Store.open(tmp_path / "s.zarr") as st:
        assert st.row_dim == "instance" and st.dtypes["embedding"] == "float16"
        c = st.coords
        emb = st.embedding.values
        for pos, (image_id, seg) in enumerate(rows):
            iid = int(st.ids[pos])
            assert iid == image_id * 2**24 + seg
            assert (c.loc[iid, "image_id"], c.loc[iid, "segment_id"]) == (image_id, seg)
            np.testing.assert_array_equal(emb[pos], vecs[(image_id, seg)])
        assert len(st.skipped) == 2
    rc = main(["export-siglip-cache", str(tmp_path / "s.zarr"), str(tmp_path / "back")])
    assert rc == 0
    tsv = (tmp_path / "back" / "inst2feat.tsv").read_text().splitlines()
    assert tsv[0] == "image_id\tsegment_id\tfeat_file"
    assert tsv[1] == "000000397133\t15466\t000000397133_15466.npy"
    for (image_id, seg), v in vecs.items():
        got = np.load(tmp_path / "back" / f"{image_id:012d}_{seg}.npy")
        assert got.dtype == np.float16 and got.shape == (12,)
        np.testing.assert_array_equal(got, v)
    rc = main(["import-siglip-cache", str(tmp_path / "back"), str(tmp_path / "again.zarr")])
    assert rc == 0 and "imported 4 segments" in capsys.readouterr().out
    with Store.open(tmp_path / "s.zarr") as a, Store.open(tmp_path / "again.zarr") as b:
        assert a.ids.tolist() == b.ids.tolist()
        np.testing.assert_array_equal(a.embedding.values, b.embedding.values)


def test_siglip_cache_id_out_of_range(tmp_path):
    make_cache(tmp_path / "c", [(2**39, 1)])
    with pytest.raises(ValidationError, match="2\\*\\*39"):
        import_siglip_cache(tmp_path / "c", tmp_path / "s.zarr")


def test_siglip_cache_bad_header(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "inst2feat.tsv").write_text("a\tb\tc\n1\t2\tx.npy\n")
    with pytest.raises(DatasetError, match="header"):
        import_siglip_cache(d, tmp_path / "s.zarr")


@given(
    rows=st_.sets(
        st_.tuples(st_.integers(0, 2**39 - 1), st_.integers(0, 2**24 - 1)), min_size=1, max_size=6
    ),
    seed=st_.integers(0, 1000),
)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_siglip_cache_roundtrip_property(rows, seed):
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        vecs = make_cache(t / "c", sorted(rows), dim=4, seed=seed)
        import_siglip_cache(t / "c", t / "s.zarr")
        export_siglip_cache(t / "s.zarr", t / "back")
        for (image_id, seg), v in vecs.items():
            np.testing.assert_array_equal(np.load(t / "back" / f"{image_id:012d}_{seg}.npy"), v)
        assert (t / "back" / "inst2feat.tsv").read_text() == (t / "c" / "inst2feat.tsv").read_text()


def test_hdf5_store_roundtrips(tmp_path):
    pytest.importorskip("h5py")
    vecs = make_cache(tmp_path / "cache", [(5, 1), (5, 2), (9, 70000)], dim=6)
    res = import_siglip_cache(tmp_path / "cache", tmp_path / "s.h5")
    assert res["rows"] == 3
    export_siglip_cache(tmp_path / "s.h5", tmp_path / "back")
    for (image_id, seg), v in vecs.items():
        np.testing.assert_array_equal(np.load(tmp_path / "back" / f"{image_id:012d}_{seg}.npy"), v)
    src = tmp_path / "detr"
    orig = make_detr_dir(src)
    rep = import_detr_dir(src, tmp_path / "d.h5")
    assert rep.imported == 3
    with Store.open(tmp_path / "d.h5") as st:
        np.testing.assert_array_equal(
            st.get_ragged("encoder_output", 2), orig[2]["encoder_output"].numpy()
        )
