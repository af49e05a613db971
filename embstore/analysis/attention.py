"""DETR attention maps stored in a store: labeled arrays and overlays.

``embstore extract detr --extract-type decoder,attention`` stores
``decoder_attention``: per image, every decoder layer's cross-attention of
every object query over the image's own feature grid (averaged over heads,
as the official model's ``nn.MultiheadAttention`` returns it), as a ragged
variable of ``h * w`` tokens of ``(layer, query)`` values.
``--encoder-attention-points`` adds ``encoder_attention`` the same way with
``(layer, point)`` values.

:meth:`AttentionAccessor.attention` returns one image's maps as a
:class:`xarray.DataArray` ``(query, y, x)``; :meth:`AttentionAccessor.plot_attention`
overlays them on the photo with each query's predicted box and class, as in
the DETR hands-on notebook.

Examples
--------
>>> import os
>>> from embstore import EmbeddingAnalyzer
>>> from embstore.testing.stores import attention_store
>>> an = EmbeddingAnalyzer(attention_store(os.path.join(out_dir, "attn.zarr")))
>>> maps = an.attention(1, layer=-1, queries=[0, 3])
>>> maps.dims, maps.shape
(('query', 'y', 'x'), (2, 4, 4))
>>> round(float(maps.sel(query=3).sum()), 4)
1.0
>>> fig = an.plot_attention(1, queries="top", k=2, path=os.path.join(out_dir, "attn.png"))
>>> os.path.exists(os.path.join(out_dir, "attn.png"))
True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import UnknownVariableError, ValidationError
from .core import AnalyzerCore

__all__ = ["COCO_CLASSES", "AttentionAccessor", "foreground_confidence", "top_queries"]

logger = logging.getLogger(__name__)

#: COCO category names by DETR class index (91 ids, "N/A" for unused ids).
COCO_CLASSES = (
    "N/A",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def foreground_confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best object class and its probability per query (last logit = no object).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(Q, classes + 1)``.

    Returns
    -------
    score, label : numpy.ndarray
        ``(Q,)`` highest object-class probability and its class index.

    Examples
    --------
    >>> s, c = foreground_confidence(np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 9.0]]))
    >>> c.tolist(), bool(s[0] > s[1])
    ([1, 0], True)
    """
    p = _softmax(np.asarray(logits, dtype=np.float64))[..., :-1]
    return p.max(axis=-1), p.argmax(axis=-1)


def top_queries(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` queries with the highest foreground confidence.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(Q, classes + 1)``.
    k : int
        Number of queries.

    Returns
    -------
    numpy.ndarray
        Query indices, most confident first.

    Examples
    --------
    >>> top_queries(np.array([[0.0, 1.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 3.0]]), 2).tolist()
    [1, 0]
    """
    score, _ = foreground_confidence(logits)
    return np.argsort(-score, kind="stable")[: max(1, int(k))]


class AttentionAccessor:
    """Attention maps of an analyzer's images (``an.attention``).

    Uses the analyzer core (``store``, ``coords``, ``ragged_variables``);
    :class:`embstore.EmbeddingAnalyzer` also offers ``attention(...)`` and
    ``plot_attention(...)`` flat.

    Parameters
    ----------
    core : AnalyzerCore
        The analyzer whose attention maps are read.
    """

    def __init__(self, core: AnalyzerCore) -> None:
        self._an = core

    def _attention_row(self, image_id: Any, variable: str) -> tuple[np.ndarray, tuple[str, ...]]:
        store = self._an.store
        if variable not in self._an.ragged_variables:
            raise UnknownVariableError(
                f"{variable!r} is not in the store (ragged variables: "
                f"{sorted(self._an.ragged_variables)!r}); extract it with "
                "'embstore extract detr --extract-type decoder,attention'."
            )
        if store is None:
            raise ValidationError(
                "attention maps are read from a store; open the analyzer on a store."
            )
        if image_id not in set(np.asarray(self._an.ids).tolist()):
            raise UnknownVariableError(
                f"image id {image_id!r} is not among the analyzer's rows; pick one of its ids, "
                f"e.g. {np.asarray(self._an.ids)[:5].tolist()!r}."
            )
        tokens = np.asarray(store.get_ragged(variable, image_id), dtype=np.float32)
        hw = store.ragged_hw(variable).loc[image_id]
        h, w = int(hw["h"]), int(hw["w"])
        # tokens [h*w, L, K] -> [L, K, h, w]
        maps = np.ascontiguousarray(
            tokens.transpose(1, 2, 0).reshape(tokens.shape[1], tokens.shape[2], h, w)
        )
        return maps, tuple(self._an.ragged_variables[variable])

    def attention(
        self,
        image_id: Any,
        layer: int = -1,
        queries: Sequence[int] | None = None,
        *,
        variable: str = "decoder_attention",
    ) -> xr.DataArray:
        """One image's attention maps as a labeled array.

        Parameters
        ----------
        image_id : int or str
            Row id.
        layer : int, optional
            Decoder (or encoder) layer; negative counts from the end.
        queries : sequence of int, optional
            Queries (or points, for ``encoder_attention``) to keep; all by default.
        variable : str, optional
            ``"decoder_attention"`` or ``"encoder_attention"``.

        Returns
        -------
        xarray.DataArray
            float32, dims ``(query, y, x)`` (``(point, y, x)`` for the encoder)
            on the image's feature grid; each map sums to 1 over ``(y, x)``.

        Raises
        ------
        UnknownVariableError
            If the store has no such variable or the id is not a row.
        ValidationError
            For a bad layer or query index.
        """
        maps, dims = self._attention_row(image_id, variable)
        item = dims[2] if len(dims) == 3 else "query"
        n_layers = maps.shape[0]
        if (
            isinstance(layer, bool)
            or not isinstance(layer, (int, np.integer))
            or not -n_layers <= layer < n_layers
        ):
            raise ValidationError(
                f"layer={layer!r} is out of range for {variable!r} with {n_layers} layers; pass an "
                f"integer in [{-n_layers}, {n_layers - 1}]."
            )
        sel = maps[int(layer)]
        idx = np.arange(sel.shape[0])
        if queries is not None:
            idx = np.asarray(list(queries), dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= sel.shape[0]):
                raise ValidationError(
                    f"{item} indices {idx.tolist()!r} out of range; the store has {sel.shape[0]} {item}s."
                )
            sel = sel[idx]
        return xr.DataArray(
            sel,
            dims=(item, "y", "x"),
            coords={item: idx, "y": np.arange(sel.shape[1]), "x": np.arange(sel.shape[2])},
            name=variable,
            attrs={
                "image_id": image_id if isinstance(image_id, (int, str)) else str(image_id),
                "layer": int(layer) % n_layers,
            },
        )

    def _image_path(self, image_id: Any, image_root: str | os.PathLike | None) -> str:
        row = self._an.coords.loc[image_id]
        if image_root is None:
            # extraction runs record their image folder in the store attributes
            dataset = (self._an.store.attrs or {}).get("dataset") or {}
            folder = dataset.get("images") if isinstance(dataset, dict) else None
            if isinstance(folder, str) and os.path.isdir(folder):
                image_root = folder
        for col in ("path", "file_name", "filename"):
            if col in row.index and isinstance(row[col], str) and row[col]:
                p = row[col]
                if image_root is not None and not os.path.isabs(p):
                    p = os.path.join(os.fspath(image_root), p)
                elif image_root is not None and col != "path":
                    p = os.path.join(os.fspath(image_root), os.path.basename(p))
                if os.path.exists(p):
                    return p
        raise ValidationError(
            f"cannot find the image file of id {image_id!r} (coordinates 'path' / 'file_name'); pass "
            "image_root= with the folder the file names are relative to."
        )

    def plot_attention(
        self,
        image_id: Any,
        queries: str | Sequence[int] = "top",
        layer: int = -1,
        image_root: str | os.PathLike | None = None,
        *,
        k: int = 4,
        path: str | os.PathLike | None = None,
        logits: str = "pred_logits",
        boxes: str = "pred_boxes",
        class_names: Sequence[str] | None = None,
        alpha: float = 0.6,
    ) -> Any:
        """Overlay decoder attention maps on the image, with each query's box and class.

        Parameters
        ----------
        image_id : int or str
            Row id.
        queries : "top" or sequence of int, optional
            ``"top"``: the ``k`` queries with the highest foreground confidence
            (``1 - p(no object)``'s best class probability); or query indices.
        layer : int, optional
            Decoder layer (default: last).
        image_root : str or os.PathLike, optional
            Folder that ``file_name`` coordinates are relative to (default:
            the image folder recorded by the extraction run, when it exists).
        k : int, optional
            Number of queries for ``"top"``.
        path : str or os.PathLike, optional
            Write a PNG there; the figure is returned either way.
        logits, boxes : str, optional
            Variables with the class logits and the ``(cx, cy, w, h)`` boxes.
        class_names : sequence of str, optional
            Names by class index (default: COCO's when there are 91 classes).
        alpha : float, optional
            Opacity of the attention overlay.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        UnknownVariableError
            Missing variables or id.
        ValidationError
            Image file not found, bad queries or layer.
        """
        from PIL import Image

        from ..fairness.plots import _figure, _save

        store = self._an.store
        missing = [v for v in (logits, boxes) if v not in self._an.variables]
        if missing:
            raise UnknownVariableError(
                f"plot_attention needs {missing!r} (predictions) besides decoder_attention; extract "
                "with --extract-type decoder,attention."
            )
        lg = np.asarray(store.read(logits, ids=[image_id]))[0]
        bx = np.asarray(store.read(boxes, ids=[image_id]))[0]
        if isinstance(queries, str):
            if queries != "top":
                raise ValidationError(
                    f"queries={queries!r}; pass 'top' or a list of query indices."
                )
            q = top_queries(lg, k)
        else:
            q = np.asarray(list(queries), dtype=np.int64)
        maps = self.attention(image_id, layer=layer, queries=q.tolist())
        score, label = foreground_confidence(lg)
        names = (
            list(class_names)
            if class_names is not None
            else (list(COCO_CLASSES) if lg.shape[-1] - 1 == len(COCO_CLASSES) else None)
        )
        with Image.open(self._image_path(image_id, image_root)) as im:
            img = np.asarray(im.convert("RGB"))
        H, W = img.shape[:2]
        n = len(q)
        cols = min(n, 4)
        rows = (n + cols - 1) // cols
        fig = _figure(3.2 * cols, 3.0 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, qi in zip(axes, q):
            ax.imshow(img)
            ax.imshow(
                maps.sel(query=int(qi)).values,
                extent=(0, W, H, 0),
                cmap="inferno",
                alpha=alpha,
                interpolation="bilinear",
            )
            cx, cy, bw, bh = bx[qi] * np.array([W, H, W, H])
            ax.add_patch(_rectangle((cx - bw / 2, cy - bh / 2), bw, bh))
            cls = int(label[qi])
            cname = names[cls] if names is not None and cls < len(names) else f"class {cls}"
            ax.set_title(f"query {int(qi)}: {cname} {score[qi]:.2f}", fontsize=9)
            ax.set_axis_off()
        for ax in axes[n:]:
            ax.set_axis_off()
        fig.suptitle(f"image {image_id}, decoder layer {maps.attrs['layer']}", fontsize=10)
        if path is not None:
            _save(fig, path)
        return fig


def _rectangle(xy: tuple[float, float], w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor="cyan", linewidth=2)


def __getattr__(name: str) -> Any:
    """``AttentionMixin`` (before 0.2) is ``AttentionAccessor`` now: a FutureWarning, then the accessor."""
    if name == "AttentionMixin":
        import warnings

        warnings.warn(
            "embstore.analysis.attention.AttentionMixin is deprecated and will be removed in embstore 0.3; use embstore.analysis.attention.AttentionAccessor",
            FutureWarning,
            stacklevel=2,
        )
        return AttentionAccessor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
