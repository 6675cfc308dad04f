"""Putting a new figure into a ``FigureWidget``: one update of what changed when its traces keep their kinds (a click,
the scrubber, the colouring), else a replacement of its traces.

Each message to the page makes plotly.js redraw the whole figure: a replacement takes four (old layout keys cleared,
traces deleted, traces added, layout set), an update one, and an update carries only what changed (a click moves
one ring: a few hundred bytes instead of every hover text of a big tree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from explorer.app.theme import on_page

__all__ = ["figure_changes", "show_figure"]

_MISSING = object()
#: Plotly's own trace ids: never compared.
_SKIP = frozenset({"uid"})
#: Compared and replaced whole: the theme's template.
_WHOLE = frozenset({"template"})


def _same(a: Any, b: Any) -> bool:
    """Whether two property values are equal (arrays element by element, NaN equal to NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            return bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f" or y.dtype.kind == "f"))
        return bool(x.tolist() == y.tolist())
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


def figure_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """What turns ``old`` into ``new`` (two plotly JSON objects: a trace's or a layout's), as property paths: a
    changed value under its dotted path, a removed key as ``None`` (plotly's "back to the default").

    >>> figure_changes({"marker": {"color": [1, 2], "coloraxis": "coloraxis"}, "name": "a"},
    ...                {"marker": {"color": [1, 3]}, "line": {"width": 2}, "name": "a"})
    {'marker.coloraxis': None, 'marker.color': [1, 3], 'line.width': 2}
    """
    out: dict[str, Any] = {}
    for key, gone in old.items():
        if key not in new and key not in _SKIP:
            out.update(figure_changes(gone, {}, f"{prefix}{key}.") if _nested(key, gone) else {
                f"{prefix}{key}": None})
    for key, value in new.items():
        if key in _SKIP:
            continue
        before = old.get(key, _MISSING)
        if _nested(key, value) and (before is _MISSING or isinstance(before, dict)):
            out.update(figure_changes(before if isinstance(before, dict) else {}, value, f"{prefix}{key}."))
        elif before is _MISSING or not _same(before, value):
            out[f"{prefix}{key}"] = value
    return out


def _nested(key: str, value: Any) -> bool:
    """Whether a value is compared key by key: every path then ends at a plain value, so that one update never
    names a property and its parent (``line`` for one trace, ``line.color`` for another: plotly.js refuses it)."""
    return isinstance(value, dict) and key not in _WHOLE


def _patchable(target: Any, fig: go.Figure) -> bool:
    """Whether ``fig``'s traces can be written over ``target``'s: as many, and of the same types in order."""
    return len(target.data) == len(fig.data) and all(
        old.type == new.type for old, new in zip(target.data, fig.data, strict=True))


def _patch(target: Any, fig: go.Figure) -> None:
    """Write what changed into ``target`` as one update (plotly's ``batch_update``: one message, one redraw)."""
    with target.batch_update():
        for old, new in zip(target.data, fig.data, strict=True):
            for path, value in figure_changes(old.to_plotly_json(), new.to_plotly_json()).items():
                old[path] = value
        for path, value in figure_changes(target.layout.to_plotly_json(), fig.layout.to_plotly_json()).items():
            target.layout[path] = value


def _replace(target: Any, fig: go.Figure) -> None:
    """Replace ``target``'s traces and layout: old layout keys cleared first (the new colour axis set with them:
    traces drawn on a default colour axis leave its vertical bar's ticks behind), then the traces, then the layout."""
    stale: dict[str, Any] = {key: None for key in target.layout.to_plotly_json() if key != "template"}
    axis = fig.layout.coloraxis.to_plotly_json()
    if axis:
        stale["coloraxis"] = axis
    if stale:
        target.plotly_relayout(stale)
    with target.batch_update():
        target.data = ()
    target.add_traces(list(fig.data))
    target.layout = fig.layout


def show_figure(target: Any, fig: go.Figure, on_click: Callable[[Any, Any, Any], None] | None = None) -> None:
    """Put ``fig`` into the ``FigureWidget`` ``target`` in place, on the page's background (``on_page``), and attach
    ``on_click`` to every trace with ``customdata``: an update of what changed when the traces keep their types
    in order, else a replacement.

    >>> fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    >>> widget = go.FigureWidget(fig)
    >>> show_figure(widget, go.Figure(go.Scatter(x=[1, 2], y=[3, 5])))
    >>> widget.data[0].y
    (3, 5)
    """
    on_page(fig)
    if _patchable(target, fig):
        _patch(target, fig)
    else:
        _replace(target, fig)
    if on_click is not None:
        for trace in target.data:
            if getattr(trace, "customdata", None) is not None:
                trace.on_click(on_click)
