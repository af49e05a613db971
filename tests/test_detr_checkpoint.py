"""Checkpoint loading, strict key checking and architecture inference for DETR."""

from __future__ import annotations

import argparse
import functools
import json
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from embstore.errors import CheckpointError, DeviceUnavailableError, ValidationError  # noqa: E402
from extractors.detr import DetrExtractor  # noqa: E402
from extractors.detr.checkpoint import (  # noqa: E402
    infer_backbone,
    infer_config,
    load_state_dict_strict,
    read_checkpoint,
    unwrap_state_dict,
)
from extractors.detr.model import DetrConfig, build_detr  # noqa: E402
from extractors.detr.testing import deterministic_state_dict, state_dict_spec_from_json  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data" / "detr"
CONFIGS = json.loads((DATA / "configs.json").read_text())
TINY = {
    "hidden_dim": 32,
    "nheads": 4,
    "enc_layers": 1,
    "dec_layers": 2,
    "dim_feedforward": 48,
    "num_queries": 6,
    "num_classes": 7,
}
IMG = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def _meta_state_dict(config: dict) -> dict:
    """Names and shapes of a model without allocating it (meta tensors)."""
    with torch.device("meta"):
        return build_detr(config).state_dict()


@functools.cache
def _tiny_model(backbone: str = "resnet18", pre_norm: bool = False):
    """Deterministic tiny-transformer model, built once per argument set (read-only use)."""
    model = build_detr({"backbone": backbone, **TINY, "pre_norm": pre_norm})
    model.load_state_dict(deterministic_state_dict(model), strict=True)
    return model


def _outputs(ext: DetrExtractor) -> dict:
    return ext.extract_images([IMG], min_size=64, max_size=96, variables="decoder")


@pytest.fixture(scope="module")
def r50_zero_checkpoint(tmp_path_factory):
    spec = state_dict_spec_from_json(DATA / "detr_r50_state_dict.json")
    sd = {name: torch.zeros(shape) for name, shape in spec.items()}
    path = tmp_path_factory.mktemp("ckpt") / "detr-r50-zeros.pth"
    torch.save({"model": sd}, path)
    return path, spec


def test_official_r50_layout_loads_strictly(r50_zero_checkpoint):
    path, spec = r50_zero_checkpoint
    assert len(spec) == 458
    # README: 41,524,768 parameters (the frozen-BN running statistics not counted)
    # README: 41,524,768 parameters (the frozen batch norms hold buffers, not parameters)
    assert sum(int(np.prod(s)) for s in spec.values()) > 41_524_768
    ext = DetrExtractor.from_checkpoint(path, extract_type="decoder")
    assert ext.config == DetrConfig(**CONFIGS["r50"])
    n_params = sum(p.numel() for p in ext.model.parameters())
    assert n_params == json.loads((DATA / "detr_r50_state_dict.json").read_text())["num_params"]
    own = ext.model.state_dict()
    assert list(own) == list(spec)  # same names, same order
    assert all(tuple(own[k].shape) == spec[k] for k in spec)
    assert all(float(v.abs().sum()) == 0 for v in own.values())  # weights really came from the file
    assert ext.info["checkpoint_sha256"] and len(ext.info["checkpoint_sha256"]) == 64
    assert ext.store_attrs["checkpoint"] == str(path)


def test_official_names_match_json_exactly():
    spec = state_dict_spec_from_json(DATA / "detr_r50_state_dict.json")
    own = {k: tuple(v.shape) for k, v in _meta_state_dict(CONFIGS["r50"]).items()}
    assert own == spec
    assert not any(k.endswith("num_batches_tracked") for k in own)


@pytest.mark.parametrize(
    "backbone, blocks",
    [
        ("resnet18", (2, 2, 2, 2)),
        ("resnet34", (3, 4, 6, 3)),
        ("resnet50", (3, 4, 6, 3)),
        ("resnet101", (3, 4, 23, 3)),
    ],
)
def test_infer_backbone_from_blocks(backbone, blocks):
    sd = _meta_state_dict({"backbone": backbone, **TINY})
    assert infer_backbone(sd) == backbone
    for stage, n in enumerate(blocks, start=1):
        assert f"backbone.0.body.layer{stage}.{n - 1}.conv1.weight" in sd
        assert f"backbone.0.body.layer{stage}.{n}.conv1.weight" not in sd


@pytest.mark.parametrize(
    "config",
    [
        {
            "backbone": "resnet34",
            "hidden_dim": 64,
            "enc_layers": 3,
            "dec_layers": 1,
            "dim_feedforward": 96,
            "num_queries": 11,
            "num_classes": 3,
        },
        {
            "backbone": "resnet101",
            "hidden_dim": 128,
            "enc_layers": 0,
            "dec_layers": 4,
            "dim_feedforward": 32,
            "num_queries": 300,
            "num_classes": 250,
        },
        {**CONFIGS["small"]},
        {**CONFIGS["r50"]},
    ],
)
def test_infer_config_from_shapes(config):
    sd = _meta_state_dict(config)
    nheads = config.get("nheads", 8)
    assert infer_config(sd, nheads=nheads) == DetrConfig(**{**config, "nheads": nheads})


def test_pre_norm_and_learned_position_are_inferred():
    sd = _meta_state_dict(
        {"backbone": "resnet18", **TINY, "pre_norm": True, "position_embedding": "learned"}
    )
    assert "transformer.encoder.norm.weight" in sd and "backbone.1.row_embed.weight" in sd
    cfg = infer_config(sd, nheads=4)
    assert cfg.pre_norm and cfg.position_embedding == "learned"


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_save_reload_roundtrip(tmp_path, backbone):
    model = _tiny_model(backbone)
    expected = _outputs(DetrExtractor(model))
    args = argparse.Namespace(
        backbone=backbone, nheads=4, dilation=False, lr=1e-4, hidden_dim=TINY["hidden_dim"]
    )
    path = tmp_path / "ckpt.pth"
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3}, path)
    ext = DetrExtractor.from_checkpoint(path)  # nheads=4 comes from the saved args
    assert ext.config == model.config
    got = _outputs(ext)
    for name in ("query_embeddings", "decoder_output", "pred_logits", "pred_boxes"):
        np.testing.assert_array_equal(got[name], expected[name])


def test_bare_state_dict_and_dict_args_and_overrides(tmp_path):
    model = _tiny_model("resnet18", pre_norm=True)
    path = tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValidationError, match="nheads"):
        DetrExtractor.from_checkpoint(path, nheads=5)  # 5 does not divide 32
    ext = DetrExtractor.from_checkpoint(path, nheads=4)
    assert ext.config.pre_norm and ext.config.nheads == 4
    np.testing.assert_array_equal(
        _outputs(ext)["pred_logits"], _outputs(DetrExtractor(model))["pred_logits"]
    )
    with pytest.raises(ValidationError, match="dilation"):
        DetrExtractor.from_checkpoint(path, nheads=4, dilation=True)  # basic blocks: no DC5


def test_dict_args_dilation_and_override():
    model = _tiny_model("resnet50")
    sd = model.state_dict()
    args = {"nheads": 2, "dilation": True}
    assert infer_config(sd, args).dilation is True and infer_config(sd, args).nheads == 2
    cfg = infer_config(sd, args, dilation=False)  # a keyword override wins over args
    assert cfg.dilation is False and cfg.nheads == 2
    assert infer_config(sd, argparse.Namespace(nheads=4)).nheads == 4
    assert infer_config(sd).nheads == 8 and infer_config(sd).dilation is False  # defaults
    # dilation (DC5) leaves the state dict unchanged but keeps stride 16 in the last stage
    dc5 = build_detr(infer_config(sd, args))
    load_state_dict_strict(dc5, sd)
    hw_dc5 = DetrExtractor(dc5).extract_images([IMG], min_size=64, variables=["backbone_features"])
    hw = DetrExtractor(model).extract_images([IMG], min_size=64, variables=["backbone_features"])
    assert hw_dc5["feature_hw"].tolist() == [[4, 6]] and hw["feature_hw"].tolist() == [[2, 3]]


def test_override_contradicting_state_dict(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"model": _tiny_model().state_dict()}, path)
    with pytest.raises(CheckpointError, match="hidden_dim=64"):
        DetrExtractor.from_checkpoint(path, nheads=4, hidden_dim=64)
    with pytest.raises(ValidationError, match="num_layers"):
        DetrExtractor.from_checkpoint(path, num_layers=3)


def test_mismatched_checkpoint_names_keys(tmp_path):
    sd = dict(_tiny_model().state_dict())
    sd.pop("class_embed.bias")
    sd.pop("transformer.decoder.norm.weight")
    sd["extra.head.weight"] = torch.zeros(3)
    sd["input_proj.bias"] = torch.zeros(5)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        DetrExtractor.from_checkpoint(path, nheads=4)
    msg = str(info.value)
    for key in (
        "class_embed.bias",
        "transformer.decoder.norm.weight",
        "extra.head.weight",
        "input_proj.bias",
    ):
        assert key in msg
    assert "2 missing keys" in msg and "1 unexpected keys" in msg and "1 shape mismatches" in msg
    assert str(path) in msg


def test_many_missing_keys_are_truncated_with_count():
    model = _tiny_model()
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("transformer.")}
    n_missing = len(model.state_dict()) - len(sd)
    with pytest.raises(
        CheckpointError, match=rf"{n_missing} missing keys: .*\+{n_missing - 3} more"
    ):
        load_state_dict_strict(model, sd, max_listed=3)


def test_not_a_detr_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        DetrExtractor.from_checkpoint(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="could not read"):
        DetrExtractor.from_checkpoint(junk)
    lst = tmp_path / "list.pth"
    torch.save([1, 2, 3], lst)
    with pytest.raises(CheckpointError, match="list"):
        read_checkpoint(lst)
    other = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(CheckpointError, match="does not look like a facebookresearch/detr"):
        DetrExtractor.from_checkpoint(other)
    other2 = tmp_path / "other2.pth"
    sd = {k: v for k, v in _tiny_model().state_dict().items() if "layer4" not in k}
    torch.save(sd, other2)
    with pytest.raises(CheckpointError, match="blocks per stage"):
        DetrExtractor.from_checkpoint(other2)


def test_module_prefix_is_stripped_and_num_batches_tracked_ignored():
    model = _tiny_model()
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    sd["module.backbone.0.body.bn1.num_batches_tracked"] = torch.tensor(5)
    plain, args = unwrap_state_dict({"model": sd})
    assert args is None and "backbone.0.body.bn1.weight" in plain
    with torch.device("meta"):
        fresh = build_detr(model.config)
    fresh.to_empty(device="cpu")
    load_state_dict_strict(fresh, plain)
    assert torch.equal(fresh.class_embed.weight, model.class_embed.weight)


def test_file_url_and_device_check(tmp_path):
    model = _tiny_model()
    path = tmp_path / "u.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(nheads=4)}, path)
    ext = DetrExtractor.from_checkpoint(path.as_uri())
    assert ext.info["checkpoint"] == path.as_uri() and ext.info["checkpoint_sha256"]
    np.testing.assert_array_equal(
        _outputs(ext)["pred_boxes"], _outputs(DetrExtractor(model))["pred_boxes"]
    )
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
            DetrExtractor.from_checkpoint(path, device="cuda")


def test_from_config_with_state_dict_is_strict():
    cfg = {"backbone": "resnet18", **TINY}
    model = _tiny_model()
    ext = DetrExtractor.from_config(cfg, state_dict=model.state_dict())
    assert torch.equal(ext.model.query_embed.weight, model.query_embed.weight)
    bad = dict(model.state_dict())
    bad.pop("query_embed.weight")
    with pytest.raises(CheckpointError, match="query_embed.weight"):
        DetrExtractor.from_config(cfg, state_dict=bad)
    with pytest.raises(CheckpointError, match="query_embed.weight"):
        ext.load_state_dict(bad)


def test_http_url_uses_torch_hub_cache(tmp_path, monkeypatch):
    model = _tiny_model()
    calls = []

    def fake_load(url, model_dir=None, map_location=None, weights_only=False, **kw):
        calls.append((url, model_dir, map_location, weights_only))
        cached = pathlib.Path(model_dir) / "detr-tiny-0123abcd.pth"
        torch.save({"model": model.state_dict(), "args": argparse.Namespace(nheads=4)}, cached)
        return torch.load(cached, map_location="cpu", weights_only=False)

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_load)
    url = "https://example.invalid/detr/detr-tiny-0123abcd.pth"
    sd, args, info = read_checkpoint(url, model_dir=str(tmp_path))
    assert calls == [(url, str(tmp_path), "cpu", True)]  # safe unpickling, CPU first
    assert args.nheads == 4 and set(sd) == set(model.state_dict())
    assert info["checkpoint"] == url and len(info["checkpoint_sha256"]) == 64

    def failing_load(url, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", failing_load)
    with pytest.raises(CheckpointError, match="network is unreachable"):
        DetrExtractor.from_checkpoint(url)


def test_args_contradicting_state_dict_are_logged(caplog):
    sd = _meta_state_dict({"backbone": "resnet18", **TINY})
    with caplog.at_level("WARNING", logger="extractors.detr.checkpoint"):
        cfg = infer_config(sd, argparse.Namespace(nheads=4, hidden_dim=256, backbone="resnet50"))
    assert cfg.hidden_dim == 32 and cfg.backbone == "resnet18"
    assert "hidden_dim=256" in caplog.text and "backbone='resnet50'" in caplog.text
