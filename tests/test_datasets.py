"""Datasets: folders, text lists, COCO JSON, FACET CSV, majority rules, filters."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from embstore.errors import DatasetError
from extractors.datasets import (
    ImageDataset,
    coco_dataset,
    facet_dataset,
    folder_dataset,
    image_table_from_persons,
    list_dataset,
    open_dataset,
    parse_light,
    parse_skin,
    read_facet_annotations,
)

SKIN = [f"skin_tone_{i}" for i in range(1, 11)] + ["skin_tone_na"]
LIGHT = [
    "lighting_underexposed",
    "lighting_dimly_lit",
    "lighting_well_lit",
    "lighting_overexposed",
    "lighting_na",
]


def facet_row(
    pid: int,
    fname: str,
    skin: dict[int, int],
    light: dict[str, int],
    *,
    box=(10, 20, 30, 40),
    gender="fem",
    age="young",
    skin_na: int = 0,
) -> dict:
    """One FACET annotations.csv row (votes given as {tone: count}, {label: count})."""
    row = {
        "person_id": pid,
        "filename": fname,
        "class1": "doctor",
        "class2": None,
        "bounding_box": str({"x": box[0], "y": box[1], "width": box[2], "height": box[3]}),
    }
    for i in range(1, 11):
        row[f"skin_tone_{i}"] = skin.get(i, 0)
    row["skin_tone_na"] = skin_na
    for col in LIGHT:
        row[col] = light.get(col[len("lighting_") :], 0)
    for g in ("masc", "fem", "non_binary", "na"):
        row[f"gender_presentation_{g}"] = int(g == gender)
    for a in ("young", "middle", "older", "na"):
        row[f"age_presentation_{a}"] = int(a == age)
    for h in ("black", "blonde", "brown", "na"):
        row[f"hair_color_{h}"] = int(h == "brown")
    for h in ("straight", "curly", "na"):
        row[f"hairtype_{h}"] = int(h == "curly")
    row["has_cap"] = 0
    row["visible_face"] = 1
    return row


@pytest.fixture()
def facet(tmp_path: Path) -> tuple[Path, Path]:
    """A FACET-like tree: imgs_1/, imgs_2/ and annotations/annotations.csv."""
    rows = [
        # image 10: two people; summed votes tone 2: 1+1=2, tone 5: 2 -> tie -> lower tone 2
        facet_row(1, "sa_10.jpg", {2: 1, 5: 2}, {"well_lit": 3}),
        facet_row(2, "sa_10.jpg", {2: 1}, {"dimly_lit": 1}, gender="masc", age="older"),
        # image 11: one person tone 7, dimly lit majority
        facet_row(3, "sa_11.jpg", {7: 3}, {"dimly_lit": 2, "well_lit": 1}),
        # image 12: NA only for skin and lighting
        facet_row(4, "sa_12.jpg", {}, {"na": 3}, skin_na=3),
        # image 13: tone 1, well lit
        facet_row(5, "sa_13.jpg", {1: 2, 3: 1}, {"well_lit": 2, "overexposed": 2}),
        # image 99: annotated but missing on disk
        facet_row(6, "sa_99.jpg", {1: 3}, {"well_lit": 3}),
    ]
    root = tmp_path / "facet"
    (root / "annotations").mkdir(parents=True)
    csv = root / "annotations" / "annotations.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    for i, name in enumerate(["sa_10.jpg", "sa_11.jpg", "sa_12.jpg", "sa_13.jpg"]):
        sub = root / ("imgs_1" if i < 2 else "imgs_2")
        sub.mkdir(exist_ok=True)
        Image.new("RGB", (8 + i, 6), (i * 40, 0, 0)).save(sub / name)
    return csv, root


def test_read_facet_persons(facet: tuple[Path, Path]) -> None:
    csv, _ = facet
    persons = read_facet_annotations(csv)
    assert len(persons) == 6
    assert persons["image_id"].tolist() == [10, 10, 11, 12, 13, 99]
    p1 = persons.iloc[0]
    assert (p1["x"], p1["y"], p1["w"], p1["h"]) == (10.0, 20.0, 30.0, 40.0)
    # per person majority: person 1 votes tone 5 twice -> 5
    assert persons["skin"].tolist() == [5, 2, 7, 0, 1, 1]
    assert persons["lighting"].tolist() == [
        "well_lit",
        "dimly_lit",
        "dimly_lit",
        "na",
        "well_lit",
        "well_lit",
    ]
    assert persons["gender"].tolist()[:2] == ["fem", "masc"]
    assert persons["age"].tolist()[:2] == ["young", "older"]
    assert set(persons["hair_color"]) == {"brown"}
    assert {"class1", "has_cap", "visible_face", "skin_tone_na"} <= set(persons.columns)


def test_image_table_majority_rules(facet: tuple[Path, Path]) -> None:
    csv, _ = facet
    table = image_table_from_persons(read_facet_annotations(csv))
    assert table.index.tolist() == [10, 11, 12, 13, 99]
    # 10: tie 2 vs 2 votes between tone 2 and 5 -> lower tone; lighting 3 well vs 1 dim
    # 13: well_lit 2 vs overexposed 2 -> earlier label (well_lit)
    assert table["skin"].tolist() == [2, 7, 0, 1, 1]
    assert table["lighting"].tolist() == ["well_lit", "dimly_lit", "na", "well_lit", "well_lit"]
    assert table["n_people"].tolist() == [2, 1, 1, 1, 1]
    assert table.loc[11, "file_name"] == "sa_11.jpg"


def test_facet_dataset_missing_files_reported(
    facet: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    csv, root = facet
    with caplog.at_level(logging.WARNING, logger="extractors.datasets"):
        ds = facet_dataset(csv, root)
    assert ds.missing == ["sa_99.jpg"]
    assert "1 of 5 images" in caplog.text and "sa_99.jpg" in caplog.text
    recs = list(ds)
    assert [r.image_id for r in recs] == [10, 11, 12, 13]
    assert Path(recs[2].path).parent.name == "imgs_2"  # found by base name in a sub-folder
    assert recs[0].coords == {
        "file_name": "sa_10.jpg",
        "skin": 2,
        "lighting": "well_lit",
        "n_people": 2,
    }
    assert len(ds) == 4 and ds.kind == "facet"
    assert len(ds.persons) == 6


@pytest.mark.parametrize(
    ("skin", "light", "expected"),
    [
        (1, None, [13]),
        ("skin1", None, [13]),
        ([2, 7], None, [10, 11]),
        (None, "well", [10, 13]),
        (None, "dimly", [11]),
        (None, ["na", "dimly"], [11, 12]),
        (2, "well", [10]),
        (7, "well", []),
    ],
)
def test_filters(facet: tuple[Path, Path], skin, light, expected) -> None:
    csv, root = facet
    ds = open_dataset(root, csv, skin=skin, light=light)
    assert [r.image_id for r in ds] == expected
    assert set(ds.persons["image_id"]) == set(expected)


def test_limit_and_autodetected_facet_layout(facet: tuple[Path, Path]) -> None:
    _, root = facet
    ds = open_dataset(root, limit=2)  # annotations/annotations.csv found automatically
    assert ds.kind == "facet"
    assert [r.image_id for r in ds] == [10, 11]


def test_filter_needs_annotations(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "1.png")
    with pytest.raises(DatasetError, match="pass annotations=") as info:
        open_dataset(tmp_path, skin=1)
    assert "--" not in str(info.value)  # the library names its parameter, not a CLI flag
    from embstore.cli._runtime import cli_message

    # ... and the command line turns that advice into its flag
    assert "use --annotations annotations.csv" in cli_message(str(info.value), {"--annotations"})


def test_parse_filter_values() -> None:
    assert [parse_skin(v) for v in (1, "1", "skin1", "skin_10", "SKIN3")] == [1, 1, 1, 10, 3]
    assert [
        parse_light(v) for v in ("well", "dimly", "dim", "under", "over", "lighting_well_lit")
    ] == ["well_lit", "dimly_lit", "dimly_lit", "underexposed", "overexposed", "well_lit"]
    with pytest.raises(DatasetError, match="'skin11'"):
        parse_skin("skin11")
    with pytest.raises(DatasetError, match="'bright'"):
        parse_light("bright")


def test_folder_recursive_ids(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "000000000139.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "a" / "b" / "000000000285.PNG")
    (tmp_path / "notes.txt").write_text("x")
    ds = folder_dataset(tmp_path)
    recs = list(ds)
    assert sorted(r.image_id for r in recs) == [139, 285]
    assert {r.coords["file_name"] for r in recs} == {"000000000139.jpg", "a/b/000000000285.PNG"}
    # a name without digits -> string ids (relative paths) for every file
    Image.new("RGB", (4, 4)).save(tmp_path / "cat.webp")
    ids = [r.image_id for r in folder_dataset(tmp_path)]
    assert "cat.webp" in ids and all(isinstance(i, str) for i in ids)
    with pytest.raises(DatasetError, match="no images"):
        folder_dataset(tmp_path / "a" / "b" / "..", extensions=(".tif",))
    with pytest.raises(DatasetError, match="does not exist"):
        folder_dataset(tmp_path / "nope")


def test_folder_duplicate_digits_fall_back_to_paths(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "img1.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "x" / "img1.png")
    assert sorted(r.image_id for r in folder_dataset(tmp_path)) == ["img1.png", "x/img1.png"]


def test_list_dataset_streams(tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\nimgs/a.jpg\n\n/abs/b.jpg\nimgs/c.jpg\n")
    ds = list_dataset(lst, root=tmp_path)
    assert len(ds) == 3
    recs = list(ds)
    assert [r.image_id for r in recs] == [0, 1, 2]
    assert recs[0].path == str(tmp_path / "imgs" / "a.jpg")
    assert recs[1].path == "/abs/b.jpg"
    assert [r.coords["file_name"] for r in recs] == ["imgs/a.jpg", "/abs/b.jpg", "imgs/c.jpg"]
    assert [r.image_id for r in list_dataset(lst, ids="path")][1] == "/abs/b.jpg"
    # the limit is lazy too
    limited = ds.filter(limit=2)
    assert len(limited) == 2 and [r.image_id for r in limited] == [0, 1]
    assert open_dataset(lst).kind == "list"


def test_coco_json_with_attributes(tmp_path: Path) -> None:
    img_dir = tmp_path / "val2017"
    img_dir.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (5, 5)).save(img_dir / f"{i:012d}.jpg")
    votes = {"skin_tone_4": 2, "skin_tone_6": 1, "lighting_well_lit": 2, "lighting_dimly_lit": 1}
    data = {
        "images": [
            {"id": i, "file_name": f"{i:012d}.jpg", "width": 5, "height": 5} for i in (1, 2, 3, 4)
        ],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "attributes": votes},
            {
                "id": 101,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 2, 2],
                "attributes": {"skin": "skin6", "lighting": "dimly_lit", "gender": "fem"},
            },
            {
                "id": 102,
                "image_id": 2,
                "category_id": 1,
                "bbox": [0, 0, 1, 1],
                "attributes": {"skin_tone": 9, "lighting": "well"},
            },
            {"id": 103, "image_id": 3, "category_id": 18, "bbox": [0, 0, 1, 1]},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    js = tmp_path / "instances.json"
    js.write_text(json.dumps(data))
    ds = coco_dataset(js, img_dir)
    assert ds.missing == ["000000000004.jpg"]
    recs = {r.image_id: r for r in ds}
    assert sorted(recs) == [1, 2, 3]
    # image 1: tone 4 has 2 votes, tone 6 has 1 + 1 -> tie -> lower tone 4; lighting well 2 vs dim 2 -> well_lit
    assert recs[1].coords["skin"] == 4 and recs[1].coords["lighting"] == "well_lit"
    assert recs[1].coords["n_people"] == 2 and recs[1].coords["n_annotations"] == 2
    assert recs[2].coords["skin"] == 9 and recs[2].coords["lighting"] == "well_lit"
    assert recs[3].coords["skin"] == 0 and recs[3].coords["lighting"] == "na"
    assert recs[3].coords["n_people"] == 0 and recs[3].coords["n_annotations"] == 1
    persons = ds.persons.set_index("person_id")
    assert persons.loc[101, "skin"] == 6 and persons.loc[101, "gender"] == "fem"
    assert tuple(persons.loc[100, ["x", "y", "w", "h"]]) == (1.0, 2.0, 3.0, 4.0)
    assert [r.image_id for r in ds.filter(skin=9)] == [2]


def test_bad_annotation_files(tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        coco_dataset(bad, tmp_path)
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DatasetError, match="'images'"):
        coco_dataset(bad, tmp_path)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="'person_id'"):
        read_facet_annotations(csv)
    with pytest.raises(DatasetError, match="unknown format"):
        open_dataset(tmp_path, tmp_path / "x.txt")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nothing")


def test_image_dataset_from_table_roundtrip() -> None:
    t = pd.DataFrame(
        {"path": ["a", "b"], "skin": [3, 4]}, index=pd.Index(["x", "y"], name="image_id")
    )
    ds = ImageDataset.from_table(t)
    assert [(r.image_id, r.path, r.coords) for r in ds] == [
        ("x", "a", {"skin": 3}),
        ("y", "b", {"skin": 4}),
    ]
    with pytest.raises(DatasetError, match="negative"):
        ds.filter(limit=-1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=10, max_size=10), min_size=1, max_size=5))
def test_image_skin_is_argmax_of_summed_votes_lower_on_ties(votes: list[list[int]]) -> None:
    persons = pd.DataFrame(votes, columns=[f"skin_tone_{i}" for i in range(1, 11)])
    persons["image_id"] = 1
    skin = int(image_table_from_persons(persons)["skin"].iloc[0])
    total = np.asarray(votes).sum(axis=0)
    if total.sum() == 0:
        assert skin == 0
    else:
        winners = [i + 1 for i, v in enumerate(total) if v == total.max()]
        assert skin == min(winners)


def test_coco_root_uses_val2017(tmp_path: Path) -> None:
    (tmp_path / "val2017").mkdir()
    (tmp_path / "train2017").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "val2017" / "000000000139.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "train2017" / "000000000009.jpg")
    data = {"images": [{"id": 139, "file_name": "000000000139.jpg"}], "annotations": []}
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    ds = open_dataset(tmp_path)  # as the old --coco_path COCO/
    assert ds.kind == "coco"
    assert [r.image_id for r in ds] == [139]
