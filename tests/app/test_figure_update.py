"""Figures put into a FigureWidget in place: one update of what changed when the traces keep their types (a click,
the scrubber, the colouring), a replacement otherwise; either way the widget ends up holding exactly the new figure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

import explorer
from explorer import figures
from explorer.app._figure_update import figure_changes, show_figure
from explorer.app.theme import on_page
from explorer.trace import Trace


@pytest.fixture(scope="module")
def runs() -> dict[str, Trace]:
    model = explorer.load_model("tiny-random")
    return {"#1 beam": explorer.decode(model, [5, 6, 7], strategy="beam", num_beams=4, max_new_tokens=8),
            "#2 diverse": explorer.decode(model, [5, 6, 7], strategy="diverse", num_beams=4, num_beam_groups=2,
                                          diversity_penalty=1.0, max_new_tokens=8)}


class Messages:
    """The messages a FigureWidget sends to the page, by kind, with the traces and properties each names."""

    def __init__(self, widget: go.FigureWidget) -> None:
        self.sent: list[tuple[str, Any]] = []
        for kind in ("relayout", "restyle", "update", "addTraces", "deleteTraces"):
            method = getattr(widget, f"_send_{kind}_msg")

            def record(*args: Any, _kind: str = kind, _method: Any = method, **kwargs: Any) -> Any:
                self.sent.append((_kind, (*args, *kwargs.values())))
                return _method(*args, **kwargs)

            setattr(widget, f"_send_{kind}_msg", record)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]


def _plain(value: Any) -> Any:
    """A plotly JSON value with arrays as lists, NaN as None, and no empty objects or lists (what a key set back to
    its default leaves: ``{}`` means the defaults, as a missing key does; ``shapes=[]`` none), to compare figures."""
    if isinstance(value, dict):
        items = {k: _plain(v) for k, v in value.items() if k != "uid"}
        return {k: v for k, v in items.items() if v != {} and v != []}
    if isinstance(value, np.ndarray | list | tuple):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _holds(widget: go.FigureWidget, fig: go.Figure) -> None:
    """The widget holds exactly ``fig`` (on the page's background)."""
    want = on_page(go.Figure(fig)).to_plotly_json()
    got = widget.to_plotly_json()
    assert _plain(got["data"]) == _plain(want["data"])
    assert _plain(got["layout"]) == _plain(want["layout"])


def _trees(runs: dict[str, Trace], **options: Any) -> go.Figure:
    return figures.search_trees({k: figures.tree_layout(t) for k, t in runs.items()}, width=1400, **options)


def _views(runs: dict[str, Trace]) -> Iterator[tuple[str, dict[str, Any]]]:
    """What a lecturer does after a run, one change at a time."""
    beam = runs["#1 beam"]
    node = f"h{beam.steps[3].hypotheses[1].id}"
    yield "select a node", {"selected": ("#1 beam", node)}
    yield "select another", {"selected": ("#2 diverse", f"h{runs['#2 diverse'].steps[5].hypotheses[0].id}")}
    yield "scrub to step 2", {"selected": ("#1 beam", node), "upto_step": 2}
    yield "scrub to step 5", {"selected": ("#1 beam", node), "upto_step": 5}
    yield "colour by log-prob", {"upto_step": 5, "color": "logprob"}
    yield "colour by group", {"color": "group"}
    yield "back to scores", {"color": "score"}
    yield "hide pruned", {"color": "score", "show_pruned": False}  # fewer traces: replaced
    yield "dark", {"color": "score", "show_pruned": False, "theme": "dark"}


def test_each_change_is_one_message_and_the_widget_holds_the_new_figure(runs: dict[str, Trace]) -> None:
    widget = go.FigureWidget(on_page(_trees(runs)))
    messages = Messages(widget)
    for what, options in _views(runs):
        messages.sent.clear()
        fig = _trees(runs, **options)
        show_figure(widget, fig)
        _holds(widget, fig)
        if what != "hide pruned":
            assert messages.kinds() == ["update"], f"{what}: {messages.kinds()}"


def test_a_click_sends_the_ring_alone(runs: dict[str, Trace]) -> None:
    """The ring is a layout shape: a click changes the shapes alone (plotly.js then redraws no trace)."""
    widget = go.FigureWidget(on_page(_trees(runs)))
    messages = Messages(widget)
    node = f"h{runs['#1 beam'].steps[3].hypotheses[1].id}"
    show_figure(widget, _trees(runs, selected=("#1 beam", node)))
    ((kind, (style, layout, _traces)),) = messages.sent
    assert kind == "update"
    assert not style
    assert set(layout) == {"shapes"}
    assert [shape.name for shape in widget.layout.shapes] == [f"selected {node}"]


def test_other_traces_are_replaced(runs: dict[str, Trace]) -> None:
    """A figure of other traces (the details: score timelines, then a node's candidates) replaces the old."""
    widget = go.FigureWidget(on_page(figures.score_timelines(runs)))
    messages = Messages(widget)
    beam = runs["#1 beam"]
    for fig in (figures.step_candidates(beam, beam.steps[2].hypotheses[0].id), figures.score_timelines(runs),
                _trees(runs)):
        messages.sent.clear()
        show_figure(widget, fig)
        _holds(widget, fig)
        assert "addTraces" in messages.kinds()


def test_clicks_stay_attached(runs: dict[str, Trace]) -> None:
    clicked: list[Any] = []
    widget = go.FigureWidget(on_page(_trees(runs)))
    show_figure(widget, _trees(runs, upto_step=3), lambda trace, _points, _state: clicked.append(trace.name))
    targets = next(t for t in widget.data if t.name == "click targets")
    targets._dispatch_on_click(None, None)
    assert clicked == ["click targets"]


def test_changes_name_removed_keys_and_compare_arrays() -> None:
    nan = float("nan")
    same = {"x": np.array([1.0, nan]), "text": np.array(["a", None], dtype=object), "marker": {"size": 3}}
    assert figure_changes(same, {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in same.items()}) == {}
    # Every path ends at a plain value: one update never names a property and its parent (plotly.js refuses it).
    assert figure_changes({"marker": {"size": 3, "line": {"width": 1}}}, {"marker": {"size": 3}}) == {
        "marker.line.width": None}
    assert figure_changes({}, {"line": {"color": "red", "width": 1}}) == {"line.color": "red", "line.width": 1}
    assert figure_changes({"line": {"color": "red"}}, {"line": {}}) == {"line.color": None}
    assert figure_changes({"x": [1, 2]}, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
    assert figure_changes({"x": np.array([1, 2])}, {"x": np.array([1.0, 2.5])}).keys() == {"x"}
    assert figure_changes({"visible": True}, {"visible": 1}) == {"visible": 1}
    assert figure_changes({"uid": "a"}, {"uid": "b"}) == {}
    theme = {"data": {"a": 2}, "layout": {}}
    assert figure_changes({"template": {"data": {"a": 1}, "layout": {}}}, {"template": theme}) == {"template": theme}


def test_the_pages_echo_of_a_ring_changes_nothing(runs: dict[str, Trace]) -> None:
    """A layout-only update reaches plotly.js without the widget's flag (``explorer.serve.assets``), so the page
    echoes it back, as plotly.js reports it (the shapes as plain values): the widget takes it, and sends nothing."""
    widget = go.FigureWidget(on_page(_trees(runs)))
    node = f"h{runs['#1 beam'].steps[3].hypotheses[1].id}"
    show_figure(widget, _trees(runs, selected=("#1 beam", node)))
    before = widget.to_plotly_json()
    messages = Messages(widget)
    shapes = [dict(shape.to_plotly_json()) for shape in widget.layout.shapes]
    widget._handler_js2py_update({"new": {"style_data": {}, "style_traces": None, "layout_data": {"shapes": shapes},
                                          "source_view_id": "page"}})
    assert messages.sent == []
    assert _plain(widget.to_plotly_json()) == _plain(before)
