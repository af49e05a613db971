"""A tiny registered open_clip config and random weights, for tests and examples.

Nothing is downloaded: the config is written to a JSON file and registered
with :func:`open_clip.add_model_config`; weights are a random state dict
saved to a local file, loaded back through open_clip's own ``pretrained=``
file path like a user's real checkpoint.

Examples
--------
>>> from extractors.siglip.testing import register_tiny_config, save_random_weights
>>> name = register_tiny_config()                               # doctest: +SKIP
>>> path = save_random_weights("/tmp/tiny.pt", name, seed=0)    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from embstore._optional import attempt_import

__all__ = ["TINY_CONFIG", "TINY_MODEL_NAME", "register_tiny_config", "save_random_weights"]

#: Name under which :func:`register_tiny_config` registers the config.
TINY_MODEL_NAME = "embstore-tiny-SigLIP"

#: A ViT with 2 layers of width 64 on 32x32 inputs; a SigLIP-style model
#: (``init_logit_bias``, text tower without causal mask).
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "init_logit_bias": -10,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    # vocab_size covers open_clip's default SimpleTokenizer (the ids extract_texts feeds it)
    "text_cfg": {
        "context_length": 8,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 1,
        "no_causal_mask": True,
    },
}

_REGISTERED: dict[str, str] = {}


class _DropRandomInitWarning(logging.Filter):
    """Drop open_clip's "No pretrained weights loaded" warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def register_tiny_config(
    name: str = TINY_MODEL_NAME, directory: str | os.PathLike | None = None
) -> str:
    """Write :data:`TINY_CONFIG` as ``<name>.json`` and register it with open_clip.

    Parameters
    ----------
    name : str, default :data:`TINY_MODEL_NAME`
        Model name (the JSON file's stem).
    directory : path, optional
        Where to write the JSON; a fresh temporary directory by default.

    Returns
    -------
    str
        ``name``, usable as ``model_name`` of
        :class:`~extractors.siglip.SiglipExtractor`.
    """
    open_clip = attempt_import("open_clip")
    if name in _REGISTERED and name in open_clip.list_models():
        return name
    directory = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="embstore-oc-"))
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    open_clip.add_model_config(path)
    _REGISTERED[name] = str(path)
    return name


def save_random_weights(
    path: str | os.PathLike, model_name: str = TINY_MODEL_NAME, seed: int = 0
) -> str:
    """Save the state dict of a randomly initialised open_clip model.

    Parameters
    ----------
    path : path
        Output ``.pt`` file.
    model_name : str, default :data:`TINY_MODEL_NAME`
        A registered open_clip model name (registered first if it is the tiny one).
    seed : int, default 0
        ``torch.manual_seed`` before building the model.

    Returns
    -------
    str
        ``path`` as a string.
    """
    torch = attempt_import("torch")
    open_clip = attempt_import("open_clip")
    if model_name == TINY_MODEL_NAME:
        register_tiny_config()
    torch.manual_seed(seed)
    quiet = _DropRandomInitWarning()
    logging.getLogger().addFilter(quiet)  # random weights are the point here
    try:
        model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    finally:
        logging.getLogger().removeFilter(quiet)
    # random biases too, so that tests see non-trivial values everywhere
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    torch.save(model.state_dict(), os.fspath(path))
    return os.fspath(path)
