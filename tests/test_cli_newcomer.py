"""The command line as a newcomer meets it: one extract vocabulary, one-line
errors that name flags, quiet pipes, honest search and cluster output."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embstore
from embstore import Store
from embstore.cli import build_parser, main
from embstore.cli._runtime import cli_message, command_options

ROOT = Path(__file__).parent.parent
COMMON = {
    "--images",
    "--out",
    "--batch-size",
    "--num-workers",
    "--device",
    "--overwrite",
    "--progress",
    "--no-progress",
    "--retry-skipped",
    "--scheduler",
    "--workers",
    "--address",
}


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _subparser(*names):
    p = build_parser()
    for name in names:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


@pytest.fixture()
def int_store(tmp_path):
    path = tmp_path / "detr.zarr"
    rng = np.random.default_rng(0)
    with Store.create(
        path,
        row_dim="image",
        id_name="image_id",
        variables={"query_embeddings": ("query", "hidden")},
        attrs={"model_name": "detr"},
    ) as st:
        x = rng.normal(size=(40, 2, 8)).astype("float32")
        x[1] = x[0] + 1e-3  # one near-duplicate pair
        st.append(
            ids=np.arange(40),
            data={"query_embeddings": x},
            coords={
                "skin": rng.integers(1, 4, 40),
                "file_name": [f"img{i % 3}.png" for i in range(40)],
            },
        )
    return path


# ------------------------------------------------------------ extract vocabulary
@pytest.mark.parametrize(
    "model,alias", [("detr", "--coco_path"), ("face", "--input"), ("siglip", "--data-path")]
)
def test_every_extract_command_speaks_one_vocabulary(model, alias):
    p = _subparser("extract", model)
    options = {s for a in p._actions for s in a.option_strings}
    assert options >= COMMON, COMMON - options
    required = ["--weights", "w.pth"] if model != "detr" else ["--checkpoint", "c.pth"]
    args = p.parse_args([*required, alias, "photos/", "--out", "o.zarr", "--no-progress"])
    assert args.images == "photos/" and args.out == "o.zarr" and args.progress is False
    assert args.overwrite is False and args.retry_skipped is False and args.scheduler == "local"


def test_num_workers_default_is_the_cpu_count_capped():
    from extractors.cli_common import MAX_DEFAULT_WORKERS, num_workers

    args = _subparser("extract", "face").parse_args(
        ["--weights", "w", "--images", "d", "--out", "o"]
    )
    assert args.num_workers is None
    n = num_workers(args)
    assert 1 <= n <= min(len(os.sched_getaffinity(0)), MAX_DEFAULT_WORKERS)
    args = _subparser("extract", "face").parse_args(
        ["--weights", "w", "--images", "d", "--out", "o", "--num-workers", "0"]
    )
    assert num_workers(args) == 0


def test_bad_batch_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "extract",
                "face",
                "--weights",
                "w",
                "--images",
                "d",
                "--out",
                "o",
                "--batch-size",
                "0",
            ]
        )
    assert exc.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_siglip_without_weights_needs_random_weights(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["extract", "siglip", "--images", "coco", "--out", "o.zarr"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "--random-weights" in err


def test_device_cuda_without_gpu_is_an_error_before_loading(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    rc = main(
        [
            "extract",
            "detr",
            "--checkpoint",
            str(tmp_path / "missing.pth"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "o.zarr"),
            "--device",
            "cuda",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("embstore: error: DeviceUnavailableError") and "\n" not in err
    assert not (tmp_path / "o.zarr").exists()


# ------------------------------------------------------------ top level
def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"embstore {embstore.__version__}"


@pytest.mark.parametrize("command", [["select", "{store}", "skin=1,2,3"], ["info", "{store}"]])
def test_broken_pipe_ends_quietly(int_store, command):
    argv = [sys.executable, "-m", "embstore.cli", *[c.format(store=int_store) for c in command]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # the reader (`| head`) is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_bad_id_is_a_one_line_error(int_store, capsys):
    assert main(["search", str(int_store), "--ids", "sa_1", "-k", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--ids sa_1" in err and "integers" in err


def test_errors_name_cli_flags_not_python_arguments(int_store, capsys):
    pytest.importorskip("faiss")
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("faiss sees a GPU")
    assert main(["search", str(int_store), "--ids", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "DeviceUnavailableError" in err and "--device cpu" in err and "device='cpu'" not in err


def test_cli_message_rewrites_or_drops_python_advice():
    assert cli_message(
        "a exists; pass overwrite=True (--overwrite) to replace it", {"--overwrite"}
    ) == ("a exists; use --overwrite to replace it")
    assert (
        cli_message("bad file. If you trust it, pass weights_only=False.", {"--out"}) == "bad file."
    )
    assert (
        cli_message("not in the store; pass variable=...", {"--variable"})
        == "not in the store; use --variable"
    )
    p = build_parser()
    assert "--exact" in command_options(p, p.parse_args(["search", "s", "--ids", "1"]))


def test_dask_logs_follow_verbosity():
    code = (
        "from embstore.cli._runtime import configure_logging; import sys; configure_logging(int(sys.argv[1])); "
        "import distributed, logging; print(logging.getLogger('distributed').getEffectiveLevel())"
    )
    levels = [
        subprocess.run(
            [sys.executable, "-c", code, str(v)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        ).stdout.strip()
        for v in (0, 1)
    ]
    assert levels == ["30", "20"]


# ------------------------------------------------------------ search and cluster
def test_search_says_which_index_and_exact_forces_a_scan(int_store, capsys):
    pytest.importorskip("faiss")
    base = ["search", str(int_store), "--ids", "0", "-k", "2", "--device", "cpu"]
    assert main(base) == 0
    assert "with: exact scan" in capsys.readouterr().err
    assert main([*base, "--kind", "hnsw", "--save-index"]) == 0
    assert "hnsw index" in capsys.readouterr().err
    assert main(base) == 0  # the saved index answers a plain search, and says so
    assert "hnsw index" in capsys.readouterr().err
    assert main([*base, "--exact"]) == 0
    captured = capsys.readouterr()
    assert "with: exact scan" in captured.err
    assert " 1 " in captured.out  # the near-duplicate is the first neighbour
    assert main([*base, "--exact", "--kind", "flat"]) == 2


def test_cluster_leaves_the_store_alone_and_names_its_model(int_store, tmp_path, capsys):
    pytest.importorskip("faiss")
    from PIL import Image
    from skimage import data

    root = tmp_path / "photos"
    root.mkdir()
    for i, img in enumerate([data.astronaut(), data.coffee(), data.chelsea()]):
        Image.fromarray(img).save(root / f"img{i}.png")
    out = tmp_path / "labels"
    rc = main(
        [
            "cluster",
            str(int_store),
            "--threshold",
            "0.99",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--save-groups",
            "1",
            "--path-coord",
            "file_name",
            "--image-root",
            str(root),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "STEP" not in text and "fr_train" not in text and "detr" in text
    assert "store unchanged" in text
    assert sorted(p.name for p in out.glob("detr_clusters_*.npy"))
    with Store.open(int_store) as st:
        assert "cluster" not in st.coords
    grid = np.asarray(Image.open(out / "group_0000.png").convert("RGB"), dtype=float)
    assert grid.std() > 20  # real photos, not grey placeholders
    assert (
        main(
            ["cluster", str(int_store), "--threshold", "0.99", "--device", "cpu", "--write-labels"]
        )
        == 0
    )
    assert "written to coordinate 'cluster'" in capsys.readouterr().out
    with Store.open(int_store) as st:
        assert "cluster" in st.coords
