"""The store-inspection CLI: ``embstore info`` and ``embstore select``."""

import numpy as np
import pytest

from embstore import Store
from embstore.cli import build_parser, main


@pytest.fixture()
def small_store(tmp_path):
    path = tmp_path / "cli.zarr"
    rng = np.random.default_rng(0)
    with Store.create(
        path,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden")},
    ) as st:
        st.append(
            ids=[10, 11, 12, 13],
            data={"query_embeddings": rng.normal(size=(4, 3, 8)).astype("float32")},
            coords={
                "skin": [1, 2, 1, 3],
                "lighting": ["well_lit", "dimly_lit", "dimly_lit", "well_lit"],
            },
        )
    return path


def test_info_lists_schema_and_coordinates(small_store, capsys):
    assert main(["info", str(small_store)]) == 0
    out = capsys.readouterr().out
    assert "rows       4 (image, id image_id)" in out
    assert "query_embeddings" in out and "query=3 x hidden=8" in out
    assert "1: 2, 2: 1, 3: 1" in out  # skin value counts


def test_select_ands_coordinates_and_ors_lists(small_store, capsys):
    assert main(["select", str(small_store), "skin=1,3", "lighting=dimly_lit"]) == 0
    out = capsys.readouterr().out
    assert "-> 1 of 4 rows" in out
    assert " 12 " in out and " 10 " not in out


def test_select_unknown_value_is_a_usage_error(small_store, capsys):
    assert main(["select", str(small_store), "skin=9"]) == 2
    err = capsys.readouterr().err
    assert "skin" in err and "9" in err


def test_select_unknown_coordinate_names_available_ones(small_store, capsys):
    assert main(["select", str(small_store), "tone=1"]) == 2
    err = capsys.readouterr().err
    assert "tone" in err and "lighting" in err and "skin" in err


def test_info_on_a_missing_path_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.zarr")]) == 2
    assert "nope.zarr" in capsys.readouterr().err


def test_parser_has_every_command_group():
    parser = build_parser()
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    commands = set(actions[0].choices)
    assert {"info", "select", "extract"} <= commands
