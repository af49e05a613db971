"""SigLIP panoptic extractor: segment decoding, crop rule, embeddings equal open_clip's own
encode_image on the same crops (tiny registered config, random local weights), resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from embstore.errors import CheckpointError, DatasetError, ValidationError
from extractors.siglip.panoptic import (
    PanopticDataset,
    blend_background,
    crop_box,
    decode_panoptic_png,
    encode_panoptic_ids,
    instance_id,
    mask_bbox,
    masked_crop,
    split_instance_id,
)

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")


# ------------------------------------------------------------------ pure numpy parts
@given(st_.lists(st_.integers(0, (1 << 24) - 1), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_png_encoding_roundtrip(ids):
    arr = np.array(ids, dtype=np.int64).reshape(1, -1)
    png = encode_panoptic_ids(arr)
    assert png.dtype == np.uint8
    np.testing.assert_array_equal(decode_panoptic_png(png), arr)
    r, g, b = (png[..., i].astype(np.int64) for i in range(3))
    np.testing.assert_array_equal(r + 256 * g + 65536 * b, arr)


@given(st_.integers(0, (1 << 39) - 1), st_.integers(0, (1 << 24) - 1))
@settings(max_examples=100, deadline=None)
def test_instance_id_roundtrip(image_id, segment_id):
    iid = instance_id(image_id, segment_id)
    assert split_instance_id(iid) == (image_id, segment_id)


def test_instance_id_rejects_out_of_range():
    with pytest.raises(ValidationError, match="segment_id"):
        instance_id(1, 1 << 24)
    with pytest.raises(ValidationError):
        instance_id(-1, 3)


def test_crop_rule_on_small_example():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    mask = np.zeros((10, 12), bool)
    mask[2:6, 3:8] = True  # box x 3..8, y 2..6 (w 5, h 4)
    assert mask_bbox(mask) == (3, 2, 8, 6)
    assert crop_box((3, 2, 8, 6), (10, 12), 0.1) == (2, 1, 9, 7)  # 0.5 px -> floor/ceil
    assert crop_box((3, 2, 8, 6), (10, 12), 1.0) == (0, 0, 12, 10)  # clipped
    crop, box = masked_crop(img, mask, bg_alpha=0.3, pad_ratio=0.1, fill=(10, 20, 30))
    assert box == (2, 1, 9, 7) and crop.shape == (6, 7, 3)
    sub, m = img[1:7, 2:9].astype(float), mask[1:7, 2:9]
    expect = np.where(m[..., None], sub, 0.3 * sub + 0.7 * np.array([10, 20, 30]))
    np.testing.assert_array_equal(crop, np.rint(expect).astype(np.uint8))
    assert masked_crop(img, np.zeros_like(mask)) is None
    with pytest.raises(ValidationError, match="bg_alpha"):
        blend_background(img, mask, bg_alpha=1.5)
    with pytest.raises(ValidationError, match="pad_ratio"):
        crop_box((0, 0, 1, 1), (2, 2), -0.1)
    with pytest.raises(ValidationError, match="fill"):
        blend_background(img, mask, fill=(1, 2))


# ----------------------------------------------------------- a panoptic dataset on disk
def _reference_crop(img, mask, bg_alpha, pad, fill):
    """Independent implementation of the crop rule (for checking the library)."""
    ys, xs = np.where(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    H, W = mask.shape
    cx0 = max(0, int(np.floor(x0 - pad * w)))
    cy0 = max(0, int(np.floor(y0 - pad * h)))
    cx1 = min(W, int(np.ceil(x1 + pad * w)))
    cy1 = min(H, int(np.ceil(y1 + pad * h)))
    out = img.astype(np.float64).copy()
    bg = ~mask
    out[bg] = bg_alpha * out[bg] + (1 - bg_alpha) * np.asarray(fill, float)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)[cy0:cy1, cx0:cx1]


def make_panoptic(root: Path, png_under_annotations: bool = True) -> dict:
    """Two real photos with segment maps; one segment without pixels; one missing image."""
    from PIL import Image
    from skimage import data

    photos = {
        397133: data.astronaut()[::4, ::4],
        37777: data.coffee()[::4, ::4],
        555: data.chelsea()[::4, ::4],
    }
    (root / "val2017").mkdir(parents=True)
    png_dir = root / (
        "annotations/panoptic_val2017" if png_under_annotations else "panoptic_val2017"
    )
    png_dir.mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations, truth = [], [], {}
    for k, (image_id, img) in enumerate(photos.items()):
        h, w = img.shape[:2]
        ids = np.zeros((h, w), np.int64)
        yy, xx = np.mgrid[:h, :w]
        segs = {}
        sid_a = 15466 + k * 70000  # uses G and B channels too
        ids[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 4) ** 2] = sid_a
        segs[sid_a] = 1
        sid_b = 2 + k
        ids[: h // 5, :] = sid_b
        segs[sid_b] = 2
        fname = f"{image_id:012d}"
        if image_id != 555:
            Image.fromarray(img).save(root / "val2017" / f"{fname}.jpg", quality=95)
        Image.fromarray(encode_panoptic_ids(ids)).save(png_dir / f"{fname}.png")
        seg_info = []
        for sid, cat in segs.items():
            m = ids == sid
            ys, xs = np.where(m)
            seg_info.append(
                {
                    "id": int(sid),
                    "category_id": cat,
                    "iscrowd": 0,
                    "area": int(m.sum()),
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(np.ptp(xs) + 1),
                        int(np.ptp(ys) + 1),
                    ],
                }
            )
            truth[(image_id, sid)] = m
        seg_info.append(
            {"id": 999, "category_id": 2, "iscrowd": 0, "area": 0, "bbox": [0, 0, 0, 0]}
        )
        images.append({"id": image_id, "file_name": f"{fname}.jpg", "width": w, "height": h})
        annotations.append(
            {"image_id": image_id, "file_name": f"{fname}.png", "segments_info": seg_info}
        )
    cats = [
        {"id": 1, "name": "person", "isthing": 1, "supercategory": "person"},
        {"id": 2, "name": "sky", "isthing": 0, "supercategory": "sky"},
    ]
    (root / "annotations" / "panoptic_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": cats})
    )
    return {"photos": photos, "truth": truth}


def test_dataset_layouts(tmp_path):
    make_panoptic(tmp_path / "a", png_under_annotations=True)
    make_panoptic(tmp_path / "b", png_under_annotations=False)
    for root in (tmp_path / "a", tmp_path / "b"):
        ds = PanopticDataset(root, "val")
        assert len(ds) == 3 and ds.num_segments == 9
        table = ds.segment_table()
        assert {"image_id", "segment_id", "category_id", "isthing", "area", "bbox_x"} <= set(
            table.columns
        )
        assert table.loc[table.segment_id == 15466, "isthing"].item() == 1
        rgb, ids = ds.load(ds.images[0])
        assert rgb.shape[:2] == ids.shape and 15466 in set(np.unique(ids))
    with pytest.raises(DatasetError, match="panoptic_train2017.json"):
        PanopticDataset(tmp_path / "a", "train")


# ------------------------------------------------------------------- the model parts
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from extractors.siglip.testing import register_tiny_config, save_random_weights

    name = register_tiny_config()
    weights = save_random_weights(tmp_path_factory.mktemp("w") / "tiny.pt", name, seed=0)
    return name, weights


@pytest.fixture(scope="module")
def extractor(tiny):
    from extractors.siglip import SiglipExtractor

    name, weights = tiny
    return SiglipExtractor(
        name,
        pretrained=weights,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        resize_mode="squash",
    )


@pytest.fixture(scope="module")
def reference(tiny):
    """open_clip's own model and transform, built independently of the extractor."""
    name, weights = tiny
    model, _, transform = open_clip.create_model_and_transforms(
        name,
        pretrained=weights,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        image_resize_mode="squash",
    )
    return model.eval(), transform


def _encode(reference, crops):
    from PIL import Image

    model, transform = reference
    x = torch.stack([transform(Image.fromarray(c)) for c in crops])
    with torch.no_grad():
        return model.encode_image(x, normalize=True).numpy()


def test_preprocessing_is_the_models_own():
    from extractors.siglip.extractor import resolve_model_name, resolve_preprocess_cfg

    cfg = resolve_preprocess_cfg("ViT-B-16-SigLIP")
    tag = open_clip.get_pretrained_cfg(
        "ViT-B-16-SigLIP", open_clip.list_pretrained_tags_by_model("ViT-B-16-SigLIP")[0]
    )
    assert cfg["mean"] == tuple(tag["mean"]) and cfg["std"] == tuple(tag["std"])
    assert cfg["resize_mode"] == tag["resize_mode"] == "squash"
    assert resolve_preprocess_cfg("ViT-B-16-SigLIP", mean=(0.1, 0.2, 0.3))["mean"] == (
        0.1,
        0.2,
        0.3,
    )
    assert resolve_model_name("openclip:timm/ViT-B-16-SigLIP") == "ViT-B-16-SigLIP"
    with pytest.raises(ValidationError, match="hf-hub"):
        resolve_model_name("hf-hub:timm/ViT-B-16-SigLIP")
    with pytest.raises(ValidationError, match="unknown open_clip model"):
        resolve_model_name("NoSuchModel-42")


def test_extract_images_equals_open_clip(extractor, reference):
    from skimage import data

    crops = [data.astronaut()[50:200, 100:220], data.rocket()[::3, ::3]]
    got = extractor.extract_images(crops)["embedding"]
    np.testing.assert_allclose(got, _encode(reference, crops), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert extractor.preprocess_cfg["resize_mode"] == "squash"
    assert extractor.embed_dim == got.shape[1] == 32


def test_bad_weights(tiny, tmp_path):
    from extractors.siglip import SiglipExtractor

    name, _ = tiny
    with pytest.raises(CheckpointError, match="does not exist"):
        SiglipExtractor(name, pretrained=tmp_path / "missing.bin")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.bogus": torch.zeros(2)}, wrong)
    with pytest.raises(CheckpointError, match="wrong.pt"):
        SiglipExtractor(name, pretrained=wrong)


def test_extract_panoptic_store_matches_open_clip_and_resumes(tmp_path, extractor, reference):
    from embstore import Store

    info = make_panoptic(tmp_path / "coco")
    out = tmp_path / "val.zarr"
    s1 = extractor.extract_panoptic(
        tmp_path / "coco",
        "val",
        out=out,
        batch_size=3,
        limit=1,
        bg_alpha=0.4,
        pad_ratio=0.2,
        fill=(10, 20, 30),
    )
    assert s1["written"] == 2 and s1["skipped"] == 1  # segment 999 has no pixels
    s2 = extractor.extract_panoptic(
        tmp_path / "coco",
        "val",
        out=out,
        batch_size=3,
        bg_alpha=0.4,
        pad_ratio=0.2,
        fill=(10, 20, 30),
    )
    # image 555's file is missing: its 3 segments are skipped, not fatal
    assert s2["already_done"] == 2 and s2["written"] == 2 and s2["skipped"] == 1 + 3
    assert s2["previously_skipped"] == 1
    with Store.open(out) as st:
        assert st.row_dim == "instance" and st.id_name == "instance_id"
        assert st.dtypes["embedding"] == "float16"
        c = st.coords
        emb = np.asarray(st.embedding.values, dtype=np.float32)
        ids = [int(i) for i in st.ids]
        skipped = st.skipped
    assert len(ids) == 4
    assert set(c.columns) >= {
        "image_id",
        "segment_id",
        "category_id",
        "isthing",
        "area",
        "bbox_x",
        "bbox_y",
        "bbox_w",
        "bbox_h",
        "category",
    }
    crops = []
    for iid in ids:
        image_id, seg = split_instance_id(iid)
        assert (c.loc[iid, "image_id"], c.loc[iid, "segment_id"]) == (image_id, seg)
        assert c.loc[iid, "isthing"] == (1 if seg > 1000 else 0)
        assert c.loc[iid, "area"] == info["truth"][(image_id, seg)].sum()
        from PIL import Image

        img = np.asarray(
            Image.open(tmp_path / "coco" / "val2017" / f"{image_id:012d}.jpg").convert("RGB")
        )
        crops.append(_reference_crop(img, info["truth"][(image_id, seg)], 0.4, 0.2, (10, 20, 30)))
    expect = _encode(reference, crops)
    np.testing.assert_allclose(emb, expect, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
    expected_skips = [(397133, 999), (37777, 999), (555, 15466 + 2 * 70000), (555, 4), (555, 999)]
    assert sorted(skipped["id"].astype(np.int64).tolist()) == sorted(
        int(instance_id(i, s)) for i, s in expected_skips
    )
    assert any("555" in r for r in skipped["reason"])
    s3 = extractor.extract_panoptic(
        tmp_path / "coco",
        "val",
        out=out,
        batch_size=3,
        bg_alpha=0.4,
        pad_ratio=0.2,
        fill=(10, 20, 30),
    )
    assert s3["written"] == 0 and s3["already_done"] == 4 and s3["previously_skipped"] == 5
    s4 = extractor.extract_panoptic(
        tmp_path / "coco",
        "val",
        out=out,
        retry_skipped=True,
        bg_alpha=0.4,
        pad_ratio=0.2,
        fill=(10, 20, 30),
    )
    assert s4["written"] == 0 and s4["skipped"] == 5


def test_cli_extract_siglip(tmp_path, tiny, reference):
    from embstore import Store
    from embstore.cli import main

    name, weights = tiny
    make_panoptic(tmp_path / "coco", png_under_annotations=False)
    out = tmp_path / "cli.zarr"
    rc = main(
        [
            "extract",
            "siglip",
            "--data-path",
            str(tmp_path / "coco"),
            "--split",
            "val",
            "--weights",
            str(weights),
            "--model",
            name,
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--limit",
            "2",
        ]
    )
    assert rc == 0
    with Store.open(out) as st:
        assert len(st) == 4
        assert st.attrs["bg_alpha"] == 0.3 and st.attrs["pad_ratio"] == 0.1
        assert st.attrs["model"] == f"open_clip:{name}"
        import hashlib

        assert (
            st.attrs["pretrained_sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        )
        emb = np.asarray(st.embedding.values, dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
