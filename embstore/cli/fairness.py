"""``embstore fairness STORE --by skin [--by lighting] --out DIR``.

Writes the fairness report of :func:`embstore.fairness.report.write_fairness_report`:
CSV tables, figures (150 dpi PNG, or ``--format svg|pdf``) and ``report.md`` / ``report.html``.
"""

from __future__ import annotations

import argparse

from ._common import add_group_stat_arguments, add_switch, group_stat_options, pool_option

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fairness`` subcommand.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    p = subparsers.add_parser(
        "fairness",
        help="group statistics, detection recall by group, plots and a report",
        description="Embedding-geometry statistics and person-detection recall per group "
        "(and intersections of groups), with bootstrap intervals, permutation tests, "
        "disparity summaries, plots, CSV tables and a Markdown/HTML report.",
    )
    add_group_stat_arguments(
        p, by_help="grouping coordinate; repeat for intersections (--by skin --by lighting)"
    )
    p.add_argument(
        "--variable",
        default=None,
        help="embedding variable (default: the store's default variable)",
    )
    p.add_argument("--layer", type=int, default=None, help="layer of a layered variable")
    p.add_argument(
        "--iou", type=float, default=0.5, help="IoU threshold of recall (default: %(default)s)"
    )
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.0,
        help="ignore person predictions scoring below (default: %(default)s)",
    )
    add_switch(
        p,
        "--detection",
        "--no-detection",
        dest="detection",
        help_on="require detection statistics (default: when the store has them)",
        help_off="skip detection statistics",
    )
    p.add_argument(
        "--projection",
        action="append",
        choices=("pca", "tsne", "umap"),
        default=None,
        help="2-D projection(s) to draw (default: pca)",
    )
    p.add_argument(
        "--image-root", default=None, help="folder that file_name coordinates are relative to"
    )
    p.add_argument("--no-gallery", action="store_true", help="skip the image gallery")
    p.add_argument("--no-html", action="store_true", help="write report.md only")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("png", "svg", "pdf"),
        default="png",
        help="file format of the figures (default: %(default)s)",
    )
    p.add_argument(
        "--dpi", type=int, default=150, help="resolution of PNG figures (default: %(default)s)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore fairness`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of the ``fairness`` subcommand.

    Returns
    -------
    int
        Exit code (0 on success).
    """
    from ..analysis import EmbeddingAnalyzer
    from ..fairness.report import write_fairness_report

    an = EmbeddingAnalyzer(args.store)
    rep = write_fairness_report(
        an,
        args.by,
        args.out,
        variable=args.variable,
        pool=pool_option(args),
        layer=args.layer,
        **group_stat_options(args),
        detection=args.detection,
        iou=args.iou,
        score_threshold=args.score_threshold,
        projections=tuple(args.projection or ("pca",)),
        gallery=not args.no_gallery,
        image_root=args.image_root,
        html=not args.no_html,
        fmt=args.fmt,
        dpi=args.dpi,
    )
    print(f"wrote {len(rep.files)} files to {rep.out_dir}")
    print(f"report: {rep.html or rep.markdown}")
    return 0
