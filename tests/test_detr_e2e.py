"""End to end: real photos + a FACET annotations.csv -> `embstore extract detr` -> Store.

A tiny DETR (the ``small`` ResNet-18 config of tests/data/detr/configs.json,
seeded random weights saved as an official-format checkpoint) runs on photos
bundled with scikit-image at a small resize (64/96) so the file stays fast on
one CPU core.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
skd = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from embstore import Store  # noqa: E402
from embstore.cli import main  # noqa: E402
from embstore.errors import SelectionError  # noqa: E402

DATA = Path(__file__).parent / "data" / "detr"
REPO = Path(__file__).resolve().parent.parent
SIZE = ["--min-size", "64", "--max-size", "96"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: much faster than two on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: image id -> (photo, skin votes per person, lighting votes per person)
PHOTOS = {
    1: ("astronaut", [{1: 2, 4: 1}], [{"well_lit": 3}]),
    2: ("coffee", [{5: 3}], [{"well_lit": 2, "dimly_lit": 1}]),
    3: ("chelsea", [{1: 1}, {1: 1, 2: 1}], [{"dimly_lit": 1}, {"dimly_lit": 2}]),
    4: ("rocket", [{3: 1, 6: 1}], [{"well_lit": 1}]),  # tie 3 vs 6 -> lower tone 3
    5: ("camera", [{}], [{"na": 3}]),  # grayscale photo; NA only -> skin 0, lighting "na"
    6: ("immunohistochemistry", [{1: 3}], [{"dimly_lit": 3}]),
}
EXPECTED_SKIN = {1: 1, 2: 5, 3: 1, 4: 3, 5: 0, 6: 1}
EXPECTED_LIGHT = {
    1: "well_lit",
    2: "well_lit",
    3: "dimly_lit",
    4: "well_lit",
    5: "na",
    6: "dimly_lit",
}


def _person(pid: int, fname: str, skin: dict, light: dict) -> dict:
    row = {
        "person_id": pid,
        "filename": fname,
        "class1": "person",
        "class2": "",
        "bounding_box": str({"x": 5.0 * pid, "y": 4.0, "width": 20.0, "height": 30.0}),
    }
    for t in range(1, 11):
        row[f"skin_tone_{t}"] = skin.get(t, 0)
    row["skin_tone_na"] = 3 - sum(skin.values()) if sum(skin.values()) < 3 else 0
    for lab in ("underexposed", "dimly_lit", "well_lit", "overexposed", "na"):
        row[f"lighting_{lab}"] = light.get(lab, 0)
    row["gender_presentation_masc"], row["gender_presentation_fem"] = pid % 2, 1 - pid % 2
    row["gender_presentation_non_binary"] = row["gender_presentation_na"] = 0
    row["age_presentation_young"], row["age_presentation_middle"] = 1, 0
    row["age_presentation_older"] = row["age_presentation_na"] = 0
    row["has_cap"], row["visible_face"] = 0, 1
    return row


@pytest.fixture(scope="module")
def facet(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """FACET-like folder with photos, a CSV, a tiny checkpoint."""
    root = tmp_path_factory.mktemp("facet")
    imgs = root / "imgs_1"
    imgs.mkdir()
    rows, pid = [], 0
    for image_id, (name, skins, lights) in PHOTOS.items():
        photo = Image.fromarray(getattr(skd, name)())
        photo = photo.resize((photo.width // 4, photo.height // 4), Image.BILINEAR)  # keep it fast
        photo.save(imgs / f"sa_{image_id}.jpg", quality=90)
        for s, lt in zip(skins, lights):
            pid += 1
            rows.append(_person(pid, f"sa_{image_id}.jpg", s, lt))
    rows.append(_person(99, "sa_7.jpg", {2: 3}, {"well_lit": 3}))  # annotated, file missing
    (imgs / "sa_8.jpg").write_bytes(b"\xff\xd8 broken jpeg")  # present but corrupt
    rows.append(_person(100, "sa_8.jpg", {1: 3}, {"well_lit": 3}))
    csv = root / "annotations.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)

    cfg = json.loads((DATA / "configs.json").read_text())["small"]
    from extractors.detr import DetrExtractor

    torch.manual_seed(0)
    sd = DetrExtractor.from_config(cfg).model.state_dict()
    ckpt = root / "detr_small.pth"
    torch.save({"model": sd, "args": {"nheads": cfg["nheads"]}}, ckpt)
    direct = DetrExtractor.from_checkpoint(ckpt, extract_type="all", min_size=64, max_size=96)
    return {"root": root, "imgs": imgs, "csv": csv, "ckpt": ckpt, "direct": direct}


def direct_outputs(facet: dict, image_id: int) -> dict:
    """A direct DetrExtractor forward pass on one image (no pipeline, no store)."""
    cache = facet.setdefault("cache", {})
    if image_id not in cache:
        cache[image_id] = _direct(facet, image_id)
    return cache[image_id]


def _direct(facet: dict, image_id: int) -> dict:
    with Image.open(facet["imgs"] / f"sa_{image_id}.jpg") as im:
        img = im.convert("RGB")
    return facet["direct"].extract_images([img])


def cli(facet: dict, out: Path, *extra: str) -> int:
    return main(
        [
            "extract",
            "detr",
            "--checkpoint",
            str(facet["ckpt"]),
            "--images",
            str(facet["imgs"]),
            "--annotations",
            str(facet["csv"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--batch-size",
            "1",
            *SIZE,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def full_store(facet: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "all.zarr"
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32") == 0
    return out


def test_selection_by_skin_equals_direct_forward(facet: dict, full_store: Path) -> None:
    st = Store.open(full_store)
    q = st.query_embeddings.sel(skin=1)
    ids = q[st.id_name].values.tolist()
    assert sorted(ids) == [1, 3, 6]
    assert q.dims[0] == "image" and q.shape[1:] == (20, 64)
    values = q.values
    for k, image_id in enumerate(ids):
        ref = direct_outputs(facet, image_id)
        np.testing.assert_allclose(values[k], ref["query_embeddings"][0], atol=1e-5, rtol=1e-5)
    one = st.pred_boxes.sel(skin=5)  # a single match keeps the row dimension
    assert one.shape == (1, 20, 4)
    np.testing.assert_allclose(one.values[0], direct_outputs(facet, 2)["pred_boxes"][0], atol=1e-5)
    both = st.decoder_output.sel(skin=1, lighting="dimly_lit")
    assert sorted(both[st.id_name].values.tolist()) == [3, 6]
    with pytest.raises(SelectionError):
        st.query_embeddings.sel(skin=9)


def test_every_variable_and_coordinate(facet: dict, full_store: Path) -> None:
    st = Store.open(full_store)
    assert sorted(st.ids.tolist()) == [1, 2, 3, 4, 5, 6]
    coords = st.coords
    assert coords["skin"].to_dict() == EXPECTED_SKIN
    assert coords["lighting"].to_dict() == EXPECTED_LIGHT
    assert coords.loc[3, "n_people"] == 2
    assert coords.loc[2, "file_name"] == "sa_2.jpg"
    assert (coords.loc[2, "height"], coords.loc[2, "width"]) == (100, 150)
    assert (coords.loc[2, "input_height"], coords.loc[2, "input_width"]) == (64, 96)
    for image_id in (4, 5):  # rocket (wide), camera (grayscale -> RGB)
        ref = direct_outputs(facet, image_id)
        pos = st.ids.tolist().index(image_id)
        np.testing.assert_allclose(
            st.decoder_output.values[pos], ref["decoder_output"][0], atol=1e-5
        )
        np.testing.assert_allclose(st.pred_logits.values[pos], ref["pred_logits"][0], atol=1e-5)
        np.testing.assert_allclose(
            st.get_ragged("encoder_output", image_id), ref["encoder_output"][0], atol=1e-5
        )
        np.testing.assert_allclose(
            st.get_ragged("backbone_features", image_id), ref["backbone_features"][0], atol=1e-4
        )
        h, w = ref["feature_hw"][0]
        assert tuple(st.ragged_hw("encoder_output").loc[image_id, ["h", "w"]]) == (h, w)


def test_persons_skipped_and_provenance(facet: dict, full_store: Path) -> None:
    st = Store.open(full_store)
    persons = st.read_table("persons")
    assert len(persons) == 9 and set(persons["image_id"]) == {1, 2, 3, 4, 5, 6, 7, 8}
    p1 = persons[persons["person_id"] == 1].iloc[0]
    assert (p1["x"], p1["y"], p1["w"], p1["h"]) == (5.0, 4.0, 20.0, 30.0)
    assert p1["skin"] == 1 and p1["lighting"] == "well_lit" and p1["gender"] == "masc"
    skipped = st.skipped
    assert skipped["id"].tolist() == [8] and skipped["reason"][0].startswith("not an image")
    attrs = st.attrs
    assert attrs["model_name"] == "detr"
    assert attrs["checkpoint_sha256"] == hashlib.sha256(facet["ckpt"].read_bytes()).hexdigest()
    assert (
        attrs["preprocessing"]["min_size"] == 64 and attrs["model_config"]["backbone"] == "resnet18"
    )
    assert "extract detr" in attrs["command_line"] and "--extract-type all" in attrs["command_line"]
    assert attrs["runs"][-1]["summary"]["written"] == 6


def test_missing_file_reported(
    facet: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert cli(facet, tmp_path / "m.zarr", "--limit", "1") == 0
    assert "1 of 8 images" in caplog.text and "sa_7.jpg" in caplog.text
    assert "wrote 1 rows" in capsys.readouterr().out


def test_old_flag_names_filters_and_float16(facet: dict, tmp_path: Path) -> None:
    out = tmp_path / "old"
    rc = main(
        [
            "extract",
            "detr",
            "--resume",
            str(facet["ckpt"]),
            "--coco_path",
            str(facet["imgs"]),
            "--annotations",
            str(facet["csv"]),
            "--output_dir",
            str(out),
            "--batch_size",
            "2",
            "--extract_type",
            "decoder",
            "--no_aux_loss",
            "--skin",
            "skin1",
            "--light",
            "well",
            "--num_workers",
            "0",
            "--device",
            "cpu",
            *SIZE,
        ]
    )
    assert rc == 0
    st = Store.open(out)
    assert st.ids.tolist() == [1]
    assert set(st.variables) == {"query_embeddings", "decoder_output", "pred_logits", "pred_boxes"}
    assert st.dtypes["query_embeddings"] == "float16" and st.dtypes["pred_logits"] == "float32"
    assert st.query_embeddings.dtype == np.float32  # float16 storage is decoded to float32 in views
    ref = direct_outputs(facet, 1)["query_embeddings"][0]
    np.testing.assert_allclose(
        st.query_embeddings.values[0].astype(np.float32), ref, rtol=2e-3, atol=2e-3
    )
    assert set(st.read_table("persons")["image_id"]) == {1, 8}  # 8 matches too but is corrupt
    # another filter into the same store adds its images and persons
    assert (
        main(
            [
                "extract",
                "detr",
                "--resume",
                str(facet["ckpt"]),
                "--coco_path",
                str(facet["imgs"]),
                "--annotations",
                str(facet["csv"]),
                "--output_dir",
                str(out),
                "--extract_type",
                "decoder",
                "--skin",
                "5",
                "--num_workers",
                "0",
                "--device",
                "cpu",
                *SIZE,
            ]
        )
        == 0
    )
    st = Store.open(out)
    assert sorted(st.ids.tolist()) == [1, 2]
    assert set(st.read_table("persons")["image_id"]) == {1, 2, 8}


def test_rerun_resumes_and_refuses_other_setups(
    facet: dict, full_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "r.zarr"
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32", "--limit", "2") == 0
    capsys.readouterr()
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32") == 0
    printed = capsys.readouterr().out
    assert "wrote 4 rows" in printed and "2 already in the store" in printed
    assert_same_store(out, full_store)
    assert cli(facet, out, "--extract-type", "decoder") == 2  # other variables: refused
    assert "--extract-type" in capsys.readouterr().err


def assert_same_store(a: Path, b: Path) -> None:
    sa, sb = Store.open(a), Store.open(b)
    assert sorted(sa.ids.tolist()) == sorted(sb.ids.tolist())
    order_a = {i: k for k, i in enumerate(sa.ids.tolist())}
    order_b = {i: k for k, i in enumerate(sb.ids.tolist())}
    qa, qb = sa.query_embeddings.values, sb.query_embeddings.values
    for i in order_a:
        np.testing.assert_allclose(qa[order_a[i]], qb[order_b[i]], atol=1e-6)
        np.testing.assert_allclose(
            sa.get_ragged("encoder_output", i), sb.get_ragged("encoder_output", i), atol=1e-6
        )
    pd.testing.assert_frame_equal(sa.coords.sort_index(), sb.coords.sort_index())


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from embstore import Store
    from embstore.cli import main
    from extractors.detr.run import DetrPipelineExtractor

    out, sig = sys.argv[1], getattr(signal, sys.argv[2])
    calls = [0]
    original = DetrPipelineExtractor.extract_batch

    def extract_batch(self, batch):
        calls[0] += 1
        if calls[0] == 4:  # three batches computed: wait until two are committed, then die
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if len(Store.open(out).ids) >= 2:
                        break
                except Exception:
                    pass
                time.sleep(0.05)
            os.kill(os.getpid(), sig)
            time.sleep(5)
        return original(self, batch)

    DetrPipelineExtractor.extract_batch = extract_batch
    sys.exit(main(sys.argv[3:]))
    """
)


def test_killed_run_resumes_to_the_same_store(
    facet: dict, full_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "k.zarr"
    args = [
        "extract",
        "detr",
        "--checkpoint",
        str(facet["ckpt"]),
        "--images",
        str(facet["imgs"]),
        "--annotations",
        str(facet["csv"]),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--batch-size",
        "1",
        "--extract-type",
        "all",
        "--dtype",
        "float32",
        "--commit-every",
        "0",
        *SIZE,
    ]
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(out), "SIGKILL", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    st = Store.open(out)  # the store opens, holding the rows committed before the kill
    assert 2 <= len(st) < 6
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32") == 0
    assert_same_store(out, full_store)


def test_sigterm_commits_computed_batches_then_resumes(
    facet: dict,
    full_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from extractors.detr.run import DetrPipelineExtractor

    calls = [0]
    original = DetrPipelineExtractor.extract_batch

    def extract_batch(self, batch):  # SIGTERM arrives while the 4th batch is requested
        calls[0] += 1
        if calls[0] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, batch)

    monkeypatch.setattr(DetrPipelineExtractor, "extract_batch", extract_batch)
    out = tmp_path / "t.zarr"
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32") == 130
    assert "re-run to resume" in capsys.readouterr().err
    assert len(Store.open(out)) == 3  # every batch computed before the signal is committed
    monkeypatch.setattr(DetrPipelineExtractor, "extract_batch", original)
    assert cli(facet, out, "--extract-type", "all", "--dtype", "float32") == 0
    assert_same_store(out, full_store)
