"""``embstore layers STORE --by skin --out DIR``: layer-wise group metrics.

Writes ``layer_profile.csv`` (the tidy table of
:func:`embstore.analysis.layers.layer_profile`), ``layer_profile.png``
(metric vs layer with intervals), ``cka.csv`` / ``cka.png`` (linear CKA
between layers) and ``layers.md`` (a Markdown summary).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._common import add_group_stat_arguments, group_stat_options, pool_option

__all__ = ["register", "run", "summary_markdown"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``layers`` subcommand.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The top-level subparsers of ``embstore``.
    """
    p = subparsers.add_parser(
        "layers",
        help="group metrics per layer (probe accuracy, centroid distance, energy test) and CKA",
        description="Layer-wise analysis of a layered variable (decoder_output): linear-probe "
        "accuracy, centroid distances and energy permutation tests per layer with bootstrap "
        "intervals, linear CKA between layers, plots and a Markdown summary.",
    )
    add_group_stat_arguments(p, by_help="grouping coordinate; repeat for several")
    p.add_argument(
        "--variable", default="decoder_output", help="layered variable (default: %(default)s)"
    )
    p.add_argument(
        "--metric",
        action="append",
        default=None,
        dest="metrics",
        help="metric to compute; repeat (default: probe_accuracy, centroid_distance, energy_p)",
    )
    p.add_argument("--no-cka", action="store_true", help="skip the CKA matrix between layers")
    p.set_defaults(func=run)


def summary_markdown(table, cka=None, *, store: str = "", by=(), variable: str = "") -> str:
    """Markdown summary of a layer profile (and CKA matrix).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`~embstore.analysis.layers.layer_profile`.
    cka : xarray.DataArray, optional
        Output of :func:`~embstore.analysis.layers.cka_matrix`.
    store, by, variable
        Shown in the header.

    Returns
    -------
    str
    """
    import numpy as np

    lines = [f"# Layer-wise analysis of `{variable}`", ""]
    if store:
        lines += [f"Store: `{store}`; groups: {', '.join(by)}.", ""]
    for metric, sub in table.groupby("metric", sort=False):
        lines += [f"## {metric}", ""]
        for (grouping, group), g in sub.groupby(["grouping", "group"], sort=False):
            g = g.dropna(subset=["value"])
            if not len(g):
                continue
            label = grouping if group == "all" else group
            pick = (
                g.loc[g["value"].idxmin()] if metric == "energy_p" else g.loc[g["value"].idxmax()]
            )
            word = "lowest" if metric == "energy_p" else "highest"
            ci = "" if np.isnan(pick["lo"]) else f" [{pick['lo']:.3f}, {pick['hi']:.3f}]"
            lines.append(
                f"- {label}: {word} at layer {int(pick['layer'])}: {pick['value']:.3g}{ci}"
            )
        lines += ["", "| layer | group | value | lo | hi |", "|---|---|---|---|---|"]
        for _, r in sub.iterrows():
            label = r["grouping"] if r["group"] == "all" else r["group"]
            lines.append(
                f"| {int(r['layer'])} | {label} | {r['value']:.4g} | {r['lo']:.4g} | {r['hi']:.4g} |"
            )
        lines.append("")
    lines += ["![metrics by layer](layer_profile.png)", ""]
    if cka is not None:
        lines += ["## Linear CKA between layers", "", "![CKA](cka.png)", ""]
        n = cka.shape[0]
        if n > 1:
            adj = [float(cka.values[i, i + 1]) for i in range(n - 1)]
            i = int(np.argmin(adj))
            lines.append(
                f"Largest change between consecutive layers: {int(cka['layer'][i])} -> "
                f"{int(cka['layer'][i + 1])} (CKA {adj[i]:.3f})."
            )
            lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``embstore layers`` with parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of the ``layers`` subcommand.

    Returns
    -------
    int
        Exit code (0 on success).
    """
    from ..analysis import EmbeddingAnalyzer
    from ..analysis.layers import cka_matrix, layer_profile, plot_cka_matrix, plot_layer_profile

    pool = pool_option(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    an = EmbeddingAnalyzer(args.store)
    metrics = args.metrics or ("probe_accuracy", "centroid_distance", "energy_p")
    table = layer_profile(
        an,
        args.variable,
        args.by,
        metrics,
        pool=pool,
        **group_stat_options(args),
    )
    table.to_csv(out / "layer_profile.csv", index=False)
    plot_layer_profile(
        table, out / "layer_profile.png", title=f"{args.variable} by {', '.join(args.by)}"
    )
    M = None
    if not args.no_cka:
        M = cka_matrix(an, args.variable, pool=pool)
        M.to_pandas().to_csv(out / "cka.csv")
        plot_cka_matrix(M, out / "cka.png")
    md = summary_markdown(table, M, store=str(args.store), by=args.by, variable=args.variable)
    (out / "layers.md").write_text(md)
    print(f"wrote {out / 'layer_profile.csv'}, {out / 'layer_profile.png'} and {out / 'layers.md'}")
    return 0
