"""Fairness figures at a real size: 10 skin tones x 4 lightings (40 groups).

No layout warnings, bounded figure sizes, 150 dpi PNG by default, SVG/PDF on
request, small multiples on one x-scale, readable 40x40 heatmaps, projections
with labeled axes and n= per group."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from embstore.errors import ValidationError
from embstore.fairness import make_synthetic_facet, write_synthetic_store
from embstore.fairness.stats import group_statistics

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

SKINS = tuple(range(1, 11))
LIGHT_P = (0.4, 0.3, 0.2, 0.1)  # well_lit, dimly_lit, underexposed, overexposed
MAX_PX = 2400  # 16 inches at 150 dpi


@pytest.fixture(scope="module")
def forty():
    data = make_synthetic_facet(600, skins=SKINS, lighting_p=LIGHT_P, seed=0)
    X = data.query_embeddings.mean(axis=1)
    res = group_statistics(
        X, data.images, ["skin", "lighting"], n_boot=10, n_perm=9, min_count=5, probe_folds=2
    )
    return data, X, res


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size, im.info.get("dpi")


def test_synthetic_data_has_forty_intersections(forty):
    data, _, res = forty
    assert data.images["lighting"].nunique() == 4
    inter = res.table[res.table["grouping"] == "skin*lighting"]
    assert len(inter) == 40


def test_bars_of_forty_groups_are_small_multiples_on_one_scale(forty, tmp_path):
    from embstore.fairness import plots

    _, _, res = forty
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plots._group_bars_figure(
            res.table, "dist_to_others", ["skin", "lighting"], None, None, None, 150
        )
        path = plots.plot_group_bars(
            res.table, "dist_to_others", tmp_path / "bars.png", by=["skin", "lighting"]
        )
    drawn = [ax for ax in fig.axes if ax.patches]
    assert len(drawn) == 12  # skin, lighting, and one panel per skin tone of skin*lighting
    assert max(len(ax.patches) for ax in drawn) <= 12
    assert len({ax.get_xlim() for ax in drawn}) == 1  # one x-scale
    titles = [ax.get_title(loc="left") for ax in drawn]
    assert "skin*lighting: skin=10" in titles
    labels = [t.get_text() for ax in drawn for t in ax.get_yticklabels()]
    assert all("(n=" in lab for lab in labels)
    (w, h), dpi = _png(path)
    assert 1000 <= w <= MAX_PX and 600 <= h <= MAX_PX
    assert dpi is not None and round(dpi[0]) == 150


def test_forty_by_forty_heatmap_is_readable(forty, tmp_path):
    from embstore.fairness import plots

    _, _, res = forty
    D = res.distances["skin*lighting"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = plots.plot_distance_heatmap(D, tmp_path / "heat.png")
    (w, h), _ = _png(path)
    assert w <= MAX_PX and h <= MAX_PX
    # cells of at least 0.2 inch: the matrix alone needs 40 * 0.2 * 150 = 1200 px
    assert w >= 1200 and h >= 1200


def test_projection_axes_say_what_they_show(forty):
    from embstore.fairness import plots

    _, X, _ = forty
    P, labels = plots._project(X, "pca", 0)
    assert P.shape == (len(X), 2)
    assert labels[0].startswith("PC1 (") and "% of variance" in labels[0]
    with pytest.raises(ValidationError, match="unknown"):
        plots._project(X, "mds", 0)


@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_vector_formats(forty, tmp_path, fmt, magic):
    from embstore.fairness import plots

    _, X, res = forty
    path = plots.plot_group_bars(
        res.table, "dispersion", tmp_path / f"b.{fmt}", by=["skin"], groupings=["skin"]
    )
    assert open(path, "rb").read(8).startswith(magic)
    with pytest.raises(ValidationError, match="jpg"):
        plots.plot_projection(X, np.zeros(len(X)), tmp_path / "p.jpg")


@pytest.mark.slow
def test_forty_group_report_has_no_layout_warnings(tmp_path):
    from embstore import EmbeddingAnalyzer
    from embstore.fairness.report import write_fairness_report

    data = make_synthetic_facet(600, skins=SKINS, lighting_p=LIGHT_P, seed=0)
    write_synthetic_store(data, tmp_path / "s.zarr", image_dir=tmp_path / "images")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = write_fairness_report(
            EmbeddingAnalyzer(str(tmp_path / "s.zarr")),
            ["skin", "lighting"],
            tmp_path / "report",
            n_boot=20,
            n_perm=9,
            min_count=5,
            probe_folds=2,
            image_root=str(tmp_path / "images"),
        )
    pngs = [p for p in rep.files.values() if str(p).endswith(".png")]
    assert len(pngs) >= 12
    for p in pngs:
        (w, h), dpi = _png(p)
        assert 300 <= w <= MAX_PX and 200 <= h <= MAX_PX, (p, w, h)
        assert round(dpi[0]) == 150
    html = open(rep.html).read()
    assert "<figcaption>" in html and "n=" in html
    assert "heatmap_skin_x_lighting.png" in html


def test_cli_format_svg(tmp_path):
    from embstore.cli import main

    data = make_synthetic_facet(120, skins=(1, 2, 3), seed=2)
    write_synthetic_store(data, tmp_path / "s.zarr")
    rc = main(
        [
            "fairness",
            str(tmp_path / "s.zarr"),
            "--by",
            "skin",
            "--out",
            str(tmp_path / "r"),
            "--n-boot",
            "10",
            "--n-perm",
            "9",
            "--min-count",
            "8",
            "--format",
            "svg",
            "--no-detection",
            "--no-gallery",
        ]
    )
    assert rc == 0
    svgs = sorted(p.name for p in (tmp_path / "r").glob("*.svg"))
    assert "heatmap_skin.svg" in svgs and "bars_dist_to_others.svg" in svgs
    assert not list((tmp_path / "r").glob("*.png"))
    assert 'src="heatmap_skin.svg"' in (tmp_path / "r" / "report.html").read_text()
