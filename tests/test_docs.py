"""The documentation site: built once (without executing the gallery), then
checked like a newcomer would meet it: every guide page reachable from the
index, no page shadowed by one of Sphinx's own, one API page per object, a
CLI reference with every command and option, and no code cut off on the right
(headless Chromium, skipped where no browser is installed)."""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for _mod in ("sphinx", "pydata_sphinx_theme", "sphinxarg", "sphinx_gallery", "numpydoc"):
    pytest.importorskip(_mod)

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
SPHINX_OWN = ("search", "genindex", "py-modindex")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    env = dict(
        os.environ,
        MPLBACKEND="Agg",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-D",
            "plot_gallery=0",
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return out


def _text(path: Path) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")))
    return re.sub(r"\s+", " ", text)


def _guide_pages() -> list[str]:
    return sorted(
        p.stem
        for p in DOCS.glob("*.rst")
        if p.stem not in ("index", "api_tables", "sg_execution_times")
    )


def test_every_guide_page_is_reachable_from_the_index(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    wrapper = index[index.index('class="toctree-wrapper') :]
    linked = {m.split("#")[0][:-5] for m in re.findall(r'href="([^"]+\.html)(?:#[^"]*)?"', wrapper)}
    missing = [p for p in _guide_pages() if p not in linked]
    assert not missing, f"not in the index toctree: {missing}"
    assert "auto_examples/index" in linked


def test_no_page_is_shadowed_by_sphinx_own_pages(site):
    for name in SPHINX_OWN:
        assert not (DOCS / f"{name}.rst").exists(), (
            f"docs/{name}.rst collides with Sphinx's {name}.html"
        )
    assert "searchindex.js" in (site / "search.html").read_text(encoding="utf-8")
    similarity = _text(site / "similarity.html")
    assert "Search, near-duplicates and clustering" in similarity
    assert 'href="similarity.html"' in (site / "index.html").read_text(encoding="utf-8")


def test_api_reference_is_split_into_one_page_per_object(site):
    api = site / "api.html"
    pages = sorted((site / "generated").glob("*.html"))
    assert len(pages) >= 100
    assert api.stat().st_size < 400_000  # tables only, not every docstring on one page
    names = {p.stem for p in pages}
    assert {
        "embstore.Store",
        "embstore.EmbeddingAnalyzer",
        "embstore.search.knn_search",
        "embstore.fairness.group_statistics",
        "extractors.cli_common.add_extract_arguments",
    } <= names
    # internals are left out
    assert not [n for n in names if re.search(r"\.(commit|buffer|lock|backends)\b", n)]
    text = _text(api)
    for section in (
        "Store",
        "Selection",
        "Analyzer",
        "Search",
        "Fairness",
        "Extractors",
        "Command line",
    ):
        assert re.search(rf"\b{section}\b", text)
    # the analyzer's methods from all its mixins are on its one page
    analyzer = _text(site / "generated" / "embstore.EmbeddingAnalyzer.html")
    for method in (
        "pool",
        "matrix",
        "search",
        "cluster",
        "fairness_stats",
        "project",
        "load_embedding",
    ):
        assert re.search(rf"\b{method}\(", analyzer), method
    assert "pick_chunk_rows" not in text


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))


def test_cli_reference_has_every_command_and_option(site):
    from embstore.cli import build_parser

    page = _text(site / "cli_reference.html")
    checked = 0
    for path, parser in _commands(build_parser()):
        if path:
            assert re.search(rf"\b{re.escape(path[-1])}\b", page), path
            assert f"embstore {' '.join(path)}" in page, path  # its usage line
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            for option in action.option_strings:
                assert option in page, (path, option)
                checked += 1
    assert checked > 100


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.parametrize("page", ["index", "quickstart", "api", "cli_reference"])
def test_no_code_is_cut_off_in_a_browser(site, page, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1800",
        "--hide-scrollbars",
    ]
    url = (site / f"{page}.html").as_uri()
    shot = tmp_path / f"{page}.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000  # a rendered page, not a blank one
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    found = re.search(r'data-cutoff="(\d+)"', dom)
    assert found, "the page's cutoff check did not run"
    assert found.group(1) == "0", (
        f"{found.group(1)} code blocks or tables are cut off on {page}.html"
    )
