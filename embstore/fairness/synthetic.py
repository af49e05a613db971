"""Synthetic FACET-format data with planted effects, for tests and examples.

:func:`make_synthetic_facet` draws images with annotated people (Monk skin
tone, lighting, gender, age, pixel boxes) plus DETR-like outputs per image
(``query_embeddings``, ``pred_boxes``, ``pred_logits`` with 91 classes + "no
object"), and plants two effects whose sizes are known exactly:

* **Embedding shift.** Every query embedding of an image whose skin tone is
  ``shift_group`` is moved by ``shift`` along a fixed unit direction ``u``.
  All embeddings also share a common offset ``m0`` (norm ``base_norm``,
  orthogonal to ``u``), plus unit Gaussian noise. So the (pooled or per
  query) population centroid of the shifted group is ``m0 + shift u`` and that
  of every other group is ``m0``: centroid norms ``sqrt(base_norm^2 +
  shift^2)`` vs ``base_norm``, and the cosine distance between the shifted
  centroid and the others is ``1 - base_norm / sqrt(base_norm^2 + shift^2)``
  (see :meth:`SyntheticFacet.expected_centroid_distance`).
* **Missed detections.** Each person of skin tone ``miss_group`` is missed
  with probability ``miss_rate`` (others with ``base_miss_rate``): the query
  assigned to a missed person predicts "no object". Detected people get a
  person-class query whose box overlaps theirs with IoU >= ``min_iou``
  (default 0.8, so recall is the same at IoU 0.5 and 0.75).

All people of one image share its skin tone and lighting, so image-level
labels equal person-level labels. With ``shift=0`` and ``miss_rate =
base_miss_rate`` the data set is null (no group differs).

Examples
--------
>>> data = make_synthetic_facet(n_images=40, seed=0)
>>> data.query_embeddings.shape, data.pred_logits.shape[-1]
((40, 8, 16), 92)
>>> sorted(data.persons.columns)[:4]
['age', 'gender', 'h', 'image_id']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ValidationError
from .detection import PERSON_CLASS

__all__ = ["SyntheticFacet", "make_synthetic_facet", "write_synthetic_store"]

logger = logging.getLogger(__name__)

#: Number of logits per query: 91 COCO ids + "no object".
N_LOGITS = 92
LIGHTING = ("well_lit", "dimly_lit", "underexposed", "overexposed")
GENDER = ("male", "female", "non_binary")
AGE = ("younger", "middle", "older")


@dataclass
class SyntheticFacet:
    """A synthetic FACET-like data set (see :func:`make_synthetic_facet`).

    Attributes
    ----------
    images : pandas.DataFrame
        One row per image: ``image_id``, ``file_name``, ``width``,
        ``height``, ``skin``, ``lighting``, ``n_people``.
    persons : pandas.DataFrame
        One row per person: ``person_id``, ``image_id``, ``x``, ``y``, ``w``,
        ``h`` (pixels), ``skin``, ``lighting``, ``gender``, ``age``, and the
        ground truth ``planted_missed`` (bool).
    query_embeddings : numpy.ndarray
        ``(n_images, n_queries, hidden)`` float32.
    pred_boxes : numpy.ndarray
        ``(n_images, n_queries, 4)`` relative ``(cx, cy, w, h)``.
    pred_logits : numpy.ndarray
        ``(n_images, n_queries, 92)``.
    truth : dict
        The planted parameters (``shift_group``, ``shift``, ``base_norm``,
        ``direction``, ``miss_group``, ``miss_rate``, ``base_miss_rate``).
    """

    images: pd.DataFrame
    persons: pd.DataFrame
    query_embeddings: np.ndarray
    pred_boxes: np.ndarray
    pred_logits: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)

    def expected_centroid_distance(self) -> float:
        """Planted cosine distance between the shifted group's centroid and the others'.

        Returns
        -------
        float
        """
        b, s = self.truth["base_norm"], self.truth["shift"]
        return float(1.0 - b / np.hypot(b, s))

    def expected_recall(self, skin: int) -> float:
        """Planted detection recall of a skin group.

        Parameters
        ----------
        skin : int
            Skin tone.

        Returns
        -------
        float
        """
        t = self.truth
        return 1.0 - (t["miss_rate"] if skin == t["miss_group"] else t["base_miss_rate"])


def _jitter_box(rng: np.random.Generator, box: np.ndarray, min_iou: float) -> np.ndarray:
    """A box (x, y, w, h) overlapping ``box`` with IoU >= min_iou."""
    # scaling both sides by s in [a, 1/a] around the centre gives IoU >= a^2
    a = np.sqrt(min_iou) + 0.3 * (1 - np.sqrt(min_iou))
    sx, sy = rng.uniform(a, 1.0, 2) ** rng.choice([-1, 1], 2)
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    # a small shift, keeping IoU >= min_iou: shift at most (1 - a) * side / 4
    cx += rng.uniform(-1, 1) * (1 - a) * w / 8
    cy += rng.uniform(-1, 1) * (1 - a) * h / 8
    return np.array([cx - w * sx / 2, cy - h * sy / 2, w * sx, h * sy])


def make_synthetic_facet(
    n_images: int = 200,
    *,
    n_queries: int = 8,
    hidden: int = 16,
    skins: Sequence[int] = (1, 2, 3, 4),
    skin_p: Sequence[float] | None = None,
    lighting_p: Sequence[float] = (0.6, 0.4),
    people_per_image: tuple[int, int] = (1, 2),
    shift_group: int | None = 2,
    shift: float = 1.0,
    base_norm: float = 1.0,
    miss_group: int | None = 3,
    miss_rate: float = 0.4,
    base_miss_rate: float = 0.05,
    min_iou: float = 0.8,
    seed: int = 0,
) -> SyntheticFacet:
    """Draw a synthetic FACET-like data set with planted effects.

    Parameters
    ----------
    n_images : int, optional
        Number of images.
    n_queries, hidden : int, optional
        DETR-like output sizes (DETR itself: 100 and 256).
    skins : sequence of int, optional
        Monk skin tones present (FACET: 1..10).
    skin_p : sequence of float, optional
        Probability of each tone (uniform by default).
    lighting_p : sequence of float, optional
        Probabilities of the first ``len(lighting_p)`` of :data:`LIGHTING`
        (``"well_lit"``, ``"dimly_lit"``, ``"underexposed"``, ``"overexposed"``).
    people_per_image : (int, int), optional
        Inclusive range of annotated people per image (at most ``n_queries``).
    shift_group : int or None, optional
        Skin tone whose embeddings are shifted (None: no shift).
    shift : float, optional
        Length of the shift.
    base_norm : float, optional
        Norm of the offset shared by all embeddings.
    miss_group : int or None, optional
        Skin tone whose people are missed at ``miss_rate`` (None: none).
    miss_rate, base_miss_rate : float, optional
        Miss probabilities of ``miss_group`` and of everyone else.
    min_iou : float, optional
        Lower bound of the IoU of every true detection (>= 0.5).
    seed : int, optional
        Random seed; equal seeds give equal data.

    Returns
    -------
    SyntheticFacet

    Raises
    ------
    ValidationError
        For inconsistent sizes or probabilities.
    """
    lo_p, hi_p = people_per_image
    if n_images < 1 or n_queries < 1 or hidden < 2:
        raise ValidationError(
            f"n_images={n_images}, n_queries={n_queries}, hidden={hidden}: need >= 1, >= 1 and >= 2."
        )
    if not 1 <= lo_p <= hi_p <= n_queries:
        raise ValidationError(
            f"people_per_image={people_per_image!r} must satisfy 1 <= low <= high <= n_queries ({n_queries})."
        )
    for name, p in (("miss_rate", miss_rate), ("base_miss_rate", base_miss_rate)):
        if not 0.0 <= p <= 1.0:
            raise ValidationError(f"{name}={p!r} must be a probability in [0, 1].")
    if not 0.5 <= min_iou < 1.0:
        raise ValidationError(f"min_iou={min_iou!r} must be in [0.5, 1).")
    rng = np.random.default_rng(seed)
    skin_values = np.asarray(skins)
    skin_probs = None if skin_p is None else np.asarray(skin_p, dtype=float) / np.sum(skin_p)
    img_skin = rng.choice(skin_values, n_images, p=skin_probs)
    lp = np.asarray(lighting_p, dtype=float)
    if not 1 <= len(lp) <= len(LIGHTING):
        raise ValidationError(
            f"lighting_p={lighting_p!r}: give 1 to {len(LIGHTING)} probabilities ({LIGHTING})."
        )
    img_light = np.asarray(LIGHTING)[rng.choice(len(lp), n_images, p=lp / lp.sum())]
    width = rng.choice([480, 640, 800], n_images)
    height = rng.choice([360, 480, 600], n_images)
    n_people = rng.integers(lo_p, hi_p + 1, n_images)

    direction = np.zeros(hidden)
    direction[0] = 1.0
    m0 = np.zeros(hidden)
    m0[1] = base_norm
    emb = rng.normal(size=(n_images, n_queries, hidden)) + m0
    if shift_group is not None:
        emb[img_skin == shift_group] += shift * direction

    # background queries: random boxes, "no object"
    pred_boxes = rng.uniform(0.05, 0.95, (n_images, n_queries, 4))
    pred_boxes[..., 2:] = rng.uniform(0.05, 0.3, (n_images, n_queries, 2))
    logits = rng.normal(0, 0.5, (n_images, n_queries, N_LOGITS))
    logits[..., -1] += 6.0

    rows = []
    pid = 0
    for i in range(n_images):
        W, H = float(width[i]), float(height[i])
        queries = rng.permutation(n_queries)[: n_people[i]]
        for q in queries:
            w = rng.uniform(0.15, 0.4) * W
            h = rng.uniform(0.3, 0.7) * H
            x = rng.uniform(0, W - w)
            y = rng.uniform(0, H - h)
            rate = (
                miss_rate
                if (miss_group is not None and img_skin[i] == miss_group)
                else base_miss_rate
            )
            missed = bool(rng.random() < rate)
            bx, by, bw, bh = _jitter_box(rng, np.array([x, y, w, h]), min_iou)
            pred_boxes[i, q] = [(bx + bw / 2) / W, (by + bh / 2) / H, bw / W, bh / H]
            if not missed:
                logits[i, q, -1] -= 6.0
                logits[i, q, PERSON_CLASS] += 6.0 + rng.uniform(0, 2)
            rows.append(
                {
                    "person_id": pid,
                    "image_id": i,
                    "x": x,
                    "y": y,
                    "w": w,
                    "h": h,
                    "skin": int(img_skin[i]),
                    "lighting": str(img_light[i]),
                    "gender": str(rng.choice(GENDER)),
                    "age": str(rng.choice(AGE)),
                    "planted_missed": missed,
                }
            )
            pid += 1
    images = pd.DataFrame(
        {
            "image_id": np.arange(n_images),
            "file_name": [f"sa_{i:08d}.png" for i in range(n_images)],
            "width": width.astype(np.int64),
            "height": height.astype(np.int64),
            "skin": img_skin.astype(np.int64),
            "lighting": img_light.astype(str),
            "n_people": n_people.astype(np.int64),
        }
    )
    truth = {
        "shift_group": shift_group,
        "shift": float(shift if shift_group is not None else 0.0),
        "base_norm": float(base_norm),
        "direction": direction,
        "miss_group": miss_group,
        "miss_rate": float(miss_rate),
        "base_miss_rate": float(base_miss_rate),
    }
    return SyntheticFacet(
        images=images,
        persons=pd.DataFrame.from_records(rows),
        query_embeddings=emb.astype(np.float32),
        pred_boxes=np.clip(pred_boxes, 0.0, 1.0).astype(np.float32),
        pred_logits=logits.astype(np.float32),
        truth=truth,
    )


def _write_images(data: SyntheticFacet, image_dir: str) -> None:
    """Write small PNG images (a tinted gradient with the people's boxes drawn)."""
    from PIL import Image, ImageDraw

    os.makedirs(image_dir, exist_ok=True)
    tones = np.linspace(235, 60, 10)
    by_image = data.persons.groupby("image_id")
    for _, img in data.images.iterrows():
        W, H = int(img["width"]) // 8, int(img["height"]) // 8
        tone = tones[int(img["skin"]) - 1] if 1 <= int(img["skin"]) <= 10 else 128
        light = 1.0 if img["lighting"] == "well_lit" else 0.55
        g = (
            np.linspace(0.7, 1.0, W)[None, :, None]
            * np.array([tone, tone * 0.85, tone * 0.7])
            * light
        )
        arr = np.broadcast_to(g, (H, W, 3)).clip(0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
        draw = ImageDraw.Draw(im)
        if img["image_id"] in by_image.groups:
            for _, p in by_image.get_group(img["image_id"]).iterrows():
                draw.rectangle(
                    [p.x / 8, p.y / 8, (p.x + p.w) / 8, (p.y + p.h) / 8], outline=(255, 255, 255)
                )
        im.save(os.path.join(image_dir, str(img["file_name"])))


def write_synthetic_store(
    data: SyntheticFacet,
    path: str | os.PathLike,
    *,
    image_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Any:
    """Write a :class:`SyntheticFacet` as an embstore store (DETR layout).

    Rows are images (``row_dim="image"``, ids ``image_id``) with the dense
    variables ``query_embeddings``, ``pred_boxes`` and ``pred_logits``, the
    image coordinates (``file_name``, ``width``, ``height``, ``skin``,
    ``lighting``, ``n_people``; plus ``path`` when images are written) and the
    person annotations in the ``"persons"`` table.

    Parameters
    ----------
    data : SyntheticFacet
        The data set.
    path : str or os.PathLike
        Store path (``.zarr`` directory or ``.h5`` file).
    image_dir : str or os.PathLike, optional
        Also write one small PNG per image there (for galleries) and record
        each image's ``path`` coordinate.
    overwrite : bool, optional
        Replace an existing store.

    Returns
    -------
    embstore.Store
        The store, closed; re-open it with ``Store.open(path)``.
    """
    from ..store import Store

    coords = {
        c: data.images[c].to_numpy()
        for c in ("file_name", "width", "height", "skin", "lighting", "n_people")
    }
    if image_dir is not None:
        _write_images(data, os.fspath(image_dir))
        coords["path"] = np.array(
            [
                os.path.abspath(os.path.join(os.fspath(image_dir), f))
                for f in data.images["file_name"]
            ]
        )
    st = Store.create(
        os.fspath(path),
        row_dim="image",
        id_name="image_id",
        variables={
            "query_embeddings": ("query", "hidden"),
            "pred_boxes": ("query", "box"),
            "pred_logits": ("query", "class"),
        },
        dtypes={"query_embeddings": "float32"},
        overwrite=overwrite,
        attrs={"model": "synthetic", "generator": "embstore.fairness.synthetic"},
    )
    try:
        st.append(
            data.images["image_id"].to_numpy(),
            {
                "query_embeddings": data.query_embeddings,
                "pred_boxes": data.pred_boxes,
                "pred_logits": data.pred_logits,
            },
            coords=coords,
        )
        st.write_table("persons", data.persons.drop(columns=["planted_missed"]))
    finally:
        st.close()
    return st
