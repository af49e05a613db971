"""Deterministic DETR weights and state-dict helpers for tests.

The reference fixtures (``tests/data/detr/README.md``) were computed with
weights filled from each state-dict entry's *name*, so any implementation with
the official parameter names can rebuild them without a weight file.

Examples
--------
>>> from extractors.detr.model import build_detr
>>> from extractors.detr.testing import deterministic_state_dict
>>> m = build_detr({"backbone": "resnet18", "hidden_dim": 32, "nheads": 4,
...                 "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 32,
...                 "num_queries": 3})
>>> sd = deterministic_state_dict(m)
>>> m.load_state_dict(sd, strict=True)
<All keys matched successfully>
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["deterministic_state_dict", "deterministic_tensor", "state_dict_spec_from_json"]

#: Gain for the 2-D+ weights whose name ends with the key (1.0 otherwise).
_GAINS = (
    ("multihead_attn.in_proj_weight", 4.0),
    ("self_attn.out_proj.weight", 0.2),
    ("multihead_attn.out_proj.weight", 0.5),
    ("linear2.weight", 0.2),
)


def deterministic_tensor(name: str, shape: Iterable[int]):
    """The deterministic float32 tensor for one state-dict entry.

    Parameters
    ----------
    name : str
        Full state-dict key, e.g. ``"class_embed.weight"``.
    shape : iterable of int
        Tensor shape.

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> t1 = deterministic_tensor("class_embed.bias", (4,))
    >>> t2 = deterministic_tensor("class_embed.bias", (4,))
    >>> bool((t1 == t2).all())
    True
    """
    import torch

    shape = tuple(int(s) for s in shape)
    g = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if name == "query_embed.weight":
        return torch.randn(shape, generator=g)
    if len(shape) >= 2:
        gain = next((v for suffix, v in _GAINS if name.endswith(suffix)), 1.0)
        return gain * torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    if name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.1 * torch.randn(shape, generator=g)


def deterministic_state_dict(model_or_spec: Any) -> dict[str, Any]:
    """Fill every entry of a model's state dict by the fixtures' rule.

    Parameters
    ----------
    model_or_spec : torch.nn.Module or mapping of str to shape
        A model (its ``state_dict()`` names and shapes are used) or a mapping
        ``name -> shape``.

    Returns
    -------
    dict of str to torch.Tensor
        Float32 tensors, one per entry, in the model's order.
    """
    if isinstance(model_or_spec, Mapping):
        spec = {k: tuple(v) for k, v in model_or_spec.items()}
    else:
        spec = {k: tuple(v.shape) for k, v in model_or_spec.state_dict().items()}
    return {name: deterministic_tensor(name, shape) for name, shape in spec.items()}


def state_dict_spec_from_json(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Read ``name -> shape`` from a ``detr_r50_state_dict.json``-style file.

    Parameters
    ----------
    path : str or path-like
        JSON with a ``state_dict`` list of ``{"name", "shape", "dtype"}``.

    Returns
    -------
    dict of str to tuple of int
    """
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return {e["name"]: tuple(e["shape"]) for e in data["state_dict"]}
