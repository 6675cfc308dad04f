"""Tree figures that fit their box: panels in columns and rows of a given width, sizes in pixels, labels placed so
that none overlaps another or leaves its panel."""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_WIDTH", "GAP_X", "GAP_Y", "MARGIN", "MIN_PANEL", "Box", "Cell", "Grid", "label_box",
           "place_labels", "row_height", "text_width", "tree_grid"]

#: The narrowest panel (px): narrower, the panels wrap into another row.
MIN_PANEL = 320
#: Pixels between two columns (the next panel's slot numbers) and between two rows (the x axis's numbers and
#: title, then the next row's panel titles).
GAP_X = 40
GAP_Y = 84
#: Margins around the panels (px): left for the slot axis, top for plotly's tool bar, then the colour bar, then the
#: panel titles, bottom for the x axis and the legend.
MARGIN = {"l": 56, "r": 16, "t": 104, "b": 84}
#: Width assumed when none is given (a notebook's output area; the figure itself then takes its container's).
DEFAULT_WIDTH = 900
#: Font size of the labels beside the nodes (px), and the height of one line of them.
LABEL_FONT = 11
LINE = 1.3 * LABEL_FONT


def row_height(slots: int) -> int:
    """Height (px) of a row of panels whose largest has ``slots`` slots: 44 px a slot, within 180..740.

    >>> row_height(1), row_height(4), row_height(16), row_height(64)
    (180, 212, 740, 740)
    """
    return int(min(740, max(180, 36 + 44 * slots)))


@dataclass(frozen=True)
class Cell:
    """Where one panel sits: its column and row, its domains in paper coordinates, and its size in pixels."""

    column: int
    row: int
    x: tuple[float, float]
    y: tuple[float, float]
    width: float
    height: float


@dataclass(frozen=True)
class Grid:
    """The figure's size (px) and the cell of each panel, in order (row by row, left to right)."""

    width: int
    height: int
    columns: int
    rows: int
    cells: tuple[Cell, ...]


def columns_for(count: int, width: int) -> int:
    """Columns for ``count`` panels in ``width`` px: as many as fit at ``MIN_PANEL`` each, then balanced so that
    the rows hold as many panels as they can evenly (4 panels in room for 3: two rows of two).

    >>> columns_for(4, 1230), columns_for(4, 1870), columns_for(8, 1230), columns_for(8, 1870), columns_for(2, 600)
    (2, 4, 3, 4, 1)
    """
    room = width - MARGIN["l"] - MARGIN["r"]
    most = max(1, (room + GAP_X) // (MIN_PANEL + GAP_X))
    rows = math.ceil(max(count, 1) / most)
    return max(1, math.ceil(max(count, 1) / rows))


def tree_grid(slots: Sequence[int], width: int | None = None, top: int = MARGIN["t"]) -> Grid:
    """The grid of panels with ``slots`` slots each in a figure ``width`` px wide (``None``: ``DEFAULT_WIDTH``)
    under a top margin of ``top`` px; the figure is never narrower than one ``MIN_PANEL`` panel and its margins
    (the box scrolls then).

    >>> g = tree_grid([1, 4, 4, 4], 1230)
    >>> g.columns, g.rows, g.width, g.height, g.cells[3].column, g.cells[3].row
    (2, 2, 1230, 696, 1, 1)
    """
    width = max(int(width or DEFAULT_WIDTH), MIN_PANEL + MARGIN["l"] + MARGIN["r"])
    count = max(len(slots), 1)
    columns = columns_for(count, width)
    rows = math.ceil(count / columns)
    heights = [row_height(max(slots[r * columns : (r + 1) * columns], default=1)) for r in range(rows)]
    plot_w = width - MARGIN["l"] - MARGIN["r"]
    plot_h = sum(heights) + GAP_Y * (rows - 1)
    panel_w = (plot_w - GAP_X * (columns - 1)) / columns
    cells = []
    for i in range(len(slots)):
        row, column = divmod(i, columns)
        left = column * (panel_w + GAP_X)
        above = sum(heights[:row]) + GAP_Y * row
        cells.append(Cell(column, row, (left / plot_w, (left + panel_w) / plot_w),
                          (1 - (above + heights[row]) / plot_h, 1 - above / plot_h), panel_w, float(heights[row])))
    return Grid(width, int(plot_h + top + MARGIN["b"]), columns, rows, tuple(cells))


def text_width(text: str, size: float = LABEL_FONT) -> float:
    """A generous estimate of the width (px) of ``text`` (HTML-escaped, as plotly gets it) in a sans-serif font:
    wide characters (CJK) a full em, others 0.64 em.

    >>> round(text_width("-0.41")), round(text_width("&lt;s&gt;")), round(text_width("日本"))
    (35, 21, 22)
    """
    shown = html.unescape(text)
    return size * sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.0 if unicodedata.combining(ch)
                      else 0.64 for ch in shown)


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in px, y down


def label_box(x: float, y: float, width: float, radius: float, position: str) -> Box:
    """The box (px) that plotly.js gives a label of ``width`` px at ``position`` (``"middle right"``, ``"top
    center"``...) beside a marker of ``radius`` px at ``(x, y)``: it offsets text by ``radius / 0.8 + 1``."""
    off = radius / 0.8 + 1
    vertical, horizontal = position.split()
    x0 = x + off if horizontal == "right" else x - off - width if horizontal == "left" else x - width / 2
    if vertical == "middle":
        y0 = y - LINE / 2
    elif vertical == "top":
        y0 = y - off - LINE + 0.2 * LABEL_FONT
    else:
        y0 = y + off - 0.2 * LABEL_FONT
    return (x0 - 1, y0 - 1, x0 + width + 1, y0 + LINE + 1)


def _clear(box: Box, taken: list[Box], width: float, height: float) -> bool:
    """Whether ``box`` lies inside the panel and overlaps none of ``taken``."""
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return False
    return not any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken)


def place_labels(points: Sequence[tuple[float, float, float, str]], options: Sequence[Sequence[str]],
                 width: float, height: float, taken: list[Box] | None = None) -> list[str | None]:
    """A position for each label, or ``None`` to leave it out: in order (put the important first), each takes the
    first of its ``options`` whose box lies inside the ``width`` x ``height`` px panel and clear of the labels
    placed before it. ``points`` are ``(x px, y px, marker radius px, text)``; ``taken`` collects the boxes.

    >>> place_labels([(100, 50, 6, "0.94"), (100, 53, 6, "0.04")], [["middle right"]] * 2, 300, 100)
    ['middle right', None]
    >>> place_labels([(100, 50, 6, "0.94"), (100, 53, 6, "0.04")], [["middle right", "bottom right"]] * 2, 300, 100)
    ['middle right', 'bottom right']
    """
    taken = [] if taken is None else taken
    placed: list[str | None] = []
    for (x, y, radius, text), choices in zip(points, options, strict=True):
        size = text_width(text)
        where = next((p for p in choices if _clear(label_box(x, y, size, radius, p), taken, width, height)), None)
        if where is not None:
            taken.append(label_box(x, y, size, radius, where))
        placed.append(where)
    return placed
