"""Extraction framework: HookExtractor, device resolution, the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from embstore import Store  # noqa: E402
from embstore.errors import (  # noqa: E402
    DeviceUnavailableError,
    StoreError,
    ValidationError,
)
from extractors.base import HookExtractor, autocast_context, check_variables, to_numpy  # noqa: E402
from extractors.datasets import ImageRecord, folder_dataset, list_dataset  # noqa: E402
from extractors.device import data_parallel, resolve_device, resolve_devices  # noqa: E402
from extractors.pipeline import ExtractionSummary, run_extraction  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: much faster than two on a shared, loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyNet(torch.nn.Module):
    """conv -> relu -> pool -> (flatten) -> linear; the conv also returns a tuple."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.act = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.head = torch.nn.Linear(16, 3)
        self.calls = 0
        self.rows = 0

    def forward(self, x: Any) -> Any:
        self.calls += 1
        self.rows += x.shape[0]
        f = self.pool(self.act(self.conv(x)))
        return self.head(f.flatten(1))


class Resize16:
    """Picklable preprocess: PIL -> [3, 16, 16] float tensor."""

    def __call__(self, img: Any) -> Any:
        arr = np.asarray(img.resize((16, 16)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def make_extractor(model: TinyNet | None = None) -> HookExtractor:
    return HookExtractor(
        model or TinyNet(),
        {"pooled": "pool", "logits": lambda m, x, y: y},
        dims={"pooled": ("channel", "y", "x"), "logits": ("class",)},
        dtypes={"pooled": "float32", "logits": "float32"},
        preprocess=Resize16(),
    )


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "photos"
    d.mkdir()
    from PIL import Image

    for i in range(11):
        h, w = 20 + i, 30 - i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            d / f"img_{i:03d}.png"
        )
    return d


def expected_outputs(model: TinyNet, folder: Path) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Direct forward pass per image, no hooks."""
    from PIL import Image

    pre = Resize16()
    out = {}
    for p in sorted(folder.glob("*.png")):
        x = pre(Image.open(p).convert("RGB"))[None]
        with torch.no_grad():
            pooled = model.pool(model.act(model.conv(x)))
            logits = model.head(pooled.flatten(1))
        out[int(p.stem.split("_")[1])] = (pooled[0].numpy(), logits[0].numpy())
    return out


# --------------------------------------------------------------- HookExtractor
def test_hooks_by_name_and_callable_equal_direct_forward() -> None:
    model = TinyNet()
    ex = make_extractor(model)
    x = torch.rand(5, 3, 12, 12)
    out = ex.extract(x)
    with torch.no_grad():
        pooled = model.pool(model.act(model.conv(x)))
        logits = model.head(pooled.flatten(1))
    np.testing.assert_allclose(out["pooled"], pooled.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-6)
    assert out["pooled"].shape == (5, 4, 2, 2)


def test_hooks_removed_after_use_and_after_errors() -> None:
    model = TinyNet()
    ex = make_extractor(model)
    with ex.hooks():
        assert len(model.pool._forward_hooks) == 1
    ex.extract(torch.rand(2, 3, 8, 8))
    assert all(len(m._forward_hooks) == 0 for m in model.modules())
    with pytest.raises(RuntimeError):
        ex.extract(torch.rand(2, 5, 8, 8))  # wrong channel count fails inside forward
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_unknown_module_and_bad_sources() -> None:
    with pytest.raises(ValidationError, match="'pol'.*close matches.*'pool'"):
        HookExtractor(TinyNet(), {"x": "pol"})
    with pytest.raises(ValidationError, match="empty"):
        HookExtractor(TinyNet(), {})
    with pytest.raises(ValidationError, match="callable"):
        HookExtractor(TinyNet(), {"x": 3})  # type: ignore[dict-item]


def test_tuple_outputs_and_automatic_dims() -> None:
    class TupleOut(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return self.lin(x), x.sum()

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = TupleOut()

        def forward(self, x: Any) -> Any:
            return self.inner(x)[0] * 2

    m = Wrap()
    ex = HookExtractor(m, {"first": "inner"})
    with pytest.raises(ValidationError, match="dims"):
        _ = ex.variables
    out = ex.extract(torch.ones(4, 3))
    np.testing.assert_allclose(out["first"] * 2, m(torch.ones(4, 3)).detach().numpy(), rtol=1e-6)
    assert ex.variables == {"first": ("first_dim0",)}


def test_extract_images_converts_and_preprocesses() -> None:
    from PIL import Image

    ex = make_extractor()
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    gray = Image.fromarray(rgb[:, :, 0], mode="L")
    out = ex.extract_images([rgb, gray])
    pre = Resize16()
    batch = torch.stack([pre(Image.fromarray(rgb)), pre(gray.convert("RGB"))])
    ref = ex.extract(batch)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-6)
    assert ex.to("cpu") is ex and ex.device.type == "cpu"
    with pytest.raises(ValidationError, match="preprocess"):
        HookExtractor(TinyNet(), {"p": "pool"}).extract_images([rgb])


def test_module_not_called_is_an_error() -> None:
    model = TinyNet()
    model.unused = torch.nn.Linear(2, 2)
    ex = HookExtractor(model, {"u": "unused"})
    with pytest.raises(ValidationError, match="did not run"):
        ex.extract(torch.rand(1, 3, 8, 8))


def test_helpers() -> None:
    assert check_variables(["a", "b", "a"], ["a", "b", "c"]) == ["a", "b"]
    with pytest.raises(KeyError, match="choose from"):
        check_variables(["z"], ["a"])
    assert to_numpy([torch.ones(2, dtype=torch.bfloat16)])[0].dtype == np.float32
    x = torch.rand(3, 3)
    with autocast_context(torch.device("cpu"), "bf16"):
        y = x @ x
    assert y.dtype == torch.bfloat16
    np.testing.assert_allclose(y.float().numpy(), (x @ x).numpy(), rtol=3e-2, atol=3e-2)
    with pytest.raises(ValidationError, match="autocast"):
        autocast_context(torch.device("cpu"), "int8")


# ---------------------------------------------------------------------- device
def test_resolve_cpu_and_bad_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_devices(torch.device("cpu")) == [torch.device("cpu")]
    auto = resolve_devices("auto")
    assert auto[0].type == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(ValidationError, match="'tpu'"):
        resolve_device("tpu")
    lin = torch.nn.Linear(2, 2)
    assert data_parallel(lin, [torch.device("cpu")]) is lin


@pytest.mark.skipif(HAS_CUDA, reason="checks the error raised without CUDA")
def test_cuda_requested_but_absent_is_an_error() -> None:
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(DeviceUnavailableError, match="--device cpu"):
            resolve_device(spec)
    with pytest.raises(DeviceUnavailableError):
        HookExtractor(TinyNet(), {"p": "pool"}, device="cuda")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")
def test_cuda_index_out_of_range() -> None:
    with pytest.raises(DeviceUnavailableError, match="visible"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


# -------------------------------------------------------------------- pipeline
def read_store(path: Path) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    st = Store.open(path)
    pooled = st.pooled.values
    logits = st.logits.values
    return {int(i): (pooled[k], logits[k]) for k, i in enumerate(st.ids)}


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(a[k][0], b[k][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a[k][1], b[k][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_pipeline_rows_equal_direct_forward(tmp_path: Path, photos: Path, num_workers: int) -> None:
    ex = make_extractor()
    out = tmp_path / "run.zarr"
    with Store.create(out, variables=ex.variables, dtypes=ex.dtypes) as st:
        summary = run_extraction(
            ex, folder_dataset(photos), st, batch_size=4, num_workers=num_workers
        )
    assert isinstance(summary, ExtractionSummary)
    assert summary.written == 11 and summary.skipped == 0 and summary.images_per_s > 0
    assert_same(read_store(out), expected_outputs(ex.model, photos))
    coords = Store.open(out).coords
    assert coords.loc[3, "file_name"] == "img_003.png"
    assert (coords.loc[3, "height"], coords.loc[3, "width"]) == (23, 27)


def test_bad_images_skipped_and_recorded(tmp_path: Path, photos: Path) -> None:
    (photos / "img_100.png").write_bytes(b"")  # empty
    (photos / "img_101.png").write_bytes(b"not a png")  # corrupt
    good = (photos / "img_000.png").read_bytes()
    (photos / "img_102.png").write_bytes(good[: len(good) // 2])  # truncated
    ex = make_extractor()
    out = tmp_path / "run.zarr"
    with Store.create(out, variables=ex.variables, dtypes=ex.dtypes) as st:
        summary = run_extraction(ex, folder_dataset(photos), st, batch_size=3)
    assert summary.written == 11 and summary.skipped == 3
    assert summary.skipped_reasons == {
        "empty file": 1,
        "not an image": 1,
        "truncated or corrupt": 1,
    }
    st = Store.open(out)
    skipped = st.skipped.set_index("id")["reason"]
    assert sorted(skipped.index.tolist()) == [100, 101, 102]
    assert skipped[100].startswith("empty file")
    assert len(st) == 11 and 100 not in st
    # a re-run does not retry recorded failures ...
    with Store.open(out, mode="a") as st:
        again = run_extraction(ex, folder_dataset(photos), st, batch_size=3)
    assert (again.written, again.already_done, again.previously_skipped) == (0, 11, 3)
    # ... unless asked to
    with Store.open(out, mode="a") as st:
        retry = run_extraction(ex, folder_dataset(photos), st, batch_size=3, retry_skipped=True)
    assert retry.skipped == 3 and retry.written == 0


def test_missing_file_in_list_is_skipped(tmp_path: Path, photos: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"{photos / 'img_001.png'}\n{tmp_path / 'gone.png'}\n{photos / 'img_002.png'}\n")
    ex = make_extractor()
    with Store.create(tmp_path / "r.zarr", variables=ex.variables, dtypes=ex.dtypes) as st:
        summary = run_extraction(ex, list_dataset(lst), st, batch_size=2)
        assert summary.skipped_reasons == {"missing file": 1}
        assert summary.skipped_examples[0][0] == 1
    assert Store.open(tmp_path / "r.zarr").ids.tolist() == [0, 2]


def test_resume_extracts_only_missing(tmp_path: Path, photos: Path) -> None:
    model = TinyNet()
    ex = make_extractor(model)
    out = tmp_path / "run.zarr"
    with Store.create(out, variables=ex.variables, dtypes=ex.dtypes) as st:
        first = run_extraction(ex, folder_dataset(photos).filter(limit=4), st, batch_size=3)
    assert first.written == 4 and model.rows == 4
    model.rows = 0
    with Store.open(out, mode="a") as st:
        second = run_extraction(ex, folder_dataset(photos), st, batch_size=3)
    assert second.already_done == 4 and second.written == 7
    assert model.rows == 7  # only the missing images went through the model
    assert_same(read_store(out), expected_outputs(model, photos))


class FailingStore:
    """Wraps a real store; ``append`` fails on the n-th call (fault injection)."""

    def __init__(self, store: Store, fail_at: int) -> None:
        self._store = store
        self._n = 0
        self._fail_at = fail_at

    def append(self, *args: Any, **kwargs: Any) -> None:
        self._n += 1
        if self._n == self._fail_at:
            raise StoreError("disk full (injected)")
        self._store.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __len__(self) -> int:
        return len(self._store)


def test_writer_error_propagates_and_keeps_committed_rows(tmp_path: Path, photos: Path) -> None:
    ex = make_extractor()
    out = tmp_path / "run.zarr"
    with Store.create(out, variables=ex.variables, dtypes=ex.dtypes) as st:
        with pytest.raises(StoreError, match="injected"):
            run_extraction(ex, folder_dataset(photos), FailingStore(st, fail_at=2), batch_size=2)
    st = Store.open(out)
    assert st.ids.tolist() == [0, 1]  # the batch before the failure is committed
    expected = expected_outputs(ex.model, photos)
    assert_same(read_store(out), {k: expected[k] for k in (0, 1)})


class InterruptAt(HookExtractor):
    """Raises KeyboardInterrupt (as Ctrl-C would) on the n-th batch."""

    def __init__(self, *args: Any, at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at = at
        self.n = 0

    def extract_batch(self, batch: Any) -> dict[str, Any]:
        self.n += 1
        if self.n == self.at:
            raise KeyboardInterrupt
        return super().extract_batch(batch)


def test_interrupt_leaves_valid_store_and_resume_completes(tmp_path: Path, photos: Path) -> None:
    model = TinyNet()
    base = make_extractor(model)
    ex = InterruptAt(
        model, base.outputs, dims=base.variables, dtypes=base.dtypes, preprocess=Resize16(), at=3
    )
    out = tmp_path / "run.zarr"
    with Store.create(out, variables=ex.variables, dtypes=ex.dtypes) as st:
        with pytest.raises(KeyboardInterrupt) as info:
            run_extraction(ex, folder_dataset(photos), st, batch_size=2, queue_size=1)
    assert info.value.summary.interrupted and info.value.summary.written == 4
    st = Store.open(out)
    assert st.ids.tolist() == [0, 1, 2, 3]  # batches computed before Ctrl-C are committed
    with Store.open(out, mode="a") as st:
        rest = run_extraction(base, folder_dataset(photos), st, batch_size=2)
    assert rest.written == 7 and rest.already_done == 4
    assert_same(read_store(out), expected_outputs(model, photos))


def test_write_false_and_validation(tmp_path: Path, photos: Path) -> None:
    ex = make_extractor()
    summary = run_extraction(ex, folder_dataset(photos), None, batch_size=4, write=False)
    assert summary.written == 11
    with pytest.raises(ValidationError, match="store is None"):
        run_extraction(ex, folder_dataset(photos), None)
    with pytest.raises(ValidationError, match="batch_size"):
        run_extraction(ex, folder_dataset(photos), None, batch_size=0, write=False)
    dup = [ImageRecord(1, str(photos / "img_001.png")), ImageRecord(1, str(photos / "img_002.png"))]
    with pytest.raises(ValidationError, match="occurs twice"):
        run_extraction(ex, dup, None, batch_size=1, write=False)
    with pytest.raises(ValidationError, match="extract_batch"):
        run_extraction(object(), dup, None, write=False)
