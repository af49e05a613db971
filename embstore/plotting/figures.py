"""A headless matplotlib figure of bounded size, saved as PNG, SVG or PDF.

Figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas
directly: no pyplot, no global backend switch, no window; safe in threads and
on headless machines.

Examples
--------
>>> import os
>>> fig = new_figure(4, 3)
>>> ax = fig.add_subplot(1, 1, 1)
>>> _ = ax.plot([0, 1], [1, 0])
>>> path = save_figure(fig, os.path.join(out_dir, "line.svg"))
>>> open(path, "rb").read(5)
b'<?xml'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._optional import attempt_import
from ..errors import ValidationError

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "MAX_FIGURE_INCHES",
    "figure_format",
    "new_figure",
    "save_figure",
]

#: Resolution of PNG figures.
DEFAULT_DPI = 150
#: File formats a figure can be saved in.
FORMATS = ("png", "svg", "pdf")
#: No side of a figure grows beyond this many inches (2400 px at 150 dpi).
MAX_FIGURE_INCHES = 16.0


def new_figure(width: float, height: float, dpi: int = DEFAULT_DPI) -> Any:
    """A constrained-layout figure with an Agg canvas, sides clipped to 3-16 by 2-16 inches.

    Parameters
    ----------
    width, height : float
        Requested size in inches.
    dpi : int, optional
        Resolution used when it is saved as PNG.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingDependencyError
        If matplotlib is not installed (``pip install "embstore[plot]"``).

    Examples
    --------
    >>> [float(s) for s in new_figure(40, 1).get_size_inches()]
    [16.0, 2.0]
    """
    attempt_import("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = min(max(width, 3.0), MAX_FIGURE_INCHES)
    height = min(max(height, 2.0), MAX_FIGURE_INCHES)
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The file format of a figure: ``format`` if given, else the path's suffix (default png).

    Parameters
    ----------
    path : str or os.PathLike
        Output file.
    format : {"png", "svg", "pdf"}, optional
        Explicit format (wins over the suffix).

    Returns
    -------
    str

    Raises
    ------
    ValidationError
        For any other format.

    Examples
    --------
    >>> figure_format("a.SVG"), figure_format("a", None), figure_format("a.png", "pdf")
    ('svg', 'png', 'pdf')
    """
    fmt = (format or Path(path).suffix.lstrip(".") or "png").lower()
    if fmt not in FORMATS:
        raise ValidationError(
            f"cannot save a figure as {fmt!r} ({os.fspath(path)}); "
            "use a .png, .svg or .pdf path or format='png', 'svg' or 'pdf'."
        )
    return fmt


def save_figure(fig: Any, path: str | os.PathLike, format: str | None = None) -> str:
    """Save a figure (parent folders are created) at the figure's dpi.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or os.PathLike
        Output file.
    format : {"png", "svg", "pdf"}, optional
        File format (default: from the suffix, else png).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    ValidationError
        For a format other than png, svg or pdf.

    Examples
    --------
    >>> import os
    >>> path = save_figure(new_figure(3, 2), os.path.join(out_dir, "sub", "blank"), format="pdf")
    >>> open(path, "rb").read(4)
    b'%PDF'
    """
    name = os.fspath(path)
    fmt = figure_format(name, format)
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(name, format=fmt, dpi=fig.dpi)
    return name
