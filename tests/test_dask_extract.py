"""Parallel extraction on a Dask LocalCluster of 2 processes.

The distributed store must equal, row for row, a single-process run over the
same inputs (ids, coordinates, values, skipped images); a worker killed in the
middle of its range has the range retried without lost or duplicated rows; a
run with a failed task resumes in a second run.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embstore.distributed.regions import RegionPlan, ids_fingerprint, plan_regions
from embstore.errors import ValidationError

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")
skdata = pytest.importorskip("skimage.data")

CHUNK = 2
ROWS_PER_TASK = 4
BATCH = 2
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "colorwheel"]


# ------------------------------------------------------------------ region plans (no cluster)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), cr=st.integers(1, 64), mult=st.integers(1, 8))
def test_plan_regions_cover_every_item_once(n, cr, mult):
    plan = plan_regions(n, cr, cr * mult)
    regions, slices = plan.regions, plan.item_slices
    assert plan.n_rows % cr == 0 and plan.n_rows >= n > plan.n_rows - cr
    assert regions[0][0] == 0 and regions[-1][1] == plan.n_rows
    for (_a, b), (c, _d) in itertools.pairwise(regions):
        assert b == c  # contiguous, disjoint
    for (a, b), (ia, ib) in zip(regions, slices):
        assert a % cr == 0 and (b % cr == 0 or b == plan.n_rows)  # chunk-aligned
        assert ia == a and ib - ia <= b - a  # item p lands on row p, inside its region
    assert sum(ib - ia for ia, ib in slices) == n
    assert RegionPlan.from_json(plan.to_json()) == plan


def test_plan_validation_and_fingerprint():
    with pytest.raises(ValidationError, match="multiple of chunk_rows"):
        plan_regions(10, 4, 6)
    with pytest.raises(ValidationError, match="nothing to extract"):
        plan_regions(0, 4, 4)
    assert plan_regions(1000, 16, n_workers=2).rows_per_task == 128
    assert ids_fingerprint([1, 2, 3]) != ids_fingerprint([1, 3, 2])


# ------------------------------------------------------------------ fixtures
def tiny_face(device="cpu"):
    """A small iresnet (one block per stage, 32-d) with seeded weights."""
    from extractors.face import FaceExtractor
    from extractors.face.iresnet import IResNet

    torch.manual_seed(0)
    model = IResNet((1, 1, 1, 1), num_features=32)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return FaceExtractor(model, device=device, dtype="float32")


class _Faulty:
    """Delegates to an extractor; on the first attempt only (a marker file), kills
    its own process (SIGKILL) or raises once ``after`` rows of the store are committed."""

    def __init__(self, inner, marker, store, after, how, ids):
        self._inner, self._marker, self._store = inner, marker, store
        self._after, self._how, self._ids = after, how, set(ids)
        self._calls = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def extract_batch(self, batch):
        self._calls += 1
        if self._calls == 2 and not os.path.exists(self._marker):
            from embstore import Store

            deadline = time.time() + 60
            while time.time() < deadline:  # wait until this task's first rows are committed
                with Store.open(self._store) as s:
                    if len(self._ids & set(s.ids.tolist())) >= self._after:
                        break
                time.sleep(0.05)
            open(self._marker, "w").close()
            if self._how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("injected failure")
        return self._inner.extract_batch(batch)


class FaultyFactory:
    """Picklable factory: the task of region ``region_ids`` fails once."""

    def __init__(self, marker, store, region_ids, how):
        self.marker, self.store, self.region_ids, self.how = marker, store, list(region_ids), how

    def __call__(self, device="cpu"):
        return _FaultySwitch(tiny_face(device), self)


class _FaultySwitch:
    """Fails only inside the task that extracts one of the chosen ids."""

    def __init__(self, inner, spec):
        self._inner, self._spec = inner, spec
        self._faulty = _Faulty(inner, spec.marker, spec.store, CHUNK, spec.how, spec.region_ids)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def extract_batch(self, batch):
        return (
            self._faulty.extract_batch(batch)
            if _current_task_has(self._spec.region_ids)
            else self._inner.extract_batch(batch)
        )


def _current_task_has(ids):
    """True inside the Dask task whose key names the region holding ``ids``."""
    from distributed import get_worker

    try:
        key = get_worker().get_current_task()
    except ValueError:
        return False
    return isinstance(key, str) and key.split("-")[-3] == str(min(ids))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    paths = []
    for i, name in enumerate(PHOTOS):
        im = Image.fromarray(getattr(skdata, name)())
        im.thumbnail((160, 160))  # small files: decoding is not what is tested
        p = root / f"{i:02d}_{name}.png"
        im.save(p)
        paths.append(str(p))
    bad = root / "05b_truncated.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths.insert(6, str(bad))  # an unreadable image in the middle of region 1
    return paths


@pytest.fixture(scope="module")
def records(photos):
    from extractors.datasets import ImageRecord

    return [ImageRecord(i, p, {"path": os.path.basename(p)}) for i, p in enumerate(photos)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, records):
    from embstore import Store
    from extractors.pipeline import run_extraction

    torch.set_num_threads(1)  # like a Dask worker (OMP_NUM_THREADS=1)
    path = str(tmp_path_factory.mktemp("ref") / "ref.zarr")
    fx = tiny_face("cpu")
    with Store.create(
        path,
        row_dim="image",
        id_name="image_id",
        variables=fx.variables,
        dtypes=fx.dtypes,
        chunk_rows=CHUNK,
    ) as st:
        run_extraction(fx, records, st, batch_size=BATCH, progress=False)
    return path


@pytest.fixture(scope="module")
def client():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    import dask

    from embstore.distributed.cluster import FAST_ALLOC_ENV

    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in FAST_ALLOC_ENV.items()}
    with dask.config.set(env):  # as extract_distributed starts its own clusters
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


def assert_same_store(path, ref_path):
    from embstore import Store

    with Store.open(path) as a, Store.open(ref_path) as b:
        assert a.ids.tolist() == b.ids.tolist()
        assert len(a) == len(b)
        ca, cb = a.coords, b.coords
        assert sorted(ca.columns) == sorted(cb.columns)
        for col in cb.columns:
            assert ca[col].tolist() == cb[col].tolist(), col
        np.testing.assert_array_equal(a.embedding.values, b.embedding.values)
        sa = a.skipped.sort_values("id")["id"].astype(str).tolist()
        sb = b.skipped.sort_values("id")["id"].astype(str).tolist()
        assert sa == sb and len(sa) == 1


def _run(records, out, client, factory=tiny_face, **kw):
    from extractors.distributed import extract_distributed

    return extract_distributed(
        factory,
        records,
        out,
        client=client,
        chunk_rows=CHUNK,
        rows_per_task=ROWS_PER_TASK,
        batch_size=BATCH,
        device="cpu",
        **kw,
    )


# ------------------------------------------------------------------ tests
def test_two_workers_equal_single_process(tmp_path, records, reference, client):
    out = str(tmp_path / "dist.zarr")
    s = _run(records, out, client)
    assert s.n_tasks == 2 and s.n_workers == 2
    assert s.written == len(records) - 1 and s.skipped == 1 and not s.failed
    assert [r.region for r in s.regions] == [(0, 4), (4, 8)]
    assert_same_store(out, reference)
    from embstore import Store

    with Store.open(out) as st:
        assert st.attrs["distributed"]["rows_per_task"] == ROWS_PER_TASK
        assert st.attrs["runs"][-1]["scheduler"] == "dask"
    # a second run has nothing to do (resume skips complete regions)
    again = _run(records, out, client)
    assert again.written == 0 and again.n_tasks == 0
    assert again.already_done == len(records)  # every region counted as done
    assert_same_store(out, reference)
    # another input list is refused
    with pytest.raises(ValidationError, match="another input list"):
        _run(records[::-1], out, client)


def test_killed_worker_range_is_retried(tmp_path, records, reference, client):
    out = str(tmp_path / "killed.zarr")
    victim = [r.image_id for r in records[4:8]]
    factory = FaultyFactory(str(tmp_path / "killed.marker"), out, victim, "kill")
    s = _run(records, out, client, factory=factory)
    assert os.path.exists(tmp_path / "killed.marker")  # the worker really died mid-range
    region = next(r for r in s.regions if r.region == (4, 8))
    assert region.already_done >= CHUNK  # committed rows of the dead attempt were kept ...
    assert (
        region.written == 3 - region.already_done
    )  # ... and only the rest redone (1 of 4 is unreadable)
    assert s.written + sum(r.already_done for r in s.regions) == len(records) - 1
    assert_same_store(out, reference)


def test_failed_task_resumes_in_next_run(tmp_path, records, reference, client):
    out = str(tmp_path / "resume.zarr")
    victim = [r.image_id for r in records[4:8]]
    factory = FaultyFactory(str(tmp_path / "fail.marker"), out, victim, "raise")
    from embstore.errors import DistributedTaskError

    with pytest.raises(DistributedTaskError, match=r"region \(4, 8\).*re-run"):
        _run(records, out, client, factory=factory, retries=0)
    from embstore import Store

    with Store.open(out) as st:
        n_first = len(st)
        assert len(set(st.ids.tolist()) & set(victim)) == CHUNK  # committed before the failure
    s = _run(records, out, client)
    assert s.n_tasks == 1 and s.regions[0].region == (4, 8)
    assert s.written == len(records) - 1 - n_first
    assert_same_store(out, reference)


@pytest.mark.slow  # ~19 s of CPU (15 s wall) over the cluster's processes
def test_cli_helpers_run_on_the_given_cluster(tmp_path, records, reference, client):
    import argparse

    from embstore.cli import main
    from extractors.distributed import add_dask_arguments, run_with_scheduler

    p = argparse.ArgumentParser()
    add_dask_arguments(p)
    args = p.parse_args(
        ["--scheduler", "dask", "--address", client.scheduler.address, "--rows-per-task", "4"]
    )
    out = str(tmp_path / "cli.zarr")
    s = run_with_scheduler(
        args,
        lambda: pytest.fail("ran locally"),
        extractor_factory=tiny_face,
        dataset=lambda: records,
        out=out,
        chunk_rows=CHUNK,
        batch_size=BATCH,
        device="cpu",
    )
    assert s.n_tasks == 2 and s.skipped_examples[0][0] == 6
    assert_same_store(out, reference)
    assert run_with_scheduler(p.parse_args([]), lambda: "local") == "local"
    # the extraction commands carry the options; cluster options without --scheduler dask: exit code 2
    for cmd in (
        ["face", "--weights", "w.pth", "--input", str(tmp_path), "--out", out],
        ["detr", "--checkpoint", "c.pth", "--images", str(tmp_path), "--out", out],
    ):
        assert main(["extract", *cmd, "--workers", "2"]) == 2
