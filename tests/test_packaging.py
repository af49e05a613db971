"""Packaging metadata: one version source, SPDX license, extras a newcomer needs."""

import pathlib
import tomllib

import embstore

ROOT = pathlib.Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_comes_from_the_package():
    project = PYPROJECT["project"]
    assert "version" in project["dynamic"] and "version" not in project
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "embstore.__version__"}
    assert embstore.__version__.count(".") == 2
    assert f"[{embstore.__version__}]" in (ROOT / "CHANGELOG.md").read_text()


def test_license_is_an_spdx_string_with_a_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_python_floor_matches_zarr3():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_extras_offer_umap_and_torch_as_a_range():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(req.startswith("umap-learn") for req in extras["viz"])
    torch_req = next(
        r for r in extras["extract"] if r.startswith("torch") and not r.startswith("torchvision")
    )
    assert "==" not in torch_req
    assert "torch==" in (ROOT / "Makefile").read_text()  # the exact pin for reproducible tests
    for name in ("pydata-sphinx-theme", "sphinx-argparse", "sphinx-gallery"):
        assert any(req.startswith(name) for req in extras["docs"])


def test_urls_and_classifiers():
    project = PYPROJECT["project"]
    assert {"Documentation", "Source"} <= set(project["urls"])
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: SPDX only
