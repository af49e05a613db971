"""DETR model + DetrExtractor against the official reference fixtures.

The fixtures (tests/data/detr, see its README) were produced by the official
facebookresearch/detr code with deterministic weights; the tolerances are the
README's (1e-4 absolute, 1e-3 for backbone features).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from embstore.errors import DeviceUnavailableError, UnknownVariableError, ValidationError  # noqa: E402
from extractors.detr import EXTRACT_TYPES, DetrExtractor  # noqa: E402
from extractors.detr.extractor import ATTENTION_NAMES, RAGGED_DIMS, VARIABLE_DIMS, resolve_variables  # noqa: E402
from extractors.detr.model import build_detr  # noqa: E402
from extractors.detr.preprocess import (  # noqa: E402
    DetrTransform,
    get_size_with_aspect_ratio,
    pad_batch,
    preprocess_images,
    to_pil_rgb,
)
from extractors.detr.testing import deterministic_state_dict  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data" / "detr"
CONFIGS = json.loads((DATA / "configs.json").read_text())
ATOL = 1e-4
ATOL_BACKBONE = 1e-3


def _make_extractor(name: str, **kwargs) -> DetrExtractor:
    model = build_detr(CONFIGS[name])
    model.load_state_dict(deterministic_state_dict(model), strict=True)
    return DetrExtractor(model, "cpu", **kwargs)


def _images(ref) -> list[np.ndarray]:
    return [ref[k] for k in sorted(ref.files) if k.startswith("image_")]


class _Case:
    def __init__(self, name: str, fixture: str, min_size: int, max_size: int) -> None:
        self.ref = np.load(DATA / fixture)
        self.ext = _make_extractor(name)
        self.images = _images(self.ref)
        pixels, mask, hw = self.ext.preprocess(self.images, min_size, max_size)
        self.pixels, self.mask, self.input_hw = pixels, mask, hw
        self.raw = self.ext.forward_batch(pixels, mask)
        self.out = self.ext.postprocess(self.raw, hw)


@pytest.fixture(scope="module")
def r50() -> _Case:
    return _Case("r50", "detr_r50_reference.npz", 800, 1333)


@pytest.fixture(scope="module")
def small() -> _Case:
    return _Case("small", "detr_small_batch_reference.npz", 256, 400)


@pytest.fixture(scope="module", params=["r50", "small"])
def case(request) -> _Case:
    return request.getfixturevalue(request.param)


# --------------------------------------------------------------------- fixtures


def test_preprocessing_sizes_match_official(case):
    assert case.input_hw.tolist() == case.ref["input_sizes"].tolist()
    assert list(case.pixels.shape[-2:]) == case.ref["batch_input_size"].tolist()
    assert case.out["input_hw"].tolist() == case.ref["input_sizes"].tolist()


def test_feature_mask_matches_official(case):
    np.testing.assert_array_equal(
        case.raw["feature_mask"].numpy(), case.ref["feature_padding_mask"]
    )


def test_dense_outputs_match_official(case):
    ref = case.ref
    for name in ("pred_logits", "pred_boxes", "decoder_output"):
        assert case.out[name].shape == ref[name].shape, name
        assert case.out[name].dtype == np.float32
        np.testing.assert_allclose(case.out[name], ref[name], atol=ATOL, rtol=0, err_msg=name)
    np.testing.assert_allclose(
        case.out["query_embeddings"], ref["decoder_output"][:, -1], atol=ATOL, rtol=0
    )


def test_padded_outputs_match_official(case):
    np.testing.assert_allclose(
        case.raw["encoder_output"].numpy(), case.ref["encoder_output_padded"], atol=ATOL, rtol=0
    )
    np.testing.assert_allclose(
        case.raw["backbone_features"].numpy(),
        case.ref["backbone_features_padded"],
        atol=ATOL_BACKBONE,
        rtol=0,
    )


def test_ragged_outputs_are_unpadded_regions(case):
    ref = case.ref
    fmask = ref["feature_padding_mask"]
    assert len(case.out["encoder_output"]) == len(case.images)
    for b in range(len(case.images)):
        rows = np.flatnonzero(~fmask[b, :, 0])
        cols = np.flatnonzero(~fmask[b, 0, :])
        h, w = len(rows), len(cols)
        assert case.out["feature_hw"][b].tolist() == [h, w]
        # the unpadded cells are exactly the top-left h x w block
        assert not fmask[b, :h, :w].any() and fmask[b].sum() == fmask[b].size - h * w
        enc_pad = ref["encoder_output_padded"]
        enc_ref = enc_pad[b, :, :h, :w].reshape(enc_pad.shape[1], -1).T  # row-major (y, x) tokens
        assert case.out["encoder_output"][b].shape == (h * w, enc_pad.shape[1])
        np.testing.assert_allclose(case.out["encoder_output"][b], enc_ref, atol=ATOL, rtol=0)
        bb_ref = ref["backbone_features_padded"][b, :, :h, :w]
        assert case.out["backbone_features"][b].shape == bb_ref.shape
        np.testing.assert_allclose(
            case.out["backbone_features"][b], bb_ref, atol=ATOL_BACKBONE, rtol=0
        )


def test_small_batch_really_has_padding(small):
    # guards the test above: the second image is wider, so the first one is padded
    fmask = small.ref["feature_padding_mask"]
    assert fmask[0].any() and not fmask[1].any()
    assert small.out["feature_hw"][0, 1] < small.out["feature_hw"][1, 1]


def test_extract_images_equals_batch_path(small):
    out = small.ext.extract_images(small.images, min_size=256, max_size=400)
    for name in ("query_embeddings", "decoder_output", "pred_logits", "pred_boxes"):
        np.testing.assert_array_equal(out[name], small.out[name])
    for a, b in zip(out["encoder_output"], small.out["encoder_output"]):
        np.testing.assert_array_equal(a, b)


def test_pil_and_array_inputs_agree(small):
    pil = [Image.fromarray(im) for im in small.images]
    out = small.ext.extract_images(pil, min_size=256, max_size=400, variables="decoder")
    np.testing.assert_array_equal(out["pred_logits"], small.out["pred_logits"])
    assert "encoder_output" not in out and "backbone_features" not in out


# ------------------------------------------------------------- variables/stages


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_backbone_only_skips_transformer():
    ext = _make_extractor("small")
    enc_calls = _count_calls(ext.model.transformer.encoder)
    dec_calls = _count_calls(ext.model.transformer.decoder)
    img = np.full((50, 70, 3), 120, np.uint8)
    out = ext.extract_images([img], min_size=64, max_size=100, variables=["backbone_features"])
    assert enc_calls[0] == 0 and dec_calls[0] == 0
    assert set(out) == {"backbone_features", "feature_hw", "input_hw"}
    out = ext.extract_images([img], min_size=64, max_size=100, variables=["encoder_output"])
    assert enc_calls[0] == 1 and dec_calls[0] == 0
    assert set(out) == {"encoder_output", "feature_hw", "input_hw"}
    full = ext.extract_images([img], min_size=64, max_size=100, variables="all")
    assert enc_calls[0] == 2 and dec_calls[0] == 1
    np.testing.assert_allclose(full["encoder_output"][0], out["encoder_output"][0], atol=1e-6)


def test_extract_types_and_store_schema():
    assert EXTRACT_TYPES["decoder"] == [
        "query_embeddings",
        "decoder_output",
        "pred_logits",
        "pred_boxes",
    ]
    # attention maps are opt-in (large), never part of "all"
    assert set(EXTRACT_TYPES["all"]) == (set(VARIABLE_DIMS) | set(RAGGED_DIMS)) - set(
        ATTENTION_NAMES
    )
    for kind, names in EXTRACT_TYPES.items():
        assert set(resolve_variables(kind)) == set(names)
    ext = _make_extractor("small", extract_type="encoder", storage_dtype="float16")
    assert ext.store_variables == {
        "pred_logits": ("query", "class"),
        "pred_boxes": ("query", "box"),
    }
    assert ext.store_ragged == {"encoder_output": ("token", "hidden")}
    assert ext.store_dtypes == {
        "pred_logits": "float32",
        "pred_boxes": "float32",
        "encoder_output": "float16",
    }
    assert ext.variables == ext.store_variables and ext.ragged == ext.store_ragged
    ext_all = _make_extractor("small", extract_type="all", storage_dtype="float32")
    assert ext_all.store_ragged["backbone_features"] == ("channel", "y", "x")
    assert ext_all.store_variables["decoder_output"] == ("layer", "query", "hidden")
    assert set(ext_all.store_dtypes.values()) == {"float32"}
    attrs = ext_all.store_attrs
    assert attrs["model_config"]["backbone"] == "resnet18"
    assert attrs["preprocessing"]["min_size"] == 800
    json.dumps(attrs)  # must be serialisable for store attributes


def test_ragged_hw_for_store(small):
    hw = DetrExtractor.ragged_hw(small.out)
    assert hw == {"encoder_output": [tuple(map(int, x)) for x in small.out["feature_hw"]]}
    assert DetrExtractor.ragged_hw({"pred_logits": 1}) == {}


def test_unknown_variable_is_rejected():
    with pytest.raises(UnknownVariableError, match="query_embedding"):
        resolve_variables(["query_embedding"])
    with pytest.raises(UnknownVariableError, match="decoder"):
        resolve_variables("decoders")


@pytest.mark.slow  # ~19 s of CPU
def test_autocast_bf16_runs_and_stays_close(small):
    out = small.ext.extract_images(
        small.images, min_size=256, max_size=400, variables="decoder", autocast="bf16"
    )
    assert out["pred_boxes"].dtype == np.float32
    diff = np.abs(out["pred_boxes"] - small.out["pred_boxes"]).max()
    assert 0 < diff < 0.1
    with pytest.raises(ValidationError, match="autocast"):
        small.ext.extract_images(small.images, autocast="int8")


def test_cuda_request_without_cuda_raises():
    if torch.cuda.is_available():
        bad = f"cuda:{torch.cuda.device_count()}"
    else:
        bad = "cuda"
    with pytest.raises(DeviceUnavailableError, match="cuda"):
        DetrExtractor(build_detr(CONFIGS["small"]), device=bad)
    ext = DetrExtractor(build_detr(CONFIGS["small"]), device="auto")
    assert ext.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(ext.model.parameters()).device.type == ext.device.type


# -------------------------------------------------------------- preprocessing


def test_official_resize_rule_examples():
    assert get_size_with_aspect_ratio((640, 480), 800, 1333) == (800, 1066)
    assert get_size_with_aspect_ratio((480, 640), 800, 1333) == (1066, 800)
    # very wide: the shortest side shrinks so the longest stays <= max_size
    assert get_size_with_aspect_ratio((2000, 500), 800, 1333) == (333, 1332)
    # already the right size: unchanged
    assert get_size_with_aspect_ratio((1000, 800), 800, 1333) == (800, 1000)
    assert get_size_with_aspect_ratio((96, 96), 800, 1333) == (800, 800)


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
    size=st.integers(16, 1000),
    extra=st.integers(0, 2000),
)
def test_resize_rule_properties(w, h, size, extra):
    max_size = size + extra
    oh, ow = get_size_with_aspect_ratio((w, h), size, max_size)
    short, long_ = min(w, h), max(w, h)
    o_short, o_long = (oh, ow) if h <= w else (ow, oh)
    if long_ / short * size <= max_size:
        assert o_short == size
    else:
        assert o_long <= max_size + long_ / short
        assert o_short <= size
    # aspect ratio kept up to the integer truncation of the long side
    assert abs(o_long - o_short * long_ / short) < 1 + 1e-9 * long_


@settings(max_examples=30, deadline=None)
@given(shapes=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=4))
def test_pad_batch_roundtrip(shapes):
    tensors = [torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w) + 1 for h, w in shapes]
    pixels, mask, hw = pad_batch(tensors)
    H, W = max(s[0] for s in shapes), max(s[1] for s in shapes)
    assert tuple(pixels.shape) == (len(shapes), 3, H, W)
    assert hw.tolist() == [list(s) for s in shapes]
    for i, (h, w) in enumerate(shapes):
        assert torch.equal(pixels[i, :, :h, :w], tensors[i])
        assert int((~mask[i]).sum()) == h * w and not bool(mask[i, :h, :w].any())
        assert float(pixels[i].abs().sum()) == float(tensors[i].abs().sum())  # zeros elsewhere


def test_transform_matches_manual_pipeline():
    from skimage import data

    img = data.astronaut()[::3, ::2]  # 171 x 256
    t = DetrTransform(min_size=100, max_size=140)
    x = t(img)
    assert tuple(x.shape) == (
        3,
        *get_size_with_aspect_ratio((img.shape[1], img.shape[0]), 100, 140),
    )
    pil = Image.fromarray(img).resize((x.shape[2], x.shape[1]), Image.BILINEAR)
    manual = (np.asarray(pil, np.float32) / 255 - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225]
    )
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), manual, atol=1e-5)


def test_image_modes_are_converted_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    for mode in ("L", "RGBA", "P", "CMYK"):
        pil = Image.fromarray(rgb).convert(mode)
        out = to_pil_rgb(pil)
        assert out.mode == "RGB" and out.size == (10, 12)
    assert to_pil_rgb(rgb[..., 0]).mode == "RGB"
    assert np.array_equal(np.asarray(to_pil_rgb(np.dstack([rgb, rgb[..., :1]]))), rgb)
    with pytest.raises(ValidationError, match="uint8"):
        to_pil_rgb(rgb.astype(np.float32))
    with pytest.raises(ValidationError, match="shape"):
        to_pil_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValidationError, match="list"):
        preprocess_images(rgb)
    with pytest.raises(ValidationError, match="too elongated"):
        DetrTransform(800, 1333)(np.zeros((1, 3000, 3), np.uint8))
