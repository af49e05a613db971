"""Regenerate the figures shown in docs/fairness.rst (docs/_static/fairness/*.png).

Runs the example ``examples/fairness_report.py`` on its synthetic store and
copies a few of the PNGs it writes. Usage: ``python docs/make_fairness_figures.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURES = (
    "bars_recall.png",
    "bars_dist_to_others.png",
    "heatmap_skin.png",
    "projection_pca.png",
    "gallery.png",
)


def main() -> None:
    spec = importlib.util.spec_from_file_location(
        "fairness_example", HERE.parent / "examples" / "fairness_report.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    target = HERE / "_static" / "fairness"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _, report = example.build_report(Path(tmp))
        for name in FIGURES:
            shutil.copy(Path(report.out_dir) / name, target / name)
    print(f"wrote {len(FIGURES)} figures to {target}")


if __name__ == "__main__":
    main()
