"""A panel's widgets: strategy, its knobs, constraints with their tokenization, results, save and remove."""

from __future__ import annotations

import html
from typing import Any, Protocol

import ipywidgets as widgets

from explorer.app._params import PARAM_SPECS, ParamSpec, parse_text, specs_for
from explorer.app.controls import error_box, set_error, sync
from explorer.app.state import Panel
from explorer.params import STRATEGY_NAMES

__all__ = ["PanelControls", "PanelEvents"]

_GROUP_TITLES = {"search": "search", "processor": "processors", "warper": "sampling warpers"}
_EARLY_STOPPING = (("false", False), ("true", True), ("never", "never"))


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


def _knob(spec: ParamSpec) -> Any:
    """The widget of one knob."""
    style = {"description_width": "130px"}
    layout = widgets.Layout(width="290px")
    if spec.kind == "int":
        return widgets.IntText(description=spec.label, style=style, layout=layout, continuous_update=True)
    if spec.kind == "float":
        return widgets.FloatText(description=spec.label, style=style, layout=layout, continuous_update=True,
                                 step=0.1)
    if spec.kind == "choice":
        return widgets.Dropdown(description=spec.label, options=_EARLY_STOPPING, style=style, layout=layout)
    return widgets.Text(description=spec.label, style=style, layout=layout, continuous_update=True)


class PanelControls:
    """One panel: strategy, knobs (only those of its strategy), constraints with their tokenization, results,
    a save link, and a remove button. Branch and loaded panels show a summary instead of controls."""

    def __init__(self, panel_id: int, events: PanelEvents) -> None:
        self.panel_id = panel_id
        self.title = widgets.HTML()
        self.remove = widgets.Button(description="remove", layout=widgets.Layout(width="80px"))
        self.remove.add_class("explorer-remove")
        self.remove.on_click(lambda _: events.on_remove(panel_id))
        self.strategy = widgets.Dropdown(options=STRATEGY_NAMES, description="strategy",
                                         layout=widgets.Layout(width="290px"), style={"description_width": "130px"})
        self.strategy.add_class("explorer-strategy")
        self.strategy.observe(lambda ch: events.on_strategy(panel_id, str(ch["new"])), names="value")
        self.errors: dict[str, Any] = {"strategy": error_box(), "constraints": error_box(), "panel": error_box()}
        self.knobs: dict[str, Any] = {}
        self.rows: dict[str, Any] = {}
        for spec in PARAM_SPECS:
            self._add_knob(spec, events)
        self.groups = {g: widgets.HTML(f"<b>{t}</b>") for g, t in _GROUP_TITLES.items()}
        self.knob_box = widgets.VBox()
        self.constraints = widgets.Textarea(placeholder="one phrase per line;  a|b|c  for any of them",
                                            description="constraints", continuous_update=True,
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

    def _add_knob(self, spec: ParamSpec, events: PanelEvents) -> None:
        """Create one knob's widget, its error box and its row."""
        knob = _knob(spec)
        knob.add_class(f"explorer-param-{spec.name.replace('_', '-')}")
        name, pid, textual = spec.name, self.panel_id, spec.kind.startswith("optional")

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
            if panel.strategy == "constrained":
                children.append(self.constraint_box)
        else:
            children.append(self.summary)
        children += [self.errors["panel"], self.results, self.save]
        sync(self.box, tuple(children), "children")

    def _render_knobs(self, panel: Panel) -> None:
        """Show the knobs of the panel's strategy, under their group titles, with the state's values."""
        rows: list[Any] = []
        group = ""
        for spec in specs_for(panel.strategy):
            if spec.group != group:
                group = spec.group
                rows.append(self.groups[group])
            rows.append(self.rows[spec.name])
            self._set_knob(spec, panel.params.get(spec.name))
        sync(self.knob_box, tuple(rows), "children")

    def _set_knob(self, spec: ParamSpec, value: Any) -> None:
        """Put a value into a knob's widget (optional knobs hold text: empty for ``None``)."""
        knob = self.knobs[spec.name]
        if spec.kind.startswith("optional"):
            if parse_text(spec.name, str(knob.value)) != value:
                knob.value = "" if value is None else str(value)
        elif value is not None and not isinstance(value, str):
            sync(knob, value)
