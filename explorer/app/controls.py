"""The controls above and below the panels (model, prompt, run, trees, selection) and small widget helpers."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_description import DescriptionStyle, DescriptionWidget
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from explorer.app.state import AppState
from explorer.models.precision import DTYPES, precision_note

__all__ = ["Controls", "error_box", "fill_tooltips", "html_widget", "set_error", "shared_style", "sync"]

_SHARED: dict[tuple[str, str], Any] = {}


def shared_style(kind: str, description_width: str = "") -> Any:
    """One style widget of ``kind`` ("html", "description", "text") for every widget of the app that uses it
    unchanged: the page builds every widget model it is sent, and a style is one more per widget (a page of
    the app held 59 identical ``HTMLStyle`` models). A closed one (``Widget.close_all``) is made again."""
    key = (kind, description_width)
    style = _SHARED.get(key)
    if style is None or getattr(style, "comm", None) is None:
        make = {"html": HTMLStyle, "description": DescriptionStyle, "text": TextStyle}[kind]
        style = _SHARED[key] = make(**({"description_width": description_width} if description_width else {}))
    return style


def html_widget(value: str = "", **kwargs: Any) -> Any:
    """An ``HTML`` widget with the app's shared style (it never sets one of its own)."""
    return widgets.HTML(value, style=shared_style("html"), **kwargs)


def error_box() -> Any:
    """An inline error (class ``explorer-error``), hidden while empty."""
    box = html_widget(value="", layout=widgets.Layout(display="none"))
    box.add_class("explorer-error")
    return box


def set_error(box: Any, message: str | None) -> None:
    """Show ``message`` in an inline error box (hide it when empty)."""
    text = message or ""
    sync(box, f"<span>{html.escape(text)}</span>" if text else "")
    display = "" if text else "none"
    if box.layout.display != display:
        box.layout.display = display


def sync(widget: Any, value: Any, trait: str = "value") -> None:
    """Set a widget's trait only when it differs (no needless message, no cursor jump while typing)."""
    if getattr(widget, trait) != value:
        setattr(widget, trait, value)


def fill_tooltips(*roots: Any) -> None:
    """Give every description widget under ``roots`` (widgets or dicts of them; their children, recursively) a
    tooltip where it has none: ipywidgets writes a missing one into the page as ``title="null"``. The tooltip is
    the description (empty for a widget without one)."""
    todo = list(roots)
    while todo:
        widget = todo.pop()
        if isinstance(widget, dict):  # a dict of widgets (error boxes, knobs)
            todo.extend(widget.values())
        elif isinstance(widget, DescriptionWidget) and widget.tooltip is None:
            widget.tooltip = widget.description or ""
        todo.extend(getattr(widget, "children", ()) or ())


def _classed(widget: Any, name: str) -> Any:
    """``widget`` with the CSS class ``name``, and a tooltip (its description, unless it has one): ipywidgets
    writes a missing tooltip into the page as ``title="null"``."""
    widget.add_class(name)
    if getattr(widget, "tooltip", "") is None:
        widget.tooltip = widget.description
    return widget


def _wide(width: str) -> Any:
    return widgets.Layout(width=width)


class Controls:
    """Every control outside the panels, each with its inline error box where it can fail."""

    def __init__(self, models: list[str]) -> None:
        self.model = _classed(widgets.Combobox(options=models, description="model", ensure_option=False,
                                               continuous_update=False, layout=_wide("420px"),
                                               placeholder="a built-in name or a local model folder"), "explorer-model")
        self.model_info = html_widget()
        self.precision = _classed(widgets.Dropdown(options=DTYPES, description="precision", layout=_wide("220px")),
                                  "explorer-precision")
        self.precision_info = _classed(html_widget(), "explorer-precision-note")
        self.prompt = _classed(widgets.Textarea(description="prompt", continuous_update=True,
                                                layout=widgets.Layout(width="640px", height="64px")),
                               "explorer-prompt")
        self.chat = _classed(widgets.Checkbox(description="chat template", indent=False, layout=_wide("150px")),
                             "explorer-chat")
        self.max_new_tokens = _classed(widgets.IntText(description="max new tokens", continuous_update=True,
                                                       layout=_wide("220px"), style={"description_width": "110px"}),
                                       "explorer-max-new-tokens")
        self.add = _classed(widgets.Button(description="+ add panel", layout=_wide("120px")), "explorer-add-panel")
        self.run = _classed(widgets.Button(description="Run", button_style="primary", layout=_wide("100px")),
                            "explorer-run")
        self.stop = _classed(widgets.Button(description="Stop", button_style="warning", layout=_wide("100px")),
                             "explorer-stop")
        self.progress = _classed(widgets.IntProgress(value=0, min=0, max=1, layout=_wide("260px")),
                                 "explorer-progress")
        self.status = _classed(html_widget(value="ready"), "explorer-status")
        self.upload = _classed(widgets.FileUpload(accept=".json,.html", multiple=False, description="load trace",
                                                  icon="", layout=_wide("140px"),
                                                  tooltip="open a trace saved from this app (.json) or an exported "
                                                          "page (.html) as read-only panels"), "explorer-load")
        self.color = _classed(widgets.Dropdown(options=("score", "logprob", "group"), description="colour by",
                                               layout=_wide("220px")), "explorer-tree-color")
        self.pruned = _classed(widgets.Checkbox(description="show pruned candidates", indent=False,
                                                layout=_wide("220px")), "explorer-show-pruned")
        self.scrubber = _classed(widgets.IntSlider(description="up to step", min=0, max=0, continuous_update=False,
                                                   layout=_wide("640px")), "explorer-scrubber")
        self.force_token = _classed(widgets.Dropdown(description="token", options=(), layout=_wide("380px")),
                                    "explorer-force-token")
        self.force = _classed(widgets.Button(description="force this token and continue", layout=_wide("240px")),
                              "explorer-force")
        self.clear = _classed(widgets.Button(description="clear selection", layout=_wide("140px")),
                              "explorer-clear-selection")
        self.errors = {name: error_box() for name in ("model", "precision", "prompt", "chat", "max_new_tokens", "load",
                                                     "force", "panels")}

    def render(self, state: AppState, model_info: str) -> None:
        """Set the controls from ``state``."""
        sync(self.model, state.model)
        sync(self.model_info, model_info)
        sync(self.precision, state.dtype)
        sync(self.precision, state.running, "disabled")
        sync(self.precision_info, f"<span class='explorer-muted'>{html.escape(precision_note(state.dtype))}</span>")
        sync(self.prompt, state.prompt)
        sync(self.chat, state.chat)
        sync(self.max_new_tokens, state.max_new_tokens)
        sync(self.run, state.running, "disabled")
        sync(self.stop, not state.running, "disabled")
        sync(self.force, state.running, "disabled")
        sync(self.add, state.running, "disabled")
        done, total = state.progress
        sync(self.progress, max(total, 1), "max")
        sync(self.progress, min(done, max(total, 1)))
        sync(self.status, f"<span>{html.escape(state.status)}</span>")
        sync(self.color, state.tree_color)
        sync(self.pruned, state.show_pruned)
        for name, box in self.errors.items():
            set_error(box, state.errors.get(name))

    def render_force(self, options: tuple[tuple[str, int], ...], chosen: int | None) -> None:
        """The forced-token choices: the selected hypothesis's recorded candidates."""
        if tuple(self.force_token.options) != options:
            self.force_token.options = options
            self.force_token.value = chosen

    def render_scrubber(self, state: AppState) -> None:
        """The scrubber spans every trace's steps (a branch's are numbered from its fork on); at its end it shows
        every step."""
        last = max((p.trace.steps[-1].index for p in state.panels if p.trace is not None and p.trace.steps),
                   default=0)
        sync(self.scrubber, max(last, 0), "max")
        sync(self.scrubber, last if state.upto_step is None else min(state.upto_step, last))
        sync(self.scrubber, last <= 0, "disabled")

    def top(self) -> Any:
        """Model and precision, prompt, chat toggle and max new tokens."""
        e = self.errors
        settings = widgets.VBox([self.chat, e["chat"], self.max_new_tokens, e["max_new_tokens"]])
        return widgets.VBox([
            widgets.HBox([self.model, self.model_info]), e["model"],
            widgets.HBox([self.precision, self.precision_info], layout=widgets.Layout(align_items="center")),
            e["precision"],
            widgets.HBox([widgets.VBox([self.prompt, e["prompt"]]), settings]),
        ])

    def run_row(self) -> Any:
        """Run, Stop, progress and status."""
        return widgets.HBox([self.run, self.stop, self.progress, self.status],
                            layout=widgets.Layout(align_items="center"))

    def tree_row(self) -> Any:
        """Tree options and the step scrubber."""
        return widgets.VBox([widgets.HBox([self.color, self.pruned, self.upload]), self.errors["load"],
                             self.scrubber])

    def force_row(self) -> Any:
        """The forced-token picker with its button and error."""
        return widgets.VBox([widgets.HBox([self.force_token, self.force, self.clear]), self.errors["force"]])
