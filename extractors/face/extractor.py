"""FaceExtractor: ArcFace iresnet embeddings of face crops.

Preprocessing matches the users' ``01_extract.py``: RGB, ``Resize((112, 112))``
(PIL bilinear, as torchvision's ``Resize`` does on PIL images), ``ToTensor``,
``Normalize(0.5, 0.5)``, i.e. ``(x / 255 - 0.5) / 0.5``.

Examples
--------
>>> import numpy as np
>>> from extractors.face import FaceExtractor
>>> from extractors.face.iresnet import iresnet
>>> fx = FaceExtractor(iresnet("r18"))
>>> out = fx.extract_images([np.zeros((120, 100, 3), np.uint8)], l2_norm=True)
>>> out["embedding"].shape
(1, 512)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embstore._optional import attempt_import
from embstore.errors import CheckpointError, ValidationError
from extractors.base import HookExtractor, default_collate, to_numpy
from extractors.protocol import Batch
from extractors.provenance import file_sha256

__all__ = [
    "INPUT_SIZE",
    "FaceExtractor",
    "extract_face",
    "face_dataset",
    "file_sha256",
    "load_state_dict",
    "preprocess_face",
]

logger = logging.getLogger(__name__)

#: Model input size (height, width).
INPUT_SIZE = (112, 112)


def preprocess_face(image: Any) -> np.ndarray:
    """Turn one image into the normalised ``[3, 112, 112]`` float32 model input.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        Any PIL mode (converted to RGB) or a uint8 array ``H x W x 3``
        (``H x W`` grayscale and ``H x W x 4`` RGBA are accepted too).

    Returns
    -------
    numpy.ndarray
        ``float32 [3, 112, 112]`` holding ``(x / 255 - 0.5) / 0.5``.

    Raises
    ------
    ValidationError
        If the array is not uint8 or has an unusable shape.

    Examples
    --------
    >>> import numpy as np
    >>> x = preprocess_face(np.full((50, 60, 3), 255, np.uint8))
    >>> x.shape, float(x.max())
    ((3, 112, 112), 1.0)
    """
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValidationError(
                f"image arrays must be uint8 H x W x 3, got dtype {image.dtype}; "
                "convert with np.clip(x, 0, 255).astype(np.uint8)"
            )
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)):
            pil = Image.fromarray(
                image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image
            )
        else:
            raise ValidationError(
                f"image array has shape {image.shape}; expected H x W x 3 (RGB uint8)"
            )
    elif isinstance(image, Image.Image):
        pil = image
    else:
        raise ValidationError(
            f"unsupported image type {type(image).__name__}; pass a PIL image or a uint8 array"
        )
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    if pil.size != (INPUT_SIZE[1], INPUT_SIZE[0]):
        pil = pil.resize((INPUT_SIZE[1], INPUT_SIZE[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    return np.ascontiguousarray(((arr - 0.5) / 0.5).transpose(2, 0, 1))


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a face checkpoint's state dict safely (``weights_only=True``).

    Accepts a bare state dict (what ``arcface_torch`` saves) or a dict with a
    ``"state_dict"``/``"model"``/``"backbone"`` entry; a ``module.`` prefix
    left by ``DataParallel`` is removed.

    Parameters
    ----------
    path : str or os.PathLike
        ``.pth``/``.pt`` file.

    Returns
    -------
    dict
        Parameter name -> tensor.

    Raises
    ------
    CheckpointError
        If the file is missing, cannot be unpickled safely, or holds no state dict.
    """
    torch = attempt_import("torch")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"face checkpoint {path!r} does not exist; pass the path of a .pth file"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"could not load face checkpoint {path!r} with torch.load(weights_only=True): {exc}. "
            "Re-save it as a plain state dict: torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "backbone"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(
            f"face checkpoint {path!r} holds a {type(obj).__name__}, not a state dict of tensors; "
            "save it with torch.save(model.state_dict(), path)"
        )
    if obj and all(str(k).startswith("module.") for k in obj):
        obj = {str(k)[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _model_output(model: Any, inputs: Any, outputs: Any) -> Any:
    """Hook source: the model's own output (the ``features`` BatchNorm1d)."""
    return outputs


class FaceExtractor(HookExtractor):
    """Face embeddings from an ArcFace iresnet (a thin layer on :class:`HookExtractor`).

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~extractors.face.iresnet.IResNet` (put in eval mode here).
    device : str, default "cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``
        (:func:`extractors.device.resolve_devices`). ``"cuda"``/``"auto"`` with
        several GPUs present splits every batch over all of them.
    l2_norm : bool, default False
        Default for :meth:`extract_images`: L2-normalise embeddings.
    pre_fc : bool, default False
        Default for :meth:`extract_images`: also return ``pre_fc_features``
        (the flattened ``bn2`` output, captured with a forward hook).
    dtype : str, default "float16"
        Storage dtype of the variables in a store (see :attr:`dtypes`).
        float16 halves the store of millions of faces; cosine similarities
        move by about 1e-3. Use ``"float32"`` for bit-faithful exports.
    autocast : {None, "fp16", "bf16"}, optional
        Mixed precision for the forward pass (GPU).

    Attributes
    ----------
    variables : dict
        Store variables and their trailing dims: ``embedding: ("hidden",)``,
        plus ``pre_fc_features: ("pre_fc",)`` when ``pre_fc``.
    ragged : dict
        Always empty (no ragged outputs).
    dtypes : dict
        Storage dtype per variable.

    Examples
    --------
    >>> from extractors.face import FaceExtractor
    >>> from extractors.face.iresnet import iresnet
    >>> FaceExtractor(iresnet("r18"), pre_fc=True).variables["pre_fc_features"]
    ('pre_fc',)
    """

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        l2_norm: bool = False,
        pre_fc: bool = False,
        dtype: str = "float16",
        autocast: str | None = None,
    ) -> None:
        self.l2_norm = bool(l2_norm)
        self.pre_fc = bool(pre_fc)
        self.dtype = str(np.dtype(dtype))
        self.num_features = int(getattr(model, "num_features", 512))
        super().__init__(
            model,
            self._sources(self.pre_fc),
            device=device,
            dims={"embedding": ("hidden",), "pre_fc_features": ("pre_fc",)},
            dtypes={},
            preprocess=preprocess_face,
            collate=default_collate,
            autocast=autocast,
        )
        self.dtypes = dict.fromkeys(self.variables, self.dtype)
        self.arch: str | None = None
        self.checkpoint: str | None = None

    @staticmethod
    def _sources(pre_fc: bool) -> dict[str, Any]:
        sources: dict[str, Any] = {"embedding": _model_output}
        if pre_fc:
            sources["pre_fc_features"] = "bn2"
        return sources

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        arch: str = "r50",
        device: str = "cpu",
        num_features: int = 512,
        **kwargs: Any,
    ) -> FaceExtractor:
        """Build the iresnet ``arch`` and load a checkpoint strictly.

        Parameters
        ----------
        path : str or os.PathLike
            ``.pth`` state dict (insightface ``arcface_torch`` names), read
            with ``torch.load(weights_only=True)``.
        arch : {"r18", "r34", "r50", "r100", "r200"}, default "r50"
            Architecture of the checkpoint.
        device : str, default "cpu"
            See :class:`FaceExtractor`.
        num_features : int, default 512
            Embedding size of the checkpoint.
        **kwargs
            ``l2_norm``, ``pre_fc``, ``dtype``, ``autocast`` for :class:`FaceExtractor`.

        Returns
        -------
        FaceExtractor
            Ready for :meth:`extract_images`.

        Raises
        ------
        CheckpointError
            If the file cannot be loaded or its keys/shapes do not match ``arch``
            (the message lists missing and unexpected keys).
        """
        from .iresnet import iresnet, normalize_arch

        torch = attempt_import("torch")
        arch = normalize_arch(arch)
        state = load_state_dict(path)
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            model = iresnet(arch, num_features=num_features)
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in expected
            if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
        ]
        if missing or unexpected or wrong:

            def _few(items: list[str]) -> str:
                return ", ".join(items[:8]) + (
                    f", ... ({len(items)} in all)" if len(items) > 8 else ""
                )

            parts = []
            if missing:
                parts.append(f"missing keys: {_few(missing)}")
            if unexpected:
                parts.append(f"unexpected keys: {_few(unexpected)}")
            if wrong:
                parts.append(f"shape mismatches: {_few(wrong)}")
            raise CheckpointError(
                f"checkpoint {os.fspath(path)!r} does not match iresnet {arch} with "
                f"num_features={num_features} ({'; '.join(parts)}). Check --arch "
                "(r18/r34/r50/r100/r200) and --num-features"
            )
        model.load_state_dict(
            {k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=True
        )
        fx = cls(model, device=device, **kwargs)
        fx.arch = arch
        fx.checkpoint = os.fspath(path)
        return fx

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        """Store variables and their trailing dims (``embedding``, optional ``pre_fc_features``)."""
        return {v: self._dims[v] for v in self.outputs}

    def provenance(self) -> dict[str, Any]:
        """Return attributes describing the model and preprocessing.

        Returns
        -------
        dict
            JSON-serialisable provenance for the store's attributes.
        """
        return {
            "model": f"iresnet-{self.arch}" if self.arch else type(self.model).__name__,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": file_sha256(self.checkpoint) if self.checkpoint else None,
            "num_features": self.num_features,
            "l2_norm": self.l2_norm,
            "preprocessing": "RGB, PIL bilinear resize 112x112, (x/255-0.5)/0.5",
            "default_variable": "embedding",
        }

    # -- inference ----------------------------------------------------------------
    def extract_batch(self, batch: Any) -> Batch:
        """Run the model on a preprocessed batch; return device tensors.

        Called by :func:`extractors.pipeline.run_extraction` on the compute
        thread (the writer thread copies to host memory).

        Parameters
        ----------
        batch : torch.Tensor or numpy.ndarray
            ``[B, 3, 112, 112]`` from :func:`preprocess_face`.

        Returns
        -------
        extractors.protocol.Batch
            ``embedding`` float32 ``[B, num_features]`` (L2-normalised when
            ``l2_norm``) and, when ``pre_fc``, ``pre_fc_features`` ``[B, 25088]``.
        """
        torch = attempt_import("torch")
        if isinstance(batch, (list, tuple)):
            batch = np.stack([np.asarray(b) for b in batch])
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        out = super().extract_batch(batch)
        emb = out["embedding"].float()
        if self.l2_norm:
            emb = torch.nn.functional.normalize(emb, dim=1)
        out = out.with_data(embedding=emb)
        if "pre_fc_features" in out:
            out = out.with_data(pre_fc_features=torch.flatten(out["pre_fc_features"], 1).float())
        return out

    def extract_images(
        self,
        images: Sequence[Any],
        l2_norm: bool | None = None,
        pre_fc: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Embed a list of images.

        Parameters
        ----------
        images : sequence of PIL.Image.Image or numpy.ndarray
            Face crops (any size; resized to 112x112), uint8 RGB arrays or PIL.
        l2_norm : bool, optional
            L2-normalise the embeddings (default: the extractor's setting).
        pre_fc : bool, optional
            Also return the 25088-d flattened ``bn2`` output as
            ``pre_fc_features`` (default: the extractor's setting).

        Returns
        -------
        dict of numpy.ndarray
            ``{"embedding": float32 [B, 512]}`` plus ``"pre_fc_features"``
            ``float32 [B, 25088]`` on request.

        Raises
        ------
        ValidationError
            If ``images`` is empty or holds something that is not an image.

        Notes
        -----
        Per-call ``l2_norm``/``pre_fc`` overrides swap the extractor's settings
        for the duration of the call; do not share one extractor between
        threads that pass different overrides.

        Examples
        --------
        >>> import numpy as np
        >>> from extractors.face.iresnet import iresnet
        >>> fx = FaceExtractor(iresnet("r18"))
        >>> out = fx.extract_images([np.zeros((112, 112, 3), np.uint8)] * 2, pre_fc=True)
        >>> out["pre_fc_features"].shape
        (2, 25088)
        """
        if len(images) == 0:
            raise ValidationError("extract_images got an empty list; pass at least one image")
        batch = np.stack([preprocess_face(im) for im in images])
        saved = (self.l2_norm, self.outputs)
        try:
            if l2_norm is not None:
                self.l2_norm = bool(l2_norm)
            if pre_fc is not None:
                self.outputs = self._sources(bool(pre_fc))
            out = self.extract_batch(batch)
        finally:
            self.l2_norm, self.outputs = saved
        return {k: to_numpy(v) for k, v in out.items()}


def face_dataset(source: str | os.PathLike, limit: int | None = None) -> Any:
    """Face images to extract: a folder (recursive) or a text file of paths (streamed).

    Rows are numbered in input order: the row id ``index`` is the 0-based
    position (folder: sorted relative paths; text file: non-empty lines), and
    the coordinate ``path`` is the path the image was loaded from, i.e. what
    the old ``final_indices.npy`` and ``final_fpaths.npy`` held.

    Parameters
    ----------
    source : path
        Folder (jpg/jpeg/png/bmp/webp, searched recursively) or text file.
    limit : int, optional
        Only the first ``limit`` images.

    Returns
    -------
    extractors.datasets.ImageDataset
        Records ``(index, path, {"path": path})``.

    Raises
    ------
    DatasetError
        If the folder holds no images or the path does not exist.
    """
    import itertools

    from extractors.datasets import ImageDataset, ImageRecord, folder_dataset, list_dataset

    src = os.fspath(source)
    if os.path.isdir(src):
        base = folder_dataset(src, ids="path")
    elif os.path.isfile(src):
        base = list_dataset(src, ids="index")
    else:
        from embstore.errors import DatasetError

        raise DatasetError(
            f"--input {src!r} does not exist; pass an image folder or a text file of paths"
        )

    def records() -> Any:
        it = (ImageRecord(i, rec.path, {"path": rec.path}) for i, rec in enumerate(base))
        return itertools.islice(it, limit) if limit is not None else it

    n = base.length
    if n is not None and limit is not None:
        n = min(n, int(limit))
    return ImageDataset(records, length=n, kind=base.kind, source=base.source)


# ``extract_face`` lives in :mod:`extractors.face.run`; this is its old import path.
from .run import extract_face  # noqa: E402
