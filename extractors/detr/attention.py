"""Attention maps of DETR captured with forward hooks.

The official model (facebookresearch/detr, ``models/transformer.py``) calls
every ``nn.MultiheadAttention`` with the default ``need_weights=True``, so its
second output is the attention averaged over heads; the DETR hands-on
notebook reads it with a forward hook on
``model.transformer.decoder.layers[-1].multihead_attn``. The project's model
asks for ``need_weights=False`` (faster fused kernels) so the hooks here also
switch ``need_weights=True, average_attn_weights=True`` on for the duration of
one forward pass, through a ``forward_pre_hook`` that edits the call's
keyword arguments. The attention module's first output (what the model uses)
is the same either way.

:func:`attention_hooks` captures

``decoder_attention``
    ``[B, L, Q, h, w]``: each decoder layer's cross-attention of every query
    over the (padded) encoder memory; padded cells get weight 0.
``encoder_attention``
    ``[B, E, P, h, w]``: each encoder layer's self-attention of ``P`` chosen
    cells (one row of the ``(hw)^2`` matrix each; the full matrix is never
    stored).

Points are *relative* ``(y, x)`` positions in ``[0, 1]`` of each image's own
(unpadded) feature grid: cell ``(min(h-1, floor(y h)), min(w-1, floor(x w)))``,
so one list of points means the same place on images of different sizes.

Examples
--------
>>> parse_points("0.5,0.5; 0.25,0.75")
((0.5, 0.5), (0.25, 0.75))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from embstore.errors import ValidationError

__all__ = ["attention_hooks", "parse_points", "point_cells"]


def parse_points(points: str | Sequence[Sequence[float]] | None) -> tuple[tuple[float, float], ...]:
    """Parse encoder attention points ``"y,x;y,x"`` (relative, in ``[0, 1]``).

    Parameters
    ----------
    points : str, sequence of (float, float) or None
        ``"0.5,0.5;0.2,0.8"`` or ``[(0.5, 0.5), (0.2, 0.8)]``.

    Returns
    -------
    tuple of (float, float)
        Empty for None or an empty string.

    Raises
    ------
    ValidationError
        For a malformed point or a coordinate outside ``[0, 1]``.

    Examples
    --------
    >>> parse_points([(0, 1)])
    ((0.0, 1.0),)
    """
    if points is None:
        return ()
    if isinstance(points, str):
        items = [p.strip() for p in points.split(";") if p.strip()]
        try:
            parsed = [tuple(float(v) for v in item.split(",")) for item in items]
        except ValueError:
            raise ValidationError(
                f"encoder attention points {points!r} are not numbers; write 'y,x;y,x' with relative "
                "coordinates in [0, 1], e.g. '0.5,0.5;0.25,0.75'."
            ) from None
    else:
        parsed = [tuple(float(v) for v in p) for p in points]
    out = []
    for p in parsed:
        if len(p) != 2 or not all(0.0 <= v <= 1.0 for v in p):
            raise ValidationError(
                f"encoder attention point {p!r} must be (y, x) with both in [0, 1] (relative to the "
                "image's feature grid), e.g. (0.5, 0.5) for the centre."
            )
        out.append((p[0], p[1]))
    return tuple(out)


def point_cells(points: Sequence[tuple[float, float]], h: int, w: int) -> list[tuple[int, int]]:
    """Feature cells ``(y, x)`` of relative points on an ``h x w`` grid.

    Parameters
    ----------
    points : sequence of (float, float)
        Relative ``(y, x)`` in ``[0, 1]``.
    h, w : int
        Grid size of the image.

    Returns
    -------
    list of (int, int)

    Examples
    --------
    >>> point_cells([(0.5, 0.5), (1.0, 0.0)], 4, 6)
    [(2, 3), (3, 0)]
    """
    return [(min(h - 1, int(y * h)), min(w - 1, int(x * w))) for y, x in points]


def _need_weights(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    kwargs = dict(kwargs)
    kwargs["need_weights"] = True
    kwargs["average_attn_weights"] = True
    return args, kwargs


@contextlib.contextmanager
def attention_hooks(
    model: Any, decoder: bool = True, encoder_points: Sequence[tuple[float, float]] = ()
) -> Iterator[dict[str, Any]]:
    """Capture attention maps during the forward passes run inside the block.

    Parameters
    ----------
    model : extractors.detr.model.DETR
        The model (not a ``DataParallel`` wrapper: replicas would share the hooks).
    decoder : bool, optional
        Capture ``decoder_attention``.
    encoder_points : sequence of (float, float), optional
        Relative points whose encoder self-attention rows are captured.

    Yields
    ------
    dict
        Filled after the forward pass with ``decoder_attention``
        ``[B, L, Q, h, w]`` and/or ``encoder_attention`` ``[B, E, P, h, w]``
        tensors (padded grid, on the model's device).
    """
    import torch

    captured: dict[str, list[Any]] = {"dec": [], "enc": []}
    grid: dict[str, Any] = {}
    handles = []

    def grab_grid(module: Any, args: Any, output: Any) -> None:
        grid["hw"] = tuple(output.shape[-2:])

    def grab_dec(module: Any, args: Any, output: Any) -> None:
        captured["dec"].append(output[1])

    def grab_enc(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        weights = output[1]  # [B, HW, HW]
        hp, wp = grid["hw"]
        mask = kwargs.get("key_padding_mask")
        B = weights.shape[0]
        if mask is None:
            mask = torch.zeros(B, hp * wp, dtype=torch.bool, device=weights.device)
        valid = ~mask.reshape(B, hp, wp)
        rows = []
        for b in range(B):
            h = int(valid[b, :, 0].sum())
            w = int(valid[b, 0, :].sum())
            idx = [y * wp + x for y, x in point_cells(encoder_points, h, w)]
            rows.append(weights[b, idx])
        captured["enc"].append(torch.stack(rows))

    try:
        handles.append(model.input_proj.register_forward_hook(grab_grid))
        if decoder:
            for layer in model.transformer.decoder.layers:
                attn = layer.multihead_attn
                handles.append(attn.register_forward_pre_hook(_need_weights, with_kwargs=True))
                handles.append(attn.register_forward_hook(grab_dec))
        if encoder_points:
            for layer in model.transformer.encoder.layers:
                attn = layer.self_attn
                handles.append(attn.register_forward_pre_hook(_need_weights, with_kwargs=True))
                handles.append(attn.register_forward_hook(grab_enc, with_kwargs=True))
        result: dict[str, Any] = {}
        yield result
        hw: tuple[int, ...] = tuple(grid.get("hw") or ())
        if captured["dec"]:
            dec = torch.stack(captured["dec"], 1)
            result["decoder_attention"] = dec.reshape(*dec.shape[:-1], *hw)
        if captured["enc"]:
            enc = torch.stack(captured["enc"], 1)
            result["encoder_attention"] = enc.reshape(*enc.shape[:-1], *hw)
    finally:
        for h in handles:
            h.remove()
