"""Loading official DETR checkpoints and inferring their architecture.

A checkpoint is either the official training output ``{"model": state_dict,
"args": argparse.Namespace, ...}`` (the released ``detr-r50-e632da11.pth``
holds ``{"model": ...}``), a dict with ``"state_dict"``, or a bare state dict.
Files are read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` is
allow-listed for the saved ``args``), so loading a checkpoint never runs
arbitrary pickled code.

Architecture inference (:func:`infer_config`):

* from the state dict's names and shapes: backbone (ResNet-18/34/50/101/152,
  from the number of blocks per stage, the block type and the channel sizes),
  ``hidden_dim``, ``enc_layers``, ``dec_layers``, ``dim_feedforward``,
  ``num_queries``, ``num_classes``, ``pre_norm`` (an encoder norm exists) and
  the position embedding (learned tables exist);
* from the checkpoint's ``args`` (namespace or dict) or keyword overrides:
  ``nheads`` (default 8) and ``dilation`` (DC5 models; default False), which
  leave no trace in the shapes.

Overrides win over ``args``; a value that contradicts the state dict's shapes
is an error.

Examples
--------
>>> from extractors.detr.model import build_detr
>>> from extractors.detr.checkpoint import infer_config
>>> m = build_detr({"backbone": "resnet18", "hidden_dim": 32, "nheads": 4,
...                 "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 48,
...                 "num_queries": 7, "num_classes": 5})
>>> cfg = infer_config(m.state_dict(), nheads=4)
>>> cfg.backbone, cfg.dec_layers, cfg.num_queries, cfg.num_classes
('resnet18', 2, 7, 5)
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from embstore.errors import CheckpointError, ValidationError
from extractors.provenance import file_sha256

from .model import DetrConfig

__all__ = [
    "args_to_dict",
    "check_state_dict",
    "file_sha256",
    "infer_backbone",
    "infer_config",
    "is_url",
    "load_state_dict_strict",
    "read_checkpoint",
    "unwrap_state_dict",
]

logger = logging.getLogger(__name__)

#: (bottleneck blocks?, blocks per stage) -> torchvision ResNet name.
_RESNETS: dict[tuple[bool, tuple[int, ...]], str] = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}

#: Fields that :func:`infer_config` reads from shapes (overrides must agree).
SHAPE_FIELDS = (
    "backbone",
    "hidden_dim",
    "enc_layers",
    "dec_layers",
    "dim_feedforward",
    "num_queries",
    "num_classes",
    "pre_norm",
    "position_embedding",
)

_BODY = "backbone.0.body."


def is_url(path_or_url: Any) -> bool:
    """True when ``path_or_url`` is an ``http(s)://`` or ``file://`` URL.

    Examples
    --------
    >>> is_url("https://dl.fbaipublicfiles.com/detr/detr-r50-e632da11.pth"), is_url("a.pth")
    (True, False)
    """
    return isinstance(path_or_url, str) and re.match(r"^(https?|file)://", path_or_url) is not None


def _torch_load(path: str | os.PathLike, weights_only: bool) -> Any:
    import torch

    if not weights_only:
        return torch.load(path, map_location="cpu", weights_only=False)
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(
    path_or_url: str | os.PathLike, *, weights_only: bool = True, model_dir: str | None = None
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Read a DETR checkpoint file or URL.

    Parameters
    ----------
    path_or_url : str or path-like
        Local ``.pth`` file, or an ``http(s)://`` URL fetched into the torch hub
        cache (``torch.hub.load_state_dict_from_url``; needs network the first
        time).
    weights_only : bool
        Use ``torch.load(weights_only=True)`` (default; safe). Set False only
        for a trusted file that pickles other objects.
    model_dir : str, optional
        Download directory for URLs (default: the torch hub cache).

    Returns
    -------
    state_dict : dict
        Parameter name -> tensor.
    args : object or None
        The checkpoint's saved ``args`` (namespace or dict), if any.
    info : dict
        Provenance: ``checkpoint`` (the given path or URL), ``checkpoint_file``
        and ``checkpoint_sha256`` where a local file exists.

    Raises
    ------
    CheckpointError
        Missing file, unreadable file, or no state dict inside.
    """
    import torch

    source = os.fspath(path_or_url)
    info: dict[str, Any] = {"checkpoint": source}
    if is_url(source):
        if source.startswith("file://"):
            from urllib.parse import urlparse
            from urllib.request import url2pathname

            local = url2pathname(urlparse(source).path)
            state_dict, args, local_info = read_checkpoint(local, weights_only=weights_only)
            return state_dict, args, {**local_info, "checkpoint": source}
        try:
            if weights_only:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    obj = torch.hub.load_state_dict_from_url(
                        source, model_dir=model_dir, map_location="cpu", weights_only=True
                    )
            else:
                obj = torch.hub.load_state_dict_from_url(
                    source, model_dir=model_dir, map_location="cpu", weights_only=False
                )
        except Exception as exc:  # network errors, HTTP errors, bad pickles
            raise CheckpointError(
                f"could not fetch or read the checkpoint URL {source!r} ({type(exc).__name__}: "
                f"{exc}). Check the URL and the network, or download the file and pass "
                "its local path."
            ) from exc
        cached = os.path.join(
            model_dir or os.path.join(torch.hub.get_dir(), "checkpoints"),
            os.path.basename(source.split("?")[0]),
        )
        if os.path.isfile(cached):
            info["checkpoint_file"] = cached
            info["checkpoint_sha256"] = file_sha256(cached)
    else:
        if not os.path.isfile(source):
            raise CheckpointError(
                f"checkpoint file {source!r} does not exist; pass the path of a DETR .pth "
                "file (e.g. detr-r50-e632da11.pth) or its URL."
            )
        try:
            obj = _torch_load(source, weights_only)
        except Exception as exc:
            hint = (
                " If you trust this file and it pickles other objects, pass weights_only=False."
                if weights_only
                else ""
            )
            raise CheckpointError(
                f"could not read checkpoint {source!r} ({type(exc).__name__}: {exc}); "
                f"is it a PyTorch .pth file?{hint}"
            ) from exc
        info["checkpoint_file"] = os.path.abspath(source)
        info["checkpoint_sha256"] = file_sha256(source)
    state_dict, args = unwrap_state_dict(obj, source=source)
    return state_dict, args, info


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, Any], Any]:
    """Extract ``(state_dict, args)`` from a loaded checkpoint object.

    Parameters
    ----------
    obj : Any
        ``{"model": sd, "args": ...}``, ``{"state_dict": sd}`` or a bare state
        dict. A ``"module."`` prefix on every key (DataParallel) is removed.
    source : str
        Name used in error messages.

    Returns
    -------
    state_dict : dict
    args : object or None

    Raises
    ------
    CheckpointError
        When no tensor mapping is found.

    Examples
    --------
    >>> import torch
    >>> sd, args = unwrap_state_dict({"model": {"module.a": torch.zeros(1)}, "args": {"nheads": 8}})
    >>> list(sd), args
    (['a'], {'nheads': 8})
    """
    import torch

    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source!r} holds a {type(obj).__name__}, not a dict; expected "
            "{'model': state_dict, ...} or a state dict."
        )
    args = obj.get("args")
    sd: Any = obj
    for key in ("model", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            sd = obj[key]
            break
    non_tensor = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not sd or non_tensor:
        raise CheckpointError(
            f"{source!r} does not contain a state dict (keys: {sorted(map(str, obj))[:10]}; "
            f"non-tensor entries: {non_tensor[:5]}); expected {{'model': state_dict, ...}} "
            "as saved by facebookresearch/detr, or a bare state dict."
        )
    sd = dict(sd)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd, args


def args_to_dict(args: Any) -> dict[str, Any]:
    """Turn a checkpoint's ``args`` (namespace, dict or None) into a dict.

    Examples
    --------
    >>> import argparse
    >>> args_to_dict(argparse.Namespace(nheads=8))
    {'nheads': 8}
    """
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    raise CheckpointError(
        f"checkpoint 'args' is a {type(args).__name__}; expected an argparse.Namespace or a dict."
    )


def _count_indices(state_dict: Mapping[str, Any], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state_dict if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(
            f"the state dict has no {key!r}; it does not look like a facebookresearch/detr "
            f"model (first keys: {list(state_dict)[:5]})."
        )
    return tuple(state_dict[key].shape)


def infer_backbone(state_dict: Mapping[str, Any]) -> str:
    """Name the torchvision ResNet a DETR state dict's backbone is.

    Parameters
    ----------
    state_dict : mapping
        DETR state dict (``backbone.0.body.*`` keys).

    Returns
    -------
    str
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.

    Raises
    ------
    CheckpointError
        When the blocks or channel sizes match no supported ResNet.
    """
    blocks = tuple(_count_indices(state_dict, f"{_BODY}layer{i}.") for i in range(1, 5))
    if 0 in blocks:
        raise CheckpointError(
            f"the state dict has no ResNet backbone stages (blocks per stage {blocks}); "
            "expected keys like 'backbone.0.body.layer1.0.conv1.weight' as in "
            "facebookresearch/detr checkpoints."
        )
    bottleneck = f"{_BODY}layer1.0.conv3.weight" in state_dict
    name = _RESNETS.get((bottleneck, blocks))
    stem = _shape(state_dict, f"{_BODY}conv1.weight")
    last = _shape(
        state_dict, f"{_BODY}layer4.{blocks[3] - 1}.{'conv3' if bottleneck else 'conv2'}.weight"
    )
    width = _shape(state_dict, f"{_BODY}layer1.0.conv1.weight")[0]
    expected_last = 2048 if bottleneck else 512
    if name is None or stem[0] != 64 or last[0] != expected_last or width != 64:
        raise CheckpointError(
            f"unsupported DETR backbone: {'bottleneck' if bottleneck else 'basic'} blocks "
            f"{list(blocks)} per stage, stem {stem[0]} channels, layer1 width {width}, last "
            f"stage {last[0]} channels; supported are ResNet-18/34/50/101/152 "
            f"({ {v: list(k[1]) for k, v in _RESNETS.items()} })."
        )
    return name


def infer_config(state_dict: Mapping[str, Any], args: Any = None, **overrides: Any) -> DetrConfig:
    """Infer the :class:`DetrConfig` of a DETR state dict.

    Parameters
    ----------
    state_dict : mapping
        Official-format DETR state dict.
    args : argparse.Namespace or dict, optional
        The checkpoint's saved training arguments (``nheads``, ``dilation`` ...).
    **overrides
        Any :class:`DetrConfig` field; wins over ``args``. Values that
        contradict the state dict's shapes raise.

    Returns
    -------
    DetrConfig

    Raises
    ------
    CheckpointError
        Not a DETR state dict, or an override contradicts it.
    ValidationError
        Unknown override name, or an invalid value (e.g. ``nheads`` not
        dividing ``hidden_dim``).
    """
    fields = set(DetrConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValidationError(
            f"unknown DETR override(s) {unknown}; valid names are {sorted(fields)}."
        )
    # query_embed.weight is [num_queries, hidden_dim]
    num_queries, hidden_dim = (int(x) for x in _shape(state_dict, "query_embed.weight"))
    inferred: dict[str, Any] = {
        "backbone": infer_backbone(state_dict),
        "hidden_dim": hidden_dim,
        "num_queries": num_queries,
        "num_classes": int(_shape(state_dict, "class_embed.weight")[0]) - 1,
        "enc_layers": _count_indices(state_dict, "transformer.encoder.layers."),
        "dec_layers": _count_indices(state_dict, "transformer.decoder.layers."),
        "pre_norm": "transformer.encoder.norm.weight" in state_dict,
        "position_embedding": "learned" if "backbone.1.row_embed.weight" in state_dict else "sine",
    }
    layer0 = (
        "transformer.encoder.layers.0."
        if inferred["enc_layers"]
        else "transformer.decoder.layers.0."
    )
    inferred["dim_feedforward"] = int(_shape(state_dict, layer0 + "linear1.weight")[0])

    saved = args_to_dict(args)
    values: dict[str, Any] = {"nheads": 8, "dilation": False}
    for key in ("nheads", "dilation"):
        if key in saved and saved[key] is not None:
            values[key] = type(values[key])(saved[key])
    for key in SHAPE_FIELDS:
        if key in saved and saved[key] is not None and saved[key] != inferred[key]:
            logger.warning(
                "checkpoint args say %s=%r but the state dict has %r; using the state dict",
                key,
                saved[key],
                inferred[key],
            )
    for key, value in overrides.items():
        if key in SHAPE_FIELDS and value != inferred[key]:
            raise CheckpointError(
                f"override {key}={value!r} contradicts the checkpoint, whose state dict "
                f"implies {key}={inferred[key]!r}; drop the override."
            )
    values.update(inferred)
    values.update(overrides)
    return DetrConfig(**values)


def check_state_dict(
    model: Any, state_dict: Mapping[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict with a model's, without loading.

    Parameters
    ----------
    model : torch.nn.Module
        Target model.
    state_dict : mapping
        Candidate weights.

    Returns
    -------
    missing : list of str
        Keys the model has and the state dict lacks.
    unexpected : list of str
        Keys the state dict has and the model lacks (``num_batches_tracked`` of
        frozen batch norms excluded, as DETR drops them).
    mismatched : list of str
        ``"name: checkpoint (a, b) vs model (c, d)"`` for shape mismatches.
    """
    own = model.state_dict()
    keys = [
        k
        for k in state_dict
        if not k.endswith("num_batches_tracked")
        or k.replace("num_batches_tracked", "running_var") not in own
    ]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in keys if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, mismatched


def _listing(label: str, items: list[str], n: int) -> str:
    more = f", ... (+{len(items) - n} more)" if len(items) > n else ""
    return f"{len(items)} {label}: {items[:n]}{more}"


def load_state_dict_strict(
    model: Any, state_dict: Mapping[str, Any], source: str = "checkpoint", max_listed: int = 10
) -> None:
    """Load ``state_dict`` into ``model`` with strict key and shape checking.

    Parameters
    ----------
    model : torch.nn.Module
        Target model.
    state_dict : mapping
        Weights with exactly the model's names and shapes.
    source : str
        Checkpoint name used in the error message.
    max_listed : int
        How many keys of each kind the message lists.

    Raises
    ------
    CheckpointError
        Listing the first ``max_listed`` missing, unexpected and mismatched
        keys with their counts.
    """
    missing, unexpected, mismatched = check_state_dict(model, state_dict)
    if missing or unexpected or mismatched:
        parts = [
            _listing(label, items, max_listed)
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise CheckpointError(
            f"checkpoint {source!r} does not match the DETR model "
            f"({model.config.backbone if hasattr(model, 'config') else type(model).__name__}): "
            + "; ".join(parts)
            + ". Check that it is a facebookresearch/detr checkpoint and that the overrides "
            "(backbone, hidden_dim, ...) match it; panoptic (DETRsegm) checkpoints are not supported."
        )
    model.load_state_dict(dict(state_dict), strict=True)
