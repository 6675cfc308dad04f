"""A panel's widgets: strategy, its knobs, constraints with their tokenization, results, save and remove."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, Protocol

import ipywidgets as widgets

from explorer.app._params import KNOBS, knob_label, knob_section, knobs_for, parse_text
from explorer.app.controls import error_box, fill_tooltips, html_widget, set_error, shared_style, sync
from explorer.app.state import Panel
from explorer.param_types import Choice
from explorer.params import Param
from explorer.strategies import get, names

__all__ = ["PanelControls", "PanelEvents"]

_SECTION_TITLES = {"search": "search", "draft": "draft", "processor": "processors", "warper": "sampling warpers",
                   "stopping": "stopping", "recording": "recording"}


class PanelEvents(Protocol):
    """What a panel's widgets tell the app."""

    def on_strategy(self, panel_id: int, strategy: str) -> None:
        """The strategy dropdown changed."""

    def on_param(self, panel_id: int, name: str, value: Any) -> None:
        """A knob changed."""

    def on_constraints(self, panel_id: int, text: str) -> None:
        """The constraints text changed."""

    def on_remove(self, panel_id: int) -> None:
        """The remove button was clicked."""


def _knob(p: Param) -> Any:
    """The widget of one knob, by the kind of value the parameter holds."""
    layout = widgets.Layout(width="290px")
    common = {"description": p.label, "style": shared_style("description", "130px"), "layout": layout,
              "tooltip": p.help}
    widget = p.check.widget
    if widget in ("text", "lines"):
        common["style"] = shared_style("text", "130px")
    if widget == "int":
        return widgets.IntText(continuous_update=True, **common)
    if widget == "float":
        return widgets.FloatText(continuous_update=True, step=0.1, **common)
    if widget == "choice" and isinstance(p.check, Choice):
        return widgets.Dropdown(options=[(p.check.show(v), v) for v in p.check.values], **common)
    if widget == "bool":
        return widgets.Checkbox(description=p.label, indent=False, layout=layout, tooltip=p.help)
    if widget == "lines":
        return widgets.Textarea(continuous_update=True, placeholder="one per line", **{
            **common, "layout": widgets.Layout(width="290px", height="52px")})
    return widgets.Text(continuous_update=True, **common)


def _textual(p: Param) -> bool:
    """Whether the knob holds text that the parameter's type parses (optional numbers, pairs, lines)."""
    return p.check.widget in ("text", "lines")


_PARAMS = {p.name: p for p in KNOBS}


class _Lazy(dict[Any, Any]):
    """A dict whose missing entries are made on first use (a panel's knobs, error boxes and section titles)."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self._make(key)
        return value


def _tipped(widget: Any) -> Any:
    """``widget`` with its tooltips filled (no ``title="null"`` in the page)."""
    fill_tooltips(widget)
    return widget


class PanelControls:
    """One panel: strategy, knobs (only those of its strategy), constraints with their tokenization, results,
    a save link, and a remove button. Branch and loaded panels show a summary instead of controls."""

    def __init__(self, panel_id: int, events: PanelEvents) -> None:
        self.panel_id = panel_id
        self.title = html_widget()
        self.remove = widgets.Button(description="remove", layout=widgets.Layout(width="80px"))
        self.remove.add_class("explorer-remove")
        self.remove.on_click(lambda _: events.on_remove(panel_id))
        self.strategy = widgets.Dropdown(options=names(), description="strategy", tooltip="the decoding strategy",
                                         layout=widgets.Layout(width="290px"),
                                         style=shared_style("description", "130px"))
        self.strategy.add_class("explorer-strategy")
        self.strategy.observe(lambda ch: events.on_strategy(panel_id, str(ch["new"])), names="value")
        self.errors = _Lazy(lambda _name: _tipped(error_box()))
        self.errors.update(strategy=error_box(), constraints=error_box(), panel=error_box())
        self._events = events
        self.knobs = _Lazy(self._add_knob)
        self.rows: dict[str, Any] = {}
        self.titles = _Lazy(lambda key: _tipped(html_widget(f"<b>{_SECTION_TITLES[key[1]]}</b>")))
        self.basic_box = widgets.VBox()
        self.more_box = widgets.VBox()
        self.more = widgets.Accordion(children=(self.more_box,), titles=("more settings",), selected_index=None,
                                      layout=widgets.Layout(width="300px"))
        self.more.add_class("explorer-more")
        self._panel: Panel | None = None
        self.more.observe(lambda _: self._fill_more(), names="selected_index")
        self.knob_box = widgets.VBox([self.basic_box, self.more])
        self.constraints = widgets.Textarea(placeholder="one phrase per line;  a|b|c  for any of them",
                                            description="constraints", continuous_update=True,
                                            tooltip="phrases every result must contain",
                                            layout=widgets.Layout(width="290px", height="70px"),
                                            style=shared_style("text", "130px"))
        self.constraints.add_class("explorer-constraints")
        self.constraints.observe(lambda ch: events.on_constraints(panel_id, str(ch["new"])), names="value")
        self.preview = html_widget()
        self.preview.add_class("explorer-constraint-preview")
        self.constraint_box = widgets.VBox([self.constraints, self.preview, self.errors["constraints"]])
        self.summary = html_widget()
        self.summary.add_class("explorer-panel-summary")
        self.results = html_widget()
        self.results.add_class("explorer-results")
        self.save = html_widget()
        self.save.add_class("explorer-save")
        self.header = widgets.HBox([self.title, self.remove], layout=widgets.Layout(justify_content="space-between"))
        self.box = widgets.VBox(layout=widgets.Layout(width="320px", padding="6px", margin="0 8px 8px 0"))
        self.box.add_class("explorer-panel")
        fill_tooltips(*vars(self).values())

    def _add_knob(self, name: str) -> Any:
        """Create one knob's widget and its row (with its error box), the first time the panel shows it."""
        p = _PARAMS[name]
        knob = _knob(p)
        knob.add_class(f"explorer-param-{p.name.replace('_', '-')}")
        pid, textual, events = self.panel_id, _textual(p), self._events

        def changed(change: dict[str, Any]) -> None:
            value = change["new"]
            events.on_param(pid, name, parse_text(name, str(value)) if textual else value)

        panel = self._panel
        if panel is not None:
            self._set_knob(p, knob, panel.params.get(name))
        knob.observe(changed, names="value")
        self.rows[name] = widgets.VBox([knob, self.errors[name]])
        fill_tooltips(self.rows[name])
        return knob

    def render(self, panel: Panel, preview: str) -> None:
        """Set every widget from ``panel`` (and the constraints ``preview`` HTML)."""
        sync(self.title, f"<b>{html.escape(panel.key)}</b>")
        sync(self.strategy, panel.strategy)
        sync(self.box, (f"explorer-panel-{panel.kind}", "explorer-panel"), "_dom_classes")
        for name in {*self.errors, *panel.errors}:
            set_error(self.errors[name], panel.errors.get(name))
        if panel.editable:
            self._render_knobs(panel)
            sync(self.constraints, panel.constraints)
            sync(self.preview, preview)
        children: list[Any] = [self.header]
        if panel.editable:
            children += [self.strategy, self.errors["strategy"], self.knob_box]
            if get(panel.strategy).constraints:
                children.append(self.constraint_box)
        else:
            children.append(self.summary)
        children += [self.errors["panel"], self.results, self.save]
        sync(self.box, tuple(children), "children")

    def _render_knobs(self, panel: Panel) -> None:
        """Show the knobs of the panel's strategy section by section, the basic ones at once and the others under
        "more settings", with the state's values."""
        self._panel = panel
        rows: dict[bool, list[Any]] = {True: [], False: []}
        knobs = knobs_for(panel.strategy)
        wanted = {p.name for p in knobs if p.basic or self.more.selected_index is not None or p.name in self.knobs
                  or panel.errors.get(p.name)}
        for section in _SECTION_TITLES:
            for basic in (True, False):
                shown = [p for p in knobs if knob_section(p, panel.strategy) == section and p.basic == basic]
                if shown:
                    rows[basic] += [self.titles[(basic, section)], *(p.name for p in shown)]
        for p in knobs:
            if p.name in wanted:
                sync(self.knobs[p.name], knob_label(p, panel.strategy), "description")
                self._set_knob(p, self.knobs[p.name], panel.params.get(p.name))
        sync(self.basic_box, tuple(self._widget(row) for row in rows[True]), "children")
        more = wanted.issuperset(row for row in rows[False] if isinstance(row, str))
        sync(self.more_box, tuple(self._widget(row) for row in rows[False]) if more else (), "children")

    def _widget(self, row: Any) -> Any:
        """A section title, or a knob's row by the knob's name."""
        if isinstance(row, str):
            self.knobs[row]  # created on first use
            return self.rows[row]
        return row

    def _fill_more(self) -> None:
        """When "more settings" opens, show the knobs it holds, made the first time (a page starts with only the
        basic ones: fewer widgets for the browser to build)."""
        panel = self._panel
        if panel is not None and self.more.selected_index is not None:
            self._render_knobs(panel)

    @staticmethod
    def _set_knob(p: Param, knob: Any, value: Any) -> None:
        """Put a value into a knob's widget (text knobs hold the value's text: empty for ``None``)."""
        if _textual(p):
            if parse_text(p.name, str(knob.value)) != value:
                knob.value = value if isinstance(value, str) else p.check.show(value)
        elif value is not None and not isinstance(value, str):
            sync(knob, value)
