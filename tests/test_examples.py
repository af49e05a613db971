"""Every script in examples/ runs to completion on bundled or synthetic data."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
# over ~15 s of CPU each (measured with their subprocess); still run by `make test`
SLOW = {
    "any_model.py",
    "demo.py",
    "detr_attention.py",
    "discovery.py",
    "extract_detr.py",
    "fairness_report.py",
    "siglip_panoptic.py",
}
PARAMS = [
    pytest.param(p, id=p.name, marks=[pytest.mark.slow] if p.name in SLOW else []) for p in EXAMPLES
]


@pytest.mark.parametrize("script", PARAMS)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", EMBSTORE_EXAMPLE_OUT=str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.strip(), f"{script.name} printed nothing"
    # a report whose path an example prints is still there to open
    for printed in re.findall(r"(\S+\.html)\b", result.stdout):
        assert (tmp_path / printed).is_file(), f"{script.name} printed {printed} but it is gone"
    if script.name == "demo.py":
        assert "What was built" in result.stdout and "Next, try:" in result.stdout
        assert result.stdout.count("\n  embstore ") == 3  # three next commands
        assert re.search(
            r"recall \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", result.stdout
        )  # numbers with CIs
