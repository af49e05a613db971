"""Detection fairness: box maths, matching rule, per-group recall, fairlearn cross-check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore.errors import ShapeMismatchError, UnknownVariableError, ValidationError
from embstore.fairness.detection import (
    IOU_THRESHOLDS,
    box_iou,
    cxcywh_to_xyxy,
    detection_statistics,
    greedy_match,
    match_persons,
    person_boxes,
    person_scores,
    xywh_to_xyxy,
)
from embstore.fairness.synthetic import make_synthetic_facet

boxes_st = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(0.5, 50), st.floats(0.5, 50))


def _brute_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@settings(max_examples=60, deadline=None)
@given(boxes_st, boxes_st)
def test_box_iou_matches_brute_force_and_is_symmetric(a, b):
    A, B = xywh_to_xyxy(np.array([a])), xywh_to_xyxy(np.array([b]))
    iou = box_iou(A, B)[0, 0]
    assert iou == pytest.approx(_brute_iou(A[0], B[0]), abs=1e-9)
    assert iou == pytest.approx(box_iou(B, A)[0, 0])
    assert 0.0 <= iou <= 1.0 + 1e-12
    assert box_iou(A, A)[0, 0] == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(boxes_st, st.integers(50, 2000), st.integers(50, 2000))
def test_relative_cxcywh_round_trip(box, W, H):
    x, y, w, h = box
    rel = np.array([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H])
    np.testing.assert_allclose(cxcywh_to_xyxy(rel, W, H), xywh_to_xyxy(np.array(box)), atol=1e-9)


def test_person_scores_follow_detr_postprocess():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7, 92))
    logits[0, 0, 1] += 20
    is_p, score = person_scores(logits)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_array_equal(is_p, p[..., :-1].argmax(-1) == 1)
    np.testing.assert_allclose(score, p[..., :-1].max(-1))
    assert is_p[0, 0]


def test_greedy_match_visits_predictions_by_score():
    # one prediction overlaps both people; the better-scoring prediction takes its best person first
    iou = np.array([[0.7, 0.9], [0.6, 0.0]])
    # prediction 1 (score 0.9) takes person 0 (IoU 0.9); prediction 0 then takes person 1 (0.6)
    assert greedy_match(iou, np.array([0.8, 0.9]), 0.5).tolist() == [1, 0]
    # with prediction 0 scoring higher it takes person 0 (0.7 > 0.6); prediction 1 has no one left
    assert greedy_match(iou, np.array([0.95, 0.9]), 0.5).tolist() == [0, -1]
    # below the threshold nothing matches
    assert greedy_match(iou, np.array([0.8, 0.9]), 0.95).tolist() == [-1, -1]
    assert greedy_match(np.zeros((0, 3)), np.zeros(3)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.floats(0.1, 0.9))
def test_greedy_match_is_one_to_one_and_respects_threshold(n_people, n_pred, seed, thr):
    rng = np.random.default_rng(seed)
    iou = rng.uniform(0, 1, (n_people, n_pred))
    m = greedy_match(iou, rng.uniform(size=n_pred), thr)
    hit = m >= 0
    assert len(set(m[hit])) == hit.sum()
    assert np.all(iou[np.flatnonzero(hit), m[hit]] >= thr)
    # an unmatched person has no free prediction it could have taken at the threshold... unless
    # every prediction above the threshold for it was taken by someone
    for p in np.flatnonzero(~hit):
        free = [q for q in range(n_pred) if q not in set(m[hit]) and iou[p, q] >= thr]
        assert not free


def test_person_boxes_accepts_facet_bounding_box_column():
    df = pd.DataFrame(
        {
            "bounding_box": [
                '{"x": 1, "y": 2, "width": 3, "height": 4}',
                {"x": 0, "y": 0, "width": 1, "height": 1},
            ]
        }
    )
    np.testing.assert_allclose(person_boxes(df), [[1, 2, 4, 6], [0, 0, 1, 1]])
    np.testing.assert_allclose(
        person_boxes(pd.DataFrame({"bbox_x": [1], "bbox_y": [2], "bbox_w": [3], "bbox_h": [4]})),
        [[1, 2, 4, 6]],
    )
    with pytest.raises(UnknownVariableError, match="box"):
        person_boxes(pd.DataFrame({"a": [1]}))


def _one_image(pred_xywh, logit_person=8.0, W=100, H=100, n_queries=3):
    boxes = np.tile([0.9, 0.9, 0.05, 0.05], (1, n_queries, 1)).astype(float)
    logits = np.zeros((1, n_queries, 92))
    logits[..., -1] = 8.0
    for q, (x, y, w, h) in enumerate(pred_xywh):
        boxes[0, q] = [(x + w / 2) / W, (y + h / 2) / H, w / W, h / H]
        logits[0, q, -1] = 0.0
        logits[0, q, 1] = logit_person
    return boxes, logits, np.array([W]), np.array([H])


def test_match_persons_recall_avg_counts_thresholds():
    person = pd.DataFrame({"x": [10.0], "y": [10.0], "w": [40.0], "h": [40.0], "skin": [1]})
    # a prediction of the same height, 0.72 x as wide, same left edge: IoU = 0.72
    boxes, logits, W, H = _one_image([(10.0, 10.0, 40.0 * 0.72, 40.0)])
    m = match_persons(person, np.array([0]), boxes, logits, W, H)
    assert m.loc[0, "detected"] and m.loc[0, "iou"] == pytest.approx(0.72)
    assert m.loc[0, "query"] == 0 and m.loc[0, "best_iou"] == pytest.approx(0.72)
    assert m.loc[0, "recall_avg"] == pytest.approx(np.mean(IOU_THRESHOLDS <= 0.72))
    # the same at a stricter main threshold: not detected, best IoU still reported
    m2 = match_persons(person, np.array([0]), boxes, logits, W, H, iou=0.75)
    assert not m2.loc[0, "detected"] and np.isnan(m2.loc[0, "score"]) and m2.loc[0, "query"] == -1
    assert m2.loc[0, "best_iou"] == pytest.approx(0.72)
    # a score threshold above the prediction's score removes it
    m3 = match_persons(person, np.array([0]), boxes, logits, W, H, score_threshold=0.999)
    assert not m3.loc[0, "detected"] and m3.loc[0, "best_iou"] == 0.0


def test_match_persons_one_prediction_per_person():
    people = pd.DataFrame(
        {"x": [10.0, 12.0], "y": [10.0, 10.0], "w": [40.0, 40.0], "h": [40.0, 40.0]}
    )
    boxes, logits, W, H = _one_image([(11.0, 10.0, 40.0, 40.0)])
    m = match_persons(people, np.array([0, 0]), boxes, logits, W, H)
    assert m["detected"].sum() == 1
    with pytest.raises(ShapeMismatchError):
        match_persons(people, np.array([0]), boxes, logits, W, H)
    with pytest.raises(ValidationError, match="iou"):
        match_persons(people, np.array([0, 0]), boxes, logits, W, H, iou=0.0)


@pytest.fixture(scope="module")
def planted():
    data = make_synthetic_facet(
        500, skins=(1, 2, 3, 4), miss_group=3, miss_rate=0.4, base_miss_rate=0.05, seed=21
    )
    m = match_persons(
        data.persons,
        data.persons["image_id"].to_numpy(),
        data.pred_boxes,
        data.pred_logits,
        data.images["width"].to_numpy(),
        data.images["height"].to_numpy(),
    )
    return data, m


def test_planted_misses_are_found_exactly(planted):
    data, m = planted
    np.testing.assert_array_equal(
        m["detected"].to_numpy(), ~data.persons["planted_missed"].to_numpy()
    )
    assert (m.loc[m["detected"], "iou"] >= 0.8 - 1e-9).all()
    assert (m.loc[m["detected"], "recall_avg"] > 0.5).all()


def test_planted_miss_rate_is_recovered_with_intervals(planted):
    data, m = planted
    res = detection_statistics(m, ["skin"], n_boot=300, min_count=10, seed=0)
    t = res.table.set_index("skin")
    assert "recall" in t.columns and "recall_avg" in t.columns and "mean_score" in t.columns
    for skin in (1, 2, 3, 4):
        exp = data.expected_recall(skin)
        assert t.loc[skin, "recall_lo"] - 0.03 <= exp <= t.loc[skin, "recall_hi"] + 0.03
    assert t.loc[3, "recall_hi"] < min(t.loc[s, "recall_lo"] for s in (1, 2, 4))
    d = res.disparity.loc[("skin", "recall")]
    assert d["argmin"] == "skin=3"
    assert d["difference"] == pytest.approx(0.4 - 0.05, abs=0.1)
    assert d["ratio"] == pytest.approx(0.6 / 0.95, abs=0.1)


@pytest.mark.parametrize("by", [["skin"], ["skin", "lighting"]])
def test_recall_difference_and_ratio_equal_fairlearn(planted, by):
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import recall_score

    _, m = planted
    res = detection_statistics(m, by, n_boot=0, min_count=1)
    mf = MetricFrame(
        metrics=recall_score,
        y_true=np.ones(len(m), dtype=int),
        y_pred=m["detected"].astype(int).to_numpy(),
        sensitive_features=m[by],
    )
    grouping = "*".join(by)
    ours = res.table[res.table["grouping"] == grouping].set_index(by)["recall"]
    theirs = mf.by_group
    assert len(ours) == len(theirs)
    for key, value in theirs.items():
        assert ours.loc[key] == pytest.approx(value)
    d = res.disparity.loc[(grouping, "recall")]
    assert d["difference"] == pytest.approx(mf.difference())
    assert d["ratio"] == pytest.approx(mf.ratio())


def test_small_groups_and_missing_columns(planted):
    _, m = planted
    m = m.copy()
    m.loc[m.index[:3], "skin"] = 9
    t = detection_statistics(m, "skin", n_boot=10, min_count=5).table.set_index("skin")
    assert (
        t.loc[9, "count"] == 3 and np.isnan(t.loc[9, "recall"]) and np.isnan(t.loc[9, "recall_lo"])
    )
    with pytest.raises(UnknownVariableError, match="hair"):
        detection_statistics(m, ["hair"])
    # FACET's unknown skin tone (0) is left out and counted
    m.loc[m.index[3:10], "skin"] = 0
    res = detection_statistics(m, "skin", n_boot=0, min_count=5)
    assert res.n_excluded == 7 and 0 not in set(res.table["skin"])
    assert res.table["count"].sum() == len(m) - 7


def test_analyzer_detection_fairness_on_a_store(tmp_path):
    from embstore import EmbeddingAnalyzer, Store
    from embstore.fairness.synthetic import write_synthetic_store

    data = make_synthetic_facet(150, skins=(1, 2, 3), miss_group=3, seed=22)
    write_synthetic_store(data, tmp_path / "s.zarr")
    an = EmbeddingAnalyzer(str(tmp_path / "s.zarr"))
    persons = an.person_detections(block_rows=40)
    np.testing.assert_array_equal(
        persons["detected"].to_numpy(), ~data.persons["planted_missed"].to_numpy()
    )
    t = an.detection_fairness(by=["skin", "lighting"], n_boot=50, min_count=5, persons=persons)
    ref = detection_statistics(persons, ["skin", "lighting"], n_boot=50, min_count=5).table
    pd.testing.assert_frame_equal(t, ref)
    # matched-query embeddings feed group_stats at person level
    X, _lab = an.matched_embeddings(persons)
    det = persons[persons["detected"]]
    np.testing.assert_allclose(
        X, data.query_embeddings[det["row"].to_numpy(), det["query"].to_numpy()], rtol=1e-6
    )
    gs = an.group_stats(by="skin", persons=persons, n_boot=0, min_count=5, n_perm=19, probe_folds=3)
    assert gs["count"].sum() == int(persons["detected"].sum())
    # a selection analyses only its images' people
    sub = an.sel(lighting="well_lit").detection_fairness(by="skin", n_boot=0, min_count=1)
    n_well = int((data.persons["lighting"] == "well_lit").sum())
    assert sub["count"].sum() == n_well
    # without image sizes the boxes cannot be converted
    st = Store.create(
        tmp_path / "nosize.zarr",
        row_dim="image",
        id_name="image_id",
        variables={"pred_boxes": ("query", "box"), "pred_logits": ("query", "class")},
    )
    st.append([0], {"pred_boxes": data.pred_boxes[:1], "pred_logits": data.pred_logits[:1]})
    st.write_table(
        "persons", data.persons[data.persons["image_id"] == 0].drop(columns="planted_missed")
    )
    st.close()
    with pytest.raises(UnknownVariableError, match="width"):
        EmbeddingAnalyzer(str(tmp_path / "nosize.zarr")).person_detections()
