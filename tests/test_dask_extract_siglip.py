"""``embstore extract siglip --scheduler dask``: panoptic crops on a LocalCluster of 2 processes.

SigLIP runs through the same extractor protocol as every other extractor, so
its crop records go to Dask region tasks like image files; the stored rows
(ids, coordinates, embeddings, skipped segments) must equal the
single-process run's.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")
pytest.importorskip("open_clip")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from extractors.siglip.testing import (
        register_tiny_config,
        save_random_weights,
        write_tiny_panoptic,
    )

    root = tmp_path_factory.mktemp("siglip_dask")
    coco = write_tiny_panoptic(root / "coco", n_images=4)
    os.remove(coco / "val2017" / "000000001002.jpg")  # its 2 segments are skipped
    name = register_tiny_config()
    weights = save_random_weights(root / "tiny.pt", name, seed=0)
    return root, coco, name, weights


@pytest.fixture(scope="module")
def client():
    import dask

    from embstore.distributed.cluster import FAST_ALLOC_ENV

    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in FAST_ALLOC_ENV.items()}
    with dask.config.set(env):
        cluster = distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            memory_limit="2GiB",
        )
    cl = distributed.Client(cluster)
    yield cl
    cl.close()
    cluster.close()


def _argv(coco, name, weights, out, *extra):
    return [
        "extract",
        "siglip",
        "--images",
        str(coco),
        "--model",
        name,
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_siglip_on_dask_equals_single_process(setup, client, capsys):
    from embstore import Store
    from embstore.cli import main
    from extractors.siglip.testing import register_tiny_config

    root, coco, name, weights = setup
    torch.set_num_threads(1)  # like a Dask worker (OMP_NUM_THREADS=1)
    local, dist = root / "local.zarr", root / "dist.zarr"
    assert main(_argv(coco, name, weights, local)) == 0
    client.run(register_tiny_config)  # the tiny open_clip config, on every worker
    argv = _argv(coco, name, weights, dist, "--scheduler", "dask", "--json")
    assert main([*argv, "--address", client.scheduler.address]) == 0
    printed = capsys.readouterr().out
    assert '"scheduler": "dask"' in printed and '"written": 6' in printed
    with Store.open(local) as a, Store.open(dist) as b:
        assert b.row_dim == "instance" and b.id_name == "instance_id"
        assert len(a) == 6 and a.ids.tolist() == b.ids.tolist()
        ca, cb = a.coords, b.coords
        assert sorted(ca.columns) == sorted(cb.columns)
        for col in ca.columns:
            assert ca[col].tolist() == cb[col].tolist(), col
        np.testing.assert_array_equal(a.read("embedding"), b.read("embedding"))
        assert b.dtypes["embedding"] == "float16"
        assert a.attrs["model"] == b.attrs["model"] == f"open_clip:{name}"
        assert b.attrs["bg_alpha"] == 0.3 and b.attrs["split"] == "val"
        sa = sorted(a.skipped["id"].astype(np.int64).tolist())
        sb = sorted(b.skipped["id"].astype(np.int64).tolist())
        assert sa == sb and len(sa) == 2
