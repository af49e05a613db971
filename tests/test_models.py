"""Any model, any layer: each source against a direct hooked forward of its own library.

Every test saves random weights to a temporary file, then compares
:class:`extractors.models.ModelExtractor` (and ``embstore extract model``)
with the same library's model, loaded with the same weights, hooked
directly, fed the library's own preprocessing of real scikit-image photos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skd = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from embstore import EmbeddingAnalyzer, Store  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import CheckpointError, ValidationError  # noqa: E402
from extractors.models import ModelExtractor, layer_table, load_model, parse_spec  # noqa: E402
from extractors.models.sources import read_weights  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos() -> list:
    return [Image.fromarray(getattr(skd, n)()).convert("RGB") for n in PHOTOS]


def _hooked(model, layers, batch, forward=None):
    got = {}
    mods = dict(model.named_modules())
    handles = [
        mods[name].register_forward_hook(
            lambda m, a, o, name=name: got.__setitem__(
                name, (o[0] if isinstance(o, tuple) else o).detach()
            )
        )
        for name in layers
    ]
    try:
        with torch.no_grad():
            (forward or model)(batch)
    finally:
        for h in handles:
            h.remove()
    return got


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "r18.pth"
    torch.save({"state_dict": tv.models.resnet18().state_dict()}, path)
    return path


def test_torchvision_matches_direct_hooked_forward(r18, photos):
    tv = pytest.importorskip("torchvision")
    ex = ModelExtractor("torchvision:resnet18", ["layer4", "avgpool", "fc"], r18)
    out = ex.extract_images(photos)
    model = tv.models.resnet18()
    model.load_state_dict(torch.load(r18, weights_only=True)["state_dict"])
    model.eval()
    tf = tv.models.ResNet18_Weights.DEFAULT.transforms()
    batch = torch.stack([tf(p) for p in photos])
    want = _hooked(model, ["layer4", "avgpool", "fc"], batch)
    assert [a.shape for a in out["layer4"]] == [(512, 7, 7)] * 3
    np.testing.assert_allclose(np.stack(out["layer4"]), want["layer4"].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.stack(out["avgpool"]), want["avgpool"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["fc"], want["fc"].numpy(), atol=1e-4)
    assert ex.variables == {"fc": ("fc_feature",)}
    assert ex.ragged == {
        "layer4": ("layer4_channel", "y", "x"),
        "avgpool": ("avgpool_channel", "y", "x"),
    }
    attrs = ex.store_attrs
    assert attrs["model_spec"] == "torchvision:resnet18" and len(attrs["weights_sha256"]) == 64
    assert attrs["preprocessing"]["weights_transforms"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert attrs["library_versions"]["torchvision"] and attrs["layers"] == [
        "layer4",
        "avgpool",
        "fc",
    ]
    pooled = ModelExtractor("torchvision:resnet18", "layer4", r18, pool="max").extract_images(
        photos
    )
    np.testing.assert_allclose(pooled["layer4"], want["layer4"].amax(dim=(2, 3)).numpy(), atol=1e-5)


def test_timm_matches_direct_hooked_forward(tmp_path, photos):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(1)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    ex = ModelExtractor("timm:vit_tiny_patch16_224", ["blocks.11", "head"], path, pool="cls")
    out = ex.extract_images(photos)
    tf = create_transform(**resolve_data_config({}, model=ref))
    batch = torch.stack([tf(p) for p in photos])
    want = _hooked(ref, ["blocks.11", "head"], batch)
    np.testing.assert_allclose(out["blocks.11"], want["blocks.11"][:, 0].numpy(), atol=2e-5)
    np.testing.assert_allclose(out["head"], want["head"].numpy(), atol=2e-5)
    assert ex.variables == {"blocks.11": ("blocks.11_feature",), "head": ("head_feature",)}
    tokens = ModelExtractor("timm:vit_tiny_patch16_224", ["blocks.11"], path).extract_images(
        photos[:1]
    )
    assert tokens["blocks.11"][0].shape == (197, 192)
    np.testing.assert_allclose(tokens["blocks.11"][0], want["blocks.11"][0].numpy(), atol=2e-5)
    assert ex.store_attrs["preprocessing"]["data_config"]["interpolation"] == "bicubic"


def test_open_clip_matches_direct_hooked_forward(tmp_path, photos):
    open_clip = pytest.importorskip("open_clip")
    from extractors.siglip.testing import register_tiny_config, save_random_weights

    name = register_tiny_config()
    path = save_random_weights(tmp_path / "tiny.pt", name, seed=3)
    ex = ModelExtractor(
        f"open_clip:{name}", ["visual", "visual.transformer.resblocks.1"], path, pool="mean"
    )
    out = ex.extract_images(photos)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path))
    model.eval()
    batch = torch.stack([preprocess(p) for p in photos])
    want = _hooked(
        model, ["visual", "visual.transformer.resblocks.1"], batch, forward=model.encode_image
    )
    np.testing.assert_allclose(out["visual"], want["visual"].numpy(), atol=2e-5)
    blk = want["visual.transformer.resblocks.1"]
    tok_axis = 1 if blk.shape[0] == len(photos) else 0
    np.testing.assert_allclose(
        out["visual.transformer.resblocks.1"], blk.mean(dim=tok_axis).numpy(), atol=2e-5
    )
    assert ex.store_attrs["source"] == "open_clip"


def test_hf_directory_matches_direct_hooked_forward(tmp_path, photos):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=16,
    )
    torch.manual_seed(2)
    ref = transformers.ViTModel(cfg).eval()
    proc = transformers.ViTImageProcessor(size={"height": 64, "width": 64})
    ref.save_pretrained(tmp_path / "vit")
    proc.save_pretrained(tmp_path / "vit")
    block = (
        "layers.1" if "layers.1" in dict(ref.named_modules()) else "encoder.layer.1"
    )  # transformers 5 / 4
    ex = ModelExtractor(f"hf:{tmp_path / 'vit'}", [block, "pooler"], pool="cls")
    out = ex.extract_images(photos)
    batch = proc(images=photos, return_tensors="pt")["pixel_values"]
    want = _hooked(ref, [block, "pooler"], batch, forward=lambda x: ref(pixel_values=x))
    np.testing.assert_allclose(out[block], want[block][:, 0].numpy(), atol=2e-5)
    np.testing.assert_allclose(out["pooler"], want["pooler"].numpy(), atol=2e-5)
    attrs = ex.store_attrs
    assert attrs["preprocessing"]["image_processor"]["size"] == {"height": 64, "width": 64}
    assert set(attrs["weights_sha256"]) == {"model.safetensors"}
    with pytest.raises(ValidationError, match="own weights"):
        load_model(f"hf:{tmp_path / 'vit'}", weights=tmp_path / "x.pth")


def test_specs_weights_and_errors(tmp_path, r18):
    assert parse_spec("tv:resnet18") == ("torchvision", "resnet18")
    assert parse_spec(str(tmp_path)) == ("hf", str(tmp_path))
    with pytest.raises(ValidationError, match="SOURCE:NAME"):
        parse_spec("resnet18")
    with pytest.raises(CheckpointError, match="does not exist locally"):
        read_weights("https://example.com/r18.pth")
    torch.save({"a": 1}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        read_weights(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model("torchvision:resnet34", weights=r18)
    with pytest.raises(ValidationError, match="close matches"):
        ModelExtractor("torchvision:resnet18", ["layer5"], r18)
    with pytest.raises(ValidationError, match="cls"):
        ModelExtractor("torchvision:resnet18", ["layer4"], r18, pool="cls")
    rows = {r["name"]: r for r in layer_table(load_model("torchvision:resnet18", r18))}
    assert rows["layer4"]["shape"] == (1, 512, 7, 7) and rows["fc"]["shape"] == (1, 1000)


def test_cli_extract_model_resume_and_layers(tmp_path, r18, photos, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name, p in zip(PHOTOS, photos):
        p.resize((p.width // 2, p.height // 2)).save(imgs / f"{name}.png")
    out = tmp_path / "r18.zarr"
    base = [
        "extract",
        "model",
        "--model",
        "torchvision:resnet18",
        "--weights",
        str(r18),
        "--images",
        str(imgs),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--dtype",
        "float32",
    ]
    assert main(base + ["--layers", "layer4,avgpool", "--pool", "mean", "--limit", "1"]) == 0
    assert main(base + ["--layers", "layer4,avgpool", "--pool", "mean"]) == 0
    assert "1 already in the store" in capsys.readouterr().out
    st = Store.open(out)
    assert len(st) == 3 and set(st.variables) == {"layer4", "avgpool"}
    assert st.attrs["weights_sha256"] and st.attrs["pool"] == "mean"
    direct = ModelExtractor("torchvision:resnet18", ["layer4"], r18, pool="mean")
    an = EmbeddingAnalyzer(str(out))
    for image_id in st.ids.tolist():
        with Image.open(imgs / image_id) as im:
            want = direct.extract_images([im.convert("RGB")])["layer4"][0]
        np.testing.assert_allclose(
            an.vectors("layer4").sel(image_id=image_id).values.ravel(), want, atol=1e-5
        )
    assert main(base + ["--layers", "layer3", "--pool", "mean"]) == 2  # other layers: refused
    assert "layers" in capsys.readouterr().err
    assert main(["models", "layers", "torchvision:resnet18", "--depth", "1"]) == 0
    printed = capsys.readouterr().out
    assert "layer4" in printed and "1x512x7x7" in printed


def test_ragged_feature_maps_in_store(tmp_path, r18, photos):
    from extractors.datasets import folder_dataset
    from extractors.pipeline import run_extraction

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name, p in zip(PHOTOS[:2], photos):
        p.save(imgs / f"{name}.png")
    ex = ModelExtractor("torchvision:resnet18", ["layer3"], r18)
    with Store.create(
        tmp_path / "m.zarr", variables=ex.variables, ragged=ex.ragged, dtypes=ex.dtypes
    ) as st:
        run_extraction(ex, folder_dataset(imgs), st, batch_size=2)
    st = Store.open(tmp_path / "m.zarr")
    for image_id in st.ids.tolist():
        with Image.open(imgs / image_id) as im:
            want = ex.extract_images([im.convert("RGB")])["layer3"][0]
        got = st.get_ragged("layer3", image_id)
        assert got.shape == (256, 14, 14)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert Path(tmp_path / "m.zarr").exists()
