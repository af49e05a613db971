"""Model sources: build a named model, load local weights, get its own preprocessing.

A *model spec* names an architecture in one of four libraries:

==========================  ==================================================
spec                        model and preprocessing
==========================  ==================================================
``torchvision:resnet50``    ``torchvision.models.get_model(name)``; the
                            transform of the architecture's weights enum
                            (``get_model_weights(name).DEFAULT.transforms()``,
                            or the entry named by ``transform_weights``)
``timm:vit_small_patch16``  ``timm.create_model(name)``;
                            ``timm.data.resolve_data_config`` +
                            ``create_transform``
``open_clip:ViT-B-16``      ``open_clip.create_model_and_transforms`` (the
                            image tower runs, through ``encode_image``); its
                            validation preprocess
``hf:/path/to/dir``         ``transformers.AutoModel.from_pretrained(dir)``
                            and the ``AutoImageProcessor`` saved in the
                            directory (a bare directory path works too)
==========================  ==================================================

Weights come from a local file only (``.safetensors``, or a torch pickle
loaded with ``weights_only=True``; ``{"state_dict": ...}`` / ``{"model":
...}`` wrappers and ``module.`` prefixes are unwrapped) and are loaded
strictly; nothing is ever downloaded. Without weights the model keeps its
random initialisation (logged as a warning). A Hugging Face directory holds
its own weights.

Examples
--------
>>> parse_spec("torchvision:resnet18")
('torchvision', 'resnet18')
>>> parse_spec("open_clip:ViT-B-16-SigLIP")
('open_clip', 'ViT-B-16-SigLIP')
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embstore._optional import attempt_import
from embstore.errors import CheckpointError, ValidationError

from ..provenance import file_sha256

__all__ = ["SOURCES", "LoadedModel", "load_model", "parse_spec", "read_weights"]

logger = logging.getLogger(__name__)

#: Accepted source prefixes (aliases map to the canonical name).
SOURCES = {
    "torchvision": "torchvision",
    "tv": "torchvision",
    "timm": "timm",
    "open_clip": "open_clip",
    "openclip": "open_clip",
    "hf": "hf",
    "transformers": "hf",
}


@dataclass
class LoadedModel:
    """A model ready for hooks, with its preprocessing and provenance.

    Attributes
    ----------
    model : torch.nn.Module
        The module whose ``named_modules()`` are the layer names.
    preprocess : callable
        Picklable ``PIL RGB image -> tensor [3, H, W]``.
    forward : callable or None
        ``f(model, batch) -> output``; None calls ``model(batch)``.
    info : dict
        JSON-serialisable provenance (``model_spec``, ``source``,
        ``architecture``, ``weights``, ``weights_sha256``, ``preprocessing``,
        ``library_versions``).
    """

    model: Any
    preprocess: Callable[[Any], Any]
    forward: Callable[[Any, Any], Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"source:name"`` (a bare existing directory means ``hf:``).

    Parameters
    ----------
    spec : str
        Model spec, e.g. ``"torchvision:resnet50"``.

    Returns
    -------
    (str, str)
        Canonical source and name.

    Raises
    ------
    ValidationError
        Unknown source or empty name.
    """
    if os.path.isdir(spec):
        return "hf", spec
    source, sep, name = str(spec).partition(":")
    if not sep or source.lower() not in SOURCES or not name:
        raise ValidationError(
            f"model spec {spec!r} is not 'SOURCE:NAME'; SOURCE is one of torchvision, timm, open_clip, "
            "hf (a local Hugging Face directory), e.g. 'torchvision:resnet50' or 'timm:vit_small_patch16_224'."
        )
    return SOURCES[source.lower()], name


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state dict from a local file (never downloads).

    Parameters
    ----------
    path : str or os.PathLike
        ``.safetensors`` or a torch file (``.pth``, ``.pt``, ``.bin``).

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    CheckpointError
        Missing or unreadable file, or no state dict inside.
    """
    path = os.fspath(path)
    if "://" in path or not os.path.isfile(path):
        raise CheckpointError(
            f"weights file {path!r} does not exist locally; pass the path of a .pth/.bin/.safetensors "
            "file (nothing is downloaded)."
        )
    torch = attempt_import("torch")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            obj: Any = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"could not read weights {path!r}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(
            f"{path!r} holds no state dict (a mapping of parameter names to tensors); save it with "
            "torch.save(model.state_dict(), path)."
        )
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _load_strict(model: Any, state_dict: Mapping[str, Any], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        k for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"weights {source!r} do not fit the model: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:3]}), {len(shapes)} with another shape "
            f"(e.g. {shapes[:3]}); check the architecture name (and --num-classes)."
        )
    model.load_state_dict(state_dict, strict=True)


def _versions(*names: str) -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", *names):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def _weights_info(weights: str | os.PathLike | None) -> dict[str, Any]:
    if weights is None:
        return {"weights": None, "weights_sha256": None}
    return {"weights": os.path.abspath(os.fspath(weights)), "weights_sha256": file_sha256(weights)}


def _torchvision(
    name: str, weights: Any, num_classes: int | None, transform_weights: str | None
) -> LoadedModel:
    tv = attempt_import("torchvision")
    try:
        kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
        model = tv.models.get_model(name, weights=None, **kwargs)
        enum = tv.models.get_model_weights(name)
    except (ValueError, KeyError) as exc:
        raise ValidationError(
            f"torchvision has no model {name!r} ({exc}); see torchvision.models.list_models()."
        ) from exc
    entry = enum.DEFAULT if transform_weights is None else getattr(enum, transform_weights, None)
    if entry is None:
        raise ValidationError(
            f"{transform_weights!r} is not a weights entry of {name}; choose from {[w.name for w in enum]}."
        )
    preprocess = entry.transforms()  # a transform object only: nothing is downloaded
    if weights is not None:
        _load_strict(model, read_weights(weights), os.fspath(weights))
    info = {
        "architecture": name,
        "preprocessing": {
            "library": "torchvision",
            "weights_transforms": f"{enum.__name__}.{entry.name}",
            "transform": repr(preprocess),
        },
        "library_versions": _versions("torchvision"),
    }
    return LoadedModel(model, preprocess, None, info)


def _timm(name: str, weights: Any, num_classes: int | None) -> LoadedModel:
    timm = attempt_import("timm")
    from timm.data import create_transform, resolve_data_config

    kwargs = {} if num_classes is None else {"num_classes": int(num_classes)}
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as exc:
        raise ValidationError(
            f"timm has no model {name!r} ({exc}); see timm.list_models()."
        ) from exc
    if weights is not None:
        _load_strict(model, read_weights(weights), os.fspath(weights))
    resolve: Callable[..., dict[str, Any]] = resolve_data_config  # timm's is untyped
    config = resolve({}, model=model)
    preprocess = create_transform(**config)
    info = {
        "architecture": name,
        "preprocessing": {
            "library": "timm",
            "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
            "transform": repr(preprocess),
        },
        "library_versions": _versions("timm"),
    }
    return LoadedModel(model, preprocess, None, info)


def _encode_image(model: Any, batch: Any) -> Any:
    return model.encode_image(batch)


def _open_clip(name: str, weights: Any) -> LoadedModel:
    open_clip = attempt_import("open_clip")
    from ..siglip.extractor import resolve_model_name, resolve_preprocess_cfg

    name = resolve_model_name(name)
    if weights is not None:
        read_weights(weights)  # same local-file checks and error as the other sources
    pp = resolve_preprocess_cfg(name)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=None if weights is None else os.fspath(weights),
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
            f"could not build open_clip model {name!r} with weights {weights!r}: {exc}"
        ) from exc
    info = {
        "architecture": name,
        "preprocessing": {
            "library": "open_clip",
            "preprocess_cfg": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in (getattr(model.visual, "preprocess_cfg", {}) or {}).items()
            },
            "transform": repr(preprocess),
        },
        "library_versions": _versions("open_clip_torch", "timm"),
    }
    return LoadedModel(model, preprocess, _encode_image, info)


class HFImagePreprocess:
    """Picklable ``PIL image -> pixel_values [3, H, W]`` with a Hugging Face image processor.

    Parameters
    ----------
    processor : transformers.BaseImageProcessor
        The processor loaded from the model directory.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> Any:
        """Preprocess one image."""
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"HFImagePreprocess({type(self.processor).__name__})"


def _hf_forward(model: Any, batch: Any) -> Any:
    return model(pixel_values=batch)


def _hf(directory: str, weights: Any) -> LoadedModel:
    attempt_import("transformers")
    from transformers import AutoImageProcessor, AutoModel

    if not os.path.isdir(directory):
        raise ValidationError(
            f"{directory!r} is not a local directory; hf: takes a folder saved with "
            "model.save_pretrained() and processor.save_pretrained() (nothing is downloaded)."
        )
    if weights is not None:
        raise ValidationError(
            "a Hugging Face directory holds its own weights; leave --weights out for hf: models."
        )
    try:
        model = AutoModel.from_pretrained(directory, local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"could not load the Hugging Face model in {directory!r}: {exc}"
        ) from exc
    files = [f for f in sorted(os.listdir(directory)) if f.endswith((".safetensors", ".bin"))]
    info = {
        "architecture": type(model).__name__,
        "weights": os.path.abspath(directory),
        "weights_sha256": {f: file_sha256(os.path.join(directory, f)) for f in files},
        "preprocessing": {"library": "transformers", "image_processor": processor.to_dict()},
        "library_versions": _versions("transformers"),
    }
    return LoadedModel(model, HFImagePreprocess(processor), _hf_forward, info)


def load_model(
    spec: str,
    weights: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    transform_weights: str | None = None,
) -> LoadedModel:
    """Build the model of ``spec``, load local weights, attach its own preprocessing.

    Parameters
    ----------
    spec : str
        ``torchvision:NAME``, ``timm:NAME``, ``open_clip:NAME`` or
        ``hf:DIRECTORY`` (see the module docstring).
    weights : str or os.PathLike, optional
        Local weights file (random weights when omitted; not for ``hf:``).
    num_classes : int, optional
        Classifier size for torchvision/timm checkpoints trained on other labels.
    transform_weights : str, optional
        torchvision only: the weights entry whose transforms to use (default
        ``DEFAULT``, e.g. ``IMAGENET1K_V2`` for resnet50).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ValidationError
        Bad spec or unknown architecture.
    CheckpointError
        Unreadable weights or weights of another architecture.
    MissingDependencyError
        The source's library is not installed (``pip install embstore[models]``).
    """
    source, name = parse_spec(spec)
    if weights is None and source != "hf":
        logger.warning("no weights given for %s: the model has RANDOM weights", spec)
    if source == "torchvision":
        loaded = _torchvision(name, weights, num_classes, transform_weights)
    elif source == "timm":
        loaded = _timm(name, weights, num_classes)
    elif source == "open_clip":
        loaded = _open_clip(name, weights)
    else:
        loaded = _hf(name, weights)
    loaded.model.eval()
    loaded.info = {"model_spec": spec, "source": source, **_weights_info(weights), **loaded.info}
    return loaded
