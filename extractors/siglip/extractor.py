"""SiglipExtractor: open_clip image embeddings of COCO-panoptic segments.

Any open_clip model name works (built-in such as ``ViT-B-16-SigLIP``, or a
config registered with :func:`open_clip.add_model_config`); weights come from
a local file. The image preprocessing is the model's own: open_clip's
registered pretrained configuration for that model name (for
``ViT-B-16-SigLIP``: bicubic "squash" resize to 224, mean = std = 0.5). Note
that ``open_clip.create_model_and_transforms(name, pretrained=FILE)`` alone
would fall back to the OpenAI CLIP mean/std for a file path; this module looks
the model's configuration up so a local SigLIP checkpoint is preprocessed as
SigLIP was trained.

Row ids are int64 ``instance_id = image_id * 2**24 + segment_id``
(:func:`extractors.siglip.panoptic.instance_id`); ``image_id`` and
``segment_id`` are stored as coordinates too, so
``store.sel(image_id=397133)`` works.

Examples
--------
With a real checkpoint: ``SiglipExtractor("ViT-B-16-SigLIP",
pretrained="open_clip_pytorch_model.bin")``. Here a tiny random-weight
model over two real photos with two segments each:

>>> from extractors.siglip import SiglipExtractor
>>> from extractors.siglip.testing import (register_tiny_config, save_random_weights,
...                                        write_tiny_panoptic)
>>> name = register_tiny_config()
>>> ex = SiglipExtractor(name, pretrained=save_random_weights(out_dir + "/w.pt", name))
>>> coco = write_tiny_panoptic(out_dir + "/coco")
>>> summary = ex.extract_panoptic(coco, split="val", out=out_dir + "/val.zarr")
>>> summary.written, summary.skipped
(4, 0)
>>> from embstore import Store
>>> coords = Store.open(out_dir + "/val.zarr").coords
>>> coords[["image_id", "segment_id", "category"]].head(2).values.tolist()
[[1000, 300, 'person'], [1000, 2, 'sky']]
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embstore._optional import attempt_import
from embstore.errors import CheckpointError, ValidationError
from extractors.base import HookExtractor, to_numpy
from extractors.protocol import Batch
from extractors.provenance import file_sha256

from ..summary import ExtractionSummary
from .crops import COORD_NAMES, crop_records
from .panoptic import PanopticDataset

__all__ = [
    "COORD_NAMES",
    "SiglipExtractor",
    "extract_panoptic",
    "file_sha256",
    "open_or_create_store",
    "panoptic_attrs",
    "resolve_model_name",
    "resolve_preprocess_cfg",
]

logger = logging.getLogger(__name__)


def resolve_model_name(model_name: str) -> str:
    """Normalise user spellings of an open_clip model name.

    ``"openclip:timm/ViT-B-16-SigLIP"`` (the users' embedder spec) and
    ``"timm/ViT-B-16-SigLIP"`` become ``"ViT-B-16-SigLIP"``.

    Parameters
    ----------
    model_name : str
        The name as given.

    Returns
    -------
    str
        A name known to :func:`open_clip.list_models` (or a ``local-dir:`` spec).

    Raises
    ------
    ValidationError
        For ``hf-hub:`` names (they download) or unknown names.

    Examples
    --------
    >>> resolve_model_name("openclip:timm/ViT-B-16-SigLIP")
    'ViT-B-16-SigLIP'
    """
    open_clip = attempt_import("open_clip")
    name = str(model_name).strip()
    if name.startswith("openclip:"):
        name = name[len("openclip:") :]
    if name.startswith("local-dir:"):
        return name
    if name.startswith("hf-hub:"):
        raise ValidationError(
            f"model {model_name!r} would be downloaded from the Hugging Face hub; download its "
            "weights yourself and pass the architecture name plus the file, e.g. "
            "model_name='ViT-B-16-SigLIP', pretrained='open_clip_pytorch_model.bin'"
        )
    known = open_clip.list_models()
    if name in known:
        return name
    tail = name.split("/", 1)[-1]
    if tail in known:
        return tail
    if name.replace("/", "-") in known:
        return name.replace("/", "-")
    close = [m for m in known if tail.lower() in m.lower()][:8]
    raise ValidationError(
        f"unknown open_clip model {model_name!r}; close names: {close or 'none'}. Register a custom "
        "config first with open_clip.add_model_config(path_to_json)"
    )


def resolve_preprocess_cfg(model_name: str, **overrides: Any) -> dict[str, Any]:
    """The model's own preprocessing settings (mean, std, interpolation, resize mode).

    Taken from open_clip's registered pretrained configuration of the model
    (the first tag; all tags of a model share preprocessing), else open_clip's
    defaults; then ``overrides`` that are not ``None``.

    Parameters
    ----------
    model_name : str
        Resolved open_clip model name.
    **overrides
        ``mean``, ``std``, ``interpolation``, ``resize_mode``.

    Returns
    -------
    dict
        Keys among ``mean, std, interpolation, resize_mode`` to pass as
        ``force_preprocess_cfg`` (empty: open_clip defaults).

    Examples
    --------
    >>> cfg = resolve_preprocess_cfg("ViT-B-16-SigLIP")
    >>> cfg["mean"], cfg["resize_mode"]
    ((0.5, 0.5, 0.5), 'squash')
    """
    open_clip = attempt_import("open_clip")
    cfg: dict[str, Any] = {}
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tags:
        tag_cfg = open_clip.get_pretrained_cfg(model_name, tags[0])
        for key in ("mean", "std", "interpolation", "resize_mode"):
            if key in tag_cfg:
                cfg[key] = (
                    tuple(tag_cfg[key]) if isinstance(tag_cfg[key], (list, tuple)) else tag_cfg[key]
                )
    for key, value in overrides.items():
        if value is not None:
            cfg[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    return cfg


def _visual_output(model: Any, inputs: Any, outputs: Any) -> Any:
    """Hook source: the visual tower's output (``encode_image`` before normalising)."""
    return outputs


class SiglipExtractor(HookExtractor):
    """Image embeddings from an open_clip model (SigLIP by default).

    Runs the model's visual tower (what ``encode_image`` runs) and
    L2-normalises, so the vectors equal ``model.encode_image(x, normalize=True)``.

    Parameters
    ----------
    model_name : str, default "ViT-B-16-SigLIP"
        Any open_clip model name (see :func:`resolve_model_name`).
    pretrained : path, optional
        Local weights file (open_clip state dict, ``.bin``/``.pt``/``.safetensors``).
        ``None`` builds random weights (logged as a warning; for tests only).
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``; several GPUs are used together.
    autocast : {"auto", None, "fp16", "bf16"}, default "auto"
        Mixed precision; ``"auto"`` = fp16 on CUDA, off on the CPU.
    dtype : str, default "float16"
        Storage dtype of ``embedding`` (the old cache stored fp16).
    image_mean, image_std, interpolation, resize_mode : optional
        Override the model's preprocessing (see :func:`resolve_preprocess_cfg`).

    Attributes
    ----------
    clip_model : torch.nn.Module
        The whole open_clip model.
    transform : callable
        The model's eval preprocessing (PIL image -> tensor).
    embed_dim : int
        Embedding size.

    Raises
    ------
    CheckpointError
        If the weights file is missing or does not match the model.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-16-SigLIP",
        pretrained: str | os.PathLike | None = None,
        device: str = "cpu",
        autocast: str | None = "auto",
        dtype: str = "float16",
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        interpolation: str | None = None,
        resize_mode: str | None = None,
    ) -> None:
        open_clip = attempt_import("open_clip")
        name = resolve_model_name(model_name)
        weights = None
        if pretrained is not None:
            weights = os.fspath(pretrained)
            if not os.path.isfile(weights):
                raise CheckpointError(
                    f"weights file {weights!r} does not exist; pass the path of the model's open_clip "
                    "checkpoint (e.g. open_clip_pytorch_model.bin); nothing is downloaded"
                )
        else:
            logger.warning("no weights given for %s: the model has RANDOM weights", name)
        pp = resolve_preprocess_cfg(
            name,
            mean=image_mean,
            std=image_std,
            interpolation=interpolation,
            resize_mode=resize_mode,
        )
        try:
            clip_model, _, transform = open_clip.create_model_and_transforms(
                name,
                pretrained=weights,
                device="cpu",
                image_mean=pp.get("mean"),
                image_std=pp.get("std"),
                image_interpolation=pp.get("interpolation"),
                image_resize_mode=pp.get("resize_mode"),
                pretrained_image=False,
                pretrained_text=False,
                weights_only=True,
            )
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            raise CheckpointError(
                f"could not load open_clip model {name!r} with weights {weights!r}: {exc}. "
                "Check that the weights belong to this architecture (--model)"
            ) from exc
        self.model_name = name
        self.pretrained = weights
        self.clip_model = clip_model.eval()
        self.transform = transform
        self.preprocess_cfg = dict(getattr(clip_model.visual, "preprocess_cfg", {}) or {})
        self.dtype = str(np.dtype(dtype))
        super().__init__(
            clip_model.visual,
            {"embedding": _visual_output},
            device=device,
            dims={"embedding": ("hidden",)},
            dtypes={"embedding": self.dtype},
            preprocess=transform,
            autocast=None,
        )
        if autocast == "auto":
            autocast = "fp16" if self.device.type == "cuda" else None
        self.autocast = autocast
        cfg = open_clip.get_model_config(name) or {}
        self.embed_dim = int(cfg.get("embed_dim") or getattr(clip_model, "embed_dim", 0) or 0)

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable description of the model and preprocessing.

        Returns
        -------
        dict
            ``model``, ``pretrained``, ``preprocess`` (open_clip's config).
        """
        pp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.preprocess_cfg.items()}
        return {
            "model": f"open_clip:{self.model_name}",
            "pretrained": self.pretrained,
            "pretrained_sha256": file_sha256(self.pretrained) if self.pretrained else None,
            "preprocess": pp,
            "default_variable": "embedding",
        }

    def extract_batch(self, batch: Any) -> Batch:
        """Encode a preprocessed batch; L2-normalised float32 device tensors.

        Parameters
        ----------
        batch : torch.Tensor
            ``[B, 3, S, S]`` from :attr:`transform`.

        Returns
        -------
        extractors.protocol.Batch
            ``{"embedding": [B, embed_dim]}``.
        """
        torch = attempt_import("torch")
        out = super().extract_batch(batch)
        return out.with_data(
            embedding=torch.nn.functional.normalize(out["embedding"].float(), dim=-1)
        )

    def extract_images(self, images: Sequence[Any]) -> dict[str, np.ndarray]:
        """Embed a list of images (e.g. masked crops).

        Parameters
        ----------
        images : sequence of PIL.Image.Image or numpy.ndarray
            RGB images (uint8 arrays ``H x W x 3`` or PIL).

        Returns
        -------
        dict of numpy.ndarray
            ``{"embedding": float32 [B, embed_dim]}``, L2-normalised.

        Raises
        ------
        ValidationError
            If ``images`` is empty.
        """
        torch = attempt_import("torch")
        from extractors.images import to_rgb

        if len(images) == 0:
            raise ValidationError("extract_images got an empty list; pass at least one image")
        batch = torch.stack([self.transform(to_rgb(im)) for im in images])
        return {k: to_numpy(v) for k, v in self.extract_batch(batch).items()}

    def extract_texts(self, texts: Sequence[str] | str, batch_size: int = 256) -> np.ndarray:
        """Embed texts with the model's text tower (for text-to-image search).

        Tokenises with the model's own open_clip tokenizer
        (``open_clip.get_tokenizer(model_name)``) and returns
        ``encode_text(tokens)`` L2-normalised, in float32.

        Parameters
        ----------
        texts : str or sequence of str
            Queries such as ``"a person in dim light"``.
        batch_size : int, default 256
            Texts encoded at once.

        Returns
        -------
        numpy.ndarray
            ``float32 [n, embed_dim]``, unit rows.

        Raises
        ------
        ValidationError
            If ``texts`` is empty.
        CheckpointError
            If the model's tokenizer cannot be built (e.g. a Hugging Face
            tokenizer that is not in the local cache).
        """
        torch = attempt_import("torch")
        texts = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        if not texts:
            raise ValidationError("extract_texts got no texts; pass at least one string")
        tokenizer = self.__dict__.get("_tokenizer")
        if tokenizer is None:
            open_clip = attempt_import("open_clip")
            try:
                tokenizer = open_clip.get_tokenizer(self.model_name)
            except (ImportError, OSError, ValueError, RuntimeError) as exc:
                raise CheckpointError(
                    f"could not build the tokenizer of {self.model_name!r} ({exc}); SigLIP tokenizers need "
                    "the transformers package and their files in the local Hugging Face cache "
                    "(nothing is downloaded)"
                ) from exc
            self._tokenizer = tokenizer
        model = self.clip_model
        device = self.device
        if not self.__dict__.get("_text_on_device"):
            model.to(device)  # the text tower follows the visual tower's device
            self._text_on_device = True
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), int(batch_size)):
                tokens = tokenizer(texts[start : start + int(batch_size)]).to(device)
                emb = model.encode_text(tokens).float()
                out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @classmethod
    def from_provenance(
        cls, attrs: dict[str, Any], weights: str | os.PathLike | None = None, device: str = "cpu"
    ) -> SiglipExtractor:
        """Rebuild the extractor recorded in a store's attributes.

        Parameters
        ----------
        attrs : dict
            ``Store.attrs`` of a store written by this extractor (``model``,
            ``pretrained``, ``pretrained_sha256``, ``preprocess``).
        weights : path, optional
            Use this weights file instead of the recorded path (its SHA-256
            must still match the recorded one).
        device : str, default "cpu"
            Device of the rebuilt model.

        Returns
        -------
        SiglipExtractor

        Raises
        ------
        CheckpointError
            If the store does not record an open_clip model, the weights file
            is missing (the message names it and its SHA-256), or its hash
            differs from the recorded one.
        """
        model = str(attrs.get("model") or "")
        if not model.startswith("open_clip:"):
            raise CheckpointError(
                f"the store records model {model or None!r}, not an open_clip model; pass extractor="
            )
        name = model.split(":", 1)[1]
        path = os.fspath(weights) if weights is not None else attrs.get("pretrained")
        sha = attrs.get("pretrained_sha256")
        if not path:
            raise CheckpointError(
                f"the store records no weights file for {name!r} (random weights?); pass weights=PATH "
                "or extractor="
            )
        if not os.path.isfile(path):
            raise CheckpointError(
                f"weights file {path!r} recorded for {name!r} (sha256 {sha}) was not found; copy it there "
                "or pass weights=PATH to its new location"
            )
        if sha and file_sha256(path) != sha:
            raise CheckpointError(
                f"weights file {path!r} has a different sha256 than the one recorded for the store "
                f"({sha}); pass the checkpoint the store was extracted with"
            )
        pp = dict(attrs.get("preprocess") or {})
        return cls(
            name,
            pretrained=path,
            device=device,
            image_mean=pp.get("mean"),
            image_std=pp.get("std"),
            interpolation=pp.get("interpolation"),
            resize_mode=pp.get("resize_mode"),
        )

    def extract_panoptic(
        self,
        data_path: str | os.PathLike,
        split: str = "val",
        out: Any = None,
        bg_alpha: float = 0.3,
        pad_ratio: float = 0.1,
        fill: Sequence[int] = (0, 0, 0),
        batch_size: int = 8,
        num_workers: int = 0,
        limit: int | None = None,
        progress: bool | None = None,
        retry_skipped: bool = False,
        overwrite: bool = False,
    ) -> ExtractionSummary:
        """Embed every segment of a COCO-panoptic split into a store (resumable).

        See :func:`extract_panoptic` (the same call with this extractor).

        Parameters
        ----------
        data_path : path
            COCO root.
        split : str, default "val"
            Split name.
        out : path or embstore.Store
            Output store; created (``row_dim="instance"``) if absent, resumed otherwise.
        bg_alpha, pad_ratio, fill
            Crop rule (:func:`extractors.siglip.panoptic.masked_crop`).
        batch_size : int, default 8
            Crops per forward pass.
        num_workers : int, default 0
            DataLoader workers that decode images and cut crops.
        limit : int, optional
            Only the first ``limit`` images.
        progress : bool, optional
            tqdm bar; default: only on a TTY.
        retry_skipped : bool, default False
            Try again segments an earlier run recorded as skipped.
        overwrite : bool, default False
            Replace an existing store at ``out`` instead of resuming it.

        Returns
        -------
        extractors.summary.ExtractionSummary
            ``written``, ``already_done``, ``skipped``, ``seconds``, ``store`` ...
        """
        return extract_panoptic(
            self,
            data_path,
            split=split,
            out=out,
            bg_alpha=bg_alpha,
            pad_ratio=pad_ratio,
            fill=fill,
            batch_size=batch_size,
            num_workers=num_workers,
            limit=limit,
            progress=progress,
            retry_skipped=retry_skipped,
            overwrite=overwrite,
        )


def open_or_create_store(
    out: Any,
    extractor: SiglipExtractor,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Any:
    """Open ``out`` for appending, or create it with the instance schema.

    Parameters
    ----------
    out : path or embstore.Store
        Store (returned as is) or path.
    extractor : SiglipExtractor
        Provides variables/dtypes/provenance.
    attrs : dict, optional
        Extra attributes for a new store.
    overwrite : bool, default False
        Replace an existing store at ``out`` instead of opening it.

    Returns
    -------
    embstore.Store
        Open for appending.

    Raises
    ------
    ValidationError
        If an existing store has another row dimension or embedding size.
    """
    if out is None:
        raise ValidationError("out is required: pass a store path such as 'coco_val_siglip.zarr'")
    if not isinstance(out, (str, os.PathLike)):
        return out
    from ..runlog import open_run_store

    return open_run_store(
        out,
        extractor,
        attrs={**extractor.provenance(), **(attrs or {})},
        overwrite=overwrite,
        row_dim="instance",
        id_name="instance_id",
        hint="resume needs a SigLIP instance store with the same variables - choose another --out",
    )


def extract_panoptic(
    extractor: SiglipExtractor,
    data_path: str | os.PathLike,
    split: str = "val",
    out: Any = None,
    bg_alpha: float = 0.3,
    pad_ratio: float = 0.1,
    fill: Sequence[int] = (0, 0, 0),
    batch_size: int = 8,
    num_workers: int = 0,
    limit: int | None = None,
    progress: bool | None = None,
    retry_skipped: bool = False,
    overwrite: bool = False,
) -> ExtractionSummary:
    """Embed every segment of a COCO-panoptic split into a store (resumable).

    For each segment: masked, padded crop
    (:func:`~extractors.siglip.panoptic.masked_crop`), the model's
    preprocessing, the visual tower, L2 normalisation. Rows go to a store with
    ``row_dim="instance"``, id ``instance_id = image_id * 2**24 + segment_id``
    and coordinates :data:`COORD_NAMES` (bbox is the JSON's COCO
    ``[x, y, w, h]``). Segments already in the store are not recomputed
    (images whose segments are all done are not even read). Unreadable images
    and empty masks are recorded with ``store.record_skipped``.

    Parameters
    ----------
    extractor : SiglipExtractor
        The model.
    data_path : path
        COCO root (:class:`~extractors.siglip.panoptic.PanopticDataset`).
    split : str, default "val"
        Split name.
    out : path or embstore.Store
        Output store.
    bg_alpha : float, default 0.3
        Weight of the original background outside the mask.
    pad_ratio : float, default 0.1
        Box padding per side, as a fraction of the box width/height.
    fill : sequence of 3 int, default (0, 0, 0)
        Background fill colour.
    batch_size : int, default 8
        Crops per forward pass (crops of several images are batched together).
    num_workers : int, default 0
        DataLoader workers (image decoding and cropping).
    limit : int, optional
        Only the first ``limit`` images of the JSON.
    progress : bool, optional
        Show a tqdm bar; default: only when stderr is a TTY.
    retry_skipped : bool, default False
        Try again segments an earlier run recorded as skipped (unreadable
        image, empty mask); by default they are not retried.
    overwrite : bool, default False
        Replace an existing store at ``out`` instead of resuming it.

    Returns
    -------
    extractors.summary.ExtractionSummary
        ``written``, ``already_done``, ``skipped``, ``previously_skipped``,
        ``seconds``, ``images_per_s`` (instances/s), ``store`` (path). The
        old dict access (``summary["written"]``) still works, with a
        ``FutureWarning``.

    Raises
    ------
    ValidationError
        For a bad ``batch_size``/``bg_alpha``/``pad_ratio``/``fill``.
    DatasetError
        If the dataset layout is not found.
    """
    import datetime as _dt

    from ..pipeline import run_extraction
    from ..runlog import run_and_record

    if int(batch_size) < 1:
        raise ValidationError(f"batch_size must be >= 1, got {batch_size!r}")
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    dataset = PanopticDataset(data_path, split=split)
    records = crop_records(dataset, limit, bg_alpha, pad_ratio, fill)
    st = open_or_create_store(
        out,
        extractor,
        attrs=panoptic_attrs(data_path, split, bg_alpha, pad_ratio, fill),
        overwrite=overwrite,
    )
    run_kwargs: dict[str, Any] = {
        "batch_size": int(batch_size),
        "num_workers": int(num_workers),
        "retry_skipped": retry_skipped,
        "progress": progress,
    }
    if isinstance(out, (str, os.PathLike)):
        summary = run_and_record(extractor, records, st, started=started, **run_kwargs)
        summary.store = os.fspath(out)
    else:
        summary = run_extraction(extractor, records, st, **run_kwargs)
        summary.store = getattr(st, "path", None)
    summary.seconds = time.perf_counter() - t0  # dataset reading included, as before
    summary.images_per_s = summary.written / summary.seconds if summary.seconds > 0 else 0.0
    return summary


def panoptic_attrs(
    data_path: str | os.PathLike,
    split: str,
    bg_alpha: float,
    pad_ratio: float,
    fill: Sequence[int],
) -> dict[str, Any]:
    """Store attributes of a panoptic run: dataset, split and crop rule.

    Parameters
    ----------
    data_path, split, bg_alpha, pad_ratio, fill
        As in :func:`extract_panoptic`.

    Returns
    -------
    dict
        JSON-serialisable.

    Examples
    --------
    >>> panoptic_attrs("/data/coco", "val", 0.3, 0.1, (0, 0, 0))["fill"]
    [0, 0, 0]
    """
    return {
        "dataset": "coco_panoptic",
        "split": split,
        "data_path": os.fspath(data_path),
        "bg_alpha": float(bg_alpha),
        "pad_ratio": float(pad_ratio),
        "fill": [int(v) for v in fill],
    }
