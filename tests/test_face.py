"""Face extractor: iresnet names/shapes and outputs vs the reference fixtures, checkpoint
loading, preprocessing, the store pipeline (folder and list inputs, resume) and the CLI."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embstore.errors import CheckpointError, DeviceUnavailableError, ValidationError  # noqa: E402
from extractors.face import FaceExtractor  # noqa: E402
from extractors.face.extractor import extract_face, face_dataset, preprocess_face  # noqa: E402
from extractors.face.iresnet import ARCH_LAYERS, iresnet, normalize_arch  # noqa: E402

DATA = Path(__file__).parent / "data" / "iresnet"


def deterministic_state_dict(model: torch.nn.Module) -> dict:
    """The fixture README's weights rule."""
    out = {}
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            out[name] = t.clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
        shape = tuple(t.shape)
        if name.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            v = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("bn3.weight"):
            v = 0.2 + 0.02 * torch.randn(shape, generator=g)
        elif name.endswith("weight"):
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            v = 0.1 * torch.randn(shape, generator=g)
        out[name] = v
    return out


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory) -> Path:
    model = iresnet("r18")
    path = tmp_path_factory.mktemp("ckpt") / "r18.pth"
    torch.save(deterministic_state_dict(model), path)
    return path


@pytest.fixture(scope="module")
def r18(r18_checkpoint) -> FaceExtractor:
    return FaceExtractor.from_checkpoint(r18_checkpoint, arch="r18")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name,arch", [("iresnet18", "r18"), ("iresnet50", "r50")])
def test_state_dict_matches_arcface_torch(name, arch):
    ref = json.loads((DATA / f"{name}_reference_state_dict.json").read_text())
    sd = iresnet(arch).state_dict()
    assert [e["name"] for e in ref["state_dict"]] == list(sd)
    assert len(sd) == ref["num_tensors"]
    for e in ref["state_dict"]:
        assert list(sd[e["name"]].shape) == e["shape"], e["name"]
        assert str(sd[e["name"]].dtype).replace("torch.", "") == e["dtype"]


@pytest.mark.parametrize("arch", sorted(ARCH_LAYERS))
def test_block_counts(arch):
    with torch.device("meta"):
        model = iresnet(arch)
    counts = tuple(len(getattr(model, f"layer{i}")) for i in range(1, 5))
    assert counts == ARCH_LAYERS[arch]
    assert model.fc.in_features == 512 * 7 * 7


@pytest.mark.parametrize("name,arch", [("iresnet18", "r18"), ("iresnet50", "r50")])
def test_outputs_match_reference(name, arch):
    ref = np.load(DATA / f"{name}_reference.npz")
    model = iresnet(arch)
    model.load_state_dict(deterministic_state_dict(model))
    fx = FaceExtractor(model)
    images = [ref["image_0"], ref["image_1"]]
    out = fx.extract_images(images, pre_fc=True)
    assert _rel(out["embedding"], ref["embedding"]) < 1e-4
    assert _rel(out["pre_fc_features"], ref["pre_fc_features"]) < 1e-4
    assert out["pre_fc_features"].shape == (2, 25088)
    l2 = fx.extract_images(images, l2_norm=True)
    assert set(l2) == {"embedding"}
    assert _rel(l2["embedding"], ref["embedding_l2"]) < 1e-4
    np.testing.assert_allclose(np.linalg.norm(l2["embedding"], axis=1), 1.0, rtol=1e-5)


def test_from_checkpoint_equals_direct_load(r18, r18_checkpoint):
    ref = np.load(DATA / "iresnet18_reference.npz")
    out = r18.extract_images([ref["image_0"], ref["image_1"]])
    assert _rel(out["embedding"], ref["embedding"]) < 1e-4
    assert r18.arch == "r18" and r18.provenance()["checkpoint"] == str(r18_checkpoint)


def test_checkpoint_wrapped_and_dataparallel_prefix(tmp_path, r18_checkpoint):
    sd = torch.load(r18_checkpoint, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, wrapped)
    img = np.load(DATA / "iresnet18_reference.npz")["image_0"]
    a = FaceExtractor.from_checkpoint(wrapped, arch="iresnet18").extract_images([img])
    b = FaceExtractor.from_checkpoint(r18_checkpoint, arch="r18").extract_images([img])
    np.testing.assert_array_equal(a["embedding"], b["embedding"])


def test_wrong_arch_lists_missing_and_unexpected_keys(tmp_path, r18_checkpoint):
    with pytest.raises(CheckpointError) as info:
        FaceExtractor.from_checkpoint(r18_checkpoint, arch="r34")
    msg = str(info.value)
    assert "missing keys" in msg and "layer1.2.bn1.weight" in msg and "r34" in msg
    sd = torch.load(r18_checkpoint, weights_only=True)
    sd["extra.weight"] = torch.zeros(3)
    del sd["fc.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra\.weight") as info:
        FaceExtractor.from_checkpoint(bad, arch="r18")
    assert "fc.bias" in str(info.value)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        FaceExtractor.from_checkpoint(r18_checkpoint, arch="r18", num_features=256)
    with pytest.raises(CheckpointError, match="does not exist"):
        FaceExtractor.from_checkpoint(tmp_path / "nope.pth", arch="r18")
    with pytest.raises(ValidationError, match="unknown iresnet architecture"):
        normalize_arch("r42")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_malicious_checkpoint_is_not_executed(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Evil(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="evil.pth"):
        FaceExtractor.from_checkpoint(evil, arch="r18")
    assert not marker.exists()


def test_preprocess_pil_numpy_grayscale():
    from PIL import Image
    from skimage import data

    img = data.astronaut()[100:260, 150:290]
    a = preprocess_face(img)
    pil = Image.fromarray(img)
    b = preprocess_face(pil)
    np.testing.assert_array_equal(a, b)
    manual = np.asarray(pil.resize((112, 112), Image.BILINEAR), np.float32).transpose(2, 0, 1)
    np.testing.assert_allclose(a, (manual / 255.0 - 0.5) / 0.5, atol=1e-6)
    gray = data.camera()[:100, :100]
    g = preprocess_face(gray)
    assert g.shape == (3, 112, 112)
    np.testing.assert_array_equal(g[0], g[1])
    with pytest.raises(ValidationError, match="uint8"):
        preprocess_face(img.astype(np.float32))


def test_cuda_absent_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(DeviceUnavailableError):
        FaceExtractor(iresnet("r18"), device="cuda")


def _photos(root: Path) -> list[Path]:
    from PIL import Image
    from skimage import data

    arrays = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.camera()]
    paths = []
    for i, arr in enumerate(arrays):
        sub = root / ("a" if i < 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        ext = [".jpg", ".png", ".bmp", ".webp", ".jpeg"][i]
        p = sub / f"img{i}{ext}"
        Image.fromarray(arr[::4, ::4]).save(p)
        paths.append(p)
    (root / "notes.txt").write_text("not an image")
    return paths


def test_face_dataset_folder_and_list(tmp_path):
    paths = _photos(tmp_path / "imgs")
    ds = face_dataset(tmp_path / "imgs")
    recs = list(ds)
    assert len(ds) == 5 and [r.image_id for r in recs] == list(range(5))
    assert sorted(r.coords["path"] for r in recs) == sorted(str(p) for p in paths)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in reversed(paths)) + "\n\n")
    recs = list(face_dataset(lst, limit=3))
    assert [r.coords["path"] for r in recs] == [str(p) for p in reversed(paths)][:3]


def test_extract_face_store_and_resume(tmp_path):
    from PIL import Image

    from embstore import Store
    from extractors.face.iresnet import IResNet

    torch.manual_seed(0)
    tiny = FaceExtractor(IResNet((1, 1, 1, 1), num_features=64), dtype="float32")
    paths = _photos(tmp_path / "imgs")
    broken = tmp_path / "imgs" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    lst = tmp_path / "list.txt"
    order = [paths[3], broken, paths[0], paths[4], paths[1], paths[2]]
    lst.write_text("\n".join(str(p) for p in order) + "\n")
    out = tmp_path / "faces.zarr"
    s1 = extract_face(None, lst, out, extractor=tiny, batch_size=2, num_workers=0, limit=3)
    assert s1.written == 2 and s1.skipped == 1
    s2 = extract_face(None, lst, out, extractor=tiny, batch_size=4, num_workers=0)
    assert s2.written == 3 and s2.already_done == 2
    with Store.open(out) as st:
        assert st.row_dim == "image" and st.id_name == "index"
        assert sorted(st.ids.tolist()) == [0, 2, 3, 4, 5]
        coords = st.coords
        assert coords.loc[2, "path"] == str(paths[0]) and coords.loc[5, "path"] == str(paths[2])
        ids = [int(i) for i in st.ids]
        emb = np.asarray(st.embedding.values)
        assert 1 in set(st.skipped.iloc[:, 0].tolist())
    expect = tiny.extract_images([Image.open(order[i]) for i in ids])["embedding"]
    np.testing.assert_allclose(emb, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())


def test_cli_extract_face(tmp_path, r18, r18_checkpoint):
    from PIL import Image

    from embstore import Store
    from embstore.cli import main

    _photos(tmp_path / "imgs")
    cli_out = tmp_path / "cli.zarr"
    rc = main(
        [
            "extract",
            "face",
            "--weights",
            str(r18_checkpoint),
            "--arch",
            "r18",
            "--input",
            str(tmp_path / "imgs"),
            "--out",
            str(cli_out),
            "--l2-norm",
            "--batch-size",
            "8",
            "--num-workers",
            "0",
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
    )
    assert rc == 0
    with Store.open(cli_out) as st:
        assert len(st) == 5
        e = np.asarray(st.embedding.values)
        assert e.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
        assert bool(st.attrs.get("l2_norm")) is True
        import hashlib

        assert (
            st.attrs["checkpoint_sha256"] == hashlib.sha256(r18_checkpoint.read_bytes()).hexdigest()
        )
        first = st.coords.loc[int(st.ids[0]), "path"]
    exp = r18.extract_images([Image.open(first)], l2_norm=True)["embedding"][0]
    np.testing.assert_allclose(e[0], exp, atol=1e-5)
