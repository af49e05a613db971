"""Captioned, self-contained HTML galleries of groups of images.

A gallery is a list of :class:`Group` objects (a title, a score and
:class:`Item` members) rendered as HTML pages whose thumbnails are embedded
as base64 JPEG ``data:`` URIs: a page opens from disk, offline, with no
folder of side files. Thumbnails keep their aspect ratio (fitted into a
``thumb`` x ``thumb`` box); each has a caption (id, file name, group, score
and any chosen coordinates such as skin and lighting). A missing or
unreadable image becomes an inline SVG placeholder that says so and names
the file. Groups keep the order given (callers sort by size or score);
pages hold at most ``per_page`` images (``index.html``, ``page-2.html``,
...), linked to each other. A group larger than a page is cut at
``per_group`` members by the caller.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ValidationError

__all__ = ["Group", "Item", "placeholder_uri", "thumbnail_uri", "write_gallery"]

logger = logging.getLogger(__name__)


@dataclass
class Item:
    """One image of a gallery.

    Attributes
    ----------
    id : object
        Row id.
    path : str or None
        Image file (``None``: no path known, shown as a placeholder).
    score : float or None
        Score shown in the caption.
    fields : dict
        Further caption fields (e.g. ``{"skin": 3, "lighting": "dim"}``).
    """

    id: Any
    path: str | None
    score: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """A titled group of images (a duplicate group, a cluster, a query's neighbours...)."""

    title: str
    items: list[Item]
    score: float | None = None
    key: Any = None


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #fafafa; color: #222; }}
h1 {{ font-size: 1.3em; }} h2 {{ font-size: 1.05em; margin: 1.2em 0 0.4em; }}
.group {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; width: {box}px; background: #fff; border: 1px solid #ddd; padding: 4px; }}
figure .frame {{ width: {box}px; height: {box}px; display: flex; align-items: center;
  justify-content: center; background: #f0f0f0; }}
figure img {{ max-width: {box}px; max-height: {box}px; object-fit: contain; }}
figcaption {{ font-size: 11px; line-height: 1.3; word-break: break-all; margin-top: 3px; }}
figcaption b {{ font-weight: 600; }}
.nav {{ margin: 1em 0; }} .nav a, .nav span {{ margin-right: 0.6em; }}
.query {{ border: 2px solid #1f77b4; }}
</style></head><body>
<h1>{title}</h1>
<p class="summary">{summary}</p>
{nav}
{body}
{nav}
</body></html>
"""


def placeholder_uri(label: str, size: int) -> str:
    """An inline SVG tile that reads "missing image" and the file name.

    Parameters
    ----------
    label : str
        Text shown under "missing image" (usually the file name).
    size : int
        Side in pixels.

    Returns
    -------
    str
        A ``data:image/svg+xml;base64,...`` URI.
    """
    text = html.escape(label[-28:])
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">'
        f'<rect width="100%" height="100%" fill="#fde8e8" stroke="#c0392b" stroke-width="3" '
        f'stroke-dasharray="6 4"/><text x="50%" y="45%" font-size="13" font-family="sans-serif" '
        f'fill="#c0392b" text-anchor="middle">missing image</text><text x="50%" y="60%" '
        f'font-size="9" font-family="sans-serif" fill="#7f1d1d" text-anchor="middle">{text}</text></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def thumbnail_uri(path: str | os.PathLike | None, size: int, quality: int = 85) -> tuple[str, bool]:
    """A base64 JPEG thumbnail fitted into ``size`` x ``size`` (aspect kept).

    Parameters
    ----------
    path : path or None
        Image file.
    size : int
        Longest side in pixels.
    quality : int
        JPEG quality.

    Returns
    -------
    uri : str
        A ``data:`` URI (the placeholder when the image cannot be read).
    ok : bool
        Whether the image was read.
    """
    if path is None:
        return placeholder_uri("no path", size), False
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
    except (OSError, ValueError, SyntaxError) as exc:
        logger.info("gallery: cannot read %s (%s); placeholder used", path, exc)
        return placeholder_uri(os.path.basename(str(path)), size), False
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(), True


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _figure(item: Item, group_title: str, size: int, css: str) -> tuple[str, bool]:
    uri, ok = thumbnail_uri(item.path, size)
    name = os.path.basename(item.path) if item.path else "-"
    lines = [
        f"<b>id</b> {html.escape(_fmt(item.id))}",
        f"<b>file</b> {html.escape(name)}",
        f"<b>group</b> {html.escape(group_title)}",
    ]
    if item.score is not None:
        lines.append(f"<b>score</b> {_fmt(float(item.score))}")
    for k, v in item.fields.items():
        lines.append(f"<b>{html.escape(str(k))}</b> {html.escape(_fmt(v))}")
    alt = html.escape(f"{name} (id {item.id})" + ("" if ok else ", missing"))
    tip = html.escape(str(item.path or ""))
    return (
        f'<figure class="{css}" title="{tip}"><div class="frame"><img src="{uri}" alt="{alt}"></div>'
        f"<figcaption>{'<br>'.join(lines)}</figcaption></figure>"
    ), ok


def _pages(groups: list[Group], per_page: int) -> list[list[Group]]:
    pages: list[list[Group]] = [[]]
    count = 0
    for g in groups:
        if count and count + len(g.items) > per_page:
            pages.append([])
            count = 0
        pages[-1].append(g)
        count += len(g.items)
    return pages


def _page_name(p: int) -> str:
    return "index.html" if p == 0 else f"page-{p + 1}.html"


def write_gallery(
    groups: list[Group],
    out_dir: str | os.PathLike,
    *,
    title: str = "embstore gallery",
    thumb: int = 160,
    per_page: int = 300,
    summary: str = "",
    first_is_query: bool = False,
) -> Path:
    """Write the groups as paginated, self-contained HTML pages.

    Parameters
    ----------
    groups : list of Group
        In display order.
    out_dir : path
        Output folder (created); ``index.html`` is the first page.
    title : str
        Page heading.
    thumb : int
        Thumbnail box side in pixels.
    per_page : int
        Maximum images per page (whole groups; a page holds at least one).
    summary : str
        A line under the heading (e.g. how the groups were found).
    first_is_query : bool
        Outline each group's first image (the query of a neighbour view).

    Returns
    -------
    pathlib.Path
        ``out_dir / "index.html"``.
    """
    if per_page < 1 or thumb < 8:
        raise ValidationError(f"per_page ({per_page}) must be >= 1 and thumb ({thumb}) >= 8.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pages = _pages(groups, per_page)
    n_img = sum(len(g.items) for g in groups)
    missing = 0
    for p, page in enumerate(pages):
        body = []
        for g in page:
            head = html.escape(g.title) + (
                f" &middot; score {_fmt(float(g.score))}" if g.score is not None else ""
            )
            figs = []
            for t, item in enumerate(g.items):
                fig, ok = _figure(
                    item, g.title, thumb, "query" if first_is_query and t == 0 else ""
                )
                missing += not ok
                figs.append(fig)
            body.append(
                f'<section><h2>{head} ({len(g.items)} images)</h2><div class="group">{"".join(figs)}</div></section>'
            )
        if len(pages) > 1:
            links = [
                f"<span>page {q + 1}</span>"
                if q == p
                else f'<a href="{_page_name(q)}">page {q + 1}</a>'
                for q in range(len(pages))
            ]
            nav = f'<div class="nav">{"".join(links)}</div>'
        else:
            nav = ""
        text = (
            f"{len(groups)} groups, {n_img} images, page {p + 1} of {len(pages)}. "
            + html.escape(summary)
        )
        (out / _page_name(p)).write_text(
            _PAGE.format(
                title=html.escape(title), box=thumb, nav=nav, body="\n".join(body), summary=text
            ),
            encoding="utf-8",
        )
    if missing:
        logger.warning(
            "gallery: %d of %d images could not be read (placeholders shown)", missing, n_img
        )
    logger.info("wrote gallery %s (%d pages)", out / "index.html", len(pages))
    return out / "index.html"
