"""An interactive, standalone HTML explorer of a 2-D projection (Plotly).

Why Plotly rather than Bokeh: plotly.py writes one HTML file with plotly.js
inlined (``include_plotlyjs=True``: no CDN, no server, opens from disk), has
WebGL scatter plots (``Scattergl``) that stay fluid at 100k points, and
lasso / box selection built into the mode bar; it was also already in the
environment. Bokeh offers the same (and HTML tooltips), but would have been
one more dependency for the same page. The thumbnails on hover and the list
of selected ids are a few lines of JavaScript on plotly's ``plotly_hover`` /
``plotly_selected`` events.

The projection is PCA by default, computed exactly over *all* rows in one
streamed pass (mean and covariance accumulated block by block), or UMAP
(``method="umap"``, needs ``umap-learn``, fitted on the shown rows). Stores
with more than ``max_points`` rows (100k by default) are shown as a seeded
random subsample of ``max_points`` rows, and the page says so. Thumbnails
are embedded (base64) up to ``max_thumbs`` shown rows; beyond that the page
refers to the image files by ``file://`` URI, which a page opened from disk
may load.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._optional import attempt_import
from ..errors import ValidationError
from ._common import resolve_variable
from .gallery_views import resolve_paths

__all__ = ["streamed_pca", "write_explorer"]

logger = logging.getLogger(__name__)

MAX_POINTS = 100_000
MAX_THUMBS = 3000

_JS = r"""
(function () {
 function init() {
  var gd = document.getElementById('{div}');
  var meta = {meta};
  var tip = document.getElementById('embstore-tip');
  var box = document.getElementById('embstore-selected');
  var count = document.getElementById('embstore-count');
  function rowOf(pt) { return pt.customdata; }
  function showRow(r, x, y) {
    var img = meta.thumbs[r] ? '<img src="' + meta.thumbs[r] + '">' : '<div class="noimg">no image</div>';
    tip.innerHTML = img + '<pre>' + meta.text[r] + '</pre>';
    tip.style.left = (x + 16) + 'px'; tip.style.top = (y + 16) + 'px'; tip.style.display = 'block';
  }
  function select(rows) {
    var ids = rows.map(function (r) { return meta.ids[r]; });
    box.value = ids.join('\n'); box.textContent = box.value;
    count.textContent = ids.length + ' selected';
  }
  window.embstoreSelect = select;
  window.embstoreShow = showRow;
  gd.on('plotly_hover', function (ev) {
    var pt = ev.points[0], e = ev.event || {};
    showRow(rowOf(pt), e.clientX || 0, e.clientY || 0);
  });
  gd.on('plotly_unhover', function () { tip.style.display = 'none'; });
  gd.on('plotly_selected', function (ev) { select(ev && ev.points ? ev.points.map(rowOf) : []); });
  gd.on('plotly_deselect', function () { select([]); });
  document.getElementById('embstore-copy').onclick = function () {
    box.select();
    if (navigator.clipboard) { navigator.clipboard.writeText(box.value).catch(function () { document.execCommand('copy'); }); }
    else { document.execCommand('copy'); }
  };
  var h = decodeURIComponent(window.location.hash || '');
  if (h.indexOf('#select=') === 0) { select(h.slice(8).split(',').filter(String).map(Number)); }
  if (h.indexOf('#hover=') === 0) { showRow(Number(h.slice(7)), 100, 100); }
  document.body.setAttribute('data-embstore-ready', String(meta.ids.length));
 }
 // plotly runs this after drawing, possibly before the rest of the page is parsed
 if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', init); } else { init(); }
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 0.8em; color: #222; }}
h1 {{ font-size: 1.2em; margin: 0 0 0.3em; }}
.note {{ font-size: 0.9em; color: #555; margin: 0.2em 0; }}
#wrap {{ display: flex; gap: 1em; }}
#side {{ width: 260px; }}
#embstore-selected {{ width: 250px; height: 360px; font-family: monospace; font-size: 11px; }}
#embstore-tip {{ position: fixed; display: none; background: #fff; border: 1px solid #888; padding: 4px;
  z-index: 1000; pointer-events: none; max-width: 260px; box-shadow: 2px 2px 6px #aaa; }}
#embstore-tip img {{ max-width: {thumb}px; max-height: {thumb}px; display: block; }}
#embstore-tip pre {{ margin: 2px 0 0; font-size: 11px; white-space: pre-wrap; }}
#embstore-errors {{ display: none; }}
</style>
<script>
// script errors are collected and shown in #embstore-errors (checked by the browser test)
window.embstoreErrors = [];
window.addEventListener('error', function (e) {{ window.embstoreErrors.push(String(e.message || e)); }});
window.addEventListener('unhandledrejection', function (e) {{ window.embstoreErrors.push(String(e.reason)); }});
</script></head><body>
<h1>{title}</h1>
<p class="note">{note}</p>
<div id="wrap"><div id="plot">{plot}</div>
<div id="side"><b>Selection</b> (lasso or box tool) <span id="embstore-count">0 selected</span><br>
<textarea id="embstore-selected" readonly placeholder="ids of selected points"></textarea><br>
<button id="embstore-copy">Copy ids</button></div></div>
<div id="embstore-tip"></div><pre id="embstore-errors"></pre>
<script>
window.addEventListener('load', function () {{
  document.getElementById('embstore-errors').textContent = window.embstoreErrors.join('\\n');
}});
</script>
</body></html>
"""


def streamed_pca(
    blocks: Any, dim: int, keep: np.ndarray, n_components: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA over every streamed vector, projecting only the ``keep`` positions.

    Parameters
    ----------
    blocks : iterable of (start, numpy.ndarray)
        The vectors, block by block (float32 ``[m, dim]``).
    dim : int
        Vector size.
    keep : numpy.ndarray
        Sorted positions whose vectors are projected.
    n_components : int
        Output dimensions.

    Returns
    -------
    coords : numpy.ndarray
        ``[len(keep), n_components]`` projections (principal axes, largest first,
        sign fixed so that each axis's largest loading is positive).
    explained : numpy.ndarray
        Explained variance ratio of each component.
    """
    s = np.zeros(dim, np.float64)
    ss = np.zeros((dim, dim), np.float64)
    n = 0
    kept = []
    for start, block in blocks:
        b = np.asarray(block, np.float64)
        s += b.sum(0)
        ss += b.T @ b
        n += b.shape[0]
        lo, hi = np.searchsorted(keep, [start, start + b.shape[0]])
        kept.append(b[keep[lo:hi] - start])
    if n < 2:
        raise ValidationError(f"a projection needs at least 2 rows; got {n}.")
    mean = s / n
    cov = (ss - n * np.outer(mean, mean)) / (n - 1)
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:n_components]
    axes = v[:, order]
    axes *= np.sign(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])])
    x = np.concatenate(kept) if kept else np.zeros((0, dim))
    total = w.clip(min=0).sum()
    return ((x - mean) @ axes).astype(np.float32), (w[order] / total if total > 0 else w[order])


def _thumb_uri(path: str | None, size: int) -> str:
    if path is None:
        return ""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except (OSError, ValueError, SyntaxError):
        return ""


def _hover_text(labels: pd.DataFrame, rows: np.ndarray, cols: list[str]) -> list[str]:
    sub = labels.iloc[rows][cols]
    return [
        "\n".join(f"{c}: {v}" for c, v in zip(cols, vals)) for vals in sub.itertuples(index=False)
    ]


def write_explorer(
    an: Any,
    out: str | os.PathLike,
    *,
    color: str | None = "skin",
    variable: str | None = None,
    pool: str | None = "mean",
    method: str = "pca",
    image_root: Any = None,
    path_coord: str | None = None,
    max_points: int = MAX_POINTS,
    max_thumbs: int = MAX_THUMBS,
    thumb: int = 128,
    seed: int = 0,
    title: str | None = None,
) -> dict[str, Any]:
    """Write the explorer page for the rows of ``an``.

    Parameters
    ----------
    an : EmbeddingAnalyzer
        Rows to show (a selection is fine).
    out : path
        Output ``.html`` file.
    color : str or None
        Coordinate that colours the points (categorical: one legend entry
        per value; numeric with many values: a colour scale).
    variable, pool
        Which vectors.
    method : {"pca", "umap"}
        Projection (UMAP needs ``umap-learn``: ``pip install "embstore[viz]"``).
    image_root, path_coord
        Where the images are (see :func:`embstore.discovery.gallery_views.resolve_paths`).
    max_points : int
        Larger stores are shown as a random subsample of this many rows.
    max_thumbs : int
        Embed thumbnails up to this many shown rows (else ``file://`` links).
    thumb : int
        Thumbnail size in pixels.
    seed : int
        Subsample (and UMAP) seed.
    title : str, optional
        Page title.

    Returns
    -------
    dict
        ``path``, ``n_rows``, ``n_shown``, ``subsampled``, ``method``,
        ``explained`` (PCA variance ratios) and ``note`` (the text shown).
    """
    go = attempt_import("plotly.graph_objects")
    if method not in ("pca", "umap"):
        raise ValidationError(f"method={method!r}; use 'pca' or 'umap'.")
    variable = resolve_variable(an, variable)
    labels = an.labels(variable, pool=pool)
    n = len(labels)
    if color is not None and color not in labels.columns:
        raise ValidationError(
            f"color={color!r} is not a coordinate; coordinates: {list(labels.columns)}."
        )
    rng = np.random.default_rng(seed)
    subsampled = n > max_points
    keep = np.sort(rng.choice(n, max_points, replace=False)) if subsampled else np.arange(n)
    dim = int(an.vectors(variable, pool=pool).shape[1])
    blocks = an.iter_vectors(variable, pool=pool)
    explained = None
    if method == "pca":
        xy, explained = streamed_pca(blocks, dim, keep)
        axis = [f"PC{i + 1} ({100 * float(r):.1f}%)" for i, r in enumerate(explained)]
    else:
        umap = attempt_import("umap")
        x = np.concatenate([b[keep[(keep >= s) & (keep < s + len(b))] - s] for s, b in blocks])
        xy = umap.UMAP(
            n_components=2, random_state=seed, n_neighbors=min(15, max(2, len(x) - 1))
        ).fit_transform(x)
        axis = ["UMAP 1", "UMAP 2"]
    paths = resolve_paths(labels, path_coord, image_root)
    shown_paths = [paths[i] for i in keep]
    if len(keep) <= max_thumbs:
        thumbs = [_thumb_uri(p, thumb) for p in shown_paths]
        how = "thumbnails embedded"
    else:
        thumbs = [Path(p).resolve().as_uri() if p else "" for p in shown_paths]
        how = f"more than {max_thumbs} points: thumbnails load from the image files (file://)"
    cols = list(labels.columns)
    text = _hover_text(labels, keep, cols)
    ids = labels[an.id_name].to_numpy()[keep]
    note = (
        f"{len(keep):,} of {n:,} rows shown"
        + (
            f" (random subsample, seed {seed}: the store has at least {max_points:,} rows)"
            if subsampled
            else ""
        )
        + f"; {method.upper()} of {variable!r}"
        + (f", coloured by {color!r}" if color else "")
        + f"; {how}. Hover for the image and "
        "coordinates, use the lasso or box tool to list ids."
    )
    fig = go.Figure()
    pos = np.arange(len(keep))
    if color is None:
        groups = [(None, pos)]
        numeric = False
    else:
        cv = labels[color].to_numpy()[keep]
        numeric = pd.api.types.is_numeric_dtype(labels[color]) and len(pd.unique(cv)) > 12
        groups = [(None, pos)] if numeric else [(v, pos[cv == v]) for v in pd.unique(cv)]
    for value, idx in groups:
        marker: dict[str, Any] = {"size": 6 if len(keep) < 20000 else 3, "opacity": 0.8}
        if numeric:
            marker.update(
                color=labels[color].to_numpy()[keep].astype(float),
                colorscale="Viridis",
                showscale=True,
                colorbar={"title": {"text": color}},
            )
        fig.add_trace(
            go.Scattergl(
                x=xy[idx, 0],
                y=xy[idx, 1],
                mode="markers",
                customdata=idx,
                marker=marker,
                name=f"{color}={value}" if value is not None else (color or "rows"),
                hovertemplate=f"{an.id_name}=%{{text}}<extra></extra>",
                text=[str(v) for v in ids[idx]],
            )
        )
    fig.update_layout(
        dragmode="lasso",
        width=900,
        height=700,
        xaxis_title=axis[0],
        yaxis_title=axis[1],
        legend={"title": {"text": color or ""}},
        margin={"l": 40, "r": 10, "t": 10, "b": 40},
    )
    div = "embstore-explorer"
    meta = {
        "ids": [_jsonable(v) for v in ids],
        "text": [html.escape(t) for t in text],
        "thumbs": thumbs,
    }
    js = _JS.replace("{div}", div).replace("{meta}", json.dumps(meta))
    plot = fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id=div,
        post_script=js,
        config={"displaylogo": False, "scrollZoom": True},
    )
    page = _PAGE.format(
        title=html.escape(title or f"embstore explorer: {variable}"),
        note=html.escape(note),
        plot=plot,
        thumb=thumb,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    logger.info("wrote explorer %s: %s", out, note)
    return {
        "path": out,
        "n_rows": n,
        "n_shown": len(keep),
        "subsampled": subsampled,
        "method": method,
        "explained": None if explained is None else [float(e) for e in explained],
        "note": note,
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v if isinstance(v, (int, float, str)) else str(v)
