"""
Fairness report of a synthetic FACET-like store
===============================================

Builds a store with planted effects (skin tone 2's embeddings shifted, skin
tone 3's people missed 40 % of the time), then writes the fairness report:
CSV tables, 150 dpi PNG figures and ``report.md`` / ``report.html``. Runs in
well under a minute.

Usage::

    python examples/fairness_report.py [--out DIR] [--n-images 200]

The report stays in ``--out`` (default: ``$EMBSTORE_EXAMPLE_OUT`` or
``./embstore-fairness``) so that the path printed at the end can be opened.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from embstore import EmbeddingAnalyzer
from embstore.fairness import make_synthetic_facet, write_synthetic_store
from embstore.fairness.report import write_fairness_report


def build_report(out: Path, n_images: int = 200, n_boot: int = 200, seed: int = 0):
    """Create the synthetic store under ``out`` and write the report into ``out/report``."""
    data = make_synthetic_facet(
        n_images,
        skins=(1, 2, 3, 4),
        shift_group=2,
        shift=1.0,
        miss_group=3,
        miss_rate=0.4,
        seed=seed,
    )
    store_path = out / "facet_synthetic.zarr"
    write_synthetic_store(data, store_path, image_dir=out / "images", overwrite=True)
    analyzer = EmbeddingAnalyzer(str(store_path))
    report = write_fairness_report(
        analyzer,
        ["skin", "lighting"],
        out / "report",
        n_boot=n_boot,
        n_perm=99,
        min_count=15,
        seed=seed,
    )
    return data, report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Fairness report of a synthetic FACET-like store.")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: $EMBSTORE_EXAMPLE_OUT or ./embstore-fairness)",
    )
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args(argv)
    out = Path(args.out or os.environ.get("EMBSTORE_EXAMPLE_OUT") or "embstore-fairness")
    out.mkdir(parents=True, exist_ok=True)
    data, report = build_report(out, args.n_images, args.n_boot)
    det = report.detection.table
    skin = det[det["grouping"] == "skin"].set_index("skin")
    emb = report.group_stats.table
    emb_skin = emb[emb["grouping"] == "skin"].set_index("skin")
    print(
        "planted: skin 2 shifted by",
        data.truth["shift"],
        "; skin 3 missed at",
        data.truth["miss_rate"],
    )
    print("recall by skin tone:")
    for s, row in skin.iterrows():
        print(
            f"  skin={s}: {row['recall']:.3f} [{row['recall_lo']:.3f}, {row['recall_hi']:.3f}]"
            f"  (planted {data.expected_recall(int(s)):.2f})"
        )
    d = report.detection.disparity.loc[("skin", "recall")]
    print(f"recall disparity: difference {d['difference']:.3f}, ratio {d['ratio']:.3f}")
    print("distance of each skin group's centroid to the others':")
    for s, row in emb_skin.iterrows():
        print(f"  skin={s}: {row['dist_to_others']:.3f}  p={row['p_value']:.3f}")
    print(f"report: {report.html or report.markdown} ({len(report.files)} files)")
    _show(report, ["bars_recall", "heatmap_skin_x_lighting"])
    return 0


def _show(report, names) -> None:
    """Display some of the report's figures (the docs gallery picks them up)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from PIL import Image

    for name in names:
        with Image.open(report.files[name]) as im:
            fig = plt.figure(figsize=(im.width / 150, im.height / 150), dpi=150)
            ax = fig.add_axes((0, 0, 1, 1))
            ax.imshow(im.convert("RGB"))
            ax.axis("off")


if __name__ == "__main__":
    raise SystemExit(main())
