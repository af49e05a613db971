"""Fairness plots, report files and the ``embstore fairness`` command."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from embstore.errors import ValidationError
from embstore.fairness import make_synthetic_facet, write_synthetic_store
from embstore.fairness.stats import group_statistics

FAST = dict(n_perm=19, probe_folds=3)


def _is_png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_import_embstore_fairness_does_not_import_heavy_modules():
    code = (
        "import sys, embstore, embstore.fairness, embstore.fairness.accessor, embstore.fairness.report, "
        "embstore.fairness.plots, embstore.cli.fairness\n"
        "bad = [m for m in ('torch', 'faiss', 'matplotlib', 'sklearn', 'umap') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plots_write_pngs(tmp_path):
    from embstore.fairness import plots

    data = make_synthetic_facet(60, skins=(1, 2, 3), seed=1)
    X = data.query_embeddings.mean(axis=1)
    res = group_statistics(X, data.images, ["skin", "lighting"], n_boot=20, min_count=12, **FAST)
    bars = plots.plot_group_bars(
        res.table, "dist_to_others", tmp_path / "b.png", by=["skin", "lighting"]
    )
    _w, h = _is_png(bars)
    # three panels (skin, lighting, skin*lighting) make a taller figure than one
    one = plots.plot_group_bars(
        res.table, "dist_to_others", tmp_path / "b1.png", by=["skin"], groupings=["skin"]
    )
    assert _is_png(one)[1] < h
    _is_png(plots.plot_distance_heatmap(res.distances["skin*lighting"], tmp_path / "d.png"))
    _is_png(plots.plot_projection(X, data.images["skin"], tmp_path / "p.png", method="pca"))
    tsne = plots.project_2d(X[:30], "tsne", seed=0)
    assert tsne.shape == (30, 2) and np.all(np.isfinite(tsne))
    np.testing.assert_array_equal(tsne, plots.project_2d(X[:30], "tsne", seed=0))
    with pytest.raises(ValidationError, match="nope"):
        plots.plot_group_bars(res.table, "nope", tmp_path / "x.png", by=["skin"])
    with pytest.raises(ValidationError, match="unknown"):
        plots.project_2d(X, "mds")
    with pytest.raises(ValidationError, match="labels"):
        plots.plot_projection(X, [1, 2], tmp_path / "x.png")


def test_gallery_of_real_photos(tmp_path):
    from skimage import data as skdata

    from embstore.fairness import plots

    files = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).save(path)
        files[name] = str(path)
    out = plots.plot_gallery(
        {
            "group a": [files["astronaut"], files["coffee"], str(tmp_path / "missing.png")],
            "group b": [files["chelsea"], files["rocket"]],
        },
        tmp_path / "g.png",
        n_per_group=3,
    )
    size = _is_png(out)
    assert size[0] > 100 and size[1] > 100
    with pytest.raises(ValidationError):
        plots.plot_gallery({}, tmp_path / "e.png")


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    from embstore.cli import main

    root = tmp_path_factory.mktemp("fair")
    data = make_synthetic_facet(90, skins=(1, 2, 3), miss_group=3, miss_rate=0.5, seed=3)
    write_synthetic_store(data, root / "s.zarr", image_dir=root / "images")
    out = root / "report"
    code = main(
        [
            "fairness",
            str(root / "s.zarr"),
            "--by",
            "skin",
            "--by",
            "lighting",
            "--out",
            str(out),
            "--n-boot",
            "40",
            "--n-perm",
            "19",
            "--min-count",
            "8",
        ]
    )
    return data, root, out, code


def test_cli_writes_tables_figures_and_linked_report(cli_report):
    _data, _root, out, code = cli_report
    assert code == 0
    md = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert any(link.endswith(".png") for link in links) and any(
        link.endswith(".csv") for link in links
    )
    for rel in links:
        assert (out / rel).is_file(), rel
    for png in [link for link in links if link.endswith(".png")]:
        _is_png(out / png)
    for name in (
        "group_stats.csv",
        "group_disparity.csv",
        "probe.csv",
        "detection.csv",
        "detection_disparity.csv",
        "persons.csv",
        "distances_skin.csv",
        "gallery.png",
        "bars_recall.png",
        "person_group_stats.csv",
        "heatmap_skin_x_lighting.png",
        "projection_pca.png",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert html.count("<img") == sum(1 for link in links if link.endswith(".png"))
    assert "<table" in html


def test_cli_tables_match_the_analyzer(cli_report):
    from embstore import EmbeddingAnalyzer

    data, root, out, _ = cli_report
    csv = pd.read_csv(out / "group_stats.csv")
    an = EmbeddingAnalyzer(str(root / "s.zarr"))
    ref = an.group_stats(by=["skin", "lighting"], n_boot=40, min_count=8, n_perm=19)
    np.testing.assert_allclose(
        csv["dist_to_others"], ref["dist_to_others"], rtol=1e-6, equal_nan=True
    )
    np.testing.assert_allclose(csv["p_value"], ref["p_value"], equal_nan=True)
    assert csv["count"].tolist() == ref["count"].tolist()
    det = pd.read_csv(out / "detection.csv")
    skin = det[det["grouping"] == "skin"].set_index("skin")
    assert skin["recall"].idxmin() == 3
    persons = pd.read_csv(out / "persons.csv")
    assert len(persons) == len(data.persons)
    np.testing.assert_array_equal(
        persons["detected"].to_numpy(), ~data.persons["planted_missed"].to_numpy()
    )
    disp = pd.read_csv(out / "detection_disparity.csv").set_index(["grouping", "figure"])
    sk = skin["recall"]
    assert disp.loc[("skin", "recall"), "difference"] == pytest.approx(sk.max() - sk.min())


def test_cli_reports_bad_coordinates_as_usage_errors(cli_report, capsys):
    from embstore.cli import main

    _, root, out, _ = cli_report
    code = main(
        [
            "fairness",
            str(root / "s.zarr"),
            "--by",
            "hair",
            "--out",
            str(out / "bad"),
            "--n-boot",
            "0",
        ]
    )
    assert code == 2
    assert "hair" in capsys.readouterr().err


def test_report_without_detections_on_a_per_instance_store(tmp_path):
    from embstore import EmbeddingAnalyzer, Store
    from embstore.cli import main
    from embstore.fairness.report import write_fairness_report

    rng = np.random.default_rng(0)
    with Store.create(
        tmp_path / "faces.zarr",
        row_dim="instance",
        id_name="path",
        variables={"embedding": ("feature",)},
    ) as st:
        st.append(
            [f"f{i}.jpg" for i in range(60)],
            {"embedding": rng.normal(size=(60, 8)).astype("float32")},
            coords={"skin": rng.integers(1, 4, 60)},
        )
    an = EmbeddingAnalyzer(str(tmp_path / "faces.zarr"))
    rep = write_fairness_report(
        an,
        "skin",
        tmp_path / "out",
        variable="embedding",
        n_boot=10,
        min_count=5,
        n_perm=9,
        projections=(),
        gallery=False,
        html=False,
    )
    assert rep.detection is None and rep.html is None
    assert "detection.csv" not in rep.files and (tmp_path / "out" / "report.md").is_file()
    assert pd.read_csv(tmp_path / "out" / "group_stats.csv")["count"].sum() == 60
    # asking for detection statistics on a store without them is a usage error
    code = main(
        [
            "fairness",
            str(tmp_path / "faces.zarr"),
            "--by",
            "skin",
            "--variable",
            "embedding",
            "--out",
            str(tmp_path / "out2"),
            "--n-boot",
            "0",
            "--detection",
        ]
    )
    assert code == 2
