"""Fairness report: CSV tables, PNG figures and a Markdown / HTML page linking them.

:func:`write_fairness_report` runs the embedding statistics (and, when the
store holds DETR ``pred_boxes``/``pred_logits`` and a ``persons`` table, the
detection statistics) on an analyzer and writes everything into one folder::

    out/
      report.md, report.html        the summary page (relative links)
      group_stats.csv               embedding figures per group (+ intervals)
      group_disparity.csv           max-min difference and min/max ratio
      probe.csv                     linear-probe accuracy vs baselines
      distances_<grouping>.csv      centroid distance matrices
      detection.csv, detection_disparity.csv, persons.csv
      *.png                         bars with intervals, heatmaps, projections, gallery

Examples
--------
>>> import os
>>> from embstore import EmbeddingAnalyzer
>>> rep = write_fairness_report(EmbeddingAnalyzer(demo_path), ["skin"], out_dir, n_boot=20,
...                             n_perm=9, detection=False, projections=(), gallery=False)
>>> os.path.basename(rep.markdown), "bars_dispersion" in rep.files
('report.md', True)
"""

from __future__ import annotations

import html as _html
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.defaults import resolve_variable
from ..errors import ValidationError
from .detection import DetectionStats
from .disparity import group_label
from .stats import GroupStats

__all__ = ["FairnessReport", "format_with_ci", "markdown_table", "write_fairness_report"]

logger = logging.getLogger(__name__)

#: Embedding figures drawn as bar charts (figure, reference line).
EMBEDDING_BARS = (
    ("dist_to_others", None),
    ("centroid_norm", None),
    ("dispersion", None),
    ("homophily_ratio", 1.0),
    ("probe_recall", None),
)
DETECTION_BARS = (("recall", None), ("recall_avg", None), ("mean_score", None))


@dataclass
class FairnessReport:
    """What :func:`write_fairness_report` produced.

    Attributes
    ----------
    out_dir : str
        The output folder.
    files : dict of str to str
        Every file written, by key (``"group_stats.csv"``, ``"bars_recall"``...).
    group_stats : GroupStats
        Embedding statistics.
    detection : DetectionStats or None
        Detection statistics (None when the store has no detections).
    person_stats : GroupStats or None
        Embedding statistics of detected people (matched queries).
    markdown : str
        Path of ``report.md``.
    html : str or None
        Path of ``report.html``.
    """

    out_dir: str
    files: dict[str, str] = field(default_factory=dict)
    group_stats: GroupStats | None = None
    detection: DetectionStats | None = None
    person_stats: GroupStats | None = None
    markdown: str = ""
    html: str | None = None


def format_with_ci(
    value: float, lo: float | None = None, hi: float | None = None, digits: int = 3
) -> str:
    """``"0.912 [0.880, 0.940]"``; empty string for NaN.

    Parameters
    ----------
    value, lo, hi : float
        Estimate and interval bounds.
    digits : int, optional
        Decimals.

    Returns
    -------
    str

    Examples
    --------
    >>> format_with_ci(0.91234, 0.88, 0.94)
    '0.912 [0.880, 0.940]'
    """
    if value is None or not np.isfinite(value):
        return ""
    s = f"{value:.{digits}f}"
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (index left out).

    Parameters
    ----------
    df : pandas.DataFrame

    Returns
    -------
    str

    Examples
    --------
    >>> print(markdown_table(pd.DataFrame({"a": [1], "b": ["x"]})))
    | a | b |
    |---|---|
    | 1 | x |
    """

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return ""
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _summary_table(table: pd.DataFrame, by: Sequence[str], figures: Sequence[str]) -> pd.DataFrame:
    out = pd.DataFrame({"group": [group_label(r, by) for _, r in table.iterrows()]})
    out["grouping"] = table["grouping"].to_numpy()
    out["count"] = table["count"].to_numpy()
    for f in figures:
        if f not in table.columns:
            continue
        lo = table.get(f"{f}_lo", pd.Series([None] * len(table)))
        hi = table.get(f"{f}_hi", pd.Series([None] * len(table)))
        out[f] = [
            format_with_ci(
                float(v), None if pd.isna(a) else float(a), None if pd.isna(b) else float(b)
            )
            for v, a, b in zip(pd.to_numeric(table[f], errors="coerce"), lo, hi)
        ]
    return out


def _disparity_view(disp: pd.DataFrame) -> pd.DataFrame:
    d = disp.reset_index()
    return d[
        ["grouping", "figure", "n_groups", "min", "max", "difference", "ratio", "argmin", "argmax"]
    ]


class _Page:
    """Blocks rendered to both Markdown and HTML."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[tuple[str, Any]] = []

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, df: pd.DataFrame) -> None:
        self.blocks.append(("table", df))

    def img(self, rel: str, alt: str) -> None:
        self.blocks.append(("img", (rel, alt)))

    def links(self, items: Sequence[tuple[str, str]]) -> None:
        self.blocks.append(("links", list(items)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, val in self.blocks:
            if kind == "h2":
                out += [f"## {val}", ""]
            elif kind == "p":
                out += [val, ""]
            elif kind == "table":
                out += [markdown_table(val), ""]
            elif kind == "img":
                out += [f"![{val[1]}]({val[0]})", ""]
            elif kind == "links":
                out += [f"- [{text}]({rel})" for text, rel in val] + [""]
        return "\n".join(out)

    def html(self) -> str:
        esc = _html.escape
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8">',
            f"<title>{esc(self.title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
            "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#444}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, val in self.blocks:
            if kind == "h2":
                out.append(f"<h2>{esc(val)}</h2>")
            elif kind == "p":
                out.append(f"<p>{esc(val)}</p>")
            elif kind == "table":
                out.append(
                    val.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
                )
            elif kind == "img" and val[0].endswith(".pdf"):
                out.append(
                    f'<figure><a href="{esc(val[0])}">{esc(val[0])}</a>'
                    f"<figcaption>{esc(val[1])}</figcaption></figure>"
                )
            elif kind == "img":
                out.append(
                    f'<figure><img src="{esc(val[0])}" alt="{esc(val[1])}">'
                    f"<figcaption>{esc(val[1])}</figcaption></figure>"
                )
            elif kind == "links":
                out.append(
                    "<ul>"
                    + "".join(f'<li><a href="{esc(r)}">{esc(t)}</a></li>' for t, r in val)
                    + "</ul>"
                )
        out.append("</body></html>")
        return "\n".join(out)


def _has_detections(analyzer: Any, boxes: str, logits: str, table: str) -> bool:
    if analyzer.store is None:
        return False
    variables = getattr(analyzer, "variables", {})
    if boxes not in variables or logits not in variables:
        return False
    try:
        analyzer.store.read_table(table)
    except (KeyError, FileNotFoundError, LookupError, ValueError):
        return False
    return True


def _gallery_paths(
    analyzer: Any, column: str, image_root: str | None, n: int, seed: int
) -> dict[str, list[str]]:
    coords = analyzer.coords
    if "path" in coords.columns:
        paths = coords["path"].astype(str)
    elif image_root is not None and "file_name" in coords.columns:
        paths = coords["file_name"].astype(str).map(lambda f: os.path.join(image_root, f))
    else:
        return {}
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for value, idx in coords.groupby(column, sort=True).indices.items():
        picks = rng.permutation(idx)[: 3 * n]
        files = [paths.iloc[i] for i in picks if os.path.exists(paths.iloc[i])][:n]
        if files:
            out[f"{column}={value}"] = files
    return out


def write_fairness_report(
    analyzer: Any,
    by: Sequence[str] | str,
    out_dir: str | os.PathLike,
    *,
    variable: str | None = None,
    pool: str | None = "mean",
    layer: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    min_count: int = 20,
    detection: bool | None = None,
    iou: float = 0.5,
    score_threshold: float = 0.0,
    persons_table: str = "persons",
    projections: Sequence[str] = ("pca",),
    gallery: bool = True,
    image_root: str | None = None,
    html: bool = True,
    person_embeddings: bool = True,
    fmt: str = "png",
    dpi: int = 150,
    **options: Any,
) -> FairnessReport:
    """Compute the fairness statistics of an analyzer and write the report.

    Parameters
    ----------
    analyzer : embstore.EmbeddingAnalyzer
        The (possibly selected) analyzer.
    by : str or sequence of str
        Grouping coordinates, e.g. ``["skin", "lighting"]``.
    out_dir : str or os.PathLike
        Output folder (created).
    variable, pool, layer : optional
        Embeddings analysed (see ``EmbeddingAnalyzer.group_stats``).
    n_boot, seed, alpha, min_count : optional
        Bootstrap replicates, seed, interval level and minimum group size.
    detection : bool, optional
        Run the detection statistics; by default when the store has
        ``pred_boxes``, ``pred_logits`` and a ``persons_table``.
    iou, score_threshold : float, optional
        Matching parameters (see :mod:`embstore.fairness.detection`).
    persons_table : str, optional
        Store table of person annotations.
    projections : sequence of str, optional
        2-D projections to draw (``"pca"``, ``"tsne"``, ``"umap"``); a
        projection whose package is missing is skipped with a warning.
    gallery : bool, optional
        Draw example images per group of the first ``by`` coordinate, when
        the rows have a ``path`` coordinate (or ``file_name`` and
        ``image_root``).
    image_root : str, optional
        Folder that ``file_name`` coordinates are relative to.
    html : bool, optional
        Also write ``report.html``.
    person_embeddings : bool, optional
        With detections, also analyse the matched query embedding of each
        detected person by the person's labels (``person_group_stats.csv``).
    fmt : {"png", "svg", "pdf"}, optional
        File format of the figures (PNG by default).
    dpi : int, optional
        Resolution of PNG figures (default 150).
    **options
        Other keywords of :func:`~embstore.fairness.stats.group_statistics`.

    Returns
    -------
    FairnessReport

    Raises
    ------
    ValidationError
        If ``by`` is empty.
    """
    variable = resolve_variable(analyzer, variable)
    from ..errors import EmbstoreError
    from . import plots

    by = [by] if isinstance(by, str) else list(by)
    if not by:
        raise ValidationError("by is empty; name at least one coordinate, e.g. by=['skin'].")
    if fmt not in plots.FORMATS:
        raise ValidationError(f"fmt={fmt!r} is not a figure format; use one of {plots.FORMATS}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = FairnessReport(out_dir=str(out))
    files = rep.files

    def csv(name: str, df: pd.DataFrame, index: bool = False) -> str:
        path = str(out / name)
        df.to_csv(path, index=index)
        files[name] = path
        return name

    def bar_figures(
        page: _Page,
        table: pd.DataFrame,
        figures: Sequence[tuple[str, float | None]],
        what: str,
        unit: str,
    ) -> None:
        for fig_name, ref in figures:
            rel = f"bars_{fig_name}.{fmt}"
            files[f"bars_{fig_name}"] = plots.plot_group_bars(
                table, fig_name, out / rel, by=by, reference=ref, dpi=dpi
            )
            page.img(
                rel,
                f"{fig_name} {what} with {100 * (1 - alpha):.0f}% bootstrap intervals; "
                f"n= {unit} per group",
            )

    # ---------------------------------------------------------- embeddings
    gs = analyzer.fairness_stats(
        variable,
        by,
        pool,
        layer,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        min_count=min_count,
        **options,
    )
    rep.group_stats = gs
    csv("group_stats.csv", gs.table)
    csv("group_disparity.csv", _disparity_view(gs.disparity))
    csv("probe.csv", gs.probe.reset_index())
    page = _page_header(analyzer, by, variable, pool, n_boot, alpha, min_count)
    page.h2("Embedding geometry by group")
    page.p(
        "Figures per group with bootstrap intervals; p-values from energy-distance permutation "
        "tests of each group against the rest (p_holm: Holm-adjusted within a grouping). "
        f"Groups with fewer than {min_count} rows have empty figures; {gs.n_excluded} rows with an "
        "unknown label (e.g. skin 0 or 'na') are left out."
    )
    page.table(
        _summary_table(
            gs.table,
            by,
            [
                "dist_to_others",
                "centroid_norm",
                "dispersion",
                "homophily_ratio",
                "probe_recall",
                "p_value",
                "p_holm",
            ],
        )
    )
    page.h2("Disparities (embedding figures)")
    page.table(_disparity_view(gs.disparity))
    page.h2("Linear probe")
    page.p(
        "Cross-validated accuracy of predicting the group from the embedding, vs the majority baseline."
    )
    page.table(gs.probe.reset_index())
    bar_figures(page, gs.table, EMBEDDING_BARS, "per group (bars)", "rows")
    for gname, D in gs.distances.items():
        safe = gname.replace("*", "_x_")
        csv(f"distances_{safe}.csv", D.to_pandas(), index=True)
        rel = f"heatmap_{safe}.{fmt}"
        files[f"heatmap_{safe}"] = plots.plot_distance_heatmap(D, out / rel, dpi=dpi)
        page.img(
            rel, f"centroid distances {gname} ({D.sizes[D.dims[0]]} groups; n= rows per group)"
        )
    if projections:
        X, labels = analyzer.matrix(variable, pool=pool, layer=layer)
        groups = labels[by[0]].to_numpy()
        for method in projections:
            rel = f"projection_{method}.{fmt}"
            try:
                files[f"projection_{method}"] = plots.plot_projection(
                    X,
                    [f"{by[0]}={g}" for g in groups],
                    out / rel,
                    method=method,
                    seed=seed,
                    dpi=dpi,
                )
                counts = pd.Series(groups).value_counts().sort_index()
                page.img(
                    rel,
                    f"{method} projection by {by[0]}; n= "
                    + ", ".join(f"{by[0]}={g}: {int(c)}" for g, c in counts.items()),
                )
            except (EmbstoreError, ImportError) as exc:
                logger.warning("projection %s skipped: %s", method, exc)

    # ----------------------------------------------------------- detection
    if detection is None:
        detection = _has_detections(analyzer, "pred_boxes", "pred_logits", persons_table)
    if detection:
        persons = analyzer.person_detections(
            iou, score_threshold=score_threshold, table=persons_table
        )
        det = analyzer.detection_stats(
            by, iou, n_boot=n_boot, seed=seed, alpha=alpha, min_count=min_count, persons=persons
        )
        rep.detection = det
        csv("persons.csv", persons)
        csv("detection.csv", det.table)
        csv("detection_disparity.csv", _disparity_view(det.disparity))
        page.h2("Person detection by group")
        page.p(
            f"{len(persons)} annotated people matched to person-class predictions "
            f"(greedy by score, IoU >= {iou}, score >= {score_threshold}); recall_avg averages recall "
            f"over IoU 0.50:0.95. {det.n_excluded} people with an unknown label are left out."
        )
        page.table(_summary_table(det.table, by, ["recall", "recall_avg", "mean_score"]))
        page.h2("Disparities (detection)")
        page.table(_disparity_view(det.disparity))
        bar_figures(page, det.table, DETECTION_BARS, "per group", "people")
        if person_embeddings and int(persons["detected"].sum()) >= 2 * min_count:
            try:
                pgs = analyzer.fairness_stats(
                    variable,
                    by,
                    None,
                    layer,
                    persons=persons,
                    n_boot=n_boot,
                    seed=seed,
                    alpha=alpha,
                    min_count=min_count,
                    **options,
                )
            except EmbstoreError as exc:
                logger.warning("person-level embedding statistics skipped: %s", exc)
            else:
                rep.person_stats = pgs
                csv("person_group_stats.csv", pgs.table)
                page.h2("Embeddings of detected people")
                page.p(
                    "The same figures on the embedding of the query matched to each detected person, "
                    "grouped by the person's own labels."
                )
                page.table(
                    _summary_table(
                        pgs.table,
                        by,
                        ["dist_to_others", "homophily_ratio", "probe_recall", "p_value"],
                    )
                )
                rel = f"bars_person_dist_to_others.{fmt}"
                files["bars_person_dist_to_others"] = plots.plot_group_bars(
                    pgs.table,
                    "dist_to_others",
                    out / rel,
                    by=by,
                    title="dist_to_others (detected people)",
                    dpi=dpi,
                )
                page.img(rel, "dist_to_others of detected people")

    # ------------------------------------------------------------- gallery
    if gallery:
        paths = _gallery_paths(analyzer, by[0], image_root, 6, seed)
        if paths:
            rel = f"gallery.{fmt}"
            files["gallery"] = plots.plot_gallery(paths, out / rel, dpi=dpi)
            page.h2("Example images")
            page.img(rel, "examples per group")

    page.h2("Files")
    page.links([(name, name) for name in sorted(files) if name.endswith(".csv")])
    rep.markdown = str(out / "report.md")
    Path(rep.markdown).write_text(page.markdown(), encoding="utf-8")
    files["report.md"] = rep.markdown
    if html:
        rep.html = str(out / "report.html")
        Path(rep.html).write_text(page.html(), encoding="utf-8")
        files["report.html"] = rep.html
    return rep


def _page_header(
    analyzer: Any,
    by: Sequence[str],
    variable: str,
    pool: Any,
    n_boot: int,
    alpha: float,
    min_count: int,
) -> _Page:
    page = _Page("Fairness report")
    store = analyzer.store
    where = str(store.path) if store is not None else "(no store)"
    page.p(
        f"Store: {where}; {len(analyzer.coords)} {getattr(analyzer, 'row_dim', 'row')} rows; "
        f"variable {variable!r}, pooling {pool!r}; groups by {', '.join(by)} and their intersections; "
        f"{n_boot} bootstrap replicates, {100 * (1 - alpha):.0f}% intervals, min_count={min_count}."
    )
    return page
