"""The search tree as a beam lattice: one panel per trace, nodes clickable through their ``customdata``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go

from explorer.errors import ParameterError
from explorer.figures._fit import MARGIN, Cell, Grid, place_labels, text_width, tree_grid
from explorer.figures._layout import TreeLayout, tree_layout
from explorer.figures._style import FATE_COLORS, NODE_SCALE, base_layout, esc_name, panel_color, result_color
from explorer.figures._theme import Palette, Theme, palette, resolve_theme
from explorer.trace import PLACEHOLDER, Trace

__all__ = ["ColorMode", "node_at", "search_tree", "search_trees"]

ColorMode = Literal["score", "logprob", "group"]
Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]

GL_ABOVE = 1500  # points in a panel above which it is drawn with WebGL
LABEL_UP_TO = 60  # nodes of a kind up to which each gets a text label
#: Pruned leaves a panel draws at most. A big search has tens of thousands (16 beams x 60 tokens: 37,000), which blur
#: into one grey band and cost each redraw seconds without a GPU; beyond it each node keeps its best few pruned
#: candidates (all of them in the details of a clicked node), and the legend says how many.
LEAVES_UP_TO = 2000
WORDS_UP_TO_DEPTH = 10  # deeper runs get no token text beside their nodes (it would overlap)
#: What a tree's colours mean, by colour mode (the colour bar's title).
COLOR_TITLES = {"score": "path score (summed)", "logprob": "token log-prob"}
_LEAF_KINDS = ("pruned", "pushed down", "masked")
#: Leaves' symbols: a dot for the pruned, a down triangle for one of the model's favourites a processor pushed out of
#: the top-k, a cross for a masked one.
_LEAF_SYMBOLS = {"pruned": "circle", "pushed down": "triangle-down", "masked": "x-thin-open"}
_COLOR_MODES: tuple[ColorMode, ...] = ("score", "logprob", "group")
#: The legend's symbol of a scored kind, in a neutral grey: the colour bar (or the group entries) explains colours.
LEGEND_GREY = "#8C8C8C"


@dataclass(frozen=True)
class _Panel:
    """One tree panel to draw: its layout, its name in ``customdata``, which nodes show (``shown``; ``drawn``: at the
    scrubber's end), and how."""

    lay: TreeLayout
    name: str | None
    shown: Mask
    drawn: Mask
    #: Pruned candidates drawn per node when a big tree is thinned (``None``: all).
    thin: int | None
    color: ColorMode
    selected: str | None
    first: bool
    look: Palette
    cell: Cell


def _customdata(lay: TreeLayout, name: str | None, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
    """``[panel, node key]`` per point."""
    data = np.empty((len(rows), 2), dtype=object)
    data[:, 0] = name
    data[:, 1] = lay.key[rows]
    return data


def _segments(lay: TreeLayout, rows: npt.NDArray[np.int64]) -> tuple[Floats, Floats]:
    """x and y of the edges from each row's parent to it, as one polyline broken by NaN gaps."""
    rows = rows[lay.parent[rows] >= 0]
    up = lay.parent[rows]
    xs, ys = np.full(3 * len(rows), np.nan), np.full(3 * len(rows), np.nan)
    xs[0::3], xs[1::3] = lay.x[up], lay.x[rows]
    ys[0::3], ys[1::3] = lay.y[up], lay.y[rows]
    return xs, ys


def _scatter(gl: bool, **kw: Any) -> dict[str, Any]:
    """A scatter trace (as a dict, validated once with the figure), WebGL when the panel is large."""
    return {"type": "scattergl" if gl else "scatter", **kw}


def _edges(p: _Panel, gl: bool) -> list[dict[str, Any]]:
    """Edges: faint to pruned leaves, grey along the tree."""
    lay, out = p.lay, []
    leaf = np.isin(lay.kind, _LEAF_KINDS)
    for rows, name in ((np.flatnonzero(p.shown & leaf), "pruned edges"), (np.flatnonzero(p.shown & ~leaf), "edges")):
        crowded = len(rows) > 400
        if name == "edges":
            alpha, width = (0.35, 0.8) if crowded else (0.7, 1.2)
        else:
            alpha, width = (0.2, 0.5) if crowded else (0.35, 0.7)
        color = f"rgba({p.look.edge if name == 'edges' else p.look.faint_edge},{alpha})"
        xs, ys = _segments(lay, rows)
        out.append(_scatter(gl, x=xs, y=ys, mode="lines", line={"color": color, "width": width}, name=name,
                            hoverinfo="skip", showlegend=False))
    return out


def _paths(p: _Panel, gl: bool) -> list[dict[str, Any]]:
    """Each result's whole path, bold in its rank's colour, over the nodes (under them, a straight run would be
    hidden: a greedy path, or a beam that keeps its slot)."""
    lay, out = p.lay, []
    for rank in sorted(set(lay.result_rank[p.drawn].tolist()) - {-1}, reverse=True):
        xs, ys = _segments(lay, np.flatnonzero(p.shown & (lay.result_rank == rank)))
        out.append(_scatter(gl, x=xs, y=ys, mode="lines", name=f"result {rank}", legendgroup=f"result {rank}",
                            showlegend=p.first, hoverinfo="skip", legendrank=100 + rank, opacity=0.85,
                            line={"color": result_color(rank), "width": 3.0 if rank == 0 else 2.0}))
    return out


def _marker_color(p: _Panel, rows: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Marker colours by the panel's colour mode: the shared colour axis, or one hue per group (no colour bar)."""
    if p.color == "group":
        hues = [panel_color(g) for g in range(max(p.lay.groups, 2))]
        scale = [[i / (len(hues) - 1), hue] for i, hue in enumerate(hues)]
        return {"color": p.lay.group[rows], "colorscale": scale, "cmin": 0, "cmax": len(hues) - 1,
                "showscale": False}
    values = p.lay.score[rows] if p.color == "score" else p.lay.logprob[rows]
    return {"color": values, "coloraxis": "coloraxis"}


def _size(count: int, small: float, large: float) -> float:
    """Markers shrink as a panel fills up."""
    return large if count <= 200 else (large + small) / 2 if count <= 2000 else small


_KINDS: tuple[tuple[str, str], ...] = (
    ("pruned", "pruned"), ("pushed down", "pushed down"), ("masked", "masked"),
    ("hypothesis", "hypothesis"),
    ("accepted", "finished (accepted)"), ("rejected", "finished (not accepted)"),
)


def _of_kind(lay: TreeLayout, kind: str) -> Mask:
    """Rows of one kind of marker."""
    mask: Mask = (lay.kind == "finished") & (lay.accepted == (kind == "accepted")) if kind in (
        "accepted", "rejected") else lay.kind == kind
    return mask


def _rows(p: _Panel, kind: str) -> npt.NDArray[np.int64]:
    """Rows shown of one kind of marker."""
    return np.flatnonzero(p.shown & _of_kind(p.lay, kind))


def _present(p: _Panel, kind: str) -> bool:
    """Whether the panel draws a kind at the scrubber's end: its traces exist at every step (empty before the kind
    appears), so that scrubbing changes the traces' points, never which traces there are."""
    return bool((p.drawn & _of_kind(p.lay, kind)).any())


def _marker(p: _Panel, kind: str, rows: npt.NDArray[np.int64]) -> dict[str, Any]:
    """The marker style of one kind."""
    if kind in _LEAF_KINDS:
        return {"size": _size(len(rows), 3.5, 6), "opacity": 0.6 if len(rows) <= 200 else 0.4,
                "color": FATE_COLORS[kind], "symbol": _LEAF_SYMBOLS[kind], "line": {"width": 1}}
    if kind == "hypothesis":
        return {"size": _size(len(rows), 5, 11), **_marker_color(p, rows),
                "line": {"width": 0.5 if len(rows) > 200 else 1.0, "color": p.look.outline}}
    return {"size": 13, **_marker_color(p, rows), "line": {"width": 1.5, "color": p.look.strong_outline},
            "symbol": "diamond" if kind == "accepted" else "diamond-open"}


def _words(p: _Panel) -> bool:
    """Whether the panel has room to write token text beside its nodes: few nodes, a short run."""
    return p.lay.depth <= WORDS_UP_TO_DEPTH and int((p.shown & (p.lay.kind == "hypothesis")).sum()) <= LABEL_UP_TO


def _finished_text(lay: TreeLayout, row: int, words: bool) -> str:
    """A finished entry's label: its length-penalised score, after its token when there is room for words."""
    return f"{lay.label[row]} {lay.normalized[row]:.2f}" if words else f"{lay.normalized[row]:.2f}"


def _x_range(lay: TreeLayout, cell: Cell) -> list[float]:
    """x from half a step before the root to the deepest node, then room (in pixels) for the widest finished
    entry's label, so that no label is cut; fixed for the whole run, so that scrubbing does not rescale."""
    words = lay.depth <= WORDS_UP_TO_DEPTH and int((lay.kind == "hypothesis").sum()) <= LABEL_UP_TO
    texts = {_finished_text(lay, r, words) for r in np.flatnonzero(lay.kind == "finished").tolist()}
    room = min(max(map(text_width, texts), default=0.0) + 16, cell.width / 2)  # the diamond's offset, a margin
    per_step = max(cell.width - room, 1.0) / (lay.depth + 1.0)
    return [-0.5, lay.depth + 0.5 + room / per_step]


#: Where a label may go beside its node, in order of preference.
_PLACES = {"accepted": ("middle right", "top right", "bottom right"),
           "rejected": ("middle right", "top right", "bottom right"), "hypothesis": ("top center", "bottom center")}


def _label_items(p: _Panel, rows: dict[str, npt.NDArray[np.int64]]) -> list[tuple[tuple[float, ...], str, int, str]]:
    """The labels to place, most important first: finished entries of results (by rank), other accepted ones (best
    score first), entries not accepted, then token text along the results' paths and elsewhere, left to right."""
    lay, words, items = p.lay, _words(p), []
    for order, kind in enumerate(("accepted", "rejected", "hypothesis")):
        if len(rows[kind]) > LABEL_UP_TO or (kind == "hypothesis" and not words):
            continue
        for i, r in enumerate(rows[kind].tolist()):
            text = str(lay.label[r]) if kind == "hypothesis" else _finished_text(lay, r, words)
            rank = int(lay.result_rank[r]) if lay.result_rank[r] >= 0 else 1 << 20
            second = lay.x[r] if kind == "hypothesis" else -np.nan_to_num(lay.normalized[r], nan=-np.inf)
            if text:
                items.append(((order, rank, float(second), float(lay.y[r])), kind, i, text))
    return sorted(items, key=lambda item: item[0])


def _labels(p: _Panel, rows: dict[str, npt.NDArray[np.int64]], radius: dict[str, float]) -> dict[str, Any]:
    """Per labelled kind, ``(texts, positions)``: each label where it overlaps no other and stays in its panel
    (``explorer.figures._fit.place_labels``); one without room is left out (its hover still has it)."""
    lay, cell, items = p.lay, p.cell, _label_items(p, rows)
    low, high = _x_range(lay, cell)
    sx, sy = cell.width / (high - low), cell.height / max(lay.slots, 1)
    points = [((lay.x[rows[k][i]] - low) * sx, (lay.y[rows[k][i]] + 0.5) * sy, radius[k], text)
              for _, k, i, text in items]
    placed = place_labels(points, [_PLACES[k] for _, k, _, _ in items], cell.width, cell.height)
    out: dict[str, Any] = {}
    for (_, kind, i, text), where in zip(items, placed, strict=True):
        texts, places = out.setdefault(kind, (np.full(len(rows[kind]), "", dtype=object),
                                              np.full(len(rows[kind]), _PLACES[kind][0], dtype=object)))
        if where is not None:
            texts[i], places[i] = text, where
    return out


def _nodes(p: _Panel, gl: bool) -> list[dict[str, Any]]:
    """A marker trace per kind (leaves, hypotheses, finished entries); labels beside them where there is room."""
    lay, out = p.lay, []
    rows = {kind: _rows(p, kind) for kind, _ in _KINDS}
    markers = {kind: _marker(p, kind, rows[kind]) for kind, _ in _KINDS}
    labels = _labels(p, rows, {k: float(m["size"]) / 2 for k, m in markers.items()})
    for kind, name in _KINDS:
        if kind != "hypothesis" and not _present(p, kind):
            continue
        text, where = labels.get(kind, (None, None))
        shown_as = f"{name} (best {p.thin} per node)" if kind == "pruned" and p.thin is not None else name
        out.append(_scatter(gl, x=lay.x[rows[kind]], y=lay.y[rows[kind]], marker=markers[kind], text=text,
                            mode="markers+text" if text is not None else "markers", name=shown_as, legendgroup=name,
                            textposition=where, legendrank=500, showlegend=p.first and kind in _LEAF_KINDS,
                            hovertext=lay.hover[rows[kind]], hoverinfo="text",
                            customdata=_customdata(lay, p.name, rows[kind]),
                            textfont={"size": 11, "color": p.look.label}))
    return out


#: Marker size of the click targets: a radius of 3 px, the smallest plotly.js measures (see :func:`_targets`).
TARGET_SIZE = 6


def _targets(p: _Panel) -> list[dict[str, Any]]:
    """Invisible click targets on the hypotheses and finished entries, drawn after the leaves.

    plotly.js picks the point under the cursor by distance minus the marker's radius, but never less than
    ``1 - 3 / radius``: a small marker (a pruned leaf) within 3 px of the cursor is at distance 0, a hypothesis's
    larger marker at 0.45 at best, so a click on a hypothesis picked a leaf drawn beside it. A target of radius 3
    is at distance 0 too, and plotly.js gives a tie to the later trace: a hypothesis now wins where it is drawn.
    """
    if not (p.drawn & np.isin(p.lay.kind, ("hypothesis", "finished"))).any():
        return []
    rows = np.flatnonzero(p.shown & np.isin(p.lay.kind, ("hypothesis", "finished")))
    return [_scatter(False, x=p.lay.x[rows], y=p.lay.y[rows], mode="markers", name="click targets",
                     showlegend=False, hovertext=p.lay.hover[rows], hoverinfo="text",
                     marker={"size": TARGET_SIZE, "color": "rgba(0,0,0,0)"},
                     customdata=_customdata(p.lay, p.name, rows))]


def _kind_legend(p: _Panel, gl: bool) -> list[dict[str, Any]]:
    """Legend entries of the scored kinds (hypotheses, finished entries), apart from their markers.

    Those markers take their colours from the shared colour axis, and plotly.js draws a legend symbol from the
    first value without the axis's scale: it logs ``Invalid color specifier: number 0`` and draws the symbol
    black. An entry of its own, in the same legend group, shows the symbol (a click still hides the kind).
    """
    if not p.first:
        return []
    none = np.zeros(0, dtype=np.int64)
    kinds = [(k, name) for k, name in _KINDS if k not in _LEAF_KINDS and (k == "hypothesis" or _present(p, k))]
    shape = ("size", "symbol", "line")
    return [_scatter(gl, x=[None], y=[None], mode="markers", name=name, legendgroup=name, legendrank=500,
                     hoverinfo="skip", marker={**{k: v for k, v in _marker(p, kind, none).items() if k in shape},
                                               "color": LEGEND_GREY})
            for kind, name in kinds]


#: The ring's radius around the selected node, in pixels.
RING_RADIUS = 12


def _ring(p: _Panel, suffix: str) -> list[dict[str, Any]]:
    """A ring around the selected node when it is shown, named ``selected <node>``: a layout shape, not a trace,
    so that a click changes the layout's shapes alone (one small message; plotly.js would redraw a shape alone, but
    plotly's widget flags each update so that the whole figure is drawn again)."""
    rows: list[int] = np.flatnonzero(p.shown & (p.lay.key == p.selected)).tolist() if p.selected is not None else []
    return [{"type": "circle", "name": f"selected {p.selected}", "xref": f"x{suffix}", "yref": f"y{suffix}",
             "xsizemode": "pixel", "ysizemode": "pixel", "xanchor": float(p.lay.x[r]), "yanchor": float(p.lay.y[r]),
             "x0": -RING_RADIUS, "x1": RING_RADIUS, "y0": -RING_RADIUS, "y1": RING_RADIUS, "layer": "above",
             "line": {"color": p.look.ink, "width": 3}} for r in rows[:1]]


def _group_legend(p: _Panel) -> list[dict[str, Any]]:
    """Legend entries for the group colours, shown in the group colouring only (there in every colouring, so that
    changing it changes the traces' properties, never which traces there are)."""
    if not p.first:
        return []
    return [_scatter(False, x=[np.nan], y=[np.nan], mode="markers", name=f"group {g}", visible=p.color == "group",
                     marker={"color": panel_color(g)}) for g in range(p.lay.groups)]


def _panel(p: _Panel) -> list[dict[str, Any]]:
    """Every trace of one panel, back to front."""
    gl = int(p.drawn.sum()) > GL_ABOVE  # by the whole run: scrubbing never switches scatter and WebGL
    return [*_edges(p, gl), *_nodes(p, gl), *_paths(p, gl), *_targets(p), *_kind_legend(p, gl), *_group_legend(p)]


def _thinned(lay: TreeLayout) -> tuple[Mask, int | None]:
    """The rows kept when a panel has more than ``LEAVES_UP_TO`` pruned leaves: each node's best-scored few (as many
    as fit the budget, at least one), and every other row (leaves a processor pushed down or masked included);
    with the number kept per node (``None``: nothing thinned)."""
    keep = np.ones(len(lay), dtype=bool)
    pruned = np.flatnonzero(lay.kind == "pruned")
    if len(pruned) <= LEAVES_UP_TO:
        return keep, None
    per_node = max(1, LEAVES_UP_TO // len(np.unique(lay.parent[pruned])))
    order = pruned[np.lexsort((-np.nan_to_num(lay.score[pruned], nan=-np.inf), lay.parent[pruned]))]
    parents = lay.parent[order]
    starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep[order[rank >= per_node]] = False
    return keep, per_node


def _shown(lay: TreeLayout, show_pruned: bool, upto_step: int | None, kept: Mask) -> Mask:
    """Which nodes a panel shows (``kept``: the rows :func:`_thinned` keeps)."""
    shown = kept.copy() if show_pruned else ~np.isin(lay.kind, _LEAF_KINDS)
    if upto_step is not None:
        shown &= lay.decided <= upto_step
    return shown


def _color_axis(lays: Sequence[TreeLayout], color: ColorMode, height: int) -> dict[str, Any]:
    """One colour axis for every panel (continuous modes), over the finite values of hypotheses and entries; the
    reference's "impossible" placeholders (-1e9 rows that fill a beam when too few continuations exist) are left
    out, so that they do not stretch the scale and flatten every real score into one colour. Its bar lies across
    the top right of a figure ``height`` px tall, under plotly's tool bar; its title is an annotation to its left
    (``_bar_title``): plotly.js, in a widget, draws a horizontal bar's own title over the bar."""
    if color == "group":
        return {}
    values = np.concatenate([(lay.score if color == "score" else lay.logprob)[~np.isin(lay.kind, _LEAF_KINDS)]
                             for lay in lays] or [np.zeros(0)])
    values = values[np.isfinite(values) & (values > PLACEHOLDER)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (-1.0, 0.0)
    bar = {"orientation": "h", "thickness": 10, "len": _BAR_LENGTH, "lenmode": "pixels", "x": 1.0,
           "xanchor": "right", "xpad": 0, "yref": "container", "y": 1.0 - (_BAR_MIDDLE - 5) / height,
           "yanchor": "top", "ypad": 0, "tickfont": {"size": 11}}
    return {"coloraxis": {"colorscale": NODE_SCALE, "cmin": low, "cmax": high if high > low else low + 1e-6,
                          "colorbar": bar}}


#: Pixels from the figure's top to the middle of the colour bar, and the colour bar's length; the room it takes in
#: the top margin (left out with the bar).
_BAR_MIDDLE, _BAR_LENGTH, _BAR_ROOM = 35, 220, 40


def _bar_title(color: ColorMode) -> list[dict[str, Any]]:
    """The colour bar's title, left of the bar (none in group mode: no bar)."""
    if color == "group":
        return []
    return [{"text": COLOR_TITLES[color], "name": "colour bar", "xref": "paper", "x": 1.0, "xanchor": "right",
             "xshift": -_BAR_LENGTH - 8, "yref": "paper", "y": 1.0, "yanchor": "middle",
             "yshift": MARGIN["t"] - _BAR_MIDDLE, "showarrow": False, "font": {"size": 12}}]


def _axes(lay: TreeLayout, cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
    """x (depth, fixed to the whole run so that scrubbing does not rescale) and y (slots, best at the top)."""
    x = {"title": {"text": "tokens generated"}, "range": _x_range(lay, cell), "zeroline": False, "showgrid": False,
         "nticks": max(2, int(cell.width // 60))}
    y = {"title": {"text": "slot"}, "range": [lay.slots - 0.5, -0.5], "tickmode": "array",
         "tickvals": list(range(lay.slots)), "zeroline": False, "showgrid": False,
         "showticklabels": lay.slots <= 32}
    return x, y


def _as_layout(item: Trace | TreeLayout) -> TreeLayout:
    return item if isinstance(item, TreeLayout) else tree_layout(item)


def _frame(lays: Mapping[str | None, TreeLayout], grid: Grid, color: ColorMode, theme: Theme,
           width: int | None, top: int) -> dict[str, Any]:
    """The figure's layout before its axes: its size (the width only when given: else the container's), the
    margins (``top`` px above), the colour bar at the top right and the legend at the bottom left, clear of every
    panel."""
    bar = _color_axis(list(lays.values()), color, grid.height)
    layout = base_layout(theme, height=grid.height, margin={**MARGIN, "t": top}, **bar)
    if width is not None:
        layout["width"] = grid.width
    layout["legend"] = {**layout["legend"], "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0.0,
                        "xanchor": "left"}
    return layout


def _title(name: str | None, cell: Cell) -> dict[str, Any]:
    """A panel's title above it, cut to its width."""
    return {"text": esc_name(str(name), limit=max(8, int(cell.width // 9))), "x": sum(cell.x) / 2, "y": cell.y[1],
            "xref": "paper", "yref": "paper", "xanchor": "center", "yanchor": "bottom", "showarrow": False,
            "font": {"size": 14}}


def _draw(lays: Mapping[str | None, TreeLayout], *, color: ColorMode, show_pruned: bool, upto_step: int | None,
          selected: tuple[str | None, str] | None, title: str | None, theme: Theme, width: int | None,
          color_bar: bool = True) -> go.Figure:
    """One panel per layout, titled by its name (untitled for a single unnamed one), sharing colours and legend,
    in as many columns as fit ``width`` (``explorer.figures._fit.tree_grid``), row after row.

    The figure is assembled as plain dicts and validated once: plotly's per-call updates cost more than the data.
    """
    if color not in _COLOR_MODES:
        raise ParameterError("color", color, " or ".join(repr(mode) for mode in _COLOR_MODES))
    single = list(lays) == [None]
    top = MARGIN["t"] if color_bar else MARGIN["t"] - _BAR_ROOM
    grid = tree_grid([lay.slots for lay in lays.values()], width, top)
    layout = _frame(lays, grid, color, theme, width, top)
    data: list[dict[str, Any]] = []
    annotations, shapes = [], []
    for i, ((name, lay), cell) in enumerate(zip(lays.items(), grid.cells, strict=True)):
        chosen = selected[1] if selected is not None and selected[0] == name else None
        kept, thin = _thinned(lay)
        panel = _Panel(lay, name, _shown(lay, show_pruned, upto_step, kept), _shown(lay, show_pruned, None, kept),
                       thin if show_pruned else None, color, chosen, i == 0, palette(theme), cell)
        suffix = "" if i == 0 else str(i + 1)
        data += [{**trace, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"} for trace in _panel(panel)]
        shapes += _ring(panel, suffix)
        xaxis, yaxis = _axes(lay, cell)
        below = i + grid.columns < len(lays)  # the x axis's title only under the lowest panel of a column
        layout[f"xaxis{suffix}"] = {**xaxis, "domain": list(cell.x), "anchor": f"y{suffix}",
                                    **({"title": None} if below else {})}
        layout[f"yaxis{suffix}"] = {**yaxis, "domain": list(cell.y), "anchor": f"x{suffix}",
                                    **({"title": None} if cell.column else {})}
        if not single:
            annotations.append(_title(name, cell))
    heading = title if title is not None else lays[None].title if single else None
    if not color_bar and "coloraxis" in layout:  # the page shows it (``color_scale_html``)
        layout["coloraxis"] = {**layout["coloraxis"], "showscale": False}
    layout["annotations"] = [*annotations, *(_bar_title(color) if color_bar else [])]
    layout["shapes"] = shapes
    layout["title"] = ({"text": heading, "x": 0.01, "xanchor": "left", "yref": "container", "y": 1.0,
                        "yanchor": "top", "pad": {"t": 10}, "font": {"size": 16}} if heading else None)
    return go.Figure(data=data, layout=layout)


def search_tree(trace: Trace | TreeLayout, *, color: ColorMode = "score", show_pruned: bool = True,
                upto_step: int | None = None, selected: str | None = None, title: str | None = None,
                theme: Theme | None = None, width: int | None = None) -> go.Figure:
    """The search tree of one run as a beam lattice: x is the depth, y the slot, edges from parent to child.

    Hypotheses are dots coloured by ``color`` (``"score"``: the path's summed token scores, ``"logprob"``: the
    token's raw log-prob, ``"group"``: one hue per diverse-search group), finished entries diamonds (open: not
    accepted into the pool) labelled with their score (as the pool ranks them: length-penalised in the beam family),
    pruned and masked candidates small faded leaves fanned out in their parent's band (``show_pruned=False`` drops
    them; beyond ``LEAVES_UP_TO`` pruned ones in a panel, each node's best few). Each result's path is drawn bold in
    its rank's colour, over the nodes. ``upto_step`` shows only what steps ``0..upto_step`` decided; ``selected``
    rings a node key (a layout shape named ``selected <node>``). Labels go where they overlap no other label and
    stay inside the panel, else are left out (hovers have them). ``width`` is the figure's width in pixels
    (``None``: its container's, labels placed for 900 px). ``theme`` is ``"light"`` or ``"dark"`` (``None``: the
    theme of Plotly's default template, see :func:`explorer.figures.resolve_theme`).

    Every marker's ``customdata`` is ``[panel, node]``: ``panel`` is ``None`` here (the panel key in
    :func:`search_trees`), ``node`` a key of :func:`explorer.frames.tree_frames` (``h<id>``, ``f<id>``,
    ``c<step>.<hyp>.<token>``); :func:`node_at` reads it back. Pass a :func:`tree_layout` instead of the trace to
    redraw the same run cheaply (scrubbing, selecting).

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", num_beams=2, max_new_tokens=3)
    >>> fig = search_tree(t, upto_step=1, selected="h0")
    >>> "hypothesis" in {tr.name for tr in fig.data}, [shape.name for shape in fig.layout.shapes]
    (True, ['selected h0'])
    """
    return _draw({None: _as_layout(trace)}, color=color, show_pruned=show_pruned, upto_step=upto_step,
                 selected=(None, selected) if selected is not None else None, title=title, theme=resolve_theme(theme),
                 width=width)


def search_trees(traces: Mapping[str, Trace | TreeLayout], *, color: ColorMode = "score", show_pruned: bool = True,
                 upto_step: int | None = None, selected: tuple[str, str] | None = None,
                 title: str | None = None, theme: Theme | None = None, width: int | None = None,
                 color_bar: bool = True) -> go.Figure:
    """Several search trees in one figure, one panel per entry, titled by its key: side by side, in as many
    columns as fit ``width`` pixels at 320 px or more each (``None``: 900), then in further rows.

    Options are those of :func:`search_tree`; ``selected`` is ``(panel key, node key)``; scores share one colour
    bar (at the top right; ``color_bar=False`` leaves it out, for a page that shows
    :func:`explorer.figures.color_scale_html` where it stays in view). ``customdata`` of every marker is
    ``[panel key, node key]``.

    >>> import explorer
    >>> m = explorer.load_model("tiny-random")
    >>> runs = {s: explorer.decode(m, [5, 6], strategy=s, max_new_tokens=3) for s in ("greedy", "beam")}
    >>> fig = search_trees(runs)
    >>> [a.text for a in fig.layout.annotations]  # the panels' titles, then the colour bar's
    ['greedy', 'beam', 'path score (summed)']
    """
    lays: dict[str | None, TreeLayout] = {name: _as_layout(item) for name, item in traces.items()}
    return _draw(lays, color=color, show_pruned=show_pruned, upto_step=upto_step, selected=selected, title=title,
                 theme=resolve_theme(theme), width=width, color_bar=color_bar)


def node_at(customdata: Sequence[Any] | str) -> tuple[str | None, str]:
    """``(panel key, node key)`` of a clicked point's ``customdata`` (panel ``None`` in a single tree).

    >>> node_at(["beam", "h12"]), node_at([None, "f3"]), node_at("h0")
    (('beam', 'h12'), (None, 'f3'), (None, 'h0'))
    """
    if isinstance(customdata, str):
        return None, customdata
    items = list(customdata)
    if len(items) == 1:
        return None, str(items[0])
    panel, node = items[0], items[1]
    return (None if panel is None else str(panel)), str(node)

