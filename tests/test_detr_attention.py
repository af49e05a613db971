"""DETR attention maps: extraction, equality with the attention formula, store, analyzer.

The reference is written from ``nn.MultiheadAttention``'s definition (scaled
dot-product attention of the projected query/key, padded keys masked,
averaged over heads) applied, in float64, to the exact inputs the official
architecture feeds ``transformer.decoder.layers[i].multihead_attn`` /
``transformer.encoder.layers[i].self_attn``. The project's model is first
checked against the official fixture on the same padded batch of two images
of different sizes (``tests/data/detr``), so the inputs are the official ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skd = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from embstore import EmbeddingAnalyzer, Store  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import ValidationError  # noqa: E402
from extractors.detr import DetrExtractor  # noqa: E402
from extractors.detr.attention import parse_points, point_cells  # noqa: E402
from extractors.detr.extractor import resolve_variables  # noqa: E402
from extractors.detr.testing import deterministic_state_dict  # noqa: E402

DATA = Path(__file__).parent / "data" / "detr"
POINTS = "0.5,0.5;0.1,0.9;1,0"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small() -> dict:
    cfg = json.loads((DATA / "configs.json").read_text())["small"]
    ext = DetrExtractor.from_config(
        cfg,
        extract_type=["decoder", "attention"],
        min_size=256,
        max_size=400,
        storage_dtype="float32",
        encoder_attention_points=POINTS,
    )
    ext.model.load_state_dict(deterministic_state_dict(ext.model))
    ref = np.load(DATA / "detr_small_batch_reference.npz")
    return {"cfg": cfg, "ext": ext, "ref": ref, "images": [ref["image_0"], ref["image_1"]]}


def _mha_reference(mod, query, key, key_padding_mask) -> np.ndarray:
    """Head-averaged attention weights from the definition, float64: [B, Lq, Lk]."""
    W = mod.in_proj_weight.detach().double()
    b = mod.in_proj_bias.detach().double()
    D = W.shape[1]
    nh = mod.num_heads
    dh = D // nh
    q = query.double() @ W[:D].T + b[:D]  # [Lq, B, D]
    k = key.double() @ W[D : 2 * D].T + b[D : 2 * D]  # [Lk, B, D]
    q = q.reshape(q.shape[0], q.shape[1], nh, dh).permute(1, 2, 0, 3)  # [B, nh, Lq, dh]
    k = k.reshape(k.shape[0], k.shape[1], nh, dh).permute(1, 2, 0, 3)
    s = q @ k.transpose(-1, -2) / math.sqrt(dh)
    if key_padding_mask is not None:
        s = s.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return torch.softmax(s, dim=-1).mean(dim=1).numpy()


def _captured_inputs(ext, images):
    """Inputs of every attention module during a plain (no attention) forward."""
    grabbed: dict[str, list] = {"dec": [], "enc": []}
    handles = []
    model = ext.model
    for kind, layers, attr in (
        ("dec", model.transformer.decoder.layers, "multihead_attn"),
        ("enc", model.transformer.encoder.layers, "self_attn"),
    ):
        for layer in layers:
            mod = getattr(layer, attr)

            def pre(m, args, kwargs, kind=kind):
                names = ("query", "key", "value")
                vals = dict(zip(names, args)) | {n: kwargs[n] for n in names if n in kwargs}
                grabbed[kind].append(
                    (m, vals["query"].clone(), vals["key"].clone(), kwargs.get("key_padding_mask"))
                )

            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        out = ext.extract_images(images, variables="decoder")
    finally:
        for h in handles:
            h.remove()
    return out, grabbed


def test_decoder_and_encoder_attention_equal_formula_in_padded_batch(small):
    ext, ref = small["ext"], small["ref"]
    plain, grabbed = _captured_inputs(ext, small["images"])
    # the model equals the official one on this padded batch (fixture)
    np.testing.assert_allclose(plain["decoder_output"], ref["decoder_output"], atol=1e-4)
    out = ext.extract_images(small["images"])
    assert set(out) >= {"decoder_attention", "encoder_attention", "query_embeddings", "pred_logits"}
    hw = out["feature_hw"]
    assert hw.tolist() != [hw[0].tolist()] * len(hw)  # different grids: a padded batch
    fmask = ref["feature_padding_mask"]
    hp, wp = fmask.shape[1:]
    L, Q = small["cfg"]["dec_layers"], small["cfg"]["num_queries"]
    for b, (h, w) in enumerate(hw):
        assert (~fmask[b]).sum() == h * w
        a = out["decoder_attention"][b]
        assert a.shape == (L, Q, h, w) and a.dtype == np.float32
        np.testing.assert_allclose(a.sum(axis=(-1, -2)), 1.0, atol=1e-5)
        for i, (mod, q, k, kpm) in enumerate(grabbed["dec"]):
            want = _mha_reference(mod, q, k, kpm)[b].reshape(Q, hp, wp)[:, :h, :w]
            np.testing.assert_allclose(a[i], want, atol=2e-5, rtol=0)
        e = out["encoder_attention"][b]
        assert e.shape == (small["cfg"]["enc_layers"], 3, h, w)
        cells = point_cells(parse_points(POINTS), h, w)
        for i, (mod, q, k, kpm) in enumerate(grabbed["enc"]):
            full = _mha_reference(mod, q, k, kpm)[b]
            for p, (y, x) in enumerate(cells):
                want = full[y * wp + x].reshape(hp, wp)[:h, :w]
                np.testing.assert_allclose(e[i, p], want, atol=2e-5, rtol=0)
    # capturing attention does not change the embeddings
    np.testing.assert_allclose(out["decoder_output"], plain["decoder_output"], atol=1e-5)
    np.testing.assert_allclose(out["pred_boxes"], plain["pred_boxes"], atol=1e-5)


def test_attention_is_opt_in():
    assert "decoder_attention" not in resolve_variables("all")
    assert "decoder_attention" not in resolve_variables(None)
    assert resolve_variables("attention") == ("pred_logits", "pred_boxes", "decoder_attention")
    assert "decoder_attention" in resolve_variables(["decoder", "attention"])
    cfg = {
        "backbone": "resnet18",
        "hidden_dim": 32,
        "nheads": 4,
        "enc_layers": 1,
        "dec_layers": 1,
        "dim_feedforward": 32,
        "num_queries": 3,
    }
    with pytest.raises(ValidationError, match="encoder_attention_points"):
        DetrExtractor.from_config(cfg, extract_type=["encoder_attention"])
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        DetrExtractor.from_config(cfg, encoder_attention_points="0.5,2")
    with pytest.raises(ValidationError, match="not numbers"):
        parse_points("a,b")
    ext = DetrExtractor.from_config(
        cfg, extract_type="encoder", encoder_attention_points=[(0.5, 0.5)]
    )
    out = ext.extract_images([np.zeros((64, 96, 3), np.uint8)], min_size=64)
    assert "decoder_attention" not in out and out["encoder_attention"][0].shape == (1, 1, 2, 3)
    assert ext.store_ragged["encoder_attention"] == ("token", "encoder_layer", "point")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        photo = Image.fromarray(getattr(skd, name)())
        photo = photo.resize((photo.width // 4, photo.height // 4), Image.BILINEAR)
        photo.save(root / f"img_{i}.png")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, small) -> Path:
    ckpt = tmp_path_factory.mktemp("ckpt") / "detr_small.pth"
    torch.save(
        {"model": small["ext"].model.state_dict(), "args": {"nheads": small["cfg"]["nheads"]}}, ckpt
    )
    return ckpt


def _cli(ckpt, images, out, *extra):
    return main(
        [
            "extract",
            "detr",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(images),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--batch-size",
            "1",
            "--min-size",
            "128",
            "--max-size",
            "192",
            "--dtype",
            "float32",
            "--extract-type",
            "decoder,attention",
            "--encoder-attention-points",
            POINTS,
            *extra,
        ]
    )


def test_store_resume_and_analyzer(tmp_path, photo_dir, checkpoint):
    out = tmp_path / "att.zarr"
    assert _cli(checkpoint, photo_dir, out, "--limit", "2") == 0
    assert len(Store.open(out)) == 2
    assert _cli(checkpoint, photo_dir, out) == 0  # resumes: 2 more images
    st = Store.open(out)
    assert len(st) == 4
    assert {"decoder_attention", "encoder_attention"} <= set(st.ragged_variables)
    assert st.attrs["encoder_attention_points"] == [list(p) for p in parse_points(POINTS)]
    direct = DetrExtractor.from_checkpoint(
        checkpoint,
        extract_type=["decoder", "attention"],
        min_size=128,
        max_size=192,
        encoder_attention_points=POINTS,
    )
    an = EmbeddingAnalyzer(str(out))
    coords = an.coords
    for image_id in st.ids.tolist():
        path = (
            coords.loc[image_id, "path"]
            if "path" in coords.columns
            else str(photo_dir / coords.loc[image_id, "file_name"])
        )
        with Image.open(path) as im:
            want = direct.extract_images([im.convert("RGB")])
        da = an.attention(image_id)
        assert (
            da.dims == ("query", "y", "x")
            and da.shape[1:] == want["decoder_attention"][0].shape[2:]
        )
        np.testing.assert_allclose(da.values, want["decoder_attention"][0][-1], atol=1e-6)
        first = an.attention(image_id, layer=0, queries=[2, 5])
        np.testing.assert_allclose(first.values, want["decoder_attention"][0][0, [2, 5]], atol=1e-6)
        assert first["query"].values.tolist() == [2, 5]
        enc = an.attention(image_id, variable="encoder_attention")
        assert enc.dims == ("point", "y", "x")
        np.testing.assert_allclose(enc.values, want["encoder_attention"][0][-1], atol=1e-6)
    with pytest.raises(ValidationError, match="out of range"):
        an.attention(st.ids[0], layer=5)
    with pytest.raises(ValidationError, match="out of range"):
        an.attention(st.ids[0], queries=[99])
    # plot: top queries are the most confident ones
    from embstore.analysis.attention import foreground_confidence, top_queries

    image_id = st.ids[0]
    lg = st.read("pred_logits", ids=[image_id])[0]
    top = top_queries(lg, 3)
    score, _ = foreground_confidence(lg)
    assert score[top[0]] == score.max() and list(score[top]) == sorted(score[top], reverse=True)
    fig = an.plot_attention(
        image_id, queries="top", k=3, image_root=photo_dir, path=tmp_path / "a.png"
    )
    assert (tmp_path / "a.png").stat().st_size > 2000
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith(f"query {top[0]}:")
    assert len(titles) == 3
