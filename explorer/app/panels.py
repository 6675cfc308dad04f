"""A panel's widgets: strategy, its knobs, constraints with their tokenization, results, save and remove."""

from __future__ import annotations

import html
from typing import Any, Protocol

import ipywidgets as widgets

from explorer.app._params import KNOBS, knob_label, knob_section, knobs_for, parse_text
from explorer.app.controls import error_box, fill_tooltips, set_error, sync
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
    style = {"description_width": "130px"}
    layout = widgets.Layout(width="290px")
    common = {"description": p.label, "style": style, "layout": layout, "tooltip": p.help}
    widget = p.check.widget
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


class PanelControls:
    """One panel: strategy, knobs (only those of its strategy), constraints with their tokenization, results,
    a save link, and a remove button. Branch and loaded panels show a summary instead of controls."""

    def __init__(self, panel_id: int, events: PanelEvents) -> None:
        self.panel_id = panel_id
        self.title = widgets.HTML()
        self.remove = widgets.Button(description="remove", layout=widgets.Layout(width="80px"))
        self.remove.add_class("explorer-remove")
        self.remove.on_click(lambda _: events.on_remove(panel_id))
        self.strategy = widgets.Dropdown(options=names(), description="strategy", tooltip="the decoding strategy",
                                         layout=widgets.Layout(width="290px"), style={"description_width": "130px"})
        self.strategy.add_class("explorer-strategy")
        self.strategy.observe(lambda ch: events.on_strategy(panel_id, str(ch["new"])), names="value")
        self.errors: dict[str, Any] = {"strategy": error_box(), "constraints": error_box(), "panel": error_box()}
        self.knobs: dict[str, Any] = {}
        self.rows: dict[str, Any] = {}
        for p in KNOBS:
            self._add_knob(p, events)
        self.titles = {(basic, s): widgets.HTML(f"<b>{t}</b>") for s, t in _SECTION_TITLES.items()
                       for basic in (True, False)}
        self.basic_box = widgets.VBox()
        self.more_box = widgets.VBox()
        self.more = widgets.Accordion(children=(self.more_box,), titles=("more settings",), selected_index=None,
                                      layout=widgets.Layout(width="300px"))
        self.more.add_class("explorer-more")
        self.knob_box = widgets.VBox([self.basic_box, self.more])
        self.constraints = widgets.Textarea(placeholder="one phrase per line;  a|b|c  for any of them",
                                            description="constraints", continuous_update=True,
                                            tooltip="phrases every result must contain",
                                            layout=widgets.Layout(width="290px", height="70px"),
                                            style={"description_width": "130px"})
        self.constraints.add_class("explorer-constraints")
        self.constraints.observe(lambda ch: events.on_constraints(panel_id, str(ch["new"])), names="value")
        self.preview = widgets.HTML()
        self.preview.add_class("explorer-constraint-preview")
        self.constraint_box = widgets.VBox([self.constraints, self.preview, self.errors["constraints"]])
        self.summary = widgets.HTML()
        self.summary.add_class("explorer-panel-summary")
        self.results = widgets.HTML()
        self.results.add_class("explorer-results")
        self.save = widgets.HTML()
        self.save.add_class("explorer-save")
        self.header = widgets.HBox([self.title, self.remove], layout=widgets.Layout(justify_content="space-between"))
        self.box = widgets.VBox(layout=widgets.Layout(width="320px", padding="6px", margin="0 8px 8px 0"))
        self.box.add_class("explorer-panel")
        fill_tooltips(*vars(self).values())

    def _add_knob(self, p: Param, events: PanelEvents) -> None:
        """Create one knob's widget, its error box and its row."""
        knob = _knob(p)
        knob.add_class(f"explorer-param-{p.name.replace('_', '-')}")
        name, pid, textual = p.name, self.panel_id, _textual(p)

        def changed(change: dict[str, Any]) -> None:
            value = change["new"]
            events.on_param(pid, name, parse_text(name, str(value)) if textual else value)

        knob.observe(changed, names="value")
        self.knobs[name] = knob
        self.errors[name] = error_box()
        self.rows[name] = widgets.VBox([knob, self.errors[name]])

    def render(self, panel: Panel, preview: str) -> None:
        """Set every widget from ``panel`` (and the constraints ``preview`` HTML)."""
        sync(self.title, f"<b>{html.escape(panel.key)}</b>")
        sync(self.strategy, panel.strategy)
        sync(self.box, (f"explorer-panel-{panel.kind}", "explorer-panel"), "_dom_classes")
        for name, message in ((n, panel.errors.get(n)) for n in self.errors):
            set_error(self.errors[name], message)
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
        rows: dict[bool, list[Any]] = {True: [], False: []}
        knobs = knobs_for(panel.strategy)
        for section in _SECTION_TITLES:
            for basic in (True, False):
                shown = [p for p in knobs if knob_section(p, panel.strategy) == section and p.basic == basic]
                if shown:
                    rows[basic] += [self.titles[(basic, section)], *(self.rows[p.name] for p in shown)]
        for p in knobs:
            sync(self.knobs[p.name], knob_label(p, panel.strategy), "description")
            self._set_knob(p, panel.params.get(p.name))
        sync(self.basic_box, tuple(rows[True]), "children")
        sync(self.more_box, tuple(rows[False]), "children")

    def _set_knob(self, p: Param, value: Any) -> None:
        """Put a value into a knob's widget (text knobs hold the value's text: empty for ``None``)."""
        knob = self.knobs[p.name]
        if _textual(p):
            if parse_text(p.name, str(knob.value)) != value:
                knob.value = value if isinstance(value, str) else p.check.show(value)
        elif value is not None and not isinstance(value, str):
            sync(knob, value)
